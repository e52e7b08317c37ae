/*
 * s3_sb.h - private to the S3 backend (s3*.c): a growable, NUL-terminated
 * string with a sticky out-of-memory flag (check .oom once at the end), and
 * RFC 3986 percent-encoding as S3 wants it. Header-only.
 */
#ifndef SBX_STORE_S3_SB_H
#define SBX_STORE_S3_SB_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/status.h"

typedef struct sb {
  char *p;
  size_t n, cap;
  int oom;
} sb;

static inline void sb_free(sb *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static inline void sb_add(sb *b, const void *s, size_t n) {
  if (b->oom)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static inline void sb_adds(sb *b, const char *s) {
  sb_add(b, s, strlen(s));
}

static inline void sb_addf(sb *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp)
    b->oom = 1;
  else
    sb_add(b, tmp, (size_t)n);
}

static inline int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static inline void sb_enc(sb *b, const char *s, int keep_slash) {
  static const char hx[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (unreserved(*p) || (keep_slash && *p == '/')) {
      sb_add(b, p, 1);
    } else {
      char e[3] = {'%', hx[*p >> 4], hx[*p & 15]};
      sb_add(b, e, 3);
    }
  }
}

static inline int sb_out(sb *b, char *out, size_t cap) {
  int rc = b->oom ? SBX_ENOMEM : (b->n + 1 > cap ? SBX_ELIMIT : SBX_OK);
  if (!rc)
    memcpy(out, b->p ? b->p : "", b->n + 1);
  sb_free(b);
  return rc;
}

#endif
