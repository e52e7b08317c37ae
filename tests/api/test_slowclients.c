/*
 * test_slowclients.c - issue 12 item 1: slow clients cannot starve aisbxd.
 *
 * A real aisbxd (default connection settings) is attacked from four
 * loopback source addresses 127.0.0.2-.5, 250 connections each (the issue's
 * 4 x 250, each address under the per-IP cap of 256, together at the old
 * global limit of 1000):
 *   - 4 in 5 finish the TLS handshake, then send a request line and one
 *     header line every 3 s, never ending the head (the idle timeout, 30 s,
 *     restarts on every byte);
 *   - 1 in 5 open TCP, send a TLS record header announcing a 16 KiB
 *     handshake record and then one byte of it every 3 s (the handshake
 *     never ends).
 * Closed connections are reopened after 1 s. Meanwhile a well-behaved
 * client on 127.0.0.1 opens a fresh TLS connection every 100 ms and GETs
 * /healthz; each probe has 2 s before it counts as failed (2000 ms). The
 * test asserts: every probe succeeded and their p99 is under 200 ms.
 * During the attack a sixth address, 127.0.0.6, checks each deadline on
 * its own: a handshake, a request head and a body (10 bytes/s) trickled
 * one piece a second must each be ended near its deadline.
 * Before the connection guard (src/server/conn.c) the probes time out as
 * soon as the 1000 attack connections are up.
 *
 * usage: test_slowclients AISBXD
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

/* only the server start/stop helpers are used here */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "api_testutil.h"

#define NADDR 4
#define PER_ADDR 250
#define NATT (NADDR * PER_ADDR)
#define ATTACK_S 40.0 /* attack length */
#define WARMUP_S 5.0  /* probes start after the attack is up */
#define PROBE_EVERY_MS 100
#define PROBE_TIMEOUT_MS 2000
#define TRICKLE_S 3.0

static int g_port;
static char g_cacert[300];
static gnutls_certificate_credentials_t g_cred;
static atomic_int g_stop;

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A TCP connection from src (NULL: any) to the server, with send/receive
 * timeouts of ms. -1 on error. */
static int tcp_connect(const char *src, int ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  if (src) {
    inet_pton(AF_INET, src, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a)) {
      close(fd);
      return -1;
    }
  }
  a.sin_port = htons((uint16_t)g_port);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A TLS client session on fd, handshake done (certificate verified against
 * the server's own when verify). NULL on failure (fd is left open). */
static gnutls_session_t tls_on(int fd, int verify) {
  gnutls_session_t s;
  if (gnutls_init(&s, GNUTLS_CLIENT) < 0)
    return NULL;
  gnutls_set_default_priority(s);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, g_cred);
  gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
  if (verify)
    gnutls_session_set_verify_cert(s, "localhost", 0);
  gnutls_transport_set_int(s, fd);
  int rc;
  do
    rc = gnutls_handshake(s);
  while (rc < 0 && !gnutls_error_is_fatal(rc) && rc != GNUTLS_E_AGAIN);
  if (rc < 0) {
    gnutls_deinit(s);
    return NULL;
  }
  return s;
}

/* ---- the attack ---- */

typedef struct att {
  int fd;
  gnutls_session_t tls; /* NULL for the handshake tricklers */
  int kind;             /* 0 head trickle, 1 handshake trickle */
  double next;          /* next send, or next reconnect when fd < 0 */
  int sent;
} att;

static att g_att[NATT];
static atomic_int g_open, g_reconnects;

/* Opens attack connection i (from 127.0.0.(2 + i / PER_ADDR)). */
static void att_open(att *a, int i, double now) {
  char src[32];
  snprintf(src, sizeof src, "127.0.0.%d", 2 + i / PER_ADDR);
  a->fd = tcp_connect(src, 1000);
  a->tls = NULL;
  a->sent = 0;
  a->next = now + 1.0; /* retry later if it fails */
  if (a->fd < 0)
    return;
  if (a->kind == 0) {
    a->tls = tls_on(a->fd, 0);
    static const char line[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
    if (!a->tls || gnutls_record_send(a->tls, line, sizeof line - 1) !=
                       (ssize_t)(sizeof line - 1)) {
      if (a->tls)
        gnutls_deinit(a->tls);
      a->tls = NULL;
      close(a->fd);
      a->fd = -1;
      return;
    }
  } else {
    /* a TLS record header: handshake, 16 KiB to follow */
    static const unsigned char hdr[5] = {0x16, 0x03, 0x01, 0x40, 0x00};
    if (send(a->fd, hdr, 5, MSG_NOSIGNAL) != 5) {
      close(a->fd);
      a->fd = -1;
      return;
    }
  }
  atomic_fetch_add(&g_open, 1);
  a->next = now + TRICKLE_S;
}

static void att_close(att *a, double now) {
  if (a->tls)
    gnutls_deinit(a->tls);
  a->tls = NULL;
  if (a->fd >= 0) {
    close(a->fd);
    atomic_fetch_sub(&g_open, 1);
    atomic_fetch_add(&g_reconnects, 1);
  }
  a->fd = -1;
  a->next = now + 1.0;
}

/* The attacker thread: (re)opens connections (at most 100 per 50 ms tick),
 * trickles a byte or a header line into each every TRICKLE_S, and notices
 * the ones the server closed. */
static void *attacker(void *arg) {
  (void)arg;
  static struct pollfd pf[NATT];
  static int idx[NATT];
  for (int i = 0; i < NATT; i++) {
    g_att[i].fd = -1;
    g_att[i].kind = i % 5 == 4;
    g_att[i].next = 0;
  }
  while (!atomic_load(&g_stop)) {
    double now = mono();
    int opened = 0;
    for (int i = 0; i < NATT && !atomic_load(&g_stop); i++) {
      att *a = &g_att[i];
      if (a->fd < 0) {
        if (now >= a->next && opened < 100) {
          att_open(a, i, now);
          opened++;
          now = mono();
        }
        continue;
      }
      if (now < a->next)
        continue;
      ssize_t k;
      if (a->kind == 0) {
        char line[32];
        int n = snprintf(line, sizeof line, "X-Slow-%d: x\r\n", a->sent++);
        k = gnutls_record_send(a->tls, line, (size_t)n) == n ? 1 : -1;
      } else {
        k = send(a->fd, "\0", 1, MSG_NOSIGNAL);
      }
      if (k != 1)
        att_close(a, now);
      else
        a->next = now + TRICKLE_S;
    }
    /* which ones did the server close? */
    int n = 0;
    for (int i = 0; i < NATT; i++)
      if (g_att[i].fd >= 0) {
        pf[n].fd = g_att[i].fd;
        pf[n].events = POLLIN;
        pf[n].revents = 0;
        idx[n++] = i;
      }
    if (poll(pf, (nfds_t)n, 50) > 0) {
      now = mono();
      for (int j = 0; j < n; j++)
        if (pf[j].revents)
          att_close(&g_att[idx[j]], now);
    }
  }
  for (int i = 0; i < NATT; i++)
    att_close(&g_att[i], mono());
  return NULL;
}

/* ---- each deadline on its own (from 127.0.0.6, during the attack) ---- */

/* Seconds until the server ends fd (readable: EOF, an alert or a reset),
 * while trickle() sends a little every second; cap when it never does. */
static double until_closed(int fd, gnutls_session_t tls, int kind, double cap) {
  double t0 = mono(), next = t0 + 1.0;
  int k = 0;
  while (mono() - t0 < cap) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0)
      return mono() - t0;
    if (mono() < next)
      continue;
    next += 1.0;
    ssize_t w;
    if (kind == 0) { /* one byte of a TLS record */
      w = send(fd, "\0", 1, MSG_NOSIGNAL);
    } else { /* a header line, or 10 body bytes */
      char line[32];
      int n = kind == 1 ? snprintf(line, sizeof line, "X-T-%d: y\r\n", k++)
                        : snprintf(line, sizeof line, "0123456789");
      w = gnutls_record_send(tls, line, (size_t)n) == n ? 1 : -1;
    }
    if (w != 1)
      return mono() - t0;
  }
  return cap;
}

static double g_dl[3] = {-1, -1, -1}; /* handshake, head, body */

/* Measures the three deadlines one after the other. */
static void *deadlines(void *arg) {
  (void)arg;
  /* a handshake that never ends */
  int fd = tcp_connect("127.0.0.6", 2000);
  static const unsigned char hdr[5] = {0x16, 0x03, 0x01, 0x40, 0x00};
  if (fd >= 0 && send(fd, hdr, 5, MSG_NOSIGNAL) == 5)
    g_dl[0] = until_closed(fd, NULL, 0, 15);
  if (fd >= 0)
    close(fd);
  /* a request head that never ends */
  fd = tcp_connect("127.0.0.6", 2000);
  gnutls_session_t s = fd >= 0 ? tls_on(fd, 1) : NULL;
  static const char l1[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
  if (s && gnutls_record_send(s, l1, sizeof l1 - 1) == sizeof l1 - 1)
    g_dl[1] = until_closed(fd, s, 1, 15);
  if (s)
    gnutls_deinit(s);
  if (fd >= 0)
    close(fd);
  /* a body at 10 bytes/s (a public JSON route: no credential needed) */
  fd = tcp_connect("127.0.0.6", 2000);
  s = fd >= 0 ? tls_on(fd, 1) : NULL;
  static const char h[] =
      "POST /api/v1/auth/token HTTP/1.1\r\n"
      "Host: localhost\r\nContent-Type: application/json\r\n"
      "Content-Length: 4000\r\n\r\n";
  if (s && gnutls_record_send(s, h, sizeof h - 1) == sizeof h - 1)
    g_dl[2] = until_closed(fd, s, 2, 15);
  if (s)
    gnutls_deinit(s);
  if (fd >= 0)
    close(fd);
  return NULL;
}

/* ---- the well-behaved client ---- */

/* One probe: connect, handshake (verified), GET /healthz, read the status
 * line. Returns the latency in ms, or PROBE_TIMEOUT_MS on any failure. */
static double probe(void) {
  double t0 = mono();
  int fd = tcp_connect(NULL, PROBE_TIMEOUT_MS);
  if (fd < 0)
    return PROBE_TIMEOUT_MS;
  gnutls_session_t s = tls_on(fd, 1);
  double ms = PROBE_TIMEOUT_MS;
  if (s) {
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n";
    char buf[4096];
    ssize_t got = 0;
    if (gnutls_record_send(s, req, sizeof req - 1) == (ssize_t)sizeof req - 1)
      got = gnutls_record_recv(s, buf, sizeof buf - 1);
    if (got > 12) {
      buf[got] = 0;
      if (!strncmp(buf, "HTTP/1.1 200", 12))
        ms = (mono() - t0) * 1000.0;
    }
    gnutls_deinit(s);
  }
  close(fd);
  if (ms > PROBE_TIMEOUT_MS)
    ms = PROBE_TIMEOUT_MS;
  return ms;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s AISBXD\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < 4096) {
    rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  /* the loopback aliases: Linux routes all of 127/8 to lo */
  for (int i = 2; i <= 6; i++) {
    char src[32];
    snprintf(src, sizeof src, "127.0.0.%d", i);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    int ok = fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a);
    if (fd >= 0)
      close(fd);
    if (!ok) {
      fprintf(stderr, "SKIP: cannot bind %s\n", src);
      return 77;
    }
  }
  char dir[] = "/tmp/sbx_slow_XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  char cfg[300];
  snprintf(cfg, sizeof cfg, "%s/aisbxd.conf", dir);
  api_write_config_conn(cfg, NULL, 1); /* connection settings: the defaults */
  srv s;
  if (api_start(&s, dir, cfg)) {
    fprintf(stderr, "FAIL: aisbxd did not start\n");
    return 1;
  }
  g_port = s.port;
  snprintf(g_cacert, sizeof g_cacert, "%s", s.cacert);
  gnutls_global_init();
  gnutls_certificate_allocate_credentials(&g_cred);
  if (gnutls_certificate_set_x509_trust_file(g_cred, g_cacert,
                                             GNUTLS_X509_FMT_PEM) != 1) {
    fprintf(stderr, "FAIL: cannot load %s\n", g_cacert);
    api_stop(&s);
    return 1;
  }
  int fails = 0;
  /* the probe works at all before the attack */
  double ms0 = probe();
  if (ms0 >= PROBE_TIMEOUT_MS) {
    fprintf(stderr, "FAIL: probe before the attack failed\n");
    fails++;
  }
  pthread_t th;
  pthread_create(&th, NULL, attacker, NULL);
  double t0 = mono();
  while (mono() - t0 < WARMUP_S)
    usleep(100000);
  pthread_t thd;
  pthread_create(&thd, NULL, deadlines, NULL);
  int max_open = 0;
  static double lat[1024];
  int n = 0, failed = 0;
  double worst = 0;
  while (mono() - t0 < ATTACK_S && n < 1024) {
    double t = mono();
    lat[n] = probe();
    if (lat[n] >= PROBE_TIMEOUT_MS)
      failed++;
    if (lat[n] > worst)
      worst = lat[n];
    n++;
    int o = atomic_load(&g_open);
    if (o > max_open)
      max_open = o;
    double left = PROBE_EVERY_MS / 1000.0 - (mono() - t);
    if (left > 0)
      usleep((useconds_t)(left * 1e6));
  }
  pthread_join(thd, NULL);
  atomic_store(&g_stop, 1);
  pthread_join(th, NULL);
  qsort(lat, (size_t)n, sizeof lat[0], cmp_d);
  double p50 = n ? lat[n / 2] : 0;
  double p99 = n ? lat[(n * 99 + 99) / 100 - 1] : 0;
  printf("probes %d, failed %d, p50 %.1f ms, p99 %.1f ms, worst %.1f ms; "
         "attack connections open at most %d, reopened %d\n",
         n, failed, p50, p99, worst, max_open, atomic_load(&g_reconnects));
  printf("deadlines: handshake ended after %.1f s, head after %.1f s, "
         "body after %.1f s\n",
         g_dl[0], g_dl[1], g_dl[2]);
  /* defaults 5 s, 10 s (after the handshake), 1024 B/s after 5 s; the
   * reaper runs every 100 ms, the machine may be loaded */
  static const double lo[3] = {4.5, 9.5, 4.5}, hi[3] = {7.5, 12.5, 8.0};
  static const char *const what[3] = {"TLS handshake", "request head",
                                      "body rate"};
  for (int i = 0; i < 3; i++)
    if (g_dl[i] < lo[i] || g_dl[i] > hi[i]) {
      fprintf(stderr,
              "FAIL: %s deadline: connection ended after %.1f s, "
              "expected %.1f..%.1f\n",
              what[i], g_dl[i], lo[i], hi[i]);
      fails++;
    }
  if (n < 100) {
    fprintf(stderr, "FAIL: only %d probes\n", n);
    fails++;
  }
  if (max_open < 400) {
    fprintf(stderr, "FAIL: the attack never held 400 connections (%d)\n",
            max_open);
    fails++;
  }
  if (failed) {
    fprintf(stderr, "FAIL: %d probes got no answer within %d ms\n", failed,
            PROBE_TIMEOUT_MS);
    fails++;
  }
  if (p99 >= 200.0) {
    fprintf(stderr, "FAIL: p99 %.1f ms >= 200 ms\n", p99);
    fails++;
  }
  /* the server survived and still answers */
  if (probe() >= PROBE_TIMEOUT_MS) {
    fprintf(stderr, "FAIL: no answer after the attack\n");
    fails++;
  }
  int st = api_stop(&s);
  if (st != 0) {
    fprintf(stderr, "FAIL: aisbxd exit status %d\n", st);
    fails++;
  }
  gnutls_certificate_free_credentials(g_cred);
  gnutls_global_deinit();
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) {
  }
  printf(fails ? "FAILED\n" : "OK\n");
  return fails ? 1 : 0;
}
