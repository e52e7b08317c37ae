/*
 * loginguard.h - password-login throttling per (tenant, e-mail, client
 * address): exponential backoff with a cap, the same for existing and
 * unknown accounts, and never a lock of the account itself (an attacker
 * slows only their own address). Rows live in srv_lockouts under a
 * pseudonymous key (a keyed hash: no e-mail or address in the database),
 * so every server process on a shared database sees them.
 */
#ifndef SBX_SERVER_LOGINGUARD_H
#define SBX_SERVER_LOGINGUARD_H

#include <stdint.h>

#include "req.h"

/* The throttle key of (tenant, email_index, r->ip): "lg-" + 32 hex. */
typedef struct sbx__login_guard {
  char tenant[SBX_ID_MAX];
  char key[40];
  int64_t failures;
  int64_t until; /* next attempt allowed at (a past time: allowed) */
} sbx__login_guard;

/* Loads the guard of this login attempt. email_index is the keyed hash of
 * the e-mail (hutil.h). Returns 0, else a store error (g then holds no
 * failures). */
int sbx__login_guard_load(sbx__req *r, const char *tenant,
                          const uint8_t email_index[32], int64_t now,
                          sbx__login_guard *g);
/* Seconds the caller must still wait (0: may try now). */
int64_t sbx__login_guard_wait(const sbx__login_guard *g, int64_t now);
/* Records a failed attempt: after login_max_failures failures each further
 * one doubles the wait (4, 8, 16 ... s) up to lockout_s. Returns 1 when the
 * attempt started or extended a wait. */
int sbx__login_guard_fail(sbx__req *r, sbx__login_guard *g, int64_t now);
/* A successful login: forgets the failures of this key. */
void sbx__login_guard_clear(sbx__req *r, sbx__login_guard *g);

#endif
