/*
 * util.h - leaf helpers of the server: clocks, random ids, names,
 * base64url. Depend on nothing of src/server.
 */
#ifndef SBX_SERVER_UTIL_H
#define SBX_SERVER_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, seconds since the epoch. */
int64_t sbx__now(void);
/* CLOCK_MONOTONIC seconds. */
double sbx__mono(void);
/* Random lower-case hex of 2 * nbytes chars + NUL into out (nbytes <= 64).
 * 0 or a negative sbx_status (out undefined then). */
int sbx__rand_hex(char *out, size_t nbytes);
/* Object names: 1..128 of [A-Za-z0-9._-], not starting with '.'. */
int sbx__name_valid(const char *s);
/* base64url without padding; out needs 4*ceil(n/3)+1. Returns the length
 * written (without the NUL). */
size_t sbx__b64url(const void *in, size_t n, char *out);
/* Decodes; returns the decoded length or -1 (bad input, or more than cap
 * bytes). */
long sbx__unb64url(const char *in, size_t n, uint8_t *out, size_t cap);

#endif
