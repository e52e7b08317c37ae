/*
 * runner_sup.c - the worker's side of one job: spawn a fresh sandboxed
 * aisbx-runner, feed it, decode its messages, enforce wall time and
 * cancellation, and explain how it ended (see sbx/runner.h).
 */
#define _GNU_SOURCE
#include "sbx/runner.h"

#include "adv/threading.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ADV_ENOMEM_STATUS                                                      \
  (-1)                /* adv_status ADV_ENOMEM (engine not linked here) */
#define MAX_LOGS 2000 /* LOG messages forwarded per job, then dropped */

sbx_runner_params sbx_runner_default_params(void) {
  sbx_runner_params p;
  memset(&p, 0, sizeof(p));
  p.mem_bytes = (uint64_t)2 << 30;
  p.cpu_seconds = 600;
  p.wall_seconds = 900;
  p.grace_seconds = 1.0;
  p.threads = 2;
  p.use_memfd = 1;
  p.stderr_fd = -1;
  return p;
}

const char *sbx_runner_status_name(sbx_runner_status s) {
  static const char *const n[] = {"succeeded", "failed", "timed_out",
                                  "cancelled"};
  return (unsigned)s < 4 ? n[s] : "?";
}

void sbx_runner_outcome_free(sbx_runner_outcome *o) {
  free(o->result_json);
  free(o->adv_npy);
  for (int i = 0; i < o->n_gallery; i++)
    free(o->gallery[i]);
  o->n_gallery = 0;
  o->result_json = NULL;
  o->adv_npy = NULL;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "2 GiB" / "300 MiB" */
static void fmt_bytes(uint64_t b, char *out, size_t n) {
  if (b >= ((uint64_t)1 << 30) && b % ((uint64_t)1 << 30) == 0)
    snprintf(out, n, "%llu GiB", (unsigned long long)(b >> 30));
  else
    snprintf(out, n, "%llu MiB", (unsigned long long)(b >> 20));
}

/* A sealed memfd holding the bytes (read-only for the runner). */
static int make_memfd(const char *name, const void *p, size_t n) {
  int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -errno;
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(fd, (const char *)p + off, n - off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      close(fd);
      return -e;
    }
    off += (size_t)w;
  }
  if (fcntl(fd, F_ADD_SEALS,
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* ---- decoding the runner's messages ---- */
typedef struct sup {
  sbx_runner_outcome *out;
  const sbx_runner_callbacks *cb;
  double t0;
  int done, have_error, logs;
  sbx_runner_pool *refill; /* start its replacement spare at READY */
} sup;

static void refill(sbx_runner_pool *pool);

static int h_ready(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  sup *s = ud;
  if (sbx_ipc_ready_decode(p, n, &s->out->sandbox))
    return -EINVAL;
  s->out->ready = 1;
  s->out->ready_seconds = now_s() - s->t0;
  if (s->cb && s->cb->on_ready)
    s->cb->on_ready(s->cb->ud, &s->out->sandbox);
  if (s->refill) {
    refill(s->refill);
    s->refill = NULL;
  }
  return 0;
}

static int h_log(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  sup *s = ud;
  sbx_ipc_log m;
  if (sbx_ipc_log_decode(p, n, &m))
    return -EINVAL;
  if (s->logs++ < MAX_LOGS && s->cb && s->cb->on_log)
    s->cb->on_log(s->cb->ud, (int)m.level, m.text);
  return 0;
}

static int h_progress(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  sup *s = ud;
  sbx_ipc_progress m;
  if (sbx_ipc_progress_decode(p, n, &m))
    return -EINVAL;
  if (s->cb && s->cb->on_progress)
    s->cb->on_progress(s->cb->ud, &m);
  return 0;
}

/* RESULT and ADV_NPY: keep a copy (the decoder frees its buffer). */
static int h_blob(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  sup *s = ud;
  uint8_t *c = malloc(n + 1);
  if (!c)
    return -ENOMEM;
  memcpy(c, p, n);
  c[n] = 0;
  if (t == SBX_IPC_RESULT) {
    s->out->result_json = (char *)c;
    s->out->result_len = n;
  } else if (t == SBX_IPC_GALLERY) {
    if (s->out->n_gallery >= SBX_RUNNER_GALLERY_MAX) {
      free(c);
      return -EMSGSIZE; /* more strips than the protocol allows */
    }
    s->out->gallery[s->out->n_gallery] = c;
    s->out->gallery_len[s->out->n_gallery++] = n;
  } else {
    s->out->adv_npy = c;
    s->out->adv_npy_len = n;
  }
  return 0;
}

static int h_error(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  sup *s = ud;
  sbx_ipc_error m;
  if (sbx_ipc_error_decode(p, n, &m))
    return -EINVAL;
  s->have_error = 1;
  s->out->error_status = m.status;
  if (m.status == SBX_ERR_SYSCALL)
    s->out->forbidden_syscall = (int)m.forbidden_syscall;
  else
    snprintf(s->out->reason, sizeof(s->out->reason), "%s", m.message);
  return 0;
}

static int h_done(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  ((sup *)ud)->done = 1;
  return 0;
}

static const sbx_ipc_dispatch dispatch[] = {
    {SBX_IPC_READY, h_ready},       {SBX_IPC_LOG, h_log},
    {SBX_IPC_PROGRESS, h_progress}, {SBX_IPC_RESULT, h_blob},
    {SBX_IPC_ADV_NPY, h_blob},      {SBX_IPC_ERROR, h_error},
    {SBX_IPC_DONE, h_done},         {SBX_IPC_GALLERY, h_blob},
};

/* ---- spawning ---- */
typedef struct child_fds {
  int in_r, out_w, err, model, data, filter, go;
} child_fds;

/* The seccomp program, compiled once per process and shared by every
 * runner as a sealed memfd (the runner's fd 5); -1 when it could not be
 * made (each runner then compiles its own). */
static int g_filter_fd = -1;
static pthread_once_t g_filter_once = PTHREAD_ONCE_INIT;

static void make_filter(void) {
  void *prog;
  size_t len;
  if (sbx_sandbox_filter_compile(&prog, &len) == 0) {
    int fd = make_memfd("aisbx-seccomp", prog, len);
    g_filter_fd = fd >= 0 ? fd : -1;
    free(prog);
  }
}

/* In the child: only async-signal-safe calls until execve. unblock: 1 in a
 * forked child (the runner starts with no signal blocked), 0 in the child
 * of sbx_sandbox_clone (it shares our memory: no handler of ours may run
 * in it, so signals stay blocked through the exec and the runner unblocks
 * them itself). */
__attribute__((no_sanitize_address)) static void
exec_runner(const char *path, child_fds f, char *const env[], const char *nsarg,
            int unblock) {
  setpgid(0, 0);
  /* move the fds to 0..6: first above 6 so no dup2 clobbers a source */
  int src[7] = {f.in_r, f.out_w, f.err, f.model, f.data, f.filter, f.go}, hi[7];
  for (int i = 0; i < 7; i++) {
    hi[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, 10) : -1;
    if (src[i] >= 0 && hi[i] < 0)
      _exit(126);
  }
  for (int i = 0; i < 7; i++) {
    if (hi[i] >= 0) {
      if (dup2(hi[i], i) != i)
        _exit(126);
    } else {
      close(i);
    }
  }
  close_range(7, ~0U, 0);
  if (unblock) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
  }
  char *argv[] = {(char *)"aisbx-runner", (char *)nsarg, NULL};
  execve(path, argv, env);
  _exit(127);
}

/* exec_runner's arguments for the child of sbx_sandbox_clone. */
typedef struct exec_args {
  const char *path;
  child_fds f;
  char *const *env;
  const char *nsarg;
} exec_args;

__attribute__((no_sanitize_address)) static void exec_runner_cloned(void *v) {
  const exec_args *a = v;
  exec_runner(a->path, a->f, a->env, a->nsarg, 0);
}

/* Why the runner ended, in words a user can act on. */
static void classify(const sbx_runner_params *p, sup *s, int status,
                     int timed_out, int cancelled, int proto_err,
                     const char *proto_why, const sbx_memcap *mc) {
  sbx_runner_outcome *o = s->out;
  char mem[32];
  fmt_bytes(p->mem_bytes, mem, sizeof(mem));
  o->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  int oom = sbx_memcap_oom_kills(mc) > 0;
  if (cancelled) {
    o->status = SBX_RUN_CANCELLED;
    snprintf(o->reason, sizeof(o->reason), "cancelled");
    return;
  }
  if (timed_out) {
    o->status = SBX_RUN_TIMED_OUT;
    snprintf(o->reason, sizeof(o->reason), "wall-time limit of %g s exceeded",
             p->wall_seconds);
    return;
  }
  if (o->exit_code == 0 && s->done && !s->have_error && !proto_err) {
    o->status = SBX_RUN_SUCCEEDED;
    o->reason[0] = 0;
    return;
  }
  o->status = SBX_RUN_FAILED;
  int sig = o->term_signal;
  if (sig == SIGSYS || o->forbidden_syscall >= 0) {
    if (o->forbidden_syscall >= 0) {
      char name[64];
      sbx_syscall_name(o->forbidden_syscall, name, sizeof(name));
      snprintf(o->reason, sizeof(o->reason),
               "killed by sandbox: forbidden system call %d (%s)",
               o->forbidden_syscall, name);
    } else {
      snprintf(o->reason, sizeof(o->reason),
               "killed by sandbox: forbidden system call");
    }
  } else if (oom || (o->error_status == ADV_ENOMEM_STATUS &&
                     mc->kind == SBX_MEMCAP_RLIMIT_AS)) {
    snprintf(o->reason, sizeof(o->reason), "memory limit %s exceeded", mem);
  } else if (o->error_status == SBX_ERR_CPU || sig == SIGXCPU ||
             o->exit_code == 128 + SIGXCPU ||
             (sig == SIGKILL && p->cpu_seconds &&
              o->cpu_seconds >= p->cpu_seconds)) {
    snprintf(o->reason, sizeof(o->reason), "CPU time limit of %u s exceeded",
             p->cpu_seconds);
  } else if (proto_err) {
    snprintf(o->reason, sizeof(o->reason), "runner broke the protocol: %s",
             proto_why);
  } else if (s->have_error && o->reason[0]) {
    /* the runner's own message (engine text for a bad model/dataset) */
  } else if (sig) {
    snprintf(o->reason, sizeof(o->reason),
             "runner died by signal %d (%s) after %.2f s CPU", sig,
             strsignal(sig), o->cpu_seconds);
  } else if (o->exit_code == 127) {
    snprintf(o->reason, sizeof(o->reason), "cannot execute the runner %s",
             p->runner_path);
  } else {
    snprintf(o->reason, sizeof(o->reason),
             "runner exited with code %d without a result", o->exit_code);
  }
}

/* One started runner: our pipe ends, its process group, its memory cap. */
typedef struct runner_proc {
  pid_t pid;
  int to_w, from_r; /* we write its fd 0, read its fd 1 */
  sbx_memcap mc;
  char memcap_note[512];
  int threads; /* OMP_THREAD_LIMIT it was started with */
} runner_proc;

/* Kills what is left of the runner, closes our ends, removes its cgroup. */
static void release(runner_proc *rp) {
  if (rp->pid > 0) {
    kill(-rp->pid, SIGKILL);
    kill(rp->pid, SIGKILL);
    while (waitpid(rp->pid, NULL, WNOHANG) == 0) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  rp->pid = -1;
  if (rp->to_w >= 0)
    close(rp->to_w);
  if (rp->from_r >= 0)
    close(rp->from_r);
  rp->to_w = rp->from_r = -1;
  sbx_memcap_destroy(&rp->mc);
}

/* Forks + execs a runner with its memory cgroup, pipes, optional memfds
 * (-1: none) and a clean environment. The cgroup is made while the child
 * execs and loads its libraries (off the critical path): the runner waits
 * on its fd 6 before doing anything, the supervisor moves it into the
 * cgroup (it has not forked yet, so everything it starts is born there)
 * and then writes the go byte. 0 or -errno (why says it). */
static int spawn(const sbx_runner_params *p, int model_fd, int data_fd,
                 runner_proc *rp, char *why, size_t wl) {
  static unsigned seq;
  char tag[96];
  snprintf(tag, sizeof(tag), "%s%s%d-%u", p->tag ? p->tag : "",
           p->tag ? "-" : "", (int)getpid(),
           __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
  memset(rp, 0, sizeof(*rp));
  rp->pid = -1;
  rp->to_w = rp->from_r = -1;
  rp->mc.procs_fd = -1;
  rp->threads = p->threads;
  int fds[6] = {-1, -1, -1, -1, -1, -1}; /* to_r[2], from_r[2], go[2] */
  if (pipe2(fds, O_CLOEXEC) || pipe2(fds + 2, O_CLOEXEC) ||
      pipe2(fds + 4, O_CLOEXEC)) {
    int e = errno;
    snprintf(why, wl, "cannot set up the runner: %s", strerror(e));
    for (int i = 0; i < 6; i++)
      if (fds[i] >= 0)
        close(fds[i]);
    return -e;
  }
  pthread_once(&g_filter_once, make_filter);
  child_fds f = {fds[0], fds[3], -1, model_fd, data_fd, g_filter_fd, fds[4]};
  f.err = p->stderr_fd >= 0 ? p->stderr_fd
                            : open("/dev/null", O_WRONLY | O_CLOEXEC);
  char thr[32], lim[32];
  snprintf(thr, sizeof(thr), "OMP_NUM_THREADS=%d", p->threads);
  snprintf(lim, sizeof(lim), "OMP_THREAD_LIMIT=%d", p->threads);
  /* the engine's threading environment (adv/threading.h, the same as
   * aisbx's), then ours; the user's environment is not passed on */
  const char *const *te = adv_threading_env();
  char *env[32];
  int ne = 0;
  env[ne++] = thr;
  env[ne++] = lim;
  for (int i = 0; te[i] && ne < 14; i++)
    env[ne++] = (char *)te[i];
  /* the kernel choice of the worker's environment (adv/threading.h), so
   * results match the CLI's in the same environment bit for bit; bounded
   * values, copied before the fork */
  char kv[12][160];
  const char *const *kn = adv_kernel_env_names();
  for (int i = 0, k = 0; kn[i] && k < 12 && ne < 29; i++) {
    const char *val = getenv(kn[i]);
    if (!val || strlen(val) > 64)
      continue;
    snprintf(kv[k], sizeof(kv[k]), "%s=%s", kn[i], val);
    env[ne++] = kv[k++];
  }
  if (p->log_each_step)
    env[ne++] = (char *)"AISBX_RUNNER_LOG_EACH=1";
  env[ne++] = (char *)"PATH=/nonexistent";
  env[ne] = NULL;
  /* born in its namespaces (sbx_sandbox_clone), else a plain fork and the
   * runner enters them itself */
  char nsarg[160] = "";
  exec_args ea = {p->runner_path, f, env, nsarg};
  pid_t pid = p->unshare_in_runner ? -1
                                   : sbx_sandbox_clone(nsarg, sizeof(nsarg),
                                                       exec_runner_cloned, &ea);
  if (pid < 0) {
    nsarg[0] = '\0';
    pid = fork();
    if (pid == 0)
      exec_runner(p->runner_path, f, env, NULL, 1);
  }
  int e = errno;
  close(fds[0]);
  close(fds[3]);
  close(fds[4]);
  if (p->stderr_fd < 0 && f.err >= 0)
    close(f.err);
  if (pid < 0) {
    snprintf(why, wl, "cannot fork the runner: %s", strerror(e));
    close(fds[1]);
    close(fds[2]);
    close(fds[5]);
    return -e;
  }
  setpgid(pid, pid); /* also done by the child; whichever runs first */
  /* the memory cap decides what the runner applies itself (the spec,
   * written later, says which) */
  sbx_memcap_create(p->mem_bytes, tag, &rp->mc, rp->memcap_note,
                    sizeof(rp->memcap_note));
  int mrc = sbx_memcap_move(&rp->mc, pid);
  if (mrc) {
    sbx_memcap_destroy(&rp->mc);
    rp->mc.kind = SBX_MEMCAP_RLIMIT_AS;
    snprintf(rp->memcap_note, sizeof(rp->memcap_note),
             "cannot move the runner into its cgroup (%s); using RLIMIT_AS",
             strerror(-mrc));
  }
  /* go (a runner that already died gets EPIPE; its exit explains) */
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  if (write(fds[5], "g", 1) < 0 && errno == EPIPE) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  close(fds[5]);
  fcntl(fds[1], F_SETFL, O_NONBLOCK);
  fcntl(fds[2], F_SETFL, O_NONBLOCK);
  rp->pid = pid;
  rp->to_w = fds[1];
  rp->from_r = fds[2];
  return 0;
}

static void outcome_init(sbx_runner_outcome *out) {
  memset(out, 0, sizeof(*out));
  out->forbidden_syscall = -1;
  out->exit_code = -1;
  out->status = SBX_RUN_FAILED;
}

/* Feeds the spec (and MODEL/DATA unless they went by memfd), decodes the
 * runner's messages, enforces wall time and cancellation from t0, reaps
 * it and classifies how it ended. refill_pool (may be NULL) gets a new
 * spare when the runner reports READY (or when it ends without). */
static void supervise(const sbx_runner_params *p, runner_proc *rp,
                      const sbx_job_spec *spec, const void *model,
                      size_t model_len, const void *data, size_t data_len,
                      const sbx_runner_callbacks *cb,
                      const volatile int *abort_flag, double t0,
                      sbx_runner_pool *refill_pool, sbx_runner_outcome *out) {
  out->memcap = rp->mc.kind;
  snprintf(out->memcap_note, sizeof(out->memcap_note), "%s", rp->memcap_note);
  sup s = {.out = out, .cb = cb, .t0 = t0, .refill = refill_pool};
  /* a runner that dies before reading its input must not take the worker
   * with it: SIGPIPE is blocked in this thread while we write, and any
   * pending one is consumed at the end (the process's disposition is
   * left alone) */
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  uint8_t specbuf[4096];
  int speclen = sbx_job_spec_encode(spec, specbuf, sizeof(specbuf));
  if (speclen < 0)
    speclen =
        0; /* cannot happen (4 KiB holds every spec); the runner then fails */
  /* pending input: SPEC, then MODEL and DATA unless they went by memfd */
  uint8_t h_spec[8], h_model[8], h_data[8];
  struct iovec iov[6];
  int niov = 0;
#define HDR(h, type, len)                                                      \
  do {                                                                         \
    uint32_t t_ = (type), l_ = (uint32_t)(len);                                \
    for (int i_ = 0; i_ < 4; i_++) {                                           \
      h[i_] = (uint8_t)(t_ >> (8 * i_));                                       \
      h[4 + i_] = (uint8_t)(l_ >> (8 * i_));                                   \
    }                                                                          \
  } while (0)
  HDR(h_spec, SBX_IPC_SPEC, speclen);
  iov[niov++] = (struct iovec){h_spec, 8};
  iov[niov++] = (struct iovec){specbuf, (size_t)speclen};
  if (!spec->model_in_memfd) {
    HDR(h_model, SBX_IPC_MODEL, model_len);
    iov[niov++] = (struct iovec){h_model, 8};
    iov[niov++] = (struct iovec){(void *)model, model_len};
  }
  if (!spec->data_in_memfd) {
    HDR(h_data, SBX_IPC_DATA, data_len);
    iov[niov++] = (struct iovec){h_data, 8};
    iov[niov++] = (struct iovec){(void *)data, data_len};
  }
#undef HDR
  int iov_at = 0;
  pid_t pid = rp->pid;
  sbx_ipc_decoder dec;
  sbx_ipc_decoder_init(&dec, SBX_IPC_TO_WORKER, dispatch,
                       (int)(sizeof(dispatch) / sizeof(dispatch[0])), &s);
  int status = 0, reaped = 0, eof = 0, timed_out = 0, cancelled = 0,
      proto_err = 0;
  int abort_sent = 0;
  double kill_at = 0, deadline = t0 + p->wall_seconds;
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  uint8_t buf[65536];
  while (!reaped) {
    double t = now_s();
    if (!cancelled && !timed_out && abort_flag && *abort_flag)
      cancelled = 1;
    if (!cancelled && !timed_out && t >= deadline)
      timed_out = 1;
    if ((cancelled || timed_out || proto_err) && !kill_at) {
      /* ask politely (the engine polls its abort flag), then kill */
      if (iov_at == niov && !proto_err) {
        sbx_ipc_send(rp->to_w, SBX_IPC_ABORT, NULL, 0);
        abort_sent = 1;
      }
      kill_at = t + (abort_sent ? p->grace_seconds : 0);
    }
    if (kill_at && t >= kill_at) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
    struct pollfd pf[2];
    int np = 0;
    if (!eof)
      pf[np++] = (struct pollfd){rp->from_r, POLLIN, 0};
    if (iov_at < niov)
      pf[np++] = (struct pollfd){rp->to_w, POLLOUT, 0};
    poll(pf, (nfds_t)np, eof ? 10 : 50);
    if (iov_at < niov) {
      ssize_t w = writev(rp->to_w, iov + iov_at, niov - iov_at);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        iov_at = niov; /* runner gone; its exit explains */
      } else if (w > 0) {
        size_t left = (size_t)w;
        while (iov_at < niov && left >= iov[iov_at].iov_len)
          left -= iov[iov_at++].iov_len;
        if (iov_at < niov) {
          iov[iov_at].iov_base = (char *)iov[iov_at].iov_base + left;
          iov[iov_at].iov_len -= left;
        }
      }
    }
    while (!eof) {
      ssize_t r = read(rp->from_r, buf, sizeof(buf));
      if (r > 0) {
        if (!proto_err && sbx_ipc_decoder_feed(&dec, buf, (size_t)r))
          proto_err = 1;
        continue;
      }
      if (r == 0 || (errno != EAGAIN && errno != EINTR))
        eof = 1;
      break;
    }
    if (wait4(pid, &status, WNOHANG, &ru) == pid)
      reaped = 1;
  }
  /* whatever the runner wrote before dying (the SIGSYS report) */
  for (;;) {
    ssize_t r = read(rp->from_r, buf, sizeof(buf));
    if (r <= 0)
      break;
    if (!proto_err && sbx_ipc_decoder_feed(&dec, buf, (size_t)r))
      proto_err = 1;
  }
  kill(-pid, SIGKILL); /* stragglers of the group, if any */
  rp->pid = -1;        /* reaped */
  out->seconds = now_s() - t0;
  out->cpu_seconds =
      (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
      (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
  out->mem_peak = sbx_memcap_peak(&rp->mc);
  if (!proto_err && !sbx_ipc_decoder_idle(&dec) && WIFEXITED(status) &&
      !WEXITSTATUS(status)) {
    proto_err = 1;
    snprintf(dec.why, sizeof(dec.why), "stream ended inside a message");
  }
  if (s.refill) /* no READY: the pool still gets its replacement */
    refill(s.refill);
  classify(p, &s, status, timed_out, cancelled, proto_err, dec.why, &rp->mc);
  sbx_ipc_decoder_free(&dec);
  if (out->status != SBX_RUN_SUCCEEDED)
    sbx_runner_outcome_free(out);
  struct timespec zero = {0, 0};
  while (sigtimedwait(&pipe_set, NULL, &zero) == SIGPIPE) {
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
}

/* The spec's limit fields from p and the transport. */
static sbx_job_spec job_spec(const sbx_runner_params *p, const sbx_job_spec *in,
                             sbx_memcap_kind memcap, size_t model_len,
                             size_t data_len, int model_memfd, int data_memfd) {
  sbx_job_spec spec = *in;
  spec.mem_bytes = p->mem_bytes;
  spec.memcap_kind = (uint32_t)memcap;
  spec.cpu_seconds = p->cpu_seconds;
  spec.threads = (uint32_t)p->threads;
  spec.model_len = model_len;
  spec.data_len = data_len;
  spec.model_in_memfd = (uint32_t)model_memfd;
  spec.data_in_memfd = (uint32_t)data_memfd;
  return spec;
}

/* Inputs that travel as messages must fit the table's caps. */
static int check_inline(int model_inline, size_t model_len, int data_inline,
                        size_t data_len, sbx_runner_outcome *out) {
  int model_big =
      model_inline && model_len > sbx_ipc_msgdef_get(SBX_IPC_MODEL)->max_len;
  int data_big =
      data_inline && data_len > sbx_ipc_msgdef_get(SBX_IPC_DATA)->max_len;
  if (!model_big && !data_big)
    return 0;
  snprintf(out->reason, sizeof(out->reason),
           "the %s (%zu bytes) is larger than the runner's message cap",
           model_big ? "model" : "dataset", model_big ? model_len : data_len);
  return -EMSGSIZE;
}

int sbx_runner_run(const sbx_runner_params *p, const sbx_job_spec *spec_in,
                   const void *model, size_t model_len, const void *data,
                   size_t data_len, const sbx_runner_callbacks *cb,
                   const volatile int *abort_flag, sbx_runner_outcome *out) {
  outcome_init(out);
  if (!p || !p->runner_path || !spec_in || p->threads < 1) {
    snprintf(out->reason, sizeof(out->reason), "invalid runner parameters");
    return -EINVAL;
  }
  int mfd = -1, dfd = -1;
  if (p->use_memfd) {
    mfd = make_memfd("aisbx-model", model, model_len);
    dfd = make_memfd("aisbx-data", data, data_len);
  }
  int rc = check_inline(mfd < 0, model_len, dfd < 0, data_len, out);
  runner_proc rp;
  double t0 = now_s();
  if (!rc)
    rc = spawn(p, mfd, dfd, &rp, out->reason, sizeof(out->reason));
  if (mfd >= 0)
    close(mfd);
  if (dfd >= 0)
    close(dfd);
  if (rc)
    return rc;
  sbx_job_spec spec =
      job_spec(p, spec_in, rp.mc.kind, model_len, data_len, mfd >= 0, dfd >= 0);
  supervise(p, &rp, &spec, model, model_len, data, data_len, cb, abort_flag, t0,
            NULL, out);
  release(&rp);
  return 0;
}

/* ---- a pool of runners started ahead ---- */
struct sbx_runner_pool {
  sbx_runner_params p; /* p.tag points at tag below */
  char tag[96];
  pthread_mutex_t mu;
  int n, cap;
  runner_proc *spare;
};

int sbx_runner_pool_new(const sbx_runner_params *p, int spares,
                        sbx_runner_pool **out) {
  *out = NULL;
  if (!p || !p->runner_path || p->threads < 1 || spares < 1 || spares > 64)
    return -EINVAL;
  sbx_runner_pool *pool = calloc(1, sizeof(*pool));
  if (!pool)
    return -ENOMEM;
  pool->spare = calloc((size_t)spares, sizeof(runner_proc));
  if (!pool->spare) {
    free(pool);
    return -ENOMEM;
  }
  pool->p = *p;
  if (p->tag) { /* the caller's tag need not outlive this call */
    snprintf(pool->tag, sizeof(pool->tag), "%s", p->tag);
    pool->p.tag = pool->tag;
  }
  pool->cap = spares;
  pthread_mutex_init(&pool->mu, NULL);
  char why[600];
  for (int i = 0; i < spares; i++)
    if (spawn(&pool->p, -1, -1, &pool->spare[pool->n], why, sizeof(why)) == 0)
      pool->n++;
  *out = pool;
  return 0;
}

/* A spare that is still waiting (not dead), allows the job's thread count
 * and now carries the job's memory cap, or -1. A spare whose cgroup
 * refuses the new limit (v1 answers EBUSY when usage is already above it)
 * is killed rather than run with the pool's cap. */
static int take_spare(sbx_runner_pool *pool, const sbx_runner_params *p,
                      runner_proc *rp) {
  int got = -1;
  pthread_mutex_lock(&pool->mu);
  while (pool->n > 0 && got < 0) {
    runner_proc c = pool->spare[--pool->n];
    if (waitpid(c.pid, NULL, WNOHANG) != 0 || c.threads < p->threads ||
        sbx_memcap_set_limit(&c.mc, p->mem_bytes) != 0) {
      release(&c); /* died while waiting, too few threads, or cap refused */
      continue;
    }
    if (c.mc.kind == SBX_MEMCAP_CGROUP_V1 || c.mc.kind == SBX_MEMCAP_CGROUP_V2)
      snprintf(c.memcap_note, sizeof(c.memcap_note),
               "%s at %s, %llu MiB (set when the job took this runner)",
               sbx_memcap_name(c.mc.kind), c.mc.dir,
               (unsigned long long)(p->mem_bytes >> 20));
    *rp = c;
    got = 0;
  }
  pthread_mutex_unlock(&pool->mu);
  return got;
}

/* Starts a spare with the pool's parameters and adds it (or drops it when
 * the pool is full). */
static void refill(sbx_runner_pool *pool) {
  runner_proc next;
  char why[600];
  if (spawn(&pool->p, -1, -1, &next, why, sizeof(why)) != 0)
    return; /* the next job starts a fresh runner itself */
  pthread_mutex_lock(&pool->mu);
  int kept = pool->n < pool->cap;
  if (kept)
    pool->spare[pool->n++] = next;
  pthread_mutex_unlock(&pool->mu);
  if (!kept)
    release(&next);
}

int sbx_runner_pool_run(sbx_runner_pool *pool, const sbx_runner_params *p,
                        const sbx_job_spec *spec_in, const void *model,
                        size_t model_len, const void *data, size_t data_len,
                        const sbx_runner_callbacks *cb,
                        const volatile int *abort_flag,
                        sbx_runner_outcome *out) {
  outcome_init(out);
  if (!pool || !p || !spec_in || p->threads < 1) {
    snprintf(out->reason, sizeof(out->reason), "invalid runner parameters");
    return -EINVAL;
  }
  sbx_runner_params q = *p;
  q.runner_path = pool->p.runner_path;
  if (model_len + data_len > SBX_RUNNER_POOL_INLINE_MAX) {
    /* big inputs: a fresh runner with sealed memfds (one copy in the
     * runner instead of the pipe decoder's transient two; the start-up is
     * small next to moving such inputs); the spares stay for later jobs */
    q.use_memfd = 1;
    return sbx_runner_run(&q, spec_in, model, model_len, data, data_len, cb,
                          abort_flag, out);
  }
  int rc = check_inline(1, model_len, 1, data_len, out);
  if (rc)
    return rc;
  runner_proc rp;
  double t0 = now_s();
  if (take_spare(pool, &q, &rp) != 0 &&
      (rc = spawn(&q, -1, -1, &rp, out->reason, sizeof(out->reason)))) {
    refill(pool);
    return rc;
  }
  sbx_job_spec spec =
      job_spec(&q, spec_in, rp.mc.kind, model_len, data_len, 0, 0);
  /* the replacement is started as soon as this job's runner is READY: it
   * loads while the job computes, and neither READY nor the job's end
   * (a cancel, the result) waits for it */
  supervise(&q, &rp, &spec, model, model_len, data, data_len, cb, abort_flag,
            t0, pool, out);
  release(&rp);
  return 0;
}

void sbx_runner_pool_free(sbx_runner_pool *pool) {
  if (!pool)
    return;
  for (int i = 0; i < pool->n; i++)
    release(&pool->spare[i]);
  pthread_mutex_destroy(&pool->mu);
  free(pool->spare);
  free(pool);
}
