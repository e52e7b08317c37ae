/*
 * attack_internal.h - shared machinery of the attacks (not public).
 *
 * adv_eval wraps a model for attacks: it keeps sessions for the batch
 * sizes it has seen (so an attack can work on any subset of points), splits
 * larger calls into chunks of p.batch, counts per-sample forward/backward
 * queries, polls the abort flag and reports progress.
 *
 * Every attack has the signature adv__attack_fn: it reads x (n samples),
 * y, optional target, writes x_adv (n samples, already initialized to x by
 * the caller) and may write per-sample success hints; the caller recomputes
 * predictions, success and norms afterwards and checks the budget.
 */
#ifndef ADV_ATTACK_INTERNAL_H
#define ADV_ATTACK_INTERNAL_H

#include "adv/attack.h"

#include <stdint.h>

#define ADV_EVAL_SESSIONS 12
/* Concurrent single-threaded sessions at most (eval.c data parallelism). */
#define ADV_EVAL_WORKERS 4

typedef struct adv_eval {
  const adv_model *m;
  adv_attack_params p;
  int64_t per;     /* floats per sample */
  int64_t classes; /* K */
  int in_ndim;
  int64_t in_dims[ADV_MAX_DIMS]; /* dims[0] is the batch */
  struct {
    int batch;
    int worker; /* -1: multi-threaded session; else a 1-thread session
                   owned by that data-parallel worker */
    adv_session *s;
    uint64_t last_used;
  } cache[ADV_EVAL_SESSIONS];
  uint64_t tick;
  int forward_only;   /* black-box attack: sessions planned without
                         gradients (models with ops that have none) */
  int auto_batch;     /* chunk size chosen when p.batch is 0 (eval.c) */
  const float *cur_x; /* input of the eval_chunks call in progress */
  int64_t forwards, backwards; /* sample-level counts */
  const int64_t *pred_clean;   /* argmax on the clean inputs (run.c) */
  int64_t *sample_queries;     /* per-sample forward queries, filled by
                                  attacks that track them (black box) */
  /* output-distance objective (p.objective): the reference rows, n_ref x
   * classes - the clean outputs f(x) (untargeted) or the target outputs
   * (targeted) - and y[i] = the row of sample i (run.c) */
  const float *ref;
  int64_t n_ref;
  const float *lo, *hi; /* per-value clip bounds of one sample (per floats,
                           from clip_min/clip_max or the per-channel
                           clip_lo/clip_hi; run.c) */
  const volatile int *abort_flag;
  adv_progress_fn progress;
  void *ud;
  adv_err *err;
} adv_eval;

/* Forward on n samples: logits (n x K). */
int adv__eval_forward(adv_eval *ev, const float *x, int64_t n, float *logits);
/* Forward + backward on n samples: logits (may be NULL), per-sample loss
 * (may be NULL) and dx = d loss_i / d x_i (n x per). */
int adv__eval_grad(adv_eval *ev, const float *x, int64_t n, adv_loss_params lp,
                   const int64_t *y, const int64_t *target, float *logits,
                   float *loss, float *dx);
/* Backward with explicit upstream logit gradients dz (n x K) after a
 * forward at the same x (recomputed internally). */
int adv__eval_grad_dz(adv_eval *ev, const float *x, int64_t n, const float *dz,
                      float *logits, float *dx);
/* The loss parameters of an attack: `kind` (with targeted) for the
 * classification objective, the output distance to ev->ref otherwise. */
adv_loss_params adv__eval_loss(const adv_eval *ev, adv_loss_kind kind,
                               int targeted);
/* Whether output z (one sample, ev->classes floats) is adversarial:
 * classification: argmax != y (targeted: == t); output distance: the
 * min_distance criterion against ev->ref row y (never without
 * min_distance > 0). */
int adv__eval_fooled(const adv_eval *ev, const float *z, int64_t y, int64_t t,
                     int targeted);
/* ||z - ev->ref row `row`||_2 (output-distance objective). */
double adv__eval_out_dist(const adv_eval *ev, const float *z, int64_t row);
/* Floats per sample of output 0 as it is (no Softmax bypass), from a
 * batch-1 plan for samples of shape dims[1..ndim-1]: the output-distance
 * objective's K. ADV_ESHAPE when the output is not float N x ... */
int adv__output_floats(const adv_model *m, int ndim, const int64_t *dims,
                       int64_t *k, adv_err *err);
/* Non-zero when the caller asked to abort (flag or progress callback). */
int adv__eval_aborted(adv_eval *ev, const char *phase, double fraction);

/* ---- deterministic RNG (xoshiro256**, seeded by splitmix64) ---- */
typedef struct adv_rng {
  uint64_t s[4];
} adv_rng;
void adv__rng_seed(adv_rng *r, uint64_t seed);
uint64_t adv__rng_next(adv_rng *r);
double adv__rng_uniform(adv_rng *r);         /* [0, 1) */
double adv__rng_normal(adv_rng *r);          /* N(0, 1) */
int64_t adv__rng_int(adv_rng *r, int64_t n); /* [0, n) */

/* The id keying sample i's random streams: p->sample_ids[i] when given,
 * else i, so a sample draws the same numbers whichever other samples share
 * the call (evaluation cascades, shards). */
static inline uint64_t adv__sample_id(const adv_attack_params *p, int64_t i) {
  return p->sample_ids ? (uint64_t)p->sample_ids[i] : (uint64_t)i;
}

/* ---- vector helpers on one sample of length `per` ---- */
int64_t adv__argmax(const float *z, int64_t k);
/* x_adv <- clip(x + proj_eps(x_adv - x), lo, hi) for the attack's norm;
 * lo/hi: per-value bounds (adv_eval.lo/hi). */
void adv__project(float *x_adv, const float *x, int64_t per, adv_norm norm,
                  float eps, const float *lo, const float *hi);
/* v clipped to [lo, hi]. */
static inline float adv__clipf(float v, float lo, float hi) {
  return v < lo ? lo : v > hi ? hi : v;
}
/* x[0..per) clipped to the per-value bounds lo/hi in place. */
void adv__clip_box(float *x, int64_t per, const float *lo, const float *hi);
/* Per-value bounds of one sample from p's clip_min/clip_max or per-channel
 * clip_lo/clip_hi (channel = dim 1 of dims, the batch being dims[0]):
 * lo/hi receive per floats. ADV_EINVAL when n_clip does not match the
 * channels or a channel's bounds are not lo < hi. */
int adv__clip_bounds(const adv_attack_params *p, int ndim, const int64_t *dims,
                     int64_t per, float *lo, float *hi, adv_err *err);
double adv__norm_linf(const float *a, const float *b, int64_t per);
double adv__norm_l2(const float *a, const float *b, int64_t per);

/* ---- shared by the minimal-norm attacks (deepfool.c) ---- */
/* Signed margin, > 0 on the adversarial side. */
double adv__min_margin(const float *z, int64_t K, int64_t y, int64_t t,
                       int targeted);
/* Margin a returned adversarial keeps: 1e-4 * (1 + max |z|). */
double adv__min_tol(const float *z, int64_t K);
/* Scales found adversarials up by a hair until they keep adv__min_tol of
 * margin wherever they are re-evaluated (see deepfool.c). */
int adv__min_settle(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, int targeted, const float *zc,
                    double accept, float *x_adv, unsigned char *found,
                    float *z);

typedef int (*adv__attack_fn)(adv_eval *ev, const float *x, int64_t n,
                              const int64_t *y, const int64_t *target,
                              float *x_adv);

int adv__attack_fgsm(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                     const int64_t *target, float *x_adv);
int adv__attack_pgd(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target,
                    float *x_adv); /* BIM, PGD, MI-FGSM */
int adv__attack_apgd(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                     const int64_t *target, float *x_adv); /* APGD-CE/DLR/T */
int adv__attack_fab(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, float *x_adv);
int adv__attack_cw(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                   const int64_t *target, float *x_adv);
int adv__attack_deepfool(adv_eval *ev, const float *x, int64_t n,
                         const int64_t *y, const int64_t *target, float *x_adv);
int adv__attack_square(adv_eval *ev, const float *x, int64_t n,
                       const int64_t *y, const int64_t *target, float *x_adv);
int adv__attack_hsj(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, float *x_adv);

#endif
