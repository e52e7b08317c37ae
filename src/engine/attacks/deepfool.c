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
 *   L2:    r_i = (|f_k*| / ||w_k*||_2 + 1e-4) * w_k* / ||w_k*||_2
 *   L-inf: r_i = (|f_k*| / ||w_k*||_1 + 1e-4) * sign(w_k*)
 *   r_tot += r_i,  x_{i+1} = clip(x_0 + (1 + overshoot) * r_tot)
 * until the label changes or `steps` iterations were made. As in the
 * authors' reference code (LTS4/DeepFool deepfool.py): the 1e-4 is added
 * to the distance pert = |f| / ||w||, and the overshoot scales the whole
 * accumulated perturbation at the end of every step (x = x0 + (1 +
 * overshoot) r_tot), never the single step. r_tot is kept inside the box (r_tot
 * <- clip(x_0 + r_tot) - x_0) so clipped coordinates do not accumulate.
 *
 * Targeted (p.targeted with target[]): the only hyperplane is
 * z_t - z_c = 0 with c the current top class other than t.
 *
 * Finally adv__min_settle (defined here, shared with cw.c and fab.c) makes
 * every adversarial robust to re-evaluation (see there).
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
  int64_t *idx;    /* compact position -> sample */
  int64_t *cand;   /* n x C candidate classes, cand[0] = label */
  float *xc;       /* current iterate (compact) */
  float *rt;       /* accumulated perturbation r_tot (compact) */
  float *g, *gb;   /* gradient of the current / best candidate */
  float *z, *zt;   /* logits at xc, logits returned by the grad call */
  float *zc;       /* clean logits (n) */
  float *dz;       /* upstream logit gradients */
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
  free(b->zc);
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

/* ---- shared by the minimal-norm attacks (declared in attack_internal.h) ----
 */

/* Signed margin, > 0 on the adversarial side: z_t - max_{j!=t} z_j when
 * targeted, max_{j!=y} z_j - z_y otherwise. */
double adv__min_margin(const float *z, int64_t K, int64_t y, int64_t t,
                       int targeted) {
  int64_t c = targeted ? t : y;
  double m = -INFINITY;
  for (int64_t j = 0; j < K; j++)
    if (j != c && z[j] > m)
      m = z[j];
  return targeted ? z[c] - m : m - z[c];
}

/* The margin a returned adversarial keeps: 1e-4 * (1 + max_j |z_j|). The
 * engine's logits differ by ~2e-7 relative between batch sizes (blocking
 * of the matrix products), other frameworks by ~1e-5, so an adversarial
 * with this margin stays one wherever it is re-evaluated. */
double adv__min_tol(const float *z, int64_t K) {
  double a = 0;
  for (int64_t j = 0; j < K; j++)
    a = fabs(z[j]) > a ? fabs(z[j]) : a;
  return 1e-4 * (1 + a);
}

/*
 * Settles the adversarials of a minimal-norm attack. The attacks stop at
 * the first point the argmax calls adversarial, which by design lies
 * within rounding of the decision boundary. For every found[i], one
 * forward over all n samples (the same chunking as adv_attack_run's final
 * check) gives the margin M1 at x_adv; if M1 < accept * tol the
 * perturbation is scaled, x_adv <- clip(x + s (x_adv - x)), with s from the
 * line through the clean margin M0 (zc, logits at x) and M1 aiming at
 * (accept + 1) tol
 * (s in [1 + 1e-5, 1.1]; from the 4th round at least 1 + 10^(round-6)).
 * After 6 rounds a point still short of the margin is kept if the argmax
 * calls it adversarial, otherwise reset to x (found[i] = 0).
 * z: scratch of n x K floats.
 */
int adv__min_settle(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, int targeted, const float *zc,
                    double accept, float *x_adv, unsigned char *found,
                    float *z) {
  int64_t per = ev->per, K = ev->classes;
  const int rounds = 6;
  for (int round = 0; round <= rounds; round++) {
    int rc = adv__eval_forward(ev, x_adv, n, z);
    if (rc)
      return rc;
    int pending = 0;
    for (int64_t i = 0; i < n; i++) {
      if (!found[i])
        continue;
      const float *zi = z + i * K, *xi = x + i * per;
      int64_t t = targeted ? target[i] : -1;
      double m1 = adv__min_margin(zi, K, y[i], t, targeted);
      double tol = adv__min_tol(zi, K);
      if (m1 >= accept * tol)
        continue;
      float *xa = x_adv + i * per;
      if (round == rounds) {
        if (!df_is_adv(zi, K, y[i], t, targeted)) {
          memcpy(xa, xi, sizeof(float) * (size_t)per);
          found[i] = 0;
        }
        continue;
      }
      double m0 = adv__min_margin(zc + i * K, K, y[i], t, targeted);
      double s = m1 > m0 ? ((accept + 1) * tol - m0) / (m1 - m0) : 1.1;
      s = s < 1 + 1e-5 ? 1 + 1e-5 : s > 1.1 ? 1.1 : s;
      if (round >= 3 && s < 1 + pow(10.0, round - 6))
        s = 1 + pow(10.0, round - 6);
      for (int64_t k = 0; k < per; k++) {
        float v = (float)(xi[k] + ((double)xa[k] - xi[k]) * s);
        xa[k] = adv__clipf(v, ev->lo[k], ev->hi[k]);
      }
      pending = 1;
    }
    if (!pending)
      break;
  }
  return ADV_OK;
}

int adv__attack_deepfool(adv_eval *ev, const float *x, int64_t n,
                         const int64_t *y, const int64_t *target,
                         float *x_adv) {
  const adv_attack_params *p = &ev->p;
  int64_t per = ev->per, K = ev->classes;
  int steps = p->steps > 0 ? p->steps : 50;
  int targeted = p->targeted && target;
  int64_t C = p->candidates >= 2 && p->candidates <= K ? p->candidates : K;
  double os = p->overshoot > 0 ? p->overshoot : 0.0;
  const float *lo = ev->lo, *hi = ev->hi;
  int64_t ncand = targeted ? 1 : C - 1; /* backwards per iteration */
  df_buf b;
  memset(&b, 0, sizeof(b));
  size_t xs = sizeof(float) * (size_t)(n * per),
         zs = sizeof(float) * (size_t)(n * K);
  b.idx = malloc(sizeof(int64_t) * (size_t)n);
  b.cand = malloc(sizeof(int64_t) * (size_t)(n * C));
  b.xc = malloc(xs);
  b.rt = malloc(xs);
  b.g = malloc(xs);
  b.gb = malloc(xs);
  b.z = malloc(zs);
  b.zt = malloc(zs);
  b.zc = malloc(zs);
  b.dz = malloc(zs);
  b.fb = malloc(sizeof(double) * (size_t)n);
  b.db = malloc(sizeof(double) * (size_t)n);
  b.found = calloc((size_t)n, 1);
  int rc = ADV_OK;
  if (!b.idx || !b.cand || !b.xc || !b.rt || !b.g || !b.gb || !b.z || !b.zt ||
      !b.zc || !b.dz || !b.fb || !b.db || !b.found) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  /* clean pass: who is to be attacked, and the candidate classes */
  if ((rc = adv__eval_forward(ev, x, n, b.zc)))
    goto out;
  int64_t na = 0;
  for (int64_t i = 0; i < n; i++) {
    const float *zi = b.zc + i * K;
    if (targeted ? adv__argmax(zi, K) == target[i] : adv__argmax(zi, K) != y[i])
      continue; /* already adversarial: x_adv = x */
    if (!targeted)
      df_candidates(zi, K, y[i], C, b.cand + na * C);
    memcpy(b.z + na * K, zi, sizeof(float) * (size_t)K);
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
          q += p->norm == ADV_NORM_L2 ? (double)gj[k] * gj[k]
                                      : fabs((double)gj[k]);
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
        /* the reference's r_i = (pert + 1e-4) w / ||w||_2 with pert =
         * |f| / ||w||_2 (L-inf: (|f| / ||w||_1 + 1e-4) sign(w)) */
        double nw = p->norm == ADV_NORM_L2 ? sqrt(s) : 1.0;
        double a =
            (fabs(b.fb[j]) / (p->norm == ADV_NORM_L2 ? nw : s) + 1e-4) / nw;
        for (int64_t k = 0; k < per; k++) {
          double step = p->norm == ADV_NORM_L2 ? a * w[k]
                                               : (w[k] > 0   ? a
                                                  : w[k] < 0 ? -a
                                                             : 0.0);
          double v = (double)x0[k] + r[k] + step;
          v = v < lo[k] ? lo[k] : v > hi[k] ? hi[k] : v;
          r[k] = (float)(v - x0[k]);
        }
      }
      for (int64_t k = 0; k < per; k++) {
        float v = (float)(x0[k] + (1.0 + os) * r[k]);
        xc[k] = adv__clipf(v, lo[k], hi[k]);
      }
    }
    /* test the new iterates; fooled samples leave the active set */
    if ((rc = adv__eval_forward(ev, b.xc, na, b.z)))
      goto out;
    int64_t w = 0;
    for (int64_t j = 0; j < na; j++) {
      int64_t i = b.idx[j];
      if (df_is_adv(b.z + j * K, K, y[i], targeted ? target[i] : -1,
                    targeted)) {
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
  rc = adv__min_settle(ev, x, n, y, target, targeted, b.zc, 0.5, x_adv, b.found,
                       b.zt);
out:
  df_free(&b);
  return rc;
}
