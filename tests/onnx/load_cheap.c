/*
 * load_cheap.c - loading refuses early and counts weights as stored
 * (issue 13 item 6):
 *   - a model with a large uint8 initializer and an op we lack is refused,
 * naming the op, before any weight is converted: the load adds almost nothing
 * to the peak RSS (converting the weights to int64 would add 8 bytes per
 * weight) and takes well under a second;
 *   - the weights cap counts bytes as stored: 4 MiB of uint8 weights load
 *     under a 5 MiB cap and are refused under a 3 MiB one;
 *   - uint8 weights stay uint8 until a kernel needs float: loading,
 *     planning and running y = x @ DequantizeLinear(W) with 32 Mi uint8
 *     weights peaks below 6 x 32 MiB (file bytes 1, stored weights 1, the
 *     folded float weights 4; converting W to int64 on load took 8 more),
 *     and y matches a double-precision reference computed here from W;
 *     once folded, the stored copy is released (the planned model holds
 *     < 4.5 W) and a second session shares the folded float weights;
 *   - float16/bfloat16/int8/uint8 weights read exactly, by the ops that
 *     read them as stored and after the planner widened them;
 *   - sessions of one model share the widened copy of a float16 weight.
 */
#include "harness.h"
#include "onnx_build.h"

#include "adv/adv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define BIG_WEIGHTS ((size_t)32 << 20) /* 32 Mi uint8 weights */
#define OT_UINT8 2

/* Peak resident set size of this process so far, in bytes. */
static size_t peak_rss(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (size_t)ru.ru_maxrss * 1024;
}

/* A model y = op(Cast(W)) + x with n uint8 weights W; returns malloc'd
 * bytes. */
static unsigned char *build(size_t n, const char *op, size_t *len) {
  unsigned char *w = malloc(n);
  if (!w)
    abort();
  for (size_t i = 0; i < n; i++)
    w[i] = (unsigned char)(i * 7 + 1);
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 1, (int64_t[]){(int64_t)n});
  ob_init_raw(&b, "W", OT_UINT8, 1, (int64_t[]){(int64_t)n}, w, n);
  free(w);
  ob_node(&b, "Cast", "W", "wf");
  ob_attr_int(&b, "to", 1);
  ob_node(&b, op, "wf", "z");
  ob_node(&b, "Add", "z,x", "y");
  ob_output(&b, "y");
  unsigned char *bytes = ob_finish(&b, len);
  return bytes;
}

/* Loads bytes with weights cap cap; returns the status, message in err. */
static int load(const unsigned char *bytes, size_t len, size_t cap,
                adv_err *err) {
  adv_load_params p = adv_load_default_params();
  if (cap)
    p.max_weight_bytes = cap;
  adv_model *m = NULL;
  int rc = adv_model_load_mem(bytes, len, p, &m, err);
  adv_model_free(m);
  return rc;
}

/* Monotonic seconds. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

TEST(unsupported_refused_before_weights) {
  size_t len;
  unsigned char *bytes = build(BIG_WEIGHTS, "NoSuchOp", &len);
  size_t before = peak_rss();
  adv_err err = {{0}};
  double t0 = now();
  int rc = load(bytes, len, 0, &err);
  double dt = now() - t0;
  size_t grown = peak_rss() - before;
  free(bytes);
  CHECK_EQ_INT(rc, ADV_EUNSUPPORTED);
  CHECK(strstr(err.msg, "NoSuchOp") != NULL);
  /* converting the weights would take 8 bytes per weight (256 MiB) */
  if (grown >= BIG_WEIGHTS / 2)
    fprintf(stderr, "peak RSS grew by %zu bytes\n", grown);
  CHECK(grown < BIG_WEIGHTS / 2);
  CHECK(dt < 0.5);
}

TEST(weights_cap_counts_stored_bytes) {
  size_t n = (size_t)4 << 20, len;
  unsigned char *bytes = build(n, "Relu", &len);
  adv_err err = {{0}};
  CHECK_EQ_INT(load(bytes, len, (size_t)5 << 20, &err), ADV_OK);
  CHECK_EQ_INT(load(bytes, len, (size_t)3 << 20, &err), ADV_ELIMIT);
  CHECK(strstr(err.msg, "weights exceed") != NULL);
  free(bytes);
}

/* Value of "Key:" (kB) in /proc/self/status, -1 when absent. */
static long proc_status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t kl = strlen(key);
  while (f && fgets(line, sizeof(line), f))
    if (!strncmp(line, key, kl))
      v = atol(line + kl);
  if (f)
    fclose(f);
  return v;
}

/* Resets the peak RSS (VmHWM) to the current RSS; 0 on success. */
static int reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f)
    return -1;
  int bad = fputs("5", f) < 0;
  return fclose(f) || bad ? -1 : 0;
}

#define DQ_K 4096
#define DQ_N ((int)(BIG_WEIGHTS / DQ_K))

TEST(uint8_weights_stay_uint8) {
  /* y = x @ DequantizeLinear(W, s, z): W [K, N] uint8, per-column s, z */
  unsigned char *w = malloc(BIG_WEIGHTS);
  float *s = malloc(sizeof(float) * DQ_N), *x = malloc(sizeof(float) * DQ_K);
  unsigned char *z = malloc(DQ_N);
  if (!w || !s || !x || !z)
    abort();
  for (size_t i = 0; i < BIG_WEIGHTS; i++)
    w[i] = (unsigned char)((i * 2654435761u) >> 13);
  for (int j = 0; j < DQ_N; j++) {
    s[j] = 0.001f * (float)(1 + j % 7);
    z[j] = (unsigned char)(120 + j % 16);
  }
  for (int k = 0; k < DQ_K; k++)
    x[k] = (float)((k % 13) - 6) / 8.f;
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 2, (int64_t[]){1, DQ_K});
  ob_init_raw(&b, "W", OT_UINT8, 2, (int64_t[]){DQ_K, DQ_N}, w, BIG_WEIGHTS);
  ob_init_f32(&b, "s", 1, (int64_t[]){DQ_N}, s);
  ob_init_raw(&b, "z", OT_UINT8, 1, (int64_t[]){DQ_N}, z, DQ_N);
  ob_node(&b, "DequantizeLinear", "W,s,z", "wf");
  ob_attr_int(&b, "axis", 1);
  ob_node(&b, "MatMul", "x,wf", "y");
  ob_output(&b, "y");
  size_t len;
  unsigned char *bytes = ob_finish(&b, &len);
  /* reference, in double, from the stored weights */
  double *ref = calloc(DQ_N, sizeof(double)),
         *mag = calloc(DQ_N, sizeof(double));
  if (!ref || !mag)
    abort();
  for (int k = 0; k < DQ_K; k++)
    for (int j = 0; j < DQ_N; j++) {
      double t = (double)x[k] * ((double)w[(size_t)k * DQ_N + j] - z[j]) * s[j];
      ref[j] += t;
      mag[j] += fabs(t);
    }
  free(w);
  char path[] = "/tmp/adv_load_cheap_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0)
    return;
  FILE *f = fdopen(fd, "wb");
  CHECK(f && fwrite(bytes, 1, len, f) == len);
  fclose(f);
  free(bytes);
  /* only what loading, planning and running take counts from here */
  CHECK_EQ_INT(reset_peak_rss(), 0);
  long base_kb = proc_status_kb("VmRSS:");
  double t0 = now();
  adv_err err = {{0}};
  adv_model *m = NULL;
  int rc = adv_model_load_file(path, adv_load_default_params(), &m, &err);
  unlink(path);
  CHECK_EQ_INT(rc, ADV_OK);
  if (rc) {
    fprintf(stderr, "load: %s\n", err.msg);
    return;
  }
  adv_session *ss = NULL;
  rc = adv_session_init(m, adv_session_default_params(), &ss, &err);
  CHECK_EQ_INT(rc, ADV_OK);
  double t_plan = now() - t0;
  /* planned: the float weights (4 W) stay, the stored copy (1 W) went */
  size_t held = (size_t)(proc_status_kb("VmRSS:") - base_kb) * 1024;
  fprintf(stderr, "after planning: RSS +%.1f MiB\n", (double)held / (1 << 20));
  CHECK(held < 4 * BIG_WEIGHTS + BIG_WEIGHTS / 2);
  float *y = malloc(sizeof(float) * DQ_N);
  if (!rc) {
    const float *in[1] = {x};
    void *out[1] = {y};
    CHECK_EQ_INT(adv_session_run(ss, in, out, NULL, &err), ADV_OK);
  }
  long peak_kb = proc_status_kb("VmHWM:");
  /* a second session shares the folded float weights (128 MiB) */
  long rss1 = proc_status_kb("VmRSS:");
  adv_session *s2 = NULL;
  CHECK_EQ_INT(adv_session_init(m, adv_session_default_params(), &s2, &err),
               ADV_OK);
  long grown2_kb = proc_status_kb("VmRSS:") - rss1;
  fprintf(stderr, "second session: RSS +%ld KiB\n", grown2_kb);
  CHECK(grown2_kb < 8 * 1024);
  float *y2 = malloc(sizeof(float) * DQ_N);
  if (s2) {
    const float *in[1] = {x};
    void *out[1] = {y2};
    CHECK_EQ_INT(adv_session_run(s2, in, out, NULL, &err), ADV_OK);
    CHECK(!rc && memcmp(y, y2, sizeof(float) * DQ_N) == 0);
  }
  free(y2);
  adv_session_free(s2);
  adv_session_free(ss);
  adv_model_free(m);
  size_t grown = (size_t)(peak_kb - base_kb) * 1024;
  fprintf(stderr,
          "load+plan %.3f s; peak RSS grew by %.1f MiB (%.2f x the "
          "uint8 weights)\n",
          t_plan, (double)grown / (1 << 20), (double)grown / BIG_WEIGHTS);
  CHECK(base_kb > 0 && peak_kb > base_kb);
  CHECK(grown < 6 * BIG_WEIGHTS);
  /* float32 accumulation: error relative to the sum of |terms| */
  double worst = 0;
  for (int j = 0; !rc && j < DQ_N; j++) {
    double d = fabs((double)y[j] - ref[j]) / (mag[j] + 1e-30);
    worst = d > worst ? d : worst;
  }
  if (worst >= 1e-5)
    fprintf(stderr, "worst error %.3g of the terms' magnitude\n", worst);
  CHECK(worst < 1e-5);
  free(y);
  free(ref);
  free(mag);
  free(x);
  free(s);
  free(z);
}

/* Runs a model with one input x (n zeros) and n_out outputs of n floats
 * each into y[k]; returns the status. */
static int run_zeros(const unsigned char *bytes, size_t len, int64_t n,
                     int n_out, float **y) {
  adv_model *m = NULL;
  adv_session *s = NULL;
  adv_err err = {{0}};
  int rc = adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err);
  if (!rc)
    rc = adv_session_init(m, adv_session_default_params(), &s, &err);
  float *x = calloc((size_t)n, sizeof(float));
  if (!rc) {
    const float *in[1] = {x};
    rc = adv_session_run(s, in, (void *const *)y, NULL, &err);
  }
  (void)n_out;
  if (rc)
    fprintf(stderr, "run: %s\n", err.msg);
  free(x);
  adv_session_free(s);
  adv_model_free(m);
  return rc;
}

/* Appends y = Cast(x, to). */
static void cast(ob_model *b, const char *x, int to, const char *y) {
  ob_node(b, "Cast", x, y);
  ob_attr_int(b, "to", to);
}

/* Weights kept as stored give exactly their values, whether a kernel reads
 * them as stored (Cast, DequantizeLinear) or the planner widens them for
 * another op (Add): float16 / bfloat16 bit patterns whose values follow
 * from the formats' definitions (1 sign, 5/8 exponent bits with bias
 * 15/127, 10/7 fraction bits; 0x0001 a float16 subnormal, 2^-24), int8 and
 * uint8 values. */
TEST(stored_types_read_exactly) {
  enum { N = 5, OT_INT8 = 3, OT_FLOAT16 = 10, OT_BFLOAT16 = 16 };
  const uint16_t h[N] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x3555};
  const float h_want[N] = {1.f, -2.f, 5.9604644775390625e-08f, 65504.f,
                           0.333251953125f};
  const uint16_t bf[N] = {0x3F80, 0xC0A0, 0x3EAB, 0x7F7F, 0x8000};
  const float bf_want[N] = {1.f, -5.f, 0.333984375f, 3.3895313892515355e38f,
                            -0.f};
  const int8_t i8[N] = {-128, -3, 0, 5, 127};
  const uint8_t u8[N] = {0, 1, 128, 200, 255};
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 1, (int64_t[]){N});
  ob_init_raw(&b, "H", OT_FLOAT16, 1, (int64_t[]){N}, h, sizeof(h));
  ob_init_raw(&b, "H2", OT_FLOAT16, 1, (int64_t[]){N}, h, sizeof(h));
  ob_init_raw(&b, "B", OT_BFLOAT16, 1, (int64_t[]){N}, bf, sizeof(bf));
  ob_init_raw(&b, "I", OT_INT8, 1, (int64_t[]){N}, i8, sizeof(i8));
  ob_init_raw(&b, "U", OT_UINT8, 1, (int64_t[]){N}, u8, sizeof(u8));
  ob_init_f32(&b, "s", 0, NULL, (float[]){0.5f});
  ob_init_raw(&b, "z", OT_INT8, 0, NULL, (int8_t[]){-3}, 1);
  /* float16 and bfloat16 graphs around float I/O: widened for Add */
  cast(&b, "x", OT_FLOAT16, "x16");
  ob_node(&b, "Add", "x16,H", "h16");
  cast(&b, "h16", 1, "yh");
  cast(&b, "x", OT_BFLOAT16, "xb");
  ob_node(&b, "Add", "xb,B", "b16");
  cast(&b, "b16", 1, "yb");
  /* read as stored: DequantizeLinear (int8), Cast (uint8, float16) */
  ob_node(&b, "DequantizeLinear", "I,s,z", "dq");
  ob_node(&b, "Add", "x,dq", "yi");
  cast(&b, "U", 1, "uf");
  ob_node(&b, "Add", "x,uf", "yu");
  cast(&b, "H2", 1, "hf");
  ob_node(&b, "Add", "x,hf", "yc");
  /* int8 widened for an integer Add (after DequantizeLinear read it) */
  ob_node(&b, "Add", "I,I", "i2");
  cast(&b, "i2", 1, "i2f");
  ob_node(&b, "Add", "x,i2f", "yw");
  const char *outs[] = {"yh", "yb", "yi", "yu", "yc", "yw"};
  enum { NO = sizeof(outs) / sizeof(outs[0]) };
  for (int k = 0; k < NO; k++)
    ob_output(&b, outs[k]);
  size_t len;
  unsigned char *bytes = ob_finish(&b, &len);
  float y[NO][N], *yp[NO];
  for (int k = 0; k < NO; k++)
    yp[k] = y[k];
  int rc = run_zeros(bytes, len, N, NO, yp);
  free(bytes);
  CHECK_EQ_INT(rc, ADV_OK);
  if (rc)
    return;
  for (int i = 0; i < N; i++) {
    CHECK(y[0][i] == h_want[i]);
    CHECK(y[1][i] == bf_want[i]);
    CHECK(y[2][i] == (float)(i8[i] + 3) * 0.5f);
    CHECK(y[3][i] == (float)u8[i]);
    CHECK(y[4][i] == h_want[i]);
    CHECK(y[5][i] == 2.f * (float)i8[i]);
  }
}

/* Sessions of one model share the widened copy of a float16 weight: a
 * second session adds far less than the 32 MiB float copy to the RSS, and
 * both compute y = x @ W exactly as a reference from the float16 values
 * (powers of two: every product and sum below is exact in float). */
TEST(sessions_share_widened_weights) {
  enum { K = 2048, NC = 4096, OT_FLOAT16 = 10 };
  uint16_t *h = malloc(sizeof(uint16_t) * K * NC);
  float *x = malloc(sizeof(float) * K), *ref = calloc(NC, sizeof(float));
  float *y1 = malloc(sizeof(float) * NC), *y2 = malloc(sizeof(float) * NC);
  if (!h || !x || !ref || !y1 || !y2)
    abort();
  /* W[k][j] = +-2^(e - 15), e in 10..20 (float16 normals) */
  for (size_t i = 0; i < (size_t)K * NC; i++)
    h[i] = (uint16_t)((i % 3 == 0 ? 0x8000u : 0u) | (10u + i % 11u) << 10);
  for (int k = 0; k < K; k++)
    x[k] = k % 5 == 0 ? 1.f : 0.f;
  for (int k = 0; k < K; k += 5)
    for (int j = 0; j < NC; j++) {
      size_t i = (size_t)k * NC + (size_t)j;
      ref[j] += (i % 3 == 0 ? -1.f : 1.f) * ldexpf(1.f, (int)(i % 11) - 5);
    }
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 2, (int64_t[]){1, K});
  ob_init_raw(&b, "W", OT_FLOAT16, 2, (int64_t[]){K, NC}, h,
              sizeof(uint16_t) * K * NC);
  free(h);
  ob_node(&b, "MatMul", "x,W", "y");
  ob_output(&b, "y");
  size_t len;
  unsigned char *bytes = ob_finish(&b, &len);
  adv_model *m = NULL;
  adv_session *s1 = NULL, *s2 = NULL;
  adv_err err = {{0}};
  int rc = adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err);
  free(bytes);
  CHECK_EQ_INT(rc, ADV_OK);
  if (!rc)
    rc = adv_session_init(m, adv_session_default_params(), &s1, &err);
  long rss1 = proc_status_kb("VmRSS:");
  if (!rc)
    rc = adv_session_init(m, adv_session_default_params(), &s2, &err);
  long grown_kb = proc_status_kb("VmRSS:") - rss1;
  CHECK_EQ_INT(rc, ADV_OK);
  if (rc) {
    fprintf(stderr, "%s\n", err.msg);
  } else {
    const float *in[1] = {x};
    void *o1[1] = {y1}, *o2[1] = {y2};
    CHECK_EQ_INT(adv_session_run(s1, in, o1, NULL, &err), ADV_OK);
    CHECK_EQ_INT(adv_session_run(s2, in, o2, NULL, &err), ADV_OK);
    int bad = 0;
    for (int j = 0; j < NC; j++)
      bad += y1[j] != ref[j] || y2[j] != ref[j];
    CHECK_EQ_INT(bad, 0);
  }
  fprintf(stderr, "second session: RSS +%ld KiB\n", grown_kb);
  CHECK(grown_kb < 8 * 1024); /* the float copy is 32 MiB */
  adv_session_free(s1);
  adv_session_free(s2);
  adv_model_free(m);
  free(x);
  free(ref);
  free(y1);
  free(y2);
}

int main(void) {
  RUN(unsupported_refused_before_weights);
  RUN(weights_cap_counts_stored_bytes);
  RUN(uint8_weights_stay_uint8);
  RUN(stored_types_read_exactly);
  RUN(sessions_share_widened_weights);
  return harness_report();
}
