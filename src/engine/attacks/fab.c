/*
 * fab.c - FAB, the Fast Adaptive Boundary attack (Croce & Hein, "Minimally
 * distorted adversarial examples with a fast adaptive boundary attack",
 * ICML 2020), L-inf and L2, untargeted and targeted (FAB-T as used in
 * AutoAttack: one run per target among the n_target_classes classes with
 * the largest clean logits after the true one).
 *
 * One iteration at the current point x1 (x0 the clean point):
 *  1. linearize the decision boundary: for each class pair (k, y)
 *     f_k = z_k - z_y, w_k = grad f_k at x1; untargeted takes the closest
 *     linearized boundary k* = argmin_k |f_k| / ||w_k||_q (q dual to p),
 *     FAB-T the pair (t, y), an explicit target the pair (t, c) with c the
 *     top class other than t (margin and gradient from the CW loss);
 *  2. project x1 and x0 onto the hyperplane {u : f + w.(u - x1) = 0}
 *     intersected with the box [clip_min, clip_max] (exact minimal-norm
 *     projections, fab_project): x1 + d1, x0 + d2;
 *  3. biased step: alpha = min(max(||d1|| / (||d1|| + ||d2||), 0), alpha_max)
 *     x1 <- clip((1 - alpha)(x1 + eta d1) + alpha (x0 + eta d2));
 *  4. if x1 is adversarial: keep it when its norm is the smallest so far,
 *     then step back x1 <- x0 + beta (x1 - x0).
 * Restarts after the first start from x0 + a random point of norm
 * r/2 (uniform in the cube, scaled to L-inf norm r/2, for L-inf;
 * Gaussian direction for L2; each sample and run draws from its own
 * stream seeded by (seed, sample index, run)) with r the best
 * norm found so far, capped by eps when eps > 0 (0.3 resp. 1.0 times the
 * box width when neither exists), as in the paper. With eps > 0 a sample
 * whose best norm is already <= eps is not attacked by later restarts or
 * targets (AutoAttack's early stop); with eps = 0 every run attacks every
 * sample and the smallest adversarial wins.
 * Final search (the paper / reference code's linear approximation
 * search): on the segment from x0 (not adversarial) to the best point
 * (adversarial) a few regula-falsi steps (Illinois variant) on the
 * classification margin move the adversarial endpoint towards the
 * boundary. The root sought is margin = 1e-4 * (1 + max|z|) rather than 0,
 * and adv__min_settle (deepfool.c) runs before it (to give every sample a
 * bracket) and after it, so every returned adversarial keeps that margin
 * and stays adversarial when re-evaluated at another batch size.
 *
 * Batching: every engine call covers all samples of the current run
 * (compacted). Untargeted: K-1 backwards per iteration, one per class,
 * with upstream dz = e_k - e_y (adv__eval_grad_dz); targeted: one. Plus
 * one forward to test the new iterate.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define FAB_FINAL_SEARCH_STEPS 10

typedef enum { FAB_UNTARGETED = 0, FAB_AUTO_T, FAB_TARGET } fab_mode;

typedef struct fab_key {
  double key, wt; /* breakpoint and weight of one coordinate */
} fab_key;

typedef struct fab_buf {
  int64_t *idx, *lab, *tgt; /* compact position -> sample, label, target */
  float *x1;                /* current iterates (compact) */
  float *g, *gb;            /* gradient of one class pair / of the chosen one */
  float *zc, *zt, *dz;      /* clean logits (n), logits of a call, upstream */
  float *loss;
  float *d1, *d2;            /* projection results, per thread (T x per) */
  double *fb, *db;           /* f and distance of the chosen pair */
  double *best;              /* best norm per sample */
  double *s1, *s2, *m1, *m2; /* final search brackets and margins */
  int *side;
  unsigned char *elig, *found;
  fab_key *keys; /* breakpoints, per thread (T x per) */
  int T;         /* threads of the projection loop */
} fab_buf;

static void fab_free(fab_buf *b) {
  free(b->idx);
  free(b->lab);
  free(b->tgt);
  free(b->x1);
  free(b->g);
  free(b->gb);
  free(b->zc);
  free(b->zt);
  free(b->dz);
  free(b->loss);
  free(b->d1);
  free(b->d2);
  free(b->fb);
  free(b->db);
  free(b->best);
  free(b->s1);
  free(b->s2);
  free(b->m1);
  free(b->m2);
  free(b->side);
  free(b->elig);
  free(b->found);
  free(b->keys);
}

/* ||a - b|| in the attack's norm (b may be NULL: ||a||). */
static double fab_norm(adv_norm norm, const float *a, const float *b,
                       int64_t per) {
  double s = 0;
  for (int64_t k = 0; k < per; k++) {
    double d = b ? (double)a[k] - b[k] : a[k];
    if (norm == ADV_NORM_L2)
      s += d * d;
    else
      s = fabs(d) > s ? fabs(d) : s;
  }
  return norm == ADV_NORM_L2 ? sqrt(s) : s;
}

/* Dual norm of a gradient: ||g||_1 for L-inf, ||g||_2 for L2. */
static double fab_dual(adv_norm norm, const float *g, int64_t per) {
  double s = 0;
  for (int64_t k = 0; k < per; k++)
    s += norm == ADV_NORM_L2 ? (double)g[k] * g[k] : fabs((double)g[k]);
  return norm == ADV_NORM_L2 ? sqrt(s) : s;
}

/*
 * Minimal-norm step onto a hyperplane inside the box:
 *   d = argmin ||d||_p  s.t.  w.d = r,  lo <= t + d <= hi   (t in the box).
 * After flipping the sign of (w, r) so that r >= 0, the optimum moves each
 * coordinate in the direction sign(w_k) until it hits the box:
 *   L2:    d_k = clip(lambda w_k, lo - t_k, hi - t_k), lambda >= 0 (KKT);
 *   L-inf: d_k = sign(w_k) min(delta, cap_k), cap_k the room towards the
 *          box in that direction.
 * w.d(lambda) is piecewise linear and non-decreasing with breakpoints where
 * a coordinate saturates (lambda_k = cap_k / |w_k| resp. delta_k = cap_k):
 * fab_lambda finds the exact lambda in expected linear time (sorting the
 * breakpoints and walking them gives the same value, at n log n).
 * If even the fully saturated point does not reach the hyperplane, that
 * point (the box corner closest to it) is returned.
 */
/*
 * The lambda >= 0 with f(lambda) = sum_k wt_k * min(key_k, lambda) = r
 * (f continuous, piecewise linear, non-decreasing; r > 0), or INFINITY
 * when even f(inf) < r. Quickselect over the breakpoints: a pivot p splits
 * the candidates into key < p, = p, > p; f(p) >= r means lambda <= p (the
 * = and > ones stay unsaturated), else lambda > p (the < and = ones
 * saturate). Expected O(n); permutes k. Pivots come from a fixed LCG, so
 * the result is deterministic.
 */
static double fab_lambda(fab_key *k, int64_t n, double r) {
  double S = 0, W = 0; /* sum key*wt of saturated, sum wt of unsaturated */
  int64_t lo = 0, hi = n;
  uint64_t rs = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
  while (lo < hi) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    double p = k[lo + (int64_t)((rs >> 33) % (uint64_t)(hi - lo))].key;
    int64_t a = lo, i = lo, b = hi;
    while (i < b) { /* [lo,a) < p, [a,i) == p, [b,hi) > p */
      if (k[i].key < p) {
        fab_key t = k[a];
        k[a++] = k[i];
        k[i++] = t;
      } else if (k[i].key > p) {
        fab_key t = k[--b];
        k[b] = k[i];
        k[i] = t;
      } else {
        i++;
      }
    }
    double sl = 0, we = 0, wg = 0;
    for (int64_t j = lo; j < a; j++)
      sl += k[j].key * k[j].wt;
    for (int64_t j = a; j < b; j++)
      we += k[j].wt;
    for (int64_t j = b; j < hi; j++)
      wg += k[j].wt;
    if (S + sl + p * (we + wg + W) >= r) {
      W += we + wg; /* lambda <= p */
      hi = a;
    } else {
      S += sl + p * we; /* lambda > p */
      lo = b;
    }
  }
  return W > 0 ? (r - S) / W : INFINITY;
}

static void fab_project(adv_norm norm, const float *t, const float *w, double r,
                        int64_t per, const float *lo, const float *hi, float *d,
                        fab_key *keys) {
  double sg = r >= 0 ? 1.0 : -1.0;
  r = fabs(r);
  if (!(r > 0)) {
    memset(d, 0, sizeof(float) * (size_t)per);
    return;
  }
  int64_t nk = 0;
  for (int64_t k = 0; k < per; k++) {
    double wk = sg * w[k];
    if (wk == 0)
      continue;
    double cap = wk > 0 ? (double)hi[k] - t[k] : (double)t[k] - lo[k];
    if (cap < 0)
      cap = 0;
    double aw = fabs(wk);
    keys[nk].key = norm == ADV_NORM_L2 ? cap / aw : cap;
    keys[nk].wt = norm == ADV_NORM_L2 ? aw * aw : aw;
    nk++;
  }
  double lam = fab_lambda(keys, nk, r);
  for (int64_t k = 0; k < per; k++) {
    double wk = sg * w[k], v;
    if (wk == 0) {
      d[k] = 0;
      continue;
    }
    if (norm == ADV_NORM_L2) {
      v = lam * wk;
      double l = (double)lo[k] - t[k], u = (double)hi[k] - t[k];
      v = v < l ? l : v > u ? u : v;
    } else {
      double cap = wk > 0 ? (double)hi[k] - t[k] : (double)t[k] - lo[k];
      cap = cap < 0 ? 0 : cap;
      v = (wk > 0 ? 1.0 : -1.0) * (lam < cap ? lam : cap);
    }
    d[k] = (float)v;
  }
}

/* Adversarial test of the mode: an explicit target must be reached,
 * otherwise (untargeted, FAB-T as in AutoAttack) any wrong label counts. */
static int fab_is_adv(const float *z, int64_t K, int64_t y, int64_t t,
                      fab_mode mode) {
  int64_t a = adv__argmax(z, K);
  return mode == FAB_TARGET ? a == t : a != y;
}

/* Shared with the other minimal-norm attacks, defined in deepfool.c. */

/* Margin minus the tolerance of adv__min_tol: >= 0 for the adversarials
 * the final search accepts. */
static double fab_excess(const float *z, int64_t K, int64_t y, int64_t t,
                         fab_mode mode) {
  return adv__min_margin(z, K, y, t, mode == FAB_TARGET) - adv__min_tol(z, K);
}

/* The class with the r-th largest logit (r = 1 is the argmax; ties: lower
 * index first). */
static int64_t fab_rank_class(const float *z, int64_t K, int r) {
  int64_t cls = -1;
  for (int q = 0; q < r; q++) {
    int64_t b = -1;
    for (int64_t j = 0; j < K; j++) {
      /* skip classes already taken: those ranked above the previous pick */
      if (cls >= 0 && (z[j] > z[cls] || (z[j] == z[cls] && j <= cls)))
        continue;
      if (b < 0 || z[j] > z[b])
        b = j;
    }
    cls = b;
  }
  return cls;
}

/* Random restart point: x0 + rad/2 * u/||u||, clipped. */
static void fab_random_start(adv_rng *rng, adv_norm norm, const float *x0,
                             float *x1, int64_t per, double rad,
                             const float *lo, const float *hi) {
  double s = 0;
  for (int64_t k = 0; k < per; k++) {
    double u = norm == ADV_NORM_LINF ? 2 * adv__rng_uniform(rng) - 1
                                     : adv__rng_normal(rng);
    x1[k] = (float)u;
    s = norm == ADV_NORM_LINF ? (fabs(u) > s ? fabs(u) : s) : s + u * u;
  }
  if (norm == ADV_NORM_L2)
    s = sqrt(s);
  double f = s > 0 ? 0.5 * rad / s : 0;
  for (int64_t k = 0; k < per; k++) {
    double v = x0[k] + f * x1[k];
    x1[k] = (float)(v < lo[k] ? lo[k] : v > hi[k] ? hi[k] : v);
  }
}

/*
 * Linear approximation search on [x0, x_adv] for the samples in idx
 * (compact, na of them): regula falsi on the margin with the Illinois
 * modification, FAB_FINAL_SEARCH_STEPS forwards. Every adversarial point
 * evaluated closer to x0 replaces x_adv (the exact bytes evaluated).
 */
static int fab_final_search(adv_eval *ev, fab_buf *b, const float *x,
                            int64_t na, fab_mode mode, float *x_adv) {
  int64_t per = ev->per, K = ev->classes;
  float *delta = b->g, *x3 = b->x1;
  int rc;
  for (int64_t j = 0; j < na; j++) {
    int64_t i = b->idx[j];
    for (int64_t k = 0; k < per; k++)
      delta[j * per + k] = x_adv[i * per + k] - x[i * per + k];
    memcpy(x3 + j * per, x_adv + i * per, sizeof(float) * (size_t)per);
  }
  /* margins at the endpoints: zc (clean, per sample) and one forward */
  if ((rc = adv__eval_forward(ev, x3, na, b->zt)))
    return rc;
  /* keep the samples with a bracket (x0 short of the margin, x_adv not) */
  int64_t nb = 0;
  for (int64_t j = 0; j < na; j++) {
    int64_t i = b->idx[j];
    double m1 = fab_excess(b->zc + i * K, K, b->lab[j], b->tgt[j], mode);
    double m2 = fab_excess(b->zt + j * K, K, b->lab[j], b->tgt[j], mode);
    if (!(m1 < 0 && m2 >= 0))
      continue;
    b->idx[nb] = i;
    b->lab[nb] = b->lab[j];
    b->tgt[nb] = b->tgt[j];
    b->s1[nb] = 0;
    b->s2[nb] = 1;
    b->m1[nb] = m1;
    b->m2[nb] = m2;
    b->side[nb] = 0;
    if (nb != j)
      memmove(delta + nb * per, delta + j * per, sizeof(float) * (size_t)per);
    nb++;
  }
  na = nb;
  for (int it = 0; it < FAB_FINAL_SEARCH_STEPS && na > 0; it++) {
    for (int64_t j = 0; j < na; j++) {
      double s1 = b->s1[j], s2 = b->s2[j], m1 = b->m1[j], m2 = b->m2[j];
      double s =
          m1 < 0 && m2 > 0 ? s1 + (s2 - s1) * m1 / (m1 - m2) : 0.5 * (s1 + s2);
      if (!(s > s1 && s < s2))
        s = 0.5 * (s1 + s2);
      b->db[j] = s;
      const float *x0 = x + b->idx[j] * per, *dj = delta + j * per;
      float *xj = x3 + j * per;
      for (int64_t k = 0; k < per; k++) {
        double v = x0[k] + s * dj[k];
        xj[k] = (float)(v < ev->lo[k]   ? ev->lo[k]
                        : v > ev->hi[k] ? ev->hi[k]
                                        : v);
      }
    }
    if ((rc = adv__eval_forward(ev, x3, na, b->zt)))
      return rc;
    for (int64_t j = 0; j < na; j++) {
      int64_t i = b->idx[j];
      double m3 = fab_excess(b->zt + j * K, K, b->lab[j], b->tgt[j], mode);
      if (m3 >= 0) {
        b->s2[j] = b->db[j];
        b->m2[j] = m3;
        if (b->side[j] == 2)
          b->m1[j] *= 0.5;
        b->side[j] = 2;
        memcpy(x_adv + i * per, x3 + j * per, sizeof(float) * (size_t)per);
      } else {
        b->s1[j] = b->db[j];
        b->m1[j] = m3;
        if (b->side[j] == 1)
          b->m2[j] *= 0.5;
        b->side[j] = 1;
      }
    }
  }
  return ADV_OK;
}

int adv__attack_fab(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  int64_t per = ev->per, K = ev->classes;
  adv_norm norm = p->norm;
  fab_mode mode = p->targeted && target ? FAB_TARGET
                  : (p->kind == ADV_ATTACK_FAB_T || p->targeted)
                      ? FAB_AUTO_T
                      : FAB_UNTARGETED;
  if (!(p->alpha_max >= 0 && p->alpha_max <= 1) || !(p->eta >= 0) ||
      !isfinite(p->eta) || !(p->beta >= 0 && p->beta <= 1))
    return adv__error(
        ev->err, ADV_EINVAL,
        "FAB needs 0 <= alpha_max <= 1, eta >= 0, 0 <= beta <= 1");
  int steps = p->steps > 0 ? p->steps : 100;
  int restarts = p->restarts > 0 ? p->restarts : 1;
  double alpha_max = p->alpha_max, eta = p->eta > 0 ? p->eta : 1.05;
  double beta = p->beta > 0 ? p->beta : 0.9;
  int ntc = 1;
  if (mode == FAB_AUTO_T) {
    ntc = p->n_target_classes > 0 ? p->n_target_classes : 9;
    ntc = ntc < K - 1 ? ntc : (int)(K - 1);
  }
  const float *lo = ev->lo, *hi = ev->hi; /* per value */
  double rad0 =
      (norm == ADV_NORM_LINF ? 0.3 : 1.0) * ((double)p->clip_max - p->clip_min);
  fab_buf b;
  memset(&b, 0, sizeof(b));
  size_t xs = sizeof(float) * (size_t)(n * per),
         zs = sizeof(float) * (size_t)(n * K);
  size_t ds = sizeof(double) * (size_t)n;
  b.idx = malloc(sizeof(int64_t) * (size_t)n);
  b.lab = malloc(sizeof(int64_t) * (size_t)n);
  b.tgt = malloc(sizeof(int64_t) * (size_t)n);
  b.x1 = malloc(xs);
  b.g = malloc(xs);
  b.gb = malloc(xs);
  b.zc = malloc(zs);
  b.zt = malloc(zs);
  b.dz = malloc(zs);
  b.loss = malloc(sizeof(float) * (size_t)n);
  b.T = ev->p.threads > 1 ? (ev->p.threads < 64 ? ev->p.threads : 64) : 1;
  b.d1 = malloc(sizeof(float) * (size_t)per * (size_t)b.T);
  b.d2 = malloc(sizeof(float) * (size_t)per * (size_t)b.T);
  b.fb = malloc(ds);
  b.db = malloc(ds);
  b.best = malloc(ds);
  b.s1 = malloc(ds);
  b.s2 = malloc(ds);
  b.m1 = malloc(ds);
  b.m2 = malloc(ds);
  b.side = malloc(sizeof(int) * (size_t)n);
  b.elig = calloc((size_t)n, 1);
  b.found = calloc((size_t)n, 1);
  b.keys = malloc(sizeof(fab_key) * (size_t)per * (size_t)b.T);
  int rc = ADV_OK;
  if (!b.idx || !b.lab || !b.tgt || !b.x1 || !b.g || !b.gb || !b.zc || !b.zt ||
      !b.dz || !b.loss || !b.d1 || !b.d2 || !b.fb || !b.db || !b.best ||
      !b.s1 || !b.s2 || !b.m1 || !b.m2 || !b.side || !b.elig || !b.found ||
      !b.keys) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  /* clean pass: attack correctly classified points (explicit target: the
   * points not already predicted as the target) */
  if ((rc = adv__eval_forward(ev, x, n, b.zc)))
    goto out;
  for (int64_t i = 0; i < n; i++) {
    int64_t a = adv__argmax(b.zc + i * K, K);
    b.elig[i] = mode == FAB_TARGET ? a != target[i] : a == y[i];
    b.best[i] = INFINITY;
  }
  adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CW);
  lp.targeted = 1;
  lp.kappa = INFINITY;
  int64_t nruns = (int64_t)ntc * restarts, run = 0;
  for (int tc = 0; tc < ntc; tc++) {
    for (int r = 0; r < restarts; r++, run++) {
      int64_t na = 0;
      for (int64_t i = 0; i < n; i++) {
        if (!b.elig[i] || (p->eps > 0 && b.best[i] <= p->eps))
          continue;
        b.idx[na] = i;
        b.lab[na] = y[i];
        b.tgt[na] = mode == FAB_TARGET ? target[i]
                    : mode == FAB_AUTO_T
                        ? fab_rank_class(b.zc + i * K, K, tc + 2)
                        : 0;
        if (r == 0) {
          memcpy(b.x1 + na * per, x + i * per, sizeof(float) * (size_t)per);
        } else {
          double rad = b.best[i];
          if (p->eps > 0 && p->eps < rad)
            rad = p->eps;
          if (!isfinite(rad))
            rad = rad0;
          /* each (sample, run) has its own stream */
          adv_rng rng;
          adv__rng_seed(
              &rng, p->seed ^ ((uint64_t)(run + 1) * 0x9e3779b97f4a7c15ull) ^
                        (adv__sample_id(p, i) * 0xd1b54a32d192ed03ull));
          fab_random_start(&rng, norm, x + i * per, b.x1 + na * per, per, rad,
                           lo, hi);
        }
        na++;
      }
      for (int it = 0; it < steps && na > 0; it++) {
        if (adv__eval_aborted(ev, adv_attack_name(p->kind),
                              ((double)run * steps + it) /
                                  ((double)nruns * steps))) {
          rc = adv__error(ev->err, ADV_EABORTED, "aborted");
          goto out;
        }
        /* 1. the linearized boundary: f and w = grad f per sample */
        if (mode == FAB_TARGET) {
          if ((rc = adv__eval_grad(ev, b.x1, na, lp, b.lab, b.tgt, b.zt, b.loss,
                                   b.gb)))
            goto out;
          for (int64_t j = 0; j < na; j++)
            b.fb[j] = b.loss[j];
        } else {
          int64_t npair = mode == FAB_UNTARGETED ? K - 1 : 1;
          for (int64_t j = 0; j < na; j++)
            b.db[j] = INFINITY;
          for (int64_t c = 0; c < npair; c++) {
            memset(b.dz, 0, sizeof(float) * (size_t)(na * K));
            for (int64_t j = 0; j < na; j++) {
              int64_t k =
                  mode == FAB_AUTO_T ? b.tgt[j] : (c < b.lab[j] ? c : c + 1);
              b.dz[j * K + k] = 1.f;
              b.dz[j * K + b.lab[j]] = -1.f;
            }
            float *gdst = npair == 1 ? b.gb : b.g;
            if ((rc = adv__eval_grad_dz(ev, b.x1, na, b.dz, b.zt, gdst)))
              goto out;
            for (int64_t j = 0; j < na; j++) {
              int64_t k =
                  mode == FAB_AUTO_T ? b.tgt[j] : (c < b.lab[j] ? c : c + 1);
              double f = (double)b.zt[j * K + k] - b.zt[j * K + b.lab[j]];
              double d =
                  npair == 1
                      ? 0
                      : fabs(f) / (fab_dual(norm, gdst + j * per, per) + 1e-12);
              if (npair == 1 || d < b.db[j]) {
                b.db[j] = d;
                b.fb[j] = f;
                if (gdst != b.gb)
                  memcpy(b.gb + j * per, gdst + j * per,
                         sizeof(float) * (size_t)per);
              }
            }
          }
        }
        /* 2-3. project x1 and x0, biased step with overshoot (samples are
         * independent: split over the threads, each with its own buffers) */
#pragma omp parallel for num_threads(b.T)                                      \
    schedule(dynamic, 1) if (b.T > 1 && na > 1)
        for (int64_t j = 0; j < na; j++) {
          int th = omp_get_thread_num();
          float *d1 = b.d1 + (size_t)th * per, *d2 = b.d2 + (size_t)th * per;
          const float *x0 = x + b.idx[j] * per, *w = b.gb + j * per;
          float *x1 = b.x1 + j * per;
          double f = b.fb[j], wd = 0;
          for (int64_t k = 0; k < per; k++)
            wd += (double)w[k] * ((double)x1[k] - x0[k]);
          fab_project(norm, x1, w, -f, per, lo, hi, d1,
                      b.keys + (size_t)th * per);
          fab_project(norm, x0, w, wd - f, per, lo, hi, d2,
                      b.keys + (size_t)th * per);
          double a1 = fab_norm(norm, d1, NULL, per),
                 a2 = fab_norm(norm, d2, NULL, per);
          a1 = a1 > 1e-8 ? a1 : 1e-8;
          a2 = a2 > 1e-8 ? a2 : 1e-8;
          double al = a1 / (a1 + a2);
          al = al < 0 ? 0 : al > alpha_max ? alpha_max : al;
          for (int64_t k = 0; k < per; k++) {
            double v = (1 - al) * ((double)x1[k] + eta * d1[k]) +
                       al * ((double)x0[k] + eta * d2[k]);
            x1[k] = (float)(v < lo[k] ? lo[k] : v > hi[k] ? hi[k] : v);
          }
        }
        /* 4. test, keep the smallest adversarial, step back towards x0 */
        if ((rc = adv__eval_forward(ev, b.x1, na, b.zt)))
          goto out;
        for (int64_t j = 0; j < na; j++) {
          int64_t i = b.idx[j];
          if (!fab_is_adv(b.zt + j * K, K, b.lab[j], b.tgt[j], mode))
            continue;
          const float *x0 = x + i * per;
          float *x1 = b.x1 + j * per;
          double nr = fab_norm(norm, x1, x0, per);
          if (nr < b.best[i]) {
            b.best[i] = nr;
            b.found[i] = 1;
            memcpy(x_adv + i * per, x1, sizeof(float) * (size_t)per);
          }
          for (int64_t k = 0; k < per; k++)
            x1[k] = (float)(x0[k] + beta * ((double)x1[k] - x0[k]));
        }
      }
    }
  }
  /* settle, final search on every sample with an adversarial, settle */
  if ((rc = adv__min_settle(ev, x, n, y, target, mode == FAB_TARGET, b.zc, 1.0,
                            x_adv, b.found, b.zt)))
    goto out;
  {
    int64_t na = 0;
    for (int64_t i = 0; i < n; i++) {
      if (!b.found[i])
        continue;
      b.idx[na] = i;
      b.lab[na] = y[i];
      b.tgt[na] = mode == FAB_TARGET ? target[i] : 0;
      na++;
    }
    if (na > 0 && (rc = fab_final_search(ev, &b, x, na, mode, x_adv)))
      goto out;
  }
  rc = adv__min_settle(ev, x, n, y, target, mode == FAB_TARGET, b.zc, 0.5,
                       x_adv, b.found, b.zt);
out:
  fab_free(&b);
  return rc;
}
