/* arena.c - a chunked bump allocator with a byte budget (ggml-style: no
 * malloc per tensor; everything is released at once). */
#include "core/engine.h"

#include <stdlib.h>
#include <string.h>

struct adv_arena_block {
  adv_arena_block *next;
  size_t size, used;
  unsigned char *mem; /* 64-byte aligned */
};

void adv__arena_init(adv_arena *a, size_t cap) {
  a->head = NULL;
  a->used_total = 0;
  a->cap = cap;
}

/* Returns n zeroed bytes aligned to 64, or NULL when out of memory or when
 * the arena budget would be exceeded. */
void *adv__arena_alloc(adv_arena *a, size_t n) {
  if (n == 0)
    n = 1;
  if (n > SIZE_MAX - 64)
    return NULL;
  n = (n + 63) & ~(size_t)63;
  if (a->cap && (n > a->cap || a->used_total > a->cap - n))
    return NULL;
  adv_arena_block *b = a->head;
  if (!b || b->size - b->used < n) {
    size_t bs = n > (1u << 20) ? n : (1u << 20);
    b = malloc(sizeof(*b));
    if (!b)
      return NULL;
    b->mem = aligned_alloc(64, bs);
    if (!b->mem) {
      free(b);
      return NULL;
    }
    b->size = bs;
    b->used = 0;
    b->next = a->head;
    a->head = b;
  }
  void *p = b->mem + b->used;
  b->used += n;
  a->used_total += n;
  memset(p, 0, n);
  return p;
}

char *adv__arena_strndup(adv_arena *a, const char *s, size_t n) {
  char *d = adv__arena_alloc(a, n + 1);
  if (!d)
    return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

void adv__arena_free(adv_arena *a) {
  adv_arena_block *b = a->head;
  while (b) {
    adv_arena_block *nx = b->next;
    free(b->mem);
    free(b);
    b = nx;
  }
  a->head = NULL;
  a->used_total = 0;
}
