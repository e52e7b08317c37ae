/*
 * test_sandbox_jobs.c - real jobs through sbx_runner_run and real
 * sandboxed runners:
 *   - an attack on the MNIST fixture succeeds and its adversarial examples
 *     are byte-identical to the same attack run in this process (memfd and
 *     pipe transports);
 *   - hostile models (truncated, absurd dims, 1e9-element initializer,
 *     cycle, unsupported op, external data ../../etc/passwd, NaN weights,
 *     100k nodes) and a
 *     zip-bomb NPZ each fail with a clear reason, the supervisor survives;
 *   - memory hog, CPU spin, wall-time limit, cancellation (< 2 s) and a
 *     forbidden syscall end with the right reason;
 *   - a good job succeeds while hostile ones run beside it.
 * Usage: test_sandbox_jobs RUNNER FIXTURES_DIR HOSTILE_DIR
 */
#define _GNU_SOURCE
#include "adv/adv.h"
#include "adv/attack.h"
#include "adv/data.h"
#include "harness.h"
#include "sbx/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *g_runner, *g_fix, *g_hostile;

static unsigned char *slurp(const char *dir, const char *name, size_t *n) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  rewind(f);
  unsigned char *b = malloc((size_t)sz + 1);
  *n = fread(b, 1, (size_t)sz, f);
  fclose(f);
  return b;
}

static sbx_runner_params params(void) {
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = g_runner;
  p.wall_seconds = 60;
  p.threads = 2;
  return p;
}

static sbx_job_spec pgd_spec(int n, int steps) {
  sbx_job_spec s;
  memset(&s, 0, sizeof(s));
  s.kind = SBX_JOB_ATTACK;
  snprintf(s.attack, sizeof(s.attack), "pgd");
  s.eps = 0.1;
  s.steps = (uint32_t)steps;
  s.seed = 7;
  s.n = (uint64_t)n;
  return s;
}

typedef struct counts {
  int ready, progress, logs;
  int logs_at_ready;  /* start-up logs arrive before READY (held till then) */
  int cloned, forked; /* how the runner became PID 1 (its log says) */
  double last_fraction;
} counts;
static void c_ready(void *ud, const sbx_ipc_ready *r) {
  counts *c = ud;
  c->ready++;
  c->logs_at_ready = c->logs;
}
static void c_log(void *ud, int level, const char *t) {
  counts *c = ud;
  c->logs++;
  if (strstr(t, "pid namespace: running as PID 1 (no fork needed)"))
    c->cloned++;
  else if (strstr(t, "pid namespace: running as PID 1"))
    c->forked++;
}
static void c_progress(void *ud, const sbx_ipc_progress *p) {
  counts *c = ud;
  c->progress++;
  c->last_fraction = p->fraction;
}

/* Value of an integer JSON field ("key":N) or -1. */
static long long json_int(const char *json, const char *key) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char *s = json ? strstr(json, pat) : NULL;
  return s ? atoll(s + strlen(pat)) : -1;
}

/* The same attack in this process: the reference for the sandboxed run. */
static void reference(const sbx_job_spec *s, adv_attack_result *res,
                      int64_t *robust) {
  size_t ml;
  unsigned char *mb = slurp(g_fix, "mnist_cnn.onnx", &ml);
  adv_model *m = NULL;
  adv_err e;
  CHECK(adv_model_load_mem(mb, ml, adv_load_default_params(), &m, &e) == 0);
  free(mb);
  char dpath[1024];
  snprintf(dpath, sizeof(dpath), "%s/demo_mnist.npz", g_fix);
  adv_dataset ds;
  adv_err eb;
  CHECK(adv_dataset_load(dpath, NULL, adv_io_default_limits(), &ds, &eb) == 0);
  adv_attack_params ap = adv_attack_default_params(ADV_ATTACK_PGD);
  ap.eps = (float)s->eps;
  ap.steps = (int)s->steps;
  ap.seed = s->seed;
  ap.threads = 2;
  CHECK(adv_attack_run(m, ds.x.data, (int64_t)s->n, ds.y.data, NULL, ap, NULL,
                       NULL, NULL, res, &e) == 0);
  *robust = 0;
  for (int64_t i = 0; i < (int64_t)s->n; i++)
    *robust += res->pred_adv[i] == ((int64_t *)ds.y.data)[i];
  adv_dataset_free(&ds);
  adv_model_free(m);
}

static sbx_runner_pool *g_pool; /* set: run through the pool instead */

static void run_real_job(int use_memfd, int unshare_in_runner) {
  size_t ml, dl;
  unsigned char *model = slurp(g_fix, "mnist_cnn.onnx", &ml);
  unsigned char *data = slurp(g_fix, "demo_mnist.npz", &dl);
  sbx_runner_params p = params();
  p.use_memfd = use_memfd;
  p.unshare_in_runner = unshare_in_runner;
  sbx_job_spec s = pgd_spec(16, 10);
  counts c = {0};
  sbx_runner_callbacks cb = {&c, c_ready, c_log, c_progress};
  sbx_runner_outcome o;
  if (g_pool)
    CHECK_EQ_INT(
        sbx_runner_pool_run(g_pool, &p, &s, model, ml, data, dl, &cb, NULL, &o),
        0);
  else
    CHECK_EQ_INT(sbx_runner_run(&p, &s, model, ml, data, dl, &cb, NULL, &o), 0);
  if (o.status != SBX_RUN_SUCCEEDED)
    fprintf(stderr, "real job: %s: %s\n", sbx_runner_status_name(o.status),
            o.reason);
  CHECK_EQ_INT(o.status, SBX_RUN_SUCCEEDED);
  CHECK_EQ_INT(c.ready, 1);
  CHECK(c.progress >= 1);
  CHECK(c.logs >= 8); /* every sandbox step logs */
  CHECK_EQ_INT(o.sandbox.namespaces, 63);
  /* both ways to PID 1 give the same sandbox: cloned into the namespaces
   * by the supervisor (the default), or unshare + fork in the runner */
  if (!g_pool) { /* a spare's start-up logs are its own */
    /* the start-up logs were sent with READY, in front of it */
    CHECK(c.logs_at_ready >= 8);
    CHECK_EQ_INT(c.cloned, unshare_in_runner ? 0 : 1);
    CHECK_EQ_INT(c.forked, unshare_in_runner ? 1 : 0);
  }
  CHECK_EQ_INT(o.sandbox.pivoted, 1);
  CHECK(o.sandbox.landlock_abi >= 1);
  CHECK(o.result_json != NULL);
  adv_attack_result ref;
  int64_t robust_ref;
  reference(&s, &ref, &robust_ref);
  CHECK_EQ_INT(json_int(o.result_json, "n"), 16);
  CHECK_EQ_INT(json_int(o.result_json, "robust_correct"), robust_ref);
  /* NPY payload: header then exactly the reference's bytes */
  size_t bytes = (size_t)ref.n * (size_t)ref.per * sizeof(float);
  CHECK(o.adv_npy && o.adv_npy_len > bytes &&
        memcmp(o.adv_npy, "\x93NUMPY", 6) == 0);
  if (o.adv_npy && o.adv_npy_len > bytes) {
    size_t hl = 10 + (size_t)(o.adv_npy[8] | o.adv_npy[9] << 8);
    CHECK_EQ_INT(o.adv_npy_len, hl + bytes);
    CHECK(strstr((char *)o.adv_npy + 10, "'shape': (16, 1, 28, 28)") != NULL);
    CHECK(memcmp(o.adv_npy + hl, ref.x_adv, bytes) == 0);
  }
  adv_attack_result_free(&ref);
  sbx_runner_outcome_free(&o);
  free(model);
  free(data);
}

TEST(real_attack_job_memfd) {
  run_real_job(1, 0);
}
TEST(real_attack_job_pipe) {
  run_real_job(0, 0);
}
TEST(real_attack_job_runner_unshares) {
  run_real_job(1, 1);
}

/* Runners started ahead: the same bytes, twice (each spare serves one
 * job), and a job with a smaller memory cap than the pool's still gets
 * its own cap. */
TEST(pool_runs_jobs_with_their_own_limits) {
  sbx_runner_params p = params();
  CHECK_EQ_INT(sbx_runner_pool_new(&p, 1, &g_pool), 0);
  run_real_job(0, 0);
  run_real_job(0, 0);
  size_t ml, dl;
  unsigned char *model = slurp(g_fix, "mnist_cnn.onnx", &ml);
  unsigned char *data = slurp(g_hostile, "zipbomb.npz", &dl);
  p.mem_bytes = (uint64_t)128 << 20;
  sbx_job_spec s = pgd_spec(4, 2);
  sbx_runner_outcome o;
  CHECK_EQ_INT(
      sbx_runner_pool_run(g_pool, &p, &s, model, ml, data, dl, NULL, NULL, &o),
      0);
  CHECK(strstr(o.reason, "memory limit 128 MiB exceeded") != NULL);
  sbx_runner_outcome_free(&o);
  free(model);
  free(data);
  sbx_runner_pool_free(g_pool);
  g_pool = NULL;
}

/* A runner that dies without reading its (large) input: the supervisor
 * gets EPIPE, not a fatal SIGPIPE, and says what happened. */
TEST(runner_dying_before_reading_input) {
  sbx_runner_params p = params();
  p.runner_path = "/bin/false";
  p.use_memfd = 0;
  size_t n = (size_t)8 << 20; /* far more than a pipe buffer */
  unsigned char *big = calloc(1, n);
  sbx_job_spec s = pgd_spec(1, 1);
  sbx_runner_outcome o;
  CHECK_EQ_INT(sbx_runner_run(&p, &s, big, n, big, n, NULL, NULL, &o), 0);
  CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
  CHECK_EQ_INT(o.exit_code, 1);
  CHECK(strstr(o.reason, "exited with code 1") != NULL);
  sbx_runner_outcome_free(&o);
  free(big);
}

/* Runs RUNNER (args: argv[1] or none) with fd 0 = in_r, 1 = a pipe whose
 * read end is returned in *out_r, 2-5 = /dev/null and its go byte already
 * on fd 6 (what the supervisor does, without namespaces of its own). */
static pid_t start_bare_runner(const char *arg, int in_r, int *out_r) {
  int out[2], go[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(go, O_CLOEXEC) ||
      write(go[1], "g", 1) != 1)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0 || dup2(in_r, 0) < 0 || dup2(out[1], 1) < 0 ||
        dup2(go[0], 6) < 0)
      _exit(126);
    for (int fd = 2; fd <= 5; fd++)
      if (dup2(devnull, fd) < 0)
        _exit(126);
    close_range(7, ~0U, 0);
    char *av[] = {(char *)"aisbx-runner", (char *)arg, NULL};
    char *env[] = {(char *)"PATH=/nonexistent", NULL};
    execve(g_runner, av, env);
    _exit(127);
  }
  close(out[1]);
  close(go[0]);
  close(go[1]);
  *out_r = out[0];
  return pid;
}

/* What read_frames looks for and finds, message by message. */
typedef struct frames {
  const char *text;
  int k, log_at, err_at, logs_before_err;
} frames;

static int on_frame(void *ud, uint32_t type, const uint8_t *p, size_t n) {
  frames *f = ud;
  sbx_ipc_log m;
  if (type == SBX_IPC_LOG && f->err_at < 0)
    f->logs_before_err++;
  if (type == SBX_IPC_LOG && f->log_at < 0 &&
      sbx_ipc_log_decode(p, n, &m) == 0 && strstr(m.text, f->text))
    f->log_at = f->k;
  if (type == SBX_IPC_ERROR && f->err_at < 0)
    f->err_at = f->k;
  f->k++;
  return 0;
}

/* Reads fd to EOF through the worker's decoder; which message (0-based)
 * was the first LOG containing `text` and which the ERROR (-1: none), and
 * how many LOGs came before the ERROR. */
static void read_frames(int fd, const char *text, int *log_at, int *err_at,
                        int *logs_before_err) {
  static const sbx_ipc_dispatch table[] = {{SBX_IPC_LOG, on_frame},
                                           {SBX_IPC_ERROR, on_frame}};
  frames f = {text, 0, -1, -1, 0};
  sbx_ipc_decoder d;
  sbx_ipc_decoder_init(&d, SBX_IPC_TO_WORKER, table, 2, &f);
  uint8_t buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof(buf))) > 0 &&
         sbx_ipc_decoder_feed(&d, buf, (size_t)r) == 0) {
  }
  sbx_ipc_decoder_free(&d);
  *log_at = f.log_at;
  *err_at = f.err_at;
  *logs_before_err = f.logs_before_err;
}

/* The runner holds its start-up logs (it sends them in front of READY);
 * when a step fails first, they still reach the supervisor, ahead of the
 * ERROR. Here the runner gets a malformed namespace argument (it was not
 * cloned by a supervisor): its log says why, then its ERROR, exit code 3. */
TEST(start_up_logs_precede_an_early_error) {
  int in[2], out_r = -1;
  CHECK_EQ_INT(pipe2(in, O_CLOEXEC), 0);
  pid_t pid = start_bare_runner("--ns=garbage", in[0], &out_r);
  CHECK(pid > 0);
  if (pid <= 0)
    return;
  close(in[0]);
  close(in[1]);
  int log_at, err_at, nlogs;
  read_frames(out_r, "malformed argument from the supervisor", &log_at, &err_at,
              &nlogs);
  close(out_r);
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
  CHECK(log_at >= 0);
  CHECK(err_at > log_at);
}

/* ... and they are really held: a runner that enters its namespaces
 * itself (no --ns: unshare) and then waits for its inputs has logged six
 * namespaces but sent nothing; when its input pipe closes it fails, and
 * the six LOGs arrive, ahead of its ERROR. */
TEST(start_up_logs_are_held) {
  int in[2], out_r = -1;
  CHECK_EQ_INT(pipe2(in, O_CLOEXEC), 0);
  pid_t pid = start_bare_runner(NULL, in[0], &out_r);
  CHECK(pid > 0);
  if (pid <= 0)
    return;
  close(in[0]);
  struct pollfd pf = {.fd = out_r, .events = POLLIN};
  CHECK_EQ_INT(poll(&pf, 1, 1000), 0); /* a second: nothing sent */
  close(in[1]);
  int log_at, err_at, nlogs;
  read_frames(out_r, "namespace uts: entered", &log_at, &err_at, &nlogs);
  close(out_r);
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
  CHECK(log_at >= 0);
  CHECK(nlogs >= 6);
  CHECK(err_at > log_at);
}

/* A real job that would run for hours (PGD with a million steps) ends at
 * the CPU limit, or at the wall-time limit when that comes first. */
TEST(endless_attack_hits_cpu_and_wall_limits) {
  size_t ml, dl;
  unsigned char *model = slurp(g_fix, "mnist_cnn.onnx", &ml);
  unsigned char *data = slurp(g_fix, "demo_mnist.npz", &dl);
  sbx_job_spec s = pgd_spec(64, 1000000);
  sbx_runner_params p = params();
  p.cpu_seconds = 1;
  sbx_runner_outcome o;
  CHECK_EQ_INT(sbx_runner_run(&p, &s, model, ml, data, dl, NULL, NULL, &o), 0);
  fprintf(stderr, "  cpu-limited attack %s: %s (%.2f s)\n",
          sbx_runner_status_name(o.status), o.reason, o.seconds);
  CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
  CHECK(strstr(o.reason, "CPU time limit of 1 s exceeded") != NULL);
  sbx_runner_outcome_free(&o);
  p = params();
  p.wall_seconds = 1.0;
  CHECK_EQ_INT(sbx_runner_run(&p, &s, model, ml, data, dl, NULL, NULL, &o), 0);
  fprintf(stderr, "  wall-limited attack %s: %s (%.2f s)\n",
          sbx_runner_status_name(o.status), o.reason, o.seconds);
  CHECK_EQ_INT(o.status, SBX_RUN_TIMED_OUT);
  CHECK(o.seconds < 1.0 + 2.0); /* the engine sees ABORT at once */
  sbx_runner_outcome_free(&o);
  free(model);
  free(data);
}

/* Runs a job on a hostile model (or dataset) and returns its outcome. */
static void run_hostile(const char *model_name, const char *data_name,
                        uint64_t mem, sbx_runner_outcome *o) {
  size_t ml, dl;
  unsigned char *model = slurp(model_name[0] == '@' ? g_fix : g_hostile,
                               model_name + (model_name[0] == '@'), &ml);
  unsigned char *data = slurp(data_name[0] == '@' ? g_fix : g_hostile,
                              data_name + (data_name[0] == '@'), &dl);
  sbx_runner_params p = params();
  if (mem)
    p.mem_bytes = mem;
  sbx_job_spec s = pgd_spec(4, 2);
  CHECK_EQ_INT(sbx_runner_run(&p, &s, model, ml, data, dl, NULL, NULL, o), 0);
  fprintf(stderr, "  %-24s %s: %s (%.2f s)\n",
          model_name[0] == '@' ? data_name : model_name,
          sbx_runner_status_name(o->status), o->reason, o->seconds);
  free(model);
  free(data);
}

TEST(hostile_models_fail_clearly) {
  static const struct {
    const char *file, *expect;
  } cases[] = {
      {"truncated.onnx", "truncated"},
      {"absurd_dims.onnx", "shape"},
      {"huge_initializer.onnx", "larger than"},
      {"cyclic.onnx", "cycle"},
      {"unsupported_op.onnx", "NonMaxSuppression"},
      {"external_data.onnx", "external"},
      {"nan_weights.onnx", "finite"},
      {"nodes_100k.onnx", "node"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sbx_runner_outcome o;
    run_hostile(cases[i].file, "@demo_mnist.npz", 0, &o);
    CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
    CHECK(o.ready);            /* parsing happened inside the sealed sandbox */
    CHECK(o.term_signal == 0); /* a clean error, not a crash */
    if (!strstr(o.reason, cases[i].expect))
      fprintf(stderr, "  expected '%s' in the reason\n", cases[i].expect);
    CHECK(strstr(o.reason, cases[i].expect) != NULL);
    sbx_runner_outcome_free(&o);
  }
}

TEST(zip_bomb_npz_hits_memory_cap) {
  sbx_runner_outcome o;
  run_hostile("@mnist_cnn.onnx", "zipbomb.npz", (uint64_t)128 << 20, &o);
  CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
  CHECK(strstr(o.reason, "memory limit 128 MiB exceeded") != NULL);
  sbx_runner_outcome_free(&o);
}

static void run_probe(int probe, sbx_runner_params p,
                      const volatile int *abort_flag, sbx_runner_outcome *o) {
  sbx_job_spec s;
  memset(&s, 0, sizeof(s));
  s.kind = SBX_JOB_PROBE;
  s.probe = (uint32_t)probe;
  if (g_pool)
    CHECK_EQ_INT(
        sbx_runner_pool_run(g_pool, &p, &s, "", 0, "", 0, NULL, abort_flag, o),
        0);
  else
    CHECK_EQ_INT(sbx_runner_run(&p, &s, "", 0, "", 0, NULL, abort_flag, o), 0);
  fprintf(stderr, "  probe %-2d %s: %s (%.2f s)\n", probe,
          sbx_runner_status_name(o->status), o->reason, o->seconds);
}

TEST(memory_hog_is_stopped_by_the_cap) {
  sbx_runner_params p = params();
  p.mem_bytes = (uint64_t)128 << 20;
  sbx_runner_outcome o;
  run_probe(12, p, NULL, &o); /* SBX_PROBE_MEMORY */
  CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
  CHECK(strstr(o.reason, "memory limit 128 MiB exceeded") != NULL);
  sbx_runner_outcome_free(&o);
}

TEST(cpu_spin_hits_cpu_limit) {
  sbx_runner_params p = params();
  p.cpu_seconds = 1;
  sbx_runner_outcome o;
  run_probe(13, p, NULL, &o); /* SBX_PROBE_CPU */
  CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
  CHECK(strstr(o.reason, "CPU time limit of 1 s exceeded") != NULL);
  sbx_runner_outcome_free(&o);
}

TEST(infinite_loop_hits_wall_time) {
  sbx_runner_params p = params();
  p.cpu_seconds = 60;
  p.wall_seconds = 0.5;
  sbx_runner_outcome o;
  run_probe(13, p, NULL, &o);
  CHECK_EQ_INT(o.status, SBX_RUN_TIMED_OUT);
  CHECK(strstr(o.reason, "wall-time limit") != NULL);
  CHECK(o.seconds < 0.5 + p.grace_seconds + 1.5);
  sbx_runner_outcome_free(&o);
}

/* A spare started ahead with the pool's default limits (2 GiB, 600 s CPU,
 * 900 s wall) runs each job under that job's own limits, and jobs the
 * spares cannot serve (more threads, big inputs) still run. */
TEST(pool_spares_take_each_jobs_limits) {
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = g_runner;
  CHECK_EQ_INT(sbx_runner_pool_new(&p, 1, &g_pool), 0);
  sbx_runner_outcome o;
  sbx_runner_params q = params();
  q.mem_bytes = (uint64_t)128 << 20;
  run_probe(12, q, NULL, &o); /* SBX_PROBE_MEMORY */
  CHECK(strstr(o.reason, "memory limit 128 MiB exceeded") != NULL);
  if (o.memcap == SBX_MEMCAP_CGROUP_V1 || o.memcap == SBX_MEMCAP_CGROUP_V2)
    CHECK(strstr(o.memcap_note, ", 128 MiB") != NULL);
  sbx_runner_outcome_free(&o);
  q = params();
  q.cpu_seconds = 1;
  run_probe(13, q, NULL, &o); /* SBX_PROBE_CPU */
  CHECK(strstr(o.reason, "CPU time limit of 1 s exceeded") != NULL);
  sbx_runner_outcome_free(&o);
  q = params();
  q.cpu_seconds = 60;
  q.wall_seconds = 0.5;
  run_probe(13, q, NULL, &o);
  CHECK_EQ_INT(o.status, SBX_RUN_TIMED_OUT);
  CHECK(o.seconds < 0.5 + q.grace_seconds + 1.5);
  sbx_runner_outcome_free(&o);
  q = params();
  q.threads = 4; /* above the spares' OMP_THREAD_LIMIT: a fresh runner */
  run_probe(0, q, NULL, &o);
  CHECK_EQ_INT(o.status, SBX_RUN_SUCCEEDED);
  CHECK_EQ_INT(o.ready, 1);
  sbx_runner_outcome_free(&o);
  size_t big = SBX_RUNNER_POOL_INLINE_MAX + 1; /* memfds, not the pipe */
  char *zeros = calloc(1, big);
  sbx_job_spec s;
  memset(&s, 0, sizeof(s));
  s.kind = SBX_JOB_PROBE;
  CHECK_EQ_INT(
      sbx_runner_pool_run(g_pool, &q, &s, "", 0, zeros, big, NULL, NULL, &o),
      0);
  CHECK_EQ_INT(o.status, SBX_RUN_SUCCEEDED);
  sbx_runner_outcome_free(&o);
  free(zeros);
  sbx_runner_pool_free(g_pool);
  g_pool = NULL;
}

/* The program the supervisor compiles once for every runner: classic BPF
 * whose first instruction loads seccomp_data.arch (offset 4, kernel ABI)
 * and whose last returns; the same bytes each time. */
TEST(precompiled_filter_checks_the_architecture_first) {
  void *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;
  CHECK_EQ_INT(sbx_sandbox_filter_compile(&a, &la), 0);
  CHECK_EQ_INT(sbx_sandbox_filter_compile(&b, &lb), 0);
  CHECK(la >= 8 * 8 && la % 8 == 0 && la == lb);
  if (a && b && la == lb && la >= 16) {
    CHECK(memcmp(a, b, la) == 0);
    const uint8_t *f = a;
    uint16_t code0 = (uint16_t)(f[0] | f[1] << 8);
    uint32_t k0 =
        (uint32_t)(f[4] | f[5] << 8 | f[6] << 16 | (uint32_t)f[7] << 24);
    CHECK_EQ_INT(code0, 0x20); /* BPF_LD | BPF_W | BPF_ABS */
    CHECK_EQ_INT(k0, 4);       /* offsetof(struct seccomp_data, arch) */
    uint16_t last = (uint16_t)(f[la - 8] | f[la - 7] << 8);
    CHECK_EQ_INT(last & 0x07, 0x06); /* BPF_RET */
  }
  free(a);
  free(b);
}

TEST(forbidden_syscall_named) {
  sbx_runner_outcome o;
  run_probe(3, params(), NULL, &o); /* SBX_PROBE_SOCKET */
  char want[64];
  snprintf(want, sizeof(want), "forbidden system call %d (socket)",
           (int)SYS_socket);
  CHECK_EQ_INT(o.status, SBX_RUN_FAILED);
  CHECK(strstr(o.reason, want) != NULL);
  CHECK_EQ_INT(o.term_signal, SIGSYS);
  sbx_runner_outcome_free(&o);
}

static volatile int g_abort;
static void *set_abort_later(void *arg) {
  struct timespec ts = {0, 400 * 1000 * 1000};
  nanosleep(&ts, NULL);
  g_abort = 1;
  return NULL;
}

static void cancel_case(int probe) {
  g_abort = 0;
  pthread_t t;
  pthread_create(&t, NULL, set_abort_later, NULL);
  sbx_runner_outcome o;
  if (probe) {
    sbx_runner_params p = params();
    p.cpu_seconds = 60;
    run_probe(probe, p, &g_abort, &o); /* ignores ABORT: SIGKILL after grace */
  } else {
    size_t ml, dl;
    unsigned char *model = slurp(g_fix, "mnist_cnn.onnx", &ml);
    unsigned char *data = slurp(g_fix, "demo_mnist.npz", &dl);
    sbx_runner_params p = params();
    sbx_job_spec s = pgd_spec(64, 100000); /* engine polls the abort flag */
    CHECK_EQ_INT(
        sbx_runner_run(&p, &s, model, ml, data, dl, NULL, &g_abort, &o), 0);
    fprintf(stderr, "  attack %s: %s (%.2f s)\n",
            sbx_runner_status_name(o.status), o.reason, o.seconds);
    free(model);
    free(data);
  }
  pthread_join(t, NULL);
  CHECK_EQ_INT(o.status, SBX_RUN_CANCELLED);
  CHECK(o.seconds < 0.4 + 2.0); /* stops within 2 s of the request */
  sbx_runner_outcome_free(&o);
}

/* Another job's runner misbehaving at the same time (zip bomb, CPU spin)
 * does not disturb a good job: both supervisions run in parallel threads. */
static void *hostile_neighbour(void *arg) {
  sbx_runner_outcome *o = arg;
  size_t ml, dl;
  unsigned char *model = slurp(g_fix, "mnist_cnn.onnx", &ml);
  unsigned char *data = slurp(g_hostile, "zipbomb.npz", &dl);
  sbx_runner_params p = params();
  p.mem_bytes = (uint64_t)128 << 20;
  sbx_job_spec s = pgd_spec(4, 2);
  sbx_runner_run(&p, &s, model, ml, data, dl, NULL, NULL, &o[0]);
  p = params();
  p.cpu_seconds = 1;
  memset(&s, 0, sizeof(s));
  s.kind = SBX_JOB_PROBE;
  s.probe = 13; /* CPU spin */
  sbx_runner_run(&p, &s, "", 0, "", 0, NULL, NULL, &o[1]);
  free(model);
  free(data);
  return NULL;
}

TEST(good_job_beside_hostile_ones) {
  sbx_runner_outcome bad[2];
  pthread_t t;
  pthread_create(&t, NULL, hostile_neighbour, bad);
  run_real_job(1, 0);
  pthread_join(t, NULL);
  CHECK(strstr(bad[0].reason, "memory limit 128 MiB exceeded") != NULL);
  CHECK(strstr(bad[1].reason, "CPU time limit of 1 s exceeded") != NULL);
  sbx_runner_outcome_free(&bad[0]);
  sbx_runner_outcome_free(&bad[1]);
}

TEST(cancel_running_attack) {
  cancel_case(0);
}
TEST(cancel_spinning_runner) {
  cancel_case(13);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s RUNNER FIXTURES HOSTILE_DIR\n", argv[0]);
    return 2;
  }
  g_runner = argv[1];
  g_fix = argv[2];
  g_hostile = argv[3];
  RUN(real_attack_job_memfd);
  RUN(hostile_models_fail_clearly);
  RUN(zip_bomb_npz_hits_memory_cap);
  RUN(memory_hog_is_stopped_by_the_cap);
  RUN(cpu_spin_hits_cpu_limit);
  RUN(infinite_loop_hits_wall_time);
  RUN(endless_attack_hits_cpu_and_wall_limits);
  RUN(forbidden_syscall_named);
  RUN(cancel_running_attack);
  RUN(cancel_spinning_runner);
  RUN(good_job_beside_hostile_ones);
  RUN(real_attack_job_pipe); /* the supervisor survived all of the above */
  RUN(real_attack_job_runner_unshares);
  RUN(pool_runs_jobs_with_their_own_limits);
  RUN(pool_spares_take_each_jobs_limits);
  RUN(precompiled_filter_checks_the_architecture_first);
  RUN(runner_dying_before_reading_input);
  RUN(start_up_logs_precede_an_early_error);
  RUN(start_up_logs_are_held);
  return harness_report();
}
