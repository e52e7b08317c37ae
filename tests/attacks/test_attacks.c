/*
 * test_attacks.c - the gradient attacks on the real fixture models.
 *   - every bounded attack's examples stay within eps (tolerance: 1e-6
 *     relative + 1e-7 absolute, float rounding of x + delta) and in [0, 1];
 *   - same seed => identical bytes; another seed => different random starts;
 *   - FGSM equals clip(x + eps * sign(grad CE)) with PyTorch's gradient
 *     (tests/fixtures/mnist_cnn_grads.npz) wherever that gradient's sign is
 *     unambiguous (|g| > 1e-4 * max|g|: below, float32 rounding may flip it);
 *   - PGD (no random start, eps 0.1, step 0.01, 20 steps) gives PyTorch's
 *     adversarial labels on the 16 reference images (mnist_cnn_pgd.npz);
 *   - PGD and APGD are never worse than FGSM at the same eps;
 *   - targeted attacks: success means the target class is predicted;
 *   - L2 attacks respect the L2 budget.
 * Usage: test_attacks FIXTURE_DIR
 */
#include "adv/adv.h"
#include "adv/attack.h"
#include "adv/data.h"
#include "harness.h"

#include <omp.h>

static const char *FIX;
static adv_model *MN;
static adv_array BX, BY; /* mnist_batch x, y (64) */

static int npz(const char *file, const char *member, adv_array *a) {
  char p[1024];
  snprintf(p, sizeof(p), "%s/%s", FIX, file);
  adv_err eb = {{0}};
  int rc = adv_npz_read_file(p, member, adv_io_default_limits(), a, &eb);
  if (rc)
    fprintf(stderr, "%s[%s]: %s\n", p, member, eb.msg);
  return rc;
}

static int run(adv_attack_params p, int64_t n, const int64_t *target,
               adv_attack_result *r) {
  adv_err err = {{0}};
  int rc = adv_attack_run(MN, BX.data, n, BY.data, target, p, NULL, NULL, NULL, r, &err);
  if (rc)
    fprintf(stderr, "attack %s: %s\n", adv_attack_name(p.kind), err.msg);
  return rc;
}

static double robust_acc(const adv_attack_result *r, const int64_t *y) {
  int64_t k = 0;
  for (int64_t i = 0; i < r->n; i++)
    k += r->pred_clean[i] == y[i] && !r->success[i];
  return (double)k / (double)r->n;
}

static void check_bounds(const adv_attack_result *r, adv_norm norm, float eps) {
  const float *x = BX.data;
  int bad = 0;
  for (int64_t i = 0; i < r->n; i++) {
    double nm = norm == ADV_NORM_LINF ? r->linf[i] : r->l2[i];
    if (nm > eps * (1 + 1e-6) + 1e-7)
      bad++;
    for (int64_t k = 0; k < r->per; k++) {
      float v = r->x_adv[i * r->per + k];
      if (!(v >= 0.f && v <= 1.f))
        bad++;
      if (norm == ADV_NORM_LINF && fabsf(v - x[i * r->per + k]) > eps * (1 + 1e-6f) + 1e-7f)
        bad++;
    }
  }
  CHECK_EQ_INT(bad, 0);
}

TEST(bounded_attacks_respect_eps_and_box) {
  adv_attack_kind kinds[] = {ADV_ATTACK_FGSM, ADV_ATTACK_BIM, ADV_ATTACK_PGD,
                             ADV_ATTACK_MIFGSM, ADV_ATTACK_APGD_CE,
                             ADV_ATTACK_APGD_DLR, ADV_ATTACK_APGD_T};
  for (int norm = 0; norm < 2; norm++)
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
      adv_attack_params p = adv_attack_default_params(kinds[k]);
      p.norm = (adv_norm)norm;
      p.eps = norm == ADV_NORM_LINF ? 0.15f : 1.5f;
      p.steps = kinds[k] == ADV_ATTACK_FGSM ? 1 : 10;
      p.n_target_classes = 2;
      p.seed = 7;
      adv_attack_result r;
      CHECK(run(p, 24, NULL, &r) == 0);
      if (!r.x_adv)
        continue;
      check_bounds(&r, p.norm, p.eps);
      int64_t succ = 0;
      for (int64_t i = 0; i < r.n; i++)
        succ += r.success[i];
      fprintf(stderr, "  %-9s %s eps %.2f: %lld/24 fooled\n", adv_attack_name(p.kind),
              norm ? "L2  " : "Linf", (double)p.eps, (long long)succ);
      adv_attack_result_free(&r);
    }
}

TEST(same_seed_same_bytes) {
  adv_attack_kind kinds[] = {ADV_ATTACK_PGD, ADV_ATTACK_APGD_CE};
  for (int k = 0; k < 2; k++) {
    adv_attack_params p = adv_attack_default_params(kinds[k]);
    p.eps = 0.1f;
    p.steps = 5;
    p.seed = 42;
    adv_attack_result a, b, c;
    CHECK(run(p, 16, NULL, &a) == 0);
    CHECK(run(p, 16, NULL, &b) == 0);
    p.seed = 43;
    CHECK(run(p, 16, NULL, &c) == 0);
    if (a.x_adv && b.x_adv && c.x_adv) {
      size_t bytes = sizeof(float) * (size_t)(a.n * a.per);
      CHECK(memcmp(a.x_adv, b.x_adv, bytes) == 0);
      CHECK(memcmp(a.x_adv, c.x_adv, bytes) != 0);
    }
    adv_attack_result_free(&a);
    adv_attack_result_free(&b);
    adv_attack_result_free(&c);
  }
}

/* The evaluator's chunking does not depend on the thread count (chunks of
 * at most p.batch dealt to data-parallel workers, eval.c): 15 samples with
 * batch 8 (chunks of 8 and 7: two session sizes, oneDNN and im2col
 * convolutions) give the same bytes with 1, 2 and 3 threads, and with 2
 * threads asked when OpenMP grants only one. */
TEST(same_bytes_any_thread_count) {
  adv_attack_kind kinds[] = {ADV_ATTACK_PGD, ADV_ATTACK_APGD_CE};
  for (int k = 0; k < 2; k++) {
    adv_attack_params p = adv_attack_default_params(kinds[k]);
    p.eps = 0.1f;
    p.steps = 5;
    p.seed = 42;
    p.batch = 8;
    adv_attack_result r[4];
    int ok = 1;
    for (int t = 0; t < 3; t++) {
      p.threads = t + 1;
      ok &= run(p, 15, NULL, &r[t]) == 0 && r[t].x_adv != NULL;
    }
    /* 2 threads asked, but OpenMP grants a team of one (as under
     * OMP_THREAD_LIMIT=1 or inside a caller's parallel region): every
     * chunk must still run */
    p.threads = 2;
    int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(0);
    ok &= run(p, 15, NULL, &r[3]) == 0 && r[3].x_adv != NULL;
    omp_set_max_active_levels(levels);
    CHECK(ok);
    if (ok) {
      size_t bytes = sizeof(float) * (size_t)(r[0].n * r[0].per);
      CHECK(memcmp(r[0].x_adv, r[1].x_adv, bytes) == 0);
      CHECK(memcmp(r[0].x_adv, r[2].x_adv, bytes) == 0);
      CHECK(memcmp(r[0].x_adv, r[3].x_adv, bytes) == 0);
      CHECK(memcmp(r[0].pred_clean, r[3].pred_clean, sizeof(int64_t) * (size_t)r[0].n) == 0);
      CHECK_EQ_INT(r[0].backwards, r[1].backwards);
    }
    for (int t = 0; t < 4; t++)
      adv_attack_result_free(&r[t]);
  }
}

TEST(fgsm_matches_pytorch_gradient_sign) {
  adv_array gx = {0}, gg = {0}, gy = {0};
  CHECK(npz("mnist_cnn_grads.npz", "x", &gx) == 0);
  CHECK(npz("mnist_cnn_grads.npz", "grad_ce", &gg) == 0);
  CHECK(npz("mnist_cnn_grads.npz", "y", &gy) == 0);
  if (!gx.data || !gg.data || !gy.data)
    return;
  int64_t n = gx.dims[0], per = adv_array_numel(&gx) / n;
  adv_attack_params p = adv_attack_default_params(ADV_ATTACK_FGSM);
  p.eps = 0.1f;
  adv_attack_result r;
  adv_err err = {{0}};
  CHECK(adv_attack_run(MN, gx.data, n, gy.data, NULL, p, NULL, NULL, NULL, &r, &err) == 0);
  int64_t compared = 0, differ = 0;
  for (int64_t i = 0; r.x_adv && i < n; i++) {
    const float *g = (const float *)gg.data + i * per, *x = (const float *)gx.data + i * per;
    if (r.pred_clean[i] != ((int64_t *)gy.data)[i])
      continue; /* misclassified points are left untouched */
    float gmax = 0;
    for (int64_t k = 0; k < per; k++)
      gmax = fabsf(g[k]) > gmax ? fabsf(g[k]) : gmax;
    for (int64_t k = 0; k < per; k++) {
      if (fabsf(g[k]) <= 1e-4f * gmax)
        continue;
      float want = x[k] + (g[k] > 0 ? 0.1f : -0.1f);
      want = want < 0 ? 0 : want > 1 ? 1 : want;
      compared++;
      differ += fabsf(r.x_adv[i * per + k] - want) > 1e-6f;
    }
  }
  fprintf(stderr, "  FGSM vs PyTorch sign: %lld of %lld pixels differ\n", (long long)differ,
          (long long)compared);
  CHECK(compared > 1000);
  CHECK_EQ_INT(differ, 0);
  adv_attack_result_free(&r);
  adv_array_free(&gx);
  adv_array_free(&gg);
  adv_array_free(&gy);
}

TEST(pgd_matches_pytorch_labels) {
  adv_array px = {0}, py = {0}, pa = {0};
  CHECK(npz("mnist_cnn_pgd.npz", "x", &px) == 0);
  CHECK(npz("mnist_cnn_pgd.npz", "y", &py) == 0);
  CHECK(npz("mnist_cnn_pgd.npz", "pred_adv", &pa) == 0);
  if (!px.data || !py.data || !pa.data)
    return;
  adv_attack_params p = adv_attack_default_params(ADV_ATTACK_PGD);
  p.eps = 0.1f;
  p.step_size = 0.01f;
  p.steps = 20;
  p.random_start = 0;
  adv_attack_result r;
  adv_err err = {{0}};
  int64_t n = px.dims[0];
  CHECK(adv_attack_run(MN, px.data, n, py.data, NULL, p, NULL, NULL, NULL, &r, &err) == 0);
  int64_t same = 0;
  for (int64_t i = 0; r.x_adv && i < n; i++)
    same += r.pred_adv[i] == ((int64_t *)pa.data)[i];
  fprintf(stderr, "  PGD adversarial labels equal to PyTorch's on %lld/%lld\n",
          (long long)same, (long long)n);
  CHECK_EQ_INT(same, n);
  adv_attack_result_free(&r);
  adv_array_free(&px);
  adv_array_free(&py);
  adv_array_free(&pa);
}

TEST(iterative_never_worse_than_fgsm) {
  float eps[] = {0.05f, 0.1f, 0.2f};
  for (int e = 0; e < 3; e++) {
    adv_attack_params pf = adv_attack_default_params(ADV_ATTACK_FGSM);
    pf.eps = eps[e];
    adv_attack_params pp = adv_attack_default_params(ADV_ATTACK_PGD);
    pp.eps = eps[e];
    pp.steps = 20;
    adv_attack_params pa = adv_attack_default_params(ADV_ATTACK_APGD_CE);
    pa.eps = eps[e];
    pa.steps = 20;
    adv_attack_result rf, rp, ra;
    CHECK(run(pf, 64, NULL, &rf) == 0);
    CHECK(run(pp, 64, NULL, &rp) == 0);
    CHECK(run(pa, 64, NULL, &ra) == 0);
    if (rf.x_adv && rp.x_adv && ra.x_adv) {
      double af = robust_acc(&rf, BY.data), ap = robust_acc(&rp, BY.data),
             aa = robust_acc(&ra, BY.data);
      fprintf(stderr, "  eps %.2f robust acc: FGSM %.3f PGD %.3f APGD-CE %.3f\n",
              (double)eps[e], af, ap, aa);
      CHECK(ap <= af);
      CHECK(aa <= af);
    }
    adv_attack_result_free(&rf);
    adv_attack_result_free(&rp);
    adv_attack_result_free(&ra);
  }
}

TEST(targeted_success_means_target) {
  int64_t n = 32, tg[32];
  for (int64_t i = 0; i < n; i++)
    tg[i] = (((int64_t *)BY.data)[i] + 1) % 10;
  adv_attack_kind kinds[] = {ADV_ATTACK_PGD, ADV_ATTACK_FGSM, ADV_ATTACK_MIFGSM};
  for (int k = 0; k < 3; k++) {
    adv_attack_params p = adv_attack_default_params(kinds[k]);
    p.eps = 0.3f;
    p.steps = 20;
    p.targeted = 1;
    adv_attack_result r;
    CHECK(run(p, n, tg, &r) == 0);
    int64_t succ = 0;
    for (int64_t i = 0; r.x_adv && i < n; i++)
      if (r.success[i]) {
        succ++;
        CHECK_EQ_INT(r.pred_adv[i], tg[i]);
      }
    fprintf(stderr, "  targeted %s: %lld/%lld reach the target\n", adv_attack_name(p.kind),
            (long long)succ, (long long)n);
    if (kinds[k] == ADV_ATTACK_PGD)
      CHECK(succ > n / 2); /* eps 0.3 on an undefended MNIST CNN */
    adv_attack_result_free(&r);
  }
}

TEST(bad_inputs_rejected) {
  adv_attack_params p = adv_attack_default_params(ADV_ATTACK_PGD);
  adv_attack_result r;
  adv_err err = {{0}};
  float bad[784];
  for (int i = 0; i < 784; i++)
    bad[i] = 2.f; /* outside [0, 1] */
  int64_t y = 3;
  CHECK(adv_attack_run(MN, bad, 1, &y, NULL, p, NULL, NULL, NULL, &r, &err) == ADV_EINVAL);
  y = 11;
  CHECK(adv_attack_run(MN, BX.data, 1, &y, NULL, p, NULL, NULL, NULL, &r, &err) == ADV_EINVAL);
  p.eps = -1;
  y = 3;
  CHECK(adv_attack_run(MN, BX.data, 1, &y, NULL, p, NULL, NULL, NULL, &r, &err) == ADV_EINVAL);
  p = adv_attack_default_params(ADV_ATTACK_PGD);
  p.targeted = 1;
  CHECK(adv_attack_run(MN, BX.data, 1, &y, NULL, p, NULL, NULL, NULL, &r, &err) == ADV_EINVAL);
  volatile int abort_now = 1;
  p = adv_attack_default_params(ADV_ATTACK_PGD);
  CHECK(adv_attack_run(MN, BX.data, 4, BY.data, NULL, p, NULL, NULL, &abort_now, &r, &err) ==
        ADV_EABORTED);
  CHECK(r.x_adv == NULL);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_attacks FIXTURE_DIR\n");
    return 2;
  }
  FIX = argv[1];
  char p[1024];
  snprintf(p, sizeof(p), "%s/mnist_cnn.onnx", FIX);
  adv_err err = {{0}};
  if (adv_model_load_file(p, adv_load_default_params(), &MN, &err) ||
      npz("mnist_batch.npz", "x", &BX) || npz("mnist_batch.npz", "y", &BY)) {
    fprintf(stderr, "cannot load fixtures: %s\n", err.msg);
    return 1;
  }
  RUN(bounded_attacks_respect_eps_and_box);
  RUN(same_seed_same_bytes);
  RUN(same_bytes_any_thread_count);
  RUN(fgsm_matches_pytorch_gradient_sign);
  RUN(pgd_matches_pytorch_labels);
  RUN(iterative_never_worse_than_fgsm);
  RUN(targeted_success_means_target);
  RUN(bad_inputs_rejected);
  adv_array_free(&BX);
  adv_array_free(&BY);
  adv_model_free(MN);
  return harness_report();
}
