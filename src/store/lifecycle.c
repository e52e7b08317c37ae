/*
 * lifecycle.c - the user lifecycle in the metadata store (sbx/meta.h):
 * revoking everything a user holds, disabling and deleting users, removing
 * memberships, and the access-token deny-list (lifecycle_schema.h).
 *
 * Access tokens are stateless JWTs (15 min at most); what revokes them
 * before their expiry is a deny-list row, read by every server process
 * through its auth cache (src/server/authcache.c, at most SBX__AC_TTL_S
 * seconds late on another process):
 *   ('user', user_id)     tokens of the user issued before not_before;
 *   ('family', family_id) every token of a refresh-token family.
 * A row lives SBX_ACCESS_TOKEN_MAX_S seconds after the event (the longest
 * lifetime of a token it can refuse) and is then dropped.
 */
#include <string.h>

#include "db.h"
#include "sbx/meta.h"

#define DB(m) sbx__meta_db(m)

/* Runs one statement; *changes (may be NULL) += rows changed. */
static int run(sbx_meta *m, const char *sql, const sbx__val *v, int nv,
               int64_t *changes) {
  int64_t ch = 0;
  int rc = sbx__db_exec(DB(m), sql, v, nv, NULL, NULL, &ch);
  if (!rc && changes)
    *changes += ch;
  return rc;
}

/* Upserts the deny-list row (kind, subject) of tenant with not_before
 * now, expiring SBX_ACCESS_TOKEN_MAX_S seconds later. */
static int deny(sbx_meta *m, const char *tenant_id, const char *kind,
                const char *subject, int64_t now) {
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(kind), SBX_VT(subject), SBX_VI(now),
                  SBX_VI(now + SBX_ACCESS_TOKEN_MAX_S)};
  return run(m,
             "INSERT INTO srv_token_denylist (tenant_id, kind, subject, "
             "not_before, expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT "
             "(tenant_id, kind, subject) DO UPDATE SET not_before = "
             "excluded.not_before, expires_at = excluded.expires_at",
             v, 5, NULL);
}

/* The statements of sbx_meta_user_revoke_all, inside its transaction. */
static int revoke_all_tx(sbx_meta *m, const char *t, const char *u, int64_t now,
                         unsigned flags, sbx_revoke_counts *c) {
  sbx__val v2[] = {SBX_VT(t), SBX_VT(u)};
  sbx__val v3[] = {SBX_VT(t), SBX_VT(u), SBX_VI(now)};
  sbx__val v4[] = {SBX_VT(t), SBX_VT(u), SBX_VI(now),
                   SBX_VI(now + SBX_ACCESS_TOKEN_MAX_S)};
  int rc =
      run(m, "DELETE FROM srv_sessions WHERE tenant_id = $1 AND user_id = $2",
          v2, 2, &c->sessions);
  /* the access tokens of every family still alive, at once; those issued
   * later in this same second belong to new families */
  if (!rc)
    rc = run(m,
             "INSERT INTO srv_token_denylist (tenant_id, kind, subject, "
             "not_before, expires_at) SELECT DISTINCT tenant_id, 'family', "
             "family_id, CAST($3 AS BIGINT), CAST($4 AS BIGINT) FROM "
             "refresh_tokens WHERE tenant_id = $1 AND user_id = $2 AND "
             "expires_at > $3 ON CONFLICT (tenant_id, kind, subject) DO "
             "UPDATE SET not_before = excluded.not_before, expires_at = "
             "excluded.expires_at",
             v4, 4, NULL);
  if (!rc)
    rc = run(m,
             "UPDATE refresh_tokens SET revoked_at = $3 WHERE tenant_id = $1 "
             "AND user_id = $2 AND revoked_at = 0 AND used_at = 0",
             v3, 3, &c->refresh_tokens);
  if (!rc)
    rc = run(m,
             "UPDATE refresh_tokens SET revoked_at = $3 WHERE tenant_id = $1 "
             "AND user_id = $2 AND revoked_at = 0",
             v3, 3, NULL);
  if (!rc) /* tokens without a family (none today) by their issue time */
    rc = deny(m, t, "user", u, now);
  if (!rc && (flags & SBX_REVOKE_API_KEYS))
    rc = run(m,
             "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND "
             "user_id = $2 AND revoked_at = 0",
             v3, 3, &c->api_keys);
  if (!rc && (flags & SBX_REVOKE_ISSUED_KEYS))
    rc = run(m,
             "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND "
             "revoked_at = 0 AND id IN (SELECT key_id FROM "
             "srv_api_key_issuers WHERE tenant_id = $1 AND issued_by = $2)",
             v3, 3, &c->api_keys);
  if (!rc) {
    sbx__val vx[] = {SBX_VT(t), SBX_VI(now)};
    rc = run(m,
             "DELETE FROM srv_token_denylist WHERE tenant_id = $1 AND "
             "expires_at <= $2",
             vx, 2, NULL);
  }
  return rc;
}

int sbx_meta_user_revoke_all(sbx_meta *m, const char *tenant_id,
                             const char *user_id, int64_t now, unsigned flags,
                             sbx_revoke_counts *out) {
  sbx_revoke_counts c = {0, 0, 0};
  if (out)
    *out = c;
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(user_id))
    return SBX_EINVAL;
  int rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  rc = revoke_all_tx(m, tenant_id, user_id, now, flags, &c);
  if (rc) {
    sbx_meta_rollback(m);
    return rc;
  }
  rc = sbx_meta_commit(m);
  if (!rc && out)
    *out = c;
  return rc;
}

int sbx_meta_user_set_disabled(sbx_meta *m, const char *tenant_id,
                               const char *user_id, int disabled) {
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(user_id))
    return SBX_EINVAL;
  int64_t ch = 0;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(user_id), SBX_VI(disabled != 0)};
  int rc =
      run(m, "UPDATE users SET disabled = $3 WHERE tenant_id = $1 AND id = $2",
          v, 3, &ch);
  return rc ? rc : (ch ? SBX_OK : SBX_ENOTFOUND);
}

int sbx_meta_user_delete(sbx_meta *m, const char *tenant_id,
                         const char *user_id, int64_t now) {
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(user_id))
    return SBX_EINVAL;
  static const char *const del[] = {
      "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
      "DELETE FROM srv_tenant_roles WHERE tenant_id = $1 AND user_id = $2",
      "DELETE FROM srv_totp WHERE tenant_id = $1 AND user_id = $2",
      "DELETE FROM srv_lockouts WHERE tenant_id = $1 AND user_id = $2",
      "DELETE FROM users WHERE tenant_id = $1 AND id = $2"};
  sbx_revoke_counts c = {0, 0, 0};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(user_id)};
  int rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  rc = revoke_all_tx(m, tenant_id, user_id, now, SBX_REVOKE_API_KEYS, &c);
  int64_t users = 0;
  for (size_t i = 0; !rc && i < sizeof del / sizeof del[0]; i++)
    rc = run(m, del[i], v, 2,
             i + 1 == sizeof del / sizeof del[0] ? &users : NULL);
  if (!rc && !users)
    rc = SBX_ENOTFOUND;
  if (rc) {
    sbx_meta_rollback(m);
    return rc;
  }
  return sbx_meta_commit(m);
}

int sbx_meta_membership_delete(sbx_meta *m, const char *tenant_id,
                               const char *project_id, const char *user_id) {
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(project_id) ||
      !sbx_id_valid(user_id))
    return SBX_EINVAL;
  int64_t ch = 0;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(project_id), SBX_VT(user_id)};
  int rc = run(m,
               "DELETE FROM memberships WHERE tenant_id = $1 AND project_id = "
               "$2 AND user_id = $3",
               v, 3, &ch);
  return rc ? rc : (ch ? SBX_OK : SBX_ENOTFOUND);
}

int sbx_meta_family_deny(sbx_meta *m, const char *tenant_id,
                         const char *family_id, int64_t now) {
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(family_id))
    return SBX_EINVAL;
  return deny(m, tenant_id, "family", family_id, now);
}

static int row_nbf(void *ctx, const sbx__row *r) {
  *(int64_t *)ctx = sbx__col_int(r, 0);
  return 0;
}

int sbx_meta_token_denied(sbx_meta *m, const char *tenant_id, const char *kind,
                          const char *subject, int64_t now,
                          int64_t *not_before) {
  *not_before = 0;
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(subject))
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(kind), SBX_VT(subject),
                  SBX_VI(now)};
  return sbx__db_exec(DB(m),
                      "SELECT not_before FROM srv_token_denylist WHERE "
                      "tenant_id = $1 AND kind = $2 AND subject = $3 AND "
                      "expires_at > $4",
                      v, 4, row_nbf, not_before, NULL);
}
