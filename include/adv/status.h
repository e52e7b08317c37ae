/*
 * adv/status.h - status codes shared by every libadv function.
 *
 * 0 is success, every error is negative. One X-macro makes the enum and the
 * strings so they can never drift apart (libuv / CURLcode style). New codes
 * are always added last.
 */
#ifndef ADV_STATUS_H
#define ADV_STATUS_H

#define ADV_STATUS_MAP(X)                                                      \
  X(OK, 0, "success")                                                          \
  X(ENOMEM, -1, "out of memory")                                               \
  X(EINVAL, -2, "invalid argument")                                            \
  X(EIO, -3, "input/output error")                                             \
  X(EFORMAT, -4, "malformed or truncated input")                               \
  X(ELIMIT, -5, "input exceeds a hard size limit")                             \
  X(EUNSUPPORTED, -6, "unsupported feature")                                   \
  X(ESHAPE, -7, "incompatible tensor shapes")                                  \
  X(ENOTFOUND, -8, "not found")                                                \
  X(EABORTED, -9, "aborted by caller")                                         \
  X(EDTYPE, -10, "unsupported or mismatched data type")                        \
  X(EINTERNAL, -11, "internal error")

typedef enum adv_status {
#define ADV__STATUS_ENUM(name, val, str) ADV_##name = (val),
  ADV_STATUS_MAP(ADV__STATUS_ENUM)
#undef ADV__STATUS_ENUM
} adv_status;

/* The one message type of libadv: functions taking `adv_err *err` (may be
 * NULL) write a human-readable reason there when they fail. */
typedef struct adv_err {
  char msg[512];
} adv_err;

/* Returns a static, never-NULL description of a status code. */
const char *adv_strerror(int status);
/* Returns the symbolic name ("ADV_EFORMAT") of a status code. */
const char *adv_err_name(int status);

#endif
