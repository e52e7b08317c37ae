/*
 * fuzz_onnx.c - libFuzzer target for the ONNX loader (own protobuf
 * decoder) and the planner: any bytes must load or fail cleanly, and a
 * model that loads must plan (batch 1) or fail cleanly.
 */
#include "adv/adv.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Runs s once on all-zero inputs (and backward from zero logit gradients
 * when it can); every call must return cleanly. */
static void run_small(adv_session *s) {
  int ni = adv_session_num_inputs(s), no = adv_session_num_outputs(s);
  if (ni < 1 || ni > 4 || no < 1 || no > 4)
    return;
  float *in[4] = {0};
  void *out[4] = {0};
  int ok = 1;
  for (int i = 0; i < ni && ok; i++) {
    int64_t d[ADV_MAX_DIMS], n = 1;
    int nd = adv_session_input_shape(s, i, d);
    for (int k = 0; k < nd; k++)
      n *= d[k];
    ok = n <= (1 << 18) && (in[i] = calloc((size_t)n + 1, sizeof(float)));
  }
  for (int i = 0; i < no && ok; i++) {
    int64_t d[ADV_MAX_DIMS], n = 1;
    int nd = adv_session_output_shape(s, i, d);
    for (int k = 0; k < nd; k++)
      n *= d[k];
    ok = n <= (1 << 18) && (out[i] = calloc((size_t)n + 1, 8));
  }
  adv_err err;
  if (ok && adv_session_run(s, (const float *const *)in, out, NULL, &err) == 0 &&
      adv_session_output_dtype(s, 0) == ADV_DTYPE_F32)
    adv_session_backward_dz(s, (const float *)out[0], NULL, NULL, &err);
  for (int i = 0; i < 4; i++) {
    free(in[i]);
    free(out[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  adv_load_params p = adv_load_default_params();
  p.max_weight_bytes = 64 << 20; /* keep the fuzzer's memory bounded */
  p.max_tensor_bytes = 16 << 20;
  adv_model *m = NULL;
  adv_err err;
  if (adv_model_load_mem(data, size, p, &m, &err) == 0) {
    /* plain, then with the backward plan (gradient stores, rewrites);
     * small plans also run a forward and a backward pass on zeros */
    for (int g = 0; g < 2; g++) {
      adv_session_params sp = adv_session_default_params();
      sp.batch = 1;
      sp.grad = g;
      sp.max_bytes = 64u << 20; /* the fuzzer's memory stays bounded */
      adv_session *s = NULL;
      if (adv_session_init(m, sp, &s, &err) == 0 && adv_session_arena_bytes(s) < (1u << 20))
        run_small(s);
      adv_session_free(s);
    }
    adv_model_free(m);
  }
  adv_array a;
  if (adv_tensorproto_read(data, size, &a, &err) == 0)
    adv_array_free(&a);
  return 0;
}
