/*
 * routes_admin.c - handlers: the caller, the tenant, users, API keys, audit
 * events.
 */
#include "routes_admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "authcache.h"
#include "authz.h"
#include "dbx.h"
#include "hutil.h"
#include "quota.h"
#include "rbac.h"
#include "reply.h"
#include "util.h"

/* ---- identity ---- */

/* The caller. For an API key, "role" is what the key may do right now (its
 * own role capped by its user's and its creator's current roles, in its
 * project when it is project-scoped; "" when nothing) and "key_role" the
 * role it was issued with. */
int sbx__h_me(sbx__req *r) {
  char role[SBX_KIND_MAX] = "";
  if (r->who.kind == SBX__CRED_APIKEY)
    snprintf(role, sizeof role, "%s",
             sbx__role_name(sbx__authz_key_role(
                 r, r->who.key_project[0] ? r->who.key_project : NULL)));
  else
    sbx__dbx_tenant_role_get(sbx__meta(r), sbx__tenant(r), r->who.user, role);
  json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "tenant", sbx__tenant(r),
                        "user", r->who.user, "credential",
                        r->who.kind == SBX__CRED_APIKEY    ? "api_key"
                        : r->who.kind == SBX__CRED_SESSION ? "session"
                                                           : "access_token",
                        "role", role, "project_scope", r->who.key_project);
  if (o && r->who.kind == SBX__CRED_APIKEY)
    json_object_set_new(o, "key_role",
                        json_string(sbx__role_name(r->who.key_role)));
  return sbx__reply_json(r, 200, o);
}

int sbx__h_tenant_get(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  sbx_tenant t;
  int rc = sbx_meta_tenant_get(sbx__meta(r), sbx__tenant(r), &t);
  if (rc)
    return sbx__problem_rc(r, rc);
  json_t *o =
      json_pack("{s:s,s:s,s:I,s:I}", "id", t.id, "name", t.name, "state",
                (json_int_t)t.state, "created_at", (json_int_t)t.created_at);
  json_t *q = sbx__quota_json(r, t.id); /* limits and usage */
  if (!o || !q) {
    json_decref(o);
    json_decref(q);
    return sbx__problem(r, 500, "Internal Server Error", NULL);
  }
  json_object_set_new(o, "quota", q);
  return sbx__reply_json(r, 200, o);
}

int sbx__h_audit_list(sbx__req *r) {
  const char *c = sbx__arg(r, "cursor");
  if (c && *c) {
    for (const char *p = c; *p; p++)
      if (!isdigit((unsigned char)*p) || p - c > 18)
        return sbx__problem(r, 400, "Bad Request", "malformed cursor");
  }
  return sbx__list_reply(r, "audit", NULL);
}

/* ---- users ---- */

int sbx__h_users_list(sbx__req *r) {
  return sbx__list_reply(r, "users", NULL);
}

int sbx__h_user_create(sbx__req *r) {
  static const char *const fields[] = {"id", "email", "password", "role", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *id = sbx__jstr(j, "id", SBX_ID_MAX, &bad);
  const char *email = sbx__jstr(j, "email", 254, &bad);
  const char *pw = sbx__jstr(j, "password", 256, &bad);
  const char *role = sbx__jstr(j, "role", 16, &bad);
  if (bad || !sbx_id_valid(id) || !sbx__email_valid(email) ||
      (pw && !sbx__password_ok(pw)) || (role && !sbx__role_bit(role)))
    return sbx__bad_request(r, j,
                            "id, email required; password 12..256 chars; role "
                            "viewer|developer|analyst|admin");
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "%s", id);
  u.created_at = sbx__now();
  char ctx[96];
  snprintf(ctx, sizeof ctx, "users.email|%s", id);
  int rc = sbx__email_index(r, sbx__tenant(r), email, u.email_index);
  if (!rc)
    rc = sbx_store_field_seal(r->st, sbx__tenant(r), ctx, email, strlen(email),
                              u.email_sealed);
  u.email_sealed_len = strlen(email) + SBX_SEAL_OVERHEAD;
  if (!rc && pw)
    rc = sbx__password_hash(pw, u.password_hash);
  if (!rc)
    rc = sbx_meta_begin(sbx__meta(r));
  if (!rc) {
    rc = sbx_meta_user_insert(sbx__meta(r), sbx__tenant(r), &u);
    if (!rc && role)
      rc = sbx__dbx_tenant_role_set(sbx__meta(r), sbx__tenant(r), id, role);
    if (rc)
      sbx_meta_rollback(sbx__meta(r));
    else
      rc = sbx_meta_commit(sbx__meta(r));
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

/* ---- API keys ---- */

int sbx__h_keys_list(sbx__req *r) {
  return sbx__list_reply(r, "api_keys", NULL);
}

int sbx__h_key_create(sbx__req *r) {
  static const char *const fields[] = {"role", "project_id", "user_id",
                                       "expires_in_s", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *role = sbx__jstr(j, "role", 16, &bad);
  const char *project = sbx__jstr(j, "project_id", SBX_ID_MAX, &bad);
  const char *user = sbx__jstr(j, "user_id", SBX_ID_MAX, &bad);
  json_t *exp = json_object_get(j, "expires_in_s");
  int64_t ttl = SBX__APIKEY_TTL_DEFAULT;
  if (exp) {
    if (!json_is_integer(exp) || json_integer_value(exp) < 1 ||
        json_integer_value(exp) > SBX__APIKEY_TTL_MAX)
      bad = 1;
    else
      ttl = json_integer_value(exp);
  }
  if (bad || !sbx__role_bit(role) || (project && !sbx_id_valid(project)) ||
      (user && !sbx_id_valid(user)))
    return sbx__bad_request(
        r, j,
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
  int rc = sbx_meta_user_get(sbx__meta(r), sbx__tenant(r), user, &u);
  if (!rc && project)
    rc = sbx__dbx_project_exists(sbx__meta(r), sbx__tenant(r), project);
  char id[SBX_ID_MAX], key[160];
  int64_t expires = sbx__now() + ttl;
  if (!rc)
    rc = sbx_meta_begin(sbx__meta(r));
  if (!rc) {
    rc = sbx__apikey_create(r->st, sbx__tenant(r), user, project, role, expires,
                            id, key);
    if (!rc) /* its role stays capped by the creator's (sbx__authorize) */
      rc = sbx__dbx_apikey_issuer_set(sbx__meta(r), sbx__tenant(r), id,
                                      r->who.user);
    if (rc)
      sbx_meta_rollback(sbx__meta(r));
    else
      rc = sbx_meta_commit(sbx__meta(r));
  }
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc == SBX_ENOTFOUND ? SBX_EINVAL : rc);
  }
  sbx__audit(r, "api_key.create", id);
  json_t *out = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "id", id, "key", key,
                          "role", role, "project_id", project ? project : "",
                          "user_id", user, "expires_at", (json_int_t)expires);
  sbx_memwipe(key, sizeof key);
  json_decref(j);
  return sbx__reply_json(r, 201, out);
}

int sbx__h_key_revoke(sbx__req *r) {
  int rc = sbx_meta_api_key_revoke(sbx__meta(r), sbx__tenant(r), r->params[0],
                                   sbx__now());
  sbx__authcache_invalidate(); /* refused from the next request on */
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "api_key.revoke", r->params[0]);
  return sbx__reply_json(
      r, 200, json_pack("{s:s,s:b}", "id", r->params[0], "revoked", 1));
}

int sbx__h_key_rotate(sbx__req *r) {
  int64_t overlap = 86400;
  static const char *const fields[] = {"overlap_s", NULL};
  json_t *j = sbx__body_object(r, fields); /* optional: {} when absent */
  if (!j)
    return 0;
  json_t *o = json_object_get(j, "overlap_s");
  if (o && (!json_is_integer(o) || json_integer_value(o) < 0 ||
            json_integer_value(o) > 7 * 86400))
    return sbx__bad_request(r, j, "overlap_s must be 0..604800");
  if (o)
    overlap = json_integer_value(o);
  json_decref(j);
  sbx_api_key k;
  int rc = sbx_meta_api_key_get(sbx__meta(r), sbx__tenant(r), r->params[0], &k);
  int64_t now = sbx__now();
  if (rc)
    return sbx__problem_rc(r, rc);
  /* a dead key is not renewed: whoever holds it needs a new key */
  if (k.revoked_at)
    return sbx__problem(r, 409, "Conflict",
                        "the key is revoked: create a new key instead");
  if (k.expires_at && k.expires_at <= now)
    return sbx__problem(r, 409, "Conflict",
                        "the key has expired: create a new key instead");
  if (sbx__role_bit(k.role) > r->role)
    return sbx__problem(r, 403, "Forbidden", "role above your own");
  int64_t ttl = k.expires_at > k.created_at &&
                        k.expires_at - k.created_at <= SBX__APIKEY_TTL_MAX
                    ? k.expires_at - k.created_at
                    : SBX__APIKEY_TTL_DEFAULT;
  char id[SBX_ID_MAX], key[160];
  rc = sbx_meta_begin(sbx__meta(r));
  if (!rc) {
    rc = sbx__apikey_create(r->st, sbx__tenant(r), k.user_id, k.project_id,
                            k.role, now + ttl, id, key);
    int64_t old_exp = now + overlap;
    if (k.expires_at && k.expires_at < old_exp)
      old_exp = k.expires_at;
    if (!rc)
      rc = sbx__dbx_apikey_issuer_set(sbx__meta(r), sbx__tenant(r), id,
                                      r->who.user);
    if (!rc)
      rc = sbx__dbx_apikey_set_expiry(sbx__meta(r), sbx__tenant(r), k.id,
                                      old_exp);
    if (rc)
      sbx_meta_rollback(sbx__meta(r));
    else
      rc = sbx_meta_commit(sbx__meta(r));
    sbx__authcache_invalidate(); /* the old key's new expiry */
  }
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "api_key.rotate", k.id);
  json_t *out = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I}", "id", id, "key", key,
                          "role", k.role, "expires_at", (json_int_t)(now + ttl),
                          "previous_id", k.id, "previous_expires_at",
                          (json_int_t)(overlap < 1 ? now : now + overlap));
  sbx_memwipe(key, sizeof key);
  return sbx__reply_json(r, 201, out);
}
