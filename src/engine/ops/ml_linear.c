/*
 * ml_linear.c - the other ai.onnx.ml ops scikit-learn exports use, all on
 * float32 [N, F] (or [F]) input:
 *   LinearClassifier: scores Z = X W^T + b (coefficients [C, F] row-major,
 *     intercepts [C]) then post_transform; Y = classlabels_ints[argmax].
 *     Outputs Y int64 [N], Z float32 [N, C]. String labels and the binary
 *     single-row layout are refused.
 *   LinearRegressor: Y = X W^T + b, [N, targets] (post_transform NONE).
 *   Scaler: Y = (X - offset) * scale, per feature (or one value for all).
 *   Normalizer: each row divided by its MAX, L1 or L2 norm (0 rows stay 0).
 *   ZipMap: treated as its input (the probabilities tensor), since the
 *     engine has no sequence-of-maps values.
 *   ArrayFeatureExtractor: Z[..., k] = X[..., Y[k]] for int64 indices Y.
 * Gradients (to the input) for LinearClassifier, LinearRegressor and
 * Scaler; Normalizer, ZipMap and ArrayFeatureExtractor have none.
 */
#include "core/engine.h"
#include "ops/ml.h"

#include <math.h>
#include <string.h>

typedef struct lin_params {
  int c, post, clf;
  int64_t rows, feat;
  const float *w, *b;
  const int64_t *labels;
} lin_params;

/* LinearClassifier / LinearRegressor: attributes and output shapes. */
static int lin_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  const adv_mnode *m = n->m;
  int clf = strstr(adv__ops[n->op]->name, "Classifier") != NULL;
  if (n->n_in != 1 || !n->in[0] || n->n_out < 1 || n->n_out > (clf ? 2 : 1))
    return adv__error(err, ADV_EFORMAT, "wrong number of inputs/outputs");
  lin_params *lp = adv__arena_alloc(&p->arena, sizeof(*lp));
  if (!lp)
    return ADV_ENOMEM;
  int rc = adv__ml_input(n->in[0], &lp->rows, &lp->feat, err);
  if (rc)
    return rc;
  const adv_attr *w = adv__attr_get(m, "coefficients");
  const adv_attr *b = adv__attr_get(m, "intercepts");
  lp->clf = clf;
  lp->post = adv__ml_post_transform(m);
  if (lp->post < 0)
    return adv__error(err, ADV_EUNSUPPORTED, "post_transform unsupported");
  if (clf) {
    if (adv__attr_get(m, "classlabels_strings"))
      return adv__error(err, ADV_EUNSUPPORTED,
                        "string class labels unsupported");
    lp->c = adv__attr_ints(m, "classlabels_ints", &lp->labels);
  } else {
    lp->c = (int)adv__attr_int(m, "targets", 1);
  }
  if (!w || w->type != ADV_ATTR_FLOATS || lp->c <= 0 || lp->feat <= 0 ||
      (int64_t)w->n != lp->c * lp->feat)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "coefficients must be [classes x %lld features]",
                      (long long)lp->feat);
  if (b && (b->type != ADV_ATTR_FLOATS || b->n != lp->c))
    return adv__error(err, ADV_EFORMAT, "intercepts must have %d entries",
                      lp->c);
  lp->w = w->floats;
  lp->b = b ? b->floats : NULL;
  n->params = lp;
  /* the classifier computes its label from Z: Z is required here */
  if (clf && (n->n_out < 2 || !n->out[1]))
    return adv__error(err, ADV_EUNSUPPORTED, "LinearClassifier needs output Z");
  return adv__ml_out_shapes(n, clf, lp->rows, lp->c, err);
}

static int lin_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const lin_params *lp = n->params;
  const float *x = n->in[0]->data;
  float *z = lp->clf ? n->out[1]->data : n->out[0]->data;
  for (int64_t r = 0; r < lp->rows; r++) {
    float *zr = z + r * lp->c;
    for (int j = 0; j < lp->c; j++) {
      float s = lp->b ? lp->b[j] : 0.0f;
      for (int64_t k = 0; k < lp->feat; k++)
        s += x[r * lp->feat + k] * lp->w[j * lp->feat + k];
      zr[j] = s;
    }
    if (lp->clf && n->out[0]) {
      int best = 0;
      for (int j = 1; j < lp->c; j++)
        best = zr[j] > zr[best] ? j : best;
      ((int64_t *)n->out[0]->data)[r] = lp->labels[best];
    }
    adv__ml_apply_post(lp->post, zr, lp->c);
  }
  return ADV_OK;
}

/*
 * Backward of LinearClassifier / LinearRegressor from the scores' gradient
 * (Z of the classifier, Y of the regressor): through post_transform
 * (SOFTMAX: ds = z * (dz - sum(dz * z)); LOGISTIC: ds = dz * z * (1 - z);
 * z the transformed scores), then dx += ds W. The label has no gradient.
 */
static int lin_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const lin_params *lp = n->params;
  const adv_tensor *zt = lp->clf ? n->out[1] : n->out[0];
  const float *z = zt->data, *gz = zt->grad;
  float *gx = n->in[0]->grad;
  if (!gz || !gx)
    return ADV_OK;
  for (int64_t r = 0; r < lp->rows; r++) {
    const float *zr = z + r * lp->c, *gr = gz + r * lp->c;
    double acc = 0;
    for (int j = 0; j < lp->c; j++)
      acc += (double)gr[j] * zr[j];
    for (int j = 0; j < lp->c; j++) {
      float ds = lp->post == 2   ? zr[j] * (gr[j] - (float)acc)
                 : lp->post == 1 ? gr[j] * zr[j] * (1.0f - zr[j])
                                 : gr[j];
      for (int64_t k = 0; k < lp->feat; k++)
        gx[r * lp->feat + k] += ds * lp->w[j * lp->feat + k];
    }
  }
  return ADV_OK;
}

typedef struct scale_params {
  int64_t feat;
  int n_off, n_sc, norm; /* norm: 0 MAX, 1 L1, 2 L2 */
  const float *off, *sc;
} scale_params;

/* Output like the input; checks the per-feature attribute lengths. */
static int scaler_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and 1 output");
  int64_t rows;
  scale_params *sp = adv__arena_alloc(&p->arena, sizeof(*sp));
  if (!sp)
    return ADV_ENOMEM;
  int rc = adv__ml_input(n->in[0], &rows, &sp->feat, err);
  if (rc)
    return rc;
  if (!strcmp(adv__ops[n->op]->name, "ai.onnx.ml:Normalizer")) {
    const char *s = adv__attr_str(n->m, "norm", "MAX");
    sp->norm = !strcmp(s, "MAX")  ? 0
               : !strcmp(s, "L1") ? 1
               : !strcmp(s, "L2") ? 2
                                  : -1;
    if (sp->norm < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "norm %s unsupported", s);
  } else {
    const adv_attr *o = adv__attr_get(n->m, "offset");
    const adv_attr *s = adv__attr_get(n->m, "scale");
    sp->n_off = o && o->type == ADV_ATTR_FLOATS ? o->n : 0;
    sp->n_sc = s && s->type == ADV_ATTR_FLOATS ? s->n : 0;
    sp->off = sp->n_off ? o->floats : NULL;
    sp->sc = sp->n_sc ? s->floats : NULL;
    if ((sp->n_off > 1 && sp->n_off != sp->feat) ||
        (sp->n_sc > 1 && sp->n_sc != sp->feat))
      return adv__error(err, ADV_ESHAPE,
                        "offset/scale length differs from %lld features",
                        (long long)sp->feat);
  }
  n->params = sp;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, n->in[0]->ndim,
                               n->in[0]->dims);
}

static int scaler_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const scale_params *sp = n->params;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data;
  for (int64_t i = 0; i < n->in[0]->numel; i++) {
    int64_t k = i % sp->feat;
    float o = !sp->off ? 0.0f : sp->off[sp->n_off > 1 ? k : 0];
    float s = !sp->sc ? 1.0f : sp->sc[sp->n_sc > 1 ? k : 0];
    y[i] = (x[i] - o) * s;
  }
  return ADV_OK;
}

/* Scaler backward: dx += dy * scale. */
static int scaler_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const scale_params *sp = n->params;
  const float *gy = n->out[0]->grad;
  float *gx = n->in[0]->grad;
  if (!gy || !gx)
    return ADV_OK;
  for (int64_t i = 0; i < n->in[0]->numel; i++)
    gx[i] += gy[i] * (!sp->sc ? 1.0f : sp->sc[sp->n_sc > 1 ? i % sp->feat : 0]);
  return ADV_OK;
}

static int normalizer_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const scale_params *sp = n->params;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data;
  for (int64_t r = 0; r < n->in[0]->numel / sp->feat; r++) {
    const float *xr = x + r * sp->feat;
    float s = 0;
    for (int64_t k = 0; k < sp->feat; k++) {
      float v = xr[k];
      if (sp->norm == 0)
        s = k == 0 || v > s ? v : s;
      else
        s += sp->norm == 1 ? fabsf(v) : v * v;
    }
    if (sp->norm == 2)
      s = sqrtf(s);
    for (int64_t k = 0; k < sp->feat; k++)
      y[r * sp->feat + k] = s != 0 ? xr[k] / s : xr[k];
  }
  return ADV_OK;
}

/* ZipMap: an identity on the probabilities tensor. */
static int zipmap_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in != 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and 1 output");
  if (n->in[0]->dtype != ADV_DTYPE_F32 || n->in[0]->ndim != 2)
    return adv__error(err, ADV_EDTYPE, "input must be float32 [N, C]");
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 2, n->in[0]->dims);
}

static int copy_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  if (n->out[0]->data != n->in[0]->data)
    memcpy(n->out[0]->data, n->in[0]->data,
           sizeof(float) * (size_t)n->in[0]->numel);
  return ADV_OK;
}

/* ArrayFeatureExtractor: output [..., K] (a rank-1 X gives [1, K]). */
static int afe_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in != 2 || !n->in[0] || !n->in[1] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 2 inputs and 1 output");
  const adv_tensor *x = n->in[0], *ix = n->in[1];
  if (ix->dtype != ADV_DTYPE_I64 ||
      (x->dtype != ADV_DTYPE_F32 && x->dtype != ADV_DTYPE_I64) || x->ndim < 1)
    return adv__error(err, ADV_EDTYPE, "needs float32/int64 X, int64 Y");
  int64_t d[ADV_MAX_DIMS];
  int nd = x->ndim == 1 ? 2 : x->ndim;
  d[0] = 1;
  for (int i = 0; i < x->ndim; i++)
    d[nd - x->ndim + i] = x->dims[i];
  d[nd - 1] = ix->numel;
  return adv__tensor_set_shape(n->out[0], x->dtype, nd, d);
}

static int afe_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const adv_tensor *x = n->in[0];
  const int64_t *ix = n->in[1]->data;
  int64_t w = x->dims[x->ndim - 1], k = n->in[1]->numel;
  for (int64_t j = 0; j < k; j++)
    if (ix[j] < 0 || ix[j] >= w)
      return ADV_EINVAL;
  size_t es = x->dtype == ADV_DTYPE_F32 ? sizeof(float) : sizeof(int64_t);
  const char *src = x->data;
  char *dst = n->out[0]->data;
  for (int64_t r = 0; r < x->numel / w; r++)
    for (int64_t j = 0; j < k; j++)
      memcpy(dst + (size_t)(r * k + j) * es, src + (size_t)(r * w + ix[j]) * es,
             es);
  return ADV_OK;
}

const adv_op_def adv__op_ml_linclf = {"ai.onnx.ml:LinearClassifier",
                                      lin_infer,
                                      lin_forward,
                                      lin_backward,
                                      ADV_BW_OUT(1),
                                      0};
const adv_op_def adv__op_ml_linreg = {"ai.onnx.ml:LinearRegressor",
                                      lin_infer,
                                      lin_forward,
                                      lin_backward,
                                      ADV_BW_OUT(0),
                                      0};
const adv_op_def adv__op_ml_scaler = {
    "ai.onnx.ml:Scaler", scaler_infer, scaler_forward, scaler_backward, 0, 0};
const adv_op_def adv__op_ml_normalizer = {
    "ai.onnx.ml:Normalizer", scaler_infer, normalizer_forward, NULL, 0, 0};
const adv_op_def adv__op_ml_zipmap = {
    "ai.onnx.ml:ZipMap", zipmap_infer, copy_forward, NULL, 0, 0};
const adv_op_def adv__op_ml_afe = {
    "ai.onnx.ml:ArrayFeatureExtractor", afe_infer, afe_forward, NULL, 0, 0};
