/*
 * audit_ops.h - audit you can prove: the verify route, the periodic anchor
 * of every tenant's chain head (log stream + optional file), and the
 * operator commands behind `aisbxd audit verify|anchor|export`
 * (sbx/server.h).
 */
#ifndef SBX_SERVER_AUDIT_OPS_H
#define SBX_SERVER_AUDIT_OPS_H

#include "req.h"
#include "state.h"

/* GET /api/v1/audit-events/verify: walks the caller's tenant chain against
 * its last anchor (audit_anchor_file) and answers where it first breaks. */
int sbx__h_audit_verify(sbx__req *r);

/* Prepares the periodic anchor of s (no-op when audit_anchor_interval_s is
 * 0): opens its own store handle; sbx__anchor_run then starts its thread
 * (split so that the server confines itself in between: confine.h).
 * Return 0 or a negative error. */
int sbx__anchor_start(sbx_server *s);
int sbx__anchor_run(sbx_server *s);
/* Writes a last anchor and joins the thread; safe when never started. */
void sbx__anchor_stop(sbx_server *s);

#endif
