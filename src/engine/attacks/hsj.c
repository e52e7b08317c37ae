/*
 * hsj.c - HopSkipJumpAttack (Chen, Jordan, Wainwright, IEEE S&P 2020), the
 * decision-based black-box attack: it only sees the model's top-1 label
 * (through adv__eval_forward; never a gradient) and walks along the
 * decision boundary towards x, shrinking the L2 or L-inf distance.
 *
 * Per sample, as in the authors' hsja.py (theta = gamma / d^{3/2} for L2,
 * gamma / d^2 for L-inf, gamma = 1):
 *   init      untargeted: uniform noise in [clip_min, clip_max] until it is
 *             adversarial (at most HSJ_INIT_TRIES), then a binary search on
 *             the blend (1-a) x + a noise (tolerance 0.001); targeted: the
 *             nearest other sample of the batch that the model classifies as
 *             the target (the paper's "target image"), else uniform noise;
 *   boundary  binary search between x and the point: L2 on the blend
 *             coefficient in [0, 1] down to theta; L-inf on the box radius
 *             (clip to x +- a) in [0, dist] down to min(dist * theta, theta);
 *   iterate   t = 1..steps: delta = 0.1 (clip range) at t = 1, else
 *             sqrt(d) theta dist' (L2) / d theta dist' (L-inf), dist' the
 *             distance before the last boundary search; n_t = min(100
 *             sqrt(t), 10^4) Monte-Carlo directions u (Gaussian for L2,
 *             uniform [-1,1]^d for L-inf, unit L2 norm), probes
 *             clip(x_t + delta u); gradient-direction estimate with the
 *             baseline subtraction of Eq. (16); update v = g/|g| (L2) or
 *             sign(g) (L-inf); geometric step search eps = dist / sqrt(t),
 *             halved until clip(x_t + eps v) is adversarial; boundary search.
 * The best (smallest distance) adversarial point seen is returned.
 *
 * Budget: every forward of a sample is one query, at most p.queries
 * (default 5000) per sample, including one query at x itself (already
 * adversarial -> done, x_adv = x). An iteration runs only while the budget
 * still covers one direction probe, one step query and the boundary search;
 * the probes are cut to what remains. Samples are processed together
 * (batched forwards over all running samples of a group); every sample has
 * its own random stream, seeded from p.seed and its index.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HSJ_DEFAULT_QUERIES 5000
#define HSJ_DEFAULT_STEPS 40
#define HSJ_INIT_EVALS 100      /* directions at t = 1 */
#define HSJ_MAX_EVALS 10000     /* cap on directions per iteration */
#define HSJ_INIT_TRIES 100      /* uniform-noise draws for the init */
#define HSJ_BLEND_TOL 0.001     /* blend binary search tolerance */
#define HSJ_MAX_HALVINGS 64     /* geometric step search */
#define HSJ_MAX_CANDIDATES 4096 /* batch samples scanned for a start point */
#define HSJ_GROUP_BYTES ((size_t)64 << 20)

typedef struct hsj_ctx {
  adv_eval *ev;
  const float *x;
  const int64_t *lab; /* y (untargeted) or target (targeted) */
  float *xa;          /* best adversarial point (the output) */
  int64_t n, per, K, Q, B;
  int targeted, linf, steps;
  int blend; /* the running binary search is the init blend search */
  const float *lo, *hi; /* per-value clip bounds (adv_eval) */
  double range;         /* clip_max - clip_min (the envelope) */
  double theta;
  int64_t *pred0; /* n predictions on x */
  const float *z0; /* n outputs on x (the output-distance objective) */
  int64_t *q;     /* n queries so far */
  adv_rng *rng;   /* n streams */
  /* the group being attacked: samples g0 .. g0 + G - 1; per sample g: */
  int64_t g0, G;
  float *cur;                    /* x_t, the current boundary point (G x per) */
  float *pt;                     /* start of the next binary search (G x per) */
  float *hib;                    /* adversarial end of that search (G x per) */
  float *upd;                    /* update direction v (G x per) */
  double *s0, *s1;               /* sums of u and of phi * u (G x per) */
  double *dist;                  /* |x_t - x| in the attack norm */
  double *dpu;                   /* distance before the last boundary search */
  double *bestd;                 /* distance of the best point (in x_adv) */
  double *delta;                 /* probe radius */
  double *step;                  /* geometric step eps */
  double *blo, *bhi, *thr, *mid; /* binary search bracket */
  int64_t *evals, *npos, *halv;  /* probes, adversarial probes, halvings */
  unsigned char *alive;          /* still attacked */
  unsigned char *flag;           /* takes part in the running phase */
  unsigned char *ok;    /* the phase succeeded (noise found, step taken) */
  unsigned char *start; /* start point: 0 none, 1 batch sample, 2 noise */
  /* one batch of queries */
  float *rows, *z; /* B x per, B x K */
  int64_t *owner;  /* B group-local sample of each row */
} hsj_ctx;

/* A phase round: builds sample g's query into row (returns 0 and may clear
 * flag[g] when g has nothing to ask), and takes the decision. */
typedef int (*hsj_build_fn)(hsj_ctx *c, int64_t g, float *row);
typedef void (*hsj_take_fn)(hsj_ctx *c, int64_t g, const float *row, int adv);

static uint64_t hsj_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static float hsj_clip(double v, float lo, float hi) {
  float f = (float)v;
  return f < lo ? lo : f > hi ? hi : f;
}

/* Distance in the attack's norm. */
static double hsj_dist(const hsj_ctx *c, const float *a, const float *b) {
  return c->linf ? adv__norm_linf(a, b, c->per) : adv__norm_l2(a, b, c->per);
}

/* Queries the boundary search needs from a bracket of width w0 down to thr. */
static int64_t hsj_halvings(double w0, double thr) {
  int64_t k = 0;
  while (w0 > thr && k < 200) {
    w0 /= 2;
    k++;
  }
  return k;
}

/* Boundary-search queries to reserve for a point at distance dist. */
static int64_t hsj_bs_cost(const hsj_ctx *c, double dist) {
  if (!c->linf)
    return hsj_halvings(1.0, c->theta);
  double thr = dist * c->theta < c->theta ? dist * c->theta : c->theta;
  return hsj_halvings(dist, thr);
}

/* Records a new boundary point of sample g when it beats the best one. */
static void hsj_keep_best(hsj_ctx *c, int64_t g) {
  if (c->dist[g] < c->bestd[g]) {
    c->bestd[g] = c->dist[g];
    memcpy(c->xa + (c->g0 + g) * c->per, c->cur + g * c->per,
           sizeof(float) * (size_t)c->per);
  }
}

/*
 * Forwards the m rows of c->rows (one query for each owner) and hands
 * every decision to take(). Decision: untargeted argmax != y, targeted
 * argmax == target.
 */
static int hsj_flush(hsj_ctx *c, int64_t m, hsj_take_fn take) {
  if (!m)
    return ADV_OK;
  int rc = adv__eval_forward(c->ev, c->rows, m, c->z);
  if (rc)
    return rc;
  for (int64_t k = 0; k < m; k++) {
    int64_t g = c->owner[k], i = c->g0 + g;
    c->q[i]++;
    take(c, g, c->rows + k * c->per,
         adv__eval_fooled(c->ev, c->z + k * c->K, c->lab[i], c->lab[i],
                          c->targeted));
  }
  return ADV_OK;
}

/* ADV_EABORTED (with the message set) when the caller asked to stop. */
static int hsj_aborted(hsj_ctx *c) {
  double f = (double)c->ev->forwards / ((double)c->n * (double)c->Q);
  if (adv__eval_aborted(c->ev, "hsj", f > 1 ? 1 : f))
    return adv__error(c->ev->err, ADV_EABORTED, "aborted");
  return ADV_OK;
}

/*
 * Runs rounds of one query per flagged sample (batched across samples)
 * until no sample asks for one or max_rounds rounds were run.
 */
static int hsj_rounds(hsj_ctx *c, hsj_build_fn build, hsj_take_fn take,
                      int64_t max_rounds) {
  for (int64_t r = 0; r < max_rounds; r++) {
    int rc = hsj_aborted(c);
    if (rc)
      return rc;
    int64_t m = 0, any = 0;
    for (int64_t g = 0; g < c->G; g++) {
      if (!c->flag[g] || !build(c, g, c->rows + m * c->per))
        continue;
      c->owner[m++] = g;
      any = 1;
      if (m == c->B) {
        if ((rc = hsj_flush(c, m, take)))
          return rc;
        m = 0;
      }
    }
    if ((rc = hsj_flush(c, m, take)))
      return rc;
    if (!any)
      break;
  }
  return ADV_OK;
}

/* ---- init: uniform noise ---- */

/* A uniform draw in [clip_min, clip_max] while budget is left. */
static int noise_build(hsj_ctx *c, int64_t g, float *row) {
  int64_t i = c->g0 + g;
  if (c->q[i] >= c->Q)
    return 0;
  for (int64_t k = 0; k < c->per; k++)
    row[k] = hsj_clip(c->lo[k] + ((double)c->hi[k] - c->lo[k]) *
                                     adv__rng_uniform(&c->rng[i]),
                      c->lo[k], c->hi[k]);
  return 1;
}

/* The first adversarial draw becomes the start (blend search next). */
static void noise_take(hsj_ctx *c, int64_t g, const float *row, int adv) {
  if (!adv)
    return;
  memcpy(c->pt + g * c->per, row, sizeof(float) * (size_t)c->per);
  c->flag[g] = 0;
  c->ok[g] = 1;
}

/* ---- binary searches (blend and boundary) ---- */

/* Bisection step: an adversarial midpoint becomes the upper end (and its
 * image the kept point), otherwise the lower end. */
static void bs_take(hsj_ctx *c, int64_t g, const float *row, int adv) {
  if (adv) {
    c->bhi[g] = c->mid[g];
    memcpy(c->hib + g * c->per, row, sizeof(float) * (size_t)c->per);
  } else {
    c->blo[g] = c->mid[g];
  }
}

/* Blend point (1-a) x + a pt, the L2 projection of the reference. */
static void blend_row(const hsj_ctx *c, int64_t g, double a, float *row) {
  const float *xi = c->x + (c->g0 + g) * c->per, *p = c->pt + g * c->per;
  for (int64_t k = 0; k < c->per; k++)
    row[k] = hsj_clip((1.0 - a) * xi[k] + a * p[k], c->lo[k], c->hi[k]);
}

/* The midpoint of sample g's bracket: the blend (init, or L2) or the
 * L-inf box clip(pt, x - a, x + a); stops at the tolerance or budget. */
static int bs_build(hsj_ctx *c, int64_t g, float *row) {
  int64_t i = c->g0 + g;
  if (!(c->bhi[g] - c->blo[g] > c->thr[g]) || c->q[i] >= c->Q) {
    c->flag[g] = 0;
    return 0;
  }
  double a = (c->bhi[g] + c->blo[g]) / 2.0;
  c->mid[g] = a;
  if (c->linf && !c->blend) {
    const float *xi = c->x + i * c->per, *p = c->pt + g * c->per;
    for (int64_t k = 0; k < c->per; k++) {
      double v = p[k], l = (double)xi[k] - a, h = (double)xi[k] + a;
      row[k] = hsj_clip(v < l ? l : v > h ? h : v, c->lo[k], c->hi[k]);
    }
  } else {
    blend_row(c, g, a, row);
  }
  return 1;
}

/* Starts a binary search on every flagged sample: blend (tolerance 0.001)
 * or boundary (the constraint's projection and theta). */
static int hsj_search(hsj_ctx *c, int blend) {
  c->blend = blend;
  for (int64_t g = 0; g < c->G; g++) {
    if (!c->flag[g])
      continue;
    const float *xi = c->x + (c->g0 + g) * c->per, *p = c->pt + g * c->per;
    memcpy(c->hib + g * c->per, p, sizeof(float) * (size_t)c->per);
    c->dpu[g] = hsj_dist(c, p, xi);
    c->blo[g] = 0;
    c->bhi[g] = 1;
    if (blend) {
      c->thr[g] = HSJ_BLEND_TOL;
    } else if (c->linf) {
      c->bhi[g] = c->dpu[g];
      c->thr[g] =
          c->dpu[g] * c->theta < c->theta ? c->dpu[g] * c->theta : c->theta;
    } else {
      c->thr[g] = c->theta;
    }
  }
  return hsj_rounds(c, bs_build, bs_take, INT64_MAX);
}

/* ---- geometric step-size search ---- */

/* clip(x_t + eps v) while the budget still covers the boundary search
 * afterwards and fewer than HSJ_MAX_HALVINGS halvings were made. */
static int gp_build(hsj_ctx *c, int64_t g, float *row) {
  int64_t i = c->g0 + g;
  if (c->q[i] + hsj_bs_cost(c, c->dist[g]) >= c->Q ||
      c->halv[g] >= HSJ_MAX_HALVINGS) {
    c->flag[g] = 0; /* no step this iteration */
    return 0;
  }
  const float *cu = c->cur + g * c->per, *u = c->upd + g * c->per;
  for (int64_t k = 0; k < c->per; k++)
    row[k] = hsj_clip((double)cu[k] + c->step[g] * u[k], c->lo[k], c->hi[k]);
  return 1;
}

/* Adversarial: the step is taken (boundary search next); else halve eps. */
static void gp_take(hsj_ctx *c, int64_t g, const float *row, int adv) {
  if (adv) {
    memcpy(c->pt + g * c->per, row, sizeof(float) * (size_t)c->per);
    c->flag[g] = 0;
    c->ok[g] = 1;
  } else {
    c->step[g] /= 2;
    c->halv[g]++;
  }
}

/* ---- gradient-direction estimate ---- */

/* Accumulates the clipped direction u = (probe - x_t) / delta into
 * s0 = sum u and s1 = sum phi u (phi = +-1), and counts phi = +1. */
static void grad_take(hsj_ctx *c, int64_t g, const float *row, int adv) {
  const float *cu = c->cur + g * c->per;
  double *s0 = c->s0 + g * c->per, *s1 = c->s1 + g * c->per,
         inv = 1.0 / c->delta[g];
  for (int64_t k = 0; k < c->per; k++) {
    double v = ((double)row[k] - cu[k]) * inv;
    s0[k] += v;
    s1[k] += adv ? v : -v;
  }
  c->npos[g] += adv;
}

/* One Monte-Carlo probe clip(x_t + delta u), |u|_2 = 1. */
static void grad_probe(hsj_ctx *c, int64_t g, float *row) {
  adv_rng *r = &c->rng[c->g0 + g];
  double s = 0;
  if (c->linf) {
    for (int64_t k = 0; k < c->per; k++) {
      double v = 2.0 * adv__rng_uniform(r) - 1.0;
      row[k] = (float)v;
      s += v * v;
    }
  } else {
    for (int64_t k = 0; k < c->per; k += 2) { /* Box-Muller, both outputs */
      double u1 = adv__rng_uniform(r), u2 = adv__rng_uniform(r);
      double rad = sqrt(-2.0 * log(u1 > 1e-300 ? u1 : 1e-300));
      double a = rad * cos(6.283185307179586 * u2),
             b = rad * sin(6.283185307179586 * u2);
      row[k] = (float)a;
      s += (double)row[k] * row[k];
      if (k + 1 < c->per) {
        row[k + 1] = (float)b;
        s += (double)row[k + 1] * row[k + 1];
      }
    }
  }
  double f = c->delta[g] / (sqrt(s) + 1e-300);
  const float *cu = c->cur + g * c->per;
  for (int64_t k = 0; k < c->per; k++)
    row[k] = hsj_clip((double)cu[k] + f * row[k], c->lo[k], c->hi[k]);
}

/*
 * Estimates the gradient direction at every running sample from evals[g]
 * probes (batched across samples) and writes the update v into upd;
 * ok[g] = 0 when the estimate is degenerate (no step then).
 */
static int hsj_grad(hsj_ctx *c) {
  int64_t m = 0;
  int rc;
  for (int64_t g = 0; g < c->G; g++) {
    if (!c->alive[g])
      continue;
    memset(c->s0 + g * c->per, 0, sizeof(double) * (size_t)c->per);
    memset(c->s1 + g * c->per, 0, sizeof(double) * (size_t)c->per);
    c->npos[g] = 0;
    for (int64_t e = 0; e < c->evals[g]; e++) {
      grad_probe(c, g, c->rows + m * c->per);
      c->owner[m++] = g;
      if (m == c->B) {
        if ((rc = hsj_aborted(c)) || (rc = hsj_flush(c, m, grad_take)))
          return rc;
        m = 0;
      }
    }
  }
  if ((rc = hsj_flush(c, m, grad_take)))
    return rc;
  for (int64_t g = 0; g < c->G; g++) {
    if (!c->alive[g])
      continue;
    /* baseline subtraction: mean((f - mean f) u), or +-mean(u) when all
     * probes agree (the authors' code) */
    double ne = (double)c->evals[g], a1 = 1, a0;
    if (c->npos[g] == c->evals[g]) {
      a1 = 0;
      a0 = 1;
    } else if (c->npos[g] == 0) {
      a1 = 0;
      a0 = -1;
    } else {
      a0 = -(2.0 * (double)c->npos[g] - ne) / ne;
    }
    double *s0 = c->s0 + g * c->per, *s1 = c->s1 + g * c->per, nrm = 0;
    for (int64_t k = 0; k < c->per; k++) {
      s0[k] = a1 * s1[k] + a0 * s0[k];
      nrm += s0[k] * s0[k];
    }
    nrm = sqrt(nrm);
    c->ok[g] = nrm > 0 && isfinite(nrm);
    float *u = c->upd + g * c->per;
    for (int64_t k = 0; k < c->per && c->ok[g]; k++)
      u[k] =
          c->linf ? (float)((s0[k] > 0) - (s0[k] < 0)) : (float)(s0[k] / nrm);
  }
  return ADV_OK;
}

/*
 * The nearest (attack norm) other sample of the batch whose clean
 * prediction is adversarial for sample i, scanning at most
 * HSJ_MAX_CANDIDATES candidates from i onwards; -1 when none.
 */
static int64_t hsj_batch_start(const hsj_ctx *c, int64_t i) {
  int64_t best = -1, seen = 0;
  double bd = INFINITY;
  const float *xi = c->x + i * c->per;
  for (int64_t s = 1; s < c->n && seen < HSJ_MAX_CANDIDATES; s++) {
    int64_t j = (i + s) % c->n;
    int adv = c->ev->p.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE
                  ? adv__eval_fooled(c->ev, c->z0 + j * c->K, c->lab[i], -1, 0)
              : c->targeted ? c->pred0[j] == c->lab[i]
                            : c->pred0[j] != c->lab[i];
    if (!adv)
      continue;
    seen++;
    double d = hsj_dist(c, c->x + j * c->per, xi);
    if (d < bd) {
      bd = d;
      best = j;
    }
  }
  return best;
}

/*
 * Finds a starting adversarial point for every live sample of the group
 * and moves it to the boundary: targeted - the batch start, else uniform
 * noise (+ blend search); untargeted - uniform noise (+ blend search), else
 * the batch start. start[g]: 0 none yet, 1 batch start, 2 noise.
 * Samples without any stop (x_adv stays x).
 */
static int hsj_init(hsj_ctx *c) {
  int rc;
  for (int64_t g = 0; g < c->G; g++) {
    c->start[g] = 0;
    c->ok[g] = 0;
    if (!c->alive[g])
      continue;
    int64_t j = c->targeted ? hsj_batch_start(c, c->g0 + g) : -1;
    if (j >= 0) {
      memcpy(c->pt + g * c->per, c->x + j * c->per,
             sizeof(float) * (size_t)c->per);
      c->start[g] = 1;
    }
    c->flag[g] = !c->start[g];
  }
  if ((rc = hsj_rounds(c, noise_build, noise_take, HSJ_INIT_TRIES)))
    return rc;
  for (int64_t g = 0; g < c->G; g++)
    c->flag[g] = c->alive[g] && c->ok[g]; /* noise found: blend search */
  if ((rc = hsj_search(c, 1)))
    return rc;
  for (int64_t g = 0; g < c->G; g++) {
    if (!c->alive[g] || c->start[g])
      continue;
    if (c->ok[g]) {
      memcpy(c->pt + g * c->per, c->hib + g * c->per,
             sizeof(float) * (size_t)c->per);
      c->start[g] = 2;
      continue;
    }
    int64_t j = c->targeted ? -1 : hsj_batch_start(c, c->g0 + g);
    if (j >= 0) {
      memcpy(c->pt + g * c->per, c->x + j * c->per,
             sizeof(float) * (size_t)c->per);
      c->start[g] = 1;
    } else {
      c->alive[g] = 0;
    }
  }
  for (int64_t g = 0; g < c->G; g++)
    c->flag[g] = c->alive[g];
  if ((rc = hsj_search(c, 0)))
    return rc;
  for (int64_t g = 0; g < c->G; g++) {
    if (!c->alive[g])
      continue;
    memcpy(c->cur + g * c->per, c->hib + g * c->per,
           sizeof(float) * (size_t)c->per);
    c->dist[g] = hsj_dist(c, c->cur + g * c->per, c->x + (c->g0 + g) * c->per);
    hsj_keep_best(c, g);
  }
  return ADV_OK;
}

/* Attacks the group's live samples: init, then the HSJ iterations. */
static int hsj_group(hsj_ctx *c) {
  int rc = hsj_init(c);
  if (rc)
    return rc;
  double d = (double)c->per;
  for (int t = 1; t <= c->steps; t++) {
    int any = 0;
    for (int64_t g = 0; g < c->G; g++) {
      if (!c->alive[g])
        continue;
      int64_t i = c->g0 + g;
      if (t == 1)
        c->delta[g] = 0.1 * c->range;
      else
        c->delta[g] = (c->linf ? d : sqrt(d)) * c->theta * c->dpu[g];
      int64_t ne = (int64_t)(HSJ_INIT_EVALS * sqrt((double)t));
      ne = ne < HSJ_MAX_EVALS ? ne : HSJ_MAX_EVALS;
      int64_t rem = c->Q - c->q[i] - hsj_bs_cost(c, c->dist[g]) - 1;
      if (rem < 1 || !(c->delta[g] > 0)) {
        c->alive[g] = 0; /* budget spent */
        continue;
      }
      c->evals[g] = ne < rem ? ne : rem;
      any = 1;
    }
    if (!any)
      break;
    if ((rc = hsj_grad(c)))
      return rc;
    for (int64_t g = 0; g < c->G; g++) {
      c->flag[g] = c->alive[g] && c->ok[g];
      c->ok[g] = 0;
      c->step[g] = c->dist[g] / sqrt((double)t);
      c->halv[g] = 0;
    }
    if ((rc = hsj_rounds(c, gp_build, gp_take, INT64_MAX)))
      return rc;
    for (int64_t g = 0; g < c->G; g++)
      c->flag[g] = c->alive[g] && c->ok[g];
    if ((rc = hsj_search(c, 0)))
      return rc;
    for (int64_t g = 0; g < c->G; g++) {
      if (!c->alive[g] || !c->ok[g])
        continue;
      memcpy(c->cur + g * c->per, c->hib + g * c->per,
             sizeof(float) * (size_t)c->per);
      c->dist[g] =
          hsj_dist(c, c->cur + g * c->per, c->x + (c->g0 + g) * c->per);
      hsj_keep_best(c, g);
    }
  }
  return ADV_OK;
}

int adv__attack_hsj(adv_eval *ev, const float *x, int64_t n, const int64_t *y,
                    const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  hsj_ctx c;
  memset(&c, 0, sizeof(c));
  c.ev = ev;
  c.x = x;
  c.xa = x_adv;
  c.n = n;
  c.per = ev->per;
  c.K = ev->classes;
  c.Q = p->queries > 0 ? p->queries : HSJ_DEFAULT_QUERIES;
  c.B = p->batch > 0 ? p->batch : 256;
  c.targeted = p->targeted && target;
  c.lab = c.targeted ? target : y;
  c.linf = p->norm == ADV_NORM_LINF;
  c.steps = p->steps > 0 ? p->steps : HSJ_DEFAULT_STEPS;
  c.lo = ev->lo;
  c.hi = ev->hi;
  c.range = (double)p->clip_max - p->clip_min;
  double d = (double)c.per;
  c.theta = c.linf ? 1.0 / (d * d) : 1.0 / (d * sqrt(d));
  /* group size: bounded by the batch and by the per-sample state */
  int64_t gmax = (int64_t)(HSJ_GROUP_BYTES / ((size_t)c.per * 32));
  int64_t G = c.B < n ? c.B : n;
  G = G < gmax ? G : gmax > 0 ? gmax : 1;
  size_t fb = sizeof(float) * (size_t)(G * c.per),
         db = sizeof(double) * (size_t)G;
  c.pred0 = malloc(sizeof(int64_t) * (size_t)n);
  c.q = calloc((size_t)n, sizeof(int64_t));
  c.rng = malloc(sizeof(adv_rng) * (size_t)n);
  float *z0 = malloc(sizeof(float) * (size_t)(n * c.K));
  c.cur = malloc(fb);
  c.pt = malloc(fb);
  c.hib = malloc(fb);
  c.upd = malloc(fb);
  c.s0 = malloc(sizeof(double) * (size_t)(G * c.per));
  c.s1 = malloc(sizeof(double) * (size_t)(G * c.per));
  double *dd = malloc(db * 9);
  int64_t *ii = malloc(sizeof(int64_t) * (size_t)(3 * G));
  c.alive = calloc((size_t)G, 4);
  c.rows = malloc(sizeof(float) * (size_t)(c.B * c.per));
  c.z = malloc(sizeof(float) * (size_t)(c.B * c.K));
  c.owner = malloc(sizeof(int64_t) * (size_t)c.B);
  int rc = ADV_OK;
  if (!c.pred0 || !c.q || !c.rng || !z0 || !c.cur || !c.pt || !c.hib ||
      !c.upd || !c.s0 || !c.s1 || !dd || !ii || !c.alive || !c.rows || !c.z ||
      !c.owner) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  c.dist = dd;
  c.dpu = dd + G;
  c.bestd = dd + 2 * G;
  c.delta = dd + 3 * G;
  c.step = dd + 4 * G;
  c.blo = dd + 5 * G;
  c.bhi = dd + 6 * G;
  c.thr = dd + 7 * G;
  c.mid = dd + 8 * G;
  c.evals = ii;
  c.npos = ii + G;
  c.halv = ii + 2 * G;
  c.flag = c.alive + G;
  c.ok = c.alive + 2 * G;
  c.start = c.alive + 3 * G;
  uint64_t base = hsj_mix(p->seed ^ 0x48534a41ull); /* "HSJA" salt */
  for (int64_t i = 0; i < n; i++)
    adv__rng_seed(&c.rng[i], hsj_mix(base + 0x9e3779b97f4a7c15ull *
                                                (adv__sample_id(p, i) + 1)));
  /* query 1 of every sample: its prediction at x */
  if ((rc = adv__eval_forward(ev, x, n, z0)))
    goto out;
  int obj = p->objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  c.z0 = z0;
  for (int64_t i = 0; i < n; i++) {
    c.pred0[i] = adv__argmax(z0 + i * c.K, c.K);
    c.q[i] = 1;
  }
  for (c.g0 = 0; c.g0 < n; c.g0 += G) {
    c.G = n - c.g0 < G ? n - c.g0 : G;
    for (int64_t g = 0; g < c.G; g++) {
      int64_t i = c.g0 + g;
      int fooled = obj ? adv__eval_fooled(ev, z0 + i * c.K, c.lab[i], -1, 0)
                   : c.targeted ? c.pred0[i] == c.lab[i]
                                : c.pred0[i] != c.lab[i];
      c.alive[g] = !fooled && c.Q > 1; /* fooled at x: x_adv = x */
      c.bestd[g] = INFINITY;
    }
    if ((rc = hsj_group(&c)))
      goto out;
  }
  if (ev->sample_queries)
    for (int64_t i = 0; i < n; i++)
      ev->sample_queries[i] = c.q[i];
out:
  free(c.pred0);
  free(c.q);
  free(c.rng);
  free(z0);
  free(c.cur);
  free(c.pt);
  free(c.hib);
  free(c.upd);
  free(c.s0);
  free(c.s1);
  free(dd);
  free(ii);
  free(c.alive);
  free(c.rows);
  free(c.z);
  free(c.owner);
  return rc;
}
