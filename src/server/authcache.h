/*
 * authcache.h - in-process cache of authentication and role lookups
 * (design in authcache.c). Entries live at most SBX__AC_TTL_S seconds and
 * only while the process-wide epoch they were loaded under is current.
 */
#ifndef SBX_SERVER_AUTHCACHE_H
#define SBX_SERVER_AUTHCACHE_H

#include <stdint.h>

#include "req.h"

struct sbx__authcache; /* opaque */

/* Seconds an entry may be used at most: the window in which a change made
 * by another process (another replica, the CLI) may still be unseen here:
 * role changes, disabled or deleted users, removed members, revoked keys,
 * sessions and token families (docs/security.md). Keep it <= 5. */
#define SBX__AC_TTL_S 5.0
typedef struct sbx__ac_apikey {
  char tenant[SBX_ID_MAX], id[SBX_ID_MAX], user[SBX_ID_MAX];
  char project[SBX_ID_MAX], issuer[SBX_ID_MAX];
  int role;
  int64_t expires_at; /* 0 = never */
} sbx__ac_apikey;

/* NULL when out of memory; freed by sbx__authcache_free (NULL: no-op). */
struct sbx__authcache *sbx__authcache_new(void);
void sbx__authcache_free(struct sbx__authcache *c);
/* Every cached entry becomes stale at once. Called after any change this
 * process commits to API keys, users, tenant roles or memberships. */
void sbx__authcache_invalidate(void);
uint64_t sbx__authcache_epoch(void);
/* A cached, unexpired key by the SHA-256 of its string: SBX_OK and *out,
 * *touch = 1 when its last-use time is due for an update; else
 * SBX_ENOTFOUND. */
int sbx__ac_key_get(struct sbx__authcache *c, const uint8_t h[SBX_SHA256_LEN],
                    int64_t now, sbx__ac_apikey *out, int *touch);
/* Stores a verified key loaded under epoch (read before the database). */
void sbx__ac_key_put(struct sbx__authcache *c, const uint8_t h[SBX_SHA256_LEN],
                     const sbx__ac_apikey *k, uint64_t epoch,
                     int64_t last_touch);
/* SBX_OK when the tenant is active and the user exists and is enabled
 * (*trole = tenant role bit, 0 none); SBX_EAUTH otherwise. */
int sbx__ac_user(sbx__req *r, const char *tenant, const char *user, int *trole);
/* The user's membership role bit in project (0 none). */
int sbx__ac_member(sbx__req *r, const char *tenant, const char *project,
                   const char *user);
/* The access-token deny-list row (tenant, kind "user"|"family", subject):
 * SBX_OK with *nbf its not_before (0: none); SBX_EAUTH when the database
 * could not be read (the caller refuses). Cached like the rest. */
int sbx__ac_denied(sbx__req *r, const char *tenant, const char *kind,
                   const char *subject, int64_t *nbf);

#endif
