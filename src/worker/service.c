/*
 * service.c - the network half of aisbx-worker: N slots, each a thread
 * that long-polls POST /api/v1/worker/claim with the worker token, fetches
 * the claimed shard's model and dataset with the job token, runs them in a
 * fresh sandboxed runner (runner_sup.c), heartbeats while it runs (the
 * answer may ask to cancel), uploads the results and finishes the shard.
 * Runners are started ahead (sbx_runner_pool, one spare per slot, each
 * serving exactly one job and replaced after it) unless --cold-spawn: a
 * claimed job then skips exec and library loading; its limits are still
 * its own (the pool applies them when the job takes the spare).
 * Protocol: docs/worker-protocol.md. The worker holds no database
 * credential and no master key; everything goes through the API.
 */
#include "sbx/client.h"
#include "sbx/jobspec.h"
#include "sbx/runner.h"
#include "sbx/status.h"
#include "worker.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_INPUT_BYTES ((size_t)1 << 30) /* model or dataset */
#define ID_MAX 128

typedef struct slot {
  const sbx_worker_params *p;
  volatile int *stop;
  int index;
  sbx_runner_pool *pool; /* shared by the slots; NULL: cold spawns */
} slot;

/* What the heartbeat thread shares with the runner callbacks. */
typedef struct running {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  sbx_ipc_progress last;
  int have_progress;
  int done;           /* set by the slot: heartbeat thread exits */
  volatile int abort; /* set by heartbeat (cancel) or stop */
  int cancelled;      /* the server asked to cancel */
  int lost;           /* the lease is gone (401/404 on heartbeat) */
  double started;
  sbx_client *hb_client; /* heartbeat's own connection */
  const char *job, *token;
  int lease;
  const sbx_worker_params *p;
} running;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void logf_(const sbx_worker_params *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void logf_(const sbx_worker_params *p, const char *fmt, ...) {
  if (!p->log)
    return;
  char b[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof(b), fmt, ap);
  va_end(ap);
  fprintf(p->log, "aisbx-worker[%s]: %s\n", p->name ? p->name : "-", b);
  fflush(p->log);
}

/* Sleeps up to s seconds, waking early when *stop is set. */
static void nap(volatile int *stop, double s) {
  double end = now_s() + s;
  while (!*stop && now_s() < end) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

/* Job ids travel in URL paths: only [A-Za-z0-9_-], bounded. */
static int id_ok(const char *s) {
  if (!s || !*s || strlen(s) >= ID_MAX)
    return 0;
  for (const char *c = s; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
      return 0;
  return 1;
}

/* POST a JSON body with the job token; returns the HTTP status (0 on a
 * transport error) and, when want is given, the parsed answer. */
static long post_json(sbx_client *c, const char *path, const char *token,
                      json_t *body, json_t **want) {
  char *t = json_dumps(body, JSON_COMPACT);
  if (!t)
    return 0;
  sbx_client_resp r;
  char err[256];
  int rc = sbx_client_request(c, "POST", path, token, "application/json", t,
                              strlen(t), 0, &r, err, sizeof(err));
  free(t);
  if (rc)
    return 0;
  if (want) {
    json_error_t je;
    *want = r.status == 200 ? json_loadb(r.body, r.len, 0, &je) : NULL;
  }
  long st = r.status;
  sbx_client_resp_free(&r);
  return st;
}

static void on_progress(void *ud, const sbx_ipc_progress *pr) {
  running *R = ud;
  pthread_mutex_lock(&R->mu);
  R->last = *pr;
  R->have_progress = 1;
  pthread_mutex_unlock(&R->mu);
}

static void on_log(void *ud, int level, const char *text) {
  running *R = ud;
  logf_(R->p, "job %s: runner: %s", R->job, text);
}

/* The heartbeat thread: every lease/3 s sends the latest progress; a
 * cancel answer, a lost lease or the worker stopping sets R->abort. */
static void *heartbeat_main(void *arg) {
  running *R = arg;
  char path[256];
  snprintf(path, sizeof(path), "/api/v1/worker/jobs/%s/heartbeat", R->job);
  /* once a second: a heartbeat carries the cancel answer, and a running
   * job must stop within 2 s of a user's cancel (one small request per
   * running job per second; the lease itself is far longer) */
  double every = R->lease > 3 ? R->lease / 3.0 : 1.0;
  if (every > 1)
    every = 1;
  int misses = 0;
  pthread_mutex_lock(&R->mu);
  while (!R->done) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double w = every;
    ts.tv_sec += (time_t)w;
    ts.tv_nsec += (long)((w - floor(w)) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&R->cv, &R->mu, &ts);
    if (R->done)
      break;
    sbx_ipc_progress pr = R->last;
    int have = R->have_progress;
    pthread_mutex_unlock(&R->mu);
    json_t *b = json_object();
    if (have) {
      double el = now_s() - R->started;
      json_object_set_new(b, "fraction", json_real(pr.fraction));
      json_object_set_new(b, "phase", json_string(pr.phase));
      if (isfinite(pr.robust_acc))
        json_object_set_new(b, "robust_accuracy", json_real(pr.robust_acc));
      if (pr.fraction > 0.01 && pr.fraction <= 1)
        json_object_set_new(b, "eta_seconds",
                            json_real(el * (1 - pr.fraction) / pr.fraction));
    }
    json_t *ans = NULL;
    long st = post_json(R->hb_client, path, R->token, b, &ans);
    json_decref(b);
    if (st == 200 && json_is_true(json_object_get(ans, "cancel"))) {
      R->cancelled = 1;
      R->abort = 1;
    } else if (st == 401 || st == 404 || st == 409) {
      R->lost = 1; /* lease taken over or job gone: stop computing */
      R->abort = 1;
    } else if (st != 200 && ++misses >= 3) {
      logf_(R->p, "job %s: 3 heartbeats failed (HTTP %ld)", R->job, st);
    }
    if (st == 200)
      misses = 0;
    json_decref(ans);
    if (*R->p->stop_flag)
      R->abort = 1;
    pthread_mutex_lock(&R->mu);
  }
  pthread_mutex_unlock(&R->mu);
  return NULL;
}

/* GETs one input of the job into memory (capped). */
static int fetch(sbx_client *c, const char *job, const char *what,
                 const char *token, sbx_client_resp *r, char *err,
                 size_t errlen) {
  char path[256];
  snprintf(path, sizeof(path), "/api/v1/worker/jobs/%s/%s", job, what);
  int rc = sbx_client_request(c, "GET", path, token, NULL, NULL, 0, 300, r, err,
                              errlen);
  if (rc)
    return rc;
  if (r->status != 200) {
    snprintf(err, errlen, "fetching the %s: HTTP %ld", what, r->status);
    sbx_client_resp_free(r);
    return SBX_EIO;
  }
  return SBX_OK;
}

/* PUTs one result file; a failure is logged with its HTTP status or
 * transport error (the job then fails "uploading the results failed"). */
static int upload(const sbx_worker_params *p, sbx_client *c, const char *job,
                  const char *name, const char *token, const char *ctype,
                  const void *b, size_t n) {
  char path[256], err[256];
  snprintf(path, sizeof(path), "/api/v1/worker/jobs/%s/results/%s", job, name);
  sbx_client_resp r;
  int rc = sbx_client_request(c, "PUT", path, token, ctype, b, n, 300, &r, err,
                              sizeof(err));
  if (rc) {
    logf_(p, "job %s: upload of %s: %s", job, name, err);
    return rc;
  }
  long st = r.status;
  if (st != 200 && st != 201 && st != 204)
    logf_(p, "job %s: upload of %s (%zu bytes): HTTP %ld %.200s", job, name, n,
          st, r.body);
  sbx_client_resp_free(&r);
  return st == 200 || st == 201 || st == 204 ? 0 : SBX_EIO;
}

static int finish(sbx_client *c, const char *job, const char *token,
                  const char *state, const char *reason,
                  const sbx_runner_outcome *o) {
  char path[256];
  snprintf(path, sizeof(path), "/api/v1/worker/jobs/%s/finish", job);
  json_t *b =
      json_pack("{ssss}", "state", state, "reason", reason ? reason : "");
  if (o) {
    json_object_set_new(
        b, "sandbox",
        json_pack("{sssfsfsI}", "memory", sbx_memcap_name(o->memcap),
                  "ready_seconds", o->ready_seconds, "cpu_seconds",
                  o->cpu_seconds, "memory_peak", (json_int_t)o->mem_peak));
  }
  long st = post_json(c, path, token, b, NULL);
  json_decref(b);
  return st == 200 || st == 204 ? 0 : SBX_EIO;
}

/* Runs one claimed shard from its claim answer. */
static void run_claim(slot *S, sbx_client *c, json_t *claim) {
  const sbx_worker_params *p = S->p;
  const char *job = json_string_value(json_object_get(claim, "job"));
  const char *token = json_string_value(json_object_get(claim, "token"));
  json_t *specj = json_object_get(claim, "spec");
  json_t *lim = json_object_get(claim, "limits");
  int lease = (int)json_integer_value(json_object_get(claim, "lease_seconds"));
  if (!id_ok(job) || !token || strlen(token) > 512 || !specj) {
    logf_(p, "malformed claim answer ignored");
    return;
  }
  char err[600] = "";
  adv_job_spec spec;
  if (sbx_jobspec_from_json(specj, &spec, err, sizeof(err))) {
    logf_(p, "job %s: spec refused: %s", job, err);
    finish(c, job, token, "failed", err, NULL);
    return;
  }
  /* a shard runs its contiguous slice of the samples: the server's
   * [sample_begin, sample_end) (0, 0 = all), already in the claim's spec
   * as shard_offset / shard_count: set, never added (added, shard k ran
   * the slice at 2*sample_begin) */
  json_int_t sb = json_integer_value(json_object_get(claim, "sample_begin"));
  json_int_t se = json_integer_value(json_object_get(claim, "sample_end"));
  if (sb < 0 || se < 0 || (se > 0 && se <= sb)) {
    finish(c, job, token, "failed", "bad shard range from the server", NULL);
    return;
  }
  if (se > 0) { /* the server's spec already carries the slice: set, not
                 * add (adding ran shard k at twice its offset) */
    spec.shard_offset = (int64_t)sb;
    spec.shard_count = (int64_t)(se - sb);
    spec.n = 0;
  }
  sbx_client_resp model = {0}, data = {0};
  if (fetch(c, job, "model", token, &model, err, sizeof(err)) ||
      fetch(c, job, "dataset", token, &data, err, sizeof(err))) {
    logf_(p, "job %s: %s", job, err);
    sbx_client_resp_free(&model);
    finish(c, job, token, "failed", err, NULL);
    return;
  }
  sbx_runner_params rp = sbx_runner_default_params();
  rp.runner_path = p->runner_path;
  rp.threads = p->threads > 0 ? p->threads : rp.threads;
  json_int_t v;
  if ((v = json_integer_value(json_object_get(lim, "memory_bytes"))) > 0)
    rp.mem_bytes = (uint64_t)v;
  if ((v = json_integer_value(json_object_get(lim, "wall_seconds"))) > 0) {
    rp.wall_seconds = (double)v;
    rp.cpu_seconds = (unsigned)(v * (rp.threads > 0 ? rp.threads : 1) + 5);
  }
  char tag[160];
  snprintf(tag, sizeof(tag), "%s-%d-%s", p->name ? p->name : "w", S->index,
           job);
  rp.tag = tag;
  sbx_job_spec js;
  memset(&js, 0, sizeof(js));
  js.kind = SBX_JOB_RUN;
  js.job = spec;
  /* where the inputs came from, for the result document */
  json_t *mo = json_object_get(claim, "model"),
         *da = json_object_get(claim, "dataset");
  const char *sv;
  if ((sv = json_string_value(json_object_get(mo, "name"))))
    snprintf(js.model_name, sizeof(js.model_name), "%s", sv);
  if ((sv = json_string_value(json_object_get(mo, "sha256"))) &&
      strlen(sv) == 64)
    snprintf(js.model_sha256, sizeof(js.model_sha256), "%s", sv);
  if ((sv = json_string_value(json_object_get(da, "name"))))
    snprintf(js.data_name, sizeof(js.data_name), "%s", sv);
  if ((sv = json_string_value(json_object_get(da, "sha256"))) &&
      strlen(sv) == 64)
    snprintf(js.data_sha256, sizeof(js.data_sha256), "%s", sv);
  running R;
  memset(&R, 0, sizeof(R));
  pthread_mutex_init(&R.mu, NULL);
  pthread_cond_init(&R.cv, NULL);
  R.job = job;
  R.token = token;
  R.lease = lease > 0 ? lease : 30;
  R.p = p;
  R.started = now_s();
  sbx_client_params cp = sbx_client_default_params();
  cp.base_url = p->server;
  cp.ca_file = p->ca_file;
  cp.max_response = 1 << 16;
  cp.timeout_s = 15;
  pthread_t hb;
  int hb_ok = 0;
  if (!sbx_client_init(cp, &R.hb_client, err, sizeof(err)))
    hb_ok = !pthread_create(&hb, NULL, heartbeat_main, &R);
  sbx_runner_callbacks cb = {&R, NULL, on_log, on_progress};
  sbx_runner_outcome o;
  logf_(p, "job %s: running (%zu-byte model, %zu-byte dataset)", job, model.len,
        data.len);
  int rc = S->pool
               ? sbx_runner_pool_run(S->pool, &rp, &js, model.body, model.len,
                                     data.body, data.len, &cb, &R.abort, &o)
               : sbx_runner_run(&rp, &js, model.body, model.len, data.body,
                                data.len, &cb, &R.abort, &o);
  pthread_mutex_lock(&R.mu);
  R.done = 1;
  pthread_cond_signal(&R.cv);
  pthread_mutex_unlock(&R.mu);
  if (hb_ok)
    pthread_join(hb, NULL);
  sbx_client_free(R.hb_client);
  sbx_client_resp_free(&model);
  sbx_client_resp_free(&data);
  const char *state;
  const char *reason = o.reason;
  if (rc) {
    state = "failed";
  } else if (R.lost || (*p->stop_flag && !R.cancelled)) {
    /* lease gone, or this worker is stopping: leave the shard to the
     * lease sweep, which re-queues it for another worker */
    logf_(p, "job %s: %s; result discarded", job,
          R.lost ? "lease lost" : "worker stopping");
    sbx_runner_outcome_free(&o);
    goto out;
  } else if (R.cancelled) {
    state = "cancelled";
    reason = "cancelled by a user";
  } else {
    state = sbx_runner_status_name(o.status);
  }
  if (!strcmp(state, "succeeded")) {
    int up = o.result_json
                 ? upload(p, c, job, "result.json", token, "application/json",
                          o.result_json, o.result_len)
                 : SBX_EIO;
    if (!up && o.adv_npy)
      up = upload(p, c, job, "adversarial.npy", token,
                  "application/octet-stream", o.adv_npy, o.adv_npy_len);
    for (int i = 0; !up && i < o.n_gallery; i++) {
      char nm[32];
      snprintf(nm, sizeof(nm), "gallery-%d.png", i);
      up = upload(p, c, job, nm, token, "image/png", o.gallery[i],
                  o.gallery_len[i]);
    }
    if (up) {
      state = "failed";
      reason = "uploading the results failed";
    }
  }
  if (finish(c, job, token, state, reason, &o))
    logf_(p, "job %s: finish (%s) was not accepted", job, state);
  logf_(p, "job %s: %s%s%s", job, state, reason && *reason ? ": " : "",
        reason ? reason : "");
  sbx_runner_outcome_free(&o);
out:
  pthread_mutex_destroy(&R.mu);
  pthread_cond_destroy(&R.cv);
}

/* One slot: claim, run, repeat until *stop. */
static void *slot_main(void *arg) {
  slot *S = arg;
  const sbx_worker_params *p = S->p;
  sbx_client_params cp = sbx_client_default_params();
  cp.base_url = p->server;
  cp.ca_file = p->ca_file;
  cp.bearer = p->token;
  cp.max_response = (size_t)1 << 30;
  sbx_client *c = NULL;
  char err[256];
  if (sbx_client_init(cp, &c, err, sizeof(err))) {
    logf_(p, "slot %d: %s", S->index, err);
    return NULL;
  }
  double backoff = 0.5;
  char body[256];
  snprintf(body, sizeof(body), "{\"worker\":\"%s-%d\",\"wait\":%d}",
           p->name ? p->name : "worker", S->index, p->poll_seconds);
  while (!*S->stop) {
    sbx_client_resp r;
    int rc = sbx_client_request(c, "POST", "/api/v1/worker/claim", NULL,
                                "application/json", body, strlen(body),
                                p->poll_seconds + 15, &r, err, sizeof(err));
    if (rc || (r.status != 200 && r.status != 204)) {
      if (rc)
        logf_(p, "slot %d: claim: %s", S->index, err);
      else
        logf_(p, "slot %d: claim: HTTP %ld", S->index, r.status);
      if (!rc)
        sbx_client_resp_free(&r);
      nap(S->stop, backoff);
      backoff = backoff * 2 > 10 ? 10 : backoff * 2;
      continue;
    }
    backoff = 0.5;
    if (r.status == 200) {
      json_error_t je;
      json_t *claim = json_loadb(r.body, r.len, 0, &je);
      if (claim)
        run_claim(S, c, claim);
      json_decref(claim);
    }
    sbx_client_resp_free(&r);
  }
  sbx_client_free(c);
  return NULL;
}

sbx_worker_params sbx_worker_default_params(void) {
  sbx_worker_params p;
  memset(&p, 0, sizeof(p));
  p.slots = 1;
  p.poll_seconds = 20;
  p.threads = 0;
  p.log = stderr;
  p.name = "worker";
  return p;
}

int sbx__worker_serve(const sbx_worker_params *p) {
  int n = p->slots < 1 ? 1 : p->slots > 256 ? 256 : p->slots;
  slot *S = calloc((size_t)n, sizeof(*S));
  pthread_t *t = calloc((size_t)n, sizeof(*t));
  if (!S || !t) {
    free(S);
    free(t);
    return SBX_ENOMEM;
  }
  /* one runner started ahead per slot, with default limits that only
   * size its cgroup until a job takes it (then the job's apply) */
  sbx_runner_pool *pool = NULL;
  if (!p->cold_spawn) {
    sbx_runner_params rp = sbx_runner_default_params();
    rp.runner_path = p->runner_path;
    rp.threads = p->threads > 0 ? p->threads : rp.threads;
    char tag[96];
    snprintf(tag, sizeof(tag), "%s-spare", p->name ? p->name : "w");
    rp.tag = tag;
    if (sbx_runner_pool_new(&rp, n > 64 ? 64 : n, &pool))
      logf_(p, "cannot start runners ahead; every job spawns its own");
  }
  int started = 0;
  for (int i = 0; i < n; i++) {
    S[i].p = p;
    S[i].stop = p->stop_flag;
    S[i].index = i;
    S[i].pool = pool;
    if (pthread_create(&t[i], NULL, slot_main, &S[i]))
      break;
    started++;
  }
  logf_(p, "%d slot(s) claiming from %s (%s)", started, p->server,
        pool ? "one runner started ahead per slot" : "cold runner spawns");
  for (int i = 0; i < started; i++)
    pthread_join(t[i], NULL);
  sbx_runner_pool_free(pool);
  free(S);
  free(t);
  return started ? SBX_OK : SBX_EINTERNAL;
}
