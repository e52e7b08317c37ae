/*
 * probe.c - `aisbx-worker --self-test` probes, run inside a fully sealed
 * runner. Each tries one thing the sandbox must refuse. A probe that the
 * kernel refuses with an error reports {"probe":..,"outcome":"refused",
 * "errno":..}; one that the seccomp filter kills never returns (the
 * supervisor sees SIGSYS and the syscall number; the memory probe under
 * RLIMIT_AS reports the engine's ENOMEM like a job); one that succeeds
 * reports "outcome":"ALLOWED", which the self-test prints as FAIL.
 */
#define _GNU_SOURCE
#include "runner.h"

#include "adv/status.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *const probe_names[SBX_PROBE_COUNT] = {
    "none",   "open-host-file", "write-file", "socket",  "connect",
    "execve", "ptrace",         "mount",      "unshare", "fork",
    "clone3", "raise-rlimit",   "memory",     "cpu"};

/* Reports a probe's outcome: rc < 0 with errno e = refused. */
static int report(int id, long rc, int e) {
  char json[256];
  int n;
  if (rc < 0)
    n = snprintf(json, sizeof(json),
                 "{\"probe\":\"%s\",\"outcome\":\"refused\",\"errno\":\"%s\"}",
                 probe_names[id],
                 strerrorname_np(e) ? strerrorname_np(e) : "?");
  else
    n = snprintf(json, sizeof(json),
                 "{\"probe\":\"%s\",\"outcome\":\"ALLOWED\"}", probe_names[id]);
  return sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_RESULT, json, (size_t)n);
}

int sbx__runner_probe(const sbx_job_spec *spec) {
  int id = (int)spec->probe;
  long rc = -1;
  errno = 0;
  switch (id) {
  case SBX_PROBE_NONE: {
    static const char ran[] = "{\"probe\":\"none\",\"outcome\":\"ran\"}";
    return sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_RESULT, ran, sizeof(ran) - 1);
  }
  case SBX_PROBE_OPEN_HOST_FILE:
    rc = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
    break;
  case SBX_PROBE_WRITE_FILE:
    rc = open("/in/written", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    break;
  case SBX_PROBE_SOCKET:
    rc = socket(AF_INET, SOCK_STREAM, 0);
    break;
  case SBX_PROBE_CONNECT: {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    rc = connect(RUNNER_OUT_FD, (struct sockaddr *)&a, sizeof(a));
    break;
  }
  case SBX_PROBE_EXECVE: {
    char *argv[] = {"/bin/sh", "-c", "true", NULL};
    rc = execve("/bin/sh", argv, NULL);
    break;
  }
  case SBX_PROBE_PTRACE:
    rc = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    break;
  case SBX_PROBE_MOUNT:
    rc = mount("none", "/in", "tmpfs", 0, NULL);
    break;
  case SBX_PROBE_UNSHARE:
    rc = unshare(CLONE_NEWUSER);
    break;
  case SBX_PROBE_FORK:
    rc = fork();
    if (rc == 0)
      _exit(0);
    break;
  case SBX_PROBE_CLONE3:
    rc = syscall(SYS_clone3, NULL, 0);
    break;
  case SBX_PROBE_RAISE_RLIMIT: {
    struct rlimit r = {4096, 4096};
    rc = setrlimit(RLIMIT_NOFILE, &r);
    break;
  }
  case SBX_PROBE_MEMORY: {
    /* touch 64 MiB blocks until twice the cap: the cgroup kills us, or
     * RLIMIT_AS makes malloc fail */
    size_t block = (size_t)64 << 20, want = (size_t)spec->mem_bytes * 2;
    for (size_t got = 0; got < want; got += block) {
      char *p = malloc(block);
      if (!p) { /* RLIMIT_AS: fail like a job would (the engine's ENOMEM) */
        sbx__runner_error(ADV_ENOMEM, "out of memory");
        return -1;
      }
      memset(p, 1, block);
      rc = 0;
    }
    break;
  }
  case SBX_PROBE_CPU: {
    volatile unsigned long x = 0;
    for (;;) /* RLIMIT_CPU ends this */
      x++;
    break;
  }
  default:
    sbx__runner_error(SBX_ERR_PROTOCOL, "unknown probe %d", id);
    return -1;
  }
  int e = errno;
  if (rc >= 0 && id == SBX_PROBE_FORK)
    rc = 0;
  return report(id, rc, e);
}
