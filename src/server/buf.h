/*
 * buf.h - growable text buffer for hand-written JSON and text responses,
 * capped at max bytes (curlx_dyn style). After any failure (cap, memory)
 * err is set and further appends are ignored; the caller checks err once.
 * Init with {NULL, 0, 0, max, 0}; free(b.p) unless handed on.
 */
#ifndef SBX_SERVER_BUF_H
#define SBX_SERVER_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct sbx__buf {
  char *p; /* NUL-terminated when non-NULL */
  size_t n, cap, max;
  int err;
} sbx__buf;

void sbx__buf_put(sbx__buf *b, const char *s, size_t n);
void sbx__buf_str(sbx__buf *b, const char *s);
void sbx__buf_int(sbx__buf *b, int64_t v);
/* A JSON string: quoted, escaped like jansson (", \, control characters),
 * invalid UTF-8 sequences replaced by U+FFFD. */
void sbx__buf_json_str(sbx__buf *b, const char *s, size_t n);

#endif
