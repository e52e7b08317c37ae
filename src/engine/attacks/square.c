/*
 * square.c - Square Attack (Andriushchenko, Croce, Flammarion, Hein, ECCV
 * 2020), the score-based black-box attack of AutoAttack. Random search:
 * each iteration proposes changing one random square window of the current
 * best point and keeps the proposal when the loss improves (or the model is
 * fooled). Only forward queries are used (adv__eval_forward).
 *
 * Followed (see docs/attacks-blackbox.md for the deviations):
 *   - loss: untargeted margin z_y - max_{i!=y} z_i, targeted cross-entropy
 *     toward the target (AutoAttack's margin_and_loss), minimized; a
 *     proposal replaces the best point when its loss is strictly lower or
 *     it fools the model; a sample stops as soon as it is fooled;
 *   - p schedule: AutoAttack's p_selection with the breakpoints 10, 50, 200,
 *     500, 1000, 2000, 4000, 6000, 8000, p_init halved at each; rescaled
 *     to the query budget (it -> int(it / queries * 10000)) when
 *     p.resc_schedule is set (SquareAttack's default), absolute inside the
 *     AutoAttack suites (AutoAttack passes resc_schedule=False);
 *   - L-inf: vertical-stripe init x + eps * U{-1,1}^{c x 1 x w}; window side
 *     s = round(sqrt(p * h * w)), one random sign per channel, window set to
 *     x +- eps; the signs are redrawn when the proposal would not change the
 *     window (the authors' original implementation);
 *   - L2: init by meta-pseudo-gaussian bumps on a 5 x 5 grid with random
 *     signs, scaled to norm eps; updates move the mass of a second window
 *     into the first one as a pseudo-gaussian bump (s odd and >= 3),
 *     keeping the total norm at eps.
 * Every sample has its own random stream (seeded from p.seed and its
 * index), so its random draws do not depend on the other samples.
 *
 * Queries per sample: 1 at x itself (is it already fooled?), 1 for the
 * initialization, then one per iteration, never more than p.queries.
 */
#include "attacks/attack_internal.h"
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SQ_DEFAULT_QUERIES 5000
#define SQ_RESAMPLE 16 /* sign redraws for a proposal that changes nothing */

typedef struct sq_ctx {
  adv_eval *ev;
  const float *x;
  const int64_t *lab; /* y (untargeted) or target (targeted) */
  float *xa;          /* best point of every sample (the output) */
  int64_t n, per, K, Q, B;
  int C, H, W, targeted, l2;
  float eps;
  const float *lo, *hi; /* per-value clip bounds (adv_eval) */
  double p_init;
  int rescale;      /* p schedule rescaled to the budget (p.resc_schedule) */
  adv_rng *rng;     /* n streams */
  double *loss_min; /* n */
  int64_t *q;       /* n queries so far */
  unsigned char *done;
  int64_t *act;      /* ids of the samples of the current chunk */
  float *cand;       /* B proposals */
  float *z;          /* max(n, B) x K logits */
  float *eta, *etat; /* s x s pseudo-gaussian bump and its transpose */
  int eta_s;         /* side of the bump currently in eta (0: none) */
  float *win;        /* C x s x s new window values (L2) */
} sq_ctx;

/* splitmix64 finalizer, used to derive per-sample seeds. */
static uint64_t sq_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int sq_bit(adv_rng *r) {
  return (int)(adv__rng_next(r) >> 63);
}

static float sq_clip(float v, float lo, float hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/*
 * The objective of sample i on its logits z (minimized) and whether z
 * fools the model (argmax criterion, the same as the run epilogue's):
 * untargeted margin z_y - max_{k!=y} z_k; targeted CE logsumexp(z) - z_t.
 * The output-distance objective: minus the distance to the clean output
 * (untargeted) or the distance to the target; fooled: min_distance.
 */
static double sq_loss(const sq_ctx *c, const float *z, int64_t i, int *fooled) {
  int64_t K = c->K, l = c->lab[i];
  if (c->ev->p.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE) {
    /* minimized: -||f - f(x)|| (untargeted), ||f - t|| (targeted) */
    double d = adv__eval_out_dist(c->ev, z, l);
    *fooled = adv__eval_fooled(c->ev, z, l, -1, 0);
    return c->ev->p.targeted ? d : -d;
  }
  int64_t am = adv__argmax(z, K);
  *fooled = c->targeted ? am == l : am != l;
  if (!c->targeted) {
    double other = -INFINITY;
    for (int64_t k = 0; k < K; k++)
      if (k != l && z[k] > other)
        other = z[k];
    return (double)z[l] - other;
  }
  double mx = z[0];
  for (int64_t k = 1; k < K; k++)
    mx = z[k] > mx ? z[k] : mx;
  double s = 0;
  for (int64_t k = 0; k < K; k++)
    s += exp((double)z[k] - mx);
  return mx + log(s) - (double)z[l];
}

/*
 * AutoAttack's p_selection: the fraction of pixels changed at iteration it,
 * piecewise constant. With rescale (SquareAttack's default
 * resc_schedule=True) the breakpoints are rescaled from 10000 to Q
 * queries; without (what AutoAttack itself passes, resc_schedule=False)
 * they are absolute iteration numbers.
 */
static double sq_p_selection(double p_init, int64_t it, int64_t Q,
                             int rescale) {
  int64_t i = rescale ? (int64_t)((double)it / (double)Q * 10000.0) : it;
  static const int64_t bp[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
  double p = p_init;
  for (int k = 0; k < 9; k++)
    if (i > bp[k])
      p = p_init / (double)(2 << k);
  return p;
}

/*
 * One pseudo-gaussian rectangle (the reference's eta_rectangles): nested
 * centred rectangles, the k-th adding 1/(k+1)^2, normalized to unit L2
 * norm, times `sign`. Writes rows [0, nx) x cols [0, ny) of d (leading
 * dimension ld).
 */
static void sq_eta_rect(double *d, int nx, int ny, int ld, double sign) {
  for (int a = 0; a < nx; a++)
    for (int b = 0; b < ny; b++)
      d[a * ld + b] = 0;
  int xc = nx / 2 + 1, yc = ny / 2 + 1, c0 = xc - 1, c1 = yc - 1;
  int cnt_max = xc > yc ? xc : yc;
  for (int cnt = 0; cnt < cnt_max; cnt++, c0--, c1--) {
    int r0 = c0 > 0 ? c0 : 0,
        r1 = c0 + 2 * cnt + 1 < nx ? c0 + 2 * cnt + 1 : nx;
    int q0 = c1 > 0 ? c1 : 0,
        q1 = c1 + 2 * cnt + 1 < ny ? c1 + 2 * cnt + 1 : ny;
    double v = 1.0 / ((double)(cnt + 1) * (cnt + 1));
    for (int a = r0; a < r1; a++)
      for (int b = q0; b < q1; b++)
        d[a * ld + b] += v;
  }
  double s = 0;
  for (int a = 0; a < nx; a++)
    for (int b = 0; b < ny; b++)
      s += d[a * ld + b] * d[a * ld + b];
  s = s > 0 ? sign / sqrt(s) : 0;
  for (int a = 0; a < nx; a++)
    for (int b = 0; b < ny; b++)
      d[a * ld + b] *= s;
}

/*
 * The meta-pseudo-gaussian bump of side s (the reference's eta): top half
 * a positive rectangle bump, bottom half a negative one, unit L2 norm.
 * Fills c->eta and its transpose c->etat (the reference transposes with
 * probability 1/2; the caller picks one per sample).
 */
static void sq_make_eta(sq_ctx *c, int s, double *tmp) {
  if (c->eta_s == s)
    return;
  int h = s / 2;
  if (h > 0)
    sq_eta_rect(tmp, h, s, s, 1.0);
  sq_eta_rect(tmp + h * s, s - h, s, s, -1.0);
  double nrm = 0;
  for (int k = 0; k < s * s; k++)
    nrm += tmp[k] * tmp[k];
  nrm = nrm > 0 ? 1.0 / sqrt(nrm) : 0;
  for (int a = 0; a < s; a++)
    for (int b = 0; b < s; b++) {
      c->eta[a * s + b] = (float)(tmp[a * s + b] * nrm);
      c->etat[b * s + a] = c->eta[a * s + b];
    }
  c->eta_s = s;
}

/* L-inf init: vertical stripes, x + eps * sign per (channel, column). */
static void sq_linf_init(sq_ctx *c, int64_t i, float *row) {
  const float *xi = c->x + i * c->per;
  int64_t hw = (int64_t)c->H * c->W;
  for (int ch = 0; ch < c->C; ch++)
    for (int col = 0; col < c->W; col++) {
      float e = sq_bit(&c->rng[i]) ? c->eps : -c->eps;
      for (int r = 0; r < c->H; r++) {
        int64_t k = ch * hw + (int64_t)r * c->W + col;
        row[k] = sq_clip(xi[k] + e, c->lo[k], c->hi[k]);
      }
    }
  adv__project(row, xi, c->per, ADV_NORM_LINF, c->eps, c->lo, c->hi);
}

/*
 * L-inf proposal: copy the best point, pick a window of side s (uniform
 * position, the paper's Algorithm 2) and set it to x + eps * sign with one
 * sign per channel; signs are redrawn while the window would not change.
 */
static void sq_linf_propose(sq_ctx *c, int64_t i, double p, float *row) {
  const float *xi = c->x + i * c->per, *xb = c->xa + i * c->per;
  adv_rng *r = &c->rng[i];
  int64_t hw = (int64_t)c->H * c->W;
  int mn = c->H < c->W ? c->H : c->W;
  int s = (int)nearbyint(sqrt(p * (double)hw));
  s = s < 1 ? 1 : s > mn ? mn : s;
  int r0 = (int)adv__rng_int(r, c->H - s + 1),
      c0 = (int)adv__rng_int(r, c->W - s + 1);
  memcpy(row, xb, sizeof(float) * (size_t)c->per);
  for (int tries = 0; tries < SQ_RESAMPLE; tries++) {
    int changed = 0;
    for (int ch = 0; ch < c->C; ch++) {
      float e = sq_bit(r) ? c->eps : -c->eps;
      for (int a = 0; a < s; a++)
        for (int b = 0; b < s; b++) {
          int64_t k = ch * hw + (int64_t)(r0 + a) * c->W + c0 + b;
          row[k] = sq_clip(xi[k] + e, c->lo[k], c->hi[k]);
          changed |= fabsf(row[k] - xb[k]) >= 1e-7f;
        }
    }
    if (changed)
      break;
  }
  adv__project(row, xi, c->per, ADV_NORM_LINF, c->eps, c->lo, c->hi);
}

/* row <- clip(x + eps * row / ||row||_2): delta (in row) to a point. */
static void sq_l2_finish(sq_ctx *c, int64_t i, float *row) {
  const float *xi = c->x + i * c->per;
  double s = 0;
  for (int64_t k = 0; k < c->per; k++)
    s += (double)row[k] * row[k];
  double f = c->eps / (sqrt(s) + 1e-12);
  for (int64_t k = 0; k < c->per; k++)
    row[k] = sq_clip((float)((double)xi[k] + f * row[k]), c->lo[k], c->hi[k]);
  adv__project(row, xi, c->per, ADV_NORM_L2, c->eps, c->lo, c->hi);
}

/*
 * L2 init: a 5 x 5 grid of bumps of side h/5 starting at (h - 5s)/2, each
 * with a random sign per channel (and a random orientation), scaled to
 * norm eps. Windows are clipped to the image for non-square inputs.
 */
static void sq_l2_init(sq_ctx *c, int64_t i, float *row) {
  int64_t hw = (int64_t)c->H * c->W;
  int s = c->H / 5 > 0 ? c->H / 5 : 1;
  int sp = (c->H - 5 * s) / 2 > 0 ? (c->H - 5 * s) / 2 : 0;
  adv_rng *r = &c->rng[i];
  memset(row, 0, sizeof(float) * (size_t)c->per);
  for (int vh = sp, a = 0; a < c->H / s; a++, vh += s)
    for (int vw = sp, b = 0; b < c->W / s; b++, vw += s) {
      const float *e = sq_bit(r) ? c->etat : c->eta;
      for (int ch = 0; ch < c->C; ch++) {
        float sg = sq_bit(r) ? 1.f : -1.f;
        for (int u = 0; u < s && vh + u < c->H; u++)
          for (int v = 0; v < s && vw + v < c->W; v++)
            row[ch * hw + (int64_t)(vh + u) * c->W + vw + v] +=
                sg * e[u * s + v];
      }
    }
  sq_l2_finish(c, i, row);
}

/*
 * L2 proposal (the paper's Algorithm 3): with delta = best - x, window 1
 * gets (bump * sign + delta_w1 / ||delta_w1||) rescaled per channel to
 * sqrt(max(eps^2 - ||delta||^2, 0) / C + ||delta_{w1 u w2}||^2), window 2
 * is zeroed, and the result is rescaled to norm eps.
 */
static void sq_l2_propose(sq_ctx *c, int64_t i, double p, float *row) {
  const float *xi = c->x + i * c->per, *xb = c->xa + i * c->per;
  adv_rng *r = &c->rng[i];
  int64_t hw = (int64_t)c->H * c->W;
  int mn = c->H < c->W ? c->H : c->W;
  int s = (int)nearbyint(sqrt(p * (double)hw));
  s = s < 3 ? 3 : s;
  s += s % 2 == 0;
  s = s > mn ? mn : s;
  int h1 = (int)adv__rng_int(r, c->H - s + 1),
      w1 = (int)adv__rng_int(r, c->W - s + 1);
  int h2 = (int)adv__rng_int(r, c->H - s + 1),
      w2 = (int)adv__rng_int(r, c->W - s + 1);
  const float *e = sq_bit(r) ? c->etat : c->eta;
  double nimg = 0;
  for (int64_t k = 0; k < c->per; k++) {
    row[k] = xb[k] - xi[k];
    nimg += (double)row[k] * row[k];
  }
  double slack = (double)c->eps * c->eps - nimg;
  slack = slack > 0 ? slack / c->C : 0;
  for (int ch = 0; ch < c->C; ch++) {
    float *d = row + ch * hw, *nw = c->win + (int64_t)ch * s * s;
    double n1 = 0, nu = 0;
    for (int a = 0; a < s; a++)
      for (int b = 0; b < s; b++) {
        double v = d[(int64_t)(h1 + a) * c->W + w1 + b];
        n1 += v * v;
      }
    nu = n1;
    for (int a = 0; a < s; a++)
      for (int b = 0; b < s; b++) {
        int ra = h2 + a, cb = w2 + b;
        if (ra >= h1 && ra < h1 + s && cb >= w1 && cb < w1 + s)
          continue; /* already counted in window 1 */
        double v = d[(int64_t)ra * c->W + cb];
        nu += v * v;
      }
    double inv1 = 1.0 / (1e-12 + sqrt(n1)), sg = sq_bit(r) ? 1.0 : -1.0, nn = 0;
    for (int a = 0; a < s; a++)
      for (int b = 0; b < s; b++) {
        double v =
            e[a * s + b] * sg + d[(int64_t)(h1 + a) * c->W + w1 + b] * inv1;
        nw[a * s + b] = (float)v;
        nn += v * v;
      }
    double f = sqrt(slack + nu) / (1e-12 + sqrt(nn));
    for (int k = 0; k < s * s; k++)
      nw[k] = (float)(nw[k] * f);
  }
  for (int ch = 0; ch < c->C; ch++) {
    float *d = row + ch * hw, *nw = c->win + (int64_t)ch * s * s;
    for (int a = 0; a < s; a++)
      memset(d + (int64_t)(h2 + a) * c->W + w2, 0, sizeof(float) * (size_t)s);
    for (int a = 0; a < s; a++)
      memcpy(d + (int64_t)(h1 + a) * c->W + w1, nw + a * s,
             sizeof(float) * (size_t)s);
  }
  sq_l2_finish(c, i, row);
}

/*
 * Evaluates the m proposals in c->cand (sample ids in c->act): one query
 * each. init=1 accepts every proposal (the initialization); otherwise a
 * proposal replaces the best point when its loss is lower or it fools.
 */
static int sq_eval(sq_ctx *c, int64_t m, int init) {
  int rc = adv__eval_forward(c->ev, c->cand, m, c->z);
  if (rc)
    return rc;
  for (int64_t k = 0; k < m; k++) {
    int64_t i = c->act[k];
    int fooled;
    double loss = sq_loss(c, c->z + k * c->K, i, &fooled);
    c->q[i]++;
    int improved = (init && !c->ev->p.objective) || loss < c->loss_min[i];
    if (improved)
      c->loss_min[i] = loss;
    if (improved || fooled)
      memcpy(c->xa + i * c->per, c->cand + k * c->per,
             sizeof(float) * (size_t)c->per);
    if (fooled)
      c->done[i] = 1;
  }
  return ADV_OK;
}

/*
 * One pass over the samples still running: builds proposals (init or an
 * iteration at fraction p) in chunks of B and evaluates them. *any is set
 * when at least one sample took part.
 */
static int sq_pass(sq_ctx *c, int init, double p, int *any) {
  int64_t m = 0;
  *any = 0;
  for (int64_t i = 0; i < c->n; i++) {
    if (c->done[i] || c->q[i] >= c->Q)
      continue;
    float *row = c->cand + m * c->per;
    if (init)
      c->l2 ? sq_l2_init(c, i, row) : sq_linf_init(c, i, row);
    else
      c->l2 ? sq_l2_propose(c, i, p, row) : sq_linf_propose(c, i, p, row);
    c->act[m++] = i;
    *any = 1;
    if (m == c->B) {
      int rc = sq_eval(c, m, init);
      if (rc)
        return rc;
      m = 0;
    }
  }
  return m ? sq_eval(c, m, init) : ADV_OK;
}

int adv__attack_square(adv_eval *ev, const float *x, int64_t n,
                       const int64_t *y, const int64_t *target, float *x_adv) {
  const adv_attack_params *p = &ev->p;
  /* tabular N x F inputs: a 1 x 1 x F image (one feature per window) */
  if (ev->in_ndim != 4 && ev->in_ndim != 2)
    return adv__error(
        ev->err, ADV_EUNSUPPORTED,
        "square: needs N x C x H x W or N x F inputs (model input rank %d)",
        ev->in_ndim);
  double p_init = p->p_init > 0 ? p->p_init : 0.8;
  if (!(p_init <= 1.0))
    return adv__error(ev->err, ADV_EINVAL, "square: p_init must be in (0, 1]");
  sq_ctx c;
  memset(&c, 0, sizeof(c));
  c.ev = ev;
  c.x = x;
  c.xa = x_adv;
  c.n = n;
  c.per = ev->per;
  c.K = ev->classes;
  c.Q = p->queries > 0 ? p->queries : SQ_DEFAULT_QUERIES;
  c.B = p->batch > 0 ? p->batch : 256;
  int tab = ev->in_ndim == 2;
  c.C = tab ? 1 : (int)ev->in_dims[1];
  c.H = tab ? 1 : (int)ev->in_dims[2];
  c.W = (int)ev->in_dims[tab ? 1 : 3];
  c.targeted = p->targeted && target;
  c.lab = c.targeted ? target : y;
  c.l2 = p->norm == ADV_NORM_L2;
  c.eps = p->eps;
  c.lo = ev->lo;
  c.hi = ev->hi;
  c.p_init = p_init;
  c.rescale = p->resc_schedule;
  int64_t hw = (int64_t)c.H * c.W, zrows = n > c.B ? n : c.B;
  c.rng = malloc(sizeof(adv_rng) * (size_t)n);
  c.loss_min = malloc(sizeof(double) * (size_t)n);
  c.q = calloc((size_t)n, sizeof(int64_t));
  c.done = calloc((size_t)n, 1);
  c.act = malloc(sizeof(int64_t) * (size_t)c.B);
  c.cand = malloc(sizeof(float) * (size_t)(c.B * c.per));
  c.z = malloc(sizeof(float) * (size_t)(zrows * c.K));
  c.eta = malloc(sizeof(float) * (size_t)hw);
  c.etat = malloc(sizeof(float) * (size_t)hw);
  c.win = malloc(sizeof(float) * (size_t)c.per);
  double *tmp = malloc(sizeof(double) * (size_t)hw);
  int rc = ADV_OK;
  if (!c.rng || !c.loss_min || !c.q || !c.done || !c.act || !c.cand || !c.z ||
      !c.eta || !c.etat || !c.win || !tmp) {
    rc = adv__error(ev->err, ADV_ENOMEM, "out of memory");
    goto out;
  }
  uint64_t base = sq_mix(p->seed ^ 0x5155415245ull); /* "SQUARE" salt */
  for (int64_t i = 0; i < n; i++)
    adv__rng_seed(&c.rng[i], sq_mix(base + 0x9e3779b97f4a7c15ull *
                                               (adv__sample_id(p, i) + 1)));
  /* query 1: is x already fooled (AutoAttack attacks only the others) */
  if ((rc = adv__eval_forward(ev, x, n, c.z)))
    goto out;
  for (int64_t i = 0; i < n; i++) {
    int fooled;
    /* output distance: x itself is the first best point, so the result is
     * never worse than x (classification accepts the initialization) */
    c.loss_min[i] = sq_loss(&c, c.z + i * c.K, i, &fooled);
    c.q[i] = 1;
    c.done[i] = (unsigned char)(fooled || !(c.eps > 0));
  }
  /* query 2: the initialization */
  if (c.l2) {
    int s0 = c.H / 5 > 0 ? c.H / 5 : 1;
    sq_make_eta(&c, s0, tmp);
  }
  int any;
  if ((rc = sq_pass(&c, 1, 0, &any)))
    goto out;
  for (int64_t it = 0; any; it++) {
    if (adv__eval_aborted(ev, "square", (double)(it + 2) / (double)c.Q)) {
      rc = adv__error(ev->err, ADV_EABORTED, "aborted");
      goto out;
    }
    double ps = sq_p_selection(c.p_init, it, c.Q, c.rescale);
    if (c.l2) {
      int mn = c.H < c.W ? c.H : c.W;
      int s = (int)nearbyint(sqrt(ps * (double)hw));
      s = s < 3 ? 3 : s;
      s += s % 2 == 0;
      sq_make_eta(&c, s > mn ? mn : s, tmp);
    }
    if ((rc = sq_pass(&c, 0, ps, &any)))
      goto out;
  }
  if (ev->sample_queries)
    for (int64_t i = 0; i < n; i++)
      ev->sample_queries[i] = c.q[i];
out:
  free(c.rng);
  free(c.loss_min);
  free(c.q);
  free(c.done);
  free(c.act);
  free(c.cand);
  free(c.z);
  free(c.eta);
  free(c.etat);
  free(c.win);
  free(tmp);
  return rc;
}
