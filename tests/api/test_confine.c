/*
 * test_confine.c - issue 12 item 8: aisbxd confined like its workers
 * (src/server/confine.c, docs/security.md "Server confinement").
 *   status_shows_confinement  a running aisbxd's /proc/<pid>/status, and
 *                             every thread's: Seccomp 2, NoNewPrivs 1, no
 *                             capability, and (run as root, as CI does) a
 *                             non-root uid; it still serves the API
 *   run_as_user_and_off       run_as_user picks the uid; confine = off is
 *                             visibly off (the checks above can fail)
 *   forbidden_syscall_kills   confine_probe (a test build's helper calling
 *                             the same start/confine path) dies by SIGSYS
 *                             when it calls execve
 *   landlock_hides_files      confine_probe: /etc/shadow, /etc/passwd and a
 *                             world-readable file outside its dirs -> EACCES;
 *                             a file in the data dir can be created
 *
 * usage: test_confine AISBXD CONFINE_PROBE
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pwd.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "api_testutil.h"
#include "harness.h"

static char g_root[64];
static const char *g_probe;

/* The value of "Key:" in a /proc status file (first field) into out;
 * 0 when found. */
static int status_field(const char *path, const char *key, char *out,
                        size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[256];
  size_t k = strlen(key);
  int rc = -1;
  while (rc && fgets(line, sizeof line, f))
    if (!strncmp(line, key, k) && line[k] == ':') {
      char *v = line + k + 1;
      v += strspn(v, " \t");
      v[strcspn(v, " \t\n")] = 0;
      snprintf(out, cap, "%s", v);
      rc = 0;
    }
  fclose(f);
  return rc;
}

/* Checks one status file: seccomp filter mode, no_new_privs, no
 * capabilities; the real/effective/saved/fs uids into uids[4]. */
static void check_status(const char *path, unsigned uids[4]) {
  char v[64];
  CHECK(!status_field(path, "Seccomp", v, sizeof v) && !strcmp(v, "2"));
  CHECK(!status_field(path, "NoNewPrivs", v, sizeof v) && !strcmp(v, "1"));
  CHECK(!status_field(path, "CapEff", v, sizeof v) &&
        !strcmp(v, "0000000000000000"));
  CHECK(!status_field(path, "CapPrm", v, sizeof v) &&
        !strcmp(v, "0000000000000000"));
  CHECK(!status_field(path, "CapBnd", v, sizeof v));
  FILE *f = fopen(path, "r");
  char line[256];
  memset(uids, 0xff, 4 * sizeof *uids);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "Uid:", 4))
      sscanf(line + 4, "%u %u %u %u", &uids[0], &uids[1], &uids[2], &uids[3]);
  if (f)
    fclose(f);
}

/* A fresh data dir under g_root initialised by `aisbxd init`, its config
 * (extra lines may be NULL), the admin key into key. */
static int fresh(const char *name, const char *extra, char *dir, char *cfg,
                 char key[200]) {
  char boot[200];
  snprintf(dir, 256, "%s/%s", g_root, name);
  snprintf(cfg, 256, "%s/%s.conf", g_root, name);
  api_write_config(cfg, extra);
  return api_init_tenant(dir, cfg, "t1", key, boot);
}

TEST(status_shows_confinement) {
  char dir[256], cfg[256], key[200];
  CHECK_EQ_INT(fresh("d1", NULL, dir, cfg, key), 0);
  srv s;
  CHECK_EQ_INT(api_start(&s, dir, cfg), 0);
  if (!s.pid)
    return;
  char path[128];
  unsigned uids[4];
  snprintf(path, sizeof path, "/proc/%d/status", (int)s.pid);
  check_status(path, uids);
  if (getuid() == 0) /* root in CI: the server must not stay root */
    CHECK(uids[0] && uids[1] && uids[2] && uids[3] && uids[0] != ~0u);
  /* every thread (seccomp TSYNC, no_new_privs and the uid everywhere) */
  snprintf(path, sizeof path, "/proc/%d/task", (int)s.pid);
  DIR *d = opendir(path);
  int threads = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char tp[420];
    unsigned tu[4];
    snprintf(tp, sizeof tp, "%s/%s/status", path, e->d_name);
    check_status(tp, tu);
    CHECK(tu[1] == uids[1]);
    threads++;
  }
  if (d)
    closedir(d);
  CHECK(threads > 1); /* MHD's threads are there and were checked */
  /* and it still does its job */
  resp r;
  req_opts o = {key, NULL, NULL, 0, NULL, 0, 0};
  CHECK_EQ_INT(http(&s, "GET", "/api/v1/me", &o, &r), 200);
  resp_free(&r);
  /* started as root it cannot reach its root-owned key files: live JWT
   * and master-key rotation say so (409) instead of failing (500) */
  if (getuid() == 0) {
    CHECK_EQ_INT(http(&s, "POST", "/api/v1/admin/jwt-key/rotate", &o, &r), 409);
    CHECK(r.body && strstr(r.body, "aisbxd admin rotate-jwt-key"));
    resp_free(&r);
    CHECK_EQ_INT(http(&s, "POST", "/api/v1/admin/master-key/rotate", &o, &r),
                 409);
    resp_free(&r);
  }
  CHECK_EQ_INT(api_stop(&s), 0);
}

TEST(run_as_user_and_off) {
  char dir[256], cfg[256], key[200], path[64], v[64];
  if (getuid() == 0 && getpwnam("daemon")) {
    CHECK_EQ_INT(fresh("d2", "run_as_user = daemon\n", dir, cfg, key), 0);
    srv s;
    CHECK_EQ_INT(api_start(&s, dir, cfg), 0);
    snprintf(path, sizeof path, "/proc/%d/status", (int)s.pid);
    unsigned uids[4];
    check_status(path, uids);
    CHECK(uids[0] == getpwnam("daemon")->pw_uid &&
          uids[2] == getpwnam("daemon")->pw_uid);
    CHECK_EQ_INT(api_stop(&s), 0);
  }
  /* confine = off: the debugging switch really switches everything off */
  CHECK_EQ_INT(fresh("d3", "confine = off\n", dir, cfg, key), 0);
  srv s;
  CHECK_EQ_INT(api_start(&s, dir, cfg), 0);
  snprintf(path, sizeof path, "/proc/%d/status", (int)s.pid);
  CHECK(!status_field(path, "Seccomp", v, sizeof v) && !strcmp(v, "0"));
  CHECK(!status_field(path, "Uid", v, sizeof v) &&
        (unsigned)atoi(v) == getuid());
  CHECK_EQ_INT(api_stop(&s), 0);
}

/* Runs confine_probe with args; its stdout+stderr into out (cap bytes);
 * returns the raw wait status. */
static int probe(const char *dir, const char *mode, const char *arg, char *out,
                 size_t cap) {
  int fds[2];
  if (pipe(fds))
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    execl(g_probe, g_probe, dir, mode, arg, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t n = 0;
  ssize_t k;
  while (n + 1 < cap && (k = read(fds[0], out + n, cap - 1 - n)) > 0)
    n += (size_t)k;
  out[n] = 0;
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return st;
}

TEST(forbidden_syscall_kills) {
  char dir[256], out[8192];
  snprintf(dir, sizeof dir, "%s/p1", g_root);
  int st = probe(dir, "exec", NULL, out, sizeof out);
  CHECK(strstr(out, "confined") != NULL); /* it got as far as the execve */
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
  CHECK(strstr(out, "forbidden system call 59") != NULL); /* execve */
  if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS))
    fprintf(stderr, "probe status %#x, output:\n%s\n", st, out);
}

TEST(landlock_hides_files) {
  char dir[256], outside[256], out[8192];
  snprintf(dir, sizeof dir, "%s/p2", g_root);
  /* readable by anyone, in a searchable directory: only Landlock can
   * refuse it to the confined server */
  snprintf(outside, sizeof outside, "%s/outside.txt", g_root);
  int fd = open(outside, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0 && write(fd, "x\n", 2) == 2);
  if (fd >= 0)
    close(fd);
  chmod(outside, 0644);
  int st = probe(dir, "files", outside, out, sizeof out);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK(strstr(out, "ok open(/etc/shadow) -> Permission denied") != NULL);
  CHECK(strstr(out, "ok open(/etc/passwd) -> Permission denied") != NULL);
  CHECK(strstr(out, "ok create") != NULL);
  if (!WIFEXITED(st) || WEXITSTATUS(st))
    fprintf(stderr, "probe status %#x, output:\n%s\n", st, out);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s AISBXD CONFINE_PROBE\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  g_probe = argv[2];
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(g_root, sizeof g_root, "/tmp/sbx_confine_XXXXXX");
  /* searchable (not listable) by the unprivileged user aisbxd becomes */
  if (!mkdtemp(g_root) || chmod(g_root, 0711))
    return 1;
  RUN(status_shows_confinement);
  RUN(run_as_user_and_off);
  RUN(forbidden_syscall_kills);
  RUN(landlock_hides_files);
  curl_global_cleanup();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
  if (system(cmd)) {
  }
  return harness_report();
}
