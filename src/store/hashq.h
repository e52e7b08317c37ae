/*
 * hashq.h - private: a SHA-256 worker thread fed with a bounded FIFO of
 * segments, so the plaintext hash of a put/get runs on one core while the
 * calling thread encrypts/decrypts and does the I/O on the other
 * (docs/storage.md, "Pipeline"). Used by store.c only.
 *
 * Segments are not copied: a pushed segment must stay unchanged (and
 * allocated) until sbx_hashq_wait() for its sequence number or
 * sbx_hashq_stop() returned. The hash is the plain SHA-256 of the
 * concatenation of the segments in push order (after whatever the context
 * already absorbed), i.e. what `sha256sum` prints.
 *
 * One producer thread per queue (the handle is not thread-safe otherwise).
 */
#ifndef SBX_STORE_HASHQ_H
#define SBX_STORE_HASHQ_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/crypto.h"

/* Plaintext below this size is hashed inline: a thread is not worth it. */
#define SBX_HASHQ_MIN_BYTES ((size_t)1 << 20)
/* Most segments queued or in progress at once (push blocks beyond). */
#define SBX_HASHQ_DEPTH 16

typedef struct sbx_hashq sbx_hashq;

/* Starts the worker thread, which updates *ctx (already initialised; it may
 * have absorbed a prefix inline) until sbx_hashq_stop. The caller must not
 * touch *ctx in between. SBX_ENOMEM / SBX_EIO when no thread can be made
 * (then nothing was started and the caller may go on hashing inline). */
int sbx_hashq_start(sbx_sha256_ctx *ctx, sbx_hashq **out);
/* Queues p[0..n) and returns its sequence number (1, 2, ...) in *seq;
 * blocks while SBX_HASHQ_DEPTH segments are pending. n == 0 is allowed. */
int sbx_hashq_push(sbx_hashq *q, const void *p, size_t n, uint64_t *seq);
/* Blocks until every segment with a sequence number <= seq is hashed
 * (seq 0: returns at once). Returns the worker's sticky error, if any. */
int sbx_hashq_wait(sbx_hashq *q, uint64_t seq);
/* Sequence number of the last pushed segment (0 if none). */
uint64_t sbx_hashq_pushed(const sbx_hashq *q);
/* drain = 1: hashes everything pushed, then stops; drain = 0: drops the
 * segments not started yet (error paths). Joins the thread and frees q; on
 * return no segment is referenced any more and *ctx is the caller's again.
 * Returns the worker's error (0 when every segment was hashed; drain = 0
 * always returns 0). NULL is a no-op returning 0. */
int sbx_hashq_stop(sbx_hashq *q, int drain);

#endif
