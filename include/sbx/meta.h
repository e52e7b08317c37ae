/*
 * sbx/meta.h - the metadata store: one C interface, two backends (SQLite,
 * the embedded default, and PostgreSQL via libpq, the production backend).
 *
 * - The schema is created and upgraded by versioned migrations applied in
 *   sbx_meta_open() (idempotent, recorded in schema_migrations with a
 *   checksum; an edited, already-applied migration is refused).
 * - Every query that reads or writes tenant data takes the tenant id as a
 *   parameter and filters on it, so no call can return another tenant's
 *   rows. Only sbx_meta_tenant_list() spans tenants (ids only, for
 *   administration and master-key rotation).
 * - Only parameterised statements are used.
 * - Columns marked (sealed) must hold sbx_seal() output made by the caller
 *   (sbx_store does it: see sbx/store.h); columns marked (hash) a keyed hash.
 *
 * Thread safety: a handle is used by one thread at a time; open one handle
 * per thread (many handles on one SQLite file or one PostgreSQL database are
 * fine). All functions return 0 or a negative sbx_status; on error nothing
 * is changed (each call is one statement or one transaction) and output
 * structs are zeroed.
 */
#ifndef SBX_META_H
#define SBX_META_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/crypto.h"
#include "sbx/status.h"

#define SBX_ID_MAX 64   /* ids: 1..63 chars of [A-Za-z0-9_.-] */
#define SBX_NAME_MAX 256 /* names: 1..255 bytes of UTF-8 */
#define SBX_KIND_MAX 32

typedef struct sbx_meta sbx_meta;

typedef enum sbx_meta_backend {
  SBX_META_SQLITE = 1,
  SBX_META_POSTGRES = 2
} sbx_meta_backend;

typedef struct sbx_meta_params {
  sbx_meta_backend backend;
  const char *sqlite_path; /* SQLite: the database file (created 0600) */
  const char *pg_conninfo; /* PostgreSQL: a libpq connection string */
  int busy_timeout_ms;     /* SQLite lock wait, default 5000 */
  char *err;               /* optional (NULL): on a failed sbx_meta_open,
                              why (driver message, edited migration...),
                              NUL-terminated, truncated to err_cap */
  size_t err_cap;
} sbx_meta_params;

/* SQLite, no path (must be set), 5 s busy timeout. */
sbx_meta_params sbx_meta_default_params(void);

/* Connects/opens and applies pending migrations. *out is NULL on error and
 * the reason is in p->err when set; nothing is printed. The params strings
 * are copied. */
int sbx_meta_open(const sbx_meta_params *p, sbx_meta **out);
/* Closes; NULL is a no-op. An open transaction is rolled back. */
void sbx_meta_close(sbx_meta *m);
/* Highest applied migration version. */
int sbx_meta_schema_version(sbx_meta *m, int64_t *version);
/* "sqlite" or "postgres". */
const char *sbx_meta_backend_name(const sbx_meta *m);
/* Last backend error message (static storage in m, for logs). Contains no
 * bound values because values never appear in SQL text. */
const char *sbx_meta_last_error(const sbx_meta *m);
/* 1 when s is a valid id (see SBX_ID_MAX). */
int sbx_id_valid(const char *s);

/* ---- sealed columns (docs/security.md, "Metadata at rest") ----
 * Names, specs and audit actor/target are stored sealed (AES-256-GCM under
 * the tenant's field key, associated data "<table>.<column>|<tenant>|<row
 * id>") once a cipher is installed; columns that need equality hold a
 * per-tenant blind index ("~" + hex HMAC) instead of the plaintext. A handle
 * without a cipher (plain sbx_meta_open) reads and writes plaintext, as
 * before; sbx_store_open installs the store's cipher on its handle. */
typedef struct sbx_meta_cipher {
  void *ctx; /* borrowed: must outlive the handle */
  /* out: n + SBX_SEAL_OVERHEAD bytes */
  int (*seal)(void *ctx, const char *tenant_id, const char *aad, const void *pt,
              size_t n, uint8_t *out);
  /* out: n - SBX_SEAL_OVERHEAD bytes; *outlen receives the length */
  int (*open)(void *ctx, const char *tenant_id, const char *aad,
              const uint8_t *in, size_t n, uint8_t *out, size_t *outlen);
  /* per-tenant blind index of data for equality lookups of purpose */
  int (*index)(void *ctx, const char *tenant_id, const char *purpose,
               const void *data, size_t n, uint8_t out[SBX_SHA256_LEN]);
} sbx_meta_cipher;

/* Installs (copies) c, or removes the cipher (NULL). */
void sbx_meta_set_cipher(sbx_meta *m, const sbx_meta_cipher *c);
/* Reads a sealable text column as a caller's own query returned it:
 * sealed (NULL or n 0: the row is still plaintext) is opened with the
 * associated data "<column>|<tenant_id>|<row_id>" (column e.g.
 * "objects.name"), else plain (plain_n bytes) is copied. out is
 * NUL-terminated; SBX_ELIMIT when it does not fit, SBX_EKEY/SBX_ECRYPTO
 * when the tenant's key is gone (shredded) or the value was tampered. */
int sbx_meta_field_text(sbx_meta *m, const char *tenant_id, const char *column,
                        const char *row_id, const void *sealed, size_t n,
                        const void *plain, size_t plain_n, char *out,
                        size_t cap);
/* The clear-column form of a blind index: "~" + 64 hex of the tenant's
 * index of s for purpose ("objects.name"; "audit.id" for the actor and
 * target of audit rows), for equality in a caller's own query.
 * SBX_EINVAL without a cipher, SBX_EKEY when the tenant has no key. */
#define SBX_META_INDEX_TEXT 66
int sbx_meta_blind_text(sbx_meta *m, const char *tenant_id, const char *purpose,
                        const char *s, char out[SBX_META_INDEX_TEXT]);
/* Seals the plaintext rows left by older versions (or by handles without a
 * cipher) in place, one transaction: the sealed column is filled and the
 * clear column replaced by the blind index (or blanked). Rows of shredded
 * tenants, which can no longer be sealed, get their clear text removed.
 * Idempotent; a no-op without a cipher. *sealed (may be NULL) receives the
 * number of rows changed. */
int sbx_meta_seal_legacy(sbx_meta *m, int64_t *sealed);

/* SQLite: checkpoints the WAL into the database file and truncates it
 * (with secure_delete on, deleted rows are then zeroed on disk).
 * PostgreSQL: no-op (see docs/storage.md on shredding). */
int sbx_meta_checkpoint(sbx_meta *m);

/* Explicit transactions; calls nest (an inner rollback makes the outer
 * commit roll back and return SBX_EABORTED). */
int sbx_meta_begin(sbx_meta *m);
int sbx_meta_commit(sbx_meta *m);
int sbx_meta_rollback(sbx_meta *m);

/* ---- tenants ---- */
typedef enum sbx_tenant_state {
  SBX_TENANT_ACTIVE = 0,
  SBX_TENANT_FROZEN = 1,   /* incident: reads and writes refused */
  SBX_TENANT_SHREDDED = 2, /* keys destroyed; data unreadable forever */
  SBX_TENANT_LOCKED = 3    /* incident freeze (aisbxd): reads work, every
                              mutating route answers 423; no new job shard
                              is claimed and running ones are stopped */
} sbx_tenant_state;

typedef struct sbx_tenant {
  char id[SBX_ID_MAX];
  char name[SBX_NAME_MAX];
  int64_t state;
  int64_t created_at;
} sbx_tenant;

int sbx_meta_tenant_create(sbx_meta *m, const char *tenant_id,
                           const char *name, int64_t now);
int sbx_meta_tenant_get(sbx_meta *m, const char *tenant_id, sbx_tenant *out);
int sbx_meta_tenant_set_state(sbx_meta *m, const char *tenant_id,
                              int64_t state);
/* Calls fn for each tenant id (administration only). fn returns 0 to go on,
 * non-zero to stop (a negative value is returned). */
int sbx_meta_tenant_list(sbx_meta *m,
                         int (*fn)(void *ctx, const char *tenant_id),
                         void *ctx);

/* ---- tenant keys (wrapped by the master key) ---- */
typedef struct sbx_tenant_key_row {
  int64_t version;
  uint8_t wrapped[SBX_WRAPPED_KEY_LEN];
  int64_t active; /* 1 for the key new objects use */
  int64_t created_at;
} sbx_tenant_key_row;

int sbx_meta_tenant_key_insert(sbx_meta *m, const char *tenant_id,
                               const sbx_tenant_key_row *row);
/* version 0 = the active key. */
int sbx_meta_tenant_key_get(sbx_meta *m, const char *tenant_id,
                            int64_t version, sbx_tenant_key_row *out);
int sbx_meta_tenant_key_list(sbx_meta *m, const char *tenant_id,
                             int (*fn)(void *ctx,
                                       const sbx_tenant_key_row *row),
                             void *ctx);
int sbx_meta_tenant_key_rewrap(sbx_meta *m, const char *tenant_id,
                               int64_t version,
                               const uint8_t wrapped[SBX_WRAPPED_KEY_LEN]);
/* Makes `version` the only active key of the tenant. */
int sbx_meta_tenant_key_activate(sbx_meta *m, const char *tenant_id,
                                 int64_t version);
/* version 0 = every key of the tenant (crypto-shredding). */
int sbx_meta_tenant_key_delete(sbx_meta *m, const char *tenant_id,
                               int64_t version);

/* ---- objects (blobs: models, datasets, adversarial examples, reports) */
typedef struct sbx_object {
  char id[SBX_ID_MAX];
  char project_id[SBX_ID_MAX]; /* "" when not in a project */
  char kind[SBX_KIND_MAX];     /* "model", "dataset", "report", ... */
  char name[SBX_NAME_MAX];
  int64_t size; /* plaintext bytes */
  uint8_t sha256[SBX_SHA256_LEN]; /* of the plaintext */
  int64_t key_version;             /* tenant key wrapping the data key */
  uint8_t wrapped_dek[SBX_WRAPPED_KEY_LEN];
  int64_t created_at;
} sbx_object;

/* SBX_EEXIST when (project, kind, name) or the id is taken. */
int sbx_meta_object_insert(sbx_meta *m, const char *tenant_id,
                           const sbx_object *o);
int sbx_meta_object_get(sbx_meta *m, const char *tenant_id, const char *id,
                        sbx_object *out);
int sbx_meta_object_find(sbx_meta *m, const char *tenant_id,
                         const char *project_id, const char *kind,
                         const char *name, sbx_object *out);
int sbx_meta_object_delete(sbx_meta *m, const char *tenant_id,
                           const char *id);
/* kind may be NULL (all kinds). Ordered by created_at, id. */
int sbx_meta_object_list(sbx_meta *m, const char *tenant_id, const char *kind,
                         int (*fn)(void *ctx, const sbx_object *o),
                         void *ctx);
int sbx_meta_object_rewrap(sbx_meta *m, const char *tenant_id, const char *id,
                           int64_t key_version,
                           const uint8_t wrapped[SBX_WRAPPED_KEY_LEN]);
int sbx_meta_object_count(sbx_meta *m, const char *tenant_id, int64_t *n);

/* ---- secrets: small sealed values (OIDC client secrets, the API-key
 * pepper). tenant_id "_sys" holds deployment-wide secrets. */
int sbx_meta_secret_put(sbx_meta *m, const char *tenant_id, const char *name,
                        const uint8_t *sealed, size_t n, int64_t now);
/* *n in: capacity of out, out: length. SBX_ELIMIT when too small. */
int sbx_meta_secret_get(sbx_meta *m, const char *tenant_id, const char *name,
                        uint8_t *out, size_t *n);

/* ---- users, projects, memberships ---- */
typedef struct sbx_user {
  char id[SBX_ID_MAX];
  uint8_t email_index[SBX_SHA256_LEN]; /* (hash) sbx_store_blind_index(
                                          tenant, "email", lower(email)) */
  uint8_t email_sealed[SBX_NAME_MAX + SBX_SEAL_OVERHEAD]; /* (sealed) */
  size_t email_sealed_len;
  char password_hash[160]; /* argon2id encoded string, "" for OIDC users */
  int64_t disabled;
  int64_t created_at;
} sbx_user;

int sbx_meta_user_insert(sbx_meta *m, const char *tenant_id,
                         const sbx_user *u);
int sbx_meta_user_get(sbx_meta *m, const char *tenant_id, const char *id,
                      sbx_user *out);
int sbx_meta_user_find_email(sbx_meta *m, const char *tenant_id,
                             const uint8_t email_index[SBX_SHA256_LEN],
                             sbx_user *out);
int sbx_meta_project_create(sbx_meta *m, const char *tenant_id,
                            const char *project_id, const char *name,
                            int64_t now);
/* role: "viewer", "developer", "analyst", "admin". Upserts. */
int sbx_meta_membership_set(sbx_meta *m, const char *tenant_id,
                            const char *project_id, const char *user_id,
                            const char *role);
int sbx_meta_membership_get(sbx_meta *m, const char *tenant_id,
                            const char *project_id, const char *user_id,
                            char role[SBX_KIND_MAX]);

/* ---- API keys and refresh tokens (hash only) ---- */
typedef struct sbx_api_key {
  char id[SBX_ID_MAX]; /* the public prefix of "prefix.secret" */
  char user_id[SBX_ID_MAX];
  char project_id[SBX_ID_MAX];
  char role[SBX_KIND_MAX];
  uint8_t secret_hash[SBX_SHA256_LEN]; /* (hash) HMAC(pepper, secret) */
  int64_t created_at, expires_at, revoked_at, last_used_at;
} sbx_api_key;

int sbx_meta_api_key_insert(sbx_meta *m, const char *tenant_id,
                            const sbx_api_key *k);
int sbx_meta_api_key_get(sbx_meta *m, const char *tenant_id, const char *id,
                         sbx_api_key *out);
int sbx_meta_api_key_revoke(sbx_meta *m, const char *tenant_id,
                            const char *id, int64_t now);
int sbx_meta_api_key_touch(sbx_meta *m, const char *tenant_id, const char *id,
                           int64_t now);

/* ---- audit events (hash-chained per tenant) ---- */
typedef struct sbx_audit_event {
  int64_t seq; /* 1, 2, ... per tenant */
  int64_t ts;
  char actor[SBX_ID_MAX];
  char action[SBX_KIND_MAX * 2];
  char target[SBX_NAME_MAX];
  uint8_t prev_hash[SBX_SHA256_LEN];
  uint8_t hash[SBX_SHA256_LEN];
} sbx_audit_event;

/* Appends; seq and the hash chain are computed inside (retried on a
 * concurrent append). *seq_out (may be NULL) receives the new seq. */
int sbx_meta_audit_append(sbx_meta *m, const char *tenant_id, int64_t ts,
                          const char *actor, const char *action,
                          const char *target, int64_t *seq_out);
/* Recomputes the chain of a tenant: SBX_ECRYPTO when any event was edited,
 * removed or reordered. *count (may be NULL) receives the number checked. */
int sbx_meta_audit_verify(sbx_meta *m, const char *tenant_id, int64_t *count);

/* ---- audit: proof (src/store/audit_verify.c) ---- */
/* The result of walking one tenant's chain. bad_seq is the position of the
 * first broken row (0 when the chain is intact): the seq of an edited row,
 * of a row whose prev_hash does not link, of the first missing seq, or,
 * for a chain cut short of its anchor, the first seq after the last row. */
typedef struct sbx_audit_check {
  int64_t count;    /* rows read */
  int64_t head_seq; /* last row of the intact prefix (0: none) */
  uint8_t head_hash[SBX_SHA256_LEN]; /* its hash (zeros when head_seq 0) */
  int64_t bad_seq;                   /* 0: intact */
  char reason[96];                   /* "" or why bad_seq is broken */
} sbx_audit_check;

/* Walks the chain of tenant_id. anchor_seq > 0 with anchor_hash (32 bytes)
 * is a head recorded earlier outside the database: the chain must still
 * reach anchor_seq with that hash (tail truncation, rewritten history).
 * Returns 0 intact, SBX_ECRYPTO broken (out says where and why), other
 * negatives on store errors. out is always written. */
int sbx_meta_audit_check(sbx_meta *m, const char *tenant_id, int64_t anchor_seq,
                         const uint8_t *anchor_hash, sbx_audit_check *out);
/* The newest row of a tenant: *seq 0 and zero hash when there is none. */
int sbx_meta_audit_head(sbx_meta *m, const char *tenant_id, int64_t *seq,
                        uint8_t hash[SBX_SHA256_LEN]);
/* Calls fn for every tenant that has a tenant row or audit rows, sorted;
 * a non-zero return from fn stops the walk and is returned. */
int sbx_meta_audit_tenants(sbx_meta *m,
                           int (*fn)(void *ctx, const char *tenant_id),
                           void *ctx);
/* Calls fn for each row of tenant_id (NULL: every tenant) with since <= ts
 * < until (until 0: no upper bound), by tenant then seq. The event passed
 * to fn is valid only during the call; a non-zero return stops the walk. */
int sbx_meta_audit_list(sbx_meta *m, const char *tenant_id, int64_t since,
                        int64_t until,
                        int (*fn)(void *ctx, const char *tenant_id,
                                  const sbx_audit_event *e),
                        void *ctx);

/* ---- user lifecycle and revocation (src/store/lifecycle.c) ---- */

/* How long a deny-list row outlives its event: the longest access-token
 * lifetime (900 s) plus the clock skew the server accepts (60 s). */
#define SBX_ACCESS_TOKEN_MAX_S 960
#define SBX_REVOKE_API_KEYS 1u    /* sbx_meta_user_revoke_all: its API keys */
#define SBX_REVOKE_ISSUED_KEYS 2u /* ... and the keys it created for others */

typedef struct sbx_revoke_counts {
  int64_t sessions;       /* browser sessions deleted */
  int64_t refresh_tokens; /* live refresh tokens revoked */
  int64_t api_keys;       /* API keys revoked (SBX_REVOKE_*_KEYS) */
} sbx_revoke_counts;

/* Revokes everything user_id of tenant_id holds, in one transaction: its
 * browser sessions are deleted, its refresh tokens revoked, the access
 * tokens of their families and every access token of the user issued
 * before now deny-listed (sbx_meta_token_denied); with SBX_REVOKE_API_KEYS
 * its API keys are revoked, with SBX_REVOKE_ISSUED_KEYS the keys it created
 * for other users too (incident response). The user row itself is not
 * touched (it may not even exist any more). out (may be NULL) receives the
 * counts; zeroed on error, when nothing changed. Server processes see the
 * effect within their auth cache's window (docs/security.md). */
int sbx_meta_user_revoke_all(sbx_meta *m, const char *tenant_id,
                             const char *user_id, int64_t now, unsigned flags,
                             sbx_revoke_counts *out);
/* Sets users.disabled; SBX_ENOTFOUND for an unknown user. */
int sbx_meta_user_set_disabled(sbx_meta *m, const char *tenant_id,
                               const char *user_id, int disabled);
/* Deletes a user: sbx_meta_user_revoke_all with SBX_REVOKE_API_KEYS, then
 * its memberships, tenant role, TOTP, lockout and user rows; one
 * transaction. SBX_ENOTFOUND (nothing changed) for an unknown user. Audit
 * rows keep the id. */
int sbx_meta_user_delete(sbx_meta *m, const char *tenant_id,
                         const char *user_id, int64_t now);
/* Removes a membership; SBX_ENOTFOUND when there is none. */
int sbx_meta_membership_delete(sbx_meta *m, const char *tenant_id,
                               const char *project_id, const char *user_id);
/* Deny-lists every access token of refresh family family_id (reuse). */
int sbx_meta_family_deny(sbx_meta *m, const char *tenant_id,
                         const char *family_id, int64_t now);
/* *not_before of the live deny-list row (kind "user" or "family",
 * subject), 0 when none. A "user" row refuses the user's tokens issued
 * before *not_before; a "family" row every token of the family. */
int sbx_meta_token_denied(sbx_meta *m, const char *tenant_id, const char *kind,
                          const char *subject, int64_t now,
                          int64_t *not_before);

#endif
