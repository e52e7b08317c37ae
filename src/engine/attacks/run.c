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
  free(r->out_dist);
  free(r->out_rel);
  free(r->tgt_dist);
  free(r->tgt_dist_clean);
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

/*
 * The output distances of the final points (z: their outputs, zc: the
 * clean ones, tref: the targets or NULL) into res (issue 13 item 4).
 */
static int objective_outcome(const adv_eval *ev, adv_attack_result *res,
                             const float *z, const float *zc,
                             const float *tref) {
  int64_t n = res->n, K = ev->classes;
  res->out_per = K;
  res->out_dist = malloc(sizeof(float) * (size_t)n);
  res->out_rel = malloc(sizeof(float) * (size_t)n);
  if (tref) {
    res->tgt_dist = malloc(sizeof(float) * (size_t)n);
    res->tgt_dist_clean = malloc(sizeof(float) * (size_t)n);
  }
  if (!res->out_dist || !res->out_rel ||
      (tref && (!res->tgt_dist || !res->tgt_dist_clean)))
    return adv__error(ev->err, ADV_ENOMEM, "out of memory");
  float zero = 0.f;
  for (int64_t i = 0; i < n; i++) {
    const float *zi = z + i * K, *ci = zc + i * K;
    double d = adv__norm_l2(zi, ci, K), c = 0;
    for (int64_t k = 0; k < K; k++)
      c += (double)ci[k] * ci[k];
    c = sqrt(c);
    res->out_dist[i] = (float)d;
    res->out_rel[i] = c > 0 ? (float)(d / c) : zero;
    if (tref) {
      res->tgt_dist[i] = (float)adv__norm_l2(zi, tref + i * K, K);
      res->tgt_dist_clean[i] = (float)adv__norm_l2(ci, tref + i * K, K);
    }
  }
  return ADV_OK;
}

/* Whether an attack takes the output-distance objective. */
static int objective_ok(adv_attack_kind k) {
  return k == ADV_ATTACK_FGSM || k == ADV_ATTACK_BIM || k == ADV_ATTACK_PGD ||
         k == ADV_ATTACK_MIFGSM || k == ADV_ATTACK_APGD_CE ||
         k == ADV_ATTACK_SQUARE || k == ADV_ATTACK_HSJ;
}

/* Floats per sample of output 0 as it is (no Softmax bypass), from a
 * batch-1 plan: the output-distance objective's K. */
int adv__output_floats(const adv_model *m, int ndim, const int64_t *dims,
                       int64_t *k, adv_err *err) {
  adv_session_params sp = adv_session_default_params();
  adv_session *s = NULL;
  int rc = adv_session_init_shape(m, sp, ndim, dims, 1, &s, err);
  if (rc)
    return rc;
  int64_t od[ADV_MAX_DIMS];
  int nd = adv_session_output_shape(s, 0, od);
  adv_dtype dt = adv_session_output_dtype(s, 0);
  adv_session_free(s);
  *k = 1;
  for (int d = 1; d < nd; d++)
    *k *= od[d];
  if (nd < 1 || od[0] != 1 || *k < 1 || dt != ADV_DTYPE_F32)
    return adv__error(err, ADV_ESHAPE,
                      "output-distance: output 0 must be a float tensor with "
                      "the batch as its first dim");
  return ADV_OK;
}

/* Checks of the output-distance objective's parameters. */
static int objective_check(const adv_attack_params *p, int64_t n,
                           adv_err *err) {
  if (!objective_ok(p->kind))
    return adv__error(err, ADV_EUNSUPPORTED,
                      "%s does not support the objective output-distance "
                      "(it needs class scores): use fgsm, bim, pgd, mifgsm, "
                      "apgd-ce, square or hsj",
                      adv_attack_name(p->kind));
  if (!(p->min_distance >= 0) || !isfinite(p->min_distance))
    return adv__error(err, ADV_EINVAL, "min_distance must be >= 0");
  if (p->kind == ADV_ATTACK_HSJ && !(p->min_distance > 0))
    return adv__error(err, ADV_EINVAL,
                      "hsj with the objective output-distance needs "
                      "min_distance > 0 (its adversarial criterion)");
  if (p->targeted && (!p->target_output ||
                      (p->target_output_n != 1 && p->target_output_n != n)))
    return adv__error(err, ADV_EINVAL,
                      "a targeted output-distance attack needs a target "
                      "output for 1 or all %lld samples",
                      (long long)n);
  return ADV_OK;
}

int adv_attack_run_shape(const adv_model *m, int ndim, const int64_t *dims,
                         const float *x, int64_t n, const int64_t *y,
                         const int64_t *target, adv_attack_params p,
                         adv_progress_fn progress, void *ud,
                         const volatile int *abort_flag, adv_attack_result *res,
                         adv_err *err) {
  memset(res, 0, sizeof(*res));
  int obj = p.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  if (p.objective != ADV_OBJECTIVE_CLASSIFY && !obj)
    return adv__error(err, ADV_EINVAL, "unknown objective %d",
                      (int)p.objective);
  if (!m || !x || (!y && !obj) || n <= 0)
    return adv__error(err, ADV_EINVAL, "model, x, y and n > 0 are required");
  if (p.kind < 0 || p.kind >= ADV_ATTACK_COUNT)
    return adv__error(err, ADV_EINVAL, "unknown attack kind %d", (int)p.kind);
  if (p.n_clip == 0 && (!(p.clip_max > p.clip_min) || !isfinite(p.clip_min) ||
                        !isfinite(p.clip_max)))
    return adv__error(err, ADV_EINVAL, "need clip_min < clip_max");
  if (!(p.eps >= 0) || !isfinite(p.eps))
    return adv__error(err, ADV_EINVAL, "eps must be a finite number >= 0");
  if (p.steps < 0 || p.steps > 1000000 || p.restarts < 0 || p.restarts > 1000)
    return adv__error(err, ADV_EINVAL, "steps/restarts out of range");
  if (p.restarts == 0)
    p.restarts = 1;
  if (p.norm != ADV_NORM_LINF && p.norm != ADV_NORM_L2)
    return adv__error(err, ADV_EINVAL, "norm must be linf or l2");
  if (!obj && p.targeted && !target && p.kind != ADV_ATTACK_APGD_T &&
      p.kind != ADV_ATTACK_FAB_T)
    return adv__error(err, ADV_EINVAL, "targeted attack needs target classes");
  int rc = obj ? objective_check(&p, n, err) : ADV_OK;
  if (rc)
    return rc;
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
  float *z = NULL, *zc = NULL, *tref = NULL;
  int64_t *rows = NULL;
  float *box = malloc(sizeof(float) * (size_t)(2 * ev.per));
  if (!box)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  if ((rc = adv__clip_bounds(&p, ev.in_ndim, ev.in_dims, ev.per, box,
                             box + ev.per, err))) {
    free(box);
    return rc;
  }
  ev.lo = box;
  ev.hi = box + ev.per;
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
    float lo = ev.lo[i % ev.per], hi = ev.hi[i % ev.per];
    if (!(x[i] >= lo && x[i] <= hi)) {
      rc = adv__error(err, ADV_EINVAL,
                      "input value %g at %lld outside [clip_min, clip_max] = "
                      "[%g, %g]%s",
                      (double)x[i], (long long)i, (double)lo, (double)hi,
                      p.n_clip ? " (its channel's bounds)" : "");
      goto fail;
    }
  }
  memcpy(res->x_adv, x, sizeof(float) * (size_t)(n * ev.per));
  /* classes (or the output's size) from one planning pass at batch 1 */
  if ((rc =
           obj ? adv__output_floats(m, ev.in_ndim, ev.in_dims, &ev.classes, err)
               : adv_model_num_classes(m, ev.in_ndim, ev.in_dims, &ev.classes,
                                       err)))
    goto fail;
  for (int64_t i = 0; i < n && !obj; i++)
    if (y[i] < 0 || y[i] >= ev.classes ||
        (target && p.targeted && (target[i] < 0 || target[i] >= ev.classes))) {
      rc = adv__error(err, ADV_EINVAL,
                      "label or target of sample %lld out of range",
                      (long long)i);
      goto fail;
    }
  z = malloc(sizeof(float) * (size_t)(n * ev.classes));
  zc = obj ? malloc(sizeof(float) * (size_t)(n * ev.classes)) : NULL;
  rows = obj ? malloc(sizeof(int64_t) * (size_t)n) : NULL;
  if (!z || (obj && (!zc || !rows))) {
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
  if (obj) { /* reference rows: f(x) or the targets; row i for sample i */
    memcpy(zc, z, sizeof(float) * (size_t)(n * ev.classes));
    ev.ref = zc;
    ev.n_ref = n;
    if (p.targeted) {
      int64_t K = ev.classes;
      if (!(tref = malloc(sizeof(float) * (size_t)(n * K)))) {
        rc = adv__error(err, ADV_ENOMEM, "out of memory");
        goto fail;
      }
      for (int64_t i = 0; i < n; i++)
        memcpy(tref + i * K,
               p.target_output + (p.target_output_n == 1 ? 0 : i) * K,
               sizeof(float) * (size_t)K);
      for (int64_t i = 0; i < n * K; i++)
        if (!isfinite(tref[i])) {
          rc = adv__error(err, ADV_EINVAL, "the target output is not finite");
          goto fail;
        }
      ev.ref = tref;
    }
    for (int64_t i = 0; i < n; i++) {
      rows[i] = i;
      res->pred_clean[i] = -1;
    }
    y = rows;
    target = p.targeted ? rows : NULL;
  } else {
    for (int64_t i = 0; i < n; i++)
      res->pred_clean[i] = adv__argmax(z + i * ev.classes, ev.classes);
  }
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
    if (!obj && !p.targeted && res->pred_clean[i] != y[i])
      memcpy(xa, xi, sizeof(float) * (size_t)ev.per);
    for (int64_t k = 0; k < ev.per; k++)
      if (!isfinite(xa[k]))
        xa[k] = xi[k];
    if (bounded)
      adv__project(xa, xi, ev.per, p.norm, p.eps, ev.lo, ev.hi);
    else
      adv__clip_box(xa, ev.per, ev.lo, ev.hi);
  }
  int64_t fw = ev.forwards;
  if ((rc = adv__eval_forward(&ev, res->x_adv, n, z)))
    goto fail;
  ev.forwards = fw;
  if (obj && (rc = objective_outcome(&ev, res, z, zc, tref)))
    goto fail;
  for (int64_t i = 0; i < n; i++) {
    const float *xa = res->x_adv + i * ev.per, *xi = x + i * ev.per;
    res->linf[i] = (float)adv__norm_linf(xa, xi, ev.per);
    res->l2[i] = (float)adv__norm_l2(xa, xi, ev.per);
    int64_t l0 = 0;
    for (int64_t k = 0; k < ev.per; k++)
      l0 += xa[k] != xi[k];
    res->l0[i] = (float)l0;
    int fooled;
    if (obj) {
      res->pred_adv[i] = -1;
      fooled = adv__eval_fooled(&ev, z + i * ev.classes, i, -1, 0);
    } else {
      res->pred_adv[i] = adv__argmax(z + i * ev.classes, ev.classes);
      if (p.targeted && target)
        fooled = res->pred_adv[i] == target[i];
      else /* untargeted, and -T attacks: any wrong label counts */
        fooled = res->pred_adv[i] != y[i];
    }
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
  free(zc);
  free(tref);
  free(rows);
  free(box);
  for (int i = 0; i < ADV_EVAL_SESSIONS; i++)
    adv_session_free(ev.cache[i].s);
  return ADV_OK;
fail:
  free(z);
  free(zc);
  free(tref);
  free(rows);
  free(box);
  for (int i = 0; i < ADV_EVAL_SESSIONS; i++)
    adv_session_free(ev.cache[i].s);
  adv_attack_result_free(res);
  return rc;
}
