/*
 * tls.h - the server's TLS certificate: loaded, or generated once
 * (self-signed ECDSA P-256, SANs localhost/127.0.0.1/::1).
 */
#ifndef SBX_SERVER_TLS_H
#define SBX_SERVER_TLS_H

#include "sbx/crypto.h"

/* Loads or creates cert_path/key_path; *cert_pem and *key_pem (caller
 * frees; wipe the key) and the SHA-256 fingerprint "AB:CD:.." (95 + NUL)
 * on success. A failure is logged. kek non-NULL (the default key location
 * in data dir dir): the private key lives sealed under the master key in
 * dir/tls-key.sealed (keyfile.h), key_path is only read once to upgrade a
 * plain PEM of an older version. */
int sbx__tls_ensure(const char *cert_path, const char *key_path, sbx_kek *kek,
                    const char *dir, char **cert_pem, char **key_pem,
                    char fp[96]);

#endif
