/*
 * adv/data.h - readers and writers for the data formats the sandbox accepts:
 * NumPy NPY and NPZ (stored and deflate), IDX (MNIST format, plain or gzip).
 *
 * Every byte read is untrusted: headers are validated, every size is checked
 * against adv_io_limits before anything is allocated, and malformed input
 * returns ADV_EFORMAT / ADV_ELIMIT / ADV_EUNSUPPORTED with a message in
 * `err` (when err != NULL), never a crash.
 *
 * Ownership: output arrays are owned by the caller (adv_array_free()).
 * After an error every output array is left empty (data == NULL).
 */
#ifndef ADV_DATA_H
#define ADV_DATA_H

#include "adv/array.h"
#include "adv/status.h"

typedef struct adv_io_limits {
  size_t max_file_bytes;  /* compressed/raw file size cap */
  size_t max_array_bytes; /* decoded size cap of one array */
  int max_entries;        /* NPZ: max members */
} adv_io_limits;

/* Defaults: 2 GiB file, 4 GiB array, 64 NPZ members. */
adv_io_limits adv_io_default_limits(void);

/* Errors: the `err` argument (may be NULL) is the engine's one message
 * type, adv_err (adv/status.h), filled on failure. */

/* NPY: dtypes <f4 <f8 <i8 <i4 |u1 |i1 |b1 (little-endian, C order only;
 * fortran_order True and object dtypes are ADV_EUNSUPPORTED). */
int adv_npy_read_mem(const void *buf, size_t len, adv_io_limits lim,
                     adv_array *out, adv_err *err);
int adv_npy_read_file(const char *path, adv_io_limits lim, adv_array *out,
                      adv_err *err);
/* Writes version 1.0 NPY atomically (temp file + rename). */
int adv_npy_write_file(const char *path, const adv_array *a, adv_err *err);
/* The same NPY bytes into a malloc'd buffer (*buf, owned by the caller,
 * free()); on error *buf is NULL. For results sent over a pipe. */
int adv_npy_write_mem(const adv_array *a, void **buf, size_t *len,
                      adv_err *err);

/* NPZ (zip of .npy members, stored or deflate). Reads member `name` (without
 * the ".npy" suffix). ADV_ENOTFOUND when absent. */
int adv_npz_read_file(const char *path, const char *name, adv_io_limits lim,
                      adv_array *out, adv_err *err);
/* Writes an NPZ (stored, no compression) with n members names[i] ->
 * arrays[i]; atomically. */
int adv_npz_write_file(const char *path, int n, const char *const *names,
                       const adv_array *arrays, adv_err *err);

/* IDX (MNIST): magic 0x0000 TT ND, big-endian dims; types u8, i8, i16, i32,
 * f32, f64. Gzip detected by magic bytes. u8 stays U8, i16/i32 -> I32
 * (i16 widened), f32 F32, f64 F64. */
int adv_idx_read_file(const char *path, adv_io_limits lim, adv_array *out,
                      adv_err *err);

/*
 * The dataset convention used by every command:
 *   data  = NPZ holding `x` (N x C x H x W float32 in [0,1], or uint8 scaled
 *           by 1/255) and optionally `y` (integer labels), or an NPY / IDX
 *           file of inputs (uint8 scaled to [0,1]); x keeps the file's rank
 *           (N x ... of any rank >= 2): the model's declared input rank
 *           decides how it is read (adv_model_fit_data: N x H x W for an
 *           N x 1 x H x W model gets the channel dim);
 *   labels = optional NPY / IDX file of integer labels (overrides NPZ `y`).
 * On success x is F32 with ndim >= 2 and dims[0] == N, y is I64 with N
 * entries or empty (data NULL) when no labels are available. Labels must
 * be in [0, 2^31); x values must be finite.
 */
typedef struct adv_dataset {
  adv_array x;
  adv_array y;
} adv_dataset;

int adv_dataset_load(const char *data_path, const char *labels_path,
                     adv_io_limits lim, adv_dataset *ds, adv_err *err);
/* The same from bytes in memory (e.g. memfds mapped by the sandboxed
 * runner): `data` (data_len bytes; NPZ, NPY or IDX by content) and
 * optional `labels` (NULL for none). The bytes are only read, never kept;
 * messages call them 'data' and 'labels'. data_len counts against
 * lim.max_file_bytes like a file's size. */
int adv_dataset_load_mem(const void *data, size_t data_len, const void *labels,
                         size_t labels_len, adv_io_limits lim, adv_dataset *ds,
                         adv_err *err);
void adv_dataset_free(adv_dataset *ds);

#endif
