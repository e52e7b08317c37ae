/*
 * park.c - parked connections and the housekeeping pump (park.h).
 */
#include "park.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "pool.h"
#include "sbx/jobs.h"
#include "state.h"
#include "util.h"

/* Resumes everything parked; called with the lock held. */
static void resume_all(sbx__parkq *q) {
  for (size_t i = 0; i < q->n; i++)
    MHD_resume_connection(q->conn[i]);
  q->n = 0;
}

/* Re-queues the shards whose lease expired (workers that died). */
static void sweep(sbx_server *s) {
  sbx_store *st = sbx__pool_take(&s->pool);
  if (!st)
    return; /* busy: next time */
  int64_t requeued = 0, failed = 0;
  int rc = sbx_meta_job_requeue_expired(sbx_store_meta(st), sbx__now(),
                                        &requeued, &failed);
  sbx__pool_give(&s->pool, st);
  if (rc)
    sbx__log("lease sweep: %s", sbx_strerror(rc));
  else if (requeued || failed)
    sbx__log("lease sweep: %lld shard(s) re-queued, %lld failed",
             (long long)requeued, (long long)failed);
}

/* The pump: every tick (or kick) resumes the parked connections; every
 * SBX__SWEEP_SECONDS sweeps expired leases. */
static void *pump(void *arg) {
  sbx_server *s = arg;
  sbx__parkq *q = &s->park;
  double last_sweep = 0;
  pthread_mutex_lock(&q->mu);
  while (!q->stopping) {
    if (!q->kicked) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += SBX__PARK_TICK_MS * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    q->kicked = 0;
    resume_all(q);
    double now = sbx__mono();
    if (now - last_sweep >= SBX__SWEEP_SECONDS && !q->stopping) {
      last_sweep = now;
      pthread_mutex_unlock(&q->mu);
      sweep(s);
      pthread_mutex_lock(&q->mu);
    }
  }
  resume_all(q);
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

int sbx__park_start(sbx_server *s) {
  sbx__parkq *q = &s->park;
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  if (pthread_create(&q->thread, NULL, pump, s)) {
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    return SBX_ENOMEM;
  }
  q->started = 1;
  return SBX_OK;
}

void sbx__park_stop(sbx_server *s) {
  sbx__parkq *q = &s->park;
  if (!q->started)
    return;
  pthread_mutex_lock(&q->mu);
  q->stopping = 1;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
  pthread_join(q->thread, NULL);
  q->started = 0;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  free(q->conn);
  q->conn = NULL;
  q->n = q->cap = 0;
}

int sbx__park(sbx_server *s, struct MHD_Connection *c) {
  sbx__parkq *q = &s->park;
  if (!q->started)
    return SBX_EBUSY;
  int rc = SBX_OK;
  pthread_mutex_lock(&q->mu);
  if (q->stopping) {
    rc = SBX_EBUSY;
  } else if (q->n == q->cap) {
    size_t cap = q->cap ? 2 * q->cap : 64;
    struct MHD_Connection **nc = realloc(q->conn, cap * sizeof *nc);
    if (!nc)
      rc = SBX_ENOMEM;
    else {
      q->conn = nc;
      q->cap = cap;
    }
  }
  if (!rc) {
    MHD_suspend_connection(c);
    q->conn[q->n++] = c;
  }
  pthread_mutex_unlock(&q->mu);
  return rc;
}

void sbx__park_kick(sbx_server *s) {
  sbx__parkq *q = &s->park;
  if (!q->started)
    return;
  pthread_mutex_lock(&q->mu);
  q->kicked = 1;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}
