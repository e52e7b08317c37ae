/*
 * reply.h - answers and request bodies: JSON replies, RFC 7807 problems,
 * extra headers, query arguments, the capped JSON body parser. Every
 * function sets r->status / r->resp (replacing an earlier answer) and
 * returns 0, so handlers can `return sbx__problem(...)`.
 */
#ifndef SBX_SERVER_REPLY_H
#define SBX_SERVER_REPLY_H

#include <jansson.h>

#include "buf.h"
#include "req.h"

/* 200.. with body as JSON; takes the reference (NULL body: 500). */
int sbx__reply_json(sbx__req *r, int status, json_t *body);
/* application/problem+json; detail NULL: the title. */
int sbx__problem(sbx__req *r, int status, const char *title,
                 const char *detail);
/* Maps an sbx_status to a problem response (404, 409, 413, 500...); a 500
 * is logged with the request id. */
int sbx__problem_rc(sbx__req *r, int rc);
/* Adds a response header (at most SBX__EXTRA_HDR; more are dropped). */
void sbx__add_header(sbx__req *r, const char *name, const char *value);
/* Sends b->p as the body (takes it; 500 after an err); type NULL means
 * application/json. */
int sbx__reply_buf(sbx__req *r, int status, sbx__buf *b, const char *type);
/* A query argument of the request, NULL when absent. Valid for the
 * request. */
const char *sbx__arg(sbx__req *r, const char *name);
/* Parses r->body as a JSON object with caps (depth <= 32, size capped by
 * the route). Rejects fields not in allowed (NULL-terminated). An absent
 * body is an empty object on routes flagged BODY_OPTIONAL, else a 400. On
 * error a 400/415 problem is set and NULL returned; else the caller
 * decrefs. */
json_t *sbx__body_object(sbx__req *r, const char *const *allowed);

#endif
