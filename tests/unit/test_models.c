/*
 * test_models.c - the fixture models against PyTorch (tools/make_fixtures.py):
 *   - logits on a fixed 64-image batch within 1e-4 (max abs) of PyTorch's;
 *   - the same number of correct predictions on the full 10k test set and
 *     the same predicted label on every sample whose PyTorch top-2 margin
 *     is above 1e-3 (ties below that may legitimately flip);
 *   - opset 9 export of the same weights gives the same logits;
 *   - a final Softmax is detected and the logits are served instead;
 *   - one session per batch size (symbolic batch dim), batch 1 == batch 64.
 * Usage: test_models FIXTURE_DIR MNIST_DIR FASHION_DIR
 */
#include "adv/adv.h"
#include "adv/data.h"
#include "harness.h"

#include <stdint.h>

static const char *FIX, *MNIST, *FASHION;

static void path(char *buf, size_t n, const char *dir, const char *f) {
  snprintf(buf, n, "%s/%s", dir, f);
}

static adv_model *load(const char *name) {
  char p[1024];
  path(p, sizeof(p), FIX, name);
  adv_model *m = NULL;
  adv_err err = {{0}};
  int rc = adv_model_load_file(p, adv_load_default_params(), &m, &err);
  if (rc)
    fprintf(stderr, "load %s: %s\n", p, err.msg);
  return m;
}

static adv_session *session(const adv_model *m, int batch, int logits) {
  adv_session_params sp = adv_session_default_params();
  sp.batch = batch;
  sp.threads = 2;
  sp.logits = logits;
  adv_session *s = NULL;
  adv_err err = {{0}};
  if (adv_session_init(m, sp, &s, &err))
    fprintf(stderr, "session: %s\n", err.msg);
  return s;
}

static int read_npz(const char *file, const char *member, adv_array *a) {
  char p[1024];
  path(p, sizeof(p), FIX, file);
  adv_err eb = {{0}};
  int rc = adv_npz_read_file(p, member, adv_io_default_limits(), a, &eb);
  if (rc)
    fprintf(stderr, "%s[%s]: %s\n", p, member, eb.msg);
  return rc;
}

static int read_npy(const char *file, adv_array *a) {
  char p[1024];
  path(p, sizeof(p), FIX, file);
  adv_err eb = {{0}};
  int rc = adv_npy_read_file(p, adv_io_default_limits(), a, &eb);
  if (rc)
    fprintf(stderr, "%s: %s\n", p, eb.msg);
  return rc;
}

/* Max |ours - torch| of the logits of `model` on `batch_file`. */
static double logits_diff(const char *model, const char *batch_file,
                          const char *ref_file, int logits_mode) {
  adv_model *m = load(model);
  adv_array x = {0}, ref = {0};
  double worst = 1e30;
  if (!m || read_npz(batch_file, "x", &x) || read_npy(ref_file, &ref))
    goto out;
  int64_t N = x.dims[0], C = ref.dims[1];
  adv_session *s = session(m, (int)N, logits_mode);
  if (!s)
    goto out;
  float *z = calloc((size_t)(N * C), sizeof(float));
  adv_err err = {{0}};
  if (adv_session_forward(s, x.data, z, &err) == 0) {
    worst = 0;
    for (int64_t i = 0; i < N * C; i++) {
      double d = fabs((double)z[i] - ((float *)ref.data)[i]);
      worst = d > worst ? d : worst;
    }
  } else {
    fprintf(stderr, "forward: %s\n", err.msg);
  }
  free(z);
  adv_session_free(s);
out:
  adv_array_free(&x);
  adv_array_free(&ref);
  adv_model_free(m);
  return worst;
}

TEST(mnist_logits_match_pytorch) {
  double d = logits_diff("mnist_cnn.onnx", "mnist_batch.npz", "mnist_cnn_logits.npy", 0);
  fprintf(stderr, "  mnist_cnn max |dlogit| = %.3g\n", d);
  CHECK(d <= 1e-4);
}

TEST(mnist_opset9_logits_match_pytorch) {
  double d = logits_diff("mnist_cnn_op9.onnx", "mnist_batch.npz", "mnist_cnn_logits.npy", 0);
  fprintf(stderr, "  mnist_cnn_op9 max |dlogit| = %.3g\n", d);
  CHECK(d <= 1e-4);
}

TEST(fashion_logits_match_pytorch) {
  double d = logits_diff("fashion_resnet.onnx", "fashion_batch.npz", "fashion_resnet_logits.npy", 0);
  fprintf(stderr, "  fashion_resnet max |dlogit| = %.3g\n", d);
  CHECK(d <= 1e-4);
}

TEST(softmax_model_probabilities_and_logits) {
  /* probabilities as exported, and the logits when asked */
  double dp = logits_diff("mnist_cnn_softmax.onnx", "mnist_batch.npz",
                          "mnist_cnn_softmax_probs.npy", 0);
  double dl = logits_diff("mnist_cnn_softmax.onnx", "mnist_batch.npz",
                          "mnist_cnn_logits.npy", 1);
  fprintf(stderr, "  softmax probs diff %.3g, logits diff %.3g\n", dp, dl);
  CHECK(dp <= 1e-5);
  CHECK(dl <= 1e-4);
  adv_model *m = load("mnist_cnn_softmax.onnx");
  CHECK(m && adv_model_output_is_probability(m) == 1);
  adv_model_free(m);
  m = load("mnist_cnn.onnx");
  CHECK(m && adv_model_output_is_probability(m) == 0);
  adv_model_free(m);
}

TEST(batch_one_equals_batch_many) {
  adv_model *m = load("fashion_resnet.onnx");
  adv_array x = {0};
  CHECK(m && read_npz("fashion_batch.npz", "x", &x) == 0);
  if (!m || !x.data)
    return;
  adv_session *s1 = session(m, 1, 0), *s8 = session(m, 8, 0);
  CHECK(s1 && s8);
  float z8[80], z1[10];
  adv_err err = {{0}};
  CHECK(adv_session_forward(s8, x.data, z8, &err) == 0);
  for (int i = 0; i < 8; i++) {
    CHECK(adv_session_forward(s1, (float *)x.data + i * 784, z1, &err) == 0);
    for (int c = 0; c < 10; c++)
      CHECK_NEAR(z1[c], z8[i * 10 + c], 1e-5);
  }
  adv_session_free(s1);
  adv_session_free(s8);
  adv_array_free(&x);
  adv_model_free(m);
}

/* Full 10k test set: same correct count as PyTorch, same labels where the
 * PyTorch margin is clear. */
static void full_testset(const char *model, const char *images,
                         const char *labels, const char *pred_file,
                         const char *margin_file, int64_t want_correct) {
  adv_model *m = load(model);
  adv_dataset ds = {0};
  adv_err eb = {{0}};
  adv_array pred = {0}, margin = {0};
  CHECK(m != NULL);
  int rc = adv_dataset_load(images, labels, adv_io_default_limits(), &ds, &eb);
  if (rc)
    fprintf(stderr, "dataset %s: %s\n", images, eb.msg);
  CHECK(rc == 0);
  CHECK(read_npy(pred_file, &pred) == 0);
  CHECK(read_npy(margin_file, &margin) == 0);
  if (!m || rc || !pred.data || !margin.data)
    goto out;
  int64_t N = ds.x.dims[0];
  CHECK_EQ_INT(N, 10000);
  int B = 500;
  adv_session *s = session(m, B, 0);
  float *z = malloc(sizeof(float) * (size_t)B * 10);
  int64_t correct = 0, differ = 0, clear_differ = 0;
  for (int64_t s0 = 0; s && s0 < N; s0 += B) {
    adv_err err = {{0}};
    CHECK(adv_session_forward(s, (float *)ds.x.data + s0 * 784, z, &err) == 0);
    for (int i = 0; i < B; i++) {
      int best = 0;
      for (int c = 1; c < 10; c++)
        if (z[i * 10 + c] > z[i * 10 + best])
          best = c;
      int64_t want = ((int64_t *)pred.data)[s0 + i];
      correct += best == ((int64_t *)ds.y.data)[s0 + i];
      if (best != want) {
        differ++;
        double mg = margin.dtype == ADV_DTYPE_F32 ? ((float *)margin.data)[s0 + i]
                                                  : ((double *)margin.data)[s0 + i];
        if (mg > 1e-3)
          clear_differ++;
      }
    }
  }
  fprintf(stderr, "  %s: %lld/10000 correct (PyTorch %lld), %lld labels differ\n",
          model, (long long)correct, (long long)want_correct, (long long)differ);
  CHECK_EQ_INT(correct, want_correct);
  CHECK_EQ_INT(clear_differ, 0);
  free(z);
  adv_session_free(s);
out:
  adv_array_free(&pred);
  adv_array_free(&margin);
  adv_dataset_free(&ds);
  adv_model_free(m);
}

static int64_t refs_correct(const char *key) {
  /* tiny scan of refs.json: "<key>": { ... "test_correct": N */
  char p[1024];
  path(p, sizeof(p), FIX, "refs.json");
  FILE *f = fopen(p, "r");
  if (!f)
    return -1;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  char k[128];
  snprintf(k, sizeof(k), "\"%s\": {", key);
  char *s = strstr(buf, k);
  if (!s)
    return -1;
  char *t = strstr(s, "\"test_correct\":");
  return t ? strtoll(t + 15, NULL, 10) : -1;
}

TEST(mnist_full_testset_matches_pytorch) {
  char im[1024], lb[1024];
  path(im, sizeof(im), MNIST, "t10k-images-idx3-ubyte");
  path(lb, sizeof(lb), MNIST, "t10k-labels-idx1-ubyte");
  full_testset("mnist_cnn.onnx", im, lb, "mnist_cnn_pred10k.npy",
               "mnist_cnn_margin10k.npy", refs_correct("mnist_cnn"));
}

TEST(fashion_full_testset_matches_pytorch) {
  char im[1024], lb[1024];
  path(im, sizeof(im), FASHION, "t10k-images-idx3-ubyte.gz");
  path(lb, sizeof(lb), FASHION, "t10k-labels-idx1-ubyte.gz");
  full_testset("fashion_resnet.onnx", im, lb, "fashion_resnet_pred10k.npy",
               "fashion_resnet_margin10k.npy", refs_correct("fashion_resnet"));
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: test_models FIXTURES MNIST_DIR FASHION_DIR\n");
    return 2;
  }
  FIX = argv[1];
  MNIST = argv[2];
  FASHION = argv[3];
  RUN(mnist_logits_match_pytorch);
  RUN(mnist_opset9_logits_match_pytorch);
  RUN(fashion_logits_match_pytorch);
  RUN(softmax_model_probabilities_and_logits);
  RUN(batch_one_equals_batch_many);
  RUN(mnist_full_testset_matches_pytorch);
  RUN(fashion_full_testset_matches_pytorch);
  return harness_report();
}
