/*
 * log.c - stderr for the server (log.h).
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

/* Formats into one buffer so concurrent lines do not interleave. */
static void vline(const char *prefix, const char *fmt, va_list ap) {
  char line[2048];
  vsnprintf(line, sizeof line, fmt, ap);
  fprintf(stderr, "%s%s\n", prefix, line);
}

void sbx__log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline("aisbxd: ", fmt, ap);
  va_end(ap);
}

void sbx__log_raw(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline("", fmt, ap);
  va_end(ap);
}
