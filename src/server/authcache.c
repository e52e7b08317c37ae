/*
 * authcache.c - in-process cache of authentication and role lookups.
 *
 * Without it every authenticated request ran 3-4 SQLite statements before
 * the handler's own (API key row, tenant state, user row, tenant role),
 * and each autocommit read takes and drops the WAL read lock: most of the
 * per-request CPU. Four bounded, direct-mapped tables (SBX__AC_SLOTS
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

/* users, members and denies: a key of up to three ids (NUL-separated,
 * compared with its length) and up to two values */
#define AC_ROW_KEY (3 * SBX_ID_MAX)
typedef struct ac_row {
  char key[AC_ROW_KEY];
  size_t klen;
  uint64_t epoch;
  double t;
  int64_t v[2];
  int used;
} ac_row;

struct sbx__authcache {
  pthread_mutex_t mu;
  ac_key keys[SBX__AC_SLOTS];
  ac_row users[SBX__AC_SLOTS];   /* (tenant, user) -> ok, tenant role */
  ac_row members[SBX__AC_SLOTS]; /* (tenant, project, user) -> role */
  ac_row denies[SBX__AC_SLOTS];  /* (tenant, kind, id) -> not_before */
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

/* The row key "a\0b\0c" (c may be NULL) into k; its length, 0 when an id
 * is too long (such a lookup is not cached). */
static size_t row_key(char k[AC_ROW_KEY], const char *a, const char *b,
                      const char *c) {
  const char *s[3] = {a, b, c};
  size_t n = 0;
  for (int i = 0; i < 3 && s[i]; i++) {
    size_t l = strlen(s[i]);
    if (l >= SBX_ID_MAX)
      return 0;
    memcpy(k + n, s[i], l + 1);
    n += l + 1;
  }
  return n;
}

/* FNV-1a of a row key: its slot. */
static unsigned row_slot(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
  return (unsigned)(h % SBX__AC_SLOTS);
}

/* A fresh row of tab under key k (n bytes): 1 and v, else 0. */
static int row_get(struct sbx__authcache *c, ac_row *tab, const char *k,
                   size_t n, int64_t v[2]) {
  if (!c || !n)
    return 0;
  pthread_mutex_lock(&c->mu);
  ac_row *e = &tab[row_slot(k, n)];
  int hit =
      e->used && fresh(e->epoch, e->t) && e->klen == n && !memcmp(e->key, k, n);
  if (hit)
    memcpy(v, e->v, sizeof e->v);
  pthread_mutex_unlock(&c->mu);
  return hit;
}

/* Stores v under key k (n bytes), loaded under epoch. */
static void row_put(struct sbx__authcache *c, ac_row *tab, const char *k,
                    size_t n, uint64_t epoch, const int64_t v[2]) {
  if (!c || !n)
    return;
  pthread_mutex_lock(&c->mu);
  ac_row *e = &tab[row_slot(k, n)];
  memcpy(e->key, k, n);
  e->klen = n;
  e->epoch = epoch;
  e->t = sbx__mono();
  memcpy(e->v, v, sizeof e->v);
  e->used = 1;
  pthread_mutex_unlock(&c->mu);
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
  if (t.state != SBX_TENANT_ACTIVE && t.state != SBX_TENANT_LOCKED)
    return SBX_OK; /* LOCKED (frozen): reads work, authz.c answers 423 */
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
  char k[AC_ROW_KEY];
  size_t n = row_key(k, tenant, user, NULL);
  int64_t v[2] = {0, 0}; /* ok, tenant role */
  if (!row_get(c, c ? c->users : NULL, k, n, v)) {
    uint64_t epoch = sbx__authcache_epoch();
    int ok = 0, role = 0;
    if (load_user(sbx_store_meta(r->st), tenant, user, &ok, &role)) {
      *trole = 0; /* a database error is not cached */
      return SBX_EAUTH;
    }
    v[0] = ok;
    v[1] = role;
    row_put(c, c ? c->users : NULL, k, n, epoch, v);
  }
  *trole = v[0] ? (int)v[1] : 0;
  return v[0] ? SBX_OK : SBX_EAUTH;
}

int sbx__ac_member(sbx__req *r, const char *tenant, const char *project,
                   const char *user) {
  struct sbx__authcache *c = r->srv->ac;
  char k[AC_ROW_KEY];
  size_t n = row_key(k, tenant, project, user);
  int64_t v[2] = {0, 0}; /* membership role */
  if (!row_get(c, c ? c->members : NULL, k, n, v)) {
    uint64_t epoch = sbx__authcache_epoch();
    char mrole[SBX_KIND_MAX] = "";
    int rc = sbx_meta_membership_get(sbx_store_meta(r->st), tenant, project,
                                     user, mrole);
    if (rc && rc != SBX_ENOTFOUND)
      return 0; /* not cached */
    v[0] = sbx__role_bit(mrole);
    row_put(c, c ? c->members : NULL, k, n, epoch, v);
  }
  return (int)v[0];
}

int sbx__ac_denied(sbx__req *r, const char *tenant, const char *kind,
                   const char *subject, int64_t *nbf) {
  struct sbx__authcache *c = r->srv->ac;
  char k[AC_ROW_KEY];
  size_t n = row_key(k, tenant, kind, subject);
  int64_t v[2] = {0, 0}; /* not_before */
  if (!row_get(c, c ? c->denies : NULL, k, n, v)) {
    uint64_t epoch = sbx__authcache_epoch();
    if (sbx_meta_token_denied(sbx_store_meta(r->st), tenant, kind, subject,
                              sbx__now(), &v[0])) {
      *nbf = 0; /* a database error is not cached, and refuses */
      return SBX_EAUTH;
    }
    row_put(c, c ? c->denies : NULL, k, n, epoch, v);
  }
  *nbf = v[0];
  return SBX_OK;
}
