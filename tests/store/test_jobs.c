/*
 * test_jobs.c - the job queue (sbx/jobs.h) on SQLite, or on PostgreSQL when
 * SBX_TEST_PG holds a conninfo (pg_run.sh): lifecycle and events, cancel in
 * every state, progress, shards and their results, limits (defaults, caps,
 * clamping), fair share and quotas, leases (requeue, bounded attempts,
 * stale workers refused), job tokens, worker tokens, tenant scoping, paging,
 * a claimer process killed -9 mid-transaction, 200 jobs (20 of them in 4
 * shards) claimed by 4 concurrent claimers with every shard completed
 * exactly once, and the concurrency quota under simultaneous claims.
 *
 * Expected values come from the rules in docs/jobs.md (slice bounds
 * k*n/K, "fewest running, then least recently served", ...), not from
 * running this code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "harness.h"
#include "sbx/jobs.h"
#include "store_testutil.h"

static char root[] = "/tmp/sbx_jobs_XXXXXX";
static char keyspec[300], datadir[256];
static const char *pg;

static sbx_store *open_store(void) {
  return tu_open_store(datadir, keyspec, pg);
}

/* Every test starts from an empty queue (claims span tenants). */
static void reset(sbx_store *st) {
  static const char *const sql[] = {
      "DELETE FROM job_events", "DELETE FROM job_shards",
      "DELETE FROM jobs",       "DELETE FROM job_sched",
      "DELETE FROM job_limits", "DELETE FROM worker_tokens"};
  for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++)
    CHECK_EQ_INT(sbx__db_exec(sbx__meta_db(sbx_store_meta(st)), sql[i], NULL, 0,
                              NULL, NULL, NULL),
                 0);
}

static void tenant(sbx_store *st, const char *t) {
  int rc = sbx_store_tenant_create(st, t, t);
  CHECK(rc == 0 || rc == SBX_EEXIST);
}

/* A store on an empty queue with tenants "ta", "tb", "tc"; NULL (and a
 * failed check) when it does not open. */
static sbx_store *setup(void) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (st) {
    reset(st);
    tenant(st, "ta");
    tenant(st, "tb");
    tenant(st, "tc");
  }
  return st;
}

static sbx_job_new new_job(const char *id) {
  sbx_job_new j;
  memset(&j, 0, sizeof j);
  j.id = id;
  j.project_id = "p1";
  j.model_id = "model1";
  j.dataset_id = "data1";
  j.kind = "attack";
  j.spec = "{\"kind\":\"attack\",\"attack\":\"fgsm\",\"eps\":0.1}";
  return j;
}

static int create(sbx_store *st, const char *t, const char *id, int64_t samples,
                  int64_t shards, int64_t now) {
  sbx_job_new j = new_job(id);
  j.limits.samples = samples;
  j.limits.shards = shards;
  char why[SBX_JOB_MSG_MAX];
  int rc = sbx_meta_job_create(sbx_store_meta(st), t, &j, now, NULL, why);
  if (rc)
    fprintf(stderr, "create %s: %s (%s)\n", id, sbx_strerror(rc), why);
  return rc;
}

static int64_t job_state(sbx_store *st, const char *t, const char *id) {
  sbx_job j;
  if (sbx_meta_job_get(sbx_store_meta(st), t, NULL, id, &j))
    return -1;
  return j.state;
}

typedef struct evlog {
  sbx_job_event e[64];
  int n;
} evlog;

static int collect_ev(void *ctx, const sbx_job_event *e) {
  evlog *l = ctx;
  if (l->n < 64)
    l->e[l->n++] = *e;
  return 0;
}

/* ---- lifecycle ---- */

TEST(lifecycle_single_shard) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  sbx_job j;
  sbx_job_new n = new_job("j1");
  n.limits.samples = 100;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 1000, &j, NULL), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_QUEUED);
  CHECK_EQ_INT(j.limits.shards, 1);
  CHECK_EQ_INT(j.limits.wall_seconds, 3600); /* built-in default */
  CHECK_EQ_INT(j.limits.memory_bytes, 2LL << 30);
  CHECK_EQ_INT(j.max_attempts, 3);
  CHECK_EQ_INT(j.created_at, 1000);
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 1000, NULL, NULL), SBX_EEXIST);
  char spec[256];
  size_t sl = 0;
  CHECK_EQ_INT(sbx_meta_job_spec(m, "ta", "j1", spec, sizeof spec, &sl), 0);
  CHECK(strcmp(spec, n.spec) == 0 && sl == strlen(n.spec));
  CHECK_EQ_INT(sbx_meta_job_spec(m, "ta", "j1", spec, 4, NULL), SBX_ELIMIT);

  sbx_job_claim c;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 1010, &c), 0);
  CHECK(strcmp(c.tenant_id, "ta") == 0 && strcmp(c.job_id, "j1") == 0);
  CHECK(strcmp(c.model_id, "model1") == 0 &&
        strcmp(c.dataset_id, "data1") == 0 && strcmp(c.kind, "attack") == 0);
  CHECK_EQ_INT(c.shard, 0);
  CHECK_EQ_INT(c.shards, 1);
  CHECK_EQ_INT(c.sample_begin, 0);
  CHECK_EQ_INT(c.sample_end, 100);
  CHECK_EQ_INT(c.attempt, 1);
  CHECK_EQ_INT(c.lease_expires, 1040);
  CHECK(strncmp(c.token, "jt_", 3) == 0 && strlen(c.token) == 67);
  CHECK_EQ_INT(job_state(st, "ta", "j1"), SBX_JOB_RUNNING);
  /* nothing else to run */
  sbx_job_claim c2;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w2", 30, 1010, &c2), SBX_ENOTFOUND);

  /* the job token: scope */
  sbx_job_scope sc;
  CHECK_EQ_INT(sbx_store_job_token_verify(st, c.token, 1011, &sc), 0);
  CHECK(strcmp(sc.tenant_id, "ta") == 0 && strcmp(sc.job_id, "j1") == 0 &&
        strcmp(sc.model_id, "model1") == 0 &&
        strcmp(sc.dataset_id, "data1") == 0 &&
        strcmp(sc.project_id, "p1") == 0);
  char forged[SBX_TOKEN_MAX];
  snprintf(forged, sizeof forged, "%s", c.token);
  forged[10] = forged[10] == 'a' ? 'b' : 'a';
  CHECK_EQ_INT(sbx_store_job_token_verify(st, forged, 1011, &sc), SBX_EAUTH);
  CHECK_EQ_INT(sbx_store_job_token_verify(st, "jt_x", 1011, &sc), SBX_EAUTH);

  /* a frozen tenant's job tokens open nothing */
  CHECK_EQ_INT(sbx_meta_tenant_set_state(m, "ta", SBX_TENANT_FROZEN), 0);
  CHECK_EQ_INT(sbx_store_job_token_verify(st, c.token, 1011, &sc), SBX_EPERM);
  int fstop = -1;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 1011, 30, NULL, &fstop), 0);
  CHECK_EQ_INT(fstop, SBX_JOB_STOP_CANCEL);
  sbx_job_new n2 = new_job("j-frozen");
  char why[SBX_JOB_MSG_MAX];
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n2, 1011, NULL, why), SBX_EPERM);
  CHECK(strstr(why, "not active") != NULL);
  CHECK_EQ_INT(sbx_meta_tenant_set_state(m, "ta", SBX_TENANT_ACTIVE), 0);
  CHECK_EQ_INT(sbx_meta_job_create(m, "nosuch", &n2, 1011, NULL, why),
               SBX_ENOTFOUND);
  CHECK(strstr(why, "no such tenant") != NULL);
  CHECK_EQ_INT(sbx_store_job_token_verify(st, c.token, 1011, &sc), 0);
  CHECK_EQ_INT(sbx_job_state_parse("timed_out"), SBX_JOB_TIMED_OUT);
  CHECK_EQ_INT(sbx_job_state_parse("nope"), -1);
  CHECK(strcmp(sbx_job_state_name(SBX_JOB_CANCELLED), "cancelled") == 0);
  CHECK(strcmp(sbx_job_state_name(99), "unknown") == 0);

  /* progress */
  sbx_job_progress p;
  memset(&p, 0, sizeof p);
  p.fraction = 0.25;
  snprintf(p.phase, sizeof p.phase, "apgd-ce");
  p.robust_accuracy = 0.5;
  p.eta_seconds = 42;
  int stop = -1;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 1020, 30, &p, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_GO_ON);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", "p1", "j1", &j), 0);
  CHECK_NEAR(j.progress.fraction, 0.25, 1e-6);
  CHECK_NEAR(j.progress.robust_accuracy, 0.5, 1e-6);
  CHECK_EQ_INT(j.progress.eta_seconds, 42);
  CHECK(strcmp(j.progress.phase, "apgd-ce") == 0);
  /* the heartbeat extended the lease: still alive after the first one */
  CHECK_EQ_INT(sbx_store_job_token_verify(st, c.token, 1045, &sc), 0);
  CHECK_EQ_INT(sc.lease_expires, 1050);

  /* finish with results */
  sbx_job_results r;
  memset(&r, 0, sizeof r);
  snprintf(r.result_id, sizeof r.result_id, "res1");
  snprintf(r.adv_id, sizeof r.adv_id, "adv1");
  r.n_gallery = 2;
  snprintf(r.gallery[0], SBX_ID_MAX, "g0");
  snprintf(r.gallery[1], SBX_ID_MAX, "g1");
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 1046, SBX_JOB_SUCCEEDED, NULL, &r), 0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "j1", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_SUCCEEDED);
  CHECK_EQ_INT(j.finished_at, 1046);
  CHECK_EQ_INT(j.started_at, 1010);
  CHECK_EQ_INT(j.shards_done, 1);
  CHECK_NEAR(j.progress.fraction, 1.0, 1e-9);
  CHECK(strcmp(j.results.result_id, "res1") == 0 &&
        strcmp(j.results.adv_id, "adv1") == 0 && j.results.n_gallery == 2 &&
        strcmp(j.results.gallery[1], "g1") == 0);
  /* the token died with the shard */
  CHECK_EQ_INT(sbx_store_job_token_verify(st, c.token, 1047, &sc),
               SBX_EEXPIRED);
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 1047, 30, NULL, &stop),
               SBX_EEXPIRED);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 1047, SBX_JOB_FAILED, "late", NULL),
      SBX_EEXPIRED);
  CHECK_EQ_INT(job_state(st, "ta", "j1"), SBX_JOB_SUCCEEDED);

  /* the event log: every transition with time and reason */
  evlog ev;
  ev.n = 0;
  CHECK_EQ_INT(sbx_meta_job_events(m, "ta", "j1", 0, collect_ev, &ev), 0);
  CHECK_EQ_INT(ev.n, 5);
  if (ev.n == 5) {
    CHECK(ev.e[0].shard == -1 && ev.e[0].from_state == -1 &&
          ev.e[0].to_state == SBX_JOB_QUEUED && ev.e[0].ts == 1000);
    CHECK(ev.e[1].shard == -1 && ev.e[1].to_state == SBX_JOB_RUNNING &&
          ev.e[1].ts == 1010 && strstr(ev.e[1].reason, "w1"));
    CHECK(ev.e[2].shard == 0 && ev.e[2].to_state == SBX_JOB_RUNNING);
    CHECK(ev.e[3].shard == 0 && ev.e[3].to_state == SBX_JOB_SUCCEEDED &&
          ev.e[3].ts == 1046);
    CHECK(ev.e[4].shard == -1 && ev.e[4].from_state == SBX_JOB_RUNNING &&
          ev.e[4].to_state == SBX_JOB_SUCCEEDED && ev.e[4].reason[0]);
    for (int i = 0; i < 5; i++)
      CHECK_EQ_INT(ev.e[i].seq, i + 1);
  }
  ev.n = 0;
  CHECK_EQ_INT(sbx_meta_job_events(m, "ta", "j1", 3, collect_ev, &ev), 0);
  CHECK_EQ_INT(ev.n, 2);
  /* tenant scoping */
  CHECK_EQ_INT(sbx_meta_job_get(m, "tb", NULL, "j1", &j), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", "p2", "j1", &j), SBX_ENOTFOUND);
  ev.n = 0;
  CHECK_EQ_INT(sbx_meta_job_events(m, "tb", "j1", 0, collect_ev, &ev), 0);
  CHECK_EQ_INT(ev.n, 0);
  int64_t s = 0;
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "tb", NULL, "j1", 1050, NULL, &s),
               SBX_ENOTFOUND);
  sbx_store_close(st);
}

TEST(failures_carry_messages) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(create(st, "ta", "jf", 10, 1, 100), 0);
  sbx_job_claim c;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 101, &c), 0);
  /* failed without a message is refused; nothing changes */
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 102, SBX_JOB_FAILED, NULL, NULL),
      SBX_EINVAL);
  CHECK_EQ_INT(sbx_store_job_finish(st, c.token, 102, SBX_JOB_FAILED, "", NULL),
               SBX_EINVAL);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 102, SBX_JOB_RUNNING, "x", NULL),
      SBX_EINVAL);
  CHECK_EQ_INT(job_state(st, "ta", "jf"), SBX_JOB_RUNNING);
  const char *msg = "model uses unsupported op NonMaxSuppression";
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 103, SBX_JOB_FAILED, msg, NULL), 0);
  sbx_job j;
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jf", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_FAILED);
  CHECK(strcmp(j.message, msg) == 0);

  /* timed out: the heartbeat says stop once the wall time is used up */
  sbx_job_new n = new_job("jt");
  n.limits.wall_seconds = 60;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 200, NULL, NULL), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 200, &c), 0);
  CHECK_EQ_INT(c.limits.wall_seconds, 60);
  int stop = -1;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 225, 30, NULL, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_GO_ON);
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 250, 30, NULL, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_GO_ON);
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 260, 30, NULL, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_STOP_TIMEOUT);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 261, SBX_JOB_TIMED_OUT, NULL, NULL), 0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jt", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_TIMED_OUT);
  CHECK(strstr(j.message, "60 s") != NULL);
  sbx_store_close(st);
}

TEST(cancel_every_state) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  int64_t s = -1;
  /* queued: cancelled at once, never claimed */
  CHECK_EQ_INT(create(st, "ta", "jq", 10, 1, 100), 0);
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "ta", "p1", "jq", 101, NULL, &s), 0);
  CHECK_EQ_INT(s, SBX_JOB_CANCELLED);
  sbx_job_claim c;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 102, &c), SBX_ENOTFOUND);
  sbx_job j;
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jq", &j), 0);
  CHECK(strcmp(j.message, "cancelled by user") == 0);
  CHECK_EQ_INT(j.finished_at, 101);

  /* running: requested, seen on the next heartbeat, then cancelled */
  CHECK_EQ_INT(create(st, "ta", "jr", 10, 1, 110), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 111, &c), 0);
  CHECK_EQ_INT(
      sbx_meta_job_cancel(m, "ta", NULL, "jr", 112, "stop it please", &s), 0);
  CHECK_EQ_INT(s, SBX_JOB_RUNNING);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jr", &j), 0);
  CHECK_EQ_INT(j.cancel_requested, 1);
  int stop = -1;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c.token, 113, 30, NULL, &stop), 0);
  CHECK_EQ_INT(stop, SBX_JOB_STOP_CANCEL);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 114, SBX_JOB_CANCELLED, NULL, NULL), 0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jr", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_CANCELLED);
  evlog ev;
  ev.n = 0;
  CHECK_EQ_INT(sbx_meta_job_events(m, "ta", "jr", 0, collect_ev, &ev), 0);
  int noted = 0;
  for (int i = 0; i < ev.n; i++)
    noted |= strstr(ev.e[i].reason, "stop it please") != NULL;
  CHECK(noted);

  /* running, worker dies after the request: cancelled at lease expiry */
  CHECK_EQ_INT(create(st, "ta", "jd", 10, 1, 120), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 10, 121, &c), 0);
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "ta", NULL, "jd", 122, NULL, &s), 0);
  int64_t rq = 0, fl = 0;
  CHECK_EQ_INT(sbx_meta_job_requeue_expired(m, 140, &rq, &fl), 0);
  CHECK_EQ_INT(rq + fl, 0);
  CHECK_EQ_INT(job_state(st, "ta", "jd"), SBX_JOB_CANCELLED);

  /* finished: nothing changes */
  CHECK_EQ_INT(create(st, "ta", "js", 10, 1, 150), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 151, &c), 0);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, 152, SBX_JOB_SUCCEEDED, NULL, NULL), 0);
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "ta", NULL, "js", 153, NULL, &s), 0);
  CHECK_EQ_INT(s, SBX_JOB_SUCCEEDED);
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "ta", NULL, "jq", 153, NULL, &s), 0);
  CHECK_EQ_INT(s, SBX_JOB_CANCELLED);
  CHECK_EQ_INT(sbx_meta_job_cancel(m, "ta", NULL, "nope", 153, NULL, &s),
               SBX_ENOTFOUND);
  sbx_store_close(st);
}

/* ---- shards ---- */

typedef struct shard_log {
  sbx_job_shard s[8];
  int n;
} shard_log;

static int collect_shard(void *ctx, const sbx_job_shard *s) {
  shard_log *l = ctx;
  if (l->n < 8)
    l->s[l->n++] = *s;
  return 0;
}

TEST(shards) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(create(st, "ta", "js", 10, 4, 100), 0);
  /* contiguous slices k*n/K: [0,2) [2,5) [5,7) [7,10) */
  static const int64_t lo[4] = {0, 2, 5, 7}, hi[4] = {2, 5, 7, 10};
  sbx_job_claim c[4];
  for (int k = 0; k < 4; k++) {
    char w[8];
    snprintf(w, sizeof w, "w%d", k);
    CHECK_EQ_INT(sbx_store_job_claim(st, w, 30, 101, &c[k]), 0);
    CHECK_EQ_INT(c[k].shard, k); /* FIFO within the job */
    CHECK_EQ_INT(c[k].shards, 4);
    CHECK_EQ_INT(c[k].sample_begin, lo[k]);
    CHECK_EQ_INT(c[k].sample_end, hi[k]);
  }
  for (int a = 0; a < 4; a++) /* one token per shard */
    for (int b = a + 1; b < 4; b++)
      CHECK(strcmp(c[a].token, c[b].token) != 0);
  sbx_job_progress p;
  memset(&p, 0, sizeof p);
  p.fraction = 0.5;
  p.robust_accuracy = 0.2;
  int stop;
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c[1].token, 102, 30, &p, &stop), 0);
  sbx_job j;
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "js", &j), 0);
  /* sample-weighted: shard 1 holds 3 of 10 samples at 50 % */
  CHECK_NEAR(j.progress.fraction, 0.15, 1e-6);
  sbx_job_results r;
  for (int k = 0; k < 4; k++) {
    memset(&r, 0, sizeof r);
    snprintf(r.result_id, sizeof r.result_id, "res-%d", k);
    CHECK_EQ_INT(sbx_store_job_finish(st, c[k].token, 110 + k,
                                      SBX_JOB_SUCCEEDED, NULL, &r),
                 0);
    CHECK_EQ_INT(job_state(st, "ta", "js"),
                 k < 3 ? SBX_JOB_RUNNING : SBX_JOB_SUCCEEDED);
  }
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "js", &j), 0);
  CHECK_EQ_INT(j.shards_done, 4);
  CHECK(j.results.result_id[0] == 0); /* sharded: the server merges */
  shard_log sl;
  sl.n = 0;
  CHECK_EQ_INT(sbx_meta_job_shards(m, "ta", "js", collect_shard, &sl), 0);
  CHECK_EQ_INT(sl.n, 4);
  for (int k = 0; k < sl.n; k++) {
    char want[16];
    snprintf(want, sizeof want, "res-%d", k);
    CHECK(strcmp(sl.s[k].results.result_id, want) == 0);
    CHECK_EQ_INT(sl.s[k].state, SBX_JOB_SUCCEEDED);
  }
  memset(&r, 0, sizeof r);
  snprintf(r.result_id, sizeof r.result_id, "merged");
  CHECK_EQ_INT(sbx_meta_job_set_results(m, "ta", "js", 120, &r), 0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "js", &j), 0);
  CHECK(strcmp(j.results.result_id, "merged") == 0);

  /* a shard whose worker is lost goes back in line; its sibling's result
   * stands; the job succeeds when the retry does */
  CHECK_EQ_INT(create(st, "ta", "jl", 4, 2, 150), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w0", 10, 150, &c[0]), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 60, 150, &c[1]), 0);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c[1].token, 155, SBX_JOB_SUCCEEDED, NULL, NULL),
      0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w2", 60, 161, &c[2]), 0);
  CHECK(strcmp(c[2].job_id, "jl") == 0 && c[2].shard == 0 &&
        c[2].attempt == 2 && c[2].sample_end == 2);
  CHECK_EQ_INT(job_state(st, "ta", "jl"), SBX_JOB_RUNNING);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c[2].token, 162, SBX_JOB_SUCCEEDED, NULL, NULL),
      0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jl", &j), 0);
  CHECK(j.state == SBX_JOB_SUCCEEDED && j.shards_done == 2);

  /* one shard fails: queued ones are cancelled, running ones told to
   * stop, the job fails naming the shard */
  CHECK_EQ_INT(create(st, "ta", "jx", 30, 3, 200), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w0", 30, 201, &c[0]), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 30, 201, &c[1]), 0);
  CHECK_EQ_INT(sbx_store_job_finish(st, c[0].token, 202, SBX_JOB_FAILED,
                                    "memory limit 2 GiB exceeded", NULL),
               0);
  CHECK_EQ_INT(job_state(st, "ta", "jx"), SBX_JOB_RUNNING);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w2", 30, 203, &c[2]), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c[1].token, 203, 30, NULL, &stop),
               0);
  CHECK_EQ_INT(stop, SBX_JOB_STOP_CANCEL);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c[1].token, 204, SBX_JOB_CANCELLED, NULL, NULL),
      0);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "jx", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_FAILED);
  CHECK(strstr(j.message, "shard 1 of 3") &&
        strstr(j.message, "memory limit 2 GiB exceeded"));
  sl.n = 0;
  CHECK_EQ_INT(sbx_meta_job_shards(m, "ta", "jx", collect_shard, &sl), 0);
  CHECK(sl.n == 3 && sl.s[0].state == SBX_JOB_FAILED &&
        sl.s[1].state == SBX_JOB_CANCELLED &&
        sl.s[2].state == SBX_JOB_CANCELLED);
  sbx_store_close(st);
}

/* ---- limits ---- */

TEST(limits) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  sbx_job_limit_set l;
  CHECK_EQ_INT(sbx_meta_job_limits_get(m, "ta", 1, &l), 0);
  CHECK_EQ_INT(l.default_wall_seconds, 3600);
  CHECK_EQ_INT(l.max_wall_seconds, 86400);
  CHECK_EQ_INT(l.max_concurrency, 0);
  /* deployment row, then a tenant override */
  sbx_job_limit_set sys;
  memset(&sys, 0, sizeof sys);
  sys.max_wall_seconds = 7200;
  sys.default_memory_bytes = 1LL << 30;
  CHECK_EQ_INT(sbx_meta_job_limits_set(m, SBX_SYS_TENANT, &sys, 10), 0);
  sbx_job_limit_set t;
  memset(&t, 0, sizeof t);
  t.max_wall_seconds = 600;
  t.default_wall_seconds = 900; /* above the cap: lowered to it */
  t.max_samples = 1000;
  t.max_concurrency = 2;
  CHECK_EQ_INT(sbx_meta_job_limits_set(m, "ta", &t, 11), 0);
  CHECK_EQ_INT(sbx_meta_job_limits_get(m, "ta", 0, &l), 0);
  CHECK_EQ_INT(l.max_wall_seconds, 600);
  CHECK_EQ_INT(l.default_memory_bytes, 0); /* raw: inherit */
  CHECK_EQ_INT(sbx_meta_job_limits_get(m, "ta", 1, &l), 0);
  CHECK_EQ_INT(l.max_wall_seconds, 600);
  CHECK_EQ_INT(l.default_wall_seconds, 600);
  CHECK_EQ_INT(l.default_memory_bytes, 1LL << 30);
  CHECK_EQ_INT(l.max_samples, 1000);
  CHECK_EQ_INT(l.max_concurrency, 2);
  CHECK_EQ_INT(sbx_meta_job_limits_get(m, "tb", 1, &l), 0);
  CHECK_EQ_INT(l.max_wall_seconds, 7200);
  CHECK_EQ_INT(l.default_wall_seconds, 3600);
  t.max_wall_seconds = -1; /* "none" only for default samples and quota */
  CHECK_EQ_INT(sbx_meta_job_limits_set(m, "ta", &t, 12), SBX_EINVAL);

  /* creation: defaults applied, caps refused with the limit named */
  char why[SBX_JOB_MSG_MAX];
  sbx_job j;
  sbx_job_new n = new_job("j1");
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), 0);
  CHECK_EQ_INT(j.limits.wall_seconds, 600);
  CHECK_EQ_INT(j.limits.memory_bytes, 1LL << 30);
  n = new_job("j2");
  n.limits.wall_seconds = 601;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_ELIMIT);
  CHECK(strstr(why, "wall_seconds") && strstr(why, "600"));
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "j2", &j), SBX_ENOTFOUND);
  n.limits.wall_seconds = 0;
  n.limits.samples = 5000;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_ELIMIT);
  CHECK(strstr(why, "samples") && strstr(why, "1000"));
  n.limits.samples = 0;
  n.limits.memory_bytes = 32LL << 30; /* above the built-in 16 GiB cap */
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_ELIMIT);
  CHECK(strstr(why, "memory_bytes") != NULL);
  n.clamp = 1; /* clamped instead */
  n.limits.samples = 5000;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), 0);
  CHECK_EQ_INT(j.limits.memory_bytes, 16LL << 30);
  CHECK_EQ_INT(j.limits.samples, 1000);
  /* shards: need a sample count, at most one per sample, <= the cap */
  n = new_job("j3");
  n.limits.shards = 2;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_EINVAL);
  CHECK(strstr(why, "shards") != NULL);
  n.limits.samples = 3;
  n.limits.shards = 4;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_EINVAL);
  n.limits.samples = 1000;
  n.limits.shards = 65; /* built-in cap 64 */
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_ELIMIT);
  CHECK(strstr(why, "shards") != NULL);
  /* hostile ids are refused before any SQL */
  n = new_job("x'; DROP TABLE jobs; --");
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, 100, &j, why), SBX_EINVAL);
  n = new_job("j4");
  CHECK_EQ_INT(sbx_meta_job_create(m, "nosuchtenant", &n, 100, &j, why),
               SBX_ENOTFOUND);
  sbx_store_close(st);
}

/* ---- fair share, quotas ---- */

TEST(fair_share_and_quota) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_meta_begin(m), 0); /* 500 jobs, one transaction */
  for (int i = 0; i < 500; i++) {
    char id[16];
    snprintf(id, sizeof id, "a%03d", i);
    CHECK_EQ_INT(create(st, "ta", id, 10, 1, 100), 0);
  }
  CHECK_EQ_INT(sbx_meta_commit(m), 0);
  sbx_job_claim c, cb;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 60, 101, &c), 0);
  CHECK(strcmp(c.job_id, "a000") == 0); /* FIFO */
  CHECK_EQ_INT(sbx_store_job_claim(st, "w2", 60, 101, &c), 0);
  CHECK(strcmp(c.job_id, "a001") == 0);
  /* B submits one job: it starts before A's next one */
  CHECK_EQ_INT(create(st, "tb", "b000", 10, 1, 102), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w3", 60, 103, &cb), 0);
  CHECK(strcmp(cb.tenant_id, "tb") == 0 && strcmp(cb.job_id, "b000") == 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w4", 60, 103, &c), 0);
  CHECK(strcmp(c.job_id, "a002") == 0);
  /* B and C submit 2 each: running A=3, B=1, C=0 -> C, then B or C by
   * fewest running (B=1, C=1: B served less recently), ... */
  CHECK_EQ_INT(create(st, "tb", "b001", 10, 1, 104), 0);
  CHECK_EQ_INT(create(st, "tb", "b002", 10, 1, 104), 0);
  CHECK_EQ_INT(create(st, "tc", "c000", 10, 1, 104), 0);
  CHECK_EQ_INT(create(st, "tc", "c001", 10, 1, 104), 0);
  static const char *const want[] = {"c000", "b001", "c001", "b002", "a003"};
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(sbx_store_job_claim(st, "w5", 60, 105, &c), 0);
    if (strcmp(c.job_id, want[i]))
      fprintf(stderr, "claim %d: got %s, want %s\n", i, c.job_id, want[i]);
    CHECK(strcmp(c.job_id, want[i]) == 0);
  }
  /* quota: A may run 4 at once; it runs 4 now */
  sbx_job_limit_set l;
  memset(&l, 0, sizeof l);
  l.max_concurrency = 4;
  CHECK_EQ_INT(sbx_meta_job_limits_set(m, "ta", &l, 106), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 107, &c), SBX_ENOTFOUND);
  /* a frozen tenant's jobs are not handed out */
  CHECK_EQ_INT(create(st, "tc", "c002", 10, 1, 107), 0);
  CHECK_EQ_INT(sbx_meta_tenant_set_state(m, "tc", SBX_TENANT_FROZEN), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 107, &c), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_meta_tenant_set_state(m, "tc", SBX_TENANT_ACTIVE), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 107, &c), 0);
  CHECK(strcmp(c.job_id, "c002") == 0);
  /* B's job ends: still no slot for A; one of A's ends: A gets one */
  CHECK_EQ_INT(
      sbx_store_job_finish(st, cb.token, 108, SBX_JOB_SUCCEEDED, NULL, NULL),
      0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 108, &c), SBX_ENOTFOUND);
  sbx_job_claim a0;
  memset(&a0, 0, sizeof a0);
  /* find a running A job's token: claim again after finishing one needs
   * one; use the lease path instead: raise the quota by one */
  l.max_concurrency = 5;
  CHECK_EQ_INT(sbx_meta_job_limits_set(m, "ta", &l, 109), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 109, &a0), 0);
  CHECK(strcmp(a0.job_id, "a004") == 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 109, &c), SBX_ENOTFOUND);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, a0.token, 110, SBX_JOB_SUCCEEDED, NULL, NULL),
      0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "w6", 60, 110, &c), 0);
  CHECK(strcmp(c.job_id, "a005") == 0);
  sbx_store_close(st);
}

/* ---- leases ---- */

TEST(leases_and_stale_workers) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(create(st, "ta", "j1", 10, 1, 100), 0);
  CHECK_EQ_INT(create(st, "ta", "j2", 10, 1, 100), 0);
  sbx_job_claim c1, c2, c3;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w1", 10, 100, &c1), 0);
  CHECK(strcmp(c1.job_id, "j1") == 0);
  /* w1 is killed -9: its lease runs out; the next claim re-queues it and,
   * being first in line, takes it again (attempt 2) */
  int stop;
  CHECK_EQ_INT(sbx_store_job_token_verify(st, c1.token, 111, NULL),
               SBX_EEXPIRED); /* lease lost even before the sweep */
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c1.token, 111, 10, NULL, &stop),
               SBX_EEXPIRED); /* a dead token cannot revive its lease */
  CHECK_EQ_INT(sbx_store_job_claim(st, "w2", 10, 111, &c2), 0);
  CHECK(strcmp(c2.job_id, "j1") == 0);
  CHECK_EQ_INT(c2.attempt, 2);
  /* the stale worker wakes up: its token is dead, it cannot finish */
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c1.token, 112, SBX_JOB_SUCCEEDED, NULL, NULL),
      SBX_EAUTH);
  CHECK_EQ_INT(sbx_store_job_heartbeat(st, c1.token, 112, 10, NULL, &stop),
               SBX_EAUTH);
  CHECK_EQ_INT(job_state(st, "ta", "j1"), SBX_JOB_RUNNING);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c2.token, 113, SBX_JOB_SUCCEEDED, NULL, NULL),
      0);
  CHECK_EQ_INT(job_state(st, "ta", "j1"), SBX_JOB_SUCCEEDED);
  evlog ev;
  ev.n = 0;
  CHECK_EQ_INT(sbx_meta_job_events(m, "ta", "j1", 0, collect_ev, &ev), 0);
  int requeued = 0;
  for (int i = 0; i < ev.n; i++)
    requeued += ev.e[i].shard == 0 && ev.e[i].from_state == SBX_JOB_RUNNING &&
                ev.e[i].to_state == SBX_JOB_QUEUED;
  CHECK_EQ_INT(requeued, 1);

  /* j2: lost 3 times -> failed with the reason */
  int64_t now = 200;
  for (int a = 1; a <= 3; a++) {
    CHECK_EQ_INT(sbx_store_job_claim(st, "wx", 10, now, &c3), 0);
    CHECK(strcmp(c3.job_id, "j2") == 0);
    CHECK_EQ_INT(c3.attempt, a);
    now += 11;
  }
  int64_t rq = 0, fl = 0;
  CHECK_EQ_INT(sbx_meta_job_requeue_expired(m, now, &rq, &fl), 0);
  CHECK_EQ_INT(rq, 0);
  CHECK_EQ_INT(fl, 1);
  sbx_job j;
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "j2", &j), 0);
  CHECK_EQ_INT(j.state, SBX_JOB_FAILED);
  CHECK(strstr(j.message, "worker lost 3 times") != NULL);
  CHECK_EQ_INT(sbx_store_job_claim(st, "wx", 10, now, &c3), SBX_ENOTFOUND);
  /* max_attempts per job */
  sbx_job_new n = new_job("j3");
  n.max_attempts = 1;
  CHECK_EQ_INT(sbx_meta_job_create(m, "ta", &n, now, NULL, NULL), 0);
  CHECK_EQ_INT(sbx_store_job_claim(st, "wx", 10, now, &c3), 0);
  rq = fl = 0;
  CHECK_EQ_INT(sbx_meta_job_requeue_expired(m, now + 11, &rq, &fl), 0);
  CHECK_EQ_INT(fl, 1);
  CHECK_EQ_INT(sbx_meta_job_get(m, "ta", NULL, "j3", &j), 0);
  CHECK(j.state == SBX_JOB_FAILED && strstr(j.message, "worker lost 1 time"));
  sbx_store_close(st);
}

/* ---- worker tokens ---- */

static int count_wt(void *ctx, const sbx_worker_token *t) {
  int *n = ctx;
  for (int i = 0; i < SBX_SHA256_LEN; i++)
    if (t->secret_hash[i])
      return -100; /* hashes are not handed out */
  (*n)++;
  return 0;
}

TEST(worker_tokens) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  char tok[SBX_TOKEN_MAX], tok2[SBX_TOKEN_MAX];
  sbx_worker_token t, v;
  CHECK_EQ_INT(sbx_store_worker_token_create(st, "rack 1", 0, 100, tok, &t), 0);
  CHECK(strncmp(tok, "wt_", 3) == 0 && strlen(tok) == 3 + 16 + 1 + 64);
  CHECK(strstr(tok, t.id) == tok + 3);
  CHECK_EQ_INT(
      sbx_store_worker_token_create(st, "rack 2", 500, 100, tok2, NULL), 0);
  CHECK_EQ_INT(sbx_store_worker_token_verify(st, tok, 200, &v), 0);
  CHECK(strcmp(v.name, "rack 1") == 0 && v.last_used_at == 200);
  /* the secret itself is not stored: the row holds a keyed hash */
  uint8_t plain[SBX_SHA256_LEN];
  sbx_sha256(strchr(tok, '.') + 1, 64, plain);
  CHECK(memcmp(plain, v.secret_hash, SBX_SHA256_LEN) != 0);
  char bad[SBX_TOKEN_MAX];
  snprintf(bad, sizeof bad, "%s", tok);
  size_t L = strlen(bad);
  bad[L - 1] = bad[L - 1] == '0' ? '1' : '0';
  CHECK_EQ_INT(sbx_store_worker_token_verify(st, bad, 200, &v), SBX_EAUTH);
  CHECK_EQ_INT(sbx_store_worker_token_verify(st, "wt_nope", 200, &v),
               SBX_EAUTH);
  CHECK_EQ_INT(sbx_store_worker_token_verify(st, tok2, 499, &v), 0);
  CHECK_EQ_INT(sbx_store_worker_token_verify(st, tok2, 500, &v), SBX_EEXPIRED);
  int n = 0;
  CHECK_EQ_INT(sbx_meta_worker_token_list(m, count_wt, &n), 0);
  CHECK_EQ_INT(n, 2);
  CHECK_EQ_INT(sbx_meta_worker_token_revoke(m, t.id, 300), 0);
  CHECK_EQ_INT(sbx_meta_worker_token_revoke(m, t.id, 301), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_store_worker_token_verify(st, tok, 302, &v), SBX_EEXPIRED);
  sbx_store_close(st);
}

/* ---- paging ---- */

static int collect_ids(void *ctx, const sbx_job *j) {
  char(*ids)[SBX_ID_MAX] = ctx;
  int i = 0;
  while (ids[i][0])
    i++;
  snprintf(ids[i], SBX_ID_MAX, "%s", j->id);
  return 0;
}

TEST(list_paging) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  for (int i = 0; i < 7; i++) {
    char id[16];
    snprintf(id, sizeof id, "j%d", i);
    CHECK_EQ_INT(create(st, "ta", id, 10, 1, 100 + i), 0);
  }
  CHECK_EQ_INT(create(st, "tb", "other", 10, 1, 100), 0);
  static char ids[16][SBX_ID_MAX];
  memset(ids, 0, sizeof ids);
  char cur[SBX_ID_MAX] = "", next[SBX_ID_MAX];
  int pages = 0;
  do {
    CHECK_EQ_INT(
        sbx_meta_job_list(m, "ta", "p1", -1, cur, 3, collect_ids, ids, next),
        0);
    memcpy(cur, next, sizeof cur);
    pages++;
  } while (cur[0] && pages < 10);
  CHECK_EQ_INT(pages, 3);
  for (int i = 0; i < 7; i++) { /* newest first, each once */
    char want[16];
    snprintf(want, sizeof want, "j%d", 6 - i);
    CHECK(strcmp(ids[i], want) == 0);
  }
  CHECK(ids[7][0] == 0);
  /* jobs created in the same microsecond by two servers: the keyset (seq,
   * id) still pages through each exactly once */
  CHECK_EQ_INT(sbx__db_exec(sbx__meta_db(m),
                            "UPDATE jobs SET seq = 42 WHERE tenant_id = 'ta'",
                            NULL, 0, NULL, NULL, NULL),
               0);
  memset(ids, 0, sizeof ids);
  cur[0] = 0;
  pages = 0;
  do {
    CHECK_EQ_INT(
        sbx_meta_job_list(m, "ta", NULL, -1, cur, 2, collect_ids, ids, next),
        0);
    memcpy(cur, next, sizeof cur);
    pages++;
  } while (cur[0] && pages < 10);
  for (int i = 0; i < 7; i++) {
    char want[16];
    snprintf(want, sizeof want, "j%d", 6 - i); /* ties: id descending */
    CHECK(strcmp(ids[i], want) == 0);
  }
  CHECK(ids[7][0] == 0);
  memset(ids, 0, sizeof ids);
  CHECK_EQ_INT(
      sbx_meta_job_list(m, "ta", "p2", -1, NULL, 10, collect_ids, ids, NULL),
      0);
  CHECK(ids[0][0] == 0);
  sbx_job_claim c;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w", 30, 110, &c), 0);
  memset(ids, 0, sizeof ids);
  CHECK_EQ_INT(sbx_meta_job_list(m, "ta", NULL, SBX_JOB_RUNNING, NULL, 10,
                                 collect_ids, ids, NULL),
               0);
  CHECK(strcmp(ids[0], c.job_id) == 0 && ids[1][0] == 0);
  CHECK_EQ_INT(
      sbx_meta_job_list(m, "ta", NULL, -1, NULL, 0, collect_ids, ids, NULL),
      SBX_EINVAL);
  sbx_store_close(st);
}

/* ---- concurrent claimers: each job completed exactly once ---- */

#define CJOBS 200
#define CTHREADS 4

static int claimed[CJOBS], completed[CJOBS];
static int per_thread[CTHREADS];
static int thread_errors;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void *claimer(void *arg) {
  int me = (int)(intptr_t)arg;
  sbx_store *st = open_store();
  if (!st) {
    pthread_mutex_lock(&mu);
    thread_errors++;
    pthread_mutex_unlock(&mu);
    return NULL;
  }
  char wid[16];
  snprintf(wid, sizeof wid, "w%d", me);
  int idle = 0;
  while (idle < 3) {
    sbx_job_claim c;
    int rc = sbx_store_job_claim(st, wid, 60, time(NULL), &c);
    if (rc == SBX_ENOTFOUND) {
      idle++;
      usleep(2000);
      continue;
    }
    if (rc == SBX_EBUSY || rc == SBX_ECONFLICT)
      continue; /* SQLite lock wait ran out / serialisation: retry */
    if (rc) {
      fprintf(stderr, "claim: %s (%s)\n", sbx_strerror(rc),
              sbx_meta_last_error(sbx_store_meta(st)));
      pthread_mutex_lock(&mu);
      thread_errors++;
      pthread_mutex_unlock(&mu);
      break;
    }
    idle = 0;
    int k = atoi(c.job_id + 1); /* counts shard claims */
    pthread_mutex_lock(&mu);
    if (k >= 0 && k < CJOBS)
      claimed[k]++;
    per_thread[me]++;
    pthread_mutex_unlock(&mu);
    do
      rc = sbx_store_job_finish(st, c.token, time(NULL), SBX_JOB_SUCCEEDED,
                                NULL, NULL);
    while (rc == SBX_EBUSY || rc == SBX_ECONFLICT);
    pthread_mutex_lock(&mu);
    if (rc == 0 && k >= 0 && k < CJOBS)
      completed[k]++;
    else if (rc) {
      fprintf(stderr, "finish: %s\n", sbx_strerror(rc));
      thread_errors++;
    }
    pthread_mutex_unlock(&mu);
  }
  sbx_store_close(st);
  return NULL;
}

typedef struct ints2 {
  int64_t a, b;
} ints2;

static int row_ints2(void *ctx, const sbx__row *r) {
  ints2 *x = ctx;
  x->a = sbx__col_int(r, 0);
  x->b = sbx__col_int(r, 1);
  return 1;
}

TEST(concurrent_claimers_exactly_once) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_meta_begin(m), 0);
  for (int i = 0; i < CJOBS; i++) {
    char id[16];
    snprintf(id, sizeof id, "c%d", i);
    CHECK_EQ_INT(
        create(st, i % 2 ? "tb" : "ta", id, 10, i % 10 ? 1 : 4, time(NULL)), 0);
  }
  CHECK_EQ_INT(sbx_meta_commit(m), 0);
  pthread_t th[CTHREADS];
  for (int i = 0; i < CTHREADS; i++)
    pthread_create(&th[i], NULL, claimer, (void *)(intptr_t)i);
  for (int i = 0; i < CTHREADS; i++)
    pthread_join(th[i], NULL);
  CHECK_EQ_INT(thread_errors, 0);
  int once = 0, busy = 0;
  for (int i = 0; i < CJOBS; i++) {
    int shards = i % 10 ? 1 : 4; /* every 10th job has 4 shards */
    once += claimed[i] == shards && completed[i] == shards;
    char id[16];
    snprintf(id, sizeof id, "c%d", i);
    CHECK_EQ_INT(job_state(st, i % 2 ? "tb" : "ta", id), SBX_JOB_SUCCEEDED);
  }
  CHECK_EQ_INT(once, CJOBS);
  for (int i = 0; i < CTHREADS; i++)
    busy += per_thread[i] > 0;
  fprintf(stderr, "  claims per thread: %d %d %d %d\n", per_thread[0],
          per_thread[1], per_thread[2], per_thread[3]);
  if (pg) /* they really ran side by side (SQLite serialises writers and
           * its busy handler may let one thread win every race) */
    CHECK(busy >= 2);
  else
    (void)busy;
  /* nothing left queued or running; the queued counters are back to 0 */
  ints2 z = {-1, -1};
  CHECK_EQ_INT(
      sbx__db_exec(sbx__meta_db(m),
                   "SELECT (SELECT COUNT(*) FROM job_shards WHERE state "
                   "< 2), (SELECT SUM(queued) FROM job_sched)",
                   NULL, 0, row_ints2, &z, NULL),
      0);
  CHECK_EQ_INT(z.a, 0);
  CHECK_EQ_INT(z.b, 0);
  sbx_job_claim c;
  CHECK_EQ_INT(sbx_store_job_claim(st, "w", 30, time(NULL), &c), SBX_ENOTFOUND);
  sbx_store_close(st);
}

/* ---- kill -9 of a claimer: lease lost, shard re-queued, no lock left ---- */

TEST(killed_claimer_requeued) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  CHECK_EQ_INT(create(st, "ta", "k1", 10, 1, 7000), 0);
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t pid = fork();
  if (pid == 0) { /* the worker: claims, then dies inside a transaction
                   * that holds its shard's row lock */
    close(fds[0]);
    sbx_store *cs = open_store();
    sbx_job_claim c;
    char ok = 'n';
    if (cs && !sbx_store_job_claim(cs, "doomed", 10, 7000, &c) &&
        !sbx_meta_begin(sbx_store_meta(cs)) &&
        !sbx_store_job_heartbeat(cs, c.token, 7001, 10, NULL, NULL))
      ok = 'y';
    if (write(fds[1], &ok, 1) != 1)
      _exit(3);
    pause();
    _exit(0);
  }
  close(fds[1]);
  char ok = 0;
  CHECK(read(fds[0], &ok, 1) == 1 && ok == 'y');
  close(fds[0]);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  CHECK_EQ_INT(job_state(st, "ta", "k1"), SBX_JOB_RUNNING);
  /* the lease (7000 + 10) runs out; a claim re-queues and takes the
   * shard, never blocking on what the dead worker held. (PostgreSQL ends
   * the dead client's backend, and so its row lock, asynchronously: until
   * then the sweep skips the locked shard, and a later sweep - one per
   * second in production, per distinct `now` here - takes it.) */
  sbx_job_claim c;
  int64_t now = 7011;
  int rc = SBX_ENOTFOUND;
  for (int i = 0; i < 200 && rc == SBX_ENOTFOUND; i++, now++) {
    rc = sbx_store_job_claim(st, "w2", 10, now, &c);
    if (rc == SBX_ENOTFOUND)
      usleep(10000);
  }
  CHECK_EQ_INT(rc, 0);
  CHECK(strcmp(c.job_id, "k1") == 0 && c.attempt == 2);
  CHECK_EQ_INT(
      sbx_store_job_finish(st, c.token, now, SBX_JOB_SUCCEEDED, NULL, NULL), 0);
  CHECK_EQ_INT(job_state(st, "ta", "k1"), SBX_JOB_SUCCEEDED);
  evlog ev;
  ev.n = 0;
  CHECK_EQ_INT(sbx_meta_job_events(m, "ta", "k1", 0, collect_ev, &ev), 0);
  int lost = 0;
  for (int i = 0; i < ev.n; i++)
    lost += strstr(ev.e[i].reason, "worker doomed lost") != NULL;
  CHECK_EQ_INT(lost, 1);
  sbx_store_close(st);
}

/* ---- the quota holds under concurrent claims ---- */

static pthread_barrier_t bar;
static atomic_int quota_wins;

static void *quota_claimer(void *arg) {
  (void)arg;
  sbx_store *st = open_store();
  pthread_barrier_wait(&bar);
  if (!st)
    return NULL;
  sbx_job_claim c;
  int rc;
  do
    rc = sbx_store_job_claim(st, "wq", 60, 5000, &c);
  while (rc == SBX_EBUSY || rc == SBX_ECONFLICT);
  if (rc == 0)
    atomic_fetch_add(&quota_wins, 1);
  else if (rc != SBX_ENOTFOUND)
    fprintf(stderr, "quota claim: %s\n", sbx_strerror(rc));
  sbx_store_close(st);
  return NULL;
}

TEST(quota_under_concurrency) {
  sbx_store *st = setup();
  if (!st)
    return;
  sbx_meta *m = sbx_store_meta(st);
  for (int i = 0; i < 10; i++) {
    char id[16];
    snprintf(id, sizeof id, "q%d", i);
    CHECK_EQ_INT(create(st, "ta", id, 10, 1, 5000), 0);
  }
  sbx_job_limit_set l;
  memset(&l, 0, sizeof l);
  l.max_concurrency = 2;
  CHECK_EQ_INT(sbx_meta_job_limits_set(m, "ta", &l, 5000), 0);
  for (int round = 0; round < 3; round++) {
    atomic_store(&quota_wins, 0);
    pthread_t th[6];
    pthread_barrier_init(&bar, NULL, 6);
    for (int i = 0; i < 6; i++)
      pthread_create(&th[i], NULL, quota_claimer, NULL);
    for (int i = 0; i < 6; i++)
      pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    /* 6 claimers at once, quota 2: two win in the first round, none after */
    CHECK_EQ_INT(atomic_load(&quota_wins), round == 0 ? 2 : 0);
  }
  sbx_store_close(st);
}

int main(void) {
  if (!mkdtemp(root))
    return 2;
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
  RUN(lifecycle_single_shard);
  RUN(failures_carry_messages);
  RUN(cancel_every_state);
  RUN(shards);
  RUN(limits);
  RUN(fair_share_and_quota);
  RUN(leases_and_stale_workers);
  RUN(worker_tokens);
  RUN(list_paging);
  RUN(concurrent_claimers_exactly_once);
  RUN(killed_claimer_requeued);
  RUN(quota_under_concurrency);
  tu_rm_rf(root);
  return harness_report();
}
