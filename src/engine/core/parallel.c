/*
 * parallel.c - the engine's own thread team for its kernels (im2col GEMMs,
 * pooling, element-wise ops): a parallel loop whose caller never waits for a
 * thread that has not started.
 *
 * Why not OpenMP for these (issue 13 item 7): an OpenMP parallel region ends
 * in a barrier that every thread of the team must reach. On a machine whose
 * cores are busy with other processes, a team thread woken for the region
 * often sits in the run queue behind another process for a whole time slice
 * (milliseconds), and the caller sleeps at the barrier meanwhile, even when
 * the work was split so finely that the caller could have done it all. The
 * engine runs dozens of short regions per forward, so a loaded machine made
 * it lose most of its CPU share (0.6 of the one core its two threads were
 * entitled to beside two busy loops).
 *
 * Here a loop is cut into chunks that threads claim one at a time from an
 * atomic counter; the caller claims chunks too, from the start. A worker
 * that wakes late finds nothing left and goes back to sleep without the
 * caller ever waiting for it; the caller waits only for chunks a worker has
 * already claimed. Which thread runs a chunk never changes a result: chunk
 * boundaries depend on (n, grain, threads) only, and every kernel writes
 * each output element from exactly one chunk.
 *
 * Waiting is passive (a short spin, then a futex), like OMP_WAIT_POLICY=
 * passive for the OpenMP regions that remain (oneDNN's convolutions).
 *
 * One process-wide team, used by one loop at a time: a loop started while
 * another runs (sessions on several threads, or a nested loop inside a
 * chunk, or one inside an OpenMP region) runs on its calling thread alone.
 * Workers are created on first use (or by adv_threads_prepare(), before a
 * sandbox forbids creating threads) and live until the process exits.
 */
#include "engine.h"

#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xmmintrin.h>

#define TEAM_MAX 64           /* threads of one loop, the caller included */
#define TEAM_CHUNKS_MAX 65535 /* the claim word's 16-bit chunk fields */
#define TEAM_CHUNKS_PER_THREAD 4
#define TEAM_SPIN 2000 /* pause iterations before a futex wait (some us) */

/* One worker: the generation of the loop it is invited to, and whether it
 * sleeps on that word (so the caller knows to wake it). */
typedef struct {
  _Atomic uint32_t invite;
  _Atomic int sleeping;
  int index; /* 1..TEAM_MAX-1; the caller of a loop is 0 */
} team_worker;

static struct {
  pthread_mutex_t busy; /* held by the caller of the running loop */
  pthread_mutex_t grow; /* creation of workers */
  _Atomic int n_workers;
  int create_failed; /* pthread_create refused once: no more tries */
  team_worker w[TEAM_MAX];
  /* The running loop: written by its caller before the claim word is
   * published, and read by a thread only after it claimed a chunk of that
   * loop (the loop cannot end before that chunk is done). */
  adv__par_fn fn;
  void *ctx;
  int64_t n, chunk;
  unsigned mxcsr;
  /* generation (32 bits) | chunks (16) | next chunk (16) */
  _Atomic uint64_t claim;
  _Atomic uint32_t done; /* chunks finished of the running loop */
  _Atomic int caller_sleeping;
  _Atomic uint32_t gen; /* of the last loop; written under `busy` */
} team = {.busy = PTHREAD_MUTEX_INITIALIZER, .grow = PTHREAD_MUTEX_INITIALIZER};

/* 1 on a worker, and on a caller while its loop runs: a loop started there
 * runs serially. */
static _Thread_local int in_team;

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n) {
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Claims and runs chunks of loop `gen` as thread `index` until none is
 * left (or another loop has started). The last chunk done wakes the
 * caller when it sleeps. */
static void claim_and_run(uint32_t gen, int index) {
  for (;;) {
    uint64_t c = atomic_load_explicit(&team.claim, memory_order_acquire);
    uint32_t nch = (uint32_t)(c >> 16) & 0xffff, next = (uint32_t)c & 0xffff;
    if ((uint32_t)(c >> 32) != gen || next >= nch)
      return;
    if (!atomic_compare_exchange_weak_explicit(
            &team.claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
      continue;
    /* chunk `next` of loop gen is ours: the loop's fields are stable */
    if (_mm_getcsr() != team.mxcsr)
      _mm_setcsr(team.mxcsr);
    int64_t lo = (int64_t)next * team.chunk;
    int64_t hi = lo + team.chunk < team.n ? lo + team.chunk : team.n;
    team.fn(team.ctx, lo, hi, index);
    uint32_t d = atomic_fetch_add(&team.done, 1) + 1;
    if (d == nch && atomic_load(&team.caller_sleeping))
      futex_wake(&team.done, 1);
  }
}

/* A worker: runs the chunks of each loop it is invited to, sleeps between
 * loops. */
static void *worker_main(void *arg) {
  team_worker *w = arg;
  uint32_t seen = atomic_load(&w->invite);
  in_team = 1;
  for (;;) {
    uint32_t g = atomic_load(&w->invite);
    if (g != seen) {
      seen = g;
      claim_and_run(g, w->index);
      continue;
    }
    for (int i = 0;
         i < TEAM_SPIN &&
         atomic_load_explicit(&w->invite, memory_order_relaxed) == seen;
         i++)
      _mm_pause();
    if (atomic_load(&w->invite) != seen)
      continue;
    atomic_store(&w->sleeping, 1);
    if (atomic_load(&w->invite) == seen)
      futex_wait(&w->invite, seen);
    atomic_store(&w->sleeping, 0);
  }
  return NULL;
}

/* In a forked child only the forking thread exists: the locks start free
 * (another thread may have held one at the fork). The workers the parent
 * had are counted still but absent: a loop invites them and its caller
 * runs every chunk itself, since nobody waits for a worker that has not
 * claimed one (tests/threads/test_team.c). */
static void team_atfork_child(void) {
  pthread_mutex_init(&team.busy, NULL);
  pthread_mutex_init(&team.grow, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void team_atfork_register(void) {
  pthread_atfork(NULL, NULL, team_atfork_child);
}

/* Makes sure workers 1..want-1 exist; returns how many threads a loop can
 * use (the caller included), at least 1. */
static int team_grow(int want) {
  pthread_once(&atfork_once, team_atfork_register);
  if (want > TEAM_MAX)
    want = TEAM_MAX;
  int have = atomic_load(&team.n_workers) + 1;
  if (have >= want)
    return want;
  pthread_mutex_lock(&team.grow);
  have = atomic_load(&team.n_workers) + 1;
  while (have < want && !team.create_failed) {
    team_worker *w = &team.w[have];
    w->index = have;
    atomic_store(&w->invite, atomic_load(&team.gen));
    pthread_attr_t a;
    pthread_t tid;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 4 << 20);
    int rc = pthread_create(&tid, &a, worker_main, w);
    pthread_attr_destroy(&a);
    if (rc) { /* e.g. inside a sandbox: run with the workers there are */
      team.create_failed = 1;
      break;
    }
    have++;
    atomic_store(&team.n_workers, have - 1);
  }
  pthread_mutex_unlock(&team.grow);
  return have < want ? have : want;
}

int adv_threads_prepare(int threads) {
  return team_grow(threads < 1 ? 1 : threads);
}

/* Runs fn over [0, n) in nch = ceil(n / chunk) chunks on up to `threads`
 * threads (see adv__par_for); serially when the team is busy, when the
 * load adaptation is down to one thread, or when called from a chunk or an
 * OpenMP region. Serially the chunks are the same ones, run in order on
 * the caller: a kernel may round differently on other boundaries (OpenBLAS
 * picks its kernels by block shape), and a job must give the same bytes
 * whoever runs its chunks. */
static void team_run(int threads, int64_t n, int64_t chunk, adv__par_fn fn,
                     void *ctx) {
  if ((n + chunk - 1) / chunk > TEAM_CHUNKS_MAX)
    chunk = (n + TEAM_CHUNKS_MAX - 1) / TEAM_CHUNKS_MAX;
  int64_t nch = (n + chunk - 1) / chunk;
  /* inside an OpenMP region (the evaluator's data-parallel workers), the
   * cores are taken already: serial, as OpenMP does with nested regions */
  if (threads > 1 && nch > 1 && !in_team && !omp_in_parallel()) {
    /* the chunks are those of `threads`; how many threads run them
     * follows the load (adv__threads_for_run) */
    int run = adv__threads_for_run(threads);
    if (run > 1 && pthread_mutex_trylock(&team.busy) == 0) {
      int T = team_grow(run < nch ? run : (int)nch);
      if (T > 1) {
        in_team = 1;
        uint32_t gen = atomic_fetch_add(&team.gen, 1) + 1;
        team.fn = fn;
        team.ctx = ctx;
        team.n = n;
        team.chunk = chunk;
        team.mxcsr = _mm_getcsr();
        atomic_store(&team.done, 0);
        atomic_store_explicit(&team.claim,
                              ((uint64_t)gen << 32) | ((uint64_t)nch << 16),
                              memory_order_release);
        for (int i = 1; i < T; i++) {
          team_worker *w = &team.w[i];
          atomic_store(&w->invite, gen);
          if (atomic_exchange(&w->sleeping, 0))
            futex_wake(&w->invite, 1);
        }
        claim_and_run(gen, 0);
        for (int i = 0; atomic_load(&team.done) != (uint32_t)nch; i++) {
          if (i < TEAM_SPIN) {
            _mm_pause();
            continue;
          }
          atomic_store(&team.caller_sleeping, 1);
          uint32_t d = atomic_load(&team.done);
          if (d != (uint32_t)nch)
            futex_wait(&team.done, d);
          atomic_store(&team.caller_sleeping, 0);
        }
        in_team = 0;
        pthread_mutex_unlock(&team.busy);
        return;
      }
      pthread_mutex_unlock(&team.busy);
    }
  }
  for (int64_t lo = 0; lo < n; lo += chunk)
    fn(ctx, lo, lo + chunk < n ? lo + chunk : n, 0);
}

void adv__par_for(int threads, int64_t n, int64_t grain, adv__par_fn fn,
                  void *ctx) {
  if (n <= 0)
    return;
  if (grain < 1)
    grain = 1;
  int64_t chunk = n;
  if (threads > 1) {
    chunk = (n + (int64_t)threads * TEAM_CHUNKS_PER_THREAD - 1) /
            ((int64_t)threads * TEAM_CHUNKS_PER_THREAD);
    if (chunk < grain)
      chunk = grain;
  }
  team_run(threads, n, chunk, fn, ctx);
}

void adv__par_each(int threads, int64_t n, adv__par_fn fn, void *ctx) {
  if (n > 0)
    team_run(threads, n, 1, fn, ctx);
}

/*
 * Load adaptation. On a machine whose cores are busy with other processes,
 * a team of T threads gets its CPU time in slices that do not line up: the
 * threads wait for each other at every loop end and every oneDNN (OpenMP)
 * barrier, and each waiting thread hands its core to another process. So
 * while the machine is oversubscribed the engine runs its loops on fewer
 * threads (bench/README.md, "Load adaptation and the paired loaded mode").
 *
 * Only execution changes: a loop's chunks and a session's plan stay those
 * of the thread count asked for, so the same job gives the same bytes on a
 * quiet machine and on a busy one (tests/threads/test_team.c runs sessions
 * planned for 2 threads on one and compares the bytes; for its models the
 * planned count does not matter either, but on larger ones it may).
 *
 * The signal: the process's CPU time over the wall time of engine runs
 * ("cores busy"), accumulated over windows of ADAPT_WINDOW_S of run time.
 * On a quiet machine the engine keeps at least one core busy (one thread
 * all the time; two keep 1.3-1.9 on parallel work); when other processes
 * hold the cores its runnable threads wait in the run queue and it keeps
 * 0.5-0.85 busy. A window below ADAPT_BUSY_LOW halves the threads (level +
 * 1, down to one thread for the largest team seen); ADAPT_QUIET windows in
 * a row at or above ADAPT_BUSY_HIGH double them back. On a host shared
 * with other sessions a lone thread gets its group's share in slices:
 * whole 20 ms windows with a core, then windows without. So a doubling
 * that the next window halves again doubles the quiet windows the next
 * doubling needs (up to ADAPT_QUIET_MAX, 320 ms of run time), and one
 * that holds halves them again.
 *
 * ADV_THREADS_ADAPT=0 in the environment turns it off; =force pins the
 * halved level (tests); =manual measures nothing and takes its windows
 * from adv__threads_adapt_feed only (tests).
 */
#define ADAPT_WINDOW_S 0.02  /* 20 ms of run time per decision */
#define ADAPT_BUSY_LOW 0.9   /* cores busy: oversubscribed below */
#define ADAPT_BUSY_HIGH 0.95 /* ... quiet at or above */
#define ADAPT_QUIET 2        /* quiet windows in a row that double back */
#define ADAPT_QUIET_MAX 16   /* ... after doublings that did not hold */

static struct {
  pthread_once_t once;
  int mode;  /* 1 adapt, 0 off, 2 forced, 3 manual (tests) */
  int debug; /* ADV_ADAPT_DEBUG: each decision on stderr */
  _Atomic int level, max_threads;
  pthread_mutex_t lock;     /* the window and the decision */
  double win_wall, win_cpu; /* seconds of the open window */
  int quiet_seen;
  int quiet_need; /* quiet windows that double back now (0: ADAPT_QUIET) */
  int doubled;    /* the last decision doubled: the next window tests it */
} adapt = {.once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER};

static void adapt_init(void) {
  const char *e = getenv("ADV_THREADS_ADAPT");
  adapt.mode = !e                     ? 1
               : !strcmp(e, "0")      ? 0
               : !strcmp(e, "force")  ? 2
               : !strcmp(e, "manual") ? 3
                                      : 1;
  adapt.debug = getenv("ADV_ADAPT_DEBUG") != NULL;
  if (adapt.mode == 2)
    atomic_store(&adapt.level, 1);
}

/* CPU seconds of the whole process (all threads); wall time is
 * adv__now_s(). */
static double cpu_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int adv__threads_for_run(int threads) {
  pthread_once(&adapt.once, adapt_init);
  int m = atomic_load(&adapt.max_threads);
  while (threads > m &&
         !atomic_compare_exchange_weak(&adapt.max_threads, &m, threads))
    ;
  int t = threads >> atomic_load(&adapt.level);
  return t < 1 ? 1 : t;
}

void adv__run_mark(adv__run_stamp *st) {
  pthread_once(&adapt.once, adapt_init);
  st->on = adapt.mode == 1 && !in_team; /* a worker's runs are its caller's */
  if (st->on) {
    st->wall = adv__now_s();
    st->cpu = cpu_now_s();
  }
}

/* One closed window with `busy` cores busy: the next level. Called with
 * adapt.lock held. */
static void adapt_decide(double busy, double wall) {
  int level = atomic_load(&adapt.level);
  int max = atomic_load(&adapt.max_threads), top = 0;
  while ((max >> (top + 1)) >= 1)
    top++; /* the level where the largest team is down to one thread */
  if (adapt.debug)
    fprintf(stderr, "adapt: %.2f cores busy over %.1f ms, level %d\n", busy,
            wall * 1e3, level);
  if (adapt.quiet_need < ADAPT_QUIET)
    adapt.quiet_need = ADAPT_QUIET;
  int tested = adapt.doubled;
  adapt.doubled = 0;
  if (busy < ADAPT_BUSY_LOW) {
    adapt.quiet_seen = 0;
    /* a doubling the very next window takes back: the quiet windows were
     * the other processes pausing, not leaving; wait longer next time */
    if (tested && adapt.quiet_need < ADAPT_QUIET_MAX)
      adapt.quiet_need *= 2;
    if (level < top)
      atomic_store(&adapt.level, level + 1);
    return;
  }
  if (tested && adapt.quiet_need > ADAPT_QUIET) /* the doubling held */
    adapt.quiet_need /= 2;
  if (busy < ADAPT_BUSY_HIGH || level == 0) {
    adapt.quiet_seen = 0;
  } else if (++adapt.quiet_seen >= adapt.quiet_need) {
    adapt.quiet_seen = 0;
    adapt.doubled = 1;
    atomic_store(&adapt.level, level - 1);
  }
}

void adv__run_observe(const adv__run_stamp *st) {
  if (!st->on)
    return;
  double wall = adv__now_s() - st->wall, cpu = cpu_now_s() - st->cpu;
  pthread_mutex_lock(&adapt.lock);
  adapt.win_wall += wall;
  adapt.win_cpu += cpu;
  if (adapt.win_wall >= ADAPT_WINDOW_S) {
    adapt_decide(adapt.win_cpu / adapt.win_wall, adapt.win_wall);
    adapt.win_wall = adapt.win_cpu = 0;
  }
  pthread_mutex_unlock(&adapt.lock);
}

void adv__run_tick(adv__run_stamp *st) {
  if (st->on && adv__now_s() - st->wall >= ADAPT_WINDOW_S) {
    adv__run_observe(st);
    adv__run_mark(st);
  }
}

void adv__threads_adapt_feed(double busy, double wall) {
  pthread_once(&adapt.once, adapt_init);
  pthread_mutex_lock(&adapt.lock);
  adapt_decide(busy, wall);
  pthread_mutex_unlock(&adapt.lock);
}

void adv__threads_adapt_reset(void) {
  pthread_once(&adapt.once, adapt_init);
  pthread_mutex_lock(&adapt.lock);
  atomic_store(&adapt.level, adapt.mode == 2 ? 1 : 0);
  adapt.win_wall = adapt.win_cpu = 0;
  adapt.quiet_seen = adapt.doubled = 0;
  adapt.quiet_need = ADAPT_QUIET;
  pthread_mutex_unlock(&adapt.lock);
}

int adv__threads_adapt_on(void) {
  pthread_once(&adapt.once, adapt_init);
  return adapt.mode != 0;
}
