/*
 * rnn.c - LSTM, GRU and the plain RNN (opsets 7/14) on float32, forward
 * and backward through time (BPTT).
 *
 * Shared by both: directions forward / reverse / bidirectional, optional
 * bias B, initial state(s), sequence_lens (per batch item; steps past the
 * length leave Y zero and carry the state, a reverse direction starts at
 * the item's last valid step), layout 0 (X S x B x I, Y S x D x B x H,
 * states D x B x H) or 1 (X B x S x I, Y B x S x D x H, states B x D x H).
 * LSTM also takes peepholes P; GRU linear_before_reset. The default
 * activations only (LSTM Sigmoid/Tanh/Tanh, GRU Sigmoid/Tanh, RNN Tanh); other
 * activations, clip and LSTM input_forget are refused by name.
 *
 * Per direction the input projection of every step is one GEMM
 * (X W^T, all S*B rows), each step one GEMM for the recurrence; backward
 * mirrors them (dH_prev = dA R, dR += dA^T H_prev per step; dX = dA W,
 * dW += dA^T X once). Forward saves each step's gate activations and
 * states in a plan-lifetime buffer (sessions with gradients only).
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

enum { RNN_LSTM = 0, RNN_GRU = 1, RNN_RNN = 2 };

/* Per kind: name, gates, most inputs / outputs, saved floats per step and
 * item (in units of H), default activations per direction. */
static const struct rnn_kind {
  const char *name;
  int G, max_in, max_out, A, n_act;
  const char *act[3];
} kinds[3] = {
    {"LSTM", 4, 8, 3, 6, 3, {"Sigmoid", "Tanh", "Tanh"}}, /* i o f g C H */
    {"GRU", 3, 6, 2, 5, 2, {"Sigmoid", "Tanh"}},          /* z r h q H */
    {"RNN", 1, 6, 2, 1, 1, {"Tanh"}},                     /* H */
};

typedef struct rnn_params {
  int kind, D, G, A; /* directions, gates, saved floats per step and item */
  int reverse;       /* direction attribute "reverse" (D == 1) */
  int layout, lbr;
  int64_t S, B, I, H;
  float *act; /* D x S x B x A saved activations, or NULL (no gradients) */
} rnn_params;

static inline float sigm(float v) {
  return 1.f / (1.f + expf(-v));
}

/* Row of step t, item b in X (and in the per-row buffers XW / dA). */
static inline int64_t xrow(const rnn_params *rp, int64_t t, int64_t b) {
  return rp->layout ? b * rp->S + t : t * rp->B + b;
}

/* Offset of (t, d, b) in Y. */
static inline int64_t yoff(const rnn_params *rp, int64_t t, int d, int64_t b) {
  return (rp->layout ? (b * rp->S + t) * rp->D + d
                     : (t * rp->D + d) * rp->B + b) *
         rp->H;
}

/* Offset of (d, b) in the state tensors (initial_h/c, Y_h, Y_c). */
static inline int64_t hoff(const rnn_params *rp, int d, int64_t b) {
  return (rp->layout ? b * rp->D + d : d * rp->B + b) * rp->H;
}

/* Valid steps of item b (sequence_lens, clamped to [0, S]). */
static inline int64_t seq_len(const rnn_params *rp, const adv_pnode *n,
                              int64_t b) {
  const adv_tensor *l = n->n_in > 4 ? n->in[4] : NULL;
  if (!l)
    return rp->S;
  int64_t v = ((const int64_t *)l->data)[b];
  return v < 0 ? 0 : v > rp->S ? rp->S : v;
}

/* Whether direction d runs backwards in time. */
static inline int is_rev(const rnn_params *rp, int d) {
  return rp->reverse || d == 1;
}

/* Checks shapes/attributes common to LSTM (G = 4) and GRU (G = 3) and
 * sets the output shapes. */
static int rnn_infer(adv_plan *p, adv_pnode *n, int kind, adv_err *err) {
  const struct rnn_kind *K = &kinds[kind];
  const char *op = K->name;
  int G = K->G;
  if (n->n_in < 3 || !n->in[0] || !n->in[1] || !n->in[2])
    return adv__error(err, ADV_EFORMAT, "%s needs X, W and R", op);
  if (n->n_in > K->max_in)
    return adv__error(err, ADV_EFORMAT, "%s: too many inputs", op);
  adv_tensor *x = n->in[0], *w = n->in[1], *r = n->in[2];
  for (int k = 0; k < n->n_in; k++)
    if (n->in[k] && k != 4 && n->in[k]->dtype != ADV_DTYPE_F32)
      return adv__error(err, ADV_EDTYPE, "%s: input %d must be float32", op, k);
  const char *dir = adv__attr_str(n->m, "direction", "forward");
  int D = !strcmp(dir, "bidirectional") ? 2 : 1;
  if (D == 1 && strcmp(dir, "forward") && strcmp(dir, "reverse"))
    return adv__error(err, ADV_EFORMAT, "%s: bad direction '%s'", op, dir);
  if (adv__attr_get(n->m, "clip"))
    return adv__error(err, ADV_EUNSUPPORTED,
                      "%s attribute 'clip' is not supported", op);
  if (kind == RNN_LSTM && adv__attr_int(n->m, "input_forget", 0) != 0)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "LSTM attribute 'input_forget' = 1 is not supported");
  const adv_attr *acts = adv__attr_get(n->m, "activations");
  if (acts) {
    /* exporters often write the defaults out in full */
    const char *const *def = K->act;
    int per = K->n_act;
    if (acts->type != ADV_ATTR_STRINGS || !acts->strings || acts->n != per * D)
      return adv__error(
          err, ADV_EUNSUPPORTED,
          "%s attribute 'activations': only the defaults are supported", op);
    for (int k = 0; k < acts->n; k++)
      if (strcmp(acts->strings[k], def[k % per]))
        return adv__error(
            err, ADV_EUNSUPPORTED,
            "%s activation '%s' is not supported (only the defaults)", op,
            acts->strings[k]);
  }
  int layout = (int)adv__attr_int(n->m, "layout", 0);
  if (layout != 0 && layout != 1)
    return adv__error(err, ADV_EFORMAT, "%s: bad layout %d", op, layout);
  if (x->ndim != 3 || w->ndim != 3 || r->ndim != 3)
    return adv__error(err, ADV_ESHAPE, "%s: X, W and R must have rank 3", op);
  int64_t S = layout ? x->dims[1] : x->dims[0],
          B = layout ? x->dims[0] : x->dims[1];
  int64_t I = x->dims[2], H = w->dims[1] / G;
  int64_t hs = adv__attr_int(n->m, "hidden_size", H);
  if (w->dims[0] != D || w->dims[1] != G * H || w->dims[2] != I || hs != H ||
      H < 1)
    return adv__error(err, ADV_ESHAPE,
                      "%s: W shape does not match X / hidden_size", op);
  if (r->dims[0] != D || r->dims[1] != G * H || r->dims[2] != H)
    return adv__error(err, ADV_ESHAPE, "%s: R shape is not [%d, %lld, %lld]",
                      op, D, (long long)(G * H), (long long)H);
  adv_tensor *bias = n->n_in > 3 ? n->in[3] : NULL;
  if (bias &&
      (bias->ndim != 2 || bias->dims[0] != D || bias->dims[1] != 2 * G * H))
    return adv__error(err, ADV_ESHAPE, "%s: B shape is not [%d, %lld]", op, D,
                      (long long)(2 * G * H));
  adv_tensor *lens = n->n_in > 4 ? n->in[4] : NULL;
  if (lens &&
      (lens->dtype != ADV_DTYPE_I64 || lens->numel != B || !lens->is_const))
    return adv__error(
        err, ADV_EUNSUPPORTED,
        "%s: sequence_lens must be a constant integer tensor of %lld", op,
        (long long)B);
  int64_t sd[3] = {layout ? B : D, layout ? D : B, H};
  for (int k = 5; k < n->n_in && k < (kind == RNN_LSTM ? 7 : 6); k++)
    if (n->in[k] &&
        (n->in[k]->ndim != 3 || memcmp(n->in[k]->dims, sd, sizeof(sd))))
      return adv__error(err, ADV_ESHAPE,
                        "%s: initial state %d has the wrong shape", op, k);
  if (kind == RNN_LSTM && n->n_in > 7 && n->in[7] &&
      (n->in[7]->ndim != 2 || n->in[7]->dims[0] != D ||
       n->in[7]->dims[1] != 3 * H))
    return adv__error(err, ADV_ESHAPE, "LSTM: P shape is not [%d, %lld]", D,
                      (long long)(3 * H));
  if (n->n_out > K->max_out)
    return adv__error(err, ADV_EFORMAT, "%s: too many outputs", op);
  rnn_params *rp = adv__arena_alloc(&p->arena, sizeof(*rp));
  if (!rp)
    return ADV_ENOMEM;
  rp->kind = kind;
  rp->D = D;
  rp->G = G;
  rp->reverse = !strcmp(dir, "reverse");
  rp->layout = layout;
  rp->lbr =
      kind == RNN_GRU && adv__attr_int(n->m, "linear_before_reset", 0) != 0;
  rp->S = S;
  rp->B = B;
  rp->I = I;
  rp->H = H;
  /* saved per step and item: see kinds[] (GRU's q: the recurrent part of
   * the h gate, with linear_before_reset) */
  rp->A = K->A;
  if (p->grad) {
    size_t nact = (size_t)D * (size_t)S * (size_t)B * (size_t)rp->A * (size_t)H;
    if (nact > p->max_bytes / sizeof(float))
      return adv__error(
          err, ADV_ELIMIT,
          "%s: the activations saved for backward need %zu bytes, "
          "more than the session cap of %zu",
          op, nact * sizeof(float), p->max_bytes);
    rp->act = adv__arena_alloc(&p->arena, nact * sizeof(float) + 64);
    if (!rp->act)
      return adv__error(err, ADV_ENOMEM,
                        "%s: out of memory for saved activations", op);
  }
  n->params = rp;
  size_t GH = (size_t)(G * H), SB = (size_t)(S * B);
  n->scratch =
      (SB * GH + (size_t)B * GH + 3 * (size_t)B * (size_t)H) * sizeof(float);
  n->bw_scratch =
      (SB * GH + (size_t)B * GH + 6 * (size_t)B * (size_t)H) * sizeof(float);
  int rc;
  if (n->n_out > 0 && n->out[0]) {
    int64_t yd[4] = {S, D, B, H};
    if (layout) {
      yd[0] = B;
      yd[1] = S;
      yd[2] = D;
    }
    if ((rc = adv__tensor_set_shape(n->out[0], ADV_DTYPE_F32, 4, yd)))
      return rc;
  }
  for (int k = 1; k < n->n_out; k++)
    if (n->out[k] &&
        (rc = adv__tensor_set_shape(n->out[k], ADV_DTYPE_F32, 3, sd)))
      return rc;
  return ADV_OK;
}

/* XW = X W_d^T + (Wb + Rb) for every row of X (S*B x G*H); with GRU's
 * linear_before_reset the h gate's Rb is left out (added inside r * (.)). */
static void input_proj(adv_plan *p, const adv_pnode *n, const rnn_params *rp,
                       int d, float *xw) {
  int64_t GH = rp->G * rp->H, SB = rp->S * rp->B;
  const float *x = n->in[0]->data,
              *w = (const float *)n->in[1]->data + d * GH * rp->I;
  adv__sgemm(p->threads, 0, 1, (int)SB, (int)GH, (int)rp->I, 1.f, x, (int)rp->I,
             w, (int)rp->I, 0.f, xw, (int)GH);
  const adv_tensor *bt = n->n_in > 3 ? n->in[3] : NULL;
  if (!bt)
    return;
  const float *wb = (const float *)bt->data + d * 2 * GH, *rb = wb + GH;
  for (int64_t row = 0; row < SB; row++)
    for (int64_t j = 0; j < GH; j++)
      xw[row * GH + j] += wb[j] + (rp->lbr && j >= 2 * rp->H ? 0.f : rb[j]);
}

/* Initial state k (5: h, 6: c) of direction d into st (B x H), or zeros. */
static void init_state(const adv_pnode *n, const rnn_params *rp, int k, int d,
                       float *st) {
  const adv_tensor *t = n->n_in > k ? n->in[k] : NULL;
  for (int64_t b = 0; b < rp->B; b++) {
    if (t)
      memcpy(st + b * rp->H, (const float *)t->data + hoff(rp, d, b),
             sizeof(float) * (size_t)rp->H);
    else
      memset(st + b * rp->H, 0, sizeof(float) * (size_t)rp->H);
  }
}

/* Saved activations of (d, step s, item b). */
static inline float *act_at(const rnn_params *rp, int d, int64_t s, int64_t b) {
  return rp->act +
         (((size_t)d * (size_t)rp->S + (size_t)s) * (size_t)rp->B + (size_t)b) *
             (size_t)rp->A * (size_t)rp->H;
}

/* Writes the final states into Y_h (out 1) and Y_c (out 2) when present. */
static void store_final(adv_pnode *n, const rnn_params *rp, int d,
                        const float *h, const float *c) {
  for (int k = 1; k < n->n_out; k++) {
    const float *src = k == 1 ? h : c;
    if (!n->out[k] || !src)
      continue;
    for (int64_t b = 0; b < rp->B; b++)
      memcpy((float *)n->out[k]->data + hoff(rp, d, b), src + b * rp->H,
             sizeof(float) * (size_t)rp->H);
  }
}

/* Saved slots of a step past the item's length: gates (the first ng
 * slots) zero, then the carried state(s) c (LSTM) and h. */
static void save_carried(float *sv, int64_t H, int ng, const float *c,
                         const float *h) {
  if (!sv)
    return;
  memset(sv, 0, sizeof(float) * (size_t)(ng * H));
  sv += ng * H;
  if (c) {
    memcpy(sv, c, sizeof(float) * (size_t)H);
    sv += H;
  }
  memcpy(sv, h, sizeof(float) * (size_t)H);
}

static int lstm_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return rnn_infer(p, n, RNN_LSTM, err);
}

/* One LSTM direction: gates i o f c, C = f C' + i g, H = o tanh(C). */
static void lstm_dir(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                     float *sc) {
  int64_t H = rp->H, B = rp->B, GH = 4 * H;
  float *xw = sc, *gates = xw + rp->S * B * GH, *h = gates + B * GH,
        *c = h + B * H;
  input_proj(p, n, rp, d, xw);
  init_state(n, rp, 5, d, h);
  init_state(n, rp, 6, d, c);
  const float *R = (const float *)n->in[2]->data + d * GH * H;
  const adv_tensor *pt = n->n_in > 7 ? n->in[7] : NULL;
  const float *P = pt ? (const float *)pt->data + d * 3 * H : NULL;
  float *y = n->out[0] ? n->out[0]->data : NULL;
  for (int64_t s = 0; s < rp->S; s++) {
    adv__sgemm(p->threads, 0, 1, (int)B, (int)GH, (int)H, 1.f, h, (int)H, R,
               (int)H, 0.f, gates, (int)GH);
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      float *hb = h + b * H, *cb = c + b * H;
      float *sv = rp->act ? act_at(rp, d, s, b) : NULL;
      if (s >= len) { /* past the item's length: state carried */
        save_carried(sv, H, 4, cb, hb);
        continue;
      }
      int64_t t = is_rev(rp, d) ? len - 1 - s : s;
      const float *xr = xw + xrow(rp, t, b) * GH, *gr = gates + b * GH;
      float *yr = y ? y + yoff(rp, t, d, b) : NULL;
      for (int64_t j = 0; j < H; j++) {
        float cp = cb[j];
        float ai = xr[j] + gr[j] + (P ? P[j] * cp : 0.f);
        float af =
            xr[2 * H + j] + gr[2 * H + j] + (P ? P[2 * H + j] * cp : 0.f);
        float i = sigm(ai), f = sigm(af),
              g = tanhf(xr[3 * H + j] + gr[3 * H + j]);
        float C = f * cp + i * g;
        float o = sigm(xr[H + j] + gr[H + j] + (P ? P[H + j] * C : 0.f));
        float hv = o * tanhf(C);
        if (sv) {
          sv[j] = i;
          sv[H + j] = o;
          sv[2 * H + j] = f;
          sv[3 * H + j] = g;
          sv[4 * H + j] = C;
          sv[5 * H + j] = hv;
        }
        cb[j] = C;
        hb[j] = hv;
        if (yr)
          yr[j] = hv;
      }
    }
  }
  store_final(n, rp, d, h, c);
}

/* State k (5 h, 6 c; saved slot `slot`) before step s of item b. */
static const float *prev_state(const adv_pnode *n, const rnn_params *rp, int d,
                               int64_t s, int64_t b, int k, int slot,
                               const float *zeros) {
  if (s > 0)
    return act_at(rp, d, s - 1, b) + (size_t)slot * (size_t)rp->H;
  const adv_tensor *t = n->n_in > k ? n->in[k] : NULL;
  return t ? (const float *)t->data + hoff(rp, d, b) : zeros;
}

/* After the steps of one direction: dX += dA W_d, dW_d += dA^T X, the
 * bias gradients, and the initial-state gradients dh (and dc). */
static void rnn_dir_tail(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                         const float *da, const float *dh, const float *dc) {
  int64_t GH = rp->G * rp->H, SB = rp->S * rp->B;
  const adv_tensor *x = n->in[0], *w = n->in[1];
  if (x->grad)
    adv__sgemm(p->threads, 0, 0, (int)SB, (int)rp->I, (int)GH, 1.f, da, (int)GH,
               (const float *)w->data + d * GH * rp->I, (int)rp->I, 1.f,
               x->grad, (int)rp->I);
  if (w->grad)
    adv__sgemm(p->threads, 1, 0, (int)GH, (int)rp->I, (int)SB, 1.f, da, (int)GH,
               x->data, (int)rp->I, 1.f, w->grad + d * GH * rp->I, (int)rp->I);
  const adv_tensor *bt = n->n_in > 3 ? n->in[3] : NULL;
  if (bt && bt->grad) { /* Wb; Rb the same except GRU's lbr h gate (done by the
                           caller) */
    float *gw = bt->grad + d * 2 * GH, *gr = gw + GH;
    for (int64_t row = 0; row < SB; row++)
      for (int64_t j = 0; j < GH; j++) {
        gw[j] += da[row * GH + j];
        if (!(rp->lbr && j >= 2 * rp->H))
          gr[j] += da[row * GH + j];
      }
  }
  for (int k = 5; k <= 6; k++) {
    const adv_tensor *t = n->n_in > k ? n->in[k] : NULL;
    const float *src = k == 5 ? dh : dc;
    if (!t || !t->grad || !src)
      continue;
    for (int64_t b = 0; b < rp->B; b++)
      for (int64_t j = 0; j < rp->H; j++)
        t->grad[hoff(rp, d, b) + j] += src[b * rp->H + j];
  }
}

/* Upstream gradient of the final state k (1: Y_h, 2: Y_c) into g (B x H). */
static void final_grad(const adv_pnode *n, const rnn_params *rp, int k, int d,
                       float *g) {
  const float *src = n->n_out > k && n->out[k] ? n->out[k]->grad : NULL;
  for (int64_t b = 0; b < rp->B; b++)
    for (int64_t j = 0; j < rp->H; j++)
      g[b * rp->H + j] = src ? src[hoff(rp, d, b) + j] : 0.f;
}

/* BPTT of one LSTM direction. */
static void lstm_dir_bw(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                        float *sc) {
  int64_t H = rp->H, B = rp->B, GH = 4 * H, SB = rp->S * B;
  float *da = sc, *dstep = da + SB * GH, *dh = dstep + B * GH, *dc = dh + B * H;
  float *dhp = dc + B * H, *hp = dhp + B * H, *zeros = hp + B * H;
  memset(da, 0, sizeof(float) * (size_t)(SB * GH));
  memset(zeros, 0, sizeof(float) * (size_t)H);
  final_grad(n, rp, 1, d, dh);
  final_grad(n, rp, 2, d, dc);
  const float *R = (const float *)n->in[2]->data + d * GH * H;
  const adv_tensor *pt = n->n_in > 7 ? n->in[7] : NULL;
  const float *P = pt ? (const float *)pt->data + d * 3 * H : NULL;
  float *gP = pt && pt->grad ? pt->grad + d * 3 * H : NULL;
  float *gR = n->in[2]->grad ? n->in[2]->grad + d * GH * H : NULL;
  const float *gy = n->out[0] ? n->out[0]->grad : NULL;
  for (int64_t s = rp->S - 1; s >= 0; s--) {
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      float *dab = dstep + b * GH, *dhb = dh + b * H, *dcb = dc + b * H;
      const float *hpv = prev_state(n, rp, d, s, b, 5, 5, zeros);
      memcpy(hp + b * H, hpv, sizeof(float) * (size_t)H);
      if (s >= len) {
        memset(dab, 0, sizeof(float) * (size_t)GH);
        continue;
      }
      int64_t t = is_rev(rp, d) ? len - 1 - s : s;
      const float *sv = act_at(rp, d, s, b);
      const float *cp = prev_state(n, rp, d, s, b, 6, 4, zeros);
      if (gy)
        for (int64_t j = 0; j < H; j++)
          dhb[j] += gy[yoff(rp, t, d, b) + j];
      for (int64_t j = 0; j < H; j++) {
        float i = sv[j], o = sv[H + j], f = sv[2 * H + j], g = sv[3 * H + j];
        float C = sv[4 * H + j], tc = tanhf(C);
        float dao = dhb[j] * tc * o * (1.f - o);
        float dC =
            dcb[j] + dhb[j] * o * (1.f - tc * tc) + (P ? dao * P[H + j] : 0.f);
        float dai = dC * g * i * (1.f - i);
        float daf = dC * cp[j] * f * (1.f - f);
        float dag = dC * i * (1.f - g * g);
        dcb[j] = dC * f + (P ? dai * P[j] + daf * P[2 * H + j] : 0.f);
        if (gP) {
          gP[j] += dai * cp[j];
          gP[H + j] += dao * C;
          gP[2 * H + j] += daf * cp[j];
        }
        dab[j] = dai;
        dab[H + j] = dao;
        dab[2 * H + j] = daf;
        dab[3 * H + j] = dag;
      }
      memcpy(da + xrow(rp, t, b) * GH, dab, sizeof(float) * (size_t)GH);
    }
    /* dH_prev = dA R for the items that stepped; the others carry dH */
    adv__sgemm(p->threads, 0, 0, (int)B, (int)H, (int)GH, 1.f, dstep, (int)GH,
               R, (int)H, 0.f, dhp, (int)H);
    for (int64_t b = 0; b < B; b++)
      if (s < seq_len(rp, n, b))
        memcpy(dh + b * H, dhp + b * H, sizeof(float) * (size_t)H);
    if (gR)
      adv__sgemm(p->threads, 1, 0, (int)GH, (int)H, (int)B, 1.f, dstep, (int)GH,
                 hp, (int)H, 1.f, gR, (int)H);
  }
  rnn_dir_tail(p, n, rp, d, da, dh, dc);
}

static int gru_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return rnn_infer(p, n, RNN_GRU, err);
}

/* One GRU direction: gates z r h; h~ = tanh(x Wh + (r * H') Rh + biases),
 * or with linear_before_reset tanh(x Wh + r * (H' Rh + Rbh) + Wbh);
 * H = (1 - z) h~ + z H'. */
static void gru_dir(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                    float *sc) {
  int64_t H = rp->H, B = rp->B, GH = 3 * H;
  float *xw = sc, *gates = xw + rp->S * B * GH, *h = gates + B * GH,
        *rh = h + B * H;
  float *q = rh + B * H;
  input_proj(p, n, rp, d, xw);
  init_state(n, rp, 5, d, h);
  const float *R = (const float *)n->in[2]->data + d * GH * H,
              *Rh = R + 2 * H * H;
  const adv_tensor *bt = n->n_in > 3 ? n->in[3] : NULL;
  const float *rbh =
      bt ? (const float *)bt->data + d * 2 * GH + GH + 2 * H : NULL;
  float *y = n->out[0] ? n->out[0]->data : NULL;
  for (int64_t s = 0; s < rp->S; s++) {
    /* z and r (and, with linear_before_reset, H' Rh) from H' */
    adv__sgemm(p->threads, 0, 1, (int)B, (int)(rp->lbr ? GH : 2 * H), (int)H,
               1.f, h, (int)H, R, (int)H, 0.f, gates, (int)GH);
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      if (s >= len) { /* finished items: rows not read, kept finite */
        memset(rh + b * H, 0, sizeof(float) * (size_t)H);
        continue;
      }
      const float *xr = xw + xrow(rp, is_rev(rp, d) ? len - 1 - s : s, b) * GH;
      for (int64_t j = 0; j < 2 * H; j++)
        gates[b * GH + j] = sigm(xr[j] + gates[b * GH + j]);
      for (int64_t j = 0; j < H; j++)
        rh[b * H + j] = gates[b * GH + H + j] * h[b * H + j];
    }
    if (!rp->lbr) /* (r * H') Rh */
      adv__sgemm(p->threads, 0, 1, (int)B, (int)H, (int)H, 1.f, rh, (int)H, Rh,
                 (int)H, 0.f, q, (int)H);
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      float *hb = h + b * H, *sv = rp->act ? act_at(rp, d, s, b) : NULL;
      if (s >= len) {
        save_carried(sv, H, 4, NULL, hb);
        continue;
      }
      int64_t t = is_rev(rp, d) ? len - 1 - s : s;
      const float *xr = xw + xrow(rp, t, b) * GH, *g = gates + b * GH;
      float *yr = y ? y + yoff(rp, t, d, b) : NULL;
      for (int64_t j = 0; j < H; j++) {
        float z = g[j], r = g[H + j], qv, hh;
        if (rp->lbr) {
          qv = g[2 * H + j] + (rbh ? rbh[j] : 0.f);
          hh = tanhf(xr[2 * H + j] + r * qv);
        } else {
          qv = 0.f;
          hh = tanhf(xr[2 * H + j] + q[b * H + j]);
        }
        float hv = (1.f - z) * hh + z * hb[j];
        if (sv) {
          sv[j] = z;
          sv[H + j] = r;
          sv[2 * H + j] = hh;
          sv[3 * H + j] = qv;
          sv[4 * H + j] = hv;
        }
        hb[j] = hv;
        if (yr)
          yr[j] = hv;
      }
    }
  }
  store_final(n, rp, d, h, NULL);
}

static int vrnn_infer(adv_plan *p, adv_pnode *n, adv_err *err) {
  return rnn_infer(p, n, RNN_RNN, err);
}

/* One direction of the plain RNN: H = tanh(x W^T + H' R^T + Wb + Rb). */
static void rnn_dir(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                    float *sc) {
  int64_t H = rp->H, B = rp->B;
  float *xw = sc, *gates = xw + rp->S * B * H, *h = gates + B * H;
  input_proj(p, n, rp, d, xw);
  init_state(n, rp, 5, d, h);
  const float *R = (const float *)n->in[2]->data + d * H * H;
  float *y = n->out[0] ? n->out[0]->data : NULL;
  for (int64_t s = 0; s < rp->S; s++) {
    adv__sgemm(p->threads, 0, 1, (int)B, (int)H, (int)H, 1.f, h, (int)H, R,
               (int)H, 0.f, gates, (int)H);
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      float *hb = h + b * H, *sv = rp->act ? act_at(rp, d, s, b) : NULL;
      if (s >= len) {
        save_carried(sv, H, 0, NULL, hb);
        continue;
      }
      int64_t t = is_rev(rp, d) ? len - 1 - s : s;
      const float *xr = xw + xrow(rp, t, b) * H;
      float *yr = y ? y + yoff(rp, t, d, b) : NULL;
      for (int64_t j = 0; j < H; j++) {
        hb[j] = tanhf(xr[j] + gates[b * H + j]);
        if (sv)
          sv[j] = hb[j];
        if (yr)
          yr[j] = hb[j];
      }
    }
  }
  store_final(n, rp, d, h, NULL);
}

/* BPTT of one plain-RNN direction. */
static void rnn_dir_bw(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                       float *sc) {
  int64_t H = rp->H, B = rp->B, SB = rp->S * B;
  float *da = sc, *dstep = da + SB * H, *dh = dstep + B * H, *dhp = dh + B * H;
  float *hp = dhp + B * H, *zeros = hp + B * H;
  memset(da, 0, sizeof(float) * (size_t)(SB * H));
  memset(zeros, 0, sizeof(float) * (size_t)H);
  final_grad(n, rp, 1, d, dh);
  const float *R = (const float *)n->in[2]->data + d * H * H;
  float *gR = n->in[2]->grad ? n->in[2]->grad + d * H * H : NULL;
  const float *gy = n->out[0] ? n->out[0]->grad : NULL;
  for (int64_t s = rp->S - 1; s >= 0; s--) {
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      memcpy(hp + b * H, prev_state(n, rp, d, s, b, 5, 0, zeros),
             sizeof(float) * (size_t)H);
      if (s >= len) {
        memset(dstep + b * H, 0, sizeof(float) * (size_t)H);
        continue;
      }
      int64_t t = is_rev(rp, d) ? len - 1 - s : s;
      const float *sv = act_at(rp, d, s, b);
      for (int64_t j = 0; j < H; j++) {
        float dH = dh[b * H + j] + (gy ? gy[yoff(rp, t, d, b) + j] : 0.f);
        dstep[b * H + j] = dH * (1.f - sv[j] * sv[j]);
      }
      memcpy(da + xrow(rp, t, b) * H, dstep + b * H, sizeof(float) * (size_t)H);
    }
    adv__sgemm(p->threads, 0, 0, (int)B, (int)H, (int)H, 1.f, dstep, (int)H, R,
               (int)H, 0.f, dhp, (int)H);
    for (int64_t b = 0; b < B; b++)
      if (s < seq_len(rp, n, b))
        memcpy(dh + b * H, dhp + b * H, sizeof(float) * (size_t)H);
    if (gR)
      adv__sgemm(p->threads, 1, 0, (int)H, (int)H, (int)B, 1.f, dstep, (int)H,
                 hp, (int)H, 1.f, gR, (int)H);
  }
  rnn_dir_tail(p, n, rp, d, da, dh, NULL);
}

/* LSTM, GRU and RNN forward: each direction in turn. */
static int rnn_forward(adv_plan *p, adv_pnode *n) {
  const rnn_params *rp = n->params;
  if (n->out[0]) /* steps past a sequence length stay zero */
    memset(n->out[0]->data, 0, sizeof(float) * (size_t)n->out[0]->numel);
  for (int d = 0; d < rp->D; d++)
    (rp->kind == RNN_LSTM  ? lstm_dir
     : rp->kind == RNN_GRU ? gru_dir
                           : rnn_dir)(p, n, rp, d, adv__scratch(p, n, 0));
  return ADV_OK;
}

/* BPTT of one GRU direction. */
static void gru_dir_bw(adv_plan *p, adv_pnode *n, const rnn_params *rp, int d,
                       float *sc) {
  int64_t H = rp->H, B = rp->B, GH = 3 * H, SB = rp->S * B;
  float *da = sc, *dstep = da + SB * GH, *dh = dstep + B * GH, *hp = dh + B * H;
  float *drh = hp + B * H, *rh = drh + B * H, *zeros = rh + B * H;
  memset(da, 0, sizeof(float) * (size_t)(SB * GH));
  memset(zeros, 0, sizeof(float) * (size_t)H);
  final_grad(n, rp, 1, d, dh);
  const float *R = (const float *)n->in[2]->data + d * GH * H,
              *Rh = R + 2 * H * H;
  float *gR = n->in[2]->grad ? n->in[2]->grad + d * GH * H : NULL;
  const adv_tensor *bt = n->n_in > 3 ? n->in[3] : NULL;
  float *gRbh =
      bt && bt->grad && rp->lbr ? bt->grad + d * 2 * GH + GH + 2 * H : NULL;
  const float *gy = n->out[0] ? n->out[0]->grad : NULL;
  for (int64_t s = rp->S - 1; s >= 0; s--) {
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      float *dab = dstep + b * GH, *dhb = dh + b * H;
      memcpy(hp + b * H, prev_state(n, rp, d, s, b, 5, 4, zeros),
             sizeof(float) * (size_t)H);
      memset(drh + b * H, 0, sizeof(float) * (size_t)H);
      memset(rh + b * H, 0,
             sizeof(float) * (size_t)H); /* read by the dRh GEMM */
      if (s >= len) {
        memset(dab, 0, sizeof(float) * (size_t)GH);
        continue;
      }
      int64_t t = is_rev(rp, d) ? len - 1 - s : s;
      const float *sv = act_at(rp, d, s, b), *hpb = hp + b * H;
      for (int64_t j = 0; j < H; j++) {
        float dH = dhb[j] + (gy ? gy[yoff(rp, t, d, b) + j] : 0.f);
        float z = sv[j], r = sv[H + j], hh = sv[2 * H + j], qv = sv[3 * H + j];
        float dah = dH * (1.f - z) * (1.f - hh * hh);
        dab[j] = dH * (hpb[j] - hh) * z * (1.f - z);
        dab[2 * H + j] = dah;
        dhb[j] = dH * z;
        if (rp->lbr) {
          dab[H + j] = dah * qv * r * (1.f - r);
          drh[b * H + j] = dah * r; /* dq */
          if (gRbh)
            gRbh[j] += dah * r;
        }
        rh[b * H + j] = r * hpb[j];
      }
    }
    if (rp->lbr) { /* q = H' Rh + Rbh: dH' += dq Rh, dRh += dq^T H' */
      adv__sgemm(p->threads, 0, 0, (int)B, (int)H, (int)H, 1.f, drh, (int)H, Rh,
                 (int)H, 1.f, dh, (int)H);
      if (gR)
        adv__sgemm(p->threads, 1, 0, (int)H, (int)H, (int)B, 1.f, drh, (int)H,
                   hp, (int)H, 1.f, gR + 2 * H * H, (int)H);
    } else { /* d(r * H') = da_h Rh; dRh += da_h^T (r * H') */
      adv__sgemm(p->threads, 0, 0, (int)B, (int)H, (int)H, 1.f, dstep + 2 * H,
                 (int)GH, Rh, (int)H, 0.f, drh, (int)H);
      if (gR)
        adv__sgemm(p->threads, 1, 0, (int)H, (int)H, (int)B, 1.f, dstep + 2 * H,
                   (int)GH, rh, (int)H, 1.f, gR + 2 * H * H, (int)H);
      for (int64_t b = 0; b < B; b++) {
        if (s >= seq_len(rp, n, b))
          continue;
        const float *sv = act_at(rp, d, s, b);
        for (int64_t j = 0; j < H; j++) {
          float r = sv[H + j];
          dstep[b * GH + H + j] =
              drh[b * H + j] * hp[b * H + j] * r * (1.f - r);
          dh[b * H + j] += drh[b * H + j] * r;
        }
      }
    }
    /* z and r: dH' += dA_zr R_zr, dR_zr += dA_zr^T H' */
    adv__sgemm(p->threads, 0, 0, (int)B, (int)H, (int)(2 * H), 1.f, dstep,
               (int)GH, R, (int)H, 1.f, dh, (int)H);
    if (gR)
      adv__sgemm(p->threads, 1, 0, (int)(2 * H), (int)H, (int)B, 1.f, dstep,
                 (int)GH, hp, (int)H, 1.f, gR, (int)H);
    for (int64_t b = 0; b < B; b++) {
      int64_t len = seq_len(rp, n, b);
      if (s < len)
        memcpy(da + xrow(rp, is_rev(rp, d) ? len - 1 - s : s, b) * GH,
               dstep + b * GH, sizeof(float) * (size_t)GH);
    }
  }
  rnn_dir_tail(p, n, rp, d, da, dh, NULL);
}

/* LSTM, GRU and RNN backward through time: each direction in turn. */
static int rnn_backward(adv_plan *p, adv_pnode *n) {
  const rnn_params *rp = n->params;
  if (!rp->act)
    return ADV_EINTERNAL;
  for (int d = 0; d < rp->D; d++)
    (rp->kind == RNN_LSTM  ? lstm_dir_bw
     : rp->kind == RNN_GRU ? gru_dir_bw
                           : rnn_dir_bw)(p, n, rp, d, adv__scratch(p, n, 0));
  return ADV_OK;
}

#define RNN_BW_NEEDS                                                           \
  (ADV_BW_IN(0) | ADV_BW_IN(1) | ADV_BW_IN(2) | ADV_BW_IN(4) | ADV_BW_IN(5) |  \
   ADV_BW_IN(6) | ADV_BW_IN(7))

const adv_op_def adv__op_lstm = {"LSTM",       lstm_infer,   rnn_forward,
                                 rnn_backward, RNN_BW_NEEDS, 0};
const adv_op_def adv__op_gru = {"GRU",        gru_infer,    rnn_forward,
                                rnn_backward, RNN_BW_NEEDS, 0};
const adv_op_def adv__op_rnn = {"RNN",        vrnn_infer,   rnn_forward,
                                rnn_backward, RNN_BW_NEEDS, 0};
