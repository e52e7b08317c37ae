/*
 * oidc.c - login through an external OpenID provider: authorization code
 * flow with PKCE (S256), discovery and JWKS over libcurl (GnuTLS), ID
 * tokens verified with RS256 only (the algorithm is ours, never the
 * token's), group claim -> role mapping, then our own session.
 *
 *   GET /api/v1/auth/oidc/login     302 to the IdP; state, nonce and the
 *                                   PKCE verifier are kept server-side
 *                                   (hashed state, single use, 10 min) and
 *                                   bound to this browser by a cookie
 *   GET /api/v1/auth/oidc/callback  ?code&state: consumes the state, checks
 *                                   the binding cookie, exchanges the code
 *                                   (code_verifier), verifies the ID token,
 *                                   maps groups, issues our tokens + cookie
 */
#include <curl/curl.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oidc.h"

#include "auth.h"
#include "authcache.h"
#include "dbx.h"
#include "log.h"
#include "rbac.h"
#include "reply.h"
#include "sbx/sql.h"
#include "session.h"
#include "state.h"
#include "util.h"

#define OIDC_URL_MAX 1024
#define OIDC_MAX_KEYS 16
#define OIDC_MAX_ROLEMAP 32
#define OIDC_STATE_TTL 600
#define OIDC_RESP_MAX (1 << 20)
#define OIDC_TOKEN_MAX 16384
#define COOKIE_BIND "__Host-sbx_oidc"

typedef struct oidc_key {
  char kid[128];
  gnutls_pubkey_t pub;
  unsigned bits;
} oidc_key;

struct sbx__oidc {
  pthread_mutex_t mu;
  char issuer[OIDC_URL_MAX], client_id[256], secret[512];
  char redirect_uri[OIDC_URL_MAX], scopes[256], tenant[SBX_ID_MAX];
  char groups_claim[128], ca_file[SBX_PATH_MAX];
  struct {
    char group[128];
    int role;
  } map[OIDC_MAX_ROLEMAP];
  int nmap;
  int leeway, min_refresh;
  int auth_post; /* client_secret_post instead of client_secret_basic */
  /* discovery */
  int64_t discovered_at;
  char auth_ep[OIDC_URL_MAX], token_ep[OIDC_URL_MAX], jwks_uri[OIDC_URL_MAX];
  /* JWKS cache */
  oidc_key keys[OIDC_MAX_KEYS];
  int nkeys;
  double jwks_tried_at; /* monotonic; < 0: never */
};

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* https, or http to a loopback host (tests, a local IdP) only. */
static int url_ok(const char *u) {
  if (!u || strlen(u) >= OIDC_URL_MAX)
    return 0;
  if (!strncmp(u, "https://", 8))
    return 1;
  static const char *const lo[] = {"http://127.0.0.1:", "http://127.0.0.1/",
                                   "http://localhost:", "http://localhost/",
                                   "http://[::1]:",     "http://[::1]/"};
  for (size_t i = 0; i < sizeof lo / sizeof lo[0]; i++)
    if (!strncmp(u, lo[i], strlen(lo[i])))
      return 1;
  return 0;
}

/* ---- HTTP client ---- */

typedef struct buf {
  char *p;
  size_t n;
} buf;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud) {
  buf *b = ud;
  size_t k = sz * nm;
  if (b->n + k > OIDC_RESP_MAX)
    return 0;
  char *np = realloc(b->p, b->n + k + 1);
  if (!np)
    return 0;
  memcpy(np + b->n, p, k);
  b->p = np;
  b->n += k;
  b->p[b->n] = 0;
  return k;
}

/* GET (form == NULL) or POST a form with HTTP Basic client auth. Returns
 * the parsed JSON object of a 200 answer, else NULL (*status set). */
static json_t *fetch_json(struct sbx__oidc *o, const char *url,
                          const char *form, long *status) {
  *status = 0;
  if (!url_ok(url))
    return NULL;
  CURL *c = curl_easy_init();
  if (!c)
    return NULL;
  buf b = {NULL, 0};
  struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http"); /* url_ok */
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (o->ca_file[0])
    curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  char *uid = NULL, *pw = NULL;
  if (form && o->auth_post) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
  } else if (form) {
    /* client_secret_basic: both parts form-urlencoded (RFC 6749 2.3.1) */
    uid = curl_easy_escape(c, o->client_id, 0);
    pw = curl_easy_escape(c, o->secret, 0);
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, uid ? uid : "");
    curl_easy_setopt(c, CURLOPT_PASSWORD, pw ? pw : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
  }
  CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  curl_free(uid);
  if (pw) {
    sbx_memwipe(pw, strlen(pw));
    curl_free(pw);
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_t *j = NULL;
  if (rc == CURLE_OK && *status == 200 && b.p) {
    json_error_t e;
    j = json_loadb(b.p, b.n, JSON_REJECT_DUPLICATES, &e);
    if (j && !json_is_object(j)) {
      json_decref(j);
      j = NULL;
    }
  } else if (rc != CURLE_OK) {
    sbx__log("oidc: %s: %s", url, curl_easy_strerror(rc));
  }
  if (b.p)
    sbx_memwipe(b.p, b.n);
  free(b.p);
  return j;
}

/* ---- discovery and JWKS (o->mu held) ---- */

static int copy_url(json_t *d, const char *k, char out[OIDC_URL_MAX]) {
  const char *v = json_string_value(json_object_get(d, k));
  if (!url_ok(v))
    return SBX_EFORMAT;
  snprintf(out, OIDC_URL_MAX, "%s", v);
  return SBX_OK;
}

static int discover_locked(struct sbx__oidc *o) {
  int64_t now = sbx__now();
  if (o->discovered_at && now - o->discovered_at < 3600)
    return SBX_OK;
  char url[OIDC_URL_MAX + 64];
  size_t n = strlen(o->issuer);
  snprintf(url, sizeof url, "%s%s.well-known/openid-configuration", o->issuer,
           n && o->issuer[n - 1] == '/' ? "" : "/");
  long st;
  json_t *d = fetch_json(o, url, NULL, &st);
  if (!d)
    return o->discovered_at ? SBX_OK : SBX_EIO; /* keep the old one */
  int rc = SBX_OK;
  const char *iss = json_string_value(json_object_get(d, "issuer"));
  json_t *pk = json_object_get(d, "code_challenge_methods_supported");
  char a[OIDC_URL_MAX], t[OIDC_URL_MAX], k[OIDC_URL_MAX];
  if (!iss || strcmp(iss, o->issuer)) /* OIDC Discovery 4.3 */
    rc = SBX_EFORMAT;
  if (!rc)
    rc = copy_url(d, "authorization_endpoint", a);
  if (!rc)
    rc = copy_url(d, "token_endpoint", t);
  if (!rc)
    rc = copy_url(d, "jwks_uri", k);
  if (!rc && json_is_array(pk)) {
    int s256 = 0;
    size_t i;
    json_t *v;
    json_array_foreach(pk, i, v) s256 |=
        json_is_string(v) && !strcmp(json_string_value(v), "S256");
    if (!s256)
      rc = SBX_EFORMAT;
  }
  json_decref(d);
  if (rc) {
    sbx__log("oidc: discovery document of %s refused", o->issuer);
    return rc;
  }
  memcpy(o->auth_ep, a, sizeof a);
  memcpy(o->token_ep, t, sizeof t);
  memcpy(o->jwks_uri, k, sizeof k);
  o->discovered_at = now;
  return SBX_OK;
}

static int b64_bin(json_t *k, const char *name, uint8_t *out, size_t cap,
                   gnutls_datum_t *d) {
  const char *s = json_string_value(json_object_get(k, name));
  long n = s ? sbx__unb64url(s, strlen(s), out, cap) : -1;
  if (n <= 0)
    return -1;
  d->data = out;
  d->size = (unsigned)n;
  return 0;
}

static void keys_free(oidc_key *k, int n) {
  for (int i = 0; i < n; i++)
    if (k[i].pub)
      gnutls_pubkey_deinit(k[i].pub);
}

/* Replaces the cache with the IdP's current RSA signing keys. */
static int jwks_fetch_locked(struct sbx__oidc *o) {
  o->jwks_tried_at = mono();
  long st;
  json_t *j = fetch_json(o, o->jwks_uri, NULL, &st);
  json_t *arr = j ? json_object_get(j, "keys") : NULL;
  if (!json_is_array(arr)) {
    json_decref(j);
    return SBX_EIO;
  }
  oidc_key nk[OIDC_MAX_KEYS];
  int n = 0;
  size_t i;
  json_t *k;
  json_array_foreach(arr, i, k) {
    if (n >= OIDC_MAX_KEYS)
      break;
    const char *kty = json_string_value(json_object_get(k, "kty"));
    const char *use = json_string_value(json_object_get(k, "use"));
    const char *alg = json_string_value(json_object_get(k, "alg"));
    const char *kid = json_string_value(json_object_get(k, "kid"));
    if (!kty || strcmp(kty, "RSA") || (use && strcmp(use, "sig")) ||
        (alg && strcmp(alg, "RS256")) || (kid && strlen(kid) >= 128))
      continue;
    uint8_t nb[1024], eb[16];
    gnutls_datum_t m, e;
    if (b64_bin(k, "n", nb, sizeof nb, &m) ||
        b64_bin(k, "e", eb, sizeof eb, &e))
      continue;
    memset(&nk[n], 0, sizeof nk[n]);
    snprintf(nk[n].kid, sizeof nk[n].kid, "%s", kid ? kid : "");
    if (gnutls_pubkey_init(&nk[n].pub) < 0)
      continue;
    unsigned bits = 0;
    if (gnutls_pubkey_import_rsa_raw(nk[n].pub, &m, &e) < 0 ||
        gnutls_pubkey_get_pk_algorithm(nk[n].pub, &bits) != GNUTLS_PK_RSA ||
        bits < 2048) {
      gnutls_pubkey_deinit(nk[n].pub);
      continue;
    }
    nk[n].bits = bits;
    n++;
  }
  json_decref(j);
  keys_free(o->keys, o->nkeys);
  memcpy(o->keys, nk, sizeof nk[0] * (size_t)n);
  o->nkeys = n;
  return SBX_OK;
}

static oidc_key *key_find(struct sbx__oidc *o, const char *kid) {
  if (!kid)
    return o->nkeys == 1 ? &o->keys[0] : NULL;
  for (int i = 0; i < o->nkeys; i++)
    if (!strcmp(o->keys[i].kid, kid))
      return &o->keys[i];
  return NULL;
}

/* ---- ID token ---- */

static json_t *decode_json(const char *p, size_t n) {
  uint8_t *b = malloc(n + 1);
  if (!b)
    return NULL;
  long len = sbx__unb64url(p, n, b, n + 1);
  json_t *j = NULL;
  if (len > 0) {
    json_error_t e;
    j = json_loadb((const char *)b, (size_t)len, JSON_REJECT_DUPLICATES, &e);
    if (j && !json_is_object(j)) {
      json_decref(j);
      j = NULL;
    }
  }
  free(b);
  return j;
}

static int aud_ok(struct sbx__oidc *o, json_t *p) {
  json_t *aud = json_object_get(p, "aud");
  const char *azp = json_string_value(json_object_get(p, "azp"));
  if (json_is_string(aud))
    return !strcmp(json_string_value(aud), o->client_id) &&
           (!azp || !strcmp(azp, o->client_id));
  if (!json_is_array(aud) || !json_array_size(aud))
    return 0;
  int found = 0;
  size_t i;
  json_t *v;
  json_array_foreach(aud, i, v) found |=
      json_is_string(v) && !strcmp(json_string_value(v), o->client_id);
  /* several audiences: azp must be us (OIDC Core 3.1.3.7) */
  if (json_array_size(aud) > 1 && (!azp || strcmp(azp, o->client_id)))
    return 0;
  return found && (!azp || !strcmp(azp, o->client_id));
}

int sbx__oidc_verify_id_token(struct sbx__oidc *o, const char *tok,
                              const char *nonce, int64_t now,
                              json_t **claims_out) {
  *claims_out = NULL;
  if (!o || !tok || !nonce || !*nonce)
    return SBX_EAUTH;
  size_t n = strnlen(tok, OIDC_TOKEN_MAX + 1);
  if (n > OIDC_TOKEN_MAX)
    return SBX_EAUTH;
  const char *d1 = memchr(tok, '.', n);
  const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok)) : NULL;
  if (!d1 || !d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok)))
    return SBX_EAUTH;
  json_t *h = decode_json(tok, (size_t)(d1 - tok));
  if (!h)
    return SBX_EAUTH;
  const char *alg = json_string_value(json_object_get(h, "alg"));
  json_t *kidj = json_object_get(h, "kid");
  char kid[128] = "";
  int has_kid = json_is_string(kidj);
  int bad = !alg || strcmp(alg, "RS256") || (kidj && !has_kid) ||
            json_object_get(h, "crit") || json_object_get(h, "jku") ||
            json_object_get(h, "jwk") || json_object_get(h, "x5u");
  if (!bad && has_kid) {
    if (strlen(json_string_value(kidj)) >= sizeof kid)
      bad = 1;
    else
      snprintf(kid, sizeof kid, "%s", json_string_value(kidj));
  }
  json_decref(h);
  if (bad)
    return SBX_EAUTH;
  uint8_t sig[1024];
  long sl = sbx__unb64url(d2 + 1, n - (size_t)(d2 + 1 - tok), sig, sizeof sig);
  if (sl <= 0)
    return SBX_EAUTH;
  gnutls_datum_t data = {(unsigned char *)tok, (unsigned)(d2 - tok)};
  gnutls_datum_t sd = {sig, (unsigned)sl};
  pthread_mutex_lock(&o->mu);
  const char *want = has_kid ? kid : NULL;
  oidc_key *k = o->jwks_tried_at >= 0 ? key_find(o, want) : NULL;
  /* unknown kid: the IdP may have rotated; refetch, at most once per
   * min_refresh seconds (a flood of bogus kids costs one fetch) */
  if (!k && (o->jwks_tried_at < 0 ||
             mono() - o->jwks_tried_at >= (double)o->min_refresh)) {
    if (!o->jwks_uri[0])
      discover_locked(o);
    if (o->jwks_uri[0])
      jwks_fetch_locked(o);
    k = key_find(o, want);
  }
  int rc = SBX_EAUTH;
  if (k && (unsigned long)sl * 8 == k->bits &&
      gnutls_pubkey_verify_data2(k->pub, GNUTLS_SIGN_RSA_SHA256, 0, &data,
                                 &sd) >= 0)
    rc = SBX_OK;
  pthread_mutex_unlock(&o->mu);
  if (rc)
    return rc;
  json_t *p = decode_json(d1 + 1, (size_t)(d2 - d1 - 1));
  if (!p)
    return SBX_EAUTH;
  const char *iss = json_string_value(json_object_get(p, "iss"));
  const char *sub = json_string_value(json_object_get(p, "sub"));
  const char *tn = json_string_value(json_object_get(p, "nonce"));
  json_t *exp = json_object_get(p, "exp"), *iat = json_object_get(p, "iat");
  json_t *nbf = json_object_get(p, "nbf");
  int64_t L = o->leeway;
  rc = SBX_EAUTH;
  if (iss && sub && *sub && strlen(sub) <= 255 && tn && json_is_integer(exp) &&
      json_is_integer(iat) && (!nbf || json_is_integer(nbf)) &&
      !strcmp(iss, o->issuer) && aud_ok(o, p) && strlen(tn) == strlen(nonce) &&
      sbx_ct_equal(tn, nonce, strlen(nonce))) {
    int64_t e = json_integer_value(exp), i = json_integer_value(iat);
    if (e + L <= now)
      rc = SBX_EEXPIRED;
    else if (i > now + L || i < now - OIDC_STATE_TTL - L ||
             (nbf && json_integer_value(nbf) > now + L))
      rc = SBX_EAUTH;
    else
      rc = SBX_OK;
  }
  if (rc)
    json_decref(p);
  else
    *claims_out = p;
  return rc;
}

/* ---- setup ---- */

static struct sbx__oidc *oidc_alloc(void) {
  struct sbx__oidc *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  pthread_mutex_init(&o->mu, NULL);
  o->jwks_tried_at = -1;
  return o;
}

struct sbx__oidc *sbx__oidc_new(const char *issuer, const char *client_id,
                                const char *jwks_uri, int leeway_s,
                                int jwks_min_refresh_s) {
  struct sbx__oidc *o = oidc_alloc();
  if (!o)
    return NULL;
  snprintf(o->issuer, sizeof o->issuer, "%s", issuer);
  snprintf(o->client_id, sizeof o->client_id, "%s", client_id);
  snprintf(o->jwks_uri, sizeof o->jwks_uri, "%s", jwks_uri ? jwks_uri : "");
  o->leeway = leeway_s;
  o->min_refresh = jwks_min_refresh_s;
  return o;
}

void sbx__oidc_delete(struct sbx__oidc *o) {
  if (!o)
    return;
  keys_free(o->keys, o->nkeys);
  sbx_memwipe(o->secret, sizeof o->secret);
  pthread_mutex_destroy(&o->mu);
  free(o);
}

static int read_secret(const char *spec, char *out, size_t cap) {
  if (!spec)
    return SBX_EINVAL;
  if (!strncmp(spec, "env:", 4)) {
    const char *v = getenv(spec + 4);
    if (!v || !*v || strlen(v) >= cap)
      return SBX_EINVAL;
    snprintf(out, cap, "%s", v);
    return SBX_OK;
  }
  if (!strncmp(spec, "file:", 5)) {
    FILE *f = fopen(spec + 5, "r");
    if (!f)
      return SBX_EIO;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
      out[--n] = 0;
    return n ? SBX_OK : SBX_EINVAL;
  }
  return SBX_EINVAL;
}

static int parse_role_map(struct sbx__oidc *o, const char *spec) {
  const char *p = spec ? spec : "";
  while (*p) {
    size_t n = strcspn(p, ",");
    char item[192];
    if (n >= sizeof item || o->nmap >= OIDC_MAX_ROLEMAP)
      return SBX_EINVAL;
    memcpy(item, p, n);
    item[n] = 0;
    p += n + (p[n] == ',');
    char *eq = strrchr(item, '=');
    if (!eq || eq == item)
      return SBX_EINVAL;
    *eq = 0;
    int role = sbx__role_bit(eq + 1);
    if (!role || strlen(item) >= sizeof o->map[0].group)
      return SBX_EINVAL;
    memcpy(o->map[o->nmap].group, item, strlen(item) + 1);
    o->map[o->nmap++].role = role;
  }
  return o->nmap ? SBX_OK : SBX_EINVAL;
}

int sbx__oidc_init(sbx_server *s) {
  const sbx_server_params *p = &s->p;
  if (!p->oidc_issuer || !*p->oidc_issuer)
    return SBX_OK;
  struct sbx__oidc *o = oidc_alloc();
  if (!o)
    return SBX_ENOMEM;
  int rc = SBX_OK;
  const char *why = NULL;
  if (!url_ok(p->oidc_issuer))
    why = "oidc_issuer must be https (http only on loopback)";
  else if (!p->oidc_client_id || !*p->oidc_client_id ||
           strlen(p->oidc_client_id) >= sizeof o->client_id)
    why = "oidc_client_id required";
  else if (!p->oidc_redirect_uri ||
           strncmp(p->oidc_redirect_uri, "https://", 8))
    why = "oidc_redirect_uri (https) required";
  else if (!p->oidc_tenant || !sbx_id_valid(p->oidc_tenant))
    why = "oidc_tenant required";
  else if (read_secret(p->oidc_client_secret_spec, o->secret, sizeof o->secret))
    why = "oidc_client_secret_spec: env:NAME or file:PATH, not empty";
  else if (parse_role_map(o, p->oidc_role_map))
    why = "oidc_role_map: group=role[,group=role...]";
  else if (p->oidc_token_auth && strcmp(p->oidc_token_auth, "basic") &&
           strcmp(p->oidc_token_auth, "post"))
    why = "oidc_token_auth: basic or post";
  if (why) {
    sbx__log("%s", why);
    sbx__oidc_delete(o);
    return SBX_EINVAL;
  }
  o->auth_post = p->oidc_token_auth && !strcmp(p->oidc_token_auth, "post");
  snprintf(o->issuer, sizeof o->issuer, "%s", p->oidc_issuer);
  snprintf(o->client_id, sizeof o->client_id, "%s", p->oidc_client_id);
  snprintf(o->redirect_uri, sizeof o->redirect_uri, "%s", p->oidc_redirect_uri);
  snprintf(o->scopes, sizeof o->scopes, "%s",
           p->oidc_scopes ? p->oidc_scopes : "openid");
  if (!strstr(o->scopes, "openid"))
    rc = SBX_EINVAL;
  snprintf(o->tenant, sizeof o->tenant, "%s", p->oidc_tenant);
  snprintf(o->groups_claim, sizeof o->groups_claim, "%s",
           p->oidc_groups_claim ? p->oidc_groups_claim : "groups");
  snprintf(o->ca_file, sizeof o->ca_file, "%s",
           p->oidc_ca_file ? p->oidc_ca_file : "");
  o->leeway = p->oidc_leeway_s > 300 ? 300 : p->oidc_leeway_s;
  o->min_refresh = p->oidc_jwks_min_refresh_s;
  if (rc) {
    sbx__log("oidc_scopes must include openid");
    sbx__oidc_delete(o);
    return rc;
  }
  /* once, before the worker threads exist (refcounted by libcurl) */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    sbx__oidc_delete(o);
    return SBX_ENOMEM;
  }
  s->oidc = o; /* discovery happens on the first login (IdP may be down) */
  return SBX_OK;
}

void sbx__oidc_free(sbx_server *s) {
  if (!s->oidc)
    return;
  sbx__oidc_delete(s->oidc);
  s->oidc = NULL;
  curl_global_cleanup();
}

/* ---- state storage ---- */

static sbx_meta *M(sbx__req *r) {
  return sbx_store_meta(r->st);
}

static int state_put(sbx__req *r, const char *state, const char *binding,
                     const char *nonce, const char *verifier, int64_t now) {
  uint8_t sh[32], bh[32];
  int rc = sbx_store_keyed_hash(r->st, "oidc-state", state, strlen(state), sh);
  if (!rc)
    rc = sbx_store_keyed_hash(r->st, "oidc-binding", binding, strlen(binding),
                              bh);
  const char *t = r->srv->oidc->tenant;
  if (!rc) {
    sbx_sql_val v0[] = {SBX_SQL_T(t), SBX_SQL_I(now)};
    sbx_sql_exec(M(r),
                 "DELETE FROM srv_oidc_states WHERE tenant_id = $1 AND "
                 "expires_at <= $2",
                 v0, 2, NULL, NULL, NULL);
    sbx_sql_val v[] = {SBX_SQL_T(t),        SBX_SQL_B(sh, 32),
                       SBX_SQL_B(bh, 32),   SBX_SQL_T(nonce),
                       SBX_SQL_T(verifier), SBX_SQL_I(now + OIDC_STATE_TTL)};
    rc = sbx_sql_exec(M(r),
                      "INSERT INTO srv_oidc_states (tenant_id, state_hash, "
                      "binding_hash, nonce, verifier, expires_at, used_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6, 0)",
                      v, 6, NULL, NULL, NULL);
  }
  return rc;
}

typedef struct state_row {
  uint8_t bh[32];
  char nonce[128], verifier[128];
  int64_t expires, used;
  int found;
} state_row;

static int fill_state(void *ctx, const sbx_sql_row *row) {
  state_row *s = ctx;
  s->found = 1;
  if (sbx_sql_col_fixed(row, 0, s->bh, 32) ||
      sbx_sql_col_text(row, 1, s->nonce, sizeof s->nonce) ||
      sbx_sql_col_text(row, 2, s->verifier, sizeof s->verifier))
    return SBX_EFORMAT;
  s->expires = sbx_sql_col_int(row, 3);
  s->used = sbx_sql_col_int(row, 4);
  return 0;
}

/* Single use: marks the state used and returns its row; SBX_EAUTH when
 * unknown, used or expired. */
static int state_take(sbx__req *r, const char *state, int64_t now,
                      state_row *out) {
  memset(out, 0, sizeof *out);
  uint8_t sh[32];
  int rc = sbx_store_keyed_hash(r->st, "oidc-state", state, strlen(state), sh);
  if (rc)
    return rc;
  const char *t = r->srv->oidc->tenant;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_B(sh, 32), SBX_SQL_I(now)};
  int64_t changes = 0;
  rc = sbx_sql_exec(M(r),
                    "UPDATE srv_oidc_states SET used_at = $3 WHERE tenant_id "
                    "= $1 AND state_hash = $2 AND used_at = 0 AND expires_at "
                    "> $3",
                    v, 3, NULL, NULL, &changes);
  if (rc)
    return rc;
  if (changes != 1)
    return SBX_EAUTH;
  rc = sbx_sql_exec(M(r),
                    "SELECT binding_hash, nonce, verifier, expires_at, used_at "
                    "FROM srv_oidc_states WHERE tenant_id = $1 AND "
                    "state_hash = $2",
                    v, 2, fill_state, out, NULL);
  return rc ? rc : (out->found ? SBX_OK : SBX_EAUTH);
}

/* ---- handlers ---- */

static int not_configured(sbx__req *r) {
  return sbx__problem(r, 404, "Not Found", "OIDC login is not configured");
}

static int rand_b64(char *out, size_t nbytes) {
  uint8_t b[48];
  if (nbytes > sizeof b || sbx_random(b, nbytes))
    return SBX_ECRYPTO;
  sbx__b64url(b, nbytes, out);
  sbx_memwipe(b, sizeof b);
  return SBX_OK;
}

int sbx__oidc_h_login(sbx__req *r) {
  struct sbx__oidc *o = r->srv->oidc;
  if (!o)
    return not_configured(r);
  char auth_ep[OIDC_URL_MAX];
  pthread_mutex_lock(&o->mu);
  int rc = discover_locked(o);
  snprintf(auth_ep, sizeof auth_ep, "%s", o->auth_ep);
  pthread_mutex_unlock(&o->mu);
  if (rc)
    return sbx__problem(r, 502, "Bad Gateway",
                        "identity provider discovery failed");
  char state[72], nonce[72], verifier[72], binding[72], chal[48];
  uint8_t d[SBX_SHA256_LEN];
  rc = rand_b64(state, 32);
  if (!rc)
    rc = rand_b64(nonce, 32);
  if (!rc)
    rc = rand_b64(verifier, 32); /* 43 chars: RFC 7636 4.1 */
  if (!rc)
    rc = rand_b64(binding, 32);
  if (!rc)
    rc = sbx_sha256(verifier, strlen(verifier), d);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__b64url(d, sizeof d, chal);
  rc = state_put(r, state, binding, nonce, verifier, sbx__now());
  if (rc)
    return sbx__problem_rc(r, rc);
  CURL *c = curl_easy_init();
  char *cid = c ? curl_easy_escape(c, o->client_id, 0) : NULL;
  char *ru = c ? curl_easy_escape(c, o->redirect_uri, 0) : NULL;
  char *sc = c ? curl_easy_escape(c, o->scopes, 0) : NULL;
  char loc[SBX__HDR_VALUE_MAX];
  int n = -1;
  if (cid && ru && sc)
    n = snprintf(loc, sizeof loc,
                 "%s%cresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s"
                 "&state=%s&nonce=%s&code_challenge=%s&code_challenge_method="
                 "S256",
                 auth_ep, strchr(auth_ep, '?') ? '&' : '?', cid, ru, sc, state,
                 nonce, chal);
  curl_free(cid);
  curl_free(ru);
  curl_free(sc);
  if (c)
    curl_easy_cleanup(c);
  if (n < 0 || (size_t)n >= sizeof loc)
    return sbx__problem(r, 500, "Internal Server Error", "redirect too long");
  char cookie[200];
  /* Lax: the IdP's redirect back is a cross-site top-level navigation */
  snprintf(cookie, sizeof cookie,
           COOKIE_BIND "=%s; Path=/; Max-Age=%d; Secure; HttpOnly; "
                       "SameSite=Lax",
           binding, OIDC_STATE_TTL);
  sbx__add_header(r, "Location", loc);
  sbx__add_header(r, "Set-Cookie", cookie);
  return sbx__reply_json(r, 302, json_pack("{s:s}", "location", loc));
}

static int qarg_ok(const char *v, size_t max) {
  size_t n = v ? strlen(v) : 0;
  if (!n || n > max)
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f)
      return 0;
  return 1;
}

/* Highest role among the mapped groups of the claim (array of strings or
 * a space/comma separated string); 0 when none maps. */
static int map_role(struct sbx__oidc *o, json_t *claims) {
  json_t *g = json_object_get(claims, o->groups_claim);
  int role = 0;
  for (int m = 0; m < o->nmap; m++) {
    int hit = 0;
    if (json_is_array(g)) {
      size_t i;
      json_t *v;
      json_array_foreach(g, i, v) hit |=
          json_is_string(v) && !strcmp(json_string_value(v), o->map[m].group);
    } else if (json_is_string(g)) {
      const char *s = json_string_value(g);
      size_t gl = strlen(o->map[m].group);
      while (*s) {
        size_t n = strcspn(s, " ,");
        hit |= n == gl && !strncmp(s, o->map[m].group, n);
        s += n;
        s += strspn(s, " ,");
      }
    }
    if (hit && o->map[m].role > role)
      role = o->map[m].role; /* role bits grow with privilege */
  }
  return role;
}

/* The local user of (iss, sub): "oidc-" + 32 hex of SHA-256(iss 0 sub).
 * Never linked to a local account by e-mail. */
static int upsert_user(sbx__req *r, struct sbx__oidc *o, json_t *claims,
                       int role, char uid[SBX_ID_MAX]) {
  const char *sub = json_string_value(json_object_get(claims, "sub"));
  const char *email = json_string_value(json_object_get(claims, "email"));
  char key[OIDC_URL_MAX + 300];
  int kn = snprintf(key, sizeof key, "%s%c%s", o->issuer, 0, sub);
  uint8_t d[SBX_SHA256_LEN];
  char hex[65];
  sbx_sha256(key, (size_t)kn, d);
  sbx_hex(d, sizeof d, hex);
  snprintf(uid, SBX_ID_MAX, "oidc-%.32s", hex);
  sbx_meta *m = sbx_store_meta(r->st);
  sbx_user u;
  int rc = sbx_meta_user_get(m, o->tenant, uid, &u);
  if (!rc && u.disabled)
    return SBX_EPERM;
  rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  if (sbx_meta_user_get(m, o->tenant, uid, &u) == SBX_OK) {
    rc = SBX_OK;
  } else {
    memset(&u, 0, sizeof u);
    snprintf(u.id, sizeof u.id, "%s", uid);
    u.created_at = sbx__now();
    if (!email || strlen(email) > 254)
      email = "";
    char ctx[96];
    snprintf(ctx, sizeof ctx, "users.email|%s", uid);
    rc = sbx_store_blind_index(r->st, o->tenant, "email-index-oidc", key,
                               (size_t)kn, u.email_index);
    if (!rc)
      rc = sbx_store_field_seal(r->st, o->tenant, ctx, email, strlen(email),
                                u.email_sealed);
    u.email_sealed_len = strlen(email) + SBX_SEAL_OVERHEAD;
    if (!rc)
      rc = sbx_meta_user_insert(m, o->tenant, &u);
  }
  /* the IdP's groups are the truth: the role follows them on each login */
  if (!rc)
    rc = sbx__dbx_tenant_role_set(m, o->tenant, uid, sbx__role_name(role));
  if (!rc)
    rc = sbx_meta_audit_append(m, o->tenant, sbx__now(), uid, "auth.oidc_login",
                               sbx__role_name(role), NULL);
  if (rc) {
    sbx_meta_rollback(m);
    return rc;
  }
  rc = sbx_meta_commit(m);
  sbx__authcache_invalidate(); /* the role may have changed */
  return rc;
}

static int refuse(sbx__req *r, const char *why) {
  return sbx__problem(r, 401, "Unauthorized", why);
}

int sbx__oidc_h_callback(sbx__req *r) {
  struct sbx__oidc *o = r->srv->oidc;
  if (!o)
    return not_configured(r);
  const char *code =
      MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "code");
  const char *state =
      MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "state");
  if (MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "error"))
    return refuse(r, "the identity provider refused the login");
  if (!qarg_ok(code, 512) || !qarg_ok(state, 128))
    return sbx__problem(r, 400, "Bad Request", "code and state required");
  int64_t now = sbx__now();
  state_row st;
  int rc = state_take(r, state, now, &st);
  if (rc == SBX_EAUTH)
    return refuse(r, "unknown, expired or already used state");
  if (rc)
    return sbx__problem_rc(r, rc);
  /* the state must come back to the browser that started the login */
  char bind[128];
  const char *b = sbx__cookie(r, COOKIE_BIND, bind, sizeof bind);
  uint8_t bh[32];
  if (!b || sbx_store_keyed_hash(r->st, "oidc-binding", b, strlen(b), bh) ||
      !sbx_ct_equal(bh, st.bh, 32))
    return refuse(r, "login was not started by this browser");
  /* code exchange with the PKCE verifier */
  CURL *c = curl_easy_init();
  char *ec = c ? curl_easy_escape(c, code, 0) : NULL;
  char *ru = c ? curl_easy_escape(c, o->redirect_uri, 0) : NULL;
  char *ci = c ? curl_easy_escape(c, o->client_id, 0) : NULL;
  char *cs = c ? curl_easy_escape(c, o->secret, 0) : NULL;
  char form[4096 + OIDC_URL_MAX * 3];
  int fn = -1;
  if (ec && ru && ci && cs)
    fn = snprintf(form, sizeof form,
                  "grant_type=authorization_code&code=%s&redirect_uri=%s&"
                  "code_verifier=%s%s%s%s%s",
                  ec, ru, st.verifier, o->auth_post ? "&client_id=" : "",
                  o->auth_post ? ci : "", o->auth_post ? "&client_secret=" : "",
                  o->auth_post ? cs : "");
  curl_free(ec);
  curl_free(ru);
  curl_free(ci);
  if (cs) {
    sbx_memwipe(cs, strlen(cs));
    curl_free(cs);
  }
  if (c)
    curl_easy_cleanup(c);
  if (fn < 0 || (size_t)fn >= sizeof form)
    return sbx__problem(r, 400, "Bad Request", "code too long");
  char token_ep[OIDC_URL_MAX];
  pthread_mutex_lock(&o->mu);
  rc = discover_locked(o);
  snprintf(token_ep, sizeof token_ep, "%s", o->token_ep);
  pthread_mutex_unlock(&o->mu);
  if (rc)
    return sbx__problem(r, 502, "Bad Gateway",
                        "identity provider discovery failed");
  long hs = 0;
  json_t *tr = fetch_json(o, token_ep, form, &hs);
  sbx_memwipe(form, sizeof form);
  const char *idt =
      tr ? json_string_value(json_object_get(tr, "id_token")) : NULL;
  if (!idt) {
    json_decref(tr);
    return refuse(r, "the identity provider refused the code");
  }
  json_t *claims = NULL;
  rc = sbx__oidc_verify_id_token(o, idt, st.nonce, now, &claims);
  json_decref(tr);
  if (rc)
    return refuse(r, "ID token refused");
  int role = map_role(o, claims);
  if (!role) {
    json_decref(claims);
    return sbx__problem(r, 403, "Forbidden",
                        "no role is mapped to this identity's groups");
  }
  char uid[SBX_ID_MAX];
  rc = upsert_user(r, o, claims, role, uid);
  json_decref(claims);
  if (rc)
    return sbx__problem_rc(r, rc);
  /* our session: access + refresh token (one family: revoked together),
   * and the browser cookie; the IdP login is an interactive one (step-up) */
  char at[1024], rt[160], csrf[65] = "", fam[SBX_ID_MAX];
  rc = sbx__rand_hex(fam, 16);
  if (!rc)
    rc = sbx__jwt_issue_fam(r->srv, o->tenant, uid, fam, now, now, at,
                            sizeof at);
  if (!rc)
    rc = sbx__refresh_issue(r->srv, r->st, o->tenant, uid, fam, now, rt);
  if (!rc && r->srv->p.public_origin) /* else tokens only (no cookie) */
    rc = sbx__session_issue(r, o->tenant, uid, csrf);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__add_header(r, "Set-Cookie",
                  COOKIE_BIND "=; Path=/; Max-Age=0; Secure; HttpOnly; "
                              "SameSite=Lax");
  int ttl = r->srv->p.access_ttl_s > 0 && r->srv->p.access_ttl_s <= 900
                ? r->srv->p.access_ttl_s
                : 900;
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s}",
                                   "tenant", o->tenant, "user", uid, "role",
                                   sbx__role_name(role), "expires_in", ttl,
                                   "access_token", at, "token_type", "Bearer",
                                   "refresh_token", rt, "csrf_token", csrf));
}
