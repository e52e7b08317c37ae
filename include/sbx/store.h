/*
 * sbx/store.h - encrypted, crash-safe storage of everything the sandbox
 * keeps: the metadata store (sbx/meta.h) + the blob store (sbx/blob.h) +
 * envelope encryption (sbx/crypto.h). Design: docs/storage.md.
 *
 * Key hierarchy: master key (never stored by us) -> per-tenant keys
 * (tenant_keys, wrapped) -> per-object data keys (objects.wrapped_dek) and a
 * per-tenant field key (secrets "field-key") for sensitive DB fields. A
 * deployment pepper (secrets "_sys"/"pepper", wrapped by the master key)
 * keys the hashes of API-key secrets and refresh tokens; e-mail indexes
 * and name indexes are keyed per tenant (sbx_store_blind_index).
 *
 * Visibility: an object exists when its metadata row exists. A put writes
 * and fsyncs the encrypted blob, renames it into place, and only then
 * commits the row; a crash at any point leaves the old state or the new
 * one, plus at worst an orphan blob that sbx_store_gc() removes.
 *
 * Handles are not thread-safe: one sbx_store per thread (they may share a
 * data dir / database). A put or get of an object of 1 MiB or more runs the
 * SHA-256 of the plaintext on one internal worker thread (signals blocked),
 * which is joined before the writer is freed / the get returns. All functions
 * return 0 or a negative sbx_status and change nothing on error unless stated.
 */
#ifndef SBX_STORE_H
#define SBX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/blob.h"
#include "sbx/crypto.h"
#include "sbx/meta.h"
#include "sbx/status.h"

typedef struct sbx_store sbx_store;
typedef struct sbx_store_writer sbx_store_writer;

typedef struct sbx_store_params {
  const char *data_dir; /* blobs in data_dir/blobs; SQLite in data_dir/meta.db
                           (created 0700 if missing) */
  sbx_meta_backend meta_backend; /* default SQLite */
  const char *pg_conninfo;       /* when meta_backend is POSTGRES */
  const char *master_key_spec;   /* "file:..", "env:..", "cmd:.." (see
                                    sbx_master_key_load) */
  const sbx_key *master_key;     /* alternative to the spec (copied) */
  unsigned chunk_shift;          /* streaming chunk size, 0 = 256 KiB */
  int fsync;                     /* 1 (default); 0 only for benchmarks */
  const sbx_blob_params *blob;   /* NULL: local blobs in data_dir/blobs;
                                    else e.g. S3 (sbx/blob.h; not kept) */
  sbx_err *err; /* NULL or caller-owned: receives the reason when
                   sbx_store_open fails (master key, data dir, blob store,
                   key mismatch); not kept after it returns */
} sbx_store_params;

sbx_store_params sbx_store_default_params(void);

/* Loads the master key, opens metadata (applying migrations) and blobs, and
 * checks that the master key matches the data (SBX_EKEY otherwise). The
 * params strings are not kept. *out NULL on error. */
int sbx_store_open(const sbx_store_params *p, sbx_store **out);
/* Wipes keys and closes; NULL is a no-op. */
void sbx_store_close(sbx_store *st);
/* The report of the last failed blob operation of the store (path and OS
 * error, or the S3 request and its answer): see sbx_blob_err. The library
 * never prints; callers log this after a failure. Never NULL. */
const sbx_err *sbx_store_err(const sbx_store *st);
/* Borrowed handles, valid until sbx_store_close. */
sbx_meta *sbx_store_meta(sbx_store *st);
sbx_blob_store *sbx_store_blobs(sbx_store *st);

/* Creates a tenant with its first tenant key and field key (one
 * transaction). SBX_EEXIST when it exists. */
int sbx_store_tenant_create(sbx_store *st, const char *tenant_id,
                            const char *name);

typedef struct sbx_put_params {
  const char *project_id; /* "" or NULL: none */
  const char *kind;       /* "model", "dataset", "adv", "report", ... */
  const char *name;
  int replace; /* 1: atomically replace an object with the same
                  (project, kind, name); 0: SBX_EEXIST */
} sbx_put_params;

/* Streaming put. Nothing is visible until _commit succeeds; _abort (or a
 * failed _commit, which frees w) leaves no row and removes the temp data. */
int sbx_store_writer_open(sbx_store *st, const char *tenant_id,
                          const sbx_put_params *p, sbx_store_writer **out);
int sbx_store_writer_write(sbx_store_writer *w, const void *buf, size_t n);
/* Seals, makes the blob durable, commits the row. out (may be NULL)
 * receives the metadata row. Always frees w. */
int sbx_store_writer_commit(sbx_store_writer *w, sbx_object *out);
void sbx_store_writer_abort(sbx_store_writer *w);
/* One-shot put of a buffer. */
int sbx_store_put(sbx_store *st, const char *tenant_id, const sbx_put_params *p,
                  const void *data, size_t n, sbx_object *out);

/* Streams the decrypted object to sink, chunk by chunk as each is
 * authenticated; the SHA-256 and size recorded in the row are checked at the
 * end. On any error (SBX_ECRYPTO: tampered blob, wrapped key or row;
 * SBX_EKEY: tenant key gone, i.e. shredded) the consumer must discard what
 * it received. */
int sbx_store_get(sbx_store *st, const char *tenant_id, const char *id,
                  sbx_sink_fn sink, void *ctx);
/* Reads a whole object into a malloc'd buffer (caller frees) of at most max
 * bytes (SBX_ELIMIT otherwise). *data NULL on error. */
int sbx_store_get_alloc(sbx_store *st, const char *tenant_id, const char *id,
                        size_t max, void **data, size_t *n);
/* Deletes the row (commit), then the blob (a crash in between leaves an
 * orphan for GC). */
int sbx_store_delete(sbx_store *st, const char *tenant_id, const char *id);

/* Removes temp files and blobs without a row that are older than
 * grace_seconds (0: all — only when no writer is running). *removed (may
 * be NULL) receives the count. */
int sbx_store_gc(sbx_store *st, int64_t grace_seconds, int64_t *removed);

/* Key rotation: a new tenant key version re-wraps every data key and the
 * field key of the tenant, then the old versions are deleted (one
 * transaction; no data is re-encrypted). */
int sbx_store_rotate_tenant_key(sbx_store *st, const char *tenant_id);
/* Re-wraps every tenant key and the pepper under new_master (one
 * transaction), then uses it. Store the new key where the spec points
 * before calling, keep the old one until this returns 0. */
int sbx_store_rotate_master_key(sbx_store *st, const sbx_key *new_master);
/* Crypto-shredding: deletes every key of the tenant (and marks it
 * SHREDDED); its objects and sealed fields become unreadable for good
 * (SBX_EKEY). On SQLite the freed pages are zeroed and the WAL truncated.
 * Blobs and rows are left for a later purge. */
int sbx_store_shred_tenant(sbx_store *st, const char *tenant_id);

/* Sensitive DB fields (OIDC client secrets, personal data): sealed with the
 * tenant's field key, bound to ctx (e.g. "users.email|<user id>").
 * out needs n + SBX_SEAL_OVERHEAD bytes. */
int sbx_store_field_seal(sbx_store *st, const char *tenant_id, const char *ctx,
                         const void *pt, size_t n, uint8_t *out);
/* out needs inlen - SBX_SEAL_OVERHEAD bytes; *outlen receives it. */
int sbx_store_field_open(sbx_store *st, const char *tenant_id, const char *ctx,
                         const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t *outlen);
/* Per-tenant blind index for equality lookups of personal data (e-mail):
 * HMAC(HMAC(the tenant's field key, "blind-index|" purpose), data). The
 * same data gives unrelated values in two tenants, and none can be
 * computed once the tenant is shredded (SBX_EKEY; SBX_EKEY too for an
 * unknown tenant). */
int sbx_store_blind_index(sbx_store *st, const char *tenant_id,
                          const char *purpose, const void *data, size_t n,
                          uint8_t out[SBX_SHA256_LEN]);
/* Keyed hash for secrets that are only compared (API-key secrets, refresh
 * tokens): HMAC-SHA256(pepper, purpose | 0 | data). */
int sbx_store_keyed_hash(sbx_store *st, const char *purpose, const void *data,
                         size_t n, uint8_t out[SBX_SHA256_LEN]);

#endif
