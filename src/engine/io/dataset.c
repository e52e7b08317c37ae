/*
 * dataset.c - adv_dataset_load(): the (x, y) convention shared by every
 * command (see adv/data.h).
 *
 * The file type is chosen by content, never by extension:
 *   "\x93NUMPY" -> NPY, "PK\x03\x04" / "PK\x05\x06" -> NPZ,
 *   1f 8b -> gzip IDX, 00 00 <idx type> <ndim> -> IDX.
 * x becomes F32 (F32 checked finite, F64 narrowed and checked, U8 scaled by
 * 1/255) and keeps its rank (the model's declared input rank decides,
 * adv_model_fit_data); labels become a 1-D I64 array of N entries in
 * [0, 2^31).
 */
#include "io/io_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum file_kind { KIND_NPY, KIND_NPZ, KIND_IDX } file_kind;

/* Where a dataset file comes from: a path, or bytes in memory (then
 * `path` is only its name in messages). */
typedef struct input {
  const char *path;
  const uint8_t *buf; /* NULL: read `path` */
  size_t len;
} input;

/* Classifies a file by its first bytes. */
static int sniff(const input *in, file_kind *kind, adv_err *err) {
  if (!in->path)
    return adv__fail(err, ADV_EINVAL, "no file path given");
  uint8_t m[6] = {0};
  size_t n;
  if (in->buf) {
    n = in->len < sizeof(m) ? in->len : sizeof(m);
    memcpy(m, in->buf, n);
  } else {
    FILE *f = fopen(in->path, "rb");
    if (!f)
      return adv__fail(err, ADV_EIO, "cannot open '%s'", in->path);
    n = fread(m, 1, sizeof(m), f);
    fclose(f);
  }
  if (n >= 6 && memcmp(m, "\x93NUMPY", 6) == 0)
    *kind = KIND_NPY;
  else if (n >= 4 && m[0] == 'P' && m[1] == 'K' &&
           ((m[2] == 3 && m[3] == 4) || (m[2] == 5 && m[3] == 6)))
    *kind = KIND_NPZ;
  else if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
    *kind = KIND_IDX;
  else if (n >= 4 && m[0] == 0 && m[1] == 0 &&
           (m[2] == 0x08 || m[2] == 0x09 || m[2] == 0x0B || m[2] == 0x0C ||
            m[2] == 0x0D || m[2] == 0x0E))
    *kind = KIND_IDX;
  else
    return adv__fail(err, ADV_EFORMAT,
                     "'%s' is not an NPY, NPZ or IDX file (unknown magic)",
                     in->path);
  return ADV_OK;
}

/* Prefixes the current error message with a context string. */
static int with_context(adv_err *err, int rc, const char *what,
                        const char *path) {
  char pre[96];
  snprintf(pre, sizeof(pre), "%.8s '%.64s': ", what, path);
  adv__err_prefix(err, pre);
  return rc;
}

/* Reads a single-array file (NPY or IDX) or member `member` of an NPZ. */
static int load_one(const input *in, file_kind kind, const char *member,
                    adv_io_limits lim, adv_array *out, adv_err *err) {
  if (in->buf) {
    if (in->len > lim.max_file_bytes)
      return adv__fail(err, ADV_ELIMIT, "'%s' is above the %zu byte file limit",
                       in->path, lim.max_file_bytes);
    switch (kind) {
    case KIND_NPY:
      return adv_npy_read_mem(in->buf, in->len, lim, out, err);
    case KIND_IDX:
      return adv__idx_read_mem(in->buf, in->len, lim, out, err);
    default:
      return adv__npz_read_mem(in->buf, in->len, member, lim, out, err);
    }
  }
  switch (kind) {
  case KIND_NPY:
    return adv_npy_read_file(in->path, lim, out, err);
  case KIND_IDX:
    return adv_idx_read_file(in->path, lim, out, err);
  default:
    return adv_npz_read_file(in->path, member, lim, out, err);
  }
}

static const char *dtype_name(adv_dtype t) {
  switch (t) {
  case ADV_DTYPE_F32:
    return "float32";
  case ADV_DTYPE_F64:
    return "float64";
  case ADV_DTYPE_I64:
    return "int64";
  case ADV_DTYPE_I32:
    return "int32";
  case ADV_DTYPE_U8:
    return "uint8";
  case ADV_DTYPE_I8:
    return "int8";
  case ADV_DTYPE_BOOL:
    return "bool";
  default:
    return "undefined";
  }
}

/* Turns x into finite F32 with ndim >= 2 and at least one element, rank
 * unchanged. Replaces *x on success. */
static int normalize_x(adv_array *x, adv_io_limits lim, adv_err *err) {
  if (x->ndim < 2)
    return adv__fail(err, ADV_ESHAPE,
                     "inputs need at least 2 dims (N, ...), got %d", x->ndim);
  int64_t numel = adv_array_numel(x);
  if (numel <= 0)
    return adv__fail(err, ADV_ESHAPE, "the dataset holds no samples");
  size_t n = (size_t)numel;
  if (x->dtype == ADV_DTYPE_F32) {
    const float *p = x->data;
    for (size_t i = 0; i < n; i++)
      if (!isfinite(p[i]))
        return adv__fail(err, ADV_EFORMAT, "input value %zu is not finite", i);
    return ADV_OK;
  }
  if (x->dtype != ADV_DTYPE_F64 && x->dtype != ADV_DTYPE_U8)
    return adv__fail(err, ADV_EDTYPE,
                     "inputs must be float32, float64 or uint8, not %s",
                     dtype_name(x->dtype));
  if (n > lim.max_array_bytes / sizeof(float))
    return adv__fail(err, ADV_ELIMIT,
                     "inputs as float32 exceed the %zu byte array limit",
                     lim.max_array_bytes);
  adv_array y;
  int rc = adv_array_alloc(&y, ADV_DTYPE_F32, x->ndim, x->dims);
  if (rc)
    return adv__fail(err, rc, "cannot allocate the float32 inputs");
  float *o = y.data;
  if (x->dtype == ADV_DTYPE_U8) {
    const uint8_t *p = x->data;
    for (size_t i = 0; i < n; i++)
      o[i] = (float)p[i] * (1.0f / 255.0f);
  } else {
    const double *p = x->data;
    for (size_t i = 0; i < n; i++) {
      if (!isfinite(p[i]) || fabs(p[i]) > FLT_MAX) {
        adv_array_free(&y);
        return adv__fail(err, ADV_EFORMAT,
                         "input value %zu is not a finite float32", i);
      }
      o[i] = (float)p[i];
    }
  }
  adv_array_free(x);
  *x = y;
  return ADV_OK;
}

/* Turns labels into a 1-D I64 array of exactly n values in [0, 2^31). */
static int normalize_y(adv_array *y, int64_t n, adv_err *err) {
  if (!(y->ndim == 1 || (y->ndim == 2 && y->dims[1] == 1)))
    return adv__fail(err, ADV_ESHAPE, "labels must be 1-D (N) or (N, 1)");
  if (y->dims[0] != n)
    return adv__fail(err, ADV_ESHAPE, "%lld labels for %lld samples",
                     (long long)y->dims[0], (long long)n);
  adv_array o;
  if (y->dtype != ADV_DTYPE_U8 && y->dtype != ADV_DTYPE_I8 &&
      y->dtype != ADV_DTYPE_I32 && y->dtype != ADV_DTYPE_I64)
    return adv__fail(err, ADV_EDTYPE, "labels must be integers, not %s",
                     dtype_name(y->dtype));
  int rc = adv_array_alloc(&o, ADV_DTYPE_I64, 1, &n);
  if (rc)
    return adv__fail(err, rc, "cannot allocate the labels");
  int64_t *d = o.data;
  for (int64_t i = 0; i < n; i++) {
    int64_t v;
    switch (y->dtype) {
    case ADV_DTYPE_U8:
      v = ((const uint8_t *)y->data)[i];
      break;
    case ADV_DTYPE_I8:
      v = ((const int8_t *)y->data)[i];
      break;
    case ADV_DTYPE_I32:
      v = ((const int32_t *)y->data)[i];
      break;
    default:
      v = ((const int64_t *)y->data)[i];
      break;
    }
    if (v < 0 || v > INT32_MAX) {
      adv_array_free(&o);
      return adv__fail(err, ADV_EFORMAT,
                       "label %lld is %lld, outside [0, 2^31)", (long long)i,
                       (long long)v);
    }
    d[i] = v;
  }
  adv_array_free(y);
  *y = o;
  return ADV_OK;
}

/* The (x, y) convention on a data input and an optional labels input. */
static int load_dataset(const input *data, const input *labels,
                        adv_io_limits lim, adv_dataset *ds, adv_err *err) {
  if (!ds)
    return adv__fail(err, ADV_EINVAL, "no dataset output");
  memset(ds, 0, sizeof(*ds));
  if (!data->path)
    return adv__fail(err, ADV_EINVAL, "no data path given");
  file_kind kind;
  int rc = sniff(data, &kind, err);
  if (rc)
    return rc;
  if (kind == KIND_NPZ) { /* x and y from one archive: parse it once */
    uint8_t *owned = NULL;
    const uint8_t *buf = data->buf;
    size_t len = data->len;
    if (!buf) {
      rc = adv__read_file(data->path, lim.max_file_bytes, &owned, &len, err);
      buf = owned;
    } else if (len > lim.max_file_bytes) {
      rc = adv__fail(err, ADV_ELIMIT, "'%s' is above the %zu byte file limit",
                     data->path, lim.max_file_bytes);
    }
    if (!rc)
      rc = adv__npz_read_mem(buf, len, "x", lim, &ds->x, err);
    if (!rc && !labels) {
      rc = adv__npz_read_mem(buf, len, "y", lim, &ds->y, err);
      if (rc == ADV_ENOTFOUND)
        rc = ADV_OK; /* labels are optional */
    }
    free(owned);
  } else {
    rc = load_one(data, kind, NULL, lim, &ds->x, err);
  }
  if (rc) {
    adv_dataset_free(ds);
    return with_context(err, rc, "data", data->path);
  }
  rc = normalize_x(&ds->x, lim, err);
  if (rc) {
    adv_dataset_free(ds);
    return with_context(err, rc, "data", data->path);
  }
  if (labels) {
    rc = sniff(labels, &kind, err);
    if (!rc)
      rc = load_one(labels, kind, "y", lim, &ds->y, err);
    if (rc) {
      adv_dataset_free(ds);
      return with_context(err, rc, "labels", labels->path);
    }
  }
  if (ds->y.data) {
    rc = normalize_y(&ds->y, ds->x.dims[0], err);
    if (rc) {
      adv_dataset_free(ds);
      return with_context(err, rc, "labels",
                          labels ? labels->path : data->path);
    }
  }
  return ADV_OK;
}

int adv_dataset_load(const char *data_path, const char *labels_path,
                     adv_io_limits lim, adv_dataset *ds, adv_err *err) {
  input d = {data_path, NULL, 0}, l = {labels_path, NULL, 0};
  return load_dataset(&d, labels_path ? &l : NULL, lim, ds, err);
}

int adv_dataset_load_mem(const void *data, size_t data_len, const void *labels,
                         size_t labels_len, adv_io_limits lim, adv_dataset *ds,
                         adv_err *err) {
  if (!data || (!labels && labels_len)) {
    if (ds)
      memset(ds, 0, sizeof(*ds));
    return adv__fail(err, ADV_EINVAL, "no data given");
  }
  input d = {"data", data, data_len}, l = {"labels", labels, labels_len};
  return load_dataset(&d, labels ? &l : NULL, lim, ds, err);
}

void adv_dataset_free(adv_dataset *ds) {
  if (!ds)
    return;
  adv_array_free(&ds->x);
  adv_array_free(&ds->y);
}
