/*
 * eval.c - the attack evaluator (session cache per batch size, chunking,
 * query counting, abort/progress), the deterministic RNG and small vector
 * helpers shared by all attacks.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Returns a session for exactly `batch` samples, planned for `worker`
 * (-1: p.threads threads; else 1 thread, used by that data-parallel
 * worker only), creating (and evicting the least recently used) as
 * needed. Not thread-safe: called before any parallel region. */
static adv_session *eval_session(adv_eval *ev, int batch, int worker) {
  int lru = 0;
  for (int i = 0; i < ADV_EVAL_SESSIONS; i++) {
    if (ev->cache[i].s && ev->cache[i].batch == batch &&
        ev->cache[i].worker == worker) {
      ev->cache[i].last_used = ++ev->tick;
      return ev->cache[i].s;
    }
    if (!ev->cache[i].s || ev->cache[i].last_used < ev->cache[lru].last_used)
      lru = i;
  }
  /* prefer an empty slot */
  for (int i = 0; i < ADV_EVAL_SESSIONS; i++)
    if (!ev->cache[i].s) {
      lru = i;
      break;
    }
  adv_session_free(ev->cache[lru].s);
  ev->cache[lru].s = NULL;
  adv_session_params sp = adv_session_default_params();
  sp.threads = worker >= 0 ? 1 : ev->p.threads > 0 ? ev->p.threads : 1;
  sp.logits = ev->p.objective == ADV_OBJECTIVE_CLASSIFY; /* the output as
                                       it is for the output distance */
  sp.grad = !ev->forward_only;
  adv_session *s = NULL;
  if (adv_session_init_shape(ev->m, sp, ev->in_ndim, ev->in_dims, batch, &s,
                             ev->err))
    return NULL;
  ev->cache[lru].s = s;
  ev->cache[lru].batch = batch;
  ev->cache[lru].worker = worker;
  ev->cache[lru].last_used = ++ev->tick;
  return s;
}

/* Activation bytes one chunk may plan when the batch is automatic. The
 * passes are memory-bound outside the convolutions: chunks whose forward
 * and backward buffers stay in cache ran 10-25 % faster per image than 128
 * or 256 (mnist_cnn: 32-64 best, fashion_resnet: 32; 1 thread, bench_grad,
 * 2026-11-26). */
#define ADV_EVAL_AUTO_BYTES ((size_t)8 << 20)

/*
 * Samples per engine call: p.batch, or when 0 the largest power of two
 * from 256 down to 8 whose planned arena (bytes per sample from a batch-1
 * plan) fits ADV_EVAL_AUTO_BYTES. Independent of the thread count, so the
 * chunking (and with it every float) is the same for any p.threads.
 */
static int chunk_of(adv_eval *ev) {
  if (ev->p.batch > 0)
    return ev->p.batch;
  if (!ev->auto_batch) {
    adv_session *s = eval_session(ev, 1, -1);
    size_t per = s ? adv_session_arena_bytes(s) : 0;
    int b = 256;
    while (b > 8 && per && (size_t)b * per > ADV_EVAL_AUTO_BYTES)
      b /= 2;
    ev->auto_batch = b;
  }
  return ev->auto_batch;
}

/* One engine call on samples [s0, s0 + bn) with session s. */
typedef int (*chunk_fn)(adv_eval *ev, adv_session *s, int64_t s0, int bn,
                        void *ctx, adv_err *err);

/* Split of n samples: nch chunks, the first `extra` of base + 1 samples,
 * the rest of base. */
typedef struct chunking {
  int64_t nch, base, extra;
} chunking;

static void chunk_span(const chunking *c, int64_t i, int64_t *s0, int *bn) {
  *s0 = i * c->base + (i < c->extra ? i : c->extra);
  *bn = (int)(c->base + (i < c->extra));
}

/* One eval_chunks call, for its adv__par_each items: the sessions of each
 * worker slot, and per slot the first failure (its chunk, code, message). */
typedef struct eval_job {
  adv_eval *ev;
  chunking ck;
  chunk_fn fn;
  void *ctx;
  adv_session *big[ADV_EVAL_WORKERS], *small[ADV_EVAL_WORKERS];
  int rc[ADV_EVAL_WORKERS];
  int64_t failed[ADV_EVAL_WORKERS];
  adv_err err[ADV_EVAL_WORKERS];
} eval_job;

/* Chunks [lo, hi) on worker slot w's sessions; a slot stops at its first
 * failure. */
static void eval_chunk(void *arg, int64_t lo, int64_t hi, int w) {
  eval_job *j = arg;
  for (int64_t c = lo; c < hi && !j->rc[w]; c++) {
    int64_t s0;
    int bn;
    chunk_span(&j->ck, c, &s0, &bn);
    j->rc[w] = j->fn(j->ev, c < j->ck.extra ? j->big[w] : j->small[w], s0, bn,
                     j->ctx, &j->err[w]);
    if (j->rc[w])
      j->failed[w] = c;
  }
}

/*
 * Runs fn over n samples in near-equal chunks of at most chunk_of(ev):
 * at least ceil(n / B) chunks, and up to 4 when n allows chunks of 8 or
 * more, so that a small call (a black-box query over the few points still
 * robust) still feeds every worker. With p.threads > 1 and at least two
 * chunks, up to W = min(threads, ADV_EVAL_WORKERS) worker slots claim the
 * chunks one at a time (adv__par_each), each slot running its own 1-thread
 * sessions: no fork/join or barrier per op, and each core keeps its own
 * chunk's buffers in its cache (faster than splitting every op over the
 * threads). Otherwise one multi-threaded session per chunk size. The
 * chunking depends on n and B only, never on the thread count, so results
 * do not either. On error returns the code of the lowest-numbered chunk
 * that failed, with its message in ev->err.
 */
static int eval_chunks(adv_eval *ev, int64_t n, chunk_fn fn, void *ctx) {
  if (n <= 0)
    return ADV_OK;
  int B = chunk_of(ev);
  chunking ck;
  ck.nch = (n + B - 1) / B;
  int64_t want = n / 8 < 4 ? n / 8 : 4;
  if (ck.nch < want)
    ck.nch = want;
  if (ck.nch < 1)
    ck.nch = 1;
  ck.base = n / ck.nch;
  ck.extra = n % ck.nch;
  /* (the load adaptation may run the W slots on fewer threads: the
   * chunking, the sessions and so every result stay those of W) */
  int T = ev->p.threads > 0 ? ev->p.threads : 1;
  int W = T < ADV_EVAL_WORKERS ? T : ADV_EVAL_WORKERS;
  if (W > ck.nch)
    W = (int)ck.nch;
  if (W < 2) {
    for (int64_t c = 0; c < ck.nch; c++) {
      int64_t s0;
      int bn;
      chunk_span(&ck, c, &s0, &bn);
      adv_session *s = eval_session(ev, bn, -1);
      if (!s)
        return ADV_EINVAL;
      int rc = fn(ev, s, s0, bn, ctx, ev->err);
      if (rc)
        return rc;
    }
    return ADV_OK;
  }
  /* sessions first (the cache is not thread-safe): every worker slot gets
   * a session of base + 1 samples when there are such chunks (the first
   * `extra`), and one of base samples when there are others: the threads
   * claim chunks one at a time (adv__par_each), so any slot may run any
   * chunk, on identical sessions of that chunk's size. (The cache holds
   * more sessions than one call needs and evicts the least recently used,
   * so none of these evicts another.) */
  eval_job j = {.ev = ev, .ck = ck, .fn = fn, .ctx = ctx};
  for (int w = 0; w < W; w++) {
    if (ck.extra && !(j.big[w] = eval_session(ev, (int)ck.base + 1, w)))
      return ADV_EINVAL;
    if (ck.nch > ck.extra && !(j.small[w] = eval_session(ev, (int)ck.base, w)))
      return ADV_EINVAL;
  }
  adv__run_stamp st;
  adv__run_mark(&st);
  adv__par_each(W, ck.nch, eval_chunk, &j);
  adv__run_observe(&st);
  /* the error of the lowest-numbered failing chunk */
  int first = -1;
  for (int w = 0; w < W; w++)
    if (j.rc[w] && (first < 0 || j.failed[w] < j.failed[first]))
      first = w;
  if (first < 0)
    return ADV_OK;
  if (ev->err)
    *ev->err = j.err[first];
  return j.rc[first];
}

static int fwd_chunk(adv_eval *ev, adv_session *s, int64_t s0, int bn,
                     void *ctx, adv_err *err) {
  float *logits = ctx;
  (void)bn;
  return adv_session_forward(s, ev->cur_x + s0 * ev->per,
                             logits + s0 * ev->classes, err);
}

int adv__eval_forward(adv_eval *ev, const float *x, int64_t n, float *logits) {
  ev->cur_x = x;
  int rc = eval_chunks(ev, n, fwd_chunk, logits);
  if (!rc)
    ev->forwards += n;
  return rc;
}

typedef struct grad_ctx {
  adv_loss_params lp;
  const int64_t *y, *target;
  float *logits, *loss, *dx;
  const float *dz;
} grad_ctx;

static int grad_chunk(adv_eval *ev, adv_session *s, int64_t s0, int bn,
                      void *ctx, adv_err *err) {
  grad_ctx *g = ctx;
  (void)bn;
  return adv_session_grad(
      s, ev->cur_x + s0 * ev->per, g->lp, g->y ? g->y + s0 : NULL,
      g->target ? g->target + s0 : NULL,
      g->logits ? g->logits + s0 * ev->classes : NULL,
      g->loss ? g->loss + s0 : NULL, g->dx + s0 * ev->per, err);
}

/* Forward, the loss on the output (any shape: K = ev->classes floats per
 * sample) and backward from its gradient: the output-distance objective,
 * whose outputs adv_session_grad (N x K class scores only) cannot take. */
static int obj_chunk(adv_eval *ev, adv_session *s, int64_t s0, int bn,
                     void *ctx, adv_err *err) {
  grad_ctx *g = ctx;
  int64_t K = ev->classes;
  float *buf = malloc(sizeof(float) * (size_t)(2 * bn * K));
  if (!buf)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  float *z = g->logits ? g->logits + s0 * K : buf + bn * K;
  int rc = adv_session_forward(s, ev->cur_x + s0 * ev->per, z, err);
  if (rc == ADV_OK)
    rc = adv_loss_eval(g->lp, z, bn, K, g->y + s0, NULL,
                       g->loss ? g->loss + s0 : NULL, buf, err);
  if (rc == ADV_OK)
    rc = adv_session_backward_dz(s, buf, g->dx + s0 * ev->per, ev->abort_flag,
                                 err);
  free(buf);
  return rc;
}

int adv__eval_grad(adv_eval *ev, const float *x, int64_t n, adv_loss_params lp,
                   const int64_t *y, const int64_t *target, float *logits,
                   float *loss, float *dx) {
  grad_ctx g = {lp, y, target, logits, loss, dx, NULL};
  ev->cur_x = x;
  int rc = eval_chunks(
      ev, n, lp.kind == ADV_LOSS_OUTPUT_DIST ? obj_chunk : grad_chunk, &g);
  if (!rc) {
    ev->forwards += n;
    ev->backwards += n;
  }
  return rc;
}

/* Forward then backward from the given logit gradients dz; logits go to
 * g->logits (the caller's, n x K). */
static int dz_chunk(adv_eval *ev, adv_session *s, int64_t s0, int bn, void *ctx,
                    adv_err *err) {
  grad_ctx *g = ctx;
  (void)bn;
  int rc = adv_session_forward(s, ev->cur_x + s0 * ev->per,
                               g->logits + s0 * ev->classes, err);
  if (rc == ADV_OK)
    rc = adv_session_backward_dz(s, g->dz + s0 * ev->classes,
                                 g->dx + s0 * ev->per, ev->abort_flag, err);
  return rc;
}

int adv__eval_grad_dz(adv_eval *ev, const float *x, int64_t n, const float *dz,
                      float *logits, float *dx) {
  float *tmp = NULL;
  if (!logits) {
    tmp = malloc(sizeof(float) * (size_t)(n * ev->classes));
    if (!tmp)
      return ADV_ENOMEM;
  }
  grad_ctx g = {adv_loss_default_params(ADV_LOSS_CE),
                NULL,
                NULL,
                logits ? logits : tmp,
                NULL,
                dx,
                dz};
  ev->cur_x = x;
  int rc = eval_chunks(ev, n, dz_chunk, &g);
  if (!rc) {
    ev->forwards += n;
    ev->backwards += n;
  }
  free(tmp);
  return rc;
}

adv_loss_params adv__eval_loss(const adv_eval *ev, adv_loss_kind kind,
                               int targeted) {
  if (ev->p.objective != ADV_OBJECTIVE_OUTPUT_DISTANCE) {
    adv_loss_params lp = adv_loss_default_params(kind);
    lp.targeted = targeted;
    return lp;
  }
  adv_loss_params lp = adv_loss_default_params(ADV_LOSS_OUTPUT_DIST);
  lp.targeted = ev->p.targeted;
  lp.ref = ev->ref;
  lp.n_ref = ev->n_ref;
  return lp;
}

double adv__eval_out_dist(const adv_eval *ev, const float *z, int64_t row) {
  return adv__norm_l2(z, ev->ref + row * ev->classes, ev->classes);
}

int adv__eval_fooled(const adv_eval *ev, const float *z, int64_t y, int64_t t,
                     int targeted) {
  if (ev->p.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE) {
    double md = ev->p.min_distance, d = adv__eval_out_dist(ev, z, y);
    if (!(md > 0))
      return 0;
    return ev->p.targeted ? d <= md : d >= md;
  }
  int64_t a = adv__argmax(z, ev->classes);
  return targeted ? a == t : a != y;
}

int adv__eval_aborted(adv_eval *ev, const char *phase, double fraction) {
  if (ev->abort_flag && *ev->abort_flag)
    return 1;
  if (ev->progress && ev->progress(ev->ud, phase, fraction))
    return 1;
  return 0;
}

/* ---------------- RNG ---------------- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void adv__rng_seed(adv_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t adv__rng_next(adv_rng *r) {
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

double adv__rng_uniform(adv_rng *r) {
  return (double)(adv__rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double adv__rng_normal(adv_rng *r) {
  double u1 = adv__rng_uniform(r), u2 = adv__rng_uniform(r);
  if (u1 < 1e-300)
    u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t adv__rng_int(adv_rng *r, int64_t n) {
  return n > 0 ? (int64_t)(adv__rng_next(r) % (uint64_t)n) : 0;
}

/* ---------------- vector helpers ---------------- */

int64_t adv__argmax(const float *z, int64_t k) {
  int64_t b = 0;
  for (int64_t i = 1; i < k; i++)
    if (z[i] > z[b])
      b = i;
  return b;
}

void adv__project(float *xa, const float *x, int64_t per, adv_norm norm,
                  float eps, const float *lo, const float *hi) {
  if (norm == ADV_NORM_LINF) {
    for (int64_t i = 0; i < per; i++) {
      float d = xa[i] - x[i];
      d = d > eps ? eps : d < -eps ? -eps : d;
      xa[i] = adv__clipf(x[i] + d, lo[i], hi[i]);
    }
    return;
  }
  double s = 0;
  for (int64_t i = 0; i < per; i++) {
    double d = (double)xa[i] - x[i];
    s += d * d;
  }
  double nrm = sqrt(s);
  /* scale slightly inside the ball so float rounding cannot exceed eps */
  double f = nrm > eps ? (double)eps / nrm * (1.0 - 1e-6) : 1.0;
  for (int64_t i = 0; i < per; i++) {
    float v = (float)((double)x[i] + ((double)xa[i] - x[i]) * f);
    xa[i] = adv__clipf(v, lo[i], hi[i]);
  }
}

void adv__clip_box(float *x, int64_t per, const float *lo, const float *hi) {
  for (int64_t i = 0; i < per; i++)
    x[i] = adv__clipf(x[i], lo[i], hi[i]);
}

int adv__clip_bounds(const adv_attack_params *p, int ndim, const int64_t *dims,
                     int64_t per, float *lo, float *hi, adv_err *err) {
  if (p->n_clip == 0) {
    for (int64_t k = 0; k < per; k++) {
      lo[k] = p->clip_min;
      hi[k] = p->clip_max;
    }
    return ADV_OK;
  }
  if (p->n_clip < 0 || p->n_clip > ADV_CLIP_MAX_CHANNELS || ndim < 2 ||
      dims[1] != p->n_clip)
    return adv__error(err, ADV_EINVAL,
                      "clip_min/clip_max: %d per-channel values but the "
                      "input has %lld channels (dim 1)",
                      p->n_clip, ndim < 2 ? 0LL : (long long)dims[1]);
  for (int c = 0; c < p->n_clip; c++)
    if (!(p->clip_lo[c] < p->clip_hi[c]) || !isfinite(p->clip_lo[c]) ||
        !isfinite(p->clip_hi[c]))
      return adv__error(err, ADV_EINVAL,
                        "clip_max: channel %d needs clip_min < clip_max", c);
  int64_t inner = per / p->n_clip;
  for (int64_t k = 0; k < per; k++) {
    lo[k] = p->clip_lo[k / inner];
    hi[k] = p->clip_hi[k / inner];
  }
  return ADV_OK;
}

double adv__norm_linf(const float *a, const float *b, int64_t per) {
  double m = 0;
  for (int64_t i = 0; i < per; i++) {
    double d = fabs((double)a[i] - b[i]);
    m = d > m ? d : m;
  }
  return m;
}

double adv__norm_l2(const float *a, const float *b, int64_t per) {
  double s = 0;
  for (int64_t i = 0; i < per; i++) {
    double d = (double)a[i] - b[i];
    s += d * d;
  }
  return sqrt(s);
}
