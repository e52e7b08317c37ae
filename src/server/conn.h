/*
 * conn.h - the connection guard (issue 12 item 1): deadlines that a slow
 * client cannot stretch by trickling bytes, and a global connection budget
 * shared fairly between client addresses.
 *
 * libmicrohttpd's own connection timeout restarts on every byte, so a
 * client sending one header line every few seconds holds a connection
 * forever. The guard keeps its own record of every connection (opened in
 * MHD's notify-connection callback, closed in it too) and a reaper thread
 * ends, with shutdown(2) on the socket, every connection that
 *   - has not finished its TLS handshake tls_handshake_timeout_s after
 *     accept,
 *   - has not sent a complete request head head_timeout_s after accept or
 *     after the previous response on the connection (keep-alive),
 *   - sends its request body slower than body_min_rate bytes/s (averaged
 *     over the body so far, after a grace of body_grace_s).
 * The accept policy refuses a new connection when the budget is spent, or
 * when its address (IPv4, or the /64 of IPv6) already holds its fair share
 * of the budget: budget / (active addresses + 1) once half of the budget is
 * in use, and never more than per_ip_max. The "+ 1" keeps room for an
 * address not seen yet.
 *
 * Thread-safety: every function may be called from any MHD thread; one
 * mutex guards the records.
 */
#ifndef SBX_SERVER_CONN_H
#define SBX_SERVER_CONN_H

#include <microhttpd.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct sbx__connguard sbx__connguard;

typedef struct sbx__connguard_params {
  int budget;                  /* connections in all, > 0 */
  int per_ip_max;              /* hard cap per address, > 0 */
  int tls_handshake_timeout_s; /* 0: off */
  int head_timeout_s;          /* 0: off */
  int body_min_rate;           /* bytes/s, 0: off */
  int body_grace_s;            /* seconds before the rate counts */
} sbx__connguard_params;

/* Counters for /metrics and tests. */
typedef struct sbx__connguard_stats {
  uint64_t refused_budget, refused_share;              /* accept policy */
  uint64_t killed_handshake, killed_head, killed_body; /* reaper */
  int open, addresses;
} sbx__connguard_stats;

/* Creates the guard and starts its reaper thread. NULL when out of memory
 * or the thread cannot start. */
sbx__connguard *sbx__connguard_new(const sbx__connguard_params *p);
/* Stops the reaper and frees the guard. Call after MHD_stop_daemon (no
 * callback may run any more). NULL is a no-op. */
void sbx__connguard_free(sbx__connguard *g);

/* MHD_OPTION_APPLY_POLICY_CALLBACK: MHD_YES to accept addr. */
enum MHD_Result sbx__connguard_accept(void *cls, const struct sockaddr *addr,
                                      socklen_t addrlen);
/* MHD_OPTION_NOTIFY_CONNECTION: records (STARTED) and forgets (CLOSED) a
 * connection; *socket_context holds the record. */
void sbx__connguard_notify(void *cls, struct MHD_Connection *c,
                           void **socket_context,
                           enum MHD_ConnectionNotificationCode toe);

/* From the access handler. head_done: its first call for a request (the
 * head is complete; a body may follow). body: n more body bytes arrived.
 * responding: the answer is queued (no client deadline until it is sent).
 * request_done: the request ended (MHD_OPTION_NOTIFY_COMPLETED), the head
 * deadline of the next request on the connection starts now. */
void sbx__connguard_head_done(sbx__connguard *g, struct MHD_Connection *c);
void sbx__connguard_body(sbx__connguard *g, struct MHD_Connection *c, size_t n);
void sbx__connguard_responding(sbx__connguard *g, struct MHD_Connection *c);
void sbx__connguard_request_done(sbx__connguard *g, struct MHD_Connection *c);

/* A snapshot of the counters. */
void sbx__connguard_stats_get(sbx__connguard *g, sbx__connguard_stats *out);

#endif
