/*
 * session.c - browser sessions: an opaque cookie
 *   __Host-sbx_session=<tenant>~<64 hex>; Path=/; Secure; HttpOnly;
 *   SameSite=Strict
 * stored only as a keyed hash with an expiry, rotated on every login (the
 * session the request carried is deleted). State-changing requests
 * authenticated by the cookie need (1) an Origin header equal to our
 * origin and (2) X-CSRF-Token equal to the token bound to the session
 * (keyed hash of the session secret: given at login, GET /auth/session).
 * The table (srv_sessions) is a migration of the store (meta.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

#include "audit.h"
#include "reply.h"
#include "sbx/sql.h"
#include "state.h"
#include "util.h"

#define COOKIE_SESSION "__Host-sbx_session"
#define HP_SESSION "session"
#define HP_CSRF "csrf-token"

static sbx_meta *M(sbx__req *r) {
  return sbx_store_meta(r->st);
}

const char *sbx__cookie(sbx__req *r, const char *name, char *out, size_t cap) {
  const char *v = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
  if (!v || !*v || strlen(v) >= cap)
    return NULL;
  snprintf(out, cap, "%s", v);
  return out;
}

/* "<tenant>~<64 hex>" */
static int split_cookie(const char *v, char tenant[SBX_ID_MAX],
                        const char **secret) {
  const char *t = strchr(v, '~');
  if (!t || t == v || t - v >= SBX_ID_MAX || strlen(t + 1) != 64)
    return SBX_EAUTH;
  memcpy(tenant, v, (size_t)(t - v));
  tenant[t - v] = 0;
  *secret = t + 1;
  for (const char *p = *secret; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return SBX_EAUTH;
  return sbx_id_valid(tenant) ? SBX_OK : SBX_EAUTH;
}

typedef struct sess_row {
  char user[SBX_ID_MAX];
  int64_t expires, auth_at;
  int found;
} sess_row;

static int fill_sess(void *ctx, const sbx_sql_row *row) {
  sess_row *s = ctx;
  s->found = 1;
  s->expires = sbx_sql_col_int(row, 1);
  s->auth_at = sbx_sql_col_int(row, 2);
  return sbx_sql_col_text(row, 0, s->user, sizeof s->user);
}

int sbx__session_authenticate(sbx__req *r) {
  char v[160], tenant[SBX_ID_MAX];
  const char *secret;
  /* no public_origin: cookie sessions are off (sbx__session_issue) */
  if (!r->srv->p.public_origin || !sbx__cookie(r, COOKIE_SESSION, v, sizeof v))
    return SBX_OK;
  if (split_cookie(v, tenant, &secret))
    return SBX_EAUTH;
  uint8_t h[SBX_SHA256_LEN];
  int rc = sbx_store_keyed_hash(r->st, HP_SESSION, secret, 64, h);
  if (rc)
    return SBX_EAUTH;
  sess_row s;
  memset(&s, 0, sizeof s);
  sbx_sql_val q[] = {SBX_SQL_T(tenant), SBX_SQL_B(h, 32)};
  rc = sbx_sql_exec(M(r),
                    "SELECT user_id, expires_at, auth_at FROM srv_sessions "
                    "WHERE "
                    "tenant_id = $1 AND id_hash = $2",
                    q, 2, fill_sess, &s, NULL);
  if (rc || !s.found)
    return SBX_EAUTH;
  if (s.expires <= sbx__now())
    return SBX_EEXPIRED;
  sbx_tenant t;
  sbx_user u;
  sbx_meta *m = sbx_store_meta(r->st);
  if (sbx_meta_tenant_get(m, tenant, &t) || t.state != SBX_TENANT_ACTIVE ||
      sbx_meta_user_get(m, tenant, s.user, &u) || u.disabled)
    return SBX_EAUTH;
  char hex[17];
  sbx_hex(h, 8, hex);
  r->who.kind = SBX__CRED_SESSION;
  r->who.auth_time = s.auth_at;
  snprintf(r->who.tenant, SBX_ID_MAX, "%s", tenant);
  snprintf(r->who.user, SBX_ID_MAX, "%s", s.user);
  snprintf(r->who.key_id, SBX_ID_MAX, "s-%s", hex);
  return SBX_OK;
}

static int csrf_token(sbx__req *r, const char *secret, char out[65]) {
  uint8_t h[SBX_SHA256_LEN];
  int rc = sbx_store_keyed_hash(r->st, HP_CSRF, secret, 64, h);
  if (!rc)
    sbx_hex(h, sizeof h, out);
  return rc;
}

int sbx__origin_ok(sbx__req *r) {
  const char *origin =
      MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
  if (!origin)
    return 1;
  /* only the configured origin: Host is the client's to choose */
  return r->srv->p.public_origin && !strcmp(origin, r->srv->p.public_origin);
}

int sbx__session_csrf_check(sbx__req *r) {
  const char *origin =
      MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
  if (!origin || !sbx__origin_ok(r)) {
    sbx__problem(r, 403, "Forbidden", "cross-origin request refused");
    return 1;
  }
  char v[160], tenant[SBX_ID_MAX], want[65];
  const char *secret;
  const char *got =
      MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-CSRF-Token");
  if (!got || strlen(got) != 64 ||
      !sbx__cookie(r, COOKIE_SESSION, v, sizeof v) ||
      split_cookie(v, tenant, &secret) || csrf_token(r, secret, want) ||
      !sbx_ct_equal(got, want, 64)) {
    sbx__problem(r, 403, "Forbidden", "missing or wrong X-CSRF-Token");
    return 1;
  }
  return 0;
}

static int session_delete(sbx__req *r, const char *cookie) {
  char tenant[SBX_ID_MAX];
  const char *secret;
  uint8_t h[SBX_SHA256_LEN];
  if (split_cookie(cookie, tenant, &secret) ||
      sbx_store_keyed_hash(r->st, HP_SESSION, secret, 64, h))
    return SBX_EAUTH;
  sbx_sql_val q[] = {SBX_SQL_T(tenant), SBX_SQL_B(h, 32)};
  return sbx_sql_exec(M(r),
                      "DELETE FROM srv_sessions WHERE tenant_id = $1 AND "
                      "id_hash = $2",
                      q, 2, NULL, NULL, NULL);
}

int sbx__session_issue(sbx__req *r, const char *tenant, const char *user,
                       char csrf_out[65]) {
  char old[160], secret[65];
  if (!r->srv->p.public_origin)
    return SBX_EPERM; /* the CSRF/Origin checks need the configured origin */
  if (sbx__cookie(r, COOKIE_SESSION, old, sizeof old))
    session_delete(r, old); /* rotation: no fixation of a planted id */
  int64_t now = sbx__now();
  int ttl = r->srv->p.session_ttl_s > 0 ? r->srv->p.session_ttl_s : 8 * 3600;
  uint8_t h[SBX_SHA256_LEN];
  int rc = sbx__rand_hex(secret, 32);
  if (!rc)
    rc = sbx_store_keyed_hash(r->st, HP_SESSION, secret, 64, h);
  if (!rc) {
    sbx_sql_val d[] = {SBX_SQL_T(tenant), SBX_SQL_I(now)};
    sbx_sql_exec(M(r),
                 "DELETE FROM srv_sessions WHERE tenant_id = $1 AND "
                 "expires_at <= $2",
                 d, 2, NULL, NULL, NULL);
    /* a login is an interactive authentication: auth_at (step-up) */
    sbx_sql_val q[] = {SBX_SQL_T(tenant), SBX_SQL_B(h, 32), SBX_SQL_T(user),
                       SBX_SQL_I(now), SBX_SQL_I(now + ttl)};
    rc = sbx_sql_exec(M(r),
                      "INSERT INTO srv_sessions (tenant_id, id_hash, user_id, "
                      "created_at, expires_at, auth_at) VALUES ($1, $2, $3, "
                      "$4, $5, $4)",
                      q, 5, NULL, NULL, NULL);
  }
  if (!rc)
    rc = csrf_token(r, secret, csrf_out);
  if (!rc) {
    char c[300];
    snprintf(c, sizeof c,
             COOKIE_SESSION "=%s~%s; Path=/; Max-Age=%d; Secure; HttpOnly; "
                            "SameSite=Strict",
             tenant, secret, ttl);
    sbx__add_header(r, "Set-Cookie", c);
  }
  sbx_memwipe(secret, sizeof secret);
  return rc;
}

int sbx__session_stamp(sbx__req *r, int64_t now) {
  char v[160], tenant[SBX_ID_MAX];
  const char *secret;
  uint8_t h[SBX_SHA256_LEN];
  if (r->who.kind != SBX__CRED_SESSION ||
      !sbx__cookie(r, COOKIE_SESSION, v, sizeof v) ||
      split_cookie(v, tenant, &secret) ||
      sbx_store_keyed_hash(r->st, HP_SESSION, secret, 64, h))
    return SBX_EAUTH;
  int64_t ch = 0;
  sbx_sql_val q[] = {SBX_SQL_T(tenant), SBX_SQL_B(h, 32), SBX_SQL_I(now)};
  int rc = sbx_sql_exec(M(r),
                        "UPDATE srv_sessions SET auth_at = $3 WHERE "
                        "tenant_id = $1 AND id_hash = $2",
                        q, 3, NULL, NULL, &ch);
  return rc ? rc : (ch ? SBX_OK : SBX_EAUTH);
}

int sbx__session_h_get(sbx__req *r) {
  json_t *o =
      json_pack("{s:s,s:s,s:b}", "tenant", r->who.tenant, "user", r->who.user,
                "cookie_session", r->who.kind == SBX__CRED_SESSION);
  if (o && r->who.kind == SBX__CRED_SESSION) {
    char v[160], tenant[SBX_ID_MAX], csrf[65];
    const char *secret;
    if (sbx__cookie(r, COOKIE_SESSION, v, sizeof v) &&
        !split_cookie(v, tenant, &secret) && !csrf_token(r, secret, csrf))
      json_object_set_new(o, "csrf_token", json_string(csrf));
  }
  return sbx__reply_json(r, 200, o);
}

int sbx__session_h_delete(sbx__req *r) {
  int had = 0;
  char v[160];
  if (r->who.kind == SBX__CRED_SESSION &&
      sbx__cookie(r, COOKIE_SESSION, v, sizeof v)) {
    int rc = session_delete(r, v);
    if (rc)
      return sbx__problem_rc(r, rc);
    had = 1;
    sbx__audit(r, "auth.logout", r->who.user);
  }
  sbx__add_header(r, "Set-Cookie",
                  COOKIE_SESSION "=; Path=/; Max-Age=0; Secure; HttpOnly; "
                                 "SameSite=Strict");
  return sbx__reply_json(r, 200, json_pack("{s:b}", "logged_out", had));
}
