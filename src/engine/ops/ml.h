/*
 * ml.h - helpers shared by the ai.onnx.ml ops (ml_tree.c, ml_linear.c).
 */
#ifndef ADV_OPS_ML_H
#define ADV_OPS_ML_H

#include "core/engine.h"

/* post_transform of m: 0 NONE, 1 LOGISTIC, 2 SOFTMAX, -1 unsupported. */
int adv__ml_post_transform(const adv_mnode *m);
/* Applies post_transform pt to one row of c scores in place. */
void adv__ml_apply_post(int pt, float *z, int c);
/* Checks x is float32 [N, F] or [F]; sets *rows = N, *feat = F. 0 or an
 * error (err set). */
int adv__ml_input(const adv_tensor *x, int64_t *rows, int64_t *feat,
                  adv_err *err);
/* Output shapes of a classifier (label int64 [rows], scores float32
 * [rows, c], each when present) or regressor (Y float32 [rows, c]). */
int adv__ml_out_shapes(adv_pnode *n, int clf, int64_t rows, int c,
                       adv_err *err);

#endif
