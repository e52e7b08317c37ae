/*
 * const_inputs.c - ONNX backend node tests whose second and later inputs
 * are float tensors that real exports hold as constants (Resize's scales
 * and roi, Range's float start/limit/delta). `aisbx onnx-check` binds only
 * integer inputs as constants, so those cases run here instead: input 0
 * is fed at run time (Range: every input is bound), all later inputs are
 * bound as session constants, and each output must match ONNX's reference
 * output within the same tolerance as onnx-check (|got - want| <= 1e-5 +
 * 1e-3 |want|, shapes equal).
 *
 * Usage: test_onnx_const_inputs [--all-const] CASE_DIR...
 */
#include "adv/adv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a TensorProto file; 0 or -1. */
static int load_pb(const char *path, adv_array *a) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = len > 0 ? malloc((size_t)len) : NULL;
  int ok = buf && fread(buf, 1, (size_t)len, f) == (size_t)len;
  fclose(f);
  adv_err err = {{0}};
  int rc = ok ? adv_tensorproto_read(buf, (size_t)len, a, &err) : -1;
  free(buf);
  return rc ? -1 : 0;
}

/* Runs test_data_set_0 of one case; 0 when every output matches. */
static int run_case(const char *dir, int all_const) {
  char path[4096];
  adv_err err = {{0}};
  adv_model *m = NULL;
  adv_session *s = NULL;
  adv_array in[16], ref[16];
  void *outs[16] = {0};
  adv_binding b[16];
  int nin = 0, nout = 0, status = 1;
  memset(in, 0, sizeof(in));
  memset(ref, 0, sizeof(ref));
  snprintf(path, sizeof(path), "%s/model.onnx", dir);
  if (adv_model_load_file(path, adv_load_default_params(), &m, &err)) {
    printf("FAIL %s: load: %s\n", dir, err.msg);
    return 1;
  }
  for (; nin < 16; nin++) {
    snprintf(path, sizeof(path), "%s/test_data_set_0/input_%d.pb", dir, nin);
    if (load_pb(path, &in[nin]))
      break;
  }
  for (; nout < 16; nout++) {
    snprintf(path, sizeof(path), "%s/test_data_set_0/output_%d.pb", dir, nout);
    if (load_pb(path, &ref[nout]))
      break;
  }
  if (nin != adv_model_num_inputs(m) || nout == 0) {
    printf("FAIL %s: %d inputs / %d outputs in the test data\n", dir, nin,
           nout);
    goto done;
  }
  const float *rin[16];
  int nr = 0;
  for (int i = 0; i < nin; i++) {
    b[i].name = adv_model_input_name(m, i);
    b[i].value = &in[i];
    b[i].as_constant = all_const || i > 0 || in[i].dtype != ADV_DTYPE_F32;
    if (!b[i].as_constant)
      rin[nr++] = in[i].data;
  }
  adv_session_params sp = adv_session_default_params();
  sp.threads = 1;
  sp.bindings = b;
  sp.n_bindings = nin;
  if (adv_session_init(m, sp, &s, &err) || adv_session_num_outputs(s) != nout) {
    printf("FAIL %s: session: %s\n", dir, err.msg);
    goto done;
  }
  for (int i = 0; i < nout; i++)
    if (!(outs[i] = calloc((size_t)adv_array_numel(&ref[i]) + 1, 8)))
      goto done;
  if (adv_session_run(s, rin, outs, NULL, &err)) {
    printf("FAIL %s: run: %s\n", dir, err.msg);
    goto done;
  }
  status = 0;
  for (int i = 0; i < nout; i++) {
    int64_t dims[ADV_MAX_DIMS];
    int nd = adv_session_output_shape(s, i, dims);
    int same = nd == ref[i].ndim;
    for (int d = 0; same && d < nd; d++)
      same = dims[d] == ref[i].dims[d];
    if (!same) {
      printf("FAIL %s: output %d shape differs\n", dir, i);
      status = 1;
      continue;
    }
    int f32 = adv_session_output_dtype(s, i) == ADV_DTYPE_F32;
    for (int64_t e = 0; e < adv_array_numel(&ref[i]); e++) {
      double got =
          f32 ? ((float *)outs[i])[e] : (double)((int64_t *)outs[i])[e];
      double want = ref[i].dtype == ADV_DTYPE_F32
                        ? ((float *)ref[i].data)[e]
                        : (double)((int64_t *)ref[i].data)[e];
      if (!(fabs(got - want) <= 1e-5 + 1e-3 * fabs(want))) {
        printf("FAIL %s: output %d element %lld got %.9g expected %.9g\n", dir,
               i, (long long)e, got, want);
        status = 1;
        break;
      }
    }
  }
  if (!status)
    printf("ok   %s\n", dir);
done:
  for (int i = 0; i < 16; i++) {
    adv_array_free(&in[i]);
    adv_array_free(&ref[i]);
    free(outs[i]);
  }
  adv_session_free(s);
  adv_model_free(m);
  return status;
}

int main(int argc, char **argv) {
  int fails = 0, all_const = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--all-const"))
      all_const = 1;
    else
      fails += run_case(argv[i], all_const);
  }
  return fails ? 1 : 0;
}
