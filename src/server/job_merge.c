/*
 * job_merge.c - a sharded job's results, merged when its last shard
 * succeeds (job_merge.h). The shards' files are untrusted runner output:
 * sbx_result_merge / sbx_npy_merge check them; the server only moves the
 * bytes between the store and the merge.
 */
#include "job_merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hutil.h"
#include "log.h"
#include "sbx/result_merge.h"
#include "sbx/store.h"
#include "util.h"

typedef struct shard_files {
  int n;
  sbx_job_results res[SBX_MERGE_MAX_SHARDS];
  int64_t begin, end; /* the slices handed out: [begin, end) in all */
  int ok;             /* every shard succeeded */
} shard_files;

static int collect(void *ctx, const sbx_job_shard *s) {
  shard_files *f = ctx;
  if (f->n >= SBX_MERGE_MAX_SHARDS)
    return 1;
  if (s->state != SBX_JOB_SUCCEEDED)
    f->ok = 0;
  if (f->n == 0)
    f->begin = s->sample_begin;
  else if (s->sample_begin != f->end) /* the store makes them contiguous */
    f->ok = 0;
  f->end = s->sample_end;
  f->res[f->n++] = s->results;
  return 0;
}

/* Reads every shard's object named by pick (result or adversarial) into
 * bufs; a missing one is SBX_ENOTFOUND with why set. */
static int read_all(sbx__req *r, const char *tenant, const shard_files *f,
                    int adv, size_t max, void **bufs, size_t *lens, char *why,
                    size_t wl) {
  for (int i = 0; i < f->n; i++) {
    const char *id = adv ? f->res[i].adv_id : f->res[i].result_id;
    if (!id[0]) {
      snprintf(why, wl, "shard %d uploaded no %s", i,
               adv ? "adversarial.npy" : "result.json");
      return SBX_ENOTFOUND;
    }
    int rc = sbx_store_get_alloc(r->st, tenant, id, max, &bufs[i], &lens[i]);
    if (rc) {
      snprintf(why, wl, "shard %d: reading its %s: %s", i,
               adv ? "adversarial.npy" : "result.json", sbx_strerror(rc));
      return rc;
    }
  }
  return 0;
}

/* Stores one merged file under "<job>.<file>" (never replacing: SBX_EEXIST
 * when another merge of the job got there first); its id into id. */
static int store_merged(sbx__req *r, const char *tenant, const sbx_job *j,
                        const char *file, const void *data, size_t n,
                        char id[SBX_ID_MAX]) {
  char name[SBX_NAME_MAX];
  snprintf(name, sizeof name, "%s.%s", j->id, file);
  sbx_put_params pp = {j->project_id, "result", name, 0};
  sbx_object o;
  int rc = sbx_store_put(r->st, tenant, &pp, data, n, &o);
  if (!rc)
    snprintf(id, SBX_ID_MAX, "%s", o.id);
  return rc;
}

int sbx__job_merge_results(sbx__req *r, const char *tenant, const sbx_job *j) {
  shard_files *f = calloc(1, sizeof *f);
  void **bufs = calloc(SBX_MERGE_MAX_SHARDS, sizeof *bufs);
  size_t *lens = calloc(SBX_MERGE_MAX_SHARDS, sizeof *lens);
  char why[SBX_JOB_MSG_MAX] = "";
  void *out = NULL;
  size_t olen = 0;
  sbx_job_results res;
  memset(&res, 0, sizeof res);
  int rc = SBX_ENOMEM;
  if (!f || !bufs || !lens)
    goto done;
  f->ok = 1;
  rc = sbx_meta_job_shards(sbx__meta(r), tenant, j->id, collect, f);
  if (rc)
    goto done;
  if (!f->ok || f->n < 1) { /* not all succeeded: nothing to merge yet */
    rc = 0;
    goto done;
  }
  char err[SBX_JOB_MSG_MAX - 64]; /* room for the prefix */
  /* the result documents */
  if ((rc = read_all(r, tenant, f, 0, SBX__RESULT_JSON_MAX, bufs, lens, why,
                     sizeof why))) {
    goto done;
  }
  sbx_merge_span span;
  rc = sbx_result_merge((const char *const *)bufs, lens, f->n, (char **)&out,
                        &olen, &span, err, sizeof err);
  if (rc) {
    snprintf(why, sizeof why, "merging the shards' results: %s", err);
    goto done;
  }
  /* the shards' documents must cover the samples they were given */
  if (span.offset != f->begin || span.offset + span.n != f->end) {
    snprintf(why, sizeof why,
             "merging the shards' results: they cover samples %lld..%lld, "
             "the shards were given %lld..%lld",
             (long long)span.offset, (long long)(span.offset + span.n - 1),
             (long long)f->begin, (long long)(f->end - 1));
    rc = SBX_EINVAL;
    goto done;
  }
  rc = store_merged(r, tenant, j, "result.json", out, olen, res.result_id);
  if (rc == SBX_EEXIST) { /* two last finishes raced: the first merges */
    rc = 0;
    goto done;
  }
  if (rc)
    goto done;
  free(out);
  out = NULL;
  for (int i = 0; i < f->n; i++) {
    free(bufs[i]);
    bufs[i] = NULL;
  }
  /* the adversarial examples (every shard's runner writes them) */
  if ((rc = read_all(r, tenant, f, 1, SBX__RESULT_NPY_MAX, bufs, lens, why,
                     sizeof why))) {
    goto done;
  }
  int64_t rows = 0;
  rc = sbx_npy_merge((const unsigned char *const *)bufs, lens, f->n,
                     (unsigned char **)&out, &olen, &rows, err, sizeof err);
  if (!rc && rows != span.n) {
    snprintf(err, sizeof err, "%lld adversarial examples for %lld samples",
             (long long)rows, (long long)span.n);
    rc = SBX_EINVAL;
  }
  if (rc) {
    snprintf(why, sizeof why, "merging the shards' adversarial examples: %s",
             err);
    goto done;
  }
  if ((rc = store_merged(r, tenant, j, "adversarial.npy", out, olen,
                         res.adv_id)))
    goto done;
  /* the gallery: the shards' strips in shard order, at most 16 */
  for (int i = 0; i < f->n; i++)
    for (int g = 0;
         g < f->res[i].n_gallery && res.n_gallery < SBX_JOB_GALLERY_MAX; g++)
      snprintf(res.gallery[res.n_gallery++], SBX_ID_MAX, "%s",
               f->res[i].gallery[g]);
  rc = sbx_meta_job_set_results(sbx__meta(r), tenant, j->id, sbx__now(), &res);
done:
  if (rc && !why[0])
    snprintf(why, sizeof why, "merging the shards' results: %s",
             sbx_strerror(rc));
  if (rc) { /* without merged results the job has failed: say why */
    sbx__log("job %s: %s", j->id, why);
    int frc =
        sbx_meta_job_merge_failed(sbx__meta(r), tenant, j->id, sbx__now(), why);
    if (frc)
      sbx__log("job %s: failing it: %s", j->id, sbx_strerror(frc));
  }
  for (int i = 0; bufs && i < SBX_MERGE_MAX_SHARDS; i++)
    free(bufs[i]);
  free(bufs);
  free(lens);
  free(out);
  free(f);
  return rc;
}
