/*
 * sandbox.c - entering the per-job sandbox (see sbx/sandbox.h for the three
 * steps and why they are split: user/mount namespaces can only be entered
 * while single-threaded, capabilities, no_new_privs and Landlock are
 * per-thread and are inherited by threads created later, rlimits and the
 * seccomp filter (TSYNC) cover every thread at once).
 *
 * Models: OpenSSH's sandbox-seccomp-filter.c (allow-list, arch check) and
 * bubblewrap (user namespace maps, pivot_root into a tmpfs).
 */
#define _GNU_SOURCE
#include "sbx/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* 1 in an AddressSanitizer build (GCC defines __SANITIZE_ADDRESS__, clang
 * has __has_feature(address_sanitizer)). */
#if defined(__SANITIZE_ADDRESS__)
#define SBX_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SBX_ASAN_BUILD 1
#endif
#endif
#ifndef SBX_ASAN_BUILD
#define SBX_ASAN_BUILD 0
#endif
#if SBX_ASAN_BUILD
#include <sanitizer/asan_interface.h>
#endif

#define IN_DIR "/in"

const char *sbx_memcap_name(sbx_memcap_kind k) {
  switch (k) {
  case SBX_MEMCAP_CGROUP_V2:
    return "cgroup v2";
  case SBX_MEMCAP_CGROUP_V1:
    return "cgroup v1";
  case SBX_MEMCAP_RLIMIT_AS:
    return "RLIMIT_AS";
  default:
    return "none";
  }
}

void sbx_sandbox_default_params(sbx_sandbox_params *p) {
  memset(p, 0, sizeof(*p));
  p->mem_bytes = (uint64_t)2 << 30;
  p->memcap = SBX_MEMCAP_RLIMIT_AS;
  p->cpu_seconds = 600;
  p->max_files = 16;
}

/* Formats a message and hands it to the caller's log callback. */
__attribute__((format(printf, 3, 4))) static void
logf_(const sbx_sandbox_params *p, sbx_log_level lvl, const char *fmt, ...) {
  if (!p->log)
    return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  p->log(p->log_ud, lvl, buf);
}

/* Writes a short string to a /proc file (uid_map and friends). */
static int write_file(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t n = strlen(s);
  ssize_t w = write(fd, s, n);
  int e = errno;
  close(fd);
  return w == (ssize_t)n ? 0 : -(w < 0 ? e : EIO);
}

/* Inode of /proc/self/ns/<name> (0 when unknown). */
static unsigned long ns_inode(const char *name) {
  char path[64];
  struct stat sb;
  snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
  return stat(path, &sb) == 0 ? (unsigned long)sb.st_ino : 0;
}

static const struct {
  int flag, bit;
  const char *name, *proc;
} ns_table[] = {
    {CLONE_NEWUSER, SBX_NS_USER, "user", "user"},
    {CLONE_NEWPID, SBX_NS_PID, "pid", "pid_for_children"},
    {CLONE_NEWNS, SBX_NS_MOUNT, "mount", "mnt"},
    {CLONE_NEWNET, SBX_NS_NET, "network", "net"},
    {CLONE_NEWIPC, SBX_NS_IPC, "ipc", "ipc"},
    {CLONE_NEWUTS, SBX_NS_UTS, "uts", "uts"},
};
enum { N_NS = sizeof(ns_table) / sizeof(ns_table[0]) };

/* Logs namespace table entry i as entered (how: "" or ", at clone...")
 * with its inodes before and after. */
static void log_entered(const sbx_sandbox_params *p, int i, const char *how,
                        unsigned long before, unsigned long after) {
  logf_(p, SBX_LOG_INFO, "namespace %s: entered%s (inode %lu -> %lu)%s",
        ns_table[i].name, how, before, after,
        ns_table[i].flag == CLONE_NEWUSER ? ", uid/gid 0 mapped to the caller's"
                                          : "");
}

/* Maps uid/gid 0 inside the calling process's new user namespace to the
 * ids outside, given as formatted lines ("0 <id> 1\n"): setgroups denied
 * first (an unprivileged writer must), then one line each. Only system
 * calls (the child of sbx_sandbox_clone runs it in our memory). 0 or
 * -errno. */
static int write_own_maps(const char *uid_line, const char *gid_line) {
  int rc = write_file("/proc/self/setgroups", "deny");
  if (rc && rc != -ENOENT)
    return rc;
  if ((rc = write_file("/proc/self/uid_map", uid_line)))
    return rc;
  return write_file("/proc/self/gid_map", gid_line);
}

/* The line of uid_map/gid_map that maps 0 inside to `id` outside. */
static void id_map_line(char *out, size_t n, unsigned id) {
  snprintf(out, n, "0 %u 1\n", id);
}

/* Maps uid/gid 0 inside the new user namespace to the caller's ids. */
static int map_ids(uid_t uid, gid_t gid) {
  char ul[32], gl[32];
  id_map_line(ul, sizeof(ul), (unsigned)uid);
  id_map_line(gl, sizeof(gl), (unsigned)gid);
  int rc = write_own_maps(ul, gl);
  if (rc)
    return rc;
  return getuid() == 0 && getgid() == 0 ? 0 : -EPERM;
}

/* connect() to a documentation address must fail with ENETUNREACH in an
 * empty network namespace (only a down loopback). */
static int verify_no_network(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return 0; /* cannot even make a socket: fine */
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1, TEST-NET-1 */
  int rc = connect(s, (struct sockaddr *)&a, sizeof(a));
  int e = errno;
  close(s);
  return (rc < 0 && e == ENETUNREACH) ? 0 : -EPERM;
}

/* The parent side of the PID-namespace fork: wait for the child and die
 * the same way so the supervisor sees the child's fate. Never returns. */
static void reap_and_mirror(pid_t child) {
  struct rlimit zero = {0, 0};
  setrlimit(RLIMIT_CORE, &zero);
  close_range(0, ~0U, 0); /* the pipes and memfds belong to the child */
  /* it only waits: no privileges either (kill(self) needs none) */
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  syscall(SYS_capset, &h, d);
  int status;
  while (waitpid(child, &status, 0) < 0)
    if (errno != EINTR)
      _exit(127);
  if (WIFEXITED(status))
    _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  kill(getpid(), sig);
  _exit(128 + sig);
}

/* What every new set of namespaces needs before use, verified: mounts
 * private to the mount namespace, our own hostname, and no network at all
 * in the network namespace. */
static int ns_settle(const sbx_sandbox_params *p, sbx_sandbox_state *st) {
  if (st->namespaces & SBX_NS_MOUNT) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
      int e = errno;
      logf_(p, SBX_LOG_ERROR, "mount namespace: cannot make / private: %s",
            strerror(e));
      return -e;
    }
  }
  if (st->namespaces & SBX_NS_UTS)
    sethostname("sandbox", 7);
  if (st->namespaces & SBX_NS_NET) {
    if (verify_no_network()) {
      logf_(p, SBX_LOG_ERROR,
            "network namespace: a connect() did not fail with ENETUNREACH");
      return -EPERM;
    }
    logf_(p, SBX_LOG_INFO, "network namespace: empty (connect -> ENETUNREACH)");
  }
  return 0;
}

int sbx_sandbox_unshare(const sbx_sandbox_params *p, sbx_sandbox_state *st) {
  memset(st, 0, sizeof(*st));
  uid_t uid = geteuid();
  st->outer_uid = (unsigned)uid;
  gid_t gid = getegid();
  unsigned long before[N_NS];
  for (int i = 0; i < N_NS; i++)
    before[i] = ns_inode(ns_table[i].proc);
  for (int i = 0; i < N_NS; i++) {
    if (unshare(ns_table[i].flag) != 0) {
      logf_(p, SBX_LOG_WARN,
            "namespace %s: refused by the kernel (%s), continuing without it",
            ns_table[i].name, strerror(errno));
      continue;
    }
    if (ns_table[i].flag == CLONE_NEWUSER) {
      int rc = map_ids(uid, gid);
      if (rc) {
        logf_(p, SBX_LOG_ERROR, "namespace user: cannot map ids: %s",
              strerror(-rc));
        return rc;
      }
    }
    unsigned long after = ns_inode(ns_table[i].proc);
    if (before[i] && after == before[i]) {
      logf_(p, SBX_LOG_ERROR,
            "namespace %s: unshare succeeded but the namespace did not change",
            ns_table[i].name);
      return -EPERM;
    }
    st->namespaces |= (unsigned)ns_table[i].bit;
    if (ns_table[i].flag == CLONE_NEWPID) /* no inode until a child exists */
      logf_(p, SBX_LOG_INFO,
            "namespace pid: entered (checked after the fork: PID 1)");
    else
      log_entered(p, i, "", before[i], after);
  }
  int rc = ns_settle(p, st);
  if (rc)
    return rc;
  if (st->namespaces & SBX_NS_PID) {
    pid_t pid = fork();
    if (pid < 0) {
      int e = errno;
      logf_(p, SBX_LOG_ERROR, "pid namespace: fork failed: %s", strerror(e));
      return -e;
    }
    if (pid > 0)
      reap_and_mirror(pid);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    st->pid1 = getpid() == 1;
    if (!st->pid1) {
      logf_(p, SBX_LOG_ERROR, "pid namespace: child is not PID 1");
      return -EPERM;
    }
    logf_(p, SBX_LOG_INFO, "pid namespace: running as PID 1");
  }
  return 0;
}

/* The flags of a runner cloned into its namespaces: all six or none. */
#define CLONE_ALL_NS                                                           \
  (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |  \
   CLONE_NEWUTS)

/* Inode of the namespace a process is in for table entry i ("pid", not
 * "pid_for_children": the cloned runner is itself in the new one). */
static unsigned long ns_inode_in(int i) {
  return ns_inode(ns_table[i].flag == CLONE_NEWPID ? "pid" : ns_table[i].proc);
}

/* What the parent of sbx_sandbox_clone() hands its child: the id maps
 * formatted beforehand (the child shares our memory and only makes
 * system calls), the function that execs, and where the child reports a
 * failure before it gives up (the same memory, read after the clone). */
typedef struct clone_ctx {
  char uid_map[32], gid_map[32];
  void (*fn)(void *);
  void *fn_arg;
  volatile int err; /* errno of the failed map write, set by the child */
} clone_ctx;

/* The child of sbx_sandbox_clone(), on its own stack, sharing our memory
 * until it execs: maps uid/gid 0 of its new user namespace to ours (a
 * process may map its own ids in a namespace it was born in, setgroups
 * denied first), then runs fn, which must exec or _exit. */
__attribute__((no_sanitize_address)) static int clone_child(void *v) {
  clone_ctx *c = v;
  /* a handler of ours must not run here, in our memory: every signal is
   * blocked, faults then kill (the kernel resets a blocked fault signal to
   * its default), and abort() would unblock SIGABRT - so these are reset
   * in the child's own copy of the handler table */
  static const int sync_sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL,
                                  SIGFPE,  SIGTRAP, SIGSYS};
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (size_t i = 0; i < sizeof(sync_sigs) / sizeof(sync_sigs[0]); i++)
    sigaction(sync_sigs[i], &dfl, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int rc = write_own_maps(c->uid_map, c->gid_map);
  if (rc) {
    c->err = -rc;
    _exit(126);
  }
  c->fn(c->fn_arg);
  _exit(127);
}

pid_t sbx_sandbox_clone(char *arg, size_t argn, void (*fn)(void *),
                        void *fn_arg) {
  if (!arg || argn < 96 || !fn) {
    errno = EINVAL;
    return -1;
  }
  uid_t uid = geteuid();
  gid_t gid = getegid();
  unsigned long before[N_NS];
  for (int i = 0; i < N_NS; i++)
    if (!(before[i] = ns_inode_in(i))) {
      errno = ENOENT; /* no /proc: the runner checks nothing then */
      return -1;
    }
  /* written before the clone: the child execs with it */
  snprintf(arg, argn, "--ns=%u:%u:%lu,%lu,%lu,%lu,%lu,%lu", (unsigned)uid,
           (unsigned)gid, before[0], before[1], before[2], before[3], before[4],
           before[5]);
  clone_ctx c = {.fn = fn, .fn_arg = fn_arg, .err = 0};
  id_map_line(c.uid_map, sizeof(c.uid_map), (unsigned)uid);
  id_map_line(c.gid_map, sizeof(c.gid_map), (unsigned)gid);
  /* the child's own stack; it runs in our memory (CLONE_VM) and this
   * thread sleeps until it has exec'd or exited (CLONE_VFORK), like
   * posix_spawn: no page tables copied, however large the caller */
  size_t ss = 64 * 1024, guard = 4096; /* a guard page below it */
  char *map = mmap(NULL, ss + guard, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (map == MAP_FAILED)
    return -1;
  if (mprotect(map, guard, PROT_NONE) != 0) {
    int e = errno;
    munmap(map, ss + guard);
    errno = e;
    return -1;
  }
  char *stk = map + guard;
  /* no handler of ours may run in the child (it would run in our memory):
   * every signal stays blocked in it through the exec, and the runner
   * unblocks them first thing */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int saved = errno;
  pid_t pid = clone(clone_child, stk + ss,
                    CLONE_VM | CLONE_VFORK | CLONE_ALL_NS | SIGCHLD, &c);
  int e = errno; /* the child's calls wrote our errno too */
  pthread_sigmask(SIG_SETMASK, &old, NULL);
#if SBX_ASAN_BUILD
  /* whatever AddressSanitizer marked on the child's stack must not
   * outlive it (a later mapping may reuse the addresses) */
  __asan_unpoison_memory_region(stk, ss);
#endif
  munmap(map, ss + guard);
  if (pid < 0) {
    errno = e;
    return -1;
  }
  if (c.err) { /* the kernel refused the id maps: reap, let the caller fork */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    errno = c.err;
    return -1;
  }
  errno = saved;
  return pid;
}

int sbx_sandbox_adopt(const sbx_sandbox_params *p, const char *arg,
                      sbx_sandbox_state *st) {
  memset(st, 0, sizeof(*st));
  unsigned uid, gid;
  unsigned long before[N_NS];
  char end;
  if (!arg || sscanf(arg, "--ns=%u:%u:%lu,%lu,%lu,%lu,%lu,%lu%c", &uid, &gid,
                     &before[0], &before[1], &before[2], &before[3], &before[4],
                     &before[5], &end) != 8) {
    logf_(p, SBX_LOG_ERROR,
          "namespaces: malformed argument from the supervisor");
    return -EINVAL;
  }
  st->outer_uid = uid;
  for (int i = 0; i < N_NS; i++) {
    unsigned long after = ns_inode_in(i);
    if (!after || after == before[i]) {
      logf_(p, SBX_LOG_ERROR,
            "namespace %s: not entered at clone (inode %lu -> %lu)",
            ns_table[i].name, before[i], after);
      return -EPERM;
    }
    if (ns_table[i].flag == CLONE_NEWUSER && (getuid() != 0 || getgid() != 0)) {
      logf_(p, SBX_LOG_ERROR, "namespace user: ids not mapped (uid %u)",
            (unsigned)getuid());
      return -EPERM;
    }
    st->namespaces |= (unsigned)ns_table[i].bit;
    log_entered(p, i, " at clone, before exec", before[i], after);
  }
  int rc = ns_settle(p, st);
  if (rc)
    return rc;
  st->pid1 = getpid() == 1;
  if (!st->pid1) {
    logf_(p, SBX_LOG_ERROR, "pid namespace: runner is not PID 1");
    return -EPERM;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* kept across exec; set again */
  logf_(p, SBX_LOG_INFO, "pid namespace: running as PID 1 (no fork needed)");
  return 0;
}

/* ---- step 2: filesystem, no_new_privs, capabilities, Landlock ---- */

/* Writes all bytes of a buffer to fd. */
static int write_all(int fd, const void *buf, size_t n) {
  const char *c = buf;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* An empty tmpfs holding only /in/<files>, read-only, made the root. */
static int make_empty_root(const sbx_sandbox_params *p, const sbx_file *files,
                           int nfiles, sbx_sandbox_state *st) {
  const char *mp = NULL;
  size_t total = 65536;
  for (int i = 0; i < nfiles; i++) {
    if (!files[i].name[0] || strchr(files[i].name, '/') ||
        strlen(files[i].name) > 32)
      return -EINVAL;
    total += (files[i].len + 4095) / 4096 * 4096 + 4096;
  }
  char opts[128];
  snprintf(opts, sizeof(opts), "size=%zu,nr_inodes=%d,mode=0755", total,
           nfiles + 8);
  /* any existing directory will do as the mount point: the mount lives
   * in our own mount namespace only */
  static const char *const mps[] = {"/tmp", "/mnt", "/var/tmp", "/dev", "/run"};
  int mounted = -ENOENT;
  for (size_t i = 0; i < sizeof(mps) / sizeof(mps[0]) && mounted; i++) {
    mp = mps[i];
    mounted =
        mount("sandbox", mp, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts)
            ? -errno
            : 0;
  }
  if (mounted)
    return mounted;
  char path[64];
  snprintf(path, sizeof(path), "%s/in", mp);
  if (mkdir(path, 0755) != 0)
    return -errno;
  for (int i = 0; i < nfiles; i++) {
    snprintf(path, sizeof(path), "%s/in/%s", mp, files[i].name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0)
      return -errno;
    int rc = write_all(fd, files[i].data, files[i].len);
    close(fd);
    if (rc)
      return rc;
  }
  if (chdir(mp) != 0 || syscall(SYS_pivot_root, ".", ".") != 0)
    return -errno;
  if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
    return -errno;
  if (mount(NULL, "/", NULL,
            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            NULL) != 0)
    return -errno;
  /* verify: the host's files are gone and nothing can be created */
  if (access("/etc/passwd", F_OK) == 0 || errno != ENOENT)
    return -EPERM;
  int fd = open("/in/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0 || errno != EROFS) {
    if (fd >= 0)
      close(fd);
    return -EPERM;
  }
  st->pivoted = 1;
  snprintf(st->input_dir, sizeof(st->input_dir), "%s", IN_DIR);
  logf_(p, SBX_LOG_INFO,
        "filesystem: root is an empty read-only tmpfs holding %d input file(s) "
        "under " IN_DIR " (/etc/passwd -> ENOENT, create -> EROFS)",
        nfiles);
  return 0;
}

static int drop_caps(const sbx_sandbox_params *p, sbx_sandbox_state *st) {
  int bset_kept = 0;
  for (int c = 0; c < 64; c++) {
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0)
      break; /* past the kernel's last capability */
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
      bset_kept = 1;
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  if (syscall(SYS_capset, &h, d) != 0)
    return -errno;
  memset(d, 0xff, sizeof(d));
  if (syscall(SYS_capget, &h, d) != 0)
    return -errno;
  for (int i = 0; i < 2; i++)
    if (d[i].effective || d[i].permitted || d[i].inheritable)
      return -EPERM;
  st->caps_dropped = 1;
  if (bset_kept)
    logf_(p, SBX_LOG_WARN,
          "capabilities: effective/permitted/inheritable empty; bounding set "
          "kept "
          "(no CAP_SETPCAP without a user namespace; no_new_privs makes it "
          "inert)");
  else
    logf_(p, SBX_LOG_INFO,
          "capabilities: all dropped (bounding, ambient, effective, "
          "permitted, inheritable; verified with capget)");
  return 0;
}

/* Landlock attributes up to ABI 6 (the system header may be older). */
struct ll_ruleset_attr {
  uint64_t fs, net, scoped;
};

static int landlock(const sbx_sandbox_params *p, sbx_sandbox_state *st) {
  long abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
                     LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) {
    logf_(p, SBX_LOG_WARN,
          "landlock: not available (%s); the filesystem is left to the mount "
          "namespace and seccomp",
          strerror(errno));
    return 0;
  }
  struct ll_ruleset_attr a = {0};
  a.fs = (1ULL << 13) - 1; /* ABI 1: EXECUTE .. MAKE_SYM */
  if (abi >= 2)
    a.fs |= 1ULL << 13; /* REFER */
  if (abi >= 3)
    a.fs |= 1ULL << 14; /* TRUNCATE */
  if (abi >= 5)
    a.fs |= 1ULL << 15; /* IOCTL_DEV */
  size_t size = 8;
  if (abi >= 4) {
    a.net = 3; /* BIND_TCP | CONNECT_TCP */
    size = 16;
  }
  if (abi >= 6) {
    a.scoped = 3; /* abstract unix sockets, signals */
    size = 24;
  }
  int rfd = (int)syscall(SYS_landlock_create_ruleset, &a, size, 0);
  if (rfd < 0)
    return -errno;
  if (st->input_dir[0]) {
    struct landlock_path_beneath_attr pb = {.allowed_access =
                                                LANDLOCK_ACCESS_FS_READ_FILE};
    pb.parent_fd = open(st->input_dir, O_PATH | O_CLOEXEC);
    if (pb.parent_fd < 0 || syscall(SYS_landlock_add_rule, rfd,
                                    LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0) {
      int e = errno;
      if (pb.parent_fd >= 0)
        close(pb.parent_fd);
      close(rfd);
      return -e;
    }
    close(pb.parent_fd);
  }
  if (syscall(SYS_landlock_restrict_self, rfd, 0) != 0) {
    int e = errno;
    close(rfd);
    return -e;
  }
  close(rfd);
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0 || errno != EACCES) {
    if (fd >= 0)
      close(fd);
    return -EPERM;
  }
  st->landlock_abi = (int)abi;
  logf_(p, SBX_LOG_INFO,
        "landlock: ABI %ld, every filesystem right denied%s%s%s (open(\"/\") "
        "-> EACCES)",
        abi, st->input_dir[0] ? " except reading files under " : "",
        st->input_dir, abi >= 4 ? ", TCP bind/connect denied" : "");
  return 0;
}

int sbx_sandbox_lock(const sbx_sandbox_params *p, const sbx_file *files,
                     int nfiles, sbx_sandbox_state *st) {
  int rc;
  if (st->namespaces & SBX_NS_MOUNT) {
    if ((rc = make_empty_root(p, files, nfiles, st))) {
      logf_(p, SBX_LOG_ERROR, "filesystem: cannot build the empty root: %s",
            strerror(-rc));
      return rc;
    }
  } else {
    logf_(p, SBX_LOG_WARN,
          "filesystem: no mount namespace, the host's files are hidden by "
          "Landlock only; inputs must be passed in memory");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
    logf_(p, SBX_LOG_ERROR, "no_new_privs: cannot set");
    return -EPERM;
  }
  st->no_new_privs = 1;
  logf_(p, SBX_LOG_INFO, "no_new_privs: set (verified)");
  if ((rc = drop_caps(p, st))) {
    logf_(p, SBX_LOG_ERROR, "capabilities: cannot drop: %s", strerror(-rc));
    return rc;
  }
  if ((rc = landlock(p, st))) {
    logf_(p, SBX_LOG_ERROR, "landlock: cannot restrict: %s", strerror(-rc));
    return rc;
  }
  if (!st->pivoted && !st->landlock_abi) {
    logf_(
        p, SBX_LOG_ERROR,
        "filesystem: neither a mount namespace nor Landlock: refusing to run");
    return -EPERM;
  }
  return 0;
}

/* ---- step 3: rlimits and seccomp ---- */

static int set_limit2(int res, rlim_t soft, rlim_t hard) {
  struct rlimit r = {soft, hard}, back;
  if (setrlimit(res, &r) != 0)
    return -errno;
  if (getrlimit(res, &back) != 0 || back.rlim_cur != soft ||
      back.rlim_max != hard)
    return -EPERM;
  return 0;
}

static int set_limit(int res, rlim_t v) {
  return set_limit2(res, v, v);
}

static void (*g_on_cpu_limit)(void);

/* SIGXCPU at the CPU soft limit (PID 1 ignores default-action signals, so
 * the runner needs a handler to end at the soft limit). */
static void sigxcpu_handler(int sig) {
  (void)sig;
  if (g_on_cpu_limit)
    g_on_cpu_limit();
  _exit(128 + SIGXCPU);
}

static void (*g_on_forbidden)(int);

/* SIGSYS from the filter (SCMP_ACT_TRAP): report the syscall, then make a
 * second forbidden call while SIGSYS is blocked, which the kernel turns
 * into death by SIGSYS (even for PID 1; the handler cannot be replaced
 * afterwards because rt_sigaction is not on the allow-list). */
static void sigsys_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  if (g_on_forbidden)
    g_on_forbidden(si->si_syscall);
  syscall(SYS_getppid); /* not allowed: fatal */
  _exit(128 + SIGSYS);
}

static int allow(scmp_filter_ctx ctx, const char *name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return 0; /* not on this architecture */
  return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
}

/* The shared base of the allow-lists (sbx/sandbox.h). */
void *sbx_seccomp_base(int threads_only) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (!ctx)
    return NULL;
  int rc =
      seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (!rc)
    rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
  /* threads only: CLONE_THREAD|CLONE_VM and no namespace flags */
  const uint64_t mask = CLONE_THREAD | CLONE_VM | CLONE_NEWUSER | CLONE_NEWNS |
                        CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                        CLONE_NEWUTS | CLONE_NEWCGROUP;
  if (!rc && threads_only)
    rc = seccomp_rule_add(
        ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
        SCMP_A0(SCMP_CMP_MASKED_EQ, mask, CLONE_THREAD | CLONE_VM));
  /* clone3's flags live in memory the filter cannot read: make glibc fall
   * back to clone */
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
  if (rc) {
    seccomp_release(ctx);
    return NULL;
  }
  return ctx;
}

/* The allow-list as a libseccomp context (*out; seccomp_release it). */
static int build_filter(scmp_filter_ctx *out) {
  static const char *const allowed[] = {
      /* memory (mmap/mprotect with PROT_EXEC: oneDNN's JIT) */
      "brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
      /* pipes and the input files */
      "read", "readv", "pread64", "write", "writev", "close", "lseek", "fstat",
      "newfstatat", "fcntl",
      /* threads (OpenMP pool, the abort watcher) */
      "futex", "set_robust_list", "rseq", "sched_yield", "sched_getaffinity",
      "getcpu", "membarrier",
      /* time, identity, randomness */
      "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
      "gettimeofday", "getpid", "gettid", "getrandom", "sysinfo", "uname",
      /* signals: returning from handlers and masks only, no new handlers */
      "rt_sigreturn", "rt_sigprocmask", "restart_syscall", "tgkill",
      /* the end */
      "exit", "exit_group"};
  scmp_filter_ctx ctx = sbx_seccomp_base(1);
  if (!ctx)
    return -ENOMEM;
  int rc = 0;
  for (size_t i = 0; !rc && i < sizeof(allowed) / sizeof(allowed[0]); i++)
    rc = allow(ctx, allowed[i]);
#if SBX_ASAN_BUILD
  /* AddressSanitizer's own runtime (tests only): it swaps each thread's
   * alternate signal stack at thread exit and asks for its parent when it
   * reports */
  if (!rc)
    rc = allow(ctx, "sigaltstack");
  if (!rc)
    rc = allow(ctx, "getppid");
#endif
  /* NUMA placement (OpenBLAS/oneDNN try mbind on big buffers): "no NUMA
   * support" is a normal answer, no need to expose the mempolicy code */
  static const char *const enosys[] = {
      "mbind", "get_mempolicy", "set_mempolicy", "set_mempolicy_home_node"};
  for (size_t i = 0; !rc && i < sizeof(enosys) / sizeof(enosys[0]); i++) {
    int nr = seccomp_syscall_resolve_name(enosys[i]);
    if (nr != __NR_SCMP_ERROR)
      rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
  }
  /* read-only opens (Landlock and the read-only root decide what exists) */
  const uint64_t omask = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND | O_TMPFILE;
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
                          SCMP_A2(SCMP_CMP_MASKED_EQ, omask, O_RDONLY));
  /* getrlimit through prlimit64(0, res, NULL, old): never a new limit */
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2,
                          SCMP_A0(SCMP_CMP_EQ, 0, 0),
                          SCMP_A2(SCMP_CMP_EQ, 0, 0));
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                          SCMP_A0(SCMP_CMP_EQ, PR_GET_SECCOMP, 0));
  if (rc) {
    seccomp_release(ctx);
    return rc;
  }
  *out = ctx;
  return 0;
}

int sbx_sandbox_filter_compile(void **prog, size_t *len) {
  *prog = NULL;
  *len = 0;
  scmp_filter_ctx ctx;
  int rc = build_filter(&ctx);
  if (rc)
    return rc;
  int fd = memfd_create("aisbx-filter", MFD_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    seccomp_release(ctx);
    return rc;
  }
  rc = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  off_t n = rc ? -1 : lseek(fd, 0, SEEK_END);
  if (!rc && (n <= 0 || n % (off_t)sizeof(struct sock_filter) ||
              n / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS))
    rc = -EINVAL;
  void *b = rc ? NULL : malloc((size_t)n);
  if (!rc && !b)
    rc = -ENOMEM;
  if (!rc && pread(fd, b, (size_t)n, 0) != n)
    rc = -EIO;
  close(fd);
  if (rc) {
    free(b);
    return rc;
  }
  *prog = b;
  *len = (size_t)n;
  return 0;
}

/* Loads the allow-list on every thread: the supervisor's precompiled
 * program when given (same bytes libseccomp would load), else compiled
 * here with libseccomp. */
static int load_seccomp(const sbx_sandbox_params *p) {
  if (!p->filter) {
    scmp_filter_ctx ctx;
    int rc = build_filter(&ctx);
    if (rc)
      return rc;
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    return rc;
  }
  size_t n = p->filter_len / sizeof(struct sock_filter);
  if (!n || n > BPF_MAXINSNS || p->filter_len % sizeof(struct sock_filter))
    return -EINVAL;
  struct sock_fprog fp = {(unsigned short)n, (struct sock_filter *)p->filter};
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                   SECCOMP_FILTER_FLAG_TSYNC, &fp);
  if (r < 0)
    return -errno;
  return r == 0 ? 0 : -EAGAIN; /* r > 0: a thread could not be synced */
}

int sbx_sandbox_seal(const sbx_sandbox_params *p, sbx_sandbox_state *st) {
  int rc = 0;
  const char *what = "";
  rlim_t as = RLIM_INFINITY;
  st->memcap = p->memcap;
  if (p->mem_bytes &&
      (p->memcap == SBX_MEMCAP_RLIMIT_AS || p->memcap == SBX_MEMCAP_NONE)) {
    as = p->mem_bytes;
    st->memcap = SBX_MEMCAP_RLIMIT_AS;
  } else if (p->mem_bytes) {
    as = p->mem_bytes * 2 + ((rlim_t)1 << 30); /* backstop behind the cgroup */
  }
  if (!rc && (rc = set_limit(RLIMIT_CORE, 0)))
    what = "CORE";
  if (!rc && (rc = set_limit(RLIMIT_FSIZE, 0)))
    what = "FSIZE";
  if (!rc && (rc = set_limit(RLIMIT_NOFILE, p->max_files ? p->max_files : 16)))
    what = "NOFILE";
  if (!rc && (rc = set_limit(RLIMIT_NPROC, 0)))
    what = "NPROC";
  if (!rc && p->cpu_seconds &&
      (rc = set_limit2(RLIMIT_CPU, p->cpu_seconds, p->cpu_seconds + 1)))
    what = "CPU";
#if SBX_ASAN_BUILD
  /* AddressSanitizer reserves terabytes of shadow memory at start-up: any
   * address-space limit would make its next mapping fail. Sanitizer builds
   * (tests only) keep the cgroup cap, when there is one, and say so. */
  if (as != RLIM_INFINITY) {
    logf_(p, SBX_LOG_WARN,
          "rlimits: RLIMIT_AS not set in an AddressSanitizer build");
    as = RLIM_INFINITY;
    if (st->memcap == SBX_MEMCAP_RLIMIT_AS)
      st->memcap = SBX_MEMCAP_NONE;
  }
#endif
  if (!rc && as != RLIM_INFINITY && (rc = set_limit(RLIMIT_AS, as)))
    what = "AS";
  if (rc) {
    logf_(p, SBX_LOG_ERROR, "rlimits: cannot set RLIMIT_%s: %s", what,
          strerror(-rc));
    return rc;
  }
  st->rlimits = 1;
  logf_(p, SBX_LOG_INFO,
        "rlimits: AS %s%llu MiB, CPU %u s (hard +1), NOFILE %u, FSIZE 0, NPROC "
        "0%s, CORE "
        "0 (verified); "
        "memory cap by %s",
        as == RLIM_INFINITY ? "unlimited " : "",
        as == RLIM_INFINITY ? 0ULL : (unsigned long long)(as >> 20),
        p->cpu_seconds, p->max_files ? p->max_files : 16,
        st->outer_uid == 0 ? " (does not bind root)" : "",
        sbx_memcap_name(st->memcap));

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = sigsys_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  g_on_forbidden = p->on_forbidden;
  if (sigaction(SIGSYS, &sa, NULL) != 0)
    return -errno;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = sigxcpu_handler;
  sigemptyset(&sa.sa_mask);
  g_on_cpu_limit = p->on_cpu_limit;
  if (sigaction(SIGXCPU, &sa, NULL) != 0)
    return -errno;
  if ((rc = load_seccomp(p))) {
    logf_(p, SBX_LOG_ERROR, "seccomp: cannot load the filter: %s",
          strerror(-rc));
    return rc;
  }
  if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) {
    logf_(p, SBX_LOG_ERROR, "seccomp: filter not in force");
    return -EPERM;
  }
  st->seccomp = 1;
  logf_(p, SBX_LOG_INFO,
        "seccomp: allow-list in force on every thread (other architectures "
        "killed, any other syscall fatal; clone for threads only; %s)",
        p->filter ? "compiled once by the supervisor" : "compiled here");
  return 0;
}

void sbx_sandbox_describe(const sbx_sandbox_state *st, char *out, size_t n) {
  char ns[128] = "";
  for (int i = 0; i < N_NS; i++)
    if (st->namespaces & (unsigned)ns_table[i].bit) {
      strncat(ns, ns[0] ? "," : "", sizeof(ns) - strlen(ns) - 1);
      strncat(ns, ns_table[i].name, sizeof(ns) - strlen(ns) - 1);
    }
  snprintf(out, n,
           "namespaces=%s root=%s landlock=%d no_new_privs=%d caps=%s "
           "rlimits=%d seccomp=%d "
           "memcap=%s",
           ns[0] ? ns : "none", st->pivoted ? "empty-tmpfs" : "host",
           st->landlock_abi, st->no_new_privs,
           st->caps_dropped ? "none" : "kept", st->rlimits, st->seccomp,
           sbx_memcap_name(st->memcap));
}

void sbx_syscall_name(int nr, char *out, size_t n) {
  char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  snprintf(out, n, "%s", s ? s : "?");
  free(s);
}
