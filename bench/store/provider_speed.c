/*
 * provider_speed.c - does GnuTLS use the CPU's SHA-NI / AES-NI+VAES here?
 * Times gnutls_hash_fast (SHA-256) and gnutls_aead_cipher_encrypt /
 * _decrypt (AES-256-GCM) on cache-resident buffers of 16 KiB..1 MiB, to be
 * read against `openssl speed -evp sha256` / `-evp aes-256-gcm` (run.sh
 * prints both). Rates in MB/s; about 256 MiB per measurement.
 * Usage: provider_speed
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void) {
  const size_t total = (size_t)256 << 20, maxb = (size_t)1 << 20;
  unsigned char *in = malloc(maxb + 64), *out = malloc(maxb + 64);
  if (!in || !out)
    return 1;
  memset(in, 7, maxb + 64);
  unsigned char key[32] = {1}, nonce[12] = {2}, aad[41] = {3}, d[32];
  gnutls_datum_t kd = {key, 32};
  gnutls_aead_cipher_hd_t h;
  if (gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &kd))
    return 1;
  size_t sizes[] = {16384, 65536, 262144, 1048576};
  printf("%8s %12s %14s %14s\n", "bytes", "sha256", "aes-gcm enc",
         "aes-gcm dec");
  for (int si = 0; si < 4; si++) {
    size_t b = sizes[si], it = total / b;
    double t0 = now();
    for (size_t i = 0; i < it; i++)
      gnutls_hash_fast(GNUTLS_DIG_SHA256, in, b, d);
    double hs = (double)total / (now() - t0) / 1e6;
    t0 = now();
    for (size_t i = 0; i < it; i++) {
      size_t ol = b + 16;
      gnutls_aead_cipher_encrypt(h, nonce, 12, aad, sizeof aad, 16, in, b, out,
                                 &ol);
    }
    double ae = (double)total / (now() - t0) / 1e6;
    int bad = 0;
    t0 = now();
    for (size_t i = 0; i < it; i++) {
      size_t ol = b + 16;
      bad |= gnutls_aead_cipher_decrypt(h, nonce, 12, aad, sizeof aad, 16, out,
                                        b + 16, in, &ol);
    }
    double ad = (double)total / (now() - t0) / 1e6;
    printf("%8zu %12.0f %14.0f %14.0f%s\n", b, hs, ae, ad,
           bad ? " (decrypt failed!)" : "");
  }
  gnutls_aead_cipher_deinit(h);
  free(in);
  free(out);
  return 0;
}
