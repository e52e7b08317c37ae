/*
 * pb.h - a minimal, bounds-checked protobuf wire-format reader.
 *
 * A pb_reader walks [p, end). Every read checks the remaining length; any
 * malformed input (truncated varint, length beyond the buffer, group wire
 * types) sets r->bad and makes every later read fail, so callers can check
 * once per message. Nothing allocates.
 */
#ifndef ADV_PB_H
#define ADV_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pb_reader {
  const uint8_t *p, *end;
  bool bad;
} pb_reader;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static inline pb_reader pb_init(const void *buf, size_t len) {
  pb_reader r = {(const uint8_t *)buf, (const uint8_t *)buf + len, false};
  return r;
}

static inline bool pb_more(const pb_reader *r) {
  return !r->bad && r->p < r->end;
}

/* Reads a base-128 varint of at most 10 bytes. */
static inline uint64_t pb_varint(pb_reader *r) {
  uint64_t v = 0;
  for (int s = 0; s < 70; s += 7) {
    if (r->p >= r->end) {
      r->bad = true;
      return 0;
    }
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << s;
    if (!(b & 0x80))
      return v;
  }
  r->bad = true;
  return 0;
}

/* Reads a field key; returns false at end of message or on error. */
static inline bool pb_key(pb_reader *r, uint32_t *field, int *wt) {
  if (!pb_more(r))
    return false;
  uint64_t k = pb_varint(r);
  if (r->bad)
    return false;
  *field = (uint32_t)(k >> 3);
  *wt = (int)(k & 7);
  if (*field == 0 || k >> 32) {
    r->bad = true;
    return false;
  }
  return true;
}

static inline uint32_t pb_fixed32(pb_reader *r) {
  if (r->end - r->p < 4) {
    r->bad = true;
    return 0;
  }
  uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 |
               (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
  r->p += 4;
  return v;
}

static inline uint64_t pb_fixed64(pb_reader *r) {
  uint64_t lo = pb_fixed32(r), hi = pb_fixed32(r);
  return lo | hi << 32;
}

/* Reads a length-delimited payload: returns a sub-reader over it. */
static inline pb_reader pb_bytes(pb_reader *r) {
  pb_reader s = {NULL, NULL, true};
  uint64_t n = pb_varint(r);
  if (r->bad)
    return s;
  if (n > (uint64_t)(r->end - r->p)) {
    r->bad = true;
    return s;
  }
  s.p = r->p;
  s.end = r->p + n;
  s.bad = false;
  r->p += n;
  return s;
}

/* Skips a field of wire type wt. Groups (3, 4) are refused. */
static inline void pb_skip(pb_reader *r, int wt) {
  switch (wt) {
  case PB_VARINT:
    (void)pb_varint(r);
    break;
  case PB_I64:
    (void)pb_fixed64(r);
    break;
  case PB_LEN:
    (void)pb_bytes(r);
    break;
  case PB_I32:
    (void)pb_fixed32(r);
    break;
  default:
    r->bad = true;
  }
}

#endif
