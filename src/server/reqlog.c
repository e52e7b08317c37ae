/*
 * reqlog.c - structured request and security-event logs (reqlog.h).
 *
 * Line: {"time":RFC 3339 with ms,"level":..,"event":..,"request_id":..,
 * "tenant":..,"actor":"ps_<16 hex>","ip":"ps_<16 hex>",...}. A pseudonym
 * is HMAC-SHA256(key, kind "|" value) truncated to 64 bits; the key is
 * sbx_store_keyed_hash("log-pseudonym") of the store: per deployment,
 * rotated with the master key, never written anywhere. Tenant ids and
 * route patterns are not personal data and stay in clear (the operator
 * needs them); request ids are random. The route pattern is logged, never
 * the path (it may hold names).
 */
#include "reqlog.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "router.h"
#include "sbx/crypto.h"
#include "sbx/store.h"
#include "syslog.h"

struct sbx__reqlog {
  uint8_t key[32];
  int fd; /* -1: stderr */
  /* size-based rotation (log_max_bytes): bytes in the current file; one
   * writer at a time rotates (rot) */
  _Atomic int64_t size;
  pthread_mutex_t rot;
};

/* The size of the open log file (0 when unknown). */
static int64_t fd_size(int fd) {
  struct stat st;
  return fd >= 0 && !fstat(fd, &st) ? (int64_t)st.st_size : 0;
}

int sbx__reqlog_init(sbx_server *s) {
  struct sbx__reqlog *l = calloc(1, sizeof *l);
  if (!l)
    return SBX_ENOMEM;
  l->fd = -1;
  pthread_mutex_init(&l->rot, NULL);
  int rc = sbx_store_keyed_hash(s->pool.h[0], "log-pseudonym", "v1", 2, l->key);
  if (!rc && s->p.log_file) {
    l->fd =
        open(s->p.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0) {
      sbx__log("log_file %s: cannot open", s->p.log_file);
      rc = SBX_EIO;
    }
    l->size = fd_size(l->fd);
  }
  if (rc) {
    sbx_memwipe(l->key, sizeof l->key);
    free(l);
    return rc;
  }
  s->reqlog = l;
  return 0;
}

void sbx__reqlog_free(sbx_server *s) {
  struct sbx__reqlog *l = s->reqlog;
  if (!l)
    return;
  if (l->fd >= 0)
    close(l->fd);
  pthread_mutex_destroy(&l->rot);
  sbx_memwipe(l->key, sizeof l->key);
  free(l);
  s->reqlog = NULL;
}

int sbx_server_log_reopen(sbx_server *s) {
  struct sbx__reqlog *l = s ? s->reqlog : NULL;
  if (!l || l->fd < 0 || !s->p.log_file)
    return 0;
  int fd = open(s->p.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return SBX_EIO;
  /* dup2 swaps the file under the same descriptor atomically: a concurrent
   * write goes wholly to the old file or wholly to the new one */
  int rc = dup2(fd, l->fd) < 0 ? SBX_EIO : 0;
  if (!rc)
    fcntl(l->fd, F_SETFD, FD_CLOEXEC);
  close(fd);
  if (!rc)
    l->size = fd_size(l->fd);
  return rc;
}

/* Size-based rotation: log_file.(k-1) -> .k down to log_file -> .1 (the
 * oldest beyond log_keep is overwritten), then log_file is reopened (the
 * descriptor swapped atomically, as on SIGHUP). Called by the writer that
 * pushed the size past log_max_bytes; the others go on writing to the old
 * file meanwhile (a line is never split: one write() each). */
static void rotate(sbx_server *s) {
  struct sbx__reqlog *l = s->reqlog;
  if (pthread_mutex_trylock(&l->rot))
    return; /* another writer rotates */
  if (l->size >= s->p.log_max_bytes) {
    int keep = s->p.log_keep > 0 ? s->p.log_keep : 5;
    char from[SBX_PATH_MAX + 16], to[SBX_PATH_MAX + 16];
    for (int k = keep; k >= 1; k--) {
      if (k > 1)
        snprintf(from, sizeof from, "%s.%d", s->p.log_file, k - 1);
      else
        snprintf(from, sizeof from, "%s", s->p.log_file);
      snprintf(to, sizeof to, "%s.%d", s->p.log_file, k);
      rename(from, to); /* a missing one: nothing to move */
    }
    if (sbx_server_log_reopen(s))
      sbx__log("log_file %s: reopen after rotation failed", s->p.log_file);
  }
  pthread_mutex_unlock(&l->rot);
}

/* "ps_" + 16 hex of HMAC(key, kind|value) into out (>= 20 bytes); "-"
 * for an empty value. */
static void pseudonym(const struct sbx__reqlog *l, const char *kind,
                      const char *v, char out[24]) {
  if (!v || !*v) {
    snprintf(out, 24, "-");
    return;
  }
  char msg[256];
  int n = snprintf(msg, sizeof msg, "%s|%s", kind, v);
  uint8_t h[32];
  if (n < 0 || sbx_hmac_sha256(l->key, 32, msg, (size_t)n, h)) {
    snprintf(out, 24, "-");
    return;
  }
  memcpy(out, "ps_", 3);
  sbx_hex(h, 8, out + 3);
}

/* RFC 3339 UTC with milliseconds into out (>= 32 bytes). */
static void now_rfc3339(char out[32]) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  time_t t = tv.tv_sec;
  gmtime_r(&t, &tm);
  char b[24];
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, 32, "%s.%03dZ", b, (int)(tv.tv_usec / 1000));
}

/* Keeps only [A-Za-z0-9._:/{}-] of s (ids, patterns, methods): nothing to
 * escape in JSON, nothing injected. */
static void clean(const char *s, char *out, size_t cap) {
  size_t o = 0;
  for (; s && *s && o + 1 < cap; s++) {
    char c = *s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || strchr("._:/{}-", c))
      out[o++] = c;
  }
  out[o] = 0;
}

/* The route pattern of r ("unmatched" when none). */
static const char *route_of(const sbx__req *r) {
  const sbx_server *s = r->srv;
  if (s->routes && r->route >= 0 && (size_t)r->route < s->nroutes)
    return s->routes[r->route].pattern;
  return "unmatched";
}

/* Writes one line (a single write(2): lines never interleave). */
static void emit(sbx_server *s, const char *line, size_t n) {
  struct sbx__reqlog *l = s->reqlog;
  int fd = l && l->fd >= 0 ? l->fd : 2;
  ssize_t w = write(fd, line, n);
  if (l && l->fd >= 0 && w > 0 && s->p.log_max_bytes > 0 &&
      (l->size += w) >= s->p.log_max_bytes)
    rotate(s);
}

/* The common head of a line: time, level, event, request id, tenant, actor
 * and ip pseudonyms. Returns the length written into b. */
static int line_head(sbx__req *r, const char *level, const char *event, char *b,
                     size_t cap) {
  const struct sbx__reqlog *l = r->srv->reqlog;
  char when[32], actor[24] = "-", ip[24] = "-", tenant[SBX_ID_MAX], ev[96];
  now_rfc3339(when);
  if (l) {
    pseudonym(l, "actor",
              r->who.user[0]     ? r->who.user
              : r->who.key_id[0] ? r->who.key_id
                                 : r->who.job,
              actor);
    pseudonym(l, "ip", r->ip, ip);
  }
  clean(r->who.tenant, tenant, sizeof tenant);
  clean(event, ev, sizeof ev);
  return snprintf(b, cap,
                  "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"%s\","
                  "\"request_id\":\"%.32s\",\"tenant\":\"%s\",\"actor\":\"%s\","
                  "\"ip\":\"%s\"",
                  when, level, ev, r->reqid, tenant[0] ? tenant : "-", actor,
                  ip);
}

void sbx__reqlog_line(sbx_server *s, const char *json) {
  char line[1024];
  int n = snprintf(line, sizeof line, "%s\n", json);
  if (n > 0 && (size_t)n < sizeof line) {
    emit(s, line, (size_t)n);
    sbx__syslog_event(s, "info", line); /* anchors: the SIEM keeps them */
  }
}

void sbx__reqlog_request(sbx__req *r, const char *method, double seconds) {
  char line[1024], m[16], route[SBX_PATH_MAX];
  int n = line_head(r,
                    r->status >= 500   ? "error"
                    : r->status >= 400 ? "warn"
                                       : "info",
                    "request", line, sizeof line);
  clean(method, m, sizeof m);
  clean(route_of(r), route, sizeof route);
  if (n < 0 || (size_t)n >= sizeof line)
    return;
  int k = snprintf(line + n, sizeof line - (size_t)n,
                   ",\"method\":\"%s\",\"route\":\"%s\",\"status\":%d,"
                   "\"latency_ms\":%.3f,\"bytes_in\":%lld,\"bytes_out\":%lld}"
                   "\n",
                   m, route, r->status, seconds * 1e3,
                   (long long)(r->body_len + (size_t)r->upload_len),
                   (long long)r->resp_len);
  if (k > 0 && (size_t)(n + k) < sizeof line)
    emit(r->srv, line, (size_t)(n + k));
}

void sbx__reqlog_job(sbx__req *r, const char *event, const char *tenant,
                     const char *job, int64_t shard, const char *state) {
  const char *level = strcmp(event, "job.state") ? "warn" : "info";
  char line[1024], route[SBX_PATH_MAX], t[SBX_ID_MAX], j[SBX_ID_MAX], st[32];
  int n = line_head(r, level, event, line, sizeof line);
  if (n < 0 || (size_t)n >= sizeof line)
    return;
  clean(route_of(r), route, sizeof route);
  clean(tenant, t, sizeof t);
  clean(job, j, sizeof j);
  clean(state, st, sizeof st);
  int k = snprintf(line + n, sizeof line - (size_t)n,
                   ",\"route\":\"%s\",\"job_tenant\":\"%s\",\"job\":\"%s\","
                   "\"shard\":%lld,\"state\":\"%s\"}\n",
                   route, t, j, (long long)shard, st);
  if (k > 0 && (size_t)(n + k) < sizeof line) {
    emit(r->srv, line, (size_t)(n + k));
    sbx__syslog_event(r->srv, level, line);
  }
}

void sbx__reqlog_event(sbx__req *r, const char *level, const char *event,
                       const char *target) {
  char line[1024], route[SBX_PATH_MAX], tgt[24] = "-";
  int n = line_head(r, level, event, line, sizeof line);
  if (n < 0 || (size_t)n >= sizeof line)
    return;
  clean(route_of(r), route, sizeof route);
  if (r->srv->reqlog)
    pseudonym(r->srv->reqlog, "target", target, tgt);
  int k = snprintf(line + n, sizeof line - (size_t)n,
                   ",\"route\":\"%s\",\"target\":\"%s\"}\n", route, tgt);
  if (k > 0 && (size_t)(n + k) < sizeof line) {
    emit(r->srv, line, (size_t)(n + k));
    sbx__syslog_event(r->srv, level, line); /* security events to a SIEM */
  }
}
