/* status.c - sbx_strerror / sbx_err_name from the SBX_STATUS_MAP X-macro,
 * and the sbx_err message record. */
#include "sbx/status.h"

#include <stdarg.h>
#include <stdio.h>

const char *sbx_strerror(int status) {
  switch (status) {
#define SBX__STATUS_STR(name, val, str)                                        \
  case val:                                                                    \
    return str;
    SBX_STATUS_MAP(SBX__STATUS_STR)
#undef SBX__STATUS_STR
  }
  return "unknown status";
}

const char *sbx_err_name(int status) {
  switch (status) {
#define SBX__STATUS_NAME(name, val, str)                                       \
  case val:                                                                    \
    return "SBX_" #name;
    SBX_STATUS_MAP(SBX__STATUS_NAME)
#undef SBX__STATUS_NAME
  }
  return "SBX_UNKNOWN";
}

int sbx_err_set(sbx_err *e, int status, const char *fmt, ...) {
  if (!e)
    return status;
  e->status = status;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    e->msg[0] = 0;
  return status;
}

void sbx_err_clear(sbx_err *e) {
  if (e) {
    e->status = 0;
    e->msg[0] = 0;
  }
}
