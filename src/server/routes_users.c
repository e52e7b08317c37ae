/*
 * routes_users.c - handlers: step-up re-authentication, password change,
 * and the user and membership lifecycle (routes_users.h).
 *
 * Every change here is committed, then sbx__authcache_invalidate() makes
 * it effective for this process's next request; other server processes
 * see it within their auth cache's window (SBX__AC_TTL_S, 5 s), sessions
 * at once (they are read from the database on every request). Every
 * change is audited. Users are looked up in the caller's tenant only: a
 * user of another tenant is 404 like an unknown one.
 */
#include "routes_users.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "auth.h"
#include "authcache.h"
#include "dbx.h"
#include "hutil.h"
#include "rbac.h"
#include "reply.h"
#include "reqlog.h"
#include "router.h"
#include "sbx/sql.h"
#include "session.h"
#include "state.h"
#include "totp.h"
#include "util.h"

/* The password (and TOTP code, when enrolled) of the caller's own user.
 * Returns 0 when they match, else answers (401/409) and returns 1. */
static int check_password(sbx__req *r, const char *pw, const char *code) {
  sbx_user u;
  int rc = sbx_meta_user_get(sbx__meta(r), sbx__tenant(r), r->who.user, &u);
  if (rc) {
    sbx__problem_rc(r, rc == SBX_ENOTFOUND ? SBX_EAUTH : rc);
    return 1;
  }
  if (!u.password_hash[0]) {
    sbx__problem(r, 409, "Conflict",
                 "this account has no password: log in again through the "
                 "identity provider");
    return 1;
  }
  int refused = !pw || sbx__password_verify(u.password_hash, pw);
  if (!refused && sbx__totp_enabled(r, sbx__tenant(r), u.id))
    refused = !code || sbx__totp_check(r, sbx__tenant(r), u.id, code,
                                       sbx__now()) != SBX_OK;
  sbx_memwipe(&u, sizeof u);
  if (refused) {
    sbx__reqlog_event(r, "warn", "reauth.failed", r->who.user);
    sbx__problem(r, 401, "Unauthorized",
                 "invalid credentials (password, and totp when enrolled)");
    return 1;
  }
  return 0;
}

int sbx__h_reauth(sbx__req *r) {
  static const char *const fields[] = {"password", "totp", NULL};
  if (r->who.kind != SBX__CRED_SESSION && r->who.kind != SBX__CRED_JWT)
    return sbx__problem(r, 403, "Forbidden",
                        "step-up re-authentication takes a browser session "
                        "or an access token, never an API key");
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *pw = sbx__jstr(j, "password", 256, &bad);
  const char *code = sbx__jstr(j, "totp", 16, &bad);
  if (bad || !pw)
    return sbx__bad_request(r, j, "password required (and totp if enrolled)");
  int refused = check_password(r, pw, code);
  json_decref(j);
  if (refused)
    return 0;
  int64_t now = sbx__now();
  json_t *out = json_pack("{s:I,s:I}", "auth_time", (json_int_t)now,
                          "valid_until", (json_int_t)(now + SBX__STEPUP_S));
  if (r->who.kind == SBX__CRED_SESSION) {
    int rc = sbx__session_stamp(r, now);
    if (rc) {
      json_decref(out);
      return sbx__problem_rc(r, rc);
    }
  } else { /* a new access token, same family, with auth_time now */
    char at[1024];
    int rc = sbx__jwt_issue_fam(r->srv, sbx__tenant(r), r->who.user,
                                r->who.family, now, now, at, sizeof at);
    if (rc) {
      json_decref(out);
      return sbx__problem_rc(r, rc);
    }
    json_object_set_new(out, "access_token", json_string(at));
    json_object_set_new(out, "token_type", json_string("Bearer"));
    sbx_memwipe(at, sizeof at);
  }
  sbx__audit(r, "auth.reauth", r->who.user);
  return sbx__reply_json(r, 200, out);
}

int sbx__h_password_change(sbx__req *r) {
  static const char *const fields[] = {"current_password", "new_password",
                                       "totp", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *cur = sbx__jstr(j, "current_password", 256, &bad);
  const char *pw = sbx__jstr(j, "new_password", 256, &bad);
  const char *code = sbx__jstr(j, "totp", 16, &bad);
  if (bad || !cur || !sbx__password_ok(pw))
    return sbx__bad_request(r, j,
                            "current_password and new_password (12..256 "
                            "characters) required");
  char hash[160];
  int rc = check_password(r, cur, code) ? 1 : sbx__password_hash(pw, hash);
  json_decref(j);
  if (rc == 1)
    return 0;
  if (!rc)
    rc = sbx__dbx_password_set(sbx__meta(r), sbx__tenant(r), r->who.user, hash);
  sbx_memwipe(hash, sizeof hash);
  /* whoever held the old password holds no session any more (this one
   * included: log in again with the new password) */
  sbx_revoke_counts c = {0, 0, 0};
  if (!rc)
    rc = sbx_meta_user_revoke_all(sbx__meta(r), sbx__tenant(r), r->who.user,
                                  sbx__now(), 0, &c);
  sbx__authcache_invalidate();
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "auth.password_change", r->who.user);
  return sbx__reply_json(
      r, 200,
      json_pack("{s:b,s:I}", "changed", 1, "sessions_revoked",
                (json_int_t)(c.sessions + c.refresh_tokens)));
}

/* The user of params[0] exists in the caller's tenant: 0, else answers
 * 404 (or the store's error) and returns 1. */
static int user_exists(sbx__req *r) {
  sbx_user u;
  int rc = sbx_meta_user_get(sbx__meta(r), sbx__tenant(r), r->params[0], &u);
  sbx_memwipe(&u, sizeof u);
  if (rc) {
    sbx__problem_rc(r, rc);
    return 1;
  }
  return 0;
}

/* An Admin cannot demote, disable or delete their own user (the tenant
 * would risk losing its last Admin); answers 409 and returns 1. */
static int refuse_self(sbx__req *r, const char *what) {
  if (strcmp(r->params[0], r->who.user))
    return 0;
  char msg[96];
  snprintf(msg, sizeof msg, "you cannot %s your own user", what);
  sbx__problem(r, 409, "Conflict", msg);
  return 1;
}

/* The statements of PATCH /users/{user} in one transaction. role NULL:
 * unchanged, "" or "none": no tenant role. disabled < 0: unchanged. */
static int user_update(sbx__req *r, const char *role, int disabled) {
  sbx_meta *m = sbx__meta(r);
  const char *t = sbx__tenant(r), *u = r->params[0];
  int rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  if (role && sbx__role_bit(role))
    rc = sbx__dbx_tenant_role_set(m, t, u, role);
  else if (role) {
    sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(u)};
    rc = sbx_sql_exec(m,
                      "DELETE FROM srv_tenant_roles WHERE tenant_id = $1 AND "
                      "user_id = $2",
                      v, 2, NULL, NULL, NULL);
  }
  if (!rc && disabled >= 0)
    rc = sbx_meta_user_set_disabled(m, t, u, disabled);
  if (rc) {
    sbx_meta_rollback(m);
    return rc;
  }
  rc = sbx_meta_commit(m);
  /* a disabled user's sessions and refresh tokens end for good (they
   * would otherwise come back with a later enable) */
  if (!rc && disabled > 0)
    rc = sbx_meta_user_revoke_all(m, t, u, sbx__now(), 0, NULL);
  return rc;
}

int sbx__h_user_patch(sbx__req *r) {
  static const char *const fields[] = {"role", "disabled", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *role = sbx__jstr(j, "role", 16, &bad);
  json_t *dis = json_object_get(j, "disabled");
  if (bad || (dis && !json_is_boolean(dis)) || (!role && !dis) ||
      (role && *role && strcmp(role, "none") && !sbx__role_bit(role)))
    return sbx__bad_request(r, j,
                            "role (viewer|developer|analyst|admin|none) "
                            "and/or disabled (boolean) required");
  int disabled = dis ? json_is_true(dis) : -1;
  int self_change =
      (role && sbx__role_bit(role) != SBX__ROLE_ADMIN) || disabled > 0;
  if ((self_change && refuse_self(r, "demote or disable")) || user_exists(r)) {
    json_decref(j);
    return 0;
  }
  char target[160];
  snprintf(target, sizeof target, "%s role=%s disabled=%s", r->params[0],
           role ? (*role ? role : "none") : "-",
           disabled < 0 ? "-"
           : disabled   ? "1"
                        : "0");
  int rc = user_update(r, role, disabled);
  sbx__authcache_invalidate(); /* roles and user state re-read at once */
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc);
  }
  sbx__audit(r, "user.update", target);
  json_t *out = json_pack("{s:s}", "id", r->params[0]);
  if (role)
    json_object_set_new(out, "role",
                        json_string(sbx__role_bit(role) ? role : ""));
  if (disabled >= 0)
    json_object_set_new(out, "disabled", json_boolean(disabled));
  json_decref(j);
  return sbx__reply_json(r, 200, out);
}

int sbx__h_user_delete(sbx__req *r) {
  if (refuse_self(r, "delete"))
    return 0;
  int rc = sbx_meta_user_delete(sbx__meta(r), sbx__tenant(r), r->params[0],
                                sbx__now());
  sbx__authcache_invalidate();
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "user.delete", r->params[0]);
  return sbx__reply_json(
      r, 200, json_pack("{s:s,s:b}", "id", r->params[0], "deleted", 1));
}

int sbx__h_user_totp_reset(sbx__req *r) {
  if (user_exists(r))
    return 0;
  int removed = 0;
  int rc = sbx__totp_delete(r, sbx__tenant(r), r->params[0], &removed);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "user.totp_reset", r->params[0]);
  return sbx__reply_json(
      r, 200, json_pack("{s:s,s:b}", "id", r->params[0], "removed", removed));
}

int sbx__h_user_revoke_sessions(sbx__req *r) {
  static const char *const fields[] = {"api_keys", "issued_keys", NULL};
  json_t *j = sbx__body_object(r, fields); /* optional: {} when absent */
  if (!j)
    return 0;
  json_t *ak = json_object_get(j, "api_keys");
  json_t *ik = json_object_get(j, "issued_keys");
  if ((ak && !json_is_boolean(ak)) || (ik && !json_is_boolean(ik)))
    return sbx__bad_request(r, j, "api_keys, issued_keys: booleans");
  unsigned flags = (ak && json_is_true(ak) ? SBX_REVOKE_API_KEYS : 0) |
                   (ik && json_is_true(ik) ? SBX_REVOKE_ISSUED_KEYS : 0);
  json_decref(j);
  if (user_exists(r))
    return 0;
  sbx_revoke_counts c;
  int rc = sbx_meta_user_revoke_all(sbx__meta(r), sbx__tenant(r), r->params[0],
                                    sbx__now(), flags, &c);
  sbx__authcache_invalidate();
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, flags ? "user.revoke_all" : "user.revoke_sessions",
             r->params[0]);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:I,s:I,s:I}", "id", r->params[0],
                                   "sessions", (json_int_t)c.sessions,
                                   "refresh_tokens",
                                   (json_int_t)c.refresh_tokens, "api_keys",
                                   (json_int_t)c.api_keys));
}

int sbx__h_member_delete(sbx__req *r) {
  int rc = sbx_meta_membership_delete(sbx__meta(r), sbx__tenant(r),
                                      r->params[0], r->params[1]);
  sbx__authcache_invalidate(); /* cached roles and keys re-checked */
  if (rc)
    return sbx__problem_rc(r, rc);
  char target[160];
  snprintf(target, sizeof target, "%s/%s", r->params[0], r->params[1]);
  sbx__audit(r, "membership.delete", target);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:s,s:b}", "project_id", r->params[0],
                                   "user_id", r->params[1], "removed", 1));
}
