/*
 * resize.c - Resize (opsets 10, 11, 13, 18, 19) and Upsample (7, 9) on
 * float32 tensors of any rank, following ONNX's reference implementation
 * (onnx/reference/ops/op_resize.py):
 *   modes nearest (nearest_mode round_prefer_floor / round_prefer_ceil /
 *   floor / ceil), linear, cubic (cubic_coeff_a, exclude_outside);
 *   coordinate_transformation_mode half_pixel, half_pixel_symmetric,
 *   pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn,
 *   tf_crop_and_resize (roi, extrapolation_value);
 *   scales or sizes (constants), axes and keep_aspect_ratio_policy (18),
 *   antialias for linear/cubic downsampling (18).
 * Resize-10 and Upsample use asymmetric coordinates and onnxruntime's
 * nearest rule for them (truncate when upsampling, ceil when
 * downsampling).
 *
 * Interpolation is separable: every axis gets a table of taps (input index,
 * clamped to the edge as the reference's edge padding does, and weight) per
 * output coordinate; an output element is the sum over the product of its
 * axes' taps. Axes whose taps are all a single weight-1 index (nearest, or
 * unresized axes) use one tap.
 * Backward (float32): the transpose, dx[taps] += weight * dy (no gradient
 * flows to extrapolated elements).
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

enum { RZ_NEAREST, RZ_LINEAR, RZ_CUBIC };
enum {
  CT_HALF_PIXEL,
  CT_HALF_PIXEL_SYM,
  CT_PYTORCH,
  CT_ALIGN,
  CT_ASYM,
  CT_TF_NN,
  CT_TF_CROP
};
enum { NM_PREFER_FLOOR, NM_PREFER_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };

#define RZ_MAX_TAPS 64 /* per axis; antialias at scale 1/16 (cubic) */

typedef struct rz_axis {
  int n;              /* taps per output coordinate */
  int64_t *off;       /* out * n input offsets (index * stride) */
  float *w;           /* out * n weights */
  unsigned char *ext; /* per output coordinate: outside the roi, or NULL */
} rz_axis;

typedef struct rz_params {
  int nd;
  int64_t out[ADV_MAX_DIMS];
  rz_axis ax[ADV_MAX_DIMS];
  float extrap;
} rz_params;

typedef struct rz_cfg {
  int mode, ct, nm, exclude, antialias;
  float a; /* cubic coefficient */
} rz_cfg;

static int lookup(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (!strcmp(s, names[i]))
      return i;
  return -1;
}

/* Cubic convolution kernel at distance x >= 0 (Keys, coefficient a). */
static double cubic_k(double x, double a) {
  if (x < 1)
    return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2)
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

/* Taps (input positions relative to x0 = ceil(x) - 1, and weights) of one
 * output coordinate at original position x, ratio r = x - x0 in (0, 1].
 * Returns the tap count; *first is the position of the first tap. */
static int coeffs(const rz_cfg *c, double r, double scale, int *first,
                  double *w) {
  if (c->mode == RZ_NEAREST) {
    int up; /* 1: take x0 + 1, 0: x0 */
    if (r == 1.0)
      up = 1;
    else if (c->nm == NM_PREFER_FLOOR)
      up = r > 0.5;
    else if (c->nm == NM_PREFER_CEIL)
      up = r >= 0.5;
    else if (c->nm == NM_FLOOR)
      up = 0;
    else
      up = 1;
    *first = up;
    w[0] = 1;
    return 1;
  }
  double s = (c->antialias && scale < 1) ? scale : 1.0;
  if (c->mode == RZ_LINEAR) {
    int start = (int)floor(-1 / s) + 1, n = 2 - 2 * start;
    double sum = 0;
    for (int i = 0; i < n; i++) {
      double v = 1 - fabs(((double)(start + i) - r) * s);
      w[i] = v > 0 ? v : 0;
      sum += w[i];
    }
    for (int i = 0; i < n; i++)
      w[i] /= sum;
    *first = start;
    return n;
  }
  int start = (int)floor(-2 / s) + 1, n = 2 - 2 * start;
  double sum = 0;
  for (int i = 0; i < n; i++) {
    w[i] = cubic_k(fabs(((double)(start + i) - r) * s), c->a);
    sum += w[i];
  }
  if (s < 1) /* antialias normalizes; plain cubic weights sum to 1 */
    for (int i = 0; i < n; i++)
      w[i] /= sum;
  *first = start;
  return n;
}

/* The original coordinate of output coordinate o along an axis of length
 * in resized to out (scale: the axis' scale factor). Returns 1 when the
 * coordinate is outside the roi (tf_crop_and_resize). */
static int orig_coord(const rz_cfg *c, int64_t o, int64_t in, int64_t out,
                      double scale, double r0, double r1, double *x) {
  double xo = (double)o, ow = scale * (double)in;
  switch (c->ct) {
  case CT_ALIGN:
    *x = ow == 1 ? 0 : xo * (double)(in - 1) / (ow - 1);
    break;
  case CT_ASYM:
    *x = xo / scale;
    break;
  case CT_TF_NN:
    *x = (xo + 0.5) / scale;
    break;
  case CT_TF_CROP:
    if (ow == 1)
      *x = (r1 - r0) * (double)(in - 1) / 2;
    else
      *x = xo * (r1 - r0) * (double)(in - 1) / (ow - 1);
    *x += r0 * (double)(in - 1);
    return *x < 0 || *x > (double)(in - 1);
  case CT_PYTORCH:
    *x = ow == 1 ? -0.5 : (xo + 0.5) / scale - 0.5;
    break;
  case CT_HALF_PIXEL_SYM: {
    double adj = (double)out / ow, center = (double)in / 2;
    *x = center * (1 - adj) + (xo + 0.5) / scale - 0.5;
    break;
  }
  default:
    *x = (xo + 0.5) / scale - 0.5;
  }
  return 0;
}

/* Builds the tap table of one axis. */
static int build_axis(adv_plan *p, const rz_cfg *c, rz_axis *a, int64_t in,
                      int64_t out, int64_t stride, double scale, double r0,
                      double r1) {
  double w[RZ_MAX_TAPS];
  int first, n = 1;
  /* tap count is the same for every coordinate of the axis */
  n = coeffs(c, 0.5, scale, &first, w);
  if (n > RZ_MAX_TAPS)
    return ADV_EUNSUPPORTED;
  size_t cnt = (size_t)(out ? out : 1) * (size_t)n;
  a->n = n;
  a->off = adv__arena_alloc(&p->arena, cnt * sizeof(int64_t));
  a->w = adv__arena_alloc(&p->arena, cnt * sizeof(float));
  if (!a->off || !a->w)
    return ADV_ENOMEM;
  int identity = 1;
  for (int64_t o = 0; o < out; o++) {
    double x;
    if (orig_coord(c, o, in, out, scale, r0, r1, &x)) {
      if (!a->ext && !(a->ext = adv__arena_alloc(&p->arena, (size_t)out)))
        return ADV_ENOMEM;
      a->ext[o] = 1;
      identity = 0;
      for (int t = 0; t < n; t++) {
        a->off[o * n + t] = 0;
        a->w[o * n + t] = 0;
      }
      continue;
    }
    double x0;
    if (c->nm == NM_SIMPLE && c->mode == RZ_NEAREST) {
      /* onnxruntime's rule for Resize-10 / Upsample */
      x0 = scale < 1 ? ceil(x) : trunc(x);
      first = 0;
      w[0] = 1;
    } else {
      x0 = ceil(x) - 1;
      coeffs(c, x - x0, scale, &first, w);
    }
    double sum = 0;
    for (int t = 0; t < n; t++) {
      int64_t i = (int64_t)x0 + first + t;
      if (c->exclude && (i < 0 || i >= in))
        w[t] = 0;
      sum += w[t];
    }
    for (int t = 0; t < n; t++) {
      int64_t i = (int64_t)x0 + first + t;
      i = i < 0 ? 0 : i >= in ? in - 1 : i;
      float wt = (float)(c->exclude ? (sum != 0 ? w[t] / sum : 0) : w[t]);
      a->off[o * n + t] = i * stride;
      a->w[o * n + t] = wt;
      if (!(wt == 0 || (wt == 1 && i == o)))
        identity = 0;
    }
  }
  if (n > 1 && identity) { /* every coordinate reads its own input */
    for (int64_t o = 0; o < out; o++) {
      a->off[o] = o * stride;
      a->w[o] = 1;
    }
    a->n = 1;
  } else if (n > 1) { /* one nonzero weight-1 tap each: keep only it */
    int single = !a->ext;
    for (int64_t o = 0; single && o < out; o++) {
      int nz = 0;
      for (int t = 0; t < n; t++)
        if (a->w[o * n + t] != 0)
          nz += a->w[o * n + t] == 1 ? 1 : 2;
      single = nz == 1;
    }
    if (single) {
      for (int64_t o = 0; o < out; o++)
        for (int t = 0; t < n; t++)
          if (a->w[o * n + t] == 1) {
            a->off[o] = a->off[o * n + t];
            a->w[o] = 1;
            break;
          }
      a->n = 1;
    }
  }
  return ADV_OK;
}

/* Reads a constant float tensor (scales, roi) into out; count or <0. */
static int const_floats(const adv_tensor *t, double *out, int max) {
  if (!t || !t->is_const)
    return ADV_EUNSUPPORTED;
  if (t->numel > max)
    return ADV_ELIMIT;
  for (int64_t i = 0; i < t->numel; i++)
    out[i] = t->dtype == ADV_DTYPE_F32 ? (double)((const float *)t->data)[i]
                                       : (double)((const int64_t *)t->data)[i];
  return (int)t->numel;
}

static int rz_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  static const char *const modes[] = {"nearest", "linear", "cubic"};
  static const char *const cts[] = {
      "half_pixel",        "half_pixel_symmetric", "pytorch_half_pixel",
      "align_corners",     "asymmetric",           "tf_half_pixel_for_nn",
      "tf_crop_and_resize"};
  static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil",
                                    "floor", "ceil"};
  if (n->n_in < 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "needs an input and 1 output");
  adv_tensor *x = n->in[0];
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "float32 input required");
  int nd = x->ndim;
  int is_up = !strcmp(adv__ops[n->op]->name, "Upsample");
  int old = is_up || p->opset < 11; /* Resize-10 / Upsample semantics */
  rz_cfg c;
  memset(&c, 0, sizeof(c));
  const char *ms = adv__attr_str(n->m, "mode", "nearest");
  c.mode = !strcmp(ms, "bilinear") ? RZ_LINEAR : lookup(ms, modes, 3);
  if (c.mode < 0 || (old && c.mode == RZ_CUBIC))
    return adv__error(err, ADV_EUNSUPPORTED, "mode '%s'", ms);
  if (old) {
    c.ct = CT_ASYM;
    c.nm = NM_SIMPLE;
  } else {
    const char *cs =
        adv__attr_str(n->m, "coordinate_transformation_mode", "half_pixel");
    const char *ns = adv__attr_str(n->m, "nearest_mode", "round_prefer_floor");
    c.ct = lookup(cs, cts, 7);
    c.nm = lookup(ns, nms, 4);
    if (c.ct < 0 || c.nm < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "mode '%s' / '%s'", cs, ns);
    c.a = adv__attr_float(n->m, "cubic_coeff_a", -0.75f);
    c.exclude = adv__attr_int(n->m, "exclude_outside", 0) != 0;
    c.antialias =
        adv__attr_int(n->m, "antialias", 0) != 0 && c.mode != RZ_NEAREST;
  }
  /* which axes, their scales and output sizes */
  int64_t axes[ADV_MAX_DIMS];
  int nax = nd;
  const int64_t *av;
  int na = adv__attr_ints(n->m, "axes", &av);
  if (na > nd)
    return adv__error(err, ADV_ESHAPE, "too many axes");
  if (na > 0) {
    nax = na;
    for (int i = 0; i < na; i++) {
      int a = adv__axis(av[i], nd);
      if (a < 0)
        return adv__error(err, ADV_ESHAPE, "axis out of range");
      axes[i] = a;
    }
  } else {
    for (int i = 0; i < nd; i++)
      axes[i] = i;
  }
  double sc[ADV_MAX_DIMS], roi[2 * ADV_MAX_DIMS];
  int64_t sz[ADV_MAX_DIMS];
  int nsc = -1, nsz = -1;
  if (is_up && p->opset < 9) {
    const adv_attr *at = adv__attr_get(n->m, "scales");
    if (!at || at->type != ADV_ATTR_FLOATS || at->n != nd)
      return adv__error(err, ADV_EFORMAT, "Upsample: scales attribute");
    for (int i = 0; i < nd; i++)
      sc[i] = at->floats[i];
    nsc = nd;
  } else if (old) {
    if (n->n_in < 2 || (nsc = const_floats(n->in[1], sc, ADV_MAX_DIMS)) < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "scales must be constant");
  } else {
    if (n->n_in >= 4 && n->in[3] && n->in[3]->numel > 0 &&
        (nsz = adv__const_ints(n->in[3], sz, ADV_MAX_DIMS)) < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "sizes must be constant");
    if (nsz < 0 && n->n_in >= 3 && n->in[2] && n->in[2]->numel > 0 &&
        (nsc = const_floats(n->in[2], sc, ADV_MAX_DIMS)) < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "scales must be constant");
    if (nsz < 0 && nsc < 0)
      return adv__error(err, ADV_EFORMAT, "neither scales nor sizes given");
  }
  if ((nsc >= 0 && nsc != nax) || (nsz >= 0 && nsz != nax))
    return adv__error(err, ADV_ESHAPE, "scales/sizes need %d values", nax);
  for (int i = 0; i < nd; i++) {
    roi[i] = 0;
    roi[nd + i] = 1;
  }
  if (c.ct == CT_TF_CROP) {
    double r[4 * ADV_MAX_DIMS];
    int nr = n->n_in >= 2 && n->in[1]
                 ? const_floats(n->in[1], r, 4 * ADV_MAX_DIMS)
                 : -1;
    if (nr != 2 * nax)
      return adv__error(err, ADV_EUNSUPPORTED,
                        "roi must be constant, 2x%d values", nax);
    for (int i = 0; i < nax; i++) {
      roi[axes[i]] = r[i];
      roi[nd + axes[i]] = r[nax + i];
    }
  }
  double scale[ADV_MAX_DIMS];
  int64_t out[ADV_MAX_DIMS];
  for (int i = 0; i < nd; i++) {
    scale[i] = 1;
    out[i] = x->dims[i];
  }
  if (nsz >= 0) {
    const char *pol =
        adv__attr_str(n->m, "keep_aspect_ratio_policy", "stretch");
    int keep = !strcmp(pol, "not_larger")    ? 1
               : !strcmp(pol, "not_smaller") ? 2
                                             : 0;
    if (!keep && strcmp(pol, "stretch"))
      return adv__error(err, ADV_EUNSUPPORTED, "keep_aspect_ratio_policy '%s'",
                        pol);
    double common = keep == 1 ? INFINITY : 0;
    for (int i = 0; i < nax; i++) {
      if (sz[i] < 0 || x->dims[axes[i]] == 0)
        return adv__error(err, ADV_ESHAPE, "bad sizes");
      double s = (double)sz[i] / (double)x->dims[axes[i]];
      common = keep == 1 ? fmin(common, s) : fmax(common, s);
      scale[axes[i]] = s;
      out[axes[i]] = sz[i];
    }
    if (keep)
      for (int i = 0; i < nax; i++) {
        scale[axes[i]] = common;
        out[axes[i]] = (int64_t)nearbyint(common * (double)x->dims[axes[i]]);
      }
  } else {
    for (int i = 0; i < nax; i++) {
      if (!(sc[i] > 0) || !(sc[i] * (double)x->dims[axes[i]] < 1e12))
        return adv__error(err, ADV_ESHAPE, "bad scale %g", sc[i]);
      scale[axes[i]] = sc[i];
      out[axes[i]] = (int64_t)((double)x->dims[axes[i]] * sc[i]);
    }
  }
  rz_params *rp = adv__arena_alloc(&p->arena, sizeof(*rp));
  if (!rp)
    return ADV_ENOMEM;
  rp->nd = nd;
  rp->extrap = adv__attr_float(n->m, "extrapolation_value", 0.f);
  int rc = adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, nd, out);
  if (rc)
    return adv__error(err, rc, "output too large");
  int64_t stride = 1;
  for (int i = nd - 1; i >= 0; i--) {
    rp->out[i] = out[i];
    if (x->dims[i] == 0 && out[i] > 0)
      return adv__error(err, ADV_ESHAPE, "cannot resize an empty axis");
    rc = build_axis(p, &c, &rp->ax[i], x->dims[i], out[i], stride, scale[i],
                    roi[i], roi[nd + i]);
    if (rc)
      return adv__error(err, rc, "resize tables (%s)", adv_err_name(rc));
    stride *= x->dims[i];
  }
  n->params = rp;
  return ADV_OK;
}

/* Calls body(off, w) for every tap combination of output element e at
 * coordinates idx; *ext is set when the element is extrapolated. */
typedef struct rz_iter {
  int act[ADV_MAX_DIMS], nact; /* axes with more than one tap */
  int64_t base;                /* offset sum of the one-tap axes */
  float wbase;
} rz_iter;

static int rz_setup(const rz_params *rp, const int64_t *idx, rz_iter *it) {
  it->nact = 0;
  it->base = 0;
  it->wbase = 1;
  for (int d = 0; d < rp->nd; d++) {
    const rz_axis *a = &rp->ax[d];
    if (a->ext && a->ext[idx[d]])
      return 1;
    if (a->n == 1) {
      it->base += a->off[idx[d]];
      it->wbase *= a->w[idx[d]];
    } else {
      it->act[it->nact++] = d;
    }
  }
  return 0;
}

static void idx_next(const rz_params *rp, int64_t *idx) {
  for (int d = rp->nd - 1; d >= 0 && ++idx[d] == rp->out[d]; d--)
    idx[d] = 0;
}

/* Visits the tap combinations (t[k] over the active axes) of one output
 * element; ACC(off, w) is the statement run per combination. */
#define RZ_TAPS(rp, it, idx, ACC)                                              \
  do {                                                                         \
    int t_[ADV_MAX_DIMS] = {0};                                                \
    for (;;) {                                                                 \
      int64_t off_ = (it).base;                                                \
      float w_ = (it).wbase;                                                   \
      for (int k_ = 0; k_ < (it).nact; k_++) {                                 \
        const rz_axis *a_ = &(rp)->ax[(it).act[k_]];                           \
        int64_t j_ = (idx)[(it).act[k_]] * a_->n + t_[k_];                     \
        off_ += a_->off[j_];                                                   \
        w_ *= a_->w[j_];                                                       \
      }                                                                        \
      ACC(off_, w_);                                                           \
      int k_ = (it).nact - 1;                                                  \
      for (; k_ >= 0 && ++t_[k_] == (rp)->ax[(it).act[k_]].n; k_--)            \
        t_[k_] = 0;                                                            \
      if (k_ < 0)                                                              \
        break;                                                                 \
    }                                                                          \
  } while (0)

/* What rz_fw_chunk reads (adv__par_for context). */
struct rz_fw_job {
  const rz_params *rp;
  const float *x;
  float *y;
  int64_t total;
  int64_t chunk;
};

/* A chunk [lo, hi) of rz_fw's loop over c (adv__par_for). */
static void rz_fw_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct rz_fw_job *j = arg;
  const rz_params *rp = j->rp;
  const float *x = j->x;
  float *y = j->y;
  int64_t total = j->total;
  int64_t chunk = j->chunk;
  for (int64_t c = lo; c < hi; c++) {
    int64_t e0 = c * chunk, e1 = e0 + chunk < total ? e0 + chunk : total;
    int64_t idx[ADV_MAX_DIMS] = {0}, rem = e0;
    for (int d = rp->nd - 1; d >= 0; d--) {
      idx[d] = rp->out[d] ? rem % rp->out[d] : 0;
      rem = rp->out[d] ? rem / rp->out[d] : 0;
    }
    for (int64_t e = e0; e < e1; e++, idx_next(rp, idx)) {
      rz_iter it;
      if (rz_setup(rp, idx, &it)) {
        y[e] = rp->extrap;
        continue;
      }
      double acc = 0;
#define RZ_FWD(off, w) acc += (double)(w)*x[off]
      RZ_TAPS(rp, it, idx, RZ_FWD);
#undef RZ_FWD
      y[e] = (float)acc;
    }
  }
}

/* Forward, parallel over chunks of output elements (each chunk starts its
 * index walk from its first element). */
static int rz_forward(adv_plan *p, adv_pnode *n) {
  const rz_params *rp = n->params;
  const float *x = n->in[0]->data;
  float *y = n->out[0]->data;
  int64_t total = n->out[0]->numel, chunk = 4096;
  int64_t nch = (total + chunk - 1) / chunk;
  struct rz_fw_job rz_fw_j = {
      .rp = rp, .x = x, .y = y, .total = total, .chunk = chunk};
  adv__par_for((total > 65536) ? (p->threads) : 1, nch, 4, rz_fw_chunk,
               &rz_fw_j);
  return ADV_OK;
}

static int rz_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const rz_params *rp = n->params;
  adv_tensor *xt = n->in[0], *yt = n->out[0];
  if (!xt->grad || !yt->grad)
    return ADV_OK;
  float *gx = xt->grad;
  const float *gy = yt->grad;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t e = 0; e < yt->numel; e++, idx_next(rp, idx)) {
    rz_iter it;
    if (rz_setup(rp, idx, &it))
      continue;
    float g = gy[e];
#define RZ_BWD(off, w) gx[off] += (w)*g
    RZ_TAPS(rp, it, idx, RZ_BWD);
#undef RZ_BWD
  }
  return ADV_OK;
}

const adv_op_def adv__op_resize = {"Resize",    rz_infer, rz_forward,
                                   rz_backward, 0,        0};
const adv_op_def adv__op_upsample = {"Upsample",  rz_infer, rz_forward,
                                     rz_backward, 0,        0};
