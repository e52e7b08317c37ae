/*
 * norm.c - LayerNormalization (opset 17) and InstanceNormalization (opset
 * 6), one kernel: X is seen as R rows of D elements, each row normalized
 * to zero mean and unit variance, y = (x - mu) / sqrt(var + eps) * scale
 * + B (biased variance, statistics in float32 accumulated in double).
 *   LayerNormalization: rows are X.dims[:axis], D = prod X.dims[axis:];
 *     Scale and B broadcast to X.dims[axis:]; optional outputs Mean and
 *     InvStdDev of shape X.dims[:axis] + [1]*(rank-axis).
 *   InstanceNormalization: X is N x C x spatial; rows are (n, c), D the
 *     spatial size; scale[c], B[c].
 * Backward (float32), with xh = (x - mu) * inv, g = dy * scale:
 *   dx = inv * (g - mean(g) - xh * mean(g * xh))
 *        + dMean / D - dInvStdDev * inv^2 * xh / D
 *   dscale += dy * xh, dB += dy (summed over rows / broadcast copies).
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

typedef struct norm_params {
  int64_t rows, D;
  int64_t C;            /* InstanceNormalization: channels (per-row params) */
  int64_t *sidx, *bidx; /* LayerNormalization: offset of scale/B per j */
  float eps;
} norm_params;

/* Offsets of a broadcast parameter p for each of the D positions of the
 * normalized shape (nd dims); -1 in *bad when p does not broadcast. */
static int64_t *param_index(adv_plan *p, const adv_tensor *t, int nd,
                            const int64_t *dims, int64_t D, int *bad) {
  int64_t *ix =
      adv__arena_alloc(&p->arena, sizeof(int64_t) * (size_t)(D ? D : 1));
  if (!ix)
    return NULL;
  if (t->ndim > nd) {
    *bad = 1;
    return ix;
  }
  int64_t st[ADV_MAX_DIMS], s = 1;
  for (int i = nd - 1; i >= 0; i--) {
    int it = i - (nd - t->ndim);
    int64_t d = it >= 0 ? t->dims[it] : 1;
    if (d != 1 && d != dims[i])
      *bad = 1;
    st[i] = d == 1 ? 0 : s;
    s *= d;
  }
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t j = 0; j < D; j++) {
    int64_t o = 0;
    for (int i = 0; i < nd; i++)
      o += idx[i] * st[i];
    ix[j] = o;
    for (int i = nd - 1; i >= 0 && ++idx[i] == dims[i]; i--)
      idx[i] = 0;
  }
  return ix;
}

static int ln_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 2 || !n->in[0] || !n->in[1] || n->n_out < 1 || n->n_out > 3 ||
      !n->out[0])
    return adv__error(err, ADV_EFORMAT,
                      "LayerNormalization needs X, Scale and Y");
  adv_tensor *x = n->in[0];
  for (int k = 0; k < n->n_in; k++)
    if (n->in[k] && n->in[k]->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_EDTYPE,
                        "LayerNormalization: float inputs required");
  int a = adv__axis(adv__attr_int(n->m, "axis", -1), x->ndim);
  if (a < 0 || x->ndim == 0)
    return adv__error(err, ADV_ESHAPE, "LayerNormalization: axis out of range");
  norm_params *np = adv__arena_alloc(&p->arena, sizeof(*np));
  if (!np)
    return ADV_ENOMEM;
  np->rows = np->D = 1;
  for (int i = 0; i < a; i++)
    np->rows *= x->dims[i];
  for (int i = a; i < x->ndim; i++)
    np->D *= x->dims[i];
  np->eps = adv__attr_float(n->m, "epsilon", 1e-5f);
  int bad = 0;
  np->sidx = param_index(p, n->in[1], x->ndim - a, x->dims + a, np->D, &bad);
  if (n->n_in > 2 && n->in[2])
    np->bidx = param_index(p, n->in[2], x->ndim - a, x->dims + a, np->D, &bad);
  if (!np->sidx || (n->n_in > 2 && n->in[2] && !np->bidx))
    return ADV_ENOMEM;
  if (bad)
    return adv__error(err, ADV_ESHAPE,
                      "LayerNormalization: Scale/B do not broadcast");
  n->params = np;
  int rc = adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
  int64_t sd[ADV_MAX_DIMS];
  for (int i = 0; i < x->ndim; i++)
    sd[i] = i < a ? x->dims[i] : 1;
  for (int k = 1; rc == ADV_OK && k < n->n_out; k++)
    if (n->out[k])
      rc = adv__tensor_set_shape(n->out[k], ADV_DTYPE_F32, x->ndim, sd);
  return rc;
}

static int in_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 3 || !n->in[0] || !n->in[1] || !n->in[2] || n->n_out != 1 ||
      !n->out[0])
    return adv__error(err, ADV_EFORMAT,
                      "InstanceNormalization needs 3 inputs, 1 output");
  adv_tensor *x = n->in[0];
  for (int k = 0; k < 3; k++)
    if (n->in[k]->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_EDTYPE,
                        "InstanceNormalization: float inputs required");
  if (x->ndim < 3)
    return adv__error(err, ADV_ESHAPE,
                      "InstanceNormalization: input rank %d < 3", x->ndim);
  int64_t C = x->dims[1];
  if (n->in[1]->numel != C || n->in[2]->numel != C)
    return adv__error(err, ADV_ESHAPE,
                      "InstanceNormalization: scale/B must have C=%lld",
                      (long long)C);
  norm_params *np = adv__arena_alloc(&p->arena, sizeof(*np));
  if (!np)
    return ADV_ENOMEM;
  np->rows = x->dims[0] * C;
  np->D = 1;
  for (int i = 2; i < x->ndim; i++)
    np->D *= x->dims[i];
  np->C = C;
  np->eps = adv__attr_float(n->m, "epsilon", 1e-5f);
  n->params = np;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
}

/* Mean and 1/sqrt(var + eps) of row r. */
static void row_stats(const norm_params *np, const float *x, int64_t r,
                      float *mu, float *inv) {
  const float *xr = x + r * np->D;
  double s = 0, q = 0;
  for (int64_t j = 0; j < np->D; j++)
    s += xr[j];
  double m = np->D ? s / (double)np->D : 0;
  for (int64_t j = 0; j < np->D; j++)
    q += ((double)xr[j] - m) * ((double)xr[j] - m);
  double var = np->D ? q / (double)np->D : 0;
  *mu = (float)m;
  *inv = (float)(1.0 / sqrt(var + (double)np->eps));
}

static inline int64_t s_off(const norm_params *np, int64_t r, int64_t j) {
  return np->sidx ? np->sidx[j] : r % np->C;
}
static inline int64_t b_off(const norm_params *np, int64_t r, int64_t j) {
  return np->bidx ? np->bidx[j] : r % np->C;
}

/* What norm_fw_chunk reads (adv__par_for context). */
struct norm_fw_job {
  const norm_params *np;
  const float *x;
  const float *sc;
  const float *b;
  float *y;
  float *om;
  float *oi;
  int has_b;
};

/* A chunk [lo, hi) of norm_fw's loop over r (adv__par_for). */
static void norm_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct norm_fw_job *j = arg;
  const norm_params *np = j->np;
  const float *x = j->x;
  const float *sc = j->sc;
  const float *b = j->b;
  float *y = j->y;
  float *om = j->om;
  float *oi = j->oi;
  int has_b = j->has_b;
  for (int64_t r = lo; r < hi; r++) {
    float mu, inv;
    row_stats(np, x, r, &mu, &inv);
    const float *xr = x + r * np->D;
    float *yr = y + r * np->D;
    for (int64_t j = 0; j < np->D; j++)
      yr[j] = (xr[j] - mu) * inv * sc[s_off(np, r, j)] +
              (has_b ? b[b_off(np, r, j)] : 0.f);
    if (om)
      om[r] = mu;
    if (oi)
      oi[r] = inv;
  }
}

static int norm_forward(adv_plan *p, adv_pnode *n) {
  const norm_params *np = n->params;
  const float *x = n->in[0]->data, *sc = n->in[1]->data;
  const float *b = n->n_in > 2 && n->in[2] ? n->in[2]->data : NULL;
  float *y = n->out[0]->data;
  float *om = n->n_out > 1 && n->out[1] ? n->out[1]->data : NULL;
  float *oi = n->n_out > 2 && n->out[2] ? n->out[2]->data : NULL;
  int has_b = b && (np->bidx || !np->sidx);
  struct norm_fw_job norm_fw_j = {.np = np,
                                  .x = x,
                                  .sc = sc,
                                  .b = b,
                                  .y = y,
                                  .om = om,
                                  .oi = oi,
                                  .has_b = has_b};
  adv__par_for((np->rows * np->D > 65536) ? (p->threads) : 1, np->rows,
               16384 / (np->D + 1) + 1, norm_fw_chunk, &norm_fw_j);
  return ADV_OK;
}

static int norm_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const norm_params *np = n->params;
  adv_tensor *xt = n->in[0], *st = n->in[1];
  adv_tensor *bt = n->n_in > 2 ? n->in[2] : NULL;
  const float *gy = n->out[0]->grad;
  const float *gm = n->n_out > 1 && n->out[1] ? n->out[1]->grad : NULL;
  const float *gi = n->n_out > 2 && n->out[2] ? n->out[2]->grad : NULL;
  if (!gy && !gm && !gi)
    return ADV_OK;
  const float *x = xt->data, *sc = st->data;
  float *gx = xt->grad, *gs = st->grad, *gb = bt ? bt->grad : NULL;
  for (int64_t r = 0; r < np->rows; r++) {
    float mu, inv;
    row_stats(np, x, r, &mu, &inv);
    const float *xr = x + r * np->D, *gyr = gy ? gy + r * np->D : NULL;
    double sg = 0, sgx = 0;
    for (int64_t j = 0; gyr && j < np->D; j++) {
      float xh = (xr[j] - mu) * inv, dy = gyr[j];
      float g = dy * sc[s_off(np, r, j)];
      sg += g;
      sgx += (double)g * xh;
      if (gs)
        gs[s_off(np, r, j)] += dy * xh;
      if (gb)
        gb[b_off(np, r, j)] += dy;
    }
    if (!gx)
      continue;
    float mg = (float)(sg / (double)np->D), mgx = (float)(sgx / (double)np->D);
    float dm = gm ? gm[r] / (float)np->D : 0.f;
    float di = gi ? -gi[r] * inv * inv / (float)np->D : 0.f;
    float *gxr = gx + r * np->D;
    for (int64_t j = 0; j < np->D; j++) {
      float xh = (xr[j] - mu) * inv;
      float g = gyr ? gyr[j] * sc[s_off(np, r, j)] : 0.f;
      gxr[j] += inv * (g - mg - xh * mgx) + dm + di * xh;
    }
  }
  return ADV_OK;
}

const adv_op_def adv__op_layernorm = {
    "LayerNormalization",        ln_infer, norm_forward, norm_backward,
    ADV_BW_IN(0) | ADV_BW_IN(1), 0};
const adv_op_def adv__op_instancenorm = {
    "InstanceNormalization",     in_infer, norm_forward, norm_backward,
    ADV_BW_IN(0) | ADV_BW_IN(1), 0};
