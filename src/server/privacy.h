/*
 * privacy.h - privacy rights (docs/security.md "Privacy rights", policy
 * §2.2 and §4): per-tenant retention with a periodic, audited purge; a
 * user's data exported as one JSON document; erasure of a user's personal
 * data with the audit chain intact.
 */
#ifndef SBX_SERVER_PRIVACY_H
#define SBX_SERVER_PRIVACY_H

#include <stdint.h>

#include "req.h"

/* What one purge of a tenant removed. */
typedef struct sbx__purge_counts {
  int64_t jobs, objects, audit_rows;
} sbx__purge_counts;

/* Purges tenant's data older than its retention at time now (the audit
 * retention raised to min_audit_s): finished jobs with their objects, then
 * audit rows. Appends a "retention.purge" audit row (actor "system") with
 * the counts when anything was removed. *c receives the counts (also on
 * error: what was removed before it). */
int sbx__retention_purge(sbx_store *st, const char *tenant, int64_t now,
                         int64_t min_audit_s, sbx__purge_counts *c);

/* The periodic purge (retention_purge_interval_s; 0: none). Start opens
 * its store handle (before confinement: confine.h), run starts its thread
 * (after: confinement needs a single-threaded process); each returns 0 or
 * a negative status; stop joins the thread and closes the handle. */
int sbx__purge_start(sbx_server *s);
int sbx__purge_run(sbx_server *s);
void sbx__purge_stop(sbx_server *s);

/* Handlers (table.c). */
int sbx__h_retention_get(sbx__req *r);
int sbx__h_retention_put(sbx__req *r);
int sbx__h_retention_purge(sbx__req *r);
int sbx__h_user_export(sbx__req *r);
int sbx__h_user_erase(sbx__req *r);

#endif
