/*
 * topk.c - TopK (opset 1: attribute k; 10: input K; 11: largest, sorted):
 * the K largest (or smallest) elements along axis and their indices.
 * Equal elements keep index order (the lower index first, as ONNX 11
 * specifies); the output is always sorted (sorted=0 leaves the order
 * unspecified, so sorted is a valid choice). K must be constant.
 * Values float32 or int64; Indices int64.
 * Backward (float32): dx[indices] += dvalues.
 */
#include "core/engine.h"

#include <string.h>

typedef struct topk_params {
  int64_t outer, len, inner, k;
  int largest;
} topk_params;

static int topk_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || !n->in[0] || n->n_out != 2 || !n->out[0] || !n->out[1])
    return adv__error(err, ADV_EFORMAT, "TopK needs an input and 2 outputs");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "TopK: unsupported input type");
  int64_t k;
  if (n->n_in >= 2 && n->in[1]) {
    if (adv__const_ints(n->in[1], &k, 1) != 1)
      return adv__error(err, ADV_EUNSUPPORTED, "TopK: K must be a constant");
  } else {
    k = adv__attr_int(n->m, "k", -1);
  }
  int a = adv__axis(adv__attr_int(n->m, "axis", -1), x->ndim);
  if (a < 0 || x->ndim == 0)
    return adv__error(err, ADV_ESHAPE, "TopK: axis out of range");
  if (k < 0 || k > x->dims[a])
    return adv__error(err, ADV_ESHAPE, "TopK: K=%lld for an axis of %lld",
                      (long long)k, (long long)x->dims[a]);
  topk_params *tp = adv__arena_alloc(&p->arena, sizeof(*tp));
  if (!tp)
    return ADV_ENOMEM;
  adv__axis_split(x, a, &tp->outer, &tp->len, &tp->inner);
  tp->k = k;
  tp->largest = adv__attr_int(n->m, "largest", 1) != 0;
  n->params = tp;
  n->scratch = (size_t)tp->len * 2 * sizeof(int64_t);
  int64_t d[ADV_MAX_DIMS];
  memcpy(d, x->dims, sizeof(d));
  d[a] = k;
  int rc = adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, d);
  if (rc == ADV_OK)
    rc = adv__tensor_set_shape(n->out[1], ADV_DTYPE_I64, x->ndim, d);
  return rc;
}

/* 1 when element i must come before element j (both axis positions of one
 * line starting at base with stride inner). */
static inline int before(const topk_params *tp, const adv_tensor *x,
                         int64_t base, int64_t i, int64_t j) {
  double vi, vj;
  if (x->dtype == ADV_DTYPE_F32) {
    vi = ((const float *)x->data)[base + i * tp->inner];
    vj = ((const float *)x->data)[base + j * tp->inner];
  } else {
    vi = (double)((const int64_t *)x->data)[base + i * tp->inner];
    vj = (double)((const int64_t *)x->data)[base + j * tp->inner];
  }
  if (vi != vj)
    return tp->largest ? vi > vj : vi < vj;
  return i < j;
}

/* Bottom-up merge sort of the positions 0..len-1 of one line (a, with b as
 * the buffer); returns the array that holds the result. */
static int64_t *sort_line(const topk_params *tp, const adv_tensor *x,
                          int64_t base, int64_t *a, int64_t *b) {
  int64_t len = tp->len;
  for (int64_t i = 0; i < len; i++)
    a[i] = i;
  for (int64_t w = 1; w < len; w *= 2) {
    for (int64_t lo = 0; lo < len; lo += 2 * w) {
      int64_t mid = lo + w < len ? lo + w : len,
              hi = lo + 2 * w < len ? lo + 2 * w : len;
      int64_t i = lo, j = mid, o = lo;
      while (i < mid && j < hi)
        b[o++] = before(tp, x, base, a[j], a[i]) ? a[j++] : a[i++];
      while (i < mid)
        b[o++] = a[i++];
      while (j < hi)
        b[o++] = a[j++];
    }
    int64_t *t = a;
    a = b;
    b = t;
  }
  return a;
}

static int topk_forward(adv_plan *p, adv_pnode *n) {
  const topk_params *tp = n->params;
  const adv_tensor *x = n->in[0];
  int64_t *a = (int64_t *)adv__scratch(p, n, 0), *b = a + tp->len;
  int64_t *yi = n->out[1]->data;
  for (int64_t o = 0; o < tp->outer; o++)
    for (int64_t i = 0; i < tp->inner; i++) {
      int64_t base = o * tp->len * tp->inner + i;
      const int64_t *s = sort_line(tp, x, base, a, b);
      for (int64_t k = 0; k < tp->k; k++) {
        int64_t e = (o * tp->k + k) * tp->inner + i,
                src = base + s[k] * tp->inner;
        yi[e] = s[k];
        if (x->dtype == ADV_DTYPE_F32)
          ((float *)n->out[0]->data)[e] = ((const float *)x->data)[src];
        else
          ((int64_t *)n->out[0]->data)[e] = ((const int64_t *)x->data)[src];
      }
    }
  return ADV_OK;
}

static int topk_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const topk_params *tp = n->params;
  adv_tensor *x = n->in[0], *y = n->out[0];
  if (!x->grad || !y->grad)
    return ADV_OK;
  const int64_t *yi = n->out[1]->data;
  for (int64_t o = 0; o < tp->outer; o++)
    for (int64_t k = 0; k < tp->k; k++)
      for (int64_t i = 0; i < tp->inner; i++) {
        int64_t e = (o * tp->k + k) * tp->inner + i;
        x->grad[(o * tp->len + yi[e]) * tp->inner + i] += y->grad[e];
      }
  return ADV_OK;
}

const adv_op_def adv__op_topk = {"TopK",        topk_infer,    topk_forward,
                                 topk_backward, ADV_BW_OUT(1), 0};
