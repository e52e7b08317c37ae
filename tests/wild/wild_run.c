/*
 * wild_run - runs one model of the wild corpus through libadv and writes
 * its outputs for tests/wild/check.mjs to compare with onnxruntime's.
 *
 *   wild_run CASE_DIR OUT_DIR [REPEAT]
 *
 * CASE_DIR has the ONNX backend-test layout that tools/wild_refs.mjs
 * writes (model.onnx, test_data_set_0/input_<i>.pb in graph input order).
 * Integer inputs are bound as session constants (as `aisbx onnx-check`
 * does) so shape arithmetic on them folds; float inputs are runtime inputs.
 * Writes OUT_DIR/output_<i>.npy (float32 or int64) and, with REPEAT > 0,
 * runs the forward REPEAT more times and prints "forward_ms MEAN MIN".
 * Exit 0 ok, 2 the model cannot be loaded/planned/run (message on stderr).
 * Runs under aisbx's threading environment (adv/threading.h; re-executes
 * itself once to apply it) so bench/wild times what users get.
 */
#include "adv/adv.h"
#include "adv/data.h"
#include "adv/threading.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXIO 16

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Reads input_<i>.pb of the case's data set into *a; 1 when absent. */
static int read_input(const char *dir, int i, adv_array *a, adv_err *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/test_data_set_0/input_%d.pb", dir, i);
  FILE *f = fopen(path, "rb");
  if (!f)
    return 1;
  struct stat st;
  void *buf = NULL;
  int rc = -1;
  if (!fstat(fileno(f), &st) && (buf = malloc((size_t)st.st_size + 1)) &&
      fread(buf, 1, (size_t)st.st_size, f) == (size_t)st.st_size)
    rc = adv_tensorproto_read(buf, (size_t)st.st_size, a, err);
  else
    snprintf(err->msg, sizeof(err->msg), "cannot read input_%d.pb", i);
  free(buf);
  fclose(f);
  return rc ? -1 : 0;
}

/* Writes output i of the last run as OUT_DIR/output_<i>.npy. */
static int write_output(const adv_session *s, int i, void *data,
                        const char *out_dir, adv_err *err) {
  adv_array a;
  memset(&a, 0, sizeof(a));
  a.ndim = adv_session_output_shape(s, i, a.dims);
  a.dtype = adv_session_output_dtype(s, i);
  a.data = data;
  a.nbytes = (size_t)adv_array_numel(&a) *
             (a.dtype == ADV_DTYPE_F32 ? sizeof(float) : sizeof(int64_t));
  char path[4096];
  snprintf(path, sizeof(path), "%s/output_%d.npy", out_dir, i);
  return adv_npy_write_file(path, &a, err);
}

int main(int argc, char **argv) {
  /* the threading environment aisbx runs with (adv/threading.h) */
  if (adv_threading_env_apply() > 0)
    execv("/proc/self/exe", argv);
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: wild_run CASE_DIR OUT_DIR [REPEAT]\n");
    return 2;
  }
  int repeat = argc == 4 ? atoi(argv[3]) : 0;
  char path[4096];
  snprintf(path, sizeof(path), "%s/model.onnx", argv[1]);
  adv_err err = {{0}};
  adv_model *m = NULL;
  adv_session *s = NULL;
  adv_array in[MAXIO];
  adv_binding b[MAXIO];
  void *outs[MAXIO] = {0};
  const float *rin[MAXIO];
  memset(in, 0, sizeof(in));
  int nin = 0, nrt = 0, nout = 0, status = 2, rc;
  if ((rc = adv_model_load_file(path, adv_load_default_params(), &m, &err)))
    goto done;
  nin = adv_model_num_inputs(m);
  if (nin > MAXIO) {
    snprintf(err.msg, sizeof(err.msg), "%d inputs (max %d)", nin, MAXIO);
    goto done;
  }
  for (int i = 0; i < nin; i++) {
    if ((rc = read_input(argv[1], i, &in[i], &err)))
      goto done;
    b[i].name = adv_model_input_name(m, i);
    b[i].value = &in[i];
    b[i].as_constant = in[i].dtype != ADV_DTYPE_F32;
    if (!b[i].as_constant)
      rin[nrt++] = in[i].data;
  }
  adv_session_params sp = adv_session_default_params();
  sp.threads = 2;
  sp.bindings = b;
  sp.n_bindings = nin;
  if ((rc = adv_session_init(m, sp, &s, &err)))
    goto done;
  nout = adv_session_num_outputs(s);
  for (int i = 0; i < nout && i < MAXIO; i++) {
    adv_array shp;
    shp.ndim = adv_session_output_shape(s, i, shp.dims);
    outs[i] = calloc((size_t)adv_array_numel(&shp) + 1, sizeof(int64_t));
    if (!outs[i])
      goto done;
  }
  if ((rc = adv_session_run(s, rin, outs, NULL, &err)))
    goto done;
  for (int i = 0; i < nout && i < MAXIO; i++)
    if ((rc = write_output(s, i, outs[i], argv[2], &err)))
      goto done;
  if (repeat > 0) {
    double sum = 0, best = 1e30;
    for (int r = 0; r < repeat; r++) {
      double t0 = now_ms();
      if ((rc = adv_session_run(s, rin, outs, NULL, &err)))
        goto done;
      double dt = now_ms() - t0;
      sum += dt;
      best = dt < best ? dt : best;
    }
    printf("forward_ms %.4f %.4f\n", sum / repeat, best);
  }
  status = 0;
done:
  if (status)
    fprintf(stderr, "wild_run %s: %s (%s)\n", argv[1], err.msg,
            adv_err_name(rc));
  for (int i = 0; i < MAXIO; i++) {
    adv_array_free(&in[i]);
    free(outs[i]);
  }
  adv_session_free(s);
  adv_model_free(m);
  return status;
}
