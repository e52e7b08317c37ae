/*
 * size.c - Size(x): the number of elements of x as an int64 scalar. Known
 * from the shape alone, so the node always folds at plan time (shape
 * arithmetic in exported graphs, e.g. expanded LayerNormalization).
 */
#include "core/engine.h"

static int size_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "Size needs 1 input and 1 output");
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, 0, NULL);
}

static int size_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  *(int64_t *)n->out[0]->data = n->in[0]->numel;
  return ADV_OK;
}

const adv_op_def adv__op_size = {"Size", size_infer, size_forward, NULL, 0, 0};
