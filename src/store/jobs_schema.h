/*
 * jobs_schema.h - private: the job queue's migrations (versions 30..),
 * spliced into meta.c's MIGRATIONS list as entries. Append only; never edit
 * an applied entry (meta.c refuses edited migrations by checksum).
 * Tables (docs/jobs.md): jobs, job_shards, job_events, job_sched (per tenant:
 * queued shards, last served), job_limits, worker_tokens.
 */
#ifndef SBX_STORE_JOBS_SCHEMA_H
#define SBX_STORE_JOBS_SCHEMA_H

#define SBX__JOBS_MIGRATIONS                                                   \
  {30, "job queue",                                                            \
   "CREATE TABLE jobs ("                                                       \
   " tenant_id TEXT NOT NULL REFERENCES tenants(id),"                          \
   " id TEXT NOT NULL,"                                                        \
   " project_id TEXT NOT NULL,"                                                \
   " model_id TEXT NOT NULL,"                                                  \
   " dataset_id TEXT NOT NULL,"                                                \
   " kind TEXT NOT NULL,"                                                      \
   " spec TEXT NOT NULL,"                                                      \
   " state BIGINT NOT NULL DEFAULT 0,"                                         \
   " message TEXT NOT NULL DEFAULT '',"                                        \
   " cancel_requested BIGINT NOT NULL DEFAULT 0,"                              \
   " cancel_reason TEXT NOT NULL DEFAULT '',"                                  \
   " wall_seconds BIGINT NOT NULL,"                                            \
   " memory_bytes BIGINT NOT NULL,"                                            \
   " samples BIGINT NOT NULL,"                                                 \
   " shards BIGINT NOT NULL,"                                                  \
   " max_attempts BIGINT NOT NULL,"                                            \
   " shards_done BIGINT NOT NULL DEFAULT 0,"                                   \
   " claims BIGINT NOT NULL DEFAULT 0,"                                        \
   " event_seq BIGINT NOT NULL DEFAULT 0,"                                     \
   " seq BIGINT NOT NULL,"                                                     \
   " result_id TEXT NOT NULL DEFAULT '',"                                      \
   " adv_id TEXT NOT NULL DEFAULT '',"                                         \
   " gallery TEXT NOT NULL DEFAULT '',"                                        \
   " created_at BIGINT NOT NULL,"                                              \
   " started_at BIGINT NOT NULL DEFAULT 0,"                                    \
   " finished_at BIGINT NOT NULL DEFAULT 0,"                                   \
   " updated_at BIGINT NOT NULL,"                                              \
   " PRIMARY KEY (tenant_id, id));"                                            \
   "CREATE INDEX jobs_list ON jobs(tenant_id, seq);"                           \
   "CREATE TABLE job_shards ("                                                 \
   " tenant_id TEXT NOT NULL,"                                                 \
   " job_id TEXT NOT NULL,"                                                    \
   " shard BIGINT NOT NULL,"                                                   \
   " sample_begin BIGINT NOT NULL,"                                            \
   " sample_end BIGINT NOT NULL,"                                              \
   " state BIGINT NOT NULL DEFAULT 0,"                                         \
   " qseq BIGINT NOT NULL,"                                                    \
   " attempts BIGINT NOT NULL DEFAULT 0,"                                      \
   " worker_id TEXT NOT NULL DEFAULT '',"                                      \
   " token_hash BLOB,"                                                         \
   " lease_expires BIGINT NOT NULL DEFAULT 0,"                                 \
   " wall_seconds BIGINT NOT NULL,"                                            \
   " started_at BIGINT NOT NULL DEFAULT 0,"                                    \
   " finished_at BIGINT NOT NULL DEFAULT 0,"                                   \
   " progress_ppm BIGINT NOT NULL DEFAULT 0,"                                  \
   " phase TEXT NOT NULL DEFAULT '',"                                          \
   " robust_ppm BIGINT NOT NULL DEFAULT -1,"                                   \
   " eta_seconds BIGINT NOT NULL DEFAULT -1,"                                  \
   " progress_at BIGINT NOT NULL DEFAULT 0,"                                   \
   " message TEXT NOT NULL DEFAULT '',"                                        \
   " result_id TEXT NOT NULL DEFAULT '',"                                      \
   " adv_id TEXT NOT NULL DEFAULT '',"                                         \
   " gallery TEXT NOT NULL DEFAULT '',"                                        \
   " PRIMARY KEY (tenant_id, job_id, shard),"                                  \
   " FOREIGN KEY (tenant_id, job_id) REFERENCES jobs(tenant_id, id));"         \
   "CREATE UNIQUE INDEX job_shards_token ON job_shards(token_hash);"           \
   "CREATE INDEX job_shards_queue ON job_shards(tenant_id, qseq)"              \
   " WHERE state = 0;"                                                         \
   "CREATE INDEX job_shards_lease ON job_shards(lease_expires)"                \
   " WHERE state = 1;"                                                         \
   "CREATE INDEX job_shards_running ON job_shards(tenant_id)"                  \
   " WHERE state = 1;"                                                         \
   "CREATE TABLE job_events ("                                                 \
   " tenant_id TEXT NOT NULL,"                                                 \
   " job_id TEXT NOT NULL,"                                                    \
   " seq BIGINT NOT NULL,"                                                     \
   " ts BIGINT NOT NULL,"                                                      \
   " shard BIGINT NOT NULL,"                                                   \
   " from_state BIGINT NOT NULL,"                                              \
   " to_state BIGINT NOT NULL,"                                                \
   " reason TEXT NOT NULL,"                                                    \
   " PRIMARY KEY (tenant_id, job_id, seq));"                                   \
   "CREATE TABLE job_sched ("                                                  \
   " tenant_id TEXT PRIMARY KEY,"                                              \
   " queued BIGINT NOT NULL DEFAULT 0,"                                        \
   " last_served BIGINT NOT NULL DEFAULT 0);"                                  \
   "CREATE TABLE job_limits ("                                                 \
   " tenant_id TEXT PRIMARY KEY,"                                              \
   " default_wall_seconds BIGINT NOT NULL DEFAULT 0,"                          \
   " max_wall_seconds BIGINT NOT NULL DEFAULT 0,"                              \
   " default_memory_bytes BIGINT NOT NULL DEFAULT 0,"                          \
   " max_memory_bytes BIGINT NOT NULL DEFAULT 0,"                              \
   " default_samples BIGINT NOT NULL DEFAULT 0,"                               \
   " max_samples BIGINT NOT NULL DEFAULT 0,"                                   \
   " max_shards BIGINT NOT NULL DEFAULT 0,"                                    \
   " max_concurrency BIGINT NOT NULL DEFAULT 0,"                               \
   " updated_at BIGINT NOT NULL);"                                             \
   "CREATE TABLE worker_tokens ("                                              \
   " id TEXT PRIMARY KEY,"                                                     \
   " name TEXT NOT NULL,"                                                      \
   " secret_hash BLOB NOT NULL,"                                               \
   " created_at BIGINT NOT NULL,"                                              \
   " expires_at BIGINT NOT NULL,"                                              \
   " revoked_at BIGINT NOT NULL DEFAULT 0,"                                    \
   " last_used_at BIGINT NOT NULL DEFAULT 0);"},

#endif
