/*
 * s3_internal.h - private to the S3 backend: the handle, one HTTP exchange
 * (s3_http.c) and the limits shared by s3.c (operations) and s3_http.c
 * (transport).
 */
#ifndef SBX_STORE_S3_INTERNAL_H
#define SBX_STORE_S3_INTERNAL_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "s3.h"
#include "s3_sb.h"
#include "sbx/meta.h"
#include "sbx/status.h"

#define S3_DEFAULT_PART (8u << 20)
#define S3_MIN_PART (5u << 20)
#define S3_MAX_PART (512u << 20)
#define S3_MAX_PARTS 10000
#define S3_XML_MAX (8u << 20)
#define S3_ERR_MAX (64u << 10)
#define S3_SMALL_MAX 1024 /* ETag, upload id, header values we keep */

struct sbx_s3 {
  CURL *curl;
  char *scheme_host; /* "http://127.0.0.1:7480" */
  char *host;        /* Host header, "127.0.0.1:7480" */
  char *bucket, *region, *prefix, *access, *secret, *ca_file;
  int loopback;
  size_t part_size;
  long timeout_ms, connect_ms;
  int retries;
  long requests;
  sbx_err *err; /* the owner's report (sbx_blob_store's); NULL: none kept */
};

struct sbx_s3_writer {
  sbx_s3 *s;
  char key[2 * SBX_ID_MAX + 2]; /* tenant/object */
  uint8_t *buf;
  size_t n, cap;
  char *upload_id;
  char **etags;
  int parts;
  char token[33]; /* x-amz-meta-sbx-writer */
  int status;
};

/* one HTTP exchange */
typedef struct s3_call {
  /* request */
  const char *method;
  const char *key;   /* relative key ("t/o") or NULL for the bucket */
  const char *query; /* canonical query or NULL */
  const void *body;
  size_t body_n;
  const char *payload_hash; /* test override */
  const char *hdr_names[4];
  const char *hdr_values[4];
  size_t nhdr;
  int idempotent;
  int quiet404; /* 404 is an expected answer: no message */
  int quiet412;
  int quiet403;     /* the caller prints its own message */
  sbx_sink_fn sink; /* 2xx body streamed here */
  void *sink_ctx;
  sb *xml; /* 2xx body collected here (<= S3_XML_MAX) */
  /* response */
  long code;
  int attempts;
  char etag[S3_SMALL_MAX + 1];
  char meta_writer[S3_SMALL_MAX + 1];
  int64_t length;
  /* internal */
  size_t body_off;
  sb err;
  int sink_rc, too_big;
  size_t delivered;
} s3_call;

/* Adds a request header to sign and send (at most 4; more are dropped). */
static inline void call_add_hdr(s3_call *c, const char *name,
                                const char *value) {
  if (c->nhdr < 4) {
    c->hdr_names[c->nhdr] = name;
    c->hdr_values[c->nhdr] = value;
    c->nhdr++;
  }
}

/* Signs and sends c (retrying idempotent requests with backoff), filling
 * the response fields. Returns 0 for a 2xx answer, else the status mapped
 * from the HTTP code (sbx/blob.h) or the transport error; every failure
 * that is not one of the call's quiet answers is described in *s->err. */
int sbx__s3_do(sbx_s3 *s, s3_call *c);

#endif
