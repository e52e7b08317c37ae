/*
 * bench_common.h - helpers shared by the engine benchmarks (bench/forward,
 * bench/grad): a monotonic clock, peak RSS, the adaptive timing loop (the
 * Python peers in bench/common/bench_common.py implement the same loop),
 * reading the reference inputs/outputs the PyTorch peer wrote (NPZ), and
 * one-line JSON records.
 *
 * Not part of libadv: uses only the public headers (include/adv/).
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Seconds from an arbitrary origin (CLOCK_MONOTONIC). */
double bench_now(void);

/* Peak resident set size of this process so far, in KiB (ru_maxrss). */
long bench_peak_rss_kb(void);

/* Online CPUs (>= 1). */
int bench_nproc(void);

/* One timed call; returns 0 on success (non-zero aborts the measurement). */
typedef int (*bench_fn)(void *ctx);

typedef struct bench_timing {
  int warmup_iters;  /* untimed calls before measuring */
  int reps;          /* timed repetitions */
  int iters_per_rep; /* calls per repetition */
  double median_s;   /* median over reps of seconds per call */
  double best_s;     /* fastest rep, seconds per call */
  double total_s;    /* timed seconds (warm-up excluded) */
  double cpu_s;      /* CPU seconds (user + system, all threads of the
                        process) over the same timed part */
  int paired;        /* 1: the loaded half below was measured too */
  double loaded_median_s, loaded_best_s, loaded_total_s, loaded_cpu_s;
} bench_timing;

/* t as measured with the burners running (loaded = 1, only when
 * t->paired) or stopped (loaded = 0): the median_s/best_s/total_s/cpu_s of
 * that half, the counts of both. */
bench_timing bench_timing_mode(const bench_timing *t, int loaded);

/* Warm-up, then reps x iters_per_rep timed calls sized so the timed part
 * takes about min_time seconds (at least 3 reps, one call per rep for
 * slow calls). Returns the first non-zero status of fn, else 0.
 *
 * Paired loaded mode: when the environment has BENCH_BURNERS (pids of
 * background CPU burners that the caller started and stopped with
 * SIGSTOP), every rep is run twice in a row, once with the burners stopped
 * and once with them continued (SIGCONT before, SIGSTOP after), and both
 * halves are kept (t->paired = 1): the idle and loaded times of one
 * configuration come from the same seconds of the machine. */
int bench_time(bench_fn fn, void *ctx, double min_time, bench_timing *t);

/* Reads member `name` of an NPZ as float32 (F32 only) into a malloc'd
 * buffer; *numel receives its element count. Returns 0 or prints the reason
 * to stderr and returns non-zero. */
int bench_npz_f32(const char *path, const char *name, float **out,
                  int64_t *numel);
/* Same for an integer (int64) member. */
int bench_npz_i64(const char *path, const char *name, int64_t **out,
                  int64_t *numel);

/* max |a[i] - b[i]| and max |a[i]| over n elements. */
double bench_max_abs_diff(const float *a, const float *b, size_t n);
double bench_max_abs(const float *a, size_t n);
/* Rows (of k columns) whose argmax is the same in a and b. */
int64_t bench_argmax_agree(const float *a, const float *b, int64_t rows,
                           int64_t k);

/* Deterministic pseudo-random floats in [0, 1) (used when no reference
 * input is given). */
void bench_fill_uniform(float *x, size_t n, uint32_t seed);

/* Parses "1,32,128" into at most max positive ints; returns the count or
 * -1 when malformed. */
int bench_parse_list(const char *s, int *out, int max);

#define BENCH_MAX_BATCHES 16

/* Command line shared by bench_forward and bench_grad:
 *   [-n NAME] [-b B1,B2,...] [-t THREADS] [-m MIN_SECONDS] [-r REF_PREFIX] MODEL.onnx */
typedef struct bench_options {
  const char *name;  /* label in the records (default: the model path) */
  const char *model;
  const char *ref;   /* prefix of the PyTorch peer's NPZ files, or NULL */
  int batches[BENCH_MAX_BATCHES];
  int n_batches;
  int threads;       /* default: online CPUs */
  double min_time;   /* timed seconds per configuration (default 1.5) */
} bench_options;

/* Runs the program under the engine's threading environment, as aisbx
 * does (adv/threading.h): sets what the user has not chosen and, if that
 * was anything, re-executes /proc/self/exe with argv (returns only when
 * there was nothing to set or the exec failed). */
void bench_threading_env(char **argv);

/* Parses argv into *o; batches default to the n_def values of def. Prints
 * the usage line (with prog and def) and exits 2 on a bad command line.
 * First applies bench_threading_env(argv). `PROG -E` prints the engine's
 * threading environment (one NAME=VALUE a line, for the PyTorch side of
 * bench/common/lib.sh) and exits 0. */
void bench_parse_options(int argc, char **argv, const char *prog, const int *def,
                         int n_def, bench_options *o);

/* Product of the nd dims in d. */
int64_t bench_numel(const int64_t *d, int nd);

/* One JSON object on one line: bench_json_begin, any number of fields,
 * bench_json_end (which prints the newline and flushes). */
typedef struct bench_json {
  FILE *f;
  int n;
} bench_json;

void bench_json_begin(bench_json *j, FILE *f);
void bench_json_str(bench_json *j, const char *key, const char *val);
void bench_json_int(bench_json *j, const char *key, long long val);
void bench_json_num(bench_json *j, const char *key, double val);
/* The fields of one record of a timed configuration of `batch` images:
 * "load" (paired mode only: "idle" or "loaded" as `loaded` says), images/s
 * (median and best), ms per call, warm-up calls, reps, calls per rep, timed
 * and CPU seconds of that half of t. */
void bench_json_timing(bench_json *j, const bench_timing *t, int loaded,
                       int batch);
void bench_json_end(bench_json *j);

#endif
