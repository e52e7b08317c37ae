/*
 * authcache.c - in-process cache of authentication and role lookups.
 *
 * Without it every authenticated request ran 3-4 SQLite statements before
 * the handler's own (API key row, tenant state, user row, tenant role),
 * and each autocommit read takes and drops the WAL read lock: most of the
 * per-request CPU. Three bounded, direct-mapped tables (SBX__AC_SLOTS
 * entries each, a collision simply replaces the older entry):
 *
 *   keys     SHA-256 of the presented API key string -> key id, tenant,
 *            user, issuer, project scope, role, expiry. Only successful
 *            verifications are stored; the secret itself is never kept.
 *            The expiry is checked against the clock on every hit.
 *   users    (tenant, user) -> tenant active && user exists && enabled,
 *            and the user's tenant role.
 *   members  (tenant, project, user) -> membership role.
 *   denies   (tenant, "user"|"family", id) -> the access-token deny-list
 *            row (sbx_meta_token_denied): revoked sessions, reused
 *            refresh families.
 *
 * Freshness: an entry is used for at most SBX__AC_TTL_S seconds (changes
 * made by another process - another replica, the CLI - take effect within
 * that), and only while the process-wide epoch it was loaded under is
 * still current. Every change made by this process to keys, roles,
 * memberships or users calls sbx__authcache_invalidate() after it is
 * committed, so it takes effect for the next request at once. The epoch is
 * read *before* the database is, so a load that raced with a change is
 * stored already stale.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authcache.h"

#include "dbx.h"
#include "rbac.h"
#include "state.h"
#include "util.h"

#define SBX__AC_SLOTS 1024

typedef struct ac_key {
  uint8_t h[SBX_SHA256_LEN];
  uint64_t epoch;
  double t; /* monotonic load time */
  int64_t last_touch;
  sbx__ac_apikey k;
  int used;
} ac_key;

typedef struct ac_user {
  char tenant[SBX_ID_MAX], user[SBX_ID_MAX];
  uint64_t epoch;
  double t;
  int ok, trole;
  int used;
} ac_user;

typedef struct ac_member {
  char tenant[SBX_ID_MAX], project[SBX_ID_MAX], user[SBX_ID_MAX];
  uint64_t epoch;
  double t;
  int role;
  int used;
} ac_member;

typedef struct ac_deny {
  char tenant[SBX_ID_MAX], kind[8], subject[SBX_ID_MAX];
  uint64_t epoch;
  double t;
  int64_t nbf;
  int used;
} ac_deny;

struct sbx__authcache {
  pthread_mutex_t mu;
  ac_key keys[SBX__AC_SLOTS];
  ac_user users[SBX__AC_SLOTS];
  ac_member members[SBX__AC_SLOTS];
  ac_deny denies[SBX__AC_SLOTS];
};

static _Atomic uint64_t g_epoch = 1;

void sbx__authcache_invalidate(void) {
  atomic_fetch_add(&g_epoch, 1);
}

uint64_t sbx__authcache_epoch(void) {
  return atomic_load(&g_epoch);
}

/* Entry still usable: loaded under the current epoch, within the TTL. */
static int fresh(uint64_t epoch, double t) {
  return epoch == sbx__authcache_epoch() && sbx__mono() - t < SBX__AC_TTL_S;
}

/* FNV-1a over NUL-separated strings, for the slot of users/members. */
static unsigned slot_of(const char *a, const char *b, const char *c) {
  uint64_t h = 1469598103934665603ull;
  const char *s[3] = {a, b, c};
  for (int i = 0; i < 3 && s[i]; i++) {
    for (const char *p = s[i]; *p; p++)
      h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  }
  return (unsigned)(h % SBX__AC_SLOTS);
}

struct sbx__authcache *sbx__authcache_new(void) {
  struct sbx__authcache *c = calloc(1, sizeof *c);
  if (c)
    pthread_mutex_init(&c->mu, NULL);
  return c;
}

void sbx__authcache_free(struct sbx__authcache *c) {
  if (!c)
    return;
  pthread_mutex_destroy(&c->mu);
  sbx_memwipe(c, sizeof *c);
  free(c);
}

/* Looks up a verified key by the SHA-256 of the presented string. SBX_OK
 * with *out on a fresh hit (the caller checks the expiry); *touch = 1 when
 * last_used_at is due (at most once a minute per key per process). */
int sbx__ac_key_get(struct sbx__authcache *c, const uint8_t h[SBX_SHA256_LEN],
                    int64_t now, sbx__ac_apikey *out, int *touch) {
  *touch = 0;
  if (!c)
    return SBX_ENOTFOUND;
  unsigned slot = ((unsigned)h[0] | (unsigned)h[1] << 8) % SBX__AC_SLOTS;
  int rc = SBX_ENOTFOUND;
  pthread_mutex_lock(&c->mu);
  ac_key *e = &c->keys[slot];
  if (e->used && !memcmp(e->h, h, SBX_SHA256_LEN) && fresh(e->epoch, e->t)) {
    *out = e->k;
    if (now - e->last_touch >= 60) {
      e->last_touch = now;
      *touch = 1;
    }
    rc = SBX_OK;
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* Stores a key verified against the database under epoch (read before the
 * database was). last_touch: the key's last_used_at as now written. */
void sbx__ac_key_put(struct sbx__authcache *c, const uint8_t h[SBX_SHA256_LEN],
                     const sbx__ac_apikey *k, uint64_t epoch,
                     int64_t last_touch) {
  if (!c)
    return;
  unsigned slot = ((unsigned)h[0] | (unsigned)h[1] << 8) % SBX__AC_SLOTS;
  pthread_mutex_lock(&c->mu);
  ac_key *e = &c->keys[slot];
  memcpy(e->h, h, SBX_SHA256_LEN);
  e->epoch = epoch;
  e->t = sbx__mono();
  e->last_touch = last_touch;
  e->k = *k;
  e->used = 1;
  pthread_mutex_unlock(&c->mu);
}

/* Database side of sbx__ac_user: tenant active, user present and enabled,
 * tenant role. */
static int load_user(sbx_meta *m, const char *tenant, const char *user, int *ok,
                     int *trole) {
  sbx_tenant t;
  sbx_user u;
  char role[SBX_KIND_MAX] = "";
  *ok = 0;
  *trole = 0;
  int rc = sbx_meta_tenant_get(m, tenant, &t);
  if (rc == SBX_ENOTFOUND)
    return SBX_OK;
  if (rc)
    return rc;
  if (t.state != SBX_TENANT_ACTIVE)
    return SBX_OK;
  rc = sbx_meta_user_get(m, tenant, user, &u);
  if (rc == SBX_ENOTFOUND)
    return SBX_OK;
  if (rc)
    return rc;
  rc = sbx__dbx_tenant_role_get(m, tenant, user, role);
  if (rc)
    return rc;
  *ok = !u.disabled;
  *trole = sbx__role_bit(role);
  return SBX_OK;
}

int sbx__ac_user(sbx__req *r, const char *tenant, const char *user,
                 int *trole) {
  struct sbx__authcache *c = r->srv->ac;
  unsigned slot = slot_of(tenant, user, NULL);
  *trole = 0;
  if (c) {
    pthread_mutex_lock(&c->mu);
    ac_user *e = &c->users[slot];
    if (e->used && fresh(e->epoch, e->t) && !strcmp(e->tenant, tenant) &&
        !strcmp(e->user, user)) {
      int ok = e->ok;
      *trole = ok ? e->trole : 0;
      pthread_mutex_unlock(&c->mu);
      return ok ? SBX_OK : SBX_EAUTH;
    }
    pthread_mutex_unlock(&c->mu);
  }
  uint64_t epoch = sbx__authcache_epoch();
  int ok = 0, role = 0;
  int rc = load_user(sbx_store_meta(r->st), tenant, user, &ok, &role);
  if (rc) /* a database error is not cached */
    return SBX_EAUTH;
  if (c && strlen(tenant) < SBX_ID_MAX && strlen(user) < SBX_ID_MAX) {
    pthread_mutex_lock(&c->mu);
    ac_user *e = &c->users[slot];
    snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
    snprintf(e->user, sizeof e->user, "%s", user);
    e->epoch = epoch;
    e->t = sbx__mono();
    e->ok = ok;
    e->trole = role;
    e->used = 1;
    pthread_mutex_unlock(&c->mu);
  }
  *trole = ok ? role : 0;
  return ok ? SBX_OK : SBX_EAUTH;
}

int sbx__ac_member(sbx__req *r, const char *tenant, const char *project,
                   const char *user) {
  struct sbx__authcache *c = r->srv->ac;
  unsigned slot = slot_of(tenant, project, user);
  if (c) {
    pthread_mutex_lock(&c->mu);
    ac_member *e = &c->members[slot];
    if (e->used && fresh(e->epoch, e->t) && !strcmp(e->tenant, tenant) &&
        !strcmp(e->project, project) && !strcmp(e->user, user)) {
      int role = e->role;
      pthread_mutex_unlock(&c->mu);
      return role;
    }
    pthread_mutex_unlock(&c->mu);
  }
  uint64_t epoch = sbx__authcache_epoch();
  char mrole[SBX_KIND_MAX] = "";
  int rc = sbx_meta_membership_get(sbx_store_meta(r->st), tenant, project, user,
                                   mrole);
  if (rc && rc != SBX_ENOTFOUND)
    return 0; /* not cached */
  int role = sbx__role_bit(mrole);
  if (c && strlen(tenant) < SBX_ID_MAX && strlen(project) < SBX_ID_MAX &&
      strlen(user) < SBX_ID_MAX) {
    pthread_mutex_lock(&c->mu);
    ac_member *e = &c->members[slot];
    snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
    snprintf(e->project, sizeof e->project, "%s", project);
    snprintf(e->user, sizeof e->user, "%s", user);
    e->epoch = epoch;
    e->t = sbx__mono();
    e->role = role;
    e->used = 1;
    pthread_mutex_unlock(&c->mu);
  }
  return role;
}

int sbx__ac_denied(sbx__req *r, const char *tenant, const char *kind,
                   const char *subject, int64_t *nbf) {
  struct sbx__authcache *c = r->srv->ac;
  unsigned slot = slot_of(tenant, kind, subject);
  *nbf = 0;
  if (c) {
    pthread_mutex_lock(&c->mu);
    ac_deny *e = &c->denies[slot];
    if (e->used && fresh(e->epoch, e->t) && !strcmp(e->tenant, tenant) &&
        !strcmp(e->kind, kind) && !strcmp(e->subject, subject)) {
      *nbf = e->nbf;
      pthread_mutex_unlock(&c->mu);
      return SBX_OK;
    }
    pthread_mutex_unlock(&c->mu);
  }
  uint64_t epoch = sbx__authcache_epoch();
  int64_t v = 0;
  int rc = sbx_meta_token_denied(sbx_store_meta(r->st), tenant, kind, subject,
                                 sbx__now(), &v);
  if (rc) /* a database error is not cached, and refuses */
    return SBX_EAUTH;
  if (c && strlen(tenant) < SBX_ID_MAX && strlen(kind) < 8 &&
      strlen(subject) < SBX_ID_MAX) {
    pthread_mutex_lock(&c->mu);
    ac_deny *e = &c->denies[slot];
    snprintf(e->tenant, sizeof e->tenant, "%s", tenant);
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    snprintf(e->subject, sizeof e->subject, "%s", subject);
    e->epoch = epoch;
    e->t = sbx__mono();
    e->nbf = v;
    e->used = 1;
    pthread_mutex_unlock(&c->mu);
  }
  *nbf = v;
  return SBX_OK;
}
