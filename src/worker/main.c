/*
 * main.c - aisbx-worker. For now: `aisbx-worker --self-test [--verbose]
 * [--runner P]`
 * (the network part - claim, lease, heartbeat - comes with the worker
 * protocol). The runner is found with --runner, $AISBX_RUNNER, or next to
 * this executable.
 */
#include "worker.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  fprintf(f, "usage: aisbx-worker --self-test [--verbose] [--runner PATH]\n");
}

int main(int argc, char **argv) {
  const char *runner = getenv("AISBX_RUNNER");
  int self_test = 0, verbose = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--self-test") == 0) {
      self_test = 1;
    } else if (strcmp(argv[i], "--verbose") == 0) {
      verbose = 1;
    } else if (strcmp(argv[i], "--runner") == 0 && i + 1 < argc) {
      runner = argv[++i];
    } else if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "aisbx-worker: unknown option '%s'\n", argv[i]);
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
  if (!self_test) {
    usage(stderr);
    return 2;
  }
  return sbx__worker_self_test(runner, verbose, stdout);
}
