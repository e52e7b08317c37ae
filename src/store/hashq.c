/*
 * hashq.c - SHA-256 worker thread with a bounded FIFO of segments; see
 * hashq.h. One mutex and two condition variables; no spinning (the machine
 * may be shared), the cost per segment is one lock round trip.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "hashq.h"

/* The worker hashes in steps of this size and prefetches the next step: on
 * data that is not in the cache (a large caller buffer) SHA-NI then runs at
 * ~1.75 GB/s instead of ~1.2 GB/s on this kind of VM (docs/storage.md). */
#define HASH_STEP 4096

typedef struct seg {
  const uint8_t *p;
  size_t n;
} seg;

struct sbx_hashq {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t work; /* producer -> worker: segment queued or stop */
  pthread_cond_t done; /* worker -> producer: segment finished */
  sbx_sha256_ctx *ctx;
  seg ring[SBX_HASHQ_DEPTH];
  uint64_t pushed;   /* segments queued so far */
  uint64_t finished; /* segments hashed (or dropped) so far */
  int stop;          /* 1: finish the queue and exit; 2: drop and exit */
  int status;        /* sticky worker error */
};

/* Hashes one segment step by step, prefetching the step after the
 * current one. */
static int hash_seg(sbx_sha256_ctx *ctx, const uint8_t *p, size_t n) {
  while (n > 0) {
    size_t step = n < HASH_STEP ? n : HASH_STEP;
    if (n > step) {
      size_t ahead = n - step < HASH_STEP ? n - step : HASH_STEP;
      for (size_t o = 0; o < ahead; o += 64)
        __builtin_prefetch(p + step + o, 0, 3);
    }
    int rc = sbx_sha256_update(ctx, p, step);
    if (rc)
      return rc;
    p += step;
    n -= step;
  }
  return SBX_OK;
}

/* Worker: takes segments in FIFO order until told to stop. The lock is
 * released while hashing; only `finished` and `status` are written here. */
static void *worker(void *arg) {
  sbx_hashq *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->finished == q->pushed && !q->stop)
      pthread_cond_wait(&q->work, &q->mu);
    if (q->stop == 2 || (q->stop && q->finished == q->pushed))
      break;
    seg s = q->ring[q->finished % SBX_HASHQ_DEPTH];
    int failed = q->status != 0;
    pthread_mutex_unlock(&q->mu);
    int rc = failed ? SBX_OK : hash_seg(q->ctx, s.p, s.n);
    pthread_mutex_lock(&q->mu);
    if (rc && !q->status)
      q->status = rc;
    q->finished++;
    pthread_cond_broadcast(&q->done);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int sbx_hashq_start(sbx_sha256_ctx *ctx, sbx_hashq **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!ctx || !ctx->h)
    return SBX_EINVAL;
  sbx_hashq *q = calloc(1, sizeof *q);
  if (!q)
    return SBX_ENOMEM;
  q->ctx = ctx;
  if (pthread_mutex_init(&q->mu, NULL)) {
    free(q);
    return SBX_ENOMEM;
  }
  if (pthread_cond_init(&q->work, NULL)) {
    pthread_mutex_destroy(&q->mu);
    free(q);
    return SBX_ENOMEM;
  }
  if (pthread_cond_init(&q->done, NULL)) {
    pthread_cond_destroy(&q->work);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return SBX_ENOMEM;
  }
  /* the worker takes no signals: they stay with the application's threads */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&q->thread, NULL, worker, q);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e) {
    pthread_cond_destroy(&q->done);
    pthread_cond_destroy(&q->work);
    pthread_mutex_destroy(&q->mu);
    free(q);
    return e == EAGAIN || e == ENOMEM ? SBX_ENOMEM : SBX_EIO;
  }
  *out = q;
  return SBX_OK;
}

int sbx_hashq_push(sbx_hashq *q, const void *p, size_t n, uint64_t *seq) {
  if (!q || (!p && n))
    return SBX_EINVAL;
  pthread_mutex_lock(&q->mu);
  while (q->pushed - q->finished >= SBX_HASHQ_DEPTH)
    pthread_cond_wait(&q->done, &q->mu);
  int rc = q->status;
  if (!rc) {
    q->ring[q->pushed % SBX_HASHQ_DEPTH] = (seg){p, n};
    q->pushed++;
    if (seq)
      *seq = q->pushed;
    pthread_cond_signal(&q->work);
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

int sbx_hashq_wait(sbx_hashq *q, uint64_t seq) {
  if (!q)
    return SBX_EINVAL;
  pthread_mutex_lock(&q->mu);
  if (seq > q->pushed)
    seq = q->pushed;
  while (q->finished < seq)
    pthread_cond_wait(&q->done, &q->mu);
  int rc = q->status;
  pthread_mutex_unlock(&q->mu);
  return rc;
}

uint64_t sbx_hashq_pushed(const sbx_hashq *q) {
  return q ? q->pushed : 0; /* written by the producer only */
}

int sbx_hashq_stop(sbx_hashq *q, int drain) {
  if (!q)
    return SBX_OK;
  pthread_mutex_lock(&q->mu);
  q->stop = drain ? 1 : 2;
  pthread_cond_signal(&q->work);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->thread, NULL);
  int rc = drain ? q->status : SBX_OK;
  pthread_cond_destroy(&q->done);
  pthread_cond_destroy(&q->work);
  pthread_mutex_destroy(&q->mu);
  free(q);
  return rc;
}
