/*
 * incident.c - incident-response operations on the metadata store
 * (sbx/incident.h).
 */
#include "sbx/incident.h"

#include <string.h>

#include "sbx/sql.h"

int sbx_meta_user_revoke_all(sbx_meta *m, const char *tenant_id,
                             const char *user_id, int64_t now,
                             sbx_revoke_counts *out) {
  sbx_revoke_counts c;
  memset(&c, 0, sizeof c);
  if (out)
    *out = c;
  if (!m || !sbx_id_valid(tenant_id) || !sbx_id_valid(user_id))
    return SBX_EINVAL;
  sbx_user u;
  int rc = sbx_meta_user_get(m, tenant_id, user_id, &u);
  if (rc)
    return rc;
  sbx_sql_val v[] = {SBX_SQL_T(tenant_id), SBX_SQL_T(user_id), SBX_SQL_I(now)};
  rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  rc = sbx_sql_exec(m,
                    "DELETE FROM srv_sessions WHERE tenant_id = $1 AND "
                    "user_id = $2",
                    v, 2, NULL, NULL, &c.sessions);
  if (!rc)
    rc = sbx_sql_exec(m,
                      "UPDATE refresh_tokens SET revoked_at = $3 WHERE "
                      "tenant_id = $1 AND user_id = $2 AND revoked_at = 0",
                      v, 3, NULL, NULL, &c.refresh_tokens);
  if (!rc)
    rc = sbx_sql_exec(m,
                      "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = "
                      "$1 AND revoked_at = 0 AND (user_id = $2 OR id IN "
                      "(SELECT key_id FROM srv_api_key_issuers WHERE "
                      "tenant_id = $1 AND issued_by = $2))",
                      v, 3, NULL, NULL, &c.api_keys);
  if (rc) {
    sbx_meta_rollback(m);
    return rc;
  }
  rc = sbx_meta_commit(m);
  if (!rc && out)
    *out = c;
  return rc;
}
