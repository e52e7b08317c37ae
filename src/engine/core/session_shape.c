/*
 * session_shape.c - "a session for this input shape": the one place that
 * checks data against a single-input model's declared input (symbolic
 * dims accept any size), plans a session for a batch of such samples, and
 * asks the model how many classes it outputs.
 */
#include "core/engine.h"

#include <stdio.h>
#include <string.h>

/* Writes "N x 1 x 28 x 28" (dims[0] shown as N, symbolic dims as ?)
 * into buf. */
static const char *shape_str(char *buf, size_t len, int ndim,
                             const int64_t *dims) {
  size_t o = 0;
  buf[0] = 0;
  for (int d = 0; d < ndim && o < len; d++) {
    int k = d == 0 ? snprintf(buf + o, len - o, "N")
            : dims[d] < 0
                ? snprintf(buf + o, len - o, " x ?")
                : snprintf(buf + o, len - o, " x %lld", (long long)dims[d]);
    o += k > 0 ? (size_t)k : 0;
  }
  if (ndim < 1)
    snprintf(buf, len, "unknown");
  return buf;
}

/* ADV_ESHAPE naming the data's and the model input's shapes. */
static int shape_mismatch(const adv_model *m, int ndim, const int64_t *dims,
                          int mnd, const int64_t *md, adv_err *err) {
  char a[160], b[160];
  return adv__error(err, ADV_ESHAPE,
                    "the data's samples have shape %s but model input '%s' has "
                    "shape %s (rank %d vs %d)",
                    shape_str(a, sizeof(a), ndim, dims),
                    adv_model_input_name(m, 0),
                    shape_str(b, sizeof(b), mnd, md), ndim, mnd);
}

int adv_model_check_input(const adv_model *m, int ndim, const int64_t *dims,
                          adv_err *err) {
  if (!m || !dims || ndim < 1 || ndim > ADV_MAX_DIMS)
    return adv__error(err, ADV_EINVAL,
                      "model and a rank-1..%d shape are required",
                      ADV_MAX_DIMS);
  int nin = adv_model_num_inputs(m);
  if (nin != 1)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "the model has %d inputs; one is supported", nin);
  int64_t md[ADV_MAX_DIMS];
  int mnd = adv_model_input_shape(m, 0, md);
  if (mnd != ndim)
    return shape_mismatch(m, ndim, dims, mnd, md, err);
  for (int d = 1; d < ndim; d++) {
    if (dims[d] < 1)
      return adv__error(err, ADV_ESHAPE, "input dim %d is %lld", d,
                        (long long)dims[d]);
    if (md[d] >= 0 && md[d] != dims[d])
      return shape_mismatch(m, ndim, dims, mnd, md, err);
  }
  return ADV_OK;
}

/*
 * The model's declared rank decides: data of the same rank is checked as
 * is; rank-3 data (N x H x W, e.g. an MNIST IDX file) for a rank-4 model
 * whose dim 1 is 1 or symbolic gets that channel dim (only dims change,
 * the bytes are the same C-order samples). Anything else is refused with
 * both shapes named.
 */
int adv_model_fit_data(const adv_model *m, adv_array *x, adv_err *err) {
  if (!m || !x || x->ndim < 1 || x->ndim > ADV_MAX_DIMS)
    return adv__error(err, ADV_EINVAL, "model and data are required");
  if (adv_model_num_inputs(m) != 1)
    return adv_model_check_input(m, x->ndim, x->dims, err);
  int64_t md[ADV_MAX_DIMS];
  int mnd = adv_model_input_shape(m, 0, md);
  if (x->ndim == 3 && mnd == 4 && md[1] <= 1) {
    int64_t d[ADV_MAX_DIMS] = {x->dims[0], 1, x->dims[1], x->dims[2]};
    int rc = adv_model_check_input(m, 4, d, NULL);
    if (rc)
      return shape_mismatch(m, x->ndim, x->dims, mnd, md, err);
    x->ndim = 4;
    memcpy(x->dims, d, sizeof(int64_t) * 4);
    return ADV_OK;
  }
  return adv_model_check_input(m, x->ndim, x->dims, err);
}

int adv_session_init_shape(const adv_model *m, adv_session_params p, int ndim,
                           const int64_t *dims, int64_t batch,
                           adv_session **out, adv_err *err) {
  *out = NULL;
  int rc = adv_model_check_input(m, ndim, dims, err);
  if (rc)
    return rc;
  if (batch < 1 || batch > INT32_MAX)
    return adv__error(err, ADV_EINVAL, "batch %lld out of range",
                      (long long)batch);
  adv_array shape;
  memset(&shape, 0, sizeof(shape));
  shape.dtype = ADV_DTYPE_F32;
  shape.ndim = ndim;
  memcpy(shape.dims, dims, sizeof(int64_t) * (size_t)ndim);
  shape.dims[0] = batch;
  adv_binding bd = {adv_model_input_name(m, 0), &shape, 0};
  p.bindings = &bd;
  p.n_bindings = 1;
  p.batch = 0;
  return adv_session_init(m, p, out, err);
}

int adv_model_num_classes(const adv_model *m, int ndim, const int64_t *dims,
                          int64_t *classes, adv_err *err) {
  *classes = 0;
  adv_session_params sp = adv_session_default_params();
  sp.logits = 1;
  adv_session *s = NULL;
  int rc = adv_session_init_shape(m, sp, ndim, dims, 1, &s, err);
  if (rc)
    return rc;
  int64_t od[ADV_MAX_DIMS];
  int nd = adv_session_output_shape(s, 0, od);
  adv_session_free(s);
  if (nd != 2 || od[1] < 2)
    return adv__error(err, ADV_ESHAPE, "model output is not N x classes");
  *classes = od[1];
  return ADV_OK;
}
