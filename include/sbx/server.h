/*
 * sbx/server.h - aisbxd, the API server (issue 6): TLS-only HTTP/1.1 on
 * libmicrohttpd, REST API v1 over the encrypted store (sbx/store.h),
 * identity (API keys, own EdDSA access tokens, refresh tokens, local
 * accounts) and role-based access control. Design: docs/api.md and
 * docs/security.md.
 *
 * All functions return 0 (SBX_OK) or a negative sbx_status and never exit.
 */
#ifndef SBX_SERVER_H
#define SBX_SERVER_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "sbx/status.h"

#define SBX_PATH_MAX 1024

/* Configuration. Strings point into storage owned by the caller (or, after
 * sbx_server_config_load, into a static arena kept for the process). */
typedef struct sbx_server_params {
  const char *data_dir;        /* required: SQLite, blobs, TLS + JWT keys */
  const char *listen;          /* "HOST:PORT", default "127.0.0.1:8443";
                                  port 0 picks a free port */
  const char *master_key_spec; /* "file:..", "env:..", "cmd:.."; NULL:
                                  file:<data_dir>/master.key (created) */
  const char *tls_cert_file;   /* NULL: <data_dir>/tls-cert.pem (generated) */
  const char *tls_key_file;    /* NULL: <data_dir>/tls-key.pem (generated) */
  const char *issuer;          /* JWT iss/aud, default "aisbxd" */
  int64_t max_json_bytes;      /* JSON request bodies, default 64 KiB */
  int64_t max_upload_bytes;    /* raw model/dataset uploads, default 256 MiB */
  /* storage quotas (0: no limit), defaults of tenants without their own
   * (PUT /api/v1/tenants/{t}/quota): bytes and objects per tenant, per
   * project, and bytes per object (default: max_upload_bytes) */
  int64_t quota_tenant_bytes, quota_tenant_objects;   /* 50 GiB, 100000 */
  int64_t quota_project_bytes, quota_project_objects; /* 10 GiB, 20000 */
  int64_t quota_object_bytes;
  int rate_ip_per_s, rate_ip_burst;   /* per client IP, default 200 / 400 */
  int rate_key_per_s, rate_key_burst; /* per credential, default 100 / 200 */
  int access_ttl_s;            /* access token lifetime, default 900 (cap) */
  int refresh_ttl_s;           /* refresh token lifetime, default 30 days */
  int login_max_failures;      /* lockout threshold, default 5 */
  int lockout_s;               /* lockout duration, default 900 */
  int blob_fsync;              /* 1 (default) */
  int threads;                 /* MHD worker threads (epoll each), default 2 */
  /* browser sessions (docs/security.md) */
  int session_ttl_s;           /* cookie session lifetime, default 8 h */
  const char *public_origin;   /* "https://host[:port]" for the Origin check;
                                  NULL: https://<Host header> */
  /* OIDC login against an external identity provider (NULL issuer: off) */
  const char *oidc_issuer;     /* exact "iss"; discovery under it */
  const char *oidc_client_id;
  const char *oidc_client_secret_spec; /* "env:NAME" or "file:PATH" */
  const char *oidc_redirect_uri; /* our .../api/v1/auth/oidc/callback */
  const char *oidc_scopes;     /* default "openid profile email" */
  const char *oidc_tenant;     /* tenant of OIDC users */
  const char *oidc_groups_claim; /* default "groups" */
  const char *oidc_role_map;   /* "group=role,group=role" */
  const char *oidc_ca_file;    /* CA bundle for the IdP (NULL: system) */
  const char *oidc_token_auth; /* client auth at the token endpoint:
                                  "basic" (default, RFC 6749 2.3.1 form-
                                  encoded) or "post" (in the form body) */
  int oidc_leeway_s;           /* clock leeway, default 60 */
  int oidc_jwks_min_refresh_s; /* min. seconds between JWKS refetches, 60 */
  /* GET /metrics: a file (mode 0600) holding the operator's bearer token;
   * NULL: nobody can read /metrics (tenant credentials never can) */
  const char *metrics_token_file;
  /* jobs (docs/jobs.md) */
  int job_lease_s; /* lease of a claimed shard, extended by heartbeats;
                      default 30 (1..3600) */
  /* slow clients (docs/security.md "Slow clients"): deadlines a client
   * cannot stretch by trickling bytes, and a fair connection budget */
  int conn_budget;             /* connections in all, default 1000 */
  int conn_per_ip_max;         /* per address (IPv6: per /64), default 256;
                                  below that each address gets a fair share
                                  once half the budget is in use */
  int tls_handshake_timeout_s; /* from accept, default 5 */
  int head_timeout_s;          /* whole request head, from the handshake or
                                  the previous response, default 10 */
  int body_min_rate;           /* request bytes/s after 5 s, default 1024 */
  int idle_timeout_s;          /* no progress at all (any phase), 30 */
  /* metadata in PostgreSQL (libpq conninfo; a password goes in PGPASSFILE,
   * not here); NULL: SQLite in data_dir. Replicas share it and data_dir */
  const char *pg_conninfo;
  /* audit chain anchoring (docs/security.md "Audit you can prove"): every
   * audit_anchor_interval_s (default 300; 0: off) each tenant's chain head
   * is logged ("audit-anchor" JSON line) and, when set, appended to
   * audit_anchor_file (put it on another volume); `aisbxd audit verify`
   * and GET /api/v1/audit-events/verify check the chain against it */
  const char *audit_anchor_file;
  int audit_anchor_interval_s;
  /* structured logs (one JSON object per line, docs/security.md): the
   * file they are appended to; NULL: stderr */
  const char *log_file;
  /* retention (docs/security.md "Privacy rights"): every
   * retention_purge_interval_s (default 3600; 0: off) each tenant's
   * expired jobs and audit rows are purged (audited, with counts); a
   * tenant's audit retention is never below audit_retention_min_s, the
   * legal minimum (default 365 days) */
  int retention_purge_interval_s;
  int64_t audit_retention_min_s;
  /* size-based rotation of log_file (besides SIGHUP reopen): when it
   * reaches log_max_bytes (0: never) it becomes log_file.1 (.1 -> .2 ...,
   * log_keep files kept, default 5) and a new log_file is started */
  int log_max_bytes;
  int log_keep;
  /* forwarding of audit rows and security events to a syslog receiver
   * (RFC 5424 over TLS, RFC 5425 framing; src/server/syslog.h):
   * syslog_url = tls://host:port (NULL: off), syslog_ca_file = the CA
   * that signed the receiver's certificate, syslog_queue_max = messages
   * kept while the receiver is down (default 10000; then the oldest is
   * dropped and counted) */
  const char *syslog_url;
  const char *syslog_ca_file;
  int syslog_queue_max;
  /* server confinement (docs/security.md "Server confinement"): started as
   * root, aisbxd drops to run_as_user (NULL: "aisbxd" when that user
   * exists, else "nobody"); confine "on" (NULL, the default) or "off"
   * (debugging only: no uid drop, no Landlock, no seccomp) */
  const char *run_as_user;
  const char *confine;
} sbx_server_params;

sbx_server_params sbx_server_default_params(void);

/* Reads "key = value" lines from path (NULL: none), then environment
 * overrides AISBXD_<KEY> (upper case). Unknown keys are an error
 * (SBX_EINVAL, message on stderr). Secrets are never values here: only
 * specs pointing at a file or an environment variable. */
int sbx_server_config_load(sbx_server_params *p, const char *path);

/* Reopens log_file (after logrotate moved it; aisbxd does it on SIGHUP):
 * lines go to the new file from the next one on, none is lost or split.
 * 0 also when no log_file is set; SBX_EIO when it cannot be opened (the
 * old file stays in use). */
struct sbx_server;
int sbx_server_log_reopen(struct sbx_server *s);

/* ---- audit you can prove (src/server/audit_ops.c) ---- */
struct sbx_store;
/* Opens the store of p->data_dir as the operator commands do (migrations
 * applied; the caller closes it with sbx_store_close). */
int sbx_server_store_open(const sbx_server_params *p, struct sbx_store **out);
/* The master key spec of p's data dir: master_key_spec, else the one
 * `aisbxd init --master-key-from` recorded, else file:DIR/master.key. */
int sbx_server_master_key_spec(const sbx_server_params *p, char *out,
                               size_t cap);
/* Offline verify: walks every tenant's chain (against the last anchor of
 * each tenant in anchor_file, NULL: p->audit_anchor_file, none: no anchor)
 * and writes one JSON object per tenant to out. 0 all intact, SBX_ECRYPTO
 * when a chain is broken (the line says the first broken seq and why). */
int sbx_server_audit_verify(const sbx_server_params *p, const char *anchor_file,
                            FILE *out);
/* Appends every tenant's chain head to anchor_file (NULL:
 * p->audit_anchor_file; both NULL: SBX_EINVAL) and echoes the lines to
 * out (may be NULL). */
int sbx_server_audit_anchor(const sbx_server_params *p, const char *anchor_file,
                            FILE *out);
/* Writes the audit rows with since <= ts < until (until 0: no bound) of
 * tenant (NULL: all) as JSON lines to out. */
int sbx_server_audit_export(const sbx_server_params *p, const char *tenant,
                            int64_t since, int64_t until, FILE *out);

typedef struct sbx_server sbx_server;

/* Opens the store, makes sure the TLS certificate (self-signed ECDSA P-256,
 * SANs localhost/127.0.0.1/::1) and the JWT signing key exist, and starts
 * listening. The SHA-256 fingerprint of the certificate is written to
 * fp_out (95 bytes "AB:CD:..", may be NULL). *out NULL on error. */
int sbx_server_start(const sbx_server_params *p, sbx_server **out,
                     char fp_out[96]);
/* The bound TCP port. */
uint16_t sbx_server_port(const sbx_server *s);
/* Stops accepting, waits for requests in flight, closes the store. NULL is
 * a no-op. */
void sbx_server_stop(sbx_server *s);

/* `aisbxd init --master-key-from SPEC`: where the master key lives.
 *   pkcs11:URI       an AES-256 key generated inside the token if the URI's
 *                    object label does not exist yet (sbx_kek_open);
 *   file:PATH        a key file, created if missing (should be outside
 *                    the data dir: a warning otherwise);
 *   credential:NAME  a systemd credential ($CREDENTIALS_DIRECTORY/NAME).
 * Checks the key opens and records SPEC (without any pin-value) in
 * DATA_DIR/master-key.spec, which later starts and inits use when
 * master_key_spec is not configured. Call before the first
 * sbx_server_init_tenant of a data dir. */
int sbx_server_init_master_key(const sbx_server_params *p, const char *spec);

/* `aisbxd init`: creates tenant tenant_id (with an admin user, tenant role
 * admin), an Admin API key and a one-time bootstrap token. api_key_out
 * (>= 160 bytes) and bootstrap_out (>= 160 bytes) receive the secrets; they
 * are stored only as keyed hashes. SBX_EEXIST when the tenant exists. */
int sbx_server_init_tenant(const sbx_server_params *p, const char *tenant_id,
                           const char *name, char *api_key_out,
                           char *bootstrap_out);

/* ---- operator commands on the data dir (aisbxd worker-token, job-limits)
 * ---- */
struct sbx_worker_token;
struct sbx_job_limit_set;
/* `aisbxd worker-token create`: a worker token "wt_<id>.<secret>" into
 * token_out (>= 160 bytes; shown once, stored as a keyed hash), its id
 * into id_out (>= 64 bytes). name may be NULL. */
int sbx_server_worker_token_create(const sbx_server_params *p, const char *name,
                                   char *token_out, char *id_out);
/* Lists the worker tokens (never the secrets) in creation order. */
int sbx_server_worker_token_list(const sbx_server_params *p,
                                 int (*fn)(void *ctx,
                                           const struct sbx_worker_token *t),
                                 void *ctx);
/* SBX_ENOTFOUND when unknown or already revoked. */
int sbx_server_worker_token_revoke(const sbx_server_params *p, const char *id);
/* `aisbxd job-limits set`: the deployment's defaults and caps (the "_sys"
 * row; tenant NULL) or one tenant's. */
int sbx_server_job_limits_set(const sbx_server_params *p, const char *tenant,
                              const struct sbx_job_limit_set *l);

/* ---- local workers (aisbxd --workers N) ----
 * N aisbx-worker processes on this host, on loopback TLS with the worker
 * protocol: a worker token created for the run (0600 file
 * <data_dir>/local-worker.token; revoked and deleted at stop), the
 * server's certificate as CA. Dead workers are restarted with backoff. */
typedef struct sbx_local_workers sbx_local_workers;
/* Step 1, BEFORE sbx_server_start, while the caller is single-threaded:
 * finds the worker binary (worker_bin NULL: aisbx-worker next to this
 * executable or in the build tree) and forks the launcher, a process with
 * the caller's credentials that holds nothing of the server (it is forked
 * before any key, database or socket is opened) and that alone starts
 * workers, so the confined server never needs fork or execve. n <= 0:
 * nothing, *out NULL, 0. SBX_ENOTFOUND when the binary is missing
 * (logged). */
int sbx_local_workers_fork(int n, const char *worker_bin,
                           sbx_local_workers **out);
/* Step 2, after sbx_server_start: creates the run's worker token and sends
 * the launcher its only order (URL, CA, token file). w NULL: 0. On error
 * the token is revoked; still call sbx_local_workers_stop. */
int sbx_local_workers_start(sbx_server *s, sbx_local_workers *w);
/* Closes the launcher's pipe: it sends SIGTERM, SIGKILL after 5 s, and
 * exits; waits for it; token revoked; frees w. NULL is a no-op. Call
 * before sbx_server_stop. */
void sbx_local_workers_stop(sbx_local_workers *w);
/* The default N: the number of online CPUs. */
int sbx_local_workers_default(void);

/* ---- the route table (exported for tests and the OpenAPI generator) ---*/
typedef struct sbx_route_info {
  const char *method;     /* "GET", "POST", ... */
  const char *pattern;    /* "/api/v1/projects/{project}/models" */
  const char *permission; /* "model:read"; "public" for unauthenticated */
  const char *summary;
  const char *no_audit; /* NULL, or why this mutating route appends no
                           audit row */
} sbx_route_info;

/* Number of routes; sbx_server_route(i) for i in [0, n). */
size_t sbx_server_route_count(void);
sbx_route_info sbx_server_route(size_t i);
/* 1 when role ("viewer", "developer", "analyst", "admin") holds
 * permission. */
int sbx_server_role_allows(const char *role, const char *permission);
/* The OpenAPI 3.1 document generated from the route table (malloc'd JSON,
 * caller frees; NULL when out of memory). */
char *sbx_server_openapi(void);

#endif
