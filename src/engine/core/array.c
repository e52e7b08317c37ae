/* array.c - the plain host array used at the engine's edges (adv/array.h). */
#include "adv/array.h"
#include "adv/status.h"

#include <stdlib.h>
#include <string.h>

size_t adv_dtype_size(adv_dtype t) {
  switch (t) {
  case ADV_DTYPE_F32:
  case ADV_DTYPE_I32:
    return 4;
  case ADV_DTYPE_F64:
  case ADV_DTYPE_I64:
    return 8;
  case ADV_DTYPE_U8:
  case ADV_DTYPE_I8:
  case ADV_DTYPE_BOOL:
    return 1;
  case ADV_DTYPE_F16:
  case ADV_DTYPE_BF16:
    return 2;
  default:
    return 0;
  }
}

int64_t adv_array_numel(const adv_array *a) {
  int64_t n = 1;
  for (int i = 0; i < a->ndim; i++)
    n *= a->dims[i];
  return n;
}

/* Allocates a zeroed array; overflow-checked. On error *a is emptied. */
int adv_array_alloc(adv_array *a, adv_dtype t, int ndim, const int64_t *dims) {
  memset(a, 0, sizeof(*a));
  size_t es = adv_dtype_size(t);
  if (es == 0 || ndim < 0 || ndim > ADV_MAX_DIMS)
    return ADV_EINVAL;
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (dims[i] < 0)
      return ADV_EINVAL;
    if (dims[i] != 0 && n > SIZE_MAX / 16 / (size_t)dims[i])
      return ADV_ELIMIT;
    n *= (size_t)dims[i];
    a->dims[i] = dims[i];
  }
  a->data = calloc(n ? n : 1, es);
  if (!a->data) {
    memset(a, 0, sizeof(*a));
    return ADV_ENOMEM;
  }
  a->dtype = t;
  a->ndim = ndim;
  a->nbytes = n * es;
  return ADV_OK;
}

void adv_array_free(adv_array *a) {
  if (!a)
    return;
  free(a->data);
  memset(a, 0, sizeof(*a));
}
