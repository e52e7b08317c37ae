/*
 * incident.h - incident-response tools (issue 14 item 4): revoke every
 * credential of a user, freeze / unfreeze a tenant (mutations answer 423,
 * reads work), rotate the JWT signing key, a tenant key and the master key
 * on a live server without downtime. Each is an Admin route (table.c,
 * permission incident:respond) and an `aisbxd admin ...` command on a
 * stopped server's data dir (incident_cli.c); every one appends an audit
 * row. Steps and commands: docs/runbook.md.
 */
#ifndef SBX_SERVER_INCIDENT_H
#define SBX_SERVER_INCIDENT_H

#include <stdint.h>

#include "req.h"
#include "sbx/meta.h"

/* 1 when the caller's tenant is frozen (SBX_TENANT_LOCKED): authz.c then
 * answers 423 to a mutating route not flagged FREEZE_OK. One primary-key
 * read per mutating request (reads never ask). */
int sbx__incident_locked(sbx__req *r);

/* Route handlers (table.c). */
int sbx__h_user_revoke_all(sbx__req *r);   /* POST users/{u}/revoke-... */
int sbx__h_tenant_freeze(sbx__req *r);     /* PUT tenants/{t}/freeze */
int sbx__h_tenant_key_rotate(sbx__req *r); /* POST tenants/{t}/keys/rotate */
int sbx__h_jwt_key_rotate(sbx__req *r);    /* POST admin/jwt-key/rotate */
int sbx__h_master_key_rotate(sbx__req *r); /* POST admin/master-key/rotate */

/* The same on a stopped server's data dir (p as aisbxd would start with);
 * actor "admin-cli" in the audit rows. tenant NULL: "default". */
int sbx__incident_revoke_user(const sbx_server_params *p, const char *tenant,
                              const char *user, sbx_revoke_counts *out);
int sbx__incident_freeze(const sbx_server_params *p, const char *tenant,
                         int frozen);
int sbx__incident_rotate_tenant_key(const sbx_server_params *p,
                                    const char *tenant);
int sbx__incident_rotate_jwt(const sbx_server_params *p, const char *tenant,
                             int retire_old, char kid[32]);
int sbx__incident_rotate_master(const sbx_server_params *p, const char *tenant);

#endif
