/*
 * test_seal.c - issue 12 item 5: the metadata database leaks less. On
 * SQLite, or on PostgreSQL when SBX_TEST_PG holds a conninfo (pg_run.sh):
 * project and object names are sealed under the tenant's field key with a
 * per-tenant blind index for name lookups; the raw database (the SQLite
 * file after a WAL checkpoint, or a pg_dump) holds none of the names the
 * test created; plaintext rows of older versions are sealed at the next
 * store open; audit actor/target are sealed with the chain still
 * verifying; crypto-shredding makes the sealed names unreadable; e-mail
 * indexes differ between tenants for the same address (and older
 * deployment-wide indexes are replaced at open).
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "harness.h"
#include "sbx/jobs.h"
#include "sbx/sql.h"
#include "store_testutil.h"

static char root[] = "/tmp/sbx_seal_XXXXXX";
static char keyspec[300], datadir[256];
static const char *pg;

static sbx_store *open_store(void) {
  return tu_open_store(datadir, keyspec, pg);
}

/* The metadata handle of an older binary: no cipher, plaintext columns. */
static sbx_meta *open_plain_meta(void) {
  sbx_meta_params p = sbx_meta_default_params();
  char path[300];
  snprintf(path, sizeof path, "%s/meta.db", datadir);
  if (pg) {
    p.backend = SBX_META_POSTGRES;
    p.pg_conninfo = pg;
  } else {
    p.sqlite_path = path;
  }
  sbx_meta *m = NULL;
  if (sbx_meta_open(&p, &m))
    return NULL;
  return m;
}

/* The raw database as an attacker with a copy sees it: the SQLite file
 * and its WAL (checkpointed first), or a pg_dump of the database. Returns
 * a malloc'd buffer (caller frees). */
static uint8_t *raw_db(size_t *n) {
  char path[400];
  uint8_t *all = NULL;
  *n = 0;
  if (pg) {
    snprintf(path, sizeof path, "%s/dump.sql", root);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "/usr/lib/postgresql/15/bin/pg_dump --data-only -d '%s' > '%s'",
             pg, path);
    if (system(cmd) != 0)
      return NULL;
    if (tu_read_file(path, &all, n))
      return NULL;
    return all;
  }
  const char *suffix[] = {"", "-wal"};
  for (int i = 0; i < 2; i++) {
    uint8_t *d;
    size_t dn;
    snprintf(path, sizeof path, "%s/meta.db%s", datadir, suffix[i]);
    if (tu_read_file(path, &d, &dn))
      continue;
    uint8_t *q = realloc(all, *n + dn + 1);
    if (!q) {
      free(d);
      free(all);
      return NULL;
    }
    all = q;
    memcpy(all + *n, d, dn);
    *n += dn;
    free(d);
  }
  return all;
}

static int holds(const uint8_t *d, size_t n, const char *s) {
  return d && memmem(d, n, s, strlen(s)) != NULL;
}

static int put_named(sbx_store *st, const char *t, const char *project,
                     const char *kind, const char *name, sbx_object *o) {
  sbx_put_params pp = {project, kind, name, 0};
  return sbx_store_put(st, t, &pp, "payload", 7, o);
}

typedef struct names {
  char v[8][SBX_NAME_MAX];
  int n;
} names;

static int collect_name(void *ctx, const sbx_object *o) {
  names *c = ctx;
  if (c->n < 8)
    snprintf(c->v[c->n++], SBX_NAME_MAX, "%s", o->name);
  return 0;
}

static int count_row(void *ctx, const sbx_sql_row *r) {
  *(int64_t *)ctx = sbx_sql_col_int(r, 0);
  return 0;
}

static int fill_text0(void *ctx, const sbx_sql_row *r) {
  return sbx_sql_col_text(r, 0, ctx, SBX_NAME_MAX);
}

/* the clear `name` column of an object, read behind the API's back */
static void raw_name(sbx_store *st, const char *t, const char *id,
                     char out[SBX_NAME_MAX]) {
  out[0] = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(id)};
  sbx_sql_exec(sbx_store_meta(st),
               "SELECT name FROM objects WHERE tenant_id = $1 AND id = $2", v,
               2, fill_text0, out, NULL);
}

static const char *const NAMES[] = {
    "Proj-Zebra-Alpha-7731",    "model-Quokka-9241.onnx",
    "dataset-Narwhal-5512.npz", "report-Axolotl-0087.json",
    "spec-Pangolin-3141",       "Tenant-Marmoset-8808"};

static int create_job(sbx_meta *m, const char *t, const char *id,
                      const char *spec) {
  sbx_job_new j;
  memset(&j, 0, sizeof j);
  j.id = id;
  j.project_id = "p1";
  j.model_id = "model1";
  j.dataset_id = "data1";
  j.kind = "attack";
  j.spec = spec;
  j.limits.samples = 4;
  j.limits.shards = 1;
  char why[SBX_JOB_MSG_MAX];
  return sbx_meta_job_create(m, t, &j, 1000, NULL, why);
}

TEST(names_not_at_rest) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "sa", NAMES[5]), 0);
  sbx_tenant tn;
  CHECK_EQ_INT(sbx_meta_tenant_get(m, "sa", &tn), 0);
  CHECK(!strcmp(tn.name, NAMES[5]) && !strcmp(tn.id, "sa"));
  CHECK_EQ_INT(sbx_store_tenant_create(st, "sb", "tenant b"), 0);
  CHECK_EQ_INT(sbx_meta_project_create(m, "sa", "p1", NAMES[0], 1), 0);
  sbx_object a, b, c, d, got;
  CHECK_EQ_INT(put_named(st, "sa", "p1", "model", NAMES[1], &a), 0);
  CHECK_EQ_INT(put_named(st, "sa", "p1", "dataset", NAMES[2], &b), 0);
  CHECK_EQ_INT(put_named(st, "sa", "", "report", NAMES[3], &c), 0);
  /* the same name in another tenant: a different blind index */
  CHECK_EQ_INT(put_named(st, "sb", "p1", "model", NAMES[1], &d), 0);
  /* equality still works: duplicates refused, lookups by name found */
  sbx_object dup;
  CHECK_EQ_INT(put_named(st, "sa", "p1", "model", NAMES[1], &dup), SBX_EEXIST);
  CHECK_EQ_INT(sbx_meta_object_find(m, "sa", "p1", "model", NAMES[1], &got), 0);
  CHECK(!strcmp(got.id, a.id) && !strcmp(got.name, NAMES[1]));
  CHECK_EQ_INT(sbx_meta_object_find(m, "sa", "p1", "model", "other", &got),
               SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_meta_object_get(m, "sa", b.id, &got), 0);
  CHECK(!strcmp(got.name, NAMES[2]));
  names ls = {.n = 0};
  CHECK_EQ_INT(sbx_meta_object_list(m, "sa", NULL, collect_name, &ls), 0);
  CHECK_EQ_INT(ls.n, 3);
  for (int k = 1; k <= 3; k++) { /* same second: order by random id */
    int seen = 0;
    for (int i = 0; i < ls.n; i++)
      seen += !strcmp(ls.v[i], NAMES[k]);
    CHECK_EQ_INT(seen, 1);
  }
  char ra[SBX_NAME_MAX], rd[SBX_NAME_MAX];
  raw_name(st, "sa", a.id, ra);
  raw_name(st, "sb", d.id, rd);
  CHECK(ra[0] == '~' && strlen(ra) == 65);
  CHECK(rd[0] == '~' && strcmp(ra, rd) != 0);
  /* a job spec */
  static const char spec[] =
      "{\"attack\":\"fgsm\",\"note\":\"spec-Pangolin-3141\"}";
  CHECK_EQ_INT(create_job(m, "sa", "job1", spec), 0);
  char sp[256];
  size_t sl = 0;
  CHECK_EQ_INT(sbx_meta_job_spec(m, "sa", "job1", sp, sizeof sp, &sl), 0);
  CHECK(!strcmp(sp, spec) && sl == strlen(spec));
  CHECK_EQ_INT(sbx_meta_checkpoint(m), 0);
  sbx_store_close(st);
  size_t n;
  uint8_t *raw = raw_db(&n);
  CHECK(raw != NULL && n > 0);
  CHECK(holds(raw, n, "p1")); /* ids stay clear (the grep works) */
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
    CHECK(!holds(raw, n, NAMES[i]));
  free(raw);
}

TEST(legacy_rows_sealed_at_open) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  CHECK_EQ_INT(sbx_store_tenant_create(st, "sl", "legacy"), 0);
  sbx_store_close(st);
  /* an older binary wrote plaintext rows */
  sbx_meta *m = open_plain_meta();
  CHECK(m != NULL);
  if (!m)
    return;
  CHECK_EQ_INT(sbx_meta_project_create(m, "sl", "lp", "Legacy-Ibex-3310", 1),
               0);
  sbx_object o;
  memset(&o, 0, sizeof o);
  snprintf(o.id, sizeof o.id, "legacy1");
  snprintf(o.project_id, sizeof o.project_id, "lp");
  snprintf(o.kind, sizeof o.kind, "model");
  snprintf(o.name, sizeof o.name, "Legacy-Okapi-4421.onnx");
  o.key_version = 1;
  CHECK_EQ_INT(sbx_meta_object_insert(m, "sl", &o), 0);
  CHECK_EQ_INT(create_job(m, "sl", "ljob", "{\"n\":\"Legacy-Spec-Civet\"}"), 0);
  int64_t jstate = -1;
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "sl", NULL, "ljob", 1000,
                                   "Legacy-Cancel-Margay", &jstate),
               0);
  CHECK_EQ_INT(sbx_meta_checkpoint(m), 0);
  sbx_meta_close(m);
  size_t n;
  uint8_t *raw = raw_db(&n);
  CHECK(holds(raw, n, "Legacy-Okapi-4421.onnx")); /* the grep can fail */
  CHECK(holds(raw, n, "Legacy-Ibex-3310"));
  CHECK(holds(raw, n, "Legacy-Spec-Civet"));
  CHECK(holds(raw, n, "Legacy-Cancel-Margay"));
  free(raw);
  /* the next store open seals them in place */
  st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  sbx_object got;
  CHECK_EQ_INT(sbx_meta_object_find(sbx_store_meta(st), "sl", "lp", "model",
                                    "Legacy-Okapi-4421.onnx", &got),
               0);
  CHECK(!strcmp(got.id, "legacy1") &&
        !strcmp(got.name, "Legacy-Okapi-4421.onnx"));
  char sp[64];
  CHECK_EQ_INT(
      sbx_meta_job_spec(sbx_store_meta(st), "sl", "ljob", sp, sizeof sp, NULL),
      0);
  CHECK(!strcmp(sp, "{\"n\":\"Legacy-Spec-Civet\"}"));
  sbx_job lj;
  CHECK_EQ_INT(sbx_meta_job_get(sbx_store_meta(st), "sl", NULL, "ljob", &lj),
               0);
  CHECK(!strcmp(lj.message, "Legacy-Cancel-Margay"));
  int64_t again = -1;
  CHECK_EQ_INT(sbx_meta_seal_legacy(sbx_store_meta(st), &again), 0);
  CHECK_EQ_INT(again, 0); /* idempotent */
  CHECK_EQ_INT(sbx_meta_checkpoint(sbx_store_meta(st)), 0);
  sbx_store_close(st);
  raw = raw_db(&n);
  CHECK(raw != NULL);
  CHECK(!holds(raw, n, "Legacy-Okapi-4421.onnx"));
  CHECK(!holds(raw, n, "Legacy-Ibex-3310"));
  CHECK(!holds(raw, n, "Legacy-Spec-Civet"));
  CHECK(!holds(raw, n, "Legacy-Cancel-Margay"));
  free(raw);
}

/* Claims shards (lease 60 s) until one of job (tenant t) comes: jobs of
 * the other cases may be queued too. */
static int claim_of(sbx_store *st, const char *t, const char *job,
                    sbx_job_claim *c) {
  for (int i = 0; i < 16; i++) {
    int rc = sbx_store_job_claim(st, "w-seal", 60, 1000, c);
    if (rc)
      return rc;
    if (!strcmp(c->tenant_id, t) && !strcmp(c->job_id, job))
      return 0;
  }
  return SBX_ENOTFOUND;
}

typedef struct ev_seen {
  int n;
  char all[4096];
} ev_seen;

static int see_event(void *ctx, const sbx_job_event *e) {
  ev_seen *s = ctx;
  size_t l = strlen(s->all);
  snprintf(s->all + l, sizeof s->all - l, "%s\n", e->reason);
  s->n++;
  return 0;
}

static int see_shard(void *ctx, const sbx_job_shard *sh) {
  snprintf(ctx, SBX_JOB_MSG_MAX, "%s", sh->message);
  return 0;
}

static const char *const JOB_TEXTS[] = {
    "phase-Gharial-6620", "fail-Tapir-2718: model diverged",
    "cancel-Dugong-1618", "cancel-Serval-5077"};

TEST(job_texts_not_at_rest) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "sj", "tenant j"), 0);
  CHECK_EQ_INT(create_job(m, "sj", "jf", "{}"), 0);
  CHECK_EQ_INT(create_job(m, "sj", "jq", "{}"), 0);
  CHECK_EQ_INT(create_job(m, "sj", "jr", "{}"), 0);
  /* jf: a phase reported, then failed with a message */
  sbx_job_claim c;
  CHECK_EQ_INT(claim_of(st, "sj", "jf", &c), 0);
  sbx_job_progress p;
  memset(&p, 0, sizeof p);
  p.fraction = 0.5;
  p.robust_accuracy = -1;
  p.eta_seconds = 10;
  snprintf(p.phase, sizeof p.phase, "%s", JOB_TEXTS[0]);
  int stop = -1;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 1001, 60, &p, &stop), 0);
  sbx_job j;
  CHECK_EQ_INT(sbx_meta_job_get(m, "sj", NULL, "jf", &j), 0);
  CHECK(!strcmp(j.progress.phase, JOB_TEXTS[0]));
  CHECK_EQ_INT(sbx_store_job_finish(st, c.token, 1002, SBX_JOB_FAILED,
                                    JOB_TEXTS[1], NULL),
               0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "sj", NULL, "jf", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_FAILED);
  CHECK(!strcmp(j.message, JOB_TEXTS[1]));
  char smsg[SBX_JOB_MSG_MAX] = "";
  CHECK_EQ_INT(sbx_meta_job_shards(m, "sj", "jf", see_shard, smsg), 0);
  CHECK(!strcmp(smsg, JOB_TEXTS[1]));
  ev_seen ev = {0, ""};
  CHECK_EQ_INT(sbx_meta_job_events(m, "sj", "jf", 0, see_event, &ev), 0);
  CHECK(strstr(ev.all, JOB_TEXTS[1]) != NULL);
  CHECK(strstr(ev.all, "started on worker w-seal") != NULL);
  /* jq: cancelled while queued, with a reason */
  int64_t state = -1;
  CHECK_EQ_INT(
      sbx_meta_job_cancel(m, "sj", NULL, "jq", 1003, JOB_TEXTS[2], &state), 0);
  CHECK_EQ_INT(state, SBX_JOB_CANCELLED);
  CHECK_EQ_INT(sbx_meta_job_get(m, "sj", NULL, "jq", &j), 0);
  CHECK(!strcmp(j.message, JOB_TEXTS[2]));
  /* jr: cancelled while running; the worker then ends it (the job keeps
   * the cancel reason: copied in SQL on PostgreSQL's fast path) */
  CHECK_EQ_INT(claim_of(st, "sj", "jr", &c), 0);
  CHECK_EQ_INT(
      sbx_meta_job_cancel(m, "sj", NULL, "jr", 1004, JOB_TEXTS[3], &state), 0);
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 1005, 60, NULL, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_STOP_CANCEL);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 1006, SBX_JOB_CANCELLED, NULL, NULL),
      0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "sj", NULL, "jr", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_CANCELLED);
  CHECK(!strcmp(j.message, JOB_TEXTS[3]));
  ev = (ev_seen){0, ""};
  CHECK_EQ_INT(sbx_meta_job_events(m, "sj", "jr", 0, see_event, &ev), 0);
  CHECK(strstr(ev.all, "cancel requested: cancel-Serval-5077") != NULL);
  /* jv: killed by the sandbox; /metrics counts it by a clear flag */
  CHECK_EQ_INT(create_job(m, "sj", "jv", "{}"), 0);
  CHECK_EQ_INT(claim_of(st, "sj", "jv", &c), 0);
  CHECK_EQ_INT(sbx_store_job_finish(st, c.token, 1007, SBX_JOB_FAILED,
                                    "killed by sandbox: forbidden system "
                                    "call 41 (socket)",
                                    NULL),
               0);
  int64_t kills = -1;
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "SELECT COUNT(*) FROM job_shards WHERE "
                            "violation = 1",
                            NULL, 0, count_row, &kills, NULL),
               0);
  CHECK_EQ_INT(kills, 1);
  CHECK_EQ_INT(sbx_meta_checkpoint(m), 0);
  sbx_store_close(st);
  size_t n;
  uint8_t *raw = raw_db(&n);
  CHECK(raw != NULL && n > 0);
  CHECK(holds(raw, n, "jf")); /* ids stay clear (the grep works) */
  for (size_t i = 0; i < sizeof JOB_TEXTS / sizeof JOB_TEXTS[0]; i++)
    CHECK(!holds(raw, n, JOB_TEXTS[i]));
  CHECK(!holds(raw, n, "fail-Tapir"));
  CHECK(!holds(raw, n, "forbidden system call 41"));
  free(raw);
}

typedef struct sealed_row {
  uint8_t b[SBX_NAME_MAX + SBX_SEAL_OVERHEAD];
  size_t n;
} sealed_row;

static int fill_sealed(void *ctx, const sbx_sql_row *r) {
  sealed_row *s = ctx;
  const void *p = sbx_sql_col_bytes(r, 0, &s->n);
  if (s->n > sizeof s->b)
    return SBX_EFORMAT;
  memcpy(s->b, p, s->n);
  return 0;
}

TEST(shredding_makes_names_unreadable) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "ss", "shred me"), 0);
  CHECK_EQ_INT(sbx_meta_project_create(m, "ss", "sp", "Shred-Tapir-5150", 1),
               0);
  sbx_object o, got;
  CHECK_EQ_INT(put_named(st, "ss", "sp", "model", "Shred-Dugong-6061", &o), 0);
  /* a job running when the tenant is shredded still ends */
  CHECK_EQ_INT(create_job(m, "ss", "sjob", "{}"), 0);
  sbx_job_claim jc;
  CHECK_EQ_INT(claim_of(st, "ss", "sjob", &jc), 0);
  sealed_row s = {.n = 0};
  sbx_sql_val v[] = {SBX_SQL_T("ss"), SBX_SQL_T(o.id)};
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "SELECT name_sealed FROM objects WHERE tenant_id "
                            "= $1 AND id = $2",
                            v, 2, fill_sealed, &s, NULL),
               0);
  char out[SBX_NAME_MAX];
  CHECK_EQ_INT(sbx_meta_field_text(m, "ss", "objects.name", o.id, s.b, s.n,
                                   NULL, 0, out, sizeof out),
               0);
  CHECK(!strcmp(out, "Shred-Dugong-6061"));
  /* bound to its row: the same bytes under another row id do not open */
  CHECK(sbx_meta_field_text(m, "ss", "objects.name", "other", s.b, s.n, NULL, 0,
                            out, sizeof out) != 0);
  CHECK_EQ_INT(sbx_store_shred_tenant(st, "ss"), 0);
  sbx_store_close(st);
  st = open_store(); /* no cached key either */
  CHECK(st != NULL);
  if (!st)
    return;
  m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_meta_field_text(m, "ss", "objects.name", o.id, s.b, s.n,
                                   NULL, 0, out, sizeof out),
               SBX_EKEY);
  CHECK_EQ_INT(sbx_meta_object_get(m, "ss", o.id, &got), 0);
  CHECK_EQ_INT((int)strlen(got.name), 0); /* the row, not its name */
  CHECK(sbx_meta_object_find(m, "ss", "sp", "model", "Shred-Dugong-6061",
                             &got) != 0);
  sbx_job_progress p;
  memset(&p, 0, sizeof p);
  p.robust_accuracy = -1;
  p.eta_seconds = -1;
  snprintf(p.phase, sizeof p.phase, "phase-Shred-Okapi");
  int stop = -1;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, jc.token, 1001, 60, &p, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_STOP_CANCEL);
  CHECK_EQ_INT(sbx_store_job_finish(st, jc.token, 1002, SBX_JOB_FAILED,
                                    "fail-Shred-Okapi", NULL),
               0);
  sbx_job sj;
  CHECK_EQ_INT(sbx_meta_job_get(m, "ss", NULL, "sjob", &sj), 0);
  CHECK_EQ_INT(sj.state, SBX_JOB_FAILED);
  CHECK_EQ_INT((int)strlen(sj.message), 0);
  sbx_tenant tn; /* the tenant stays, shredded, without its name */
  CHECK_EQ_INT(sbx_meta_tenant_get(m, "ss", &tn), 0);
  CHECK_EQ_INT(tn.state, SBX_TENANT_SHREDDED);
  CHECK_EQ_INT((int)strlen(tn.name), 0);
  sbx_store_close(st);
}

typedef struct audit_seen {
  int n, named;
} audit_seen;

static int see_audit(void *ctx, const char *t, const sbx_audit_event *e) {
  audit_seen *a = ctx;
  (void)t;
  a->n++;
  a->named += !strcmp(e->actor, "user-Wombat-1234") &&
              !strcmp(e->target, "target-Ocelot-5678");
  return 0;
}

TEST(audit_fields_sealed) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "au", "audited"), 0);
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(sbx_meta_audit_append(m, "au", 100 + i, "user-Wombat-1234",
                                       "object.put", "target-Ocelot-5678",
                                       NULL),
                 0);
  /* "_sys" has no tenant key: its rows stay readable (and clear) */
  CHECK_EQ_INT(
      sbx_meta_audit_append(m, "_sys", 100, "ops", "deploy.check", "x", NULL),
      0);
  int64_t count = 0;
  CHECK_EQ_INT(sbx_meta_audit_verify(m, "au", &count), 0);
  CHECK_EQ_INT(count, 3);
  audit_seen a = {0, 0};
  CHECK_EQ_INT(sbx_meta_audit_list(m, "au", 0, 0, see_audit, &a), 0);
  CHECK(a.n == 3 && a.named == 3);
  /* rows naming the user: one equality on its blind index */
  char ix[SBX_META_INDEX_TEXT];
  CHECK_EQ_INT(sbx_meta_blind_text(m, "au", "audit.id", "user-Wombat-1234", ix),
               0);
  int64_t hits = 0;
  sbx_sql_val v[] = {SBX_SQL_T("au"), SBX_SQL_T(ix)};
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "SELECT COUNT(*) FROM audit_events WHERE "
                            "tenant_id = $1 AND actor = $2",
                            v, 2, count_row, &hits, NULL),
               0);
  CHECK_EQ_INT(hits, 3);
  CHECK_EQ_INT(sbx_meta_checkpoint(m), 0);
  size_t n;
  uint8_t *raw = raw_db(&n);
  CHECK(raw != NULL);
  CHECK(!holds(raw, n, "user-Wombat-1234"));
  CHECK(!holds(raw, n, "target-Ocelot-5678"));
  free(raw);
  /* a sealed field moved to another row does not open there */
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "UPDATE audit_events SET target_sealed = (SELECT "
                            "target_sealed FROM audit_events WHERE tenant_id "
                            "= 'au' AND seq = 1) WHERE tenant_id = 'au' AND "
                            "seq = 2",
                            NULL, 0, NULL, NULL, NULL),
               0);
  sbx_audit_check c;
  CHECK_EQ_INT(sbx_meta_audit_check(m, "au", 0, NULL, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(c.bad_seq, 2);
  sbx_store_close(st);
}

typedef struct idx_row {
  uint8_t idx[SBX_SHA256_LEN];
  int64_t v;
} idx_row;

static int fill_idx(void *ctx, const sbx_sql_row *r) {
  idx_row *x = ctx;
  x->v = sbx_sql_col_int(r, 1);
  return sbx_sql_col_fixed(r, 0, x->idx, sizeof x->idx);
}

TEST(email_index_per_tenant) {
  static const char mail[] = "alice.kestrel@example.org";
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  CHECK_EQ_INT(sbx_store_tenant_create(st, "ea", "a"), 0);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "eb", "b"), 0);
  uint8_t a1[32], a2[32], b1[32], pep[32];
  CHECK_EQ_INT(sbx_store_blind_index(st, "ea", "email", mail, strlen(mail), a1),
               0);
  CHECK_EQ_INT(sbx_store_blind_index(st, "ea", "email", mail, strlen(mail), a2),
               0);
  CHECK_EQ_INT(sbx_store_blind_index(st, "eb", "email", mail, strlen(mail), b1),
               0);
  CHECK(!memcmp(a1, a2, 32));     /* equality lookups work */
  CHECK(memcmp(a1, b1, 32) != 0); /* not linkable across tenants */
  /* neither is the deployment-wide hash of older versions */
  CHECK_EQ_INT(sbx_store_keyed_hash(st, "email", mail, strlen(mail), pep), 0);
  CHECK(memcmp(a1, pep, 32) != 0 && memcmp(b1, pep, 32) != 0);
  /* users of both tenants with that address, one written the old way */
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "alice");
  snprintf(u.password_hash, sizeof u.password_hash, "$argon2id$v=19$x");
  u.created_at = 1;
  CHECK_EQ_INT(sbx_store_field_seal(st, "ea", "users.email|alice", mail,
                                    strlen(mail), u.email_sealed),
               0);
  u.email_sealed_len = strlen(mail) + SBX_SEAL_OVERHEAD;
  memcpy(u.email_index, a1, 32);
  CHECK_EQ_INT(sbx_meta_user_insert(sbx_store_meta(st), "ea", &u), 0);
  CHECK_EQ_INT(sbx_store_field_seal(st, "eb", "users.email|alice", mail,
                                    strlen(mail), u.email_sealed),
               0);
  memcpy(u.email_index, pep, 32); /* an older binary's index */
  sbx_store_close(st);
  sbx_meta *m = open_plain_meta();
  CHECK(m != NULL);
  if (!m)
    return;
  CHECK_EQ_INT(sbx_meta_user_insert(m, "eb", &u), 0);
  sbx_meta_close(m);
  st = open_store(); /* re-indexes the old row */
  CHECK(st != NULL);
  if (!st)
    return;
  idx_row ra = {{0}, -1}, rb = {{0}, -1};
  sbx_sql_val va[] = {SBX_SQL_T("ea"), SBX_SQL_T("alice")};
  sbx_sql_val vb[] = {SBX_SQL_T("eb"), SBX_SQL_T("alice")};
  static const char q[] = "SELECT email_index, email_index_v FROM users "
                          "WHERE tenant_id = $1 AND id = $2";
  CHECK_EQ_INT(sbx_sql_exec(sbx_store_meta(st), q, va, 2, fill_idx, &ra, NULL),
               0);
  CHECK_EQ_INT(sbx_sql_exec(sbx_store_meta(st), q, vb, 2, fill_idx, &rb, NULL),
               0);
  CHECK(!memcmp(ra.idx, a1, 32) && ra.v == 1);
  CHECK(!memcmp(rb.idx, b1, 32) && rb.v == 1);
  CHECK(memcmp(ra.idx, rb.idx, 32) != 0);
  sbx_user got;
  CHECK_EQ_INT(sbx_meta_user_find_email(sbx_store_meta(st), "eb", b1, &got), 0);
  CHECK(!strcmp(got.id, "alice"));
  /* shredding takes the index key with it */
  CHECK_EQ_INT(sbx_store_shred_tenant(st, "eb"), 0);
  CHECK_EQ_INT(sbx_store_blind_index(st, "eb", "email", mail, strlen(mail), b1),
               SBX_EKEY);
  CHECK_EQ_INT(sbx_meta_checkpoint(sbx_store_meta(st)), 0);
  sbx_store_close(st);
  size_t n;
  uint8_t *raw = raw_db(&n);
  CHECK(raw != NULL);
  CHECK(!holds(raw, n, mail));
  free(raw);
}

int main(void) {
  if (!mkdtemp(root))
    return 2;
  chmod(root, 0755); /* pg_dump as the postgres user writes here */
  pg = getenv("SBX_TEST_PG");
  if (pg && !*pg)
    pg = NULL;
  char keypath[256];
  snprintf(keypath, sizeof keypath, "%s/master.key", root);
  snprintf(keyspec, sizeof keyspec, "file:%s", keypath);
  snprintf(datadir, sizeof datadir, "%s/data", root);
  if (sbx_master_key_create_file(keypath, NULL))
    return 2;
  fprintf(stderr, "backend: %s\n", pg ? "postgres" : "sqlite");
  RUN(names_not_at_rest);
  RUN(legacy_rows_sealed_at_open);
  RUN(shredding_makes_names_unreadable);
  RUN(email_index_per_tenant);
  RUN(audit_fields_sealed);
  RUN(job_texts_not_at_rest);
  tu_rm_rf(root);
  return harness_report();
}
