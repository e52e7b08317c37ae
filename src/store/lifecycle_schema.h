/*
 * lifecycle_schema.h - private: the migration of the user lifecycle
 * (version 21), spliced into meta.c's MIGRATIONS list. Append only; never
 * edit an applied entry (meta.c refuses edited migrations by checksum).
 *   srv_token_denylist  access tokens refused before their expiry:
 *                       kind 'user': the user's tokens issued before
 *                       not_before; kind 'family': every token of a
 *                       refresh family (reuse detected, revocation).
 *                       Rows are dropped once expires_at has passed (the
 *                       longest access-token lifetime after the event).
 *   srv_sessions.auth_at  last interactive authentication of a browser
 *                       session (login or step-up re-authentication).
 */
#ifndef SBX_STORE_LIFECYCLE_SCHEMA_H
#define SBX_STORE_LIFECYCLE_SCHEMA_H

#define SBX__LIFECYCLE_MIGRATIONS                                              \
  {                                                                            \
    21, "server: token deny-list, session re-authentication time",             \
        "CREATE TABLE srv_token_denylist ("                                    \
        " tenant_id TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL," \
        " not_before BIGINT NOT NULL, expires_at BIGINT NOT NULL,"             \
        " PRIMARY KEY (tenant_id, kind, subject));"                            \
        "ALTER TABLE srv_sessions ADD COLUMN auth_at BIGINT NOT NULL DEFAULT " \
        "0;"                                                                   \
        "CREATE INDEX refresh_tokens_user ON refresh_tokens(tenant_id, "       \
        "user_id);"                                                            \
  }

#endif
