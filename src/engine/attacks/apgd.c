/*
 * apgd.c - Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of
 * adversarial robustness with an ensemble of diverse parameter-free
 * attacks"), following the algorithm of the paper and the step-size /
 * checkpoint logic of the reference implementation:
 *
 *   step eta = 2*eps per sample; momentum alpha = 0.75 (1 at the first step)
 *   z    = P(x_k + eta * dir(grad))             dir = sign (L-inf) or g/||g||
 *   x_k+1 = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_k-1))
 *   checkpoints: first after 22% of the iterations, then the interval
 *   shrinks by 3% down to 6%; at a checkpoint the step is halved (and the
 *   iterate reset to the best point) when fewer than rho = 75% of the steps
 *   since the last checkpoint increased the loss, or when the step was not
 *   halved last time and the best loss did not improve.
 *
 * Variants: APGD-CE (cross-entropy), APGD-DLR (DLR loss), APGD-T (targeted
 * DLR toward each of the n_target_classes most likely wrong classes in
 * turn, each run only on points not yet broken). A point counts as broken
 * when the model misclassifies it (untargeted criterion, as AutoAttack).
 *
 * Differences from the reference, both without effect on robust accuracy:
 * a point stops being iterated once it is misclassified (its adversarial
 * is kept), and every point draws its random start from its own RNG
 * stream (seed, sample index, restart) so results do not depend on how
 * points are batched.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct apgd_ws {
  int64_t n, per, K;
  float *xa, *xa_old, *grad, *x_best, *grad_best, *tmp_x, *tmp_g, *tmp_z;
  float *tmp_loss, *step, *loss_best, *loss_best_last, *loss_steps;
  unsigned char *reduced_last, *active;
  int64_t *act, *tmp_y, *tmp_t;
} apgd_ws;

static void ws_free(apgd_ws *w) {
  free(w->xa);
  free(w->xa_old);
  free(w->grad);
  free(w->x_best);
  free(w->grad_best);
  free(w->tmp_x);
  free(w->tmp_g);
  free(w->tmp_z);
  free(w->tmp_loss);
  free(w->step);
  free(w->loss_best);
  free(w->loss_best_last);
  free(w->loss_steps);
  free(w->reduced_last);
  free(w->active);
  free(w->act);
  free(w->tmp_y);
  free(w->tmp_t);
  memset(w, 0, sizeof(*w));
}

static int ws_init(apgd_ws *w, int64_t n, int64_t per, int64_t K, int iters) {
  memset(w, 0, sizeof(*w));
  w->n = n;
  w->per = per;
  w->K = K;
  size_t big = sizeof(float) * (size_t)(n * per);
  w->xa = malloc(big);
  w->xa_old = malloc(big);
  w->grad = malloc(big);
  w->x_best = malloc(big);
  w->grad_best = malloc(big);
  w->tmp_x = malloc(big);
  w->tmp_g = malloc(big);
  w->tmp_z = malloc(sizeof(float) * (size_t)(n * K));
  w->tmp_loss = malloc(sizeof(float) * (size_t)n);
  w->step = malloc(sizeof(float) * (size_t)n);
  w->loss_best = malloc(sizeof(float) * (size_t)n);
  w->loss_best_last = malloc(sizeof(float) * (size_t)n);
  w->loss_steps = calloc((size_t)(iters + 1) * (size_t)n, sizeof(float));
  w->reduced_last = malloc((size_t)n);
  w->active = malloc((size_t)n);
  w->act = malloc(sizeof(int64_t) * (size_t)n);
  w->tmp_y = malloc(sizeof(int64_t) * (size_t)n);
  w->tmp_t = malloc(sizeof(int64_t) * (size_t)n);
  if (!w->xa || !w->xa_old || !w->grad || !w->x_best || !w->grad_best ||
      !w->tmp_x || !w->tmp_g || !w->tmp_z || !w->tmp_loss || !w->step ||
      !w->loss_best || !w->loss_best_last || !w->loss_steps ||
      !w->reduced_last || !w->active || !w->act || !w->tmp_y || !w->tmp_t) {
    ws_free(w);
    return ADV_ENOMEM;
  }
  return ADV_OK;
}

/* P: projection onto the eps-ball around x and the clip box. For L2 the
 * reference's formula: x + d / ||d|| * min(eps, ||d||). */
static void proj(float *v, const float *x, int64_t per, const adv_eval *ev) {
  const adv_attack_params *p = &ev->p;
  if (p->norm == ADV_NORM_LINF) {
    adv__project(v, x, per, ADV_NORM_LINF, p->eps, ev->lo, ev->hi);
    return;
  }
  double s = 0;
  for (int64_t k = 0; k < per; k++) {
    double d = (double)v[k] - x[k];
    s += d * d;
  }
  double nrm = sqrt(s);
  double f = (nrm > p->eps ? p->eps : nrm) / (nrm + 1e-12);
  for (int64_t k = 0; k < per; k++) {
    float t = (float)(x[k] + ((double)v[k] - x[k]) * f);
    v[k] = adv__clipf(t, ev->lo[k], ev->hi[k]);
  }
}

/* Gradient + loss + logits for the active samples; scatters grads back. */
static int eval_active(adv_eval *ev, apgd_ws *w, int64_t na, adv_loss_params lp,
                       const int64_t *y, const int64_t *yt) {
  int64_t per = w->per;
  for (int64_t a = 0; a < na; a++) {
    int64_t i = w->act[a];
    memcpy(w->tmp_x + a * per, w->xa + i * per, sizeof(float) * (size_t)per);
    w->tmp_y[a] = y[i];
    w->tmp_t[a] = yt ? yt[i] : 0;
  }
  int rc = adv__eval_grad(ev, w->tmp_x, na, lp, w->tmp_y, yt ? w->tmp_t : NULL,
                          w->tmp_z, w->tmp_loss, w->tmp_g);
  if (rc)
    return rc;
  for (int64_t a = 0; a < na; a++)
    memcpy(w->grad + w->act[a] * per, w->tmp_g + a * per,
           sizeof(float) * (size_t)per);
  return ADV_OK;
}

/* Random start of the reference: L-inf x + eps * t / max|t| with t
 * uniform in [-1, 1]; L2 x + eps * t / ||t|| with t normal; then clipped. */
static void init_point(adv_rng *rng, float *xa, const float *x, int64_t per,
                       const adv_eval *ev) {
  const adv_attack_params *p = &ev->p;
  double m = 0;
  for (int64_t k = 0; k < per; k++) {
    double t = p->norm == ADV_NORM_LINF ? 2 * adv__rng_uniform(rng) - 1
                                        : adv__rng_normal(rng);
    xa[k] = (float)t;
    m = p->norm == ADV_NORM_LINF ? (fabs(t) > m ? fabs(t) : m) : m + t * t;
  }
  if (p->norm == ADV_NORM_L2)
    m = sqrt(m);
  for (int64_t k = 0; k < per; k++) {
    float v = x[k] + (float)(p->eps * xa[k] / (m + 1e-12));
    xa[k] = adv__clipf(v, ev->lo[k], ev->hi[k]);
  }
}

/*
 * One APGD run over the samples with broken[i] == 0. On success for sample
 * i, x_adv[i] receives the adversarial iterate and broken[i] = 1.
 */
static int apgd_single(adv_eval *ev, const float *x, int64_t n,
                       const int64_t *y, const int64_t *yt, adv_loss_params lp,
                       uint64_t stream, float *x_adv, unsigned char *broken,
                       apgd_ws *w, double prog0, double prog_span) {
  const adv_attack_params *p = &ev->p;
  int64_t per = w->per, K = w->K;
  int iters = p->steps > 0 ? p->steps : 100;
  int n_iter_2 = iters * 22 / 100 > 1 ? iters * 22 / 100 : 1;
  int n_iter_min = iters * 6 / 100 > 1 ? iters * 6 / 100 : 1;
  int size_decr = iters * 3 / 100 > 1 ? iters * 3 / 100 : 1;
  float step0 = p->step_size > 0 ? p->step_size : 2.f * p->eps;
  int64_t na = 0;
  for (int64_t i = 0; i < n; i++) {
    w->active[i] = !broken[i];
    if (broken[i])
      continue;
    w->act[na++] = i;
    adv_rng rng;
    adv__rng_seed(&rng, p->seed ^ (stream * 0x9e3779b97f4a7c15ull) ^
                            (adv__sample_id(p, i) * 0xd1b54a32d192ed03ull));
    init_point(&rng, w->xa + i * per, x + i * per, per, ev);
  }
  if (na == 0)
    return ADV_OK;
  int rc = eval_active(ev, w, na, lp, y, yt);
  if (rc)
    return rc;
  for (int64_t a = 0; a < na; a++) {
    int64_t i = w->act[a];
    memcpy(w->x_best + i * per, w->xa + i * per, sizeof(float) * (size_t)per);
    memcpy(w->grad_best + i * per, w->grad + i * per,
           sizeof(float) * (size_t)per);
    memcpy(w->xa_old + i * per, w->xa + i * per, sizeof(float) * (size_t)per);
    w->loss_best[i] = w->tmp_loss[a];
    w->loss_best_last[i] = w->tmp_loss[a];
    w->reduced_last[i] = 1;
    w->step[i] = step0;
    if (adv__eval_fooled(ev, w->tmp_z + a * K, y[i], -1,
                         0)) { /* the start already fools */
      memcpy(x_adv + i * per, w->xa + i * per, sizeof(float) * (size_t)per);
      broken[i] = 1;
      w->active[i] = 0;
    }
  }
  int k = n_iter_2, counter3 = 0;
  float *d = w->tmp_g; /* reused as scratch for the candidate step */
  for (int it = 0; it < iters; it++) {
    if (adv__eval_aborted(ev, adv_attack_name(p->kind),
                          prog0 + prog_span * it / iters))
      return adv__error(ev->err, ADV_EABORTED, "aborted");
    float a_m = it > 0 ? 0.75f : 1.0f;
    /* active list of this iteration */
    na = 0;
    for (int64_t i = 0; i < n; i++)
      if (w->active[i])
        w->act[na++] = i;
    if (na == 0)
      break;
    for (int64_t q = 0; q < na; q++) {
      int64_t i = w->act[q];
      float *xa = w->xa + i * per, *xo = w->xa_old + i * per;
      const float *g = w->grad + i * per, *xi = x + i * per;
      float *z1 = d + q * per;
      float eta = w->step[i];
      if (p->norm == ADV_NORM_LINF) {
        for (int64_t c = 0; c < per; c++)
          z1[c] = xa[c] + (g[c] > 0.f ? eta : g[c] < 0.f ? -eta : 0.f);
      } else {
        double s = 0;
        for (int64_t c = 0; c < per; c++)
          s += (double)g[c] * g[c];
        float f = (float)(eta / (sqrt(s) + 1e-12));
        for (int64_t c = 0; c < per; c++)
          z1[c] = xa[c] + f * g[c];
      }
      proj(z1, xi, per, ev);
      for (int64_t c = 0; c < per; c++) {
        float g2 = xa[c] - xo[c];
        z1[c] = xa[c] + (z1[c] - xa[c]) * a_m + g2 * (1.f - a_m);
      }
      proj(z1, xi, per, ev);
      memcpy(xo, xa, sizeof(float) * (size_t)per);
      memcpy(xa, z1, sizeof(float) * (size_t)per);
    }
    if ((rc = eval_active(ev, w, na, lp, y, yt)))
      return rc;
    for (int64_t q = 0; q < na; q++) {
      int64_t i = w->act[q];
      float l = w->tmp_loss[q];
      w->loss_steps[(size_t)it * (size_t)n + (size_t)i] = l;
      if (adv__eval_fooled(ev, w->tmp_z + q * K, y[i], -1, 0)) {
        memcpy(x_adv + i * per, w->xa + i * per, sizeof(float) * (size_t)per);
        broken[i] = 1;
        w->active[i] = 0; /* done: stop iterating this point */
        continue;
      }
      if (l > w->loss_best[i]) {
        memcpy(w->x_best + i * per, w->xa + i * per,
               sizeof(float) * (size_t)per);
        memcpy(w->grad_best + i * per, w->grad + i * per,
               sizeof(float) * (size_t)per);
        w->loss_best[i] = l;
      }
    }
    if (++counter3 == k) {
      for (int64_t q = 0; q < na; q++) {
        int64_t i = w->act[q];
        if (!w->active[i])
          continue;
        /* oscillation: fewer than rho*k increases over the last k steps */
        int inc = 0;
        for (int c = 0; c < k; c++) {
          int j = it - c;
          float cur = w->loss_steps[(size_t)j * (size_t)n + (size_t)i];
          float prev =
              j - 1 >= 0
                  ? w->loss_steps[(size_t)(j - 1) * (size_t)n + (size_t)i]
                  : 0.f; /* reference reads a zero here */
          inc += cur > prev;
        }
        int fl = (double)inc <= k * 0.75;
        int no_impr =
            !w->reduced_last[i] && w->loss_best_last[i] >= w->loss_best[i];
        fl = fl || no_impr;
        w->reduced_last[i] = (unsigned char)fl;
        w->loss_best_last[i] = w->loss_best[i];
        if (fl) {
          w->step[i] /= 2.f;
          memcpy(w->xa + i * per, w->x_best + i * per,
                 sizeof(float) * (size_t)per);
          memcpy(w->grad + i * per, w->grad_best + i * per,
                 sizeof(float) * (size_t)per);
        }
      }
      k = k - size_decr > n_iter_min ? k - size_decr : n_iter_min;
      counter3 = 0;
    }
  }
  return ADV_OK;
}

int adv__attack_apgd(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                     const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  int64_t K = ev->classes;
  int iters = p->steps > 0 ? p->steps : 100;
  apgd_ws w;
  if (ws_init(&w, n, ev->per, K, iters))
    return adv__error(ev->err, ADV_ENOMEM, "out of memory");
  unsigned char *broken = calloc((size_t)n, 1);
  int64_t *yt = malloc(sizeof(int64_t) * (size_t)n);
  float *z = malloc(sizeof(float) * (size_t)(n * K));
  int rc = ADV_OK;
  if (!broken || !yt || !z) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  /* clean logits are needed only to pick APGD-T's target classes */
  if (p->kind == ADV_ATTACK_APGD_T && (rc = adv__eval_forward(ev, x, n, z)))
    goto out;
  int obj = p->objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  for (int64_t i = 0; i < n; i++) /* the clean predictions run.c made */
    broken[i] = !obj && ev->pred_clean[i] != y[i];
  if (p->kind == ADV_ATTACK_APGD_T) {
    /* targets: the 2nd, 3rd, ... most likely classes on the clean input */
    int nt = p->n_target_classes > 0 ? p->n_target_classes : 9;
    if (nt > K - 1)
      nt = (int)(K - 1);
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_DLR);
    lp.targeted = 1;
    if (K < 4) {
      rc = adv__error(ev->err, ADV_EINVAL, "APGD-T needs at least 4 classes");
      goto out;
    }
    for (int tc = 0; tc < nt && rc == ADV_OK; tc++) {
      for (int64_t i = 0; i < n; i++) {
        /* the (tc+2)-th largest logit */
        const float *zi = z + i * K;
        int64_t order[64];
        int64_t kk = K < 64 ? K : 64;
        for (int64_t c = 0; c < kk; c++)
          order[c] = c;
        for (int64_t a = 0; a < kk; a++)
          for (int64_t b = a + 1; b < kk; b++)
            if (zi[order[b]] > zi[order[a]]) {
              int64_t t = order[a];
              order[a] = order[b];
              order[b] = t;
            }
        yt[i] = order[tc + 1 < kk ? tc + 1 : kk - 1];
      }
      for (int r = 0; r < p->restarts && rc == ADV_OK; r++)
        rc = apgd_single(ev, x, n, y, yt, lp, (uint64_t)(tc * 1000 + r + 1),
                         x_adv, broken, &w,
                         (double)(tc * p->restarts + r) / (nt * p->restarts),
                         1.0 / (nt * p->restarts));
    }
  } else {
    adv_loss_params lp = adv__eval_loss(
        ev, p->kind == ADV_ATTACK_APGD_DLR ? ADV_LOSS_DLR : ADV_LOSS_CE, 0);
    if (p->kind == ADV_ATTACK_APGD_DLR && K < 3) {
      rc = adv__error(ev->err, ADV_EINVAL, "APGD-DLR needs at least 3 classes");
      goto out;
    }
    for (int r = 0; r < p->restarts && rc == ADV_OK; r++) {
      rc = apgd_single(ev, x, n, y, NULL, lp, (uint64_t)(r + 1), x_adv, broken,
                       &w, (double)r / p->restarts, 1.0 / p->restarts);
      /* output distance: a sample that reached no min_distance keeps the
       * best point of the best restart (z scratch: its loss) */
      for (int64_t i = 0; obj && rc == ADV_OK && i < n; i++)
        if (!broken[i] && (r == 0 || w.loss_best[i] > z[i])) {
          z[i] = w.loss_best[i];
          memcpy(x_adv + i * ev->per, w.x_best + i * ev->per,
                 sizeof(float) * (size_t)ev->per);
        }
    }
  }
  (void)target;
out:
  ws_free(&w);
  free(broken);
  free(yt);
  free(z);
  return rc;
}
