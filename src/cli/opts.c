/*
 * opts.c - the one option parser of every aisbx command: a table per
 * command (like the server's config table) plus, for the job commands,
 * the job-spec parameter table of the engine (adv/job.h), so an option,
 * its type and its range are written down once.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "--step-size" -> "step_size"; 0 when it fits. */
static int snake(const char *opt, char *out, size_t n) {
  if (strncmp(opt, "--", 2) || strlen(opt + 2) >= n)
    return -1;
  size_t i = 0;
  for (const char *p = opt + 2; *p; p++)
    out[i++] = *p == '-'   ? '_'
               : *p == '_' ? '\x01'
                           : *p; /* no '_' on the CLI */
  out[i] = 0;
  return 0;
}

void cli_spec_error(const char *cmd, const char *msg) {
  const char *colon = strchr(msg, ':');
  size_t n = colon ? (size_t)(colon - msg) : 0;
  char name[64], opt[64];
  const adv_job_param_info *q = NULL;
  if (n > 0 && n < sizeof(name)) {
    memcpy(name, msg, n);
    name[n] = 0;
    for (q = adv_job_param_table(NULL); q->name && strcmp(q->name, name); q++)
      ;
  }
  if (!q || !q->name) { /* not "<parameter>: ...": as it is */
    fprintf(stderr, "aisbx %s: %s\n", cmd, msg);
    return;
  }
  for (size_t i = 0; i <= n; i++)
    opt[i] = name[i] == '_' ? '-' : name[i];
  fprintf(stderr, "aisbx %s: --%s%s\n", cmd, opt, colon);
}

void cli_print_spec_options(FILE *f) {
  for (const adv_job_param_info *q = adv_job_param_table(NULL); q->name; q++) {
    if (!strcmp(q->name, "kind"))
      continue;
    char opt[64];
    size_t i = 0;
    for (; q->name[i] && i + 1 < sizeof(opt); i++)
      opt[i] = q->name[i] == '_' ? '-' : q->name[i];
    opt[i] = 0;
    fprintf(f, "    --%-18s %s\n", opt, q->help);
  }
}

static const adv_job_param_info *spec_param(const char *opt) {
  char name[64];
  if (snake(opt, name, sizeof(name)))
    return NULL;
  for (const adv_job_param_info *q = adv_job_param_table(NULL); q->name; q++)
    if (!strcmp(q->name, name) && strcmp(q->name, "kind"))
      return q;
  return NULL;
}

/* Sets one table option from its value; 0 or EXIT_BADINPUT (printed). */
static int set_opt(const char *cmd, const cli_opt *o, const char *v,
                   void *dst) {
  char *f = (char *)dst + o->off;
  char *end;
  switch (o->type) {
  case CLI_STR:
    *(const char **)f = v;
    return 0;
  case CLI_FLAG:
    *(int *)f = 1;
    return 0;
  case CLI_LONG: {
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || !(*v == '-' || (*v >= '0' && *v <= '9')) ||
        (double)x < o->lo || (double)x > o->hi) {
      fprintf(stderr, "aisbx %s: %s: '%s' is not an integer in [%.0f, %.0f]\n",
              cmd, o->name, v, o->lo, o->hi);
      return EXIT_BADINPUT;
    }
    *(long *)f = (long)x;
    return 0;
  }
  case CLI_FLOAT: {
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || end == v || !isfinite(x) || x < o->lo || x > o->hi ||
        (o->lo_open && x == o->lo)) {
      fprintf(stderr, "aisbx %s: %s: '%s' is not a number in %c%g, %g]\n", cmd,
              o->name, v, o->lo_open ? '(' : '[', o->lo, o->hi);
      return EXIT_BADINPUT;
    }
    *(double *)f = x;
    return 0;
  }
  }
  return EXIT_BADINPUT;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *table,
              void *dst, adv_job_spec *spec, void (*usage)(void)) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage();
      return CLI_HELP;
    }
    const cli_opt *o = NULL;
    for (const cli_opt *t = table; t->name; t++)
      if (!strcmp(t->name, a))
        o = t;
    const adv_job_param_info *q = !o && spec ? spec_param(a) : NULL;
    if (!o && !q) {
      fprintf(stderr, "aisbx %s: unknown option %s\n", cmd, a);
      usage();
      return EXIT_BADINPUT;
    }
    int flag = o ? o->type == CLI_FLAG : q->type == ADV_JOB_PT_BOOL;
    const char *v = flag ? "true" : i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "aisbx %s: %s needs a value\n", cmd, a);
      return EXIT_BADINPUT;
    }
    if (!flag)
      i++;
    if (o) {
      if (set_opt(cmd, o, v, dst))
        return EXIT_BADINPUT;
      continue;
    }
    adv_err err = {{0}};
    if (adv_job_spec_set(spec, q->name, v, &err)) {
      cli_spec_error(cmd, err.msg);
      return EXIT_BADINPUT;
    }
  }
  return 0;
}
