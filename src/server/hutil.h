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
/* A paged list (dbx.h's what/scope) from ?limit= and ?cursor=. */
int sbx__list_reply(sbx__req *r, const char *what, const char *scope);
/* Keyed hash of the lower-cased e-mail (the users.email_index column). */
int sbx__email_index(sbx__req *r, const char *email, uint8_t out[32]);
/* 1 when e looks like an e-mail address (3..254 printable, an '@'). */
int sbx__email_valid(const char *e);
/* 1 when pw has 12..256 bytes. */
int sbx__password_ok(const char *pw);

#endif
