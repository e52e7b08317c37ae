/*
 * range.c - Range(start, limit, delta) (opset 11): the 1-D sequence
 * start + i*delta for i < max(ceil((limit - start) / delta), 0). The
 * inputs must be constants (after shape folding) since they decide the
 * output's length; the op is then folded at plan time. Float32 or int64.
 * No gradient (its inputs are constants).
 */
#include "core/engine.h"

#include <math.h>

#define RANGE_MAX_LEN ((int64_t)1 << 26) /* elements; a sane cap */

/* Reads a constant scalar as double. */
static int scalar(const adv_tensor *t, double *v) {
  if (!t || !t->is_const || t->numel != 1)
    return ADV_EUNSUPPORTED;
  *v = t->dtype == ADV_DTYPE_F32 ? (double)*(const float *)t->data
                                 : (double)*(const int64_t *)t->data;
  return ADV_OK;
}

static int range_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in != 3 || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "Range needs 3 inputs and 1 output");
  double s, l, d;
  if (scalar(n->in[0], &s) || scalar(n->in[1], &l) || scalar(n->in[2], &d))
    return adv__error(err, ADV_EUNSUPPORTED,
                      "Range: start, limit and delta must be constant scalars");
  adv_dtype dt = n->in[0]->dtype;
  if (n->in[1]->dtype != dt || n->in[2]->dtype != dt)
    return adv__error(err, ADV_EDTYPE, "Range: input types differ");
  if (d == 0)
    return adv__error(err, ADV_EINVAL, "Range: delta is 0");
  double len = ceil((l - s) / d);
  if (!(len < (double)RANGE_MAX_LEN))
    return adv__error(err, ADV_ELIMIT, "Range: too many elements");
  int64_t dims[1] = {len > 0 ? (int64_t)len : 0};
  return adv__tensor_set_shape(n->out[0], dt, 1, dims);
}

/* Element i is start + i*delta computed in the input type (float32
 * accumulates no error this way, unlike repeated addition). */
static int range_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  adv_tensor *y = n->out[0];
  if (y->dtype == ADV_DTYPE_F32) {
    float s = *(const float *)n->in[0]->data,
          d = *(const float *)n->in[2]->data;
    float *o = y->data;
    for (int64_t i = 0; i < y->numel; i++)
      o[i] = s + (float)i * d;
  } else {
    int64_t s = *(const int64_t *)n->in[0]->data,
            d = *(const int64_t *)n->in[2]->data;
    int64_t *o = y->data;
    for (int64_t i = 0; i < y->numel; i++)
      o[i] = s + i * d;
  }
  return ADV_OK;
}

const adv_op_def adv__op_range = {"Range", range_infer, range_forward,
                                  NULL,    0,           0};
