/*
 * metrics_ops.h - the operations metrics of GET /metrics (appended by
 * metrics.c): security events, the job queue and workers, certificate and
 * signing-key ages. What deploy/prometheus/alerts.yml alerts on.
 */
#ifndef SBX_SERVER_METRICS_OPS_H
#define SBX_SERVER_METRICS_OPS_H

#include "buf.h"
#include "req.h"
#include "state.h"

/* Counts one refused password login (wrong password, unknown user,
 * disabled user, wrong TOTP code). Lock-free. */
void sbx__metrics_login_failed(sbx_server *s);
/* Appends the operations metrics to b (Prometheus text 0.0.4), read from
 * the request's store handle at scrape time; a failed query leaves its
 * metric out (logged). */
void sbx__metrics_ops(sbx__req *r, sbx__buf *b);

#endif
