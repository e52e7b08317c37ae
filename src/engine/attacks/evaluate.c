/*
 * evaluate.c - jobs (adv/evaluate.h): one attack with its summary, or an
 * evaluation - the AutoAttack cascade (each attack of the suite runs on
 * the samples every earlier attack failed to break) over an eps sweep,
 * with AutoAttack's sanity checks. Moved here from the CLI so the CLI and
 * the sandboxed runner run exactly the same code.
 */
#include "adv/evaluate.h"
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void adv_job_result_free(adv_job_result *r) {
  if (!r)
    return;
  free(r->x_adv);
  free(r->pred_clean);
  free(r->linf);
  free(r->l2);
  free(r->target);
  free(r->pred_adv);
  free(r->success);
  free(r->l0);
  free(r->queries);
  free(r->out_dist);
  free(r->out_rel);
  free(r->tgt_dist);
  free(r->tgt_dist_clean);
  free(r->curve);
  free(r->is_robust);
  free(r->broken_by);
  memset(r, 0, sizeof(*r));
}

int adv_targets_random(uint64_t seed, const int64_t *y, int64_t n,
                       int64_t classes, int64_t *target, adv_err *err) {
  if (classes < 2 || (n > 0 && (!y || !target)))
    return adv__error(err, ADV_EINVAL,
                      "random targets need K >= 2, labels and output");
  adv_rng rng;
  adv__rng_seed(&rng, seed);
  for (int64_t i = 0; i < n; i++) {
    if (y[i] < 0 || y[i] >= classes)
      return adv__error(err, ADV_EINVAL, "label of sample %lld out of range",
                        (long long)i);
    int64_t r = adv__rng_int(&rng, classes - 1);
    target[i] = r >= y[i] ? r + 1 : r;
  }
  return ADV_OK;
}

/* ---------------- progress bridge ---------------- */

typedef struct bridge {
  adv_job_progress_fn fn;
  void *ud;
  adv_job_progress st; /* event, attack, eps, active, robust, n */
  double base, span;   /* fraction of the job the current attack covers */
} bridge;

static int bridge_cb(void *ud, const char *phase, double fraction) {
  bridge *b = ud;
  if (!b->fn)
    return 0;
  b->st.event = ADV_JOB_EV_PROGRESS;
  b->st.phase = phase;
  b->st.fraction = b->base + b->span * fraction;
  return b->fn(b->ud, &b->st);
}

/* Sends an event other than progress; non-zero means abort. */
static int bridge_event(bridge *b, adv_job_event ev, double fraction) {
  if (!b->fn)
    return 0;
  b->st.event = ev;
  b->st.phase = b->st.attack;
  b->st.fraction = fraction;
  return b->fn(b->ud, &b->st);
}

/* ---------------- evaluation ---------------- */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static void warn(adv_job_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn(adv_job_result *r, const char *fmt, ...) {
  if (r->n_warnings >= ADV_JOB_MAX_WARNINGS)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->warnings[r->n_warnings++], sizeof(r->warnings[0]), fmt, ap);
  va_end(ap);
}

/*
 * AutoAttack's checks on a first batch (at most 64 samples): two forward
 * passes must agree (randomized defenses), outputs that already are
 * probabilities, and samples whose whole gradient is zero (masking). They
 * only add warnings; a failure to plan is not an error here.
 */
static void sanity_checks(const adv_model *m, int ndim, const int64_t *dims,
                          const float *x, int64_t n, const int64_t *y,
                          int threads, adv_job_result *r) {
  adv_session_params sp = adv_session_default_params();
  int64_t nb = n < 64 ? n : 64, per = r->per;
  sp.logits = 1;
  sp.grad = 1;
  sp.threads = threads;
  adv_session *s = NULL;
  adv_err err = {{0}};
  if (adv_session_init_shape(m, sp, ndim, dims, nb, &s, &err))
    return;
  int64_t K = r->classes;
  float *z1 = malloc(sizeof(float) * (size_t)(nb * K)),
        *z2 = malloc(sizeof(float) * (size_t)(nb * K));
  float *g = malloc(sizeof(float) * (size_t)(nb * per));
  if (z1 && z2 && g && adv_session_forward(s, x, z1, &err) == 0 &&
      adv_session_forward(s, x, z2, &err) == 0) {
    if (memcmp(z1, z2, sizeof(float) * (size_t)(nb * K)))
      warn(r, "randomized model: two forward passes on the same input differ "
              "(use EOT; "
              "results may be optimistic)");
    int probs = 1;
    for (int64_t i = 0; i < nb && probs; i++) {
      double sum = 0;
      for (int64_t c = 0; c < K; c++) {
        sum += z1[i * K + c];
        probs &= z1[i * K + c] >= 0 && z1[i * K + c] <= 1;
      }
      probs &= fabs(sum - 1.0) < 1e-4;
    }
    if (probs || adv_model_output_is_probability(m))
      warn(r,
           "the model outputs probabilities, not logits; DLR-based attacks "
           "need logits%s",
           adv_model_output_is_probability(m)
               ? " (the final Softmax is bypassed)"
               : "");
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CE);
    if (adv_session_grad(s, x, lp, y, NULL, z1, NULL, g, &err) == 0) {
      int64_t zero = 0;
      for (int64_t i = 0; i < nb; i++) {
        int allz = 1;
        for (int64_t k = 0; k < per && allz; k++)
          allz = g[i * per + k] == 0.f;
        zero += allz;
      }
      if (zero)
        warn(
            r,
            "zero gradients on %lld of %lld samples: possible gradient masking",
            (long long)zero, (long long)nb);
    }
  }
  free(z1);
  free(z2);
  free(g);
  adv_session_free(s);
}

/* The evaluation; sample i of x is sample id_base + i of the dataset (the
 * id keys its random streams, so shards draw what the whole run draws). */
static int evaluate(const adv_model *m, int ndim, const int64_t *dims,
                    const float *x, int64_t n, const int64_t *y,
                    int64_t id_base, const adv_job_spec *spec,
                    adv_job_progress_fn progress, void *ud,
                    const volatile int *abort_flag, adv_job_result *r,
                    adv_err *err) {
  memset(r, 0, sizeof(*r));
  int rc = adv_job_spec_validate(spec, err);
  if (rc)
    return rc;
  if (spec->kind != ADV_JOB_EVALUATION)
    return adv__error(err, ADV_EINVAL,
                      "kind: adv_evaluate_run needs an evaluation");
  if (!m || !x || !y || n <= 0 || !dims || ndim < 2 || ndim > ADV_MAX_DIMS)
    return adv__error(err, ADV_EINVAL,
                      "model, x, y, a shape and n > 0 are required");
  if ((rc = adv_model_check_input(m, ndim, dims, err)))
    return rc;
  r->kind = ADV_JOB_EVALUATION;
  r->suite = spec->suite;
  r->n = n;
  r->label = y;
  r->x_ndim = ndim;
  memcpy(r->x_dims, dims, sizeof(int64_t) * (size_t)ndim);
  r->x_dims[0] = n;
  r->per = 1;
  for (int d = 1; d < ndim; d++)
    r->per *= dims[d];
  int64_t per = r->per;
  int restarts[ADV_JOB_MAX_ATTACKS];
  int ni = r->n_items = adv_job_suite_items(spec, r->items, restarts);
  /* the eps list, ascending */
  float eps_list[ADV_JOB_MAX_EPS];
  int ne = 0;
  if (spec->n_eps > 0) {
    memcpy(eps_list, spec->eps_sweep, sizeof(float) * (size_t)spec->n_eps);
    ne = spec->n_eps;
    qsort(eps_list, (size_t)ne, sizeof(float), cmp_float);
  } else {
    eps_list[ne++] = (spec->set & ADV_PARAM_EPS)          ? spec->params.eps
                     : spec->params.norm == ADV_NORM_LINF ? 8.f / 255.f
                                                          : 0.5f;
  }
  r->n_eps = ne;
  float *sub = malloc(sizeof(float) * (size_t)(n * per));
  int64_t *sub_y = malloc(sizeof(int64_t) * (size_t)n),
          *idx = malloc(sizeof(int64_t) * (size_t)n);
  int64_t *gid = malloc(sizeof(int64_t) * (size_t)n);
  r->x_adv = malloc(sizeof(float) * (size_t)(n * per));
  r->pred_clean = malloc(sizeof(int64_t) * (size_t)n);
  r->is_robust = calloc((size_t)n, 1);
  r->broken_by = malloc(sizeof(int) * (size_t)n);
  r->linf = calloc((size_t)n, sizeof(float));
  r->l2 = calloc((size_t)n, sizeof(float));
  r->curve = calloc((size_t)ne, sizeof(adv_eval_point));
  if (!sub || !sub_y || !idx || !gid || !r->x_adv || !r->pred_clean ||
      !r->is_robust || !r->broken_by || !r->linf || !r->l2 || !r->curve) {
    rc = adv__error(err, ADV_ENOMEM, "out of memory");
    goto done;
  }
  memcpy(r->x_adv, x, sizeof(float) * (size_t)(n * per));
  if ((rc = adv_model_num_classes(m, ndim, dims, &r->classes, err)))
    goto done;
  /* clean predictions (an eps-0 FGSM runs exactly the clean forward) */
  {
    adv_attack_params cp = adv_attack_default_params(ADV_ATTACK_FGSM);
    cp.eps = 0.f;
    cp.threads = spec->params.threads;
    cp.batch = spec->params.batch;
    adv_attack_params jp = adv_job_attack_params(spec, ADV_ATTACK_FGSM, 0, 1);
    cp.clip_min = jp.clip_min; /* the domain, per channel when given */
    cp.clip_max = jp.clip_max;
    cp.n_clip = jp.n_clip;
    memcpy(cp.clip_lo, jp.clip_lo, sizeof(cp.clip_lo));
    memcpy(cp.clip_hi, jp.clip_hi, sizeof(cp.clip_hi));
    adv_attack_result r0;
    if ((rc = adv_attack_run_shape(m, ndim, dims, x, n, y, NULL, cp, NULL, NULL,
                                   abort_flag, &r0, err)))
      goto done;
    memcpy(r->pred_clean, r0.pred_clean, sizeof(int64_t) * (size_t)n);
    adv_attack_result_free(&r0);
  }
  for (int64_t i = 0; i < n; i++) {
    r->is_robust[i] = r->pred_clean[i] == y[i];
    r->broken_by[i] = -1;
    r->correct += r->is_robust[i];
  }
  sanity_checks(m, ndim, dims, x, n, y, spec->params.threads, r);
  double t_all = adv__now_s();
  int64_t square_extra = 0;
  bridge b = {progress, ud, {0}, 0, 0};
  b.st.n = n;
  int64_t robust_now = r->correct;
  for (int e = 0; e < ne; e++) {
    adv_eval_point *pt = &r->curve[e];
    pt->eps = eps_list[e];
    b.st.eps = eps_list[e];
    for (int a = 0; a < ni; a++) {
      int64_t cnt = 0;
      for (int64_t i = 0; i < n; i++)
        if (r->is_robust[i]) {
          idx[cnt] = i;
          gid[cnt] = id_base + i;
          sub_y[cnt] = y[i];
          memcpy(sub + cnt * per, x + i * per, sizeof(float) * (size_t)per);
          cnt++;
        }
      pt->n_att = a + 1;
      if (cnt == 0)
        continue;
      adv_attack_params p =
          adv_job_attack_params(spec, r->items[a], eps_list[e], restarts[a]);
      p.sample_ids = gid;
      b.st.attack = adv_attack_name(r->items[a]);
      b.st.active = cnt;
      b.st.robust = robust_now;
      b.span = 1.0 / ((double)ne * ni);
      b.base = (double)(e * ni + a) * b.span;
      if (bridge_event(&b, ADV_JOB_EV_ATTACK_START, b.base)) {
        rc = adv__error(err, ADV_EABORTED, "aborted by caller");
        goto done;
      }
      adv_attack_result ar;
      double t0 = adv__now_s();
      rc = adv_attack_run_shape(m, ndim, dims, sub, cnt, sub_y, NULL, p,
                                bridge_cb, &b, abort_flag, &ar, err);
      if (rc) {
        /* name the attack: "apgd-t: ..." */
        if (err) {
          char msg[sizeof(err->msg)];
          memcpy(msg, err->msg, sizeof(msg));
          /* the name is at most 16 chars: the tail of a long message goes */
          snprintf(err->msg, sizeof(err->msg), "%.16s: %.480s",
                   adv_attack_name(r->items[a]), msg);
        }
        goto done;
      }
      pt->secs[a] = adv__now_s() - t0;
      pt->fw[a] = ar.forwards;
      pt->bw[a] = ar.backwards;
      for (int64_t j = 0; j < cnt; j++)
        if (ar.success[j]) {
          int64_t i = idx[j];
          r->is_robust[i] = 0;
          r->broken_by[i] = a;
          r->linf[i] = ar.linf[j];
          r->l2[i] = ar.l2[j];
          memcpy(r->x_adv + i * per, ar.x_adv + j * per,
                 sizeof(float) * (size_t)per);
          pt->newly[a]++;
        }
      robust_now -= pt->newly[a];
      if (r->items[a] == ADV_ATTACK_SQUARE && a > 0)
        square_extra += pt->newly[a];
      adv_attack_result_free(&ar);
    }
    int64_t rb = 0;
    for (int64_t i = 0; i < n; i++)
      rb += r->is_robust[i];
    pt->robust = rb;
    b.st.robust = rb;
    if (bridge_event(&b, ADV_JOB_EV_EPS_DONE, (double)(e + 1) / ne)) {
      rc = adv__error(err, ADV_EABORTED, "aborted by caller");
      goto done;
    }
  }
  if (square_extra)
    warn(r,
         "the black-box Square attack broke %lld points the white-box attacks "
         "missed: "
         "possible gradient masking",
         (long long)square_extra);
  r->wall_time_s = adv__now_s() - t_all;
  for (int a = 0; a < ni; a++)
    r->item_params[a] =
        adv_job_attack_params(spec, r->items[a], eps_list[ne - 1], restarts[a]);
  r->robust = r->curve[ne - 1].robust;
  r->clean_accuracy = (double)r->correct / (double)n;
  r->robust_accuracy = (double)r->robust / (double)n;
  r->attack_success_rate =
      r->correct ? (double)(r->correct - r->robust) / (double)r->correct : 0.0;
  for (int e = 0; e < ne; e++)
    for (int a = 0; a < r->curve[e].n_att; a++) {
      r->forwards += r->curve[e].fw[a];
      r->backwards += r->curve[e].bw[a];
    }
done:
  free(sub);
  free(sub_y);
  free(idx);
  free(gid);
  if (rc)
    adv_job_result_free(r);
  return rc;
}

int adv_evaluate_run(const adv_model *m, int ndim, const int64_t *dims,
                     const float *x, int64_t n, const int64_t *y,
                     const adv_job_spec *spec, adv_job_progress_fn progress,
                     void *ud, const volatile int *abort_flag,
                     adv_job_result *r, adv_err *err) {
  return evaluate(m, ndim, dims, x, n, y, 0, spec, progress, ud, abort_flag, r,
                  err);
}

/* ---------------- one attack ---------------- */

/* The attack result's arrays and counts move into the job result (ar is
 * left to be dropped, not freed). */
static void take_arrays(adv_job_result *r, const adv_attack_result *ar) {
  r->x_adv = ar->x_adv;
  r->pred_clean = ar->pred_clean;
  r->pred_adv = ar->pred_adv;
  r->success = ar->success;
  r->linf = ar->linf;
  r->l2 = ar->l2;
  r->l0 = ar->l0;
  r->queries = ar->queries;
  r->forwards = ar->forwards;
  r->backwards = ar->backwards;
  r->out_per = ar->out_per;
  r->out_dist = ar->out_dist;
  r->out_rel = ar->out_rel;
  r->tgt_dist = ar->tgt_dist;
  r->tgt_dist_clean = ar->tgt_dist_clean;
}

/* Mean and median of n floats (v is not changed). */
static int mean_median(const float *v, int64_t n, double *mean,
                       double *median) {
  float *t = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (!t)
    return ADV_ENOMEM;
  double s = 0;
  for (int64_t i = 0; i < n; i++) {
    s += v[i];
    t[i] = v[i];
  }
  for (int64_t i = 1; i < n; i++) /* insertion sort: n is a job's samples */
    for (int64_t j = i; j > 0 && t[j - 1] > t[j]; j--) {
      float a = t[j];
      t[j] = t[j - 1];
      t[j - 1] = a;
    }
  *mean = n ? s / (double)n : 0;
  *median = !n ? 0 : n % 2 ? t[n / 2] : 0.5 * ((double)t[n / 2 - 1] + t[n / 2]);
  free(t);
  return ADV_OK;
}

/*
 * The output-distance objective's attack job: the target output sliced
 * like the data (off, n of the dataset's N rows, or one row for all),
 * the attack, and the distances' summary. The effective params keep no
 * borrowed pointer.
 */
static int run_objective(const adv_model *m, int ndim, const int64_t *dims,
                         const float *x, int64_t n, int64_t N, int64_t off,
                         adv_attack_params p, const adv_job_spec *spec,
                         adv_progress_fn cb, void *ud,
                         const volatile int *abort_flag, adv_job_result *r,
                         adv_err *err) {
  int64_t K = 0;
  int rc = adv__output_floats(m, ndim, dims, &K, err);
  if (rc)
    return rc;
  const adv_array *t = spec->target_output;
  if (p.targeted) {
    int64_t tn = t && t->dtype == ADV_DTYPE_F32 ? adv_array_numel(t) : -1;
    if (tn != K && tn != N * K)
      return adv__error(err, ADV_EINVAL,
                        "target output: %lld floats, but one sample's output "
                        "has %lld (and the data's %lld samples' %lld)",
                        (long long)tn, (long long)K, (long long)N,
                        (long long)(N * K));
    p.target_output = (const float *)t->data + (tn == K ? 0 : off * K);
    p.target_output_n = tn == K ? 1 : n;
  }
  adv_attack_result ar;
  double t0 = adv__now_s();
  rc = adv_attack_run_shape(m, ndim, dims, x, n, NULL, NULL, p, cb, ud,
                            abort_flag, &ar, err);
  r->wall_time_s = adv__now_s() - t0;
  if (rc)
    return rc;
  take_arrays(r, &ar);
  int64_t ok = 0;
  for (int64_t i = 0; i < n; i++)
    ok += r->success[i];
  r->attack_success_rate = (double)ok / (double)n;
  double unused;
  if (mean_median(r->out_dist, n, &r->out_dist_mean, &r->out_dist_median) ||
      mean_median(r->out_rel, n, &r->out_rel_mean, &r->out_rel_median) ||
      (r->tgt_dist &&
       (mean_median(r->tgt_dist, n, &r->tgt_dist_mean, &r->tgt_dist_median) ||
        mean_median(r->tgt_dist_clean, n, &r->tgt_dist_clean_mean, &unused))))
    return adv__error(err, ADV_ENOMEM, "out of memory");
  return ADV_OK;
}

static int run_attack(const adv_model *m, int ndim, const int64_t *dims,
                      const float *x, int64_t n, const int64_t *y,
                      int64_t id_base, const adv_job_spec *spec,
                      adv_job_progress_fn progress, void *ud,
                      const volatile int *abort_flag, adv_job_result *r,
                      adv_err *err) {
  adv_attack_kind kind = spec->params.kind;
  adv_attack_params p = adv_job_attack_params(spec, kind, -1.f, 1);
  r->kind = ADV_JOB_ATTACK;
  r->params = p;
  if (p.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE) {
    int64_t *gid = malloc(sizeof(int64_t) * (size_t)n);
    if (!gid)
      return adv__error(err, ADV_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
      gid[i] = id_base + i;
    p.sample_ids = gid;
    bridge b = {progress, ud, {0}, 0, 1};
    b.st.attack = adv_attack_name(kind);
    b.st.eps = p.eps;
    b.st.active = n;
    b.st.n = n;
    int rc = run_objective(m, ndim, dims, x, n, dims[0], id_base, p, spec,
                           bridge_cb, &b, abort_flag, r, err);
    free(gid);
    return rc;
  }
  int rc = adv_model_num_classes(m, ndim, dims, &r->classes, err);
  if (rc)
    return rc;
  int64_t K = r->classes;
  for (int64_t i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= K)
      return adv__error(
          err, ADV_EINVAL,
          "label %lld of sample %lld is not a class of this %lld-class model",
          (long long)y[i], (long long)i, (long long)K);
  if (p.targeted && adv_attack_target_mode(kind) == ADV_TARGET_CLASS) {
    if (spec->target >= K)
      return adv__error(err, ADV_EINVAL,
                        "target: %lld but the model has %lld classes",
                        (long long)spec->target, (long long)K);
    r->target = malloc(sizeof(int64_t) * (size_t)n);
    if (!r->target)
      return adv__error(err, ADV_ENOMEM, "out of memory");
    if (spec->target >= 0)
      for (int64_t i = 0; i < n; i++)
        r->target[i] = spec->target;
    else if ((rc = adv_targets_random(p.seed, y, n, K, r->target, err)))
      return rc;
  }
  int64_t *gid = malloc(sizeof(int64_t) * (size_t)n);
  if (!gid)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++)
    gid[i] = id_base + i;
  p.sample_ids = gid;
  adv_attack_result ar;
  bridge b = {progress, ud, {0}, 0, 1};
  b.st.attack = adv_attack_name(kind);
  b.st.eps = p.eps;
  b.st.active = n;
  b.st.n = n;
  double t0 = adv__now_s();
  rc = adv_attack_run_shape(m, ndim, dims, x, n, y, r->target, p, bridge_cb, &b,
                            abort_flag, &ar, err);
  r->wall_time_s = adv__now_s() - t0;
  free(gid); /* p.sample_ids was borrowed for the call; r->params has NULL */
  if (rc)
    return rc;
  take_arrays(r, &ar);
  int64_t broken = 0;
  for (int64_t i = 0; i < n; i++) {
    int c = r->pred_clean[i] == y[i];
    r->correct += c;
    broken += c && r->success[i];
    r->robust += c && !r->success[i];
  }
  r->clean_accuracy = (double)r->correct / (double)n;
  r->robust_accuracy = (double)r->robust / (double)n;
  r->attack_success_rate =
      r->correct ? (double)broken / (double)r->correct : 0.0;
  return ADV_OK;
}

int adv_job_run(const adv_model *m, const adv_array *x, const adv_array *y,
                const adv_job_spec *spec, adv_job_progress_fn progress,
                void *ud, const volatile int *abort_flag, adv_job_result *res,
                adv_err *err) {
  memset(res, 0, sizeof(*res));
  int rc = adv_job_spec_validate(spec, err);
  if (rc)
    return rc;
  if (!m || !x || !x->data || x->dtype != ADV_DTYPE_F32 || x->ndim < 2)
    return adv__error(err, ADV_EINVAL, "the inputs must be float32 N x ...");
  adv_array xfit = *x; /* the header only: the model's rank decides */
  if ((rc = adv_model_fit_data(m, &xfit, err)))
    return rc;
  x = &xfit;
  int obj = spec->kind == ADV_JOB_ATTACK &&
            spec->params.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  if (obj && y && !y->data)
    y = NULL; /* the objective uses no labels */
  if ((!obj || y) && (!y || !y->data || y->dtype != ADV_DTYPE_I64 ||
                      adv_array_numel(y) != x->dims[0]))
    return adv__error(err, ADV_EINVAL,
                      "the data has no labels (one int64 per sample)");
  int64_t N = x->dims[0];
  if (spec->shard_offset >= N && N > 0)
    return adv__error(err, ADV_EINVAL,
                      "shard_offset: %lld but the data has %lld samples",
                      (long long)spec->shard_offset, (long long)N);
  int64_t count = N - spec->shard_offset;
  if (spec->shard_count > 0) {
    if (spec->shard_count > count)
      return adv__error(
          err, ADV_EINVAL,
          "shard_count: %lld samples from %lld pass the %lld of the data",
          (long long)spec->shard_count, (long long)spec->shard_offset,
          (long long)N);
    count = spec->shard_count;
  }
  if (spec->n > 0 && spec->n < count)
    count = spec->n;
  if (count <= 0)
    return adv__error(err, ADV_EINVAL, "the data has no samples");
  int64_t per = adv_array_numel(x) / N, off = spec->shard_offset;
  const float *xs = (const float *)x->data + off * per;
  const int64_t *ys = y ? (const int64_t *)y->data + off : NULL;
  if (spec->kind == ADV_JOB_EVALUATION) {
    rc = evaluate(m, x->ndim, x->dims, xs, count, ys, off, spec, progress, ud,
                  abort_flag, res, err);
  } else {
    if ((rc = adv_model_check_input(m, x->ndim, x->dims, err)))
      return rc;
    res->n = count;
    res->per = per;
    res->label = ys;
    res->x_ndim = x->ndim;
    memcpy(res->x_dims, x->dims, sizeof(res->x_dims));
    res->x_dims[0] = count;
    rc = run_attack(m, x->ndim, x->dims, xs, count, ys, off, spec, progress, ud,
                    abort_flag, res, err);
    if (rc)
      adv_job_result_free(res);
  }
  if (!rc)
    res->offset = off;
  return rc;
}
