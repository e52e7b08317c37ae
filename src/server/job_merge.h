/*
 * job_merge.h - the results of a sharded job: when its last shard
 * succeeds, the server merges the shards' result documents and adversarial
 * examples (sbx/result_merge.h) into the job's results.
 */
#ifndef SBX_SERVER_JOB_MERGE_H
#define SBX_SERVER_JOB_MERGE_H

#include "req.h"
#include "sbx/jobs.h"

/* Caps on the result files a worker uploads (per file). */
#define SBX__RESULT_JSON_MAX ((int64_t)64 << 20) /* result.json */
#define SBX__RESULT_NPY_MAX ((int64_t)1 << 30)   /* adversarial.npy */
#define SBX__RESULT_PNG_MAX ((int64_t)4 << 20)   /* gallery-{i}.png */

/*
 * Merges the shards of job j (all succeeded) of tenant: reads each shard's
 * result.json and adversarial.npy from the store (decrypted), merges them,
 * stores the merged files encrypted as "<job>.result.json" and
 * "<job>.adversarial.npy" (kind "result"; when the first exists already,
 * another finish of the job is merging it and this one returns 0) and
 * sets them as the
 * job's results with the gallery of the shards (up to 16 strips, in shard
 * order). A merge failure fails the job (succeeded -> failed) with a
 * message naming the shard and the field. Returns 0 or the error.
 */
int sbx__job_merge_results(sbx__req *r, const char *tenant, const sbx_job *j);

#endif
