/*
 * test_grad_fd.c - reverse-mode gradients (Engine II) checked against
 * central finite differences of the engine's own float32 forward pass.
 *
 * For every op that has a backward, several configurations (shapes and
 * attributes drawn from a seeded RNG) are built as one-node ONNX models in
 * memory (tests/grad/onnx_build.h), plus a few small multi-node graphs.
 * With a random upstream gradient w for the output y, the scalar
 *     L(x) = sum_i w_i * y_i(x)        (accumulated in double)
 * has dL/dx = adv_session_backward_dz(w). The reference is
 *     fd_j = (L(x + h e_j) - L(x - h e_j)) / (x_j^+ - x_j^-)
 * on every element of x (tensors have <= ~300 elements), where x_j^+- are
 * the float32-rounded perturbed values (the true step, not 2h).
 *
 * Tolerance (why it cannot hide a real bug but does not flake):
 *  - truncation: central differences are exact up to h^2/6 * |f'''|. Inputs
 *    are kept where the ops are smooth on the scale of h (values O(1); log,
 *    sqrt, reciprocal, div and pow bases in [0.3, 3] or |v| in [0.5, 2]), so
 *    with h = 1e-2 this is <~ 1e-4 relative;
 *  - roundoff: each float32 forward value carries a relative error of a few
 *    ulp, so L has an absolute error <~ NOISE_K * FLT_EPSILON * S with
 *    S = sum_i |w_i y_i|, and the central difference turns that into
 *    NOISE_K * FLT_EPSILON * S / (2h) (the "atol" printed per case; this
 *    over-estimates, since outputs that do not depend on x_j are bitwise
 *    identical in both forwards).
 *  - check:  max_j |g_j - fd_j| <= RTOL * max_j |fd_j| + atol, RTOL = 1e-2.
 *    A wrong index, a missing or extra term, a wrong factor or a wrong
 *    window/padding rule moves at least one element by O(max|g|) - 10 to
 *    1000 times the tolerance - while a correct gradient measures
 *    ~1e-4 of it (see the "err/tol" column).
 *  - kinks: FD is only valid where the function is differentiable in the
 *    whole interval [x - h, x + h]. Inputs of ReLU-like ops, Abs, Clip,
 *    HardSigmoid/HardSwish are resampled when within 3h of a kink; inputs
 *    of MaxPool, GlobalMaxPool, ReduceMax/Min are drawn all distinct with a
 *    spacing > 2h (a random permutation of a grid of step 5h, jittered by
 *    less than h/2), so no max ever changes place under a perturbation.
 *
 * Also checked: weight gradients (adv_session_weight_grad) of Conv W/B,
 * Gemm A/B/C, MatMul B, BatchNormalization scale/B (mean/var when the
 * engine exposes them), Add/Mul (and Sub/Div/Pow) initializer operands and
 * the weights inside small multi-node graphs, by FD over the initializer
 * values (the model is rebuilt with the perturbed weight); that a second
 * backward on the same session gives bitwise the same dx; that weight
 * gradients accumulate over backward calls (2x after two) and are zeroed by
 * adv_session_zero_grad; every loss of adv_loss_eval (CE/CW/DLR/LOGIT,
 * untargeted and targeted, kappa finite and infinite) against a float64
 * re-implementation of its value and gradient and against FD, with the
 * lowest-index tie rule checked on hand-made ties; and the API contracts
 * (backward == loss_eval + backward_dz == grad, abort flag, counters,
 * backward refused without grad=1, logits=1 on a Softmax model).
 *
 * Usage: test_grad_fd [-v]   (ADV_GRAD_SEED=n changes the configurations,
 *        ADV_GRAD_ROUNDS=n the number of rounds of random configurations
 *        (default 3); ADV_GRAD_SELFCHECK=1 also reports |fd(h) - fd(h/2)|
 *        per case.)
 */
#include "adv/adv.h"
#include "harness.h"
#include "onnx_build.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-2f
#define RTOL 1e-2
#define NOISE_K 8.0
#define KINK_MARGIN (3.0f * FD_H)
#define DIST_STEP (5.0f * FD_H)
#define MAX_X 320

static int g_verbose = 0;
static int g_selfcheck = 0;

/* ---------------- RNG (splitmix64) ---------------- */

static uint64_t g_rng = 0x5eed0001ull;

static uint64_t rnd64(void) {
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rnd01(void) { return (double)(rnd64() >> 11) * (1.0 / 9007199254740992.0); }
static float rndf(float lo, float hi) { return lo + (float)rnd01() * (hi - lo); }
static int rndi(int lo, int hi) { return lo + (int)(rnd64() % (uint64_t)(hi - lo + 1)); }
static float rndmag(float lo, float hi) {
  float v = rndf(lo, hi);
  return (rnd64() & 1) ? v : -v;
}

/* ---------------- test case description ---------------- */

enum { XG_UNI, XG_MAG, XG_DISTINCT };

#define MAXNODES 10
#define MAXINITS 10
#define MAXATTRS 8
#define MAXW 512

typedef struct tattr {
  const char *name;
  int type; /* OB_ATTR_* */
  int64_t i;
  float f;
  const char *s;
  int n;
  int64_t ints[16];
  float floats[16];
} tattr;

typedef struct tnode {
  const char *op;
  char in[128];
  char out[64];
  int na;
  tattr a[MAXATTRS];
} tnode;

typedef struct tinit {
  char name[16];
  int i64;
  int nd;
  int64_t dims[8];
  int64_t n;
  float f[MAXW];
  int64_t iv[64];
  int wcheck;   /* FD-check its weight gradient */
  int required; /* a NULL weight gradient is a failure */
} tinit;

typedef struct tcase {
  const char *op; /* summary key */
  int opset;
  int nd;
  int64_t xd[8];
  int64_t nx;
  int xgen;
  float lo, hi;
  int nk;
  float kinks[4];
  int logits;  /* session logits=1 */
  int threads; /* session threads (0 = 1) */
  int nn;
  tnode nodes[MAXNODES];
  int ni;
  tinit inits[MAXINITS];
} tcase;

static tcase C;

static int64_t numel_of(int nd, const int64_t *d) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++)
    n *= d[i];
  return n;
}

static void c_begin(const char *op, int opset) {
  memset(&C, 0, sizeof(C));
  C.op = op;
  C.opset = opset;
  C.lo = -2.f;
  C.hi = 2.f;
  C.xgen = XG_UNI;
}

static void c_x(int nd, const int64_t *d) {
  C.nd = nd;
  if (nd)
    memcpy(C.xd, d, sizeof(int64_t) * (size_t)nd);
  C.nx = numel_of(nd, d);
}

static void c_range(int xgen, float lo, float hi) {
  C.xgen = xgen;
  C.lo = lo;
  C.hi = hi;
}

static void c_kink(float k) {
  if (C.nk < 4)
    C.kinks[C.nk++] = k;
}

static void c_node(const char *op, const char *in, const char *out) {
  tnode *n = &C.nodes[C.nn++];
  n->op = op;
  snprintf(n->in, sizeof(n->in), "%s", in);
  snprintf(n->out, sizeof(n->out), "%s", out);
}

static tattr *c_attr(const char *name, int type) {
  tnode *n = &C.nodes[C.nn - 1];
  tattr *a = &n->a[n->na++];
  a->name = name;
  a->type = type;
  return a;
}
static void c_ai(const char *name, int64_t v) { c_attr(name, OB_ATTR_INT)->i = v; }
static void c_af(const char *name, float v) { c_attr(name, OB_ATTR_FLOAT)->f = v; }
static void c_as(const char *name, const char *s) { c_attr(name, OB_ATTR_STRING)->s = s; }
static void c_ais(const char *name, int n, const int64_t *v) {
  tattr *a = c_attr(name, OB_ATTR_INTS);
  a->n = n;
  memcpy(a->ints, v, sizeof(int64_t) * (size_t)n);
}

static tinit *c_init(const char *name, int i64, int nd, const int64_t *d) {
  tinit *t = &C.inits[C.ni++];
  snprintf(t->name, sizeof(t->name), "%s", name);
  t->i64 = i64;
  t->nd = nd;
  if (nd)
    memcpy(t->dims, d, sizeof(int64_t) * (size_t)nd);
  t->n = numel_of(nd, d);
  if (t->n > (i64 ? 64 : MAXW)) {
    fprintf(stderr, "test bug: initializer %s too large\n", name);
    abort();
  }
  return t;
}
/* Float initializer, uniform in [lo, hi]. */
static tinit *c_wf(const char *name, int nd, const int64_t *d, float lo, float hi) {
  tinit *t = c_init(name, 0, nd, d);
  for (int64_t i = 0; i < t->n; i++)
    t->f[i] = rndf(lo, hi);
  return t;
}
/* Float initializer, |v| in [lo, hi] with random sign. */
static tinit *c_wmag(const char *name, int nd, const int64_t *d, float lo, float hi) {
  tinit *t = c_init(name, 0, nd, d);
  for (int64_t i = 0; i < t->n; i++)
    t->f[i] = rndmag(lo, hi);
  return t;
}
static tinit *c_wscalar(const char *name, float v) {
  tinit *t = c_init(name, 0, 0, NULL);
  t->f[0] = v;
  return t;
}
static tinit *c_wi(const char *name, int nd, const int64_t *d, const int64_t *v) {
  tinit *t = c_init(name, 1, nd, d);
  memcpy(t->iv, v, sizeof(int64_t) * (size_t)t->n);
  return t;
}
static tinit *c_wi1(const char *name, int n, const int64_t *v) {
  int64_t d[1] = {n};
  return c_wi(name, 1, d, v);
}
static void c_wcheck(tinit *t, int required) {
  t->wcheck = 1;
  t->required = required;
}

/* ---------------- description ---------------- */

static char *dims_str(char *b, size_t cap, int nd, const int64_t *d) {
  size_t n = (size_t)snprintf(b, cap, "[");
  for (int i = 0; i < nd && n < cap; i++)
    n += (size_t)snprintf(b + n, cap - n, "%s%lld", i ? "," : "", (long long)d[i]);
  if (n < cap)
    snprintf(b + n, cap - n, "]");
  return b;
}

static const tinit *find_init(const tcase *c, const char *name, size_t len) {
  for (int i = 0; i < c->ni; i++)
    if (strlen(c->inits[i].name) == len && !strncmp(c->inits[i].name, name, len))
      return &c->inits[i];
  return NULL;
}

#define APP(...)                                                               \
  do {                                                                         \
    if (n < cap)                                                               \
      n += (size_t)snprintf(out + n, cap - n, __VA_ARGS__);                    \
  } while (0)

static void describe(const tcase *c, char *out, size_t cap) {
  size_t n = 0;
  char b[160];
  for (int k = 0; k < c->nn; k++) {
    const tnode *nd = &c->nodes[k];
    APP("%s%s(", k ? "; " : "", nd->op);
    const char *p = nd->in;
    for (int first = 1;; first = 0) {
      const char *e = strchr(p, ',');
      size_t len = e ? (size_t)(e - p) : strlen(p);
      APP("%s", first ? "" : ",");
      if (len == 1 && p[0] == 'x') {
        APP("x%s", dims_str(b, sizeof(b), c->nd, c->xd));
      } else if (len == 0) {
        APP("_");
      } else {
        const tinit *t = find_init(c, p, len);
        if (t && t->i64) {
          APP("%.*s=", (int)len, p);
          if (t->nd == 0)
            APP("%lld", (long long)t->iv[0]);
          else
            APP("%s", dims_str(b, sizeof(b), (int)t->n, t->iv));
        } else if (t && t->nd == 0) {
          APP("%.*s=%g", (int)len, p, (double)t->f[0]);
        } else if (t) {
          APP("%.*s%s", (int)len, p, dims_str(b, sizeof(b), t->nd, t->dims));
        } else {
          APP("%.*s", (int)len, p);
        }
      }
      if (!e)
        break;
      p = e + 1;
    }
    APP(")");
    if (c->nn > 1)
      APP("->%s", nd->out);
    if (nd->na) {
      APP("{");
      for (int i = 0; i < nd->na; i++) {
        const tattr *a = &nd->a[i];
        APP("%s%s=", i ? " " : "", a->name);
        switch (a->type) {
        case OB_ATTR_INT: APP("%lld", (long long)a->i); break;
        case OB_ATTR_FLOAT: APP("%g", (double)a->f); break;
        case OB_ATTR_STRING: APP("%s", a->s); break;
        case OB_ATTR_INTS: APP("%s", dims_str(b, sizeof(b), a->n, a->ints)); break;
        default: APP("?"); break;
        }
      }
      APP("}");
    }
  }
  APP(" opset%d%s", c->opset, c->logits ? " logits=1" : "");
  if (c->threads > 1)
    APP(" threads=%d", c->threads);
}

/* ---------------- model building and evaluation ---------------- */

static unsigned char *build(const tcase *c, size_t *len) {
  ob_model b;
  ob_init(&b, c->opset);
  ob_input(&b, "x", c->nd, c->xd);
  for (int i = 0; i < c->ni; i++) {
    const tinit *t = &c->inits[i];
    if (t->i64)
      ob_init_i64(&b, t->name, t->nd, t->dims, t->iv);
    else
      ob_init_f32(&b, t->name, t->nd, t->dims, t->f);
  }
  for (int k = 0; k < c->nn; k++) {
    const tnode *nd = &c->nodes[k];
    ob_node(&b, nd->op, nd->in, nd->out);
    for (int i = 0; i < nd->na; i++) {
      const tattr *a = &nd->a[i];
      switch (a->type) {
      case OB_ATTR_INT: ob_attr_int(&b, a->name, a->i); break;
      case OB_ATTR_FLOAT: ob_attr_float(&b, a->name, a->f); break;
      case OB_ATTR_STRING: ob_attr_str(&b, a->name, a->s); break;
      case OB_ATTR_INTS: ob_attr_ints(&b, a->name, a->n, a->ints); break;
      case OB_ATTR_FLOATS: ob_attr_floats(&b, a->name, a->n, a->floats); break;
      }
    }
  }
  ob_output(&b, "y");
  return ob_finish(&b, len);
}

static int open_case(const tcase *c, int grad, int wgrad, adv_model **m,
                     adv_session **s, adv_err *err) {
  size_t len;
  unsigned char *bytes = build(c, &len);
  *m = NULL;
  *s = NULL;
  int rc = adv_model_load_mem(bytes, len, adv_load_default_params(), m, err);
  free(bytes);
  if (rc)
    return rc;
  adv_session_params sp = adv_session_default_params();
  sp.threads = c->threads > 1 ? c->threads : 1;
  sp.grad = grad;
  sp.weight_grad = wgrad;
  sp.logits = c->logits;
  rc = adv_session_init(*m, sp, s, err);
  if (rc) {
    adv_model_free(*m);
    *m = NULL;
  }
  return rc;
}

static void close_case(adv_model *m, adv_session *s) {
  adv_session_free(s);
  adv_model_free(m);
}

static int forward_L(adv_session *s, const float *x, const float *w, float *y,
                     int64_t ny, double *L, adv_err *err) {
  int rc = adv_session_forward(s, x, y, err);
  if (rc)
    return rc;
  double acc = 0;
  for (int64_t i = 0; i < ny; i++)
    acc += (double)w[i] * (double)y[i];
  *L = acc;
  return ADV_OK;
}

/* L of the case rebuilt from scratch (used when weights are perturbed). */
static int model_L(const tcase *c, const float *x, const float *w, int64_t ny,
                   double *L, adv_err *err) {
  adv_model *m;
  adv_session *s;
  int rc = open_case(c, 0, 0, &m, &s, err);
  if (rc)
    return rc;
  float *y = malloc(sizeof(float) * (size_t)(ny + 1));
  rc = forward_L(s, x, w, y, ny, L, err);
  free(y);
  close_case(m, s);
  return rc;
}

/* ---------------- input generation ---------------- */

static int near_kink(const tcase *c, float v) {
  for (int k = 0; k < c->nk; k++)
    if (fabsf(v - c->kinks[k]) < KINK_MARGIN)
      return 1;
  return 0;
}

static void gen_x(const tcase *c, float *x) {
  int64_t n = c->nx;
  if (c->xgen == XG_DISTINCT) {
    int64_t perm[MAX_X];
    for (int64_t i = 0; i < n; i++)
      perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)(rnd64() % (uint64_t)(i + 1));
      int64_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    for (int64_t i = 0; i < n; i++)
      x[i] = ((float)perm[i] - (float)n / 2) * DIST_STEP +
             rndf(-0.4f * FD_H, 0.4f * FD_H);
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    float v;
    do {
      v = c->xgen == XG_MAG ? rndmag(c->lo, c->hi) : rndf(c->lo, c->hi);
    } while (near_kink(c, v));
    x[i] = v;
  }
}

/* ---------------- comparison and reporting ---------------- */

typedef struct opstat {
  const char *op;
  int cases, fails;
  double worst; /* max err/tol over passing and failing comparisons */
  char first_fail[256];
} opstat;

static opstat g_stats[64];
static int g_nstats;
static int g_total_cases, g_total_fails;

static opstat *stat_get(const char *op) {
  for (int i = 0; i < g_nstats; i++)
    if (!strcmp(g_stats[i].op, op))
      return &g_stats[i];
  opstat *s = &g_stats[g_nstats++];
  memset(s, 0, sizeof(*s));
  s->op = op;
  return s;
}

typedef struct cmpres {
  double maxerr, maxref, tol, ratio;
  int64_t worst;
  int ok;
} cmpres;

static cmpres compare(const float *g, const double *ref, int64_t n, double atol) {
  cmpres r = {0, 0, 0, 0, -1, 1};
  for (int64_t i = 0; i < n; i++)
    if (fabs(ref[i]) > r.maxref)
      r.maxref = fabs(ref[i]);
  r.tol = RTOL * r.maxref + atol;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)g[i] - ref[i]);
    if (!isfinite(g[i]))
      e = INFINITY;
    if (r.worst < 0 || e > r.maxerr) {
      r.maxerr = e;
      r.worst = i;
    }
  }
  r.ratio = r.tol > 0 ? r.maxerr / r.tol : (r.maxerr > 0 ? INFINITY : 0);
  r.ok = r.maxerr <= r.tol;
  return r;
}

static void index_str(char *b, size_t cap, int64_t flat, int nd, const int64_t *d) {
  int64_t idx[8];
  for (int i = nd - 1; i >= 0; i--) {
    idx[i] = d[i] ? flat % d[i] : 0;
    flat = d[i] ? flat / d[i] : 0;
  }
  dims_str(b, cap, nd, idx);
}

static void print_mismatches(const char *what, const float *g, const double *ref,
                             int64_t n, const cmpres *r, int nd,
                             const int64_t *d) {
  int shown = 0;
  char b[96];
  for (int64_t i = 0; i < n; i++) {
    double e = fabs((double)g[i] - ref[i]);
    if (!(e <= r->tol) && (g_verbose || shown < 8)) {
      index_str(b, sizeof(b), i, nd, d);
      printf("       %s%s: ours % .7g  fd % .7g  (diff %.3g)\n", what, b,
             (double)g[i], ref[i], (double)g[i] - ref[i]);
      shown++;
    }
  }
  if (!g_verbose) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
      if (!(fabs((double)g[i] - ref[i]) <= r->tol))
        bad++;
    if (bad > shown)
      printf("       ... %lld of %lld elements out of tolerance (-v lists all)\n",
             (long long)bad, (long long)n);
  }
}

static void fail_case(opstat *st, const char *desc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int g_case_failed;
static void fail_case(opstat *st, const char *desc, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (!g_case_failed) {
    st->fails++;
    g_total_fails++;
    harness_failed_checks++;
    if (!st->first_fail[0])
      snprintf(st->first_fail, sizeof(st->first_fail), "%.200s", msg);
    printf("FAIL %s\n", desc);
  }
  g_case_failed = 1;
  printf("     %s\n", msg);
}

/* Central differences of L over every element of v (x, or a weight of the
 * case when weight != NULL, which is rebuilt each time). */
static int fd_vector(adv_session *s, tcase *c, tinit *weight, float *x,
                     const float *w, float *y, int64_t ny, float h, double *fd,
                     adv_err *err) {
  float *v = weight ? weight->f : x;
  int64_t n = weight ? weight->n : c->nx;
  for (int64_t j = 0; j < n; j++) {
    float orig = v[j];
    float vp = orig + h, vm = orig - h;
    double Lp, Lm;
    int rc;
    v[j] = vp;
    rc = weight ? model_L(c, x, w, ny, &Lp, err) : forward_L(s, x, w, y, ny, &Lp, err);
    if (rc == ADV_OK) {
      v[j] = vm;
      rc = weight ? model_L(c, x, w, ny, &Lm, err) : forward_L(s, x, w, y, ny, &Lm, err);
    }
    v[j] = orig;
    if (rc)
      return rc;
    fd[j] = (Lp - Lm) / ((double)vp - (double)vm);
  }
  return ADV_OK;
}

static void run_case(void) {
  tcase *c = &C;
  char desc[1200];
  describe(c, desc, sizeof(desc));
  opstat *st = stat_get(c->op);
  st->cases++;
  g_total_cases++;
  HARNESS_CHECKED(); /* one check per case; fail_case() reports failures */
  g_case_failed = 0;
  if (c->nx > MAX_X) {
    fail_case(st, desc, "test bug: x has %lld > %d elements", (long long)c->nx, MAX_X);
    return;
  }
  int wgrad = 0;
  for (int i = 0; i < c->ni; i++)
    wgrad |= c->inits[i].wcheck;

  float x[MAX_X], dx[MAX_X], dx2[MAX_X];
  double fd[MAX_X > MAXW ? MAX_X : MAXW], fd2[MAX_X > MAXW ? MAX_X : MAXW];
  float *y = NULL, *w = NULL, *g1[MAXINITS] = {0};
  adv_model *m = NULL;
  adv_session *s = NULL;
  adv_err err = {{0}};
  int rc;
  gen_x(c, x);

  if ((rc = open_case(c, 1, wgrad, &m, &s, &err))) {
    fail_case(st, desc, "load/session init failed: %s: %s", adv_err_name(rc), err.msg);
    return;
  }
  int64_t yd[ADV_MAX_DIMS];
  int ynd = adv_session_output_shape(s, 0, yd);
  int64_t ny = numel_of(ynd, yd);
  y = malloc(sizeof(float) * (size_t)(ny + 1));
  w = malloc(sizeof(float) * (size_t)(ny + 1));
  for (int64_t i = 0; i < ny; i++)
    w[i] = rndf(-1.f, 1.f);
  double L0, S = 0;
  if ((rc = forward_L(s, x, w, y, ny, &L0, &err))) {
    fail_case(st, desc, "forward failed: %s: %s", adv_err_name(rc), err.msg);
    goto done;
  }
  for (int64_t i = 0; i < ny; i++) {
    if (!isfinite(y[i])) {
      fail_case(st, desc, "forward output %lld is not finite (%g)", (long long)i,
                (double)y[i]);
      goto done;
    }
    S += fabs((double)w[i] * (double)y[i]);
  }
  double atol = NOISE_K * FLT_EPSILON * S / (2.0 * FD_H);

  rc = adv_session_backward_dz(s, w, dx, NULL, &err);
  int have_dx = rc == ADV_OK;
  if (!have_dx)
    fail_case(st, desc, "backward_dz failed: %s: %s", adv_err_name(rc), err.msg);

  /* weight gradients after the first backward */
  for (int i = 0; have_dx && i < c->ni; i++) {
    tinit *t = &c->inits[i];
    if (!t->wcheck)
      continue;
    int64_t n = -1;
    const float *g = adv_session_weight_grad(s, t->name, &n);
    if (!g) {
      if (t->required)
        fail_case(st, desc, "adv_session_weight_grad('%s') is NULL", t->name);
      else if (g_verbose)
        printf("     note: no weight gradient for '%s'\n", t->name);
      continue;
    }
    if (n != t->n) {
      fail_case(st, desc, "weight grad '%s' numel %lld != %lld", t->name,
                (long long)n, (long long)t->n);
      continue;
    }
    g1[i] = malloc(sizeof(float) * (size_t)n);
    memcpy(g1[i], g, sizeof(float) * (size_t)n);
  }

  /* input gradient vs FD */
  if ((rc = fd_vector(s, c, NULL, x, w, y, ny, FD_H, fd, &err))) {
    fail_case(st, desc, "forward failed during FD: %s: %s", adv_err_name(rc), err.msg);
    goto done;
  }
  if (g_selfcheck) {
    if (fd_vector(s, c, NULL, x, w, y, ny, FD_H / 2, fd2, &err) == ADV_OK) {
      double me = 0, mr = 0;
      for (int64_t j = 0; j < c->nx; j++) {
        me = fmax(me, fabs(fd[j] - fd2[j]));
        mr = fmax(mr, fabs(fd[j]));
      }
      printf("     selfcheck |fd(h)-fd(h/2)| = %.3g  (tol %.3g, ratio %.3g)\n", me,
             RTOL * mr + atol, me / (RTOL * mr + atol));
    }
  }
  double worst_ratio = 0;
  if (have_dx) {
    cmpres r = compare(dx, fd, c->nx, atol);
    worst_ratio = r.ratio;
    if (!r.ok) {
      fail_case(st, desc,
                "dx vs FD: max err %.4g > tol %.4g (max|fd| %.4g, atol %.2g)",
                r.maxerr, r.tol, r.maxref, atol);
      print_mismatches("dx", dx, fd, c->nx, &r, c->nd, c->xd);
    } else if (g_verbose) {
      printf("ok   %s\n     dx: n=%lld max|fd|=%.4g err=%.3g tol=%.3g\n", desc,
             (long long)c->nx, r.maxref, r.maxerr, r.tol);
    }
  }

  /* second and third backward: same dx; weight grads accumulate / reset */
  if (have_dx) {
    double L1;
    rc = forward_L(s, x, w, y, ny, &L1, &err);
    if (rc == ADV_OK)
      rc = adv_session_backward_dz(s, w, dx2, NULL, &err);
    if (rc) {
      fail_case(st, desc, "second forward/backward failed: %s: %s", adv_err_name(rc),
                err.msg);
      goto done;
    }
    if (memcmp(dx, dx2, sizeof(float) * (size_t)c->nx))
      fail_case(st, desc, "second backward on the same session gave a different dx");
    for (int i = 0; i < c->ni; i++) {
      if (!g1[i])
        continue;
      tinit *t = &c->inits[i];
      int64_t n;
      const float *g = adv_session_weight_grad(s, t->name, &n);
      double md = 0, mg = 0;
      for (int64_t j = 0; g && j < n; j++) {
        md = fmax(md, fabs((double)g[j] - 2.0 * g1[i][j]));
        mg = fmax(mg, fabs(2.0 * g1[i][j]));
      }
      /* summation order may differ from the first pass (contributions
       * added one by one into the buffer): rounding of partial sums, far
       * below the factor 2 this is about */
      if (!g || !(md <= 1e-4 * mg + 1e-2 * atol))
        fail_case(st, desc,
                  "weight grad '%s' after 2 backwards is not 2x the first "
                  "(max diff %.3g, max|2g| %.3g)", t->name, md, mg);
    }
    if (wgrad) {
      adv_session_zero_grad(s);
      for (int i = 0; i < c->ni; i++) {
        if (!g1[i])
          continue;
        int64_t n;
        const float *g = adv_session_weight_grad(s, c->inits[i].name, &n);
        int nz = 0;
        for (int64_t j = 0; g && j < n; j++)
          nz += g[j] != 0.f;
        if (!g || nz)
          fail_case(st, desc, "weight grad '%s' not zero after zero_grad (%d nonzero)",
                    c->inits[i].name, nz);
      }
      rc = forward_L(s, x, w, y, ny, &L1, &err);
      if (rc == ADV_OK)
        rc = adv_session_backward_dz(s, w, dx2, NULL, &err);
      if (rc) {
        fail_case(st, desc, "third forward/backward failed: %s", err.msg);
        goto done;
      }
      if (memcmp(dx, dx2, sizeof(float) * (size_t)c->nx))
        fail_case(st, desc, "backward after zero_grad gave a different dx");
      for (int i = 0; i < c->ni; i++) {
        if (!g1[i])
          continue;
        int64_t n;
        const float *g = adv_session_weight_grad(s, c->inits[i].name, &n);
        double md = 0, mg = 0;
        for (int64_t j = 0; g && j < n; j++) {
          md = fmax(md, fabs((double)g[j] - g1[i][j]));
          mg = fmax(mg, fabs((double)g1[i][j]));
        }
        if (!g || !(md <= 1e-4 * mg + 1e-2 * atol))
          fail_case(st, desc,
                    "weight grad '%s' after zero_grad + backward differs from "
                    "the first (max diff %.3g)", c->inits[i].name, md);
      }
    }
  }

  /* weight gradients vs FD over the initializer values */
  for (int i = 0; i < c->ni; i++) {
    if (!g1[i])
      continue;
    tinit *t = &c->inits[i];
    if ((rc = fd_vector(NULL, c, t, x, w, NULL, ny, FD_H, fd, &err))) {
      fail_case(st, desc, "rebuild with perturbed '%s' failed: %s", t->name, err.msg);
      continue;
    }
    cmpres r = compare(g1[i], fd, t->n, atol);
    if (r.ratio > worst_ratio)
      worst_ratio = r.ratio;
    char what[40];
    snprintf(what, sizeof(what), "d%s", t->name);
    if (!r.ok) {
      fail_case(st, desc,
                "weight grad '%s' vs FD: max err %.4g > tol %.4g (max|fd| %.4g)",
                t->name, r.maxerr, r.tol, r.maxref);
      print_mismatches(what, g1[i], fd, t->n, &r, t->nd, t->dims);
    } else if (g_verbose) {
      printf("     %s: n=%lld max|fd|=%.4g err=%.3g tol=%.3g\n", what,
             (long long)t->n, r.maxref, r.maxerr, r.tol);
    }
  }
  if (worst_ratio > st->worst)
    st->worst = worst_ratio;
done:
  for (int i = 0; i < MAXINITS; i++)
    free(g1[i]);
  free(y);
  free(w);
  close_case(m, s);
}

/* ---------------- shapes ---------------- */

/* Random shape: rank in [rmin, rmax], dims in [1, dmax], numel <= cap. */
static int rshape(int64_t *d, int rmin, int rmax, int dmax, int64_t cap) {
  for (;;) {
    int r = rndi(rmin, rmax);
    for (int i = 0; i < r; i++)
      d[i] = rndi(1, dmax);
    if (numel_of(r, d) <= cap)
      return r;
  }
}

/* full: rank 1..4; small: a suffix of full's rank (0..r) whose dims are
 * either full's or 1 (so it broadcasts to full). */
static void bshapes(int64_t *full, int *rf, int64_t *small, int *rs) {
  *rf = rshape(full, 1, 4, 4, 96);
  *rs = rndi(0, *rf);
  for (int i = 0; i < *rs; i++) {
    int64_t fd = full[*rf - *rs + i];
    small[i] = (rnd64() & 1) ? 1 : fd;
  }
}

static void perm_rand(int64_t *p, int n) {
  for (int i = 0; i < n; i++)
    p[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = rndi(0, i);
    int64_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* ---------------- op generators ---------------- */

TEST(unary) {
  static const struct {
    const char *op;
    int opset;
    float lo, hi;
    int xg;
  } U[] = {
      {"Relu", 13, -3, 3, XG_UNI},        {"LeakyRelu", 13, -3, 3, XG_UNI},
      {"Sigmoid", 13, -4, 4, XG_UNI},     {"Tanh", 13, -3, 3, XG_UNI},
      {"Erf", 13, -2.5f, 2.5f, XG_UNI},   {"Gelu", 18, -3, 3, XG_UNI},
      {"Exp", 13, -2, 2, XG_UNI},         {"Log", 13, 0.3f, 3, XG_UNI},
      {"Sqrt", 13, 0.3f, 3, XG_UNI},      {"Neg", 13, -3, 3, XG_UNI},
      {"Abs", 13, -3, 3, XG_UNI},         {"Reciprocal", 13, 0.5f, 2, XG_MAG},
      {"HardSigmoid", 6, -5, 5, XG_UNI},  {"HardSwish", 14, -5, 5, XG_UNI},
      {"Softplus", 13, -4, 4, XG_UNI},    {"Elu", 6, -3, 3, XG_UNI},
      {"Identity", 13, -3, 3, XG_UNI},    {"Dropout", 13, -3, 3, XG_UNI},
      {"Selu", 6, -3, 3, XG_UNI},         {"Softsign", 1, -3, 3, XG_UNI},
      {"Sign", 13, -3, 3, XG_UNI},
  };
  for (size_t u = 0; u < sizeof(U) / sizeof(U[0]); u++) {
    for (int cfg = 0; cfg < 3; cfg++) {
      const char *op = U[u].op;
      int64_t d[8];
      c_begin(op, U[u].opset);
      int r = rshape(d, 1, 4, 5, 60);
      c_x(r, d);
      c_range(U[u].xg, U[u].lo, U[u].hi);
      if (!strcmp(op, "Dropout") && cfg == 2) {
        c_wscalar("ratio", 0.3f);
        c_node(op, "x,ratio", "y,mask");
      } else {
        if (!strcmp(op, "Dropout") && cfg == 1)
          C.opset = 11;
        c_node(op, "x", "y");
      }
      if (!strcmp(op, "Dropout") && cfg == 1)
        c_af("ratio", 0.25f);
      if (!strcmp(op, "Relu") || !strcmp(op, "Abs") || !strcmp(op, "Selu") ||
          !strcmp(op, "Sign"))
        c_kink(0);
      if (!strcmp(op, "LeakyRelu")) {
        if (cfg)
          c_af("alpha", rndf(0.01f, 0.5f));
        c_kink(0);
      }
      if (!strcmp(op, "Elu")) {
        if (cfg)
          c_af("alpha", rndf(0.2f, 2.f));
        c_kink(0);
      }
      if (!strcmp(op, "HardSigmoid")) {
        float al = 0.2f, be = 0.5f;
        if (cfg) {
          al = rndf(0.15f, 0.6f);
          be = rndf(0.2f, 0.8f);
          c_af("alpha", al);
          c_af("beta", be);
        }
        c_kink(-be / al);
        c_kink((1.f - be) / al);
      }
      if (!strcmp(op, "HardSwish")) {
        c_kink(-3.f);
        c_kink(3.f);
      }
      if (!strcmp(op, "Gelu") && cfg)
        c_as("approximate", cfg == 1 ? "tanh" : "none");
      run_case();
    }
  }
}

TEST(binary) {
  static const char *ops[] = {"Add", "Sub", "Mul", "Div", "Pow"};
  for (int o = 0; o < 5; o++) {
    for (int cfg = 0; cfg < 9; cfg++) {
      const char *op = ops[o];
      int isdiv = o == 3, ispow = o == 4;
      int64_t xa[8], wa[8];
      int rx = 0, rw = 0, xfirst = 1, same = 0;
      switch (cfg) {
      case 0: case 1: /* x full, W broadcast */
        bshapes(xa, &rx, wa, &rw);
        xfirst = cfg == 0;
        break;
      case 2: case 3: /* x broadcast (its gradient sums over copies) */
        bshapes(wa, &rw, xa, &rx);
        xfirst = cfg == 2;
        break;
      case 4: /* same shape */
        rx = rshape(xa, 1, 4, 4, 96);
        rw = rx;
        memcpy(wa, xa, sizeof(xa));
        xfirst = (int)(rnd64() & 1);
        break;
      case 5: case 6: /* bidirectional broadcast */
        rx = rw = rndi(2, 4);
        for (int i = 0; i < rx; i++) {
          int64_t dd = rndi(2, 3);
          int k = rndi(0, 2);
          xa[i] = k == 1 ? 1 : dd;
          wa[i] = k == 2 ? 1 : dd;
        }
        if (cfg == 6 && rw > 1) { /* W of lower rank */
          memmove(wa, wa + 1, sizeof(int64_t) * (size_t)(rw - 1));
          rw--;
        }
        xfirst = cfg == 5;
        break;
      case 7: /* op(x, x) */
        rx = rshape(xa, 1, 3, 4, 60);
        same = 1;
        break;
      case 8: /* scalar W */
        rx = rshape(xa, 1, 4, 4, 96);
        rw = (int)(rnd64() & 1);
        wa[0] = 1;
        xfirst = (int)(rnd64() & 1);
        break;
      }
      c_begin(op, 13);
      c_x(rx, xa);
      /* first operand: base / numerator; second: exponent / denominator */
      int x_is_second = same ? 0 : !xfirst;
      if (isdiv && (same || x_is_second))
        c_range(XG_MAG, 0.5f, 2.f);
      else if (ispow && (same || !x_is_second))
        c_range(XG_UNI, 0.5f, 2.f);
      else
        c_range(XG_UNI, -2.f, 2.f);
      if (same) {
        c_node(op, "x,x", "y");
      } else {
        tinit *t;
        if (isdiv && !x_is_second)
          t = c_wmag("W", rw, wa, 0.5f, 2.f);
        else if (ispow && x_is_second)
          t = c_wf("W", rw, wa, 0.5f, 2.f);
        else
          t = c_wf("W", rw, wa, -2.f, 2.f);
        c_wcheck(t, o == 0 || o == 2);
        c_node(op, xfirst ? "x,W" : "W,x", "y");
      }
      run_case();
    }
  }
  /* PRelu: per-channel slope [C,1,1] (weights checked), scalar slope */
  for (int cfg = 0; cfg < 4; cfg++) {
    int64_t xa[4] = {rndi(1, 2), rndi(1, 3), rndi(1, 3), rndi(2, 4)};
    int64_t wa[3] = {xa[1], 1, 1};
    c_begin("PRelu", 9);
    c_x(4, xa);
    c_range(XG_UNI, -2.f, 2.f);
    c_kink(0);
    tinit *t = cfg < 2 ? c_wf("W", 3, wa, -0.5f, 0.5f) : c_wf("W", 0, wa, -0.5f, 0.5f);
    c_wcheck(t, 1);
    c_node("PRelu", "x,W", "y");
    run_case();
  }
  /* Pow with a negative base and integer exponents (x^2, x^3) */
  for (int e = 2; e <= 3; e++) {
    int64_t d[8];
    c_begin("Pow", 13);
    int r = rshape(d, 1, 3, 4, 48);
    c_x(r, d);
    c_range(XG_UNI, -2.f, 2.f);
    c_wscalar("W", (float)e);
    c_node("Pow", "x,W", "y");
    run_case();
  }
}

TEST(conv) {
  for (int cfg = 0; cfg < 14; cfg++) {
    int nsp = (cfg % 4 == 3) ? 1 : 2;
    int N, group, Cg, Mg;
    int64_t k[2], s[2], dl[2], pl[2], ph[2], in[2];
    const char *autopad = cfg == 5 ? "SAME_UPPER" : cfg == 9 ? "SAME_LOWER"
                        : cfg == 10 ? "VALID" : NULL;
    int depthwise = cfg % 6 == 4 || cfg == 13;
    for (;;) {
      N = rndi(1, 3);
      if (depthwise) {
        group = rndi(2, 4);
        Cg = 1;
        Mg = cfg == 13 ? 2 : 1;
      } else {
        static const int gs[] = {1, 1, 2, 3};
        group = gs[rndi(0, 3)];
        Cg = rndi(1, 3);
        Mg = rndi(1, 3);
      }
      int64_t numel = (int64_t)N * group * Cg;
      for (int i = 0; i < nsp; i++) {
        k[i] = rndi(1, 3);
        s[i] = rndi(1, 3);
        dl[i] = rndi(1, 2);
        pl[i] = autopad ? 0 : rndi(0, 2);
        ph[i] = autopad ? 0 : rndi(0, 2);
        int64_t ek = (k[i] - 1) * dl[i] + 1;
        int64_t mn = ek - pl[i] - ph[i];
        if (mn < 1)
          mn = 1;
        in[i] = rndi((int)mn, (int)ek + 4);
        numel *= in[i];
      }
      if (numel <= 300 && numel >= 2)
        break;
    }
    int64_t C_ = (int64_t)group * Cg, M = (int64_t)group * Mg;
    c_begin("Conv", cfg % 2 ? 11 : 13);
    /* several threads: samples are split over threads, weight gradients
     * must still be summed over all of them */
    if (cfg % 3 == 2)
      C.threads = N;
    int64_t xd[4] = {N, C_, in[0], in[1]};
    c_x(2 + nsp, xd);
    c_range(XG_UNI, -1.f, 1.f);
    int64_t wd[4] = {M, Cg, k[0], k[1]};
    c_wcheck(c_wf("W", 2 + nsp, wd, -1.f, 1.f), 1);
    int bias = cfg % 3 != 1;
    if (bias) {
      int64_t bd[1] = {M};
      c_wcheck(c_wf("B", 1, bd, -1.f, 1.f), 1);
    }
    c_node("Conv", bias ? "x,W,B" : "x,W", "y");
    if (cfg % 2 == 0)
      c_ais("kernel_shape", nsp, k);
    c_ais("strides", nsp, s);
    c_ais("dilations", nsp, dl);
    if (autopad) {
      c_as("auto_pad", autopad);
    } else {
      int64_t pads[4] = {pl[0], nsp == 2 ? pl[1] : ph[0], ph[0], ph[1]};
      if (nsp == 1) {
        pads[0] = pl[0];
        pads[1] = ph[0];
      }
      c_ais("pads", 2 * nsp, pads);
    }
    if (group != 1 || cfg % 5 == 0)
      c_ai("group", group);
    run_case();
  }
}

TEST(gemm) {
  for (int cfg = 0; cfg < 14; cfg++) {
    int64_t M = rndi(1, 5), K = rndi(1, 5), N = rndi(1, 5);
    int ta = (int)(rnd64() & 1), tb = (int)(rnd64() & 1);
    int role = cfg < 7 ? 0 : cfg < 10 ? 1 : 2; /* x is A, B or C */
    int cvar = rndi(0, 6);
    if (role == 2 && cvar == 0)
      cvar = 4;
    c_begin("Gemm", cfg % 3 ? 13 : 11);
    int64_t ad[2] = {ta ? K : M, ta ? M : K}, bd[2] = {tb ? N : K, tb ? K : N};
    int64_t cd[2];
    int cnd = 0;
    switch (cvar) {
    case 1: cnd = 1; cd[0] = N; break;
    case 2: cnd = 2; cd[0] = 1; cd[1] = N; break;
    case 3: cnd = 2; cd[0] = M; cd[1] = 1; break;
    case 4: cnd = 2; cd[0] = M; cd[1] = N; break;
    case 5: cnd = 1; cd[0] = 1; break;
    case 6: cnd = 0; break;
    }
    if (role == 0)
      c_x(2, ad);
    else if (role == 1)
      c_x(2, bd);
    else
      c_x(cnd, cd);
    c_range(XG_UNI, -1.5f, 1.5f);
    if (role != 0)
      c_wcheck(c_wf("A", 2, ad, -1.5f, 1.5f), 1);
    if (role != 1)
      c_wcheck(c_wf("B", 2, bd, -1.5f, 1.5f), 1);
    if (cvar && role != 2)
      c_wcheck(c_wf("C", cnd, cd, -1.5f, 1.5f), 1);
    const char *in = role == 0 ? (cvar ? "x,B,C" : "x,B")
                   : role == 1 ? (cvar ? "A,x,C" : "A,x") : "A,B,x";
    c_node("Gemm", in, "y");
    if (ta || cfg % 4 == 0)
      c_ai("transA", ta);
    if (tb || cfg % 4 == 1)
      c_ai("transB", tb);
    if (cfg % 3 != 0)
      c_af("alpha", rndf(0.5f, 2.f));
    if (cfg == 6)
      c_af("beta", 0.f);
    else if (cfg % 2)
      c_af("beta", rndf(0.5f, 2.f));
    run_case();
  }
}

TEST(matmul) {
  for (int cfg = 0; cfg < 13; cfg++) {
    int64_t M = rndi(1, 4), K = rndi(1, 4), N = rndi(1, 4), B = rndi(2, 3);
    int64_t xd[4], wd[4];
    int xn = 0, wn = 0, xfirst = 1;
#define SET(arr, cnt, ...)                                                     \
  do {                                                                         \
    int64_t t_[] = {__VA_ARGS__};                                              \
    cnt = (int)(sizeof(t_) / sizeof(t_[0]));                                   \
    memcpy(arr, t_, sizeof(t_));                                               \
  } while (0)
    switch (cfg) {
    case 0: SET(xd, xn, M, K); SET(wd, wn, K, N); break;
    case 1: SET(xd, xn, K); SET(wd, wn, K, N); break;
    case 2: SET(xd, xn, M, K); SET(wd, wn, K); break;
    case 3: SET(xd, xn, B, M, K); SET(wd, wn, K, N); break;
    case 4: SET(xd, xn, B, M, K); SET(wd, wn, B, K, N); break;
    case 5: SET(xd, xn, 2, 1, M, K); SET(wd, wn, 3, K, N); break;
    case 6: SET(xd, xn, M, K); SET(wd, wn, B, K, N); break;
    case 7: SET(wd, wn, M, K); SET(xd, xn, K, N); xfirst = 0; break;
    case 8: SET(wd, wn, K); SET(xd, xn, B, K, N); xfirst = 0; break;
    case 9: SET(xd, xn, K); SET(wd, wn, K); break;
    case 10: SET(wd, wn, 2, 1, M, K); SET(xd, xn, 3, K, N); xfirst = 0; break;
    case 11: SET(xd, xn, B, M, K); SET(wd, wn, 1, K, N); break;
    case 12: SET(wd, wn, B, M, K); SET(xd, xn, K, N); xfirst = 0; break;
    }
#undef SET
    c_begin("MatMul", 13);
    c_x(xn, xd);
    c_range(XG_UNI, -1.5f, 1.5f);
    c_wcheck(c_wf("W", wn, wd, -1.5f, 1.5f), 1);
    c_node("MatMul", xfirst ? "x,W" : "W,x", "y");
    run_case();
  }
}

TEST(softmax) {
  static const char *ops[] = {"Softmax", "LogSoftmax"};
  static const int opsets[] = {11, 13};
  for (int o = 0; o < 2; o++)
    for (int v = 0; v < 2; v++)
      for (int cfg = 0; cfg < 4; cfg++) {
        int64_t d[8];
        c_begin(ops[o], opsets[v]);
        /* opset < 13 defaults to axis 1, which a 1-D input does not have */
        int r = rshape(d, opsets[v] < 13 && !cfg ? 2 : 1, 4, 5, 120);
        c_x(r, d);
        c_range(XG_UNI, -3.f, 3.f);
        c_node(ops[o], "x", "y");
        if (cfg)
          c_ai("axis", rndi(-r, r - 1));
        run_case();
      }
}

static void pool_case(const char *op, int cfg, int is_max) {
  int nsp = cfg % 5 == 4 ? 1 : 2;
  int64_t k[2], s[2], dl[2] = {1, 1}, pl[2], ph[2], in[2];
  int N, Cc;
  int ceil_mode = (int)(rnd64() & 1);
  for (;;) {
    N = rndi(1, 2);
    Cc = rndi(1, 2);
    int64_t numel = (int64_t)N * Cc;
    for (int i = 0; i < nsp; i++) {
      k[i] = rndi(1, 3);
      s[i] = rndi(1, 3);
      if (is_max && cfg % 3 == 2)
        dl[i] = rndi(1, 2);
      int64_t ek = (k[i] - 1) * dl[i] + 1;
      /* PyTorch's rule: pads at most half the kernel, so every window
       * holds at least one input element */
      int64_t pmax = (k[i] / 2 < ek / 2) ? k[i] / 2 : ek / 2;
      pl[i] = rndi(0, (int)pmax);
      ph[i] = rndi(0, (int)pmax);
      in[i] = rndi((int)ek, (int)ek + 5);
      numel *= in[i];
    }
    if (numel <= 240)
      break;
  }
  c_begin(op, 12);
  if (cfg % 4 == 3)
    C.threads = 2;
  int64_t xd[4] = {N, Cc, in[0], in[1]};
  c_x(2 + nsp, xd);
  if (is_max)
    c_range(XG_DISTINCT, 0, 0);
  else
    c_range(XG_UNI, -2.f, 2.f);
  c_node(op, "x", "y");
  c_ais("kernel_shape", nsp, k);
  if (cfg % 4 != 1)
    c_ais("strides", nsp, s);
  int64_t pads[4];
  for (int i = 0; i < nsp; i++) {
    pads[i] = pl[i];
    pads[i + nsp] = ph[i];
  }
  if (cfg % 4 != 2)
    c_ais("pads", 2 * nsp, pads);
  if (is_max && cfg % 3 == 2)
    c_ais("dilations", nsp, dl);
  if (ceil_mode || cfg % 2)
    c_ai("ceil_mode", ceil_mode);
  if (!is_max && (cfg % 3 || cfg == 0))
    c_ai("count_include_pad", cfg % 2);
  run_case();
}

TEST(pool) {
  for (int cfg = 0; cfg < 12; cfg++)
    pool_case("MaxPool", cfg, 1);
  for (int cfg = 0; cfg < 12; cfg++)
    pool_case("AveragePool", cfg, 0);
  for (int g = 0; g < 2; g++)
    for (int cfg = 0; cfg < 4; cfg++) {
      const char *op = g ? "GlobalMaxPool" : "GlobalAveragePool";
      int64_t d[5] = {rndi(1, 2), rndi(1, 3)};
      int r = 2 + rndi(1, 3);
      for (int i = 2; i < r; i++)
        d[i] = rndi(1, 4);
      if (numel_of(r, d) > 200)
        r = 3;
      c_begin(op, 13);
      c_x(r, d);
      if (g)
        c_range(XG_DISTINCT, 0, 0);
      c_node(op, "x", "y");
      run_case();
    }
}

TEST(batchnorm) {
  for (int cfg = 0; cfg < 7; cfg++) {
    int64_t d[5];
    int r = rndi(2, 4);
    d[0] = rndi(1, 2);
    d[1] = rndi(1, 4);
    for (int i = 2; i < r; i++)
      d[i] = rndi(1, 4);
    int64_t Cc = d[1];
    c_begin("BatchNormalization", cfg % 3 == 0 ? 9 : 15);
    c_x(r, d);
    c_range(XG_UNI, -2.f, 2.f);
    int64_t cd[1] = {Cc};
    c_wcheck(c_wmag("scale", 1, cd, 0.5f, 2.f), 1);
    c_wcheck(c_wf("B", 1, cd, -1.f, 1.f), 1);
    c_wcheck(c_wf("mean", 1, cd, -1.f, 1.f), 0);
    c_wcheck(c_wf("var", 1, cd, 0.3f, 2.f), 0);
    c_node("BatchNormalization", "x,scale,B,mean,var", "y");
    if (cfg % 2)
      c_af("epsilon", rndf(1e-5f, 1e-2f));
    run_case();
  }
}

TEST(shape_ops) {
  int64_t d[8], v[8];
  /* Flatten */
  for (int cfg = 0; cfg < 4; cfg++) {
    c_begin("Flatten", 13);
    int r = rshape(d, 1, 4, 4, 96);
    c_x(r, d);
    c_node("Flatten", "x", "y");
    if (cfg)
      c_ai("axis", rndi(-r, r));
    run_case();
  }
  /* Reshape */
  for (int cfg = 0; cfg < 6; cfg++) {
    c_begin("Reshape", cfg == 5 ? 5 : 14);
    int r = rshape(d, 2, 4, 4, 96);
    c_x(r, d);
    int64_t n = C.nx;
    int ns = 0;
    switch (cfg) {
    case 0: v[ns++] = n; break;
    case 1: v[ns++] = -1; break;
    case 2: for (int i = r - 1; i >= 0; i--) v[ns++] = d[i]; break;
    case 3: v[ns++] = d[0]; v[ns++] = -1; break;
    case 4: v[ns++] = 0; v[ns++] = -1; v[ns++] = 1; break;
    case 5: v[ns++] = -1; v[ns++] = d[r - 1]; break;
    }
    c_wi1("shape", ns, v);
    c_node("Reshape", "x,shape", "y");
    run_case();
  }
  /* Transpose */
  for (int cfg = 0; cfg < 5; cfg++) {
    c_begin("Transpose", 13);
    int r = rshape(d, 2, 4, 4, 120);
    c_x(r, d);
    c_node("Transpose", "x", "y");
    if (cfg) {
      perm_rand(v, r);
      c_ais("perm", r, v);
    }
    run_case();
  }
  /* Concat */
  static const char *cins[] = {"x,W1", "W1,x,W2", "x,x", "W1,x,x", "x"};
  for (int cfg = 0; cfg < 6; cfg++) {
    c_begin("Concat", 13);
    int r = rshape(d, 1, 4, 4, 60);
    c_x(r, d);
    int ax = rndi(0, r - 1);
    int64_t wd[8];
    memcpy(wd, d, sizeof(wd));
    wd[ax] = rndi(1, 3);
    c_wf("W1", r, wd, -2.f, 2.f);
    wd[ax] = rndi(1, 3);
    c_wf("W2", r, wd, -2.f, 2.f);
    c_node("Concat", cins[cfg % 5], "y");
    c_ai("axis", (rnd64() & 1) ? ax : ax - r);
    run_case();
  }
  /* Squeeze / Unsqueeze, both axis forms */
  for (int cfg = 0; cfg < 6; cfg++) {
    int r = rndi(2, 5);
    int64_t axes[8];
    int na = 0;
    for (int i = 0; i < r; i++) {
      d[i] = (rnd64() & 1) ? 1 : rndi(2, 3);
      if (d[i] == 1 && (rnd64() & 1))
        axes[na++] = (rnd64() & 1) ? i : i - r;
    }
    if (numel_of(r, d) > 120)
      d[0] = 1;
    c_begin("Squeeze", cfg < 3 ? 13 : 11);
    c_x(r, d);
    if (cfg % 3 == 0 || na == 0) { /* no axes: all 1-dims */
      c_node("Squeeze", "x", "y");
    } else if (cfg < 3) {
      c_wi1("axes", na, axes);
      c_node("Squeeze", "x,axes", "y");
    } else {
      c_node("Squeeze", "x", "y");
      c_ais("axes", na, axes);
    }
    run_case();
  }
  for (int cfg = 0; cfg < 4; cfg++) {
    int r = rshape(d, 1, 3, 4, 60);
    int na = rndi(1, 2);
    int64_t axes[2];
    int ro = r + na;
    axes[0] = rndi(0, ro - 1);
    do
      axes[1] = rndi(0, ro - 1);
    while (na == 2 && axes[1] == axes[0]);
    for (int i = 0; i < na; i++)
      if (rnd64() & 1)
        axes[i] -= ro;
    c_begin("Unsqueeze", cfg < 2 ? 13 : 11);
    c_x(r, d);
    if (cfg < 2) {
      c_wi1("axes", na, axes);
      c_node("Unsqueeze", "x,axes", "y");
    } else {
      c_node("Unsqueeze", "x", "y");
      c_ais("axes", na, axes);
    }
    run_case();
  }
  /* Slice */
  for (int cfg = 0; cfg < 10; cfg++) {
    int r = rndi(1, 3);
    for (int i = 0; i < r; i++)
      d[i] = rndi(2, 6);
    int64_t st[3], en[3], ax[3], sp[3];
    int ns = 0;
    int attr_form = cfg >= 8;
    for (int i = 0; i < r; i++) {
      if (i && (rnd64() & 1))
        continue;
      int64_t dim = d[i], step = attr_form ? 1 : (int64_t[]){1, 2, 3, -1, -2}[rndi(0, 4)];
      int64_t s0, e0, len;
      do {
        s0 = rndi(-(int)dim - 1, (int)dim + 1);
        e0 = rndi(-(int)dim - 1, (int)dim + 1);
        if (rndi(0, 5) == 0)
          e0 = step > 0 ? INT64_MAX : INT64_MIN;
        /* numpy-style length after clamping */
        int64_t s = s0 < 0 ? s0 + dim : s0, e = e0;
        if (e0 != INT64_MAX && e0 != INT64_MIN && e0 < 0)
          e += dim;
        if (step > 0) {
          s = s < 0 ? 0 : s > dim ? dim : s;
          e = e < 0 ? 0 : e > dim ? dim : e;
          len = e > s ? (e - s + step - 1) / step : 0;
        } else {
          s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
          e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
          len = s > e ? (s - e - step - 1) / -step : 0;
        }
      } while (len < 1);
      st[ns] = s0;
      en[ns] = e0;
      ax[ns] = (rnd64() & 1) ? i : i - r;
      sp[ns] = step;
      ns++;
    }
    c_begin("Slice", attr_form ? 9 : 13);
    c_x(r, d);
    if (attr_form) {
      c_node("Slice", "x", "y");
      c_ais("starts", ns, st);
      c_ais("ends", ns, en);
      c_ais("axes", ns, ax);
    } else {
      c_wi1("st", ns, st);
      c_wi1("en", ns, en);
      c_wi1("ax", ns, ax);
      c_wi1("sp", ns, sp);
      int all_unit = 1;
      for (int i = 0; i < ns; i++)
        all_unit &= sp[i] == 1;
      c_node("Slice", all_unit && cfg % 2 ? "x,st,en,ax" : "x,st,en,ax,sp", "y");
    }
    run_case();
  }
  /* Gather (float data, constant int64 indices with repeats/negatives) */
  for (int cfg = 0; cfg < 7; cfg++) {
    int r = rndi(1, 3);
    for (int i = 0; i < r; i++)
      d[i] = rndi(2, 5);
    int ax = rndi(0, r - 1);
    int ir = cfg % 3; /* indices rank 0, 1, 2 */
    int64_t idd[2] = {rndi(1, 4), rndi(1, 3)};
    int64_t ni = numel_of(ir, idd), iv[16];
    for (int64_t i = 0; i < ni; i++)
      iv[i] = rndi(-(int)d[ax], (int)d[ax] - 1);
    if (ni >= 2)
      iv[ni - 1] = iv[0]; /* a repeated index: gradients must add */
    c_begin("Gather", 13);
    c_x(r, d);
    c_wi("ind", ir, idd, iv);
    c_node("Gather", "x,ind", "y");
    if (ax || cfg % 2)
      c_ai("axis", (rnd64() & 1) ? ax : ax - r);
    run_case();
  }
  /* Expand */
  for (int cfg = 0; cfg < 5; cfg++) {
    int r = rndi(1, 3);
    int64_t sh[5];
    int extra = rndi(0, 2);
    for (int i = 0; i < r; i++)
      d[i] = (rnd64() & 1) ? 1 : rndi(2, 3);
    for (int i = 0; i < extra; i++)
      sh[i] = rndi(1, 3);
    for (int i = 0; i < r; i++)
      sh[extra + i] = d[i] == 1 ? rndi(1, 3) : ((rnd64() & 1) ? d[i] : 1);
    int nsh = extra + r;
    if (cfg == 4 && r > 1) { /* shape of lower rank than x */
      nsh = r - 1;
      for (int i = 0; i < nsh; i++)
        sh[i] = d[i + 1] == 1 ? 2 : d[i + 1];
    }
    c_begin("Expand", 13);
    c_x(r, d);
    c_wi1("shape", nsh, sh);
    c_node("Expand", "x,shape", "y");
    run_case();
  }
  /* Pad */
  static const char *modes[] = {"constant", "edge", "reflect"};
  for (int cfg = 0; cfg < 10; cfg++) {
    int r = rndi(1, 4);
    for (int i = 0; i < r; i++)
      d[i] = rndi(2, 4);
    if (numel_of(r, d) > 100)
      d[0] = 1;
    int mode = cfg % 3;
    int64_t pads[8];
    for (int i = 0; i < r; i++) {
      int64_t mx = mode == 2 ? d[i] - 1 : 2;
      pads[i] = rndi(0, (int)mx);
      pads[i + r] = rndi(0, (int)mx);
      if (mode == 0 && cfg >= 6 && (rnd64() & 1)) /* negative pad: crop */
        pads[i] = -rndi(0, (int)d[i] - 1);
    }
    int attr_form = cfg == 3 || cfg == 4;
    c_begin("Pad", attr_form ? 2 : 13);
    c_x(r, d);
    if (attr_form) {
      c_node("Pad", "x", "y");
      c_ais("pads", 2 * r, pads);
      if (mode == 0)
        c_af("value", 0.75f);
    } else {
      c_wi1("pads", 2 * r, pads);
      if (mode == 0 && cfg % 2) {
        c_wscalar("cv", -1.25f);
        c_node("Pad", "x,pads,cv", "y");
      } else {
        c_node("Pad", "x,pads", "y");
      }
    }
    if (mode || cfg % 4 == 0)
      c_as("mode", modes[mode]);
    run_case();
  }
  /* Pad with an axes input (opset 18) */
  {
    int64_t dd[3] = {2, 3, 4}, pads[4] = {1, 2, 2, 0}, axes[2] = {-1, 1};
    c_begin("Pad", 18);
    c_x(3, dd);
    c_wi1("pads", 4, pads);
    c_wi1("axes", 2, axes);
    c_node("Pad", "x,pads,,axes", "y");
    c_as("mode", "edge");
    run_case();
  }
  /* Pad-19 mode wrap: pads up to twice the dim (several periods) */
  for (int cfg = 0; cfg < 3; cfg++) {
    int64_t dd[3] = {2, rndi(1, 3), rndi(2, 4)}, pads[6];
    for (int i = 0; i < 3; i++) {
      pads[i] = rndi(0, 2 * (int)dd[i]);
      pads[i + 3] = rndi(0, 2 * (int)dd[i]);
    }
    c_begin("Pad", 19);
    c_x(3, dd);
    c_wi1("pads", 6, pads);
    c_node("Pad", "x,pads", "y");
    c_as("mode", "wrap");
    run_case();
  }
  /* Clip */
  for (int cfg = 0; cfg < 6; cfg++) {
    int r = rshape(d, 1, 3, 5, 80);
    float lo = rndf(-2.f, 0.f), hi = rndf(0.2f, 2.f);
    c_begin("Clip", cfg < 4 ? 13 : 6);
    c_x(r, d);
    c_range(XG_UNI, -3.f, 3.f);
    if (cfg == 0 || cfg == 4 || cfg == 5) {
      c_kink(lo);
      c_kink(hi);
    } else if (cfg == 1) {
      c_kink(lo);
    } else if (cfg == 2) {
      c_kink(hi);
    }
    switch (cfg) {
    case 0: c_wscalar("lo", lo); c_wscalar("hi", hi); c_node("Clip", "x,lo,hi", "y"); break;
    case 1: c_wscalar("lo", lo); c_node("Clip", "x,lo", "y"); break;
    case 2: c_wscalar("hi", hi); c_node("Clip", "x,,hi", "y"); break;
    case 3: c_node("Clip", "x", "y"); break;
    default:
      c_node("Clip", "x", "y");
      c_af("min", lo);
      c_af("max", hi);
    }
    run_case();
  }
}

TEST(reduce) {
  static const char *ops[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"};
  for (int o = 0; o < 4; o++)
    for (int cfg = 0; cfg < 7; cfg++) {
      int64_t d[8], axes[8];
      int r = rshape(d, 1, 4, 4, 120);
      int na = 0;
      for (int i = 0; i < r; i++)
        if (rnd64() & 1)
          axes[na++] = (rnd64() & 1) ? i : i - r;
      int keep = cfg % 2;
      /* axes as input: ReduceSum from opset 13, the others from 18 */
      int input_form = cfg >= 4;
      int opset = input_form ? (o == 0 ? 13 : 18) : (o == 0 ? 11 : 13);
      c_begin(ops[o], opset);
      c_x(r, d);
      if (o >= 2)
        c_range(XG_DISTINCT, 0, 0);
      if (input_form && na) {
        c_wi1("axes", na, axes);
        c_node(ops[o], "x,axes", "y");
      } else {
        c_node(ops[o], "x", "y");
        if (!input_form && na)
          c_ais("axes", na, axes);
      }
      if (keep || cfg == 2)
        c_ai("keepdims", keep);
      if (cfg == 6 && !na)
        c_ai("noop_with_empty_axes", 1);
      run_case();
    }
}

/* Small graphs: fan-out (one tensor read by several nodes, and both
 * inputs of one node), residuals, chains with weights inside. All smooth. */
TEST(graphs) {
  {
    int64_t d[3] = {2, 3, 4};
    c_begin("graph:fanout", 13);
    c_x(3, d);
    c_node("Sigmoid", "x", "a");
    c_node("Mul", "x,a", "b");
    c_node("Add", "b,x", "c");
    c_node("Mul", "c,c", "e");
    c_node("Tanh", "e", "y");
    c_range(XG_UNI, -1.f, 1.f);
    run_case();
  }
  for (int cfg = 0; cfg < 2; cfg++) {
    int64_t xd[4] = {2, 2, 5, 5}, w1[4] = {3, 2, 3, 3}, b1[1] = {3},
            w2[4] = {3, 3, 3, 3}, w3[2] = {4, 12}, b3[1] = {4};
    int64_t p1[4] = {1, 1, 1, 1}, k2[2] = {2, 2};
    c_begin("graph:convnet", 13);
    C.logits = cfg;
    C.threads = 1 + cfg;
    c_x(4, xd);
    c_range(XG_UNI, -1.f, 1.f);
    c_wcheck(c_wf("W1", 4, w1, -0.6f, 0.6f), 1);
    c_wcheck(c_wf("B1", 1, b1, -0.5f, 0.5f), 1);
    c_wcheck(c_wf("W2", 4, w2, -0.4f, 0.4f), 1);
    c_wcheck(c_wf("W3", 2, w3, -0.8f, 0.8f), 1);
    c_wcheck(c_wf("B3", 1, b3, -0.5f, 0.5f), 1);
    c_node("Conv", "x,W1,B1", "a");
    c_ais("pads", 4, p1);
    c_node("Tanh", "a", "b");
    c_node("Conv", "b,W2", "c");
    c_ais("pads", 4, p1);
    c_node("Add", "c,a", "e");
    c_node("AveragePool", "e", "f");
    c_ais("kernel_shape", 2, k2);
    c_ais("strides", 2, k2);
    c_node("Flatten", "f", "g");
    c_node("Gemm", "g,W3,B3", "h");
    c_ai("transB", 1);
    /* logits=1: the session stops before the final Softmax */
    c_node(cfg ? "Softmax" : "LogSoftmax", "h", "y");
    c_ai("axis", 1);
    run_case();
  }
  {
    int64_t xd[4] = {2, 3, 2, 3}, cd[1] = {3}, wd[2] = {3, 4}, sh[2] = {2, 3};
    c_begin("graph:bn_head", 15);
    c_x(4, xd);
    c_wcheck(c_wmag("scale", 1, cd, 0.5f, 2.f), 1);
    c_wcheck(c_wf("B", 1, cd, -1.f, 1.f), 1);
    c_wf("mean", 1, cd, -1.f, 1.f);
    c_wf("var", 1, cd, 0.5f, 2.f);
    c_wi1("shape", 2, sh);
    c_wcheck(c_wf("W", 2, wd, -1.f, 1.f), 1);
    c_node("BatchNormalization", "x,scale,B,mean,var", "a");
    c_node("Sigmoid", "a", "b");
    c_node("GlobalAveragePool", "b", "c");
    c_node("Reshape", "c,shape", "e");
    c_node("MatMul", "e,W", "y");
    run_case();
  }
  {
    int64_t xd[3] = {2, 3, 3}, perm[3] = {0, 2, 1};
    c_begin("graph:movement", 13);
    c_x(3, xd);
    c_node("Transpose", "x", "a");
    c_ais("perm", 3, perm);
    c_node("Concat", "a,a,x", "b");
    c_ai("axis", 2);
    c_node("Softmax", "b", "y");
    c_ai("axis", 1);
    run_case();
  }
  /* both operands of a product are activations: each one's gradient
   * reads the other's forward value, which must survive until backward */
  {
    int64_t xd[2] = {3, 4};
    c_begin("graph:bilinear", 13);
    c_x(2, xd);
    c_node("Tanh", "x", "a");
    c_node("Sigmoid", "x", "b");
    c_node("Gemm", "a,b", "y");
    c_ai("transB", 1);
    c_af("alpha", 0.7f);
    run_case();
  }
  {
    int64_t xd[2] = {4, 3};
    c_begin("graph:bilinear", 13);
    c_x(2, xd);
    c_node("Tanh", "x", "a");
    c_node("Sigmoid", "x", "b");
    c_node("Gemm", "a,b", "y");
    c_ai("transA", 1);
    run_case();
  }
  {
    int64_t xd[3] = {2, 3, 4}, perm[3] = {0, 2, 1};
    c_begin("graph:bilinear", 13);
    c_x(3, xd);
    c_node("Transpose", "x", "a");
    c_ais("perm", 3, perm);
    c_node("MatMul", "x,a", "y");
    run_case();
  }
  {
    int64_t xd[3] = {2, 3, 4}, wd[1] = {4};
    c_begin("graph:bilinear", 13);
    c_x(3, xd);
    c_wcheck(c_wf("W", 1, wd, -1.f, 1.f), 1);
    c_node("Sigmoid", "x", "a");
    c_node("Tanh", "x", "b");
    c_node("Mul", "a,b", "c");
    c_node("Exp", "x", "e");
    c_node("Div", "c,e", "f");
    c_node("Add", "a,W", "g");
    c_node("Pow", "g,b", "h");
    c_node("Sub", "f,h", "y");
    c_range(XG_UNI, -1.f, 1.f);
    /* Pow base a + W must stay positive: W in [-1,1] + sigmoid > 0.27 */
    for (int i = 0; i < 4; i++)
      C.inits[0].f[i] = rndf(0.f, 1.f);
    run_case();
  }
  /* Conv whose weight is an activation too (legal ONNX): dX reads W and
   * dW reads X */
  for (int cfg = 0; cfg < 2; cfg++) {
    int64_t xd[4] = {2, 2, 2, 2}, pads[4] = {1, 0, 1, 1};
    c_begin("graph:bilinear", 13);
    C.threads = 1 + cfg;
    c_x(4, xd);
    c_node("Tanh", "x", "a");
    c_node("Sigmoid", "x", "b");
    c_node("Conv", "a,b", "y");
    c_ais("pads", 4, pads);
    run_case();
  }
  /* a longer chain: each backward reads activations produced many nodes
   * earlier, so the activation arena must not reuse their memory */
  {
    int64_t xd[2] = {3, 5}, wd[2] = {5, 5}, ax[1] = {1};
    c_begin("graph:chain", 13);
    c_x(2, xd);
    c_wcheck(c_wf("W", 2, wd, -0.8f, 0.8f), 1);
    c_wi1("axes", 1, ax);
    c_node("Tanh", "x", "a");
    c_node("MatMul", "a,W", "b");
    c_node("Sigmoid", "b", "c");
    c_node("Mul", "c,a", "d");
    c_node("Softmax", "d", "e");
    c_ai("axis", 1);
    c_node("Exp", "d", "f");
    c_node("ReduceSum", "f,axes", "g");
    c_node("Log", "g", "h");
    c_node("Mul", "e,h", "y");
    run_case();
  }
  {
    int64_t xd[2] = {3, 5}, ax[1] = {-1};
    c_begin("graph:rmsnorm", 13);
    c_x(2, xd);
    c_node("Mul", "x,x", "a");
    c_node("ReduceMean", "a", "b");
    c_ais("axes", 1, ax);
    c_node("Sqrt", "b", "c");
    c_node("Div", "x,c", "y");
    run_case();
  }
  {
    int64_t xd[2] = {3, 5}, ax[1] = {1};
    c_begin("graph:logsumexp", 13);
    c_x(2, xd);
    c_wi1("axes", 1, ax);
    c_node("Exp", "x", "a");
    c_node("ReduceSum", "a,axes", "b");
    c_node("Log", "b", "c");
    c_node("Sub", "x,c", "y");
    run_case();
  }
  {
    int64_t xd[2] = {4, 6}, st[1] = {1}, en[1] = {5}, axes[1] = {1};
    c_begin("graph:slice_mix", 13);
    c_x(2, xd);
    c_wi1("st", 1, st);
    c_wi1("en", 1, en);
    c_wi1("ax", 1, axes);
    c_node("Slice", "x,st,en,ax", "a");
    c_node("Neg", "a", "b");
    c_node("Slice", "x,st,en,ax", "c");
    c_node("Mul", "b,c", "y");
    run_case();
  }
}

/* ---------------- losses ---------------- */

/* float64 re-implementation from docs/fixtures.md + adv.h conventions. */
static int ref_argmax_except(const float *z, int k, int skip) {
  int b = -1;
  for (int i = 0; i < k; i++)
    if (i != skip && (b < 0 || z[i] > z[b]))
      b = i;
  return b;
}

/* pi[0..3]: indices of the 4 largest (ties: lower index first). */
static void ref_sorted(const float *z, int k, int *pi) {
  int used[64] = {0};
  for (int j = 0; j < 4 && j < k; j++) {
    int b = -1;
    for (int i = 0; i < k; i++)
      if (!used[i] && (b < 0 || z[i] > z[b]))
        b = i;
    pi[j] = b;
    used[b] = 1;
  }
}

static double ref_loss(adv_loss_params lp, const float *z, int k, int y, int t,
                       double *dz) {
  for (int i = 0; i < k; i++)
    dz[i] = 0;
  switch (lp.kind) {
  case ADV_LOSS_CE: {
    int c = lp.targeted ? t : y;
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < k; i++)
      mx = fmax(mx, z[i]);
    for (int i = 0; i < k; i++)
      s += exp((double)z[i] - mx);
    double lse = mx + log(s);
    double sg = lp.targeted ? -1.0 : 1.0;
    for (int i = 0; i < k; i++)
      dz[i] = sg * exp((double)z[i] - lse);
    dz[c] -= sg;
    return sg * (lse - z[c]);
  }
  case ADV_LOSS_CW: {
    double v;
    int a, b; /* v = z_a - z_b */
    if (!lp.targeted) {
      a = ref_argmax_except(z, k, y);
      b = y;
    } else {
      a = t;
      b = ref_argmax_except(z, k, t);
    }
    v = (double)z[a] - z[b];
    if (v >= lp.kappa) /* clamped: constant kappa */
      return lp.kappa;
    dz[a] += 1;
    dz[b] -= 1;
    return v;
  }
  case ADV_LOSS_DLR: {
    int pi[4];
    ref_sorted(z, k, pi);
    if (!lp.targeted) {
      int m = ref_argmax_except(z, k, y);
      double num = (double)z[y] - z[m];
      double D = (double)z[pi[0]] - z[pi[2]] + 1e-12;
      dz[y] -= 1 / D;
      dz[m] += 1 / D;
      dz[pi[0]] += num / (D * D);
      dz[pi[2]] -= num / (D * D);
      return -num / D;
    } else {
      double num = (double)z[y] - z[t];
      double D = (double)z[pi[0]] - ((double)z[pi[2]] + z[pi[3]]) / 2 + 1e-12;
      dz[y] -= 1 / D;
      dz[t] += 1 / D;
      dz[pi[0]] += num / (D * D);
      dz[pi[2]] -= 0.5 * num / (D * D);
      dz[pi[3]] -= 0.5 * num / (D * D);
      return -num / D;
    }
  }
  case ADV_LOSS_LOGIT:
    dz[t] = 1;
    return z[t];
  case ADV_LOSS_OUTPUT_DIST: /* test_grad_objective.c */
    break;
  }
  return NAN;
}

static const char *loss_name(adv_loss_params lp) {
  static char b[64];
  static const char *n[] = {"CE", "CW", "DLR", "LOGIT"};
  snprintf(b, sizeof(b), "%s%s%s", n[lp.kind], lp.targeted ? "_t" : "",
           isinf(lp.kappa) ? "" : " (kappa)");
  return b;
}

TEST(losses) {
  enum { NS = 6, KMAX = 10 };
  for (int kind = 0; kind < 4; kind++)
    for (int targ = 0; targ < 2; targ++)
      for (int kap = 0; kap < 2; kap++)
        for (int kc = 0; kc < 2; kc++) {
          if (kap && kind != ADV_LOSS_CW)
            continue;
          if (targ && kind == ADV_LOSS_LOGIT)
            continue;
          int K = kc ? KMAX : (kind == ADV_LOSS_DLR ? (targ ? 4 : 3) : 2);
          adv_loss_params lp = adv_loss_default_params((adv_loss_kind)kind);
          lp.targeted = targ;
          CHECK(isinf(lp.kappa) && lp.kappa > 0);
          float z[NS * KMAX], dz[NS * KMAX], loss[NS];
          int64_t y[NS], t[NS];
          /* distinct logits, spacing > 2h (no max/sort change under FD) */
          for (int s = 0; s < NS; s++) {
            int64_t perm[KMAX];
            perm_rand(perm, K);
            float scale = rndf(0.3f, 1.5f);
            for (int i = 0; i < K; i++)
              z[s * K + i] = ((float)perm[i] - K / 2.f) * scale + rndf(-0.05f, 0.05f);
            y[s] = rndi(0, K - 1);
            t[s] = (y[s] + rndi(1, K - 1)) % K;
          }
          if (kap) {
            /* kappa between the samples' margins, >= 3h away from each */
            double mg[NS], dd[KMAX];
            for (int s = 0; s < NS; s++)
              mg[s] = ref_loss(lp, z + s * K, K, (int)y[s], (int)t[s], dd);
            float kappa = 0;
            for (int tries = 0; tries < 100; tries++) {
              kappa = (float)mg[rndi(0, NS - 1)] + rndf(-0.5f, 0.5f);
              int ok = 1;
              for (int s = 0; s < NS; s++)
                ok &= fabs(mg[s] - kappa) > 3 * FD_H + 0.05;
              if (ok)
                break;
            }
            lp.kappa = kappa;
          }
          adv_err err = {{0}};
          int rc = adv_loss_eval(lp, z, NS, K, y, t, loss, dz, &err);
          if (rc) {
            printf("FAIL loss %s K=%d: adv_loss_eval: %s\n", loss_name(lp), K, err.msg);
            harness_failed_checks++;
            continue;
          }
          double worst_v = 0, worst_g = 0, worst_fd = 0;
          int bad = 0;
          for (int s = 0; s < NS; s++) {
            double rdz[KMAX];
            float *zs = z + s * K;
            double rv = ref_loss(lp, zs, K, (int)y[s], (int)t[s], rdz);
            /* value: float32 rounding of O(max|z|) quantities */
            double ev = fabs(loss[s] - rv), tv = 1e-5 * (1 + fabs(rv)) + 1e-6 * 5;
            worst_v = fmax(worst_v, ev / tv);
            if (!(ev <= tv)) {
              printf("FAIL loss %s K=%d sample %d: value ours %.9g ref %.9g\n",
                     loss_name(lp), K, s, (double)loss[s], rv);
              bad++;
            }
            for (int i = 0; i < K; i++) {
              /* analytic gradient in float64 */
              double eg = fabs(dz[s * K + i] - rdz[i]);
              double tg = 1e-5 * (1 + fabs(rdz[i]));
              worst_g = fmax(worst_g, eg / tg);
              if (!(eg <= tg)) {
                printf("FAIL loss %s K=%d sample %d: dz[%d] ours %.9g ref %.9g\n",
                       loss_name(lp), K, s, i, (double)dz[s * K + i], rdz[i]);
                bad++;
              }
              /* central difference of the engine's own float loss */
              float orig = zs[i], zp = orig + FD_H, zm = orig - FD_H;
              float lpv, lmv;
              zs[i] = zp;
              rc = adv_loss_eval(lp, zs, 1, K, &y[s], &t[s], &lpv, NULL, &err);
              zs[i] = zm;
              rc |= adv_loss_eval(lp, zs, 1, K, &y[s], &t[s], &lmv, NULL, &err);
              zs[i] = orig;
              double fdv = ((double)lpv - lmv) / ((double)zp - (double)zm);
              /* roundoff of a float loss of size |L| over 2h */
              double tf = RTOL * (1 + fabs(fdv)) +
                          NOISE_K * FLT_EPSILON * (1 + fabs(rv)) / (2 * FD_H);
              double ef = fabs(dz[s * K + i] - fdv);
              worst_fd = fmax(worst_fd, ef / tf);
              if (rc || !(ef <= tf)) {
                printf("FAIL loss %s K=%d sample %d: dz[%d] ours %.9g fd %.9g\n",
                       loss_name(lp), K, s, i, (double)dz[s * K + i], fdv);
                bad++;
              }
            }
          }
          /* per-sample independence: the batch call equals single calls */
          for (int s = 0; s < NS; s++) {
            float l1, d1[KMAX];
            rc = adv_loss_eval(lp, z + s * K, 1, K, &y[s], &t[s], &l1, d1, &err);
            if (rc || l1 != loss[s] || memcmp(d1, dz + s * K, sizeof(float) * (size_t)K)) {
              printf("FAIL loss %s K=%d: sample %d alone differs from the batch\n",
                     loss_name(lp), K, s);
              bad++;
            }
          }
          /* loss == NULL and dz == NULL are allowed */
          float dz2[NS * KMAX], loss2[NS];
          rc = adv_loss_eval(lp, z, NS, K, y, t, NULL, dz2, &err);
          rc |= adv_loss_eval(lp, z, NS, K, y, t, loss2, NULL, &err);
          if (rc || memcmp(dz2, dz, sizeof(float) * NS * (size_t)K) ||
              memcmp(loss2, loss, sizeof(loss))) {
            printf("FAIL loss %s K=%d: NULL loss/dz outputs change the result\n",
                   loss_name(lp), K);
            bad++;
          }
          printf("%s loss %-12s K=%-2d value err/tol %.3f  dz-vs-f64 err/tol %.3f  "
                 "dz-vs-FD err/tol %.3f\n", bad ? "FAIL" : "ok  ", loss_name(lp),
                 K, worst_v, worst_g, worst_fd);
          if (bad)
            harness_failed_checks++;
        }
}

/* Ties: max and sort give the gradient to the lowest index (PyTorch). */
TEST(loss_ties) {
  adv_err err = {{0}};
  {
    float z[4] = {0, 2, 2, 1}, dz[4], l;
    int64_t y = 0;
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CW);
    CHECK(adv_loss_eval(lp, z, 1, 4, &y, NULL, &l, dz, &err) == 0);
    CHECK(l == 2.f);
    CHECK(dz[0] == -1.f && dz[1] == 1.f && dz[2] == 0.f && dz[3] == 0.f);
  }
  {
    float z[4] = {3, 3, 0, 1}, dz[4], l;
    int64_t y = 1, t = 2;
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CW);
    lp.targeted = 1;
    CHECK(adv_loss_eval(lp, z, 1, 4, &y, &t, &l, dz, &err) == 0);
    CHECK(l == -3.f);
    CHECK(dz[0] == -1.f && dz[1] == 0.f && dz[2] == 1.f && dz[3] == 0.f);
  }
  {
    /* z = [3,3,1,0], y = 3: m_y = 0 and pi1 = 0 (not 1), D = 2:
     * loss 1.5, dz = [-0.25, 0, 0.75, -0.5] */
    float z[4] = {3, 3, 1, 0}, dz[4], l;
    int64_t y = 3;
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_DLR);
    CHECK(adv_loss_eval(lp, z, 1, 4, &y, NULL, &l, dz, &err) == 0);
    CHECK_NEAR(l, 1.5, 1e-6);
    CHECK_NEAR(dz[0], -0.25, 1e-6);
    CHECK_NEAR(dz[1], 0.0, 1e-6);
    CHECK_NEAR(dz[2], 0.75, 1e-6);
    CHECK_NEAR(dz[3], -0.5, 1e-6);
  }
  {
    /* kappa: CW clamps at kappa with zero gradient */
    float z[3] = {0, 5, 1}, dz[3], l;
    int64_t y = 0;
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CW);
    lp.kappa = 2.f;
    CHECK(adv_loss_eval(lp, z, 1, 3, &y, NULL, &l, dz, &err) == 0);
    CHECK(l == 2.f);
    CHECK(dz[0] == 0.f && dz[1] == 0.f && dz[2] == 0.f);
  }
  {
    /* targeted CE is the negative of CE at t */
    float z[3] = {1, 2, 0.5f}, dz[3], dzt[3], l, lt;
    int64_t y = 0, t = 2;
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CE);
    CHECK(adv_loss_eval(lp, z, 1, 3, &t, NULL, &l, dz, &err) == 0);
    lp.targeted = 1;
    CHECK(adv_loss_eval(lp, z, 1, 3, &y, &t, &lt, dzt, &err) == 0);
    CHECK(lt == -l);
    for (int i = 0; i < 3; i++)
      CHECK(dzt[i] == -dz[i]);
  }
}

/* ---------------- API contracts ---------------- */

/* x (N x D) -> Gemm(transB) -> logits (N x K) */
static void classifier_case(int N, int D, int K) {
  int64_t xd[2] = {N, D}, wd[2] = {K, D}, bd[1] = {K};
  c_begin("api", 13);
  c_x(2, xd);
  c_wf("W", 2, wd, -1.f, 1.f);
  c_wf("B", 1, bd, -1.f, 1.f);
  c_node("Gemm", "x,W,B", "a");
  c_ai("transB", 1);
  c_node("Tanh", "a", "b");
  c_node("Gemm", "b,W2,B2", "y");
  int64_t w2[2] = {K, K};
  c_wf("W2", 2, w2, -3.f, 3.f);
  c_wf("B2", 1, bd, -1.f, 1.f);
}

TEST(api) {
  enum { N = 5, D = 7, K = 6 };
  classifier_case(N, D, K);
  adv_model *m;
  adv_session *s;
  adv_err err = {{0}};
  float x[N * D];
  gen_x(&C, x);
  int64_t y[N], t[N];
  for (int i = 0; i < N; i++) {
    y[i] = rndi(0, K - 1);
    t[i] = (y[i] + rndi(1, K - 1)) % K;
  }
  /* no grad=1: backward is refused cleanly */
  CHECK(open_case(&C, 0, 0, &m, &s, &err) == 0);
  if (s) {
    float z[N * K], dx[N * D], dz[N * K] = {0};
    CHECK(adv_session_forward(s, x, z, &err) == 0);
    err.msg[0] = 0;
    CHECK(adv_session_backward_dz(s, dz, dx, NULL, &err) < 0);
    CHECK(err.msg[0] != 0);
    int64_t nw = -1;
    CHECK(adv_session_weight_grad(s, "W", &nw) == NULL);
    close_case(m, s);
  }
  CHECK(open_case(&C, 1, 0, &m, &s, &err) == 0);
  if (!s) {
    printf("     api: session: %s\n", err.msg);
    return;
  }
  for (int kind = 0; kind < 4; kind++)
    for (int targ = 0; targ < 2; targ++) {
      adv_loss_params lp = adv_loss_default_params((adv_loss_kind)kind);
      lp.targeted = targ;
      float z[N * K], z2[N * K], dz[N * K], loss[N], loss2[N], loss3[N];
      float dxa[N * D], dxb[N * D], dxc[N * D];
      CHECK(adv_session_forward(s, x, z, &err) == 0);
      CHECK(adv_loss_eval(lp, z, N, K, y, t, loss, dz, &err) == 0);
      int rc = adv_session_backward_dz(s, dz, dxa, NULL, &err);
      CHECK(rc == 0);
      if (rc) {
        printf("     api: backward_dz: %s\n", err.msg);
        continue;
      }
      CHECK(adv_session_forward(s, x, z2, &err) == 0);
      CHECK(adv_session_backward(s, lp, y, t, loss2, dxb, NULL, &err) == 0);
      CHECK(adv_session_grad(s, x, lp, y, t, z2, loss3, dxc, &err) == 0);
      CHECK(!memcmp(z, z2, sizeof(z)));
      CHECK(!memcmp(loss, loss2, sizeof(loss)));
      CHECK(!memcmp(loss, loss3, sizeof(loss)));
      int same_b = !memcmp(dxa, dxb, sizeof(dxa)), same_c = !memcmp(dxa, dxc, sizeof(dxa));
      CHECK(same_b);
      CHECK(same_c);
      if (!same_b || !same_c)
        printf("     api: %s: backward/grad differ from loss_eval + backward_dz\n",
               loss_name(lp));
      /* loss and logits outputs are optional */
      CHECK(adv_session_grad(s, x, lp, y, t, NULL, NULL, dxc, &err) == 0);
      CHECK(!memcmp(dxa, dxc, sizeof(dxa)));
    }
  /* abort flag */
  {
    float z[N * K], dz[N * K], dx[N * D];
    volatile int stop = 1;
    for (int i = 0; i < N * K; i++)
      dz[i] = 1.f;
    CHECK(adv_session_forward(s, x, z, &err) == 0);
    CHECK(adv_session_backward_dz(s, dz, dx, &stop, &err) == ADV_EABORTED);
    /* the session is still usable after an aborted backward */
    float dx2[N * D];
    CHECK(adv_session_forward(s, x, z, &err) == 0);
    CHECK(adv_session_backward_dz(s, dz, dx, NULL, &err) == 0);
    CHECK(adv_session_forward(s, x, z, &err) == 0);
    CHECK(adv_session_backward_dz(s, dz, dx2, NULL, &err) == 0);
    CHECK(!memcmp(dx, dx2, sizeof(dx)));
  }
  /* counters */
  {
    int64_t f0, b0, f1, b1;
    adv_session_counters(s, &f0, &b0);
    float z[N * K], dx[N * D];
    adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CE);
    CHECK(adv_session_grad(s, x, lp, y, NULL, z, NULL, dx, &err) == 0);
    CHECK(adv_session_forward(s, x, z, &err) == 0);
    adv_session_counters(s, &f1, &b1);
    CHECK_EQ_INT(f1 - f0, 2);
    CHECK_EQ_INT(b1 - b0, 1);
  }
  /* a weight_grad=0 session has no weight gradients */
  {
    int64_t nw = -1;
    CHECK(adv_session_weight_grad(s, "W", &nw) == NULL);
  }
  close_case(m, s);
  /* threads: the same gradient (up to float reassociation) with 3 threads */
  {
    adv_model *m1, *m3;
    adv_session *s1, *s3;
    CHECK(open_case(&C, 1, 1, &m1, &s1, &err) == 0);
    size_t len;
    unsigned char *bytes = build(&C, &len);
    CHECK(adv_model_load_mem(bytes, len, adv_load_default_params(), &m3, &err) == 0);
    free(bytes);
    adv_session_params sp = adv_session_default_params();
    sp.threads = 3;
    sp.grad = 1;
    sp.weight_grad = 1;
    s3 = NULL;
    CHECK(m3 && adv_session_init(m3, sp, &s3, &err) == 0);
    if (s1 && s3) {
      adv_loss_params lp = adv_loss_default_params(ADV_LOSS_DLR);
      float d1[N * D], d3[N * D];
      CHECK(adv_session_grad(s1, x, lp, y, t, NULL, NULL, d1, &err) == 0);
      CHECK(adv_session_grad(s3, x, lp, y, t, NULL, NULL, d3, &err) == 0);
      double md = 0, mg = 0;
      for (int i = 0; i < N * D; i++) {
        md = fmax(md, fabs((double)d1[i] - d3[i]));
        mg = fmax(mg, fabs((double)d1[i]));
      }
      CHECK(md <= 1e-5 * mg);
      int64_t n1, n3;
      const float *w1 = adv_session_weight_grad(s1, "W", &n1);
      const float *w3 = adv_session_weight_grad(s3, "W", &n3);
      CHECK(w1 && w3 && n1 == n3);
      md = mg = 0;
      for (int64_t i = 0; w1 && w3 && i < n1; i++) {
        md = fmax(md, fabs((double)w1[i] - w3[i]));
        mg = fmax(mg, fabs((double)w1[i]));
      }
      CHECK(md <= 1e-5 * mg);
    }
    adv_session_free(s3);
    adv_model_free(m3);
    close_case(m1, s1);
  }
}

/* ---------------- main ---------------- */

static void print_summary(void) {
  printf("\n%-22s %5s %5s  %s\n", "op", "cases", "fail", "worst err/tol  first failure");
  for (int i = 0; i < g_nstats; i++) {
    const opstat *s = &g_stats[i];
    printf("%-22s %5d %5d  %8.3g       %s\n", s->op, s->cases, s->fails, s->worst,
           s->first_fail);
  }
  printf("FD cases: %d, failed: %d\n", g_total_cases, g_total_fails);
}

#ifndef GRAD_FD_NO_MAIN /* test_grad_ops.c reuses everything above */
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-v"))
      g_verbose = 1;
  const char *seed = getenv("ADV_GRAD_SEED");
  if (seed)
    g_rng = strtoull(seed, NULL, 0);
  g_selfcheck = getenv("ADV_GRAD_SELFCHECK") != NULL;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("seed %#llx, h = %g, rtol = %g, noise factor %g\n",
         (unsigned long long)g_rng, (double)FD_H, RTOL, NOISE_K);
  /* each round draws new shapes and attributes */
  const char *reps_env = getenv("ADV_GRAD_ROUNDS");
  int rounds = reps_env ? atoi(reps_env) : 3;
  for (int r = 0; r < rounds; r++) {
    RUN(unary);
    RUN(binary);
    RUN(conv);
    RUN(gemm);
    RUN(matmul);
    RUN(softmax);
    RUN(pool);
    RUN(batchnorm);
    RUN(shape_ops);
    RUN(reduce);
    RUN(graphs);
  }
  RUN(losses);
  RUN(loss_ties);
  RUN(api);
  print_summary();
  return harness_report();
}
#endif
