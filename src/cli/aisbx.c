/*
 * aisbx - the AI Adversarial Sandbox command line.
 *
 *   aisbx predict --model M.onnx --data D [--labels L] [--batch N]
 *                 [--threads T] [--out preds.npy] [--logits logits.npy]
 *   aisbx grad --model M.onnx --data D --loss ce|cw|dlr|logit [--target K]
 *              [--n N] --out G.npy
 *   aisbx attack ... / aisbx evaluate ...   (attack_cmd.c)
 *   aisbx onnx-check DIR
 *   aisbx version
 *
 * Exit codes: 0 success, 1 mismatch (onnx-check) or runtime failure,
 * 2 invalid / unsupported input or usage error.
 */
#include "adv/adv.h"
#include "adv/data.h"
#include "adv/evaluate.h"
#include "adv/threading.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------- onnx-check ---------------- */

/* snprintf into a PATH_MAX-sized buffer; returns -1 when truncated. */
static int pathf(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pathf(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return (w < 0 || (size_t)w >= n) ? -1 : 0;
}

static int read_file(const char *path, void **buf, size_t *len, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  struct stat st;
  if (fstat(fileno(f), &st) || (size_t)st.st_size > cap) {
    fclose(f);
    return -1;
  }
  *len = (size_t)st.st_size;
  *buf = malloc(*len + 1);
  if (!*buf || fread(*buf, 1, *len, f) != *len) {
    free(*buf);
    fclose(f);
    return -1;
  }
  fclose(f);
  return 0;
}

static int load_pb(const char *path, adv_array *a, adv_err *err) {
  void *buf;
  size_t len;
  if (read_file(path, &buf, &len, (size_t)1 << 30)) {
    snprintf(err->msg, sizeof(err->msg), "cannot read %s", path);
    return ADV_EIO;
  }
  int rc = adv_tensorproto_read(buf, len, a, err);
  free(buf);
  return rc;
}

static int count_files(const char *dir, const char *prefix) {
  int n = 0;
  char path[4096];
  for (;;) {
    struct stat st;
    pathf(path, sizeof(path), "%s/%s_%d.pb", dir, prefix, n);
    if (stat(path, &st))
      return n;
    n++;
  }
}

/* Runs one test_data_set directory; returns 0 match, 1 mismatch, 2 error. */
static int check_set(const adv_model *m, const char *set, adv_err *err) {
  int nin = count_files(set, "input"), nout = count_files(set, "output");
  if (nin > 16 || nout > 16 || nout == 0) {
    fprintf(stderr, "%s: unexpected number of inputs/outputs\n", set);
    return 2;
  }
  adv_array in[16], ref[16];
  memset(in, 0, sizeof(in));
  memset(ref, 0, sizeof(ref));
  adv_binding b[16];
  int rc = 0, status = 0;
  adv_session *s = NULL;
  void *outs[16] = {0};
  char path[4096];
  for (int i = 0; i < nin; i++) {
    pathf(path, sizeof(path), "%s/input_%d.pb", set, i);
    if ((rc = load_pb(path, &in[i], err))) {
      status = 2;
      goto done;
    }
  }
  for (int i = 0; i < nout; i++) {
    pathf(path, sizeof(path), "%s/output_%d.pb", set, i);
    if ((rc = load_pb(path, &ref[i], err))) {
      status = 2;
      goto done;
    }
  }
  /* test inputs map to graph inputs in order; integer ones become
   * session constants so shape arithmetic folds */
  int ngi = adv_model_num_inputs(m);
  if (ngi != nin) {
    snprintf(err->msg, sizeof(err->msg), "model has %d inputs, test data %d",
             ngi, nin);
    status = 2;
    goto done;
  }
  for (int i = 0; i < nin; i++) {
    b[i].name = adv_model_input_name(m, i);
    b[i].value = &in[i];
    b[i].as_constant = in[i].dtype != ADV_DTYPE_F32;
  }
  adv_session_params sp = adv_session_default_params();
  sp.threads = 2;
  sp.bindings = b;
  sp.n_bindings = nin;
  if ((rc = adv_session_init(m, sp, &s, err))) {
    status = 2;
    goto done;
  }
  if (adv_session_num_outputs(s) != nout) {
    snprintf(err->msg, sizeof(err->msg), "model has %d outputs, test data %d",
             adv_session_num_outputs(s), nout);
    status = 2;
    goto done;
  }
  const float *rin[16];
  int k = 0;
  for (int i = 0; i < nin; i++)
    if (!b[i].as_constant)
      rin[k++] = in[i].data;
  for (int i = 0; i < nout; i++) {
    outs[i] = calloc((size_t)adv_array_numel(&ref[i]) + 1, 8);
    if (!outs[i]) {
      status = 2;
      goto done;
    }
  }
  if ((rc = adv_session_run(s, rin, outs, NULL, err))) {
    status = 2;
    goto done;
  }
  for (int i = 0; i < nout; i++) {
    int64_t dims[ADV_MAX_DIMS];
    int nd = adv_session_output_shape(s, i, dims);
    int same = nd == ref[i].ndim;
    for (int d = 0; same && d < nd; d++)
      same = dims[d] == ref[i].dims[d];
    if (!same) {
      printf("MISMATCH %s output %d: shape differs (rank %d vs %d)\n", set, i,
             nd, ref[i].ndim);
      status = 1;
      continue;
    }
    adv_dtype dt = adv_session_output_dtype(s, i);
    int64_t n = adv_array_numel(&ref[i]), worst = -1;
    double worst_excess = 0, wa = 0, wb = 0;
    for (int64_t e = 0; e < n; e++) {
      double got, want;
      if (dt == ADV_DTYPE_F32)
        got = ((float *)outs[i])[e];
      else
        got = (double)((int64_t *)outs[i])[e];
      if (ref[i].dtype == ADV_DTYPE_F32)
        want = ((float *)ref[i].data)[e];
      else
        want = (double)((int64_t *)ref[i].data)[e];
      if (isnan(want) && isnan(got))
        continue;
      if (isinf(want) && got == want)
        continue;
      double tol = 1e-5 + 1e-3 * fabs(want);
      double excess = fabs(got - want) - tol;
      if (!(excess <= 0) &&
          (worst < 0 || excess > worst_excess || isnan(excess))) {
        worst = e;
        worst_excess = excess;
        wa = got;
        wb = want;
      }
    }
    if (worst >= 0) {
      printf("MISMATCH %s output %d: element %lld got %.9g expected %.9g "
             "(rtol 1e-3, atol 1e-5)\n",
             set, i, (long long)worst, wa, wb);
      status = 1;
    }
  }
done:
  for (int i = 0; i < 16; i++) {
    adv_array_free(&in[i]);
    adv_array_free(&ref[i]);
    free(outs[i]);
  }
  adv_session_free(s);
  (void)rc;
  return status;
}

static int cmd_onnx_check(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: aisbx onnx-check DIR\n");
    return EXIT_BADINPUT;
  }
  const char *dir = argv[1];
  char path[4096];
  pathf(path, sizeof(path), "%s/model.onnx", dir);
  adv_err err = {{0}};
  adv_model *m = NULL;
  int rc = adv_model_load_file(path, adv_load_default_params(), &m, &err);
  if (rc) {
    printf("INVALID %s: %s (%s)\n", dir, err.msg, adv_err_name(rc));
    return EXIT_BADINPUT;
  }
  int status = 0, sets = 0;
  for (int i = 0; i < 1000; i++) {
    pathf(path, sizeof(path), "%s/test_data_set_%d", dir, i);
    struct stat st;
    if (stat(path, &st))
      break;
    sets++;
    err.msg[0] = 0;
    int r = check_set(m, path, &err);
    if (r == 2) {
      printf("INVALID %s: %s\n", path, err.msg);
      status = EXIT_BADINPUT;
      break;
    }
    if (r == 1)
      status = EXIT_MISMATCH;
  }
  adv_model_free(m);
  if (sets == 0) {
    printf("INVALID %s: no test_data_set_*\n", dir);
    return EXIT_BADINPUT;
  }
  if (status == 0)
    printf("OK %s (%d data set%s)\n", dir, sets, sets > 1 ? "s" : "");
  return status;
}

/* ---------------- predict ---------------- */

typedef struct predict_opts {
  const char *model, *data, *labels, *out, *logits;
  const char *input, *mean, *std; /* the job spec's input domain */
  long batch, threads;
} predict_opts;

#define POPT(name, type, field, lo, hi)                                        \
  { name, type, offsetof(predict_opts, field), lo, hi, 0 }
static const cli_opt predict_table[] = {
    POPT("--model", CLI_STR, model, 0, 0),
    POPT("--data", CLI_STR, data, 0, 0),
    POPT("--labels", CLI_STR, labels, 0, 0),
    POPT("--out", CLI_STR, out, 0, 0),
    POPT("--logits", CLI_STR, logits, 0, 0),
    POPT("--input", CLI_STR, input, 0, 0),
    POPT("--mean", CLI_STR, mean, 0, 0),
    POPT("--std", CLI_STR, std, 0, 0),
    POPT("--batch", CLI_LONG, batch, 1, 65536),
    POPT("--threads", CLI_LONG, threads, 1, 256),
    CLI_END,
};

static void usage_predict(void) {
  fprintf(
      stderr,
      "usage: aisbx predict --model M.onnx --data D [--labels L] "
      "[--batch N] [--threads T] [--out preds.npy] [--logits logits.npy]\n"
      "  D: NPZ with x (N,C,H,W float32 in [0,1] or uint8) and y, or an\n"
      "     NPY / IDX file of inputs with --labels for the labels\n"
      "  --out: int64 labels (N); --logits: float32 N x K outputs the attacks\n"
      "     work on (the pre-softmax logits when the model ends in Softmax)\n"
      "  --input NAME, --mean M[,M..], --std S[,S..]: as for attack (the\n"
      "     model input fed with x; normalization put in front of the "
      "model)\n");
}

/*
 * --input/--mean/--std of predict through the job spec's parameters and
 * adv_job_model: on success *m may be replaced by a single-input view and
 * *base receives the model it borrows (free *m, then *base). Returns 0 or
 * EXIT_BADINPUT (printed).
 */
static int predict_view(const predict_opts *o, adv_model **m,
                        adv_model **base) {
  adv_job_spec s = adv_job_spec_default_params();
  const char *names[3] = {"input", "mean", "std"};
  const char *vals[3] = {o->input, o->mean, o->std};
  adv_err err = {{0}};
  adv_model *view = NULL;
  for (int i = 0; i < 3; i++)
    if (vals[i] && adv_job_spec_set(&s, names[i], vals[i], &err)) {
      cli_spec_error("predict", err.msg);
      return EXIT_BADINPUT;
    }
  if (adv_job_spec_validate(&s, &err) ||
      adv_job_model(*m, &s, o->data, NULL, 0, &view, &err)) {
    cli_spec_error("predict", err.msg);
    return EXIT_BADINPUT;
  }
  if (view) {
    *base = *m;
    *m = view;
  }
  return 0;
}

/* Writes an n-d array of `dtype` to an NPY file; 0 or 1 (printed). */
static int write_npy(const char *cmd, const char *path, adv_dtype dtype,
                     int ndim, const int64_t *dims, void *data, size_t nbytes) {
  adv_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = dtype;
  a.ndim = ndim;
  memcpy(a.dims, dims, sizeof(int64_t) * (size_t)ndim);
  a.data = data;
  a.nbytes = nbytes;
  adv_err we = {{0}};
  if (adv_npy_write_file(path, &a, &we)) {
    fprintf(stderr, "aisbx %s: cannot write %s: %s\n", cmd, path, we.msg);
    return 1;
  }
  return 0;
}

static int cmd_predict(int argc, char **argv) {
  predict_opts o = {0};
  o.batch = 128;
  o.threads = 2;
  int rc =
      cli_parse("predict", argc, argv, predict_table, &o, NULL, usage_predict);
  if (rc)
    return rc == CLI_HELP ? 0 : rc;
  if (!o.model || !o.data) {
    usage_predict();
    return EXIT_BADINPUT;
  }
  adv_err err = {{0}};
  adv_model *m = NULL;
  adv_model *base = NULL; /* the loaded model when m is a view of it */
  rc = adv_model_load_file(o.model, adv_load_default_params(), &m, &err);
  if (rc) {
    fprintf(stderr, "aisbx predict: model %s: %s\n", o.model, err.msg);
    return EXIT_BADINPUT;
  }
  if (predict_view(&o, &m, &base)) {
    adv_model_free(m);
    adv_model_free(base);
    return EXIT_BADINPUT;
  }
  adv_dataset ds;
  memset(&ds, 0, sizeof(ds));
  rc = adv_dataset_load(o.data, o.labels, adv_io_default_limits(), &ds, &err);
  if (rc) {
    fprintf(stderr, "aisbx predict: data %s: %s (%s)\n", o.data, err.msg,
            adv_strerror(rc));
    adv_model_free(m);
    adv_model_free(base);
    return EXIT_BADINPUT;
  }
  int status = 0;
  int64_t N = ds.x.dims[0], batch = o.batch;
  int64_t per = N ? adv_array_numel(&ds.x) / N : 0;
  adv_session *full = NULL, *tail = NULL;
  float *logits = NULL;
  int64_t *pred = NULL;
  int64_t classes = 0;
  if (batch > N && N > 0)
    batch = N;
  adv_session_params sp = adv_session_default_params();
  sp.threads = (int)o.threads;
  sp.logits = 1;
  if ((rc = adv_model_fit_data(m, &ds.x, &err)) ||
      (N > 0 &&
       (rc = adv_model_num_classes(m, ds.x.ndim, ds.x.dims, &classes, &err))) ||
      (N > 0 && (rc = adv_session_init_shape(m, sp, ds.x.ndim, ds.x.dims, batch,
                                             &full, &err))) ||
      (N % batch && (rc = adv_session_init_shape(m, sp, ds.x.ndim, ds.x.dims,
                                                 N % batch, &tail, &err)))) {
    fprintf(stderr, "aisbx predict: %s\n", err.msg);
    status = EXIT_BADINPUT;
    goto done;
  }
  logits =
      malloc(sizeof(float) * (size_t)((N ? N : 1) * (classes ? classes : 1)));
  pred = malloc(sizeof(int64_t) * (size_t)(N ? N : 1));
  if (!logits || !pred) {
    fprintf(stderr, "aisbx predict: out of memory\n");
    status = 1;
    goto done;
  }
  double t0 = now_s();
  for (int64_t s0 = 0; s0 < N; s0 += batch) {
    int64_t bn = N - s0 < batch ? N - s0 : batch;
    adv_session *s = bn == batch ? full : tail;
    float *z0 = logits + s0 * classes;
    rc = adv_session_forward(s, (const float *)ds.x.data + s0 * per, z0, &err);
    if (rc) {
      fprintf(stderr, "aisbx predict: %s\n", err.msg);
      status = 1;
      goto done;
    }
    for (int64_t i = 0; i < bn; i++) {
      const float *z = z0 + i * classes;
      int64_t best = 0;
      for (int64_t c = 1; c < classes; c++)
        if (z[c] > z[best])
          best = c;
      pred[s0 + i] = best;
    }
  }
  double dt = now_s() - t0;
  if (adv_model_output_is_probability(m))
    printf("note: the model ends in Softmax (its output is a probability); "
           "attacks use the pre-softmax logits\n");
  printf(
      "samples: %lld  classes: %lld  time: %.3f s  (%.0f images/s, batch %lld, "
      "%ld threads)\n",
      (long long)N, (long long)classes, dt, dt > 0 ? (double)N / dt : 0.0,
      (long long)batch, o.threads);
  if (ds.y.data) {
    int64_t correct = 0;
    for (int64_t i = 0; i < N; i++)
      correct += pred[i] == ((int64_t *)ds.y.data)[i];
    printf("accuracy: %.4f (%lld/%lld)\n",
           N ? (double)correct / (double)N : 0.0, (long long)correct,
           (long long)N);
  }
  if (o.out && write_npy("predict", o.out, ADV_DTYPE_I64, 1, &N, pred,
                         sizeof(int64_t) * (size_t)N))
    status = 1;
  int64_t ld[2] = {N, classes};
  if (o.logits && write_npy("predict", o.logits, ADV_DTYPE_F32, 2, ld, logits,
                            sizeof(float) * (size_t)(N * classes)))
    status = 1;
done:
  free(logits);
  free(pred);
  adv_session_free(full);
  adv_session_free(tail);
  adv_dataset_free(&ds);
  adv_model_free(m);
  adv_model_free(base);
  return status;
}

/* ---------------- grad ---------------- */

typedef struct grad_opts {
  const char *model, *data, *labels, *out, *loss;
  long batch, threads, target, n;
  double kappa;
} grad_opts;

#define GOPT(name, type, field, lo, hi, open)                                  \
  { name, type, offsetof(grad_opts, field), lo, hi, open }
static const cli_opt grad_table[] = {
    GOPT("--model", CLI_STR, model, 0, 0, 0),
    GOPT("--data", CLI_STR, data, 0, 0, 0),
    GOPT("--labels", CLI_STR, labels, 0, 0, 0),
    GOPT("--out", CLI_STR, out, 0, 0, 0),
    GOPT("--loss", CLI_STR, loss, 0, 0, 0),
    GOPT("--target", CLI_LONG, target, 0, 1000000, 0),
    GOPT("--kappa", CLI_FLOAT, kappa, 0, 1e30, 1),
    GOPT("--n", CLI_LONG, n, 1, 100000000, 0),
    GOPT("--batch", CLI_LONG, batch, 1, 4096, 0),
    GOPT("--threads", CLI_LONG, threads, 1, 256, 0),
    CLI_END,
};

static void usage_grad(void) {
  fprintf(
      stderr,
      "usage: aisbx grad --model M.onnx --data D [--labels L] --loss "
      "ce|cw|dlr|logit\n"
      "                  [--target K] [--kappa C] [--n N] [--batch B] "
      "[--threads T]\n"
      "                  --out G.npy\n"
      "  writes d(loss_i)/d(x_i) for every sample (float32, shape of x);\n"
      "  --target K makes ce/cw/dlr targeted at class K (logit: the class);\n"
      "  losses are the ones an attacker maximizes (docs/losses.md)\n");
}

static int cmd_grad(int argc, char **argv) {
  grad_opts o = {0};
  o.batch = 64;
  o.threads = 2;
  o.target = -1;
  o.n = -1;
  o.kappa = INFINITY;
  int rc = cli_parse("grad", argc, argv, grad_table, &o, NULL, usage_grad);
  if (rc)
    return rc == CLI_HELP ? 0 : rc;
  if (!o.model || !o.data || !o.out || !o.loss) {
    usage_grad();
    return EXIT_BADINPUT;
  }
  int lk = adv_loss_from_name(o.loss);
  if (lk < 0) {
    fprintf(stderr, "aisbx grad: --loss must be ce, cw, dlr or logit\n");
    return EXIT_BADINPUT;
  }
  adv_loss_params lp = adv_loss_default_params((adv_loss_kind)lk);
  lp.kappa = (float)o.kappa;
  if (lp.kind == ADV_LOSS_LOGIT && o.target < 0) {
    fprintf(stderr, "aisbx grad: --loss logit needs --target K\n");
    return EXIT_BADINPUT;
  }
  lp.targeted = o.target >= 0 && lp.kind != ADV_LOSS_LOGIT;
  adv_err err = {{0}};
  adv_model *m = NULL;
  if (adv_model_load_file(o.model, adv_load_default_params(), &m, &err)) {
    fprintf(stderr, "aisbx grad: model %s: %s\n", o.model, err.msg);
    return EXIT_BADINPUT;
  }
  adv_dataset ds;
  memset(&ds, 0, sizeof(ds));
  rc = adv_dataset_load(o.data, o.labels, adv_io_default_limits(), &ds, &err);
  if (rc) {
    fprintf(stderr, "aisbx grad: data %s: %s\n", o.data, err.msg);
    adv_model_free(m);
    return EXIT_BADINPUT;
  }
  int status = 0;
  adv_session *full = NULL, *tail = NULL;
  float *z = NULL;
  int64_t *tg = NULL;
  adv_array g;
  memset(&g, 0, sizeof(g));
  int64_t N = ds.x.dims[0], batch = o.batch, K = 0;
  if (o.n > 0 && o.n < N)
    N = o.n;
  int64_t per = adv_array_numel(&ds.x) / ds.x.dims[0];
  if (!ds.y.data && lp.kind != ADV_LOSS_LOGIT) {
    fprintf(stderr, "aisbx grad: loss %s needs labels (NPZ y or --labels)\n",
            o.loss);
    status = EXIT_BADINPUT;
    goto done;
  }
  if (batch > N)
    batch = N;
  adv_session_params sp = adv_session_default_params();
  sp.threads = (int)o.threads;
  sp.logits = 1;
  sp.grad = 1;
  if ((rc = adv_model_fit_data(m, &ds.x, &err)) ||
      (rc = adv_model_num_classes(m, ds.x.ndim, ds.x.dims, &K, &err)) ||
      (rc = adv_session_init_shape(m, sp, ds.x.ndim, ds.x.dims, batch, &full,
                                   &err)) ||
      (N % batch && (rc = adv_session_init_shape(m, sp, ds.x.ndim, ds.x.dims,
                                                 N % batch, &tail, &err)))) {
    fprintf(stderr, "aisbx grad: %s\n", err.msg);
    status = EXIT_BADINPUT;
    goto done;
  }
  if (o.target >= K) {
    fprintf(stderr, "aisbx grad: --target %ld but the model has %lld classes\n",
            o.target, (long long)K);
    status = EXIT_BADINPUT;
    goto done;
  }
  int64_t gd[ADV_MAX_DIMS];
  memcpy(gd, ds.x.dims, sizeof(gd));
  gd[0] = N;
  tg = malloc(sizeof(int64_t) * (size_t)(N ? N : 1));
  z = malloc(sizeof(float) * (size_t)(batch * K));
  if (!tg || !z || adv_array_alloc(&g, ADV_DTYPE_F32, ds.x.ndim, gd)) {
    fprintf(stderr, "aisbx grad: out of memory\n");
    status = 1;
    goto done;
  }
  for (int64_t i = 0; i < N; i++)
    tg[i] = o.target;
  for (int64_t s0 = 0; s0 < N; s0 += batch) {
    int64_t bn = N - s0 < batch ? N - s0 : batch;
    adv_session *s = bn == batch ? full : tail;
    rc = adv_session_grad(s, (const float *)ds.x.data + s0 * per, lp,
                          ds.y.data ? (const int64_t *)ds.y.data + s0 : NULL,
                          tg + s0, z, NULL, (float *)g.data + s0 * per, &err);
    if (rc) {
      fprintf(stderr, "aisbx grad: %s\n", err.msg);
      status = rc == ADV_EINVAL ? EXIT_BADINPUT : 1;
      goto done;
    }
  }
  if ((rc = adv_npy_write_file(o.out, &g, &err))) {
    fprintf(stderr, "aisbx grad: cannot write %s: %s\n", o.out, err.msg);
    status = 1;
    goto done;
  }
  printf("wrote %s: %lld gradients of %s%s loss\n", o.out, (long long)N,
         lp.targeted ? "targeted " : "", o.loss);
done:
  free(z);
  free(tg);
  adv_array_free(&g);
  adv_session_free(full);
  adv_session_free(tail);
  adv_dataset_free(&ds);
  adv_model_free(m);
  return status;
}

/*
 * The engine's threading environment (adv/threading.h: a passive OpenMP
 * wait policy, single-threaded OpenBLAS) unless the user chose otherwise.
 * libgomp and OpenBLAS read it when they load, before main(), so when
 * anything had to be set we re-execute ourselves once (AISBX_NO_REEXEC
 * marks the second run, and lets a caller skip the step).
 */
static void apply_threading_env(char **argv) {
  if (getenv("AISBX_NO_REEXEC") || adv_threading_env_apply() <= 0)
    return;
  setenv("AISBX_NO_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with the current settings */
}

int main(int argc, char **argv) {
  apply_threading_env(argv);
  if (argc < 2) {
    fprintf(
        stderr,
        "usage: aisbx <predict|grad|attack|evaluate|onnx-check|version> ...\n");
    return EXIT_BADINPUT;
  }
  if (!strcmp(argv[1], "predict"))
    return cmd_predict(argc - 1, argv + 1);
  if (!strcmp(argv[1], "attack"))
    return cmd_attack(argc - 1, argv + 1);
  if (!strcmp(argv[1], "evaluate"))
    return cmd_evaluate(argc - 1, argv + 1);
  if (!strcmp(argv[1], "grad"))
    return cmd_grad(argc - 1, argv + 1);
  if (!strcmp(argv[1], "onnx-check"))
    return cmd_onnx_check(argc - 1, argv + 1);
  if (!strcmp(argv[1], "version")) {
    printf("aisbx %s\n", adv_version());
    return 0;
  }
  fprintf(stderr, "aisbx: unknown command '%s'\n", argv[1]);
  return EXIT_BADINPUT;
}
