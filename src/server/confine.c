/*
 * confine.c - aisbxd confined like its workers (confine.h): unprivileged
 * user, no_new_privs, no capabilities, Landlock, a seccomp allow-list.
 * Model: OpenSSH's sandbox-seccomp-filter.c (allow-list, architecture
 * check) and src/sandbox/sandbox.c (the runner's layers). docs/security.md
 * "Server confinement" says what each layer stops.
 */
#define _GNU_SOURCE
#include "confine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "sbx/sandbox.h"
#include "state.h"

#if defined(__SANITIZE_ADDRESS__)
#define CONFINE_SANITIZER 1 /* ASan/LSan runtime: see extra_sanitizer[] */
#else
#define CONFINE_SANITIZER 0
#endif

int sbx__confine_mode(const sbx_server_params *p) {
  if (!p->confine || !strcmp(p->confine, "off"))
    return 0;
  if (!strcmp(p->confine, "on"))
    return 1;
  sbx__log("confine must be on or off, not '%s'", p->confine);
  return SBX_EINVAL;
}

/* ---- the user ---- */

typedef struct run_as {
  uid_t uid;
  gid_t gid;
  char name[64];
} run_as;

/* run_as_user, else "aisbxd" when that user exists, else "nobody". Never
 * root. */
static int resolve_user(const sbx_server_params *p, run_as *u) {
  const char *name = p->run_as_user && *p->run_as_user ? p->run_as_user : NULL;
  struct passwd *pw = name ? getpwnam(name) : getpwnam("aisbxd");
  if (!name && !pw)
    pw = getpwnam("nobody");
  if (!pw) {
    sbx__log("confine: run_as_user %s: no such user",
             name ? name : "aisbxd/nobody");
    return SBX_ENOTFOUND;
  }
  if (pw->pw_uid == 0 || pw->pw_gid == 0) {
    sbx__log("confine: run_as_user %s is root: refused", pw->pw_name);
    return SBX_EINVAL;
  }
  u->uid = pw->pw_uid;
  u->gid = pw->pw_gid;
  snprintf(u->name, sizeof u->name, "%s", pw->pw_name);
  return SBX_OK;
}

static uid_t g_chown_uid;
static gid_t g_chown_gid;
static int g_chown_err;

/* 1 for the key material at the top of the data dir (master.key, the TLS
 * and JWT keys, sealed or not, the certificate, master-key.spec): read
 * before the drop only, so it keeps its owner (root, 0600) and the
 * confined server cannot even read it (the master key loader also wants
 * its file owned by the user that starts aisbxd). */
static int start_only_file(const char *path, int level) {
  static const char *const ext[] = {".key", ".pem", ".sealed", ".spec"};
  size_t n = strlen(path);
  for (size_t i = 0; level == 1 && i < sizeof ext / sizeof ext[0]; i++) {
    size_t k = strlen(ext[i]);
    if (n > k && !strcmp(path + n - k, ext[i]))
      return 1;
  }
  return 0;
}

/* nftw callback: lchown one entry (symlinks themselves, never targets). */
static int chown_one(const char *path, const struct stat *sb, int type,
                     struct FTW *ftw) {
  if (type == FTW_F && start_only_file(path, ftw->level))
    return 0;
  if ((sb->st_uid != g_chown_uid || sb->st_gid != g_chown_gid) &&
      lchown(path, g_chown_uid, g_chown_gid))
    g_chown_err = errno;
  return 0;
}

/* Chowns the tree under dir to u (one filesystem, symlinks not followed). */
static int chown_tree(const char *dir, const run_as *u) {
  g_chown_uid = u->uid;
  g_chown_gid = u->gid;
  g_chown_err = 0;
  if (nftw(dir, chown_one, 16, FTW_PHYS | FTW_MOUNT) || g_chown_err) {
    sbx__log("confine: chown %s to %s: %s", dir, u->name,
             strerror(g_chown_err ? g_chown_err : errno));
    return SBX_EIO;
  }
  return SBX_OK;
}

/* A file the confined server appends to (log_file, audit_anchor_file):
 * created when missing and given to u, so that it stays writable. */
static int own_file(const char *path, const run_as *u) {
  if (!path || !*path)
    return SBX_OK;
  int fd =
      open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  int rc = fd >= 0 && !fchown(fd, u->uid, u->gid) ? SBX_OK : SBX_EIO;
  if (rc)
    sbx__log("confine: %s: cannot give it to %s: %s", path, u->name,
             strerror(errno));
  if (fd >= 0)
    close(fd);
  return rc;
}

int sbx__confine_own_data_dir(const sbx_server_params *p) {
  int on = sbx__confine_mode(p);
  if (on <= 0 || geteuid() != 0)
    return on < 0 ? on : SBX_OK;
  run_as u;
  int rc = resolve_user(p, &u);
  return rc ? rc : chown_tree(p->data_dir, &u);
}

/* The listen port (0 when unknown or "any"). */
static unsigned listen_port(const char *listen) {
  const char *c = listen ? strrchr(listen, ':') : NULL;
  return c ? (unsigned)strtoul(c + 1, NULL, 10) : 0;
}

/* Number of threads of this process (/proc/self/task entries). */
static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* Sets the capability sets of this thread: effective = permitted = keep
 * (0 or 1 << CAP_NET_BIND_SERVICE), inheritable empty; verified. */
static int set_caps(uint64_t keep) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  d[0].effective = d[0].permitted = (uint32_t)keep;
  if (syscall(SYS_capset, &h, d))
    return -errno;
  memset(d, 0xff, sizeof d);
  if (syscall(SYS_capget, &h, d))
    return -errno;
  if (d[0].effective != (uint32_t)keep || d[0].permitted != (uint32_t)keep ||
      d[0].inheritable || d[1].effective || d[1].permitted || d[1].inheritable)
    return -EPERM;
  return 0;
}

/* Drops groups, gid and uid to u. With keep_saved_root the saved uid stays
 * 0 (so that CAP_NET_BIND_SERVICE survives until sbx__confine_seal). */
static int drop_user(const run_as *u, int keep_saved_root) {
  if (initgroups(u->name, u->gid) || setresgid(u->gid, u->gid, u->gid))
    return -errno;
  if (setresuid(u->uid, u->uid, keep_saved_root ? 0 : u->uid))
    return -errno;
  uid_t r, e, sv;
  gid_t gr, ge, gs;
  if (getresuid(&r, &e, &sv) || getresgid(&gr, &ge, &gs) || r != u->uid ||
      e != u->uid || (!keep_saved_root && sv != u->uid) || gr != u->gid ||
      ge != u->gid || gs != u->gid)
    return -EPERM;
  if (!keep_saved_root && setuid(0) == 0) /* must be impossible now */
    return -EPERM;
  return 0;
}

/* ---- Landlock ---- */

/* attributes up to ABI 6 (the system header may be older) */
struct ll_attr {
  uint64_t fs, net, scoped;
};

#define LL_RD LANDLOCK_ACCESS_FS_READ_FILE
#define LL_RDDIR (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_APPEND                                                              \
  (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |              \
   LANDLOCK_ACCESS_FS_MAKE_REG)
#define LL_RW                                                                  \
  (LL_RDDIR | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |  \
   LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_DIR |              \
   LANDLOCK_ACCESS_FS_MAKE_REG)
#define LL_FILE_RIGHTS                                                         \
  (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE |                 \
   LANDLOCK_ACCESS_FS_WRITE_FILE | (1ULL << 14) /* TRUNCATE */ |               \
   (1ULL << 15) /* IOCTL_DEV */)

typedef struct ll_ctx {
  int fd;
  long abi;
  uint64_t handled;
  int rules;
} ll_ctx;

/* Allows `access` beneath path (a directory) or on path (a file; rights
 * that only apply to directories are dropped). A missing path is skipped. */
static int ll_allow(ll_ctx *l, const char *path, uint64_t access) {
  if (!path || !*path)
    return 0;
  struct landlock_path_beneath_attr pb = {0};
  pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
  if (pb.parent_fd < 0)
    return errno == ENOENT || errno == ENOTDIR || errno == EACCES ? 0 : -errno;
  struct stat sb;
  if (fstat(pb.parent_fd, &sb)) {
    close(pb.parent_fd);
    return -errno;
  }
  if ((access & LANDLOCK_ACCESS_FS_WRITE_FILE) && l->abi >= 3)
    access |= 1ULL << 14; /* TRUNCATE with WRITE_FILE (ABI 3) */
  if ((access & LANDLOCK_ACCESS_FS_MAKE_REG) && l->abi >= 2)
    access |= 1ULL << 13; /* REFER: renames inside the tree (ABI 2) */
  if (!S_ISDIR(sb.st_mode))
    access &= LL_FILE_RIGHTS;
  pb.allowed_access = access & l->handled;
  int rc = 0;
  if (pb.allowed_access &&
      syscall(SYS_landlock_add_rule, l->fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0))
    rc = -errno;
  else
    l->rules++;
  close(pb.parent_fd);
  return rc;
}

/* The directory part of a file path into out ("." when none). */
static void dir_of(const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s", path);
  char *sl = strrchr(out, '/');
  if (sl == out)
    out[1] = 0;
  else if (sl)
    *sl = 0;
  else
    snprintf(out, cap, ".");
}

/* SoftHSM's token directory (directories.tokendir of $SOFTHSM2_CONF or
 * /etc/softhsm/softhsm2.conf) into out; 0 when found. */
static int softhsm_tokendir(char *out, size_t cap) {
  const char *conf = getenv("SOFTHSM2_CONF");
  FILE *f = fopen(conf ? conf : "/etc/softhsm/softhsm2.conf", "re");
  if (!f)
    return -1;
  char line[1200];
  int rc = -1;
  while (rc && fgets(line, sizeof line, f)) {
    char *k = line + strspn(line, " \t");
    if (strncmp(k, "directories.tokendir", 20))
      continue;
    char *v = strchr(k, '=');
    if (!v)
      continue;
    v += 1 + strspn(v + 1, " \t");
    v[strcspn(v, " \t\r\n")] = 0;
    snprintf(out, cap, "%s", v);
    rc = *out ? 0 : -1;
  }
  fclose(f);
  return rc;
}

/* The Landlock domain of the server (every filesystem right handled; the
 * rules below are all it may touch after confinement). */
static int landlock(sbx_server *s, long *abi_out, int *rules_out) {
  ll_ctx l = {-1, 0, 0, 0};
  l.abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
                  LANDLOCK_CREATE_RULESET_VERSION);
  if (l.abi < 1) {
    sbx__log("confine: Landlock not available (%s): the filesystem is "
             "limited by the user's permissions only",
             strerror(errno));
    *abi_out = 0;
    return 0;
  }
  struct ll_attr a = {0, 0, 0};
  a.fs = (1ULL << 13) - 1; /* ABI 1: EXECUTE .. MAKE_SYM */
  if (l.abi >= 2)
    a.fs |= 1ULL << 13; /* REFER */
  if (l.abi >= 3)
    a.fs |= 1ULL << 14; /* TRUNCATE */
  if (l.abi >= 5)
    a.fs |= 1ULL << 15; /* IOCTL_DEV */
  size_t size = 8;
  if (l.abi >= 6) { /* signals and abstract unix sockets: own domain only */
    a.scoped = 3;
    size = 24;
  }
  l.handled = a.fs;
  l.fd = (int)syscall(SYS_landlock_create_ruleset, &a, size, 0);
  if (l.fd < 0)
    return -errno;
  char dir[SBX_PATH_MAX + 8];
  int rc = ll_allow(&l, s->data_dir, LL_RW);
  if (!rc && s->p.log_file) {
    dir_of(s->p.log_file, dir, sizeof dir); /* reopen after logrotate; */
    /* size-based rotation renames and removes files in it (same dir) */
    rc = ll_allow(&l, dir, LL_APPEND | LANDLOCK_ACCESS_FS_REMOVE_FILE);
  }
  if (!rc && s->p.audit_anchor_file) {
    dir_of(s->p.audit_anchor_file, dir, sizeof dir);
    rc = ll_allow(&l, dir, LL_APPEND);
  }
  if (!rc && !strncmp(s->master_spec, "pkcs11:", 7) &&
      !softhsm_tokendir(dir, sizeof dir)) /* SoftHSM's lock + object files */
    rc = ll_allow(&l, dir, LL_RW);
  /* libcurl (OIDC): CA certificates, name resolution; read-only */
  static const char *const ro[] = {
      "/etc/ssl/certs",       "/usr/share/ca-certificates",
      "/etc/ca-certificates", "/etc/resolv.conf",
      "/etc/hosts",           "/etc/nsswitch.conf",
      "/etc/host.conf",       "/etc/gai.conf",
      "/etc/services",        "/dev/urandom",
      "/proc/self",           "/sys/devices/system/cpu"};
  for (size_t i = 0; !rc && i < sizeof ro / sizeof ro[0]; i++)
    rc = ll_allow(&l, ro[i], LL_RDDIR);
  if (!rc)
    rc = ll_allow(&l, s->p.oidc_ca_file, LL_RD);
  if (!rc) /* syslog forwarding: the receiver's CA, read at each connect */
    rc = ll_allow(&l, s->p.syslog_ca_file, LL_RD);
  if (!rc)
    rc = ll_allow(&l, "/dev/null", LL_RD | LANDLOCK_ACCESS_FS_WRITE_FILE);
  if (!rc && syscall(SYS_landlock_restrict_self, l.fd, 0))
    rc = -errno;
  close(l.fd);
  if (rc)
    return rc;
  /* verified: the root directory and /etc/passwd are out of reach */
  int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
  if (fd >= 0 || errno != EACCES) {
    if (fd >= 0)
      close(fd);
    return -EPERM;
  }
  *abi_out = l.abi;
  *rules_out = l.rules;
  return 0;
}

/* ---- enter ---- */

int sbx__confine_enter(sbx_server *s) {
  int on = sbx__confine_mode(&s->p);
  if (on <= 0) {
    if (!on)
      sbx__log("warning: confinement is off (confine = off): no uid drop, "
               "no Landlock, no seccomp");
    return on;
  }
  if (thread_count() != 1) {
    sbx__log("confine: the process already runs %d threads (Landlock and "
             "no_new_privs must come first)",
             thread_count());
    return SBX_EINVAL;
  }
  int rc = SBX_OK;
  s->confine.low_port = 0;
  if (geteuid() == 0) {
    run_as u;
    rc = resolve_user(&s->p, &u);
    if (!rc)
      rc = chown_tree(s->data_dir, &u);
    if (!rc)
      rc = own_file(s->p.log_file, &u);
    if (!rc)
      rc = own_file(s->p.audit_anchor_file, &u);
    if (rc)
      return rc;
    unsigned port = listen_port(s->p.listen);
    s->confine.low_port = port > 0 && port < 1024;
    /* the bounding set (per thread; threads started later inherit it) */
    for (int c = 0; c < 64; c++) {
      if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0)
        break;
      if (!(s->confine.low_port && c == CAP_NET_BIND_SERVICE))
        prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    int e = drop_user(&u, s->confine.low_port);
    if (e) {
      sbx__log("confine: cannot become %s: %s", u.name, strerror(-e));
      return SBX_EPERM;
    }
    s->confine.uid = u.uid;
    snprintf(s->confine.user, sizeof s->confine.user, "%s", u.name);
    /* the data dir must be reachable for the user: every parent directory
     * searchable (a private 0700 parent is the usual mistake) */
    if (access(s->data_dir, R_OK | W_OK | X_OK)) {
      sbx__log("confine: run_as_user %s cannot use the data dir %s (%s): "
               "every parent directory must be searchable by it (chmod o+x)",
               u.name, s->data_dir, strerror(errno));
      return SBX_EPERM;
    }
  } else {
    s->confine.uid = geteuid();
    struct passwd *pw = getpwuid(geteuid());
    snprintf(s->confine.user, sizeof s->confine.user, "%s",
             pw ? pw->pw_name : "?");
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
      prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
    sbx__log("confine: no_new_privs: %s", strerror(errno));
    return SBX_EPERM;
  }
  int e = set_caps(s->confine.low_port ? 1ULL << CAP_NET_BIND_SERVICE : 0);
  if (e) {
    sbx__log("confine: capabilities: %s", strerror(-e));
    return SBX_EPERM;
  }
  long abi = 0;
  int rules = 0;
  if ((e = landlock(s, &abi, &rules))) {
    sbx__log("confine: Landlock: %s", strerror(-e));
    return SBX_EPERM;
  }
  s->confine.landlock_abi = (int)abi;
  s->confine.landlock_rules = rules;
  s->confine.entered = 1;
  return SBX_OK;
}

/* ---- seal: seccomp ---- */

/* SIGSYS from the filter: one line on stderr, then a second forbidden call
 * with SIGSYS blocked, which the kernel turns into death by SIGSYS. */
static void on_sigsys(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  char msg[96] = "aisbxd: confine: forbidden system call ";
  size_t n = strlen(msg);
  char num[16];
  int k = 0, nr = si->si_syscall;
  do
    num[k++] = (char)('0' + nr % 10);
  while ((nr /= 10) && k < 15);
  while (k)
    msg[n++] = num[--k];
  msg[n++] = '\n';
  ssize_t w = write(2, msg, n);
  (void)w;
  syscall(SYS_reboot, 0, 0, 0, NULL); /* never allowed: fatal */
  _exit(128 + SIGSYS);
}

/* Adds an unconditional allow rule by name (skipped when the name does not
 * exist on this architecture). */
static int allow(scmp_filter_ctx ctx, const char *name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR)
    return 0;
  return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
}

static int allow_list(scmp_filter_ctx ctx, const char *const *names, size_t n) {
  int rc = 0;
  for (size_t i = 0; !rc && i < n; i++)
    rc = allow(ctx, names[i]);
  return rc;
}

/* The server's allow-list: MHD (epoll threads, accept, TLS records over the
 * sockets), GnuTLS, libpq and libcurl (connect to the database / the
 * identity provider, curl's resolver thread), SQLite and the blob store
 * (files beneath the data dir: Landlock decides which), the log. */
static const char *const allowed[] = {
    /* memory */
    "brk", "munmap", "mremap", "madvise", "mincore",
    /* files (which ones: Landlock and the user's permissions) */
    "read", "readv", "pread64", "preadv", "preadv2", "write", "writev",
    "pwrite64", "pwritev", "pwritev2", "lseek", "close", "fstat", "newfstatat",
    "statx", "stat", "lstat", "fstatfs", "statfs", "openat", "open", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64", "mkdir",
    "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "fsync", "fdatasync", "ftruncate", "fallocate", "fcntl", "flock", "fchmod",
    "umask", "getcwd", "dup", "dup2", "dup3", "pipe2", "sendfile",
    "copy_file_range", "fadvise64",
    /* sockets: serving (MHD), the database, the identity provider */
    "accept", "accept4", "connect", "bind", "getsockname", "getpeername",
    "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown", "socketpair",
    /* waiting */
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
    "poll", "ppoll", "select", "pselect6", "eventfd2",
    /* threads */
    "futex", "set_robust_list", "rseq", "sched_yield", "sched_getaffinity",
    "getcpu", "membarrier", "exit", "exit_group", "gettid", "getpid",
    "wait4", /* the worker launcher, at stop */
    /* signals: masks, sigwait (SIGTERM/SIGHUP), returning from handlers */
    "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "restart_syscall",
    "sigaltstack",
    /* time, identity, randomness */
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
    "gettimeofday", "time", "getrandom", "uname", "sysinfo", "getrusage",
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getgroups"};

/* Only under ASan/LSan (-DADV_SANITIZE=ON): the leak check at exit stops
 * the world with a ptrace()ing helper made by clone(), and reports read
 * /proc/self/maps; signal handlers of the runtime. */
static const char *const extra_sanitizer[] = {"clone",
                                              "ptrace",
                                              "prctl",
                                              "rt_sigaction",
                                              "waitid",
                                              "kill",
                                              "getppid",
                                              "sched_getparam",
                                              "sched_getscheduler",
                                              "process_vm_readv",
                                              "getdents"};

static int load_seccomp(int *nrules) {
  scmp_filter_ctx ctx = sbx_seccomp_base(!CONFINE_SANITIZER);
  if (!ctx)
    return -ENOMEM;
  int rc = allow_list(ctx, allowed, sizeof allowed / sizeof allowed[0]);
  if (!rc && CONFINE_SANITIZER)
    rc = allow_list(ctx, extra_sanitizer,
                    sizeof extra_sanitizer / sizeof extra_sanitizer[0]);
  /* signals to our own threads only (MHD wakes its threads) */
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                          SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
  /* memory never becomes executable (no JIT here) */
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                          SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  /* sockets of these families only (no raw packet, no netlink audit...) */
  static const int fam[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
  for (size_t i = 0; !rc && i < sizeof fam / sizeof fam[0]; i++)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                          SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)fam[i]));
  /* ioctl: non-blocking/readable-bytes on sockets, isatty */
  static const unsigned long io[] = {FIONBIO, FIONREAD, FIOCLEX, TCGETS};
  for (size_t i = 0; !rc && i < sizeof io / sizeof io[0]; i++)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                          SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)io[i]));
  /* getrlimit through prlimit64(0, res, NULL, old): never a new limit */
  if (!rc)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2,
                          SCMP_A0(SCMP_CMP_EQ, 0), SCMP_A2(SCMP_CMP_EQ, 0));
  /* prctl: reading the filter mode, naming threads (MHD) */
  static const int pr[] = {PR_GET_SECCOMP, PR_SET_NAME, PR_GET_NAME};
  for (size_t i = 0; !rc && !CONFINE_SANITIZER && i < sizeof pr / sizeof pr[0];
       i++)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                          SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)pr[i]));
  if (!rc)
    rc = seccomp_load(ctx);
  *nrules = (int)(sizeof allowed / sizeof allowed[0]);
  seccomp_release(ctx);
  return rc;
}

/* 1 when every thread of this process has empty permitted and effective
 * capability sets (/proc/self/task/<tid>/status). */
static int all_threads_capless(void) {
  DIR *d = opendir("/proc/self/task");
  if (!d)
    return 0;
  int ok = 1;
  struct dirent *e;
  while (ok && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%.20s/status", e->d_name);
    FILE *f = fopen(path, "re");
    if (!f)
      continue; /* the thread ended */
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "CapPrm:", 7) || !strncmp(line, "CapEff:", 7))
        ok = ok && strtoull(line + 7, NULL, 16) == 0;
    fclose(f);
  }
  closedir(d);
  return ok;
}

int sbx__confine_seal(sbx_server *s) {
  if (!s->confine.entered)
    return SBX_OK;
  if (s->confine.low_port) {
    /* the listener is bound: the saved uid goes too, which clears every
     * capability of every thread (glibc applies setresuid to all) */
    uid_t u = (uid_t)s->confine.uid;
    if (setresuid(u, u, u) || set_caps(0)) {
      sbx__log("confine: final uid drop: %s", strerror(errno));
      return SBX_EPERM;
    }
  }
  if (!all_threads_capless()) {
    sbx__log("confine: a thread still holds capabilities");
    return SBX_EPERM;
  }
#if CONFINE_SANITIZER
  /* the setuid made us non-dumpable: LSan's ptrace of our threads needs it */
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, NULL))
    return SBX_EIO;
  int nrules = 0, e = load_seccomp(&nrules);
  if (e || prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 2) {
    sbx__log("confine: seccomp: %s", strerror(e ? -e : EPERM));
    return SBX_EPERM;
  }
  sbx__log("confined: user %s (uid %u), no_new_privs, no capabilities, "
           "Landlock ABI %d (%d rules), seccomp allow-list (%d system calls%s) "
           "on every thread",
           s->confine.user, (unsigned)s->confine.uid, s->confine.landlock_abi,
           s->confine.landlock_rules, nrules,
           CONFINE_SANITIZER ? " + the sanitizer runtime's" : "");
  return SBX_OK;
}
