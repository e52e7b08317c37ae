/*
 * where.c - Where(condition, X, Y): X where condition else Y, the three
 * broadcast together (numpy rules). condition is bool (int64 0/1 after
 * loading); X and Y float32 or int64, of one type.
 * Backward (float32): dX += dy where condition, dY += dy elsewhere, each
 * summed over the dims along which it was broadcast.
 */
#include "core/engine.h"

#include <string.h>

typedef struct where_params {
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  int64_t st[3][ADV_MAX_DIMS]; /* element strides of c, X, Y; 0 = bcast */
} where_params;

static int where_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 3 || !n->in[0] || !n->in[1] || !n->in[2] || n->n_out != 1 ||
      !n->out[0])
    return adv__error(err, ADV_EFORMAT, "Where needs 3 inputs and 1 output");
  adv_tensor *c = n->in[0], *x = n->in[1], *y = n->in[2];
  if (c->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "Where: condition must be bool");
  if (x->dtype != y->dtype ||
      (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64))
    return adv__error(err, ADV_EDTYPE,
                      "Where: X and Y types differ or unsupported");
  where_params *wp = adv__arena_alloc(&p->arena, sizeof(*wp));
  if (!wp)
    return ADV_ENOMEM;
  adv_tensor acc = *c;
  for (int k = 1; k < 3; k++) {
    int64_t dims[ADV_MAX_DIMS];
    int nd;
    if (adv__broadcast_shape(&acc, n->in[k], &nd, dims))
      return adv__error(err, ADV_ESHAPE, "Where: shapes do not broadcast");
    acc.ndim = nd;
    memcpy(acc.dims, dims, sizeof(dims));
  }
  wp->ndim = acc.ndim;
  memcpy(wp->dims, acc.dims, sizeof(wp->dims));
  for (int k = 0; k < 3; k++)
    adv__bcast_strides(n->in[k], wp->ndim, wp->dims, wp->st[k]);
  n->params = wp;
  int rc = adv__tensor_set_shape(n->out[0], x->dtype, wp->ndim, wp->dims);
  n->bw_scratch = (size_t)n->out[0]->numel * sizeof(float);
  return rc;
}

/* Offsets of c, X, Y for output index idx. */
static void where_off(const where_params *wp, const int64_t *idx, int64_t *o) {
  o[0] = o[1] = o[2] = 0;
  for (int d = 0; d < wp->ndim; d++)
    for (int k = 0; k < 3; k++)
      o[k] += idx[d] * wp->st[k][d];
}

static void idx_next(const where_params *wp, int64_t *idx) {
  for (int d = wp->ndim - 1; d >= 0 && ++idx[d] == wp->dims[d]; d--)
    idx[d] = 0;
}

static int where_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const where_params *wp = n->params;
  const int64_t *c = n->in[0]->data;
  size_t es = adv_dtype_size(n->out[0]->dtype);
  const unsigned char *x = n->in[1]->data, *y = n->in[2]->data;
  unsigned char *out = n->out[0]->data;
  int64_t idx[ADV_MAX_DIMS] = {0}, o[3];
  for (int64_t e = 0; e < n->out[0]->numel; e++, idx_next(wp, idx)) {
    where_off(wp, idx, o);
    const unsigned char *src =
        c[o[0]] ? x + (size_t)o[1] * es : y + (size_t)o[2] * es;
    memcpy(out + (size_t)e * es, src, es);
  }
  return ADV_OK;
}

static int where_backward(adv_plan *p, adv_pnode *n) {
  const where_params *wp = n->params;
  adv_tensor *yt = n->out[0];
  if (!yt->grad || yt->dtype != ADV_DTYPE_F32)
    return ADV_OK;
  const int64_t *c = n->in[0]->data;
  float *t = adv__scratch(p, n, 0);
  for (int k = 1; k < 3; k++) {
    adv_tensor *v = n->in[k];
    if (!v->grad)
      continue;
    int64_t idx[ADV_MAX_DIMS] = {0}, o[3];
    for (int64_t e = 0; e < yt->numel; e++, idx_next(wp, idx)) {
      where_off(wp, idx, o);
      int take = c[o[0]] != 0;
      t[e] = (k == 1 ? take : !take) ? yt->grad[e] : 0.f;
    }
    adv__unbroadcast_add(v, v->grad, wp->ndim, wp->dims, t);
  }
  return ADV_OK;
}

const adv_op_def adv__op_where = {"Where",        where_infer,  where_forward,
                                  where_backward, ADV_BW_IN(0), 0};
