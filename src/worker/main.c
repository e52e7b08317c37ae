/*
 * main.c - aisbx-worker: runs jobs for an aisbxd server in sandboxed
 * runners (docs/worker-protocol.md), or checks the sandbox:
 *
 *   aisbx-worker --server URL --token-file F [--slots N] [--ca-file F]
 *                [--name NAME] [--threads T] [--runner PATH] [--cold-spawn]
 *   aisbx-worker --self-test [--runner PATH]
 *
 * Each slot keeps one sandboxed runner started ahead for its next job
 * (every runner still serves one job); --cold-spawn starts each runner
 * when its job arrives instead.
 * The runner is found with --runner, $AISBX_RUNNER, or next to this
 * executable. SIGINT/SIGTERM stop claiming; running jobs are abandoned to
 * the server's lease sweep (re-queued), never reported as finished.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile int g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* aisbx-runner next to /proc/self/exe. */
static int default_runner(char *out, size_t n) {
  char self[PATH_MAX];
  ssize_t r = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (r <= 0)
    return -1;
  self[r] = 0;
  char *slash = strrchr(self, '/');
  if (!slash)
    return -1;
  *slash = 0;
  int w =
      snprintf(out, n, "%.*s/aisbx-runner", (int)(n > 14 ? n - 14 : 0), self);
  return (w < 0 || (size_t)w >= n) ? -1 : 0;
}

static void usage(FILE *f) {
  fprintf(f, "usage: aisbx-worker --server URL --token-file F [--slots N] "
             "[--ca-file F]\n"
             "                    [--name NAME] [--threads T] [--runner PATH]\n"
             "                    [--cold-spawn]\n"
             "       aisbx-worker --self-test [--verbose] [--runner PATH]\n");
}

/* Reads the worker token: one line, at most 511 bytes, from a file that
 * only its owner may read. */
static int read_token(const char *path, char *out, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    fprintf(stderr, "aisbx-worker: --token-file %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
    fprintf(stderr,
            "aisbx-worker: --token-file %s must be a regular file with mode "
            "0600 or stricter\n",
            path);
    close(fd);
    return -1;
  }
  ssize_t k = read(fd, out, n - 1);
  close(fd);
  if (k <= 0) {
    fprintf(stderr, "aisbx-worker: --token-file %s is empty\n", path);
    return -1;
  }
  out[k] = 0;
  out[strcspn(out, "\r\n")] = 0;
  if (!out[0] || strlen(out) >= n - 1) {
    fprintf(stderr, "aisbx-worker: --token-file %s: bad token\n", path);
    return -1;
  }
  return 0;
}

/* Parses a decimal integer in [lo, hi]; -1 when it is not one. */
static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || !*s || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  const char *runner = getenv("AISBX_RUNNER");
  const char *server = NULL, *token_file = NULL, *ca = NULL, *name = NULL;
  long slots = 1, threads = 0;
  int self_test = 0, verbose = 0, cold = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--self-test")) {
      self_test = 1;
      continue;
    }
    if (!strcmp(a, "--verbose")) {
      verbose = 1;
      continue;
    }
    if (!strcmp(a, "--cold-spawn")) {
      cold = 1;
      continue;
    }
    if (!strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "aisbx-worker: %s needs a value\n", a);
      usage(stderr);
      return 2;
    }
    i++;
    if (!strcmp(a, "--runner"))
      runner = v;
    else if (!strcmp(a, "--server"))
      server = v;
    else if (!strcmp(a, "--token-file"))
      token_file = v;
    else if (!strcmp(a, "--ca-file"))
      ca = v;
    else if (!strcmp(a, "--name"))
      name = v;
    else if (!strcmp(a, "--slots")) {
      if (parse_int(v, 1, 256, &slots)) {
        fprintf(stderr, "aisbx-worker: --slots must be 1..256\n");
        return 2;
      }
    } else if (!strcmp(a, "--threads")) {
      if (parse_int(v, 1, 256, &threads)) {
        fprintf(stderr, "aisbx-worker: --threads must be 1..256\n");
        return 2;
      }
    } else {
      fprintf(stderr, "aisbx-worker: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  char path[PATH_MAX];
  if (!runner) {
    if (default_runner(path, sizeof(path))) {
      fprintf(stderr,
              "aisbx-worker: cannot locate aisbx-runner (use --runner)\n");
      return 2;
    }
    runner = path;
  }
  if (access(runner, X_OK) != 0) {
    fprintf(stderr, "aisbx-worker: runner '%s' is not executable\n", runner);
    return 2;
  }
  if (self_test)
    return sbx__worker_self_test(runner, verbose, stdout);
  if (!server || !token_file) {
    usage(stderr);
    return 2;
  }
  char token[512];
  if (read_token(token_file, token, sizeof(token)))
    return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  char host[64] = "worker";
  gethostname(host, sizeof(host) - 1);
  sbx_worker_params p = sbx_worker_default_params();
  p.server = server;
  p.ca_file = ca;
  p.token = token;
  p.name = name ? name : host;
  p.runner_path = runner;
  p.slots = (int)slots;
  p.threads = (int)threads;
  p.cold_spawn = cold;
  p.stop_flag = &g_stop;
  int rc = sbx__worker_serve(&p);
  explicit_bzero(token, sizeof(token));
  return rc ? 1 : 0;
}
