/*
 * routes.c - REST API v1: the route table, the permission table, the one
 * authorization function and the handlers. Every route declares its
 * permission here; sbx__authorize() is the only place that checks it.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

/* ---- roles and permissions ---- */

static const char *const ROLE_NAMES[] = {"viewer", "developer", "analyst",
                                         "admin"};

int sbx__role_bit(const char *name) {
  for (int i = 0; name && i < 4; i++)
    if (!strcmp(name, ROLE_NAMES[i]))
      return 1 << i;
  return 0;
}

const char *sbx__role_name(int bit) {
  for (int i = 3; i >= 0; i--)
    if (bit & (1 << i))
      return ROLE_NAMES[i];
  return "";
}

#define V SBX__ROLE_VIEWER
#define D SBX__ROLE_DEVELOPER
#define A SBX__ROLE_ANALYST
#define ADM SBX__ROLE_ADMIN
#define ALL (V | D | A | ADM)
static const struct {
  const char *perm;
  int roles;
} PERMS[] = {
    {"authenticated", ALL},      {"tenant:read", ALL},
    {"project:read", ALL},       {"project:create", ADM},
    {"user:read", ADM},          {"user:create", ADM},
    {"member:read", A | ADM},    {"member:write", ADM},
    {"apikey:read", ADM},        {"apikey:create", ADM},
    {"apikey:revoke", ADM},      {"model:read", ALL},
    {"model:write", D | ADM},    {"model:delete", D | ADM},
    {"dataset:read", ALL},       {"dataset:write", D | ADM},
    {"dataset:delete", D | ADM}, {"job:read", ALL},
    {"job:create", D | A | ADM}, {"job:cancel", D | A | ADM},
    {"result:read", ALL},        {"audit:read", A | ADM},
    /* process-wide counters of all tenants: no tenant role may read them,
     * only the operator's metrics token (metrics.c, checked in http.c) */
    {"metrics", 0},
};

static int perm_roles(const char *perm) {
  for (size_t i = 0; i < sizeof PERMS / sizeof PERMS[0]; i++)
    if (!strcmp(PERMS[i].perm, perm))
      return PERMS[i].roles;
  return 0; /* unknown permission: nobody */
}

int sbx_server_role_allows(const char *role, const char *permission) {
  return (perm_roles(permission) & sbx__role_bit(role)) != 0;
}

/* ---- helpers ---- */

int sbx__name_valid(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 128 || s[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' &&
        s[i] != '-')
      return 0;
  return 1;
}

static const char *arg(sbx__req *r, const char *k) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, k);
}

static const char *tenant(sbx__req *r) { return r->who.tenant; }
static sbx_meta *M(sbx__req *r) { return sbx_store_meta(r->st); }

void sbx__audit(sbx__req *r, const char *action, const char *target) {
  int rc = sbx_meta_audit_append(M(r), tenant(r), sbx__now(),
                                 r->who.user[0] ? r->who.user : "-", action,
                                 target, NULL);
  if (rc)
    fprintf(stderr, "aisbxd: audit append failed: %s\n", sbx_strerror(rc));
}

/* Strings of a JSON body: NULL when absent; *bad set when not a string or
 * longer than max. */
static const char *jstr(json_t *o, const char *k, size_t max, int *bad) {
  json_t *v = json_object_get(o, k);
  if (!v)
    return NULL;
  if (!json_is_string(v) || json_string_length(v) > max ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    *bad = 1;
    return NULL;
  }
  return json_string_value(v);
}

static int bad_request(sbx__req *r, json_t *j, const char *why) {
  json_decref(j);
  return sbx__problem(r, 400, "Bad Request", why);
}

static int list_reply(sbx__req *r, const char *what, const char *scope) {
  int limit = 50;
  const char *l = arg(r, "limit"), *cursor = arg(r, "cursor");
  if (l) {
    char *end;
    long x = strtol(l, &end, 10);
    if (*end || x < 1 || x > 100)
      return sbx__problem(r, 400, "Bad Request", "limit must be 1..100");
    limit = (int)x;
  }
  if (cursor && *cursor && !sbx_id_valid(cursor))
    return sbx__problem(r, 400, "Bad Request", "malformed cursor");
  /* written as text: building and dumping jansson objects cost more than
   * the query (~25 % of a list request's CPU) */
  sbx__buf b = {NULL, 0, 0, 8u << 20, 0};
  char last[SBX_ID_MAX];
  int more = 0;
  sbx__buf_str(&b, "{\"items\":[");
  int rc = sbx__dbx_list_text(M(r), what, tenant(r), scope, cursor, limit,
                              &b, &more, last);
  if (rc) {
    free(b.p);
    return sbx__problem_rc(r, rc);
  }
  sbx__buf_str(&b, "],\"next_cursor\":");
  if (more)
    sbx__buf_json_str(&b, last, strlen(last));
  else
    sbx__buf_str(&b, "null");
  sbx__buf_put(&b, "}", 1);
  return sbx__reply_buf(r, 200, &b, NULL);
}

/* ---- public ---- */

static int h_healthz(sbx__req *r) {
  return sbx__reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static int h_readyz(sbx__req *r) {
  int64_t v = 0;
  int rc = sbx_meta_schema_version(M(r), &v);
  if (rc)
    return sbx__problem(r, 503, "Service Unavailable", "store not ready");
  return sbx__reply_json(r, 200, json_pack("{s:s,s:I}", "status", "ready",
                                           "schema", (json_int_t)v));
}

static int h_jwks(sbx__req *r) {
  return sbx__reply_json(r, 200, sbx__jwks(r->srv));
}

static int h_openapi(sbx__req *r) {
  char *doc = sbx__openapi_json(r->srv);
  if (!doc)
    return sbx__problem(r, 500, "Internal Server Error", NULL);
  r->status = 200;
  r->resp = doc;
  r->resp_len = strlen(doc);
  r->resp_owned = 1;
  r->resp_type = "application/json";
  return 0;
}

static int token_reply(sbx__req *r, const char *t, const char *user,
                       const char *family) {
  char at[1024], rt[160];
  int64_t now = sbx__now();
  int rc = sbx__jwt_issue(r->srv, t, user, now, at, sizeof at);
  if (!rc && !family)
    rc = sbx__refresh_issue(r->srv, r->st, t, user, NULL, now, rt);
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

static int email_index(sbx__req *r, const char *email, uint8_t out[32]) {
  char low[256];
  size_t n = strlen(email);
  for (size_t i = 0; i <= n; i++)
    low[i] = (char)tolower((unsigned char)email[i]);
  return sbx_store_keyed_hash(r->st, "email", low, n, out);
}

static int email_valid(const char *e) {
  size_t n = e ? strlen(e) : 0;
  if (n < 3 || n > 254 || !strchr(e, '@'))
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)e[i] <= ' ' || e[i] == 0x7f)
      return 0;
  return 1;
}

static int password_ok(const char *pw) {
  size_t n = pw ? strlen(pw) : 0;
  return n >= 12 && n <= 256;
}

/* cookie = 1: POST /api/v1/auth/session (browser session instead of
 * tokens). A user with TOTP enabled also needs "totp" (totp.c). */
static int grant_password(sbx__req *r, json_t *j, int cookie) {
  int bad = 0;
  const char *t = jstr(j, "tenant", SBX_ID_MAX, &bad);
  const char *email = jstr(j, "email", 254, &bad);
  const char *pw = jstr(j, "password", 256, &bad);
  if (bad || !t || !email || !pw || !sbx_id_valid(t))
    return bad_request(r, j, "tenant, email and password are required");
  static const char dummy[] =
      "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
      "0Xc0gNfKDqnTM0kj1aJ3PB9PHOAyvCqAmFVRXq9AgnM";
  uint8_t idx[32];
  sbx_user u;
  int rc = email_index(r, email, idx);
  if (!rc)
    rc = sbx_meta_user_find_email(M(r), t, idx, &u);
  if (rc) {
    sbx__password_verify(dummy, pw); /* same work either way */
    json_decref(j);
    return sbx__problem(r, 401, "Unauthorized", "invalid credentials");
  }
  int64_t now = sbx__now(), failures = 0, locked = 0;
  sbx__dbx_lockout_get(M(r), t, u.id, &failures, &locked);
  if (locked > now) {
    char ra[24];
    snprintf(ra, sizeof ra, "%lld", (long long)(locked - now));
    sbx__add_header(r, "Retry-After", ra);
    json_decref(j);
    return sbx__problem(r, 429, "Too Many Requests",
                        "account temporarily locked");
  }
  int refused = u.disabled || sbx__password_verify(u.password_hash, pw);
  if (!refused && sbx__totp_enabled(r, t, u.id)) {
    const char *code = jstr(j, "totp", 16, &bad);
    if (!code) {
      json_decref(j);
      return sbx__problem(r, 401, "Unauthorized", "TOTP code required");
    }
    refused = sbx__totp_check(r, t, u.id, code, now) != SBX_OK;
  }
  if (refused) {
    failures++;
    if (failures >= r->srv->p.login_max_failures) {
      sbx__dbx_lockout_set(M(r), t, u.id, 0, now + r->srv->p.lockout_s);
      sbx_meta_audit_append(M(r), t, now, u.id, "auth.lockout", u.id, NULL);
    } else {
      sbx__dbx_lockout_set(M(r), t, u.id, failures, 0);
    }
    json_decref(j);
    return sbx__problem(r, 401, "Unauthorized", "invalid credentials");
  }
  if (failures || locked)
    sbx__dbx_lockout_set(M(r), t, u.id, 0, 0);
  sbx_meta_audit_append(M(r), t, now, u.id, "auth.login", u.id, NULL);
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

static int h_session_login(sbx__req *r) {
  static const char *const fields[] = {"tenant", "email", "password", "totp",
                                       NULL};
  if (!sbx__origin_ok(r)) /* login CSRF */
    return sbx__problem(r, 403, "Forbidden", "cross-origin request refused");
  json_t *j = sbx__body_object(r, fields);
  return j ? grant_password(r, j, 1) : 0;
}

static int h_token(sbx__req *r) {
  static const char *const fields[] = {"grant_type", "tenant", "email",
                                       "password", "refresh_token", "totp",
                                       NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *gt = jstr(j, "grant_type", 32, &bad);
  if (gt && !strcmp(gt, "password"))
    return grant_password(r, j, 0);
  if (gt && !strcmp(gt, "refresh_token")) {
    const char *rt = jstr(j, "refresh_token", 200, &bad);
    if (!rt)
      return bad_request(r, j, "refresh_token required");
    char t[SBX_ID_MAX], user[SBX_ID_MAX], nrt[160];
    int rc = sbx__refresh_rotate(r->srv, r->st, rt, sbx__now(), t, user, nrt);
    json_decref(j);
    if (rc == SBX_EAUTH || rc == SBX_EEXPIRED)
      return sbx__problem(r, 401, "Unauthorized", "invalid refresh token");
    if (rc)
      return sbx__problem_rc(r, rc);
    sbx_user u;
    if (sbx_meta_user_get(M(r), t, user, &u) || u.disabled)
      return sbx__problem(r, 401, "Unauthorized", "invalid refresh token");
    return token_reply(r, t, user, nrt);
  }
  return bad_request(r, j, "grant_type must be password or refresh_token");
}

static int h_bootstrap(sbx__req *r) {
  static const char *const fields[] = {"token", "email", "password", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *tok = jstr(j, "token", 200, &bad);
  const char *email = jstr(j, "email", 254, &bad);
  const char *pw = jstr(j, "password", 256, &bad);
  if (bad || !tok || !email_valid(email) || !password_ok(pw))
    return bad_request(r, j,
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
    rc = sbx_meta_begin(M(r));
  if (rc) {
    json_decref(j);
    return sbx__problem(r, 401, "Unauthorized", "invalid bootstrap token");
  }
  rc = sbx__dbx_bootstrap_take(M(r), t, h, sbx__now(), user);
  if (!rc)
    rc = sbx__password_hash(pw, hash);
  if (!rc)
    rc = email_index(r, email, idx);
  snprintf(ctx, sizeof ctx, "users.email|%s", user);
  if (!rc)
    rc = sbx_store_field_seal(r->st, t, ctx, email, strlen(email), sealed);
  if (!rc)
    rc = sbx__dbx_user_set_email(M(r), t, user, idx, sealed,
                                 strlen(email) + SBX_SEAL_OVERHEAD);
  if (!rc)
    rc = sbx__dbx_password_set(M(r), t, user, hash);
  if (!rc)
    rc = sbx_meta_audit_append(M(r), t, sbx__now(), user, "auth.bootstrap",
                               user, NULL);
  json_decref(j);
  if (rc) {
    sbx_meta_rollback(M(r));
    if (rc == SBX_EAUTH)
      return sbx__problem(r, 401, "Unauthorized", "invalid bootstrap token");
    return sbx__problem_rc(r, rc);
  }
  rc = sbx_meta_commit(M(r));
  if (rc)
    return sbx__problem_rc(r, rc);
  return token_reply(r, t, user, NULL);
}

/* ---- identity ---- */

static int apikey_role(sbx__req *r, const char *pid);

/* The caller. For an API key, "role" is what the key may do right now (its
 * own role capped by its user's and its creator's current roles, in its
 * project when it is project-scoped; "" when nothing) and "key_role" the
 * role it was issued with. */
static int h_me(sbx__req *r) {
  char role[SBX_KIND_MAX] = "";
  if (r->who.kind == SBX__CRED_APIKEY)
    snprintf(role, sizeof role, "%s",
             sbx__role_name(apikey_role(r, r->who.key_project[0] ? r->who.key_project
                                                                 : NULL)));
  else
    sbx__dbx_tenant_role_get(M(r), tenant(r), r->who.user, role);
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "tenant", tenant(r), "user",
                        r->who.user, "credential",
                        r->who.kind == SBX__CRED_APIKEY    ? "api_key"
                        : r->who.kind == SBX__CRED_SESSION ? "session"
                                                           : "access_token",
                        "role", role, "project_scope", r->who.key_project);
  if (o && r->who.kind == SBX__CRED_APIKEY)
    json_object_set_new(o, "key_role", json_string(sbx__role_name(r->who.key_role)));
  return sbx__reply_json(r, 200, o);
}

static int h_tenant_get(sbx__req *r) {
  if (strcmp(r->params[0], tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  sbx_tenant t;
  int rc = sbx_meta_tenant_get(M(r), tenant(r), &t);
  if (rc)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:s,s:I,s:I}", "id", t.id, "name",
                                   t.name, "state", (json_int_t)t.state,
                                   "created_at", (json_int_t)t.created_at));
}

/* ---- projects, users, memberships ---- */

static int h_projects_list(sbx__req *r) {
  return list_reply(r, "projects", NULL);
}

static int h_project_create(sbx__req *r) {
  static const char *const fields[] = {"id", "name", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *id = jstr(j, "id", SBX_ID_MAX, &bad);
  const char *name = jstr(j, "name", SBX_NAME_MAX - 1, &bad);
  if (bad || !sbx_id_valid(id) || !name || !*name)
    return bad_request(r, j, "id ([A-Za-z0-9_.-]{1,63}) and name required");
  int rc = sbx_meta_project_create(M(r), tenant(r), id, name, sbx__now());
  if (rc == SBX_EBACKEND || rc == SBX_ECONFLICT)
    rc = sbx__dbx_project_exists(M(r), tenant(r), id) ? rc : SBX_EEXIST;
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc);
  }
  sbx__audit(r, "project.create", id);
  json_t *out = json_pack("{s:s,s:s}", "id", id, "name", name);
  json_decref(j);
  return sbx__reply_json(r, 201, out);
}

static int h_project_get(sbx__req *r) {
  json_t *items = json_array();
  int rc = sbx__dbx_list(M(r), "project", tenant(r), r->params[0], "", 1,
                         items);
  json_t *found = json_incref(json_array_get(items, 0));
  json_decref(items);
  if (rc || !found) {
    json_decref(found);
    return sbx__problem_rc(r, rc ? rc : SBX_ENOTFOUND);
  }
  return sbx__reply_json(r, 200, found);
}

static int h_users_list(sbx__req *r) { return list_reply(r, "users", NULL); }

static int h_user_create(sbx__req *r) {
  static const char *const fields[] = {"id", "email", "password", "role",
                                       NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *id = jstr(j, "id", SBX_ID_MAX, &bad);
  const char *email = jstr(j, "email", 254, &bad);
  const char *pw = jstr(j, "password", 256, &bad);
  const char *role = jstr(j, "role", 16, &bad);
  if (bad || !sbx_id_valid(id) || !email_valid(email) ||
      (pw && !password_ok(pw)) || (role && !sbx__role_bit(role)))
    return bad_request(r, j,
                       "id, email required; password 12..256 chars; role "
                       "viewer|developer|analyst|admin");
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "%s", id);
  u.created_at = sbx__now();
  char ctx[96];
  snprintf(ctx, sizeof ctx, "users.email|%s", id);
  int rc = email_index(r, email, u.email_index);
  if (!rc)
    rc = sbx_store_field_seal(r->st, tenant(r), ctx, email, strlen(email),
                              u.email_sealed);
  u.email_sealed_len = strlen(email) + SBX_SEAL_OVERHEAD;
  if (!rc && pw)
    rc = sbx__password_hash(pw, u.password_hash);
  if (!rc)
    rc = sbx_meta_begin(M(r));
  if (!rc) {
    rc = sbx_meta_user_insert(M(r), tenant(r), &u);
    if (!rc && role)
      rc = sbx__dbx_tenant_role_set(M(r), tenant(r), id, role);
    if (rc)
      sbx_meta_rollback(M(r));
    else
      rc = sbx_meta_commit(M(r));
    sbx__authcache_invalidate();
  }
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc == SBX_EBACKEND ? SBX_EEXIST : rc);
  }
  sbx__audit(r, "user.create", id);
  json_t *out = json_pack("{s:s,s:s}", "id", id, "role", role ? role : "");
  json_decref(j);
  return sbx__reply_json(r, 201, out);
}

static int h_members_list(sbx__req *r) {
  return list_reply(r, "members", r->params[0]);
}

static int h_member_put(sbx__req *r) {
  static const char *const fields[] = {"role", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *role = jstr(j, "role", 16, &bad);
  if (bad || !sbx__role_bit(role))
    return bad_request(r, j, "role viewer|developer|analyst|admin required");
  sbx_user u;
  int rc = sbx_meta_user_get(M(r), tenant(r), r->params[1], &u);
  if (!rc)
    rc = sbx_meta_membership_set(M(r), tenant(r), r->params[0], r->params[1],
                                 role);
  sbx__authcache_invalidate(); /* cached roles and keys re-checked */
  if (!rc) {
    char target[160];
    snprintf(target, sizeof target, "%s/%s=%s", r->params[0], r->params[1],
             role);
    sbx__audit(r, "membership.set", target);
  }
  json_t *out = json_pack("{s:s,s:s,s:s}", "project_id", r->params[0],
                          "user_id", r->params[1], "role", role);
  json_decref(j);
  if (rc) {
    json_decref(out);
    return sbx__problem_rc(r, rc);
  }
  return sbx__reply_json(r, 200, out);
}

/* ---- API keys ---- */

static int h_keys_list(sbx__req *r) { return list_reply(r, "api_keys", NULL); }

static int h_key_create(sbx__req *r) {
  static const char *const fields[] = {"role", "project_id", "user_id",
                                       "expires_in_s", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *role = jstr(j, "role", 16, &bad);
  const char *project = jstr(j, "project_id", SBX_ID_MAX, &bad);
  const char *user = jstr(j, "user_id", SBX_ID_MAX, &bad);
  json_t *exp = json_object_get(j, "expires_in_s");
  int64_t ttl = 90 * 86400;
  if (exp) {
    if (!json_is_integer(exp) || json_integer_value(exp) < 1 ||
        json_integer_value(exp) > 366 * 86400)
      bad = 1;
    else
      ttl = json_integer_value(exp);
  }
  if (bad || !sbx__role_bit(role) || (project && !sbx_id_valid(project)) ||
      (user && !sbx_id_valid(user)))
    return bad_request(r, j,
                       "role required; project_id/user_id ids; expires_in_s "
                       "1..31622400");
  /* a key never carries more than its creator's role */
  if (sbx__role_bit(role) > r->role) {
    json_decref(j);
    return sbx__problem(r, 403, "Forbidden", "role above your own");
  }
  if (!user)
    user = r->who.user;
  sbx_user u;
  int rc = sbx_meta_user_get(M(r), tenant(r), user, &u);
  if (!rc && project)
    rc = sbx__dbx_project_exists(M(r), tenant(r), project);
  char id[SBX_ID_MAX], key[160];
  int64_t expires = sbx__now() + ttl;
  if (!rc)
    rc = sbx_meta_begin(M(r));
  if (!rc) {
    rc = sbx__apikey_create(r->st, tenant(r), user, project, role, expires,
                            id, key);
    if (!rc) /* its role stays capped by the creator's (sbx__authorize) */
      rc = sbx__dbx_apikey_issuer_set(M(r), tenant(r), id, r->who.user);
    if (rc)
      sbx_meta_rollback(M(r));
    else
      rc = sbx_meta_commit(M(r));
  }
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc == SBX_ENOTFOUND ? SBX_EINVAL : rc);
  }
  sbx__audit(r, "api_key.create", id);
  json_t *out =
      json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "id", id, "key", key, "role",
                role, "project_id", project ? project : "", "user_id", user,
                "expires_at", (json_int_t)expires);
  sbx_memwipe(key, sizeof key);
  json_decref(j);
  return sbx__reply_json(r, 201, out);
}

static int h_key_revoke(sbx__req *r) {
  int rc = sbx_meta_api_key_revoke(M(r), tenant(r), r->params[0], sbx__now());
  sbx__authcache_invalidate(); /* refused from the next request on */
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "api_key.revoke", r->params[0]);
  return sbx__reply_json(r, 200, json_pack("{s:s,s:b}", "id", r->params[0],
                                           "revoked", 1));
}

static int h_key_rotate(sbx__req *r) {
  int64_t overlap = 86400;
  if (r->body_len) {
    static const char *const fields[] = {"overlap_s", NULL};
    json_t *j = sbx__body_object(r, fields);
    if (!j)
      return 0;
    json_t *o = json_object_get(j, "overlap_s");
    if (o && (!json_is_integer(o) || json_integer_value(o) < 0 ||
              json_integer_value(o) > 7 * 86400))
      return bad_request(r, j, "overlap_s must be 0..604800");
    if (o)
      overlap = json_integer_value(o);
    json_decref(j);
  }
  sbx_api_key k;
  int rc = sbx_meta_api_key_get(M(r), tenant(r), r->params[0], &k);
  if (!rc && k.revoked_at)
    rc = SBX_ENOTFOUND;
  if (!rc && sbx__role_bit(k.role) > r->role)
    return sbx__problem(r, 403, "Forbidden", "role above your own");
  int64_t now = sbx__now();
  int64_t ttl = k.expires_at > k.created_at ? k.expires_at - k.created_at
                                            : 90 * 86400;
  char id[SBX_ID_MAX], key[160];
  if (!rc)
    rc = sbx_meta_begin(M(r));
  if (!rc) {
    rc = sbx__apikey_create(r->st, tenant(r), k.user_id, k.project_id, k.role,
                            now + ttl, id, key);
    int64_t old_exp = now + overlap;
    if (k.expires_at && k.expires_at < old_exp)
      old_exp = k.expires_at;
    if (!rc)
      rc = sbx__dbx_apikey_issuer_set(M(r), tenant(r), id, r->who.user);
    if (!rc)
      rc = sbx__dbx_apikey_set_expiry(M(r), tenant(r), k.id, old_exp);
    if (rc)
      sbx_meta_rollback(M(r));
    else
      rc = sbx_meta_commit(M(r));
    sbx__authcache_invalidate(); /* the old key's new expiry */
  }
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "api_key.rotate", k.id);
  json_t *out = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I}", "id", id, "key", key,
                          "role", k.role, "expires_at",
                          (json_int_t)(now + ttl), "previous_id", k.id,
                          "previous_expires_at",
                          (json_int_t)(overlap < 1 ? now : now + overlap));
  sbx_memwipe(key, sizeof key);
  return sbx__reply_json(r, 201, out);
}

/* ---- models and datasets (raw, never parsed here) ---- */

static json_t *object_json(const sbx_object *o) {
  char hex[65];
  sbx_hex(o->sha256, 32, hex);
  return json_pack("{s:s,s:s,s:s,s:I,s:s,s:I}", "id", o->id, "project_id",
                   o->project_id, "name", o->name, "size", (json_int_t)o->size,
                   "sha256", hex, "created_at", (json_int_t)o->created_at);
}

static int upload(sbx__req *r, const char *kind) {
  int rc;
  if (!r->upload) {
    const char *name = arg(r, "name");
    if (!sbx__name_valid(name))
      return sbx__problem(r, 400, "Bad Request",
                          "query parameter name: 1..128 of [A-Za-z0-9._-], "
                          "not starting with '.'");
    sbx_put_params pp = {r->params[0], kind, name, 0};
    rc = sbx_store_writer_open(r->st, tenant(r), &pp, &r->upload);
    if (rc)
      return sbx__problem_rc(r, rc);
  }
  if (r->body_len) {
    rc = sbx_store_writer_write(r->upload, r->body, r->body_len);
    r->upload_len += (int64_t)r->body_len;
    r->body_len = 0;
    if (rc) {
      sbx_store_writer_abort(r->upload);
      r->upload = NULL;
      return sbx__problem_rc(r, rc);
    }
  }
  if (!r->final)
    return 0;
  sbx_store_writer *w = r->upload;
  r->upload = NULL;
  if (r->upload_len == 0) {
    sbx_store_writer_abort(w);
    return sbx__problem(r, 400, "Bad Request", "empty upload");
  }
  sbx_object o;
  rc = sbx_store_writer_commit(w, &o);
  if (rc)
    return sbx__problem_rc(r, rc);
  char target[200];
  snprintf(target, sizeof target, "%s/%s", kind, o.id);
  char action[48];
  snprintf(action, sizeof action, "%s.upload", kind);
  sbx__audit(r, action, target);
  return sbx__reply_json(r, 201, object_json(&o));
}

/* The object in the path, of this kind, in this project (else 404). */
static int find_object(sbx__req *r, const char *kind, sbx_object *o) {
  int rc = sbx_meta_object_get(M(r), tenant(r), r->params[1], o);
  if (!rc && (strcmp(o->kind, kind) || strcmp(o->project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  return rc;
}

static int obj_get(sbx__req *r, const char *kind) {
  sbx_object o;
  int rc = find_object(r, kind, &o);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 200, object_json(&o));
}

static int obj_content(sbx__req *r, const char *kind) {
  sbx_object o;
  int rc = find_object(r, kind, &o);
  void *data = NULL;
  size_t n = 0;
  if (!rc)
    rc = sbx_store_get_alloc(r->st, tenant(r), o.id,
                             (size_t)r->srv->p.max_upload_bytes, &data, &n);
  if (rc)
    return sbx__problem_rc(r, rc);
  r->status = 200;
  r->resp = data;
  r->resp_len = n;
  r->resp_owned = 1;
  r->resp_type = "application/octet-stream";
  sbx__add_header(r, "Content-Disposition", "attachment");
  return 0;
}

static int obj_delete(sbx__req *r, const char *kind) {
  sbx_object o;
  int rc = find_object(r, kind, &o);
  if (!rc)
    rc = sbx_store_delete(r->st, tenant(r), o.id);
  if (rc)
    return sbx__problem_rc(r, rc);
  char action[48], target[200];
  snprintf(action, sizeof action, "%s.delete", kind);
  snprintf(target, sizeof target, "%s/%s", kind, o.id);
  sbx__audit(r, action, target);
  return sbx__reply_json(r, 200, json_pack("{s:s,s:b}", "id", o.id, "deleted",
                                           1));
}

static int h_models_list(sbx__req *r) {
  return list_reply(r, "model", r->params[0]);
}
static int h_model_upload(sbx__req *r) { return upload(r, "model"); }
static int h_model_get(sbx__req *r) { return obj_get(r, "model"); }
static int h_model_content(sbx__req *r) { return obj_content(r, "model"); }
static int h_model_delete(sbx__req *r) { return obj_delete(r, "model"); }
static int h_datasets_list(sbx__req *r) {
  return list_reply(r, "dataset", r->params[0]);
}
static int h_dataset_upload(sbx__req *r) { return upload(r, "dataset"); }
static int h_dataset_get(sbx__req *r) { return obj_get(r, "dataset"); }
static int h_dataset_content(sbx__req *r) { return obj_content(r, "dataset"); }
static int h_dataset_delete(sbx__req *r) { return obj_delete(r, "dataset"); }

/* ---- jobs (records only; execution is the worker's, issue 7) ---- */

static const char *const ATTACKS[] = {"fgsm", "pgd",  "apgd",       "cw",
                                      "deepfool", "square", "hsj", "fab",
                                      "autoattack", "eval", NULL};

static int h_jobs_list(sbx__req *r) {
  return list_reply(r, "jobs", r->params[0]);
}

static int h_job_create(sbx__req *r) {
  static const char *const fields[] = {"attack", "model_id", "dataset_id",
                                       "params", "seed", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *attack = jstr(j, "attack", 32, &bad);
  const char *model = jstr(j, "model_id", SBX_ID_MAX, &bad);
  const char *dataset = jstr(j, "dataset_id", SBX_ID_MAX, &bad);
  json_t *params = json_object_get(j, "params");
  json_t *seed = json_object_get(j, "seed");
  int known = 0;
  for (int i = 0; attack && ATTACKS[i]; i++)
    known |= !strcmp(attack, ATTACKS[i]);
  if (bad || !known || !sbx_id_valid(model) || !sbx_id_valid(dataset))
    return bad_request(r, j, "attack (known name), model_id, dataset_id");
  if (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0))
    return bad_request(r, j, "seed must be a non-negative integer");
  if (params) {
    if (!json_is_object(params) || json_object_size(params) > 32)
      return bad_request(r, j, "params must be an object of <= 32 entries");
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) {
      if (!sbx__name_valid(k) || strlen(k) > 32 ||
          !(json_is_number(v) || json_is_boolean(v) ||
            (json_is_string(v) && json_string_length(v) <= 64)))
        return bad_request(r, j,
                           "params: names [A-Za-z0-9._-]{1,32}, values "
                           "number, boolean or short string");
    }
  }
  sbx_object mo, dobj;
  int rc = sbx_meta_object_get(M(r), tenant(r), model, &mo);
  if (!rc && (strcmp(mo.kind, "model") || strcmp(mo.project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  if (!rc)
    rc = sbx_meta_object_get(M(r), tenant(r), dataset, &dobj);
  if (!rc &&
      (strcmp(dobj.kind, "dataset") || strcmp(dobj.project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  if (rc) {
    json_decref(j);
    return sbx__problem(r, 400, "Bad Request",
                        "model_id/dataset_id: no such object in this project");
  }
  json_t *pj = json_pack("{s:o,s:I}", "params",
                         params ? json_incref(params) : json_object(), "seed",
                         (json_int_t)(seed ? json_integer_value(seed) : 0));
  char *ptxt = json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(pj);
  char id[33];
  rc = ptxt ? sbx__rand_hex(id, 16) : SBX_ENOMEM;
  if (!rc)
    rc = sbx__dbx_job_insert(M(r), tenant(r), id, r->params[0], attack, model,
                             dataset, ptxt, r->who.user, sbx__now());
  free(ptxt);
  json_decref(j);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job.create", id);
  json_t *out = NULL;
  rc = sbx__dbx_job_get(M(r), tenant(r), r->params[0], id, &out);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 201, out);
}

static int h_job_get(sbx__req *r) {
  json_t *out = NULL;
  int rc = sbx__dbx_job_get(M(r), tenant(r), r->params[0], r->params[1], &out);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 200, out);
}

static int h_job_cancel(sbx__req *r) {
  json_t *out = NULL;
  int rc = sbx__dbx_job_get(M(r), tenant(r), r->params[0], r->params[1], &out);
  json_decref(out);
  if (!rc)
    rc = sbx__dbx_job_cancel(M(r), tenant(r), r->params[0], r->params[1],
                             sbx__now());
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job.cancel", r->params[1]);
  rc = sbx__dbx_job_get(M(r), tenant(r), r->params[0], r->params[1], &out);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 200, out);
}

static int h_job_results(sbx__req *r) {
  json_t *out = NULL;
  int rc = sbx__dbx_job_get(M(r), tenant(r), r->params[0], r->params[1], &out);
  json_decref(out);
  if (rc)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(r, 200, json_pack("{s:[],s:n}", "items",
                                           "next_cursor"));
}

static int h_audit_list(sbx__req *r) {
  const char *c = arg(r, "cursor");
  if (c && *c) {
    for (const char *p = c; *p; p++)
      if (!isdigit((unsigned char)*p) || p - c > 18)
        return sbx__problem(r, 400, "Bad Request", "malformed cursor");
  }
  return list_reply(r, "audit", NULL);
}

/* ---- the route table ---- */

#define P "/api/v1/projects/{project}"
const sbx__route sbx__routes[] = {
    {"GET", "/healthz", "public", 0, h_healthz, "Liveness", 200},
    {"GET", "/readyz", "public", 0, h_readyz, "Readiness (store reachable)",
     200},
    {"GET", "/.well-known/jwks.json", "public", 0, h_jwks,
     "Public keys of the access tokens", 200},
    {"GET", "/api/v1/openapi.json", "public", 0, h_openapi,
     "This document", 200},
    {"POST", "/api/v1/auth/token", "public", SBX__BODY_JSON, h_token,
     "Password or refresh-token grant", 200},
    {"POST", "/api/v1/auth/bootstrap", "public", SBX__BODY_JSON, h_bootstrap,
     "Redeem the one-time bootstrap link of the first admin", 200},
    {"GET", "/api/v1/auth/oidc/login", "public", 0, sbx__oidc_h_login,
     "Start an OIDC login (302 to the identity provider)", 302},
    {"GET", "/api/v1/auth/oidc/callback", "public", 0, sbx__oidc_h_callback,
     "OIDC redirect target: code exchange, our tokens and session cookie",
     200},
    {"POST", "/api/v1/auth/session", "public", SBX__BODY_JSON,
     h_session_login, "Password login to a browser session cookie", 200},
    {"GET", "/api/v1/auth/session", "authenticated", 0, sbx__session_h_get,
     "The caller's session (and its CSRF token)", 200},
    {"DELETE", "/api/v1/auth/session", "authenticated", 0,
     sbx__session_h_delete, "Log out of the browser session", 200},
    {"POST", "/api/v1/auth/totp", "authenticated", SBX__BODY_NONE,
     sbx__totp_h_enroll, "Enroll a TOTP second factor (pending)", 201},
    {"POST", "/api/v1/auth/totp/confirm", "authenticated", SBX__BODY_JSON,
     sbx__totp_h_confirm, "Confirm TOTP with a code: enables it", 200},
    {"GET", "/api/v1/me", "authenticated", 0, h_me, "The caller", 200},
    {"GET", "/api/v1/tenants/{tenant}", "tenant:read", 0, h_tenant_get,
     "The caller's tenant", 200},
    {"GET", "/api/v1/projects", "project:read", 0, h_projects_list,
     "List projects", 200},
    {"POST", "/api/v1/projects", "project:create", SBX__BODY_JSON,
     h_project_create, "Create a project", 201},
    {"GET", P, "project:read", 0, h_project_get, "Get a project", 200},
    {"GET", "/api/v1/users", "user:read", 0, h_users_list, "List users", 200},
    {"POST", "/api/v1/users", "user:create", SBX__BODY_JSON, h_user_create,
     "Create a local user", 201},
    {"GET", P "/members", "member:read", 0, h_members_list,
     "List project members", 200},
    {"PUT", P "/members/{user}", "member:write", SBX__BODY_JSON, h_member_put,
     "Set a member's role", 200},
    {"GET", "/api/v1/api-keys", "apikey:read", 0, h_keys_list,
     "List API keys (never the secrets)", 200},
    {"POST", "/api/v1/api-keys", "apikey:create", SBX__BODY_JSON,
     h_key_create, "Create an API key (shown once)", 201},
    {"DELETE", "/api/v1/api-keys/{key}", "apikey:revoke", 0, h_key_revoke,
     "Revoke an API key", 200},
    {"POST", "/api/v1/api-keys/{key}/rotate", "apikey:create",
     SBX__BODY_JSON, h_key_rotate,
     "Rotate: new key, the old one expires after an overlap", 201},
    {"GET", P "/models", "model:read", 0, h_models_list, "List models", 200},
    {"POST", P "/models", "model:write", SBX__BODY_UPLOAD, h_model_upload,
     "Upload a model (raw bytes, ?name=)", 201},
    {"GET", P "/models/{model}", "model:read", 0, h_model_get,
     "Model metadata", 200},
    {"GET", P "/models/{model}/content", "model:read", 0, h_model_content,
     "Download a model", 200},
    {"DELETE", P "/models/{model}", "model:delete", 0, h_model_delete,
     "Delete a model", 200},
    {"GET", P "/datasets", "dataset:read", 0, h_datasets_list,
     "List datasets", 200},
    {"POST", P "/datasets", "dataset:write", SBX__BODY_UPLOAD,
     h_dataset_upload, "Upload a dataset (raw bytes, ?name=)", 201},
    {"GET", P "/datasets/{dataset}", "dataset:read", 0, h_dataset_get,
     "Dataset metadata", 200},
    {"GET", P "/datasets/{dataset}/content", "dataset:read", 0,
     h_dataset_content, "Download a dataset", 200},
    {"DELETE", P "/datasets/{dataset}", "dataset:delete", 0, h_dataset_delete,
     "Delete a dataset", 200},
    {"GET", P "/jobs", "job:read", 0, h_jobs_list, "List jobs", 200},
    {"POST", P "/jobs", "job:create", SBX__BODY_JSON, h_job_create,
     "Create an attack job", 201},
    {"GET", P "/jobs/{job}", "job:read", 0, h_job_get, "Get a job", 200},
    {"POST", P "/jobs/{job}/cancel", "job:cancel", SBX__BODY_NONE,
     h_job_cancel, "Cancel a job", 200},
    {"GET", P "/jobs/{job}/results", "result:read", 0, h_job_results,
     "Results of a job", 200},
    {"GET", "/api/v1/audit-events", "audit:read", 0, h_audit_list,
     "Audit events (hash-chained)", 200},
    {"GET", "/metrics", "metrics", 0, sbx__metrics_h,
     "Prometheus metrics (operator token from metrics_token_file only)", 200},
};
#undef P
const size_t sbx__nroutes = sizeof sbx__routes / sizeof sbx__routes[0];

size_t sbx_server_route_count(void) { return sbx__nroutes; }

sbx_route_info sbx_server_route(size_t i) {
  sbx_route_info ri = {NULL, NULL, NULL, NULL};
  if (i < sbx__nroutes) {
    ri.method = sbx__routes[i].method;
    ri.pattern = sbx__routes[i].pattern;
    ri.permission = sbx__routes[i].perm;
    ri.summary = sbx__routes[i].summary;
  }
  return ri;
}

/* Matches path against pattern; {x} takes one valid id segment. */
static int match(const char *pattern, const char *path,
                 char params[SBX__MAX_PARAMS][SBX_ID_MAX]) {
  int np = 0;
  const char *p = pattern, *u = path;
  while (*p && *u) {
    if (*p == '{') {
      const char *pe = strchr(p, '}');
      const char *ue = strchr(u, '/');
      size_t n = ue ? (size_t)(ue - u) : strlen(u);
      if (!pe || n == 0 || n >= SBX_ID_MAX || np >= SBX__MAX_PARAMS)
        return 0;
      memcpy(params[np], u, n);
      params[np][n] = 0;
      if (!sbx_id_valid(params[np]))
        return 0;
      np++;
      p = pe + 1;
      u += n;
    } else if (*p++ != *u++) {
      return 0;
    }
  }
  return !*p && !*u;
}

int sbx__route_match(sbx__req *r, const char *method, const char *path,
                     int *path_known) {
  *path_known = 0;
  char params[SBX__MAX_PARAMS][SBX_ID_MAX];
  for (size_t i = 0; i < sbx__nroutes; i++) {
    if (!match(sbx__routes[i].pattern, path, params))
      continue;
    if (strcmp(sbx__routes[i].method, method)) {
      *path_known = 1;
      continue;
    }
    memcpy(r->params, params, sizeof params);
    return (int)i;
  }
  return -1;
}

/* ---- the one authorization check ---- */

/* A user's current role for this request: the tenant role, else (project
 * routes, pid != NULL) the membership role in pid; 0 for none and for a
 * disabled or unknown user. Cached (authcache.c). */
static int user_role(sbx__req *r, const char *user, const char *pid) {
  int trole = 0;
  if (r->who.user_checked && !strcmp(user, r->who.user))
    trole = r->who.user_trole; /* checked moments ago by authentication */
  else if (sbx__ac_user(r, tenant(r), user, &trole))
    return 0;
  if (trole || !pid)
    return trole;
  return sbx__ac_member(r, tenant(r), pid, user);
}

/* The lower of two roles in the order viewer < developer, analyst < admin;
 * developer and analyst are not comparable and meet at viewer; 0 (no role)
 * wins over everything. */
static int role_meet(int a, int b) {
  if (!a || !b)
    return 0;
  if (a == b || b == SBX__ROLE_ADMIN)
    return a;
  if (a == SBX__ROLE_ADMIN)
    return b;
  return SBX__ROLE_VIEWER;
}

/* An API key's role for project pid (NULL: tenant level). A project-scoped
 * key has no tenant-level role; otherwise the key's role, capped by the
 * current role of its user and of the user who created it: demoting,
 * removing or disabling them demotes the key. */
static int apikey_role(sbx__req *r, const char *pid) {
  int role = pid || !r->who.key_project[0] ? r->who.key_role : 0;
  if (role)
    role = role_meet(role, user_role(r, r->who.user, pid));
  if (role && r->who.key_issuer[0] && strcmp(r->who.key_issuer, r->who.user))
    role = role_meet(role, user_role(r, r->who.key_issuer, pid));
  return role;
}

int sbx__authorize(sbx__req *r) {
  const sbx__route *rt = &sbx__routes[r->route];
  if (!strcmp(rt->perm, "public"))
    return 0;
  if (r->who.kind == SBX__CRED_NONE) {
    sbx__add_header(r, "WWW-Authenticate", "Bearer");
    sbx__problem(r, 401, "Unauthorized", "credential required");
    return 1;
  }
  int project_scoped = strstr(rt->pattern, "/projects/{project}") != NULL;
  const char *pid = project_scoped ? r->params[0] : NULL;
  /* another tenant's project, or one outside the key's scope, does not
   * exist for this caller */
  if (pid && (sbx__dbx_project_exists(M(r), tenant(r), pid) ||
              (r->who.kind == SBX__CRED_APIKEY && r->who.key_project[0] &&
               strcmp(r->who.key_project, pid)))) {
    sbx__problem(r, 404, "Not Found", NULL);
    return 1;
  }
  int role;
  if (r->who.kind == SBX__CRED_APIKEY) {
    role = apikey_role(r, pid);
  } else { /* access token or session cookie */
    role = user_role(r, r->who.user, pid);
  }
  if (pid && !role) { /* no role in this project: it does not exist */
    sbx__problem(r, 404, "Not Found", NULL);
    return 1;
  }
  if (!strcmp(rt->perm, "authenticated")) {
    r->role = role;
    return 0;
  }
  if (!(perm_roles(rt->perm) & role)) {
    sbx__problem(r, 403, "Forbidden", "your role lacks this permission");
    return 1;
  }
  r->role = role;
  return 0;
}

/* ---- OpenAPI 3.1 from the route table ---- */

char *sbx_server_openapi(void) { return sbx__openapi_json(NULL); }

char *sbx__openapi_json(const sbx_server *s) {
  (void)s;
  json_t *paths = json_object();
  for (size_t i = 0; i < sbx__nroutes; i++) {
    const sbx__route *rt = &sbx__routes[i];
    json_t *item = json_object_get(paths, rt->pattern);
    if (!item) {
      item = json_object();
      json_object_set_new(paths, rt->pattern, item);
      json_t *params = json_array();
      for (const char *p = strchr(rt->pattern, '{'); p;
           p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        json_array_append_new(
            params,
            json_pack("{s:s%,s:s,s:b,s:{s:s,s:s}}", "name", p + 1,
                      (size_t)(e - p - 1), "in", "path", "required", 1,
                      "schema", "type", "string", "pattern",
                      "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}$"));
      }
      if (json_array_size(params))
        json_object_set_new(item, "parameters", params);
      else
        json_decref(params);
    }
    char method[8], opid[160], code[8];
    size_t k = 0;
    for (; rt->method[k] && k < sizeof method - 1; k++)
      method[k] = (char)tolower((unsigned char)rt->method[k]);
    method[k] = 0;
    snprintf(opid, sizeof opid, "%s", rt->summary);
    size_t o = 0;
    for (size_t c = 0; opid[c]; c++)
      if (isalnum((unsigned char)opid[c]))
        opid[o++] = opid[c];
    snprintf(opid + o, sizeof opid - o, "%zu", i);
    snprintf(code, sizeof code, "%d", rt->ok_status);
    json_t *responses = json_object();
    json_object_set_new(
        responses, code,
        json_pack("{s:s}", "description",
                  rt->ok_status == 201   ? "Created"
                  : rt->ok_status == 302 ? "Found (redirect)"
                                         : "OK"));
    static const char *const errs[][2] = {
        {"400", "Bad request"},       {"401", "Unauthenticated"},
        {"403", "Forbidden"},         {"404", "Not found"},
        {"413", "Content too large"}, {"429", "Rate limited"}};
    for (size_t e = 0; e < 6; e++)
      json_object_set_new(
          responses, errs[e][0],
          json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", errs[e][1],
                    "content", "application/problem+json", "schema", "$ref",
                    "#/components/schemas/Problem"));
    json_t *op = json_pack("{s:s,s:s,s:o,s:s}", "summary", rt->summary,
                           "operationId", opid, "responses", responses,
                           "x-permission", rt->perm);
    if (!strcmp(rt->perm, "public"))
      json_object_set_new(op, "security", json_array());
    if (rt->body == SBX__BODY_JSON)
      json_object_set_new(
          op, "requestBody",
          json_pack("{s:b,s:{s:{s:{s:s}}}}", "required",
                    strstr(rt->pattern, "/rotate") ? 0 : 1,
                    "content", "application/json", "schema", "type",
                    "object"));
    else if (rt->body == SBX__BODY_UPLOAD) {
      json_object_set_new(
          op, "requestBody",
          json_pack("{s:b,s:{s:{s:{s:s,s:s}}}}", "required", 1, "content",
                    "application/octet-stream", "schema", "type", "string",
                    "format", "binary"));
      json_object_set_new(
          op, "parameters",
          json_pack("[{s:s,s:s,s:b,s:{s:s}}]", "name", "name", "in", "query",
                    "required", 1, "schema", "type", "string"));
    }
    json_object_set_new(item, method, op);
  }
  json_t *doc = json_pack(
      "{s:s,s:{s:s,s:s},s:o,s:{s:{s:{s:s,s:s,s:s}},s:{s:{s:s,s:{s:{s:s},s:{"
      "s:s},s:{s:s},s:{s:s},s:{s:s}}}}},s:[{s:[]}]}",
      "openapi", "3.1.0", "info", "title", "AI Adversarial Sandbox API",
      "version", "1.0.0", "paths", paths, "components", "securitySchemes",
      "bearer", "type", "http", "scheme", "bearer", "bearerFormat",
      "API key (ak_...) or EdDSA JWT", "schemas", "Problem", "type", "object",
      "properties", "type", "type", "string", "title", "type", "string",
      "status", "type", "integer", "detail", "type", "string", "request_id",
      "type", "string", "security", "bearer");
  char *txt = doc ? json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
  json_decref(doc);
  return txt;
}
