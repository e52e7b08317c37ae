/*
 * bench_common.c - see bench_common.h.
 */
#include "bench_common.h"

#include "adv/data.h"
#include "adv/threading.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

long bench_peak_rss_kb(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru))
    return -1;
  return ru.ru_maxrss; /* KiB on Linux */
}

/* User + system CPU seconds of the whole process so far. */
static double cpu_now(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru))
    return 0;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

int bench_nproc(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (int)n;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#define PAIRED_REP_S 0.5 /* seconds per rep in the paired loaded mode */

/* The burners of the paired loaded mode: the pids in BENCH_BURNERS
 * (separated by spaces or commas), at most max; 0 when unset. */
static int burner_pids(pid_t *out, int max) {
  const char *e = getenv("BENCH_BURNERS");
  int n = 0;
  while (e && *e && n < max) {
    char *end;
    long v = strtol(e, &end, 10);
    if (end == e) {
      e++;
      continue;
    }
    if (v > 1)
      out[n++] = (pid_t)v;
    e = end;
  }
  return n;
}

static void signal_burners(const pid_t *p, int n, int sig) {
  for (int i = 0; i < n; i++)
    kill(p[i], sig);
}

/*
 * The adaptive loop (mirrored by time_fn() in bench_common.py):
 *   warm-up: call until 0.3 s have passed, at least once, and at least
 *            twice when one call takes under 0.5 s;
 *   t_est  = the mean warm-up call after the first (the only one when
 *            there was one);
 *   if t_est < min_time / 5: 5 reps of round(min_time / 5 / t_est) calls;
 *   else: clamp(ceil(min_time / t_est), 3, 5) reps of one call.
 * Each rep gives seconds per call; the median and the best are reported.
 */
int bench_time(bench_fn fn, void *ctx, double min_time, bench_timing *t) {
  memset(t, 0, sizeof(*t));
  double t0 = bench_now(), first = 0, last = 0, el = 0;
  for (;;) {
    double a = bench_now();
    int rc = fn(ctx);
    if (rc)
      return rc;
    last = bench_now() - a;
    if (t->warmup_iters++ == 0)
      first = last;
    el = bench_now() - t0;
    if (el >= 0.3 && (t->warmup_iters >= 2 || last >= 0.5))
      break;
  }
  /* mean warm-up call after the first one (which pays one-off costs) */
  if (t->warmup_iters >= 2)
    last = (el - first) / (t->warmup_iters - 1);
  if (last <= 0)
    last = 1e-9;
  int reps, iters;
  if (last < min_time / 5) {
    reps = 5;
    iters = (int)(min_time / 5 / last + 0.5);
    if (iters < 1)
      iters = 1;
  } else {
    reps = (int)ceil(min_time / last);
    reps = reps < 3 ? 3 : reps > 5 ? 5 : reps;
    iters = 1;
  }
  pid_t burners[16];
  int nb = burner_pids(burners, 16);
  /* paired: reps of at least PAIRED_REP_S, so that each half is a stretch
   * of steady load as on a busy host, not a flicker */
  if (nb && iters * last < PAIRED_REP_S)
    iters = (int)(PAIRED_REP_S / last + 0.5) < 1
                ? 1
                : (int)(PAIRED_REP_S / last + 0.5);
  double per[2][5], cpu[2] = {0, 0}, total[2] = {0, 0};
  for (int r = 0; r < reps * (nb ? 2 : 1); r++) {
    int loaded = nb && (r & 1);
    if (loaded)
      signal_burners(burners, nb, SIGCONT);
    double c0 = cpu_now(), a = bench_now();
    for (int i = 0; i < iters; i++) {
      int rc = fn(ctx);
      if (rc) {
        if (loaded)
          signal_burners(burners, nb, SIGSTOP);
        return rc;
      }
    }
    double el = bench_now() - a;
    cpu[loaded] += cpu_now() - c0;
    if (loaded)
      signal_burners(burners, nb, SIGSTOP);
    total[loaded] += el;
    per[loaded][nb ? r / 2 : r] = el / iters;
  }
  t->reps = reps;
  t->iters_per_rep = iters;
  t->paired = nb > 0;
  for (int m = 0; m <= t->paired; m++) {
    qsort(per[m], (size_t)reps, sizeof(double), cmp_double);
    double med = reps % 2 ? per[m][reps / 2]
                          : 0.5 * (per[m][reps / 2 - 1] + per[m][reps / 2]);
    if (m) {
      t->loaded_median_s = med;
      t->loaded_best_s = per[m][0];
      t->loaded_total_s = total[m];
      t->loaded_cpu_s = cpu[m];
    } else {
      t->median_s = med;
      t->best_s = per[m][0];
      t->total_s = total[m];
      t->cpu_s = cpu[m];
    }
  }
  return 0;
}

bench_timing bench_timing_mode(const bench_timing *t, int loaded) {
  bench_timing m = *t;
  if (loaded && t->paired) {
    m.median_s = t->loaded_median_s;
    m.best_s = t->loaded_best_s;
    m.total_s = t->loaded_total_s;
    m.cpu_s = t->loaded_cpu_s;
  }
  return m;
}

/* Reads one NPZ member and checks its dtype. */
static int npz_member(const char *path, const char *name, adv_dtype want,
                      adv_array *a) {
  adv_err eb = {{0}};
  int rc = adv_npz_read_file(path, name, adv_io_default_limits(), a, &eb);
  if (rc) {
    fprintf(stderr, "%s[%s]: %s\n", path, name, eb.msg);
    return rc;
  }
  if (a->dtype != want) {
    fprintf(stderr, "%s[%s]: unexpected dtype %d\n", path, name, (int)a->dtype);
    adv_array_free(a);
    return -1;
  }
  return 0;
}

int bench_npz_f32(const char *path, const char *name, float **out,
                  int64_t *numel) {
  adv_array a = {0};
  int rc = npz_member(path, name, ADV_DTYPE_F32, &a);
  if (rc)
    return rc;
  *numel = adv_array_numel(&a);
  *out = a.data; /* malloc'd, ownership moves to the caller */
  return 0;
}

int bench_npz_i64(const char *path, const char *name, int64_t **out,
                  int64_t *numel) {
  adv_array a = {0};
  int rc = npz_member(path, name, ADV_DTYPE_I64, &a);
  if (rc)
    return rc;
  *numel = adv_array_numel(&a);
  *out = a.data;
  return 0;
}

double bench_max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > m || d != d)
      m = d;
  }
  return m;
}

double bench_max_abs(const float *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs((double)a[i]) > m)
      m = fabs((double)a[i]);
  return m;
}

/* Index of the first maximum of a row. */
static int64_t argmax(const float *r, int64_t k) {
  int64_t b = 0;
  for (int64_t i = 1; i < k; i++)
    if (r[i] > r[b])
      b = i;
  return b;
}

int64_t bench_argmax_agree(const float *a, const float *b, int64_t rows,
                           int64_t k) {
  int64_t n = 0;
  for (int64_t i = 0; i < rows; i++)
    n += argmax(a + i * k, k) == argmax(b + i * k, k);
  return n;
}

void bench_fill_uniform(float *x, size_t n, uint32_t seed) {
  uint64_t s = 0x9E3779B97F4A7C15ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13; /* xorshift64 */
    s ^= s >> 7;
    s ^= s << 17;
    x[i] = (float)(s >> 40) * (1.0f / 16777216.0f);
  }
}

int bench_parse_list(const char *s, int *out, int max) {
  int n = 0;
  while (*s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > 1 << 20 || n >= max)
      return -1;
    out[n++] = (int)v;
    s = end;
    if (*s == ',')
      s++;
    else if (*s)
      return -1;
  }
  return n;
}

/* Writes "key": with the separating comma when needed. */
static void json_key(bench_json *j, const char *key) {
  fprintf(j->f, "%s\"%s\": ", j->n++ ? ", " : "", key);
}

void bench_json_begin(bench_json *j, FILE *f) {
  j->f = f;
  j->n = 0;
  fputc('{', f);
}

void bench_json_str(bench_json *j, const char *key, const char *val) {
  json_key(j, key);
  fputc('"', j->f);
  for (const char *p = val; *p; p++) {
    if (*p == '"' || *p == '\\')
      fputc('\\', j->f);
    if ((unsigned char)*p < 0x20)
      fprintf(j->f, "\\u%04x", (unsigned char)*p);
    else
      fputc(*p, j->f);
  }
  fputc('"', j->f);
}

void bench_json_int(bench_json *j, const char *key, long long val) {
  json_key(j, key);
  fprintf(j->f, "%lld", val);
}

void bench_json_num(bench_json *j, const char *key, double val) {
  json_key(j, key);
  if (isfinite(val))
    fprintf(j->f, "%.6g", val);
  else
    fputs("null", j->f);
}

void bench_json_end(bench_json *j) {
  fputs("}\n", j->f);
  fflush(j->f);
}

/* Usage line for prog with the default batch list. */
static void bench_usage(const char *prog, const int *def, int n_def) {
  fprintf(stderr, "usage: %s [-n NAME] [-b ", prog);
  for (int i = 0; i < n_def; i++)
    fprintf(stderr, "%s%d", i ? "," : "", def[i]);
  fprintf(stderr, "] [-t THREADS] [-m MIN_SECONDS] [-r REF_PREFIX] MODEL.onnx\n");
  exit(2);
}

void bench_threading_env(char **argv) {
  if (adv_threading_env_apply() > 0)
    execv("/proc/self/exe", argv);
  /* nothing to set (the user chose), or exec failed: current settings */
}

void bench_parse_options(int argc, char **argv, const char *prog, const int *def,
                         int n_def, bench_options *o) {
  if (argc == 2 && !strcmp(argv[1], "-E")) {
    for (const char *const *e = adv_threading_env(); *e; e++)
      printf("%s\n", *e);
    exit(0);
  }
  bench_threading_env(argv);
  memset(o, 0, sizeof(*o));
  for (int i = 0; i < n_def && i < BENCH_MAX_BATCHES; i++)
    o->batches[o->n_batches++] = def[i];
  o->threads = bench_nproc();
  o->min_time = 1.5;
  int c;
  while ((c = getopt(argc, argv, "n:b:t:m:r:h")) != -1) {
    switch (c) {
    case 'n': o->name = optarg; break;
    case 'b':
      o->n_batches = bench_parse_list(optarg, o->batches, BENCH_MAX_BATCHES);
      if (o->n_batches < 1)
        bench_usage(prog, def, n_def);
      break;
    case 't': o->threads = atoi(optarg); break;
    case 'm': o->min_time = atof(optarg); break;
    case 'r': o->ref = optarg; break;
    default: bench_usage(prog, def, n_def);
    }
  }
  if (optind != argc - 1 || o->threads < 1 || o->min_time <= 0)
    bench_usage(prog, def, n_def);
  o->model = argv[optind];
  if (!o->name)
    o->name = o->model;
}

int64_t bench_numel(const int64_t *d, int nd) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++)
    n *= d[i];
  return n;
}

void bench_json_timing(bench_json *j, const bench_timing *t, int loaded,
                       int batch) {
  bench_timing m = bench_timing_mode(t, loaded);
  if (t->paired)
    bench_json_str(j, "load", loaded ? "loaded" : "idle");
  bench_json_num(j, "images_per_s", batch / m.median_s);
  bench_json_num(j, "best_images_per_s", batch / m.best_s);
  bench_json_num(j, "ms_per_call", m.median_s * 1e3);
  bench_json_int(j, "warmup", m.warmup_iters);
  bench_json_int(j, "reps", m.reps);
  bench_json_int(j, "iters_per_rep", m.iters_per_rep);
  bench_json_num(j, "timed_s", m.total_s);
  bench_json_num(j, "cpu_s", m.cpu_s);
}
