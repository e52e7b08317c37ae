/*
 * pool.c - the store handle pool (pool.h).
 */
#include "pool.h"

#include <time.h>

/* Absolute CLOCK_REALTIME deadline sec seconds from now (pthread_cond
 * timed waits use the realtime clock by default). */
static struct timespec deadline_in(double sec) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  long long ns = (long long)t.tv_nsec + (long long)(sec * 1e9);
  t.tv_sec += (time_t)(ns / 1000000000LL);
  t.tv_nsec = (long)(ns % 1000000000LL);
  return t;
}

sbx_store *sbx__pool_take(sbx__pool *p) {
  sbx_store *st = NULL;
  pthread_mutex_lock(&p->mu);
  /* a key rotation holds the pool: wait for it (at most 30 s) rather than
   * answer 503 to a request that arrived during it */
  struct timespec until = deadline_in(30);
  while (p->draining && pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
    ;
  for (int i = 0; !p->draining && i < p->n; i++)
    if (!p->busy[i]) {
      p->busy[i] = 1;
      st = p->h[i];
      break;
    }
  pthread_mutex_unlock(&p->mu);
  return st;
}

void sbx__pool_give(sbx__pool *p, sbx_store *st) {
  if (!st)
    return;
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->n; i++)
    if (p->h[i] == st)
      p->busy[i] = 0;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

int sbx__pool_drain(sbx__pool *p, sbx_store *mine, double timeout_s) {
  pthread_mutex_lock(&p->mu);
  if (p->draining) {
    pthread_mutex_unlock(&p->mu);
    return SBX_EBUSY;
  }
  p->draining = 1;
  struct timespec until = deadline_in(timeout_s);
  for (;;) {
    int busy = 0;
    for (int i = 0; i < p->n; i++)
      busy += p->busy[i] && p->h[i] != mine;
    if (!busy)
      break;
    if (pthread_cond_timedwait(&p->cv, &p->mu, &until)) {
      p->draining = 0;
      pthread_cond_broadcast(&p->cv);
      pthread_mutex_unlock(&p->mu);
      return SBX_EBUSY;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return SBX_OK;
}

void sbx__pool_undrain(sbx__pool *p) {
  pthread_mutex_lock(&p->mu);
  p->draining = 0;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}
