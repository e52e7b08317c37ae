/* json.c - minimal JSON writer for result files, and file hashing. */
#include "cli.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <math.h>
#include <string.h>

static void sep(jw *w) {
  if (w->depth > 0) {
    if (!w->first[w->depth])
      fputc(',', w->f);
    w->first[w->depth] = 0;
  }
}

void jw_begin_obj(jw *w) {
  sep(w);
  fputc('{', w->f);
  if (w->depth < 63)
    w->first[++w->depth] = 1;
}
void jw_end_obj(jw *w) {
  fputc('}', w->f);
  w->depth--;
}
void jw_begin_arr(jw *w) {
  sep(w);
  fputc('[', w->f);
  if (w->depth < 63)
    w->first[++w->depth] = 1;
}
void jw_end_arr(jw *w) {
  fputc(']', w->f);
  w->depth--;
}

static void raw_str(jw *w, const char *s) {
  fputc('"', w->f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(w->f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(w->f, "\\u%04x", *p);
    else
      fputc(*p, w->f);
  }
  fputc('"', w->f);
}

void jw_key(jw *w, const char *k) {
  sep(w);
  raw_str(w, k);
  fputc(':', w->f);
  w->first[w->depth] = 1; /* the value that follows needs no comma */
}
void jw_str(jw *w, const char *s) {
  sep(w);
  raw_str(w, s);
}
void jw_num(jw *w, double v) {
  sep(w);
  if (isfinite(v))
    fprintf(w->f, "%.9g", v);
  else
    fputs("null", w->f);
}
void jw_int(jw *w, int64_t v) {
  sep(w);
  fprintf(w->f, "%lld", (long long)v);
}
void jw_bool(jw *w, int v) {
  sep(w);
  fputs(v ? "true" : "false", w->f);
}
void jw_null(jw *w) {
  sep(w);
  fputs("null", w->f);
}

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
