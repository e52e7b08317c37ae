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
/* The value of one hex digit, or -1. */
int sbx__hexval(char c);

/* ---- pkcs11.c: a master key in a PKCS#11 token (behind sbx_kek) ---- */
typedef struct sbx__p11 sbx__p11;
/* Logs in to the token of uri and finds its AES key object (by label). */
int sbx__p11_open(const char *uri, sbx__p11 **out);
void sbx__p11_free(sbx__p11 *p);
void sbx__p11_id(const sbx__p11 *p, uint8_t id[SBX_KEY_ID_LEN]);
/* sbx_key_wrap / sbx_key_unwrap, computed by the token (in: a checked
 * SBX_WRAPPED_KEY_LEN blob). Thread-safe (a mutex per session). */
int sbx__p11_wrap(sbx__p11 *p, const void *ctx, size_t ctxlen,
                  const sbx_key *key, uint8_t out[SBX_WRAPPED_KEY_LEN]);
int sbx__p11_unwrap(sbx__p11 *p, const void *ctx, size_t ctxlen,
                    const uint8_t *in, sbx_key *key);

#endif
