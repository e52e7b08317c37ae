/*
 * test_lifecycle.c - issue 12 items 2 and 3 against a real aisbxd (SQLite):
 *   step-up: credential changes (TOTP enroll/confirm/remove, password,
 *   API-key creation) need a session or an access token from a password
 *   login at most 5 min old, never an API key (the red team's lock-out: a
 *   project-scoped Viewer key enrolling TOTP for its user); POST
 *   /api/v1/auth/reauth; an Admin's TOTP reset;
 *   the user and membership lifecycle: role change, disable/enable,
 *   delete, member removal, revocation of a user's sessions and tokens,
 *   each effective on the next request, audited, never across tenants.
 * (Two processes on PostgreSQL: tests/scale/lifecycle_pg.py.)
 * usage: test_lifecycle /path/to/aisbxd
 */
#include "api_testutil.h"

#include "../harness.h"
#include "auth_testutil.h"

static srv S;
static char g_dir[256], g_cfg[300], K1[200], K2[200], BOOT[200];
static char ORIGIN[128];

/* ---- helpers ---- */

/* POST /api/v1/users in tenant t1 (K1): password "password-of-<id>",
 * e-mail <id>@t1.example, tenant role (NULL: none). */
static long mk_user(const char *id, const char *role) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"id\":\"%s\",\"email\":\"%s@t1.example\",\"password\":"
           "\"password-of-%s\"%s%s%s}",
           id, id, id, role ? ",\"role\":\"" : "", role ? role : "",
           role ? "\"" : "");
  resp r;
  long st = jreq(&S, "POST", "/api/v1/users", K1, body, &r);
  resp_free(&r);
  return st;
}

/* Password grant of user id (t1): access and refresh token. */
static long login(const char *id, const char *totp, char at[1200],
                  char rt[200]) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":\"%s@t1."
           "example\",\"password\":\"password-of-%s\"%s%s%s}",
           id, id, totp ? ",\"totp\":\"" : "", totp ? totp : "",
           totp ? "\"" : "");
  resp r;
  long st = jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r);
  if (st == 200 && ((at && !json_field(r.body, "access_token", at, 1200)) ||
                    (rt && !json_field(r.body, "refresh_token", rt, 200))))
    st = -1;
  resp_free(&r);
  return st;
}

/* Refresh grant: the new access token into at (may be NULL). */
static long refresh(const char *rt, char at[1200]) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"%s\"}", rt);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/auth/token", NULL, body, &r);
  if (st == 200 && at && !json_field(r.body, "access_token", at, 1200))
    st = -1;
  resp_free(&r);
  return st;
}

/* A request as cred; the body (NULL: none) is JSON. Status only. */
static long as(const char *cred, const char *method, const char *path,
               const char *json) {
  resp r;
  long st = jreq(&S, method, path, cred, json, &r);
  resp_free(&r);
  return st;
}

/* Same, and 1 when the answer's body contains needle. */
static int as_says(const char *cred, const char *method, const char *path,
                   const char *json, long want, const char *needle) {
  resp r;
  long st = jreq(&S, method, path, cred, json, &r);
  int ok = st == want && r.body && strstr(r.body, needle);
  if (!ok)
    fprintf(stderr, "%s %s: %ld %s (want %ld, \"%s\")\n", method, path, st,
            r.body ? r.body : "", want, needle);
  resp_free(&r);
  return ok;
}

/* POST /api/v1/api-keys as cred with body: the key into key (201). */
static long mk_key(const char *cred, const char *body, char key[200]) {
  resp r;
  long st = jreq(&S, "POST", "/api/v1/api-keys", cred, body, &r);
  if (st == 201 && !json_field(r.body, "key", key, 200))
    st = -1;
  resp_free(&r);
  return st;
}

static long upload(const char *cred) {
  static int n;
  char path[128];
  snprintf(path, sizeof path, "/api/v1/projects/pa/models?name=lm%d", ++n);
  req_opts o = {cred, "application/octet-stream", "raw bytes", 0, NULL, 0, 0};
  resp r;
  long st = http(&S, "POST", path, &o, &r);
  resp_free(&r);
  return st;
}

static char BOSS[1200]; /* an admin's fresh access token (step-up) */

/* ---- step-up ---- */

/* The red team's lock-out: a project-scoped Viewer API key enrolled and
 * confirmed TOTP for its user. Now every credential change refuses API
 * keys (even the tenant's admin key), naming step-up; the user's password
 * login keeps working without a code. */
TEST(viewer_key_cannot_change_credentials) {
  CHECK_EQ_INT(mk_user("boss", "admin"), 201);
  CHECK_EQ_INT(login("boss", NULL, BOSS, NULL), 200);
  CHECK_EQ_INT(mk_user("vic", NULL), 201);
  CHECK_EQ_INT(
      as(K1, "PUT", "/api/v1/projects/pa/members/vic", "{\"role\":\"viewer\"}"),
      200);
  char vk[200] = "";
  CHECK_EQ_INT(mk_key(BOSS,
                      "{\"role\":\"viewer\",\"project_id\":\"pa\","
                      "\"user_id\":\"vic\"}",
                      vk),
               201);
  CHECK_EQ_INT(as(vk, "GET", "/api/v1/projects/pa/models", NULL), 200);
  CHECK(as_says(vk, "POST", "/api/v1/auth/totp", NULL, 403, "step-up"));
  CHECK(as_says(vk, "POST", "/api/v1/auth/totp/confirm",
                "{\"code\":\"123456\"}", 403, "step-up"));
  CHECK(as_says(vk, "DELETE", "/api/v1/auth/totp", NULL, 403, "step-up"));
  CHECK(as_says(vk, "POST", "/api/v1/auth/passphrase",
                "{\"current_password\":\"password-of-vic\",\"new_password\":"
                "\"attacker's new password\"}",
                403, "step-up"));
  CHECK(as_says(vk, "POST", "/api/v1/auth/reauth",
                "{\"password\":\"password-of-vic\"}", 403, "never an API key"));
  /* the tenant's admin key: the same */
  CHECK(as_says(K1, "POST", "/api/v1/auth/totp", NULL, 403, "step-up"));
  CHECK(as_says(K1, "POST", "/api/v1/api-keys", "{\"role\":\"viewer\"}", 403,
                "step-up"));
  /* nothing was enrolled: vic's password alone still logs in */
  CHECK_EQ_INT(login("vic", NULL, NULL, NULL), 200);
}

/* Login time counts; an access token from a refresh grant (no interactive
 * login) does not, until POST /auth/reauth with the password gives a
 * token that does. A wrong password is refused. */
TEST(reauth_with_access_token) {
  CHECK_EQ_INT(mk_user("rita", "developer"), 201);
  char at[1200] = "", rt[200] = "", at2[1200] = "", at3[1200] = "";
  CHECK_EQ_INT(login("rita", NULL, at, rt), 200);
  CHECK_EQ_INT(refresh(rt, at2), 200);
  CHECK_EQ_INT(as(at2, "GET", "/api/v1/me", NULL), 200);
  resp r;
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp", at2, NULL, &r), 401);
  CHECK(strstr(r.body, "step-up") && strstr(r.body, "/api/v1/auth/reauth"));
  CHECK(resp_header(&r, "WWW-Authenticate", NULL, 0));
  resp_free(&r);
  CHECK(as_says(at2, "POST", "/api/v1/auth/reauth",
                "{\"password\":\"not rita's password\"}", 401,
                "invalid credentials"));
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/reauth", at2,
                    "{\"password\":\"password-of-rita\"}", &r),
               200);
  CHECK(json_field(r.body, "access_token", at3, sizeof at3));
  resp_free(&r);
  CHECK_EQ_INT(as(at3, "POST", "/api/v1/auth/totp", NULL), 201);
  CHECK_EQ_INT(as(at3, "DELETE", "/api/v1/auth/totp", NULL), 200);
  /* the password change takes the current password and step-up */
  CHECK_EQ_INT(as(at2, "POST", "/api/v1/auth/passphrase",
                  "{\"current_password\":\"password-of-rita\","
                  "\"new_password\":\"rita's second password\"}"),
               401);
  CHECK_EQ_INT(as(at3, "POST", "/api/v1/auth/passphrase",
                  "{\"current_password\":\"wrong\",\"new_password\":\"rita's "
                  "second password\"}"),
               401);
  CHECK_EQ_INT(as(at3, "POST", "/api/v1/auth/passphrase",
                  "{\"current_password\":\"password-of-rita\","
                  "\"new_password\":\"rita's second password\"}"),
               200);
  CHECK_EQ_INT(login("rita", NULL, NULL, NULL), 401);
  /* every token of the old password ended with it */
  CHECK_EQ_INT(as(at3, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(as(at, "GET", "/api/v1/me", NULL), 401);
}

/* A browser session: fresh after login; 6 min later (its auth_at moved
 * back in the database) credential changes answer 401 step-up until the
 * session re-authenticates. */
TEST(reauth_with_session) {
  CHECK_EQ_INT(mk_user("sara", "viewer"), 201);
  char ob[200], cb[300], xb[120];
  snprintf(ob, sizeof ob, "Origin: %s", ORIGIN);
  const char *h0[] = {ob, NULL};
  req_opts o = {NULL,
                "application/json",
                "{\"tenant\":\"t1\",\"email\":\"sara@t1.example\","
                "\"password\":\"password-of-sara\"}",
                0,
                h0,
                0,
                0};
  resp r;
  CHECK_EQ_INT(http(&S, "POST", "/api/v1/auth/session", &o, &r), 200);
  char ck[200] = "", csrf[80] = "";
  CHECK(set_cookie(&r, "__Host-sbx_session", ck, sizeof ck, 0));
  CHECK(json_field(r.body, "csrf_token", csrf, sizeof csrf));
  resp_free(&r);
  snprintf(cb, sizeof cb, "Cookie: __Host-sbx_session=%s", ck);
  snprintf(xb, sizeof xb, "X-CSRF-Token: %s", csrf);
  const char *h[] = {cb, xb, ob, NULL};
  req_opts c = {NULL, NULL, NULL, 0, h, 0, 0};
  CHECK_EQ_INT(http(&S, "POST", "/api/v1/auth/totp", &c, &r), 201);
  resp_free(&r);
  CHECK(api_db_poke(g_dir,
                    "UPDATE srv_sessions SET auth_at = auth_at - 360 WHERE "
                    "user_id = 'sara'") == 0);
  CHECK_EQ_INT(http(&S, "POST", "/api/v1/auth/totp", &c, &r), 401);
  CHECK(r.body && strstr(r.body, "step-up"));
  resp_free(&r);
  req_opts ra = c;
  ra.ctype = "application/json";
  ra.body = "{\"password\":\"password-of-sara\"}";
  CHECK_EQ_INT(http(&S, "POST", "/api/v1/auth/reauth", &ra, &r), 200);
  resp_free(&r);
  CHECK_EQ_INT(http(&S, "POST", "/api/v1/auth/totp", &c, &r), 201);
  resp_free(&r);
}

/* A user locked out by a TOTP nobody has: an Admin resets it (audited),
 * the password alone logs in again. Not a power of non-admins. */
TEST(admin_resets_totp) {
  CHECK_EQ_INT(mk_user("tom", "analyst"), 201);
  char at[1200] = "", b32[64] = "";
  CHECK_EQ_INT(login("tom", NULL, at, NULL), 200);
  resp r;
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/totp", at, NULL, &r), 201);
  CHECK(json_field(r.body, "secret", b32, sizeof b32));
  resp_free(&r);
  uint8_t key[32];
  int kl = unbase32(b32, key, sizeof key);
  CHECK_EQ_INT(kl, 20);
  char code[8], body[64];
  code_at(key, kl, (long long)time(NULL) / 30, code);
  snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
  CHECK_EQ_INT(as(at, "POST", "/api/v1/auth/totp/confirm", body), 200);
  CHECK_EQ_INT(login("tom", NULL, NULL, NULL), 401); /* code required */
  CHECK_EQ_INT(as(at, "DELETE", "/api/v1/users/tom/totp", NULL), 403);
  CHECK_EQ_INT(as(K2, "DELETE", "/api/v1/users/tom/totp", NULL), 404);
  CHECK_EQ_INT(as(K1, "DELETE", "/api/v1/users/nobody/totp", NULL), 404);
  CHECK(as_says(K1, "DELETE", "/api/v1/users/tom/totp", NULL, 200,
                "\"removed\":true"));
  CHECK_EQ_INT(login("tom", NULL, NULL, NULL), 200);
  CHECK(as_says(K1, "GET", "/api/v1/audit-events?limit=100", NULL, 200,
                "user.totp_reset"));
}

/* ---- lifecycle ---- */

TEST(demote_disable_enable) {
  CHECK_EQ_INT(mk_user("dev1", "developer"), 201);
  char at[1200] = "", rt[200] = "", key[200] = "";
  CHECK_EQ_INT(login("dev1", NULL, at, rt), 200);
  CHECK_EQ_INT(
      mk_key(BOSS, "{\"role\":\"developer\",\"user_id\":\"dev1\"}", key), 201);
  CHECK_EQ_INT(upload(at), 201);
  CHECK_EQ_INT(upload(key), 201);
  /* not an admin: no lifecycle power; an admin cannot demote itself */
  CHECK_EQ_INT(as(at, "PATCH", "/api/v1/users/boss", "{\"role\":\"viewer\"}"),
               403);
  CHECK_EQ_INT(as(BOSS, "PATCH", "/api/v1/users/boss", "{\"role\":\"viewer\"}"),
               409);
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/dev1", "{\"role\":\"boss\"}"),
               400);
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/nobody", "{\"role\":\"viewer\"}"),
               404);
  /* demoted: the next request of its token and key is a viewer's */
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/dev1", "{\"role\":\"viewer\"}"),
               200);
  CHECK_EQ_INT(upload(at), 403);
  CHECK_EQ_INT(upload(key), 403);
  CHECK_EQ_INT(as(at, "GET", "/api/v1/projects/pa/models", NULL), 200);
  /* disabled: nothing of it works any more */
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/dev1", "{\"disabled\":true}"),
               200);
  CHECK_EQ_INT(as(at, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(refresh(rt, NULL), 401);
  CHECK_EQ_INT(login("dev1", NULL, NULL, NULL), 401);
  /* enabled again: a new login works; what it held before stays revoked
   * (disabling ended its sessions and tokens); API keys come back */
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/dev1", "{\"disabled\":false}"),
               200);
  sleep(1); /* a new token's iat after the revocation second */
  char at2[1200] = "";
  CHECK_EQ_INT(login("dev1", NULL, at2, NULL), 200);
  CHECK_EQ_INT(as(at2, "GET", "/api/v1/me", NULL), 200);
  CHECK_EQ_INT(as(at, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(refresh(rt, NULL), 401);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/me", NULL), 200);
  /* role "none": no tenant role any more */
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/dev1", "{\"role\":\"none\"}"),
               200);
  CHECK_EQ_INT(as(at2, "GET", "/api/v1/projects", NULL), 403);
}

TEST(remove_member) {
  CHECK_EQ_INT(mk_user("mem1", NULL), 201);
  CHECK_EQ_INT(as(K1, "PUT", "/api/v1/projects/pa/members/mem1",
                  "{\"role\":\"developer\"}"),
               200);
  char at[1200] = "", key[200] = "";
  CHECK_EQ_INT(login("mem1", NULL, at, NULL), 200);
  CHECK_EQ_INT(mk_key(BOSS,
                      "{\"role\":\"developer\",\"project_id\":\"pa\","
                      "\"user_id\":\"mem1\"}",
                      key),
               201);
  CHECK_EQ_INT(upload(at), 201);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/projects/pa", NULL), 200);
  CHECK_EQ_INT(as(at, "DELETE", "/api/v1/projects/pa/members/mem1", NULL), 403);
  CHECK_EQ_INT(as(K2, "DELETE", "/api/v1/projects/pa/members/mem1", NULL), 404);
  CHECK_EQ_INT(as(K1, "DELETE", "/api/v1/projects/pa/members/mem1", NULL), 200);
  CHECK_EQ_INT(as(at, "GET", "/api/v1/projects/pa", NULL), 404);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/projects/pa", NULL), 404);
  CHECK_EQ_INT(as(K1, "DELETE", "/api/v1/projects/pa/members/mem1", NULL), 404);
}

TEST(revoke_sessions) {
  CHECK_EQ_INT(mk_user("rev1", "viewer"), 201);
  char at[1200] = "", rt[200] = "", at2[1200] = "", key[200] = "";
  CHECK_EQ_INT(login("rev1", NULL, at, rt), 200);
  CHECK_EQ_INT(refresh(rt, at2), 200); /* rt is used now; at2's is live */
  CHECK_EQ_INT(mk_key(BOSS, "{\"role\":\"viewer\",\"user_id\":\"rev1\"}", key),
               201);
  /* not for another user's sessions, nor across tenants */
  CHECK_EQ_INT(as(at, "POST", "/api/v1/users/boss/revoke-sessions", NULL), 403);
  CHECK_EQ_INT(as(K2, "POST", "/api/v1/users/rev1/revoke-sessions", NULL), 404);
  CHECK_EQ_INT(as(key, "POST", "/api/v1/users/rev1/revoke-sessions", NULL),
               403); /* an API key does not act on its user's account */
  CHECK_EQ_INT(as(at, "GET", "/api/v1/me", NULL), 200);
  /* its own: every access token and refresh token ends now; API keys are
   * separate (api_keys: true) */
  CHECK(as_says(at, "POST", "/api/v1/users/rev1/revoke-sessions", NULL, 200,
                "\"refresh_tokens\":1"));
  CHECK_EQ_INT(as(at, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(as(at2, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/me", NULL), 200);
  CHECK(as_says(K1, "POST", "/api/v1/users/rev1/revoke-sessions",
                "{\"api_keys\":true}", 200, "\"api_keys\":1"));
  CHECK_EQ_INT(as(key, "GET", "/api/v1/me", NULL), 401);
  /* incident response: the keys a (compromised) admin made for others */
  char vkey[200] = "";
  CHECK_EQ_INT(mk_key(BOSS, "{\"role\":\"viewer\",\"user_id\":\"rev1\"}", vkey),
               201);
  CHECK_EQ_INT(as(vkey, "GET", "/api/v1/me", NULL), 200);
  CHECK(as_says(K1, "POST", "/api/v1/users/boss/revoke-sessions",
                "{\"issued_keys\":true}", 200, "\"api_keys\":"));
  CHECK_EQ_INT(as(vkey, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(as(BOSS, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(login("boss", NULL, BOSS, NULL), 200);
  sleep(1);
  char at3[1200] = "";
  CHECK_EQ_INT(login("rev1", NULL, at3, NULL), 200);
  CHECK_EQ_INT(as(at3, "GET", "/api/v1/me", NULL), 200);
}

TEST(delete_user) {
  CHECK_EQ_INT(mk_user("del1", "developer"), 201);
  char at[1200] = "", rt[200] = "", key[200] = "";
  CHECK_EQ_INT(login("del1", NULL, at, rt), 200);
  CHECK_EQ_INT(mk_key(BOSS, "{\"role\":\"viewer\",\"user_id\":\"del1\"}", key),
               201);
  CHECK_EQ_INT(as(BOSS, "DELETE", "/api/v1/users/boss", NULL), 409);
  CHECK_EQ_INT(as(at, "DELETE", "/api/v1/users/del1", NULL), 403);
  CHECK_EQ_INT(as(K2, "DELETE", "/api/v1/users/del1", NULL), 404);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/me", NULL), 200);
  CHECK_EQ_INT(as(K1, "DELETE", "/api/v1/users/del1", NULL), 200);
  CHECK_EQ_INT(as(at, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(as(key, "GET", "/api/v1/me", NULL), 401);
  CHECK_EQ_INT(refresh(rt, NULL), 401);
  CHECK_EQ_INT(login("del1", NULL, NULL, NULL), 401);
  CHECK_EQ_INT(as(K1, "DELETE", "/api/v1/users/del1", NULL), 404);
  CHECK_EQ_INT(as(K1, "PATCH", "/api/v1/users/del1", "{\"disabled\":true}"),
               404);
  resp r;
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/users?limit=100", K1, NULL, &r), 200);
  CHECK(r.body && !strstr(r.body, "\"del1\"") && strstr(r.body, "\"boss\""));
  resp_free(&r);
  /* every change above is in the audit chain */
  int seen = 0;
  char cursor[64] = "", path[160];
  for (int pages = 0; pages < 20; pages++) {
    snprintf(path, sizeof path, "/api/v1/audit-events?limit=100%s%s",
             cursor[0] ? "&cursor=" : "", cursor);
    CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
    static const char *const acts[] = {
        "\"user.update\"",         "\"user.delete\"",
        "\"membership.delete\"",   "\"user.revoke_sessions\"",
        "\"user.revoke_all\"",     "\"auth.reauth\"",
        "\"auth.password_change\""};
    for (int i = 0; i < 7; i++)
      seen |= r.body && strstr(r.body, acts[i]) ? 1 << i : 0;
    int more = json_field(r.body, "next_cursor", cursor, sizeof cursor);
    resp_free(&r);
    if (!more)
      break;
  }
  CHECK_EQ_INT(seen, 127);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s AISBXD\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(g_dir, sizeof g_dir, "/tmp/sbx-life-XXXXXX");
  if (!mkdtemp(g_dir))
    return 1;
  snprintf(g_cfg, sizeof g_cfg, "%s.conf", g_dir);
  int port = free_port();
  char extra[300], listen[64];
  snprintf(ORIGIN, sizeof ORIGIN, "https://127.0.0.1:%d", port);
  snprintf(extra, sizeof extra, "public_origin = %s\n", ORIGIN);
  snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
  api_write_config(g_cfg, extra);
  int rc = 1;
  if (api_init_tenant(g_dir, g_cfg, "t1", K1, BOOT) ||
      api_init_tenant(g_dir, g_cfg, "t2", K2, BOOT) ||
      api_start_listen(&S, g_dir, g_cfg, listen)) {
    fprintf(stderr, "aisbxd did not start\n");
  } else if (as(K1, "POST", "/api/v1/projects",
                "{\"id\":\"pa\",\"name\":\"Project A\"}") != 201) {
    fprintf(stderr, "project setup failed\n");
  } else {
    RUN(viewer_key_cannot_change_credentials);
    RUN(reauth_with_access_token);
    RUN(reauth_with_session);
    RUN(admin_resets_totp);
    RUN(demote_disable_enable);
    RUN(remove_member);
    RUN(revoke_sessions);
    RUN(delete_user);
    rc = harness_report();
  }
  int st = api_stop(&S);
  if (st != 0) {
    fprintf(stderr, "aisbxd exit status after SIGTERM: %d\n", st);
    rc = 1;
  }
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", g_dir, g_cfg);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
  curl_global_cleanup();
  return rc;
}
