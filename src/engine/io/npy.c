/*
 * npy.c - NumPy .npy reader/writer plus the small I/O helpers shared by the
 * other readers (error buffer, bounded whole-file reads, atomic writes).
 *
 * Format: "\x93NUMPY" major minor, header length (u16 LE for v1.0, u32 LE
 * for v2.0/v3.0), then a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a newline, then the raw C-order data.
 * Everything is untrusted: the dict is parsed with a strict little grammar
 * (no eval), and sizes are checked against adv_io_limits before allocating.
 */
#define _POSIX_C_SOURCE 200809L
#include "io/io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the data readers assume a little-endian host"
#endif

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

adv_io_limits adv_io_default_limits(void) {
  adv_io_limits l;
  l.max_file_bytes = (size_t)2 << 30;
  l.max_array_bytes = (size_t)4 << 30;
  l.max_entries = 64;
  return l;
}

void adv__err_prefix(adv_err *err, const char *prefix) {
  if (!err)
    return;
  size_t cap = sizeof(err->msg) - 1;
  size_t pl = strlen(prefix), ml = strnlen(err->msg, cap);
  if (pl > cap)
    pl = cap;
  size_t keep = ml < cap - pl ? ml : cap - pl;
  memmove(err->msg + pl, err->msg, keep);
  memcpy(err->msg, prefix, pl);
  err->msg[pl + keep] = '\0';
}

/* read() until n bytes or EOF; returns bytes read or -1 on error. */
static ssize_t read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t want = n - got;
    if (want > ((size_t)1 << 30))
      want = (size_t)1 << 30;
    ssize_t r = read(fd, (uint8_t *)buf + got, want);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

/* Opens `path` read-only and returns its size; only regular files. */
static int open_regular(const char *path, int *fd_out, size_t *size,
                        adv_err *err) {
  *fd_out = -1;
  if (!path)
    return adv__fail(err, ADV_EINVAL, "no file path given");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return adv__fail(err, ADV_EIO, "cannot open '%s': %s", path,
                     strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return adv__fail(err, ADV_EIO, "cannot stat '%s': %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return adv__fail(err, ADV_EIO, "'%s' is not a regular file", path);
  }
  if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
    close(fd);
    return adv__fail(err, ADV_ELIMIT, "'%s' is too large", path);
  }
  *fd_out = fd;
  *size = (size_t)st.st_size;
  return ADV_OK;
}

/* Confirms the descriptor is at end of file (the file did not grow). */
static int expect_eof(int fd, const char *path, adv_err *err) {
  uint8_t extra;
  ssize_t r = read_full(fd, &extra, 1);
  if (r < 0)
    return adv__fail(err, ADV_EIO, "read error on '%s': %s", path,
                     strerror(errno));
  if (r != 0)
    return adv__fail(err, ADV_EIO, "'%s' changed size while being read", path);
  return ADV_OK;
}

/* Whole-file read with the size cap checked before allocating. */
int adv__read_file(const char *path, size_t max_bytes, uint8_t **buf,
                   size_t *len, adv_err *err) {
  *buf = NULL;
  *len = 0;
  int fd;
  size_t size;
  int rc = open_regular(path, &fd, &size, err);
  if (rc)
    return rc;
  if (size > max_bytes) {
    close(fd);
    return adv__fail(err, ADV_ELIMIT,
                     "'%s' is %zu bytes, above the %zu byte file limit", path,
                     size, max_bytes);
  }
  uint8_t *b = malloc(size ? size : 1);
  if (!b) {
    close(fd);
    return adv__fail(err, ADV_ENOMEM, "out of memory reading '%s'", path);
  }
  ssize_t r = read_full(fd, b, size);
  if (r < 0 || (size_t)r != size) {
    int e = errno;
    free(b);
    close(fd);
    if (r < 0)
      return adv__fail(err, ADV_EIO, "read error on '%s': %s", path,
                       strerror(e));
    return adv__fail(err, ADV_EIO, "'%s' changed size while being read", path);
  }
  rc = expect_eof(fd, path, err);
  close(fd);
  if (rc) {
    free(b);
    return rc;
  }
  *buf = b;
  *len = size;
  return ADV_OK;
}

/* ---- atomic writer ---- */

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* Creates "<path>.tmp.XXXXXX" in the destination directory. */
int adv__afile_open(adv__afile *f, const char *path, adv_err *err) {
  memset(f, 0, sizeof(*f));
  f->fd = -1;
  if (!path || !*path)
    return adv__fail(err, ADV_EINVAL, "no output path given");
  size_t n = strlen(path);
  f->path = dup_str(path);
  f->tmp = malloc(n + 12);
  if (!f->path || !f->tmp) {
    free(f->tmp);
    f->tmp = NULL; /* not created yet: nothing to unlink */
    adv__afile_abort(f);
    return adv__fail(err, ADV_ENOMEM, "out of memory");
  }
  memcpy(f->tmp, path, n);
  memcpy(f->tmp + n, ".tmp.XXXXXX", 12);
  f->fd = mkstemp(f->tmp);
  if (f->fd < 0) {
    int e = errno;
    free(f->tmp);
    f->tmp = NULL; /* nothing to unlink */
    adv__afile_abort(f);
    return adv__fail(err, ADV_EIO, "cannot create a temp file for '%s': %s",
                     path, strerror(e));
  }
  (void)fcntl(f->fd, F_SETFD, FD_CLOEXEC);
  (void)fchmod(f->fd, 0644);
  return ADV_OK;
}

int adv__afile_write(adv__afile *f, const void *p, size_t n, adv_err *err) {
  const uint8_t *b = p;
  if (f->failed || f->fd < 0)
    return ADV_EIO;
  while (n > 0) {
    size_t want = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    ssize_t w = write(f->fd, b, want);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      f->failed = 1;
      return adv__fail(err, ADV_EIO, "write error on '%s': %s", f->path,
                       strerror(errno));
    }
    b += w;
    n -= (size_t)w;
  }
  return ADV_OK;
}

/* fsync, close and rename over the destination; then fsync the directory
 * (best effort). On any failure the temp file is removed. */
int adv__afile_commit(adv__afile *f, adv_err *err) {
  if (f->failed || f->fd < 0) {
    adv__afile_abort(f);
    return adv__fail(err, ADV_EIO, "write failed");
  }
  if (fsync(f->fd) != 0) {
    int e = errno;
    adv__afile_abort(f);
    return adv__fail(err, ADV_EIO, "fsync failed: %s", strerror(e));
  }
  int rc = close(f->fd);
  f->fd = -1;
  if (rc != 0 || rename(f->tmp, f->path) != 0) {
    int e = errno;
    adv__afile_abort(f);
    return adv__fail(err, ADV_EIO, "cannot move the temp file over '%s': %s",
                     f->path ? f->path : "", strerror(e));
  }
  /* Persist the rename: fsync the containing directory. */
  char *slash = strrchr(f->path, '/');
  const char *dir = ".";
  if (slash) {
    if (slash == f->path)
      slash[1] = '\0';
    else
      *slash = '\0';
    dir = f->path;
  }
  int dfd = open(dir, O_RDONLY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  free(f->tmp);
  f->tmp = NULL;
  adv__afile_abort(f);
  return ADV_OK;
}

void adv__afile_abort(adv__afile *f) {
  if (f->fd >= 0)
    close(f->fd);
  f->fd = -1;
  if (f->tmp)
    unlink(f->tmp);
  free(f->tmp);
  free(f->path);
  f->tmp = NULL;
  f->path = NULL;
}

/* ---- header parsing ---- */

static uint32_t rd_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

int adv__npy_header_len(const uint8_t *b, size_t avail, size_t *hlen,
                        adv_err *err) {
  *hlen = 0;
  if (avail < 10 || memcmp(b, npy_magic, 6) != 0)
    return adv__fail(err, ADV_EFORMAT, "not an NPY file (bad magic)");
  uint8_t major = b[6], minor = b[7];
  size_t h;
  if (major == 1 && minor == 0) {
    h = 10 + ((size_t)b[8] | (size_t)b[9] << 8);
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (avail < 12)
      return adv__fail(err, ADV_EFORMAT, "truncated NPY preamble");
    uint32_t l = rd_le32(b + 8);
    if (l > ADV__NPY_MAX_HEADER)
      return adv__fail(err, ADV_ELIMIT, "NPY header length %u is too large",
                       (unsigned)l);
    h = 12 + (size_t)l;
  } else {
    return adv__fail(err, ADV_EUNSUPPORTED, "unsupported NPY version %u.%u",
                     (unsigned)major, (unsigned)minor);
  }
  if (h > ADV__NPY_MAX_HEADER)
    return adv__fail(err, ADV_ELIMIT, "NPY header length %zu is too large", h);
  /* Callers read a 12-byte preamble before knowing h; no valid header is
   * that short anyway. */
  if (h < 12)
    return adv__fail(err, ADV_EFORMAT, "NPY header is too short");
  *hlen = h;
  return ADV_OK;
}

typedef struct cursor {
  const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end &&
         (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static int eat(cursor *c, char ch) {
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* Parses a quoted Python string without escapes into out[cap]. */
static int parse_str(cursor *c, char *out, size_t cap) {
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
    return -1;
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || *c->p == '\n' || n + 1 >= cap)
      return -1;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end)
    return -1;
  c->p++;
  out[n] = '\0';
  return 0;
}

/* Parses a non-negative decimal integer (optional py2 'L' suffix).
 * Returns 0, -1 (syntax) or -2 (overflow). */
static int parse_dim(cursor *c, int64_t *v) {
  const char *start = c->p;
  int64_t x = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    int d = *c->p - '0';
    if (x > (INT64_MAX - d) / 10)
      return -2;
    x = x * 10 + d;
    c->p++;
  }
  if (c->p == start)
    return -1;
  if (c->p - start > 1 && *start == '0')
    return -1; /* Python 3 rejects leading zeros */
  (void)eat(c, 'L');
  *v = x;
  return 0;
}

/* Maps a descr string to a dtype. */
static int map_descr(const char *s, adv_dtype *t, adv_err *err) {
  char order = '=';
  const char *k = s;
  if (*k == '<' || *k == '>' || *k == '|' || *k == '=')
    order = *k++;
  static const struct {
    const char *code;
    adv_dtype t;
  } tab[] = {{"f4", ADV_DTYPE_F32}, {"f8", ADV_DTYPE_F64},
             {"i8", ADV_DTYPE_I64}, {"i4", ADV_DTYPE_I32},
             {"u1", ADV_DTYPE_U8},  {"i1", ADV_DTYPE_I8},
             {"b1", ADV_DTYPE_BOOL}};
  for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
    if (strcmp(k, tab[i].code) != 0)
      continue;
    if (adv_dtype_size(tab[i].t) > 1 && order == '>')
      return adv__fail(err, ADV_EUNSUPPORTED,
                       "big-endian NPY dtype '%s' is not supported", s);
    *t = tab[i].t;
    return ADV_OK;
  }
  if (strchr(k, 'O'))
    return adv__fail(err, ADV_EUNSUPPORTED,
                     "object NPY dtype '%s' is not supported", s);
  return adv__fail(err, ADV_EUNSUPPORTED,
                   "NPY dtype '%s' is not supported (want <f4 <f8 <i8 <i4 "
                   "|u1 |i1 |b1)",
                   s);
}

/* Parses the header dict strictly: exactly the keys descr, fortran_order
 * and shape in any order, an optional trailing comma, then whitespace. */
int adv__npy_parse_header(const uint8_t *b, size_t hlen, adv_io_limits lim,
                          adv__npy_info *info, adv_err *err) {
  memset(info, 0, sizeof(*info));
  size_t pre = (b[6] == 1) ? 10 : 12;
  cursor c = {(const char *)b + pre, (const char *)b + hlen};
  char descr[32] = {0};
  int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
  int ndim = 0;
  int64_t dims[ADV_MAX_DIMS] = {0};

  skip_ws(&c);
  if (!eat(&c, '{'))
    return adv__fail(err, ADV_EFORMAT, "NPY header is not a dict");
  for (;;) {
    skip_ws(&c);
    if (eat(&c, '}'))
      break;
    char key[32];
    if (parse_str(&c, key, sizeof(key)) != 0)
      return adv__fail(err, ADV_EFORMAT, "NPY header: bad dict key");
    skip_ws(&c);
    if (!eat(&c, ':'))
      return adv__fail(err, ADV_EFORMAT, "NPY header: expected ':'");
    skip_ws(&c);
    if (strcmp(key, "descr") == 0 && !have_descr) {
      if (c.p < c.end && *c.p == '[')
        return adv__fail(err, ADV_EUNSUPPORTED,
                         "structured NPY dtypes are not supported");
      if (parse_str(&c, descr, sizeof(descr)) != 0)
        return adv__fail(err, ADV_EFORMAT, "NPY header: bad 'descr' value");
      have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
      if ((size_t)(c.end - c.p) >= 4 && memcmp(c.p, "True", 4) == 0) {
        fortran = 1;
        c.p += 4;
      } else if ((size_t)(c.end - c.p) >= 5 && memcmp(c.p, "False", 5) == 0) {
        fortran = 0;
        c.p += 5;
      } else {
        return adv__fail(err, ADV_EFORMAT,
                         "NPY header: 'fortran_order' must be True/False");
      }
      have_fortran = 1;
    } else if (strcmp(key, "shape") == 0 && !have_shape) {
      if (!eat(&c, '('))
        return adv__fail(err, ADV_EFORMAT,
                         "NPY header: 'shape' is not a tuple");
      int last_comma = 0;
      for (;;) {
        skip_ws(&c);
        if (eat(&c, ')'))
          break;
        if (ndim >= ADV_MAX_DIMS)
          return adv__fail(err, ADV_ELIMIT, "NPY array has more than %d dims",
                           ADV_MAX_DIMS);
        int r = parse_dim(&c, &dims[ndim]);
        if (r == -2)
          return adv__fail(err, ADV_ELIMIT, "NPY dimension is too large");
        if (r != 0)
          return adv__fail(err, ADV_EFORMAT, "NPY header: bad 'shape' entry");
        ndim++;
        skip_ws(&c);
        last_comma = eat(&c, ',');
        if (!last_comma) {
          skip_ws(&c);
          if (!eat(&c, ')'))
            return adv__fail(err, ADV_EFORMAT, "NPY header: bad 'shape' tuple");
          break;
        }
      }
      if (ndim == 1 && !last_comma)
        return adv__fail(err, ADV_EFORMAT,
                         "NPY header: 'shape' (N) is not a tuple");
      have_shape = 1;
    } else {
      return adv__fail(err, ADV_EFORMAT,
                       "NPY header: unexpected or duplicate key '%s'", key);
    }
    skip_ws(&c);
    if (eat(&c, ','))
      continue;
    skip_ws(&c);
    if (eat(&c, '}'))
      break;
    return adv__fail(err, ADV_EFORMAT, "NPY header: expected ',' or '}'");
  }
  skip_ws(&c);
  if (c.p != c.end)
    return adv__fail(err, ADV_EFORMAT, "NPY header: trailing characters");
  if (!have_descr || !have_fortran || !have_shape)
    return adv__fail(err, ADV_EFORMAT,
                     "NPY header lacks 'descr', 'fortran_order' or 'shape'");

  int rc = map_descr(descr, &info->dtype, err);
  if (rc)
    return rc;
  if (fortran && ndim > 1)
    return adv__fail(err, ADV_EUNSUPPORTED,
                     "fortran_order NPY arrays are not supported");
  /* Product of the non-zero dims must stay sane even when another dim is
   * 0 (numpy refuses such shapes too); a zero dim then makes it empty. */
  size_t bytes = adv_dtype_size(info->dtype);
  int zero = 0;
  for (int i = 0; i < ndim; i++) {
    if (dims[i] == 0) {
      zero = 1;
      continue;
    }
    if (bytes > ADV__MAX_DIM_PRODUCT / (uint64_t)dims[i])
      return adv__fail(err, ADV_ELIMIT, "NPY array dimensions are too large");
    bytes *= (size_t)dims[i];
  }
  if (zero)
    bytes = 0;
  if (bytes > lim.max_array_bytes)
    return adv__fail(err, ADV_ELIMIT,
                     "NPY array needs more than the %zu byte array limit",
                     lim.max_array_bytes);
  info->ndim = ndim;
  memcpy(info->dims, dims, sizeof(dims));
  info->header_len = hlen;
  info->data_len = bytes;
  return ADV_OK;
}

int adv__npy_check_bools(const adv_array *a, adv_err *err) {
  if (a->dtype != ADV_DTYPE_BOOL)
    return ADV_OK;
  const uint8_t *p = a->data;
  for (size_t i = 0; i < a->nbytes; i++)
    if (p[i] > 1)
      return adv__fail(err, ADV_EFORMAT, "NPY bool array holds byte %u",
                       (unsigned)p[i]);
  return ADV_OK;
}

/* Allocates the output for a parsed header (data uninitialised by copy). */
static int alloc_from_info(const adv__npy_info *info, adv_array *out,
                           adv_err *err) {
  int rc = adv_array_alloc(out, info->dtype, info->ndim, info->dims);
  if (rc == ADV_ENOMEM)
    return adv__fail(err, rc, "out of memory (%zu bytes)", info->data_len);
  if (rc || out->nbytes != info->data_len) {
    adv_array_free(out);
    return adv__fail(err, rc ? rc : ADV_EINTERNAL,
                     "cannot allocate the NPY array");
  }
  return ADV_OK;
}

int adv_npy_read_mem(const void *buf, size_t len, adv_io_limits lim,
                     adv_array *out, adv_err *err) {
  if (!out)
    return adv__fail(err, ADV_EINVAL, "no output array");
  memset(out, 0, sizeof(*out));
  if (!buf && len)
    return adv__fail(err, ADV_EINVAL, "no input buffer");
  if (len > lim.max_file_bytes)
    return adv__fail(err, ADV_ELIMIT, "NPY input above the file size limit");
  const uint8_t *b = buf;
  size_t hlen;
  int rc = adv__npy_header_len(b, len, &hlen, err);
  if (rc)
    return rc;
  if (hlen > len)
    return adv__fail(err, ADV_EFORMAT, "truncated NPY header");
  adv__npy_info info;
  rc = adv__npy_parse_header(b, hlen, lim, &info, err);
  if (rc)
    return rc;
  if (len - hlen != info.data_len)
    return adv__fail(err, ADV_EFORMAT,
                     "NPY data is %zu bytes but the header implies %zu",
                     len - hlen, info.data_len);
  rc = alloc_from_info(&info, out, err);
  if (rc)
    return rc;
  if (info.data_len)
    memcpy(out->data, b + hlen, info.data_len);
  rc = adv__npy_check_bools(out, err);
  if (rc)
    adv_array_free(out);
  return rc;
}

/* Reads the header, checks the exact file size, then reads the data
 * straight into the output array (no whole-file copy). */
int adv_npy_read_file(const char *path, adv_io_limits lim, adv_array *out,
                      adv_err *err) {
  if (!out)
    return adv__fail(err, ADV_EINVAL, "no output array");
  memset(out, 0, sizeof(*out));
  int fd;
  size_t size;
  int rc = open_regular(path, &fd, &size, err);
  if (rc)
    return rc;
  uint8_t *hdr = NULL;
  if (size > lim.max_file_bytes) {
    rc = adv__fail(err, ADV_ELIMIT, "'%s' is above the %zu byte file limit",
                   path, lim.max_file_bytes);
    goto done;
  }
  uint8_t pre[12];
  size_t npre = size < 12 ? size : 12;
  ssize_t r = read_full(fd, pre, npre);
  if (r < 0 || (size_t)r != npre) {
    rc = adv__fail(err, ADV_EIO, "read error on '%s'", path);
    goto done;
  }
  size_t hlen;
  rc = adv__npy_header_len(pre, npre, &hlen, err);
  if (rc)
    goto done;
  if (hlen > size) {
    rc = adv__fail(err, ADV_EFORMAT, "truncated NPY header in '%s'", path);
    goto done;
  }
  hdr = malloc(hlen);
  if (!hdr) {
    rc = adv__fail(err, ADV_ENOMEM, "out of memory");
    goto done;
  }
  memcpy(hdr, pre, npre);
  r = read_full(fd, hdr + npre, hlen - npre);
  if (r < 0 || (size_t)r != hlen - npre) {
    rc = adv__fail(err, ADV_EIO, "read error on '%s'", path);
    goto done;
  }
  adv__npy_info info;
  rc = adv__npy_parse_header(hdr, hlen, lim, &info, err);
  if (rc)
    goto done;
  if (size - hlen != info.data_len) {
    rc = adv__fail(err, ADV_EFORMAT,
                   "'%s': NPY data is %zu bytes but the header implies %zu",
                   path, size - hlen, info.data_len);
    goto done;
  }
  rc = alloc_from_info(&info, out, err);
  if (rc)
    goto done;
  r = read_full(fd, out->data, info.data_len);
  if (r < 0 || (size_t)r != info.data_len) {
    rc = adv__fail(err, ADV_EIO, "'%s' changed size while being read", path);
    goto done;
  }
  rc = expect_eof(fd, path, err);
  if (!rc)
    rc = adv__npy_check_bools(out, err);
done:
  free(hdr);
  close(fd);
  if (rc)
    adv_array_free(out);
  return rc;
}

/* ---- writing ---- */

int adv__npy_validate_array(const adv_array *a, adv_err *err) {
  if (!a)
    return adv__fail(err, ADV_EINVAL, "no array");
  size_t es = adv_dtype_size(a->dtype);
  if (es == 0)
    return adv__fail(err, ADV_EINVAL, "array has an undefined dtype");
  if (a->ndim < 0 || a->ndim > ADV_MAX_DIMS)
    return adv__fail(err, ADV_EINVAL, "array has %d dims", a->ndim);
  size_t n = es;
  int zero = 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->dims[i] < 0)
      return adv__fail(err, ADV_EINVAL, "array has a negative dim");
    if (a->dims[i] == 0)
      zero = 1;
    else if (n > SIZE_MAX / (uint64_t)a->dims[i])
      return adv__fail(err, ADV_ELIMIT, "array size overflows");
    else
      n *= (size_t)a->dims[i];
  }
  if (zero)
    n = 0;
  if (n != a->nbytes)
    return adv__fail(err, ADV_EINVAL, "array nbytes %zu != dims product %zu",
                     a->nbytes, n);
  if (n && !a->data)
    return adv__fail(err, ADV_EINVAL, "array has no data");
  return ADV_OK;
}

static const char *dtype_descr(adv_dtype t) {
  switch (t) {
  case ADV_DTYPE_F32:
    return "<f4";
  case ADV_DTYPE_F64:
    return "<f8";
  case ADV_DTYPE_I64:
    return "<i8";
  case ADV_DTYPE_I32:
    return "<i4";
  case ADV_DTYPE_U8:
    return "|u1";
  case ADV_DTYPE_I8:
    return "|i1";
  case ADV_DTYPE_BOOL:
    return "|b1";
  default:
    return NULL;
  }
}

/* Builds "\x93NUMPY\x01\x00" + len + dict padded with spaces and a final
 * newline so the data starts at a multiple of 64 bytes. */
int adv__npy_format_header(const adv_array *a, uint8_t **hdr, size_t *hlen,
                           adv_err *err) {
  *hdr = NULL;
  *hlen = 0;
  int rc = adv__npy_validate_array(a, err);
  if (rc)
    return rc;
  char dict[512];
  int n = snprintf(dict, sizeof(dict),
                   "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   dtype_descr(a->dtype));
  for (int i = 0; i < a->ndim; i++)
    n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%s%lld", i ? ", " : "",
                  (long long)a->dims[i]);
  n += snprintf(dict + n, sizeof(dict) - (size_t)n, "%s), }",
                a->ndim == 1 ? "," : "");
  size_t body = (size_t)n + 1; /* + '\n' */
  size_t total = 10 + body;
  total = (total + 63) / 64 * 64;
  uint8_t *h = malloc(total);
  if (!h)
    return adv__fail(err, ADV_ENOMEM, "out of memory");
  memcpy(h, npy_magic, 6);
  h[6] = 1;
  h[7] = 0;
  size_t dl = total - 10;
  h[8] = (uint8_t)(dl & 0xff);
  h[9] = (uint8_t)(dl >> 8);
  memcpy(h + 10, dict, (size_t)n);
  memset(h + 10 + n, ' ', total - 10 - (size_t)n);
  h[total - 1] = '\n';
  *hdr = h;
  *hlen = total;
  return ADV_OK;
}

int adv_npy_write_mem(const adv_array *a, void **buf, size_t *len,
                      adv_err *err) {
  *buf = NULL;
  *len = 0;
  uint8_t *hdr;
  size_t hlen;
  int rc = adv__npy_format_header(a, &hdr, &hlen, err);
  if (rc)
    return rc;
  if (a->nbytes > SIZE_MAX - hlen) {
    free(hdr);
    return adv__fail(err, ADV_ELIMIT, "array too large");
  }
  uint8_t *b = malloc(hlen + a->nbytes);
  if (!b) {
    free(hdr);
    return adv__fail(err, ADV_ENOMEM, "out of memory (%zu bytes)",
                     hlen + a->nbytes);
  }
  memcpy(b, hdr, hlen);
  if (a->nbytes)
    memcpy(b + hlen, a->data, a->nbytes);
  free(hdr);
  *buf = b;
  *len = hlen + a->nbytes;
  return ADV_OK;
}

int adv_npy_write_file(const char *path, const adv_array *a, adv_err *err) {
  uint8_t *hdr;
  size_t hlen;
  int rc = adv__npy_format_header(a, &hdr, &hlen, err);
  if (rc)
    return rc;
  adv__afile f;
  rc = adv__afile_open(&f, path, err);
  if (rc) {
    free(hdr);
    return rc;
  }
  rc = adv__afile_write(&f, hdr, hlen, err);
  if (!rc && a->nbytes)
    rc = adv__afile_write(&f, a->data, a->nbytes, err);
  free(hdr);
  if (rc) {
    adv__afile_abort(&f);
    return rc;
  }
  return adv__afile_commit(&f, err);
}
