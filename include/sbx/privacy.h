/*
 * sbx/privacy.h - retention of a tenant's data and the audit chain's purge
 * checkpoint (src/store/privacy.c). docs/security.md ("Privacy rights").
 *
 * Retention: per tenant, how long finished jobs (with their results,
 * adversarial examples, galleries and sandbox records) and audit rows are
 * kept. A purge deletes what is older; the server runs it periodically.
 *
 * Purging the oldest audit rows keeps the chain provable: the purge records
 * a checkpoint (the seq and hash of the last purged row) and appends an
 * audit row "audit.purge" that names it, inside the chain. Verification
 * (sbx_meta_audit_check, sbx_meta_audit_verify) starts from the checkpoint
 * and fails unless the chain's newest "audit.purge" row names exactly that
 * checkpoint, so moving the checkpoint to hide rows is detected too.
 *
 * All functions return 0 (SBX_OK) or a negative sbx_status.
 */
#ifndef SBX_PRIVACY_H
#define SBX_PRIVACY_H

#include <stdint.h>

#include "sbx/meta.h"

/* The action of the audit row a purge of audit rows appends; its target is
 * "through=<seq> hash=<64 hex>". */
#define SBX_AUDIT_PURGE_ACTION "audit.purge"

typedef struct sbx_retention {
  int64_t jobs_s;  /* finished jobs older than this (by finish time) are
                      deleted with their results; 0: kept forever */
  int64_t audit_s; /* audit rows older than this are deleted; 0: forever */
  int64_t updated_at;
} sbx_retention;

/* The tenant's retention; all zeros when never set. */
int sbx_meta_retention_get(sbx_meta *m, const char *tenant_id,
                           sbx_retention *out);
/* Sets it (negative values are SBX_EINVAL). */
int sbx_meta_retention_set(sbx_meta *m, const char *tenant_id,
                           const sbx_retention *r);

/* The purge checkpoint of the tenant's chain: *seq 0 and a zero hash when
 * no audit row was ever purged. */
int sbx_meta_audit_base(sbx_meta *m, const char *tenant_id, int64_t *seq,
                        uint8_t hash[SBX_SHA256_LEN]);

/* Deletes the tenant's oldest audit rows with ts < before_ts (a prefix of
 * the chain; the newest row is never deleted), records the checkpoint and
 * appends the "audit.purge" row (actor "system", time now) in the same
 * transaction.
 * *purged (may be NULL) receives the number of rows deleted (0: nothing
 * was old enough; then nothing is written). On error nothing changed. */
int sbx_meta_audit_purge(sbx_meta *m, const char *tenant_id, int64_t before_ts,
                         int64_t now, int64_t *purged);

/* Calls fn with the id and project of up to limit finished jobs of the
 * tenant (succeeded, failed, cancelled, timed_out) that finished before
 * before_ts, oldest first. A non-zero return from fn stops the walk. */
int sbx_meta_jobs_expired(sbx_meta *m, const char *tenant_id, int64_t before_ts,
                          int limit,
                          int (*fn)(void *ctx, const char *job_id,
                                    const char *project_id),
                          void *ctx);

/* Calls fn with the id of every stored object that belongs to the job (its
 * results, adversarial examples, galleries, sandbox records: kinds
 * "result" and "jobinfo" named "<job>.<...>" in the job's project). */
int sbx_meta_job_objects(sbx_meta *m, const char *tenant_id,
                         const char *project_id, const char *job_id,
                         int (*fn)(void *ctx, const char *object_id),
                         void *ctx);

/* Deletes the job's rows (job, shards, events). Its objects must be
 * deleted first (sbx_meta_job_objects, sbx_store_delete). SBX_ENOTFOUND
 * when there is no such job. */
int sbx_meta_job_delete(sbx_meta *m, const char *tenant_id, const char *job_id);

#endif
