/*
 * http.h - the libmicrohttpd glue: listening, per-request state, body caps,
 * dispatch through srv->routes.
 */
#ifndef SBX_SERVER_HTTP_H
#define SBX_SERVER_HTTP_H

#include "sbx/server.h"

/* Starts listening on s->p.listen with s's TLS key pair; the bound port in
 * s->port. A refused address is logged. */
int sbx__http_start(sbx_server *s);
/* Stops accepting and waits for handlers in flight; idempotent. */
void sbx__http_stop(sbx_server *s);

#endif
