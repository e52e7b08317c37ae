/*
 * jobs.c - the job queue (sbx/jobs.h) over the sbx__db driver: jobs and
 * shards, the event log, fair-share claims with leases, limits, worker
 * tokens. Tables in jobs_schema.h; design in docs/jobs.md.
 *
 * Locking (PostgreSQL, READ COMMITTED): every writer takes row locks in the
 * same order - shard rows (ascending), then the job row, then the tenant's
 * job_sched row - so writers never deadlock. Claims pick their shard with
 * FOR UPDATE SKIP LOCKED and so never wait on each other's shard; the
 * tenant's job_sched row is updated last, and the running shards counted in
 * the next statement, which makes the quota exact under concurrency (claims
 * of one tenant serialise on that row for the instant before COMMIT;
 * finishing a shard does not touch it). SQLite: every writer is a BEGIN
 * IMMEDIATE transaction, i.e. serialised.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "sbx/jobs.h"

#define PG(m) (sbx__db_backend(sbx__meta_db(m)) == 2)
#define DB(m) sbx__meta_db(m)

/* built-in limits (sbx_job_limit_set comment in sbx/jobs.h) */
#define BUILTIN_WALL_DEFAULT 3600
#define BUILTIN_WALL_MAX 86400
#define BUILTIN_MEM_DEFAULT (2LL << 30)
#define BUILTIN_MEM_MAX (16LL << 30)
#define BUILTIN_SAMPLES_MAX 1000000
#define BUILTIN_SHARDS_MAX 64
#define DEFAULT_ATTEMPTS 3

#define REQUIRE_ID(x)                                                          \
  do {                                                                         \
    if (!sbx_id_valid(x))                                                      \
      return SBX_EINVAL;                                                       \
  } while (0)

static const char *const STATE_NAMES[] = {"queued", "running",   "succeeded",
                                          "failed", "cancelled", "timed_out"};

const char *sbx_job_state_name(int64_t state) {
  if (state < 0 || state > SBX_JOB_TIMED_OUT)
    return "unknown";
  return STATE_NAMES[state];
}

int sbx_job_state_parse(const char *s) {
  for (int i = 0; s && i <= SBX_JOB_TIMED_OUT; i++)
    if (!strcmp(s, STATE_NAMES[i]))
      return i;
  return -1;
}

int sbx_job_state_terminal(int64_t state) {
  return state >= SBX_JOB_SUCCEEDED && state <= SBX_JOB_TIMED_OUT;
}

/* A strictly increasing microsecond stamp for this process (FIFO order of
 * jobs, "least recently served"): the wall clock, bumped past the last
 * value handed out so two calls never tie. */
static int64_t stamp_us(void) {
  static _Atomic int64_t last;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t v = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
  int64_t prev = atomic_load(&last);
  for (;;) {
    int64_t next = v > prev ? v : prev + 1;
    if (atomic_compare_exchange_weak(&last, &prev, next))
      return next;
  }
}

static int text_ok(const char *s, size_t cap) {
  return s && strlen(s) < cap;
}

static void set_why(char *why, const char *fmt, long long a, long long b,
                    const char *name) {
  if (why)
    snprintf(why, SBX_JOB_MSG_MAX, fmt, name, a, b);
}

/* ---- small row helpers ---- */

static int row_int1(void *ctx, const sbx__row *r) {
  *(int64_t *)ctx = sbx__col_int(r, 0);
  return 1;
}

typedef struct ints_ctx {
  int64_t v[8];
  int n, found;
} ints_ctx;

static int row_ints(void *ctx, const sbx__row *r) {
  ints_ctx *c = ctx;
  for (int i = 0; i < c->n; i++)
    c->v[i] = sbx__col_int(r, i);
  c->found = 1;
  return 1;
}

/* Runs sql and fills the first n int columns of its first row; *found. */
static int exec_ints(sbx_meta *m, const char *sql, const sbx__val *v, int nv,
                     int n, ints_ctx *c) {
  memset(c, 0, sizeof *c);
  c->n = n;
  return sbx__db_exec(DB(m), sql, v, nv, row_ints, c, NULL);
}

/* gallery ids <-> "id,id,id" */
static int gallery_join(const sbx_job_results *r, char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  if (!r)
    return SBX_OK;
  if (r->n_gallery < 0 || r->n_gallery > SBX_JOB_GALLERY_MAX)
    return SBX_EINVAL;
  for (int i = 0; i < r->n_gallery; i++) {
    if (!sbx_id_valid(r->gallery[i]))
      return SBX_EINVAL;
    int k = snprintf(out + o, cap - o, "%s%s", i ? "," : "", r->gallery[i]);
    if (k < 0 || (size_t)k >= cap - o)
      return SBX_ELIMIT;
    o += (size_t)k;
  }
  return SBX_OK;
}

static void gallery_split(const char *s, sbx_job_results *r) {
  r->n_gallery = 0;
  while (*s && r->n_gallery < SBX_JOB_GALLERY_MAX) {
    const char *e = strchr(s, ',');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n > 0 && n < SBX_ID_MAX) {
      memcpy(r->gallery[r->n_gallery], s, n);
      r->gallery[r->n_gallery][n] = 0;
      r->n_gallery++;
    }
    s += n + (e ? 1 : 0);
  }
}

static int results_ok(const sbx_job_results *r) {
  if (!r)
    return 1;
  return (!r->result_id[0] || sbx_id_valid(r->result_id)) &&
         (!r->adv_id[0] || sbx_id_valid(r->adv_id)) && r->n_gallery >= 0 &&
         r->n_gallery <= SBX_JOB_GALLERY_MAX;
}

#define GALLERY_CAP (SBX_JOB_GALLERY_MAX * SBX_ID_MAX)

/* ---- job texts (docs/security.md "Metadata at rest") ----
 * jobs.message, jobs.cancel_reason, job_shards.message, job_shards.phase
 * and job_events.reason are sealed under the tenant's field key into their
 * <column>_sealed twin (the clear column left ''), all with the associated
 * data "jobs.text|<tenant>|<job id>": one label and row id for every text
 * of a job, so statements can still copy a text from one column to another
 * in SQL (a cancel reason becomes the job's message, a shard's message an
 * event's reason). Texts written as SQL literals by the code itself
 * ('started', 'succeeded', claim events naming the worker) stay clear until
 * the next store open seals them. Empty texts are stored clear. */
#define JOB_TEXT "jobs.text"

typedef struct jtext {
  const char *clear; /* the clear column's value: the text, or "" */
  uint8_t *sealed;   /* malloc'd; NULL: not sealed */
  size_t n;
} jtext;

/* Seals s (NULL: "") for job of tenant when m seals; t->clear is then "".
 * A shredded tenant's text, which nothing can seal any more, is dropped
 * (stored as ""), so its jobs still end and their leases still expire; a
 * tenant without a field key keeps it clear.
 * Free with jt_free (also after an error). */
static int jt_seal(sbx_meta *m, const char *tenant, const char *job,
                   const char *s, jtext *t) {
  t->clear = s ? s : "";
  t->sealed = NULL;
  t->n = 0;
  if (!*t->clear || !sbx__meta_sealing(m))
    return SBX_OK;
  int rc = sbx__meta_seal(m, tenant, JOB_TEXT, job, t->clear, strlen(t->clear),
                          &t->sealed, &t->n);
  sbx_tenant ten;
  uint8_t fk[96];
  size_t fkn = sizeof fk;
  if ((rc == SBX_EKEY || rc == SBX_ECRYPTO) &&
      !sbx_meta_tenant_get(m, tenant, &ten) && ten.state == SBX_TENANT_SHREDDED)
    rc = SBX_OK;
  else if (rc == SBX_EKEY &&
           sbx_meta_secret_get(m, tenant, "field-key", fk, &fkn) ==
               SBX_ENOTFOUND) /* no field key at all (as audit rows of such
                                 tenants): clear, sealed at a later open */
    return SBX_OK;
  if (!rc)
    t->clear = "";
  return rc;
}

/* The sealed twin's parameter: the sealed bytes, or NULL. */
static sbx__val jt_val(const jtext *t) {
  return t->sealed ? SBX_VB(t->sealed, t->n) : SBX_VNULL;
}

static void jt_free(jtext *t) {
  free(t->sealed);
  t->sealed = NULL;
}

/* A job text from a row: column col_sealed opened, or col_plain copied
 * (still plaintext). A text of a shredded tenant reads as "". */
static int jt_read(sbx_meta *m, const sbx__row *r, int col_sealed,
                   int col_plain, const char *tenant, const char *job,
                   char *out, size_t cap) {
  int rc = sbx__meta_col_text(m, r, col_sealed, col_plain, tenant, JOB_TEXT,
                              job, out, cap);
  if (rc == SBX_EKEY) {
    out[0] = 0;
    rc = SBX_OK;
  }
  return rc;
}

/* ---- events ---- */

/* Inserts one event with its seq already allocated. */
static int ev_insert(sbx_meta *m, const char *tenant, const char *job,
                     int64_t seq, int64_t ts, int64_t shard, int64_t from,
                     int64_t to, const char *reason) {
  char r[SBX_JOB_MSG_MAX];
  snprintf(r, sizeof r, "%s", reason ? reason : "");
  jtext t;
  int rc = jt_seal(m, tenant, job, r, &t);
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(job),     SBX_VI(seq),
                  SBX_VI(ts),     SBX_VI(shard),   SBX_VI(from),
                  SBX_VI(to),     SBX_VT(t.clear), jt_val(&t)};
  if (!rc)
    rc = sbx__db_exec(DB(m),
                      "INSERT INTO job_events (tenant_id, job_id, seq, ts, "
                      "shard, from_state, to_state, reason, reason_sealed) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                      v, 9, NULL, NULL, NULL);
  jt_free(&t);
  return rc;
}

/* Appends an event. Its seq comes from jobs.event_seq, bumped by an UPDATE
 * of the job row, which takes that row's lock: a job's events never
 * collide, whoever writes them. PostgreSQL: one statement. */
static int ev_add(sbx_meta *m, const char *tenant, const char *job, int64_t ts,
                  int64_t shard, int64_t from, int64_t to, const char *reason) {
  char r[SBX_JOB_MSG_MAX];
  snprintf(r, sizeof r, "%s", reason ? reason : "");
  if (PG(m)) {
    jtext t;
    int rc = jt_seal(m, tenant, job, r, &t);
    sbx__val v[] = {SBX_VT(tenant), SBX_VT(job), SBX_VI(ts),      SBX_VI(shard),
                    SBX_VI(from),   SBX_VI(to),  SBX_VT(t.clear), jt_val(&t)};
    if (!rc)
      rc = sbx__db_exec(
          DB(m),
          "WITH j AS (UPDATE jobs SET event_seq = event_seq + 1 WHERE "
          "tenant_id = $1 AND id = $2 RETURNING event_seq) INSERT INTO "
          "job_events (tenant_id, job_id, seq, ts, shard, from_state, "
          "to_state, reason, reason_sealed) SELECT $1, $2, j.event_seq, $3, "
          "$4, $5, $6, $7, $8 FROM j",
          v, 8, NULL, NULL, NULL);
    jt_free(&t);
    return rc;
  }
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(job)};
  int64_t seq = 0;
  int rc = sbx__db_exec(DB(m),
                        "UPDATE jobs SET event_seq = event_seq + 1 WHERE "
                        "tenant_id = $1 AND id = $2 RETURNING event_seq",
                        v, 2, row_int1, &seq, NULL);
  if (!rc && !seq)
    rc = SBX_ENOTFOUND;
  return rc ? rc : ev_insert(m, tenant, job, seq, ts, shard, from, to, r);
}

/* ---- limits ---- */

#define LIM_COLS                                                               \
  "default_wall_seconds, max_wall_seconds, default_memory_bytes, "             \
  "max_memory_bytes, default_samples, max_samples, max_shards, "               \
  "max_concurrency"

static int row_limits(void *ctx, const sbx__row *r) {
  int64_t *o = ctx;
  for (int i = 0; i < 8; i++)
    o[i] = sbx__col_int(r, i);
  return 1;
}

static void lim_to_arr(const sbx_job_limit_set *l, int64_t a[8]) {
  a[0] = l->default_wall_seconds;
  a[1] = l->max_wall_seconds;
  a[2] = l->default_memory_bytes;
  a[3] = l->max_memory_bytes;
  a[4] = l->default_samples;
  a[5] = l->max_samples;
  a[6] = l->max_shards;
  a[7] = l->max_concurrency;
}

static void arr_to_lim(const int64_t a[8], sbx_job_limit_set *l) {
  l->default_wall_seconds = a[0];
  l->max_wall_seconds = a[1];
  l->default_memory_bytes = a[2];
  l->max_memory_bytes = a[3];
  l->default_samples = a[4];
  l->max_samples = a[5];
  l->max_shards = a[6];
  l->max_concurrency = a[7];
}

int sbx_meta_job_limits_set(sbx_meta *m, const char *tenant_id,
                            const sbx_job_limit_set *l, int64_t now) {
  REQUIRE_ID(tenant_id);
  if (!l)
    return SBX_EINVAL;
  int64_t a[8];
  lim_to_arr(l, a);
  for (int i = 0; i < 8; i++) {
    /* -1 ("none") only for the default sample count and the quota */
    if (a[i] < -1 || (a[i] == -1 && i != 4 && i != 7))
      return SBX_EINVAL;
  }
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(a[0]), SBX_VI(a[1]), SBX_VI(a[2]),
                  SBX_VI(a[3]),      SBX_VI(a[4]), SBX_VI(a[5]), SBX_VI(a[6]),
                  SBX_VI(a[7]),      SBX_VI(now)};
  return sbx__db_exec(
      DB(m),
      "INSERT INTO job_limits (tenant_id, " LIM_COLS ", updated_at) VALUES "
      "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (tenant_id) DO "
      "UPDATE SET default_wall_seconds = excluded.default_wall_seconds, "
      "max_wall_seconds = excluded.max_wall_seconds, default_memory_bytes = "
      "excluded.default_memory_bytes, max_memory_bytes = "
      "excluded.max_memory_bytes, default_samples = excluded.default_samples, "
      "max_samples = excluded.max_samples, max_shards = excluded.max_shards, "
      "max_concurrency = excluded.max_concurrency, updated_at = "
      "excluded.updated_at",
      v, 10, NULL, NULL, NULL);
}

static int limits_row(sbx_meta *m, const char *tenant_id, int64_t a[8]) {
  memset(a, 0, 8 * sizeof a[0]);
  sbx__val v[] = {SBX_VT(tenant_id)};
  return sbx__db_exec(DB(m),
                      "SELECT " LIM_COLS " FROM job_limits WHERE tenant_id = "
                      "$1",
                      v, 1, row_limits, a, NULL);
}

int sbx_meta_job_limits_get(sbx_meta *m, const char *tenant_id, int effective,
                            sbx_job_limit_set *out) {
  if (!m || !out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  REQUIRE_ID(tenant_id);
  int64_t t[8], s[8], r[8];
  int rc = limits_row(m, tenant_id, t);
  if (rc || !effective) {
    if (!rc)
      arr_to_lim(t, out);
    return rc;
  }
  if ((rc = limits_row(m, SBX_SYS_TENANT, s)))
    return rc;
  static const int64_t builtin[8] = {BUILTIN_WALL_DEFAULT,
                                     BUILTIN_WALL_MAX,
                                     BUILTIN_MEM_DEFAULT,
                                     BUILTIN_MEM_MAX,
                                     -1,
                                     BUILTIN_SAMPLES_MAX,
                                     BUILTIN_SHARDS_MAX,
                                     -1};
  for (int i = 0; i < 8; i++) {
    r[i] = t[i] ? t[i] : s[i] ? s[i] : builtin[i];
    if (r[i] < 0) /* "none" */
      r[i] = 0;
  }
  for (int i = 0; i < 6; i += 2) /* a default above its cap: the cap */
    if (r[i] > r[i + 1])
      r[i] = r[i + 1];
  arr_to_lim(r, out);
  return SBX_OK;
}

/* Applies defaults and caps to one limit; SBX_ELIMIT (or clamps) above
 * the cap. */
static int limit_apply(int64_t *val, int64_t def, int64_t cap, int clamp,
                       const char *name, char *why) {
  if (*val < 0) {
    set_why(why, "%s %lld is negative", (long long)*val, 0, name);
    return SBX_EINVAL;
  }
  if (*val == 0)
    *val = def;
  if (cap > 0 && *val > cap) {
    if (!clamp) {
      set_why(why, "%s %lld exceeds the tenant cap %lld", (long long)*val,
              (long long)cap, name);
      return SBX_ELIMIT;
    }
    *val = cap;
  }
  return SBX_OK;
}

/* ---- jobs ---- */

#define JOB_COLS                                                               \
  "id, project_id, model_id, dataset_id, kind, state, cancel_requested, "      \
  "message, wall_seconds, memory_bytes, samples, shards, max_attempts, "       \
  "shards_done, created_at, started_at, finished_at, updated_at, "             \
  "result_id, adv_id, gallery, seq, message_sealed"

/* result_id, adv_id, gallery ("id,id,...") at columns col..col+2 */
static int fill_results(sbx_job_results *res, const sbx__row *r, int col) {
  char gal[GALLERY_CAP];
  int rc = sbx__col_text(r, col, res->result_id, sizeof res->result_id);
  if (!rc)
    rc = sbx__col_text(r, col + 1, res->adv_id, sizeof res->adv_id);
  if (!rc)
    rc = sbx__col_text(r, col + 2, gal, sizeof gal);
  if (!rc)
    gallery_split(gal, res);
  return rc;
}

static int fill_job(sbx_meta *m, const char *tenant, sbx_job *j,
                    const sbx__row *r) {
  memset(j, 0, sizeof *j);
  int rc = sbx__col_text(r, 0, j->id, sizeof j->id);
  if (!rc)
    rc = sbx__col_text(r, 1, j->project_id, sizeof j->project_id);
  if (!rc)
    rc = sbx__col_text(r, 2, j->model_id, sizeof j->model_id);
  if (!rc)
    rc = sbx__col_text(r, 3, j->dataset_id, sizeof j->dataset_id);
  if (!rc)
    rc = sbx__col_text(r, 4, j->kind, sizeof j->kind);
  j->state = sbx__col_int(r, 5);
  j->cancel_requested = sbx__col_int(r, 6);
  if (!rc)
    rc = jt_read(m, r, 22, 7, tenant, j->id, j->message, sizeof j->message);
  j->limits.wall_seconds = sbx__col_int(r, 8);
  j->limits.memory_bytes = sbx__col_int(r, 9);
  j->limits.samples = sbx__col_int(r, 10);
  j->limits.shards = sbx__col_int(r, 11);
  j->max_attempts = sbx__col_int(r, 12);
  j->shards_done = sbx__col_int(r, 13);
  j->created_at = sbx__col_int(r, 14);
  j->started_at = sbx__col_int(r, 15);
  j->finished_at = sbx__col_int(r, 16);
  j->updated_at = sbx__col_int(r, 17);
  if (!rc)
    rc = fill_results(&j->results, r, 18);
  j->seq = sbx__col_int(r, 21);
  j->progress.robust_accuracy = -1;
  j->progress.eta_seconds = -1;
  return rc == SBX_ECRYPTO ? rc : rc ? SBX_EFORMAT : SBX_OK;
}

#define SHARD_COLS                                                             \
  "shard, sample_begin, sample_end, state, attempts, worker_id, "              \
  "lease_expires, started_at, finished_at, message, progress_ppm, phase, "     \
  "robust_ppm, eta_seconds, result_id, adv_id, gallery, progress_at, "         \
  "message_sealed, phase_sealed"

/* A shard of job (tenant) from a SHARD_COLS row, its texts opened. */
static int fill_shard(sbx_meta *m, const char *tenant, const char *job,
                      sbx_job_shard *s, int64_t *progress_at,
                      const sbx__row *r) {
  memset(s, 0, sizeof *s);
  s->shard = sbx__col_int(r, 0);
  s->sample_begin = sbx__col_int(r, 1);
  s->sample_end = sbx__col_int(r, 2);
  s->state = sbx__col_int(r, 3);
  s->attempts = sbx__col_int(r, 4);
  int rc = sbx__col_text(r, 5, s->worker_id, sizeof s->worker_id);
  s->lease_expires = sbx__col_int(r, 6);
  s->started_at = sbx__col_int(r, 7);
  s->finished_at = sbx__col_int(r, 8);
  if (!rc)
    rc = jt_read(m, r, 18, 9, tenant, job, s->message, sizeof s->message);
  s->progress.fraction = (double)sbx__col_int(r, 10) / 1e6;
  if (!rc)
    rc = jt_read(m, r, 19, 11, tenant, job, s->progress.phase,
                 sizeof s->progress.phase);
  int64_t rb = sbx__col_int(r, 12);
  s->progress.robust_accuracy = rb < 0 ? -1.0 : (double)rb / 1e6;
  s->progress.eta_seconds = sbx__col_int(r, 13);
  if (!rc)
    rc = fill_results(&s->results, r, 14);
  if (progress_at)
    *progress_at = sbx__col_int(r, 17);
  return rc == SBX_ECRYPTO ? rc : rc ? SBX_EFORMAT : SBX_OK;
}

typedef struct job_one {
  sbx_meta *m;
  const char *tenant;
  sbx_job *j;
  int found, rc;
} job_one;

static int row_job_one(void *ctx, const sbx__row *r) {
  job_one *o = ctx;
  o->found = 1;
  o->rc = fill_job(o->m, o->tenant, o->j, r);
  return o->rc ? o->rc : 1;
}

/* Progress of the job over its shards: fraction and robust accuracy
 * weighted by the shards' sample counts, the phase of the shard that
 * reported last, the largest ETA of the running shards. */
typedef struct agg_ctx {
  sbx_meta *m;
  const char *tenant, *job;
  double w, wf, wr, wrw;
  int64_t last_at, eta;
  char phase[SBX_JOB_PHASE_MAX];
  int rc;
} agg_ctx;

static int row_agg(void *ctx, const sbx__row *r) {
  agg_ctx *a = ctx;
  sbx_job_shard s;
  int64_t at = 0;
  if ((a->rc = fill_shard(a->m, a->tenant, a->job, &s, &at, r)))
    return a->rc;
  double w = (double)(s.sample_end - s.sample_begin);
  if (w <= 0)
    w = 1;
  double f = s.state == SBX_JOB_SUCCEEDED ? 1.0 : s.progress.fraction;
  a->w += w;
  a->wf += w * f;
  if (s.progress.robust_accuracy >= 0) {
    a->wr += w * s.progress.robust_accuracy;
    a->wrw += w;
  }
  if (s.state == SBX_JOB_RUNNING) {
    if (at >= a->last_at && s.progress.phase[0]) {
      a->last_at = at;
      snprintf(a->phase, sizeof a->phase, "%s", s.progress.phase);
    }
    if (s.progress.eta_seconds > a->eta)
      a->eta = s.progress.eta_seconds;
  }
  return 0;
}

static int job_aggregate(sbx_meta *m, const char *tenant, sbx_job *j) {
  agg_ctx a;
  memset(&a, 0, sizeof a);
  a.eta = -1;
  a.last_at = -1;
  a.m = m;
  a.tenant = tenant;
  a.job = j->id;
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(j->id)};
  int rc = sbx__db_exec(DB(m),
                        "SELECT " SHARD_COLS " FROM job_shards WHERE "
                        "tenant_id = $1 AND job_id = $2 ORDER BY shard",
                        v, 2, row_agg, &a, NULL);
  if (rc)
    return rc;
  j->progress.fraction = a.w > 0 ? a.wf / a.w : 0;
  if (j->state == SBX_JOB_SUCCEEDED)
    j->progress.fraction = 1.0;
  j->progress.robust_accuracy = a.wrw > 0 ? a.wr / a.wrw : -1;
  j->progress.eta_seconds = sbx_job_state_terminal(j->state) ? -1 : a.eta;
  snprintf(j->progress.phase, sizeof j->progress.phase, "%s", a.phase);
  return SBX_OK;
}

int sbx_meta_job_get(sbx_meta *m, const char *tenant_id, const char *project_id,
                     const char *job_id, sbx_job *out) {
  if (!m || !out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  if (project_id && !sbx_id_valid(project_id))
    return SBX_EINVAL;
  job_one o = {m, tenant_id, out, 0, 0};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id),
                  project_id ? SBX_VT(project_id) : SBX_VNULL};
  int rc = sbx__db_exec(
      DB(m),
      "SELECT " JOB_COLS " FROM jobs WHERE tenant_id = $1 "
      "AND id = $2 AND (CAST($3 AS TEXT) IS NULL OR project_id = $3)",
      v, 3, row_job_one, &o, NULL);
  if (!rc && !o.found)
    rc = SBX_ENOTFOUND;
  if (!rc)
    rc = job_aggregate(m, tenant_id, out);
  if (rc)
    memset(out, 0, sizeof *out);
  return rc;
}

typedef struct spec_ctx {
  char *out;
  size_t cap, n;
  int found;
} spec_ctx;

typedef struct sealed_spec {
  sbx_meta *m;
  const char *tenant, *job;
  spec_ctx *s;
} sealed_spec;

/* Row (spec, spec_sealed): the spec opened (or, not yet sealed, copied). */
static int row_sealed_spec(void *ctx, const sbx__row *r) {
  sealed_spec *c = ctx;
  c->s->found = 1;
  int rc = sbx__meta_col_text(c->m, r, 1, 0, c->tenant, "jobs.spec", c->job,
                              c->s->out, c->s->cap);
  if (rc)
    return rc;
  c->s->n = strlen(c->s->out);
  return 1;
}

int sbx_meta_job_spec(sbx_meta *m, const char *tenant_id, const char *job_id,
                      char *out, size_t cap, size_t *len) {
  if (len)
    *len = 0;
  if (cap)
    out[0] = 0;
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  if (!cap)
    return SBX_ELIMIT;
  spec_ctx s = {out, cap, 0, 0};
  sealed_spec c = {m, tenant_id, job_id, &s};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id)};
  int rc = sbx__db_exec(DB(m),
                        "SELECT spec, spec_sealed FROM jobs WHERE tenant_id = "
                        "$1 AND id = $2",
                        v, 2, row_sealed_spec, &c, NULL);
  if (!rc && !s.found)
    rc = SBX_ENOTFOUND;
  if (rc && cap)
    out[0] = 0;
  if (!rc && len)
    *len = s.n;
  return rc;
}

int sbx_meta_job_create(sbx_meta *m, const char *tenant_id,
                        const sbx_job_new *j, int64_t now, sbx_job *out,
                        char *why) {
  if (out)
    memset(out, 0, sizeof *out);
  if (why)
    why[0] = 0;
  if (!j || !sbx_id_valid(tenant_id) || !sbx_id_valid(j->id) ||
      !sbx_id_valid(j->project_id) || !sbx_id_valid(j->model_id) ||
      !sbx_id_valid(j->dataset_id) || !sbx_id_valid(j->kind) ||
      strlen(j->kind) >= SBX_KIND_MAX || tenant_id[0] == '_') {
    if (why)
      snprintf(why, SBX_JOB_MSG_MAX, "invalid id or kind");
    return SBX_EINVAL;
  }
  if (!j->spec || strlen(j->spec) > SBX_JOB_SPEC_MAX) {
    if (why)
      snprintf(why, SBX_JOB_MSG_MAX, "spec missing or larger than %d bytes",
               SBX_JOB_SPEC_MAX);
    return j->spec ? SBX_ELIMIT : SBX_EINVAL;
  }
  if (j->max_attempts < 0 || j->max_attempts > 100) {
    if (why)
      snprintf(why, SBX_JOB_MSG_MAX, "max_attempts must be 0..100");
    return SBX_EINVAL;
  }
  /* an active tenant only (a frozen one is under incident response) */
  int64_t tstate = -1;
  sbx__val tv[] = {SBX_VT(tenant_id)};
  int rc = sbx__db_exec(DB(m), "SELECT state FROM tenants WHERE id = $1", tv, 1,
                        row_int1, &tstate, NULL);
  if (!rc && tstate != SBX_TENANT_ACTIVE) {
    if (why)
      snprintf(why, SBX_JOB_MSG_MAX, "%s",
               tstate < 0 ? "no such tenant" : "the tenant is not active");
    rc = tstate < 0 ? SBX_ENOTFOUND : SBX_EPERM;
  }
  if (rc)
    return rc;
  sbx_job_limit_set ls;
  rc = sbx_meta_job_limits_get(m, tenant_id, 1, &ls);
  if (rc)
    return rc;
  sbx_job_limits L = j->limits;
  int clamp = j->clamp;
  if (!rc)
    rc = limit_apply(&L.wall_seconds, ls.default_wall_seconds,
                     ls.max_wall_seconds, clamp, "wall_seconds", why);
  if (!rc)
    rc = limit_apply(&L.memory_bytes, ls.default_memory_bytes,
                     ls.max_memory_bytes, clamp, "memory_bytes", why);
  if (!rc)
    rc = limit_apply(&L.samples, ls.default_samples, ls.max_samples, clamp,
                     "samples", why);
  if (!rc)
    rc = limit_apply(&L.shards, 1, ls.max_shards, clamp, "shards", why);
  if (!rc && L.shards > SBX_JOB_SHARDS_MAX) {
    set_why(why, "%s %lld exceeds the hard cap %lld", (long long)L.shards,
            SBX_JOB_SHARDS_MAX, "shards");
    rc = SBX_ELIMIT;
  }
  if (!rc && L.samples == 0 && L.shards > 1) {
    /* "all samples" is a count unknown here: shards need one */
    if (why)
      snprintf(why, SBX_JOB_MSG_MAX,
               "shards %lld need an explicit sample count",
               (long long)L.shards);
    rc = SBX_EINVAL;
  }
  if (!rc && L.samples > 0 && L.shards > L.samples) {
    set_why(why, "%s %lld exceeds the sample count %lld", (long long)L.shards,
            (long long)L.samples, "shards");
    rc = SBX_EINVAL;
  }
  if (rc)
    return rc;
  int64_t attempts = j->max_attempts ? j->max_attempts : DEFAULT_ATTEMPTS;
  int64_t seq = stamp_us();
  sbx__db *db = DB(m);
  /* the spec is sealed (names, parameters), the clear column left "" */
  uint8_t *sealed = NULL;
  size_t sealed_n = 0;
  if (sbx__meta_sealing(m) &&
      (rc = sbx__meta_seal(m, tenant_id, "jobs.spec", j->id, j->spec,
                           strlen(j->spec), &sealed, &sealed_n)))
    return rc;
  if ((rc = sbx__db_begin(db))) {
    free(sealed);
    return rc;
  }
  sbx__val v[] = {SBX_VT(tenant_id),
                  SBX_VT(j->id),
                  SBX_VT(j->project_id),
                  SBX_VT(j->model_id),
                  SBX_VT(j->dataset_id),
                  SBX_VT(j->kind),
                  SBX_VT(sealed ? "" : j->spec),
                  SBX_VI(L.wall_seconds),
                  SBX_VI(L.memory_bytes),
                  SBX_VI(L.samples),
                  SBX_VI(L.shards),
                  SBX_VI(attempts),
                  SBX_VI(seq),
                  SBX_VI(now),
                  sealed ? SBX_VB(sealed, sealed_n) : SBX_VNULL};
  rc = sbx__db_exec(db,
                    "INSERT INTO jobs (tenant_id, id, project_id, model_id, "
                    "dataset_id, kind, spec, state, message, wall_seconds, "
                    "memory_bytes, samples, shards, max_attempts, seq, "
                    "created_at, updated_at, spec_sealed) VALUES ($1, $2, $3, "
                    "$4, $5, $6, $7, 0, 'submitted', $8, $9, $10, $11, $12, "
                    "$13, $14, $14, $15)",
                    v, 15, NULL, NULL, NULL);
  free(sealed);
  for (int64_t k = 0; !rc && k < L.shards; k++) {
    int64_t b = L.samples * k / L.shards, e = L.samples * (k + 1) / L.shards;
    sbx__val sv[] = {SBX_VT(tenant_id),
                     SBX_VT(j->id),
                     SBX_VI(k),
                     SBX_VI(b),
                     SBX_VI(e),
                     SBX_VI(seq * SBX_JOB_SHARDS_MAX + k),
                     SBX_VI(L.wall_seconds)};
    rc = sbx__db_exec(db,
                      "INSERT INTO job_shards (tenant_id, job_id, shard, "
                      "sample_begin, sample_end, qseq, wall_seconds) VALUES "
                      "($1, $2, $3, $4, $5, $6, $7)",
                      sv, 7, NULL, NULL, NULL);
  }
  if (!rc) {
    char reason[SBX_JOB_MSG_MAX];
    snprintf(reason, sizeof reason, "submitted (%lld shard%s)",
             (long long)L.shards, L.shards == 1 ? "" : "s");
    rc = ev_add(m, tenant_id, j->id, now, -1, -1, SBX_JOB_QUEUED, reason);
  }
  if (!rc) {
    sbx__val qv[] = {SBX_VT(tenant_id), SBX_VI(L.shards)};
    rc = sbx__db_exec(db,
                      "INSERT INTO job_sched (tenant_id, queued) VALUES ($1, "
                      "$2) ON CONFLICT (tenant_id) DO UPDATE SET queued = "
                      "job_sched.queued + excluded.queued",
                      qv, 2, NULL, NULL, NULL);
  }
  if (rc) {
    sbx__db_rollback(db);
    if (rc == SBX_EEXIST && why)
      snprintf(why, SBX_JOB_MSG_MAX, "job id already exists");
    return rc == SBX_ECONFLICT ? SBX_EINVAL : rc; /* FK: no such tenant */
  }
  if ((rc = sbx__db_commit(db)))
    return rc;
  if (out)
    rc = sbx_meta_job_get(m, tenant_id, NULL, j->id, out);
  return rc;
}

typedef struct jlist_ctx {
  sbx_meta *m;
  const char *tenant;
  int (*fn)(void *ctx, const sbx_job *j);
  void *ctx;
  int n;
  char last[SBX_ID_MAX];
  int rc;
} jlist_ctx;

static int row_job_list(void *ctx, const sbx__row *r) {
  jlist_ctx *l = ctx;
  sbx_job j;
  if ((l->rc = fill_job(l->m, l->tenant, &j, r)))
    return l->rc;
  l->n++;
  memcpy(l->last, j.id, sizeof l->last);
  int rc = l->fn(l->ctx, &j);
  return rc < 0 ? rc : rc ? 1 : 0;
}

int sbx_meta_job_list(sbx_meta *m, const char *tenant_id,
                      const char *project_id, int64_t state,
                      const char *after_id, int limit,
                      int (*fn)(void *ctx, const sbx_job *j), void *ctx,
                      char *next) {
  if (next)
    next[0] = 0;
  REQUIRE_ID(tenant_id);
  if (after_id && !*after_id)
    after_id = NULL;
  if ((project_id && !sbx_id_valid(project_id)) ||
      (after_id && !sbx_id_valid(after_id)) || limit < 1 || limit > 1000 || !fn)
    return SBX_EINVAL;
  jlist_ctx l;
  memset(&l, 0, sizeof l);
  l.m = m;
  l.tenant = tenant_id;
  l.fn = fn;
  l.ctx = ctx;
  sbx__val v[] = {SBX_VT(tenant_id),
                  project_id ? SBX_VT(project_id) : SBX_VNULL, SBX_VI(state),
                  after_id ? SBX_VT(after_id) : SBX_VNULL, SBX_VI(limit)};
  /* keyset on (seq, id); progress is not aggregated in lists (one query
   * per page): sbx_meta_job_get has it */
  int rc = sbx__db_exec(
      DB(m),
      "SELECT " JOB_COLS " FROM jobs WHERE tenant_id = $1 AND (CAST($2 AS "
      "TEXT) IS NULL OR project_id = $2) AND (CAST($3 AS BIGINT) < 0 OR "
      "state = $3) AND (CAST($4 AS TEXT) IS NULL OR (seq, id) < (SELECT "
      "a.seq, a.id FROM jobs a WHERE a.tenant_id = $1 AND a.id = $4)) ORDER "
      "BY seq DESC, id DESC LIMIT $5",
      v, 5, row_job_list, &l, NULL);
  if (!rc && next && l.n == limit)
    memcpy(next, l.last, SBX_ID_MAX);
  return rc;
}

typedef struct shards_ctx {
  sbx_meta *m;
  const char *tenant, *job;
  int (*fn)(void *ctx, const sbx_job_shard *s);
  void *ctx;
  int rc;
} shards_ctx;

static int row_shard_list(void *ctx, const sbx__row *r) {
  shards_ctx *l = ctx;
  sbx_job_shard s;
  if ((l->rc = fill_shard(l->m, l->tenant, l->job, &s, NULL, r)))
    return l->rc;
  int rc = l->fn(l->ctx, &s);
  return rc < 0 ? rc : rc ? 1 : 0;
}

int sbx_meta_job_shards(sbx_meta *m, const char *tenant_id, const char *job_id,
                        int (*fn)(void *ctx, const sbx_job_shard *s),
                        void *ctx) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  if (!fn)
    return SBX_EINVAL;
  shards_ctx l = {m, tenant_id, job_id, fn, ctx, 0};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id)};
  return sbx__db_exec(DB(m),
                      "SELECT " SHARD_COLS " FROM job_shards WHERE tenant_id "
                      "= $1 AND job_id = $2 ORDER BY shard",
                      v, 2, row_shard_list, &l, NULL);
}

typedef struct ev_ctx {
  sbx_meta *m;
  const char *tenant, *job;
  int (*fn)(void *ctx, const sbx_job_event *e);
  void *ctx;
} ev_ctx;

static int row_event(void *ctx, const sbx__row *r) {
  ev_ctx *l = ctx;
  sbx_job_event e;
  memset(&e, 0, sizeof e);
  e.seq = sbx__col_int(r, 0);
  e.ts = sbx__col_int(r, 1);
  e.shard = sbx__col_int(r, 2);
  e.from_state = sbx__col_int(r, 3);
  e.to_state = sbx__col_int(r, 4);
  int rc = jt_read(l->m, r, 6, 5, l->tenant, l->job, e.reason, sizeof e.reason);
  if (rc)
    return rc == SBX_ECRYPTO ? rc : SBX_EFORMAT;
  rc = l->fn(l->ctx, &e);
  return rc < 0 ? rc : rc ? 1 : 0;
}

int sbx_meta_job_events(sbx_meta *m, const char *tenant_id, const char *job_id,
                        int64_t after_seq,
                        int (*fn)(void *ctx, const sbx_job_event *e),
                        void *ctx) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  if (!fn)
    return SBX_EINVAL;
  ev_ctx l = {m, tenant_id, job_id, fn, ctx};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id), SBX_VI(after_seq)};
  return sbx__db_exec(
      DB(m),
      "SELECT seq, ts, shard, from_state, to_state, reason, "
      "reason_sealed FROM job_events WHERE tenant_id = $1 AND job_id = $2 "
      "AND seq > $3 ORDER BY seq",
      v, 3, row_event, &l, NULL);
}

/* ---- settling a job after its shards changed ---- */

typedef struct counts_ctx {
  int64_t n[6];
} counts_ctx;

static int row_count_state(void *ctx, const sbx__row *r) {
  counts_ctx *c = ctx;
  int64_t s = sbx__col_int(r, 0);
  if (s >= 0 && s < 6)
    c->n[s] = sbx__col_int(r, 1);
  return 0;
}

typedef struct first_msg_ctx {
  sbx_meta *m;
  const char *tenant, *job;
  int64_t shard;
  char msg[SBX_JOB_MSG_MAX];
  char result_id[SBX_ID_MAX], adv_id[SBX_ID_MAX];
  char gallery[GALLERY_CAP];
  int found;
} first_msg_ctx;

static int row_first_msg(void *ctx, const sbx__row *r) {
  first_msg_ctx *f = ctx;
  f->shard = sbx__col_int(r, 0);
  f->found = 1;
  int rc = jt_read(f->m, r, 5, 1, f->tenant, f->job, f->msg, sizeof f->msg);
  if (rc)
    return rc;
  if (sbx__col_text(r, 2, f->result_id, sizeof f->result_id) ||
      sbx__col_text(r, 3, f->adv_id, sizeof f->adv_id) ||
      sbx__col_text(r, 4, f->gallery, sizeof f->gallery))
    return SBX_EFORMAT;
  return 1;
}

static int first_shard_in(sbx_meta *m, const char *tenant, const char *job,
                          int64_t state, first_msg_ctx *f) {
  memset(f, 0, sizeof *f);
  f->m = m;
  f->tenant = tenant;
  f->job = job;
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(job), SBX_VI(state)};
  return sbx__db_exec(
      DB(m),
      "SELECT shard, message, result_id, adv_id, gallery, "
      "message_sealed FROM job_shards WHERE tenant_id = $1 AND job_id = $2 AND "
      "state = $3 ORDER BY finished_at, shard LIMIT 1",
      v, 3, row_first_msg, f, NULL);
}

typedef struct shard_ids {
  int64_t v[SBX_JOB_SHARDS_MAX];
  int n;
} shard_ids;

static int row_shard_id(void *ctx, const sbx__row *r) {
  shard_ids *s = ctx;
  if (s->n < SBX_JOB_SHARDS_MAX)
    s->v[s->n++] = sbx__col_int(r, 0);
  return 0;
}

/* One job text of a query's single row: columns (clear, sealed). */
typedef struct jt_one {
  sbx_meta *m;
  const char *tenant, *job;
  char *out;
  size_t cap;
} jt_one;

static int row_jt_one(void *ctx, const sbx__row *r) {
  jt_one *o = ctx;
  int rc = jt_read(o->m, r, 1, 0, o->tenant, o->job, o->out, o->cap);
  return rc ? rc : 1;
}

/* The reason given with the cancel request ("cancelled" if none). */
static int job_cancel_reason(sbx_meta *m, const char *tenant, const char *job,
                             char out[SBX_JOB_MSG_MAX]) {
  jt_one o = {m, tenant, job, out, SBX_JOB_MSG_MAX};
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(job)};
  out[0] = 0;
  int rc = sbx__db_exec(DB(m),
                        "SELECT cancel_reason, cancel_reason_sealed FROM jobs "
                        "WHERE tenant_id = $1 AND id = $2",
                        v, 2, row_jt_one, &o, NULL);
  if (!rc && !out[0])
    snprintf(out, SBX_JOB_MSG_MAX, "cancelled");
  return rc;
}

/* Derives the job's state from its shards' (the caller holds the job row
 * lock and runs inside a transaction):
 * - a failed or timed-out shard, or a cancel request: queued shards are
 *   cancelled now, running ones are asked to stop (cancel_requested);
 * - no shard queued or running: the job ends - failed if any shard failed,
 *   else timed_out, else cancelled, else succeeded. */
static int job_settle(sbx_meta *m, const char *tenant, const char *job,
                      int64_t now) {
  sbx__db *db = DB(m);
  ints_ctx jc;
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(job)};
  int rc = exec_ints(m,
                     "SELECT state, cancel_requested, shards FROM jobs WHERE "
                     "tenant_id = $1 AND id = $2",
                     v, 2, 3, &jc);
  if (rc || !jc.found)
    return rc ? rc : SBX_ENOTFOUND;
  int64_t jstate = jc.v[0], cancel = jc.v[1], shards = jc.v[2];
  if (sbx_job_state_terminal(jstate))
    return SBX_OK;
  counts_ctx c;
  memset(&c, 0, sizeof c);
  rc = sbx__db_exec(db,
                    "SELECT state, COUNT(*) FROM job_shards WHERE tenant_id = "
                    "$1 AND job_id = $2 GROUP BY state",
                    v, 2, row_count_state, &c, NULL);
  if (rc)
    return rc;
  int64_t bad = c.n[SBX_JOB_FAILED] + c.n[SBX_JOB_TIMED_OUT];
  char reason[SBX_JOB_MSG_MAX];
  if ((bad || cancel) && c.n[SBX_JOB_QUEUED] > 0) {
    /* stop what has not started */
    if (cancel == 1) {
      rc = job_cancel_reason(m, tenant, job, reason);
    } else {
      snprintf(reason, sizeof reason, "another shard of the job %s",
               c.n[SBX_JOB_FAILED] ? "failed" : "timed out");
    }
    shard_ids ids;
    ids.n = 0;
    jtext t = {"", NULL, 0};
    if (!rc)
      rc = jt_seal(m, tenant, job, reason, &t);
    sbx__val cv[] = {SBX_VT(tenant), SBX_VT(job), SBX_VI(now), SBX_VT(t.clear),
                     jt_val(&t)};
    if (!rc)
      rc = sbx__db_exec(db,
                        "UPDATE job_shards SET state = 4, finished_at = $3, "
                        "message = $4, message_sealed = $5 WHERE tenant_id = "
                        "$1 AND job_id = $2 AND state = 0 RETURNING shard",
                        cv, 5, row_shard_id, &ids, NULL);
    jt_free(&t);
    for (int i = 0; !rc && i < ids.n; i++)
      rc = ev_add(m, tenant, job, now, ids.v[i], SBX_JOB_QUEUED,
                  SBX_JOB_CANCELLED, reason);
    if (!rc && ids.n) {
      sbx__val qv[] = {SBX_VT(tenant), SBX_VI(ids.n)};
      rc = sbx__db_exec(db,
                        "UPDATE job_sched SET queued = queued - $2 WHERE "
                        "tenant_id = $1",
                        qv, 2, NULL, NULL, NULL);
    }
    if (rc)
      return rc;
    c.n[SBX_JOB_CANCELLED] += ids.n;
    c.n[SBX_JOB_QUEUED] -= ids.n;
  }
  if (bad && !cancel && c.n[SBX_JOB_RUNNING] > 0) {
    rc = sbx__db_exec(db,
                      "UPDATE jobs SET cancel_requested = 2 WHERE tenant_id "
                      "= $1 AND id = $2",
                      v, 2, NULL, NULL, NULL);
    if (rc)
      return rc;
  }
  int64_t done = c.n[SBX_JOB_SUCCEEDED];
  if (c.n[SBX_JOB_QUEUED] > 0 || c.n[SBX_JOB_RUNNING] > 0) {
    sbx__val uv[] = {SBX_VT(tenant), SBX_VT(job), SBX_VI(done), SBX_VI(now)};
    return sbx__db_exec(db,
                        "UPDATE jobs SET shards_done = $3, updated_at = $4 "
                        "WHERE tenant_id = $1 AND id = $2",
                        uv, 4, NULL, NULL, NULL);
  }
  /* every shard has ended: so does the job */
  static const int64_t precedence[] = {SBX_JOB_FAILED, SBX_JOB_TIMED_OUT,
                                       SBX_JOB_CANCELLED, SBX_JOB_SUCCEEDED};
  int64_t final = SBX_JOB_SUCCEEDED;
  for (int i = 3; i >= 0; i--)
    if (c.n[precedence[i]])
      final = precedence[i];
  first_msg_ctx f;
  rc = first_shard_in(m, tenant, job, final, &f);
  if (rc)
    return rc;
  if (final == SBX_JOB_SUCCEEDED)
    snprintf(reason, sizeof reason, "%lld of %lld shard%s succeeded",
             (long long)done, (long long)shards, shards == 1 ? "" : "s");
  else if (shards > 1 && final != SBX_JOB_CANCELLED)
    snprintf(reason, sizeof reason, "shard %lld of %lld: %.440s",
             (long long)f.shard + 1, (long long)shards, f.msg);
  else if (final == SBX_JOB_CANCELLED && cancel == 1)
    rc = job_cancel_reason(m, tenant, job, reason);
  else
    snprintf(reason, sizeof reason, "%s", f.msg[0] ? f.msg : "cancelled");
  if (rc)
    return rc;
  /* one shard: its results are the job's */
  int copy = final == SBX_JOB_SUCCEEDED && shards == 1;
  jtext t;
  if ((rc = jt_seal(m, tenant, job, reason, &t))) {
    jt_free(&t);
    return rc;
  }
  sbx__val fv[] = {SBX_VT(tenant),    SBX_VT(job),         SBX_VI(final),
                   SBX_VT(t.clear),   SBX_VI(now),         SBX_VI(done),
                   SBX_VI(copy),      SBX_VT(f.result_id), SBX_VT(f.adv_id),
                   SBX_VT(f.gallery), jt_val(&t)};
  rc = sbx__db_exec(
      db,
      "UPDATE jobs SET state = $3, message = $4, message_sealed = $11, "
      "finished_at = "
      "$5, updated_at = $5, shards_done = $6, result_id = CASE "
      "WHEN CAST($7 AS BIGINT) = 1 THEN $8 ELSE result_id END, adv_id = CASE "
      "WHEN CAST($7 AS BIGINT) = 1 THEN $9 ELSE adv_id END, gallery = CASE "
      "WHEN "
      "CAST($7 AS BIGINT) = 1 THEN $10 ELSE gallery END WHERE tenant_id = $1 "
      "AND id = $2",
      fv, 11, NULL, NULL, NULL);
  jt_free(&t);
  if (!rc)
    rc = ev_add(m, tenant, job, now, -1, jstate, final, reason);
  return rc;
}

/* Takes the job row's lock (PostgreSQL) before events or settling. */
static int job_lock(sbx_meta *m, const char *tenant, const char *job,
                    int64_t now) {
  sbx__val v[] = {SBX_VT(tenant), SBX_VT(job), SBX_VI(now)};
  int64_t ch = 0;
  int rc = sbx__db_exec(DB(m),
                        "UPDATE jobs SET updated_at = $3 WHERE tenant_id = $1 "
                        "AND id = $2",
                        v, 3, NULL, NULL, &ch);
  return rc ? rc : ch ? SBX_OK : SBX_ENOTFOUND;
}

/* ---- cancel, results ---- */

int sbx_meta_job_cancel(sbx_meta *m, const char *tenant_id,
                        const char *project_id, const char *job_id, int64_t now,
                        const char *reason, int64_t *state) {
  if (state)
    *state = -1;
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  if ((project_id && !sbx_id_valid(project_id)) ||
      (reason && strlen(reason) >= SBX_JOB_MSG_MAX))
    return SBX_EINVAL;
  const char *why = reason && *reason ? reason : "cancelled by user";
  sbx__db *db = DB(m);
  int rc = sbx__db_begin(db);
  if (rc)
    return rc;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id)};
  if (PG(m)) /* lock order: shards, job, sched */
    rc = sbx__db_exec(db,
                      "SELECT shard FROM job_shards WHERE tenant_id = $1 AND "
                      "job_id = $2 ORDER BY shard FOR UPDATE",
                      v, 2, NULL, NULL, NULL);
  ints_ctx jc;
  sbx__val pv[] = {SBX_VT(tenant_id), SBX_VT(job_id),
                   project_id ? SBX_VT(project_id) : SBX_VNULL};
  if (!rc)
    rc = exec_ints(
        m,
        PG(m) ? "SELECT state, cancel_requested FROM jobs WHERE "
                "tenant_id = $1 AND id = $2 AND (CAST($3 AS TEXT) IS NULL "
                "OR project_id = $3) FOR UPDATE"
              : "SELECT state, cancel_requested FROM jobs WHERE "
                "tenant_id = $1 AND id = $2 AND (CAST($3 AS TEXT) IS NULL OR "
                "project_id = $3)",
        pv, 3, 2, &jc);
  if (!rc && !jc.found)
    rc = SBX_ENOTFOUND;
  if (!rc && !sbx_job_state_terminal(jc.v[0]) && jc.v[1] != 1) {
    jtext t;
    rc = jt_seal(m, tenant_id, job_id, why, &t);
    sbx__val cv[] = {SBX_VT(tenant_id), SBX_VT(job_id), SBX_VT(t.clear),
                     SBX_VI(now), jt_val(&t)};
    if (!rc)
      rc = sbx__db_exec(db,
                        "UPDATE jobs SET cancel_requested = 1, cancel_reason "
                        "= $3, cancel_reason_sealed = $5, updated_at = $4 "
                        "WHERE tenant_id = $1 AND id = $2",
                        cv, 5, NULL, NULL, NULL);
    jt_free(&t);
    if (!rc && jc.v[0] == SBX_JOB_RUNNING) {
      char note[SBX_JOB_MSG_MAX];
      snprintf(note, sizeof note, "cancel requested: %s", why);
      rc = ev_add(m, tenant_id, job_id, now, -1, SBX_JOB_RUNNING,
                  SBX_JOB_RUNNING, note);
    }
    if (!rc)
      rc = job_settle(m, tenant_id, job_id, now);
  }
  int64_t st = 0;
  if (!rc)
    rc = exec_ints(m, "SELECT state FROM jobs WHERE tenant_id = $1 AND id = $2",
                   v, 2, 1, &jc);
  st = jc.v[0];
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  rc = sbx__db_commit(db);
  if (!rc && state)
    *state = st;
  return rc;
}

int sbx_meta_job_set_results(sbx_meta *m, const char *tenant_id,
                             const char *job_id, int64_t now,
                             const sbx_job_results *r) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  if (!r || !results_ok(r))
    return SBX_EINVAL;
  char gal[GALLERY_CAP];
  int rc = gallery_join(r, gal, sizeof gal);
  if (rc)
    return rc;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id), SBX_VT(r->result_id),
                  SBX_VT(r->adv_id), SBX_VT(gal),    SBX_VI(now)};
  int64_t ch = 0;
  rc = sbx__db_exec(DB(m),
                    "UPDATE jobs SET result_id = $3, adv_id = $4, gallery = "
                    "$5, updated_at = $6 WHERE tenant_id = $1 AND id = $2",
                    v, 6, NULL, NULL, &ch);
  return rc ? rc : ch ? SBX_OK : SBX_ENOTFOUND;
}

/* A sharded job whose shards all succeeded but whose results the server
 * could not merge: succeeded -> failed with the reason, and its event. */
int sbx_meta_job_merge_failed(sbx_meta *m, const char *tenant_id,
                              const char *job_id, int64_t now,
                              const char *reason) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(job_id);
  char why[SBX_JOB_MSG_MAX];
  snprintf(why, sizeof why, "%s", reason && *reason ? reason : "merge failed");
  sbx__db *db = DB(m);
  jtext t;
  int rc = jt_seal(m, tenant_id, job_id, why, &t);
  if (!rc && (rc = sbx__db_begin(db)))
    jt_free(&t);
  if (rc)
    return rc;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(job_id), SBX_VI(SBX_JOB_FAILED),
                  SBX_VT(t.clear),   SBX_VI(now),    SBX_VI(SBX_JOB_SUCCEEDED),
                  jt_val(&t)};
  int64_t ch = 0;
  rc = sbx__db_exec(db,
                    "UPDATE jobs SET state = $3, message = $4, message_sealed "
                    "= $7, updated_at = $5 WHERE tenant_id = $1 AND id = $2 "
                    "AND state = $6",
                    v, 7, NULL, NULL, &ch);
  jt_free(&t);
  if (!rc && ch)
    rc = ev_add(m, tenant_id, job_id, now, -1, SBX_JOB_SUCCEEDED,
                SBX_JOB_FAILED, why);
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  rc = sbx__db_commit(db);
  return rc ? rc : ch ? SBX_OK : SBX_ENOTFOUND;
}

/* ---- leases: requeue ---- */

/* A shard named by a query: columns tenant, job, shard, one number and one
 * text (expired leases: attempts, worker; finishes: wall time, message). */
typedef struct shard_ref {
  sbx_meta *m; /* set: the text is a job text, its sealed form column 5 */
  char tenant[SBX_ID_MAX], job[SBX_ID_MAX];
  int64_t shard, n;
  char text[SBX_JOB_MSG_MAX];
  int found;
} shard_ref;

static int row_shard_ref(void *ctx, const sbx__row *r) {
  shard_ref *e = ctx;
  if (sbx__col_text(r, 0, e->tenant, sizeof e->tenant) ||
      sbx__col_text(r, 1, e->job, sizeof e->job))
    return SBX_EFORMAT;
  int rc =
      e->m ? jt_read(e->m, r, 5, 4, e->tenant, e->job, e->text, sizeof e->text)
           : sbx__col_text(r, 4, e->text, sizeof e->text);
  if (rc)
    return e->m && rc == SBX_ECRYPTO ? rc : SBX_EFORMAT;
  e->shard = sbx__col_int(r, 2);
  e->n = sbx__col_int(r, 3);
  e->found = 1;
  return 1;
}

/* One expired lease, in its own transaction (lock order: shard, job,
 * sched). *did: 0 none left, 1 requeued, 2 failed, 3 cancelled. */
static int requeue_one(sbx_meta *m, int64_t now, int *did) {
  sbx__db *db = DB(m);
  *did = 0;
  int rc = sbx__db_begin(db);
  if (rc)
    return rc;
  shard_ref e; /* n: attempts, text: worker */
  memset(&e, 0, sizeof e);
  sbx__val v[] = {SBX_VI(now)};
  rc = sbx__db_exec(db,
                    PG(m) ? "SELECT tenant_id, job_id, shard, attempts, "
                            "worker_id FROM job_shards WHERE state = 1 AND "
                            "lease_expires < $1 ORDER BY lease_expires LIMIT "
                            "1 FOR UPDATE SKIP LOCKED"
                          : "SELECT tenant_id, job_id, shard, attempts, "
                            "worker_id FROM job_shards WHERE state = 1 AND "
                            "lease_expires < $1 ORDER BY lease_expires LIMIT "
                            "1",
                    v, 1, row_shard_ref, &e, NULL);
  if (rc || !e.found) {
    sbx__db_rollback(db);
    return rc;
  }
  ints_ctx jc;
  sbx__val jv[] = {SBX_VT(e.tenant), SBX_VT(e.job)};
  rc = job_lock(m, e.tenant, e.job, now);
  if (!rc)
    rc = exec_ints(m,
                   "SELECT max_attempts, cancel_requested FROM jobs WHERE "
                   "tenant_id = $1 AND id = $2",
                   jv, 2, 2, &jc);
  int64_t to;
  char reason[SBX_JOB_MSG_MAX];
  if (!rc && jc.v[1]) {
    to = SBX_JOB_CANCELLED;
    snprintf(reason, sizeof reason,
             "worker %.63s lost after the job was asked to stop", e.text);
  } else if (!rc && e.n >= jc.v[0]) {
    to = SBX_JOB_FAILED;
    snprintf(reason, sizeof reason,
             "worker lost %lld times (last: worker %.63s stopped renewing its "
             "lease)",
             (long long)e.n, e.text);
  } else {
    to = SBX_JOB_QUEUED;
    snprintf(reason, sizeof reason,
             "lease expired: worker %.63s lost (attempt %lld of %lld); "
             "re-queued",
             e.text, (long long)e.n, (long long)jc.v[0]);
  }
  jtext t = {"", NULL, 0};
  if (!rc)
    rc = jt_seal(m, e.tenant, e.job, reason, &t);
  sbx__val sv[] = {SBX_VT(e.tenant), SBX_VT(e.job), SBX_VI(e.shard),
                   SBX_VI(to),       SBX_VI(now),   SBX_VT(t.clear),
                   jt_val(&t)};
  if (!rc)
    rc = sbx__db_exec(
        db,
        "UPDATE job_shards SET state = $4, lease_expires = 0, "
        "finished_at = CASE WHEN CAST($4 AS BIGINT) = 0 THEN 0 ELSE CAST($5 AS "
        "BIGINT) END, "
        "message = $6, message_sealed = $7 WHERE tenant_id = $1 AND job_id = "
        "$2 AND shard = $3 AND state = 1",
        sv, 7, NULL, NULL, NULL);
  jt_free(&t);
  if (!rc)
    rc = ev_add(m, e.tenant, e.job, now, e.shard, SBX_JOB_RUNNING, to, reason);
  if (!rc)
    rc = job_settle(m, e.tenant, e.job, now);
  if (!rc && to == SBX_JOB_QUEUED) {
    sbx__val qv[] = {SBX_VT(e.tenant)};
    rc = sbx__db_exec(db,
                      "UPDATE job_sched SET queued = queued + 1 WHERE "
                      "tenant_id = $1",
                      qv, 1, NULL, NULL, NULL);
  }
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  rc = sbx__db_commit(db);
  if (!rc)
    *did = to == SBX_JOB_QUEUED ? 1 : to == SBX_JOB_FAILED ? 2 : 3;
  return rc;
}

/* At most max expired leases, each in its own transaction. */
static int requeue_some(sbx_meta *m, int64_t now, int max, int64_t *requeued,
                        int64_t *failed) {
  for (int i = 0; i < max; i++) {
    int did;
    int rc = requeue_one(m, now, &did);
    if (rc)
      return rc;
    if (!did)
      break;
    if (did == 1 && requeued)
      (*requeued)++;
    if (did == 2 && failed)
      (*failed)++;
  }
  return SBX_OK;
}

int sbx_meta_job_requeue_expired(sbx_meta *m, int64_t now, int64_t *requeued,
                                 int64_t *failed) {
  return requeue_some(m, now, 1000000, requeued, failed);
}

/* ---- claim ---- */

/* Tenants in line: active, with queued shards; their running shards and
 * concurrency quota (0: none). SYS: the deployment limits row's id. */
#define CAND_COLS                                                              \
  "s.tenant_id, (SELECT COUNT(*) FROM job_shards r WHERE r.tenant_id = "       \
  "s.tenant_id AND r.state = 1) AS running, COALESCE(NULLIF("                  \
  "l.max_concurrency, 0), NULLIF(d.max_concurrency, 0), 0) AS quota, "         \
  "s.last_served"
#define CAND_FROM(SYS)                                                         \
  " FROM job_sched s JOIN tenants t ON t.id = s.tenant_id AND t.state = 0 "    \
  "LEFT JOIN job_limits l ON l.tenant_id = s.tenant_id LEFT JOIN job_limits "  \
  "d ON d.tenant_id = " SYS " WHERE s.queued > 0"

typedef struct cand {
  char tenant[SBX_ID_MAX];
  int64_t running, quota;
} cand;

typedef struct cands_ctx {
  cand c[32];
  int n;
} cands_ctx;

static int row_cand(void *ctx, const sbx__row *r) {
  cands_ctx *c = ctx;
  if (c->n >= 32)
    return 1;
  cand *x = &c->c[c->n];
  if (sbx__col_text(r, 0, x->tenant, sizeof x->tenant))
    return 0; /* not an id: skip */
  x->running = sbx__col_int(r, 1);
  x->quota = sbx__col_int(r, 2);
  if (x->quota <= 0 || x->running < x->quota)
    c->n++;
  return 0;
}

typedef struct picked_ctx {
  char job[SBX_ID_MAX];
  int64_t shard, begin, end, attempts;
  int found;
  sbx_job_claim *out;
  int off;       /* first shard column (1: the tenant comes first) */
  int candidate; /* off 1: a tenant was in line */
} picked_ctx;

/* job columns of a claim: project, model, dataset, kind, limits */
static int claim_job_cols(sbx_job_claim *c, const sbx__row *r, int col) {
  if (sbx__col_text(r, col, c->project_id, sizeof c->project_id) ||
      sbx__col_text(r, col + 1, c->model_id, sizeof c->model_id) ||
      sbx__col_text(r, col + 2, c->dataset_id, sizeof c->dataset_id) ||
      sbx__col_text(r, col + 3, c->kind, sizeof c->kind))
    return SBX_EFORMAT;
  c->limits.wall_seconds = sbx__col_int(r, col + 4);
  c->limits.memory_bytes = sbx__col_int(r, col + 5);
  c->limits.samples = sbx__col_int(r, col + 6);
  c->limits.shards = sbx__col_int(r, col + 7);
  c->shards = c->limits.shards;
  return SBX_OK;
}

/* PostgreSQL: shard columns then the job's; SQLite: shard columns only */
static int row_picked(void *ctx, const sbx__row *r) {
  picked_ctx *p = ctx;
  int o = p->off;
  if (o) { /* the fair-share choice, then maybe no shard (NULLs) */
    p->candidate = 1;
    if (sbx__col_text(r, 0, p->out->tenant_id, sizeof p->out->tenant_id))
      return SBX_EFORMAT;
    if (sbx__col_null(r, o))
      return 1;
  }
  if (sbx__col_text(r, o, p->job, sizeof p->job))
    return SBX_EFORMAT;
  p->shard = sbx__col_int(r, o + 1);
  p->begin = sbx__col_int(r, o + 2);
  p->end = sbx__col_int(r, o + 3);
  p->attempts = sbx__col_int(r, o + 4);
  p->found = 1;
  if (r->backend == 2 && claim_job_cols(p->out, r, o + 5))
    return SBX_EFORMAT;
  return 1;
}

static int row_claim_job(void *ctx, const sbx__row *r) {
  int rc = claim_job_cols(ctx, r, 0);
  return rc ? rc : 1;
}

/* The PostgreSQL claim statement, in pieces shared by the two ways of
 * choosing the shard ($2 worker, $3 token hash, $4 lease expiry, $5 now,
 * $6/$7 event reasons, $8 served stamp). sh: the shard (its key compared
 * with a SKIP LOCKED subquery that follows CLAIM_SHARD_SET); j: the job
 * (queued -> running on its first claim; SET sees the old row, so claims
 * = 1 after it means "first"; updating it takes its lock and numbers the
 * events); e: the events; q: last, the tenant's row (joined to j, so
 * locked after it: lock order kept). */
#define CLAIM_SHARD_SET                                                        \
  "UPDATE job_shards AS u SET state = 1, attempts = attempts + 1, "            \
  "worker_id = $2, token_hash = $3, lease_expires = $4, started_at = $5, "     \
  "finished_at = 0, message = '', message_sealed = NULL, progress_ppm = 0, "   \
  "phase = '', phase_sealed = NULL, robust_ppm = -1, eta_seconds = -1, "       \
  "violation = 0, progress_at = $5 WHERE u.ctid = "
#define CLAIM_REST                                                             \
  " AND u.state = 0 RETURNING u.tenant_id, u.job_id, u.shard, "                \
  "u.sample_begin, u.sample_end, u.attempts), "                                \
  "j AS (UPDATE jobs SET state = 1, claims = jobs.claims + 1, started_at = "   \
  "CASE WHEN jobs.claims = 0 THEN $5 ELSE jobs.started_at END, message = "     \
  "CASE WHEN jobs.claims = 0 THEN 'started' ELSE jobs.message END, "           \
  "message_sealed = CASE WHEN jobs.claims = 0 THEN NULL ELSE "                 \
  "jobs.message_sealed END, "                                                  \
  "updated_at = $5, event_seq = jobs.event_seq + CASE WHEN jobs.claims = 0 "   \
  "THEN 2 ELSE 1 END FROM sh WHERE jobs.tenant_id = sh.tenant_id AND "         \
  "jobs.id = sh.job_id RETURNING jobs.tenant_id, jobs.project_id, "            \
  "jobs.model_id, jobs.dataset_id, jobs.kind, jobs.wall_seconds, "             \
  "jobs.memory_bytes, jobs.samples, jobs.shards, jobs.claims, "                \
  "jobs.event_seq), "                                                          \
  "e AS (INSERT INTO job_events (tenant_id, job_id, seq, ts, shard, "          \
  "from_state, to_state, reason) SELECT sh.tenant_id, sh.job_id, "             \
  "j.event_seq - 1, $5, -1, 0, 1, CAST($6 AS TEXT) FROM sh, j WHERE "          \
  "j.claims = 1 UNION ALL SELECT sh.tenant_id, sh.job_id, j.event_seq, $5, "   \
  "sh.shard, 0, 1, CAST($7 AS TEXT) || CAST(sh.attempts AS TEXT) || ')' "      \
  "FROM sh, j), "                                                              \
  "q AS (UPDATE job_sched SET queued = job_sched.queued - 1, last_served = "   \
  "$8 FROM j WHERE job_sched.tenant_id = j.tenant_id RETURNING 1)"
#define CLAIM_OUT_COLS                                                         \
  "sh.job_id, sh.shard, sh.sample_begin, sh.sample_end, sh.attempts, "         \
  "j.project_id, j.model_id, j.dataset_id, j.kind, j.wall_seconds, "           \
  "j.memory_bytes, j.samples, j.shards"

/* Tries to claim the oldest queued shard of one tenant, atomically: on
 * PostgreSQL one statement (the queue's hot path), plus BEGIN, a count
 * and COMMIT when the tenant has a quota; on SQLite a few statements in
 * one BEGIN IMMEDIATE transaction. SBX_ENOTFOUND: nothing claimable there
 * (none queued, all locked by other claimers, or the quota filled up
 * meanwhile). */
static int claim_in_tenant(sbx_meta *m, const cand *t, const char *worker,
                           int64_t lease, int64_t now, const uint8_t *hash,
                           sbx_job_claim *out) {
  sbx__db *db = DB(m);
  int pg = PG(m);
  /* PostgreSQL without a quota: one statement, atomic on its own */
  int tx = !pg || t->quota > 0;
  int rc = tx ? sbx__db_begin(db) : SBX_OK;
  if (rc)
    return rc;
  memset(out, 0, sizeof *out);
  picked_ctx p;
  memset(&p, 0, sizeof p);
  p.out = out;
  char r1[SBX_JOB_MSG_MAX], r2[SBX_JOB_MSG_MAX];
  snprintf(r1, sizeof r1, "started on worker %s", worker);
  snprintf(r2, sizeof r2, "claimed by worker %s (attempt ", worker);
  if (pg) {
    /* one statement: the oldest queued shard of this tenant */
    sbx__val v[] = {
        SBX_VT(t->tenant),   SBX_VT(worker),    SBX_VB(hash, SBX_SHA256_LEN),
        SBX_VI(now + lease), SBX_VI(now),       SBX_VT(r1),
        SBX_VT(r2),          SBX_VI(stamp_us())};
    rc = sbx__db_exec(db,
                      "WITH sh AS (" CLAIM_SHARD_SET
                      "(SELECT x.ctid FROM job_shards "
                      "x WHERE x.tenant_id = $1 AND x.state = 0 ORDER BY "
                      "x.qseq LIMIT 1 FOR UPDATE SKIP LOCKED)" CLAIM_REST
                      " SELECT " CLAIM_OUT_COLS " FROM sh, j",
                      v, 8, row_picked, &p, NULL);
    if (!rc && !p.found)
      rc = SBX_ENOTFOUND;
  } else {
    sbx__val v[] = {SBX_VT(t->tenant), SBX_VT(worker),
                    SBX_VB(hash, SBX_SHA256_LEN), SBX_VI(now + lease),
                    SBX_VI(now)};
    rc = sbx__db_exec(
        db,
        "UPDATE job_shards SET state = 1, attempts = attempts + 1, "
        "worker_id = $2, token_hash = $3, lease_expires = $4, started_at = "
        "$5, finished_at = 0, message = '', message_sealed = NULL, "
        "progress_ppm = 0, phase = '', phase_sealed = NULL, violation = 0, "
        "robust_ppm = -1, eta_seconds = -1, progress_at = $5 WHERE "
        "(tenant_id, job_id, shard) = (SELECT tenant_id, job_id, shard FROM "
        "job_shards WHERE tenant_id = $1 AND state = 0 ORDER BY qseq LIMIT "
        "1) AND state = 0 RETURNING job_id, shard, sample_begin, sample_end, "
        "attempts",
        v, 5, row_picked, &p, NULL);
    if (!rc && !p.found)
      rc = SBX_ENOTFOUND;
    ints_ctx jc;
    sbx__val jv[] = {SBX_VT(t->tenant), SBX_VT(p.job), SBX_VI(now)};
    if (!rc)
      rc = exec_ints(m,
                     "UPDATE jobs SET state = 1, claims = claims + 1, "
                     "started_at = CASE WHEN claims = 0 THEN $3 ELSE "
                     "started_at END, message = CASE WHEN claims = 0 THEN "
                     "'started' ELSE message END, message_sealed = CASE WHEN "
                     "claims = 0 THEN NULL ELSE message_sealed END, "
                     "updated_at = $3, event_seq "
                     "= event_seq + CASE WHEN claims = 0 THEN 2 ELSE 1 END "
                     "WHERE tenant_id = $1 AND id = $2 RETURNING claims, "
                     "event_seq",
                     jv, 3, 2, &jc);
    if (!rc)
      rc = sbx__db_exec(db,
                        "SELECT project_id, model_id, dataset_id, kind, "
                        "wall_seconds, memory_bytes, samples, shards FROM "
                        "jobs WHERE tenant_id = $1 AND id = $2",
                        jv, 2, row_claim_job, out, NULL);
    if (!rc && jc.v[0] == 1)
      rc = ev_insert(m, t->tenant, p.job, jc.v[1] - 1, now, -1, SBX_JOB_QUEUED,
                     SBX_JOB_RUNNING, r1);
    if (!rc) {
      char r3[SBX_JOB_MSG_MAX + 32];
      snprintf(r3, sizeof r3, "%s%lld)", r2, (long long)p.attempts);
      rc = ev_insert(m, t->tenant, p.job, jc.v[1], now, p.shard, SBX_JOB_QUEUED,
                     SBX_JOB_RUNNING, r3);
    }
  }
  /* last: the tenant's row (its lock serialises the tenant's claims) */
  if (!rc && !pg) {
    sbx__val qv[] = {SBX_VT(t->tenant), SBX_VI(stamp_us())};
    rc = sbx__db_exec(db,
                      "UPDATE job_sched SET queued = queued - 1, last_served "
                      "= $2 WHERE tenant_id = $1",
                      qv, 2, NULL, NULL, NULL);
  }
  /* the quota, counted in a statement that starts after that lock is held:
   * every earlier claim of the tenant is committed and counted (a finish
   * in flight only makes the count higher), ours included */
  if (!rc && t->quota > 0) {
    int64_t running = 0;
    sbx__val cv[] = {SBX_VT(t->tenant)};
    rc = sbx__db_exec(db,
                      "SELECT COUNT(*) FROM job_shards WHERE tenant_id = $1 "
                      "AND state = 1",
                      cv, 1, row_int1, &running, NULL);
    if (!rc && running > t->quota)
      rc = SBX_ENOTFOUND; /* filled by a concurrent claim */
  }
  if (rc) {
    if (tx)
      sbx__db_rollback(db);
    memset(out, 0, sizeof *out);
    return rc;
  }
  rc = tx ? sbx__db_commit(db) : SBX_OK;
  if (rc) {
    memset(out, 0, sizeof *out);
    return rc;
  }
  snprintf(out->tenant_id, sizeof out->tenant_id, "%s", t->tenant);
  snprintf(out->job_id, sizeof out->job_id, "%s", p.job);
  out->shard = p.shard;
  out->sample_begin = p.begin;
  out->sample_end = p.end;
  out->attempt = p.attempts;
  out->lease_expires = now + lease;
  return SBX_OK;
}

/* PostgreSQL, the common case in one statement: the fair-share choice and
 * the claim, when the first tenant in line has no quota and a queued shard
 * no other claimer holds. SBX_OK: claimed; SBX_ENOTFOUND: no tenant in
 * line at all; 1: take the general path (quota, or shards all taken by
 * concurrent claimers). */
static int claim_fused_pg(sbx_meta *m, const char *worker, int64_t lease,
                          int64_t now, const uint8_t *hash,
                          sbx_job_claim *out) {
  picked_ctx p;
  memset(&p, 0, sizeof p);
  p.out = out;
  p.off = 1;
  char r1[SBX_JOB_MSG_MAX], r2[SBX_JOB_MSG_MAX];
  snprintf(r1, sizeof r1, "started on worker %s", worker);
  snprintf(r2, sizeof r2, "claimed by worker %s (attempt ", worker);
  sbx__val v[] = {SBX_VT(SBX_SYS_TENANT),
                  SBX_VT(worker),
                  SBX_VB(hash, SBX_SHA256_LEN),
                  SBX_VI(now + lease),
                  SBX_VI(now),
                  SBX_VT(r1),
                  SBX_VT(r2),
                  SBX_VI(stamp_us())};
  int rc = sbx__db_exec(
      DB(m),
      "WITH c AS (SELECT " CAND_COLS CAND_FROM(
          "$1") "), best AS (SELECT "
                "tenant_id, quota FROM c WHERE quota <= 0 OR running < quota "
                "ORDER BY "
                "running, last_served, tenant_id LIMIT 1), sh AS "
                "(" CLAIM_SHARD_SET "(SELECT x.ctid "
                "FROM job_shards x WHERE x.tenant_id = (SELECT b.tenant_id "
                "FROM best b WHERE b.quota <= 0) AND x.state = 0 ORDER BY "
                "x.qseq LIMIT 1 FOR UPDATE SKIP LOCKED)" CLAIM_REST
                " SELECT best.tenant_id, " CLAIM_OUT_COLS
                " FROM best LEFT JOIN (sh "
                "CROSS JOIN j) ON true",
      v, 8, row_picked, &p, NULL);
  if (rc || !p.found) {
    memset(out, 0, sizeof *out);
    return rc ? rc : p.candidate ? 1 : SBX_ENOTFOUND;
  }
  snprintf(out->job_id, sizeof out->job_id, "%s", p.job);
  out->shard = p.shard;
  out->sample_begin = p.begin;
  out->sample_end = p.end;
  out->attempt = p.attempts;
  out->lease_expires = now + lease;
  return SBX_OK;
}

int sbx_meta_job_claim(sbx_meta *m, const char *worker_id,
                       int64_t lease_seconds, int64_t now,
                       const uint8_t token_hash[SBX_SHA256_LEN],
                       sbx_job_claim *out) {
  if (!m || !out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  REQUIRE_ID(worker_id);
  if (lease_seconds < 1 || lease_seconds > 3600 || !token_hash)
    return SBX_EINVAL;
  /* housekeeping first: lost workers' shards go back in line (looked for
   * once per distinct `now` per process: once a second in production) */
  static _Atomic int64_t last_sweep = -1;
  int rc = SBX_OK;
  if (atomic_exchange(&last_sweep, now) != now) {
    int64_t any = 0;
    sbx__val ev[] = {SBX_VI(now)};
    rc = sbx__db_exec(DB(m),
                      "SELECT 1 FROM job_shards WHERE state = 1 AND "
                      "lease_expires < $1 LIMIT 1",
                      ev, 1, row_int1, &any, NULL);
    if (!rc && any)
      rc = requeue_some(m, now, 64, NULL, NULL); /* bounded per claim */
    if (rc)
      return rc;
  }
  if (PG(m) && (rc = claim_fused_pg(m, worker_id, lease_seconds, now,
                                    token_hash, out)) != 1)
    return rc;
  /* fair share: fewest running, then least recently served */
  cands_ctx cs;
  memset(&cs, 0, sizeof cs);
  rc =
      sbx__db_exec(DB(m),
                   "SELECT " CAND_COLS CAND_FROM(
                       "'_sys'") " ORDER BY "
                                 "running, s.last_served, s.tenant_id LIMIT 32",
                   NULL, 0, row_cand, &cs, NULL);
  if (rc)
    return rc;
  for (int i = 0; i < cs.n; i++) {
    rc = claim_in_tenant(m, &cs.c[i], worker_id, lease_seconds, now, token_hash,
                         out);
    if (rc != SBX_ENOTFOUND)
      return rc;
  }
  return SBX_ENOTFOUND;
}

/* ---- job tokens: verify, heartbeat, finish ---- */

typedef struct scope_ctx {
  sbx_job_scope s;
  int64_t state; /* -1: no such token */
  int64_t tenant_state;
} scope_ctx;

static int row_scope(void *ctx, const sbx__row *r) {
  scope_ctx *x = ctx;
  sbx_job_scope *s = &x->s;
  if (sbx__col_text(r, 0, s->tenant_id, sizeof s->tenant_id) ||
      sbx__col_text(r, 1, s->job_id, sizeof s->job_id) ||
      sbx__col_text(r, 2, s->project_id, sizeof s->project_id) ||
      sbx__col_text(r, 3, s->model_id, sizeof s->model_id) ||
      sbx__col_text(r, 4, s->dataset_id, sizeof s->dataset_id))
    return SBX_EFORMAT;
  s->shard = sbx__col_int(r, 5);
  s->sample_begin = sbx__col_int(r, 6);
  s->sample_end = sbx__col_int(r, 7);
  s->lease_expires = sbx__col_int(r, 8);
  x->state = sbx__col_int(r, 9);
  x->tenant_state = sbx__col_int(r, 10);
  return 1;
}

/* Looks the token up; SBX_EAUTH unknown, SBX_EEXPIRED dead. */
static int token_state(sbx_meta *m, const uint8_t *hash, int64_t now,
                       sbx_job_scope *out) {
  scope_ctx x;
  memset(&x, 0, sizeof x);
  x.state = -1;
  sbx__val v[] = {SBX_VB(hash, SBX_SHA256_LEN)};
  int rc = sbx__db_exec(DB(m),
                        "SELECT s.tenant_id, s.job_id, j.project_id, "
                        "j.model_id, j.dataset_id, s.shard, s.sample_begin, "
                        "s.sample_end, s.lease_expires, s.state, t.state "
                        "FROM job_shards s JOIN jobs j ON j.tenant_id = "
                        "s.tenant_id AND j.id = s.job_id JOIN tenants t ON "
                        "t.id = s.tenant_id WHERE s.token_hash = $1",
                        v, 1, row_scope, &x, NULL);
  if (rc)
    return rc;
  if (x.state < 0)
    return SBX_EAUTH;
  if (x.state != SBX_JOB_RUNNING || x.s.lease_expires < now)
    return SBX_EEXPIRED;
  if (x.tenant_state != SBX_TENANT_ACTIVE)
    return SBX_EPERM; /* frozen or shredded: the job's inputs are off limits */
  if (out)
    *out = x.s;
  return SBX_OK;
}

/* Seals text s (a worker's phase or message) for the job of the running
 * shard of token hash, as jt_seal; a token that names no running shard
 * leaves s clear (the caller's statement then matches no row either). */
static int jt_seal_token(sbx_meta *m, const uint8_t *hash, const char *s,
                         jtext *t) {
  t->clear = s ? s : "";
  t->sealed = NULL;
  t->n = 0;
  if (!*t->clear || !sbx__meta_sealing(m))
    return SBX_OK;
  shard_ref x; /* the shard's tenant and job */
  memset(&x, 0, sizeof x);
  sbx__val v[] = {SBX_VB(hash, SBX_SHA256_LEN)};
  int rc = sbx__db_exec(DB(m),
                        "SELECT tenant_id, job_id, shard, attempts, worker_id "
                        "FROM job_shards WHERE token_hash = $1 AND state = 1",
                        v, 1, row_shard_ref, &x, NULL);
  if (rc || !x.found)
    return rc;
  return jt_seal(m, x.tenant, x.job, s, t);
}

int sbx_meta_job_token_verify(sbx_meta *m,
                              const uint8_t token_hash[SBX_SHA256_LEN],
                              int64_t now, sbx_job_scope *out) {
  if (out)
    memset(out, 0, sizeof *out);
  if (!token_hash)
    return SBX_EINVAL;
  return token_state(m, token_hash, now, out);
}

int sbx_meta_job_heartbeat(sbx_meta *m,
                           const uint8_t token_hash[SBX_SHA256_LEN],
                           int64_t now, int64_t lease_seconds,
                           const sbx_job_progress *p, int *stop) {
  if (stop)
    *stop = SBX_JOB_GO_ON;
  if (!token_hash || lease_seconds < 1 || lease_seconds > 3600)
    return SBX_EINVAL;
  if (p && !text_ok(p->phase, sizeof p->phase))
    return SBX_EINVAL;
  double f = p ? p->fraction : 0;
  f = f != f ? 0 : f < 0 ? 0 : f > 1 ? 1 : f;
  double ra = p ? p->robust_accuracy : -1;
  int64_t rppm = ra >= 0 && ra <= 1 ? (int64_t)(ra * 1e6 + 0.5) : -1;
  int64_t eta = p && p->eta_seconds >= 0 ? p->eta_seconds : -1;
  ints_ctx c;
  jtext ph; /* the phase sealed */
  int rc = jt_seal_token(m, token_hash, p ? p->phase : "", &ph);
  if (rc) {
    jt_free(&ph);
    return rc;
  }
  sbx__val v[] = {SBX_VB(token_hash, SBX_SHA256_LEN),
                  SBX_VI(now),
                  SBX_VI(now + lease_seconds),
                  SBX_VI(p != NULL),
                  SBX_VI((int64_t)(f * 1e6 + 0.5)),
                  SBX_VT(ph.clear),
                  SBX_VI(rppm),
                  SBX_VI(eta),
                  jt_val(&ph)};
  rc = exec_ints(
      m,
      "UPDATE job_shards SET lease_expires = $3, progress_ppm = CASE WHEN "
      "CAST($4 AS BIGINT) = 1 THEN $5 ELSE progress_ppm END, phase = CASE "
      "WHEN CAST($4 AS BIGINT) = 1 THEN $6 ELSE phase END, phase_sealed = "
      "CASE WHEN CAST($4 AS BIGINT) = 1 THEN $9 ELSE phase_sealed END, "
      "robust_ppm = CASE "
      "WHEN CAST($4 AS BIGINT) = 1 THEN $7 ELSE robust_ppm END, eta_seconds "
      "= CASE WHEN CAST($4 AS BIGINT) = 1 THEN $8 ELSE eta_seconds END, "
      "progress_at = CASE WHEN CAST($4 AS BIGINT) = 1 THEN $2 ELSE "
      "progress_at END WHERE token_hash = $1 AND state = 1 AND lease_expires "
      ">= $2 RETURNING started_at, wall_seconds, (SELECT j.cancel_requested "
      "FROM jobs j WHERE j.tenant_id = job_shards.tenant_id AND j.id = "
      "job_shards.job_id), (SELECT t.state FROM tenants t WHERE t.id = "
      "job_shards.tenant_id)",
      v, 9, 4, &c);
  jt_free(&ph);
  if (rc)
    return rc;
  if (!c.found) {
    rc = token_state(m, token_hash, now, NULL);
    return rc ? rc : SBX_EEXPIRED;
  }
  if (stop)
    *stop = c.v[2] || c.v[3] != SBX_TENANT_ACTIVE ? SBX_JOB_STOP_CANCEL
            : now >= c.v[0] + c.v[1]              ? SBX_JOB_STOP_TIMEOUT
                                                  : SBX_JOB_GO_ON;
  return SBX_OK;
}

/* The shard part of a finish: state, message (the caller's, else a
 * default per state), results. $1 token hash, $2 now, $3 state, $4
 * message (clear column), $5..$7 result ids, $8 message sealed (or NULL),
 * $9 1 when the caller gave a message, $10 the sandbox-violation flag. */
#define FINISH_SHARD_SET                                                       \
  "state = $3, finished_at = $2, lease_expires = 0, message = CASE WHEN "      \
  "CAST($9 AS BIGINT) = 1 THEN CAST($4 AS TEXT) WHEN CAST($3 AS BIGINT) = 2 "  \
  "THEN 'succeeded' WHEN CAST($3 AS BIGINT) = 4 THEN 'cancelled' ELSE 'wall "  \
  "time limit ' || CAST(wall_seconds AS TEXT) || ' s exceeded' END, "          \
  "message_sealed = $8, violation = $10, "                                     \
  "result_id = $5, adv_id = $6, gallery = $7, progress_ppm = CASE WHEN "       \
  "CAST($3 AS BIGINT) = 2 THEN 1000000 ELSE progress_ppm END, eta_seconds "    \
  "= -1"
#define FINISH_SHARD_LIVE                                                      \
  "token_hash = $1 AND state = 1 AND lease_expires >= $2"

/* The runner's prefix of a shard killed by the sandbox (runner.h): such
 * shards carry the clear flag violation = 1, counted by /metrics, since
 * their message is sealed. */
#define SBX__SANDBOX_VIOLATION "killed by sandbox"

/* The job's message when its cancel request gave a reason (sealed or not). */
#define CANCEL_GAVE_REASON                                                     \
  "CAST($3 AS BIGINT) = 4 AND jobs.cancel_requested = 1 AND "                  \
  "(jobs.cancel_reason <> '' OR jobs.cancel_reason_sealed IS NOT NULL)"

/* PostgreSQL, a single-shard job (the common case): the shard, the job
 * and both events in one statement, committed on its own (texts: the
 * caller's message sealed in mt, $8/$9/$10 of FINISH_SHARD_SET). 1: done;
 * 0: not applicable (several shards, or the token is not live: the caller
 * takes the general path, which tells which); < 0: error. */
static int finish_fast_pg(sbx_meta *m, const uint8_t *hash, int64_t now,
                          int64_t state, const jtext *mt, int given,
                          int violation, const char *rid, const char *aid,
                          const char *gal) {
  sbx__val v[] = {SBX_VB(hash, SBX_SHA256_LEN),
                  SBX_VI(now),
                  SBX_VI(state),
                  SBX_VT(mt->clear),
                  SBX_VT(rid),
                  SBX_VT(aid),
                  SBX_VT(gal),
                  jt_val(mt),
                  SBX_VI(given),
                  SBX_VI(violation)};
  int64_t shard = -1;
  int rc = sbx__db_exec(
      DB(m),
      "WITH sh AS (UPDATE job_shards SET " FINISH_SHARD_SET
      " WHERE " FINISH_SHARD_LIVE " AND (SELECT j.shards FROM jobs j WHERE "
      "j.tenant_id = job_shards.tenant_id AND j.id = job_shards.job_id AND "
      "j.state = 1) = 1 RETURNING tenant_id, job_id, shard, message, "
      "message_sealed), "
      "j AS (UPDATE jobs SET state = $3, message = CASE "
      "WHEN " CANCEL_GAVE_REASON
      " THEN jobs.cancel_reason WHEN CAST($3 AS BIGINT) = 2 THEN '1 of 1 "
      "shard succeeded' ELSE sh.message END, message_sealed = CASE "
      "WHEN " CANCEL_GAVE_REASON
      " THEN jobs.cancel_reason_sealed WHEN CAST($3 AS BIGINT) = 2 THEN "
      "NULL ELSE sh.message_sealed END, finished_at = $2, updated_at = "
      "$2, shards_done = CASE WHEN CAST($3 AS BIGINT) = 2 THEN 1 ELSE 0 "
      "END, result_id = CASE WHEN CAST($3 AS BIGINT) = 2 THEN $5 ELSE "
      "jobs.result_id END, adv_id = CASE WHEN CAST($3 AS BIGINT) = 2 THEN "
      "$6 ELSE jobs.adv_id END, gallery = CASE WHEN CAST($3 AS BIGINT) = 2 "
      "THEN $7 ELSE jobs.gallery END, event_seq = jobs.event_seq + 2 FROM "
      "sh WHERE jobs.tenant_id = sh.tenant_id AND jobs.id = sh.job_id "
      "RETURNING jobs.message, jobs.message_sealed, jobs.event_seq), "
      "e AS (INSERT INTO job_events (tenant_id, job_id, seq, ts, shard, "
      "from_state, to_state, reason, reason_sealed) SELECT sh.tenant_id, "
      "sh.job_id, j.event_seq - 1, $2, sh.shard, 1, $3, sh.message, "
      "sh.message_sealed FROM sh, j UNION ALL SELECT sh.tenant_id, "
      "sh.job_id, j.event_seq, $2, -1, 1, $3, j.message, j.message_sealed "
      "FROM sh, j) "
      "SELECT sh.shard FROM sh, j",
      v, 10, row_int1, &shard, NULL);
  return rc ? rc : shard >= 0 ? 1 : 0;
}

int sbx_meta_job_finish(sbx_meta *m, const uint8_t token_hash[SBX_SHA256_LEN],
                        int64_t now, int64_t state, const char *message,
                        const sbx_job_results *results) {
  if (!token_hash || state < SBX_JOB_SUCCEEDED || state > SBX_JOB_TIMED_OUT)
    return SBX_EINVAL;
  if (state == SBX_JOB_FAILED && (!message || !*message))
    return SBX_EINVAL; /* a failure always says what went wrong */
  if ((message && strlen(message) >= SBX_JOB_MSG_MAX) || !results_ok(results))
    return SBX_EINVAL;
  char gal[GALLERY_CAP];
  int rc = gallery_join(results, gal, sizeof gal);
  if (rc)
    return rc;
  const char *rid = results ? results->result_id : "";
  const char *aid = results ? results->adv_id : "";
  int given = message && *message;
  int violation = given && !strncmp(message, SBX__SANDBOX_VIOLATION,
                                    strlen(SBX__SANDBOX_VIOLATION));
  jtext mt;
  if ((rc = jt_seal_token(m, token_hash, message, &mt))) {
    jt_free(&mt);
    return rc;
  }
  if (PG(m)) {
    rc = finish_fast_pg(m, token_hash, now, state, &mt, given, violation, rid,
                        aid, gal);
    if (rc) {
      jt_free(&mt);
      return rc < 0 ? rc : SBX_OK;
    }
  }
  sbx__db *db = DB(m);
  /* lock order: the shard (by the token), the job, the tenant's row */
  if ((rc = sbx__db_begin(db))) {
    jt_free(&mt);
    return rc;
  }
  shard_ref f; /* text: the shard's message */
  memset(&f, 0, sizeof f);
  sbx__val v[] = {SBX_VB(token_hash, SBX_SHA256_LEN),
                  SBX_VI(now),
                  SBX_VI(state),
                  SBX_VT(mt.clear),
                  SBX_VT(rid),
                  SBX_VT(aid),
                  SBX_VT(gal),
                  jt_val(&mt),
                  SBX_VI(given),
                  SBX_VI(violation)};
  f.m = m;
  rc = sbx__db_exec(db,
                    "UPDATE job_shards SET " FINISH_SHARD_SET
                    " WHERE " FINISH_SHARD_LIVE " RETURNING tenant_id, "
                    "job_id, shard, wall_seconds, message, message_sealed",
                    v, 10, row_shard_ref, &f, NULL);
  jt_free(&mt);
  if (!rc && !f.found) {
    sbx__db_rollback(db);
    rc = token_state(m, token_hash, now, NULL);
    return rc ? rc : SBX_EEXPIRED;
  }
  /* one shard: the job ends with it (a cancelled job keeps the reason
   * given with the cancel request); the job row's event_seq numbers both
   * events */
  ints_ctx jc;
  memset(&jc, 0, sizeof jc);
  char jmsg[SBX_JOB_MSG_MAX] = "";
  if (!rc) {
    char want[SBX_JOB_MSG_MAX];
    snprintf(want, sizeof want, "%s",
             state == SBX_JOB_SUCCEEDED ? "1 of 1 shard succeeded" : f.text);
    jtext wt;
    rc = jt_seal(m, f.tenant, f.job, want, &wt);
    sbx__val jv[] = {SBX_VT(f.tenant), SBX_VT(f.job), SBX_VI(state),
                     SBX_VT(wt.clear), SBX_VI(now),   SBX_VT(rid),
                     SBX_VT(aid),      SBX_VT(gal),   jt_val(&wt)};
    if (!rc)
      rc = exec_ints(
          m,
          "UPDATE jobs SET state = $3, message = CASE WHEN " CANCEL_GAVE_REASON
          " THEN cancel_reason ELSE $4 END, message_sealed = CASE "
          "WHEN " CANCEL_GAVE_REASON " THEN cancel_reason_sealed ELSE $9 END, "
          "finished_at = $5, updated_at = $5, "
          "shards_done = CASE WHEN CAST($3 AS BIGINT) = 2 THEN 1 ELSE 0 END, "
          "result_id = CASE WHEN CAST($3 AS BIGINT) = 2 THEN $6 ELSE result_id "
          "END, adv_id = CASE WHEN CAST($3 AS BIGINT) = 2 THEN $7 ELSE adv_id "
          "END, gallery = CASE WHEN CAST($3 AS BIGINT) = 2 THEN $8 ELSE "
          "gallery END, event_seq = event_seq + 2 WHERE tenant_id = $1 AND id "
          "= $2 AND shards = 1 AND state = 1 RETURNING event_seq",
          jv, 9, 1, &jc);
    jt_free(&wt);
  }
  if (!rc && jc.found) {
    rc = ev_insert(m, f.tenant, f.job, jc.v[0] - 1, now, f.shard,
                   SBX_JOB_RUNNING, state, f.text);
    sbx__val mv[] = {SBX_VT(f.tenant), SBX_VT(f.job)};
    jt_one ms = {m, f.tenant, f.job, jmsg, sizeof jmsg};
    if (!rc)
      rc = sbx__db_exec(db,
                        "SELECT message, message_sealed FROM jobs WHERE "
                        "tenant_id = $1 AND id = $2",
                        mv, 2, row_jt_one, &ms, NULL);
    if (!rc)
      rc = ev_insert(m, f.tenant, f.job, jc.v[0], now, -1, SBX_JOB_RUNNING,
                     state, jmsg);
  } else if (!rc) { /* several shards: settle the job from all of them */
    rc = ev_add(m, f.tenant, f.job, now, f.shard, SBX_JOB_RUNNING, state,
                f.text);
    if (!rc)
      rc = job_settle(m, f.tenant, f.job, now);
  }
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  return sbx__db_commit(db);
}

/* ---- worker tokens ---- */

int sbx_meta_worker_token_create(sbx_meta *m, const sbx_worker_token *t) {
  if (!t || !sbx_id_valid(t->id) || !text_ok(t->name, SBX_NAME_MAX) ||
      t->expires_at < 0)
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(t->id), SBX_VT(t->name),
                  SBX_VB(t->secret_hash, SBX_SHA256_LEN), SBX_VI(t->created_at),
                  SBX_VI(t->expires_at)};
  return sbx__db_exec(DB(m),
                      "INSERT INTO worker_tokens (id, name, secret_hash, "
                      "created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                      v, 5, NULL, NULL, NULL);
}

#define WT_COLS                                                                \
  "id, name, secret_hash, created_at, expires_at, revoked_at, last_used_at"

static int fill_wt(sbx_worker_token *t, const sbx__row *r) {
  memset(t, 0, sizeof *t);
  int rc = sbx__col_text(r, 0, t->id, sizeof t->id);
  if (!rc)
    rc = sbx__col_text(r, 1, t->name, sizeof t->name);
  if (!rc)
    rc = sbx__col_fixed(r, 2, t->secret_hash, SBX_SHA256_LEN);
  t->created_at = sbx__col_int(r, 3);
  t->expires_at = sbx__col_int(r, 4);
  t->revoked_at = sbx__col_int(r, 5);
  t->last_used_at = sbx__col_int(r, 6);
  return rc ? SBX_EFORMAT : SBX_OK;
}

typedef struct wt_one {
  sbx_worker_token t;
  int found, rc;
} wt_one;

static int row_wt_one(void *ctx, const sbx__row *r) {
  wt_one *o = ctx;
  o->found = 1;
  o->rc = fill_wt(&o->t, r);
  return o->rc ? o->rc : 1;
}

int sbx_meta_worker_token_verify(sbx_meta *m, const char *id,
                                 const uint8_t secret_hash[SBX_SHA256_LEN],
                                 int64_t now, sbx_worker_token *out) {
  if (out)
    memset(out, 0, sizeof *out);
  if (!sbx_id_valid(id) || !secret_hash)
    return SBX_EAUTH;
  wt_one o;
  memset(&o, 0, sizeof o);
  sbx__val v[] = {SBX_VT(id)};
  int rc =
      sbx__db_exec(DB(m), "SELECT " WT_COLS " FROM worker_tokens WHERE id = $1",
                   v, 1, row_wt_one, &o, NULL);
  if (rc)
    return rc;
  if (!o.found || !sbx_ct_equal(o.t.secret_hash, secret_hash, SBX_SHA256_LEN))
    return SBX_EAUTH;
  if (o.t.revoked_at || (o.t.expires_at && o.t.expires_at <= now))
    return SBX_EEXPIRED;
  if (now - o.t.last_used_at >= 60) {
    sbx__val tv[] = {SBX_VT(id), SBX_VI(now)};
    rc = sbx__db_exec(DB(m),
                      "UPDATE worker_tokens SET last_used_at = $2 WHERE id = "
                      "$1",
                      tv, 2, NULL, NULL, NULL);
    if (rc)
      return rc;
    o.t.last_used_at = now;
  }
  if (out)
    *out = o.t;
  return SBX_OK;
}

int sbx_meta_worker_token_revoke(sbx_meta *m, const char *id, int64_t now) {
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(id), SBX_VI(now)};
  int64_t ch = 0;
  int rc = sbx__db_exec(DB(m),
                        "UPDATE worker_tokens SET revoked_at = $2 WHERE id = "
                        "$1 AND revoked_at = 0",
                        v, 2, NULL, NULL, &ch);
  return rc ? rc : ch ? SBX_OK : SBX_ENOTFOUND;
}

typedef struct wt_list {
  int (*fn)(void *ctx, const sbx_worker_token *t);
  void *ctx;
} wt_list;

static int row_wt_list(void *ctx, const sbx__row *r) {
  wt_list *l = ctx;
  sbx_worker_token t;
  int rc = fill_wt(&t, r);
  if (rc)
    return rc;
  memset(t.secret_hash, 0, sizeof t.secret_hash);
  rc = l->fn(l->ctx, &t);
  return rc < 0 ? rc : rc ? 1 : 0;
}

int sbx_meta_worker_token_list(sbx_meta *m,
                               int (*fn)(void *ctx, const sbx_worker_token *t),
                               void *ctx) {
  if (!fn)
    return SBX_EINVAL;
  wt_list l = {fn, ctx};
  return sbx__db_exec(DB(m),
                      "SELECT " WT_COLS " FROM worker_tokens ORDER BY "
                      "created_at, id",
                      NULL, 0, row_wt_list, &l, NULL);
}
