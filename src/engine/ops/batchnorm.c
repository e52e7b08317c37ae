/*
 * batchnorm.c - BatchNormalization in inference form:
 *   y = scale * (x - mean) / sqrt(var + epsilon) + B   per channel (dim 1).
 * The per-channel affine (a, b) is computed once at plan time when the
 * statistics are constant. training_mode=1 (opset 14+) is refused.
 */
#include "core/engine.h"

#include <math.h>

typedef struct bn_params {
  int64_t N, C, S; /* S = spatial size */
  float eps;
} bn_params;

static int bn_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in != 5 || n->n_out < 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs X, scale, B, mean, var");
  for (int i = 0; i < 5; i++)
    if (!n->in[i] || n->in[i]->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_EDTYPE, "float32 inputs required");
  for (int i = 1; i < n->n_out; i++)
    if (n->out[i])
      return adv__error(err, ADV_EUNSUPPORTED, "training-mode outputs");
  if (adv__attr_int(n->m, "training_mode", 0))
    return adv__error(err, ADV_EUNSUPPORTED, "training_mode=1");
  adv_tensor *x = n->in[0];
  if (x->ndim < 2)
    return adv__error(err, ADV_ESHAPE, "input rank < 2");
  bn_params *bp = adv__arena_alloc(&p->arena, sizeof(*bp));
  if (!bp)
    return ADV_ENOMEM;
  bp->N = x->dims[0];
  bp->C = x->dims[1];
  bp->S = 1;
  for (int i = 2; i < x->ndim; i++)
    bp->S *= x->dims[i];
  for (int i = 1; i < 5; i++)
    if (n->in[i]->numel != bp->C)
      return adv__error(err, ADV_ESHAPE, "parameter %d has %lld values, C=%lld",
                       i, (long long)n->in[i]->numel, (long long)bp->C);
  bp->eps = adv__attr_float(n->m, "epsilon", 1e-5f);
  n->params = bp;
  n->scratch = (size_t)bp->C * 2 * sizeof(float);
  for (int k = 1; k < 5; k++) /* statistics computed at run time are kept */
    if (!n->in[k]->is_const)
      n->bw_extra |= ADV_BW_IN(k);
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, x->ndim, x->dims);
}

struct bn_fw_job {
  const bn_params *bp;
  const float *ab;
  const float *x;
  float *y;
};

/* A chunk [lo, hi) of bn_fw's loop over r (adv__par_for). */
static void bn_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct bn_fw_job *j = arg;
  const bn_params *bp = j->bp;
  const float *ab = j->ab;
  const float *x = j->x;
  float *y = j->y;
  for (int64_t r = lo; r < hi; r++) {
    int64_t c = r % bp->C;
    float a = ab[2 * c], o = ab[2 * c + 1];
    const float *xr = x + r * bp->S;
    float *yr = y + r * bp->S;
    for (int64_t i = 0; i < bp->S; i++)
      yr[i] = a * xr[i] + o;
  }
}

static int bn_forward(adv_plan *p, adv_pnode *n) {
  const bn_params *bp = n->params;
  const float *x = n->in[0]->data, *sc = n->in[1]->data, *b = n->in[2]->data,
              *mu = n->in[3]->data, *var = n->in[4]->data;
  float *y = n->out[0]->data;
  float *ab = adv__scratch(p, n, 0);
  for (int64_t c = 0; c < bp->C; c++) {
    float a = sc[c] / sqrtf(var[c] + bp->eps);
    ab[2 * c] = a;
    ab[2 * c + 1] = b[c] - a * mu[c];
  }
  int64_t rows = bp->N * bp->C;
  struct bn_fw_job bn_fw_j = {.bp = bp, .ab = ab, .x = x, .y = y};
  adv__par_for((rows * bp->S > 65536) ? (p->threads) : 1, rows,
               16384 / (bp->S + 1) + 1, bn_fw_chunk, &bn_fw_j);
  return ADV_OK;
}

struct bn_bw_job {
  const bn_params *bp;
  const float *sc;
  const float *var;
  const float *gy;
  float *gx;
};

/* A chunk [lo, hi) of bn_bw's loop over r (adv__par_for). */
static void bn_bw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct bn_bw_job *j = arg;
  const bn_params *bp = j->bp;
  const float *sc = j->sc;
  const float *var = j->var;
  const float *gy = j->gy;
  float *gx = j->gx;
  for (int64_t r = lo; r < hi; r++) {
    int64_t c = r % bp->C;
    float a = sc[c] / sqrtf(var[c] + bp->eps);
    const float *g = gy + r * bp->S;
    float *d = gx + r * bp->S;
    for (int64_t i = 0; i < bp->S; i++)
      d[i] += a * g[i];
  }
}

/*
 * Backward of y = a*(x - mean) + B with a = scale / sqrt(var + eps):
 *   dx = a * dy;  dB = sum dy;  dscale = sum dy * (x - mean) / sqrt(var+eps);
 *   dmean = -a * sum dy;  dvar = -0.5 * scale * (var+eps)^-1.5 * sum dy*(x-mean)
 * (statistics are constants of inference-form BN; their gradients are
 * only computed for weight-gradient sessions).
 */
static int bn_backward(adv_plan *p, adv_pnode *n) {
  const bn_params *bp = n->params;
  const float *gy = n->out[0]->grad;
  if (!gy)
    return ADV_OK;
  const float *sc = n->in[1]->data, *mu = n->in[3]->data, *var = n->in[4]->data;
  adv_tensor *x = n->in[0];
  int64_t rows = bp->N * bp->C;
  if (x->grad) {
    float *gx = x->grad;
    struct bn_bw_job bn_bw_j = {
        .bp = bp, .sc = sc, .var = var, .gy = gy, .gx = gx};
    adv__par_for((rows * bp->S > 65536) ? (p->threads) : 1, rows,
                 16384 / (bp->S + 1) + 1, bn_bw_chunk, &bn_bw_j);
  }
  float *gsc = n->in[1]->grad, *gb = n->in[2]->grad, *gmu = n->in[3]->grad,
        *gvar = n->in[4]->grad;
  if (!gsc && !gb && !gmu && !gvar)
    return ADV_OK;
  const float *xd = x->data;
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r % bp->C;
    const float *g = gy + r * bp->S, *xr = xd + r * bp->S;
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < bp->S; i++) {
      sg += g[i];
      sgx += (double)g[i] * ((double)xr[i] - mu[c]);
    }
    double inv = 1.0 / sqrt((double)var[c] + bp->eps);
    if (gb)
      gb[c] += (float)sg;
    if (gsc)
      gsc[c] += (float)(sgx * inv);
    if (gmu)
      gmu[c] += (float)(-sc[c] * inv * sg);
    if (gvar)
      gvar[c] += (float)(-0.5 * sc[c] * inv * inv * inv * sgx);
  }
  return ADV_OK;
}

const adv_op_def adv__op_batchnorm = {"BatchNormalization", bn_infer, bn_forward,
                                      bn_backward, 0, ADV_BW_IN(0)};
