/*
 * job.c - the job itself: load the model and dataset (inside the sandbox,
 * with the engine's own caps and messages), run the attack, send the result
 * JSON and the adversarial examples as NPY bytes.
 *
 * The result JSON here is a minimal stand-in ("aisbx.result.v1-runner");
 * when the engine's adv/evaluate.h + src/report land, sbx__runner_job_run
 * becomes: load, adv_job_run(...), report to a memory buffer, send.
 */
#define _GNU_SOURCE
#include "runner.h"

#include "adv/adv.h"
#include "adv/attack.h"
#include "adv/data.h"
#include "adv/evaluate.h"
#include "adv/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Progress from the engine -> PROGRESS messages (at most ~20 per second);
 * returns non-zero to abort when the worker asked for it. */
static int on_progress(void *ud, const char *phase, double fraction) {
  static struct timespec last;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double dt = (double)(now.tv_sec - last.tv_sec) +
              1e-9 * (double)(now.tv_nsec - last.tv_nsec);
  if (dt >= 0.05 || fraction >= 1.0) {
    last = now;
    sbx_ipc_progress m = {.fraction = fraction < 0   ? 0
                                      : fraction > 1 ? 1
                                                     : fraction,
                          .robust_acc = NAN};
    snprintf(m.phase, sizeof(m.phase), "%s", phase ? phase : "");
    uint8_t buf[256];
    int n = sbx_ipc_progress_encode(&m, buf, sizeof(buf));
    if (n > 0)
      sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_PROGRESS, buf, (size_t)n);
  }
  (void)ud;
  return sbx__runner_abort;
}

/* NPY v1.0 header for a float32 array of the given dims. */
static size_t npy_header(char *h, size_t cap, const int64_t *dims, int ndim) {
  char shape[256];
  size_t o = 0;
  for (int i = 0; i < ndim; i++)
    o += (size_t)snprintf(shape + o, sizeof(shape) - o, "%lld,%s",
                          (long long)dims[i], (i + 1 < ndim) ? " " : "");
  if (ndim > 1 && o)
    shape[--o] = 0; /* "(a, b)" not "(a, b,)"; 1-D keeps "(a,)" */
  char dict[320];
  int dl = snprintf(dict, sizeof(dict),
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                    shape);
  size_t total = 10 + (size_t)dl + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hl = (size_t)dl + pad + 1;
  if (10 + hl > cap)
    return 0;
  memcpy(h, "\x93NUMPY\x01\x00", 8);
  h[8] = (char)(hl & 0xff);
  h[9] = (char)(hl >> 8);
  memcpy(h + 10, dict, (size_t)dl);
  memset(h + 10 + dl, ' ', pad);
  h[10 + hl - 1] = '\n';
  return 10 + hl;
}

/* The spec's attack parameters on top of the engine's defaults. */
static int attack_params(const sbx_job_spec *s, adv_attack_params *p) {
  int kind = adv_attack_kind_from_name(s->attack);
  if (kind < 0) {
    sbx__runner_error(ADV_EINVAL, "unknown attack '%s'", s->attack);
    return ADV_EINVAL;
  }
  *p = adv_attack_default_params((adv_attack_kind)kind);
  p->norm = s->norm ? ADV_NORM_L2 : ADV_NORM_LINF;
  if (s->eps > 0)
    p->eps = (float)s->eps;
  if (s->step_size > 0)
    p->step_size = (float)s->step_size;
  if (s->steps)
    p->steps = (int)s->steps;
  if (s->restarts)
    p->restarts = (int)s->restarts;
  if (s->queries)
    p->queries = (int64_t)s->queries;
  p->seed = s->seed;
  p->threads = (int)s->threads;
  return 0;
}

/* Engine job progress -> PROGRESS messages (fraction of the whole job,
 * the current attack, the running robust accuracy). */
static int on_job_progress(void *ud, const adv_job_progress *p) {
  static struct timespec last;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  double dt = (double)(now.tv_sec - last.tv_sec) +
              1e-9 * (double)(now.tv_nsec - last.tv_nsec);
  if (dt >= 0.05 || p->fraction >= 1.0 || p->event != ADV_JOB_EV_PROGRESS) {
    last = now;
    sbx_ipc_progress m = {
        .fraction = p->fraction < 0   ? 0
                    : p->fraction > 1 ? 1
                                      : p->fraction,
        .robust_acc = p->n > 0 ? (double)p->robust / (double)p->n : NAN};
    snprintf(m.phase, sizeof(m.phase), "%s",
             p->attack  ? p->attack
             : p->phase ? p->phase
                        : "");
    uint8_t buf[256];
    int n = sbx_ipc_progress_encode(&m, buf, sizeof(buf));
    if (n > 0)
      sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_PROGRESS, buf, (size_t)n);
  }
  (void)ud;
  return sbx__runner_abort;
}

#define GALLERY_MAX 8

/* Up to GALLERY_MAX gallery strips: broken samples first, then others;
 * predictions on the chosen originals and adversarials come from one
 * small forward each. Failures only cost the gallery (logged). */
static void send_gallery(const adv_model *m, const adv_dataset *ds,
                         const adv_job_spec *js, const adv_job_result *r) {
  int64_t idx[GALLERY_MAX];
  int k = 0;
  for (int pass = 0; pass < 2 && k < GALLERY_MAX; pass++)
    for (int64_t i = 0; i < r->n && k < GALLERY_MAX; i++) {
      int broken = r->success     ? r->success[i] != 0
                   : r->broken_by ? r->broken_by[i] >= 0
                                  : 0;
      if (broken == (pass == 0))
        idx[k++] = i;
    }
  if (k == 0 || r->classes < 2)
    return;
  size_t per = (size_t)r->per;
  float *xs = malloc(sizeof(float) * per * (size_t)k * 2);
  float *z = malloc(sizeof(float) * (size_t)r->classes * (size_t)k);
  int64_t pc[GALLERY_MAX], pa[GALLERY_MAX];
  adv_session *s = NULL;
  adv_err e = {{0}};
  adv_session_params sp = adv_session_default_params();
  sp.logits = 1;
  sp.threads = 1;
  int rc = xs && z
               ? adv_session_init_shape(m, sp, r->x_ndim, r->x_dims, k, &s, &e)
               : ADV_ENOMEM;
  const float *x0 = ds->x.data + (size_t)r->offset * per;
  for (int j = 0; !rc && j < k; j++) {
    memcpy(xs + (size_t)j * per, x0 + (size_t)idx[j] * per,
           per * sizeof(float));
    memcpy(xs + (size_t)(k + j) * per, r->x_adv + (size_t)idx[j] * per,
           per * sizeof(float));
  }
  for (int pass = 0; !rc && pass < 2; pass++) {
    rc = adv_session_forward(s, xs + (size_t)pass * (size_t)k * per, z, &e);
    for (int j = 0; !rc && j < k; j++) {
      const float *zj = z + (size_t)j * (size_t)r->classes;
      int64_t best = 0;
      for (int64_t c = 1; c < r->classes; c++)
        if (zj[c] > zj[best])
          best = c;
      (pass ? pa : pc)[j] = best;
    }
  }
  if (rc)
    sbx__runner_log(SBX_LOG_WARN, "gallery skipped: %s", e.msg);
  else {
    int64_t id[GALLERY_MAX], lab[GALLERY_MAX];
    for (int j = 0; j < k; j++) {
      id[j] = r->offset + idx[j]; /* the dataset's sample number */
      lab[j] = r->label[idx[j]];
    }
    sbx__runner_gallery(xs, xs + (size_t)k * per, r->x_ndim, r->x_dims, id, k,
                        lab, pc, pa, js->params.clip_min, js->params.clip_max);
  }
  adv_session_free(s);
  free(xs);
  free(z);
}

/* A whole job (attack or evaluation) through the engine's one entry point,
 * adv_job_run, and the result document through adv_report: the same code
 * and bytes as `aisbx attack|evaluate`. */
static int run_job(const sbx_job_spec *spec, adv_model *m, adv_dataset *ds) {
  adv_err e = {{0}};
  adv_job_spec js = spec->job;
  js.params.threads = (int)spec->threads; /* the worker decides threads */
  int rc = adv_job_spec_validate(&js, &e);
  if (rc) {
    sbx__runner_error(rc, "spec: %s", e.msg);
    return rc;
  }
  adv_job_result r;
  memset(&r, 0, sizeof(r));
  rc = adv_job_run(m, &ds->x, &ds->y, &js, on_job_progress, NULL,
                   &sbx__runner_abort, &r, &e);
  if (rc) {
    sbx__runner_error(rc, "%s", e.msg[0] ? e.msg : adv_strerror(rc));
    return rc;
  }
  adv_report_meta meta = {spec->model_name, spec->model_sha256, spec->data_name,
                          spec->data_sha256, NULL};
  char *doc = NULL;
  size_t dl = 0;
  rc = adv_report_write_mem(&doc, &dl, &meta, &js, &r);
  if (rc) {
    sbx__runner_error(rc, "writing the result document failed");
    adv_job_result_free(&r);
    return rc;
  }
  rc = sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_RESULT, doc, dl);
  free(doc);
  char hdr[512];
  int64_t dims[ADV_MAX_DIMS];
  memcpy(dims, r.x_dims, sizeof(dims));
  dims[0] = r.n;
  size_t hl = npy_header(hdr, sizeof(hdr), dims, r.x_ndim);
  size_t bytes = (size_t)r.n * (size_t)r.per * sizeof(float);
  if (!rc && hl && r.x_adv)
    rc = sbx_ipc_send2(RUNNER_OUT_FD, SBX_IPC_ADV_NPY, hdr, hl, r.x_adv, bytes);
  if (!rc && r.x_adv)
    send_gallery(m, ds, &js, &r);
  adv_job_result_free(&r);
  return rc ? ADV_EIO : 0;
}

int sbx__runner_job_run(const sbx_job_spec *spec, const void *model,
                        size_t model_len, const char *data_path,
                        const void *data, size_t data_len) {
  adv_attack_params ap;
  int rc = spec->kind == SBX_JOB_RUN ? 0 : attack_params(spec, &ap);
  if (rc)
    return rc;
  on_progress(NULL, "loading model", 0.0);
  adv_model *m = NULL;
  adv_err e = {{0}};
  adv_load_params lp = adv_load_default_params();
  if (!model || model_len > lp.max_file_bytes) {
    sbx__runner_error(ADV_ELIMIT,
                      "model: %zu bytes, larger than the %zu-byte limit",
                      model_len, lp.max_file_bytes);
    return ADV_ELIMIT;
  }
  rc = adv_model_load_mem(model, model_len, lp, &m, &e);
  if (rc) {
    sbx__runner_error(rc, "model: %s", e.msg[0] ? e.msg : adv_strerror(rc));
    return rc;
  }
  adv_dataset ds;
  memset(&ds, 0, sizeof(ds));
  adv_err eb = {{0}};
  adv_io_limits lim = adv_io_default_limits();
  if (data_len > lim.max_file_bytes) {
    rc = ADV_ELIMIT;
    snprintf(eb.msg, sizeof(eb.msg),
             "%zu bytes, larger than the %zu-byte limit", data_len,
             lim.max_file_bytes);
  } else if (data_path[0]) {
    rc = adv_dataset_load(data_path, NULL, lim, &ds, &eb);
  } else if (data) {
    /* no mount namespace to place /in/data: read the bytes we hold */
    rc = adv_dataset_load_mem(data, data_len, NULL, 0, lim, &ds, &eb);
  } else {
    rc = ADV_EINVAL;
    snprintf(eb.msg, sizeof(eb.msg), "no dataset bytes");
  }
  if (rc) {
    sbx__runner_error(rc, "dataset: %s", eb.msg[0] ? eb.msg : adv_strerror(rc));
    adv_model_free(m);
    return rc;
  }
  /* several inputs, an input name or mean/std: m becomes a single-input
   * view of the loaded model (base), which it borrows (adv_job_model) */
  adv_model *base = NULL, *view = NULL;
  if (spec->kind == SBX_JOB_RUN &&
      (rc = adv_job_model(m, &spec->job, data_path[0] ? data_path : NULL,
                          data_path[0] ? NULL : data, data_len, &view, &eb))) {
    sbx__runner_error(rc, "%s", eb.msg[0] ? eb.msg : adv_strerror(rc));
    adv_dataset_free(&ds);
    adv_model_free(m);
    return rc;
  }
  if (view) {
    base = m;
    m = view;
  }
  /* the model's declared input rank decides how x is read */
  if ((rc = adv_model_fit_data(m, &ds.x, &eb)) != 0) {
    sbx__runner_error(rc, "%s", eb.msg[0] ? eb.msg : adv_strerror(rc));
    adv_dataset_free(&ds);
    adv_model_free(m);
    adv_model_free(base);
    return rc;
  }
  /* labels: every job needs them but an output-distance attack job
   * (docs/objectives.md), which compares outputs, not classes */
  if (!ds.y.data &&
      !(spec->kind == SBX_JOB_RUN &&
        spec->job.params.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE)) {
    sbx__runner_error(ADV_EINVAL,
                      "dataset: no labels (an NPZ member 'y' is needed)");
    adv_dataset_free(&ds);
    adv_model_free(m);
    adv_model_free(base);
    return ADV_EINVAL;
  }
  /* a model with NaN/Inf outputs (NaN weights) is refused by the engine's
   * clean pass, for attacks and evaluations alike (ADV_EFORMAT) */
  if (spec->kind == SBX_JOB_RUN) {
    rc = run_job(spec, m, &ds);
    adv_dataset_free(&ds);
    adv_model_free(m);
    adv_model_free(base);
    return rc;
  }
  int64_t n = ds.x.dims[0];
  if (spec->n && (int64_t)spec->n < n)
    n = (int64_t)spec->n;
  adv_attack_result res;
  memset(&res, 0, sizeof(res));
  rc = adv_attack_run(m, ds.x.data, n, ds.y.data, NULL, ap, on_progress, NULL,
                      &sbx__runner_abort, &res, &e);
  if (rc) {
    sbx__runner_error(rc, "%s", e.msg[0] ? e.msg : adv_strerror(rc));
    adv_dataset_free(&ds);
    adv_model_free(m);
    adv_model_free(base);
    return rc;
  }
  int64_t clean = 0, robust = 0, succ = 0;
  const int64_t *y = ds.y.data;
  for (int64_t i = 0; i < n; i++) {
    clean += res.pred_clean[i] == y[i];
    robust += res.pred_adv[i] == y[i];
    succ += res.success[i] != 0;
  }
  char json[1024];
  int jl = snprintf(
      json, sizeof(json),
      "{\"schema\":\"aisbx.result.v1-runner\",\"kind\":\"attack\",\"attack\":"
      "\"%s\","
      "\"norm\":\"%s\",\"eps\":%.9g,\"seed\":%llu,\"n\":%lld,\"clean_correct\":"
      "%lld,"
      "\"robust_correct\":%lld,\"successes\":%lld,\"clean_accuracy\":%.6f,"
      "\"robust_accuracy\":%.6f,\"forwards\":%lld,\"backwards\":%lld,"
      "\"seconds\":%.3f}",
      adv_attack_name(ap.kind), ap.norm == ADV_NORM_L2 ? "l2" : "linf",
      (double)ap.eps, (unsigned long long)ap.seed, (long long)n,
      (long long)clean, (long long)robust, (long long)succ,
      n ? (double)clean / (double)n : 0.0, n ? (double)robust / (double)n : 0.0,
      (long long)res.forwards, (long long)res.backwards, res.seconds);
  on_progress(NULL, "done", 1.0);
  rc = sbx_ipc_send(RUNNER_OUT_FD, SBX_IPC_RESULT, json, (size_t)jl);
  int64_t dims[ADV_MAX_DIMS];
  memcpy(dims, ds.x.dims, sizeof(dims));
  dims[0] = n;
  char hdr[512];
  size_t hl = npy_header(hdr, sizeof(hdr), dims, ds.x.ndim);
  size_t bytes = (size_t)n * (size_t)res.per * sizeof(float);
  if (!rc && hl)
    rc = sbx_ipc_send2(RUNNER_OUT_FD, SBX_IPC_ADV_NPY, hdr, hl, res.x_adv,
                       bytes);
  adv_attack_result_free(&res);
  adv_dataset_free(&ds);
  adv_model_free(m);
  adv_model_free(base);
  return rc ? ADV_EIO : 0;
}
