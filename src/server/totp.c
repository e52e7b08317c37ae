/*
 * totp.c - optional second factor for local accounts: TOTP (RFC 6238) with
 * HMAC-SHA1 via GnuTLS, 6 digits, 30 s steps, +-1 step accepted; a step at
 * or before the last accepted one is refused (no replay of a code).
 *   POST /api/v1/auth/totp          new secret (pending until confirmed)
 *   POST /api/v1/auth/totp/confirm  {"code"}: enables it
 *   DELETE /api/v1/auth/totp        removes it (the caller's own)
 * All three are step-up routes (authz.c): a session or access token from a
 * password login at most 5 min old, never an API key. An Admin resets a
 * user's TOTP with DELETE /api/v1/users/{user}/totp (routes_users.c).
 * Once enabled, the password grant (and the session login) need "totp".
 * The secret is sealed with the tenant's field key.
 */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "totp.h"

#include "audit.h"
#include "reply.h"
#include "sbx/sql.h"
#include "state.h"
#include "util.h"

#define TOTP_STEP 30
#define TOTP_DIGITS 6
#define TOTP_KEY 20

static sbx_meta *M(sbx__req *r) {
  return sbx_store_meta(r->st);
}

int sbx__totp_code(const uint8_t *key, size_t keylen, uint64_t counter,
                   int digits, uint32_t *code) {
  if (digits < 6 || digits > 8)
    return SBX_EINVAL;
  uint8_t msg[8], mac[20];
  for (int i = 7; i >= 0; i--) {
    msg[i] = (uint8_t)(counter & 0xff);
    counter >>= 8;
  }
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA1, key, keylen, msg, sizeof msg, mac) < 0)
    return SBX_ECRYPTO;
  int off = mac[19] & 0x0f; /* dynamic truncation, RFC 4226 5.3 */
  uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 |
                 (uint32_t)mac[off + 1] << 16 | (uint32_t)mac[off + 2] << 8 |
                 mac[off + 3];
  uint32_t mod = 1;
  for (int i = 0; i < digits; i++)
    mod *= 10;
  *code = bin % mod;
  sbx_memwipe(mac, sizeof mac);
  return SBX_OK;
}

void sbx__base32(const uint8_t *in, size_t n, char *out) {
  static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = acc << 8 | in[i];
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out[o++] = A[(acc >> bits) & 31];
    }
  }
  if (bits)
    out[o++] = A[(acc << (5 - bits)) & 31];
  out[o] = 0;
}

typedef struct totp_row {
  uint8_t sealed[TOTP_KEY + SBX_SEAL_OVERHEAD];
  int64_t enabled, last_step;
  int found;
} totp_row;

static int fill_totp(void *ctx, const sbx_sql_row *row) {
  totp_row *t = ctx;
  t->found = 1;
  t->enabled = sbx_sql_col_int(row, 1);
  t->last_step = sbx_sql_col_int(row, 2);
  return sbx_sql_col_fixed(row, 0, t->sealed, sizeof t->sealed);
}

static int totp_load(sbx__req *r, const char *tenant, const char *user,
                     totp_row *t) {
  memset(t, 0, sizeof *t);
  sbx_sql_val v[] = {SBX_SQL_T(tenant), SBX_SQL_T(user)};
  int rc = sbx_sql_exec(M(r),
                        "SELECT secret_sealed, enabled, last_step FROM "
                        "srv_totp WHERE tenant_id = $1 AND user_id = $2",
                        v, 2, fill_totp, t, NULL);
  return rc ? rc : (t->found ? SBX_OK : SBX_ENOTFOUND);
}

static void seal_ctx(const char *user, char ctx[96]) {
  snprintf(ctx, 96, "srv_totp.secret|%s", user);
}

int sbx__totp_enabled(sbx__req *r, const char *tenant, const char *user) {
  totp_row t;
  return totp_load(r, tenant, user, &t) == SBX_OK && t.enabled;
}

static int code_parse(const char *code, uint32_t *out) {
  if (!code || strlen(code) != TOTP_DIGITS)
    return -1;
  uint32_t v = 0;
  for (const char *p = code; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (uint32_t)(*p - '0');
  }
  *out = v;
  return 0;
}

/* Verifies code against (tenant, user)'s secret; enable = 1 for the
 * confirmation of a pending secret. */
static int check(sbx__req *r, const char *tenant, const char *user,
                 const char *code, int64_t now, int enable) {
  uint32_t want;
  if (code_parse(code, &want))
    return SBX_EAUTH;
  totp_row t;
  int rc = totp_load(r, tenant, user, &t);
  if (rc)
    return rc == SBX_ENOTFOUND ? SBX_EAUTH : rc;
  if (!enable && !t.enabled)
    return SBX_EAUTH;
  uint8_t key[TOTP_KEY];
  size_t kl = 0;
  char ctx[96];
  seal_ctx(user, ctx);
  rc = sbx_store_field_open(r->st, tenant, ctx, t.sealed, sizeof t.sealed, key,
                            &kl);
  if (rc || kl != TOTP_KEY)
    return rc ? rc : SBX_EFORMAT;
  int64_t step = now / TOTP_STEP, hit = -1;
  for (int64_t s = step - 1; s <= step + 1; s++) {
    uint32_t c;
    if (!sbx__totp_code(key, kl, (uint64_t)s, TOTP_DIGITS, &c) &&
        sbx_ct_equal(&c, &want, sizeof c))
      hit = s;
  }
  sbx_memwipe(key, sizeof key);
  if (hit < 0 || hit <= t.last_step)
    return SBX_EAUTH;
  /* atomic: two concurrent uses of one code cannot both pass */
  sbx_sql_val v[] = {SBX_SQL_T(tenant), SBX_SQL_T(user), SBX_SQL_I(hit)};
  int64_t changes = 0;
  rc = sbx_sql_exec(M(r),
                    enable ? "UPDATE srv_totp SET last_step = $3, enabled = 1 "
                             "WHERE tenant_id = $1 AND user_id = $2 AND "
                             "last_step < $3"
                           : "UPDATE srv_totp SET last_step = $3 WHERE "
                             "tenant_id = $1 AND user_id = $2 AND enabled = 1 "
                             "AND last_step < $3",
                    v, 3, NULL, NULL, &changes);
  return rc ? rc : (changes == 1 ? SBX_OK : SBX_EAUTH);
}

int sbx__totp_check(sbx__req *r, const char *tenant, const char *user,
                    const char *code, int64_t now) {
  return check(r, tenant, user, code, now, 0);
}

int sbx__totp_h_enroll(sbx__req *r) {
  const char *t = r->who.tenant, *u = r->who.user;
  totp_row cur;
  if (totp_load(r, t, u, &cur) == SBX_OK && cur.enabled)
    return sbx__problem(r, 409, "Conflict", "TOTP is already enabled");
  uint8_t key[TOTP_KEY], sealed[TOTP_KEY + SBX_SEAL_OVERHEAD];
  char ctx[96], b32[40];
  seal_ctx(u, ctx);
  int rc = sbx_random(key, sizeof key);
  if (!rc)
    rc = sbx_store_field_seal(r->st, t, ctx, key, sizeof key, sealed);
  if (!rc) {
    sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(u),
                       SBX_SQL_B(sealed, sizeof sealed)};
    rc = sbx_sql_exec(M(r),
                      "INSERT INTO srv_totp (tenant_id, user_id, "
                      "secret_sealed, enabled, last_step) VALUES ($1, $2, $3, "
                      "0, 0) ON CONFLICT (tenant_id, user_id) DO UPDATE SET "
                      "secret_sealed = excluded.secret_sealed, enabled = 0, "
                      "last_step = 0",
                      v, 3, NULL, NULL, NULL);
  }
  sbx__base32(key, sizeof key, b32);
  sbx_memwipe(key, sizeof key);
  if (rc) {
    sbx_memwipe(b32, sizeof b32);
    return sbx__problem_rc(r, rc);
  }
  char uri[512];
  snprintf(uri, sizeof uri,
           "otpauth://totp/%s:%s%%40%s?secret=%s&issuer=%s&algorithm=SHA1&"
           "digits=6&period=30",
           r->srv->issuer, u, t, b32, r->srv->issuer);
  sbx__audit(r, "auth.totp_enroll", u);
  json_t *out = json_pack("{s:s,s:s,s:b}", "secret", b32, "otpauth_uri", uri,
                          "enabled", 0);
  sbx_memwipe(b32, sizeof b32);
  sbx_memwipe(uri, sizeof uri);
  return sbx__reply_json(r, 201, out);
}

int sbx__totp_h_confirm(sbx__req *r) {
  static const char *const fields[] = {"code", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  const char *code = json_string_value(json_object_get(j, "code"));
  uint32_t dummy;
  if (code_parse(code, &dummy)) {
    json_decref(j);
    return sbx__problem(r, 400, "Bad Request", "code: 6 digits");
  }
  int rc = check(r, r->who.tenant, r->who.user, code, sbx__now(), 1);
  json_decref(j);
  if (rc == SBX_EAUTH)
    return sbx__problem(r, 400, "Bad Request", "wrong or reused code");
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "auth.totp_enable", r->who.user);
  return sbx__reply_json(r, 200, json_pack("{s:b}", "enabled", 1));
}

int sbx__totp_delete(sbx__req *r, const char *tenant, const char *user,
                     int *removed) {
  int64_t ch = 0;
  sbx_sql_val v[] = {SBX_SQL_T(tenant), SBX_SQL_T(user)};
  int rc = sbx_sql_exec(M(r),
                        "DELETE FROM srv_totp WHERE tenant_id = $1 AND "
                        "user_id = $2",
                        v, 2, NULL, NULL, &ch);
  *removed = !rc && ch > 0;
  return rc;
}

int sbx__totp_h_remove(sbx__req *r) {
  int removed = 0;
  int rc = sbx__totp_delete(r, r->who.tenant, r->who.user, &removed);
  if (rc)
    return sbx__problem_rc(r, rc);
  if (removed)
    sbx__audit(r, "auth.totp_remove", r->who.user);
  return sbx__reply_json(r, 200, json_pack("{s:b}", "removed", removed));
}
