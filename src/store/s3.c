/*
 * s3.c - the S3-compatible blob backend: the operations (open, put with
 * multipart upload, get, delete, scan for GC) on path-style URLs. Split as
 *   s3_sigv4.c     AWS Signature Version 4 (pure, test vectors)
 *   s3_xml.c       reading S3's XML answers (pure, fuzzed)
 *   s3_http.c      one signed HTTP exchange on libcurl (GnuTLS flavour),
 *                  retries, timeouts, bounded buffers
 *   s3.c           this file: what each operation sends and how it decides
 * with s3_internal.h (handle, exchange) and s3_sb.h (growable string).
 * Failures are described in the blob store's sbx_err, never printed.
 *
 *   key      "<prefix><tenant_id>/<object_id>"
 *   put      < part size: one PUT with If-None-Match: * (immutable blobs)
 *            >= part size: HEAD (must be absent), CreateMultipartUpload,
 *            UploadPart per full part buffer, CompleteMultipartUpload
 *            (AbortMultipartUpload on any error or abort). Completion is
 *            atomic, so a blob is visible whole or not at all, as with the
 *            local rename; the store commits the row only afterwards.
 *   get      GET streamed to the sink (the store authenticates every chunk)
 *   scan     ListObjectsV2 (LastModified) + ListMultipartUploads (Initiated:
 *            the "temp files"; remove_tmp aborts them)
 *
 * Every request signs the SHA-256 of its payload (x-amz-content-sha256; no
 * UNSIGNED-PAYLOAD): bodies are at most one part and are in memory. Retries
 * (exponential backoff with jitter) only for idempotent requests: GET, HEAD,
 * DELETE, UploadPart, List*, and the conditional PUT / Complete whose
 * ambiguous outcome after a retry (412 / NoSuchUpload) is resolved by HEAD
 * comparing the writer's random token stored as x-amz-meta-sbx-writer.
 * CreateMultipartUpload is never retried (a lost response leaks an upload
 * that GC aborts). A GET is retried only before any byte reached the sink.
 *
 * Limits: XML responses <= 8 MiB, error bodies kept up to 64 KiB, ETags and
 * upload ids <= 1 KiB, parts <= 10000; connect/total/stall timeouts.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3_internal.h"
#include "s3_xml.h"
#include "sbx/crypto.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;
static void curl_init(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dupz(const char *s) {
  return s ? strdup(s) : NULL;
}

/* ---- open / close ---- */

static int is_loopback_host(const char *h, size_t n) {
  return (n == 9 && !strncasecmp(h, "localhost", 9)) ||
         (n >= 4 && !strncmp(h, "127.", 4)) ||
         (n == 5 && !strncmp(h, "[::1]", 5));
}

static int prefix_ok(const char *p) {
  size_t n = strlen(p);
  if (n > 200 || p[0] == '/')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!(isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.' ||
          c == '/'))
      return 0;
  }
  return 1;
}

static int bucket_ok(const char *b) {
  size_t n = strlen(b);
  if (n < 3 || n > 63)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.'))
      return 0;
  }
  return 1;
}

static int bad_param(sbx_err *err, const char *what) {
  return sbx_err_set(err, SBX_EINVAL, "s3: invalid configuration: %s", what);
}

void sbx_s3_close(sbx_s3 *s) {
  if (!s)
    return;
  if (s->curl)
    curl_easy_cleanup(s->curl);
  if (s->secret) {
    sbx_memwipe(s->secret, strlen(s->secret));
    free(s->secret);
  }
  free(s->scheme_host);
  free(s->host);
  free(s->bucket);
  free(s->region);
  free(s->prefix);
  free(s->access);
  free(s->ca_file);
  free(s);
}

static int s3_create_bucket(sbx_s3 *s) {
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "PUT";
  c.idempotent = 1;
  sb body = {0};
  if (strcmp(s->region, "us-east-1")) {
    sb_adds(&body, "<CreateBucketConfiguration><LocationConstraint>");
    sb_adds(&body, s->region);
    sb_adds(&body, "</LocationConstraint></CreateBucketConfiguration>");
    if (body.oom)
      return SBX_ENOMEM;
    c.body = body.p;
    c.body_n = body.n;
  }
  int rc = sbx__s3_do(s, &c);
  sb_free(&body);
  if (rc == SBX_ECONFLICT) /* BucketAlreadyOwnedByYou / exists: HEAD decides */
    rc = SBX_OK;
  return rc;
}

int sbx_s3_open(const sbx_blob_params *p, sbx_err *err, sbx_s3 **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!p || p->backend != SBX_BLOB_S3)
    return SBX_EINVAL;
  if (!p->s3_endpoint || !*p->s3_endpoint)
    return bad_param(err, "no S3 endpoint");
  if (!p->s3_bucket || !bucket_ok(p->s3_bucket))
    return bad_param(err, "S3 bucket name missing or not [a-z0-9.-]{3,63}");
  if (!p->s3_access_key || !*p->s3_access_key || !p->s3_secret_key ||
      !*p->s3_secret_key)
    return bad_param(err, "S3 access key or secret key missing");
  if (strlen(p->s3_access_key) > 128 || strchr(p->s3_access_key, '/') ||
      strlen(p->s3_secret_key) > 256)
    return bad_param(err, "malformed S3 access key or secret key");
  if (p->s3_prefix && !prefix_ok(p->s3_prefix))
    return bad_param(err, "S3 prefix not [A-Za-z0-9_.-/]{0,200}");
  const char *region =
      p->s3_region && *p->s3_region ? p->s3_region : "us-east-1";
  for (const char *q = region; *q; q++)
    if (!(isalnum((unsigned char)*q) || *q == '-' || *q == '_') ||
        q - region > 60)
      return bad_param(err, "S3 region not [A-Za-z0-9_-]{1,60}");
  size_t part = p->s3_part_size ? p->s3_part_size : S3_DEFAULT_PART;
  if (part < S3_MIN_PART || part > S3_MAX_PART)
    return bad_param(err, "S3 part size outside 5 MiB .. 512 MiB");
  /* endpoint: scheme://host[:port][/] */
  const char *ep = p->s3_endpoint, *hp;
  int https;
  if (!strncasecmp(ep, "https://", 8)) {
    https = 1;
    hp = ep + 8;
  } else if (!strncasecmp(ep, "http://", 7)) {
    https = 0;
    hp = ep + 7;
  } else {
    return bad_param(err, "S3 endpoint must start with https:// or http://");
  }
  size_t hl = strcspn(hp, "/?#");
  if (hl == 0 || hl > 255 || memchr(hp, '@', hl) ||
      (hp[hl] && strcmp(hp + hl, "/")))
    return bad_param(err,
                     "S3 endpoint must be scheme://host[:port] (no path, no "
                     "user info)");
  for (size_t i = 0; i < hl; i++)
    if (!(isalnum((unsigned char)hp[i]) || strchr(".-:[]", hp[i])))
      return bad_param(err, "S3 endpoint host has invalid characters");
  /* host without the port, for the loopback check */
  size_t hostlen = hl;
  if (hp[0] == '[') {
    const char *rb = memchr(hp, ']', hl);
    hostlen = rb ? (size_t)(rb - hp) + 1 : hl;
  } else {
    const char *colon = memchr(hp, ':', hl);
    hostlen = colon ? (size_t)(colon - hp) : hl;
  }
  int loop = is_loopback_host(hp, hostlen);
  if (!https && !loop && !p->s3_allow_http)
    return bad_param(err,
                     "plain http to a non-loopback S3 endpoint (use https, "
                     "or set s3_allow_http)");
  if (pthread_once(&curl_once, curl_init) || curl_init_rc != CURLE_OK)
    return SBX_EBACKEND;
  sbx_s3 *s = calloc(1, sizeof *s);
  if (!s)
    return SBX_ENOMEM;
  s->err = err;
  s->loopback = loop;
  s->part_size = part;
  s->timeout_ms = p->s3_timeout_ms ? (long)p->s3_timeout_ms : 120000L;
  s->connect_ms =
      p->s3_connect_timeout_ms ? (long)p->s3_connect_timeout_ms : 10000L;
  if (s->connect_ms > s->timeout_ms)
    s->connect_ms = s->timeout_ms;
  s->retries = p->s3_retries == 0 ? 3 : (p->s3_retries < 0 ? 0 : p->s3_retries);
  if (s->retries > 10)
    s->retries = 10;
  s->host = strndup(hp, hl);
  if (s->host)
    for (char *q = s->host; *q; q++)
      *q = (char)tolower((unsigned char)*q);
  if (s->host && asprintf(&s->scheme_host, "%s://%s", https ? "https" : "http",
                          s->host) < 0)
    s->scheme_host = NULL;
  s->bucket = dupz(p->s3_bucket);
  s->region = dupz(region);
  s->prefix = dupz(p->s3_prefix ? p->s3_prefix : "");
  s->access = dupz(p->s3_access_key);
  s->secret = dupz(p->s3_secret_key);
  s->ca_file = dupz(p->s3_ca_file);
  s->curl = curl_easy_init();
  if (!s->host || !s->scheme_host || !s->bucket || !s->region || !s->prefix ||
      !s->access || !s->secret || (p->s3_ca_file && !s->ca_file) || !s->curl) {
    sbx_s3_close(s);
    return SBX_ENOMEM;
  }
  int rc = p->s3_create_bucket ? s3_create_bucket(s) : SBX_OK;
  if (!rc) {
    s3_call c;
    memset(&c, 0, sizeof c);
    c.method = "HEAD";
    c.idempotent = 1;
    c.quiet404 = 1;
    c.quiet403 = 1;
    rc = sbx__s3_do(s, &c);
    if (rc == SBX_ENOTFOUND)
      sbx_err_set(err, rc, "s3: bucket %s does not exist at %s", s->bucket,
                  s->scheme_host);
    else if (rc == SBX_EAUTH)
      sbx_err_set(err, rc,
                  "s3: access to bucket %s at %s refused (HTTP %ld): wrong "
                  "access/secret key, clock skew, or no permission",
                  s->bucket, s->scheme_host, c.code);
  }
  if (rc) {
    sbx_s3_close(s);
    return rc;
  }
  *out = s;
  return SBX_OK;
}

/* ---- objects ---- */

static int make_key(const char *t, const char *o, char *out, size_t cap) {
  if (!sbx_id_valid(t) || !sbx_id_valid(o))
    return SBX_EINVAL;
  int n = snprintf(out, cap, "%s/%s", t, o);
  return n < 0 || (size_t)n >= cap ? SBX_ELIMIT : SBX_OK;
}

/* HEAD: does the object exist, and with which writer token */
static int s3_head(sbx_s3 *s, const char *key, int64_t *size, char *etag,
                   char *writer) {
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "HEAD";
  c.key = key;
  c.idempotent = 1;
  c.quiet404 = 1;
  int rc = sbx__s3_do(s, &c);
  if (!rc) {
    if (size)
      *size = c.length;
    if (etag)
      snprintf(etag, S3_SMALL_MAX + 1, "%s", c.etag);
    if (writer)
      snprintf(writer, S3_SMALL_MAX + 1, "%s", c.meta_writer);
  }
  return rc;
}

/* after a retried request whose outcome was ambiguous: did *our* write land? */
static int landed(sbx_s3_writer *w) {
  char *tok = malloc(S3_SMALL_MAX + 1);
  if (!tok)
    return 0;
  int ok = s3_head(w->s, w->key, NULL, NULL, tok) == SBX_OK &&
           !strcmp(tok, w->token);
  free(tok);
  return ok;
}

int sbx_s3_writer_open(sbx_s3 *s, const char *tenant_id, const char *object_id,
                       sbx_s3_writer **out) {
  *out = NULL;
  if (!s)
    return SBX_EINVAL;
  sbx_s3_writer *w = calloc(1, sizeof *w);
  if (!w)
    return SBX_ENOMEM;
  w->s = s;
  uint8_t rnd[16];
  int rc = make_key(tenant_id, object_id, w->key, sizeof w->key);
  if (!rc)
    rc = sbx_random(rnd, sizeof rnd);
  if (rc) {
    free(w);
    return rc;
  }
  sbx_hex(rnd, sizeof rnd, w->token);
  *out = w;
  return SBX_OK;
}

static int upload_query(sbx_s3_writer *w, int part, char *q, size_t cap) {
  char num[16];
  snprintf(num, sizeof num, "%d", part);
  const char *kv[4] = {"uploadId", w->upload_id, "partNumber", num};
  return sbx_s3_query(kv, part ? 2 : 1, q, cap);
}

/* CreateMultipartUpload for w->key after checking with HEAD that the key
 * is free (blobs are immutable); keeps the upload id. Never retried. */
static int create_upload(sbx_s3_writer *w) {
  /* blobs are immutable: refuse an existing key before uploading parts */
  int rc = s3_head(w->s, w->key, NULL, NULL, NULL);
  if (rc == SBX_OK)
    return SBX_EEXIST;
  if (rc != SBX_ENOTFOUND)
    return rc;
  sb xml = {0};
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "POST";
  c.key = w->key;
  c.query = "uploads=";
  c.xml = &xml;
  c.idempotent = 0; /* a retry could leak an upload: never */
  call_add_hdr(&c, "content-type", "application/octet-stream");
  call_add_hdr(&c, "x-amz-meta-sbx-writer", w->token);
  rc = sbx__s3_do(w->s, &c);
  size_t l;
  const char *v =
      rc ? NULL : sbx__s3_xml_find(xml.p, xml.p + xml.n, "UploadId", &l, NULL);
  if (!rc && (!v || l == 0 || l > S3_SMALL_MAX))
    rc = sbx_err_set(w->s->err, SBX_EBACKEND,
                     "s3: CreateMultipartUpload %s: no UploadId", w->key);
  if (!rc) {
    w->upload_id = malloc(l + 1);
    rc = !w->upload_id                                 ? SBX_ENOMEM
         : sbx__s3_xml_text(v, l, w->upload_id, l + 1) ? SBX_EBACKEND
                                                       : SBX_OK;
  }
  sb_free(&xml);
  return rc;
}

/* Uploads the writer's buffer as the next part (starting the upload on the
 * first one) and records its ETag; the buffer is empty afterwards. */
static int upload_part(sbx_s3_writer *w) {
  int rc = SBX_OK;
  if (!w->upload_id && (rc = create_upload(w)))
    return rc;
  if (w->parts >= S3_MAX_PARTS)
    return SBX_ELIMIT;
  char **e = realloc(w->etags, (size_t)(w->parts + 1) * sizeof *e);
  if (!e)
    return SBX_ENOMEM;
  w->etags = e;
  char q[S3_SMALL_MAX * 3 + 64];
  if ((rc = upload_query(w, w->parts + 1, q, sizeof q)))
    return rc;
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "PUT";
  c.key = w->key;
  c.query = q;
  c.body = w->buf;
  c.body_n = w->n;
  c.idempotent = 1; /* the same part number simply overwrites */
  rc = sbx__s3_do(w->s, &c);
  if (!rc && !c.etag[0])
    rc = sbx_err_set(w->s->err, SBX_EBACKEND, "s3: UploadPart %s #%d: no ETag",
                     w->key, w->parts + 1);
  if (!rc && !(w->etags[w->parts] = strdup(c.etag)))
    rc = SBX_ENOMEM;
  if (!rc) {
    w->parts++;
    w->n = 0;
  }
  return rc;
}

int sbx_s3_writer_write(sbx_s3_writer *w, const void *buf, size_t n) {
  if (!w)
    return SBX_EINVAL;
  if (w->status)
    return w->status;
  const uint8_t *p = buf;
  while (n > 0) {
    size_t part = w->s->part_size;
    if (w->n == w->cap) {
      if (w->cap == part) {
        if ((w->status = upload_part(w)))
          return w->status;
        continue;
      }
      size_t cap = w->cap ? w->cap * 2 : 64 << 10;
      while (cap < w->n + n && cap < part)
        cap *= 2;
      if (cap > part)
        cap = part;
      uint8_t *q = realloc(w->buf, cap);
      if (!q)
        return w->status = SBX_ENOMEM;
      w->buf = q;
      w->cap = cap;
    }
    size_t k = w->cap - w->n < n ? w->cap - w->n : n;
    memcpy(w->buf + w->n, p, k);
    w->n += k;
    p += k;
    n -= k;
  }
  return SBX_OK;
}

/* AbortMultipartUpload, best effort (GC catches what is left). */
static void abort_upload(sbx_s3 *s, const char *key, const char *upload_id) {
  const char *kv[2] = {"uploadId", upload_id};
  char q[S3_SMALL_MAX * 3 + 16];
  if (sbx_s3_query(kv, 1, q, sizeof q))
    return;
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "DELETE";
  c.key = key;
  c.query = q;
  c.idempotent = 1;
  c.quiet404 = 1;
  sbx__s3_do(s, &c);
}

void sbx_s3_writer_abort(sbx_s3_writer *w) {
  if (!w)
    return;
  if (w->upload_id)
    abort_upload(w->s, w->key, w->upload_id);
  for (int i = 0; i < w->parts; i++)
    free(w->etags[i]);
  free(w->etags);
  free(w->upload_id);
  free(w->buf);
  free(w);
}

/* A blob smaller than one part: one conditional PUT; a 412 after a retry
 * is success when the object carries this writer's token. */
static int put_single(sbx_s3_writer *w) {
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "PUT";
  c.key = w->key;
  c.body = w->buf;
  c.body_n = w->n;
  c.idempotent = 1; /* ambiguity after a retry is resolved with the token */
  c.quiet412 = 1;
  call_add_hdr(&c, "if-none-match", "*");
  call_add_hdr(&c, "x-amz-meta-sbx-writer", w->token);
  int rc = sbx__s3_do(w->s, &c);
  if (rc == SBX_EEXIST && c.attempts > 1 && landed(w))
    rc = SBX_OK;
  return rc;
}

/* CompleteMultipartUpload with every part's ETag; an error inside a 200
 * answer is a failure; NoSuchUpload after a retry is success when the
 * object carries this writer's token. */
static int complete_upload(sbx_s3_writer *w) {
  sb body = {0}, xml = {0};
  sb_adds(&body, "<CompleteMultipartUpload>");
  for (int i = 0; i < w->parts; i++) {
    sb_addf(&body, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
    for (const char *q = w->etags[i]; *q; q++) { /* ETags carry '"' */
      if (*q == '"')
        sb_adds(&body, "&quot;");
      else if (*q == '&')
        sb_adds(&body, "&amp;");
      else if (*q == '<')
        sb_adds(&body, "&lt;");
      else
        sb_add(&body, q, 1);
    }
    sb_adds(&body, "</ETag></Part>");
  }
  sb_adds(&body, "</CompleteMultipartUpload>");
  char q[S3_SMALL_MAX * 3 + 16];
  int rc = body.oom ? SBX_ENOMEM : upload_query(w, 0, q, sizeof q);
  s3_call c;
  memset(&c, 0, sizeof c);
  if (!rc) {
    c.method = "POST";
    c.key = w->key;
    c.query = q;
    c.body = body.p;
    c.body_n = body.n;
    c.xml = &xml;
    c.idempotent = 1; /* a repeat returns the result or NoSuchUpload */
    c.quiet404 = 1;
    call_add_hdr(&c, "content-type", "application/xml");
    rc = sbx__s3_do(w->s, &c);
  }
  /* S3 may answer 200 and put the error in the body */
  size_t l;
  if (!rc && sbx__s3_xml_find(xml.p, xml.p + xml.n, "Code", &l, NULL)) {
    char code[128], msg[256];
    sbx__s3_xml_error(xml.p, xml.n, code, sizeof code, msg, sizeof msg);
    rc = sbx_err_set(w->s->err, SBX_EBACKEND,
                     "s3: CompleteMultipartUpload %s: error in a 200 "
                     "response: %s%s%s",
                     w->key, code, msg[0] ? ": " : "", msg);
  }
  if (rc == SBX_ENOTFOUND && c.attempts > 1 && landed(w))
    rc = SBX_OK;
  else if (rc == SBX_ENOTFOUND)
    sbx_err_set(w->s->err, rc, "s3: CompleteMultipartUpload %s: NoSuchUpload",
                w->key);
  sb_free(&body);
  sb_free(&xml);
  return rc;
}

int sbx_s3_writer_commit(sbx_s3_writer *w) {
  if (!w)
    return SBX_EINVAL;
  int rc = w->status;
  if (!rc && !w->upload_id) {
    rc = put_single(w);
  } else if (!rc) {
    if (w->n > 0)
      rc = upload_part(w);
    if (!rc)
      rc = complete_upload(w);
    if (!rc) { /* completed: nothing left to abort */
      free(w->upload_id);
      w->upload_id = NULL;
    }
  }
  sbx_s3_writer_abort(w); /* aborts the upload on error, frees */
  return rc;
}

int sbx_s3_read(sbx_s3 *s, const char *tenant_id, const char *object_id,
                sbx_sink_fn sink, void *ctx) {
  char key[2 * SBX_ID_MAX + 2];
  int rc = make_key(tenant_id, object_id, key, sizeof key);
  if (rc)
    return rc;
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "GET";
  c.key = key;
  c.idempotent = 1; /* retried only while nothing reached the sink */
  c.quiet404 = 1;
  c.sink = sink;
  c.sink_ctx = ctx;
  return sbx__s3_do(s, &c);
}

int sbx_s3_remove(sbx_s3 *s, const char *tenant_id, const char *object_id) {
  char key[2 * SBX_ID_MAX + 2];
  int rc = make_key(tenant_id, object_id, key, sizeof key);
  if (rc)
    return rc;
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "DELETE";
  c.key = key;
  c.idempotent = 1;
  c.quiet404 = 1;
  rc = sbx__s3_do(s, &c);
  return rc;
}

/* "tenant/object#uploadId" */
int sbx_s3_remove_tmp(sbx_s3 *s, const char *tmp_name) {
  if (!s || !tmp_name)
    return SBX_EINVAL;
  const char *hash = strchr(tmp_name, '#');
  const char *slash = strchr(tmp_name, '/');
  if (!hash || !slash || slash > hash || !hash[1] ||
      strlen(hash + 1) > S3_SMALL_MAX)
    return SBX_EINVAL;
  char t[SBX_ID_MAX], o[SBX_ID_MAX], key[2 * SBX_ID_MAX + 2];
  size_t tl = (size_t)(slash - tmp_name), ol = (size_t)(hash - slash - 1);
  if (tl >= sizeof t || ol >= sizeof o)
    return SBX_EINVAL;
  memcpy(t, tmp_name, tl);
  t[tl] = 0;
  memcpy(o, slash + 1, ol);
  o[ol] = 0;
  int rc = make_key(t, o, key, sizeof key);
  if (rc)
    return rc;
  const char *kv[2] = {"uploadId", hash + 1};
  char q[S3_SMALL_MAX * 3 + 16];
  if ((rc = sbx_s3_query(kv, 1, q, sizeof q)))
    return rc;
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "DELETE";
  c.key = key;
  c.query = q;
  c.idempotent = 1;
  c.quiet404 = 1;
  return sbx__s3_do(s, &c);
}

typedef int (*scan_fn)(void *ctx, const char *tenant_id, const char *object_id,
                       const char *tmp_name, int64_t mtime);

/* GET of a listing (bucket, or object key with query q) into xml, retried
 * as idempotent; quiet404: a missing key is SBX_ENOTFOUND without a log
 * line. The caller frees xml. */
static int s3_get_xml(sbx_s3 *s, const char *key, const char *q, sb *xml,
                      int quiet404) {
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "GET";
  c.key = key;
  c.query = q;
  c.xml = xml;
  c.idempotent = 1;
  c.quiet404 = quiet404;
  return sbx__s3_do(s, &c);
}

/* An unfinished upload's age is that of its latest part (ListParts), like
 * the mtime of a local temp file, so that GC never aborts an upload that is
 * still making progress; Initiated alone would be its start. */
static int upload_activity(sbx_s3 *s, const sbx__s3_item *it, int64_t *mtime) {
  char key[2 * SBX_ID_MAX + 2], marker[16] = "";
  snprintf(key, sizeof key, "%s/%s", it->t, it->o);
  for (int pages = 0; pages < 20; pages++) {
    const char *kv[6] = {"uploadId", it->upload_id,        "max-parts",
                         "1000",     "part-number-marker", marker};
    char q[S3_SMALL_MAX * 3 + 128];
    int rc = sbx_s3_query(kv, marker[0] ? 3 : 2, q, sizeof q);
    if (rc)
      return rc;
    sb xml = {0};
    rc = s3_get_xml(s, key, q, &xml,
                    1); /* 404: completed or aborted meanwhile */
    if (!rc)
      sbx__s3_xml_parts_latest(xml.p, xml.n, mtime);
    char *next = !rc && sbx__s3_xml_truncated(xml.p, xml.n)
                     ? sbx__s3_xml_dup(xml.p, xml.n, "NextPartNumberMarker")
                     : NULL;
    sb_free(&xml);
    if (rc || !next || strlen(next) >= sizeof marker) {
      free(next);
      return rc == SBX_ENOTFOUND ? SBX_OK : rc;
    }
    snprintf(marker, sizeof marker, "%s", next);
    free(next);
  }
  return SBX_OK;
}

int sbx_s3_scan(sbx_s3 *s, scan_fn fn, void *ctx) {
  if (!s || !fn)
    return SBX_EINVAL;
  int rc = SBX_OK, stop = 0;
  /* 1. unfinished multipart uploads = temp files */
  char *km = NULL, *um = NULL;
  for (int pages = 0; !rc && !stop && pages < 100000; pages++) {
    const char *kv[8] = {"uploads",    "", "prefix",           s->prefix,
                         "key-marker", km, "upload-id-marker", um};
    char q[16384];
    rc = sbx_s3_query(kv, km ? (um ? 4 : 3) : 2, q, sizeof q);
    if (rc)
      break;
    sb xml = {0};
    rc = s3_get_xml(s, NULL, q, &xml, 0);
    sbx__s3_item *it = NULL;
    size_t n = 0;
    if (!rc)
      rc = sbx__s3_xml_list(xml.p, xml.n, "Upload", 1, s->prefix, &it, &n);
    int more = !rc && sbx__s3_xml_truncated(xml.p, xml.n);
    free(km);
    free(um);
    km = more ? sbx__s3_xml_dup(xml.p, xml.n, "NextKeyMarker") : NULL;
    um = more ? sbx__s3_xml_dup(xml.p, xml.n, "NextUploadIdMarker") : NULL;
    sb_free(&xml);
    for (size_t i = 0; !rc && !stop && i < n; i++) {
      if ((rc = upload_activity(s, &it[i], &it[i].mtime)))
        break;
      char tmp[2 * SBX_ID_MAX + S3_SMALL_MAX + 4];
      snprintf(tmp, sizeof tmp, "%s/%s#%s", it[i].t, it[i].o, it[i].upload_id);
      int r = fn(ctx, NULL, NULL, tmp, it[i].mtime);
      if (r)
        stop = 1, rc = r < 0 ? r : SBX_OK;
    }
    sbx__s3_items_free(it, n);
    if (!more || !km)
      break;
  }
  free(km);
  free(um);
  /* 2. committed objects */
  char *token = NULL;
  for (int pages = 0; !rc && !stop && pages < 1000000; pages++) {
    const char *kv[8] = {
        "list-type",          "2",  "prefix", s->prefix, "max-keys", "1000",
        "continuation-token", token};
    char q[16384];
    if ((rc = sbx_s3_query(kv, token ? 4 : 3, q, sizeof q)))
      break;
    sb xml = {0};
    rc = s3_get_xml(s, NULL, q, &xml, 0);
    sbx__s3_item *it = NULL;
    size_t n = 0;
    if (!rc)
      rc = sbx__s3_xml_list(xml.p, xml.n, "Contents", 0, s->prefix, &it, &n);
    int more = !rc && sbx__s3_xml_truncated(xml.p, xml.n);
    free(token);
    token =
        more ? sbx__s3_xml_dup(xml.p, xml.n, "NextContinuationToken") : NULL;
    sb_free(&xml);
    for (size_t i = 0; !rc && !stop && i < n; i++) {
      int r = fn(ctx, it[i].t, it[i].o, NULL, it[i].mtime);
      if (r)
        stop = 1, rc = r < 0 ? r : SBX_OK;
    }
    sbx__s3_items_free(it, n);
    if (!more)
      break;
    if (!token)
      rc = sbx_err_set(s->err, SBX_EBACKEND,
                       "s3: ListObjectsV2 truncated without a token");
  }
  free(token);
  return rc;
}

/* ---- configuration from the environment ---- */

int sbx_blob_s3_params_from_env(sbx_blob_params *p) {
  if (!p)
    return SBX_EINVAL;
  const char *ep = getenv("SBX_S3_ENDPOINT");
  if (!ep || !*ep)
    return SBX_ENOTFOUND;
  const char *ak = getenv("SBX_S3_ACCESS_KEY_ID");
  const char *sk = getenv("SBX_S3_SECRET_ACCESS_KEY");
  if (!ak || !*ak)
    ak = getenv("AWS_ACCESS_KEY_ID");
  if (!sk || !*sk)
    sk = getenv("AWS_SECRET_ACCESS_KEY");
  p->backend = SBX_BLOB_S3;
  p->s3_endpoint = ep;
  p->s3_bucket = getenv("SBX_S3_BUCKET");
  p->s3_region = getenv("SBX_S3_REGION");
  p->s3_prefix = getenv("SBX_S3_PREFIX");
  p->s3_ca_file = getenv("SBX_S3_CA_FILE");
  p->s3_access_key = ak;
  p->s3_secret_key = sk;
  if (!p->s3_bucket || !*p->s3_bucket || !ak || !*ak || !sk || !*sk)
    return SBX_EINVAL;
  return SBX_OK;
}

/* ---- test hooks ---- */

int sbx_s3_test_put(sbx_s3 *s, const char *key, const void *body, size_t n,
                    const char *payload_sha256) {
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "PUT";
  c.key = key;
  c.body = body;
  c.body_n = n;
  c.payload_hash = payload_sha256;
  return sbx__s3_do(s, &c);
}

int sbx_s3_test_head(sbx_s3 *s, const char *key, int64_t *size, char *etag) {
  return s3_head(s, key, size, etag, NULL);
}

int sbx_s3_test_set_secret(sbx_s3 *s, const char *secret) {
  char *d = strdup(secret);
  if (!d)
    return SBX_ENOMEM;
  sbx_memwipe(s->secret, strlen(s->secret));
  free(s->secret);
  s->secret = d;
  return SBX_OK;
}

long sbx_s3_test_requests(const sbx_s3 *s) {
  return s->requests;
}
