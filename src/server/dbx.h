/*
 * dbx.h - the server's database layer: queries on the srv_* tables and the
 * paged lists, over sbx/sql.h. The tables are migrations of the store
 * (src/store/meta.c, versions 20..29); jobs are the store's job queue
 * (sbx/jobs.h). Calls
 * nothing above it; every function returns 0 or a negative sbx_status.
 */
#ifndef SBX_SERVER_DBX_H
#define SBX_SERVER_DBX_H

#include <jansson.h>
#include <stdint.h>

#include "buf.h"
#include "sbx/meta.h"
#include "sbx/sql.h"

/* Upserts a tenant role; the caller drops cached roles afterwards
 * (sbx__authcache_invalidate). */
int sbx__dbx_tenant_role_set(sbx_meta *m, const char *t, const char *user,
                             const char *role);
/* role "" when the user has no tenant role. */
int sbx__dbx_tenant_role_get(sbx_meta *m, const char *t, const char *user,
                             char role[SBX_KIND_MAX]);
/* SBX_OK when project pid exists in tenant t, else SBX_ENOTFOUND. */
int sbx__dbx_project_exists(sbx_meta *m, const char *t, const char *pid);
/* Runs a query (sbx/sql.h) and appends a JSON object per row to items:
 * cols has a letter per column (t text, i int, h hex of a blob), names
 * (NULL-terminated, at most 10) the keys. */
int sbx__dbx_query_json(sbx_meta *m, const char *sql, const sbx_sql_val *v,
                        int nv, const char *cols, const char *const *names,
                        json_t *items);
/* The same over rows of tenant t, where cols may also hold 's' (a sealable
 * text column, its sealed twin next as '-' named by its associated-data
 * label, e.g. "audit_events.actor"; the row id is column 0). */
int sbx__dbx_query_json_t(sbx_meta *m, const char *t, const char *sql,
                          const sbx_sql_val *v, int nv, const char *cols,
                          const char *const *names, json_t *items);
/* Paged lists (what: projects, project, users, members, api_keys, model,
 * dataset, audit): JSON objects appended to items, up to limit with
 * id > cursor; scope is the project of project lists. */
int sbx__dbx_list(sbx_meta *m, const char *what, const char *t,
                  const char *scope, const char *cursor, int limit,
                  json_t *items);
/* The same list as JSON text: up to limit items, comma-separated, appended
 * to out (one more row is fetched: *more = 1 when it exists); cursor_out
 * receives the cursor of the last item appended (its first column). */
int sbx__dbx_list_text(sbx_meta *m, const char *what, const char *t,
                       const char *scope, const char *cursor, int limit,
                       sbx__buf *out, int *more, char cursor_out[SBX_ID_MAX]);
/* Failed-login counters and lockouts (0, 0 when none). */
int sbx__dbx_lockout_get(sbx_meta *m, const char *t, const char *user,
                         int64_t *failures, int64_t *locked_until);
int sbx__dbx_lockout_set(sbx_meta *m, const char *t, const char *user,
                         int64_t failures, int64_t locked_until);
/* One-time bootstrap tokens, stored as keyed hashes. */
int sbx__dbx_bootstrap_put(sbx_meta *m, const char *t, const char *user,
                           const uint8_t hash[32], int64_t expires);
/* Consumes a one-time bootstrap token: SBX_EAUTH when unknown/used. */
int sbx__dbx_bootstrap_take(sbx_meta *m, const char *t, const uint8_t hash[32],
                            int64_t now, char user[SBX_ID_MAX]);
/* Refresh tokens (the store's refresh_tokens table). */
int sbx__dbx_refresh_insert(sbx_meta *m, const char *t, const char *id,
                            const char *family, const char *user,
                            const uint8_t hash[32], int64_t now,
                            int64_t expires);
/* SBX_ENOTFOUND when absent. */
int sbx__dbx_refresh_get(sbx_meta *m, const char *t, const char *id,
                         char family[SBX_ID_MAX], char user[SBX_ID_MAX],
                         uint8_t hash[32], int64_t *expires, int64_t *used,
                         int64_t *revoked);
/* Marks used iff unused and not revoked; SBX_ECONFLICT otherwise. */
int sbx__dbx_refresh_use(sbx_meta *m, const char *t, const char *id,
                         int64_t now);
int sbx__dbx_refresh_revoke_family(sbx_meta *m, const char *t,
                                   const char *family, int64_t now);
/* Who created an API key (srv_api_key_issuers); "" when not recorded. */
int sbx__dbx_apikey_issuer_set(sbx_meta *m, const char *t, const char *id,
                               const char *issuer);
int sbx__dbx_apikey_issuer_get(sbx_meta *m, const char *t, const char *id,
                               char issuer[SBX_ID_MAX]);
/* SBX_ENOTFOUND when absent or revoked. */
int sbx__dbx_apikey_set_expiry(sbx_meta *m, const char *t, const char *id,
                               int64_t expires_at);
int sbx__dbx_user_set_email(sbx_meta *m, const char *t, const char *user,
                            const uint8_t index[32], const uint8_t *sealed,
                            size_t sealed_len);
int sbx__dbx_password_set(sbx_meta *m, const char *t, const char *user,
                          const char *hash);

#endif
