/*
 * keyfile.h - the server's private keys (TLS, JWT) sealed under the master
 * key in the data dir, instead of plain PEM beside the data (issue 12 item
 * 4). A sealed file is sbx_kek_seal_blob's format (sbx/crypto.h) with the
 * file's role as context, so a sealed TLS key cannot pass for the JWT key.
 * Upgrade: an existing plain PEM is read once, sealed, fsynced and then
 * removed (logged).
 */
#ifndef SBX_SERVER_KEYFILE_H
#define SBX_SERVER_KEYFILE_H

#include <stddef.h>

#include "sbx/crypto.h"

/* Loads the secret of role ctx: dir/sealed_name (opened with kek), else
 * the legacy dir/plain_name (then sealed into dir/sealed_name and
 * removed). *pem (malloc'd, NUL-terminated; caller wipes and frees) gets
 * *n bytes. SBX_ENOTFOUND when neither file exists. */
int sbx__keyfile_load(sbx_kek *kek, const char *dir, const char *sealed_name,
                      const char *plain_name, const char *ctx, char **pem,
                      size_t *n);
/* Seals pem[0..n) into the new file dir/sealed_name (O_EXCL, 0600,
 * fsynced). SBX_EEXIST when it exists. */
int sbx__keyfile_create(sbx_kek *kek, const char *dir, const char *sealed_name,
                        const char *ctx, const void *pem, size_t n);

#endif
