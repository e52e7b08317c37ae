/*
 * sbx/jobs.h - the job queue in the metadata store (issue 11: lifecycle,
 * fair-share claim with leases, job tokens, worker tokens, limits), on both
 * backends of sbx/meta.h. Design and rules: docs/jobs.md.
 *
 * A job is a record (spec JSON, model, dataset, limits) split into K shards,
 * each a contiguous slice of samples that a worker claims and runs on its
 * own. States, for jobs and shards alike:
 *
 *   queued -> running -> succeeded | failed | cancelled | timed_out
 *   queued -> cancelled                (cancel before any shard ran)
 *   running(shard) -> queued           (lease lost, attempts left)
 *
 * Every transition is a row of job_events (time, shard or -1 for the job,
 * from, to, reason). A failed job always carries a message.
 *
 * Two layers:
 * - sbx_meta_job_* / sbx_meta_worker_token_*: the SQL, on an sbx_meta.
 *   Tokens are passed in as keyed hashes (like API keys: the caller holds
 *   the pepper, see sbx_store_keyed_hash), never in clear.
 * - sbx_store_job_* / sbx_store_worker_token_*: the same calls on an
 *   sbx_store taking and returning token strings; they generate tokens
 *   (CSPRNG), hash them with the store's pepper and call the meta layer.
 *   The server uses these.
 *
 * Tenant scoping: every call that names a job takes the tenant id.
 * Exceptions, by design: sbx_meta_job_claim (a worker serves every tenant),
 * the job-token calls (the token identifies tenant, job and shard) and
 * sbx_meta_job_requeue_expired (housekeeping); worker tokens are
 * deployment-wide.
 *
 * Times are the caller's `now` in Unix seconds (leases, events, limits).
 * Thread safety and error contract as in sbx/meta.h: one handle per thread;
 * 0 or a negative sbx_status; on error nothing is changed (each call is one
 * transaction) and output structs are zeroed.
 */
#ifndef SBX_JOBS_H
#define SBX_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/meta.h"

#define SBX_JOB_MSG_MAX 512          /* messages, reasons */
#define SBX_JOB_PHASE_MAX 64         /* progress phase / current attack */
#define SBX_JOB_SHARDS_MAX 256       /* hard cap on shards per job */
#define SBX_JOB_GALLERY_MAX 16       /* gallery PNG object ids per result */
#define SBX_JOB_SPEC_MAX (64 * 1024) /* spec JSON bytes, NUL excluded */
#define SBX_TOKEN_MAX 160            /* worker / job token strings, with NUL */
#define SBX_SYS_TENANT "_sys"        /* limits row: deployment defaults */

typedef enum sbx_job_state {
  SBX_JOB_QUEUED = 0,
  SBX_JOB_RUNNING = 1,
  SBX_JOB_SUCCEEDED = 2,
  SBX_JOB_FAILED = 3,
  SBX_JOB_CANCELLED = 4,
  SBX_JOB_TIMED_OUT = 5
} sbx_job_state;

/* "queued", "running", ... ; "unknown" for anything else. Static. */
const char *sbx_job_state_name(int64_t state);
/* The state named s, or -1. */
int sbx_job_state_parse(const char *s);
/* 1 for succeeded, failed, cancelled, timed_out. */
int sbx_job_state_terminal(int64_t state);

/* ---- limits ---- */

/* Per-job limits. In sbx_job_new, 0 means "the tenant default". */
typedef struct sbx_job_limits {
  int64_t wall_seconds; /* per shard attempt */
  int64_t memory_bytes; /* per runner */
  int64_t samples;      /* samples evaluated; 0 = all (1 shard only) */
  int64_t shards;       /* 1..SBX_JOB_SHARDS_MAX, <= samples */
} sbx_job_limits;

/* Tenant defaults and caps, set by an Admin. In a stored row 0 means
 * "inherit" (tenant -> the "_sys" row -> built-ins) and -1 "none" (no
 * default sample count / no concurrency quota). Effective values (what
 * sbx_meta_job_limits_get returns with effective = 1) are > 0 except
 * default_samples 0 = all samples and max_concurrency 0 = unlimited.
 * Built-ins: wall 3600 s default / 86400 s cap, memory 2 GiB / 16 GiB,
 * samples all / 1000000, shards 64 cap, concurrency unlimited. A default
 * above its cap is lowered to the cap. */
typedef struct sbx_job_limit_set {
  int64_t default_wall_seconds, max_wall_seconds;
  int64_t default_memory_bytes, max_memory_bytes;
  int64_t default_samples, max_samples;
  int64_t max_shards;
  int64_t max_concurrency; /* running shards of the tenant at once */
} sbx_job_limit_set;

/* Upserts the row of tenant_id ("_sys" for the deployment). SBX_EINVAL for
 * values < -1 or -1 where "none" makes no sense (walls, memory, caps of
 * samples and shards). */
int sbx_meta_job_limits_set(sbx_meta *m, const char *tenant_id,
                            const sbx_job_limit_set *l, int64_t now);
/* effective = 0: the stored row (all 0 when none); 1: merged as above. */
int sbx_meta_job_limits_get(sbx_meta *m, const char *tenant_id, int effective,
                            sbx_job_limit_set *out);

/* ---- jobs ---- */

typedef struct sbx_job_new {
  const char *id;         /* unique per tenant (sbx_id_valid) */
  const char *project_id; /* sbx_id_valid */
  const char *model_id;   /* object ids (not checked here) */
  const char *dataset_id;
  const char *kind;      /* "attack", "evaluation", ...: an id, < KIND_MAX */
  const char *spec;      /* JSON text (not parsed here), copied */
  sbx_job_limits limits; /* 0 fields: the tenant default */
  int64_t max_attempts;  /* claims per shard before "worker lost"; 0 = 3 */
  int clamp;             /* 1: lower values above a cap to the cap;
                            0: refuse them (SBX_ELIMIT) */
} sbx_job_new;

typedef struct sbx_job_progress {
  double fraction;               /* 0..1 (stored in millionths) */
  char phase[SBX_JOB_PHASE_MAX]; /* phase / current attack, "" none */
  double robust_accuracy;        /* running robust accuracy, < 0 unknown */
  int64_t eta_seconds;           /* < 0 unknown */
} sbx_job_progress;

/* Result object ids (the objects are stored encrypted by sbx_store_put). */
typedef struct sbx_job_results {
  char result_id[SBX_ID_MAX]; /* result JSON, "" none */
  char adv_id[SBX_ID_MAX];    /* adversarial examples NPY, "" none */
  int n_gallery;              /* 0..SBX_JOB_GALLERY_MAX */
  char gallery[SBX_JOB_GALLERY_MAX][SBX_ID_MAX]; /* PNG strips */
} sbx_job_results;

typedef struct sbx_job {
  char id[SBX_ID_MAX];
  char project_id[SBX_ID_MAX];
  char model_id[SBX_ID_MAX];
  char dataset_id[SBX_ID_MAX];
  char kind[SBX_KIND_MAX];
  int64_t state;                 /* sbx_job_state */
  int64_t cancel_requested;      /* 1 user cancel, 2 stop: a sibling shard
                                    failed or timed out */
  char message[SBX_JOB_MSG_MAX]; /* reason of the last transition;
                                    failed: what went wrong */
  sbx_job_limits limits;         /* effective */
  int64_t max_attempts;
  int64_t shards_done; /* shards succeeded */
  int64_t created_at, started_at, finished_at, updated_at; /* 0 = not yet */
  sbx_job_progress progress; /* over all shards (sample-weighted) */
  sbx_job_results results;   /* 1 shard: the shard's; else set by the
                                server after merging */
  int64_t seq;               /* creation order (microsecond stamp) */
} sbx_job;

/* Creates a queued job and its shards: shard k covers samples
 * [k*n/K, (k+1)*n/K) of n = limits.samples. Limits: 0 fields take the
 * tenant's defaults; a value above its cap is refused with SBX_ELIMIT (or
 * clamped, see clamp) and `why` (may be NULL, SBX_JOB_MSG_MAX bytes) names
 * the limit: "wall_seconds 7200 exceeds the tenant cap 3600". Other
 * failures: SBX_EINVAL (bad id/kind/spec, shards > samples, several shards
 * with samples "all"; why says which), SBX_EEXIST (id taken),
 * SBX_ENOTFOUND (no such tenant), SBX_EPERM (tenant frozen or shredded).
 * out (may be NULL) receives the job as stored. */
int sbx_meta_job_create(sbx_meta *m, const char *tenant_id,
                        const sbx_job_new *j, int64_t now, sbx_job *out,
                        char *why);
/* project_id NULL: any project; otherwise a job of another project is
 * SBX_ENOTFOUND. */
int sbx_meta_job_get(sbx_meta *m, const char *tenant_id, const char *project_id,
                     const char *job_id, sbx_job *out);
/* Copies the spec JSON into out (cap bytes with the NUL; SBX_ELIMIT when
 * too small); *len (may be NULL) receives its length. */
int sbx_meta_job_spec(sbx_meta *m, const char *tenant_id, const char *job_id,
                      char *out, size_t cap, size_t *len);
/* Newest first (creation order, ties by id). after_id NULL or "": from the
 * newest; else the page after that job (keyset: exact under concurrent
 * inserts). next (may be NULL, SBX_ID_MAX bytes) receives the id to pass
 * as after_id for the following page, "" when this page was the last.
 * limit 1..1000. state -1: all states. fn returns 0 to go on, non-zero to
 * stop (a negative value is returned). project_id NULL: all projects.
 * Listed jobs carry no progress (progress is all zero, robust accuracy and
 * ETA -1): sbx_meta_job_get aggregates it from the shards. */
int sbx_meta_job_list(sbx_meta *m, const char *tenant_id,
                      const char *project_id, int64_t state,
                      const char *after_id, int limit,
                      int (*fn)(void *ctx, const sbx_job *j), void *ctx,
                      char *next);
/* Cancel, in every state. queued: cancelled at once. running: cancel
 * requested (queued shards are cancelled at once; running ones see it on
 * their next heartbeat and end with sbx_meta_job_finish(..CANCELLED..), or
 * on lease loss); the job is cancelled when its last shard stops. Already
 * finished: nothing changes, returns 0. reason (NULL: "cancelled by user")
 * is recorded. *state (may be NULL) receives the job's state afterwards. */
int sbx_meta_job_cancel(sbx_meta *m, const char *tenant_id,
                        const char *project_id, const char *job_id, int64_t now,
                        const char *reason, int64_t *state);
/* Job-level results (the server's merge of a sharded job). */
int sbx_meta_job_set_results(sbx_meta *m, const char *tenant_id,
                             const char *job_id, int64_t now,
                             const sbx_job_results *r);
/* A sharded job whose merge failed: succeeded -> failed with reason (an
 * event records it). SBX_ENOTFOUND when the job is not (or no longer)
 * succeeded. */
int sbx_meta_job_merge_failed(sbx_meta *m, const char *tenant_id,
                              const char *job_id, int64_t now,
                              const char *reason);

typedef struct sbx_job_shard {
  int64_t shard;
  int64_t sample_begin, sample_end; /* [begin, end); 0,0 = all samples */
  int64_t state;
  int64_t attempts; /* claims so far */
  char worker_id[SBX_ID_MAX];
  int64_t lease_expires;           /* while running */
  int64_t started_at, finished_at; /* of the last attempt */
  char message[SBX_JOB_MSG_MAX];
  sbx_job_progress progress;
  sbx_job_results results;
} sbx_job_shard;

/* Shards of a job in order. fn as in sbx_meta_job_list. */
int sbx_meta_job_shards(sbx_meta *m, const char *tenant_id, const char *job_id,
                        int (*fn)(void *ctx, const sbx_job_shard *s),
                        void *ctx);

typedef struct sbx_job_event {
  int64_t seq; /* 1, 2, ... per job */
  int64_t ts;
  int64_t shard;                /* -1: the job itself */
  int64_t from_state, to_state; /* from -1: creation; from == to: a note
                                   (cancel requested) */
  char reason[SBX_JOB_MSG_MAX];
} sbx_job_event;

/* Events with seq > after_seq, in order (SSE: poll with the last seq). */
int sbx_meta_job_events(sbx_meta *m, const char *tenant_id, const char *job_id,
                        int64_t after_seq,
                        int (*fn)(void *ctx, const sbx_job_event *e),
                        void *ctx);

/* ---- the worker side: claim, heartbeat, finish ---- */

typedef struct sbx_job_claim {
  char tenant_id[SBX_ID_MAX];
  char job_id[SBX_ID_MAX];
  char project_id[SBX_ID_MAX];
  char model_id[SBX_ID_MAX];
  char dataset_id[SBX_ID_MAX];
  char kind[SBX_KIND_MAX];
  int64_t shard, shards;
  int64_t sample_begin, sample_end;
  int64_t attempt; /* 1 on the first claim of this shard */
  sbx_job_limits limits;
  int64_t lease_expires;
  char token[SBX_TOKEN_MAX]; /* the job token: sbx_store_job_claim only
                                ("" from sbx_meta_job_claim) */
} sbx_job_claim;

/* Atomically takes the next runnable shard for worker_id and leases it
 * until now + lease_seconds (1..3600), binding it to token_hash (the keyed
 * hash of a fresh job token; see sbx_store_job_claim).
 * Order (fair share): among active tenants with queued shards and below
 * their concurrency quota, the one with the fewest running shards, ties
 * by least recently served; FIFO within a tenant. Leases expired by now are
 * re-queued first (as sbx_meta_job_requeue_expired, at most 64 per call).
 * PostgreSQL: FOR UPDATE SKIP LOCKED, so concurrent claimers never wait on
 * each other's shard; one statement (plus a count in a transaction when
 * the tenant has a quota). SQLite: one BEGIN IMMEDIATE transaction.
 * SBX_ENOTFOUND: nothing runnable. */
int sbx_meta_job_claim(sbx_meta *m, const char *worker_id,
                       int64_t lease_seconds, int64_t now,
                       const uint8_t token_hash[SBX_SHA256_LEN],
                       sbx_job_claim *out);

/* What a job token may touch. */
typedef struct sbx_job_scope {
  char tenant_id[SBX_ID_MAX];
  char job_id[SBX_ID_MAX];
  char project_id[SBX_ID_MAX];
  char model_id[SBX_ID_MAX];
  char dataset_id[SBX_ID_MAX];
  int64_t shard, sample_begin, sample_end;
  int64_t lease_expires;
} sbx_job_scope;

/* SBX_EAUTH: no shard holds this token (never issued, or superseded by a
 * newer claim); SBX_EEXPIRED: its shard ended or its lease ran out;
 * SBX_EPERM: the tenant is frozen or shredded. out (may be NULL) receives
 * the scope. */
int sbx_meta_job_token_verify(sbx_meta *m,
                              const uint8_t token_hash[SBX_SHA256_LEN],
                              int64_t now, sbx_job_scope *out);

enum {
  SBX_JOB_GO_ON = 0,       /* keep going */
  SBX_JOB_STOP_CANCEL = 1, /* cancel requested (or a sibling failed, or the
                              tenant was frozen): stop, finish CANCELLED */
  SBX_JOB_STOP_TIMEOUT = 2 /* wall time used up: stop, finish TIMED_OUT */
};

/* Extends the lease to now + lease_seconds, stores progress (NULL: keep)
 * and sets *stop (SBX_JOB_GO_ON / _STOP_CANCEL / _STOP_TIMEOUT).
 * SBX_EAUTH / SBX_EEXPIRED as sbx_meta_job_token_verify: a dead token
 * cannot revive a lease. A frozen or shredded tenant's shards are told to
 * stop (_STOP_CANCEL); verify the token first on every worker request (the
 * scope), heartbeat and finish do not refuse them. */
int sbx_meta_job_heartbeat(sbx_meta *m,
                           const uint8_t token_hash[SBX_SHA256_LEN],
                           int64_t now, int64_t lease_seconds,
                           const sbx_job_progress *p, int *stop);
/* Ends the token's shard: state SUCCEEDED, FAILED (message required: what
 * a user can act on), CANCELLED or TIMED_OUT (message NULL: a default).
 * results (may be NULL) are the shard's result object ids. The token dies.
 * When it was the job's last shard the job ends too: succeeded when all
 * shards did, else failed / timed_out / cancelled (in that order of
 * precedence); a failed or timed-out shard cancels the job's queued shards
 * and asks running ones to stop. Errors as sbx_meta_job_token_verify: a
 * worker whose lease was lost (and maybe taken over) cannot finish. */
int sbx_meta_job_finish(sbx_meta *m, const uint8_t token_hash[SBX_SHA256_LEN],
                        int64_t now, int64_t state, const char *message,
                        const sbx_job_results *results);
/* Running shards whose lease expired before now (worker killed, hung,
 * partitioned): re-queued with their place in line, or, after max_attempts
 * claims, failed with "worker lost N times"; a shard of a job being
 * cancelled is cancelled instead. Counts (may be NULL) are added to. */
int sbx_meta_job_requeue_expired(sbx_meta *m, int64_t now, int64_t *requeued,
                                 int64_t *failed);

/* ---- worker tokens (deployment-wide, created by an operator) ---- */

typedef struct sbx_worker_token {
  char id[SBX_ID_MAX];                 /* public part of "wt_<id>.<secret>" */
  char name[SBX_NAME_MAX];             /* operator's label */
  uint8_t secret_hash[SBX_SHA256_LEN]; /* (hash) keyed hash of the secret */
  int64_t created_at, expires_at;      /* expires_at 0: never */
  int64_t revoked_at, last_used_at;
} sbx_worker_token;

/* Inserts t (id, name, secret_hash, created_at, expires_at). SBX_EEXIST
 * when the id is taken. */
int sbx_meta_worker_token_create(sbx_meta *m, const sbx_worker_token *t);
/* Checks secret_hash against token id in constant time: SBX_EAUTH when
 * unknown or wrong, SBX_EEXPIRED when revoked or expired. Records
 * last_used_at (at most once a minute). out (may be NULL) gets the row. */
int sbx_meta_worker_token_verify(sbx_meta *m, const char *id,
                                 const uint8_t secret_hash[SBX_SHA256_LEN],
                                 int64_t now, sbx_worker_token *out);
/* SBX_ENOTFOUND when unknown or already revoked. */
int sbx_meta_worker_token_revoke(sbx_meta *m, const char *id, int64_t now);
/* In creation order; fn as in sbx_meta_job_list (secret_hash zeroed). */
int sbx_meta_worker_token_list(sbx_meta *m,
                               int (*fn)(void *ctx, const sbx_worker_token *t),
                               void *ctx);

/* ---- the same on an sbx_store, with token strings ---- */
struct sbx_store;

/* Makes "wt_<16 hex id>.<64 hex secret>" (shown once: the store keeps
 * only HMAC(pepper, "worker-token" | secret)). token: SBX_TOKEN_MAX
 * bytes, wiped on error. out (may be NULL) receives the row. */
int sbx_store_worker_token_create(struct sbx_store *st, const char *name,
                                  int64_t expires_at, int64_t now, char *token,
                                  sbx_worker_token *out);
/* Parses and checks a presented worker token (errors as the meta call;
 * malformed: SBX_EAUTH). */
int sbx_store_worker_token_verify(struct sbx_store *st, const char *token,
                                  int64_t now, sbx_worker_token *out);
/* sbx_meta_job_claim with a fresh job token "jt_<64 hex>" in out->token
 * (the store keeps HMAC(pepper, "job-token" | secret)). */
int sbx_store_job_claim(struct sbx_store *st, const char *worker_id,
                        int64_t lease_seconds, int64_t now, sbx_job_claim *out);
int sbx_store_job_token_verify(struct sbx_store *st, const char *token,
                               int64_t now, sbx_job_scope *out);
int sbx_store_job_heartbeat(struct sbx_store *st, const char *token,
                            int64_t now, int64_t lease_seconds,
                            const sbx_job_progress *p, int *stop);
int sbx_store_job_finish(struct sbx_store *st, const char *token, int64_t now,
                         int64_t state, const char *message,
                         const sbx_job_results *results);

#endif
