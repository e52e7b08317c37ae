/* status.c - sbx_strerror / sbx_err_name from the SBX_STATUS_MAP X-macro. */
#include "sbx/status.h"

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
