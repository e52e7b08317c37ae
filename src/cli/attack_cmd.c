/*
 * attack_cmd.c - `aisbx attack` (one attack) and `aisbx evaluate` (the
 * AutoAttack protocol, eps sweeps): options -> an adv_job_spec, the job
 * run by libadv (adv_job_run), the JSON result by adv_report
 * (docs/results-schema.md), and a one-line summary.
 */
#include "adv/adv.h"
#include "adv/data.h"
#include "adv/evaluate.h"
#include "adv/job.h"
#include "adv/report.h"
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Options of the job commands that are not job-spec parameters. */
typedef struct job_opts {
  const char *model, *data, *labels, *out, *adv, *target_output;
  int quiet;
} job_opts;

#define JOPT(name, type, field)                                                \
  { name, type, offsetof(job_opts, field), 0, 0, 0 }
static const cli_opt job_table[] = {
    JOPT("--model", CLI_STR, model),
    JOPT("--data", CLI_STR, data),
    JOPT("--labels", CLI_STR, labels),
    JOPT("--out", CLI_STR, out),
    JOPT("--adv", CLI_STR, adv),
    JOPT("--quiet", CLI_FLAG, quiet),
    JOPT("--target-output", CLI_STR, target_output),
    CLI_END,
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage_attack(void) {
  fprintf(
      stderr,
      "usage: aisbx attack --model M --data D [--labels L] --attack NAME\n"
      "         [--norm inf|2] [--eps E] [--steps K] [--step-size A] "
      "[--restarts R]\n"
      "         [--targeted [--target K]] [--queries Q] [--seed S] [--n N]\n"
      "         [--binary-steps B] [--initial-const C] [--confidence K]\n"
      "         [--overshoot O] [--p-init P] [--n-target-classes T]\n"
      "         [--threads T] [--batch B] --out result.json [--adv adv.npy]\n"
      "         [--objective output-distance [--output NAME] "
      "[--min-distance D]\n"
      "          [--target-output T.npy]]  (docs/objectives.md)\n"
      "  NAME: fgsm bim pgd mifgsm apgd-ce apgd-dlr apgd-t fab fab-t cw "
      "deepfool square hsj\n"
      "  every job-spec parameter is an option (docs/attacks.md):\n");
  cli_print_spec_options(stderr);
}

static void usage_evaluate(void) {
  fprintf(
      stderr,
      "usage: aisbx evaluate --model M --data D [--labels L]\n"
      "         --suite autoattack-standard|autoattack-plus|custom [--attacks "
      "a,b,...]\n"
      "         [--norm inf|2] [--eps E | --eps-sweep E1,E2,...] [--n N] "
      "[--seed S]\n"
      "         [--shard-offset O --shard-count C]\n"
      "         [--threads T] [--batch B] --out result.json [--adv adv.npy]\n"
      "  every job-spec parameter is an option:\n");
  cli_print_spec_options(stderr);
}

typedef struct loaded {
  adv_model *m;
  adv_dataset ds;
  char model_sha[65], data_sha[65];
} loaded;

static int load_inputs(const char *cmd, const job_opts *o, loaded *L,
                       int need_labels) {
  adv_err err = {{0}};
  if (adv_model_load_file(o->model, adv_load_default_params(), &L->m, &err)) {
    fprintf(stderr, "aisbx %s: model %s: %s\n", cmd, o->model, err.msg);
    return EXIT_BADINPUT;
  }
  if (adv_dataset_load(o->data, o->labels, adv_io_default_limits(), &L->ds,
                       &err)) {
    fprintf(stderr, "aisbx %s: data %s: %s\n", cmd, o->data, err.msg);
    return EXIT_BADINPUT;
  }
  if (!L->ds.y.data && need_labels) {
    fprintf(stderr, "aisbx %s: the data has no labels (NPZ y or --labels)\n",
            cmd);
    return EXIT_BADINPUT;
  }
  if (cli_sha256_file(o->model, L->model_sha) ||
      cli_sha256_file(o->data, L->data_sha)) {
    fprintf(stderr, "aisbx %s: cannot hash inputs\n", cmd);
    return 1;
  }
  return 0;
}

typedef struct prog {
  int quiet;
  double last;
} prog;

/* Progress on a terminal (at most 5 lines a second) and the evaluation's
 * per-attack and per-eps lines unless --quiet. */
static int progress_cb(void *ud, const adv_job_progress *p) {
  prog *pg = ud;
  if (pg->quiet)
    return 0;
  if (p->event == ADV_JOB_EV_ATTACK_START) {
    fprintf(stderr, "  eps %g: %s on %lld robust points\n", (double)p->eps,
            p->attack, (long long)p->active);
    return 0;
  }
  if (p->event == ADV_JOB_EV_EPS_DONE) {
    fprintf(stderr, "  eps %g: robust accuracy %.4f\n", (double)p->eps,
            (double)p->robust / (double)p->n);
    return 0;
  }
  if (!isatty(2))
    return 0;
  double t = now_s();
  if (t - pg->last < 0.2)
    return 0;
  pg->last = t;
  fprintf(stderr, "\r  %-10s %5.1f%%", p->phase, 100.0 * p->fraction);
  fflush(stderr);
  return 0;
}

/* Writes the result document through a temp file renamed on success. */
static int write_result(const char *path, const adv_report_meta *meta,
                        const adv_job_spec *s, const adv_job_result *r) {
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  int bad = !f;
  if (f) {
    bad = adv_report_write_file(f, meta, s, r) != 0;
    bad |= fflush(f) != 0 || ferror(f);
    bad |= fclose(f) != 0;
  }
  if (bad || rename(tmp, path)) {
    unlink(tmp);
    fprintf(stderr, "aisbx: cannot write %s\n", path);
    return 1;
  }
  return 0;
}

static int write_adv(const char *path, const adv_job_result *r) {
  adv_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = ADV_DTYPE_F32;
  a.ndim = r->x_ndim;
  memcpy(a.dims, r->x_dims, sizeof(a.dims));
  a.data = r->x_adv;
  a.nbytes = sizeof(float) * (size_t)(r->n * r->per);
  adv_err err = {{0}};
  if (adv_npy_write_file(path, &a, &err)) {
    fprintf(stderr, "aisbx: cannot write %s: %s\n", path, err.msg);
    return 1;
  }
  return 0;
}

/* Exit code of an engine status: bad input (2) or a failure (1). */
static int exit_of(int rc) {
  return rc == ADV_EINVAL || rc == ADV_EUNSUPPORTED || rc == ADV_ESHAPE ||
                 rc == ADV_EDTYPE || rc == ADV_EFORMAT || rc == ADV_ELIMIT
             ? EXIT_BADINPUT
             : 1;
}

/* Parses, validates, loads, runs and writes one job; the shared body of
 * `attack` and `evaluate`. */
static int run_job(const char *cmd, int argc, char **argv, adv_job_kind kind,
                   void (*usage)(void)) {
  job_opts o;
  memset(&o, 0, sizeof(o));
  adv_job_spec spec = adv_job_spec_default_params();
  spec.kind = kind;
  int have_attack = 0;
  for (int i = 1; i < argc; i++)
    have_attack |= !strcmp(argv[i], "--attack");
  int rc = cli_parse(cmd, argc, argv, job_table, &o, &spec, usage);
  if (rc)
    return rc == CLI_HELP ? 0 : rc;
  if (!o.model || !o.data || !o.out) {
    fprintf(stderr, "aisbx %s: --model, --data and --out are required\n", cmd);
    usage();
    return EXIT_BADINPUT;
  }
  if (kind == ADV_JOB_ATTACK && !have_attack) {
    fprintf(stderr, "aisbx attack: --attack NAME is required\n");
    usage();
    return EXIT_BADINPUT;
  }
  adv_err err = {{0}};
  int obj = spec.params.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE;
  adv_array tout;
  memset(&tout, 0, sizeof(tout));
  if (o.target_output) { /* a targeted output-distance attack */
    if (!obj) {
      fprintf(stderr,
              "aisbx %s: --target-output needs --objective "
              "output-distance\n",
              cmd);
      return EXIT_BADINPUT;
    }
    if (adv_npy_read_file(o.target_output, adv_io_default_limits(), &tout,
                          &err) ||
        tout.dtype != ADV_DTYPE_F32) {
      fprintf(stderr, "aisbx %s: target output %s: %s\n", cmd, o.target_output,
              err.msg[0] ? err.msg : "must be float32");
      adv_array_free(&tout);
      return EXIT_BADINPUT;
    }
    spec.target_output = &tout;
    adv_job_spec_set(&spec, "targeted", "true", &err);
  }
  if (adv_job_spec_validate(&spec, &err)) {
    cli_spec_error(cmd, err.msg);
    adv_array_free(&tout);
    return EXIT_BADINPUT;
  }
  loaded L;
  memset(&L, 0, sizeof(L));
  adv_model *view = NULL;
  adv_job_result res;
  memset(&res, 0, sizeof(res));
  if ((rc = load_inputs(cmd, &o, &L, !obj)))
    goto done;
  /* several model inputs, --input or --mean/--std: a single-input view */
  if ((rc = adv_job_model(L.m, &spec, o.data, NULL, 0, &view, &err))) {
    cli_spec_error(cmd, err.msg);
    rc = exit_of(rc);
    goto done;
  }
  prog pg = {o.quiet, 0};
  rc = adv_job_run(view ? view : L.m, &L.ds.x, &L.ds.y, &spec, progress_cb, &pg,
                   NULL, &res, &err);
  if (!o.quiet && isatty(2))
    fprintf(stderr, "\r%40s\r", "");
  if (rc) {
    cli_spec_error(cmd, err.msg); /* "--shard-offset: ..." or as it is */
    rc = exit_of(rc);
    goto done;
  }
  adv_report_meta meta = {o.model, L.model_sha, o.data, L.data_sha, o.labels};
  rc = write_result(o.out, &meta, &spec, &res);
  if (!rc && o.adv)
    rc = write_adv(o.adv, &res);
  if (kind == ADV_JOB_EVALUATION)
    for (int i = 0; i < res.n_warnings; i++)
      fprintf(stderr, "warning: %s\n", res.warnings[i]);
  if (kind == ADV_JOB_ATTACK && obj) {
    printf("%s: output distance mean %.6g (relative %.4g), median %.6g, "
           "%.2f s -> %s\n",
           adv_attack_name(res.params.kind), res.out_dist_mean,
           res.out_rel_mean, res.out_dist_median, res.wall_time_s, o.out);
    if (res.tgt_dist)
      printf("  distance to the target: mean %.6g (clean %.6g)\n",
             res.tgt_dist_mean, res.tgt_dist_clean_mean);
  } else if (kind == ADV_JOB_ATTACK)
    printf("%s: clean accuracy %.4f, robust accuracy %.4f, success rate %.4f, "
           "%.2f s -> %s\n",
           adv_attack_name(res.params.kind), res.clean_accuracy,
           res.robust_accuracy, res.attack_success_rate, res.wall_time_s,
           o.out);
  else
    printf("%s (%s, eps %g): clean accuracy %.4f, robust accuracy %.4f, %.1f s "
           "-> %s\n",
           adv_suite_name(res.suite),
           spec.params.norm == ADV_NORM_LINF ? "Linf" : "L2",
           (double)res.curve[res.n_eps - 1].eps, res.clean_accuracy,
           res.robust_accuracy, res.wall_time_s, o.out);
done:
  adv_job_result_free(&res);
  adv_dataset_free(&L.ds);
  adv_model_free(view); /* before the model it borrows */
  adv_model_free(L.m);
  adv_array_free(&tout);
  return rc;
}

int cmd_attack(int argc, char **argv) {
  return run_job("attack", argc, argv, ADV_JOB_ATTACK, usage_attack);
}

int cmd_evaluate(int argc, char **argv) {
  return run_job("evaluate", argc, argv, ADV_JOB_EVALUATION, usage_evaluate);
}
