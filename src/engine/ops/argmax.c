/*
 * argmax.c - ArgMax, ArgMin (opsets 11/12/13): index of the largest /
 * smallest element along axis (attributes axis, keepdims, and from opset 12
 * select_last_index; otherwise the first of equal elements wins). Float32
 * or int64 input, int64 output; no gradient (the output is an index).
 * A NaN counts as the extreme value (numpy's argmax/argmin).
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

typedef struct arg_params {
  int64_t outer, len, inner;
  int is_min, last;
} arg_params;

static int arg_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and 1 output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "unsupported input type");
  int a = adv__axis(adv__attr_int(n->m, "axis", 0), x->ndim);
  if (a < 0 || x->ndim == 0)
    return adv__error(err, ADV_ESHAPE, "axis out of range");
  if (x->dims[a] == 0)
    return adv__error(err, ADV_ESHAPE, "empty reduction axis");
  arg_params *ap = adv__arena_alloc(&p->arena, sizeof(*ap));
  if (!ap)
    return ADV_ENOMEM;
  ap->is_min = !strcmp(adv__ops[n->op]->name, "ArgMin");
  ap->last = adv__attr_int(n->m, "select_last_index", 0) != 0;
  adv__axis_split(x, a, &ap->outer, &ap->len, &ap->inner);
  n->params = ap;
  int64_t d[ADV_MAX_DIMS];
  int nd = 0;
  int keep = adv__attr_int(n->m, "keepdims", 1) != 0;
  for (int i = 0; i < x->ndim; i++)
    if (i != a)
      d[nd++] = x->dims[i];
    else if (keep)
      d[nd++] = 1;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, nd, d);
}

/* 1 when v replaces the current best b (strictly better, or equal and the
 * last index is wanted; NaN beats everything but an earlier NaN). */
static inline int better_f(float v, float b, int is_min, int last) {
  if (isnan(b))
    return last && isnan(v);
  if (isnan(v))
    return 1;
  return is_min ? (v < b || (last && v == b)) : (v > b || (last && v == b));
}

static int arg_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const arg_params *ap = n->params;
  int64_t *y = n->out[0]->data;
  int f32 = n->in[0]->dtype == ADV_DTYPE_F32;
  for (int64_t o = 0; o < ap->outer; o++)
    for (int64_t i = 0; i < ap->inner; i++) {
      int64_t base = o * ap->len * ap->inner + i, best = 0;
      for (int64_t k = 1; k < ap->len; k++) {
        int64_t e = base + k * ap->inner, b = base + best * ap->inner;
        int take;
        if (f32) {
          const float *x = n->in[0]->data;
          take = better_f(x[e], x[b], ap->is_min, ap->last);
        } else {
          const int64_t *x = n->in[0]->data;
          take = ap->is_min ? (x[e] < x[b] || (ap->last && x[e] == x[b]))
                            : (x[e] > x[b] || (ap->last && x[e] == x[b]));
        }
        if (take)
          best = k;
      }
      y[o * ap->inner + i] = best;
    }
  return ADV_OK;
}

const adv_op_def adv__op_argmax = {"ArgMax", arg_infer, arg_forward,
                                   NULL,     0,         0};
const adv_op_def adv__op_argmin = {"ArgMin", arg_infer, arg_forward,
                                   NULL,     0,         0};
