/*
 * stream.c - chunked streaming AEAD (AES-256-GCM), format in sbx/crypto.h.
 *
 * An encryptor keeps up to one chunk of plaintext buffered, because a chunk
 * may only be sealed once it is known whether it is the last one (the final
 * flag is authenticated). Whole chunks are sealed straight from the caller's
 * buffer when possible, so large writes cost one copy (into the sink).
 * A decryptor symmetrically keeps one sealed chunk buffered until it has
 * seen at least one byte more (then that chunk is not the final one).
 *
 * For the store's pipeline (docs/storage.md): sbx_stream_update_more lets a
 * caller that knows more input follows have the last whole chunk of a write
 * sealed in place too, and a decryptor may rotate over several plaintext
 * output buffers (sbx_stream_set_out_ring) so the consumer can keep reading
 * (hashing) the previous chunks while the next one is decrypted.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_internal.h"

#define STREAM_MAGIC "SBXS"
#define STREAM_VERSION 2 /* written; 1 and 2 are read */
/* associated data: header | be64(index) | final flag [| be64(total), v2] */
#define AAD_MAX (SBX_STREAM_HEADER_LEN + 8 + 1 + 8)
#define OUT_RING_MAX 16
/* a decryptor's plaintext ring never exceeds this (beyond 2 buffers) */
#define OUT_RING_BYTES ((size_t)32 << 20)

struct sbx_stream {
  int decrypt;
  int status; /* sticky error, 0 while healthy */
  int finished;
  gnutls_aead_cipher_hd_t h;
  sbx_key key;
  sbx_sink_fn sink;
  void *sink_ctx;
  uint8_t hdr[SBX_STREAM_HEADER_LEN];
  size_t hdr_len; /* decryptor: header bytes received so far */
  size_t chunk;   /* plaintext bytes per non-final chunk */
  uint64_t index; /* next chunk index */
  uint64_t total; /* plaintext bytes sealed / opened so far */
  uint8_t *buf;   /* plaintext (enc) or sealed chunk (dec) being collected */
  size_t buf_len;
  uint8_t *out; /* sealed (enc) or opened (dec) output scratch: outs[cur] */
  uint8_t *outs[OUT_RING_MAX];
  unsigned nout; /* output buffers (1, or the decryptor's ring size) */
  unsigned cur;
};

uint64_t sbx_stream_ciphertext_len(uint64_t n, unsigned shift) {
  if (!shift)
    shift = SBX_STREAM_DEFAULT_SHIFT;
  uint64_t chunk = (uint64_t)1 << shift;
  uint64_t nchunks = n / chunk + 1; /* the final chunk may be empty */
  if (n && n % chunk == 0)
    nchunks--; /* a full final chunk */
  return SBX_STREAM_HEADER_LEN + n + nchunks * SBX_TAG_LEN;
}

static int stream_alloc(sbx_stream *s) {
  s->buf = malloc(s->chunk + SBX_TAG_LEN);
  if (!s->buf)
    return SBX_ENOMEM;
  if (!s->nout)
    s->nout = 1;
  for (unsigned i = 0; i < s->nout; i++)
    if (!(s->outs[i] = malloc(s->chunk + SBX_TAG_LEN)))
      return SBX_ENOMEM;
  s->cur = 0;
  s->out = s->outs[0];
  gnutls_datum_t kd = {s->key.b, SBX_KEY_LEN};
  int rc = gnutls_aead_cipher_init(&s->h, GNUTLS_CIPHER_AES_256_GCM, &kd);
  if (rc) {
    s->h = NULL;
    return sbx__gnutls_status(rc);
  }
  return SBX_OK;
}

void sbx_stream_free(sbx_stream *s) {
  if (!s)
    return;
  if (s->h)
    gnutls_aead_cipher_deinit(s->h);
  if (s->buf) {
    sbx_memwipe(s->buf, s->chunk + SBX_TAG_LEN);
    free(s->buf);
  }
  for (unsigned i = 0; i < OUT_RING_MAX; i++) {
    if (s->outs[i]) {
      sbx_memwipe(s->outs[i], s->chunk + SBX_TAG_LEN);
      free(s->outs[i]);
    }
  }
  sbx_memwipe(s, sizeof *s);
  free(s);
}

static sbx_stream *stream_new(const sbx_key *dek, sbx_sink_fn sink, void *ctx) {
  sbx_stream *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->key = *dek;
  s->sink = sink;
  s->sink_ctx = ctx;
  return s;
}

/* Nonce and associated data of the chunk at s->index holding n plaintext
 * bytes; returns the AD length. Version 2 adds the stream's total plaintext
 * length to the final chunk's AD (0 in the others: a streaming writer only
 * knows the total when it seals the final chunk). */
static size_t nonce_aad(const sbx_stream *s, size_t n, int final,
                        uint8_t nonce[SBX_NONCE_LEN], uint8_t aad[AAD_MAX]) {
  memcpy(nonce, s->hdr + 8, 4);
  sbx__be64(nonce + 4, s->index);
  memcpy(aad, s->hdr, SBX_STREAM_HEADER_LEN);
  sbx__be64(aad + SBX_STREAM_HEADER_LEN, s->index);
  aad[SBX_STREAM_HEADER_LEN + 8] = (uint8_t)(final ? 1 : 0);
  if (s->hdr[4] == 1)
    return SBX_STREAM_HEADER_LEN + 9;
  sbx__be64(aad + SBX_STREAM_HEADER_LEN + 9, final ? s->total + n : 0);
  return AAD_MAX;
}

int sbx_stream_encrypt_new(sbx_stream **out, const sbx_key *dek, unsigned shift,
                           sbx_sink_fn sink, void *ctx) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!shift)
    shift = SBX_STREAM_DEFAULT_SHIFT;
  if (!dek || !sink || shift < SBX_STREAM_MIN_SHIFT ||
      shift > SBX_STREAM_MAX_SHIFT)
    return SBX_EINVAL;
  sbx_stream *s = stream_new(dek, sink, ctx);
  if (!s)
    return SBX_ENOMEM;
  s->chunk = (size_t)1 << shift;
  memcpy(s->hdr, STREAM_MAGIC, 4);
  s->hdr[4] = STREAM_VERSION;
  s->hdr[5] = 1;
  s->hdr[6] = (uint8_t)shift;
  s->hdr[7] = 0;
  int rc = sbx_random(s->hdr + 8, 4 + 16); /* nonce prefix + stream id */
  if (!rc)
    rc = stream_alloc(s);
  if (!rc)
    rc = sink(ctx, s->hdr, SBX_STREAM_HEADER_LEN);
  if (rc) {
    sbx_stream_free(s);
    return rc;
  }
  *out = s;
  return SBX_OK;
}

int sbx_stream_decrypt_new(sbx_stream **out, const sbx_key *dek,
                           sbx_sink_fn sink, void *ctx) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!dek || !sink)
    return SBX_EINVAL;
  sbx_stream *s = stream_new(dek, sink, ctx);
  if (!s)
    return SBX_ENOMEM;
  s->decrypt = 1;
  *out = s;
  return SBX_OK;
}

static int seal_emit(sbx_stream *s, const uint8_t *pt, size_t n, int final) {
  uint8_t nonce[SBX_NONCE_LEN], aad[AAD_MAX];
  size_t alen = nonce_aad(s, n, final, nonce, aad);
  size_t olen = s->chunk + SBX_TAG_LEN;
  int rc = gnutls_aead_cipher_encrypt(s->h, nonce, sizeof nonce, aad, alen,
                                      SBX_TAG_LEN, n ? pt : s->out, n, s->out,
                                      &olen);
  if (rc)
    return sbx__gnutls_status(rc);
  s->index++;
  s->total += n;
  return s->sink(s->sink_ctx, s->out, olen);
}

static int open_emit(sbx_stream *s, const uint8_t *ct, size_t n, int final) {
  uint8_t nonce[SBX_NONCE_LEN], aad[AAD_MAX];
  if (n < SBX_TAG_LEN)
    return SBX_ECRYPTO; /* truncated inside a tag */
  size_t alen = nonce_aad(s, n - SBX_TAG_LEN, final, nonce, aad);
  size_t olen = s->chunk + SBX_TAG_LEN;
  int rc = gnutls_aead_cipher_decrypt(s->h, nonce, sizeof nonce, aad, alen,
                                      SBX_TAG_LEN, ct, n, s->out, &olen);
  if (rc) {
    sbx_memwipe(s->out, s->chunk);
    return rc == GNUTLS_E_DECRYPTION_FAILED ? SBX_ECRYPTO
                                            : sbx__gnutls_status(rc);
  }
  s->index++;
  s->total += olen;
  if (!olen)
    return SBX_OK;
  rc = s->sink(s->sink_ctx, s->out, olen);
  s->cur = (s->cur + 1) % s->nout; /* the next chunk goes to the next slot */
  s->out = s->outs[s->cur];
  return rc;
}

static int parse_header(sbx_stream *s) {
  if (memcmp(s->hdr, STREAM_MAGIC, 4))
    return SBX_EFORMAT;
  if ((s->hdr[4] != 1 && s->hdr[4] != 2) || s->hdr[5] != 1)
    return SBX_EUNSUPPORTED;
  unsigned shift = s->hdr[6];
  if (shift < SBX_STREAM_MIN_SHIFT || shift > SBX_STREAM_MAX_SHIFT)
    return SBX_EFORMAT;
  s->chunk = (size_t)1 << shift;
  while (s->nout > 2 && s->nout * s->chunk > OUT_RING_BYTES)
    s->nout--; /* chunks larger than the consumer expected */
  return stream_alloc(s);
}

/* Seals whole chunks straight from `in` while more input is known to follow
 * (within this call, or promised by `more`); buffers the rest. */
static int enc_update(sbx_stream *s, const uint8_t *in, size_t n, int more) {
  int rc;
  while (n > 0) {
    if (s->buf_len == s->chunk) { /* more data follows: not final */
      if ((rc = seal_emit(s, s->buf, s->chunk, 0)))
        return rc;
      s->buf_len = 0;
    }
    if (s->buf_len == 0 &&
        (n > s->chunk || (more && n == s->chunk))) { /* zero copy */
      if ((rc = seal_emit(s, in, s->chunk, 0)))
        return rc;
      in += s->chunk;
      n -= s->chunk;
      continue;
    }
    size_t take = s->chunk - s->buf_len;
    if (take > n)
      take = n;
    memcpy(s->buf + s->buf_len, in, take);
    s->buf_len += take;
    in += take;
    n -= take;
  }
  return SBX_OK;
}

static int dec_update(sbx_stream *s, const uint8_t *in, size_t n) {
  int rc;
  size_t sealed = 0;
  while (n > 0) {
    if (s->hdr_len < SBX_STREAM_HEADER_LEN) {
      size_t take = SBX_STREAM_HEADER_LEN - s->hdr_len;
      if (take > n)
        take = n;
      memcpy(s->hdr + s->hdr_len, in, take);
      s->hdr_len += take;
      in += take;
      n -= take;
      if (s->hdr_len == SBX_STREAM_HEADER_LEN && (rc = parse_header(s)))
        return rc;
      continue;
    }
    sealed = s->chunk + SBX_TAG_LEN;
    if (s->buf_len == sealed) { /* more data follows: not final */
      if ((rc = open_emit(s, s->buf, sealed, 0)))
        return rc;
      s->buf_len = 0;
    }
    if (s->buf_len == 0 && n > sealed) {
      if ((rc = open_emit(s, in, sealed, 0)))
        return rc;
      in += sealed;
      n -= sealed;
      continue;
    }
    size_t take = sealed - s->buf_len;
    if (take > n)
      take = n;
    memcpy(s->buf + s->buf_len, in, take);
    s->buf_len += take;
    in += take;
    n -= take;
  }
  return SBX_OK;
}

/* Shared body of sbx_stream_update / sbx_stream_update_more. */
static int stream_update(sbx_stream *s, const void *in, size_t n, int more) {
  if (!s)
    return SBX_EINVAL;
  if (s->status)
    return s->status;
  if (s->finished)
    return s->status = SBX_EINVAL;
  if (!n)
    return SBX_OK;
  if (!in)
    return s->status = SBX_EINVAL;
  int rc = s->decrypt ? dec_update(s, in, n) : enc_update(s, in, n, more);
  if (rc)
    s->status = rc;
  return rc;
}

int sbx_stream_update(sbx_stream *s, const void *in, size_t n) {
  return stream_update(s, in, n, 0);
}

int sbx_stream_update_more(sbx_stream *s, const void *in, size_t n) {
  return stream_update(s, in, n, 1);
}

unsigned sbx_stream_version(const sbx_stream *s) {
  if (!s || (s->decrypt && s->hdr_len < SBX_STREAM_HEADER_LEN))
    return 0;
  return s->hdr[4];
}

unsigned sbx_stream_out_ring(const sbx_stream *s) {
  return s && s->nout ? s->nout : 1;
}

int sbx_stream_set_out_ring(sbx_stream *s, unsigned n) {
  if (!s || !s->decrypt || s->hdr_len || n < 1 || n > OUT_RING_MAX)
    return SBX_EINVAL;
  s->nout = n;
  return SBX_OK;
}

int sbx_stream_final(sbx_stream *s) {
  if (!s)
    return SBX_EINVAL;
  if (s->status)
    return s->status;
  if (s->finished)
    return s->status = SBX_EINVAL;
  int rc;
  if (s->decrypt) {
    if (s->hdr_len < SBX_STREAM_HEADER_LEN)
      rc = SBX_ECRYPTO; /* truncated before the first chunk */
    else
      rc = open_emit(s, s->buf, s->buf_len, 1);
  } else {
    rc = seal_emit(s, s->buf, s->buf_len, 1);
  }
  s->finished = 1;
  s->buf_len = 0;
  if (rc)
    s->status = rc;
  return rc;
}
