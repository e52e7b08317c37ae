/*
 * reply.c - answers and request bodies (reply.h).
 */
#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "router.h"
#include "state.h"

void sbx__add_header(sbx__req *r, const char *name, const char *value) {
  if (r->nextra >= SBX__EXTRA_HDR)
    return;
  snprintf(r->extra_hdr[r->nextra][0], SBX__HDR_VALUE_MAX, "%s", name);
  snprintf(r->extra_hdr[r->nextra][1], SBX__HDR_VALUE_MAX, "%s", value);
  r->nextra++;
}

static void set_resp(sbx__req *r, int status, char *body, size_t n,
                     const char *type) {
  if (r->resp_owned)
    free(r->resp);
  r->status = status;
  r->resp = body;
  r->resp_len = n;
  r->resp_owned = 1;
  r->resp_type = type;
}

int sbx__reply_json(sbx__req *r, int status, json_t *body) {
  char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!txt)
    return sbx__problem(r, 500, "Internal Server Error", "out of memory");
  set_resp(r, status, txt, strlen(txt), "application/json");
  return 0;
}

int sbx__reply_buf(sbx__req *r, int status, sbx__buf *b, const char *type) {
  if (b->err || !b->p) {
    free(b->p);
    b->p = NULL;
    return sbx__problem(r, 500, "Internal Server Error", "response too large");
  }
  set_resp(r, status, b->p, b->n, type ? type : "application/json");
  b->p = NULL;
  return 0;
}

int sbx__problem(sbx__req *r, int status, const char *title,
                 const char *detail) {
  json_t *j = json_pack("{s:s,s:s,s:i,s:s,s:s}", "type", "about:blank", "title",
                        title, "status", status, "detail",
                        detail ? detail : title, "request_id", r->reqid);
  char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!txt) {
    static const char oom[] = "{\"title\":\"Internal Server Error\"}";
    txt = strdup(oom);
    status = 500;
  }
  set_resp(r, status, txt, txt ? strlen(txt) : 0, "application/problem+json");
  return 0;
}

int sbx__problem_rc(sbx__req *r, int rc) {
  switch (rc) {
  case SBX_ENOTFOUND:
    return sbx__problem(r, 404, "Not Found", NULL);
  case SBX_EEXIST:
    return sbx__problem(r, 409, "Conflict", "already exists");
  case SBX_ECONFLICT:
    return sbx__problem(r, 409, "Conflict", sbx_strerror(rc));
  case SBX_EINVAL:
  case SBX_EFORMAT:
    return sbx__problem(r, 400, "Bad Request", sbx_strerror(rc));
  case SBX_ELIMIT:
  case SBX_ENOSPC:
    return sbx__problem(r, 413, "Content Too Large", sbx_strerror(rc));
  case SBX_EPERM:
    return sbx__problem(r, 403, "Forbidden", NULL);
  case SBX_EAUTH:
  case SBX_EEXPIRED:
    return sbx__problem(r, 401, "Unauthorized", "invalid credential");
  case SBX_EBUSY:
    return sbx__problem(r, 503, "Service Unavailable", "busy");
  default:
    sbx__log("request %s: %s", r->reqid, sbx_strerror(rc));
    return sbx__problem(r, 500, "Internal Server Error", NULL);
  }
}

/* ---- JSON bodies ---- */

/* Nesting depth of a JSON text, strings skipped; -1 when unbalanced. */
static int json_depth(const char *s, size_t n) {
  int d = 0, max = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '{' || c == '[') {
      if (++d > max)
        max = d;
    } else if (c == '}' || c == ']') {
      if (--d < 0)
        return -1;
    }
  }
  return max;
}

json_t *sbx__body_object(sbx__req *r, const char *const *allowed) {
  if (!r->body_len) {
    /* the route's row says whether the body may be absent */
    if (r->route >= 0 &&
        (r->srv->routes[r->route].flags & SBX__RF_BODY_OPTIONAL))
      return json_object();
    sbx__problem(r, 400, "Bad Request", "a JSON object body is required");
    return NULL;
  }
  const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_TYPE);
  if (!ct || strncmp(ct, "application/json", 16)) {
    sbx__problem(r, 415, "Unsupported Media Type",
                 "Content-Type must be application/json");
    return NULL;
  }
  int depth = json_depth(r->body, r->body_len);
  if (depth < 0 || depth > 32) {
    sbx__problem(r, 400, "Bad Request", "JSON nesting too deep or unbalanced");
    return NULL;
  }
  json_error_t e;
  json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &e);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    sbx__problem(r, 400, "Bad Request", "body is not a JSON object");
    return NULL;
  }
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    int ok = 0;
    for (size_t i = 0; allowed && allowed[i]; i++)
      if (!strcmp(allowed[i], k))
        ok = 1;
    if (!ok) {
      json_decref(j);
      sbx__problem(r, 400, "Bad Request", "unknown field in body");
      return NULL;
    }
  }
  return j;
}

const char *sbx__arg(sbx__req *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}
