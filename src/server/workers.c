/*
 * workers.c - local workers (sbx/server.h, sbx_local_workers_*): aisbxd
 * starts N aisbx-worker processes that talk to it over loopback TLS with
 * the ordinary worker protocol - a worker token created at start (file
 * mode 0600, revoked and deleted at stop), the server's own certificate as
 * their CA.
 *
 * The server confines itself (confine.h: seccomp forbids fork and execve),
 * so the workers are started by a launcher forked BEFORE the server opens
 * anything: a single-threaded copy of aisbxd holding only the
 * configuration (no key, no database, no socket), with the credentials
 * aisbxd was started with. It waits for one start order on a pipe (the URL,
 * the CA and token file paths, sent before the server serves a request),
 * then restarts a worker that dies, with backoff (1 s doubling to 30 s;
 * reset after a minute of life), and stops them all (SIGTERM, SIGKILL after
 * 5 s) when the pipe closes: at the server's stop or death. It accepts
 * nothing else from the server.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <poll.h>
#include <sys/prctl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pool.h"
#include "sbx/jobs.h"
#include "sbx/server.h"
#include "state.h"
#include "util.h"

#define LW_MAX 256

typedef struct lw_proc {
  pid_t pid;      /* 0: not running */
  double started; /* monotonic */
  double next;    /* earliest restart */
  double backoff;
} lw_proc;

/* The start order, the only message on the pipe. */
typedef struct lw_order {
  char url[128];
  char ca[SBX_PATH_MAX + 32];
  char token_file[SBX_PATH_MAX + 32];
} lw_order;

struct sbx_local_workers {
  int n;
  char bin[PATH_MAX];
  pid_t launcher; /* 0: gone */
  int pipe_w;     /* the server's end; -1 when closed */
  lw_order o;
  char token_id[SBX_ID_MAX];
  sbx_server *s;
};

/* The worker binary: next to this executable, or in the build tree (its
 * root, where the runner and worker land, or src/worker). 0 when found
 * (path in out). */
static int find_worker_bin(char out[PATH_MAX]) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return SBX_ENOTFOUND;
  self[n] = 0;
  char *dir = dirname(self);
  const char *cands[] = {"%s/aisbx-worker", "%s/../../aisbx-worker",
                         "%s/../worker/aisbx-worker"};
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
    snprintf(out, PATH_MAX, cands[i], dir);
    if (access(out, X_OK) == 0)
      return SBX_OK;
  }
  return SBX_ENOTFOUND;
}

/* ---- the launcher process ---- */

/* Starts worker i (fork + exec; the child's signal mask is cleared). */
static void spawn(const char *bin, const lw_order *o, lw_proc *p, int i) {
  char name[32], slots[] = "1";
  snprintf(name, sizeof name, "local-%d", i);
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    execl(bin, bin, "--server", o->url, "--token-file", o->token_file,
          "--ca-file", o->ca, "--name", name, "--slots", slots, (char *)NULL);
    _exit(127);
  }
  p->started = sbx__mono();
  if (pid < 0) {
    p->pid = 0;
    p->next = p->started + p->backoff;
    sbx__log("local worker %d: fork: %s", i, strerror(errno));
  } else {
    p->pid = pid;
  }
}

/* Reads (wr 0) or writes (wr 1) exactly n bytes; 0, or -1 at EOF/error.
 * Not inlined: GCC's overread check misjudges the order's size. */
__attribute__((noinline)) static int io_full(int fd, void *buf, size_t n,
                                             int wr) {
  char *c = buf;
  while (n) {
    ssize_t k = wr ? write(fd, c, n) : read(fd, c, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    c += k;
    n -= (size_t)k;
  }
  return 0;
}

/* SIGTERM to every worker, SIGKILL to those alive after 5 s, all reaped. */
static void stop_all(lw_proc *p, int n) {
  for (int i = 0; i < n; i++)
    if (p[i].pid)
      kill(p[i].pid, SIGTERM);
  double until = sbx__mono() + 5;
  for (int i = 0; i < n; i++) {
    while (p[i].pid) {
      if (waitpid(p[i].pid, NULL, WNOHANG) == p[i].pid)
        p[i].pid = 0;
      else if (sbx__mono() > until) {
        kill(p[i].pid, SIGKILL);
        waitpid(p[i].pid, NULL, 0);
        p[i].pid = 0;
      } else
        usleep(20000);
    }
  }
}

/* The launcher: waits for the start order, then reaps and restarts every
 * 200 ms until the pipe closes. Never returns. */
static void launcher_main(int n, const char *bin, int rfd) {
  prctl(PR_SET_NAME, "aisbxd-launch", 0, 0, 0);
  close_range(3, (unsigned)rfd - 1, 0); /* nothing of the server's */
  close_range((unsigned)rfd + 1, ~0U, 0);
  lw_order o;
  if (io_full(rfd, &o, sizeof o, 0))
    _exit(0); /* the server stopped before starting us */
  o.url[sizeof o.url - 1] = o.ca[sizeof o.ca - 1] = 0;
  o.token_file[sizeof o.token_file - 1] = 0;
  static lw_proc p[LW_MAX];
  for (int i = 0; i < n; i++)
    p[i].backoff = 1;
  for (;;) {
    double now = sbx__mono();
    for (int i = 0; i < n; i++) {
      int st;
      if (p[i].pid && waitpid(p[i].pid, &st, WNOHANG) == p[i].pid) {
        if (now - p[i].started > 60)
          p[i].backoff = 1; /* it had been fine for a while */
        p[i].next = now + p[i].backoff;
        sbx__log("local worker %d (pid %d) %s %d; restart in %.0f s", i,
                 (int)p[i].pid, WIFEXITED(st) ? "exited" : "killed by signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), p[i].backoff);
        p[i].backoff = p[i].backoff < 15 ? p[i].backoff * 2 : 30;
        p[i].pid = 0;
      }
      if (!p[i].pid && now >= p[i].next)
        spawn(bin, &o, &p[i], i);
    }
    struct pollfd pf = {rfd, POLLIN, 0};
    char c;
    if (poll(&pf, 1, 200) > 0 && read(rfd, &c, 1) <= 0)
      break; /* EOF: the server stops (or died) */
  }
  stop_all(p, n);
  _exit(0);
}

int sbx_local_workers_fork(int n, const char *worker_bin,
                           sbx_local_workers **out) {
  *out = NULL;
  if (n <= 0)
    return SBX_OK;
  if (n > LW_MAX)
    n = LW_MAX;
  sbx_local_workers *w = calloc(1, sizeof *w);
  if (!w)
    return SBX_ENOMEM;
  w->n = n;
  w->pipe_w = -1;
  if (worker_bin)
    snprintf(w->bin, sizeof w->bin, "%s", worker_bin);
  if ((!worker_bin && find_worker_bin(w->bin)) || access(w->bin, X_OK)) {
    sbx__log("local workers: aisbx-worker not found%s%s (use --worker-bin); "
             "none started",
             worker_bin ? " at " : "", worker_bin ? worker_bin : "");
    free(w);
    return SBX_ENOTFOUND;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC)) {
    free(w);
    return SBX_EIO;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[1]);
    launcher_main(n, w->bin, fds[0]);
  }
  close(fds[0]);
  if (pid < 0) {
    close(fds[1]);
    free(w);
    return SBX_EIO;
  }
  w->launcher = pid;
  w->pipe_w = fds[1];
  *out = w;
  return SBX_OK;
}

/* ---- the server's side ---- */

/* Revokes the token and removes its file (best effort). */
static void drop_token(sbx_local_workers *w) {
  if (w->o.token_file[0])
    unlink(w->o.token_file);
  if (!w->token_id[0] || !w->s)
    return;
  sbx_store *st = sbx__pool_take(&w->s->pool);
  if (st) {
    sbx_meta_worker_token_revoke(sbx_store_meta(st), w->token_id, sbx__now());
    sbx__pool_give(&w->s->pool, st);
  }
  w->token_id[0] = 0;
}

int sbx_local_workers_start(sbx_server *s, sbx_local_workers *w) {
  if (!w)
    return SBX_OK;
  if (!s || w->s || w->pipe_w < 0)
    return SBX_EINVAL;
  w->s = s;
  /* loopback to our own port; the generated certificate names 127.0.0.1 */
  snprintf(w->o.url, sizeof w->o.url, "https://127.0.0.1:%u",
           (unsigned)sbx_server_port(s));
  if (s->p.tls_cert_file)
    snprintf(w->o.ca, sizeof w->o.ca, "%s", s->p.tls_cert_file);
  else
    snprintf(w->o.ca, sizeof w->o.ca, "%s/tls-cert.pem", s->data_dir);
  /* a worker token for this run, in a 0600 file */
  char tok[SBX_TOKEN_MAX];
  sbx_worker_token row;
  char label[64];
  snprintf(label, sizeof label, "local workers of aisbxd pid %d",
           (int)getpid());
  sbx_store *st = sbx__pool_take(&s->pool);
  int rc =
      st ? sbx_store_worker_token_create(st, label, 0, sbx__now(), tok, &row)
         : SBX_EBUSY;
  sbx__pool_give(&s->pool, st);
  if (!rc) {
    snprintf(w->token_id, sizeof w->token_id, "%s", row.id);
    snprintf(w->o.token_file, sizeof w->o.token_file, "%s/local-worker.token",
             s->data_dir);
    unlink(w->o.token_file);
    int fd =
        open(w->o.token_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t len = strlen(tok);
    if (fd < 0 || write(fd, tok, len) != (ssize_t)len ||
        write(fd, "\n", 1) != 1)
      rc = SBX_EIO;
    if (fd >= 0)
      close(fd);
  }
  sbx_memwipe(tok, sizeof tok);
  if (!rc && io_full(w->pipe_w, &w->o, sizeof w->o, 1))
    rc = SBX_EIO; /* the launcher is gone */
  if (rc) {
    sbx__log("local workers: %s", sbx_strerror(rc));
    drop_token(w);
    return rc;
  }
  sbx__log("local workers: %d x %s --server %s (launcher pid %d)", w->n, w->bin,
           w->o.url, (int)w->launcher);
  return SBX_OK;
}

void sbx_local_workers_stop(sbx_local_workers *w) {
  if (!w)
    return;
  if (w->pipe_w >= 0)
    close(w->pipe_w); /* the launcher stops the workers and exits */
  w->pipe_w = -1;
  while (w->launcher && waitpid(w->launcher, NULL, 0) < 0 && errno == EINTR)
    ;
  w->launcher = 0;
  drop_token(w);
  free(w);
}

int sbx_local_workers_default(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
