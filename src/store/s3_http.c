/*
 * s3_http.c - the S3 backend's HTTP transport on libcurl: one signed
 * exchange (sbx__s3_do) with bounded buffers, timeouts, a stall detector,
 * and retries with exponential backoff and jitter for idempotent requests
 * (a GET only while nothing reached the sink). See s3.c for which request
 * is idempotent and why.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "s3_internal.h"
#include "s3_xml.h"
#include "sbx/crypto.h"

/* curl header callback: the status line of each response (a retry or a
 * 100 Continue starts over), and the ETag, writer token and length we keep
 * (values over S3_SMALL_MAX bytes are dropped). */
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

/* curl body callback: a 2xx body goes to the sink (a refusal aborts the
 * transfer) or into the XML buffer (capped at S3_XML_MAX); an error body
 * keeps its first S3_ERR_MAX bytes for the report. */
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

/* curl read callback: the request body from memory. */
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

/* curl seek callback: rewinds the body for a resend (auth, redirect-free
 * retries inside curl). */
static int on_seek(void *ud, curl_off_t off, int origin) {
  s3_call *c = ud;
  if (origin != SEEK_SET || off < 0 || (uint64_t)off > c->body_n)
    return CURL_SEEKFUNC_CANTSEEK;
  c->body_off = (size_t)off;
  return CURL_SEEKFUNC_OK;
}

/* Describes a failed answer: method, URL, HTTP status and the S3 error
 * code and message from the error document. */
static void report_http(sbx_s3 *s, s3_call *c, const char *path, int rc) {
  char code[128], msg[256];
  sbx__s3_xml_error(c->err.p, c->err.n, code, sizeof code, msg, sizeof msg);
  sbx_err_set(s->err, rc, "s3: %s %s%s: HTTP %ld %s%s%s", c->method,
              s->scheme_host, path, c->code, code[0] ? code : "(no error code)",
              msg[0] ? ": " : "", msg);
}

/* Maps an HTTP status to an sbx_status (sbx/blob.h). */
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

/* Transient answers worth another attempt of an idempotent request. */
static int retryable_http(long code) {
  return code == 500 || code == 502 || code == 503 || code == 504 ||
         code == 429 || code == 408;
}

/* Sleeps 100 ms * 2^attempt (at most 5 s) plus up to 100 ms of jitter. */
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

int sbx__s3_do(sbx_s3 *s, s3_call *c) {
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
    sbx_sigv4_req sr = {c->method, path.p,    c->query ? c->query : "",
                        hs,        nh,        payload,
                        s->access, s->secret, s->region,
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
    } else if (!strcmp(c->method, "PUT") || !strcmp(c->method, "POST")) {
      int put = c->method[1] == 'U'; /* the body comes from c either way */
      curl_easy_setopt(h, put ? CURLOPT_UPLOAD : CURLOPT_POST, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, c);
      curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
      curl_easy_setopt(
          h, put ? CURLOPT_INFILESIZE_LARGE : CURLOPT_POSTFIELDSIZE_LARGE,
          (curl_off_t)c->body_n);
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
      rc = sbx_err_set(s->err, SBX_ELIMIT,
                       "s3: %s %s%s: response larger than %u bytes", c->method,
                       s->scheme_host, path.p, S3_XML_MAX);
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
        sbx_err_set(s->err, rc, "s3: %s %s%s: %s (attempt %d)", c->method,
                    s->scheme_host, path.p, curl_easy_strerror(cc),
                    c->attempts);
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
      report_http(s, c, path.p, rc);
    break;
  }
  sb_free(&path);
  sb_free(&url);
  sb_free(&c->err);
  return rc;
}
