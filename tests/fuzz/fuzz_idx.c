/*
 * fuzz_idx.c - libFuzzer target for the IDX reader (plain and gzip) through
 * the in-memory entry point adv__idx_read_mem (src/engine/io/io_internal.h).
 */
#include "adv/data.h"
#include "adv/status.h"
#include "io/io_internal.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  adv_io_limits lim = adv_io_default_limits();
  lim.max_array_bytes = (size_t)64 << 20;
  adv_array a;
  adv_err err;
  int rc = adv__idx_read_mem(data, size, lim, &a, &err);
  if (rc == ADV_OK) {
    if (!a.data ||
        a.nbytes != (size_t)adv_array_numel(&a) * adv_dtype_size(a.dtype))
      abort();
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < a.nbytes; i++)
      sink ^= ((const uint8_t *)a.data)[i];
    (void)sink;
  } else if (a.data || a.nbytes) {
    abort();
  }
  adv_array_free(&a);
  return 0;
}
