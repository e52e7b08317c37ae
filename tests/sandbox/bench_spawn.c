/*
 * bench_spawn.c - sandbox spawn-to-ready vs a plain fork+exec of /bin/true
 * (median of N runs each, and the ratio). "Ready" is the runner's READY
 * message: namespaces entered, inputs read, root pivoted, privileges
 * dropped, Landlock, engine initialised, rlimits and seccomp in force.
 * Also: the same with runners started ahead (sbx_runner_pool), where the
 * job's path starts at an already exec'd runner waiting in its namespaces;
 * the floor of a cold start (fork+exec of `aisbx-runner --exit`: exec and
 * loading its shared libraries, no sandbox); and what a network namespace
 * adds to unshare() (CLONE_NEWUSER|CLONE_NEWNET vs CLONE_NEWUSER alone).
 * Usage: bench_spawn RUNNER [N] [steps]
 * With "steps": only N cold spawns, and where their time goes - for each
 * LOG message of the runner (one per sandbox step, in order), the median
 * time from sbx_runner_run's start to its arrival at the supervisor, then
 * READY's. The runner normally holds these messages until READY; in this
 * mode it sends each at once (log_each_step), which costs a wake-up each.
 */
#define _GNU_SOURCE
#include "sbx/runner.h"

#include <sched.h>
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

/* Wall time of one fork + execv(path, av) + wait (exits on failure). */
static double exec_once(const char *path, char *const av[]) {
  double t0 = now_s();
  pid_t pid = fork();
  if (pid == 0) {
    execv(path, av);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st)) {
    fprintf(stderr, "%s failed\n", path);
    exit(1);
  }
  return now_s() - t0;
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof(double), cmp);
  return t[n / 2];
}

/* Median time of unshare(flags) in a fresh child, over n runs (the
 * namespaces' teardown happens after the child exits, off this path). */
static double median_unshare(int flags, int n) {
  double *t = calloc((size_t)n, sizeof(double));
  for (int i = 0; i < n; i++) {
    int pf[2];
    if (pipe(pf))
      exit(1);
    pid_t pid = fork();
    if (pid == 0) {
      double a = now_s();
      double d = unshare(flags) == 0 ? now_s() - a : -1;
      _exit(write(pf[1], &d, sizeof(d)) == sizeof(d) ? 0 : 1);
    }
    waitpid(pid, NULL, 0);
    if (read(pf[0], &t[i], sizeof(double)) != sizeof(double) || t[i] < 0) {
      fprintf(stderr, "unshare(%#x) failed\n", (unsigned)flags);
      exit(1);
    }
    close(pf[0]);
    close(pf[1]);
  }
  qsort(t, (size_t)n, sizeof(double), cmp);
  double m = t[n / 2];
  free(t);
  return m;
}

/* Arrival times of one cold spawn's LOG messages. */
#define MAX_STEPS 48
typedef struct steps {
  double t0;
  int n;
  double at[MAX_STEPS];
  char what[MAX_STEPS][48];
} steps;

static void on_step(void *ud, int level, const char *text) {
  (void)level;
  steps *s = ud;
  if (s->n >= MAX_STEPS)
    return;
  s->at[s->n] = now_s() - s->t0;
  snprintf(s->what[s->n], sizeof(s->what[s->n]), "%s", text);
  s->n++;
}

/* The "steps" mode (see the top). */
static int run_steps(sbx_runner_params *p, const sbx_job_spec *spec, int n) {
  steps *all = calloc((size_t)n, sizeof(steps));
  double *ready = calloc((size_t)n, sizeof(double)), *col;
  col = calloc((size_t)n, sizeof(double));
  if (!all || !ready || !col)
    return 1;
  for (int i = 0; i < n; i++) {
    sbx_runner_callbacks cb = {&all[i], NULL, on_step, NULL};
    sbx_runner_outcome o;
    all[i].t0 = now_s();
    if (sbx_runner_run(p, spec, "", 0, "", 0, &cb, NULL, &o) || !o.ready) {
      fprintf(stderr, "runner failed: %s\n", o.reason);
      return 1;
    }
    ready[i] = o.ready_seconds;
    sbx_runner_outcome_free(&o);
    if (all[i].n != all[0].n) {
      fprintf(stderr, "runs logged different steps\n");
      return 1;
    }
  }
  printf("cold spawn, median ms from sbx_runner_run to each LOG's arrival "
         "(n=%d):\n",
         n);
  double prev = 0;
  for (int k = 0; k < all[0].n; k++) {
    for (int i = 0; i < n; i++)
      col[i] = all[i].at[k];
    double m = median(col, n);
    printf("  %7.3f  (+%6.3f)  %s\n", 1e3 * m, 1e3 * (m - prev),
           all[0].what[k]);
    prev = m;
  }
  double mr = median(ready, n);
  printf("  %7.3f  (+%6.3f)  READY\n", 1e3 * mr, 1e3 * (mr - prev));
  free(all);
  free(ready);
  free(col);
  return 0;
}

/* Rounds interleave the four measurements (the machine's load changes
 * during a run; each ratio compares times taken side by side). */
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
  double *warm = calloc((size_t)n, sizeof(double));
  double *floor = calloc((size_t)n, sizeof(double));
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = argv[1];
  p.threads = 1;
  sbx_job_spec spec;
  memset(&spec, 0, sizeof(spec));
  spec.kind = SBX_JOB_PROBE; /* probe 0: READY, then a one-line result */
  if (argc > 3 && !strcmp(argv[3], "steps")) {
    p.log_each_step = 1;
    return run_steps(&p, &spec, n);
  }
  sbx_runner_pool *pool;
  if (sbx_runner_pool_new(&p, 1, &pool))
    return 1;
  char *true_av[] = {(char *)"true", NULL};
  char *floor_av[] = {(char *)"aisbx-runner", (char *)"--exit", NULL};
  for (int i = 0; i < n; i++) {
    plain[i] = exec_once("/bin/true", true_av);
    sbx_runner_outcome o;
    if (sbx_runner_run(&p, &spec, "", 0, "", 0, NULL, NULL, &o) || !o.ready) {
      fprintf(stderr, "runner failed: %s\n", o.reason);
      return 1;
    }
    sbx[i] = o.ready_seconds;
    sbx_runner_outcome_free(&o);
    floor[i] = exec_once(argv[1], floor_av);
    /* runners started ahead (sbx_runner_pool): job -> READY; the spare was
     * started at the previous pool job's READY, as between real jobs */
    sleep_ms(5);
    if (sbx_runner_pool_run(pool, &p, &spec, "", 0, "", 0, NULL, NULL, &o) ||
        !o.ready) {
      fprintf(stderr, "runner failed: %s\n", o.reason);
      return 1;
    }
    warm[i] = o.ready_seconds;
    sbx_runner_outcome_free(&o);
  }
  sbx_runner_pool_free(pool);
  double ns_user = median_unshare(CLONE_NEWUSER, n);
  double ns_net = median_unshare(CLONE_NEWUSER | CLONE_NEWNET, n);
  double mp = median(plain, n), ms = median(sbx, n), mw = median(warm, n),
         mf = median(floor, n);
  printf("fork+exec /bin/true        median %.3f ms (n=%d)\n", 1e3 * mp, n);
  printf("sandboxed runner to READY  median %.3f ms (n=%d)\n", 1e3 * ms, n);
  printf("ratio                      %.1fx\n", ms / mp);
  printf("started ahead: job to READY median %.3f ms, ratio %.1fx\n", 1e3 * mw,
         mw / mp);
  printf("floor: fork+exec aisbx-runner --exit (libraries, no sandbox) "
         "median %.3f ms, ratio %.1fx\n",
         1e3 * mf, mf / mp);
  printf("network namespace: unshare(USER|NET) %.3f ms vs unshare(USER) "
         "%.3f ms: +%.3f ms\n",
         1e3 * ns_net, 1e3 * ns_user, 1e3 * (ns_net - ns_user));
  free(warm);
  free(plain);
  free(sbx);
  free(floor);
  return 0;
}
