/*
 * sbx/status.h - status codes shared by every service (sbx_) function.
 *
 * 0 is success, every error is negative. One X-macro makes the enum, the
 * messages and the symbolic names so they can never drift apart (libuv /
 * CURLcode style). New codes are always added last; values never change.
 */
#ifndef SBX_STATUS_H
#define SBX_STATUS_H

#include "adv/status.h"

#define SBX_STATUS_MAP(X)                                                      \
  X(OK, 0, "success")                                                          \
  X(ENOMEM, -1, "out of memory")                                               \
  X(EINVAL, -2, "invalid argument")                                            \
  X(EIO, -3, "input/output error")                                             \
  X(ENOTFOUND, -4, "not found")                                                \
  X(EEXIST, -5, "already exists")                                              \
  X(EPERM, -6, "permission denied")                                            \
  X(ECRYPTO, -7, "integrity check failed (tampered data, wrong key or "        \
                 "wrong context)")                                             \
  X(ENOSPC, -8, "no space left on device or quota exceeded")                   \
  X(ELIMIT, -9, "input exceeds a hard size limit")                             \
  X(EBACKEND, -10, "storage backend error")                                    \
  X(ECONFLICT, -11, "conflicting concurrent update")                           \
  X(EFORMAT, -12, "malformed or truncated input")                              \
  X(EUNSUPPORTED, -13, "unsupported feature or version")                       \
  X(EAUTH, -14, "authentication failed")                                       \
  X(EKEY, -15, "key unavailable (missing, shredded or wrong master key)")      \
  X(ETIMEDOUT, -16, "timed out")                                               \
  X(EBUSY, -17, "resource busy")                                               \
  X(EABORTED, -18, "aborted by caller")                                        \
  X(ERATE, -19, "rate limit exceeded")                                         \
  X(EEXPIRED, -20, "expired or revoked")                                       \
  X(EINTERNAL, -21, "internal error")

typedef enum sbx_status {
#define SBX__STATUS_ENUM(name, val, str) SBX_##name = (val),
  SBX_STATUS_MAP(SBX__STATUS_ENUM)
#undef SBX__STATUS_ENUM
} sbx_status;

/* The engine's codes (adv/status.h) share names with ours but not values
 * (ADV_ENOTFOUND is -8, SBX_ENOTFOUND -4). One row per engine code, so a
 * code added to ADV_STATUS_MAP without a row here fails to compile
 * (sbx_status_from_adv's switch names SBX__FROM_ADV_<name>). */
#define SBX__FROM_ADV_OK SBX_OK
#define SBX__FROM_ADV_ENOMEM SBX_ENOMEM
#define SBX__FROM_ADV_EINVAL SBX_EINVAL
#define SBX__FROM_ADV_EIO SBX_EIO
#define SBX__FROM_ADV_EFORMAT SBX_EFORMAT
#define SBX__FROM_ADV_ELIMIT SBX_ELIMIT
#define SBX__FROM_ADV_EUNSUPPORTED SBX_EUNSUPPORTED
#define SBX__FROM_ADV_ESHAPE SBX_EINVAL /* input does not fit the model */
#define SBX__FROM_ADV_ENOTFOUND SBX_ENOTFOUND
#define SBX__FROM_ADV_EABORTED SBX_EABORTED
#define SBX__FROM_ADV_EDTYPE SBX_EUNSUPPORTED /* a data type we lack */
#define SBX__FROM_ADV_EINTERNAL SBX_EINTERNAL

/* Maps an engine status (adv_status) to the service's: the same name where
 * both have it, ADV_ESHAPE -> SBX_EINVAL, ADV_EDTYPE -> SBX_EUNSUPPORTED,
 * an unknown code -> SBX_EINTERNAL. Header-only: no link dependency on
 * libadv. */
static inline int sbx_status_from_adv(int adv_rc) {
  switch (adv_rc) {
#define SBX__FROM_ADV_CASE(name, val, str)                                     \
  case ADV_##name:                                                             \
    return SBX__FROM_ADV_##name;
    ADV_STATUS_MAP(SBX__FROM_ADV_CASE)
#undef SBX__FROM_ADV_CASE
  default:
    return SBX_EINTERNAL;
  }
}

/* Returns a static, never-NULL description of a status code (unknown codes
 * give "unknown status"). */
const char *sbx_strerror(int status);
/* Returns the static symbolic name ("SBX_ECRYPTO") of a status code. */
const char *sbx_err_name(int status);

#endif
