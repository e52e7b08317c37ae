/*
 * einsum.c - Einsum (opset 12) on float32: any equation numpy accepts with
 * explicit ("ij,jk->ik") or implicit output, ellipsis ("...ij") with
 * broadcasting of size-1 ellipsis dims, repeated labels within an operand
 * (diagonals, "ii->i") and summed-out labels.
 *
 * Every label (and every ellipsis dim) gets one loop index; the op walks
 * all assignments of them: y[out labels] += prod_k x_k[labels of k]. This
 * general loop is O(product of all label sizes): right for the small
 * contractions exporters emit, not a GEMM (a transposes-plus-MatMul fast
 * path is not done).
 * Backward: dx_k[labels of k] += dy[out labels] * prod_{j != k} x_j[...],
 * over the same assignments (a repeated label puts the gradient on the
 * diagonal only, as it should).
 */
#include "core/engine.h"

#include <string.h>

#define EIN_LETTERS 52
#define EIN_MAXL (EIN_LETTERS + ADV_MAX_DIMS)
#define EIN_MAX_ITERS ((int64_t)1 << 32)

typedef struct ein_params {
  int nl;                   /* loop labels in use */
  int64_t size[EIN_MAXL];   /* extent of each loop label */
  int64_t st[16][EIN_MAXL]; /* element strides of input k per label */
  int64_t ost[EIN_MAXL];    /* output strides per label */
  int64_t iters;            /* product of all sizes */
} ein_params;

static int letter_id(char c) {
  if (c >= 'a' && c <= 'z')
    return c - 'a';
  if (c >= 'A' && c <= 'Z')
    return 26 + c - 'A';
  return -1;
}

/* Parses one operand term (up to ',' or '-' or the end) into label ids for
 * each of its rank dims; ellipsis dims get ids EIN_LETTERS + (E - e) + j
 * where e = rank - letters and E the widest ellipsis. Returns the
 * characters consumed or -1; *ell is set to the ellipsis width (-1 when the
 * term has none). */
static int parse_term(const char *s, int rank, int E, int *ids, int *ell,
                      int *nletters) {
  int n = 0, letters = 0, has_ell = 0, pos_ell = -1;
  int tmp[ADV_MAX_DIMS + 8];
  int i = 0;
  for (; s[i] && s[i] != ',' && s[i] != '-'; i++) {
    if (s[i] == ' ')
      continue;
    if (s[i] == '.') {
      if (has_ell || strncmp(s + i, "...", 3))
        return -1;
      has_ell = 1;
      pos_ell = letters;
      i += 2;
      continue;
    }
    int id = letter_id(s[i]);
    if (id < 0 || letters >= ADV_MAX_DIMS + 8)
      return -1;
    tmp[letters++] = id;
  }
  *nletters = letters;
  int e = has_ell && rank >= 0 ? rank - letters : 0;
  *ell = has_ell ? e : -1;
  if (rank >= 0 && (e < 0 || (!has_ell && letters != rank)))
    return -1;
  if (ids) {
    for (int j = 0; j < letters; j++) {
      if (j == pos_ell)
        for (int k = 0; k < e; k++)
          ids[n++] = EIN_LETTERS + (E - e) + k;
      ids[n++] = tmp[j];
    }
    if (pos_ell == letters)
      for (int k = 0; k < e; k++)
        ids[n++] = EIN_LETTERS + (E - e) + k;
  }
  return i;
}

static int ein_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  if (n->n_in < 1 || n->n_in > 16 || n->n_out != 1 || !n->out[0])
    return adv__error(err, ADV_EFORMAT,
                      "Einsum needs 1..16 inputs and 1 output");
  for (int k = 0; k < n->n_in; k++)
    if (!n->in[k] || n->in[k]->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_EDTYPE, "Einsum: float32 inputs required");
  const char *eq = adv__attr_str(n->m, "equation", NULL);
  if (!eq)
    return adv__error(err, ADV_EFORMAT, "Einsum: no equation");
  /* pass 1: ellipsis widths */
  int E = 0, ids[16][ADV_MAX_DIMS];
  const char *s = eq;
  for (int k = 0; k < n->n_in; k++) {
    int ell, nlet;
    int c = parse_term(s, n->in[k]->ndim, 0, NULL, &ell, &nlet);
    if (c < 0 || (k < n->n_in - 1 && s[c] != ',') ||
        (k == n->n_in - 1 && s[c] == ','))
      return adv__error(err, ADV_EFORMAT, "Einsum: bad equation '%s'", eq);
    if (ell > E)
      E = ell;
    s += c + (s[c] == ',');
  }
  ein_params *ep = adv__arena_alloc(&p->arena, sizeof(*ep));
  if (!ep)
    return ADV_ENOMEM;
  int count[EIN_MAXL] = {0};
  for (int l = 0; l < EIN_MAXL; l++)
    ep->size[l] = -1;
  /* pass 2: label ids, sizes and strides */
  s = eq;
  for (int k = 0; k < n->n_in; k++) {
    const adv_tensor *x = n->in[k];
    int ell, nlet;
    int c = parse_term(s, x->ndim, E, ids[k], &ell, &nlet);
    int64_t stride = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
      int l = ids[k][d];
      int64_t dim = x->dims[d];
      count[l]++;
      if (l < EIN_LETTERS) { /* a letter: every occurrence the same size */
        if (ep->size[l] >= 0 && ep->size[l] != dim)
          return adv__error(err, ADV_ESHAPE, "Einsum: label sizes disagree");
        ep->size[l] = dim;
        ep->st[k][l] += stride;
      } else if (dim == 1) { /* ellipsis dim of size 1: broadcast */
        if (ep->size[l] < 0)
          ep->size[l] = 1;
      } else {
        if (ep->size[l] > 1 && ep->size[l] != dim)
          return adv__error(err, ADV_ESHAPE, "Einsum: ellipsis dims disagree");
        ep->size[l] = dim;
        ep->st[k][l] += stride;
      }
      stride *= dim;
    }
    s += c + (s[c] == ',');
  }
  /* output labels */
  int oids[EIN_MAXL], no = 0;
  if (!strncmp(s, "->", 2)) {
    int ell, nlet;
    if (parse_term(s + 2, -1, E, NULL, &ell, &nlet) < 0)
      return adv__error(err, ADV_EFORMAT, "Einsum: bad output term");
    int c = parse_term(s + 2, nlet + (ell >= 0 ? E : 0), E, oids, &ell, &nlet);
    if (c < 0 || s[2 + c])
      return adv__error(err, ADV_EFORMAT, "Einsum: bad output term");
    no = nlet + (ell >= 0 ? E : 0);
  } else if (*s) {
    return adv__error(err, ADV_EFORMAT, "Einsum: bad equation '%s'", eq);
  } else { /* implicit: ellipsis dims, then letters seen once, sorted */
    for (int l = EIN_LETTERS; l < EIN_LETTERS + E; l++)
      oids[no++] = l;
    for (int c = 'A'; c <= 'z'; c++) {
      int l = letter_id((char)c);
      if (l >= 0 && count[l] == 1)
        oids[no++] = l;
    }
  }
  int64_t od[ADV_MAX_DIMS];
  if (no > ADV_MAX_DIMS)
    return adv__error(err, ADV_ESHAPE, "Einsum: output rank too large");
  int64_t stride = 1;
  for (int d = no - 1; d >= 0; d--) {
    int l = oids[d];
    if (ep->size[l] < 0 || ep->ost[l])
      return adv__error(err, ADV_EFORMAT, "Einsum: bad output label");
    od[d] = ep->size[l];
    ep->ost[l] = stride;
    stride *= od[d];
  }
  /* compact the loop labels to those in use */
  ein_params *cp = adv__arena_alloc(&p->arena, sizeof(*cp));
  if (!cp)
    return ADV_ENOMEM;
  cp->iters = 1;
  for (int l = 0; l < EIN_MAXL; l++) {
    if (ep->size[l] < 0)
      continue;
    int j = cp->nl++;
    cp->size[j] = ep->size[l];
    cp->ost[j] = ep->ost[l];
    for (int k = 0; k < n->n_in; k++)
      cp->st[k][j] = ep->st[k][l];
    if (cp->size[j] && cp->iters > EIN_MAX_ITERS / cp->size[j])
      return adv__error(err, ADV_ELIMIT, "Einsum: too many terms");
    cp->iters *= cp->size[j];
  }
  n->params = cp;
  return adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, no, od);
}

/* Walks every label assignment; for each calls the body with the output
 * offset oo and input offsets off[]. skip: the input left out of the
 * product (-1: none). */
static void ein_walk(const ein_params *ep, adv_pnode *n, int skip, float *dst,
                     const float *gy) {
  int nin = n->n_in;
  int64_t idx[EIN_MAXL] = {0}, off[16] = {0}, oo = 0;
  for (int64_t it = 0; it < ep->iters; it++) {
    float v = gy ? gy[oo] : 1.f;
    for (int k = 0; k < nin; k++)
      if (k != skip)
        v *= ((const float *)n->in[k]->data)[off[k]];
    if (skip < 0)
      dst[oo] += v;
    else
      dst[off[skip]] += v;
    for (int j = ep->nl - 1; j >= 0; j--) { /* odometer, offsets kept */
      idx[j]++;
      oo += ep->ost[j];
      for (int k = 0; k < nin; k++)
        off[k] += ep->st[k][j];
      if (idx[j] < ep->size[j])
        break;
      oo -= ep->ost[j] * idx[j];
      for (int k = 0; k < nin; k++)
        off[k] -= ep->st[k][j] * idx[j];
      idx[j] = 0;
    }
  }
}

static int ein_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const ein_params *ep = n->params;
  float *y = n->out[0]->data;
  memset(y, 0, sizeof(float) * (size_t)n->out[0]->numel);
  ein_walk(ep, n, -1, y, NULL);
  return ADV_OK;
}

static int ein_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const ein_params *ep = n->params;
  const float *gy = n->out[0]->grad;
  if (!gy)
    return ADV_OK;
  for (int k = 0; k < n->n_in; k++)
    if (n->in[k]->grad)
      ein_walk(ep, n, k, n->in[k]->grad, gy);
  return ADV_OK;
}

#define EIN_NEEDS                                                              \
  (ADV_BW_IN(0) | ADV_BW_IN(1) | ADV_BW_IN(2) | ADV_BW_IN(3) | ADV_BW_IN(4) |  \
   ADV_BW_IN(5) | ADV_BW_IN(6) | ADV_BW_IN(7) | ADV_BW_IN(8) | ADV_BW_IN(9) |  \
   ADV_BW_IN(10) | ADV_BW_IN(11) | ADV_BW_IN(12) | ADV_BW_IN(13) |             \
   ADV_BW_IN(14) | ADV_BW_IN(15))

const adv_op_def adv__op_einsum = {"Einsum",     ein_infer, ein_forward,
                                   ein_backward, EIN_NEEDS, 0};
