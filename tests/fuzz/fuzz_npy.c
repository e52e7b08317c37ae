/*
 * fuzz_npy.c - libFuzzer target for the NPY reader (adv_npy_read_mem).
 * Any input must either parse into a consistent array or fail cleanly with
 * the output left empty.
 */
#include "adv/data.h"
#include "adv/status.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  adv_io_limits lim = adv_io_default_limits();
  lim.max_array_bytes = (size_t)64 << 20; /* stay far below the RSS limit */
  adv_array a;
  adv_err err;
  int rc = adv_npy_read_mem(data, size, lim, &a, &err);
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
