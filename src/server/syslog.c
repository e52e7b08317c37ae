/*
 * syslog.c - RFC 5424 messages over TLS to a syslog receiver (syslog.h).
 *
 * A message:  <PRI>1 TIMESTAMP HOSTNAME aisbxd PROCID MSGID SD [MSG]
 *   PRI        facility authpriv (10) * 8 + severity (info 6, warn 4,
 *              error 3)
 *   MSGID      "audit": SD [aisbxd-audit@32473 tenant seq ts actor action
 *              target prev_hash hash] (hex hashes, recomputable with the
 *              chain formula of docs/storage.md), no MSG;
 *              "security" / "anchor": SD "-", MSG the structured-log line
 *              (JSON; pseudonymised, no secret by construction, reqlog.c)
 *   32473      the IANA example enterprise number (RFC 5612): SD-IDs of
 *              our own, never a registered one.
 * On the wire each message is "LEN SP MSG" (RFC 5425 octet counting).
 */
#include "syslog.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define SD_ID "aisbxd-audit@32473"
#define BACKOFF_MIN_S 0.25
#define BACKOFF_MAX_S 30.0
#define MSG_MAX 4096

struct sbx__syslog {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int started, stop;
  char **q; /* ring of queued messages (malloc'd, framed later) */
  size_t cap, head, n;
  char host[256], port[16], ca[SBX_PATH_MAX], hostname[65];
  _Atomic int64_t sent, dropped;
  _Atomic int connected;
};

/* Parses "tls://host:port" (host may be [v6]). 0 or SBX_EINVAL. */
static int parse_url(const char *url, char *host, size_t hcap, char *port,
                     size_t pcap) {
  if (strncmp(url, "tls://", 6))
    return SBX_EINVAL;
  const char *h = url + 6, *end;
  if (*h == '[') {
    end = strchr(h, ']');
    if (!end || end[1] != ':')
      return SBX_EINVAL;
    h++;
  } else {
    end = strrchr(h, ':');
    if (!end)
      return SBX_EINVAL;
  }
  size_t hl = (size_t)(end - h);
  const char *p = *end == ']' ? end + 2 : end + 1;
  char *pe;
  long pn = strtol(p, &pe, 10);
  if (!hl || hl >= hcap || *pe || pe == p || pn < 1 || pn > 65535 ||
      strlen(p) >= pcap)
    return SBX_EINVAL;
  memcpy(host, h, hl);
  host[hl] = 0;
  snprintf(port, pcap, "%s", p);
  return SBX_OK;
}

/* Queues msg (taken over); a full queue drops its oldest message. */
static void enqueue(struct sbx__syslog *l, char *msg) {
  if (!msg)
    return;
  pthread_mutex_lock(&l->mu);
  if (l->n == l->cap) {
    free(l->q[l->head]);
    l->head = (l->head + 1) % l->cap;
    l->n--;
    l->dropped++;
  }
  l->q[(l->head + l->n) % l->cap] = msg;
  l->n++;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* Puts msg back at the front after a failed send (dropped when the queue
 * filled up meanwhile). */
static void requeue_front(struct sbx__syslog *l, char *msg) {
  pthread_mutex_lock(&l->mu);
  if (l->n == l->cap) {
    free(msg);
    l->dropped++;
  } else {
    l->head = (l->head + l->cap - 1) % l->cap;
    l->q[l->head] = msg;
    l->n++;
  }
  pthread_mutex_unlock(&l->mu);
}

/* The RFC 5424 header up to MSGID, into b. */
static int header(const struct sbx__syslog *l, int sev, const char *msgid,
                  char *b, size_t cap) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  time_t t = tv.tv_sec;
  gmtime_r(&t, &tm);
  char ts[24];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  return snprintf(b, cap, "<%d>1 %s.%03dZ %s aisbxd %d %s ", 10 * 8 + sev, ts,
                  (int)(tv.tv_usec / 1000), l->hostname, (int)getpid(), msgid);
}

/* Appends s as an SD-PARAM value: '"', '\' and ']' escaped, control bytes
 * dropped. Returns the new length (cap reached: truncated). */
static size_t sd_value(char *b, size_t n, size_t cap, const char *s) {
  for (; *s && n + 3 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c == 0x7f)
      continue;
    if (c == '"' || c == '\\' || c == ']')
      b[n++] = '\\';
    b[n++] = (char)c;
  }
  b[n] = 0;
  return n;
}

static int severity(const char *level) {
  return !strcmp(level, "error") ? 3 : !strcmp(level, "warn") ? 4 : 6;
}

void sbx__syslog_event(sbx_server *s, const char *level, const char *json) {
  struct sbx__syslog *l = s->syslog;
  if (!l)
    return;
  char *m = malloc(MSG_MAX);
  if (!m)
    return;
  int anchor = strstr(json, "\"event\":\"audit.anchor\"") != NULL;
  int n =
      header(l, severity(level), anchor ? "anchor" : "security", m, MSG_MAX);
  size_t jl = strcspn(json, "\r\n");
  if (n < 0 || (size_t)n + 2 + jl >= MSG_MAX) {
    free(m);
    return;
  }
  memcpy(m + n, "- ", 2);
  memcpy(m + n + 2, json, jl);
  m[n + 2 + jl] = 0;
  enqueue(l, m);
}

void sbx__syslog_audit(sbx_server *s, const char *tenant,
                       const sbx_audit_event *e) {
  struct sbx__syslog *l = s->syslog;
  if (!l)
    return;
  char *m = malloc(MSG_MAX);
  if (!m)
    return;
  char prev[2 * SBX_SHA256_LEN + 1], hash[2 * SBX_SHA256_LEN + 1], num[32];
  sbx_hex(e->prev_hash, SBX_SHA256_LEN, prev);
  sbx_hex(e->hash, SBX_SHA256_LEN, hash);
  int h = header(l, 6, "audit", m, MSG_MAX);
  size_t n = h > 0 ? (size_t)h : 0;
  const char *names[] = {"tenant", "seq",    "ts",        "actor",
                         "action", "target", "prev_hash", "hash"};
  char seq[24];
  snprintf(seq, sizeof seq, "%lld", (long long)e->seq);
  snprintf(num, sizeof num, "%lld", (long long)e->ts);
  const char *vals[] = {tenant,    seq,       num,  e->actor,
                        e->action, e->target, prev, hash};
  n += (size_t)snprintf(m + n, MSG_MAX - n, "[%s", SD_ID);
  for (int i = 0; i < 8 && n + 64 < MSG_MAX; i++) {
    n += (size_t)snprintf(m + n, MSG_MAX - n, " %s=\"", names[i]);
    n = sd_value(m, n, MSG_MAX - 4, vals[i]);
    m[n++] = '"';
  }
  m[n++] = ']';
  m[n] = 0;
  enqueue(l, m);
}

/* ---- the sender ---- */

/* Waits up to sec seconds or until stop. Caller holds l->mu. */
static void nap(struct sbx__syslog *l, double sec) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  long long ns = (long long)t.tv_nsec + (long long)(sec * 1e9);
  t.tv_sec += (time_t)(ns / 1000000000LL);
  t.tv_nsec = (long)(ns % 1000000000LL);
  if (!l->stop)
    pthread_cond_timedwait(&l->cv, &l->mu, &t);
}

typedef struct conn {
  int fd;
  gnutls_session_t s;
  gnutls_certificate_credentials_t cred;
} conn;

static void conn_close(conn *c) {
  if (c->s) {
    gnutls_bye(c->s, GNUTLS_SHUT_WR);
    gnutls_deinit(c->s);
  }
  if (c->cred)
    gnutls_certificate_free_credentials(c->cred);
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  c->s = NULL;
  c->cred = NULL;
}

/* TCP connect, TLS handshake (the receiver's certificate must chain to
 * the CA file and name host), 10 s timeouts. 0 or a negative error. */
static int conn_open(struct sbx__syslog *l, conn *c) {
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  c->fd = -1;
  c->s = NULL;
  c->cred = NULL;
  if (getaddrinfo(l->host, l->port, &hints, &ai))
    return SBX_EIO;
  int rc = SBX_EIO;
  for (struct addrinfo *a = ai; a && rc; a = a->ai_next) {
    c->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
      continue;
    struct timeval tv = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!connect(c->fd, a->ai_addr, a->ai_addrlen))
      rc = SBX_OK;
    else {
      close(c->fd);
      c->fd = -1;
    }
  }
  freeaddrinfo(ai);
  if (rc)
    return rc;
  rc = SBX_ECRYPTO;
  if (gnutls_certificate_allocate_credentials(&c->cred) < 0 ||
      gnutls_certificate_set_x509_trust_file(c->cred, l->ca,
                                             GNUTLS_X509_FMT_PEM) <= 0 ||
      gnutls_init(&c->s, GNUTLS_CLIENT) < 0 ||
      gnutls_set_default_priority(c->s) < 0 ||
      gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->cred) < 0) {
    conn_close(c);
    return rc;
  }
  gnutls_server_name_set(c->s, GNUTLS_NAME_DNS, l->host, strlen(l->host));
  gnutls_session_set_verify_cert(c->s, l->host, 0);
  gnutls_transport_set_int(c->s, c->fd);
  gnutls_handshake_set_timeout(c->s, 10000);
  int hr;
  do
    hr = gnutls_handshake(c->s);
  while (hr < 0 && !gnutls_error_is_fatal(hr));
  if (hr < 0) {
    sbx__log("syslog %s:%s: TLS handshake: %s", l->host, l->port,
             gnutls_strerror(hr));
    conn_close(c);
    return rc;
  }
  return SBX_OK;
}

/* 1 while the receiver has not closed the connection (checked before a
 * send, so a closed one is noticed before a message is written into it). */
static int conn_alive(conn *c) {
  struct pollfd p = {c->fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0)
    return 1;
  if (p.revents & (POLLHUP | POLLERR))
    return 0;
  char b[256];
  ssize_t r = gnutls_record_recv(c->s, b, sizeof b); /* receivers send none */
  return r > 0 || r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED;
}

/* Sends "LEN SP msg". 0 or SBX_EIO. */
static int send_framed(conn *c, const char *msg) {
  char len[24];
  size_t n = strlen(msg);
  int k = snprintf(len, sizeof len, "%zu ", n);
  gnutls_record_cork(c->s);
  gnutls_record_send(c->s, len, (size_t)k);
  gnutls_record_send(c->s, msg, n);
  int rc;
  do
    rc = gnutls_record_uncork(c->s, GNUTLS_RECORD_WAIT);
  while (rc < 0 && !gnutls_error_is_fatal(rc));
  return rc < 0 ? SBX_EIO : SBX_OK;
}

static void *sender(void *arg) {
  struct sbx__syslog *l = arg;
  conn c = {-1, NULL, NULL};
  double backoff = BACKOFF_MIN_S;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && !l->n)
      nap(l, 1.0);
    if (l->stop && (!l->n || !l->connected))
      break;
    if (!l->connected) {
      pthread_mutex_unlock(&l->mu);
      int rc = conn_open(l, &c);
      pthread_mutex_lock(&l->mu);
      if (rc) {
        nap(l, backoff); /* the receiver is down: retry later */
        backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
        continue;
      }
      l->connected = 1;
      backoff = BACKOFF_MIN_S;
    }
    char *m = l->q[l->head];
    l->head = (l->head + 1) % l->cap;
    l->n--;
    pthread_mutex_unlock(&l->mu);
    int ok = conn_alive(&c) && !send_framed(&c, m);
    pthread_mutex_lock(&l->mu);
    if (ok) {
      free(m);
      l->sent++;
    } else {
      l->connected = 0;
      pthread_mutex_unlock(&l->mu);
      conn_close(&c);
      requeue_front(l, m);
      pthread_mutex_lock(&l->mu);
    }
  }
  pthread_mutex_unlock(&l->mu);
  if (l->connected)
    conn_close(&c);
  l->connected = 0;
  return NULL;
}

int sbx__syslog_start(sbx_server *s) {
  s->syslog = NULL;
  if (!s->p.syslog_url || !*s->p.syslog_url)
    return SBX_OK;
  struct sbx__syslog *l = calloc(1, sizeof *l);
  if (!l)
    return SBX_ENOMEM;
  int rc = parse_url(s->p.syslog_url, l->host, sizeof l->host, l->port,
                     sizeof l->port);
  if (rc || !s->p.syslog_ca_file || access(s->p.syslog_ca_file, R_OK)) {
    sbx__log("syslog_url must be tls://host:port and syslog_ca_file a "
             "readable CA file");
    free(l);
    return SBX_EINVAL;
  }
  snprintf(l->ca, sizeof l->ca, "%s", s->p.syslog_ca_file);
  if (gethostname(l->hostname, sizeof l->hostname - 1) || !l->hostname[0])
    snprintf(l->hostname, sizeof l->hostname, "-");
  for (char *p = l->hostname; *p; p++) /* PRINTUSASCII, no space */
    if (*p <= ' ' || *p > '~')
      *p = '-';
  l->cap = s->p.syslog_queue_max > 0 ? (size_t)s->p.syslog_queue_max : 10000;
  l->q = calloc(l->cap, sizeof *l->q);
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  if (!l->q || pthread_create(&l->thread, NULL, sender, l)) {
    free(l->q);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    return SBX_ENOMEM;
  }
  l->started = 1;
  s->syslog = l;
  return SBX_OK;
}

void sbx__syslog_stop(sbx_server *s) {
  struct sbx__syslog *l = s->syslog;
  if (!l)
    return;
  /* up to 2 s for what is queued, if connected */
  for (int i = 0; i < 20; i++) {
    pthread_mutex_lock(&l->mu);
    int left = l->n && l->connected;
    pthread_mutex_unlock(&l->mu);
    if (!left)
      break;
    usleep(100000);
  }
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->thread, NULL);
  for (size_t i = 0; i < l->n; i++)
    free(l->q[(l->head + i) % l->cap]);
  free(l->q);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  free(l);
  s->syslog = NULL;
}

void sbx__syslog_counts(const sbx_server *s, int64_t *sent, int64_t *dropped,
                        int64_t *connected) {
  const struct sbx__syslog *l = s->syslog;
  *sent = l ? l->sent : 0;
  *dropped = l ? l->dropped : 0;
  *connected = l ? l->connected : 0;
}
