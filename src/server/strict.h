/*
 * strict.h - strict HTTP/1.1 request checks (issue 12 item 6) on top of
 * libmicrohttpd's parser: the raw request target, the header list (framing
 * headers, duplicates, field syntax, obs-fold) and the Authorization
 * scheme. Depends on libmicrohttpd only.
 */
#ifndef SBX_SERVER_STRICT_H
#define SBX_SERVER_STRICT_H

#include <microhttpd.h>

/* Checks the raw request target as received (before MHD splits off the
 * query and percent-decodes it): origin-form only ('/' first), no byte
 * outside the visible ASCII range, no '#', every '%' followed by two hex
 * digits and none decoding to NUL ("%00"), no raw NUL. uri is MHD's
 * request-line buffer (bytes after its end are read). Returns NULL when
 * acceptable, else a static reason for a 400. */
const char *sbx__strict_target(const char *uri);

/* Checks the request's method and header list after MHD parsed the head
 * (the access handler's first call, with its method, url and version):
 * the method is a token; every field name is a token (so no whitespace
 * before the colon); every value holds no control byte but HTAB (a bare
 * CR); no raw NUL in the method or a header line; no obs-fold (MHD 0.9.75 joins
 * a continuation line silently; see strict.c); one Host (required on HTTP/1.1),
 * at most one Content-Length, at most one Authorization; Transfer-Encoding
 * never with Content-Length nor on HTTP/1.0, and only as the single coding
 * "chunked". Returns 0 when acceptable, else the status to answer (400, or 501
 * for a transfer coding we do not implement) with a static reason in *why. Any
 * refusal is to be sent with "Connection: close": the message's framing
 * cannot be trusted. */
int sbx__strict_head(struct MHD_Connection *c, const char *method,
                     const char *url, const char *version, const char **why);

/* The credentials of "Authorization: Bearer <token>": the scheme is
 * matched case-insensitively (RFC 9110 11.1) and followed by one or more
 * spaces. Returns the token (borrowed from MHD, valid for the request), or
 * NULL when the header is absent (*present = 0) or carries another scheme
 * or no token (*present = 1). present may be NULL. */
const char *sbx__bearer_token(struct MHD_Connection *c, int *present);

#endif
