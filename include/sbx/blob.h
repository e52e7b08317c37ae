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
 */
#ifndef SBX_BLOB_H
#define SBX_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/crypto.h"
#include "sbx/status.h"

typedef struct sbx_blob_store sbx_blob_store;
typedef struct sbx_blob_writer sbx_blob_writer;

typedef enum sbx_blob_backend { SBX_BLOB_LOCAL = 1 } sbx_blob_backend;

typedef struct sbx_blob_params {
  sbx_blob_backend backend;
  const char *root; /* local: directory (created 0700 if missing) */
  int fsync;        /* 1 (default): fsync file and directories on commit */
} sbx_blob_params;

sbx_blob_params sbx_blob_default_params(void);

/* Opens (creating root/objects and root/tmp). *out NULL on error. */
int sbx_blob_open(const sbx_blob_params *p, sbx_blob_store **out);
void sbx_blob_close(sbx_blob_store *s);

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
 * returns 0 to go on, non-zero to stop. */
int sbx_blob_scan(sbx_blob_store *s,
                  int (*fn)(void *ctx, const char *tenant_id,
                            const char *object_id, const char *tmp_name,
                            int64_t mtime),
                  void *ctx);
/* Removes a temp file reported by sbx_blob_scan. */
int sbx_blob_remove_tmp(sbx_blob_store *s, const char *tmp_name);
/* Local backend: writes the file path of a blob into out (for tests and
 * diagnostics). SBX_ELIMIT when cap is too small. */
int sbx_blob_local_path(sbx_blob_store *s, const char *tenant_id,
                        const char *object_id, char *out, size_t cap);

#endif
