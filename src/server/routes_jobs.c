/*
 * routes_jobs.c - handlers: jobs (records only; execution is the worker's,
 * issue 11).
 */
#include "routes_jobs.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "dbx.h"
#include "hutil.h"
#include "reply.h"
#include "util.h"

/* ---- jobs (records only; execution is the worker's, issue 7) ---- */

static const char *const ATTACKS[] = {"fgsm",       "pgd",    "apgd", "cw",
                                      "deepfool",   "square", "hsj",  "fab",
                                      "autoattack", "eval",   NULL};

int sbx__h_jobs_list(sbx__req *r) {
  return sbx__list_reply(r, "jobs", r->params[0]);
}

int sbx__h_job_create(sbx__req *r) {
  static const char *const fields[] = {"attack", "model_id", "dataset_id",
                                       "params", "seed",     NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *attack = sbx__jstr(j, "attack", 32, &bad);
  const char *model = sbx__jstr(j, "model_id", SBX_ID_MAX, &bad);
  const char *dataset = sbx__jstr(j, "dataset_id", SBX_ID_MAX, &bad);
  json_t *params = json_object_get(j, "params");
  json_t *seed = json_object_get(j, "seed");
  int known = 0;
  for (int i = 0; attack && ATTACKS[i]; i++)
    known |= !strcmp(attack, ATTACKS[i]);
  if (bad || !known || !sbx_id_valid(model) || !sbx_id_valid(dataset))
    return sbx__bad_request(r, j, "attack (known name), model_id, dataset_id");
  if (seed && (!json_is_integer(seed) || json_integer_value(seed) < 0))
    return sbx__bad_request(r, j, "seed must be a non-negative integer");
  if (params) {
    if (!json_is_object(params) || json_object_size(params) > 32)
      return sbx__bad_request(r, j,
                              "params must be an object of <= 32 entries");
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v) {
      if (!sbx__name_valid(k) || strlen(k) > 32 ||
          !(json_is_number(v) || json_is_boolean(v) ||
            (json_is_string(v) && json_string_length(v) <= 64)))
        return sbx__bad_request(r, j,
                                "params: names [A-Za-z0-9._-]{1,32}, values "
                                "number, boolean or short string");
    }
  }
  sbx_object mo, dobj;
  int rc = sbx_meta_object_get(sbx__meta(r), sbx__tenant(r), model, &mo);
  if (!rc && (strcmp(mo.kind, "model") || strcmp(mo.project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  if (!rc)
    rc = sbx_meta_object_get(sbx__meta(r), sbx__tenant(r), dataset, &dobj);
  if (!rc &&
      (strcmp(dobj.kind, "dataset") || strcmp(dobj.project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  if (rc) {
    json_decref(j);
    return sbx__problem(r, 400, "Bad Request",
                        "model_id/dataset_id: no such object in this project");
  }
  json_t *pj = json_pack("{s:o,s:I}", "params",
                         params ? json_incref(params) : json_object(), "seed",
                         (json_int_t)(seed ? json_integer_value(seed) : 0));
  char *ptxt = json_dumps(pj, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(pj);
  char id[33];
  rc = ptxt ? sbx__rand_hex(id, 16) : SBX_ENOMEM;
  if (!rc)
    rc = sbx__dbx_job_insert(sbx__meta(r), sbx__tenant(r), id, r->params[0],
                             attack, model, dataset, ptxt, r->who.user,
                             sbx__now());
  free(ptxt);
  json_decref(j);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job.create", id);
  json_t *out = NULL;
  rc = sbx__dbx_job_get(sbx__meta(r), sbx__tenant(r), r->params[0], id, &out);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 201, out);
}

int sbx__h_job_get(sbx__req *r) {
  json_t *out = NULL;
  int rc = sbx__dbx_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &out);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 200, out);
}

int sbx__h_job_cancel(sbx__req *r) {
  json_t *out = NULL;
  int rc = sbx__dbx_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &out);
  json_decref(out);
  if (!rc)
    rc = sbx__dbx_job_cancel(sbx__meta(r), sbx__tenant(r), r->params[0],
                             r->params[1], sbx__now());
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__audit(r, "job.cancel", r->params[1]);
  rc = sbx__dbx_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                        r->params[1], &out);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 200, out);
}

int sbx__h_job_results(sbx__req *r) {
  json_t *out = NULL;
  int rc = sbx__dbx_job_get(sbx__meta(r), sbx__tenant(r), r->params[0],
                            r->params[1], &out);
  json_decref(out);
  if (rc)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(r, 200,
                         json_pack("{s:[],s:n}", "items", "next_cursor"));
}
