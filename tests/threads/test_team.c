/*
 * test_team.c - the engine's thread team (src/engine/core/parallel.c,
 * issue 13 item 7):
 *   - every item of a loop runs exactly once, on a thread index below the
 *     loop's thread count, for any (n, grain, threads), and across many
 *     short loops in a row (stale claims of a finished loop would show up
 *     as items run twice or on the wrong loop);
 *   - a loop inside a chunk, and loops of several user threads at once,
 *     run serially on their caller and still cover every item; a serial
 *     run (load adaptation at one thread, nested, in an OpenMP region)
 *     runs the very chunks of the thread count asked for;
 *   - a worker that never runs does not hold the caller: in a forked child
 *     (the team's threads are not there) a 4-thread loop completes on the
 *     caller alone;
 *   - the load adaptation's policy: a window with less than 0.9 cores busy
 *     halves the threads, down to one; two quiet windows (>= 0.95) in a
 *     row double them back, more (up to 16) after doublings the next
 *     window took back; a quiet team stays whole;
 *   - results do not depend on the thread count: gradients and logits of
 *     fashion_resnet (ops on the team) and mnist_cnn at batch 16 are the
 *     same bytes with 1, 2 and 3 threads, and with 2 threads planned but
 *     run on one by the load adaptation (oneDNN's convolutions then on the
 *     primitives the plan made for one thread).
 * Usage: test_team FIXTURES_DIR
 */
#define _GNU_SOURCE
#include "adv/adv.h"
#include "core/engine.h"
#include "grad/onnx_build.h"
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *g_fixtures;

/* A loop's record: how often each item ran, the largest worker index
 * seen, and chunks that ran. */
typedef struct {
  _Atomic int *hits;
  _Atomic int max_worker;
  _Atomic long chunks;
} cover;

static void cover_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  cover *c = arg;
  for (int64_t i = lo; i < hi; i++)
    atomic_fetch_add(&c->hits[i], 1);
  int m = atomic_load(&c->max_worker);
  while (worker > m &&
         !atomic_compare_exchange_weak(&c->max_worker, &m, worker))
    ;
  atomic_fetch_add(&c->chunks, 1);
}

/* Runs one loop of n items and checks every item ran once and every worker
 * index was below `threads`. Returns 1 when all is well. */
static int run_cover(int threads, int64_t n, int64_t grain) {
  cover c = {.hits = calloc((size_t)(n ? n : 1), sizeof(_Atomic int))};
  if (!c.hits)
    return 0;
  adv__par_for(threads, n, grain, cover_chunk, &c);
  int ok = atomic_load(&c.max_worker) < (threads > 1 ? threads : 1);
  for (int64_t i = 0; i < n; i++)
    ok &= atomic_load(&c.hits[i]) == 1;
  ok &= n == 0 ? atomic_load(&c.chunks) == 0 : atomic_load(&c.chunks) >= 1;
  free(c.hits);
  return ok;
}

TEST(every_item_runs_once) {
  CHECK(adv_threads_prepare(4) == 4);
  const int threads[] = {1, 2, 3, 4};
  const int64_t ns[] = {0, 1, 7, 1000, 100003};
  const int64_t grains[] = {1, 16, 5000};
  for (int t = 0; t < 4; t++)
    for (int k = 0; k < 5; k++)
      for (int g = 0; g < 3; g++)
        if (!run_cover(threads[t], ns[k], grains[g])) {
          fprintf(stderr, "threads %d n %lld grain %lld\n", threads[t],
                  (long long)ns[k], (long long)grains[g]);
          CHECK(0);
        }
  HARNESS_CHECKED();
}

TEST(more_items_than_the_claim_word_counts) {
  /* 70000 single-item chunks exceed the 16-bit chunk count: the team
   * groups them, and every item still runs once */
  CHECK(run_cover(2, 70000, 1));
  cover c = {.hits = calloc(70000, sizeof(_Atomic int))};
  CHECK(c.hits != NULL);
  adv__par_each(2, 70000, cover_chunk, &c);
  int ok = 1;
  for (int i = 0; i < 70000; i++)
    ok &= atomic_load(&c.hits[i]) == 1;
  CHECK(ok);
  free(c.hits);
}

/* Many short loops back to back: a worker late for loop k must not claim
 * an item of loop k + 1 it was not invited to, nor run loop k's function
 * again. */
typedef struct {
  _Atomic long sum;
  long loop;
  _Atomic int wrong;
} seq_ctx;

static void seq_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  seq_ctx *c = arg;
  (void)worker;
  for (int64_t i = lo; i < hi; i++)
    atomic_fetch_add(&c->sum, c->loop * 1000 + i);
}

TEST(many_short_loops) {
  CHECK(adv_threads_prepare(3) == 3);
  int ok = 1;
  for (long l = 0; l < 20000 && ok; l++) {
    seq_ctx c = {.loop = l};
    int64_t n = 1 + l % 97;
    adv__par_for(2 + (int)(l % 2), n, 1, seq_chunk, &c);
    long want = c.loop * 1000 * n + n * (n - 1) / 2;
    ok = atomic_load(&c.sum) == want;
    if (!ok)
      fprintf(stderr, "loop %ld: sum %ld, want %ld\n", l, atomic_load(&c.sum),
              want);
  }
  CHECK(ok);
}

/* A loop started inside a chunk runs on that thread alone (worker index
 * 0), in the chunks of its thread count (a_serial_run_keeps_the_chunks). */
typedef struct {
  _Atomic int inner_calls, inner_bad, inner_items;
} nest_ctx;

static void inner_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  nest_ctx *c = arg;
  atomic_fetch_add(&c->inner_calls, 1);
  atomic_fetch_add(&c->inner_items, (int)(hi - lo));
  if (lo < 0 || hi > 100 || lo >= hi || worker != 0)
    atomic_fetch_add(&c->inner_bad, 1);
}

static void outer_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  for (int64_t i = lo; i < hi; i++)
    adv__par_for(2, 100, 1, inner_chunk, arg);
}

TEST(a_loop_inside_a_chunk_runs_serially) {
  nest_ctx c = {0};
  adv__par_for(2, 8, 1, outer_chunk, &c);
  CHECK(atomic_load(&c.inner_calls) == 8 * 8); /* 8 loops of 8 chunks */
  CHECK(atomic_load(&c.inner_items) == 8 * 100);
  CHECK(atomic_load(&c.inner_bad) == 0);
}

static void *user_thread(void *arg) {
  _Atomic int *bad = arg;
  for (int l = 0; l < 2000; l++)
    if (!run_cover(2, 1 + l % 300, 1))
      atomic_fetch_add(bad, 1);
  return NULL;
}

TEST(several_callers_at_once) {
  _Atomic int bad = 0;
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    CHECK(pthread_create(&t[i], NULL, user_thread, &bad) == 0);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  CHECK(atomic_load(&bad) == 0);
}

TEST(a_worker_that_never_runs_does_not_hold_the_caller) {
  CHECK(adv_threads_prepare(4) == 4);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) { /* the child has the caller's thread only */
    alarm(20);    /* a caller waiting for the absent workers dies here */
    int ok = 1;
    for (int l = 0; l < 200 && ok; l++)
      ok = run_cover(4, 1000, 1);
    _exit(ok ? 0 : 1);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(load_adaptation_policy) {
  /* the policy's state is process-wide: quiet windows bring it back to a
   * whole team whatever ran before (teams of up to 4 threads in the other
   * cases: at most 2 levels down) */
  for (int i = 0; i < 16; i++)
    adv__threads_adapt_feed(1.8, 0.02);
  CHECK(adv__threads_for_run(8) == 8);
  adv__threads_adapt_feed(1.2, 0.02); /* quiet, much serial work: whole */
  CHECK(adv__threads_for_run(8) == 8);
  adv__threads_adapt_feed(0.6, 0.02); /* oversubscribed: halve */
  CHECK(adv__threads_for_run(8) == 4);
  adv__threads_adapt_feed(0.6, 0.02);
  CHECK(adv__threads_for_run(8) == 2);
  CHECK(adv__threads_for_run(2) == 1); /* a smaller team: never below one */
  adv__threads_adapt_feed(0.6, 0.02);
  adv__threads_adapt_feed(0.6, 0.02); /* down to one, and no further */
  CHECK(adv__threads_for_run(8) == 1);
  adv__threads_adapt_feed(0.7, 0.02); /* one thread, still loaded */
  adv__threads_adapt_feed(1.0, 0.02); /* one quiet window: not yet */
  CHECK(adv__threads_for_run(8) == 1);
  adv__threads_adapt_feed(0.92, 0.02); /* neither: breaks the run */
  adv__threads_adapt_feed(1.0, 0.02);
  CHECK(adv__threads_for_run(8) == 1);
  adv__threads_adapt_feed(1.0, 0.02); /* two in a row: double */
  CHECK(adv__threads_for_run(8) == 2);
  for (int i = 0; i < 4; i++)
    adv__threads_adapt_feed(1.0, 0.02);
  CHECK(adv__threads_for_run(8) == 8);

  /* a host shared with other sessions: a lone thread gets whole windows
   * with a core, then whole windows without. A doubling that the next
   * window takes back doubles the quiet windows the next one needs (2, 4,
   * 8, 16, no more); a doubling that holds resets them to 2 */
  adv__threads_adapt_feed(1.8, 0.02); /* the last doubling above held */
  for (int i = 0; i < 3; i++)
    adv__threads_adapt_feed(0.6, 0.02);
  CHECK(adv__threads_for_run(8) == 1);
  for (int need = 2, round = 0; round < 5; round++) {
    for (int i = 0; i < need - 1; i++)
      adv__threads_adapt_feed(1.0, 0.02);
    CHECK(adv__threads_for_run(8) == 1); /* one window short */
    adv__threads_adapt_feed(1.0, 0.02);
    CHECK(adv__threads_for_run(8) == 2);
    adv__threads_adapt_feed(0.6, 0.02); /* taken back */
    CHECK(adv__threads_for_run(8) == 1);
    need = need < 16 ? 2 * need : 16;
  }
  for (int i = 0; i < 16; i++)
    adv__threads_adapt_feed(1.0, 0.02);
  CHECK(adv__threads_for_run(8) == 2);
  /* held: 8 windows for the next doubling (the held window counts) */
  for (int i = 0; i < 7; i++)
    adv__threads_adapt_feed(1.0, 0.02);
  CHECK(adv__threads_for_run(8) == 2);
  adv__threads_adapt_feed(1.0, 0.02);
  CHECK(adv__threads_for_run(8) == 4);
  for (int i = 0; i < 4; i++) /* held again: 4 */
    adv__threads_adapt_feed(1.0, 0.02);
  CHECK(adv__threads_for_run(8) == 8);
  adv__threads_adapt_reset();
  CHECK(adv__threads_for_run(8) == 8);
}

/* Records the chunk boundaries a loop ran (adv__par_fn). */
struct bounds {
  _Atomic int n;
  int64_t lo[256], hi[256];
};

static void record_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  struct bounds *b = arg;
  int i = atomic_fetch_add(&b->n, 1);
  if (i < 256) {
    b->lo[i] = lo;
    b->hi[i] = hi;
  }
}

/* 1 when a and b ran the same chunks (in any order). */
static int same_chunks(struct bounds *a, struct bounds *b) {
  int n = atomic_load(&a->n);
  if (n != atomic_load(&b->n) || n > 256)
    return 0;
  for (int i = 0; i < n; i++) {
    int found = 0;
    for (int j = 0; j < n && !found; j++)
      found = a->lo[i] == b->lo[j] && a->hi[i] == b->hi[j];
    if (!found)
      return 0;
  }
  return 1;
}

/* An outer loop whose chunk runs a 2-thread loop (nested: serial). */
static void nested_loop(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  if (lo == 0 && hi > 0)
    adv__par_for(2, 1000, 1, record_chunk, arg);
}

TEST(a_serial_run_keeps_the_chunks) {
  /* a kernel may round differently on other chunk boundaries (OpenBLAS
   * picks its kernels by block shape), so a loop planned for 2 threads
   * runs the same chunks on one thread: when the adaptation is down to
   * one, when nested in a chunk, inside an OpenMP region */
  adv__threads_adapt_reset();
  static struct bounds ref, a, b, c;
  adv__par_for(2, 1000, 1, record_chunk, &ref);
  CHECK(atomic_load(&ref.n) == 8); /* about 4 chunks per thread */
  for (int i = 0; i < 4; i++)
    adv__threads_adapt_feed(0.6, 0.02);
  CHECK(adv__threads_for_run(2) == 1);
  adv__par_for(2, 1000, 1, record_chunk, &a);
  CHECK(same_chunks(&ref, &a));
  adv__threads_adapt_reset();
  adv__par_each(2, 4, nested_loop, &b);
  CHECK(same_chunks(&ref, &b));
#pragma omp parallel num_threads(2)
  {
#pragma omp master
    adv__par_for(2, 1000, 1, record_chunk, &c);
  }
  CHECK(same_chunks(&ref, &c));
}

/* Logits (and with grad, the input gradient) of `model` at batch 16 with
 * `threads` threads on the fixed input x (malloc'd into *z, *dx; *dx stays
 * NULL without grad). grad = 0 plans an inference session (oneDNN's
 * forward_inference kernels, not the training ones). 0 on success. */
static int grad_of(const char *model, int grad, int threads, const float *x,
                   int64_t per, float **z, float **dx, int64_t *nz) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s.onnx", g_fixtures, model);
  adv_model *m = NULL;
  adv_session *s = NULL;
  adv_err err = {{0}};
  *z = *dx = NULL;
  if (adv_model_load_file(path, adv_load_default_params(), &m, &err))
    return fprintf(stderr, "%s: %s\n", path, err.msg), -1;
  adv_session_params sp = adv_session_default_params();
  sp.batch = 16;
  sp.threads = threads;
  sp.logits = 1;
  sp.grad = grad;
  int rc = adv_session_init(m, sp, &s, &err);
  int64_t d[ADV_MAX_DIMS];
  if (!rc && adv_session_output_shape(s, 0, d) != 2)
    rc = -1;
  if (!rc) {
    *nz = d[0] * d[1];
    *z = malloc((size_t)*nz * sizeof(float));
    if (grad)
      *dx = malloc((size_t)(16 * per) * sizeof(float));
    float loss[16];
    int64_t y[16];
    for (int i = 0; i < 16; i++)
      y[i] = i % d[1];
    if (!*z || (grad && !*dx))
      rc = -1;
    else if (grad)
      rc = adv_session_grad(s, x, adv_loss_default_params(ADV_LOSS_CE), y, NULL,
                            *z, loss, *dx, &err);
    else
      rc = adv_session_forward(s, x, *z, &err);
  }
  if (rc)
    fprintf(stderr, "%s: %s\n", model, err.msg);
  adv_session_free(s);
  adv_model_free(m);
  return rc;
}

/* 1 when two results of grad_of are the same bytes. */
static int same_bytes(const float *z, const float *z1, int64_t nz,
                      const float *dx, const float *dx1, int64_t ndx) {
  return !memcmp(z, z1, (size_t)nz * sizeof(float)) &&
         (!dx || !memcmp(dx, dx1, (size_t)ndx * sizeof(float)));
}

TEST(results_do_not_depend_on_the_thread_count) {
  const char *models[] = {"fashion_resnet", "mnist_cnn"};
  const int64_t per = 28 * 28;
  float *x = malloc(16 * per * sizeof(float));
  CHECK(x != NULL);
  uint32_t r = 12345;
  for (int64_t i = 0; i < 16 * per; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)(r >> 8) / 16777216.f;
  }
  for (int k = 0; k < 4; k++) {
    const char *model = models[k / 2];
    int grad = !(k % 2);
    const char *mode = grad ? "gradient" : "inference";
    float *z1 = NULL, *dx1 = NULL;
    int64_t nz = 0;
    CHECK(grad_of(model, grad, 1, x, per, &z1, &dx1, &nz) == 0);
    for (int t = 2; t <= 3; t++) {
      float *z = NULL, *dx = NULL;
      int64_t nz2 = 0;
      CHECK(grad_of(model, grad, t, x, per, &z, &dx, &nz2) == 0);
      CHECK(nz2 == nz);
      if (!same_bytes(z, z1, nz, dx, dx1, 16 * per)) {
        fprintf(stderr, "%s %s: %d threads differ from 1\n", model, mode, t);
        CHECK(0);
      }
      free(z);
      free(dx);
    }
    /* 2 threads planned, run on one by the load adaptation (loaded
     * windows fed to the policy): the same bytes */
    adv__threads_adapt_reset();
    for (int i = 0; i < 4; i++)
      adv__threads_adapt_feed(0.6, 0.02);
    CHECK(adv__threads_for_run(2) == 1);
    float *z = NULL, *dx = NULL;
    int64_t nz2 = 0;
    long serial0 = adv__dnnl_serial_execs();
    CHECK(grad_of(model, grad, 2, x, per, &z, &dx, &nz2) == 0);
    /* batch 16, training kernels: the convolutions are oneDNN's, run on
     * the primitives made for one thread (a primitive made for two keeps
     * opening two-thread regions whatever the OpenMP thread count).
     * Inference kernels whose summation order follows the thread count
     * (brgemm) keep their parallel primitive; the bytes are checked in
     * both cases */
    if (!getenv("ADV_NO_DNNL") && grad)
      CHECK(adv__dnnl_serial_execs() > serial0);
    CHECK(nz2 == nz);
    if (!same_bytes(z, z1, nz, dx, dx1, 16 * per)) {
      fprintf(stderr, "%s %s: 2 threads run on 1 differ\n", model, mode);
      CHECK(0);
    }
    free(z);
    free(dx);
    adv__threads_adapt_reset();
    CHECK(adv__threads_for_run(2) == 2);
    free(z1);
    free(dx1);
  }
  free(x);
}

/* What a session run on another thread needs (run_elsewhere). */
struct elsewhere {
  adv_session *s;
  const float *x;
  float *y;
  int rc;
};

static void *run_elsewhere(void *arg) {
  struct elsewhere *e = arg;
  adv_err err = {{0}};
  e->rc = adv_session_run(e->s, &e->x, (void *const *)&e->y, NULL, &err);
  return NULL;
}

TEST(a_session_runs_on_a_thread_that_did_not_plan_it) {
  /* The evaluator plans its worker sessions on the caller and runs them on
   * the team's threads. A grouped convolution with 3 channels per group
   * is one oneDNN implements as im2col + GEMM ("gemm:jit"), whose
   * scratchpad is thread-local to the thread that made the primitive: run
   * on another thread it used to find no buffer there. Batch 8, groups 2,
   * 6 -> 6 channels, 3x3, pad 1; checked against a direct convolution in
   * double precision. */
  const int64_t N = 8, C = 6, M = 6, G = 2, H = 12, CG = C / G, MG = M / G;
  int64_t xd[4] = {N, C, H, H}, wd[4] = {M, CG, 3, 3};
  float w[6 * 3 * 9], *x = malloc(sizeof(float) * N * C * H * H),
                      *y = malloc(sizeof(float) * N * M * H * H);
  CHECK(x && y);
  if (!x || !y)
    return;
  uint32_t r = 99;
  for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
    r = r * 1664525u + 1013904223u;
    w[i] = (float)(r >> 8) / 16777216.f - 0.5f;
  }
  for (int64_t i = 0; i < N * C * H * H; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)(r >> 8) / 16777216.f;
  }
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 4, xd);
  ob_init_f32(&b, "W", 4, wd, w);
  ob_node(&b, "Conv", "x,W", "y");
  ob_attr_int(&b, "group", G);
  ob_attr_ints(&b, "pads", 4, (int64_t[]){1, 1, 1, 1});
  ob_output(&b, "y");
  size_t len;
  unsigned char *bytes = ob_finish(&b, &len);
  adv_model *m = NULL;
  adv_err err = {{0}};
  CHECK(adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err) ==
        0);
  free(bytes);
  for (int threads = 1; m && threads <= 2; threads++) {
    adv_session_params sp = adv_session_default_params();
    sp.threads = threads;
    adv_session *s = NULL;
    CHECK(adv_session_init(m, sp, &s, &err) == 0);
    if (!s)
      break;
    struct elsewhere e = {.s = s, .x = x, .y = y, .rc = -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_elsewhere, &e) == 0);
    pthread_join(t, NULL);
    CHECK(e.rc == 0);
    double worst = 0;
    for (int64_t n = 0; n < N; n++)
      for (int64_t o = 0; o < M; o++)
        for (int64_t i = 0; i < H; i++)
          for (int64_t j = 0; j < H; j++) {
            int64_t g = o / MG;
            double acc = 0;
            for (int64_t c = 0; c < CG; c++)
              for (int64_t a = 0; a < 3; a++)
                for (int64_t bb = 0; bb < 3; bb++) {
                  int64_t ii = i + a - 1, jj = j + bb - 1;
                  if (ii >= 0 && ii < H && jj >= 0 && jj < H)
                    acc += (double)x[((n * C + g * CG + c) * H + ii) * H + jj] *
                           w[((o * CG + c) * 3 + a) * 3 + bb];
                }
            double d = fabs(acc - y[((n * M + o) * H + i) * H + j]);
            worst = d > worst ? d : worst;
          }
    CHECK(worst < 1e-5);
    adv_session_free(s);
  }
  adv_model_free(m);
  free(x);
  free(y);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_team FIXTURES_DIR\n");
    return 2;
  }
  g_fixtures = argv[1];
  RUN(every_item_runs_once);
  RUN(more_items_than_the_claim_word_counts);
  RUN(many_short_loops);
  RUN(a_loop_inside_a_chunk_runs_serially);
  RUN(a_serial_run_keeps_the_chunks);
  RUN(several_callers_at_once);
  RUN(a_worker_that_never_runs_does_not_hold_the_caller);
  RUN(results_do_not_depend_on_the_thread_count);
  RUN(a_session_runs_on_a_thread_that_did_not_plan_it);
  RUN(load_adaptation_policy);
  return harness_report();
}
