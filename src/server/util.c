/*
 * util.c - leaf helpers (util.h): clocks, random hex, names, base64url.
 */
#include "util.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

#include "sbx/crypto.h"
#include "sbx/status.h"

int64_t sbx__now(void) {
  return (int64_t)time(NULL);
}

double sbx__mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sbx__rand_hex(char *out, size_t nbytes) {
  uint8_t b[64];
  if (nbytes > sizeof b)
    return SBX_EINVAL;
  int rc = sbx_random(b, nbytes);
  if (!rc)
    sbx_hex(b, nbytes, out);
  sbx_memwipe(b, sizeof b);
  return rc;
}

int sbx__name_valid(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 128 || s[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' &&
        s[i] != '-')
      return 0;
  return 1;
}

/* ---- base64url ---- */
static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sbx__b64url(const void *in, size_t n, char *out) {
  const uint8_t *p = in;
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = B64[v >> 6 & 63];
    out[o++] = B64[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    out[o++] = B64[v >> 18 & 63];
    out[o++] = B64[v >> 12 & 63];
    out[o++] = B64[v >> 6 & 63];
  }
  out[o] = 0;
  return o;
}

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

long sbx__unb64url(const char *in, size_t n, uint8_t *out, size_t cap) {
  if (n % 4 == 1)
    return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val(in[i]);
    if (v < 0)
      return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o >= cap)
        return -1;
      out[o++] = (uint8_t)(acc >> bits);
    }
  }
  /* non-canonical trailing bits are refused */
  if (bits && (acc & ((1u << bits) - 1)))
    return -1;
  return (long)o;
}
