/*
 * fuzz_onnx.c - libFuzzer target for the ONNX loader (own protobuf
 * decoder) and the planner: any bytes must load or fail cleanly, and a
 * model that loads must plan (batch 1) or fail cleanly.
 */
#include "adv/adv.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  adv_load_params p = adv_load_default_params();
  p.max_weight_bytes = 64 << 20; /* keep the fuzzer's memory bounded */
  p.max_tensor_bytes = 16 << 20;
  adv_model *m = NULL;
  adv_err err;
  if (adv_model_load_mem(data, size, p, &m, &err) == 0) {
    adv_session_params sp = adv_session_default_params();
    sp.batch = 1;
    adv_session *s = NULL;
    if (adv_session_init(m, sp, &s, &err) == 0 &&
        adv_session_arena_bytes(s) < (64u << 20))
      adv_session_free(s);
    else
      adv_session_free(s);
    adv_model_free(m);
  }
  adv_array a;
  if (adv_tensorproto_read(data, size, &a, &err) == 0)
    adv_array_free(&a);
  return 0;
}
