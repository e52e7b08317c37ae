/*
 * bench_forward.c - inference throughput of libadv on one ONNX model.
 *
 * For every batch size: a session (batch B, T threads, logits=1), the input
 * and reference logits written by the PyTorch peer (forward_torch.py) from
 * REF_PREFIX_b<B>.npz (members x, logits), then adv_session_forward() is
 * timed with the adaptive loop of bench_common (warm-up, then about
 * MIN_TIME seconds of calls) and the logits are compared with PyTorch's.
 * Without -r the input is pseudo-random in [0, 1) and nothing is compared.
 *
 * Usage: bench_forward [-n NAME] [-b 1,128] [-t THREADS] [-m MIN_SECONDS]
 *                      [-r REF_PREFIX] MODEL.onnx
 * Prints one JSON line per batch size on stdout (side "adv") and a human
 * line on stderr. Exit status 0 when every configuration ran.
 */
#include "adv/adv.h"
#include "bench_common.h"

#include <stdlib.h>
#include <string.h>


typedef struct fwd_ctx {
  adv_session *s;
  const float *x;
  float *z;
  adv_err err;
} fwd_ctx;

static int fwd_call(void *ctx) {
  fwd_ctx *c = ctx;
  return adv_session_forward(c->s, c->x, c->z, &c->err);
}

/*
 * One batch size: plan, load or make the input, time, compare, print.
 * Returns 0 on success.
 */
static int run_batch(const bench_options *o, const adv_model *m, int batch) {
  int rc = 1;
  float *x = NULL, *z = NULL, *zref = NULL;
  adv_session *s = NULL;
  adv_err err = {{0}};
  adv_session_params sp = adv_session_default_params();
  sp.batch = batch;
  sp.threads = o->threads;
  sp.logits = 1;
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
  if (o->ref) {
    char path[4096];
    int64_t n1 = 0, n2 = 0;
    snprintf(path, sizeof(path), "%s_b%d.npz", o->ref, batch);
    if (bench_npz_f32(path, "x", &x, &n1) ||
        bench_npz_f32(path, "logits", &zref, &n2))
      goto done;
    if (n1 != nx || n2 != nz) {
      fprintf(stderr, "%s: reference shapes do not match the session\n", path);
      goto done;
    }
  } else {
    x = malloc((size_t)nx * sizeof(float));
    if (x)
      bench_fill_uniform(x, (size_t)nx, (uint32_t)batch);
  }
  if (!x || !z) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  fwd_ctx c = {s, x, z, {{0}}};
  bench_timing t;
  if (bench_time(fwd_call, &c, o->min_time, &t)) {
    fprintf(stderr, "%s b%d: forward: %s\n", o->name, batch, c.err.msg);
    goto done;
  }
  /* z holds the logits of the last timed call */
  double diff = -1, zmax = bench_max_abs(z, (size_t)nz);
  int64_t agree = -1;
  if (zref) {
    diff = bench_max_abs_diff(z, zref, (size_t)nz);
    agree = bench_argmax_agree(z, zref, out_d[0], out_d[1]);
  }
  /* one record per mode (idle, and loaded in the paired mode) */
  for (int mode = 0; mode <= t.paired; mode++) {
    bench_json j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "bench", "forward");
    bench_json_str(&j, "side", "adv");
    bench_json_str(&j, "model", o->name);
    bench_json_int(&j, "batch", batch);
    bench_json_int(&j, "threads", o->threads);
    bench_json_timing(&j, &t, mode, batch);
    bench_json_num(&j, "init_s", init_s);
    bench_json_int(&j, "arena_bytes", (long long)adv_session_arena_bytes(s));
    bench_json_num(&j, "max_abs_logit", zmax);
    if (zref) {
      bench_json_num(&j, "max_abs_diff", diff);
      bench_json_int(&j, "argmax_agree", agree);
    }
    bench_json_int(&j, "peak_rss_kb", bench_peak_rss_kb());
    bench_json_end(&j);
  }
  double ips = batch / t.median_s;
  fprintf(stderr, "  adv   %-16s b%-4d %10.1f img/s  (%.3f ms/call, %dx%d)",
          o->name, batch, ips, t.median_s * 1e3, t.reps, t.iters_per_rep);
  if (t.paired)
    fprintf(stderr, "  loaded %.1f img/s (loaded/idle %.2f)",
            batch / t.loaded_median_s, t.loaded_median_s / t.median_s);
  if (zref)
    fprintf(stderr, "  max|dz| %.2e  argmax %lld/%lld", diff,
            (long long)agree, (long long)out_d[0]);
  fputc('\n', stderr);
  rc = 0;
done:
  free(x);
  free(z);
  free(zref);
  adv_session_free(s);
  return rc;
}

int main(int argc, char **argv) {
  bench_options o;
  static const int def[] = {1, 128};
  bench_parse_options(argc, argv, "bench_forward", def,
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
