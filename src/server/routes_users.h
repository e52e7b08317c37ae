/*
 * routes_users.h - handlers: step-up re-authentication, password change,
 * and the user and membership lifecycle (role change, disable, delete,
 * member removal, revocation of a user's sessions, TOTP reset). Each
 * answers through reply.h and returns 0; authorization is done before
 * (authz.c) from the route's row in table.c.
 */
#ifndef SBX_SERVER_ROUTES_USERS_H
#define SBX_SERVER_ROUTES_USERS_H

#include "req.h"

/* POST /api/v1/auth/reauth {password, totp?}: a session is stamped; an
 * access token is answered with a fresh one carrying auth_time = now. */
int sbx__h_reauth(sbx__req *r);
/* POST /api/v1/auth/passphrase {current_password, new_password} (step-up) */
int sbx__h_password_change(sbx__req *r);
/* PATCH /api/v1/users/{user} {role?, disabled?} */
int sbx__h_user_patch(sbx__req *r);
/* DELETE /api/v1/users/{user} */
int sbx__h_user_delete(sbx__req *r);
/* DELETE /api/v1/users/{user}/totp (an Admin's reset) */
int sbx__h_user_totp_reset(sbx__req *r);
/* POST /api/v1/users/{user}/revoke-sessions {api_keys?} */
int sbx__h_user_revoke_sessions(sbx__req *r);
/* DELETE /api/v1/projects/{project}/members/{user} */
int sbx__h_member_delete(sbx__req *r);

#endif
