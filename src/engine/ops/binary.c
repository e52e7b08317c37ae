/*
 * binary.c - Add, Sub, Mul, Div, Pow, PRelu with numpy multidirectional
 * broadcasting, on float32 (and int64 for Add/Sub/Mul/Div, which exported
 * shape arithmetic uses). Int64 division truncates toward zero; a zero
 * divisor is an error, never a SIGFPE.
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_PRELU };

typedef struct bin_params {
  int kind;
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  int64_t sa[ADV_MAX_DIMS], sb[ADV_MAX_DIMS]; /* element strides, 0 = bcast */
  adv_tensor bview; /* b's shape as broadcast (PRelu per-channel slopes) */
  /* the forward's index space: dims/sa/sb with size-1 dims dropped and
   * neighbours merged where both operands run on contiguously (or both
   * stay broadcast), so the inner loop is as long as possible */
  int fnd;
  int64_t fdims[ADV_MAX_DIMS], fsa[ADV_MAX_DIMS], fsb[ADV_MAX_DIMS];
} bin_params;

static int kind_of(const char *name) {
  if (!strcmp(name, "Add")) return B_ADD;
  if (!strcmp(name, "Sub")) return B_SUB;
  if (!strcmp(name, "Mul")) return B_MUL;
  if (!strcmp(name, "Div")) return B_DIV;
  if (!strcmp(name, "PRelu")) return B_PRELU;
  return B_POW;
}

/* Fills bp->fnd/fdims/fsa/fsb from ndim/dims/sa/sb: dims of size 1 go
 * away, and dim d merges into the (merged) dim after it when, for both
 * operands, stepping d once equals stepping the whole inner dim
 * (stride[d] == stride[d+1] * dims[d+1]; 0 == 0 for a broadcast one). */
static void coalesce(bin_params *bp) {
  int m = 0; /* merged dims, innermost first */
  int64_t d[ADV_MAX_DIMS], a[ADV_MAX_DIMS], b[ADV_MAX_DIMS];
  for (int i = bp->ndim - 1; i >= 0; i--) {
    if (bp->dims[i] == 1)
      continue;
    if (m > 0 && bp->sa[i] == a[m - 1] * d[m - 1] &&
        bp->sb[i] == b[m - 1] * d[m - 1]) {
      d[m - 1] *= bp->dims[i];
      continue;
    }
    d[m] = bp->dims[i];
    a[m] = bp->sa[i];
    b[m] = bp->sb[i];
    m++;
  }
  if (m == 0) { /* all dims 1 (or rank 0 with one element): one element */
    d[0] = 1;
    a[0] = b[0] = 0;
    m = bp->ndim > 0 ? 1 : 0;
  }
  bp->fnd = m;
  for (int i = 0; i < m; i++) {
    bp->fdims[i] = d[m - 1 - i];
    bp->fsa[i] = a[m - 1 - i];
    bp->fsb[i] = b[m - 1 - i];
  }
}

static int bin_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 2 inputs and 1 output");
  adv_tensor *a = n->in[0], *b = n->in[1];
  bin_params *bp = adv__arena_alloc(&p->arena, sizeof(*bp));
  if (!bp)
    return ADV_ENOMEM;
  bp->kind = kind_of(adv__ops[n->op]->name);
  /* Pow allows an exponent of another type; the result has the base's */
  if (a->dtype != b->dtype && bp->kind != B_POW)
    return adv__error(err, ADV_EDTYPE, "input types differ");
  if (a->dtype == ADV_DTYPE_I64 && (bp->kind == B_POW || bp->kind == B_PRELU))
    return adv__error(err, ADV_EDTYPE, "integer %s unsupported", adv__ops[n->op]->name);
  bp->bview = *b;
  if (bp->kind == B_PRELU && b->ndim == 1 && a->ndim >= 3 && b->dims[0] == a->dims[1] &&
      b->dims[0] != a->dims[a->ndim - 1]) {
    /* old-style per-channel slope [C]: view it as [C, 1, ..., 1] */
    bp->bview.ndim = a->ndim - 1;
    for (int i = 1; i < bp->bview.ndim; i++)
      bp->bview.dims[i] = 1;
  }
  int rc = adv__broadcast_shape(a, &bp->bview, &bp->ndim, bp->dims);
  if (rc)
    return adv__error(err, rc, "shapes do not broadcast");
  adv__bcast_strides(a, bp->ndim, bp->dims, bp->sa);
  adv__bcast_strides(&bp->bview, bp->ndim, bp->dims, bp->sb);
  coalesce(bp);
  n->params = bp;
  rc = adv__tensor_set_shape(n->out[0], a->dtype, bp->ndim, bp->dims);
  /* backward: per-element partials for each operand before reduction */
  n->bw_scratch = (size_t)n->out[0]->numel * 2 * sizeof(float);
  return rc;
}

/* the inner loops of run_f32: vectorized whatever the optimisation level */
#define BIN_SIMD _Pragma("omp simd")

static inline float fop(int k, float x, float y) {
  switch (k) {
  case B_ADD: return x + y;
  case B_SUB: return x - y;
  case B_MUL: return x * y;
  case B_DIV: return x / y;
  case B_PRELU: return x >= 0.f ? x : x * y;
  default: return powf(x, y);
  }
}

/* What bin_fw_chunk reads (adv__par_for context). */
struct bin_fw_job {
  const bin_params *bp;
  const float *a;
  const float *b;
  float *y;
  int nd;
  int k;
  int64_t inner;
  int64_t sa;
  int64_t sb;
};

/* A chunk [lo, hi) of bin_fw's loop over r (adv__par_for). */
static void bin_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct bin_fw_job *j = arg;
  const bin_params *bp = j->bp;
  const float *a = j->a;
  const float *b = j->b;
  float *y = j->y;
  int nd = j->nd;
  int k = j->k;
  int64_t inner = j->inner;
  int64_t sa = j->sa;
  int64_t sb = j->sb;
  for (int64_t r = lo; r < hi; r++) {
    int64_t rem = r, oa = 0, ob = 0;
    for (int d = nd - 2; d >= 0; d--) {
      int64_t i = rem % bp->fdims[d];
      rem /= bp->fdims[d];
      oa += i * bp->fsa[d];
      ob += i * bp->fsb[d];
    }
    const float *pa = a + oa, *pb = b + ob;
    float *py = y + r * inner;
    if (k == B_PRELU) {
      for (int64_t j = 0; j < inner; j++)
        py[j] = fop(k, pa[j * sa], pb[j * sb]);
    } else if (sa == 1 && sb == 1) {
      switch (k) {
      case B_ADD:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] + pb[j];
        break;
      case B_SUB:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] - pb[j];
        break;
      case B_MUL:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] * pb[j];
        break;
      case B_DIV:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] / pb[j];
        break;
      default: for (int64_t j = 0; j < inner; j++) py[j] = powf(pa[j], pb[j]);
      }
    } else if (sa == 1 && sb == 0) {
      float v = pb[0];
      switch (k) {
      case B_ADD:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] + v;
        break;
      case B_SUB:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] - v;
        break;
      case B_MUL:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] * v;
        break;
      case B_DIV:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = pa[j] / v;
        break;
      default: for (int64_t j = 0; j < inner; j++) py[j] = powf(pa[j], v);
      }
    } else if (sa == 0 && sb == 1) {
      float v = pa[0];
      switch (k) {
      case B_ADD:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = v + pb[j];
        break;
      case B_SUB:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = v - pb[j];
        break;
      case B_MUL:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = v * pb[j];
        break;
      case B_DIV:
        BIN_SIMD for (int64_t j = 0; j < inner; j++) py[j] = v / pb[j];
        break;
      default:
        for (int64_t j = 0; j < inner; j++)
          py[j] = powf(v, pb[j]);
      }
    } else {
      for (int64_t j = 0; j < inner; j++)
        py[j] = fop(k, pa[j * sa], pb[j * sb]);
    }
  }
}

/* Float kernel over the (coalesced) broadcast index space; the innermost
 * dim is the vectorized loop (omp simd: the output may be one of the
 * inputs, element for element, never shifted). Parallel over outer rows. */
static void run_f32(const bin_params *bp, const float *a, const float *b,
                    float *y, int64_t total, int threads) {
  int nd = bp->fnd;
  int k = bp->kind;
  if (nd == 0) {
    y[0] = fop(k, a[0], b[0]);
    return;
  }
  int64_t inner = bp->fdims[nd - 1];
  int64_t sa = bp->fsa[nd - 1], sb = bp->fsb[nd - 1];
  int64_t rows = inner ? total / inner : 0;
  struct bin_fw_job bin_fw_j = {.bp = bp,
                                .a = a,
                                .b = b,
                                .y = y,
                                .nd = nd,
                                .k = k,
                                .inner = inner,
                                .sa = sa,
                                .sb = sb};
  adv__par_for((total > 65536) ? (threads) : 1, rows, 16384 / (inner + 1) + 1,
               bin_fw_chunk, &bin_fw_j);
}

static int bin_forward(adv_plan *p, adv_pnode *n) {
  const bin_params *bp = n->params;
  adv_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0];
  if (a->dtype == ADV_DTYPE_F32 && b->dtype == ADV_DTYPE_F32) {
    run_f32(bp, a->data, b->data, y->data, y->numel, p->threads);
    return ADV_OK;
  }
  if (bp->kind == B_POW) { /* float base, integer exponent */
    const float *pa = a->data;
    const int64_t *pb = b->data;
    float *py = y->data;
    int64_t idx[ADV_MAX_DIMS] = {0};
    for (int64_t e = 0; e < y->numel; e++) {
      int64_t oa = 0, ob = 0;
      for (int d = 0; d < bp->ndim; d++) {
        oa += idx[d] * bp->sa[d];
        ob += idx[d] * bp->sb[d];
      }
      py[e] = powf(pa[oa], (float)pb[ob]);
      for (int d = bp->ndim - 1; d >= 0 && ++idx[d] == bp->dims[d]; d--)
        idx[d] = 0;
    }
    return ADV_OK;
  }
  /* int64: small shape arithmetic, plain index walk */
  const int64_t *pa = a->data, *pb = b->data;
  int64_t *py = y->data;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < y->numel; e++) {
    int64_t oa = 0, ob = 0;
    for (int d = 0; d < bp->ndim; d++) {
      oa += idx[d] * bp->sa[d];
      ob += idx[d] * bp->sb[d];
    }
    int64_t x = pa[oa], v = pb[ob];
    switch (bp->kind) {
    case B_ADD: py[e] = (int64_t)((uint64_t)x + (uint64_t)v); break;
    case B_SUB: py[e] = (int64_t)((uint64_t)x - (uint64_t)v); break;
    case B_MUL: py[e] = (int64_t)((uint64_t)x * (uint64_t)v); break;
    default:
      if (v == 0 || (x == INT64_MIN && v == -1))
        return ADV_EINVAL;
      py[e] = x / v;
    }
    for (int d = bp->ndim - 1; d >= 0 && ++idx[d] == bp->dims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

/* What bin_bw_same_chunk reads (adv__par_for context). */
struct bin_bw_same_job {
  const float *gy;
  float *ga;
  float *gb;
  float sb;
  int need_a;
  int need_b;
};

/* A chunk [lo, hi) of bin_bw_same's loop over e (adv__par_for). */
static void bin_bw_same_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct bin_bw_same_job *j = arg;
  const float *gy = j->gy;
  float *ga = j->ga;
  float *gb = j->gb;
  float sb = j->sb;
  int need_a = j->need_a;
  int need_b = j->need_b;
  for (int64_t e = lo; e < hi; e++) {
    if (need_a)
      ga[e] += gy[e];
    if (need_b)
      gb[e] += sb * gy[e];
  }
}

/*
 * Backward: with the operands broadcast to the output index e,
 *   Add: da = dy, db = dy          Sub: da = dy, db = -dy
 *   Mul: da = dy*b, db = dy*a      Div: da = dy/b, db = -dy*a/b^2
 *   Pow: da = dy*b*a^(b-1), db = dy*a^b*log(a)  (0 where a == 0, as PyTorch)
 * then summed over the broadcast dims of each operand. Float32 only.
 */
static int bin_backward(adv_plan *p, adv_pnode *n) {
  const bin_params *bp = n->params;
  adv_tensor *a = n->in[0], *b = n->in[1], *y = n->out[0];
  if (!y->grad || a->dtype != ADV_DTYPE_F32 || b->dtype != ADV_DTYPE_F32)
    return ADV_OK;
  const float *gy = y->grad, *pa = a->data, *pb = b->data;
  int64_t total = y->numel;
  int k = bp->kind;
  int need_a = a->grad != NULL, need_b = b->grad != NULL;
  if ((k == B_ADD || k == B_SUB) && a->numel == total && b->numel == total) {
    /* no broadcast: the gradient passes straight through */
    float sb = k == B_SUB ? -1.f : 1.f, *ga = a->grad, *gb = b->grad;
    struct bin_bw_same_job bin_bw_same_j = {.gy = gy,
                                            .ga = ga,
                                            .gb = gb,
                                            .sb = sb,
                                            .need_a = need_a,
                                            .need_b = need_b};
    adv__par_for((total > 65536) ? (p->threads) : 1, total, 16384,
                 bin_bw_same_chunk, &bin_bw_same_j);
    return ADV_OK;
  }
  float *ta = adv__scratch(p, n, 0), *tb = ta + total;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < total; e++) {
    int64_t oa = 0, ob = 0;
    for (int d = 0; d < bp->ndim; d++) {
      oa += idx[d] * bp->sa[d];
      ob += idx[d] * bp->sb[d];
    }
    float g = gy[e], va = pa[oa], vb = pb[ob];
    switch (k) {
    case B_ADD: ta[e] = g; tb[e] = g; break;
    case B_SUB: ta[e] = g; tb[e] = -g; break;
    case B_MUL: ta[e] = g * vb; tb[e] = g * va; break;
    case B_DIV: ta[e] = g / vb; tb[e] = -g * va / (vb * vb); break;
    case B_PRELU: ta[e] = va > 0.f ? g : g * vb; tb[e] = va > 0.f ? 0.f : g * va; break;
    default:
      ta[e] = (vb == 0.f) ? 0.f : g * vb * powf(va, vb - 1.f);
      tb[e] = (va == 0.f && vb >= 0.f) ? 0.f : g * powf(va, vb) * logf(va);
    }
    for (int d = bp->ndim - 1; d >= 0 && ++idx[d] == bp->dims[d]; d--)
      idx[d] = 0;
  }
  if (need_a)
    adv__unbroadcast_add(a, a->grad, bp->ndim, bp->dims, ta);
  if (need_b)
    adv__unbroadcast_add(&bp->bview, b->grad, bp->ndim, bp->dims, tb);
  return ADV_OK;
}

const adv_op_def adv__op_add = {"Add", bin_infer, bin_forward, bin_backward, 0, 0};
const adv_op_def adv__op_sub = {"Sub", bin_infer, bin_forward, bin_backward, 0, 0};
const adv_op_def adv__op_mul = {"Mul", bin_infer, bin_forward, bin_backward,
                                ADV_BW_IN(0) | ADV_BW_IN(1), 0};
const adv_op_def adv__op_div = {"Div", bin_infer, bin_forward, bin_backward,
                                ADV_BW_IN(0) | ADV_BW_IN(1), 0};
const adv_op_def adv__op_prelu = {"PRelu", bin_infer, bin_forward, bin_backward,
                                  ADV_BW_IN(0) | ADV_BW_IN(1), 0};
const adv_op_def adv__op_pow = {"Pow", bin_infer, bin_forward, bin_backward,
                                ADV_BW_IN(0) | ADV_BW_IN(1), 0};
