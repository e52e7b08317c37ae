/*
 * memcap.c - the per-job memory cap, arranged by the supervisor while a
 * fresh runner loads (it moves the runner in before the runner forks): a
 * cgroup v2 child with memory.max (when this process's v2 cgroup offers
 * the memory controller), else a cgroup v1 child under the memory
 * controller (as on these machines, /sys/fs/cgroup/memory), else
 * RLIMIT_AS applied by the runner itself (sbx_sandbox_seal).
 */
#define _GNU_SOURCE
#include "sbx/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Reads a small file into buf (NUL-terminated); bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t r = read(fd, buf, n - 1);
  close(fd);
  if (r < 0)
    return -1;
  buf[r] = 0;
  return r;
}

static int write_str(const char *dir, const char *file, const char *s) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  ssize_t w = write(fd, s, strlen(s));
  int e = errno;
  close(fd);
  return w == (ssize_t)strlen(s) ? 0 : -e;
}

/* This process's cgroup path for a v1 controller ("memory") or v2 (""). */
static int own_cgroup(const char *controller, char *out, size_t n) {
  char buf[4096];
  if (read_small("/proc/self/cgroup", buf, sizeof(buf)) < 0)
    return -1;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c1 = 0;
    *c2 = 0;
    const char *ctrls = c1 + 1;
    int match = 0;
    if (!controller[0]) {
      match = strcmp(line, "0") == 0 && ctrls[0] == 0;
    } else {
      size_t cl = strlen(controller);
      for (const char *t = ctrls; t && *t;
           t = strchr(t, ',') ? strchr(t, ',') + 1 : NULL)
        if (strncmp(t, controller, cl) == 0 && (t[cl] == ',' || t[cl] == 0))
          match = 1;
    }
    if (match) {
      snprintf(out, n, "%s", c2 + 1);
      return 0;
    }
  }
  return -1;
}

static int try_v2(uint64_t bytes, const char *tag, sbx_memcap *mc, char *why,
                  size_t wl) {
  char rel[256], base[384] = "", buf[256];
  if (own_cgroup("", rel, sizeof(rel))) {
    snprintf(why, wl, "cgroup v2: not in use");
    return -1;
  }
  const char *roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
  for (int i = 0; i < 2; i++) {
    char probe[512];
    snprintf(probe, sizeof(probe), "%s/cgroup.controllers", roots[i]);
    if (read_small(probe, buf, sizeof(buf)) >= 0) {
      snprintf(base, sizeof(base), "%s%s", roots[i],
               strcmp(rel, "/") ? rel : "");
      break;
    }
  }
  char path[512];
  snprintf(path, sizeof(path), "%s/cgroup.controllers", base);
  if (!base[0] || read_small(path, buf, sizeof(buf)) < 0 ||
      !strstr(buf, "memory")) {
    snprintf(why, wl, "cgroup v2: no memory controller");
    return -1;
  }
  write_str(base, "cgroup.subtree_control", "+memory");
  int w = snprintf(mc->dir, sizeof(mc->dir), "%s/aisbx-%s", base, tag);
  if (w < 0 || (size_t)w >= sizeof(mc->dir)) {
    snprintf(why, wl, "cgroup v2: path too long");
    return -1;
  }
  if (mkdir(mc->dir, 0755) != 0 && errno != EEXIST) {
    snprintf(why, wl, "cgroup v2: cannot create %s: %s", mc->dir,
             strerror(errno));
    return -1;
  }
  char v[32];
  snprintf(v, sizeof(v), "%llu", (unsigned long long)bytes);
  if (write_str(mc->dir, "memory.max", v)) {
    snprintf(why, wl, "cgroup v2: memory.max not writable");
    rmdir(mc->dir);
    return -1;
  }
  write_str(mc->dir, "memory.swap.max", "0");
  mc->kind = SBX_MEMCAP_CGROUP_V2;
  return 0;
}

static int try_v1(uint64_t bytes, const char *tag, sbx_memcap *mc, char *why,
                  size_t wl) {
  char rel[256];
  if (own_cgroup("memory", rel, sizeof(rel))) {
    snprintf(why + strlen(why), wl - strlen(why),
             "; cgroup v1: no memory controller");
    return -1;
  }
  int w = snprintf(mc->dir, sizeof(mc->dir), "/sys/fs/cgroup/memory%s/aisbx-%s",
                   strcmp(rel, "/") ? rel : "", tag);
  if (w < 0 || (size_t)w >= sizeof(mc->dir)) {
    snprintf(why + strlen(why), wl - strlen(why), "; cgroup v1: path too long");
    return -1;
  }
  if (mkdir(mc->dir, 0755) != 0 && errno != EEXIST) {
    snprintf(why + strlen(why), wl - strlen(why),
             "; cgroup v1: cannot create %s: %s", mc->dir, strerror(errno));
    return -1;
  }
  char v[32];
  snprintf(v, sizeof(v), "%llu", (unsigned long long)bytes);
  if (write_str(mc->dir, "memory.limit_in_bytes", v)) {
    snprintf(why + strlen(why), wl - strlen(why),
             "; cgroup v1: limit not writable");
    rmdir(mc->dir);
    return -1;
  }
  write_str(mc->dir, "memory.memsw.limit_in_bytes", v); /* no swap beyond it */
  mc->kind = SBX_MEMCAP_CGROUP_V1;
  return 0;
}

void sbx_memcap_create(uint64_t bytes, const char *tag, sbx_memcap *mc,
                       char *why, size_t whylen) {
  memset(mc, 0, sizeof(*mc));
  mc->procs_fd = -1;
  mc->bytes = bytes;
  why[0] = 0;
  if (try_v2(bytes, tag, mc, why, whylen) &&
      try_v1(bytes, tag, mc, why, whylen)) {
    mc->kind = SBX_MEMCAP_RLIMIT_AS;
    mc->dir[0] = 0;
    snprintf(why + strlen(why), whylen - strlen(why), "; using RLIMIT_AS");
    return;
  }
  char path[512];
  snprintf(path, sizeof(path), "%s/cgroup.procs", mc->dir);
  mc->procs_fd = open(path, O_WRONLY | O_CLOEXEC);
  if (mc->procs_fd < 0) {
    rmdir(mc->dir);
    mc->kind = SBX_MEMCAP_RLIMIT_AS;
    mc->dir[0] = 0;
    snprintf(why, whylen, "cgroup.procs not writable; using RLIMIT_AS");
    return;
  }
  snprintf(why, whylen, "%s at %s, %llu MiB", sbx_memcap_name(mc->kind),
           mc->dir, (unsigned long long)(bytes >> 20));
}

int sbx_memcap_set_limit(sbx_memcap *mc, uint64_t bytes) {
  char v[32];
  snprintf(v, sizeof(v), "%llu", (unsigned long long)bytes);
  int rc = 0;
  if (mc->kind == SBX_MEMCAP_CGROUP_V2) {
    rc = write_str(mc->dir, "memory.max", v);
  } else if (mc->kind == SBX_MEMCAP_CGROUP_V1) {
    /* v1 wants memsw >= limit at every moment: order by direction */
    if (bytes >= mc->bytes) {
      write_str(mc->dir, "memory.memsw.limit_in_bytes", v);
      rc = write_str(mc->dir, "memory.limit_in_bytes", v);
    } else {
      rc = write_str(mc->dir, "memory.limit_in_bytes", v);
      write_str(mc->dir, "memory.memsw.limit_in_bytes", v);
    }
  }
  if (!rc)
    mc->bytes = bytes;
  return rc;
}

int sbx_memcap_move(const sbx_memcap *mc, int pid) {
  if (mc->kind != SBX_MEMCAP_CGROUP_V1 && mc->kind != SBX_MEMCAP_CGROUP_V2)
    return 0;
  char v[32];
  int n = snprintf(v, sizeof(v), "%d", pid);
  if (write(mc->procs_fd, v, (size_t)n) != n)
    return -errno;
  return 0;
}

/* Value of "key N" in a flat-keyed cgroup file, or -1. */
static long long keyed(const char *dir, const char *file, const char *key) {
  char path[512], buf[2048];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  if (read_small(path, buf, sizeof(buf)) < 0)
    return -1;
  size_t kl = strlen(key);
  for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (strncmp(l, key, kl) == 0 && l[kl] == ' ')
      return atoll(l + kl + 1);
  return -1;
}

int sbx_memcap_oom_kills(const sbx_memcap *mc) {
  long long n = -1;
  if (mc->kind == SBX_MEMCAP_CGROUP_V2)
    n = keyed(mc->dir, "memory.events", "oom_kill");
  else if (mc->kind == SBX_MEMCAP_CGROUP_V1)
    n = keyed(mc->dir, "memory.oom_control", "oom_kill");
  return n > 0 ? (int)n : 0;
}

uint64_t sbx_memcap_peak(const sbx_memcap *mc) {
  char path[512], buf[64];
  const char *f = mc->kind == SBX_MEMCAP_CGROUP_V2 ? "memory.peak"
                  : mc->kind == SBX_MEMCAP_CGROUP_V1
                      ? "memory.max_usage_in_bytes"
                      : NULL;
  if (!f)
    return 0;
  snprintf(path, sizeof(path), "%s/%s", mc->dir, f);
  if (read_small(path, buf, sizeof(buf)) < 0)
    return 0;
  return strtoull(buf, NULL, 10);
}

void sbx_memcap_destroy(sbx_memcap *mc) {
  if (mc->procs_fd >= 0)
    close(mc->procs_fd);
  mc->procs_fd = -1;
  if (!mc->dir[0])
    return;
  /* up to ~2 s while the last task exits: first retries after 0.25 ms
   * (the usual case, a task finishing its exit), then backing off to
   * 20 ms; a flat 10 ms sleep cost every job 10 ms after its runner died */
  long wait_ns = 250 * 1000;
  for (long waited = 0; waited < 2000L * 1000 * 1000; waited += wait_ns) {
    if (rmdir(mc->dir) == 0 || errno == ENOENT)
      break;
    struct timespec ts = {0, wait_ns};
    nanosleep(&ts, NULL);
    if (wait_ns < 20L * 1000 * 1000)
      wait_ns *= 2;
  }
  mc->dir[0] = 0;
}
