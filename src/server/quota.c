/*
 * quota.c - storage quotas (quota.h).
 */
#include "quota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "hutil.h"
#include "reply.h"
#include "sbx/sql.h"
#include "state.h"

/* The fields of a quota, in JSON and in srv_quotas, in struct order. */
static const char *const FIELDS[] = {"max_bytes",         "max_objects",
                                     "project_max_bytes", "project_max_objects",
                                     "max_object_bytes",  NULL};
#define NF 5

static int64_t *field(sbx__quota *q, int i) {
  return &q->max_bytes + i;
}

static int fill_quota(void *ctx, const sbx_sql_row *row) {
  for (int i = 0; i < NF; i++)
    *field(ctx, i) = sbx_sql_col_int(row, i);
  return 0;
}

int sbx__quota_stored(sbx_meta *m, const char *tenant, sbx__quota *q) {
  memset(q, 0, sizeof *q);
  sbx_sql_val v[] = {SBX_SQL_T(tenant)};
  return sbx_sql_exec(m,
                      "SELECT max_bytes, max_objects, project_max_bytes, "
                      "project_max_objects, max_object_bytes FROM srv_quotas "
                      "WHERE tenant_id = $1",
                      v, 1, fill_quota, q, NULL);
}

void sbx__quota_effective(const sbx_server *s, const sbx__quota *stored,
                          sbx__quota *eff) {
  const sbx_server_params *p = &s->p;
  /* configuration: 0 = no limit; the object cap never above the upload
   * cap of the HTTP layer */
  int64_t def[NF] = {p->quota_tenant_bytes, p->quota_tenant_objects,
                     p->quota_project_bytes, p->quota_project_objects,
                     p->quota_object_bytes};
  for (int i = 0; i < NF; i++) {
    int64_t v = *field((sbx__quota *)stored, i);
    if (!v)
      v = def[i] > 0 ? def[i] : -1;
    *field(eff, i) = v;
  }
  if (eff->max_object_bytes < 0 || eff->max_object_bytes > p->max_upload_bytes)
    eff->max_object_bytes = p->max_upload_bytes;
}

static int fill_usage(void *ctx, const sbx_sql_row *row) {
  int64_t *u = ctx;
  u[0] = sbx_sql_col_int(row, 0);
  u[1] = sbx_sql_col_int(row, 1);
  return 0;
}

int sbx__quota_usage(sbx_meta *m, const char *tenant, const char *project,
                     int64_t *bytes, int64_t *objects) {
  int64_t u[2] = {0, 0};
  sbx_sql_val v[] = {SBX_SQL_T(tenant), SBX_SQL_T(project ? project : "")};
  int rc = sbx_sql_exec(
      m,
      project ? "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) "
                "FROM objects WHERE tenant_id = $1 AND "
                "project_id = $2"
              : "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) "
                "FROM objects WHERE tenant_id = $1",
      v, project ? 2 : 1, fill_usage, u, NULL);
  *bytes = u[0];
  *objects = u[1];
  return rc;
}

/* 1 when used + add exceeds limit (-1: none). */
static int over(int64_t limit, int64_t used, int64_t add) {
  return limit >= 0 && used + add > limit;
}

int sbx__quota_admit(sbx__req *r, const char *tenant, const char *project,
                     int64_t size) {
  if (size < 0) {
    const char *cl = MHD_lookup_connection_value(
        r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    size = cl ? strtoll(cl, NULL, 10) : 0;
    if (size < 0)
      size = 0;
  }
  sbx_meta *m = sbx_store_meta(r->st);
  sbx__quota st, q;
  int64_t tb, to, pb, po;
  int rc = sbx__quota_stored(m, tenant, &st);
  if (!rc)
    rc = sbx__quota_usage(m, tenant, NULL, &tb, &to);
  if (!rc)
    rc = sbx__quota_usage(m, tenant, project, &pb, &po);
  if (rc) {
    sbx__problem_rc(r, rc);
    return 1;
  }
  sbx__quota_effective(r->srv, &st, &q);
  char why[200];
  if (size > q.max_object_bytes) {
    snprintf(why, sizeof why,
             "the object exceeds the per-object cap of %lld "
             "bytes",
             (long long)q.max_object_bytes);
    sbx__problem(r, 413, "Content Too Large", why);
    return 1;
  }
  const char *what = over(q.max_objects, to, 1)            ? "tenant object"
                     : over(q.max_bytes, tb, size)         ? "tenant byte"
                     : over(q.project_max_objects, po, 1)  ? "project object"
                     : over(q.project_max_bytes, pb, size) ? "project byte"
                                                           : NULL;
  if (!what)
    return 0;
  snprintf(why, sizeof why,
           "storing this object would exceed the %s quota (GET "
           "/api/v1/tenants/%s shows limits and usage)",
           what, tenant);
  sbx__problem(r, 507, "Insufficient Storage", why);
  return 1;
}

/* {"max_bytes": v, ...} of q. */
static json_t *quota_obj(sbx__quota *q) {
  json_t *o = json_object();
  for (int i = 0; o && i < NF; i++)
    json_object_set_new(o, FIELDS[i], json_integer(*field(q, i)));
  return o;
}

json_t *sbx__quota_json(sbx__req *r, const char *tenant) {
  sbx_meta *m = sbx_store_meta(r->st);
  sbx__quota st, q;
  int64_t b = 0, n = 0;
  if (sbx__quota_stored(m, tenant, &st) ||
      sbx__quota_usage(m, tenant, NULL, &b, &n))
    return NULL;
  sbx__quota_effective(r->srv, &st, &q);
  return json_pack("{s:o,s:o,s:{s:I,s:I}}", "limits", quota_obj(&q), "stored",
                   quota_obj(&st), "usage", "bytes", (json_int_t)b, "objects",
                   (json_int_t)n);
}

int sbx__h_quota_put(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  json_t *j = sbx__body_object(r, FIELDS);
  if (!j)
    return 0;
  sbx__quota q;
  memset(&q, 0, sizeof q);
  for (int i = 0; i < NF; i++) {
    json_t *v = json_object_get(j, FIELDS[i]);
    if (!v)
      continue;
    if (!json_is_integer(v) || json_integer_value(v) < -1)
      return sbx__bad_request(r, j,
                              "quota fields are integers: 0 inherit the "
                              "configuration, -1 no limit, > 0 the limit");
    *field(&q, i) = json_integer_value(v);
  }
  json_decref(j);
  sbx_sql_val v[] = {
      SBX_SQL_T(sbx__tenant(r)),        SBX_SQL_I(q.max_bytes),
      SBX_SQL_I(q.max_objects),         SBX_SQL_I(q.project_max_bytes),
      SBX_SQL_I(q.project_max_objects), SBX_SQL_I(q.max_object_bytes)};
  int rc = sbx_sql_exec(
      sbx_store_meta(r->st),
      "INSERT INTO srv_quotas (tenant_id, max_bytes, max_objects, "
      "project_max_bytes, project_max_objects, max_object_bytes) VALUES ($1, "
      "$2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET max_bytes = "
      "excluded.max_bytes, max_objects = excluded.max_objects, "
      "project_max_bytes = excluded.project_max_bytes, project_max_objects = "
      "excluded.project_max_objects, max_object_bytes = "
      "excluded.max_object_bytes",
      v, 6, NULL, NULL, NULL);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "quota.set", sbx__tenant(r));
  json_t *o = sbx__quota_json(r, sbx__tenant(r));
  return o ? sbx__reply_json(r, 200, o)
           : sbx__problem(r, 500, "Internal Server Error", NULL);
}
