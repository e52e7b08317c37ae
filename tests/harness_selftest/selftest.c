/*
 * tests/harness_selftest/selftest.c - small programs on which the harness
 * itself is tested: one scenario per argv[1], each with cases that pass,
 * fail, crash, hang, run no checks, leak, exit, ask to be skipped, or build
 * on an earlier case. tests/harness_selftest/CMakeLists.txt runs every
 * scenario under tests/expect_exit.cmake and asserts on the exit status
 * and on what the harness printed, so a harness that stops naming a crashed
 * or hung case, or lets an empty case pass, fails CTest.
 */
#include "harness.h"

#include <omp.h>

static int g_value = 1; /* state that cases hand on to later cases */
static volatile int *g_null;

TEST(passes) {
  CHECK(1 + 1 == 2);
  CHECK_EQ_INT(g_value, g_value);
}
TEST(passes_too) {
  CHECK_NEAR(0.1 + 0.2, 0.3, 1e-12);
}
TEST(fails) {
  CHECK(1 + 1 == 2);
  CHECK_EQ_INT(2 + 2, 5);
}
TEST(segv) {
  CHECK(1);
  *g_null = 1; /* a NULL store: SIGSEGV (or a sanitizer report) */
}
TEST(aborts) {
  CHECK(1);
  abort();
}
TEST(hangs) {
  CHECK(1);
  for (;;)
    pause();
}
TEST(empty) {
  if (g_value == 12345) /* never: the case evaluates no check */
    CHECK(0);
}
TEST(exits) {
  CHECK(1);
  exit(3);
}
TEST(sets_state) {
  g_value = 41;
  CHECK_EQ_INT(g_value, 41);
}
TEST(changes_state_then_crashes) {
  g_value = 1000;
  CHECK(1);
  abort();
}
TEST(sees_state) {
  /* 41 from sets_state; not 1000: the crashed case's change is gone */
  CHECK_EQ_INT(g_value, 41);
}
TEST(leaks) {
  char *volatile p = malloc(4096);
  CHECK(p != NULL);
  p[0] = 1;
  p = NULL; /* the only pointer is gone */
}
TEST(spawns_then_crashes) {
  pid_t pid = fork();
  if (pid == 0) { /* a helper that would outlive the case */
    for (;;)
      pause();
  }
  CHECK(pid > 0);
  abort();
}
/* OpenMP in a case, in the main line and again after a resume: libgomp's
 * thread pool does not survive fork() unless the harness releases it. */
TEST(openmp) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) num_threads(2)
  for (int i = 0; i < 1000000; i++)
    s += 1.0;
  CHECK_NEAR(s, 1e6, 0);
}

/* The scenario named by argv[1]; see CMakeLists.txt for what each must
 * print and return. */
int main(int argc, char **argv) {
  const char *sc = argc > 1 ? argv[1] : "";
  if (!strcmp(sc, "pass")) {
    RUN(passes);
    RUN(passes_too);
  } else if (!strcmp(sc, "fail")) {
    RUN(passes);
    RUN(fails);
    RUN(passes_too);
  } else if (!strcmp(sc, "segv")) {
    RUN(passes);
    RUN(segv);
    RUN(passes_too);
  } else if (!strcmp(sc, "abort")) {
    RUN(aborts);
    RUN(passes);
  } else if (!strcmp(sc, "hang")) {
    RUN(passes);
    RUN(hangs);
    RUN(passes_too);
  } else if (!strcmp(sc, "empty")) {
    RUN(empty);
    RUN(passes);
  } else if (!strcmp(sc, "exit")) {
    RUN(exits);
    RUN(passes);
  } else if (!strcmp(sc, "none")) {
    /* no case at all */
  } else if (!strcmp(sc, "skip")) {
    return 77; /* "peer not installed" */
  } else if (!strcmp(sc, "state")) {
    RUN(sets_state);
    RUN(changes_state_then_crashes);
    RUN(sees_state);
  } else if (!strcmp(sc, "only")) { /* with ADV_TEST_CASE=passes_too */
    RUN(fails);
    RUN(passes_too);
    RUN(segv);
  } else if (!strcmp(sc, "leak")) {
    RUN(leaks);
    RUN(passes);
  } else if (!strcmp(sc, "orphan")) {
    RUN(spawns_then_crashes);
    RUN(passes);
  } else if (!strcmp(sc, "openmp")) {
    RUN(openmp);
    RUN(aborts);
    RUN(openmp);
  } else if (!strcmp(sc, "parent")) {
    /* a helper main() starts before the cases stays main()'s child, even
     * after a crash resumed the snapshot */
    pid_t helper = fork();
    if (helper == 0)
      _exit(5);
    RUN(passes);
    RUN(passes_too);
    int st = 0;
    if (waitpid(helper, &st, 0) != helper || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 5) {
      fprintf(stderr, "selftest: main() could not wait for its helper\n");
      return 4;
    }
    fprintf(stderr, "selftest: helper reaped by main()\n");
  } else if (!strcmp(sc, "main_fails")) {
    RUN(passes);
    return 2; /* a failure outside the cases */
  } else if (!strcmp(sc, "main_crashes")) {
    RUN(passes);
    abort();
  } else {
    fprintf(stderr, "usage: %s SCENARIO\n", argv[0]);
    return 2;
  }
  return harness_report();
}
