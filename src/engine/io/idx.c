/*
 * idx.c - IDX (MNIST) reader, plain or gzip-compressed, and the bounded
 * inflate stream shared with the NPZ reader.
 *
 * IDX layout: 0x00 0x00 <type> <ndim>, ndim big-endian u32 dims, then the
 * big-endian data. Types: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32,
 * 0x0E f64. The (decompressed) size must match the header exactly. Gzip
 * input is inflated with the output capped by the limits and by the size
 * the header implies; the gzip ISIZE trailer is never trusted.
 */
#include "io/io_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounded inflate ---- */

int adv__zin_init(adv__zin *z, const uint8_t *in, size_t n, int gzip,
                  adv_err *err) {
  memset(z, 0, sizeof(*z));
  z->next = in;
  z->left = n;
  z->gzip = gzip;
  z->crc = (uint32_t)crc32(0L, Z_NULL, 0);
  if (inflateInit2(&z->zs, gzip ? 16 + MAX_WBITS : -MAX_WBITS) != Z_OK)
    return adv__fail(err, ADV_ENOMEM, "cannot initialise zlib");
  z->live = 1;
  return ADV_OK;
}

void adv__zin_end(adv__zin *z) {
  if (z->live)
    inflateEnd(&z->zs);
  z->live = 0;
}

/* Hands zlib up to 1 GiB more input when it has run dry. */
static void zin_feed(adv__zin *z) {
  if (z->zs.avail_in == 0 && z->left > 0) {
    size_t chunk = z->left > ((size_t)1 << 30) ? ((size_t)1 << 30) : z->left;
    z->zs.next_in = (Bytef *)(uintptr_t)z->next;
    z->zs.avail_in = (uInt)chunk;
    z->next += chunk;
    z->left -= chunk;
  }
}

/* After a gzip member ends: continue with a following member (1f 8b) or
 * mark the stream finished. Returns 1 if another member started. */
static int zin_next_member(adv__zin *z) {
  if (!z->gzip)
    return 0;
  zin_feed(z);
  if (z->zs.avail_in >= 2 && z->zs.next_in[0] == 0x1f &&
      z->zs.next_in[1] == 0x8b) {
    if (inflateReset(&z->zs) == Z_OK)
      return 1;
  }
  return 0;
}

int adv__zin_read(adv__zin *z, void *dst, size_t n, adv_err *err) {
  uint8_t *out = dst;
  while (n > 0) {
    if (z->ended)
      return adv__fail(err, ADV_EFORMAT,
                       "compressed data ends before the expected size");
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    zin_feed(z);
    z->zs.next_out = out;
    z->zs.avail_out = (uInt)chunk;
    int zr = inflate(&z->zs, Z_NO_FLUSH);
    size_t got = chunk - z->zs.avail_out;
    if (got)
      z->crc = (uint32_t)crc32(z->crc, out, (uInt)got);
    out += got;
    n -= got;
    z->total_out += got;
    if (zr == Z_STREAM_END) {
      if (!zin_next_member(z))
        z->ended = 1;
      continue;
    }
    if (zr == Z_BUF_ERROR && got == 0 && z->zs.avail_in == 0 && z->left == 0)
      return adv__fail(err, ADV_EFORMAT, "truncated compressed data");
    if (zr != Z_OK && zr != Z_BUF_ERROR)
      return adv__fail(err, ADV_EFORMAT, "corrupt compressed data: %s",
                       z->zs.msg ? z->zs.msg : "inflate error");
    if (zr == Z_BUF_ERROR && got == 0)
      return adv__fail(err, ADV_EFORMAT, "corrupt compressed data");
  }
  return ADV_OK;
}

int adv__zin_finish(adv__zin *z, adv_err *err) {
  /* Drive the stream to its end without accepting any more output. */
  for (int guard = 0; !z->ended; guard++) {
    uint8_t extra;
    zin_feed(z);
    z->zs.next_out = &extra;
    z->zs.avail_out = 1;
    int zr = inflate(&z->zs, Z_NO_FLUSH);
    if (z->zs.avail_out == 0)
      return adv__fail(err, ADV_EFORMAT,
                       "compressed data is larger than its declared size");
    if (zr == Z_STREAM_END) {
      if (!zin_next_member(z))
        z->ended = 1;
      continue;
    }
    if (zr == Z_OK && guard < 1000000)
      continue; /* consumed header/trailer bytes without output */
    if (zr == Z_BUF_ERROR && z->zs.avail_in == 0 && z->left == 0)
      return adv__fail(err, ADV_EFORMAT, "truncated compressed data");
    return adv__fail(err, ADV_EFORMAT, "corrupt compressed data: %s",
                     z->zs.msg ? z->zs.msg : "inflate error");
  }
  if (z->zs.avail_in != 0 || z->left != 0)
    return adv__fail(err, ADV_EFORMAT, "trailing bytes after compressed data");
  return ADV_OK;
}

/* ---- IDX ---- */

static uint32_t rd_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

typedef struct idx_info {
  adv_dtype out_type;
  size_t in_es; /* element size in the file */
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  size_t header_len;
  size_t raw_bytes; /* data bytes in the file */
} idx_info;

/* Validates the 4-byte magic; fills type and ndim. */
static int idx_magic(const uint8_t *m, idx_info *info, adv_err *err) {
  memset(info, 0, sizeof(*info));
  if (m[0] != 0 || m[1] != 0)
    return adv__fail(err, ADV_EFORMAT, "not an IDX file (bad magic)");
  switch (m[2]) {
  case 0x08:
    info->out_type = ADV_DTYPE_U8, info->in_es = 1;
    break;
  case 0x09:
    info->out_type = ADV_DTYPE_I8, info->in_es = 1;
    break;
  case 0x0B:
    info->out_type = ADV_DTYPE_I32, info->in_es = 2;
    break;
  case 0x0C:
    info->out_type = ADV_DTYPE_I32, info->in_es = 4;
    break;
  case 0x0D:
    info->out_type = ADV_DTYPE_F32, info->in_es = 4;
    break;
  case 0x0E:
    info->out_type = ADV_DTYPE_F64, info->in_es = 8;
    break;
  default:
    return adv__fail(err, ADV_EFORMAT, "unknown IDX data type 0x%02x",
                     (unsigned)m[2]);
  }
  if (m[3] == 0)
    return adv__fail(err, ADV_EFORMAT, "IDX file has 0 dimensions");
  if (m[3] > ADV_MAX_DIMS)
    return adv__fail(err, ADV_ELIMIT, "IDX file has %u dimensions (max %d)",
                     (unsigned)m[3], ADV_MAX_DIMS);
  info->ndim = m[3];
  info->header_len = 4 + 4 * (size_t)info->ndim;
  return ADV_OK;
}

/* Reads the dims and checks the decoded size against the limits. */
static int idx_dims(const uint8_t *d, adv_io_limits lim, idx_info *info,
                    adv_err *err) {
  size_t out_es = adv_dtype_size(info->out_type);
  size_t n = 1;
  int zero = 0;
  for (int i = 0; i < info->ndim; i++) {
    uint32_t v = rd_be32(d + 4 * i);
    info->dims[i] = v;
    if (v == 0)
      zero = 1;
    else if (n > ADV__MAX_DIM_PRODUCT / 8 / v)
      return adv__fail(err, ADV_ELIMIT, "IDX array dimensions are too large");
    else
      n *= v;
  }
  if (zero)
    n = 0;
  if (n * out_es > lim.max_array_bytes || n * info->in_es > lim.max_array_bytes)
    return adv__fail(err, ADV_ELIMIT,
                     "IDX array needs more than the %zu byte array limit",
                     lim.max_array_bytes);
  info->raw_bytes = n * info->in_es;
  return ADV_OK;
}

/* Converts the raw big-endian bytes in buf (raw_bytes long, capacity for
 * the output) to host order in place; i16 is widened to i32 back to front.
 */
static void idx_convert(uint8_t *buf, const idx_info *info) {
  size_t n = info->raw_bytes / info->in_es;
  switch (info->in_es) {
  case 2:
    for (size_t i = n; i-- > 0;) {
      int16_t v = (int16_t)((uint16_t)buf[2 * i] << 8 | buf[2 * i + 1]);
      int32_t w = v;
      memcpy(buf + 4 * i, &w, 4);
    }
    break;
  case 4:
    for (size_t i = 0; i < n; i++) {
      uint32_t v = rd_be32(buf + 4 * i);
      memcpy(buf + 4 * i, &v, 4);
    }
    break;
  case 8:
    for (size_t i = 0; i < n; i++) {
      uint64_t v =
          (uint64_t)rd_be32(buf + 8 * i) << 32 | rd_be32(buf + 8 * i + 4);
      memcpy(buf + 8 * i, &v, 8);
    }
    break;
  default:
    break;
  }
}

/* Reports the final array; takes ownership of buf. */
static int idx_finish(uint8_t *buf, const idx_info *info, adv_array *out,
                      adv_err *err) {
  size_t out_bytes =
      info->raw_bytes / info->in_es * adv_dtype_size(info->out_type);
  idx_convert(buf, info);
  out->dtype = info->out_type;
  out->ndim = info->ndim;
  memcpy(out->dims, info->dims, sizeof(info->dims));
  out->data = buf;
  out->nbytes = out_bytes;
  (void)err;
  return ADV_OK;
}

static uint8_t *alloc_out(const idx_info *info, size_t *cap) {
  size_t ob = info->raw_bytes / info->in_es * adv_dtype_size(info->out_type);
  if (ob < info->raw_bytes)
    ob = info->raw_bytes;
  *cap = ob;
  return malloc(ob ? ob : 1);
}

/* Gzip path: header, then data into a buffer that grows with the actual
 * decompressed size (a tiny file declaring huge dims costs no memory). */
static int idx_read_gz(const uint8_t *b, size_t len, adv_io_limits lim,
                       adv_array *out, adv_err *err) {
  adv__zin z;
  uint8_t *buf = NULL;
  int rc = adv__zin_init(&z, b, len, 1, err);
  if (rc)
    return rc;
  uint8_t hdr[4 + 4 * ADV_MAX_DIMS];
  idx_info info;
  rc = adv__zin_read(&z, hdr, 4, err);
  if (!rc)
    rc = idx_magic(hdr, &info, err);
  if (!rc)
    rc = adv__zin_read(&z, hdr + 4, 4 * (size_t)info.ndim, err);
  if (!rc)
    rc = idx_dims(hdr + 4, lim, &info, err);
  if (rc)
    goto fail;
  size_t final_cap = 0;
  {
    size_t ob = info.raw_bytes / info.in_es * adv_dtype_size(info.out_type);
    final_cap = ob > info.raw_bytes ? ob : info.raw_bytes;
  }
  size_t cap = final_cap < ((size_t)1 << 20) ? final_cap : ((size_t)1 << 20);
  buf = malloc(cap ? cap : 1);
  if (!buf) {
    rc = adv__fail(err, ADV_ENOMEM, "out of memory");
    goto fail;
  }
  size_t have = 0;
  while (have < info.raw_bytes) {
    if (have == cap) {
      size_t ncap = cap > final_cap / 2 ? final_cap : cap * 2;
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        rc = adv__fail(err, ADV_ENOMEM, "out of memory");
        goto fail;
      }
      buf = nb;
      cap = ncap;
    }
    size_t want = info.raw_bytes - have;
    if (want > cap - have)
      want = cap - have;
    rc = adv__zin_read(&z, buf + have, want, err);
    if (rc)
      goto fail;
    have += want;
  }
  rc = adv__zin_finish(&z, err);
  if (rc)
    goto fail;
  adv__zin_end(&z);
  if (cap < final_cap) {
    uint8_t *nb = realloc(buf, final_cap ? final_cap : 1);
    if (!nb) {
      free(buf);
      return adv__fail(err, ADV_ENOMEM, "out of memory");
    }
    buf = nb;
  }
  return idx_finish(buf, &info, out, err);
fail:
  if (rc == ADV_EFORMAT && err && strncmp(err->msg, "IDX", 3) != 0)
    adv__err_prefix(err, "gzip IDX: ");
  free(buf);
  adv__zin_end(&z);
  return rc;
}

int adv__idx_read_mem(const void *buf, size_t len, adv_io_limits lim,
                      adv_array *out, adv_err *err) {
  if (!out)
    return adv__fail(err, ADV_EINVAL, "no output array");
  memset(out, 0, sizeof(*out));
  if (!buf && len)
    return adv__fail(err, ADV_EINVAL, "no input buffer");
  if (len > lim.max_file_bytes)
    return adv__fail(err, ADV_ELIMIT, "IDX input above the file size limit");
  const uint8_t *b = buf;
  if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
    return idx_read_gz(b, len, lim, out, err);
  if (len < 4)
    return adv__fail(err, ADV_EFORMAT, "truncated IDX header");
  idx_info info;
  int rc = idx_magic(b, &info, err);
  if (rc)
    return rc;
  if (len < info.header_len)
    return adv__fail(err, ADV_EFORMAT, "truncated IDX header");
  rc = idx_dims(b + 4, lim, &info, err);
  if (rc)
    return rc;
  if (len - info.header_len != info.raw_bytes)
    return adv__fail(err, ADV_EFORMAT,
                     "IDX data is %zu bytes but the header implies %zu",
                     len - info.header_len, info.raw_bytes);
  size_t cap;
  uint8_t *o = alloc_out(&info, &cap);
  if (!o)
    return adv__fail(err, ADV_ENOMEM, "out of memory");
  if (info.raw_bytes)
    memcpy(o, b + info.header_len, info.raw_bytes);
  return idx_finish(o, &info, out, err);
}

int adv_idx_read_file(const char *path, adv_io_limits lim, adv_array *out,
                      adv_err *err) {
  if (!out)
    return adv__fail(err, ADV_EINVAL, "no output array");
  memset(out, 0, sizeof(*out));
  uint8_t *buf;
  size_t len;
  int rc = adv__read_file(path, lim.max_file_bytes, &buf, &len, err);
  if (rc)
    return rc;
  rc = adv__idx_read_mem(buf, len, lim, out, err);
  free(buf);
  return rc;
}
