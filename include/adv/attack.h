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
 * dim) must lie in [clip_min, clip_max] (per channel with n_clip: channel
 * = dim 1 of the input). Every adversarial example returned lies in the
 * same bounds and, for bounded attacks, within eps of x in
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

typedef enum adv_norm { ADV_NORM_LINF = 0, ADV_NORM_L2 = 1 } adv_norm;

/* Bits of a norm set: which norms an attack supports. */
#define ADV_NORMS_LINF (1u << ADV_NORM_LINF)
#define ADV_NORMS_L2 (1u << ADV_NORM_L2)
#define ADV_NORMS_ANY (ADV_NORMS_LINF | ADV_NORMS_L2)

/* How an attack can be targeted. */
typedef enum adv_target_mode {
  ADV_TARGET_NONE = 0, /* untargeted only */
  ADV_TARGET_CLASS,    /* optional: with targeted=1 it uses target[] */
  ADV_TARGET_TOPK,     /* always targeted, over the n_target_classes top
                          classes it picks itself (no target[]) */
} adv_target_mode;

/*
 * Bits naming the adv_attack_params fields an attack reads (beyond norm,
 * clip_min/clip_max, batch and threads, which every attack honours). The
 * job-spec parameter table (adv/job.h) uses the same bits; a parameter an
 * attack does not read is accepted by validation but has no effect.
 */
#define ADV_PARAM_MAP(X)                                                       \
  X(EPS, 0)                                                                    \
  X(STEPS, 1)                                                                  \
  X(STEP_SIZE, 2)                                                              \
  X(RESTARTS, 3)                                                               \
  X(RANDOM_START, 4)                                                           \
  X(TARGETED, 5)                                                               \
  X(N_TARGET_CLASSES, 6)                                                       \
  X(LOSS, 7)                                                                   \
  X(MOMENTUM, 8)                                                               \
  X(QUERIES, 9)                                                                \
  X(P_INIT, 10)                                                                \
  X(CONFIDENCE, 11)                                                            \
  X(BINARY_STEPS, 12)                                                          \
  X(INITIAL_CONST, 13)                                                         \
  X(OVERSHOOT, 14)                                                             \
  X(CANDIDATES, 15)                                                            \
  X(FAB, 16) /* alpha_max, eta, beta */                                        \
  X(SEED, 17)

enum {
#define ADV__PARAM_BIT(name, bit) ADV_PARAM_##name = 1u << (bit),
  ADV_PARAM_MAP(ADV__PARAM_BIT)
#undef ADV__PARAM_BIT
};

/*
 * The attack table: ONE row per attack generates the enum, the names,
 * the defaults (adv_attack_default_params), the minimal-norm flag, the
 * norms, the targeted flavour, the parameter mask and (in run.c) the
 * dispatch. Columns:
 *   ID        enum suffix (ADV_ATTACK_<ID>)
 *   name      canonical name (CLI, job specs, result JSON)
 *   aliases   comma-separated extra names accepted on input ("" for none)
 *   fn        engine entry point (internal; only run.c uses it)
 *   minimal   1: minimal-norm attack (returns the smallest adversarial it
 *             finds, eps only decides success); 0: bounded (projected)
 *   norms     ADV_NORMS_* the attack supports
 *   target    adv_target_mode
 *   params    ADV_PARAM_* bits of the fields it reads
 *   defaults  a comma expression on the adv_attack_params `p` applied on top
 *             of the common defaults (see adv_attack_default_params)
 */
#define ADV_ATTACK_MAP(X)                                                      \
  X(FGSM, "fgsm", "", adv__attack_fgsm, 0, ADV_NORMS_ANY, ADV_TARGET_CLASS,    \
    ADV_PARAM_EPS | ADV_PARAM_LOSS | ADV_PARAM_TARGETED, (p.steps = 1))        \
  X(BIM, "bim", "", adv__attack_pgd, 0, ADV_NORMS_ANY, ADV_TARGET_CLASS,       \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_RESTARTS | ADV_PARAM_RANDOM_START | ADV_PARAM_LOSS |         \
        ADV_PARAM_TARGETED | ADV_PARAM_SEED,                                   \
    (p.steps = 10))                                                            \
  X(PGD, "pgd", "", adv__attack_pgd, 0, ADV_NORMS_ANY, ADV_TARGET_CLASS,       \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_RESTARTS | ADV_PARAM_RANDOM_START | ADV_PARAM_LOSS |         \
        ADV_PARAM_TARGETED | ADV_PARAM_SEED,                                   \
    (p.steps = 40, p.random_start = 1))                                        \
  X(MIFGSM, "mifgsm", "mi-fgsm", adv__attack_pgd, 0, ADV_NORMS_ANY,            \
    ADV_TARGET_CLASS,                                                          \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_RESTARTS | ADV_PARAM_RANDOM_START | ADV_PARAM_LOSS |         \
        ADV_PARAM_TARGETED | ADV_PARAM_MOMENTUM | ADV_PARAM_SEED,              \
    (p.steps = 10))                                                            \
  /* APGD on cross-entropy (untargeted) */                                     \
  X(APGD_CE, "apgd-ce", "", adv__attack_apgd, 0, ADV_NORMS_ANY,                \
    ADV_TARGET_NONE,                                                           \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_RESTARTS | ADV_PARAM_SEED,                                   \
    (p.steps = 100))                                                           \
  /* APGD on DLR (untargeted) */                                               \
  X(APGD_DLR, "apgd-dlr", "", adv__attack_apgd, 0, ADV_NORMS_ANY,              \
    ADV_TARGET_NONE,                                                           \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_RESTARTS | ADV_PARAM_SEED,                                   \
    (p.steps = 100))                                                           \
  /* APGD on targeted DLR over n_target_classes */                             \
  X(APGD_T, "apgd-t", "", adv__attack_apgd, 0, ADV_NORMS_ANY, ADV_TARGET_TOPK, \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_RESTARTS | ADV_PARAM_N_TARGET_CLASSES | ADV_PARAM_SEED,      \
    (p.steps = 100, p.targeted = 1))                                           \
  /* FAB (untargeted) */                                                       \
  X(FAB, "fab", "", adv__attack_fab, 1, ADV_NORMS_ANY, ADV_TARGET_NONE,        \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_RESTARTS | ADV_PARAM_FAB |     \
        ADV_PARAM_SEED,                                                        \
    (p.steps = 100))                                                           \
  /* FAB targeted over n_target_classes */                                     \
  X(FAB_T, "fab-t", "", adv__attack_fab, 1, ADV_NORMS_ANY, ADV_TARGET_TOPK,    \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_RESTARTS | ADV_PARAM_FAB |     \
        ADV_PARAM_N_TARGET_CLASSES | ADV_PARAM_SEED,                           \
    (p.steps = 100, p.targeted = 1))                                           \
  /* Carlini-Wagner L2: lr 0.1, 5 binary steps from c = 1 (with lr 0.01        \
   * pixels saturated at 0/1 barely move in tanh space;                        \
   * docs/attacks-minimal.md) */                                               \
  X(CW_L2, "cw", "cw-l2,cw_l2", adv__attack_cw, 1, ADV_NORMS_L2,               \
    ADV_TARGET_CLASS,                                                          \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_STEP_SIZE |                    \
        ADV_PARAM_TARGETED | ADV_PARAM_CONFIDENCE | ADV_PARAM_BINARY_STEPS |   \
        ADV_PARAM_INITIAL_CONST,                                               \
    (p.steps = 100, p.norm = ADV_NORM_L2, p.step_size = 0.1f,                  \
     p.binary_steps = 5, p.initial_const = 1.f, p.eps = 0.f))                  \
  X(DEEPFOOL, "deepfool", "", adv__attack_deepfool, 1, ADV_NORMS_ANY,          \
    ADV_TARGET_CLASS,                                                          \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_TARGETED |                     \
        ADV_PARAM_OVERSHOOT | ADV_PARAM_CANDIDATES,                            \
    (p.steps = 50, p.norm = ADV_NORM_L2, p.eps = 0.f))                         \
  /* score-based black box */                                                  \
  X(SQUARE, "square", "", adv__attack_square, 0, ADV_NORMS_ANY,                \
    ADV_TARGET_CLASS,                                                          \
    ADV_PARAM_EPS | ADV_PARAM_TARGETED | ADV_PARAM_QUERIES |                   \
        ADV_PARAM_P_INIT | ADV_PARAM_SEED,                                     \
    (p.queries = 5000, p.p_init = 0.8f))                                       \
  /* HopSkipJump, decision-based black box; minimal-norm: no budget unless     \
   * asked */                                                                  \
  X(HSJ, "hsj", "hopskipjump", adv__attack_hsj, 1, ADV_NORMS_ANY,              \
    ADV_TARGET_CLASS,                                                          \
    ADV_PARAM_EPS | ADV_PARAM_STEPS | ADV_PARAM_TARGETED | ADV_PARAM_QUERIES | \
        ADV_PARAM_SEED,                                                        \
    (p.queries = 5000, p.steps = 40, p.norm = ADV_NORM_L2, p.eps = 0.f))

typedef enum adv_attack_kind {
#define ADV__ATTACK_ENUM(id, name, aliases, fn, minimal, norms, target,        \
                         params, defaults)                                     \
  ADV_ATTACK_##id,
  ADV_ATTACK_MAP(ADV__ATTACK_ENUM)
#undef ADV__ATTACK_ENUM
      ADV_ATTACK_COUNT
} adv_attack_kind;

/* Name <-> kind ("fgsm", "pgd", "apgd-ce", "apgd-t", "fab-t", "cw",
 * "deepfool", "square", "hsj", and the aliases of the table). Returns -1
 * for an unknown name or NULL. adv_attack_name returns the canonical name,
 * "unknown" for a kind out of range (never NULL). */
int adv_attack_kind_from_name(const char *name);
const char *adv_attack_name(adv_attack_kind kind);
/* Comma-separated aliases of an attack ("" when none or out of range). */
const char *adv_attack_aliases(adv_attack_kind kind);

/* Table queries; out-of-range kinds give 0. */
int adv_attack_is_minimal(adv_attack_kind kind);
unsigned adv_attack_norms(adv_attack_kind kind); /* ADV_NORMS_* */
adv_target_mode adv_attack_target_mode(adv_attack_kind kind);
unsigned adv_attack_param_mask(adv_attack_kind kind); /* ADV_PARAM_* */

/* What an attack optimizes (issue 13 item 4). */
typedef enum adv_objective {
  ADV_OBJECTIVE_CLASSIFY = 0,    /* "classify": N x K class scores, labels */
  ADV_OBJECTIVE_OUTPUT_DISTANCE, /* "output-distance": any output shape;
                                    untargeted maximizes ||f(x') - f(x)||_2,
                                    targeted minimizes ||f(x') - t||_2 */
} adv_objective;

/* Most channels with their own clip bounds (adv_attack_params.n_clip). */
#define ADV_CLIP_MAX_CHANNELS 16

typedef struct adv_attack_params {
  adv_attack_kind kind;
  adv_norm norm;
  float eps;            /* budget; minimal-norm attacks (CW, DeepFool, FAB)
                           use it only to decide success (<= eps) */
  float step_size;      /* 0 = the attack's default */
  int steps;            /* iterations */
  int restarts;         /* >= 1; the best (successful / highest loss) kept */
  int random_start;     /* PGD family */
  int targeted;         /* uses target[] (or n_target_classes for -T) */
  int n_target_classes; /* APGD-T / FAB-T: top-k classes tried (default 9) */
  adv_loss_kind loss;   /* PGD/BIM/FGSM/MI-FGSM loss (default CE) */
  float momentum;       /* MI-FGSM decay mu (default 1.0) */
  float clip_min, clip_max; /* the input domain of every value; with n_clip
                               > 0 the envelope of the per-channel bounds */
  int n_clip; /* 0: clip_min/clip_max bound every value; else the attacked
                 input's channel count (its dim 1, as --mean/--std) and
                 channel c of every sample lies in [clip_lo[c], clip_hi[c]]
                 (clip_lo[c] < clip_hi[c]) */
  float clip_lo[ADV_CLIP_MAX_CHANNELS], clip_hi[ADV_CLIP_MAX_CHANNELS];
  uint64_t seed;
  int64_t queries;     /* black-box budget per sample (Square, HSJ) */
  float p_init;        /* Square: initial fraction of pixels (0.8 linf) */
  float kappa;         /* CW confidence (job spec / CLI: confidence) */
  int binary_steps;    /* CW binary search steps over c */
  float initial_const; /* CW initial c */
  float overshoot;     /* DeepFool / FAB overshoot */
  int candidates;      /* DeepFool: classes considered (default 10) */
  float alpha_max, eta, beta; /* FAB parameters */
  int batch;         /* most samples per engine call; 0 (default) = automatic:
                        the largest power of two <= 256 whose activations
                        fit 8 MiB (docs/attacks.md) */
  int threads;       /* engine threads (default 2) */
  int resc_schedule; /* Square: 1 (default, SquareAttack's default) rescales
                        the p schedule's breakpoints to `queries`; 0 uses
                        them as absolute iterations, as AutoAttack does
                        (resc_schedule=False; its suites set 0) */
  /* the output-distance objective (docs/objectives.md): output 0 of the
   * model as it is (no Softmax bypass), K = its floats per sample. Labels
   * are not used (y may be NULL); targeted (targeted = 1) needs
   * target_output: target_output_n rows of K floats (borrowed for the
   * call), 1 (every sample) or n. Success: min_distance > 0 and,
   * untargeted, ||f(x_adv) - f(x)|| >= min_distance, targeted
   * ||f(x_adv) - t|| <= min_distance (HSJ's decision). Supported by fgsm,
   * bim, pgd, mifgsm, apgd-ce (its CE step on this loss), square and hsj
   * (which needs min_distance > 0); the others refuse it. */
  adv_objective objective;
  float min_distance;
  const float *target_output;
  int64_t target_output_n;
  const int64_t *sample_ids; /* NULL, or n ids (borrowed for the call) that
                                key each sample's random streams instead of
                                its position: a sample's outcome then does
                                not depend on which others share the call
                                (PGD family, APGD, FAB, Square, HSJ) */
} adv_attack_params;

adv_attack_params adv_attack_default_params(adv_attack_kind kind);

/* Per-sample outcome arrays are malloc'd and owned by the result. */
typedef struct adv_attack_result {
  int64_t n, per;      /* samples, floats per sample */
  float *x_adv;        /* n * per */
  int64_t *pred_clean; /* argmax on x */
  int64_t *pred_adv;   /* argmax on x_adv */
  unsigned char *success;
  float *linf, *l2, *l0; /* perturbation norms per sample */
  int64_t *queries;      /* forward queries spent per sample */
  /* output-distance objective (NULL otherwise; pred_* are then -1):
   * out_dist ||f(x_adv) - f(x)||_2, out_rel out_dist / ||f(x)||_2 (0 when
   * f(x) = 0), and targeted: tgt_dist ||f(x_adv) - t||_2 and
   * tgt_dist_clean ||f(x) - t||_2 (NULL when untargeted) */
  int64_t out_per; /* floats of the output per sample */
  float *out_dist, *out_rel, *tgt_dist, *tgt_dist_clean;
  int64_t forwards;  /* sample-forward passes in total */
  int64_t backwards; /* sample-backward passes in total */
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
                   const int64_t *y, const int64_t *target, adv_attack_params p,
                   adv_progress_fn progress, void *ud,
                   const volatile int *abort_flag, adv_attack_result *res,
                   adv_err *err);

/*
 * The same for a model whose input has symbolic dims: the samples have
 * shape dims[1..ndim-1] (dims[0] is ignored), checked against the model
 * with adv_model_check_input. adv_attack_run is this with the model's
 * declared shape (ADV_ESHAPE when a dim other than the batch is symbolic).
 */
int adv_attack_run_shape(const adv_model *m, int ndim, const int64_t *dims,
                         const float *x, int64_t n, const int64_t *y,
                         const int64_t *target, adv_attack_params p,
                         adv_progress_fn progress, void *ud,
                         const volatile int *abort_flag, adv_attack_result *res,
                         adv_err *err);

#ifdef __cplusplus
}
#endif
#endif
