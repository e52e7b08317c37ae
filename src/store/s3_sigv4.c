/*
 * s3_sigv4.c - AWS Signature Version 4 for the S3 backend: URI encoding, the
 * canonical query string and the Authorization header (s3.h). Pure
 * functions on strings; tested against AWS's published vectors in
 * tests/store/test_s3.c.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"
#include "s3_sb.h"
#include "sbx/crypto.h"

int sbx_s3_uri_encode(const char *in, int keep_slash, char *out, size_t cap) {
  if (!in || !out)
    return SBX_EINVAL;
  sb b = {0};
  sb_adds(&b, "");
  sb_enc(&b, in, keep_slash);
  return sb_out(&b, out, cap);
}

/* ---- canonical query ---- */

typedef struct qpair {
  char *k, *v;
} qpair;

static int qpair_cmp(const void *a, const void *b) {
  const qpair *x = a, *y = b;
  int c = strcmp(x->k, y->k);
  return c ? c : strcmp(x->v, y->v);
}

static char *enc_dup(const char *s) {
  sb b = {0};
  sb_adds(&b, "");
  sb_enc(&b, s ? s : "", 0);
  if (b.oom) {
    sb_free(&b);
    return NULL;
  }
  return b.p;
}

int sbx_s3_query(const char *const *kv, size_t n, char *out, size_t cap) {
  if ((!kv && n) || !out)
    return SBX_EINVAL;
  qpair *q = calloc(n ? n : 1, sizeof *q);
  int rc = q ? SBX_OK : SBX_ENOMEM;
  for (size_t i = 0; !rc && i < n; i++) {
    q[i].k = enc_dup(kv[2 * i]);
    q[i].v = enc_dup(kv[2 * i + 1]);
    if (!q[i].k || !q[i].v)
      rc = SBX_ENOMEM;
  }
  sb b = {0};
  if (!rc) {
    qsort(q, n, sizeof *q, qpair_cmp);
    sb_adds(&b, "");
    for (size_t i = 0; i < n; i++) {
      if (i)
        sb_adds(&b, "&");
      sb_adds(&b, q[i].k);
      sb_adds(&b, "=");
      sb_adds(&b, q[i].v);
    }
    rc = sb_out(&b, out, cap);
  }
  for (size_t i = 0; q && i < n; i++) {
    free(q[i].k);
    free(q[i].v);
  }
  free(q);
  return rc;
}

/* ---- SigV4 ---- */

typedef struct hdr_ix {
  char name[64];
  const char *value;
} hdr_ix;

static int hdr_cmp(const void *a, const void *b) {
  return strcmp(((const hdr_ix *)a)->name, ((const hdr_ix *)b)->name);
}

/* value with leading/trailing blanks removed and inner runs collapsed */
static void sb_trimmed(sb *b, const char *v) {
  while (*v == ' ' || *v == '\t')
    v++;
  int sp = 0;
  for (; *v; v++) {
    if (*v == ' ' || *v == '\t') {
      sp = 1;
      continue;
    }
    if (sp)
      sb_add(b, " ", 1);
    sp = 0;
    sb_add(b, v, 1);
  }
}

static int hmac(const void *k, size_t kn, const char *msg, uint8_t out[32]) {
  return sbx_hmac_sha256(k, kn, msg, strlen(msg), out);
}

int sbx_sigv4_sign(const sbx_sigv4_req *r, char *auth, size_t cap,
                   char **creq_out, char **sts_out) {
  if (creq_out)
    *creq_out = NULL;
  if (sts_out)
    *sts_out = NULL;
  if (!r || !auth || !r->method || !r->canonical_uri || !r->payload_sha256 ||
      !r->access_key || !r->secret_key || !r->region || !r->service ||
      !r->amz_date || strlen(r->amz_date) != 16 || r->nheaders > 32 ||
      (r->nheaders && !r->headers))
    return SBX_EINVAL;
  hdr_ix h[32];
  for (size_t i = 0; i < r->nheaders; i++) {
    const char *nm = r->headers[i].name;
    size_t l = strlen(nm);
    if (!l || l >= sizeof h[i].name || !r->headers[i].value)
      return SBX_EINVAL;
    for (size_t j = 0; j <= l; j++)
      h[i].name[j] = (char)tolower((unsigned char)nm[j]);
    h[i].value = r->headers[i].value;
  }
  qsort(h, r->nheaders, sizeof h[0], hdr_cmp);
  sb signed_h = {0}, creq = {0}, sts = {0}, out = {0};
  sb_adds(&signed_h, "");
  for (size_t i = 0; i < r->nheaders; i++) {
    if (i)
      sb_adds(&signed_h, ";");
    sb_adds(&signed_h, h[i].name);
  }
  sb_adds(&creq, r->method);
  sb_adds(&creq, "\n");
  sb_adds(&creq, r->canonical_uri);
  sb_adds(&creq, "\n");
  sb_adds(&creq, r->canonical_query ? r->canonical_query : "");
  sb_adds(&creq, "\n");
  for (size_t i = 0; i < r->nheaders; i++) {
    sb_adds(&creq, h[i].name);
    sb_adds(&creq, ":");
    sb_trimmed(&creq, h[i].value);
    sb_adds(&creq, "\n");
  }
  sb_adds(&creq, "\n");
  if (signed_h.p)
    sb_adds(&creq, signed_h.p);
  sb_adds(&creq, "\n");
  sb_adds(&creq, r->payload_sha256);
  int rc = creq.oom || signed_h.oom ? SBX_ENOMEM : SBX_OK;
  uint8_t d[32];
  char dhex[65], date8[9];
  memcpy(date8, r->amz_date, 8);
  date8[8] = 0;
  if (!rc)
    rc = sbx_sha256(creq.p, creq.n, d);
  if (!rc) {
    sbx_hex(d, 32, dhex);
    sb_adds(&sts, "AWS4-HMAC-SHA256\n");
    sb_adds(&sts, r->amz_date);
    sb_addf(&sts, "\n%s/%s/%s/aws4_request\n", date8, r->region, r->service);
    sb_adds(&sts, dhex);
    if (sts.oom)
      rc = SBX_ENOMEM;
  }
  /* signing key: HMAC chain over date, region, service, "aws4_request" */
  uint8_t k[32], k2[32];
  sb ksecret = {0};
  sb_adds(&ksecret, "AWS4");
  sb_adds(&ksecret, r->secret_key);
  if (!rc && ksecret.oom)
    rc = SBX_ENOMEM;
  if (!rc)
    rc = hmac(ksecret.p, ksecret.n, date8, k);
  if (!rc)
    rc = hmac(k, 32, r->region, k2);
  if (!rc)
    rc = hmac(k2, 32, r->service, k);
  if (!rc)
    rc = hmac(k, 32, "aws4_request", k2);
  if (!rc)
    rc = hmac(k2, 32, sts.p, d);
  sbx_memwipe(k, sizeof k);
  sbx_memwipe(k2, sizeof k2);
  if (ksecret.p)
    sbx_memwipe(ksecret.p, ksecret.n);
  sb_free(&ksecret);
  if (!rc) {
    sbx_hex(d, 32, dhex);
    sb_addf(&out, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, ",
            r->access_key, date8, r->region, r->service);
    sb_adds(&out, "SignedHeaders=");
    sb_adds(&out, signed_h.p ? signed_h.p : "");
    sb_adds(&out, ", Signature=");
    sb_adds(&out, dhex);
    rc = sb_out(&out, auth, cap);
  }
  if (!rc && creq_out) {
    *creq_out = creq.p;
    creq.p = NULL;
  }
  if (!rc && sts_out) {
    *sts_out = sts.p;
    sts.p = NULL;
  }
  sb_free(&out);
  sb_free(&signed_h);
  sb_free(&creq);
  sb_free(&sts);
  return rc;
}
