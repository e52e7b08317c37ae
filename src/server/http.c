/*
 * http.c - the libmicrohttpd glue: per-request state, body caps, the
 * dispatch through the route table, request ids, security headers, rate
 * limits.
 *
 * MHD calls the access handler (1) once with the headers, (2) once per body
 * chunk, (3) once with upload_data_size == 0 at the end. Nothing is queued
 * on (1) (queueing then forces Connection: close); authentication, route
 * and permission checks run on the first call after it, before any body
 * byte is buffered or stored. Order: per-IP rate limit, route, credential,
 * per-credential rate limit, authorization (authz.c), and only then the
 * body caps: an unauthenticated caller learns nothing about a route's body
 * (401, never 413 or 400). Before all of these, the strict HTTP checks
 * (strict.c): the raw request target (seen in MHD's URI log callback, which
 * allocates the request) and the header list; a refusal there is answered
 * at once with "Connection: close".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

#include "auth.h"
#include "authz.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "park.h"
#include "pool.h"
#include "ratelimit.h"
#include "reply.h"
#include "reqlog.h"
#include "req.h"
#include "router.h"
#include "state.h"
#include "strict.h"
#include "util.h"

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
  struct MHD_Response *resp;
  if (r->resp_cb) { /* a stream: the reader owns its state from now on */
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, r->resp_cb,
                                             r->resp_cb_cls, r->resp_cb_free);
    if (!resp && r->resp_cb_free)
      r->resp_cb_free(r->resp_cb_cls);
    r->resp_cb = NULL;
  } else {
    resp = MHD_create_response_from_buffer(
        r->resp_len, r->resp ? r->resp : (char *)"",
        r->resp_owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  }
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
  enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
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

/* How a refusal after the route matched is sent: 2 (after the body has
 * been read and discarded) when a body of at most SBX__DRAIN_MAX is on its
 * way, else 1 (at once). A client that sends its body without waiting
 * (no "Expect: 100-continue") would otherwise see the connection reset
 * under its feet when we answer and close. */
static int refusal(sbx__req *r) {
  const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  long long clen = cl ? strtoll(cl, NULL, 10) : 0;
  const char *ex = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_EXPECT);
  int waits = ex && (strstr(ex, "100-continue") || strstr(ex, "100-Continue"));
  return clen > 0 && clen <= SBX__DRAIN_MAX && !waits ? 2 : 1;
}

/* Runs once per request after the headers: rate limit, route,
 * authentication, authorization, then the body caps. Returns 0 to go on, 1
 * when a response is set, 2 when a response is set but is to be sent after
 * the body has been read and discarded. */
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
  r->route = sbx__route_match(s->routes, s->nroutes, r, r->method, r->path,
                              &path_known);
  if (r->route < 0) {
    if (path_known)
      sbx__problem(r, 405, "Method Not Allowed", NULL);
    else
      sbx__problem(r, 404, "Not Found", NULL);
    return 1;
  }
  const sbx__route *rt = &s->routes[r->route];
  r->st = sbx__pool_take(&s->pool);
  if (!r->st) {
    sbx__add_header(r, "Retry-After", "1");
    sbx__problem(r, 503, "Service Unavailable", "server busy");
    return 1;
  }
  /* the credential, if any (public routes read none) */
  int auth_rc = rt->flags & SBX__RF_PUBLIC ? SBX_OK : sbx__authenticate(r);
  if (!auth_rc && r->who.kind != SBX__CRED_NONE) {
    snprintf(who, sizeof who, "cred:%s/%s", r->who.tenant, r->who.key_id);
    wait = sbx__rl_take(&s->rl, who, s->p.rate_key_per_s, s->p.rate_key_burst);
    if (wait) {
      char ra[16];
      atomic_fetch_add(&s->metrics.rate_limited[1], 1);
      snprintf(ra, sizeof ra, "%d", wait);
      sbx__add_header(r, "Retry-After", ra);
      sbx__problem(r, 429, "Too Many Requests", "per-credential rate limit");
      return refusal(r);
    }
  }
  if (sbx__authorize(r, rt, auth_rc)) {
    if (r->status == 401)
      atomic_fetch_add(&s->metrics.auth_fail[auth_rc == SBX_EEXPIRED ? 1
                                             : auth_rc               ? 0
                                                                     : 2],
                       1);
    return refusal(r);
  }
  /* the body caps, for a caller allowed to send it */
  r->max_body = rt->body == SBX__BODY_UPLOAD && (rt->flags & SBX__RF_JOB_TOKEN)
                    ? SBX__RESULT_UPLOAD_MAX
                : rt->body == SBX__BODY_UPLOAD ? s->p.max_upload_bytes
                : rt->body == SBX__BODY_JSON   ? s->p.max_json_bytes
                                               : 0;
  const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  long long clen = cl ? strtoll(cl, NULL, 10) : 0;
  if (cl && clen > r->max_body) {
    /* bodies up to SBX__DRAIN_MAX are read and discarded first, then the
     * 413 is sent; larger ones, and clients that wait for 100-continue,
     * get the answer at once */
    sbx__problem(r, 413, "Content Too Large", "request body exceeds the cap");
    return refusal(r);
  }
  return 0;
}

/* MHD's URI log callback: called with the raw request target once the
 * request line is parsed, before MHD splits off the query and decodes it.
 * Allocates the request (its pointer becomes the access handler's
 * *con_cls; on_completed frees it) and records the target's verdict (a
 * decoded %00 would otherwise truncate the path or a query value). NULL on
 * allocation failure: on_request then drops the connection. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  sbx_server *s = cls;
  sbx__req *r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  r->srv = s;
  r->conn = conn;
  r->route = -1;
  r->t0 = sbx__mono();
  atomic_fetch_add(&s->metrics.in_flight, 1);
  if (sbx__rand_hex(r->reqid, 16))
    snprintf(r->reqid, sizeof r->reqid, "0");
  client_ip(r);
  r->bad_target = sbx__strict_target(uri);
  return r;
}

/* The strict HTTP checks of the first call: the target's verdict, then the
 * method and header list. Returns 1 with a 400/501 set (to be sent with
 * Connection: close), else 0. */
static int strict_refusal(sbx__req *r, const char *url, const char *version) {
  const char *why = r->bad_target;
  int st = why ? 400 : sbx__strict_head(r->conn, r->method, url, version, &why);
  if (!st)
    return 0;
  sbx__problem(r, st, st == 501 ? "Not Implemented" : "Bad Request", why);
  sbx__add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  sbx_server *s = cls;
  sbx__req *r = *con_cls;
  if (!r) /* on_uri could not allocate it */
    return MHD_NO;
  if (!r->method) { /* the first call: the head is complete */
    r->method = method;
    sbx__connguard_head_done(s->cg, conn); /* body deadline from now */
    /* Checks that need no body run now. A refusal is queued at once: MHD
     * accepts a response only before the body is read (it then closes the
     * connection instead of reading the body). Successful requests are
     * answered on a later call so the connection is kept alive. */
    int c = strict_refusal(r, url, version) ? 1 : check(r, url);
    if (c == 0 || c == 2) /* 2: r->status is set, the body is discarded */
      return MHD_YES;
    r->final = 1;
    sbx__connguard_responding(s->cg, conn);
    goto respond;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    sbx__connguard_body(s->cg, conn, n);
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
    if (s->routes[r->route].body == SBX__BODY_UPLOAD && r->body_len >= 1 << 20)
      s->routes[r->route].fn(r);
    return MHD_YES;
  }
  r->final = 1;
  sbx__connguard_responding(s->cg, conn); /* our time, not the client's */
  if (!r->status && !r->st && !(r->st = sbx__pool_take(&s->pool))) {
    /* resumed after parking and every store handle is busy */
    if (!r->park_refused && !sbx__park(s, conn))
      return MHD_YES;
    sbx__add_header(r, "Retry-After", "1");
    sbx__problem(r, 503, "Service Unavailable", "server busy");
  }
  if (!r->status)
    s->routes[r->route].fn(r);
  if (r->park && !r->status) { /* the handler waits: park, call it again */
    r->park = 0;
    sbx__pool_give(&s->pool, r->st);
    r->st = NULL;
    if (!sbx__park(s, conn))
      return MHD_YES;
    r->park_refused = 1; /* stopping: it answers now */
    if ((r->st = sbx__pool_take(&s->pool)))
      s->routes[r->route].fn(r);
  }
  if (!r->status)
    sbx__problem(r, 500, "Internal Server Error", "no response");
respond:;
  sbx__metrics_request(s, r->route, r->status, sbx__mono() - r->t0);
  int stream = r->resp_cb != NULL;
  enum MHD_Result ret = queue(r);
  if (stream) { /* a long stream takes its handles per read, not for life */
    sbx__pool_give(&s->pool, r->st);
    r->st = NULL;
  }
  sbx__reqlog_request(r, method, sbx__mono() - r->t0); /* reqlog.c */
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  sbx_server *s = cls;
  sbx__req *r = *con_cls;
  (void)toe;
  sbx__connguard_request_done(s->cg, conn); /* next head's deadline */
  if (!r)
    return;
  atomic_fetch_sub(&s->metrics.in_flight, 1);
  if (r->upload)
    sbx_store_writer_abort(r->upload);
  if (r->resp_cb && r->resp_cb_free) /* a stream never queued */
    r->resp_cb_free(r->resp_cb_cls);
  if (r->st)
    sbx__pool_give(&s->pool, r->st);
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

int sbx__http_start(sbx_server *s) {
  char host[256];
  uint16_t port;
  if (parse_listen(s->p.listen, host, sizeof host, &port)) {
    sbx__log("bad --listen %s (HOST:PORT)", s->p.listen);
    return SBX_EINVAL;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  unsigned flags = MHD_USE_TLS | MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC |
                   MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
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
    sbx__log("--listen needs a numeric address, got %s", host);
    return SBX_EINVAL;
  }
  int threads = s->p.threads > 0 ? s->p.threads : 1;
  sbx__connguard_params gp = {
      .budget = s->p.conn_budget > 0 ? s->p.conn_budget : 1000,
      .per_ip_max = s->p.conn_per_ip_max > 0 ? s->p.conn_per_ip_max : 256,
      .tls_handshake_timeout_s = s->p.tls_handshake_timeout_s,
      .head_timeout_s = s->p.head_timeout_s,
      .body_min_rate = s->p.body_min_rate,
      .body_grace_s = 5,
  };
  s->cg = sbx__connguard_new(&gp);
  if (!s->cg)
    return SBX_ENOMEM;
  /* MHD's own limits stay above the guard's (MHD splits its global limit
   * between the pool threads; the guard's budget is the one that binds) */
  unsigned mhd_limit = (unsigned)gp.budget + (unsigned)gp.budget / 4 + 16;
  unsigned idle = s->p.idle_timeout_s > 0 ? (unsigned)s->p.idle_timeout_s : 30;
  s->d = MHD_start_daemon(
      flags, 0, sbx__connguard_accept, s->cg, on_request, s,
      MHD_OPTION_NOTIFY_CONNECTION, sbx__connguard_notify, s->cg,
      MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_HTTPS_MEM_CERT, s->tls_cert_pem,
      MHD_OPTION_HTTPS_MEM_KEY, s->tls_key_pem, MHD_OPTION_HTTPS_PRIORITIES,
      "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+CHACHA20-"
      "POLY1305:+AES-256-GCM:+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-"
      "ECDSA:+ECDHE-RSA",
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_URI_LOG_CALLBACK,
      on_uri, s, MHD_OPTION_STRICT_FOR_CLIENT,
      (int)1, /* Host required, no space in the target (strict.c: ours) */
      MHD_OPTION_CONNECTION_TIMEOUT, idle, MHD_OPTION_CONNECTION_LIMIT,
      mhd_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)gp.per_ip_max,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_END);
  if (!s->d) {
    sbx__log("cannot listen on %s", s->p.listen);
    sbx__connguard_free(s->cg);
    s->cg = NULL;
    return SBX_EIO;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di ? di->port : port;
  return SBX_OK;
}

void sbx__http_stop(sbx_server *s) {
  if (s->d) {
    MHD_quiesce_daemon(s->d);
    sbx__park_stop(s);     /* parked connections resume and answer */
    MHD_stop_daemon(s->d); /* waits for handlers in flight */
    s->d = NULL;
  }
  sbx__connguard_free(s->cg); /* no MHD callback runs any more */
  s->cg = NULL;
}
