/* cli.h - shared helpers of the aisbx command line (not a library API). */
#ifndef AISBX_CLI_H
#define AISBX_CLI_H

#include "adv/job.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, the same for every command. */
#define EXIT_MISMATCH                                                          \
  1 /* onnx-check: outputs differ; others: runtime failure */
#define EXIT_BADINPUT 2 /* usage error, invalid or unsupported input */

int cmd_attack(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);

/* SHA-256 of a file as 64 hex chars + NUL; 0 on success. */
int cli_sha256_file(const char *path, char hex[65]);

/* ---- the option parser: one table per command ---- */
typedef enum cli_opt_type {
  CLI_STR,   /* const char * */
  CLI_LONG,  /* long, integer in [lo, hi] (strtoll: no fraction, no exponent) */
  CLI_FLOAT, /* double, finite, in [lo, hi] (lo excluded when lo_open) */
  CLI_FLAG,  /* int set to 1, takes no value */
} cli_opt_type;

typedef struct cli_opt {
  const char *name; /* "--model" */
  cli_opt_type type;
  size_t off; /* of the destination in the command's options struct */
  double lo, hi;
  int lo_open;
} cli_opt;

#define CLI_END                                                                \
  { NULL, CLI_STR, 0, 0, 0, 0 }

/*
 * Parses argv[1..argc-1] ("--name value" pairs and flags) into `dst`
 * through `table`; with `spec` non-NULL every job-spec parameter is an
 * option too (--step-size sets step_size through adv_job_spec_set; boolean
 * parameters are flags). Returns 0, CLI_HELP after printing usage for
 * --help, or EXIT_BADINPUT after printing "aisbx CMD: --option: reason".
 */
#define CLI_HELP (-1)
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *table,
              void *dst, adv_job_spec *spec, void (*usage)(void));

/* Lists the job-spec options ("--step-size  help") for usage texts. */
void cli_print_spec_options(FILE *f);

/* Prints an engine message as "aisbx CMD: --option: reason" when it starts
 * with a job-spec parameter's snake_case name, else as it is. */
void cli_spec_error(const char *cmd, const char *msg);

#endif
