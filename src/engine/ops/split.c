/*
 * split.c - Split (opsets 2/11/13/18): x cut along axis into the node's
 * outputs, by the split sizes (attribute before opset 13, constant input
 * from 13) or, without them, into equal parts (opset 18's num_outputs: the
 * last part may be smaller). Float32 or int64.
 * Backward (float32): each output's gradient is added into its slice of dx
 * (outputs without a gradient contribute nothing).
 */
#include "core/engine.h"

#include <string.h>

typedef struct split_params {
  int64_t outer, len, inner;
  int64_t start[16], size[16]; /* along the axis, per output */
} split_params;

static int split_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || !n->in[0] || n->n_out < 1 || n->n_out > 16)
    return adv__error(err, ADV_EFORMAT,
                      "Split needs an input and 1..16 outputs");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "Split: unsupported input type");
  int a = adv__axis(adv__attr_int(n->m, "axis", 0), x->ndim);
  if (a < 0 || x->ndim == 0)
    return adv__error(err, ADV_ESHAPE, "Split: axis out of range");
  split_params *sp = adv__arena_alloc(&p->arena, sizeof(*sp));
  if (!sp)
    return ADV_ENOMEM;
  adv__axis_split(x, a, &sp->outer, &sp->len, &sp->inner);
  int no = n->n_out;
  int64_t sz[16];
  int ns = -1;
  if (n->n_in >= 2 && n->in[1]) {
    ns = adv__const_ints(n->in[1], sz, 16);
    if (ns < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "Split: split must be constant");
  } else {
    const int64_t *v;
    int c = adv__attr_ints(n->m, "split", &v);
    if (c > 16)
      return adv__error(err, ADV_ELIMIT, "Split: too many parts");
    if (c >= 0) {
      memcpy(sz, v, sizeof(int64_t) * (size_t)c);
      ns = c;
    }
  }
  if (ns < 0) { /* equal parts, the last possibly smaller */
    int64_t part = (sp->len + no - 1) / no;
    for (int k = 0; k < no; k++) {
      int64_t lo = part * k < sp->len ? part * k : sp->len;
      sz[k] = (lo + part < sp->len ? lo + part : sp->len) - lo;
    }
    ns = no;
  }
  if (ns != no)
    return adv__error(err, ADV_ESHAPE, "Split: %d sizes for %d outputs", ns,
                      no);
  int64_t at = 0;
  for (int k = 0; k < no; k++) {
    if (sz[k] < 0 || sz[k] > sp->len - at)
      return adv__error(err, ADV_ESHAPE, "Split: sizes do not fit the axis");
    sp->start[k] = at;
    sp->size[k] = sz[k];
    at += sz[k];
  }
  if (at != sp->len)
    return adv__error(err, ADV_ESHAPE,
                      "Split: sizes sum to %lld, axis has %lld", (long long)at,
                      (long long)sp->len);
  n->params = sp;
  for (int k = 0; k < no; k++) {
    if (!n->out[k])
      continue;
    int64_t d[ADV_MAX_DIMS];
    memcpy(d, x->dims, sizeof(d));
    d[a] = sz[k];
    int rc = adv__tensor_set_shape(n->out[k], x->dtype, x->ndim, d);
    if (rc)
      return rc;
  }
  return ADV_OK;
}

static int split_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const split_params *sp = n->params;
  size_t es = adv_dtype_size(n->in[0]->dtype);
  const unsigned char *x = n->in[0]->data;
  for (int k = 0; k < n->n_out; k++) {
    if (!n->out[k])
      continue;
    unsigned char *y = n->out[k]->data;
    size_t row = (size_t)(sp->size[k] * sp->inner) * es;
    for (int64_t o = 0; o < sp->outer; o++)
      memcpy(y + (size_t)o * row,
             x + (size_t)((o * sp->len + sp->start[k]) * sp->inner) * es, row);
  }
  return ADV_OK;
}

static int split_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const split_params *sp = n->params;
  float *gx = n->in[0]->grad;
  if (!gx)
    return ADV_OK;
  for (int k = 0; k < n->n_out; k++) {
    if (!n->out[k] || !n->out[k]->grad)
      continue;
    const float *gy = n->out[k]->grad;
    int64_t row = sp->size[k] * sp->inner;
    for (int64_t o = 0; o < sp->outer; o++) {
      float *d = gx + (o * sp->len + sp->start[k]) * sp->inner;
      for (int64_t j = 0; j < row; j++)
        d[j] += gy[o * row + j];
    }
  }
  return ADV_OK;
}

const adv_op_def adv__op_split = {"Split",        split_infer, split_forward,
                                  split_backward, 0,           0};
