/*
 * gemm.c - Gemm:  Y = alpha * op(A) * op(B) + beta * C
 * A: M x K (K x M when transA), B: K x N (N x K when transB), C optional and
 * unidirectionally broadcastable to M x N. Float32 via cblas_sgemm.
 */
#include "core/engine.h"

#include <cblas.h>

typedef struct gemm_params {
  int64_t M, N, K;
  int ta, tb;
  float alpha, beta;
  int64_t cs0, cs1; /* C strides over (m, n); 0 = broadcast */
} gemm_params;

static int gemm_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  n->bw_can_assign = ADV_BW_IN(0) | ADV_BW_IN(1); /* beta 0 when assigning */
  if (n->n_in < 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs A, B and one output");
  adv_tensor *a = n->in[0], *b = n->in[1], *c = n->n_in > 2 ? n->in[2] : NULL;
  if (a->dtype != ADV_DTYPE_F32 || b->dtype != ADV_DTYPE_F32 ||
      (c && c->dtype != ADV_DTYPE_F32))
    return adv__error(err, ADV_EDTYPE, "float32 required");
  if (a->ndim != 2 || b->ndim != 2)
    return adv__error(err, ADV_ESHAPE, "A and B must be 2-D");
  gemm_params *gp = adv__arena_alloc(&p->arena, sizeof(*gp));
  if (!gp)
    return ADV_ENOMEM;
  gp->ta = (int)adv__attr_int(n->m, "transA", 0);
  gp->tb = (int)adv__attr_int(n->m, "transB", 0);
  gp->alpha = adv__attr_float(n->m, "alpha", 1.f);
  gp->beta = adv__attr_float(n->m, "beta", 1.f);
  gp->M = gp->ta ? a->dims[1] : a->dims[0];
  gp->K = gp->ta ? a->dims[0] : a->dims[1];
  int64_t kb = gp->tb ? b->dims[1] : b->dims[0];
  gp->N = gp->tb ? b->dims[0] : b->dims[1];
  if (kb != gp->K)
    return adv__error(err, ADV_ESHAPE, "inner dims %lld != %lld",
                     (long long)gp->K, (long long)kb);
  if (gp->M > INT32_MAX || gp->N > INT32_MAX || gp->K > INT32_MAX)
    return adv__error(err, ADV_ELIMIT, "matrix too large");
  if (c) {
    int64_t cm = c->ndim >= 2 ? c->dims[c->ndim - 2] : 1;
    int64_t cn = c->ndim >= 1 ? c->dims[c->ndim - 1] : 1;
    if (c->ndim > 2 || (cm != 1 && cm != gp->M) || (cn != 1 && cn != gp->N))
      return adv__error(err, ADV_ESHAPE, "C does not broadcast to M x N");
    gp->cs0 = cm == 1 ? 0 : cn;
    gp->cs1 = cn == 1 ? 0 : 1;
  }
  n->params = gp;
  /* dB reads A and dA reads B: keep whichever is an activation */
  n->bw_extra = (b->is_const ? 0 : ADV_BW_IN(0)) | (a->is_const ? 0 : ADV_BW_IN(1));
  int64_t od[2] = {gp->M, gp->N};
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 2, od);
}

static int gemm_forward(adv_plan *p, adv_pnode *n) {
  const gemm_params *gp = n->params;
  const float *a = n->in[0]->data, *b = n->in[1]->data;
  const adv_tensor *c = n->n_in > 2 ? n->in[2] : NULL;
  float *y = n->out[0]->data;
  float beta = 0.f;
  if (c && gp->beta != 0.f) {
    const float *cd = c->data;
    for (int64_t i = 0; i < gp->M; i++)
      for (int64_t j = 0; j < gp->N; j++)
        y[i * gp->N + j] = gp->beta * cd[i * gp->cs0 + j * gp->cs1];
    beta = 1.f;
  }
  adv__sgemm(p->threads, gp->ta ? 1 : 0, gp->tb ? 1 : 0, (int)gp->M, (int)gp->N,
              (int)gp->K, gp->alpha, a, gp->ta ? (int)gp->M : (int)gp->K, b,
              gp->tb ? (int)gp->K : (int)gp->N, beta, y, (int)gp->N);
  return ADV_OK;
}

/*
 * Backward of Y = alpha * op(A) op(B) + beta * C:
 *   dA = alpha * dY op(B)^T  (transposed back when transA)
 *   dB = alpha * op(A)^T dY  (transposed back when transB)
 *   dC = beta * dY summed over C's broadcast dims.
 */
static int gemm_backward(adv_plan *p, adv_pnode *n) {
  const gemm_params *gp = n->params;
  adv_tensor *a = n->in[0], *b = n->in[1], *c = n->n_in > 2 ? n->in[2] : NULL;
  const float *gy = n->out[0]->grad;
  if (!gy)
    return ADV_OK;
  int M = (int)gp->M, N = (int)gp->N, K = (int)gp->K;
  int lda = gp->ta ? M : K, ldb = gp->tb ? K : N;
  float ba = (n->bw_assign & ADV_BW_IN(0)) ? 0.f : 1.f;
  float bb = (n->bw_assign & ADV_BW_IN(1)) ? 0.f : 1.f;
  if (a->grad) {
    if (!gp->ta) /* dA (M x K) += alpha dY (M x N) op(B)^T (N x K) */
      adv__sgemm(p->threads, 0, gp->tb ? 0 : 1,
                  M, K, N, gp->alpha, gy, N, b->data, ldb, ba, a->grad, lda);
    else /* dA (K x M) += alpha op(B) (K x N) dY^T (N x M) */
      adv__sgemm(p->threads, gp->tb ? 1 : 0, 1,
                  K, M, N, gp->alpha, b->data, ldb, gy, N, ba, a->grad, lda);
  }
  if (b->grad) {
    if (!gp->tb) /* dB (K x N) += alpha op(A)^T (K x M) dY (M x N) */
      adv__sgemm(p->threads, gp->ta ? 0 : 1, 0,
                  K, N, M, gp->alpha, a->data, lda, gy, N, bb, b->grad, ldb);
    else /* dB (N x K) += alpha dY^T (N x M) op(A) (M x K) */
      adv__sgemm(p->threads, 1, gp->ta ? 1 : 0,
                  N, K, M, gp->alpha, gy, N, a->data, lda, bb, b->grad, ldb);
  }
  if (c && c->grad && gp->beta != 0.f) {
    for (int64_t i = 0; i < gp->M; i++)
      for (int64_t j = 0; j < gp->N; j++)
        c->grad[i * gp->cs0 + j * gp->cs1] += gp->beta * gy[i * gp->N + j];
  }
  return ADV_OK;
}

const adv_op_def adv__op_gemm = {.name = "Gemm",
                                 .infer = gemm_infer,
                                 .forward = gemm_forward,
                                 .backward = gemm_backward,
                                 .bw_needs = 0,
                                 .bw_needs_wgrad = ADV_BW_IN(0) | ADV_BW_IN(1)};
