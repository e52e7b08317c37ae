/*
 * crypto.c - random, hashing, key wrapping and sealed fields on GnuTLS.
 * Formats are documented in include/sbx/crypto.h and docs/storage.md.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_internal.h"

#define WRAP_MAGIC "SBXW"
#define WRAP_HDR_LEN 16 /* magic, version, alg, 2 reserved, kek_id */
#define SEAL_MAGIC "SBXF"
#define SEAL_HDR_LEN 8
#define MAX_CTX_LEN 1024

int sbx__gnutls_status(int rc) {
  switch (rc) {
  case 0:
    return SBX_OK;
  case GNUTLS_E_MEMORY_ERROR:
    return SBX_ENOMEM;
  case GNUTLS_E_DECRYPTION_FAILED:
    return SBX_ECRYPTO;
  case GNUTLS_E_INVALID_REQUEST:
  case GNUTLS_E_SHORT_MEMORY_BUFFER:
    return SBX_EINVAL;
  default:
    return SBX_EINTERNAL;
  }
}

int sbx_random(void *buf, size_t n) {
  if (!n)
    return SBX_OK;
  if (!buf)
    return SBX_EINVAL;
  return gnutls_rnd(GNUTLS_RND_RANDOM, buf, n) ? SBX_EINTERNAL : SBX_OK;
}

int sbx_key_generate(sbx_key *k) {
  if (!k)
    return SBX_EINVAL;
  if (gnutls_rnd(GNUTLS_RND_KEY, k->b, sizeof k->b)) {
    sbx_key_wipe(k);
    return SBX_EINTERNAL;
  }
  return SBX_OK;
}

void sbx_memwipe(void *p, size_t n) {
  if (p && n)
    explicit_bzero(p, n);
}

void sbx_key_wipe(sbx_key *k) {
  if (k)
    explicit_bzero(k->b, sizeof k->b);
}

int sbx_ct_equal(const void *a, const void *b, size_t n) {
  const volatile uint8_t *x = a, *y = b;
  uint8_t d = 0;
  for (size_t i = 0; i < n; i++)
    d |= (uint8_t)(x[i] ^ y[i]);
  return d == 0;
}

void sbx_key_id(const sbx_key *k, uint8_t id[SBX_KEY_ID_LEN]) {
  static const char label[] = "sbx key id v1";
  uint8_t mac[SBX_SHA256_LEN];
  sbx_hmac_sha256(k->b, SBX_KEY_LEN, label, sizeof label - 1, mac);
  memcpy(id, mac, SBX_KEY_ID_LEN);
}

void sbx_hex(const void *in, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  const uint8_t *p = in;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[p[i] >> 4];
    out[2 * i + 1] = d[p[i] & 15];
  }
  out[2 * n] = 0;
}

int sbx__hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int sbx_unhex(const char *hex, size_t hexlen, void *out, size_t n) {
  uint8_t *o = out;
  if (!hex || hexlen != 2 * n)
    return SBX_EFORMAT;
  for (size_t i = 0; i < n; i++) {
    int hi = sbx__hexval(hex[2 * i]), lo = sbx__hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      sbx_memwipe(out, n);
      return SBX_EFORMAT;
    }
    o[i] = (uint8_t)(hi << 4 | lo);
  }
  return SBX_OK;
}

/* ---- hashing ---- */

int sbx_sha256(const void *data, size_t n, uint8_t out[SBX_SHA256_LEN]) {
  return sbx__gnutls_status(
      gnutls_hash_fast(GNUTLS_DIG_SHA256, n ? data : "", n, out));
}

int sbx_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n,
                    uint8_t out[SBX_SHA256_LEN]) {
  return sbx__gnutls_status(gnutls_hmac_fast(
      GNUTLS_MAC_SHA256, keylen ? key : "", keylen, n ? msg : "", n, out));
}

int sbx_sha256_init(sbx_sha256_ctx *c) {
  gnutls_hash_hd_t h;
  if (!c)
    return SBX_EINVAL;
  c->h = NULL;
  int rc = gnutls_hash_init(&h, GNUTLS_DIG_SHA256);
  if (rc)
    return sbx__gnutls_status(rc);
  c->h = h;
  return SBX_OK;
}

int sbx_sha256_update(sbx_sha256_ctx *c, const void *data, size_t n) {
  if (!c || !c->h)
    return SBX_EINVAL;
  if (!n)
    return SBX_OK;
  return sbx__gnutls_status(gnutls_hash((gnutls_hash_hd_t)c->h, data, n));
}

int sbx_sha256_final(sbx_sha256_ctx *c, uint8_t out[SBX_SHA256_LEN]) {
  if (!c || !c->h)
    return SBX_EINVAL;
  gnutls_hash_deinit((gnutls_hash_hd_t)c->h, out);
  c->h = NULL;
  return SBX_OK;
}

void sbx_sha256_free(sbx_sha256_ctx *c) {
  if (c && c->h) {
    gnutls_hash_deinit((gnutls_hash_hd_t)c->h, NULL);
    c->h = NULL;
  }
}

/* ---- one-shot AEAD with a composed associated data ---- */

static int aead_once(int enc, const sbx_key *k, const uint8_t nonce[12],
                     const uint8_t *hdr, size_t hdrlen, const void *ctx,
                     size_t ctxlen, const uint8_t *in, size_t inlen,
                     uint8_t *out, size_t *outlen) {
  uint8_t aad[64 + MAX_CTX_LEN];
  gnutls_aead_cipher_hd_t h;
  gnutls_datum_t kd = {(unsigned char *)k->b, SBX_KEY_LEN};
  if (hdrlen > 64 || ctxlen > MAX_CTX_LEN || (ctxlen && !ctx))
    return SBX_EINVAL;
  memcpy(aad, hdr, hdrlen);
  if (ctxlen)
    memcpy(aad + hdrlen, ctx, ctxlen);
  int rc = gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &kd);
  if (rc)
    return sbx__gnutls_status(rc);
  if (enc)
    rc = gnutls_aead_cipher_encrypt(h, nonce, 12, aad, hdrlen + ctxlen,
                                    SBX_TAG_LEN, in, inlen, out, outlen);
  else
    rc = gnutls_aead_cipher_decrypt(h, nonce, 12, aad, hdrlen + ctxlen,
                                    SBX_TAG_LEN, in, inlen, out, outlen);
  gnutls_aead_cipher_deinit(h);
  return sbx__gnutls_status(rc);
}

/* ---- key wrapping ---- */

int sbx_key_wrap(const sbx_key *kek, const void *ctx, size_t ctxlen,
                 const sbx_key *key, uint8_t out[SBX_WRAPPED_KEY_LEN]) {
  if (!kek || !key || !out)
    return SBX_EINVAL;
  memcpy(out, WRAP_MAGIC, 4);
  out[4] = 1; /* version */
  out[5] = 1; /* AES-256-GCM */
  out[6] = out[7] = 0;
  sbx_key_id(kek, out + 8);
  uint8_t *nonce = out + WRAP_HDR_LEN;
  int rc = sbx_random(nonce, SBX_NONCE_LEN);
  if (rc)
    return rc;
  size_t olen = SBX_KEY_LEN + SBX_TAG_LEN;
  /* associated data: the 16-byte header + the nonce + the caller context */
  rc = aead_once(1, kek, nonce, out, WRAP_HDR_LEN + SBX_NONCE_LEN, ctx,
                 ctxlen, key->b, SBX_KEY_LEN,
                 out + WRAP_HDR_LEN + SBX_NONCE_LEN, &olen);
  if (rc || olen != SBX_KEY_LEN + SBX_TAG_LEN) {
    sbx_memwipe(out, SBX_WRAPPED_KEY_LEN);
    return rc ? rc : SBX_EINTERNAL;
  }
  return SBX_OK;
}

static int wrap_check(const uint8_t *in, size_t inlen) {
  if (!in || inlen != SBX_WRAPPED_KEY_LEN || memcmp(in, WRAP_MAGIC, 4))
    return SBX_EFORMAT;
  if (in[4] != 1 || in[5] != 1)
    return SBX_EUNSUPPORTED;
  return SBX_OK;
}

int sbx_wrapped_kek_id(const uint8_t *in, size_t inlen,
                       uint8_t id[SBX_KEY_ID_LEN]) {
  int rc = wrap_check(in, inlen);
  if (rc)
    return rc;
  memcpy(id, in + 8, SBX_KEY_ID_LEN);
  return SBX_OK;
}

int sbx_key_unwrap(const sbx_key *kek, const void *ctx, size_t ctxlen,
                   const uint8_t *in, size_t inlen, sbx_key *key) {
  if (!kek || !key)
    return SBX_EINVAL;
  int rc = wrap_check(in, inlen);
  if (rc) {
    sbx_key_wipe(key);
    return rc;
  }
  uint8_t tmp[SBX_KEY_LEN + 16];
  size_t olen = sizeof tmp;
  rc = aead_once(0, kek, in + WRAP_HDR_LEN, in, WRAP_HDR_LEN + SBX_NONCE_LEN,
                 ctx, ctxlen, in + WRAP_HDR_LEN + SBX_NONCE_LEN,
                 SBX_KEY_LEN + SBX_TAG_LEN, tmp, &olen);
  if (rc == SBX_OK && olen == SBX_KEY_LEN)
    memcpy(key->b, tmp, SBX_KEY_LEN);
  else {
    sbx_key_wipe(key);
    if (rc == SBX_OK || rc == SBX_EINVAL)
      rc = SBX_ECRYPTO;
  }
  sbx_memwipe(tmp, sizeof tmp);
  return rc;
}

/* ---- sealed fields ---- */

int sbx_seal(const sbx_key *k, const void *ctx, size_t ctxlen, const void *pt,
             size_t n, uint8_t *out) {
  if (!k || !out || (n && !pt))
    return SBX_EINVAL;
  memcpy(out, SEAL_MAGIC, 4);
  out[4] = 1;
  out[5] = out[6] = out[7] = 0;
  int rc = sbx_random(out + SEAL_HDR_LEN, SBX_NONCE_LEN);
  if (rc)
    return rc;
  size_t olen = n + SBX_TAG_LEN;
  rc = aead_once(1, k, out + SEAL_HDR_LEN, out, SEAL_HDR_LEN, ctx, ctxlen,
                 n ? pt : (const void *)"", n,
                 out + SEAL_HDR_LEN + SBX_NONCE_LEN, &olen);
  if (rc)
    sbx_memwipe(out, n + SBX_SEAL_OVERHEAD);
  return rc;
}

int sbx_open(const sbx_key *k, const void *ctx, size_t ctxlen,
             const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen) {
  if (!k || !in || !outlen)
    return SBX_EINVAL;
  if (inlen < SBX_SEAL_OVERHEAD || memcmp(in, SEAL_MAGIC, 4))
    return SBX_EFORMAT;
  if (in[4] != 1)
    return SBX_EUNSUPPORTED;
  size_t n = inlen - SBX_SEAL_OVERHEAD;
  uint8_t dummy[1];
  size_t olen = n;
  int rc = aead_once(0, k, in + SEAL_HDR_LEN, in, SEAL_HDR_LEN, ctx, ctxlen,
                     in + SEAL_HDR_LEN + SBX_NONCE_LEN, n + SBX_TAG_LEN,
                     n ? out : dummy, &olen);
  if (rc || olen != n) {
    if (n && out)
      sbx_memwipe(out, n);
    *outlen = 0;
    return (rc == SBX_OK || rc == SBX_EINVAL) ? SBX_ECRYPTO : rc;
  }
  *outlen = n;
  return SBX_OK;
}
