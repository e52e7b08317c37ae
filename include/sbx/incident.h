/*
 * sbx/incident.h - incident-response operations on the metadata store
 * (src/store/incident.c): revoke every credential of a user at once.
 */
#ifndef SBX_INCIDENT_H
#define SBX_INCIDENT_H

#include <stdint.h>

#include "sbx/meta.h"

/* What sbx_meta_user_revoke_all ended. */
typedef struct sbx_revoke_counts {
  int64_t sessions;       /* browser sessions deleted */
  int64_t refresh_tokens; /* refresh tokens revoked */
  int64_t api_keys;       /* API keys the user owns or created, revoked */
} sbx_revoke_counts;

/* Revokes, in one transaction, every browser session and refresh token of
 * user_id in tenant_id, and every API key the user owns or created (a key
 * minted by a compromised account for someone else is revoked too).
 * Access tokens (JWTs) are not stored: they end at their expiry, or at
 * once with a JWT signing-key rotation that retires the old key. out (may
 * be NULL) receives the counts. SBX_ENOTFOUND when the user does not
 * exist; on error nothing changed and out is zeroed. */
int sbx_meta_user_revoke_all(sbx_meta *m, const char *tenant_id,
                             const char *user_id, int64_t now,
                             sbx_revoke_counts *out);

#endif
