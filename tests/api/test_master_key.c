/*
 * test_master_key.c - issue 12 item 4 end to end: keys not beside the data.
 *
 *   pkcs11   `aisbxd init --master-key-from pkcs11:...` against SoftHSM 2
 *            (started here in a temp dir): the key is generated in the
 *            token, not extractable; the data dir holds no key file and no
 *            plain private key (TLS and JWT keys sealed); the recorded spec
 *            holds no PIN; the server works (API key request, TLS); a copy
 *            of the data dir on a host whose token lacks the key does not
 *            start.
 *   file     --master-key-from file:<outside the data dir>, and
 *            credential:NAME (a systemd credential): no warning, no key
 *            in the data dir; without the credential no start.
 *   default  the embedded default warns on stderr that a key file in the
 *            data dir is no protection against copying it.
 *   upgrade  plain tls-key.pem / jwt-ed25519.pem of an older version (made
 *            here with GnuTLS) are sealed and removed on start, and are
 *            still the keys in use: the TLS handshake verifies against the
 *            old certificate, the JWKS "x" is the old JWT public key.
 * Exit 77 when softhsm2 is not installed.
 *
 * usage: test_master_key AISBXD
 */
#define _GNU_SOURCE
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "api_testutil.h"
#include "harness.h"
#include "sbx/crypto.h"

static char g_root[64];
static char g_pinfile[128];
static const char *SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so";

/* Runs `aisbxd init` with --master-key-from mk (NULL: none); the admin key
 * into key. Returns the exit status. */
static int init_with(const char *dir, const char *cfg, const char *mk,
                     char key[200]) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "%s init --data-dir %s --config %s --tenant t1%s%s%s 2>%s/init.err",
           g_aisbxd, dir, cfg, mk ? " --master-key-from '" : "", mk ? mk : "",
           mk ? "'" : "", g_root);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[512];
  key[0] = 0;
  while (fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "admin-api-key: ", 15))
      snprintf(key, 200, "%.199s", line + 15);
  }
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* api_start with the server's stderr in errfile. */
static int start_logged(srv *s, const char *dir, const char *cfg,
                        const char *errfile) {
  int saved = dup(2);
  int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) {
    dup2(fd, 2);
    close(fd);
  }
  int rc = api_start(s, dir, cfg);
  dup2(saved, 2);
  close(saved);
  return rc;
}

static int file_has(const char *path, const char *needle) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0;
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static int exists(const char *dir, const char *name) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

/* No file of dir holds a plain PEM private key or a hex master key file. */
static int no_plain_keys(const char *dir) {
  char cmd[1400];
  snprintf(cmd, sizeof cmd,
           "! grep -rl 'PRIVATE KEY' %s --exclude='*.err' >/dev/null && "
           "! find %s -name '*.key' -o -name '*-key.pem' -o -name "
           "'jwt-ed25519.pem' | grep -q .",
           dir, dir);
  return system(cmd) == 0;
}

static void softhsm_conf(const char *name, char *conf, size_t cap) {
  char tokens[256];
  snprintf(tokens, sizeof tokens, "%s/%s-tokens", g_root, name);
  mkdir(tokens, 0700);
  snprintf(conf, cap, "%s/%s.conf", g_root, name);
  FILE *f = fopen(conf, "w");
  if (f) {
    fprintf(f,
            "directories.tokendir = %s\nobjectstore.backend = file\n"
            "log.level = ERROR\n",
            tokens);
    fclose(f);
  }
}

TEST(pkcs11_master_key) {
  char conf[256], dir[256], cfg[256], key[200], uri[512];
  softhsm_conf("hsm", conf, sizeof conf);
  setenv("SOFTHSM2_CONF", conf, 1);
  CHECK(system("softhsm2-util --init-token --free --label aisbxd --pin 4321 "
               "--so-pin 87654321 >/dev/null") == 0);
  snprintf(dir, sizeof dir, "%s/data-hsm", g_root);
  snprintf(cfg, sizeof cfg, "%s/hsm.cfg", g_root);
  api_write_config(cfg, NULL);
  snprintf(uri, sizeof uri,
           "pkcs11:token=aisbxd;object=aisbxd-master?pin-source=file:%s",
           g_pinfile);
  CHECK_EQ_INT(init_with(dir, cfg, uri, key), 0);
  CHECK(key[0]);
  /* the key was born in the token and stays there */
  int sens = -1, ext = -1;
  CHECK_EQ_INT(sbx_pkcs11_key_extractable(uri, &sens, &ext), SBX_OK);
  CHECK(sens == 1 && ext == 0);
  char spec[300];
  snprintf(spec, sizeof spec, "%s/master-key.spec", dir);
  CHECK(file_has(spec, "object=aisbxd-master"));
  CHECK(!file_has(spec, "4321"));
  srv s;
  char err[300];
  snprintf(err, sizeof err, "%s/hsm-start.err", g_root);
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  resp r;
  req_opts o = {key, NULL, NULL, 0, NULL, 0, 0};
  CHECK_EQ_INT(http(&s, "GET", "/api/v1/me", &o, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(api_stop(&s), 0);
  CHECK(!file_has(err, "not encryption at rest") &&
        !file_has(err, "NOT encryption at rest"));
  CHECK(exists(dir, "tls-key.sealed") && exists(dir, "jwt-ed25519.sealed"));
  CHECK(!exists(dir, "master.key"));
  CHECK(no_plain_keys(dir));
  /* restart: the sealed keys open again (same certificate) */
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  CHECK_EQ_INT(http(&s, "GET", "/api/v1/me", &o, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(api_stop(&s), 0);
  /* the data dir copied to a host whose token lacks the key: no start */
  char conf2[256];
  softhsm_conf("other", conf2, sizeof conf2);
  setenv("SOFTHSM2_CONF", conf2, 1);
  CHECK(system("softhsm2-util --init-token --free --label aisbxd --pin 4321 "
               "--so-pin 87654321 >/dev/null") == 0);
  snprintf(err, sizeof err, "%s/other-start.err", g_root);
  int started = start_logged(&s, dir, cfg, err) == 0;
  CHECK(!started);
  if (started)
    api_stop(&s);
  setenv("SOFTHSM2_CONF", conf, 1);
}

TEST(file_outside_and_default_warning) {
  char dir[256], cfg[256], key[200], mk[300], err[300];
  snprintf(cfg, sizeof cfg, "%s/plain.cfg", g_root);
  api_write_config(cfg, NULL);
  /* a key file outside the data dir */
  snprintf(dir, sizeof dir, "%s/data-file", g_root);
  snprintf(mk, sizeof mk, "file:%s/outside.key", g_root);
  CHECK_EQ_INT(init_with(dir, cfg, mk, key), 0);
  CHECK(!exists(dir, "master.key"));
  srv s;
  snprintf(err, sizeof err, "%s/file-start.err", g_root);
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  resp r;
  req_opts o = {key, NULL, NULL, 0, NULL, 0, 0};
  CHECK_EQ_INT(http(&s, "GET", "/api/v1/me", &o, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(api_stop(&s), 0);
  CHECK(!file_has(err, "NOT encryption at rest"));
  CHECK(no_plain_keys(dir));
  /* a systemd credential ($CREDENTIALS_DIRECTORY/NAME) */
  char creds[256], kf[300];
  snprintf(creds, sizeof creds, "%s/creds", g_root);
  mkdir(creds, 0700);
  snprintf(kf, sizeof kf, "%s/aisbxd-master", creds);
  CHECK_EQ_INT(sbx_master_key_create_file(kf, NULL), SBX_OK);
  chmod(kf, 0400);
  setenv("CREDENTIALS_DIRECTORY", creds, 1);
  snprintf(dir, sizeof dir, "%s/data-cred", g_root);
  CHECK_EQ_INT(init_with(dir, cfg, "credential:aisbxd-master", key), 0);
  snprintf(err, sizeof err, "%s/cred-start.err", g_root);
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  CHECK_EQ_INT(http(&s, "GET", "/api/v1/me", &o, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(api_stop(&s), 0);
  CHECK(!file_has(err, "NOT encryption at rest"));
  CHECK(!exists(dir, "master.key") && no_plain_keys(dir));
  /* without the credential the server does not start */
  unsetenv("CREDENTIALS_DIRECTORY");
  int started = start_logged(&s, dir, cfg, err) == 0;
  CHECK(!started);
  if (started)
    api_stop(&s);
  /* the embedded default: a key beside the data, and a warning */
  snprintf(dir, sizeof dir, "%s/data-default", g_root);
  CHECK_EQ_INT(init_with(dir, cfg, NULL, key), 0);
  snprintf(err, sizeof err, "%s/default-start.err", g_root);
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  CHECK_EQ_INT(api_stop(&s), 0);
  CHECK(exists(dir, "master.key"));
  CHECK(file_has(err, "NOT encryption at rest"));
  /* even then the TLS and JWT keys are sealed, not plain PEM */
  CHECK(exists(dir, "tls-key.sealed") && !exists(dir, "tls-key.pem"));
  CHECK(exists(dir, "jwt-ed25519.sealed") && !exists(dir, "jwt-ed25519.pem"));
}

/* Writes PEM data to dir/name (0600). */
static int put(const char *dir, const char *name, const gnutls_datum_t *d) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0)
    return -1;
  int ok = write(fd, d->data, d->size) == (ssize_t)d->size;
  close(fd);
  return ok ? 0 : -1;
}

TEST(plain_pem_upgrade) {
  char dir[256], cfg[256], key[200], err[300];
  snprintf(cfg, sizeof cfg, "%s/up.cfg", g_root);
  api_write_config(cfg, NULL);
  snprintf(dir, sizeof dir, "%s/data-up", g_root);
  CHECK_EQ_INT(init_with(dir, cfg, NULL, key), 0);
  /* the files an older aisbxd wrote: plain PEMs */
  gnutls_x509_privkey_t tk, jk;
  gnutls_x509_crt_t crt;
  gnutls_datum_t kp = {0}, cp = {0}, jp = {0}, jx = {0};
  CHECK(gnutls_x509_privkey_init(&tk) >= 0 &&
        gnutls_x509_privkey_init(&jk) >= 0 && gnutls_x509_crt_init(&crt) >= 0);
  CHECK(gnutls_x509_privkey_generate(
            tk, GNUTLS_PK_ECDSA,
            GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) >= 0);
  time_t now = time(NULL);
  CHECK(gnutls_x509_crt_set_version(crt, 3) >= 0 &&
        gnutls_x509_crt_set_serial(crt, "\x01\x02", 2) >= 0 &&
        gnutls_x509_crt_set_activation_time(crt, now - 3600) >= 0 &&
        gnutls_x509_crt_set_expiration_time(crt, now + 86400) >= 0 &&
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                      "old", 3) >= 0 &&
        gnutls_x509_crt_set_key(crt, tk) >= 0 &&
        gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS,
                                             "\x7f\0\0\x01", 4,
                                             GNUTLS_FSAN_APPEND) >= 0 &&
        gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0) >=
            0 &&
        gnutls_x509_crt_sign2(crt, crt, tk, GNUTLS_DIG_SHA256, 0) >= 0);
  CHECK(gnutls_x509_privkey_generate(
            jk, GNUTLS_PK_EDDSA_ED25519,
            GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED25519), 0) >= 0);
  CHECK(gnutls_x509_privkey_export2(tk, GNUTLS_X509_FMT_PEM, &kp) >= 0 &&
        gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cp) >= 0 &&
        gnutls_x509_privkey_export2_pkcs8(jk, GNUTLS_X509_FMT_PEM, NULL,
                                          GNUTLS_PKCS_PLAIN, &jp) >= 0 &&
        gnutls_x509_privkey_export_ecc_raw(jk, NULL, &jx, NULL, NULL) >= 0);
  CHECK(put(dir, "tls-key.pem", &kp) == 0 &&
        put(dir, "tls-cert.pem", &cp) == 0 &&
        put(dir, "jwt-ed25519.pem", &jp) == 0);
  char want_x[64] = "";
  { /* base64url of the raw Ed25519 public key: the reference */
    gnutls_datum_t b64 = {0};
    if (gnutls_base64_encode2(&jx, &b64) >= 0) {
      size_t o = 0;
      for (unsigned i = 0; i < b64.size && o < sizeof want_x - 1; i++) {
        char c = (char)b64.data[i];
        if (c == '=')
          break;
        want_x[o++] = c == '+' ? '-' : c == '/' ? '_' : c;
      }
      want_x[o] = 0;
      gnutls_free(b64.data);
    }
  }
  srv s;
  snprintf(err, sizeof err, "%s/up-start.err", g_root);
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  /* TLS verifies against the old certificate (s.cacert is tls-cert.pem) */
  resp r;
  CHECK_EQ_INT(http(&s, "GET", "/.well-known/jwks.json", NULL, &r), 200);
  char x[80] = "";
  CHECK(json_field(r.body, "x", x, sizeof x));
  CHECK(want_x[0] && !strcmp(x, want_x));
  resp_free(&r);
  req_opts o = {key, NULL, NULL, 0, NULL, 0, 0};
  CHECK_EQ_INT(http(&s, "GET", "/api/v1/me", &o, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(api_stop(&s), 0);
  CHECK(!exists(dir, "tls-key.pem") && !exists(dir, "jwt-ed25519.pem"));
  CHECK(exists(dir, "tls-key.sealed") && exists(dir, "jwt-ed25519.sealed"));
  CHECK(file_has(err, "upgrade"));
  /* and they still work after the upgrade */
  CHECK_EQ_INT(start_logged(&s, dir, cfg, err), 0);
  CHECK_EQ_INT(http(&s, "GET", "/.well-known/jwks.json", NULL, &r), 200);
  CHECK(json_field(r.body, "x", x, sizeof x) && !strcmp(x, want_x));
  resp_free(&r);
  CHECK_EQ_INT(api_stop(&s), 0);
  gnutls_free(kp.data);
  gnutls_free(cp.data);
  gnutls_free(jp.data);
  gnutls_free(jx.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(tk);
  gnutls_x509_privkey_deinit(jk);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s AISBXD\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  if (access(SOFTHSM_LIB, R_OK) ||
      system("command -v softhsm2-util >/dev/null")) {
    fprintf(stderr, "SKIP: softhsm2 not installed\n");
    return 77;
  }
  snprintf(g_root, sizeof g_root, "/tmp/sbx_mk_XXXXXX");
  if (!mkdtemp(g_root) || chmod(g_root, 0711)) /* aisbxd runs as nobody */
    return 1;
  snprintf(g_pinfile, sizeof g_pinfile, "%s/pin", g_root);
  FILE *f = fopen(g_pinfile, "w");
  if (!f)
    return 1;
  fputs("4321\n", f);
  fclose(f);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  RUN(pkcs11_master_key);
  RUN(file_outside_and_default_warning);
  RUN(plain_pem_upgrade);
  curl_global_cleanup();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
  if (system(cmd)) {
  }
  return harness_report();
}
