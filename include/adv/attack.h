/*
 * adv/attack.h - adversarial attacks with one interface.
 *
 *   adv_attack_params p = adv_attack_default_params(ADV_ATTACK_PGD);
 *   p.eps = 0.3f; p.seed = 1;
 *   adv_attack_result r;
 *   adv_attack_run(model, x, n, y, NULL, p, progress, ud, &abort, &r, &err);
 *   ... r.x_adv, r.success ...
 *   adv_attack_result_free(&r);
 *
 * Inputs x (n samples, C-order, the model's input shape without the batch
 * dim) must lie in [clip_min, clip_max]. Every adversarial example returned
 * lies in [clip_min, clip_max] and, for bounded attacks, within eps of x in
 * the attack's norm (checked before returning). A run is a deterministic
 * function of its inputs and p.seed (same thread count => same bytes).
 *
 * Success: untargeted - the model's argmax on x_adv differs from y;
 * targeted - it equals target. Points already misclassified count as
 * successes with x_adv = x (untargeted), as in AutoAttack.
 */
#ifndef ADV_ATTACK_H
#define ADV_ATTACK_H

#include "adv/adv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum adv_attack_kind {
  ADV_ATTACK_FGSM = 0,
  ADV_ATTACK_BIM,
  ADV_ATTACK_PGD,
  ADV_ATTACK_MIFGSM,
  ADV_ATTACK_APGD_CE,   /* APGD on cross-entropy (untargeted) */
  ADV_ATTACK_APGD_DLR,  /* APGD on DLR (untargeted) */
  ADV_ATTACK_APGD_T,    /* APGD on targeted DLR over n_target_classes */
  ADV_ATTACK_FAB,       /* FAB (untargeted) */
  ADV_ATTACK_FAB_T,     /* FAB targeted over n_target_classes */
  ADV_ATTACK_CW_L2,     /* Carlini-Wagner L2 */
  ADV_ATTACK_DEEPFOOL,
  ADV_ATTACK_SQUARE,    /* score-based black box */
  ADV_ATTACK_HSJ,       /* HopSkipJump, decision-based black box */
  ADV_ATTACK_COUNT
} adv_attack_kind;

typedef enum adv_norm { ADV_NORM_LINF = 0, ADV_NORM_L2 = 1 } adv_norm;

/* Name <-> kind ("fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "cw",
 * "deepfool", "square", "hsj", ...). Returns -1 for an unknown name. */
int adv_attack_kind_from_name(const char *name);
const char *adv_attack_name(adv_attack_kind kind);

typedef struct adv_attack_params {
  adv_attack_kind kind;
  adv_norm norm;
  float eps;           /* budget; minimal-norm attacks (CW, DeepFool, FAB)
                          use it only to decide success (<= eps) */
  float step_size;     /* 0 = the attack's default */
  int steps;           /* iterations */
  int restarts;        /* >= 1; the best (successful / highest loss) kept */
  int random_start;    /* PGD family */
  int targeted;        /* uses target[] (or n_target_classes for -T) */
  int n_target_classes;/* APGD-T / FAB-T: top-k classes tried (default 9) */
  adv_loss_kind loss;  /* PGD/BIM/FGSM/MI-FGSM loss (default CE) */
  float momentum;      /* MI-FGSM decay mu (default 1.0) */
  float clip_min, clip_max;
  uint64_t seed;
  int64_t queries;     /* black-box budget per sample (Square, HSJ) */
  float p_init;        /* Square: initial fraction of pixels (0.8 linf) */
  float kappa;         /* CW confidence */
  int binary_steps;    /* CW binary search steps over c */
  float initial_const; /* CW initial c */
  float overshoot;     /* DeepFool / FAB overshoot */
  int candidates;      /* DeepFool: classes considered (default 10) */
  float alpha_max, eta, beta; /* FAB parameters */
  int batch;           /* most samples per engine call; 0 (default) = automatic:
                          the largest power of two <= 256 whose activations
                          fit 8 MiB (docs/attacks.md) */
  int threads;         /* engine threads (default 2) */
} adv_attack_params;

adv_attack_params adv_attack_default_params(adv_attack_kind kind);

/* Per-sample outcome arrays are malloc'd and owned by the result. */
typedef struct adv_attack_result {
  int64_t n, per;       /* samples, floats per sample */
  float *x_adv;         /* n * per */
  int64_t *pred_clean;  /* argmax on x */
  int64_t *pred_adv;    /* argmax on x_adv */
  unsigned char *success;
  float *linf, *l2, *l0;/* perturbation norms per sample */
  int64_t *queries;     /* forward queries spent per sample */
  int64_t forwards;     /* sample-forward passes in total */
  int64_t backwards;    /* sample-backward passes in total */
  double seconds;
} adv_attack_result;

void adv_attack_result_free(adv_attack_result *r);

/* Progress callback: return non-zero to request an abort. */
typedef int (*adv_progress_fn)(void *ud, const char *phase, double fraction);

/*
 * Runs one attack. x: n samples; y: labels (required); target: per-sample
 * target classes for targeted attacks (NULL for -T attacks, which pick the
 * top classes themselves). On success *res is filled (free with
 * adv_attack_result_free). On error *res is empty. Checks *abort_flag (may
 * be NULL) between iterations: ADV_EABORTED.
 */
int adv_attack_run(const adv_model *m, const float *x, int64_t n,
                   const int64_t *y, const int64_t *target,
                   adv_attack_params p, adv_progress_fn progress, void *ud,
                   const volatile int *abort_flag, adv_attack_result *res,
                   adv_err *err);

#ifdef __cplusplus
}
#endif
#endif
