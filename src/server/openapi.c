/*
 * openapi.c - the OpenAPI 3.1 document from a route table (openapi.h).
 * Everything comes from the rows (permission, flags, body kind).
 */
#include "openapi.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "schemas.h"

char *sbx__openapi_json(const sbx__route *tab, size_t n) {
  json_t *paths = json_object();
  for (size_t i = 0; i < n; i++) {
    const sbx__route *rt = &tab[i];
    json_t *item = json_object_get(paths, rt->pattern);
    if (!item) {
      item = json_object();
      json_object_set_new(paths, rt->pattern, item);
      json_t *params = json_array();
      for (const char *p = strchr(rt->pattern, '{'); p;
           p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        json_array_append_new(
            params, json_pack("{s:s%,s:s,s:b,s:{s:s,s:s}}", "name", p + 1,
                              (size_t)(e - p - 1), "in", "path", "required", 1,
                              "schema", "type", "string", "pattern",
                              "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}$"));
      }
      if (json_array_size(params))
        json_object_set_new(item, "parameters", params);
      else
        json_decref(params);
    }
    char method[8], opid[160], code[8];
    size_t k = 0;
    for (; rt->method[k] && k < sizeof method - 1; k++)
      method[k] = (char)tolower((unsigned char)rt->method[k]);
    method[k] = 0;
    snprintf(opid, sizeof opid, "%s", rt->summary);
    size_t o = 0;
    for (size_t c = 0; opid[c]; c++)
      if (isalnum((unsigned char)opid[c]))
        opid[o++] = opid[c];
    snprintf(opid + o, sizeof opid - o, "%zu", i);
    snprintf(code, sizeof code, "%d", rt->ok_status);
    json_t *responses = json_object();
    json_object_set_new(responses, code,
                        json_pack("{s:s}", "description",
                                  rt->ok_status == 201   ? "Created"
                                  : rt->ok_status == 302 ? "Found (redirect)"
                                                         : "OK"));
    static const char *const errs[][2] = {
        {"400", "Bad request"},       {"401", "Unauthenticated"},
        {"403", "Forbidden"},         {"404", "Not found"},
        {"413", "Content too large"}, {"429", "Rate limited"}};
    for (size_t e = 0; e < 6; e++)
      json_object_set_new(responses, errs[e][0],
                          json_pack("{s:s,s:{s:{s:{s:s}}}}", "description",
                                    errs[e][1], "content",
                                    "application/problem+json", "schema",
                                    "$ref", "#/components/schemas/Problem"));
    json_t *op = json_pack("{s:s,s:s,s:o,s:s}", "summary", rt->summary,
                           "operationId", opid, "responses", responses,
                           "x-permission", sbx__route_perm_name(rt));
    if (rt->flags & SBX__RF_PUBLIC)
      json_object_set_new(op, "security", json_array());
    if (rt->body == SBX__BODY_JSON) {
      json_t *sch = sbx__request_schema(rt->method, rt->pattern); /* real */
      if (!sch)
        sch = json_pack("{s:s}", "type", "object");
      json_object_set_new(op, "requestBody",
                          json_pack("{s:b,s:{s:{s:o}}}", "required",
                                    !(rt->flags & SBX__RF_BODY_OPTIONAL),
                                    "content", "application/json", "schema",
                                    sch));
    } else if (rt->body == SBX__BODY_UPLOAD) {
      json_object_set_new(op, "requestBody",
                          json_pack("{s:b,s:{s:{s:{s:s,s:s}}}}", "required", 1,
                                    "content", "application/octet-stream",
                                    "schema", "type", "string", "format",
                                    "binary"));
      if (!(rt->flags & SBX__RF_JOB_TOKEN)) /* results: no ?name= */
        json_object_set_new(op, "parameters",
                            json_pack("[{s:s,s:s,s:b,s:{s:s}}]", "name", "name",
                                      "in", "query", "required", 1, "schema",
                                      "type", "string"));
    }
    json_object_set_new(item, method, op);
  }
  json_t *doc = json_pack(
      "{s:s,s:{s:s,s:s},s:o,s:{s:{s:{s:s,s:s,s:s}},s:{s:{s:s,s:{s:{s:s},s:{"
      "s:s},s:{s:s},s:{s:s},s:{s:s}}}}},s:[{s:[]}]}",
      "openapi", "3.1.0", "info", "title", "AI Adversarial Sandbox API",
      "version", "1.0.0", "paths", paths, "components", "securitySchemes",
      "bearer", "type", "http", "scheme", "bearer", "bearerFormat",
      "API key (ak_...) or EdDSA JWT", "schemas", "Problem", "type", "object",
      "properties", "type", "type", "string", "title", "type", "string",
      "status", "type", "integer", "detail", "type", "string", "request_id",
      "type", "string", "security", "bearer");
  char *txt = doc ? json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
  json_decref(doc);
  return txt;
}
