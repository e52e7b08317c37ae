/*
 * sbx/crypto.h - the service's one crypto provider (GnuTLS underneath).
 *
 * Key hierarchy (docs/storage.md): a master key (file 0600, environment
 * variable or external KMS command) wraps per-tenant keys; a tenant key wraps
 * a fresh data key per object; the data key encrypts the object with the
 * chunked streaming AEAD format below. Every primitive is AES-256-GCM.
 *
 * All functions return 0 (SBX_OK) or a negative sbx_status. Unless stated
 * otherwise they are thread-safe (no shared mutable state) and never keep a
 * pointer to their arguments after returning. Secret outputs are wiped on
 * error, so the caller never sees partial key material.
 */
#ifndef SBX_CRYPTO_H
#define SBX_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/status.h"

#define SBX_KEY_LEN 32
#define SBX_KEY_ID_LEN 8
#define SBX_SHA256_LEN 32
#define SBX_NONCE_LEN 12
#define SBX_TAG_LEN 16

/* A 256-bit secret key. Plain value type: copy it, and sbx_key_wipe() every
 * copy when done. */
typedef struct sbx_key {
  uint8_t b[SBX_KEY_LEN];
} sbx_key;

/* ---- basics -------------------------------------------------------------*/

/* Fills buf with n bytes from GnuTLS's CSPRNG (GNUTLS_RND_RANDOM). */
int sbx_random(void *buf, size_t n);
/* Generates a fresh key (GNUTLS_RND_KEY). *k is wiped on error. */
int sbx_key_generate(sbx_key *k);
/* Overwrites k with zeros in a way the compiler cannot elide. */
void sbx_key_wipe(sbx_key *k);
/* Wipes n bytes at p (explicit_bzero). NULL/0 is a no-op. */
void sbx_memwipe(void *p, size_t n);
/* Constant-time comparison: 1 when equal, 0 otherwise. */
int sbx_ct_equal(const void *a, const void *b, size_t n);
/* A public, stable 8-byte identifier of a key: the first 8 bytes of
 * HMAC-SHA256(key, "sbx key id v1"). Reveals nothing useful about the key;
 * used to record which master key wrapped a tenant key. */
void sbx_key_id(const sbx_key *k, uint8_t id[SBX_KEY_ID_LEN]);

/* Lower-case hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void sbx_hex(const void *in, size_t n, char *out);
/* Parses exactly 2n hex digits into out. SBX_EFORMAT when malformed. */
int sbx_unhex(const char *hex, size_t hexlen, void *out, size_t n);

/* ---- hashing ------------------------------------------------------------*/

int sbx_sha256(const void *data, size_t n, uint8_t out[SBX_SHA256_LEN]);
int sbx_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n,
                    uint8_t out[SBX_SHA256_LEN]);

/* Incremental SHA-256. _init allocates; _final writes the digest and frees;
 * _free (safe on a zeroed struct or after _final) frees without output. */
typedef struct sbx_sha256_ctx {
  void *h;
} sbx_sha256_ctx;
int sbx_sha256_init(sbx_sha256_ctx *c);
int sbx_sha256_update(sbx_sha256_ctx *c, const void *data, size_t n);
int sbx_sha256_final(sbx_sha256_ctx *c, uint8_t out[SBX_SHA256_LEN]);
void sbx_sha256_free(sbx_sha256_ctx *c);

/* ---- key wrapping -------------------------------------------------------*/

/* Wrapped key layout (76 bytes):
 *   "SBXW" | version=1 | alg=1 (AES-256-GCM) | 2 reserved zero bytes |
 *   kek_id[8] | nonce[12] | ciphertext[32] | tag[16]
 * The first 28 bytes plus the caller's context are the AEAD associated data,
 * so a wrapped key only unwraps under the right KEK *and* in the context it
 * was made for (e.g. "tenant t1 key v3", "tenant t1 object o9"): moving a
 * wrapped key to another row is detected. */
#define SBX_WRAPPED_KEY_LEN 76

/* Wraps key under kek, bound to ctx[0..ctxlen). out receives
 * SBX_WRAPPED_KEY_LEN bytes. */
int sbx_key_wrap(const sbx_key *kek, const void *ctx, size_t ctxlen,
                 const sbx_key *key, uint8_t out[SBX_WRAPPED_KEY_LEN]);
/* Unwraps. SBX_EFORMAT when the blob is not a wrapped key of a known
 * version, SBX_ECRYPTO when the KEK, the context or any byte is wrong. *key
 * is wiped on error. */
int sbx_key_unwrap(const sbx_key *kek, const void *ctx, size_t ctxlen,
                   const uint8_t *in, size_t inlen, sbx_key *key);
/* Reads the kek_id recorded in a wrapped key (no crypto). */
int sbx_wrapped_kek_id(const uint8_t *in, size_t inlen,
                       uint8_t id[SBX_KEY_ID_LEN]);

/* ---- small messages (DB fields) ---------------------------------------- */

/* Sealed field: "SBXF" | version=1 | 3 zero | nonce[12] | ct[n] | tag[16],
 * the 8-byte header and ctx are associated data. */
#define SBX_SEAL_OVERHEAD (8 + SBX_NONCE_LEN + SBX_TAG_LEN)
/* Encrypts pt[0..n) into out (n + SBX_SEAL_OVERHEAD bytes, caller-owned). */
int sbx_seal(const sbx_key *k, const void *ctx, size_t ctxlen, const void *pt,
             size_t n, uint8_t *out);
/* Decrypts in[0..inlen) into out (inlen - SBX_SEAL_OVERHEAD bytes); *outlen
 * receives that length. SBX_ECRYPTO on any tampering; out is wiped then. */
int sbx_open(const sbx_key *k, const void *ctx, size_t ctxlen,
             const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen);

/* ---- chunked streaming AEAD (blobs) -------------------------------------*/

/* Stream layout (version 2, written; version 1 is still read):
 *   header (32 bytes): "SBXS" | version=2 | alg=1 | chunk_shift | 0 |
 *                      nonce_prefix[4] | stream_id[16] | 4 zero bytes
 *   chunks: ciphertext[chunk_size] | tag[16] ...  final: ct[0..chunk_size] |
 *           tag[16]  (an empty stream still has one final, empty chunk)
 * Chunk i uses nonce = nonce_prefix | be64(i) and associated data
 *   header | be64(i) | final_flag | be64(final ? total_plaintext_len : 0)
 * so truncation (the last chunk present must carry final=1 and the total),
 * reordering (index), chunk swaps between objects (different key and stream
 * id) and header edits are all detected. The total is bound in the final
 * chunk because a streaming writer only knows it there; earlier chunks are
 * tied to it through their index. Version 1 had the same layout with
 * AD = header | be64(i) | final_flag (no total). */
#define SBX_STREAM_HEADER_LEN 32
#define SBX_STREAM_MIN_SHIFT 10     /* 1 KiB */
#define SBX_STREAM_MAX_SHIFT 24     /* 16 MiB */
#define SBX_STREAM_DEFAULT_SHIFT 18 /* 256 KiB */

/* Receives output bytes; returns 0 or a negative sbx_status, which aborts
 * the stream and is returned by the call that fed the data. */
typedef int (*sbx_sink_fn)(void *ctx, const void *buf, size_t n);

typedef struct sbx_stream sbx_stream;

/* Creates an encryptor under data key dek writing to sink; the header is
 * emitted immediately. chunk_shift in [MIN,MAX]_SHIFT (0 = default). The
 * key is copied into the stream (wiped by _free). *out is NULL on error. */
int sbx_stream_encrypt_new(sbx_stream **out, const sbx_key *dek,
                           unsigned chunk_shift, sbx_sink_fn sink, void *ctx);
/* Creates a decryptor; the header is read from the first bytes fed. Plaintext
 * reaches sink one authenticated chunk at a time, but the stream as a whole
 * (truncation) is only proven by a successful sbx_stream_final(): a consumer
 * must discard what it received if any call fails. */
int sbx_stream_decrypt_new(sbx_stream **out, const sbx_key *dek,
                           sbx_sink_fn sink, void *ctx);
/* Feeds n bytes (plaintext for an encryptor, ciphertext for a decryptor).
 * After any error the stream is poisoned: every later call returns it. */
int sbx_stream_update(sbx_stream *s, const void *in, size_t n);
/* Encryptor: like sbx_stream_update, but the caller promises that more
 * plaintext follows before sbx_stream_final, so a whole chunk ending this
 * input is sealed in place instead of being copied and held back. (A broken
 * promise still gives a valid stream, with an extra empty final chunk.)
 * Decryptor: same as sbx_stream_update. */
int sbx_stream_update_more(sbx_stream *s, const void *in, size_t n);
/* Decryptor, before the first byte is fed: rotate over n (1..16, default 1)
 * plaintext buffers of one chunk each: the buffer passed to the sink for
 * chunk k is not written again before the sink call for chunk k + n - 1
 * has returned, so a consumer may go on reading the last n - 1 chunks
 * concurrently (e.g. hash them on another thread). When the header
 * announces chunks so large that n of them exceed 32 MiB, n is lowered
 * (not below 2) at that point: read the effective n with
 * sbx_stream_out_ring. SBX_EINVAL otherwise. */
int sbx_stream_set_out_ring(sbx_stream *s, unsigned n);
/* The format version of the stream: 2 for an encryptor; for a decryptor
 * the version its header announced (1 or 2), 0 before the header was read. */
unsigned sbx_stream_version(const sbx_stream *s);
/* The number of plaintext buffers in use (1 unless set as above). */
unsigned sbx_stream_out_ring(const sbx_stream *s);
/* Ends the stream (emits/verifies the final chunk). SBX_ECRYPTO when a
 * decrypted stream was truncated or tampered. */
int sbx_stream_final(sbx_stream *s);
/* Wipes and frees. NULL is a no-op. */
void sbx_stream_free(sbx_stream *s);
/* Ciphertext size of a plaintext of n bytes (header + chunks + tags). */
uint64_t sbx_stream_ciphertext_len(uint64_t n, unsigned chunk_shift);

/* ---- master key sources -------------------------------------------------*/

/* Loads the master key from a spec string:
 *   "file:/path"  the file must be a regular file owned by the effective uid
 *                 with no group/other permission bits (0600 or 0400), holding
 *                 64 hex digits (optionally followed by a newline) or 32 raw
 *                 bytes; otherwise SBX_EPERM / SBX_EFORMAT.
 *   "env:NAME"    the environment variable NAME holds 64 hex digits.
 *   "cmd:COMMAND" /bin/sh -c COMMAND is run (stdin /dev/null, stderr
 *                 inherited); it must exit 0 within 30 s and print 64 hex
 *                 digits on stdout (an external KMS / secret manager hook).
 * *k is wiped on error. Never reads from the repository or the database. */
int sbx_master_key_load(const char *spec, sbx_key *k);
int sbx_master_key_load_file(const char *path, sbx_key *k);
int sbx_master_key_load_env(const char *name, sbx_key *k);
int sbx_master_key_load_cmd(const char *command, sbx_key *k);
/* Generates a fresh master key and writes it as hex to a new file created
 * with O_EXCL and mode 0600 (fsynced). SBX_EEXIST if the file exists. On
 * success *k (if non-NULL) receives the key. */
int sbx_master_key_create_file(const char *path, sbx_key *k);
/* "credential:NAME": the file $CREDENTIALS_DIRECTORY/NAME (a systemd
 * credential, LoadCredential=/LoadCredentialEncrypted=), same format as a
 * key file; it may also be owned by root (systemd's), never group/other
 * readable. NAME is one path component. SBX_ENOTFOUND when the variable is
 * unset. */
int sbx_master_key_load_credential(const char *name, sbx_key *k);

/* ---- master key handles (key-encryption keys) ---------------------------*/

/* A master key that wraps and unwraps keys: a software key (the sources
 * above), or a key that never leaves a PKCS#11 token. Wrapped keys have the
 * same format either way (sbx_key_wrap), so data can move between them by
 * sbx_store_rotate_master_key-style re-wrapping. A handle is thread-safe;
 * it owns its token session. */
typedef struct sbx_kek sbx_kek;

/* Opens spec: everything sbx_master_key_load takes, "credential:NAME", or
 *   "pkcs11:token=...;object=LABEL[?pin-value=..|pin-source=FILE]
 *    [&module-path=/path/module.so]"
 * an RFC 7512 URI of an AES-256 secret-key object (found by its label) in
 * a token reached through GnuTLS's PKCS#11 support (p11-kit registered
 * modules, or only module-path when given). The PIN comes from pin-value,
 * pin-source (a file, first line) or the environment variable
 * SBX_PKCS11_PIN. Wrap/unwrap run inside the token (CKM_AES_GCM). *out
 * is NULL on error: SBX_ENOTFOUND (no such token or key), SBX_EAUTH (PIN),
 * SBX_EUNSUPPORTED (no PKCS#11 support), SBX_EEXIST (label not unique). */
int sbx_kek_open(const char *spec, sbx_kek **out);
/* A handle on a software key (copied). */
int sbx_kek_from_key(const sbx_key *k, sbx_kek **out);
/* 1 when the key lives in a token (never in this process). */
int sbx_kek_in_token(const sbx_kek *kek);
/* sbx_key_wrap / sbx_key_unwrap under kek. */
int sbx_kek_wrap(sbx_kek *kek, const void *ctx, size_t ctxlen,
                 const sbx_key *key, uint8_t out[SBX_WRAPPED_KEY_LEN]);
int sbx_kek_unwrap(sbx_kek *kek, const void *ctx, size_t ctxlen,
                   const uint8_t *in, size_t inlen, sbx_key *key);
/* The kek id written into wrapped keys: sbx_key_id for a software key; for
 * a token key the first 8 bytes of SHA-256("sbx pkcs11 kek v1" | token
 * serial | label) (it names the object; the value cannot be read). */
void sbx_kek_id(const sbx_kek *kek, uint8_t id[SBX_KEY_ID_LEN]);
/* Wipes and frees (closes the token session). NULL is a no-op. */
void sbx_kek_free(sbx_kek *kek);

/* Seals a small secret (a PEM private key, <= 64 KiB) under kek for a file:
 * "SBXK" | 1 | 3 zero | wrapped data key (76) | sbx_seal(data key, ctx, pt).
 * *out (malloc'd, caller frees) gets *outlen bytes. */
int sbx_kek_seal_blob(sbx_kek *kek, const char *ctx, const void *pt, size_t n,
                      uint8_t **out, size_t *outlen);
/* Opens what sbx_kek_seal_blob made with the same ctx. *out (malloc'd,
 * NUL-terminated, caller wipes and frees) gets *outlen bytes. SBX_EFORMAT
 * when in is not a sealed blob, SBX_ECRYPTO when tampered / wrong key. */
int sbx_kek_open_blob(sbx_kek *kek, const char *ctx, const uint8_t *in,
                      size_t inlen, uint8_t **out, size_t *outlen);

/* Generates the AES-256 master key inside the token of uri (label = the
 * URI's object attribute; CKA_SENSITIVE, not CKA_EXTRACTABLE, encrypt and
 * decrypt only). SBX_EEXIST when a key with that label exists. */
int sbx_pkcs11_key_create(const char *uri);
/* Reads the key's CKA_SENSITIVE and CKA_EXTRACTABLE (and whether
 * CKA_VALUE can be read: then *extractable is 1 too). For tests and
 * `aisbxd init`. */
int sbx_pkcs11_key_extractable(const char *uri, int *sensitive,
                               int *extractable);

#endif
