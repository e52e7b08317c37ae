/*
 * test_threading.c - the threading environment the engine runs under
 * (include/adv/threading.h, issue 13 item 7):
 *   - the default is a passive OpenMP wait policy and single-threaded
 *     OpenBLAS (bench/README.md has the measurements behind the choice; a
 *     revert to spinning fails here);
 *   - adv_threading_env_apply() fills in only what the user left unset;
 *   - `aisbx` really runs with it: libgomp's own report of its settings
 *     (OMP_DISPLAY_ENV=verbose) after aisbx re-executed itself says
 *     PASSIVE with a spin count of 0; a user's GOMP_SPINCOUNT is kept;
 *   - the sandboxed runner is started with the same variables: the
 *     supervisor (sbx_runner_run) starts a stand-in runner that writes its
 *     environment to the job's stderr; of the supervisor's own variables
 *     only the kernel choice (adv_kernel_env_names) reaches it.
 * Usage: test_threading AISBX
 */
#define _GNU_SOURCE
#include "adv/threading.h"
#include "harness.h"
#include "sbx/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *g_aisbx;

/* Reads a whole file into a malloc'd NUL-terminated string (NULL on
 * error). */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  size_t r;
  while (b && (r = fread(b + n, 1, cap - 1 - n, f)) > 0) {
    n += r;
    if (n == cap - 1) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) {
        free(b);
        b = NULL;
      } else {
        b = nb;
      }
    }
  }
  fclose(f);
  if (b)
    b[n] = '\0';
  return b;
}

/* 1 when the NULL-terminated list env has the entry "NAME=VALUE". */
static int has_entry(const char *const *env, const char *entry) {
  for (; *env; env++)
    if (!strcmp(*env, entry))
      return 1;
  return 0;
}

TEST(default_is_passive_and_single_threaded_blas) {
  const char *const *e = adv_threading_env();
  int n = 0;
  while (e[n])
    n++;
  CHECK_EQ_INT(n, 2);
  CHECK(has_entry(e, "OMP_WAIT_POLICY=passive"));
  CHECK(has_entry(e, "OPENBLAS_NUM_THREADS=1"));
}

TEST(apply_fills_in_only_what_the_user_left_unset) {
  unsetenv("OMP_WAIT_POLICY");
  unsetenv("GOMP_SPINCOUNT");
  unsetenv("OPENBLAS_NUM_THREADS");
  CHECK_EQ_INT(adv_threading_env_apply(), 2);
  CHECK(getenv("OMP_WAIT_POLICY") &&
        !strcmp(getenv("OMP_WAIT_POLICY"), "passive"));
  CHECK(getenv("OPENBLAS_NUM_THREADS") &&
        !strcmp(getenv("OPENBLAS_NUM_THREADS"), "1"));
  CHECK_EQ_INT(adv_threading_env_apply(), 0); /* nothing left to set */

  /* a user's spin count is a wait policy: left alone */
  unsetenv("OMP_WAIT_POLICY");
  setenv("GOMP_SPINCOUNT", "1234", 1);
  setenv("OPENBLAS_NUM_THREADS", "3", 1);
  CHECK_EQ_INT(adv_threading_env_apply(), 0);
  CHECK(getenv("OMP_WAIT_POLICY") == NULL);
  CHECK(!strcmp(getenv("OPENBLAS_NUM_THREADS"), "3"));

  unsetenv("GOMP_SPINCOUNT");
  setenv("OMP_WAIT_POLICY", "active", 1);
  CHECK_EQ_INT(adv_threading_env_apply(), 0);
  CHECK(!strcmp(getenv("OMP_WAIT_POLICY"), "active"));
}

/* Runs `aisbx version` with OMP_DISPLAY_ENV=verbose and the given extra
 * shell assignments (after the OpenMP variables are cleared) and returns
 * its stderr + stdout (malloc'd) or NULL. */
static char *aisbx_display_env(const char *extra) {
  char out[] = "/tmp/test_threading.XXXXXX";
  int fd = mkstemp(out);
  if (fd < 0)
    return NULL;
  close(fd);
  char cmd[4096];
  snprintf(cmd, sizeof(cmd),
           "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_NUM_THREADS "
           "-u AISBX_NO_REEXEC OMP_DISPLAY_ENV=verbose %s '%s' version "
           ">'%s' 2>&1",
           extra, g_aisbx, out);
  int rc = system(cmd);
  char *s = rc == 0 ? slurp(out) : NULL;
  unlink(out);
  return s;
}

/* The last libgomp display block of s (the process that ran main's
 * work: aisbx after its re-exec). */
static const char *last_block(const char *s) {
  const char *b = NULL, *p = s;
  while ((p = strstr(p, "OPENMP DISPLAY ENVIRONMENT BEGIN")) != NULL)
    b = p++;
  return b;
}

/* aisbx_display_env(extra), checked to have a display block; *block is
 * the last one (NULL on failure). Returns the output (free it). */
static char *aisbx_block(const char *extra, const char **block) {
  char *s = aisbx_display_env(extra);
  *block = s ? last_block(s) : NULL;
  CHECK(s != NULL);
  CHECK(*block != NULL);
  return s;
}

TEST(aisbx_runs_with_a_passive_wait_policy) {
  const char *b;
  char *s = aisbx_block("", &b);
  if (b) {
    CHECK(strstr(s, "aisbx ") != NULL);
    CHECK(strstr(b, "OMP_WAIT_POLICY = 'PASSIVE'") != NULL);
    CHECK(strstr(b, "GOMP_SPINCOUNT = '0'") != NULL);
    /* libgomp displayed twice: before and after the re-exec */
    CHECK(b != strstr(s, "OPENMP DISPLAY ENVIRONMENT BEGIN"));
    if (!strstr(b, "GOMP_SPINCOUNT = '0'"))
      fprintf(stderr, "aisbx output:\n%s\n", s);
  }
  free(s);
}

TEST(aisbx_keeps_the_users_policy) {
  const char *b;
  char *s = aisbx_block("GOMP_SPINCOUNT=4321", &b);
  if (b)
    CHECK(strstr(b, "GOMP_SPINCOUNT = '4321'") != NULL);
  free(s);
}

TEST(runner_starts_with_the_same_environment) {
  /* a stand-in runner: writes its environment to its stderr (the job's
   * stderr_fd) and fails */
  char dir[] = "/tmp/test_threading_runner.XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char script[512], errp[512];
  snprintf(script, sizeof(script), "%s/fake-runner", dir);
  snprintf(errp, sizeof(errp), "%s/stderr", dir);
  FILE *f = fopen(script, "w");
  CHECK(f != NULL);
  if (!f)
    return;
  fputs("#!/bin/sh\n/usr/bin/env >&2\nexit 3\n", f);
  fclose(f);
  chmod(script, 0755);
  int efd = open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  CHECK(efd >= 0);

  /* the kernel choice passes (adv_kernel_env_names), nothing else does */
  char *old_ct = getenv("OPENBLAS_CORETYPE");
  old_ct = old_ct ? strdup(old_ct) : NULL;
  setenv("OPENBLAS_CORETYPE", "Sandybridge", 1);
  setenv("TEST_THREADING_SECRET", "must-not-pass", 1);
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = script;
  p.wall_seconds = 20;
  p.threads = 2;
  p.stderr_fd = efd;
  p.use_memfd = 0;
  sbx_job_spec s;
  memset(&s, 0, sizeof(s));
  s.kind = SBX_JOB_ATTACK;
  snprintf(s.attack, sizeof(s.attack), "pgd");
  unsigned char blob[16] = {0};
  sbx_runner_outcome o;
  CHECK_EQ_INT(sbx_runner_run(&p, &s, blob, sizeof(blob), blob, sizeof(blob),
                              NULL, NULL, &o),
               0);
  CHECK_EQ_INT(o.exit_code, 3);
  sbx_runner_outcome_free(&o);
  close(efd);
  unsetenv("TEST_THREADING_SECRET");
  if (old_ct)
    setenv("OPENBLAS_CORETYPE", old_ct, 1);
  else
    unsetenv("OPENBLAS_CORETYPE");
  free(old_ct);

  char *env = slurp(errp);
  CHECK(env != NULL);
  if (env) {
    for (const char *const *e = adv_threading_env(); *e; e++) {
      char line[128];
      snprintf(line, sizeof(line), "%s\n", *e);
      CHECK(strstr(env, line) != NULL);
    }
    CHECK(strstr(env, "OMP_WAIT_POLICY=passive\n") != NULL);
    CHECK(strstr(env, "GOMP_SPINCOUNT") == NULL);
    CHECK(strstr(env, "OMP_THREAD_LIMIT=2\n") != NULL);
    CHECK(strstr(env, "OPENBLAS_CORETYPE=Sandybridge\n") != NULL);
    CHECK(strstr(env, "TEST_THREADING_SECRET") == NULL);
  }
  free(env);
  unlink(errp);
  unlink(script);
  rmdir(dir);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_threading AISBX\n");
    return 2;
  }
  g_aisbx = argv[1];
  RUN(default_is_passive_and_single_threaded_blas);
  RUN(apply_fills_in_only_what_the_user_left_unset);
  RUN(aisbx_runs_with_a_passive_wait_policy);
  RUN(aisbx_keeps_the_users_policy);
  RUN(runner_starts_with_the_same_environment);
  return harness_report();
}
