/*
 * test_grad_models.c - input gradients of whole models in the node-test
 * layout (model.onnx + test_data_set_K/input_*.pb) against central finite
 * differences of the model's own forward, at each data set's input:
 *   tests/onnx/if_extra/test_if_data_dependent: gradients through a
 *     data-dependent If (and a nested one), one data set per branch path;
 *   tests/onnx/rnn_extra/test_*: LSTM / GRU backward through time, every
 *     direction, layout, sequence_lens, peepholes, linear_before_reset,
 *     and (the *_states cases) the final-state outputs.
 * Input 0 is the runtime input; the other inputs are bound as constants.
 * The loss is L = sum(r * y0) with fixed random weights r, so
 * dL/dx = backward_dz(r) and FD needs forward runs only.
 *
 * Usage: test_grad_models CASE_DIR...
 */
#include "adv/adv.h"
#include "harness.h"

#include <stdint.h>

static int g_argc;
static char **g_argv;

/* Reads a TensorProto file; 0 on success. */
static int read_pb(const char *path, adv_array *a) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  void *buf = malloc((size_t)n + 1);
  size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
  fclose(f);
  adv_err err = {{0}};
  int rc =
      got == (size_t)n ? adv_tensorproto_read(buf, (size_t)n, a, &err) : -1;
  free(buf);
  return rc;
}

/* sum(r * y) in double after one forward at x. */
static double loss_at(adv_session *s, const float *x, float *y, const float *r,
                      int64_t ny) {
  adv_err err = {{0}};
  void *outs[16] = {y};
  float *extra[16] = {0};
  for (int i = 1; i < adv_session_num_outputs(s); i++) {
    int64_t d[ADV_MAX_DIMS], n = 1;
    int nd = adv_session_output_shape(s, i, d);
    for (int k = 0; k < nd; k++)
      n *= d[k];
    outs[i] = extra[i] = malloc((size_t)n * 8 + 8);
  }
  int rc = adv_session_run(s, &x, outs, NULL, &err);
  for (int i = 1; i < 16; i++)
    free(extra[i]);
  if (rc) {
    fprintf(stderr, "forward failed: %s\n", err.msg);
    return NAN;
  }
  double l = 0;
  for (int64_t i = 0; i < ny; i++)
    l += (double)r[i] * y[i];
  return l;
}

/* FD check of one data set; returns the number of mismatches. */
static int check_set(const char *dir, int set) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/model.onnx", dir);
  adv_model *m = NULL;
  adv_err err = {{0}};
  if (adv_model_load_file(path, adv_load_default_params(), &m, &err)) {
    fprintf(stderr, "%s: %s\n", path, err.msg);
    return 1;
  }
  adv_array in[16];
  adv_binding bind[16];
  int nin = adv_model_num_inputs(m), bad = 0;
  memset(in, 0, sizeof(in));
  for (int i = 0; i < nin && i < 16; i++) {
    snprintf(path, sizeof(path), "%s/test_data_set_%d/input_%d.pb", dir, set,
             i);
    if (read_pb(path, &in[i])) {
      fprintf(stderr, "cannot read %s\n", path);
      bad = 1;
    }
    bind[i].name = adv_model_input_name(m, i);
    bind[i].value = &in[i];
    bind[i].as_constant = i > 0;
  }
  adv_session_params sp = adv_session_default_params();
  sp.grad = 1;
  sp.bindings = bind;
  sp.n_bindings = nin;
  adv_session *s = NULL;
  if (!bad && adv_session_init(m, sp, &s, &err)) {
    fprintf(stderr, "%s: session: %s\n", dir, err.msg);
    bad = 1;
  }
  if (!bad) {
    int64_t d[ADV_MAX_DIMS], ny = 1, nx = 1;
    int nd = adv_session_output_shape(s, 0, d);
    for (int k = 0; k < nd; k++)
      ny *= d[k];
    for (int k = 0; k < in[0].ndim; k++)
      nx *= in[0].dims[k];
    float *x = malloc((size_t)nx * 4), *dx = malloc((size_t)nx * 4);
    float *y = malloc((size_t)ny * 4), *r = malloc((size_t)ny * 4);
    memcpy(x, in[0].data, (size_t)nx * 4);
    uint64_t st = 0x9e3779b97f4a7c15ull + (uint64_t)set;
    for (int64_t i = 0; i < ny; i++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      r[i] = (float)((st >> 40) & 0xffff) / 65536.f - 0.5f;
    }
    loss_at(s, x, y, r, ny);
    if (adv_session_backward_dz(s, r, dx, NULL, &err)) {
      fprintf(stderr, "%s: backward: %s\n", dir, err.msg);
      bad++;
    }
    for (int64_t i = 0; i < nx && !bad; i++) {
      float x0 = x[i], h = 1e-2f * (fabsf(x0) > 1 ? fabsf(x0) : 1.f);
      x[i] = x0 + h;
      double lp = loss_at(s, x, y, r, ny);
      x[i] = x0 - h;
      double lm = loss_at(s, x, y, r, ny);
      x[i] = x0;
      double fd = (lp - lm) / (2.0 * h);
      HARNESS_CHECKED();
      if (!(fabs(fd - dx[i]) <= 2e-3 + 2e-2 * fabs(fd))) {
        fprintf(stderr, "%s set %d: dx[%lld] = %g, finite differences %g\n",
                dir, set, (long long)i, dx[i], fd);
        bad++;
      }
    }
    free(x);
    free(dx);
    free(y);
    free(r);
  }
  adv_session_free(s);
  adv_model_free(m);
  for (int i = 0; i < 16; i++)
    adv_array_free(&in[i]);
  return bad;
}

TEST(models) {
  for (int a = 1; a < g_argc; a++) {
    int sets = 0;
    for (int k = 0; k < 16; k++) {
      char p[1024];
      snprintf(p, sizeof(p), "%s/test_data_set_%d", g_argv[a], k);
      if (access(p, F_OK))
        break;
      CHECK(check_set(g_argv[a], k) == 0);
      sets++;
    }
    CHECK(sets > 0);
  }
}

int main(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
  setvbuf(stdout, NULL, _IOLBF, 0);
  RUN(models);
  return harness_report();
}
