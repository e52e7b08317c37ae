/*
 * gallery.c - the result gallery: one PNG strip per chosen sample with
 * three panels - the original, the adversarial example, and the
 * perturbation amplified (mid-gray is zero; the scale factor is printed) -
 * and a caption row under each panel (label / predictions / amplification)
 * drawn with a built-in 3x5 pixel font. The same text is stored in PNG
 * tEXt chunks. Written by libpng into memory, inside the sandbox (no file
 * or network access needed).
 *
 * Only images are drawn: inputs N x C x H x W with C = 1 (gray) or 3 (RGB)
 * and values in [clip_min, clip_max]; other shapes give no gallery.
 */
#include "runner.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 3x5 glyphs, one row per byte (bits 2..0 = columns left..right). */
typedef struct glyph {
  char c;
  uint8_t rows[5];
} glyph;

static const glyph FONT[] = {
    {'0', {7, 5, 5, 5, 7}}, {'1', {2, 6, 2, 2, 7}}, {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}}, {'4', {5, 5, 7, 1, 1}}, {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}}, {'7', {7, 1, 1, 1, 1}}, {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}}, {'=', {0, 7, 0, 7, 0}}, {'x', {0, 5, 2, 5, 0}},
    {'y', {5, 5, 7, 1, 7}}, {'p', {7, 5, 7, 4, 4}}, {'-', {0, 0, 7, 0, 0}},
    {'>', {4, 2, 1, 2, 4}}, {'.', {0, 0, 0, 0, 2}}, {' ', {0, 0, 0, 0, 0}},
};

static const glyph *find_glyph(char c) {
  for (size_t i = 0; i < sizeof(FONT) / sizeof(FONT[0]); i++)
    if (FONT[i].c == c)
      return &FONT[i];
  return NULL;
}

typedef struct canvas {
  int w, h;
  uint8_t *rgb; /* w * h * 3 */
} canvas;

static void put(canvas *cv, int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= cv->w || y >= cv->h)
    return;
  uint8_t *p = cv->rgb + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
  p[0] = r;
  p[1] = g;
  p[2] = b;
}

/* Draws text at (x, y) with each font pixel as an s x s block. */
static void text(canvas *cv, int x, int y, int s, const char *t) {
  for (; *t; t++, x += 4 * s) {
    const glyph *g = find_glyph(*t);
    if (!g)
      continue;
    for (int r = 0; r < 5; r++)
      for (int c = 0; c < 3; c++)
        if (g->rows[r] & (4 >> c))
          for (int dy = 0; dy < s; dy++)
            for (int dx = 0; dx < s; dx++)
              put(cv, x + c * s + dx, y + r * s + dy, 0, 0, 0);
  }
}

static uint8_t to8(double v) {
  v = v < 0 ? 0 : v > 1 ? 1 : v;
  return (uint8_t)lrint(v * 255.0);
}

/* Draws one panel: the image (C = 1 or 3, H x W, values mapped from
 * [lo, hi]) scaled by `zoom` with its top-left at (x0, y0). */
static void panel(canvas *cv, int x0, int y0, int zoom, const float *img, int C,
                  int H, int W, double lo, double hi) {
  double span = hi > lo ? hi - lo : 1;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t c3[3];
      for (int k = 0; k < 3; k++) {
        int ch = C == 3 ? k : 0;
        c3[k] = to8((img[(size_t)ch * H * W + (size_t)y * W + x] - lo) / span);
      }
      for (int dy = 0; dy < zoom; dy++)
        for (int dx = 0; dx < zoom; dx++)
          put(cv, x0 + x * zoom + dx, y0 + y * zoom + dy, c3[0], c3[1], c3[2]);
    }
}

typedef struct membuf {
  uint8_t *p;
  size_t n, cap;
  int bad;
} membuf;

static void png_write_mem(png_structp png, png_bytep data, png_size_t len) {
  membuf *b = png_get_io_ptr(png);
  if (b->bad)
    return;
  if (b->n + len > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 65536;
    while (nc < b->n + len)
      nc *= 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) {
      b->bad = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->n, data, len);
  b->n += len;
}

static void png_flush_mem(png_structp png) {
  (void)png;
}

/* Encodes the canvas as an 8-bit RGB PNG with tEXt chunks; 0 on success
 * with *out (malloc'd) and *len. */
static int encode_png(const canvas *cv, const char *caption, uint8_t **out,
                      size_t *len) {
  membuf b = {0};
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *rows = NULL;
  if (!png || !info)
    goto fail;
  if (setjmp(png_jmpbuf(png)))
    goto fail;
  png_set_write_fn(png, &b, png_write_mem, png_flush_mem);
  png_set_IHDR(png, info, (png_uint_32)cv->w, (png_uint_32)cv->h, 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_text t[2];
  memset(t, 0, sizeof(t));
  t[0].compression = PNG_TEXT_COMPRESSION_NONE;
  t[0].key = (png_charp) "Title";
  t[0].text = (png_charp) "original | adversarial | perturbation (amplified)";
  t[1].compression = PNG_TEXT_COMPRESSION_NONE;
  t[1].key = (png_charp) "Description";
  t[1].text = (png_charp)caption;
  png_set_text(png, info, t, 2);
  rows = malloc(sizeof(png_bytep) * (size_t)cv->h);
  if (!rows)
    goto fail;
  for (int y = 0; y < cv->h; y++)
    rows[y] = cv->rgb + (size_t)y * (size_t)cv->w * 3;
  png_set_rows(png, info, rows);
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
  png_destroy_write_struct(&png, &info);
  free(rows);
  if (b.bad) {
    free(b.p);
    return -1;
  }
  *out = b.p;
  *len = b.n;
  return 0;
fail:
  if (png)
    png_destroy_write_struct(&png, info ? &info : NULL);
  free(rows);
  free(b.p);
  return -1;
}

int sbx__runner_gallery(const float *x, const float *x_adv, int ndim,
                        const int64_t *dims, const int64_t *sample_no,
                        int count, const int64_t *label,
                        const int64_t *pred_clean, const int64_t *pred_adv,
                        float clip_min, float clip_max) {
  if (ndim != 4 || (dims[1] != 1 && dims[1] != 3) || dims[2] < 1 ||
      dims[3] < 1 || dims[2] > 1024 || dims[3] > 1024)
    return 0; /* not an image: no gallery */
  int C = (int)dims[1], H = (int)dims[2], W = (int)dims[3];
  int zoom = H < 96 ? (96 + H - 1) / H : 1;
  int pw = W * zoom, ph = H * zoom, s = 2, cap_h = 5 * s + 6, gap = 4;
  canvas cv = {3 * pw + 4 * gap, ph + cap_h + 2 * gap, NULL};
  cv.rgb = malloc((size_t)cv.w * (size_t)cv.h * 3);
  if (!cv.rgb)
    return -1;
  size_t per = (size_t)C * (size_t)H * (size_t)W;
  float *delta = malloc(per * sizeof(float));
  if (!delta) {
    free(cv.rgb);
    return -1;
  }
  int sent = 0;
  for (int k = 0; k < count; k++) {
    int64_t i = k;
    const float *xo = x + (size_t)k * per, *xa = x_adv + (size_t)k * per;
    double mx = 0;
    for (size_t j = 0; j < per; j++) {
      delta[j] = xa[j] - xo[j];
      mx = fmax(mx, fabs(delta[j]));
    }
    /* amplify so the largest change reaches the panel's edge */
    int amp = mx > 0 ? (int)fmin(1000.0, floor(0.5 / mx)) : 1;
    if (amp < 1)
      amp = 1;
    memset(cv.rgb, 255, (size_t)cv.w * (size_t)cv.h * 3);
    panel(&cv, gap, gap, zoom, xo, C, H, W, clip_min, clip_max);
    panel(&cv, 2 * gap + pw, gap, zoom, xa, C, H, W, clip_min, clip_max);
    panel(&cv, 3 * gap + 2 * pw, gap, zoom, delta, C, H, W, -0.5 / amp,
          0.5 / amp);
    char c1[32], c2[32], c3[32], caption[160];
    snprintf(c1, sizeof(c1), "y=%lld p=%lld", (long long)label[i],
             (long long)pred_clean[k]);
    snprintf(c2, sizeof(c2), "p=%lld", (long long)pred_adv[k]);
    snprintf(c3, sizeof(c3), "x%d", amp);
    int ty = gap + ph + 4;
    text(&cv, gap, ty, s, c1);
    text(&cv, 2 * gap + pw, ty, s, c2);
    text(&cv, 3 * gap + 2 * pw, ty, s, c3);
    snprintf(caption, sizeof(caption),
             "sample %lld: label %lld, clean prediction %lld, adversarial "
             "prediction %lld, perturbation amplified %dx",
             (long long)sample_no[k], (long long)label[i],
             (long long)pred_clean[k], (long long)pred_adv[k], amp);
    uint8_t *png = NULL;
    size_t len = 0;
    if (encode_png(&cv, caption, &png, &len))
      break;
    int rc = sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_GALLERY, png, len);
    free(png);
    if (rc)
      break;
    sent++;
  }
  free(delta);
  free(cv.rgb);
  return sent;
}
