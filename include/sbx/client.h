/*
 * sbx/client.h - a small HTTPS client for the service's own API (libcurl,
 * GnuTLS flavour). Used by the worker (claim, fetch inputs, heartbeat,
 * upload results) and later by the CLI's client commands.
 *
 *   sbx_client_params p = sbx_client_default_params();
 *   p.base_url = "https://127.0.0.1:8443"; p.ca_file = "ca.pem";
 *   sbx_client *c;
 *   if (sbx_client_init(p, &c, err, sizeof(err))) ...
 *   sbx_client_resp r;
 *   sbx_client_request(c, "GET", "/api/v1/health", NULL, NULL, NULL, 0, &r,
 *                      err, sizeof(err));
 *   ... r.status, r.body (NUL-terminated), r.len ...
 *   sbx_client_resp_free(&r);
 *   sbx_client_free(c);
 *
 * Every response body is capped (max_response); a larger one fails with
 * SBX_ELIMIT and nothing is returned. Only https:// (and http:// to a
 * loopback address, for tests) base URLs are accepted; redirects are never
 * followed. One client is one connection (keep-alive) and is not
 * thread-safe: use one per thread.
 */
#ifndef SBX_CLIENT_H
#define SBX_CLIENT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_client sbx_client;

typedef struct sbx_client_params {
  const char *base_url; /* "https://host:port", no trailing path */
  const char *ca_file;  /* PEM bundle to trust; NULL = the system's */
  const char *bearer;   /* default Authorization: Bearer credential */
  long connect_timeout_s;
  long timeout_s;      /* whole request; per call override possible */
  size_t max_response; /* cap on any response body (bytes) */
} sbx_client_params;

/* connect 5 s, request 60 s, responses up to 64 MiB. */
sbx_client_params sbx_client_default_params(void);

/* Copies every string of p. On error *out is NULL and err holds why. */
int sbx_client_init(sbx_client_params p, sbx_client **out, char *err,
                    size_t errlen);
/* Frees the client and wipes its credential copy. NULL is fine. */
void sbx_client_free(sbx_client *c);

typedef struct sbx_client_resp {
  long status; /* HTTP status; 0 when no answer arrived */
  char *body;  /* malloc'd, NUL-terminated (len excludes the NUL) */
  size_t len;
} sbx_client_resp;

void sbx_client_resp_free(sbx_client_resp *r);

/*
 * Performs one request: method, path (appended to base_url), bearer (NULL =
 * the client's default), content type and body (NULL/0 for none),
 * timeout_s (0 = the client's). A transport failure returns a negative
 * sbx_status with err set and r empty; any HTTP answer returns 0 with
 * r->status set (the caller judges 4xx/5xx). The caller frees r.
 */
int sbx_client_request(sbx_client *c, const char *method, const char *path,
                       const char *bearer, const char *content_type,
                       const void *body, size_t len, long timeout_s,
                       sbx_client_resp *r, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
