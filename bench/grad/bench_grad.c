/*
 * bench_grad.c - input-gradient throughput and peak memory of libadv on one
 * ONNX model: forward + backward of the summed cross-entropy to the input
 * (adv_session_grad with adv_loss_default_params(ADV_LOSS_CE), a session
 * with grad=1), the same computation as PyTorch's
 *   loss = F.cross_entropy(model(x), y, reduction='sum'); loss.backward()
 * on x.requires_grad_(True) (grad_torch.py).
 *
 * For every batch size B: input x, labels y, PyTorch's logits and input
 * gradient dx, and the float64 gradient dx64 of the first samples come from
 * REF_PREFIX_b<B>.npz (written by grad_torch.py); adv_session_grad() is
 * timed with the adaptive loop of bench_common and the logits and dx are
 * compared with PyTorch's float32 results and dx with the float64 one. Without -r the input is pseudo-random and the
 * labels are i mod K.
 *
 * Peak RSS is the process's ru_maxrss: run one process per model and batch
 * (run.sh does) to get the peak of that configuration alone.
 *
 * Usage: bench_grad [-n NAME] [-b 1,32,128] [-t THREADS] [-m MIN_SECONDS]
 *                   [-r REF_PREFIX] MODEL.onnx
 * Prints one JSON line per batch size on stdout (side "adv") and a human
 * line on stderr.
 */
#include "adv/adv.h"
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>


typedef struct grad_ctx {
  adv_session *s;
  adv_loss_params lp;
  const float *x;
  const int64_t *y;
  float *z, *loss, *dx;
  adv_err err;
} grad_ctx;

/* The reference of one batch size (all NULL without -r): PyTorch's input,
 * labels, logits and float32 gradient, and the float64 gradient of the
 * first n64 samples (rounded to float32). */
typedef struct grad_ref {
  float *x, *z, *dx, *dx64;
  int64_t *y;
  int64_t n64;
} grad_ref;

static int grad_call(void *ctx) {
  grad_ctx *c = ctx;
  return adv_session_grad(c->s, c->x, c->lp, c->y, NULL, c->z, c->loss, c->dx,
                          &c->err);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/*
 * Per-sample agreement of an input gradient with a reference: sample i's
 * error is max |dx_i - ref_i| / max |ref_i| over its elements. Over the
 * first n samples returns the number with error <= DX_TOL (or -1 when out
 * of memory), the median error in *median and the largest in *max. A
 * whole-batch maximum alone would be dominated by the few samples where a
 * ReLU input within rounding of 0 falls on the other side in one of the
 * two computations (see README).
 */
#define DX_TOL 1e-3
static int64_t sample_agreement(const float *dx, const float *ref, int64_t n,
                                int64_t per, double *median, double *max) {
  double *e = malloc((size_t)n * sizeof(double));
  if (!e)
    return -1;
  int64_t ok = 0;
  for (int64_t i = 0; i < n; i++) {
    double m = bench_max_abs(ref + i * per, (size_t)per);
    double d = bench_max_abs_diff(dx + i * per, ref + i * per, (size_t)per);
    e[i] = m > 0 ? d / m : d;
    ok += e[i] <= DX_TOL;
  }
  qsort(e, (size_t)n, sizeof(double), cmp_double);
  *median = n % 2 ? e[n / 2] : 0.5 * (e[n / 2 - 1] + e[n / 2]);
  *max = e[n - 1];
  free(e);
  return ok;
}

/*
 * Loads REF_PREFIX_b<B>.npz (x, y, logits, dx) and checks the sizes against
 * the session's nx input and nz logit elements. Returns 0 on success.
 */
static int load_ref(const char *prefix, int batch, int64_t nx, int64_t nz,
                    grad_ref *r) {
  char path[4096];
  int64_t a = 0, b = 0, c = 0, d = 0, e = 0;
  snprintf(path, sizeof(path), "%s_b%d.npz", prefix, batch);
  if (bench_npz_f32(path, "x", &r->x, &a) ||
      bench_npz_i64(path, "y", &r->y, &b) ||
      bench_npz_f32(path, "logits", &r->z, &c) ||
      bench_npz_f32(path, "dx", &r->dx, &d) ||
      bench_npz_f32(path, "dx64", &r->dx64, &e))
    return 1;
  r->n64 = e / (nx / batch);
  if (a != nx || b != batch || c != nz || d != nx || r->n64 < 1 ||
      r->n64 * (nx / batch) != e || r->n64 > batch) {
    fprintf(stderr, "%s: reference shapes do not match the session\n", path);
    return 1;
  }
  return 0;
}

/*
 * One batch size: plan with grad=1, load or make input and labels, time
 * adv_session_grad, compare with PyTorch, print. Returns 0 on success.
 */
static int run_batch(const bench_options *o, const adv_model *m, int batch) {
  int rc = 1;
  grad_ref ref = {0};
  float *x = NULL, *z = NULL, *loss = NULL, *dx = NULL;
  int64_t *y = NULL;
  adv_session *s = NULL;
  adv_err err = {{0}};
  adv_session_params sp = adv_session_default_params();
  sp.batch = batch;
  sp.threads = o->threads;
  sp.logits = 1;
  sp.grad = 1;
  double t0 = bench_now();
  if (adv_session_init(m, sp, &s, &err)) {
    fprintf(stderr, "%s b%d: session: %s\n", o->name, batch, err.msg);
    return 1;
  }
  double init_s = bench_now() - t0;
  int64_t in_d[ADV_MAX_DIMS], out_d[ADV_MAX_DIMS];
  int in_nd = adv_session_input_shape(s, 0, in_d);
  int out_nd = adv_session_output_shape(s, 0, out_d);
  if (in_nd < 1 || out_nd != 2) {
    fprintf(stderr, "%s: expected one input and N x K logits\n", o->name);
    goto done;
  }
  int64_t nx = bench_numel(in_d, in_nd), nz = bench_numel(out_d, out_nd);
  z = malloc((size_t)nz * sizeof(float));
  loss = malloc((size_t)batch * sizeof(float));
  dx = malloc((size_t)nx * sizeof(float));
  if (o->ref) {
    if (load_ref(o->ref, batch, nx, nz, &ref))
      goto done;
    x = ref.x;
    y = ref.y;
    ref.x = NULL;
    ref.y = NULL;
  } else {
    x = malloc((size_t)nx * sizeof(float));
    y = malloc((size_t)batch * sizeof(int64_t));
    if (x && y) {
      bench_fill_uniform(x, (size_t)nx, (uint32_t)batch);
      for (int i = 0; i < batch; i++)
        y[i] = i % out_d[1];
    }
  }
  if (!x || !y || !z || !loss || !dx) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  long rss_setup = bench_peak_rss_kb();
  grad_ctx c = {s, adv_loss_default_params(ADV_LOSS_CE), x, y, z, loss, dx,
                {{0}}};
  bench_timing t;
  if (bench_time(grad_call, &c, o->min_time, &t)) {
    fprintf(stderr, "%s b%d: grad: %s\n", o->name, batch, c.err.msg);
    goto done;
  }
  /* z and dx hold the results of the last timed call */
  double zdiff = -1, dxdiff = -1, dxmax = bench_max_abs(dx, (size_t)nx);
  double rel_med = -1, rel_max = -1, rel64_med = -1, rel64_max = -1;
  int64_t agree = -1;
  if (ref.dx) {
    zdiff = bench_max_abs_diff(z, ref.z, (size_t)nz);
    dxdiff = bench_max_abs_diff(dx, ref.dx, (size_t)nx);
    agree = sample_agreement(dx, ref.dx, batch, nx / batch, &rel_med, &rel_max);
    if (agree >= 0 && sample_agreement(dx, ref.dx64, ref.n64, nx / batch,
                                       &rel64_med, &rel64_max) < 0)
      agree = -1;
    if (agree < 0) {
      fprintf(stderr, "out of memory\n");
      goto done;
    }
  }
  /* one record per mode (idle, and loaded in the paired mode) */
  for (int mode = 0; mode <= t.paired; mode++) {
    bench_json j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "bench", "grad");
    bench_json_str(&j, "side", "adv");
    bench_json_str(&j, "model", o->name);
    bench_json_int(&j, "batch", batch);
    bench_json_int(&j, "threads", o->threads);
    bench_json_timing(&j, &t, mode, batch);
    bench_json_num(&j, "init_s", init_s);
    bench_json_int(&j, "arena_bytes", (long long)adv_session_arena_bytes(s));
    bench_json_num(&j, "max_abs_dx", dxmax);
    if (ref.dx) {
      bench_json_num(&j, "max_abs_diff_logits", zdiff);
      bench_json_num(&j, "max_abs_diff_dx", dxdiff);
      bench_json_num(&j, "dx_rel_diff", dxmax > 0 ? dxdiff / dxmax : dxdiff);
      bench_json_num(&j, "dx_rel_median", rel_med);
      bench_json_num(&j, "dx_rel_max", rel_max);
      bench_json_int(&j, "dx_agree", agree);
      bench_json_num(&j, "dx64_rel_median", rel64_med);
      bench_json_num(&j, "dx64_rel_max", rel64_max);
      bench_json_int(&j, "n64", ref.n64);
    }
    bench_json_int(&j, "rss_setup_kb", rss_setup);
    bench_json_int(&j, "peak_rss_kb", bench_peak_rss_kb());
    bench_json_end(&j);
  }
  double ips = batch / t.median_s;
  fprintf(stderr, "  adv   %-16s b%-4d %10.1f img/s  (%.3f ms/call, %dx%d)  "
                  "peak RSS %.1f MiB",
          o->name, batch, ips, t.median_s * 1e3, t.reps, t.iters_per_rep,
          bench_peak_rss_kb() / 1024.0);
  if (t.paired)
    fprintf(stderr, "  loaded %.1f img/s (loaded/idle %.2f)",
            batch / t.loaded_median_s, t.loaded_median_s / t.median_s);
  if (ref.dx)
    fprintf(stderr, "  max|dz| %.2e  dx agree %lld/%d (median rel %.1e; "
                    "vs float64 %.1e)",
            zdiff, (long long)agree, batch, rel_med, rel64_med);
  fputc('\n', stderr);
  rc = 0;
done:
  free(ref.x);
  free(ref.y);
  free(ref.z);
  free(ref.dx);
  free(ref.dx64);
  free(x);
  free(y);
  free(z);
  free(loss);
  free(dx);
  adv_session_free(s);
  return rc;
}

int main(int argc, char **argv) {
  bench_options o;
  static const int def[] = {1, 32, 128};
  bench_parse_options(argc, argv, "bench_grad", def,
                      (int)(sizeof(def) / sizeof(def[0])), &o);
  adv_model *m = NULL;
  adv_err err = {{0}};
  if (adv_model_load_file(o.model, adv_load_default_params(), &m, &err)) {
    fprintf(stderr, "%s: %s\n", o.model, err.msg);
    return 1;
  }
  int rc = 0;
  for (int i = 0; i < o.n_batches; i++)
    rc |= run_batch(&o, m, o.batches[i]);
  adv_model_free(m);
  return rc;
}
