/* status.c - strings for the ADV_STATUS_MAP X-macro (adv/status.h). */
#include "adv/status.h"

const char *adv_strerror(int status) {
  switch (status) {
#define ADV__STATUS_STR(name, val, str)                                        \
  case val:                                                                    \
    return str;
    ADV_STATUS_MAP(ADV__STATUS_STR)
#undef ADV__STATUS_STR
  }
  return "unknown error";
}

const char *adv_err_name(int status) {
  switch (status) {
#define ADV__STATUS_NAME(name, val, str)                                       \
  case val:                                                                    \
    return "ADV_" #name;
    ADV_STATUS_MAP(ADV__STATUS_NAME)
#undef ADV__STATUS_NAME
  }
  return "ADV_UNKNOWN";
}
