/*
 * npz.c - NPZ (ZIP of .npy members) reader and writer.
 *
 * Reading walks the central directory (End Of Central Directory record,
 * zip64 locator/record when present), cross-checks every local header,
 * rejects overlapping or out-of-range members, encryption and methods other
 * than stored (0) / deflate (8), and verifies the CRC-32. Deflate members
 * are inflated straight into the output array with the output bounded by
 * the declared size and the limits.
 *
 * Writing stores members uncompressed (what np.savez does), with zip64
 * extra fields only where sizes/offsets need them, atomically.
 */
#include "io/io_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define U32MAX 0xFFFFFFFFu

/* Deflate cannot expand more than ~1032:1; anything above is a lie. */
#define DEFLATE_MAX_RATIO 1032u

static uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) {
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

typedef struct zentry {
  const uint8_t *name;
  size_t nlen;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t csize, usize, loff;
  uint64_t data_off; /* start of the member data (after local header) */
} zentry;

/* Finds the zip64 extra field (id 1) in an extra block. Returns a pointer
 * to its payload and its size, or NULL; -1 in *bad when the block is
 * malformed. */
static const uint8_t *find_zip64(const uint8_t *x, size_t xlen, size_t *sz,
                                 int *bad) {
  size_t p = 0;
  const uint8_t *found = NULL;
  *bad = 0;
  while (p < xlen) {
    if (xlen - p < 4) {
      *bad = 1;
      return NULL;
    }
    uint16_t id = le16(x + p), n = le16(x + p + 2);
    if (n > xlen - p - 4) {
      *bad = 1;
      return NULL;
    }
    if (id == 0x0001 && !found) {
      found = x + p + 4;
      *sz = n;
    }
    p += 4 + (size_t)n;
  }
  return found;
}

/* Locates the EOCD: scanning back at most 22 + 65535 bytes for a record
 * whose comment length ends exactly at the end of the buffer. */
static int find_eocd(const uint8_t *b, size_t len, size_t *at, adv_err *err) {
  if (len < 22)
    return adv__fail(err, ADV_EFORMAT, "not a ZIP/NPZ file (too short)");
  size_t start = len - 22;
  size_t stop = start > 65535 ? start - 65535 : 0;
  for (size_t off = start;; off--) {
    if (le32(b + off) == SIG_EOCD && off + 22 + le16(b + off + 20) == len) {
      *at = off;
      return ADV_OK;
    }
    if (off == stop)
      break;
  }
  return adv__fail(err, ADV_EFORMAT,
                   "not a ZIP/NPZ file (no end of central directory)");
}

static int cmp_loff(const void *a, const void *b) {
  const zentry *x = a, *y = b;
  return x->loff < y->loff ? -1 : x->loff > y->loff;
}

/* Parses the whole directory into *ents (malloc'd, *n entries) with every
 * local header checked and member ranges validated. */
static int parse_zip(const uint8_t *b, size_t len, adv_io_limits lim,
                     zentry **ents_out, size_t *n_out, adv_err *err) {
  *ents_out = NULL;
  *n_out = 0;
  size_t eocd = 0;
  int rc = find_eocd(b, len, &eocd, err);
  if (rc)
    return rc;
  const uint8_t *e = b + eocd;
  uint64_t disk = le16(e + 4), cd_disk = le16(e + 6);
  uint64_t n_disk = le16(e + 8), n_total = le16(e + 10);
  uint64_t cd_size = le32(e + 12), cd_off = le32(e + 16);
  uint64_t cd_limit = eocd; /* the directory must end here */

  if (eocd >= 20 && le32(b + eocd - 20) == SIG_LOC64) {
    const uint8_t *loc = b + eocd - 20;
    uint64_t z64 = le64(loc + 8);
    if (le32(loc + 4) != 0 || le32(loc + 16) > 1)
      return adv__fail(err, ADV_EUNSUPPORTED,
                       "multi-disk ZIP archives are "
                       "not supported");
    if (z64 > eocd - 20 || eocd - 20 - z64 < 56 || le32(b + z64) != SIG_EOCD64)
      return adv__fail(err, ADV_EFORMAT, "bad zip64 end of central directory");
    const uint8_t *r = b + z64;
    uint64_t rsize = le64(r + 4);
    if (rsize < 44 || rsize > eocd - 20 - z64 - 12)
      return adv__fail(err, ADV_EFORMAT, "bad zip64 end of central directory");
    disk = le32(r + 16);
    cd_disk = le32(r + 20);
    n_disk = le64(r + 24);
    n_total = le64(r + 32);
    cd_size = le64(r + 40);
    cd_off = le64(r + 48);
    cd_limit = z64;
  } else if (n_total == 0xFFFF || cd_size == U32MAX || cd_off == U32MAX) {
    return adv__fail(err, ADV_EFORMAT, "zip64 archive without a locator");
  }
  if (disk != 0 || cd_disk != 0 || n_disk != n_total)
    return adv__fail(err, ADV_EUNSUPPORTED,
                     "multi-disk ZIP archives are not supported");
  if (n_total > (uint64_t)(lim.max_entries > 0 ? lim.max_entries : 0))
    return adv__fail(err, ADV_ELIMIT, "NPZ has %llu members (limit %d)",
                     (unsigned long long)n_total, lim.max_entries);
  if (cd_off > cd_limit || cd_size != cd_limit - cd_off)
    return adv__fail(err, ADV_EFORMAT,
                     "ZIP central directory offset/size are inconsistent");
  if (n_total > cd_size / 46)
    return adv__fail(err, ADV_EFORMAT,
                     "ZIP central directory too small for %llu entries",
                     (unsigned long long)n_total);

  zentry *ents = calloc(n_total ? n_total : 1, sizeof(*ents));
  if (!ents)
    return adv__fail(err, ADV_ENOMEM, "out of memory");
  size_t p = (size_t)cd_off, end = (size_t)cd_limit;
  for (uint64_t i = 0; i < n_total; i++) {
    zentry *z = &ents[i];
    if (end - p < 46 || le32(b + p) != SIG_CENTRAL) {
      rc = adv__fail(err, ADV_EFORMAT, "bad ZIP central directory entry");
      goto fail;
    }
    const uint8_t *c = b + p;
    z->flags = le16(c + 8);
    z->method = le16(c + 10);
    z->crc = le32(c + 16);
    z->csize = le32(c + 20);
    z->usize = le32(c + 24);
    size_t nlen = le16(c + 28), xlen = le16(c + 30), clen = le16(c + 32);
    uint32_t dstart = le16(c + 34);
    z->loff = le32(c + 42);
    if (end - p - 46 < nlen + xlen + clen) {
      rc = adv__fail(err, ADV_EFORMAT, "ZIP central directory overruns");
      goto fail;
    }
    z->name = c + 46;
    z->nlen = nlen;
    size_t x64len = 0;
    int bad;
    const uint8_t *x64 = find_zip64(c + 46 + nlen, xlen, &x64len, &bad);
    if (bad) {
      rc = adv__fail(err, ADV_EFORMAT, "bad ZIP extra field");
      goto fail;
    }
    /* Zip64 extra: only the fields whose 32-bit value is saturated. */
    size_t q = 0;
    uint64_t *fields[3] = {&z->usize, &z->csize, &z->loff};
    for (int k = 0; k < 3; k++) {
      if (*fields[k] != U32MAX)
        continue;
      if (!x64 || x64len - q < 8) {
        rc = adv__fail(err, ADV_EFORMAT, "missing zip64 extra field");
        goto fail;
      }
      *fields[k] = le64(x64 + q);
      q += 8;
    }
    if (dstart == 0xFFFF && x64 && x64len - q >= 4)
      dstart = le32(x64 + q);
    if (dstart != 0) {
      rc = adv__fail(err, ADV_EUNSUPPORTED, "multi-disk ZIP member");
      goto fail;
    }
    p += 46 + nlen + xlen + clen;
  }
  if (p != end) {
    rc = adv__fail(err, ADV_EFORMAT, "ZIP central directory size mismatch");
    goto fail;
  }

  /* Local headers: same name/method/flags, sizes and CRC agree (unless a
   * data descriptor carries them), data inside [0, cd_off). */
  for (uint64_t i = 0; i < n_total; i++) {
    zentry *z = &ents[i];
    if (z->loff > cd_off || cd_off - z->loff < 30 ||
        le32(b + z->loff) != SIG_LOCAL) {
      rc = adv__fail(err, ADV_EFORMAT, "bad ZIP local header offset");
      goto fail;
    }
    const uint8_t *l = b + z->loff;
    uint16_t lflags = le16(l + 6), lmethod = le16(l + 8);
    uint32_t lcrc = le32(l + 14);
    uint64_t lcs = le32(l + 18), lus = le32(l + 22);
    size_t nlen = le16(l + 26), xlen = le16(l + 28);
    if (cd_off - z->loff - 30 < nlen + xlen) {
      rc = adv__fail(err, ADV_EFORMAT, "ZIP local header overruns");
      goto fail;
    }
    if (nlen != z->nlen || memcmp(l + 30, z->name, nlen) != 0 ||
        lmethod != z->method || (lflags & 1) != (z->flags & 1)) {
      rc = adv__fail(err, ADV_EFORMAT,
                     "ZIP local header disagrees with the central directory");
      goto fail;
    }
    if (!(lflags & 8)) {
      if (lcs == U32MAX || lus == U32MAX) {
        size_t x64len = 0;
        int bad;
        const uint8_t *x64 = find_zip64(l + 30 + nlen, xlen, &x64len, &bad);
        if (bad || !x64 || x64len < 16) {
          rc = adv__fail(err, ADV_EFORMAT, "bad local zip64 extra field");
          goto fail;
        }
        lus = le64(x64);
        lcs = le64(x64 + 8);
      }
      if (lcrc != z->crc || lcs != z->csize || lus != z->usize) {
        rc = adv__fail(err, ADV_EFORMAT,
                       "ZIP local header sizes/CRC disagree with the central "
                       "directory");
        goto fail;
      }
    }
    z->data_off = z->loff + 30 + nlen + xlen;
    if (z->csize > cd_off - z->data_off) {
      rc = adv__fail(err, ADV_EFORMAT, "ZIP member data out of range");
      goto fail;
    }
  }
  /* No two members may share bytes. */
  if (n_total > 1) {
    zentry *s = malloc(n_total * sizeof(*s));
    if (!s) {
      rc = adv__fail(err, ADV_ENOMEM, "out of memory");
      goto fail;
    }
    memcpy(s, ents, n_total * sizeof(*s));
    qsort(s, n_total, sizeof(*s), cmp_loff);
    for (uint64_t i = 0; i + 1 < n_total; i++) {
      if (s[i].data_off + s[i].csize > s[i + 1].loff) {
        free(s);
        rc = adv__fail(err, ADV_EFORMAT, "overlapping ZIP members");
        goto fail;
      }
    }
    free(s);
  }
  *ents_out = ents;
  *n_out = (size_t)n_total;
  return ADV_OK;
fail:
  free(ents);
  return rc;
}

/* CRC-32 over a buffer of any size. */
static uint32_t crc_buf(uint32_t crc, const uint8_t *p, size_t n) {
  while (n > 0) {
    uInt c = n > ((size_t)1 << 30) ? (uInt)1 << 30 : (uInt)n;
    crc = (uint32_t)crc32(crc, p, c);
    p += c;
    n -= c;
  }
  return crc;
}

/* Inflates a deflate member holding an NPY: header first, then the data
 * straight into the output array. */
static int read_deflated(const uint8_t *src, const zentry *z, adv_io_limits lim,
                         adv_array *out, adv_err *err) {
  if (z->usize > ADV__NPY_MAX_HEADER &&
      z->usize - ADV__NPY_MAX_HEADER > (uint64_t)lim.max_array_bytes)
    return adv__fail(err, ADV_ELIMIT,
                     "NPZ member declares %llu bytes, above the array limit",
                     (unsigned long long)z->usize);
  if (z->usize / DEFLATE_MAX_RATIO > z->csize + 64)
    return adv__fail(err, ADV_EFORMAT,
                     "NPZ member declares an impossible compression ratio");
  if (z->usize < 10)
    return adv__fail(err, ADV_EFORMAT, "NPZ member too small for an NPY");
  adv__zin zs;
  int rc = adv__zin_init(&zs, src, (size_t)z->csize, 0, err);
  if (rc)
    return rc;
  uint8_t pre[12];
  uint8_t *hdr = NULL;
  size_t npre = z->usize < 12 ? (size_t)z->usize : 12, hlen;
  adv__npy_info info;
  rc = adv__zin_read(&zs, pre, npre, err);
  if (!rc)
    rc = adv__npy_header_len(pre, npre, &hlen, err);
  if (rc)
    goto done;
  if (hlen > z->usize) {
    rc = adv__fail(err, ADV_EFORMAT, "NPZ member: truncated NPY header");
    goto done;
  }
  hdr = malloc(hlen);
  if (!hdr) {
    rc = adv__fail(err, ADV_ENOMEM, "out of memory");
    goto done;
  }
  memcpy(hdr, pre, npre);
  rc = adv__zin_read(&zs, hdr + npre, hlen - npre, err);
  if (!rc)
    rc = adv__npy_parse_header(hdr, hlen, lim, &info, err);
  if (rc)
    goto done;
  if (z->usize - hlen != info.data_len) {
    rc = adv__fail(err, ADV_EFORMAT,
                   "NPZ member size disagrees with its NPY header");
    goto done;
  }
  rc = adv_array_alloc(out, info.dtype, info.ndim, info.dims);
  if (rc) {
    rc = adv__fail(err, rc, "cannot allocate %zu bytes", info.data_len);
    goto done;
  }
  rc = adv__zin_read(&zs, out->data, info.data_len, err);
  if (!rc)
    rc = adv__zin_finish(&zs, err);
  if (!rc && zs.crc != z->crc)
    rc = adv__fail(err, ADV_EFORMAT, "NPZ member CRC-32 mismatch");
  if (!rc)
    rc = adv__npy_check_bools(out, err);
done:
  free(hdr);
  adv__zin_end(&zs);
  if (rc)
    adv_array_free(out);
  return rc;
}

int adv__npz_read_mem(const void *buf, size_t len, const char *name,
                      adv_io_limits lim, adv_array *out, adv_err *err) {
  if (!out)
    return adv__fail(err, ADV_EINVAL, "no output array");
  memset(out, 0, sizeof(*out));
  if ((!buf && len) || !name)
    return adv__fail(err, ADV_EINVAL, "no input buffer or member name");
  if (len > lim.max_file_bytes)
    return adv__fail(err, ADV_ELIMIT, "NPZ input above the file size limit");
  const uint8_t *b = buf;
  zentry *ents;
  size_t n;
  int rc = parse_zip(b, len, lim, &ents, &n, err);
  if (rc)
    return rc;
  size_t want = strlen(name);
  const zentry *z = NULL;
  for (size_t i = 0; i < n; i++) {
    const zentry *e = &ents[i];
    if (e->nlen == want + 4 && memcmp(e->name, name, want) == 0 &&
        memcmp(e->name + want, ".npy", 4) == 0) {
      if (z) {
        free(ents);
        return adv__fail(err, ADV_EFORMAT, "NPZ has duplicate member '%s'",
                         name);
      }
      z = e;
    }
  }
  if (!z) {
    free(ents);
    return adv__fail(err, ADV_ENOTFOUND, "NPZ has no member '%s'", name);
  }
  zentry m = *z;
  free(ents);
  if (m.flags & 0x41)
    return adv__fail(err, ADV_EUNSUPPORTED, "encrypted NPZ member '%s'", name);
  const uint8_t *src = b + m.data_off;
  if (m.method == 0) {
    if (m.csize != m.usize)
      return adv__fail(err, ADV_EFORMAT,
                       "stored NPZ member has different sizes");
    if (crc_buf((uint32_t)crc32(0L, Z_NULL, 0), src, (size_t)m.csize) != m.crc)
      return adv__fail(err, ADV_EFORMAT, "NPZ member '%s': CRC-32 mismatch",
                       name);
    rc = adv_npy_read_mem(src, (size_t)m.usize, lim, out, err);
  } else if (m.method == 8) {
    rc = read_deflated(src, &m, lim, out, err);
  } else {
    return adv__fail(err, ADV_EUNSUPPORTED,
                     "NPZ member '%s' uses compression method %u", name,
                     (unsigned)m.method);
  }
  if (rc && err) {
    char pre[64];
    snprintf(pre, sizeof(pre), "NPZ member '%.32s': ", name);
    adv__err_prefix(err, pre);
  }
  return rc;
}

int adv_npz_read_file(const char *path, const char *name, adv_io_limits lim,
                      adv_array *out, adv_err *err) {
  if (!out)
    return adv__fail(err, ADV_EINVAL, "no output array");
  memset(out, 0, sizeof(*out));
  uint8_t *buf;
  size_t len;
  int rc = adv__read_file(path, lim.max_file_bytes, &buf, &len, err);
  if (rc)
    return rc;
  rc = adv__npz_read_mem(buf, len, name, lim, out, err);
  free(buf);
  return rc;
}

/* ---- writing ---- */

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct wmember {
  uint32_t crc;
  uint64_t size; /* stored: compressed == uncompressed */
  uint64_t loff;
} wmember;

/* Writes one local header + NPY member; fills *m. */
static int write_member(adv__afile *f, uint64_t *off, const char *name,
                        const adv_array *a, wmember *m, adv_err *err) {
  uint8_t *hdr;
  size_t hlen;
  int rc = adv__npy_format_header(a, &hdr, &hlen, err);
  if (rc)
    return rc;
  uint32_t crc = crc_buf((uint32_t)crc32(0L, Z_NULL, 0), hdr, hlen);
  crc = crc_buf(crc, a->data, a->nbytes);
  uint64_t size = (uint64_t)hlen + a->nbytes;
  size_t nlen = strlen(name) + 4;
  int z64 = size >= U32MAX;
  uint8_t lh[30 + 20];
  put32(lh, SIG_LOCAL);
  put16(lh + 4, z64 ? 45 : 20);
  put16(lh + 6, 0);
  put16(lh + 8, 0);
  put16(lh + 10, 0);      /* time 00:00 */
  put16(lh + 12, 0x0021); /* 1980-01-01 */
  put32(lh + 14, crc);
  put32(lh + 18, z64 ? U32MAX : (uint32_t)size);
  put32(lh + 22, z64 ? U32MAX : (uint32_t)size);
  put16(lh + 26, (uint32_t)nlen);
  put16(lh + 28, z64 ? 20 : 0);
  size_t xl = 0;
  uint8_t x[20];
  if (z64) {
    put16(x, 1);
    put16(x + 2, 16);
    put64(x + 4, size);
    put64(x + 12, size);
    xl = 20;
  }
  m->crc = crc;
  m->size = size;
  m->loff = *off;
  rc = adv__afile_write(f, lh, 30, err);
  if (!rc)
    rc = adv__afile_write(f, name, nlen - 4, err);
  if (!rc)
    rc = adv__afile_write(f, ".npy", 4, err);
  if (!rc && xl)
    rc = adv__afile_write(f, x, xl, err);
  if (!rc)
    rc = adv__afile_write(f, hdr, hlen, err);
  if (!rc && a->nbytes)
    rc = adv__afile_write(f, a->data, a->nbytes, err);
  free(hdr);
  *off += 30 + nlen + xl + size;
  return rc;
}

/* Appends one central directory entry for member i to the buffer. */
static size_t central_entry(uint8_t *p, const char *name, const wmember *m) {
  size_t nlen = strlen(name) + 4;
  uint8_t x[28];
  size_t xl = 4;
  if (m->size >= U32MAX) {
    put64(x + xl, m->size);
    put64(x + xl + 8, m->size);
    xl += 16;
  }
  if (m->loff >= U32MAX) {
    put64(x + xl, m->loff);
    xl += 8;
  }
  if (xl == 4)
    xl = 0;
  else {
    put16(x, 1);
    put16(x + 2, (uint32_t)(xl - 4));
  }
  int z64 = xl != 0;
  put32(p, SIG_CENTRAL);
  put16(p + 4, 0x0300 | (z64 ? 45 : 20)); /* made by: unix */
  put16(p + 6, z64 ? 45 : 20);
  put16(p + 8, 0);
  put16(p + 10, 0);
  put16(p + 12, 0);
  put16(p + 14, 0x0021);
  put32(p + 16, m->crc);
  put32(p + 20, m->size >= U32MAX ? U32MAX : (uint32_t)m->size);
  put32(p + 24, m->size >= U32MAX ? U32MAX : (uint32_t)m->size);
  put16(p + 28, (uint32_t)nlen);
  put16(p + 30, (uint32_t)xl);
  put16(p + 32, 0);
  put16(p + 34, 0);
  put16(p + 36, 0);
  put32(p + 38, 0100644u << 16); /* regular file, rw-r--r-- */
  put32(p + 42, m->loff >= U32MAX ? U32MAX : (uint32_t)m->loff);
  memcpy(p + 46, name, nlen - 4);
  memcpy(p + 46 + nlen - 4, ".npy", 4);
  if (xl)
    memcpy(p + 46 + nlen, x, xl);
  return 46 + nlen + xl;
}

int adv_npz_write_file(const char *path, int n, const char *const *names,
                       const adv_array *arrays, adv_err *err) {
  if (n < 0 || (n > 0 && (!names || !arrays)) || n > 65535)
    return adv__fail(err, ADV_EINVAL, "bad NPZ member list");
  size_t cd_cap = 0;
  for (int i = 0; i < n; i++) {
    if (!names[i] || !names[i][0] || strlen(names[i]) > 1000)
      return adv__fail(err, ADV_EINVAL, "bad NPZ member name");
    for (int j = 0; j < i; j++)
      if (strcmp(names[i], names[j]) == 0)
        return adv__fail(err, ADV_EINVAL, "duplicate NPZ member '%s'",
                         names[i]);
    int rc = adv__npy_validate_array(&arrays[i], err);
    if (rc)
      return rc;
    cd_cap += 46 + strlen(names[i]) + 4 + 28;
  }
  wmember *ms = calloc(n ? (size_t)n : 1, sizeof(*ms));
  uint8_t *cd = malloc(cd_cap + 56 + 20 + 22);
  if (!ms || !cd) {
    free(ms);
    free(cd);
    return adv__fail(err, ADV_ENOMEM, "out of memory");
  }
  adv__afile f;
  int rc = adv__afile_open(&f, path, err);
  uint64_t off = 0;
  for (int i = 0; !rc && i < n; i++)
    rc = write_member(&f, &off, names[i], &arrays[i], &ms[i], err);
  if (!rc) {
    size_t cl = 0;
    for (int i = 0; i < n; i++)
      cl += central_entry(cd + cl, names[i], &ms[i]);
    uint64_t cd_off = off, cd_size = cl;
    int z64 = cd_off >= U32MAX || cd_size >= U32MAX || n >= 0xFFFF;
    if (z64) {
      uint8_t *r = cd + cl;
      put32(r, SIG_EOCD64);
      put64(r + 4, 44);
      put16(r + 12, 0x032D);
      put16(r + 14, 45);
      put32(r + 16, 0);
      put32(r + 20, 0);
      put64(r + 24, (uint64_t)n);
      put64(r + 32, (uint64_t)n);
      put64(r + 40, cd_size);
      put64(r + 48, cd_off);
      uint8_t *loc = r + 56;
      put32(loc, SIG_LOC64);
      put32(loc + 4, 0);
      put64(loc + 8, cd_off + cd_size);
      put32(loc + 16, 1);
      cl += 76;
    }
    uint8_t *e = cd + cl;
    put32(e, SIG_EOCD);
    put16(e + 4, 0);
    put16(e + 6, 0);
    put16(e + 8, z64 ? 0xFFFF : (uint32_t)n);
    put16(e + 10, z64 ? 0xFFFF : (uint32_t)n);
    put32(e + 12, z64 ? U32MAX : (uint32_t)cd_size);
    put32(e + 16, z64 ? U32MAX : (uint32_t)cd_off);
    put16(e + 20, 0);
    cl += 22;
    rc = adv__afile_write(&f, cd, cl, err);
    if (!rc)
      rc = adv__afile_commit(&f, err);
  }
  if (rc)
    adv__afile_abort(&f); /* idempotent; removes the temp file */
  free(ms);
  free(cd);
  return rc;
}
