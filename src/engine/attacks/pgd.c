/*
 * pgd.c - iterative gradient attacks:
 *   BIM     (Kurakin et al.): no random start, step eps/steps;
 *   PGD     (Madry et al.): optional uniform random start in the eps-ball,
 *           step 2.5*eps/steps by default, restarts;
 *   MI-FGSM (Dong et al.): momentum m = mu*m + g/||g||_1, step on sign(m).
 * Each step: x <- proj_{B(x0,eps) & [lo,hi]}(x + alpha * dir(g)), with
 * dir = sign(g) (L-inf) or g/||g||_2 (L2). The result of a restart is its
 * final iterate; across restarts a sample keeps the first restart whose
 * final iterate fools the model, else the one with the highest loss.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Uniform random start: L-inf box, or a uniform point of the L2 ball. */
static void random_start(adv_rng *rng, float *xa, const float *x, int64_t per,
                         const adv_eval *ev) {
  const adv_attack_params *p = &ev->p;
  if (p->norm == ADV_NORM_LINF) {
    for (int64_t k = 0; k < per; k++)
      xa[k] = x[k] + (float)((2 * adv__rng_uniform(rng) - 1) * p->eps);
  } else {
    double s = 0;
    for (int64_t k = 0; k < per; k++) {
      double v = adv__rng_normal(rng);
      xa[k] = (float)v;
      s += v * v;
    }
    double r = p->eps * pow(adv__rng_uniform(rng), 1.0 / (double)per) / sqrt(s);
    for (int64_t k = 0; k < per; k++)
      xa[k] = x[k] + (float)(xa[k] * r);
  }
  adv__project(xa, x, per, p->norm, p->eps, ev->lo, ev->hi);
}

int adv__attack_pgd(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  int64_t per = ev->per, K = ev->classes;
  int steps = p->steps > 0 ? p->steps : 10;
  int bim = p->kind == ADV_ATTACK_BIM, mi = p->kind == ADV_ATTACK_MIFGSM;
  float alpha = p->step_size > 0 ? p->step_size
                : (bim || mi)    ? p->eps / (float)steps
                                 : 2.5f * p->eps / (float)steps;
  adv_loss_params lp = adv__eval_loss(ev, p->loss, p->targeted);
  size_t bytes = sizeof(float) * (size_t)(n * per);
  float *cur = malloc(bytes), *g = malloc(bytes),
        *mom = mi ? calloc(1, bytes) : NULL;
  float *z = malloc(sizeof(float) * (size_t)(n * K)),
        *loss = malloc(sizeof(float) * (size_t)n);
  float *best_loss = malloc(sizeof(float) * (size_t)n);
  unsigned char *done = calloc((size_t)n, 1);
  int rc = ADV_OK;
  if (!cur || !g || (mi && !mom) || !z || !loss || !best_loss || !done) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  for (int64_t i = 0; i < n; i++)
    best_loss[i] = -INFINITY;
  for (int r = 0; r < p->restarts && rc == ADV_OK; r++) {
    memcpy(cur, x, bytes);
    if (p->random_start && !bim)
      for (int64_t i = 0; i < n; i++) {
        /* each (sample, restart) has its own stream, keyed by the
         * sample's id: its start does not depend on the other samples */
        adv_rng rng;
        adv__rng_seed(&rng, p->seed ^
                                ((uint64_t)(r + 1) * 0x9e3779b97f4a7c15ull) ^
                                (adv__sample_id(p, i) * 0xd1b54a32d192ed03ull));
        random_start(&rng, cur + i * per, x + i * per, per, ev);
      }
    if (mom)
      memset(mom, 0, bytes);
    for (int it = 0; it < steps; it++) {
      if (adv__eval_aborted(ev, adv_attack_name(p->kind),
                            ((double)r * steps + it) /
                                ((double)p->restarts * steps))) {
        rc = adv__error(ev->err, ADV_EABORTED, "aborted");
        goto out;
      }
      if ((rc = adv__eval_grad(ev, cur, n, lp, y, target, NULL, NULL, g)))
        goto out;
      for (int64_t i = 0; i < n; i++) {
        float *gi = g + i * per, *ci = cur + i * per;
        if (mi) {
          double l1 = 1e-12;
          for (int64_t k = 0; k < per; k++)
            l1 += fabs(gi[k]);
          float *mi_ = mom + i * per;
          for (int64_t k = 0; k < per; k++) {
            mi_[k] = p->momentum * mi_[k] + (float)(gi[k] / l1);
            gi[k] = mi_[k];
          }
        }
        if (p->norm == ADV_NORM_LINF) {
          for (int64_t k = 0; k < per; k++)
            ci[k] += gi[k] > 0.f ? alpha : gi[k] < 0.f ? -alpha : 0.f;
        } else {
          double s = 1e-24;
          for (int64_t k = 0; k < per; k++)
            s += (double)gi[k] * gi[k];
          float f = (float)(alpha / sqrt(s));
          for (int64_t k = 0; k < per; k++)
            ci[k] += f * gi[k];
        }
        adv__project(ci, x + i * per, per, p->norm, p->eps, ev->lo, ev->hi);
      }
    }
    /* evaluate the final iterate of this restart (forward only: the loss
     * comes from the logits) */
    if ((rc = adv__eval_forward(ev, cur, n, z)) ||
        (rc = adv_loss_eval(lp, z, n, K, y, target, loss, NULL, ev->err)))
      goto out;
    for (int64_t i = 0; i < n; i++) {
      if (done[i])
        continue;
      int fooled = adv__eval_fooled(
          ev, z + i * K, y[i], target ? target[i] : -1, p->targeted && target);
      if (fooled || loss[i] > best_loss[i]) {
        memcpy(x_adv + i * per, cur + i * per, sizeof(float) * (size_t)per);
        best_loss[i] = loss[i];
        done[i] = (unsigned char)fooled;
      }
    }
  }
out:
  free(cur);
  free(g);
  free(mom);
  free(z);
  free(loss);
  free(best_loss);
  free(done);
  return rc;
}
