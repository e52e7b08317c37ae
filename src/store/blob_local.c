/*
 * blob_local.c - the local-directory blob backend.
 *
 *   <root>/objects/<tenant_id>/<object_id>   committed blobs (0600)
 *   <root>/tmp/<random>.part                 blobs being written
 *
 * Commit protocol: write temp, fsync(temp), renameat2(RENAME_NOREPLACE) to
 * the final name, fsync(tenant dir) [and fsync(objects/) when the tenant dir
 * was just created]. A crash leaves either no final file or a complete one.
 *
 * A store opened with backend SBX_BLOB_S3 forwards every call to s3.c.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "s3.h"
#include "sbx/blob.h"
#include "sbx/meta.h"

struct sbx_blob_store {
  char *root;
  int fsync;
  sbx_s3 *s3;  /* S3 backend (s3.c) when not NULL */
  sbx_err err; /* what the last failed call had to say (sbx_blob_err) */
};

struct sbx_blob_writer {
  sbx_blob_store *s;
  sbx_s3_writer *s3w;
  int fd;
  int status;
  char tenant[SBX_ID_MAX], object[SBX_ID_MAX];
  char tmp[PATH_MAX];
};

static int errno_status(int e) {
  switch (e) {
  case ENOENT:
  case ENOTDIR:
    return SBX_ENOTFOUND;
  case EACCES:
  case EPERM:
  case EROFS:
    return SBX_EPERM;
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
    return SBX_ENOSPC;
  case EEXIST:
  case ENOTEMPTY:
    return SBX_EEXIST;
  case ENOMEM:
    return SBX_ENOMEM;
  default:
    return SBX_EIO;
  }
}

/* Maps errno e to a status and describes the failure in *err. */
static int report(sbx_err *err, int e, const char *what, const char *path) {
  return sbx_err_set(err, errno_status(e), "blob: %s %s: %s", what, path,
                     strerror(e));
}

static int fsync_path(sbx_err *err, const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return report(err, errno, "open dir", dir);
  int rc = fsync(fd) ? report(err, errno, "fsync dir", dir) : SBX_OK;
  close(fd);
  return rc;
}

static int mkdir_p1(sbx_err *err, const char *path, int *created) {
  if (created)
    *created = 0;
  if (mkdir(path, 0700) == 0) {
    if (created)
      *created = 1;
    return SBX_OK;
  }
  if (errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
      return SBX_OK;
    return report(err, ENOTDIR, "mkdir", path);
  }
  return report(err, errno, "mkdir", path);
}

sbx_blob_params sbx_blob_default_params(void) {
  sbx_blob_params p;
  memset(&p, 0, sizeof p);
  p.backend = SBX_BLOB_LOCAL;
  p.fsync = 1;
  return p;
}

int sbx_blob_open(const sbx_blob_params *p, sbx_blob_store **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (p && p->backend == SBX_BLOB_S3) {
    sbx_blob_store *s = calloc(1, sizeof *s);
    int rc = s ? sbx_s3_open(p, &s->err, &s->s3) : SBX_ENOMEM;
    if (rc) {
      if (s && p->err)
        *p->err = s->err;
      free(s);
      return rc;
    }
    *out = s;
    return SBX_OK;
  }
  if (!p || p->backend != SBX_BLOB_LOCAL || !p->root || !*p->root)
    return SBX_EINVAL;
  char path[PATH_MAX];
  int rc = mkdir_p1(p->err, p->root, NULL);
  if (!rc) {
    snprintf(path, sizeof path, "%s/objects", p->root);
    rc = mkdir_p1(p->err, path, NULL);
  }
  if (!rc) {
    snprintf(path, sizeof path, "%s/tmp", p->root);
    rc = mkdir_p1(p->err, path, NULL);
  }
  if (!rc && access(path, W_OK) != 0)
    rc = report(p->err, errno, "access", path);
  if (rc)
    return rc;
  sbx_blob_store *s = calloc(1, sizeof *s);
  if (!s || !(s->root = strdup(p->root))) {
    free(s);
    return SBX_ENOMEM;
  }
  s->fsync = p->fsync;
  *out = s;
  return SBX_OK;
}

const sbx_err *sbx_blob_err(const sbx_blob_store *s) {
  static const sbx_err none = {0, ""};
  return s ? &s->err : &none;
}

void sbx_blob_close(sbx_blob_store *s) {
  if (!s)
    return;
  sbx_s3_close(s->s3);
  free(s->root);
  free(s);
}

int sbx_blob_local_path(sbx_blob_store *s, const char *tenant_id,
                        const char *object_id, char *out, size_t cap) {
  if (s->s3)
    return SBX_EUNSUPPORTED;
  if (!sbx_id_valid(tenant_id) || !sbx_id_valid(object_id))
    return SBX_EINVAL;
  int n = snprintf(out, cap, "%s/objects/%s/%s", s->root, tenant_id, object_id);
  return n < 0 || (size_t)n >= cap ? SBX_ELIMIT : SBX_OK;
}

int sbx_blob_writer_open(sbx_blob_store *s, const char *tenant_id,
                         const char *object_id, sbx_blob_writer **out) {
  *out = NULL;
  if (!s || !sbx_id_valid(tenant_id) || !sbx_id_valid(object_id))
    return SBX_EINVAL;
  sbx_err_clear(&s->err);
  sbx_blob_writer *w = calloc(1, sizeof *w);
  if (!w)
    return SBX_ENOMEM;
  w->s = s;
  if (s->s3) {
    int rc = sbx_s3_writer_open(s->s3, tenant_id, object_id, &w->s3w);
    if (rc)
      free(w);
    else
      *out = w;
    return rc;
  }
  snprintf(w->tenant, sizeof w->tenant, "%s", tenant_id);
  snprintf(w->object, sizeof w->object, "%s", object_id);
  uint8_t rnd[12];
  char hex[25];
  int rc = sbx_random(rnd, sizeof rnd);
  if (rc) {
    free(w);
    return rc;
  }
  sbx_hex(rnd, sizeof rnd, hex);
  snprintf(w->tmp, sizeof w->tmp, "%s/tmp/%s.part", s->root, hex);
  w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (w->fd < 0) {
    rc = report(&s->err, errno, "create", w->tmp);
    free(w);
    return rc;
  }
  *out = w;
  return SBX_OK;
}

int sbx_blob_writer_write(sbx_blob_writer *w, const void *buf, size_t n) {
  if (!w)
    return SBX_EINVAL;
  if (w->status)
    return w->status;
  if (w->s3w)
    return w->status = sbx_s3_writer_write(w->s3w, buf, n);
  const uint8_t *p = buf;
  while (n > 0) {
    ssize_t r = write(w->fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return w->status = report(&w->s->err, errno, "write", w->tmp);
    p += r;
    n -= (size_t)r;
  }
  return SBX_OK;
}

int sbx_blob_sink(void *writer, const void *buf, size_t n) {
  return sbx_blob_writer_write(writer, buf, n);
}

void sbx_blob_writer_abort(sbx_blob_writer *w) {
  if (!w)
    return;
  if (w->s3w) {
    sbx_s3_writer_abort(w->s3w);
    free(w);
    return;
  }
  if (w->fd >= 0)
    close(w->fd);
  unlink(w->tmp);
  free(w);
}

int sbx_blob_writer_commit(sbx_blob_writer *w) {
  if (!w)
    return SBX_EINVAL;
  if (!w->status) /* else the write's report stands */
    sbx_err_clear(&w->s->err);
  if (w->s3w) {
    int rc = sbx_s3_writer_commit(w->s3w); /* frees s3w either way */
    free(w);
    return rc;
  }
  int rc = w->status;
  sbx_blob_store *s = w->s;
  char dir[PATH_MAX], fin[PATH_MAX];
  if (!rc && s->fsync && fsync(w->fd))
    rc = report(&w->s->err, errno, "fsync", w->tmp);
  if (!rc && close(w->fd))
    rc = report(&w->s->err, errno, "close", w->tmp);
  w->fd = -1;
  int created = 0;
  if (snprintf(dir, sizeof dir, "%s/objects/%s", s->root, w->tenant) >=
          (int)sizeof dir ||
      snprintf(fin, sizeof fin, "%s/%s", dir, w->object) >= (int)sizeof fin)
    rc = rc ? rc : SBX_ELIMIT;
  if (!rc)
    rc = mkdir_p1(&s->err, dir, &created);
  if (!rc && created && s->fsync) {
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s/objects", s->root);
    rc = fsync_path(&s->err, parent);
  }
  if (!rc && renameat2(AT_FDCWD, w->tmp, AT_FDCWD, fin, RENAME_NOREPLACE))
    rc =
        errno == EEXIST ? SBX_EEXIST : report(&w->s->err, errno, "rename", fin);
  if (!rc && s->fsync)
    rc = fsync_path(&s->err, dir);
  if (rc) {
    sbx_blob_writer_abort(w); /* removes the temp file */
    return rc;
  }
  free(w);
  return SBX_OK;
}

int sbx_blob_read(sbx_blob_store *s, const char *tenant_id,
                  const char *object_id, sbx_sink_fn sink, void *ctx) {
  sbx_err_clear(&s->err);
  if (s->s3)
    return sbx_s3_read(s->s3, tenant_id, object_id, sink, ctx);
  char path[PATH_MAX];
  int rc = sbx_blob_local_path(s, tenant_id, object_id, path, sizeof path);
  if (rc)
    return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? SBX_ENOTFOUND
                           : report(&s->err, errno, "open", path);
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  size_t cap = 1 << 20;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return SBX_ENOMEM;
  }
  for (;;) {
    ssize_t r = read(fd, buf, cap);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = report(&s->err, errno, "read", path);
      break;
    }
    if (r == 0)
      break;
    if ((rc = sink(ctx, buf, (size_t)r)))
      break;
  }
  free(buf);
  close(fd);
  return rc;
}

int sbx_blob_remove(sbx_blob_store *s, const char *tenant_id,
                    const char *object_id) {
  sbx_err_clear(&s->err);
  if (s->s3)
    return sbx_s3_remove(s->s3, tenant_id, object_id);
  char path[PATH_MAX];
  int rc = sbx_blob_local_path(s, tenant_id, object_id, path, sizeof path);
  if (rc)
    return rc;
  if (unlink(path))
    return errno == ENOENT ? SBX_ENOTFOUND
                           : report(&s->err, errno, "unlink", path);
  return SBX_OK;
}

int sbx_blob_remove_tmp(sbx_blob_store *s, const char *tmp_name) {
  sbx_err_clear(&s->err);
  if (s->s3)
    return sbx_s3_remove_tmp(s->s3, tmp_name);
  char path[PATH_MAX];
  if (!tmp_name || strchr(tmp_name, '/') || tmp_name[0] == '.')
    return SBX_EINVAL;
  snprintf(path, sizeof path, "%s/tmp/%s", s->root, tmp_name);
  if (unlink(path))
    return errno == ENOENT ? SBX_ENOTFOUND
                           : report(&s->err, errno, "unlink", path);
  return SBX_OK;
}

typedef int (*scan_fn)(void *ctx, const char *tenant_id, const char *object_id,
                       const char *tmp_name, int64_t mtime);

static int scan_dir(sbx_err *err, const char *path, const char *tenant,
                    scan_fn fn, void *ctx) {
  DIR *d = opendir(path);
  if (!d)
    return errno == ENOENT ? SBX_OK : report(err, errno, "opendir", path);
  int rc = SBX_OK;
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW))
      continue;
    if (tenant) {
      if (S_ISREG(st.st_mode) && sbx_id_valid(e->d_name))
        rc = fn(ctx, tenant, e->d_name, NULL, (int64_t)st.st_mtime);
    } else {
      if (S_ISREG(st.st_mode))
        rc = fn(ctx, NULL, NULL, e->d_name, (int64_t)st.st_mtime);
    }
  }
  closedir(d);
  return rc < 0 ? rc : SBX_OK;
}

int sbx_blob_scan(sbx_blob_store *s, scan_fn fn, void *ctx) {
  sbx_err_clear(&s->err);
  if (s->s3)
    return sbx_s3_scan(s->s3, fn, ctx);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/tmp", s->root);
  int rc = scan_dir(&s->err, path, NULL, fn, ctx);
  if (rc)
    return rc;
  snprintf(path, sizeof path, "%s/objects", s->root);
  DIR *d = opendir(path);
  if (!d)
    return report(&s->err, errno, "opendir", path);
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    if (!sbx_id_valid(e->d_name))
      continue;
    char sub[PATH_MAX];
    if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
      continue;
    rc = scan_dir(&s->err, sub, e->d_name, fn, ctx);
  }
  closedir(d);
  return rc;
}
