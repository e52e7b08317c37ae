/*
 * auth.c - credentials: API keys, own EdDSA access tokens (JWT), refresh
 * tokens with rotation + family revocation, Argon2id passwords.
 *
 * Credential formats (all ASCII, capped at SBX__TOKEN_MAX bytes):
 *   API key        ak_<tenant>~<id>.<secret>     id 16 hex, secret 64 hex
 *   refresh token  rt_<tenant>~<id>.<secret>
 *   access token   <b64url header>.<b64url payload>.<b64url signature>
 * Secrets are stored only as sbx_store_keyed_hash(purpose, secret).
 */
#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

#include "authcache.h"
#include "dbx.h"
#include "keyfile.h"
#include "log.h"
#include "reply.h"
#include "reqlog.h"
#include "rbac.h"
#include "sbx/jobs.h"
#include "session.h"
#include "state.h"
#include "strict.h"
#include "util.h"

#define SBX__TOKEN_MAX 2048
#define HP_APIKEY "api-key"
#define HP_REFRESH "refresh-token"
#define JWT_SEALED "jwt-ed25519.sealed"
#define JWT_CTX "aisbxd jwt key"
#define JWT_RETIRED "jwt-retired.txt" /* public halves, not secret */

/* ---- prefixed opaque tokens ---- */

/* Splits "<pfx><tenant>~<id>.<secret>". */
static int split_token(const char *tok, const char *pfx,
                       char tenant[SBX_ID_MAX], char id[SBX_ID_MAX],
                       const char **secret) {
  size_t pl = strlen(pfx), n = strnlen(tok, SBX__TOKEN_MAX + 1);
  if (n > SBX__TOKEN_MAX || strncmp(tok, pfx, pl))
    return SBX_EAUTH;
  const char *t = tok + pl;
  const char *tilde = strchr(t, '~');
  if (!tilde || tilde - t >= SBX_ID_MAX)
    return SBX_EAUTH;
  memcpy(tenant, t, (size_t)(tilde - t));
  tenant[tilde - t] = 0;
  const char *dot = strchr(tilde + 1, '.');
  if (!dot || dot - tilde - 1 >= SBX_ID_MAX)
    return SBX_EAUTH;
  memcpy(id, tilde + 1, (size_t)(dot - tilde - 1));
  id[dot - tilde - 1] = 0;
  *secret = dot + 1;
  if (!sbx_id_valid(tenant) || !sbx_id_valid(id) || strlen(*secret) != 64)
    return SBX_EAUTH;
  return SBX_OK;
}

int sbx__apikey_create(sbx_store *st, const char *tenant, const char *user,
                       const char *project, const char *role,
                       int64_t expires_at, char *id_out, char *key_out) {
  sbx_api_key k;
  memset(&k, 0, sizeof k);
  char secret[65];
  int rc = sbx__rand_hex(k.id, 8);
  if (!rc)
    rc = sbx__rand_hex(secret, 32);
  if (!rc)
    rc = sbx_store_keyed_hash(st, HP_APIKEY, secret, 64, k.secret_hash);
  if (!rc) {
    snprintf(k.user_id, sizeof k.user_id, "%s", user);
    snprintf(k.project_id, sizeof k.project_id, "%s", project ? project : "");
    snprintf(k.role, sizeof k.role, "%s", role);
    k.created_at = sbx__now();
    k.expires_at = expires_at;
    rc = sbx_meta_api_key_insert(sbx_store_meta(st), tenant, &k);
  }
  if (!rc) {
    snprintf(id_out, SBX_ID_MAX, "%s", k.id);
    snprintf(key_out, 160, "ak_%s~%s.%s", tenant, k.id, secret);
  }
  sbx_memwipe(secret, sizeof secret);
  return rc;
}

/* Database side of an API-key check: the row, the keyed hash of the
 * secret (constant-time compare), revocation and expiry, the issuer. On
 * success *k is filled and *last_used holds the key's last_used_at. */
static int apikey_load(sbx__req *r, const char *tenant, const char *id,
                       const char *secret, int64_t now, sbx__ac_apikey *k,
                       int64_t *last_used) {
  sbx_api_key row;
  int rc = sbx_meta_api_key_get(sbx_store_meta(r->st), tenant, id, &row);
  if (rc)
    return SBX_EAUTH;
  uint8_t h[SBX_SHA256_LEN];
  rc = sbx_store_keyed_hash(r->st, HP_APIKEY, secret, 64, h);
  if (rc || !sbx_ct_equal(h, row.secret_hash, SBX_SHA256_LEN))
    return SBX_EAUTH;
  if (row.revoked_at || (row.expires_at && row.expires_at <= now))
    return SBX_EEXPIRED;
  memset(k, 0, sizeof *k);
  if (sbx__dbx_apikey_issuer_get(sbx_store_meta(r->st), tenant, id, k->issuer))
    return SBX_EAUTH;
  snprintf(k->tenant, SBX_ID_MAX, "%s", tenant);
  snprintf(k->id, SBX_ID_MAX, "%s", id);
  snprintf(k->user, SBX_ID_MAX, "%s", row.user_id);
  snprintf(k->project, SBX_ID_MAX, "%s", row.project_id);
  k->role = sbx__role_bit(row.role);
  k->expires_at = row.expires_at;
  *last_used = row.last_used_at;
  return SBX_OK;
}

/* Within SBX__APIKEY_WARN_S of a key's expiry: a response header on every
 * use and (when log, at most once a minute per key) a request-log event. */
static void apikey_expiry_warn(sbx__req *r, const sbx__ac_apikey *k,
                               int64_t now, int log) {
  if (!k->expires_at || k->expires_at - now > SBX__APIKEY_WARN_S)
    return;
  char v[64];
  snprintf(v, sizeof v, "%lld; in-days=%lld", (long long)k->expires_at,
           (long long)((k->expires_at - now) / 86400));
  sbx__add_header(r, "X-API-Key-Expires", v);
  if (log)
    sbx__reqlog_event(r, "warn", "api_key.expiring", k->id);
}

/* API key: the verified-key cache (authcache.c, keyed by SHA-256 of the
 * presented string, TTL 5 s, dropped on any key/role change of this
 * process), else the database. The expiry is checked on every request, and
 * the key's user must exist and be enabled in an active tenant. */
static int apikey_check(sbx__req *r, const char *tok) {
  char tenant[SBX_ID_MAX], id[SBX_ID_MAX];
  const char *secret;
  int rc = split_token(tok, "ak_", tenant, id, &secret);
  if (rc)
    return rc;
  uint8_t ch[SBX_SHA256_LEN];
  if (sbx_sha256(tok, strlen(tok), ch))
    return SBX_EAUTH;
  int64_t now = sbx__now();
  sbx__ac_apikey k;
  int touch = 0;
  if (sbx__ac_key_get(r->srv->ac, ch, now, &k, &touch) == SBX_OK) {
    if (k.expires_at && k.expires_at <= now)
      return SBX_EEXPIRED;
  } else {
    uint64_t epoch = sbx__authcache_epoch(); /* before the reads */
    int64_t last_used = 0;
    rc = apikey_load(r, tenant, id, secret, now, &k, &last_used);
    if (rc)
      return rc;
    /* last-used, at most once a minute per key (keeps reads write-free) */
    touch = now - last_used >= 60;
    sbx__ac_key_put(r->srv->ac, ch, &k, epoch, touch ? now : last_used);
  }
  int trole;
  if (sbx__ac_user(r, k.tenant, k.user, &trole))
    return SBX_EAUTH; /* tenant suspended, user gone or disabled */
  if (touch)
    sbx_meta_api_key_touch(sbx_store_meta(r->st), k.tenant, k.id, now);
  apikey_expiry_warn(r, &k, now, touch);
  r->who.kind = SBX__CRED_APIKEY;
  r->who.user_trole = trole;
  r->who.user_checked = 1;
  snprintf(r->who.tenant, SBX_ID_MAX, "%s", k.tenant);
  snprintf(r->who.user, SBX_ID_MAX, "%s", k.user);
  snprintf(r->who.key_id, SBX_ID_MAX, "%s", k.id);
  snprintf(r->who.key_project, SBX_ID_MAX, "%s", k.project);
  snprintf(r->who.key_issuer, SBX_ID_MAX, "%s", k.issuer);
  r->who.key_role = k.role;
  return SBX_OK;
}

/* The worker protocol's credentials (docs/worker-protocol.md): a worker
 * token "wt_<id>.<secret>" (deployment-wide, no tenant) or a job token
 * "jt_<secret>" whose scope (tenant, job, shard, model, dataset) the store
 * returns while its shard runs under a live lease. */
static int worker_check(sbx__req *r, const char *tok) {
  int64_t now = sbx__now();
  if (tok[0] == 'w') {
    sbx_worker_token wt;
    int rc = sbx_store_worker_token_verify(r->st, tok, now, &wt);
    if (rc)
      return rc == SBX_EEXPIRED ? SBX_EEXPIRED : SBX_EAUTH;
    r->who.kind = SBX__CRED_WORKER;
    snprintf(r->who.key_id, SBX_ID_MAX, "%s", wt.id);
    return SBX_OK;
  }
  sbx_job_scope sc;
  int rc = sbx_store_job_token_verify(r->st, tok, now, &sc);
  if (rc)
    return rc == SBX_EEXPIRED ? SBX_EEXPIRED : SBX_EAUTH;
  r->who.kind = SBX__CRED_JOB_TOKEN;
  snprintf(r->who.tenant, SBX_ID_MAX, "%s", sc.tenant_id);
  snprintf(r->who.key_id, SBX_ID_MAX, "%s", sc.job_id);
  snprintf(r->who.job, SBX_ID_MAX, "%s", sc.job_id);
  snprintf(r->who.job_project, SBX_ID_MAX, "%s", sc.project_id);
  snprintf(r->who.job_model, SBX_ID_MAX, "%s", sc.model_id);
  snprintf(r->who.job_dataset, SBX_ID_MAX, "%s", sc.dataset_id);
  r->who.job_shard = sc.shard;
  return SBX_OK;
}

int sbx__authenticate(sbx__req *r) {
  memset(&r->who, 0, sizeof r->who);
  int present; /* the scheme is case-insensitive (strict.c) */
  const char *tok = sbx__bearer_token(r->conn, &present);
  if (!present)
    return sbx__session_authenticate(r); /* browser: the session cookie */
  if (!tok)
    return SBX_EAUTH;
  if (strnlen(tok, SBX__TOKEN_MAX + 1) > SBX__TOKEN_MAX)
    return SBX_EAUTH;
  if (!strncmp(tok, "ak_", 3))
    return apikey_check(r, tok);
  if (!strncmp(tok, "wt_", 3) || !strncmp(tok, "jt_", 3))
    return worker_check(r, tok);
  sbx__jwt_claims c;
  int rc = sbx__jwt_verify_claims(r->srv, tok, sbx__now(), &c);
  if (rc)
    return rc;
  int trole; /* tenant active, user present and enabled (cached) */
  if (sbx__ac_user(r, c.tenant, c.user, &trole))
    return SBX_EAUTH;
  /* revoked before its expiry: the user's sessions (issued before the
   * revocation) or its refresh family (reuse); deny-list, cached */
  int64_t nbf = 0;
  if (sbx__ac_denied(r, c.tenant, "user", c.user, &nbf) || c.iat < nbf)
    return SBX_EEXPIRED;
  if (c.family[0] &&
      (sbx__ac_denied(r, c.tenant, "family", c.family, &nbf) || nbf))
    return SBX_EEXPIRED;
  r->who.kind = SBX__CRED_JWT;
  r->who.user_trole = trole;
  r->who.user_checked = 1;
  r->who.auth_time = c.auth_time;
  snprintf(r->who.tenant, SBX_ID_MAX, "%s", c.tenant);
  snprintf(r->who.user, SBX_ID_MAX, "%s", c.user);
  snprintf(r->who.key_id, SBX_ID_MAX, "%s", c.jti);
  snprintf(r->who.family, SBX_ID_MAX, "%s", c.family);
  return SBX_OK;
}

/* ---- JWT (EdDSA / Ed25519 only; the algorithm is fixed here) ---- */

/* A parsed JWT key: the private key (NULL for a retired public key), the
 * public key, its kid (base64url of 12 bytes of SHA-256 of the raw public
 * key) and x (base64url raw public key). */
typedef struct jwt_key {
  gnutls_privkey_t priv;
  gnutls_pubkey_t pub;
  char kid[32], x[64];
} jwt_key;

static void jwt_key_free(jwt_key *k) {
  if (k->pub)
    gnutls_pubkey_deinit(k->pub);
  if (k->priv)
    gnutls_privkey_deinit(k->priv);
  memset(k, 0, sizeof *k);
}

/* kid and x of k->pub. */
static int jwt_key_ids(jwt_key *k) {
  gnutls_datum_t x = {NULL, 0};
  if (gnutls_pubkey_export_ecc_raw(k->pub, NULL, &x, NULL) < 0)
    return SBX_ECRYPTO;
  int rc = SBX_ECRYPTO;
  if (x.size == 32) {
    sbx__b64url(x.data, x.size, k->x);
    uint8_t d[SBX_SHA256_LEN];
    sbx_sha256(x.data, x.size, d);
    sbx__b64url(d, 12, k->kid); /* 16 chars */
    rc = SBX_OK;
  }
  gnutls_free(x.data);
  return rc;
}

/* Takes xk (consumed, also on error) into k: private, public key, ids. */
static int jwt_key_from_x509(gnutls_x509_privkey_t xk, jwt_key *k) {
  memset(k, 0, sizeof *k);
  if (gnutls_privkey_init(&k->priv) < 0 ||
      gnutls_privkey_import_x509(k->priv, xk,
                                 GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE) < 0) {
    gnutls_x509_privkey_deinit(xk);
    jwt_key_free(k);
    return SBX_ECRYPTO;
  }
  int rc = SBX_ECRYPTO;
  if (gnutls_pubkey_init(&k->pub) >= 0 &&
      gnutls_pubkey_import_privkey(k->pub, k->priv, 0, 0) >= 0)
    rc = jwt_key_ids(k);
  if (rc)
    jwt_key_free(k);
  return rc;
}

/* A public key from its base64url raw form x (a retired key). */
static int jwt_key_from_x(const char *x, jwt_key *k) {
  memset(k, 0, sizeof *k);
  uint8_t raw[48];
  long n = sbx__unb64url(x, strlen(x), raw, sizeof raw);
  gnutls_datum_t d = {raw, (unsigned)(n > 0 ? n : 0)};
  int rc = SBX_EFORMAT;
  if (n == 32 && gnutls_pubkey_init(&k->pub) >= 0 &&
      gnutls_pubkey_import_ecc_raw(k->pub, GNUTLS_ECC_CURVE_ED25519, &d,
                                   NULL) >= 0)
    rc = jwt_key_ids(k);
  if (rc)
    jwt_key_free(k);
  return rc;
}

/* A fresh Ed25519 key as a PKCS#8 PEM (gnutls_free'd by the caller). */
static int jwt_generate_pem(gnutls_datum_t *out) {
  gnutls_x509_privkey_t xk = NULL;
  out->data = NULL;
  if (gnutls_x509_privkey_init(&xk) < 0)
    return SBX_ENOMEM;
  int rc = SBX_ECRYPTO;
  if (gnutls_x509_privkey_generate(
          xk, GNUTLS_PK_EDDSA_ED25519,
          GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED25519), 0) >= 0 &&
      gnutls_x509_privkey_export2_pkcs8(xk, GNUTLS_X509_FMT_PEM, NULL,
                                        GNUTLS_PKCS_PLAIN, out) >= 0)
    rc = SBX_OK;
  gnutls_x509_privkey_deinit(xk);
  return rc;
}

/* The current key of dir (jwt-ed25519.sealed, or the legacy plain PEM),
 * created when missing (create = 1; else SBX_ENOTFOUND). */
static int jwt_load_current(sbx_kek *kek, const char *dir, int create,
                            jwt_key *k) {
  char *pem = NULL;
  size_t n = 0;
  /* sealed under the master key (keyfile.h); a plain PEM of an older
   * version is sealed and removed on first start */
  int rc = sbx__keyfile_load(kek, dir, JWT_SEALED, "jwt-ed25519.pem", JWT_CTX,
                             &pem, &n);
  if (rc == SBX_ENOTFOUND && create) {
    gnutls_datum_t out;
    rc = jwt_generate_pem(&out);
    if (!rc) {
      rc = sbx__keyfile_create(kek, dir, JWT_SEALED, JWT_CTX, out.data,
                               out.size);
      pem = malloc(out.size + 1);
      if (!rc && pem) {
        memcpy(pem, out.data, out.size);
        pem[out.size] = 0;
        n = out.size;
      } else if (!rc) {
        rc = SBX_ENOMEM;
      }
      sbx_memwipe(out.data, out.size);
      gnutls_free(out.data);
    }
  }
  gnutls_x509_privkey_t xk = NULL;
  if (!rc && gnutls_x509_privkey_init(&xk) < 0)
    rc = SBX_ENOMEM;
  if (!rc) {
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)n};
    if (gnutls_x509_privkey_import2(xk, &d, GNUTLS_X509_FMT_PEM, NULL, 0) < 0 ||
        gnutls_x509_privkey_get_pk_algorithm(xk) != GNUTLS_PK_EDDSA_ED25519) {
      gnutls_x509_privkey_deinit(xk);
      rc = SBX_EFORMAT;
    } else {
      rc = jwt_key_from_x509(xk, k);
    }
  }
  if (pem) {
    sbx_memwipe(pem, n);
    free(pem);
  }
  return rc;
}

/* The retired keys of dir (JWT_RETIRED: lines "kid x retired_at"), those
 * still verifying at now for tokens of lifetime ttl, at most max. */
typedef struct jwt_retired {
  char kid[32], x[64];
  int64_t at;
} jwt_retired;

static int jwt_read_retired(const char *dir, int64_t now, int ttl,
                            jwt_retired *out, int max) {
  char path[SBX_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", dir, JWT_RETIRED);
  FILE *f = fopen(path, "re");
  int n = 0;
  if (!f)
    return 0;
  char line[256];
  while (n < max && fgets(line, sizeof line, f)) {
    jwt_retired e;
    long long at = 0;
    if (sscanf(line, "%31s %63s %lld", e.kid, e.x, &at) == 3 &&
        at + ttl > now) {
      e.at = at;
      out[n++] = e;
    }
  }
  fclose(f);
  return n;
}

static int jwt_ttl(const sbx_server_params *p) {
  return p->access_ttl_s > 0 && p->access_ttl_s <= 900 ? p->access_ttl_s : 900;
}

/* Loads the current key and the retired keys still verifying into the
 * temporaries cur/old (slots with pub NULL are free). */
static int jwt_load_set(sbx_kek *kek, const char *dir, int ttl, int64_t now,
                        jwt_key *cur, jwt_key old[SBX__JWT_OLD],
                        int64_t old_at[SBX__JWT_OLD]) {
  memset(old, 0, sizeof(jwt_key) * SBX__JWT_OLD);
  int rc = jwt_load_current(kek, dir, 1, cur);
  if (rc)
    return rc;
  jwt_retired r[SBX__JWT_OLD];
  int n = jwt_read_retired(dir, now, ttl, r, SBX__JWT_OLD);
  for (int i = 0, j = 0; i < n; i++)
    if (strcmp(r[i].kid, cur->kid) && !jwt_key_from_x(r[i].x, &old[j]) &&
        !strcmp(old[j].kid, r[i].kid))
      old_at[j++] = r[i].at;
    else
      jwt_key_free(&old[j]);
  return SBX_OK;
}

/* Installs cur/old into s (write-locked); the replaced keys are freed
 * after the lock is released (no reader holds them then). */
static void jwt_install(sbx_server *s, jwt_key *cur, jwt_key old[],
                        const int64_t old_at[]) {
  jwt_key gone[SBX__JWT_OLD + 1];
  memset(gone, 0, sizeof gone);
  pthread_rwlock_wrlock(&s->jwt_mu);
  gone[0].priv = s->jwt_priv;
  gone[0].pub = s->jwt_pub;
  s->jwt_priv = cur->priv;
  s->jwt_pub = cur->pub;
  memcpy(s->jwt_kid, cur->kid, sizeof s->jwt_kid);
  memcpy(s->jwt_x, cur->x, sizeof s->jwt_x);
  for (int i = 0; i < SBX__JWT_OLD; i++) {
    gone[i + 1].pub = s->jwt_old[i].pub;
    s->jwt_old[i].pub = old[i].pub;
    memcpy(s->jwt_old[i].kid, old[i].kid, sizeof old[i].kid);
    memcpy(s->jwt_old[i].x, old[i].x, sizeof old[i].x);
    s->jwt_old[i].retired_at = old[i].pub ? old_at[i] : 0;
  }
  pthread_rwlock_unlock(&s->jwt_mu);
  for (int i = 0; i < SBX__JWT_OLD + 1; i++)
    jwt_key_free(&gone[i]);
}

int sbx__jwt_load_or_create(sbx_server *s) {
  jwt_key cur, old[SBX__JWT_OLD];
  int64_t at[SBX__JWT_OLD] = {0};
  int rc = jwt_load_set(s->kek, s->data_dir, jwt_ttl(&s->p), sbx__now(), &cur,
                        old, at);
  if (rc) {
    sbx__log("JWT key %s/%s: %s", s->data_dir, JWT_SEALED, sbx_strerror(rc));
    return rc;
  }
  jwt_install(s, &cur, old, at);
  return SBX_OK;
}

int sbx__jwt_rotate_files(sbx_kek *kek, const char *dir, int ttl,
                          int retire_old, int64_t now, char new_kid[32]) {
  jwt_key cur;
  int rc = jwt_load_current(kek, dir, 0, &cur);
  if (rc)
    return rc;
  jwt_retired r[SBX__JWT_OLD];
  int n = retire_old ? 0 : jwt_read_retired(dir, now, ttl, r, SBX__JWT_OLD);
  if (!retire_old && n == SBX__JWT_OLD)
    rc = SBX_EBUSY; /* every slot still verifies tokens: wait */
  char path[SBX_PATH_MAX + 48], tmp[SBX_PATH_MAX + 64],
      fresh[SBX_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, JWT_RETIRED);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  snprintf(fresh, sizeof fresh, "%s/%s.new", dir, JWT_SEALED);
  /* 1. the new key, sealed, beside the current one */
  gnutls_datum_t pem = {NULL, 0};
  if (!rc) {
    unlink(fresh);
    rc = jwt_generate_pem(&pem);
  }
  if (!rc) {
    char name[64];
    snprintf(name, sizeof name, "%s.new", JWT_SEALED);
    rc = sbx__keyfile_create(kek, dir, name, JWT_CTX, pem.data, pem.size);
  }
  /* 2. the retired list: the current key (unless retired at once) and
   * those still verifying */
  FILE *f = NULL;
  if (!rc) {
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
      if (fd >= 0)
        close(fd);
      rc = SBX_EIO;
    }
  }
  if (f) {
    for (int i = 0; i < n; i++)
      fprintf(f, "%s %s %lld\n", r[i].kid, r[i].x, (long long)r[i].at);
    if (!retire_old)
      fprintf(f, "%s %s %lld\n", cur.kid, cur.x, (long long)now);
    if (fflush(f) || fsync(fileno(f)))
      rc = SBX_EIO;
    if (fclose(f))
      rc = SBX_EIO;
  }
  /* 3. switch: the retired list first (a crash between leaves the current
   * key listed as retired too: harmless), then the new key */
  if (!rc && rename(tmp, path))
    rc = SBX_EIO;
  char sealed[SBX_PATH_MAX + 48];
  snprintf(sealed, sizeof sealed, "%s/%s", dir, JWT_SEALED);
  if (!rc && rename(fresh, sealed))
    rc = SBX_EIO;
  if (rc) {
    unlink(tmp);
    unlink(fresh);
  } else {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
  }
  if (pem.data) {
    sbx_memwipe(pem.data, pem.size);
    gnutls_free(pem.data);
  }
  jwt_key_free(&cur);
  if (!rc && new_kid) {
    jwt_key k;
    rc = jwt_load_current(kek, dir, 0, &k);
    if (!rc)
      snprintf(new_kid, 32, "%s", k.kid);
    jwt_key_free(&k);
  }
  return rc;
}

int sbx__jwt_rotate(sbx_server *s, int retire_old, char new_kid[32]) {
  int rc = sbx__jwt_rotate_files(s->kek, s->data_dir, jwt_ttl(&s->p),
                                 retire_old, sbx__now(), new_kid);
  if (!rc)
    rc = sbx__jwt_load_or_create(s);
  return rc;
}

void sbx__jwt_free(sbx_server *s) {
  jwt_key none, old[SBX__JWT_OLD];
  int64_t at[SBX__JWT_OLD] = {0};
  memset(&none, 0, sizeof none);
  memset(old, 0, sizeof old);
  jwt_install(s, &none, old, at);
}

json_t *sbx__jwks(sbx_server *s) {
  json_t *keys = json_array();
  int64_t now = sbx__now();
  int ttl = jwt_ttl(&s->p);
  pthread_rwlock_rdlock(&s->jwt_mu);
  json_array_append_new(keys, json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "OKP",
                                        "crv", "Ed25519", "x", s->jwt_x, "kid",
                                        s->jwt_kid, "alg", "EdDSA"));
  for (int i = 0; i < SBX__JWT_OLD; i++)
    if (s->jwt_old[i].pub && s->jwt_old[i].retired_at + ttl > now)
      json_array_append_new(keys, json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty",
                                            "OKP", "crv", "Ed25519", "x",
                                            s->jwt_old[i].x, "kid",
                                            s->jwt_old[i].kid, "alg", "EdDSA"));
  pthread_rwlock_unlock(&s->jwt_mu);
  return json_pack("{s:o}", "keys", keys);
}

static char *b64_json(json_t *j) {
  char *txt = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  if (!txt)
    return NULL;
  size_t n = strlen(txt);
  char *out = malloc(4 * (n / 3 + 1) + 1);
  if (out)
    sbx__b64url(txt, n, out);
  free(txt);
  return out;
}

int sbx__jwt_issue(sbx_server *s, const char *tenant, const char *user,
                   int64_t now, char *tok_out, size_t cap) {
  return sbx__jwt_issue_fam(s, tenant, user, NULL, 0, now, tok_out, cap);
}

int sbx__jwt_issue_fam(sbx_server *s, const char *tenant, const char *user,
                       const char *family, int64_t auth_time, int64_t now,
                       char *tok_out, size_t cap) {
  char jti[33];
  int rc = sbx__rand_hex(jti, 16);
  if (rc)
    return rc;
  int ttl = s->p.access_ttl_s > 0 && s->p.access_ttl_s <= 900
                ? s->p.access_ttl_s
                : 900;
  pthread_rwlock_rdlock(&s->jwt_mu); /* a rotation swaps the key */
  json_t *h = json_pack("{s:s,s:s,s:s}", "alg", "EdDSA", "typ", "JWT", "kid",
                        s->jwt_kid);
  json_t *p = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s}", "iss", s->issuer,
                        "aud", s->issuer, "sub", user, "tid", tenant, "iat",
                        (json_int_t)now, "nbf", (json_int_t)now, "exp",
                        (json_int_t)(now + ttl), "jti", jti);
  if (p && family && *family)
    json_object_set_new(p, "fam", json_string(family));
  if (p && auth_time > 0)
    json_object_set_new(p, "auth_time", json_integer(auth_time));
  char *hb = h ? b64_json(h) : NULL, *pb = p ? b64_json(p) : NULL;
  json_decref(h);
  json_decref(p);
  rc = SBX_ENOMEM;
  if (hb && pb) {
    int n = snprintf(tok_out, cap, "%s.%s", hb, pb);
    gnutls_datum_t data = {(unsigned char *)tok_out, (unsigned)n}, sig;
    rc = SBX_ELIMIT;
    if (n > 0 && (size_t)n + 100 < cap) {
      rc = SBX_ECRYPTO;
      if (gnutls_privkey_sign_data2(s->jwt_priv, GNUTLS_SIGN_EDDSA_ED25519, 0,
                                    &data, &sig) >= 0) {
        if (sig.size == 64) {
          tok_out[n] = '.';
          sbx__b64url(sig.data, sig.size, tok_out + n + 1);
          rc = SBX_OK;
        }
        gnutls_free(sig.data);
      }
    }
  }
  pthread_rwlock_unlock(&s->jwt_mu);
  free(hb);
  free(pb);
  return rc;
}

static json_t *decode_part(const char *p, size_t n) {
  uint8_t buf[SBX__TOKEN_MAX];
  long len = sbx__unb64url(p, n, buf, sizeof buf);
  if (len <= 0)
    return NULL;
  json_error_t e;
  json_t *j =
      json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, &e);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/*
 * Verified-token cache: an Ed25519 check costs ~60 % of a JWT request's
 * CPU, and a client sends the same access token for its whole lifetime.
 * A token whose signature and claims were verified is remembered (keyed by
 * SHA-256 of the signing key id and the whole token, direct-mapped, 1024
 * slots) with its claims and expiry; a hit re-checks the expiry only. The
 * verification is a pure function of (key, token), so a hit can never
 * accept what a full check would refuse; tenant and user state are still
 * read from the database on every request by the caller.
 */
#define JWT_CACHE_SLOTS 1024
typedef struct jwt_cache_ent {
  uint8_t h[32];
  sbx__jwt_claims c;
  int used;
} jwt_cache_ent;
static jwt_cache_ent jwt_cache[JWT_CACHE_SLOTS];
static pthread_mutex_t jwt_cache_mu = PTHREAD_MUTEX_INITIALIZER;

/* SHA-256(kid || 0 || token) in one call on a stack buffer (no hash
 * context allocated per request); n <= SBX__TOKEN_MAX. */
static void jwt_cache_key(const sbx_server *s, const char *tok, size_t n,
                          uint8_t h[32]) {
  char buf[sizeof s->jwt_kid + SBX__TOKEN_MAX + 1];
  size_t k = strnlen(s->jwt_kid, sizeof s->jwt_kid - 1);
  memset(h, 0, 32);
  if (n > SBX__TOKEN_MAX)
    return;
  memcpy(buf, s->jwt_kid, k);
  buf[k] = 0;
  memcpy(buf + k + 1, tok, n);
  if (sbx_sha256(buf, k + 1 + n, h))
    memset(h, 0, 32);
}

static int jwt_verify_full(sbx_server *s, const char *tok, int64_t now,
                           sbx__jwt_claims *c);

int sbx__jwt_verify(sbx_server *s, const char *tok, int64_t now,
                    char tenant[SBX_ID_MAX], char user[SBX_ID_MAX],
                    char jti[SBX_ID_MAX]) {
  sbx__jwt_claims c;
  int rc = sbx__jwt_verify_claims(s, tok, now, &c);
  if (rc == SBX_OK) {
    memcpy(tenant, c.tenant, SBX_ID_MAX);
    memcpy(user, c.user, SBX_ID_MAX);
    memcpy(jti, c.jti, SBX_ID_MAX);
  }
  return rc;
}

int sbx__jwt_verify_claims(sbx_server *s, const char *tok, int64_t now,
                           sbx__jwt_claims *c) {
  memset(c, 0, sizeof *c);
  size_t n = strnlen(tok, SBX__TOKEN_MAX + 1);
  if (n > SBX__TOKEN_MAX)
    return SBX_EAUTH;
  uint8_t h[32];
  /* read-locked: the keys (current and retired) stay while in use */
  pthread_rwlock_rdlock(&s->jwt_mu);
  jwt_cache_key(s, tok, n, h);
  unsigned slot = ((unsigned)h[0] | (unsigned)h[1] << 8) % JWT_CACHE_SLOTS;
  pthread_mutex_lock(&jwt_cache_mu);
  jwt_cache_ent *e = &jwt_cache[slot];
  if (e->used && !memcmp(e->h, h, 32)) {
    int rc = e->c.exp <= now ? SBX_EEXPIRED : SBX_OK;
    if (rc == SBX_OK)
      *c = e->c;
    pthread_mutex_unlock(&jwt_cache_mu);
    pthread_rwlock_unlock(&s->jwt_mu);
    return rc;
  }
  pthread_mutex_unlock(&jwt_cache_mu);
  int rc = jwt_verify_full(s, tok, now, c);
  if (rc == SBX_OK) {
    pthread_mutex_lock(&jwt_cache_mu);
    e = &jwt_cache[slot];
    memcpy(e->h, h, 32);
    e->c = *c;
    e->used = 1;
    pthread_mutex_unlock(&jwt_cache_mu);
  } else {
    memset(c, 0, sizeof *c);
  }
  pthread_rwlock_unlock(&s->jwt_mu);
  return rc;
}

/* The public key of kid: the current key, or a retired one still inside
 * its overlap (tokens it signed may not have expired); NULL otherwise.
 * The caller holds jwt_mu (read). */
static gnutls_pubkey_t jwt_pub_for(sbx_server *s, const char *kid,
                                   int64_t now) {
  if (!strcmp(kid, s->jwt_kid))
    return s->jwt_pub;
  for (int i = 0; i < SBX__JWT_OLD; i++)
    if (s->jwt_old[i].pub && !strcmp(kid, s->jwt_old[i].kid) &&
        s->jwt_old[i].retired_at + jwt_ttl(&s->p) > now)
      return s->jwt_old[i].pub;
  return NULL;
}

/* The full check: header (algorithm fixed by us), Ed25519 signature by
 * the key its kid names (current or retired within the overlap), claims.
 * The caller holds jwt_mu (read). On success *exp_out receives the
 * token's expiry. */
static int jwt_verify_full(sbx_server *s, const char *tok, int64_t now,
                           sbx__jwt_claims *c) {
  size_t n = strnlen(tok, SBX__TOKEN_MAX + 1);
  const char *d1 = memchr(tok, '.', n);
  const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok)) : NULL;
  if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok)))
    return SBX_EAUTH;
  /* header: the algorithm is fixed by the server, the token only has to
   * agree with it; anything else (none, HS256, RS256, ...) is refused */
  json_t *h = decode_part(tok, (size_t)(d1 - tok));
  int rc = SBX_EAUTH;
  gnutls_pubkey_t pub = NULL;
  if (h) {
    const char *alg = json_string_value(json_object_get(h, "alg"));
    const char *kid = json_string_value(json_object_get(h, "kid"));
    if (alg && kid && !strcmp(alg, "EdDSA") &&
        (pub = jwt_pub_for(s, kid, now)) && !json_object_get(h, "crit") &&
        !json_object_get(h, "jku") && !json_object_get(h, "jwk") &&
        !json_object_get(h, "x5u"))
      rc = SBX_OK;
    json_decref(h);
  }
  if (rc)
    return rc;
  uint8_t sig[80];
  long sl = sbx__unb64url(d2 + 1, n - (size_t)(d2 + 1 - tok), sig, sizeof sig);
  if (sl != 64)
    return SBX_EAUTH;
  gnutls_datum_t data = {(unsigned char *)tok, (unsigned)(d2 - tok)};
  gnutls_datum_t sd = {sig, 64};
  if (gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_EDDSA_ED25519, 0, &data,
                                 &sd) < 0)
    return SBX_EAUTH;
  json_t *p = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
  if (!p)
    return SBX_EAUTH;
  const char *iss = json_string_value(json_object_get(p, "iss"));
  const char *aud = json_string_value(json_object_get(p, "aud"));
  const char *sub = json_string_value(json_object_get(p, "sub"));
  const char *tid = json_string_value(json_object_get(p, "tid"));
  const char *id = json_string_value(json_object_get(p, "jti"));
  json_t *exp = json_object_get(p, "exp"), *nbf = json_object_get(p, "nbf");
  json_t *fam = json_object_get(p, "fam"),
         *at = json_object_get(p, "auth_time");
  json_t *iat = json_object_get(p, "iat");
  rc = SBX_EAUTH;
  if (iss && aud && sub && tid && id && json_is_integer(exp) &&
      json_is_integer(nbf) && !strcmp(iss, s->issuer) &&
      !strcmp(aud, s->issuer) && sbx_id_valid(sub) && sbx_id_valid(tid) &&
      sbx_id_valid(id) && (!fam || sbx_id_valid(json_string_value(fam))) &&
      (!at || json_is_integer(at)) && (!iat || json_is_integer(iat))) {
    int64_t e = json_integer_value(exp), b = json_integer_value(nbf);
    if (e <= now)
      rc = SBX_EEXPIRED;
    else if (b > now + 30 || e - b > 900 + 60)
      rc = SBX_EAUTH;
    else {
      snprintf(c->tenant, SBX_ID_MAX, "%s", tid);
      snprintf(c->user, SBX_ID_MAX, "%s", sub);
      snprintf(c->jti, SBX_ID_MAX, "%s", id);
      snprintf(c->family, SBX_ID_MAX, "%s", fam ? json_string_value(fam) : "");
      c->iat = iat ? json_integer_value(iat) : b;
      c->auth_time = at ? json_integer_value(at) : 0;
      c->exp = e;
      rc = SBX_OK;
    }
  }
  json_decref(p);
  return rc;
}

/* ---- refresh tokens ---- */

int sbx__refresh_issue(sbx_server *s, sbx_store *st, const char *tenant,
                       const char *user, const char *family, int64_t now,
                       char *tok_out) {
  char id[33], secret[65], fam[33];
  uint8_t h[SBX_SHA256_LEN];
  int rc = sbx__rand_hex(id, 16);
  if (!rc)
    rc = sbx__rand_hex(secret, 32);
  if (!rc && !family) {
    rc = sbx__rand_hex(fam, 16);
    family = fam;
  }
  if (!rc)
    rc = sbx_store_keyed_hash(st, HP_REFRESH, secret, 64, h);
  if (!rc)
    rc = sbx__dbx_refresh_insert(sbx_store_meta(st), tenant, id, family, user,
                                 h, now, now + s->p.refresh_ttl_s);
  if (!rc)
    snprintf(tok_out, 160, "rt_%s~%s.%s", tenant, id, secret);
  sbx_memwipe(secret, sizeof secret);
  return rc;
}

int sbx__refresh_rotate(sbx_server *s, sbx_store *st, const char *tok,
                        int64_t now, char tenant[SBX_ID_MAX],
                        char user[SBX_ID_MAX], char *new_tok_out) {
  char id[SBX_ID_MAX], family[SBX_ID_MAX];
  const char *secret;
  int rc = split_token(tok, "rt_", tenant, id, &secret);
  if (rc)
    return rc;
  uint8_t stored[SBX_SHA256_LEN], h[SBX_SHA256_LEN];
  int64_t exp, used, revoked;
  sbx_meta *m = sbx_store_meta(st);
  if (sbx__dbx_refresh_get(m, tenant, id, family, user, stored, &exp, &used,
                           &revoked))
    return SBX_EAUTH;
  if (sbx_store_keyed_hash(st, HP_REFRESH, secret, 64, h) ||
      !sbx_ct_equal(h, stored, SBX_SHA256_LEN))
    return SBX_EAUTH;
  if (used || revoked) {
    /* replay of a rotated token: the family is compromised */
    sbx__dbx_refresh_revoke_family(m, tenant, family, now);
    sbx_meta_family_deny(m, tenant, family, now); /* its access tokens */
    sbx__authcache_invalidate();
    sbx_meta_audit_append(m, tenant, now, user, "auth.refresh_reuse", family,
                          NULL);
    return SBX_ECONFLICT; /* the caller logs "token.reuse" */
  }
  if (exp <= now)
    return SBX_EEXPIRED;
  rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  rc = sbx__dbx_refresh_use(m, tenant, id, now);
  if (!rc)
    rc = sbx__refresh_issue(s, st, tenant, user, family, now, new_tok_out);
  if (rc) {
    sbx_meta_rollback(m);
    if (rc == SBX_ECONFLICT) { /* lost a race with another use: reuse */
      sbx__dbx_refresh_revoke_family(m, tenant, family, now);
      sbx_meta_family_deny(m, tenant, family, now);
      sbx__authcache_invalidate();
      return SBX_ECONFLICT;
    }
    return rc;
  }
  return sbx_meta_commit(m);
}

void sbx__refresh_family(sbx_store *st, const char *tok,
                         char family[SBX_ID_MAX]) {
  char tenant[SBX_ID_MAX], id[SBX_ID_MAX], user[SBX_ID_MAX];
  const char *secret;
  uint8_t h[SBX_SHA256_LEN];
  int64_t exp, used, revoked;
  family[0] = 0;
  if (split_token(tok, "rt_", tenant, id, &secret) ||
      sbx__dbx_refresh_get(sbx_store_meta(st), tenant, id, family, user, h,
                           &exp, &used, &revoked))
    family[0] = 0;
}

/* ---- passwords: Argon2id, OWASP minimum parameters (m=19 MiB, t=2) ---- */

int sbx__password_hash(const char *pw, char out[160]) {
  uint8_t salt[16];
  if (sbx_random(salt, sizeof salt))
    return SBX_ECRYPTO;
  int rc = argon2id_hash_encoded(2, 19456, 1, pw, strlen(pw), salt, sizeof salt,
                                 32, out, 160);
  return rc == ARGON2_OK ? SBX_OK : SBX_ECRYPTO;
}

int sbx__password_verify(const char *encoded, const char *pw) {
  if (!encoded[0] || strncmp(encoded, "$argon2id$", 10))
    return SBX_EAUTH;
  return argon2id_verify(encoded, pw, strlen(pw)) == ARGON2_OK ? SBX_OK
                                                               : SBX_EAUTH;
}
