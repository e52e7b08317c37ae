/*
 * store_testutil.h - helpers shared by the store tests (header-only).
 */
#ifndef SBX_STORE_TESTUTIL_H
#define SBX_STORE_TESTUTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sbx/store.h"

static inline void tu_fill(uint8_t *p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (uint8_t)(x >> 24);
  }
}

static inline int tu_rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

static inline int tu_read_file(const char *path, uint8_t **data, size_t *n) {
  FILE *f = fopen(path, "rb");
  *data = NULL;
  *n = 0;
  if (!f)
    return -1;
  size_t cap = 1 << 16, len = 0;
  uint8_t *p = malloc(cap);
  size_t r;
  while (p && (r = fread(p + len, 1, cap - len, f)) > 0) {
    len += r;
    if (len == cap) {
      uint8_t *q = realloc(p, cap *= 2);
      if (!q) {
        free(p);
        p = NULL;
      } else
        p = q;
    }
  }
  fclose(f);
  if (!p)
    return -1;
  *data = p;
  *n = len;
  return 0;
}

/* flips one bit of the byte at offset (negative: from the end) */
static inline int tu_flip_byte(const char *path, long off) {
  int fd = open(path, O_RDWR);
  if (fd < 0)
    return -1;
  struct stat st;
  fstat(fd, &st);
  if (off < 0)
    off += st.st_size;
  uint8_t b;
  int ok = pread(fd, &b, 1, off) == 1;
  b ^= 0x01;
  ok = ok && pwrite(fd, &b, 1, off) == 1;
  close(fd);
  return ok ? 0 : -1;
}

/* ---- plaintext-window scanner ----
 * Any 64-byte run of the plaintext contains a whole 32-byte block aligned
 * to a multiple of 32, so indexing those blocks and looking every byte
 * offset of every file up proves that no 64-byte (even 63-byte) window of
 * the plaintext appears anywhere. */
typedef struct tu_windows {
  const uint8_t *pt;
  size_t n;
  uint64_t *keys; /* first 8 bytes of block, 0 = empty slot */
  uint32_t *pos;
  size_t cap;
} tu_windows;

static inline uint64_t tu_load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v ? v : 1;
}

static inline void tu_windows_init(tu_windows *w, const uint8_t *pt, size_t n) {
  w->pt = pt;
  w->n = n;
  w->cap = 1;
  while (w->cap < 4 * (n / 32 + 1))
    w->cap *= 2;
  w->keys = calloc(w->cap, sizeof *w->keys);
  w->pos = calloc(w->cap, sizeof *w->pos);
  for (size_t o = 0; o + 32 <= n; o += 32) {
    uint64_t k = tu_load64(pt + o);
    size_t h = (size_t)(k * 0x9E3779B97F4A7C15ull) & (w->cap - 1);
    while (w->keys[h])
      h = (h + 1) & (w->cap - 1);
    w->keys[h] = k;
    w->pos[h] = (uint32_t)o;
  }
}

static inline void tu_windows_free(tu_windows *w) {
  free(w->keys);
  free(w->pos);
}

/* number of plaintext blocks found in buf */
static inline long tu_windows_scan(const tu_windows *w, const uint8_t *buf,
                            size_t n) {
  long hits = 0;
  for (size_t i = 0; i + 32 <= n; i++) {
    uint64_t k = tu_load64(buf + i);
    size_t h = (size_t)(k * 0x9E3779B97F4A7C15ull) & (w->cap - 1);
    while (w->keys[h]) {
      if (w->keys[h] == k && !memcmp(buf + i, w->pt + w->pos[h], 32)) {
        hits++;
        break;
      }
      h = (h + 1) & (w->cap - 1);
    }
  }
  return hits;
}

/* scans every regular file under dir; returns total hits, counts files */
static inline long tu_windows_scan_tree(const tu_windows *w, const char *dir,
                                 int *files) {
  DIR *d = opendir(dir);
  long hits = 0;
  if (!d)
    return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    char path[1024];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >=
        (int)sizeof path)
      continue;
    struct stat st;
    if (lstat(path, &st))
      continue;
    if (S_ISDIR(st.st_mode)) {
      hits += tu_windows_scan_tree(w, path, files);
    } else if (S_ISREG(st.st_mode)) {
      uint8_t *data;
      size_t n;
      if (tu_read_file(path, &data, &n) == 0) {
        long h = tu_windows_scan(w, data, n);
        if (h)
          fprintf(stderr, "plaintext found in %s (%ld blocks)\n", path, h);
        hits += h;
        free(data);
        (*files)++;
      }
    }
  }
  closedir(d);
  return hits;
}

/* Opens the store of data_dir with the master key spec, on PostgreSQL
 * when pg (a conninfo) is set, else SQLite; NULL (reason on stderr) on
 * error. */
static inline sbx_store *tu_open_store(const char *data_dir,
                                       const char *key_spec, const char *pg) {
  sbx_store_params p = sbx_store_default_params();
  p.data_dir = data_dir;
  p.master_key_spec = key_spec;
  if (pg) {
    p.meta_backend = SBX_META_POSTGRES;
    p.pg_conninfo = pg;
  }
  sbx_store *st = NULL;
  int rc = sbx_store_open(&p, &st);
  if (rc)
    fprintf(stderr, "sbx_store_open: %s\n", sbx_strerror(rc));
  return st;
}

#endif
