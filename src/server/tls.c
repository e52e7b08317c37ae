/*
 * tls.c - the server certificate: loaded from files, or on first start a
 * self-signed ECDSA P-256 certificate (SANs localhost, 127.0.0.1, ::1,
 * 1 year) is generated with GnuTLS into the data dir (key 0600).
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tls.h"

#include "keyfile.h"
#include "log.h"
#include "sbx/crypto.h"
#include "sbx/status.h"

static int slurp(const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO;
  char *b = malloc(65536);
  size_t n = b ? fread(b, 1, 65535, f) : 0;
  fclose(f);
  if (!b)
    return SBX_ENOMEM;
  b[n] = 0;
  *out = b;
  return SBX_OK;
}

static int write_new(const char *path, const void *data, size_t n,
                     mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return errno == EEXIST ? SBX_EEXIST : SBX_EIO;
  int rc = (write(fd, data, n) == (ssize_t)n && !fsync(fd)) ? SBX_OK : SBX_EIO;
  close(fd);
  return rc;
}

/* Generates the certificate and key; writes the certificate to cert_path
 * and the key to key_path (plain, 0600) or, with kek, sealed into
 * dir/tls-key.sealed. */
static int generate(const char *cert_path, const char *key_path, sbx_kek *kek,
                    const char *dir) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t kp = {NULL, 0}, cp = {NULL, 0};
  int rc = SBX_ECRYPTO;
  uint8_t serial[16];
  time_t now = time(NULL);
  if (gnutls_x509_privkey_init(&key) < 0 || gnutls_x509_crt_init(&crt) < 0)
    goto out;
  if (gnutls_x509_privkey_generate(
          key, GNUTLS_PK_ECDSA,
          GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0)
    goto out;
  sbx_random(serial, sizeof serial);
  serial[0] &= 0x7f;
  if (gnutls_x509_crt_set_version(crt, 3) < 0 ||
      gnutls_x509_crt_set_serial(crt, serial, sizeof serial) < 0 ||
      gnutls_x509_crt_set_activation_time(crt, now - 3600) < 0 ||
      gnutls_x509_crt_set_expiration_time(crt, now + 365 * 86400) < 0 ||
      gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                    "aisbxd", 6) < 0 ||
      gnutls_x509_crt_set_key(crt, key) < 0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost",
                                           9, GNUTLS_FSAN_APPEND) < 0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS,
                                           "\x7f\0\0\x01", 4,
                                           GNUTLS_FSAN_APPEND) < 0 ||
      gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS,
                                           "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01",
                                           16, GNUTLS_FSAN_APPEND) < 0 ||
      gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE) < 0 ||
      gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0) <
          0 ||
      gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0) < 0)
    goto out;
  if (gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &kp) < 0 ||
      gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cp) < 0)
    goto out;
  rc = kek ? sbx__keyfile_create(kek, dir, "tls-key.sealed", "aisbxd tls key",
                                 kp.data, kp.size)
           : write_new(key_path, kp.data, kp.size, 0600);
  if (!rc)
    rc = write_new(cert_path, cp.data, cp.size, 0644);
out:
  if (kp.data) {
    sbx_memwipe(kp.data, kp.size);
    gnutls_free(kp.data);
  }
  gnutls_free(cp.data);
  if (crt)
    gnutls_x509_crt_deinit(crt);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return rc;
}

/* The sealed key of dir (upgrading a plain key_path), into *key_pem. */
static int load_sealed(sbx_kek *kek, const char *dir, const char *key_path,
                       char **key_pem) {
  const char *base = strrchr(key_path, '/');
  size_t n;
  return sbx__keyfile_load(kek, dir, "tls-key.sealed",
                           base ? base + 1 : key_path, "aisbxd tls key",
                           key_pem, &n);
}

int sbx__tls_ensure(const char *cert_path, const char *key_path, sbx_kek *kek,
                    const char *dir, char **cert_pem, char **key_pem,
                    char fp[96]) {
  *cert_pem = *key_pem = NULL;
  int rc = slurp(cert_path, cert_pem);
  if (rc == SBX_ENOTFOUND && access(key_path, F_OK) != 0) {
    char sealed[4200];
    snprintf(sealed, sizeof sealed, "%s/tls-key.sealed", dir ? dir : ".");
    if (!kek || access(sealed, F_OK) != 0) {
      rc = generate(cert_path, key_path, kek, dir);
      if (!rc)
        rc = slurp(cert_path, cert_pem);
    }
  }
  if (!rc)
    rc = kek ? load_sealed(kek, dir, key_path, key_pem)
             : slurp(key_path, key_pem);
  if (rc) {
    sbx__log("TLS certificate %s / key %s: %s", cert_path, key_path,
             sbx_strerror(rc));
    free(*cert_pem);
    *cert_pem = NULL;
    return rc;
  }
  /* fingerprint: SHA-256 of the DER certificate */
  gnutls_x509_crt_t crt;
  gnutls_datum_t d = {(unsigned char *)*cert_pem, (unsigned)strlen(*cert_pem)};
  uint8_t dig[32];
  size_t dn = sizeof dig;
  rc = SBX_EFORMAT;
  if (gnutls_x509_crt_init(&crt) >= 0) {
    if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM) >= 0 &&
        gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, dig, &dn) >=
            0 &&
        dn == 32) {
      rc = SBX_OK;
      if (fp)
        for (int i = 0; i < 32; i++)
          snprintf(fp + 3 * i, 4, i < 31 ? "%02X:" : "%02X", dig[i]);
    }
    gnutls_x509_crt_deinit(crt);
  }
  if (rc) {
    sbx__log("%s is not a PEM certificate", cert_path);
    free(*cert_pem);
    sbx_memwipe(*key_pem, strlen(*key_pem));
    free(*key_pem);
    *cert_pem = *key_pem = NULL;
  }
  return rc;
}
