/*
 * totp.h - TOTP second factor, RFC 6238 (HMAC-SHA1, 30 s steps).
 */
#ifndef SBX_SERVER_TOTP_H
#define SBX_SERVER_TOTP_H

#include <stddef.h>
#include <stdint.h>

#include "req.h"

/* HOTP value of counter with HMAC-SHA1, digits 6..8. */
int sbx__totp_code(const uint8_t *key, size_t keylen, uint64_t counter,
                   int digits, uint32_t *code);
/* 1 when the user has TOTP enabled. */
int sbx__totp_enabled(sbx__req *r, const char *tenant, const char *user);
/* Checks code at now (+-1 step); a step at or before the last accepted one
 * is refused (replay). SBX_OK or SBX_EAUTH. */
int sbx__totp_check(sbx__req *r, const char *tenant, const char *user,
                    const char *code, int64_t now);
/* POST /api/v1/auth/totp and /api/v1/auth/totp/confirm. */
int sbx__totp_h_enroll(sbx__req *r);
int sbx__totp_h_confirm(sbx__req *r);
/* Removes the user's TOTP (pending or enabled); *removed = 1 when there
 * was one. The password alone logs in again afterwards. */
int sbx__totp_delete(sbx__req *r, const char *tenant, const char *user,
                     int *removed);
/* DELETE /api/v1/auth/totp: the caller's own (step-up route). */
int sbx__totp_h_remove(sbx__req *r);
/* RFC 4648 base32 without padding; out needs 8*ceil(n/5)/5+1. */
void sbx__base32(const uint8_t *in, size_t n, char *out);

#endif
