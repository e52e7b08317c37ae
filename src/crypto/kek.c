/*
 * kek.c - master key handles (sbx_kek): a software key or a PKCS#11 token
 * key behind one wrap/unwrap interface, and sealed files for small secrets
 * (the server's TLS and JWT private keys). See sbx/crypto.h.
 */
#include <stdlib.h>
#include <string.h>

#include "crypto_internal.h"

struct sbx_kek {
  int token; /* 0: sw holds the key; 1: p11 */
  sbx_key sw;
  sbx__p11 *p11;
};

#define BLOB_MAGIC "SBXK"
#define BLOB_HDR 8
#define BLOB_MAX (64 * 1024)

int sbx_kek_from_key(const sbx_key *k, sbx_kek **out) {
  if (!k || !out)
    return SBX_EINVAL;
  sbx_kek *e = calloc(1, sizeof *e);
  if (!e)
    return SBX_ENOMEM;
  e->sw = *k;
  *out = e;
  return SBX_OK;
}

int sbx_kek_open(const char *spec, sbx_kek **out) {
  if (!spec || !out)
    return SBX_EINVAL;
  *out = NULL;
  if (!strncmp(spec, "pkcs11:", 7)) {
    sbx__p11 *p = NULL;
    int rc = sbx__p11_open(spec, &p);
    if (rc)
      return rc;
    sbx_kek *e = calloc(1, sizeof *e);
    if (!e) {
      sbx__p11_free(p);
      return SBX_ENOMEM;
    }
    e->token = 1;
    e->p11 = p;
    *out = e;
    return SBX_OK;
  }
  sbx_key k;
  int rc = sbx_master_key_load(spec, &k);
  if (!rc)
    rc = sbx_kek_from_key(&k, out);
  sbx_key_wipe(&k);
  return rc;
}

int sbx_kek_in_token(const sbx_kek *kek) {
  return kek && kek->token;
}

int sbx_kek_wrap(sbx_kek *kek, const void *ctx, size_t ctxlen,
                 const sbx_key *key, uint8_t out[SBX_WRAPPED_KEY_LEN]) {
  if (!kek || !key || !out)
    return SBX_EINVAL;
  if (!kek->token)
    return sbx_key_wrap(&kek->sw, ctx, ctxlen, key, out);
  return sbx__p11_wrap(kek->p11, ctx, ctxlen, key, out);
}

int sbx_kek_unwrap(sbx_kek *kek, const void *ctx, size_t ctxlen,
                   const uint8_t *in, size_t inlen, sbx_key *key) {
  if (!kek || !key)
    return SBX_EINVAL;
  if (!kek->token)
    return sbx_key_unwrap(&kek->sw, ctx, ctxlen, in, inlen, key);
  uint8_t id[SBX_KEY_ID_LEN];
  int rc = sbx_wrapped_kek_id(in, inlen, id); /* format and version */
  if (!rc)
    rc = sbx__p11_unwrap(kek->p11, ctx, ctxlen, in, key);
  if (rc)
    sbx_key_wipe(key);
  return rc;
}

void sbx_kek_id(const sbx_kek *kek, uint8_t id[SBX_KEY_ID_LEN]) {
  if (!kek->token)
    sbx_key_id(&kek->sw, id);
  else
    sbx__p11_id(kek->p11, id);
}

void sbx_kek_free(sbx_kek *kek) {
  if (!kek)
    return;
  sbx_key_wipe(&kek->sw);
  sbx__p11_free(kek->p11);
  free(kek);
}

int sbx_kek_seal_blob(sbx_kek *kek, const char *ctx, const void *pt, size_t n,
                      uint8_t **out, size_t *outlen) {
  if (!kek || !ctx || !out || !outlen || (n && !pt) || n > BLOB_MAX)
    return SBX_EINVAL;
  *out = NULL;
  size_t total = BLOB_HDR + SBX_WRAPPED_KEY_LEN + n + SBX_SEAL_OVERHEAD;
  uint8_t *b = malloc(total);
  if (!b)
    return SBX_ENOMEM;
  memcpy(b, BLOB_MAGIC, 4);
  b[4] = 1;
  b[5] = b[6] = b[7] = 0;
  sbx_key dk;
  int rc = sbx_key_generate(&dk);
  if (!rc)
    rc = sbx_kek_wrap(kek, ctx, strlen(ctx), &dk, b + BLOB_HDR);
  if (!rc)
    rc = sbx_seal(&dk, ctx, strlen(ctx), pt, n,
                  b + BLOB_HDR + SBX_WRAPPED_KEY_LEN);
  sbx_key_wipe(&dk);
  if (rc) {
    free(b);
    return rc;
  }
  *out = b;
  *outlen = total;
  return SBX_OK;
}

int sbx_kek_open_blob(sbx_kek *kek, const char *ctx, const uint8_t *in,
                      size_t inlen, uint8_t **out, size_t *outlen) {
  if (!kek || !ctx || !in || !out || !outlen)
    return SBX_EINVAL;
  *out = NULL;
  if (inlen < BLOB_HDR + SBX_WRAPPED_KEY_LEN + SBX_SEAL_OVERHEAD ||
      memcmp(in, BLOB_MAGIC, 4) || in[4] != 1)
    return SBX_EFORMAT;
  size_t n = inlen - BLOB_HDR - SBX_WRAPPED_KEY_LEN - SBX_SEAL_OVERHEAD;
  uint8_t *b = malloc(n + 1);
  if (!b)
    return SBX_ENOMEM;
  sbx_key dk;
  int rc = sbx_kek_unwrap(kek, ctx, strlen(ctx), in + BLOB_HDR,
                          SBX_WRAPPED_KEY_LEN, &dk);
  size_t got = 0;
  if (!rc)
    rc = sbx_open(&dk, ctx, strlen(ctx), in + BLOB_HDR + SBX_WRAPPED_KEY_LEN,
                  inlen - BLOB_HDR - SBX_WRAPPED_KEY_LEN, b, &got);
  sbx_key_wipe(&dk);
  if (rc) {
    sbx_memwipe(b, n + 1);
    free(b);
    return rc;
  }
  b[got] = 0;
  *out = b;
  *outlen = got;
  return SBX_OK;
}
