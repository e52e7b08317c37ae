/*
 * conn.c - the connection guard: per-connection deadlines enforced by a
 * reaper thread, and the accept policy's budget with per-address fair
 * share. See conn.h.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "conn.h"

#include "util.h"

enum phase { PH_HEAD, PH_BODY, PH_RESPONDING };

/* An address (IPv4, or the /64 of an IPv6 address) and its connections. */
typedef struct addr_slot {
  uint8_t key[9]; /* family tag + 4 or 8 bytes */
  int n;
} addr_slot;

typedef struct rec {
  struct rec *prev, *next;
  struct MHD_Connection *conn;
  gnutls_session_t tls;
  int fd;
  uint8_t key[9];
  int handshake_done, killed;
  enum phase ph;
  double t_accept, t_phase; /* sbx__mono() */
  uint64_t body_bytes;
} rec;

struct sbx__connguard {
  sbx__connguard_params p;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t reaper;
  int stop;
  rec *head;
  int open;
  addr_slot *addrs; /* compact: [0, naddrs) all have n > 0 */
  int naddrs, addrs_cap;
  sbx__connguard_stats st;
};

/* The guard the TLS handshake hook reports to (gnutls hooks carry no
 * user pointer of ours; one server per process uses the hook). */
static sbx__connguard *g_hook_guard;
static pthread_mutex_t g_hook_mu = PTHREAD_MUTEX_INITIALIZER;

/* The fair-share key of an address: IPv4 whole, IPv6 by its /64 (one
 * subscriber's usual allocation). 0 when the family is unknown. */
static int addr_key(const struct sockaddr *sa, uint8_t key[9]) {
  memset(key, 0, 9);
  if (!sa)
    return 0;
  if (sa->sa_family == AF_INET) {
    key[0] = 4;
    memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    return 1;
  }
  if (sa->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                         0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(a, v4mapped, 12)) {
      key[0] = 4;
      memcpy(key + 1, a + 12, 4);
    } else {
      key[0] = 6;
      memcpy(key + 1, a, 8);
    }
    return 1;
  }
  return 0;
}

/* The slot of key, or -1. Caller holds g->mu. */
static int addr_find(sbx__connguard *g, const uint8_t key[9]) {
  for (int i = 0; i < g->naddrs; i++)
    if (!memcmp(g->addrs[i].key, key, 9))
      return i;
  return -1;
}

/* Counts one more connection of key. Caller holds g->mu. */
static void addr_inc(sbx__connguard *g, const uint8_t key[9]) {
  int i = addr_find(g, key);
  if (i < 0) {
    if (g->naddrs == g->addrs_cap) {
      int cap = g->addrs_cap ? 2 * g->addrs_cap : 64;
      addr_slot *na = realloc(g->addrs, (size_t)cap * sizeof *na);
      if (!na)
        return; /* uncounted: the budget still holds */
      g->addrs = na;
      g->addrs_cap = cap;
    }
    i = g->naddrs++;
    memcpy(g->addrs[i].key, key, 9);
    g->addrs[i].n = 0;
  }
  g->addrs[i].n++;
}

/* Counts one connection of key less; drops the slot at zero. Caller holds
 * g->mu. */
static void addr_dec(sbx__connguard *g, const uint8_t key[9]) {
  int i = addr_find(g, key);
  if (i < 0)
    return;
  if (--g->addrs[i].n <= 0)
    g->addrs[i] = g->addrs[--g->naddrs];
}

/* Ends a connection whose deadline passed: shutdown(2) wakes MHD, which
 * reads EOF and closes it (the record goes in the CLOSED notification;
 * until then the descriptor is still MHD's, so it cannot have been
 * reused). Caller holds g->mu. */
static void kill_rec(rec *r, uint64_t *counter) {
  if (r->killed)
    return;
  r->killed = 1;
  (*counter)++;
  shutdown(r->fd, SHUT_RDWR);
}

/* One pass of the reaper over every record. Caller holds g->mu. */
static void reap(sbx__connguard *g, double now) {
  const sbx__connguard_params *p = &g->p;
  for (rec *r = g->head; r; r = r->next) {
    if (r->killed)
      continue;
    if (!r->handshake_done && p->tls_handshake_timeout_s > 0 &&
        now - r->t_accept > p->tls_handshake_timeout_s) {
      kill_rec(r, &g->st.killed_handshake);
      continue;
    }
    if (r->ph == PH_HEAD && p->head_timeout_s > 0 &&
        now - r->t_phase > p->head_timeout_s) {
      kill_rec(r, &g->st.killed_head);
      continue;
    }
    if (r->ph == PH_BODY && p->body_min_rate > 0) {
      double dt = now - r->t_phase;
      if (dt > p->body_grace_s &&
          (double)r->body_bytes < dt * (double)p->body_min_rate)
        kill_rec(r, &g->st.killed_body);
    }
  }
}

/* The reaper thread: a pass every 100 ms until the guard is freed. */
static void *reaper_main(void *arg) {
  sbx__connguard *g = arg;
  pthread_mutex_lock(&g->mu);
  while (!g->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    if (!g->stop)
      reap(g, sbx__mono());
  }
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

sbx__connguard *sbx__connguard_new(const sbx__connguard_params *p) {
  sbx__connguard *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->p = *p;
  if (g->p.budget <= 0)
    g->p.budget = 1;
  if (g->p.per_ip_max <= 0)
    g->p.per_ip_max = g->p.budget;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&g->reaper, NULL, reaper_main, g)) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
    return NULL;
  }
  pthread_mutex_lock(&g_hook_mu);
  g_hook_guard = g;
  pthread_mutex_unlock(&g_hook_mu);
  return g;
}

void sbx__connguard_free(sbx__connguard *g) {
  if (!g)
    return;
  pthread_mutex_lock(&g_hook_mu);
  if (g_hook_guard == g)
    g_hook_guard = NULL;
  pthread_mutex_unlock(&g_hook_mu);
  pthread_mutex_lock(&g->mu);
  g->stop = 1;
  pthread_cond_signal(&g->cv);
  pthread_mutex_unlock(&g->mu);
  pthread_join(g->reaper, NULL);
  while (g->head) { /* none after MHD_stop_daemon; defensive */
    rec *r = g->head;
    g->head = r->next;
    free(r);
  }
  free(g->addrs);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

enum MHD_Result sbx__connguard_accept(void *cls, const struct sockaddr *addr,
                                      socklen_t addrlen) {
  sbx__connguard *g = cls;
  uint8_t key[9];
  (void)addrlen;
  if (!addr_key(addr, key))
    return MHD_NO;
  enum MHD_Result ok = MHD_YES;
  pthread_mutex_lock(&g->mu);
  int i = addr_find(g, key);
  int mine = i < 0 ? 0 : g->addrs[i].n;
  int others = g->naddrs - (i < 0 ? 0 : 1);
  int share = g->p.budget / (others + 2); /* the others, this one, a newcomer */
  if (share < 1)
    share = 1;
  if (g->open >= g->p.budget) {
    g->st.refused_budget++;
    ok = MHD_NO;
  } else if (mine >= g->p.per_ip_max ||
             (2 * g->open >= g->p.budget && mine >= share)) {
    g->st.refused_share++;
    ok = MHD_NO;
  }
  pthread_mutex_unlock(&g->mu);
  return ok;
}

/* gnutls' hook after a handshake message: the client's Finished ends the
 * handshake (TLS 1.2 and 1.3, full or resumed). */
static int on_handshake_msg(gnutls_session_t s, unsigned htype, unsigned when,
                            unsigned incoming, const gnutls_datum_t *msg) {
  (void)msg;
  if (htype != GNUTLS_HANDSHAKE_FINISHED || when != GNUTLS_HOOK_POST ||
      !incoming)
    return 0;
  pthread_mutex_lock(&g_hook_mu);
  sbx__connguard *g = g_hook_guard;
  if (g) {
    pthread_mutex_lock(&g->mu);
    for (rec *r = g->head; r; r = r->next)
      if (r->tls == s) {
        r->handshake_done = 1;
        r->t_phase = sbx__mono(); /* the head deadline starts now */
        break;
      }
    pthread_mutex_unlock(&g->mu);
  }
  pthread_mutex_unlock(&g_hook_mu);
  return 0;
}

void sbx__connguard_notify(void *cls, struct MHD_Connection *c,
                           void **socket_context,
                           enum MHD_ConnectionNotificationCode toe) {
  sbx__connguard *g = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    rec *r = calloc(1, sizeof *r);
    if (!r)
      return;
    r->conn = c;
    r->fd = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
      r->fd = ci->connect_fd;
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    addr_key(ci ? ci->client_addr : NULL, r->key);
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    r->tls = ci ? (gnutls_session_t)ci->tls_session : NULL;
    if (r->tls)
      gnutls_handshake_set_hook_function(r->tls, GNUTLS_HANDSHAKE_FINISHED,
                                         GNUTLS_HOOK_POST, on_handshake_msg);
    else
      r->handshake_done = 1; /* plain HTTP (not used by aisbxd) */
    r->ph = PH_HEAD;
    r->t_accept = r->t_phase = sbx__mono();
    if (r->fd < 0) { /* cannot be reaped: count it, never kill it */
      r->killed = 1;
    }
    pthread_mutex_lock(&g->mu);
    r->next = g->head;
    if (g->head)
      g->head->prev = r;
    g->head = r;
    g->open++;
    addr_inc(g, r->key);
    pthread_mutex_unlock(&g->mu);
    *socket_context = r;
    return;
  }
  rec *r = *socket_context;
  if (!r)
    return;
  pthread_mutex_lock(&g->mu);
  if (r->prev)
    r->prev->next = r->next;
  else
    g->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  g->open--;
  addr_dec(g, r->key);
  pthread_mutex_unlock(&g->mu);
  free(r);
  *socket_context = NULL;
}

/* The record of connection c (NULL when untracked). */
static rec *rec_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? (rec *)ci->socket_context : NULL;
}

/* Moves c's record to phase ph, restarting its clock. */
static void set_phase(sbx__connguard *g, struct MHD_Connection *c,
                      enum phase ph) {
  rec *r = g ? rec_of(c) : NULL;
  if (!r)
    return;
  pthread_mutex_lock(&g->mu);
  r->handshake_done = 1; /* a request arrived: the handshake is over */
  if (r->ph != ph) {
    r->ph = ph;
    r->t_phase = sbx__mono();
    r->body_bytes = 0;
  }
  pthread_mutex_unlock(&g->mu);
}

void sbx__connguard_head_done(sbx__connguard *g, struct MHD_Connection *c) {
  set_phase(g, c, PH_BODY);
}

void sbx__connguard_body(sbx__connguard *g, struct MHD_Connection *c,
                         size_t n) {
  rec *r = g ? rec_of(c) : NULL;
  if (!r)
    return;
  pthread_mutex_lock(&g->mu);
  r->body_bytes += n;
  pthread_mutex_unlock(&g->mu);
}

void sbx__connguard_responding(sbx__connguard *g, struct MHD_Connection *c) {
  set_phase(g, c, PH_RESPONDING);
}

void sbx__connguard_request_done(sbx__connguard *g, struct MHD_Connection *c) {
  set_phase(g, c, PH_HEAD);
}

void sbx__connguard_stats_get(sbx__connguard *g, sbx__connguard_stats *out) {
  memset(out, 0, sizeof *out);
  if (!g)
    return;
  pthread_mutex_lock(&g->mu);
  *out = g->st;
  out->open = g->open;
  out->addresses = g->naddrs;
  pthread_mutex_unlock(&g->mu);
}
