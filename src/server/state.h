/*
 * state.h - struct sbx_server: the state of one running aisbxd (config,
 * store handle pool, rate limiter, JWT key, OIDC and auth-cache handles,
 * metrics counters, the route table in use). Types only; server.c owns
 * its lifetime (sbx_server_start .. sbx_server_stop).
 */
#ifndef SBX_SERVER_STATE_H
#define SBX_SERVER_STATE_H

#include <gnutls/abstract.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"
#include "sbx/server.h"
#include "sbx/store.h"

/* ---- store handle pool (one handle per request in flight) ---- */
#define SBX__POOL_MAX 32
#define SBX__JWT_OLD 8 /* retired JWT keys still verifying */
typedef struct sbx__pool {
  pthread_mutex_t mu;
  sbx_store *h[SBX__POOL_MAX];
  int busy[SBX__POOL_MAX];
  int n;
  /* key rotation (incident.c): while draining, takers wait on cv instead
   * of getting another handle; the rotation owns every handle */
  pthread_cond_t cv;
  int draining;
} sbx__pool;

/* ---- metrics (metrics.c): lock-free process-wide counters ---- */
#define SBX__METRICS_ROUTES 128 /* >= the route table (checked at start) */
#define SBX__METRICS_BUCKETS 14
typedef struct sbx__metrics {
  _Atomic uint64_t requests[SBX__METRICS_ROUTES + 1][5]; /* + unmatched */
  _Atomic uint64_t hist[SBX__METRICS_BUCKETS + 1];       /* + overflow */
  _Atomic uint64_t sum_us;
  _Atomic int64_t in_flight;
  _Atomic uint64_t auth_fail[3];    /* invalid, expired, missing */
  _Atomic uint64_t rate_limited[2]; /* ip, credential */
  _Atomic uint64_t login_failed;    /* refused password logins */
  uint8_t token_hash[32];           /* SHA-256 of the operator token */
  int token_set;
} sbx__metrics;

/* ---- parked connections (park.c): long-polls and event streams ---- */
struct MHD_Connection;
typedef struct sbx__parkq {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct MHD_Connection **conn; /* suspended, resumed by the pump */
  size_t n, cap;
  int stopping; /* no more parking: the server is shutting down */
  int kicked;   /* resume now (a job was created in this process) */
  int started;
  pthread_t thread;
} sbx__parkq;

struct sbx__route;     /* router.h */
struct sbx__oidc;      /* oidc.h */
struct sbx__authcache; /* authcache.h */
struct sbx__connguard; /* conn.h */
struct sbx__anchor;    /* audit_ops.h */
struct sbx__purge;     /* privacy.h */
struct sbx__reqlog;    /* reqlog.h */
struct sbx__syslog;    /* syslog.h */

struct sbx_server {
  sbx_server_params p;
  char data_dir[SBX_PATH_MAX];
  char master_spec[SBX_PATH_MAX + 8];
  char issuer[128];
  struct MHD_Daemon *d;
  uint16_t port;
  char *tls_cert_pem, *tls_key_pem;
  sbx_kek *kek; /* the master key, for the sealed TLS and JWT keys */
  sbx__pool pool;
  sbx__ratelimit rl;
  /* JWT signing key (Ed25519): the current one, and the public halves of
   * retired ones still verifying tokens issued before a rotation (until
   * retired_at + the access-token lifetime). jwt_mu: read-locked to sign,
   * verify and publish; write-locked by a rotation (incident.c). */
  pthread_rwlock_t jwt_mu;
  gnutls_privkey_t jwt_priv;
  gnutls_pubkey_t jwt_pub;
  char jwt_kid[32];
  char jwt_x[64]; /* base64url public key */
  struct {
    gnutls_pubkey_t pub; /* NULL: free slot */
    char kid[32], x[64];
    int64_t retired_at;
  } jwt_old[SBX__JWT_OLD];
  pthread_mutex_t rot_mu;    /* one key rotation at a time */
  struct sbx__oidc *oidc;    /* NULL when OIDC is not configured */
  struct sbx__authcache *ac; /* NULL: no caching */
  struct sbx__connguard *cg; /* slow-client guard (http.c owns it) */
  sbx__metrics metrics;
  const struct sbx__route *routes; /* the table in use (table.c) */
  sbx__parkq park;
  _Atomic int sse_streams; /* open GET .../events streams */
  size_t nroutes;
  struct sbx__anchor *anchor; /* periodic audit anchor, NULL: off */
  struct sbx__purge *purge;   /* periodic retention purge, NULL: off */
  struct sbx__reqlog *reqlog; /* structured logs (reqlog.c) */
  struct sbx__syslog *syslog; /* RFC 5424 forwarding (syslog.c), NULL: off */
  struct {                    /* confine.c */
    int entered, low_port, landlock_abi, landlock_rules;
    unsigned uid;
    char user[64];
  } confine;
};

#endif
