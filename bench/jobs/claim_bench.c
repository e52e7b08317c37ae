/*
 * claim_bench.c - queue throughput of the PostgreSQL claim path (issue 11
 * item 9): jobs/s through sbx_store_job_claim + sbx_store_job_finish with
 * 1, 4 and 16 concurrent claimers (threads, one connection each, as many
 * worker-facing server threads would have). Each run starts from an empty
 * queue, submits N single-shard jobs spread over T tenants (not timed),
 * then times the claimers from the start signal until the queue is empty.
 * Every job must end succeeded, claimed once: checked after each run.
 * Target: >= 500 jobs/s. For reading the numbers on a shared machine, the
 * round trip of a trivial statement (SELECT 1 over the same socket) is
 * printed too: a single-shard job costs 2 statements (claim, finish) when
 * the tenant has no quota and the claimers do not collide, more otherwise.
 *
 * Usage (through run.sh, which starts PostgreSQL): claim_bench [N] [T] [C]
 * (C: run only the level with C claimers)
 * Environment: SBX_TEST_PG - libpq conninfo (required).
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sbx/jobs.h"
#include "sbx/store.h"

static const char *pg;
static char keyspec[512], datadir[512];
static int n_jobs = 2000, n_tenants = 8;
static atomic_int go, done_jobs, errors, busy_retries;
static atomic_int *claims; /* per job */

static double mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static sbx_store *open_store(void) {
  sbx_store_params p = sbx_store_default_params();
  p.data_dir = datadir;
  p.master_key_spec = keyspec;
  p.meta_backend = SBX_META_POSTGRES;
  p.pg_conninfo = pg;
  sbx_store *st = NULL;
  int rc = sbx_store_open(&p, &st);
  if (rc)
    fprintf(stderr, "sbx_store_open: %s\n", sbx_strerror(rc));
  return st;
}

/* Claims and finishes until the queue is empty (two empty claims in a
 * row). */
static void *claimer(void *arg) {
  sbx_store *st = arg;
  char wid[32];
  snprintf(wid, sizeof wid, "w%p", (void *)st);
  while (!atomic_load(&go))
    usleep(100);
  int empty = 0;
  while (empty < 2) {
    sbx_job_claim c;
    int64_t now = (int64_t)time(NULL);
    int rc = sbx_store_job_claim(st, wid, 300, now, &c);
    if (rc == SBX_ENOTFOUND) {
      empty++;
      continue;
    }
    if (rc == SBX_ECONFLICT || rc == SBX_EBUSY) {
      atomic_fetch_add(&busy_retries, 1);
      continue;
    }
    if (rc) {
      fprintf(stderr, "claim: %s\n", sbx_strerror(rc));
      atomic_fetch_add(&errors, 1);
      return NULL;
    }
    empty = 0;
    int k = atoi(c.job_id + 1);
    if (k >= 0 && k < n_jobs)
      atomic_fetch_add(&claims[k], 1);
    do
      rc =
          sbx_store_job_finish(st, c.token, now, SBX_JOB_SUCCEEDED, NULL, NULL);
    while (rc == SBX_ECONFLICT || rc == SBX_EBUSY);
    if (rc) {
      fprintf(stderr, "finish: %s\n", sbx_strerror(rc));
      atomic_fetch_add(&errors, 1);
      return NULL;
    }
    atomic_fetch_add(&done_jobs, 1);
  }
  return NULL;
}

static int reset_and_fill(sbx_store *st) {
  sbx_meta *m = sbx_store_meta(st);
  static int round; /* earlier runs' jobs stay (finished): fresh ids */
  round++;
  int rc = sbx_meta_begin(m);
  for (int i = 0; !rc && i < n_jobs; i++) {
    char id[32], t[16];
    snprintf(id, sizeof id, "j%d-r%d", i, round);
    snprintf(t, sizeof t, "bt%d", i % n_tenants);
    sbx_job_new j;
    memset(&j, 0, sizeof j);
    j.id = id;
    j.project_id = "p";
    j.model_id = "m";
    j.dataset_id = "d";
    j.kind = "attack";
    j.spec = "{\"kind\":\"attack\",\"attack\":\"fgsm\"}";
    j.limits.samples = 100;
    rc = sbx_meta_job_create(m, t, &j, (int64_t)time(NULL), NULL, NULL);
  }
  if (rc) {
    fprintf(stderr, "submit: %s (%s)\n", sbx_strerror(rc),
            sbx_meta_last_error(m));
    sbx_meta_rollback(m);
    return rc;
  }
  return sbx_meta_commit(m);
}

static int run(int nthreads, double *rate) {
  sbx_store *setup = open_store();
  if (!setup)
    return 1;
  if (reset_and_fill(setup)) {
    sbx_store_close(setup);
    return 1;
  }
  for (int i = 0; i < n_jobs; i++)
    atomic_store(&claims[i], 0);
  atomic_store(&go, 0);
  atomic_store(&done_jobs, 0);
  atomic_store(&errors, 0);
  atomic_store(&busy_retries, 0);
  pthread_t th[64];
  sbx_store *st[64];
  for (int i = 0; i < nthreads; i++) {
    st[i] = open_store(); /* connections made before timing */
    if (!st[i])
      return 1;
    pthread_create(&th[i], NULL, claimer, st[i]);
  }
  double t0 = mono();
  atomic_store(&go, 1);
  for (int i = 0; i < nthreads; i++)
    pthread_join(th[i], NULL);
  double dt = mono() - t0;
  for (int i = 0; i < nthreads; i++)
    sbx_store_close(st[i]);
  sbx_store_close(setup);
  int once = 0;
  for (int i = 0; i < n_jobs; i++)
    once += atomic_load(&claims[i]) == 1;
  *rate = atomic_load(&done_jobs) / dt;
  printf("  claimers %2d: %5d jobs in %6.3f s = %7.0f jobs/s  (claimed once: "
         "%d/%d, retries %d, errors %d)\n",
         nthreads, atomic_load(&done_jobs), dt, *rate, once, n_jobs,
         atomic_load(&busy_retries), atomic_load(&errors));
  return once == n_jobs && !atomic_load(&errors) ? 0 : 1;
}

int main(int argc, char **argv) {
  pg = getenv("SBX_TEST_PG");
  if (!pg || !*pg) {
    fprintf(stderr, "claim_bench: set SBX_TEST_PG (run it via run.sh)\n");
    return 2;
  }
  if (argc > 1)
    n_jobs = atoi(argv[1]);
  if (argc > 2)
    n_tenants = atoi(argv[2]);
  if (n_jobs < 1 || n_tenants < 1 || n_tenants > 1000)
    return 2;
  char root[] = "/tmp/sbx_claimbench_XXXXXX";
  if (!mkdtemp(root))
    return 2;
  char keypath[400];
  snprintf(keypath, sizeof keypath, "%s/master.key", root);
  snprintf(keyspec, sizeof keyspec, "file:%s", keypath);
  snprintf(datadir, sizeof datadir, "%s/data", root);
  if (sbx_master_key_create_file(keypath, NULL))
    return 2;
  claims = calloc((size_t)n_jobs, sizeof *claims);
  sbx_store *st = open_store();
  if (!st || !claims)
    return 1;
  for (int i = 0; i < n_tenants; i++) {
    char t[16];
    snprintf(t, sizeof t, "bt%d", i);
    int rc = sbx_store_tenant_create(st, t, t);
    if (rc && rc != SBX_EEXIST)
      return 1;
  }
  sbx_store_close(st);
  PGconn *c = PQconnectdb(pg);
  if (PQstatus(c) == CONNECTION_OK) {
    double t0 = mono();
    for (int i = 0; i < 2000; i++)
      PQclear(PQexecParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 1));
    double rtt = (mono() - t0) / 2000;
    printf("PostgreSQL round trip (SELECT 1): %.0f us; 2 statements per "
           "job: <= %.0f jobs/s per connection\n",
           rtt * 1e6, 1 / (2 * rtt));
  }
  PQfinish(c);
  printf("claim path (sbx_store_job_claim + sbx_store_job_finish), "
         "PostgreSQL, %d jobs over %d tenants per run:\n",
         n_jobs, n_tenants);
  static const int conc[] = {1, 4, 16};
  double rate[3] = {0, 0, 0};
  int bad = 0, only = argc > 3 ? atoi(argv[3]) : 0; /* one level only */
  for (int i = 0; i < 3; i++)
    if (!only || only == conc[i])
      bad |= run(conc[i], &rate[i]);
  printf("target >= 500 jobs/s: %s (1: %.0f, 4: %.0f, 16: %.0f)\n",
         rate[0] >= 500 && rate[1] >= 500 && rate[2] >= 500 ? "met" : "NOT met",
         rate[0], rate[1], rate[2]);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd))
    bad = 1;
  free((void *)claims);
  return bad;
}
