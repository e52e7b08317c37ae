/*
 * s3.h - private: the S3-compatible blob backend (s3.c) behind sbx/blob.h,
 * and the AWS Signature Version 4 signer it uses (s3_sigv4.c; exposed for
 * the test vectors and the S3 integration test, tests/store/test_s3.c).
 *
 * blob_local.c dispatches every sbx_blob_* call to these functions when the
 * store was opened with backend SBX_BLOB_S3; semantics are those of
 * sbx/blob.h. Keys passed here are "<tenant>/<object>" pairs; the configured
 * prefix is added inside.
 */
#ifndef SBX_STORE_S3_H
#define SBX_STORE_S3_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/blob.h"

typedef struct sbx_s3 sbx_s3;
typedef struct sbx_s3_writer sbx_s3_writer;

/* Validates p, sets up libcurl, creates the bucket when asked and checks it
 * with HEAD (SBX_EAUTH: bad credentials / no access, SBX_ENOTFOUND: no such
 * bucket). err (the owning blob store's report; NULL: failures are not
 * described) is kept: the open's and every later failure of this handle
 * are described there. */
int sbx_s3_open(const sbx_blob_params *p, sbx_err *err, sbx_s3 **out);
void sbx_s3_close(sbx_s3 *s);

int sbx_s3_writer_open(sbx_s3 *s, const char *tenant_id, const char *object_id,
                       sbx_s3_writer **out);
int sbx_s3_writer_write(sbx_s3_writer *w, const void *buf, size_t n);
int sbx_s3_writer_commit(sbx_s3_writer *w);
void sbx_s3_writer_abort(sbx_s3_writer *w);
int sbx_s3_read(sbx_s3 *s, const char *tenant_id, const char *object_id,
                sbx_sink_fn sink, void *ctx);
int sbx_s3_remove(sbx_s3 *s, const char *tenant_id, const char *object_id);
int sbx_s3_scan(sbx_s3 *s,
                int (*fn)(void *ctx, const char *tenant_id,
                          const char *object_id, const char *tmp_name,
                          int64_t mtime),
                void *ctx);
int sbx_s3_remove_tmp(sbx_s3 *s, const char *tmp_name);

/* ---- SigV4 ---- */

typedef struct sbx_sigv4_header {
  const char *name; /* any case; lower-cased in the canonical request */
  const char *value;
} sbx_sigv4_header;

typedef struct sbx_sigv4_req {
  const char *method;              /* "GET" */
  const char *canonical_uri;       /* already URI-encoded path ("/b/k%24x") */
  const char *canonical_query;     /* already canonical (see sbx_s3_query) */
  const sbx_sigv4_header *headers; /* every header to sign, host included */
  size_t nheaders;
  const char *payload_sha256; /* lower-case hex; never UNSIGNED-PAYLOAD */
  const char *access_key, *secret_key, *region, *service;
  const char *amz_date; /* "YYYYMMDDTHHMMSSZ" */
} sbx_sigv4_req;

/* Computes the Authorization header value
 * "AWS4-HMAC-SHA256 Credential=AK/date/region/service/aws4_request,
 *  SignedHeaders=a;b, Signature=hex". creq / sts (may be NULL) receive
 * malloc'd copies of the canonical request and the string to sign. */
int sbx_sigv4_sign(const sbx_sigv4_req *r, char *auth, size_t cap, char **creq,
                   char **sts);
/* RFC 3986 encoding as S3 wants it: everything but A-Za-z0-9-._~ is %XX
 * (and '/' too unless keep_slash). SBX_ELIMIT when cap is too small. */
int sbx_s3_uri_encode(const char *in, int keep_slash, char *out, size_t cap);
/* Canonical query string from n name/value pairs (kv[2i], kv[2i+1]; a NULL
 * value is ""): names and values encoded, sorted by name then value. */
int sbx_s3_query(const char *const *kv, size_t n, char *out, size_t cap);

/* ---- test hooks (tests/store/test_s3.c) ---- */

/* PUT of body under "<prefix>key" (no If-None-Match), signed with
 * payload_sha256 (hex) when not NULL instead of the body's real hash. */
int sbx_s3_test_put(sbx_s3 *s, const char *key, const void *body, size_t n,
                    const char *payload_sha256);
/* HEAD "<prefix>key": size and ETag (may be NULL; etag cap >= 130). */
int sbx_s3_test_head(sbx_s3 *s, const char *key, int64_t *size, char *etag);
/* Replaces the secret key used for signing (wrong-key tests). */
int sbx_s3_test_set_secret(sbx_s3 *s, const char *secret);
/* Number of HTTP requests sent so far (attempts, retries included). */
long sbx_s3_test_requests(const sbx_s3 *s);

#endif
