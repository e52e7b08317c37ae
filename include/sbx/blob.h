/*
 * sbx/blob.h - the blob store: opaque, already-encrypted byte streams under
 * a key "<tenant_id>/<object_id>". Backends: a local directory (default);
 * S3-compatible object storage is planned (docs/storage.md, TODO).
 *
 * A blob becomes visible under its key only once completely written and
 * durable (local: temp file, fsync, rename without replace, directory
 * fsync). Whether a blob *exists* for the product is decided by the
 * metadata row (sbx/store.h): blobs without a row are orphans that
 * sbx_store_gc() removes.
 *
 * Handles are not thread-safe; writers/readers of one store may be used
 * from one thread at a time. Errors: SBX_ENOSPC (disk full / file size
 * limit), SBX_EPERM (permissions), SBX_EIO, SBX_ENOTFOUND, SBX_EEXIST.
 * S3 adds SBX_EAUTH (HTTP 401/403: bad keys, signature, clock skew),
 * SBX_ETIMEDOUT, SBX_ELIMIT (oversized response) and SBX_EBACKEND (any other
 * failure). Nothing is printed: the reason (path and OS error; method, URL,
 * HTTP status and S3 error code) is in sbx_blob_err() after a failed call,
 * or in params.err when sbx_blob_open fails; the caller logs it.
 */
#ifndef SBX_BLOB_H
#define SBX_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/crypto.h"
#include "sbx/status.h"

typedef struct sbx_blob_store sbx_blob_store;
typedef struct sbx_blob_writer sbx_blob_writer;

typedef enum sbx_blob_backend {
  SBX_BLOB_LOCAL = 1,
  SBX_BLOB_S3 = 2
} sbx_blob_backend;

typedef struct sbx_blob_params {
  sbx_blob_backend backend;
  const char *root; /* local: directory (created 0700 if missing) */
  int fsync;        /* 1 (default): fsync file and directories on commit */
  /* S3 (backend SBX_BLOB_S3). Strings are copied by sbx_blob_open. Keys are
   * "<s3_prefix><tenant_id>/<object_id>", path-style URLs. */
  const char *s3_endpoint;   /* "https://host[:port]"; "http://" only for a
                                loopback host unless s3_allow_http */
  const char *s3_bucket;     /* must exist unless s3_create_bucket */
  const char *s3_region;     /* NULL or "": "us-east-1" */
  const char *s3_access_key; /* never from the repository: config/env */
  const char *s3_secret_key;
  const char *s3_prefix;  /* NULL or "": none; [A-Za-z0-9_.-/]{0,200} */
  const char *s3_ca_file; /* NULL: the system CA store */
  size_t s3_part_size;    /* multipart threshold and part size; 0: 8 MiB,
                             at least 5 MiB */
  unsigned s3_timeout_ms; /* whole request (a blob GET: no progress for
                             min(this, 30 s)); 0: 120000 */
  unsigned s3_connect_timeout_ms; /* 0: 10000 */
  int s3_retries;                 /* retries of idempotent requests; 0: 3,
                                     negative: none */
  int s3_create_bucket;           /* 1: create the bucket at open if missing */
  int s3_allow_http; /* 1: allow plain http to a non-loopback host */
  sbx_err *err;      /* NULL or caller-owned: receives the reason when
                        sbx_blob_open fails (not kept after it returns) */
} sbx_blob_params;

sbx_blob_params sbx_blob_default_params(void);

/* Fills the S3 fields of p (and backend = SBX_BLOB_S3) from the environment:
 * SBX_S3_ENDPOINT, SBX_S3_BUCKET, SBX_S3_REGION, SBX_S3_PREFIX,
 * SBX_S3_CA_FILE, SBX_S3_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID),
 * SBX_S3_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY). The strings point into
 * the environment. SBX_ENOTFOUND when SBX_S3_ENDPOINT is unset, SBX_EINVAL
 * when the bucket or a key is missing. */
int sbx_blob_s3_params_from_env(sbx_blob_params *p);

/* Opens (creating root/objects and root/tmp). *out NULL on error. */
int sbx_blob_open(const sbx_blob_params *p, sbx_blob_store **out);
void sbx_blob_close(sbx_blob_store *s);
/* The report of the last failed call on s or on one of its writers: each
 * call (but sbx_blob_writer_write) clears it first, so it belongs to the
 * call that just failed when its status matches; msg "" when the failure
 * had nothing to add to its status (e.g. SBX_EINVAL, SBX_ENOMEM). Owned by
 * s, valid until the next call on s; never NULL (s NULL: an empty one). */
const sbx_err *sbx_blob_err(const sbx_blob_store *s);

/* Starts a blob under key (tenant/object ids, see sbx_id_valid). Data goes
 * to a private temp file; nothing is visible until commit. */
int sbx_blob_writer_open(sbx_blob_store *s, const char *tenant_id,
                         const char *object_id, sbx_blob_writer **out);
int sbx_blob_writer_write(sbx_blob_writer *w, const void *buf, size_t n);
/* Makes the blob durable and visible; SBX_EEXIST if the key exists (blobs
 * are immutable). Always frees w; on error the temp file is removed. */
int sbx_blob_writer_commit(sbx_blob_writer *w);
/* Discards the temp file and frees w. NULL is a no-op. */
void sbx_blob_writer_abort(sbx_blob_writer *w);
/* sbx_sink_fn adapter for sbx_blob_writer_write (ctx = writer). */
int sbx_blob_sink(void *writer, const void *buf, size_t n);

/* Streams the whole blob to sink. */
int sbx_blob_read(sbx_blob_store *s, const char *tenant_id,
                  const char *object_id, sbx_sink_fn sink, void *ctx);
int sbx_blob_remove(sbx_blob_store *s, const char *tenant_id,
                    const char *object_id);
/* Calls fn for every committed blob, and for every temp file (tenant_id and
 * object_id NULL) with its modification time, for garbage collection. fn
 * returns 0 to go on, non-zero to stop. S3: the objects of ListObjectsV2
 * (LastModified) and the unfinished multipart uploads (Initiated) are
 * reported; fn may remove entries while the scan runs. */
int sbx_blob_scan(sbx_blob_store *s,
                  int (*fn)(void *ctx, const char *tenant_id,
                            const char *object_id, const char *tmp_name,
                            int64_t mtime),
                  void *ctx);
/* Removes a temp file reported by sbx_blob_scan (S3: aborts the multipart
 * upload). */
int sbx_blob_remove_tmp(sbx_blob_store *s, const char *tmp_name);
/* Local backend: writes the file path of a blob into out (for tests and
 * diagnostics). SBX_ELIMIT when cap is too small; SBX_EUNSUPPORTED on S3. */
int sbx_blob_local_path(sbx_blob_store *s, const char *tenant_id,
                        const char *object_id, char *out, size_t cap);

#endif
