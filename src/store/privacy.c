/*
 * privacy.c - retention and the audit chain's purge checkpoint
 * (sbx/privacy.h): the tenant's retention settings, deleting the oldest
 * audit rows without losing the proof of the rest, and finding and
 * deleting expired jobs. Tables "retention" and "audit_purges" (meta.c,
 * migration 48).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "sbx/crypto.h"
#include "sbx/jobs.h"
#include "sbx/privacy.h"

static int row_retention(void *ctx, const sbx__row *r) {
  sbx_retention *o = ctx;
  o->jobs_s = sbx__col_int(r, 0);
  o->audit_s = sbx__col_int(r, 1);
  o->updated_at = sbx__col_int(r, 2);
  return 1;
}

int sbx_meta_retention_get(sbx_meta *m, const char *tenant_id,
                           sbx_retention *out) {
  if (!out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  if (!m || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(tenant_id)};
  return sbx__db_exec(sbx__meta_db(m),
                      "SELECT jobs_s, audit_s, updated_at FROM retention "
                      "WHERE tenant_id = $1",
                      v, 1, row_retention, out, NULL);
}

int sbx_meta_retention_set(sbx_meta *m, const char *tenant_id,
                           const sbx_retention *r) {
  if (!m || !r || !sbx_id_valid(tenant_id) || r->jobs_s < 0 || r->audit_s < 0)
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(r->jobs_s), SBX_VI(r->audit_s),
                  SBX_VI(r->updated_at)};
  return sbx__db_exec(sbx__meta_db(m),
                      "INSERT INTO retention (tenant_id, jobs_s, audit_s, "
                      "updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT "
                      "(tenant_id) DO UPDATE SET jobs_s = $2, audit_s = $3, "
                      "updated_at = $4",
                      v, 4, NULL, NULL, NULL);
}

typedef struct base_ctx {
  int64_t seq;
  uint8_t hash[32];
} base_ctx;

static int row_base(void *ctx, const sbx__row *r) {
  base_ctx *b = ctx;
  b->seq = sbx__col_int(r, 0);
  return sbx__col_fixed(r, 1, b->hash, 32) ? SBX_EFORMAT : 1;
}

int sbx_meta_audit_base(sbx_meta *m, const char *tenant_id, int64_t *seq,
                        uint8_t hash[SBX_SHA256_LEN]) {
  if (!m || !sbx_id_valid(tenant_id) || !seq || !hash)
    return SBX_EINVAL;
  base_ctx b = {0, {0}};
  sbx__val v[] = {SBX_VT(tenant_id)};
  int rc = sbx__db_exec(sbx__meta_db(m),
                        "SELECT through_seq, through_hash FROM audit_purges "
                        "WHERE tenant_id = $1",
                        v, 1, row_base, &b, NULL);
  *seq = rc ? 0 : b.seq;
  memcpy(hash, b.hash, 32);
  return rc;
}

/* The purge: the last row to delete is the newest row older than
 * before_ts that is not the head; its hash becomes the checkpoint. */
int sbx_meta_audit_purge(sbx_meta *m, const char *tenant_id, int64_t before_ts,
                         int64_t now, int64_t *purged) {
  if (purged)
    *purged = 0;
  if (!m || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  sbx__db *db = sbx__meta_db(m);
  int rc = sbx__db_begin(db);
  if (rc)
    return rc;
  base_ctx last = {0, {0}}, base = {0, {0}};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(before_ts)};
  /* rows are appended in time order, so the ts < before_ts rows are a
   * prefix; the head (max seq) stays so the chain keeps its newest link */
  rc = sbx__db_exec(db,
                    "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 "
                    "AND ts < $2 AND seq < (SELECT MAX(seq) FROM audit_events "
                    "WHERE tenant_id = $1) ORDER BY seq DESC LIMIT 1",
                    v, 2, row_base, &last, NULL);
  if (!rc)
    rc = sbx__db_exec(db,
                      "SELECT through_seq, through_hash FROM audit_purges "
                      "WHERE tenant_id = $1",
                      v, 1, row_base, &base, NULL);
  if (rc || last.seq <= base.seq) { /* nothing (more) to purge */
    sbx__db_rollback(db);
    return rc;
  }
  int64_t n = 0;
  sbx__val d[] = {SBX_VT(tenant_id), SBX_VI(last.seq), SBX_VB(last.hash, 32)};
  rc = sbx__db_exec(db,
                    "DELETE FROM audit_events WHERE tenant_id = $1 AND seq "
                    "<= $2",
                    d, 2, NULL, NULL, &n);
  if (!rc)
    rc = sbx__db_exec(db,
                      "INSERT INTO audit_purges (tenant_id, through_seq, "
                      "through_hash) VALUES ($1, $2, $3) ON CONFLICT "
                      "(tenant_id) DO UPDATE SET through_seq = $2, "
                      "through_hash = $3",
                      d, 3, NULL, NULL, NULL);
  char target[SBX_NAME_MAX], hex[65];
  sbx_hex(last.hash, 32, hex);
  snprintf(target, sizeof target, "through=%" PRId64 " hash=%s", last.seq, hex);
  if (!rc)
    rc = sbx_meta_audit_append(m, tenant_id, now, "system",
                               SBX_AUDIT_PURGE_ACTION, target, NULL);
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  rc = sbx__db_commit(db);
  if (!rc && purged)
    *purged = n;
  return rc;
}

typedef struct expired_ctx {
  int (*fn)(void *ctx, const char *job_id, const char *project_id);
  void *ctx;
} expired_ctx;

static int row_expired(void *ctx, const sbx__row *r) {
  expired_ctx *e = ctx;
  char id[SBX_ID_MAX], project[SBX_ID_MAX];
  if (sbx__col_text(r, 0, id, sizeof id) ||
      sbx__col_text(r, 1, project, sizeof project))
    return SBX_EFORMAT;
  return e->fn(e->ctx, id, project);
}

int sbx_meta_jobs_expired(sbx_meta *m, const char *tenant_id, int64_t before_ts,
                          int limit,
                          int (*fn)(void *ctx, const char *job_id,
                                    const char *project_id),
                          void *ctx) {
  if (!m || !fn || !sbx_id_valid(tenant_id) || limit <= 0)
    return SBX_EINVAL;
  expired_ctx e = {fn, ctx};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(before_ts), SBX_VI(limit),
                  SBX_VI(SBX_JOB_SUCCEEDED)};
  return sbx__db_exec(sbx__meta_db(m),
                      "SELECT id, project_id FROM jobs WHERE tenant_id = $1 "
                      "AND state >= $4 AND finished_at > 0 AND finished_at < "
                      "$2 ORDER BY finished_at, id LIMIT $3",
                      v, 4, row_expired, &e, NULL);
}

typedef struct objects_ctx {
  int (*fn)(void *ctx, const char *object_id);
  void *ctx;
  sbx_meta *m;
  const char *tenant;
  const char *prefix;
} objects_ctx;

/* Rows (id, name, name_sealed): fn for those whose name starts with the
 * prefix (names are sealed, so the prefix is matched here, not in SQL). */
static int row_object(void *ctx, const sbx__row *r) {
  objects_ctx *o = ctx;
  char id[SBX_ID_MAX], name[SBX_NAME_MAX];
  if (sbx__col_text(r, 0, id, sizeof id))
    return SBX_EFORMAT;
  int rc = sbx__meta_col_text(o->m, r, 2, 1, o->tenant, "objects.name", id,
                              name, sizeof name);
  if (rc == SBX_EKEY) /* shredded tenant: no name to match */
    return 0;
  if (rc)
    return rc;
  if (strncmp(name, o->prefix, strlen(o->prefix)))
    return 0;
  return o->fn(o->ctx, id);
}

int sbx_meta_job_objects(sbx_meta *m, const char *tenant_id,
                         const char *project_id, const char *job_id,
                         int (*fn)(void *ctx, const char *object_id),
                         void *ctx) {
  if (!m || !fn || !sbx_id_valid(tenant_id) || !sbx_id_valid(project_id) ||
      !sbx_id_valid(job_id))
    return SBX_EINVAL;
  char prefix[SBX_ID_MAX + 2];
  snprintf(prefix, sizeof prefix, "%s.", job_id);
  objects_ctx o = {fn, ctx, m, tenant_id, prefix};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(project_id)};
  return sbx__db_exec(sbx__meta_db(m),
                      "SELECT id, name, name_sealed FROM objects WHERE "
                      "tenant_id = $1 AND project_id = $2 AND kind IN "
                      "('result', 'jobinfo') ORDER BY id",
                      v, 2, row_object, &o, NULL);
}

int sbx_meta_job_delete(sbx_meta *m, const char *tenant_id,
                        const char *job_id) {
  if (!m || !sbx_id_valid(tenant_id) || !sbx_id_valid(job_id))
    return SBX_EINVAL;
  sbx__db *db = sbx__meta_db(m);
  int rc = sbx__db_begin(db);
  if (rc)
    return rc;
  static const char *const SQL[] = {
      "DELETE FROM job_events WHERE tenant_id = $1 AND job_id = $2",
      "DELETE FROM job_shards WHERE tenant_id = $1 AND job_id = $2",
      "DELETE FROM jobs WHERE tenant_id = $1 AND id = $2"};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id)};
  int64_t n = 0;
  for (size_t i = 0; !rc && i < sizeof SQL / sizeof SQL[0]; i++)
    rc = sbx__db_exec(db, SQL[i], v, 2, NULL, NULL, &n);
  if (!rc && n == 0)
    rc = SBX_ENOTFOUND;
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  return sbx__db_commit(db);
}
