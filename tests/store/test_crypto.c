/*
 * test_crypto.c - key wrapping, sealed fields, the chunked streaming AEAD
 * format (tamper, truncation, reorder, cross-object chunk swaps) and the
 * master key sources (file 0600 check, env, command hook).
 */
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sbx/crypto.h"

typedef struct {
  uint8_t *p;
  size_t n, cap;
} buf_t;

static int buf_sink(void *ctx, const void *data, size_t n) {
  buf_t *b = ctx;
  if (b->n + n > b->cap) {
    size_t cap = (b->n + n) * 2 + 64;
    uint8_t *q = realloc(b->p, cap);
    if (!q)
      return SBX_ENOMEM;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
  return 0;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)(seed >> 16);
  }
}

/* encrypts pt with shift, feeding in pieces of `step` bytes */
static int encrypt_buf(const sbx_key *k, unsigned shift, const uint8_t *pt,
                       size_t n, size_t step, buf_t *out) {
  sbx_stream *s;
  int rc = sbx_stream_encrypt_new(&s, k, shift, buf_sink, out);
  if (rc)
    return rc;
  for (size_t off = 0; off < n && !rc; off += step)
    rc = sbx_stream_update(s, pt + off, off + step > n ? n - off : step);
  if (!rc)
    rc = sbx_stream_final(s);
  sbx_stream_free(s);
  return rc;
}

static int decrypt_buf(const sbx_key *k, const uint8_t *ct, size_t n,
                       size_t step, buf_t *out) {
  sbx_stream *s;
  int rc = sbx_stream_decrypt_new(&s, k, buf_sink, out);
  if (rc)
    return rc;
  for (size_t off = 0; off < n && !rc; off += step)
    rc = sbx_stream_update(s, ct + off, off + step > n ? n - off : step);
  if (!rc)
    rc = sbx_stream_final(s);
  sbx_stream_free(s);
  return rc;
}

TEST(status_strings) {
  CHECK(strcmp(sbx_strerror(SBX_OK), "success") == 0);
  CHECK(strcmp(sbx_err_name(SBX_ECRYPTO), "SBX_ECRYPTO") == 0);
  CHECK(strcmp(sbx_strerror(12345), "unknown status") == 0);
}

TEST(hash_vectors) {
  uint8_t d[32];
  char hex[65];
  CHECK_EQ_INT(sbx_sha256("abc", 3, d), 0);
  sbx_hex(d, 32, hex);
  CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff6"
                    "1f20015ad") == 0);
  /* RFC 4231 test case 2 */
  CHECK_EQ_INT(
      sbx_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, d), 0);
  sbx_hex(d, 32, hex);
  CHECK(strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b"
                    "964ec3843") == 0);
  sbx_sha256_ctx c;
  CHECK_EQ_INT(sbx_sha256_init(&c), 0);
  sbx_sha256_update(&c, "a", 1);
  sbx_sha256_update(&c, "bc", 2);
  uint8_t d2[32];
  sbx_sha256_final(&c, d2);
  sbx_sha256("abc", 3, d);
  CHECK(memcmp(d, d2, 32) == 0);
  uint8_t raw[3];
  CHECK_EQ_INT(sbx_unhex("0aFf10", 6, raw, 3), 0);
  CHECK(raw[0] == 0x0a && raw[1] == 0xff && raw[2] == 0x10);
  CHECK_EQ_INT(sbx_unhex("0aFg10", 6, raw, 3), SBX_EFORMAT);
}

TEST(key_wrap) {
  sbx_key kek, kek2, k, out;
  CHECK_EQ_INT(sbx_key_generate(&kek), 0);
  CHECK_EQ_INT(sbx_key_generate(&kek2), 0);
  CHECK_EQ_INT(sbx_key_generate(&k), 0);
  uint8_t w[SBX_WRAPPED_KEY_LEN], w2[SBX_WRAPPED_KEY_LEN];
  CHECK_EQ_INT(sbx_key_wrap(&kek, "t1/v1", 5, &k, w), 0);
  CHECK_EQ_INT(sbx_key_wrap(&kek, "t1/v1", 5, &k, w2), 0);
  CHECK(memcmp(w, w2, sizeof w) != 0); /* fresh nonce each time */
  CHECK_EQ_INT(sbx_key_unwrap(&kek, "t1/v1", 5, w, sizeof w, &out), 0);
  CHECK(memcmp(out.b, k.b, 32) == 0);
  uint8_t id[8], id2[8];
  sbx_key_id(&kek, id);
  CHECK_EQ_INT(sbx_wrapped_kek_id(w, sizeof w, id2), 0);
  CHECK(memcmp(id, id2, 8) == 0);
  /* wrong KEK, wrong context */
  CHECK_EQ_INT(sbx_key_unwrap(&kek2, "t1/v1", 5, w, sizeof w, &out),
               SBX_ECRYPTO);
  CHECK_EQ_INT(sbx_key_unwrap(&kek, "t2/v1", 5, w, sizeof w, &out),
               SBX_ECRYPTO);
  uint8_t zero[32] = {0};
  CHECK(memcmp(out.b, zero, 32) == 0); /* wiped on error */
  /* every single-byte flip past the magic/version is detected */
  int detected = 0;
  for (size_t i = 0; i < sizeof w; i++) {
    memcpy(w2, w, sizeof w);
    w2[i] ^= 0x01;
    int rc = sbx_key_unwrap(&kek, "t1/v1", 5, w2, sizeof w2, &out);
    if (rc == SBX_ECRYPTO || rc == SBX_EFORMAT || rc == SBX_EUNSUPPORTED)
      detected++;
  }
  CHECK_EQ_INT(detected, (int)sizeof w);
  CHECK_EQ_INT(sbx_key_unwrap(&kek, "t1/v1", 5, w, sizeof w - 1, &out),
               SBX_EFORMAT);
  sbx_key_wipe(&kek);
  sbx_key_wipe(&k);
}

TEST(sealed_fields) {
  sbx_key k;
  sbx_key_generate(&k);
  const char *secret = "client-secret-123";
  size_t n = strlen(secret);
  uint8_t sealed[64], pt[64];
  size_t ptlen = 0;
  CHECK_EQ_INT(sbx_seal(&k, "oidc/c1", 7, secret, n, sealed), 0);
  CHECK_EQ_INT(
      sbx_open(&k, "oidc/c1", 7, sealed, n + SBX_SEAL_OVERHEAD, pt, &ptlen), 0);
  CHECK(ptlen == n && memcmp(pt, secret, n) == 0);
  CHECK_EQ_INT(
      sbx_open(&k, "oidc/c2", 7, sealed, n + SBX_SEAL_OVERHEAD, pt, &ptlen),
      SBX_ECRYPTO);
  sealed[20] ^= 0x80;
  CHECK_EQ_INT(
      sbx_open(&k, "oidc/c1", 7, sealed, n + SBX_SEAL_OVERHEAD, pt, &ptlen),
      SBX_ECRYPTO);
  /* empty field */
  CHECK_EQ_INT(sbx_seal(&k, NULL, 0, NULL, 0, sealed), 0);
  CHECK_EQ_INT(sbx_open(&k, NULL, 0, sealed, SBX_SEAL_OVERHEAD, pt, &ptlen), 0);
  CHECK_EQ_INT(ptlen, 0);
}

TEST(stream_roundtrip_sizes) {
  sbx_key k;
  sbx_key_generate(&k);
  const unsigned shift = 10; /* 1 KiB chunks: many boundaries */
  const size_t sizes[] = {0, 1, 1023, 1024, 1025, 2048, 5000, 70000};
  uint8_t *pt = malloc(70000);
  fill(pt, 70000, 7);
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    size_t n = sizes[si];
    const size_t steps[] = {1, 100, 1024, 3000, 100000};
    for (size_t st = 0; st < 5; st++) {
      if (steps[st] == 1 && n > 5000)
        continue;
      buf_t ct = {0}, back = {0};
      CHECK_EQ_INT(encrypt_buf(&k, shift, pt, n, steps[st], &ct), 0);
      CHECK_EQ_INT(ct.n, sbx_stream_ciphertext_len(n, shift));
      CHECK_EQ_INT(decrypt_buf(&k, ct.p, ct.n, steps[(st + 2) % 5], &back), 0);
      CHECK_EQ_INT(back.n, n);
      CHECK(n == 0 || memcmp(back.p, pt, n) == 0);
      free(ct.p);
      free(back.p);
    }
  }
  free(pt);
}

TEST(stream_tamper_every_region) {
  sbx_key k, k2;
  sbx_key_generate(&k);
  sbx_key_generate(&k2);
  size_t n = 3000; /* 3 chunks of 1 KiB: 1024, 1024, 952 */
  uint8_t *pt = malloc(n);
  fill(pt, n, 9);
  buf_t ct = {0};
  CHECK_EQ_INT(encrypt_buf(&k, 10, pt, n, 4096, &ct), 0);
  /* flip one byte at a spread of positions: header, chunk bodies, tags */
  int bad = 0, tried = 0;
  for (size_t i = 0; i < ct.n; i += 37) {
    buf_t back = {0};
    ct.p[i] ^= 0x40;
    int rc = decrypt_buf(&k, ct.p, ct.n, 512, &back);
    ct.p[i] ^= 0x40;
    tried++;
    if (rc == SBX_ECRYPTO || rc == SBX_EFORMAT || rc == SBX_EUNSUPPORTED)
      bad++;
    free(back.p);
  }
  CHECK_EQ_INT(bad, tried);
  buf_t back = {0};
  /* wrong key */
  CHECK_EQ_INT(decrypt_buf(&k2, ct.p, ct.n, 512, &back), SBX_ECRYPTO);
  free(back.p);
  free(ct.p);
  free(pt);
}

TEST(stream_truncation_reorder_swap) {
  sbx_key k;
  sbx_key_generate(&k);
  const size_t C = 1024 + SBX_TAG_LEN, H = SBX_STREAM_HEADER_LEN;
  size_t n = 3000;
  uint8_t *pt = malloc(n);
  fill(pt, n, 11);
  buf_t a = {0}, b = {0}, back = {0};
  CHECK_EQ_INT(encrypt_buf(&k, 10, pt, n, n, &a), 0);
  /* truncation at every chunk boundary and mid-chunk */
  size_t cuts[] = {0, 10, H, H + 5, H + C, H + C + 1, H + 2 * C, a.n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    back.n = 0;
    CHECK_EQ_INT(decrypt_buf(&k, a.p, cuts[i], 700, &back), SBX_ECRYPTO);
  }
  /* swap chunk 0 and chunk 1 (same sizes) */
  uint8_t *sw = malloc(a.n);
  memcpy(sw, a.p, a.n);
  memcpy(sw + H, a.p + H + C, C);
  memcpy(sw + H + C, a.p + H, C);
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, sw, a.n, 700, &back), SBX_ECRYPTO);
  /* drop the middle chunk (the remaining stream is well-formed sizes) */
  memcpy(sw, a.p, H + C);
  memcpy(sw + H + C, a.p + H + 2 * C, a.n - H - 2 * C);
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, sw, a.n - C, 700, &back), SBX_ECRYPTO);
  /* chunk 1 of another object, even under the same key, is refused */
  CHECK_EQ_INT(encrypt_buf(&k, 10, pt, n, n, &b), 0);
  memcpy(sw, a.p, a.n);
  memcpy(sw + H + C, b.p + H + C, C);
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, sw, a.n, 700, &back), SBX_ECRYPTO);
  /* appended garbage after the final chunk */
  uint8_t *ext = malloc(a.n + 20);
  memcpy(ext, a.p, a.n);
  memset(ext + a.n, 0, 20);
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, ext, a.n + 20, 700, &back), SBX_ECRYPTO);
  /* the untouched stream still decrypts */
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, a.p, a.n, 700, &back), 0);
  CHECK(back.n == n && memcmp(back.p, pt, n) == 0);
  free(ext);
  free(sw);
  free(a.p);
  free(b.p);
  free(back.p);
  free(pt);
}

/* ---- the format itself, written by references outside stream.c ---- */

/* Reads fixture `name` of tests/fixtures/store (tools/make_stream_fixtures.py,
 * an independent Python implementation of the format). */
static uint8_t *fixture(const char *name, size_t *n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", SBX_STORE_FIXTURES, name);
  FILE *f = fopen(path, "rb");
  *n = 0;
  if (!f)
    return NULL;
  uint8_t *p = malloc(1 << 16);
  *n = p ? fread(p, 1, 1 << 16, f) : 0;
  fclose(f);
  return p;
}

static int fixture_key(sbx_key *k) {
  size_t n;
  uint8_t *hex = fixture("key.hex", &n);
  int rc = hex && n >= 64 ? sbx_unhex((char *)hex, 64, k->b, SBX_KEY_LEN) : -1;
  free(hex);
  return rc;
}

/* decrypts ct, reporting the version the decryptor saw */
static int decrypt_ver(const sbx_key *k, const uint8_t *ct, size_t n,
                       buf_t *out, unsigned *ver) {
  sbx_stream *s;
  int rc = sbx_stream_decrypt_new(&s, k, buf_sink, out);
  if (rc)
    return rc;
  rc = sbx_stream_update(s, ct, n);
  *ver = sbx_stream_version(s);
  if (!rc)
    rc = sbx_stream_final(s);
  sbx_stream_free(s);
  return rc;
}

/* Version 1 streams (written by the store before the total length was
 * bound) stay readable, and version 2 as written by the Python reference
 * decrypts: the associated data agree byte for byte. */
TEST(stream_fixtures_v1_v2) {
  sbx_key k;
  CHECK_EQ_INT(fixture_key(&k), 0);
  size_t pn;
  uint8_t *pt = fixture("plain.bin", &pn);
  CHECK(pt && pn == 3000);
  struct {
    const char *file;
    size_t n;
    unsigned ver;
  } cases[] = {{"stream_v1_3000.bin", 3000, 1},
               {"stream_v2_3000.bin", 3000, 2},
               {"stream_v2_2048.bin", 2048, 2},
               {"stream_v2_0.bin", 0, 2}};
  for (size_t i = 0; pt && i < sizeof cases / sizeof *cases; i++) {
    size_t cn;
    uint8_t *ct = fixture(cases[i].file, &cn);
    CHECK(ct != NULL);
    if (!ct)
      continue;
    CHECK_EQ_INT(cn, sbx_stream_ciphertext_len(cases[i].n, 10));
    buf_t back = {0};
    unsigned ver = 0;
    CHECK_EQ_INT(decrypt_ver(&k, ct, cn, &back, &ver), 0);
    CHECK_EQ_INT(ver, cases[i].ver);
    CHECK(back.n == cases[i].n && (!back.n || memcmp(back.p, pt, back.n) == 0));
    /* the old version keeps its truncation guard: drop the final chunk */
    if (cases[i].n == 3000) {
      back.n = 0;
      size_t cut = SBX_STREAM_HEADER_LEN + 2 * (1024 + SBX_TAG_LEN);
      CHECK_EQ_INT(decrypt_ver(&k, ct, cut, &back, &ver), SBX_ECRYPTO);
    }
    free(back.p);
    free(ct);
  }
  /* the digest the store records is the plain SHA-256 (hashlib's) */
  size_t hn;
  uint8_t *hex = fixture("plain.sha256", &hn);
  uint8_t want[SBX_SHA256_LEN], got[SBX_SHA256_LEN];
  CHECK(hex && hn >= 64 && sbx_unhex((char *)hex, 64, want, sizeof want) == 0);
  CHECK_EQ_INT(sbx_sha256(pt, pn, got), 0);
  CHECK(memcmp(want, got, sizeof want) == 0);
  free(hex);
  free(pt);
}

enum { REF_OK, REF_NO_FINAL, REF_BAD_TOTAL, REF_NO_TOTAL };

/* A second reference writer, on GnuTLS directly: a version 2 stream of
 * pt[0..n) with chunk_shift 10 and a fixed header, optionally with one
 * binding broken - the last chunk not flagged final (REF_NO_FINAL), a
 * wrong total in the final chunk's AD (REF_BAD_TOTAL), or the total left
 * out as in version 1 while the header says 2 (REF_NO_TOTAL). */
static int ref_encrypt(const sbx_key *k, const uint8_t *pt, size_t n, int mode,
                       buf_t *out) {
  const size_t chunk = 1024;
  uint8_t hdr[SBX_STREAM_HEADER_LEN] = {'S', 'B', 'X', 'S', 2, 1,
                                        10,  0,   1,   2,   3, 4};
  for (int i = 12; i < 28; i++)
    hdr[i] = (uint8_t)(0xA0 + i);
  gnutls_aead_cipher_hd_t h;
  gnutls_datum_t kd = {(unsigned char *)k->b, SBX_KEY_LEN};
  if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &kd))
    return -1;
  int rc = buf_sink(out, hdr, sizeof hdr);
  size_t nchunks = n ? (n + chunk - 1) / chunk : 1;
  for (size_t i = 0; !rc && i < nchunks; i++) {
    size_t len = i + 1 < nchunks ? chunk : n - i * chunk;
    int final = i + 1 == nchunks;
    uint8_t nonce[12], aad[SBX_STREAM_HEADER_LEN + 17], ct[1024 + 16];
    memcpy(nonce, hdr + 8, 4);
    for (int b = 0; b < 8; b++)
      nonce[4 + b] = aad[SBX_STREAM_HEADER_LEN + b] =
          (uint8_t)((uint64_t)i >> (56 - 8 * b));
    memcpy(aad, hdr, sizeof hdr);
    aad[SBX_STREAM_HEADER_LEN + 8] = (uint8_t)(final && mode != REF_NO_FINAL);
    uint64_t total = final && mode != REF_NO_FINAL ? n : 0;
    if (mode == REF_BAD_TOTAL && final)
      total += 1;
    for (int b = 0; b < 8; b++)
      aad[SBX_STREAM_HEADER_LEN + 9 + b] = (uint8_t)(total >> (56 - 8 * b));
    size_t alen = mode == REF_NO_TOTAL ? SBX_STREAM_HEADER_LEN + 9 : sizeof aad;
    size_t olen = sizeof ct;
    rc = gnutls_aead_cipher_encrypt(h, nonce, 12, aad, alen, SBX_TAG_LEN,
                                    pt + i * chunk, len, ct, &olen);
    if (!rc)
      rc = buf_sink(out, ct, olen);
  }
  gnutls_aead_cipher_deinit(h);
  return rc;
}

/* Each binding of the chunk AD, one at a time: a stream that is right but
 * for that binding is refused (the unbroken reference stream decrypts, so
 * the reference writer itself is right). */
TEST(stream_each_binding) {
  sbx_key k;
  sbx_key_generate(&k);
  size_t sizes[] = {0, 1000, 2048, 3000};
  for (size_t si = 0; si < 4; si++) {
    size_t n = sizes[si];
    uint8_t *pt = malloc(n + 1);
    fill(pt, n, 21);
    for (int mode = REF_OK; mode <= REF_NO_TOTAL; mode++) {
      buf_t ct = {0}, back = {0};
      CHECK_EQ_INT(ref_encrypt(&k, pt, n, mode, &ct), 0);
      CHECK_EQ_INT(ct.n, sbx_stream_ciphertext_len(n, 10));
      int rc = decrypt_buf(&k, ct.p, ct.n, 333, &back);
      if (mode == REF_OK) {
        CHECK_EQ_INT(rc, 0);
        CHECK(back.n == n && (!n || memcmp(back.p, pt, n) == 0));
      } else {
        CHECK_EQ_INT(rc, SBX_ECRYPTO);
      }
      free(ct.p);
      free(back.p);
    }
    free(pt);
  }
}

/* Splicing: a chunk of a stream under another key, and a version 2 header
 * relabelled as version 1 (the AD without the total), are refused. */
TEST(stream_splice_other_key_and_downgrade) {
  sbx_key k, k2;
  sbx_key_generate(&k);
  sbx_key_generate(&k2);
  const size_t C = 1024 + SBX_TAG_LEN, H = SBX_STREAM_HEADER_LEN;
  size_t n = 3000;
  uint8_t *pt = malloc(n);
  fill(pt, n, 5);
  buf_t a = {0}, b = {0}, back = {0};
  CHECK_EQ_INT(encrypt_buf(&k, 10, pt, n, n, &a), 0);
  CHECK_EQ_INT(encrypt_buf(&k2, 10, pt, n, n, &b), 0);
  CHECK_EQ_INT(a.p[4], 2);
  uint8_t *sw = malloc(a.n);
  for (size_t c = 0; c < 3; c++) { /* each chunk in turn, final included */
    memcpy(sw, a.p, a.n);
    size_t len = c < 2 ? C : a.n - H - 2 * C;
    memcpy(sw + H + c * C, b.p + H + c * C, len);
    back.n = 0;
    CHECK_EQ_INT(decrypt_buf(&k, sw, a.n, 700, &back), SBX_ECRYPTO);
  }
  memcpy(sw, a.p, a.n);
  sw[4] = 1;
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, sw, a.n, 700, &back), SBX_ECRYPTO);
  free(sw);
  free(a.p);
  free(b.p);
  free(back.p);
  free(pt);
}

TEST(stream_poisoned_after_error) {
  sbx_key k;
  sbx_key_generate(&k);
  buf_t back = {0};
  sbx_stream *s;
  CHECK_EQ_INT(sbx_stream_decrypt_new(&s, &k, buf_sink, &back), 0);
  uint8_t junk[64] = {0};
  CHECK_EQ_INT(sbx_stream_update(s, junk, sizeof junk), SBX_EFORMAT);
  CHECK_EQ_INT(sbx_stream_final(s), SBX_EFORMAT);
  sbx_stream_free(s);
  CHECK_EQ_INT(sbx_stream_encrypt_new(&s, &k, 9, buf_sink, &back), SBX_EINVAL);
  CHECK(s == NULL);
  free(back.p);
}

/* sbx_stream_update_more: same ciphertext layout when the promise holds
 * (whole chunks sealed in place), still a valid stream when it is broken. */
TEST(stream_update_more) {
  sbx_key k;
  sbx_key_generate(&k);
  size_t n = 5 * 1024;
  uint8_t *pt = malloc(n);
  fill(pt, n, 31);
  buf_t ct = {0}, back = {0};
  sbx_stream *s;
  CHECK_EQ_INT(sbx_stream_encrypt_new(&s, &k, 10, buf_sink, &ct), 0);
  CHECK_EQ_INT(sbx_stream_update_more(s, pt, 1024), 0);
  CHECK_EQ_INT(ct.n, SBX_STREAM_HEADER_LEN + 1024 + SBX_TAG_LEN); /* sealed */
  CHECK_EQ_INT(sbx_stream_update_more(s, pt + 1024, 1500), 0);
  CHECK_EQ_INT(sbx_stream_update(s, pt + 2524, n - 2524), 0);
  CHECK_EQ_INT(sbx_stream_final(s), 0);
  sbx_stream_free(s);
  CHECK_EQ_INT(ct.n, sbx_stream_ciphertext_len(n, 10));
  CHECK_EQ_INT(decrypt_buf(&k, ct.p, ct.n, 777, &back), 0);
  CHECK(back.n == n && memcmp(back.p, pt, n) == 0);
  /* broken promise: the stream ends with an extra empty final chunk */
  ct.n = back.n = 0;
  CHECK_EQ_INT(sbx_stream_encrypt_new(&s, &k, 10, buf_sink, &ct), 0);
  CHECK_EQ_INT(sbx_stream_update_more(s, pt, 2048), 0);
  CHECK_EQ_INT(sbx_stream_final(s), 0);
  sbx_stream_free(s);
  CHECK_EQ_INT(ct.n, SBX_STREAM_HEADER_LEN + 2048 + 3 * SBX_TAG_LEN);
  CHECK_EQ_INT(decrypt_buf(&k, ct.p, ct.n, 100, &back), 0);
  CHECK(back.n == 2048 && memcmp(back.p, pt, 2048) == 0);
  /* ... and truncating that empty final chunk is still detected */
  back.n = 0;
  CHECK_EQ_INT(decrypt_buf(&k, ct.p, ct.n - SBX_TAG_LEN, 100, &back),
               SBX_ECRYPTO);
  free(pt);
  free(ct.p);
  free(back.p);
}

typedef struct {
  const uint8_t *seen[16];
  uint8_t copy[16][1024];
  size_t len[16];
  unsigned ring, calls;
  int changed;
  buf_t out;
} ring_ctx;

/* Checks that the buffers of the last ring - 1 chunks are unchanged. */
static int ring_sink(void *ctx, const void *data, size_t n) {
  ring_ctx *r = ctx;
  for (unsigned back = 1; back < r->ring && back <= r->calls; back++) {
    unsigned i = (r->calls - back) % 16;
    if (memcmp(r->seen[i], r->copy[i], r->len[i]))
      r->changed = 1;
  }
  unsigned i = r->calls % 16;
  r->seen[i] = data;
  r->len[i] = n;
  memcpy(r->copy[i], data, n);
  r->calls++;
  return buf_sink(&r->out, data, n);
}

/* sbx_stream_set_out_ring: the plaintext of the last n - 1 chunks stays
 * readable while the next one is decrypted. */
TEST(stream_out_ring) {
  sbx_key k;
  sbx_key_generate(&k);
  size_t n = 20 * 1024 + 5;
  uint8_t *pt = malloc(n);
  fill(pt, n, 32);
  buf_t ct = {0};
  CHECK_EQ_INT(encrypt_buf(&k, 10, pt, n, 3000, &ct), 0);
  for (unsigned ring = 1; ring <= 16; ring++) {
    ring_ctx *r = calloc(1, sizeof *r);
    r->ring = ring;
    sbx_stream *s;
    CHECK_EQ_INT(sbx_stream_decrypt_new(&s, &k, ring_sink, r), 0);
    CHECK_EQ_INT(sbx_stream_set_out_ring(s, ring), 0);
    CHECK_EQ_INT(sbx_stream_update(s, ct.p, ct.n), 0);
    CHECK_EQ_INT(sbx_stream_final(s), 0);
    CHECK_EQ_INT(sbx_stream_set_out_ring(s, 2), SBX_EINVAL); /* too late */
    sbx_stream_free(s);
    CHECK(!r->changed);
    CHECK(r->out.n == n && memcmp(r->out.p, pt, n) == 0);
    free(r->out.p);
    free(r);
  }
  /* the ring is capped at 32 MiB (not below 2 buffers) by the header */
  unsigned shifts[] = {21, 22, 24}, want[] = {16, 8, 2};
  for (int i = 0; i < 3; i++) {
    buf_t c2 = {0}, b2 = {0};
    CHECK_EQ_INT(encrypt_buf(&k, shifts[i], pt, 3000, 3000, &c2), 0);
    sbx_stream *s;
    CHECK_EQ_INT(sbx_stream_decrypt_new(&s, &k, buf_sink, &b2), 0);
    CHECK_EQ_INT(sbx_stream_out_ring(s), 1);
    CHECK_EQ_INT(sbx_stream_set_out_ring(s, 16), 0);
    CHECK_EQ_INT(sbx_stream_update(s, c2.p, c2.n), 0);
    CHECK_EQ_INT(sbx_stream_final(s), 0);
    CHECK_EQ_INT(sbx_stream_out_ring(s), want[i]);
    CHECK(b2.n == 3000 && memcmp(b2.p, pt, 3000) == 0);
    sbx_stream_free(s);
    free(c2.p);
    free(b2.p);
  }
  sbx_stream *s;
  CHECK_EQ_INT(sbx_stream_decrypt_new(&s, &k, buf_sink, &ct), 0);
  CHECK_EQ_INT(sbx_stream_set_out_ring(s, 0), SBX_EINVAL);
  CHECK_EQ_INT(sbx_stream_set_out_ring(s, 17), SBX_EINVAL);
  sbx_stream_free(s);
  CHECK_EQ_INT(sbx_stream_encrypt_new(&s, &k, 10, buf_sink, &ct), 0);
  CHECK_EQ_INT(sbx_stream_set_out_ring(s, 2), SBX_EINVAL); /* encryptor */
  sbx_stream_free(s);
  free(pt);
  free(ct.p);
}

static char tmpdir[] = "/tmp/sbx_crypto_XXXXXX";

TEST(master_key_file) {
  char path[256];
  snprintf(path, sizeof path, "%s/mk", tmpdir);
  sbx_key k, k2;
  CHECK_EQ_INT(sbx_master_key_create_file(path, &k), 0);
  CHECK_EQ_INT(sbx_master_key_create_file(path, NULL), SBX_EEXIST);
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
  char spec[300];
  snprintf(spec, sizeof spec, "file:%s", path);
  CHECK_EQ_INT(sbx_master_key_load(spec, &k2), 0);
  CHECK(memcmp(k.b, k2.b, 32) == 0);
  chmod(path, 0640);
  CHECK_EQ_INT(sbx_master_key_load_file(path, &k2), SBX_EPERM);
  chmod(path, 0604);
  CHECK_EQ_INT(sbx_master_key_load_file(path, &k2), SBX_EPERM);
  chmod(path, 0400);
  CHECK_EQ_INT(sbx_master_key_load_file(path, &k2), 0);
  /* raw 32-byte key file */
  snprintf(path, sizeof path, "%s/raw", tmpdir);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  CHECK(fd >= 0 && write(fd, k.b, 32) == 32);
  close(fd);
  CHECK_EQ_INT(sbx_master_key_load_file(path, &k2), 0);
  CHECK(memcmp(k.b, k2.b, 32) == 0);
  /* malformed */
  snprintf(path, sizeof path, "%s/bad", tmpdir);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  CHECK(fd >= 0 && write(fd, "not a key\n", 10) == 10);
  close(fd);
  CHECK_EQ_INT(sbx_master_key_load_file(path, &k2), SBX_EFORMAT);
  snprintf(path, sizeof path, "%s/missing", tmpdir);
  CHECK_EQ_INT(sbx_master_key_load_file(path, &k2), SBX_ENOTFOUND);
  /* a symlink is refused (O_NOFOLLOW) */
  char link[256];
  snprintf(link, sizeof link, "%s/link", tmpdir);
  snprintf(path, sizeof path, "%s/mk", tmpdir);
  CHECK(symlink(path, link) == 0);
  CHECK(sbx_master_key_load_file(link, &k2) != 0);
}

TEST(master_key_env_and_cmd) {
  sbx_key k, k2;
  char hex[65], cmd[200];
  sbx_key_generate(&k);
  sbx_hex(k.b, 32, hex);
  setenv("SBX_TEST_MK", hex, 1);
  CHECK_EQ_INT(sbx_master_key_load("env:SBX_TEST_MK", &k2), 0);
  CHECK(memcmp(k.b, k2.b, 32) == 0);
  unsetenv("SBX_TEST_MK");
  CHECK_EQ_INT(sbx_master_key_load("env:SBX_TEST_MK", &k2), SBX_ENOTFOUND);
  setenv("SBX_TEST_MK", "abcd", 1);
  CHECK_EQ_INT(sbx_master_key_load("env:SBX_TEST_MK", &k2), SBX_EFORMAT);
  unsetenv("SBX_TEST_MK");
  snprintf(cmd, sizeof cmd, "cmd:echo %s", hex);
  CHECK_EQ_INT(sbx_master_key_load(cmd, &k2), 0);
  CHECK(memcmp(k.b, k2.b, 32) == 0);
  CHECK_EQ_INT(sbx_master_key_load("cmd:echo oops; exit 3", &k2), SBX_EAUTH);
  CHECK_EQ_INT(sbx_master_key_load("cmd:echo short", &k2), SBX_EFORMAT);
  CHECK_EQ_INT(sbx_master_key_load("bogus:x", &k2), SBX_EINVAL);
}

int main(void) {
  if (!mkdtemp(tmpdir))
    return 2;
  RUN(status_strings);
  RUN(hash_vectors);
  RUN(key_wrap);
  RUN(sealed_fields);
  RUN(stream_roundtrip_sizes);
  RUN(stream_tamper_every_region);
  RUN(stream_truncation_reorder_swap);
  RUN(stream_fixtures_v1_v2);
  RUN(stream_each_binding);
  RUN(stream_splice_other_key_and_downgrade);
  RUN(stream_poisoned_after_error);
  RUN(stream_update_more);
  RUN(stream_out_ring);
  RUN(master_key_file);
  RUN(master_key_env_and_cmd);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
  return harness_report();
}
