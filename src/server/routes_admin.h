/*
 * routes_admin.h - handlers: the caller, the tenant, users, API keys, audit
 * events. Each answers through reply.h and returns 0; authorization is done
 * before (authz.c) from the route's row in table.c.
 */
#ifndef SBX_SERVER_ROUTES_ADMIN_H
#define SBX_SERVER_ROUTES_ADMIN_H

#include "req.h"

int sbx__h_me(sbx__req *r);
int sbx__h_tenant_get(sbx__req *r);
int sbx__h_audit_list(sbx__req *r);
int sbx__h_users_list(sbx__req *r);
int sbx__h_user_create(sbx__req *r);
int sbx__h_keys_list(sbx__req *r);
int sbx__h_key_create(sbx__req *r);
int sbx__h_key_revoke(sbx__req *r);
int sbx__h_key_rotate(sbx__req *r);

#endif
