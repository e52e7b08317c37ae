/*
 * cumsum.c - CumSum(x, axis) (opsets 11/14): running sums along axis,
 * attributes exclusive (leave the current element out) and reverse (sum
 * from the end). axis must be constant. Float32 or int64.
 * Backward (float32): dx = CumSum(dy) along the same axis with the same
 * exclusive flag and the opposite direction.
 */
#include "core/engine.h"

typedef struct cumsum_params {
  int64_t outer, len, inner;
  int exclusive, reverse;
} cumsum_params;

static int cumsum_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "CumSum needs 2 inputs and 1 output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "CumSum: unsupported input type");
  int64_t ax;
  if (adv__const_ints(n->in[1], &ax, 1) != 1)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "CumSum: axis must be a constant scalar");
  int a = adv__axis(ax, x->ndim);
  if (a < 0 || x->ndim == 0)
    return adv__error(err, ADV_ESHAPE, "CumSum: axis %lld out of range",
                      (long long)ax);
  cumsum_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  adv__axis_split(x, a, &cp->outer, &cp->len, &cp->inner);
  cp->exclusive = adv__attr_int(n->m, "exclusive", 0) != 0;
  cp->reverse = adv__attr_int(n->m, "reverse", 0) != 0;
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, x->dims);
}

/* One kernel for both directions; add=1 accumulates into y (backward). */
#define CUMSUM_KERNEL(T)                                                       \
  static void cumsum_##T(const cumsum_params *cp, const T *x, T *y,            \
                         int reverse, int add) {                               \
    for (int64_t o = 0; o < cp->outer; o++)                                    \
      for (int64_t i = 0; i < cp->inner; i++) {                                \
        T acc = 0;                                                             \
        for (int64_t k = 0; k < cp->len; k++) {                                \
          int64_t kk = reverse ? cp->len - 1 - k : k;                          \
          int64_t e = (o * cp->len + kk) * cp->inner + i;                      \
          T v = x[e];                                                          \
          if (!cp->exclusive)                                                  \
            acc += v;                                                          \
          if (add)                                                             \
            y[e] += acc;                                                       \
          else                                                                 \
            y[e] = acc;                                                        \
          if (cp->exclusive)                                                   \
            acc += v;                                                          \
        }                                                                      \
      }                                                                        \
  }
CUMSUM_KERNEL(float)
CUMSUM_KERNEL(int64_t)

static int cumsum_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const cumsum_params *cp = n->params;
  if (n->out[0]->dtype == ADV_DTYPE_F32)
    cumsum_float(cp, n->in[0]->data, n->out[0]->data, cp->reverse, 0);
  else
    cumsum_int64_t(cp, n->in[0]->data, n->out[0]->data, cp->reverse, 0);
  return ADV_OK;
}

static int cumsum_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const cumsum_params *cp = n->params;
  adv_tensor *x = n->in[0], *y = n->out[0];
  if (!x->grad || !y->grad)
    return ADV_OK;
  cumsum_float(cp, y->grad, x->grad, !cp->reverse, 1);
  return ADV_OK;
}

const adv_op_def adv__op_cumsum = {
    "CumSum", cumsum_infer, cumsum_forward, cumsum_backward, 0, 0};
