/*
 * client.c - the service's HTTPS client (libcurl): one keep-alive
 * connection per sbx_client, capped response bodies, no redirects, TLS
 * peer and host verification always on.
 */
#include "sbx/client.h"
#include "sbx/status.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbx_client {
  CURL *curl;
  char *base;
  char *ca_file;
  char *bearer;
  long connect_timeout_s, timeout_s;
  size_t max_response;
};

typedef struct body_buf {
  char *p;
  size_t n, cap, max;
  int over;
} body_buf;

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_init_rc;

static void global_init(void) {
  g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

sbx_client_params sbx_client_default_params(void) {
  sbx_client_params p;
  memset(&p, 0, sizeof(p));
  p.connect_timeout_s = 5;
  p.timeout_s = 60;
  p.max_response = (size_t)64 << 20;
  return p;
}

/* Accepts https://anything and http:// only towards loopback (tests and
 * the embedded default's local workers never need it, but a developer's
 * proxy-less debugging does). Rejects userinfo and whitespace. */
static int base_ok(const char *u) {
  if (!u || strlen(u) > 1024 || strpbrk(u, " \t\r\n@"))
    return 0;
  if (!strncmp(u, "https://", 8))
    return u[8] != 0;
  return !strncmp(u, "http://127.0.0.1", 16) || !strncmp(u, "http://[::1]", 12);
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

int sbx_client_init(sbx_client_params p, sbx_client **out, char *err,
                    size_t errlen) {
  *out = NULL;
  if (!base_ok(p.base_url)) {
    seterr(err, errlen, "server URL must be https://host[:port]");
    return SBX_EINVAL;
  }
  pthread_once(&g_once, global_init);
  if (g_init_rc) {
    seterr(err, errlen, "libcurl global init failed");
    return SBX_EINTERNAL;
  }
  sbx_client *c = calloc(1, sizeof(*c));
  if (!c)
    return SBX_ENOMEM;
  c->curl = curl_easy_init();
  c->base = strdup(p.base_url);
  c->ca_file = dup_or_null(p.ca_file);
  c->bearer = dup_or_null(p.bearer);
  c->connect_timeout_s = p.connect_timeout_s > 0 ? p.connect_timeout_s : 5;
  c->timeout_s = p.timeout_s > 0 ? p.timeout_s : 60;
  c->max_response = p.max_response ? p.max_response : ((size_t)64 << 20);
  if (!c->curl || !c->base || (p.ca_file && !c->ca_file) ||
      (p.bearer && !c->bearer)) {
    sbx_client_free(c);
    return SBX_ENOMEM;
  }
  size_t bl = strlen(c->base);
  while (bl > 0 && c->base[bl - 1] == '/')
    c->base[--bl] = 0;
  *out = c;
  return SBX_OK;
}

void sbx_client_free(sbx_client *c) {
  if (!c)
    return;
  if (c->curl)
    curl_easy_cleanup(c->curl);
  if (c->bearer) {
    explicit_bzero(c->bearer, strlen(c->bearer));
    free(c->bearer);
  }
  free(c->base);
  free(c->ca_file);
  free(c);
}

void sbx_client_resp_free(sbx_client_resp *r) {
  if (!r)
    return;
  free(r->body);
  memset(r, 0, sizeof(*r));
}

/* libcurl write callback: appends into a buffer that never grows past
 * max; past it, the transfer is aborted (returning a short count). */
static size_t on_body(char *data, size_t sz, size_t nm, void *ud) {
  body_buf *b = ud;
  size_t k = sz * nm;
  if (k > b->max - b->n) {
    b->over = 1;
    return 0;
  }
  if (b->n + k + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + k + 1)
      nc *= 2;
    if (nc > b->max + 1)
      nc = b->max + 1;
    char *np = realloc(b->p, nc);
    if (!np)
      return 0;
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, data, k);
  b->n += k;
  b->p[b->n] = 0;
  return k;
}

int sbx_client_request(sbx_client *c, const char *method, const char *path,
                       const char *bearer, const char *content_type,
                       const void *body, size_t len, long timeout_s,
                       sbx_client_resp *r, char *err, size_t errlen) {
  memset(r, 0, sizeof(*r));
  if (!c || !method || !path || path[0] != '/' || strlen(path) > 2048) {
    seterr(err, errlen, "bad request arguments");
    return SBX_EINVAL;
  }
  char url[3200];
  snprintf(url, sizeof(url), "%s%s", c->base, path);
  const char *cred = bearer ? bearer : c->bearer;
  char auth[1100] = "";
  if (cred && strlen(cred) > 1000) {
    seterr(err, errlen, "credential too long");
    return SBX_EINVAL;
  }
  struct curl_slist *h = NULL, *h2;
  if (cred) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cred);
    h = curl_slist_append(h, auth);
  }
  char ct[160];
  if (content_type) {
    snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
    if ((h2 = curl_slist_append(h, ct)))
      h = h2;
  }
  if ((h2 = curl_slist_append(h, "Expect:"))) /* no 100-continue round trip */
    h = h2;
  body_buf b = {NULL, 0, 0, c->max_response, 0};
  CURL *e = c->curl;
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  /* aisbxd closes a connection idle for 30 s (MHD_OPTION_CONNECTION_TIMEOUT):
   * never reuse one idle for 20 s, or a request sent as the server closes it
   * fails (a worker's results upload after a job of more than 30 s did) */
  curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, 20L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
  curl_easy_setopt(e, CURLOPT_TIMEOUT,
                   timeout_s > 0 ? timeout_s : c->timeout_s);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  if (c->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
  if (!strcmp(method, "GET")) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? (const char *)body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)(body ? len : 0));
  }
  CURLcode rc = curl_easy_perform(e);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
  curl_slist_free_all(h);
  explicit_bzero(auth, sizeof(auth));
  if (rc != CURLE_OK) {
    free(b.p);
    r->status = 0;
    if (b.over) {
      seterr(err, errlen, "%s %s: response larger than %zu bytes", method, path,
             c->max_response);
      return SBX_ELIMIT;
    }
    seterr(err, errlen, "%s %s: %s", method, path, curl_easy_strerror(rc));
    return rc == CURLE_OPERATION_TIMEDOUT ? SBX_ETIMEDOUT : SBX_EIO;
  }
  if (!b.p) {
    b.p = calloc(1, 1);
    if (!b.p)
      return SBX_ENOMEM;
  }
  r->body = b.p;
  r->len = b.n;
  return SBX_OK;
}
