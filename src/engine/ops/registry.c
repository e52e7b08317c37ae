/*
 * registry.c - the op table: every supported ONNX op, by name. Adding an
 * op means one file with its infer/forward pair and one line here.
 */
#include "core/engine.h"

#include <string.h>

/* Engine III ops (issue 13), one row per line. */
// clang-format off
#define ADV_OPS_III(X) \
  X(max) \
  X(min) \
  X(mean) \
  X(sum) \
  X(where) \
  X(equal) \
  X(greater) \
  X(greaterorequal) \
  X(less) \
  X(lessorequal) \
  X(not) \
  X(and) \
  X(or) \
  X(xor) \
  X(tile) \
  X(range) \
  X(cumsum) \
  X(argmax) \
  X(argmin) \
  X(topk) \
  X(layernorm) \
  X(instancenorm) \
  X(size) \
  X(resize) \
  X(upsample) \
  X(convtranspose) \
  X(einsum) \
  X(split) \
  X(floor) \
  X(ceil) \
  X(round) \
  X(sin) \
  X(cos) \
  X(sinh) \
  X(cosh) \
  X(if) \
  X(lstm) \
  X(gru) \
  X(rnn) \
  X(ml_treeclf) \
  X(ml_treereg) \
  X(ml_linclf) \
  X(ml_linreg) \
  X(ml_scaler) \
  X(ml_normalizer) \
  X(ml_zipmap) \
  X(ml_afe) \
  X(quantizelinear) \
  X(dequantizelinear) \
  X(dynamicquantizelinear) \
  X(matmulinteger) \
  X(qlinearmatmul) \
  X(convinteger) \
  X(qlinearconv)
// clang-format on

/* a long X-macro list: clang-format 14 reflows it differently each run */
// clang-format off
#define ADV_OPS(X)                                                             \
  X(add)                                                                       \
  X(sub)                                                                       \
  X(mul) X(div) X(pow) X(prelu) X(relu) X(leakyrelu) X(sigmoid) X(tanh) X(erf) \
      X(gelu) X(exp) X(log) X(sqrt) X(neg) X(abs) X(reciprocal) X(hardsigmoid) \
          X(hardswish) X(softplus) X(elu) X(selu) X(sign) X(softsign)          \
              X(identity) X(dropout) X(conv) X(gemm) X(matmul) X(softmax)      \
                  X(logsoftmax) X(maxpool) X(averagepool) X(globalaveragepool) \
                      X(globalmaxpool) X(batchnorm) X(pad) X(clip)             \
                          X(reducemean) X(reducesum) X(reducemax) X(reducemin) \
                              X(flatten) X(reshape) X(squeeze) X(unsqueeze)    \
                                  X(transpose) X(slice) X(expand) X(concat)    \
                                      X(shape) X(gather) X(cast) X(constant)   \
                                          X(constantofshape) ADV_OPS_III(X)
// clang-format on

#define ADV__OP_DECL(sym) extern const adv_op_def adv__op_##sym;
ADV_OPS(ADV__OP_DECL)
#undef ADV__OP_DECL

#define ADV__OP_REF(sym) &adv__op_##sym,
const adv_op_def *const adv__ops[] = {ADV_OPS(ADV__OP_REF)};
#undef ADV__OP_REF

#define ADV__OP_COUNT(sym) +1
enum { ADV__N_OPS = 0 ADV_OPS(ADV__OP_COUNT) };
#undef ADV__OP_COUNT
const int adv__n_ops = ADV__N_OPS;
/* The table and its count come from the same macro, so a static_assert
 * comparing them could never fail (there was one). What can go wrong is
 * in the rows: two ops registering one ONNX name (the second would be
 * unreachable) or a row without infer/forward. adv__op_table_check finds
 * both; tests/unit/test_models.c calls it. */

/* Returns -1 when every row is sound, else the index of the first bad one. */
int adv__op_table_check(void) {
  for (int i = 0; i < adv__n_ops; i++) {
    const adv_op_def *d = adv__ops[i];
    if (!d->name || !d->infer || !d->forward || adv__op_find(d->name) != i)
      return i;
  }
  return -1;
}

int adv__op_find(const char *op_type) {
  for (int i = 0; i < adv__n_ops; i++)
    if (!strcmp(adv__ops[i]->name, op_type))
      return i;
  return -1;
}
