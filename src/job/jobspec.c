/*
 * jobspec.c - the job spec as JSON (sbx/jobspec.h): JSON values are turned
 * into the text form adv_job_spec_set() takes, so one table and one set of
 * range checks (the engine's adv_table) decide for the CLI and the service.
 */
#include "sbx/jobspec.h"
#include "sbx/status.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return SBX_EINVAL;
}

static const adv_job_param_info *find(const char *name) {
  for (const adv_job_param_info *q = adv_job_param_table(NULL); q->name; q++)
    if (!strcmp(q->name, name))
      return q;
  return NULL;
}

static int numeric(adv_job_ptype t) {
  return t == ADV_JOB_PT_INT || t == ADV_JOB_PT_INT64 ||
         t == ADV_JOB_PT_UINT64 || t == ADV_JOB_PT_FLOAT ||
         t == ADV_JOB_PT_BOUND;
}

/* Writes the text form of one JSON scalar into buf; -1 when the JSON type
 * does not fit the parameter type. Reals print with 17 digits, so the
 * double (and the float it becomes) is exact. */
static int scalar_text(const adv_job_param_info *q, const json_t *v, char *buf,
                       size_t n) {
  if (numeric(q->type)) {
    if (json_is_integer(v)) {
      snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      return 0;
    }
    if (json_is_real(v)) {
      if (q->type != ADV_JOB_PT_FLOAT && q->type != ADV_JOB_PT_BOUND)
        return -1; /* an integer parameter never takes 2.5 or 1e19 */
      snprintf(buf, n, "%.17g", json_real_value(v));
      return 0;
    }
    if (q->type == ADV_JOB_PT_UINT64 && json_is_string(v)) {
      snprintf(buf, n, "%s", json_string_value(v));
      return strlen(json_string_value(v)) < n ? 0 : -1;
    }
    return -1;
  }
  if (q->type == ADV_JOB_PT_BOOL) {
    if (!json_is_boolean(v))
      return -1;
    snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
    return 0;
  }
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (strlen(s) >= n || strchr(s, ','))
      return -1;
    snprintf(buf, n, "%s", s);
    return 0;
  }
  if (q->type == ADV_JOB_PT_NORM && json_is_integer(v)) { /* "norm": 2 */
    snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return 0;
  }
  return -1;
}

static const char *type_word(adv_job_ptype t) {
  switch (t) {
  case ADV_JOB_PT_INT:
  case ADV_JOB_PT_INT64:
    return "an integer";
  case ADV_JOB_PT_UINT64:
    return "an integer (or a decimal string)";
  case ADV_JOB_PT_FLOAT:
    return "a number";
  case ADV_JOB_PT_BOOL:
    return "true or false";
  case ADV_JOB_PT_FLOATS:
    return "an array of numbers";
  case ADV_JOB_PT_ATTACKS:
    return "an array of attack names";
  case ADV_JOB_PT_NAME:
    return "a name (string)";
  case ADV_JOB_PT_BOUND:
    return "a number or an array of numbers (one per channel)";
  default:
    return "a string";
  }
}

int sbx_jobspec_from_json(const json_t *obj, adv_job_spec *out, char *err,
                          size_t errlen) {
  *out = adv_job_spec_default_params();
  if (!json_is_object(obj))
    return seterr(err, errlen, "spec: must be a JSON object");
  const char *key;
  json_t *v;
  adv_err ae = {{0}};
  json_object_foreach((json_t *)obj, key, v) {
    const adv_job_param_info *q = find(key);
    if (!q)
      return seterr(err, errlen, "%.64s: unknown parameter", key);
    char text[1024];
    if (q->type == ADV_JOB_PT_FLOATS || q->type == ADV_JOB_PT_ATTACKS ||
        (q->type == ADV_JOB_PT_BOUND && json_is_array(v))) {
      if (!json_is_array(v) || json_array_size(v) == 0)
        return seterr(err, errlen, "%s: must be %s", key, type_word(q->type));
      size_t off = 0, i;
      json_t *e;
      json_array_foreach(v, i, e) {
        char item[64];
        int bad =
            q->type != ADV_JOB_PT_ATTACKS
                ? !json_is_number(e) || snprintf(item, sizeof(item), "%.17g",
                                                 json_number_value(e)) < 0
                : !json_is_string(e) ||
                      strlen(json_string_value(e)) >= sizeof(item) ||
                      strchr(json_string_value(e), ',') ||
                      snprintf(item, sizeof(item), "%s", json_string_value(e)) <
                          0;
        if (bad)
          return seterr(err, errlen, "%s: must be %s", key, type_word(q->type));
        int k = snprintf(text + off, sizeof(text) - off, "%s%s", i ? "," : "",
                         item);
        if (k < 0 || (size_t)k >= sizeof(text) - off)
          return seterr(err, errlen, "%s: too many values", key);
        off += (size_t)k;
      }
    } else if (scalar_text(q, v, text, sizeof(text))) {
      return seterr(err, errlen, "%s: must be %s", key, type_word(q->type));
    }
    if (adv_job_spec_set(out, key, text, &ae))
      return seterr(err, errlen, "%s", ae.msg);
  }
  if (adv_job_spec_validate(out, &ae))
    return seterr(err, errlen, "%s", ae.msg);
  return SBX_OK;
}

int sbx_jobspec_parse(const char *text, size_t len, adv_job_spec *out,
                      char *err, size_t errlen) {
  if (!text || len > SBX_JOBSPEC_MAX_BYTES)
    return seterr(err, errlen, "spec: larger than %d bytes",
                  SBX_JOBSPEC_MAX_BYTES);
  json_error_t je;
  json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!j)
    return seterr(err, errlen, "spec: invalid JSON: %.200s", je.text);
  int rc = sbx_jobspec_from_json(j, out, err, errlen);
  json_decref(j);
  return rc;
}

/* The JSON value of one field of s, by the table's type and offset. */
static json_t *field_json(const adv_job_spec *s, const adv_job_param_info *q) {
  const char *f = (const char *)s + q->offset;
  switch (q->type) {
  case ADV_JOB_PT_INT:
    return json_integer(*(const int *)f);
  case ADV_JOB_PT_INT64:
    return json_integer(*(const int64_t *)f);
  case ADV_JOB_PT_UINT64: {
    uint64_t u = *(const uint64_t *)f;
    if (u <= (uint64_t)INT64_MAX)
      return json_integer((json_int_t)u);
    char b[32];
    snprintf(b, sizeof(b), "%" PRIu64, u);
    return json_string(b);
  }
  case ADV_JOB_PT_FLOAT:
    return json_real((double)*(const float *)f);
  case ADV_JOB_PT_BOUND: {
    const float *vals = NULL;
    int n = adv_job_spec_bound(s, q, &vals);
    if (n <= 0)
      return json_real((double)*(const float *)f);
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
      json_array_append_new(a, json_real((double)vals[i]));
    return a;
  }
  case ADV_JOB_PT_BOOL:
    return json_boolean(*(const int *)f);
  case ADV_JOB_PT_NORM:
    return json_string(*(const adv_norm *)f == ADV_NORM_L2 ? "2" : "inf");
  case ADV_JOB_PT_ATTACK:
    return json_string(adv_attack_name(*(const adv_attack_kind *)f));
  case ADV_JOB_PT_SUITE:
    return json_string(adv_suite_name(*(const adv_suite *)f));
  case ADV_JOB_PT_KIND:
    return json_string(*(const adv_job_kind *)f == ADV_JOB_EVALUATION
                           ? "evaluation"
                           : "attack");
  case ADV_JOB_PT_LOSS:
    return json_string(adv_loss_name(*(const adv_loss_kind *)f));
  case ADV_JOB_PT_OBJECTIVE:
    return json_string(*(const adv_objective *)f ==
                               ADV_OBJECTIVE_OUTPUT_DISTANCE
                           ? "output-distance"
                           : "classify");
  case ADV_JOB_PT_FLOATS: {
    const float *vals = NULL;
    int n = adv_job_spec_floats(s, q, &vals, NULL);
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
      json_array_append_new(a, json_real((double)vals[i]));
    return a;
  }
  case ADV_JOB_PT_NAME:
    return json_string(f);
  case ADV_JOB_PT_ATTACKS: {
    json_t *a = json_array();
    for (int i = 0; a && i < s->n_attacks; i++)
      json_array_append_new(a, json_string(adv_attack_name(s->attacks[i])));
    return a;
  }
  }
  return NULL;
}

/* Fields always written (they have no `set` bit but define the run). */
static int always(const char *name, const adv_job_spec *s) {
  adv_job_spec d = adv_job_spec_default_params();
  if (!strcmp(name, "kind"))
    return 1;
  if (!strcmp(name, "attack"))
    return s->kind == ADV_JOB_ATTACK;
  if (!strcmp(name, "suite"))
    return s->kind == ADV_JOB_EVALUATION;
  if (!strcmp(name, "attacks"))
    return s->kind == ADV_JOB_EVALUATION && s->suite == ADV_SUITE_CUSTOM;
  if (!strcmp(name, "n"))
    return s->n != d.n;
  if (!strcmp(name, "shard_offset"))
    return s->shard_offset != d.shard_offset;
  if (!strcmp(name, "shard_count"))
    return s->shard_count != d.shard_count;
  if (!strcmp(name, "target"))
    return s->target != d.target;
  if (!strcmp(name, "threads"))
    return s->params.threads != d.params.threads;
  if (!strcmp(name, "batch"))
    return s->params.batch != d.params.batch;
  if (!strcmp(name, "clip_min"))
    return s->params.clip_min != d.params.clip_min || s->n_clip_min;
  if (!strcmp(name, "clip_max"))
    return s->params.clip_max != d.params.clip_max || s->n_clip_max;
  return 0;
}

json_t *sbx_jobspec_to_json(const adv_job_spec *s) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  for (const adv_job_param_info *q = adv_job_param_table(NULL); q->name; q++) {
    int want = always(q->name, s) || (q->bit && (s->set & q->bit));
    if (!want)
      continue;
    json_t *v = field_json(s, q);
    if (!v || json_object_set_new(o, q->name, v)) {
      json_decref(o);
      return NULL;
    }
  }
  return o;
}

/* ---- the catalogue ---- */

/* JSON Schema of one parameter, with `def` (may be NULL) as its default. */
static json_t *param_schema(const adv_job_param_info *q, json_t *def) {
  json_t *p = json_object();
  switch (q->type) {
  case ADV_JOB_PT_INT:
  case ADV_JOB_PT_INT64:
    json_object_set_new(p, "type", json_string("integer"));
    json_object_set_new(p, "minimum", json_integer((json_int_t)q->lo));
    json_object_set_new(p, "maximum", json_integer((json_int_t)q->hi));
    break;
  case ADV_JOB_PT_UINT64:
    json_object_set_new(p, "type", json_pack("[ss]", "integer", "string"));
    json_object_set_new(p, "minimum", json_integer(0));
    json_object_set_new(p, "pattern", json_string("^[0-9]{1,20}$"));
    break;
  case ADV_JOB_PT_FLOAT:
    json_object_set_new(p, "type", json_string("number"));
    json_object_set_new(p, "minimum", json_real(q->lo));
    json_object_set_new(p, "maximum", json_real(q->hi));
    break;
  case ADV_JOB_PT_BOOL:
    json_object_set_new(p, "type", json_string("boolean"));
    break;
  case ADV_JOB_PT_NORM:
    json_object_set_new(p, "enum", json_pack("[ss]", "inf", "2"));
    break;
  case ADV_JOB_PT_KIND:
    json_object_set_new(p, "enum", json_pack("[ss]", "attack", "evaluation"));
    break;
  case ADV_JOB_PT_LOSS:
    json_object_set_new(p, "enum",
                        json_pack("[ssss]", "ce", "cw", "dlr", "logit"));
    break;
  case ADV_JOB_PT_OBJECTIVE:
    json_object_set_new(p, "enum",
                        json_pack("[ss]", "classify", "output-distance"));
    break;
  case ADV_JOB_PT_SUITE: {
    json_t *e = json_array();
    for (int i = 0; i <= ADV_SUITE_CUSTOM; i++)
      json_array_append_new(e, json_string(adv_suite_name((adv_suite)i)));
    json_object_set_new(p, "enum", e);
    break;
  }
  case ADV_JOB_PT_ATTACK:
  case ADV_JOB_PT_ATTACKS: {
    json_t *e = json_array();
    for (int i = 0; i < ADV_ATTACK_COUNT; i++)
      json_array_append_new(e,
                            json_string(adv_attack_name((adv_attack_kind)i)));
    if (q->type == ADV_JOB_PT_ATTACK) {
      json_object_set_new(p, "enum", e);
    } else {
      json_object_set_new(p, "type", json_string("array"));
      json_object_set_new(p, "maxItems", json_integer(ADV_JOB_MAX_ATTACKS));
      json_object_set_new(p, "items", json_pack("{so}", "enum", e));
    }
    break;
  }
  case ADV_JOB_PT_NAME:
    json_object_set_new(p, "type", json_string("string"));
    json_object_set_new(p, "minLength", json_integer(1));
    json_object_set_new(p, "maxLength", json_integer(ADV_JOB_NAME_MAX - 1));
    json_object_set_new(p, "pattern", json_string("^[!#-\\[\\]-~]+$"));
    break;
  case ADV_JOB_PT_BOUND: /* a number, or one per channel */
    json_object_set_new(
        p, "oneOf",
        json_pack("[{sssfsf}{sssisis{sssfsf}}]", "type", "number", "minimum",
                  q->lo, "maximum", q->hi, "type", "array", "minItems", 1,
                  "maxItems", ADV_CLIP_MAX_CHANNELS, "items", "type", "number",
                  "minimum", q->lo, "maximum", q->hi));
    break;
  case ADV_JOB_PT_FLOATS:
    json_object_set_new(p, "type", json_string("array"));
    json_object_set_new(p, "minItems", json_integer(1));
    json_object_set_new(p, "maxItems",
                        json_integer(q->bit == ADV_JOB_SET_EPS_SWEEP
                                         ? ADV_JOB_MAX_EPS
                                         : ADV_JOB_MAX_CHANNELS));
    json_object_set_new(p, "items",
                        json_pack("{sssfsf}", "type", "number", "minimum",
                                  q->lo, "maximum", q->hi));
    break;
  }
  if (q->help)
    json_object_set_new(p, "description", json_string(q->help));
  if (def)
    json_object_set_new(p, "default", def);
  return p;
}

static json_t *norms_json(unsigned norms) {
  json_t *a = json_array();
  if (norms & ADV_NORMS_LINF)
    json_array_append_new(a, json_string("inf"));
  if (norms & ADV_NORMS_L2)
    json_array_append_new(a, json_string("2"));
  return a;
}

static json_t *aliases_json(adv_attack_kind k) {
  json_t *a = json_array();
  const char *s = adv_attack_aliases(k);
  while (s && *s) {
    const char *e = strchr(s, ',');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    json_array_append_new(a, json_stringn(s, n));
    s = e ? e + 1 : NULL;
  }
  return a;
}

json_t *sbx_attack_catalogue(void) {
  static const char *const targeting[] = {"none", "class", "top-k"};
  json_t *list = json_array();
  for (int k = 0; k < ADV_ATTACK_COUNT; k++) {
    adv_attack_kind kind = (adv_attack_kind)k;
    adv_job_spec d = adv_job_spec_default_params();
    d.params = adv_attack_default_params(kind);
    unsigned mask = adv_attack_param_mask(kind);
    json_t *props = json_object();
    json_object_set_new(
        props, "norm",
        param_schema(find("norm"), field_json(&d, find("norm"))));
    json_object_set_new(json_object_get(props, "norm"), "enum",
                        norms_json(adv_attack_norms(kind)));
    for (const adv_job_param_info *q = adv_job_param_table(NULL); q->name; q++)
      if (q->bit && (q->bit & mask))
        json_object_set_new(props, q->name, param_schema(q, field_json(&d, q)));
    adv_target_mode tm = adv_attack_target_mode(kind);
    if (tm == ADV_TARGET_CLASS)
      json_object_set_new(props, "target",
                          param_schema(find("target"), json_integer(-1)));
    json_t *a =
        json_pack("{sssosbsossso}", "name", adv_attack_name(kind), "aliases",
                  aliases_json(kind), "minimal", adv_attack_is_minimal(kind),
                  "norms", norms_json(adv_attack_norms(kind)), "targeting",
                  targeting[tm <= ADV_TARGET_TOPK ? tm : 0], "parameters",
                  json_pack("{sssosb}", "type", "object", "properties", props,
                            "additionalProperties", 0));
    json_array_append_new(list, a);
  }
  json_t *suites = json_array();
  for (int i = 0; i <= ADV_SUITE_CUSTOM; i++) {
    adv_job_spec s = adv_job_spec_default_params();
    s.kind = ADV_JOB_EVALUATION;
    s.suite = (adv_suite)i;
    adv_attack_kind kinds[ADV_JOB_MAX_ATTACKS];
    int restarts[ADV_JOB_MAX_ATTACKS];
    int n =
        i == ADV_SUITE_CUSTOM ? 0 : adv_job_suite_items(&s, kinds, restarts);
    json_t *items = json_array();
    for (int j = 0; j < n; j++)
      json_array_append_new(items, json_pack("{sssi}", "attack",
                                             adv_attack_name(kinds[j]),
                                             "restarts", restarts[j]));
    json_array_append_new(suites, json_pack("{ssso}", "name",
                                            adv_suite_name((adv_suite)i),
                                            "attacks", items));
  }
  json_t *job = json_object();
  adv_job_spec d = adv_job_spec_default_params();
  for (const adv_job_param_info *q = adv_job_param_table(NULL); q->name; q++)
    if (!q->bit || q->bit >= ADV_JOB_SET_NORM)
      json_object_set_new(
          job, q->name,
          param_schema(q, q->type == ADV_JOB_PT_FLOATS ||
                                  q->type == ADV_JOB_PT_ATTACKS ||
                                  q->type == ADV_JOB_PT_NAME
                              ? NULL
                              : field_json(&d, q)));
  return json_pack("{sosos{sssosb}}", "attacks", list, "suites", suites, "job",
                   "type", "object", "properties", job, "additionalProperties",
                   0);
}
