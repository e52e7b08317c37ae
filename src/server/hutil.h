/*
 * hutil.h - helpers shared by the route handlers (routes_*.c): the
 * caller's tenant and store, JSON body fields, paged list replies,
 * e-mail and password rules.
 */
#ifndef SBX_SERVER_HUTIL_H
#define SBX_SERVER_HUTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "req.h"

/* The caller's tenant and the request's metadata store. */
static inline const char *sbx__tenant(sbx__req *r) {
  return r->who.tenant;
}
static inline sbx_meta *sbx__meta(sbx__req *r) {
  return sbx_store_meta(r->st);
}
/* A string field of a JSON body: NULL when absent; *bad set when not a
 * string, longer than max or holding a NUL. Borrowed from o. */
const char *sbx__jstr(json_t *o, const char *k, size_t max, int *bad);
/* Decrefs j and answers 400 with why. Returns 0. */
int sbx__bad_request(sbx__req *r, json_t *j, const char *why);
/* ?limit= (1..100, default 50) and ?cursor= (an id or absent) of a list;
 * returns 1 with a 400 set when malformed. */
int sbx__page_args(sbx__req *r, int *limit, const char **cursor);
/* A paged list (dbx.h's what/scope) from ?limit= and ?cursor=. */
int sbx__list_reply(sbx__req *r, const char *what, const char *scope);
/* The users.email_index of an e-mail in tenant: the tenant's blind index
 * of the lower-cased address (sbx_store_blind_index "email"); for an
 * unknown or shredded tenant a pepper hash that matches no row. */
int sbx__email_index(sbx__req *r, const char *tenant, const char *email,
                     uint8_t out[32]);
/* 1 when e looks like an e-mail address (3..254 printable, an '@'). */
int sbx__email_valid(const char *e);
/* 1 when pw has 12..256 bytes. */
int sbx__password_ok(const char *pw);
/* Answers 200 with object id of tenant, decrypted (at most max bytes), as
 * Content-Type type; 404 when id is "" or unknown. */
int sbx__reply_object(sbx__req *r, const char *tenant, const char *id,
                      size_t max, const char *type);
/* One step of an UPLOAD route (called per body chunk and at the end):
 * the first call opens a store writer for pp in tenant, every call writes
 * what arrived, capped at cap bytes in all (413). Returns 1 when the whole
 * non-empty body is written: *w is then the open writer, which the caller
 * commits or aborts. Returns 0 when more is to come or an answer (an
 * error; empty body: 400) was set. */
int sbx__upload_step(sbx__req *r, const char *tenant, const sbx_put_params *pp,
                     int64_t cap, sbx_store_writer **w);

#endif
