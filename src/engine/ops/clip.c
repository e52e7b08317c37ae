/*
 * clip.c - Clip: y = min(max(x, lo), hi). Opset < 11: min/max attributes;
 * opset >= 11: optional min/max inputs, which must be constant scalars.
 */
#include "core/engine.h"

#include <math.h>

typedef struct clip_params {
  float lo, hi;
} clip_params;

static int clip_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "missing input or output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "float32 required");
  clip_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  cp->lo = -INFINITY;
  cp->hi = INFINITY;
  if (p->opset < 11) {
    cp->lo = adv__attr_float(n->m, "min", -INFINITY);
    cp->hi = adv__attr_float(n->m, "max", INFINITY);
  } else {
    for (int k = 1; k <= 2 && k < n->n_in; k++) {
      adv_tensor *t = n->in[k];
      if (!t)
        continue;
      if (t->numel != 1 || t->dtype != ADV_DTYPE_F32)
        return adv__error(err, ADV_EUNSUPPORTED, "min/max must be float scalars");
      if (t->is_const) {
        if (k == 1)
          cp->lo = *(float *)t->data;
        else
          cp->hi = *(float *)t->data;
      }
    }
  }
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
}

/* Clip's arrays and bounds, for its adv__par_for chunks. */
typedef struct clip_job {
  const float *x, *gy;
  float *y, *gx;
  float lo, hi;
} clip_job;

/* Forward over elements [a, b). simd: vectorized at any optimisation level
 * (the compare-selects keep NaN as NaN, as the scalar loop does). */
static void clip_fw_chunk(void *arg, int64_t a, int64_t b, int worker) {
  (void)worker;
  const clip_job *j = arg;
  const float *x = j->x;
  float *y = j->y;
  float lo = j->lo, hi = j->hi;
#pragma omp simd
  for (int64_t i = a; i < b; i++) {
    float v = x[i];
    v = v < lo ? lo : v;
    y[i] = v > hi ? hi : v;
  }
}

/* The bounds of this run: constants, or min/max fed at run time (scalars). */
static void clip_bounds(const adv_pnode *n, float *lo, float *hi) {
  const clip_params *cp = n->params;
  *lo = cp->lo;
  *hi = cp->hi;
  if (n->n_in > 1 && n->in[1] && !n->in[1]->is_const)
    *lo = *(const float *)n->in[1]->data;
  if (n->n_in > 2 && n->in[2] && !n->in[2]->is_const)
    *hi = *(const float *)n->in[2]->data;
}

static int clip_forward(adv_plan *p, adv_pnode *n) {
  clip_job j = {.x = n->in[0]->data, .y = n->out[0]->data};
  int64_t len = n->out[0]->numel;
  clip_bounds(n, &j.lo, &j.hi);
  adv__par_for(len > 65536 ? p->threads : 1, len, 16384, clip_fw_chunk, &j);
  return ADV_OK;
}

/* Backward over elements [a, b). */
static void clip_bw_chunk(void *arg, int64_t a, int64_t b, int worker) {
  (void)worker;
  const clip_job *j = arg;
  const float *x = j->x, *gy = j->gy;
  float *gx = j->gx;
  float lo = j->lo, hi = j->hi;
  for (int64_t i = a; i < b; i++)
    gx[i] += (x[i] >= lo && x[i] <= hi) ? gy[i] : 0.f;
}

/* Backward: dy passes where lo <= x <= hi (inclusive, as torch.clamp). */
static int clip_backward(adv_plan *p, adv_pnode *n) {
  clip_job j = {
      .x = n->in[0]->data, .gy = n->out[0]->grad, .gx = n->in[0]->grad};
  if (!j.gx || !j.gy)
    return ADV_OK;
  clip_bounds(n, &j.lo, &j.hi);
  int64_t len = n->in[0]->numel;
  adv__par_for(len > 65536 ? p->threads : 1, len, 16384, clip_bw_chunk, &j);
  return ADV_OK;
}

const adv_op_def adv__op_clip = {"Clip", clip_infer, clip_forward, clip_backward,
                                 ADV_BW_IN(0) | ADV_BW_IN(1) | ADV_BW_IN(2), 0};
