/*
 * runner.h - internals of aisbx-runner (the sandboxed process).
 *
 * The runner talks to its supervisor over fd 0 (messages in) and fd 1
 * (messages out); see sbx/ipc.h. runner_job_run() is the one function that
 * turns a spec + model bytes + dataset file into result messages: when the
 * engine's job entry point (adv/evaluate.h) lands, only it changes.
 */
#ifndef SBX_RUNNER_INTERNAL_H
#define SBX_RUNNER_INTERNAL_H
#include "sbx/ipc.h"
#include "sbx/sandbox.h"

#include <stddef.h>

#define RUNNER_OUT_FD 1
#define RUNNER_IN_FD 0
/* Optional: a sealed memfd with the seccomp program the supervisor
 * compiled once (sbx_sandbox_filter_compile); absent: compiled here. */
#define RUNNER_FILTER_FD 5
/* Optional: the supervisor writes one byte here once the runner is in its
 * memory cgroup; the runner waits for it before anything else. */
#define RUNNER_GO_FD 6

/* Set by the abort watcher (ABORT message or the worker hanging up). */
extern volatile int sbx__runner_abort;

/* Sends an ERROR message (status: adv_status or SBX_ERR_*). */
void sbx__runner_error(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sends a LOG message. */
void sbx__runner_log(sbx_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs the job; sends PROGRESS, RESULT and ADV_NPY (or ERROR). model is
 * owned by the caller; data_path names the dataset file inside the sandbox
 * ("" when inputs could not be placed, then data/data_len hold it).
 * Returns 0 on success, else the status it reported. */
int sbx__runner_job_run(const sbx_job_spec *spec, const void *model,
                        size_t model_len, const char *data_path,
                        const void *data, size_t data_len);

/* Sends `count` gallery PNG strips (GALLERY messages): strip j shows
 * sample j of the packed arrays x and x_adv (count x C x H x W, C 1 or 3;
 * dims[0] is ignored), captioned with the dataset's sample number
 * sample_no[j], its label[j] and the clean and adversarial predictions
 * pred_clean[j] / pred_adv[j]. Non-image shapes send nothing. Returns the
 * number sent, or -1 when out of memory. */
int sbx__runner_gallery(const float *x, const float *x_adv, int ndim,
                        const int64_t *dims, const int64_t *sample_no,
                        int count, const int64_t *label,
                        const int64_t *pred_clean, const int64_t *pred_adv,
                        float clip_min, float clip_max);

/* Self-test probes: each tries one forbidden thing under the full sandbox
 * and reports what happened in a RESULT message; probes the sandbox kills
 * never return. */
enum {
  SBX_PROBE_NONE = 0,
  SBX_PROBE_OPEN_HOST_FILE,
  SBX_PROBE_WRITE_FILE,
  SBX_PROBE_SOCKET,
  SBX_PROBE_CONNECT,
  SBX_PROBE_EXECVE,
  SBX_PROBE_PTRACE,
  SBX_PROBE_MOUNT,
  SBX_PROBE_UNSHARE,
  SBX_PROBE_FORK,
  SBX_PROBE_CLONE3,
  SBX_PROBE_RAISE_RLIMIT,
  SBX_PROBE_MEMORY,
  SBX_PROBE_CPU,
  SBX_PROBE_COUNT
};
int sbx__runner_probe(const sbx_job_spec *spec);

#endif
