/*
 * merge_tool - sbx_result_merge / sbx_npy_merge on files, for
 * tests/job/shard_merge.py: `merge_tool json|npy OUT IN...` writes the
 * merge of the inputs (in shard order) to OUT, or prints the error and
 * exits 1.
 */
#include "sbx/result_merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole file in a malloc'd buffer; NULL on error. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *b = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      char *nb = realloc(b, cap);
      if (!nb) {
        free(b);
        fclose(f);
        return NULL;
      }
      b = nb;
    }
    size_t r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0)
      break;
  }
  fclose(f);
  *len = n;
  return b;
}

int main(int argc, char **argv) {
  if (argc < 4 || (strcmp(argv[1], "json") && strcmp(argv[1], "npy"))) {
    fprintf(stderr, "usage: merge_tool json|npy OUT IN...\n");
    return 2;
  }
  int k = argc - 3;
  char **in = calloc((size_t)k, sizeof *in);
  size_t *lens = calloc((size_t)k, sizeof *lens);
  for (int i = 0; i < k; i++)
    if (!(in[i] = slurp(argv[3 + i], &lens[i]))) {
      fprintf(stderr, "cannot read %s\n", argv[3 + i]);
      return 2;
    }
  char err[512];
  void *out = NULL;
  size_t olen = 0;
  int rc =
      !strcmp(argv[1], "json")
          ? sbx_result_merge((const char *const *)in, lens, k, (char **)&out,
                             &olen, NULL, err, sizeof err)
          : sbx_npy_merge((const unsigned char *const *)in, lens, k,
                          (unsigned char **)&out, &olen, NULL, err, sizeof err);
  for (int i = 0; i < k; i++)
    free(in[i]);
  free(in);
  free(lens);
  if (rc) {
    printf("error %d: %s\n", rc, err);
    return 1;
  }
  FILE *f = fopen(argv[2], "wb");
  if (!f || fwrite(out, 1, olen, f) != olen || fclose(f)) {
    fprintf(stderr, "cannot write %s\n", argv[2]);
    return 2;
  }
  free(out);
  return 0;
}
