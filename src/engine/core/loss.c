/*
 * loss.c - per-sample attack losses on logits and their gradients dL/dz.
 * Definitions (all maximized by the attacker) are in adv/adv.h and
 * docs/losses.md. Ties in max/sort go to the lowest class index, as in
 * PyTorch, so gradients match its autograd.
 */
#include "core/engine.h"

#include <math.h>
#include <string.h>

adv_loss_params adv_loss_default_params(adv_loss_kind kind) {
  adv_loss_params lp;
  lp.kind = kind;
  lp.targeted = 0;
  lp.kappa = INFINITY;
  lp.ref = NULL;
  lp.n_ref = 0;
  return lp;
}

/* Index of the largest z[i] with i != skip (lowest index on ties). */
static int64_t argmax_except(const float *z, int64_t k, int64_t skip) {
  int64_t best = -1;
  for (int64_t i = 0; i < k; i++) {
    if (i == skip)
      continue;
    if (best < 0 || z[i] > z[best])
      best = i;
  }
  return best;
}

/* Indices of the 4 largest logits in descending order (stable: lower index
 * first on ties), like torch.sort(descending=True) on distinct values. */
static void top4(const float *z, int64_t k, int64_t idx[4]) {
  for (int j = 0; j < 4; j++)
    idx[j] = -1;
  for (int64_t i = 0; i < k; i++) {
    for (int j = 0; j < 4; j++) {
      if (idx[j] < 0 || z[i] > z[idx[j]]) {
        for (int q = 3; q > j; q--)
          idx[q] = idx[q - 1];
        idx[j] = i;
        break;
      }
    }
  }
}

/*
 * The output-distance loss (adv/adv.h): sample i against reference row
 * y[i]; untargeted ||z - r||_2, targeted -||z - r||_2, with the gradient
 * (z - r) / ||z - r|| (negated when targeted) and, at z == r, the
 * subgradient (+-1)/sqrt(k) (untargeted) or 0 (targeted).
 */
static int output_dist(adv_loss_params lp, const float *z, int64_t n, int64_t k,
                       const int64_t *y, float *loss, float *dz, adv_err *err) {
  if (k < 1 || !lp.ref || !y)
    return adv__error(err, ADV_EINVAL,
                      "output distance needs reference outputs and rows");
  double sign = lp.targeted ? -1.0 : 1.0;
  for (int64_t i = 0; i < n; i++) {
    if (y[i] < 0 || y[i] >= lp.n_ref)
      return adv__error(err, ADV_EINVAL, "reference row %lld out of range",
                        (long long)y[i]);
    const float *zi = z + i * k, *ri = lp.ref + y[i] * k;
    double s = 0;
    for (int64_t j = 0; j < k; j++) {
      double d = (double)zi[j] - ri[j];
      s += d * d;
    }
    double nrm = sqrt(s);
    if (loss)
      loss[i] = (float)(sign * nrm);
    if (!dz)
      continue;
    float *gi = dz + i * k;
    if (nrm > 0) {
      for (int64_t j = 0; j < k; j++)
        gi[j] = (float)(sign * ((double)zi[j] - ri[j]) / nrm);
    } else {
      float u = lp.targeted ? 0.f : (float)(1.0 / sqrt((double)k));
      for (int64_t j = 0; j < k; j++)
        gi[j] = j % 2 ? -u : u;
    }
  }
  return ADV_OK;
}

int adv_loss_eval(adv_loss_params lp, const float *z, int64_t n, int64_t k,
                  const int64_t *y, const int64_t *target, float *loss,
                  float *dz, adv_err *err) {
  if (lp.kind == ADV_LOSS_OUTPUT_DIST)
    return output_dist(lp, z, n, k, y, loss, dz, err);
  if (k < 2)
    return adv__error(err, ADV_EINVAL, "need at least 2 classes");
  if ((lp.kind == ADV_LOSS_DLR) && k < (lp.targeted ? 4 : 3))
    return adv__error(err, ADV_EINVAL, "DLR needs at least %d classes",
                      lp.targeted ? 4 : 3);
  int need_t = lp.targeted || lp.kind == ADV_LOSS_LOGIT;
  if ((!y && lp.kind != ADV_LOSS_LOGIT) || (need_t && !target))
    return adv__error(err, ADV_EINVAL, "labels/targets missing");
  for (int64_t i = 0; i < n; i++) {
    const float *zi = z + i * k;
    float *gi = dz ? dz + i * k : NULL;
    int64_t yi = y ? y[i] : 0, ti = need_t ? target[i] : 0;
    if ((y && (yi < 0 || yi >= k)) || (need_t && (ti < 0 || ti >= k)))
      return adv__error(err, ADV_EINVAL, "label/target %lld out of range",
                        (long long)(y && (yi < 0 || yi >= k) ? yi : ti));
    if (gi)
      memset(gi, 0, sizeof(float) * (size_t)k);
    double L = 0;
    switch (lp.kind) {
    case ADV_LOSS_CE: {
      int64_t c = lp.targeted ? ti : yi;
      float mx = zi[0];
      for (int64_t j = 1; j < k; j++)
        mx = zi[j] > mx ? zi[j] : mx;
      double se = 0;
      for (int64_t j = 0; j < k; j++)
        se += exp((double)zi[j] - mx);
      double lse = mx + log(se);
      double ce = lse - zi[c];
      double sign = lp.targeted ? -1.0 : 1.0;
      L = sign * ce;
      if (gi) { /* softmax - onehot, the "- 1" done in double */
        for (int64_t j = 0; j < k; j++)
          gi[j] = (float)(sign * (exp((double)zi[j] - lse) - (j == c ? 1.0 : 0.0)));
      }
      break;
    }
    case ADV_LOSS_CW: {
      int64_t c = lp.targeted ? ti : yi;
      int64_t o = argmax_except(zi, k, c);
      double margin = lp.targeted ? (double)zi[c] - zi[o] : (double)zi[o] - zi[c];
      if (margin < lp.kappa) {
        L = margin;
        if (gi) {
          gi[c] += lp.targeted ? 1.f : -1.f;
          gi[o] += lp.targeted ? -1.f : 1.f;
        }
      } else {
        L = lp.kappa; /* capped: zero gradient */
      }
      break;
    }
    case ADV_LOSS_DLR: {
      int64_t s[4];
      top4(zi, k, s);
      if (!lp.targeted) {
        int64_t o = argmax_except(zi, k, yi);
        double num = (double)zi[yi] - zi[o];
        double den = (double)zi[s[0]] - zi[s[2]] + 1e-12;
        L = -num / den;
        if (gi) {
          /* dL/dz = -(dnum)/den + num/den^2 * dden */
          gi[yi] += (float)(-1.0 / den);
          gi[o] += (float)(1.0 / den);
          gi[s[0]] += (float)(num / (den * den));
          gi[s[2]] -= (float)(num / (den * den));
        }
      } else {
        double num = (double)zi[yi] - zi[ti];
        double den = (double)zi[s[0]] - 0.5 * ((double)zi[s[2]] + zi[s[3]]) + 1e-12;
        L = -num / den;
        if (gi) {
          gi[yi] += (float)(-1.0 / den);
          gi[ti] += (float)(1.0 / den);
          double q = num / (den * den);
          gi[s[0]] += (float)q;
          gi[s[2]] -= (float)(0.5 * q);
          gi[s[3]] -= (float)(0.5 * q);
        }
      }
      break;
    }
    case ADV_LOSS_LOGIT:
      L = zi[ti];
      if (gi)
        gi[ti] = 1.f;
      break;
    default:
      return adv__error(err, ADV_EINVAL, "unknown loss kind %d", (int)lp.kind);
    }
    if (loss)
      loss[i] = (float)L;
  }
  return ADV_OK;
}
