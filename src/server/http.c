/*
 * http.c - the libmicrohttpd glue: per-request state, body caps, the
 * dispatch through the route table, RFC 7807 problem responses, request
 * ids, security headers, rate limits.
 *
 * MHD calls the access handler (1) once with the headers, (2) once per body
 * chunk, (3) once with upload_data_size == 0 at the end. Nothing is queued
 * on (1) (queueing then forces Connection: close); authentication, route
 * and permission checks run on the first call after it, before any body
 * byte is buffered or stored.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server_internal.h"

int64_t sbx__now(void) { return (int64_t)time(NULL); }

/* ---- rate limiting ---- */

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h ? h : 1;
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sbx__rl_take(sbx__ratelimit *rl, const char *who, double rate,
                 double burst) {
  if (rate <= 0)
    return 0;
  uint64_t k = fnv1a(who);
  double now = mono();
  int wait = 0;
  pthread_mutex_lock(&rl->mu);
  /* open addressing over 8 slots; the stalest one is recycled */
  size_t base = (size_t)(k % SBX__RL_SLOTS), victim = base;
  sbx__bucket *b = NULL;
  for (size_t i = 0; i < 8; i++) {
    sbx__bucket *c = &rl->b[(base + i) % SBX__RL_SLOTS];
    if (c->key == k) {
      b = c;
      break;
    }
    if (c->last < rl->b[victim].last)
      victim = (base + i) % SBX__RL_SLOTS;
  }
  if (!b) {
    b = &rl->b[victim];
    b->key = k;
    b->tokens = burst;
    b->last = now;
  }
  b->tokens += (now - b->last) * rate;
  if (b->tokens > burst)
    b->tokens = burst;
  b->last = now;
  if (b->tokens >= 1.0)
    b->tokens -= 1.0;
  else
    wait = (int)((1.0 - b->tokens) / rate) + 1;
  pthread_mutex_unlock(&rl->mu);
  return wait;
}

/* ---- store handle pool ---- */

static sbx_store *pool_take(sbx__pool *p) {
  sbx_store *st = NULL;
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->n; i++)
    if (!p->busy[i]) {
      p->busy[i] = 1;
      st = p->h[i];
      break;
    }
  pthread_mutex_unlock(&p->mu);
  return st;
}

static void pool_give(sbx__pool *p, sbx_store *st) {
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->n; i++)
    if (p->h[i] == st)
      p->busy[i] = 0;
  pthread_mutex_unlock(&p->mu);
}

/* ---- responses ---- */

void sbx__add_header(sbx__req *r, const char *name, const char *value) {
  if (r->nextra >= SBX__EXTRA_HDR)
    return;
  snprintf(r->extra_hdr[r->nextra][0], SBX__HDR_VALUE_MAX, "%s", name);
  snprintf(r->extra_hdr[r->nextra][1], SBX__HDR_VALUE_MAX, "%s", value);
  r->nextra++;
}

static void set_resp(sbx__req *r, int status, char *body, size_t n,
                     const char *type) {
  if (r->resp_owned)
    free(r->resp);
  r->status = status;
  r->resp = body;
  r->resp_len = n;
  r->resp_owned = 1;
  r->resp_type = type;
}

int sbx__reply_json(sbx__req *r, int status, json_t *body) {
  char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!txt)
    return sbx__problem(r, 500, "Internal Server Error", "out of memory");
  set_resp(r, status, txt, strlen(txt), "application/json");
  return 0;
}

void sbx__buf_put(sbx__buf *b, const char *s, size_t n) {
  if (b->err)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *np = cap <= b->max ? realloc(b->p, cap) : NULL;
    if (!np) {
      b->err = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void sbx__buf_str(sbx__buf *b, const char *s) { sbx__buf_put(b, s, strlen(s)); }

void sbx__buf_int(sbx__buf *b, int64_t v) {
  char t[24]; /* digits from the end; no snprintf on the hot path */
  size_t i = sizeof t;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    t[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    t[--i] = '-';
  sbx__buf_put(b, t + i, sizeof t - i);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4, cp = c & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

void sbx__buf_json_str(sbx__buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  sbx__buf_put(b, "\"", 1);
  size_t run = 0; /* start of the pending unescaped run */
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    const char *esc = NULL;
    char ub[8];
    size_t step = 1;
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20) {
      snprintf(ub, sizeof ub, "\\u%04x", c);
      esc = ub;
    } else if (c >= 0x80) {
      step = utf8_len(u + i, n - i);
      if (!step) {
        esc = "\\ufffd";
        step = 1;
      }
    }
    if (esc) {
      sbx__buf_put(b, s + run, i - run);
      sbx__buf_str(b, esc);
      run = i + step;
    }
    i += step;
  }
  sbx__buf_put(b, s + run, n - run);
  sbx__buf_put(b, "\"", 1);
}

int sbx__reply_buf(sbx__req *r, int status, sbx__buf *b, const char *type) {
  if (b->err || !b->p) {
    free(b->p);
    b->p = NULL;
    return sbx__problem(r, 500, "Internal Server Error", "response too large");
  }
  set_resp(r, status, b->p, b->n, type ? type : "application/json");
  b->p = NULL;
  return 0;
}

int sbx__problem(sbx__req *r, int status, const char *title,
                 const char *detail) {
  json_t *j = json_pack("{s:s,s:s,s:i,s:s,s:s}", "type", "about:blank",
                        "title", title, "status", status, "detail",
                        detail ? detail : title, "request_id", r->reqid);
  char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!txt) {
    static const char oom[] = "{\"title\":\"Internal Server Error\"}";
    txt = strdup(oom);
    status = 500;
  }
  set_resp(r, status, txt, txt ? strlen(txt) : 0, "application/problem+json");
  return 0;
}

int sbx__problem_rc(sbx__req *r, int rc) {
  switch (rc) {
  case SBX_ENOTFOUND:
    return sbx__problem(r, 404, "Not Found", NULL);
  case SBX_EEXIST:
    return sbx__problem(r, 409, "Conflict", "already exists");
  case SBX_ECONFLICT:
    return sbx__problem(r, 409, "Conflict", sbx_strerror(rc));
  case SBX_EINVAL:
  case SBX_EFORMAT:
    return sbx__problem(r, 400, "Bad Request", sbx_strerror(rc));
  case SBX_ELIMIT:
  case SBX_ENOSPC:
    return sbx__problem(r, 413, "Content Too Large", sbx_strerror(rc));
  case SBX_EPERM:
    return sbx__problem(r, 403, "Forbidden", NULL);
  case SBX_EAUTH:
  case SBX_EEXPIRED:
    return sbx__problem(r, 401, "Unauthorized", "invalid credential");
  case SBX_EBUSY:
    return sbx__problem(r, 503, "Service Unavailable", "busy");
  default:
    fprintf(stderr, "aisbxd: request %s: %s\n", r->reqid, sbx_strerror(rc));
    return sbx__problem(r, 500, "Internal Server Error", NULL);
  }
}

/* ---- JSON bodies ---- */

/* Nesting depth of a JSON text, strings skipped; -1 when unbalanced. */
static int json_depth(const char *s, size_t n) {
  int d = 0, max = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '{' || c == '[') {
      if (++d > max)
        max = d;
    } else if (c == '}' || c == ']') {
      if (--d < 0)
        return -1;
    }
  }
  return max;
}

json_t *sbx__body_object(sbx__req *r, const char *const *allowed) {
  if (!r->body_len) {
    sbx__problem(r, 400, "Bad Request", "a JSON object body is required");
    return NULL;
  }
  const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_TYPE);
  if (!ct || strncmp(ct, "application/json", 16)) {
    sbx__problem(r, 415, "Unsupported Media Type",
                 "Content-Type must be application/json");
    return NULL;
  }
  int depth = json_depth(r->body, r->body_len);
  if (depth < 0 || depth > 32) {
    sbx__problem(r, 400, "Bad Request", "JSON nesting too deep or unbalanced");
    return NULL;
  }
  json_error_t e;
  json_t *j = json_loadb(r->body, r->body_len,
                         JSON_REJECT_DUPLICATES, &e);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    sbx__problem(r, 400, "Bad Request", "body is not a JSON object");
    return NULL;
  }
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    int ok = 0;
    for (size_t i = 0; allowed && allowed[i]; i++)
      if (!strcmp(allowed[i], k))
        ok = 1;
    if (!ok) {
      json_decref(j);
      sbx__problem(r, 400, "Bad Request", "unknown field in body");
      return NULL;
    }
  }
  return j;
}

/* ---- the MHD callbacks ---- */

static const char *const SECURITY_HEADERS[][2] = {
    {"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
    {"Content-Security-Policy",
     "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
     "form-action 'none'"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
    {"Cache-Control", "no-store"},
    {"Cross-Origin-Resource-Policy", "same-origin"},
};

static enum MHD_Result queue(sbx__req *r) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      r->resp_len, r->resp ? r->resp : (char *)"",
      r->resp_owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  if (!resp)
    return MHD_NO;
  r->resp_owned = 0; /* MHD frees it now */
  r->resp = NULL;
  for (size_t i = 0; i < sizeof SECURITY_HEADERS / sizeof SECURITY_HEADERS[0];
       i++)
    MHD_add_response_header(resp, SECURITY_HEADERS[i][0],
                            SECURITY_HEADERS[i][1]);
  MHD_add_response_header(resp, "X-Request-Id", r->reqid);
  if (r->resp_type)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->resp_type);
  for (int i = 0; i < r->nextra; i++)
    MHD_add_response_header(resp, r->extra_hdr[i][0], r->extra_hdr[i][1]);
  enum MHD_Result ret =
      MHD_queue_response(r->conn, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void client_ip(sbx__req *r) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  snprintf(r->ip, sizeof r->ip, "?");
  if (!ci || !ci->client_addr)
    return;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->ip,
              sizeof r->ip);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->ip,
              sizeof r->ip);
}

/* Bodies of refused requests read and discarded before the answer. */
#define SBX__DRAIN_MAX ((long long)16 << 20)

/* Runs once per request after the headers: rate limit, route, caps,
 * authentication, authorization. Returns 0 to go on, 1 when a response is
 * set, 2 when a response is set but is to be sent after the body has been
 * read and discarded. */
static int check(sbx__req *r, const char *url) {
  sbx_server *s = r->srv;
  char who[160];
  snprintf(who, sizeof who, "ip:%s", r->ip);
  int wait = sbx__rl_take(&s->rl, who, s->p.rate_ip_per_s, s->p.rate_ip_burst);
  if (wait) {
    atomic_fetch_add(&s->metrics.rate_limited[0], 1);
    char ra[16];
    snprintf(ra, sizeof ra, "%d", wait);
    sbx__add_header(r, "Retry-After", ra);
    sbx__problem(r, 429, "Too Many Requests", "per-IP rate limit");
    return 1;
  }
  if (strlen(url) >= SBX_PATH_MAX) {
    sbx__problem(r, 414, "URI Too Long", NULL);
    return 1;
  }
  snprintf(r->path, sizeof r->path, "%s", url);
  int path_known = 0;
  r->route = sbx__route_match(r, r->method, r->path, &path_known);
  if (r->route < 0) {
    if (path_known)
      sbx__problem(r, 405, "Method Not Allowed", NULL);
    else
      sbx__problem(r, 404, "Not Found", NULL);
    return 1;
  }
  const sbx__route *rt = &sbx__routes[r->route];
  r->max_body = rt->body == SBX__BODY_UPLOAD ? s->p.max_upload_bytes
                : rt->body == SBX__BODY_JSON ? s->p.max_json_bytes
                                             : 0;
  const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  long long clen = cl ? strtoll(cl, NULL, 10) : 0;
  if (cl && clen > r->max_body) {
    sbx__problem(r, 413, "Content Too Large", "request body exceeds the cap");
    /* A client that sends the body without waiting (no "Expect:
     * 100-continue") would see the connection reset under its feet if we
     * answered now and closed: bodies up to SBX__DRAIN_MAX are read and
     * discarded first, then the 413 is sent. Larger ones, and clients
     * that wait for 100-continue, get the answer at once. */
    const char *ex = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_EXPECT);
    return clen <= SBX__DRAIN_MAX && !(ex && (strstr(ex, "100-continue") || strstr(ex, "100-Continue"))) ? 2 : 1;
  }
  r->st = pool_take(&s->pool);
  if (!r->st) {
    sbx__add_header(r, "Retry-After", "1");
    sbx__problem(r, 503, "Service Unavailable", "server busy");
    return 1;
  }
  /* GET /metrics: the operator's token (metrics.c), never a tenant's */
  if (!strcmp(rt->perm, "metrics") && sbx__metrics_token_ok(r))
    return 0;
  if (strcmp(rt->perm, "public")) {
    int rc = sbx__authenticate(r);
    if (rc) {
      atomic_fetch_add(&s->metrics.auth_fail[rc == SBX_EEXPIRED ? 1 : 0], 1);
      sbx__add_header(r, "WWW-Authenticate", "Bearer");
      sbx__problem(r, 401, "Unauthorized",
                   rc == SBX_EEXPIRED ? "credential expired or revoked"
                                      : "invalid credential");
      return 1;
    }
    if (r->who.kind != SBX__CRED_NONE) {
      snprintf(who, sizeof who, "cred:%s/%s", r->who.tenant, r->who.key_id);
      wait = sbx__rl_take(&s->rl, who, s->p.rate_key_per_s,
                          s->p.rate_key_burst);
      if (wait) {
        char ra[16];
        atomic_fetch_add(&s->metrics.rate_limited[1], 1);
        snprintf(ra, sizeof ra, "%d", wait);
        sbx__add_header(r, "Retry-After", ra);
        sbx__problem(r, 429, "Too Many Requests", "per-credential rate limit");
        return 1;
      }
    }
    if (sbx__authorize(r)) {
      if (r->status == 401)
        atomic_fetch_add(&s->metrics.auth_fail[2], 1);
      return 1;
    }
    /* a cookie is ambient: state-changing requests need the CSRF token */
    if (r->who.kind == SBX__CRED_SESSION && strcmp(r->method, "GET") &&
        strcmp(r->method, "HEAD") && sbx__session_csrf_check(r))
      return 1;
  }
  return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  sbx_server *s = cls;
  sbx__req *r = *con_cls;
  (void)version;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r)
      return MHD_NO;
    r->srv = s;
    r->conn = conn;
    r->method = method;
    r->route = -1;
    r->t0 = sbx__mono();
    atomic_fetch_add(&s->metrics.in_flight, 1);
    if (sbx__rand_hex(r->reqid, 16))
      snprintf(r->reqid, sizeof r->reqid, "0");
    client_ip(r);
    *con_cls = r;
    /* Checks that need no body run now. A refusal is queued at once: MHD
     * accepts a response only before the body is read (it then closes the
     * connection instead of reading the body). Successful requests are
     * answered on a later call so the connection is kept alive. */
    int c = check(r, url);
    if (c == 0 || c == 2) /* 2: r->status is set, the body is discarded */
      return MHD_YES;
    r->final = 1;
    goto respond;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (r->status) /* refused mid-body: discard up to the cap */
      return MHD_YES;
    if ((int64_t)(r->upload_len + r->body_len + n) > r->max_body)
      return MHD_NO; /* no or a lying Content-Length: drop the connection */
    if (r->body_len + n > r->body_cap) {
      size_t cap = r->body_cap ? r->body_cap * 2 : 4096;
      while (cap < r->body_len + n)
        cap *= 2;
      char *nb = realloc(r->body, cap + 1);
      if (!nb)
        return MHD_NO;
      r->body = nb;
      r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, upload_data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    /* large uploads stream into the encrypted store as they arrive */
    if (sbx__routes[r->route].body == SBX__BODY_UPLOAD &&
        r->body_len >= 1 << 20)
      sbx__routes[r->route].fn(r);
    return MHD_YES;
  }
  r->final = 1;
  if (!r->status)
    sbx__routes[r->route].fn(r);
  if (!r->status)
    sbx__problem(r, 500, "Internal Server Error", "no response");
respond:;
  sbx__metrics_request(s, r->route, r->status, sbx__mono() - r->t0);
  enum MHD_Result ret = queue(r);
  if (r->status >= 500 || getenv("AISBXD_LOG_REQUESTS"))
    fprintf(stderr, "{\"request_id\":\"%s\",\"method\":\"%s\",\"status\":%d}\n",
            r->reqid, method, r->status);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe) {
  sbx_server *s = cls;
  sbx__req *r = *con_cls;
  (void)conn;
  (void)toe;
  if (!r)
    return;
  atomic_fetch_sub(&s->metrics.in_flight, 1);
  if (r->upload)
    sbx_store_writer_abort(r->upload);
  if (r->st)
    pool_give(&s->pool, r->st);
  if (r->resp_owned)
    free(r->resp);
  free(r->body);
  free(r);
  *con_cls = NULL;
}

/* ---- start / stop ---- */

static int parse_listen(const char *l, char *host, size_t hcap,
                        uint16_t *port) {
  const char *c = strrchr(l, ':');
  if (!c || (size_t)(c - l) >= hcap)
    return SBX_EINVAL;
  memcpy(host, l, (size_t)(c - l));
  host[c - l] = 0;
  if (host[0] == '[') { /* [::1]:8443 */
    size_t n = strlen(host);
    if (n < 2 || host[n - 1] != ']')
      return SBX_EINVAL;
    memmove(host, host + 1, n - 2);
    host[n - 2] = 0;
  }
  char *end;
  long p = strtol(c + 1, &end, 10);
  if (*end || p < 0 || p > 65535)
    return SBX_EINVAL;
  *port = (uint16_t)p;
  return SBX_OK;
}

int sbx__http_start(sbx_server *s);
int sbx__http_start(sbx_server *s) {
  char host[256];
  uint16_t port;
  if (parse_listen(s->p.listen, host, sizeof host, &port)) {
    fprintf(stderr, "aisbxd: bad --listen %s (HOST:PORT)\n", s->p.listen);
    return SBX_EINVAL;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  unsigned flags = MHD_USE_TLS | MHD_USE_EPOLL_INTERNAL_THREAD |
                   MHD_USE_ITC | MHD_USE_ERROR_LOG;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    flags |= MHD_USE_IPv6;
  } else {
    fprintf(stderr, "aisbxd: --listen needs a numeric address, got %s\n",
            host);
    return SBX_EINVAL;
  }
  int threads = s->p.threads > 0 ? s->p.threads : 1;
  s->d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &ss,
      MHD_OPTION_HTTPS_MEM_CERT, s->tls_cert_pem, MHD_OPTION_HTTPS_MEM_KEY,
      s->tls_key_pem, MHD_OPTION_HTTPS_PRIORITIES,
      "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-"
      "POLY1305:+AES-256-GCM:+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-"
      "ECDSA:+ECDHE-RSA",
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)256,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_END);
  if (!s->d) {
    fprintf(stderr, "aisbxd: cannot listen on %s\n", s->p.listen);
    return SBX_EIO;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : port;
  return SBX_OK;
}

void sbx__http_stop(sbx_server *s);
void sbx__http_stop(sbx_server *s) {
  if (s->d) {
    MHD_quiesce_daemon(s->d);
    MHD_stop_daemon(s->d); /* waits for handlers in flight */
    s->d = NULL;
  }
}
