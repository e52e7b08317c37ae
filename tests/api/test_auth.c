/*
 * test_auth.c - login features of aisbxd over real TLS:
 *   test_auth AISBXD local           browser sessions + CSRF, TOTP (RFC 6238
 *                                    vectors, enrollment, replay)
 *   test_auth AISBXD oidc IDP_SCRIPT OIDC code + PKCE end to end against a
 *                                    real OpenID provider (Debian glewlwyd,
 *                                    started by oidc_idp.sh on loopback):
 *                                    group -> role, forged / wrong-nonce /
 *                                    replayed / wrong iss+aud refused, key
 *                                    rotation via JWKS refetch. Exit 77 when
 *                                    glewlwyd is not installed.
 */
#include "api_testutil.h"

#include <arpa/inet.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "../harness.h"
#include "auth_testutil.h"
#include "oidc.h"
#include "totp.h"
#include "util.h"

static srv S;
static char g_dir[256], g_cfg[300], K1[200], BOOT1[200];

/* ---- small helpers ---- */

static long req_h(const char *method, const char *path, const char *json,
                  const char *const *hdrs, resp *r) {
  req_opts o = {NULL, json ? "application/json" : NULL, json, 0, hdrs, 0, 0};
  return http(&S, method, path, &o, r);
}

static int setup_server(const char *extra, const char *listen) {
  snprintf(g_dir, sizeof g_dir, "/tmp/sbx-auth-XXXXXX");
  if (!mkdtemp(g_dir))
    return -1;
  snprintf(g_cfg, sizeof g_cfg, "%s.conf", g_dir);
  api_write_config(g_cfg, extra);
  if (api_init_tenant(g_dir, g_cfg, "t1", K1, BOOT1))
    return -1;
  return api_start_listen(&S, g_dir, g_cfg, listen);
}

static void teardown_server(void) {
  int st = api_stop(&S);
  if (st != 0) {
    fprintf(stderr, "aisbxd exit status after SIGTERM: %d\n", st);
    harness_tests_failed++;
  }
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", g_dir, g_cfg);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
}

/* ======================= local: sessions, CSRF, TOTP ================== */

static char ORIGIN_OK[128], USER_BODY[512];

static long session_login(const char *origin, const char *old_cookie,
                          const char *totp, char cookie[200], char csrf[80]) {
  char body[512], ob[200], cb[260];
  snprintf(body, sizeof body,
           "{\"tenant\":\"t1\",\"email\":\"sam@t1.example\",\"password\":"
           "\"sam's long password\"%s%s%s}",
           totp ? ",\"totp\":\"" : "", totp ? totp : "", totp ? "\"" : "");
  const char *h[3] = {NULL, NULL, NULL};
  int n = 0;
  if (origin) {
    snprintf(ob, sizeof ob, "Origin: %s", origin);
    h[n++] = ob;
  }
  if (old_cookie) {
    snprintf(cb, sizeof cb, "Cookie: __Host-sbx_session=%s", old_cookie);
    h[n++] = cb;
  }
  resp r;
  long st = req_h("POST", "/api/v1/auth/session", body, h, &r);
  if (st == 200) {
    if (!set_cookie(&r, "__Host-sbx_session", cookie, 200, 0) ||
        !json_field(r.body, "csrf_token", csrf, 80))
      st = -1;
  }
  resp_free(&r);
  return st;
}

/* A cookie request; csrf/origin NULL: header left out. */
static long with_cookie(const char *method, const char *path, const char *json,
                        const char *cookie, const char *csrf,
                        const char *origin, resp *r) {
  char cb[260], xb[120], ob[200];
  const char *h[4] = {NULL, NULL, NULL, NULL};
  int n = 0;
  snprintf(cb, sizeof cb, "Cookie: __Host-sbx_session=%s", cookie);
  h[n++] = cb;
  if (csrf) {
    snprintf(xb, sizeof xb, "X-CSRF-Token: %s", csrf);
    h[n++] = xb;
  }
  if (origin) {
    snprintf(ob, sizeof ob, "Origin: %s", origin);
    h[n++] = ob;
  }
  return req_h(method, path, json, h, r);
}

TEST(session_cookie_and_csrf) {
  resp r;
  snprintf(USER_BODY, sizeof USER_BODY,
           "{\"id\":\"sam\",\"email\":\"sam@t1.example\",\"password\":"
           "\"sam's long password\",\"role\":\"admin\"}");
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/users", K1, USER_BODY, &r), 201);
  resp_free(&r);
  char c1[200] = "", x1[80] = "", c2[200] = "", x2[80] = "";
  /* a login from another origin is refused (login CSRF) */
  CHECK_EQ_INT(session_login("https://evil.example", NULL, NULL, c1, x1), 403);
  CHECK_EQ_INT(session_login(ORIGIN_OK, NULL, NULL, c1, x1), 200);
  /* cookie attributes */
  CHECK_EQ_INT(req_h("POST", "/api/v1/auth/session",
                     "{\"tenant\":\"t1\",\"email\":\"sam@t1.example\","
                     "\"password\":\"sam's long password\"}",
                     NULL, &r),
               200);
  char attrs[400] = "";
  CHECK(set_cookie(&r, "__Host-sbx_session", attrs, sizeof attrs, 1));
  CHECK(strstr(attrs, "; HttpOnly") && strstr(attrs, "; Secure") &&
        strstr(attrs, "; SameSite=Strict") && strstr(attrs, "; Path=/") &&
        strstr(attrs, "Max-Age="));
  resp_free(&r);
  /* the cookie authenticates reads */
  CHECK_EQ_INT(with_cookie("GET", "/api/v1/me", NULL, c1, NULL, NULL, &r), 200);
  CHECK(strstr(r.body, "\"credential\":\"session\"") &&
        strstr(r.body, "\"role\":\"admin\""));
  resp_free(&r);
  CHECK_EQ_INT(
      with_cookie("GET", "/api/v1/auth/session", NULL, c1, NULL, NULL, &r),
      200);
  char x1b[80] = "";
  CHECK(json_field(r.body, "csrf_token", x1b, sizeof x1b) && !strcmp(x1, x1b));
  resp_free(&r);
  /* state-changing: token and origin both required */
  const char *pj = "{\"id\":\"cp1\",\"name\":\"n\"}";
  CHECK_EQ_INT(
      with_cookie("POST", "/api/v1/projects", pj, c1, NULL, ORIGIN_OK, &r),
      403);
  resp_free(&r);
  char wrong[80];
  snprintf(wrong, sizeof wrong, "%s", x1);
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  CHECK_EQ_INT(
      with_cookie("POST", "/api/v1/projects", pj, c1, wrong, ORIGIN_OK, &r),
      403);
  resp_free(&r);
  CHECK_EQ_INT(with_cookie("POST", "/api/v1/projects", pj, c1, x1, NULL, &r),
               403);
  resp_free(&r);
  CHECK_EQ_INT(with_cookie("POST", "/api/v1/projects", pj, c1, x1,
                           "https://evil.example", &r),
               403);
  resp_free(&r);
  CHECK_EQ_INT(
      with_cookie("POST", "/api/v1/projects", pj, c1, x1, ORIGIN_OK, &r), 201);
  resp_free(&r);
  /* a bearer credential needs no CSRF token (not ambient) */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/projects", K1,
                    "{\"id\":\"cp2\",\"name\":\"n\"}", &r),
               201);
  resp_free(&r);
  /* the secret is stored only hashed */
  char cmd[600];
  snprintf(cmd, sizeof cmd, "grep -rqa '%s' '%s'", strchr(c1, '~') + 1, g_dir);
  CHECK(system(cmd) != 0);
  /* rotation on login: the old session dies, the new one works */
  CHECK_EQ_INT(session_login(ORIGIN_OK, c1, NULL, c2, x2), 200);
  CHECK(strcmp(c1, c2) != 0 && strcmp(x1, x2) != 0);
  CHECK_EQ_INT(with_cookie("GET", "/api/v1/me", NULL, c1, NULL, NULL, &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(with_cookie("GET", "/api/v1/me", NULL, c2, NULL, NULL, &r), 200);
  resp_free(&r);
  /* the old CSRF token is bound to the old session */
  CHECK_EQ_INT(with_cookie("POST", "/api/v1/projects",
                           "{\"id\":\"cp3\",\"name\":\"n\"}", c2, x1, ORIGIN_OK,
                           &r),
               403);
  resp_free(&r);
  /* forged cookies */
  CHECK_EQ_INT(with_cookie("GET", "/api/v1/me", NULL, "t1~zz", NULL, NULL, &r),
               401);
  resp_free(&r);
  char forged[200];
  snprintf(forged, sizeof forged, "%s", c2);
  forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
  CHECK_EQ_INT(with_cookie("GET", "/api/v1/me", NULL, forged, NULL, NULL, &r),
               401);
  resp_free(&r);
  /* logout is state-changing too; afterwards the cookie is dead */
  CHECK_EQ_INT(with_cookie("DELETE", "/api/v1/auth/session", NULL, c2, NULL,
                           ORIGIN_OK, &r),
               403);
  resp_free(&r);
  CHECK_EQ_INT(with_cookie("DELETE", "/api/v1/auth/session", NULL, c2, x2,
                           ORIGIN_OK, &r),
               200);
  CHECK(strstr(r.body, "\"logged_out\":true") != NULL);
  resp_free(&r);
  CHECK_EQ_INT(with_cookie("GET", "/api/v1/me", NULL, c2, NULL, NULL, &r), 401);
  resp_free(&r);
}

TEST(totp_rfc6238_vectors) {
  /* RFC 6238 appendix B, SHA-1, seed "12345678901234567890" */
  const uint8_t *key = (const uint8_t *)"12345678901234567890";
  static const struct {
    long long t;
    uint32_t code8;
  } V[] = {{59, 94287082u},         {1111111109, 7081804u},
           {1111111111, 14050471u}, {1234567890, 89005924u},
           {2000000000, 69279037u}, {20000000000ll, 65353130u}};
  for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
    uint32_t c8 = 0, c6 = 0;
    CHECK(sbx__totp_code(key, 20, (uint64_t)(V[i].t / 30), 8, &c8) == 0);
    CHECK(sbx__totp_code(key, 20, (uint64_t)(V[i].t / 30), 6, &c6) == 0);
    CHECK_EQ_INT(c8, V[i].code8);
    CHECK_EQ_INT(c6, V[i].code8 % 1000000u);
  }
  char b32[64];
  sbx__base32(key, 20, b32);
  CHECK(!strcmp(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
}

TEST(totp_enroll_login_replay) {
  resp r;
  const char *login = "{\"grant_type\":\"password\",\"tenant\":\"t1\","
                      "\"email\":\"sam@t1.example\",\"password\":\"sam's "
                      "long password\"}";
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, login, &r), 200);
  char at[1200] = "";
  CHECK(json_field(r.body, "access_token", at, sizeof at));
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp", at, NULL, &r), 201);
  char b32[64] = "", uri[512] = "";
  CHECK(json_field(r.body, "secret", b32, sizeof b32));
  CHECK(json_field(r.body, "otpauth_uri", uri, sizeof uri) &&
        !strncmp(uri, "otpauth://totp/", 15) && strstr(uri, b32));
  resp_free(&r);
  uint8_t key[32];
  int kl = unbase32(b32, key, sizeof key);
  CHECK_EQ_INT(kl, 20);
  /* pending: the password alone still works */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, login, &r), 200);
  resp_free(&r);
  long long step = (long long)time(NULL) / 30;
  char c0[8], c1[8], cold[8], body[600];
  code_at(key, kl, step, c0);
  code_at(key, kl, step + 1, c1);
  code_at(key, kl, step - 5, cold);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp/confirm", at,
                    "{\"code\":\"000000x\"}", &r),
               400);
  resp_free(&r);
  snprintf(body, sizeof body, "{\"code\":\"%s\"}", cold);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp/confirm", at, body, &r),
               400);
  resp_free(&r);
  snprintf(body, sizeof body, "{\"code\":\"%s\"}", c0);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp/confirm", at, body, &r),
               200);
  resp_free(&r);
  /* enabled: a second enrollment is refused */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp", at, NULL, &r), 409);
  resp_free(&r);
  /* the password alone is no longer enough */
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, login, &r), 401);
  CHECK(strstr(r.body, "TOTP code required") != NULL);
  resp_free(&r);
  char with[700];
  /* the confirmation's code cannot be replayed for a login */
  snprintf(with, sizeof with,
           "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":"
           "\"sam@t1.example\",\"password\":\"sam's long password\","
           "\"totp\":\"%s\"}",
           c0);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, with, &r), 401);
  resp_free(&r);
  /* the next step's code (within +-1) works once */
  snprintf(with, sizeof with,
           "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":"
           "\"sam@t1.example\",\"password\":\"sam's long password\","
           "\"totp\":\"%s\"}",
           c1);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, with, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL, with, &r), 401);
  resp_free(&r);
  /* a session login needs it as well */
  char ck[200], x[80];
  CHECK_EQ_INT(session_login(ORIGIN_OK, NULL, NULL, ck, x), 401);
  CHECK_EQ_INT(session_login(ORIGIN_OK, NULL, c1, ck, x), 401); /* replay */
}

static int run_local(void) {
  int port = free_port();
  snprintf(ORIGIN_OK, sizeof ORIGIN_OK, "https://127.0.0.1:%d", port);
  char extra[300], listen[64];
  snprintf(extra, sizeof extra, "public_origin = %s\n", ORIGIN_OK);
  snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
  if (setup_server(extra, listen)) {
    fprintf(stderr, "aisbxd did not start\n");
    return 1;
  }
  RUN(totp_rfc6238_vectors);
  RUN(session_cookie_and_csrf);
  RUN(totp_enroll_login_replay);
  teardown_server();
  return harness_report();
}

/* ============================ OIDC =================================== */

static const char *g_idp_sh;
static char IDP_DIR[300], ISS[128], JWKS[160], REDIRECT[160];
static int IDP_PORT;

/* Plain-HTTP client for the IdP with its own cookie jar (the user). */
typedef struct idp_user {
  CURL *c;
} idp_user;

static long idp_req(idp_user *u, const char *method, const char *url,
                    const char *json, resp *out, char *redirect, size_t rcap) {
  memset(out, 0, sizeof *out);
  CURL *c = u->c;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  struct curl_slist *h = NULL;
  if (json) {
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
  if (redirect) {
    char *ru = NULL;
    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &ru);
    snprintf(redirect, rcap, "%s", ru ? ru : "");
  }
  curl_slist_free_all(h);
  if (!out->body)
    out->body = calloc(1, 1);
  return out->status;
}

static int idp_user_login(idp_user *u, const char *name) {
  u->c = curl_easy_init();
  curl_easy_setopt(u->c, CURLOPT_COOKIEFILE, "");
  char url[200], body[200];
  resp r;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/api/auth/", IDP_PORT);
  snprintf(body, sizeof body,
           "{\"username\":\"%s\",\"password\":\"%s-password\"}", name, name);
  long st = idp_req(u, "POST", url, body, &r, NULL, 0);
  resp_free(&r);
  if (st != 200)
    return -1;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/api/auth/grant/sbx", IDP_PORT);
  st = idp_req(u, "PUT", url, "{\"scope\":\"openid profile email\"}", &r, NULL,
               0);
  resp_free(&r);
  return st == 200 ? 0 : -1;
}

static void q_param(const char *url, const char *k, char *out, size_t cap) {
  char pat[64];
  out[0] = 0;
  snprintf(pat, sizeof pat, "%s=", k);
  for (const char *p = strchr(url, '?'); p; p = strchr(p + 1, '&')) {
    if (!strncmp(p + 1, pat, strlen(pat))) {
      const char *v = p + 1 + strlen(pat);
      size_t n = strcspn(v, "&#");
      if (n < cap) {
        memcpy(out, v, n);
        out[n] = 0;
      }
      return;
    }
  }
}

typedef struct flow {
  char bind[200], code[200], state[200], nonce[200];
} flow;

/* Our login (302 + binding cookie), then the IdP's authorization endpoint
 * as the logged-in user u; fills the code and state sent back to us. With
 * tamper_nonce the browser swaps the nonce on its way to the IdP. */
static int start_flow(idp_user *u, flow *f, int tamper_nonce) {
  memset(f, 0, sizeof *f);
  resp r;
  char loc[2048] = "", redirect[2048] = "";
  long st = req_h("GET", "/api/v1/auth/oidc/login", NULL, NULL, &r);
  int ok = st == 302 && resp_header(&r, "Location", loc, sizeof loc) &&
           set_cookie(&r, "__Host-sbx_oidc", f->bind, sizeof f->bind, 0);
  char attrs[300] = "";
  ok = ok && set_cookie(&r, "__Host-sbx_oidc", attrs, sizeof attrs, 1) &&
       strstr(attrs, "HttpOnly") && strstr(attrs, "Secure");
  resp_free(&r);
  if (!ok) {
    fprintf(stderr, "oidc login: %ld %s\n", st, loc);
    return -1;
  }
  char chal[100], meth[20];
  q_param(loc, "code_challenge", chal, sizeof chal);
  q_param(loc, "code_challenge_method", meth, sizeof meth);
  q_param(loc, "nonce", f->nonce, sizeof f->nonce);
  if (strlen(chal) != 43 || strcmp(meth, "S256") || !f->nonce[0] ||
      strncmp(loc, ISS, strlen(ISS)))
    return -1;
  if (tamper_nonce) {
    char *p = strstr(loc, "nonce=");
    if (!p)
      return -1;
    memcpy(p + 6, "XXXX", 4); /* same length, other value */
  }
  char url[2100];
  snprintf(url, sizeof url, "%s&g_continue", loc);
  st = idp_req(u, "GET", url, NULL, &r, redirect, sizeof redirect);
  resp_free(&r);
  if (st != 302 || strncmp(redirect, REDIRECT, strlen(REDIRECT))) {
    fprintf(stderr, "idp auth: %ld %s\n", st, redirect);
    return -1;
  }
  q_param(redirect, "code", f->code, sizeof f->code);
  q_param(redirect, "state", f->state, sizeof f->state);
  return f->code[0] && f->state[0] ? 0 : -1;
}

static long callback(const flow *f, const char *bind, resp *r) {
  char path[700], ck[260];
  snprintf(path, sizeof path, "/api/v1/auth/oidc/callback?code=%s&state=%s",
           f->code, f->state);
  snprintf(ck, sizeof ck, "Cookie: __Host-sbx_oidc=%s", bind);
  const char *h[] = {ck, NULL};
  return req_h("GET", path, NULL, bind ? h : NULL, r);
}

static idp_user ALICE, BOB, CAROL;

TEST(oidc_login_maps_groups) {
  CHECK(idp_user_login(&ALICE, "alice") == 0);
  CHECK(idp_user_login(&BOB, "bob") == 0);
  CHECK(idp_user_login(&CAROL, "carol") == 0);
  flow f;
  resp r;
  CHECK(start_flow(&ALICE, &f, 0) == 0);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 200);
  if (r.status != 200)
    fprintf(stderr, "callback: %s\n", r.body);
  char at[1200] = "", role[32] = "", sess[200] = "", attrs[400] = "";
  CHECK(json_field(r.body, "access_token", at, sizeof at));
  CHECK(json_field(r.body, "role", role, sizeof role) &&
        !strcmp(role, "analyst"));
  CHECK(strstr(r.body, "\"refresh_token\":\"rt_t1~") != NULL);
  CHECK(set_cookie(&r, "__Host-sbx_session", sess, sizeof sess, 0));
  CHECK(set_cookie(&r, "__Host-sbx_session", attrs, sizeof attrs, 1) &&
        strstr(attrs, "HttpOnly") && strstr(attrs, "SameSite=Strict"));
  resp_free(&r);
  /* our own access token carries the mapped role */
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/me", at, NULL, &r), 200);
  CHECK(strstr(r.body, "\"role\":\"analyst\"") &&
        strstr(r.body, "\"user\":\"oidc-"));
  resp_free(&r);
  /* analyst: may read audit events, may not create projects */
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/audit-events", at, NULL, &r), 200);
  CHECK(strstr(r.body, "auth.oidc_login") != NULL);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/projects", at,
                    "{\"id\":\"op1\",\"name\":\"n\"}", &r),
               403);
  resp_free(&r);
  /* and so does the session cookie */
  char ck[260];
  snprintf(ck, sizeof ck, "Cookie: __Host-sbx_session=%s", sess);
  const char *h[] = {ck, NULL};
  CHECK_EQ_INT(req_h("GET", "/api/v1/me", NULL, h, &r), 200);
  CHECK(strstr(r.body, "\"credential\":\"session\"") &&
        strstr(r.body, "\"role\":\"analyst\""));
  resp_free(&r);
  /* bob's group maps to admin */
  CHECK(start_flow(&BOB, &f, 0) == 0);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 200);
  CHECK(json_field(r.body, "role", role, sizeof role) &&
        !strcmp(role, "admin"));
  CHECK(json_field(r.body, "access_token", at, sizeof at));
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/projects", at,
                    "{\"id\":\"op2\",\"name\":\"n\"}", &r),
               201);
  resp_free(&r);
  /* carol has no mapped group: no access at all */
  CHECK(start_flow(&CAROL, &f, 0) == 0);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 403);
  resp_free(&r);
}

TEST(oidc_replay_and_binding) {
  flow f, g;
  resp r;
  /* without the browser-binding cookie (login CSRF) */
  CHECK(start_flow(&ALICE, &f, 0) == 0);
  CHECK_EQ_INT(callback(&f, NULL, &r), 401);
  resp_free(&r);
  /* the state was consumed by that attempt: single use */
  CHECK_EQ_INT(callback(&f, f.bind, &r), 401);
  resp_free(&r);
  /* a replayed code and state */
  CHECK(start_flow(&ALICE, &f, 0) == 0);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 401);
  resp_free(&r);
  /* the used code with a fresh state: the IdP refuses it (used, and the
   * PKCE verifier belongs to another login) */
  CHECK(start_flow(&ALICE, &g, 0) == 0);
  snprintf(g.code, sizeof g.code, "%s", f.code);
  CHECK_EQ_INT(callback(&g, g.bind, &r), 401);
  resp_free(&r);
  /* someone else's binding cookie */
  CHECK(start_flow(&ALICE, &f, 0) == 0);
  CHECK(start_flow(&ALICE, &g, 0) == 0);
  CHECK_EQ_INT(callback(&f, g.bind, &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(callback(&g, g.bind, &r), 200);
  resp_free(&r);
  /* an unknown state */
  snprintf(f.state, sizeof f.state, "not-a-state");
  CHECK_EQ_INT(callback(&f, f.bind, &r), 401);
  resp_free(&r);
  /* the IdP reporting an error */
  CHECK_EQ_INT(req_h("GET",
                     "/api/v1/auth/oidc/callback?error=access_denied&state=x",
                     NULL, NULL, &r),
               401);
  resp_free(&r);
}

TEST(oidc_wrong_nonce) {
  flow f;
  resp r;
  CHECK(start_flow(&ALICE, &f, 1) == 0);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 401);
  CHECK(strstr(r.body, "ID token refused") != NULL);
  resp_free(&r);
}

/* ---- ID tokens signed in the test ---- */

static gnutls_privkey_t load_key(const char *path) {
  char *pem = NULL;
  size_t n = 0;
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  pem = malloc(16384);
  n = fread(pem, 1, 16383, f);
  fclose(f);
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)n};
  gnutls_x509_privkey_t xk;
  gnutls_privkey_t k = NULL;
  gnutls_x509_privkey_init(&xk);
  if (gnutls_x509_privkey_import2(xk, &d, GNUTLS_X509_FMT_PEM, NULL, 0) >= 0) {
    gnutls_privkey_init(&k);
    gnutls_privkey_import_x509(k, xk, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
  } else {
    gnutls_x509_privkey_deinit(xk);
  }
  free(pem);
  return k;
}

static void sign_rs256(gnutls_privkey_t k, const char *hdr, const char *pl,
                       char *out, size_t cap) {
  char hb[1024], pb[4096];
  sbx__b64url(hdr, strlen(hdr), hb);
  sbx__b64url(pl, strlen(pl), pb);
  int n = snprintf(out, cap, "%s.%s", hb, pb);
  gnutls_datum_t d = {(unsigned char *)out, (unsigned)n}, sig = {NULL, 0};
  if (gnutls_privkey_sign_data2(k, GNUTLS_SIGN_RSA_SHA256, 0, &d, &sig) < 0)
    return;
  out[n] = '.';
  sbx__b64url(sig.data, sig.size, out + n + 1);
  gnutls_free(sig.data);
}

static void payload(char *out, size_t cap, const char *iss, const char *aud,
                    const char *nonce, long iat, long exp) {
  snprintf(out, cap,
           "{\"iss\":\"%s\",\"sub\":\"someone\",\"aud\":%s,\"nonce\":\"%s\","
           "\"iat\":%ld,\"exp\":%ld,\"groups\":[\"sbx-admins\"]}",
           iss, aud, nonce, iat, exp);
}

static int jwks_kid(char kid[128]) {
  idp_user u = {curl_easy_init()};
  resp r;
  idp_req(&u, "GET", JWKS, NULL, &r, NULL, 0);
  int ok = r.status == 200 && json_field(r.body, "kid", kid, 128);
  resp_free(&r);
  curl_easy_cleanup(u.c);
  return ok ? 0 : -1;
}

static int verify(struct sbx__oidc *v, const char *tok, const char *nonce) {
  json_t *c = NULL;
  int rc = sbx__oidc_verify_id_token(v, tok, nonce, (int64_t)time(NULL), &c);
  json_decref(c);
  return rc;
}

static char KID1[128];
static struct sbx__oidc *V_SLOW; /* min refresh 1 h: one fetch only */

TEST(oidc_id_token_checks) {
  char p1[320];
  snprintf(p1, sizeof p1, "%s/key1.pem", IDP_DIR);
  gnutls_privkey_t k1 = load_key(p1), evil = NULL;
  CHECK(k1 != NULL);
  CHECK(jwks_kid(KID1) == 0);
  gnutls_x509_privkey_t xe;
  gnutls_x509_privkey_init(&xe);
  gnutls_x509_privkey_generate(xe, GNUTLS_PK_RSA, 2048, 0);
  gnutls_privkey_init(&evil);
  gnutls_privkey_import_x509(evil, xe, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
  if (!k1)
    return;
  V_SLOW = sbx__oidc_new(ISS, "sbx", JWKS, 60, 3600);
  char hdr[300], pl[1024], tok[8192];
  long now = (long)time(NULL);
  snprintf(hdr, sizeof hdr, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", KID1);
  /* control: the IdP's key, right claims */
  payload(pl, sizeof pl, ISS, "\"sbx\"", "n-1", now, now + 300);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK_EQ_INT(verify(V_SLOW, tok, "n-1"), SBX_OK);
  CHECK(verify(V_SLOW, tok, "n-2") != SBX_OK); /* wrong nonce */
  CHECK(verify(V_SLOW, tok, "n-") != SBX_OK);
  /* forged: same kid, another key */
  sign_rs256(evil, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  /* wrong iss, wrong aud, azp of another client, expired, future iat */
  payload(pl, sizeof pl, "http://127.0.0.1:1/api/oidc", "\"sbx\"", "n-1", now,
          now + 300);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  payload(pl, sizeof pl, ISS, "\"other-client\"", "n-1", now, now + 300);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  payload(pl, sizeof pl, ISS, "[\"sbx\",\"other-client\"]", "n-1", now,
          now + 300);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK); /* several aud, no azp */
  payload(pl, sizeof pl, ISS, "\"sbx\"", "n-1", now - 1000, now - 200);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  payload(pl, sizeof pl, ISS, "\"sbx\"", "n-1", now + 600, now + 900);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  /* within the leeway: exp 30 s ago is still accepted */
  payload(pl, sizeof pl, ISS, "\"sbx\"", "n-1", now - 300, now - 30);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK_EQ_INT(verify(V_SLOW, tok, "n-1"), SBX_OK);
  /* the algorithm is ours: RS512 / none / HS256 headers are refused even
   * over a valid RS256 signature */
  payload(pl, sizeof pl, ISS, "\"sbx\"", "n-1", now, now + 300);
  const char *algs[] = {"RS512", "none", "HS256", "PS256"};
  for (int i = 0; i < 4; i++) {
    snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"kid\":\"%s\"}", algs[i], KID1);
    sign_rs256(k1, hdr, pl, tok, sizeof tok);
    CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  }
  /* HS256 keyed with the public modulus text */
  {
    char hb[300], pb[2048], out[4096];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"HS256\",\"kid\":\"%s\"}", KID1);
    sbx__b64url(hdr, strlen(hdr), hb);
    sbx__b64url(pl, strlen(pl), pb);
    int n = snprintf(out, sizeof out, "%s.%s", hb, pb);
    uint8_t mac[32];
    sbx_hmac_sha256(KID1, strlen(KID1), out, (size_t)n, mac);
    out[n] = '.';
    sbx__b64url(mac, 32, out + n + 1);
    CHECK(verify(V_SLOW, out, "n-1") != SBX_OK);
  }
  /* an embedded key is never trusted */
  snprintf(hdr, sizeof hdr,
           "{\"alg\":\"RS256\",\"kid\":\"%s\",\"jwk\":{\"kty\":\"RSA\"}}",
           KID1);
  sign_rs256(k1, hdr, pl, tok, sizeof tok);
  CHECK(verify(V_SLOW, tok, "n-1") != SBX_OK);
  CHECK(verify(V_SLOW, "a.b.c", "n-1") != SBX_OK);
  gnutls_privkey_deinit(k1);
  gnutls_privkey_deinit(evil);
}

TEST(oidc_key_rotation) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "%s rotate %s", g_idp_sh, IDP_DIR);
  CHECK(system(cmd) == 0);
  char kid2[128] = "", p1[320], p2[320];
  CHECK(jwks_kid(kid2) == 0);
  CHECK(strcmp(kid2, KID1) != 0);
  snprintf(p1, sizeof p1, "%s/key1.pem", IDP_DIR);
  snprintf(p2, sizeof p2, "%s/key2.pem", IDP_DIR);
  gnutls_privkey_t k1 = load_key(p1), k2 = load_key(p2);
  CHECK(k1 && k2);
  if (!k1 || !k2)
    return;
  /* the server: its cached JWKS has only the old key; a login signed with
   * the new one makes it refetch (oidc_jwks_min_refresh_s = 1) */
  sleep(2);
  flow f;
  resp r;
  CHECK(start_flow(&ALICE, &f, 0) == 0);
  CHECK_EQ_INT(callback(&f, f.bind, &r), 200);
  resp_free(&r);
  char hdr1[300], hdr2[300], pl[1024], t1[8192], t2[8192];
  long now = (long)time(NULL);
  snprintf(hdr1, sizeof hdr1, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", KID1);
  snprintf(hdr2, sizeof hdr2, "{\"alg\":\"RS256\",\"kid\":\"%s\"}", kid2);
  payload(pl, sizeof pl, ISS, "\"sbx\"", "n-9", now, now + 300);
  sign_rs256(k1, hdr1, pl, t1, sizeof t1);
  sign_rs256(k2, hdr2, pl, t2, sizeof t2);
  /* refetches are rate limited: a verifier that fetched moments ago does
   * not refetch for an unknown kid yet (and so cannot be made to hammer
   * the IdP) */
  CHECK(verify(V_SLOW, t2, "n-9") != SBX_OK);
  CHECK_EQ_INT(verify(V_SLOW, t1, "n-9"), SBX_OK); /* still cached */
  /* a verifier allowed to refetch picks the new key up ... */
  struct sbx__oidc *v = sbx__oidc_new(ISS, "sbx", JWKS, 60, 0);
  CHECK_EQ_INT(verify(v, t2, "n-9"), SBX_OK);
  /* ... and old-key tokens are refused after the refetch */
  CHECK(verify(v, t1, "n-9") != SBX_OK);
  /* a new key's signature under the old kid is refused too */
  sign_rs256(k2, hdr1, pl, t1, sizeof t1);
  CHECK(verify(v, t1, "n-9") != SBX_OK);
  sbx__oidc_delete(v);
  gnutls_privkey_deinit(k1);
  gnutls_privkey_deinit(k2);
}

static int run_oidc(void) {
  IDP_PORT = free_port();
  int port = free_port();
  snprintf(IDP_DIR, sizeof IDP_DIR, "/tmp/sbx-idp-%d", (int)getpid());
  snprintf(ISS, sizeof ISS, "http://127.0.0.1:%d/api/oidc", IDP_PORT);
  snprintf(JWKS, sizeof JWKS, "%s/jwks", ISS);
  snprintf(REDIRECT, sizeof REDIRECT,
           "https://127.0.0.1:%d/api/v1/auth/oidc/callback", port);
  char cmd[900];
  snprintf(cmd, sizeof cmd, "rm -rf %s; %s start %s %d", IDP_DIR, g_idp_sh,
           IDP_DIR, IDP_PORT);
  int st = system(cmd);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
    fprintf(stderr, "SKIP: glewlwyd is not installed\n");
    return 77;
  }
  int rc = 1;
  char secret_file[400], extra[1500], listen[64];
  snprintf(secret_file, sizeof secret_file, "%s/client-secret", IDP_DIR);
  FILE *f = st == 0 ? fopen(secret_file, "w") : NULL;
  if (f) {
    fprintf(f, "s3cret+/=%%&\n"); /* needs form-encoding in Basic auth */
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s client %s sbx 's3cret+/=%%&' '%s'", g_idp_sh,
             IDP_DIR, REDIRECT);
    st = system(cmd);
  } else {
    st = -1;
  }
  snprintf(extra, sizeof extra,
           "oidc_issuer = %s\noidc_client_id = sbx\n"
           "oidc_client_secret_spec = file:%s\noidc_redirect_uri = %s\n"
           "oidc_tenant = t1\noidc_groups_claim = groups\n"
           "oidc_role_map = sbx-analysts=analyst,sbx-admins=admin,"
           "staff=viewer-not-a-role\n"
           "oidc_jwks_min_refresh_s = 1\n",
           ISS, secret_file, REDIRECT);
  snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
  /* an unknown role in the map refuses to start */
  if (st == 0 && setup_server(extra, listen) == 0) {
    fprintf(stderr, "aisbxd started with a bad oidc_role_map\n");
    api_stop(&S);
    st = -1;
  }
  if (st == 0) {
    char cmd2[700];
    snprintf(cmd2, sizeof cmd2, "rm -rf '%s' '%s'", g_dir, g_cfg);
    if (system(cmd2) != 0)
      st = -1;
    snprintf(extra, sizeof extra,
             "oidc_issuer = %s\noidc_client_id = sbx\n"
             "oidc_client_secret_spec = file:%s\noidc_redirect_uri = %s\n"
             "oidc_tenant = t1\noidc_groups_claim = groups\n"
             "oidc_role_map = sbx-analysts=analyst,sbx-admins=admin\n"
             "oidc_jwks_min_refresh_s = 1\n"
             /* glewlwyd does not form-decode Basic credentials */
             "oidc_token_auth = post\n"
             /* cookie sessions need the configured origin */
             "public_origin = https://127.0.0.1:%d\n",
             ISS, secret_file, REDIRECT, port);
  }
  if (st == 0 && setup_server(extra, listen) == 0) {
    RUN(oidc_login_maps_groups);
    RUN(oidc_replay_and_binding);
    RUN(oidc_wrong_nonce);
    RUN(oidc_id_token_checks);
    RUN(oidc_key_rotation);
    teardown_server();
    rc = harness_report();
  } else {
    fprintf(stderr, "OIDC test setup failed\n");
  }
  idp_user *us[] = {&ALICE, &BOB, &CAROL};
  for (int i = 0; i < 3; i++)
    if (us[i]->c)
      curl_easy_cleanup(us[i]->c);
  sbx__oidc_delete(V_SLOW);
  snprintf(cmd, sizeof cmd, "%s stop %s", g_idp_sh, IDP_DIR);
  if (system(cmd) != 0)
    fprintf(stderr, "idp stop failed\n");
  if (rc != 0) { /* keep the IdP log for the failure report */
    snprintf(cmd, sizeof cmd, "tail -5 %s/glewlwyd.log >&2", IDP_DIR);
    if (system(cmd) != 0)
      fprintf(stderr, "no idp log\n");
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", IDP_DIR);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s AISBXD local|oidc [IDP_SCRIPT]\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc;
  if (!strcmp(argv[2], "oidc") && argc > 3) {
    g_idp_sh = argv[3];
    rc = run_oidc();
  } else {
    rc = run_local();
  }
  curl_global_cleanup();
  return rc;
}
