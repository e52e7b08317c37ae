/*
 * tile.c - Tile(input, repeats) (opsets 6/13): out.dims[i] =
 * in.dims[i] * repeats[i]; repeats must be constant (known at plan time).
 * Float32 or int64 data.
 * Backward (float32): dx[j] += the sum of dy over the repeats[i] copies of
 * element j along every axis.
 */
#include "core/engine.h"

#include <string.h>

typedef struct tile_params {
  int nd;
  int64_t idims[ADV_MAX_DIMS], odims[ADV_MAX_DIMS];
  int64_t istr[ADV_MAX_DIMS]; /* contiguous strides of the input */
} tile_params;

static int tile_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "Tile needs 2 inputs and 1 output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "Tile: unsupported input type");
  int64_t rep[ADV_MAX_DIMS];
  int nr = adv__const_ints(n->in[1], rep, ADV_MAX_DIMS);
  if (nr < 0)
    return adv__error(err, ADV_EUNSUPPORTED, "Tile: repeats must be constant");
  if (nr != x->ndim)
    return adv__error(err, ADV_ESHAPE, "Tile: %d repeats for rank %d", nr,
                      x->ndim);
  tile_params *tp = adv__arena_alloc(&p->arena, sizeof(*tp));
  if (!tp)
    return ADV_ENOMEM;
  tp->nd = x->ndim;
  int64_t s = 1;
  for (int i = x->ndim - 1; i >= 0; i--) {
    if (rep[i] < 0)
      return adv__error(err, ADV_ESHAPE, "Tile: negative repeat");
    if (rep[i] && x->dims[i] > INT64_MAX / rep[i])
      return adv__error(err, ADV_ELIMIT, "Tile: output too large");
    tp->idims[i] = x->dims[i];
    tp->odims[i] = x->dims[i] * rep[i];
    tp->istr[i] = s;
    s *= x->dims[i];
  }
  n->params = tp;
  n->bw_can_assign = 0;
  return adv__tensor_set_shape(n->out[0], x->dtype, tp->nd, tp->odims);
}

/* Input offset of output index idx (each coordinate taken modulo the
 * input's extent). */
static int64_t tile_src(const tile_params *tp, const int64_t *idx) {
  int64_t o = 0;
  for (int d = 0; d < tp->nd; d++)
    o += (idx[d] % tp->idims[d]) * tp->istr[d];
  return o;
}

static int tile_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const tile_params *tp = n->params;
  adv_tensor *y = n->out[0];
  size_t es = adv_dtype_size(y->dtype);
  const unsigned char *x = n->in[0]->data;
  unsigned char *out = y->data;
  int64_t idx[ADV_MAX_DIMS] = {0};
  int64_t inner = tp->nd ? tp->idims[tp->nd - 1] : 1;
  int64_t oinner = tp->nd ? tp->odims[tp->nd - 1] : 1;
  if (y->numel == 0)
    return ADV_OK;
  /* row by row of the output: the innermost dim repeats a contiguous run */
  for (int64_t e = 0; e < y->numel; e += oinner) {
    int64_t src = tile_src(tp, idx);
    for (int64_t j = 0; j < oinner; j += inner)
      memcpy(out + (size_t)(e + j) * es, x + (size_t)src * es,
             (size_t)inner * es);
    for (int d = tp->nd - 2; d >= 0 && ++idx[d] == tp->odims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

static int tile_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const tile_params *tp = n->params;
  adv_tensor *x = n->in[0], *y = n->out[0];
  if (!x->grad || !y->grad)
    return ADV_OK;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < y->numel; e++) {
    x->grad[tile_src(tp, idx)] += y->grad[e];
    for (int d = tp->nd - 1; d >= 0 && ++idx[d] == tp->odims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

const adv_op_def adv__op_tile = {"Tile",        tile_infer, tile_forward,
                                 tile_backward, 0,          0};
