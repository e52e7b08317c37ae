/*
 * cast16.c - Cast to float16 and bfloat16 rounds exactly (ties to even),
 * not merely within onnx-check's tolerance:
 *   - float16: the input of ONNX's node test test_cast_FLOAT_to_FLOAT16
 *     must give its reference output (numpy's astype(float16)) bit for bit;
 *   - both: values chosen from the formats' definitions (binary16: 11
 *     significant bits, subnormal step 2^-24, largest finite 65504;
 *     bfloat16: 8 significant bits, float32's exponent range): exact ties
 *     round to the even neighbour, overflow gives infinity.
 *
 * Usage: test_onnx_cast16 NODE_DIR (.../libonnx-testdata/data/node)
 */
#include "harness.h"
#include "onnx_build.h"

#include "adv/adv.h"

#include <math.h>

static const char *g_node_dir;

/* Runs y = Cast(x, to) on n floats; 0 on success. */
static int run_cast(int to, const float *x, float *y, int64_t n) {
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 1, (int64_t[]){n});
  ob_node(&b, "Cast", "x", "y");
  ob_attr_int(&b, "to", to);
  ob_output(&b, "y");
  size_t len;
  unsigned char *bytes = ob_finish(&b, &len);
  adv_model *m = NULL;
  adv_session *s = NULL;
  adv_err err = {{0}};
  int rc = adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err);
  free(bytes);
  if (!rc)
    rc = adv_session_init(m, adv_session_default_params(), &s, &err);
  if (!rc)
    rc = adv_session_forward(s, x, y, &err);
  if (rc)
    fprintf(stderr, "Cast(to=%d): %s\n", to, err.msg);
  adv_session_free(s);
  adv_model_free(m);
  return rc;
}

/* Reads TensorProto file dir/name into a; 0 or -1. */
static int read_pb(const char *dir, const char *name, adv_array *a) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/test_cast_FLOAT_to_FLOAT16/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  unsigned char buf[1 << 16];
  size_t len = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  adv_err err = {{0}};
  return adv_tensorproto_read(buf, len, a, &err) ? -1 : 0;
}

/* Same float, NaN equal to NaN. */
static int same(float a, float b) {
  return (a != a && b != b) || a == b;
}

TEST(float16_node_test_exact) {
  adv_array in = {0}, want = {0};
  CHECK(read_pb(g_node_dir, "test_data_set_0/input_0.pb", &in) == 0);
  CHECK(read_pb(g_node_dir, "test_data_set_0/output_0.pb", &want) == 0);
  int64_t n = (int64_t)(in.nbytes / sizeof(float));
  CHECK(in.dtype == ADV_DTYPE_F32 && want.nbytes == in.nbytes && n > 0);
  if (n > 0 && want.nbytes == in.nbytes) {
    float *y = malloc(in.nbytes);
    CHECK(run_cast(10, in.data, y, n) == 0);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
      bad += !same(y[i], ((float *)want.data)[i]);
    CHECK_EQ_INT(bad, 0);
    free(y);
  }
  adv_array_free(&in);
  adv_array_free(&want);
}

TEST(float16_ties_and_range) {
  const float p = ldexpf(1.f, -11), t = ldexpf(1.f, -25);
  float x[] = {1.f + p,  1.f + 3 * p, -(1.f + 3 * p), 65519.f, 65520.f,
               -70000.f, t,           3 * t,          5 * t,   NAN};
  float want[] = {
      1.f,       1.f + 4 * p, -(1.f + 4 * p),   65504.f,          INFINITY,
      -INFINITY, 0.f,         ldexpf(1.f, -23), ldexpf(1.f, -23), NAN};
  float y[10];
  CHECK(run_cast(10, x, y, 10) == 0);
  for (int i = 0; i < 10; i++)
    CHECK(same(y[i], want[i]));
}

TEST(bfloat16_ties_and_range) {
  const float p = ldexpf(1.f, -8);
  float x[] = {1.f + p,        1.f + 3 * p,   -(1.f + 3 * p),
               1.f + 1.5f * p, 3.4028235e38f, NAN};
  float want[] = {1.f, 1.f + 4 * p, -(1.f + 4 * p), 1.f + 2 * p, INFINITY, NAN};
  float y[6];
  CHECK(run_cast(16, x, y, 6) == 0);
  for (int i = 0; i < 6; i++)
    CHECK(same(y[i], want[i]));
}

int main(int argc, char **argv) {
  g_node_dir = argc > 1 ? argv[1] : "/usr/share/libonnx-testdata/data/node";
  RUN(float16_node_test_exact);
  RUN(float16_ties_and_range);
  RUN(bfloat16_ties_and_range);
  return harness_report();
}
