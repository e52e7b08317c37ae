/*
 * routes_projects.c - handlers: projects, members, models and datasets (raw
 * bytes, never parsed here).
 */
#include "routes_projects.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "authcache.h"
#include "dbx.h"
#include "hutil.h"
#include "quota.h"
#include "rbac.h"
#include "reply.h"
#include "state.h"
#include "util.h"

/* ---- projects and memberships ---- */

int sbx__h_projects_list(sbx__req *r) {
  return sbx__list_reply(r, "projects", NULL);
}

int sbx__h_project_create(sbx__req *r) {
  static const char *const fields[] = {"id", "name", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *id = sbx__jstr(j, "id", SBX_ID_MAX, &bad);
  const char *name = sbx__jstr(j, "name", SBX_NAME_MAX - 1, &bad);
  if (bad || !sbx_id_valid(id) || !name || !*name)
    return sbx__bad_request(r, j,
                            "id ([A-Za-z0-9_.-]{1,63}) and name required");
  int rc = sbx_meta_project_create(sbx__meta(r), sbx__tenant(r), id, name,
                                   sbx__now());
  if (rc == SBX_EBACKEND || rc == SBX_ECONFLICT)
    rc = sbx__dbx_project_exists(sbx__meta(r), sbx__tenant(r), id) ? rc
                                                                   : SBX_EEXIST;
  if (rc) {
    json_decref(j);
    return sbx__problem_rc(r, rc);
  }
  sbx__audit(r, "project.create", id);
  json_t *out = json_pack("{s:s,s:s}", "id", id, "name", name);
  json_decref(j);
  return sbx__reply_json(r, 201, out);
}

int sbx__h_project_get(sbx__req *r) {
  json_t *items = json_array();
  int rc = sbx__dbx_list(sbx__meta(r), "project", sbx__tenant(r), r->params[0],
                         "", 1, items);
  json_t *found = json_incref(json_array_get(items, 0));
  json_decref(items);
  if (rc || !found) {
    json_decref(found);
    return sbx__problem_rc(r, rc ? rc : SBX_ENOTFOUND);
  }
  return sbx__reply_json(r, 200, found);
}

int sbx__h_members_list(sbx__req *r) {
  return sbx__list_reply(r, "members", r->params[0]);
}

int sbx__h_member_put(sbx__req *r) {
  static const char *const fields[] = {"role", NULL};
  json_t *j = sbx__body_object(r, fields);
  if (!j)
    return 0;
  int bad = 0;
  const char *role = sbx__jstr(j, "role", 16, &bad);
  if (bad || !sbx__role_bit(role))
    return sbx__bad_request(r, j,
                            "role viewer|developer|analyst|admin required");
  sbx_user u;
  int rc = sbx_meta_user_get(sbx__meta(r), sbx__tenant(r), r->params[1], &u);
  if (!rc)
    rc = sbx_meta_membership_set(sbx__meta(r), sbx__tenant(r), r->params[0],
                                 r->params[1], role);
  sbx__authcache_invalidate(); /* cached roles and keys re-checked */
  if (!rc) {
    char target[160];
    snprintf(target, sizeof target, "%s/%s=%s", r->params[0], r->params[1],
             role);
    sbx__audit(r, "membership.set", target);
  }
  json_t *out = json_pack("{s:s,s:s,s:s}", "project_id", r->params[0],
                          "user_id", r->params[1], "role", role);
  json_decref(j);
  if (rc) {
    json_decref(out);
    return sbx__problem_rc(r, rc);
  }
  return sbx__reply_json(r, 200, out);
}

/* ---- models and datasets (raw, never parsed here) ---- */

static json_t *object_json(const sbx_object *o) {
  char hex[65];
  sbx_hex(o->sha256, 32, hex);
  return json_pack("{s:s,s:s,s:s,s:I,s:s,s:I}", "id", o->id, "project_id",
                   o->project_id, "name", o->name, "size", (json_int_t)o->size,
                   "sha256", hex, "created_at", (json_int_t)o->created_at);
}

static int upload(sbx__req *r, const char *kind) {
  int rc;
  if (!r->upload) {
    const char *name = sbx__arg(r, "name");
    if (!sbx__name_valid(name))
      return sbx__problem(r, 400, "Bad Request",
                          "query parameter name: 1..128 of [A-Za-z0-9._-], "
                          "not starting with '.'");
  }
  /* quotas: before anything is stored (declared length) ... */
  if (!r->upload && sbx__quota_admit(r, sbx__tenant(r), r->params[0], -1))
    return 0;
  sbx_put_params pp = {r->params[0], kind, sbx__arg(r, "name"), 0};
  sbx_store_writer *w;
  if (sbx__upload_step(r, sbx__tenant(r), &pp, INT64_MAX, &w) != 1)
    return 0;
  /* ... and the bytes that arrived, before the commit */
  if (sbx__quota_admit(r, sbx__tenant(r), r->params[0], r->upload_len)) {
    sbx_store_writer_abort(w);
    return 0;
  }
  sbx_object o;
  rc = sbx_store_writer_commit(w, &o);
  if (rc)
    return sbx__problem_rc(r, rc);
  char target[200];
  snprintf(target, sizeof target, "%s/%s", kind, o.id);
  char action[48];
  snprintf(action, sizeof action, "%s.upload", kind);
  sbx__audit(r, action, target);
  return sbx__reply_json(r, 201, object_json(&o));
}

/* The object in the path, of this kind, in this project (else 404). */
static int find_object(sbx__req *r, const char *kind, sbx_object *o) {
  int rc = sbx_meta_object_get(sbx__meta(r), sbx__tenant(r), r->params[1], o);
  if (!rc && (strcmp(o->kind, kind) || strcmp(o->project_id, r->params[0])))
    rc = SBX_ENOTFOUND;
  return rc;
}

static int obj_get(sbx__req *r, const char *kind) {
  sbx_object o;
  int rc = find_object(r, kind, &o);
  return rc ? sbx__problem_rc(r, rc) : sbx__reply_json(r, 200, object_json(&o));
}

static int obj_content(sbx__req *r, const char *kind) {
  sbx_object o;
  int rc = find_object(r, kind, &o);
  if (rc)
    return sbx__problem_rc(r, rc);
  sbx__reply_object(r, sbx__tenant(r), o.id, (size_t)r->srv->p.max_upload_bytes,
                    "application/octet-stream");
  if (r->status == 200)
    sbx__add_header(r, "Content-Disposition", "attachment");
  return 0;
}

static int obj_delete(sbx__req *r, const char *kind) {
  sbx_object o;
  int rc = find_object(r, kind, &o);
  if (!rc)
    rc = sbx_store_delete(r->st, sbx__tenant(r), o.id);
  if (rc)
    return sbx__problem_rc(r, rc);
  char action[48], target[200];
  snprintf(action, sizeof action, "%s.delete", kind);
  snprintf(target, sizeof target, "%s/%s", kind, o.id);
  sbx__audit(r, action, target);
  return sbx__reply_json(r, 200,
                         json_pack("{s:s,s:b}", "id", o.id, "deleted", 1));
}

int sbx__h_models_list(sbx__req *r) {
  return sbx__list_reply(r, "model", r->params[0]);
}
int sbx__h_model_upload(sbx__req *r) {
  return upload(r, "model");
}
int sbx__h_model_get(sbx__req *r) {
  return obj_get(r, "model");
}
int sbx__h_model_content(sbx__req *r) {
  return obj_content(r, "model");
}
int sbx__h_model_delete(sbx__req *r) {
  return obj_delete(r, "model");
}
int sbx__h_datasets_list(sbx__req *r) {
  return sbx__list_reply(r, "dataset", r->params[0]);
}
int sbx__h_dataset_upload(sbx__req *r) {
  return upload(r, "dataset");
}
int sbx__h_dataset_get(sbx__req *r) {
  return obj_get(r, "dataset");
}
int sbx__h_dataset_content(sbx__req *r) {
  return obj_content(r, "dataset");
}
int sbx__h_dataset_delete(sbx__req *r) {
  return obj_delete(r, "dataset");
}
