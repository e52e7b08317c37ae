/*
 * workers.c - local workers (sbx/server.h, sbx_local_workers_*): aisbxd
 * starts N aisbx-worker processes that talk to it over loopback TLS with
 * the ordinary worker protocol - a worker token created at start (file
 * mode 0600, revoked and deleted at stop), the server's own certificate as
 * their CA. A supervisor thread restarts a worker that dies, with backoff
 * (1 s doubling to 30 s; reset after a minute of life), and stops them all
 * (SIGTERM, SIGKILL after 5 s) at shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
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

struct sbx_local_workers {
  int n;
  lw_proc p[LW_MAX];
  char bin[PATH_MAX];
  char url[128];
  char ca[SBX_PATH_MAX + 32];
  char token_file[SBX_PATH_MAX + 32];
  char token_id[SBX_ID_MAX];
  sbx_server *s;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
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

/* Starts worker i (fork + exec; the child's signal mask is cleared). */
static void spawn(sbx_local_workers *w, int i) {
  char name[32], slots[] = "1";
  snprintf(name, sizeof name, "local-%d", i);
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    execl(w->bin, w->bin, "--server", w->url, "--token-file", w->token_file,
          "--ca-file", w->ca, "--name", name, "--slots", slots, (char *)NULL);
    _exit(127);
  }
  lw_proc *p = &w->p[i];
  p->started = sbx__mono();
  if (pid < 0) {
    p->pid = 0;
    p->next = p->started + p->backoff;
    sbx__log("local worker %d: fork: %s", i, strerror(errno));
  } else {
    p->pid = pid;
  }
}

/* The supervisor: reaps and restarts, every 200 ms. */
static void *supervise(void *arg) {
  sbx_local_workers *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!w->stop) {
    pthread_mutex_unlock(&w->mu);
    double now = sbx__mono();
    for (int i = 0; i < w->n; i++) {
      lw_proc *p = &w->p[i];
      int st;
      if (p->pid && waitpid(p->pid, &st, WNOHANG) == p->pid) {
        if (now - p->started > 60)
          p->backoff = 1; /* it had been fine for a while */
        p->next = now + p->backoff;
        sbx__log("local worker %d (pid %d) %s %d; restart in %.0f s", i,
                 (int)p->pid, WIFEXITED(st) ? "exited" : "killed by signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), p->backoff);
        p->backoff = p->backoff < 15 ? p->backoff * 2 : 30;
        p->pid = 0;
      }
      if (!p->pid && now >= p->next)
        spawn(w, i);
    }
    pthread_mutex_lock(&w->mu);
    if (w->stop)
      break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* Revokes the token and removes its file (best effort). */
static void drop_token(sbx_local_workers *w) {
  if (w->token_file[0])
    unlink(w->token_file);
  if (!w->token_id[0])
    return;
  sbx_store *st = sbx__pool_take(&w->s->pool);
  if (st) {
    sbx_meta_worker_token_revoke(sbx_store_meta(st), w->token_id, sbx__now());
    sbx__pool_give(&w->s->pool, st);
  }
  w->token_id[0] = 0;
}

int sbx_local_workers_start(sbx_server *s, int n, const char *worker_bin,
                            sbx_local_workers **out) {
  *out = NULL;
  if (n <= 0)
    return SBX_OK;
  if (n > LW_MAX)
    n = LW_MAX;
  sbx_local_workers *w = calloc(1, sizeof *w);
  if (!w)
    return SBX_ENOMEM;
  w->s = s;
  w->n = n;
  if (worker_bin)
    snprintf(w->bin, sizeof w->bin, "%s", worker_bin);
  if ((!worker_bin && find_worker_bin(w->bin)) || access(w->bin, X_OK)) {
    sbx__log("local workers: aisbx-worker not found%s%s (use --worker-bin); "
             "none started",
             worker_bin ? " at " : "", worker_bin ? worker_bin : "");
    free(w);
    return SBX_ENOTFOUND;
  }
  /* loopback to our own port; the generated certificate names 127.0.0.1 */
  snprintf(w->url, sizeof w->url, "https://127.0.0.1:%u",
           (unsigned)sbx_server_port(s));
  if (s->p.tls_cert_file)
    snprintf(w->ca, sizeof w->ca, "%s", s->p.tls_cert_file);
  else
    snprintf(w->ca, sizeof w->ca, "%s/tls-cert.pem", s->data_dir);
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
    snprintf(w->token_file, sizeof w->token_file, "%s/local-worker.token",
             s->data_dir);
    unlink(w->token_file);
    int fd = open(w->token_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t len = strlen(tok);
    if (fd < 0 || write(fd, tok, len) != (ssize_t)len ||
        write(fd, "\n", 1) != 1)
      rc = SBX_EIO;
    if (fd >= 0)
      close(fd);
  }
  sbx_memwipe(tok, sizeof tok);
  if (rc) {
    sbx__log("local workers: token: %s", sbx_strerror(rc));
    drop_token(w);
    free(w);
    return rc;
  }
  for (int i = 0; i < n; i++)
    w->p[i].backoff = 1;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (pthread_create(&w->thread, NULL, supervise, w)) {
    drop_token(w);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
    return SBX_ENOMEM;
  }
  sbx__log("local workers: %d x %s --server %s", n, w->bin, w->url);
  *out = w;
  return SBX_OK;
}

void sbx_local_workers_stop(sbx_local_workers *w) {
  if (!w)
    return;
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  for (int i = 0; i < w->n; i++)
    if (w->p[i].pid)
      kill(w->p[i].pid, SIGTERM);
  double until = sbx__mono() + 5;
  for (int i = 0; i < w->n; i++) {
    while (w->p[i].pid) {
      if (waitpid(w->p[i].pid, NULL, WNOHANG) == w->p[i].pid)
        w->p[i].pid = 0;
      else if (sbx__mono() > until) {
        kill(w->p[i].pid, SIGKILL);
        waitpid(w->p[i].pid, NULL, 0);
        w->p[i].pid = 0;
      } else
        usleep(20000);
    }
  }
  drop_token(w);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

int sbx_local_workers_default(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
