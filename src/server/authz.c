/*
 * authz.c - the one authorization decision (authz.h). Reads the route's
 * row (permission, flags) and the authenticated caller; no pattern is
 * inspected and no handler authorizes on its own.
 */
#include "authz.h"

#include <stdio.h>
#include <string.h>

#include "authcache.h"
#include "dbx.h"
#include "incident.h"
#include "metrics.h"
#include "rbac.h"
#include "reply.h"
#include "reqlog.h"
#include "session.h"
#include "util.h"

static int deny(sbx__req *r, int status, const char *title,
                const char *detail) {
  if (status == 401)
    sbx__add_header(r, "WWW-Authenticate", "Bearer");
  sbx__reqlog_event(r, "warn",
                    status == 401 ? "auth.failed" : "permission.denied", NULL);
  sbx__problem(r, status, title, detail);
  return 1;
}

/* The user's current role for this request: the tenant role, else (with
 * pid) the membership role in pid; 0 for none and for a disabled or
 * unknown user. Cached (authcache.c). */
static int user_role(sbx__req *r, const char *user, const char *pid) {
  int trole = 0;
  if (r->who.user_checked && !strcmp(user, r->who.user))
    trole = r->who.user_trole; /* checked moments ago by authentication */
  else if (sbx__ac_user(r, r->who.tenant, user, &trole))
    return 0;
  if (trole || !pid)
    return trole;
  return sbx__ac_member(r, r->who.tenant, pid, user);
}

/* A project-scoped key has no tenant-level role; otherwise the key's role,
 * capped by the current role of its user and of the user who created it:
 * demoting, removing or disabling them demotes the key. */
int sbx__authz_key_role(sbx__req *r, const char *pid) {
  int role = pid || !r->who.key_project[0] ? r->who.key_role : 0;
  if (role)
    role = sbx__role_meet(role, user_role(r, r->who.user, pid));
  if (role && r->who.key_issuer[0] && strcmp(r->who.key_issuer, r->who.user))
    role = sbx__role_meet(role, user_role(r, r->who.key_issuer, pid));
  return role;
}

/* The worker protocol's scope: a worker token covers every WORKER route;
 * a job token only the JOB_TOKEN routes naming its own job (params[0]).
 * Returns 1 when the credential's scope covers the request. */
static int worker_scope_ok(const sbx__req *r, const sbx__route *rt) {
  if (r->who.kind == SBX__CRED_JOB_TOKEN)
    return (rt->flags & SBX__RF_JOB_TOKEN) && r->who.job[0] &&
           !strcmp(r->params[0], r->who.job);
  return r->who.kind == SBX__CRED_WORKER && (rt->flags & SBX__RF_WORKER);
}

int sbx__authorize(sbx__req *r, const sbx__route *rt, int auth_rc) {
  int f = rt->flags;
  if (f & SBX__RF_PUBLIC) {
    /* a login that sets a cookie: no cross-origin form may trigger it */
    if ((f & SBX__RF_LOGIN) && !sbx__origin_ok(r))
      return deny(r, 403, "Forbidden",
                  r->srv->p.public_origin
                      ? "cross-origin request refused"
                      : "cookie sessions are disabled until public_origin "
                        "is configured");
    return 0;
  }
  /* the operator's token opens OPERATOR routes and nothing else */
  if ((f & SBX__RF_OPERATOR) && sbx__metrics_token_ok(r))
    return 0;
  if (auth_rc)
    return deny(r, 401, "Unauthorized",
                auth_rc == SBX_EEXPIRED ? "credential expired or revoked"
                                        : "invalid credential");
  if (r->who.kind == SBX__CRED_NONE)
    return deny(r, 401, "Unauthorized", "credential required");
  /* worker and job routes take their own credential type, and those
   * credentials open nothing else */
  int want = f & SBX__RF_WORKER      ? SBX__CRED_WORKER
             : f & SBX__RF_JOB_TOKEN ? SBX__CRED_JOB_TOKEN
                                     : 0;
  int kind = r->who.kind;
  if (want || kind == SBX__CRED_WORKER || kind == SBX__CRED_JOB_TOKEN) {
    if (kind != want)
      return deny(r, 403, "Forbidden",
                  "this route takes another kind of credential");
    if (!worker_scope_ok(r, rt))
      return deny(r, 403, "Forbidden", "the token is not for this job");
    return 0;
  }
  /* tenant credentials: the role in the project, or in the tenant */
  const char *pid = f & SBX__RF_PROJECT ? r->params[0] : NULL;
  /* another tenant's project, or one outside the key's scope, does not
   * exist for this caller */
  if (pid &&
      (sbx__dbx_project_exists(sbx_store_meta(r->st), r->who.tenant, pid) ||
       (kind == SBX__CRED_APIKEY && r->who.key_project[0] &&
        strcmp(r->who.key_project, pid))))
    return deny(r, 404, "Not Found", NULL);
  int role = kind == SBX__CRED_APIKEY ? sbx__authz_key_role(r, pid)
                                      : user_role(r, r->who.user, pid);
  if (pid && !role) /* no role in this project: it does not exist */
    return deny(r, 404, "Not Found", NULL);
  /* "authenticated" routes need a valid caller, not a role; SELF routes
   * are open to the user they name, through an interactive credential
   * (an API key does not act on its user's account) */
  int self = (f & SBX__RF_SELF) && kind != SBX__CRED_APIKEY &&
             !strcmp(r->params[0], r->who.user);
  if (rt->perm != SBX__PERM_AUTHENTICATED && !self &&
      !(sbx__perm_roles(rt->perm) & role))
    return deny(r, 403, "Forbidden", "your role lacks this permission");
  r->role = role;
  /* credential changes: an interactive login, recently (step-up) */
  if (f & SBX__RF_STEPUP) {
    if (kind != SBX__CRED_SESSION && kind != SBX__CRED_JWT)
      return deny(r, 403, "Forbidden",
                  "step-up required: this route takes a browser session or "
                  "an access token from a password login, never an API key");
    if (r->who.auth_time <= 0 || sbx__now() - r->who.auth_time > SBX__STEPUP_S)
      return deny(r, 401, "Unauthorized",
                  "step-up required: re-authenticate with POST "
                  "/api/v1/auth/reauth (password, and TOTP when enrolled); "
                  "valid for 5 minutes");
  }
  /* a cookie is ambient: state-changing requests need the CSRF token */
  int mutating = strcmp(r->method, "GET") && strcmp(r->method, "HEAD");
  if (kind == SBX__CRED_SESSION && mutating && sbx__session_csrf_check(r))
    return 1;
  /* a frozen tenant (incident.c) reads, and changes nothing */
  if (mutating && !(f & SBX__RF_FREEZE_OK) && sbx__incident_locked(r))
    return deny(r, 423, "Locked",
                "the tenant is frozen (incident response): read-only");
  return 0;
}
