/*
 * model_bind.c - adv_model_bind(): a single-input view of a model for the
 * attacks. The attacked input stays the one graph input; every other input
 * becomes a constant (a value given by the caller, or the initializer the
 * file already has, which the loader treats as a constant anyway); an
 * optional (x - mean) / std is prepended as Sub and Div nodes so attacks
 * work in pixel space while the model sees normalized input.
 *
 * The view copies the model struct, its value and node arrays and its
 * input list into its own arena and borrows everything else (names,
 * weights, attributes, node input/output lists) from the base model, which
 * must therefore outlive it. Prepended nodes come first, so the node order
 * stays topological; new values are appended, so every value index of the
 * base (outputs, the logits value) keeps its meaning.
 */
#include "core/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Index (in m->inputs) of the first F32 graph input, or -1. */
static int first_float_input(const adv_model *m) {
  for (int i = 0; i < m->n_inputs; i++)
    if (m->values[m->inputs[i]].dtype == ADV_DTYPE_F32)
      return i;
  return -1;
}

/* A model constant from a caller's array, converted to the declared dtype
 * of value v (F32 for float inputs, I64 for integer ones) and checked
 * against its declared fixed dims. */
static int make_const(adv_model *o, const adv_mvalue *v, const adv_array *a,
                      adv_const **out, adv_err *err) {
  if (!a || !a->data || a->ndim < 0 || a->ndim > ADV_MAX_DIMS)
    return adv__error(err, ADV_EINVAL, "model input '%s': no value", v->name);
  if (v->ndim >= 0) {
    int ok = v->ndim == a->ndim;
    for (int d = 0; ok && d < a->ndim; d++)
      ok = v->dims[d] < 0 || v->dims[d] == a->dims[d];
    if (!ok)
      return adv__error(err, ADV_ESHAPE,
                        "model input '%s': the given value's shape does not "
                        "match the declared one (rank %d vs %d)",
                        v->name, a->ndim, v->ndim);
  }
  int to_float = v->dtype == ADV_DTYPE_F32 || v->dtype == ADV_DTYPE_UNDEFINED;
  if (!to_float && v->dtype != ADV_DTYPE_I64)
    return adv__error(err, ADV_EDTYPE,
                      "model input '%s': only float and int64 inputs can be "
                      "given values",
                      v->name);
  adv_const *c = adv__arena_alloc(&o->arena, sizeof(*c));
  int64_t n = adv_array_numel(a);
  if (!c || n < 0 || (size_t)n * adv_dtype_size(a->dtype) != a->nbytes)
    return adv__error(err, c ? ADV_EINVAL : ADV_ENOMEM,
                      "model input '%s': bad value", v->name);
  c->dtype = to_float ? ADV_DTYPE_F32 : ADV_DTYPE_I64;
  c->ndim = a->ndim;
  memcpy(c->dims, a->dims, sizeof(c->dims));
  c->numel = n;
  c->data = adv__arena_alloc(&o->arena, (size_t)(n ? n : 1) * 8);
  if (!c->data)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++) {
    double x;
    switch (a->dtype) {
    case ADV_DTYPE_F32:
      x = ((const float *)a->data)[i];
      break;
    case ADV_DTYPE_F64:
      x = ((const double *)a->data)[i];
      break;
    case ADV_DTYPE_I64:
      x = (double)((const int64_t *)a->data)[i];
      break;
    case ADV_DTYPE_I32:
      x = ((const int32_t *)a->data)[i];
      break;
    case ADV_DTYPE_U8:
    case ADV_DTYPE_BOOL:
      x = ((const uint8_t *)a->data)[i];
      break;
    case ADV_DTYPE_I8:
      x = ((const int8_t *)a->data)[i];
      break;
    default:
      return adv__error(err, ADV_EDTYPE, "model input '%s': unknown dtype",
                        v->name);
    }
    if (to_float)
      ((float *)c->data)[i] = (float)x;
    else
      ((int64_t *)c->data)[i] = (int64_t)x;
  }
  *out = c;
  return ADV_OK;
}

/* Appends a value to the view (arrays sized by the caller). */
static int add_value(adv_model *o, const char *name, adv_dtype t, int ndim,
                     const int64_t *dims, adv_const *init) {
  adv_mvalue *v = &o->values[o->n_values];
  memset(v, 0, sizeof(*v));
  v->name = name;
  v->dtype = t;
  v->ndim = ndim;
  if (ndim > 0)
    memcpy(v->dims, dims, sizeof(int64_t) * (size_t)ndim);
  v->init = init;
  return o->n_values++;
}

/* A constant mean or std shaped to broadcast over input dims [N, C, ...]:
 * one value -> [1]; C values -> [C, 1, ...] (rank ndim - 1). */
static adv_const *norm_const(adv_model *o, const float *vals, int n, int ndim) {
  adv_const *c = adv__arena_alloc(&o->arena, sizeof(*c));
  float *d = adv__arena_alloc(&o->arena, sizeof(float) * (size_t)n);
  if (!c || !d)
    return NULL;
  memcpy(d, vals, sizeof(float) * (size_t)n);
  c->dtype = ADV_DTYPE_F32;
  c->ndim = n == 1 ? 1 : ndim - 1;
  for (int k = 0; k < c->ndim; k++)
    c->dims[k] = 1;
  c->dims[0] = n;
  c->numel = n;
  c->data = d;
  return c;
}

/* "name" + suffix in the view's arena, or NULL. */
static const char *suffixed(adv_model *o, const char *name, const char *suf) {
  size_t a = strlen(name), b = strlen(suf);
  char *s = adv__arena_alloc(&o->arena, a + b + 1);
  if (s) {
    memcpy(s, name, a);
    memcpy(s + a, suf, b + 1);
  }
  return s;
}

/* A two-input one-output node of the view. */
static int set_node(adv_model *o, adv_mnode *n, const char *op, int a, int b,
                    int out, adv_err *err) {
  memset(n, 0, sizeof(*n));
  n->name = op;
  n->op_type = op;
  n->op = adv__op_find(op);
  n->n_in = 2;
  n->n_out = 1;
  n->in = adv__arena_alloc(&o->arena, sizeof(int) * 2);
  n->out = adv__arena_alloc(&o->arena, sizeof(int));
  if (n->op < 0 || !n->in || !n->out)
    return adv__error(err, ADV_ENOMEM, "cannot prepend %s", op);
  n->in[0] = a;
  n->in[1] = b;
  n->out[0] = out;
  return ADV_OK;
}

/* Prepends (x - mean) / std in front of value xi (the graph input): a new
 * graph input takes xi's name, xi becomes the Div's output. */
static int prepend_norm(adv_model *o, int xi, const adv_model_bind_params *p,
                        adv_err *err) {
  adv_mvalue *x = &o->values[xi];
  int C = x->ndim >= 2 ? (int)x->dims[1] : -1;
  if (p->n_norm != 1 && p->n_norm != C)
    return adv__error(err, ADV_ESHAPE,
                      "mean/std: %d values for input '%s' with %d channels "
                      "(dim 1); give 1 or one per channel",
                      p->n_norm, x->name, C);
  for (int i = 0; i < p->n_norm; i++)
    if (!(p->std[i] > 0) || !(p->mean[i] == p->mean[i]))
      return adv__error(err, ADV_EINVAL, "std: values must be > 0");
  adv_const *mc = norm_const(o, p->mean, p->n_norm, x->ndim);
  adv_const *sc = norm_const(o, p->std, p->n_norm, x->ndim);
  const char *nname = suffixed(o, x->name, ":normalized");
  const char *cname = suffixed(o, x->name, ":centered");
  const char *mname = suffixed(o, x->name, ":mean");
  const char *sname = suffixed(o, x->name, ":std");
  if (!mc || !sc || !nname || !cname || !mname || !sname)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  int pi = add_value(o, x->name, ADV_DTYPE_F32, x->ndim, x->dims, NULL);
  o->values[pi].is_graph_input = true;
  int mi = add_value(o, mname, ADV_DTYPE_F32, mc->ndim, mc->dims, mc);
  int si = add_value(o, sname, ADV_DTYPE_F32, sc->ndim, sc->dims, sc);
  int ci = add_value(o, cname, ADV_DTYPE_F32, x->ndim, x->dims, NULL);
  o->values[ci].ndim = -1;
  x = &o->values[xi];
  x->name = nname;
  x->is_graph_input = false;
  o->inputs[0] = pi;
  /* nodes[0..1] were left free by adv_model_bind */
  int rc = set_node(o, &o->nodes[0], "Sub", pi, mi, ci, err);
  if (!rc)
    rc = set_node(o, &o->nodes[1], "Div", ci, si, xi, err);
  return rc;
}

/* Output 0 (N x 1: a binary classifier's one logit, or the probability a
 * final Sigmoid makes of it) becomes two classes [0, s], s the logit:
 * softmax([0, s]) = [1 - sigmoid(s), sigmoid(s)]. Appends Sub(s, s) (zeros
 * with s's shape and no gradient) and Concat(axis 1) after the base nodes,
 * in the two node slots adv_model_bind left at the end. */
static int binary_head(adv_model *o, adv_err *err) {
  int ov = o->outputs[0], sv = ov;
  for (int i = 0; i < o->n_nodes - 2; i++) {
    const adv_mnode *n = &o->nodes[i];
    if (n->n_out >= 1 && n->out[0] == ov && n->n_in == 1 &&
        !strcmp(n->op_type, "Sigmoid"))
      sv = n->in[0];
  }
  const char *name = o->values[ov].name;
  const char *zname = suffixed(o, name, ":zero");
  const char *tname = suffixed(o, name, ":two_class");
  int *outs = adv__arena_alloc(&o->arena, sizeof(int) * (size_t)o->n_outputs);
  adv_attr *axis = adv__arena_alloc(&o->arena, sizeof(adv_attr));
  if (!zname || !tname || !outs || !axis)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  int64_t d2[2] = {-1, 2};
  int zi = add_value(o, zname, ADV_DTYPE_F32, -1, NULL, NULL);
  int ti = add_value(o, tname, ADV_DTYPE_F32, 2, d2, NULL);
  memcpy(outs, o->outputs, sizeof(int) * (size_t)o->n_outputs);
  outs[0] = ti;
  o->outputs = outs;
  o->values[ov].is_graph_output = false;
  for (int k = 1; k < o->n_outputs; k++)
    o->values[outs[k]].is_graph_output |= outs[k] == ov;
  o->values[ti].is_graph_output = true;
  o->prob_output = 0; /* a Softmax bypass would not apply any more */
  o->logits_value = -1;
  adv_mnode *z = &o->nodes[o->n_nodes - 2], *c = &o->nodes[o->n_nodes - 1];
  int rc = set_node(o, z, "Sub", sv, sv, zi, err);
  if (!rc)
    rc = set_node(o, c, "Concat", zi, sv, ti, err);
  if (rc)
    return rc;
  axis->name = "axis";
  axis->type = ADV_ATTR_INT;
  axis->i = 1;
  c->n_attr = 1;
  c->attr = axis;
  return ADV_OK;
}

int adv_model_binary_output(const adv_model *m) {
  if (!m || m->n_outputs < 1)
    return 0;
  int ov = m->outputs[0];
  const adv_mvalue *v = &m->values[ov];
  if (v->ndim != 2 || v->dims[1] != 1)
    return 0;
  for (int i = 0; i < m->n_nodes; i++) /* made by a Sigmoid */
    if (m->nodes[i].n_out >= 1 && m->nodes[i].out[0] == ov)
      return !strcmp(m->nodes[i].op_type, "Sigmoid");
  return 0;
}

/* "'a', 'b', ..." of the n values idx[] of m into names (256 bytes,
 * truncated), "none" when n is 0; returns names. */
static const char *list_names(const adv_model *m, const int *idx, int n,
                              char names[256]) {
  size_t u = 0;
  snprintf(names, 256, "none");
  for (int i = 0; i < n && u + 1 < 256; i++) {
    int w = snprintf(names + u, 256 - u, "%s'%s'", i ? ", " : "",
                     m->values[idx[i]].name);
    u += w > 0 ? (size_t)w : 0;
  }
  return names;
}

/* The view's only output becomes the base output named `name` (as it is:
 * no Softmax bypass, no logits value). */
static int pick_output(adv_model *o, const char *name, adv_err *err) {
  int at = -1;
  for (int i = 0; i < o->n_outputs && at < 0; i++)
    if (!strcmp(o->values[o->outputs[i]].name, name))
      at = i;
  if (at < 0) {
    char names[256];
    return adv__error(err, ADV_EINVAL,
                      "output: the model has no output '%s' (its outputs: %s)",
                      name, list_names(o, o->outputs, o->n_outputs, names));
  }
  int *outs = adv__arena_alloc(&o->arena, sizeof(int));
  if (!outs)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  outs[0] = o->outputs[at];
  for (int i = 0; i < o->n_outputs; i++)
    o->values[o->outputs[i]].is_graph_output = i == at;
  o->outputs = outs;
  o->n_outputs = 1;
  o->prob_output = 0;
  o->logits_value = -1;
  return ADV_OK;
}

int adv_model_bind(const adv_model *base, const adv_model_bind_params *p,
                   adv_model **out, adv_err *err) {
  *out = NULL;
  if (!base || !p || (p->n_values && (!p->names || !p->values)) ||
      p->n_norm < 0 || (p->n_norm && (!p->mean || !p->std)))
    return adv__error(err, ADV_EINVAL, "model and bind parameters required");
  int at = -1;
  if (p->input && p->input[0]) {
    for (int i = 0; i < base->n_inputs && at < 0; i++)
      if (!strcmp(base->values[base->inputs[i]].name, p->input))
        at = i;
    if (at < 0) {
      char names[256];
      return adv__error(err, ADV_EINVAL,
                        "input: the model has no input '%s' (its inputs: %s)",
                        p->input,
                        list_names(base, base->inputs, base->n_inputs, names));
    }
  } else if ((at = first_float_input(base)) < 0) {
    return adv__error(err, ADV_EUNSUPPORTED, "the model has no float input");
  }
  adv_model *o = malloc(sizeof(*o));
  if (!o)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  *o = *base; /* borrows names, weights, attributes, subgraphs */
  adv__arena_init(&o->arena, 0);
  int extra_v = (p->n_norm ? 4 : 0) + (p->binary ? 2 : 0);
  int extra_n = p->n_norm ? 2 : 0, tail_n = p->binary ? 2 : 0;
  o->values = adv__arena_alloc(
      &o->arena, sizeof(adv_mvalue) * (size_t)(base->n_values + extra_v));
  o->nodes = adv__arena_alloc(&o->arena,
                              sizeof(adv_mnode) *
                                  (size_t)(base->n_nodes + extra_n + tail_n));
  o->inputs = adv__arena_alloc(&o->arena, sizeof(int));
  int rc = ADV_OK;
  if (!o->values || !o->nodes || !o->inputs) {
    rc = adv__error(err, ADV_ENOMEM, "out of memory");
    goto fail;
  }
  memcpy(o->values, base->values, sizeof(adv_mvalue) * (size_t)base->n_values);
  memcpy(o->nodes + extra_n, base->nodes,
         sizeof(adv_mnode) * (size_t)base->n_nodes);
  o->n_nodes = base->n_nodes + extra_n + tail_n;
  o->n_inputs = 1;
  o->inputs[0] = base->inputs[at];
  for (int i = 0; i < base->n_inputs; i++) {
    if (i == at)
      continue;
    adv_mvalue *v = &o->values[base->inputs[i]];
    int k = -1;
    for (int j = 0; j < p->n_values && k < 0; j++)
      if (p->names[j] && !strcmp(p->names[j], v->name))
        k = j;
    if (k < 0) {
      rc = adv__error(err, ADV_EINVAL,
                      "model input '%s' has no value: give it as the data "
                      "NPZ's member '%s' (or the model an initializer)",
                      v->name, v->name);
      goto fail;
    }
    if ((rc = make_const(o, v, &p->values[k], &v->init, err)))
      goto fail;
    v->is_graph_input = false;
    v->dtype = v->init->dtype;
    v->ndim = v->init->ndim;
    memcpy(v->dims, v->init->dims, sizeof(v->dims));
  }
  if (p->n_norm && (rc = prepend_norm(o, o->inputs[0], p, err)))
    goto fail;
  if (p->binary && (rc = binary_head(o, err)))
    goto fail;
  if (p->output && p->output[0] && (rc = pick_output(o, p->output, err)))
    goto fail;
  *out = o;
  return ADV_OK;
fail:
  adv__arena_free(&o->arena);
  free(o);
  return rc;
}
