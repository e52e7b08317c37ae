/*
 * oidc.h - OIDC login against an external identity provider: code flow
 * with PKCE, ID token verified against the provider's JWKS.
 */
#ifndef SBX_SERVER_OIDC_H
#define SBX_SERVER_OIDC_H

#include <jansson.h>
#include <stdint.h>

#include "req.h"

struct sbx__oidc; /* opaque: a verifier (issuer, client, cached JWKS) */

/* Discovery and JWKS at start; a no-op when oidc_issuer is unset. A
 * refused configuration is logged. */
int sbx__oidc_init(sbx_server *s);
void sbx__oidc_free(sbx_server *s);
/* GET /api/v1/auth/oidc/login and /callback. */
int sbx__oidc_h_login(sbx__req *r);
int sbx__oidc_h_callback(sbx__req *r);
/* The ID-token check on its own (also used by the tests): signature with
 * RS256 only against the cached JWKS (refetched on an unknown kid, rate
 * limited), iss, aud/azp, exp/iat/nbf with leeway, nonce. *claims_out
 * (caller decrefs) on success. */
int sbx__oidc_verify_id_token(struct sbx__oidc *o, const char *tok,
                              const char *nonce, int64_t now,
                              json_t **claims_out);
/* A verifier without the server, for tests: issuer, client id, JWKS URI.
 * NULL when out of memory; freed by sbx__oidc_delete. */
struct sbx__oidc *sbx__oidc_new(const char *issuer, const char *client_id,
                                const char *jwks_uri, int leeway_s,
                                int jwks_min_refresh_s);
void sbx__oidc_delete(struct sbx__oidc *o);

#endif
