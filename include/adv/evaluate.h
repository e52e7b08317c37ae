/*
 * adv/evaluate.h - running a job (adv/job.h): one attack, or an evaluation
 * (the AutoAttack cascade over suites given as data, eps sweeps), on a
 * loaded model and dataset arrays. This is the one entry point the CLI and
 * the sandboxed runner share:
 *
 *   adv_job_spec s = adv_job_spec_default_params();   ... set, validate
 *   adv_job_result r;
 *   if (adv_job_run(model, &ds.x, &ds.y, &s, progress, ud, &abort, &r, &err))
 *     ... err.msg
 *   adv_report_write_file(f, &meta, &s, &r);           (adv/report.h)
 *   adv_job_result_free(&r);
 *
 * Deterministic: the same model, data, spec (seed) and thread count give
 * the same bytes in every number but the timings.
 */
#ifndef ADV_EVALUATE_H
#define ADV_EVALUATE_H

#include "adv/attack.h"
#include "adv/job.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ADV_JOB_MAX_WARNINGS 8

/* One eps of an evaluation: what each attack of the suite did. */
typedef struct adv_eval_point {
  float eps;
  int64_t robust; /* samples still robust after the whole suite */
  int n_att;      /* attacks that ran (== the suite's count) */
  int64_t newly[ADV_JOB_MAX_ATTACKS]; /* samples each attack broke */
  double secs[ADV_JOB_MAX_ATTACKS];   /* its wall time */
  int64_t fw[ADV_JOB_MAX_ATTACKS], bw[ADV_JOB_MAX_ATTACKS]; /* queries */
} adv_eval_point;

/*
 * The outcome of a job. Arrays have n entries and are malloc'd, owned by
 * the result (adv_job_result_free). Index i is sample offset + i of the
 * dataset.
 */
typedef struct adv_job_result {
  adv_job_kind kind;
  int64_t n, per;  /* samples, floats per sample */
  int64_t offset;  /* first dataset sample (the shard) */
  int64_t classes; /* K of the model */
  int x_ndim;      /* shape of x_adv: n x dims[1..] */
  int64_t x_dims[ADV_MAX_DIMS];
  float *x_adv;         /* n * per; evaluation: the first adversarial found
                           per broken sample (the clean input otherwise) */
  const int64_t *label; /* borrowed: the labels of the slice (lives as long
                           as the dataset passed in) */
  int64_t *pred_clean;
  float *linf, *l2; /* perturbation norms (evaluation: of the breaking
                       adversarial, 0 when robust) */
  /* summary */
  int64_t correct; /* clean-correct samples */
  int64_t robust;  /* correct and not broken (last eps) */
  double clean_accuracy, robust_accuracy, attack_success_rate;
  double wall_time_s;
  int64_t forwards, backwards; /* queries in total */
  /* attack job */
  adv_attack_params params; /* effective parameters */
  int64_t *target;          /* per-sample targets, or NULL */
  int64_t *pred_adv;
  unsigned char *success;
  float *l0;
  int64_t *queries;
  /* attack job with the output-distance objective (params.objective; NULL
   * / 0 otherwise): per sample ||f(x_adv) - f(x)||_2, that over
   * ||f(x)||_2, and targeted ||f(x_adv) - t||_2 and ||f(x) - t||_2; their
   * means and medians. pred_clean/pred_adv are -1, classes 0 and the
   * accuracies 0 (the report writes null). */
  int64_t out_per; /* floats of the measured output per sample */
  float *out_dist, *out_rel, *tgt_dist, *tgt_dist_clean;
  double out_dist_mean, out_dist_median, out_rel_mean, out_rel_median;
  double tgt_dist_mean, tgt_dist_median, tgt_dist_clean_mean;
  /* evaluation */
  adv_suite suite;
  int n_items;
  adv_attack_kind items[ADV_JOB_MAX_ATTACKS];
  adv_attack_params item_params[ADV_JOB_MAX_ATTACKS]; /* at the last eps */
  int n_eps;
  adv_eval_point *curve;    /* n_eps points, eps ascending */
  unsigned char *is_robust; /* per sample, at the last eps */
  int *broken_by;           /* index into items, -1 when robust */
  int n_warnings;
  char warnings[ADV_JOB_MAX_WARNINGS][256];
} adv_job_result;

void adv_job_result_free(adv_job_result *r);

/* What a job is doing, for progress reports. */
typedef enum adv_job_event {
  ADV_JOB_EV_PROGRESS = 0, /* inside an attack */
  ADV_JOB_EV_ATTACK_START, /* an attack of the suite starts (on `active`
                              still-robust samples) */
  ADV_JOB_EV_EPS_DONE,     /* an eps of the sweep is done (`robust`) */
} adv_job_event;

typedef struct adv_job_progress {
  adv_job_event event;
  double fraction;    /* of the whole job, 0..1 */
  const char *phase;  /* the attack's own phase, or its name */
  const char *attack; /* current attack's name */
  float eps;          /* current eps */
  int64_t active;     /* samples the current attack works on */
  int64_t robust, n;  /* robust so far at this eps, of n */
} adv_job_progress;

/* Return non-zero to abort the job (ADV_EABORTED). */
typedef int (*adv_job_progress_fn)(void *ud, const adv_job_progress *p);

/*
 * Runs a job on a loaded single-input model. x: the dataset (F32, dims[0]
 * = N; symbolic model dims take the data's size), y: I64 labels (N; may
 * be NULL for the output-distance objective, which uses none). The
 * spec is validated first (ADV_EINVAL naming the parameter). Samples: the
 * shard slice, then the first spec->n. progress (may be NULL) and
 * abort_flag (may be NULL, polled between iterations) as in adv_attack_run.
 * On error *res is empty and err says why (ADV_EINVAL / ADV_ESHAPE /
 * ADV_EUNSUPPORTED: the inputs do not fit; others: failures).
 */
int adv_job_run(const adv_model *m, const adv_array *x, const adv_array *y,
                const adv_job_spec *spec, adv_job_progress_fn progress,
                void *ud, const volatile int *abort_flag, adv_job_result *res,
                adv_err *err);

/*
 * The evaluation part alone: spec->kind must be ADV_JOB_EVALUATION; x: n
 * samples of shape dims[1..ndim-1]. Clean predictions, AutoAttack's sanity
 * checks (randomness, probabilities, zero gradients -> warnings), then for
 * every eps (ascending) each attack of the suite on the samples still
 * robust, keeping the first adversarial that breaks each sample.
 */
int adv_evaluate_run(const adv_model *m, int ndim, const int64_t *dims,
                     const float *x, int64_t n, const int64_t *y,
                     const adv_job_spec *spec, adv_job_progress_fn progress,
                     void *ud, const volatile int *abort_flag,
                     adv_job_result *res, adv_err *err);

/*
 * The model a job runs on (adv/job.h's input domain): NULL in *out when
 * `base` runs as it is (one input, no input name, no mean/std, not a
 * binary classifier); otherwise
 * a single-input view (adv_model_bind) attacking spec->input (default: the
 * first float input), with the model's other inputs taken from the data's
 * NPZ members of the same names (data_len bytes at `data`, or the file
 * data_path when data is NULL) or their initializers, and (x - mean) / std
 * in front when the spec sets mean/std; a binary classifier (output 0
 * N x 1 from a Sigmoid, adv_model_binary_output) gets it as two classes
 * (adv_model_bind's `binary`). The view borrows `base`: free it
 * (adv_model_free) first. Errors (ADV_EINVAL naming a missing input or an
 * unknown input name, ADV_ESHAPE for mean/std that do not fit the
 * channels): *out NULL.
 */
int adv_job_model(const adv_model *base, const adv_job_spec *spec,
                  const char *data_path, const void *data, size_t data_len,
                  adv_model **out, adv_err *err);

/*
 * Random target classes: for each sample a class != y[i] drawn uniformly
 * from the K-1 others with the engine's PRNG (xoshiro256** seeded by
 * splitmix64 of seed), so the same seed gives the same targets everywhere.
 * K >= 2, y[i] in [0, K). Writes target[0..n-1].
 */
int adv_targets_random(uint64_t seed, const int64_t *y, int64_t n,
                       int64_t classes, int64_t *target, adv_err *err);

#ifdef __cplusplus
}
#endif
#endif
