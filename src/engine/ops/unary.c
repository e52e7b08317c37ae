/*
 * unary.c - element-wise ops on float32: Relu, LeakyRelu, Sigmoid, Tanh,
 * Erf, Gelu, Exp, Log, Sqrt, Neg, Abs, Reciprocal, HardSigmoid, HardSwish,
 * Softplus, Elu, Selu, Sign, Softsign, Floor, Ceil, Round (gradient 0,
 * as PyTorch), Sin, Cos, Sinh, Cosh; and the copies Identity and Dropout
 * (inference: identity, mask all true) which accept any dtype.
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

enum {
  U_RELU,
  U_LEAKY,
  U_SIGMOID,
  U_TANH,
  U_ERF,
  U_GELU,
  U_GELU_TANH,
  U_EXP,
  U_LOG,
  U_SQRT,
  U_NEG,
  U_ABS,
  U_RECIP,
  U_HSIG,
  U_HSWISH,
  U_SOFTPLUS,
  U_ELU,
  U_SELU,
  U_SIGN,
  U_SOFTSIGN,
  U_FLOOR,
  U_CEIL,
  U_ROUND,
  U_SIN,
  U_COS,
  U_SINH,
  U_COSH
};

typedef struct un_params {
  int kind;
  float alpha, beta;
} un_params;

static const struct {
  const char *name;
  int kind;
} un_names[] = {
    {"Relu", U_RELU},         {"LeakyRelu", U_LEAKY},  {"Sigmoid", U_SIGMOID},
    {"Tanh", U_TANH},         {"Erf", U_ERF},          {"Gelu", U_GELU},
    {"Exp", U_EXP},           {"Log", U_LOG},          {"Sqrt", U_SQRT},
    {"Neg", U_NEG},           {"Abs", U_ABS},          {"Reciprocal", U_RECIP},
    {"HardSigmoid", U_HSIG},  {"HardSwish", U_HSWISH}, {"Softplus", U_SOFTPLUS},
    {"Elu", U_ELU},           {"Selu", U_SELU},        {"Sign", U_SIGN},
    {"Softsign", U_SOFTSIGN}, {"Floor", U_FLOOR},      {"Ceil", U_CEIL},
    {"Round", U_ROUND},       {"Sin", U_SIN},          {"Cos", U_COS},
    {"Sinh", U_SINH},         {"Cosh", U_COSH},
};

static int un_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs 1 input and 1 output");
  un_params *up = adv__arena_alloc(&p->arena, sizeof(*up));
  if (!up)
    return ADV_ENOMEM;
  const char *name = adv__ops[n->op]->name;
  up->kind = -1;
  for (size_t i = 0; i < sizeof(un_names) / sizeof(un_names[0]); i++)
    if (!strcmp(un_names[i].name, name))
      up->kind = un_names[i].kind;
  if (up->kind < 0)
    return ADV_EINTERNAL;
  /* int64 Neg/Abs: shape arithmetic (e.g. expanded LayerNormalization) */
  int int_ok = up->kind == U_NEG || up->kind == U_ABS;
  if (n->in[0]->dtype != ADV_DTYPE_F32 &&
      (n->in[0]->dtype != ADV_DTYPE_I64 || !int_ok))
    return adv__error(err, ADV_EDTYPE, "float32 input required");
  switch (up->kind) {
  case U_LEAKY:
    up->alpha = adv__attr_float(n->m, "alpha", 0.01f);
    break;
  case U_ELU:
    up->alpha = adv__attr_float(n->m, "alpha", 1.0f);
    break;
  case U_SELU:
    up->alpha = adv__attr_float(n->m, "alpha", 1.67326319217681884765625f);
    up->beta = adv__attr_float(n->m, "gamma", 1.05070102214813232421875f);
    break;
  case U_HSIG:
    up->alpha = adv__attr_float(n->m, "alpha", 0.2f);
    up->beta = adv__attr_float(n->m, "beta", 0.5f);
    break;
  case U_GELU: {
    const char *ap = adv__attr_str(n->m, "approximate", "none");
    if (!strcmp(ap, "tanh"))
      up->kind = U_GELU_TANH;
    else if (strcmp(ap, "none"))
      return adv__error(err, ADV_EFORMAT, "bad approximate '%s'", ap);
    break;
  }
  default:
    break;
  }
  n->params = up;
  n->bw_can_assign = ADV_BW_IN(0);
  const adv_tensor *x = n->in[0];
  return adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, x->dims);
}

/* One unary op's arrays, for its adv__par_for chunks. */
typedef struct un_job {
  const un_params *up;
  const float *x, *gy;
  float *y, *gx;
  int assign;
} un_job;

/* Forward over elements [lo, hi) (an adv__par_for chunk). */
static void un_forward_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const un_job *j = arg;
  const un_params *up = j->up;
  const float *x = j->x;
  float *y = j->y;
  float al = up->alpha, be = up->beta;
#define UN_LOOP(expr)                                                          \
  for (int64_t i = lo; i < hi; i++) {                                          \
    float v = x[i];                                                            \
    y[i] = (expr);                                                             \
  }                                                                            \
  break;
  switch (up->kind) {
  case U_RELU: UN_LOOP(v > 0.f ? v : 0.f)
  case U_LEAKY: UN_LOOP(v >= 0.f ? v : al * v)
  case U_SIGMOID: UN_LOOP(v >= 0.f ? 1.f / (1.f + expf(-v)) : expf(v) / (1.f + expf(v)))
  case U_TANH: UN_LOOP(tanhf(v))
  case U_ERF: UN_LOOP(erff(v))
  case U_GELU: UN_LOOP(0.5f * v * (1.f + erff(v * 0.70710678118654752f)))
  case U_GELU_TANH: UN_LOOP(0.5f * v * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v))))
  case U_EXP: UN_LOOP(expf(v))
  case U_LOG: UN_LOOP(logf(v))
  case U_SQRT: UN_LOOP(sqrtf(v))
  case U_NEG: UN_LOOP(-v)
  case U_ABS: UN_LOOP(fabsf(v))
  case U_RECIP: UN_LOOP(1.f / v)
  case U_HSIG: UN_LOOP(fmaxf(0.f, fminf(1.f, al * v + be)))
  case U_HSWISH: UN_LOOP(v * fmaxf(0.f, fminf(1.f, v / 6.f + 0.5f)))
  case U_SOFTPLUS: UN_LOOP(v > 20.f ? v : log1pf(expf(v)))
  case U_ELU: UN_LOOP(v >= 0.f ? v : al * (expf(v) - 1.f))
  case U_SELU: UN_LOOP(v > 0.f ? be * v : be * al * (expf(v) - 1.f))
  case U_SIGN: UN_LOOP(v > 0.f ? 1.f : v < 0.f ? -1.f : 0.f)
  case U_SOFTSIGN: UN_LOOP(v / (1.f + fabsf(v)))
  case U_FLOOR:
    UN_LOOP(floorf(v))
  case U_CEIL:
    UN_LOOP(ceilf(v))
  case U_ROUND:
    UN_LOOP(nearbyintf(v)) /* half to even, as ONNX */
  case U_SIN:
    UN_LOOP(sinf(v))
  case U_COS:
    UN_LOOP(cosf(v))
  case U_SINH:
    UN_LOOP(sinhf(v))
  case U_COSH:
    UN_LOOP(coshf(v))
  default:
    break; /* refused by un_forward */
  }
#undef UN_LOOP
}

static int un_forward(adv_plan *p, adv_pnode *n) {
  const un_params *up = n->params;
  int64_t len = n->out[0]->numel;
  if (n->in[0]->dtype == ADV_DTYPE_I64) { /* Neg, Abs (wrapping like C) */
    const int64_t *xi = n->in[0]->data;
    int64_t *yi = n->out[0]->data;
    for (int64_t i = 0; i < len; i++) {
      uint64_t u = (uint64_t)xi[i];
      yi[i] = (up->kind == U_NEG || xi[i] < 0) ? (int64_t)(0 - u) : xi[i];
    }
    return ADV_OK;
  }
  if (up->kind > U_COSH)
    return ADV_EINTERNAL;
  un_job j = {.up = up, .x = n->in[0]->data, .y = n->out[0]->data};
  adv__par_for(len > 65536 ? p->threads : 1, len, 16384, un_forward_chunk, &j);
  return ADV_OK;
}

/* Backward over elements [lo, hi) (an adv__par_for chunk). */
static void un_backward_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const un_job *j = arg;
  const un_params *up = j->up;
  const float *x = j->x, *gy = j->gy;
  float *gx = j->gx;
  float al = up->alpha, be = up->beta;
  int assign = j->assign;
#define BW_LOOP(expr)                                                          \
  if (assign) {                                                                \
    for (int64_t i = lo; i < hi; i++) {                                        \
      float v = x[i], g = gy[i];                                               \
      (void)v;                                                                 \
      gx[i] = (expr);                                                          \
    }                                                                          \
  } else {                                                                     \
    for (int64_t i = lo; i < hi; i++) {                                        \
      float v = x[i], g = gy[i];                                               \
      (void)v;                                                                 \
      gx[i] += (expr);                                                         \
    }                                                                          \
  }                                                                            \
  break;
  switch (up->kind) {
  case U_RELU: BW_LOOP(v > 0.f ? g : 0.f)
  case U_LEAKY: BW_LOOP(v > 0.f ? g : g * al)
  case U_SIGMOID: BW_LOOP(g * (1.f / (1.f + expf(-v))) * (1.f - 1.f / (1.f + expf(-v))))
  case U_TANH: BW_LOOP(g * (1.f - tanhf(v) * tanhf(v)))
  case U_ERF: BW_LOOP(g * 1.1283791670955126f * expf(-v * v))
  case U_GELU: BW_LOOP(g * (0.5f * (1.f + erff(v * 0.70710678118654752f)) + v * 0.3989422804014327f * expf(-0.5f * v * v)))
  case U_GELU_TANH: BW_LOOP(g * (0.5f * (1.f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v))) + 0.5f * v * (1.f - tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)) * tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v))) * 0.7978845608028654f * (1.f + 3.f * 0.044715f * v * v)))
  case U_EXP: BW_LOOP(g * expf(v))
  case U_LOG: BW_LOOP(g / v)
  case U_SQRT: BW_LOOP(g * 0.5f / sqrtf(v))
  case U_NEG: BW_LOOP(-g)
  case U_ABS: BW_LOOP(v > 0.f ? g : v < 0.f ? -g : 0.f)
  case U_RECIP: BW_LOOP(-g / (v * v))
  case U_HSIG: BW_LOOP((al * v + be > 0.f && al * v + be < 1.f) ? g * al : 0.f)
  case U_HSWISH: BW_LOOP(v < -3.f ? 0.f : v <= 3.f ? g * (v / 3.f + 0.5f) : g)
  case U_SOFTPLUS: BW_LOOP(v > 20.f ? g : g * expf(v) / (expf(v) + 1.f))
  case U_ELU: BW_LOOP(v > 0.f ? g : g * al * expf(v))
  case U_SELU: BW_LOOP(v > 0.f ? g * be : g * be * al * expf(v))
  case U_SIGN: BW_LOOP(0.f * g)
  case U_SOFTSIGN: BW_LOOP(g / ((1.f + fabsf(v)) * (1.f + fabsf(v))))
  case U_FLOOR:
  case U_CEIL:
  case U_ROUND:
    BW_LOOP(0.f * g) /* steps */
  case U_SIN:
    BW_LOOP(g * cosf(v))
  case U_COS:
    BW_LOOP(-g * sinf(v))
  case U_SINH:
    BW_LOOP(g * coshf(v))
  case U_COSH:
    BW_LOOP(g * sinhf(v))
  default:
    break; /* refused by un_backward */
  }
#undef BW_LOOP
}

/*
 * Backward from the input x (PyTorch's conventions at kinks: ReLU'(0) = 0,
 * |x|'(0) = 0, HardSigmoid'(x) = alpha strictly inside its linear part,
 * HardSwish'(x) = x/3 + 1/2 on [-3, 3], Softplus'(x) = 1 above 20).
 */
static int un_backward(adv_plan *p, adv_pnode *n) {
  const un_params *up = n->params;
  adv_tensor *xt = n->in[0];
  if (!xt->grad || !n->out[0]->grad)
    return ADV_OK;
  if (up->kind > U_COSH)
    return ADV_EINTERNAL;
  int64_t len = xt->numel;
  un_job j = {.up = up,
              .x = xt->data,
              .gy = n->out[0]->grad,
              .gx = xt->grad,
              .assign = (n->bw_assign & ADV_BW_IN(0)) != 0};
  adv__par_for(len > 65536 ? p->threads : 1, len, 16384, un_backward_chunk, &j);
  return ADV_OK;
}

/* Identity / Dropout(inference): y = x; Dropout's optional mask is all
 * true. Dropout with training_mode set to a constant true is refused. */
static int copy_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_in < 1 || !n->in[0] || n->n_out < 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs an input and an output");
  const adv_tensor *x = n->in[0];
  if (!strcmp(adv__ops[n->op]->name, "Dropout")) {
    if (n->n_in >= 3 && n->in[2]) {
      int64_t tm[1];
      if (adv__const_ints(n->in[2], tm, 1) != 1)
        return adv__error(err, ADV_EUNSUPPORTED, "training_mode must be constant");
      if (tm[0])
        return adv__error(err, ADV_EUNSUPPORTED, "training-mode Dropout");
    }
    if (n->n_out >= 2 && n->out[1]) {
      int rc = adv__tensor_set_shape(n->out[1], ADV_DTYPE_I64, x->ndim, x->dims);
      if (rc)
        return rc;
    }
  } else if (n->n_in != 1 || n->n_out != 1) {
    return adv__error(err, ADV_EFORMAT, "Identity takes 1 input, 1 output");
  }
  n->is_identity = n->n_out == 1 || !n->out[1]; /* fuse.c drops the node */
  return adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, x->dims);
}

static int copy_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const adv_tensor *x = n->in[0];
  memcpy(n->out[0]->data, x->data, (size_t)x->numel * adv_dtype_size(x->dtype));
  if (n->n_out >= 2 && n->out[1]) {
    int64_t *m = n->out[1]->data;
    for (int64_t i = 0; i < n->out[1]->numel; i++)
      m[i] = 1;
  }
  return ADV_OK;
}

#define UNARY(sym, name)                                                       \
  const adv_op_def sym = {name, un_infer, un_forward, un_backward, ADV_BW_IN(0), 0};
UNARY(adv__op_relu, "Relu")
UNARY(adv__op_leakyrelu, "LeakyRelu")
UNARY(adv__op_sigmoid, "Sigmoid")
UNARY(adv__op_tanh, "Tanh")
UNARY(adv__op_erf, "Erf")
UNARY(adv__op_gelu, "Gelu")
UNARY(adv__op_exp, "Exp")
UNARY(adv__op_log, "Log")
UNARY(adv__op_sqrt, "Sqrt")
UNARY(adv__op_neg, "Neg")
UNARY(adv__op_abs, "Abs")
UNARY(adv__op_reciprocal, "Reciprocal")
UNARY(adv__op_hardsigmoid, "HardSigmoid")
UNARY(adv__op_hardswish, "HardSwish")
UNARY(adv__op_softplus, "Softplus")
UNARY(adv__op_elu, "Elu")
UNARY(adv__op_selu, "Selu")
UNARY(adv__op_sign, "Sign")
UNARY(adv__op_softsign, "Softsign")
UNARY(adv__op_floor, "Floor")
UNARY(adv__op_ceil, "Ceil")
UNARY(adv__op_round, "Round")
UNARY(adv__op_sin, "Sin")
UNARY(adv__op_cos, "Cos")
UNARY(adv__op_sinh, "Sinh")
UNARY(adv__op_cosh, "Cosh")
/* Identity / Dropout backward: the gradient passes through. */
static int copy_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  adv_tensor *x = n->in[0];
  if (!x->grad || !n->out[0]->grad)
    return ADV_OK;
  const float *gy = n->out[0]->grad;
  for (int64_t i = 0; i < x->numel; i++)
    x->grad[i] += gy[i];
  return ADV_OK;
}

const adv_op_def adv__op_identity = {"Identity", copy_infer, copy_forward, copy_backward, 0, 0};
const adv_op_def adv__op_dropout = {"Dropout", copy_infer, copy_forward, copy_backward, 0, 0};
