/*
 * compare.c - Equal, Greater, GreaterOrEqual, Less, LessOrEqual and the
 * logical And, Or, Xor, Not, with numpy broadcasting. Operands are float32
 * or int64 (every integer type and bool are int64 after loading); the
 * result is a bool tensor, held as int64 0/1. No gradient: the outputs are
 * integers, so the planner never routes a gradient through them.
 */
#include "core/engine.h"

#include <string.h>

enum { C_EQ, C_GT, C_GE, C_LT, C_LE, C_AND, C_OR, C_XOR, C_NOT };

typedef struct cmp_params {
  int kind;
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  int64_t sa[ADV_MAX_DIMS], sb[ADV_MAX_DIMS]; /* element strides, 0 = bcast */
} cmp_params;

static const struct {
  const char *name;
  int kind;
} cmp_names[] = {
    {"Equal", C_EQ}, {"Greater", C_GT},     {"GreaterOrEqual", C_GE},
    {"Less", C_LT},  {"LessOrEqual", C_LE}, {"And", C_AND},
    {"Or", C_OR},    {"Xor", C_XOR},        {"Not", C_NOT},
};

/* Two operands of one type (Not: one), broadcast; output int64 (bool). */
static int cmp_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  cmp_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  const char *name = adv__ops[n->op]->name;
  cp->kind = -1;
  for (size_t i = 0; i < sizeof(cmp_names) / sizeof(cmp_names[0]); i++)
    if (!strcmp(cmp_names[i].name, name))
      cp->kind = cmp_names[i].kind;
  if (cp->kind < 0)
    return ADV_EINTERNAL;
  int nin = cp->kind == C_NOT ? 1 : 2;
  if (n->n_in != nin || n->n_out != 1 || !n->out[0] || !n->in[0] ||
      (nin == 2 && !n->in[1]))
    return adv__error(err, ADV_EFORMAT, "%s needs %d input(s) and 1 output",
                      name, nin);
  adv_tensor *a = n->in[0], *b = nin == 2 ? n->in[1] : n->in[0];
  if (a->dtype != b->dtype)
    return adv__error(err, ADV_EDTYPE, "%s: input types differ", name);
  if (a->dtype != ADV_DTYPE_F32 && a->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "%s: unsupported input type", name);
  if (cp->kind >= C_AND && a->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "%s: bool inputs required", name);
  if (adv__broadcast_shape(a, b, &cp->ndim, cp->dims))
    return adv__error(err, ADV_ESHAPE, "%s: shapes do not broadcast", name);
  adv__bcast_strides(a, cp->ndim, cp->dims, cp->sa);
  adv__bcast_strides(b, cp->ndim, cp->dims, cp->sb);
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, cp->ndim, cp->dims);
}

static inline int64_t cmp_f(int k, double x, double y) {
  switch (k) {
  case C_EQ:
    return x == y;
  case C_GT:
    return x > y;
  case C_GE:
    return x >= y;
  case C_LT:
    return x < y;
  default:
    return x <= y;
  }
}

/* int64 operands compare as int64: through double, values above 2^53
 * would merge. */
static inline int64_t cmp_i(int k, int64_t x, int64_t y) {
  switch (k) {
  case C_EQ:
    return x == y;
  case C_GT:
    return x > y;
  case C_GE:
    return x >= y;
  case C_LT:
    return x < y;
  case C_LE:
    return x <= y;
  case C_AND:
    return (x != 0) & (y != 0);
  case C_OR:
    return (x != 0) | (y != 0);
  case C_XOR:
    return (x != 0) ^ (y != 0);
  default:
    return x == 0; /* Not */
  }
}

static int cmp_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const cmp_params *cp = n->params;
  const adv_tensor *a = n->in[0], *b = cp->kind == C_NOT ? n->in[0] : n->in[1];
  int64_t *py = n->out[0]->data;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < n->out[0]->numel; e++) {
    int64_t oa = 0, ob = 0;
    for (int d = 0; d < cp->ndim; d++) {
      oa += idx[d] * cp->sa[d];
      ob += idx[d] * cp->sb[d];
    }
    if (a->dtype == ADV_DTYPE_F32)
      py[e] = cmp_f(cp->kind, ((const float *)a->data)[oa],
                    ((const float *)b->data)[ob]);
    else
      py[e] = cmp_i(cp->kind, ((const int64_t *)a->data)[oa],
                    ((const int64_t *)b->data)[ob]);
    for (int d = cp->ndim - 1; d >= 0 && ++idx[d] == cp->dims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

#define CMP(sym, name)                                                         \
  const adv_op_def sym = {name, cmp_infer, cmp_forward, NULL, 0, 0};
CMP(adv__op_equal, "Equal")
CMP(adv__op_greater, "Greater")
CMP(adv__op_greaterorequal, "GreaterOrEqual")
CMP(adv__op_less, "Less")
CMP(adv__op_lessorequal, "LessOrEqual")
CMP(adv__op_and, "And")
CMP(adv__op_or, "Or")
CMP(adv__op_xor, "Xor")
CMP(adv__op_not, "Not")
