/*
 * metrics.c - GET /metrics in the Prometheus text format (0.0.4).
 *
 *   aisbxd_requests_total{method,route,code}  by route pattern and status
 *                                             class (1xx..5xx)
 *   aisbxd_request_duration_seconds           histogram, header arrival to
 *                                             response queued
 *   aisbxd_requests_in_flight                 gauge
 *   aisbxd_auth_failures_total{reason}        401s: invalid, expired,
 *                                             missing credential
 *   aisbxd_rate_limited_total{scope}          429s: ip, credential
 *
 * The counters are process-wide (all tenants), so no tenant credential may
 * read them: the route's flag OPERATOR lets only that token in (authz.c). Only
 * the operator's token from `metrics_token_file` (a file of mode 0600 or
 * stricter, 32..256 printable characters) opens it, compared as SHA-256 in
 * constant time. Without that setting nobody can read /metrics.
 * Counters are lock-free atomics; nothing here allocates per request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "metrics_ops.h"

#include "buf.h"
#include "log.h"
#include "reply.h"
#include "router.h"
#include "state.h"
#include "strict.h"

static const double BUCKETS[SBX__METRICS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

/* Reads the operator token: a regular file, not readable or writable by
 * group/other, one line of 32..256 printable ASCII characters. */
int sbx__metrics_init(sbx_server *s) {
  const char *path = s->p.metrics_token_file;
  if (!path || !*path)
    return SBX_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
    sbx__log("metrics_token_file %s: %s", path,
             fd < 0 ? strerror(errno)
                    : "must be a regular file of mode 0600 (or stricter)");
    if (fd >= 0)
      close(fd);
    return SBX_EPERM;
  }
  char buf[300];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n < 0)
    n = 0;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  int ok = n >= 32 && n <= 256;
  for (ssize_t i = 0; ok && i < n; i++)
    ok = buf[i] > ' ' && buf[i] < 0x7f;
  if (ok)
    ok = !sbx_sha256(buf, (size_t)n, s->metrics.token_hash);
  sbx_memwipe(buf, sizeof buf);
  if (!ok) {
    sbx__log("metrics_token_file %s: want one line of 32..256 printable "
             "characters",
             path);
    return SBX_EINVAL;
  }
  s->metrics.token_set = 1;
  return SBX_OK;
}

/* 1 when the request carries "Authorization: Bearer <the metrics token>". */
int sbx__metrics_token_ok(sbx__req *r) {
  if (!r->srv->metrics.token_set)
    return 0;
  const char *t = sbx__bearer_token(r->conn, NULL);
  if (!t || strnlen(t, 257) > 256)
    return 0;
  uint8_t d[SBX_SHA256_LEN];
  if (sbx_sha256(t, strlen(t), d))
    return 0;
  return sbx_ct_equal(d, r->srv->metrics.token_hash, SBX_SHA256_LEN);
}

/* Counts one answered request: route (-1 = none matched), status, time. */
void sbx__metrics_request(sbx_server *s, int route, int status,
                          double seconds) {
  sbx__metrics *m = &s->metrics;
  size_t ri =
      route >= 0 && (size_t)route < s->nroutes ? (size_t)route : s->nroutes;
  int cls = status / 100 - 1;
  if (cls < 0 || cls > 4)
    cls = 4;
  if (ri <= SBX__METRICS_ROUTES)
    atomic_fetch_add_explicit(&m->requests[ri][cls], 1, memory_order_relaxed);
  int b = 0;
  while (b < SBX__METRICS_BUCKETS && seconds > BUCKETS[b])
    b++;
  atomic_fetch_add_explicit(&m->hist[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->sum_us,
                            (uint64_t)(seconds > 0 ? seconds * 1e6 : 0),
                            memory_order_relaxed);
}

static uint64_t ld(_Atomic uint64_t *x) {
  return atomic_load_explicit(x, memory_order_relaxed);
}

static void put_u64(sbx__buf *b, uint64_t v) {
  sbx__buf_int(b, (int64_t)(v > INT64_MAX ? INT64_MAX : v));
}

/* GET /metrics (route flag OPERATOR: the operator token only, authz.c). */
int sbx__metrics_h(sbx__req *r) {
  sbx__metrics *m = &r->srv->metrics;
  sbx__buf b = {NULL, 0, 0, 1u << 20, 0};
  static const char *const CLS[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  sbx__buf_str(&b, "# HELP aisbxd_requests_total Requests answered, by route "
                   "and status class.\n"
                   "# TYPE aisbxd_requests_total counter\n");
  const sbx__route *routes = r->srv->routes;
  size_t nroutes = r->srv->nroutes;
  for (size_t i = 0; i <= nroutes && i <= SBX__METRICS_ROUTES; i++)
    for (int c = 0; c < 5; c++) {
      uint64_t v = ld(&m->requests[i][c]);
      if (!v)
        continue;
      /* route patterns are our own constants: no label escaping needed */
      sbx__buf_str(&b, "aisbxd_requests_total{method=\"");
      sbx__buf_str(&b, i < nroutes ? routes[i].method : "");
      sbx__buf_str(&b, "\",route=\"");
      sbx__buf_str(&b, i < nroutes ? routes[i].pattern : "unmatched");
      sbx__buf_str(&b, "\",code=\"");
      sbx__buf_str(&b, CLS[c]);
      sbx__buf_str(&b, "\"} ");
      put_u64(&b, v);
      sbx__buf_put(&b, "\n", 1);
    }
  sbx__buf_str(&b, "# HELP aisbxd_request_duration_seconds Time from the "
                   "request headers to the queued response.\n"
                   "# TYPE aisbxd_request_duration_seconds histogram\n");
  uint64_t cum = 0;
  char le[32];
  for (int i = 0; i <= SBX__METRICS_BUCKETS; i++) {
    cum += ld(&m->hist[i]);
    if (i < SBX__METRICS_BUCKETS)
      snprintf(le, sizeof le, "%g", BUCKETS[i]);
    else
      snprintf(le, sizeof le, "+Inf");
    sbx__buf_str(&b, "aisbxd_request_duration_seconds_bucket{le=\"");
    sbx__buf_str(&b, le);
    sbx__buf_str(&b, "\"} ");
    put_u64(&b, cum);
    sbx__buf_put(&b, "\n", 1);
  }
  char sum[48];
  snprintf(sum, sizeof sum, "%.6f", (double)ld(&m->sum_us) / 1e6);
  sbx__buf_str(&b, "aisbxd_request_duration_seconds_sum ");
  sbx__buf_str(&b, sum);
  sbx__buf_str(&b, "\naisbxd_request_duration_seconds_count ");
  put_u64(&b, cum);
  sbx__buf_str(&b, "\n# HELP aisbxd_requests_in_flight Requests being "
                   "processed (this one included).\n"
                   "# TYPE aisbxd_requests_in_flight gauge\n"
                   "aisbxd_requests_in_flight ");
  int64_t fl = atomic_load_explicit(&m->in_flight, memory_order_relaxed);
  sbx__buf_int(&b, fl > 0 ? fl : 0);
  sbx__buf_str(&b, "\n# HELP aisbxd_auth_failures_total Requests refused "
                   "with 401, by reason.\n"
                   "# TYPE aisbxd_auth_failures_total counter\n");
  static const char *const WHY[3] = {"invalid", "expired", "missing"};
  for (int i = 0; i < 3; i++) {
    sbx__buf_str(&b, "aisbxd_auth_failures_total{reason=\"");
    sbx__buf_str(&b, WHY[i]);
    sbx__buf_str(&b, "\"} ");
    put_u64(&b, ld(&m->auth_fail[i]));
    sbx__buf_put(&b, "\n", 1);
  }
  sbx__buf_str(&b, "# HELP aisbxd_rate_limited_total Requests refused with "
                   "429, by bucket.\n"
                   "# TYPE aisbxd_rate_limited_total counter\n"
                   "aisbxd_rate_limited_total{scope=\"ip\"} ");
  put_u64(&b, ld(&m->rate_limited[0]));
  sbx__buf_str(&b, "\naisbxd_rate_limited_total{scope=\"credential\"} ");
  put_u64(&b, ld(&m->rate_limited[1]));
  sbx__buf_put(&b, "\n", 1);
  sbx__metrics_ops(r, &b); /* metrics_ops.c */
  return sbx__reply_buf(r, 200, &b, "text/plain; version=0.0.4; charset=utf-8");
}
