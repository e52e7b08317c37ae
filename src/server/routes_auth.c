/*
 * routes_auth.c - handlers: public routes: health, JWKS, OpenAPI,
 * password/refresh grants, bootstrap, session login.
 */
#include "routes_auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "dbx.h"
#include "hutil.h"
#include "loginguard.h"
#include "metrics_ops.h"
#include "reqlog.h"
#include "openapi.h"
#include "reply.h"
#include "session.h"
#include "state.h"
#include "totp.h"
#include "util.h"

/* ---- public ---- */

int sbx__h_healthz(sbx__req *r) {
  return sbx__reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

int sbx__h_readyz(sbx__req *r) {
  int64_t v = 0;
  int rc = sbx_meta_schema_version(sbx__meta(r), &v);
  if (rc)
    return sbx__problem(r, 503, "Service Unavailable", "store not ready");
  return sbx__reply_json(
      r, 200,
      json_pack("{s:s,s:I}", "status", "ready", "schema", (json_int_t)v));
}

int sbx__h_jwks(sbx__req *r) {
  return sbx__reply_json(r, 200, sbx__jwks(r->srv));
}

int sbx__h_openapi(sbx__req *r) {
  char *doc = sbx__openapi_json(r->srv->routes, r->srv->nroutes);
  if (!doc)
    return sbx__problem(r, 500, "Internal Server Error", NULL);
  r->status = 200;
  r->resp = doc;
  r->resp_len = strlen(doc);
  r->resp_owned = 1;
  r->resp_type = "application/json";
  return 0;
}

/* The access token (and, for a login: family == NULL, a refresh token of
 * a new family) of (t, user); family: the rotated refresh token of a
 * refresh grant. The access token names its refresh family (revocation by
 * family) and, for a login, its time (step-up, authz.c). */
static int token_reply(sbx__req *r, const char *t, const char *user,
                       const char *family) {
  char at[1024], rt[160], fam[SBX_ID_MAX];
  int64_t now = sbx__now();
  int rc = SBX_OK;
  if (family)
    sbx__refresh_family(r->st, family, fam);
  else
    rc = sbx__rand_hex(fam, 16);
  if (!rc && !family)
    rc = sbx__refresh_issue(r->srv, r->st, t, user, fam, now, rt);
  if (!rc)
    rc = sbx__jwt_issue_fam(r->srv, t, user, fam, family ? 0 : now, now, at,
                            sizeof at);
  if (rc)
    return sbx__problem_rc(r, rc);
  int ttl = r->srv->p.access_ttl_s > 0 && r->srv->p.access_ttl_s <= 900
                ? r->srv->p.access_ttl_s
                : 900;
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:s,s:i,s:s}", "access_token", at,
                                   "token_type", "Bearer", "expires_in", ttl,
                                   "refresh_token", family ? family : rt));
}

/* The answer to every refused password login, known account or not. */
static int login_refused(sbx__req *r, json_t *j, const char *uid) {
  sbx__metrics_login_failed(r->srv);
  sbx__reqlog_event(r, "warn", "login.failed", uid);
  json_decref(j);
  return sbx__problem(r, 401, "Unauthorized", "invalid credentials");
}

/* cookie = 1: POST /api/v1/auth/session (browser session instead of
 * tokens). A user with TOTP enabled also needs "totp" (totp.c).
 * Known and unknown accounts get the same answers and the same work (an
 * Argon2id verify against a dummy hash for the unknown ones); failures
 * slow down (account, address) pairs only (loginguard.h): 429 with
 * Retry-After to that address, never a lock of the account. */
static int grant_password(sbx__req *r, json_t *j, int cookie) {
  int bad = 0;
  const char *t = sbx__jstr(j, "tenant", SBX_ID_MAX, &bad);
  const char *email = sbx__jstr(j, "email", 254, &bad);
  const char *pw = sbx__jstr(j, "password", 256, &bad);
  if (bad || !t || !email || !pw || !sbx_id_valid(t))
    return sbx__bad_request(r, j, "tenant, email and password are required");
  if (cookie && !r->srv->p.public_origin) {
    json_decref(j);
    return sbx__problem(r, 403, "Forbidden",
                        "cookie sessions are disabled until public_origin is "
                        "configured; use POST /api/v1/auth/token");
  }
  static const char dummy[] =
      "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
      "0Xc0gNfKDqnTM0kj1aJ3PB9PHOAyvCqAmFVRXq9AgnM";
  uint8_t idx[32];
  sbx_user u;
  sbx__login_guard g;
  int64_t now = sbx__now();
  int rc = sbx__email_index(r, t, email, idx);
  if (!rc)
    rc = sbx__login_guard_load(r, t, idx, now, &g);
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc);
  }
  int64_t wait = sbx__login_guard_wait(&g, now);
  if (wait > 0) {
    char ra[24];
    snprintf(ra, sizeof ra, "%lld", (long long)wait);
    sbx__add_header(r, "Retry-After", ra);
    json_decref(j);
    return sbx__problem(r, 429, "Too Many Requests",
                        "too many failed logins from this address: retry "
                        "later");
  }
  int known = !sbx_meta_user_find_email(sbx__meta(r), t, idx, &u);
  /* the same Argon2id work whether the account exists, is disabled or
   * not */
  const char *hash = known && !strncmp(u.password_hash, "$argon2id$", 10)
                         ? u.password_hash
                         : dummy;
  int refused = sbx__password_verify(hash, pw);
  refused = refused || hash == dummy || u.disabled;
  if (!refused && sbx__totp_enabled(r, t, u.id)) {
    const char *code = sbx__jstr(j, "totp", 16, &bad);
    if (!code) {
      json_decref(j);
      return sbx__problem(r, 401, "Unauthorized", "TOTP code required");
    }
    refused = sbx__totp_check(r, t, u.id, code, now) != SBX_OK;
  }
  if (refused) {
    if (sbx__login_guard_fail(r, &g, now) && known) {
      sbx_meta_audit_append(sbx__meta(r), t, now, u.id, "auth.lockout", u.id,
                            NULL);
      sbx__reqlog_event(r, "warn", "lockout", u.id);
    }
    return login_refused(r, j, known ? u.id : NULL);
  }
  sbx__login_guard_clear(r, &g);
  sbx_meta_audit_append(sbx__meta(r), t, now, u.id, "auth.login", u.id, NULL);
  sbx__reqlog_event(r, "info", "login.ok", u.id);
  char tcopy[SBX_ID_MAX];
  snprintf(tcopy, sizeof tcopy, "%s", t);
  json_decref(j);
  if (cookie) {
    char csrf[65];
    int rc2 = sbx__session_issue(r, tcopy, u.id, csrf);
    if (rc2)
      return sbx__problem_rc(r, rc2);
    return sbx__reply_json(r, 200,
                           json_pack("{s:s,s:s,s:s}", "tenant", tcopy, "user",
                                     u.id, "csrf_token", csrf));
  }
  return token_reply(r, tcopy, u.id, NULL);
}

int sbx__h_session_login(sbx__req *r) {
  static const char *const fields[] = {"tenant", "email", "password", "totp",
                                       NULL};
  json_t *j = sbx__body_object(r, fields);
  return j ? grant_password(r, j, 1) : 0;
}

int sbx__h_token(sbx__req *r) {
  static const char *const fields[] = {"grant_type", "tenant",        "email",
                                       "password",   "refresh_token", "totp",
                                       NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *gt = sbx__jstr(j, "grant_type", 32, &bad);
  if (gt && !strcmp(gt, "password"))
    return grant_password(r, j, 0);
  if (gt && !strcmp(gt, "refresh_token")) {
    const char *rt = sbx__jstr(j, "refresh_token", 200, &bad);
    if (!rt)
      return sbx__bad_request(r, j, "refresh_token required");
    char t[SBX_ID_MAX], user[SBX_ID_MAX], nrt[160];
    int rc = sbx__refresh_rotate(r->srv, r->st, rt, sbx__now(), t, user, nrt);
    json_decref(j);
    if (rc == SBX_ECONFLICT) /* a used token again: the family is revoked */
      sbx__reqlog_event(r, "warn", "token.reuse", user);
    if (rc == SBX_EAUTH || rc == SBX_EEXPIRED || rc == SBX_ECONFLICT)
      return sbx__problem(r, 401, "Unauthorized", "invalid refresh token");
    if (rc)
      return sbx__problem_rc(r, rc);
    sbx_user u;
    if (sbx_meta_user_get(sbx__meta(r), t, user, &u) || u.disabled)
      return sbx__problem(r, 401, "Unauthorized", "invalid refresh token");
    return token_reply(r, t, user, nrt);
  }
  return sbx__bad_request(r, j, "grant_type must be password or refresh_token");
}

int sbx__h_bootstrap(sbx__req *r) {
  static const char *const fields[] = {"token", "email", "password", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *tok = sbx__jstr(j, "token", 200, &bad);
  const char *email = sbx__jstr(j, "email", 254, &bad);
  const char *pw = sbx__jstr(j, "password", 256, &bad);
  if (bad || !tok || !sbx__email_valid(email) || !sbx__password_ok(pw))
    return sbx__bad_request(r, j,
                            "token, a valid email and a password of 12..256 "
                            "characters are required");
  char t[SBX_ID_MAX];
  const char *tilde = strchr(tok, '~');
  if (strncmp(tok, "bt_", 3) || !tilde || tilde - tok - 3 >= SBX_ID_MAX ||
      strlen(tilde + 1) != 64) {
    json_decref(j);
    return sbx__problem(r, 401, "Unauthorized", "invalid bootstrap token");
  }
  memcpy(t, tok + 3, (size_t)(tilde - tok - 3));
  t[tilde - tok - 3] = 0;
  uint8_t h[32], idx[32];
  char user[SBX_ID_MAX], hash[160];
  uint8_t sealed[300];
  char ctx[96];
  int rc = sbx_id_valid(t) ? SBX_OK : SBX_EAUTH;
  if (!rc)
    rc = sbx_store_keyed_hash(r->st, "bootstrap", tilde + 1, 64, h);
  if (!rc)
    rc = sbx_meta_begin(sbx__meta(r));
  if (rc) {
    json_decref(j);
    return sbx__problem(r, 401, "Unauthorized", "invalid bootstrap token");
  }
  rc = sbx__dbx_bootstrap_take(sbx__meta(r), t, h, sbx__now(), user);
  if (!rc)
    rc = sbx__password_hash(pw, hash);
  if (!rc)
    rc = sbx__email_index(r, t, email, idx);
  snprintf(ctx, sizeof ctx, "users.email|%s", user);
  if (!rc)
    rc = sbx_store_field_seal(r->st, t, ctx, email, strlen(email), sealed);
  if (!rc)
    rc = sbx__dbx_user_set_email(sbx__meta(r), t, user, idx, sealed,
                                 strlen(email) + SBX_SEAL_OVERHEAD);
  if (!rc)
    rc = sbx__dbx_password_set(sbx__meta(r), t, user, hash);
  if (!rc)
    rc = sbx_meta_audit_append(sbx__meta(r), t, sbx__now(), user,
                               "auth.bootstrap", user, NULL);
  json_decref(j);
  if (rc) {
    sbx_meta_rollback(sbx__meta(r));
    if (rc == SBX_EAUTH)
      return sbx__problem(r, 401, "Unauthorized", "invalid bootstrap token");
    return sbx__problem_rc(r, rc);
  }
  rc = sbx_meta_commit(sbx__meta(r));
  if (rc)
    return sbx__problem_rc(r, rc);
  return token_reply(r, t, user, NULL);
}
