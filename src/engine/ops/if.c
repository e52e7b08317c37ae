/*
 * if.c - If(cond) with then_branch / else_branch. The loader flattens both
 * branches into the model's node list, each branch node guarded by
 * (cond, branch), and gives this node the inputs [cond, then outputs...,
 * else outputs...]; its k outputs are the chosen branch's.
 *
 * cond constant at plan time (after shape/constant folding): the untaken
 * branch's inputs are dropped here and plan.c never plans its nodes; the
 * node is a copy (folded when the taken outputs are constants too).
 * cond data-dependent: both branches are planned (their outputs must have
 * the same shapes and types); at run time plan.c skips the nodes of the
 * branch not taken, this forward copies the taken outputs, and backward
 * passes the gradient to the taken branch only.
 */
#include "core/engine.h"

#include <string.h>

typedef struct if_params {
  int k;
  int fixed; /* -1 data-dependent, else the branch chosen at plan time */
  int taken; /* branch of the last forward (0 then, 1 else) */
} if_params;

int adv__if_branch(const adv_tensor *c) {
  if (c->dtype == ADV_DTYPE_F32)
    return ((const float *)c->data)[0] != 0.f ? 0 : 1;
  return ((const int64_t *)c->data)[0] != 0 ? 0 : 1;
}

static int if_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  int k = n->n_out;
  if (k < 1 || n->n_in != 1 + 2 * k || !n->in[0])
    return adv__error(err, ADV_EFORMAT, "If: %d inputs for %d outputs", n->n_in,
                      k);
  adv_tensor *c = n->in[0];
  if (c->numel != 1)
    return adv__error(err, ADV_ESHAPE,
                      "If: the condition has %lld elements, not 1",
                      (long long)c->numel);
  if_params *ip = adv__arena_alloc(&p->arena, sizeof(*ip));
  if (!ip)
    return ADV_ENOMEM;
  ip->k = k;
  ip->fixed = c->is_const ? adv__if_branch(c) : -1;
  n->params = ip;
  if (ip->fixed >= 0) { /* the untaken branch is never planned */
    for (int j = 0; j < k; j++)
      n->in[1 + (1 - ip->fixed) * k + j] = NULL;
    ip->taken = ip->fixed;
  }
  for (int j = 0; j < k; j++) {
    adv_tensor *t = n->in[1 + j], *e = n->in[1 + k + j];
    adv_tensor *src = ip->fixed == 1 ? e : t;
    if (!src || (ip->fixed < 0 && !e) || !n->out[j])
      return adv__error(err, ADV_EFORMAT, "If: output %d missing", j);
    if (ip->fixed < 0 &&
        (t->dtype != e->dtype || t->ndim != e->ndim ||
         memcmp(t->dims, e->dims, sizeof(int64_t) * (size_t)t->ndim)))
      return adv__error(err, ADV_EUNSUPPORTED,
                        "If with a data-dependent condition: output %d has "
                        "different shapes or types in the two branches",
                        j);
    int rc = adv__tensor_set_shape(n->out[j], src->dtype, src->ndim, src->dims);
    if (rc)
      return adv__error(err, rc, "If: bad output shape");
  }
  return ADV_OK;
}

static int if_forward(adv_plan *p, adv_pnode *n) {
  (void)p;
  if_params *ip = n->params;
  ip->taken = ip->fixed >= 0 ? ip->fixed : adv__if_branch(n->in[0]);
  for (int j = 0; j < ip->k; j++) {
    const adv_tensor *src = n->in[1 + ip->taken * ip->k + j];
    adv_tensor *y = n->out[j];
    if (y->data != src->data)
      memcpy(y->data, src->data, (size_t)y->numel * adv_dtype_size(y->dtype));
  }
  return ADV_OK;
}

/* The gradient goes to the branch taken by the last forward. */
static int if_backward(adv_plan *p, adv_pnode *n) {
  (void)p;
  const if_params *ip = n->params;
  for (int j = 0; j < ip->k; j++) {
    adv_tensor *src = n->in[1 + ip->taken * ip->k + j];
    const float *gy = n->out[j]->grad;
    if (!gy || !src->grad)
      continue;
    for (int64_t i = 0; i < src->numel; i++)
      src->grad[i] += gy[i];
  }
  return ADV_OK;
}

const adv_op_def adv__op_if = {"If", if_infer, if_forward, if_backward, 0, 0};
