/*
 * routes_auth.h - handlers: public routes: health, JWKS, OpenAPI,
 * password/refresh grants, bootstrap, session login. Each answers through
 * reply.h and returns 0; authorization is done before (authz.c) from the
 * route's row in table.c.
 */
#ifndef SBX_SERVER_ROUTES_AUTH_H
#define SBX_SERVER_ROUTES_AUTH_H

#include "req.h"

int sbx__h_healthz(sbx__req *r);
int sbx__h_readyz(sbx__req *r);
int sbx__h_jwks(sbx__req *r);
int sbx__h_openapi(sbx__req *r);
int sbx__h_session_login(sbx__req *r);
int sbx__h_token(sbx__req *r);
int sbx__h_bootstrap(sbx__req *r);

#endif
