/*
 * adv/job.h - the job spec: everything that defines one attack or one
 * evaluation run, as a plain C struct shared by `aisbx attack|evaluate`
 * (built from command-line options), the server (parsed from JSON) and the
 * sandboxed runner (which executes it, adv/evaluate.h).
 *
 *   adv_job_spec s = adv_job_spec_default_params();
 *   adv_job_spec_set(&s, "attack", "pgd", &err);    // by parameter name
 *   adv_job_spec_set(&s, "eps", "0.3", &err);
 *   if (adv_job_spec_validate(&s, &err)) ... err.msg names the parameter
 *
 * Parameter names are the CLI option names in snake_case (`--step-size` is
 * `step_size`). Their types and ranges live in ONE table
 * (adv_job_param_table); adv_job_spec_set parses and range-checks a value
 * against it and adv_job_spec_validate re-checks every field plus the
 * cross-field rules, so a struct filled directly (e.g. from JSON numbers)
 * gets the same verdicts.
 *
 * This header and its implementation (src/engine/attacks/table.c, CMake
 * target adv_table) depend on nothing but libc: the server links adv_table
 * without the engine.
 */
#ifndef ADV_JOB_H
#define ADV_JOB_H

#include "adv/attack.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum adv_job_kind {
  ADV_JOB_ATTACK = 0,
  ADV_JOB_EVALUATION = 1
} adv_job_kind;

typedef enum adv_suite {
  ADV_SUITE_AUTOATTACK_STANDARD = 0, /* "autoattack-standard" */
  ADV_SUITE_AUTOATTACK_PLUS,         /* "autoattack-plus" */
  ADV_SUITE_CUSTOM,                  /* "custom": the attacks[] list */
} adv_suite;

#define ADV_JOB_MAX_EPS 64     /* values in an eps sweep */
#define ADV_JOB_MAX_ATTACKS 16 /* attacks in a custom suite */

/*
 * Bits of adv_job_spec.set for the job-level fields (the attack-parameter
 * bits are ADV_PARAM_* of adv/attack.h, bits 0..23).
 */
enum {
  ADV_JOB_SET_NORM = 1u << 24,
  ADV_JOB_SET_EPS_SWEEP = 1u << 25,
  ADV_JOB_SET_INPUT = 1u << 26,
  ADV_JOB_SET_MEAN = 1u << 27,
  ADV_JOB_SET_STD = 1u << 28,
  ADV_JOB_SET_OBJECTIVE = 1u << 29, /* objective, min_distance */
  ADV_JOB_SET_OUTPUT = 1u << 30,
};

#define ADV_JOB_MAX_CHANNELS 16 /* mean/std values */
#define ADV_JOB_NAME_MAX 64     /* input name, with its NUL */

typedef struct adv_job_spec {
  adv_job_kind kind;
  /* attack job: params.kind is the attack. Both kinds: the attack
   * parameters; a field overrides the per-attack default only when its
   * ADV_PARAM_* bit is in `set` (norm: ADV_JOB_SET_NORM). seed, threads,
   * batch, clip_min/clip_max are always taken from here. */
  adv_attack_params params;
  uint32_t set;
  /* evaluation */
  adv_suite suite;
  int n_attacks; /* custom suite */
  adv_attack_kind attacks[ADV_JOB_MAX_ATTACKS];
  int n_eps; /* 0: a single eps (params.eps when set, else 8/255 for L-inf
                and 0.5 for L2) */
  float eps_sweep[ADV_JOB_MAX_EPS];
  /* samples: the contiguous slice [shard_offset, shard_offset +
   * shard_count) of the data (count 0 = to the end), then the first n of
   * it (0 = all) */
  int64_t n;
  int64_t shard_offset, shard_count;
  /* attack job with targeted=1 on an ADV_TARGET_CLASS attack: the target
   * class of every sample, or -1 for a random wrong class per sample
   * (adv_targets_random, from params.seed) */
  int64_t target;
  /* the input domain (issue 13): the attacked model input by name ("" =
   * the first float input; the model's other inputs come from the data
   * NPZ's members of the same names or their initializers), and an
   * optional (x - mean) / std prepended to the model (n_mean, n_std: 0 =
   * none, 1 = every channel, or one per channel; a missing one of the two
   * is mean 0 / std 1). Attacks and clip_min/clip_max are then in the
   * un-normalized (pixel) space. See adv_model_bind (adv/adv.h). */
  char input[ADV_JOB_NAME_MAX];
  int n_mean;
  float mean[ADV_JOB_MAX_CHANNELS];
  int n_std;
  float std[ADV_JOB_MAX_CHANNELS];
  /* per-channel clip bounds (issue 13): set through clip_min/clip_max
   * with one value per channel (dim 1 of the attacked input, <=
   * ADV_CLIP_MAX_CHANNELS). 0 = the scalar params.clip_min/clip_max for
   * every channel; with a list, the scalar holds the list's envelope (its
   * min for clip_min, its max for clip_max). A list of one side with a
   * scalar other side broadcasts the scalar. */
  int n_clip_min;
  float clip_min_ch[ADV_CLIP_MAX_CHANNELS];
  int n_clip_max;
  float clip_max_ch[ADV_CLIP_MAX_CHANNELS];
  /* the output-distance objective (issue 13 item 4; params.objective,
   * params.min_distance): the model output it measures by name ("" =
   * output 0), and for a targeted attack the target output - borrowed,
   * set by the caller (the CLI's --target-output), never part of the JSON
   * form: float32, one sample's output (broadcast) or one per dataset
   * sample (the same N as the data, sliced with it). */
  char output[ADV_JOB_NAME_MAX];
  const adv_array *target_output;
} adv_job_spec;

/* An attack job running PGD with its defaults, nothing set, suite
 * autoattack-standard, all samples, target -1. */
adv_job_spec adv_job_spec_default_params(void);

/*
 * Sets one parameter by its snake_case name from its text form: numbers
 * in C syntax (integers through strtoll/strtoull: no exponent, no
 * fraction, exact up to the type's range), booleans "true"/"false"/"1"/"0",
 * norm "inf"/"linf"/"2"/"l2", lists comma-separated. Range-checked
 * against the table; marks the parameter set. On error the spec is
 * unchanged, err (may be NULL) names the parameter, returns ADV_EINVAL
 * (ADV_ENOTFOUND for an unknown name).
 */
int adv_job_spec_set(adv_job_spec *s, const char *name, const char *value,
                     adv_err *err);

/*
 * Checks a whole spec: every field against the table's ranges, the attack
 * and its norm, targeting, the suite and its attack list, the eps sweep
 * (ascending after sorting is the caller's business: any order accepted),
 * the sample slice. Returns 0 or ADV_EINVAL with err (may be NULL)
 * "<parameter>: <reason>".
 */
int adv_job_spec_validate(const adv_job_spec *s, adv_err *err);

/*
 * The parameters of one attack inside a job: adv_attack_default_params
 * (kind), then every field the spec sets, then seed/threads/batch/clip;
 * eps is the given value when eps >= 0. In an evaluation the suite's
 * restarts (1 or 5) win unless the spec sets restarts for a custom suite,
 * and steps are not applied to Square (it counts queries); this is the
 * one place those rules live.
 */
adv_attack_params adv_job_attack_params(const adv_job_spec *s,
                                        adv_attack_kind kind, float eps,
                                        int suite_restarts);

/* Suite name <-> enum ("autoattack-standard", ...); -1 when unknown. */
int adv_suite_from_name(const char *name);
const char *adv_suite_name(adv_suite suite);

/* The attacks of a suite with their restarts; returns the count (<=
 * ADV_JOB_MAX_ATTACKS). Custom: the spec's list with restarts from the
 * spec (or 1). */
int adv_job_suite_items(const adv_job_spec *s,
                        adv_attack_kind kinds[ADV_JOB_MAX_ATTACKS],
                        int restarts[ADV_JOB_MAX_ATTACKS]);

/* ---- the parameter table (for the CLI's options and the server's JSON
 * Schema catalogue) ---- */
typedef enum adv_job_ptype {
  ADV_JOB_PT_INT,    /* int field, lo..hi */
  ADV_JOB_PT_INT64,  /* int64_t field, lo..hi */
  ADV_JOB_PT_UINT64, /* uint64_t field, 0 .. UINT64_MAX */
  ADV_JOB_PT_FLOAT,  /* finite, lo..hi */
  ADV_JOB_PT_BOOL,
  ADV_JOB_PT_NORM,      /* "inf" | "2" */
  ADV_JOB_PT_ATTACK,    /* an attack name */
  ADV_JOB_PT_SUITE,     /* a suite name */
  ADV_JOB_PT_KIND,      /* "attack" | "evaluation" */
  ADV_JOB_PT_LOSS,      /* "ce" | "cw" | "dlr" | "logit" */
  ADV_JOB_PT_FLOATS,    /* comma-separated floats (eps_sweep), lo..hi each */
  ADV_JOB_PT_ATTACKS,   /* comma-separated attack names */
  ADV_JOB_PT_NAME,      /* a string of 1..ADV_JOB_NAME_MAX-1 printable chars */
  ADV_JOB_PT_OBJECTIVE, /* "classify" | "output-distance" */
  ADV_JOB_PT_BOUND,     /* a float (the field, lo..hi), or comma-separated
                           one per channel (clip_min/clip_max: the list goes
                           to clip_min_ch/clip_max_ch, adv_job_spec_bound) */
} adv_job_ptype;

typedef struct adv_job_param_info {
  const char *name; /* snake_case; the CLI option is --name with '-' */
  adv_job_ptype type;
  double lo, hi;    /* inclusive range (numeric types) */
  uint32_t bit;     /* ADV_PARAM_* / ADV_JOB_SET_* or 0 */
  size_t offset;    /* of the field in adv_job_spec (lists: the array;
                       eps_sweep's count is n_eps, attacks' n_attacks) */
  const char *help; /* one line */
} adv_job_param_info;

/* The table, terminated by an entry with name NULL; *count (may be NULL)
 * receives the number of entries. Static storage. */
const adv_job_param_info *adv_job_param_table(int *count);

/* The values of a float-list parameter (ADV_JOB_PT_FLOATS: eps_sweep,
 * mean, std) in s: returns their count and points *vals at them; *cap
 * (may be NULL) receives the most values the list takes. -1 for another
 * parameter. */
int adv_job_spec_floats(const adv_job_spec *s, const adv_job_param_info *q,
                        const float **vals, int *cap);

/* The per-channel list of a bound parameter (ADV_JOB_PT_BOUND) in s:
 * returns its count (0: the scalar field applies to every channel) and
 * points *vals at it; -1 for another parameter. */
int adv_job_spec_bound(const adv_job_spec *s, const adv_job_param_info *q,
                       const float **vals);

/* Loss name <-> kind ("ce", "cw", "dlr", "logit"); -1 when unknown. */
int adv_loss_from_name(const char *name);
const char *adv_loss_name(adv_loss_kind k);

#ifdef __cplusplus
}
#endif
#endif
