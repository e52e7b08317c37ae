/*
 * jobs_store.c - the job-queue calls that handle token strings (sbx/jobs.h,
 * "the same on an sbx_store"): tokens are made from the CSPRNG, shown once,
 * and kept only as HMAC-SHA256(pepper, purpose | 0 | secret) through
 * sbx_store_keyed_hash, the way API keys are (src/server/auth.c).
 *
 *   worker token: "wt_<id: 16 hex>.<secret: 64 hex>"  purpose "worker-token"
 *   job token:    "jt_<secret: 64 hex>"               purpose "job-token"
 */
#include <stdio.h>
#include <string.h>

#include "sbx/crypto.h"
#include "sbx/jobs.h"
#include "sbx/store.h"

#define HP_WORKER "worker-token"
#define HP_JOB "job-token"
#define SECRET_HEX 64

static int rand_hex(char *out, size_t nbytes) {
  uint8_t b[32];
  if (nbytes > sizeof b)
    return SBX_EINVAL;
  int rc = sbx_random(b, nbytes);
  if (!rc)
    sbx_hex(b, nbytes, out);
  sbx_memwipe(b, sizeof b);
  return rc;
}

static int is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return 1;
}

int sbx_store_worker_token_create(sbx_store *st, const char *name,
                                  int64_t expires_at, int64_t now, char *token,
                                  sbx_worker_token *out) {
  if (out)
    memset(out, 0, sizeof *out);
  if (!st || !token)
    return SBX_EINVAL;
  token[0] = 0;
  sbx_worker_token t;
  memset(&t, 0, sizeof t);
  char secret[SECRET_HEX + 1];
  if (!name || strlen(name) >= sizeof t.name)
    return SBX_EINVAL;
  snprintf(t.name, sizeof t.name, "%s", name);
  int rc = rand_hex(t.id, 8);
  if (!rc)
    rc = rand_hex(secret, SECRET_HEX / 2);
  if (!rc)
    rc = sbx_store_keyed_hash(st, HP_WORKER, secret, SECRET_HEX, t.secret_hash);
  t.created_at = now;
  t.expires_at = expires_at;
  if (!rc)
    rc = sbx_meta_worker_token_create(sbx_store_meta(st), &t);
  if (!rc) {
    snprintf(token, SBX_TOKEN_MAX, "wt_%s.%s", t.id, secret);
    if (out)
      *out = t;
  }
  sbx_memwipe(secret, sizeof secret);
  return rc;
}

int sbx_store_worker_token_verify(sbx_store *st, const char *token, int64_t now,
                                  sbx_worker_token *out) {
  if (out)
    memset(out, 0, sizeof *out);
  if (!st || !token || strncmp(token, "wt_", 3))
    return SBX_EAUTH;
  const char *dot = strchr(token + 3, '.');
  if (!dot || dot - (token + 3) != 16 || strlen(dot + 1) != SECRET_HEX ||
      !is_hex(dot + 1, SECRET_HEX))
    return SBX_EAUTH;
  char id[SBX_ID_MAX];
  memcpy(id, token + 3, 16);
  id[16] = 0;
  uint8_t h[SBX_SHA256_LEN];
  int rc = sbx_store_keyed_hash(st, HP_WORKER, dot + 1, SECRET_HEX, h);
  if (!rc)
    rc = sbx_meta_worker_token_verify(sbx_store_meta(st), id, h, now, out);
  return rc;
}

/* keyed hash of a "jt_<64 hex>" token; SBX_EAUTH when malformed */
static int job_token_hash(sbx_store *st, const char *token,
                          uint8_t h[SBX_SHA256_LEN]) {
  if (!st || !token || strncmp(token, "jt_", 3) ||
      strlen(token + 3) != SECRET_HEX || !is_hex(token + 3, SECRET_HEX))
    return SBX_EAUTH;
  return sbx_store_keyed_hash(st, HP_JOB, token + 3, SECRET_HEX, h);
}

int sbx_store_job_claim(sbx_store *st, const char *worker_id,
                        int64_t lease_seconds, int64_t now,
                        sbx_job_claim *out) {
  if (!out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  if (!st)
    return SBX_EINVAL;
  char secret[SECRET_HEX + 1];
  uint8_t h[SBX_SHA256_LEN];
  int rc = rand_hex(secret, SECRET_HEX / 2);
  if (!rc)
    rc = sbx_store_keyed_hash(st, HP_JOB, secret, SECRET_HEX, h);
  if (!rc)
    rc = sbx_meta_job_claim(sbx_store_meta(st), worker_id, lease_seconds, now,
                            h, out);
  if (!rc)
    snprintf(out->token, sizeof out->token, "jt_%s", secret);
  sbx_memwipe(secret, sizeof secret);
  return rc;
}

int sbx_store_job_token_verify(sbx_store *st, const char *token, int64_t now,
                               sbx_job_scope *out) {
  uint8_t h[SBX_SHA256_LEN];
  if (out)
    memset(out, 0, sizeof *out);
  int rc = job_token_hash(st, token, h);
  return rc ? rc : sbx_meta_job_token_verify(sbx_store_meta(st), h, now, out);
}

int sbx_store_job_heartbeat(sbx_store *st, const char *token, int64_t now,
                            int64_t lease_seconds, const sbx_job_progress *p,
                            int *stop) {
  uint8_t h[SBX_SHA256_LEN];
  if (stop)
    *stop = SBX_JOB_GO_ON;
  int rc = job_token_hash(st, token, h);
  return rc ? rc
            : sbx_meta_job_heartbeat(sbx_store_meta(st), h, now, lease_seconds,
                                     p, stop);
}

int sbx_store_job_finish(sbx_store *st, const char *token, int64_t now,
                         int64_t state, const char *message,
                         const sbx_job_results *results) {
  uint8_t h[SBX_SHA256_LEN];
  int rc = job_token_hash(st, token, h);
  return rc ? rc
            : sbx_meta_job_finish(sbx_store_meta(st), h, now, state, message,
                                  results);
}
