/*
 * table.c - the attack table (names, defaults, flags; generated from
 * ADV_ATTACK_MAP in adv/attack.h) and the job spec (adv/job.h): its
 * parameter table, the text setter and the validation.
 *
 * Self-contained on purpose: public headers and libc only, no call into
 * the rest of the engine. It builds as the CMake target adv_table, which
 * libadv links and which the server (never linking libadv) links to
 * validate job specs with exactly the engine's rules.
 */
#include "adv/attack.h"
#include "adv/job.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- the attack table ---------------- */

typedef struct attack_row {
  const char *name, *aliases;
  int minimal;
  unsigned norms;
  adv_target_mode target;
  unsigned params;
} attack_row;

static const attack_row attacks[] = {
#define ADV__ATTACK_ROW(id, name, aliases, fn, minimal, norms, target, params, \
                        defaults)                                              \
  [ADV_ATTACK_##id] = {name, aliases, minimal, norms, target, params},
    ADV_ATTACK_MAP(ADV__ATTACK_ROW)
#undef ADV__ATTACK_ROW
};
/* (The rows, the enum and run.c's dispatch come from the same macro, so
 * they cannot disagree; no assert is needed for them. The name tables
 * below are written by hand and are pinned against their enums.) */

static const attack_row *row(adv_attack_kind k) {
  return (int)k >= 0 && k < ADV_ATTACK_COUNT ? &attacks[k] : NULL;
}

/* Non-zero when `name` is one of the comma-separated names in `list`. */
static int in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && !strncmp(p, name, n))
      return 1;
    if (!e)
      break;
    p = e + 1;
  }
  return 0;
}

int adv_attack_kind_from_name(const char *name) {
  if (!name)
    return -1;
  for (int i = 0; i < ADV_ATTACK_COUNT; i++)
    if (!strcmp(attacks[i].name, name) || in_list(attacks[i].aliases, name))
      return i;
  return -1;
}

const char *adv_attack_name(adv_attack_kind kind) {
  return row(kind) ? row(kind)->name : "unknown";
}

const char *adv_attack_aliases(adv_attack_kind kind) {
  return row(kind) ? row(kind)->aliases : "";
}

int adv_attack_is_minimal(adv_attack_kind kind) {
  return row(kind) ? row(kind)->minimal : 0;
}

unsigned adv_attack_norms(adv_attack_kind kind) {
  return row(kind) ? row(kind)->norms : 0;
}

adv_target_mode adv_attack_target_mode(adv_attack_kind kind) {
  return row(kind) ? row(kind)->target : ADV_TARGET_NONE;
}

unsigned adv_attack_param_mask(adv_attack_kind kind) {
  return row(kind) ? row(kind)->params : 0;
}

/*
 * Common defaults first, then the attack's own column of the table. The
 * common values are also what the result JSON shows for parameters an
 * attack does not use (binary_steps 9 for PGD, ...), kept byte-stable.
 */
adv_attack_params adv_attack_default_params(adv_attack_kind kind) {
  adv_attack_params p;
  memset(&p, 0, sizeof(p));
  p.kind = kind;
  p.norm = ADV_NORM_LINF;
  p.eps = 8.f / 255.f;
  p.restarts = 1;
  p.n_target_classes = 9;
  p.loss = ADV_LOSS_CE;
  p.momentum = 1.0f;
  p.clip_min = 0.f;
  p.clip_max = 1.f;
  p.seed = 0;
  p.batch = 0; /* automatic (eval.c chunk_of) */
  p.threads = 2;
  p.kappa = 0.f;
  p.binary_steps = 9;
  p.initial_const = 1e-2f;
  p.overshoot = 0.02f;
  p.candidates = 10;
  p.alpha_max = 0.1f;
  p.eta = 1.05f;
  p.beta = 0.9f;
  p.resc_schedule = 1;
  switch (kind) {
#define ADV__ATTACK_DEFAULTS(id, name, aliases, fn, minimal, norms, target,    \
                             params, defaults)                                 \
  case ADV_ATTACK_##id:                                                        \
    (void)defaults;                                                            \
    break;
    ADV_ATTACK_MAP(ADV__ATTACK_DEFAULTS)
#undef ADV__ATTACK_DEFAULTS
  default:
    break;
  }
  return p;
}

/* ---------------- names of the other enums ---------------- */

/* Switches without a default: with -Wswitch (on in -Wall, an error under
 * ADV_WERROR) a suite or loss added to its enum without a name here fails
 * the build. */
const char *adv_suite_name(adv_suite suite) {
  switch (suite) {
  case ADV_SUITE_AUTOATTACK_STANDARD:
    return "autoattack-standard";
  case ADV_SUITE_AUTOATTACK_PLUS:
    return "autoattack-plus";
  case ADV_SUITE_CUSTOM:
    return "custom";
  }
  return "unknown";
}

const char *adv_loss_name(adv_loss_kind k) {
  switch (k) {
  case ADV_LOSS_CE:
    return "ce";
  case ADV_LOSS_CW:
    return "cw";
  case ADV_LOSS_DLR:
    return "dlr";
  case ADV_LOSS_LOGIT:
    return "logit";
  case ADV_LOSS_OUTPUT_DIST: /* the objective's, never a --loss */
    break;
  }
  return "unknown";
}

int adv_suite_from_name(const char *name) {
  for (int i = 0; name && strcmp(adv_suite_name((adv_suite)i), "unknown"); i++)
    if (!strcmp(adv_suite_name((adv_suite)i), name))
      return i;
  return -1;
}

int adv_loss_from_name(const char *name) {
  for (int i = 0; name && strcmp(adv_loss_name((adv_loss_kind)i), "unknown");
       i++)
    if (!strcmp(adv_loss_name((adv_loss_kind)i), name))
      return i;
  return -1;
}

/* ---------------- the job-spec parameter table ---------------- */

#define OFF(field) offsetof(adv_job_spec, field)
#define BIG 1e12 /* sample counts and offsets */

static const adv_job_param_info params_table[] = {
    {"kind", ADV_JOB_PT_KIND, 0, 0, 0, OFF(kind), "attack | evaluation"},
    {"attack", ADV_JOB_PT_ATTACK, 0, 0, 0, OFF(params.kind),
     "the attack of an attack job"},
    {"suite", ADV_JOB_PT_SUITE, 0, 0, 0, OFF(suite),
     "autoattack-standard | autoattack-plus | custom (evaluation)"},
    {"attacks", ADV_JOB_PT_ATTACKS, 0, 0, 0, OFF(attacks),
     "attacks of a custom suite, in order"},
    {"norm", ADV_JOB_PT_NORM, 0, 0, ADV_JOB_SET_NORM, OFF(params.norm),
     "threat model: inf | 2"},
    {"eps", ADV_JOB_PT_FLOAT, 0, 1e6, ADV_PARAM_EPS, OFF(params.eps),
     "perturbation budget (minimal-norm attacks: success threshold)"},
    {"eps_sweep", ADV_JOB_PT_FLOATS, 0, 1e6, ADV_JOB_SET_EPS_SWEEP,
     OFF(eps_sweep), "evaluation: budgets to sweep (at most 64)"},
    {"steps", ADV_JOB_PT_INT, 0, 1000000, ADV_PARAM_STEPS, OFF(params.steps),
     "iterations"},
    {"step_size", ADV_JOB_PT_FLOAT, 0, 1e6, ADV_PARAM_STEP_SIZE,
     OFF(params.step_size),
     "step size (0 = the attack's default; C&W: learning rate)"},
    {"restarts", ADV_JOB_PT_INT, 0, 1000, ADV_PARAM_RESTARTS,
     OFF(params.restarts), "random restarts (best kept)"},
    {"random_start", ADV_JOB_PT_BOOL, 0, 1, ADV_PARAM_RANDOM_START,
     OFF(params.random_start),
     "PGD family: start at a random point of the ball"},
    {"targeted", ADV_JOB_PT_BOOL, 0, 1, ADV_PARAM_TARGETED,
     OFF(params.targeted), "targeted attack"},
    {"target", ADV_JOB_PT_INT64, -1, 2147483647.0, 0, OFF(target),
     "target class of a targeted attack (-1: a random wrong class per sample)"},
    {"n_target_classes", ADV_JOB_PT_INT, 1, 1000, ADV_PARAM_N_TARGET_CLASSES,
     OFF(params.n_target_classes), "APGD-T / FAB-T: top classes tried"},
    {"loss", ADV_JOB_PT_LOSS, 0, 0, ADV_PARAM_LOSS, OFF(params.loss),
     "FGSM/BIM/PGD/MI-FGSM loss: ce | cw | dlr | logit"},
    {"momentum", ADV_JOB_PT_FLOAT, 0, 1e6, ADV_PARAM_MOMENTUM,
     OFF(params.momentum), "MI-FGSM decay"},
    {"queries", ADV_JOB_PT_INT64, 0, 1e9, ADV_PARAM_QUERIES,
     OFF(params.queries), "black-box query budget per sample"},
    {"p_init", ADV_JOB_PT_FLOAT, 0, 1, ADV_PARAM_P_INIT, OFF(params.p_init),
     "Square: initial fraction of pixels changed"},
    {"confidence", ADV_JOB_PT_FLOAT, 0, 1e6, ADV_PARAM_CONFIDENCE,
     OFF(params.kappa), "C&W confidence kappa"},
    {"binary_steps", ADV_JOB_PT_INT, 1, 1000, ADV_PARAM_BINARY_STEPS,
     OFF(params.binary_steps), "C&W binary search steps over c"},
    {"initial_const", ADV_JOB_PT_FLOAT, 0, 1e6, ADV_PARAM_INITIAL_CONST,
     OFF(params.initial_const), "C&W initial c"},
    {"overshoot", ADV_JOB_PT_FLOAT, 0, 10, ADV_PARAM_OVERSHOOT,
     OFF(params.overshoot), "DeepFool overshoot"},
    {"candidates", ADV_JOB_PT_INT, 2, 100000, ADV_PARAM_CANDIDATES,
     OFF(params.candidates), "DeepFool: classes considered"},
    {"alpha_max", ADV_JOB_PT_FLOAT, 0, 1, ADV_PARAM_FAB, OFF(params.alpha_max),
     "FAB alpha_max"},
    {"eta", ADV_JOB_PT_FLOAT, 0, 1e6, ADV_PARAM_FAB, OFF(params.eta),
     "FAB overshoot eta"},
    {"beta", ADV_JOB_PT_FLOAT, 0, 1, ADV_PARAM_FAB, OFF(params.beta),
     "FAB beta"},
    {"seed", ADV_JOB_PT_UINT64, 0, 18446744073709551615.0, ADV_PARAM_SEED,
     OFF(params.seed), "random seed (0 .. 2^64-1, recorded exactly)"},
    {"n", ADV_JOB_PT_INT64, 0, BIG, 0, OFF(n), "samples (0 = all)"},
    {"shard_offset", ADV_JOB_PT_INT64, 0, BIG, 0, OFF(shard_offset),
     "first sample of this shard"},
    {"shard_count", ADV_JOB_PT_INT64, 0, BIG, 0, OFF(shard_count),
     "samples in this shard (0 = to the end)"},
    {"threads", ADV_JOB_PT_INT, 1, 256, 0, OFF(params.threads),
     "engine threads"},
    {"batch", ADV_JOB_PT_INT, 0, 65536, 0, OFF(params.batch),
     "most samples per engine call (0 = automatic)"},
    {"clip_min", ADV_JOB_PT_BOUND, -1e6, 1e6, 0, OFF(params.clip_min),
     "lower bound of valid inputs: one value, or one per channel (dim 1)"},
    {"clip_max", ADV_JOB_PT_BOUND, -1e6, 1e6, 0, OFF(params.clip_max),
     "upper bound of valid inputs: one value, or one per channel (dim 1)"},
    {"input", ADV_JOB_PT_NAME, 0, 0, ADV_JOB_SET_INPUT, OFF(input),
     "the attacked model input (default: the first float input)"},
    {"mean", ADV_JOB_PT_FLOATS, -1e6, 1e6, ADV_JOB_SET_MEAN, OFF(mean),
     "normalization (x - mean) / std put in front of the model: 1 or one "
     "per channel"},
    {"std", ADV_JOB_PT_FLOATS, 1e-12, 1e6, ADV_JOB_SET_STD, OFF(std),
     "normalization std: 1 or one per channel"},
    {"objective", ADV_JOB_PT_OBJECTIVE, 0, 0, ADV_JOB_SET_OBJECTIVE,
     OFF(params.objective),
     "classify (class scores, labels) | output-distance (any output: "
     "maximize ||f(x') - f(x)||, targeted: minimize ||f(x') - t||)"},
    {"output", ADV_JOB_PT_NAME, 0, 0, ADV_JOB_SET_OUTPUT, OFF(output),
     "output-distance: the model output measured (default: output 0)"},
    {"min_distance", ADV_JOB_PT_FLOAT, 0, 1e30, ADV_JOB_SET_OBJECTIVE,
     OFF(params.min_distance),
     "output-distance: success when the distance reaches it (targeted: "
     "falls to it); 0 = none (hsj needs one)"},
    {NULL, 0, 0, 0, 0, 0, NULL},
};

const adv_job_param_info *adv_job_param_table(int *count) {
  if (count)
    *count = (int)(sizeof(params_table) / sizeof(params_table[0])) - 1;
  return params_table;
}

/* adv_job_spec_set stores a float list's count in the int before it */
_Static_assert(OFF(eps_sweep) == OFF(n_eps) + sizeof(int), "n_eps");
_Static_assert(OFF(mean) == OFF(n_mean) + sizeof(int), "n_mean");
_Static_assert(OFF(std) == OFF(n_std) + sizeof(int), "n_std");

int adv_job_spec_floats(const adv_job_spec *s, const adv_job_param_info *q,
                        const float **vals, int *cap) {
  int n = -1, c = ADV_JOB_MAX_CHANNELS;
  if (!s || !q || q->type != ADV_JOB_PT_FLOATS)
    return -1;
  if (q->offset == OFF(eps_sweep)) {
    *vals = s->eps_sweep, n = s->n_eps, c = ADV_JOB_MAX_EPS;
  } else if (q->offset == OFF(mean)) {
    *vals = s->mean, n = s->n_mean;
  } else if (q->offset == OFF(std)) {
    *vals = s->std, n = s->n_std;
  }
  if (cap)
    *cap = c;
  return n;
}

int adv_job_spec_bound(const adv_job_spec *s, const adv_job_param_info *q,
                       const float **vals) {
  if (!s || !q || q->type != ADV_JOB_PT_BOUND)
    return -1;
  if (q->offset == OFF(params.clip_min)) {
    *vals = s->clip_min_ch;
    return s->n_clip_min;
  }
  *vals = s->clip_max_ch;
  return s->n_clip_max;
}

adv_job_spec adv_job_spec_default_params(void) {
  adv_job_spec s;
  memset(&s, 0, sizeof(s));
  s.kind = ADV_JOB_ATTACK;
  s.params = adv_attack_default_params(ADV_ATTACK_PGD);
  s.suite = ADV_SUITE_AUTOATTACK_STANDARD;
  s.target = -1;
  return s;
}

/* printf into err->msg when err is given; returns `status`. */
static int fail(adv_err *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(adv_err *err, int status, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
  }
  return status;
}

static const adv_job_param_info *find_param(const char *name) {
  for (const adv_job_param_info *q = params_table; q->name; q++)
    if (!strcmp(q->name, name))
      return q;
  return NULL;
}

/* Strict integer parse: optional '-', decimal digits only, no overflow. */
static int parse_i64(const char *v, int64_t *out) {
  if (!*v || !(*v == '-' || (*v >= '0' && *v <= '9')))
    return -1;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || *end || end == v)
    return -1;
  *out = (int64_t)x;
  return 0;
}

/* Strict unsigned parse: decimal digits only (strtoull alone would accept
 * "-1" as 2^64-1), no overflow. */
static int parse_u64(const char *v, uint64_t *out) {
  if (!(*v >= '0' && *v <= '9'))
    return -1;
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno || *end || end == v)
    return -1;
  *out = (uint64_t)x;
  return 0;
}

static int parse_f(const char *v, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || *end || end == v || !isfinite(x))
    return -1;
  *out = x;
  return 0;
}

static int parse_norm(const char *v) {
  if (!strcmp(v, "inf") || !strcmp(v, "linf"))
    return ADV_NORM_LINF;
  if (!strcmp(v, "2") || !strcmp(v, "l2"))
    return ADV_NORM_L2;
  return -1;
}

/* The value of a name-valued parameter, -1 when `v` names none. */
static int enum_of(adv_job_ptype t, const char *v) {
  switch (t) {
  case ADV_JOB_PT_BOOL:
    return !strcmp(v, "true") || !strcmp(v, "1")    ? 1
           : !strcmp(v, "false") || !strcmp(v, "0") ? 0
                                                    : -1;
  case ADV_JOB_PT_NORM:
    return parse_norm(v);
  case ADV_JOB_PT_ATTACK:
    return adv_attack_kind_from_name(v);
  case ADV_JOB_PT_SUITE:
    return adv_suite_from_name(v);
  case ADV_JOB_PT_LOSS:
    return adv_loss_from_name(v);
  case ADV_JOB_PT_OBJECTIVE:
    return !strcmp(v, "classify")          ? ADV_OBJECTIVE_CLASSIFY
           : !strcmp(v, "output-distance") ? ADV_OBJECTIVE_OUTPUT_DISTANCE
                                           : -1;
  case ADV_JOB_PT_KIND:
    return !strcmp(v, "attack")       ? ADV_JOB_ATTACK
           : !strcmp(v, "evaluation") ? ADV_JOB_EVALUATION
                                      : -1;
  default:
    return -1;
  }
}

/* What a name-valued parameter accepts, for messages. */
static const char *enum_expect(adv_job_ptype t) {
  switch (t) {
  case ADV_JOB_PT_BOOL:
    return "true or false";
  case ADV_JOB_PT_NORM:
    return "inf or 2";
  case ADV_JOB_PT_ATTACK:
    return "an attack (fgsm, pgd, apgd-ce, ..., see adv/attack.h)";
  case ADV_JOB_PT_SUITE:
    return "autoattack-standard, autoattack-plus or custom";
  case ADV_JOB_PT_LOSS:
    return "ce, cw, dlr or logit";
  case ADV_JOB_PT_OBJECTIVE:
    return "classify or output-distance";
  case ADV_JOB_PT_KIND:
    return "attack or evaluation";
  default:
    return "valid";
  }
}

/* Range text of a numeric entry, for messages. */
static const char *range_text(const adv_job_param_info *q, char *buf,
                              size_t n) {
  if (q->type == ADV_JOB_PT_UINT64)
    snprintf(buf, n, "an integer in [0, 18446744073709551615]");
  else if (q->type == ADV_JOB_PT_INT || q->type == ADV_JOB_PT_INT64)
    snprintf(buf, n, "an integer in [%.0f, %.0f]", q->lo, q->hi);
  else
    snprintf(buf, n, "a number in [%g, %g]", q->lo, q->hi);
  return buf;
}

int adv_job_spec_set(adv_job_spec *s, const char *name, const char *value,
                     adv_err *err) {
  if (!s || !name || !value)
    return fail(err, ADV_EINVAL, "adv_job_spec_set: NULL argument");
  const adv_job_param_info *q = find_param(name);
  if (!q)
    return fail(err, ADV_ENOTFOUND, "%s: unknown parameter", name);
  char *f = (char *)s + q->offset;
  char rb[96];
  switch (q->type) {
  case ADV_JOB_PT_INT:
  case ADV_JOB_PT_INT64: {
    int64_t x;
    if (parse_i64(value, &x) || x < (int64_t)q->lo || x > (int64_t)q->hi)
      return fail(err, ADV_EINVAL, "%s: '%s' is not %s", name, value,
                  range_text(q, rb, sizeof(rb)));
    if (q->type == ADV_JOB_PT_INT)
      *(int *)f = (int)x;
    else
      *(int64_t *)f = x;
    break;
  }
  case ADV_JOB_PT_UINT64: {
    uint64_t x;
    if (parse_u64(value, &x))
      return fail(err, ADV_EINVAL, "%s: '%s' is not %s", name, value,
                  range_text(q, rb, sizeof(rb)));
    *(uint64_t *)f = x;
    break;
  }
  case ADV_JOB_PT_FLOAT: {
    double x;
    if (parse_f(value, &x) || !(x >= q->lo && x <= q->hi))
      return fail(err, ADV_EINVAL, "%s: '%s' is not %s", name, value,
                  range_text(q, rb, sizeof(rb)));
    *(float *)f = (float)x;
    break;
  }
  case ADV_JOB_PT_BOOL:
  case ADV_JOB_PT_NORM:
  case ADV_JOB_PT_ATTACK:
  case ADV_JOB_PT_SUITE:
  case ADV_JOB_PT_KIND:
  case ADV_JOB_PT_OBJECTIVE:
  case ADV_JOB_PT_LOSS: { /* int-sized enums, by name */
    int k = enum_of(q->type, value);
    if (k < 0)
      return fail(err, ADV_EINVAL, "%s: '%s' is not %s", name, value,
                  enum_expect(q->type));
    *(int *)f = k;
    break;
  }
  case ADV_JOB_PT_NAME: {
    size_t len = strlen(value);
    int ok = len > 0 && len < ADV_JOB_NAME_MAX;
    for (size_t i = 0; ok && i < len; i++)
      ok = value[i] > ' ' && value[i] < 127 && value[i] != '"' &&
           value[i] != '\\';
    if (!ok)
      return fail(err, ADV_EINVAL,
                  "%s: must be 1..%d printable characters (no space, quote "
                  "or backslash)",
                  name, ADV_JOB_NAME_MAX - 1);
    memcpy(f, value, len + 1);
    break;
  }
  case ADV_JOB_PT_BOUND:
  case ADV_JOB_PT_FLOATS:
  case ADV_JOB_PT_ATTACKS: {
    int is_f = q->type != ADV_JOB_PT_ATTACKS;
    const float *cur;
    int cap = ADV_JOB_MAX_ATTACKS, n = 0;
    if (q->type == ADV_JOB_PT_FLOATS)
      adv_job_spec_floats(s, q, &cur, &cap);
    else if (q->type == ADV_JOB_PT_BOUND)
      cap = ADV_CLIP_MAX_CHANNELS;
    float fv[ADV_JOB_MAX_EPS];
    adv_attack_kind kv[ADV_JOB_MAX_ATTACKS];
    const char *p = value;
    for (;;) {
      const char *e = strchr(p, ',');
      size_t len = e ? (size_t)(e - p) : strlen(p);
      char tok[64];
      if (len == 0 || len >= sizeof(tok))
        return fail(err, ADV_EINVAL, "%s: empty or overlong item in '%s'", name,
                    value);
      if (n >= cap)
        return fail(err, ADV_EINVAL, "%s: more than %d values", name, cap);
      memcpy(tok, p, len);
      tok[len] = 0;
      if (is_f) {
        double x;
        if (parse_f(tok, &x) || !(x >= q->lo && x <= q->hi))
          return fail(err, ADV_EINVAL, "%s: '%s' is not %s", name, tok,
                      range_text(q, rb, sizeof(rb)));
        fv[n++] = (float)x;
      } else {
        int k = adv_attack_kind_from_name(tok);
        if (k < 0)
          return fail(err, ADV_EINVAL, "%s: '%s' is not %s", name, tok,
                      enum_expect(ADV_JOB_PT_ATTACK));
        kv[n++] = (adv_attack_kind)k;
      }
      if (!e)
        break;
      p = e + 1;
    }
    if (q->type == ADV_JOB_PT_BOUND) { /* scalar, or list + envelope */
      int is_min = q->offset == OFF(params.clip_min);
      float env = fv[0];
      for (int i = 1; i < n; i++)
        env =
            is_min ? (fv[i] < env ? fv[i] : env) : (fv[i] > env ? fv[i] : env);
      *(float *)f = env;
      float *lst = is_min ? s->clip_min_ch : s->clip_max_ch;
      memcpy(lst, fv, sizeof(float) * (size_t)n);
      *(is_min ? &s->n_clip_min : &s->n_clip_max) = n > 1 ? n : 0;
    } else if (is_f) { /* eps_sweep, mean, std: the count precedes the
                          array */
      memcpy(f, fv, sizeof(float) * (size_t)n);
      *(int *)(f - sizeof(int)) = n;
    } else {
      memcpy(s->attacks, kv, sizeof(adv_attack_kind) * (size_t)n);
      s->n_attacks = n;
    }
    break;
  }
  }
  s->set |= q->bit;
  return ADV_OK;
}

/* Re-checks one numeric field of a filled struct against the table. */
static int check_range(const adv_job_spec *s, const adv_job_param_info *q,
                       adv_err *err) {
  const char *f = (const char *)s + q->offset;
  char rb[96];
  double x;
  switch (q->type) {
  case ADV_JOB_PT_INT:
    x = *(const int *)f;
    break;
  case ADV_JOB_PT_INT64:
    x = (double)*(const int64_t *)f;
    break;
  case ADV_JOB_PT_FLOAT:
  case ADV_JOB_PT_BOUND:
    x = *(const float *)f;
    break;
  case ADV_JOB_PT_BOOL:
    if (*(const int *)f != 0 && *(const int *)f != 1)
      return fail(err, ADV_EINVAL, "%s: must be true or false", q->name);
    return 0;
  default:
    return 0;
  }
  if (!(x >= q->lo && x <= q->hi))
    return fail(err, ADV_EINVAL, "%s: %.9g is not %s", q->name, x,
                range_text(q, rb, sizeof(rb)));
  return 0;
}

/* The norm and targeting rules of one attack inside the spec. */
static int check_attack(const adv_job_spec *s, adv_attack_kind k, adv_norm norm,
                        adv_err *err) {
  if (!(adv_attack_norms(k) & (1u << norm)))
    return fail(err, ADV_EINVAL, "norm: %s supports only %s",
                adv_attack_name(k),
                adv_attack_norms(k) == ADV_NORMS_L2 ? "2" : "inf");
  if (s->kind == ADV_JOB_ATTACK && (s->set & ADV_PARAM_TARGETED)) {
    adv_target_mode tm = adv_attack_target_mode(k);
    if (tm == ADV_TARGET_NONE && s->params.targeted)
      return fail(err, ADV_EINVAL, "targeted: %s is untargeted (use %s)",
                  adv_attack_name(k), k == ADV_ATTACK_FAB ? "fab-t" : "apgd-t");
    if (tm == ADV_TARGET_TOPK && !s->params.targeted)
      return fail(err, ADV_EINVAL, "targeted: %s is always targeted",
                  adv_attack_name(k));
  }
  return 0;
}

/* Per-channel clip bounds: 0 or 2..ADV_CLIP_MAX_CHANNELS values, the two
 * lists of the same length when both are given, every value in range and
 * every channel's min below its max (a scalar side broadcasts). */
static int check_clip(const adv_job_spec *s, adv_err *err) {
  int a = s->n_clip_min, b = s->n_clip_max;
  if (a < 0 || a == 1 || a > ADV_CLIP_MAX_CHANNELS)
    return fail(err, ADV_EINVAL, "clip_min: 1 or 2..%d values",
                ADV_CLIP_MAX_CHANNELS);
  if (b < 0 || b == 1 || b > ADV_CLIP_MAX_CHANNELS)
    return fail(err, ADV_EINVAL, "clip_max: 1 or 2..%d values",
                ADV_CLIP_MAX_CHANNELS);
  if (a && b && a != b)
    return fail(err, ADV_EINVAL,
                "clip_max: %d values but clip_min has %d (one per channel)", b,
                a);
  int c = a > b ? a : b;
  for (int i = 0; i < c; i++) {
    float lo = a ? s->clip_min_ch[i] : s->params.clip_min,
          hi = b ? s->clip_max_ch[i] : s->params.clip_max;
    if (!(lo >= -1e6f && lo <= 1e6f) || !(hi >= -1e6f && hi <= 1e6f))
      return fail(err, ADV_EINVAL,
                  "clip_min/clip_max: channel %d is not in [-1e6, 1e6]", i);
    if (!(lo < hi))
      return fail(err, ADV_EINVAL,
                  "clip_max: channel %d: %g is not greater than clip_min %g", i,
                  (double)hi, (double)lo);
  }
  return 0;
}

/* The output-distance objective: attack jobs with an attack that takes it
 * (adv/attack.h), hsj with a min_distance, output only with it. */
static int check_objective(const adv_job_spec *s, adv_err *err) {
  const adv_attack_params *p = &s->params;
  if (!memchr(s->output, 0, sizeof(s->output)))
    return fail(err, ADV_EINVAL, "output: longer than %d characters",
                ADV_JOB_NAME_MAX - 1);
  if (p->objective == ADV_OBJECTIVE_CLASSIFY) {
    if (s->output[0])
      return fail(err, ADV_EINVAL,
                  "output: only with objective output-distance");
    return 0;
  }
  if (p->objective != ADV_OBJECTIVE_OUTPUT_DISTANCE)
    return fail(err, ADV_EINVAL,
                "objective: must be classify or "
                "output-distance");
  if (s->kind != ADV_JOB_ATTACK)
    return fail(err, ADV_EINVAL,
                "objective: output-distance runs as an attack job (aisbx "
                "attack); an evaluation measures robust accuracy of a "
                "classifier");
  adv_attack_kind k = p->kind;
  if (!(k == ADV_ATTACK_FGSM || k == ADV_ATTACK_BIM || k == ADV_ATTACK_PGD ||
        k == ADV_ATTACK_MIFGSM || k == ADV_ATTACK_APGD_CE ||
        k == ADV_ATTACK_SQUARE || k == ADV_ATTACK_HSJ))
    return fail(err, ADV_EINVAL,
                "objective: %s does not support output-distance (it needs "
                "class scores): use fgsm, bim, pgd, mifgsm, apgd-ce, square "
                "or hsj",
                adv_attack_name(k));
  if (p->targeted && !s->target_output)
    return fail(err, ADV_EINVAL,
                "targeted: a targeted output-distance attack needs the "
                "target output (--target-output FILE.npy, CLI only)");
  if (k == ADV_ATTACK_HSJ && !(p->min_distance > 0))
    return fail(err, ADV_EINVAL,
                "min_distance: hsj with objective output-distance needs "
                "min_distance > 0 (its adversarial criterion)");
  return 0;
}

/* The input domain: the input name is a terminated string, mean and std
 * have 0, 1 or the same number of channels, std > 0. */
static int check_domain(const adv_job_spec *s, adv_err *err) {
  if (!memchr(s->input, 0, sizeof(s->input)))
    return fail(err, ADV_EINVAL, "input: longer than %d characters",
                ADV_JOB_NAME_MAX - 1);
  if (s->n_mean < 0 || s->n_mean > ADV_JOB_MAX_CHANNELS || s->n_std < 0 ||
      s->n_std > ADV_JOB_MAX_CHANNELS)
    return fail(err, ADV_EINVAL, "mean: at most %d values",
                ADV_JOB_MAX_CHANNELS);
  if (s->n_mean && s->n_std && s->n_mean != s->n_std && s->n_mean != 1 &&
      s->n_std != 1)
    return fail(err, ADV_EINVAL, "std: %d values but mean has %d", s->n_std,
                s->n_mean);
  for (int i = 0; i < s->n_mean; i++)
    if (!(s->mean[i] >= -1e6f && s->mean[i] <= 1e6f))
      return fail(err, ADV_EINVAL, "mean: value %d is not in [-1e6, 1e6]", i);
  for (int i = 0; i < s->n_std; i++)
    if (!(s->std[i] > 0 && s->std[i] <= 1e6f))
      return fail(err, ADV_EINVAL, "std: value %d is not in (0, 1e6]", i);
  return check_clip(s, err);
}

int adv_job_spec_validate(const adv_job_spec *s, adv_err *err) {
  if (!s)
    return fail(err, ADV_EINVAL, "job spec: NULL");
  if (s->kind != ADV_JOB_ATTACK && s->kind != ADV_JOB_EVALUATION)
    return fail(err, ADV_EINVAL, "kind: must be attack or evaluation");
  for (const adv_job_param_info *q = params_table; q->name; q++)
    if (check_range(s, q, err))
      return ADV_EINVAL;
  const adv_attack_params *p = &s->params;
  if (p->norm != ADV_NORM_LINF && p->norm != ADV_NORM_L2)
    return fail(err, ADV_EINVAL, "norm: must be inf or 2");
  if (!(p->clip_min < p->clip_max))
    return fail(err, ADV_EINVAL, "clip_max: must be greater than clip_min");
  if ((int)p->loss < 0 || !strcmp(adv_loss_name(p->loss), "unknown"))
    return fail(err, ADV_EINVAL, "loss: must be ce, cw, dlr or logit");
  if (s->n_eps < 0 || s->n_eps > ADV_JOB_MAX_EPS)
    return fail(err, ADV_EINVAL, "eps_sweep: at most %d values",
                ADV_JOB_MAX_EPS);
  if ((s->set & ADV_JOB_SET_EPS_SWEEP) && s->n_eps == 0)
    return fail(err, ADV_EINVAL, "eps_sweep: empty");
  for (int i = 0; i < s->n_eps; i++)
    if (!(s->eps_sweep[i] >= 0 && s->eps_sweep[i] <= 1e6f))
      return fail(err, ADV_EINVAL,
                  "eps_sweep: value %d is not a number in [0, 1e+06]", i);
  if (s->n_attacks < 0 || s->n_attacks > ADV_JOB_MAX_ATTACKS)
    return fail(err, ADV_EINVAL, "attacks: at most %d", ADV_JOB_MAX_ATTACKS);
  if (check_domain(s, err) || check_objective(s, err))
    return ADV_EINVAL;
  if (s->kind == ADV_JOB_ATTACK) {
    if ((int)p->kind < 0 || p->kind >= ADV_ATTACK_COUNT)
      return fail(err, ADV_EINVAL, "attack: unknown attack");
    if (s->n_eps)
      return fail(err, ADV_EINVAL, "eps_sweep: only for evaluations (use eps)");
    if (s->n_attacks)
      return fail(err, ADV_EINVAL,
                  "attacks: only for evaluations (use attack)");
    adv_norm nm = (s->set & ADV_JOB_SET_NORM)
                      ? p->norm
                      : adv_attack_default_params(p->kind).norm;
    return check_attack(s, p->kind, nm, err);
  }
  if ((int)s->suite < 0 || !strcmp(adv_suite_name(s->suite), "unknown"))
    return fail(err, ADV_EINVAL, "suite: unknown suite");
  if (s->suite == ADV_SUITE_CUSTOM && s->n_attacks == 0)
    return fail(err, ADV_EINVAL,
                "attacks: a custom suite needs at least one attack");
  if (s->suite != ADV_SUITE_CUSTOM && s->n_attacks)
    return fail(err, ADV_EINVAL, "attacks: only with suite custom");
  adv_attack_kind kinds[ADV_JOB_MAX_ATTACKS];
  int rs[ADV_JOB_MAX_ATTACKS];
  int ni = adv_job_suite_items(s, kinds, rs);
  for (int i = 0; i < ni; i++) {
    if ((int)kinds[i] < 0 || kinds[i] >= ADV_ATTACK_COUNT)
      return fail(err, ADV_EINVAL, "attacks: item %d is not an attack", i);
    if (check_attack(s, kinds[i], p->norm, err))
      return ADV_EINVAL;
  }
  return 0;
}

int adv_job_suite_items(const adv_job_spec *s,
                        adv_attack_kind kinds[ADV_JOB_MAX_ATTACKS],
                        int restarts[ADV_JOB_MAX_ATTACKS]) {
  /* AutoAttack (Croce & Hein 2020): "standard" is APGD-CE, APGD-T, FAB-T,
   * Square with one restart each; "plus" runs the untargeted attacks with
   * 5 restarts and adds the targeted ones. */
  static const struct {
    adv_attack_kind k;
    int r;
  } standard[] = {{ADV_ATTACK_APGD_CE, 1},
                  {ADV_ATTACK_APGD_T, 1},
                  {ADV_ATTACK_FAB_T, 1},
                  {ADV_ATTACK_SQUARE, 1}},
    plus[] = {{ADV_ATTACK_APGD_CE, 5}, {ADV_ATTACK_APGD_DLR, 5},
              {ADV_ATTACK_FAB, 5},     {ADV_ATTACK_SQUARE, 1},
              {ADV_ATTACK_APGD_T, 1},  {ADV_ATTACK_FAB_T, 1}};
  int n = 0;
  switch (s->suite) {
  case ADV_SUITE_AUTOATTACK_STANDARD:
    for (; n < (int)(sizeof(standard) / sizeof(standard[0])); n++) {
      kinds[n] = standard[n].k;
      restarts[n] = standard[n].r;
    }
    break;
  case ADV_SUITE_AUTOATTACK_PLUS:
    for (; n < (int)(sizeof(plus) / sizeof(plus[0])); n++) {
      kinds[n] = plus[n].k;
      restarts[n] = plus[n].r;
    }
    break;
  case ADV_SUITE_CUSTOM:
    for (; n < s->n_attacks && n < ADV_JOB_MAX_ATTACKS; n++) {
      kinds[n] = s->attacks[n];
      restarts[n] = (s->set & ADV_PARAM_RESTARTS) ? s->params.restarts : 1;
    }
    break;
  }
  return n;
}

/* Bytes of the field behind a numeric/enum table entry. */
static size_t field_size(adv_job_ptype t) {
  switch (t) {
  case ADV_JOB_PT_INT64:
  case ADV_JOB_PT_UINT64:
    return 8;
  case ADV_JOB_PT_FLOAT:
  case ADV_JOB_PT_BOUND:
    return sizeof(float);
  case ADV_JOB_PT_NORM:
    return sizeof(adv_norm);
  case ADV_JOB_PT_LOSS:
    return sizeof(adv_loss_kind);
  case ADV_JOB_PT_OBJECTIVE:
    return sizeof(adv_objective);
  case ADV_JOB_PT_ATTACK:
    return sizeof(adv_attack_kind);
  default:
    return sizeof(int);
  }
}

adv_attack_params adv_job_attack_params(const adv_job_spec *s,
                                        adv_attack_kind kind, float eps,
                                        int suite_restarts) {
  adv_attack_params p = adv_attack_default_params(kind);
  uint32_t set = s->set;
  int eval = s->kind == ADV_JOB_EVALUATION;
  /* every attack parameter the spec sets (the table's rows inside
   * spec.params), except what an evaluation decides itself: the suite's
   * restarts, no targeting, and Square counting queries, not steps */
  const size_t p0 = offsetof(adv_job_spec, params);
  for (const adv_job_param_info *q = params_table; q->name; q++) {
    if (!(set & q->bit) || q->offset < p0 || q->offset >= p0 + sizeof(p))
      continue;
    if (eval && (q->bit == ADV_PARAM_RESTARTS || q->bit == ADV_PARAM_TARGETED ||
                 (q->bit == ADV_PARAM_STEPS && kind == ADV_ATTACK_SQUARE)))
      continue;
    memcpy((char *)&p + (q->offset - p0), (const char *)s + q->offset,
           field_size(q->type));
  }
  if (eval) { /* the evaluation's threat model applies to every attack */
    p.norm = s->params.norm;
    p.restarts = suite_restarts;
  }
  if (eps >= 0)
    p.eps = eps;
  /* AutoAttack runs Square with resc_schedule=False (autoattack.py) */
  if (eval && kind == ADV_ATTACK_SQUARE && s->suite != ADV_SUITE_CUSTOM)
    p.resc_schedule = 0;
  p.seed = s->params.seed;
  p.threads = s->params.threads;
  p.batch = s->params.batch;
  p.clip_min = s->params.clip_min;
  p.clip_max = s->params.clip_max;
  int nc = s->n_clip_min > s->n_clip_max ? s->n_clip_min : s->n_clip_max;
  if (nc > 0 && nc <= ADV_CLIP_MAX_CHANNELS) { /* per channel + envelope */
    p.n_clip = nc;
    for (int c = 0; c < nc; c++) {
      p.clip_lo[c] = s->n_clip_min ? s->clip_min_ch[c] : s->params.clip_min;
      p.clip_hi[c] = s->n_clip_max ? s->clip_max_ch[c] : s->params.clip_max;
      p.clip_min =
          c == 0 || p.clip_lo[c] < p.clip_min ? p.clip_lo[c] : p.clip_min;
      p.clip_max =
          c == 0 || p.clip_hi[c] > p.clip_max ? p.clip_hi[c] : p.clip_max;
    }
  }
  return p;
}
