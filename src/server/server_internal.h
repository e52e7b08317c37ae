/*
 * server_internal.h - shared between the files of aisbxd (src/server).
 * Non-static symbols are sbx__ (library-internal).
 */
#ifndef SBX_SERVER_INTERNAL_H
#define SBX_SERVER_INTERNAL_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>

#include "sbx/meta.h"
#include "sbx/server.h"
#include "sbx/store.h"

/* ---- roles: a bit per role; permissions map to a set of roles ---- */
enum {
  SBX__ROLE_VIEWER = 1,
  SBX__ROLE_DEVELOPER = 2,
  SBX__ROLE_ANALYST = 4,
  SBX__ROLE_ADMIN = 8
};
int sbx__role_bit(const char *name); /* 0 when unknown */
const char *sbx__role_name(int bit);

/* ---- the authenticated caller ---- */
enum {
  SBX__CRED_NONE = 0,
  SBX__CRED_APIKEY = 1,
  SBX__CRED_JWT = 2,
  SBX__CRED_SESSION = 3 /* browser session cookie (session.c) */
};
typedef struct sbx__principal {
  int kind;
  char tenant[SBX_ID_MAX];
  char user[SBX_ID_MAX];
  char key_id[SBX_ID_MAX];      /* API key id, or JWT jti */
  char key_project[SBX_ID_MAX]; /* API key project scope ("" = tenant) */
  int key_role;                 /* API key role bit */
  char key_issuer[SBX_ID_MAX];  /* API key: who created it ("" = user) */
  int user_checked; /* 1: user state checked in this request (authcache) */
  int user_trole;   /* then: the user's tenant role bit */
} sbx__principal;

/* ---- store handle pool (one handle per request in flight) ---- */
#define SBX__POOL_MAX 32
typedef struct sbx__pool {
  pthread_mutex_t mu;
  sbx_store *h[SBX__POOL_MAX];
  int busy[SBX__POOL_MAX];
  int n;
} sbx__pool;

/* ---- rate limiter: token buckets in a fixed-size table ---- */
#define SBX__RL_SLOTS 4096
typedef struct sbx__bucket {
  uint64_t key; /* hash of "ip:.." or "key:.."; 0 = free */
  double tokens;
  double last;
} sbx__bucket;
typedef struct sbx__ratelimit {
  pthread_mutex_t mu;
  sbx__bucket b[SBX__RL_SLOTS];
} sbx__ratelimit;
/* Takes one token. Returns 0 when allowed, else the seconds to wait. */
int sbx__rl_take(sbx__ratelimit *rl, const char *who, double rate,
                 double burst);

/* ---- metrics (metrics.c): lock-free process-wide counters ---- */
#define SBX__METRICS_ROUTES 64 /* >= the route table (checked at start) */
#define SBX__METRICS_BUCKETS 14
typedef struct sbx__metrics {
  _Atomic uint64_t requests[SBX__METRICS_ROUTES + 1][5]; /* + unmatched */
  _Atomic uint64_t hist[SBX__METRICS_BUCKETS + 1];       /* + overflow */
  _Atomic uint64_t sum_us;
  _Atomic int64_t in_flight;
  _Atomic uint64_t auth_fail[3];    /* invalid, expired, missing */
  _Atomic uint64_t rate_limited[2]; /* ip, credential */
  uint8_t token_hash[32];           /* SHA-256 of the operator token */
  int token_set;
} sbx__metrics;

struct sbx_server {
  sbx_server_params p;
  char data_dir[SBX_PATH_MAX];
  char master_spec[SBX_PATH_MAX + 8];
  char issuer[128];
  struct MHD_Daemon *d;
  uint16_t port;
  char *tls_cert_pem, *tls_key_pem;
  sbx__pool pool;
  sbx__ratelimit rl;
  /* JWT signing key (Ed25519) */
  gnutls_privkey_t jwt_priv;
  gnutls_pubkey_t jwt_pub;
  char jwt_kid[32];
  char jwt_x[64]; /* base64url public key */
  struct sbx__oidc *oidc; /* NULL when OIDC is not configured (oidc.c) */
  struct sbx__authcache *ac; /* authcache.c (NULL: no caching) */
  sbx__metrics metrics;
};

/* ---- a request in flight ---- */
#define SBX__EXTRA_HDR 4
#define SBX__HDR_VALUE_MAX 1536
#define SBX__MAX_PARAMS 3
typedef struct sbx__req {
  sbx_server *srv;
  struct MHD_Connection *conn;
  const char *method;
  char path[SBX_PATH_MAX];
  char reqid[33];
  char ip[64];
  int checked;
  int route; /* index in the table, -1 none */
  char params[SBX__MAX_PARAMS][SBX_ID_MAX];
  int role; /* effective role bit for this route */
  sbx__principal who;
  double t0;     /* monotonic time the headers arrived (metrics) */
  sbx_store *st; /* from the pool, released on completion */
  /* body */
  char *body;
  size_t body_len;
  size_t body_cap;
  int64_t max_body;
  int too_large;
  int final;                /* the whole body has arrived */
  sbx_store_writer *upload; /* upload routes: streaming into the store */
  int64_t upload_len;       /* bytes already written to upload */
  /* response */
  int status;
  char *resp;
  size_t resp_len;
  int resp_owned; /* free(resp) after queueing */
  const char *resp_type;
  char extra_hdr[SBX__EXTRA_HDR][2][SBX__HDR_VALUE_MAX]; /* name/value
                                  pairs: Retry-After, Location, Set-Cookie */
  int nextra;
} sbx__req;

/* Response helpers: set r->status/resp. Return 0. */
int sbx__reply_json(sbx__req *r, int status, json_t *body); /* steals */
int sbx__problem(sbx__req *r, int status, const char *title,
                 const char *detail);
/* Maps a store status to a problem response (404, 409, 413, 500...). */
int sbx__problem_rc(sbx__req *r, int rc);
void sbx__add_header(sbx__req *r, const char *name, const char *value);

/* Growable text buffer for hand-written JSON (hot list responses), capped
 * at max bytes; after any failure (cap, memory) err is set and further
 * appends are ignored. */
typedef struct sbx__buf {
  char *p;
  size_t n, cap, max;
  int err;
} sbx__buf;
void sbx__buf_put(sbx__buf *b, const char *s, size_t n);
void sbx__buf_str(sbx__buf *b, const char *s);
void sbx__buf_int(sbx__buf *b, int64_t v);
/* A JSON string: quoted, escaped like jansson (", \, control characters),
 * invalid UTF-8 sequences replaced by U+FFFD. */
void sbx__buf_json_str(sbx__buf *b, const char *s, size_t n);
/* Sends b->p as the body (takes it; 500 after an err); type NULL means
 * application/json. */
int sbx__reply_buf(sbx__req *r, int status, sbx__buf *b, const char *type);

/* Parses r->body as a JSON object with caps (depth <= 32, size capped by
 * the route). Rejects fields not in allowed (NULL-terminated). On error a
 * 400 problem is set and NULL returned. */
json_t *sbx__body_object(sbx__req *r, const char *const *allowed);

/* ---- route table ---- */
typedef int (*sbx__handler)(sbx__req *r);
enum { SBX__BODY_NONE = 0, SBX__BODY_JSON = 1, SBX__BODY_UPLOAD = 2 };
typedef struct sbx__route {
  const char *method;
  const char *pattern;
  const char *perm; /* "public" = no authentication */
  int body;
  sbx__handler fn;
  const char *summary;
  int ok_status; /* documented success status */
} sbx__route;
extern const sbx__route sbx__routes[];
extern const size_t sbx__nroutes;
/* Matches method+path; returns the index or -1 (*path_known = 1 when the
 * path matched with another method: 405). Fills r->params. */
int sbx__route_match(sbx__req *r, const char *method, const char *path,
                     int *path_known);
/* The one authorization function: sets r->role or a 401/403/404 problem.
 * Returns 0 when the request may proceed. */
int sbx__authorize(sbx__req *r);
/* OpenAPI 3.1 document generated from the route table (caller frees). */
char *sbx__openapi_json(const sbx_server *s);

/* ---- authentication (auth.c) ---- */
/* Reads the Authorization header and fills r->who (kind NONE when absent).
 * Returns 0, or SBX_EAUTH / SBX_EEXPIRED for a bad credential. */
int sbx__authenticate(sbx__req *r);
/* API key "ak_<tenant>~<id>.<secret>": creates and stores it (hash only).
 * key_out >= 160 bytes. */
int sbx__apikey_create(sbx_store *st, const char *tenant, const char *user,
                       const char *project, const char *role,
                       int64_t expires_at, char *id_out, char *key_out);
int sbx__jwt_load_or_create(sbx_server *s);
void sbx__jwt_free(sbx_server *s);
/* Signs an access token for (tenant, user); tok_out >= 1024. */
int sbx__jwt_issue(sbx_server *s, const char *tenant, const char *user,
                   int64_t now, char *tok_out, size_t cap);
/* Verifies signature (alg fixed to EdDSA, kid must match) and claims. */
int sbx__jwt_verify(sbx_server *s, const char *tok, int64_t now,
                    char tenant[SBX_ID_MAX], char user[SBX_ID_MAX],
                    char jti[SBX_ID_MAX]);
json_t *sbx__jwks(const sbx_server *s);
/* Refresh tokens "rt_<tenant>~<id>.<secret>": issue (new family when
 * family == NULL) and rotate (reuse of a used token revokes the family). */
int sbx__refresh_issue(sbx_server *s, sbx_store *st, const char *tenant,
                       const char *user, const char *family, int64_t now,
                       char *tok_out);
int sbx__refresh_rotate(sbx_server *s, sbx_store *st, const char *tok,
                        int64_t now, char tenant[SBX_ID_MAX],
                        char user[SBX_ID_MAX], char *new_tok_out);
/* Argon2id. */
int sbx__password_hash(const char *pw, char out[160]);
int sbx__password_verify(const char *encoded, const char *pw);
/* base64url without padding; out needs 4*ceil(n/3)+1. */
size_t sbx__b64url(const void *in, size_t n, char *out);
/* Decodes; returns decoded length or -1. */
long sbx__unb64url(const char *in, size_t n, uint8_t *out, size_t cap);

/* ---- server-owned tables (db_ext.c) ---- */
int sbx__dbx_migrate(sbx_meta *m);
int sbx__dbx_tenant_role_set(sbx_meta *m, const char *t, const char *user,
                             const char *role);
int sbx__dbx_tenant_role_get(sbx_meta *m, const char *t, const char *user,
                             char role[SBX_KIND_MAX]);
int sbx__dbx_project_exists(sbx_meta *m, const char *t, const char *pid);
/* Paged lists: JSON arrays of up to limit items with id > cursor. */
int sbx__dbx_list(sbx_meta *m, const char *what, const char *t,
                  const char *scope, const char *cursor, int limit,
                  json_t *items);
/* The same list as JSON text: up to limit items, comma-separated, appended
 * to out (one more row is fetched: *more = 1 when it exists); cursor_out
 * receives the cursor of the last item appended (its first column). */
int sbx__dbx_list_text(sbx_meta *m, const char *what, const char *t,
                       const char *scope, const char *cursor, int limit,
                       sbx__buf *out, int *more, char cursor_out[SBX_ID_MAX]);
int sbx__dbx_job_insert(sbx_meta *m, const char *t, const char *id,
                        const char *project, const char *attack,
                        const char *model, const char *dataset,
                        const char *params_json, const char *user,
                        int64_t now);
int sbx__dbx_job_get(sbx_meta *m, const char *t, const char *project,
                     const char *id, json_t **out);
int sbx__dbx_job_cancel(sbx_meta *m, const char *t, const char *project,
                        const char *id, int64_t now);
int sbx__dbx_lockout_get(sbx_meta *m, const char *t, const char *user,
                         int64_t *failures, int64_t *locked_until);
int sbx__dbx_lockout_set(sbx_meta *m, const char *t, const char *user,
                         int64_t failures, int64_t locked_until);
int sbx__dbx_bootstrap_put(sbx_meta *m, const char *t, const char *user,
                           const uint8_t hash[32], int64_t expires);
/* Consumes a one-time bootstrap token: SBX_EAUTH when unknown/used. */
int sbx__dbx_bootstrap_take(sbx_meta *m, const char *t,
                            const uint8_t hash[32], int64_t now,
                            char user[SBX_ID_MAX]);
int sbx__dbx_refresh_insert(sbx_meta *m, const char *t, const char *id,
                            const char *family, const char *user,
                            const uint8_t hash[32], int64_t now,
                            int64_t expires);
int sbx__dbx_refresh_get(sbx_meta *m, const char *t, const char *id,
                         char family[SBX_ID_MAX], char user[SBX_ID_MAX],
                         uint8_t hash[32], int64_t *expires, int64_t *used,
                         int64_t *revoked);
/* Marks used iff unused and not revoked; SBX_ECONFLICT otherwise. */
int sbx__dbx_refresh_use(sbx_meta *m, const char *t, const char *id,
                         int64_t now);
int sbx__dbx_refresh_revoke_family(sbx_meta *m, const char *t,
                                   const char *family, int64_t now);
/* Who created an API key (srv_api_key_issuers); "" when not recorded. */
int sbx__dbx_apikey_issuer_set(sbx_meta *m, const char *t, const char *id,
                               const char *issuer);
int sbx__dbx_apikey_issuer_get(sbx_meta *m, const char *t, const char *id,
                               char issuer[SBX_ID_MAX]);
int sbx__dbx_apikey_set_expiry(sbx_meta *m, const char *t, const char *id,
                               int64_t expires_at);
int sbx__dbx_user_set_email(sbx_meta *m, const char *t, const char *user,
                            const uint8_t index[32], const uint8_t *sealed,
                            size_t sealed_len);
int sbx__dbx_password_set(sbx_meta *m, const char *t, const char *user,
                          const char *hash);

/* ---- in-process authentication cache (authcache.c) ---- */
#define SBX__AC_TTL_S 5.0 /* seconds an entry may be used at most */
typedef struct sbx__ac_apikey {
  char tenant[SBX_ID_MAX], id[SBX_ID_MAX], user[SBX_ID_MAX];
  char project[SBX_ID_MAX], issuer[SBX_ID_MAX];
  int role;
  int64_t expires_at; /* 0 = never */
} sbx__ac_apikey;
struct sbx__authcache *sbx__authcache_new(void);
void sbx__authcache_free(struct sbx__authcache *c);
/* Every cached entry becomes stale at once. Called after any change this
 * process commits to API keys, users, tenant roles or memberships. */
void sbx__authcache_invalidate(void);
uint64_t sbx__authcache_epoch(void);
int sbx__ac_key_get(struct sbx__authcache *c, const uint8_t h[SBX_SHA256_LEN],
                    int64_t now, sbx__ac_apikey *out, int *touch);
void sbx__ac_key_put(struct sbx__authcache *c, const uint8_t h[SBX_SHA256_LEN],
                     const sbx__ac_apikey *k, uint64_t epoch,
                     int64_t last_touch);
/* SBX_OK when the tenant is active and the user exists and is enabled
 * (*trole = tenant role bit, 0 none); SBX_EAUTH otherwise. */
int sbx__ac_user(sbx__req *r, const char *tenant, const char *user,
                 int *trole);
/* The user's membership role bit in project (0 none). */
int sbx__ac_member(sbx__req *r, const char *tenant, const char *project,
                   const char *user);

/* ---- OIDC login (oidc.c) ---- */
int sbx__oidc_init(sbx_server *s);  /* no-op when oidc_issuer is unset */
void sbx__oidc_free(sbx_server *s);
int sbx__oidc_h_login(sbx__req *r);
int sbx__oidc_h_callback(sbx__req *r);
/* The ID-token check on its own (also used by the tests): signature with
 * RS256 only against the cached JWKS (refetched on an unknown kid, rate
 * limited), iss, aud/azp, exp/iat/nbf with leeway, nonce. *claims_out
 * (caller decrefs) on success. */
int sbx__oidc_verify_id_token(struct sbx__oidc *o, const char *tok,
                              const char *nonce, int64_t now,
                              json_t **claims_out);
/* A verifier without the server, for tests: issuer, client id, JWKS URI. */
struct sbx__oidc *sbx__oidc_new(const char *issuer, const char *client_id,
                                const char *jwks_uri, int leeway_s,
                                int jwks_min_refresh_s);
void sbx__oidc_delete(struct sbx__oidc *o);

/* ---- browser sessions and CSRF (session.c) ---- */
int sbx__auth_migrate(sbx_meta *m); /* the tables of oidc/session/totp */
/* Cookie "__Host-sbx_session": fills r->who (SBX__CRED_SESSION) when the
 * request carries a valid one. SBX_OK with kind NONE when absent. */
int sbx__session_authenticate(sbx__req *r);
/* For state-changing requests authenticated by the cookie: Origin and the
 * X-CSRF-Token header. Returns 0 when allowed, else sets a 403. */
int sbx__session_csrf_check(sbx__req *r);
/* A new session for (tenant, user): deletes the one the request carried
 * (rotation), adds the Set-Cookie header, writes the CSRF token (65). */
int sbx__session_issue(sbx__req *r, const char *tenant, const char *user,
                       char csrf_out[65]);
int sbx__session_h_get(sbx__req *r);
int sbx__session_h_delete(sbx__req *r);
/* Value of cookie name in the request (NULL when absent); out >= cap. */
const char *sbx__cookie(sbx__req *r, const char *name, char *out,
                        size_t cap);
/* Origin check for cookie-setting logins: 0 when absent or allowed. */
int sbx__origin_ok(sbx__req *r);

/* ---- TOTP, RFC 6238 (totp.c) ---- */
/* HOTP value of counter with HMAC-SHA1, digits 6..8. */
int sbx__totp_code(const uint8_t *key, size_t keylen, uint64_t counter,
                   int digits, uint32_t *code);
/* 1 when the user has TOTP enabled. */
int sbx__totp_enabled(sbx__req *r, const char *tenant, const char *user);
/* Checks code at now (+-1 step); a step at or before the last accepted one
 * is refused (replay). SBX_OK or SBX_EAUTH. */
int sbx__totp_check(sbx__req *r, const char *tenant, const char *user,
                    const char *code, int64_t now);
int sbx__totp_h_enroll(sbx__req *r);
int sbx__totp_h_confirm(sbx__req *r);
/* RFC 4648 base32 without padding; out needs 8*ceil(n/5)/5+1. */
void sbx__base32(const uint8_t *in, size_t n, char *out);

/* ---- metrics (metrics.c) ---- */
int sbx__metrics_init(sbx_server *s); /* reads metrics_token_file */
int sbx__metrics_token_ok(sbx__req *r);
void sbx__metrics_request(sbx_server *s, int route, int status,
                          double seconds);
int sbx__metrics_h(sbx__req *r);

/* ---- misc ---- */
int64_t sbx__now(void);
double sbx__mono(void); /* CLOCK_MONOTONIC seconds */
/* Random lower-case hex id of 2n chars. */
int sbx__rand_hex(char *out, size_t nbytes);
/* Object names: 1..128 of [A-Za-z0-9._-], not starting with '.'. */
int sbx__name_valid(const char *s);
int sbx__tls_ensure(const char *cert_path, const char *key_path,
                    char **cert_pem, char **key_pem, char fp[96]);
int sbx__store_open(const sbx_server_params *p, const char *master_spec,
                    sbx_store **out);
void sbx__audit(sbx__req *r, const char *action, const char *target);

#endif
