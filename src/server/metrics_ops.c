/*
 * metrics_ops.c - the operations metrics (metrics_ops.h). Scrape-time
 * queries (process-wide, all tenants: /metrics is the operator's only):
 *
 *   aisbxd_login_failures_total                counter, refused password
 *                                              logins (this process)
 *   aisbxd_security_events_total{event}        counter, from the audit
 *                                              chains: lockout, refresh_reuse
 *                                              (all tenants: /metrics names
 *                                              no tenant; the audit chain
 *                                              and logs say which)
 *   aisbxd_sandbox_violations_total            counter, job shards killed
 *                                              by the sandbox (forbidden
 *                                              system call)
 *   aisbxd_jobs_queued                         gauge
 *   aisbxd_job_queue_oldest_age_seconds        gauge, 0 when none queued
 *   aisbxd_job_shards_running                  gauge
 *   aisbxd_job_shards_lease_expired            gauge, running shards whose
 *                                              worker stopped heartbeating
 *   aisbxd_job_heartbeat_oldest_age_seconds    gauge, the stalest running
 *                                              shard's last sign of life
 *   aisbxd_tls_cert_expiry_timestamp_seconds   gauge, notAfter of the cert
 *   aisbxd_tls_cert_age_seconds                gauge, now - notBefore
 *   aisbxd_jwt_signing_key_age_seconds         gauge, age of the key file
 */
#include "metrics_ops.h"

#include "syslog.h"

#include <gnutls/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "sbx/sql.h"
#include "util.h"

void sbx__metrics_login_failed(sbx_server *s) {
  atomic_fetch_add_explicit(&s->metrics.login_failed, 1, memory_order_relaxed);
}

/* "# HELP name help\n# TYPE name type\n". */
static void head(sbx__buf *b, const char *name, const char *type,
                 const char *help) {
  sbx__buf_str(b, "# HELP ");
  sbx__buf_str(b, name);
  sbx__buf_str(b, " ");
  sbx__buf_str(b, help);
  sbx__buf_str(b, "\n# TYPE ");
  sbx__buf_str(b, name);
  sbx__buf_str(b, " ");
  sbx__buf_str(b, type);
  sbx__buf_str(b, "\n");
}

/* A whole unlabelled metric: HELP, TYPE and the sample. */
static void metric(sbx__buf *b, const char *name, const char *type,
                   const char *help, int64_t v) {
  head(b, name, type, help);
  sbx__buf_str(b, name);
  sbx__buf_str(b, " ");
  sbx__buf_int(b, v);
  sbx__buf_str(b, "\n");
}

/* Row callback: the first columns as integers into an int64_t[4]. */
static int row_ints(void *ctx, const sbx_sql_row *r) {
  int64_t *out = ctx;
  for (int i = 0; i < 4; i++)
    out[i] = sbx_sql_col_null(r, i) ? 0 : sbx_sql_col_int(r, i);
  return 1;
}

typedef struct sec_ctx {
  sbx__buf *b;
} sec_ctx;

/* Row callback of the security events: action (one of the two constants
 * of the query: no label escaping needed), count. */
static int row_sec(void *ctx, const sbx_sql_row *r) {
  sec_ctx *c = ctx;
  char action[64];
  if (sbx_sql_col_text(r, 0, action, sizeof action))
    return 0;
  sbx__buf_str(c->b, "aisbxd_security_events_total{event=\"");
  sbx__buf_str(c->b, strncmp(action, "auth.", 5) ? action : action + 5);
  sbx__buf_str(c->b, "\"} ");
  sbx__buf_int(c->b, sbx_sql_col_int(r, 1));
  sbx__buf_str(c->b, "\n");
  return 0;
}

/* The TLS certificate's notBefore / notAfter (0 when unreadable). */
static void cert_times(const char *pem, int64_t *nb, int64_t *na) {
  *nb = *na = 0;
  gnutls_x509_crt_t c;
  if (!pem || gnutls_x509_crt_init(&c) < 0)
    return;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  if (gnutls_x509_crt_import(c, &d, GNUTLS_X509_FMT_PEM) >= 0) {
    *nb = (int64_t)gnutls_x509_crt_get_activation_time(c);
    *na = (int64_t)gnutls_x509_crt_get_expiration_time(c);
  }
  gnutls_x509_crt_deinit(c);
}

void sbx__metrics_ops(sbx__req *r, sbx__buf *b) {
  sbx_meta *m = sbx_store_meta(r->st);
  int64_t now = sbx__now();
  metric(b, "aisbxd_login_failures_total", "counter",
         "Refused password logins (this process).",
         (int64_t)atomic_load_explicit(&r->srv->metrics.login_failed,
                                       memory_order_relaxed));
  head(b, "aisbxd_security_events_total", "counter",
       "Security events in the audit chains (all tenants), by event.");
  sec_ctx sc = {b};
  int rc = sbx_sql_exec(m,
                        "SELECT action, COUNT(*) FROM audit_events WHERE "
                        "action IN ('auth.lockout', 'auth.refresh_reuse') "
                        "GROUP BY action ORDER BY action",
                        NULL, 0, row_sec, &sc, NULL);
  if (rc)
    sbx__log("metrics: security events: %s", sbx_strerror(rc));
  int64_t v[4] = {0, 0, 0, 0};
  rc = sbx_sql_exec(m, "SELECT COUNT(*) FROM job_shards WHERE violation = 1",
                    NULL, 0, row_ints, v, NULL);
  if (!rc)
    metric(b, "aisbxd_sandbox_violations_total", "counter",
           "Job shards killed by the sandbox (forbidden system call).", v[0]);
  memset(v, 0, sizeof v);
  rc = sbx_sql_exec(m,
                    "SELECT COUNT(*), MIN(created_at) FROM jobs WHERE state "
                    "= 0",
                    NULL, 0, row_ints, v, NULL);
  if (!rc) {
    metric(b, "aisbxd_jobs_queued", "gauge", "Jobs waiting for a worker.",
           v[0]);
    metric(b, "aisbxd_job_queue_oldest_age_seconds", "gauge",
           "Age of the oldest queued job (0: none queued).",
           v[0] && v[1] ? now - v[1] : 0);
  }
  memset(v, 0, sizeof v);
  sbx_sql_val nv[] = {SBX_SQL_I(now)};
  rc = sbx_sql_exec(m,
                    "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN "
                    "lease_expires < $1 THEN 1 ELSE 0 END), 0) AS BIGINT), "
                    "MIN(CASE WHEN progress_at > "
                    "started_at THEN progress_at ELSE started_at END) FROM "
                    "job_shards WHERE state = 1",
                    nv, 1, row_ints, v, NULL);
  if (!rc) {
    metric(b, "aisbxd_job_shards_running", "gauge",
           "Job shards claimed by a worker.", v[0]);
    metric(b, "aisbxd_job_shards_lease_expired", "gauge",
           "Running shards whose lease expired (worker stopped "
           "heartbeating).",
           v[1]);
    metric(b, "aisbxd_job_heartbeat_oldest_age_seconds", "gauge",
           "Time since the stalest running shard's last heartbeat (0: none "
           "running).",
           v[0] && v[2] ? now - v[2] : 0);
  }
  if (rc)
    sbx__log("metrics: jobs: %s", sbx_strerror(rc));
  int64_t nb, na;
  cert_times(r->srv->tls_cert_pem, &nb, &na);
  metric(b, "aisbxd_tls_cert_expiry_timestamp_seconds", "gauge",
         "notAfter of the server's TLS certificate (unix time).", na);
  metric(b, "aisbxd_tls_cert_age_seconds", "gauge",
         "Time since notBefore of the server's TLS certificate.",
         nb ? now - nb : 0);
  int64_t sent, dropped, connected;
  sbx__syslog_counts(r->srv, &sent, &dropped, &connected);
  metric(b, "aisbxd_syslog_sent_total", "counter",
         "Messages delivered to the syslog receiver.", sent);
  metric(b, "aisbxd_syslog_dropped_total", "counter",
         "Messages dropped: the syslog queue was full (receiver down).",
         dropped);
  metric(b, "aisbxd_syslog_connected", "gauge",
         "1 while connected to the syslog receiver.", connected);
  char path[SBX_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/jwt-ed25519.sealed", r->srv->data_dir);
  struct stat st;
  metric(b, "aisbxd_jwt_signing_key_age_seconds", "gauge",
         "Age of the JWT signing key file.",
         stat(path, &st) ? 0 : now - (int64_t)st.st_mtime);
}
