/*
 * s3.c - the S3-compatible blob backend: AWS Signature Version 4 on libcurl
 * (GnuTLS flavour), path-style URLs, multipart upload for large blobs.
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
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "s3.h"
#include "sbx/crypto.h"
#include "sbx/meta.h"

#define S3_DEFAULT_PART (8u << 20)
#define S3_MIN_PART (5u << 20)
#define S3_MAX_PART (512u << 20)
#define S3_MAX_PARTS 10000
#define S3_XML_MAX (8u << 20)
#define S3_ERR_MAX (64u << 10)
#define S3_SMALL_MAX 1024 /* ETag, upload id, header values we keep */
#define S3_EMPTY_SHA256                                                        \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- growable string ---- */

typedef struct sb {
  char *p;
  size_t n, cap;
  int oom;
} sb;

static void sb_free(sb *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static void sb_add(sb *b, const void *s, size_t n) {
  if (b->oom)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_adds(sb *b, const char *s) {
  sb_add(b, s, strlen(s));
}

static void sb_addf(sb *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp)
    b->oom = 1;
  else
    sb_add(b, tmp, (size_t)n);
}

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
         c == '~';
}

static void sb_enc(sb *b, const char *s, int keep_slash) {
  static const char hx[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (unreserved(*p) || (keep_slash && *p == '/')) {
      sb_add(b, p, 1);
    } else {
      char e[3] = {'%', hx[*p >> 4], hx[*p & 15]};
      sb_add(b, e, 3);
    }
  }
}

static int sb_out(sb *b, char *out, size_t cap) {
  int rc = b->oom ? SBX_ENOMEM : (b->n + 1 > cap ? SBX_ELIMIT : SBX_OK);
  if (!rc)
    memcpy(out, b->p ? b->p : "", b->n + 1);
  sb_free(b);
  return rc;
}

int sbx_s3_uri_encode(const char *in, int keep_slash, char *out, size_t cap) {
  if (!in || !out)
    return SBX_EINVAL;
  sb b = {0};
  sb_adds(&b, "");
  sb_enc(&b, in, keep_slash);
  return sb_out(&b, out, cap);
}

/* ---- canonical query ---- */

typedef struct qpair {
  char *k, *v;
} qpair;

static int qpair_cmp(const void *a, const void *b) {
  const qpair *x = a, *y = b;
  int c = strcmp(x->k, y->k);
  return c ? c : strcmp(x->v, y->v);
}

static char *enc_dup(const char *s) {
  sb b = {0};
  sb_adds(&b, "");
  sb_enc(&b, s ? s : "", 0);
  if (b.oom) {
    sb_free(&b);
    return NULL;
  }
  return b.p;
}

int sbx_s3_query(const char *const *kv, size_t n, char *out, size_t cap) {
  if ((!kv && n) || !out)
    return SBX_EINVAL;
  qpair *q = calloc(n ? n : 1, sizeof *q);
  int rc = q ? SBX_OK : SBX_ENOMEM;
  for (size_t i = 0; !rc && i < n; i++) {
    q[i].k = enc_dup(kv[2 * i]);
    q[i].v = enc_dup(kv[2 * i + 1]);
    if (!q[i].k || !q[i].v)
      rc = SBX_ENOMEM;
  }
  sb b = {0};
  if (!rc) {
    qsort(q, n, sizeof *q, qpair_cmp);
    sb_adds(&b, "");
    for (size_t i = 0; i < n; i++) {
      if (i)
        sb_adds(&b, "&");
      sb_adds(&b, q[i].k);
      sb_adds(&b, "=");
      sb_adds(&b, q[i].v);
    }
    rc = sb_out(&b, out, cap);
  }
  for (size_t i = 0; q && i < n; i++) {
    free(q[i].k);
    free(q[i].v);
  }
  free(q);
  return rc;
}

/* ---- SigV4 ---- */

typedef struct hdr_ix {
  char name[64];
  const char *value;
} hdr_ix;

static int hdr_cmp(const void *a, const void *b) {
  return strcmp(((const hdr_ix *)a)->name, ((const hdr_ix *)b)->name);
}

/* value with leading/trailing blanks removed and inner runs collapsed */
static void sb_trimmed(sb *b, const char *v) {
  while (*v == ' ' || *v == '\t')
    v++;
  int sp = 0;
  for (; *v; v++) {
    if (*v == ' ' || *v == '\t') {
      sp = 1;
      continue;
    }
    if (sp)
      sb_add(b, " ", 1);
    sp = 0;
    sb_add(b, v, 1);
  }
}

static int hmac(const void *k, size_t kn, const char *msg, uint8_t out[32]) {
  return sbx_hmac_sha256(k, kn, msg, strlen(msg), out);
}

int sbx_sigv4_sign(const sbx_sigv4_req *r, char *auth, size_t cap,
                   char **creq_out, char **sts_out) {
  if (creq_out)
    *creq_out = NULL;
  if (sts_out)
    *sts_out = NULL;
  if (!r || !auth || !r->method || !r->canonical_uri || !r->payload_sha256 ||
      !r->access_key || !r->secret_key || !r->region || !r->service ||
      !r->amz_date || strlen(r->amz_date) != 16 || r->nheaders > 32 ||
      (r->nheaders && !r->headers))
    return SBX_EINVAL;
  hdr_ix h[32];
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *nm = r->headers[i].name;
    size_t l = strlen(nm);
    if (!l || l >= sizeof h[i].name || !r->headers[i].value)
      return SBX_EINVAL;
    for (size_t j = 0; j <= l; j++)
      h[i].name[j] = (char)tolower((unsigned char)nm[j]);
    h[i].value = r->headers[i].value;
  }
  qsort(h, r->nheaders, sizeof h[0], hdr_cmp);
  sb signed_h = {0}, creq = {0}, sts = {0}, out = {0};
  sb_adds(&signed_h, "");
  for (size_t i = 0; i < r->nheaders; i++) {
    if (i)
      sb_adds(&signed_h, ";");
    sb_adds(&signed_h, h[i].name);
  }
  sb_adds(&creq, r->method);
  sb_adds(&creq, "\n");
  sb_adds(&creq, r->canonical_uri);
  sb_adds(&creq, "\n");
  sb_adds(&creq, r->canonical_query ? r->canonical_query : "");
  sb_adds(&creq, "\n");
  for (size_t i = 0; i < r->nheaders; i++) {
    sb_adds(&creq, h[i].name);
    sb_adds(&creq, ":");
    sb_trimmed(&creq, h[i].value);
    sb_adds(&creq, "\n");
  }
  sb_adds(&creq, "\n");
  if (signed_h.p)
    sb_adds(&creq, signed_h.p);
  sb_adds(&creq, "\n");
  sb_adds(&creq, r->payload_sha256);
  int rc = creq.oom || signed_h.oom ? SBX_ENOMEM : SBX_OK;
  uint8_t d[32];
  char dhex[65], date8[9];
  memcpy(date8, r->amz_date, 8);
  date8[8] = 0;
  if (!rc)
    rc = sbx_sha256(creq.p, creq.n, d);
  if (!rc) {
    sbx_hex(d, 32, dhex);
    sb_adds(&sts, "AWS4-HMAC-SHA256\n");
    sb_adds(&sts, r->amz_date);
    sb_addf(&sts, "\n%s/%s/%s/aws4_request\n", date8, r->region, r->service);
    sb_adds(&sts, dhex);
    if (sts.oom)
      rc = SBX_ENOMEM;
  }
  /* signing key: HMAC chain over date, region, service, "aws4_request" */
  uint8_t k[32], k2[32];
  sb ksecret = {0};
  sb_adds(&ksecret, "AWS4");
  sb_adds(&ksecret, r->secret_key);
  if (!rc && ksecret.oom)
    rc = SBX_ENOMEM;
  if (!rc)
    rc = hmac(ksecret.p, ksecret.n, date8, k);
  if (!rc)
    rc = hmac(k, 32, r->region, k2);
  if (!rc)
    rc = hmac(k2, 32, r->service, k);
  if (!rc)
    rc = hmac(k, 32, "aws4_request", k2);
  if (!rc)
    rc = hmac(k2, 32, sts.p, d);
  sbx_memwipe(k, sizeof k);
  sbx_memwipe(k2, sizeof k2);
  if (ksecret.p)
    sbx_memwipe(ksecret.p, ksecret.n);
  sb_free(&ksecret);
  if (!rc) {
    sbx_hex(d, 32, dhex);
    sb_addf(&out, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, ",
            r->access_key, date8, r->region, r->service);
    sb_adds(&out, "SignedHeaders=");
    sb_adds(&out, signed_h.p ? signed_h.p : "");
    sb_adds(&out, ", Signature=");
    sb_adds(&out, dhex);
    rc = sb_out(&out, auth, cap);
  }
  if (!rc && creq_out) {
    *creq_out = creq.p;
    creq.p = NULL;
  }
  if (!rc && sts_out) {
    *sts_out = sts.p;
    sts.p = NULL;
  }
  sb_free(&out);
  sb_free(&signed_h);
  sb_free(&creq);
  sb_free(&sts);
  return rc;
}

/* ---- the store ---- */

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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;
static void curl_init(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dupz(const char *s) {
  return s ? strdup(s) : NULL;
}

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
  int quiet403; /* the caller prints its own message */
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

static void call_add_hdr(s3_call *c, const char *name, const char *value) {
  if (c->nhdr < 4) {
    c->hdr_names[c->nhdr] = name;
    c->hdr_values[c->nhdr] = value;
    c->nhdr++;
  }
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud) {
  s3_call *c = ud;
  size_t n = sz * nm;
  if (n >= 5 && !memcmp(p, "HTTP/", 5)) { /* a new response starts */
    const char *sp = memchr(p, ' ', n);
    c->code = sp ? strtol(sp + 1, NULL, 10) : 0;
    c->etag[0] = c->meta_writer[0] = 0;
    c->length = -1;
    return n;
  }
  const char *colon = memchr(p, ':', n);
  if (!colon)
    return n;
  size_t nl = (size_t)(colon - p);
  const char *v = colon + 1, *e = p + n;
  while (v < e && (*v == ' ' || *v == '\t'))
    v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
    e--;
  size_t vl = (size_t)(e - v);
  char *dst = NULL;
  if (nl == 4 && !strncasecmp(p, "etag", 4))
    dst = c->etag;
  else if (nl == 21 && !strncasecmp(p, "x-amz-meta-sbx-writer", 21))
    dst = c->meta_writer;
  else if (nl == 14 && !strncasecmp(p, "content-length", 14)) {
    char tmp[32];
    if (vl < sizeof tmp) {
      memcpy(tmp, v, vl);
      tmp[vl] = 0;
      c->length = strtoll(tmp, NULL, 10);
    }
  }
  if (dst && vl <= S3_SMALL_MAX) {
    memcpy(dst, v, vl);
    dst[vl] = 0;
  }
  return n;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ud) {
  s3_call *c = ud;
  size_t n = sz * nm;
  if (c->code / 100 == 2) {
    if (c->sink) {
      int rc = c->sink(c->sink_ctx, p, n);
      if (rc) {
        c->sink_rc = rc;
        return 0;
      }
      c->delivered += n;
      return n;
    }
    if (c->xml) {
      if (c->xml->n + n > S3_XML_MAX) {
        c->too_big = 1;
        return 0;
      }
      sb_add(c->xml, p, n);
      return c->xml->oom ? 0 : n;
    }
    return n; /* ignored */
  }
  if (c->err.n < S3_ERR_MAX) /* keep the start of an error document */
    sb_add(&c->err, p, n < S3_ERR_MAX - c->err.n ? n : S3_ERR_MAX - c->err.n);
  return n;
}

static size_t on_read(char *p, size_t sz, size_t nm, void *ud) {
  s3_call *c = ud;
  size_t n = sz * nm, left = c->body_n - c->body_off;
  if (n > left)
    n = left;
  if (n)
    memcpy(p, (const uint8_t *)c->body + c->body_off, n);
  c->body_off += n;
  return n;
}

static int on_seek(void *ud, curl_off_t off, int origin) {
  s3_call *c = ud;
  if (origin != SEEK_SET || off < 0 || (uint64_t)off > c->body_n)
    return CURL_SEEKFUNC_CANTSEEK;
  c->body_off = (size_t)off;
  return CURL_SEEKFUNC_OK;
}

/* value of <tag>...</tag> inside [p, e): pointer + length, or NULL */
static const char *xml_find(const char *p, const char *e, const char *tag,
                            size_t *len, const char **after) {
  char open[80], close[82];
  int ol = snprintf(open, sizeof open, "<%s>", tag);
  int cl = snprintf(close, sizeof close, "</%s>", tag);
  if (!p || p >= e)
    return NULL;
  const char *s = memmem(p, (size_t)(e - p), open, (size_t)ol);
  if (!s)
    return NULL;
  s += ol;
  const char *t = memmem(s, (size_t)(e - s), close, (size_t)cl);
  if (!t)
    return NULL;
  *len = (size_t)(t - s);
  if (after)
    *after = t + cl;
  return s;
}

/* decodes the five XML entities and numeric ASCII references into out */
static int xml_text(const char *v, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = v[i];
    if (ch == '&') {
      static const struct {
        const char *e;
        char c;
      } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'},
                  {"&quot;", '"'}, {"&apos;", '\''}};
      size_t k;
      for (k = 0; k < 5; k++) {
        size_t el = strlen(ents[k].e);
        if (i + el <= n && !memcmp(v + i, ents[k].e, el)) {
          ch = ents[k].c;
          i += el - 1;
          break;
        }
      }
      if (k == 5 && i + 3 < n && v[i + 1] == '#') {
        const char *semi = memchr(v + i, ';', n - i);
        if (!semi)
          return SBX_EFORMAT;
        long cp = v[i + 2] == 'x' ? strtol(v + i + 3, NULL, 16)
                                  : strtol(v + i + 2, NULL, 10);
        if (cp <= 0 || cp > 127)
          return SBX_EFORMAT; /* our keys are ASCII */
        ch = (char)cp;
        i = (size_t)(semi - v);
      } else if (k == 5) {
        return SBX_EFORMAT;
      }
    }
    if (o + 1 >= cap)
      return SBX_ELIMIT;
    out[o++] = ch;
  }
  out[o] = 0;
  return SBX_OK;
}

static int64_t parse_iso8601(const char *v, size_t n) {
  char tmp[40];
  if (n >= sizeof tmp)
    return -1;
  memcpy(tmp, v, n);
  tmp[n] = 0;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (sscanf(tmp, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm);
}

static void log_error(sbx_s3 *s, s3_call *c, const char *path) {
  char code[128] = "", msg[256] = "";
  size_t l;
  const char *e = c->err.p ? c->err.p + c->err.n : NULL;
  const char *v = xml_find(c->err.p, e, "Code", &l, NULL);
  if (v && xml_text(v, l, code, sizeof code))
    code[0] = 0;
  v = xml_find(c->err.p, e, "Message", &l, NULL);
  if (v && xml_text(v, l, msg, sizeof msg))
    msg[0] = 0;
  for (char *q = msg; *q; q++)
    if (!isprint((unsigned char)*q))
      *q = '?';
  for (char *q = code; *q; q++)
    if (!isprint((unsigned char)*q))
      *q = '?';
  fprintf(stderr, "sbx_s3: %s %s%s: HTTP %ld %s%s%s\n", c->method,
          s->scheme_host, path, c->code, code[0] ? code : "(no error code)",
          msg[0] ? ": " : "", msg);
}

static int http_status(long code) {
  if (code / 100 == 2)
    return SBX_OK;
  switch (code) {
  case 401:
  case 403:
    return SBX_EAUTH;
  case 404:
    return SBX_ENOTFOUND;
  case 409:
    return SBX_ECONFLICT;
  case 412:
    return SBX_EEXIST;
  default:
    return SBX_EBACKEND;
  }
}

static int retryable_http(long code) {
  return code == 500 || code == 502 || code == 503 || code == 504 ||
         code == 429 || code == 408;
}

static void backoff(int attempt) {
  uint32_t r = 0;
  sbx_random(&r, sizeof r);
  long ms = 100L << (attempt < 6 ? attempt : 6);
  ms += (long)(r % 100);
  if (ms > 5000)
    ms = 5000;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int s3_do(sbx_s3 *s, s3_call *c) {
  /* canonical URI = the path on the wire: /bucket[/prefix+key] */
  sb path = {0};
  sb_adds(&path, "/");
  sb_enc(&path, s->bucket, 0);
  if (c->key) {
    sb_adds(&path, "/");
    sb_enc(&path, s->prefix, 1);
    sb_enc(&path, c->key, 1);
  }
  sb url = {0};
  sb_adds(&url, s->scheme_host);
  if (path.p)
    sb_adds(&url, path.p);
  if (c->query && *c->query) {
    sb_adds(&url, "?");
    sb_adds(&url, c->query);
  }
  char payload[65];
  if (c->payload_hash) {
    snprintf(payload, sizeof payload, "%s", c->payload_hash);
  } else {
    uint8_t d[32];
    int hrc = sbx_sha256(c->body ? c->body : "", c->body_n, d);
    if (hrc) {
      sb_free(&path);
      sb_free(&url);
      return hrc;
    }
    sbx_hex(d, 32, payload);
  }
  if (path.oom || url.oom) {
    sb_free(&path);
    sb_free(&url);
    return SBX_ENOMEM;
  }
  int max_attempts = c->idempotent ? 1 + s->retries : 1;
  int rc = SBX_EBACKEND;
  for (c->attempts = 0; c->attempts < max_attempts;) {
    if (c->attempts)
      backoff(c->attempts - 1);
    c->attempts++;
    c->code = 0;
    c->body_off = 0;
    c->sink_rc = c->too_big = 0;
    c->etag[0] = c->meta_writer[0] = 0;
    c->length = -1;
    sb_free(&c->err);
    if (c->xml)
      c->xml->n = 0;
    char amz_date[17];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    sbx_sigv4_header hs[8];
    size_t nh = 0;
    hs[nh++] = (sbx_sigv4_header){"host", s->host};
    hs[nh++] = (sbx_sigv4_header){"x-amz-content-sha256", payload};
    hs[nh++] = (sbx_sigv4_header){"x-amz-date", amz_date};
    for (size_t i = 0; i < c->nhdr; i++)
      hs[nh++] = (sbx_sigv4_header){c->hdr_names[i], c->hdr_values[i]};
    sbx_sigv4_req sr = {c->method, path.p,      c->query ? c->query : "",
                        hs,        nh,          payload,
                        s->access, s->secret,   s->region,
                        "s3",      amz_date};
    char auth[512];
    rc = sbx_sigv4_sign(&sr, auth, sizeof auth, NULL, NULL);
    if (rc)
      break;
    /* the signed headers exactly as signed, the signature, no Expect */
    struct curl_slist *hl = NULL, *t;
    int hl_ok = 1;
    sb line = {0};
    for (size_t i = 0; hl_ok && i <= nh + 1; i++) {
      line.n = 0;
      if (i < nh) {
        sb_adds(&line, hs[i].name);
        sb_adds(&line, ": ");
        sb_adds(&line, hs[i].value);
      } else if (i == nh) {
        sb_adds(&line, "Authorization: ");
        sb_adds(&line, auth);
      } else {
        sb_adds(&line, "Expect:");
      }
      t = line.oom ? NULL : curl_slist_append(hl, line.p);
      if (t)
        hl = t;
      else
        hl_ok = 0;
    }
    sb_free(&line);
    if (!hl_ok) {
      curl_slist_free_all(hl);
      rc = SBX_ENOMEM;
      break;
    }
    CURL *h = s->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.p);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sbx-s3/1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    /* every request is bounded by the timeout, except a streamed blob GET
     * (any size): that one by the stall detector below */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->sink ? 0L : s->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms);
    /* a stalled transfer (< 1 byte/s for 30 s or the request timeout) */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     s->timeout_ms / 1000 < 30 ? (s->timeout_ms + 999) / 1000
                                               : 30L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    if (s->ca_file)
      curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
    if (s->loopback)
      curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (!strcmp(c->method, "GET")) {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(c->method, "HEAD")) {
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(c->method, "PUT")) {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, c);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
      curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body_n);
    } else if (!strcmp(c->method, "POST")) {
      curl_easy_setopt(h, CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, c);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_n);
    } else {
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    }
    s->requests++;
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hl);
    if (cc == CURLE_OK && c->code == 0)
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->code);
    if (c->sink_rc) { /* the consumer refused the data: never retried */
      rc = c->sink_rc;
      break;
    }
    if (c->too_big) {
      fprintf(stderr, "sbx_s3: %s %s%s: response larger than %u bytes\n",
              c->method, s->scheme_host, path.p, S3_XML_MAX);
      rc = SBX_ELIMIT;
      break;
    }
    if (c->xml && c->xml->oom) {
      rc = SBX_ENOMEM;
      break;
    }
    if (cc != CURLE_OK) {
      rc = cc == CURLE_OPERATION_TIMEDOUT ? SBX_ETIMEDOUT : SBX_EBACKEND;
      int again = c->attempts < max_attempts && c->delivered == 0;
      if (!again)
        fprintf(stderr, "sbx_s3: %s %s%s: %s (attempt %d)\n", c->method,
                s->scheme_host, path.p, curl_easy_strerror(cc), c->attempts);
      if (again)
        continue;
      break;
    }
    rc = http_status(c->code);
    if (rc && retryable_http(c->code) && c->attempts < max_attempts &&
        c->delivered == 0)
      continue;
    if (rc && !(rc == SBX_ENOTFOUND && c->quiet404) &&
        !(rc == SBX_EEXIST && c->quiet412) && !(rc == SBX_EAUTH && c->quiet403))
      log_error(s, c, path.p);
    break;
  }
  sb_free(&path);
  sb_free(&url);
  sb_free(&c->err);
  return rc;
}

/* ---- open / close ---- */

static int is_loopback_host(const char *h, size_t n) {
  return (n == 9 && !strncasecmp(h, "localhost", 9)) ||
         (n >= 4 && !strncmp(h, "127.", 4)) || (n == 5 && !strncmp(h, "[::1]", 5));
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

static int bad_param(const char *what) {
  fprintf(stderr, "sbx_s3: invalid configuration: %s\n", what);
  return SBX_EINVAL;
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
  int rc = s3_do(s, &c);
  sb_free(&body);
  if (rc == SBX_ECONFLICT) /* BucketAlreadyOwnedByYou / exists: HEAD decides */
    rc = SBX_OK;
  return rc;
}

int sbx_s3_open(const sbx_blob_params *p, sbx_s3 **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!p || p->backend != SBX_BLOB_S3)
    return SBX_EINVAL;
  if (!p->s3_endpoint || !*p->s3_endpoint)
    return bad_param("no S3 endpoint");
  if (!p->s3_bucket || !bucket_ok(p->s3_bucket))
    return bad_param("S3 bucket name missing or not [a-z0-9.-]{3,63}");
  if (!p->s3_access_key || !*p->s3_access_key || !p->s3_secret_key ||
      !*p->s3_secret_key)
    return bad_param("S3 access key or secret key missing");
  if (strlen(p->s3_access_key) > 128 || strchr(p->s3_access_key, '/') ||
      strlen(p->s3_secret_key) > 256)
    return bad_param("malformed S3 access key or secret key");
  if (p->s3_prefix && !prefix_ok(p->s3_prefix))
    return bad_param("S3 prefix not [A-Za-z0-9_.-/]{0,200}");
  const char *region = p->s3_region && *p->s3_region ? p->s3_region
                                                     : "us-east-1";
  for (const char *q = region; *q; q++)
    if (!(isalnum((unsigned char)*q) || *q == '-' || *q == '_') ||
        q - region > 60)
      return bad_param("S3 region not [A-Za-z0-9_-]{1,60}");
  size_t part = p->s3_part_size ? p->s3_part_size : S3_DEFAULT_PART;
  if (part < S3_MIN_PART || part > S3_MAX_PART)
    return bad_param("S3 part size outside 5 MiB .. 512 MiB");
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
    return bad_param("S3 endpoint must start with https:// or http://");
  }
  size_t hl = strcspn(hp, "/?#");
  if (hl == 0 || hl > 255 || memchr(hp, '@', hl) ||
      (hp[hl] && strcmp(hp + hl, "/")))
    return bad_param("S3 endpoint must be scheme://host[:port] (no path, no "
                     "user info)");
  for (size_t i = 0; i < hl; i++)
    if (!(isalnum((unsigned char)hp[i]) || strchr(".-:[]", hp[i])))
      return bad_param("S3 endpoint host has invalid characters");
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
    return bad_param("plain http to a non-loopback S3 endpoint (use https, "
                     "or set s3_allow_http)");
  if (pthread_once(&curl_once, curl_init) || curl_init_rc != CURLE_OK)
    return SBX_EBACKEND;
  sbx_s3 *s = calloc(1, sizeof *s);
  if (!s)
    return SBX_ENOMEM;
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
  if (s->host &&
      asprintf(&s->scheme_host, "%s://%s", https ? "https" : "http",
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
      !s->access || !s->secret || (p->s3_ca_file && !s->ca_file) ||
      !s->curl) {
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
    rc = s3_do(s, &c);
    if (rc == SBX_ENOTFOUND)
      fprintf(stderr, "sbx_s3: bucket %s does not exist at %s\n", s->bucket,
              s->scheme_host);
    else if (rc == SBX_EAUTH)
      fprintf(stderr,
              "sbx_s3: access to bucket %s at %s refused (HTTP %ld): wrong "
              "access/secret key, clock skew, or no permission\n",
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
  int rc = s3_do(s, &c);
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
  rc = s3_do(w->s, &c);
  size_t l;
  const char *v = rc ? NULL
                     : xml_find(xml.p, xml.p + xml.n, "UploadId", &l, NULL);
  if (!rc && (!v || l == 0 || l > S3_SMALL_MAX)) {
    fprintf(stderr, "sbx_s3: CreateMultipartUpload %s: no UploadId\n",
            w->key);
    rc = SBX_EBACKEND;
  }
  if (!rc) {
    w->upload_id = malloc(l + 1);
    rc = !w->upload_id ? SBX_ENOMEM
                       : xml_text(v, l, w->upload_id, l + 1) ? SBX_EBACKEND
                                                               : SBX_OK;
  }
  sb_free(&xml);
  return rc;
}

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
  rc = s3_do(w->s, &c);
  if (!rc && !c.etag[0]) {
    fprintf(stderr, "sbx_s3: UploadPart %s #%d: no ETag\n", w->key,
            w->parts + 1);
    rc = SBX_EBACKEND;
  }
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
  s3_do(s, &c);
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
  int rc = s3_do(w->s, &c);
  if (rc == SBX_EEXIST && c.attempts > 1 && landed(w))
    rc = SBX_OK;
  return rc;
}

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
    rc = s3_do(w->s, &c);
  }
  /* S3 may answer 200 and put the error in the body */
  size_t l;
  if (!rc && xml_find(xml.p, xml.p + xml.n, "Code", &l, NULL)) {
    fprintf(stderr, "sbx_s3: CompleteMultipartUpload %s: error in a 200 "
                    "response\n", w->key);
    rc = SBX_EBACKEND;
  }
  if (rc == SBX_ENOTFOUND && c.attempts > 1 && landed(w))
    rc = SBX_OK;
  else if (rc == SBX_ENOTFOUND)
    fprintf(stderr, "sbx_s3: CompleteMultipartUpload %s: NoSuchUpload\n",
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
  return s3_do(s, &c);
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
  rc = s3_do(s, &c);
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
  return s3_do(s, &c);
}

typedef int (*scan_fn)(void *ctx, const char *tenant_id, const char *object_id,
                       const char *tmp_name, int64_t mtime);

/* splits "<prefix>tenant/object" into its ids; 0 when not one of ours */
static int split_key(sbx_s3 *s, const char *key, char *t, char *o) {
  size_t pl = strlen(s->prefix);
  if (strncmp(key, s->prefix, pl))
    return 0;
  key += pl;
  const char *slash = strchr(key, '/');
  if (!slash || (size_t)(slash - key) >= SBX_ID_MAX ||
      strlen(slash + 1) >= SBX_ID_MAX)
    return 0;
  memcpy(t, key, (size_t)(slash - key));
  t[slash - key] = 0;
  strcpy(o, slash + 1);
  return sbx_id_valid(t) && sbx_id_valid(o);
}

typedef struct scan_item {
  char t[SBX_ID_MAX], o[SBX_ID_MAX];
  char *upload_id;
  int64_t mtime;
} scan_item;

static void items_free(scan_item *it, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(it[i].upload_id);
  free(it);
}

/* one page: parses every <elem> block; fills items (callbacks run after the
 * page is parsed, so they may issue requests of their own) */
static int parse_page(sbx_s3 *s, const sb *xml, const char *elem, int uploads,
                      scan_item **items, size_t *n) {
  *items = NULL;
  *n = 0;
  size_t cap = 0, l;
  const char *p = xml->p, *e = xml->p + xml->n, *after, *v;
  char key[1100];
  while ((v = xml_find(p, e, elem, &l, &after))) {
    const char *be = v + l;
    p = after;
    size_t kl, tl, ul = 0;
    const char *kv = xml_find(v, be, "Key", &kl, NULL);
    const char *tv = xml_find(v, be, uploads ? "Initiated" : "LastModified",
                              &tl, NULL);
    const char *uv = uploads ? xml_find(v, be, "UploadId", &ul, NULL) : NULL;
    if (!kv || !tv || (uploads && (!uv || !ul || ul > S3_SMALL_MAX)))
      continue;
    if (xml_text(kv, kl, key, sizeof key))
      continue;
    scan_item it;
    memset(&it, 0, sizeof it);
    if (!split_key(s, key, it.t, it.o))
      continue; /* not a blob of ours */
    it.mtime = parse_iso8601(tv, tl);
    if (it.mtime < 0)
      it.mtime = 0;
    if (uploads) {
      it.upload_id = malloc(ul + 1);
      if (!it.upload_id || xml_text(uv, ul, it.upload_id, ul + 1)) {
        free(it.upload_id);
        continue;
      }
    }
    if (*n == cap) {
      cap = cap ? 2 * cap : 64;
      scan_item *q = realloc(*items, cap * sizeof *q);
      if (!q) {
        free(it.upload_id);
        items_free(*items, *n);
        *items = NULL;
        *n = 0;
        return SBX_ENOMEM;
      }
      *items = q;
    }
    (*items)[(*n)++] = it;
  }
  return SBX_OK;
}

/* copies the decoded text of <tag> into a fresh string (NULL if absent) */
static char *xml_dup(const sb *xml, const char *tag) {
  size_t l;
  const char *v = xml_find(xml->p, xml->p + xml->n, tag, &l, NULL);
  if (!v || l == 0 || l > 4096)
    return NULL;
  char *o = malloc(l + 1);
  if (o && xml_text(v, l, o, l + 1)) {
    free(o);
    o = NULL;
  }
  return o;
}

static int truncated(const sb *xml) {
  size_t l;
  const char *v = xml_find(xml->p, xml->p + xml->n, "IsTruncated", &l, NULL);
  return v && l == 4 && !memcmp(v, "true", 4);
}

/* GET of a listing (bucket, or object key with query q) into xml, retried
 * as idempotent; quiet404: a missing key is SBX_ENOTFOUND without a log
 * line. The caller frees xml. */
static int s3_get_xml(sbx_s3 *s, const char *key, const char *q, sb *xml, int quiet404) {
  s3_call c;
  memset(&c, 0, sizeof c);
  c.method = "GET";
  c.key = key;
  c.query = q;
  c.xml = xml;
  c.idempotent = 1;
  c.quiet404 = quiet404;
  return s3_do(s, &c);
}

/* An unfinished upload's age is that of its latest part (ListParts), like
 * the mtime of a local temp file, so that GC never aborts an upload that is
 * still making progress; Initiated alone would be its start. */
static int upload_activity(sbx_s3 *s, const scan_item *it, int64_t *mtime) {
  char key[2 * SBX_ID_MAX + 2], marker[16] = "";
  snprintf(key, sizeof key, "%s/%s", it->t, it->o);
  for (int pages = 0; pages < 20; pages++) {
    const char *kv[6] = {"uploadId", it->upload_id, "max-parts", "1000",
                         "part-number-marker", marker};
    char q[S3_SMALL_MAX * 3 + 128];
    int rc = sbx_s3_query(kv, marker[0] ? 3 : 2, q, sizeof q);
    if (rc)
      return rc;
    sb xml = {0};
    rc = s3_get_xml(s, key, q, &xml, 1); /* 404: completed or aborted meanwhile */
    const char *p = xml.p, *e = xml.p + xml.n, *v, *after;
    size_t l, tl;
    while (!rc && (v = xml_find(p, e, "Part", &l, &after))) {
      const char *tv = xml_find(v, v + l, "LastModified", &tl, NULL);
      int64_t t = tv ? parse_iso8601(tv, tl) : -1;
      if (t > *mtime)
        *mtime = t;
      p = after;
    }
    char *next = !rc && truncated(&xml) ? xml_dup(&xml, "NextPartNumberMarker")
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
    const char *kv[8] = {"uploads",    "", "prefix", s->prefix,
                         "key-marker", km, "upload-id-marker", um};
    char q[16384];
    rc = sbx_s3_query(kv, km ? (um ? 4 : 3) : 2, q, sizeof q);
    if (rc)
      break;
    sb xml = {0};
    rc = s3_get_xml(s, NULL, q, &xml, 0);
    scan_item *it = NULL;
    size_t n = 0;
    if (!rc)
      rc = parse_page(s, &xml, "Upload", 1, &it, &n);
    int more = !rc && truncated(&xml);
    free(km);
    free(um);
    km = more ? xml_dup(&xml, "NextKeyMarker") : NULL;
    um = more ? xml_dup(&xml, "NextUploadIdMarker") : NULL;
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
    items_free(it, n);
    if (!more || !km)
      break;
  }
  free(km);
  free(um);
  /* 2. committed objects */
  char *token = NULL;
  for (int pages = 0; !rc && !stop && pages < 1000000; pages++) {
    const char *kv[8] = {"list-type", "2", "prefix", s->prefix,
                         "max-keys", "1000", "continuation-token", token};
    char q[16384];
    if ((rc = sbx_s3_query(kv, token ? 4 : 3, q, sizeof q)))
      break;
    sb xml = {0};
    rc = s3_get_xml(s, NULL, q, &xml, 0);
    scan_item *it = NULL;
    size_t n = 0;
    if (!rc)
      rc = parse_page(s, &xml, "Contents", 0, &it, &n);
    int more = !rc && truncated(&xml);
    free(token);
    token = more ? xml_dup(&xml, "NextContinuationToken") : NULL;
    sb_free(&xml);
    for (size_t i = 0; !rc && !stop && i < n; i++) {
      int r = fn(ctx, it[i].t, it[i].o, NULL, it[i].mtime);
      if (r)
        stop = 1, rc = r < 0 ? r : SBX_OK;
    }
    items_free(it, n);
    if (!more)
      break;
    if (!token) {
      fprintf(stderr, "sbx_s3: ListObjectsV2 truncated without a token\n");
      rc = SBX_EBACKEND;
    }
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
  return s3_do(s, &c);
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
