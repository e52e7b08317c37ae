/*
 * test_grad_objective.c - the output-distance loss (issue 13 item 4,
 * ADV_LOSS_OUTPUT_DIST in adv/adv.h) and its gradient:
 *   - loss values against the L2 norm computed here in double, and dL/dz
 *     against central finite differences of the loss (untargeted and
 *     targeted, several reference rows);
 *   - the subgradient at z == r (untargeted: unit norm; targeted: zero);
 *   - through a model: dL/dx from adv_session_backward_dz seeded with the
 *     loss's dz, against central finite differences of L(f(x)) with the
 *     forward pass (tests/fixtures/inputs/tabular_mlp.onnx, an N x 8 ->
 *     N x 3 MLP, and the rank-3 audio model audio_conv1d.onnx);
 *   - bad arguments are refused.
 * Usage: test_grad_objective FIXTURE_DIR
 */
#include "adv/adv.h"
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *fixtures = ".";

/* A deterministic value in [-1, 1) for index i (LCG). */
static float val(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) / 8388608.0 - 1.0);
}

/* The loss of one sample in double: sign * ||z - r||. */
static double ref_loss(const float *z, const float *r, int64_t k, int tgt) {
  double s = 0;
  for (int64_t j = 0; j < k; j++)
    s += ((double)z[j] - r[j]) * ((double)z[j] - r[j]);
  return (tgt ? -1.0 : 1.0) * sqrt(s);
}

TEST(loss_and_dz_vs_fd) {
  enum { N = 3, K = 7, R = 4 };
  float z[N * K], ref[R * K], dz[N * K], loss[N];
  int64_t y[N] = {2, 0, 3};
  uint32_t s = 7;
  for (int i = 0; i < N * K; i++)
    z[i] = val(&s);
  for (int i = 0; i < R * K; i++)
    ref[i] = val(&s);
  for (int tgt = 0; tgt < 2; tgt++) {
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_OUTPUT_DIST);
    lp.targeted = tgt;
    lp.ref = ref;
    lp.n_ref = R;
    adv_err err;
    CHECK_EQ_INT(adv_loss_eval(lp, z, N, K, y, NULL, loss, dz, &err), 0);
    for (int i = 0; i < N; i++) {
      CHECK_NEAR(loss[i], ref_loss(z + i * K, ref + y[i] * K, K, tgt), 1e-5);
      for (int j = 0; j < K; j++) { /* central differences in double */
        float zp[K], zm[K];
        memcpy(zp, z + i * K, sizeof(zp));
        memcpy(zm, z + i * K, sizeof(zm));
        double h = 1e-3;
        zp[j] += (float)h;
        zm[j] -= (float)h;
        double fd = (ref_loss(zp, ref + y[i] * K, K, tgt) -
                     ref_loss(zm, ref + y[i] * K, K, tgt)) /
                    ((double)zp[j] - zm[j]);
        CHECK_NEAR(dz[i * K + j], fd, 1e-3);
      }
    }
  }
}

TEST(subgradient_at_the_reference) {
  enum { K = 5 };
  float r[K] = {0.5f, -1.f, 2.f, 0.f, 3.f}, dz[K], loss;
  int64_t y = 0;
  adv_loss_params lp = adv_loss_default_params(ADV_LOSS_OUTPUT_DIST);
  lp.ref = r;
  lp.n_ref = 1;
  adv_err err;
  CHECK_EQ_INT(adv_loss_eval(lp, r, 1, K, &y, NULL, &loss, dz, &err), 0);
  double nn = 0;
  for (int j = 0; j < K; j++)
    nn += (double)dz[j] * dz[j];
  CHECK(loss == 0.f);
  CHECK_NEAR(sqrt(nn), 1.0, 1e-6); /* a unit subgradient: PGD can move */
  lp.targeted = 1;
  CHECK_EQ_INT(adv_loss_eval(lp, r, 1, K, &y, NULL, &loss, dz, &err), 0);
  for (int j = 0; j < K; j++)
    CHECK(dz[j] == 0.f); /* the target is reached: a minimum */
}

TEST(bad_arguments) {
  float z[4] = {0}, r[4] = {0};
  int64_t y = 1;
  adv_loss_params lp = adv_loss_default_params(ADV_LOSS_OUTPUT_DIST);
  adv_err err;
  CHECK(adv_loss_eval(lp, z, 1, 4, &y, NULL, NULL, NULL, &err) ==
        ADV_EINVAL); /* no reference */
  lp.ref = r;
  lp.n_ref = 1;
  CHECK(adv_loss_eval(lp, z, 1, 4, &y, NULL, NULL, NULL, &err) ==
        ADV_EINVAL); /* row 1 of 1 */
  CHECK(adv_loss_eval(lp, z, 1, 4, NULL, NULL, NULL, NULL, &err) ==
        ADV_EINVAL); /* no rows */
}

/* L(f(x)) of one sample through session s (batch 1) against ref. */
static double model_loss(adv_session *s, const float *x, const float *ref,
                         int64_t k, int tgt) {
  float *z = malloc(sizeof(float) * (size_t)k);
  adv_err err;
  double l = NAN;
  if (z && adv_session_forward(s, x, z, &err) == 0)
    l = ref_loss(z, ref, k, tgt);
  free(z);
  return l;
}

/* dL/dx through the model vs central differences of the forward pass:
 * per coordinate (per_coord) and along two directions. */
static void check_model(const char *file, int ndim, const int64_t *dims,
                        int per_coord) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/inputs/%s", fixtures, file);
  adv_model *m = NULL;
  adv_err err;
  CHECK_EQ_INT(adv_model_load_file(path, adv_load_default_params(), &m, &err),
               0);
  if (!m)
    return;
  adv_session_params sp = adv_session_default_params();
  sp.grad = 1;
  sp.threads = 1;
  adv_session *s = NULL;
  CHECK_EQ_INT(adv_session_init_shape(m, sp, ndim, dims, 1, &s, &err), 0);
  if (!s) {
    adv_model_free(m);
    return;
  }
  int64_t od[ADV_MAX_DIMS], per = 1, k = 1;
  int nd = adv_session_output_shape(s, 0, od);
  for (int d = 1; d < nd; d++)
    k *= od[d];
  for (int d = 1; d < ndim; d++)
    per *= dims[d];
  float *x = malloc(sizeof(float) * (size_t)per),
        *dx = malloc(sizeof(float) * (size_t)per),
        *z = malloc(sizeof(float) * (size_t)k),
        *ref = malloc(sizeof(float) * (size_t)k),
        *dz = malloc(sizeof(float) * (size_t)k);
  uint32_t st = 11;
  for (int64_t i = 0; i < per; i++)
    x[i] = 0.5f + 0.5f * val(&st);
  for (int tgt = 0; tgt < 2; tgt++) {
    /* untargeted: the reference is the output at a nearby point (so the
     * distance is not 0); targeted: an arbitrary target */
    for (int64_t i = 0; i < per; i++)
      dx[i] = x[i] + 0.05f * val(&st);
    CHECK_EQ_INT(adv_session_forward(s, dx, ref, &err), 0);
    if (tgt)
      for (int64_t j = 0; j < k; j++)
        ref[j] += val(&st);
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_OUTPUT_DIST);
    lp.targeted = tgt;
    lp.ref = ref;
    lp.n_ref = 1;
    int64_t row = 0;
    float loss;
    CHECK_EQ_INT(adv_session_forward(s, x, z, &err), 0);
    CHECK_EQ_INT(adv_loss_eval(lp, z, 1, k, &row, NULL, &loss, dz, &err), 0);
    CHECK_EQ_INT(adv_session_backward_dz(s, dz, dx, NULL, &err), 0);
    CHECK_NEAR(loss, model_loss(s, x, ref, k, tgt), 1e-5);
    double worst = 0, scale = 1e-3;
    for (int64_t i = 0; i < per && per_coord; i++) {
      float keep = x[i];
      float h = 1e-3f;
      x[i] = keep + h;
      double lp_ = model_loss(s, x, ref, k, tgt);
      x[i] = keep - h;
      double lm = model_loss(s, x, ref, k, tgt);
      x[i] = keep;
      double fd = (lp_ - lm) / (2.0 * h);
      double e = fabs(fd - dx[i]);
      worst = e > worst ? e : worst;
      scale = fabs(fd) > scale ? fabs(fd) : scale;
    }
    if (worst > 2e-2 * scale || getenv("DBG"))
      fprintf(stderr, "%s targeted=%d: max |dx - fd| %.3g (scale %.3g)\n", file,
              tgt, worst, scale);
    CHECK(worst <= 2e-2 * scale);
    /* directional derivatives along dx itself and a random direction v:
     * (L(x + h v) - L(x - h v)) / 2h = dx . v (robust to single kinks) */
    for (int dir = 0; dir < 2; dir++) {
      double nv = 0, dot = 0;
      float *v = malloc(sizeof(float) * (size_t)per),
            *xp = malloc(sizeof(float) * (size_t)per);
      for (int64_t i = 0; i < per; i++) {
        v[i] = dir ? val(&st) : dx[i];
        nv += (double)v[i] * v[i];
      }
      nv = sqrt(nv);
      for (int64_t i = 0; i < per; i++) {
        v[i] = (float)(v[i] / nv);
        dot += (double)v[i] * dx[i];
      }
      double h = 1e-3;
      for (int64_t i = 0; i < per; i++)
        xp[i] = (float)(x[i] + h * v[i]);
      double lp2 = model_loss(s, xp, ref, k, tgt);
      for (int64_t i = 0; i < per; i++)
        xp[i] = (float)(x[i] - h * v[i]);
      double fd = (lp2 - model_loss(s, xp, ref, k, tgt)) / (2 * h);
      if (fabs(fd - dot) > 2e-2 * (fabs(dot) + 1e-2) || getenv("DBG"))
        fprintf(stderr, "%s targeted=%d dir %d: fd %.6g, dx.v %.6g\n", file,
                tgt, dir, fd, dot);
      CHECK(fabs(fd - dot) <= 2e-2 * (fabs(dot) + 1e-2));
      free(v);
      free(xp);
    }
  }
  free(x);
  free(dx);
  free(z);
  free(ref);
  free(dz);
  adv_session_free(s);
  adv_model_free(m);
}

TEST(model_gradient_vs_fd) {
  int64_t tab[2] = {1, 8}, audio[3] = {1, 1, 64};
  check_model("tabular_mlp.onnx", 2, tab, 1);
  check_model("audio_conv1d.onnx", 3, audio, 0); /* many ReLU kinks */
}

int main(int argc, char **argv) {
  if (argc > 1)
    fixtures = argv[1];
  RUN(loss_and_dz_vs_fd);
  RUN(subgradient_at_the_reference);
  RUN(bad_arguments);
  RUN(model_gradient_vs_fd);
  return harness_report();
}
