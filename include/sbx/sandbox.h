/*
 * sbx/sandbox.h - the per-job sandbox the runner enters (libc + libseccomp).
 *
 * Three calls, in this order, from the runner process:
 *   1. sbx_sandbox_adopt()    FIRST THING in main when the supervisor cloned
 *      the runner into its namespaces (sbx_sandbox_clone, below), else
 *      sbx_sandbox_unshare()  FIRST THING in main, single-threaded: new user,
 *      PID, mount, network, IPC and UTS namespaces (a refused one is a
 *      logged warning). For the PID namespace the process forks: the
 *      caller returns in the child (PID 1 of the new namespace); the parent
 *      only waits and dies the way the child died (same exit code or
 *      signal), so a supervisor sees the child's fate.
 *   2. sbx_sandbox_lock()     still single-threaded, after reading the
 *      inputs: an empty read-only tmpfs root holding only the given files
 *      under /in (pivot_root), PR_SET_NO_NEW_PRIVS, every capability
 *      dropped (bounding, ambient, effective, permitted, inheritable), a
 *      Landlock domain that allows nothing but reading files under /in.
 *      Threads created afterwards (the OpenMP pool) inherit all of it.
 *   3. sbx_sandbox_seal()     after the engine's lazy initialisation:
 *      rlimits (AS, CPU soft N / hard N+1, NOFILE, FSIZE 0, NPROC 0, CORE 0)
 * and the seccomp allow-list (architecture checked: other arch = kill; any
 * syscall not on the list = the process dies by SIGSYS after the optional
 *      on_forbidden hook reported it; applied to every thread).
 * Every step is verified (namespace inodes, ENETUNREACH, capget, getrlimit,
 * Landlock denial of "/") and logged through params.log.
 *
 * The memory cap is arranged by the supervisor while the runner loads,
 * before it enters any namespace (sbx_memcap_create/move): cgroup v2, else
 * cgroup v1's memory controller, else RLIMIT_AS applied by
 * sbx_sandbox_seal.
 *
 * Errors: 0 or a negative errno; the process is then in an unspecified
 * partly-sandboxed state and must exit. Library code never prints.
 */
#ifndef SBX_SANDBOX_H
#define SBX_SANDBOX_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbx_log_level {
  SBX_LOG_INFO = 0,
  SBX_LOG_WARN = 1,
  SBX_LOG_ERROR = 2
} sbx_log_level;
typedef void (*sbx_log_fn)(void *ud, sbx_log_level level, const char *msg);

enum {
  SBX_NS_USER = 1,
  SBX_NS_PID = 2,
  SBX_NS_MOUNT = 4,
  SBX_NS_NET = 8,
  SBX_NS_IPC = 16,
  SBX_NS_UTS = 32
};

typedef enum sbx_memcap_kind {
  SBX_MEMCAP_NONE = 0,
  SBX_MEMCAP_CGROUP_V2 = 1,
  SBX_MEMCAP_CGROUP_V1 = 2,
  SBX_MEMCAP_RLIMIT_AS = 3
} sbx_memcap_kind;
/* "cgroup v2", "cgroup v1", "RLIMIT_AS", "none". Static string. */
const char *sbx_memcap_name(sbx_memcap_kind k);

typedef struct sbx_sandbox_params {
  uint64_t mem_bytes;     /* memory cap (0 = none) */
  sbx_memcap_kind memcap; /* what the supervisor arranged; RLIMIT_AS (or
                             NONE with mem_bytes) makes seal set AS */
  unsigned cpu_seconds;   /* RLIMIT_CPU (0 = none) */
  unsigned max_files;     /* RLIMIT_NOFILE (default 16) */
  sbx_log_fn log;         /* may be NULL */
  void *log_ud;
  /* Called from the SIGSYS handler when a forbidden syscall is attempted
   * (async-signal-safe code only: e.g. one write()); may be NULL. */
  void (*on_forbidden)(int nr);
  /* Called from the SIGXCPU handler when the CPU soft limit is reached
   * (async-signal-safe); the process then exits with 128 + SIGXCPU. The
   * hard limit, one second later, kills it in any case. May be NULL. */
  void (*on_cpu_limit)(void);
  /* The seccomp program precompiled by sbx_sandbox_filter_compile (in the
   * supervisor, once), loaded as is by seal; NULL: seal compiles it with
   * libseccomp. Borrowed; only read during seal. */
  const void *filter;
  size_t filter_len;
} sbx_sandbox_params;

/* What was achieved (for the READY message and the job record). */
typedef struct sbx_sandbox_state {
  unsigned namespaces; /* SBX_NS_* entered */
  int pid1;            /* 1: the caller is PID 1 of a new PID ns */
  int pivoted;         /* 1: root is the empty tmpfs */
  int landlock_abi;    /* 0: Landlock unavailable */
  int caps_dropped, no_new_privs, rlimits, seccomp;
  unsigned outer_uid;     /* the caller's uid before the user namespace */
  sbx_memcap_kind memcap; /* in force after seal */
  char input_dir[64];     /* "/in" when files were placed, else "" */
} sbx_sandbox_state;

void sbx_sandbox_default_params(sbx_sandbox_params *p);

/* Step 1 (see above). Must be called while single-threaded. In the parent
 * of the PID-namespace fork this function never returns. */
int sbx_sandbox_unshare(const sbx_sandbox_params *p, sbx_sandbox_state *st);

/*
 * Step 1, done by the supervisor instead (the faster path; bubblewrap does
 * the same): sbx_sandbox_clone() replaces fork() + exec of a runner and
 * gives a child born in new user, PID, mount, network, IPC and UTS
 * namespaces - all six or none. The child maps uid/gid 0 inside to the
 * caller's ids itself, then calls fn(fn_arg), which must execve() or
 * _exit(). Like posix_spawn, the child runs in the caller's memory on its
 * own stack (CLONE_VM | CLONE_VFORK) and the calling thread sleeps until
 * it has exec'd or exited: no page tables are copied, however large the
 * caller. So fn may only make system calls (async-signal-safe ones) and
 * must not return; it runs with every signal blocked, and the exec'd
 * program starts so (the runner unblocks them first thing). The exec'd
 * runner is PID 1 without a fork of its own.
 * Returns the child's pid, or -1 with errno when the kernel or /proc
 * refuses (no child is left then; the caller forks and the runner calls
 * sbx_sandbox_unshare, which logs each namespace it cannot get). arg (>=
 * 96 bytes) receives the runner's "--ns=..." argument, written before the
 * clone: the caller's ids and the inodes of its namespaces.
 * The runner passes that argument to sbx_sandbox_adopt() in place of
 * sbx_sandbox_unshare(): it checks that each namespace differs from the
 * supervisor's, that uid/gid are 0 and the process is PID 1, settles the
 * namespaces (private mounts, hostname, no network) and logs each step.
 */
pid_t sbx_sandbox_clone(char *arg, size_t argn, void (*fn)(void *),
                        void *fn_arg);
int sbx_sandbox_adopt(const sbx_sandbox_params *p, const char *arg,
                      sbx_sandbox_state *st);

typedef struct sbx_file {
  const char *name; /* plain file name, no '/' */
  const void *data;
  size_t len;
} sbx_file;
/* Step 2. files (may be NULL/0) are copied into the new root's /in. */
int sbx_sandbox_lock(const sbx_sandbox_params *p, const sbx_file *files,
                     int nfiles, sbx_sandbox_state *st);
/* Step 3. */
int sbx_sandbox_seal(const sbx_sandbox_params *p, sbx_sandbox_state *st);

/* The allow-list seal loads, compiled for this architecture into classic
 * BPF (struct sock_filter instructions; libseccomp's exact output), for a
 * supervisor to compile once and hand to every runner (params.filter)
 * instead of each runner compiling it on its critical path. *prog is
 * malloc'd (free it); on error *prog is NULL. 0 or -errno. */
int sbx_sandbox_filter_compile(void **prog, size_t *len);

/* One-line summary of st ("ns=user,pid,... root=tmpfs landlock=7 ..."). */
void sbx_sandbox_describe(const sbx_sandbox_state *st, char *out, size_t n);

/* Writes the name of syscall nr on this architecture into out ("?" when
 * unknown); out is always NUL-terminated. */
void sbx_syscall_name(int nr, char *out, size_t n);

/* The base both seccomp allow-lists build on (the runner's and aisbxd's,
 * src/server/confine.c): a libseccomp scmp_filter_ctx (as void *) whose
 * default action is SCMP_ACT_TRAP (SIGSYS), other architectures killed
 * (SCMP_FLTATR_ACT_BADARCH = KILL_PROCESS), TSYNC on load, clone3 answered
 * ENOSYS (glibc falls back to clone), and with threads_only clone allowed
 * only as CLONE_THREAD|CLONE_VM without a namespace flag. The caller adds
 * its rules, loads it and releases it (seccomp_release). NULL on error. */
void *sbx_seccomp_base(int threads_only);

/* ---- memory cap, for the supervisor ---- */
typedef struct sbx_memcap {
  sbx_memcap_kind kind;
  uint64_t bytes;
  char dir[384]; /* the job's cgroup directory (cgroup kinds) */
  int procs_fd;  /* open cgroup.procs, for sbx_memcap_move */
} sbx_memcap;
/* Creates a cgroup for one job with a memory limit of `bytes` (v2 when its
 * memory controller is usable, else v1's memory controller), or falls back
 * to kind = SBX_MEMCAP_RLIMIT_AS (never an error: why says what happened).
 * tag names the cgroup (e.g. "job-123"). */
void sbx_memcap_create(uint64_t bytes, const char *tag, sbx_memcap *mc,
                       char *why, size_t whylen);
/* From the supervisor: moves process pid (all its threads) into the
 * cgroup; its children created afterwards are born in it. Memory it
 * charged before stays where it was. 0 or -errno (no-op for RLIMIT_AS). */
int sbx_memcap_move(const sbx_memcap *mc, int pid);
/* Changes the cgroup's limit (a runner started ahead takes its job's cap);
 * no-op for RLIMIT_AS (the runner applies the job's value). 0 or -errno. */
int sbx_memcap_set_limit(sbx_memcap *mc, uint64_t bytes);
/* Number of OOM kills in the cgroup (0 for RLIMIT_AS / unknown). */
int sbx_memcap_oom_kills(const sbx_memcap *mc);
/* Peak usage in bytes when known, else 0. */
uint64_t sbx_memcap_peak(const sbx_memcap *mc);
/* Closes and removes the cgroup (retrying while it empties). */
void sbx_memcap_destroy(sbx_memcap *mc);

#ifdef __cplusplus
}
#endif
#endif
