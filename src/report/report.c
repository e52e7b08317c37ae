/*
 * report.c - the result JSON (aisbx.result.v1) of a job, with a tiny
 * streaming JSON writer (proper string escaping, %.9g numbers, exact
 * 64-bit integers). Field order and number formatting are part of the
 * format: the CLI and the runner must produce the same bytes.
 */
#include "adv/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct jw {
  FILE *f;
  int depth;
  int first[64];
} jw;

static void sep(jw *w) {
  if (w->depth > 0) {
    if (!w->first[w->depth])
      fputc(',', w->f);
    w->first[w->depth] = 0;
  }
}

/* Opens an object ('{') or array ('['); its first member needs no comma. */
static void jw_open(jw *w, char c) {
  sep(w);
  fputc(c, w->f);
  if (w->depth < 63)
    w->first[++w->depth] = 1;
}

static void jw_close(jw *w, char c) {
  fputc(c, w->f);
  w->depth--;
}

#define jw_begin_obj(w) jw_open(w, '{')
#define jw_end_obj(w) jw_close(w, '}')
#define jw_begin_arr(w) jw_open(w, '[')
#define jw_end_arr(w) jw_close(w, ']')

static void raw_str(jw *w, const char *s) {
  fputc('"', w->f);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(w->f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(w->f, "\\u%04x", *p);
    else
      fputc(*p, w->f);
  }
  fputc('"', w->f);
}

static void jw_key(jw *w, const char *k) {
  sep(w);
  raw_str(w, k);
  fputc(':', w->f);
  w->first[w->depth] = 1; /* the value that follows needs no comma */
}

static void jw_str(jw *w, const char *s) {
  sep(w);
  raw_str(w, s);
}

static void jw_num(jw *w, double v) {
  sep(w);
  if (isfinite(v))
    fprintf(w->f, "%.9g", v);
  else
    fputs("null", w->f);
}

static void jw_int(jw *w, int64_t v) {
  sep(w);
  fprintf(w->f, "%lld", (long long)v);
}

static void jw_uint(jw *w, uint64_t v) {
  sep(w);
  fprintf(w->f, "%llu", (unsigned long long)v);
}

static void jw_bool(jw *w, int v) {
  sep(w);
  fputs(v ? "true" : "false", w->f);
}

static void jw_null(jw *w) {
  sep(w);
  fputs("null", w->f);
}

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* count / mean / median / max / min over the values with mask[i] set
 * (null statistics when none; min only when some). */
static void stats(jw *w, const char *name, const float *v,
                  const unsigned char *mask, int64_t n) {
  float *t = malloc(sizeof(float) * (size_t)(n ? n : 1));
  int64_t k = 0;
  double s = 0;
  for (int64_t i = 0; t && i < n; i++)
    if (mask[i]) {
      t[k++] = v[i];
      s += v[i];
    }
  jw_key(w, name);
  jw_begin_obj(w);
  jw_key(w, "count");
  jw_int(w, k);
  if (k && t) {
    qsort(t, (size_t)k, sizeof(float), cmp_f);
    jw_key(w, "mean");
    jw_num(w, s / (double)k);
    jw_key(w, "median");
    jw_num(w, k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]));
    jw_key(w, "max");
    jw_num(w, t[k - 1]);
    jw_key(w, "min");
    jw_num(w, t[0]);
  } else {
    jw_key(w, "mean");
    jw_null(w);
    jw_key(w, "median");
    jw_null(w);
    jw_key(w, "max");
    jw_null(w);
  }
  jw_end_obj(w);
  free(t);
}

/* The objective an attack optimizes, as the result names it. */
static const char *loss_of(const adv_attack_params *p) {
  switch (p->kind) { /* attacks with a fixed objective of their own */
  case ADV_ATTACK_APGD_CE:
    return "ce";
  case ADV_ATTACK_APGD_DLR:
    return "dlr";
  case ADV_ATTACK_APGD_T:
    return "dlr-targeted";
  case ADV_ATTACK_SQUARE:
    return p->targeted ? "ce-targeted" : "margin";
  case ADV_ATTACK_CW_L2:
    return "cw-f6";
  case ADV_ATTACK_FAB:
  case ADV_ATTACK_FAB_T:
  case ADV_ATTACK_DEEPFOOL:
  case ADV_ATTACK_HSJ:
    return "none";
  default:
    return adv_loss_name(p->loss);
  }
}

/* A JSON array of n numbers. */
static void write_floats(jw *w, const float *v, int n) {
  jw_begin_arr(w);
  for (int i = 0; i < n; i++)
    jw_num(w, v[i]);
  jw_end_arr(w);
}

static void write_params(jw *w, const adv_attack_params *p) {
  jw_key(w, "params");
  jw_begin_obj(w);
  jw_key(w, "norm");
  jw_str(w, p->norm == ADV_NORM_LINF ? "inf" : "2");
  jw_key(w, "eps");
  jw_num(w, p->eps);
  jw_key(w, "steps");
  jw_int(w, p->steps);
  jw_key(w, "step_size");
  jw_num(w, p->step_size);
  jw_key(w, "restarts");
  jw_int(w, p->restarts);
  jw_key(w, "random_start");
  jw_bool(w, p->random_start);
  jw_key(w, "targeted");
  jw_bool(w, p->targeted);
  jw_key(w, "n_target_classes");
  jw_int(w, p->n_target_classes);
  jw_key(w, "queries");
  jw_int(w, p->queries);
  jw_key(w, "seed");
  jw_uint(w, p->seed);
  jw_key(w, "clip_min"); /* per-channel bounds: one value per channel */
  if (p->n_clip > 0)
    write_floats(w, p->clip_lo, p->n_clip);
  else
    jw_num(w, p->clip_min);
  jw_key(w, "clip_max");
  if (p->n_clip > 0)
    write_floats(w, p->clip_hi, p->n_clip);
  else
    jw_num(w, p->clip_max);
  jw_key(w, "loss");
  jw_str(w, loss_of(p));
  jw_key(w, "momentum");
  jw_num(w, p->momentum);
  jw_key(w, "p_init");
  jw_num(w, p->p_init);
  if (p->kind == ADV_ATTACK_SQUARE) { /* Square only: other results unchanged */
    jw_key(w, "resc_schedule");
    jw_bool(w, p->resc_schedule);
  }
  jw_key(w, "kappa");
  jw_num(w, p->kappa);
  jw_key(w, "binary_steps");
  jw_int(w, p->binary_steps);
  jw_key(w, "overshoot");
  jw_num(w, p->overshoot);
  jw_key(w, "batch");
  jw_int(w, p->batch);
  jw_key(w, "threads");
  jw_int(w, p->threads);
  jw_end_obj(w);
}

static void write_header(jw *w, const char *kind, const adv_report_meta *m,
                         const adv_job_result *r) {
  jw_key(w, "schema");
  jw_str(w, "aisbx.result.v1");
  jw_key(w, "kind");
  jw_str(w, kind);
  jw_key(w, "engine_version");
  jw_str(w, adv_version());
  jw_key(w, "model");
  jw_begin_obj(w);
  jw_key(w, "path");
  jw_str(w, m->model_path);
  jw_key(w, "sha256");
  jw_str(w, m->model_sha256);
  jw_end_obj(w);
  jw_key(w, "data");
  jw_begin_obj(w);
  jw_key(w, "path");
  jw_str(w, m->data_path);
  jw_key(w, "sha256");
  jw_str(w, m->data_sha256);
  if (m->labels_path) {
    jw_key(w, "labels");
    jw_str(w, m->labels_path);
  }
  if (r->offset) { /* a shard: samples offset .. offset + n - 1 */
    jw_key(w, "offset");
    jw_int(w, r->offset);
  }
  jw_key(w, "n");
  jw_int(w, r->n);
  jw_end_obj(w);
}

static void write_i64_arr(jw *w, const char *k, const int64_t *v, int64_t n) {
  jw_key(w, k);
  jw_begin_arr(w);
  for (int64_t i = 0; i < n; i++)
    jw_int(w, v[i]);
  jw_end_arr(w);
}

static void write_f_arr(jw *w, const char *k, const float *v, int64_t n) {
  jw_key(w, k);
  jw_begin_arr(w);
  for (int64_t i = 0; i < n; i++)
    jw_num(w, v[i]);
  jw_end_arr(w);
}

static void write_bool_arr(jw *w, const char *k, const unsigned char *v,
                           int64_t n) {
  jw_key(w, k);
  jw_begin_arr(w);
  for (int64_t i = 0; i < n; i++)
    jw_bool(w, v[i]);
  jw_end_arr(w);
}

/* The input domain of the job (issue 13), only when the spec sets one, so
 * other results keep their bytes: "input": {"name": <the attacked model
 * input or null for the first float input>, "mean": [...], "std": [...]}
 * (empty lists when not set; the bounds are params.clip_min/clip_max). */
static void write_domain(jw *w, const adv_job_spec *s) {
  if (!(s->set & (ADV_JOB_SET_INPUT | ADV_JOB_SET_MEAN | ADV_JOB_SET_STD)))
    return;
  jw_key(w, "input");
  jw_begin_obj(w);
  jw_key(w, "name");
  if (s->input[0])
    jw_str(w, s->input);
  else
    jw_null(w);
  jw_key(w, "mean");
  jw_begin_arr(w);
  for (int i = 0; i < s->n_mean; i++)
    jw_num(w, s->mean[i]);
  jw_end_arr(w);
  jw_key(w, "std");
  jw_begin_arr(w);
  for (int i = 0; i < s->n_std; i++)
    jw_num(w, s->std[i]);
  jw_end_arr(w);
  jw_end_obj(w);
}

/* {"mean": a, "median": b} under key k. */
static void write_mm(jw *w, const char *k, double mean, double median) {
  jw_key(w, k);
  jw_begin_obj(w);
  jw_key(w, "mean");
  jw_num(w, mean);
  jw_key(w, "median");
  jw_num(w, median);
  jw_end_obj(w);
}

/* The output-distance objective's summary (issue 13 item 4,
 * docs/results-schema.md): "objective": {"name", "output", "targeted",
 * "min_distance", "output_floats", "output_distance": {mean, median},
 * "relative_distance": {...}, targeted: "target_distance": {mean, median,
 * "clean_mean"}}. */
static void write_objective(jw *w, const adv_job_spec *s,
                            const adv_job_result *r) {
  jw_key(w, "objective");
  jw_begin_obj(w);
  jw_key(w, "name");
  jw_str(w, "output-distance");
  jw_key(w, "output");
  if (s->output[0])
    jw_str(w, s->output);
  else
    jw_null(w);
  jw_key(w, "targeted");
  jw_bool(w, r->params.targeted);
  jw_key(w, "min_distance");
  jw_num(w, r->params.min_distance);
  jw_key(w, "output_floats");
  jw_int(w, r->out_per);
  write_mm(w, "output_distance", r->out_dist_mean, r->out_dist_median);
  write_mm(w, "relative_distance", r->out_rel_mean, r->out_rel_median);
  if (r->tgt_dist) {
    write_mm(w, "target_distance", r->tgt_dist_mean, r->tgt_dist_median);
    jw_key(w, "target_distance_clean_mean");
    jw_num(w, r->tgt_dist_clean_mean);
  }
  jw_end_obj(w);
}

static int write_attack(jw *w, const adv_report_meta *meta,
                        const adv_job_spec *spec, const adv_job_result *r) {
  int64_t n = r->n;
  unsigned char *mask = calloc((size_t)(n ? n : 1), 1);
  if (!mask)
    return ADV_ENOMEM;
  int obj = r->params.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  /* norms over the successful adversarials; the output distance without a
   * min_distance has no success: over every sample */
  int all = obj && !(r->params.min_distance > 0);
  for (int64_t i = 0; i < n; i++)
    mask[i] =
        all || ((obj || r->pred_clean[i] == r->label[i]) && r->success[i]);
  jw_begin_obj(w);
  write_header(w, "attack", meta, r);
  jw_key(w, "attack");
  jw_str(w, adv_attack_name(r->params.kind));
  write_params(w, &r->params);
  write_domain(w, spec);
  if (obj)
    write_objective(w, spec, r);
  jw_key(w, "clean_accuracy"); /* null: the objective has no classes */
  if (obj)
    jw_null(w);
  else
    jw_num(w, r->clean_accuracy);
  jw_key(w, "robust_accuracy");
  if (obj)
    jw_null(w);
  else
    jw_num(w, r->robust_accuracy);
  jw_key(w, "attack_success_rate");
  if (obj && !(r->params.min_distance > 0))
    jw_null(w); /* no success criterion */
  else
    jw_num(w, r->attack_success_rate);
  jw_key(w, "norms");
  jw_begin_obj(w);
  stats(w, "linf", r->linf, mask, n);
  stats(w, "l2", r->l2, mask, n);
  stats(w, "l0", r->l0, mask, n);
  jw_end_obj(w);
  jw_key(w, "queries");
  jw_begin_obj(w);
  jw_key(w, "forward");
  jw_int(w, r->forwards);
  jw_key(w, "backward");
  jw_int(w, r->backwards);
  jw_key(w, "mean_per_sample");
  jw_num(w, (double)r->forwards / (double)n);
  jw_end_obj(w);
  jw_key(w, "wall_time_s");
  jw_num(w, r->wall_time_s);
  jw_key(w, "per_sample");
  jw_begin_obj(w);
  if (obj) {
    write_f_arr(w, "output_distance", r->out_dist, n);
    write_f_arr(w, "relative_distance", r->out_rel, n);
    if (r->tgt_dist) {
      write_f_arr(w, "target_distance", r->tgt_dist, n);
      write_f_arr(w, "target_distance_clean", r->tgt_dist_clean, n);
    }
  } else {
    write_i64_arr(w, "label", r->label, n);
    if (r->target)
      write_i64_arr(w, "target", r->target, n);
    write_i64_arr(w, "pred_clean", r->pred_clean, n);
    write_i64_arr(w, "pred_adv", r->pred_adv, n);
  }
  write_bool_arr(w, "success", r->success, n);
  write_f_arr(w, "linf", r->linf, n);
  write_f_arr(w, "l2", r->l2, n);
  write_f_arr(w, "l0", r->l0, n);
  write_i64_arr(w, "queries", r->queries, n);
  jw_end_obj(w);
  jw_end_obj(w);
  free(mask);
  return 0;
}

static int write_evaluation(jw *w, const adv_report_meta *meta,
                            const adv_job_spec *spec, const adv_job_result *r) {
  int64_t n = r->n;
  int ne = r->n_eps;
  const adv_eval_point *last = &r->curve[ne - 1];
  unsigned char *mask = calloc((size_t)(n ? n : 1), 1);
  if (!mask)
    return ADV_ENOMEM;
  for (int64_t i = 0; i < n; i++)
    mask[i] = r->broken_by[i] >= 0;
  jw_begin_obj(w);
  write_header(w, "evaluation", meta, r);
  jw_key(w, "suite");
  jw_str(w, adv_suite_name(r->suite));
  write_domain(w, spec);
  jw_key(w, "attacks");
  jw_begin_arr(w);
  for (int a = 0; a < r->n_items; a++) {
    jw_begin_obj(w);
    jw_key(w, "attack");
    jw_str(w, adv_attack_name(r->items[a]));
    write_params(w, &r->item_params[a]);
    jw_end_obj(w);
  }
  jw_end_arr(w);
  jw_key(w, "norm");
  jw_str(w, spec->params.norm == ADV_NORM_LINF ? "inf" : "2");
  jw_key(w, "eps");
  jw_num(w, last->eps);
  jw_key(w, "seed");
  jw_uint(w, spec->params.seed);
  jw_key(w, "clean_accuracy");
  jw_num(w, r->clean_accuracy);
  jw_key(w, "robust_accuracy");
  jw_num(w, r->robust_accuracy);
  jw_key(w, "attack_success_rate");
  jw_num(w, r->attack_success_rate);
  jw_key(w, "curve");
  jw_begin_arr(w);
  for (int e = 0; e < ne; e++) {
    const adv_eval_point *pt = &r->curve[e];
    jw_begin_obj(w);
    jw_key(w, "eps");
    jw_num(w, pt->eps);
    jw_key(w, "robust_accuracy");
    jw_num(w, (double)pt->robust / (double)n);
    jw_key(w, "per_attack");
    jw_begin_arr(w);
    int64_t remaining = e ? r->curve[e - 1].robust : r->correct;
    for (int a = 0; a < pt->n_att; a++) {
      remaining -= pt->newly[a];
      jw_begin_obj(w);
      jw_key(w, "attack");
      jw_str(w, adv_attack_name(r->items[a]));
      jw_key(w, "newly_broken");
      jw_int(w, pt->newly[a]);
      jw_key(w, "robust_accuracy_after");
      jw_num(w, (double)remaining / (double)n);
      jw_key(w, "forward_queries");
      jw_int(w, pt->fw[a]);
      jw_key(w, "backward_queries");
      jw_int(w, pt->bw[a]);
      jw_key(w, "time_s");
      jw_num(w, pt->secs[a]);
      jw_end_obj(w);
    }
    jw_end_arr(w);
    jw_end_obj(w);
  }
  jw_end_arr(w);
  jw_key(w, "norms");
  jw_begin_obj(w);
  stats(w, "linf", r->linf, mask, n);
  stats(w, "l2", r->l2, mask, n);
  jw_end_obj(w);
  jw_key(w, "queries");
  jw_begin_obj(w);
  jw_key(w, "forward");
  jw_int(w, r->forwards);
  jw_key(w, "backward");
  jw_int(w, r->backwards);
  jw_end_obj(w);
  jw_key(w, "wall_time_s");
  jw_num(w, r->wall_time_s);
  jw_key(w, "warnings");
  jw_begin_arr(w);
  for (int i = 0; i < r->n_warnings; i++)
    jw_str(w, r->warnings[i]);
  jw_end_arr(w);
  jw_key(w, "per_sample");
  jw_begin_obj(w);
  write_i64_arr(w, "label", r->label, n);
  write_i64_arr(w, "pred_clean", r->pred_clean, n);
  write_bool_arr(w, "robust", r->is_robust, n);
  jw_key(w, "broken_by");
  jw_begin_arr(w);
  for (int64_t i = 0; i < n; i++) {
    if (r->broken_by[i] >= 0)
      jw_str(w, adv_attack_name(r->items[r->broken_by[i]]));
    else
      jw_null(w);
  }
  jw_end_arr(w);
  write_f_arr(w, "linf", r->linf, n);
  write_f_arr(w, "l2", r->l2, n);
  jw_end_obj(w);
  jw_end_obj(w);
  free(mask);
  return 0;
}

int adv_report_write_file(FILE *f, const adv_report_meta *meta,
                          const adv_job_spec *spec, const adv_job_result *r) {
  if (!f || !meta || !spec || !r || r->n <= 0 ||
      (r->kind == ADV_JOB_EVALUATION && (r->n_eps < 1 || !r->curve)))
    return ADV_EINVAL;
  jw w = {f, 0, {0}};
  int rc = r->kind == ADV_JOB_EVALUATION ? write_evaluation(&w, meta, spec, r)
                                         : write_attack(&w, meta, spec, r);
  if (rc)
    return rc;
  fputc('\n', f);
  return ferror(f) ? ADV_EIO : ADV_OK;
}

int adv_report_write_mem(char **buf, size_t *len, const adv_report_meta *meta,
                         const adv_job_spec *spec, const adv_job_result *r) {
  *buf = NULL;
  *len = 0;
  char *b = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&b, &n);
  if (!f)
    return ADV_ENOMEM;
  int rc = adv_report_write_file(f, meta, spec, r);
  if (fclose(f) != 0 && !rc)
    rc = ADV_ENOMEM;
  if (rc) {
    free(b);
    return rc;
  }
  *buf = b;
  *len = n;
  return ADV_OK;
}
