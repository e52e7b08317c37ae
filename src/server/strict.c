/*
 * strict.c - strict HTTP/1.1 request checks (issue 12 item 6). See
 * strict.h and docs/security.md "Strict HTTP".
 *
 * libmicrohttpd 0.9.75 (Debian 12) is lenient where leniency enables
 * request smuggling or parser confusion behind a proxy: the first of two
 * Content-Length headers wins, Transfer-Encoding silently overrides
 * Content-Length, a coding list such as "gzip, chunked" leaves the body
 * unframed (the connection hangs), a bare CR stays inside a value, an
 * obs-fold line is glued onto the previous header, and whitespace before
 * the colon is accepted, and a raw NUL byte silently ends the method, the
 * target or a header value. MHD keeps every header line in its list, so
 * these checks run on that list at the first access-handler call, before
 * any route, credential or body is looked at; what the list cannot show
 * (obs-fold, raw NULs) is read from where MHD 0.9.x left the strings in
 * its read buffer (folded(), adjacent()).
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "strict.h"

/* RFC 9110 5.6.2: tchar. */
static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
      (c >= 'a' && c <= 'z'))
    return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* 1 when s is a non-empty token. */
static int is_token(const char *s) {
  if (!s || !*s)
    return 0;
  for (; *s; s++)
    if (!is_tchar((unsigned char)*s))
      return 0;
  return 1;
}

/* 1 when the loaded libmicrohttpd is a 0.9.x one, whose parser leaves the
 * request line and every header line in place in its read buffer (each
 * separator turned into a NUL), which the layout checks below rely on. */
static int old_parser(void) {
  const char *lib = MHD_get_version();
  return lib && !strncmp(lib, "0.9.", 4);
}

const char *sbx__strict_target(const char *uri) {
  if (!uri || uri[0] != '/')
    return "request target: origin-form (/path?query) only";
  /* a raw NUL ends the string MHD hands on: the target must end where the
   * space before the version was (now a NUL) */
  if (old_parser() && strncmp(uri + strlen(uri) + 1, "HTTP/", 5))
    return "request target: NUL byte";
  for (const unsigned char *p = (const unsigned char *)uri; *p; p++) {
    if (*p <= 0x20 || *p >= 0x7f)
      return "request target: control, space or non-ASCII byte";
    if (*p == '#')
      return "request target: fragment";
    if (*p == '%') {
      if (!isxdigit(p[1]) || !isxdigit(p[2]))
        return "request target: malformed percent-encoding";
      if (p[1] == '0' && p[2] == '0')
        return "request target: %00 (NUL)";
      p += 2;
    }
  }
  return NULL;
}

/* What the header scan found. */
typedef struct scan {
  int n_cl, n_te, n_auth, n_host;
  const char *te;  /* the (single) Transfer-Encoding value */
  const char *why; /* first malformed field, or NULL */
  int old_parser;  /* libmicrohttpd 0.9.x: see folded(), adjacent() */
  const char *end; /* old_parser: end of the previous line's last string */
} scan;

/* 1 when next starts the line after the one whose last string ended at
 * end (its terminating NUL): MHD 0.9.x turned that line's CRLF or LF into
 * one or two NULs, so next is end + 1 or end + 2. Anything else means a
 * raw NUL cut a string short (the rest of the line was ignored) or, in
 * MHD <= 0.9.76, an obs-fold moved a field name away. */
static int adjacent(const char *end, const char *next) {
  uintptr_t e = (uintptr_t)end, n = (uintptr_t)next;
  return n == e + 1 || (n == e + 2 && end[1] == '\0');
}

/* 1 when the value is not laid out right after its name in MHD's read
 * buffer: "name\0" then optional SP/HTAB then the value. libmicrohttpd
 * 0.9.x parses each header line in place, the colon becoming the NUL;
 * through 0.9.76 (Debian 12: 0.9.75) a line continued by obs-fold instead
 * gets its name copied to a new pool block with the continuation appended
 * to it, away from its value. Both pointers lie in the connection's one
 * memory pool, and the bytes between are read only when they are at most
 * 8 KiB apart (a head is <= 64 KiB). 0.9.77 replaces the fold by spaces in
 * the value (RFC 9112 5.2 allows that; the layout then holds and nothing
 * is refused here), and 1.0 rewrote the parser and refuses obs-fold itself
 * under MHD_OPTION_STRICT_FOR_CLIENT = 1, so the check runs only on a
 * 0.9.x library (old_parser, decided at run time: the loaded library's
 * layout is what counts). */
static int folded(const char *key, size_t klen, const char *value,
                  int old_parser) {
  if (!old_parser)
    return 0;
  const char *p = key + klen + 1;
  uintptr_t vp = (uintptr_t)value, pp = (uintptr_t)p;
  if (key[klen] != '\0' || vp < pp || vp - pp > 8192)
    return 1;
  for (; p < value; p++)
    if (*p != ' ' && *p != '\t')
      return 1;
  return 0;
}

/* MHD_KeyValueIterator over the request headers. */
static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value) {
  scan *s = cls;
  (void)kind;
  if (s->why)
    return MHD_NO;
  if (!is_token(key)) {
    s->why = "header field name is not a token (whitespace before ':'?)";
    return MHD_NO;
  }
  if (!value)
    value = "";
  for (const unsigned char *p = (const unsigned char *)value; *p; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
      s->why = "control byte (bare CR?) in a header value";
      return MHD_NO;
    }
  if (folded(key, strlen(key), value, s->old_parser)) {
    s->why = "obs-fold (a header continued on the next line)";
    return MHD_NO;
  }
  if (s->old_parser) {
    if (s->end && !adjacent(s->end, key)) {
      s->why = "NUL byte or obs-fold in the request head";
      return MHD_NO;
    }
    s->end = value + strlen(value);
  }
  if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
    s->n_cl++;
  else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
    s->n_te++;
    s->te = value;
  } else if (!strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION))
    s->n_auth++;
  else if (!strcasecmp(key, MHD_HTTP_HEADER_HOST))
    s->n_host++;
  return MHD_YES;
}

/* 1 when v is the single coding "chunked" (any case) exactly as
 * libmicrohttpd 0.9.75 recognises it: it strips leading whitespace but
 * not trailing, and takes any other value (even "chunked ") as a body of
 * unknown length with no framing, which then hangs. */
static int plain_chunked(const char *v) {
  while (*v == ' ' || *v == '\t')
    v++;
  return !strcasecmp(v, "chunked");
}

int sbx__strict_head(struct MHD_Connection *c, const char *method,
                     const char *url, const char *version, const char **why) {
  scan s = {0};
  s.old_parser = old_parser();
  int http10 = version && !strcmp(version, MHD_HTTP_VERSION_1_0);
  if (!is_token(method)) {
    *why = "method is not a token";
    return 400;
  }
  if (s.old_parser) {
    /* method, its NUL (the first space), spaces, then the target (url is
     * the target's own buffer, decoded in place); the version line's end
     * starts the header chain */
    const char *e = method + strlen(method) + 1;
    uintptr_t ue = (uintptr_t)e, uu = (uintptr_t)url;
    int bad = !url || uu < ue || uu - ue > 64;
    for (; !bad && e < url; e++)
      bad = *e != ' ';
    if (bad) {
      *why = "NUL byte in the method";
      return 400;
    }
    if (version && *version)
      s.end = version + strlen(version);
  }
  MHD_get_connection_values(c, MHD_HEADER_KIND, on_header, &s);
  *why = s.why;
  if (!s.why && s.end && s.end[1] != '\0')
    *why = "NUL byte in the last header line";
  if (*why)
    return 400;
  if (s.n_host > 1 || (s.n_host == 0 && !http10)) {
    *why = "exactly one Host header required";
    return 400;
  }
  if (s.n_cl > 1) {
    *why = "more than one Content-Length";
    return 400;
  }
  if (s.n_auth > 1) {
    *why = "more than one Authorization";
    return 400;
  }
  if (s.n_te && (s.n_cl || http10)) {
    *why = s.n_cl ? "Transfer-Encoding with Content-Length"
                  : "Transfer-Encoding on HTTP/1.0";
    return 400;
  }
  if (s.n_te > 1 || (s.n_te && !plain_chunked(s.te))) {
    *why = "transfer coding other than chunked";
    return 501;
  }
  return 0;
}

const char *sbx__bearer_token(struct MHD_Connection *c, int *present) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_AUTHORIZATION);
  if (present)
    *present = h != NULL;
  if (!h || strncasecmp(h, "Bearer", 6) || h[6] != ' ')
    return NULL;
  h += 6;
  while (*h == ' ')
    h++;
  return *h ? h : NULL;
}
