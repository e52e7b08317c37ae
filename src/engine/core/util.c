/* util.c - small helpers shared by the loader, planner and ops. */
#include "core/engine.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef ADV_VERSION
#define ADV_VERSION "0.0.0"
#endif

const char *adv_version(void) {
  return ADV_VERSION;
}

int adv__error(adv_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
  }
  return code;
}

double adv__now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const adv_attr *adv__attr_get(const adv_mnode *n, const char *name) {
  for (int i = 0; i < n->n_attr; i++)
    if (strcmp(n->attr[i].name, name) == 0)
      return &n->attr[i];
  return NULL;
}

int64_t adv__attr_int(const adv_mnode *n, const char *name, int64_t def) {
  const adv_attr *a = adv__attr_get(n, name);
  return a && a->type == ADV_ATTR_INT ? a->i : def;
}

float adv__attr_float(const adv_mnode *n, const char *name, float def) {
  const adv_attr *a = adv__attr_get(n, name);
  if (a && a->type == ADV_ATTR_FLOAT)
    return a->f;
  if (a && a->type == ADV_ATTR_INT)
    return (float)a->i;
  return def;
}

const char *adv__attr_str(const adv_mnode *n, const char *name,
                          const char *def) {
  const adv_attr *a = adv__attr_get(n, name);
  return a && a->type == ADV_ATTR_STRING ? a->s : def;
}

int adv__attr_ints(const adv_mnode *n, const char *name, const int64_t **out) {
  const adv_attr *a = adv__attr_get(n, name);
  if (!a || a->type != ADV_ATTR_INTS)
    return -1;
  *out = a->ints;
  return a->n;
}

/* Sets dtype/shape/numel with overflow checks (numel < 2^40). */
int adv__tensor_set_shape(adv_tensor *t, adv_dtype dt, int ndim,
                          const int64_t *dims) {
  if (ndim < 0 || ndim > ADV_MAX_DIMS)
    return ADV_ELIMIT;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (dims[i] < 0)
      return ADV_ESHAPE;
    if (dims[i] > 0 && n > ((int64_t)1 << 40) / dims[i])
      return ADV_ELIMIT;
    n *= dims[i];
    t->dims[i] = dims[i];
  }
  t->dtype = dt;
  t->ndim = ndim;
  t->numel = n;
  return ADV_OK;
}

/* IEEE binary16 bits to float: normals, subnormals, inf and NaN (exact). */
float adv__f16_to_f32(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  uint32_t bits;
  if (e == 0) {
    if (m == 0) {
      bits = s;
    } else { /* subnormal: m * 2^-24 */
      float f = ldexpf((float)m, -24);
      return s ? -f : f;
    }
  } else if (e == 31) {
    bits = s | 0x7f800000u | (m << 13);
  } else {
    bits = s | ((e + 112) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* bfloat16 bits are the high half of a float's. */
float adv__bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

adv_dtype adv__dtype_wide(adv_dtype t) {
  switch (t) {
  case ADV_DTYPE_F16:
  case ADV_DTYPE_BF16:
    return ADV_DTYPE_F32;
  case ADV_DTYPE_U8:
  case ADV_DTYPE_I8:
    return ADV_DTYPE_I64;
  default:
    return t;
  }
}

/* Storage dtype -> wide type, element by element (see engine.h). */
void adv__widen(adv_dtype src_t, const void *src, int64_t numel, void *dst) {
  float *f = dst;
  int64_t *d = dst;
  const uint16_t *h = src;
  switch (src_t) { /* one loop per type: this runs over whole weights */
  case ADV_DTYPE_F16:
    for (int64_t e = 0; e < numel; e++)
      f[e] = adv__f16_to_f32(h[e]);
    break;
  case ADV_DTYPE_BF16:
    for (int64_t e = 0; e < numel; e++)
      f[e] = adv__bf16_to_f32(h[e]);
    break;
  case ADV_DTYPE_U8:
    for (int64_t e = 0; e < numel; e++)
      d[e] = ((const uint8_t *)src)[e];
    break;
  case ADV_DTYPE_I8:
    for (int64_t e = 0; e < numel; e++)
      d[e] = ((const int8_t *)src)[e];
    break;
  default:
    break;
  }
}

/* Guards the weights sessions share (adv__weights_lock; plan time only). */
static pthread_mutex_t wide_lock = PTHREAD_MUTEX_INITIALIZER;

/* mmap, so that a released weight goes back to the system at once (a
 * large free() may stay in malloc's heap). */
void *adv__big_alloc(size_t n) {
  void *d = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return d == MAP_FAILED ? NULL : d;
}

void adv__big_free(void *d, size_t n) {
  if (d)
    munmap(d, n ? n : 1);
}

void adv__weights_lock(void) {
  pthread_mutex_lock(&wide_lock);
}
void adv__weights_unlock(void) {
  pthread_mutex_unlock(&wide_lock);
}

/* The model initializer whose stored data t (a tensor of plan p) points
 * at, else NULL. */
static adv_const *stored_init(const adv_plan *p, const adv_tensor *t) {
  /* t may be a plan-arena tensor (fuse.c): compare addresses, not pointers
   * into different objects */
  uintptr_t a = (uintptr_t)t, b = (uintptr_t)p->tensors;
  if (a < b || a >= b + (uintptr_t)p->n_tensors * sizeof(adv_tensor))
    return NULL;
  adv_const *c = p->model->values[(a - b) / sizeof(adv_tensor)].init;
  return c && c->data == t->data && c->dtype == t->dtype ? c : NULL;
}

/* The planner's generic fallback for ops that read only F32/I64: one
 * widened copy per initializer and model, or per constant and plan (see
 * engine.h). */
int adv__tensor_widen(adv_plan *p, adv_tensor *t) {
  if (!t || !t->is_const || !adv__dtype_is_stored(t->dtype))
    return ADV_OK;
  adv_dtype w = adv__dtype_wide(t->dtype);
  size_t bytes = (size_t)t->numel * adv_dtype_size(w);
  adv_const *c = stored_init(p, t);
  void *d = NULL;
  if (c) {
    pthread_mutex_lock(&wide_lock);
    if (!c->wide && (c->wide = malloc(bytes ? bytes : 1)))
      adv__widen(t->dtype, t->data, t->numel, c->wide);
    d = c->wide;
    pthread_mutex_unlock(&wide_lock);
  } else if ((d = adv__arena_alloc(&p->arena, bytes))) {
    adv__widen(t->dtype, t->data, t->numel, d);
  }
  if (!d)
    return ADV_ENOMEM;
  t->data = d;
  t->dtype = w;
  return ADV_OK;
}

int adv__const_ints(const adv_tensor *t, int64_t *out, int max) {
  if (!t || !t->is_const)
    return ADV_EUNSUPPORTED;
  if (t->numel > max)
    return ADV_ELIMIT;
  if (t->dtype == ADV_DTYPE_I64) {
    memcpy(out, t->data, (size_t)t->numel * sizeof(int64_t));
  } else if (t->dtype == ADV_DTYPE_F32) {
    const float *f = t->data;
    for (int64_t i = 0; i < t->numel; i++)
      out[i] = (int64_t)f[i];
  } else {
    return ADV_EDTYPE;
  }
  return (int)t->numel;
}

int adv__axis(int64_t axis, int rank) {
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis >= (rank ? rank : 1))
    return -1;
  return (int)axis;
}

/* numpy multidirectional broadcast of a and b. */
int adv__broadcast_shape(const adv_tensor *a, const adv_tensor *b, int *ndim,
                         int64_t *dims) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return ADV_ESHAPE;
    dims[i] = da == 1 ? db : da;
  }
  *ndim = nd;
  return ADV_OK;
}

void adv__bcast_strides(const adv_tensor *t, int ndim, const int64_t *dims,
                        int64_t *st) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    int it = i - (ndim - t->ndim);
    int64_t d = it >= 0 ? t->dims[it] : 1;
    st[i] = (d == 1 && dims[i] != 1) ? 0 : s;
    s *= d;
  }
}

void adv__axis_split(const adv_tensor *t, int a, int64_t *outer, int64_t *len,
                     int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < a; i++)
    *outer *= t->dims[i];
  for (int i = a + 1; i < t->ndim; i++)
    *inner *= t->dims[i];
  *len = t->dims[a];
}

float *adv__scratch(adv_plan *p, adv_pnode *n, int thread) {
  (void)n;
  return (float *)(p->scratch + (size_t)thread * p->scratch_per_thread);
}

/*
 * Spatial geometry of Conv / pooling from ONNX attributes. Output size per
 * dim: floor((in + pads - ((k-1)*d + 1)) / s) + 1, or with ceil_mode the
 * ceiling, dropping a last window that would start in the right padding.
 * auto_pad SAME_UPPER/SAME_LOWER: out = ceil(in / s), extra pad at the end
 * (UPPER) or beginning (LOWER); VALID: no padding.
 */
int adv__pool_geom(const adv_mnode *n, const adv_tensor *x,
                   const int64_t *kshape, bool allow_ceil, adv_pool_geom *g,
                   adv_err *err) {
  memset(g, 0, sizeof(*g));
  if (x->ndim < 3 || x->ndim > 5)
    return adv__error(err, ADV_EUNSUPPORTED, "%s: input rank %d (need 3..5)",
                      n->op_type, x->ndim);
  g->nsp = x->ndim - 2;
  const int64_t *v;
  int c;
  if (kshape) {
    for (int i = 0; i < g->nsp; i++)
      g->k[i] = kshape[i];
  } else {
    c = adv__attr_ints(n, "kernel_shape", &v);
    if (c != g->nsp)
      return adv__error(err, ADV_EFORMAT, "%s: kernel_shape missing or wrong",
                        n->op_type);
    for (int i = 0; i < g->nsp; i++)
      g->k[i] = v[i];
  }
  for (int i = 0; i < g->nsp; i++) {
    g->in[i] = x->dims[2 + i];
    g->stride[i] = 1;
    g->dil[i] = 1;
  }
  if ((c = adv__attr_ints(n, "strides", &v)) >= 0) {
    if (c != g->nsp)
      return adv__error(err, ADV_EFORMAT, "%s: strides length", n->op_type);
    for (int i = 0; i < g->nsp; i++)
      g->stride[i] = v[i];
  }
  if ((c = adv__attr_ints(n, "dilations", &v)) >= 0) {
    if (c != g->nsp)
      return adv__error(err, ADV_EFORMAT, "%s: dilations length", n->op_type);
    for (int i = 0; i < g->nsp; i++)
      g->dil[i] = v[i];
  }
  if ((c = adv__attr_ints(n, "pads", &v)) >= 0) {
    if (c != 2 * g->nsp)
      return adv__error(err, ADV_EFORMAT, "%s: pads length", n->op_type);
    for (int i = 0; i < g->nsp; i++) {
      g->pad_lo[i] = v[i];
      g->pad_hi[i] = v[i + g->nsp];
    }
  }
  for (int i = 0; i < g->nsp; i++) {
    if (g->k[i] < 1 || g->k[i] > 4096 || g->stride[i] < 1 ||
        g->stride[i] > 4096 || g->dil[i] < 1 || g->dil[i] > 4096 ||
        g->pad_lo[i] < 0 || g->pad_hi[i] < 0 || g->pad_lo[i] > 4096 ||
        g->pad_hi[i] > 4096)
      return adv__error(err, ADV_EFORMAT,
                        "%s: kernel/stride/dilation/pad out of range",
                        n->op_type);
  }
  const char *ap = adv__attr_str(n, "auto_pad", "NOTSET");
  int64_t ceil_mode = allow_ceil ? adv__attr_int(n, "ceil_mode", 0) : 0;
  for (int i = 0; i < g->nsp; i++) {
    int64_t ek = (g->k[i] - 1) * g->dil[i] + 1;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
      int64_t out = (g->in[i] + g->stride[i] - 1) / g->stride[i];
      int64_t total = (out - 1) * g->stride[i] + ek - g->in[i];
      if (total < 0)
        total = 0;
      if (!strcmp(ap, "SAME_UPPER")) {
        g->pad_lo[i] = total / 2;
        g->pad_hi[i] = total - total / 2;
      } else {
        g->pad_hi[i] = total / 2;
        g->pad_lo[i] = total - total / 2;
      }
      g->out[i] = out;
    } else if (!strcmp(ap, "VALID")) {
      g->pad_lo[i] = g->pad_hi[i] = 0;
      g->out[i] = (g->in[i] - ek) / g->stride[i] + 1;
      if (g->in[i] < ek)
        g->out[i] = 0;
    } else if (!strcmp(ap, "NOTSET")) {
      int64_t span = g->in[i] + g->pad_lo[i] + g->pad_hi[i] - ek;
      if (span < 0)
        return adv__error(err, ADV_ESHAPE, "%s: kernel larger than input",
                          n->op_type);
      if (ceil_mode) {
        g->out[i] = (span + g->stride[i] - 1) / g->stride[i] + 1;
        if ((g->out[i] - 1) * g->stride[i] >= g->in[i] + g->pad_lo[i])
          g->out[i]--;
      } else {
        g->out[i] = span / g->stride[i] + 1;
      }
    } else {
      return adv__error(err, ADV_EFORMAT, "%s: bad auto_pad '%s'", n->op_type,
                        ap);
    }
    if (g->out[i] < 1)
      return adv__error(err, ADV_ESHAPE, "%s: empty output", n->op_type);
  }
  return ADV_OK;
}

/* g (shape of t) += reduction of dy (shape ndim/dims) over the dims that
 * t broadcasts along. Element-wise walk with an output-offset per index. */
void adv__unbroadcast_add(const adv_tensor *t, float *g, int ndim,
                          const int64_t *dims, const float *dy) {
  int64_t st[ADV_MAX_DIMS], s = 1, total = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    int it = i - (ndim - t->ndim);
    int64_t d = it >= 0 ? t->dims[it] : 1;
    st[i] = (d == 1 && dims[i] != 1) ? 0 : s;
    s *= d;
    total *= dims[i];
  }
  if (total == t->numel) { /* same shape */
    for (int64_t e = 0; e < total; e++)
      g[e] += dy[e];
    return;
  }
  int64_t idx[ADV_MAX_DIMS] = {0};
  int64_t inner = ndim ? dims[ndim - 1] : 1, ist = ndim ? st[ndim - 1] : 0;
  for (int64_t r = 0; r < total / (inner ? inner : 1); r++) {
    int64_t o = 0;
    for (int d = 0; d < ndim - 1; d++)
      o += idx[d] * st[d];
    const float *dr = dy + r * inner;
    if (ist == 0) {
      float acc = 0.f;
      for (int64_t j = 0; j < inner; j++)
        acc += dr[j];
      g[o] += acc;
    } else {
      for (int64_t j = 0; j < inner; j++)
        g[o + j] += dr[j];
    }
    for (int d = ndim - 2; d >= 0 && ++idx[d] == dims[d]; d--)
      idx[d] = 0;
  }
}

/* One adv__sgemm call's operands, for its chunks. */
typedef struct sgemm_job {
  enum CBLAS_TRANSPOSE ta, tb;
  int M, N, K, lda, ldb, ldc, by_rows;
  float alpha, beta;
  const float *A, *B;
  float *C;
} sgemm_job;

/* Units [lo, hi) of 16 rows (or 16 columns) of C: one single-threaded
 * cblas_sgemm (an adv__par_for chunk). */
static void sgemm_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const sgemm_job *j = arg;
  int total = j->by_rows ? j->M : j->N;
  int a = (int)lo * 16, b = (int)hi * 16 > total ? total : (int)hi * 16;
  if (j->by_rows) {
    const float *Ab =
        j->ta == CblasTrans ? j->A + a : j->A + (size_t)a * j->lda;
    cblas_sgemm(CblasRowMajor, j->ta, j->tb, b - a, j->N, j->K, j->alpha, Ab,
                j->lda, j->B, j->ldb, j->beta, j->C + (size_t)a * j->ldc,
                j->ldc);
  } else {
    const float *Bb =
        j->tb == CblasTrans ? j->B + (size_t)a * j->ldb : j->B + a;
    cblas_sgemm(CblasRowMajor, j->ta, j->tb, j->M, b - a, j->K, j->alpha, j->A,
                j->lda, Bb, j->ldb, j->beta, j->C + a, j->ldc);
  }
}

/* Splits C into blocks of 16-row units (or 16-column units when C is wide
 * and short) that the engine's threads claim (adv__par_for), one
 * single-threaded cblas_sgemm per block. Small problems run on the calling
 * thread. */
void adv__sgemm(int threads, int transA, int transB, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
  enum CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans;
  enum CBLAS_TRANSPOSE tb = transB ? CblasTrans : CblasNoTrans;
  double work = (double)M * N * K;
  if (threads <= 1 || work < 2e6) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
    return;
  }
  sgemm_job j = {.ta = ta,
                 .tb = tb,
                 .M = M,
                 .N = N,
                 .K = K,
                 .lda = lda,
                 .ldb = ldb,
                 .ldc = ldc,
                 .by_rows = M >= N || M >= 16 * threads,
                 .alpha = alpha,
                 .beta = beta,
                 .A = A,
                 .B = B,
                 .C = C};
  int total = j.by_rows ? M : N;
  adv__par_for(threads, (total + 15) / 16, 1, sgemm_chunk, &j);
}
