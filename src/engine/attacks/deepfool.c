/*
 * deepfool.c - DeepFool (Moosavi-Dezfooli, Fawzi, Frossard, CVPR 2016),
 * multi-class version, L2 and L-inf.
 *
 * For a point x_i classified as l (the true label) and the candidate
 * classes k (the `candidates` classes with the largest clean logits,
 * l included), linearize f_k(x) = z_k(x) - z_l(x) around x_i with
 * w_k = grad f_k(x_i) and step to the closest linearized boundary:
 *   k* = argmin_k |f_k| / ||w_k||_q     (q the dual norm: 2 for L2, 1 for
 *                                        L-inf)
 *   L2:    r_i = (|f_k*| + 1e-4) / ||w_k*||_2^2 * w_k*
 *   L-inf: r_i = (|f_k*| + 1e-4) / ||w_k*||_1   * sign(w_k*)
 *   r_tot += r_i,  x_{i+1} = clip(x_0 + (1 + overshoot) * r_tot)
 * until the label changes or `steps` iterations were made (the 1e-4 and
 * applying the overshoot to r_tot at every iteration are as in the
 * authors' reference code). r_tot is kept inside the box (r_tot <-
 * clip(x_0 + r_tot) - x_0) so clipped coordinates do not accumulate.
 *
 * Targeted (p.targeted with target[]): the only hyperplane is
 * z_t - z_c = 0 with c the current top class other than t.
 *
 * Batching: every engine call covers all samples still active (compacted);
 * one backward per candidate class per iteration with the upstream logit
 * gradient dz = e_k - e_l (adv__eval_grad_dz), plus one forward to test the
 * new iterate. A sample leaves the active set once it is adversarial.
 * Samples never fooled keep x_adv = x.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct df_buf {
  int64_t *idx;  /* compact position -> sample */
  int64_t *cand; /* n x C candidate classes, cand[0] = label */
  float *xc;     /* current iterate (compact) */
  float *rt;     /* accumulated perturbation r_tot (compact) */
  float *g, *gb; /* gradient of the current / best candidate */
  float *z, *zt; /* logits at xc, logits returned by the grad call */
  float *dz;     /* upstream logit gradients */
  double *fb, *db; /* f and distance of the best candidate */
  unsigned char *found;
} df_buf;

static void df_free(df_buf *b) {
  free(b->idx);
  free(b->cand);
  free(b->xc);
  free(b->rt);
  free(b->g);
  free(b->gb);
  free(b->z);
  free(b->zt);
  free(b->dz);
  free(b->fb);
  free(b->db);
  free(b->found);
}

/* Index of the largest z_j with j != skip (lowest index on ties). */
static int64_t top_except(const float *z, int64_t K, int64_t skip) {
  int64_t b = -1;
  for (int64_t j = 0; j < K; j++)
    if (j != skip && (b < 0 || z[j] > z[b]))
      b = j;
  return b;
}

/* Adversarial test on logits: targeted -> argmax == t, else argmax != y. */
static int df_is_adv(const float *z, int64_t K, int64_t y, int64_t t,
                     int targeted) {
  int64_t a = adv__argmax(z, K);
  return targeted ? a == t : a != y;
}

/* Fills cand[0..C-1] with the label first, then the C-1 other classes of
 * largest logit (ties: lower index first). */
static void df_candidates(const float *z, int64_t K, int64_t label, int64_t C,
                          int64_t *cand) {
  cand[0] = label;
  for (int64_t c = 1; c < C; c++) {
    int64_t b = -1;
    for (int64_t j = 0; j < K; j++) {
      int used = 0;
      for (int64_t q = 0; q < c && !used; q++)
        used = cand[q] == j;
      if (!used && (b < 0 || z[j] > z[b]))
        b = j;
    }
    cand[c] = b;
  }
}

/*
 * Re-checks every found adversarial exactly as adv_attack_run's epilogue
 * will (one forward over all n samples, same chunking: logits can differ
 * in the last bits between batch sizes, and minimal attacks end within
 * rounding of the boundary). A point that is not adversarial there is
 * pushed slightly further from x (factors 1+1e-4, 1+1e-3, 1+1e-2); if it
 * still fails it is reset to x and reported as not found.
 */
static int df_verify(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                     const int64_t *target, int targeted, float *x_adv,
                     unsigned char *found, float *z) {
  const adv_attack_params *p = &ev->p;
  int64_t per = ev->per, K = ev->classes;
  static const double push[3] = {1e-4, 1e-3, 1e-2};
  for (int round = 0; round <= 3; round++) {
    int rc = adv__eval_forward(ev, x_adv, n, z);
    if (rc)
      return rc;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
      if (!found[i] || df_is_adv(z + i * K, K, y[i], targeted ? target[i] : -1,
                                 targeted))
        continue;
      float *xa = x_adv + i * per;
      const float *xi = x + i * per;
      if (round == 3) {
        memcpy(xa, xi, sizeof(float) * (size_t)per);
        found[i] = 0;
        continue;
      }
      bad = 1;
      for (int64_t k = 0; k < per; k++) {
        float v = (float)(xi[k] + ((double)xa[k] - xi[k]) * (1.0 + push[round]));
        xa[k] = v < p->clip_min ? p->clip_min : v > p->clip_max ? p->clip_max : v;
      }
    }
    if (!bad)
      break;
  }
  return ADV_OK;
}

int adv__attack_deepfool(adv_eval *ev, const float *x, int64_t n,
                         const int64_t *y, const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  int64_t per = ev->per, K = ev->classes;
  int steps = p->steps > 0 ? p->steps : 50;
  int targeted = p->targeted && target;
  int64_t C = p->candidates >= 2 && p->candidates <= K ? p->candidates : K;
  double os = p->overshoot > 0 ? p->overshoot : 0.0;
  float lo = p->clip_min, hi = p->clip_max;
  int64_t ncand = targeted ? 1 : C - 1; /* backwards per iteration */
  df_buf b;
  memset(&b, 0, sizeof(b));
  size_t xs = sizeof(float) * (size_t)(n * per), zs = sizeof(float) * (size_t)(n * K);
  b.idx = malloc(sizeof(int64_t) * (size_t)n);
  b.cand = malloc(sizeof(int64_t) * (size_t)(n * C));
  b.xc = malloc(xs);
  b.rt = malloc(xs);
  b.g = malloc(xs);
  b.gb = malloc(xs);
  b.z = malloc(zs);
  b.zt = malloc(zs);
  b.dz = malloc(zs);
  b.fb = malloc(sizeof(double) * (size_t)n);
  b.db = malloc(sizeof(double) * (size_t)n);
  b.found = calloc((size_t)n, 1);
  int rc = ADV_OK;
  if (!b.idx || !b.cand || !b.xc || !b.rt || !b.g || !b.gb || !b.z || !b.zt ||
      !b.dz || !b.fb || !b.db || !b.found) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  /* clean pass: who is to be attacked, and the candidate classes */
  if ((rc = adv__eval_forward(ev, x, n, b.z)))
    goto out;
  int64_t na = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *zi = b.z + i * K;
    if (targeted ? adv__argmax(zi, K) == target[i] : adv__argmax(zi, K) != y[i])
      continue; /* already adversarial: x_adv = x */
    if (!targeted)
      df_candidates(zi, K, y[i], C, b.cand + na * C);
    memmove(b.z + na * K, zi, sizeof(float) * (size_t)K);
    memcpy(b.xc + na * per, x + i * per, sizeof(float) * (size_t)per);
    b.idx[na++] = i;
  }
  memset(b.rt, 0, sizeof(float) * (size_t)(na * per));
  for (int it = 0; it < steps && na > 0; it++) {
    if (adv__eval_aborted(ev, "deepfool", (double)it / steps)) {
      rc = adv__error(ev->err, ADV_EABORTED, "aborted");
      goto out;
    }
    for (int64_t j = 0; j < na; j++)
      b.db[j] = INFINITY, b.fb[j] = 0;
    /* one backward per candidate; keep the closest linearized boundary */
    for (int64_t c = 0; c < ncand; c++) {
      memset(b.dz, 0, sizeof(float) * (size_t)(na * K));
      for (int64_t j = 0; j < na; j++) {
        int64_t i = b.idx[j], k, o;
        if (targeted)
          k = target[i], o = top_except(b.z + j * K, K, k);
        else
          k = b.cand[j * C + 1 + c], o = y[i];
        b.dz[j * K + k] += 1.f;
        b.dz[j * K + o] -= 1.f;
      }
      float *gdst = ncand == 1 ? b.gb : b.g;
      if ((rc = adv__eval_grad_dz(ev, b.xc, na, b.dz, b.zt, gdst)))
        goto out;
      for (int64_t j = 0; j < na; j++) {
        const float *zj = b.zt + j * K, *gj = gdst + j * per;
        double f = 0, q = 0;
        for (int64_t k = 0; k < K; k++)
          f += (double)b.dz[j * K + k] * zj[k];
        for (int64_t k = 0; k < per; k++)
          q += p->norm == ADV_NORM_L2 ? (double)gj[k] * gj[k] : fabs((double)gj[k]);
        if (p->norm == ADV_NORM_L2)
          q = sqrt(q);
        double d = fabs(f) / (q + 1e-12);
        if (d < b.db[j]) {
          b.db[j] = d;
          b.fb[j] = f;
          if (gdst != b.gb)
            memcpy(b.gb + j * per, gj, sizeof(float) * (size_t)per);
        }
      }
    }
    /* step to the closest linearized boundary */
    for (int64_t j = 0; j < na; j++) {
      const float *w = b.gb + j * per, *x0 = x + b.idx[j] * per;
      float *r = b.rt + j * per, *xc = b.xc + j * per;
      double s = 0;
      for (int64_t k = 0; k < per; k++)
        s += p->norm == ADV_NORM_L2 ? (double)w[k] * w[k] : fabs((double)w[k]);
      if (s > 0) {
        double a = (fabs(b.fb[j]) + 1e-4) / s;
        for (int64_t k = 0; k < per; k++) {
          double step = p->norm == ADV_NORM_L2
                            ? a * w[k]
                            : (w[k] > 0 ? a : w[k] < 0 ? -a : 0.0);
          double v = (double)x0[k] + r[k] + step;
          v = v < lo ? lo : v > hi ? hi : v;
          r[k] = (float)(v - x0[k]);
        }
      }
      for (int64_t k = 0; k < per; k++) {
        float v = (float)(x0[k] + (1.0 + os) * r[k]);
        xc[k] = v < lo ? lo : v > hi ? hi : v;
      }
    }
    /* test the new iterates; fooled samples leave the active set */
    if ((rc = adv__eval_forward(ev, b.xc, na, b.z)))
      goto out;
    int64_t w = 0;
    for (int64_t j = 0; j < na; j++) {
      int64_t i = b.idx[j];
      if (df_is_adv(b.z + j * K, K, y[i], targeted ? target[i] : -1, targeted)) {
        memcpy(x_adv + i * per, b.xc + j * per, sizeof(float) * (size_t)per);
        b.found[i] = 1;
        continue;
      }
      if (w != j) {
        b.idx[w] = i;
        memmove(b.cand + w * C, b.cand + j * C, sizeof(int64_t) * (size_t)C);
        memmove(b.z + w * K, b.z + j * K, sizeof(float) * (size_t)K);
        memmove(b.xc + w * per, b.xc + j * per, sizeof(float) * (size_t)per);
        memmove(b.rt + w * per, b.rt + j * per, sizeof(float) * (size_t)per);
      }
      w++;
    }
    na = w;
  }
  rc = df_verify(ev, x, n, y, target, targeted, x_adv, b.found, b.zt);
out:
  df_free(&b);
  return rc;
}
