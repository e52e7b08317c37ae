/*
 * plan.c - sessions: shape resolution, constant folding, memory planning
 * and execution.
 *
 * adv_session_init():
 *   1. prunes nodes that do not contribute to the requested outputs;
 *   2. gives every graph input a concrete shape (batch for a symbolic first
 *      dim, or the caller's bindings; integer inputs bound as constants);
 *   3. walks the nodes in topological order calling each op's infer(); a
 *      node whose inputs are all known at plan time (or a Shape node) is
 *      executed right away and its outputs become constants - this folds
 *      the shape arithmetic that exporters emit;
 *   4. assigns every runtime tensor an offset in one activation arena so
 *      that tensors with overlapping lifetimes never share bytes (greedy,
 *      largest first), and sizes the per-thread scratch area.
 * adv_session_run() then only copies inputs in, calls forward() for each
 * runtime node and copies outputs out: no allocation on the hot path.
 */
#include "core/engine.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <xmmintrin.h>
#include <stdlib.h>
#include <string.h>

struct adv_session {
  adv_plan p;
};

adv_session_params adv_session_default_params(void) {
  adv_session_params p;
  memset(&p, 0, sizeof(p));
  p.threads = 1;
  return p;
}

static int fold_always(const adv_pnode *n) {
  const char *name = adv__ops[n->op]->name;
  return !strcmp(name, "Shape") || !strcmp(name, "Size");
}

/* Inputs read as stored (see engine.h): the integer inputs of the
 * quantized ops (data and zero points; scales and int32 biases are wide)
 * and Cast's input. */
static const struct {
  const char *op;
  unsigned in;
} stored_inputs[] = {
    {"Cast", 1u << 0},
    {"DequantizeLinear", 1u << 0 | 1u << 2}, /* x, x_zero_point */
    {"QuantizeLinear", 1u << 2},             /* y_zero_point */
    {"MatMulInteger", 0xfu},                 /* a, b, zero points */
    {"ConvInteger", 0xfu},                   /* x, w, zero points */
    {"QLinearMatMul", 1u << 0 | 1u << 2 | 1u << 3 | 1u << 5 | 1u << 7},
    {"QLinearConv", 1u << 0 | 1u << 2 | 1u << 3 | 1u << 5 | 1u << 7},
};

unsigned adv__op_stored_inputs(const char *name) {
  for (size_t i = 0; i < sizeof(stored_inputs) / sizeof(stored_inputs[0]); i++)
    if (!strcmp(name, stored_inputs[i].op))
      return stored_inputs[i].in;
  return 0;
}

/* 1 when folding model node mn gives the same result in every session of
 * model m: a DequantizeLinear or Cast (the float weight of a stored one)
 * outside If branches whose inputs are all the loader's initializers. */
static int folds_shared(const adv_model *m, const adv_mnode *mn) {
  if (mn->n_out != 1 || mn->out[0] < 0 || mn->out[0] >= m->n_folded ||
      !m->folded || mn->n_guard ||
      (strcmp(mn->op_type, "DequantizeLinear") && strcmp(mn->op_type, "Cast")))
    return 0;
  for (int k = 0; k < mn->n_in; k++)
    if (mn->in[k] >= 0 &&
        (!m->values[mn->in[k]].init || !m->values[mn->in[k]].init->owner))
      return 0;
  return 1;
}

/* Releases the stored bytes of n's inputs (adv_const.own_data) that no
 * node of the model needs any more: every reader is a fold already in the
 * model's fold cache, and the value is no graph output. Under the weights
 * lock. */
static void release_folded_inputs(const adv_model *m, const adv_mnode *mn) {
  for (int k = 0; k < mn->n_in; k++) {
    int v = mn->in[k];
    adv_const *c = v >= 0 ? m->values[v].init : NULL;
    if (!c || !c->own_data || !c->data || m->values[v].is_graph_output)
      continue;
    int unread = 1;
    for (int j = 0; j < m->n_nodes && unread; j++)
      for (int q = 0; q < m->nodes[j].n_in && unread; q++)
        if (m->nodes[j].in[q] == v)
          unread = folds_shared(m, &m->nodes[j]) &&
                   m->folded[m->nodes[j].out[0]] != NULL;
    if (unread) {
      adv__big_free(c->data, (size_t)c->numel * adv_dtype_size(c->dtype));
      c->data = NULL;
    }
  }
}

/* Folds node n (folds_shared) into the model's fold cache, or takes the
 * result an earlier session put there. Under the weights lock, so that no
 * session reads stored weights while another releases them. 0 or an error
 * status. */
static int fold_into_model(adv_plan *p, adv_pnode *n) {
  const adv_model *m = p->model;
  adv_tensor *t = n->out[0];
  int vi = n->m->out[0], rc = ADV_OK;
  adv__weights_lock();
  void *d = m->folded[vi];
  if (!d) {
    size_t bytes = (size_t)t->numel * adv_dtype_size(t->dtype);
    if (!(d = malloc(bytes ? bytes : 1))) {
      rc = ADV_ENOMEM;
    } else {
      t->data = d;
      if ((rc = adv__ops[n->op]->forward(p, n))) {
        free(d);
        d = NULL;
      } else {
        m->folded[vi] = d;
        release_folded_inputs(m, n->m);
      }
    }
  }
  adv__weights_unlock();
  t->data = d;
  t->is_const = d != NULL;
  return rc;
}

/* Widens n's constant inputs held in a storage dtype that its op does not
 * read as stored (adv__op_stored_inputs): the generic fallback, so that
 * only those ops see U8/I8/F16/BF16 tensors. 0 or ADV_ENOMEM. */
static int widen_inputs(adv_plan *p, adv_pnode *n) {
  unsigned ok = adv__op_stored_inputs(adv__ops[n->op]->name);
  for (int k = 0; k < n->n_in && k < 16; k++)
    if (n->in[k] && !(ok & (1u << k)) && adv__tensor_widen(p, n->in[k]))
      return ADV_ENOMEM;
  return ADV_OK;
}

/* Converts a caller array into a constant tensor allocated in the plan. */
static int bind_const(adv_plan *p, adv_tensor *t, const adv_array *a,
                      adv_err *err) {
  adv_dtype dt = (a->dtype == ADV_DTYPE_F32 || a->dtype == ADV_DTYPE_F64)
                     ? ADV_DTYPE_F32
                     : ADV_DTYPE_I64;
  int rc = adv__tensor_set_shape(t, dt, a->ndim, a->dims);
  if (rc)
    return adv__error(err, rc, "bad bound shape");
  t->data = adv__arena_alloc(&p->arena, (size_t)t->numel * 8);
  if (!t->data)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  for (int64_t i = 0; i < t->numel; i++) {
    double v = 0;
    int64_t iv = 0;
    switch (a->dtype) {
    case ADV_DTYPE_F32: v = ((const float *)a->data)[i]; iv = (int64_t)v; break;
    case ADV_DTYPE_F64: v = ((const double *)a->data)[i]; iv = (int64_t)v; break;
    case ADV_DTYPE_I64: iv = ((const int64_t *)a->data)[i]; v = (double)iv; break;
    case ADV_DTYPE_I32: iv = ((const int32_t *)a->data)[i]; v = (double)iv; break;
    case ADV_DTYPE_U8: case ADV_DTYPE_BOOL: iv = ((const uint8_t *)a->data)[i]; v = (double)iv; break;
    case ADV_DTYPE_I8: iv = ((const int8_t *)a->data)[i]; v = (double)iv; break;
    default: return adv__error(err, ADV_EDTYPE, "bad bound dtype");
    }
    if (dt == ADV_DTYPE_F32)
      ((float *)t->data)[i] = (float)v;
    else
      ((int64_t *)t->data)[i] = iv;
  }
  t->is_const = true;
  return ADV_OK;
}

/* Shape of graph input vi: binding, else model dims with batch for a
 * symbolic first dim. */
static int setup_input(adv_plan *p, int vi, adv_session_params sp,
                       adv_err *err) {
  const adv_mvalue *v = &p->model->values[vi];
  adv_tensor *t = &p->tensors[vi];
  for (int b = 0; b < sp.n_bindings; b++) {
    const adv_binding *bd = &sp.bindings[b];
    if (!bd->name || strcmp(bd->name, v->name))
      continue;
    if (!bd->value)
      return adv__error(err, ADV_EINVAL, "binding '%s' has no value", v->name);
    if (bd->as_constant)
      return bind_const(p, t, bd->value, err);
    if (bd->value->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_EDTYPE,
                       "runtime input '%s' must be float32 (bind integer "
                       "inputs as constants)", v->name);
    int rc = adv__tensor_set_shape(t, ADV_DTYPE_F32, bd->value->ndim,
                                   bd->value->dims);
    if (rc)
      return adv__error(err, rc, "bad shape for input '%s'", v->name);
    t->is_input = true;
    return ADV_OK;
  }
  if (v->ndim < 0)
    return adv__error(err, ADV_ESHAPE, "input '%s' has no declared shape",
                     v->name);
  if (v->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "input '%s' is not float32", v->name);
  int64_t dims[ADV_MAX_DIMS];
  for (int i = 0; i < v->ndim; i++) {
    dims[i] = v->dims[i];
    if (dims[i] < 0) {
      if (i == 0 && sp.batch > 0)
        dims[i] = sp.batch;
      else
        return adv__error(err, ADV_ESHAPE,
                         "input '%s' dim %d is symbolic ('%s'): give its size",
                         v->name, i, v->sym[i] ? v->sym[i] : "?");
    } else if (i == 0 && sp.batch > 0 && dims[0] != sp.batch) {
      return adv__error(err, ADV_ESHAPE,
                       "input '%s' has a fixed batch size %lld (asked %d)",
                       v->name, (long long)dims[0], sp.batch);
    }
  }
  int rc = adv__tensor_set_shape(t, ADV_DTYPE_F32, v->ndim, dims);
  if (rc)
    return adv__error(err, rc, "bad shape for input '%s'", v->name);
  t->is_input = true;
  return ADV_OK;
}

/* One block to place in the activation arena: live over [start, end]. */
typedef struct span {
  int start, end;
  size_t bytes;
  size_t *offset; /* result */
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->bytes != y->bytes)
    return x->bytes < y->bytes ? 1 : -1;
  return x->start - y->start;
}

static size_t round64(size_t n) { return n ? (n + 63) & ~(size_t)63 : 64; }

/* Greedy interval packing: each block (largest first) goes at the lowest
 * offset not overlapping a placed block with an intersecting lifetime.
 * Blocks are activations [def, last read] and, in grad sessions, gradient
 * buffers [first write, last read] on the same forward+backward timeline. */
static int plan_memory(adv_plan *p, adv_err *err) {
  int cap = 2 * p->n_tensors + 1, n = 0;
  span *sp = malloc(sizeof(span) * (size_t)cap);
  int *placed = malloc(sizeof(int) * (size_t)cap);
  if (!sp || !placed) {
    free(sp);
    free(placed);
    return adv__error(err, ADV_ENOMEM, "out of memory");
  }
  for (int i = 0; i < p->n_tensors; i++) {
    adv_tensor *t = &p->tensors[i];
    if (!t->is_const && t->needed) {
      t->bytes = round64((size_t)t->numel * adv_dtype_size(t->dtype));
      sp[n].start = t->def;
      sp[n].end = t->last_use > t->bw_last ? t->last_use : t->bw_last;
      sp[n].bytes = t->bytes;
      sp[n].offset = &t->offset;
      n++;
    }
    if (t->gbytes && !t->is_weight) {
      sp[n].start = t->g_first;
      sp[n].end = t->g_last;
      sp[n].bytes = t->gbytes;
      sp[n].offset = &t->goffset;
      n++;
    }
  }
  qsort(sp, (size_t)n, sizeof(span), cmp_span);
  size_t total = 0;
  int np = 0;
  for (int k = 0; k < n; k++) {
    size_t off = 0;
    for (int moved = 1; moved;) {
      moved = 0;
      for (int j = 0; j < np; j++) {
        const span *o = &sp[placed[j]];
        if (o->end < sp[k].start || sp[k].end < o->start)
          continue; /* lifetimes disjoint */
        if (off < *o->offset + o->bytes && *o->offset < off + sp[k].bytes) {
          off = *o->offset + o->bytes;
          moved = 1;
        }
      }
    }
    *sp[k].offset = off;
    placed[np++] = k;
    if (off + sp[k].bytes > total)
      total = off + sp[k].bytes;
  }
  free(sp);
  free(placed);
  p->arena_bytes = total;
  if (total > p->max_bytes)
    return adv__error(err, ADV_ELIMIT,
                      "the plan needs %zu bytes of activations and gradients, more "
                      "than the cap of %zu (session max_bytes; a smaller batch needs less)",
                      total, p->max_bytes);
  p->act = aligned_alloc(64, total ? total : 64);
  if (!p->act)
    return adv__error(err, ADV_ENOMEM, "cannot allocate %zu activation bytes",
                      total);
  for (int i = 0; i < p->n_tensors; i++) {
    adv_tensor *t = &p->tensors[i];
    if (!t->is_const && t->needed)
      t->data = p->act + t->offset;
    if (t->gbytes && !t->is_weight)
      t->grad = (float *)(p->act + t->goffset);
  }
  return ADV_OK;
}

/*
 * Plans the backward pass. Timeline: forward of run node r at time r,
 * backward of run node r at time 2R-1-r (R = runtime nodes), the loss seed
 * at time R. Marks which tensors carry gradients (depend on a runtime input,
 * or are float initializers when weight gradients are asked, and reach
 * output 0), which nodes run backward, how long activations must live for
 * their backward readers, and the lifetime of every gradient buffer.
 */
/*
 * Lets a gradient's only writer store instead of accumulate: for every
 * tensor with a gradient whose backward consumers are exactly one node
 * (reading it once) that can assign it (bw_can_assign), that node gets the
 * bw_assign bit and the buffer is no longer zeroed before it. Saves one
 * memset and one read of the buffer per such tensor. The loss output keeps
 * accumulating (its gradient is the seed). Weight gradients accumulate
 * across calls by contract and never qualify.
 */
static void plan_assign(adv_plan *p, adv_tensor *out0) {
  int R = p->n_run;
  for (int r = 0; r < R; r++)
    p->nodes[p->run[r]].bw_assign = 0;
  for (int i = 0; i < p->n_tensors; i++) {
    adv_tensor *t = &p->tensors[i];
    if (!t->gbytes || t->is_weight || t == out0 || t->g_zero_at < 0)
      continue;
    adv_pnode *only = NULL;
    int uses = 0, slot = -1;
    for (int r = 0; r < R && uses < 2; r++) {
      adv_pnode *n = &p->nodes[p->run[r]];
      if (!n->backward)
        continue;
      for (int k = 0; k < n->n_in; k++)
        if (n->in[k] == t) {
          uses++;
          only = n;
          slot = k;
        }
    }
    if (uses == 1 && slot < 16 && (only->bw_can_assign & ADV_BW_IN(slot))) {
      only->bw_assign |= ADV_BW_IN(slot);
      t->g_zero_at = -1;
    }
  }
}

static int plan_backward(adv_plan *p, size_t *scratch, adv_err *err) {
  const adv_model *m = p->model;
  int R = p->n_run;
  adv_tensor *out0 = &p->tensors[p->out_idx[0]];
  for (int i = 0; i < p->n_in; i++)
    p->tensors[p->in_idx[i]].req_grad = true;
  if (p->weight_grad) {
    p->weight_idx = calloc((size_t)p->n_tensors + 1, sizeof(int));
    if (!p->weight_idx)
      return adv__error(err, ADV_ENOMEM, "out of memory");
    for (int i = 0; i < p->n_tensors; i++)
      if (m->values[i].init && p->tensors[i].dtype == ADV_DTYPE_F32) {
        p->tensors[i].req_grad = true;
        p->tensors[i].is_weight = true;
      }
  }
  for (int r = 0; r < R; r++) {
    adv_pnode *n = &p->nodes[p->run[r]];
    bool any = false;
    for (int k = 0; k < n->n_in; k++)
      any |= n->in[k] && n->in[k]->req_grad;
    if (any)
      for (int k = 0; k < n->n_out; k++)
        if (n->out[k] && n->out[k]->dtype == ADV_DTYPE_F32)
          n->out[k]->req_grad = true;
  }
  if (!out0->req_grad || out0->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EINVAL, "output 0 does not depend on the input");
  /* reverse reachability from output 0 */
  char *flow = calloc((size_t)p->n_tensors + 1, 1);
  if (!flow)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  flow[p->out_idx[0]] = 1;
  for (int r = R - 1; r >= 0; r--) {
    adv_pnode *n = &p->nodes[p->run[r]];
    bool any = false;
    for (int k = 0; k < n->n_out; k++)
      if (n->out[k] && flow[n->out[k] - p->tensors])
        any = true;
    if (!any)
      continue;
    bool needs = false;
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] && n->in[k]->req_grad) {
        flow[n->in[k] - p->tensors] = 1;
        needs = true;
      }
    if (!needs)
      continue;
    if (!adv__ops[n->op]->backward) {
      free(flow);
      return adv__error(err, ADV_EUNSUPPORTED, "op %s has no gradient",
                        n->m->op_type);
    }
    n->backward = true;
    int tb = 2 * R - 1 - r;
    unsigned need = adv__ops[n->op]->bw_needs;
    if (p->weight_grad)
      need |= adv__ops[n->op]->bw_needs_wgrad;
    need |= n->bw_extra;
    for (int k = 0; k < n->n_in; k++)
      if ((need & ADV_BW_IN(k)) && n->in[k] && !n->in[k]->is_const) {
        n->in[k]->bw_keep = true;
        if (tb > n->in[k]->bw_last)
          n->in[k]->bw_last = tb;
      }
    for (int k = 0; k < n->n_out; k++)
      if ((need & ADV_BW_OUT(k)) && n->out[k]) {
        n->out[k]->bw_keep = true;
        if (tb > n->out[k]->bw_last)
          n->out[k]->bw_last = tb;
      }
    if (n->bw_scratch > *scratch)
      *scratch = n->bw_scratch;
  }
  /* gradient buffers and their lifetimes */
  for (int i = 0; i < p->n_tensors; i++) {
    adv_tensor *t = &p->tensors[i];
    t->g_zero_at = -1;
    if (!t->req_grad || !flow[i])
      continue;
    t->gbytes = round64((size_t)t->numel * sizeof(float));
    t->g_first = 2 * R;
    t->g_last = t->def >= 0 ? 2 * R - 1 - t->def : 2 * R;
  }
  for (int r = R - 1; r >= 0; r--) { /* consumers, latest first */
    adv_pnode *n = &p->nodes[p->run[r]];
    if (!n->backward)
      continue;
    for (int k = 0; k < n->n_in; k++) {
      adv_tensor *t = n->in[k];
      if (!t || !t->gbytes || t->g_zero_at >= 0 || t == out0)
        continue;
      t->g_zero_at = r;
      t->g_first = 2 * R - 1 - r;
    }
  }
  out0->g_first = R;
  out0->g_zero_at = -1;
  free(flow);
  plan_assign(p, out0);
  /* persistent weight gradients */
  if (p->weight_grad) {
    for (int i = 0; i < p->n_tensors; i++) {
      adv_tensor *t = &p->tensors[i];
      if (!t->is_weight || !t->gbytes)
        continue;
      t->grad = aligned_alloc(64, t->gbytes);
      if (!t->grad)
        return adv__error(err, ADV_ENOMEM, "out of memory");
      memset(t->grad, 0, t->gbytes);
      p->weight_idx[p->n_weights++] = i;
    }
  }
  return ADV_OK;
}

int adv_session_init(const adv_model *m, adv_session_params sp,
                     adv_session **out, adv_err *err) {
  *out = NULL;
  if (sp.threads < 1)
    sp.threads = 1;
  if (sp.threads > 256)
    sp.threads = 256;
  adv_session *s = calloc(1, sizeof(*s));
  if (!s)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  adv_plan *p = &s->p;
  p->model = m;
  p->opset = m->opset;
  p->threads = sp.threads;
  p->weight_grad = sp.weight_grad != 0;
  p->max_bytes = sp.max_bytes ? sp.max_bytes : ADV_SESSION_MAX_BYTES;
  p->grad = sp.grad != 0 || p->weight_grad;
  adv__arena_init(&p->arena, 0);
  int rc = ADV_OK;
  char *need_v = NULL, *need_n = NULL;
  adv_fuse_ctx *fc = NULL;
  p->n_tensors = m->n_values;
  p->tensors = calloc((size_t)(m->n_values ? m->n_values : 1), sizeof(adv_tensor));
  p->nodes = calloc((size_t)(m->n_nodes ? m->n_nodes : 1), sizeof(adv_pnode));
  p->run = calloc((size_t)(m->n_nodes ? m->n_nodes : 1), sizeof(int));
  need_v = calloc((size_t)m->n_values + 1, 1);
  need_n = calloc((size_t)m->n_nodes + 1, 1);
  if (!p->tensors || !p->nodes || !p->run || !need_v || !need_n) {
    rc = adv__error(err, ADV_ENOMEM, "out of memory");
    goto fail;
  }
  /* outputs (logits instead of a final Softmax when asked) */
  p->n_out = m->n_outputs > 16 ? 16 : m->n_outputs;
  for (int i = 0; i < p->n_out; i++)
    p->out_idx[i] = m->outputs[i];
  if (sp.logits && m->prob_output && m->logits_value >= 0)
    p->out_idx[0] = m->logits_value;
  /* 1. prune: walk nodes backwards from the outputs */
  for (int i = 0; i < p->n_out; i++)
    need_v[p->out_idx[i]] = 1;
  for (int i = m->n_nodes - 1; i >= 0; i--) {
    const adv_mnode *n = &m->nodes[i];
    for (int k = 0; k < n->n_out; k++)
      if (n->out[k] >= 0 && need_v[n->out[k]])
        need_n[i] = 1;
    if (need_n[i])
      for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0)
          need_v[n->in[k]] = 1;
  }
  /* 2. constants and inputs */
  for (int i = 0; i < m->n_values; i++) {
    const adv_mvalue *v = &m->values[i];
    adv_tensor *t = &p->tensors[i];
    t->def = -1;
    t->last_use = -1;
    if (v->init) {
      adv__tensor_set_shape(t, v->init->dtype, v->init->ndim, v->init->dims);
      t->data = v->init->data;
      t->is_const = true;
      const void *wide = NULL;
      if (adv__dtype_is_stored(t->dtype)) { /* shared: see adv_const */
        adv__weights_lock();
        t->data = v->init->data;
        wide = v->init->wide;
        adv__weights_unlock();
      }
      if (wide) { /* widened by an earlier session of the model */
        t->dtype = adv__dtype_wide(t->dtype);
        t->data = (void *)wide;
      }
    }
  }
  p->n_in = 0;
  for (int i = 0; i < m->n_inputs; i++) {
    int vi = m->inputs[i];
    if (!need_v[vi])
      continue;
    if ((rc = setup_input(p, vi, sp, err)))
      goto fail;
    if (p->tensors[vi].is_input) {
      if (p->n_in >= 16) {
        rc = adv__error(err, ADV_ELIMIT, "more than 16 runtime inputs");
        goto fail;
      }
      p->in_idx[p->n_in++] = vi;
    }
  }
  /* 3. infer + fold (with the rewrites of fuse.c) */
  p->n_nodes = m->n_nodes;
  size_t scratch = 0;
  fc = adv__fuse_ctx_new(p, need_n);
  if (!fc) {
    rc = adv__error(err, ADV_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < m->n_nodes; i++) {
    if (!need_n[i])
      continue;
    const adv_mnode *mn = &m->nodes[i];
    adv_pnode *n = &p->nodes[i];
    /* nodes of If branches: never planned when a constant condition
     * rules their branch out; guarded at run time when it is not known */
    int dead = 0, guarded = 0;
    for (int g = 0; g < mn->n_guard; g++) {
      const adv_tensor *c = &p->tensors[mn->guard[g] >> 1];
      if (!c->is_const || c->numel < 1)
        guarded = 1;
      else if (adv__if_branch(c) != (mn->guard[g] & 1))
        dead = 1;
    }
    if (dead) {
      need_n[i] = 0;
      continue;
    }
    n->m = mn;
    n->op = mn->op;
    n->n_in = mn->n_in;
    n->n_out = mn->n_out;
    int all_const = 1;
    for (int k = 0; k < mn->n_in; k++) {
      n->in[k] = mn->in[k] >= 0 ? &p->tensors[mn->in[k]] : NULL;
      if (n->in[k] && !n->in[k]->is_const)
        all_const = 0;
    }
    for (int k = 0; k < mn->n_out; k++)
      n->out[k] = mn->out[k] >= 0 ? &p->tensors[mn->out[k]] : NULL;
    if (widen_inputs(p, n)) {
      rc = adv__error(err, ADV_ENOMEM, "out of memory while widening weights");
      goto fail;
    }
    if (!all_const && !sp.no_rewrite && !strcmp(mn->op_type, "Conv") &&
        (rc = adv__fuse_conv(p, n, need_n, fc))) {
      rc = adv__error(err, rc, "out of memory");
      goto fail;
    }
    rc = adv__ops[n->op]->infer(p, n, err);
    if (rc) {
      if (err) { /* prefix the node for context */
        char tmp[sizeof(err->msg) + 128];
        snprintf(tmp, sizeof(tmp), "node '%.40s' (%.40s): %s", mn->name,
                 mn->op_type, err->msg);
        memcpy(err->msg, tmp, sizeof(err->msg) - 1);
        err->msg[sizeof(err->msg) - 1] = 0;
      }
      goto fail;
    }
    all_const = 1; /* infer may drop inputs (If with a constant condition) */
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] && !n->in[k]->is_const)
        all_const = 0;
    if (all_const && n->out[0] && !n->scratch && folds_shared(m, mn)) {
      if ((rc = fold_into_model(p, n))) {
        rc = adv__error(err, rc, "node '%s' (%s): folding failed", mn->name,
                        mn->op_type);
        goto fail;
      }
      n->runtime = false;
    } else if (all_const || fold_always(n)) {
      for (int k = 0; k < n->n_out; k++) {
        adv_tensor *t = n->out[k];
        if (!t)
          continue;
        t->data = adv__arena_alloc(&p->arena,
                                   (size_t)t->numel * adv_dtype_size(t->dtype));
        if (!t->data) {
          rc = adv__error(err, ADV_ENOMEM, "out of memory while folding");
          goto fail;
        }
        t->is_const = true;
      }
      size_t sc = n->scratch;
      if (sc) { /* temporary scratch for this one folded node */
        unsigned char *old = p->scratch;
        size_t oldpt = p->scratch_per_thread;
        p->scratch = aligned_alloc(64, ((sc + 63) & ~(size_t)63) * (size_t)p->threads);
        p->scratch_per_thread = (sc + 63) & ~(size_t)63;
        if (!p->scratch) {
          p->scratch = old;
          rc = adv__error(err, ADV_ENOMEM, "out of memory while folding");
          goto fail;
        }
        rc = adv__ops[n->op]->forward(p, n);
        free(p->scratch);
        p->scratch = old;
        p->scratch_per_thread = oldpt;
      } else {
        rc = adv__ops[n->op]->forward(p, n);
      }
      if (rc) {
        rc = adv__error(err, rc, "node '%s' (%s): folding failed", mn->name,
                       mn->op_type);
        goto fail;
      }
      n->runtime = false;
    } else {
      n->runtime = true; /* def/last_use/needed: adv__fuse_rewrite, below */
      n->guarded = guarded;
      p->run[p->n_run++] = i;
      if (n->scratch > scratch)
        scratch = n->scratch;
    }
  }
  if ((rc = adv__fuse_rewrite(p, !sp.no_rewrite, err)))
    goto fail;
  for (int i = 0; i < p->n_out; i++) {
    adv_tensor *t = &p->tensors[p->out_idx[i]];
    if (adv__tensor_widen(p, t)) { /* an initializer as a graph output */
      rc = adv__error(err, ADV_ENOMEM, "out of memory while widening weights");
      goto fail;
    }
    t->is_output = true;
    if (!t->is_const) {
      if (!t->is_input && t->def < 0) {
        rc = adv__error(err, ADV_EINTERNAL, "output '%s' has no producer",
                       m->values[p->out_idx[i]].name);
        goto fail;
      }
      t->needed = true;
      t->last_use = p->n_run;
    }
  }
  for (int i = 0; i < p->n_in; i++) {
    adv_tensor *t = &p->tensors[p->in_idx[i]];
    t->needed = true;
    t->def = -1;
    if (t->last_use < 0)
      t->last_use = 0;
  }
  /* 4. backward plan, memory */
  for (int i = 0; i < p->n_tensors; i++)
    p->tensors[i].bw_last = -1;
  if (p->grad && (rc = plan_backward(p, &scratch, err)))
    goto fail;
  if ((rc = plan_memory(p, err)))
    goto fail;
  p->scratch_per_thread = (scratch + 63) & ~(size_t)63;
  if (scratch && (p->scratch_per_thread > p->max_bytes / (size_t)p->threads ||
                  p->arena_bytes + p->scratch_per_thread * (size_t)p->threads > p->max_bytes)) {
    rc = adv__error(err, ADV_ELIMIT, "scratch of %zu bytes per thread exceeds the cap of %zu",
                    p->scratch_per_thread, p->max_bytes);
    goto fail;
  }
  if (scratch) {
    p->scratch = aligned_alloc(64, p->scratch_per_thread * (size_t)p->threads);
    if (!p->scratch) {
      rc = adv__error(err, ADV_ENOMEM, "cannot allocate scratch");
      goto fail;
    }
  }
  free(need_v);
  free(need_n);
  adv__fuse_ctx_free(fc);
  *out = s;
  return ADV_OK;
fail:
  free(need_v);
  free(need_n);
  adv__fuse_ctx_free(fc);
  adv_session_free(s);
  return rc;
}

int adv__plan_on_free(adv_plan *p, void (*fn)(void *), void *arg) {
  adv_cleanup *c = adv__arena_alloc(&p->arena, sizeof(*c));
  if (!c)
    return ADV_ENOMEM;
  c->fn = fn;
  c->arg = arg;
  c->next = p->cleanups;
  p->cleanups = c;
  return ADV_OK;
}

void adv_session_free(adv_session *s) {
  if (!s)
    return;
  adv_plan *p = &s->p;
  for (adv_cleanup *c = p->cleanups; c; c = c->next)
    c->fn(c->arg);
  for (int i = 0; i < p->n_weights; i++)
    free(p->tensors[p->weight_idx[i]].grad);
  free(p->weight_idx);
  free(p->tensors);
  free(p->nodes);
  free(p->run);
  free(p->act);
  free(p->scratch);
  adv__arena_free(&p->arena);
  free(s);
}

int adv_session_num_inputs(const adv_session *s) { return s->p.n_in; }
int adv_session_num_runtime_nodes(const adv_session *s) { return s->p.n_run; }
int adv_session_num_outputs(const adv_session *s) { return s->p.n_out; }

int adv_session_input_shape(const adv_session *s, int i,
                            int64_t dims[ADV_MAX_DIMS]) {
  if (i < 0 || i >= s->p.n_in)
    return ADV_EINVAL;
  const adv_tensor *t = &s->p.tensors[s->p.in_idx[i]];
  memcpy(dims, t->dims, sizeof(t->dims));
  return t->ndim;
}

int adv_session_output_shape(const adv_session *s, int i,
                             int64_t dims[ADV_MAX_DIMS]) {
  if (i < 0 || i >= s->p.n_out)
    return ADV_EINVAL;
  const adv_tensor *t = &s->p.tensors[s->p.out_idx[i]];
  memcpy(dims, t->dims, sizeof(t->dims));
  return t->ndim;
}

adv_dtype adv_session_output_dtype(const adv_session *s, int i) {
  if (i < 0 || i >= s->p.n_out)
    return ADV_DTYPE_UNDEFINED;
  return s->p.tensors[s->p.out_idx[i]].dtype;
}

size_t adv_session_arena_bytes(const adv_session *s) { return s->p.arena_bytes; }

/*
 * Denormals: backward passes of confident classifiers produce values below
 * 1.2e-38 (softmax probabilities of e^-60 times weights), and x86 handles
 * them ~100x slower. Sessions run with flush-to-zero and denormals-are-zero
 * (FTZ|DAZ) on the engine's threads; the caller's MXCSR is restored on
 * return, the OpenMP pool threads keep the setting (the team's threads take
 * the caller's MXCSR with each loop). Numerically this only
 * zeroes magnitudes below FLT_MIN.
 */
/* All parallelism is ours (the thread team of parallel.c, and OpenMP inside
 * oneDNN): OpenBLAS runs single-threaded. Set
 * once per process, because sessions may run concurrently (eval.c workers)
 * and the setting is global. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_set_one(void) { openblas_set_num_threads(1); }
static void blas_single_threaded(void) { pthread_once(&blas_once, blas_set_one); }

/* Entering a run: FTZ|DAZ on (the caller's MXCSR is returned for
 * run_leave), and the run's start for the load adaptation (parallel.c). */
static unsigned run_enter(adv_plan *p) {
  unsigned old = _mm_getcsr();
  if (!p->ftz_pool) { /* pool threads keep MXCSR: once per session */
#pragma omp parallel num_threads(p->threads)
    _mm_setcsr(_mm_getcsr() | 0x8040);
    p->ftz_pool = true;
  }
  _mm_setcsr(old | 0x8040);
  adv__run_mark(&p->stamp);
  return old;
}

/* Between two nodes of a run: a long run (a large batch) counts its time
 * so far, so that its next loops run on the thread count decided now. */
static void run_tick(adv_plan *p) {
  adv__run_tick(&p->stamp);
}

static void run_leave(adv_plan *p, unsigned old) {
  adv__run_observe(&p->stamp);
  _mm_setcsr(old);
}

static int session_run_inner(adv_session *s, const float *const *inputs,
                             void *const *outputs, const volatile int *abort_flag,
                             adv_err *err);

int adv_session_run(adv_session *s, const float *const *inputs,
                    void *const *outputs, const volatile int *abort_flag,
                    adv_err *err) {
  unsigned old = run_enter(&s->p);
  int rc = session_run_inner(s, inputs, outputs, abort_flag, err);
  run_leave(&s->p, old);
  return rc;
}

/* 1 when a guarded node's If branch is not taken in this run: some guard's
 * condition (computed earlier in the run; the If node reading it keeps it
 * alive past every node of its branches) selects the other branch. */
static int guard_fails(const adv_plan *p, const adv_pnode *n) {
  for (int g = 0; g < n->m->n_guard; g++) {
    const adv_tensor *c = &p->tensors[n->m->guard[g] >> 1];
    if (c->numel >= 1 && adv__if_branch(c) != (n->m->guard[g] & 1))
      return 1;
  }
  return 0;
}

static int session_run_inner(adv_session *s, const float *const *inputs,
                    void *const *outputs, const volatile int *abort_flag,
                    adv_err *err) {
  adv_plan *p = &s->p;
  blas_single_threaded();
  for (int i = 0; i < p->n_in; i++) {
    adv_tensor *t = &p->tensors[p->in_idx[i]];
    memcpy(t->data, inputs[i], (size_t)t->numel * sizeof(float));
  }
  for (int r = 0; r < p->n_run; r++) {
    run_tick(p);
    if (abort_flag && *abort_flag)
      return adv__error(err, ADV_EABORTED, "aborted");
    adv_pnode *n = &p->nodes[p->run[r]];
    if (n->guarded && (n->skipped = guard_fails(p, n)))
      continue;
    int rc = adv__ops[n->op]->forward(p, n);
    if (rc)
      return adv__error(err, rc, "node '%s' (%s) failed: %s", n->m->name,
                       n->m->op_type, adv_strerror(rc));
  }
  for (int i = 0; i < p->n_out; i++) {
    adv_tensor *t = &p->tensors[p->out_idx[i]];
    memcpy(outputs[i], t->data, (size_t)t->numel * adv_dtype_size(t->dtype));
  }
  p->n_forward++;
  return ADV_OK;
}

int adv_session_forward(adv_session *s, const float *x, float *logits,
                        adv_err *err) {
  if (s->p.n_in != 1 || s->p.n_out < 1)
    return adv__error(err, ADV_EINVAL, "model is not single-input");
  if (s->p.tensors[s->p.out_idx[0]].dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "output 0 is not float32");
  void *outs[16] = {logits};
  float *dummy[16] = {0};
  int rc = ADV_OK;
  for (int i = 1; i < s->p.n_out; i++) {
    const adv_tensor *t = &s->p.tensors[s->p.out_idx[i]];
    dummy[i] = malloc((size_t)t->numel * adv_dtype_size(t->dtype) + 1);
    if (!dummy[i])
      rc = adv__error(err, ADV_ENOMEM, "out of memory");
    outs[i] = dummy[i];
  }
  if (rc == ADV_OK)
    rc = adv_session_run(s, &x, outs, NULL, err);
  for (int i = 1; i < s->p.n_out; i++)
    free(dummy[i]);
  return rc;
}

/* ---------------- backward ---------------- */

static int backward_inner(adv_session *s, const float *dz, float *dx,
                          const volatile int *abort_flag, adv_err *err);

int adv_session_backward_dz(adv_session *s, const float *dz, float *dx,
                            const volatile int *abort_flag, adv_err *err) {
  unsigned old = run_enter(&s->p);
  int rc = backward_inner(s, dz, dx, abort_flag, err);
  run_leave(&s->p, old);
  return rc;
}

static int backward_inner(adv_session *s, const float *dz, float *dx,
                          const volatile int *abort_flag, adv_err *err) {
  adv_plan *p = &s->p;
  if (!p->grad)
    return adv__error(err, ADV_EINVAL, "session was not created with grad=1");
  if (p->n_forward == 0)
    return adv__error(err, ADV_EINVAL, "backward before any forward");
  adv_tensor *out0 = &p->tensors[p->out_idx[0]];
  if (dz != out0->grad)
    memcpy(out0->grad, dz, (size_t)out0->numel * sizeof(float));
  blas_single_threaded();
  for (int r = p->n_run - 1; r >= 0; r--) {
    adv_pnode *n = &p->nodes[p->run[r]];
    if (!n->backward)
      continue;
    run_tick(p);
    if (abort_flag && *abort_flag)
      return adv__error(err, ADV_EABORTED, "aborted");
    for (int k = 0; k < n->n_in; k++) {
      adv_tensor *t = n->in[k];
      if (t && t->grad && t->g_zero_at == r && !t->is_weight) {
        int dup = 0;
        for (int j = 0; j < k; j++)
          dup |= n->in[j] == t;
        if (!dup)
          memset(t->grad, 0, (size_t)t->numel * sizeof(float));
      }
    }
    if (n->skipped || (n->bw_assign && (!n->out[0] || !n->out[0]->grad))) {
      /* no upstream gradient (or an If branch not taken, whose outputs get
       * none): the op returns early, the store is a zero */
      for (int k = 0; k < n->n_in; k++)
        if ((n->bw_assign & ADV_BW_IN(k)) && n->in[k]->grad)
          memset(n->in[k]->grad, 0, (size_t)n->in[k]->numel * sizeof(float));
      continue;
    }
    int rc = adv__ops[n->op]->backward(p, n);
    if (rc)
      return adv__error(err, rc, "backward of node '%s' (%s) failed: %s",
                        n->m->name, n->m->op_type, adv_strerror(rc));
  }
  if (dx) {
    adv_tensor *x = &p->tensors[p->in_idx[0]];
    if (x->grad)
      memcpy(dx, x->grad, (size_t)x->numel * sizeof(float));
    else
      memset(dx, 0, (size_t)x->numel * sizeof(float));
  }
  p->n_backward++;
  return ADV_OK;
}

int adv_session_backward(adv_session *s, adv_loss_params lp, const int64_t *y,
                         const int64_t *target, float *loss, float *dx,
                         const volatile int *abort_flag, adv_err *err) {
  adv_plan *p = &s->p;
  if (!p->grad)
    return adv__error(err, ADV_EINVAL, "session was not created with grad=1");
  adv_tensor *out0 = &p->tensors[p->out_idx[0]];
  if (out0->ndim != 2)
    return adv__error(err, ADV_ESHAPE, "output 0 is not N x classes");
  int rc = adv_loss_eval(lp, out0->data, out0->dims[0], out0->dims[1], y,
                         target, loss, out0->grad, err);
  if (rc)
    return rc;
  return adv_session_backward_dz(s, out0->grad, dx, abort_flag, err);
}

int adv_session_grad(adv_session *s, const float *x, adv_loss_params lp,
                     const int64_t *y, const int64_t *target, float *logits,
                     float *loss, float *dx, adv_err *err) {
  adv_plan *p = &s->p;
  if (p->n_in != 1)
    return adv__error(err, ADV_EINVAL, "model is not single-input");
  void *outs[16] = {0};
  float *tmp[16] = {0};
  int rc = ADV_OK;
  for (int i = 0; i < p->n_out; i++) {
    const adv_tensor *t = &p->tensors[p->out_idx[i]];
    if (i == 0 && logits) {
      outs[0] = logits;
      continue;
    }
    tmp[i] = malloc((size_t)t->numel * adv_dtype_size(t->dtype) + 1);
    if (!tmp[i])
      rc = adv__error(err, ADV_ENOMEM, "out of memory");
    outs[i] = tmp[i];
  }
  if (rc == ADV_OK)
    rc = adv_session_run(s, &x, outs, NULL, err);
  for (int i = 0; i < p->n_out; i++)
    free(tmp[i]);
  if (rc)
    return rc;
  return adv_session_backward(s, lp, y, target, loss, dx, NULL, err);
}

const float *adv_session_weight_grad(const adv_session *s, const char *name,
                                     int64_t *numel) {
  const adv_plan *p = &s->p;
  for (int i = 0; i < p->n_weights; i++) {
    const adv_tensor *t = &p->tensors[p->weight_idx[i]];
    if (!strcmp(p->model->values[p->weight_idx[i]].name, name)) {
      if (numel)
        *numel = t->numel;
      return t->grad;
    }
  }
  return NULL;
}

void adv_session_zero_grad(adv_session *s) {
  adv_plan *p = &s->p;
  for (int i = 0; i < p->n_weights; i++) {
    adv_tensor *t = &p->tensors[p->weight_idx[i]];
    memset(t->grad, 0, (size_t)t->numel * sizeof(float));
  }
}

void adv_session_counters(const adv_session *s, int64_t *forwards,
                          int64_t *backwards) {
  if (forwards)
    *forwards = s->p.n_forward;
  if (backwards)
    *backwards = s->p.n_backward;
}
