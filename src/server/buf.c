/*
 * buf.c - the capped text buffer (buf.h).
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbx__buf_put(sbx__buf *b, const char *s, size_t n) {
  if (b->err)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *np = cap <= b->max ? realloc(b->p, cap) : NULL;
    if (!np) {
      b->err = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void sbx__buf_str(sbx__buf *b, const char *s) {
  sbx__buf_put(b, s, strlen(s));
}

void sbx__buf_int(sbx__buf *b, int64_t v) {
  char t[24]; /* digits from the end; no snprintf on the hot path */
  size_t i = sizeof t;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    t[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    t[--i] = '-';
  sbx__buf_put(b, t + i, sizeof t - i);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    len = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    len = 4, cp = c & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

void sbx__buf_json_str(sbx__buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  sbx__buf_put(b, "\"", 1);
  size_t run = 0; /* start of the pending unescaped run */
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    const char *esc = NULL;
    char ub[8];
    size_t step = 1;
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20) {
      snprintf(ub, sizeof ub, "\\u%04x", c);
      esc = ub;
    } else if (c >= 0x80) {
      step = utf8_len(u + i, n - i);
      if (!step) {
        esc = "\\ufffd";
        step = 1;
      }
    }
    if (esc) {
      sbx__buf_put(b, s + run, i - run);
      sbx__buf_str(b, esc);
      run = i + step;
    }
    i += step;
  }
  sbx__buf_put(b, s + run, n - run);
  sbx__buf_put(b, "\"", 1);
}
