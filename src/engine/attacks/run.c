/*
 * run.c - adv_attack_run(): validation, dispatch to the attack, and the
 * common epilogue every attack shares - enforcing the budget and the clip
 * bounds, recomputing predictions, success, norms and query counts.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void adv_attack_result_free(adv_attack_result *r) {
  if (!r)
    return;
  free(r->x_adv);
  free(r->pred_clean);
  free(r->pred_adv);
  free(r->success);
  free(r->linf);
  free(r->l2);
  free(r->l0);
  free(r->queries);
  memset(r, 0, sizeof(*r));
}

/* Dispatch, generated from the attack table (adv/attack.h). */
static const adv__attack_fn dispatch_table[] = {
#define ADV__ATTACK_FN(id, name, aliases, fn, minimal, norms, target, params,  \
                       defaults)                                               \
  [ADV_ATTACK_##id] = fn,
    ADV_ATTACK_MAP(ADV__ATTACK_FN)
#undef ADV__ATTACK_FN
};

static adv__attack_fn dispatch(adv_attack_kind k) {
  return (int)k >= 0 && k < ADV_ATTACK_COUNT ? dispatch_table[k] : NULL;
}

int adv_attack_run(const adv_model *m, const float *x, int64_t n,
                   const int64_t *y, const int64_t *target, adv_attack_params p,
                   adv_progress_fn progress, void *ud,
                   const volatile int *abort_flag, adv_attack_result *res,
                   adv_err *err) {
  int64_t dims[ADV_MAX_DIMS];
  int nd =
      m && adv_model_num_inputs(m) == 1 ? adv_model_input_shape(m, 0, dims) : 0;
  if (nd < 1) { /* let the shaped run report the model's problem */
    nd = 1;
    dims[0] = n;
  }
  for (int d = 1; d < nd; d++)
    if (dims[d] < 1)
      return adv__error(
          err, ADV_ESHAPE,
          "model input dim %d is not fixed (use adv_attack_run_shape)", d);
  return adv_attack_run_shape(m, nd, dims, x, n, y, target, p, progress, ud,
                              abort_flag, res, err);
}

int adv_attack_run_shape(const adv_model *m, int ndim, const int64_t *dims,
                         const float *x, int64_t n, const int64_t *y,
                         const int64_t *target, adv_attack_params p,
                         adv_progress_fn progress, void *ud,
                         const volatile int *abort_flag, adv_attack_result *res,
                         adv_err *err) {
  memset(res, 0, sizeof(*res));
  if (!m || !x || !y || n <= 0)
    return adv__error(err, ADV_EINVAL, "model, x, y and n > 0 are required");
  if (p.kind < 0 || p.kind >= ADV_ATTACK_COUNT)
    return adv__error(err, ADV_EINVAL, "unknown attack kind %d", (int)p.kind);
  if (!(p.clip_max > p.clip_min) || !isfinite(p.clip_min) ||
      !isfinite(p.clip_max))
    return adv__error(err, ADV_EINVAL, "need clip_min < clip_max");
  if (!(p.eps >= 0) || !isfinite(p.eps))
    return adv__error(err, ADV_EINVAL, "eps must be a finite number >= 0");
  if (p.steps < 0 || p.steps > 1000000 || p.restarts < 0 || p.restarts > 1000)
    return adv__error(err, ADV_EINVAL, "steps/restarts out of range");
  if (p.restarts == 0)
    p.restarts = 1;
  if (p.norm != ADV_NORM_LINF && p.norm != ADV_NORM_L2)
    return adv__error(err, ADV_EINVAL, "norm must be linf or l2");
  if (p.targeted && !target && p.kind != ADV_ATTACK_APGD_T &&
      p.kind != ADV_ATTACK_FAB_T)
    return adv__error(err, ADV_EINVAL, "targeted attack needs target classes");
  if (adv_model_num_inputs(m) != 1)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "attacks need a single-input model");
  adv_eval ev;
  memset(&ev, 0, sizeof(ev));
  ev.m = m;
  ev.p = p;
  ev.abort_flag = abort_flag;
  ev.progress = progress;
  ev.ud = ud;
  ev.err = err;
  ev.forward_only = p.kind == ADV_ATTACK_SQUARE || p.kind == ADV_ATTACK_HSJ;
  if (!dims || ndim < 2 || ndim > ADV_MAX_DIMS)
    return adv__error(err, ADV_ESHAPE, "model input must be batch x ...");
  int rc0 = adv_model_check_input(m, ndim, dims, err);
  if (rc0)
    return rc0;
  ev.in_ndim = ndim;
  memcpy(ev.in_dims, dims, sizeof(int64_t) * (size_t)ndim);
  ev.in_dims[0] = n;
  ev.per = 1;
  for (int i = 1; i < ev.in_ndim; i++)
    ev.per *= ev.in_dims[i];
  double t0 = adv__now_s();
  int rc = ADV_OK;
  float *z = NULL;
  res->n = n;
  res->per = ev.per;
  res->x_adv = malloc(sizeof(float) * (size_t)(n * ev.per));
  res->pred_clean = calloc((size_t)n, sizeof(int64_t));
  res->pred_adv = calloc((size_t)n, sizeof(int64_t));
  res->success = calloc((size_t)n, 1);
  res->linf = calloc((size_t)n, sizeof(float));
  res->l2 = calloc((size_t)n, sizeof(float));
  res->l0 = calloc((size_t)n, sizeof(float));
  res->queries = calloc((size_t)n, sizeof(int64_t));
  ev.sample_queries = res->queries;
  if (!res->x_adv || !res->pred_clean || !res->pred_adv || !res->success ||
      !res->linf || !res->l2 || !res->l0 || !res->queries) {
    rc = adv__error(err, ADV_ENOMEM, "out of memory");
    goto fail;
  }
  for (int64_t i = 0; i < n * ev.per; i++) {
    if (!(x[i] >= p.clip_min && x[i] <= p.clip_max)) {
      rc = adv__error(err, ADV_EINVAL,
                      "input value %g at %lld outside [clip_min, clip_max]",
                      (double)x[i], (long long)i);
      goto fail;
    }
  }
  memcpy(res->x_adv, x, sizeof(float) * (size_t)(n * ev.per));
  /* classes from one planning pass at batch 1 */
  if ((rc = adv_model_num_classes(m, ev.in_ndim, ev.in_dims, &ev.classes, err)))
    goto fail;
  for (int64_t i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= ev.classes ||
        (target && p.targeted && (target[i] < 0 || target[i] >= ev.classes))) {
      rc = adv__error(err, ADV_EINVAL,
                      "label or target of sample %lld out of range",
                      (long long)i);
      goto fail;
    }
  z = malloc(sizeof(float) * (size_t)(n * ev.classes));
  if (!z) {
    rc = adv__error(err, ADV_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = adv__eval_forward(&ev, x, n, z)))
    goto fail;
  /* a model that outputs NaN/Inf on clean data (NaN weights, overflow)
   * makes every attack meaningless: refuse it with the reason */
  for (int64_t i = 0; i < n * ev.classes; i++)
    if (!isfinite(z[i])) {
      rc = adv__error(
          err, ADV_EFORMAT,
          "the model's output on sample %lld is not finite (NaN or Inf)",
          (long long)(i / ev.classes));
      goto fail;
    }
  for (int64_t i = 0; i < n; i++)
    res->pred_clean[i] = adv__argmax(z + i * ev.classes, ev.classes);
  ev.forwards = 0; /* the clean pass is not part of the attack's budget */
  ev.pred_clean = res->pred_clean;
  adv__attack_fn fn = dispatch(p.kind);
  if (!fn) {
    rc = adv__error(err, ADV_EUNSUPPORTED, "attack %d", (int)p.kind);
    goto fail;
  }
  if ((rc = fn(&ev, x, n, y, target, res->x_adv)))
    goto fail;
  /* epilogue: budget + bounds, then predictions and norms */
  int bounded = !adv_attack_is_minimal(p.kind);
  for (int64_t i = 0; i < n; i++) {
    float *xa = res->x_adv + i * ev.per;
    const float *xi = x + i * ev.per;
    /* already misclassified (untargeted): nothing to attack, as AutoAttack */
    if (!p.targeted && res->pred_clean[i] != y[i])
      memcpy(xa, xi, sizeof(float) * (size_t)ev.per);
    for (int64_t k = 0; k < ev.per; k++)
      if (!isfinite(xa[k]))
        xa[k] = xi[k];
    if (bounded)
      adv__project(xa, xi, ev.per, p.norm, p.eps, p.clip_min, p.clip_max);
    else
      for (int64_t k = 0; k < ev.per; k++)
        xa[k] = xa[k] < p.clip_min   ? p.clip_min
                : xa[k] > p.clip_max ? p.clip_max
                                     : xa[k];
  }
  int64_t fw = ev.forwards;
  if ((rc = adv__eval_forward(&ev, res->x_adv, n, z)))
    goto fail;
  ev.forwards = fw;
  for (int64_t i = 0; i < n; i++) {
    const float *xa = res->x_adv + i * ev.per, *xi = x + i * ev.per;
    res->pred_adv[i] = adv__argmax(z + i * ev.classes, ev.classes);
    res->linf[i] = (float)adv__norm_linf(xa, xi, ev.per);
    res->l2[i] = (float)adv__norm_l2(xa, xi, ev.per);
    int64_t l0 = 0;
    for (int64_t k = 0; k < ev.per; k++)
      l0 += xa[k] != xi[k];
    res->l0[i] = (float)l0;
    int fooled;
    if (p.targeted && target)
      fooled = res->pred_adv[i] == target[i];
    else if (p.targeted) /* -T attacks: any wrong label counts */
      fooled = res->pred_adv[i] != y[i];
    else
      fooled = res->pred_adv[i] != y[i];
    if (!bounded && p.eps > 0) {
      double nm = p.norm == ADV_NORM_LINF ? res->linf[i] : res->l2[i];
      fooled = fooled && nm <= p.eps * (1 + 1e-6);
    }
    res->success[i] = (unsigned char)fooled;
  }
  int any_q = 0;
  for (int64_t i = 0; i < n; i++)
    any_q |= res->queries[i] != 0;
  if (!any_q)
    for (int64_t i = 0; i < n; i++)
      res->queries[i] = ev.forwards / n;
  res->forwards = ev.forwards;
  res->backwards = ev.backwards;
  res->seconds = adv__now_s() - t0;
  free(z);
  for (int i = 0; i < ADV_EVAL_SESSIONS; i++)
    adv_session_free(ev.cache[i].s);
  return ADV_OK;
fail:
  free(z);
  for (int i = 0; i < ADV_EVAL_SESSIONS; i++)
    adv_session_free(ev.cache[i].s);
  adv_attack_result_free(res);
  return rc;
}
