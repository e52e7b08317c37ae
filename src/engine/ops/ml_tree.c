/*
 * ml_tree.c - ai.onnx.ml TreeEnsembleClassifier and TreeEnsembleRegressor
 * (domain version 1/3, as scikit-learn exports them): float32 input
 * [N, F] (or [F], one sample). Every node is a BRANCH_LEQ/LT/GTE/GT/EQ/NEQ
 * test of x[feature] against its value (a NaN feature follows the true
 * branch when nodes_missing_value_tracks_true is set, otherwise the false
 * one) or a LEAF. Each tree's leaf adds its weights to the per-class
 * (per-target) scores; then base_values and post_transform (NONE,
 * LOGISTIC, SOFTMAX).
 *
 * Classifier outputs: Y label int64 [N] (classlabels_int64s of the largest
 * score; string labels are refused) and Z scores float32 [N, C]. The
 * regressor's Y is float32 [N, n_targets] (aggregate_function SUM, AVERAGE,
 * MIN, MAX). The binary single-column classifier layout (one weight column
 * for two labels) is refused. No gradient: the ensembles are piecewise
 * constant, so only black-box attacks apply.
 */
#include "core/engine.h"
#include "ops/ml.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { M_LEAF, M_LEQ, M_LT, M_GTE, M_GT, M_EQ, M_NEQ };
enum { PT_NONE, PT_LOGISTIC, PT_SOFTMAX };
enum { AG_SUM, AG_AVG, AG_MIN, AG_MAX };

typedef struct tnode {
  int mode, nan_true;
  int64_t feat;
  float val;
  int t, f;   /* node indices of the true / false children */
  int w0, nw; /* leaf weights: wt[w0 .. w0 + nw) */
} tnode;

typedef struct tree_params {
  int n_nodes, n_trees, n_out, post, agg, is_clf;
  int64_t n_feat;
  tnode *nodes;
  int *roots;
  int *wcls; /* class/target of each leaf weight */
  float *wt;
  float *base; /* n_out base values (zeros when absent) */
  const int64_t *labels;
} tree_params;

/* One (tree, node) key with its position in the node arrays. */
typedef struct tkey {
  int64_t tree, node;
  int idx;
} tkey;

static int key_cmp(const void *a, const void *b) {
  const tkey *x = a, *y = b;
  if (x->tree != y->tree)
    return x->tree < y->tree ? -1 : 1;
  return x->node < y->node ? -1 : x->node > y->node;
}

/* Index of node (tree, node) in the sorted keys, or -1. */
static int key_find(const tkey *k, int n, int64_t tree, int64_t node) {
  tkey q = {tree, node, 0};
  const tkey *r = bsearch(&q, k, (size_t)n, sizeof(*k), key_cmp);
  return r ? r->idx : -1;
}

/* Float list attribute: element count, or -1 when absent. */
static int attr_floats(const adv_mnode *m, const char *name, const float **v) {
  const adv_attr *a = adv__attr_get(m, name);
  if (!a || a->type != ADV_ATTR_FLOATS)
    return -1;
  *v = a->floats;
  return a->n;
}

static int mode_of(const char *s) {
  static const char *const names[] = {"LEAF",       "BRANCH_LEQ", "BRANCH_LT",
                                      "BRANCH_GTE", "BRANCH_GT",  "BRANCH_EQ",
                                      "BRANCH_NEQ"};
  for (int i = 0; i < 7; i++)
    if (!strcmp(s, names[i]))
      return i;
  return -1;
}

/* post_transform code, or -1 when unsupported. Shared with ml_linear.c. */
int adv__ml_post_transform(const adv_mnode *m) {
  const char *s = adv__attr_str(m, "post_transform", "NONE");
  return !strcmp(s, "NONE")       ? PT_NONE
         : !strcmp(s, "LOGISTIC") ? PT_LOGISTIC
         : !strcmp(s, "SOFTMAX")  ? PT_SOFTMAX
                                  : -1;
}

/* Applies post_transform pt to one row of c scores in place. */
void adv__ml_apply_post(int pt, float *z, int c) {
  if (pt == PT_LOGISTIC) {
    for (int j = 0; j < c; j++)
      z[j] = 1.0f / (1.0f + expf(-z[j]));
  } else if (pt == PT_SOFTMAX) {
    float mx = z[0], s = 0;
    for (int j = 1; j < c; j++)
      mx = z[j] > mx ? z[j] : mx;
    for (int j = 0; j < c; j++)
      s += z[j] = expf(z[j] - mx);
    for (int j = 0; j < c; j++)
      z[j] /= s;
  }
}

/* Checks the input is float32 [N, F] or [F]; *rows = N, *feat = F. */
int adv__ml_input(const adv_tensor *x, int64_t *rows, int64_t *feat,
                  adv_err *err) {
  if (x->dtype != ADV_DTYPE_F32)
    return adv__error(err, ADV_EDTYPE, "input must be float32");
  if (x->ndim != 1 && x->ndim != 2)
    return adv__error(err, ADV_ESHAPE, "input must be [N, F] or [F]");
  *rows = x->ndim == 2 ? x->dims[0] : 1;
  *feat = x->dims[x->ndim - 1];
  return ADV_OK;
}

/* Output shapes of a classifier (label int64 [rows], scores float32
 * [rows, c], each when present) or regressor (Y float32 [rows, c]). */
int adv__ml_out_shapes(adv_pnode *n, int clf, int64_t rows, int c,
                       adv_err *err) {
  int64_t d[2] = {rows, c};
  int rc;
  if (!clf)
    return !n->out[0] ? adv__error(err, ADV_EFORMAT, "needs output Y")
                      : adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 2, d);
  if (n->out[0] && (rc = adv__tensor_set_shape(n->out[0], ADV_DTYPE_I64, 1, d)))
    return rc;
  if (n->n_out > 1 && n->out[1])
    return adv__tensor_set_shape(n->out[1], ADV_DTYPE_F32, 2, d);
  return ADV_OK;
}

/*
 * Reads the node arrays of m (prefix "nodes_") into tp->nodes, resolving
 * child node ids to indices; roots are each tree's first node. Arrays in
 * the plan arena.
 */
static int read_nodes(adv_plan *p, const adv_mnode *m, tree_params *tp,
                      tkey **keys_out, adv_err *err) {
  const int64_t *tid, *nid, *fid, *tt, *ff, *miss = NULL;
  const float *val;
  int n = adv__attr_ints(m, "nodes_treeids", &tid);
  const adv_attr *modes = adv__attr_get(m, "nodes_modes");
  if (n <= 0 || adv__attr_ints(m, "nodes_nodeids", &nid) != n ||
      adv__attr_ints(m, "nodes_featureids", &fid) != n ||
      adv__attr_ints(m, "nodes_truenodeids", &tt) != n ||
      adv__attr_ints(m, "nodes_falsenodeids", &ff) != n ||
      attr_floats(m, "nodes_values", &val) != n || !modes ||
      modes->type != ADV_ATTR_STRINGS || modes->n != n)
    return adv__error(err, ADV_EFORMAT, "inconsistent nodes_* attributes");
  int nm = adv__attr_ints(m, "nodes_missing_value_tracks_true", &miss);
  if (nm >= 0 && nm != n)
    return adv__error(err, ADV_EFORMAT,
                      "nodes_missing_value_tracks_true has wrong length");
  tkey *k = malloc(sizeof(*k) * (size_t)n);
  tp->nodes = adv__arena_alloc(&p->arena, sizeof(tnode) * (size_t)n);
  tp->roots = adv__arena_alloc(&p->arena, sizeof(int) * (size_t)n);
  if (!k || !tp->nodes || !tp->roots) {
    free(k);
    return ADV_ENOMEM;
  }
  tp->n_nodes = n;
  tp->n_trees = 0;
  for (int i = 0; i < n; i++) {
    k[i] = (tkey){tid[i], nid[i], i};
    if (i == 0 || tid[i] != tid[i - 1]) {
      int seen = 0;
      for (int j = 0; j < i && !seen; j++)
        seen = tid[j] == tid[i];
      if (!seen)
        tp->roots[tp->n_trees++] = i;
    }
  }
  qsort(k, (size_t)n, sizeof(*k), key_cmp);
  for (int i = 0; i + 1 < n; i++)
    if (!key_cmp(&k[i], &k[i + 1])) {
      free(k);
      return adv__error(err, ADV_EFORMAT, "duplicate tree node id");
    }
  tp->n_feat = 0;
  for (int i = 0; i < n; i++) {
    tnode *t = &tp->nodes[i];
    t->mode = mode_of(modes->strings[i]);
    if (t->mode < 0) {
      free(k);
      return adv__error(err, ADV_EUNSUPPORTED, "node mode %s unsupported",
                        modes->strings[i]);
    }
    t->feat = fid[i];
    t->val = val[i];
    t->nan_true = miss && miss[i];
    t->nw = 0;
    t->w0 = 0;
    if (t->mode == M_LEAF)
      continue;
    t->t = key_find(k, n, tid[i], tt[i]);
    t->f = key_find(k, n, tid[i], ff[i]);
    /* children must come later in a tree walk; a bad id or a self loop
     * would never end */
    if (t->t < 0 || t->f < 0 || t->t == i || t->f == i || fid[i] < 0) {
      free(k);
      return adv__error(err, ADV_EFORMAT, "bad child or feature of node %d", i);
    }
    if (fid[i] + 1 > tp->n_feat)
      tp->n_feat = fid[i] + 1;
  }
  /* every node reachable from a root has one parent and roots none: then
   * no walk can loop (a cycle reached from a root would give one of its
   * nodes a second parent, or its root a parent) */
  int *par = calloc((size_t)n, sizeof(int));
  int oom = !par, bad = oom;
  for (int i = 0; i < n && !bad; i++)
    if (tp->nodes[i].mode != M_LEAF) {
      par[tp->nodes[i].t]++;
      par[tp->nodes[i].f] += tp->nodes[i].f != tp->nodes[i].t;
    }
  for (int i = 0; i < n && !bad; i++)
    bad = par[i] > 1;
  for (int r = 0; r < tp->n_trees && !bad; r++)
    bad = par[tp->roots[r]] != 0;
  free(par);
  if (bad) {
    free(k);
    return !oom ? adv__error(err, ADV_EFORMAT,
                             "tree nodes do not form trees (shared child or "
                             "cycle)")
                : ADV_ENOMEM;
  }
  *keys_out = k;
  return ADV_OK;
}

/*
 * Attaches the leaf weights (prefix "class_" or "target_") to their leaves:
 * weights grouped per leaf in tp->wt/wcls. Fails on a weight pointing at a
 * missing node or an out-of-range class.
 */
static int read_weights(adv_plan *p, const adv_mnode *m, tree_params *tp,
                        const tkey *k, const char *pre, adv_err *err) {
  char a[4][32];
  snprintf(a[0], 32, "%streeids", pre);
  snprintf(a[1], 32, "%snodeids", pre);
  snprintf(a[2], 32, "%sids", pre);
  snprintf(a[3], 32, "%sweights", pre);
  const int64_t *tid, *nid, *cid;
  const float *w;
  int n = adv__attr_ints(m, a[0], &tid);
  if (n <= 0 || adv__attr_ints(m, a[1], &nid) != n ||
      adv__attr_ints(m, a[2], &cid) != n || attr_floats(m, a[3], &w) != n)
    return adv__error(err, ADV_EFORMAT, "inconsistent %s* attributes", pre);
  int *leaf = malloc(sizeof(int) * (size_t)n);
  tp->wt = adv__arena_alloc(&p->arena, sizeof(float) * (size_t)n);
  tp->wcls = adv__arena_alloc(&p->arena, sizeof(int) * (size_t)n);
  if (!leaf || !tp->wt || !tp->wcls) {
    free(leaf);
    return ADV_ENOMEM;
  }
  for (int i = 0; i < n; i++) {
    leaf[i] = key_find(k, tp->n_nodes, tid[i], nid[i]);
    if (leaf[i] < 0 || cid[i] < 0 || cid[i] >= tp->n_out) {
      free(leaf);
      return adv__error(err, ADV_EFORMAT, "weight %d: bad node or class", i);
    }
    tp->nodes[leaf[i]].nw++;
  }
  int off = 0;
  for (int i = 0; i < tp->n_nodes; i++) {
    tp->nodes[i].w0 = off;
    off += tp->nodes[i].nw;
    tp->nodes[i].nw = 0;
  }
  for (int i = 0; i < n; i++) {
    tnode *t = &tp->nodes[leaf[i]];
    tp->wt[t->w0 + t->nw] = w[i];
    tp->wcls[t->w0 + t->nw++] = (int)cid[i];
  }
  free(leaf);
  return ADV_OK;
}

/* Shape/attribute checks of both ensembles; builds the tree_params. */
static int tree_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  const adv_mnode *m = n->m;
  int clf = strstr(adv__ops[n->op]->name, "Classifier") != NULL;
  if (n->n_in != 1 || !n->in[0] || n->n_out < 1 || n->n_out > (clf ? 2 : 1))
    return adv__error(err, ADV_EFORMAT, "wrong number of inputs/outputs");
  int64_t rows, feat;
  int rc = adv__ml_input(n->in[0], &rows, &feat, err);
  if (rc)
    return rc;
  tree_params *tp = adv__arena_alloc(&p->arena, sizeof(*tp));
  if (!tp)
    return ADV_ENOMEM;
  tp->is_clf = clf;
  tp->post = adv__ml_post_transform(m);
  if (tp->post < 0)
    return adv__error(err, ADV_EUNSUPPORTED, "post_transform %s unsupported",
                      adv__attr_str(m, "post_transform", ""));
  tp->agg = AG_SUM;
  if (clf) {
    if (adv__attr_get(m, "classlabels_strings"))
      return adv__error(err, ADV_EUNSUPPORTED,
                        "string class labels unsupported");
    tp->n_out = adv__attr_ints(m, "classlabels_int64s", &tp->labels);
    if (tp->n_out <= 0)
      return adv__error(err, ADV_EFORMAT, "no classlabels_int64s");
  } else {
    tp->n_out = (int)adv__attr_int(m, "n_targets", 1);
    const char *ag = adv__attr_str(m, "aggregate_function", "SUM");
    tp->agg = !strcmp(ag, "SUM")       ? AG_SUM
              : !strcmp(ag, "AVERAGE") ? AG_AVG
              : !strcmp(ag, "MIN")     ? AG_MIN
              : !strcmp(ag, "MAX")     ? AG_MAX
                                       : -1;
    if (tp->agg < 0 || tp->n_out < 1 || tp->n_out > 1 << 20)
      return adv__error(err, ADV_EUNSUPPORTED,
                        "bad aggregate_function or n_targets");
  }
  tkey *k = NULL;
  rc = read_nodes(p, m, tp, &k, err);
  if (!rc)
    rc = read_weights(p, m, tp, k, clf ? "class_" : "target_", err);
  free(k);
  if (rc)
    return rc;
  if (clf && tp->n_out == 2) {
    int used1 = 0;
    for (int i = 0;
         i < tp->nodes[tp->n_nodes - 1].w0 + tp->nodes[tp->n_nodes - 1].nw; i++)
      used1 |= tp->wcls[i] == 1;
    if (!used1)
      return adv__error(err, ADV_EUNSUPPORTED,
                        "binary single-column tree classifier unsupported");
  }
  if (tp->n_feat > feat)
    return adv__error(err, ADV_ESHAPE, "feature %lld beyond input width %lld",
                      (long long)tp->n_feat - 1, (long long)feat);
  tp->n_feat = feat;
  tp->base = adv__arena_alloc(&p->arena, sizeof(float) * (size_t)tp->n_out);
  if (!tp->base)
    return ADV_ENOMEM;
  const float *bv;
  int nb = attr_floats(m, "base_values", &bv);
  if (nb > 0 && nb != tp->n_out)
    return adv__error(err, ADV_EFORMAT, "base_values has %d entries, not %d",
                      nb, tp->n_out);
  for (int j = 0; j < tp->n_out; j++)
    tp->base[j] = nb > 0 ? bv[j] : 0.0f;
  n->params = tp;
  return adv__ml_out_shapes(n, clf, rows, tp->n_out, err);
}

/* The leaf of the tree rooted at node r reached by sample x. */
static const tnode *walk(const tree_params *tp, int r, const float *x) {
  const tnode *t = &tp->nodes[r];
  /* read_nodes refused cycles; the bound is a second guard */
  for (int s = 0; t->mode != M_LEAF && s < tp->n_nodes; s++) {
    float v = x[t->feat];
    int go;
    if (isnan(v))
      go = t->nan_true;
    else
      switch (t->mode) {
      case M_LEQ:
        go = v <= t->val;
        break;
      case M_LT:
        go = v < t->val;
        break;
      case M_GTE:
        go = v >= t->val;
        break;
      case M_GT:
        go = v > t->val;
        break;
      case M_EQ:
        go = v == t->val;
        break;
      default:
        go = v != t->val;
        break;
      }
    t = &tp->nodes[go ? t->t : t->f];
  }
  return t;
}

static int tree_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const tree_params *tp = n->params;
  const float *x = n->in[0]->data;
  int64_t rows = n->in[0]->ndim == 2 ? n->in[0]->dims[0] : 1;
  int c = tp->n_out;
  adv_tensor *zt = tp->is_clf ? (n->n_out > 1 ? n->out[1] : NULL) : n->out[0];
  adv_tensor *lt = tp->is_clf ? n->out[0] : NULL;
  float *zbuf = malloc(sizeof(float) * (size_t)c);
  if (!zbuf)
    return ADV_ENOMEM;
  for (int64_t r = 0; r < rows; r++) {
    float *z = zt ? (float *)zt->data + r * c : zbuf;
    const float *xr = x + r * tp->n_feat;
    int init = tp->agg == AG_MIN || tp->agg == AG_MAX;
    for (int j = 0; j < c; j++)
      z[j] = 0;
    char *seen = init ? calloc((size_t)c, 1) : NULL;
    if (init && !seen) {
      free(zbuf);
      return ADV_ENOMEM;
    }
    for (int ti = 0; ti < tp->n_trees; ti++) {
      const tnode *l = walk(tp, tp->roots[ti], xr);
      for (int w = l->w0; w < l->w0 + l->nw; w++) {
        int j = tp->wcls[w];
        float v = tp->wt[w];
        if (tp->agg == AG_MIN)
          z[j] = seen[j] && z[j] < v ? z[j] : v;
        else if (tp->agg == AG_MAX)
          z[j] = seen[j] && z[j] > v ? z[j] : v;
        else
          z[j] += v;
        if (seen)
          seen[j] = 1;
      }
    }
    free(seen);
    for (int j = 0; j < c; j++) {
      if (tp->agg == AG_AVG)
        z[j] /= (float)tp->n_trees;
      z[j] += tp->base[j];
    }
    if (lt) {
      int best = 0;
      for (int j = 1; j < c; j++)
        best = z[j] > z[best] ? j : best;
      ((int64_t *)lt->data)[r] = tp->labels[best];
    }
    adv__ml_apply_post(tp->post, z, c);
  }
  free(zbuf);
  return ADV_OK;
}

const adv_op_def adv__op_ml_treeclf = {
    "ai.onnx.ml:TreeEnsembleClassifier", tree_infer, tree_forward, NULL, 0, 0};
const adv_op_def adv__op_ml_treereg = {
    "ai.onnx.ml:TreeEnsembleRegressor", tree_infer, tree_forward, NULL, 0, 0};
