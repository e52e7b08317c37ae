/*
 * sbx/jobspec.h - the job spec as JSON: the one parser the server (POST
 * .../jobs) and the worker (the spec of a claimed job) use, its canonical
 * serialisation, and the attack catalogue served at GET /api/v1/attacks.
 *
 * The spec itself, its parameter table and its validation are the
 * engine's (adv/job.h, target adv_table: libc only); this layer only maps
 * JSON values onto adv_job_spec_set() and adv_job_spec_validate(), so the
 * CLI (`aisbx attack|evaluate`, from options) and the service accept and
 * refuse exactly the same specs with the same messages.
 *
 * Library target sbx_jobspec: adv_table + jansson (never the engine).
 */
#ifndef SBX_JOBSPEC_H
#define SBX_JOBSPEC_H

#include "adv/job.h"

#include <jansson.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Caps on a spec document. */
#define SBX_JOBSPEC_MAX_BYTES 16384

/*
 * Fills *out from a JSON object {"kind": "attack"|"evaluation", "attack":
 * "pgd", "eps": 0.3, "eps_sweep": [..], "attacks": [..], "seed": 1 | "1",
 * ...}: keys are the parameter names of adv_job_param_table(); unknown keys,
 * wrong JSON types and out-of-range values are refused. Then validates the
 * whole spec. Returns 0, or SBX_EINVAL with err "<parameter>: <reason>"
 * (the parameter named as in the document); *out is then unspecified.
 * seed may be a JSON integer or a decimal string (full uint64 range).
 */
int sbx_jobspec_from_json(const json_t *obj, adv_job_spec *out, char *err,
                          size_t errlen);

/* The same from text (at most SBX_JOBSPEC_MAX_BYTES, duplicate keys
 * refused). */
int sbx_jobspec_parse(const char *text, size_t len, adv_job_spec *out,
                      char *err, size_t errlen);

/*
 * The canonical JSON of a spec: kind, the attack or suite, and every
 * parameter the spec sets, plus n, shard and seed. Parsing it back gives
 * an equal spec (floats print exactly). New reference (json_decref); NULL
 * on out of memory.
 */
json_t *sbx_jobspec_to_json(const adv_job_spec *s);

/*
 * The attack catalogue: {"attacks": [{name, aliases, minimal, norms,
 * targeting, parameters: JSON Schema with defaults}], "suites": [...],
 * "job": JSON Schema of the job-level fields}. New reference.
 */
json_t *sbx_attack_catalogue(void);

#ifdef __cplusplus
}
#endif
#endif
