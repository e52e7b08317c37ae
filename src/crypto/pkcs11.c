/*
 * pkcs11.c - master keys held in a PKCS#11 token (issue 12 item 4).
 *
 * The token is found through GnuTLS's PKCS#11 support (p11-kit: the modules
 * registered with p11-kit, or the URI's module-path); the key is an AES-256
 * secret key object (CKA_SENSITIVE, not CKA_EXTRACTABLE) addressed by its
 * label. Wrapping and unwrapping of tenant keys run inside the token with
 * CKM_AES_GCM and produce exactly the software format of sbx_key_wrap
 * (sbx/crypto.h), so the key never enters this process. See sbx/crypto.h
 * (sbx_kek_open) for the URI attributes we read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto_internal.h"

#define WRAP_HDR_LEN 16
#define ATTR_MAX 256

struct sbx__p11 {
  pthread_mutex_t mu; /* one operation at a time on the session */
  CK_FUNCTION_LIST *f;
  CK_SESSION_HANDLE s;
  CK_OBJECT_HANDLE key;
  uint8_t id[SBX_KEY_ID_LEN];
};

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static int g_init_rc;
static char g_module[ATTR_MAX];

/* gnutls_pkcs11_init once per process: the p11-kit registered modules, or
 * only the module-path of the first URI that named one. */
static void p11_init(void) {
  if (g_module[0]) {
    g_init_rc = gnutls_pkcs11_init(GNUTLS_PKCS11_FLAG_MANUAL, NULL);
    if (g_init_rc >= 0)
      g_init_rc = gnutls_pkcs11_add_provider(g_module, NULL);
  } else {
    g_init_rc = gnutls_pkcs11_init(GNUTLS_PKCS11_FLAG_AUTO, NULL);
  }
}

/* The value of attribute name in the path part (sep ';', query 0) or the
 * query part (sep '&', query 1) of uri, percent-decoded into out. 1 when
 * found, 0 when absent, -1 when malformed or too long. */
static int uri_attr(const char *uri, const char *name, int query, char *out,
                    size_t cap) {
  const char *q = strchr(uri, '?');
  const char *p = query ? (q ? q + 1 : NULL) : uri + 7; /* after "pkcs11:" */
  const char *end = query ? uri + strlen(uri) : (q ? q : uri + strlen(uri));
  if (!p)
    return 0;
  size_t nl = strlen(name);
  while (p < end) {
    const char *e = memchr(p, query ? '&' : ';', (size_t)(end - p));
    if (!e)
      e = end;
    if ((size_t)(e - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
      size_t o = 0;
      for (const char *c = p + nl + 1; c < e; c++) {
        int ch = (unsigned char)*c;
        if (ch == '%') {
          int h = c + 2 < e ? sbx__hexval(c[1]) : -1,
              l = h >= 0 ? sbx__hexval(c[2]) : -1;
          if (l < 0)
            return -1;
          ch = h * 16 + l;
          c += 2;
        }
        if (o + 1 >= cap)
          return -1;
        out[o++] = (char)ch;
      }
      out[o] = 0;
      return 1;
    }
    p = e + 1;
  }
  return 0;
}

/* The user PIN: pin-value, else pin-source (a file, "file:" optional; its
 * first line), else the environment variable SBX_PKCS11_PIN. */
static int get_pin(const char *uri, char *pin, size_t cap) {
  int r = uri_attr(uri, "pin-value", 1, pin, cap);
  if (r)
    return r > 0 ? SBX_OK : SBX_EINVAL;
  char src[ATTR_MAX];
  r = uri_attr(uri, "pin-source", 1, src, sizeof src);
  if (r < 0)
    return SBX_EINVAL;
  if (r > 0) {
    const char *path = !strncmp(src, "file:", 5) ? src + 5 : src;
    FILE *fp = fopen(path, "re");
    if (!fp)
      return errno == ENOENT ? SBX_ENOTFOUND : SBX_EPERM;
    int ok = fgets(pin, (int)cap, fp) != NULL;
    fclose(fp);
    if (!ok)
      return SBX_EFORMAT;
    pin[strcspn(pin, "\r\n")] = 0;
    return SBX_OK;
  }
  const char *e = getenv("SBX_PKCS11_PIN");
  if (!e || strlen(e) >= cap)
    return SBX_ENOTFOUND;
  snprintf(pin, cap, "%s", e);
  return SBX_OK;
}

static int ck_status(CK_RV rv) {
  switch (rv) {
  case CKR_OK:
    return SBX_OK;
  case CKR_PIN_INCORRECT:
  case CKR_PIN_LOCKED:
  case CKR_USER_NOT_LOGGED_IN:
    return SBX_EAUTH;
  case CKR_HOST_MEMORY:
  case CKR_DEVICE_MEMORY:
    return SBX_ENOMEM;
  case CKR_ENCRYPTED_DATA_INVALID:
  case CKR_ENCRYPTED_DATA_LEN_RANGE:
    return SBX_ECRYPTO;
  case CKR_MECHANISM_INVALID:
  case CKR_MECHANISM_PARAM_INVALID:
    return SBX_EUNSUPPORTED;
  default:
    return SBX_EIO;
  }
}

/* Opens a logged-in read/write session on the token of uri; *label gets
 * the URI's object label. */
static int open_session(const char *uri, CK_FUNCTION_LIST **f,
                        CK_SESSION_HANDLE *s, CK_SLOT_ID *slot_out,
                        char label[ATTR_MAX]) {
  if (strncmp(uri, "pkcs11:", 7))
    return SBX_EINVAL;
  if (uri_attr(uri, "object", 0, label, ATTR_MAX) != 1 || !label[0])
    return SBX_EINVAL;
  char mod[ATTR_MAX];
  int r = uri_attr(uri, "module-path", 1, mod, sizeof mod);
  if (r < 0)
    return SBX_EINVAL;
  if (r > 0 && !g_module[0])
    snprintf(g_module, sizeof g_module, "%s", mod);
  pthread_once(&g_init_once, p11_init);
  if (g_init_rc < 0)
    return SBX_EUNSUPPORTED;
  void *ptr = NULL;
  unsigned long slot = 0;
  if (gnutls_pkcs11_token_get_ptr(uri, &ptr, &slot, 0) < 0 || !ptr)
    return SBX_ENOTFOUND;
  *f = ptr;
  *slot_out = slot;
  char pin[ATTR_MAX];
  int rc = get_pin(uri, pin, sizeof pin);
  if (rc)
    return rc;
  CK_RV rv = (*f)->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                 NULL, NULL, s);
  if (rv == CKR_OK) {
    rv = (*f)->C_Login(*s, CKU_USER, (unsigned char *)pin, strlen(pin));
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
      rv = CKR_OK;
    if (rv != CKR_OK)
      (*f)->C_CloseSession(*s);
  }
  sbx_memwipe(pin, sizeof pin);
  return ck_status(rv);
}

/* The AES secret key labelled label (CK_INVALID_HANDLE when none). */
static CK_OBJECT_HANDLE find_key(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE s,
                                 const char *label, int *count) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                         {CKA_KEY_TYPE, &kt, sizeof kt},
                         {CKA_LABEL, (void *)label, strlen(label)}};
  CK_OBJECT_HANDLE h[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
  CK_ULONG n = 0;
  *count = 0;
  if (f->C_FindObjectsInit(s, tmpl, 3) != CKR_OK)
    return CK_INVALID_HANDLE;
  f->C_FindObjects(s, h, 2, &n);
  f->C_FindObjectsFinal(s);
  *count = (int)n;
  return n == 1 ? h[0] : CK_INVALID_HANDLE;
}

/* The public id of a token key: SHA-256("sbx pkcs11 kek v1" | token
 * serial | label), first 8 bytes. It names the key object, not its value
 * (which we cannot read). */
static void token_key_id(CK_FUNCTION_LIST *f, CK_SLOT_ID slot,
                         const char *label, uint8_t id[SBX_KEY_ID_LEN]) {
  CK_TOKEN_INFO ti;
  memset(&ti, 0, sizeof ti);
  f->C_GetTokenInfo(slot, &ti);
  uint8_t buf[17 + 16 + ATTR_MAX];
  size_t n = 0;
  memcpy(buf, "sbx pkcs11 kek v1", 17);
  n = 17;
  memcpy(buf + n, ti.serialNumber, 16);
  n += 16;
  size_t ll = strlen(label);
  memcpy(buf + n, label, ll);
  n += ll;
  uint8_t d[SBX_SHA256_LEN];
  sbx_sha256(buf, n, d);
  memcpy(id, d, SBX_KEY_ID_LEN);
}

int sbx__p11_open(const char *uri, sbx__p11 **out) {
  *out = NULL;
  sbx__p11 *p = calloc(1, sizeof *p);
  if (!p)
    return SBX_ENOMEM;
  char label[ATTR_MAX];
  CK_SLOT_ID slot;
  int rc = open_session(uri, &p->f, &p->s, &slot, label);
  if (rc) {
    free(p);
    return rc;
  }
  int count;
  p->key = find_key(p->f, p->s, label, &count);
  if (p->key == CK_INVALID_HANDLE) {
    p->f->C_CloseSession(p->s);
    free(p);
    return count > 1 ? SBX_EEXIST : SBX_ENOTFOUND;
  }
  token_key_id(p->f, slot, label, p->id);
  pthread_mutex_init(&p->mu, NULL);
  *out = p;
  return SBX_OK;
}

void sbx__p11_free(sbx__p11 *p) {
  if (!p)
    return;
  p->f->C_CloseSession(p->s);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

void sbx__p11_id(const sbx__p11 *p, uint8_t id[SBX_KEY_ID_LEN]) {
  memcpy(id, p->id, SBX_KEY_ID_LEN);
}

/* AES-256-GCM in the token: enc 1 encrypts in[0..n) to out (n + 16), enc 0
 * decrypts (n - 16). aad = a[0..an) | b[0..bn). */
static int gcm(sbx__p11 *p, int enc, const uint8_t nonce[SBX_NONCE_LEN],
               const void *a, size_t an, const void *b, size_t bn,
               const uint8_t *in, size_t n, uint8_t *out, size_t *outlen) {
  uint8_t *aad = malloc(an + bn + 1);
  if (!aad)
    return SBX_ENOMEM;
  memcpy(aad, a, an);
  if (bn)
    memcpy(aad + an, b, bn);
  CK_GCM_PARAMS gp;
  memset(&gp, 0, sizeof gp);
  gp.pIv = (unsigned char *)nonce;
  gp.ulIvLen = SBX_NONCE_LEN;
  gp.ulIvBits = 8 * SBX_NONCE_LEN;
  gp.pAAD = aad;
  gp.ulAADLen = an + bn;
  gp.ulTagBits = 8 * SBX_TAG_LEN;
  CK_MECHANISM m = {CKM_AES_GCM, &gp, sizeof gp};
  CK_ULONG ol = *outlen;
  pthread_mutex_lock(&p->mu);
  CK_RV rv = enc ? p->f->C_EncryptInit(p->s, &m, p->key)
                 : p->f->C_DecryptInit(p->s, &m, p->key);
  if (rv == CKR_OK)
    rv = enc ? p->f->C_Encrypt(p->s, (unsigned char *)in, n, out, &ol)
             : p->f->C_Decrypt(p->s, (unsigned char *)in, n, out, &ol);
  pthread_mutex_unlock(&p->mu);
  free(aad);
  *outlen = ol;
  if (rv != CKR_OK && !enc)
    return rv == CKR_HOST_MEMORY ? SBX_ENOMEM : SBX_ECRYPTO;
  return ck_status(rv);
}

int sbx__p11_wrap(sbx__p11 *p, const void *ctx, size_t ctxlen,
                  const sbx_key *key, uint8_t out[SBX_WRAPPED_KEY_LEN]) {
  memcpy(out, "SBXW", 4);
  out[4] = 1; /* version */
  out[5] = 1; /* AES-256-GCM */
  out[6] = out[7] = 0;
  memcpy(out + 8, p->id, SBX_KEY_ID_LEN);
  uint8_t *nonce = out + WRAP_HDR_LEN;
  int rc = sbx_random(nonce, SBX_NONCE_LEN);
  size_t ol = SBX_KEY_LEN + SBX_TAG_LEN;
  if (!rc)
    rc = gcm(p, 1, nonce, out, WRAP_HDR_LEN + SBX_NONCE_LEN, ctx, ctxlen,
             key->b, SBX_KEY_LEN, out + WRAP_HDR_LEN + SBX_NONCE_LEN, &ol);
  if (!rc && ol != SBX_KEY_LEN + SBX_TAG_LEN)
    rc = SBX_EINTERNAL;
  if (rc)
    sbx_memwipe(out, SBX_WRAPPED_KEY_LEN);
  return rc;
}

int sbx__p11_unwrap(sbx__p11 *p, const void *ctx, size_t ctxlen,
                    const uint8_t *in, sbx_key *key) {
  uint8_t tmp[SBX_KEY_LEN + SBX_TAG_LEN];
  size_t ol = sizeof tmp;
  int rc = gcm(p, 0, in + WRAP_HDR_LEN, in, WRAP_HDR_LEN + SBX_NONCE_LEN, ctx,
               ctxlen, in + WRAP_HDR_LEN + SBX_NONCE_LEN,
               SBX_KEY_LEN + SBX_TAG_LEN, tmp, &ol);
  if (!rc && ol == SBX_KEY_LEN)
    memcpy(key->b, tmp, SBX_KEY_LEN);
  else
    rc = rc ? rc : SBX_ECRYPTO;
  sbx_memwipe(tmp, sizeof tmp);
  return rc;
}

int sbx_pkcs11_key_create(const char *uri) {
  if (!uri)
    return SBX_EINVAL;
  CK_FUNCTION_LIST *f;
  CK_SESSION_HANDLE s;
  CK_SLOT_ID slot;
  char label[ATTR_MAX];
  int rc = open_session(uri, &f, &s, &slot, label);
  if (rc)
    return rc;
  int count;
  find_key(f, s, label, &count);
  if (count) {
    f->C_CloseSession(s);
    return SBX_EEXIST;
  }
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ULONG len = SBX_KEY_LEN;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  uint8_t kid[8];
  sbx_random(kid, sizeof kid);
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &kt, sizeof kt},
      {CKA_VALUE_LEN, &len, sizeof len}, {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},   {CKA_SENSITIVE, &yes, sizeof yes},
      {CKA_EXTRACTABLE, &no, sizeof no}, {CKA_ENCRYPT, &yes, sizeof yes},
      {CKA_DECRYPT, &yes, sizeof yes},   {CKA_WRAP, &no, sizeof no},
      {CKA_UNWRAP, &no, sizeof no},      {CKA_LABEL, label, strlen(label)},
      {CKA_ID, kid, sizeof kid},
  };
  CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
  CK_OBJECT_HANDLE h;
  CK_RV rv = f->C_GenerateKey(s, &m, tmpl, sizeof tmpl / sizeof tmpl[0], &h);
  f->C_CloseSession(s);
  return ck_status(rv);
}

int sbx_pkcs11_key_extractable(const char *uri, int *sensitive,
                               int *extractable) {
  CK_FUNCTION_LIST *f;
  CK_SESSION_HANDLE s;
  CK_SLOT_ID slot;
  char label[ATTR_MAX];
  int rc = open_session(uri, &f, &s, &slot, label);
  if (rc)
    return rc;
  int count;
  CK_OBJECT_HANDLE h = find_key(f, s, label, &count);
  CK_BBOOL sens = CK_FALSE, ext = CK_TRUE;
  CK_ATTRIBUTE a[] = {{CKA_SENSITIVE, &sens, sizeof sens},
                      {CKA_EXTRACTABLE, &ext, sizeof ext}};
  rc = h == CK_INVALID_HANDLE ? SBX_ENOTFOUND
                              : ck_status(f->C_GetAttributeValue(s, h, a, 2));
  /* the value itself must be refused */
  if (!rc) {
    uint8_t v[64];
    CK_ATTRIBUTE va = {CKA_VALUE, v, sizeof v};
    CK_RV rv = f->C_GetAttributeValue(s, h, &va, 1);
    if (rv == CKR_OK && va.ulValueLen != (CK_ULONG)-1)
      ext = CK_TRUE; /* readable: report it as extractable */
    sbx_memwipe(v, sizeof v);
  }
  f->C_CloseSession(s);
  *sensitive = sens == CK_TRUE;
  *extractable = ext == CK_TRUE;
  return rc;
}
