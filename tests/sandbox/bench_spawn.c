/*
 * bench_spawn.c - sandbox spawn-to-ready vs a plain fork+exec of /bin/true
 * (median of N runs each, and the ratio). "Ready" is the runner's READY
 * message: namespaces entered, inputs read, root pivoted, privileges
 * dropped, Landlock, engine initialised, rlimits and seccomp in force.
 * Also: the same with runners started ahead (sbx_runner_pool), where the
 * job's path starts at an already exec'd runner waiting in its namespaces.
 * Usage: bench_spawn RUNNER [N]
 */
#define _GNU_SOURCE
#include "sbx/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_ms(int ms) {
  struct timespec ts = {0, (long)ms * 1000000L};
  nanosleep(&ts, NULL);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s RUNNER [N]\n", argv[0]);
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 50;
  if (n < 1)
    n = 1;
  double *plain = calloc((size_t)n, sizeof(double));
  double *sbx = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++) {
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
      char *av[] = {(char *)"true", NULL};
      execv("/bin/true", av);
      _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    plain[i] = now_s() - t0;
  }
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = argv[1];
  p.threads = 1;
  sbx_job_spec spec;
  memset(&spec, 0, sizeof(spec));
  spec.kind = SBX_JOB_PROBE; /* probe 0: READY, then a one-line result */
  for (int i = 0; i < n; i++) {
    sbx_runner_outcome o;
    if (sbx_runner_run(&p, &spec, "", 0, "", 0, NULL, NULL, &o) || !o.ready) {
      fprintf(stderr, "runner failed: %s\n", o.reason);
      return 1;
    }
    sbx[i] = o.ready_seconds;
    sbx_runner_outcome_free(&o);
  }
  /* the same with runners started ahead (sbx_runner_pool): job -> READY */
  double *warm = calloc((size_t)n, sizeof(double));
  sbx_runner_pool *pool;
  if (sbx_runner_pool_new(&p, 1, &pool))
    return 1;
  for (int i = 0; i < n; i++) {
    sleep_ms(30); /* let the next spare get ready, as between real jobs */
    sbx_runner_outcome o;
    if (sbx_runner_pool_run(pool, &p, &spec, "", 0, "", 0, NULL, NULL, &o) ||
        !o.ready) {
      fprintf(stderr, "runner failed: %s\n", o.reason);
      return 1;
    }
    warm[i] = o.ready_seconds;
    sbx_runner_outcome_free(&o);
  }
  sbx_runner_pool_free(pool);
  qsort(warm, (size_t)n, sizeof(double), cmp);
  qsort(plain, (size_t)n, sizeof(double), cmp);
  qsort(sbx, (size_t)n, sizeof(double), cmp);
  double mp = plain[n / 2], ms = sbx[n / 2];
  printf("fork+exec /bin/true        median %.3f ms (n=%d)\n", 1e3 * mp, n);
  printf("sandboxed runner to READY  median %.3f ms (n=%d)\n", 1e3 * ms, n);
  printf("ratio                      %.1fx\n", ms / mp);
  printf("started ahead: job to READY median %.3f ms, ratio %.1fx\n",
         1e3 * warm[n / 2], warm[n / 2] / mp);
  free(warm);
  free(plain);
  free(sbx);
  return 0;
}
