/*
 * masterkey.c - master key sources: a 0600 file, an environment variable,
 * or an external KMS / secret-manager command. See sbx/crypto.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto_internal.h"

#define KEY_HEX_LEN (2 * SBX_KEY_LEN)
#define CMD_TIMEOUT_MS 30000
#define CMD_MAX_OUT 4096

/* Accepts 64 hex digits with optional trailing whitespace. */
static int key_from_text(const char *txt, size_t n, sbx_key *k) {
  while (n > 0 && (txt[n - 1] == '\n' || txt[n - 1] == '\r' ||
                   txt[n - 1] == ' ' || txt[n - 1] == '\t'))
    n--;
  int rc = sbx_unhex(txt, n, k->b, SBX_KEY_LEN);
  if (rc)
    sbx_key_wipe(k);
  return rc;
}

static int errno_status(int e) {
  switch (e) {
  case ENOENT:
  case ENOTDIR:
    return SBX_ENOTFOUND;
  case EACCES:
  case EPERM:
  case EROFS:
    return SBX_EPERM;
  case ENOMEM:
    return SBX_ENOMEM;
  case ENOSPC:
  case EDQUOT:
    return SBX_ENOSPC;
  case EEXIST:
    return SBX_EEXIST;
  default:
    return SBX_EIO;
  }
}

/* Reads a key file; allow_root: root may own it too (systemd credentials). */
static int load_file(const char *path, sbx_key *k, int allow_root) {
  if (!path || !k)
    return SBX_EINVAL;
  sbx_key_wipe(k);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno_status(errno);
  struct stat st;
  int rc = SBX_OK;
  char buf[KEY_HEX_LEN + 8];
  ssize_t got = 0;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    rc = SBX_EFORMAT;
    goto out;
  }
  /* a master key readable by group/other or owned by someone else is
   * refused, like ssh refuses a private key with loose permissions */
  if ((st.st_mode & 077) ||
      (st.st_uid != geteuid() && !(allow_root && st.st_uid == 0))) {
    rc = SBX_EPERM;
    goto out;
  }
  while ((size_t)got < sizeof buf) {
    ssize_t r = read(fd, buf + got, sizeof buf - (size_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = errno_status(errno);
      goto out;
    }
    if (r == 0)
      break;
    got += r;
  }
  if (got == SBX_KEY_LEN) /* raw binary key */
    memcpy(k->b, buf, SBX_KEY_LEN);
  else if ((size_t)got == sizeof buf)
    rc = SBX_EFORMAT;
  else
    rc = key_from_text(buf, (size_t)got, k);
out:
  sbx_memwipe(buf, sizeof buf);
  close(fd);
  if (rc)
    sbx_key_wipe(k);
  return rc;
}

int sbx_master_key_load_file(const char *path, sbx_key *k) {
  return load_file(path, k, 0);
}

int sbx_master_key_load_credential(const char *name, sbx_key *k) {
  if (!name || !k || !*name || strchr(name, '/') || !strcmp(name, "..") ||
      !strcmp(name, "."))
    return SBX_EINVAL;
  sbx_key_wipe(k);
  const char *dir = getenv("CREDENTIALS_DIRECTORY");
  if (!dir || !*dir)
    return SBX_ENOTFOUND;
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
    return SBX_EINVAL;
  return load_file(path, k, 1);
}

int sbx_master_key_load_env(const char *name, sbx_key *k) {
  if (!name || !k)
    return SBX_EINVAL;
  sbx_key_wipe(k);
  const char *v = getenv(name);
  if (!v)
    return SBX_ENOTFOUND;
  return key_from_text(v, strlen(v), k);
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int sbx_master_key_load_cmd(const char *command, sbx_key *k) {
  if (!command || !*command || !k)
    return SBX_EINVAL;
  sbx_key_wipe(k);
  int p[2];
  if (pipe2(p, O_CLOEXEC))
    return errno_status(errno);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    return errno_status(e);
  }
  if (pid == 0) {
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0)
      dup2(nul, 0);
    dup2(p[1], 1);
    execl("/bin/sh", "sh", "-c", command, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  char buf[CMD_MAX_OUT];
  size_t got = 0;
  int rc = SBX_OK;
  long long deadline = now_ms() + CMD_TIMEOUT_MS;
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) {
      rc = SBX_ETIMEDOUT;
      break;
    }
    struct pollfd pf = {p[0], POLLIN, 0};
    int pr = poll(&pf, 1, (int)left);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0) {
      rc = pr == 0 ? SBX_ETIMEDOUT : SBX_EIO;
      break;
    }
    ssize_t r = read(p[0], buf + got, sizeof buf - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = SBX_EIO;
      break;
    }
    if (r == 0)
      break;
    got += (size_t)r;
    if (got == sizeof buf) {
      rc = SBX_EFORMAT;
      break;
    }
  }
  close(p[0]);
  if (rc)
    kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (!rc && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
    rc = SBX_EAUTH; /* the KMS refused or failed */
  if (!rc)
    rc = key_from_text(buf, got, k);
  sbx_memwipe(buf, sizeof buf);
  if (rc)
    sbx_key_wipe(k);
  return rc;
}

int sbx_master_key_load(const char *spec, sbx_key *k) {
  if (!spec || !k)
    return SBX_EINVAL;
  if (!strncmp(spec, "file:", 5))
    return sbx_master_key_load_file(spec + 5, k);
  if (!strncmp(spec, "env:", 4))
    return sbx_master_key_load_env(spec + 4, k);
  if (!strncmp(spec, "cmd:", 4))
    return sbx_master_key_load_cmd(spec + 4, k);
  if (!strncmp(spec, "credential:", 11))
    return sbx_master_key_load_credential(spec + 11, k);
  sbx_key_wipe(k);
  return SBX_EINVAL;
}

int sbx_master_key_create_file(const char *path, sbx_key *out) {
  if (!path)
    return SBX_EINVAL;
  sbx_key k;
  char hex[KEY_HEX_LEN + 2];
  int rc = sbx_key_generate(&k);
  if (rc)
    return rc;
  int fd =
      open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    sbx_key_wipe(&k);
    return errno_status(errno);
  }
  sbx_hex(k.b, SBX_KEY_LEN, hex);
  hex[KEY_HEX_LEN] = '\n';
  size_t off = 0;
  while (off < KEY_HEX_LEN + 1) {
    ssize_t w = write(fd, hex + off, KEY_HEX_LEN + 1 - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      rc = errno_status(errno);
      break;
    }
    off += (size_t)w;
  }
  if (!rc && fchmod(fd, 0600)) /* umask cannot widen, but be explicit */
    rc = errno_status(errno);
  if (!rc && fsync(fd))
    rc = errno_status(errno);
  close(fd);
  sbx_memwipe(hex, sizeof hex);
  if (rc) {
    unlink(path);
    sbx_key_wipe(&k);
    return rc;
  }
  if (out)
    *out = k;
  sbx_key_wipe(&k);
  return SBX_OK;
}
