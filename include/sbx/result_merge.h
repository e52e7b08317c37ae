/*
 * sbx/result_merge.h - merging the results of a sharded job.
 *
 * A job with `shards: K` runs as K contiguous slices of the samples; each
 * shard's runner writes its own aisbx.result.v1 document (docs/
 * results-schema.md, with data.offset) and its adversarial examples as
 * NPY. These functions turn the K shard outputs, in shard order, into the
 * bytes the unsharded run writes with the same seed: per-sample arrays
 * concatenated, counts summed, accuracies, norm statistics and query totals
 * recomputed from the per-sample arrays exactly as src/report/report.c
 * computes and formats them. Timing fields are merged (the longest wall
 * time, summed per-attack times) and are not expected to match.
 *
 * The inputs come from sandboxed runners and are UNTRUSTED: sizes are
 * capped, every field is type-checked, the shards must agree on everything
 * but their slice (model, data, attack, parameters, eps sweep...), and
 * their counts must agree with their own per-sample arrays. Everything
 * between `data` and `clean_accuracy` (attack, params, the optional input
 * domain object `input` of report.c) is compared and copied as bytes.
 *
 * Library target sbx_jobspec (jansson; never the engine).
 */
#ifndef SBX_RESULT_MERGE_H
#define SBX_RESULT_MERGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBX_MERGE_MAX_SHARDS 256
#define SBX_MERGE_MAX_DOC ((size_t)64 << 20)     /* one shard's result.json */
#define SBX_MERGE_MAX_SAMPLES ((int64_t)1 << 22) /* all shards together */
#define SBX_MERGE_MAX_NPY ((size_t)1 << 30) /* the merged adversarial.npy */

/* What a merge covered: samples [offset, offset + n) of the data. */
typedef struct sbx_merge_span {
  int64_t offset, n;
} sbx_merge_span;

/*
 * Merges k (1..SBX_MERGE_MAX_SHARDS) shard result documents docs[i] of
 * lens[i] bytes (shard order: shard i + 1 starts where shard i ends) into
 * the unsharded run's document. On success returns 0 and *out (malloc'd,
 * the caller frees it; NUL-terminated, *out_len bytes without the NUL).
 * On error returns SBX_EINVAL (a malformed or inconsistent shard),
 * SBX_ELIMIT (a cap exceeded) or SBX_ENOMEM, with err "shard <i>: <what>"
 * (errlen > 0); *out is then NULL. span (may be NULL) receives the
 * samples the merged document covers, for the caller to check against the
 * slices it handed out.
 */
int sbx_result_merge(const char *const *docs, const size_t *lens, int k,
                     char **out, size_t *out_len, sbx_merge_span *span,
                     char *err, size_t errlen);

/*
 * Concatenates k NPY v1.0 float32 C-order arrays (the runner's
 * adversarial.npy of each shard, in shard order) along the first axis:
 * the trailing shapes must agree; the header is rewritten as the runner
 * writes it. Each input's header must be exactly the runner's for its
 * shape and its size exactly header + data. Returns 0 with *out
 * (malloc'd, caller frees) of *out_len bytes and *rows (may be NULL) the
 * merged first dimension, or SBX_EINVAL / SBX_ELIMIT / SBX_ENOMEM with
 * err; *out is then NULL.
 */
int sbx_npy_merge(const unsigned char *const *files, const size_t *lens, int k,
                  unsigned char **out, size_t *out_len, int64_t *rows,
                  char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
