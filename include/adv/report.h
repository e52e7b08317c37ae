/*
 * adv/report.h - the result document of a job (schema aisbx.result.v1,
 * docs/results-schema.md), written from an adv_job_result. Library
 * adv_report (src/report/): depends on libadv only, so the CLI and the
 * sandboxed runner produce the same bytes.
 */
#ifndef ADV_REPORT_H
#define ADV_REPORT_H

#include "adv/evaluate.h"

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where the inputs came from; every string is copied into the document
 * as given (may be NULL: labels_path; the others are written as ""). */
typedef struct adv_report_meta {
  const char *model_path, *model_sha256; /* sha256: 64 hex chars */
  const char *data_path, *data_sha256;
  const char *labels_path;
} adv_report_meta;

/*
 * Writes the JSON document (one line, ending in '\n') to f. Returns 0, or
 * ADV_EIO when a write failed (f's error flag is set; the caller owns f).
 */
int adv_report_write_file(FILE *f, const adv_report_meta *meta,
                          const adv_job_spec *spec, const adv_job_result *r);

/*
 * The same into a malloc'd buffer: *buf (NUL-terminated, owned by the
 * caller, free()) and *len (bytes without the NUL). On error *buf is NULL
 * and ADV_ENOMEM / ADV_EIO is returned.
 */
int adv_report_write_mem(char **buf, size_t *len, const adv_report_meta *meta,
                         const adv_job_spec *spec, const adv_job_result *r);

#ifdef __cplusplus
}
#endif
#endif
