/*
 * table.c - the route table of aisbxd: every route in one row (method,
 * pattern, permission, flags, body, handler, documentation). The rows
 * are the whole truth: sbx__authorize decides from them, the OpenAPI
 * document and `aisbxd routes` print them. Also the public views of the
 * table (sbx/server.h).
 */
#include "table.h"

#include <string.h>

#include "audit_ops.h"
#include "incident.h"
#include "metrics.h"
#include "oidc.h"
#include "openapi.h"
#include "privacy.h"
#include "quota.h"
#include "routes_admin.h"
#include "routes_auth.h"
#include "routes_jobs.h"
#include "routes_projects.h"
#include "routes_users.h"
#include "routes_worker.h"
#include "sbx/server.h"
#include "session.h"
#include "totp.h"

#define P "/api/v1/projects/{project}"
const sbx__route sbx__routes[] = {
    {"GET", "/healthz", SBX__PERM_NONE, SBX__RF_PUBLIC, SBX__BODY_NONE,
     sbx__h_healthz, "Liveness", 200},
    {"GET", "/readyz", SBX__PERM_NONE, SBX__RF_PUBLIC, SBX__BODY_NONE,
     sbx__h_readyz, "Readiness (store reachable)", 200},
    {"GET", "/.well-known/jwks.json", SBX__PERM_NONE, SBX__RF_PUBLIC,
     SBX__BODY_NONE, sbx__h_jwks, "Public keys of the access tokens", 200},
    {"GET", "/api/v1/openapi.json", SBX__PERM_NONE, SBX__RF_PUBLIC,
     SBX__BODY_NONE, sbx__h_openapi, "This document", 200},
    {"POST", "/api/v1/auth/token", SBX__PERM_NONE, SBX__RF_PUBLIC,
     SBX__BODY_JSON, sbx__h_token, "Password or refresh-token grant", 200},
    {"POST", "/api/v1/auth/bootstrap", SBX__PERM_NONE, SBX__RF_PUBLIC,
     SBX__BODY_JSON, sbx__h_bootstrap,
     "Redeem the one-time bootstrap link of the first admin", 200},
    {"GET", "/api/v1/auth/oidc/login", SBX__PERM_NONE, SBX__RF_PUBLIC,
     SBX__BODY_NONE, sbx__oidc_h_login,
     "Start an OIDC login (302 to the identity provider)", 302},
    {"GET", "/api/v1/auth/oidc/callback", SBX__PERM_NONE, SBX__RF_PUBLIC,
     SBX__BODY_NONE, sbx__oidc_h_callback,
     "OIDC redirect target: code exchange, our tokens and session cookie", 200},
    {"POST", "/api/v1/auth/session", SBX__PERM_NONE,
     SBX__RF_PUBLIC | SBX__RF_LOGIN, SBX__BODY_JSON, sbx__h_session_login,
     "Password login to a browser session cookie", 200},
    {"GET", "/api/v1/auth/session", SBX__PERM_AUTHENTICATED, 0, SBX__BODY_NONE,
     sbx__session_h_get, "The caller's session (and its CSRF token)", 200},
    {"DELETE", "/api/v1/auth/session", SBX__PERM_AUTHENTICATED,
     SBX__RF_FREEZE_OK, SBX__BODY_NONE, sbx__session_h_delete,
     "Log out of the browser session", 200},
    {"POST", "/api/v1/auth/reauth", SBX__PERM_AUTHENTICATED, 0, SBX__BODY_JSON,
     sbx__h_reauth,
     "Step-up: re-authenticate (password, TOTP) for credential changes", 200},
    {"POST", "/api/v1/auth/passphrase", SBX__PERM_AUTHENTICATED, SBX__RF_STEPUP,
     SBX__BODY_JSON, sbx__h_password_change,
     "Change the caller's password (step-up)", 200},
    {"POST", "/api/v1/auth/totp", SBX__PERM_AUTHENTICATED, SBX__RF_STEPUP,
     SBX__BODY_NONE, sbx__totp_h_enroll,
     "Enroll a TOTP second factor (pending; step-up)", 201},
    {"POST", "/api/v1/auth/totp/confirm", SBX__PERM_AUTHENTICATED,
     SBX__RF_STEPUP, SBX__BODY_JSON, sbx__totp_h_confirm,
     "Confirm TOTP with a code: enables it (step-up)", 200},
    {"DELETE", "/api/v1/auth/totp", SBX__PERM_AUTHENTICATED, SBX__RF_STEPUP,
     SBX__BODY_NONE, sbx__totp_h_remove,
     "Remove the caller's TOTP second factor (step-up)", 200},
    {"GET", "/api/v1/me", SBX__PERM_AUTHENTICATED, 0, SBX__BODY_NONE, sbx__h_me,
     "The caller", 200},
    {"GET", "/api/v1/tenants/{tenant}", SBX__PERM_TENANT_READ, 0,
     SBX__BODY_NONE, sbx__h_tenant_get, "The caller's tenant", 200},
    {"GET", "/api/v1/projects", SBX__PERM_PROJECT_READ, 0, SBX__BODY_NONE,
     sbx__h_projects_list, "List projects", 200},
    {"POST", "/api/v1/projects", SBX__PERM_PROJECT_CREATE, 0, SBX__BODY_JSON,
     sbx__h_project_create, "Create a project", 201},
    {"GET", P, SBX__PERM_PROJECT_READ, SBX__RF_PROJECT, SBX__BODY_NONE,
     sbx__h_project_get, "Get a project", 200},
    {"GET", "/api/v1/users", SBX__PERM_USER_READ, 0, SBX__BODY_NONE,
     sbx__h_users_list, "List users", 200},
    {"POST", "/api/v1/users", SBX__PERM_USER_CREATE, 0, SBX__BODY_JSON,
     sbx__h_user_create, "Create a local user", 201},
    {"PATCH", "/api/v1/users/{user}", SBX__PERM_USER_WRITE, 0, SBX__BODY_JSON,
     sbx__h_user_patch, "Change a user's tenant role, disable or enable it",
     200},
    {"DELETE", "/api/v1/users/{user}", SBX__PERM_USER_WRITE, 0, SBX__BODY_NONE,
     sbx__h_user_delete,
     "Delete a user (revokes its sessions, tokens and API keys)", 200},
    {"DELETE", "/api/v1/users/{user}/totp", SBX__PERM_USER_WRITE, 0,
     SBX__BODY_NONE, sbx__h_user_totp_reset, "Reset a user's TOTP (Admin)",
     200},
    {"POST", "/api/v1/users/{user}/revoke-sessions", SBX__PERM_USER_WRITE,
     SBX__RF_SELF | SBX__RF_BODY_OPTIONAL, SBX__BODY_JSON,
     sbx__h_user_revoke_sessions,
     "Revoke a user's sessions and refresh tokens (and API keys); the user "
     "may revoke their own",
     200},
    {"GET", P "/members", SBX__PERM_MEMBER_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_members_list, "List project members", 200},
    {"PUT", P "/members/{user}", SBX__PERM_MEMBER_WRITE, SBX__RF_PROJECT,
     SBX__BODY_JSON, sbx__h_member_put, "Set a member's role", 200},
    {"DELETE", P "/members/{user}", SBX__PERM_MEMBER_WRITE, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_member_delete, "Remove a project member", 200},
    {"GET", "/api/v1/api-keys", SBX__PERM_APIKEY_READ, 0, SBX__BODY_NONE,
     sbx__h_keys_list, "List API keys (never the secrets)", 200},
    {"POST", "/api/v1/api-keys", SBX__PERM_APIKEY_CREATE, SBX__RF_STEPUP,
     SBX__BODY_JSON, sbx__h_key_create,
     "Create an API key (shown once; step-up)", 201},
    {"DELETE", "/api/v1/api-keys/{key}", SBX__PERM_APIKEY_REVOKE,
     SBX__RF_FREEZE_OK, SBX__BODY_NONE, sbx__h_key_revoke, "Revoke an API key",
     200},
    {"POST", "/api/v1/api-keys/{key}/rotate", SBX__PERM_APIKEY_CREATE,
     SBX__RF_BODY_OPTIONAL | SBX__RF_STEPUP, SBX__BODY_JSON, sbx__h_key_rotate,
     "Rotate: new key, the old one expires after an overlap (step-up)", 201},
    {"GET", P "/models", SBX__PERM_MODEL_READ, SBX__RF_PROJECT, SBX__BODY_NONE,
     sbx__h_models_list, "List models", 200},
    {"POST", P "/models", SBX__PERM_MODEL_WRITE, SBX__RF_PROJECT,
     SBX__BODY_UPLOAD, sbx__h_model_upload,
     "Upload a model (raw bytes, ?name=)", 201},
    {"GET", P "/models/{model}", SBX__PERM_MODEL_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_model_get, "Model metadata", 200},
    {"GET", P "/models/{model}/content", SBX__PERM_MODEL_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_model_content, "Download a model", 200},
    {"DELETE", P "/models/{model}", SBX__PERM_MODEL_DELETE, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_model_delete, "Delete a model", 200},
    {"GET", P "/datasets", SBX__PERM_DATASET_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_datasets_list, "List datasets", 200},
    {"POST", P "/datasets", SBX__PERM_DATASET_WRITE, SBX__RF_PROJECT,
     SBX__BODY_UPLOAD, sbx__h_dataset_upload,
     "Upload a dataset (raw bytes, ?name=)", 201},
    {"GET", P "/datasets/{dataset}", SBX__PERM_DATASET_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_dataset_get, "Dataset metadata", 200},
    {"GET", P "/datasets/{dataset}/content", SBX__PERM_DATASET_READ,
     SBX__RF_PROJECT, SBX__BODY_NONE, sbx__h_dataset_content,
     "Download a dataset", 200},
    {"DELETE", P "/datasets/{dataset}", SBX__PERM_DATASET_DELETE,
     SBX__RF_PROJECT, SBX__BODY_NONE, sbx__h_dataset_delete, "Delete a dataset",
     200},
    {"GET", P "/jobs", SBX__PERM_JOB_READ, SBX__RF_PROJECT, SBX__BODY_NONE,
     sbx__h_jobs_list, "List jobs", 200},
    {"POST", P "/jobs", SBX__PERM_JOB_CREATE, SBX__RF_PROJECT, SBX__BODY_JSON,
     sbx__h_job_create, "Create an attack job", 201},
    {"GET", P "/jobs/{job}", SBX__PERM_JOB_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_job_get, "Get a job", 200},
    {"POST", P "/jobs/{job}/cancel", SBX__PERM_JOB_CANCEL, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_job_cancel, "Cancel a job", 200},
    {"GET", P "/jobs/{job}/results", SBX__PERM_RESULT_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_job_results,
     "The result JSON of a job (aisbx.result.v1)", 200},
    {"GET", P "/jobs/{job}/results/adversarial.npy", SBX__PERM_RESULT_READ,
     SBX__RF_PROJECT, SBX__BODY_NONE, sbx__h_job_adversarial,
     "The adversarial examples of a job (NPY)", 200},
    {"GET", P "/jobs/{job}/results/gallery/{i}.png", SBX__PERM_RESULT_READ,
     SBX__RF_PROJECT, SBX__BODY_NONE, sbx__h_job_gallery,
     "Gallery strip i of a job (PNG)", 200},
    {"GET", P "/jobs/{job}/events", SBX__PERM_JOB_READ, SBX__RF_PROJECT,
     SBX__BODY_NONE, sbx__h_job_events,
     "Server-sent events: state transitions and progress until the job ends",
     200},
    {"GET", "/api/v1/attacks", SBX__PERM_AUTHENTICATED, 0, SBX__BODY_NONE,
     sbx__h_attacks, "The attack catalogue (parameters as JSON Schema)", 200},
    {"PUT", "/api/v1/tenants/{tenant}/quota", SBX__PERM_QUOTA_WRITE, 0,
     SBX__BODY_JSON, sbx__h_quota_put,
     "Set the tenant's storage quotas (bytes, objects, per project)", 200},
    {"GET", "/api/v1/tenants/{tenant}/job-limits", SBX__PERM_JOBLIMIT_READ, 0,
     SBX__BODY_NONE, sbx__h_job_limits_get,
     "The tenant's job limits (stored and effective)", 200},
    {"PUT", "/api/v1/tenants/{tenant}/job-limits", SBX__PERM_JOBLIMIT_WRITE, 0,
     SBX__BODY_JSON, sbx__h_job_limits_put,
     "Set the tenant's job defaults, caps and concurrency quota", 200},
    /* privacy rights (privacy.c, docs/security.md "Privacy rights") */
    {"GET", "/api/v1/tenants/{tenant}/retention", SBX__PERM_RETENTION_READ, 0,
     SBX__BODY_NONE, sbx__h_retention_get,
     "The tenant's retention of jobs and audit rows", 200},
    {"PUT", "/api/v1/tenants/{tenant}/retention", SBX__PERM_RETENTION_WRITE, 0,
     SBX__BODY_JSON, sbx__h_retention_put,
     "Set the retention (audit rows: at least the legal minimum)", 200},
    {"POST", "/api/v1/tenants/{tenant}/retention/purge",
     SBX__PERM_RETENTION_WRITE, 0, SBX__BODY_NONE, sbx__h_retention_purge,
     "Run the retention purge now (it also runs periodically)", 200},
    {"GET", "/api/v1/users/{user}/export", SBX__PERM_AUTHENTICATED, 0,
     SBX__BODY_NONE, sbx__h_user_export,
     "Everything held about a user as one JSON document (the user or an "
     "admin)",
     200},
    {"POST", "/api/v1/users/{user}/erase", SBX__PERM_USER_ERASE, 0,
     SBX__BODY_NONE, sbx__h_user_erase,
     "Erase a user's personal data and credentials (audit rows keep the bare "
     "id)",
     200},
    /* the worker protocol (docs/worker-protocol.md) */
    {"POST", "/api/v1/worker/claim", SBX__PERM_NONE,
     SBX__RF_WORKER | SBX__RF_BODY_OPTIONAL, SBX__BODY_JSON,
     sbx__h_worker_claim,
     "Claim a job shard (worker token; long-poll, 204 when none)", 200},
    {"GET", "/api/v1/worker/jobs/{job}/model", SBX__PERM_NONE,
     SBX__RF_JOB_TOKEN, SBX__BODY_NONE, sbx__h_worker_model,
     "The claimed job's model bytes (job token)", 200},
    {"GET", "/api/v1/worker/jobs/{job}/dataset", SBX__PERM_NONE,
     SBX__RF_JOB_TOKEN, SBX__BODY_NONE, sbx__h_worker_dataset,
     "The claimed job's dataset bytes (job token)", 200},
    {"POST", "/api/v1/worker/jobs/{job}/heartbeat", SBX__PERM_NONE,
     SBX__RF_JOB_TOKEN | SBX__RF_BODY_OPTIONAL, SBX__BODY_JSON,
     sbx__h_worker_heartbeat,
     "Progress; extends the lease; answers whether to stop (job token)", 200},
    {"PUT", "/api/v1/worker/jobs/{job}/results/{name}", SBX__PERM_NONE,
     SBX__RF_JOB_TOKEN, SBX__BODY_UPLOAD, sbx__h_worker_result_put,
     "Upload a result file, stored encrypted (job token)", 201},
    {"POST", "/api/v1/worker/jobs/{job}/finish", SBX__PERM_NONE,
     SBX__RF_JOB_TOKEN, SBX__BODY_JSON, sbx__h_worker_finish,
     "End the claimed shard; the job token dies (job token)", 200},
    /* incident response (incident.c, docs/runbook.md): open while the
     * tenant is frozen */
    {"POST", "/api/v1/users/{user}/revoke-credentials", SBX__PERM_INCIDENT,
     SBX__RF_FREEZE_OK, SBX__BODY_NONE, sbx__h_user_revoke_all,
     "Revoke every session, refresh token and API key of a user", 200},
    {"PUT", "/api/v1/tenants/{tenant}/freeze", SBX__PERM_INCIDENT,
     SBX__RF_FREEZE_OK, SBX__BODY_JSON, sbx__h_tenant_freeze,
     "Freeze (mutations answer 423, reads work) or unfreeze the tenant", 200},
    {"POST", "/api/v1/tenants/{tenant}/keys/rotate", SBX__PERM_INCIDENT,
     SBX__RF_FREEZE_OK, SBX__BODY_NONE, sbx__h_tenant_key_rotate,
     "Rotate the tenant key (data keys re-wrapped, no downtime)", 200},
    {"POST", "/api/v1/admin/jwt-key/rotate", SBX__PERM_INCIDENT,
     SBX__RF_FREEZE_OK | SBX__RF_BODY_OPTIONAL, SBX__BODY_JSON,
     sbx__h_jwt_key_rotate,
     "Rotate the access-token signing key (old one in the JWKS until its "
     "tokens expire, or retired at once)",
     200},
    {"POST", "/api/v1/admin/master-key/rotate", SBX__PERM_INCIDENT,
     SBX__RF_FREEZE_OK, SBX__BODY_NONE, sbx__h_master_key_rotate,
     "Rotate the master key (file keys; no downtime)", 200},
    {"GET", "/api/v1/audit-events", SBX__PERM_AUDIT_READ, 0, SBX__BODY_NONE,
     sbx__h_audit_list, "Audit events (hash-chained)", 200},
    {"GET", "/api/v1/audit-events/verify", SBX__PERM_AUDIT_VERIFY, 0,
     SBX__BODY_NONE, sbx__h_audit_verify,
     "Walk the tenant's audit hash chain (and its last anchor): the first "
     "broken row",
     200},
    {"GET", "/metrics", SBX__PERM_METRICS, SBX__RF_OPERATOR, SBX__BODY_NONE,
     sbx__metrics_h,
     "Prometheus metrics (operator token from metrics_token_file only)", 200},
};
#undef P
const size_t sbx__nroutes = sizeof sbx__routes / sizeof sbx__routes[0];

/* The mutating routes that append no audit row, and why (read by the
 * test that walks the table: every other mutating route must append one). */
static const struct {
  const char *method, *pattern, *why;
} NO_AUDIT[] = {
    {"POST", "/api/v1/worker/jobs/{job}/heartbeat",
     "progress and lease only, no state change (claim and finish are "
     "audited): a row every few seconds per shard would flood the chain"},
};

size_t sbx_server_route_count(void) {
  return sbx__nroutes;
}

sbx_route_info sbx_server_route(size_t i) {
  sbx_route_info ri = {NULL, NULL, NULL, NULL, NULL};
  if (i < sbx__nroutes) {
    ri.method = sbx__routes[i].method;
    ri.pattern = sbx__routes[i].pattern;
    ri.permission = sbx__route_perm_name(&sbx__routes[i]);
    ri.summary = sbx__routes[i].summary;
    for (size_t k = 0; k < sizeof NO_AUDIT / sizeof NO_AUDIT[0]; k++)
      if (!strcmp(ri.method, NO_AUDIT[k].method) &&
          !strcmp(ri.pattern, NO_AUDIT[k].pattern))
        ri.no_audit = NO_AUDIT[k].why;
  }
  return ri;
}

char *sbx_server_openapi(void) {
  return sbx__openapi_json(sbx__routes, sbx__nroutes);
}
