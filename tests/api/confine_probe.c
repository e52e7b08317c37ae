/*
 * confine_probe.c - a test build's helper (never installed): starts the
 * server in this process on DATA_DIR with confinement on, through the very
 * sbx_server_start -> sbx__confine_enter/seal path aisbxd takes, then
 * misbehaves the way an attacker inside aisbxd would:
 *   confine_probe DATA_DIR exec          execve("/bin/true"): the seccomp
 *                                        filter must kill it with SIGSYS
 *                                        (exit 3: it survived)
 *   confine_probe DATA_DIR files OUTSIDE opens /etc/shadow, /etc/passwd and
 *                                        OUTSIDE (a world-readable file in
 *                                        a searchable directory: only
 *                                        Landlock can refuse it), which
 *                                        must fail with EACCES, and creates
 *                                        a file in DATA_DIR, which must
 *                                        work. One line per check; exit 0
 *                                        when all hold, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sbx/server.h"

/* open(path) must fail with EACCES; prints the verdict; 1 when it held. */
static int denied(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int e = errno;
  if (fd >= 0)
    close(fd);
  int ok = fd < 0 && e == EACCES;
  printf("%s open(%s) -> %s\n", ok ? "ok" : "FAIL", path,
         fd >= 0 ? "opened" : strerror(e));
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 3 || (strcmp(argv[2], "exec") && strcmp(argv[2], "files")) ||
      (!strcmp(argv[2], "files") && argc < 4)) {
    fprintf(stderr, "usage: %s DATA_DIR exec|files OUTSIDE_FILE\n", argv[0]);
    return 2;
  }
  sbx_server_params p = sbx_server_default_params();
  p.data_dir = argv[1];
  p.listen = "127.0.0.1:0";
  p.blob_fsync = 0;
  p.audit_anchor_interval_s = 0;
  p.confine = "on";
  sbx_server *s = NULL;
  char fp[96];
  int rc = sbx_server_start(&p, &s, fp);
  if (rc) {
    fprintf(stderr, "confine_probe: start: %s\n", sbx_strerror(rc));
    return 2;
  }
  printf("confined, uid %u\n", (unsigned)getuid());
  fflush(stdout);
  if (!strcmp(argv[2], "exec")) {
    char *const av[] = {"/bin/true", NULL};
    execv(av[0], av);
    printf("execve returned: %s\n", strerror(errno));
    return 3;
  }
  int ok = denied("/etc/shadow");
  ok &= denied("/etc/passwd");
  ok &= denied(argv[3]);
  char path[1200];
  snprintf(path, sizeof path, "%s/probe.txt", argv[1]);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  printf("%s create %s -> %s\n", fd >= 0 ? "ok" : "FAIL", path,
         fd >= 0 ? "created" : strerror(errno));
  ok &= fd >= 0;
  if (fd >= 0)
    close(fd);
  fflush(stdout);
  sbx_server_stop(s);
  return ok ? 0 : 1;
}
