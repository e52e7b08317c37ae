/*
 * conv.c - Conv (1-D and 2-D, groups incl. depthwise, strides, dilations,
 * pads / auto_pad), float32 NCHW.
 *
 * X: N x C x H x W, W: M x C/group x KH x KW, B: M (optional),
 * Y: N x M x OH x OW.
 * Each (sample, group) is one GEMM  Y_g (Mg x P) = W_g (Mg x K) * col (K x P)
 * with K = Cg*KH*KW and P = OH*OW; col is X itself for 1x1/stride 1/no pad,
 * otherwise an im2col copy in per-thread scratch. Samples are spread over
 * threads (single-threaded BLAS inside) when the batch is large enough,
 * otherwise BLAS gets all threads. Depthwise convolutions (Cg = Mg = 1) use
 * a direct loop.
 */
#include "core/engine.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* Convolutions run on oneDNN from this batch size on, and at any batch
 * size when one sample's work is at least ADV_DNNL_MIN_MACS multiply-adds
 * (ResNet-18's 64..512-channel 3x3 layers, 19-38 M each: 2.2-2.5x faster
 * at batch 1 than im2col + GEMM; small layers such as MNIST's, <= 2 M,
 * are faster on im2col at batch 1). */
#define ADV_DNNL_MIN_BATCH 8
#define ADV_DNNL_MIN_MACS ((int64_t)8 << 20)

typedef struct conv_params {
  int64_t N, C, H, W, M, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL;
  int64_t group, Cg, Mg, K, P;
  int direct_1x1; /* col == X */
  int depthwise;
  int64_t S;       /* samples per GEMM chunk (im2col of S samples side by side) */
  void *dnnl;      /* oneDNN primitives (conv_dnnl.c), or NULL */
  int relu;        /* y = max(conv, 0): a Relu absorbed by fuse.c */
} conv_params;

static int conv_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs X, W and one output");
  adv_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
  n->bw_can_assign = ADV_BW_IN(0); /* dX stored when assigned (conv_backward) */
  if (x->dtype != ADV_DTYPE_F32 || w->dtype != ADV_DTYPE_F32 ||
      (b && b->dtype != ADV_DTYPE_F32))
    return adv__error(err, ADV_EDTYPE, "float32 required");
  if (x->ndim != 3 && x->ndim != 4)
    return adv__error(err, ADV_EUNSUPPORTED, "only 1-D and 2-D convolution");
  if (w->ndim != x->ndim)
    return adv__error(err, ADV_ESHAPE, "weight rank %d != input rank %d",
                     w->ndim, x->ndim);
  int64_t ks[2] = {w->dims[2], x->ndim == 4 ? w->dims[3] : 1};
  const int64_t *kattr;
  int nk = adv__attr_ints(n->m, "kernel_shape", &kattr);
  if (nk >= 0) {
    if (nk != x->ndim - 2 || kattr[0] != ks[0] || (nk == 2 && kattr[1] != ks[1]))
      return adv__error(err, ADV_ESHAPE, "kernel_shape disagrees with W");
  }
  adv_pool_geom g;
  int rc = adv__pool_geom(n->m, x, ks, false, &g, err);
  if (rc)
    return rc;
  conv_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  cp->N = x->dims[0];
  cp->C = x->dims[1];
  cp->M = w->dims[0];
  cp->group = adv__attr_int(n->m, "group", 1);
  if (cp->group < 1 || cp->C % cp->group || cp->M % cp->group)
    return adv__error(err, ADV_ESHAPE, "group %lld does not divide C=%lld M=%lld",
                     (long long)cp->group, (long long)cp->C, (long long)cp->M);
  cp->Cg = cp->C / cp->group;
  cp->Mg = cp->M / cp->group;
  if (w->dims[1] != cp->Cg)
    return adv__error(err, ADV_ESHAPE, "W has %lld input channels, expected %lld",
                     (long long)w->dims[1], (long long)cp->Cg);
  if (b && (b->numel != cp->M))
    return adv__error(err, ADV_ESHAPE, "bias length %lld != M %lld",
                     (long long)b->numel, (long long)cp->M);
  if (x->ndim == 4) {
    cp->H = g.in[0]; cp->W = g.in[1]; cp->OH = g.out[0]; cp->OW = g.out[1];
    cp->KH = g.k[0]; cp->KW = g.k[1]; cp->SH = g.stride[0]; cp->SW = g.stride[1];
    cp->DH = g.dil[0]; cp->DW = g.dil[1]; cp->PT = g.pad_lo[0]; cp->PL = g.pad_lo[1];
  } else {
    cp->H = 1; cp->W = g.in[0]; cp->OH = 1; cp->OW = g.out[0];
    cp->KH = 1; cp->KW = g.k[0]; cp->SH = 1; cp->SW = g.stride[0];
    cp->DH = 1; cp->DW = g.dil[0]; cp->PT = 0; cp->PL = g.pad_lo[0];
  }
  cp->K = cp->Cg * cp->KH * cp->KW;
  cp->P = cp->OH * cp->OW;
  cp->direct_1x1 = cp->KH == 1 && cp->KW == 1 && cp->SH == 1 && cp->SW == 1 &&
                   cp->PT == 0 && cp->PL == 0 && cp->OH == cp->H && cp->OW == cp->W;
  cp->depthwise = cp->Cg == 1 && cp->Mg == 1;
  if ((uint64_t)cp->K * (uint64_t)cp->P > ((uint64_t)1 << 31))
    return adv__error(err, ADV_ELIMIT, "im2col buffer too large");
  /* chunk: enough samples that one GEMM sees ~512 KiB of im2col columns,
   * but at least as many chunks as threads when the batch allows */
  int64_t per_sample = cp->K * cp->P * (int64_t)sizeof(float);
  cp->S = per_sample > 0 ? ((int64_t)512 << 10) / per_sample : 1;
  if (cp->S < 1)
    cp->S = 1;
  int64_t maxS = (cp->N + p->threads - 1) / p->threads;
  if (cp->S > maxS)
    cp->S = maxS > 0 ? maxS : 1;
  if (!cp->depthwise) {
    /* col (K x S*P) + GEMM output (Mg x S*P) per thread */
    n->scratch = (size_t)((cp->K + cp->Mg) * cp->S * cp->P) * sizeof(float);
  }
  n->bw_scratch = (size_t)((cp->K + cp->Mg) * cp->S * cp->P) * sizeof(float);
  /* dX reads W, dW reads X: keep whichever is an activation */
  n->bw_extra = (w->is_const ? 0 : ADV_BW_IN(0)) | (x->is_const ? 0 : ADV_BW_IN(1));
  cp->relu = (n->fuse & ADV_FUSE_RELU) != 0;
  if (cp->relu) /* the ReLU's backward reads y */
    n->bw_extra |= ADV_BW_OUT(0);
  n->params = cp;
  /* large 2-D batches: oneDNN's blocked kernels (falls back when refused) */
  int64_t macs = cp->M * cp->P * cp->K; /* per sample */
  if (x->ndim == 4 &&
      (cp->N >= ADV_DNNL_MIN_BATCH || macs >= ADV_DNNL_MIN_MACS) &&
      w->is_const && !getenv("ADV_NO_DNNL")) {
    int64_t geo[18] = {cp->N, cp->C, cp->H, cp->W, cp->M, cp->OH, cp->OW, cp->KH, cp->KW,
                       cp->SH, cp->SW, cp->DH, cp->DW, cp->PT, cp->PL, g.pad_hi[0],
                       g.pad_hi[1], cp->group};
    size_t sb = 0;
    if (adv__dnnl_conv_plan(p, n, geo, b != NULL, cp->relu, p->grad, &cp->dnnl, &sb) == 0) {
      size_t per = (sb + (size_t)p->threads - 1) / (size_t)p->threads;
      if (per > n->scratch)
        n->scratch = per;
      if (per > n->bw_scratch)
        n->bw_scratch = per;
    }
  }
  int64_t od[4] = {cp->N, cp->M, cp->OH, cp->OW};
  if (x->ndim == 3) {
    od[2] = cp->OW;
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 3, od);
  }
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 4, od);
}

/* Output columns ow whose input column ow*SW + iw0 lies in [0, W):
 * [*lo, *hi). */
static void valid_cols(const conv_params *cp, int64_t iw0, int64_t *lo, int64_t *hi) {
  int64_t a = iw0 >= 0 ? 0 : (-iw0 + cp->SW - 1) / cp->SW;
  int64_t b = cp->W - iw0 <= 0 ? 0 : (cp->W - iw0 + cp->SW - 1) / cp->SW;
  if (b > cp->OW)
    b = cp->OW;
  if (a > b)
    a = b;
  *lo = a;
  *hi = b;
}

/* im2col for one group of one sample: col[(c*KH+kh)*KW+kw][oh*OW+ow],
 * rows ld floats apart (ld = S*P when S samples sit side by side). The
 * padding columns of each output row are zero-filled, the rest copied
 * (contiguously when the stride is 1). */
static void im2col(const conv_params *cp, const float *x, float *col, int64_t ld) {
  for (int64_t c = 0; c < cp->Cg; c++)
    for (int64_t kh = 0; kh < cp->KH; kh++)
      for (int64_t kw = 0; kw < cp->KW; kw++) {
        float *dst = col + ((c * cp->KH + kh) * cp->KW + kw) * ld;
        const float *src = x + c * cp->H * cp->W;
        int64_t iw0 = -cp->PL + kw * cp->DW, lo, hi;
        valid_cols(cp, iw0, &lo, &hi);
        for (int64_t oh = 0; oh < cp->OH; oh++) {
          int64_t ih = oh * cp->SH - cp->PT + kh * cp->DH;
          float *d = dst + oh * cp->OW;
          if (ih < 0 || ih >= cp->H) {
            memset(d, 0, sizeof(float) * (size_t)cp->OW);
            continue;
          }
          const float *srow = src + ih * cp->W;
          for (int64_t ow = 0; ow < lo; ow++)
            d[ow] = 0.f;
          if (cp->SW == 1)
            memcpy(d + lo, srow + lo + iw0, sizeof(float) * (size_t)(hi - lo));
          else
            for (int64_t ow = lo; ow < hi; ow++)
              d[ow] = srow[ow * cp->SW + iw0];
          for (int64_t ow = hi; ow < cp->OW; ow++)
            d[ow] = 0.f;
        }
      }
}

/*
 * Direct depthwise conv for one channel of one sample. Per output row: the
 * bias, then one multiply-add sweep per kernel tap (kh, kw) over the
 * output columns whose input column lies inside the image (valid_cols), so
 * the inner loop is contiguous (stride 1) and vectorizes. Each output still
 * adds its taps in kh-major, kw-minor order, as a per-output loop would.
 */
static void depthwise(const conv_params *cp, const float *x, const float *w,
                      float bias, float *y) {
  for (int64_t oh = 0; oh < cp->OH; oh++) {
    float *restrict yr = y + oh * cp->OW;
    for (int64_t ow = 0; ow < cp->OW; ow++)
      yr[ow] = bias;
    for (int64_t kh = 0; kh < cp->KH; kh++) {
      int64_t ih = oh * cp->SH - cp->PT + kh * cp->DH;
      if (ih < 0 || ih >= cp->H)
        continue;
      const float *restrict xr = x + ih * cp->W;
      for (int64_t kw = 0; kw < cp->KW; kw++) {
        int64_t iw0 = -cp->PL + kw * cp->DW, lo, hi;
        valid_cols(cp, iw0, &lo, &hi);
        float wv = w[kh * cp->KW + kw];
        if (cp->SW == 1) {
#pragma omp simd
          for (int64_t ow = lo; ow < hi; ow++)
            yr[ow] += xr[ow + iw0] * wv;
        } else {
          for (int64_t ow = lo; ow < hi; ow++)
            yr[ow] += xr[ow * cp->SW + iw0] * wv;
        }
      }
    }
  }
}

/* A depthwise forward's operands, for its adv__par_for chunks. */
typedef struct dw_job {
  const conv_params *cp;
  const float *x, *w, *b;
  float *y;
  int64_t s0;
} dw_job;

/* (sample, channel) pairs [lo, hi) after sample s0, row-major. */
static void dw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const dw_job *j = arg;
  const conv_params *cp = j->cp;
  int64_t CHW = cp->C * cp->H * cp->W, MP = cp->M * cp->P;
  for (int64_t i = lo; i < hi; i++) {
    int64_t s = j->s0 + i / cp->C, c = i % cp->C;
    depthwise(cp, j->x + s * CHW + c * cp->H * cp->W,
              j->w + c * cp->KH * cp->KW, j->b ? j->b[c] : 0.f,
              j->y + s * MP + c * cp->P);
  }
}

/*
 * Forward of samples [s0, s0+S): per group one GEMM
 *   out (Mg x S*P) = W_g (Mg x K) * col (K x S*P)
 * over the im2col columns of the S samples side by side, then out is
 * scattered to NCHW with the bias added. 1x1/stride-1 convolutions skip
 * im2col and run one GEMM per sample on X directly.
 */
static void conv_chunk_raw(adv_plan *p, adv_pnode *n, int64_t s0, int64_t S, int thread,
                           int T) {
  const conv_params *cp = n->params;
  const float *x = n->in[0]->data, *w = n->in[1]->data;
  const float *b = n->n_in > 2 && n->in[2] ? n->in[2]->data : NULL;
  float *y = n->out[0]->data;
  int64_t CHW = cp->C * cp->H * cp->W, MP = cp->M * cp->P;
  if (cp->depthwise) {
    /* channels in parallel when the chunk has T threads (small batches) and
     * enough work to pay for waking them */
    int64_t work = S * cp->C * cp->P * cp->KH * cp->KW;
    dw_job j = {.cp = cp, .x = x, .w = w, .b = b, .y = y, .s0 = s0};
    adv__par_for(T > 1 && work > 262144 ? T : 1, S * cp->C, 1, dw_chunk, &j);
    return;
  }
  if (cp->direct_1x1) {
    for (int64_t s = s0; s < s0 + S; s++)
      for (int64_t g = 0; g < cp->group; g++) {
        float *yg = y + s * MP + g * cp->Mg * cp->P;
        adv__sgemm(T, 0, 0, (int)cp->Mg, (int)cp->P, (int)cp->K, 1.f,
                   w + g * cp->Mg * cp->K, (int)cp->K,
                   x + s * CHW + g * cp->Cg * cp->H * cp->W, (int)cp->P, 0.f, yg,
                   (int)cp->P);
        if (b)
          for (int64_t m = 0; m < cp->Mg; m++) {
            float bv = b[g * cp->Mg + m], *row = yg + m * cp->P;
            for (int64_t q = 0; q < cp->P; q++)
              row[q] += bv;
          }
      }
    return;
  }
  int64_t ld = S * cp->P;
  float *col = adv__scratch(p, n, thread), *out = col + cp->K * ld;
  for (int64_t g = 0; g < cp->group; g++) {
    for (int64_t s = 0; s < S; s++)
      im2col(cp, x + (s0 + s) * CHW + g * cp->Cg * cp->H * cp->W, col + s * cp->P, ld);
    adv__sgemm(T, 0, 0, (int)cp->Mg, (int)ld, (int)cp->K, 1.f,
               w + g * cp->Mg * cp->K, (int)cp->K, col, (int)ld, 0.f, out, (int)ld);
    for (int64_t s = 0; s < S; s++)
      for (int64_t m = 0; m < cp->Mg; m++) {
        const float *src = out + m * ld + s * cp->P;
        float *dst = y + (s0 + s) * MP + (g * cp->Mg + m) * cp->P;
        float bv = b ? b[g * cp->Mg + m] : 0.f;
        for (int64_t q = 0; q < cp->P; q++)
          dst[q] = src[q] + bv;
      }
  }
}

/* conv_chunk_raw, then the absorbed ReLU over the chunk's fresh output. */
static void conv_chunk(adv_plan *p, adv_pnode *n, int64_t s0, int64_t S, int thread,
                       int T) {
  const conv_params *cp = n->params;
  conv_chunk_raw(p, n, s0, S, thread, T);
  if (cp->relu) {
    float *y = (float *)n->out[0]->data + s0 * cp->M * cp->P;
    int64_t len = S * cp->M * cp->P;
    for (int64_t i = 0; i < len; i++)
      y[i] = y[i] > 0.f ? y[i] : 0.f;
  }
}

/* conv_over_batch's node and per-chunk function, for adv__par_for. */
typedef struct conv_batch_job {
  adv_plan *p;
  adv_pnode *n;
  void (*fn)(adv_plan *, adv_pnode *, int64_t, int64_t, int, int);
} conv_batch_job;

/* Chunks [lo, hi) of S samples, each with single-threaded BLAS on the
 * claiming thread's scratch. */
static void conv_batch_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  const conv_batch_job *j = arg;
  const conv_params *cp = j->n->params;
  for (int64_t c = lo; c < hi; c++) {
    int64_t s0 = c * cp->S, S = cp->N - s0 < cp->S ? cp->N - s0 : cp->S;
    j->fn(j->p, j->n, s0, S, worker, 1);
  }
}

/* Runs fn over the batch in chunks of S samples: chunks in parallel with
 * single-threaded BLAS when there are enough of them, else one chunk at a
 * time with multi-threaded BLAS. */
static void conv_over_batch(adv_plan *p, adv_pnode *n,
                            void (*fn)(adv_plan *, adv_pnode *, int64_t, int64_t,
                                       int, int)) {
  const conv_params *cp = n->params;
  int T = p->threads;
  int64_t nch = (cp->N + cp->S - 1) / cp->S;
  if (T > 1 && nch >= T) {
    conv_batch_job j = {.p = p, .n = n, .fn = fn};
    adv__par_for(T, nch, 1, conv_batch_chunk, &j);
  } else { /* few chunks: parallelize inside each GEMM */
    for (int64_t c = 0; c < nch; c++) {
      int64_t s0 = c * cp->S, S = cp->N - s0 < cp->S ? cp->N - s0 : cp->S;
      fn(p, n, s0, S, 0, T);
    }
  }
}

static int conv_forward(adv_plan *p, adv_pnode *n) {
  const conv_params *cp = n->params;
  if (cp->dnnl)
    return adv__dnnl_conv_forward(p, n, cp->dnnl);
  conv_over_batch(p, n, conv_chunk);
  return ADV_OK;
}

/* col2im: scatters-adds col (K x P, rows ld apart) into the gradient dx,
 * over the valid (non-padding) span of each row only. */
static void col2im_add(const conv_params *cp, const float *col, float *dx,
                       int64_t ld) {
  for (int64_t c = 0; c < cp->Cg; c++)
    for (int64_t kh = 0; kh < cp->KH; kh++)
      for (int64_t kw = 0; kw < cp->KW; kw++) {
        const float *src = col + ((c * cp->KH + kh) * cp->KW + kw) * ld;
        float *dst = dx + c * cp->H * cp->W;
        int64_t iw0 = -cp->PL + kw * cp->DW, lo, hi;
        valid_cols(cp, iw0, &lo, &hi);
        for (int64_t oh = 0; oh < cp->OH; oh++) {
          int64_t ih = oh * cp->SH - cp->PT + kh * cp->DH;
          if (ih < 0 || ih >= cp->H)
            continue;
          float *drow = dst + ih * cp->W;
          const float *sr = src + oh * cp->OW;
          if (cp->SW == 1) {
            float *dd = drow + lo + iw0;
            const float *ss = sr + lo;
            for (int64_t j = 0; j < hi - lo; j++)
              dd[j] += ss[j];
          } else {
            for (int64_t ow = lo; ow < hi; ow++)
              drow[ow * cp->SW + iw0] += sr[ow];
          }
        }
      }
}

/* dX of samples [s0, s0+S): per group dcol (K x S*P) = W_g^T * dY_g with
 * dY_g gathered side by side, then col2im per sample (direct GEMM for 1x1,
 * direct loops for depthwise). */
static void conv_dx_chunk(adv_plan *p, adv_pnode *n, int64_t s0, int64_t S, int thread,
                          int T) {
  const conv_params *cp = n->params;
  const float *w = n->in[1]->data;
  int64_t CHW = cp->C * cp->H * cp->W, MP = cp->M * cp->P;
  if (n->bw_assign & ADV_BW_IN(0)) /* stores: start from zero, cache-hot */
    memset(n->in[0]->grad + s0 * CHW, 0, sizeof(float) * (size_t)(S * CHW));
  if (cp->depthwise) {
    for (int64_t s = s0; s < s0 + S; s++) {
      const float *gy = n->out[0]->grad + s * MP;
      float *gx = n->in[0]->grad + s * CHW;
      for (int64_t c = 0; c < cp->C; c++) {
        const float *wc = w + c * cp->KH * cp->KW, *g = gy + c * cp->P;
        float *dxc = gx + c * cp->H * cp->W;
        for (int64_t oh = 0; oh < cp->OH; oh++)
          for (int64_t ow = 0; ow < cp->OW; ow++) {
            float gv = g[oh * cp->OW + ow];
            for (int64_t kh = 0; kh < cp->KH; kh++) {
              int64_t ih = oh * cp->SH - cp->PT + kh * cp->DH;
              if (ih < 0 || ih >= cp->H)
                continue;
              for (int64_t kw = 0; kw < cp->KW; kw++) {
                int64_t iw = ow * cp->SW - cp->PL + kw * cp->DW;
                if (iw >= 0 && iw < cp->W)
                  dxc[ih * cp->W + iw] += gv * wc[kh * cp->KW + kw];
              }
            }
          }
      }
    }
    return;
  }
  if (cp->direct_1x1) {
    for (int64_t s = s0; s < s0 + S; s++)
      for (int64_t g = 0; g < cp->group; g++)
        adv__sgemm(T, 1, 0, (int)cp->K, (int)cp->P, (int)cp->Mg, 1.f,
                   w + g * cp->Mg * cp->K, (int)cp->K,
                   n->out[0]->grad + s * MP + g * cp->Mg * cp->P, (int)cp->P, 1.f,
                   n->in[0]->grad + s * CHW + g * cp->Cg * cp->H * cp->W, (int)cp->P);
    return;
  }
  int64_t ld = S * cp->P;
  float *col = adv__scratch(p, n, thread), *dyb = col + cp->K * ld;
  if (cp->group == 1) { /* dY of a sample is already Mg x P: no gather */
    for (int64_t s = s0; s < s0 + S; s++) {
      adv__sgemm(T, 1, 0, (int)cp->K, (int)cp->P, (int)cp->Mg, 1.f, w, (int)cp->K,
                 n->out[0]->grad + s * MP, (int)cp->P, 0.f, col, (int)cp->P);
      col2im_add(cp, col, n->in[0]->grad + s * CHW, cp->P);
    }
    return;
  }
  for (int64_t g = 0; g < cp->group; g++) {
    for (int64_t s = 0; s < S; s++)
      for (int64_t m = 0; m < cp->Mg; m++)
        memcpy(dyb + m * ld + s * cp->P,
               n->out[0]->grad + (s0 + s) * MP + (g * cp->Mg + m) * cp->P,
               sizeof(float) * (size_t)cp->P);
    adv__sgemm(T, 1, 0, (int)cp->K, (int)ld, (int)cp->Mg, 1.f,
               w + g * cp->Mg * cp->K, (int)cp->K, dyb, (int)ld, 0.f, col, (int)ld);
    for (int64_t s = 0; s < S; s++)
      col2im_add(cp, col + s * cp->P,
                 n->in[0]->grad + (s0 + s) * CHW + g * cp->Cg * cp->H * cp->W, ld);
  }
}

/* What conv_relu_bw_chunk reads (adv__par_for context). */
struct conv_relu_bw_job {
  const float *y;
  float *gy;
};

/* A chunk [lo, hi) of conv_relu_bw's loop over i (adv__par_for). */
static void conv_relu_bw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct conv_relu_bw_job *j = arg;
  const float *y = j->y;
  float *gy = j->gy;
  for (int64_t i = lo; i < hi; i++) {
    gy[i] = y[i] > 0.f ? gy[i] : 0.f;
  }
}

/*
 * Backward: dX = conv^T(dY, W) per sample (parallel over samples);
 * dW += dY_g * col(X)_g^T and dB += sum dY, accumulated serially over the
 * batch (only for weight-gradient sessions).
 */
static int conv_backward(adv_plan *p, adv_pnode *n) {
  const conv_params *cp = n->params;
  adv_tensor *x = n->in[0], *w = n->in[1];
  adv_tensor *b = n->n_in > 2 ? n->in[2] : NULL;
  float *gy = n->out[0]->grad;
  if (!gy)
    return ADV_OK;
  if (cp->relu) {
    /* ReLU backward in place: dY is this node's alone (only the producer
     * reads a gradient, and every consumer has already added to it) */
    const float *y = n->out[0]->data;
    int64_t len = n->out[0]->numel;
    struct conv_relu_bw_job conv_relu_bw_j = {.y = y, .gy = gy};
    adv__par_for((len > 65536) ? (p->threads) : 1, len, 16384,
                 conv_relu_bw_chunk, &conv_relu_bw_j);
  }
  if (x->grad) {
    if (cp->dnnl && adv__dnnl_conv_has_bwd(cp->dnnl)) {
      int rc = adv__dnnl_conv_backward_data(p, n, cp->dnnl);
      if (rc)
        return rc;
    } else {
      conv_over_batch(p, n, conv_dx_chunk);
    }
  }
  if (b && b->grad) {
    for (int64_t s = 0; s < cp->N; s++)
      for (int64_t m = 0; m < cp->M; m++) {
        const float *row = gy + (s * cp->M + m) * cp->P;
        float acc = 0.f;
        for (int64_t q = 0; q < cp->P; q++)
          acc += row[q];
        b->grad[m] += acc;
      }
  }
  if (w->grad) {
    const float *xd = x->data;
    float *col = adv__scratch(p, n, 0);
    for (int64_t s = 0; s < cp->N; s++) {
      const float *xs = xd + s * cp->C * cp->H * cp->W;
      const float *gys = gy + s * cp->M * cp->P;
      for (int64_t g = 0; g < cp->group; g++) {
        const float *xg = xs + g * cp->Cg * cp->H * cp->W;
        const float *src = xg;
        if (!cp->direct_1x1) {
          im2col(cp, xg, col, cp->P);
          src = col;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cp->Mg,
                    (int)cp->K, (int)cp->P, 1.f, gys + g * cp->Mg * cp->P,
                    (int)cp->P, src, (int)cp->P, 1.f,
                    w->grad + g * cp->Mg * cp->K, (int)cp->K);
      }
    }
  }
  return ADV_OK;
}

const adv_op_def adv__op_conv = {.name = "Conv",
                                 .infer = conv_infer,
                                 .forward = conv_forward,
                                 .backward = conv_backward,
                                 .bw_needs = 0,
                                 .bw_needs_wgrad = ADV_BW_IN(0) | ADV_BW_IN(1)};
