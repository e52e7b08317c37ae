/*
 * loginguard.c - password-login throttling (loginguard.h).
 */
#include "loginguard.h"

#include <stdio.h>
#include <string.h>

#include "dbx.h"
#include "state.h"
#include "util.h"

#define GUARD_BASE_S 4 /* the first wait; doubles per further failure */

int sbx__login_guard_load(sbx__req *r, const char *tenant,
                          const uint8_t email_index[32], int64_t now,
                          sbx__login_guard *g) {
  memset(g, 0, sizeof *g);
  snprintf(g->tenant, sizeof g->tenant, "%s", tenant);
  /* tenant NUL email-index NUL address: keyed, so the row names nobody */
  char buf[SBX_ID_MAX + 32 + sizeof r->ip + 2];
  size_t tl = strlen(tenant), il = strnlen(r->ip, sizeof r->ip);
  memcpy(buf, tenant, tl + 1);
  memcpy(buf + tl + 1, email_index, 32);
  buf[tl + 33] = 0;
  memcpy(buf + tl + 34, r->ip, il);
  uint8_t h[SBX_SHA256_LEN];
  int rc = sbx_store_keyed_hash(r->st, "login-guard", buf, tl + 34 + il, h);
  if (rc)
    return rc;
  memcpy(g->key, "lg-", 3);
  sbx_hex(h, 16, g->key + 3);
  rc = sbx__dbx_lockout_get(sbx_store_meta(r->st), tenant, g->key, &g->failures,
                            &g->until);
  int cap = r->srv->p.lockout_s > 0 ? r->srv->p.lockout_s : 900;
  /* failures older than the cap are forgotten (typos a month apart never
   * add up to a wait) */
  if (rc || (g->until && now - g->until > cap))
    g->failures = g->until = 0;
  return rc;
}

int64_t sbx__login_guard_wait(const sbx__login_guard *g, int64_t now) {
  return g->until > now ? g->until - now : 0;
}

int sbx__login_guard_fail(sbx__req *r, sbx__login_guard *g, int64_t now) {
  int max = r->srv->p.login_max_failures > 0 ? r->srv->p.login_max_failures : 5;
  int64_t cap = r->srv->p.lockout_s > 0 ? r->srv->p.lockout_s : 900;
  g->failures++;
  int64_t wait = 0;
  if (g->failures >= max) {
    int64_t k = g->failures - max;
    wait = GUARD_BASE_S;
    while (k-- > 0 && wait < cap)
      wait *= 2;
    if (wait > cap)
      wait = cap;
  }
  g->until = now + wait; /* also the time of the last failure */
  sbx__dbx_lockout_set(sbx_store_meta(r->st), g->tenant, g->key, g->failures,
                       g->until);
  return wait > 0;
}

void sbx__login_guard_clear(sbx__req *r, sbx__login_guard *g) {
  if (g->failures || g->until)
    sbx__dbx_lockout_set(sbx_store_meta(r->st), g->tenant, g->key, 0, 0);
  g->failures = g->until = 0;
}
