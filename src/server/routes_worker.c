/*
 * routes_worker.c - handlers of the worker protocol (docs/worker-protocol.md):
 * claim (worker token, long-poll by parking the connection), and for the
 * job token of a claimed shard: its model and dataset, heartbeats, result
 * uploads (encrypted into the store under the tenant's keys), finish.
 * The scope of a token (its job in the path) is authz.c's; a token whose
 * shard ended or lost its lease is refused by authentication (401).
 */
#include "routes_worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "hutil.h"
#include "job_merge.h"
#include "log.h"
#include "park.h"
#include "reply.h"
#include "reqlog.h"
#include "routes_jobs.h"
#include "sbx/jobs.h"
#include "sbx/jobspec.h"
#include "state.h"
#include "strict.h"
#include "util.h"

/* The presented bearer token (authentication already checked it). */
static const char *bearer(sbx__req *r) {
  const char *t = sbx__bearer_token(r->conn, NULL);
  return t ? t : "";
}

static int64_t lease_seconds(const sbx__req *r) {
  int l = r->srv->p.job_lease_s;
  return l > 0 && l <= 3600 ? l : 30;
}

/* ---- claim ---- */

/* The spec a worker runs: the stored canonical spec with the shard's
 * sample slice. New reference or NULL. */
static json_t *claim_spec(sbx_meta *m, const sbx_job_claim *c) {
  char *text = malloc(SBX_JOB_SPEC_MAX + 1);
  size_t n = 0;
  json_t *out = NULL;
  adv_job_spec s;
  char err[256];
  if (text &&
      !sbx_meta_job_spec(m, c->tenant_id, c->job_id, text, SBX_JOB_SPEC_MAX + 1,
                         &n) &&
      !sbx_jobspec_parse(text, n, &s, err, sizeof err)) {
    if (c->sample_end > c->sample_begin) {
      s.shard_offset = c->sample_begin;
      s.shard_count = c->sample_end - c->sample_begin;
      s.n = 0;
    }
    out = sbx_jobspec_to_json(&s);
  }
  free(text);
  return out;
}

/* {name, sha256, bytes} of a model or dataset (bytes -1: unreadable). */
static json_t *object_info(const sbx_object *o) {
  char hex[65] = "";
  if (o->size >= 0)
    sbx_hex(o->sha256, 32, hex);
  return json_pack("{s:s,s:s,s:I}", "name", o->name, "sha256", hex, "bytes",
                   (json_int_t)o->size);
}

/* The audit actor of a worker-protocol request: the worker token's id
 * ("worker:<id>") or, for a job token, "job-token". */
static const char *worker_actor(sbx__req *r) {
  static __thread char a[SBX_ID_MAX + 8];
  if (r->who.kind == SBX__CRED_WORKER)
    snprintf(a, sizeof a, "worker:%.*s", SBX_ID_MAX - 1, r->who.key_id);
  else
    snprintf(a, sizeof a, "job-token");
  return a;
}

int sbx__h_worker_claim(sbx__req *r) {
  static const char *const fields[] = {"worker", "wait", NULL};
  json_t *j = r->body_len ? sbx__body_object(r, fields) : json_object();
  if (!j)
    return 0;
  int bad = 0;
  const char *name = sbx__jstr(j, "worker", SBX_ID_MAX - 1, &bad);
  json_t *w = json_object_get(j, "wait");
  if (bad || (name && !sbx_id_valid(name)) ||
      (w && (!json_is_integer(w) || json_integer_value(w) < 0 ||
             json_integer_value(w) > 30)))
    return sbx__bad_request(r, j,
                            "worker: an id ([A-Za-z0-9_.-]); wait: 0..30");
  if (r->deadline == 0) /* first call: the long-poll starts */
    r->deadline = sbx__mono() + (w ? (double)json_integer_value(w) : 0);
  char worker[SBX_ID_MAX];
  snprintf(worker, sizeof worker, "%s", name ? name : r->who.key_id);
  json_decref(j);
  sbx_job_claim c;
  int64_t lease = lease_seconds(r);
  int rc = sbx_store_job_claim(r->st, worker, lease, sbx__now(), &c);
  if (rc == SBX_ENOTFOUND) {
    if (!r->park_refused && sbx__mono() < r->deadline) {
      r->park = 1; /* called again on the next tick */
      return 0;
    }
    r->status = 204;
    r->resp_len = 0;
    return 0;
  }
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx_meta *m = sbx__meta(r);
  sbx_object mo, dobj;
  memset(&mo, 0, sizeof mo);
  memset(&dobj, 0, sizeof dobj);
  mo.size = dobj.size = -1;
  sbx_meta_object_get(m, c.tenant_id, c.model_id, &mo);
  sbx_meta_object_get(m, c.tenant_id, c.dataset_id, &dobj);
  json_t *spec = claim_spec(m, &c);
  if (!spec) {
    /* cannot happen for a spec this server stored; fail the shard so it
     * is not handed out again and again */
    sbx_store_job_finish(r->st, c.token, sbx__now(), SBX_JOB_FAILED,
                         "the stored job spec is unreadable", NULL);
    sbx_memwipe(c.token, sizeof c.token);
    return sbx__problem(r, 500, "Internal Server Error", "bad stored spec");
  }
  json_t *out = json_pack(
      "{s:s,s:I,s:I,s:I,s:s,s:I,s:o,s:{s:I,s:I,s:I},s:I,s:I,s:I,s:I,s:s}",
      "job", c.job_id, "shard", (json_int_t)c.shard, "shards",
      (json_int_t)c.shards, "attempt", (json_int_t)c.attempt, "token", c.token,
      "lease_seconds", (json_int_t)lease, "spec", spec, "limits",
      "wall_seconds", (json_int_t)c.limits.wall_seconds, "memory_bytes",
      (json_int_t)c.limits.memory_bytes, "samples",
      (json_int_t)c.limits.samples, "model_bytes", (json_int_t)mo.size,
      "dataset_bytes", (json_int_t)dobj.size, "sample_begin",
      (json_int_t)c.sample_begin, "sample_end", (json_int_t)c.sample_end,
      "kind", c.kind);
  sbx_memwipe(c.token, sizeof c.token);
  char target[2 * SBX_ID_MAX + 24];
  snprintf(target, sizeof target, "%s/%lld", c.job_id, (long long)c.shard);
  sbx__audit_as(r, c.tenant_id, worker_actor(r), "job.claim", target);
  sbx__reqlog_job(r, "job.state", c.tenant_id, c.job_id, c.shard, "running");
  /* what the result document names: the object and its plaintext digest */
  if (out) {
    json_object_set_new(out, "model", object_info(&mo));
    json_object_set_new(out, "dataset", object_info(&dobj));
  }
  return sbx__reply_json(r, 200, out);
}

/* ---- model and dataset ---- */

static int send_input(sbx__req *r, const char *id) {
  return sbx__reply_object(r, r->who.tenant, id,
                           (size_t)r->srv->p.max_upload_bytes,
                           "application/octet-stream");
}

int sbx__h_worker_model(sbx__req *r) {
  return send_input(r, r->who.job_model);
}

int sbx__h_worker_dataset(sbx__req *r) {
  return send_input(r, r->who.job_dataset);
}

/* ---- heartbeat ---- */

int sbx__h_worker_heartbeat(sbx__req *r) {
  static const char *const fields[] = {"fraction", "phase", "robust_accuracy",
                                       "eta_seconds", NULL};
  json_t *j = r->body_len ? sbx__body_object(r, fields) : json_object();
  if (!j)
    return 0;
  sbx_job_progress p;
  memset(&p, 0, sizeof p);
  p.robust_accuracy = -1;
  p.eta_seconds = -1;
  json_t *f = json_object_get(j, "fraction");
  json_t *ra = json_object_get(j, "robust_accuracy");
  json_t *eta = json_object_get(j, "eta_seconds");
  int bad = 0;
  const char *phase = sbx__jstr(j, "phase", 256, &bad); /* cut to 63 */
  if (bad ||
      (f && (!json_is_number(f) || json_number_value(f) < 0 ||
             json_number_value(f) > 1)) ||
      (ra && !json_is_null(ra) &&
       (!json_is_number(ra) || json_number_value(ra) > 1)) ||
      (eta && !json_is_null(eta) &&
       (!json_is_number(eta) || json_number_value(eta) < 0 ||
        json_number_value(eta) > 1e9)))
    return sbx__bad_request(
        r, j,
        "fraction 0..1, phase (a string), robust_accuracy <= 1 "
        "(< 0: unknown), eta_seconds >= 0");
  int has = json_object_size(j) > 0;
  if (f)
    p.fraction = json_number_value(f);
  if (phase)
    snprintf(p.phase, sizeof p.phase, "%s", phase);
  if (ra && json_is_number(ra) && json_number_value(ra) >= 0)
    p.robust_accuracy = json_number_value(ra); /* < 0: unknown */
  if (eta && json_is_number(eta))
    p.eta_seconds = (int64_t)json_number_value(eta);
  json_decref(j);
  int stop = 0;
  int64_t lease = lease_seconds(r);
  int rc = sbx_store_job_heartbeat(r->st, bearer(r), sbx__now(), lease,
                                   has ? &p : NULL, &stop);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__park_kick(r->srv); /* event streams: new progress */
  return sbx__reply_json(r, 200,
                         json_pack("{s:b,s:b,s:I}", "cancel",
                                   stop == SBX_JOB_STOP_CANCEL, "timed_out",
                                   stop == SBX_JOB_STOP_TIMEOUT,
                                   "lease_seconds", (json_int_t)lease));
}

/* ---- results ---- */

/* The cap of a result file name, or 0 when the name is not one. */
static int64_t result_cap(const char *name) {
  if (!strcmp(name, "result.json"))
    return SBX__RESULT_JSON_MAX;
  if (!strcmp(name, "adversarial.npy"))
    return SBX__RESULT_NPY_MAX;
  if (!strncmp(name, "gallery-", 8)) {
    const char *d = name + 8;
    char *end;
    long i = strtol(d, &end, 10);
    if (d[0] >= '0' && d[0] <= '9' && !(d[0] == '0' && d[1] != '.') &&
        !strcmp(end, ".png") && i >= 0 && i < SBX_JOB_GALLERY_MAX)
      return SBX__RESULT_PNG_MAX;
  }
  return 0;
}

int sbx__h_worker_result_put(sbx__req *r) {
  const char *file = r->params[1];
  int64_t cap = result_cap(file);
  if (!r->upload) {
    if (!cap)
      return sbx__problem(r, 404, "Not Found",
                          "result names: result.json, adversarial.npy, "
                          "gallery-{0..15}.png");
    const char *cl = MHD_lookup_connection_value(
        r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoll(cl, NULL, 10) > cap)
      return sbx__problem(r, 413, "Content Too Large",
                          "result file exceeds its cap");
  }
  char name[SBX_NAME_MAX];
  sbx__job_object_name(r->who.job, r->who.job_shard, file, name);
  sbx_put_params pp = {r->who.job_project, "result", name, 1};
  sbx_store_writer *w;
  if (sbx__upload_step(r, r->who.tenant, &pp, cap, &w) != 1)
    return 0;
  /* the lease must still hold when the file lands (a stale worker's
   * upload is refused, and replaces nothing it did not own) */
  if (sbx_store_job_token_verify(r->st, bearer(r), sbx__now(), NULL)) {
    sbx_store_writer_abort(w);
    return sbx__problem(r, 401, "Unauthorized", "lease lost");
  }
  sbx_object o;
  int rc = sbx_store_writer_commit(w, &o);
  if (rc)
    return sbx__problem_rc(r, rc);
  char hex[65], target[SBX_NAME_MAX + 64];
  sbx_hex(o.sha256, 32, hex);
  snprintf(target, sizeof target, "%s/%lld/%s", r->who.job,
           (long long)r->who.job_shard, file);
  sbx__audit_as(r, r->who.tenant, worker_actor(r), "job.result.upload", target);
  return sbx__reply_json(r, 201,
                         json_pack("{s:s,s:I,s:s}", "name", file, "size",
                                   (json_int_t)o.size, "sha256", hex));
}

/* ---- finish ---- */

/* The object id of this shard's uploaded file, "" when none. */
static void find_result(sbx__req *r, const char *file, char id[SBX_ID_MAX]) {
  char name[SBX_NAME_MAX];
  sbx__job_object_name(r->who.job, r->who.job_shard, file, name);
  sbx_object o;
  id[0] = 0;
  if (!sbx_meta_object_find(sbx__meta(r), r->who.tenant, r->who.job_project,
                            "result", name, &o))
    snprintf(id, SBX_ID_MAX, "%s", o.id);
}

int sbx__h_worker_finish(sbx__req *r) {
  static const char *const fields[] = {"state", "reason", "sandbox", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *stn = sbx__jstr(j, "state", 16, &bad);
  const char *reason = sbx__jstr(j, "reason", SBX_JOB_MSG_MAX - 1, &bad);
  json_t *sandbox = json_object_get(j, "sandbox");
  int state = stn ? sbx_job_state_parse(stn) : -1;
  if (bad || !sbx_job_state_terminal(state) ||
      (sandbox && !json_is_object(sandbox)))
    return sbx__bad_request(r, j,
                            "state: succeeded|failed|cancelled|timed_out; "
                            "reason: < 512 chars; sandbox: an object");
  if (state == SBX_JOB_FAILED && (!reason || !reason[0]))
    reason = "the worker reported a failure without a reason";
  /* the sandbox the runner had, kept (encrypted) beside the results */
  if (sandbox) {
    char *txt = json_dumps(sandbox, JSON_COMPACT | JSON_SORT_KEYS);
    if (txt && strlen(txt) <= 16384) {
      char name[SBX_NAME_MAX];
      sbx__job_object_name(r->who.job, r->who.job_shard, "sandbox.json", name);
      sbx_put_params pp = {r->who.job_project, "jobinfo", name, 1};
      int prc =
          sbx_store_put(r->st, r->who.tenant, &pp, txt, strlen(txt), NULL);
      if (prc)
        sbx__log("job %s: sandbox record: %s", r->who.job, sbx_strerror(prc));
    }
    free(txt);
  }
  sbx_job_results res;
  memset(&res, 0, sizeof res);
  find_result(r, "result.json", res.result_id);
  find_result(r, "adversarial.npy", res.adv_id);
  for (int i = 0; i < SBX_JOB_GALLERY_MAX; i++) {
    char file[32];
    snprintf(file, sizeof file, "gallery-%d.png", i);
    find_result(r, file, res.gallery[res.n_gallery]);
    if (res.gallery[res.n_gallery][0])
      res.n_gallery++;
  }
  char tenant[SBX_ID_MAX], job[SBX_ID_MAX], reason_copy[64];
  snprintf(reason_copy, sizeof reason_copy, "%s", reason ? reason : "");
  snprintf(tenant, sizeof tenant, "%s", r->who.tenant);
  snprintf(job, sizeof job, "%s", r->who.job);
  int rc =
      sbx_store_job_finish(r->st, bearer(r), sbx__now(), state, reason, &res);
  json_decref(j);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__park_kick(r->srv); /* event streams: the transition */
  char target[SBX_ID_MAX + 48];
  snprintf(target, sizeof target, "%s/%lld:%s", job,
           (long long)r->who.job_shard, sbx_job_state_name(state));
  sbx__audit_as(r, tenant, worker_actor(r), "job.finish", target);
  sbx__reqlog_job(r, "job.state", tenant, job, r->who.job_shard,
                  sbx_job_state_name(state));
  /* the runner's sandbox killed it (runner.c: "killed by sandbox ...") */
  if (reason_copy[0] && !strncmp(reason_copy, "killed by sandbox", 17)) {
    sbx__audit_as(r, tenant, worker_actor(r), "job.sandbox_violation", target);
    sbx__reqlog_job(r, "sandbox.violation", tenant, job, r->who.job_shard,
                    sbx_job_state_name(state));
  }
  sbx_job jb;
  rc = sbx_meta_job_get(sbx__meta(r), tenant, NULL, job, &jb);
  /* the last shard of a sharded job: merge the shards' results (a merge
   * failure fails the job) */
  if (!rc && jb.limits.shards > 1 && jb.state == SBX_JOB_SUCCEEDED &&
      !jb.results.result_id[0]) {
    (void)sbx__job_merge_results(r, tenant, &jb); /* logged, job failed */
    rc = sbx_meta_job_get(sbx__meta(r), tenant, NULL, job, &jb);
  }
  if (rc)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:s,s:s}", "job", job, "shard_state",
                                   sbx_job_state_name(state), "job_state",
                                   sbx_job_state_name(jb.state)));
}
