/*
 * tests/attacks_bb/test_blackbox.c - the black-box attacks (Square Attack,
 * HopSkipJump) on the real fixture model tests/fixtures/mnist_cnn.onnx and
 * the first samples of tests/fixtures/mnist_batch.npz.
 *
 * Invariants checked on every run (check_run):
 *   - no backward pass ever (result->backwards == 0);
 *   - every sample spent 1 <= queries <= p.queries, and every forward the
 *     attack made belongs to a sample (forwards == sum of queries);
 *   - x_adv in [clip_min, clip_max]; Square: within eps of x, with
 *     tolerance 1e-6 absolute (L-inf: one float rounding of x + eps) and
 *     1e-6 relative (L2: run.c projects to eps (1 - 1e-6));
 *   - success agrees with pred_adv (and, for HSJ with eps > 0, the norm).
 * Usage: test_blackbox FIXTURES_DIR TOY_MODEL, where TOY_MODEL is a rank-2
 * single-Softmax model (argmax(x) over 3 inputs, from the ONNX node test
 * data) used for the rank check and a closed-form HSJ check.
 *
 * Sessions run single-threaded (p.threads = 1): CTest runs suites in
 * parallel and the attacks issue many small batches, where OpenMP barriers
 * on an oversubscribed machine cost far more than the compute.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "harness.h"

#include "adv/attack.h"
#include "adv/data.h"

#include <stdint.h>
#include <time.h>

#define NMAX 32

static adv_model *g_mnist, *g_toy;
static float *g_x; /* NMAX x 784 */
static int64_t g_y[NMAX];
static int64_t g_per;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_f(const void *a, const void *b) {
  float u = *(const float *)a, v = *(const float *)b;
  return u < v ? -1 : u > v;
}

static float median(float *v, int n) {
  qsort(v, (size_t)n, sizeof(float), cmp_f);
  return n ? (n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2])) : NAN;
}

static adv_attack_params params(adv_attack_kind k, adv_norm norm, float eps,
                                int64_t queries, uint64_t seed) {
  adv_attack_params p = adv_attack_default_params(k);
  p.norm = norm;
  p.eps = eps;
  p.queries = queries;
  p.seed = seed;
  p.threads = 1;
  return p;
}

/* Runs p on the first n fixture samples (labels y, may be g_y). */
static int run(adv_attack_params p, int64_t n, const int64_t *y,
               const int64_t *target, adv_attack_result *r) {
  adv_err err;
  int rc =
      adv_attack_run(g_mnist, g_x, n, y, target, p, NULL, NULL, NULL, r, &err);
  if (rc)
    fprintf(stderr, "adv_attack_run: %s\n", err.msg);
  return rc;
}

/* The invariants every black-box run satisfies (see the file comment). */
static void check_run(const adv_attack_result *r, const adv_attack_params *p,
                      const float *x, const int64_t *y, const int64_t *target) {
  CHECK_EQ_INT(r->backwards, 0);
  int64_t sum = 0, bad_q = 0, bad_box = 0, bad_eps = 0, bad_succ = 0;
  int bounded = p->kind == ADV_ATTACK_SQUARE;
  for (int64_t i = 0; i < r->n; i++) {
    sum += r->queries[i];
    bad_q += r->queries[i] < 1 || r->queries[i] > p->queries;
    for (int64_t k = 0; k < r->per; k++) {
      float v = r->x_adv[i * r->per + k];
      bad_box += !(v >= p->clip_min && v <= p->clip_max);
    }
    double lin = 0, l2 = 0;
    for (int64_t k = 0; k < r->per; k++) {
      double d = (double)r->x_adv[i * r->per + k] - x[i * r->per + k];
      lin = fabs(d) > lin ? fabs(d) : lin;
      l2 += d * d;
    }
    l2 = sqrt(l2);
    if (bounded)
      bad_eps += p->norm == ADV_NORM_LINF ? lin > p->eps + 1e-6
                                          : l2 > p->eps * (1 + 1e-6) + 1e-7;
    int fooled =
        p->targeted ? r->pred_adv[i] == target[i] : r->pred_adv[i] != y[i];
    if (!bounded && p->eps > 0)
      fooled = fooled &&
               (p->norm == ADV_NORM_LINF ? lin : l2) <= p->eps * (1 + 1e-6);
    bad_succ += fooled != r->success[i];
  }
  CHECK_EQ_INT(bad_q, 0);
  CHECK_EQ_INT(r->forwards, sum);
  CHECK_EQ_INT(bad_box, 0);
  CHECK_EQ_INT(bad_eps, 0);
  CHECK_EQ_INT(bad_succ, 0);
}

/* Prints a one-line summary: successes, queries of the successes, time. */
static int summarize(const char *name, const adv_attack_result *r,
                     double secs) {
  int s = 0;
  double qs = 0;
  float q[NMAX];
  for (int64_t i = 0; i < r->n; i++)
    if (r->success[i]) {
      q[s++] = (float)r->queries[i];
      qs += (double)r->queries[i];
    }
  fprintf(stderr,
          "  %-28s success %d/%lld, queries of successes mean %.1f median "
          "%.0f, %.2f s\n",
          name, s, (long long)r->n, s ? qs / s : 0.0,
          s ? (double)median(q, s) : 0.0, secs);
  return s;
}

/* Square L-inf eps 0.3: fools nearly all 32 samples well within budget. */
TEST(square_linf_mnist) {
  adv_attack_params p = params(ADV_ATTACK_SQUARE, ADV_NORM_LINF, 0.3f, 1000, 1);
  adv_attack_result r;
  double t0 = now_s();
  CHECK(run(p, NMAX, g_y, NULL, &r) == ADV_OK);
  if (!r.n)
    return;
  int s = summarize("square linf eps=0.3 Q=1000", &r, now_s() - t0);
  check_run(&r, &p, g_x, g_y, NULL);
  CHECK(s >= 29); /* measured 32/32, largest count 194 queries */
  for (int i = 0; i < NMAX; i++) {
    /* a sample stops when fooled; an unfooled one spent the whole budget */
    if (r.pred_clean[i] == g_y[i])
      CHECK(r.success[i] ? r.queries[i] < p.queries
                         : r.queries[i] == p.queries);
    CHECK(r.linf[i] <= 0.3f + 1e-6f);
  }
  adv_attack_result_free(&r);
}

/* Same seed => identical bytes; another seed => different bytes. */
TEST(square_determinism) {
  for (int norm = 0; norm < 2; norm++) {
    float eps = norm ? 2.0f : 0.3f;
    adv_attack_result a, b, c;
    adv_attack_params p =
        params(ADV_ATTACK_SQUARE, (adv_norm)norm, eps, 200, 7);
    CHECK(run(p, 8, g_y, NULL, &a) == ADV_OK);
    CHECK(run(p, 8, g_y, NULL, &b) == ADV_OK);
    p.seed = 8;
    CHECK(run(p, 8, g_y, NULL, &c) == ADV_OK);
    if (!a.n || !b.n || !c.n)
      return;
    size_t bytes = sizeof(float) * (size_t)(a.n * a.per);
    CHECK(memcmp(a.x_adv, b.x_adv, bytes) == 0);
    CHECK(memcmp(a.queries, b.queries, sizeof(int64_t) * (size_t)a.n) == 0);
    CHECK(memcmp(a.x_adv, c.x_adv, bytes) != 0);
    check_run(&c, &p, g_x, g_y, NULL);
    adv_attack_result_free(&a);
    adv_attack_result_free(&b);
    adv_attack_result_free(&c);
  }
}

/* Targeted (CE toward t = y + 1 mod 10): success means pred == target. */
TEST(square_targeted) {
  int64_t t[16];
  for (int i = 0; i < 16; i++)
    t[i] = (g_y[i] + 1) % 10;
  adv_attack_params p = params(ADV_ATTACK_SQUARE, ADV_NORM_LINF, 0.3f, 2000, 3);
  p.targeted = 1;
  adv_attack_result r;
  double t0 = now_s();
  CHECK(run(p, 16, g_y, t, &r) == ADV_OK);
  if (!r.n)
    return;
  int s = summarize("square linf targeted Q=2000", &r, now_s() - t0);
  check_run(&r, &p, g_x, g_y, t);
  CHECK(s >= 13); /* measured 16/16 */
  for (int i = 0; i < 16; i++)
    if (r.success[i])
      CHECK_EQ_INT(r.pred_adv[i], t[i]);
  adv_attack_result_free(&r);
}

/* Square L2 eps 2.0: inside the L2 ball, fools a fair share. */
TEST(square_l2_mnist) {
  adv_attack_params p = params(ADV_ATTACK_SQUARE, ADV_NORM_L2, 2.0f, 1000, 1);
  adv_attack_result r;
  double t0 = now_s();
  CHECK(run(p, 16, g_y, NULL, &r) == ADV_OK);
  if (!r.n)
    return;
  int s = summarize("square l2 eps=2 Q=1000", &r, now_s() - t0);
  check_run(&r, &p, g_x, g_y, NULL);
  CHECK(s >= 6); /* measured 8/16 (white-box PGD-L2 40 steps: 26/32) */
  for (int i = 0; i < 16; i++)
    CHECK(r.l2[i] <= 2.0f * (1 + 1e-6f));
  adv_attack_result_free(&r);
}

/* A sample already misclassified costs one query and keeps x_adv = x. */
TEST(already_misclassified) {
  int64_t y[4];
  memcpy(y, g_y, sizeof(y));
  y[1] = (g_y[1] + 3) % 10; /* the model predicts g_y[1] */
  for (int k = 0; k < 2; k++) {
    adv_attack_params p =
        k ? params(ADV_ATTACK_HSJ, ADV_NORM_L2, 0.f, 300, 1)
          : params(ADV_ATTACK_SQUARE, ADV_NORM_LINF, 0.3f, 300, 1);
    adv_attack_result r;
    CHECK(run(p, 4, y, NULL, &r) == ADV_OK);
    if (!r.n)
      return;
    check_run(&r, &p, g_x, y, NULL);
    CHECK_EQ_INT(r.queries[1], 1);
    CHECK(memcmp(r.x_adv + r.per, g_x + g_per, sizeof(float) * (size_t)g_per) ==
          0);
    CHECK(r.success[1]);
    adv_attack_result_free(&r);
  }
}

/* Square takes C x H x W or (tabular) F inputs, F as a 1 x 1 x F image;
 * HSJ works on any shape. On the rank-2 model argmax(x), x = (.2, .5, .3)
 * leaves class 1 within L-inf 0.3 (x2 + 0.3 > x1 - 0.3): Square must find
 * it. The smallest L2 change away from class 1 is (x1 - x2)/sqrt(2): HSJ
 * cannot beat it and should come close (its binary-search tolerance
 * theta = d^-1.5 is coarse for d = 3). */
TEST(toy_rank2) {
  float x[3] = {0.2f, 0.5f, 0.3f};
  int64_t y = 1;
  adv_err err;
  adv_attack_result r;
  adv_attack_params p = params(ADV_ATTACK_SQUARE, ADV_NORM_LINF, 0.3f, 100, 1);
  CHECK_EQ_INT(
      adv_attack_run(g_toy, x, 1, &y, NULL, p, NULL, NULL, NULL, &r, &err),
      ADV_OK);
  if (!r.n)
    return;
  CHECK(r.pred_adv[0] != 1);
  CHECK(r.success[0]);
  CHECK(r.linf[0] <= 0.3f + 1e-6f);
  CHECK_EQ_INT(r.backwards, 0);
  adv_attack_result_free(&r);
  p = params(ADV_ATTACK_HSJ, ADV_NORM_L2, 0.f, 1000, 1);
  CHECK_EQ_INT(
      adv_attack_run(g_toy, x, 1, &y, NULL, p, NULL, NULL, NULL, &r, &err),
      ADV_OK);
  if (!r.n)
    return;
  double opt = (0.5 - 0.3) / sqrt(2.0);
  fprintf(stderr, "  hsj toy: l2 %.4f (optimum %.4f), %lld queries\n",
          (double)r.l2[0], opt, (long long)r.queries[0]);
  CHECK(r.pred_adv[0] != 1);
  CHECK(r.l2[0] >= opt - 1e-6);
  CHECK(r.l2[0] <= 1.25 * opt);
  CHECK_EQ_INT(r.backwards, 0);
  adv_attack_result_free(&r);
}

static int g_calls;
static int abort_after_5(void *ud, const char *phase, double f) {
  (void)ud;
  (void)phase;
  (void)f;
  return ++g_calls > 5;
}

/* The progress callback can abort both attacks. */
TEST(abort) {
  for (int k = 0; k < 2; k++) {
    adv_attack_params p =
        params(k ? ADV_ATTACK_HSJ : ADV_ATTACK_SQUARE,
               k ? ADV_NORM_L2 : ADV_NORM_LINF, 0.05f, 5000, 1);
    adv_attack_result r;
    adv_err err;
    g_calls = 0;
    CHECK_EQ_INT(adv_attack_run(g_mnist, g_x, 4, g_y, NULL, p, abort_after_5,
                                NULL, NULL, &r, &err),
                 ADV_EABORTED);
    CHECK(r.x_adv == NULL);
  }
}

/* HSJ L2: more queries, smaller adversarial perturbations. */
TEST(hsj_l2_queries) {
  const int n = 8;
  float med[2];
  for (int k = 0; k < 2; k++) {
    adv_attack_params p =
        params(ADV_ATTACK_HSJ, ADV_NORM_L2, 2.0f, k ? 4000 : 1000, 5);
    adv_attack_result r;
    double t0 = now_s();
    CHECK(run(p, n, g_y, NULL, &r) == ADV_OK);
    if (!r.n)
      return;
    summarize(k ? "hsj l2 eps=2 Q=4000" : "hsj l2 eps=2 Q=1000", &r,
              now_s() - t0);
    check_run(&r, &p, g_x, g_y, NULL);
    float nr[NMAX];
    for (int i = 0; i < n; i++) {
      CHECK(r.pred_adv[i] != g_y[i]); /* always holds an adversarial point */
      nr[i] = r.l2[i];
    }
    med[k] = median(nr, n);
    fprintf(stderr, "  hsj l2 Q=%lld: median L2 %.4f\n", (long long)p.queries,
            (double)med[k]);
    adv_attack_result_free(&r);
  }
  CHECK(med[1] < 0.9f * med[0]); /* measured 3.04 -> 2.17 */
}

/* HSJ L-inf: adversarial points with a moderate L-inf norm. */
TEST(hsj_linf) {
  const int n = 8;
  adv_attack_params p = params(ADV_ATTACK_HSJ, ADV_NORM_LINF, 0.3f, 1000, 2);
  adv_attack_result r;
  double t0 = now_s();
  CHECK(run(p, n, g_y, NULL, &r) == ADV_OK);
  if (!r.n)
    return;
  summarize("hsj linf eps=0.3 Q=1000", &r, now_s() - t0);
  check_run(&r, &p, g_x, g_y, NULL);
  float nr[NMAX];
  for (int i = 0; i < n; i++) {
    CHECK(r.pred_adv[i] != g_y[i]);
    nr[i] = r.linf[i];
  }
  float m = median(nr, n);
  fprintf(stderr, "  hsj linf Q=1000: median Linf %.4f\n", (double)m);
  CHECK(m < 0.4f); /* measured 0.29; uniform-noise starts are ~0.6 */
  adv_attack_result_free(&r);
}

/* HSJ targeted: start from a batch sample of the target class (or noise);
 * every result is classified as the target. Also same seed => same bytes. */
TEST(hsj_targeted) {
  const int n = 16;
  int64_t t[16];
  for (int i = 0; i < n; i++)
    t[i] = (g_y[i] + 1) % 10;
  adv_attack_params p = params(ADV_ATTACK_HSJ, ADV_NORM_L2, 0.f, 600, 4);
  p.targeted = 1;
  adv_attack_result r, r2;
  double t0 = now_s();
  CHECK(run(p, n, g_y, t, &r) == ADV_OK);
  CHECK(run(p, n, g_y, t, &r2) == ADV_OK);
  if (!r.n || !r2.n)
    return;
  int s = summarize("hsj l2 targeted Q=600 (x2)", &r, now_s() - t0);
  check_run(&r, &p, g_x, g_y, t);
  CHECK(s >= 14); /* measured 16/16 */
  for (int i = 0; i < n; i++)
    if (r.success[i])
      CHECK_EQ_INT(r.pred_adv[i], t[i]);
  CHECK(memcmp(r.x_adv, r2.x_adv, sizeof(float) * (size_t)(n * r.per)) == 0);
  CHECK(memcmp(r.queries, r2.queries, sizeof(int64_t) * (size_t)n) == 0);
  adv_attack_result_free(&r);
  adv_attack_result_free(&r2);
}

/* Tiny budgets: the budget is never exceeded, and Q = 1 is only the query
 * at x (no adversarial point: x_adv = x). */
TEST(hsj_tiny_budget) {
  int64_t budgets[] = {1, 2, 25, 60};
  for (int b = 0; b < 4; b++) {
    adv_attack_params p =
        params(ADV_ATTACK_HSJ, b % 2 ? ADV_NORM_LINF : ADV_NORM_L2, 0.f,
               budgets[b], 9);
    adv_attack_result r;
    CHECK(run(p, 4, g_y, NULL, &r) == ADV_OK);
    if (!r.n)
      return;
    check_run(&r, &p, g_x, g_y, NULL);
    if (budgets[b] == 1)
      CHECK(memcmp(r.x_adv, g_x, sizeof(float) * (size_t)(4 * g_per)) == 0);
    adv_attack_result_free(&r);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s FIXTURES_DIR TOY_MODEL\n", argv[0]);
    return 2;
  }
  char path[4096];
  adv_err err;
  adv_err eb;
  snprintf(path, sizeof(path), "%s/mnist_cnn.onnx", argv[1]);
  if (adv_model_load_file(path, adv_load_default_params(), &g_mnist, &err) ||
      adv_model_load_file(argv[2], adv_load_default_params(), &g_toy, &err)) {
    fprintf(stderr, "model: %s\n", err.msg);
    return 1;
  }
  adv_array ax, ay;
  snprintf(path, sizeof(path), "%s/mnist_batch.npz", argv[1]);
  if (adv_npz_read_file(path, "x", adv_io_default_limits(), &ax, &eb) ||
      adv_npz_read_file(path, "y", adv_io_default_limits(), &ay, &eb)) {
    fprintf(stderr, "data: %s\n", eb.msg);
    return 1;
  }
  if (ax.dtype != ADV_DTYPE_F32 || ax.ndim != 4 || ax.dims[0] < NMAX ||
      ay.dtype != ADV_DTYPE_I64) {
    fprintf(stderr, "unexpected fixture layout\n");
    return 1;
  }
  g_per = ax.dims[1] * ax.dims[2] * ax.dims[3];
  g_x = ax.data;
  memcpy(g_y, ay.data, sizeof(g_y));
  double t0 = now_s();
  RUN(square_linf_mnist);
  RUN(square_determinism);
  RUN(square_targeted);
  RUN(square_l2_mnist);
  RUN(already_misclassified);
  RUN(toy_rank2);
  RUN(abort);
  RUN(hsj_l2_queries);
  RUN(hsj_linf);
  RUN(hsj_targeted);
  RUN(hsj_tiny_budget);
  fprintf(stderr, "total %.1f s\n", now_s() - t0);
  adv_array_free(&ax);
  adv_array_free(&ay);
  adv_model_free(g_mnist);
  adv_model_free(g_toy);
  return harness_report();
}
