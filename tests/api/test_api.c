/*
 * test_api.c - black-box tests of aisbxd over real TLS (issue 6):
 *   authorization matrix (every route x role x own/other tenant x
 *   no/expired/forged credential; fails when a route has no row), hostile
 *   input, hostile JWTs, refresh rotation + family revocation, lockout,
 *   TLS versions, security headers, rate limits, graceful SIGTERM.
 * usage: test_api /path/to/aisbxd
 */
#include "api_testutil.h"

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <sqlite3.h>

#include "../harness.h"
#include "auth_testutil.h"
#include "auth.h" /* to sign hostile JWTs with the server key */
#include "state.h"
#include "util.h"

static srv S;
static char g_dir[256], g_cfg[300];
/* the operator's metrics token (metrics_token_file in the config) */
static const char METRICS_TOKEN[] = "mt-0123456789abcdef0123456789abcdef";
static char K1[200], K2[200], BOOT1[200], BOOT2[200]; /* admin keys t1, t2 */

/* ---- fixture: per tenant, ids of a project and its objects ---- */
typedef struct fixture {
  const char *tenant;
  const char *admin_key;
  char project[64], model[64], dataset[64], job[64], key_id[64];
} fixture;
static fixture F1 = {"t1", K1, "pa", "", "", "", ""};
static fixture F2 = {"t2", K2, "pb", "", "", "", ""};

static int g_uniq = 0;

static int mk_object(const fixture *f, const char *kind, char id[64]) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/%s/%ss?name=%s%d", f->project,
           kind, kind, ++g_uniq);
  req_opts o = {
      f->admin_key, "application/octet-stream", "raw bytes", 0, NULL, 0, 0};
  resp r;
  long st = http(&S, "POST", path, &o, &r);
  int ok = st == 201 && json_field(r.body, "id", id, 64);
  if (!ok)
    fprintf(stderr, "mk_object %s: %ld %s\n", kind, st, r.body);
  resp_free(&r);
  return ok ? 0 : -1;
}

static int mk_job(const fixture *f, char id[64]) {
  char path[256], body[512];
  snprintf(path, sizeof path, "/api/v1/projects/%s/jobs", f->project);
  snprintf(body, sizeof body,
           "{\"attack\":\"pgd\",\"model_id\":\"%s\",\"dataset_id\":\"%s\","
           "\"params\":{\"eps\":0.03,\"steps\":10},\"seed\":7}",
           f->model, f->dataset);
  resp r;
  long st = jreq(&S, "POST", path, f->admin_key, body, &r);
  int ok = st == 201 && json_field(r.body, "id", id, 64);
  if (!ok)
    fprintf(stderr, "mk_job: %ld %s\n", st, r.body);
  resp_free(&r);
  return ok ? 0 : -1;
}

/* A password login of user (password "password-of-<user>") in tenant:
 * its access token into tok (a fresh one passes step-up for 5 min). */
static int login_jwt(const char *tenant, const char *user, char tok[1200]) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"grant_type\":\"password\",\"tenant\":\"%s\",\"email\":\"%s@"
           "%s.example\",\"password\":\"password-of-%s\"}",
           tenant, user, tenant, user);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r);
  int ok = st == 200 && json_field(r.body, "access_token", tok, 1200);
  if (!ok)
    fprintf(stderr, "login %s/%s: %ld %s\n", tenant, user, st, r.body);
  resp_free(&r);
  return ok ? 0 : -1;
}

/* Issue 12 item 2: API keys are created only by a session or an access
 * token from a recent password login (step-up), never by an API key. The
 * fixtures' admin for that: user "stepadm" (tenant admin) of f's tenant,
 * created once with f's admin key, logged in again when its token is more
 * than 2 min old. */
static const char *step_tok(const fixture *f) {
  static char tok[2][1200];
  static time_t at[2];
  int i = f == &F2;
  if (tok[i][0] && time(NULL) - at[i] < 120)
    return tok[i];
  if (!at[i]) {
    char body[256];
    snprintf(body, sizeof body,
             "{\"id\":\"stepadm\",\"email\":\"stepadm@%s.example\","
             "\"password\":\"password-of-stepadm\",\"role\":\"admin\"}",
             f->tenant);
    resp r;
    long st = jreq(&S, "POST", "/api/v1/users", f->admin_key, body, &r);
    resp_free(&r);
    if (st != 201)
      fprintf(stderr, "stepadm %s: %ld\n", f->tenant, st);
  }
  tok[i][0] = 0;
  if (login_jwt(f->tenant, "stepadm", tok[i]) == 0)
    at[i] = time(NULL);
  return tok[i];
}

static int mk_key(const fixture *f, const char *role, long ttl, char id[64],
                  char key[200]) {
  char body[256];
  snprintf(body, sizeof body, "{\"role\":\"%s\",\"expires_in_s\":%ld}", role,
           ttl);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/api-keys", step_tok(f), body, &r);
  int ok = st == 201 && json_field(r.body, "id", id, 64) &&
           (!key || json_field(r.body, "key", key, 200));
  if (!ok)
    fprintf(stderr, "mk_key: %ld %s\n", st, r.body);
  resp_free(&r);
  return ok ? 0 : -1;
}

/* A fresh user of f's tenant (tenant role viewer, viewer in f's project):
 * the target of the lifecycle rows (PATCH/DELETE a user, revoke, ...). */
static int mk_user(const fixture *f, char id[64]) {
  char body[256], path[256];
  snprintf(id, 64, "fu%d", ++g_uniq);
  snprintf(body, sizeof body,
           "{\"id\":\"%s\",\"email\":\"%s@x.org\",\"role\":\"viewer\"}", id,
           id);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/users", f->admin_key, body, &r);
  resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/projects/%s/members/%s", f->project, id);
  long st2 = st == 201 ? jreq(&S, "PUT", path, f->admin_key,
                              "{\"role\":\"viewer\"}", &r)
                       : -1;
  if (st2 >= 0)
    resp_free(&r);
  if (st != 201 || st2 != 200)
    fprintf(stderr, "mk_user: %ld %ld\n", st, st2);
  return st == 201 && st2 == 200 ? 0 : -1;
}

static int setup_fixture(fixture *f) {
  char body[256];
  snprintf(body, sizeof body, "{\"id\":\"%s\",\"name\":\"Project %s\"}",
           f->project, f->project);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/projects", f->admin_key, body, &r);
  resp_free(&r);
  if (st != 201)
    return -1;
  if (mk_object(f, "model", f->model) || mk_object(f, "dataset", f->dataset) ||
      mk_job(f, f->job) || mk_key(f, "viewer", 3600, f->key_id, NULL))
    return -1;
  return 0;
}

/* ---- the matrix ---- */

enum { RV = 1, RD = 2, RA = 4, RAD = 8, RALL = 15 };
typedef struct row {
  const char *method;
  const char *pattern; /* must equal the server's route pattern */
  const char *path;    /* template: {tenant} {project} {model} {dataset}
                          {job} {user} {key} {uniq} */
  const char *body;    /* JSON template, or "RAW" for an upload */
  int roles;           /* roles that must succeed; -1 = public */
  int ok;              /* expected status on success (public: for all) */
  char fresh;          /* m d j k u: a fresh object (u: user) replaces its
                         placeholder; c: a fresh job, cancelled */
} row;

#define PP "/api/v1/projects/{project}"
static const row ROWS[] = {
    {"GET", "/healthz", "/healthz", NULL, -1, 200, 0},
    {"GET", "/readyz", "/readyz", NULL, -1, 200, 0},
    {"GET", "/.well-known/jwks.json", "/.well-known/jwks.json", NULL, -1, 200,
     0},
    {"GET", "/api/v1/openapi.json", "/api/v1/openapi.json", NULL, -1, 200, 0},
    {"POST", "/api/v1/auth/token", "/api/v1/auth/token",
     "{\"grant_type\":\"password\",\"tenant\":\"{tenant}\",\"email\":"
     "\"nobody@x.org\",\"password\":\"not the password\"}",
     -1, 401, 0},
    {"POST", "/api/v1/auth/bootstrap", "/api/v1/auth/bootstrap",
     "{\"token\":\"bt_{tenant}~"
     "00000000000000000000000000000000000000000000000000000000000000"
     "00\",\"email\":\"x@x.org\",\"password\":\"long enough password\"}",
     -1, 401, 0},
    /* OIDC is not configured in this server: 404 (test_oidc covers it) */
    {"GET", "/api/v1/auth/oidc/login", "/api/v1/auth/oidc/login", NULL, -1, 404,
     0},
    {"GET", "/api/v1/auth/oidc/callback",
     "/api/v1/auth/oidc/callback?code=c&state=s", NULL, -1, 404, 0},
    {"POST", "/api/v1/auth/session", "/api/v1/auth/session",
     "{\"tenant\":\"{tenant}\",\"email\":\"nobody-session@x.org\",\"password\":"
     "\"not the password\"}",
     -1, 401, 0},
    {"GET", "/api/v1/auth/session", "/api/v1/auth/session", NULL, RALL, 200, 0},
    {"DELETE", "/api/v1/auth/session", "/api/v1/auth/session", NULL, RALL, 200,
     0},
    /* step-up (issue 12 item 2): a wrong password is 401 for every role's
     * access token; API keys are refused outright */
    {"POST", "/api/v1/auth/reauth", "/api/v1/auth/reauth",
     "{\"password\":\"not the password\"}", RALL, 401, 0},
    {"POST", "/api/v1/auth/passphrase", "/api/v1/auth/passphrase",
     "{\"current_password\":\"not the password\",\"new_password\":\"a new "
     "long password\"}",
     RALL, 401, 0},
    {"POST", "/api/v1/auth/totp", "/api/v1/auth/totp", NULL, RALL, 201, 0},
    {"POST", "/api/v1/auth/totp/confirm", "/api/v1/auth/totp/confirm",
     "{\"code\":\"abcdef\"}", RALL, 400, 0},
    {"DELETE", "/api/v1/auth/totp", "/api/v1/auth/totp", NULL, RALL, 200, 0},
    {"GET", "/api/v1/me", "/api/v1/me", NULL, RALL, 200, 0},
    {"GET", "/api/v1/tenants/{tenant}", "/api/v1/tenants/{tenant}", NULL, RALL,
     200, 0},
    {"GET", "/api/v1/projects", "/api/v1/projects", NULL, RALL, 200, 0},
    {"POST", "/api/v1/projects", "/api/v1/projects",
     "{\"id\":\"np{uniq}\",\"name\":\"n\"}", RAD, 201, 0},
    {"GET", PP, PP, NULL, RALL, 200, 0},
    {"GET", "/api/v1/users", "/api/v1/users", NULL, RAD, 200, 0},
    {"POST", "/api/v1/users", "/api/v1/users",
     "{\"id\":\"u{uniq}\",\"email\":\"u{uniq}@x.org\"}", RAD, 201, 0},
    /* the user lifecycle (issue 12 item 3), each on a fresh user */
    {"PATCH", "/api/v1/users/{user}", "/api/v1/users/{user}",
     "{\"role\":\"developer\"}", RAD, 200, 'u'},
    {"DELETE", "/api/v1/users/{user}", "/api/v1/users/{user}", NULL, RAD, 200,
     'u'},
    {"DELETE", "/api/v1/users/{user}/totp", "/api/v1/users/{user}/totp", NULL,
     RAD, 200, 'u'},
    {"POST", "/api/v1/users/{user}/revoke-sessions",
     "/api/v1/users/{user}/revoke-sessions", "{\"api_keys\":true}", RAD, 200,
     'u'},
    {"GET", PP "/members", PP "/members", NULL, RA | RAD, 200, 0},
    {"PUT", PP "/members/{user}", PP "/members/admin", "{\"role\":\"viewer\"}",
     RAD, 200, 0},
    {"DELETE", PP "/members/{user}", PP "/members/{user}", NULL, RAD, 200, 'u'},
    {"GET", "/api/v1/api-keys", "/api/v1/api-keys", NULL, RAD, 200, 0},
    {"POST", "/api/v1/api-keys", "/api/v1/api-keys", "{\"role\":\"viewer\"}",
     RAD, 201, 0},
    {"DELETE", "/api/v1/api-keys/{key}", "/api/v1/api-keys/{key}", NULL, RAD,
     200, 'k'},
    {"POST", "/api/v1/api-keys/{key}/rotate", "/api/v1/api-keys/{key}/rotate",
     "{\"overlap_s\":60}", RAD, 201, 'k'},
    {"GET", PP "/models", PP "/models", NULL, RALL, 200, 0},
    {"POST", PP "/models", PP "/models?name=m{uniq}", "RAW", RD | RAD, 201, 0},
    {"GET", PP "/models/{model}", PP "/models/{model}", NULL, RALL, 200, 0},
    {"GET", PP "/models/{model}/content", PP "/models/{model}/content", NULL,
     RALL, 200, 0},
    {"DELETE", PP "/models/{model}", PP "/models/{model}", NULL, RD | RAD, 200,
     'm'},
    {"GET", PP "/datasets", PP "/datasets", NULL, RALL, 200, 0},
    {"POST", PP "/datasets", PP "/datasets?name=d{uniq}", "RAW", RD | RAD, 201,
     0},
    {"GET", PP "/datasets/{dataset}", PP "/datasets/{dataset}", NULL, RALL, 200,
     0},
    {"GET", PP "/datasets/{dataset}/content", PP "/datasets/{dataset}/content",
     NULL, RALL, 200, 0},
    {"DELETE", PP "/datasets/{dataset}", PP "/datasets/{dataset}", NULL,
     RD | RAD, 200, 'd'},
    {"GET", PP "/jobs", PP "/jobs", NULL, RALL, 200, 0},
    {"POST", PP "/jobs", PP "/jobs",
     "{\"attack\":\"fgsm\",\"model_id\":\"{model}\",\"dataset_id\":"
     "\"{dataset}\"}",
     RD | RA | RAD, 201, 0},
    {"GET", PP "/jobs/{job}", PP "/jobs/{job}", NULL, RALL, 200, 0},
    {"POST", PP "/jobs/{job}/cancel", PP "/jobs/{job}/cancel", NULL,
     RD | RA | RAD, 200, 'j'},
    /* the fixture's job never ran: no results (404), but only after the
     * permission check (403 for roles without result:read) */
    {"GET", PP "/jobs/{job}/results", PP "/jobs/{job}/results", NULL, RALL, 404,
     0},
    {"GET", PP "/jobs/{job}/results/adversarial.npy",
     PP "/jobs/{job}/results/adversarial.npy", NULL, RALL, 404, 0},
    {"GET", PP "/jobs/{job}/results/gallery/{i}.png",
     PP "/jobs/{job}/results/gallery/0.png", NULL, RALL, 404, 0},
    /* a fresh job, cancelled: its stream holds the history and ends */
    {"GET", PP "/jobs/{job}/events", PP "/jobs/{job}/events", NULL, RALL, 200,
     'c'},
    {"GET", "/api/v1/attacks", "/api/v1/attacks", NULL, RALL, 200, 0},
    {"PUT", "/api/v1/tenants/{tenant}/quota", "/api/v1/tenants/{tenant}/quota",
     "{\"max_objects\":0}", RAD, 200, 0},
    {"GET", "/api/v1/tenants/{tenant}/job-limits",
     "/api/v1/tenants/{tenant}/job-limits", NULL, RAD, 200, 0},
    {"PUT", "/api/v1/tenants/{tenant}/job-limits",
     "/api/v1/tenants/{tenant}/job-limits", "{\"max_concurrency\":0}", RAD, 200,
     0},
    /* privacy rights: retention, export (the user or an admin), erasure */
    {"GET", "/api/v1/tenants/{tenant}/retention",
     "/api/v1/tenants/{tenant}/retention", NULL, RAD, 200, 0},
    {"PUT", "/api/v1/tenants/{tenant}/retention",
     "/api/v1/tenants/{tenant}/retention", "{\"jobs_seconds\":0}", RAD, 200, 0},
    {"POST", "/api/v1/tenants/{tenant}/retention/purge",
     "/api/v1/tenants/{tenant}/retention/purge", NULL, RAD, 200, 0},
    {"GET", "/api/v1/users/{user}/export", "/api/v1/users/{user}/export", NULL,
     RAD, 200, 'u'},
    {"POST", "/api/v1/users/{user}/erase", "/api/v1/users/{user}/erase", NULL,
     RAD, 200, 'u'},
    /* the worker protocol: no tenant credential opens it (403: another kind
     * of credential); worker and job tokens: test_jobs token_scope */
    {"POST", "/api/v1/worker/claim", "/api/v1/worker/claim", "{\"wait\":0}", 0,
     200, 0},
    {"GET", "/api/v1/worker/jobs/{job}/model",
     "/api/v1/worker/jobs/{job}/model", NULL, 0, 200, 0},
    {"GET", "/api/v1/worker/jobs/{job}/dataset",
     "/api/v1/worker/jobs/{job}/dataset", NULL, 0, 200, 0},
    {"POST", "/api/v1/worker/jobs/{job}/heartbeat",
     "/api/v1/worker/jobs/{job}/heartbeat", "{}", 0, 200, 0},
    {"PUT", "/api/v1/worker/jobs/{job}/results/{name}",
     "/api/v1/worker/jobs/{job}/results/result.json", "RAW", 0, 201, 0},
    {"POST", "/api/v1/worker/jobs/{job}/finish",
     "/api/v1/worker/jobs/{job}/finish", "{\"state\":\"succeeded\"}", 0, 200,
     0},
    /* incident tools (test_incident.c drives their effects): an unknown
     * user (404 for an admin, after the permission check), unfreezing an
     * active tenant (a no-op that is still audited), key rotations */
    {"POST", "/api/v1/users/{user}/revoke-credentials",
     "/api/v1/users/nobody/revoke-credentials", NULL, RAD, 404, 0},
    {"PUT", "/api/v1/tenants/{tenant}/freeze",
     "/api/v1/tenants/{tenant}/freeze", "{\"frozen\":false}", RAD, 200, 0},
    {"POST", "/api/v1/tenants/{tenant}/keys/rotate",
     "/api/v1/tenants/{tenant}/keys/rotate", NULL, RAD, 200, 0},
    /* live key rotation: 200, but 409 from a server started as root (it
     * runs confined as nobody, its key files stay root's: row_ok) */
    {"POST", "/api/v1/admin/jwt-key/rotate", "/api/v1/admin/jwt-key/rotate",
     NULL, RAD, 200, 0},
    {"POST", "/api/v1/admin/master-key/rotate",
     "/api/v1/admin/master-key/rotate", NULL, RAD, 200, 0},
    {"GET", "/api/v1/audit-events", "/api/v1/audit-events", NULL, RA | RAD, 200,
     0},
    {"GET", "/api/v1/audit-events/verify", "/api/v1/audit-events/verify", NULL,
     RAD, 200, 0},
    /* process-wide counters: no tenant role, only the operator token
     * (metrics_prometheus) */
    {"GET", "/metrics", "/metrics", NULL, 0, 200, 0},
};
#define NROWS (sizeof ROWS / sizeof ROWS[0])

/* Step-up routes (issue 12 item 2): API keys are refused (403) whatever
 * their role; a role's access token from a fresh login gets what the
 * row's roles say. */
static int row_stepup(const row *rw) {
  static const char *const STEPUP[][2] = {
      {"POST", "/api/v1/auth/reauth"},
      {"POST", "/api/v1/auth/passphrase"},
      {"POST", "/api/v1/auth/totp"},
      {"POST", "/api/v1/auth/totp/confirm"},
      {"DELETE", "/api/v1/auth/totp"},
      {"POST", "/api/v1/api-keys"},
      {"POST", "/api/v1/api-keys/{key}/rotate"}};
  for (size_t i = 0; i < sizeof STEPUP / sizeof STEPUP[0]; i++)
    if (!strcmp(rw->method, STEPUP[i][0]) && !strcmp(rw->pattern, STEPUP[i][1]))
      return 1;
  return 0;
}

/* The status row rw answers on success here: the live key rotations
 * refuse (409) on a server started as root (docs/security.md "Server
 * confinement"; api_confine), as this one is in CI. */
static long row_ok(const row *rw) {
  if (getuid() == 0 && !strncmp(rw->pattern, "/api/v1/admin/", 14) &&
      strstr(rw->pattern, "-key/rotate"))
    return 409;
  return rw->ok;
}

static void subst(const char *tpl, const fixture *f, const char *fresh_id,
                  char fresh, char *out, size_t cap) {
  size_t o = 0;
  for (const char *p = tpl; *p && o + 1 < cap;) {
    const char *val = NULL;
    size_t skip = 0;
    static char uniq[16];
    if (*p == '{') {
      const char *e = strchr(p, '}');
      size_t n = e ? (size_t)(e - p + 1) : 0;
      skip = n;
#define IS(x) (n == strlen(x) && !strncmp(p, x, n))
      if (IS("{tenant}"))
        val = f->tenant;
      else if (IS("{project}"))
        val = f->project;
      else if (IS("{model}"))
        val = fresh == 'm' ? fresh_id : f->model;
      else if (IS("{dataset}"))
        val = fresh == 'd' ? fresh_id : f->dataset;
      else if (IS("{job}"))
        val = fresh == 'j' || fresh == 'c' ? fresh_id : f->job;
      else if (IS("{key}"))
        val = fresh == 'k' ? fresh_id : f->key_id;
      else if (IS("{user}"))
        val = fresh == 'u' ? fresh_id : "admin";
      else if (IS("{uniq}")) {
        snprintf(uniq, sizeof uniq, "%d", ++g_uniq);
        val = uniq;
      }
#undef IS
    }
    if (val) {
      size_t n = strlen(val);
      if (o + n >= cap)
        break;
      memcpy(out + o, val, n);
      o += n;
      p += skip;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = 0;
}

/* The head seq of fixture f's audit chain, read through the verify route
 * with f's admin key (which must answer "ok":true); -1 on any failure. */
static long audit_head(const fixture *f) {
  resp r;
  long st =
      jreq(&S, "GET", "/api/v1/audit-events/verify", f->admin_key, NULL, &r);
  const char *p = st == 200 && r.body && strstr(r.body, "\"ok\":true")
                      ? strstr(r.body, "\"head_seq\":")
                      : NULL;
  long h = p ? strtol(p + strlen("\"head_seq\":"), NULL, 10) : -1;
  resp_free(&r);
  return h;
}

/* When set, call_row stores the audit head of its fixture here right
 * before the row's own request (after the fresh objects it creates). */
static long *g_head_before;

/* One call of row rw with token tok against fixture f's objects. */
static long call_row(const row *rw, const fixture *f, const char *tok,
                     resp *r) {
  char fresh_id[64] = "";
  if (rw->fresh == 'm' && mk_object(f, "model", fresh_id))
    return -1;
  if (rw->fresh == 'd' && mk_object(f, "dataset", fresh_id))
    return -1;
  if ((rw->fresh == 'j' || rw->fresh == 'c') && mk_job(f, fresh_id))
    return -1;
  if (rw->fresh == 'c') { /* ended: its event stream ends at once */
    char cp[256];
    snprintf(cp, sizeof cp, "/api/v1/projects/%s/jobs/%s/cancel", f->project,
             fresh_id);
    resp cr;
    long cst = jreq(&S, "POST", cp, f->admin_key, NULL, &cr);
    resp_free(&cr);
    if (cst != 200)
      return -1;
  }
  if (rw->fresh == 'k' && mk_key(f, "viewer", 3600, fresh_id, NULL))
    return -1;
  if (rw->fresh == 'u' && mk_user(f, fresh_id))
    return -1;
  char path[512], body[1024];
  subst(rw->path, f, fresh_id, rw->fresh, path, sizeof path);
  req_opts o = {tok, NULL, NULL, 0, NULL, 0, 0};
  if (rw->body && !strcmp(rw->body, "RAW")) {
    o.ctype = "application/octet-stream";
    o.body = "some model bytes";
  } else if (rw->body) {
    subst(rw->body, f, fresh_id, rw->fresh, body, sizeof body);
    o.ctype = "application/json";
    o.body = body;
  }
  if (g_head_before)
    *g_head_before = audit_head(f);
  return http(&S, rw->method, path, &o, r);
}

/* Role credentials of tenant t1: API keys and JWTs of users with that
 * tenant role. */
static const char *ROLE_NAMES[4] = {"viewer", "developer", "analyst", "admin"};
static char ROLE_KEY[4][200], ROLE_JWT[4][1200];
static char EXPIRED_KEY[200], FORGED_KEY[200], FORGED_JWT[1200],
    EXPIRED_JWT[1200];

static time_t ROLE_JWT_AT; /* when ROLE_JWT were issued (step-up rows) */

/* Step-up rows need access tokens from a login at most 5 min old: the
 * role tokens are renewed (a new password login each) after 2 min. */
static void fresh_role_jwts(void) {
  if (ROLE_JWT_AT && time(NULL) - ROLE_JWT_AT < 120)
    return;
  for (int i = 0; i < 4; i++)
    login_jwt("t1", ROLE_NAMES[i], ROLE_JWT[i]);
  ROLE_JWT_AT = time(NULL);
}

static sbx_server g_fake; /* holds the server's JWT key for forging */

static void sign_jwt(const char *hdr, const char *payload, char *out,
                     size_t cap) {
  char hb[1024], pb[2048];
  sbx__b64url(hdr, strlen(hdr), hb);
  sbx__b64url(payload, strlen(payload), pb);
  int n = snprintf(out, cap, "%s.%s", hb, pb);
  gnutls_datum_t d = {(unsigned char *)out, (unsigned)n}, sig;
  if (gnutls_privkey_sign_data2(g_fake.jwt_priv, GNUTLS_SIGN_EDDSA_ED25519, 0,
                                &d, &sig) < 0)
    return;
  out[n] = '.';
  sbx__b64url(sig.data, sig.size, out + n + 1);
  gnutls_free(sig.data);
}

static void std_payload(char *out, size_t cap, const char *iss, const char *aud,
                        long iat, long nbf, long exp, const char *sub) {
  snprintf(out, cap,
           "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"%s\",\"tid\":\"t1\","
           "\"iat\":%ld,\"nbf\":%ld,\"exp\":%ld,\"jti\":\"j%d\"}",
           iss, aud, sub, iat, nbf, exp, ++g_uniq);
}

TEST(setup_credentials) {
  for (int i = 0; i < 4; i++) {
    char id[64], body[512];
    CHECK(mk_key(&F1, ROLE_NAMES[i], 3600, id, ROLE_KEY[i]) == 0);
    snprintf(body, sizeof body,
             "{\"id\":\"user-%s\",\"email\":\"%s@t1.example\",\"password\":"
             "\"password-of-%s\",\"role\":\"%s\"}",
             ROLE_NAMES[i], ROLE_NAMES[i], ROLE_NAMES[i], ROLE_NAMES[i]);
    resp r;
    CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/users", K1, body, &r), 201);
    resp_free(&r);
    snprintf(body, sizeof body,
             "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":\"%s@"
             "T1.example\",\"password\":\"password-of-%s\"}",
             ROLE_NAMES[i], ROLE_NAMES[i]);
    CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r), 200);
    CHECK(json_field(r.body, "access_token", ROLE_JWT[i], sizeof ROLE_JWT[i]));
    resp_free(&r);
  }
  ROLE_JWT_AT = time(NULL);
  char id[64];
  CHECK(mk_key(&F1, "admin", 1, id, EXPIRED_KEY) == 0);
  snprintf(FORGED_KEY, sizeof FORGED_KEY, "%s", ROLE_KEY[3]);
  size_t n = strlen(FORGED_KEY);
  FORGED_KEY[n - 1] = FORGED_KEY[n - 1] == '0' ? '1' : '0';
  snprintf(FORGED_JWT, sizeof FORGED_JWT, "%s", ROLE_JWT[3]);
  n = strlen(FORGED_JWT);
  FORGED_JWT[n - 2] = FORGED_JWT[n - 2] == 'A' ? 'B' : 'A';
  /* expired but correctly signed by the server's own key */
  snprintf(g_fake.data_dir, sizeof g_fake.data_dir, "%s", g_dir);
  snprintf(g_fake.issuer, sizeof g_fake.issuer, "aisbxd");
  char mk[SBX_PATH_MAX + 16]; /* the JWT key is sealed under the master key */
  snprintf(mk, sizeof mk, "file:%s/master.key", g_dir);
  CHECK(sbx_kek_open(mk, &g_fake.kek) == 0);
  CHECK(sbx__jwt_load_or_create(&g_fake) == 0);
  char hdr[256], pl[512];
  long now = (long)time(NULL);
  snprintf(hdr, sizeof hdr,
           "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
           g_fake.jwt_kid);
  std_payload(pl, sizeof pl, "aisbxd", "aisbxd", now - 2000, now - 2000,
              now - 1200, "user-admin");
  sign_jwt(hdr, pl, EXPIRED_JWT, sizeof EXPIRED_JWT);
  sleep(2); /* EXPIRED_KEY expires */
}

TEST(matrix_covers_every_route) {
  size_t n = sbx_server_route_count();
  for (size_t i = 0; i < n; i++) {
    sbx_route_info ri = sbx_server_route(i);
    int found = 0;
    for (size_t k = 0; k < NROWS; k++)
      found |= !strcmp(ROWS[k].method, ri.method) &&
               !strcmp(ROWS[k].pattern, ri.pattern);
    if (!found)
      fprintf(stderr, "matrix: no row for %s %s\n", ri.method, ri.pattern);
    CHECK(found);
  }
  for (size_t k = 0; k < NROWS; k++) {
    int found = 0;
    for (size_t i = 0; i < n; i++) {
      sbx_route_info ri = sbx_server_route(i);
      found |= !strcmp(ROWS[k].method, ri.method) &&
               !strcmp(ROWS[k].pattern, ri.pattern);
    }
    if (!found)
      fprintf(stderr, "matrix: stale row %s %s\n", ROWS[k].method,
              ROWS[k].pattern);
    CHECK(found);
  }
}

static int expect_fail(const row *rw, const char *what, long want, long got,
                       const char *body) {
  if (want == got)
    return 0;
  fprintf(stderr, "matrix: %s %s [%s]: want %ld got %ld %s\n", rw->method,
          rw->pattern, what, want, got, body ? body : "");
  return 1;
}

TEST(authorization_matrix) {
  int rows_run = 0;
  for (size_t k = 0; k < NROWS; k++) {
    const row *rw = &ROWS[k];
    resp r;
    if (rw->roles < 0) { /* public: same answer for everyone */
      long st = call_row(rw, &F1, NULL, &r);
      CHECK(!expect_fail(rw, "public", rw->ok, st, r.body));
      resp_free(&r);
      st = call_row(rw, &F1, FORGED_KEY, &r);
      CHECK(!expect_fail(rw, "public+forged", rw->ok, st, r.body));
      resp_free(&r);
      rows_run++;
      continue;
    }
    /* no / expired / forged credentials: 401 before anything else */
    const char *bad[] = {NULL,        EXPIRED_KEY, FORGED_KEY,      FORGED_JWT,
                         EXPIRED_JWT, "garbage",   "ak_t1~zz.short"};
    const char *bad_names[] = {"none",         "expired key", "forged key",
                               "forged jwt",   "expired jwt", "garbage",
                               "malformed key"};
    for (int b = 0; b < 7; b++) {
      long st = call_row(rw, &F1, bad[b], &r);
      CHECK(!expect_fail(rw, bad_names[b], 401, st, r.body));
      resp_free(&r);
    }
    if (row_stepup(rw))
      fresh_role_jwts();
    for (int kind = 0; kind < 2; kind++) {
      /* step-up rows: no API key passes, whatever its role */
      int roles = row_stepup(rw) && !kind ? 0 : rw->roles;
      for (int ri = 0; ri < 4; ri++) {
        const char *tok = kind ? ROLE_JWT[ri] : ROLE_KEY[ri];
        char what[64];
        snprintf(what, sizeof what, "%s %s own", kind ? "jwt" : "key",
                 ROLE_NAMES[ri]);
        long want = (roles & (1 << ri)) ? row_ok(rw) : 403;
        long st = call_row(rw, &F1, tok, &r);
        CHECK(!expect_fail(rw, what, want, st, r.body));
        resp_free(&r);
        /* the other tenant's objects: 404 where the path names one;
         * elsewhere the answer must not reveal them */
        snprintf(what, sizeof what, "%s %s other", kind ? "jwt" : "key",
                 ROLE_NAMES[ri]);
        int names_obj = strchr(rw->pattern, '{') != NULL;
        int project_scoped = strstr(rw->pattern, "{project}") != NULL;
        st = call_row(rw, &F2, tok, &r);
        if (names_obj) {
          /* project routes: the project is invisible (404) whatever the
           * role; tenant-level routes check the permission first (403) */
          long w2 = (project_scoped || (roles & (1 << ri))) ? 404 : 403;
          CHECK(!expect_fail(rw, what, w2, st, r.body));
        } else {
          CHECK(!expect_fail(rw, what, want, st, r.body));
          CHECK(!strstr(r.body, F2.model) && !strstr(r.body, "\"pb\"") &&
                !strstr(r.body, F2.job));
        }
        resp_free(&r);
      }
    }
    rows_run++;
  }
  CHECK_EQ_INT(rows_run, NROWS);
}

/* Every state-changing route (POST/PUT/PATCH/DELETE) reachable with a
 * tenant credential appends an audit row: each is driven once as admin
 * (key) and the tenant's chain head must have moved past where it was
 * right before the request, and the chain must still verify. The worker
 * protocol's rows (no tenant role opens them, roles 0): see
 * worker_mutations_are_audited. And no route can edit or delete audit rows:
 * no mutating route under /api/v1/audit-events exists at all. */
TEST(every_mutation_is_audited) {
  int checked = 0;
  for (size_t k = 0; k < NROWS; k++) {
    const row *rw = &ROWS[k];
    int mutating = strcmp(rw->method, "GET") && strcmp(rw->method, "HEAD");
    if (mutating && strstr(rw->pattern, "audit")) {
      fprintf(stderr, "audit: mutating audit route %s %s\n", rw->method,
              rw->pattern);
      CHECK(0);
    }
    if (!mutating || rw->roles <= 0 || !(rw->roles & RAD))
      continue;
    long before = -1;
    resp r;
    g_head_before = &before;
    if (row_stepup(rw))
      fresh_role_jwts();
    long st = call_row(rw, &F1, row_stepup(rw) ? ROLE_JWT[3] : ROLE_KEY[3], &r);
    g_head_before = NULL;
    long after = audit_head(&F1);
    CHECK_EQ_INT(st, row_ok(rw));
    /* a refused request (4xx: the totp row's malformed code) and a logout
     * without a session change nothing: nothing to audit */
    int noop = st >= 400 || (r.body && strstr(r.body, "\"logged_out\":false"));
    if (noop) {
      CHECK(before >= 0 && after == before);
      resp_free(&r);
      continue;
    }
    if (before < 0 || after <= before)
      fprintf(stderr, "audit: %s %s -> %ld, head %ld -> %ld %s\n", rw->method,
              rw->pattern, st, before, after, r.body ? r.body : "");
    CHECK(before >= 0 && after > before);
    resp_free(&r);
    checked++;
  }
  for (size_t i = 0; i < sbx_server_route_count(); i++) {
    sbx_route_info ri = sbx_server_route(i);
    CHECK(!(strstr(ri.pattern, "audit") && strcmp(ri.method, "GET")));
  }
  CHECK(checked >= 13); /* the table's tenant mutations, not a handful */
}

/* The worker protocol's mutating routes (worker and job tokens) are
 * audited too, in the claimed job's tenant: every queued shard is claimed
 * (a row), then each mutating job-token route of the route table is
 * driven once (heartbeat, result upload, finish) and must append a row,
 * unless the table says why it does not (sbx_route_info.no_audit: the
 * heartbeat), in which case it must append none. Runs late: it drains
 * the queue. */
static long heads(void) {
  long a = audit_head(&F1), b = audit_head(&F2);
  return a < 0 || b < 0 ? -1 : a + b;
}

TEST(worker_mutations_are_audited) {
  char cmd[800], line[512], wtok[200] = "";
  snprintf(cmd, sizeof cmd,
           "%s worker-token create --data-dir %s --config %s --name audit",
           g_aisbxd, g_dir, g_cfg);
  FILE *p = popen(cmd, "r");
  while (p && fgets(line, sizeof line, p))
    if (!strncmp(line, "worker-token: ", 14))
      snprintf(wtok, sizeof wtok, "%.*s", (int)strcspn(line + 14, "\n"),
               line + 14);
  CHECK(p && pclose(p) == 0 && wtok[0]);
  int claims = 0, driven = 0, exempt = 0;
  for (int n = 0; n < 100; n++) {
    long before = heads();
    resp r;
    long st =
        jreq(&S, "POST", "/api/v1/worker/claim", wtok, "{\"wait\":0}", &r);
    char jt[256] = "", job[64] = "";
    int got = st == 200 && json_field(r.body, "token", jt, sizeof jt) &&
              json_field(r.body, "job", job, sizeof job);
    resp_free(&r);
    if (st == 204)
      break;
    CHECK(got);
    if (!got)
      break;
    claims++;
    CHECK(before >= 0 && heads() > before); /* the claim's row */
    for (size_t i = 0; i < sbx_server_route_count(); i++) {
      sbx_route_info ri = sbx_server_route(i);
      if (!strcmp(ri.method, "GET") ||
          strncmp(ri.pattern, "/api/v1/worker/jobs/", 20))
        continue;
      char path[256];
      int fin = strstr(ri.pattern, "/finish") != NULL;
      int up = strstr(ri.pattern, "/results/") != NULL;
      snprintf(path, sizeof path, "/api/v1/worker/jobs/%s/%s", job,
               fin  ? "finish"
               : up ? "results/result.json"
                    : "heartbeat");
      CHECK(fin || up || strstr(ri.pattern, "/heartbeat"));
      /* the first shard ends as the runner reports a sandbox kill */
      const char *fbody = claims == 1
                              ? "{\"state\":\"failed\",\"reason\":\"killed by "
                                "sandbox: forbidden system call 59 "
                                "(execve)\"}"
                              : "{\"state\":\"cancelled\"}";
      const char *body = up ? "{}" : fin ? fbody : "{}";
      req_opts o = {jt,   up ? "application/octet-stream" : "application/json",
                    body, 0,
                    NULL, 0,
                    0};
      before = heads();
      st = http(&S, ri.method, path, &o, &r);
      resp_free(&r);
      long after = heads();
      CHECK(st == 200 || st == 201);
      if (ri.no_audit) { /* exempt, with the reason in the table */
        CHECK(strlen(ri.no_audit) > 20 && after == before);
        exempt++;
      } else {
        if (after <= before)
          fprintf(stderr, "audit: %s %s appended no row\n", ri.method,
                  ri.pattern);
        CHECK(before >= 0 && after > before);
        driven++;
      }
    }
  }
  CHECK(claims >= 1 && driven >= 2 * claims && exempt == claims);
  /* the structured log has the job state changes and the violation */
  char path[300];
  snprintf(path, sizeof path, "%s/aisbxd.log", g_dir);
  FILE *f = fopen(path, "r");
  static char l[8192];
  int queued = 0, running = 0, failed = 0, violation = 0;
  while (f && fgets(l, sizeof l, f)) {
    int js = strstr(l, "\"event\":\"job.state\"") != NULL;
    queued += js && strstr(l, "\"state\":\"queued\"");
    running += js && strstr(l, "\"state\":\"running\"");
    failed += js && strstr(l, "\"state\":\"failed\"");
    violation += strstr(l, "\"event\":\"sandbox.violation\"") &&
                 strstr(l, "\"level\":\"warn\"") && !strstr(l, "execve");
  }
  if (f)
    fclose(f);
  CHECK(queued > 0 && running == claims && failed == 1 && violation == 1);
}

/* The structured log of the whole flow above (log_file): every line one
 * JSON object with the fixed fields; requests and security events are
 * there; and no secret the flow created appears anywhere: not the admin
 * keys, bootstrap tokens, role keys and JWTs, the metrics token, any
 * password or e-mail address, nor anything shaped like a credential
 * (ak_, rt_, wt_ prefixes, a JWT header "eyJ", "Bearer"), whichever case
 * created it. Actor and IP are pseudonyms (ps_ + 16 hex). */
TEST(logs_hold_no_secret) {
  char path[300];
  snprintf(path, sizeof path, "%s/aisbxd.log", g_dir);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  if (!f)
    return;
  const char *fixed[] = {K1,         K2,          BOOT1,
                         BOOT2,      EXPIRED_KEY, FORGED_KEY,
                         FORGED_JWT, EXPIRED_JWT, METRICS_TOKEN};
  const char *shapes[] = {"ak_",    "rt_",      "wt_",         "eyJ",
                          "Bearer", "password", "@t1.example", "@T1.example",
                          "@x.org", "127.0.0.1"};
  static char line[8192];
  int lines = 0, bad = 0, requests = 0, denied = 0, login_ok = 0,
      login_failed = 0, audit = 0, reuse = 0;
  while (fgets(line, sizeof line, f)) {
    lines++;
    int leak = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
      leak |= fixed[i][0] && strstr(line, fixed[i]) != NULL;
    for (int i = 0; i < 4; i++)
      leak |= (ROLE_KEY[i][0] && strstr(line, ROLE_KEY[i])) ||
              (ROLE_JWT[i][0] && strstr(line, ROLE_JWT[i]));
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      leak |= strstr(line, shapes[i]) != NULL;
    /* request and security-event lines carry the request's fields; the
     * audit anchors (no request) the chain head */
    int anchor = strstr(line, "\"event\":\"audit.anchor\"") != NULL;
    int shape = !strncmp(line, "{\"time\":\"", 9) &&
                strstr(line, "\"level\":\"") && strchr(line, '\n') &&
                (anchor ? strstr(line, "\"hash\":\"") != NULL
                        : strstr(line, "\"event\":\"") &&
                              strstr(line, "\"request_id\":\"") &&
                              strstr(line, "\"actor\":\"") &&
                              strstr(line, "\"ip\":\"ps_"));
    if ((leak || !shape) && bad++ < 5)
      fprintf(stderr, "log line %d (%s): %s", lines, leak ? "leak" : "shape",
              line);
    requests += strstr(line, "\"event\":\"request\"") != NULL;
    denied += strstr(line, "\"event\":\"permission.denied\"") != NULL;
    login_ok += strstr(line, "\"event\":\"login.ok\"") != NULL;
    login_failed += strstr(line, "\"event\":\"login.failed\"") != NULL;
    audit += strstr(line, "\"event\":\"audit.api_key.create\"") != NULL;
    reuse += strstr(line, "\"event\":\"token.reuse\"") != NULL;
  }
  fclose(f);
  CHECK_EQ_INT(bad, 0);
  CHECK(lines > 1000 && requests > 1000);
  CHECK(denied > 0 && login_ok > 0 && login_failed > 0 && audit > 0);
  CHECK(reuse > 0); /* refresh_rotation_and_reuse replayed a used token */
}

TEST(security_headers_everywhere) {
  const char *paths[] = {"/healthz", "/api/v1/projects", "/nope", "/api/v1/me"};
  const char *need[] = {"Strict-Transport-Security", "Content-Security-Policy",
                        "X-Content-Type-Options", "Referrer-Policy",
                        "X-Request-Id"};
  for (int i = 0; i < 4; i++) {
    const char *extra[] = {"Origin: https://evil.example", NULL};
    req_opts o = {i == 3 ? K1 : NULL, NULL, NULL, 0, extra, 0, 0};
    resp r;
    http(&S, "GET", paths[i], &o, &r);
    char v[512];
    for (int h = 0; h < 5; h++)
      CHECK(resp_header(&r, need[h], NULL, 0));
    CHECK(resp_header(&r, "Content-Security-Policy", v, sizeof v) &&
          strstr(v, "frame-ancestors 'none'"));
    CHECK(!resp_header(&r, "Access-Control-Allow-Origin", NULL, 0));
    CHECK(!resp_header(&r, "Access-Control-Allow-Credentials", NULL, 0));
    if (r.status >= 400)
      CHECK(resp_header(&r, "Content-Type", v, sizeof v) &&
            !strcmp(v, "application/problem+json") &&
            strstr(r.body, "\"request_id\""));
    resp_free(&r);
  }
  /* CORS preflight is not answered with any allowance */
  const char *pre[] = {"Origin: https://evil.example",
                       "Access-Control-Request-Method: POST", NULL};
  req_opts o = {NULL, NULL, NULL, 0, pre, 0, 0};
  resp r;
  long st = http(&S, "OPTIONS", "/api/v1/projects", &o, &r);
  CHECK(st == 405 || st == 404);
  CHECK(!resp_header(&r, "Access-Control-Allow-Origin", NULL, 0));
  resp_free(&r);
}

TEST(tls_versions) {
  resp r;
  req_opts o = {NULL, NULL,
                NULL, 0,
                NULL, CURL_SSLVERSION_TLSv1_0 | CURL_SSLVERSION_MAX_TLSv1_1,
                0};
  http(&S, "GET", "/healthz", &o, &r);
  CHECK(r.curl_rc == CURLE_SSL_CONNECT_ERROR && r.status == 0);
  resp_free(&r);
  o.sslversion = CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2;
  CHECK_EQ_INT(http(&S, "GET", "/healthz", &o, &r), 200);
  resp_free(&r);
  o.sslversion = CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_TLSv1_3;
  CHECK_EQ_INT(http(&S, "GET", "/healthz", &o, &r), 200);
  resp_free(&r);
}

static long post_json_raw(const char *path, const char *tok, const char *body,
                          size_t len, const char *ctype) {
  req_opts o = {tok, ctype, body, len, NULL, 0, 0};
  resp r;
  long st = http(&S, "POST", path, &o, &r);
  resp_free(&r);
  return st;
}

TEST(hostile_input) {
  const char *P = "/api/v1/projects";
  const char *J = "application/json";
  CHECK_EQ_INT(post_json_raw(P, K1, "{", 0, J), 400);
  CHECK_EQ_INT(post_json_raw(P, K1, "[1,2]", 0, J), 400);
  CHECK_EQ_INT(post_json_raw(P, K1, "{\"id\":\"x\",\"id\":\"y\"}", 0, J), 400);
  char deep[512];
  size_t o = 0;
  o += (size_t)snprintf(deep, sizeof deep, "{\"id\":");
  for (int i = 0; i < 100; i++)
    deep[o++] = '[';
  for (int i = 0; i < 100; i++)
    deep[o++] = ']';
  deep[o++] = '}';
  deep[o] = 0;
  CHECK_EQ_INT(post_json_raw(P, K1, deep, 0, J), 400);
  CHECK_EQ_INT(post_json_raw(P, K1,
                             "{\"id\":123456789012345678901234567890,"
                             "\"name\":\"x\"}",
                             0, J),
               400);
  CHECK_EQ_INT(post_json_raw(P, K1, "{\"id\":1e999999,\"name\":\"x\"}", 0, J),
               400);
  CHECK_EQ_INT(post_json_raw(P, K1, "{\"id\":5,\"name\":\"x\"}", 0, J), 400);
  CHECK_EQ_INT(post_json_raw(P, K1, "{\"id\":\"ok1\",\"name\":[]}", 0, J), 400);
  CHECK_EQ_INT(post_json_raw(P, K1,
                             "{\"id\":\"ok2\",\"name\":\"x\",\"admin\":true}",
                             0, J),
               400);
  CHECK_EQ_INT(
      post_json_raw(P, K1, "{\"id\":\"ok3\",\"name\":\"x\"}", 0, "text/plain"),
      415);
  /* embedded NUL inside a string */
  CHECK_EQ_INT(
      post_json_raw(P, K1, "{\"id\":\"a\\u0000b\",\"name\":\"x\"}", 0, J), 400);
  /* SQL metacharacters: refused as ids, stored verbatim as data */
  CHECK_EQ_INT(
      post_json_raw(P, K1, "{\"id\":\"p1' OR '1'='1\",\"name\":\"x\"}", 0, J),
      400);
  CHECK_EQ_INT(post_json_raw(P, K1,
                             "{\"id\":\"sqlp\",\"name\":\"x'); DROP TABLE "
                             "projects;--\"}",
                             0, J),
               201);
  resp r;
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects/sqlp", K1, NULL, &r), 200);
  CHECK(strstr(r.body, "DROP TABLE projects") != NULL);
  resp_free(&r);
  /* oversized bodies: JSON (64 KiB cap) and uploads (1 MiB in the test) */
  size_t big = 200 * 1024;
  char *b = malloc(2 * 1024 * 1024 + 16);
  memset(b, 'a', 2 * 1024 * 1024);
  memcpy(b, "{\"id\":\"", 7);
  CHECK_EQ_INT(post_json_raw(P, K1, b, big, J), 413);
  CHECK_EQ_INT(post_json_raw("/api/v1/projects/pa/models?name=big", K1, b,
                             2 * 1024 * 1024, "application/octet-stream"),
               413);
  /* exactly at the cap is accepted, and round-trips through the store */
  CHECK_EQ_INT(post_json_raw("/api/v1/projects/pa/models?name=atcap", K1, b,
                             1024 * 1024, "application/octet-stream"),
               201);
  free(b);
  /* path traversal in names and ids */
  CHECK_EQ_INT(post_json_raw("/api/v1/projects/pa/models?name=..%2F..%2Fetc"
                             "%2Fpasswd",
                             K1, "x", 1, "application/octet-stream"),
               400);
  CHECK_EQ_INT(post_json_raw("/api/v1/projects/pa/models?name=.hidden", K1, "x",
                             1, "application/octet-stream"),
               400);
  req_opts asis = {K1, NULL, NULL, 0, NULL, 0, 1};
  CHECK_EQ_INT(http(&S, "GET", "/api/v1/projects/../../etc/passwd", &asis, &r),
               404);
  resp_free(&r);
  CHECK_EQ_INT(http(&S, "GET", "/api/v1/projects/%2e%2e/models", &asis, &r),
               404);
  resp_free(&r);
  CHECK_EQ_INT(http(&S, "GET", "/api/v1/projects/pa/models/..", &asis, &r),
               404);
  resp_free(&r);
  /* header injection: nothing from the request is reflected in headers */
  const char *inj[] = {"X-Request-Id: abc\r\nSet-Cookie: pwn=1", NULL};
  req_opts io = {K1, NULL, NULL, 0, inj, 0, 0};
  http(&S, "GET", "/api/v1/me", &io, &r);
  char v[128];
  CHECK(!resp_header(&r, "Set-Cookie", NULL, 0));
  CHECK(resp_header(&r, "X-Request-Id", v, sizeof v) && strlen(v) == 32);
  resp_free(&r);
  /* wrong method / unknown route */
  CHECK_EQ_INT(jreq(&S, "PATCH", "/api/v1/projects", K1, NULL, &r), 405);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v2/anything", K1, NULL, &r), 404);
  resp_free(&r);
  /* pagination: bad limit / cursor */
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects?limit=0", K1, NULL, &r), 400);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects?limit=1", K1, NULL, &r), 200);
  CHECK(strstr(r.body, "\"next_cursor\":\"") != NULL);
  resp_free(&r);
  CHECK_EQ_INT(
      jreq(&S, "GET", "/api/v1/projects?cursor=%27%20OR%201", K1, NULL, &r),
      400);
  resp_free(&r);
  /* the server is still healthy */
  CHECK_EQ_INT(jreq(&S, "GET", "/healthz", NULL, NULL, &r), 200);
  resp_free(&r);
}

/* Authentication comes before any answer about the body: a caller without
 * a valid credential learns nothing of a route's body caps or shape (401,
 * never 413 or 400); the same bodies with a valid key get 413/400. */
TEST(auth_before_body_caps) {
  const char *P = "/api/v1/projects";
  const char *J = "application/json";
  const char *O = "application/octet-stream";
  size_t big = 200 * 1024, huge = 2 * 1024 * 1024;
  char *b = malloc(huge + 16);
  CHECK(b != NULL);
  if (!b)
    return;
  memset(b, 'a', huge);
  memcpy(b, "{\"id\":\"", 7);
  const char *nocred[] = {NULL, "ak_t1~0123456789abcdef.nope", "a.b.c"};
  for (int i = 0; i < 3; i++) {
    /* JSON over the 64 KiB cap */
    CHECK_EQ_INT(post_json_raw(P, nocred[i], b, big, J), 401);
    /* malformed JSON, wrong content type */
    CHECK_EQ_INT(post_json_raw(P, nocred[i], "{", 0, J), 401);
    CHECK_EQ_INT(post_json_raw(P, nocred[i], "{}", 0, "text/plain"), 401);
    /* a body on a route that takes none */
    CHECK_EQ_INT(post_json_raw("/api/v1/projects/pa/jobs/j1/cancel", nocred[i],
                               "{}", 0, J),
                 401);
    /* an upload over the 1 MiB cap of the test server */
    CHECK_EQ_INT(post_json_raw("/api/v1/projects/pa/models?name=big", nocred[i],
                               b, huge, O),
                 401);
  }
  /* with a valid credential the body is judged */
  CHECK_EQ_INT(post_json_raw(P, K1, b, big, J), 413);
  CHECK_EQ_INT(post_json_raw(P, K1, "{", 0, J), 400);
  CHECK_EQ_INT(
      post_json_raw("/api/v1/projects/pa/jobs/j1/cancel", K1, "{}", 0, J), 413);
  CHECK_EQ_INT(
      post_json_raw("/api/v1/projects/pa/models?name=big", K1, b, huge, O),
      413);
  free(b);
}

TEST(hostile_jwt) {
  char hdr[512], pl[512], tok[4096];
  long now = (long)time(NULL);
  resp r;
  const char *kid = g_fake.jwt_kid;
#define EXPECT_TOKEN(t, want)                                                  \
  do {                                                                         \
    CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", (t), NULL, &r), (want));        \
    resp_free(&r);                                                             \
  } while (0)
  /* control: a correctly signed token of our own works */
  snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", kid);
  std_payload(pl, sizeof pl, "aisbxd", "aisbxd", now, now, now + 600,
              "user-admin");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 200);
  /* tampered payload: same signature, other subject */
  {
    char t2[4096], pb[1024], pl2[512];
    snprintf(t2, sizeof t2, "%s", tok);
    char *d1 = strchr(t2, '.'), *d2 = strchr(d1 + 1, '.');
    snprintf(pl2, sizeof pl2, "%s", pl);
    char *s = strstr(pl2, "user-admin");
    memcpy(s, "user-viewe", 10);
    sbx__b64url(pl2, strlen(pl2), pb);
    char out[8192];
    *d1 = 0;
    snprintf(out, sizeof out, "%s.%s%s", t2, pb, d2);
    EXPECT_TOKEN(out, 401);
  }
  /* alg none, no signature */
  {
    char hb[512], pb[1024], out[2048];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"none\",\"kid\":\"%s\"}", kid);
    sbx__b64url(hdr, strlen(hdr), hb);
    sbx__b64url(pl, strlen(pl), pb);
    snprintf(out, sizeof out, "%s.%s.", hb, pb);
    EXPECT_TOKEN(out, 401);
  }
  /* HS256 keyed with the public key (the JWKS "x" string and raw bytes) */
  {
    char hb[512], pb[1024], out[2048];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", kid);
    sbx__b64url(hdr, strlen(hdr), hb);
    sbx__b64url(pl, strlen(pl), pb);
    int n = snprintf(out, sizeof out, "%s.%s", hb, pb);
    uint8_t mac[32], raw[64];
    long rl =
        sbx__unb64url(g_fake.jwt_x, strlen(g_fake.jwt_x), raw, sizeof raw);
    for (int variant = 0; variant < 2; variant++) {
      if (variant == 0)
        sbx_hmac_sha256(g_fake.jwt_x, strlen(g_fake.jwt_x), out, (size_t)n,
                        mac);
      else
        sbx_hmac_sha256(raw, (size_t)rl, out, (size_t)n, mac);
      char o2[2048];
      memcpy(o2, out, (size_t)n);
      o2[n] = '.';
      sbx__b64url(mac, 32, o2 + n + 1);
      EXPECT_TOKEN(o2, 401);
    }
  }
  /* unknown kid, no kid, embedded jwk */
  snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"someone-else\"}");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\"}");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  snprintf(hdr, sizeof hdr,
           "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"jwk\":{\"kty\":\"OKP\"}}", kid);
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", kid);
  /* expired, future nbf, too long a lifetime, wrong iss / aud */
  std_payload(pl, sizeof pl, "aisbxd", "aisbxd", now - 1000, now - 1000,
              now - 10, "user-admin");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  std_payload(pl, sizeof pl, "aisbxd", "aisbxd", now, now + 600, now + 900,
              "user-admin");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  std_payload(pl, sizeof pl, "aisbxd", "aisbxd", now, now, now + 86400,
              "user-admin");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  std_payload(pl, sizeof pl, "https://evil", "aisbxd", now, now, now + 600,
              "user-admin");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  std_payload(pl, sizeof pl, "aisbxd", "other-service", now, now, now + 600,
              "user-admin");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  /* a user of the token's tenant that does not exist */
  std_payload(pl, sizeof pl, "aisbxd", "aisbxd", now, now, now + 600, "ghost");
  sign_jwt(hdr, pl, tok, sizeof tok);
  EXPECT_TOKEN(tok, 401);
  /* structural garbage */
  EXPECT_TOKEN("a.b.c", 401);
  EXPECT_TOKEN("....", 401);
  EXPECT_TOKEN("eyJhbGciOiJFZERTQSJ9..", 401);
  /* a 1 MB token: refused with a 4xx (or the connection is dropped), and
   * the server stays healthy */
  char *huge = malloc(1 << 20);
  memset(huge, 'A', (1 << 20) - 1);
  huge[(1 << 20) - 1] = 0;
  long st = jreq(&S, "GET", "/api/v1/me", huge, NULL, &r);
  CHECK(st == 0 || (st >= 400 && st < 500));
  resp_free(&r);
  free(huge);
  EXPECT_TOKEN(ROLE_JWT[0], 200);
#undef EXPECT_TOKEN
}

TEST(refresh_rotation_and_reuse) {
  resp r;
  const char *login = "{\"grant_type\":\"password\",\"tenant\":\"t1\","
                      "\"email\":\"viewer@t1.example\",\"password\":"
                      "\"password-of-viewer\"}";
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, login, &r), 200);
  char rt1[200] = "", rt2[200] = "", rt3[200] = "", at[1200] = "",
       at0[1200] = "", at3[1200] = "";
  CHECK(json_field(r.body, "refresh_token", rt1, sizeof rt1));
  CHECK(json_field(r.body, "access_token", at0, sizeof at0));
  resp_free(&r);
  char body[512];
  snprintf(body, sizeof body,
           "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"%s\"}", rt1);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r), 200);
  CHECK(json_field(r.body, "refresh_token", rt2, sizeof rt2));
  CHECK(json_field(r.body, "access_token", at, sizeof at));
  CHECK(strcmp(rt1, rt2) != 0);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", at, NULL, &r), 200);
  resp_free(&r);
  /* replay of rt1: refused and the whole family (rt2) is revoked */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r), 401);
  resp_free(&r);
  snprintf(body, sizeof body,
           "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"%s\"}", rt2);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r), 401);
  resp_free(&r);
  /* issue 12 item 3: the family's access tokens (the login's and the
   * refresh grant's, both valid for 15 min) stop at once, not at expiry */
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", at, NULL, &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", at0, NULL, &r), 401);
  resp_free(&r);
  /* a fresh login starts a new family that works */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, login, &r), 200);
  CHECK(json_field(r.body, "refresh_token", rt3, sizeof rt3));
  CHECK(json_field(r.body, "access_token", at3, sizeof at3));
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", at3, NULL, &r), 200);
  resp_free(&r);
  snprintf(body, sizeof body,
           "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"%s\"}", rt3);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r), 200);
  resp_free(&r);
  /* forged secret on a real id */
  rt3[strlen(rt3) - 1] ^= 1;
  snprintf(body, sizeof body,
           "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"%s\"}", rt3);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r), 401);
  resp_free(&r);
}

TEST(bootstrap_and_lockout) {
  resp r;
  char body[512];
  snprintf(body, sizeof body,
           "{\"token\":\"%s\",\"email\":\"root@t2.example\",\"password\":"
           "\"a long bootstrap password\"}",
           BOOT2);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/bootstrap", NULL, body, &r), 200);
  resp_free(&r);
  /* one-time */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/bootstrap", NULL, body, &r), 401);
  resp_free(&r);
  const char *good = "{\"grant_type\":\"password\",\"tenant\":\"t2\","
                     "\"email\":\"root@t2.example\",\"password\":\"a long "
                     "bootstrap password\"}";
  const char *bad = "{\"grant_type\":\"password\",\"tenant\":\"t2\","
                    "\"email\":\"root@t2.example\",\"password\":\"wrong "
                    "password!!\"}";
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, good, &r), 200);
  resp_free(&r);
  for (int i = 0; i < 3; i++) { /* login_max_failures = 3 in the test */
    CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, bad, &r), 401);
    resp_free(&r);
  }
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, good, &r), 429);
  CHECK(resp_header(&r, "Retry-After", NULL, 0));
  resp_free(&r);
  /* the same password in tenant t1 is a different account */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL,
                    "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":"
                    "\"root@t2.example\",\"password\":\"a long bootstrap "
                    "password\"}",
                    &r),
               401);
  resp_free(&r);
}

TEST(api_key_lifecycle) {
  char id[64], key[200], body[256];
  resp r;
  CHECK(mk_key(&F1, "developer", 3600, id, key) == 0);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", key, NULL, &r), 200);
  resp_free(&r);
  /* listing shows no secret */
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/api-keys?limit=100", K1, NULL, &r),
               200);
  CHECK(strstr(r.body, id) && !strstr(r.body, strchr(key, '.') + 1));
  resp_free(&r);
  /* rotation with overlap 0: old key dies now, new one works */
  snprintf(body, sizeof body, "/api/v1/api-keys/%s/rotate", id);
  /* an API key (even the tenant's admin key) cannot rotate: step-up */
  CHECK_EQ_INT(jreq(&S, "POST", body, K1, "{\"overlap_s\":0}", &r), 403);
  CHECK(strstr(r.body, "step-up") != NULL);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", body, step_tok(&F1), "{\"overlap_s\":0}", &r),
               201);
  char key2[200] = "";
  CHECK(json_field(r.body, "key", key2, sizeof key2));
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", key2, NULL, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", key, NULL, &r), 401);
  resp_free(&r);
  /* a project-scoped key sees its project only */
  char pk[200] = "";
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/api-keys", step_tok(&F1),
                    "{\"role\":\"developer\",\"project_id\":\"pa\"}", &r),
               201);
  CHECK(json_field(r.body, "key", pk, sizeof pk));
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects/pa/models", pk, NULL, &r),
               200);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects/sqlp/models", pk, NULL, &r),
               404);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects", pk, NULL, &r), 403);
  resp_free(&r);
  /* revocation */
  snprintf(body, sizeof body, "/api/v1/api-keys/%.16s", strchr(key2, '~') + 1);
  CHECK_EQ_INT(jreq(&S, "DELETE", body, K1, NULL, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", key2, NULL, &r), 401);
  resp_free(&r);
  /* a developer cannot mint an admin key (and lacks apikey:create) */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/api-keys", ROLE_KEY[1],
                    "{\"role\":\"admin\"}", &r),
               403);
  resp_free(&r);
}

/* Runs one SQL statement on the server's meta.db from this process (a
 * change the server's caches cannot know about). 0 on success. */
static int db_poke(const char *sql) {
  return api_db_poke(g_dir, sql);
}

static long upload_as(const char *key, const char *project) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/%s/models?name=capm%d", project,
           ++g_uniq);
  req_opts o = {key, "application/octet-stream", "raw bytes", 0, NULL, 0, 0};
  resp r;
  long st = http(&S, "POST", path, &o, &r);
  resp_free(&r);
  return st;
}

static long get_as(const char *key, const char *path) {
  resp r;
  long st = jreq(&S, "GET", path, key, NULL, &r);
  resp_free(&r);
  return st;
}

/* POST /api/v1/api-keys as cred with body; the key into key_out. */
static long key_for(const char *cred, const char *body, char key_out[200]) {
  resp r;
  long st = jreq(&S, "POST", "/api/v1/api-keys", cred, body, &r);
  if (st != 201 || !json_field(r.body, "key", key_out, 200))
    fprintf(stderr, "key_for: %ld %s\n", st, r.body);
  resp_free(&r);
  return st;
}

/* Issue 6 fix: an API key's effective role never exceeds the CURRENT role
 * of its user and of the user who created it (demotion, no membership,
 * disabled user), immediately for changes made through this server (its
 * caches are invalidated), within the cache TTL (5 s) for changes made
 * elsewhere. Also: a revoked key is refused on the very next request even
 * though it was just cached, and a cached key past its expiry is refused. */
TEST(api_key_role_capped_by_current_roles) {
  resp r;
  static const char *const users[] = {"capu", "capv", "capd"};
  for (int i = 0; i < 3; i++) {
    char body[256];
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"email\":\"%s@t1.example\"}",
             users[i], users[i]);
    CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/users", K1, body, &r), 201);
    resp_free(&r);
  }
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/projects/pa/members/capu", K1,
                    "{\"role\":\"admin\"}", &r),
               200);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/projects/pa/members/capd", K1,
                    "{\"role\":\"developer\"}", &r),
               200);
  resp_free(&r);
  /* a developer key of capu (a project admin): works while capu is one */
  char ku[200], kv[200], kd[200];
  CHECK_EQ_INT(key_for(step_tok(&F1),
                       "{\"role\":\"developer\",\"project_id\":\"pa\","
                       "\"user_id\":\"capu\"}",
                       ku),
               201);
  CHECK_EQ_INT(upload_as(ku, "pa"), 201);
  CHECK_EQ_INT(get_as(ku, "/api/v1/projects/pa/models"), 200);
  /* capu demoted to viewer through the API: the key follows at once */
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/projects/pa/members/capu", K1,
                    "{\"role\":\"viewer\"}", &r),
               200);
  resp_free(&r);
  CHECK_EQ_INT(upload_as(ku, "pa"), 403);
  CHECK_EQ_INT(get_as(ku, "/api/v1/projects/pa/models"), 200);
  /* GET /me tells the key what it may do now, and what it was issued as */
  {
    char role[32] = "", krole[32] = "";
    CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", ku, NULL, &r), 200);
    CHECK(json_field(r.body, "role", role, sizeof role));
    CHECK(json_field(r.body, "key_role", krole, sizeof krole));
    CHECK(!strcmp(role, "viewer"));
    CHECK(!strcmp(krole, "developer"));
    resp_free(&r);
  }
  /* promoted back: the key's own role is the ceiling again */
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/projects/pa/members/capu", K1,
                    "{\"role\":\"admin\"}", &r),
               200);
  resp_free(&r);
  CHECK_EQ_INT(upload_as(ku, "pa"), 201);
  CHECK_EQ_INT(get_as(ku, "/api/v1/projects/pa/members"), 403); /* dev */
  /* a key of a user with no role in the project: the project is not there
   * for it; a tenant-wide key of a user without tenant role: 403 */
  CHECK_EQ_INT(key_for(step_tok(&F1),
                       "{\"role\":\"admin\",\"project_id\":\"pa\","
                       "\"user_id\":\"capv\"}",
                       kv),
               201);
  CHECK_EQ_INT(get_as(kv, "/api/v1/projects/pa/models"), 404);
  CHECK_EQ_INT(upload_as(kv, "pa"), 404);
  char kt[200];
  CHECK_EQ_INT(
      key_for(step_tok(&F1), "{\"role\":\"admin\",\"user_id\":\"capv\"}", kt),
      201);
  CHECK_EQ_INT(get_as(kt, "/api/v1/projects"), 403);
  CHECK_EQ_INT(get_as(kt, "/api/v1/users"), 403);
  /* the creator's role caps too: a second tenant admin creates a key for
   * capd (developer in pa), then loses the admin role */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/users", K1,
                    "{\"id\":\"capboss\",\"email\":\"capboss@t1.example\","
                    "\"password\":\"password-of-capboss\",\"role\":\"admin\"}",
                    &r),
               201);
  resp_free(&r);
  char bjwt[1200] = "";
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL,
                    "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":"
                    "\"capboss@t1.example\",\"password\":\"password-of-"
                    "capboss\"}",
                    &r),
               200);
  CHECK(json_field(r.body, "access_token", bjwt, sizeof bjwt));
  resp_free(&r);
  CHECK_EQ_INT(key_for(bjwt,
                       "{\"role\":\"developer\",\"project_id\":\"pa\","
                       "\"user_id\":\"capd\"}",
                       kd),
               201);
  CHECK_EQ_INT(upload_as(kd, "pa"), 201);
  /* changes made outside this server (here: straight in the database):
   * capboss demoted to viewer, capu disabled. Within the cache TTL of 5 s
   * both keys must follow. */
  CHECK_EQ_INT(get_as(ku, "/api/v1/projects/pa/models"), 200); /* cached */
  CHECK(db_poke("UPDATE srv_tenant_roles SET role = 'viewer' WHERE "
                "tenant_id = 't1' AND user_id = 'capboss'") == 0);
  CHECK(db_poke("UPDATE users SET disabled = 1 WHERE tenant_id = 't1' AND "
                "id = 'capu'") == 0);
  sleep(6);
  CHECK_EQ_INT(upload_as(kd, "pa"), 403);
  CHECK_EQ_INT(get_as(kd, "/api/v1/projects/pa/models"), 200);
  CHECK_EQ_INT(get_as(ku, "/api/v1/projects/pa/models"), 401);
  /* expiry is compared with the clock on every request, also while the
   * verified key is cached (TTL 5 s): a key of 2 s used at once, again
   * after 3 s */
  char ke[200];
  CHECK_EQ_INT(
      key_for(step_tok(&F1), "{\"role\":\"viewer\",\"expires_in_s\":2}", ke),
      201);
  CHECK_EQ_INT(get_as(ke, "/api/v1/projects"), 200);
  sleep(3);
  CHECK_EQ_INT(get_as(ke, "/api/v1/projects"), 401);
  /* revocation of a key in use (cached) takes effect on the next request */
  char ki[200], path[128];
  CHECK_EQ_INT(key_for(step_tok(&F1), "{\"role\":\"viewer\"}", ki), 201);
  CHECK_EQ_INT(get_as(ki, "/api/v1/projects"), 200);
  CHECK_EQ_INT(get_as(ki, "/api/v1/projects"), 200);
  snprintf(path, sizeof path, "/api/v1/api-keys/%.16s", strchr(ki, '~') + 1);
  CHECK_EQ_INT(jreq(&S, "DELETE", path, K1, NULL, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(get_as(ki, "/api/v1/projects"), 401);
}

/* Value of the first sample line starting with prefix, or -1. */
static double metric(const char *body, const char *prefix) {
  size_t n = strlen(prefix);
  for (const char *l = body; l && *l;
       l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (!strncmp(l, prefix, n) && l[n] == ' ')
      return atof(l + n + 1);
  return -1;
}

/* GET /metrics: Prometheus text, only with the operator token; counts move
 * with the traffic. */
TEST(metrics_prometheus) {
  resp r;
  /* tenant credentials, even admin ones, never read it (also the matrix) */
  CHECK_EQ_INT(jreq(&S, "GET", "/metrics", K1, NULL, &r), 403);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/metrics", NULL, NULL, &r), 401);
  resp_free(&r);
  char wrong[sizeof METRICS_TOKEN];
  snprintf(wrong, sizeof wrong, "%s", METRICS_TOKEN);
  wrong[5] ^= 1;
  CHECK_EQ_INT(jreq(&S, "GET", "/metrics", wrong, NULL, &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/metrics", METRICS_TOKEN, NULL, &r), 200);
  char ct[128] = "";
  CHECK(resp_header(&r, "Content-Type", ct, sizeof ct) &&
        !strncmp(ct, "text/plain; version=0.0.4", 25));
  CHECK(strstr(r.body, "# TYPE aisbxd_requests_total counter") &&
        strstr(r.body, "# TYPE aisbxd_request_duration_seconds histogram") &&
        strstr(r.body, "aisbxd_request_duration_seconds_bucket{le=\"+Inf\"}") &&
        strstr(r.body, "# TYPE aisbxd_requests_in_flight gauge"));
  const char *ok_line =
      "aisbxd_requests_total{method=\"GET\",route=\"/api/v1/projects\","
      "code=\"2xx\"}";
  const char *r403 =
      "aisbxd_requests_total{method=\"GET\",route=\"/metrics\",code=\"4xx\"}";
  double ok0 = metric(r.body, ok_line);
  double f0 = metric(r.body, "aisbxd_auth_failures_total{reason=\"invalid\"}");
  double m0 = metric(r.body, "aisbxd_auth_failures_total{reason=\"missing\"}");
  double c0 = metric(r.body, "aisbxd_request_duration_seconds_count");
  double i0 = metric(r.body, "aisbxd_requests_in_flight");
  CHECK(ok0 >= 1 && f0 >= 1 && m0 >= 1 && c0 >= ok0 && i0 >= 1);
  CHECK(metric(r.body, r403) >= 3); /* the refusals above */
  CHECK(!strstr(r.body, "t1") && !strstr(r.body, "pa\"")); /* no tenants */
  resp_free(&r);
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects", K1, NULL, &r), 200);
    resp_free(&r);
  }
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects", FORGED_KEY, NULL, &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/metrics", METRICS_TOKEN, NULL, &r), 200);
  CHECK(metric(r.body, ok_line) == ok0 + 3);
  CHECK(metric(r.body, "aisbxd_auth_failures_total{reason=\"invalid\"}") ==
        f0 + 1);
  CHECK(metric(r.body, "aisbxd_request_duration_seconds_count") >= c0 + 5);
  resp_free(&r);
}

TEST(upload_roundtrip_and_audit) {
  resp r;
  req_opts o = {
      K1, "application/octet-stream", "\x00\x01binary\xff", 9, NULL, 0, 0};
  CHECK_EQ_INT(
      http(&S, "POST", "/api/v1/projects/pa/datasets?name=bin.npz", &o, &r),
      201);
  char id[64] = "", path[256];
  CHECK(json_field(r.body, "id", id, sizeof id));
  resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/projects/pa/datasets/%s/content", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, ROLE_KEY[0], NULL, &r), 200);
  CHECK(r.len == 9 && !memcmp(r.body, "\x00\x01binary\xff", 9));
  resp_free(&r);
  /* the same name twice: conflict */
  CHECK_EQ_INT(
      http(&S, "POST", "/api/v1/projects/pa/datasets?name=bin.npz", &o, &r),
      409);
  resp_free(&r);
  /* every page of the tenant's audit events (hundreds by now) */
  int seen = 0, pages = 0, other = 0;
  char cursor[64] = "", apath[160];
  do {
    snprintf(apath, sizeof apath, "/api/v1/audit-events?limit=100%s%s",
             cursor[0] ? "&cursor=" : "", cursor);
    CHECK_EQ_INT(jreq(&S, "GET", apath, K1, NULL, &r), 200);
    seen |= (strstr(r.body, "dataset.upload") ? 1 : 0) |
            (strstr(r.body, "job.create") ? 2 : 0) |
            (strstr(r.body, "api_key.revoke") ? 4 : 0);
    other |= strstr(r.body, "root@t2") != NULL; /* no other tenant's */
    if (!json_field(r.body, "next_cursor", cursor, sizeof cursor))
      cursor[0] = 0;
    resp_free(&r);
  } while (cursor[0] && ++pages < 100);
  CHECK_EQ_INT(seen, 7);
  CHECK(!other);
}

TEST(rate_limits_and_graceful_shutdown) {
  /* a second server on the same data dir with tight limits */
  char cfg[320];
  snprintf(cfg, sizeof cfg, "%s/rl.conf", g_dir);
  FILE *f = fopen(cfg, "w");
  fprintf(f, "blob_fsync = 0\nrate_key_per_s = 1\nrate_key_burst = 3\n"
             "rate_ip_per_s = 2\nrate_ip_burst = 8\n");
  fclose(f);
  srv s2;
  CHECK(api_start(&s2, g_dir, cfg) == 0);
  int got429 = 0, ok = 0;
  char ra[32] = "";
  for (int i = 0; i < 6; i++) {
    resp r;
    long st = jreq(&s2, "GET", "/api/v1/me", K1, NULL, &r);
    if (st == 200)
      ok++;
    if (st == 429) {
      got429++;
      CHECK(resp_header(&r, "Retry-After", ra, sizeof ra) && atoi(ra) >= 1);
    }
    resp_free(&r);
  }
  CHECK(ok >= 1 && ok <= 4 && got429 >= 2);
  /* per IP: unauthenticated requests run into the IP bucket */
  int ip429 = 0;
  for (int i = 0; i < 12; i++) {
    resp r;
    if (jreq(&s2, "GET", "/healthz", NULL, NULL, &r) == 429)
      ip429++;
    resp_free(&r);
  }
  CHECK(ip429 >= 1);
  CHECK_EQ_INT(api_stop(&s2), 0); /* SIGTERM: clean exit */
  /* S on the same dir restored its port file? (each server writes its own
   * port to the same path; S keeps running regardless) */
  resp r;
  CHECK_EQ_INT(jreq(&S, "GET", "/healthz", NULL, NULL, &r), 200);
  resp_free(&r);
}

int main(int argc, char **argv) {
  if (api_main_setup(argc, argv, "api", g_dir, g_cfg))
    return 2;
  char mtok[300], mcfg[800];
  snprintf(mtok, sizeof mtok, "%s/metrics.token", g_dir);
  int mfd = open(mtok, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (mfd < 0 || write(mfd, METRICS_TOKEN, strlen(METRICS_TOKEN)) < 0 ||
      write(mfd, "\n", 1) != 1)
    return 2;
  close(mfd);
  snprintf(mcfg, sizeof mcfg,
           "metrics_token_file = %s\nlog_file = %s/aisbxd.log\n"
           "public_origin = https://127.0.0.1\n",
           mtok, g_dir);
  api_write_config(g_cfg, mcfg);
  if (api_init_tenant(g_dir, g_cfg, "t1", K1, BOOT1) ||
      api_init_tenant(g_dir, g_cfg, "t2", K2, BOOT2)) {
    fprintf(stderr, "aisbxd init failed\n");
    return 1;
  }
  if (api_start(&S, g_dir, g_cfg)) {
    fprintf(stderr, "aisbxd did not start\n");
    return 1;
  }
  int fx = setup_fixture(&F1) || setup_fixture(&F2);
  if (fx) {
    fprintf(stderr, "fixture setup failed\n");
  } else {
    RUN(setup_credentials);
    RUN(matrix_covers_every_route);
    RUN(authorization_matrix);
    RUN(every_mutation_is_audited);
    RUN(security_headers_everywhere);
    RUN(tls_versions);
    RUN(hostile_input);
    RUN(auth_before_body_caps);
    RUN(hostile_jwt);
    RUN(refresh_rotation_and_reuse);
    RUN(bootstrap_and_lockout);
    RUN(api_key_lifecycle);
    RUN(api_key_role_capped_by_current_roles);
    RUN(upload_roundtrip_and_audit);
    RUN(metrics_prometheus);
    RUN(worker_mutations_are_audited);
    RUN(rate_limits_and_graceful_shutdown);
  }
  int stop = api_stop(&S);
  if (stop != 0) {
    fprintf(stderr, "aisbxd exit status after SIGTERM: %d\n", stop);
    harness_tests_failed++;
  }
  if (!fx)
    RUN(logs_hold_no_secret);
  sbx__jwt_free(&g_fake);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", g_dir, g_cfg);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
  curl_global_cleanup();
  return fx ? 1 : harness_report();
}
