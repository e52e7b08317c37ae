/*
 * test_minimal.c - the minimal-perturbation white-box attacks (DeepFool,
 * Carlini-Wagner L2, FAB / FAB-T) on the real fixture models
 * (mnist_cnn.onnx on mnist_batch.npz, fashion_resnet.onnx on
 * fashion_batch.npz).
 *
 * Every run goes through check_result(), which re-derives the result from
 * scratch: every x_adv is finite and in [clip_min, clip_max]; the model is
 * run again on x_adv (own session, adv_session_forward) and its label must
 * be the reported pred_adv, success must mean "label changed" (or "== the
 * target" for targeted runs) and norm <= eps when eps > 0, and it must
 * hold under a batch-1 forward too (different rounding); the reported
 * L2 / L-inf norms are recomputed; a sample without success has x_adv == x
 * bit for bit (eps = 0), and so has an already misclassified one.
 *
 * Quality (assertions that a broken attack fails):
 *  - success >= 90% of 32 MNIST samples for DeepFool, CW, FAB, FAB-T with
 *    eps = 0 (no budget), L2 and L-inf;
 *  - minimality against baselines: CW's median L2 < 2.0, <= 0.75x the
 *    median L2 that FGSM-L2 needs (per sample, smallest eps on a grid),
 *    and a random direction of the same norm as each CW perturbation
 *    flips at most 10% of the labels;
 *  - CW's and FAB's median L2 < DeepFool's (the stronger minimal attacks;
 *    DeepFool within 2x of CW), FAB's median L-inf < DeepFool's;
 *  - targeted CW / FAB reach the target on every success, >= 90% of them;
 *  - FAB with more steps or restarts (same seed) succeeds on at least the
 *    same samples with a total norm no larger (1e-3 slack for the final
 *    search), and no single sample more than 5% worse;
 *  - eps > 0: FAB skips samples already within eps in later restarts
 *    (fewer backward passes), success is exactly "fooled and norm <= eps";
 *  - same seed => identical bytes (FAB with random restarts, DeepFool);
 *  - abort flag, progress abort and invalid FAB parameters are reported.
 * Fashion: success >= 90% of 16 samples for each attack (with misclassified
 * points as x_adv = x), medians printed.
 *
 * Usage: test_attacks_min FIXTURE_DIR
 */
#include "adv/attack.h"
#include "adv/data.h"
#include "harness.h"

#include <stdint.h>

static const char *FIX;

typedef struct fixture {
  adv_model *m;
  float *x;
  int64_t *y;
  int64_t n, per, classes;
} fixture;

static fixture MNIST, FASHION;

/* Loads model + batch (x float32 N x 1 x 28 x 28, y int64). */
static int load_fixture(const char *model, const char *batch, fixture *f) {
  char p[1024];
  adv_err err = {{0}};
  adv_err eb = {{0}};
  adv_array x = {0}, y = {0};
  memset(f, 0, sizeof(*f));
  snprintf(p, sizeof(p), "%s/%s", FIX, model);
  if (adv_model_load_file(p, adv_load_default_params(), &f->m, &err)) {
    fprintf(stderr, "load %s: %s\n", p, err.msg);
    return -1;
  }
  snprintf(p, sizeof(p), "%s/%s", FIX, batch);
  if (adv_npz_read_file(p, "x", adv_io_default_limits(), &x, &eb) ||
      adv_npz_read_file(p, "y", adv_io_default_limits(), &y, &eb)) {
    fprintf(stderr, "read %s: %s\n", p, eb.msg);
    adv_array_free(&x);
    return -1;
  }
  if (x.dtype != ADV_DTYPE_F32 || y.dtype != ADV_DTYPE_I64 || x.dims[0] != y.dims[0]) {
    fprintf(stderr, "%s: unexpected dtypes/shapes\n", p);
    adv_array_free(&x);
    adv_array_free(&y);
    return -1;
  }
  f->x = x.data;
  f->y = y.data;
  f->n = x.dims[0];
  f->per = adv_array_numel(&x) / f->n;
  f->classes = 10;
  return 0;
}

static void free_fixture(fixture *f) {
  adv_model_free(f->m);
  free(f->x);
  free(f->y);
  memset(f, 0, sizeof(*f));
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Median of the norms of the successful, originally correct samples (the
 * ones the attack actually perturbed); -1 when there are none. */
static double median_norm(const fixture *f, const adv_attack_result *r,
                          adv_norm norm) {
  float v[256];
  int k = 0;
  for (int64_t i = 0; i < r->n && k < 256; i++)
    if (r->success[i] && r->pred_clean[i] == f->y[i])
      v[k++] = norm == ADV_NORM_L2 ? r->l2[i] : r->linf[i];
  if (!k)
    return -1;
  qsort(v, (size_t)k, sizeof(float), cmp_float);
  return k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
}

static int count_success(const adv_attack_result *r) {
  int s = 0;
  for (int64_t i = 0; i < r->n; i++)
    s += r->success[i];
  return s;
}

/* Runs one attack; prints a summary line. Returns the adv_attack_run code. */
static int run_attack(const fixture *f, int64_t n, adv_attack_params p,
                      const int64_t *target, const char *tag,
                      adv_attack_result *r) {
  adv_err err = {{0}};
  int rc = adv_attack_run(f->m, f->x, n, f->y, target, p, NULL, NULL, NULL, r, &err);
  if (rc) {
    fprintf(stderr, "%s: rc %d: %s\n", tag, rc, err.msg);
    return rc;
  }
  fprintf(stderr,
          "  %-28s n=%-3lld success %3d/%-3lld median %s %.4f  %.2fs  "
          "(%lld fwd, %lld bwd)\n",
          tag, (long long)n, count_success(r), (long long)n,
          p.norm == ADV_NORM_L2 ? "L2  " : "Linf", median_norm(f, r, p.norm),
          r->seconds, (long long)r->forwards, (long long)r->backwards);
  return 0;
}

static int is_adv(const float *z, int64_t K, int64_t y, const int64_t *target,
                  int64_t i, int targeted) {
  int64_t a = 0;
  for (int64_t j = 1; j < K; j++)
    if (z[j] > z[a])
      a = j;
  return targeted && target ? a == target[i] : a != y;
}

/*
 * The invariants every result must satisfy, re-derived independently:
 * bounds, labels by a fresh forward on x_adv (a session of batch n, which
 * computes exactly like the attack's final check), success semantics,
 * recomputed norms, x_adv == x where nothing was found; every success is
 * also adversarial under a batch-1 forward (other rounding).
 */
static void check_result(const fixture *f, int64_t n, const adv_attack_params *p,
                         const int64_t *target, const adv_attack_result *r) {
  int64_t per = f->per, K = f->classes;
  CHECK_EQ_INT(r->n, n);
  CHECK_EQ_INT(r->per, per);
  for (int64_t k = 0; k < n * per; k++)
    if (!(r->x_adv[k] >= p->clip_min && r->x_adv[k] <= p->clip_max)) {
      CHECK(!"x_adv outside [clip_min, clip_max]");
      break;
    }
  adv_session_params sp = adv_session_default_params();
  sp.batch = (int)n;
  sp.threads = 2;
  sp.logits = 1;
  adv_session *s = NULL, *s1 = NULL;
  adv_err err = {{0}};
  if (adv_session_init(f->m, sp, &s, &err)) {
    fprintf(stderr, "session: %s\n", err.msg);
    CHECK(0);
    return;
  }
  sp.batch = 1;
  if (adv_session_init(f->m, sp, &s1, &err)) {
    fprintf(stderr, "session: %s\n", err.msg);
    adv_session_free(s);
    CHECK(0);
    return;
  }
  float *z = malloc(sizeof(float) * (size_t)(n * K)), z1[16];
  CHECK(adv_session_forward(s, r->x_adv, z, &err) == ADV_OK);
  int near = 0, bad_label = 0, bad_succ = 0, bad_norm = 0, bad_same = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *xa = r->x_adv + i * per, *xi = f->x + i * per, *zi = z + i * K;
    int64_t a = 0;
    for (int64_t j = 1; j < K; j++)
      if (zi[j] > zi[a])
        a = j;
    bad_label += a != r->pred_adv[i];
    double l2 = 0, li = 0;
    for (int64_t k = 0; k < per; k++) {
      double d = (double)xa[k] - xi[k];
      l2 += d * d;
      li = fabs(d) > li ? fabs(d) : li;
    }
    l2 = sqrt(l2);
    bad_norm += fabs(l2 - r->l2[i]) > 1e-5 * (1 + l2) || fabs(li - r->linf[i]) > 1e-6;
    int adv = is_adv(zi, K, f->y[i], target, i, p->targeted);
    double nm = p->norm == ADV_NORM_L2 ? l2 : li;
    int want = adv && (p->eps <= 0 || nm <= p->eps * (1 + 1e-6));
    bad_succ += want != r->success[i];
    /* nothing found (eps = 0) or already misclassified: x_adv is x */
    int clean_wrong = !p->targeted && r->pred_clean[i] != f->y[i];
    if ((p->eps <= 0 && !r->success[i]) || clean_wrong)
      bad_same += memcmp(xa, xi, sizeof(float) * (size_t)per) != 0;
    if (clean_wrong)
      bad_succ += !r->success[i] || l2 != 0;
    /* independent batch-1 forward: logits differ from batch n by ~1e-6
     * relative; the attacks keep a margin of 1e-4 * (1 + max|z|) */
    CHECK(adv_session_forward(s1, xa, z1, &err) == ADV_OK);
    if (r->success[i] && !is_adv(z1, K, f->y[i], target, i, p->targeted)) {
      fprintf(stderr, "    sample %lld: success but not adversarial at batch 1\n",
              (long long)i);
      near++;
    }
  }
  CHECK_EQ_INT(bad_label, 0);
  CHECK_EQ_INT(bad_succ, 0);
  CHECK_EQ_INT(bad_norm, 0);
  CHECK_EQ_INT(bad_same, 0);
  CHECK_EQ_INT(near, 0);
  free(z);
  adv_session_free(s);
  adv_session_free(s1);
}

static adv_attack_params params(adv_attack_kind kind, adv_norm norm) {
  adv_attack_params p = adv_attack_default_params(kind);
  p.norm = norm;
  p.eps = 0; /* no budget: success = label flipped */
  p.seed = 7;
  return p;
}

/* CW settings used throughout: 100 Adam steps at lr 0.1 per constant, 5
 * binary search rounds from c = 1 (the reference's lr 0.01 needs ~1000
 * steps to move saturated MNIST pixels). */
static adv_attack_params cw_params(void) {
  adv_attack_params p = params(ADV_ATTACK_CW_L2, ADV_NORM_L2);
  p.step_size = 0.1f;
  p.steps = 100;
  p.binary_steps = 5;
  p.initial_const = 1.f;
  return p;
}

/* medians shared between tests (filled in order by main) */
static double g_df_l2 = -1, g_df_li = -1, g_cw_l2 = -1, g_fab_l2 = -1, g_fab_li = -1;
static float g_cw_norm[32]; /* CW L2 (kappa 0) per sample, -1 = no success */

TEST(deepfool_mnist) {
  adv_attack_result r;
  adv_attack_params p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_L2);
  if (run_attack(&MNIST, 32, p, NULL, "deepfool L2", &r) == ADV_OK) {
    check_result(&MNIST, 32, &p, NULL, &r);
    CHECK(count_success(&r) >= 29);
    g_df_l2 = median_norm(&MNIST, &r, ADV_NORM_L2);
    CHECK(g_df_l2 > 0.2 && g_df_l2 < 3.0);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_LINF);
  if (run_attack(&MNIST, 32, p, NULL, "deepfool Linf", &r) == ADV_OK) {
    check_result(&MNIST, 32, &p, NULL, &r);
    CHECK(count_success(&r) >= 29);
    g_df_li = median_norm(&MNIST, &r, ADV_NORM_LINF);
    CHECK(g_df_li > 0.01 && g_df_li < 0.3);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  /* fewer candidate classes still works (top-3 only) */
  p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_L2);
  p.candidates = 3;
  if (run_attack(&MNIST, 16, p, NULL, "deepfool L2 candidates=3", &r) == ADV_OK) {
    check_result(&MNIST, 16, &p, NULL, &r);
    CHECK(count_success(&r) >= 14);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
}

TEST(cw_mnist_untargeted) {
  adv_attack_result r;
  adv_attack_params p = cw_params();
  if (run_attack(&MNIST, 32, p, NULL, "cw L2", &r) != ADV_OK) {
    CHECK(0);
    return;
  }
  check_result(&MNIST, 32, &p, NULL, &r);
  CHECK(count_success(&r) >= 29);
  g_cw_l2 = median_norm(&MNIST, &r, ADV_NORM_L2);
  CHECK(g_cw_l2 > 0.2 && g_cw_l2 < 2.0);
  for (int i = 0; i < 32; i++)
    g_cw_norm[i] = r.success[i] && r.pred_clean[i] == MNIST.y[i] ? r.l2[i] : -1.f;
  /* stronger than DeepFool, and DeepFool not absurdly worse */
  CHECK(g_df_l2 > 0 && g_cw_l2 < g_df_l2);
  CHECK(g_df_l2 < 2.0 * g_cw_l2);

  /* random directions of the same L2 norm as each CW perturbation rarely
   * flip the label: CW found a special, not merely a large, perturbation */
  int64_t per = MNIST.per, K = MNIST.classes, n = 32;
  float *xr = malloc(sizeof(float) * (size_t)(n * per)), *z = malloc(sizeof(float) * (size_t)(n * K));
  uint64_t st = 12345;
  for (int64_t i = 0; i < n; i++) {
    double s = 0, nr = r.success[i] ? r.l2[i] : 0;
    float *v = xr + i * per;
    for (int64_t k = 0; k < per; k++) { /* Box-Muller on an LCG */
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      double u1 = ((st >> 11) + 1.0) / 9007199254740993.0;
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      double u2 = (st >> 11) / 9007199254740992.0;
      v[k] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
      s += (double)v[k] * v[k];
    }
    for (int64_t k = 0; k < per; k++) {
      float t = MNIST.x[i * per + k] + (float)(nr * v[k] / sqrt(s));
      v[k] = t < 0 ? 0 : t > 1 ? 1 : t;
    }
  }
  adv_session_params sp = adv_session_default_params();
  sp.batch = (int)n;
  sp.threads = 2;
  sp.logits = 1;
  adv_session *s = NULL;
  adv_err err = {{0}};
  int flipped = 0, attacked = 0;
  if (adv_session_init(MNIST.m, sp, &s, &err) == ADV_OK &&
      adv_session_forward(s, xr, z, &err) == ADV_OK) {
    for (int64_t i = 0; i < n; i++) {
      if (!r.success[i] || r.pred_clean[i] != MNIST.y[i])
        continue;
      attacked++;
      flipped += is_adv(z + i * K, K, MNIST.y[i], NULL, i, 0);
    }
  } else {
    CHECK(0);
  }
  fprintf(stderr, "    random directions of CW's norms flip %d/%d\n", flipped, attacked);
  CHECK(attacked >= 29 && flipped * 10 <= attacked);
  adv_session_free(s);
  free(xr);
  free(z);

  /* FGSM-L2 baseline: the smallest eps on a grid at which FGSM fools each
   * sample; CW's median must be well below FGSM's */
  float need[32];
  for (int i = 0; i < 32; i++)
    need[i] = 100.f;
  for (int e = 1; e <= 32; e++) {
    adv_attack_params pf = adv_attack_default_params(ADV_ATTACK_FGSM);
    pf.norm = ADV_NORM_L2;
    pf.eps = 0.25f * (float)e;
    adv_attack_result rf;
    if (adv_attack_run(MNIST.m, MNIST.x, n, MNIST.y, NULL, pf, NULL, NULL, NULL, &rf, &err)) {
      CHECK(0);
      break;
    }
    for (int i = 0; i < 32; i++)
      if (rf.success[i] && rf.pred_clean[i] == MNIST.y[i] && need[i] > pf.eps)
        need[i] = pf.eps;
    adv_attack_result_free(&rf);
  }
  qsort(need, 32, sizeof(float), cmp_float);
  double fgsm_med = 0.5 * (need[15] + need[16]);
  fprintf(stderr, "    FGSM-L2 needs median eps %.2f, CW median %.4f\n", fgsm_med, g_cw_l2);
  CHECK(g_cw_l2 <= 0.75 * fgsm_med);
  adv_attack_result_free(&r);
}

TEST(cw_mnist_targeted) {
  int64_t n = 16, tgt[16];
  for (int64_t i = 0; i < n; i++)
    tgt[i] = (MNIST.y[i] + 1 + i % 9) % 10;
  adv_attack_params p = cw_params();
  p.targeted = 1;
  adv_attack_result r;
  if (run_attack(&MNIST, n, p, tgt, "cw L2 targeted", &r) != ADV_OK) {
    CHECK(0);
    return;
  }
  check_result(&MNIST, n, &p, tgt, &r);
  CHECK(count_success(&r) >= 15);
  for (int64_t i = 0; i < n; i++)
    if (r.success[i])
      CHECK_EQ_INT(r.pred_adv[i], tgt[i]);
  adv_attack_result_free(&r);
  /* confidence kappa: every success keeps max_{j!=y} z_j - z_y >= kappa
   * and costs more norm than kappa = 0 on the same samples */
  p.targeted = 0;
  p.kappa = 2.f;
  if (run_attack(&MNIST, n, p, NULL, "cw L2 kappa=2", &r) != ADV_OK) {
    CHECK(0);
    return;
  }
  check_result(&MNIST, n, &p, NULL, &r);
  CHECK(count_success(&r) >= 15);
  adv_session_params sp = adv_session_default_params();
  sp.batch = (int)n;
  sp.threads = 2;
  sp.logits = 1;
  adv_session *s = NULL;
  adv_err err = {{0}};
  float z[16 * 10];
  double s0 = 0, s2 = 0;
  int low = 0;
  if (adv_session_init(MNIST.m, sp, &s, &err) == ADV_OK &&
      adv_session_forward(s, r.x_adv, z, &err) == ADV_OK) {
    for (int64_t i = 0; i < n; i++) {
      if (!r.success[i] || r.pred_clean[i] != MNIST.y[i] || g_cw_norm[i] < 0)
        continue;
      float mo = -INFINITY, *zi = z + i * 10;
      for (int j = 0; j < 10; j++)
        if (j != MNIST.y[i] && zi[j] > mo)
          mo = zi[j];
      low += mo - zi[MNIST.y[i]] < 2.f - 1e-3f;
      s0 += g_cw_norm[i];
      s2 += r.l2[i];
    }
  } else {
    CHECK(0);
  }
  adv_session_free(s);
  fprintf(stderr, "    kappa 0 -> 2: total L2 %.4f -> %.4f\n", s0, s2);
  CHECK_EQ_INT(low, 0);
  CHECK(s0 > 0 && s2 > s0);
  adv_attack_result_free(&r);
}

TEST(fab_mnist) {
  adv_attack_result r;
  adv_attack_params p = params(ADV_ATTACK_FAB, ADV_NORM_L2);
  p.steps = 20;
  if (run_attack(&MNIST, 32, p, NULL, "fab L2 20 steps", &r) == ADV_OK) {
    check_result(&MNIST, 32, &p, NULL, &r);
    CHECK(count_success(&r) >= 29);
    g_fab_l2 = median_norm(&MNIST, &r, ADV_NORM_L2);
    CHECK(g_fab_l2 > 0 && g_fab_l2 < g_df_l2);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  p = params(ADV_ATTACK_FAB, ADV_NORM_LINF);
  p.steps = 20;
  if (run_attack(&MNIST, 32, p, NULL, "fab Linf 20 steps", &r) == ADV_OK) {
    check_result(&MNIST, 32, &p, NULL, &r);
    CHECK(count_success(&r) >= 29);
    g_fab_li = median_norm(&MNIST, &r, ADV_NORM_LINF);
    CHECK(g_fab_li > 0 && g_fab_li < g_df_li);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
}

TEST(fab_t_mnist) {
  adv_attack_result r;
  /* AutoAttack's FAB-T: top-3 target classes, any wrong label counts */
  adv_attack_params p = params(ADV_ATTACK_FAB_T, ADV_NORM_LINF);
  p.steps = 20;
  p.n_target_classes = 3;
  if (run_attack(&MNIST, 32, p, NULL, "fab-t Linf top-3", &r) == ADV_OK) {
    check_result(&MNIST, 32, &p, NULL, &r);
    CHECK(count_success(&r) >= 29);
    /* within 1.5x of untargeted FAB */
    double med = median_norm(&MNIST, &r, ADV_NORM_LINF);
    CHECK(med > 0 && med < 1.5 * g_fab_li);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  /* explicit targets: success means reaching the target */
  int64_t n = 16, tgt[16];
  for (int64_t i = 0; i < n; i++)
    tgt[i] = (MNIST.y[i] + 1 + i % 9) % 10;
  p = params(ADV_ATTACK_FAB_T, ADV_NORM_L2);
  p.steps = 60;
  p.targeted = 1;
  if (run_attack(&MNIST, n, p, tgt, "fab-t L2 explicit targets", &r) == ADV_OK) {
    check_result(&MNIST, n, &p, tgt, &r);
    CHECK(count_success(&r) >= 15);
    for (int64_t i = 0; i < n; i++)
      if (r.success[i])
        CHECK_EQ_INT(r.pred_adv[i], tgt[i]);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
}

/* Aggregate "b is no worse than a": b succeeds wherever a does, total
 * norm no larger (1e-3 slack), no sample more than 5% worse. */
static void check_not_worse(const adv_attack_result *a, const adv_attack_result *b,
                            adv_norm norm, const char *what) {
  double sa = 0, sb = 0;
  int lost = 0, worse = 0;
  for (int64_t i = 0; i < a->n; i++) {
    if (!a->success[i])
      continue;
    if (!b->success[i]) {
      lost++;
      continue;
    }
    double na = norm == ADV_NORM_L2 ? a->l2[i] : a->linf[i];
    double nb = norm == ADV_NORM_L2 ? b->l2[i] : b->linf[i];
    sa += na;
    sb += nb;
    worse += nb > 1.05 * na;
  }
  fprintf(stderr, "    %s: total norm %.4f -> %.4f\n", what, sa, sb);
  CHECK_EQ_INT(lost, 0);
  CHECK_EQ_INT(worse, 0);
  CHECK(sb <= sa * (1 + 1e-3));
}

TEST(fab_monotone) {
  int64_t n = 16;
  adv_attack_result r10, r30, r3;
  adv_attack_params p = params(ADV_ATTACK_FAB, ADV_NORM_LINF);
  p.steps = 10;
  int ok = run_attack(&MNIST, n, p, NULL, "fab Linf 10 steps", &r10) == ADV_OK;
  p.steps = 30;
  ok = ok && run_attack(&MNIST, n, p, NULL, "fab Linf 30 steps", &r30) == ADV_OK;
  p.steps = 10;
  p.restarts = 3;
  ok = ok && run_attack(&MNIST, n, p, NULL, "fab Linf 10 steps x3", &r3) == ADV_OK;
  CHECK(ok);
  if (!ok)
    return;
  check_result(&MNIST, n, &p, NULL, &r3);
  check_not_worse(&r10, &r30, ADV_NORM_LINF, "steps 10 -> 30");
  check_not_worse(&r10, &r3, ADV_NORM_LINF, "restarts 1 -> 3");
  adv_attack_result_free(&r10);
  adv_attack_result_free(&r30);
  adv_attack_result_free(&r3);

  /* L2 as well, restarts */
  p = params(ADV_ATTACK_FAB, ADV_NORM_L2);
  p.steps = 10;
  ok = run_attack(&MNIST, n, p, NULL, "fab L2 10 steps", &r10) == ADV_OK;
  p.restarts = 3;
  ok = ok && run_attack(&MNIST, n, p, NULL, "fab L2 10 steps x3", &r3) == ADV_OK;
  CHECK(ok);
  if (!ok)
    return;
  check_not_worse(&r10, &r3, ADV_NORM_L2, "L2 restarts 1 -> 3");
  adv_attack_result_free(&r10);
  adv_attack_result_free(&r3);
}

TEST(eps_semantics) {
  int64_t n = 16;
  adv_attack_result r0, re;
  /* FAB: with eps > 0 later restarts skip samples already within eps */
  adv_attack_params p = params(ADV_ATTACK_FAB, ADV_NORM_L2);
  p.steps = 10;
  p.restarts = 2;
  int ok = run_attack(&MNIST, n, p, NULL, "fab L2 x2 eps=0", &r0) == ADV_OK;
  p.eps = 3.f;
  ok = ok && run_attack(&MNIST, n, p, NULL, "fab L2 x2 eps=3", &re) == ADV_OK;
  CHECK(ok);
  if (!ok)
    return;
  check_result(&MNIST, n, &p, NULL, &re);
  CHECK(re.backwards < r0.backwards);
  CHECK(count_success(&re) >= 14);
  adv_attack_result_free(&r0);
  adv_attack_result_free(&re);
  /* DeepFool at eps = its own median: success iff fooled within eps */
  p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_L2);
  p.eps = (float)g_df_l2;
  if (run_attack(&MNIST, 32, p, NULL, "deepfool L2 eps=median", &re) == ADV_OK) {
    check_result(&MNIST, 32, &p, NULL, &re);
    int s = count_success(&re);
    CHECK(s >= 12 && s <= 22);
    adv_attack_result_free(&re);
  } else {
    CHECK(0);
  }
}

TEST(determinism) {
  int64_t n = 8;
  adv_attack_result a, b;
  adv_attack_params p = params(ADV_ATTACK_FAB, ADV_NORM_L2);
  p.steps = 8;
  p.restarts = 2;
  p.seed = 99;
  int ok = run_attack(&MNIST, n, p, NULL, "fab L2 x2 seed 99", &a) == ADV_OK &&
           run_attack(&MNIST, n, p, NULL, "fab L2 x2 seed 99 again", &b) == ADV_OK;
  CHECK(ok);
  if (ok) {
    CHECK(!memcmp(a.x_adv, b.x_adv, sizeof(float) * (size_t)(n * MNIST.per)));
    CHECK(!memcmp(a.success, b.success, (size_t)n));
    adv_attack_result_free(&a);
    adv_attack_result_free(&b);
  }
  p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_LINF);
  ok = run_attack(&MNIST, n, p, NULL, "deepfool Linf", &a) == ADV_OK &&
       run_attack(&MNIST, n, p, NULL, "deepfool Linf again", &b) == ADV_OK;
  CHECK(ok);
  if (ok) {
    CHECK(!memcmp(a.x_adv, b.x_adv, sizeof(float) * (size_t)(n * MNIST.per)));
    adv_attack_result_free(&a);
    adv_attack_result_free(&b);
  }
  p = cw_params();
  p.binary_steps = 2;
  p.steps = 20;
  ok = run_attack(&MNIST, n, p, NULL, "cw short", &a) == ADV_OK &&
       run_attack(&MNIST, n, p, NULL, "cw short again", &b) == ADV_OK;
  CHECK(ok);
  if (ok) {
    CHECK(!memcmp(a.x_adv, b.x_adv, sizeof(float) * (size_t)(n * MNIST.per)));
    adv_attack_result_free(&a);
    adv_attack_result_free(&b);
  }
}

static int abort_first(void *ud, const char *phase, double fraction) {
  (void)phase;
  (void)fraction;
  ++*(int *)ud;
  return 1;
}

typedef struct progress_log {
  int calls, bad;
  double last;
} progress_log;

/* Never aborts; counts calls and fractions outside [0, 1] or going back. */
static int progress_check(void *ud, const char *phase, double fraction) {
  progress_log *l = ud;
  (void)phase;
  l->bad += !(fraction >= 0 && fraction <= 1) || fraction < l->last;
  l->last = fraction;
  l->calls++;
  return 0;
}

TEST(abort_and_errors) {
  adv_attack_kind kinds[3] = {ADV_ATTACK_FAB, ADV_ATTACK_CW_L2, ADV_ATTACK_DEEPFOOL};
  for (int k = 0; k < 3; k++) {
    adv_attack_params p = params(kinds[k], ADV_NORM_L2);
    adv_attack_result r;
    adv_err err = {{0}};
    volatile int flag = 1;
    CHECK_EQ_INT(adv_attack_run(MNIST.m, MNIST.x, 4, MNIST.y, NULL, p, NULL, NULL,
                                &flag, &r, &err), ADV_EABORTED);
    CHECK(r.x_adv == NULL);
    int calls = 0;
    CHECK_EQ_INT(adv_attack_run(MNIST.m, MNIST.x, 4, MNIST.y, NULL, p, abort_first,
                                &calls, NULL, &r, &err), ADV_EABORTED);
    CHECK_EQ_INT(calls, 1);
    progress_log log = {0, 0, 0};
    p.steps = 5;
    p.binary_steps = 2;
    p.restarts = 2;
    CHECK_EQ_INT(adv_attack_run(MNIST.m, MNIST.x, 4, MNIST.y, NULL, p, progress_check,
                                &log, NULL, &r, &err), ADV_OK);
    CHECK(log.calls >= 1 && log.bad == 0);
    adv_attack_result_free(&r);
  }
  adv_attack_params p = params(ADV_ATTACK_FAB, ADV_NORM_LINF);
  adv_attack_result r;
  adv_err err = {{0}};
  p.alpha_max = 2.f;
  CHECK_EQ_INT(adv_attack_run(MNIST.m, MNIST.x, 2, MNIST.y, NULL, p, NULL, NULL,
                              NULL, &r, &err), ADV_EINVAL);
  p = params(ADV_ATTACK_FAB, ADV_NORM_LINF);
  p.beta = 1.5f;
  CHECK_EQ_INT(adv_attack_run(MNIST.m, MNIST.x, 2, MNIST.y, NULL, p, NULL, NULL,
                              NULL, &r, &err), ADV_EINVAL);
}

TEST(fashion) {
  int64_t n = 16;
  adv_attack_result r;
  double df = -1, cw = -1;
  adv_attack_params p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_L2);
  if (run_attack(&FASHION, n, p, NULL, "fashion deepfool L2", &r) == ADV_OK) {
    check_result(&FASHION, n, &p, NULL, &r);
    CHECK(count_success(&r) >= 15);
    df = median_norm(&FASHION, &r, ADV_NORM_L2);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  p = params(ADV_ATTACK_DEEPFOOL, ADV_NORM_LINF);
  if (run_attack(&FASHION, n, p, NULL, "fashion deepfool Linf", &r) == ADV_OK) {
    check_result(&FASHION, n, &p, NULL, &r);
    CHECK(count_success(&r) >= 15);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  p = cw_params();
  if (run_attack(&FASHION, n, p, NULL, "fashion cw L2", &r) == ADV_OK) {
    check_result(&FASHION, n, &p, NULL, &r);
    CHECK(count_success(&r) >= 15);
    cw = median_norm(&FASHION, &r, ADV_NORM_L2);
    CHECK(cw > 0 && cw < 1.25 * df);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  p = params(ADV_ATTACK_FAB, ADV_NORM_L2);
  p.steps = 10;
  if (run_attack(&FASHION, n, p, NULL, "fashion fab L2", &r) == ADV_OK) {
    check_result(&FASHION, n, &p, NULL, &r);
    CHECK(count_success(&r) >= 15);
    double fab = median_norm(&FASHION, &r, ADV_NORM_L2);
    CHECK(fab > 0 && fab < 1.25 * df);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
  p = params(ADV_ATTACK_FAB, ADV_NORM_LINF);
  p.steps = 10;
  if (run_attack(&FASHION, n, p, NULL, "fashion fab Linf", &r) == ADV_OK) {
    check_result(&FASHION, n, &p, NULL, &r);
    CHECK(count_success(&r) >= 15);
    adv_attack_result_free(&r);
  } else {
    CHECK(0);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  FIX = argv[1];
  if (load_fixture("mnist_cnn.onnx", "mnist_batch.npz", &MNIST) ||
      load_fixture("fashion_resnet.onnx", "fashion_batch.npz", &FASHION))
    return 1;
  RUN(deepfool_mnist);
  RUN(cw_mnist_untargeted);
  RUN(cw_mnist_targeted);
  RUN(fab_mnist);
  RUN(fab_t_mnist);
  RUN(fab_monotone);
  RUN(eps_semantics);
  RUN(determinism);
  RUN(abort_and_errors);
  RUN(fashion);
  free_fixture(&MNIST);
  free_fixture(&FASHION);
  return harness_report();
}
