/*
 * incident.c - incident-response tools (incident.h; steps in
 * docs/runbook.md).
 *
 * Rotations on a live server: a rotation drains the store handle pool
 * (pool.h): requests that arrive meanwhile wait for a handle instead of
 * getting one (no 503), in-flight ones finish first, so no request ever
 * sees a tenant key or the master key change under it. The rotation then
 * runs on the caller's own handle; after a master key rotation every other
 * handle is reopened with the new key before the pool is released. The
 * JWT key needs no drain: the signing key is swapped under s->jwt_mu and
 * the old public key keeps verifying for the access-token lifetime.
 */
#include "incident.h"

#include <fcntl.h>
#include <jansson.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "auth.h"
#include "authcache.h"
#include "keyfile.h"
#include "log.h"
#include "pool.h"
#include "reply.h"
#include "state.h"
#include "util.h"

#define CLI_ACTOR "admin-cli"
#define DRAIN_TIMEOUT_S 20.0

int sbx__incident_locked(sbx__req *r) {
  sbx_tenant t;
  if (!r->st || sbx_meta_tenant_get(sbx_store_meta(r->st), r->who.tenant, &t))
    return 0; /* unknown tenants never got past authentication */
  return t.state == SBX_TENANT_LOCKED;
}

/* ---- the operations, shared by the routes and the CLI ---- */

/* Freeze (LOCKED) or unfreeze (ACTIVE) tenant; a shredded or store-frozen
 * tenant is not touched (SBX_EPERM). *changed: the state moved. */
static int freeze(sbx_meta *m, const char *tenant, int frozen, int *changed) {
  sbx_tenant t;
  *changed = 0;
  int rc = sbx_meta_tenant_get(m, tenant, &t);
  if (rc)
    return rc;
  if (t.state != SBX_TENANT_ACTIVE && t.state != SBX_TENANT_LOCKED)
    return SBX_EPERM;
  int64_t want = frozen ? SBX_TENANT_LOCKED : SBX_TENANT_ACTIVE;
  if (t.state == want)
    return SBX_OK;
  rc = sbx_meta_tenant_set_state(m, tenant, want);
  *changed = !rc;
  return rc;
}

/* Re-seals the sealed key file name (role ctx) of dir from kek into
 * name + ".mk-new" under nk. SBX_OK also when the file does not exist. */
static int reseal(sbx_kek *kek, sbx_kek *nk, const char *dir, const char *name,
                  const char *ctx) {
  char path[SBX_PATH_MAX + 64], fresh[96];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (access(path, F_OK))
    return SBX_OK;
  char *pem = NULL;
  size_t n = 0;
  int rc = sbx__keyfile_load(kek, dir, name, "-none-", ctx, &pem, &n);
  snprintf(fresh, sizeof fresh, "%s.mk-new", name);
  snprintf(path, sizeof path, "%s/%s", dir, fresh);
  unlink(path);
  if (!rc)
    rc = sbx__keyfile_create(nk, dir, fresh, ctx, pem, n);
  if (pem) {
    sbx_memwipe(pem, n);
    free(pem);
  }
  return rc;
}

/* Renames dir/name.mk-new over dir/name when it exists. */
static int reseal_commit(const char *dir, const char *name) {
  char from[SBX_PATH_MAX + 80], to[SBX_PATH_MAX + 64];
  snprintf(from, sizeof from, "%s/%s.mk-new", dir, name);
  snprintf(to, sizeof to, "%s/%s", dir, name);
  if (access(from, F_OK))
    return SBX_OK;
  return rename(from, to) ? SBX_EIO : SBX_OK;
}

static void fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* The directory part of a file path (for its fsync). */
static void dir_of(const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s", path);
  char *sl = strrchr(out, '/');
  if (sl && sl != out)
    *sl = 0;
  else
    snprintf(out, cap, "%s", sl ? "/" : ".");
}

/*
 * Master key rotation on st (the only handle in use: the caller drained
 * the others or runs offline). Only file: specs (the embedded default
 * included): a token key (pkcs11:), a systemd credential, env: and cmd:
 * keys are rotated where they live, then the server restarted
 * (SBX_EUNSUPPORTED here).
 *   1. a new key in PATH.new (0600, fsynced); a PATH.new left by an
 *      interrupted rotation is refused (SBX_EEXIST: see the runbook);
 *   2. the sealed TLS and JWT keys re-sealed under it into *.mk-new;
 *   3. one store transaction re-wraps every tenant key and the pepper;
 *   4. *.mk-new and PATH.new renamed into place, the directories fsynced.
 * A crash after 3 leaves the new key in PATH.new and the re-sealed files
 * in *.mk-new: renaming them completes the rotation (runbook). *nk_out
 * (may be NULL) receives the new key's kek (caller frees).
 */
static int master_rotate(const char *spec, sbx_store *st, sbx_kek *kek,
                         const char *dir, int tls_sealed, sbx_kek **nk_out) {
  if (nk_out)
    *nk_out = NULL;
  if (strncmp(spec, "file:", 5))
    return SBX_EUNSUPPORTED;
  const char *path = spec + 5;
  char fresh[SBX_PATH_MAX + 16], kdir[SBX_PATH_MAX + 8];
  if ((size_t)snprintf(fresh, sizeof fresh, "%s.new", path) >= sizeof fresh)
    return SBX_EINVAL;
  dir_of(path, kdir, sizeof kdir);
  sbx_key nkey;
  int rc = sbx_master_key_create_file(fresh, &nkey);
  if (rc)
    return rc;
  sbx_kek *nk = NULL;
  rc = sbx_kek_from_key(&nkey, &nk);
  if (!rc && tls_sealed)
    rc = reseal(kek, nk, dir, "tls-key.sealed", "aisbxd tls key");
  if (!rc)
    rc = reseal(kek, nk, dir, "jwt-ed25519.sealed", "aisbxd jwt key");
  if (!rc)
    rc = sbx_store_rotate_master_key(st, &nkey);
  sbx_key_wipe(&nkey);
  if (rc) {
    char p2[SBX_PATH_MAX + 80];
    snprintf(p2, sizeof p2, "%s/tls-key.sealed.mk-new", dir);
    unlink(p2);
    snprintf(p2, sizeof p2, "%s/jwt-ed25519.sealed.mk-new", dir);
    unlink(p2);
    unlink(fresh);
    sbx_kek_free(nk);
    return rc;
  }
  /* the database is under the new key now: put it in place */
  rc = reseal_commit(dir, "tls-key.sealed");
  if (!rc)
    rc = reseal_commit(dir, "jwt-ed25519.sealed");
  if (!rc && rename(fresh, path))
    rc = SBX_EIO;
  fsync_dir(dir);
  fsync_dir(kdir);
  if (rc)
    sbx__log("master key rotation: the database is under the new key in "
             "%s but it could not be put in place: rename it over %s (and "
             "the *.mk-new files of %s) before the next start",
             fresh, path, dir);
  if (nk_out && !rc)
    *nk_out = nk;
  else
    sbx_kek_free(nk);
  return rc;
}

/* ---- routes ---- */

/* params[0] must be the caller's own tenant (another one does not exist
 * for it). Returns 1 with 404 set otherwise. */
static int not_own_tenant(sbx__req *r) {
  if (!strcmp(r->params[0], r->who.tenant))
    return 0;
  sbx__problem(r, 404, "Not Found", NULL);
  return 1;
}

int sbx__h_user_revoke_all(sbx__req *r) {
  sbx_revoke_counts c;
  sbx_user u;
  int rc =
      sbx_meta_user_get(sbx_store_meta(r->st), r->who.tenant, r->params[0], &u);
  if (!rc)
    rc = sbx_meta_user_revoke_all(
        sbx_store_meta(r->st), r->who.tenant, r->params[0], sbx__now(),
        SBX_REVOKE_API_KEYS | SBX_REVOKE_ISSUED_KEYS, &c);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__authcache_invalidate(); /* cached keys of the user die at once */
  sbx__audit(r, "user.revoke_credentials", r->params[0]);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:I,s:I,s:I}", "user", r->params[0],
                                   "sessions", (json_int_t)c.sessions,
                                   "refresh_tokens",
                                   (json_int_t)c.refresh_tokens, "api_keys",
                                   (json_int_t)c.api_keys));
}

int sbx__h_tenant_freeze(sbx__req *r) {
  if (not_own_tenant(r))
    return 0;
  static const char *const fields[] = {"frozen", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  json_t *fz = json_object_get(j, "frozen");
  if (!json_is_boolean(fz)) {
    json_decref(j);
    return sbx__problem(r, 400, "Bad Request", "frozen must be a boolean");
  }
  int frozen = json_is_true(fz), changed = 0;
  json_decref(j);
  int rc = freeze(sbx_store_meta(r->st), r->who.tenant, frozen, &changed);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, frozen ? "tenant.freeze" : "tenant.unfreeze", r->who.tenant);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:b,s:b}", "tenant", r->who.tenant,
                                   "frozen", frozen, "changed", changed));
}

/* Runs fn(r) with every store handle but r's drained (tenant and master
 * key rotations: no request may see a key change under it); one rotation
 * at a time. When requests in flight do not finish in time: 503 with
 * Retry-After set and SBX_EBUSY returned. Otherwise fn's status. */
static int exclusive(sbx__req *r, int (*fn)(sbx__req *r)) {
  sbx_server *s = r->srv;
  pthread_mutex_lock(&s->rot_mu);
  int rc = sbx__pool_drain(&s->pool, r->st, DRAIN_TIMEOUT_S);
  if (!rc) {
    rc = fn(r);
    sbx__pool_undrain(&s->pool);
  }
  pthread_mutex_unlock(&s->rot_mu);
  if (rc == SBX_EBUSY) {
    sbx__add_header(r, "Retry-After", "5");
    sbx__problem(r, 503, "Service Unavailable",
                 "requests still in flight: retry");
  }
  return rc;
}

static int tenant_rotate(sbx__req *r) {
  return sbx_store_rotate_tenant_key(r->st, r->who.tenant);
}

int sbx__h_tenant_key_rotate(sbx__req *r) {
  if (not_own_tenant(r))
    return 0;
  int rc = exclusive(r, tenant_rotate);
  if (rc == SBX_EBUSY)
    return 0;
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "key.tenant.rotate", r->who.tenant);
  return sbx__reply_json(
      r, 200, json_pack("{s:s,s:b}", "tenant", r->who.tenant, "rotated", 1));
}

/* Started as root, the confined server runs as run_as_user and cannot
 * read or replace its root-owned key files (docs/security.md "Server
 * confinement"): live JWT and master-key rotation then answer 409 naming
 * the ways that work (offline `aisbxd admin rotate-...`, or aisbxd run as
 * its own user). Returns 1 when that answer was sent. */
static int keys_out_of_reach(sbx__req *r) {
  char p[SBX_PATH_MAX + 48];
  snprintf(p, sizeof p, "%s/jwt-ed25519.sealed", r->srv->data_dir);
  if (!access(p, R_OK) || errno != EACCES)
    return 0;
  sbx__problem(r, 409, "Conflict",
               "the key files belong to root and this server runs confined "
               "as another user: rotate with `aisbxd admin rotate-jwt-key` / "
               "`rotate-master-key` on the stopped data dir, or run aisbxd "
               "as its own user (docs/runbook.md)");
  return 1;
}

int sbx__h_jwt_key_rotate(sbx__req *r) {
  static const char *const fields[] = {"retire_old", NULL};
  json_t *j = sbx__body_object(r, fields); /* optional: {} when absent */
  if (!j)
    return 0;
  json_t *ro = json_object_get(j, "retire_old");
  if (ro && !json_is_boolean(ro)) {
    json_decref(j);
    return sbx__problem(r, 400, "Bad Request", "retire_old must be a boolean");
  }
  int retire = ro && json_is_true(ro);
  json_decref(j);
  if (keys_out_of_reach(r))
    return 0;
  char kid[32] = "";
  pthread_mutex_lock(&r->srv->rot_mu);
  int rc = sbx__jwt_rotate(r->srv, retire, kid);
  pthread_mutex_unlock(&r->srv->rot_mu);
  if (rc == SBX_EBUSY)
    return sbx__problem(r, 409, "Conflict",
                        "too many retired keys still verify tokens: wait "
                        "for access_ttl_s, or retire_old");
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, retire ? "key.jwt.rotate_retire" : "key.jwt.rotate", kid);
  return sbx__reply_json(
      r, 200, json_pack("{s:s,s:b}", "kid", kid, "retired_old", retire));
}

/* The master key rotation, then every other pool handle reopened with
 * the new key (they hold the old one); the caller drained the pool. */
static int master_rotate_live(sbx__req *r) {
  sbx_server *s = r->srv;
  sbx_kek *nk = NULL;
  int rc = master_rotate(s->master_spec, r->st, s->kek, s->data_dir,
                         !s->p.tls_key_file, &nk);
  if (rc)
    return rc;
  sbx_kek_free(s->kek); /* used only at start and by rotations */
  s->kek = nk;
  for (int i = 0; i < s->pool.n; i++) {
    sbx_store *h = NULL;
    if (s->pool.h[i] == r->st)
      continue;
    int orc = sbx_server_store_open(&s->p, &h);
    if (orc) {
      sbx__log("master key rotation: reopening a store handle: %s",
               sbx_strerror(orc));
      continue;
    }
    sbx_store_close(s->pool.h[i]);
    s->pool.h[i] = h;
  }
  return SBX_OK;
}

int sbx__h_master_key_rotate(sbx__req *r) {
  if (keys_out_of_reach(r))
    return 0;
  int rc = exclusive(r, master_rotate_live);
  if (rc == SBX_EBUSY)
    return 0;
  if (rc == SBX_EUNSUPPORTED)
    return sbx__problem(r, 409, "Conflict",
                        "the master key is not a file: rotate it where it "
                        "lives (docs/runbook.md)");
  if (rc == SBX_EEXIST)
    return sbx__problem(r, 409, "Conflict",
                        "an interrupted rotation left the next key file "
                        "(docs/runbook.md)");
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "key.master.rotate", "-");
  return sbx__reply_json(r, 200, json_pack("{s:b}", "rotated", 1));
}

/* ---- offline: a stopped server's data dir ---- */

/* Appends the CLI's audit row to tenant (a failure is printed by the
 * caller through rc). */
static int cli_audit(sbx_store *st, const char *tenant, const char *action,
                     const char *target) {
  return sbx_meta_audit_append(sbx_store_meta(st), tenant, sbx__now(),
                               CLI_ACTOR, action, target, NULL);
}

int sbx__incident_revoke_user(const sbx_server_params *p, const char *tenant,
                              const char *user, sbx_revoke_counts *out) {
  sbx_store *st = NULL;
  tenant = tenant ? tenant : "default";
  int rc = sbx_server_store_open(p, &st);
  sbx_user u;
  if (!rc)
    rc = sbx_meta_user_get(sbx_store_meta(st), tenant, user, &u);
  if (!rc)
    rc = sbx_meta_user_revoke_all(sbx_store_meta(st), tenant, user, sbx__now(),
                                  SBX_REVOKE_API_KEYS | SBX_REVOKE_ISSUED_KEYS,
                                  out);
  if (!rc)
    rc = cli_audit(st, tenant, "user.revoke_credentials", user);
  sbx_store_close(st);
  return rc;
}

int sbx__incident_freeze(const sbx_server_params *p, const char *tenant,
                         int frozen) {
  sbx_store *st = NULL;
  tenant = tenant ? tenant : "default";
  int changed = 0;
  int rc = sbx_server_store_open(p, &st);
  if (!rc)
    rc = freeze(sbx_store_meta(st), tenant, frozen, &changed);
  if (!rc)
    rc = cli_audit(st, tenant, frozen ? "tenant.freeze" : "tenant.unfreeze",
                   tenant);
  sbx_store_close(st);
  return rc;
}

int sbx__incident_rotate_tenant_key(const sbx_server_params *p,
                                    const char *tenant) {
  sbx_store *st = NULL;
  tenant = tenant ? tenant : "default";
  int rc = sbx_server_store_open(p, &st);
  if (!rc)
    rc = sbx_store_rotate_tenant_key(st, tenant);
  if (!rc)
    rc = cli_audit(st, tenant, "key.tenant.rotate", tenant);
  sbx_store_close(st);
  return rc;
}

int sbx__incident_rotate_jwt(const sbx_server_params *p, const char *tenant,
                             int retire_old, char kid[32]) {
  char spec[SBX_PATH_MAX + 8];
  sbx_kek *kek = NULL;
  sbx_store *st = NULL;
  tenant = tenant ? tenant : "default";
  int ttl =
      p->access_ttl_s > 0 && p->access_ttl_s <= 900 ? p->access_ttl_s : 900;
  int rc = sbx_server_master_key_spec(p, spec, sizeof spec);
  if (!rc)
    rc = sbx_server_store_open(p, &st); /* also checks the key matches */
  if (!rc)
    rc = sbx_kek_open(spec, &kek);
  if (!rc)
    rc = sbx__jwt_rotate_files(kek, p->data_dir, ttl, retire_old, sbx__now(),
                               kid);
  if (!rc)
    rc =
        cli_audit(st, tenant,
                  retire_old ? "key.jwt.rotate_retire" : "key.jwt.rotate", kid);
  sbx_kek_free(kek);
  sbx_store_close(st);
  return rc;
}

int sbx__incident_rotate_master(const sbx_server_params *p,
                                const char *tenant) {
  char spec[SBX_PATH_MAX + 8];
  sbx_kek *kek = NULL;
  sbx_store *st = NULL;
  tenant = tenant ? tenant : "default";
  int rc = sbx_server_master_key_spec(p, spec, sizeof spec);
  if (!rc)
    rc = sbx_server_store_open(p, &st);
  if (!rc)
    rc = sbx_kek_open(spec, &kek);
  if (!rc)
    rc = master_rotate(spec, st, kek, p->data_dir, !p->tls_key_file, NULL);
  if (!rc)
    rc = cli_audit(st, tenant, "key.master.rotate", "-");
  sbx_kek_free(kek);
  sbx_store_close(st);
  return rc;
}
