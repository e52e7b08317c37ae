/*
 * matmul.c - MatMul with numpy semantics: 1-D operands are promoted (and
 * the added dim removed from the result), leading batch dims broadcast.
 * A: ... x M x K, B: ... x K x N -> Y: ... x M x N. One cblas_sgemm per
 * batch entry, or a single one when B is a plain matrix (batch folded
 * into M).
 */
#include "core/engine.h"

#include <cblas.h>

typedef struct mm_params {
  int64_t M, N, K, batch;
  int nb; /* batch rank */
  int64_t bdims[ADV_MAX_DIMS], sa[ADV_MAX_DIMS], sb[ADV_MAX_DIMS];
  int b_is_matrix; /* B has no batch dims: fold */
} mm_params;

static int mm_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs A, B and one output");
  adv_tensor *a = n->in[0], *b = n->in[1];
  if (a->dtype != ADV_DTYPE_F32 || b->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "float32 required");
  if (a->ndim < 1 || b->ndim < 1)
    return adv__error(err, ADV_ESHAPE, "scalar operand");
  mm_params *mp = adv__arena_alloc(&p->arena, sizeof(*mp));
  if (!mp)
    return ADV_ENOMEM;
  int a1 = a->ndim == 1, b1 = b->ndim == 1;
  mp->M = a1 ? 1 : a->dims[a->ndim - 2];
  mp->K = a->dims[a->ndim - 1];
  int64_t kb = b1 ? b->dims[0] : b->dims[b->ndim - 2];
  mp->N = b1 ? 1 : b->dims[b->ndim - 1];
  if (kb != mp->K)
    return adv__error(err, ADV_ESHAPE, "inner dims %lld != %lld",
                     (long long)mp->K, (long long)kb);
  int ra = a1 ? 0 : a->ndim - 2, rb = b1 ? 0 : b->ndim - 2;
  mp->nb = ra > rb ? ra : rb;
  int64_t sa = mp->M * mp->K, sb = mp->K * mp->N;
  mp->batch = 1;
  for (int i = mp->nb - 1; i >= 0; i--) {
    int ia = i - (mp->nb - ra), ib = i - (mp->nb - rb);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return adv__error(err, ADV_ESHAPE, "batch dims do not broadcast");
    mp->bdims[i] = da > db ? da : db;
    mp->sa[i] = da == 1 ? 0 : sa;
    mp->sb[i] = db == 1 ? 0 : sb;
    sa *= da;
    sb *= db;
    mp->batch *= mp->bdims[i];
  }
  mp->b_is_matrix = rb == 0;
  if (mp->M > INT32_MAX || mp->N > INT32_MAX || mp->K > INT32_MAX ||
      mp->M * mp->batch > INT32_MAX)
    return adv__error(err, ADV_ELIMIT, "matrix too large");
  n->params = mp;
  n->bw_extra = (b->is_const ? 0 : ADV_BW_IN(0)) | (a->is_const ? 0 : ADV_BW_IN(1));
  int64_t od[ADV_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < mp->nb; i++)
    od[nd++] = mp->bdims[i];
  if (!a1)
    od[nd++] = mp->M;
  if (!b1)
    od[nd++] = mp->N;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, nd, od);
}

static int mm_forward(adv_plan *p, adv_pnode *n) {
  const mm_params *mp = n->params;
  const float *a = n->in[0]->data, *b = n->in[1]->data;
  float *y = n->out[0]->data;
  if (mp->b_is_matrix && (mp->nb == 0 || mp->sa[mp->nb - 1] != 0)) {
    /* A's batch is contiguous: one GEMM with M*batch rows */
    int rows = (int)(mp->M * mp->batch);
    adv__sgemm(p->threads, 0, 0, rows, (int)mp->N,
                (int)mp->K, 1.f, a, (int)mp->K, b, (int)mp->N, 0.f, y,
                (int)mp->N);
    return ADV_OK;
  }
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < mp->batch; e++) {
    int64_t oa = 0, ob = 0;
    for (int d = 0; d < mp->nb; d++) {
      oa += idx[d] * mp->sa[d];
      ob += idx[d] * mp->sb[d];
    }
    adv__sgemm(p->threads, 0, 0, (int)mp->M,
                (int)mp->N, (int)mp->K, 1.f, a + oa, (int)mp->K, b + ob,
                (int)mp->N, 0.f, y + e * mp->M * mp->N, (int)mp->N);
    for (int d = mp->nb - 1; d >= 0 && ++idx[d] == mp->bdims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

/*
 * Backward per batch entry: dA_e += dY_e B_e^T, dB_e += A_e^T dY_e, where
 * broadcast batch entries (stride 0) accumulate into the same block.
 */
static int mm_backward(adv_plan *p, adv_pnode *n) {
  const mm_params *mp = n->params;
  adv_tensor *a = n->in[0], *b = n->in[1];
  const float *gy = n->out[0]->grad;
  if (!gy)
    return ADV_OK;
  int M = (int)mp->M, N = (int)mp->N, K = (int)mp->K;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < mp->batch; e++) {
    int64_t oa = 0, ob = 0;
    for (int d = 0; d < mp->nb; d++) {
      oa += idx[d] * mp->sa[d];
      ob += idx[d] * mp->sb[d];
    }
    const float *g = gy + e * mp->M * mp->N;
    if (a->grad)
      adv__sgemm(p->threads, 0, 1, M, K, N, 1.f, g, N,
                  (const float *)b->data + ob, N, 1.f, a->grad + oa, K);
    if (b->grad)
      adv__sgemm(p->threads, 1, 0, K, N, M, 1.f,
                  (const float *)a->data + oa, K, g, N, 1.f, b->grad + ob, N);
    for (int d = mp->nb - 1; d >= 0 && ++idx[d] == mp->bdims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

const adv_op_def adv__op_matmul = {.name = "MatMul",
                                   .infer = mm_infer,
                                   .forward = mm_forward,
                                   .backward = mm_backward,
                                   .bw_needs = 0,
                                   .bw_needs_wgrad = ADV_BW_IN(0) | ADV_BW_IN(1)};
