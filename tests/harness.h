/*
 * tests/harness.h - the assertion harness and case runner of every C test
 * run by CTest (header-only; include it in the one .c file of a test).
 *
 * Usage:
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-5); }
 *   int main(void) { setup(); RUN(name); cleanup(); return harness_report(); }
 * Every failed CHECK prints file:line and the expression and fails its case.
 *
 * How cases run (tests/README.md says why this design):
 *  - The process CTest starts becomes a supervisor before main() runs (a
 *    constructor forks); main() and the cases run in its child, the "main
 *    line", so every process main() starts (servers, helpers) is the main
 *    line's own child, as without the harness.
 *  - Before each case the main line forks a frozen copy of itself (the
 *    snapshot) and tells the supervisor which case starts. When the case
 *    crashes (SIGSEGV, abort, a sanitizer report, exit() inside the case)
 *    or outlives ADV_TEST_CASE_TIMEOUT seconds (then it is killed), the
 *    supervisor reports the case by name and wakes the snapshot, which goes
 *    on with the next case from the state before the failed one. When the
 *    case ends, the main line kills its snapshot. Cases may therefore build
 *    on what earlier cases left in memory (several suites do), and one
 *    crash or hang costs one case, not the rest of the run.
 *    After a resume, processes the dead main line had started (a server
 *    main() started) are the supervisor's children: the resumed main line
 *    can use them but not waitpid() them.
 *  - A case that ran zero checks fails ("ran no checks"); a run in which no
 *    case ran fails. A helper that compares on its own and only counts
 *    failures calls HARNESS_CHECKED() for each comparison it makes. Under
 * LeakSanitizer each case is leak-checked when it ends and a leak fails that
 * case.
 *  - exit status 77 (a test that asks to be skipped: a missing peer or
 *    tool) is a failure unless ADV_ALLOW_SKIP=1; CI never sets it.
 *  - The supervisor prints the summary and exits 0 only when every case
 *    passed and main() returned 0.
 *
 * Environment:
 *   ADV_TEST_CASE_TIMEOUT  seconds per case (default 300; 0 = no limit);
 *                          CTest sets it from each test's TIMEOUT
 *   ADV_TEST_CASE=name     run only that case (the others are not counted)
 *   ADV_TEST_NOFORK=1      no supervisor, no snapshots: cases run plainly in
 *                          one process (for gdb / valgrind)
 *   ADV_ALLOW_SKIP=1       exit 77 is passed on to CTest as "skipped"
 *
 * The OpenMP thread pool (libgomp) does not survive fork(): before each fork
 * the harness releases it with omp_pause_resource_all (looked up at run time,
 * so tests without OpenMP do not need it); it is re-created on first use.
 */
#ifndef ADV_TEST_HARNESS_H
#define ADV_TEST_HARNESS_H

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int harness_failed_checks = 0; /* failed checks, whole run */
static int harness_checks = 0;        /* checks evaluated, whole run */
static int harness_tests_run = 0;
static int harness_tests_failed = 0;

#define TEST(name) static void test_##name(void)

/* For checks a test makes in its own helpers: counts one check. */
#define HARNESS_CHECKED() (harness_checks++)

#define CHECK(cond)                                                            \
  do {                                                                         \
    harness_checks++;                                                          \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      harness_failed_checks++;                                                 \
    }                                                                          \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
  do {                                                                         \
    long long va_ = (long long)(a), vb_ = (long long)(b);                      \
    harness_checks++;                                                          \
    if (va_ != vb_) {                                                          \
      fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s (%lld) != %s (%lld)\n",  \
              __FILE__, __LINE__, #a, va_, #b, vb_);                           \
      harness_failed_checks++;                                                 \
    }                                                                          \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
  do {                                                                         \
    double va_ = (double)(a), vb_ = (double)(b);                               \
    harness_checks++;                                                          \
    if (!(fabs(va_ - vb_) <= (tol))) {                                         \
      fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s=%.9g %s=%.9g tol=%g\n",    \
              __FILE__, __LINE__, #a, va_, #b, vb_, (double)(tol));            \
      harness_failed_checks++;                                                 \
    }                                                                          \
  } while (0)

#define RUN(name) harness__run(#name, test_##name)

/* ---- internals (harness__*) ------------------------------------------- */

/* Looks up a function of the running program or its libraries (OpenMP 5's
 * omp_pause_resource_all, LeakSanitizer's __lsan_do_recoverable_leak_check):
 * present only when linked in; looked up by name so that this header needs
 * neither library and does not clash with <omp.h>. */
static inline void *harness__sym(const char *name) {
  static void *self;
  if (!self)
    self = dlopen(NULL, RTLD_LAZY);
  return self ? dlsym(self, name) : NULL;
}

#define HARNESS__MSG_MAX 256
#define HARNESS__RESUME_SIG SIGUSR2

static int harness__msg_fd = -1; /* main line -> supervisor (write end) */
static pid_t harness__root = 0;  /* the supervisor's pid, 0 when unsupervised */
static int harness__leak_checks = 1;

/* Monotonic clock in seconds. */
static inline double harness__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Integer value of environment variable name, def when unset or invalid. */
static inline long harness__env_long(const char *name, long def) {
  const char *s = getenv(name);
  char *end;
  if (!s || !*s)
    return def;
  long v = strtol(s, &end, 10);
  return *end || v < 0 ? def : v;
}

/* True when environment variable name is set to something other than 0. */
static inline int harness__env_on(const char *name) {
  const char *s = getenv(name);
  return s && *s && strcmp(s, "0") != 0;
}

/* Releases the OpenMP thread pool so that a forked child can use OpenMP
 * (libgomp's pool does not survive fork). No-op without OpenMP. */
static inline void harness__omp_release(void) {
  static int (*pause_all)(int);
  static int looked;
  if (!looked) {
    *(void **)&pause_all = harness__sym("omp_pause_resource_all");
    looked = 1;
  }
  if (pause_all)
    pause_all(2 /* omp_pause_hard */);
}

/* LeakSanitizer's check of everything unreachable now: nonzero when it
 * found (and printed) leaks; 0 without LeakSanitizer. */
static inline int harness__leak_check(void) {
  static int (*check)(void);
  static int looked;
  if (!looked) {
    *(void **)&check = harness__sym("__lsan_do_recoverable_leak_check");
    looked = 1;
  }
  return check ? check() : 0;
}

/* Sends one line to the supervisor (a single write below PIPE_BUF is
 * atomic). */
static inline void harness__send(const char *fmt, const char *a,
                                 const char *b) {
  char line[HARNESS__MSG_MAX];
  if (harness__msg_fd < 0)
    return;
  int n = snprintf(line, sizeof line, fmt, a, b);
  if (n > 0 && n < (int)sizeof line) {
    ssize_t w;
    do
      w = write(harness__msg_fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
  }
}

/* Forks the snapshot of the main line before a case. Returns its pid in the
 * main line (0 if fork failed: the case then runs without one). In the
 * snapshot it waits until the supervisor resumes it (the case failed in the
 * main line; *resumed is set and 0 returned) or exits when the supervisor is
 * gone or the main line kills it. */
static inline pid_t harness__snapshot(int *resumed) {
  sigset_t set, old;
  *resumed = 0;
  harness__omp_release();
  fflush(NULL);
  sigemptyset(&set);
  sigaddset(&set, HARNESS__RESUME_SIG);
  sigprocmask(SIG_BLOCK, &set, &old);
  pid_t pid = fork();
  if (pid != 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid < 0 ? 0 : pid;
  }
  for (;;) {
    struct timespec ts = {1, 0};
    if (sigtimedwait(&set, NULL, &ts) == HARNESS__RESUME_SIG)
      break;
    if (kill(harness__root, 0) != 0 && errno == ESRCH)
      _exit(1); /* supervisor gone: nobody to report to */
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  /* the main line is dead; the supervisor (a subreaper) is our parent now */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != harness__root)
    _exit(1);
  *resumed = 1;
  return 0;
}

/* Runs one case: the RUN(name) macro. Counts, times and leak-checks it and
 * reports "ok" / "FAIL" with the reason; under a supervisor, forks the
 * snapshot first and announces the case. */
static inline void harness__run(const char *name, void (*fn)(void)) {
  const char *only = getenv("ADV_TEST_CASE");
  if (only && *only && strcmp(only, name) != 0)
    return;
  harness_tests_run++;
  pid_t snap = 0;
  if (harness__root) {
    int resumed;
    snap = harness__snapshot(&resumed);
    if (resumed) { /* the supervisor reported this case's crash/timeout */
      harness_tests_failed++;
      return;
    }
    char spid[32];
    snprintf(spid, sizeof spid, "%d", (int)snap);
    harness__send("S %s %s\n", spid, name);
  }
  int failed0 = harness_failed_checks, checks0 = harness_checks;
  double t0 = harness__now();
  fn();
  double dt = harness__now() - t0;
  int leaked = 0;
  if (harness__leak_checks) {
    harness__omp_release(); /* worker threads' memory is the case's */
    leaked = harness__leak_check() != 0;
    if (leaked) /* those blocks stay leaked: later checks would blame others */
      harness__leak_checks = 0;
  }
  int nfail = harness_failed_checks - failed0;
  int nchecks = harness_checks - checks0;
  const char *why = nfail      ? "failed checks"
                    : leaked   ? "leaked memory (LeakSanitizer report above; "
                                 "per-case leak checks are off from here)"
                    : !nchecks ? "ran no checks"
                               : NULL;
  if (why) {
    harness_tests_failed++;
    if (nfail)
      fprintf(stderr, "FAIL %s (%d of %d checks failed, %.2f s)\n", name, nfail,
              nchecks, dt);
    else
      fprintf(stderr, "FAIL %s: %s (%.2f s)\n", name, why, dt);
  } else {
    fprintf(stderr, "ok   %s (%d checks, %.2f s)\n", name, nchecks, dt);
  }
  fflush(NULL);
  harness__send("E %s %s\n", why ? "fail" : "ok", name);
  if (snap > 0) {
    kill(snap, SIGKILL);
    while (waitpid(snap, NULL, 0) < 0 && errno == EINTR)
      ;
  }
}

/* The end of main(): returns the exit status. Under the supervisor the
 * summary is the supervisor's (it also counts crashed and hung cases). */
static inline int harness_report(void) {
  if (harness__root)
    return harness_tests_failed ? 1 : 0;
  fprintf(stderr, "%d tests, %d failed\n", harness_tests_run,
          harness_tests_failed);
  if (!harness_tests_run) {
    fprintf(stderr, "harness: no test case ran\n");
    return 1;
  }
  return harness_tests_failed ? 1 : 0;
}

/* Supervisor state: what the main line said, and the tally. */
typedef struct {
  pid_t main;      /* the current main line */
  pid_t snap;      /* its snapshot for the running case */
  int in_case;     /* a case has started and not ended */
  int timed_out;   /* the running case was killed for its time */
  double deadline; /* monotonic end of the running case */
  char name[HARNESS__MSG_MAX];
  char buf[4 * HARNESS__MSG_MAX];
  size_t have;
  int cases, failed;
  char failed_names[1024];
} harness__sup;

/* Records a failed case name for the summary. */
static inline void harness__sup_fail(harness__sup *s, const char *name) {
  size_t n = strlen(s->failed_names);
  s->failed++;
  if (n + strlen(name) + 2 < sizeof s->failed_names)
    snprintf(s->failed_names + n, sizeof s->failed_names - n, " %s", name);
}

/* Reads and handles every complete message the main line has sent.
 * Returns 0, or -1 once the pipe is at EOF (every writer gone). */
static inline int harness__sup_read(harness__sup *s, int fd, double timeout) {
  for (;;) {
    ssize_t r = read(fd, s->buf + s->have, sizeof s->buf - 1 - s->have);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      return -1;
    if (r < 0)
      return 0; /* EAGAIN: nothing more now */
    s->have += (size_t)r;
    s->buf[s->have] = 0;
    char *line = s->buf, *nl;
    while ((nl = strchr(line, '\n'))) {
      *nl = 0;
      int snap;
      char word[16];
      if (line[0] == 'S' && sscanf(line, "S %d", &snap) == 1) {
        const char *nm = strchr(line + 2, ' ');
        snprintf(s->name, sizeof s->name, "%s", nm ? nm + 1 : "?");
        s->snap = snap;
        s->in_case = 1;
        s->timed_out = 0;
        s->cases++;
        s->deadline = timeout > 0 ? harness__now() + timeout : 0;
      } else if (line[0] == 'E' && sscanf(line, "E %15s", word) == 1) {
        if (strcmp(word, "ok") != 0)
          harness__sup_fail(s, s->name);
        s->in_case = 0;
        s->snap = 0;
      }
      line = nl + 1;
    }
    s->have = strlen(line);
    memmove(s->buf, line, s->have);
    if (s->have >= sizeof s->buf - 1)
      s->have = 0; /* garbage without newline: drop it */
  }
}

/* Kills (SIGKILL) and reaps every remaining child of the supervisor:
 * processes a crashed or killed main line left behind were re-parented to
 * it (subreaper); CTest would otherwise wait for their output pipes. */
static inline void harness__sup_kill_orphans(void) {
  pid_t self = getpid();
  for (int round = 0; round < 50; round++) { /* their children come next */
    int found = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      char path[300], line[512];
      int pid = atoi(e->d_name), ppid = 0;
      if (pid <= 0)
        continue;
      snprintf(path, sizeof path, "/proc/%d/stat", pid);
      FILE *f = fopen(path, "r");
      if (!f)
        continue;
      size_t n = fread(line, 1, sizeof line - 1, f);
      fclose(f);
      line[n] = 0;
      const char *rp = strrchr(line, ')'); /* comm may contain spaces */
      if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self) {
        fprintf(stderr, "harness: killing left-over process %d\n", pid);
        kill(pid, SIGKILL);
        found = 1;
      }
    }
    if (d)
      closedir(d);
    if (found)
      poll(NULL, 0, 20);
    while (waitpid(-1, NULL, WNOHANG) > 0)
      ;
    if (!found)
      break;
  }
}

/* The supervisor's loop: follows the main line's messages, enforces the
 * per-case timeout, reports crashed / hung cases by name, resumes the
 * snapshot, prints the summary. Returns the process exit status. */
static inline int harness__supervise(pid_t main_pid, int fd) {
  static harness__sup s; /* zeroed */
  double timeout = (double)harness__env_long("ADV_TEST_CASE_TIMEOUT", 300);
  int status = 0, signaled = 0, code = 0;
  s.main = main_pid;
  fcntl(fd, F_SETFL, O_NONBLOCK);
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int wait_ms = 100;
    if (fd >= 0 && poll(&p, 1, wait_ms) > 0 &&
        harness__sup_read(&s, fd, timeout) < 0) {
      close(fd);
      fd = -1;
    }
    if (fd < 0)
      poll(NULL, 0, wait_ms);
    if (s.in_case && s.deadline > 0 && !s.timed_out &&
        harness__now() > s.deadline) {
      s.timed_out = 1;
      kill(s.main, SIGKILL);
    }
    pid_t pid;
    int done = 0;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid != s.main)
        continue; /* an orphan re-parented to us, or a snapshot */
      if (fd >= 0)
        harness__sup_read(&s, fd, timeout); /* its last words */
      if (!s.in_case) {
        done = 1;
        break;
      }
      if (s.timed_out)
        fprintf(stderr,
                "TIMEOUT %s: still running after %.0f s "
                "(ADV_TEST_CASE_TIMEOUT), killed\n",
                s.name, timeout);
      else if (WIFSIGNALED(status))
        fprintf(stderr, "CRASH %s: killed by signal %d (%s)\n", s.name,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
      else
        fprintf(stderr,
                "CRASH %s: the process exited with status %d inside "
                "the case\n",
                s.name, WEXITSTATUS(status));
      harness__sup_fail(&s, s.name);
      s.in_case = 0;
      if (s.snap <= 0) {
        fprintf(stderr, "harness: no snapshot to resume from; stopping\n");
        done = 2;
        break;
      }
      s.main = s.snap;
      s.snap = 0;
      kill(s.main, HARNESS__RESUME_SIG);
    }
    if (done)
      break;
    if (pid < 0 && errno == ECHILD) { /* cannot happen: the main line lives */
      fprintf(stderr, "harness: lost the main line\n");
      status = 1 << 8; /* as exit(1) */
      break;
    }
  }
  harness__sup_kill_orphans();
  if (WIFSIGNALED(status)) {
    signaled = WTERMSIG(status);
    fprintf(stderr,
            "harness: the main line was killed by signal %d (%s) "
            "outside any test case\n",
            signaled, strsignal(signaled));
  } else {
    code = WEXITSTATUS(status);
  }
  fprintf(stderr, "%d tests, %d failed%s%s\n", s.cases, s.failed,
          s.failed ? ":" : "", s.failed_names);
  if (code == 77) {
    if (harness__env_on("ADV_ALLOW_SKIP")) {
      fprintf(stderr, "harness: skipped (exit 77, ADV_ALLOW_SKIP is set)\n");
      return 77;
    }
    fprintf(stderr, "harness: the test asked to be skipped (exit 77): a "
                    "missing dependency is a failure (ADV_ALLOW_SKIP=1 "
                    "allows skipping on a developer machine)\n");
    return 1;
  }
  if (signaled)
    return 1;
  if (code == 0 && s.cases == 0) {
    const char *only = getenv("ADV_TEST_CASE");
    fprintf(stderr, "harness: no test case ran%s%s\n",
            only && *only ? "; none is named " : "", only ? only : "");
    return 1;
  }
  if (code == 0 && s.failed)
    return 1;
  if (code != 0 && !s.failed)
    fprintf(stderr,
            "harness: main returned %d (a failure outside the test "
            "cases)\n",
            code);
  return code;
}

/* Runs before main(): turns this process into the supervisor and returns
 * in its child, the main line (see the top of this file). */
__attribute__((constructor)) static void harness__boot(void) {
  char mark[32];
  const char *booted = getenv("ADV_HARNESS_PID");
  snprintf(mark, sizeof mark, "%d", (int)getpid());
  if (harness__env_on("ADV_TEST_NOFORK") || (booted && !strcmp(booted, mark)))
    return; /* unsupervised, or a second copy of this header in the binary */
  int fds[2];
  if (pipe(fds) != 0)
    return;
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t root = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) { /* run unsupervised */
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid > 0) {
    close(fds[1]);
    _exit(harness__supervise(pid, fds[0]));
  }
  close(fds[0]);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != root)
    _exit(1);
  harness__root = root;
  /* a high number, out of the way of tests that close and reopen fds */
  harness__msg_fd = fcntl(fds[1], F_DUPFD_CLOEXEC, 200);
  if (harness__msg_fd < 0)
    harness__msg_fd = fds[1];
  else
    close(fds[1]);
  snprintf(mark, sizeof mark, "%d", (int)getpid());
  setenv("ADV_HARNESS_PID", mark, 1);
}

#endif
