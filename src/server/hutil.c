/*
 * hutil.c - helpers shared by the route handlers (hutil.h).
 */
#include "hutil.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbx.h"
#include "reply.h"

/* Strings of a JSON body: NULL when absent; *bad set when not a string or
 * longer than max. */
const char *sbx__jstr(json_t *o, const char *k, size_t max, int *bad) {
  json_t *v = json_object_get(o, k);
  if (!v)
    return NULL;
  if (!json_is_string(v) || json_string_length(v) > max ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    *bad = 1;
    return NULL;
  }
  return json_string_value(v);
}

int sbx__bad_request(sbx__req *r, json_t *j, const char *why) {
  json_decref(j);
  return sbx__problem(r, 400, "Bad Request", why);
}

int sbx__page_args(sbx__req *r, int *limit, const char **cursor) {
  *limit = 50;
  const char *l = sbx__arg(r, "limit");
  *cursor = sbx__arg(r, "cursor");
  if (l) {
    char *end;
    long x = strtol(l, &end, 10);
    if (*end || x < 1 || x > 100)
      return sbx__problem(r, 400, "Bad Request", "limit must be 1..100"), 1;
    *limit = (int)x;
  }
  if (*cursor && **cursor && !sbx_id_valid(*cursor))
    return sbx__problem(r, 400, "Bad Request", "malformed cursor"), 1;
  return 0;
}

int sbx__list_reply(sbx__req *r, const char *what, const char *scope) {
  int limit;
  const char *cursor;
  if (sbx__page_args(r, &limit, &cursor))
    return 0;
  /* written as text: building and dumping jansson objects cost more than
   * the query (~25 % of a list request's CPU) */
  sbx__buf b = {NULL, 0, 0, 8u << 20, 0};
  char last[SBX_ID_MAX];
  int more = 0;
  sbx__buf_str(&b, "{\"items\":[");
  int rc = sbx__dbx_list_text(sbx__meta(r), what, sbx__tenant(r), scope, cursor,
                              limit, &b, &more, last);
  if (rc) {
    free(b.p);
    return sbx__problem_rc(r, rc);
  }
  sbx__buf_str(&b, "],\"next_cursor\":");
  if (more)
    sbx__buf_json_str(&b, last, strlen(last));
  else
    sbx__buf_str(&b, "null");
  sbx__buf_put(&b, "}", 1);
  return sbx__reply_buf(r, 200, &b, NULL);
}

int sbx__email_index(sbx__req *r, const char *tenant, const char *email,
                     uint8_t out[32]) {
  char low[256];
  size_t n = strlen(email);
  if (n >= sizeof low)
    return SBX_EINVAL;
  for (size_t i = 0; i <= n; i++)
    low[i] = (char)tolower((unsigned char)email[i]);
  int rc = sbx_store_blind_index(r->st, tenant, "email", low, n, out);
  if (rc == SBX_EKEY) { /* unknown or shredded tenant: finds nobody, but
                           answers like a known one (login guard key) */
    char buf[SBX_ID_MAX + 256];
    int l = snprintf(buf, sizeof buf, "%s%c%s", tenant, 0, low);
    rc = sbx_store_keyed_hash(r->st, "email-no-tenant", buf, (size_t)l, out);
  }
  return rc;
}

int sbx__email_valid(const char *e) {
  size_t n = e ? strlen(e) : 0;
  if (n < 3 || n > 254 || !strchr(e, '@'))
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)e[i] <= ' ' || e[i] == 0x7f)
      return 0;
  return 1;
}

int sbx__password_ok(const char *pw) {
  size_t n = pw ? strlen(pw) : 0;
  return n >= 12 && n <= 256;
}

int sbx__reply_object(sbx__req *r, const char *tenant, const char *id,
                      size_t max, const char *type) {
  if (!id[0])
    return sbx__problem(r, 404, "Not Found", NULL);
  void *data = NULL;
  size_t n = 0;
  int rc = sbx_store_get_alloc(r->st, tenant, id, max, &data, &n);
  if (rc)
    return sbx__problem_rc(r, rc);
  r->status = 200;
  r->resp = data;
  r->resp_len = n;
  r->resp_owned = 1;
  r->resp_type = type;
  return 0;
}

int sbx__upload_step(sbx__req *r, const char *tenant, const sbx_put_params *pp,
                     int64_t cap, sbx_store_writer **w) {
  *w = NULL;
  int rc;
  if (!r->upload && (rc = sbx_store_writer_open(r->st, tenant, pp, &r->upload)))
    return sbx__problem_rc(r, rc);
  if (r->body_len) {
    rc = r->upload_len + (int64_t)r->body_len > cap
             ? SBX_ELIMIT
             : sbx_store_writer_write(r->upload, r->body, r->body_len);
    r->upload_len += (int64_t)r->body_len;
    r->body_len = 0;
    if (rc) {
      sbx_store_writer_abort(r->upload);
      r->upload = NULL;
      return rc == SBX_ELIMIT ? sbx__problem(r, 413, "Content Too Large",
                                             "the body exceeds its cap")
                              : sbx__problem_rc(r, rc);
    }
  }
  if (!r->final)
    return 0;
  sbx_store_writer *wr = r->upload;
  r->upload = NULL;
  if (r->upload_len == 0) {
    sbx_store_writer_abort(wr);
    return sbx__problem(r, 400, "Bad Request", "empty body");
  }
  *w = wr;
  return 1;
}
