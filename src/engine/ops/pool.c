/*
 * pool.c - MaxPool, AveragePool (1-D/2-D; pads, auto_pad, strides,
 * dilations for MaxPool, ceil_mode, count_include_pad), GlobalAveragePool
 * and GlobalMaxPool (any rank >= 3). Float32 NCHW.
 * AveragePool with count_include_pad=0 divides by the number of window
 * elements inside the input; with 1, by the window size clipped to the
 * padded input (a ceil_mode window hanging past the pads counts only up to
 * the pad edge, as the ONNX reference and PyTorch do).
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

typedef struct pool_params {
  int64_t NC, H, W, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL, PB, PR;
  int is_max, include_pad;
} pool_params;

/* The common 2x2 / stride 2 / no padding max pool. Same rule as the
 * generic path (first maximum in row-major order wins, NaN propagates). */
static int is2x2(const pool_params *pp) {
  return pp->is_max && pp->KH == 2 && pp->KW == 2 && pp->SH == 2 && pp->SW == 2 &&
         pp->DH == 1 && pp->DW == 1 && pp->PT == 0 && pp->PL == 0 &&
         2 * pp->OH <= pp->H && 2 * pp->OW <= pp->W;
}

static inline int pick(float v, float m) { return v > m || v != v; }

/* 1 when each of the O windows (start o*S - P, K taps D apart) has a tap
 * inside [0, N). A window entirely in the padding gives -inf. */
static int windows_hit(int64_t O, int64_t S, int64_t P, int64_t K, int64_t D, int64_t N) {
  for (int64_t o = 0; o < O; o++) {
    int hit = 0;
    for (int64_t k = 0; k < K && !hit; k++) {
      int64_t i = o * S - P + k * D;
      hit = i >= 0 && i < N;
    }
    if (!hit)
      return 0;
  }
  return 1;
}

static int pool_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 1 || !n->in[0] || n->n_out < 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and an output");
  if (n->n_out > 1 && n->out[1])
    return adv__error(err, ADV_EUNSUPPORTED, "MaxPool Indices output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "float32 required");
  if (x->ndim != 3 && x->ndim != 4)
    return adv__error(err, ADV_EUNSUPPORTED, "only 1-D and 2-D pooling");
  if (adv__attr_int(n->m, "storage_order", 0) != 0)
    return adv__error(err, ADV_EUNSUPPORTED, "storage_order=1");
  adv_pool_geom g;
  int rc = adv__pool_geom(n->m, x, NULL, true, &g, err);
  if (rc)
    return rc;
  pool_params *pp = adv__arena_alloc(&p->arena, sizeof(*pp));
  if (!pp)
    return ADV_ENOMEM;
  pp->is_max = !strcmp(adv__ops[n->op]->name, "MaxPool");
  if (!pp->is_max && (g.dil[0] != 1 || (g.nsp > 1 && g.dil[1] != 1)))
    return adv__error(err, ADV_EUNSUPPORTED,
                      "AveragePool attribute 'dilations' (opset 19) other than "
                      "1 is not supported");
  pp->include_pad = (int)adv__attr_int(n->m, "count_include_pad", 0);
  pp->NC = x->dims[0] * x->dims[1];
  if (g.nsp == 2) {
    pp->H = g.in[0]; pp->W = g.in[1]; pp->OH = g.out[0]; pp->OW = g.out[1];
    pp->KH = g.k[0]; pp->KW = g.k[1]; pp->SH = g.stride[0]; pp->SW = g.stride[1];
    pp->DH = g.dil[0]; pp->DW = g.dil[1]; pp->PT = g.pad_lo[0]; pp->PL = g.pad_lo[1];
    pp->PB = g.pad_hi[0]; pp->PR = g.pad_hi[1];
  } else {
    pp->H = 1; pp->W = g.in[0]; pp->OH = 1; pp->OW = g.out[0];
    pp->KH = 1; pp->KW = g.k[0]; pp->SH = 1; pp->SW = g.stride[0];
    pp->DH = 1; pp->DW = g.dil[0]; pp->PT = 0; pp->PL = g.pad_lo[0];
    pp->PB = 0; pp->PR = g.pad_hi[0];
  }
  n->params = pp;
  /* max is monotone, so it commutes with Relu unless a window is empty */
  n->relu_commutes = pp->is_max && windows_hit(pp->OH, pp->SH, pp->PT, pp->KH, pp->DH, pp->H) &&
                     windows_hit(pp->OW, pp->SW, pp->PL, pp->KW, pp->DW, pp->W);
  /* 2x2 windows that tile the input exactly: backward can store */
  n->bw_can_assign = is2x2(pp) && 2 * pp->OH == pp->H && 2 * pp->OW == pp->W
                         ? ADV_BW_IN(0) : 0;
  int64_t od[4] = {x->dims[0], x->dims[1], pp->OH, pp->OW};
  if (x->ndim == 3) {
    od[2] = pp->OW;
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 3, od);
  }
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 4, od);
}


#ifdef __AVX2__
/* Lanes 0..n-1 set (n clamped to [0, 8]): loads and stores of a row's
 * last, partial block of 8 outputs never touch memory past the row. */
static inline __m256i lanes(int64_t n) {
  n = n < 0 ? 0 : n > 8 ? 8 : n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The windows of outputs ow .. ow+7 of one output row (rem outputs left in
 * the row; a shorter block reads only the row): e0/o0 the even/odd
 * elements of input row r0, e1/o1 of r1, lanes in the window order
 * 0,1,4,5,2,3,6,7 that _mm256_shuffle_ps gives; k0/k1 the masks of the
 * block's two halves of input elements. */
typedef struct win8 {
  __m256 e0, o0, e1, o1;
  __m256i k0, k1;
} win8;

/* Loads the block; returns 1 when any element is NaN (or the sums
 * overflow to NaN: a harmless false alarm), so the caller can fall back to
 * the scalar rule for the rest of the row. */
static inline int win8_load(const float *r0, const float *r1, int64_t ow, int64_t rem,
                            win8 *w) {
  w->k0 = lanes(2 * rem);
  w->k1 = lanes(2 * rem - 8);
  __m256 a0 = _mm256_maskload_ps(r0 + 2 * ow, w->k0), a1 = _mm256_maskload_ps(r0 + 2 * ow + 8, w->k1);
  __m256 b0 = _mm256_maskload_ps(r1 + 2 * ow, w->k0), b1 = _mm256_maskload_ps(r1 + 2 * ow + 8, w->k1);
  w->e0 = _mm256_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0));
  w->o0 = _mm256_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1));
  w->e1 = _mm256_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0));
  w->o1 = _mm256_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1));
  __m256 s0 = _mm256_add_ps(w->e0, w->o0), s1 = _mm256_add_ps(w->e1, w->o1);
  return _mm256_movemask_ps(_mm256_cmp_ps(s0, s1, _CMP_UNORD_Q)) != 0;
}

/* Window order 0,1,4,5,2,3,6,7 <-> 0..7 (the permutation is its own
 * inverse). */
static inline __m256 win8_order(__m256 v) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), _MM_SHUFFLE(3, 1, 2, 0)));
}
#endif

/*
 * One output row of the 2x2 pool: y[ow] = first max of
 * {r0[2ow], r0[2ow+1], r1[2ow], r1[2ow+1]}. With AVX2, 8 outputs per step;
 * a NaN in a block sends the rest of the row to the scalar rule so NaN
 * propagation stays exact.
 */
static void maxpool2x2_row(const float *r0, const float *r1, float *yr, int64_t OW) {
  int64_t ow = 0;
#ifdef __AVX2__
  for (; ow < OW; ow += 8) {
    int64_t rem = OW - ow;
    win8 w;
    if (win8_load(r0, r1, ow, rem, &w))
      break; /* scalar from here on: exact NaN rule */
    __m256 m = _mm256_max_ps(_mm256_max_ps(w.e0, w.e1), _mm256_max_ps(w.o0, w.o1));
    _mm256_maskstore_ps(yr + ow, lanes(rem), win8_order(m));
  }
#endif
  for (; ow < OW; ow++) {
    float m = r0[2 * ow];
    if (pick(r0[2 * ow + 1], m)) m = r0[2 * ow + 1];
    if (pick(r1[2 * ow], m)) m = r1[2 * ow];
    if (pick(r1[2 * ow + 1], m)) m = r1[2 * ow + 1];
    yr[ow] = m;
  }
}

struct maxpool2x2_job {
  const pool_params *pp;
  const float *x;
  float *y;
};

/* A chunk [lo, hi) of maxpool2x2's loop over c (adv__par_for). */
static void maxpool2x2_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct maxpool2x2_job *j = arg;
  const pool_params *pp = j->pp;
  const float *x = j->x;
  float *y = j->y;
  for (int64_t c = lo; c < hi; c++) {
    const float *xc = x + c * pp->H * pp->W;
    float *yc = y + c * pp->OH * pp->OW;
    for (int64_t oh = 0; oh < pp->OH; oh++) {
      const float *r0 = xc + 2 * oh * pp->W;
      maxpool2x2_row(r0, r0 + pp->W, yc + oh * pp->OW, pp->OW);
    }
  }
}

static void maxpool2x2(const pool_params *pp, const float *x, float *y,
                       int threads) {
  struct maxpool2x2_job maxpool2x2_j = {.pp = pp, .x = x, .y = y};
  adv__par_for((pp->NC * pp->OH * pp->OW > 16384) ? (threads) : 1, pp->NC, 1,
               maxpool2x2_chunk, &maxpool2x2_j);
}

/*
 * Backward of one output row when the windows tile the input exactly and
 * the gradient is assigned: the window's first maximum gets dy, the other
 * three elements get 0 (every element of both input rows is written).
 */
static void maxpool2x2_bw_row_assign(const float *r0, const float *r1, const float *g,
                                     float *d0, float *d1, int64_t OW) {
  int64_t ow = 0;
#ifdef __AVX2__
  for (; ow < OW; ow += 8) {
    int64_t rem = OW - ow;
    win8 w;
    if (win8_load(r0, r1, ow, rem, &w))
      break; /* NaN somewhere: scalar rule from here on */
    __m256 ae = w.e0, ao = w.o0, be = w.e1, bo = w.o1;
    __m256 m = _mm256_max_ps(_mm256_max_ps(ae, ao), _mm256_max_ps(be, bo));
    /* gy in the same shuffled window order */
    __m256 gv = win8_order(_mm256_maskload_ps(g + ow, lanes(rem)));
    __m256 e0 = _mm256_cmp_ps(ae, m, _CMP_EQ_OQ);
    __m256 e1 = _mm256_andnot_ps(e0, _mm256_cmp_ps(ao, m, _CMP_EQ_OQ));
    __m256 taken = _mm256_or_ps(e0, e1);
    __m256 e2 = _mm256_andnot_ps(taken, _mm256_cmp_ps(be, m, _CMP_EQ_OQ));
    __m256 e3 = _mm256_andnot_ps(_mm256_or_ps(taken, e2), _mm256_castsi256_ps(_mm256_set1_epi32(-1)));
    __m256 g0 = _mm256_and_ps(e0, gv), g1 = _mm256_and_ps(e1, gv);
    __m256 g2 = _mm256_and_ps(e2, gv), g3 = _mm256_and_ps(e3, gv);
    /* re-interleave even/odd: the 0,1,4,5 | 2,3,6,7 window order makes
     * unpacklo = input elements 0..7 and unpackhi = 8..15, in order */
    _mm256_maskstore_ps(d0 + 2 * ow, w.k0, _mm256_unpacklo_ps(g0, g1));
    _mm256_maskstore_ps(d0 + 2 * ow + 8, w.k1, _mm256_unpackhi_ps(g0, g1));
    _mm256_maskstore_ps(d1 + 2 * ow, w.k0, _mm256_unpacklo_ps(g2, g3));
    _mm256_maskstore_ps(d1 + 2 * ow + 8, w.k1, _mm256_unpackhi_ps(g2, g3));
  }
#endif
  for (; ow < OW; ow++) {
    int best = 0;
    float m = r0[2 * ow];
    if (pick(r0[2 * ow + 1], m)) { best = 1; m = r0[2 * ow + 1]; }
    if (pick(r1[2 * ow], m)) { best = 2; m = r1[2 * ow]; }
    if (pick(r1[2 * ow + 1], m)) best = 3;
    float gv = g[ow];
    d0[2 * ow] = best == 0 ? gv : 0.f;
    d0[2 * ow + 1] = best == 1 ? gv : 0.f;
    d1[2 * ow] = best == 2 ? gv : 0.f;
    d1[2 * ow + 1] = best == 3 ? gv : 0.f;
  }
}

struct maxpool2x2_bw_job {
  const pool_params *pp;
  const float *x;
  const float *gy;
  float *gx;
  int assign;
};

/* A chunk [lo, hi) of maxpool2x2_bw's loop over c (adv__par_for). */
static void maxpool2x2_bw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct maxpool2x2_bw_job *j = arg;
  const pool_params *pp = j->pp;
  const float *x = j->x;
  const float *gy = j->gy;
  float *gx = j->gx;
  int assign = j->assign;
  for (int64_t c = lo; c < hi; c++) {
    const float *xc = x + c * pp->H * pp->W;
    float *gc = gx + c * pp->H * pp->W;
    const float *gyc = gy + c * pp->OH * pp->OW;
    if (assign) {
      for (int64_t oh = 0; oh < pp->OH; oh++) {
        int64_t i0 = 2 * oh * pp->W, i1 = i0 + pp->W;
        maxpool2x2_bw_row_assign(xc + i0, xc + i1, gyc + oh * pp->OW, gc + i0, gc + i1,
                                 pp->OW);
      }
      continue;
    }
    for (int64_t oh = 0; oh < pp->OH; oh++) {
      int64_t i0 = 2 * oh * pp->W, i1 = i0 + pp->W;
      for (int64_t ow = 0; ow < pp->OW; ow++) {
        int64_t best = i0 + 2 * ow;
        float m = xc[best];
        if (pick(xc[i0 + 2 * ow + 1], m)) { best = i0 + 2 * ow + 1; m = xc[best]; }
        if (pick(xc[i1 + 2 * ow], m)) { best = i1 + 2 * ow; m = xc[best]; }
        if (pick(xc[i1 + 2 * ow + 1], m)) best = i1 + 2 * ow + 1;
        gc[best] += gyc[oh * pp->OW + ow];
      }
    }
  }
}

/* Backward of maxpool2x2: dy to the window's first maximum (accumulating,
 * or, with assign, storing every element of an exactly tiled input). */
static void maxpool2x2_bw(const pool_params *pp, const float *x,
                          const float *gy, float *gx, int assign, int threads) {
  struct maxpool2x2_bw_job maxpool2x2_bw_j = {
      .pp = pp, .x = x, .gy = gy, .gx = gx, .assign = assign};
  adv__par_for((pp->NC * pp->OH * pp->OW > 16384) ? (threads) : 1, pp->NC, 1,
               maxpool2x2_bw_chunk, &maxpool2x2_bw_j);
}

struct pool_fw_job {
  const pool_params *pp;
  const float *x;
  float *y;
};

/* A chunk [lo, hi) of pool_fw's loop over c (adv__par_for). */
static void pool_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct pool_fw_job *j = arg;
  const pool_params *pp = j->pp;
  const float *x = j->x;
  float *y = j->y;
  for (int64_t c = lo; c < hi; c++) {
    const float *xc = x + c * pp->H * pp->W;
    float *yc = y + c * pp->OH * pp->OW;
    for (int64_t oh = 0; oh < pp->OH; oh++)
      for (int64_t ow = 0; ow < pp->OW; ow++) {
        int64_t h0 = oh * pp->SH - pp->PT, w0 = ow * pp->SW - pp->PL;
        if (pp->is_max) {
          float m = -INFINITY;
          for (int64_t kh = 0; kh < pp->KH; kh++) {
            int64_t ih = h0 + kh * pp->DH;
            if (ih < 0 || ih >= pp->H)
              continue;
            for (int64_t kw = 0; kw < pp->KW; kw++) {
              int64_t iw = w0 + kw * pp->DW;
              if (iw >= 0 && iw < pp->W) {
                float v = xc[ih * pp->W + iw];
                if (v > m || isnan(v))
                  m = v;
              }
            }
          }
          yc[oh * pp->OW + ow] = m;
        } else {
          float s = 0.f;
          int64_t cnt = 0;
          int64_t hs = h0 < 0 ? 0 : h0, ws = w0 < 0 ? 0 : w0;
          int64_t he = h0 + pp->KH, we = w0 + pp->KW;
          int64_t he_c = he > pp->H ? pp->H : he, we_c = we > pp->W ? pp->W : we;
          for (int64_t ih = hs; ih < he_c; ih++)
            for (int64_t iw = ws; iw < we_c; iw++) {
              s += xc[ih * pp->W + iw];
              cnt++;
            }
          if (pp->include_pad) {
            int64_t hp = he > pp->H + pp->PB ? pp->H + pp->PB : he;
            int64_t wp = we > pp->W + pp->PR ? pp->W + pp->PR : we;
            cnt = (hp - h0) * (wp - w0);
          }
          yc[oh * pp->OW + ow] = cnt ? s / (float)cnt : 0.f;
        }
      }
  }
}

static int pool_forward(adv_plan *p, adv_pnode *n) {
  const pool_params *pp = n->params;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data;
  if (is2x2(pp)) {
    maxpool2x2(pp, x, y, p->threads);
    return ADV_OK;
  }
  struct pool_fw_job pool_fw_j = {.pp = pp, .x = x, .y = y};
  adv__par_for((pp->NC * pp->OH * pp->OW > 16384) ? (p->threads) : 1, pp->NC, 1,
               pool_fw_chunk, &pool_fw_j);
  return ADV_OK;
}

/* GlobalAveragePool / GlobalMaxPool: N x C x spatial -> N x C x 1 x ... */
static int gpool_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and 1 output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32 || x->ndim < 3)
    return adv__error(err, ADV_ESHAPE, "float32 N x C x spatial required");
  int64_t od[ADV_MAX_DIMS];
  od[0] = x->dims[0];
  od[1] = x->dims[1];
  for (int i = 2; i < x->ndim; i++)
    od[i] = 1;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, od);
}

struct gpool_fw_job {
  const float *xd;
  float *y;
  int64_t sp;
  int is_max;
};

/* A chunk [lo, hi) of gpool_fw's loop over c (adv__par_for). */
static void gpool_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct gpool_fw_job *j = arg;
  const float *xd = j->xd;
  float *y = j->y;
  int64_t sp = j->sp;
  int is_max = j->is_max;
  for (int64_t c = lo; c < hi; c++) {
    const float *xc = xd + c * sp;
    if (is_max) {
      float m = -INFINITY;
      for (int64_t i = 0; i < sp; i++)
        m = xc[i] > m ? xc[i] : m;
      y[c] = m;
    } else {
      float s = 0.f;
      for (int64_t i = 0; i < sp; i++)
        s += xc[i];
      y[c] = sp ? s / (float)sp : 0.f;
    }
  }
}

static int gpool_forward(adv_plan *p, adv_pnode *n) {
  const adv_tensor *x = n->in[0];
  int64_t nc = x->dims[0] * x->dims[1];
  int64_t sp = nc ? x->numel / nc : 0;
  const float *xd = x->data;
  float *y = n->out[0]->data;
  int is_max = !strcmp(adv__ops[n->op]->name, "GlobalMaxPool");
  struct gpool_fw_job gpool_fw_j = {
      .xd = xd, .y = y, .sp = sp, .is_max = is_max};
  adv__par_for((x->numel > 65536) ? (p->threads) : 1, nc, 1, gpool_fw_chunk,
               &gpool_fw_j);
  return ADV_OK;
}

struct pool_bw_job {
  const pool_params *pp;
  const float *x;
  const float *gy;
  float *gx;
};

/* A chunk [lo, hi) of pool_bw's loop over c (adv__par_for). */
static void pool_bw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct pool_bw_job *j = arg;
  const pool_params *pp = j->pp;
  const float *x = j->x;
  const float *gy = j->gy;
  float *gx = j->gx;
  for (int64_t c = lo; c < hi; c++) {
    const float *xc = x + c * pp->H * pp->W;
    float *gc = gx + c * pp->H * pp->W;
    const float *gyc = gy + c * pp->OH * pp->OW;
    for (int64_t oh = 0; oh < pp->OH; oh++)
      for (int64_t ow = 0; ow < pp->OW; ow++) {
        float g = gyc[oh * pp->OW + ow];
        int64_t h0 = oh * pp->SH - pp->PT, w0 = ow * pp->SW - pp->PL;
        if (pp->is_max) {
          float m = -INFINITY;
          int64_t best = -1;
          for (int64_t kh = 0; kh < pp->KH; kh++) {
            int64_t ih = h0 + kh * pp->DH;
            if (ih < 0 || ih >= pp->H)
              continue;
            for (int64_t kw = 0; kw < pp->KW; kw++) {
              int64_t iw = w0 + kw * pp->DW;
              if (iw >= 0 && iw < pp->W) {
                float v = xc[ih * pp->W + iw];
                if (best < 0)
                  best = ih * pp->W + iw; /* PyTorch: first element */
                if (v > m || isnan(v)) {
                  m = v;
                  best = ih * pp->W + iw;
                }
              }
            }
          }
          if (best >= 0)
            gc[best] += g;
        } else {
          int64_t hs = h0 < 0 ? 0 : h0, ws = w0 < 0 ? 0 : w0;
          int64_t he = h0 + pp->KH, we = w0 + pp->KW;
          int64_t he_c = he > pp->H ? pp->H : he, we_c = we > pp->W ? pp->W : we;
          int64_t cnt = (he_c - hs) * (we_c - ws);
          if (pp->include_pad) {
            int64_t hp = he > pp->H + pp->PB ? pp->H + pp->PB : he;
            int64_t wp = we > pp->W + pp->PR ? pp->W + pp->PR : we;
            cnt = (hp - h0) * (wp - w0);
          }
          if (cnt <= 0)
            continue;
          float gv = g / (float)cnt;
          for (int64_t ih = hs; ih < he_c; ih++)
            for (int64_t iw = ws; iw < we_c; iw++)
              gc[ih * pp->W + iw] += gv;
        }
      }
  }
}

/*
 * Backward. MaxPool: the window's first maximum in row-major scan order
 * (the forward's rule, and PyTorch's) receives dy. AveragePool: dy / count
 * to every in-input element of the window, count as in forward.
 */
static int pool_backward(adv_plan *p, adv_pnode *n) {
  const pool_params *pp = n->params;
  const float *x = n->in[0]->data, *gy = n->out[0]->grad;
  float *gx = n->in[0]->grad;
  if (!gy || !gx)
    return ADV_OK;
  if (is2x2(pp)) {
    maxpool2x2_bw(pp, x, gy, gx, (n->bw_assign & ADV_BW_IN(0)) != 0,
                  p->threads);
    return ADV_OK;
  }
  struct pool_bw_job pool_bw_j = {.pp = pp, .x = x, .gy = gy, .gx = gx};
  adv__par_for((pp->NC * pp->OH * pp->OW > 16384) ? (p->threads) : 1, pp->NC, 1,
               pool_bw_chunk, &pool_bw_j);
  return ADV_OK;
}

struct gpool_bw_job {
  const float *gy;
  float *gx;
  const float *xd;
  int64_t sp;
  int is_max;
};

/* A chunk [lo, hi) of gpool_bw's loop over c (adv__par_for). */
static void gpool_bw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct gpool_bw_job *j = arg;
  const float *gy = j->gy;
  float *gx = j->gx;
  const float *xd = j->xd;
  int64_t sp = j->sp;
  int is_max = j->is_max;
  for (int64_t c = lo; c < hi; c++) {
    float *gc = gx + c * sp;
    if (is_max) {
      int64_t best = 0;
      for (int64_t i = 1; i < sp; i++)
        if (xd[c * sp + i] > xd[c * sp + best])
          best = i;
      if (sp)
        gc[best] += gy[c];
    } else {
      float g = sp ? gy[c] / (float)sp : 0.f;
      for (int64_t i = 0; i < sp; i++)
        gc[i] += g;
    }
  }
}

/* Global pooling backward: mean spreads dy/S; max goes to the first max. */
static int gpool_backward(adv_plan *p, adv_pnode *n) {
  const adv_tensor *x = n->in[0];
  const float *gy = n->out[0]->grad;
  float *gx = x->grad;
  if (!gy || !gx)
    return ADV_OK;
  int64_t nc = x->dims[0] * x->dims[1];
  int64_t sp = nc ? x->numel / nc : 0;
  const float *xd = x->data;
  int is_max = !strcmp(adv__ops[n->op]->name, "GlobalMaxPool");
  struct gpool_bw_job gpool_bw_j = {
      .gy = gy, .gx = gx, .xd = xd, .sp = sp, .is_max = is_max};
  adv__par_for((x->numel > 65536) ? (p->threads) : 1, nc, 1, gpool_bw_chunk,
               &gpool_bw_j);
  return ADV_OK;
}

const adv_op_def adv__op_maxpool = {"MaxPool", pool_infer, pool_forward, pool_backward, ADV_BW_IN(0), 0};
const adv_op_def adv__op_averagepool = {"AveragePool", pool_infer, pool_forward, pool_backward, 0, 0};
const adv_op_def adv__op_globalaveragepool = {"GlobalAveragePool", gpool_infer, gpool_forward, gpool_backward, 0, 0};
const adv_op_def adv__op_globalmaxpool = {"GlobalMaxPool", gpool_infer, gpool_forward, gpool_backward, ADV_BW_IN(0), 0};
