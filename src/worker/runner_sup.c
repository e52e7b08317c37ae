/*
 * runner_sup.c - the worker's side of one job: spawn a fresh sandboxed
 * aisbx-runner, feed it, decode its messages, enforce wall time and
 * cancellation, and explain how it ended (see sbx/runner.h).
 */
#define _GNU_SOURCE
#include "sbx/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
} sup;

static int h_ready(void *ud, uint32_t t, const uint8_t *p, size_t n) {
  sup *s = ud;
  if (sbx_ipc_ready_decode(p, n, &s->out->sandbox))
    return -EINVAL;
  s->out->ready = 1;
  s->out->ready_seconds = now_s() - s->t0;
  if (s->cb && s->cb->on_ready)
    s->cb->on_ready(s->cb->ud, &s->out->sandbox);
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
    {SBX_IPC_DONE, h_done},
};

/* ---- spawning ---- */
typedef struct child_fds {
  int in_r, out_w, err, model, data;
} child_fds;

/* In the forked child: only async-signal-safe calls until execve. */
static void exec_runner(const char *path, const sbx_memcap *mc, child_fds f,
                        char *const env[]) {
  if (sbx_memcap_enter(mc) != 0)
    _exit(126);
  setpgid(0, 0);
  /* move the fds to 0..4: first above 4 so no dup2 clobbers a source */
  int src[5] = {f.in_r, f.out_w, f.err, f.model, f.data}, hi[5];
  for (int i = 0; i < 5; i++) {
    hi[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, 10) : -1;
    if (src[i] >= 0 && hi[i] < 0)
      _exit(126);
  }
  for (int i = 0; i < 5; i++) {
    if (hi[i] >= 0) {
      if (dup2(hi[i], i) != i)
        _exit(126);
    } else {
      close(i);
    }
  }
  close_range(5, ~0U, 0);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  char *argv[] = {(char *)"aisbx-runner", NULL};
  execve(path, argv, env);
  _exit(127);
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

int sbx_runner_run(const sbx_runner_params *p, const sbx_job_spec *spec_in,
                   const void *model, size_t model_len, const void *data,
                   size_t data_len, const sbx_runner_callbacks *cb,
                   const volatile int *abort_flag, sbx_runner_outcome *out) {
  memset(out, 0, sizeof(*out));
  out->forbidden_syscall = -1;
  out->exit_code = -1;
  out->status = SBX_RUN_FAILED;
  if (!p || !p->runner_path || !spec_in || p->threads < 1) {
    snprintf(out->reason, sizeof(out->reason), "invalid runner parameters");
    return -EINVAL;
  }
  /* memory cap first: it decides what the runner applies itself */
  char tag[64];
  static unsigned seq;
  snprintf(tag, sizeof(tag), "%s%s%d-%u", p->tag ? p->tag : "",
           p->tag ? "-" : "", (int)getpid(),
           __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
  sbx_memcap mc;
  sbx_memcap_create(p->mem_bytes, tag, &mc, out->memcap_note,
                    sizeof(out->memcap_note));
  out->memcap = mc.kind;

  sbx_job_spec spec = *spec_in;
  spec.mem_bytes = p->mem_bytes;
  spec.memcap_kind = (uint32_t)mc.kind;
  spec.cpu_seconds = p->cpu_seconds;
  spec.threads = (uint32_t)p->threads;
  spec.model_len = model_len;
  spec.data_len = data_len;
  child_fds f = {-1, -1, -1, -1, -1};
  int to_r[2] = {-1, -1}, from_r[2] = {-1, -1}, rc = 0;
  if (p->use_memfd) {
    f.model = make_memfd("aisbx-model", model, model_len);
    f.data = make_memfd("aisbx-data", data, data_len);
    spec.model_in_memfd = f.model >= 0;
    spec.data_in_memfd = f.data >= 0;
  }
  /* without memfds the bytes travel as messages: their caps apply here */
  int model_big = !spec.model_in_memfd &&
                  model_len > sbx_ipc_msgdef_get(SBX_IPC_MODEL)->max_len;
  int data_big = !spec.data_in_memfd &&
                 data_len > sbx_ipc_msgdef_get(SBX_IPC_DATA)->max_len;
  if (model_big || data_big) {
    rc = -EMSGSIZE;
    snprintf(out->reason, sizeof(out->reason),
             "the %s (%zu bytes) is larger than the runner's message cap",
             model_big ? "model" : "dataset", model_big ? model_len : data_len);
    goto cleanup;
  }
  uint8_t specbuf[4096];
  int speclen = sbx_job_spec_encode(&spec, specbuf, sizeof(specbuf));
  if (speclen < 0 || pipe2(to_r, O_CLOEXEC) || pipe2(from_r, O_CLOEXEC)) {
    rc = speclen < 0 ? -EINVAL : -errno;
    snprintf(out->reason, sizeof(out->reason), "cannot set up the runner: %s",
             strerror(-rc));
    goto cleanup;
  }
  f.in_r = to_r[0];
  f.out_w = from_r[1];
  f.err = p->stderr_fd >= 0 ? p->stderr_fd
                            : open("/dev/null", O_WRONLY | O_CLOEXEC);
  char thr[32], lim[32];
  snprintf(thr, sizeof(thr), "OMP_NUM_THREADS=%d", p->threads);
  snprintf(lim, sizeof(lim), "OMP_THREAD_LIMIT=%d", p->threads);
  char *env[] = {thr,
                 lim,
                 (char *)"OMP_WAIT_POLICY=passive",
                 (char *)"OPENBLAS_NUM_THREADS=1",
                 (char *)"PATH=/nonexistent",
                 NULL};

  sup s = {.out = out, .cb = cb, .t0 = now_s()};
  pid_t pid = fork();
  if (pid < 0) {
    rc = -errno;
    snprintf(out->reason, sizeof(out->reason), "cannot fork the runner: %s",
             strerror(-rc));
    goto cleanup;
  }
  if (pid == 0)
    exec_runner(p->runner_path, &mc, f, env);
  setpgid(pid, pid); /* also done by the child; whichever runs first */
  close(to_r[0]);
  close(from_r[1]);
  to_r[0] = from_r[1] = -1;
  if (p->stderr_fd < 0 && f.err >= 0)
    close(f.err);
  f.err = -1;
  fcntl(to_r[1], F_SETFL, O_NONBLOCK);
  fcntl(from_r[0], F_SETFL, O_NONBLOCK);

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
  if (!spec.model_in_memfd) {
    HDR(h_model, SBX_IPC_MODEL, model_len);
    iov[niov++] = (struct iovec){h_model, 8};
    iov[niov++] = (struct iovec){(void *)model, model_len};
  }
  if (!spec.data_in_memfd) {
    HDR(h_data, SBX_IPC_DATA, data_len);
    iov[niov++] = (struct iovec){h_data, 8};
    iov[niov++] = (struct iovec){(void *)data, data_len};
  }
#undef HDR
  int iov_at = 0;
  if (f.model >= 0)
    close(f.model);
  if (f.data >= 0)
    close(f.data);
  f.model = f.data = -1;

  sbx_ipc_decoder dec;
  sbx_ipc_decoder_init(&dec, SBX_IPC_TO_WORKER, dispatch,
                       (int)(sizeof(dispatch) / sizeof(dispatch[0])), &s);
  int status = 0, reaped = 0, eof = 0, timed_out = 0, cancelled = 0,
      proto_err = 0;
  int abort_sent = 0;
  double kill_at = 0, deadline = s.t0 + p->wall_seconds;
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
      if (iov_at == niov && to_r[1] >= 0 && !proto_err) {
        sbx_ipc_send(to_r[1], SBX_IPC_ABORT, NULL, 0);
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
      pf[np++] = (struct pollfd){from_r[0], POLLIN, 0};
    if (iov_at < niov && to_r[1] >= 0)
      pf[np++] = (struct pollfd){to_r[1], POLLOUT, 0};
    poll(pf, (nfds_t)np, eof ? 10 : 50);
    if (iov_at < niov && to_r[1] >= 0) {
      ssize_t w = writev(to_r[1], iov + iov_at, niov - iov_at);
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
      ssize_t r = read(from_r[0], buf, sizeof(buf));
      if (r > 0) {
        if (!proto_err && sbx_ipc_decoder_feed(&dec, buf, (size_t)r))
          proto_err = 1;
        continue;
      }
      if (r == 0)
        eof = 1;
      else if (errno != EAGAIN && errno != EINTR)
        eof = 1;
      break;
    }
    pid_t w = wait4(pid, &status, WNOHANG, &ru);
    if (w == pid)
      reaped = 1;
  }
  /* whatever the runner wrote before dying (the SIGSYS report) */
  for (;;) {
    ssize_t r = read(from_r[0], buf, sizeof(buf));
    if (r <= 0)
      break;
    if (!proto_err && sbx_ipc_decoder_feed(&dec, buf, (size_t)r))
      proto_err = 1;
  }
  kill(-pid, SIGKILL); /* stragglers of the group, if any */
  out->seconds = now_s() - s.t0;
  out->cpu_seconds =
      (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
      (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
  out->mem_peak = sbx_memcap_peak(&mc);
  if (!proto_err && !sbx_ipc_decoder_idle(&dec) && WIFEXITED(status) &&
      !WEXITSTATUS(status)) {
    proto_err = 1;
    snprintf(dec.why, sizeof(dec.why), "stream ended inside a message");
  }
  classify(p, &s, status, timed_out, cancelled, proto_err, dec.why, &mc);
  sbx_ipc_decoder_free(&dec);
  if (out->status != SBX_RUN_SUCCEEDED)
    sbx_runner_outcome_free(out);
cleanup:
  for (int i = 0; i < 2; i++) {
    if (to_r[i] >= 0)
      close(to_r[i]);
    if (from_r[i] >= 0)
      close(from_r[i]);
  }
  if (f.model >= 0)
    close(f.model);
  if (f.data >= 0)
    close(f.data);
  sbx_memcap_destroy(&mc);
  return rc;
}
