/*
 * load_cheap.c - loading refuses early and counts weights as stored
 * (issue 13 item 6):
 *   - a model with a large uint8 initializer and an op we lack is refused,
 * naming the op, before any weight is converted: the load adds almost nothing
 * to the peak RSS (converting the weights to int64 would add 8 bytes per
 * weight) and takes well under a second;
 *   - the weights cap counts bytes as stored: 4 MiB of uint8 weights load
 *     under a 5 MiB cap and are refused under a 3 MiB one.
 */
#include "harness.h"
#include "onnx_build.h"

#include "adv/adv.h"

#include <sys/resource.h>

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

int main(void) {
  RUN(unsupported_refused_before_weights);
  RUN(weights_cap_counts_stored_bytes);
  return harness_report();
}
