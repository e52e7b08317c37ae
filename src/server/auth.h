/*
 * auth.h - credentials: API keys, own EdDSA access tokens (JWT), refresh
 * tokens with rotation and family revocation, Argon2id passwords, and
 * sbx__authenticate, which reads whichever the request carries.
 */
#ifndef SBX_SERVER_AUTH_H
#define SBX_SERVER_AUTH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "req.h"
#include "sbx/store.h"

/* Reads the Authorization header (else the session cookie) and fills
 * r->who (kind NONE when absent). Returns 0, or SBX_EAUTH / SBX_EEXPIRED
 * for a bad credential. Authorization is sbx__authorize's (authz.h). */
int sbx__authenticate(sbx__req *r);
/* API-key lifetimes (security policy: 90-day default, 366 max) and the
 * window before expiry in which every use of a key is warned about: the
 * answer carries "X-API-Key-Expires: <unix time>; in-days=<n>" and the
 * request log a "api_key.expiring" event (once a minute per key). */
#define SBX__APIKEY_TTL_DEFAULT (90 * 86400)
#define SBX__APIKEY_TTL_MAX (366 * 86400)
#define SBX__APIKEY_WARN_S (14 * 86400)
/* API key "ak_<tenant>~<id>.<secret>": creates and stores it (hash only).
 * key_out >= 160 bytes, id_out >= SBX_ID_MAX. */
int sbx__apikey_create(sbx_store *st, const char *tenant, const char *user,
                       const char *project, const char *role,
                       int64_t expires_at, char *id_out, char *key_out);
/* The Ed25519 signing key sealed in <data_dir>/jwt-ed25519.sealed
 * (created once) and the retired keys of jwt-retired.txt still verifying;
 * a failure is logged. Also reloads them after a rotation. Freed by
 * sbx__jwt_free. */
int sbx__jwt_load_or_create(sbx_server *s);
void sbx__jwt_free(sbx_server *s);
/* Signs an access token for (tenant, user); tok_out >= 1024. */
int sbx__jwt_issue(sbx_server *s, const char *tenant, const char *user,
                   int64_t now, char *tok_out, size_t cap);
/* The same with the refresh family the token belongs to (claim "fam",
 * NULL: none) and the time of the interactive login it comes from (claim
 * "auth_time", 0: none, e.g. a refresh grant): what revocation by family
 * and step-up (authz.c) read. */
int sbx__jwt_issue_fam(sbx_server *s, const char *tenant, const char *user,
                       const char *family, int64_t auth_time, int64_t now,
                       char *tok_out, size_t cap);
/* The verified claims of an access token. */
typedef struct sbx__jwt_claims {
  char tenant[SBX_ID_MAX], user[SBX_ID_MAX], jti[SBX_ID_MAX];
  char family[SBX_ID_MAX]; /* "" when the token has none */
  int64_t iat, auth_time, exp;
} sbx__jwt_claims;
/* Verifies signature (alg fixed to EdDSA, kid must match) and claims. */
int sbx__jwt_verify(sbx_server *s, const char *tok, int64_t now,
                    char tenant[SBX_ID_MAX], char user[SBX_ID_MAX],
                    char jti[SBX_ID_MAX]);
/* The same, with every claim the server uses in *c (zeroed on error). */
int sbx__jwt_verify_claims(sbx_server *s, const char *tok, int64_t now,
                           sbx__jwt_claims *c);
/* The JWKS document (new reference): the current key and the retired
 * ones still verifying tokens issued before a rotation. */
json_t *sbx__jwks(sbx_server *s);
/* JWT signing-key rotation on the files of dir (a stopped server's data
 * dir, or a live one's before sbx__jwt_load_or_create): a new key is
 * sealed under kek and becomes current; the old one is listed in
 * jwt-retired.txt (public half only) and keeps verifying for ttl seconds
 * (the access-token lifetime) unless retire_old = 1 (every access token
 * issued so far dies at once: the incident case). new_kid (may be NULL)
 * receives the new kid. SBX_EBUSY when SBX__JWT_OLD retired keys are still
 * verifying. On error the current key is unchanged. */
int sbx__jwt_rotate_files(sbx_kek *kek, const char *dir, int ttl,
                          int retire_old, int64_t now, char new_kid[32]);
/* The same on a live server, which then signs with the new key at once
 * and verifies with both. Caller: incident.c (holds s->rot_mu). */
int sbx__jwt_rotate(sbx_server *s, int retire_old, char new_kid[32]);
/* Refresh tokens "rt_<tenant>~<id>.<secret>": issue (new family when
 * family == NULL) and rotate (reuse of a used token revokes the family and
 * deny-lists its access tokens: SBX_ECONFLICT, with tenant and user set;
 * an unknown or expired token: SBX_EAUTH / SBX_EEXPIRED). tok_out >= 160. */
int sbx__refresh_issue(sbx_server *s, sbx_store *st, const char *tenant,
                       const char *user, const char *family, int64_t now,
                       char *tok_out);
int sbx__refresh_rotate(sbx_server *s, sbx_store *st, const char *tok,
                        int64_t now, char tenant[SBX_ID_MAX],
                        char user[SBX_ID_MAX], char *new_tok_out);
/* The family id of a refresh token as the client holds it ("" when
 * malformed or unknown); for the access token issued with it. */
void sbx__refresh_family(sbx_store *st, const char *tok,
                         char family[SBX_ID_MAX]);
/* Argon2id: encode into out; verify returns 0 when pw matches. */
int sbx__password_hash(const char *pw, char out[160]);
int sbx__password_verify(const char *encoded, const char *pw);

#endif
