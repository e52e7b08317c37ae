/*
 * test_rewrite.c - the plan-time graph rewrites (src/engine/core/fuse.c)
 * and gradient stores (bw_assign) change how a model is computed, not what:
 * every session here is planned twice, as written (no_rewrite = 1) and
 * rewritten, and the logits, input gradients and weight gradients must
 * agree to float32 rounding. The reference side runs every op as the ONNX
 * file states it, and those ops are themselves checked against finite
 * differences (grad.fd), PyTorch (grad.torch) and the ONNX backend tests.
 *
 * Tolerances: the rewritten side folds BatchNorm into the conv weights
 * (w*s rounded once instead of conv then scale), so values differ by a few
 * float32 ulps per layer: logits within 1e-4 * (1 + max|z|), gradients
 * within 1e-3 * max|g| with cosine >= 1 - 1e-6. A ReLU input within
 * rounding of 0 could flip branch; the inputs are random and the chance of
 * landing within 1e-6 of a kink is negligible at these sizes.
 *
 * Every case also checks that the rewrites really happened (fewer runtime
 * nodes), so the comparison cannot silently compare a graph with itself.
 *
 * Usage: test_rewrite FIXTURE_DIR
 */
#include "adv/adv.h"
#include "grad/onnx_build.h"
#include "harness.h"

#include <stdint.h>

static const char *FIX;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform [0, 1) */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)(rng >> 40) / (float)(1 << 24);
}
static void fill(float *v, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; i++)
    v[i] = lo + (hi - lo) * frand();
}

typedef struct side {
  adv_session *s;
  float *z, *dx, *loss;
  int nodes;
} side;

static int plan(const adv_model *m, int batch, int rewrite, int wgrad, side *o) {
  adv_session_params sp = adv_session_default_params();
  sp.batch = batch;
  sp.threads = 2;
  sp.logits = 1;
  sp.grad = 1;
  sp.weight_grad = wgrad;
  sp.no_rewrite = !rewrite;
  adv_err err = {{0}};
  if (adv_session_init(m, sp, &o->s, &err)) {
    fprintf(stderr, "plan: %s\n", err.msg);
    return -1;
  }
  o->nodes = adv_session_num_runtime_nodes(o->s);
  return 0;
}

static double max_abs(const float *a, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    m = fmax(m, fabs(a[i]));
  return m;
}

/* Max |a-b| relative to scale, and cosine of a and b. */
static void compare(const float *a, const float *b, int64_t n, double *rel, double *cosv) {
  double d = 0, ab = 0, aa = 0, bb = 0, sc = fmax(max_abs(a, n), 1e-30);
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  *rel = d / sc;
  *cosv = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1 : 0);
}

/*
 * Runs forward + CE backward on both plans of model m at batch N with
 * input x (N x per) and classes K; checks agreement; returns the node
 * counts (as written, rewritten) through *n0, *n1. Weight gradients of
 * `wname` compared too when wgrad.
 */
static void both(const adv_model *m, int N, int64_t per, int K, const float *x, int wgrad,
                 const char *wname, int *n0, int *n1) {
  side a = {0}, b = {0};
  CHECK(plan(m, N, 0, wgrad, &a) == 0);
  CHECK(plan(m, N, 1, wgrad, &b) == 0);
  if (!a.s || !b.s)
    goto out;
  *n0 = a.nodes;
  *n1 = b.nodes;
  int64_t *y = malloc(sizeof(int64_t) * (size_t)N);
  side *sd[2] = {&a, &b};
  for (int k = 0; k < 2; k++) {
    sd[k]->z = malloc(sizeof(float) * (size_t)(N * K));
    sd[k]->dx = malloc(sizeof(float) * (size_t)(N * per));
    sd[k]->loss = malloc(sizeof(float) * (size_t)N);
  }
  for (int i = 0; i < N; i++)
    y[i] = i % K;
  adv_err err = {{0}};
  for (int k = 0; k < 2; k++) {
    /* twice: buffers that are stored (not zeroed) must not keep state */
    for (int rep = 0; rep < 2; rep++) {
      int rc = adv_session_grad(sd[k]->s, x, adv_loss_default_params(ADV_LOSS_CE), y, NULL,
                                sd[k]->z, sd[k]->loss, sd[k]->dx, &err);
      CHECK(rc == 0);
      if (rc)
        fprintf(stderr, "grad: %s\n", err.msg);
    }
  }
  double rel, cosv;
  compare(a.z, b.z, (int64_t)N * K, &rel, &cosv);
  double zs = max_abs(a.z, (int64_t)N * K);
  CHECK(rel * zs <= 1e-4 * (1 + zs));
  compare(a.dx, b.dx, (int64_t)N * per, &rel, &cosv);
  if (!(rel <= 1e-3 && cosv >= 1 - 1e-6))
    fprintf(stderr, "  dx: rel %.3g cos %.9f (N=%d)\n", rel, cosv, N);
  CHECK(rel <= 1e-3);
  CHECK(cosv >= 1 - 1e-6);
  CHECK(max_abs(a.dx, (int64_t)N * per) > 0);
  if (wgrad && wname) {
    int64_t n = 0, n2 = 0;
    const float *ga = adv_session_weight_grad(a.s, wname, &n);
    const float *gb = adv_session_weight_grad(b.s, wname, &n2);
    CHECK(ga && gb && n == n2 && n > 0);
    if (ga && gb && n == n2) {
      compare(ga, gb, n, &rel, &cosv);
      if (!(rel <= 1e-3 && cosv >= 1 - 1e-6))
        fprintf(stderr, "  dW(%s): rel %.3g cos %.9f\n", wname, rel, cosv);
      CHECK(rel <= 1e-3);
      CHECK(cosv >= 1 - 1e-6);
    }
  }
  free(y);
  for (int k = 0; k < 2; k++) {
    free(sd[k]->z);
    free(sd[k]->dx);
    free(sd[k]->loss);
  }
out:
  adv_session_free(a.s);
  adv_session_free(b.s);
}

/* Finishes the builder's model and loads it; NULL (message printed) on
 * failure. */
static adv_model *load_built(ob_model *b) {
  size_t len = 0;
  unsigned char *bytes = ob_finish(b, &len);
  adv_model *m = NULL;
  adv_err err = {{0}};
  if (adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err))
    fprintf(stderr, "load: %s\n", err.msg);
  free(bytes);
  return m;
}

/*
 * x[N,3,10,10] -> Conv1(+b) -> BN1 -> Relu -> r1
 * r1 -> Pad(0) -> Conv2 -> BN2 -> Relu -> r2 ; s = Add(r2, r1)
 * s -> Relu -> MaxPool 2x2 (10x10: exact tiling, gradient stored)
 *   -> Identity -> Flatten -> Gemm(W3) -> out[N,10]
 * Rewritten: Conv1(BN, Relu), Conv2(BN, Relu), Add, MaxPool, Relu,
 * Flatten, Gemm = 7 of 13 nodes.
 */
static adv_model *synthetic(void) {
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 4, (int64_t[]){-1, 3, 10, 10});
  float w1[8 * 3 * 9], b1[8], w2[8 * 8 * 9], w3[10 * 200], b3[10];
  float g[2][8], be[2][8], mu[2][8], va[2][8];
  fill(w1, 8 * 27, -0.5f, 0.5f);
  fill(b1, 8, -0.2f, 0.2f);
  fill(w2, 8 * 72, -0.3f, 0.3f);
  fill(w3, 2000, -0.2f, 0.2f);
  fill(b3, 10, -0.1f, 0.1f);
  for (int k = 0; k < 2; k++) {
    fill(g[k], 8, 0.5f, 1.5f);
    fill(be[k], 8, -0.3f, 0.3f);
    fill(mu[k], 8, -0.2f, 0.2f);
    fill(va[k], 8, 0.5f, 2.f);
  }
  ob_init_f32(&b, "W1", 4, (int64_t[]){8, 3, 3, 3}, w1);
  ob_init_f32(&b, "B1", 1, (int64_t[]){8}, b1);
  ob_init_f32(&b, "W2", 4, (int64_t[]){8, 8, 3, 3}, w2);
  ob_init_f32(&b, "W3", 2, (int64_t[]){10, 200}, w3);
  ob_init_f32(&b, "B3", 1, (int64_t[]){10}, b3);
  const char *bn[2][4] = {{"g1", "be1", "mu1", "va1"}, {"g2", "be2", "mu2", "va2"}};
  for (int k = 0; k < 2; k++) {
    ob_init_f32(&b, bn[k][0], 1, (int64_t[]){8}, g[k]);
    ob_init_f32(&b, bn[k][1], 1, (int64_t[]){8}, be[k]);
    ob_init_f32(&b, bn[k][2], 1, (int64_t[]){8}, mu[k]);
    ob_init_f32(&b, bn[k][3], 1, (int64_t[]){8}, va[k]);
  }
  ob_init_i64(&b, "zp", 1, (int64_t[]){8}, (int64_t[]){0, 0, 0, 0, 0, 0, 0, 0});
  ob_node(&b, "Conv", "x,W1,B1", "c1");
  ob_attr_ints(&b, "pads", 4, (int64_t[]){1, 1, 1, 1});
  ob_node(&b, "BatchNormalization", "c1,g1,be1,mu1,va1", "n1");
  ob_attr_float(&b, "epsilon", 1e-3f);
  ob_node(&b, "Relu", "n1", "r1");
  ob_node(&b, "Pad", "r1,zp", "pd");
  ob_node(&b, "Conv", "pd,W2", "c2");
  ob_attr_ints(&b, "pads", 4, (int64_t[]){1, 1, 1, 1});
  ob_node(&b, "BatchNormalization", "c2,g2,be2,mu2,va2", "n2");
  ob_node(&b, "Relu", "n2", "r2");
  ob_node(&b, "Add", "r2,r1", "s");
  ob_node(&b, "Relu", "s", "rs");
  ob_node(&b, "MaxPool", "rs", "p");
  ob_attr_ints(&b, "kernel_shape", 2, (int64_t[]){2, 2});
  ob_attr_ints(&b, "strides", 2, (int64_t[]){2, 2});
  ob_node(&b, "Identity", "p", "q");
  ob_node(&b, "Flatten", "q", "f");
  ob_node(&b, "Gemm", "f,W3,B3", "out");
  ob_attr_int(&b, "transB", 1);
  ob_output(&b, "out");
  return load_built(&b);
}

TEST(synthetic_graph) {
  adv_model *m = synthetic();
  CHECK(m != NULL);
  if (!m)
    return;
  int batches[3] = {1, 3, 16}; /* 16: oneDNN convolutions (batch >= 8) */
  for (int i = 0; i < 3; i++) {
    int N = batches[i];
    float *x = malloc(sizeof(float) * (size_t)(N * 300));
    fill(x, N * 300, 0.f, 1.f);
    int n0 = 0, n1 = 0;
    both(m, N, 300, 10, x, 0, NULL, &n0, &n1);
    CHECK_EQ_INT(n0, 13);
    CHECK_EQ_INT(n1, 7);
    /* weight gradients: BatchNorm stays (dW of the stored weights), so its
     * Relu is not next to a Conv either: only Pad and Identity go */
    both(m, N, 300, 10, x, 1, "W1", &n0, &n1);
    both(m, N, 300, 10, x, 1, "W2", &n0, &n1);
    CHECK_EQ_INT(n0, 13);
    CHECK_EQ_INT(n1, 11);
    free(x);
  }
  adv_model_free(m);
}

/* The fixture models: Fashion (Conv-BN-Relu, a zero Pad) and MNIST
 * (Conv-Relu-MaxPool: the swap, node count unchanged). */
TEST(fixture_models) {
  const char *names[2] = {"fashion_resnet.onnx", "mnist_cnn.onnx"};
  for (int f = 0; f < 2; f++) {
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", FIX, names[f]);
    adv_model *m = NULL;
    adv_err err = {{0}};
    int rc = adv_model_load_file(p, adv_load_default_params(), &m, &err);
    CHECK(rc == 0);
    if (rc) {
      fprintf(stderr, "load %s: %s\n", p, err.msg);
      continue;
    }
    int batches[2] = {2, 32};
    for (int i = 0; i < 2; i++) {
      int N = batches[i];
      float *x = malloc(sizeof(float) * (size_t)(N * 784));
      fill(x, N * 784, 0.f, 1.f);
      int n0 = 0, n1 = 0;
      both(m, N, 784, 10, x, 0, NULL, &n0, &n1);
      if (f == 0)
        CHECK(n1 <= n0 - 10); /* 5 BN + 4 Relu + 1 Pad absorbed */
      free(x);
    }
    adv_model_free(m);
  }
}

/*
 * The vectorized 2x2 max pool (pool.c) against the rule written out here:
 * a window's value and gradient go to its first maximum in row-major order,
 * and a NaN takes the window (v > m || v is NaN). Widths 14 and 32 tile
 * exactly (gradient stored, masked tail blocks for 14), 15 does not (one
 * column dropped, gradient accumulated); NaNs sit in vector blocks and in
 * tails, ties and -0/+0 pairs are planted too.
 */
TEST(maxpool_fast_path) {
  int widths[3] = {14, 15, 32};
  for (int wi = 0; wi < 3; wi++) {
    int C = 3, H = 6, W = widths[wi], OH = H / 2, OW = W / 2;
    ob_model b;
    ob_init(&b, 13);
    ob_input(&b, "x", 4, (int64_t[]){1, C, H, W});
    ob_node(&b, "MaxPool", "x", "p");
    ob_attr_ints(&b, "kernel_shape", 2, (int64_t[]){2, 2});
    ob_attr_ints(&b, "strides", 2, (int64_t[]){2, 2});
    ob_node(&b, "Flatten", "p", "out");
    ob_output(&b, "out");
    adv_model *m = load_built(&b);
    adv_err err = {{0}};
    CHECK(m != NULL);
    if (!m)
      continue;
    adv_session_params sp = adv_session_default_params();
    sp.grad = 1;
    adv_session *s = NULL;
    CHECK(adv_session_init(m, sp, &s, &err) == 0);
    int64_t nx = (int64_t)C * H * W, ny = (int64_t)C * OH * OW;
    float *x = malloc(sizeof(float) * (size_t)nx), *y = malloc(sizeof(float) * (size_t)ny);
    float *dz = malloc(sizeof(float) * (size_t)ny), *dx = malloc(sizeof(float) * (size_t)nx);
    float *ry = malloc(sizeof(float) * (size_t)ny), *rdx = calloc((size_t)nx, sizeof(float));
    fill(x, nx, -1.f, 1.f);
    fill(dz, ny, 0.5f, 1.5f);
    for (int64_t i = 0; i < nx; i += 37) /* NaNs: vector blocks and tails */
      x[i] = NAN;
    x[5] = x[4];                    /* a tie inside a window */
    x[2 * W + 8] = 0.f;             /* -0 / +0 */
    x[2 * W + 9] = -0.f;
    x[3 * W + 8] = -1.f;
    x[3 * W + 9] = -1.f;
    for (int c = 0; c < C; c++)
      for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
          int64_t base = (int64_t)c * H * W, idx[4] = {base + 2 * oh * W + 2 * ow,
                                                        base + 2 * oh * W + 2 * ow + 1,
                                                        base + (2 * oh + 1) * W + 2 * ow,
                                                        base + (2 * oh + 1) * W + 2 * ow + 1};
          int best = 0;
          float mv = x[idx[0]];
          for (int j = 1; j < 4; j++)
            if (x[idx[j]] > mv || isnan(x[idx[j]])) {
              best = j;
              mv = x[idx[j]];
            }
          int64_t o = ((int64_t)c * OH + oh) * OW + ow;
          ry[o] = mv;
          rdx[idx[best]] += dz[o];
        }
    if (s) {
      CHECK(adv_session_forward(s, x, y, &err) == 0);
      CHECK(adv_session_backward_dz(s, dz, dx, NULL, &err) == 0);
      int bad = 0;
      for (int64_t i = 0; i < ny; i++)
        bad += !(y[i] == ry[i] || (isnan(y[i]) && isnan(ry[i])));
      for (int64_t i = 0; i < nx; i++)
        bad += dx[i] != rdx[i];
      if (bad)
        fprintf(stderr, "  width %d: %d mismatches\n", W, bad);
      CHECK(bad == 0);
    }
    adv_session_free(s);
    adv_model_free(m);
    free(x), free(y), free(dz), free(dx), free(ry), free(rdx);
  }
}

/* MaxPool windows that lie entirely in the padding give -inf; Relu then
 * MaxPool keeps that -inf, so the swap must not happen there (it would give
 * 0). Kernel 1 with pads 1, and kernel 2 stride 2 with pads 2: the plans
 * as written and rewritten agree on every output. A 2x2 pool without pads
 * on the same input is swapped (checked through the values too). */
TEST(swap_needs_nonempty_windows) {
  struct { int k, s, pad; } cs[3] = {{1, 1, 1}, {2, 2, 2}, {2, 2, 0}};
  for (int ci = 0; ci < 3; ci++) {
    ob_model b;
    ob_init(&b, 13);
    ob_input(&b, "x", 4, (int64_t[]){1, 1, 4, 4});
    ob_node(&b, "Relu", "x", "r");
    ob_node(&b, "MaxPool", "r", "p");
    ob_attr_ints(&b, "kernel_shape", 2, (int64_t[]){cs[ci].k, cs[ci].k});
    ob_attr_ints(&b, "strides", 2, (int64_t[]){cs[ci].s, cs[ci].s});
    ob_attr_ints(&b, "pads", 4, (int64_t[]){cs[ci].pad, cs[ci].pad, cs[ci].pad, cs[ci].pad});
    ob_node(&b, "Flatten", "p", "out");
    ob_output(&b, "out");
    adv_model *m = load_built(&b);
    adv_err err = {{0}};
    CHECK(m != NULL);
    if (!m)
      continue;
    float x[16], y[2][64];
    fill(x, 16, -1.f, 1.f);
    int64_t ny = 0;
    for (int rw = 0; rw < 2; rw++) {
      adv_session_params sp = adv_session_default_params();
      sp.no_rewrite = !rw;
      adv_session *s = NULL;
      CHECK(adv_session_init(m, sp, &s, &err) == 0);
      int64_t d[ADV_MAX_DIMS];
      int nd = s ? adv_session_output_shape(s, 0, d) : 0;
      ny = nd == 2 ? d[1] : 0;
      CHECK(ny > 0 && ny <= 64);
      if (s && ny > 0 && ny <= 64)
        CHECK(adv_session_forward(s, x, y[rw], &err) == 0);
      adv_session_free(s);
    }
    int bad = 0, neginf = 0;
    for (int64_t i = 0; i < ny && i < 64; i++) {
      bad += !(y[0][i] == y[1][i]);
      neginf += isinf(y[0][i]) && y[0][i] < 0;
    }
    if (bad)
      fprintf(stderr, "  k %d pads %d: %d of %lld outputs differ\n", cs[ci].k, cs[ci].pad, bad,
              (long long)ny);
    CHECK(bad == 0);
    CHECK(cs[ci].pad ? neginf > 0 : neginf == 0); /* the case is really exercised */
    adv_model_free(m);
  }
}

/* A model whose plan needs more memory than the session cap fails with
 * ADV_ELIMIT and a message naming the sizes; the default cap lets it plan.
 * x[1,1,2048,2048] -> Relu -> Neg: 3 x 16 MiB of activations. */
TEST(memory_cap) {
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 4, (int64_t[]){-1, 1, 2048, 2048});
  ob_node(&b, "Relu", "x", "r");
  ob_node(&b, "Neg", "r", "out");
  ob_output(&b, "out");
  adv_model *m = load_built(&b);
  adv_err err = {{0}};
  CHECK(m != NULL);
  if (!m)
    return;
  adv_session_params sp = adv_session_default_params();
  sp.batch = 1;
  sp.max_bytes = 8u << 20;
  adv_session *s = NULL;
  CHECK(adv_session_init(m, sp, &s, &err) == ADV_ELIMIT);
  CHECK(s == NULL);
  if (!strstr(err.msg, "cap"))
    fprintf(stderr, "  message: %s\n", err.msg);
  CHECK(strstr(err.msg, "cap") != NULL);
  sp.max_bytes = 0; /* default: 4 GiB */
  CHECK(adv_session_init(m, sp, &s, &err) == 0);
  CHECK(s && adv_session_arena_bytes(s) >= (size_t)32 << 20);
  adv_session_free(s);
  sp.batch = 300; /* 300 x 32 MiB: over the default cap */
  s = NULL;
  CHECK(adv_session_init(m, sp, &s, &err) == ADV_ELIMIT);
  adv_model_free(m);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_rewrite FIXTURE_DIR\n");
    return 2;
  }
  FIX = argv[1];
  RUN(synthetic_graph);
  RUN(fixture_models);
  RUN(maxpool_fast_path);
  RUN(memory_cap);
  RUN(swap_needs_nonempty_windows);
  return harness_report();
}
