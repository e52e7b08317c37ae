/*
 * pool.c - the store handle pool (pool.h).
 */
#include "pool.h"

sbx_store *sbx__pool_take(sbx__pool *p) {
  sbx_store *st = NULL;
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->n; i++)
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
  pthread_mutex_unlock(&p->mu);
}
