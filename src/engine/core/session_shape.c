/*
 * session_shape.c - "a session for this input shape": the one place that
 * checks data against a single-input model's declared input (symbolic
 * dims accept any size), plans a session for a batch of such samples, and
 * asks the model how many classes it outputs.
 */
#include "core/engine.h"

#include <string.h>

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
    return adv__error(err, ADV_ESHAPE,
                      "model wants a rank-%d input, data is rank %d", mnd,
                      ndim);
  for (int d = 1; d < ndim; d++) {
    if (dims[d] < 1)
      return adv__error(err, ADV_ESHAPE, "input dim %d is %lld", d,
                        (long long)dims[d]);
    if (md[d] >= 0 && md[d] != dims[d])
      return adv__error(err, ADV_ESHAPE,
                        "input dim %d is %lld, model wants %lld", d,
                        (long long)dims[d], (long long)md[d]);
  }
  return ADV_OK;
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
