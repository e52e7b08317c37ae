/*
 * runjob.c - test driver: runs one job spec (JSON) on a model and a
 * dataset file through the real supervisor and sandboxed runner
 * (sbx_runner_run), the way the worker does, and writes the result
 * document and the adversarial NPY to files.
 *
 *   runjob RUNNER MODEL DATA SPEC_JSON OUT_JSON [OUT_NPY]
 *
 * Prints "status <name>" and the reason; exits 0 when the job succeeded,
 * 3 when it ended otherwise, 2 on bad arguments.
 */
#include "sbx/jobspec.h"
#include "sbx/runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *b = malloc(n > 0 ? (size_t)n : 1);
  if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *len = n > 0 ? (size_t)n : 0;
  return b;
}

static int spit(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  int ok = fwrite(b, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr,
            "usage: runjob RUNNER MODEL DATA SPEC_JSON OUT_JSON [OUT_NPY]\n");
    return 2;
  }
  size_t ml, dl;
  void *model = slurp(argv[2], &ml), *data = slurp(argv[3], &dl);
  if (!model || !data) {
    fprintf(stderr, "runjob: cannot read the model or the dataset\n");
    return 2;
  }
  sbx_job_spec js;
  memset(&js, 0, sizeof(js));
  char err[600];
  if (sbx_jobspec_parse(argv[4], strlen(argv[4]), &js.job, err, sizeof(err))) {
    printf("status rejected\nreason %s\n", err);
    return 3;
  }
  js.kind = SBX_JOB_RUN;
  const char *mb = strrchr(argv[2], '/'), *db = strrchr(argv[3], '/');
  snprintf(js.model_name, sizeof(js.model_name), "%s", mb ? mb + 1 : argv[2]);
  snprintf(js.data_name, sizeof(js.data_name), "%s", db ? db + 1 : argv[3]);
  sbx_runner_params p = sbx_runner_default_params();
  p.runner_path = argv[1];
  const char *w = getenv("RUNJOB_WALL");
  if (w)
    p.wall_seconds = atof(w);
  const char *mem = getenv("RUNJOB_MEM");
  if (mem)
    p.mem_bytes = strtoull(mem, NULL, 10);
  sbx_runner_outcome o;
  int rc = sbx_runner_run(&p, &js, model, ml, data, dl, NULL, NULL, &o);
  printf("status %s\nreason %s\nmemcap %s\n",
         rc ? "not-started" : sbx_runner_status_name(o.status), o.reason,
         sbx_memcap_name(o.memcap));
  int out = rc || o.status != SBX_RUN_SUCCEEDED ? 3 : 0;
  if (!out && o.result_json && spit(argv[5], o.result_json, o.result_len))
    out = 2;
  if (!out && argc > 6 && o.adv_npy && spit(argv[6], o.adv_npy, o.adv_npy_len))
    out = 2;
  const char *gdir = getenv("RUNJOB_GALLERY"); /* write gallery-{i}.png there */
  printf("gallery %d\n", o.n_gallery);
  for (int i = 0; !out && gdir && i < o.n_gallery; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/gallery-%d.png", gdir, i);
    if (spit(path, o.gallery[i], o.gallery_len[i]))
      out = 2;
  }
  sbx_runner_outcome_free(&o);
  free(model);
  free(data);
  return out;
}
