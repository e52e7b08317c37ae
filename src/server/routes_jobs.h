/*
 * routes_jobs.h - handlers: the attack catalogue, jobs on the store's job
 * queue (create, get, list, cancel, results, server-sent events) and the
 * tenant's job limits. Each answers through reply.h and returns 0;
 * authorization is done before (authz.c) from the route's row in table.c.
 */
#ifndef SBX_SERVER_ROUTES_JOBS_H
#define SBX_SERVER_ROUTES_JOBS_H

#include <jansson.h>
#include <stddef.h>

#include "job_merge.h" /* the caps on result files */
#include "req.h"
#include "sbx/jobs.h"

int sbx__h_attacks(sbx__req *r);
int sbx__h_jobs_list(sbx__req *r);
int sbx__h_job_create(sbx__req *r);
int sbx__h_job_get(sbx__req *r);
int sbx__h_job_cancel(sbx__req *r);
int sbx__h_job_results(sbx__req *r);
int sbx__h_job_adversarial(sbx__req *r);
int sbx__h_job_gallery(sbx__req *r);
/* text/event-stream of the job's state transitions and progress; ends
 * when the job has ended (event "end"). At most 64 streams at once (503). */
int sbx__h_job_events(sbx__req *r);
int sbx__h_job_limits_get(sbx__req *r);
int sbx__h_job_limits_put(sbx__req *r);

/* "<job>.<shard>.<file>": the name of a shard's stored file (object kind
 * "result", or "jobinfo" for sandbox.json) in the job's project. */
void sbx__job_object_name(const char *job, int64_t shard, const char *file,
                          char out[SBX_NAME_MAX]);
/* A limit set as JSON {default_wall_seconds, ...} (new reference). */
json_t *sbx__job_limits_json(const sbx_job_limit_set *l);
/* Parses such an object (absent fields 0 = inherit). SBX_EINVAL with why
 * (cap bytes) naming the field. */
int sbx__job_limits_parse(json_t *o, sbx_job_limit_set *l, char *why,
                          size_t cap);

#endif
