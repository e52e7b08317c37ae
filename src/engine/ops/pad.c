/*
 * pad.c - Pad: constant, edge, reflect and (opset 19) wrap modes; negative
 * pads crop.
 * Opset < 11: pads/value attributes; opset >= 11: pads and constant_value
 * inputs (must be constant), optional axes input (opset 18).
 * Per dim a source-index map is built at plan time (-1 = constant fill),
 * so the run is a row loop.
 */
#include "core/engine.h"

#include <string.h>

typedef struct pad_params {
  int nd;
  int64_t odims[ADV_MAX_DIMS], idims[ADV_MAX_DIMS];
  int64_t *map[ADV_MAX_DIMS];
  float value;
  int64_t ivalue;
} pad_params;

static int pad_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || !n->in[0] || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT, "missing input or output");
  adv_tensor *x = n->in[0];
  int r = x->ndim;
  int64_t pads[2 * ADV_MAX_DIMS], all[2 * ADV_MAX_DIMS] = {0};
  int np;
  pad_params *pp = adv__arena_alloc(&p->arena, sizeof(*pp));
  if (!pp)
    return ADV_ENOMEM;
  const char *mode = adv__attr_str(n->m, "mode", "constant");
  if (p->opset < 11) {
    const int64_t *v;
    np = adv__attr_ints(n->m, p->opset < 2 ? "paddings" : "pads", &v);
    if (np < 0 || np > 2 * ADV_MAX_DIMS)
      return adv__error(err, ADV_EFORMAT, "pads attribute missing");
    memcpy(pads, v, sizeof(int64_t) * (size_t)np);
    pp->value = adv__attr_float(n->m, "value", 0.f);
  } else {
    if (n->n_in < 2 || !n->in[1])
      return adv__error(err, ADV_EFORMAT, "pads input missing");
    np = adv__const_ints(n->in[1], pads, 2 * ADV_MAX_DIMS);
    if (np < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "pads must be constant");
    if (n->n_in >= 3 && n->in[2]) {
      adv_tensor *cv = n->in[2];
      if (cv->numel != 1 || cv->dtype != x->dtype)
        return adv__error(err, ADV_EUNSUPPORTED, "constant_value must be a scalar of the input type");
      if (!cv->is_const)
        ; /* read at run time */
      else if (cv->dtype == ADV_DTYPE_F32)
        pp->value = *(float *)cv->data;
      else
        pp->ivalue = *(int64_t *)cv->data;
    }
  }
  int64_t axes[ADV_MAX_DIMS];
  int na = -1;
  if (n->n_in >= 4 && n->in[3]) {
    na = adv__const_ints(n->in[3], axes, ADV_MAX_DIMS);
    if (na < 0)
      return adv__error(err, ADV_EUNSUPPORTED, "axes must be constant");
  }
  if (na >= 0) {
    if (np != 2 * na)
      return adv__error(err, ADV_EFORMAT, "pads length != 2 * axes");
    for (int i = 0; i < na; i++) {
      int a = adv__axis(axes[i], r);
      if (a < 0)
        return adv__error(err, ADV_EFORMAT, "bad axis");
      all[a] = pads[i];
      all[a + r] = pads[i + na];
    }
  } else {
    if (np != 2 * r)
      return adv__error(err, ADV_EFORMAT, "pads length %d != 2 * rank %d", np, r);
    memcpy(all, pads, sizeof(int64_t) * (size_t)np);
  }
  int kind = !strcmp(mode, "constant")  ? 0
             : !strcmp(mode, "edge")    ? 1
             : !strcmp(mode, "reflect") ? 2
             : !strcmp(mode, "wrap")    ? 3
                                        : -1;
  if (kind < 0)
    return adv__error(err, ADV_EUNSUPPORTED, "Pad mode '%s' unsupported", mode);
  if (kind == 3 && p->opset < 19)
    return adv__error(err, ADV_EFORMAT, "Pad mode 'wrap' needs opset 19");
  pp->nd = r;
  for (int d = 0; d < r; d++) {
    int64_t lo = all[d], hi = all[d + r], in = x->dims[d];
    if (lo > 1 << 20 || hi > 1 << 20 || lo < -in || hi < -in)
      return adv__error(err, ADV_ELIMIT, "pad out of range");
    int64_t out = in + lo + hi;
    if (out < 0)
      return adv__error(err, ADV_ESHAPE, "negative output dim");
    if (kind == 2 && (lo >= in || hi >= in) && (lo > 0 || hi > 0))
      return adv__error(err, ADV_EUNSUPPORTED, "reflect pad larger than input");
    if (kind > 0 && in == 0 && out > 0)
      return adv__error(err, ADV_ESHAPE,
                        "edge/reflect/wrap pad of an empty dim");
    pp->idims[d] = in;
    pp->odims[d] = out;
    pp->map[d] = adv__arena_alloc(&p->arena, sizeof(int64_t) * (size_t)(out + 1));
    if (!pp->map[d])
      return ADV_ENOMEM;
    for (int64_t o = 0; o < out; o++) {
      int64_t i = o - lo;
      if (i < 0 || i >= in) {
        if (kind == 0)
          i = -1;
        else if (kind == 1)
          i = i < 0 ? 0 : in - 1;
        else if (kind == 2)
          i = i < 0 ? -i : 2 * (in - 1) - i;
        else /* wrap: numpy.pad(mode="wrap"), periodic */
          i = ((i % in) + in) % in;
      }
      pp->map[d][o] = i;
    }
  }
  n->params = pp;
  /* all pads zero: the output is the input (fuse.c drops the node) */
  int ident = n->n_out == 1;
  for (int d = 0; d < 2 * r; d++)
    ident &= all[d] == 0;
  n->is_identity = ident;
  return adv__tensor_set_shape(n->out[0], x->dtype, r, pp->odims);
}

static int pad_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  pad_params *pp = n->params;
  const adv_tensor *x = n->in[0];
  adv_tensor *y = n->out[0];
  if (n->n_in >= 3 && n->in[2] && !n->in[2]->is_const) {
    if (x->dtype == ADV_DTYPE_F32)
      pp->value = *(const float *)n->in[2]->data;
    else
      pp->ivalue = *(const int64_t *)n->in[2]->data;
  }
  size_t es = adv_dtype_size(x->dtype);
  int nd = pp->nd;
  if (nd == 0) {
    memcpy(y->data, x->data, es);
    return ADV_OK;
  }
  int64_t inner = pp->odims[nd - 1];
  int64_t rows = inner ? y->numel / inner : 0;
  int64_t istr[ADV_MAX_DIMS], s = 1;
  for (int d = nd - 1; d >= 0; d--) {
    istr[d] = s;
    s *= pp->idims[d];
  }
  const int64_t *im = pp->map[nd - 1];
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = 0;
    int fill = 0;
    for (int d = 0; d < nd - 1; d++) {
      int64_t i = pp->map[d][idx[d]];
      if (i < 0)
        fill = 1;
      off += i * istr[d];
    }
    if (x->dtype == ADV_DTYPE_F32) {
      float *yr = (float *)y->data + r * inner;
      const float *xr = (const float *)x->data + off;
      for (int64_t j = 0; j < inner; j++)
        yr[j] = (fill || im[j] < 0) ? pp->value : xr[im[j]];
    } else {
      int64_t *yr = (int64_t *)y->data + r * inner;
      const int64_t *xr = (const int64_t *)x->data + off;
      for (int64_t j = 0; j < inner; j++)
        yr[j] = (fill || im[j] < 0) ? pp->ivalue : xr[im[j]];
    }
    for (int d = nd - 2; d >= 0 && ++idx[d] == pp->odims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

/* Backward: every output element that came from input i (map >= 0) adds
 * its gradient to gx[i]; edge/reflect copies accumulate. */
static int pad_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const pad_params *pp = n->params;
  const adv_tensor *x = n->in[0];
  float *gx = x->grad;
  const float *gy = n->out[0]->grad;
  int nd = pp->nd;
  if (!gx || !gy)
    return ADV_OK;
  if (nd == 0) {
    gx[0] += gy[0];
    return ADV_OK;
  }
  int64_t inner = pp->odims[nd - 1];
  int64_t rows = inner ? n->out[0]->numel / inner : 0;
  int64_t istr[ADV_MAX_DIMS], s = 1;
  for (int d = nd - 1; d >= 0; d--) {
    istr[d] = s;
    s *= pp->idims[d];
  }
  const int64_t *im = pp->map[nd - 1];
  int64_t idx[ADV_MAX_DIMS] = {0};
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = 0;
    int fill = 0;
    for (int d = 0; d < nd - 1; d++) {
      int64_t i = pp->map[d][idx[d]];
      if (i < 0)
        fill = 1;
      off += i * istr[d];
    }
    if (!fill) {
      const float *g = gy + r * inner;
      for (int64_t j = 0; j < inner; j++)
        if (im[j] >= 0)
          gx[off + im[j]] += g[j];
    }
    for (int d = nd - 2; d >= 0 && ++idx[d] == pp->odims[d]; d--)
      idx[d] = 0;
  }
  return ADV_OK;
}

const adv_op_def adv__op_pad = {"Pad", pad_infer, pad_forward, pad_backward, 0, 0};
