/*
 * metrics.h - GET /metrics (Prometheus text format) over lock-free
 * counters kept in struct sbx_server (state.h). Design in metrics.c.
 */
#ifndef SBX_SERVER_METRICS_H
#define SBX_SERVER_METRICS_H

#include "req.h"

/* Reads metrics_token_file (no-op when unset); a refused file is logged. */
int sbx__metrics_init(sbx_server *s);
/* 1 when the request carries "Authorization: Bearer <operator token>". */
int sbx__metrics_token_ok(sbx__req *r);
/* Counts one answered request: route (-1 = none matched), status, time. */
void sbx__metrics_request(sbx_server *s, int route, int status, double seconds);
/* GET /metrics (route flag OPERATOR: authorized by sbx__authorize). */
int sbx__metrics_h(sbx__req *r);

#endif
