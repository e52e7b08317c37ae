/*
 * io/io_internal.h - private helpers shared by the data readers/writers
 * (npy.c, npz.c, idx.c, dataset.c) and the in-memory entry points used by
 * the fuzz targets. Not part of the public API.
 *
 * Where things live:
 *   npy.c  - error buffer, whole-file reading, atomic writer, NPY header
 *            parse/format, adv__npy_validate_array.
 *   idx.c  - bounded inflate stream (adv__zin_*), IDX parsing.
 *   npz.c  - ZIP central directory parsing, NPZ read/write.
 */
#ifndef ADV_IO_INTERNAL_H
#define ADV_IO_INTERNAL_H

#include "adv/array.h"
#include "adv/data.h"
#include "adv/status.h"

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

/* Largest NPY header (preamble included) we accept: any v1.0 header, and
 * v2.0/v3.0 dicts up to 64 KiB (numpy refuses above 10000 by default). */
#define ADV__NPY_MAX_HEADER (65536u + 12u)

/* Largest element count * element size we ever consider, even for arrays
 * with a zero dim: keeps adv_array_numel() and adv_array_alloc() far from
 * overflow. */
#define ADV__MAX_DIM_PRODUCT (SIZE_MAX / 16)

/* ---- errors / files (npy.c) ---- */

/* Formats a message into err (no-op when err is NULL); returns `code`:
 * the engine's one error helper (core/util.c). */
int adv__error(adv_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define adv__fail adv__error

/* Prepends `prefix` to the message in err (truncating the tail). */
void adv__err_prefix(adv_err *err, const char *prefix);

/* Reads a whole regular file into a malloc'd buffer, refusing files larger
 * than `max_bytes` (ADV_ELIMIT) before allocating. *buf is NULL on error. */
int adv__read_file(const char *path, size_t max_bytes, uint8_t **buf,
                   size_t *len, adv_err *err);

/* Atomic writer: a temp file next to `path`, renamed over it on commit. */
typedef struct adv__afile {
  int fd;
  int failed;
  char *path;
  char *tmp;
} adv__afile;

int adv__afile_open(adv__afile *f, const char *path, adv_err *err);
int adv__afile_write(adv__afile *f, const void *p, size_t n, adv_err *err);
/* fsync + rename; always releases the handle. */
int adv__afile_commit(adv__afile *f, adv_err *err);
/* Removes the temp file and releases the handle (idempotent). */
void adv__afile_abort(adv__afile *f);

/* ---- NPY header (npy.c) ---- */

typedef struct adv__npy_info {
  adv_dtype dtype;
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  size_t header_len; /* preamble + dict + padding: offset of the data */
  size_t data_len;   /* numel * element size (checked against limits) */
} adv__npy_info;

/* Given the first `avail` bytes of an NPY stream, stores the total header
 * length (offset of the data). Needs at least 12 bytes (10 for v1.0);
 * returns ADV_EFORMAT when the magic/version is wrong or bytes are short. */
int adv__npy_header_len(const uint8_t *b, size_t avail, size_t *hlen,
                        adv_err *err);
/* Parses a complete header of `hlen` bytes (from adv__npy_header_len). */
int adv__npy_parse_header(const uint8_t *b, size_t hlen, adv_io_limits lim,
                          adv__npy_info *info, adv_err *err);
/* Checks an array is well formed for writing (dtype, dims, nbytes). */
int adv__npy_validate_array(const adv_array *a, adv_err *err);
/* Builds a v1.0 header for `a` into a malloc'd buffer (64-byte aligned). */
int adv__npy_format_header(const adv_array *a, uint8_t **hdr, size_t *hlen,
                           adv_err *err);
/* Checks booleans are 0/1. */
int adv__npy_check_bools(const adv_array *a, adv_err *err);

/* ---- bounded inflate (idx.c) ---- */

/* Pulls exactly-sized chunks out of a raw-deflate or gzip stream held in
 * memory; never produces more than asked, so output is bounded by the
 * caller. */
typedef struct adv__zin {
  z_stream zs;
  const uint8_t *next; /* input not yet handed to zlib */
  size_t left;
  int gzip;  /* gzip wrapper (multi-member allowed) vs raw deflate */
  int ended; /* Z_STREAM_END seen on the last member */
  int live;  /* inflateInit succeeded */
  uint64_t total_out;
  uint32_t crc; /* CRC-32 of everything produced */
} adv__zin;

int adv__zin_init(adv__zin *z, const uint8_t *in, size_t n, int gzip,
                  adv_err *err);
/* Inflates exactly n bytes into dst; ADV_EFORMAT if the stream ends early
 * or is corrupt. */
int adv__zin_read(adv__zin *z, void *dst, size_t n, adv_err *err);
/* Succeeds only if the stream ends here with no further output and (for
 * raw deflate) no unused input. */
int adv__zin_finish(adv__zin *z, adv_err *err);
void adv__zin_end(adv__zin *z);

/* ---- in-memory entry points (fuzzing, dataset) ---- */

int adv__idx_read_mem(const void *buf, size_t len, adv_io_limits lim,
                      adv_array *out, adv_err *err);
/* Reads member `name` (without ".npy") of an NPZ image held in memory. */
int adv__npz_read_mem(const void *buf, size_t len, const char *name,
                      adv_io_limits lim, adv_array *out, adv_err *err);

#endif
