/*
 * quant.c - linear quantization, evaluated in float:
 *   QuantizeLinear(x, scale, zero_point) = saturate(rint(x / scale) + zp)
 *   DequantizeLinear(x, scale, zero_point) = (x - zp) * scale
 * per tensor (scale a scalar or one element) or per axis (scale 1-D along
 * `axis`, default 1; opsets 13+). The quantized range is the zero point's
 * stored type (uint8 [0, 255] when absent, int8 [-128, 127], 16-bit types
 * likewise; opset 21's output_dtype attribute when set); rint rounds half to
 * even, like numpy and onnxruntime. Blocked quantization (opset 21
 * block_size > 0) is refused.
 *
 * Integer initializers (uint8/int8 weights and zero points) are read as
 * stored, 1 byte per element (adv__op_stored_inputs); a DequantizeLinear of a
 * constant is folded at plan time into the float weight once.
 * Quantized tensors computed at run time are held as float32 tensors of
 * integer values (a "fake quantized" tensor), so that gradients can flow
 * through Q/DQ pairs:
 *   - QuantizeLinear's rounding has no gradient; its backward is the
 *     straight-through estimator: dx += dy / scale where x / scale + zp
 *     lies inside the quantized range, 0 where it saturates (as PyTorch's
 *     fake_quantize); a DequantizeLinear after it multiplies back by scale,
 *     so Q -> DQ passes dy unchanged inside the range;
 *   - DequantizeLinear: dx += dy * scale (x a float tensor; integer x, e.g.
 *     uint8 weights, get no gradient).
 * scale and zero_point get no gradient.
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

/* TensorProto.DataType values of the quantized types */
enum { QT_UINT8 = 2, QT_INT8 = 3, QT_UINT16 = 4, QT_INT16 = 5 };

typedef struct quant_params {
  int64_t ch, inner; /* channel of element i: (i / inner) % ch */
  float qmin, qmax;  /* quantized range (QuantizeLinear) */
} quant_params;

/* Element e of t as float (F32, I64, or uint8/int8 weights kept as stored:
 * the integer inputs of the ops below, see adv__op_stored_inputs). */
static inline float elem_f(const adv_tensor *t, int64_t e) {
  return adv__elem_f32(t, e);
}

/* The stored ONNX type of input k of n (an initializer or a declared graph
 * input), 0 when unknown. */
static int input_onnx_type(const adv_plan *p, const adv_pnode *n, int k) {
  if (k >= n->m->n_in || n->m->in[k] < 0)
    return 0;
  return p->model->values[n->m->in[k]].onnx_type;
}

/* Sets qmin/qmax from opset 21's output_dtype attribute, else from the
 * stored type of zero-point input k; a constant zero point of unknown type
 * is int8 when negative, else uint8; uint8 when absent.
 * ADV_EUNSUPPORTED for other types. */
static int q_range(const adv_plan *p, const adv_pnode *n, int k, float *qmin,
                   float *qmax) {
  int qt = (int)adv__attr_int(n->m, "output_dtype", 0);
  if (!qt)
    qt = input_onnx_type(p, n, k);
  const adv_tensor *z = (k < n->n_in ? n->in[k] : NULL);
  if (!qt && z && z->is_const) {
    qt = QT_UINT8;
    for (int64_t e = 0; e < z->numel; e++)
      if (elem_f(z, e) < 0)
        qt = QT_INT8;
  }
  switch (qt) {
  case QT_INT8:
    *qmin = -128.f;
    *qmax = 127.f;
    return ADV_OK;
  case QT_UINT16:
    *qmin = 0.f;
    *qmax = 65535.f;
    return ADV_OK;
  case QT_INT16:
    *qmin = -32768.f;
    *qmax = 32767.f;
    return ADV_OK;
  case 0:
  case QT_UINT8:
    *qmin = 0.f;
    *qmax = 255.f;
    return ADV_OK;
  default:
    return ADV_EUNSUPPORTED;
  }
}

/* Shared infer of both ops: checks inputs, finds the per-axis layout and
 * sets the float32 output of x's shape. */
static int quant_infer(adv_plan *p, adv_pnode *n, adv_err *err, const char *op,
                       int quantize) {
  if (n->n_in < 2 || !n->in[0] || !n->in[1] || n->n_out < 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "%s needs x, scale and one output", op);
  adv_tensor *x = n->in[0], *s = n->in[1];
  adv_tensor *z = n->n_in > 2 ? n->in[2] : NULL;
  if (s->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "%s: scale must be float", op);
  if (quantize && x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "%s: x must be float", op);
  if (adv__attr_int(n->m, "block_size", 0) > 0)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "%s: blocked quantization (block_size) unsupported", op);
  quant_params *qp = adv__arena_alloc(&p->arena, sizeof(*qp));
  if (!qp)
    return ADV_ENOMEM;
  qp->ch = 1;
  qp->inner = 1;
  if (s->numel > 1) {
    int a = adv__axis(adv__attr_int(n->m, "axis", 1), x->ndim);
    if (s->ndim != 1 || a < 0 || x->dims[a] != s->numel)
      return adv__error(err, ADV_ESHAPE,
                        "%s: scale of %lld elements does not match axis %lld",
                        op, (long long)s->numel,
                        (long long)adv__attr_int(n->m, "axis", 1));
    int64_t outer, len;
    adv__axis_split(x, a, &outer, &len, &qp->inner);
    qp->ch = len;
  }
  if (z && z->numel != s->numel)
    return adv__error(err, ADV_ESHAPE, "%s: zero_point and scale differ", op);
  if (q_range(p, n, 2, &qp->qmin, &qp->qmax) && quantize)
    return adv__error(err, ADV_EUNSUPPORTED, "%s: quantized type unsupported",
                      op);
  n->params = qp;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
}

static int qlin_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return quant_infer(p, n, err, "QuantizeLinear", 1);
}

static int dqlin_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return quant_infer(p, n, err, "DequantizeLinear", 0);
}

/* Zero point of channel c (0 when absent). */
static inline float zp_of(const adv_pnode *n, int64_t c) {
  const adv_tensor *z = n->n_in > 2 ? n->in[2] : NULL;
  return z ? elem_f(z, c) : 0.f;
}

static int qlin_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const quant_params *qp = n->params;
  const float *x = n->in[0]->data, *s = n->in[1]->data;
  float *y = n->out[0]->data;
  for (int64_t e = 0; e < n->out[0]->numel; e++) {
    int64_t c = (e / qp->inner) % qp->ch;
    float q = nearbyintf(x[e] / s[c]) + zp_of(n, c);
    y[e] = q < qp->qmin ? qp->qmin : q > qp->qmax ? qp->qmax : q;
  }
  return ADV_OK;
}

/* Straight-through: dx += dy / scale inside the range, 0 outside. */
static int qlin_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  adv_tensor *xt = n->in[0], *yt = n->out[0];
  if (!xt->grad || !yt->grad)
    return ADV_OK;
  const quant_params *qp = n->params;
  const float *x = xt->data, *s = n->in[1]->data;
  for (int64_t e = 0; e < yt->numel; e++) {
    int64_t c = (e / qp->inner) % qp->ch;
    float q = x[e] / s[c] + zp_of(n, c);
    if (q >= qp->qmin - 0.5f && q <= qp->qmax + 0.5f)
      xt->grad[e] += yt->grad[e] / s[c];
  }
  return ADV_OK;
}

/* y[i] = (x[off + i] - z) * s for i < len, x of x's dtype: one loop per
 * type, as this runs over whole (folded) weights. */
static void dq_run(const adv_tensor *x, int64_t off, int64_t len, float z,
                   float s, float *y) {
  switch (x->dtype) {
  case ADV_DTYPE_U8: {
    const uint8_t *v = (const uint8_t *)x->data + off;
    for (int64_t i = 0; i < len; i++)
      y[i] = ((float)v[i] - z) * s;
    break;
  }
  case ADV_DTYPE_I8: {
    const int8_t *v = (const int8_t *)x->data + off;
    for (int64_t i = 0; i < len; i++)
      y[i] = ((float)v[i] - z) * s;
    break;
  }
  default:
    for (int64_t i = 0; i < len; i++)
      y[i] = (elem_f(x, off + i) - z) * s;
  }
}

static int dqlin_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const quant_params *qp = n->params;
  const adv_tensor *x = n->in[0];
  const float *s = n->in[1]->data;
  float *y = n->out[0]->data;
  int64_t ne = n->out[0]->numel, inner = qp->inner;
  if (qp->ch > 1 && inner == 1) { /* per axis, the last axis */
    const uint8_t *u = x->data;
    const int8_t *i8 = x->data;
    for (int64_t e = 0; e < ne; e += qp->ch)
      for (int64_t c = 0; c < qp->ch; c++) {
        float v = x->dtype == ADV_DTYPE_U8   ? (float)u[e + c]
                  : x->dtype == ADV_DTYPE_I8 ? (float)i8[e + c]
                                             : elem_f(x, e + c);
        y[e + c] = (v - zp_of(n, c)) * s[c];
      }
    return ADV_OK;
  }
  if (qp->ch == 1)
    inner = ne;
  for (int64_t e = 0; e < ne; e += inner) {
    int64_t c = (e / inner) % qp->ch;
    dq_run(x, e, inner, zp_of(n, c), s[c], y + e);
  }
  return ADV_OK;
}

static int dqlin_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  adv_tensor *xt = n->in[0], *yt = n->out[0];
  if (!xt->grad || !yt->grad || xt->dtype != ADV_DTYPE_F32)
    return ADV_OK;
  const quant_params *qp = n->params;
  const float *s = n->in[1]->data;
  for (int64_t e = 0; e < yt->numel; e++)
    xt->grad[e] += yt->grad[e] * s[(e / qp->inner) % qp->ch];
  return ADV_OK;
}

const adv_op_def adv__op_quantizelinear = {"QuantizeLinear",
                                           qlin_infer,
                                           qlin_forward,
                                           qlin_backward,
                                           ADV_BW_IN(0) | ADV_BW_IN(1) |
                                               ADV_BW_IN(2),
                                           0};
const adv_op_def adv__op_dequantizelinear = {"DequantizeLinear",
                                             dqlin_infer,
                                             dqlin_forward,
                                             dqlin_backward,
                                             ADV_BW_IN(1) | ADV_BW_IN(2),
                                             0};

/* ---------- DynamicQuantizeLinear ---------- */

/*
 * DynamicQuantizeLinear(x) -> y (uint8 values), y_scale, y_zero_point:
 * the range [min(0, min x), max(0, max x)] is mapped onto [0, 255]:
 * scale = (hi - lo) / 255, zp = saturate(rint(-lo / scale)), y =
 * saturate(rint(x / scale) + zp). An all-zero x gives scale 0, zp 0, y 0.
 * Backward: straight-through, dx += dy / scale (the dependence of scale and
 * zero point on x is ignored, as in quantization-aware training).
 */
static int dyn_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in != 1 || !n->in[0] || n->n_out != 3 || !n->out[0] || !n->out[1] ||
      !n->out[2])
    return adv__error(err, ADV_EFORMAT,
                      "DynamicQuantizeLinear needs 1 input and 3 outputs");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE,
                      "DynamicQuantizeLinear: x must be float");
  int rc = adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
  if (!rc)
    rc = adv__tensor_set_shape(n->out[1], ADV_DTYPE_F32, 0, x->dims);
  if (!rc)
    rc = adv__tensor_set_shape(n->out[2], ADV_DTYPE_F32, 0, x->dims);
  return rc;
}

/* Saturates q to [lo, hi]. */
static inline float sat(float q, float lo, float hi) {
  return q < lo ? lo : q > hi ? hi : q;
}

static int dyn_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data, lo = 0.f, hi = 0.f;
  int64_t ne = n->in[0]->numel;
  for (int64_t e = 0; e < ne; e++) {
    lo = x[e] < lo ? x[e] : lo;
    hi = x[e] > hi ? x[e] : hi;
  }
  float scale = (hi - lo) / 255.f;
  float zp = scale > 0 ? sat(nearbyintf(-lo / scale), 0.f, 255.f) : 0.f;
  for (int64_t e = 0; e < ne; e++)
    y[e] = scale > 0 ? sat(nearbyintf(x[e] / scale) + zp, 0.f, 255.f) : 0.f;
  *(float *)n->out[1]->data = scale;
  *(float *)n->out[2]->data = zp;
  return ADV_OK;
}

static int dyn_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  adv_tensor *xt = n->in[0], *yt = n->out[0];
  float scale = *(const float *)n->out[1]->data;
  if (!xt->grad || !yt->grad || !(scale > 0))
    return ADV_OK;
  for (int64_t e = 0; e < xt->numel; e++)
    xt->grad[e] += yt->grad[e] / scale;
  return ADV_OK;
}

const adv_op_def adv__op_dynamicquantizelinear = {
    "DynamicQuantizeLinear", dyn_infer, dyn_forward, dyn_backward,
    ADV_BW_OUT(1),           0};

/* ---------- MatMulInteger, QLinearMatMul ---------- */

/*
 * Both evaluate Y = deq(A) @ deq(B) in float, deq(t) = (t - zp) * scale:
 * A [..., M, K] and B [K, N] or [..., K, N] with A's batch dims. A's zero
 * point (and scale) is per tensor or per row (M), B's per tensor or per
 * column (N). MatMulInteger has unit scales and returns the int32
 * accumulator (as float32); QLinearMatMul quantizes Y with y_scale and
 * y_zero_point (saturating to y_zero_point's type).
 * Backward (float A or B, e.g. the output of a QuantizeLinear): the exact
 * gradient of the float product, through QLinearMatMul's output rounding
 * straight-through (dY / y_scale where Y is not saturated, else 0).
 */
typedef struct qmm_params {
  int64_t batch, m, k, n;
  int b_batched;
  int ia[3], ib[3]; /* input indices of A, its scale, its zp (-1 absent) */
  int iys, iyz;     /* y_scale, y_zero_point (-1: MatMulInteger) */
  float qmin, qmax;
} qmm_params;

/* Input k of n, NULL when k < 0 or absent. */
static inline const adv_tensor *in_or_null(const adv_pnode *n, int k) {
  return k >= 0 && k < n->n_in ? n->in[k] : NULL;
}

/* Value of per-tensor-or-per-index tensor t at index i (def when absent). */
static inline float pt_val(const adv_tensor *t, int64_t i, float def) {
  if (!t)
    return def;
  return elem_f(t, t->numel > 1 ? i : 0);
}

/* Shared infer; qlinear selects QLinearMatMul's input layout. */
static int qmm_infer(adv_plan *p, adv_pnode *n, adv_err *err, int qlinear) {
  const char *op = qlinear ? "QLinearMatMul" : "MatMulInteger";
  qmm_params *q = adv__arena_alloc(&p->arena, sizeof(*q));
  if (!q)
    return ADV_ENOMEM;
  if (qlinear) {
    int ia[3] = {0, 1, 2}, ib[3] = {3, 4, 5};
    memcpy(q->ia, ia, sizeof(ia));
    memcpy(q->ib, ib, sizeof(ib));
    q->iys = 6;
    q->iyz = 7;
  } else {
    int ia[3] = {0, -1, 2}, ib[3] = {1, -1, 3};
    memcpy(q->ia, ia, sizeof(ia));
    memcpy(q->ib, ib, sizeof(ib));
    q->iys = q->iyz = -1;
  }
  int need = qlinear ? 8 : 2;
  if (n->n_in < need || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "%s: needs %d inputs and 1 output", op,
                      need);
  for (int k = 0; k < n->n_in; k++)
    if (!n->in[k] && (qlinear || k < 2))
      return adv__error(err, ADV_EFORMAT, "%s: input %d missing", op, k);
  const adv_tensor *a = n->in[q->ia[0]], *b = n->in[q->ib[0]];
  if (a->ndim < 2 || b->ndim < 2 || b->ndim > a->ndim ||
      a->dims[a->ndim - 1] != b->dims[b->ndim - 2])
    return adv__error(err, ADV_ESHAPE, "%s: shapes do not multiply", op);
  q->m = a->dims[a->ndim - 2];
  q->k = a->dims[a->ndim - 1];
  q->n = b->dims[b->ndim - 1];
  q->batch = a->numel / (q->m * q->k > 0 ? q->m * q->k : 1);
  int64_t bb = b->numel / (q->k * q->n > 0 ? q->k * q->n : 1);
  if (bb != 1 && bb != q->batch)
    return adv__error(err, ADV_ESHAPE, "%s: batch dims differ", op);
  q->b_batched = bb != 1;
  for (int s = 1; s < 3; s++) {
    const adv_tensor *ta = in_or_null(n, q->ia[s]),
                     *tb = in_or_null(n, q->ib[s]);
    if ((ta && ta->numel != 1 && ta->numel != q->m) ||
        (tb && tb->numel != 1 && tb->numel != q->n))
      return adv__error(err, ADV_ESHAPE,
                        "%s: scales/zero points must be per tensor, per row "
                        "of A or per column of B",
                        op);
    if ((ta && s == 1 && ta->dtype != ADV_DTYPE_F32) ||
        (tb && s == 1 && tb->dtype != ADV_DTYPE_F32))
      return adv__error(err, ADV_EDTYPE, "%s: scales must be float", op);
  }
  if (qlinear) {
    if (n->in[6]->numel != 1 || n->in[7]->numel != 1 ||
        n->in[6]->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_ESHAPE,
                        "%s: y_scale/y_zero_point must be "
                        "scalars",
                        op);
    if (q_range(p, n, 7, &q->qmin, &q->qmax))
      return adv__error(err, ADV_EUNSUPPORTED, "%s: quantized type unsupported",
                        op);
  }
  n->params = q;
  int64_t dims[ADV_MAX_DIMS];
  memcpy(dims, a->dims, sizeof(dims));
  dims[a->ndim - 1] = q->n;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, a->ndim, dims);
}

static int mmi_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return qmm_infer(p, n, err, 0);
}

static int qlmm_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return qmm_infer(p, n, err, 1);
}

/* Dequantized A[bi, r, c] and B[bi, r, c]. */
static inline float deq_a(const adv_pnode *n, const qmm_params *q, int64_t bi,
                          int64_t r, int64_t c) {
  float v = elem_f(n->in[q->ia[0]], (bi * q->m + r) * q->k + c);
  return (v - pt_val(in_or_null(n, q->ia[2]), r, 0.f)) *
         pt_val(in_or_null(n, q->ia[1]), r, 1.f);
}

static inline float deq_b(const adv_pnode *n, const qmm_params *q, int64_t bi,
                          int64_t r, int64_t c) {
  float v =
      elem_f(n->in[q->ib[0]], ((q->b_batched ? bi : 0) * q->k + r) * q->n + c);
  return (v - pt_val(in_or_null(n, q->ib[2]), c, 0.f)) *
         pt_val(in_or_null(n, q->ib[1]), c, 1.f);
}

/* Float accumulator of Y[bi, i, j]. */
static float qmm_acc(const adv_pnode *n, const qmm_params *q, int64_t bi,
                     int64_t i, int64_t j) {
  float acc = 0.f;
  for (int64_t t = 0; t < q->k; t++)
    acc += deq_a(n, q, bi, i, t) * deq_b(n, q, bi, t, j);
  return acc;
}

static int qmm_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const qmm_params *q = n->params;
  float *y = n->out[0]->data;
  float ys = q->iys >= 0 ? elem_f(n->in[q->iys], 0) : 1.f;
  float yz = q->iyz >= 0 ? elem_f(n->in[q->iyz], 0) : 0.f;
  for (int64_t bi = 0; bi < q->batch; bi++)
    for (int64_t i = 0; i < q->m; i++)
      for (int64_t j = 0; j < q->n; j++) {
        float acc = qmm_acc(n, q, bi, i, j);
        if (q->iys >= 0)
          acc = sat(nearbyintf(acc / ys) + yz, q->qmin, q->qmax);
        y[(bi * q->m + i) * q->n + j] = acc;
      }
  return ADV_OK;
}

static int qmm_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const qmm_params *q = n->params;
  adv_tensor *at = n->in[q->ia[0]], *bt = n->in[q->ib[0]], *yt = n->out[0];
  if (!yt->grad || (!at->grad && !bt->grad))
    return ADV_OK;
  float ys = q->iys >= 0 ? elem_f(n->in[q->iys], 0) : 1.f;
  float yz = q->iyz >= 0 ? elem_f(n->in[q->iyz], 0) : 0.f;
  const adv_tensor *as = in_or_null(n, q->ia[1]), *bs = in_or_null(n, q->ib[1]);
  for (int64_t bi = 0; bi < q->batch; bi++)
    for (int64_t i = 0; i < q->m; i++)
      for (int64_t j = 0; j < q->n; j++) {
        float g = yt->grad[(bi * q->m + i) * q->n + j];
        if (q->iys >= 0) {
          float r = qmm_acc(n, q, bi, i, j) / ys + yz;
          g = r >= q->qmin - 0.5f && r <= q->qmax + 0.5f ? g / ys : 0.f;
        }
        if (g == 0.f)
          continue;
        for (int64_t t = 0; t < q->k; t++) {
          if (at->grad)
            at->grad[(bi * q->m + i) * q->k + t] +=
                g * deq_b(n, q, bi, t, j) * pt_val(as, i, 1.f);
          if (bt->grad)
            bt->grad[((q->b_batched ? bi : 0) * q->k + t) * q->n + j] +=
                g * deq_a(n, q, bi, i, t) * pt_val(bs, j, 1.f);
        }
      }
  return ADV_OK;
}

const adv_op_def adv__op_matmulinteger = {
    "MatMulInteger", mmi_infer, qmm_forward, qmm_backward, 0xffu, 0};
const adv_op_def adv__op_qlinearmatmul = {
    "QLinearMatMul", qlmm_infer, qmm_forward, qmm_backward, 0xffu, 0};

/* ---------- ConvInteger, QLinearConv ---------- */

/*
 * Both evaluate a direct 1-D or 2-D convolution of the dequantized x and w
 * in float (groups, strides, dilations, pads, auto_pad): x's zero point and
 * scale per tensor, w's per tensor or per output channel. ConvInteger
 * returns the int32 accumulator (as float32); QLinearConv adds its int32
 * bias B (scale x_scale * w_scale) and quantizes with y_scale and
 * y_zero_point. Backward as for QLinearMatMul: exact through the float
 * convolution (dx and dw), straight-through at the output rounding.
 */
typedef struct qconv_params {
  int64_t n, c, h, w, oc, kh, kw, oh, ow, group;
  int64_t sh, sw, dh, dw, ph, pw; /* strides, dilations, top/left pads */
  int ix[3], iw[3];               /* x, scale, zp; w, scale, zp (-1 none) */
  int iys, iyz, ib;
  float qmin, qmax;
} qconv_params;

/* Reads a 1- or 2-element int attribute into v[2] (rank-1 convolutions use
 * v[1]); def when absent. */
static void conv_attr2(const adv_mnode *m, const char *name, int sp,
                       int64_t def, int64_t *v) {
  const int64_t *a;
  int k = adv__attr_ints(m, name, &a);
  v[0] = v[1] = def;
  for (int i = 0; i < sp && i < k; i++)
    v[2 - sp + i] = a[i];
}

static int qconv_infer_common(adv_plan *p, adv_pnode *n, adv_err *err,
                              int qlinear) {
  const char *op = qlinear ? "QLinearConv" : "ConvInteger";
  qconv_params *q = adv__arena_alloc(&p->arena, sizeof(*q));
  if (!q)
    return ADV_ENOMEM;
  int ix[3] = {0, qlinear ? 1 : -1, 2};
  int iw[3] = {qlinear ? 3 : 1, qlinear ? 4 : -1, qlinear ? 5 : 3};
  memcpy(q->ix, ix, sizeof(ix));
  memcpy(q->iw, iw, sizeof(iw));
  q->iys = qlinear ? 6 : -1;
  q->iyz = qlinear ? 7 : -1;
  q->ib = qlinear ? 8 : -1;
  int need = qlinear ? 8 : 2;
  if (n->n_in < need || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "%s: needs %d inputs and 1 output", op,
                      need);
  for (int k = 0; k < need; k++)
    if (!n->in[k])
      return adv__error(err, ADV_EFORMAT, "%s: input %d missing", op, k);
  const adv_tensor *x = n->in[ix[0]], *w = n->in[iw[0]];
  int sp = x->ndim - 2;
  if ((sp != 1 && sp != 2) || w->ndim != x->ndim)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "%s: only 1-D and 2-D convolutions are supported", op);
  q->n = x->dims[0];
  q->c = x->dims[1];
  q->h = sp == 2 ? x->dims[2] : 1;
  q->w = x->dims[x->ndim - 1];
  q->oc = w->dims[0];
  q->kh = sp == 2 ? w->dims[2] : 1;
  q->kw = w->dims[w->ndim - 1];
  q->group = adv__attr_int(n->m, "group", 1);
  if (q->group < 1 || q->c != w->dims[1] * q->group || q->oc % q->group)
    return adv__error(err, ADV_ESHAPE, "%s: channels do not match groups", op);
  int64_t st[2], dl[2], pads[4] = {0, 0, 0, 0};
  conv_attr2(n->m, "strides", sp, 1, st);
  conv_attr2(n->m, "dilations", sp, 1, dl);
  const int64_t *pa;
  int np = adv__attr_ints(n->m, "pads", &pa);
  if (np == 2 * sp)
    for (int i = 0; i < sp; i++) {
      pads[2 - sp + i] = pa[i];
      pads[4 - sp + i] = pa[sp + i];
    }
  q->sh = st[0];
  q->sw = st[1];
  q->dh = dl[0];
  q->dw = dl[1];
  if (q->sh < 1 || q->sw < 1 || q->dh < 1 || q->dw < 1)
    return adv__error(err, ADV_EFORMAT, "%s: bad strides/dilations", op);
  const char *ap = adv__attr_str(n->m, "auto_pad", "NOTSET");
  int64_t in[2] = {q->h, q->w}, k[2] = {q->kh, q->kw}, out[2];
  for (int i = 0; i < 2; i++) {
    int64_t ek = (k[i] - 1) * dl[i] + 1;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
      out[i] = (in[i] + st[i] - 1) / st[i];
      int64_t tot = (out[i] - 1) * st[i] + ek - in[i];
      tot = tot < 0 ? 0 : tot;
      pads[i] = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
      pads[2 + i] = tot - pads[i];
    } else if (!strcmp(ap, "VALID")) {
      pads[i] = pads[2 + i] = 0;
    }
    out[i] = (in[i] + pads[i] + pads[2 + i] - ek) / st[i] + 1;
    if (out[i] < 1)
      return adv__error(err, ADV_ESHAPE, "%s: kernel larger than input", op);
  }
  q->ph = pads[0];
  q->pw = pads[1];
  q->oh = out[0];
  q->ow = out[1];
  const adv_tensor *wz = in_or_null(n, iw[2]), *ws = in_or_null(n, iw[1]);
  if ((wz && wz->numel != 1 && wz->numel != q->oc) ||
      (ws && ws->numel != 1 && ws->numel != q->oc))
    return adv__error(err, ADV_ESHAPE,
                      "%s: w's scale/zero point must be per tensor or per "
                      "output channel",
                      op);
  if (qlinear) {
    if (n->in[6]->numel != 1 || n->in[7]->numel != 1 || n->in[1]->numel != 1 ||
        n->in[2]->numel != 1)
      return adv__error(err, ADV_ESHAPE,
                        "%s: x and y scales/zero points must be scalars", op);
    const adv_tensor *b = in_or_null(n, 8);
    if (b && b->numel != q->oc)
      return adv__error(err, ADV_ESHAPE, "%s: bias must have %lld elements", op,
                        (long long)q->oc);
    if (q_range(p, n, 7, &q->qmin, &q->qmax))
      return adv__error(err, ADV_EUNSUPPORTED, "%s: quantized type unsupported",
                        op);
  }
  n->params = q;
  n->bw_scratch = sizeof(float) * (size_t)(q->n * q->oc * q->oh * q->ow);
  int64_t dims[4] = {q->n, q->oc, q->oh, q->ow};
  if (sp == 1)
    dims[2] = q->ow;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, dims);
}

static int convi_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return qconv_infer_common(p, n, err, 0);
}

static int qlconv_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return qconv_infer_common(p, n, err, 1);
}

/* Runs BODY for every multiply-accumulate term of the convolution, with
 * yi, xi, wi the output, x and w element indices and oc the output
 * channel. */
#define QCONV_FOR_EACH(q, BODY)                                                \
  for (int64_t b_ = 0; b_ < (q)->n; b_++)                                      \
    for (int64_t o_ = 0; o_ < (q)->oc; o_++) {                                 \
      int64_t cpg_ = (q)->c / (q)->group;                                      \
      int64_t g_ = o_ / ((q)->oc / (q)->group);                                \
      for (int64_t y_ = 0; y_ < (q)->oh; y_++)                                 \
        for (int64_t x_ = 0; x_ < (q)->ow; x_++) {                             \
          int64_t yi = ((b_ * (q)->oc + o_) * (q)->oh + y_) * (q)->ow + x_;    \
          int64_t oc = o_;                                                     \
          (void)oc;                                                            \
          for (int64_t ci_ = 0; ci_ < cpg_; ci_++)                             \
            for (int64_t i_ = 0; i_ < (q)->kh; i_++) {                         \
              int64_t hy_ = y_ * (q)->sh - (q)->ph + i_ * (q)->dh;             \
              if (hy_ < 0 || hy_ >= (q)->h)                                    \
                continue;                                                      \
              for (int64_t j_ = 0; j_ < (q)->kw; j_++) {                       \
                int64_t wx_ = x_ * (q)->sw - (q)->pw + j_ * (q)->dw;           \
                if (wx_ < 0 || wx_ >= (q)->w)                                  \
                  continue;                                                    \
                int64_t xi =                                                   \
                    ((b_ * (q)->c + g_ * cpg_ + ci_) * (q)->h + hy_) *         \
                        (q)->w +                                               \
                    wx_;                                                       \
                int64_t wi =                                                   \
                    ((o_ * cpg_ + ci_) * (q)->kh + i_) * (q)->kw + j_;         \
                BODY                                                           \
              }                                                                \
            }                                                                  \
        }                                                                      \
    }

/* Dequantized x and w elements. */
static inline float qc_x(const adv_pnode *n, const qconv_params *q,
                         int64_t xi) {
  return (elem_f(n->in[q->ix[0]], xi) -
          pt_val(in_or_null(n, q->ix[2]), 0, 0.f)) *
         pt_val(in_or_null(n, q->ix[1]), 0, 1.f);
}

static inline float qc_w(const adv_pnode *n, const qconv_params *q, int64_t wi,
                         int64_t oc) {
  return (elem_f(n->in[q->iw[0]], wi) -
          pt_val(in_or_null(n, q->iw[2]), oc, 0.f)) *
         pt_val(in_or_null(n, q->iw[1]), oc, 1.f);
}

/* Float accumulators (bias included) of every output into acc. */
static void qconv_acc(const adv_pnode *n, const qconv_params *q, float *acc) {
  int64_t ny = q->n * q->oc * q->oh * q->ow;
  for (int64_t e = 0; e < ny; e++) {
    int64_t o = (e / (q->oh * q->ow)) % q->oc;
    const adv_tensor *b = in_or_null(n, q->ib);
    acc[e] = b ? elem_f(b, o) * pt_val(in_or_null(n, q->ix[1]), 0, 1.f) *
                     pt_val(in_or_null(n, q->iw[1]), o, 1.f)
               : 0.f;
  }
  QCONV_FOR_EACH(q, { acc[yi] += qc_x(n, q, xi) * qc_w(n, q, wi, oc); })
}

static int qconv_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const qconv_params *q = n->params;
  float *y = n->out[0]->data;
  qconv_acc(n, q, y);
  if (q->iys < 0)
    return ADV_OK;
  float ys = elem_f(n->in[q->iys], 0), yz = elem_f(n->in[q->iyz], 0);
  for (int64_t e = 0; e < n->out[0]->numel; e++)
    y[e] = sat(nearbyintf(y[e] / ys) + yz, q->qmin, q->qmax);
  return ADV_OK;
}

static int qconv_backward(adv_plan *p, adv_pnode *n) {
  const qconv_params *q = n->params;
  adv_tensor *xt = n->in[q->ix[0]], *wt = n->in[q->iw[0]], *yt = n->out[0];
  if (!yt->grad || (!xt->grad && !wt->grad))
    return ADV_OK;
  float *g = adv__scratch(p, n, 0);
  if (q->iys >= 0) {
    float ys = elem_f(n->in[q->iys], 0), yz = elem_f(n->in[q->iyz], 0);
    qconv_acc(n, q, g);
    for (int64_t e = 0; e < yt->numel; e++) {
      float r = g[e] / ys + yz;
      g[e] =
          r >= q->qmin - 0.5f && r <= q->qmax + 0.5f ? yt->grad[e] / ys : 0.f;
    }
  } else {
    memcpy(g, yt->grad, sizeof(float) * (size_t)yt->numel);
  }
  float xs = pt_val(in_or_null(n, q->ix[1]), 0, 1.f);
  const adv_tensor *ws = in_or_null(n, q->iw[1]);
  QCONV_FOR_EACH(q, {
    if (g[yi] != 0.f) {
      if (xt->grad)
        xt->grad[xi] += g[yi] * qc_w(n, q, wi, oc) * xs;
      if (wt->grad)
        wt->grad[wi] += g[yi] * qc_x(n, q, xi) * pt_val(ws, oc, 1.f);
    }
  })
  return ADV_OK;
}

const adv_op_def adv__op_convinteger = {
    "ConvInteger", convi_infer, qconv_forward, qconv_backward, 0x1ffu, 0};
const adv_op_def adv__op_qlinearconv = {
    "QLinearConv", qlconv_infer, qconv_forward, qconv_backward, 0x1ffu, 0};
