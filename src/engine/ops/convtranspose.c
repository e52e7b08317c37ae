/*
 * convtranspose.c - ConvTranspose (opsets 1/11), 1-D and 2-D, float32:
 * groups, strides, dilations, pads, auto_pad, output_padding,
 * output_shape (pads then derived as ONNX specifies: SAME_UPPER puts the
 * smaller half first, otherwise the larger half first).
 *
 * X: N x C x H x W, W: C x M/group x KH x KW, B: M (optional),
 * Y: N x M x OH x OW with OH = SH*(H-1) + output_padding + (KH-1)*DH + 1
 * - pad_begin - pad_end.
 * ConvTranspose is the input-gradient of a Conv from Y to X with the same
 * kernel geometry, so per (sample, group) with K = Mg*KH*KW, P = H*W:
 *   forward:  col (K x P) = W_g^T (K x Cg) * X_g (Cg x P), col2im into Y_g
 *   backward: dcol = im2col(dY_g);  dX_g += W_g (Cg x K) * dcol,
 *             dW_g += X_g * dcol^T,  dB[m] += sum of dY over N and space.
 * Samples run in parallel (single-threaded GEMMs) when there are enough of
 * them, else the GEMMs get all threads. 2-D batches of 8 or more with
 * constant weights run on oneDNN's deconvolution instead, when it has a
 * non-reference kernel for the shape (conv_dnnl.c; ADV_NO_DNNL=1 disables
 * it), as Conv does.
 */
#include "core/engine.h"

#include <stdlib.h>
#include <string.h>

/* batch size from which 2-D ConvTranspose runs on oneDNN (as Conv) */
#define ADV_DNNL_MIN_BATCH 8

typedef struct ct_params {
  int64_t N, C, H, W, M, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL;
  int64_t group, Cg, Mg, K, P;
  void *dnnl; /* oneDNN deconvolution (conv_dnnl.c), or NULL */
} ct_params;

/* Reads an ints attribute of nsp values (or leaves def). */
static int ints_attr(const adv_mnode *m, const char *name, int nsp, int64_t *v,
                     adv_err *err) {
  const int64_t *a;
  int c = adv__attr_ints(m, name, &a);
  if (c < 0)
    return ADV_OK;
  if (c != nsp)
    return adv__error(err, ADV_EFORMAT, "ConvTranspose: %s length", name);
  memcpy(v, a, sizeof(int64_t) * (size_t)nsp);
  return ADV_OK;
}

static int ct_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs X, W and one output");
  adv_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
  if (x->dtype != ADV_DTYPE_F32 || w->dtype != ADV_DTYPE_F32 ||
      (b && b->dtype != ADV_DTYPE_F32))
    return adv__error(err, ADV_EDTYPE, "float32 required");
  if (x->ndim != 3 && x->ndim != 4)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "only 1-D and 2-D ConvTranspose (input rank %d)",
                      x->ndim);
  if (w->ndim != x->ndim)
    return adv__error(err, ADV_ESHAPE, "weight rank %d != input rank %d",
                      w->ndim, x->ndim);
  int nsp = x->ndim - 2;
  int64_t k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
  int64_t op[2] = {0, 0}, os[4] = {0, 0, 0, 0}, in[2] = {1, 1};
  for (int i = 0; i < nsp; i++) {
    k[i] = w->dims[2 + i];
    in[i] = x->dims[2 + i];
  }
  int rc;
  int64_t ka[2] = {k[0], k[1]};
  if ((rc = ints_attr(n->m, "kernel_shape", nsp, ka, err)) ||
      (rc = ints_attr(n->m, "strides", nsp, s, err)) ||
      (rc = ints_attr(n->m, "dilations", nsp, d, err)) ||
      (rc = ints_attr(n->m, "output_padding", nsp, op, err)))
    return rc;
  if (ka[0] != k[0] || (nsp == 2 && ka[1] != k[1]))
    return adv__error(err, ADV_ESHAPE, "kernel_shape disagrees with W");
  const int64_t *pv;
  int np = adv__attr_ints(n->m, "pads", &pv);
  if (np >= 0) {
    if (np != 2 * nsp)
      return adv__error(err, ADV_EFORMAT, "ConvTranspose: pads length");
    memcpy(pads, pv, sizeof(int64_t) * (size_t)np);
  }
  const int64_t *osv;
  int nos = adv__attr_ints(n->m, "output_shape", &osv);
  if (nos >= 0 && nos != nsp && nos != nsp + 2)
    return adv__error(err, ADV_EFORMAT, "ConvTranspose: output_shape length");
  for (int i = 0; i < nos && i < 4; i++)
    os[i] = osv[i];
  const char *ap = adv__attr_str(n->m, "auto_pad", "NOTSET");
  int same = !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER");
  int upper = !strcmp(ap, "SAME_UPPER");
  if (!same && strcmp(ap, "NOTSET") && strcmp(ap, "VALID"))
    return adv__error(err, ADV_EFORMAT, "ConvTranspose: auto_pad '%s'", ap);
  int64_t out[2];
  for (int i = 0; i < nsp; i++) {
    if (k[i] < 1 || k[i] > 4096 || s[i] < 1 || s[i] > 4096 || d[i] < 1 ||
        d[i] > 4096 || op[i] < 0 || op[i] >= (s[i] > d[i] ? s[i] : d[i]) ||
        pads[i] < 0 || pads[i + nsp] < 0 || pads[i] > 4096 ||
        pads[i + nsp] > 4096)
      return adv__error(
          err, ADV_EFORMAT,
          "ConvTranspose: kernel/stride/dilation/pads out of range");
    int64_t full = s[i] * (in[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1;
    if (nos >= 0 || same) {
      int64_t want = nos >= 0 ? os[i + (nos - nsp)] : in[i] * s[i];
      int64_t total = full - want;
      /* floor division, as ONNX's reference (total < 0 when output_shape
       * asks for more than the natural size: the extra is at the end) */
      int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);
      pads[i] = upper ? half : total - half;
      pads[i + nsp] = total - pads[i];
      out[i] = want;
    } else {
      if (!strcmp(ap, "VALID"))
        pads[i] = pads[i + nsp] = 0;
      out[i] = full - pads[i] - pads[i + nsp];
    }
    if (out[i] < 0 || out[i] > ((int64_t)1 << 24))
      return adv__error(err, ADV_ESHAPE, "ConvTranspose: output size %lld",
                        (long long)out[i]);
  }
  ct_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  cp->N = x->dims[0];
  cp->C = x->dims[1];
  cp->group = adv__attr_int(n->m, "group", 1);
  if (cp->group < 1 || cp->C % cp->group || w->dims[0] != cp->C)
    return adv__error(err, ADV_ESHAPE, "group %lld / W dims do not fit C=%lld",
                      (long long)cp->group, (long long)cp->C);
  cp->Cg = cp->C / cp->group;
  cp->Mg = w->dims[1];
  cp->M = cp->Mg * cp->group;
  if (b && b->numel != cp->M)
    return adv__error(err, ADV_ESHAPE, "bias length %lld != M %lld",
                      (long long)b->numel, (long long)cp->M);
  if (nsp == 2) {
    cp->H = in[0];
    cp->W = in[1];
    cp->OH = out[0];
    cp->OW = out[1];
    cp->KH = k[0];
    cp->KW = k[1];
    cp->SH = s[0];
    cp->SW = s[1];
    cp->DH = d[0];
    cp->DW = d[1];
    cp->PT = pads[0];
    cp->PL = pads[1];
  } else {
    cp->H = 1;
    cp->W = in[0];
    cp->OH = 1;
    cp->OW = out[0];
    cp->KH = 1;
    cp->KW = k[0];
    cp->SH = 1;
    cp->SW = s[0];
    cp->DH = 1;
    cp->DW = d[0];
    cp->PT = 0;
    cp->PL = pads[0];
  }
  cp->K = cp->Mg * cp->KH * cp->KW;
  cp->P = cp->H * cp->W;
  if ((uint64_t)cp->K * (uint64_t)cp->P > ((uint64_t)1 << 31))
    return adv__error(err, ADV_ELIMIT, "col buffer too large");
  n->scratch = n->bw_scratch = (size_t)(cp->K * cp->P) * sizeof(float);
  /* dX reads W, dW reads X: keep whichever is an activation */
  n->bw_extra =
      (w->is_const ? 0 : ADV_BW_IN(0)) | (x->is_const ? 0 : ADV_BW_IN(1));
  n->params = cp;
  /* large 2-D batches with constant W: oneDNN's deconvolution */
  if (nsp == 2 && cp->N >= ADV_DNNL_MIN_BATCH && w->is_const &&
      !getenv("ADV_NO_DNNL")) {
    int64_t geo[18] = {cp->N,  cp->C,  cp->H,  cp->W,  cp->M,  cp->OH,
                       cp->OW, cp->KH, cp->KW, cp->SH, cp->SW, cp->DH,
                       cp->DW, cp->PT, cp->PL, 0,      0,      cp->group};
    size_t sb = 0;
    if (adv__dnnl_deconv_plan(p, n, geo, b != NULL, p->grad, &cp->dnnl, &sb) ==
        0) {
      size_t per = (sb + (size_t)p->threads - 1) / (size_t)p->threads;
      if (per > n->scratch)
        n->scratch = per;
      if (per > n->bw_scratch)
        n->bw_scratch = per;
    }
  }
  int64_t od[4] = {cp->N, cp->M, out[0], nsp == 2 ? out[1] : 0};
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, od);
}

/* col (K x P): col[(m*KH+kh)*KW+kw][h*W+w] pairs with Y position
 * (h*SH - PT + kh*DH, w*SW - PL + kw*DW). col2im adds col into y (one
 * group, Mg x OH x OW); im2col gathers dy into col (0 outside). */
static void col2im(const ct_params *cp, const float *col, float *y) {
  for (int64_t m = 0; m < cp->Mg; m++)
    for (int64_t kh = 0; kh < cp->KH; kh++)
      for (int64_t kw = 0; kw < cp->KW; kw++) {
        const float *src = col + ((m * cp->KH + kh) * cp->KW + kw) * cp->P;
        float *dst = y + m * cp->OH * cp->OW;
        for (int64_t h = 0; h < cp->H; h++) {
          int64_t oh = h * cp->SH - cp->PT + kh * cp->DH;
          if (oh < 0 || oh >= cp->OH)
            continue;
          for (int64_t w = 0; w < cp->W; w++) {
            int64_t ow = w * cp->SW - cp->PL + kw * cp->DW;
            if (ow >= 0 && ow < cp->OW)
              dst[oh * cp->OW + ow] += src[h * cp->W + w];
          }
        }
      }
}

static void im2col(const ct_params *cp, const float *dy, float *col) {
  for (int64_t m = 0; m < cp->Mg; m++)
    for (int64_t kh = 0; kh < cp->KH; kh++)
      for (int64_t kw = 0; kw < cp->KW; kw++) {
        float *dst = col + ((m * cp->KH + kh) * cp->KW + kw) * cp->P;
        const float *src = dy + m * cp->OH * cp->OW;
        for (int64_t h = 0; h < cp->H; h++) {
          int64_t oh = h * cp->SH - cp->PT + kh * cp->DH;
          for (int64_t w = 0; w < cp->W; w++) {
            int64_t ow = w * cp->SW - cp->PL + kw * cp->DW;
            dst[h * cp->W + w] =
                (oh >= 0 && oh < cp->OH && ow >= 0 && ow < cp->OW)
                    ? src[oh * cp->OW + ow]
                    : 0.f;
          }
        }
      }
}

/* Forward of sample s on thread t with T BLAS threads. */
static void ct_sample(adv_plan *p, adv_pnode *n, int64_t s, int t, int T) {
  const ct_params *cp = n->params;
  const float *x = n->in[0]->data, *w = n->in[1]->data;
  const float *b = n->n_in > 2 && n->in[2] ? n->in[2]->data : NULL;
  int64_t OP = cp->OH * cp->OW;
  float *y = (float *)n->out[0]->data + s * cp->M * OP;
  float *col = adv__scratch(p, n, t);
  for (int64_t m = 0; m < cp->M; m++)
    for (int64_t q = 0; q < OP; q++)
      y[m * OP + q] = b ? b[m] : 0.f;
  for (int64_t g = 0; g < cp->group; g++) {
    adv__sgemm(T, 1, 0, (int)cp->K, (int)cp->P, (int)cp->Cg, 1.f,
               w + g * cp->Cg * cp->K, (int)cp->K,
               x + (s * cp->C + g * cp->Cg) * cp->P, (int)cp->P, 0.f, col,
               (int)cp->P);
    col2im(cp, col, y + g * cp->Mg * OP);
  }
}

/* dX of sample s: per group dX_g += W_g * im2col(dY_g). */
static void ct_dx_sample(adv_plan *p, adv_pnode *n, int64_t s, int t, int T) {
  const ct_params *cp = n->params;
  const float *w = n->in[1]->data;
  int64_t OP = cp->OH * cp->OW;
  const float *gy = n->out[0]->grad + s * cp->M * OP;
  float *col = adv__scratch(p, n, t);
  for (int64_t g = 0; g < cp->group; g++) {
    im2col(cp, gy + g * cp->Mg * OP, col);
    adv__sgemm(T, 0, 0, (int)cp->Cg, (int)cp->P, (int)cp->K, 1.f,
               w + g * cp->Cg * cp->K, (int)cp->K, col, (int)cp->P, 1.f,
               n->in[0]->grad + (s * cp->C + g * cp->Cg) * cp->P, (int)cp->P);
  }
}

/* over_batch's node and per-sample function, for adv__par_for. */
typedef struct ct_batch_job {
  adv_plan *p;
  adv_pnode *n;
  void (*fn)(adv_plan *, adv_pnode *, int64_t, int, int);
} ct_batch_job;

/* Samples [lo, hi), one BLAS thread each, on the claiming thread's scratch. */
static void ct_batch_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  const ct_batch_job *j = arg;
  for (int64_t s = lo; s < hi; s++)
    j->fn(j->p, j->n, s, worker, 1);
}

/* Runs fn for every sample: in parallel (one BLAS thread each) when the
 * batch covers the threads, else serially with threaded GEMMs. */
static void over_batch(adv_plan *p, adv_pnode *n,
                       void (*fn)(adv_plan *, adv_pnode *, int64_t, int, int)) {
  const ct_params *cp = n->params;
  int T = p->threads;
  if (T > 1 && cp->N >= T) {
    ct_batch_job j = {.p = p, .n = n, .fn = fn};
    adv__par_for(T, cp->N, 1, ct_batch_chunk, &j);
  } else {
    for (int64_t s = 0; s < cp->N; s++)
      fn(p, n, s, 0, T);
  }
}

static int ct_forward(adv_plan *p, adv_pnode *n) {
  const ct_params *cp = n->params;
  if (cp->dnnl)
    return adv__dnnl_conv_forward(p, n, cp->dnnl);
  over_batch(p, n, ct_sample);
  return ADV_OK;
}

static int ct_backward(adv_plan *p, adv_pnode *n) {
  const ct_params *cp = n->params;
  adv_tensor *x = n->in[0], *w = n->in[1];
  adv_tensor *b = n->n_in > 2 ? n->in[2] : NULL;
  const float *gy = n->out[0]->grad;
  if (!gy)
    return ADV_OK;
  int64_t OP = cp->OH * cp->OW;
  if (x->grad) {
    if (cp->dnnl && adv__dnnl_conv_has_bwd(cp->dnnl)) {
      int rc = adv__dnnl_conv_backward_data(p, n, cp->dnnl);
      if (rc)
        return rc;
    } else {
      over_batch(p, n, ct_dx_sample);
    }
  }
  if (b && b->grad)
    for (int64_t s = 0; s < cp->N; s++)
      for (int64_t m = 0; m < cp->M; m++) {
        const float *row = gy + (s * cp->M + m) * OP;
        float acc = 0.f;
        for (int64_t q = 0; q < OP; q++)
          acc += row[q];
        b->grad[m] += acc;
      }
  if (w->grad) {
    float *col = adv__scratch(p, n, 0);
    for (int64_t s = 0; s < cp->N; s++)
      for (int64_t g = 0; g < cp->group; g++) {
        im2col(cp, gy + (s * cp->M + g * cp->Mg) * OP, col);
        adv__sgemm(p->threads, 0, 1, (int)cp->Cg, (int)cp->K, (int)cp->P, 1.f,
                   (const float *)x->data + (s * cp->C + g * cp->Cg) * cp->P,
                   (int)cp->P, col, (int)cp->P, 1.f,
                   w->grad + g * cp->Cg * cp->K, (int)cp->K);
      }
  }
  return ADV_OK;
}

const adv_op_def adv__op_convtranspose = {.name = "ConvTranspose",
                                          .infer = ct_infer,
                                          .forward = ct_forward,
                                          .backward = ct_backward,
                                          .bw_needs = 0,
                                          .bw_needs_wgrad =
                                              ADV_BW_IN(0) | ADV_BW_IN(1)};
