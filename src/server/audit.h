/*
 * audit.h - the tenant's hash-chained audit log, from a request.
 */
#ifndef SBX_SERVER_AUDIT_H
#define SBX_SERVER_AUDIT_H

#include "req.h"

/* Appends (caller's tenant and user, now, action, target). A failure is
 * logged, never returned: the action itself has already happened. */
void sbx__audit(sbx__req *r, const char *action, const char *target);
/* The same in tenant with actor (the worker protocol: its credentials
 * name no user and a worker token no tenant). */
void sbx__audit_as(sbx__req *r, const char *tenant, const char *actor,
                   const char *action, const char *target);

#endif
