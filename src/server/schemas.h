/*
 * schemas.h - the JSON Schemas (2020-12, with examples) of the JSON
 * request bodies, for the OpenAPI document (openapi.c). Kept beside the
 * handlers' own checks by CTest api_holes (case request_schemas_match_
 * handlers): every example is sent and must pass the handler's validation,
 * and each example without one of its required fields must get 400.
 */
#ifndef SBX_SERVER_SCHEMAS_H
#define SBX_SERVER_SCHEMAS_H

#include <jansson.h>

/* The request-body schema of route (method, pattern) as a new reference;
 * NULL when the route has none here (the document then says
 * {"type": "object"}). */
json_t *sbx__request_schema(const char *method, const char *pattern);

#endif
