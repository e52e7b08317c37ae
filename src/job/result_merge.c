/*
 * result_merge.c - the unsharded result document from K shard documents
 * (include/sbx/result_merge.h).
 *
 * The shards' common header (schema, kind, engine, model, the attack or
 * suite with every parameter, norm, eps, seed) is copied byte for byte
 * from shard 0 after checking that every shard has the same bytes; the
 * data object is rewritten with the merged offset and n; everything after
 * it is recomputed from the concatenated per-sample arrays with the same
 * expressions and number formats as src/report/report.c (which must stay
 * in step with this file: tests/job/shard_merge.py compares the merge
 * with the unsharded CLI run).
 */
#include "sbx/result_merge.h"

#include "sbx/status.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ATTACKS 16               /* ADV_JOB_MAX_ATTACKS */
#define MAX_EPS 64                   /* ADV_JOB_MAX_EPS */
#define MAX_WARNINGS 8               /* ADV_JOB_MAX_WARNINGS */
#define INT_LIMIT 9007199254740992.0 /* 2^53: integers exact in a double */

/* ---------------- the writer: report.c's, verbatim ---------------- */

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

/* Opens an object or array; its first member needs no comma. */
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
  w->first[w->depth] = 1;
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

/* report.c's stats(): count / mean / median / max / min over mask. */
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
  jw_open(w, '{');
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
  jw_close(w, '}');
  free(t);
}

static void write_i64_arr(jw *w, const char *k, const int64_t *v, int64_t n) {
  jw_key(w, k);
  jw_open(w, '[');
  for (int64_t i = 0; i < n; i++)
    jw_int(w, v[i]);
  jw_close(w, ']');
}

static void write_f_arr(jw *w, const char *k, const float *v, int64_t n) {
  jw_key(w, k);
  jw_open(w, '[');
  for (int64_t i = 0; i < n; i++)
    jw_num(w, v[i]);
  jw_close(w, ']');
}

static void write_bool_arr(jw *w, const char *k, const unsigned char *v,
                           int64_t n) {
  jw_key(w, k);
  jw_open(w, '[');
  for (int64_t i = 0; i < n; i++)
    jw_bool(w, v[i]);
  jw_close(w, ']');
}

/* ---------------- reading ---------------- */

typedef struct mctx {
  char *err;
  size_t errlen;
  int shard; /* the shard being read, -1 for none */
} mctx;

/* Sets the error "shard <i>: <msg>" and returns rc. */
static int fail(mctx *c, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(mctx *c, int rc, const char *fmt, ...) {
  if (c->err && c->errlen) {
    char m[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (c->shard >= 0)
      snprintf(c->err, c->errlen, "shard %d: %s", c->shard, m);
    else
      snprintf(c->err, c->errlen, "%s", m);
  }
  return rc;
}

/* An integer-valued number (decoded as a double) in [lo, hi]; 0 or -1. */
static int get_int(const json_t *v, double lo, double hi, int64_t *out) {
  if (!json_is_number(v))
    return -1;
  double d = json_number_value(v);
  if (!(d >= lo && d <= hi) || d != floor(d))
    return -1;
  *out = (int64_t)d;
  return 0;
}

/* A float field: a number within float range, or null (not finite). */
static int get_float(const json_t *v, float *out) {
  if (json_is_null(v)) {
    *out = NAN;
    return 0;
  }
  if (!json_is_number(v))
    return -1;
  double d = json_number_value(v);
  if (!(fabs(d) <= (double)FLT_MAX))
    return -1;
  *out = (float)d;
  return 0;
}

/* A number (double) or null (NAN). */
static int get_double(const json_t *v, double *out) {
  if (json_is_null(v)) {
    *out = NAN;
    return 0;
  }
  if (!json_is_number(v))
    return -1;
  *out = json_number_value(v);
  return 0;
}

/* obj[key] as an array of exactly n elements, or NULL. */
static const json_t *arr_n(const json_t *obj, const char *key, int64_t n) {
  const json_t *a = json_object_get(obj, key);
  if (!json_is_array(a) || (int64_t)json_array_size(a) != n)
    return NULL;
  return a;
}

/* The per-sample arrays of one kind, growing as shards are appended. */
typedef struct acc {
  int64_t n, cap;
  int64_t *label, *target, *pred_clean, *pred_adv, *queries;
  int *broken_by; /* evaluation: the attack index, -1 none */
  unsigned char *success, *robust;
  float *linf, *l2, *l0;
} acc;

static void acc_free(acc *a) {
  free(a->label);
  free(a->target);
  free(a->pred_clean);
  free(a->pred_adv);
  free(a->queries);
  free(a->broken_by);
  free(a->success);
  free(a->robust);
  free(a->linf);
  free(a->l2);
  free(a->l0);
}

/* Grows every array to hold `total` samples. */
static int acc_grow(acc *a, int64_t total) {
  size_t m = (size_t)(total ? total : 1);
#define GROW(f, sz)                                                            \
  do {                                                                         \
    void *p_ = realloc(a->f, m * (sz));                                        \
    if (!p_)                                                                   \
      return SBX_ENOMEM;                                                       \
    a->f = p_;                                                                 \
  } while (0)
  GROW(label, sizeof(int64_t));
  GROW(target, sizeof(int64_t));
  GROW(pred_clean, sizeof(int64_t));
  GROW(pred_adv, sizeof(int64_t));
  GROW(queries, sizeof(int64_t));
  GROW(broken_by, sizeof(int));
  GROW(success, 1);
  GROW(robust, 1);
  GROW(linf, sizeof(float));
  GROW(l2, sizeof(float));
  GROW(l0, sizeof(float));
#undef GROW
  a->cap = total;
  return 0;
}

/* Appends ps[key] (n integers >= lo) at dst + off. */
static int read_ints(mctx *c, const json_t *ps, const char *key, int64_t n,
                     double lo, int64_t *dst) {
  const json_t *a = arr_n(ps, key, n);
  if (!a)
    return fail(c, SBX_EINVAL, "per_sample.%s: not an array of n values", key);
  for (int64_t i = 0; i < n; i++)
    if (get_int(json_array_get(a, (size_t)i), lo, INT_LIMIT, &dst[i]))
      return fail(c, SBX_EINVAL, "per_sample.%s[%lld]: not an integer >= %g",
                  key, (long long)i, lo);
  return 0;
}

static int read_floats(mctx *c, const json_t *ps, const char *key, int64_t n,
                       float *dst) {
  const json_t *a = arr_n(ps, key, n);
  if (!a)
    return fail(c, SBX_EINVAL, "per_sample.%s: not an array of n values", key);
  for (int64_t i = 0; i < n; i++)
    if (get_float(json_array_get(a, (size_t)i), &dst[i]))
      return fail(c, SBX_EINVAL, "per_sample.%s[%lld]: not a float or null",
                  key, (long long)i);
  return 0;
}

static int read_bools(mctx *c, const json_t *ps, const char *key, int64_t n,
                      unsigned char *dst) {
  const json_t *a = arr_n(ps, key, n);
  if (!a)
    return fail(c, SBX_EINVAL, "per_sample.%s: not an array of n values", key);
  for (int64_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(a, (size_t)i);
    if (!json_is_boolean(v))
      return fail(c, SBX_EINVAL, "per_sample.%s[%lld]: not a boolean", key,
                  (long long)i);
    dst[i] = json_is_true(v);
  }
  return 0;
}

/* One shard: its parsed document and the byte spans of its header. */
typedef struct shard {
  json_t *doc;
  const char *text;
  size_t a_len;        /* text[0, a_len): up to and with `,"data":` */
  size_t b_off, b_len; /* after the data object, up to the counts */
  int64_t offset, n;
} shard;

/* Finds needle in hay[0, len); its offset or -1. */
static long long find(const char *hay, size_t len, const char *needle) {
  size_t nl = strlen(needle);
  for (size_t i = 0; i + nl <= len; i++)
    if (hay[i] == needle[0] && !memcmp(hay + i, needle, nl))
      return (long long)i;
  return -1;
}

/*
 * Parses shard text and locates its raw header spans. The writer emits no
 * whitespace and escapes every '"' inside strings, so `,"data":{` and the
 * data object's `"n":` key can only be the keys themselves.
 */
static int read_shard(mctx *c, const char *text, size_t len, shard *s) {
  memset(s, 0, sizeof *s);
  if (!text)
    return fail(c, SBX_EINVAL, "no document");
  if (len > SBX_MERGE_MAX_DOC)
    return fail(c, SBX_ELIMIT, "document of %zu bytes exceeds the cap %zu", len,
                SBX_MERGE_MAX_DOC);
  json_error_t je;
  s->doc = json_loadb(text, len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &je);
  if (!s->doc)
    return fail(c, SBX_EINVAL, "not JSON: %s (line %d)", je.text, je.line);
  if (!json_is_object(s->doc))
    return fail(c, SBX_EINVAL, "not a JSON object");
  const char *schema = json_string_value(json_object_get(s->doc, "schema"));
  if (!schema || strcmp(schema, "aisbx.result.v1"))
    return fail(c, SBX_EINVAL, "schema: not aisbx.result.v1");
  const json_t *data = json_object_get(s->doc, "data");
  if (!json_is_object(data))
    return fail(c, SBX_EINVAL, "data: not an object");
  if (get_int(json_object_get(data, "n"), 1, (double)SBX_MERGE_MAX_SAMPLES,
              &s->n))
    return fail(c, SBX_EINVAL, "data.n: not an integer 1..%lld",
                (long long)SBX_MERGE_MAX_SAMPLES);
  const json_t *off = json_object_get(data, "offset");
  if (off && (get_int(off, 1, INT_LIMIT, &s->offset)))
    return fail(c, SBX_EINVAL, "data.offset: not an integer > 0");
  s->text = text;
  long long a = find(text, len, ",\"data\":{");
  long long ca = find(text, len, ",\"clean_accuracy\":");
  if (a < 0 || ca < 0 || a > ca)
    return fail(c, SBX_EINVAL,
                "not a result document as the runner writes "
                "it (data / clean_accuracy)");
  s->a_len = (size_t)a + 8; /* through `,"data":` */
  long long nk = find(text + a, (size_t)(ca - a), "\"n\":");
  if (nk < 0)
    return fail(c, SBX_EINVAL, "data.n: not found in the text");
  size_t p = (size_t)(a + nk + 4);
  while (p < (size_t)ca && text[p] >= '0' && text[p] <= '9')
    p++;
  if (p >= (size_t)ca || text[p] != '}')
    return fail(c, SBX_EINVAL, "data: n is not its last member");
  s->b_off = p + 1;
  s->b_len = (size_t)ca - s->b_off;
  return 0;
}

/* ---------------- attack ---------------- */

/* Appends one attack shard's per-sample arrays and query counts. */
static int read_attack(mctx *c, const shard *s, int has_target, acc *m,
                       int64_t *fw, int64_t *bw, double *wall) {
  const json_t *ps = json_object_get(s->doc, "per_sample");
  const json_t *q = json_object_get(s->doc, "queries");
  if (!json_is_object(ps) || !json_is_object(q))
    return fail(c, SBX_EINVAL, "per_sample / queries: not objects");
  int64_t n = s->n, o = m->n, f, b;
  if (get_int(json_object_get(q, "forward"), 0, INT_LIMIT, &f) ||
      get_int(json_object_get(q, "backward"), 0, INT_LIMIT, &b))
    return fail(c, SBX_EINVAL, "queries.forward / backward: not integers");
  if ((json_object_get(ps, "target") != NULL) != has_target)
    return fail(c, SBX_EINVAL,
                "per_sample.target: present in some shards "
                "only");
  int rc;
  if ((rc = read_ints(c, ps, "label", n, 0, m->label + o)) ||
      (has_target && (rc = read_ints(c, ps, "target", n, 0, m->target + o))) ||
      (rc = read_ints(c, ps, "pred_clean", n, 0, m->pred_clean + o)) ||
      (rc = read_ints(c, ps, "pred_adv", n, 0, m->pred_adv + o)) ||
      (rc = read_bools(c, ps, "success", n, m->success + o)) ||
      (rc = read_floats(c, ps, "linf", n, m->linf + o)) ||
      (rc = read_floats(c, ps, "l2", n, m->l2 + o)) ||
      (rc = read_floats(c, ps, "l0", n, m->l0 + o)) ||
      (rc = read_ints(c, ps, "queries", n, 0, m->queries + o)))
    return rc;
  double wt;
  if (get_double(json_object_get(s->doc, "wall_time_s"), &wt))
    return fail(c, SBX_EINVAL, "wall_time_s: not a number");
  if (*fw > INT_LIMIT - f || *bw > INT_LIMIT - b)
    return fail(c, SBX_ELIMIT, "query totals overflow");
  *fw += f;
  *bw += b;
  if (isfinite(wt) && !(wt <= *wall))
    *wall = wt;
  m->n += n;
  return 0;
}

/* The merged attack document after the header (report.c's write_attack). */
static void write_attack_tail(jw *w, const acc *m, int has_target, int64_t fw,
                              int64_t bw, double wall, unsigned char *mask) {
  int64_t n = m->n, correct = 0, broken = 0, robust = 0;
  for (int64_t i = 0; i < n; i++) {
    int cc = m->pred_clean[i] == m->label[i];
    correct += cc;
    broken += cc && m->success[i];
    robust += cc && !m->success[i];
    mask[i] = cc && m->success[i];
  }
  jw_key(w, "clean_accuracy");
  jw_num(w, (double)correct / (double)n);
  jw_key(w, "robust_accuracy");
  jw_num(w, (double)robust / (double)n);
  jw_key(w, "attack_success_rate");
  jw_num(w, correct ? (double)broken / (double)correct : 0.0);
  jw_key(w, "norms");
  jw_open(w, '{');
  stats(w, "linf", m->linf, mask, n);
  stats(w, "l2", m->l2, mask, n);
  stats(w, "l0", m->l0, mask, n);
  jw_close(w, '}');
  jw_key(w, "queries");
  jw_open(w, '{');
  jw_key(w, "forward");
  jw_int(w, fw);
  jw_key(w, "backward");
  jw_int(w, bw);
  jw_key(w, "mean_per_sample");
  jw_num(w, (double)fw / (double)n);
  jw_close(w, '}');
  jw_key(w, "wall_time_s");
  jw_num(w, wall);
  jw_key(w, "per_sample");
  jw_open(w, '{');
  write_i64_arr(w, "label", m->label, n);
  if (has_target)
    write_i64_arr(w, "target", m->target, n);
  write_i64_arr(w, "pred_clean", m->pred_clean, n);
  write_i64_arr(w, "pred_adv", m->pred_adv, n);
  write_bool_arr(w, "success", m->success, n);
  write_f_arr(w, "linf", m->linf, n);
  write_f_arr(w, "l2", m->l2, n);
  write_f_arr(w, "l0", m->l0, n);
  write_i64_arr(w, "queries", m->queries, n);
  jw_close(w, '}');
}

/* ---------------- evaluation ---------------- */

typedef struct curve {
  int na, ne;
  const char *names[MAX_ATTACKS]; /* borrowed from shard 0's document */
  double eps[MAX_EPS];
  int64_t robust[MAX_EPS];
  int64_t newly[MAX_EPS][MAX_ATTACKS], fw[MAX_EPS][MAX_ATTACKS],
      bw[MAX_EPS][MAX_ATTACKS];
  double secs[MAX_EPS][MAX_ATTACKS];
  double wall;
} curve;

/* The attack names of shard 0 (the header check makes them common). */
static int eval_names(mctx *c, const shard *s, curve *cv) {
  const json_t *at = json_object_get(s->doc, "attacks");
  size_t na = json_array_size(at);
  if (!json_is_array(at) || na < 1 || na > MAX_ATTACKS)
    return fail(c, SBX_EINVAL, "attacks: not an array of 1..%d", MAX_ATTACKS);
  cv->na = (int)na;
  for (size_t a = 0; a < na; a++) {
    const char *nm =
        json_string_value(json_object_get(json_array_get(at, a), "attack"));
    if (!nm)
      return fail(c, SBX_EINVAL, "attacks[%zu].attack: not a string", a);
    cv->names[a] = nm;
  }
  return 0;
}

/* Appends one evaluation shard: per-sample arrays and its curve counts. */
static int read_eval(mctx *c, const shard *s, int first, curve *cv, acc *m) {
  const json_t *ps = json_object_get(s->doc, "per_sample");
  const json_t *cu = json_object_get(s->doc, "curve");
  if (!json_is_object(ps))
    return fail(c, SBX_EINVAL, "per_sample: not an object");
  size_t ne = json_array_size(cu);
  if (!json_is_array(cu) || ne < 1 || ne > MAX_EPS ||
      (!first && (int)ne != cv->ne))
    return fail(c, SBX_EINVAL, "curve: not an array of the shards' 1..%d eps",
                MAX_EPS);
  int64_t n = s->n, o = m->n;
  int rc;
  if ((rc = read_ints(c, ps, "label", n, 0, m->label + o)) ||
      (rc = read_ints(c, ps, "pred_clean", n, 0, m->pred_clean + o)) ||
      (rc = read_bools(c, ps, "robust", n, m->robust + o)) ||
      (rc = read_floats(c, ps, "linf", n, m->linf + o)) ||
      (rc = read_floats(c, ps, "l2", n, m->l2 + o)))
    return rc;
  const json_t *bb = arr_n(ps, "broken_by", n);
  if (!bb)
    return fail(c, SBX_EINVAL, "per_sample.broken_by: not an array of n");
  int64_t correct = 0, robust_ps = 0;
  for (int64_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(bb, (size_t)i);
    int k = -1;
    if (json_is_string(v)) {
      for (int a = 0; a < cv->na && k < 0; a++)
        if (!strcmp(json_string_value(v), cv->names[a]))
          k = a;
      if (k < 0)
        return fail(c, SBX_EINVAL,
                    "per_sample.broken_by[%lld]: not one of "
                    "the attacks",
                    (long long)i);
    } else if (!json_is_null(v))
      return fail(c, SBX_EINVAL,
                  "per_sample.broken_by[%lld]: not a string "
                  "or null",
                  (long long)i);
    int cc = m->pred_clean[o + i] == m->label[o + i];
    /* robust: correct and never broken; broken: was correct */
    if (m->robust[o + i] != (cc && k < 0) || (k >= 0 && !cc))
      return fail(c, SBX_EINVAL,
                  "per_sample[%lld]: robust / broken_by / "
                  "pred_clean disagree",
                  (long long)i);
    m->broken_by[o + i] = k;
    correct += cc;
    robust_ps += m->robust[o + i];
  }
  int64_t remaining = correct;
  for (size_t e = 0; e < ne; e++) {
    const json_t *pt = json_array_get(cu, e);
    const json_t *pa = json_object_get(pt, "per_attack");
    double eps, ra;
    if (!json_is_object(pt) || get_double(json_object_get(pt, "eps"), &eps) ||
        !isfinite(eps) ||
        get_double(json_object_get(pt, "robust_accuracy"), &ra) ||
        !json_is_array(pa) || (int)json_array_size(pa) != cv->na)
      return fail(c, SBX_EINVAL,
                  "curve[%zu]: eps, robust_accuracy and one "
                  "per_attack entry per attack expected",
                  e);
    if (first)
      cv->eps[e] = eps;
    else if (eps != cv->eps[e])
      return fail(c, SBX_EINVAL, "curve[%zu].eps: differs from shard 0's", e);
    for (int a = 0; a < cv->na; a++) {
      const json_t *x = json_array_get(pa, (size_t)a);
      const char *nm = json_string_value(json_object_get(x, "attack"));
      int64_t nb, f, b;
      double t;
      if (!nm || strcmp(nm, cv->names[a]) ||
          get_int(json_object_get(x, "newly_broken"), 0, INT_LIMIT, &nb) ||
          get_int(json_object_get(x, "forward_queries"), 0, INT_LIMIT, &f) ||
          get_int(json_object_get(x, "backward_queries"), 0, INT_LIMIT, &b) ||
          get_double(json_object_get(x, "time_s"), &t))
        return fail(c, SBX_EINVAL,
                    "curve[%zu].per_attack[%d]: attack, "
                    "newly_broken, forward_queries, "
                    "backward_queries, time_s expected",
                    e, a);
      if (nb > remaining)
        return fail(c, SBX_EINVAL,
                    "curve[%zu].per_attack[%d].newly_broken: "
                    "more than the robust points",
                    e, a);
      if (cv->fw[e][a] > INT_LIMIT - f || cv->bw[e][a] > INT_LIMIT - b)
        return fail(c, SBX_ELIMIT, "query totals overflow");
      remaining -= nb;
      cv->newly[e][a] += nb;
      cv->fw[e][a] += f;
      cv->bw[e][a] += b;
      if (isfinite(t))
        cv->secs[e][a] += t;
    }
    if (!(fabs(ra * (double)n - (double)remaining) <= 0.25))
      return fail(c, SBX_EINVAL,
                  "curve[%zu].robust_accuracy: disagrees with "
                  "its newly_broken counts",
                  e);
    cv->robust[e] += remaining;
  }
  if (remaining != robust_ps)
    return fail(c, SBX_EINVAL,
                "per_sample.robust: %lld robust points, the "
                "curve says %lld",
                (long long)robust_ps, (long long)remaining);
  double wt;
  if (get_double(json_object_get(s->doc, "wall_time_s"), &wt))
    return fail(c, SBX_EINVAL, "wall_time_s: not a number");
  if (isfinite(wt) && !(wt <= cv->wall))
    cv->wall = wt;
  cv->ne = (int)ne;
  m->n += n;
  return 0;
}

#define SQUARE_WARNING "the black-box Square attack broke "

/* The merged evaluation after the header (report.c's write_evaluation).
 * Warnings: shard 0's sanity checks (run on the first 64 samples, which
 * shard 0 holds when it has at least 64) and the Square warning recounted
 * over all shards, as the engine words it. */
static void write_eval_tail(jw *w, const acc *m, const curve *cv,
                            const json_t *warn0, unsigned char *mask) {
  int64_t n = m->n, correct = 0, fw = 0, bw = 0, square_extra = 0;
  for (int64_t i = 0; i < n; i++) {
    correct += m->pred_clean[i] == m->label[i];
    mask[i] = m->broken_by[i] >= 0;
  }
  int ne = cv->ne;
  int64_t robust = cv->robust[ne - 1];
  jw_key(w, "clean_accuracy");
  jw_num(w, (double)correct / (double)n);
  jw_key(w, "robust_accuracy");
  jw_num(w, (double)robust / (double)n);
  jw_key(w, "attack_success_rate");
  jw_num(w, correct ? (double)(correct - robust) / (double)correct : 0.0);
  jw_key(w, "curve");
  jw_open(w, '[');
  for (int e = 0; e < ne; e++) {
    jw_open(w, '{');
    jw_key(w, "eps");
    jw_num(w, cv->eps[e]);
    jw_key(w, "robust_accuracy");
    jw_num(w, (double)cv->robust[e] / (double)n);
    jw_key(w, "per_attack");
    jw_open(w, '[');
    int64_t remaining = e ? cv->robust[e - 1] : correct;
    for (int a = 0; a < cv->na; a++) {
      remaining -= cv->newly[e][a];
      if (a > 0 && !strcmp(cv->names[a], "square"))
        square_extra += cv->newly[e][a];
      fw += cv->fw[e][a];
      bw += cv->bw[e][a];
      jw_open(w, '{');
      jw_key(w, "attack");
      jw_str(w, cv->names[a]);
      jw_key(w, "newly_broken");
      jw_int(w, cv->newly[e][a]);
      jw_key(w, "robust_accuracy_after");
      jw_num(w, (double)remaining / (double)n);
      jw_key(w, "forward_queries");
      jw_int(w, cv->fw[e][a]);
      jw_key(w, "backward_queries");
      jw_int(w, cv->bw[e][a]);
      jw_key(w, "time_s");
      jw_num(w, cv->secs[e][a]);
      jw_close(w, '}');
    }
    jw_close(w, ']');
    jw_close(w, '}');
  }
  jw_close(w, ']');
  jw_key(w, "norms");
  jw_open(w, '{');
  stats(w, "linf", m->linf, mask, n);
  stats(w, "l2", m->l2, mask, n);
  jw_close(w, '}');
  jw_key(w, "queries");
  jw_open(w, '{');
  jw_key(w, "forward");
  jw_int(w, fw);
  jw_key(w, "backward");
  jw_int(w, bw);
  jw_close(w, '}');
  jw_key(w, "wall_time_s");
  jw_num(w, cv->wall);
  jw_key(w, "warnings");
  jw_open(w, '[');
  int nw = 0;
  for (size_t i = 0; i < json_array_size(warn0) && nw < MAX_WARNINGS; i++) {
    const char *s = json_string_value(json_array_get(warn0, i));
    if (strncmp(s, SQUARE_WARNING, strlen(SQUARE_WARNING))) {
      jw_str(w, s);
      nw++;
    }
  }
  if (square_extra && nw < MAX_WARNINGS) {
    char msg[256];
    snprintf(msg, sizeof msg,
             SQUARE_WARNING "%lld points the white-box attacks missed: "
                            "possible gradient masking",
             (long long)square_extra);
    jw_str(w, msg);
  }
  jw_close(w, ']');
  jw_key(w, "per_sample");
  jw_open(w, '{');
  write_i64_arr(w, "label", m->label, n);
  write_i64_arr(w, "pred_clean", m->pred_clean, n);
  write_bool_arr(w, "robust", m->robust, n);
  jw_key(w, "broken_by");
  jw_open(w, '[');
  for (int64_t i = 0; i < n; i++) {
    if (m->broken_by[i] >= 0)
      jw_str(w, cv->names[m->broken_by[i]]);
    else
      jw_null(w);
  }
  jw_close(w, ']');
  write_f_arr(w, "linf", m->linf, n);
  write_f_arr(w, "l2", m->l2, n);
  jw_close(w, '}');
}

/* ---------------- the merge ---------------- */

int sbx_result_merge(const char *const *docs, const size_t *lens, int k,
                     char **out, size_t *out_len, sbx_merge_span *span,
                     char *err, size_t errlen) {
  mctx c = {err, errlen, -1};
  if (err && errlen)
    err[0] = 0;
  if (!out || !out_len)
    return fail(&c, SBX_EINVAL, "no output");
  *out = NULL;
  *out_len = 0;
  if (!docs || !lens || k < 1 || k > SBX_MERGE_MAX_SHARDS)
    return fail(&c, SBX_EINVAL, "1..%d shard documents expected",
                SBX_MERGE_MAX_SHARDS);
  shard *sh = calloc((size_t)k, sizeof *sh);
  acc m;
  memset(&m, 0, sizeof m);
  curve *cv = calloc(1, sizeof *cv);
  unsigned char *mask = NULL;
  char *buf = NULL;
  size_t blen = 0;
  FILE *f = NULL;
  const json_t *warn0 = NULL;
  int rc = 0, eval = 0, has_target = 0;
  int64_t total = 0, fw = 0, bw = 0;
  double wall = 0;
  if (!sh || !cv) {
    rc = fail(&c, SBX_ENOMEM, "out of memory");
    goto done;
  }
  /* shard by shard: parsed, the same header as shard 0, the next slice,
   * its arrays appended (only shard 0's document is kept: its header) */
  for (int i = 0; i < k; i++) {
    c.shard = i;
    if ((rc = read_shard(&c, docs[i], lens[i], &sh[i])))
      goto done;
    if (i && (sh[i].a_len != sh[0].a_len || sh[i].b_len != sh[0].b_len ||
              memcmp(sh[i].text, sh[0].text, sh[0].a_len) ||
              memcmp(sh[i].text + sh[i].b_off, sh[0].text + sh[0].b_off,
                     sh[0].b_len))) {
      rc = fail(&c, SBX_EINVAL,
                "its header (model, data, attack, "
                "parameters) differs from shard 0's");
      goto done;
    }
    const json_t *d0 = json_object_get(sh[0].doc, "data"),
                 *di = json_object_get(sh[i].doc, "data");
    const char *keys[] = {"path", "sha256", "labels"};
    for (int q = 0; i && q < 3; q++) {
      const json_t *x = json_object_get(d0, keys[q]),
                   *y = json_object_get(di, keys[q]);
      if (!((!x && !y) || (json_is_string(x) && json_equal(x, y)))) {
        rc = fail(&c, SBX_EINVAL, "data.%s: differs from shard 0's", keys[q]);
        goto done;
      }
    }
    if (!json_is_string(json_object_get(di, "path")) ||
        !json_is_string(json_object_get(di, "sha256")) ||
        (json_object_get(di, "labels") &&
         !json_is_string(json_object_get(di, "labels"))) ||
        json_object_size(di) != (size_t)(2 + !!json_object_get(di, "labels") +
                                         !!json_object_get(di, "offset") + 1)) {
      rc = fail(&c, SBX_EINVAL,
                "data: path, sha256, [labels], [offset], n "
                "expected");
      goto done;
    }
    if (i && sh[i].offset != sh[i - 1].offset + sh[i - 1].n) {
      rc = fail(&c, SBX_EINVAL, "data.offset %lld: shard %d ends at %lld",
                (long long)sh[i].offset, i - 1,
                (long long)(sh[i - 1].offset + sh[i - 1].n));
      goto done;
    }
    total += sh[i].n;
    if (total > SBX_MERGE_MAX_SAMPLES) {
      rc = fail(&c, SBX_ELIMIT, "more than %lld samples in all",
                (long long)SBX_MERGE_MAX_SAMPLES);
      goto done;
    }
    if (i == 0) { /* the kind, attack names, warnings: shard 0's */
      const char *kind = json_string_value(json_object_get(sh[0].doc, "kind"));
      if (!kind || (strcmp(kind, "attack") && strcmp(kind, "evaluation"))) {
        rc = fail(&c, SBX_EINVAL, "kind: not attack or evaluation");
        goto done;
      }
      eval = !strcmp(kind, "evaluation");
      if (eval && (rc = eval_names(&c, &sh[0], cv)))
        goto done;
      if (!eval) {
        const json_t *ps = json_object_get(sh[0].doc, "per_sample");
        has_target = json_object_get(ps, "target") != NULL;
      } else {
        warn0 = json_object_get(sh[0].doc, "warnings");
        for (size_t q = 0; q < json_array_size(warn0); q++)
          if (!json_is_string(json_array_get(warn0, q)))
            warn0 = NULL;
        if (!json_is_array(warn0) || json_array_size(warn0) > MAX_WARNINGS) {
          rc = fail(&c, SBX_EINVAL,
                    "warnings: not an array of at most %d "
                    "strings",
                    MAX_WARNINGS);
          goto done;
        }
      }
    }
    if (acc_grow(&m, total)) {
      rc = fail(&c, SBX_ENOMEM, "out of memory");
      goto done;
    }
    rc = eval ? read_eval(&c, &sh[i], i == 0, cv, &m)
              : read_attack(&c, &sh[i], has_target, &m, &fw, &bw, &wall);
    if (rc)
      goto done;
    if (i) {
      json_decref(sh[i].doc);
      sh[i].doc = NULL;
    }
  }
  if (!(mask = malloc((size_t)total))) {
    rc = fail(&c, SBX_ENOMEM, "out of memory");
    goto done;
  }
  c.shard = -1;
  /* header bytes of shard 0, the merged data object, the recomputed rest */
  f = open_memstream(&buf, &blen);
  if (!f) {
    rc = fail(&c, SBX_ENOMEM, "out of memory");
    goto done;
  }
  fwrite(sh[0].text, 1, sh[0].a_len, f);
  jw w = {f, 1, {0}};
  w.first[1] = 1;
  const json_t *d0 = json_object_get(sh[0].doc, "data");
  jw_open(&w, '{');
  jw_key(&w, "path");
  jw_str(&w, json_string_value(json_object_get(d0, "path")));
  jw_key(&w, "sha256");
  jw_str(&w, json_string_value(json_object_get(d0, "sha256")));
  if (json_object_get(d0, "labels")) {
    jw_key(&w, "labels");
    jw_str(&w, json_string_value(json_object_get(d0, "labels")));
  }
  if (sh[0].offset) {
    jw_key(&w, "offset");
    jw_int(&w, sh[0].offset);
  }
  jw_key(&w, "n");
  jw_int(&w, total);
  jw_close(&w, '}');
  fwrite(sh[0].text + sh[0].b_off, 1, sh[0].b_len, f);
  w.first[1] = 0; /* members before: the next key takes a comma */
  if (eval)
    write_eval_tail(&w, &m, cv, warn0, mask);
  else
    write_attack_tail(&w, &m, has_target, fw, bw, wall, mask);
  fputs("}\n", f);
  if (ferror(f))
    rc = fail(&c, SBX_ENOMEM, "out of memory");
  if (fclose(f) && !rc)
    rc = fail(&c, SBX_ENOMEM, "out of memory");
  f = NULL;
  if (!rc) {
    *out = buf;
    *out_len = blen;
    buf = NULL;
    if (span) {
      span->offset = sh[0].offset;
      span->n = total;
    }
  }
done:
  if (f)
    fclose(f);
  free(buf);
  for (int i = 0; sh && i < k; i++)
    json_decref(sh[i].doc);
  free(sh);
  free(cv);
  free(mask);
  acc_free(&m);
  return rc;
}

/* ---------------- NPY ---------------- */

/* The runner's NPY v1.0 header for a float32 array (src/runner/job.c). */
static size_t npy_header(char *h, size_t cap, const int64_t *dims, int ndim) {
  char shape[256];
  size_t o = 0;
  for (int i = 0; i < ndim; i++)
    o += (size_t)snprintf(shape + o, sizeof(shape) - o, "%lld,%s",
                          (long long)dims[i], (i + 1 < ndim) ? " " : "");
  if (ndim > 1 && o)
    shape[--o] = 0;
  char dict[320];
  int dl = snprintf(dict, sizeof(dict),
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                    shape);
  size_t total = 10 + (size_t)dl + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hl = (size_t)dl + pad + 1;
  if (10 + hl > cap || hl > 65535)
    return 0;
  memcpy(h, "\x93NUMPY\x01\x00", 8);
  h[8] = (char)(hl & 0xff);
  h[9] = (char)(hl >> 8);
  memcpy(h + 10, dict, (size_t)dl);
  memset(h + 10 + dl, ' ', pad);
  h[10 + hl - 1] = '\n';
  return 10 + hl;
}

#define NPY_MAX_DIMS 8

/* Reads the shape of a runner-written header; the header's length or 0. */
static size_t npy_shape(const unsigned char *b, size_t len, int64_t *dims,
                        int *ndim) {
  static const char pre[] =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  if (len < 10 || memcmp(b, "\x93NUMPY\x01\x00", 8))
    return 0;
  size_t hl = (size_t)b[8] | (size_t)b[9] << 8;
  if (10 + hl > len || hl < sizeof pre)
    return 0;
  const char *p = (const char *)b + 10, *end = p + hl;
  if (memcmp(p, pre, sizeof pre - 1))
    return 0;
  p += sizeof pre - 1;
  int nd = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    if (nd == NPY_MAX_DIMS)
      return 0;
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
      if (v > ((int64_t)1 << 40))
        return 0;
      v = v * 10 + (*p++ - '0');
    }
    dims[nd++] = v;
    if (p < end && *p == ',')
      p++;
    if (p < end && *p == ' ')
      p++;
  }
  if (nd < 1)
    return 0;
  *ndim = nd;
  return 10 + hl;
}

int sbx_npy_merge(const unsigned char *const *files, const size_t *lens, int k,
                  unsigned char **out, size_t *out_len, int64_t *rows_out,
                  char *err, size_t errlen) {
  mctx c = {err, errlen, -1};
  if (err && errlen)
    err[0] = 0;
  if (!out || !out_len)
    return fail(&c, SBX_EINVAL, "no output");
  *out = NULL;
  *out_len = 0;
  if (!files || !lens || k < 1 || k > SBX_MERGE_MAX_SHARDS)
    return fail(&c, SBX_EINVAL, "1..%d shard files expected",
                SBX_MERGE_MAX_SHARDS);
  int64_t d0[NPY_MAX_DIMS], rows = 0, per = 1;
  int nd0 = 0;
  size_t data = 0;
  for (int i = 0; i < k; i++) {
    c.shard = i;
    int64_t d[NPY_MAX_DIMS];
    int nd = 0;
    char h[512];
    size_t hl = files[i] ? npy_shape(files[i], lens[i], d, &nd) : 0;
    size_t want = hl ? npy_header(h, sizeof h, d, nd) : 0;
    if (!hl || want != hl || memcmp(h, files[i], hl))
      return fail(&c, SBX_EINVAL,
                  "adversarial.npy: not a float32 C-order "
                  "NPY v1.0 as the runner writes it");
    if (i == 0) {
      nd0 = nd;
      memcpy(d0, d, sizeof d);
      for (int q = 1; q < nd; q++)
        if (d[q] < 1 || (per *= d[q]) > ((int64_t)1 << 30))
          return fail(&c, SBX_ELIMIT,
                      "adversarial.npy: a sample is too "
                      "large");
    } else if (nd != nd0 ||
               memcmp(d + 1, d0 + 1, sizeof(int64_t) * (size_t)(nd - 1)))
      return fail(&c, SBX_EINVAL,
                  "adversarial.npy: its sample shape "
                  "differs from shard 0's");
    if (d[0] < 1 || d[0] > SBX_MERGE_MAX_SAMPLES)
      return fail(&c, SBX_ELIMIT, "adversarial.npy: 1..%lld samples",
                  (long long)SBX_MERGE_MAX_SAMPLES);
    double bytes = (double)d[0] * (double)per * 4.0;
    if (bytes + (double)data > (double)SBX_MERGE_MAX_NPY)
      return fail(&c, SBX_ELIMIT, "adversarial.npy: over %zu bytes",
                  SBX_MERGE_MAX_NPY);
    if (lens[i] - hl != (size_t)bytes)
      return fail(&c, SBX_EINVAL,
                  "adversarial.npy: %zu data bytes, the "
                  "shape says %.0f",
                  lens[i] - hl, bytes);
    rows += d[0];
    data += (size_t)bytes;
  }
  c.shard = -1;
  if (rows > SBX_MERGE_MAX_SAMPLES)
    return fail(&c, SBX_ELIMIT, "adversarial.npy: over %lld samples",
                (long long)SBX_MERGE_MAX_SAMPLES);
  d0[0] = rows;
  char h[512];
  size_t hl = npy_header(h, sizeof h, d0, nd0);
  if (!hl)
    return fail(&c, SBX_EINVAL, "adversarial.npy: shape too long");
  unsigned char *b = malloc(hl + data);
  if (!b)
    return fail(&c, SBX_ENOMEM, "out of memory");
  memcpy(b, h, hl);
  size_t o = hl;
  for (int i = 0; i < k; i++) {
    size_t fh = npy_shape(files[i], lens[i], d0, &nd0);
    memcpy(b + o, files[i] + fh, lens[i] - fh);
    o += lens[i] - fh;
  }
  *out = b;
  *out_len = o;
  if (rows_out)
    *rows_out = rows;
  return 0;
}
