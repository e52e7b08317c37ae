/* sha256.c - file hashing for the result documents (GnuTLS). */
#include "cli.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <string.h>

int cli_sha256_file(const char *path, char hex[65]) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  gnutls_hash_hd_t h;
  if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0) {
    fclose(f);
    return -1;
  }
  unsigned char buf[1 << 16], out[32];
  size_t r;
  while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
    gnutls_hash(h, buf, r);
  int bad = ferror(f);
  fclose(f);
  gnutls_hash_deinit(h, out);
  if (bad)
    return -1;
  for (int i = 0; i < 32; i++)
    sprintf(hex + 2 * i, "%02x", out[i]);
  hex[64] = 0;
  return 0;
}
