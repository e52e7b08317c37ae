/*
 * main.c - aisbx-runner: one job in a fresh sandboxed process.
 *
 *   0. wait for the supervisor's go on fd 6 (it moves us into the job's
 *      memory cgroup while we load; nothing has been forked yet);
 *   1. enter the namespaces (single-threaded, first thing), or check
 *      the ones the supervisor cloned us into (argv[1] "--ns=...");
 *   2. read SPEC, MODEL and DATA (from fd 0, or memfds at fds 3 and 4);
 *   3. lock: empty root holding /in/data, no_new_privs, no capabilities,
 *      Landlock;
 *   4. initialise what the engine would allocate lazily (OpenMP pool with
 *      the job's thread count, oneDNN's engine, single-threaded OpenBLAS)
 *      and start the abort watcher thread;
 *   5. seal: rlimits, seccomp (the program the supervisor compiled once,
 *      passed at fd 5, else compiled here); send READY, preceded by the
 *      LOG of every step so far (held until then, or until an error);
 *   6. run the job (or a self-test probe), send results, DONE, exit.
 * Nothing is parsed (model or dataset) before step 5.
 */
#define _GNU_SOURCE
#include "runner.h"

#include "adv/adv.h"
#include "adv/data.h"

#include <dnnl.h>
#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void openblas_set_num_threads(int);

volatile int sbx__runner_abort;

/*
 * Log messages of the start-up, held and written together: one wake-up of
 * the supervisor instead of one per sandbox step. Held until the engine's
 * warm-up (which could be killed, e.g. by the memory cap, and the logs so
 * far must not die with it), then again until READY; an error (ERROR, or
 * the SIGSYS/SIGXCPU handlers) writes them first. Each held message is a
 * whole frame (header + payload, as sbx_ipc_send2 writes it); flushing
 * writes whole frames in writes of at most 4096 bytes, so another writer
 * can never split one. `busy` is taken (atomically) by whoever appends or
 * flushes; a signal handler that finds it taken (it interrupted main, or
 * runs on another thread meanwhile) sends its ERROR without the held logs
 * rather than corrupt them.
 */
static struct {
  uint8_t buf[16384];
  size_t len;
  int on;   /* 1 until READY */
  int busy; /* 1 while hold() or flush_held() works on buf */
} g_held = {.on = 1};

/* Writes the held frames, if any (async-signal-safe). */
static void flush_held(void) {
  if (__atomic_exchange_n(&g_held.busy, 1, __ATOMIC_ACQUIRE))
    return;
  size_t off = 0;
  while (off < g_held.len) {
    size_t n = 0; /* whole frames up to 4096 bytes */
    while (off + n < g_held.len) {
      const uint8_t *h = g_held.buf + off + n;
      size_t f = 8 + ((size_t)h[4] | (size_t)h[5] << 8 | (size_t)h[6] << 16 |
                      (size_t)h[7] << 24);
      if (n && n + f > 4096)
        break;
      n += f;
    }
    const uint8_t *p = g_held.buf + off;
    size_t left = n;
    while (left) {
      ssize_t w = write(RUNNER_OUT_FD, p, left);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        break;
      p += w;
      left -= (size_t)w;
    }
    off += n;
  }
  g_held.len = 0;
  __atomic_store_n(&g_held.busy, 0, __ATOMIC_RELEASE);
}

/* Appends one frame to the held logs; 0, or -1 when they are off, full or
 * busy (the caller then flushes and sends the frame itself). */
static int hold(uint32_t type, const uint8_t *payload, size_t n) {
  if (!g_held.on || g_held.len + 8 + n > sizeof(g_held.buf) ||
      __atomic_exchange_n(&g_held.busy, 1, __ATOMIC_ACQUIRE))
    return -1;
  uint8_t *h = g_held.buf + g_held.len;
  for (int i = 0; i < 4; i++) {
    h[i] = (uint8_t)(type >> (8 * i));
    h[4 + i] = (uint8_t)(n >> (8 * i));
  }
  memcpy(h + 8, payload, n);
  g_held.len += 8 + n;
  __atomic_store_n(&g_held.busy, 0, __ATOMIC_RELEASE);
  return 0;
}

void sbx__runner_log(sbx_log_level lvl, const char *fmt, ...) {
  sbx_ipc_log m = {.level = (uint32_t)lvl};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m.text, sizeof(m.text), fmt, ap);
  va_end(ap);
  uint8_t buf[1024];
  int n = sbx_ipc_log_encode(&m, buf, sizeof(buf));
  if (n >= 0 && hold(SBX_IPC_LOG, buf, (size_t)n) != 0) {
    flush_held();
    sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_LOG, buf, (size_t)n);
  }
}

/* Encodes and sends one ERROR (async-signal-safe: stack buffer, writes). */
static void send_error(const sbx_ipc_error *m) {
  flush_held();
  uint8_t buf[1024];
  int n = sbx_ipc_error_encode(m, buf, sizeof(buf));
  if (n >= 0)
    sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_ERROR, buf, (size_t)n);
}

void sbx__runner_error(int status, const char *fmt, ...) {
  sbx_ipc_error m = {.status = status};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m.message, sizeof(m.message), fmt, ap);
  va_end(ap);
  send_error(&m);
}

static void sandbox_log(void *ud, sbx_log_level lvl, const char *msg) {
  (void)ud;
  sbx__runner_log(lvl, "sandbox: %s", msg);
}

/* SIGSYS hook: report the syscall number (async-signal-safe). */
static void on_forbidden(int nr) {
  sbx_ipc_error m = {.status = SBX_ERR_SYSCALL,
                     .forbidden_syscall = (uint32_t)nr,
                     .message = "forbidden system call"};
  send_error(&m);
}

/* SIGXCPU hook (async-signal-safe). */
static void on_cpu_limit(void) {
  sbx_ipc_error m = {.status = SBX_ERR_CPU,
                     .message = "CPU time limit exceeded"};
  send_error(&m);
}

/* ---- reading the inputs ---- */
typedef struct inputs {
  sbx_job_spec spec;
  int have_spec, have_model, have_data;
  uint8_t *model, *data;
  size_t model_len, data_len;
} inputs;

static int on_spec(void *ud, uint32_t type, const uint8_t *p, size_t len) {
  inputs *in = ud;
  if (sbx_job_spec_decode(p, len, &in->spec))
    return -EINVAL;
  in->have_spec = 1;
  return 0;
}

/* Takes a copy of MODEL / DATA payloads (the decoder frees its buffer). */
static int on_blob(void *ud, uint32_t type, const uint8_t *p, size_t len) {
  inputs *in = ud;
  uint8_t *c = malloc(len ? len : 1);
  if (!c)
    return -ENOMEM;
  memcpy(c, p, len);
  if (type == SBX_IPC_MODEL) {
    in->model = c;
    in->model_len = len;
    in->have_model = 1;
  } else {
    in->data = c;
    in->data_len = len;
    in->have_data = 1;
  }
  return 0;
}

static int on_abort(void *ud, uint32_t type, const uint8_t *p, size_t len) {
  sbx__runner_abort = 1;
  return 0;
}

/* Reads a whole memfd of the expected size (then closes it). Inputs over
 * the engine's file cap are not read (*out stays NULL): the job reports
 * them with the cap, after the sandbox is sealed. */
static int read_memfd(int fd, size_t want, size_t cap, uint8_t **out) {
  struct stat sb;
  if (fstat(fd, &sb) != 0 || (size_t)sb.st_size != want)
    return -EINVAL;
  if (want > cap) {
    close(fd);
    return 0;
  }
  uint8_t *b = malloc(want ? want : 1);
  if (!b)
    return -ENOMEM;
  size_t got = 0;
  while (got < want) {
    ssize_t r = pread(fd, b + got, want - got, (off_t)got);
    if (r <= 0) {
      free(b);
      return -EIO;
    }
    got += (size_t)r;
  }
  close(fd);
  *out = b;
  return 0;
}

static int read_inputs(inputs *in) {
  static const sbx_ipc_dispatch table[] = {{SBX_IPC_SPEC, on_spec},
                                           {SBX_IPC_MODEL, on_blob},
                                           {SBX_IPC_DATA, on_blob},
                                           {SBX_IPC_ABORT, on_abort}};
  sbx_ipc_decoder d;
  sbx_ipc_decoder_init(&d, SBX_IPC_TO_RUNNER, table, 4, in);
  uint8_t buf[65536];
  for (;;) {
    if (in->have_spec && (in->have_model || in->spec.model_in_memfd) &&
        (in->have_data || in->spec.data_in_memfd) && sbx_ipc_decoder_idle(&d))
      break;
    ssize_t r = read(RUNNER_IN_FD, buf, sizeof(buf));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      sbx_ipc_decoder_free(&d);
      return -EPIPE;
    }
    if (sbx_ipc_decoder_feed(&d, buf, (size_t)r)) {
      sbx__runner_log(SBX_LOG_ERROR, "protocol: %s", d.why);
      sbx_ipc_decoder_free(&d);
      return -EPROTO;
    }
  }
  sbx_ipc_decoder_free(&d);
  int rc = 0;
  if (in->spec.model_in_memfd && !in->have_model)
    rc = read_memfd(3, in->spec.model_len,
                    adv_load_default_params().max_file_bytes, &in->model);
  in->model_len = in->spec.model_in_memfd ? in->spec.model_len : in->model_len;
  if (!rc && in->spec.data_in_memfd && !in->have_data)
    rc = read_memfd(4, in->spec.data_len,
                    adv_io_default_limits().max_file_bytes, &in->data);
  in->data_len = in->spec.data_in_memfd ? in->spec.data_len : in->data_len;
  return rc;
}

/* The supervisor's precompiled seccomp program from RUNNER_FILTER_FD
 * (then closed), or NULL when it passed none (seal compiles it). */
static void *read_filter(size_t *len) {
  struct stat sb;
  *len = 0;
  if (fstat(RUNNER_FILTER_FD, &sb) != 0)
    return NULL; /* not passed */
  void *b = NULL;
  if (sb.st_size > 0 && sb.st_size <= 65536 &&
      (b = malloc((size_t)sb.st_size)) &&
      pread(RUNNER_FILTER_FD, b, (size_t)sb.st_size, 0) == sb.st_size) {
    *len = (size_t)sb.st_size;
  } else {
    free(b);
    b = NULL;
  }
  close(RUNNER_FILTER_FD);
  return b;
}

/* The abort watcher: ABORT from the worker, or the worker hanging up. */
static void *abort_watcher(void *arg) {
  static const sbx_ipc_dispatch table[] = {{SBX_IPC_ABORT, on_abort}};
  sbx_ipc_decoder d;
  sbx_ipc_decoder_init(&d, SBX_IPC_TO_RUNNER, table, 1, NULL);
  uint8_t buf[256];
  for (;;) {
    ssize_t r = read(RUNNER_IN_FD, buf, sizeof(buf));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0 || sbx_ipc_decoder_feed(&d, buf, (size_t)r) || sbx__runner_abort)
      break;
  }
  sbx__runner_abort = 1;
  sbx_ipc_decoder_free(&d);
  return NULL;
}

/* Everything the engine would otherwise set up lazily inside the sandbox
 * (threads cannot be created under RLIMIT_NPROC 0 for a non-root user). */
static int warm_up(int threads) {
  openblas_set_num_threads(1);
  omp_set_num_threads(threads);
  int seen = 0;
#pragma omp parallel num_threads(threads) reduction(+ : seen)
  seen += 1;
  dnnl_engine_t eng;
  if (dnnl_engine_create(&eng, dnnl_cpu, 0) == dnnl_success)
    dnnl_engine_destroy(eng);
  return seen;
}

/*
 * AddressSanitizer builds (tests only): no leak check at exit. LeakSanitizer
 * stops the world with clone() and ptrace, which the seccomp filter kills,
 * and the runner's memory dies with it anyway. The supervisor gives the
 * runner a clean environment, so this is the runner's only ASan setting.
 */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "detect_leaks=0";
}
#endif

int main(int argc, char **argv) {
  /* `aisbx-runner --exit`: exec and library loading only, nothing else (the
   * floor of a cold start, for bench_spawn); the supervisor passes only
   * "--ns=..." (sbx_sandbox_clone) */
  if (argc == 2 && !strcmp(argv[1], "--exit"))
    return 0;
  /* a runner cloned by the supervisor starts with every signal blocked
   * (sbx_sandbox_clone): no signal of ours is blocked from here on */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (getenv("AISBX_RUNNER_LOG_EACH")) /* sbx_runner_params.log_each_step */
    g_held.on = 0;
  /* wait until the supervisor has put us in our memory cgroup (it made
   * the cgroup while we were exec'd and loaded our libraries) */
  char go;
  ssize_t gr;
  while ((gr = read(RUNNER_GO_FD, &go, 1)) < 0 && errno == EINTR) {
  }
  if (gr == 0 || (gr < 0 && errno != EBADF))
    return 3; /* the supervisor is gone */
  close(RUNNER_GO_FD);
  sbx_sandbox_params sp;
  sbx_sandbox_default_params(&sp);
  sp.log = sandbox_log;
  sp.on_forbidden = on_forbidden;
  sp.on_cpu_limit = on_cpu_limit;
  size_t filter_len; /* before anything opens a file that could take fd 5 */
  void *filter = read_filter(&filter_len);
  sp.filter = filter;
  sp.filter_len = filter_len;
  sbx_sandbox_state st;
  /* born in our namespaces (the supervisor cloned us into them) or not */
  int rc = argc == 2 && !strncmp(argv[1], "--ns=", 5)
               ? sbx_sandbox_adopt(&sp, argv[1], &st)
               : sbx_sandbox_unshare(&sp, &st);
  if (rc) {
    sbx__runner_error(SBX_ERR_SANDBOX,
                      "cannot enter the sandbox (namespaces): %s",
                      strerror(-rc));
    return 3;
  }
  inputs in;
  memset(&in, 0, sizeof(in));
  if ((rc = read_inputs(&in))) {
    sbx__runner_error(SBX_ERR_PROTOCOL, "cannot read the job's inputs: %s",
                      strerror(-rc));
    return 3;
  }
  sp.mem_bytes = in.spec.mem_bytes;
  sp.memcap = (sbx_memcap_kind)in.spec.memcap_kind;
  sp.cpu_seconds = in.spec.cpu_seconds;
  sbx_file files[1] = {{"data", in.data, in.data_len}};
  int nfiles = in.spec.kind != SBX_JOB_PROBE && in.data ? 1 : 0;
  size_t data_len = in.data_len; /* kept for the job's size check */
  if ((rc = sbx_sandbox_lock(&sp, files, nfiles, &st))) {
    sbx__runner_error(SBX_ERR_SANDBOX,
                      "cannot enter the sandbox (filesystem/privileges): %s",
                      strerror(-rc));
    return 3;
  }
  if (nfiles &&
      st.input_dir[0]) { /* the copy in /in is the one the job reads */
    free(in.data);
    in.data = NULL;
  }
  int threads = (int)in.spec.threads;
  flush_held(); /* the steps so far, before the engine starts */
  int got = warm_up(threads);
  if (got != threads)
    sbx__runner_log(SBX_LOG_WARN,
                    "engine: OpenMP pool has %d threads, %d asked", got,
                    threads);
  /* the engine's own thread team (src/engine/core/parallel.c) */
  got = adv_threads_prepare(threads);
  if (got != threads)
    sbx__runner_log(SBX_LOG_WARN,
                    "engine: thread team has %d threads, %d asked", got,
                    threads);
  pthread_t watcher;
  if (pthread_create(&watcher, NULL, abort_watcher, NULL) != 0) {
    sbx__runner_error(SBX_ERR_SANDBOX, "cannot start the abort watcher");
    return 3;
  }
  if ((rc = sbx_sandbox_seal(&sp, &st))) {
    sbx__runner_error(SBX_ERR_SANDBOX,
                      "cannot enter the sandbox (rlimits/seccomp): %s",
                      strerror(-rc));
    return 3;
  }
  free(filter);
  sbx_ipc_ready ready = {.namespaces = st.namespaces,
                         .memcap_kind = (uint32_t)st.memcap,
                         .landlock_abi = (uint32_t)st.landlock_abi,
                         .pivoted = (uint32_t)st.pivoted};
  sbx_sandbox_describe(&st, ready.summary, sizeof(ready.summary));
  uint8_t buf[1024];
  int n = sbx_ipc_ready_encode(&ready, buf, sizeof(buf));
  if (hold(SBX_IPC_READY, buf, n > 0 ? (size_t)n : 0) != 0) {
    flush_held();
    sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_READY, buf, n > 0 ? (size_t)n : 0);
  }
  flush_held();
  g_held.on = 0;

  if (in.spec.kind == SBX_JOB_PROBE)
    rc = sbx__runner_probe(&in.spec);
  else
    rc = sbx__runner_job_run(&in.spec, in.model, in.model_len,
                             nfiles && st.input_dir[0] ? "/in/data" : "",
                             in.data, data_len);
  free(in.model);
  free(in.data);
  sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_DONE, NULL, 0);
  _exit(rc ? 1 : 0); /* no atexit work: the pool threads stay parked */
}
