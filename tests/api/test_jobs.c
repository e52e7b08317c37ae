/*
 * test_jobs.c - black-box tests of the job routes and the worker protocol
 * of aisbxd over real TLS (issue 11): the catalogue, spec validation,
 * limits, the claim / model / heartbeat / results / finish flow driven by
 * this test acting as the worker, job-token scope, cancel in every state,
 * fair share, lease expiry re-queue, server-sent events, worker-token CLI.
 * usage: test_jobs /path/to/aisbxd [fake_worker.sh]
 */
#include "api_testutil.h"

#include <jansson.h>

#include "../harness.h"
#include "sbx/crypto.h"
#include "sbx/jobspec.h"

static srv S;
static char g_dir[256], g_cfg[300];
static char K1[200], K2[200], BOOT[200];
static char WTOK[200], WTOK_ID[64];
static char M1[64], D1[64], M2[64], D2[64], MX[64];
static const char MODEL_BYTES[] = "model bytes: not parsed by the server";
static const char DATA_BYTES[] = "dataset bytes \x01\x02\x03";

/* ---- helpers ---- */

static json_t *body_json(const resp *r) {
  json_error_t e;
  return json_loadb(r->body, r->len, 0, &e);
}

static int upload(const char *key, const char *project, const char *kind,
                  const char *name, const char *bytes, size_t n, char id[64]) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/%s/%ss?name=%s", project, kind,
           name);
  req_opts o = {key, "application/octet-stream", bytes, n, NULL, 0, 0};
  resp r;
  long st = http(&S, "POST", path, &o, &r);
  int ok = st == 201 && json_field(r.body, "id", id, 64);
  if (!ok)
    fprintf(stderr, "upload: %ld %s\n", st, r.body);
  resp_free(&r);
  return ok ? 0 : -1;
}

static int mk_project(const char *key, const char *id) {
  char body[128];
  snprintf(body, sizeof body, "{\"id\":\"%s\",\"name\":\"x\"}", id);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/projects", key, body, &r);
  resp_free(&r);
  return st == 201 ? 0 : -1;
}

/* POST a job with the given JSON body to project p; id receives its id on
 * 201. Returns the status; the response body is left in out when given. */
static long post_job(const char *key, const char *p, const char *body,
                     char id[64], resp *out) {
  char path[128];
  snprintf(path, sizeof path, "/api/v1/projects/%s/jobs", p);
  resp r;
  long st = jreq(&S, "POST", path, key, body, &r);
  if (id && st == 201)
    json_field(r.body, "id", id, 64);
  if (out)
    *out = r;
  else
    resp_free(&r);
  return st;
}

static long new_job(const char *key, const char *p, const char *m,
                    const char *d, char id[64]) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"fgsm\",\"eps\":0.25,\"seed\":11}}",
           m, d);
  return post_job(key, p, body, id, NULL);
}

static json_t *g_last_claim; /* the last claim answer */

typedef struct claim {
  char job[64];
  char token[200];
  long shard, attempt;
} claim;

/* POST /worker/claim with wait seconds: status; c filled on 200. */
static long do_claim(const char *wtok, int wait, claim *c) {
  char body[64];
  snprintf(body, sizeof body, "{\"worker\":\"tw\",\"wait\":%d}", wait);
  resp r;
  long st = jreq(&S, "POST", "/api/v1/worker/claim", wtok, body, &r);
  memset(c, 0, sizeof *c);
  if (st == 200) {
    json_t *j = body_json(&r);
    json_decref(g_last_claim);
    g_last_claim = json_incref(j);
    snprintf(c->job, sizeof c->job, "%s",
             json_string_value(json_object_get(j, "job")));
    snprintf(c->token, sizeof c->token, "%s",
             json_string_value(json_object_get(j, "token")));
    c->shard = (long)json_integer_value(json_object_get(j, "shard"));
    c->attempt = (long)json_integer_value(json_object_get(j, "attempt"));
    json_decref(j);
  }
  resp_free(&r);
  return st;
}

static long wget(const claim *c, const char *what, resp *r) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/worker/jobs/%s/%s", c->job, what);
  return jreq(&S, "GET", path, c->token, NULL, r);
}

static long wpost(const claim *c, const char *what, const char *body) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/worker/jobs/%s/%s", c->job, what);
  resp r;
  long st = jreq(&S, "POST", path, c->token, body, &r);
  if (st >= 300)
    fprintf(stderr, "wpost %s: %ld %s\n", what, st, r.body);
  resp_free(&r);
  return st;
}

static long wput(const claim *c, const char *name, const void *b, size_t n) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/worker/jobs/%s/results/%s", c->job,
           name);
  req_opts o = {c->token, "application/octet-stream", b, n, NULL, 0, 0};
  resp r;
  long st = http(&S, "PUT", path, &o, &r);
  resp_free(&r);
  return st;
}

/* GET the job as JSON (new reference, NULL unless 200). */
static json_t *get_job(const char *key, const char *p, const char *id) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/%s/jobs/%s", p, id);
  resp r;
  long st = jreq(&S, "GET", path, key, NULL, &r);
  json_t *j = st == 200 ? body_json(&r) : NULL;
  resp_free(&r);
  return j;
}

static const char *jstate(json_t *j) {
  return j ? json_string_value(json_object_get(j, "state")) : "";
}

/* Cancels every queued/running job of project p (isolates the tests:
 * the queue is shared). */
static void drain(const char *key, const char *p) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/%s/jobs?limit=100", p);
  resp r;
  jreq(&S, "GET", path, key, NULL, &r);
  json_t *j = body_json(&r);
  resp_free(&r);
  json_t *items = json_object_get(j, "items"), *it;
  size_t i;
  json_array_foreach(items, i, it) {
    const char *st = jstate(it);
    if (!strcmp(st, "queued") || !strcmp(st, "running")) {
      snprintf(path, sizeof path, "/api/v1/projects/%s/jobs/%s/cancel", p,
               json_string_value(json_object_get(it, "id")));
      jreq(&S, "POST", path, key, NULL, &r);
      resp_free(&r);
    }
  }
  json_decref(j);
}

/* ---- tests ---- */

TEST(catalogue) {
  resp r;
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/attacks", K1, NULL, &r), 200);
  json_t *got = body_json(&r);
  json_t *want = sbx_attack_catalogue(); /* the reference: the C function */
  CHECK(got && want && json_equal(got, want));
  json_decref(got);
  json_decref(want);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/attacks", NULL, NULL, &r), 401);
  resp_free(&r);
}

TEST(spec_validation) {
  struct {
    const char *spec; /* JSON inside "spec": */
    const char *names;
  } bad[] = {
      {"{\"kind\":\"attack\",\"attack\":\"pgd\",\"eps\":\"big\"}", "eps"},
      {"{\"kind\":\"attack\",\"attack\":\"pgd\",\"steps\":-3}", "steps"},
      {"{\"kind\":\"attack\",\"attack\":\"nosuch\"}", "attack"},
      {"{\"kind\":\"attack\",\"attack\":\"pgd\",\"stepz\":3}", "stepz"},
      {"{\"kind\":\"attack\",\"attack\":\"pgd\",\"norm\":\"7\"}", "norm"},
      {"{\"kind\":\"evaluation\",\"suite\":\"nosuite\"}", "suite"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":%s}", M1, D1,
             bad[i].spec);
    resp r;
    long st = post_job(K1, "p1", body, NULL, &r);
    CHECK_EQ_INT(st, 400);
    json_t *j = body_json(&r);
    const char *detail = json_string_value(json_object_get(j, "detail"));
    if (!detail || !strstr(detail, bad[i].names))
      fprintf(stderr, "spec %s: detail %s\n", bad[i].spec,
              detail ? detail : "(none)");
    CHECK(detail && strstr(detail, bad[i].names));
    json_decref(j);
    resp_free(&r);
  }
  /* the model must be a model of this project (tenant) */
  char body[512];
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"pgd\"}}",
           MX, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, NULL, NULL), 400);
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"pgd\"}}",
           M2, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, NULL, NULL), 400);
  /* the legacy form is converted and stored as the canonical spec */
  char id[64];
  snprintf(body, sizeof body,
           "{\"attack\":\"pgd\",\"model_id\":\"%s\",\"dataset_id\":\"%s\","
           "\"params\":{\"eps\":0.03,\"steps\":10},\"seed\":7}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, id, NULL), 201);
  json_t *j = get_job(K1, "p1", id);
  adv_job_spec s;
  char err[256];
  const char *ref = "{\"kind\":\"attack\",\"attack\":\"pgd\",\"eps\":0.03,"
                    "\"steps\":10,\"seed\":7}";
  CHECK(sbx_jobspec_parse(ref, strlen(ref), &s, err, sizeof err) == 0);
  json_t *want = sbx_jobspec_to_json(&s);
  CHECK(j && want && json_equal(json_object_get(j, "spec"), want));
  json_decref(want);
  json_decref(j);
  /* spec and the legacy fields together: refused */
  snprintf(body, sizeof body,
           "{\"attack\":\"pgd\",\"model_id\":\"%s\",\"dataset_id\":\"%s\","
           "\"spec\":{\"kind\":\"attack\",\"attack\":\"pgd\"}}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, NULL, NULL), 400);
  drain(K1, "p1");
}

TEST(limits) {
  resp r;
  /* a viewer-free check: only an Admin reads and sets them */
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/tenants/t1/job-limits", K1,
                    "{\"max_wall_seconds\":100,\"default_wall_seconds\":50}",
                    &r),
               200);
  json_t *j = body_json(&r);
  CHECK_EQ_INT(json_integer_value(json_object_get(
                   json_object_get(j, "effective"), "max_wall_seconds")),
               100);
  json_decref(j);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/tenants/t1/job-limits", K1,
                    "{\"max_wall_seconds\":-7}", &r),
               400);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/tenants/t2/job-limits", K1, NULL, &r),
               404);
  resp_free(&r);
  char body[512], id[64];
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"fgsm\"},\"limits\":{\"wall_seconds\":"
           "200}}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, NULL, &r), 400);
  CHECK(strstr(r.body, "wall_seconds") != NULL);
  resp_free(&r);
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"fgsm\"},\"limits\":{\"wall_seconds\":"
           "200,\"clamp\":true}}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, id, NULL), 201);
  j = get_job(K1, "p1", id);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "limits"),
                                                  "wall_seconds")),
               100);
  json_decref(j);
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, id), 201); /* the default */
  j = get_job(K1, "p1", id);
  CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "limits"),
                                                  "wall_seconds")),
               50);
  json_decref(j);
  CHECK_EQ_INT(jreq(&S, "PUT", "/api/v1/tenants/t1/job-limits", K1, "{}", &r),
               200);
  resp_free(&r);
  drain(K1, "p1");
}

TEST(claim_nothing_is_204) {
  claim c;
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  CHECK_EQ_INT(do_claim(WTOK, 1, &c), 204);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double dt = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
  CHECK(dt >= 0.9 && dt < 5);
  CHECK_EQ_INT(do_claim(WTOK, 0, &c), 204); /* wait 0: at once */
}

TEST(worker_flow) {
  char id[64];
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, id), 201);
  claim c;
  CHECK_EQ_INT(do_claim(WTOK, 5, &c), 200);
  CHECK(!strcmp(c.job, id));
  CHECK_EQ_INT(c.attempt, 1);
  /* the claim names the model and its plaintext digest */
  uint8_t h[32];
  char hex[65];
  CHECK(sbx_sha256(MODEL_BYTES, sizeof MODEL_BYTES - 1, h) == 0);
  sbx_hex(h, 32, hex);
  json_t *mo = json_object_get(g_last_claim, "model");
  CHECK(!strcmp(json_string_value(json_object_get(mo, "sha256")), hex));
  CHECK(!strcmp(json_string_value(json_object_get(mo, "name")), "m"));
  CHECK_EQ_INT(json_integer_value(json_object_get(mo, "bytes")),
               sizeof MODEL_BYTES - 1);
  json_t *j = get_job(K1, "p1", id);
  CHECK(!strcmp(jstate(j), "running"));
  json_decref(j);
  resp r;
  CHECK_EQ_INT(wget(&c, "model", &r), 200);
  CHECK(r.len == sizeof MODEL_BYTES - 1 && !memcmp(r.body, MODEL_BYTES, r.len));
  resp_free(&r);
  CHECK_EQ_INT(wget(&c, "dataset", &r), 200);
  CHECK(r.len == sizeof DATA_BYTES - 1 && !memcmp(r.body, DATA_BYTES, r.len));
  resp_free(&r);
  CHECK_EQ_INT(wpost(&c, "heartbeat",
                     "{\"fraction\":0.25,\"phase\":\"fgsm\",\"robust_"
                     "accuracy\":0.5,\"eta_seconds\":4}"),
               200);
  j = get_job(K1, "p1", id);
  json_t *p = json_object_get(j, "progress");
  CHECK_NEAR(json_number_value(json_object_get(p, "fraction")), 0.25, 1e-6);
  CHECK(!strcmp(json_string_value(json_object_get(p, "phase")), "fgsm"));
  CHECK_NEAR(json_number_value(json_object_get(p, "robust_accuracy")), 0.5,
             1e-6);
  json_decref(j);
  /* results: capped names only */
  static const char RESULT[] = "{\"schema\":\"aisbx.result.v1\",\"x\":1}";
  static const char NPY[] = "\x93NUMPY fake";
  CHECK_EQ_INT(wput(&c, "result.json", RESULT, sizeof RESULT - 1), 201);
  CHECK_EQ_INT(wput(&c, "adversarial.npy", NPY, sizeof NPY - 1), 201);
  CHECK_EQ_INT(wput(&c, "gallery-0.png", "png0", 4), 201);
  CHECK_EQ_INT(wput(&c, "gallery-1.png", "png1", 4), 201);
  CHECK_EQ_INT(wput(&c, "gallery-16.png", "x", 1), 404);
  CHECK_EQ_INT(wput(&c, "secrets.txt", "x", 1), 404);
  char *big = calloc(1, (4u << 20) + 10); /* a PNG over its 4 MiB cap */
  CHECK_EQ_INT(wput(&c, "gallery-2.png", big, (4u << 20) + 10), 413);
  free(big);
  /* nothing readable before the job ends? results are per job: none yet */
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 404);
  resp_free(&r);
  CHECK_EQ_INT(wpost(&c, "finish",
                     "{\"state\":\"succeeded\",\"sandbox\":{\"memory\":"
                     "\"rlimit-as\",\"seccomp\":true}}"),
               200);
  j = get_job(K1, "p1", id);
  CHECK(!strcmp(jstate(j), "succeeded"));
  CHECK(json_object_get(j, "finished_at") &&
        json_integer_value(json_object_get(j, "finished_at")) > 0);
  json_t *sb = json_object_get(
      json_array_get(json_object_get(j, "shard_list"), 0), "sandbox");
  CHECK(sb &&
        !strcmp(json_string_value(json_object_get(sb, "memory")), "rlimit-as"));
  json_decref(j);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  CHECK(r.len == sizeof RESULT - 1 && !memcmp(r.body, RESULT, r.len));
  resp_free(&r);
  snprintf(path, sizeof path,
           "/api/v1/projects/p1/jobs/%s/results/adversarial.npy", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  CHECK(r.len == sizeof NPY - 1 && !memcmp(r.body, NPY, r.len));
  resp_free(&r);
  snprintf(path, sizeof path,
           "/api/v1/projects/p1/jobs/%s/results/gallery/1.png", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  CHECK(r.len == 4 && !memcmp(r.body, "png1", 4));
  resp_free(&r);
  snprintf(path, sizeof path,
           "/api/v1/projects/p1/jobs/%s/results/gallery/2.png", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 404);
  resp_free(&r);
  /* the other tenant cannot see them */
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K2, NULL, &r), 404);
  resp_free(&r);
  /* the job token is dead after finish */
  CHECK_EQ_INT(wget(&c, "model", &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(wpost(&c, "finish", "{\"state\":\"succeeded\"}"), 401);
  /* result files never lie in plaintext on disk */
  char cmd[600];
  snprintf(cmd, sizeof cmd, "grep -rlq 'aisbx.result.v1' '%s' 2>/dev/null",
           g_dir);
  CHECK(system(cmd) != 0);
}

TEST(token_scope) {
  char a[64], b[64];
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, a), 201);
  CHECK_EQ_INT(new_job(K2, "p2", M2, D2, b), 201);
  claim ca, cb;
  CHECK_EQ_INT(do_claim(WTOK, 5, &ca), 200);
  CHECK_EQ_INT(do_claim(WTOK, 5, &cb), 200);
  CHECK(strcmp(ca.job, cb.job) != 0);
  /* ca's token on cb's job: refused, and its model is never sent */
  claim mix = cb;
  snprintf(mix.token, sizeof mix.token, "%s", ca.token);
  resp r;
  CHECK_EQ_INT(wget(&mix, "model", &r), 403);
  CHECK(!strstr(r.body, MODEL_BYTES));
  resp_free(&r);
  CHECK_EQ_INT(wpost(&mix, "heartbeat", "{}"), 403);
  CHECK_EQ_INT(wpost(&mix, "finish", "{\"state\":\"succeeded\"}"), 403);
  /* tokens of the worker protocol open no user route, and the reverse */
  const char *user_paths[] = {"/api/v1/projects", "/api/v1/me",
                              "/api/v1/attacks", "/api/v1/projects/p1/jobs"};
  for (size_t i = 0; i < 4; i++) {
    CHECK_EQ_INT(jreq(&S, "GET", user_paths[i], ca.token, NULL, &r), 403);
    resp_free(&r);
    CHECK_EQ_INT(jreq(&S, "GET", user_paths[i], WTOK, NULL, &r), 403);
    resp_free(&r);
  }
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/worker/claim", ca.token, "{}", &r),
               403);
  resp_free(&r);
  claim as_worker = ca;
  snprintf(as_worker.token, sizeof as_worker.token, "%s", WTOK);
  CHECK_EQ_INT(wget(&as_worker, "model", &r), 403);
  resp_free(&r);
  claim as_user = ca;
  snprintf(as_user.token, sizeof as_user.token, "%s", K1);
  CHECK_EQ_INT(wget(&as_user, "model", &r), 403);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/worker/claim", K1, "{}", &r), 403);
  resp_free(&r);
  /* a forged job token */
  claim forged = ca;
  forged.token[strlen(forged.token) - 1] ^= 1;
  CHECK_EQ_INT(wget(&forged, "model", &r), 401);
  resp_free(&r);
  CHECK_EQ_INT(wpost(&ca, "finish", "{\"state\":\"failed\",\"reason\":\"x\"}"),
               200);
  CHECK_EQ_INT(wpost(&cb, "finish", "{\"state\":\"succeeded\"}"), 200);
  json_t *j = get_job(K1, "p1", ca.job);
  if (!j)
    j = get_job(K2, "p2", ca.job);
  CHECK(!strcmp(jstate(j), "failed"));
  CHECK(!strcmp(json_string_value(json_object_get(j, "reason")), "x"));
  json_decref(j);
}

static long cancel(const char *key, const char *p, const char *id,
                   json_t **out) {
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/%s/jobs/%s/cancel", p, id);
  resp r;
  long st = jreq(&S, "POST", path, key, NULL, &r);
  if (out)
    *out = body_json(&r);
  resp_free(&r);
  return st;
}

TEST(cancel_every_state) {
  char q[64], run[64];
  json_t *j = NULL;
  /* queued: cancelled at once, never claimed */
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, q), 201);
  CHECK_EQ_INT(cancel(K1, "p1", q, &j), 200);
  CHECK(!strcmp(jstate(j), "cancelled"));
  json_decref(j);
  claim c;
  CHECK_EQ_INT(do_claim(WTOK, 0, &c), 204);
  /* running: requested; the heartbeat says so; the worker finishes */
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, run), 201);
  CHECK_EQ_INT(do_claim(WTOK, 5, &c), 200);
  CHECK(!strcmp(c.job, run));
  CHECK_EQ_INT(cancel(K1, "p1", run, &j), 200);
  CHECK(json_is_true(json_object_get(j, "cancel_requested")));
  json_decref(j);
  char path[256];
  snprintf(path, sizeof path, "/api/v1/worker/jobs/%s/heartbeat", c.job);
  resp r;
  CHECK_EQ_INT(jreq(&S, "POST", path, c.token, "{\"fraction\":0.1}", &r), 200);
  j = body_json(&r);
  CHECK(json_is_true(json_object_get(j, "cancel")));
  json_decref(j);
  resp_free(&r);
  CHECK_EQ_INT(wpost(&c, "finish", "{\"state\":\"cancelled\"}"), 200);
  j = get_job(K1, "p1", run);
  CHECK(!strcmp(jstate(j), "cancelled"));
  json_decref(j);
  /* finished: nothing changes */
  CHECK_EQ_INT(cancel(K1, "p1", run, &j), 200);
  CHECK(!strcmp(jstate(j), "cancelled"));
  json_decref(j);
  /* a viewer may not cancel (a viewer user's access token: API keys are
   * created by a recent password login only, issue 12 item 2) */
  char vkey[1200] = "";
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/users", K1,
                    "{\"id\":\"jobviewer\",\"email\":\"jobviewer@t1.example\","
                    "\"password\":\"password-of-jobviewer\",\"role\":"
                    "\"viewer\"}",
                    &r),
               201);
  resp_free(&r);
  CHECK_EQ_INT(jreq(&S, "POST", "/api/v1/auth/token", NULL,
                    "{\"grant_type\":\"password\",\"tenant\":\"t1\",\"email\":"
                    "\"jobviewer@t1.example\",\"password\":\"password-of-"
                    "jobviewer\"}",
                    &r),
               200);
  CHECK(json_field(r.body, "access_token", vkey, sizeof vkey));
  resp_free(&r);
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, q), 201);
  CHECK_EQ_INT(cancel(vkey, "p1", q, NULL), 403);
  CHECK_EQ_INT(cancel(K1, "p1", q, NULL), 200);
}

TEST(fair_share) {
  drain(K1, "p1");
  drain(K2, "p2");
  char id[64], first_a[64] = "";
  for (int i = 0; i < 50; i++) {
    CHECK_EQ_INT(new_job(K1, "p1", M1, D1, id), 201);
    if (!i)
      snprintf(first_a, sizeof first_a, "%s", id);
  }
  claim c1, c2, c3;
  CHECK_EQ_INT(do_claim(WTOK, 2, &c1), 200);
  CHECK(!strcmp(c1.job, first_a)); /* FIFO within a tenant */
  char b[64];
  CHECK_EQ_INT(new_job(K2, "p2", M2, D2, b), 201);
  CHECK_EQ_INT(do_claim(WTOK, 2, &c2), 200);
  CHECK(!strcmp(c2.job, b)); /* B first, despite A's 49 queued */
  CHECK_EQ_INT(do_claim(WTOK, 2, &c3), 200);
  json_t *j = get_job(K1, "p1", c3.job); /* then A again */
  CHECK(j != NULL);
  json_decref(j);
  wpost(&c1, "finish", "{\"state\":\"succeeded\"}");
  wpost(&c2, "finish", "{\"state\":\"succeeded\"}");
  wpost(&c3, "finish", "{\"state\":\"succeeded\"}");
  drain(K1, "p1");
}

TEST(lease_expiry_requeues) {
  char id[64];
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, id), 201);
  claim c;
  CHECK_EQ_INT(do_claim(WTOK, 2, &c), 200);
  CHECK(!strcmp(c.job, id));
  /* no heartbeat: the lease (30 s: long enough that the other cases'
   * workers keep theirs on a loaded machine under ASan) expires, the sweep
   * (every 2 s) re-queues */
  json_t *j = NULL;
  int requeued = 0;
  for (int i = 0; i < 450 && !requeued; i++) {
    usleep(100000);
    j = get_job(K1, "p1", id);
    json_t *sh = json_array_get(json_object_get(j, "shard_list"), 0);
    requeued = !strcmp(jstate(sh), "queued");
    json_decref(j);
  }
  CHECK(requeued);
  resp r;
  CHECK_EQ_INT(wget(&c, "model", &r), 401); /* the stale worker is out */
  resp_free(&r);
  claim c2;
  CHECK_EQ_INT(do_claim(WTOK, 2, &c2), 200);
  CHECK(!strcmp(c2.job, id));
  CHECK_EQ_INT(c2.attempt, 2);
  CHECK_EQ_INT(wpost(&c, "finish", "{\"state\":\"succeeded\"}"), 401);
  CHECK_EQ_INT(wpost(&c2, "finish", "{\"state\":\"succeeded\"}"), 200);
}

TEST(events_stream) {
  char id[64];
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, id), 201);
  pid_t pid = fork();
  if (pid == 0) { /* the worker, on its own connection */
    S.c = NULL;
    usleep(500000);
    claim c;
    int ok =
        do_claim(WTOK, 5, &c) == 200 && !strcmp(c.job, id) &&
        wpost(&c, "heartbeat", "{\"fraction\":0.5,\"phase\":\"fgsm\"}") == 200;
    usleep(300000);
    ok = ok && wpost(&c, "finish", "{\"state\":\"succeeded\"}") == 200;
    _exit(ok ? 0 : 1);
  }
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/events", id);
  resp r;
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200); /* ends with job */
  int st = -1;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char ct[128] = "";
  resp_header(&r, "Content-Type", ct, sizeof ct);
  CHECK(!strncmp(ct, "text/event-stream", 17));
  const char *q = strstr(r.body, "\"to\":\"queued\"");
  const char *ru = q ? strstr(q, "\"to\":\"running\"") : NULL;
  const char *pr = ru ? strstr(ru, "\"phase\":\"fgsm\"") : NULL;
  const char *su = pr ? strstr(pr, "\"to\":\"succeeded\"") : NULL;
  const char *en = su ? strstr(su, "event: end") : NULL;
  if (!en)
    fprintf(stderr, "stream:\n%s\n", r.body);
  CHECK(q && ru && pr && su && en);
  resp_free(&r);
  /* an ended job: the whole history, then the end, at once */
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  CHECK(strstr(r.body, "event: end") != NULL);
  resp_free(&r);
  /* Last-Event-ID resumes after that event */
  const char *hdr[] = {"Last-Event-ID: 2", NULL};
  req_opts o = {K1, NULL, NULL, 0, hdr, 0, 0};
  CHECK_EQ_INT(http(&S, "GET", path, &o, &r), 200);
  CHECK(!strstr(r.body, "id: 1\n") && !strstr(r.body, "id: 2\n") &&
        strstr(r.body, "id: 3\n"));
  resp_free(&r);
}

TEST(worker_token_cli) {
  char cmd[800], line[512];
  snprintf(cmd, sizeof cmd,
           "%s worker-token create --data-dir %s --config %s --name second",
           g_aisbxd, g_dir, g_cfg);
  FILE *p = popen(cmd, "r");
  char tok[200] = "", tid[64] = "";
  while (p && fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "worker-token: ", 14))
      snprintf(tok, sizeof tok, "%.190s", line + 14);
    if (!strncmp(line, "worker-token-id: ", 17))
      snprintf(tid, sizeof tid, "%.60s", line + 17);
  }
  CHECK(p && pclose(p) == 0 && tok[0] && tid[0]);
  claim c;
  CHECK_EQ_INT(do_claim(tok, 0, &c), 204);
  snprintf(cmd, sizeof cmd, "%s worker-token list --data-dir %s --config %s",
           g_aisbxd, g_dir, g_cfg);
  p = popen(cmd, "r");
  int listed = 0, leaked = 0;
  while (p && fgets(line, sizeof line, p)) {
    listed |= !strncmp(line, tid, strlen(tid));
    leaked |= strstr(line, strchr(tok, '.') + 1) != NULL;
  }
  CHECK(p && pclose(p) == 0 && listed && !leaked);
  snprintf(cmd, sizeof cmd,
           "%s worker-token revoke %s --data-dir %s --config %s >/dev/null",
           g_aisbxd, tid, g_dir, g_cfg);
  CHECK(system(cmd) == 0);
  CHECK_EQ_INT(do_claim(tok, 0, &c), 401);
  CHECK_EQ_INT(do_claim(WTOK, 0, &c), 204); /* the other one still works */
}

TEST(list_pages) {
  char a[64], b[64];
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, a), 201);
  CHECK_EQ_INT(new_job(K1, "p1", M1, D1, b), 201);
  resp r;
  CHECK_EQ_INT(
      jreq(&S, "GET", "/api/v1/projects/p1/jobs?limit=1", K1, NULL, &r), 200);
  json_t *j = body_json(&r);
  resp_free(&r);
  json_t *items = json_object_get(j, "items");
  const char *next = json_string_value(json_object_get(j, "next_cursor"));
  CHECK(json_array_size(items) == 1 && next);
  CHECK(!strcmp(
      json_string_value(json_object_get(json_array_get(items, 0), "id")),
      b)); /* newest first */
  char path[256];
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs?limit=1&cursor=%s",
           next ? next : "");
  json_decref(j);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  j = body_json(&r);
  resp_free(&r);
  items = json_object_get(j, "items");
  CHECK(json_array_size(items) == 1 &&
        !strcmp(
            json_string_value(json_object_get(json_array_get(items, 0), "id")),
            a));
  json_decref(j);
  CHECK_EQ_INT(
      jreq(&S, "GET", "/api/v1/projects/p1/jobs?state=queued", K1, NULL, &r),
      200);
  CHECK(strstr(r.body, a) && !strstr(r.body, "\"state\":\"succeeded\""));
  resp_free(&r);
  /* another tenant's list never shows them */
  CHECK_EQ_INT(jreq(&S, "GET", "/api/v1/projects/p2/jobs", K2, NULL, &r), 200);
  CHECK(!strstr(r.body, a) && !strstr(r.body, b));
  resp_free(&r);
  drain(K1, "p1");
}

TEST(sharded_job) {
  drain(K1, "p1");
  char body[512], id[64];
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"fgsm\",\"n\":10},\"shards\":2}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, id, NULL), 201);
  claim c[2];
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(do_claim(WTOK, 2, &c[k]), 200);
    CHECK(!strcmp(c[k].job, id));
    CHECK_EQ_INT(c[k].shard, k);
    /* each shard's spec is its contiguous slice of the 10 samples */
    json_t *sp = json_object_get(g_last_claim, "spec");
    CHECK_EQ_INT(json_integer_value(json_object_get(sp, "shard_offset")),
                 5 * k);
    CHECK_EQ_INT(json_integer_value(json_object_get(sp, "shard_count")), 5);
    CHECK_EQ_INT(
        json_integer_value(json_object_get(g_last_claim, "sample_begin")),
        5 * k);
  }
  CHECK_EQ_INT(wput(&c[0], "result.json", "{\"s\":0}", 7), 201);
  CHECK_EQ_INT(wput(&c[1], "result.json", "{\"s\":1}", 7), 201);
  CHECK_EQ_INT(wpost(&c[1], "finish", "{\"state\":\"succeeded\"}"), 200);
  json_t *j = get_job(K1, "p1", id);
  CHECK(!strcmp(jstate(j), "running")); /* shard 0 still runs */
  json_decref(j);
  CHECK_EQ_INT(wpost(&c[0], "finish", "{\"state\":\"succeeded\"}"), 200);
  /* these shard "results" are no result documents: the server's merge
   * refuses them and the job fails, saying why */
  j = get_job(K1, "p1", id);
  CHECK(!strcmp(jstate(j), "failed"));
  const char *msg = json_string_value(json_object_get(j, "message"));
  CHECK(msg && strstr(msg, "merging the shards' results: shard 0: schema"));
  if (msg && !strstr(msg, "merging"))
    fprintf(stderr, "message: %s\n", msg);
  json_decref(j);
  char path[256];
  resp r;
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 409);
  resp_free(&r);
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results?shard=1",
           id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  CHECK(r.len == 7 && !memcmp(r.body, "{\"s\":1}", 7));
  resp_free(&r);
}

/* ---- a sharded job's merged results ---- */

static const char *g_aisbx, *g_fixtures; /* argv[3], argv[4] */

/* The whole file (malloc'd) or NULL. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) {
    b[n] = 0;
    *len = (size_t)n;
  }
  return b;
}

/* Blanks the number after every "wall_time_s": (timings are not
 * compared), in place; the new length. */
static size_t blank_times(char *b, size_t n) {
  static const char key[] = "\"wall_time_s\":";
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    if (n - i >= sizeof key - 1 && !memcmp(b + i, key, sizeof key - 1)) {
      memmove(b + o, b + i, sizeof key - 1);
      o += sizeof key - 1;
      i += sizeof key - 1;
      while (i < n && b[i] != ',' && b[i] != '}')
        i++;
      b[o++] = 'T';
    } else
      b[o++] = b[i++];
  }
  return o;
}

/* Runs aisbx attack pgd (eps 0.2, 3 steps) on the demo data into
 * dir/<tag>.json and .npy: the whole 8 samples (count 0) or a slice. (Not
 * FGSM: its single sign step is not bit-exact over batch compositions,
 * see tests/job/shard_merge.py.) */
static int cli_run(const char *tag, int offset, int count) {
  char cmd[1600], sl[96] = "--n 8";
  if (count)
    snprintf(sl, sizeof sl, "--shard-offset %d --shard-count %d", offset,
             count);
  snprintf(
      cmd, sizeof cmd,
      "%s attack --model %s/mnist_cnn.onnx --data %s/demo_mnist.npz "
      "--attack pgd --eps 0.2 --steps 3 %s --out %s/%s.json --adv %s/%s.npy "
      "--quiet >/dev/null",
      g_aisbx, g_fixtures, g_fixtures, sl, g_dir, tag, g_dir, tag);
  return system(cmd);
}

TEST(sharded_job_merged) {
  drain(K1, "p1");
  /* the references: the CLI on all 8 samples and on the two halves */
  CHECK_EQ_INT(cli_run("full", 0, 0), 0);
  CHECK_EQ_INT(cli_run("sh0", 0, 4), 0);
  CHECK_EQ_INT(cli_run("sh1", 4, 4), 0);
  char body[512], id[64], path[512];
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"pgd\",\"eps\":0.2,\"steps\":3,\"n\":8},"
           "\"shards\":"
           "2}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, id, NULL), 201);
  claim c[2];
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(do_claim(WTOK, 2, &c[k]), 200);
    CHECK(!strcmp(c[k].job, id));
  }
  /* the test is the worker: each shard uploads the CLI's files of its
   * slice, and one gallery strip */
  for (int k = 0; k < 2; k++) {
    int s = (int)c[k].shard;
    size_t n;
    snprintf(path, sizeof path, "%s/sh%d.json", g_dir, s);
    char *doc = slurp(path, &n);
    CHECK(doc != NULL);
    CHECK_EQ_INT(wput(&c[k], "result.json", doc, doc ? n : 0), 201);
    free(doc);
    snprintf(path, sizeof path, "%s/sh%d.npy", g_dir, s);
    char *npy = slurp(path, &n);
    CHECK(npy != NULL);
    CHECK_EQ_INT(wput(&c[k], "adversarial.npy", npy, npy ? n : 0), 201);
    free(npy);
    char png[32];
    int pl = snprintf(png, sizeof png, "PNG of shard %d", s);
    CHECK_EQ_INT(wput(&c[k], "gallery-0.png", png, (size_t)pl), 201);
  }
  CHECK_EQ_INT(wpost(&c[1], "finish", "{\"state\":\"succeeded\"}"), 200);
  CHECK_EQ_INT(wpost(&c[0], "finish", "{\"state\":\"succeeded\"}"), 200);
  json_t *j = get_job(K1, "p1", id);
  CHECK(!strcmp(jstate(j), "succeeded"));
  json_decref(j);
  /* the merged document is the unsharded run's, timings aside */
  resp r;
  size_t fl = 0;
  snprintf(path, sizeof path, "%s/full.json", g_dir);
  char *full = slurp(path, &fl);
  CHECK(full != NULL);
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  if (full && r.body) {
    size_t a = blank_times(full, fl), b = blank_times(r.body, r.len);
    CHECK(a == b && !memcmp(full, r.body, a));
    CHECK(strstr(r.body, "\"n\":8}") != NULL);
  }
  resp_free(&r);
  free(full);
  /* the adversarial examples: the unsharded NPY byte for byte */
  snprintf(path, sizeof path, "%s/full.npy", g_dir);
  char *fnpy = slurp(path, &fl);
  CHECK(fnpy != NULL);
  snprintf(path, sizeof path,
           "/api/v1/projects/p1/jobs/%s/results/adversarial.npy", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
  CHECK(fnpy && r.len == fl && !memcmp(r.body, fnpy, fl));
  resp_free(&r);
  free(fnpy);
  /* the gallery: the shards' strips in shard order */
  for (int g = 0; g < 2; g++) {
    char want[32];
    snprintf(want, sizeof want, "PNG of shard %d", g);
    snprintf(path, sizeof path,
             "/api/v1/projects/p1/jobs/%s/results/gallery/%d.png", id, g);
    CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 200);
    CHECK(r.len == strlen(want) && !memcmp(r.body, want, r.len));
    resp_free(&r);
  }
  snprintf(path, sizeof path,
           "/api/v1/projects/p1/jobs/%s/results/gallery/2.png", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 404);
  resp_free(&r);
  /* another tenant sees none of it */
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results", id);
  CHECK(jreq(&S, "GET", path, K2, NULL, &r) >= 403);
  resp_free(&r);
}

/* Shards whose documents are contiguous but not the slices they were given
 * (samples 4..11 for a job over 0..7): the merge refuses them, the job
 * fails saying which samples. */
TEST(sharded_job_wrong_slices) {
  drain(K1, "p1");
  CHECK_EQ_INT(cli_run("sh1", 4, 4), 0);
  CHECK_EQ_INT(cli_run("sh2", 8, 4), 0);
  char body[512], id[64], path[512];
  snprintf(body, sizeof body,
           "{\"model_id\":\"%s\",\"dataset_id\":\"%s\",\"spec\":{\"kind\":"
           "\"attack\",\"attack\":\"pgd\",\"eps\":0.2,\"steps\":3,\"n\":8},"
           "\"shards\":2}",
           M1, D1);
  CHECK_EQ_INT(post_job(K1, "p1", body, id, NULL), 201);
  claim c[2];
  for (int k = 0; k < 2; k++)
    CHECK_EQ_INT(do_claim(WTOK, 2, &c[k]), 200);
  for (int k = 0; k < 2; k++) {
    size_t n;
    snprintf(path, sizeof path, "%s/sh%d.json", g_dir, (int)c[k].shard + 1);
    char *doc = slurp(path, &n);
    CHECK(doc != NULL);
    CHECK_EQ_INT(wput(&c[k], "result.json", doc, doc ? n : 0), 201);
    free(doc);
    snprintf(path, sizeof path, "%s/sh%d.npy", g_dir, (int)c[k].shard + 1);
    char *npy = slurp(path, &n);
    CHECK_EQ_INT(wput(&c[k], "adversarial.npy", npy, npy ? n : 0), 201);
    free(npy);
  }
  CHECK_EQ_INT(wpost(&c[0], "finish", "{\"state\":\"succeeded\"}"), 200);
  CHECK_EQ_INT(wpost(&c[1], "finish", "{\"state\":\"succeeded\"}"), 200);
  json_t *j = get_job(K1, "p1", id);
  CHECK(!strcmp(jstate(j), "failed"));
  const char *msg = json_string_value(json_object_get(j, "message"));
  CHECK(msg && strstr(msg, "they cover samples 4..11, the shards were given "
                           "0..7"));
  json_decref(j);
  resp r;
  snprintf(path, sizeof path, "/api/v1/projects/p1/jobs/%s/results", id);
  CHECK_EQ_INT(jreq(&S, "GET", path, K1, NULL, &r), 409);
  resp_free(&r);
}

/* ---- local workers (a second server run with --workers 2) ---- */

static const char *g_fake_worker; /* argv[2]: fake_worker.sh */

/* pids of the fake workers that reported (file names of dir); returns
 * how many, and checks each line. */
static int fake_reports(const char *dir, pid_t pids[8], int *lines_ok) {
  char cmd[400], line[256];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && for f in [0-9]*; do [ -f \"$f\" ] && "
           "echo \"$f $(cat $f)\"; done 2>/dev/null",
           dir);
  FILE *p = popen(cmd, "r");
  int n = 0;
  *lines_ok = 1;
  while (p && fgets(line, sizeof line, p) && n < 8) {
    int pid = 0, code = 0, mode = 0;
    char name[64];
    if (sscanf(line, "%d %63s %d %d", &pid, name, &code, &mode) != 4)
      continue;
    pids[n++] = pid;
    /* a real claim with the token it was given: nothing queued, 204;
     * the token file is 0600 */
    if (code != 204 || mode != 600 || strncmp(name, "local-", 6))
      *lines_ok = 0;
  }
  if (p)
    pclose(p);
  return n;
}

TEST(local_workers) {
  char wdir[300];
  snprintf(wdir, sizeof wdir, "%s/fake-workers", g_dir);
  CHECK(mkdir(wdir, 0700) == 0);
  setenv("SBX_FAKE_WORKER_DIR", wdir, 1);
  srv L;
  const char *args[] = {"--workers", "2", "--worker-bin", g_fake_worker, NULL};
  CHECK(api_start_workers(&L, g_dir, g_cfg, "127.0.0.1:0", args) == 0);
  pid_t pids[8];
  int ok = 0, n = 0;
  for (int i = 0; i < 100 && n < 2; i++) {
    usleep(100000);
    n = fake_reports(wdir, pids, &ok);
  }
  CHECK_EQ_INT(n, 2);
  CHECK(ok);
  char tf[400];
  snprintf(tf, sizeof tf, "%s/local-worker.token", g_dir);
  CHECK(access(tf, F_OK) == 0);
  /* one dies: it is restarted */
  if (n == 2) {
    kill(pids[0], SIGKILL);
    for (int i = 0; i < 100 && n < 3; i++) {
      usleep(100000);
      n = fake_reports(wdir, pids, &ok);
    }
    CHECK_EQ_INT(n, 3);
    CHECK(ok);
  }
  /* shutdown stops them, revokes and removes the token */
  CHECK_EQ_INT(api_stop(&L), 0);
  for (int i = 0; i < n; i++)
    CHECK(kill(pids[i], 0) != 0);
  CHECK(access(tf, F_OK) != 0);
  char cmd[800], line[512];
  snprintf(cmd, sizeof cmd, "%s worker-token list --data-dir %s --config %s",
           g_aisbxd, g_dir, g_cfg);
  FILE *p = popen(cmd, "r");
  int local = 0, revoked = 0;
  while (p && fgets(line, sizeof line, p))
    if (strstr(line, "local workers")) {
      local++;
      revoked += strstr(line, "revoked=0") == NULL;
    }
  if (p)
    pclose(p);
  CHECK(local == 1 && revoked == 1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s AISBXD\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  g_fake_worker = argc > 2 ? argv[2] : NULL;
  g_aisbx = argc > 4 ? argv[3] : NULL;
  g_fixtures = argc > 4 ? argv[4] : NULL;
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(g_dir, sizeof g_dir, "/tmp/sbx-jobs-XXXXXX");
  if (!mkdtemp(g_dir))
    return 2;
  snprintf(g_cfg, sizeof g_cfg, "%s.conf", g_dir);
  api_write_config(g_cfg, "job_lease_s = 30\nmax_upload_bytes = 8388608\n");
  if (api_init_tenant(g_dir, g_cfg, "t1", K1, BOOT) ||
      api_init_tenant(g_dir, g_cfg, "t2", K2, BOOT)) {
    fprintf(stderr, "aisbxd init failed\n");
    return 1;
  }
  char cmd[800], line[512];
  snprintf(cmd, sizeof cmd,
           "%s worker-token create --data-dir %s --config %s --name w1",
           g_aisbxd, g_dir, g_cfg);
  FILE *p = popen(cmd, "r");
  while (p && fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "worker-token: ", 14))
      snprintf(WTOK, sizeof WTOK, "%.190s", line + 14);
    if (!strncmp(line, "worker-token-id: ", 17))
      snprintf(WTOK_ID, sizeof WTOK_ID, "%.60s", line + 17);
  }
  if (!p || pclose(p) != 0 || !WTOK[0]) {
    fprintf(stderr, "worker-token create failed\n");
    return 1;
  }
  if (api_start(&S, g_dir, g_cfg)) {
    fprintf(stderr, "aisbxd did not start\n");
    return 1;
  }
  int fx =
      mk_project(K1, "p1") || mk_project(K1, "px") || mk_project(K2, "p2") ||
      upload(K1, "p1", "model", "m", MODEL_BYTES, sizeof MODEL_BYTES - 1, M1) ||
      upload(K1, "p1", "dataset", "d", DATA_BYTES, sizeof DATA_BYTES - 1, D1) ||
      upload(K1, "px", "model", "m", MODEL_BYTES, sizeof MODEL_BYTES - 1, MX) ||
      upload(K2, "p2", "model", "m", MODEL_BYTES, sizeof MODEL_BYTES - 1, M2) ||
      upload(K2, "p2", "dataset", "d", DATA_BYTES, sizeof DATA_BYTES - 1, D2);
  if (fx) {
    fprintf(stderr, "fixture setup failed\n");
  } else {
    RUN(catalogue);
    RUN(spec_validation);
    RUN(limits);
    RUN(claim_nothing_is_204);
    RUN(worker_flow);
    RUN(token_scope);
    RUN(cancel_every_state);
    RUN(fair_share);
    RUN(lease_expiry_requeues);
    RUN(events_stream);
    RUN(sharded_job);
    if (g_aisbx) {
      RUN(sharded_job_merged);
      RUN(sharded_job_wrong_slices);
    }
    RUN(list_pages);
    RUN(worker_token_cli);
  }
  json_decref(g_last_claim);
  int stop = api_stop(&S);
  if (stop != 0) {
    fprintf(stderr, "aisbxd exit status after SIGTERM: %d\n", stop);
    harness_tests_failed++;
  }
  if (!fx && g_fake_worker)
    RUN(local_workers);
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", g_dir, g_cfg);
  if (system(cmd) != 0)
    fprintf(stderr, "cleanup failed\n");
  curl_global_cleanup();
  return fx ? 1 : harness_report();
}
