/*
 * routes_jobs.c - handlers: the attack catalogue, jobs on the store's job
 * queue (sbx/jobs.h: create, get, list, cancel, results, server-sent
 * events) and the tenant's job limits. Execution is the workers'
 * (routes_worker.c, docs/worker-protocol.md). Design: docs/jobs.md.
 */
#include "routes_jobs.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "hutil.h"
#include "park.h"
#include "pool.h"
#include "reply.h"
#include "reqlog.h"
#include "sbx/jobs.h"
#include "sbx/jobspec.h"
#include "state.h"
#include "util.h"

/* ---- the catalogue ---- */

int sbx__h_attacks(sbx__req *r) {
  return sbx__reply_json(r, 200, sbx_attack_catalogue());
}

/* ---- job JSON ---- */

/* A number, or null when negative ("unknown"). */
static json_t *num_or_null(double x) {
  return x < 0 ? json_null() : json_real(x);
}

static json_t *progress_json(const sbx_job_progress *p) {
  return json_pack(
      "{s:f,s:s,s:o,s:o}", "fraction", p->fraction, "phase", p->phase,
      "robust_accuracy", num_or_null(p->robust_accuracy), "eta_seconds",
      p->eta_seconds < 0 ? json_null() : json_integer(p->eta_seconds));
}

static json_t *results_json(const sbx_job_results *res) {
  return json_pack("{s:b,s:b,s:i}", "result", res->result_id[0] != 0,
                   "adversarial", res->adv_id[0] != 0, "gallery",
                   res->n_gallery);
}

/* The object name under which the worker routes store a shard's file. */
void sbx__job_object_name(const char *job, int64_t shard, const char *file,
                          char out[SBX_NAME_MAX]) {
  snprintf(out, SBX_NAME_MAX, "%s.%" PRId64 ".%s", job, shard, file);
}

typedef struct shards_ctx {
  json_t *arr;
} shards_ctx;

/* One shard of GET .../jobs/{job}, with the sandbox the worker reported. */
static int shard_row(void *ctx, const sbx_job_shard *sh) {
  shards_ctx *c = ctx;
  json_t *o = json_pack(
      "{s:I,s:s,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:o,s:o}", "shard",
      (json_int_t)sh->shard, "state", sbx_job_state_name(sh->state),
      "sample_begin", (json_int_t)sh->sample_begin, "sample_end",
      (json_int_t)sh->sample_end, "attempts", (json_int_t)sh->attempts,
      "worker", sh->worker_id, "message", sh->message, "started_at",
      (json_int_t)sh->started_at, "finished_at", (json_int_t)sh->finished_at,
      "progress", progress_json(&sh->progress), "results",
      results_json(&sh->results));
  if (!o)
    return SBX_ENOMEM;
  json_array_append_new(c->arr, o);
  return 0;
}

/* The job as served by GET .../jobs/{job} (full = 1: spec and shards). */
static json_t *job_json(sbx__req *r, const sbx_job *j, int full) {
  json_t *o = json_pack(
      "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:o,s:{s:I,s:I,s:I},"
      "s:I,s:I,s:o}",
      "id", j->id, "project_id", j->project_id, "model_id", j->model_id,
      "dataset_id", j->dataset_id, "kind", j->kind, "state",
      sbx_job_state_name(j->state), "message", j->message, "cancel_requested",
      j->cancel_requested != 0, "created_at", (json_int_t)j->created_at,
      "started_at", (json_int_t)j->started_at, "finished_at",
      (json_int_t)j->finished_at, "updated_at", (json_int_t)j->updated_at,
      "progress", progress_json(&j->progress), "limits", "wall_seconds",
      (json_int_t)j->limits.wall_seconds, "memory_bytes",
      (json_int_t)j->limits.memory_bytes, "samples",
      (json_int_t)j->limits.samples, "shards", (json_int_t)j->limits.shards,
      "shards_done", (json_int_t)j->shards_done, "results",
      results_json(&j->results));
  if (!o || !full)
    return o;
  /* reason of a failure, under the name the API documents */
  json_object_set_new(o, "reason", json_string(j->message));
  char *spec = malloc(SBX_JOB_SPEC_MAX + 1);
  size_t n = 0;
  if (spec && !sbx_meta_job_spec(sbx__meta(r), sbx__tenant(r), j->id, spec,
                                 SBX_JOB_SPEC_MAX + 1, &n)) {
    json_error_t e;
    json_t *sj = json_loadb(spec, n, 0, &e);
    if (sj)
      json_object_set_new(o, "spec", sj);
  }
  free(spec);
  shards_ctx c = {json_array()};
  sbx_meta_job_shards(sbx__meta(r), sbx__tenant(r), j->id, shard_row, &c);
  /* the sandbox each shard ran in, as its worker reported it */
  for (size_t i = 0; i < json_array_size(c.arr); i++) {
    json_t *sh = json_array_get(c.arr, i);
    char name[SBX_NAME_MAX];
    sbx__job_object_name(j->id, (int64_t)i, "sandbox.json", name);
    sbx_object ob;
    void *data = NULL;
    size_t len = 0;
    if (!sbx_meta_object_find(sbx__meta(r), sbx__tenant(r), j->project_id,
                              "jobinfo", name, &ob) &&
        !sbx_store_get_alloc(r->st, sbx__tenant(r), ob.id, 64 * 1024, &data,
                             &len)) {
      json_error_t e;
      json_t *sb = json_loadb(data, len, 0, &e);
      if (sb)
        json_object_set_new(sh, "sandbox", sb);
    }
    free(data);
  }
  json_object_set_new(o, "shard_list", c.arr);
  return o;
}

/* ---- create ---- */

/* Today's legacy form {attack, params, seed} as a spec object (new
 * reference), or NULL with *why set. */
static json_t *legacy_spec(json_t *body, const char **why) {
  json_t *a = json_object_get(body, "attack");
  json_t *params = json_object_get(body, "params");
  json_t *seed = json_object_get(body, "seed");
  if (!json_is_string(a) || json_string_length(a) > 32) {
    *why = "attack: a string naming the attack (or send spec)";
    return NULL;
  }
  if (params && (!json_is_object(params) || json_object_size(params) > 32)) {
    *why = "params: an object of at most 32 parameters";
    return NULL;
  }
  const char *name = json_string_value(a);
  json_t *s = json_object();
  if (!strcmp(name, "eval") || !strcmp(name, "autoattack")) {
    json_object_set_new(s, "kind", json_string("evaluation"));
    json_object_set_new(s, "suite", json_string("autoattack-standard"));
  } else {
    json_object_set_new(s, "kind", json_string("attack"));
    json_object_set_new(s, "attack", json_string(name));
  }
  const char *k;
  json_t *v;
  json_object_foreach(params, k, v) {
    if (!strcmp(k, "kind") || !strcmp(k, "attack")) {
      *why = "params: kind and attack are not parameters";
      json_decref(s);
      return NULL;
    }
    json_object_set(s, k, v);
  }
  if (seed)
    json_object_set(s, "seed", seed);
  return s;
}

/* A non-negative integer field of o into *out (absent: unchanged). */
static int int_field(json_t *o, const char *k, int64_t *out) {
  json_t *v = json_object_get(o, k);
  if (!v)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return -1;
  *out = json_integer_value(v);
  return 0;
}

int sbx__h_job_create(sbx__req *r) {
  static const char *const fields[] = {"model_id", "dataset_id", "spec",
                                       "limits",   "shards",     "attack",
                                       "params",   "seed",       NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *model = sbx__jstr(j, "model_id", SBX_ID_MAX, &bad);
  const char *dataset = sbx__jstr(j, "dataset_id", SBX_ID_MAX, &bad);
  if (bad || !sbx_id_valid(model) || !sbx_id_valid(dataset))
    return sbx__bad_request(r, j, "model_id and dataset_id: object ids");
  json_t *spec_in = json_object_get(j, "spec");
  json_t *spec = NULL;
  const char *why = NULL;
  if (spec_in) {
    if (json_object_get(j, "attack") || json_object_get(j, "params") ||
        json_object_get(j, "seed"))
      return sbx__bad_request(
          r, j, "spec: send either spec or the legacy attack/params/seed");
    if (!json_is_object(spec_in))
      return sbx__bad_request(r, j, "spec: a JSON object");
    spec = json_incref(spec_in);
  } else if (!(spec = legacy_spec(j, &why))) {
    return sbx__bad_request(r, j, why);
  }
  adv_job_spec s;
  char err[256];
  int rc = sbx_jobspec_from_json(spec, &s, err, sizeof err);
  json_decref(spec);
  if (rc) {
    char msg[300];
    snprintf(msg, sizeof msg, "spec: %s", err);
    return sbx__bad_request(r, j, msg);
  }
  /* limits and shards */
  sbx_job_new jn;
  memset(&jn, 0, sizeof jn);
  json_t *lim = json_object_get(j, "limits");
  if (lim) {
    const char *k;
    json_t *v;
    if (!json_is_object(lim))
      return sbx__bad_request(r, j, "limits: an object");
    json_object_foreach(lim, k, v) {
      if (strcmp(k, "wall_seconds") && strcmp(k, "memory_bytes") &&
          strcmp(k, "samples") && strcmp(k, "clamp"))
        return sbx__bad_request(r, j,
                                "limits: wall_seconds, memory_bytes, "
                                "samples, clamp only");
    }
    if (int_field(lim, "wall_seconds", &jn.limits.wall_seconds) ||
        int_field(lim, "memory_bytes", &jn.limits.memory_bytes) ||
        int_field(lim, "samples", &jn.limits.samples))
      return sbx__bad_request(r, j,
                              "limits: non-negative integers (0: the "
                              "tenant default)");
    json_t *cl = json_object_get(lim, "clamp");
    if (cl && !json_is_boolean(cl))
      return sbx__bad_request(r, j, "limits.clamp: a boolean");
    jn.clamp = json_is_true(cl);
  }
  jn.limits.shards = 1;
  if (int_field(j, "shards", &jn.limits.shards) || jn.limits.shards < 1 ||
      jn.limits.shards > SBX_JOB_SHARDS_MAX)
    return sbx__bad_request(r, j, "shards: an integer 1..256");
  if (!jn.limits.samples && s.n > 0)
    jn.limits.samples = s.n;
  /* model and dataset: objects of that kind in this project */
  sbx_object mo, dobj;
  rc = sbx_meta_object_get(sbx__meta(r), sbx__tenant(r), model, &mo);
  if (!rc && (strcmp(mo.kind, "model") || strcmp(mo.project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  if (!rc)
    rc = sbx_meta_object_get(sbx__meta(r), sbx__tenant(r), dataset, &dobj);
  if (!rc &&
      (strcmp(dobj.kind, "dataset") || strcmp(dobj.project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  if (rc)
    return sbx__bad_request(
        r, j, "model_id/dataset_id: no such model/dataset in this project");
  /* the canonical spec is what is stored and what workers receive */
  json_t *cj = sbx_jobspec_to_json(&s);
  char *text = cj ? json_dumps(cj, JSON_COMPACT) : NULL;
  json_decref(cj);
  char id[SBX_ID_MAX] = "j_";
  rc = text ? sbx__rand_hex(id + 2, 12) : SBX_ENOMEM;
  jn.id = id;
  jn.project_id = r->params[0];
  jn.model_id = model;
  jn.dataset_id = dataset;
  jn.kind = s.kind == ADV_JOB_EVALUATION ? "evaluation" : "attack";
  jn.spec = text;
  char lwhy[SBX_JOB_MSG_MAX] = "";
  sbx_job out;
  if (!rc)
    rc = sbx_meta_job_create(sbx__meta(r), sbx__tenant(r), &jn, sbx__now(),
                             &out, lwhy);
  free(text);
  json_decref(j);
  if (rc == SBX_ELIMIT || (rc == SBX_EINVAL && lwhy[0])) {
    /* a limit over its cap, or shards that do not fit the samples */
    char msg[SBX_JOB_MSG_MAX + 16];
    snprintf(msg, sizeof msg, "%s%s", rc == SBX_ELIMIT ? "limits: " : "",
             lwhy[0] ? lwhy : "refused");
    return sbx__problem(r, 400, "Bad Request", msg);
  }
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job.create", id);
  sbx__reqlog_job(r, "job.state", sbx__tenant(r), id, -1, "queued");
  sbx__park_kick(r->srv); /* idle workers' long-polls look now */
  return sbx__reply_json(r, 201, job_json(r, &out, 1));
}

/* ---- get, list, cancel ---- */

int sbx__h_job_get(sbx__req *r) {
  sbx_job jb;
  int rc = sbx_meta_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &jb);
  return rc ? sbx__problem_rc(r, rc)
            : sbx__reply_json(r, 200, job_json(r, &jb, 1));
}

typedef struct list_ctx {
  sbx__req *r;
  json_t *items;
} list_ctx;

static int list_row(void *ctx, const sbx_job *j) {
  list_ctx *c = ctx;
  return json_array_append_new(c->items, job_json(c->r, j, 0)) ? SBX_ENOMEM : 0;
}

int sbx__h_jobs_list(sbx__req *r) {
  int limit;
  int64_t state = -1;
  const char *cu, *stn = sbx__arg(r, "state");
  if (sbx__page_args(r, &limit, &cu))
    return 0;
  if (stn && (state = sbx_job_state_parse(stn)) < 0)
    return sbx__problem(r, 400, "Bad Request",
                        "state: queued|running|succeeded|failed|cancelled|"
                        "timed_out");
  list_ctx c = {r, json_array()};
  char next[SBX_ID_MAX] = "";
  int rc = sbx_meta_job_list(sbx__meta(r), sbx__tenant(r), r->params[0], state,
                             cu, limit, list_row, &c, next);
  if (rc) {
    json_decref(c.items);
    return sbx__problem_rc(r, rc);
  }
  return sbx__reply_json(r, 200,
                         json_pack("{s:o,s:o}", "items", c.items, "next_cursor",
                                   next[0] ? json_string(next) : json_null()));
}

int sbx__h_job_cancel(sbx__req *r) {
  int64_t state = 0;
  int rc = sbx_meta_job_cancel(sbx__meta(r), sbx__tenant(r), r->params[0],
                               r->params[1], sbx__now(), NULL, &state);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job.cancel", r->params[1]);
  sbx__reqlog_job(r, "job.state", sbx__tenant(r), r->params[1], -1,
                  sbx_job_state_name((int)state));
  sbx__park_kick(r->srv); /* event streams see it now */
  return sbx__h_job_get(r);
}

/* ---- results ---- */

/* Sends a result object of the job in the path. */
static int send_object(sbx__req *r, const char *id, size_t max,
                       const char *type) {
  if (!id[0])
    return sbx__problem(r, 404, "Not Found", "no such result (yet)");
  return sbx__reply_object(r, sbx__tenant(r), id, max, type);
}

typedef struct shard_pick {
  int64_t want;
  char id[SBX_ID_MAX];
} shard_pick;

static int pick_shard(void *ctx, const sbx_job_shard *sh) {
  shard_pick *p = ctx;
  if (sh->shard == p->want)
    snprintf(p->id, sizeof p->id, "%s", sh->results.result_id);
  return 0;
}

/* The result JSON. A sharded job's is the server's merge of its shards
 * (job_merge.c, docs/jobs.md), there once all succeeded; ?shard=k serves
 * shard k's, and without it the answer is 409 until the merge exists. */
/* A sharded job turns succeeded when its last shard finishes, and that
 * finish request then merges the shards' files: a reader in between merges
 * them itself (the merge is idempotent: the first stored copy wins) and,
 * when the other merge is still storing, answers 503 with Retry-After: 1.
 * Returns 1 when that answer was sent (the caller returns 0). */
static int merged_ready(sbx__req *r, sbx_job *jb) {
  if (jb->limits.shards <= 1 || jb->state != SBX_JOB_SUCCEEDED ||
      jb->results.result_id[0])
    return 0;
  (void)sbx__job_merge_results(r, sbx__tenant(r), jb);
  if (!sbx_meta_job_get(sbx__meta(r), sbx__tenant(r), jb->project_id, jb->id,
                        jb) &&
      (jb->results.result_id[0] || jb->state != SBX_JOB_SUCCEEDED))
    return 0;
  sbx__add_header(r, "Retry-After", "1");
  sbx__problem(r, 503, "Service Unavailable",
               "the shards' results are being merged: retry in a second");
  return 1;
}

int sbx__h_job_results(sbx__req *r) {
  sbx_job jb;
  int rc = sbx_meta_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &jb);
  if (rc)
    return sbx__problem_rc(r, rc);
  const char *sa = sbx__arg(r, "shard");
  if (!sa && merged_ready(r, &jb))
    return 0;
  if (!sa && (jb.limits.shards <= 1 || jb.results.result_id[0]))
    return send_object(r, jb.results.result_id, SBX__RESULT_JSON_MAX,
                       "application/json");
  if (!sa)
    return sbx__problem(r, 409, "Conflict",
                        "a sharded job's results are per shard: ?shard=0.."
                        "shards-1 (no merged document: the job has not "
                        "succeeded)");
  char *end;
  long long k = strtoll(sa, &end, 10);
  if (*end || !*sa || k < 0 || k >= jb.limits.shards)
    return sbx__problem(r, 400, "Bad Request", "shard: 0..shards-1");
  shard_pick p = {k, ""};
  rc = sbx_meta_job_shards(sbx__meta(r), sbx__tenant(r), jb.id, pick_shard, &p);
  if (rc)
    return sbx__problem_rc(r, rc);
  return send_object(r, p.id, SBX__RESULT_JSON_MAX, "application/json");
}

int sbx__h_job_adversarial(sbx__req *r) {
  sbx_job jb;
  int rc = sbx_meta_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &jb);
  if (rc)
    return sbx__problem_rc(r, rc);
  if (merged_ready(r, &jb))
    return 0;
  return send_object(r, jb.results.adv_id, SBX__RESULT_NPY_MAX,
                     "application/octet-stream");
}

int sbx__h_job_gallery(sbx__req *r) {
  char *end;
  long i = strtol(r->params[2], &end, 10);
  if (*end || !r->params[2][0] || i < 0 || i >= SBX_JOB_GALLERY_MAX)
    return sbx__problem(r, 404, "Not Found", NULL);
  sbx_job jb;
  int rc = sbx_meta_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &jb);
  if (rc)
    return sbx__problem_rc(r, rc);
  return send_object(r, i < jb.results.n_gallery ? jb.results.gallery[i] : "",
                     SBX__RESULT_PNG_MAX, "image/png");
}

/* ---- server-sent events ---- */

#define SSE_MAX_STREAMS 64
#define SSE_BUF 16384
#define SSE_KEEPALIVE_S 15.0

typedef struct sse {
  sbx_server *srv;
  struct MHD_Connection *conn;
  char tenant[SBX_ID_MAX], project[SBX_ID_MAX], job[SBX_ID_MAX];
  int64_t last_seq;
  char last_progress[512];
  char buf[SSE_BUF];
  size_t len, off;
  int done;       /* the job ended: the stream ends after buf */
  double last_tx; /* monotonic time of the last bytes */
} sse;

typedef struct sse_fill {
  sse *e;
  int full;
} sse_fill;

/* Appends one event; 1 when it did not fit. */
static int sse_put(sse *e, const char *event, int64_t id, json_t *data) {
  char *txt = data ? json_dumps(data, JSON_COMPACT) : NULL;
  json_decref(data);
  if (!txt)
    return 1;
  char idl[40] = "";
  if (id > 0)
    snprintf(idl, sizeof idl, "id: %" PRId64 "\n", id);
  int n = snprintf(e->buf + e->len, SSE_BUF - e->len,
                   "event: %s\n%sdata: %s\n\n", event, idl, txt);
  free(txt);
  if (n < 0 || (size_t)n >= SSE_BUF - e->len)
    return 1; /* left for the next read */
  e->len += (size_t)n;
  return 0;
}

static int sse_event(void *ctx, const sbx_job_event *ev) {
  sse_fill *f = ctx;
  if (f->full)
    return 1;
  json_t *d = json_pack(
      "{s:I,s:I,s:I,s:o,s:s,s:s}", "seq", (json_int_t)ev->seq, "ts",
      (json_int_t)ev->ts, "shard", (json_int_t)ev->shard, "from",
      ev->from_state < 0 ? json_null()
                         : json_string(sbx_job_state_name(ev->from_state)),
      "to", sbx_job_state_name(ev->to_state), "reason", ev->reason);
  if (sse_put(f->e, "state", ev->seq, d)) {
    f->full = 1;
    return 1;
  }
  f->e->last_seq = ev->seq;
  return 0;
}

/* Reads what is new from the store into e->buf. */
static void sse_poll(sse *e) {
  sbx_store *st = sbx__pool_take(&e->srv->pool);
  if (!st)
    return; /* busy: next tick */
  sbx_meta *m = sbx_store_meta(st);
  sse_fill f = {e, 0};
  e->len = e->off = 0;
  int rc =
      sbx_meta_job_events(m, e->tenant, e->job, e->last_seq, sse_event, &f);
  sbx_job jb;
  if (!f.full && (rc == SBX_OK || rc > 0) &&
      !sbx_meta_job_get(m, e->tenant, e->project, e->job, &jb)) {
    json_t *p = json_pack("{s:s,s:o}", "state", sbx_job_state_name(jb.state),
                          "progress", progress_json(&jb.progress));
    char *txt = p ? json_dumps(p, JSON_COMPACT) : NULL;
    if (txt && strcmp(txt, e->last_progress)) {
      snprintf(e->last_progress, sizeof e->last_progress, "%s", txt);
      if (sse_put(e, "progress", 0, json_incref(p)))
        e->last_progress[0] = 0;
    }
    free(txt);
    json_decref(p);
    if (sbx_job_state_terminal(jb.state) && !f.full) {
      /* every event up to the end is out: say so and stop */
      if (!sse_put(e, "end", 0,
                   json_pack("{s:s}", "state", sbx_job_state_name(jb.state))))
        e->done = 1;
    }
  } else if (rc < 0) {
    e->done = 1; /* the job vanished or the store failed */
  }
  sbx__pool_give(&e->srv->pool, st);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
  sse *e = cls;
  (void)pos;
  if (e->off == e->len && !e->done)
    sse_poll(e);
  if (e->off == e->len && !e->done &&
      sbx__mono() - e->last_tx >= SSE_KEEPALIVE_S) {
    e->len = (size_t)snprintf(e->buf, SSE_BUF, ": keep-alive\n\n");
    e->off = 0;
  }
  if (e->off < e->len) {
    size_t n = e->len - e->off < max ? e->len - e->off : max;
    memcpy(buf, e->buf + e->off, n);
    e->off += n;
    e->last_tx = sbx__mono();
    return (ssize_t)n;
  }
  if (e->done)
    return MHD_CONTENT_READER_END_OF_STREAM;
  if (sbx__park(e->srv, e->conn)) /* stopping */
    return MHD_CONTENT_READER_END_OF_STREAM;
  return 0; /* parked: called again on the next tick */
}

static void sse_free(void *cls) {
  sse *e = cls;
  atomic_fetch_sub(&e->srv->sse_streams, 1);
  free(e);
}

int sbx__h_job_events(sbx__req *r) {
  sbx_job jb;
  int rc = sbx_meta_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &jb);
  if (rc)
    return sbx__problem_rc(r, rc);
  if (atomic_fetch_add(&r->srv->sse_streams, 1) >= SSE_MAX_STREAMS) {
    atomic_fetch_sub(&r->srv->sse_streams, 1);
    sbx__add_header(r, "Retry-After", "5");
    return sbx__problem(r, 503, "Service Unavailable",
                        "too many event streams");
  }
  sse *e = calloc(1, sizeof *e);
  if (!e) {
    atomic_fetch_sub(&r->srv->sse_streams, 1);
    return sbx__problem_rc(r, SBX_ENOMEM);
  }
  e->srv = r->srv;
  e->conn = r->conn;
  snprintf(e->tenant, sizeof e->tenant, "%s", sbx__tenant(r));
  snprintf(e->project, sizeof e->project, "%s", r->params[0]);
  snprintf(e->job, sizeof e->job, "%s", r->params[1]);
  const char *last =
      MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
  if (last)
    e->last_seq = strtoll(last, NULL, 10);
  if (e->last_seq < 0)
    e->last_seq = 0;
  e->last_tx = sbx__mono();
  r->status = 200;
  r->resp_type = "text/event-stream";
  r->resp_cb = sse_read;
  r->resp_cb_cls = e;
  r->resp_cb_free = sse_free;
  return 0;
}

/* ---- job limits (Admin) ---- */

static const struct {
  const char *name;
  size_t off;
} LIMIT_FIELDS[] = {
#define LF(f)                                                                  \
  { #f, offsetof(sbx_job_limit_set, f) }
    LF(default_wall_seconds), LF(max_wall_seconds), LF(default_memory_bytes),
    LF(max_memory_bytes),     LF(default_samples),  LF(max_samples),
    LF(max_shards),           LF(max_concurrency),
#undef LF
};
#define N_LIMIT_FIELDS (sizeof LIMIT_FIELDS / sizeof LIMIT_FIELDS[0])

json_t *sbx__job_limits_json(const sbx_job_limit_set *l) {
  json_t *o = json_object();
  for (size_t i = 0; o && i < N_LIMIT_FIELDS; i++)
    json_object_set_new(o, LIMIT_FIELDS[i].name,
                        json_integer(*(const int64_t *)((const char *)l +
                                                        LIMIT_FIELDS[i].off)));
  return o;
}

int sbx__job_limits_parse(json_t *o, sbx_job_limit_set *l, char *why,
                          size_t cap) {
  memset(l, 0, sizeof *l);
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    size_t i = 0;
    while (i < N_LIMIT_FIELDS && strcmp(LIMIT_FIELDS[i].name, k))
      i++;
    if (i == N_LIMIT_FIELDS) {
      snprintf(why, cap, "%.64s: not a limit", k);
      return SBX_EINVAL;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1) {
      snprintf(why, cap, "%s: an integer (0: inherit, -1: none where allowed)",
               k);
      return SBX_EINVAL;
    }
    *(int64_t *)((char *)l + LIMIT_FIELDS[i].off) = json_integer_value(v);
  }
  return SBX_OK;
}

/* Both views of a tenant's limits: the stored row and the merged one. */
static int limits_reply(sbx__req *r, int status, const char *tenant) {
  sbx_job_limit_set st, ef;
  int rc = sbx_meta_job_limits_get(sbx__meta(r), tenant, 0, &st);
  if (!rc)
    rc = sbx_meta_job_limits_get(sbx__meta(r), tenant, 1, &ef);
  if (rc)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(r, status,
                         json_pack("{s:s,s:o,s:o}", "tenant", tenant, "stored",
                                   sbx__job_limits_json(&st), "effective",
                                   sbx__job_limits_json(&ef)));
}

int sbx__h_job_limits_get(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  return limits_reply(r, 200, sbx__tenant(r));
}

int sbx__h_job_limits_put(sbx__req *r) {
  if (strcmp(r->params[0], sbx__tenant(r)))
    return sbx__problem(r, 404, "Not Found", NULL);
  static const char *const fields[] = {
      "default_wall_seconds", "max_wall_seconds", "default_memory_bytes",
      "max_memory_bytes",     "default_samples",  "max_samples",
      "max_shards",           "max_concurrency",  NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  sbx_job_limit_set l;
  char why[160];
  int rc = sbx__job_limits_parse(j, &l, why, sizeof why);
  json_decref(j);
  if (rc)
    return sbx__problem(r, 400, "Bad Request", why);
  rc = sbx_meta_job_limits_set(sbx__meta(r), sbx__tenant(r), &l, sbx__now());
  if (rc == SBX_EINVAL)
    return sbx__problem(r, 400, "Bad Request",
                        "limits: -1 (none) only for default_samples and "
                        "max_concurrency; values >= -1");
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job_limits.set", sbx__tenant(r));
  return limits_reply(r, 200, sbx__tenant(r));
}
