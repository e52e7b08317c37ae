/*
 * fgsm.c - Fast Gradient Sign Method (Goodfellow et al. 2015).
 *   L-inf: x_adv = clip(x + eps * sign(grad L(x)))
 *   L2:    x_adv = clip(x + eps * grad / ||grad||_2)
 * L is the attack loss (default CE; targeted losses are already written
 * so that the attacker maximizes them, see adv/adv.h).
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>

int adv__attack_fgsm(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                     const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  adv_loss_params lp = adv__eval_loss(ev, p->loss, p->targeted);
  float *g = malloc(sizeof(float) * (size_t)(n * ev->per));
  if (!g)
    return adv__error(ev->err, ADV_ENOMEM, "out of memory");
  int rc = adv__eval_grad(ev, x, n, lp, y, target, NULL, NULL, g);
  if (rc == ADV_OK) {
    for (int64_t i = 0; i < n; i++) {
      const float *gi = g + i * ev->per, *xi = x + i * ev->per;
      float *xa = x_adv + i * ev->per;
      double nrm = 0;
      if (p->norm == ADV_NORM_L2) {
        for (int64_t k = 0; k < ev->per; k++)
          nrm += (double)gi[k] * gi[k];
        nrm = sqrt(nrm) + 1e-12;
      }
      for (int64_t k = 0; k < ev->per; k++) {
        float d = p->norm == ADV_NORM_LINF ? (gi[k] > 0.f   ? p->eps
                                              : gi[k] < 0.f ? -p->eps
                                                            : 0.f)
                                           : (float)(p->eps * gi[k] / nrm);
        xa[k] = xi[k] + d;
      }
      adv__project(xa, xi, ev->per, p->norm, p->eps, ev->lo, ev->hi);
    }
  }
  free(g);
  return rc;
}
