/*
 * adv/threading.h - the threading environment processes running the engine
 * start with: ONE definition, used by `aisbx` (which re-executes itself
 * with it), by the sandboxed runner's supervisor (src/worker/runner_sup.c,
 * which builds the runner's whole environment) and by the benchmark
 * programs (so bench/ measures what users get).
 *
 * Why an environment and not a call: libgomp and OpenBLAS read their
 * settings once, when the process loads them, before main() runs.
 *
 * The choice (issue 13 item 7, measurements in bench/README.md):
 *   OMP_WAIT_POLICY=passive - an OpenMP thread waiting at a barrier or for
 *     the next parallel region sleeps in the kernel at once instead of
 *     spinning (libgomp's default spins ~300k iterations). On a machine
 *     whose cores are busy with other processes, a spinning thread burns
 *     the time slice its own team's straggler needs; that made the engine
 *     2-10x slower loaded. The price is the futex wake-up at each parallel
 *     region on an idle machine, which the engine keeps small by running
 *     small ops on one thread (the `if (work > ...)` clauses of the
 *     kernels).
 *   OPENBLAS_NUM_THREADS=1 - all parallelism is the engine's own (its
 *     thread team, src/engine/core/parallel.c, and OpenMP inside oneDNN);
 *     it calls OpenBLAS single-threaded (openblas_set_num_threads(1) in
 *     plan.c), so OpenBLAS's pthread pool, created when the library loads
 *     with one thread per core, is never used: this keeps it from being
 *     created at all.
 *
 * Header only (libc): the worker that supervises runners does not link
 * libadv. Not thread-safe (setenv); call it first thing in main().
 */
#ifndef ADV_THREADING_H
#define ADV_THREADING_H

#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The variables, "NAME=VALUE", NULL-terminated. */
#define ADV_THREADING_ENV_LIST                                                 \
  { "OMP_WAIT_POLICY=passive", "OPENBLAS_NUM_THREADS=1", NULL }

/* The list above, as a static NULL-terminated array (never freed). */
static inline const char *const *adv_threading_env(void) {
  static const char *const env[] = ADV_THREADING_ENV_LIST;
  return env;
}

/*
 * The variables that choose which math kernels run, and so the exact bits
 * of every result: OpenBLAS's core type and cache-size overrides, oneDNN's
 * ISA cap and hints. The sandboxed runner gets a clean environment; its
 * supervisor copies these (and only these) from its own, so a job's results
 * equal `aisbx attack|evaluate` run in the same environment bit for bit. A
 * host that sets e.g. OPENBLAS_CORETYPE=Haswell (seen on these machines)
 * otherwise gets Haswell kernels in the CLI and natively detected ones
 * (SkylakeX on AVX-512) in the runner: the same results to within 1 ULP,
 * not byte for byte. NULL-terminated names.
 */
#define ADV_KERNEL_ENV_NAMES                                                   \
  {                                                                            \
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ONEDNN_MAX_CPU_ISA",             \
        "DNNL_MAX_CPU_ISA", "ONEDNN_CPU_ISA_HINTS", "DNNL_CPU_ISA_HINTS", NULL \
  }

/* The list above, as a static NULL-terminated array (never freed). */
static inline const char *const *adv_kernel_env_names(void) {
  static const char *const names[] = ADV_KERNEL_ENV_NAMES;
  return names;
}

/*
 * Puts adv_threading_env() into this process's environment where the user
 * has not chosen: the OpenMP wait policy is left alone when OMP_WAIT_POLICY
 * or GOMP_SPINCOUNT is set, every other variable when it is set. Returns
 * the number of variables it set: when > 0, the settings only take effect
 * in a process started afterwards (the caller re-executes itself, or passes
 * the environment on). Returns -1 when setenv fails (out of memory); the
 * environment may then be partly set.
 */
static inline int adv_threading_env_apply(void) {
  int n = 0;
  for (const char *const *e = adv_threading_env(); *e; e++) {
    const char *eq = strchr(*e, '=');
    char name[64];
    size_t len = (size_t)(eq - *e);
    if (len >= sizeof(name))
      return -1;
    memcpy(name, *e, len);
    name[len] = '\0';
    if (getenv(name))
      continue;
    if (!strcmp(name, "OMP_WAIT_POLICY") && getenv("GOMP_SPINCOUNT"))
      continue;
    if (setenv(name, eq + 1, 0))
      return -1;
    n++;
  }
  return n;
}

#ifdef __cplusplus
}
#endif

#endif
