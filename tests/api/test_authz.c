/*
 * test_authz.c - sbx__authorize without a network: the credential-type
 * rules of the worker protocol's route flags (WORKER, JOB_TOKEN), a job
 * token's scope (its own job in the path), and the consistency of the flags
 * of every row of the real table (table.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "authz.h"
#include "router.h"
#include "state.h"
#include "table.h"

static sbx_server srv; /* zeroed: no operator token configured */

static int h_none(sbx__req *r) {
  (void)r;
  return 0;
}

/* Runs sbx__authorize on a fresh request with credential kind and auth_rc;
 * returns the HTTP status it set, or 0 when the request may proceed. */
static int decide_job(int flags, sbx__perm perm, int kind, int auth_rc,
                      const char *token_job, const char *path_job) {
  sbx__route rt = {"POST", "/x", perm, flags, SBX__BODY_NONE, h_none, "x", 200};
  sbx__req *r = calloc(1, sizeof *r);
  if (!r)
    return -1;
  r->srv = &srv;
  r->method = "POST";
  r->who.kind = kind;
  snprintf(r->who.job, sizeof r->who.job, "%s", token_job);
  snprintf(r->params[0], sizeof r->params[0], "%s", path_job);
  int refused = sbx__authorize(r, &rt, auth_rc);
  int status = refused ? r->status : 0;
  if (r->resp_owned)
    free(r->resp);
  free(r);
  return status;
}

/* The same with a job token for job j1 on a path naming j1. */
static int decide(int flags, sbx__perm perm, int kind, int auth_rc) {
  return decide_job(flags, perm, kind, auth_rc, "j1", "j1");
}

TEST(worker_and_job_token_routes_take_their_own_credential) {
  const int W = SBX__RF_WORKER, J = SBX__RF_JOB_TOKEN;
  /* no credential, a bad one */
  CHECK_EQ_INT(decide(W, SBX__PERM_NONE, SBX__CRED_NONE, 0), 401);
  CHECK_EQ_INT(decide(J, SBX__PERM_NONE, SBX__CRED_NONE, 0), 401);
  CHECK_EQ_INT(decide(W, SBX__PERM_NONE, SBX__CRED_NONE, SBX_EAUTH), 401);
  CHECK_EQ_INT(decide(J, SBX__PERM_NONE, SBX__CRED_NONE, SBX_EEXPIRED), 401);
  /* tenant credentials never open them, whatever their role */
  static const int tenant_kinds[] = {SBX__CRED_APIKEY, SBX__CRED_JWT,
                                     SBX__CRED_SESSION};
  for (int i = 0; i < 3; i++) {
    CHECK_EQ_INT(decide(W, SBX__PERM_NONE, tenant_kinds[i], 0), 403);
    CHECK_EQ_INT(decide(J, SBX__PERM_NONE, tenant_kinds[i], 0), 403);
  }
  /* each worker credential opens its own kind of route only */
  CHECK_EQ_INT(decide(W, SBX__PERM_NONE, SBX__CRED_WORKER, 0), 0);
  CHECK_EQ_INT(decide(J, SBX__PERM_NONE, SBX__CRED_JOB_TOKEN, 0), 0);
  CHECK_EQ_INT(decide(W, SBX__PERM_NONE, SBX__CRED_JOB_TOKEN, 0), 403);
  CHECK_EQ_INT(decide(J, SBX__PERM_NONE, SBX__CRED_WORKER, 0), 403);
  /* a job token opens its own job's routes only */
  CHECK_EQ_INT(
      decide_job(J, SBX__PERM_NONE, SBX__CRED_JOB_TOKEN, 0, "j1", "j2"), 403);
  CHECK_EQ_INT(decide_job(J, SBX__PERM_NONE, SBX__CRED_JOB_TOKEN, 0, "", ""),
               403);
  /* and nothing else: tenant routes, project routes, the operator's */
  CHECK_EQ_INT(decide(0, SBX__PERM_MODEL_READ, SBX__CRED_WORKER, 0), 403);
  CHECK_EQ_INT(
      decide(SBX__RF_PROJECT, SBX__PERM_JOB_READ, SBX__CRED_JOB_TOKEN, 0), 403);
  CHECK_EQ_INT(decide(0, SBX__PERM_AUTHENTICATED, SBX__CRED_JOB_TOKEN, 0), 403);
  CHECK_EQ_INT(decide(SBX__RF_OPERATOR, SBX__PERM_METRICS, SBX__CRED_WORKER, 0),
               403);
  /* public routes need nothing; the operator's route without its token
   * and without a credential is 401 */
  CHECK_EQ_INT(decide(SBX__RF_PUBLIC, SBX__PERM_NONE, SBX__CRED_NONE, 0), 0);
  CHECK_EQ_INT(decide(SBX__RF_OPERATOR, SBX__PERM_METRICS, SBX__CRED_NONE, 0),
               401);
}

/* Every row of the real table: one audience at most, PROJECT exactly on
 * the project routes, permission NONE exactly where a flag decides, the
 * body flags only where they mean something. */
TEST(table_flags_consistent) {
  const char *proj = "/api/v1/projects/{project}";
  CHECK(sbx__nroutes > 30);
  for (size_t i = 0; i < sbx__nroutes; i++) {
    const sbx__route *rt = &sbx__routes[i];
    int aud = rt->flags & (SBX__RF_PUBLIC | SBX__RF_OPERATOR | SBX__RF_WORKER |
                           SBX__RF_JOB_TOKEN);
    CHECK((aud & (aud - 1)) == 0); /* at most one bit */
    int is_proj = !strncmp(rt->pattern, proj, strlen(proj));
    CHECK(!!(rt->flags & SBX__RF_PROJECT) == is_proj);
    int flag_decides =
        rt->flags & (SBX__RF_PUBLIC | SBX__RF_WORKER | SBX__RF_JOB_TOKEN);
    CHECK((rt->perm == SBX__PERM_NONE) == (flag_decides != 0));
    if (rt->flags & SBX__RF_BODY_OPTIONAL)
      CHECK(rt->body == SBX__BODY_JSON);
    if (rt->flags & SBX__RF_LOGIN)
      CHECK(rt->flags & SBX__RF_PUBLIC);
    CHECK(rt->fn != NULL && rt->summary && rt->summary[0]);
    if (harness_failed_checks)
      fprintf(stderr, "row %zu: %s %s\n", i, rt->method, rt->pattern);
  }
}

int main(void) {
  RUN(worker_and_job_token_routes_take_their_own_credential);
  RUN(table_flags_consistent);
  return harness_report();
}
