/*
 * softmax.c - Softmax and LogSoftmax, numerically stable (max-shifted).
 * Opset >= 13: along one axis (default -1). Opset < 13: the input is
 * viewed as 2-D [prod(dims[:axis]), prod(dims[axis:])] (default axis 1)
 * and normalized along the second dim.
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

typedef struct sm_params {
  int64_t outer, len, inner; /* normalize over len, stride inner */
  int log;
} sm_params;

static int sm_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and 1 output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "float32 required");
  sm_params *sp = adv__arena_alloc(&p->arena, sizeof(*sp));
  if (!sp)
    return ADV_ENOMEM;
  sp->log = !strcmp(adv__ops[n->op]->name, "LogSoftmax");
  int rank = x->ndim;
  int64_t def = p->opset >= 13 ? -1 : 1;
  int ax = adv__axis(adv__attr_int(n->m, "axis", def), rank);
  if (ax < 0 && rank > 0)
    return adv__error(err, ADV_EFORMAT, "axis out of range");
  if (rank == 0)
    ax = 0;
  sp->outer = 1;
  for (int i = 0; i < ax; i++)
    sp->outer *= x->dims[i];
  if (p->opset >= 13) {
    sp->len = rank ? x->dims[ax] : 1;
    sp->inner = 1;
    for (int i = ax + 1; i < rank; i++)
      sp->inner *= x->dims[i];
  } else {
    sp->len = 1;
    for (int i = ax; i < rank; i++)
      sp->len *= x->dims[i];
    sp->inner = 1;
  }
  n->params = sp;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
}

struct sm_fw_job {
  const sm_params *sp;
  const float *x;
  float *y;
};

/* A chunk [lo, hi) of sm_fw's loop over r (adv__par_for). */
static void sm_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct sm_fw_job *j = arg;
  const sm_params *sp = j->sp;
  const float *x = j->x;
  float *y = j->y;
  for (int64_t r = lo; r < hi; r++) {
    int64_t o = r / sp->inner, i = r % sp->inner;
    const float *xr = x + o * sp->len * sp->inner + i;
    float *yr = y + o * sp->len * sp->inner + i;
    float mx = -INFINITY;
    for (int64_t k = 0; k < sp->len; k++)
      mx = fmaxf(mx, xr[k * sp->inner]);
    double sum = 0;
    for (int64_t k = 0; k < sp->len; k++)
      sum += exp((double)(xr[k * sp->inner] - mx));
    if (sp->log) {
      float ls = (float)log(sum);
      for (int64_t k = 0; k < sp->len; k++)
        yr[k * sp->inner] = xr[k * sp->inner] - mx - ls;
    } else {
      for (int64_t k = 0; k < sp->len; k++)
        yr[k * sp->inner] = (float)(exp((double)(xr[k * sp->inner] - mx)) / sum);
    }
  }
}

static int sm_forward(adv_plan *p, adv_pnode *n) {
  const sm_params *sp = n->params;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data;
  int64_t rows = sp->outer * sp->inner;
  struct sm_fw_job sm_fw_j = {.sp = sp, .x = x, .y = y};
  adv__par_for((rows * sp->len > 65536) ? (p->threads) : 1, rows,
               16384 / (sp->len + 1) + 1, sm_fw_chunk, &sm_fw_j);
  return ADV_OK;
}

struct sm_bw_job {
  const sm_params *sp;
  const float *y;
  const float *gy;
  float *gx;
};

/* A chunk [lo, hi) of sm_bw's loop over r (adv__par_for). */
static void sm_bw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct sm_bw_job *j = arg;
  const sm_params *sp = j->sp;
  const float *y = j->y;
  const float *gy = j->gy;
  float *gx = j->gx;
  for (int64_t r = lo; r < hi; r++) {
    int64_t o = r / sp->inner, i = r % sp->inner;
    int64_t base = o * sp->len * sp->inner + i;
    double acc = 0;
    for (int64_t k = 0; k < sp->len; k++) {
      int64_t e = base + k * sp->inner;
      acc += sp->log ? (double)gy[e] : (double)gy[e] * y[e];
    }
    for (int64_t k = 0; k < sp->len; k++) {
      int64_t e = base + k * sp->inner;
      if (sp->log)
        gx[e] += gy[e] - expf(y[e]) * (float)acc;
      else
        gx[e] += y[e] * (gy[e] - (float)acc);
    }
  }
}

/* Backward from the output y along the normalized dim:
 *   Softmax:    dx = y * (dy - sum(dy * y))
 *   LogSoftmax: dx = dy - exp(y) * sum(dy) */
static int sm_backward(adv_plan *p, adv_pnode *n) {
  const sm_params *sp = n->params;
  const float *y = n->out[0]->data, *gy = n->out[0]->grad;
  float *gx = n->in[0]->grad;
  if (!gy || !gx)
    return ADV_OK;
  int64_t rows = sp->outer * sp->inner;
  struct sm_bw_job sm_bw_j = {.sp = sp, .y = y, .gy = gy, .gx = gx};
  adv__par_for((rows * sp->len > 65536) ? (p->threads) : 1, rows,
               16384 / (sp->len + 1) + 1, sm_bw_chunk, &sm_bw_j);
  return ADV_OK;
}

const adv_op_def adv__op_softmax = {"Softmax", sm_infer, sm_forward, sm_backward, ADV_BW_OUT(0), 0};
const adv_op_def adv__op_logsoftmax = {"LogSoftmax", sm_infer, sm_forward, sm_backward, ADV_BW_OUT(0), 0};
