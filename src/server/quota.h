/*
 * quota.h - storage quotas: bytes and objects per tenant and per project,
 * and a cap per object. Limits: the tenant's own (PUT
 * /api/v1/tenants/{t}/quota, table srv_quotas), else the configuration's
 * quota_* defaults. Usage is what the objects table holds (every kind:
 * models, datasets, job results). Uploads of models and datasets are
 * checked before anything is stored (declared Content-Length) and again
 * before the commit (actual bytes): 413 above the per-object cap, 507
 * Insufficient Storage when a quota would be exceeded; a refused upload
 * leaves no object.
 */
#ifndef SBX_SERVER_QUOTA_H
#define SBX_SERVER_QUOTA_H

#include <jansson.h>
#include <stdint.h>

#include "req.h"

/* One set of limits. Stored values: 0 inherit the configuration, -1 no
 * limit, > 0 the limit. Effective values: -1 no limit, > 0 the limit. */
typedef struct sbx__quota {
  int64_t max_bytes, max_objects;                 /* the tenant in all */
  int64_t project_max_bytes, project_max_objects; /* each project */
  int64_t max_object_bytes;                       /* one object */
} sbx__quota;

/* The tenant's stored limits (all 0 when none were set). */
int sbx__quota_stored(sbx_meta *m, const char *tenant, sbx__quota *q);
/* Effective limits of stored ones under server s's configuration. */
void sbx__quota_effective(const sbx_server *s, const sbx__quota *stored,
                          sbx__quota *eff);
/* Bytes and objects held by tenant (project NULL) or one of its projects. */
int sbx__quota_usage(sbx_meta *m, const char *tenant, const char *project,
                     int64_t *bytes, int64_t *objects);
/* Admission of an upload of size bytes (< 0: the declared Content-Length,
 * when any) as one new object of project: returns 0 when it fits, else
 * sets the answer (413 / 507 / a store error) and returns 1. */
int sbx__quota_admit(sbx__req *r, const char *tenant, const char *project,
                     int64_t size);
/* The "quota" section of GET /api/v1/tenants/{t}: limits (effective and
 * stored) and usage. New reference, NULL on error. */
json_t *sbx__quota_json(sbx__req *r, const char *tenant);
/* PUT /api/v1/tenants/{tenant}/quota (Admin): sets the stored limits. */
int sbx__h_quota_put(sbx__req *r);

#endif
