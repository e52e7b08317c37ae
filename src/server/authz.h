/*
 * authz.h - the one authorization decision. Every route's row (router.h)
 * says who may call it; sbx__authorize reads it and nothing else decides:
 * public routes, the operator's token, tenant credentials and their role
 * (tenant or project), API-key caps, CSRF for cookie sessions, login CSRF,
 * and the worker / job-token routes of the worker protocol.
 */
#ifndef SBX_SERVER_AUTHZ_H
#define SBX_SERVER_AUTHZ_H

#include "req.h"
#include "router.h"

/* Decides whether request r (authenticated by sbx__authenticate with
 * result auth_rc) may call route rt. Returns 0 with r->role set when it
 * may proceed; else sets a 401/403/404 problem and returns 1. */
int sbx__authorize(sbx__req *r, const sbx__route *rt, int auth_rc);
/* An API key's current role for project pid (NULL: tenant level): its own
 * role capped by its user's and its creator's current roles; 0 when
 * nothing. */
int sbx__authz_key_role(sbx__req *r, const char *pid);

#endif
