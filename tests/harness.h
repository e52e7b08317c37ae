/*
 * tests/harness.h - a tiny assertion harness for C tests run by CTest.
 *
 * Usage:
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-5); }
 *   int main(void) { RUN(name); return harness_report(); }
 * Every failed CHECK prints file:line and the expression and marks the test
 * failed; the process exit code is non-zero when anything failed.
 */
#ifndef ADV_TEST_HARNESS_H
#define ADV_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int harness_failed_checks = 0;
static int harness_tests_run = 0;
static int harness_tests_failed = 0;

#define TEST(name) static void test_##name(void)

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      harness_failed_checks++;                                                 \
    }                                                                          \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
  do {                                                                         \
    long long va_ = (long long)(a), vb_ = (long long)(b);                      \
    if (va_ != vb_) {                                                          \
      fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s (%lld) != %s (%lld)\n",  \
              __FILE__, __LINE__, #a, va_, #b, vb_);                           \
      harness_failed_checks++;                                                 \
    }                                                                          \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
  do {                                                                         \
    double va_ = (double)(a), vb_ = (double)(b);                               \
    if (!(fabs(va_ - vb_) <= (tol))) {                                         \
      fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s=%.9g %s=%.9g tol=%g\n",    \
              __FILE__, __LINE__, #a, va_, #b, vb_, (double)(tol));            \
      harness_failed_checks++;                                                 \
    }                                                                          \
  } while (0)

#define RUN(name)                                                              \
  do {                                                                         \
    int before_ = harness_failed_checks;                                       \
    harness_tests_run++;                                                       \
    test_##name();                                                             \
    if (harness_failed_checks != before_) {                                    \
      harness_tests_failed++;                                                  \
      fprintf(stderr, "FAIL %s\n", #name);                                     \
    } else {                                                                   \
      fprintf(stderr, "ok   %s\n", #name);                                     \
    }                                                                          \
  } while (0)

static inline int harness_report(void) {
  fprintf(stderr, "%d tests, %d failed\n", harness_tests_run,
          harness_tests_failed);
  return harness_tests_failed ? 1 : 0;
}

#endif
