/*
 * schemas.c - request-body JSON Schemas of the routes (schemas.h). Each
 * schema says what the handler accepts (fields, types, ranges, which are
 * required) and carries "examples" that the handler accepts.
 */
#include "schemas.h"

#include <string.h>

#define ID                                                                     \
  "{\"type\":\"string\",\"pattern\":\"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}$\"}"
#define ROLE "{\"enum\":[\"viewer\",\"developer\",\"analyst\",\"admin\"]}"
#define EMAIL "{\"type\":\"string\",\"minLength\":3,\"maxLength\":254}"
#define PASSWORD "{\"type\":\"string\",\"minLength\":12,\"maxLength\":256}"
#define LIMIT "{\"type\":\"integer\",\"minimum\":-1}"

static const struct {
  const char *method, *pattern, *schema;
} SCHEMAS[] = {
    {"POST", "/api/v1/auth/token",
     "{\"type\":\"object\",\"oneOf\":["
     "{\"properties\":{\"grant_type\":{\"const\":\"password\"}},"
     "\"required\":[\"grant_type\",\"tenant\",\"email\",\"password\"]},"
     "{\"properties\":{\"grant_type\":{\"const\":\"refresh_token\"}},"
     "\"required\":[\"grant_type\",\"refresh_token\"]}],"
     "\"properties\":{\"grant_type\":{\"enum\":[\"password\","
     "\"refresh_token\"]},\"tenant\":" ID ",\"email\":{\"type\":\"string\","
     "\"maxLength\":254},\"password\":{\"type\":\"string\",\"maxLength\":256},"
     "\"totp\":{\"type\":\"string\",\"pattern\":\"^[0-9]{6}$\"},"
     "\"refresh_token\":{\"type\":\"string\",\"maxLength\":200}},"
     "\"required\":[\"grant_type\"],\"additionalProperties\":false,"
     "\"examples\":[{\"grant_type\":\"password\",\"tenant\":\"default\","
     "\"email\":\"ada@example.org\",\"password\":\"correct horse battery\"},"
     "{\"grant_type\":\"refresh_token\",\"refresh_token\":\"rt_default~"
     "0123456789abcdef0123456789abcdef.0123456789abcdef0123456789abcdef"
     "0123456789abcdef0123456789abcdef\"}]}"},
    {"POST", "/api/v1/auth/bootstrap",
     "{\"type\":\"object\",\"properties\":{\"token\":{\"type\":\"string\","
     "\"pattern\":\"^bt_\",\"maxLength\":200},\"email\":" EMAIL
     ",\"password\":" PASSWORD "},"
     "\"required\":[\"token\",\"email\",\"password\"],"
     "\"additionalProperties\":false,\"examples\":[{\"token\":\"bt_default~"
     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
     "\"email\":\"root@example.org\",\"password\":\"a long first "
     "password\"}]}"},
    {"POST", "/api/v1/auth/session",
     "{\"type\":\"object\",\"properties\":{\"tenant\":" ID
     ",\"email\":{\"type\":\"string\",\"maxLength\":254},\"password\":{"
     "\"type\":\"string\",\"maxLength\":256},\"totp\":{\"type\":\"string\","
     "\"pattern\":\"^[0-9]{6}$\"}},"
     "\"required\":[\"tenant\",\"email\",\"password\"],"
     "\"additionalProperties\":false,\"examples\":[{\"tenant\":\"default\","
     "\"email\":\"ada@example.org\",\"password\":\"correct horse "
     "battery\"}]}"},
    {"POST", "/api/v1/auth/totp/confirm",
     "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\","
     "\"pattern\":\"^[0-9]{6}$\"}},\"required\":[\"code\"],"
     "\"additionalProperties\":false,\"examples\":[{\"code\":\"123456\"}]}"},
    {"POST", "/api/v1/projects",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID
     ",\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":127}},"
     "\"required\":[\"id\",\"name\"],\"additionalProperties\":false,"
     "\"examples\":[{\"id\":\"vision-eval\",\"name\":\"Vision "
     "robustness\"}]}"},
    {"POST", "/api/v1/users",
     "{\"type\":\"object\",\"properties\":{\"id\":" ID ",\"email\":" EMAIL
     ",\"password\":" PASSWORD ",\"role\":" ROLE "},"
     "\"required\":[\"id\",\"email\"],\"additionalProperties\":false,"
     "\"examples\":[{\"id\":\"grace\",\"email\":\"grace@example.org\","
     "\"password\":\"grace's long password\",\"role\":\"analyst\"}]}"},
    {"PUT", "/api/v1/projects/{project}/members/{user}",
     "{\"type\":\"object\",\"properties\":{\"role\":" ROLE "},"
     "\"required\":[\"role\"],\"additionalProperties\":false,"
     "\"examples\":[{\"role\":\"developer\"}]}"},
    {"POST", "/api/v1/api-keys",
     "{\"type\":\"object\",\"properties\":{\"role\":" ROLE ",\"project_id\":" ID
     ",\"user_id\":" ID ",\"expires_in_s\":{\"type\":"
     "\"integer\",\"minimum\":1,\"maximum\":31622400,\"default\":7776000}},"
     "\"required\":[\"role\"],\"additionalProperties\":false,"
     "\"examples\":[{\"role\":\"developer\",\"expires_in_s\":2592000},"
     "{\"role\":\"viewer\",\"project_id\":\"vision-eval\"}]}"},
    {"POST", "/api/v1/api-keys/{key}/rotate",
     "{\"type\":\"object\",\"properties\":{\"overlap_s\":{\"type\":"
     "\"integer\",\"minimum\":0,\"maximum\":604800,\"default\":86400}},"
     "\"additionalProperties\":false,\"examples\":[{\"overlap_s\":3600},"
     "{}]}"},
    {"POST", "/api/v1/projects/{project}/jobs",
     "{\"type\":\"object\",\"properties\":{\"model_id\":" ID
     ",\"dataset_id\":" ID ",\"spec\":{\"type\":\"object\","
     "\"description\":\"the job spec (docs/jobs.md); parameters of each "
     "attack: GET /api/v1/attacks\",\"properties\":{\"kind\":{\"enum\":["
     "\"attack\",\"evaluation\"]}},\"required\":[\"kind\"]},"
     "\"attack\":{\"type\":\"string\",\"maxLength\":32,\"description\":"
     "\"legacy form: attack + params + seed instead of spec\"},"
     "\"params\":{\"type\":\"object\",\"maxProperties\":32},"
     "\"seed\":{\"type\":\"integer\"},"
     "\"limits\":{\"type\":\"object\",\"properties\":{\"wall_seconds\":{"
     "\"type\":\"integer\",\"minimum\":0},\"memory_bytes\":{\"type\":"
     "\"integer\",\"minimum\":0},\"samples\":{\"type\":\"integer\","
     "\"minimum\":0},\"clamp\":{\"type\":\"boolean\"}},"
     "\"additionalProperties\":false},"
     "\"shards\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":256}},"
     "\"required\":[\"model_id\",\"dataset_id\"],"
     "\"oneOf\":[{\"required\":[\"spec\"]},{\"required\":[\"attack\"]}],"
     "\"additionalProperties\":false,"
     "\"examples\":[{\"model_id\":\"m_0123456789abcdef\",\"dataset_id\":"
     "\"d_0123456789abcdef\",\"spec\":{\"kind\":\"attack\",\"attack\":"
     "\"fgsm\",\"eps\":0.03,\"seed\":1},\"limits\":{\"wall_seconds\":600}},"
     "{\"model_id\":\"m_0123456789abcdef\",\"dataset_id\":"
     "\"d_0123456789abcdef\",\"attack\":\"pgd\",\"params\":{\"eps\":0.03,"
     "\"steps\":10},\"seed\":7}]}"},
    {"PUT", "/api/v1/tenants/{tenant}/quota",
     "{\"type\":\"object\",\"description\":\"0: inherit the configuration, "
     "-1: no limit\",\"properties\":{\"max_bytes\":" LIMIT
     ",\"max_objects\":" LIMIT ",\"project_max_bytes\":" LIMIT
     ",\"project_max_objects\":" LIMIT ",\"max_object_bytes\":" LIMIT "},"
     "\"additionalProperties\":false,\"examples\":[{\"max_bytes\":"
     "107374182400,\"max_objects\":50000,\"project_max_bytes\":-1}]}"},
    {"POST", "/api/v1/auth/reauth",
     "{\"type\":\"object\",\"properties\":{\"password\":" PASSWORD
     ",\"totp\":{\"type\":\"string\",\"pattern\":\"^[0-9]{6}$\"}},"
     "\"required\":[\"password\"],\"additionalProperties\":false,"
     "\"examples\":[{\"password\":\"correct horse battery\"}]}"},
    {"POST", "/api/v1/auth/passphrase",
     "{\"type\":\"object\",\"properties\":{\"current_password\":"
     "{\"type\":\"string\",\"maxLength\":256},\"new_password\":" PASSWORD
     ",\"totp\":{\"type\":\"string\",\"pattern\":\"^[0-9]{6}$\"}},"
     "\"required\":[\"current_password\",\"new_password\"],"
     "\"additionalProperties\":false,\"examples\":[{\"current_password\":"
     "\"correct horse battery\",\"new_password\":\"a brand new long "
     "password\"}]}"},
    {"PATCH", "/api/v1/users/{user}",
     "{\"type\":\"object\",\"properties\":{\"role\":{\"enum\":["
     "\"viewer\",\"developer\",\"analyst\",\"admin\",\"none\"]},"
     "\"disabled\":{\"type\":\"boolean\"}},\"minProperties\":1,"
     "\"additionalProperties\":false,\"examples\":[{\"role\":\"viewer\"},"
     "{\"disabled\":false}]}"},
    {"POST", "/api/v1/users/{user}/revoke-sessions",
     "{\"type\":\"object\",\"properties\":{\"api_keys\":{\"type\":"
     "\"boolean\",\"default\":false},\"issued_keys\":{\"type\":"
     "\"boolean\",\"default\":false}},\"additionalProperties\":false,"
     "\"examples\":[{\"api_keys\":false},{}]}"},
    {"PUT", "/api/v1/tenants/{tenant}/retention",
     "{\"type\":\"object\",\"description\":\"seconds; 0: keep forever; "
     "audit_seconds at least the server's legal minimum\",\"properties\":{"
     "\"jobs_seconds\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":"
     "3162240000},\"audit_seconds\":{\"type\":\"integer\",\"minimum\":0,"
     "\"maximum\":3162240000}},\"additionalProperties\":false,"
     "\"examples\":[{\"jobs_seconds\":2592000,\"audit_seconds\":0}]}"},
    {"PUT", "/api/v1/tenants/{tenant}/freeze",
     "{\"type\":\"object\",\"properties\":{\"frozen\":{\"type\":"
     "\"boolean\"}},\"required\":[\"frozen\"],\"additionalProperties\":"
     "false,\"examples\":[{\"frozen\":false}]}"},
    {"POST", "/api/v1/admin/jwt-key/rotate",
     "{\"type\":\"object\",\"properties\":{\"retire_old\":{\"type\":"
     "\"boolean\",\"default\":false}},\"additionalProperties\":false,"
     "\"examples\":[{}]}"},
    {"PUT", "/api/v1/tenants/{tenant}/job-limits",
     "{\"type\":\"object\",\"description\":\"0: inherit, -1: none (only "
     "default_samples and max_concurrency)\",\"properties\":{"
     "\"default_wall_seconds\":" LIMIT ",\"max_wall_seconds\":" LIMIT
     ",\"default_memory_bytes\":" LIMIT ",\"max_memory_bytes\":" LIMIT
     ",\"default_samples\":" LIMIT ",\"max_samples\":" LIMIT
     ",\"max_shards\":" LIMIT ",\"max_concurrency\":" LIMIT "},"
     "\"additionalProperties\":false,\"examples\":[{\"max_wall_seconds\":"
     "3600,\"max_concurrency\":4}]}"},
    {"POST", "/api/v1/worker/claim",
     "{\"type\":\"object\",\"properties\":{\"worker\":" ID ",\"wait\":{"
     "\"type\":\"integer\",\"minimum\":0,\"maximum\":30}},"
     "\"additionalProperties\":false,\"examples\":[{\"worker\":\"gpu-1\","
     "\"wait\":0}]}"},
    {"POST", "/api/v1/worker/jobs/{job}/heartbeat",
     "{\"type\":\"object\",\"properties\":{\"fraction\":{\"type\":"
     "\"number\",\"minimum\":0,\"maximum\":1},\"phase\":{\"type\":"
     "\"string\",\"maxLength\":256},\"robust_accuracy\":{\"type\":["
     "\"number\",\"null\"],\"maximum\":1},\"eta_seconds\":{\"type\":["
     "\"number\",\"null\"],\"minimum\":0,\"maximum\":1000000000}},"
     "\"additionalProperties\":false,\"examples\":[{\"fraction\":0.5,"
     "\"phase\":\"attack\",\"robust_accuracy\":0.42,\"eta_seconds\":30}]}"},
    {"POST", "/api/v1/worker/jobs/{job}/finish",
     "{\"type\":\"object\",\"properties\":{\"state\":{\"enum\":["
     "\"succeeded\",\"failed\",\"cancelled\",\"timed_out\"]},\"reason\":{"
     "\"type\":\"string\",\"maxLength\":511},\"sandbox\":{\"type\":"
     "\"object\"}},\"required\":[\"state\"],\"additionalProperties\":false,"
     "\"examples\":[{\"state\":\"failed\",\"reason\":\"the model did not "
     "load\"}]}"},
};

json_t *sbx__request_schema(const char *method, const char *pattern) {
  for (size_t i = 0; i < sizeof SCHEMAS / sizeof SCHEMAS[0]; i++)
    if (!strcmp(SCHEMAS[i].method, method) &&
        !strcmp(SCHEMAS[i].pattern, pattern)) {
      json_error_t e;
      return json_loads(SCHEMAS[i].schema, 0, &e);
    }
  return NULL;
}
