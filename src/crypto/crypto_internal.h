/* crypto_internal.h - helpers shared inside src/crypto only. */
#ifndef SBX_CRYPTO_INTERNAL_H
#define SBX_CRYPTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/crypto.h"

static inline void sbx__be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)(v & 0xff);
    v >>= 8;
  }
}

/* Maps a GnuTLS error code to an sbx_status. */
int sbx__gnutls_status(int gnutls_rc);

#endif
