/*
 * session.h - browser sessions (cookie "__Host-sbx_session") and the CSRF
 * checks that a cookie, being ambient, needs. Design in session.c.
 */
#ifndef SBX_SERVER_SESSION_H
#define SBX_SERVER_SESSION_H

#include <stddef.h>

#include "req.h"

/* Fills r->who (SBX__CRED_SESSION) when the request carries a valid
 * session cookie; SBX_OK with kind NONE when it carries none or when
 * public_origin is not configured (cookie sessions off); SBX_EAUTH /
 * SBX_EEXPIRED for a bad one. */
int sbx__session_authenticate(sbx__req *r);
/* For state-changing requests authenticated by the cookie: Origin and the
 * X-CSRF-Token header. Returns 0 when allowed, else sets a 403 and
 * returns 1. Called by sbx__authorize only. */
int sbx__session_csrf_check(sbx__req *r);
/* A new session for (tenant, user): deletes the one the request carried
 * (rotation), adds the Set-Cookie header, writes the CSRF token (65).
 * SBX_EPERM when public_origin is not configured (sessions are off). */
int sbx__session_issue(sbx__req *r, const char *tenant, const char *user,
                       char csrf_out[65]);
/* Step-up: records now as the last interactive authentication of the
 * session the request carries (srv_sessions.auth_at). SBX_EAUTH when the
 * request has no session. */
int sbx__session_stamp(sbx__req *r, int64_t now);
/* GET / DELETE /api/v1/auth/session. */
int sbx__session_h_get(sbx__req *r);
int sbx__session_h_delete(sbx__req *r);
/* Value of cookie name in the request (NULL when absent or too long for
 * out); out >= cap. */
const char *sbx__cookie(sbx__req *r, const char *name, char *out, size_t cap);
/* Origin check for cookie-setting logins: 1 when absent or equal to the
 * configured public_origin (never derived from Host; 0 when unset). */
int sbx__origin_ok(sbx__req *r);

#endif
