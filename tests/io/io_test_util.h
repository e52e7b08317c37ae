/*
 * io_test_util.h - helpers shared by the io tests: the value formula used
 * by gen_testdata.py, file slurping, and array consistency checks.
 */
#ifndef ADV_IO_TEST_UTIL_H
#define ADV_IO_TEST_UTIL_H

#include "adv/data.h"
#include "adv/status.h"
#include "harness.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expected value of element i for a generator dtype code (see
 * gen_testdata.py value()). "i2" is the IDX int16 file (i1 * 200). */
static inline double util_value(const char *code, int64_t i) {
  if (!strcmp(code, "f4") || !strcmp(code, "f8"))
    return (double)(i % 97) * 0.25 - 7.0;
  int64_t b = (i * 37) % 251;
  if (!strcmp(code, "i8"))
    return (double)((b - 125) * 4000000000LL);
  if (!strcmp(code, "i4"))
    return (double)((b - 125) * 1000000);
  if (!strcmp(code, "i1"))
    return (double)(b - 125);
  if (!strcmp(code, "i2"))
    return (double)((b - 125) * 200);
  if (!strcmp(code, "u1"))
    return (double)b;
  if (!strcmp(code, "b1"))
    return i % 3 == 0;
  return -1e300;
}

static inline adv_dtype util_dtype(const char *code) {
  if (!strcmp(code, "f4"))
    return ADV_DTYPE_F32;
  if (!strcmp(code, "f8"))
    return ADV_DTYPE_F64;
  if (!strcmp(code, "i8"))
    return ADV_DTYPE_I64;
  if (!strcmp(code, "i4") || !strcmp(code, "i2"))
    return ADV_DTYPE_I32;
  if (!strcmp(code, "u1"))
    return ADV_DTYPE_U8;
  if (!strcmp(code, "i1"))
    return ADV_DTYPE_I8;
  if (!strcmp(code, "b1"))
    return ADV_DTYPE_BOOL;
  return ADV_DTYPE_UNDEFINED;
}

/* Element i of any array as a double (int64 values used here are exact). */
static inline double util_get(const adv_array *a, int64_t i) {
  switch (a->dtype) {
  case ADV_DTYPE_F32:
    return ((const float *)a->data)[i];
  case ADV_DTYPE_F64:
    return ((const double *)a->data)[i];
  case ADV_DTYPE_I64:
    return (double)((const int64_t *)a->data)[i];
  case ADV_DTYPE_I32:
    return ((const int32_t *)a->data)[i];
  case ADV_DTYPE_U8:
  case ADV_DTYPE_BOOL:
    return ((const uint8_t *)a->data)[i];
  case ADV_DTYPE_I8:
    return ((const int8_t *)a->data)[i];
  default:
    return -1e300;
  }
}

/* Number of elements that differ from the formula. */
static inline int64_t util_mismatches(const adv_array *a, const char *code) {
  int64_t bad = 0, n = adv_array_numel(a);
  for (int64_t i = 0; i < n; i++)
    if (util_get(a, i) != util_value(code, i))
      bad++;
  return bad;
}

/* Fills a with the formula values. */
static inline void util_fill(adv_array *a, const char *code) {
  int64_t n = adv_array_numel(a);
  for (int64_t i = 0; i < n; i++) {
    double v = util_value(code, i);
    switch (a->dtype) {
    case ADV_DTYPE_F32:
      ((float *)a->data)[i] = (float)v;
      break;
    case ADV_DTYPE_F64:
      ((double *)a->data)[i] = v;
      break;
    case ADV_DTYPE_I64:
      ((int64_t *)a->data)[i] = (int64_t)v;
      break;
    case ADV_DTYPE_I32:
      ((int32_t *)a->data)[i] = (int32_t)v;
      break;
    case ADV_DTYPE_U8:
    case ADV_DTYPE_BOOL:
      ((uint8_t *)a->data)[i] = (uint8_t)v;
      break;
    case ADV_DTYPE_I8:
      ((int8_t *)a->data)[i] = (int8_t)v;
      break;
    default:
      break;
    }
  }
}

/* Reads a whole file (test inputs are small); NULL if unreadable. */
static inline uint8_t *util_slurp(const char *path, size_t *len) {
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return b;
}

static inline int util_spit(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t w = n ? fwrite(p, 1, n, f) : 0;
  return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* An output array that must be empty after an error. */
static inline int util_is_empty(const adv_array *a) {
  return a->data == NULL && a->nbytes == 0 && a->ndim == 0;
}

/* A successful array must be self-consistent. */
static inline int util_is_consistent(const adv_array *a) {
  return a->data != NULL &&
         a->nbytes == (size_t)adv_array_numel(a) * adv_dtype_size(a->dtype);
}

#endif
