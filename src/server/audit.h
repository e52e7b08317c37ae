/*
 * audit.h - the tenant's hash-chained audit log, from a request.
 */
#ifndef SBX_SERVER_AUDIT_H
#define SBX_SERVER_AUDIT_H

#include "req.h"

/* Appends (caller's tenant and user, now, action, target). A failure is
 * logged, never returned: the action itself has already happened. */
void sbx__audit(sbx__req *r, const char *action, const char *target);

#endif
