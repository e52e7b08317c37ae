/*
 * server.c - configuration, start/stop, `aisbxd init`.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "authcache.h"
#include "confine.h"
#include "dbx.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "oidc.h"
#include "park.h"
#include "privacy.h"
#include "audit_ops.h"
#include "reqlog.h"
#include "sbx/jobs.h"
#include "sbx/server.h"
#include "state.h"
#include "syslog.h"
#include "table.h"
#include "tls.h"
#include "util.h"

sbx_server_params sbx_server_default_params(void) {
  sbx_server_params p;
  memset(&p, 0, sizeof p);
  p.listen = "127.0.0.1:8443";
  p.issuer = "aisbxd";
  p.max_json_bytes = 64 * 1024;
  p.max_upload_bytes = 256ll << 20;
  p.quota_tenant_bytes = 50ll << 30;
  p.quota_tenant_objects = 100000;
  p.quota_project_bytes = 10ll << 30;
  p.quota_project_objects = 20000;
  p.rate_ip_per_s = 200;
  p.rate_ip_burst = 400;
  p.rate_key_per_s = 100;
  p.rate_key_burst = 200;
  p.access_ttl_s = 900;
  p.refresh_ttl_s = 30 * 86400;
  p.login_max_failures = 5;
  p.lockout_s = 900;
  p.blob_fsync = 1;
  p.threads = 2;
  p.session_ttl_s = 8 * 3600;
  p.oidc_scopes = "openid profile email";
  p.oidc_groups_claim = "groups";
  p.oidc_leeway_s = 60;
  p.oidc_jwks_min_refresh_s = 60;
  p.job_lease_s = 30;
  p.conn_budget = 1000;
  p.conn_per_ip_max = 256;
  p.tls_handshake_timeout_s = 5;
  p.head_timeout_s = 10;
  p.body_min_rate = 1024;
  p.idle_timeout_s = 30;
  p.audit_anchor_interval_s = 300;
  p.retention_purge_interval_s = 3600;
  p.audit_retention_min_s = 365 * 86400LL;
  return p;
}

/* ---- configuration: "key = value" lines, then AISBXD_<KEY> ---- */

typedef struct cfg_key {
  const char *name;
  char type; /* s string, i int, l int64 */
  size_t off;
} cfg_key;
#define CK(n, t)                                                               \
  { #n, t, offsetof(sbx_server_params, n) }
static const cfg_key CFG[] = {
    CK(data_dir, 's'),
    CK(listen, 's'),
    CK(master_key_spec, 's'),
    CK(tls_cert_file, 's'),
    CK(tls_key_file, 's'),
    CK(issuer, 's'),
    CK(max_json_bytes, 'l'),
    CK(max_upload_bytes, 'l'),
    CK(quota_tenant_bytes, 'l'),
    CK(quota_tenant_objects, 'l'),
    CK(quota_project_bytes, 'l'),
    CK(quota_project_objects, 'l'),
    CK(quota_object_bytes, 'l'),
    CK(rate_ip_per_s, 'i'),
    CK(rate_ip_burst, 'i'),
    CK(rate_key_per_s, 'i'),
    CK(rate_key_burst, 'i'),
    CK(access_ttl_s, 'i'),
    CK(refresh_ttl_s, 'i'),
    CK(login_max_failures, 'i'),
    CK(lockout_s, 'i'),
    CK(blob_fsync, 'i'),
    CK(threads, 'i'),
    CK(session_ttl_s, 'i'),
    CK(public_origin, 's'),
    CK(oidc_issuer, 's'),
    CK(oidc_client_id, 's'),
    CK(oidc_client_secret_spec, 's'),
    CK(oidc_redirect_uri, 's'),
    CK(oidc_scopes, 's'),
    CK(oidc_tenant, 's'),
    CK(oidc_groups_claim, 's'),
    CK(oidc_role_map, 's'),
    CK(oidc_ca_file, 's'),
    CK(oidc_leeway_s, 'i'),
    CK(oidc_token_auth, 's'),
    CK(oidc_jwks_min_refresh_s, 'i'),
    CK(metrics_token_file, 's'),
    CK(job_lease_s, 'i'),
    CK(conn_budget, 'i'),
    CK(conn_per_ip_max, 'i'),
    CK(tls_handshake_timeout_s, 'i'),
    CK(head_timeout_s, 'i'),
    CK(body_min_rate, 'i'),
    CK(idle_timeout_s, 'i'),
    CK(pg_conninfo, 's'),
    CK(audit_anchor_file, 's'),
    CK(audit_anchor_interval_s, 'i'),
    CK(log_file, 's'),
    CK(retention_purge_interval_s, 'i'),
    CK(audit_retention_min_s, 'l'),
    CK(log_max_bytes, 'i'),
    CK(log_keep, 'i'),
    CK(syslog_url, 's'),
    CK(syslog_ca_file, 's'),
    CK(syslog_queue_max, 'i'),
    CK(run_as_user, 's'),
    CK(confine, 's'),
};

static int cfg_set(sbx_server_params *p, const char *k, const char *v) {
  for (size_t i = 0; i < sizeof CFG / sizeof CFG[0]; i++) {
    if (strcmp(CFG[i].name, k))
      continue;
    char *base = (char *)p + CFG[i].off;
    if (CFG[i].type == 's') {
      /* kept for the process lifetime in a static arena (no heap block
       * for the leak checker to report), capped */
      static char arena[16384];
      static size_t used;
      size_t n = strlen(v) + 1;
      if (n > sizeof arena - used) {
        sbx__log("config %s: too much configuration text", k);
        return SBX_ELIMIT;
      }
      memcpy(arena + used, v, n);
      *(const char **)base = arena + used;
      used += n;
      return SBX_OK;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < 0) {
      sbx__log("config %s: not a non-negative integer", k);
      return SBX_EINVAL;
    }
    if (CFG[i].type == 'i') {
      if (x > 1000000000)
        return SBX_EINVAL;
      *(int *)base = (int)x;
    } else {
      *(int64_t *)base = x;
    }
    if (!strcmp(k, "access_ttl_s") && (x == 0 || x > 900)) {
      sbx__log("access_ttl_s must be 1..900");
      return SBX_EINVAL;
    }
    return SBX_OK;
  }
  sbx__log("unknown configuration key '%s'", k);
  return SBX_EINVAL;
}

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  size_t n = strlen(s);
  while (n && isspace((unsigned char)s[n - 1]))
    s[--n] = 0;
  return s;
}

int sbx_server_config_load(sbx_server_params *p, const char *path) {
  if (path) {
    FILE *f = fopen(path, "r");
    if (!f) {
      sbx__log("config %s: %s", path, strerror(errno));
      return SBX_EIO;
    }
    char line[2048];
    int ln = 0, rc = SBX_OK;
    while (!rc && fgets(line, sizeof line, f)) {
      ln++;
      char *l = trim(line);
      if (!*l || *l == '#')
        continue;
      char *eq = strchr(l, '=');
      if (!eq) {
        sbx__log("%s:%d: expected key = value", path, ln);
        rc = SBX_EINVAL;
        break;
      }
      *eq = 0;
      rc = cfg_set(p, trim(l), trim(eq + 1));
    }
    fclose(f);
    if (rc)
      return rc;
  }
  for (size_t i = 0; i < sizeof CFG / sizeof CFG[0]; i++) {
    char env[64] = "AISBXD_";
    size_t o = 7;
    for (const char *c = CFG[i].name; *c && o < sizeof env - 1; c++)
      env[o++] = (char)toupper((unsigned char)*c);
    env[o] = 0;
    const char *v = getenv(env);
    if (v) {
      int rc = cfg_set(p, CFG[i].name, v);
      if (rc)
        return rc;
    }
  }
  return SBX_OK;
}

/* ---- store ---- */

/* The master key spec: configured, else the one `aisbxd init
 * --master-key-from` recorded in DIR/master-key.spec, else the embedded
 * default file:DIR/master.key. */
static void master_spec(const sbx_server_params *p, char *out, size_t cap) {
  char path[SBX_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/master-key.spec", p->data_dir);
  FILE *f = p->master_key_spec ? NULL : fopen(path, "re");
  if (p->master_key_spec) {
    snprintf(out, cap, "%s", p->master_key_spec);
  } else if (f && fgets(out, (int)cap, f)) {
    out[strcspn(out, "\r\n")] = 0;
  } else {
    snprintf(out, cap, "file:%s/master.key", p->data_dir);
  }
  if (f)
    fclose(f);
}

int sbx_server_master_key_spec(const sbx_server_params *p, char *out,
                               size_t cap) {
  if (!p || !p->data_dir || !out || cap < 16)
    return SBX_EINVAL;
  master_spec(p, out, cap);
  return SBX_OK;
}

/* 1 when spec is a key file inside the data dir (copied with it). */
static int key_beside_data(const sbx_server_params *p, const char *spec) {
  if (strncmp(spec, "file:", 5))
    return 0;
  char kp[PATH_MAX], dp[PATH_MAX];
  if (!realpath(spec + 5, kp) || !realpath(p->data_dir, dp))
    return 0;
  size_t n = strlen(dp);
  return !strncmp(kp, dp, n) && kp[n] == '/';
}

/* spec without its pin-value query attribute (never recorded on disk). */
static void strip_pin(const char *spec, char *out, size_t cap) {
  snprintf(out, cap, "%s", spec);
  char *q = strchr(out, '?');
  if (strncmp(out, "pkcs11:", 7) || !q)
    return;
  char *a = q + 1;
  while (*a) {
    char *e = strchr(a, '&');
    size_t len = e ? (size_t)(e - a) + 1 : strlen(a);
    if (!strncmp(a, "pin-value=", 10))
      memmove(a, a + len, strlen(a + len) + 1);
    else
      a += len;
  }
  size_t n = strlen(out);
  while (n && (out[n - 1] == '&' || out[n - 1] == '?'))
    out[--n] = 0;
}

int sbx_server_init_master_key(const sbx_server_params *p, const char *spec) {
  if (!p || !p->data_dir || !spec)
    return SBX_EINVAL;
  if (mkdir(p->data_dir, 0700) && errno != EEXIST)
    return SBX_EIO;
  int rc = SBX_OK;
  if (!strncmp(spec, "pkcs11:", 7)) {
    rc = sbx_pkcs11_key_create(spec); /* born in the token */
    if (rc == SBX_EEXIST)
      rc = SBX_OK;
  } else if (!strncmp(spec, "file:", 5)) {
    rc = sbx_master_key_create_file(spec + 5, NULL);
    if (rc == SBX_EEXIST)
      rc = SBX_OK;
  } else if (strncmp(spec, "credential:", 11)) {
    sbx__log("--master-key-from takes pkcs11:URI, file:PATH or "
             "credential:NAME");
    return SBX_EINVAL;
  }
  sbx_kek *k = NULL;
  if (!rc)
    rc = sbx_kek_open(spec, &k);
  sbx_kek_free(k);
  if (rc) {
    sbx__log("master key %.64s...: %s", spec, sbx_strerror(rc));
    return rc;
  }
  if (key_beside_data(p, spec))
    sbx__log("warning: the master key file is inside the data dir: a copy "
             "of the directory includes it");
  char rec[SBX_PATH_MAX + 8], path[SBX_PATH_MAX + 32];
  strip_pin(spec, rec, sizeof rec);
  if (strcmp(rec, spec))
    sbx__log("the PIN is not recorded: give it to aisbxd as pin-source or "
             "in SBX_PKCS11_PIN");
  snprintf(path, sizeof path, "%s/master-key.spec", p->data_dir);
  char tmp[SBX_PATH_MAX + 40];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return SBX_EIO;
  size_t n = strlen(rec);
  rec[n] = '\n';
  rc = write(fd, rec, n + 1) == (ssize_t)(n + 1) && !fsync(fd) ? SBX_OK
                                                               : SBX_EIO;
  close(fd);
  if (!rc && rename(tmp, path))
    rc = SBX_EIO;
  return rc;
}

/* Opens the store (migrations included, the job queue's too); creates the
 * embedded default's master key file on first use. */
static int store_open(const sbx_server_params *p, const char *spec,
                      sbx_store **out) {
  /* embedded default: a master key file in the data dir, created once */
  if (!strncmp(spec, "file:", 5)) {
    char dd[SBX_PATH_MAX + 16];
    snprintf(dd, sizeof dd, "%s/master.key", p->data_dir);
    if (!strcmp(spec + 5, dd) && access(dd, F_OK) != 0) {
      mkdir(p->data_dir, 0700);
      int rc = sbx_master_key_create_file(dd, NULL);
      if (rc && rc != SBX_EEXIST)
        return rc;
    }
  }
  sbx_store_params sp = sbx_store_default_params();
  sp.data_dir = p->data_dir;
  sp.master_key_spec = spec;
  sp.fsync = p->blob_fsync;
  if (p->pg_conninfo && *p->pg_conninfo) {
    sp.meta_backend = SBX_META_POSTGRES;
    sp.pg_conninfo = p->pg_conninfo;
  }
  sbx_err err = {0, ""};
  sp.err = &err; /* the store never prints: its reason is logged here */
  int rc = sbx_store_open(&sp, out);
  if (rc && err.msg[0])
    sbx__log("%s", err.msg);
  return rc;
}

/* ---- start / stop ---- */

int sbx_server_start(const sbx_server_params *p, sbx_server **out,
                     char fp_out[96]) {
  *out = NULL;
  if (!p || !p->data_dir || strlen(p->data_dir) > SBX_PATH_MAX - 64)
    return SBX_EINVAL;
  sbx_server *s = calloc(1, sizeof *s);
  if (!s)
    return SBX_ENOMEM;
  s->p = *p;
  snprintf(s->data_dir, sizeof s->data_dir, "%s", p->data_dir);
  s->p.data_dir = s->data_dir;
  snprintf(s->issuer, sizeof s->issuer, "%s", p->issuer ? p->issuer : "aisbxd");
  master_spec(p, s->master_spec, sizeof s->master_spec);
  pthread_mutex_init(&s->pool.mu, NULL);
  pthread_cond_init(&s->pool.cv, NULL);
  pthread_rwlock_init(&s->jwt_mu, NULL);
  pthread_mutex_init(&s->rot_mu, NULL);
  pthread_mutex_init(&s->rl.mu, NULL);
  int rc = SBX_OK;
  if (mkdir(s->data_dir, 0700) && errno != EEXIST)
    rc = SBX_EIO;
  s->pool.n = 4 * (p->threads > 0 ? p->threads : 1) + 4;
  if (s->pool.n > SBX__POOL_MAX)
    s->pool.n = SBX__POOL_MAX;
  for (int i = 0; !rc && i < s->pool.n; i++)
    rc = store_open(&s->p, s->master_spec, &s->pool.h[i]);
  if (!rc)
    sbx_store_gc(s->pool.h[0], 3600, NULL);
  if (!rc)
    rc = sbx_kek_open(s->master_spec, &s->kek);
  if (!rc && key_beside_data(&s->p, s->master_spec))
    sbx__log("warning: the master key %s is inside the data dir: a copy of "
             "the directory is a copy of the key, so this is NOT encryption "
             "at rest against copying it. Use `aisbxd init --master-key-from "
             "pkcs11:...|file:<outside>|credential:NAME`",
             s->master_spec + 5);
  char cert[SBX_PATH_MAX + 32], key[SBX_PATH_MAX + 32];
  snprintf(cert, sizeof cert, "%s", p->tls_cert_file ? p->tls_cert_file : "");
  snprintf(key, sizeof key, "%s", p->tls_key_file ? p->tls_key_file : "");
  if (!p->tls_cert_file)
    snprintf(cert, sizeof cert, "%s/tls-cert.pem", s->data_dir);
  if (!p->tls_key_file)
    snprintf(key, sizeof key, "%s/tls-key.pem", s->data_dir);
  if (!rc)
    rc =
        sbx__tls_ensure(cert, key, p->tls_key_file ? NULL : s->kek, s->data_dir,
                        &s->tls_cert_pem, &s->tls_key_pem, fp_out);
  if (!rc)
    rc = sbx__jwt_load_or_create(s);
  if (!rc)
    rc = sbx__oidc_init(s);
  if (!rc && !(s->ac = sbx__authcache_new()))
    rc = SBX_ENOMEM;
  s->routes = sbx__routes;
  s->nroutes = sbx__nroutes;
  if (!rc && sbx__nroutes > SBX__METRICS_ROUTES)
    rc = SBX_ELIMIT;
  if (!rc)
    rc = sbx__metrics_init(s);
  if (!rc)
    rc = sbx__reqlog_init(s);
  if (!rc)
    rc = sbx__anchor_start(s); /* its store; the thread comes later */
  if (!rc)
    rc = sbx__purge_start(s); /* its store; the thread comes later */
  /* confinement (confine.h): everything is open, no thread exists yet */
  if (!rc)
    rc = sbx__confine_enter(s);
  if (!rc)
    rc = sbx__park_start(s);
  if (!rc)
    rc = sbx__syslog_start(s); /* its CA file is in the Landlock rules */
  if (!rc)
    rc = sbx__anchor_run(s);
  if (!rc)
    rc = sbx__purge_run(s);
  if (!rc)
    rc = sbx__http_start(s);
  if (!rc)
    rc = sbx__confine_seal(s); /* the listener is bound */
  if (rc) {
    sbx_server_stop(s);
    return rc;
  }
  *out = s;
  return SBX_OK;
}

uint16_t sbx_server_port(const sbx_server *s) {
  return s ? s->port : 0;
}

void sbx_server_stop(sbx_server *s) {
  if (!s)
    return;
  sbx__http_stop(s);
  sbx__park_stop(s); /* when http never started */
  sbx__anchor_stop(s);
  sbx__purge_stop(s);
  sbx__syslog_stop(s); /* after the last anchor */
  sbx__reqlog_free(s);
  for (int i = 0; i < s->pool.n; i++)
    sbx_store_close(s->pool.h[i]);
  sbx__jwt_free(s);
  sbx_kek_free(s->kek);
  sbx__oidc_free(s);
  sbx__authcache_free(s->ac);
  free(s->tls_cert_pem);
  if (s->tls_key_pem) {
    sbx_memwipe(s->tls_key_pem, strlen(s->tls_key_pem));
    free(s->tls_key_pem);
  }
  pthread_mutex_destroy(&s->pool.mu);
  pthread_cond_destroy(&s->pool.cv);
  pthread_rwlock_destroy(&s->jwt_mu);
  pthread_mutex_destroy(&s->rot_mu);
  pthread_mutex_destroy(&s->rl.mu);
  free(s);
}

/* ---- aisbxd init ---- */

int sbx_server_init_tenant(const sbx_server_params *p, const char *tenant_id,
                           const char *name, char *api_key_out,
                           char *bootstrap_out) {
  if (!p || !p->data_dir || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  char spec[SBX_PATH_MAX + 8];
  master_spec(p, spec, sizeof spec);
  sbx_store *st = NULL;
  int rc = store_open(p, spec, &st);
  if (rc)
    return rc;
  sbx_meta *m = sbx_store_meta(st);
  rc = sbx_store_tenant_create(st, tenant_id, name ? name : tenant_id);
  /* the first admin: a user with a placeholder e-mail index until the
   * bootstrap link sets e-mail and password */
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "admin");
  u.created_at = sbx__now();
  static const char ctx_pfx[] = "users.email|";
  char ctx[80];
  snprintf(ctx, sizeof ctx, "%s%s", ctx_pfx, u.id);
  if (!rc)
    rc = sbx_store_blind_index(st, tenant_id, "email-index-unset", u.id,
                               strlen(u.id), u.email_index);
  if (!rc) {
    rc = sbx_store_field_seal(st, tenant_id, ctx, "", 0, u.email_sealed);
    u.email_sealed_len = SBX_SEAL_OVERHEAD;
  }
  if (!rc)
    rc = sbx_meta_user_insert(m, tenant_id, &u);
  if (!rc)
    rc = sbx__dbx_tenant_role_set(m, tenant_id, u.id, "admin");
  char kid[SBX_ID_MAX];
  if (!rc)
    rc = sbx__apikey_create(st, tenant_id, u.id, "", "admin",
                            sbx__now() + SBX__APIKEY_TTL_DEFAULT, kid,
                            api_key_out); /* policy: 90 days, not forever */
  char secret[65];
  uint8_t h[SBX_SHA256_LEN];
  if (!rc)
    rc = sbx__rand_hex(secret, 32);
  if (!rc)
    rc = sbx_store_keyed_hash(st, "bootstrap", secret, 64, h);
  if (!rc)
    rc = sbx__dbx_bootstrap_put(m, tenant_id, u.id, h, sbx__now() + 86400);
  if (!rc)
    snprintf(bootstrap_out, 160, "bt_%s~%s", tenant_id, secret);
  if (!rc)
    sbx_meta_audit_append(m, tenant_id, sbx__now(), "init", "tenant.create",
                          tenant_id, NULL);
  sbx_memwipe(secret, sizeof secret);
  sbx_store_close(st);
  return rc;
}

/* ---- operator commands ---- */

/* Opens the store of the data dir in p (the caller closes it). */
static int open_for_cli(const sbx_server_params *p, sbx_store **st) {
  return sbx_server_store_open(p, st);
}

int sbx_server_store_open(const sbx_server_params *p, sbx_store **st) {
  if (!p || !p->data_dir)
    return SBX_EINVAL;
  char spec[SBX_PATH_MAX + 8];
  master_spec(p, spec, sizeof spec);
  return store_open(p, spec, st);
}

int sbx_server_worker_token_create(const sbx_server_params *p, const char *name,
                                   char *token_out, char *id_out) {
  sbx_store *st = NULL;
  int rc = open_for_cli(p, &st);
  sbx_worker_token t;
  if (!rc)
    rc = sbx_store_worker_token_create(st, name ? name : "", 0, sbx__now(),
                                       token_out, &t);
  if (!rc)
    snprintf(id_out, SBX_ID_MAX, "%s", t.id);
  sbx_store_close(st);
  return rc;
}

int sbx_server_worker_token_list(const sbx_server_params *p,
                                 int (*fn)(void *ctx,
                                           const struct sbx_worker_token *t),
                                 void *ctx) {
  sbx_store *st = NULL;
  int rc = open_for_cli(p, &st);
  if (!rc)
    rc = sbx_meta_worker_token_list(sbx_store_meta(st), fn, ctx);
  sbx_store_close(st);
  return rc;
}

int sbx_server_worker_token_revoke(const sbx_server_params *p, const char *id) {
  sbx_store *st = NULL;
  int rc = open_for_cli(p, &st);
  if (!rc)
    rc = sbx_meta_worker_token_revoke(sbx_store_meta(st), id, sbx__now());
  sbx_store_close(st);
  return rc;
}

int sbx_server_job_limits_set(const sbx_server_params *p, const char *tenant,
                              const struct sbx_job_limit_set *l) {
  sbx_store *st = NULL;
  int rc = open_for_cli(p, &st);
  if (!rc)
    rc = sbx_meta_job_limits_set(
        sbx_store_meta(st), tenant ? tenant : SBX_SYS_TENANT, l, sbx__now());
  sbx_store_close(st);
  return rc;
}
