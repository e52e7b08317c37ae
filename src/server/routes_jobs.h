/*
 * routes_jobs.h - handlers: jobs (records only; execution is the worker's,
 * issue 11). Each answers through reply.h and returns 0; authorization is done
 * before (authz.c) from the route's row in table.c.
 */
#ifndef SBX_SERVER_ROUTES_JOBS_H
#define SBX_SERVER_ROUTES_JOBS_H

#include "req.h"

int sbx__h_jobs_list(sbx__req *r);
int sbx__h_job_create(sbx__req *r);
int sbx__h_job_get(sbx__req *r);
int sbx__h_job_cancel(sbx__req *r);
int sbx__h_job_results(sbx__req *r);

#endif
