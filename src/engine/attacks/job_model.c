/*
 * job_model.c - adv_job_model(): the model a job runs on, for the CLI and
 * the sandboxed runner alike. A model with one input and no normalization
 * runs as it is; otherwise adv_model_bind makes a single-input view: the
 * spec's attacked input, the other inputs from the data NPZ's members of
 * the same names (or their initializers), the spec's mean/std in front,
 * and a binary classifier's N x 1 output as two classes.
 */
#include "adv/data.h"
#include "adv/evaluate.h"
#include "core/engine.h"
#include "io/io_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads the NPZ members named like the model's inputs other than `skip`
 * (absent members are left empty). buf: the data file's bytes. */
static int read_members(const adv_model *m, const char *skip,
                        const uint8_t *buf, size_t len, adv_array *vals,
                        const char **names, int *n, adv_err *err) {
  adv_io_limits lim = adv_io_default_limits();
  *n = 0;
  int is_npz = len >= 4 && buf[0] == 'P' && buf[1] == 'K';
  for (int i = 0; is_npz && i < m->n_inputs; i++) {
    const char *nm = m->values[m->inputs[i]].name;
    if (skip && !strcmp(nm, skip))
      continue;
    int rc = adv__npz_read_mem(buf, len, nm, lim, &vals[*n], err);
    if (rc == ADV_ENOTFOUND)
      continue;
    if (rc) {
      char pre[96];
      snprintf(pre, sizeof(pre), "data member '%.64s': ", nm);
      adv__err_prefix(err, pre);
      return rc;
    }
    names[(*n)++] = nm;
  }
  return ADV_OK;
}

int adv_job_model(const adv_model *base, const adv_job_spec *s,
                  const char *data_path, const void *data, size_t data_len,
                  adv_model **out, adv_err *err) {
  *out = NULL;
  if (!base || !s)
    return adv__error(err, ADV_EINVAL, "model and spec are required");
  int obj = s->params.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  int binary = !obj && adv_model_binary_output(base);
  if (base->n_inputs == 1 && !s->input[0] && !s->n_mean && !s->n_std &&
      !binary && !(obj && s->output[0]))
    return ADV_OK; /* as it is */
  int ni = base->n_inputs;
  adv_array *vals = calloc((size_t)(ni ? ni : 1), sizeof(*vals));
  const char **names = calloc((size_t)(ni ? ni : 1), sizeof(*names));
  uint8_t *owned = NULL;
  int n = 0, rc = vals && names ? ADV_OK : ADV_ENOMEM;
  if (rc)
    adv__error(err, rc, "out of memory");
  if (!rc && ni > 1 && !data && data_path)
    rc = adv__read_file(data_path, adv_io_default_limits().max_file_bytes,
                        &owned, &data_len, err);
  if (!rc && ni > 1 && (owned || data)) {
    /* the attacked input's own member (x, or its name) is not read */
    const char *skip = s->input[0] ? s->input : NULL;
    for (int i = 0; !skip && i < ni; i++)
      if (base->values[base->inputs[i]].dtype == ADV_DTYPE_F32)
        skip = base->values[base->inputs[i]].name;
    rc = read_members(base, skip, owned ? owned : data, data_len, vals, names,
                      &n, err);
  }
  float mean[ADV_JOB_MAX_CHANNELS], std[ADV_JOB_MAX_CHANNELS];
  int nc = s->n_mean > s->n_std ? s->n_mean : s->n_std;
  for (int c = 0; c < nc; c++) { /* a missing list: mean 0, std 1 */
    mean[c] = s->n_mean ? s->mean[s->n_mean == 1 ? 0 : c] : 0.f;
    std[c] = s->n_std ? s->std[s->n_std == 1 ? 0 : c] : 1.f;
  }
  if (!rc) {
    adv_model_bind_params bp = {s->input, n,      names,
                                vals,     nc,     mean,
                                std,      binary, obj ? s->output : NULL};
    rc = adv_model_bind(base, &bp, out, err);
  }
  for (int i = 0; i < n; i++)
    adv_array_free(&vals[i]);
  free(vals);
  free(names);
  free(owned);
  return rc;
}
