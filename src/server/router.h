/*
 * router.h - the route table's type and the matcher. A route declares
 * everything about itself in one row (redis command-table style): method,
 * pattern, permission, flags, body kind, handler, documentation. The table
 * itself is table.c; authorization reads the row (authz.c), the OpenAPI
 * generator prints it (openapi.c), neither special-cases a pattern.
 */
#ifndef SBX_SERVER_ROUTER_H
#define SBX_SERVER_ROUTER_H

#include <stddef.h>

#include "rbac.h"
#include "req.h"

typedef int (*sbx__handler)(sbx__req *r);

/* Body kinds: none (any body is refused with 413), a JSON object (capped
 * at max_json_bytes), raw bytes streamed into the store (max_upload). */
enum { SBX__BODY_NONE = 0, SBX__BODY_JSON = 1, SBX__BODY_UPLOAD = 2 };

/* Route flags: who may call it. Exactly one of PUBLIC, OPERATOR, WORKER,
 * JOB_TOKEN or none of them (a tenant credential: API key, access token,
 * session cookie, checked against the permission). */
enum {
  SBX__RF_PUBLIC = 1 << 0,    /* no credential at all */
  SBX__RF_OPERATOR = 1 << 1,  /* the operator's token (metrics_token_file) */
  SBX__RF_PROJECT = 1 << 2,   /* params[0] is a project: the caller's role
                                 is the one in it; unknown = 404 */
  SBX__RF_WORKER = 1 << 3,    /* a worker token only (worker protocol) */
  SBX__RF_JOB_TOKEN = 1 << 4, /* a job-scoped token only (worker protocol) */
  SBX__RF_BODY_OPTIONAL = 1 << 5, /* the JSON body may be absent */
  SBX__RF_LOGIN = 1 << 6,     /* sets a session cookie: a cross-origin request
                                is refused (login CSRF) */
  SBX__RF_FREEZE_OK = 1 << 7, /* mutating, yet open while the tenant is
                                 frozen (incident tools, logout, key
                                 revocation); other mutations answer 423 */
  SBX__RF_STEPUP = 1 << 8,    /* credential changes: a session or an access
                                 token whose interactive authentication is at
                                 most SBX__STEPUP_S old; never an API key */
  SBX__RF_SELF = 1 << 9       /* params[0] naming the caller's own user opens
                                 the route whatever the permission (a session
                                 or access token, not an API key) */
};
/* Step-up window: seconds since the last password (+TOTP) login or
 * POST /api/v1/auth/reauth. */
#define SBX__STEPUP_S 300

typedef struct sbx__route {
  const char *method;
  const char *pattern; /* {name} matches one id segment, or its start up
                          to a literal suffix ("{i}.png") */
  sbx__perm perm;      /* SBX__PERM_NONE with PUBLIC/OPERATOR/WORKER/... */
  int flags;           /* SBX__RF_* */
  int body;            /* SBX__BODY_* */
  sbx__handler fn;
  const char *summary;
  int ok_status; /* documented success status */
} sbx__route;

/* Body cap of UPLOAD routes flagged JOB_TOKEN (a worker's result files;
 * the handler caps each file name lower); other uploads take
 * max_upload_bytes, JSON bodies max_json_bytes. */
#define SBX__RESULT_UPLOAD_MAX ((long long)1 << 30)

/* Matches method + path against the n routes of tab; returns the index
 * and fills r->params, or -1 (*path_known = 1 when the path matched with
 * another method: 405). */
int sbx__route_match(const sbx__route *tab, size_t n, sbx__req *r,
                     const char *method, const char *path, int *path_known);
/* The permission as documented: "public" for PUBLIC routes, else the
 * permission's name. Static. */
const char *sbx__route_perm_name(const sbx__route *rt);

#endif
