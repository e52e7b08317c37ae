/*
 * reduce.c - ReduceMean, ReduceSum, ReduceMax, ReduceMin over any set of
 * axes, keepdims, noop_with_empty_axes. Axes come from the attribute, or
 * from input 1 where the opset moved them there (ReduceSum >= 13, the
 * others >= 18); the input must be constant. Accumulation in double.
 */
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { R_MEAN, R_SUM, R_MAX, R_MIN };

typedef struct red_params {
  int kind, nd, noop;
  int64_t idims[ADV_MAX_DIMS];
  int64_t ostr[ADV_MAX_DIMS]; /* output stride per input dim, 0 = reduced */
  int64_t count;              /* elements reduced into each output */
} red_params;

static int red_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "missing input or output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "float32 required");
  red_params *rp = adv__arena_alloc(&p->arena, sizeof(*rp));
  if (!rp)
    return ADV_ENOMEM;
  const char *name = adv__ops[n->op]->name;
  rp->kind = !strcmp(name, "ReduceMean") ? R_MEAN : !strcmp(name, "ReduceSum") ? R_SUM
           : !strcmp(name, "ReduceMax") ? R_MAX : R_MIN;
  int axes_as_input = rp->kind == R_SUM ? p->opset >= 13 : p->opset >= 18;
  int64_t axes[ADV_MAX_DIMS];
  int na = -1;
  if (axes_as_input) {
    if (n->n_in >= 2 && n->in[1]) {
      na = adv__const_ints(n->in[1], axes, ADV_MAX_DIMS);
      if (na < 0)
        return adv__error(err, ADV_EUNSUPPORTED, "axes must be constant");
    }
  } else {
    const int64_t *v;
    na = adv__attr_ints(n->m, "axes", &v);
    if (na > ADV_MAX_DIMS)
      return adv__error(err, ADV_EFORMAT, "too many axes");
    if (na > 0)
      memcpy(axes, v, sizeof(int64_t) * (size_t)na);
  }
  int keep = (int)adv__attr_int(n->m, "keepdims", 1);
  int noop = (int)adv__attr_int(n->m, "noop_with_empty_axes", 0);
  int red[ADV_MAX_DIMS] = {0};
  if (na <= 0) {
    if (noop) {
      rp->noop = 1;
    } else {
      for (int i = 0; i < x->ndim; i++)
        red[i] = 1;
    }
  } else {
    for (int i = 0; i < na; i++) {
      int a = adv__axis(axes[i], x->ndim);
      if (a < 0)
        return adv__error(err, ADV_EFORMAT, "axis out of range");
      red[a] = 1;
    }
  }
  int64_t od[ADV_MAX_DIMS];
  int ond = 0;
  rp->count = 1;
  rp->nd = x->ndim;
  for (int i = 0; i < x->ndim; i++) {
    rp->idims[i] = x->dims[i];
    if (red[i]) {
      rp->count *= x->dims[i];
      if (keep)
        od[ond++] = 1;
    } else {
      od[ond++] = x->dims[i];
    }
  }
  int64_t s = 1;
  for (int i = x->ndim - 1; i >= 0; i--) {
    rp->ostr[i] = red[i] ? 0 : s;
    if (!red[i])
      s *= x->dims[i];
  }
  n->params = rp;
  if (rp->noop)
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, ond, od);
}

static int red_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const red_params *rp = n->params;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data;
  int64_t on = n->out[0]->numel, xn = n->in[0]->numel;
  if (rp->noop) {
    memcpy(y, x, sizeof(float) * (size_t)xn);
    return ADV_OK;
  }
  double *acc = calloc((size_t)(on ? on : 1), sizeof(double));
  if (!acc)
    return ADV_ENOMEM;
  if (rp->kind == R_MAX || rp->kind == R_MIN)
    for (int64_t i = 0; i < on; i++)
      acc[i] = rp->kind == R_MAX ? -INFINITY : INFINITY;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < xn; e++) {
    int64_t o = 0;
    for (int d = 0; d < rp->nd; d++)
      o += idx[d] * rp->ostr[d];
    double v = x[e];
    if (rp->kind == R_MAX)
      acc[o] = v > acc[o] ? v : acc[o];
    else if (rp->kind == R_MIN)
      acc[o] = v < acc[o] ? v : acc[o];
    else
      acc[o] += v;
    for (int d = rp->nd - 1; d >= 0 && ++idx[d] == rp->idims[d]; d--)
      idx[d] = 0;
  }
  for (int64_t i = 0; i < on; i++)
    y[i] = (float)(rp->kind == R_MEAN ? (rp->count ? acc[i] / (double)rp->count : NAN) : acc[i]);
  free(acc);
  return ADV_OK;
}

/* Backward: Sum/Mean broadcast dy (divided by the count for Mean);
 * Max/Min split dy evenly among the elements equal to the result (as
 * torch.amax/amin do). */
static int red_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const red_params *rp = n->params;
  const float *x = n->in[0]->data, *y = n->out[0]->data, *gy = n->out[0]->grad;
  float *gx = n->in[0]->grad;
  int64_t xn = n->in[0]->numel, on = n->out[0]->numel;
  if (!gx || !gy)
    return ADV_OK;
  if (rp->noop) {
    for (int64_t i = 0; i < xn; i++)
      gx[i] += gy[i];
    return ADV_OK;
  }
  int64_t *ties = NULL;
  if (rp->kind == R_MAX || rp->kind == R_MIN) {
    ties = calloc((size_t)(on ? on : 1), sizeof(int64_t));
    if (!ties)
      return ADV_ENOMEM;
  }
  for (int pass = ties ? 0 : 1; pass < 2; pass++) {
    int64_t idx[ADV_MAX_DIMS] = {0};
    for (int64_t e = 0; e < xn; e++) {
      int64_t o = 0;
      for (int d = 0; d < rp->nd; d++)
        o += idx[d] * rp->ostr[d];
      if (!ties)
        gx[e] += rp->kind == R_MEAN ? gy[o] / (float)rp->count : gy[o];
      else if (x[e] == y[o]) {
        if (pass == 0)
          ties[o]++;
        else
          gx[e] += gy[o] / (float)ties[o];
      }
      for (int d = rp->nd - 1; d >= 0 && ++idx[d] == rp->idims[d]; d--)
        idx[d] = 0;
    }
  }
  free(ties);
  return ADV_OK;
}

const adv_op_def adv__op_reducemean = {"ReduceMean", red_infer, red_forward, red_backward, 0, 0};
const adv_op_def adv__op_reducesum = {"ReduceSum", red_infer, red_forward, red_backward, 0, 0};
const adv_op_def adv__op_reducemax = {"ReduceMax", red_infer, red_forward, red_backward,
                                      ADV_BW_IN(0) | ADV_BW_OUT(0), 0};
const adv_op_def adv__op_reducemin = {"ReduceMin", red_infer, red_forward, red_backward,
                                      ADV_BW_IN(0) | ADV_BW_OUT(0), 0};
