/*
 * fuse.c - graph rewrites made while a session is planned. They change
 * how a model is computed, never what it computes (up to float rounding,
 * and the NaN note on the Relu/MaxPool swap):
 *
 *   at plan time, before a Conv is inferred (adv__fuse_conv):
 *     Conv -> BatchNormalization  the BN's per-channel affine is folded
 *                                 into a copy of the conv's constant
 *                                 weights and bias (not in weight-gradient
 *                                 sessions: the caller asked for dL/dW of
 *                                 the weights as stored);
 *     Conv [-> BN] -> Relu        the ReLU runs inside the conv (a oneDNN
 *                                 post-op or a pass over the freshly
 *                                 written rows); its backward masks dY in
 *                                 place. Skipped when the Relu feeds only a
 *                                 MaxPool: the swap below is cheaper.
 *   after all nodes are inferred (adv__fuse_rewrite):
 *     identity nodes (Pad with zero pads, Identity, inference Dropout) are
 *                                 dropped, their readers read the input;
 *     MaxPool(Relu(a)) -> Relu(MaxPool(a)).
 *
 * A node is absorbed only when the tensor between the two has exactly one
 * reader and is not a graph output, so nothing else can observe it.
 */
#include "core/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Model-level readers of value v among the nodes kept by pruning. */
struct adv_fuse_ctx {
  int *readers; /* count per value (outputs count as a reader) */
  int *reader;  /* last reading node per value */
};

adv_fuse_ctx *adv__fuse_ctx_new(const adv_plan *p, const char *need_n) {
  const adv_model *m = p->model;
  adv_fuse_ctx *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->readers = calloc((size_t)m->n_values + 1, sizeof(int));
  c->reader = calloc((size_t)m->n_values + 1, sizeof(int));
  if (!c->readers || !c->reader) {
    adv__fuse_ctx_free(c);
    return NULL;
  }
  for (int i = 0; i < m->n_nodes; i++) {
    if (!need_n[i])
      continue;
    for (int k = 0; k < m->nodes[i].n_in; k++) {
      int v = m->nodes[i].in[k];
      if (v >= 0) {
        c->readers[v]++;
        c->reader[v] = i;
      }
    }
  }
  for (int i = 0; i < p->n_out; i++)
    c->readers[p->out_idx[i]] += 2; /* never absorbed */
  return c;
}

void adv__fuse_ctx_free(adv_fuse_ctx *c) {
  if (!c)
    return;
  free(c->readers);
  free(c->reader);
  free(c);
}

/* The node reading value v when it is the only reader, else -1. */
static int only_reader(const adv_fuse_ctx *c, const char *need_n, int v) {
  if (v < 0 || c->readers[v] != 1 || !need_n[c->reader[v]])
    return -1;
  return c->reader[v];
}

static int mop_is(const adv_mnode *n, const char *name) {
  return n->op >= 0 && !strcmp(adv__ops[n->op]->name, name);
}

/* A fresh constant tensor in the plan arena (NULL on ENOMEM). */
static adv_tensor *const_tensor(adv_plan *p, int ndim, const int64_t *dims) {
  adv_tensor *t = adv__arena_alloc(&p->arena, sizeof(*t));
  if (!t || adv__tensor_set_shape(t, ADV_DTYPE_F32, ndim, dims))
    return NULL;
  t->data = adv__arena_alloc(&p->arena, (size_t)t->numel * sizeof(float));
  if (!t->data)
    return NULL;
  t->is_const = true;
  t->def = -1;
  t->last_use = -1;
  t->bw_last = -1;
  return t;
}

/*
 * Folds BatchNormalization node bn into conv node n: W'[m] = W[m]*s[m],
 * b'[m] = beta[m] + (b[m] - mean[m])*s[m], s = gamma/sqrt(var + eps),
 * computed in double. Returns 1 when folded, 0 when not applicable,
 * negative on ENOMEM.
 */
static int fold_bn(adv_plan *p, adv_pnode *n, const adv_mnode *bn) {
  adv_tensor *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
  if (!w || !w->is_const || w->dtype != ADV_DTYPE_F32 || w->ndim < 3 || w->numel < 1 ||
      (b && (!b->is_const || b->dtype != ADV_DTYPE_F32)))
    return 0;
  if (bn->n_in != 5 || adv__attr_int(bn, "training_mode", 0))
    return 0;
  for (int k = 1; k < bn->n_out; k++)
    if (bn->out[k] >= 0)
      return 0;
  int64_t M = w->dims[0];
  const float *prm[4];
  for (int k = 1; k < 5; k++) {
    adv_tensor *t = bn->in[k] >= 0 ? &p->tensors[bn->in[k]] : NULL;
    if (t && adv__tensor_widen(p, t)) /* float16 BatchNorm parameters */
      return ADV_ENOMEM;
    if (!t || !t->is_const || t->dtype != ADV_DTYPE_F32 || t->numel != M)
      return 0;
    prm[k - 1] = t->data;
  }
  if (b && b->numel != M)
    return 0;
  double eps = adv__attr_float(bn, "epsilon", 1e-5f);
  int64_t bd[1] = {M};
  adv_tensor *wf = const_tensor(p, w->ndim, w->dims), *bf = const_tensor(p, 1, bd);
  if (!wf || !bf)
    return ADV_ENOMEM;
  int64_t per = w->numel / M;
  const float *wd = w->data, *bdat = b ? b->data : NULL;
  float *wo = wf->data, *bo = bf->data;
  for (int64_t m = 0; m < M; m++) {
    double s = (double)prm[0][m] / sqrt((double)prm[3][m] + eps);
    for (int64_t j = 0; j < per; j++)
      wo[m * per + j] = (float)((double)wd[m * per + j] * s);
    bo[m] = (float)((double)prm[1][m] + ((bdat ? (double)bdat[m] : 0.0) - prm[2][m]) * s);
  }
  n->in[1] = wf;
  n->in[2] = bf;
  if (n->n_in < 3)
    n->n_in = 3;
  return 1;
}

int adv__fuse_conv(adv_plan *p, adv_pnode *n, char *need_n, const adv_fuse_ctx *c) {
  if (n->n_out != 1 || !n->out[0] || n->n_in < 2)
    return ADV_OK;
  const adv_model *m = p->model;
  int y = (int)(n->out[0] - p->tensors);
  int j = only_reader(c, need_n, y);
  if (j >= 0 && !p->weight_grad && mop_is(&m->nodes[j], "BatchNormalization") &&
      m->nodes[j].in[0] == y && m->nodes[j].out[0] >= 0) {
    int rc = fold_bn(p, n, &m->nodes[j]);
    if (rc < 0)
      return rc;
    if (rc == 1) {
      need_n[j] = 0;
      y = m->nodes[j].out[0];
      n->out[0] = &p->tensors[y];
    }
  }
  j = only_reader(c, need_n, y);
  if (j >= 0 && mop_is(&m->nodes[j], "Relu") && m->nodes[j].n_in == 1 &&
      m->nodes[j].n_out == 1 && m->nodes[j].out[0] >= 0) {
    int r = m->nodes[j].out[0];
    int k = only_reader(c, need_n, r);
    if (k >= 0 && mop_is(&m->nodes[k], "MaxPool"))
      return ADV_OK; /* Relu/MaxPool swap instead */
    need_n[j] = 0;
    n->out[0] = &p->tensors[r];
    n->fuse |= ADV_FUSE_RELU;
  }
  return ADV_OK;
}

/* Runtime position of the only runtime node reading t, or -1 when zero
 * or several nodes (or the same node twice) read it. */
static int sole_reader(const adv_plan *p, const adv_tensor *t) {
  int who = -1;
  for (int r = 0; r < p->n_run; r++) {
    const adv_pnode *n = &p->nodes[p->run[r]];
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] == t) {
        if (who >= 0)
          return -1;
        who = r;
      }
  }
  return who;
}

static int op_is(const adv_pnode *n, const char *name) {
  return !strcmp(adv__ops[n->op]->name, name);
}

/*
 * Graph rewrites on the planned runtime nodes, before lifetimes and memory
 * are assigned. Today one: MaxPool(Relu(a)) -> Relu(MaxPool(a)) when the
 * Relu's output feeds only that MaxPool and is not a graph output. Max is
 * monotone, so the values are equal (ties pick the same first element,
 * and a window with no positive element gets zero gradient either way);
 * the ReLU then runs on the pooled, 4x smaller tensor in both passes. The
 * one difference: a NaN in a window gives 0 where the original gave the
 * window's largest non-NaN (ReLU maps NaN to 0 before the pool). The
 * Relu's old output tensor is reused for the pooled values. Ops are
 * re-inferred for their new operands.
 */
static int rewrite_graph(adv_plan *p, adv_err *err) {
  /* identity nodes (zero Pad, Identity, inference Dropout): readers of the
   * output read the input instead, and the node leaves the run list */
  int w = 0;
  for (int r = 0; r < p->n_run; r++) {
    adv_pnode *n = &p->nodes[p->run[r]];
    adv_tensor *a = n->in[0], *b = n->out[0];
    int keep = !n->is_identity || !a || !b || a->is_const || a->dtype != b->dtype ||
               a->numel != b->numel;
    for (int i = 0; i < p->n_out && !keep; i++)
      keep = &p->tensors[p->out_idx[i]] == b;
    if (keep) {
      p->run[w++] = p->run[r];
      continue;
    }
    for (int q = r + 1; q < p->n_run; q++) {
      adv_pnode *c = &p->nodes[p->run[q]];
      for (int k = 0; k < c->n_in; k++)
        if (c->in[k] == b)
          c->in[k] = a;
    }
    n->runtime = false;
  }
  p->n_run = w;
  for (int rr = 0; rr < p->n_run; rr++) {
    adv_pnode *relu = &p->nodes[p->run[rr]];
    if (!op_is(relu, "Relu") || relu->n_in != 1 || relu->n_out != 1)
      continue;
    adv_tensor *a = relu->in[0], *b = relu->out[0];
    if (!a || !b || a->is_const || a->dtype != ADV_DTYPE_F32)
      continue;
    int is_out = 0;
    for (int i = 0; i < p->n_out; i++)
      is_out |= &p->tensors[p->out_idx[i]] == b;
    int rp = is_out ? -1 : sole_reader(p, b);
    if (rp <= rr)
      continue;
    adv_pnode *pool = &p->nodes[p->run[rp]];
    if (!op_is(pool, "MaxPool") || pool->n_in != 1 || pool->in[0] != b ||
        (pool->n_out > 1 && pool->out[1]) || !pool->out[0] || !pool->relu_commutes)
      continue; /* (a window all in the padding gives -inf, Relu'd to 0) */
    adv_tensor *c = pool->out[0];
    pool->in[0] = a;
    pool->out[0] = b;
    relu->in[0] = b;
    relu->out[0] = c;
    int rc = adv__ops[pool->op]->infer(p, pool, err);
    if (!rc)
      rc = adv__ops[relu->op]->infer(p, relu, err);
    if (rc) /* cannot happen for shapes that inferred before; err is set */
      return rc;
    if (pool->scratch > 0 || relu->scratch > 0)
      return adv__error(err, ADV_EINTERNAL, "Relu/MaxPool rewrite needs scratch");
    int t = p->run[rr];
    p->run[rr] = p->run[rp];
    p->run[rp] = t;
  }
  return ADV_OK;
}

int adv__fuse_rewrite(adv_plan *p, int rewrite, adv_err *err) {
  int rc = rewrite ? rewrite_graph(p, err) : ADV_OK;
  if (rc)
    return rc;
  /* lifetimes from the final order */
  for (int i = 0; i < p->n_tensors; i++) {
    adv_tensor *t = &p->tensors[i];
    if (!t->is_const) {
      t->def = -1;
      t->last_use = -1;
      t->needed = false;
    }
  }
  for (int r = 0; r < p->n_run; r++) {
    adv_pnode *n = &p->nodes[p->run[r]];
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] && !n->in[k]->is_const) {
        n->in[k]->last_use = r;
        n->in[k]->needed = true;
      }
    for (int k = 0; k < n->n_out; k++)
      if (n->out[k]) {
        n->out[k]->def = r;
        n->out[k]->last_use = r;
        n->out[k]->needed = true;
      }
  }
  return ADV_OK;
}

