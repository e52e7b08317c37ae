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
 * Quantized tensors are held as float32 tensors of integer values (a "fake
 * quantized" tensor), so that gradients can flow through Q/DQ pairs:
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

/* Element e of t as float (F32 or I64 tensors). */
static inline float elem_f(const adv_tensor *t, int64_t e) {
  return t->dtype == ADV_DTYPE_F32 ? ((const float *)t->data)[e]
                                   : (float)((const int64_t *)t->data)[e];
}

/* The stored ONNX type of input k of n (an initializer or a declared graph
 * input), 0 when unknown. */
static int input_onnx_type(const adv_plan *p, const adv_pnode *n, int k) {
  if (k >= n->m->n_in || n->m->in[k] < 0)
    return 0;
  return p->model->values[n->m->in[k]].onnx_type;
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
  int qt = (int)adv__attr_int(n->m, "output_dtype", 0);
  if (!qt)
    qt = input_onnx_type(p, n, 2);
  if (!qt && z && z->is_const) { /* undeclared: a negative zero point */
    qt = QT_UINT8;
    for (int64_t e = 0; e < z->numel; e++)
      if (elem_f(z, e) < 0)
        qt = QT_INT8;
  }
  switch (qt) {
  case QT_INT8:
    qp->qmin = -128.f;
    qp->qmax = 127.f;
    break;
  case QT_UINT16:
    qp->qmin = 0.f;
    qp->qmax = 65535.f;
    break;
  case QT_INT16:
    qp->qmin = -32768.f;
    qp->qmax = 32767.f;
    break;
  case 0:
  case QT_UINT8:
    qp->qmin = 0.f;
    qp->qmax = 255.f;
    break;
  default:
    if (quantize)
      return adv__error(err, ADV_EUNSUPPORTED,
                        "%s: quantized type %d unsupported", op, qt);
  }
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

static int dqlin_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const quant_params *qp = n->params;
  const adv_tensor *x = n->in[0];
  const float *s = n->in[1]->data;
  float *y = n->out[0]->data;
  for (int64_t e = 0; e < n->out[0]->numel; e++) {
    int64_t c = (e / qp->inner) % qp->ch;
    y[e] = (elem_f(x, e) - zp_of(n, c)) * s[c];
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
