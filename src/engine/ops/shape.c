/*
 * shape.c - data movement and shape arithmetic: Flatten, Reshape,
 * Transpose, Concat, Squeeze, Unsqueeze, Shape, Gather, Slice, Cast,
 * ConstantOfShape, Constant, Expand. These work on float32 and int64; the
 * planner folds them at load time whenever their inputs are known, which
 * is how exported shape arithmetic (Shape -> Gather -> Unsqueeze -> Concat
 * -> Reshape) disappears before the first run.
 * Both the attribute form (older opsets) and the input form (newer) of
 * Reshape, Squeeze, Unsqueeze and Slice are accepted; the input form
 * requires the parameter inputs to be constant.
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

/* ---------- shared strided copy ---------- */

typedef struct copy_params {
  int nd;
  int64_t odims[ADV_MAX_DIMS];
  int64_t istr[ADV_MAX_DIMS]; /* input element stride per output dim */
  int64_t ioff;               /* input element offset */
} copy_params;

/* Copies out[i...] = in[ioff + sum(i_d * istr_d)], last dim innermost. */
static void strided_copy(const copy_params *cp, const void *src, void *dst,
                         size_t es, int64_t total) {
  const char *s = src;
  char *d = dst;
  if (cp->nd == 0) {
    if (total)
      memcpy(d, s + cp->ioff * (int64_t)es, es);
    return;
  }
  int64_t inner = cp->odims[cp->nd - 1], st = cp->istr[cp->nd - 1];
  int64_t rows = inner ? total / inner : 0;
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = cp->ioff;
    for (int k = 0; k < cp->nd - 1; k++)
      off += idx[k] * cp->istr[k];
    char *drow = d + (size_t)(r * inner) * es;
    if (st == 1) {
      memcpy(drow, s + (size_t)off * es, (size_t)inner * es);
    } else if (es == 4) {
      const float *sf = (const float *)s + off;
      float *df = (float *)drow;
      for (int64_t j = 0; j < inner; j++)
        df[j] = sf[j * st];
    } else {
      for (int64_t j = 0; j < inner; j++)
        memcpy(drow + (size_t)j * es, s + (size_t)(off + j * st) * es, es);
    }
    for (int k = cp->nd - 2; k >= 0 && ++idx[k] == cp->odims[k]; k--)
      idx[k] = 0;
  }
}

static void contiguous_strides(const adv_tensor *t, int64_t *st) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    st[i] = s;
    s *= t->dims[i];
  }
}

static size_t esize(const adv_tensor *t) { return adv_dtype_size(t->dtype); }

static int check_io(adv_pnode *n, int min_in, adv_err *err) {
  if (n->n_in < min_in || !n->in[0] || n->n_out < 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "missing input or output");
  return ADV_OK;
}

/* ---------- plain copies with a new shape ---------- */

static int copy_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  memcpy(n->out[0]->data, n->in[0]->data, (size_t)n->in[0]->numel * esize(n->in[0]));
  return ADV_OK;
}

static int flatten_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  n->bw_can_assign = ADV_BW_IN(0); /* copy_backward stores */
  (void)p;
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int64_t axis = adv__attr_int(n->m, "axis", 1);
  if (axis < 0)
    axis += x->ndim;
  if (axis < 0 || axis > x->ndim)
    return adv__error(err, ADV_EFORMAT, "axis out of range");
  int64_t d[2] = {1, 1};
  for (int i = 0; i < x->ndim; i++)
    d[i < axis ? 0 : 1] *= x->dims[i];
  return adv__tensor_set_shape(n->out[0], x->dtype, 2, d);
}

static int reshape_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  n->bw_can_assign = ADV_BW_IN(0); /* copy_backward stores */
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int64_t shape[ADV_MAX_DIMS];
  int nd;
  if (p->opset >= 5) {
    if (n->n_in < 2 || !n->in[1])
      return adv__error(err, ADV_EFORMAT, "shape input missing");
    nd = adv__const_ints(n->in[1], shape, ADV_MAX_DIMS);
    if (nd < 0)
      return adv__error(err, nd, "shape must be a constant int64 tensor of rank <= %d",
                       ADV_MAX_DIMS);
  } else {
    const int64_t *v;
    nd = adv__attr_ints(n->m, "shape", &v);
    if (nd < 0 || nd > ADV_MAX_DIMS)
      return adv__error(err, ADV_EFORMAT, "shape attribute missing");
    memcpy(shape, v, sizeof(int64_t) * (size_t)nd);
  }
  int allowzero = (int)adv__attr_int(n->m, "allowzero", 0);
  int neg = -1;
  int64_t known = 1;
  for (int i = 0; i < nd; i++) {
    if (shape[i] == 0 && !allowzero) {
      if (i >= x->ndim)
        return adv__error(err, ADV_ESHAPE, "0 refers past the input rank");
      shape[i] = x->dims[i];
    }
    if (shape[i] == -1) {
      if (neg >= 0)
        return adv__error(err, ADV_ESHAPE, "more than one -1");
      neg = i;
      continue;
    }
    if (shape[i] < 0)
      return adv__error(err, ADV_ESHAPE, "negative dim %lld", (long long)shape[i]);
    if (shape[i] && known > ((int64_t)1 << 40) / shape[i])
      return adv__error(err, ADV_ELIMIT, "shape too large");
    known *= shape[i];
  }
  if (neg >= 0) {
    if (known == 0 || x->numel % known)
      return adv__error(err, ADV_ESHAPE, "cannot infer -1");
    shape[neg] = x->numel / known;
  } else if (known != x->numel) {
    return adv__error(err, ADV_ESHAPE, "reshape %lld elements into %lld",
                     (long long)x->numel, (long long)known);
  }
  return adv__tensor_set_shape(n->out[0], x->dtype, nd, shape);
}

/* Squeeze / Unsqueeze: axes from attribute (< 13) or input 1 (>= 13). */
static int get_axes(adv_plan *p, adv_pnode *n, int64_t *axes, int *na,
                    adv_err *err) {
  *na = -1;
  if (p->opset >= 13) {
    if (n->n_in >= 2 && n->in[1]) {
      *na = adv__const_ints(n->in[1], axes, ADV_MAX_DIMS);
      if (*na < 0)
        return adv__error(err, *na, "axes must be constant int64");
    }
  } else {
    const int64_t *v;
    int c = adv__attr_ints(n->m, "axes", &v);
    if (c > ADV_MAX_DIMS)
      return adv__error(err, ADV_ELIMIT, "too many axes");
    if (c >= 0) {
      memcpy(axes, v, sizeof(int64_t) * (size_t)c);
      *na = c;
    }
  }
  return ADV_OK;
}

static int squeeze_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  n->bw_can_assign = ADV_BW_IN(0); /* copy_backward stores */
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int64_t axes[ADV_MAX_DIMS];
  int na;
  if ((rc = get_axes(p, n, axes, &na, err)))
    return rc;
  int drop[ADV_MAX_DIMS] = {0};
  if (na < 0) {
    for (int i = 0; i < x->ndim; i++)
      drop[i] = x->dims[i] == 1;
  } else {
    for (int i = 0; i < na; i++) {
      int a = adv__axis(axes[i], x->ndim);
      if (a < 0 || x->dims[a] != 1)
        return adv__error(err, ADV_ESHAPE, "cannot squeeze axis %lld",
                         (long long)axes[i]);
      drop[a] = 1;
    }
  }
  int64_t d[ADV_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < x->ndim; i++)
    if (!drop[i])
      d[nd++] = x->dims[i];
  return adv__tensor_set_shape(n->out[0], x->dtype, nd, d);
}

static int unsqueeze_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  n->bw_can_assign = ADV_BW_IN(0); /* copy_backward stores */
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int64_t axes[ADV_MAX_DIMS];
  int na;
  if ((rc = get_axes(p, n, axes, &na, err)))
    return rc;
  if (na < 0)
    return adv__error(err, ADV_EFORMAT, "axes required");
  int rank = x->ndim + na;
  if (rank > ADV_MAX_DIMS)
    return adv__error(err, ADV_ELIMIT, "rank > %d", ADV_MAX_DIMS);
  int ins[ADV_MAX_DIMS] = {0};
  for (int i = 0; i < na; i++) {
    int a = adv__axis(axes[i], rank);
    if (a < 0 || ins[a])
      return adv__error(err, ADV_EFORMAT, "bad or repeated axis %lld",
                       (long long)axes[i]);
    ins[a] = 1;
  }
  int64_t d[ADV_MAX_DIMS];
  for (int i = 0, k = 0; i < rank; i++)
    d[i] = ins[i] ? 1 : x->dims[k++];
  return adv__tensor_set_shape(n->out[0], x->dtype, rank, d);
}

/* ---------- Transpose ---------- */

static int transpose_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  copy_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  int64_t perm[ADV_MAX_DIMS];
  const int64_t *v;
  int c = adv__attr_ints(n->m, "perm", &v);
  if (c < 0) {
    for (int i = 0; i < x->ndim; i++)
      perm[i] = x->ndim - 1 - i;
  } else {
    if (c != x->ndim)
      return adv__error(err, ADV_EFORMAT, "perm length %d != rank %d", c, x->ndim);
    int seen[ADV_MAX_DIMS] = {0};
    for (int i = 0; i < c; i++) {
      int a = adv__axis(v[i], x->ndim);
      if (a < 0 || seen[a]++)
        return adv__error(err, ADV_EFORMAT, "perm is not a permutation");
      perm[i] = a;
    }
  }
  int64_t st[ADV_MAX_DIMS], d[ADV_MAX_DIMS];
  contiguous_strides(x, st);
  cp->nd = x->ndim;
  for (int i = 0; i < x->ndim; i++) {
    d[i] = x->dims[perm[i]];
    cp->odims[i] = d[i];
    cp->istr[i] = st[perm[i]];
  }
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, d);
}

static int strided_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  strided_copy(n->params, n->in[0]->data, n->out[0]->data, esize(n->in[0]),
               n->out[0]->numel);
  return ADV_OK;
}

/* ---------- Concat ---------- */

typedef struct concat_params {
  int axis;
  int64_t outer, inner_out;
} concat_params;

static int concat_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int ax = adv__axis(adv__attr_int(n->m, "axis", p->opset < 4 ? 1 : 0), x->ndim);
  if (ax < 0)
    return adv__error(err, ADV_EFORMAT, "axis out of range");
  int64_t d[ADV_MAX_DIMS];
  memcpy(d, x->dims, sizeof(d));
  d[ax] = 0;
  for (int i = 0; i < n->n_in; i++) {
    adv_tensor *t = n->in[i];
    if (!t || t->dtype != x->dtype || t->ndim != x->ndim)
      return adv__error(err, ADV_ESHAPE, "input %d: dtype or rank differs", i);
    for (int k = 0; k < x->ndim; k++)
      if (k != ax && t->dims[k] != x->dims[k])
        return adv__error(err, ADV_ESHAPE, "input %d: dim %d differs", i, k);
    d[ax] += t->dims[ax];
  }
  concat_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  cp->axis = ax;
  cp->outer = 1;
  for (int k = 0; k < ax; k++)
    cp->outer *= d[k];
  cp->inner_out = 1;
  for (int k = ax; k < x->ndim; k++)
    cp->inner_out *= d[k];
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, d);
}

static int concat_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const concat_params *cp = n->params;
  size_t es = esize(n->out[0]);
  char *y = n->out[0]->data;
  int64_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    const adv_tensor *t = n->in[i];
    int64_t chunk = cp->outer ? t->numel / cp->outer : 0;
    for (int64_t o = 0; o < cp->outer; o++)
      memcpy(y + (size_t)(o * cp->inner_out + off) * es,
             (const char *)t->data + (size_t)(o * chunk) * es, (size_t)chunk * es);
    off += chunk;
  }
  return ADV_OK;
}

/* ---------- Shape ---------- */

typedef struct range_params {
  int64_t start, end;
} range_params;

static int shape_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  int r = n->in[0]->ndim;
  int64_t s = adv__attr_int(n->m, "start", 0), e = adv__attr_int(n->m, "end", r);
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = s < 0 ? 0 : s > r ? r : s;
  e = e < 0 ? 0 : e > r ? r : e;
  if (e < s)
    e = s;
  range_params *rp = adv__arena_alloc(&p->arena, sizeof(*rp));
  if (!rp)
    return ADV_ENOMEM;
  rp->start = s;
  rp->end = e;
  n->params = rp;
  int64_t d[1] = {e - s};
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, 1, d);
}

static int shape_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const range_params *rp = n->params;
  int64_t *y = n->out[0]->data;
  for (int64_t i = rp->start; i < rp->end; i++)
    y[i - rp->start] = n->in[0]->dims[i];
  return ADV_OK;
}

/* ---------- Gather ---------- */

typedef struct gather_params {
  int64_t outer, axis_len, inner;
} gather_params;

static int gather_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int rc = check_io(n, 2, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0], *ind = n->in[1];
  if (!ind || ind->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE, "indices must be integers");
  int ax = adv__axis(adv__attr_int(n->m, "axis", 0), x->ndim);
  if (ax < 0)
    return adv__error(err, ADV_EFORMAT, "axis out of range");
  if (x->ndim - 1 + ind->ndim > ADV_MAX_DIMS)
    return adv__error(err, ADV_ELIMIT, "result rank too large");
  gather_params *gp = adv__arena_alloc(&p->arena, sizeof(*gp));
  if (!gp)
    return ADV_ENOMEM;
  int64_t d[ADV_MAX_DIMS];
  int nd = 0;
  gp->outer = 1;
  gp->inner = 1;
  for (int i = 0; i < ax; i++) {
    d[nd++] = x->dims[i];
    gp->outer *= x->dims[i];
  }
  for (int i = 0; i < ind->ndim; i++)
    d[nd++] = ind->dims[i];
  for (int i = ax + 1; i < x->ndim; i++) {
    d[nd++] = x->dims[i];
    gp->inner *= x->dims[i];
  }
  gp->axis_len = x->dims[ax];
  n->params = gp;
  if (!ind->is_const)
    n->bw_extra = ADV_BW_IN(1);
  return adv__tensor_set_shape(n->out[0], x->dtype, nd, d);
}

static int gather_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const gather_params *gp = n->params;
  const adv_tensor *ind = n->in[1];
  const int64_t *iv = ind->data;
  size_t es = esize(n->in[0]);
  const char *x = n->in[0]->data;
  char *y = n->out[0]->data;
  for (int64_t o = 0; o < gp->outer; o++)
    for (int64_t k = 0; k < ind->numel; k++) {
      int64_t j = iv[k];
      if (j < 0)
        j += gp->axis_len;
      if (j < 0 || j >= gp->axis_len)
        return ADV_EINVAL; /* index out of range */
      memcpy(y + (size_t)((o * ind->numel + k) * gp->inner) * es,
             x + (size_t)((o * gp->axis_len + j) * gp->inner) * es,
             (size_t)gp->inner * es);
    }
  return ADV_OK;
}

/* ---------- Slice ---------- */

static int slice_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int64_t starts[ADV_MAX_DIMS], ends[ADV_MAX_DIMS], axes[ADV_MAX_DIMS],
      steps[ADV_MAX_DIMS];
  int ns, ne, na = -1, nst = -1;
  if (p->opset >= 10) {
    if (n->n_in < 3 || !n->in[1] || !n->in[2])
      return adv__error(err, ADV_EFORMAT, "starts and ends required");
    ns = adv__const_ints(n->in[1], starts, ADV_MAX_DIMS);
    ne = adv__const_ints(n->in[2], ends, ADV_MAX_DIMS);
    if (n->n_in > 3 && n->in[3])
      na = adv__const_ints(n->in[3], axes, ADV_MAX_DIMS);
    if (n->n_in > 4 && n->in[4])
      nst = adv__const_ints(n->in[4], steps, ADV_MAX_DIMS);
    if (ns < 0 || ne < 0 || (n->n_in > 3 && n->in[3] && na < 0) ||
        (n->n_in > 4 && n->in[4] && nst < 0))
      return adv__error(err, ADV_EUNSUPPORTED, "slice parameters must be constant");
  } else {
    const int64_t *v;
    ns = adv__attr_ints(n->m, "starts", &v);
    if (ns < 0 || ns > ADV_MAX_DIMS)
      return adv__error(err, ADV_EFORMAT, "starts");
    memcpy(starts, v, sizeof(int64_t) * (size_t)ns);
    ne = adv__attr_ints(n->m, "ends", &v);
    if (ne < 0 || ne > ADV_MAX_DIMS)
      return adv__error(err, ADV_EFORMAT, "ends");
    memcpy(ends, v, sizeof(int64_t) * (size_t)ne);
    na = adv__attr_ints(n->m, "axes", &v);
    if (na > ADV_MAX_DIMS)
      return adv__error(err, ADV_EFORMAT, "axes");
    if (na > 0)
      memcpy(axes, v, sizeof(int64_t) * (size_t)na);
  }
  if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
    return adv__error(err, ADV_EFORMAT, "starts/ends/axes/steps lengths differ");
  int64_t lo[ADV_MAX_DIMS], st[ADV_MAX_DIMS], d[ADV_MAX_DIMS];
  int used[ADV_MAX_DIMS] = {0};
  for (int i = 0; i < x->ndim; i++) {
    lo[i] = 0;
    st[i] = 1;
    d[i] = x->dims[i];
  }
  for (int i = 0; i < ns; i++) {
    int a = adv__axis(na >= 0 ? axes[i] : i, x->ndim);
    if (a < 0 || used[a]++)
      return adv__error(err, ADV_EFORMAT, "bad or repeated axis");
    int64_t dim = x->dims[a], s = starts[i], e = ends[i];
    int64_t step = nst >= 0 ? steps[i] : 1;
    if (step == 0)
      return adv__error(err, ADV_EFORMAT, "step 0");
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
      s = s < 0 ? 0 : s > dim ? dim : s;
      e = e < 0 ? 0 : e > dim ? dim : e;
    } else {
      s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
      e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
    }
    int64_t len = step > 0 ? (e - s + step - 1) / step : (s - e + (-step) - 1) / (-step);
    if (len < 0)
      len = 0;
    lo[a] = s;
    st[a] = step;
    d[a] = len;
  }
  copy_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  int64_t xs[ADV_MAX_DIMS];
  contiguous_strides(x, xs);
  cp->nd = x->ndim;
  cp->ioff = 0;
  for (int i = 0; i < x->ndim; i++) {
    cp->odims[i] = d[i];
    cp->istr[i] = xs[i] * st[i];
    if (d[i] > 0)
      cp->ioff += lo[i] * xs[i];
  }
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], x->dtype, x->ndim, d);
}

/* ---------- Expand ---------- */

static int expand_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int rc = check_io(n, 2, err);
  if (rc)
    return rc;
  adv_tensor *x = n->in[0];
  int64_t shp[ADV_MAX_DIMS];
  int ns = adv__const_ints(n->in[1], shp, ADV_MAX_DIMS);
  if (ns < 0)
    return adv__error(err, ADV_EUNSUPPORTED, "shape must be constant");
  adv_tensor tmp;
  memset(&tmp, 0, sizeof(tmp));
  tmp.ndim = ns;
  memcpy(tmp.dims, shp, sizeof(int64_t) * (size_t)ns);
  int64_t d[ADV_MAX_DIMS];
  int nd;
  if ((rc = adv__broadcast_shape(x, &tmp, &nd, d)))
    return adv__error(err, rc, "shape does not broadcast");
  copy_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  int64_t xs[ADV_MAX_DIMS];
  contiguous_strides(x, xs);
  cp->nd = nd;
  for (int i = 0; i < nd; i++) {
    int ix = i - (nd - x->ndim);
    cp->odims[i] = d[i];
    cp->istr[i] = (ix < 0 || x->dims[ix] == 1) ? 0 : xs[ix];
  }
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], x->dtype, nd, d);
}

/* ---------- Cast ---------- */

static int cast_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  int64_t to = adv__attr_int(n->m, "to", 0);
  adv_dtype dt;
  switch (to) {
  case 1: case 10: case 11: case 16: dt = ADV_DTYPE_F32; break;
  case 2: case 3: case 4: case 5: case 6: case 7: case 9: case 12: case 13:
    dt = ADV_DTYPE_I64; break;
  case 17:
  case 18:
  case 19:
  case 20:
    return adv__error(err, ADV_EUNSUPPORTED,
                      "Cast to a float8 type (%lld, opset 19) is not supported",
                      (long long)to);
  case 21:
  case 22:
    return adv__error(
        err, ADV_EUNSUPPORTED,
        "Cast to a 4-bit integer type (%lld, opset 21) is not supported",
        (long long)to);
  default:
    return adv__error(err, ADV_EUNSUPPORTED, "Cast to type %lld", (long long)to);
  }
  /* 1: to bool, 2: round to float16, 3: round to bfloat16 */
  n->params = (void *)(intptr_t)(to == 9 ? 1 : to == 10 ? 2 : to == 16 ? 3 : 0);
  adv_tensor *x = n->in[0];
  return adv__tensor_set_shape(n->out[0], dt, x->ndim, x->dims);
}

/* v rounded to the nearest float16 (ties to even, like numpy's
 * astype(float16)): overflow gives +-inf, NaN stays NaN. */
static float round_f16(float v) {
  if (v != v || isinf(v))
    return v;
  float a = fabsf(v);
  if (a >= 65520.f) /* halfway between 65504 and 2^16 and above */
    return copysignf(INFINITY, v);
  int e;
  frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
  /* 11 significant bits for normals (e >= -13), fixed 2^-24 below */
  int q = e - 11 < -24 ? -24 : e - 11;
  return copysignf(ldexpf(nearbyintf(ldexpf(a, -q)), q), v);
}

/* v rounded to the nearest bfloat16 (ties to even); NaN stays NaN. */
static float round_bf16(float v) {
  if (v != v)
    return v;
  uint32_t b;
  memcpy(&b, &v, 4);
  b = (uint32_t)(((uint64_t)b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u);
  memcpy(&v, &b, 4);
  return v;
}

static int cast_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const adv_tensor *x = n->in[0];
  adv_tensor *y = n->out[0];
  int mode = (int)(intptr_t)n->params, to_bool = mode == 1;
  for (int64_t i = 0; i < x->numel; i++) {
    if (x->dtype != ADV_DTYPE_I64) { /* F32, or a weight kept as stored */
      float v = x->dtype == ADV_DTYPE_F32 ? ((const float *)x->data)[i]
                                          : adv__elem_f32(x, i);
      if (y->dtype == ADV_DTYPE_F32)
        ((float *)y->data)[i] = mode == 2   ? round_f16(v)
                                : mode == 3 ? round_bf16(v)
                                            : v;
      else
        ((int64_t *)y->data)[i] = to_bool ? v != 0.f
                                  : (v != v || v >= 9.2e18f || v <= -9.2e18f) ? 0 : (int64_t)v;
    } else {
      int64_t v = ((const int64_t *)x->data)[i];
      if (y->dtype == ADV_DTYPE_F32)
        ((float *)y->data)[i] = mode == 2   ? round_f16((float)v)
                                : mode == 3 ? round_bf16((float)v)
                                            : (float)v;
      else
        ((int64_t *)y->data)[i] = to_bool ? v != 0 : v;
    }
  }
  return ADV_OK;
}

/* ---------- Constant / ConstantOfShape ---------- */

static int constant_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  if (n->n_out != 1 || !n->out[0] || n->n_in != 0)
    return adv__error(err, ADV_EFORMAT, "Constant takes no input, 1 output");
  const adv_attr *a = NULL;
  const char *names[] = {"value", "value_float", "value_floats", "value_int",
                         "value_ints"};
  for (int i = 0; i < 5 && !a; i++)
    a = adv__attr_get(n->m, names[i]);
  if (!a)
    return adv__error(err, ADV_EUNSUPPORTED, "Constant without a numeric value");
  n->params = (void *)a;
  int64_t d[1];
  switch (a->type) {
  case ADV_ATTR_TENSOR:
    if (!a->t)
      return adv__error(err, ADV_EFORMAT, "empty tensor");
    return adv__tensor_set_shape(n->out[0], a->t->dtype, a->t->ndim, a->t->dims);
  case ADV_ATTR_FLOAT:
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 0, d);
  case ADV_ATTR_INT:
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, 0, d);
  case ADV_ATTR_FLOATS:
    d[0] = a->n;
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 1, d);
  case ADV_ATTR_INTS:
    d[0] = a->n;
    return adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, 1, d);
  default:
    return adv__error(err, ADV_EUNSUPPORTED, "Constant of attribute type %d",
                     a->type);
  }
}

static int constant_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const adv_attr *a = n->params;
  adv_tensor *y = n->out[0];
  switch (a->type) {
  case ADV_ATTR_TENSOR:
    memcpy(y->data, a->t->data, (size_t)a->t->numel * adv_dtype_size(a->t->dtype));
    break;
  case ADV_ATTR_FLOAT: *(float *)y->data = a->f; break;
  case ADV_ATTR_INT: *(int64_t *)y->data = a->i; break;
  case ADV_ATTR_FLOATS: memcpy(y->data, a->floats, sizeof(float) * (size_t)a->n); break;
  case ADV_ATTR_INTS: memcpy(y->data, a->ints, sizeof(int64_t) * (size_t)a->n); break;
  default: return ADV_EINTERNAL;
  }
  return ADV_OK;
}

static int cos_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  (void)p;
  int rc = check_io(n, 1, err);
  if (rc)
    return rc;
  int64_t d[ADV_MAX_DIMS];
  int nd = adv__const_ints(n->in[0], d, ADV_MAX_DIMS);
  if (nd < 0)
    return adv__error(err, ADV_EUNSUPPORTED, "shape must be constant");
  const adv_attr *a = adv__attr_get(n->m, "value");
  adv_dtype dt = ADV_DTYPE_F32;
  if (a) {
    if (a->type != ADV_ATTR_TENSOR || !a->t || a->t->numel != 1)
      return adv__error(err, ADV_EFORMAT, "value must be a one-element tensor");
    dt = a->t->dtype;
  }
  n->params = (void *)a;
  return adv__tensor_set_shape(n->out[0], dt, nd, d);
}

static int cos_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const adv_attr *a = n->params;
  adv_tensor *y = n->out[0];
  size_t es = esize(y);
  for (int64_t i = 0; i < y->numel; i++) {
    if (a)
      memcpy((char *)y->data + (size_t)i * es, a->t->data, es);
    else
      ((float *)y->data)[i] = 0.f;
  }
  return ADV_OK;
}

/* ---------- backward ---------- */

/* Flatten/Reshape/Squeeze/Unsqueeze/Cast(float): same element order. */
static int copy_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  adv_tensor *x = n->in[0];
  const float *gy = n->out[0]->grad;
  if (!x->grad || !gy || x->dtype != ADV_DTYPE_F32)
    return ADV_OK;
  if (n->bw_assign & ADV_BW_IN(0)) {
    memcpy(x->grad, gy, (size_t)x->numel * sizeof(float));
    return ADV_OK;
  }
  for (int64_t i = 0; i < x->numel; i++)
    x->grad[i] += gy[i];
  return ADV_OK;
}

/* Transpose/Slice/Expand: gx[ioff + sum i_d*istr_d] += gy[i]; stride-0
 * dims (Expand) accumulate several outputs into one input. */
static int strided_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const copy_params *cp = n->params;
  float *gx = n->in[0]->grad;
  const float *gy = n->out[0]->grad;
  int64_t total = n->out[0]->numel;
  if (!gx || !gy || total == 0)
    return ADV_OK;
  if (cp->nd == 0) {
    gx[cp->ioff] += gy[0];
    return ADV_OK;
  }
  int64_t inner = cp->odims[cp->nd - 1], st = cp->istr[cp->nd - 1];
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t r = 0; r < total / inner; r++) {
    int64_t off = cp->ioff;
    for (int k = 0; k < cp->nd - 1; k++)
      off += idx[k] * cp->istr[k];
    const float *g = gy + r * inner;
    for (int64_t j = 0; j < inner; j++)
      gx[off + j * st] += g[j];
    for (int k = cp->nd - 2; k >= 0 && ++idx[k] == cp->odims[k]; k--)
      idx[k] = 0;
  }
  return ADV_OK;
}

/* Concat: each input takes back its slice of dy. */
static int concat_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const concat_params *cp = n->params;
  const float *gy = n->out[0]->grad;
  if (!gy || n->out[0]->dtype != ADV_DTYPE_F32)
    return ADV_OK;
  int64_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    adv_tensor *t = n->in[i];
    int64_t chunk = cp->outer ? t->numel / cp->outer : 0;
    if (t->grad)
      for (int64_t o = 0; o < cp->outer; o++) {
        const float *g = gy + o * cp->inner_out + off;
        float *d = t->grad + o * chunk;
        for (int64_t j = 0; j < chunk; j++)
          d[j] += g[j];
      }
    off += chunk;
  }
  return ADV_OK;
}

/* Gather: scatter-add dy rows back to the gathered positions. */
static int gather_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const gather_params *gp = n->params;
  float *gx = n->in[0]->grad;
  const float *gy = n->out[0]->grad;
  const adv_tensor *ind = n->in[1];
  if (!gx || !gy)
    return ADV_OK;
  const int64_t *iv = ind->data;
  for (int64_t o = 0; o < gp->outer; o++)
    for (int64_t k = 0; k < ind->numel; k++) {
      int64_t j = iv[k] < 0 ? iv[k] + gp->axis_len : iv[k];
      if (j < 0 || j >= gp->axis_len)
        return ADV_EINVAL;
      const float *g = gy + (o * ind->numel + k) * gp->inner;
      float *d = gx + (o * gp->axis_len + j) * gp->inner;
      for (int64_t q = 0; q < gp->inner; q++)
        d[q] += g[q];
    }
  return ADV_OK;
}

const adv_op_def adv__op_flatten = {"Flatten", flatten_infer, copy_forward, copy_backward, 0, 0};
const adv_op_def adv__op_reshape = {"Reshape", reshape_infer, copy_forward, copy_backward, 0, 0};
const adv_op_def adv__op_squeeze = {"Squeeze", squeeze_infer, copy_forward, copy_backward, 0, 0};
const adv_op_def adv__op_unsqueeze = {"Unsqueeze", unsqueeze_infer, copy_forward, copy_backward, 0, 0};
const adv_op_def adv__op_transpose = {"Transpose", transpose_infer, strided_forward, strided_backward, 0, 0};
const adv_op_def adv__op_slice = {"Slice", slice_infer, strided_forward, strided_backward, 0, 0};
const adv_op_def adv__op_expand = {"Expand", expand_infer, strided_forward, strided_backward, 0, 0};
const adv_op_def adv__op_concat = {"Concat", concat_infer, concat_forward, concat_backward, 0, 0};
const adv_op_def adv__op_shape = {"Shape", shape_infer, shape_forward, NULL, 0, 0};
const adv_op_def adv__op_gather = {"Gather", gather_infer, gather_forward, gather_backward, 0, 0};
/* Cast passes gradients only float -> float (copy_backward checks); it
 * reads weights kept as stored (uint8/int8/float16/bfloat16) directly. */
const adv_op_def adv__op_cast = {"Cast", cast_infer, cast_forward, copy_backward, 0, 0};
const adv_op_def adv__op_constant = {"Constant", constant_infer, constant_forward, NULL, 0, 0};
const adv_op_def adv__op_constantofshape = {"ConstantOfShape", cos_infer, cos_forward, NULL, 0, 0};
