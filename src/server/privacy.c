/*
 * privacy.c - privacy rights (privacy.h): retention settings and the
 * periodic purge, the export of everything held about a user, and erasure.
 *
 * Erasure and the audit chain: audit rows name users by their id, a random
 * handle that is not personal data by itself (the chain has been computed
 * over ids, never e-mail addresses or names, from the start). Erasure
 * deletes the user row (sealed e-mail, its blind index, password hash) and
 * every credential, role and membership; what remains in the chain is an
 * id that nothing links to a person any more, so the chain stays intact
 * and verifiable without re-anchoring.
 */
#include "privacy.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "authcache.h"
#include "dbx.h"
#include "hutil.h"
#include "log.h"
#include "rbac.h"
#include "reply.h"
#include "sbx/crypto.h"
#include "sbx/jobs.h"
#include "sbx/privacy.h"
#include "sbx/sql.h"
#include "state.h"
#include "util.h"

#define PURGE_BATCH 256     /* jobs per query of a purge */
#define EXPORT_ROWS "10000" /* rows per section of an export (a cap) */

/* ---- the purge ---- */

typedef struct job_ref {
  char id[SBX_ID_MAX], project[SBX_ID_MAX];
} job_ref;

typedef struct jobs_batch {
  job_ref *v;
  int n;
} jobs_batch;

static int collect_job(void *ctx, const char *id, const char *project) {
  jobs_batch *b = ctx;
  snprintf(b->v[b->n].id, SBX_ID_MAX, "%s", id);
  snprintf(b->v[b->n].project, SBX_ID_MAX, "%s", project);
  b->n++;
  return 0;
}

typedef struct objs_ctx {
  sbx_store *st;
  const char *tenant;
  int64_t n;
  int rc;
} objs_ctx;

/* Deletes one of a job's objects (row, then blob); a missing one is fine. */
static int delete_object(void *ctx, const char *object_id) {
  objs_ctx *o = ctx;
  int rc = sbx_store_delete(o->st, o->tenant, object_id);
  if (rc && rc != SBX_ENOTFOUND) {
    o->rc = rc;
    return 1;
  }
  o->n += rc == 0;
  return 0;
}

/* Deletes finished jobs that ended before `before`, in batches: objects
 * first (so a crash leaves a job row, purged next time, never an object
 * that nothing names), then the rows. */
static int purge_jobs(sbx_store *st, const char *tenant, int64_t before,
                      sbx__purge_counts *c) {
  sbx_meta *m = sbx_store_meta(st);
  job_ref *v = calloc(PURGE_BATCH, sizeof *v);
  if (!v)
    return SBX_ENOMEM;
  int rc = 0;
  for (;;) {
    jobs_batch b = {v, 0};
    rc = sbx_meta_jobs_expired(m, tenant, before, PURGE_BATCH, collect_job, &b);
    if (rc || b.n == 0)
      break;
    for (int i = 0; i < b.n && !rc; i++) {
      objs_ctx o = {st, tenant, 0, 0};
      rc = sbx_meta_job_objects(m, tenant, v[i].project, v[i].id, delete_object,
                                &o);
      if (!rc)
        rc = o.rc;
      c->objects += o.n;
      if (!rc)
        rc = sbx_meta_job_delete(m, tenant, v[i].id);
      if (!rc)
        c->jobs++;
    }
    if (rc || b.n < PURGE_BATCH)
      break;
  }
  free(v);
  return rc;
}

int sbx__retention_purge(sbx_store *st, const char *tenant, int64_t now,
                         int64_t min_audit_s, sbx__purge_counts *c) {
  memset(c, 0, sizeof *c);
  sbx_meta *m = sbx_store_meta(st);
  sbx_retention ret;
  int rc = sbx_meta_retention_get(m, tenant, &ret);
  if (rc)
    return rc;
  if (ret.jobs_s > 0)
    rc = purge_jobs(st, tenant, now - ret.jobs_s, c);
  if (!rc && ret.audit_s > 0) {
    int64_t keep = ret.audit_s > min_audit_s ? ret.audit_s : min_audit_s;
    rc = sbx_meta_audit_purge(m, tenant, now - keep, now, &c->audit_rows);
  }
  if (c->jobs || c->objects || c->audit_rows) {
    char target[SBX_NAME_MAX];
    snprintf(target, sizeof target,
             "jobs=%" PRId64 " objects=%" PRId64 " audit_rows=%" PRId64,
             c->jobs, c->objects, c->audit_rows);
    int arc = sbx_meta_audit_append(m, tenant, now, "system", "retention.purge",
                                    target, NULL);
    if (!rc)
      rc = arc;
  }
  return rc;
}

struct sbx__purge {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  int interval_s;
  int64_t min_audit_s;
  sbx_store *st; /* its own handle: purges never hold a request's */
  int running;   /* the thread was started (sbx__purge_run) */
};

static int purge_one(void *ctx, const char *tenant) {
  struct sbx__purge *p = ctx;
  sbx__purge_counts c;
  int rc = sbx__retention_purge(p->st, tenant, sbx__now(), p->min_audit_s, &c);
  if (rc)
    sbx__log("retention purge of %s: %s", tenant, sbx_strerror(rc));
  else if (c.jobs || c.audit_rows)
    sbx__log("retention purge of %s: %" PRId64 " jobs, %" PRId64
             " objects, %" PRId64 " audit rows",
             tenant, c.jobs, c.objects, c.audit_rows);
  return 0; /* one tenant's failure does not stop the others */
}

/* The purge thread: every tenant, every interval, until stopped. */
static void *purge_main(void *arg) {
  struct sbx__purge *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->stop) {
    pthread_mutex_unlock(&p->mu);
    sbx_meta_audit_tenants(sbx_store_meta(p->st), purge_one, p);
    pthread_mutex_lock(&p->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += p->interval_s;
    while (!p->stop &&
           pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
      ;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int sbx__purge_start(sbx_server *s) {
  if (s->p.retention_purge_interval_s <= 0)
    return 0;
  struct sbx__purge *p = calloc(1, sizeof *p);
  if (!p)
    return SBX_ENOMEM;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->interval_s = s->p.retention_purge_interval_s;
  p->min_audit_s = s->p.audit_retention_min_s;
  int rc = sbx_server_store_open(&s->p, &p->st);
  if (rc) {
    sbx_store_close(p->st);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return rc;
  }
  s->purge = p;
  return 0;
}

int sbx__purge_run(sbx_server *s) {
  struct sbx__purge *p = s->purge;
  if (!p)
    return 0;
  if (pthread_create(&p->thread, NULL, purge_main, p))
    return SBX_ENOMEM;
  p->running = 1;
  return 0;
}

void sbx__purge_stop(sbx_server *s) {
  struct sbx__purge *p = s->purge;
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (p->running)
    pthread_join(p->thread, NULL);
  sbx_store_close(p->st);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
  s->purge = NULL;
}

/* ---- retention routes ---- */

static int retention_reply(sbx__req *r, int status) {
  sbx_retention ret;
  int rc = sbx_meta_retention_get(sbx__meta(r), sbx__tenant(r), &ret);
  if (rc)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(
      r, status,
      json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "tenant", sbx__tenant(r),
                "jobs_seconds", (json_int_t)ret.jobs_s, "audit_seconds",
                (json_int_t)ret.audit_s, "audit_minimum_seconds",
                (json_int_t)r->srv->p.audit_retention_min_s,
                "purge_interval_seconds",
                (json_int_t)r->srv->p.retention_purge_interval_s, "updated_at",
                (json_int_t)ret.updated_at));
}

int sbx__h_retention_get(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  return retention_reply(r, 200);
}

/* Reads an optional non-negative integer field; 0 ok, -1 malformed. */
static int field_seconds(json_t *j, const char *k, int64_t *out) {
  json_t *v = json_object_get(j, k);
  if (!v)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      json_integer_value(v) > 100LL * 366 * 86400)
    return -1;
  *out = json_integer_value(v);
  return 0;
}

int sbx__h_retention_put(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  static const char *const fields[] = {"jobs_seconds", "audit_seconds", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  sbx_retention ret;
  int rc = sbx_meta_retention_get(sbx__meta(r), sbx__tenant(r), &ret);
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc);
  }
  if (field_seconds(j, "jobs_seconds", &ret.jobs_s) ||
      field_seconds(j, "audit_seconds", &ret.audit_s))
    return sbx__bad_request(r, j,
                            "jobs_seconds, audit_seconds: integers 0 (keep "
                            "forever) .. 100 years");
  json_decref(j);
  int64_t min = r->srv->p.audit_retention_min_s;
  if (ret.audit_s > 0 && ret.audit_s < min) {
    char why[160];
    snprintf(why, sizeof why,
             "audit_seconds: at least the legal minimum of %" PRId64
             " s (audit_retention_min_s), or 0 to keep forever",
             min);
    return sbx__problem(r, 400, "Bad Request", why);
  }
  ret.updated_at = sbx__now();
  rc = sbx_meta_retention_set(sbx__meta(r), sbx__tenant(r), &ret);
  if (rc)
    return sbx__problem_rc(r, rc);
  char target[SBX_NAME_MAX];
  snprintf(target, sizeof target, "jobs=%" PRId64 " audit=%" PRId64, ret.jobs_s,
           ret.audit_s);
  sbx__audit(r, "retention.set", target);
  return retention_reply(r, 200);
}

/* POST .../retention/purge: the periodic purge, now, for this tenant. */
int sbx__h_retention_purge(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  sbx__purge_counts c;
  int rc = sbx__retention_purge(r->st, sbx__tenant(r), sbx__now(),
                                r->srv->p.audit_retention_min_s, &c);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "retention.purge_requested", sbx__tenant(r));
  return sbx__reply_json(r, 200,
                         json_pack("{s:I,s:I,s:I}", "jobs", (json_int_t)c.jobs,
                                   "objects", (json_int_t)c.objects,
                                   "audit_rows", (json_int_t)c.audit_rows));
}

/* ---- export ---- */

/* One section of the export: rows about user $2 of tenant $1 ($3: the
 * user's audit blind index, sbx_meta_blind_text "audit.id"). */
typedef struct export_section {
  const char *name;
  const char *sql;
  const char *cols;
  const char *names[10];
} export_section;

static const export_section SECTIONS[] = {
    {"memberships",
     "SELECT project_id, role FROM memberships WHERE tenant_id = $1 AND "
     "user_id = $2 ORDER BY project_id LIMIT " EXPORT_ROWS,
     "tt",
     {"project_id", "role"}},
    {"api_keys",
     "SELECT id, project_id, role, created_at, expires_at, revoked_at, "
     "last_used_at FROM api_keys WHERE tenant_id = $1 AND user_id = $2 ORDER "
     "BY id LIMIT " EXPORT_ROWS,
     "tttiiii",
     {"id", "project_id", "role", "created_at", "expires_at", "revoked_at",
      "last_used_at"}},
    {"sessions",
     "SELECT created_at, expires_at FROM srv_sessions WHERE tenant_id = $1 "
     "AND user_id = $2 ORDER BY created_at LIMIT " EXPORT_ROWS,
     "ii",
     {"created_at", "expires_at"}},
    {"refresh_tokens",
     "SELECT created_at, expires_at, used_at, revoked_at FROM refresh_tokens "
     "WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at "
     "LIMIT " EXPORT_ROWS,
     "iiii",
     {"created_at", "expires_at", "used_at", "revoked_at"}},
    {"audit_events",
     "SELECT seq, ts, actor, actor_sealed, action, target, target_sealed "
     "FROM audit_events WHERE tenant_id = $1 AND (actor = $2 OR target = $2 "
     "OR actor = $3 OR target = $3) ORDER BY seq LIMIT " EXPORT_ROWS,
     "iis-ts-",
     {"seq", "ts", "actor", "audit_events.actor", "action", "target",
      "audit_events.target"}},
};

/* The "jobs" section: the jobs whose job.create row names uid as actor
 * (their targets, opened from the audit section's rows). */
static int export_jobs(sbx__req *r, const char *uid, json_t *audit,
                       json_t *doc) {
  json_t *jobs = json_array();
  if (!jobs)
    return SBX_ENOMEM;
  int rc = SBX_OK;
  size_t i;
  json_t *e;
  json_array_foreach(audit, i, e) {
    const char *action = json_string_value(json_object_get(e, "action"));
    const char *actor = json_string_value(json_object_get(e, "actor"));
    const char *job = json_string_value(json_object_get(e, "target"));
    if (rc || !action || !actor || !job || strcmp(action, "job.create") ||
        strcmp(actor, uid) || !sbx_id_valid(job))
      continue;
    sbx_sql_val v[] = {SBX_SQL_T(sbx__tenant(r)), SBX_SQL_T(job)};
    rc = sbx__dbx_query_json(
        sbx__meta(r),
        "SELECT id, project_id, kind, state, created_at, finished_at FROM "
        "jobs WHERE tenant_id = $1 AND id = $2",
        v, 2, "tttiii",
        (const char *const[]){"id", "project_id", "kind", "state", "created_at",
                              "finished_at", NULL},
        jobs);
  }
  json_object_set_new(doc, "jobs", jobs);
  return rc;
}

/* The caller may see user u's data: u themselves, or a tenant Admin. */
static int may_see_user(sbx__req *r, const char *u) {
  return !strcmp(u, r->who.user) || (r->role & SBX__ROLE_ADMIN);
}

/* The user object of an export: the record with the e-mail opened. */
static json_t *user_record(sbx__req *r, const sbx_user *u) {
  char ctx[96];
  snprintf(ctx, sizeof ctx, "users.email|%s", u->id);
  uint8_t email[SBX_NAME_MAX];
  size_t n = 0;
  if (u->email_sealed_len < SBX_SEAL_OVERHEAD ||
      u->email_sealed_len - SBX_SEAL_OVERHEAD > sizeof email ||
      sbx_store_field_open(r->st, sbx__tenant(r), ctx, u->email_sealed,
                           u->email_sealed_len, email, &n))
    n = 0;
  char role[SBX_KIND_MAX] = "";
  sbx__dbx_tenant_role_get(sbx__meta(r), sbx__tenant(r), u->id, role);
  int64_t totp = 0;
  sbx_sql_val v[] = {SBX_SQL_T(sbx__tenant(r)), SBX_SQL_T(u->id)};
  json_t *t = json_array();
  if (t)
    sbx__dbx_query_json(sbx__meta(r),
                        "SELECT enabled FROM srv_totp WHERE tenant_id = $1 "
                        "AND user_id = $2",
                        v, 2, "i", (const char *const[]){"enabled", NULL}, t);
  if (t && json_array_size(t))
    totp = json_integer_value(json_object_get(json_array_get(t, 0), "enabled"));
  json_decref(t);
  return json_pack("{s:s,s:s%,s:I,s:I,s:s,s:b,s:b}", "id", u->id, "email",
                   (const char *)email, n, "disabled", (json_int_t)u->disabled,
                   "created_at", (json_int_t)u->created_at, "tenant_role", role,
                   "password_set", u->password_hash[0] != 0, "totp_enabled",
                   totp != 0);
}

int sbx__h_user_export(sbx__req *r) {
  const char *uid = r->params[0];
  if (!may_see_user(r, uid))
    return sbx__problem(r, 403, "Forbidden",
                        "only the user or a tenant admin may export it");
  sbx_user u;
  int rc = sbx_meta_user_get(sbx__meta(r), sbx__tenant(r), uid, &u);
  if (rc)
    return sbx__problem_rc(r, rc);
  json_t *doc = json_pack("{s:s,s:s,s:I,s:o}", "format", "aisbx.user-export.v1",
                          "tenant", sbx__tenant(r), "exported_at",
                          (json_int_t)sbx__now(), "user", user_record(r, &u));
  if (!doc)
    return sbx__problem_rc(r, SBX_ENOMEM);
  /* rows naming the user hold its blind index (sealed audit fields) */
  char ix[SBX_META_INDEX_TEXT] = "~";
  if (sbx_meta_blind_text(sbx__meta(r), sbx__tenant(r), "audit.id", uid, ix))
    snprintf(ix, sizeof ix, "~");
  sbx_sql_val v[] = {SBX_SQL_T(sbx__tenant(r)), SBX_SQL_T(uid), SBX_SQL_T(ix)};
  for (size_t i = 0; !rc && i < sizeof SECTIONS / sizeof SECTIONS[0]; i++) {
    json_t *items = json_array();
    int nv = strstr(SECTIONS[i].sql, "$3") ? 3 : 2;
    rc = items ? sbx__dbx_query_json_t(sbx__meta(r), sbx__tenant(r),
                                       SECTIONS[i].sql, v, nv, SECTIONS[i].cols,
                                       SECTIONS[i].names, items)
               : SBX_ENOMEM;
    json_object_set_new(doc, SECTIONS[i].name, items);
    if (!rc && !strcmp(SECTIONS[i].name, "audit_events"))
      rc = export_jobs(r, uid, items, doc);
  }
  if (rc) {
    json_decref(doc);
    return sbx__problem_rc(r, rc);
  }
  sbx__audit(r, "user.export", uid);
  return sbx__reply_json(r, 200, doc);
}

/* ---- erasure ---- */

/* What sbx_meta_user_delete (the lifecycle's DELETE of a user) leaves of
 * user $2 of tenant $1: the revoked credentials' rows, which still hold
 * the user's id and times; issuer rows before their keys. */
static const char *const ERASE_SQL[] = {
    "DELETE FROM refresh_tokens WHERE tenant_id = $1 AND user_id = $2",
    "DELETE FROM srv_api_key_issuers WHERE tenant_id = $1 AND key_id IN "
    "(SELECT id FROM api_keys WHERE tenant_id = $1 AND user_id = $2)",
    "DELETE FROM api_keys WHERE tenant_id = $1 AND user_id = $2",
    "DELETE FROM srv_bootstrap WHERE tenant_id = $1 AND user_id = $2",
};

/* POST /api/v1/users/{user}/erase (Admin): the user's personal data and
 * credentials deleted in one transaction; audit rows keep the bare id. */
int sbx__h_user_erase(sbx__req *r) {
  const char *uid = r->params[0];
  if (!strcmp(uid, r->who.user))
    return sbx__problem(r, 409, "Conflict",
                        "an admin cannot erase themselves; another admin "
                        "must");
  sbx_meta *m = sbx__meta(r);
  int rc = sbx_meta_begin(m);
  if (rc)
    return sbx__problem_rc(r, rc);
  /* the user row, roles, memberships, TOTP, lockouts; sessions deleted,
   * tokens and keys revoked, its access tokens deny-listed (SBX_ENOTFOUND:
   * no such user) */
  rc = sbx_meta_user_delete(m, sbx__tenant(r), uid, sbx__now());
  sbx_sql_val v[] = {SBX_SQL_T(sbx__tenant(r)), SBX_SQL_T(uid)};
  for (size_t i = 0; !rc && i < sizeof ERASE_SQL / sizeof ERASE_SQL[0]; i++)
    rc = sbx_sql_exec(m, ERASE_SQL[i], v, 2, NULL, NULL, NULL);
  if (rc) {
    sbx_meta_rollback(m);
    return sbx__problem_rc(r, rc);
  }
  if ((rc = sbx_meta_commit(m)))
    return sbx__problem_rc(r, rc);
  sbx__authcache_invalidate(); /* its credentials fail from now on */
  sbx_meta_checkpoint(m);      /* SQLite: deleted pages zeroed, WAL truncated */
  sbx__audit(r, "user.erase", uid);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:b}", "id", uid, "erased", 1));
}
