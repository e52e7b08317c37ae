/*
 * cw.c - Carlini-Wagner L2 (Carlini & Wagner, "Towards Evaluating the
 * Robustness of Neural Networks", S&P 2017), following the authors'
 * reference implementation (nn_robust_attacks/l2_attack.py).
 *
 * Change of variables: x'(w) = tanh(w) * h + m with m = (hi+lo)/2,
 * h = (hi-lo)/2, so x' always lies in the box; w starts at
 * atanh((x - m)/h * 0.999999). For a constant c minimize
 *   ||x'(w) - x||_2^2 + c * f6(x'(w))
 *   f6 = max(z_y - max_{j!=y} z_j + kappa, 0)      untargeted
 *   f6 = max(max_{j!=t} z_j - z_t + kappa, 0)      targeted
 * with Adam (lr = step_size, beta1 0.9, beta2 0.999, eps 1e-8) for `steps`
 * iterations. f6 = kappa - L_CW with the engine's CW loss (adv/adv.h), so
 * one adv__eval_grad call gives the logits and d f6/dx' = -dL_CW/dx'.
 *
 * Per sample, c is found by binary search over binary_steps rounds (start
 * initial_const): a round that found an adversarial lowers the upper bound
 * (c <- (lo_c + up_c)/2), otherwise the lower bound is raised and c is
 * multiplied by 10 while no upper bound is known. With binary_steps >= 10
 * the last round uses the upper bound (the reference's "repeat"). Each
 * round restarts from w0 with fresh Adam moments. A sample stops a round
 * early when its objective did not decrease by 0.01% over steps/10
 * iterations (the reference's abort_early, per sample).
 *
 * Success of an iterate uses the logits at that iterate before its update
 * (as the reference): untargeted argmax(z with z_y += kappa) != y,
 * targeted argmax(z with z_t -= kappa) == t. The smallest successful
 * iterate over all rounds is returned. Coordinates of x' within
 * 1e-6*(hi-lo) of x (the 0.999999 shrink of w0, float rounding) are
 * snapped to x before the forward pass, so untouched pixels stay exactly
 * unchanged (the gradient passes straight through the snap).
 *
 * Finally adv__min_settle (deepfool.c) scales a perturbation up by a hair
 * where needed so every success keeps a margin of 1e-4 * (1 + max|z|) and
 * stays adversarial when re-evaluated at another batch size.
 *
 * Batching: all samples still running in a round go through one
 * adv__eval_grad call per iteration (compacted as they stop).
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CW_UPPER_INF 1e10

typedef struct cw_buf {
  int64_t *idx;             /* compact position -> sample */
  int64_t *lab, *tgt;       /* compact labels / targets */
  float *w, *m, *v;         /* tanh-space variable, Adam moments */
  float *xp, *g, *z, *loss; /* iterate, dL_CW/dx', logits, L_CW */
  float *zc;                /* clean logits */
  double *c, *clo, *cup;    /* per-sample constant and its bounds */
  double *best, *prev;      /* best squared L2 (per sample), last objective */
  unsigned char *elig, *round_found, *found;
} cw_buf;

static void cw_free(cw_buf *b) {
  free(b->idx);
  free(b->lab);
  free(b->tgt);
  free(b->w);
  free(b->m);
  free(b->v);
  free(b->xp);
  free(b->g);
  free(b->z);
  free(b->zc);
  free(b->loss);
  free(b->c);
  free(b->clo);
  free(b->cup);
  free(b->best);
  free(b->prev);
  free(b->elig);
  free(b->round_found);
  free(b->found);
}

/* Adversarial test on logits: targeted -> argmax == t, else argmax != y. */
static int cw_is_adv(const float *z, int64_t K, int64_t y, int64_t t,
                     int targeted) {
  int64_t a = adv__argmax(z, K);
  return targeted ? a == t : a != y;
}

/* The reference's success test with confidence kappa: the class is
 * handicapped by kappa before the argmax (ties: lowest index). */
static int cw_success(const float *z, int64_t K, int64_t y, int64_t t,
                      int targeted, float kappa) {
  int64_t c = targeted ? t : y, b = 0;
  for (int64_t j = 0; j < K; j++) {
    double vj = (double)z[j] + (j == c ? (targeted ? -kappa : kappa) : 0.0);
    double vb = (double)z[b] + (b == c ? (targeted ? -kappa : kappa) : 0.0);
    if (vj > vb)
      b = j;
  }
  return targeted ? b == t : b != y;
}

/* w0 = atanh((x - m)/h * 0.999999) for one sample (m, h per value from
 * the clip bounds lo/hi). */
static void cw_to_tanh(const float *x0, float *w, int64_t per, const float *lo,
                       const float *hi) {
  for (int64_t k = 0; k < per; k++) {
    double m = 0.5 * ((double)hi[k] + lo[k]), h = 0.5 * ((double)hi[k] - lo[k]);
    double u = ((double)x0[k] - m) / h * 0.999999;
    u = u > 0.999999 ? 0.999999 : u < -0.999999 ? -0.999999 : u;
    w[k] = (float)atanh(u);
  }
}

int adv__attack_cw(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                   const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  int64_t per = ev->per, K = ev->classes;
  int targeted = p->targeted && target;
  int bsteps = p->binary_steps > 0 ? p->binary_steps : 9;
  int steps = p->steps > 0 ? p->steps : 100;
  double lr = p->step_size > 0 ? p->step_size : 0.01;
  double c0 = p->initial_const > 0 ? p->initial_const : 1e-3;
  float kappa = p->kappa > 0 ? p->kappa : 0.f;
  const float *lo = ev->lo, *hi = ev->hi; /* per value: mid, half below */
  int check_every = steps / 10 > 0 ? steps / 10 : 1;
  const double b1 = 0.9, b2 = 0.999, aeps = 1e-8;
  adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CW);
  lp.targeted = targeted;
  lp.kappa = kappa;
  cw_buf b;
  memset(&b, 0, sizeof(b));
  size_t xs = sizeof(float) * (size_t)(n * per),
         ds = sizeof(double) * (size_t)n;
  b.idx = malloc(sizeof(int64_t) * (size_t)n);
  b.lab = malloc(sizeof(int64_t) * (size_t)n);
  b.tgt = malloc(sizeof(int64_t) * (size_t)n);
  b.w = malloc(xs);
  b.m = malloc(xs);
  b.v = malloc(xs);
  b.xp = malloc(xs);
  b.g = malloc(xs);
  b.z = malloc(sizeof(float) * (size_t)(n * K));
  b.zc = malloc(sizeof(float) * (size_t)(n * K));
  b.loss = malloc(sizeof(float) * (size_t)n);
  b.c = malloc(ds);
  b.clo = malloc(ds);
  b.cup = malloc(ds);
  b.best = malloc(ds);
  b.prev = malloc(ds);
  b.elig = calloc((size_t)n, 1);
  b.round_found = calloc((size_t)n, 1);
  b.found = calloc((size_t)n, 1);
  int rc = ADV_OK;
  if (!b.idx || !b.lab || !b.tgt || !b.w || !b.m || !b.v || !b.xp || !b.g ||
      !b.z || !b.zc || !b.loss || !b.c || !b.clo || !b.cup || !b.best ||
      !b.prev || !b.elig || !b.round_found || !b.found) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  /* clean pass: samples already adversarial keep x_adv = x */
  if ((rc = adv__eval_forward(ev, x, n, b.zc)))
    goto out;
  for (int64_t i = 0; i < n; i++) {
    b.elig[i] =
        !cw_is_adv(b.zc + i * K, K, y[i], targeted ? target[i] : -1, targeted);
    b.c[i] = c0;
    b.clo[i] = 0;
    b.cup[i] = CW_UPPER_INF;
    b.best[i] = INFINITY;
  }
  for (int bs = 0; bs < bsteps; bs++) {
    /* gather every eligible sample, restart from w0 with fresh moments */
    int64_t na = 0;
    for (int64_t i = 0; i < n; i++) {
      if (!b.elig[i])
        continue;
      if (bsteps >= 10 && bs == bsteps - 1 && b.cup[i] < 1e9)
        b.c[i] = b.cup[i];
      b.round_found[i] = 0;
      b.prev[i] = INFINITY;
      b.idx[na] = i;
      b.lab[na] = y[i];
      b.tgt[na] = targeted ? target[i] : 0;
      cw_to_tanh(x + i * per, b.w + na * per, per, lo, hi);
      na++;
    }
    memset(b.m, 0, sizeof(float) * (size_t)(na * per));
    memset(b.v, 0, sizeof(float) * (size_t)(na * per));
    for (int it = 0; it < steps && na > 0; it++) {
      if (adv__eval_aborted(
              ev, "cw", ((double)bs * steps + it) / ((double)bsteps * steps))) {
        rc = adv__error(ev->err, ADV_EABORTED, "aborted");
        goto out;
      }
      for (int64_t j = 0; j < na; j++) {
        const float *wj = b.w + j * per, *x0 = x + b.idx[j] * per;
        float *xj = b.xp + j * per;
        for (int64_t k = 0; k < per; k++) {
          double half = 0.5 * ((double)hi[k] - lo[k]);
          double v = tanh((double)wj[k]) * half + 0.5 * ((double)hi[k] + lo[k]);
          v = v < lo[k] ? lo[k] : v > hi[k] ? hi[k] : v;
          xj[k] = fabs(v - x0[k]) <= 2e-6 * half ? x0[k] : (float)v;
        }
      }
      if ((rc = adv__eval_grad(ev, b.xp, na, lp, b.lab, targeted ? b.tgt : NULL,
                               b.z, b.loss, b.g)))
        goto out;
      double bc1 = 1.0 - pow(b1, it + 1), bc2 = 1.0 - pow(b2, it + 1);
      int64_t wpos = 0;
      for (int64_t j = 0; j < na; j++) {
        int64_t i = b.idx[j];
        const float *x0 = x + i * per, *xj = b.xp + j * per,
                    *gj = b.g + j * per;
        double l2 = 0;
        for (int64_t k = 0; k < per; k++) {
          double d = (double)xj[k] - x0[k];
          l2 += d * d;
        }
        double f6 = (double)kappa - b.loss[j];
        f6 = f6 > 0 ? f6 : 0;
        double obj = l2 + b.c[i] * f6;
        if (cw_success(b.z + j * K, K, b.lab[j], b.tgt[j], targeted, kappa)) {
          b.round_found[i] = 1;
          if (l2 < b.best[i]) {
            b.best[i] = l2;
            memcpy(x_adv + i * per, xj, sizeof(float) * (size_t)per);
            b.found[i] = 1;
          }
        }
        /* per-sample abort_early */
        if (it % check_every == 0) {
          if (obj > b.prev[i] * 0.9999)
            continue; /* drops out of this round */
          b.prev[i] = obj;
        }
        /* Adam step on w: d obj/dx' = 2 (x' - x) - c dL_CW/dx' */
        float *wj = b.w + j * per, *mj = b.m + j * per, *vj = b.v + j * per;
        for (int64_t k = 0; k < per; k++) {
          double th = tanh((double)wj[k]);
          double gx = 2.0 * ((double)xj[k] - x0[k]) - b.c[i] * gj[k];
          double gw = gx * 0.5 * ((double)hi[k] - lo[k]) * (1.0 - th * th);
          double mk = b1 * mj[k] + (1 - b1) * gw,
                 vk = b2 * vj[k] + (1 - b2) * gw * gw;
          mj[k] = (float)mk;
          vj[k] = (float)vk;
          wj[k] = (float)(wj[k] - lr * (mk / bc1) / (sqrt(vk / bc2) + aeps));
        }
        if (wpos != j) {
          b.idx[wpos] = i;
          b.lab[wpos] = b.lab[j];
          b.tgt[wpos] = b.tgt[j];
          memmove(b.w + wpos * per, wj, sizeof(float) * (size_t)per);
          memmove(b.m + wpos * per, mj, sizeof(float) * (size_t)per);
          memmove(b.v + wpos * per, vj, sizeof(float) * (size_t)per);
        }
        wpos++;
      }
      na = wpos;
    }
    /* binary search on c */
    for (int64_t i = 0; i < n; i++) {
      if (!b.elig[i])
        continue;
      if (b.round_found[i]) {
        b.cup[i] = b.cup[i] < b.c[i] ? b.cup[i] : b.c[i];
        if (b.cup[i] < 1e9)
          b.c[i] = 0.5 * (b.clo[i] + b.cup[i]);
      } else {
        b.clo[i] = b.clo[i] > b.c[i] ? b.clo[i] : b.c[i];
        b.c[i] = b.cup[i] < 1e9 ? 0.5 * (b.clo[i] + b.cup[i]) : b.c[i] * 10;
      }
    }
  }
  rc = adv__min_settle(ev, x, n, y, target, targeted, b.zc, 0.5, x_adv, b.found,
                       b.z);
out:
  cw_free(&b);
  return rc;
}
