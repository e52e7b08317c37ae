/*
 * keyfile.c - sealed private-key files in the data dir. See keyfile.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyfile.h"

#include "log.h"

#define KEYFILE_MAX (128 * 1024)

/* Reads a whole small file (at most KEYFILE_MAX) into a malloc'd buffer
 * with a NUL after it. */
static int slurp(const char *path, uint8_t **out, size_t *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO;
  uint8_t *b = malloc(KEYFILE_MAX + 1);
  size_t got = 0;
  int rc = b ? SBX_OK : SBX_ENOMEM;
  while (!rc && got < KEYFILE_MAX) {
    ssize_t r = read(fd, b + got, KEYFILE_MAX - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      rc = SBX_EIO;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  if (!rc && got == KEYFILE_MAX)
    rc = SBX_ELIMIT;
  if (rc) {
    if (b)
      sbx_memwipe(b, got);
    free(b);
    return rc;
  }
  b[got] = 0;
  *out = b;
  *n = got;
  return SBX_OK;
}

/* Writes a new file (O_EXCL, mode 0600) and fsyncs it and its directory. */
static int write_new(const char *dir, const char *path, const void *data,
                     size_t n) {
  int fd =
      open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return errno == EEXIST ? SBX_EEXIST : SBX_EIO;
  int rc = (write(fd, data, n) == (ssize_t)n && !fsync(fd)) ? SBX_OK : SBX_EIO;
  close(fd);
  if (rc) {
    unlink(path);
    return rc;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return SBX_OK;
}

int sbx__keyfile_create(sbx_kek *kek, const char *dir, const char *sealed_name,
                        const char *ctx, const void *pem, size_t n) {
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, sealed_name) >=
      sizeof path)
    return SBX_EINVAL;
  uint8_t *b = NULL;
  size_t bn = 0;
  int rc = sbx_kek_seal_blob(kek, ctx, pem, n, &b, &bn);
  if (!rc)
    rc = write_new(dir, path, b, bn);
  free(b);
  return rc;
}

int sbx__keyfile_load(sbx_kek *kek, const char *dir, const char *sealed_name,
                      const char *plain_name, const char *ctx, char **pem,
                      size_t *n) {
  *pem = NULL;
  *n = 0;
  char path[4096], plain[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, sealed_name) >=
          sizeof path ||
      (size_t)snprintf(plain, sizeof plain, "%s/%s", dir, plain_name) >=
          sizeof plain)
    return SBX_EINVAL;
  uint8_t *b = NULL;
  size_t bn = 0;
  int rc = slurp(path, &b, &bn);
  if (!rc) {
    uint8_t *pt = NULL;
    rc = sbx_kek_open_blob(kek, ctx, b, bn, &pt, n);
    free(b);
    if (rc) {
      sbx__log("%s: cannot be opened with the master key: %s", path,
               sbx_strerror(rc));
      return rc;
    }
    *pem = (char *)pt;
    return SBX_OK;
  }
  if (rc != SBX_ENOTFOUND)
    return rc;
  /* upgrade: a plain PEM of an older version */
  rc = slurp(plain, &b, &bn);
  if (rc)
    return rc;
  rc = sbx__keyfile_create(kek, dir, sealed_name, ctx, b, bn);
  if (rc) {
    sbx_memwipe(b, bn);
    free(b);
    sbx__log("%s: sealing it into %s failed: %s", plain, path,
             sbx_strerror(rc));
    return rc;
  }
  if (unlink(plain))
    sbx__log("warning: %s was sealed into %s but could not be removed: "
             "remove it",
             plain, path);
  else
    sbx__log("upgrade: the plain PEM %s was sealed under the master key into "
             "%s and removed",
             plain, path);
  *pem = (char *)b;
  *n = bn;
  return SBX_OK;
}
