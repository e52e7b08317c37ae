/*
 * test_pkcs11.c - issue 12 item 4: the master key in a PKCS#11 token.
 *
 * Starts Debian's SoftHSM 2 in a temp dir (SOFTHSM2_CONF, a token made with
 * softhsm2-util) reached through GnuTLS's PKCS#11 support (the module
 * p11-kit registers), and checks:
 *   - sbx_pkcs11_key_create makes an AES-256 key that is sensitive, not
 *     extractable, and whose value the token refuses to give out;
 *   - reference: the token's wraps are exactly sbx_key_wrap's format. A
 *     second key with a value we know is imported into the token (raw
 *     C_CreateObject): what the token wraps, software unwraps with the
 *     known value, and the other way round;
 *   - wrong context, a flipped byte, a wrong PIN are refused;
 *   - a store opened with the pkcs11: spec round-trips an object, keeps no
 *     key file in its data dir, and cannot be opened with another token
 *     key (SBX_EKEY) nor read after the token is gone.
 * Exit 77 (skipped) when softhsm2 is not installed.
 */
#define _GNU_SOURCE
#include <gnutls/gnutls.h>
#include <gnutls/pkcs11.h>
#include <p11-kit/pkcs11.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "sbx/crypto.h"
#include "sbx/store.h"

static char g_dir[64];
static char g_uri[512], g_uri_known[512], g_uri_badpin[512], g_uri_other[512];
static const char *SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so";

static int sh(const char *fmt, const char *a) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, fmt, a, a);
  return system(cmd);
}

/* Imports a known AES-256 value as label "known" (raw PKCS#11 through
 * GnuTLS's function list): the reference for the wrap format. */
static int import_known(const sbx_key *k) {
  void *ptr = NULL;
  unsigned long slot = 0;
  if (gnutls_pkcs11_token_get_ptr(g_uri, &ptr, &slot, 0) < 0)
    return -1;
  CK_FUNCTION_LIST *f = ptr;
  CK_SESSION_HANDLE s;
  if (f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                       &s) != CKR_OK)
    return -1;
  CK_RV rv = f->C_Login(s, CKU_USER, (unsigned char *)"1234", 4);
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
    return -1;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE t[] = {
      {CKA_CLASS, &cls, sizeof cls},   {CKA_KEY_TYPE, &kt, sizeof kt},
      {CKA_TOKEN, &yes, sizeof yes},   {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_ENCRYPT, &yes, sizeof yes}, {CKA_DECRYPT, &yes, sizeof yes},
      {CKA_LABEL, "known", 5},         {CKA_VALUE, (void *)k->b, SBX_KEY_LEN}};
  CK_OBJECT_HANDLE h;
  rv = f->C_CreateObject(s, t, sizeof t / sizeof t[0], &h);
  f->C_CloseSession(s);
  return rv == CKR_OK ? 0 : -1;
}

TEST(token_key_is_born_inside_and_stays) {
  CHECK_EQ_INT(sbx_pkcs11_key_create(g_uri), SBX_OK);
  CHECK_EQ_INT(sbx_pkcs11_key_create(g_uri), SBX_EEXIST);
  int sens = -1, ext = -1;
  CHECK_EQ_INT(sbx_pkcs11_key_extractable(g_uri, &sens, &ext), SBX_OK);
  CHECK_EQ_INT(sens, 1);
  CHECK_EQ_INT(ext, 0);
  sbx_kek *k = NULL;
  CHECK_EQ_INT(sbx_kek_open(g_uri, &k), SBX_OK);
  CHECK(k && sbx_kek_in_token(k));
  sbx_kek_free(k);
  /* wrong PIN, unknown label */
  k = NULL;
  CHECK_EQ_INT(sbx_kek_open(g_uri_badpin, &k), SBX_EAUTH);
  CHECK(!k);
  char nolabel[600];
  snprintf(nolabel, sizeof nolabel,
           "pkcs11:token=sbxtest;object=nosuch?pin-value=1234");
  CHECK_EQ_INT(sbx_kek_open(nolabel, &k), SBX_ENOTFOUND);
}

TEST(token_wrap_matches_software_reference) {
  sbx_key known, tk, out;
  CHECK_EQ_INT(sbx_key_generate(&known), SBX_OK);
  CHECK_EQ_INT(import_known(&known), 0);
  sbx_kek *kt = NULL;
  CHECK_EQ_INT(sbx_kek_open(g_uri_known, &kt), SBX_OK);
  if (!kt)
    return;
  CHECK_EQ_INT(sbx_key_generate(&tk), SBX_OK);
  static const char ctx[] = "tenant t1 key v1";
  uint8_t w[SBX_WRAPPED_KEY_LEN];
  /* token wraps, software (the known value) unwraps */
  CHECK_EQ_INT(sbx_kek_wrap(kt, ctx, sizeof ctx - 1, &tk, w), SBX_OK);
  CHECK_EQ_INT(sbx_key_unwrap(&known, ctx, sizeof ctx - 1, w, sizeof w, &out),
               SBX_OK);
  CHECK(!memcmp(out.b, tk.b, SBX_KEY_LEN));
  /* software wraps, the token unwraps */
  CHECK_EQ_INT(sbx_key_wrap(&known, ctx, sizeof ctx - 1, &tk, w), SBX_OK);
  memset(&out, 0, sizeof out);
  CHECK_EQ_INT(sbx_kek_unwrap(kt, ctx, sizeof ctx - 1, w, sizeof w, &out),
               SBX_OK);
  CHECK(!memcmp(out.b, tk.b, SBX_KEY_LEN));
  /* the context is bound; every byte is authenticated */
  CHECK_EQ_INT(sbx_kek_unwrap(kt, "tenant t2 key v1", 16, w, sizeof w, &out),
               SBX_ECRYPTO);
  for (size_t i = 16; i < sizeof w; i += 7) {
    w[i] ^= 1;
    CHECK_EQ_INT(sbx_kek_unwrap(kt, ctx, sizeof ctx - 1, w, sizeof w, &out),
                 SBX_ECRYPTO);
    w[i] ^= 1;
  }
  /* sealed blobs (the server's private keys) */
  uint8_t *b = NULL, *pt = NULL;
  size_t bn = 0, pn = 0;
  static const char pem[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n";
  CHECK_EQ_INT(sbx_kek_seal_blob(kt, "tls-key", pem, sizeof pem - 1, &b, &bn),
               SBX_OK);
  CHECK(b && !memmem(b, bn, "PRIVATE", 7));
  CHECK_EQ_INT(sbx_kek_open_blob(kt, "tls-key", b, bn, &pt, &pn), SBX_OK);
  CHECK(pt && pn == sizeof pem - 1 && !memcmp(pt, pem, pn));
  free(pt);
  pt = NULL;
  CHECK_EQ_INT(sbx_kek_open_blob(kt, "jwt-key", b, bn, &pt, &pn), SBX_ECRYPTO);
  free(b);
  sbx_kek_free(kt);
  sbx_key_wipe(&known);
}

static int count_files(const char *dir, const char *name) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "find %s -name '%s' | grep -q .", dir, name);
  return system(cmd) == 0;
}

TEST(store_on_a_token_key) {
  char dd[128];
  snprintf(dd, sizeof dd, "%s/data", g_dir);
  sbx_store_params p = sbx_store_default_params();
  p.data_dir = dd;
  p.master_key_spec = g_uri;
  p.fsync = 0;
  sbx_store *st = NULL;
  CHECK_EQ_INT(sbx_store_open(&p, &st), SBX_OK);
  if (!st)
    return;
  CHECK_EQ_INT(sbx_store_tenant_create(st, "t1", "T1"), SBX_OK);
  sbx_put_params pp = {NULL, "model", "m.onnx", 0};
  sbx_object o;
  static const char data[] = "weights weights weights";
  CHECK_EQ_INT(sbx_store_put(st, "t1", &pp, data, sizeof data, &o), SBX_OK);
  sbx_store_close(st);
  CHECK(!count_files(dd, "*.key"));
  /* reopen: the data is readable through the token */
  st = NULL;
  CHECK_EQ_INT(sbx_store_open(&p, &st), SBX_OK);
  void *got = NULL;
  size_t n = 0;
  if (st)
    CHECK_EQ_INT(sbx_store_get_alloc(st, "t1", o.id, 1024, &got, &n), SBX_OK);
  CHECK(got && n == sizeof data && !memcmp(got, data, n));
  free(got);
  sbx_store_close(st);
  /* another token key (same token, other label) does not open it */
  CHECK_EQ_INT(sbx_pkcs11_key_create(g_uri_other), SBX_OK);
  p.master_key_spec = g_uri_other;
  st = NULL;
  CHECK_EQ_INT(sbx_store_open(&p, &st), SBX_EKEY);
  CHECK(!st);
  /* a copy of the data dir without the token is useless: nothing in it
   * unwraps the tenant keys (a software key from its bytes fails too) */
  sbx_key guess;
  memset(&guess, 0, sizeof guess);
  p.master_key_spec = NULL;
  p.master_key = &guess;
  CHECK_EQ_INT(sbx_store_open(&p, &st), SBX_EKEY);
}

int main(void) {
  if (access(SOFTHSM_LIB, R_OK) ||
      system("command -v softhsm2-util >/dev/null")) {
    fprintf(stderr, "SKIP: softhsm2 not installed\n");
    return 77;
  }
  snprintf(g_dir, sizeof g_dir, "/tmp/sbx_p11_XXXXXX");
  if (!mkdtemp(g_dir))
    return 1;
  char conf[128], tokens[128];
  snprintf(conf, sizeof conf, "%s/softhsm2.conf", g_dir);
  snprintf(tokens, sizeof tokens, "%s/tokens", g_dir);
  mkdir(tokens, 0700);
  FILE *f = fopen(conf, "w");
  if (!f)
    return 1;
  fprintf(f,
          "directories.tokendir = %s\nobjectstore.backend = file\n"
          "log.level = ERROR\nslots.removable = false\n",
          tokens);
  fclose(f);
  setenv("SOFTHSM2_CONF", conf, 1);
  if (system("softhsm2-util --init-token --free --label sbxtest --pin 1234 "
             "--so-pin 5678 >/dev/null")) {
    fprintf(stderr, "FAIL: softhsm2-util --init-token\n");
    return 1;
  }
  snprintf(g_uri, sizeof g_uri,
           "pkcs11:token=sbxtest;object=aisbxd-master?pin-value=1234");
  snprintf(g_uri_known, sizeof g_uri_known,
           "pkcs11:token=sbxtest;object=known?pin-value=1234");
  snprintf(g_uri_badpin, sizeof g_uri_badpin,
           "pkcs11:token=sbxtest;object=aisbxd-master?pin-value=9999");
  snprintf(g_uri_other, sizeof g_uri_other,
           "pkcs11:token=sbxtest;object=other?pin-value=1234");
  RUN(token_key_is_born_inside_and_stays);
  RUN(token_wrap_matches_software_reference);
  RUN(store_on_a_token_key);
  sh("rm -rf %s", g_dir);
  return harness_report();
}
