/*
 * adv/array.h - a plain n-dimensional array (host memory, C order) used at
 * the edges of the engine: file readers, writers and the public API.
 *
 * Ownership: an adv_array owns `data` (allocated with malloc). Free it with
 * adv_array_free(), which also resets the struct so a second call is a no-op.
 */
#ifndef ADV_ARRAY_H
#define ADV_ARRAY_H

#include <stddef.h>
#include <stdint.h>

#define ADV_MAX_DIMS 8

typedef enum adv_dtype {
  ADV_DTYPE_UNDEFINED = 0,
  ADV_DTYPE_F32,
  ADV_DTYPE_F64,
  ADV_DTYPE_I64,
  ADV_DTYPE_I32,
  ADV_DTYPE_U8,
  ADV_DTYPE_I8,
  ADV_DTYPE_BOOL,
  ADV_DTYPE_F16,  /* IEEE half, raw bits in a uint16_t */
  ADV_DTYPE_BF16, /* bfloat16, raw bits in a uint16_t */
} adv_dtype;

typedef struct adv_array {
  adv_dtype dtype;
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  void *data;    /* owned, malloc'd, C order, nbytes long */
  size_t nbytes; /* == numel * adv_dtype_size(dtype) */
} adv_array;

/* Size in bytes of one element, 0 for ADV_DTYPE_UNDEFINED. */
size_t adv_dtype_size(adv_dtype t);
/* Product of dims (1 for ndim == 0). */
int64_t adv_array_numel(const adv_array *a);
/* Allocates a zeroed array. On error *a is left empty (data NULL). */
int adv_array_alloc(adv_array *a, adv_dtype t, int ndim, const int64_t *dims);
/* Frees data and resets the struct. Safe on an already-freed/zeroed array. */
void adv_array_free(adv_array *a);

#endif
