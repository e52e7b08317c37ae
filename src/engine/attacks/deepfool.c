/* deepfool.c - placeholder until the attack lands: reports "not implemented". */
#include "attacks/attack_internal.h"
#include "core/engine.h"

int adv__attack_deepfool(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                   const int64_t *target, float *x_adv) {
  (void)x; (void)n; (void)y; (void)target; (void)x_adv;
  return adv__error(ev->err, ADV_EUNSUPPORTED, "attack not implemented yet");
}
