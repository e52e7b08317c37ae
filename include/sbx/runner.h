/*
 * sbx/runner.h - supervising one sandboxed runner per job (worker side).
 *
 *   sbx_runner_params p = sbx_runner_default_params();
 *   p.runner_path = ".../aisbx-runner"; p.mem_bytes = 2ull << 30;
 *   sbx_runner_outcome o;
 *   sbx_runner_run(&p, &spec, model, model_len, data, data_len, &cb,
 *                  &cancel_flag, &o);
 *   ... o.status, o.reason, o.result_json, o.adv_npy ...
 *   sbx_runner_outcome_free(&o);
 *
 * Each call forks + execs a fresh aisbx-runner (own process group, memory
 * cgroup when available, clean environment), feeds it the spec and the
 * model/dataset bytes (sealed memfds by default, else the pipe), decodes
 * its messages with a dispatch table, enforces the wall-time limit and
 * cancellation (ABORT message, SIGKILL of the process group after
 * grace_seconds) and turns the way it ended into a user-actionable reason
 * ("memory limit 2 GiB exceeded", "CPU time limit of 600 s exceeded",
 * "killed by sandbox: forbidden system call 41 (socket)", the engine's
 * own message for a bad model, ...).
 *
 * Thread-safety: independent calls may run concurrently in different
 * threads (no global state; the abort flag is only read).
 */
#ifndef SBX_RUNNER_H
#define SBX_RUNNER_H
#include "sbx/ipc.h"
#include "sbx/sandbox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_runner_params {
  const char *runner_path; /* the aisbx-runner executable (required) */
  uint64_t mem_bytes;      /* memory cap (default 2 GiB) */
  unsigned cpu_seconds;    /* RLIMIT_CPU (default 600) */
  double wall_seconds;     /* wall-time limit from spawn (default 900) */
  double grace_seconds;    /* ABORT -> SIGKILL (default 1.0) */
  int threads;             /* engine threads in the runner (default 2) */
  int use_memfd;           /* 1 (default): model/data via sealed memfds */
  int stderr_fd;           /* runner's stderr; -1 (default) = /dev/null */
  const char *tag;         /* names the job's cgroup (default: pid-based) */
  int unshare_in_runner;   /* 1: fork, and the runner enters its namespaces
                              itself; 0 (default): it is cloned into them
                              (sbx_sandbox_clone; fork + unshare when the
                              kernel refuses) */
  int log_each_step;       /* 1: the runner sends each start-up LOG as it
                              happens; 0 (default): it holds them and sends
                              them with READY (or an error), one wake-up of
                              the supervisor instead of ~15 */
} sbx_runner_params;

sbx_runner_params sbx_runner_default_params(void);

typedef struct sbx_runner_callbacks {
  void *ud;
  void (*on_ready)(void *ud, const sbx_ipc_ready *r);
  void (*on_log)(void *ud, int level, const char *text);
  void (*on_progress)(void *ud, const sbx_ipc_progress *p);
} sbx_runner_callbacks;

typedef enum sbx_runner_status {
  SBX_RUN_SUCCEEDED = 0,
  SBX_RUN_FAILED = 1,
  SBX_RUN_TIMED_OUT = 2,
  SBX_RUN_CANCELLED = 3
} sbx_runner_status;
/* "succeeded", "failed", "timed_out", "cancelled". */
const char *sbx_runner_status_name(sbx_runner_status s);

#define SBX_RUNNER_GALLERY_MAX 16

typedef struct sbx_runner_outcome {
  sbx_runner_status status;
  char reason[600];       /* empty on success */
  int exit_code;          /* -1 when killed by a signal */
  int term_signal;        /* 0 when it exited */
  int error_status;       /* from the runner's ERROR (adv_status/SBX_ERR_*) */
  int forbidden_syscall;  /* -1 unless the seccomp filter killed it */
  int ready;              /* 1: the runner reported READY */
  sbx_ipc_ready sandbox;  /* what the runner achieved (READY) */
  sbx_memcap_kind memcap; /* how memory was capped */
  char memcap_note[512];  /* why (cgroup path or the fallback reason) */
  double ready_seconds;   /* spawn -> READY */
  double seconds;         /* spawn -> reaped */
  double cpu_seconds;     /* user + system of the runner */
  uint64_t mem_peak;      /* bytes, when the cgroup reports it */
  char *result_json;      /* owned (NUL-terminated), or NULL */
  size_t result_len;
  uint8_t *adv_npy; /* owned, or NULL */
  size_t adv_npy_len;
  int n_gallery;                            /* PNG strips received */
  uint8_t *gallery[SBX_RUNNER_GALLERY_MAX]; /* owned PNG bytes */
  size_t gallery_len[SBX_RUNNER_GALLERY_MAX];
} sbx_runner_outcome;

/* Runs one job. spec's limit fields (mem_bytes, memcap_kind, cpu_seconds,
 * threads, *_in_memfd, *_len) are overwritten from p. abort_flag (may be
 * NULL) cancels when it becomes non-zero. Returns 0 when the runner was
 * started and reaped (look at out->status for the job's fate), or a
 * negative errno when it could not be started (out->reason says why).
 * out must be freed with sbx_runner_outcome_free in every case. */
int sbx_runner_run(const sbx_runner_params *p, const sbx_job_spec *spec,
                   const void *model, size_t model_len, const void *data,
                   size_t data_len, const sbx_runner_callbacks *cb,
                   const volatile int *abort_flag, sbx_runner_outcome *out);
void sbx_runner_outcome_free(sbx_runner_outcome *o);

/*
 * A pool of runners started ahead: each spare has been exec'd, loaded its
 * libraries and entered its namespaces, and waits for its one job on its
 * pipe (nothing job-specific has happened yet; every spare serves exactly
 * one job, then a new one is started). This takes exec + library loading
 * (most of a cold start) off the job's path. Model and data travel over
 * the pipe (memfds are passed at exec time).
 *
 * p is copied, its tag too (runner_path must outlive the pool): its limits only
 * size the spares' cgroups until a job takes one; spares 1..64. Safe to call
 * sbx_runner_pool_run from several threads.
 */
typedef struct sbx_runner_pool sbx_runner_pool;
int sbx_runner_pool_new(const sbx_runner_params *p, int spares,
                        sbx_runner_pool **out);
/* Inputs larger than this in total (model + dataset) skip the spares. */
#define SBX_RUNNER_POOL_INLINE_MAX ((size_t)64 << 20)
/* Like sbx_runner_run, with this job's parameters p, on a spare. Every
 * limit is the job's: the memory cap is written to the spare's cgroup when
 * the job takes it (a spare whose cgroup refuses it is killed and the next
 * one, or a fresh runner, is used), RLIMIT_AS/CPU and the thread count
 * travel in the spec and are applied by the runner when it seals, after
 * the job arrived; the wall-time limit and READY time count from this
 * call. p->threads above the pool's, no spare left, or inputs larger than
 * SBX_RUNNER_POOL_INLINE_MAX (then sealed memfds, p->use_memfd forced on)
 * start a fresh runner instead. A replacement spare is started before
 * returning. p->runner_path is ignored (the pool's is used). */
int sbx_runner_pool_run(sbx_runner_pool *pool, const sbx_runner_params *p,
                        const sbx_job_spec *spec, const void *model,
                        size_t model_len, const void *data, size_t data_len,
                        const sbx_runner_callbacks *cb,
                        const volatile int *abort_flag,
                        sbx_runner_outcome *out);
/* Kills the spares and frees the pool. */
void sbx_runner_pool_free(sbx_runner_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
