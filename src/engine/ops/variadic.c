/*
 * variadic.c - Max, Min, Mean, Sum over 1..16 inputs with numpy
 * multidirectional broadcasting (opsets 6/8/12/13: float32; Max and Min
 * also int64, which covers every integer type as the loader widens them).
 *
 * Backward (float32):
 *   Sum:  dx_k += dy               Mean: dx_k += dy / N
 *   Max/Min: dy goes to the input(s) holding the extreme value; ties share
 *   it equally (as torch.maximum/minimum do for two inputs),
 * each summed over the dims along which x_k was broadcast.
 */
#include "core/engine.h"

#include <string.h>

enum { V_MAX, V_MIN, V_MEAN, V_SUM };

typedef struct var_params {
  int kind;
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  int64_t st[16][ADV_MAX_DIMS]; /* element strides per input, 0 = bcast */
} var_params;

/* Checks 1..16 inputs of one dtype, broadcasts their shapes and records
 * each input's strides. */
static int var_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || n->n_in > 16 || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1..16 inputs and 1 output");
  var_params *vp = adv__arena_alloc(&p->arena, sizeof(*vp));
  if (!vp)
    return ADV_ENOMEM;
  const char *name = adv__ops[n->op]->name;
  vp->kind = !strcmp(name, "Max")    ? V_MAX
             : !strcmp(name, "Min")  ? V_MIN
             : !strcmp(name, "Mean") ? V_MEAN
                                     : V_SUM;
  adv_dtype dt = n->in[0] ? n->in[0]->dtype : ADV_DTYPE_UNDEFINED;
  if (dt != ADV_DTYPE_F32 && (dt != ADV_DTYPE_I64 || vp->kind == V_MEAN))
    return adv__error(err, ADV_EDTYPE, "%s: unsupported input type", name);
  adv_tensor acc = *n->in[0];
  for (int k = 1; k < n->n_in; k++) {
    if (!n->in[k] || n->in[k]->dtype != dt)
      return adv__error(err, ADV_EDTYPE,
                        "%s: inputs missing or of different types", name);
    int64_t dims[ADV_MAX_DIMS];
    int nd;
    if (adv__broadcast_shape(&acc, n->in[k], &nd, dims))
      return adv__error(err, ADV_ESHAPE, "%s: shapes do not broadcast", name);
    acc.ndim = nd;
    memcpy(acc.dims, dims, sizeof(dims));
  }
  vp->ndim = acc.ndim;
  memcpy(vp->dims, acc.dims, sizeof(vp->dims));
  for (int k = 0; k < n->n_in; k++)
    adv__bcast_strides(n->in[k], vp->ndim, vp->dims, vp->st[k]);
  n->params = vp;
  int rc = adv__tensor_set_shape(n->out[0], dt, vp->ndim, vp->dims);
  n->bw_scratch = (size_t)n->out[0]->numel * sizeof(float);
  return rc;
}

/* Fills off[k] with the element offset of input k for output index idx. */
static void offsets(const var_params *vp, int nin, const int64_t *idx,
                    int64_t *off) {
  for (int k = 0; k < nin; k++) {
    int64_t o = 0;
    for (int d = 0; d < vp->ndim; d++)
      o += idx[d] * vp->st[k][d];
    off[k] = o;
  }
}

static void idx_next(const var_params *vp, int64_t *idx) {
  for (int d = vp->ndim - 1; d >= 0 && ++idx[d] == vp->dims[d]; d--)
    idx[d] = 0;
}

static int var_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const var_params *vp = n->params;
  adv_tensor *y = n->out[0];
  int nin = n->n_in;
  int64_t idx[ADV_MAX_DIMS] = {0}, off[16];
  if (y->dtype == ADV_DTYPE_I64) {
    int64_t *py = y->data;
    for (int64_t e = 0; e < y->numel; e++, idx_next(vp, idx)) {
      offsets(vp, nin, idx, off);
      int64_t v = ((const int64_t *)n->in[0]->data)[off[0]];
      for (int k = 1; k < nin; k++) {
        int64_t u = ((const int64_t *)n->in[k]->data)[off[k]];
        if (vp->kind == V_MAX ? u > v : vp->kind == V_MIN ? u < v : 0)
          v = u;
        else if (vp->kind == V_SUM)
          v = (int64_t)((uint64_t)v + (uint64_t)u);
      }
      py[e] = v;
    }
    return ADV_OK;
  }
  float *py = y->data;
  for (int64_t e = 0; e < y->numel; e++, idx_next(vp, idx)) {
    offsets(vp, nin, idx, off);
    float v = ((const float *)n->in[0]->data)[off[0]];
    for (int k = 1; k < nin; k++) {
      float u = ((const float *)n->in[k]->data)[off[k]];
      switch (vp->kind) {
      case V_MAX:
        v = (u > v || u != u) ? u : v;
        break; /* NaN propagates */
      case V_MIN:
        v = (u < v || u != u) ? u : v;
        break;
      default:
        v += u;
      }
    }
    py[e] = vp->kind == V_MEAN ? v / (float)nin : v;
  }
  return ADV_OK;
}

/* Backward: for each input with a gradient, its per-element share of dy in
 * the broadcast shape (scratch), then summed over broadcast dims. */
static int var_backward(adv_plan *p, adv_pnode *n) {
  const var_params *vp = n->params;
  adv_tensor *y = n->out[0];
  if (!y->grad || y->dtype != ADV_DTYPE_F32)
    return ADV_OK;
  const float *gy = y->grad, *py = y->data;
  int nin = n->n_in;
  float *t = adv__scratch(p, n, 0);
  for (int k = 0; k < nin; k++) {
    adv_tensor *x = n->in[k];
    if (!x->grad)
      continue;
    int64_t idx[ADV_MAX_DIMS] = {0}, off[16];
    for (int64_t e = 0; e < y->numel; e++, idx_next(vp, idx)) {
      switch (vp->kind) {
      case V_SUM:
        t[e] = gy[e];
        break;
      case V_MEAN:
        t[e] = gy[e] / (float)nin;
        break;
      default: {
        offsets(vp, nin, idx, off);
        float mine = ((const float *)x->data)[off[k]];
        int ties = 0;
        for (int j = 0; j < nin; j++)
          ties += ((const float *)n->in[j]->data)[off[j]] == py[e];
        t[e] = (mine == py[e] && ties) ? gy[e] / (float)ties : 0.f;
      }
      }
    }
    adv__unbroadcast_add(x, x->grad, vp->ndim, vp->dims, t);
  }
  return ADV_OK;
}

/* every input (Max/Min compare them) and the output (the extreme value) */
#define VAR_NEEDS                                                              \
  (ADV_BW_IN(0) | ADV_BW_IN(1) | ADV_BW_IN(2) | ADV_BW_IN(3) | ADV_BW_IN(4) |  \
   ADV_BW_IN(5) | ADV_BW_IN(6) | ADV_BW_IN(7) | ADV_BW_IN(8) | ADV_BW_IN(9) |  \
   ADV_BW_IN(10) | ADV_BW_IN(11) | ADV_BW_IN(12) | ADV_BW_IN(13) |             \
   ADV_BW_IN(14) | ADV_BW_IN(15) | ADV_BW_OUT(0))

const adv_op_def adv__op_max = {"Max",        var_infer, var_forward,
                                var_backward, VAR_NEEDS, 0};
const adv_op_def adv__op_min = {"Min",        var_infer, var_forward,
                                var_backward, VAR_NEEDS, 0};
const adv_op_def adv__op_mean = {"Mean",       var_infer, var_forward,
                                 var_backward, 0,         0};
const adv_op_def adv__op_sum = {"Sum",        var_infer, var_forward,
                                var_backward, 0,         0};
