/*
 * selftest.c - `aisbx-worker --self-test`: start real runners and try,
 * from inside the full sandbox, each thing that must be refused. One line
 * per check: "ok <what> <how it was refused>" or "FAIL <what> <why>".
 * Probes the seccomp filter kills take their runner down with them, so
 * every probe runs in its own runner.
 */
#include "worker.h"

#include "sbx/runner.h"

#include <stdio.h>
#include <string.h>

typedef struct probe {
  int id;
  const char *what;
} probe;

/* ids match src/runner/runner.h's SBX_PROBE_* */
static const probe probes[] = {
    {1, "open-host-file(/etc/passwd)"},
    {2, "write-file"},
    {3, "socket"},
    {4, "connect"},
    {5, "execve"},
    {6, "ptrace"},
    {7, "mount"},
    {8, "unshare"},
    {9, "fork"},
    {10, "clone3"},
    {11, "raise-rlimit"},
    {12, "memory-past-cap"},
    {13, "cpu-past-limit"},
};

static const char *json_field(const char *json, const char *key, char *out,
                              size_t n) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":\"", key);
  const char *s = json ? strstr(json, pat) : NULL;
  out[0] = 0;
  if (!s)
    return out;
  s += strlen(pat);
  size_t i = 0;
  while (s[i] && s[i] != '"' && i + 1 < n) {
    out[i] = s[i];
    i++;
  }
  out[i] = 0;
  return out;
}

/* --verbose: the runner's own log of every sandbox step, as comments. */
static void print_log(void *ud, int level, const char *text) {
  fprintf((FILE *)ud, "# %s%s\n", level == SBX_LOG_WARN ? "WARNING " : "",
          text);
}

int sbx__worker_self_test(const char *runner_path, int verbose, FILE *o) {
  int fails = 0;
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = runner_path;
  p.wall_seconds = 20;
  p.threads = 1;
  /* the layers themselves: a harmless run reports what it achieved */
  {
    sbx_job_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.kind = SBX_JOB_PROBE;
    spec.probe = 0;
    sbx_runner_outcome out;
    sbx_runner_callbacks cb = {.ud = o, .on_log = print_log};
    sbx_runner_run(&p, &spec, "", 0, "", 0, verbose ? &cb : NULL, NULL, &out);
    if (!out.ready) {
      fprintf(o, "FAIL sandbox the runner did not reach READY: %s\n",
              out.reason);
      fails++;
    } else {
      int full = out.sandbox.namespaces == 63 && out.sandbox.pivoted;
      fprintf(o, "%s sandbox %s; spawn-to-ready %.1f ms; memory cap: %s\n",
              full ? "ok" : "ok(partial)", out.sandbox.summary,
              1000 * out.ready_seconds, out.memcap_note);
    }
    sbx_runner_outcome_free(&out);
  }
  for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
    sbx_runner_params q = p;
    if (probes[i].id == 12)
      q.mem_bytes = (uint64_t)256 << 20;
    if (probes[i].id == 13)
      q.cpu_seconds = 1;
    sbx_job_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.kind = SBX_JOB_PROBE;
    spec.probe = (uint32_t)probes[i].id;
    sbx_runner_outcome out;
    int rc = sbx_runner_run(&q, &spec, "", 0, "", 0, NULL, NULL, &out);
    char outcome[32], err[32];
    json_field(out.result_json, "outcome", outcome, sizeof(outcome));
    json_field(out.result_json, "errno", err, sizeof(err));
    int ok = 0;
    char how[700];
    how[0] = 0;
    if (rc) {
      snprintf(how, sizeof(how), "runner did not start: %s", out.reason);
    } else if (!out.ready) {
      snprintf(how, sizeof(how), "runner did not reach READY: %s", out.reason);
    } else if (out.status == SBX_RUN_SUCCEEDED &&
               strcmp(outcome, "refused") == 0) {
      ok = 1;
      snprintf(how, sizeof(how), "refused with %s", err);
    } else if (out.status == SBX_RUN_SUCCEEDED) {
      snprintf(how, sizeof(how), "was ALLOWED");
    } else if (out.status == SBX_RUN_FAILED &&
               (out.forbidden_syscall >= 0 ||
                strstr(out.reason, "limit") != NULL)) {
      ok = 1;
      snprintf(how, sizeof(how), "%s", out.reason);
    } else {
      snprintf(how, sizeof(how), "ended unexpectedly: %s (%s)", out.reason,
               sbx_runner_status_name(out.status));
    }
    /* the memory probe must be stopped by the memory cap, the CPU probe
     * by the CPU limit: anything else is not the layer being tested */
    if (ok && probes[i].id == 12 && !strstr(how, "memory limit") &&
        strcmp(err, "ENOMEM") != 0)
      ok = 0;
    if (ok && probes[i].id == 13 && !strstr(how, "CPU time limit"))
      ok = 0;
    fprintf(o, "%s %s %s\n", ok ? "ok" : "FAIL", probes[i].what, how);
    fails += !ok;
    sbx_runner_outcome_free(&out);
  }
  fflush(o);
  return fails ? 1 : 0;
}
