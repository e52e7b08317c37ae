/*
 * ratelimit.c - token buckets (ratelimit.h).
 */
#include "ratelimit.h"

#include <stddef.h>

#include "util.h"

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h ? h : 1;
}

int sbx__rl_take(sbx__ratelimit *rl, const char *who, double rate,
                 double burst) {
  if (rate <= 0)
    return 0;
  uint64_t k = fnv1a(who);
  double now = sbx__mono();
  int wait = 0;
  pthread_mutex_lock(&rl->mu);
  /* open addressing over 8 slots; the stalest one is recycled */
  size_t base = (size_t)(k % SBX__RL_SLOTS), victim = base;
  sbx__bucket *b = NULL;
  for (size_t i = 0; i < 8; i++) {
    sbx__bucket *c = &rl->b[(base + i) % SBX__RL_SLOTS];
    if (c->key == k) {
      b = c;
      break;
    }
    if (c->last < rl->b[victim].last)
      victim = (base + i) % SBX__RL_SLOTS;
  }
  if (!b) {
    b = &rl->b[victim];
    b->key = k;
    b->tokens = burst;
    b->last = now;
  }
  b->tokens += (now - b->last) * rate;
  if (b->tokens > burst)
    b->tokens = burst;
  b->last = now;
  if (b->tokens >= 1.0)
    b->tokens -= 1.0;
  else
    wait = (int)((1.0 - b->tokens) / rate) + 1;
  pthread_mutex_unlock(&rl->mu);
  return wait;
}
