/*
 * attack_cmd.c - `aisbx attack` (one attack) and `aisbx evaluate` (the
 * AutoAttack protocol, eps sweeps), writing the JSON result documented in
 * docs/results-schema.md.
 */
#include "adv/adv.h"
#include "adv/attack.h"
#include "adv/data.h"
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct opts {
  const char *model, *data, *labels, *out, *adv, *attack, *suite, *attacks,
      *eps_sweep;
  adv_attack_params p;
  int have_eps, have_steps, have_step, have_restarts, have_queries;
  long n, target;
  int targeted, quiet;
} opts;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_num(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !(v >= lo && v <= hi))
    return -1;
  *out = v;
  return 0;
}

static void usage(const char *cmd) {
  if (!strcmp(cmd, "attack"))
    fprintf(stderr,
            "usage: aisbx attack --model M --data D [--labels L] --attack NAME\n"
            "         [--norm inf|2] [--eps E] [--steps K] [--step-size A] [--restarts R]\n"
            "         [--targeted [--target K]] [--queries Q] [--seed S] [--n N]\n"
            "         [--threads T] [--batch B] --out result.json [--adv adv.npy]\n"
            "  NAME: fgsm bim pgd mifgsm apgd-ce apgd-dlr apgd-t fab fab-t cw deepfool square hsj\n");
  else
    fprintf(stderr,
            "usage: aisbx evaluate --model M --data D [--labels L]\n"
            "         --suite autoattack-standard|autoattack-plus|custom [--attacks a,b,...]\n"
            "         [--norm inf|2] [--eps E | --eps-sweep E1,E2,...] [--n N] [--seed S]\n"
            "         [--threads T] [--batch B] --out result.json [--adv adv.npy]\n");
}

/* Parses the options shared by attack and evaluate; 0 ok, 2 usage error. */
static int parse(int argc, char **argv, const char *cmd, opts *o) {
  memset(o, 0, sizeof(*o));
  o->p = adv_attack_default_params(ADV_ATTACK_PGD);
  o->n = -1;
  o->target = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(cmd);
      return -1;
    }
    if (!strcmp(a, "--targeted")) {
      o->targeted = 1;
      continue;
    }
    if (!strcmp(a, "--quiet")) {
      o->quiet = 1;
      continue;
    }
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    static const char *known[] = {"--model", "--data", "--labels", "--out", "--adv",
                                  "--attack", "--suite", "--attacks", "--eps-sweep",
                                  "--norm", "--eps", "--steps", "--step-size",
                                  "--restarts", "--target", "--queries", "--seed",
                                  "--n", "--threads", "--batch", NULL};
    int ok = 0;
    for (int k = 0; known[k]; k++)
      ok |= !strcmp(a, known[k]);
    if (!ok) {
      fprintf(stderr, "aisbx %s: unknown option %s\n", cmd, a);
      usage(cmd);
      return EXIT_BADINPUT;
    }
    if (!v) {
      fprintf(stderr, "aisbx %s: %s needs a value\n", cmd, a);
      return EXIT_BADINPUT;
    }
    i++;
    double d;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--labels")) o->labels = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--adv")) o->adv = v;
    else if (!strcmp(a, "--attack")) o->attack = v;
    else if (!strcmp(a, "--suite")) o->suite = v;
    else if (!strcmp(a, "--attacks")) o->attacks = v;
    else if (!strcmp(a, "--eps-sweep")) o->eps_sweep = v;
    else if (!strcmp(a, "--norm")) {
      if (!strcmp(v, "inf") || !strcmp(v, "linf")) o->p.norm = ADV_NORM_LINF;
      else if (!strcmp(v, "2") || !strcmp(v, "l2")) o->p.norm = ADV_NORM_L2;
      else {
        fprintf(stderr, "aisbx %s: --norm must be inf or 2\n", cmd);
        return EXIT_BADINPUT;
      }
    } else {
      double lo = 0, hi = 1e9;
      if (!strcmp(a, "--eps")) hi = 1e6;
      if (!strcmp(a, "--threads")) { lo = 1; hi = 256; }
      if (!strcmp(a, "--batch")) { lo = 1; hi = 65536; }
      if (!strcmp(a, "--seed")) hi = 1.8e19;
      if (parse_num(v, lo, hi, &d)) {
        fprintf(stderr, "aisbx %s: bad value for %s: '%s'\n", cmd, a, v);
        return EXIT_BADINPUT;
      }
      int integral = strcmp(a, "--eps") && strcmp(a, "--step-size");
      if (integral && d != floor(d)) {
        fprintf(stderr, "aisbx %s: %s must be an integer\n", cmd, a);
        return EXIT_BADINPUT;
      }
      if (!strcmp(a, "--eps")) { o->p.eps = (float)d; o->have_eps = 1; }
      else if (!strcmp(a, "--steps")) { o->p.steps = (int)d; o->have_steps = 1; }
      else if (!strcmp(a, "--step-size")) { o->p.step_size = (float)d; o->have_step = 1; }
      else if (!strcmp(a, "--restarts")) { o->p.restarts = (int)d; o->have_restarts = 1; }
      else if (!strcmp(a, "--target")) o->target = (long)d;
      else if (!strcmp(a, "--queries")) { o->p.queries = (int64_t)d; o->have_queries = 1; }
      else if (!strcmp(a, "--seed")) o->p.seed = (uint64_t)d;
      else if (!strcmp(a, "--n")) o->n = (long)d;
      else if (!strcmp(a, "--threads")) o->p.threads = (int)d;
      else if (!strcmp(a, "--batch")) o->p.batch = (int)d;
    }
  }
  if (!o->model || !o->data || !o->out) {
    fprintf(stderr, "aisbx %s: --model, --data and --out are required\n", cmd);
    usage(cmd);
    return EXIT_BADINPUT;
  }
  return 0;
}

typedef struct loaded {
  adv_model *m;
  adv_dataset ds;
  int64_t n, per;
  char model_sha[65], data_sha[65];
} loaded;

static int load_inputs(const char *cmd, opts *o, loaded *L) {
  memset(L, 0, sizeof(*L));
  adv_err err = {{0}};
  if (adv_model_load_file(o->model, adv_load_default_params(), &L->m, &err)) {
    fprintf(stderr, "aisbx %s: model %s: %s\n", cmd, o->model, err.msg);
    return EXIT_BADINPUT;
  }
  adv_errbuf eb = {{0}};
  if (adv_dataset_load(o->data, o->labels, adv_io_default_limits(), &L->ds, &eb)) {
    fprintf(stderr, "aisbx %s: data %s: %s\n", cmd, o->data, eb.msg);
    return EXIT_BADINPUT;
  }
  if (!L->ds.y.data) {
    fprintf(stderr, "aisbx %s: the data has no labels (NPZ y or --labels)\n", cmd);
    return EXIT_BADINPUT;
  }
  L->n = L->ds.x.dims[0];
  if (o->n > 0 && o->n < L->n)
    L->n = o->n;
  L->per = adv_array_numel(&L->ds.x) / L->ds.x.dims[0];
  int64_t md[ADV_MAX_DIMS];
  int nd = adv_model_num_inputs(L->m) == 1 ? adv_model_input_shape(L->m, 0, md) : -1;
  if (nd != L->ds.x.ndim) {
    fprintf(stderr, "aisbx %s: model wants a rank-%d input, data is rank %d\n", cmd,
            nd, L->ds.x.ndim);
    return EXIT_BADINPUT;
  }
  for (int d = 1; d < nd; d++)
    if (md[d] != L->ds.x.dims[d]) {
      fprintf(stderr, "aisbx %s: input dim %d is %lld, model wants %lld\n", cmd, d,
              (long long)L->ds.x.dims[d], (long long)md[d]);
      return EXIT_BADINPUT;
    }
  if (cli_sha256_file(o->model, L->model_sha) || cli_sha256_file(o->data, L->data_sha)) {
    fprintf(stderr, "aisbx %s: cannot hash inputs\n", cmd);
    return 1;
  }
  return 0;
}

static void free_inputs(loaded *L) {
  adv_dataset_free(&L->ds);
  adv_model_free(L->m);
}

typedef struct prog {
  int quiet;
  double last;
} prog;

static int progress_cb(void *ud, const char *phase, double frac) {
  prog *pg = ud;
  if (pg->quiet || !isatty(2))
    return 0;
  double t = now_s();
  if (t - pg->last < 0.2)
    return 0;
  pg->last = t;
  fprintf(stderr, "\r  %-10s %5.1f%%", phase, 100.0 * frac);
  fflush(stderr);
  return 0;
}

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* mean / median / max over the values with mask[i] set. */
static void stats(jw *w, const char *name, const float *v, const unsigned char *mask,
                  int64_t n) {
  float *t = malloc(sizeof(float) * (size_t)(n ? n : 1));
  int64_t k = 0;
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    if (mask[i]) {
      t[k++] = v[i];
      s += v[i];
    }
  jw_key(w, name);
  jw_begin_obj(w);
  jw_key(w, "count");
  jw_int(w, k);
  if (k && t) {
    qsort(t, (size_t)k, sizeof(float), cmp_f);
    jw_key(w, "mean"); jw_num(w, s / (double)k);
    jw_key(w, "median"); jw_num(w, k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]));
    jw_key(w, "max"); jw_num(w, t[k - 1]);
    jw_key(w, "min"); jw_num(w, t[0]);
  } else {
    jw_key(w, "mean"); jw_null(w);
    jw_key(w, "median"); jw_null(w);
    jw_key(w, "max"); jw_null(w);
  }
  jw_end_obj(w);
  free(t);
}

static void write_params(jw *w, const adv_attack_params *p) {
  jw_key(w, "params");
  jw_begin_obj(w);
  jw_key(w, "norm"); jw_str(w, p->norm == ADV_NORM_LINF ? "inf" : "2");
  jw_key(w, "eps"); jw_num(w, p->eps);
  jw_key(w, "steps"); jw_int(w, p->steps);
  jw_key(w, "step_size"); jw_num(w, p->step_size);
  jw_key(w, "restarts"); jw_int(w, p->restarts);
  jw_key(w, "random_start"); jw_bool(w, p->random_start);
  jw_key(w, "targeted"); jw_bool(w, p->targeted);
  jw_key(w, "n_target_classes"); jw_int(w, p->n_target_classes);
  jw_key(w, "queries"); jw_int(w, p->queries);
  jw_key(w, "seed"); jw_int(w, (int64_t)p->seed);
  jw_key(w, "clip_min"); jw_num(w, p->clip_min);
  jw_key(w, "clip_max"); jw_num(w, p->clip_max);
  const char *loss = p->loss == ADV_LOSS_CE ? "ce" : p->loss == ADV_LOSS_CW ? "cw"
                     : p->loss == ADV_LOSS_DLR ? "dlr" : "logit";
  switch (p->kind) { /* attacks with a fixed objective of their own */
  case ADV_ATTACK_APGD_CE: loss = "ce"; break;
  case ADV_ATTACK_APGD_DLR: loss = "dlr"; break;
  case ADV_ATTACK_APGD_T: loss = "dlr-targeted"; break;
  case ADV_ATTACK_SQUARE: loss = p->targeted ? "ce-targeted" : "margin"; break;
  case ADV_ATTACK_CW_L2: loss = "cw-f6"; break;
  case ADV_ATTACK_FAB: case ADV_ATTACK_FAB_T: case ADV_ATTACK_DEEPFOOL:
  case ADV_ATTACK_HSJ: loss = "none"; break;
  default: break;
  }
  jw_key(w, "loss"); jw_str(w, loss);
  jw_key(w, "momentum"); jw_num(w, p->momentum);
  jw_key(w, "p_init"); jw_num(w, p->p_init);
  jw_key(w, "kappa"); jw_num(w, p->kappa);
  jw_key(w, "binary_steps"); jw_int(w, p->binary_steps);
  jw_key(w, "overshoot"); jw_num(w, p->overshoot);
  jw_key(w, "batch"); jw_int(w, p->batch);
  jw_key(w, "threads"); jw_int(w, p->threads);
  jw_end_obj(w);
}

static void write_header(jw *w, const char *kind, opts *o, loaded *L) {
  jw_key(w, "schema"); jw_str(w, "aisbx.result.v1");
  jw_key(w, "kind"); jw_str(w, kind);
  jw_key(w, "engine_version"); jw_str(w, adv_version());
  jw_key(w, "model");
  jw_begin_obj(w);
  jw_key(w, "path"); jw_str(w, o->model);
  jw_key(w, "sha256"); jw_str(w, L->model_sha);
  jw_end_obj(w);
  jw_key(w, "data");
  jw_begin_obj(w);
  jw_key(w, "path"); jw_str(w, o->data);
  jw_key(w, "sha256"); jw_str(w, L->data_sha);
  if (o->labels) {
    jw_key(w, "labels"); jw_str(w, o->labels);
  }
  jw_key(w, "n"); jw_int(w, L->n);
  jw_end_obj(w);
}

static void write_i64_arr(jw *w, const char *k, const int64_t *v, int64_t n) {
  jw_key(w, k);
  jw_begin_arr(w);
  for (int64_t i = 0; i < n; i++)
    jw_int(w, v[i]);
  jw_end_arr(w);
}

static void write_f_arr(jw *w, const char *k, const float *v, int64_t n) {
  jw_key(w, k);
  jw_begin_arr(w);
  for (int64_t i = 0; i < n; i++)
    jw_num(w, v[i]);
  jw_end_arr(w);
}

static int write_adv(const char *path, const float *xa, loaded *L) {
  adv_array a;
  memset(&a, 0, sizeof(a));
  a.dtype = ADV_DTYPE_F32;
  a.ndim = L->ds.x.ndim;
  memcpy(a.dims, L->ds.x.dims, sizeof(a.dims));
  a.dims[0] = L->n;
  a.data = (void *)xa;
  a.nbytes = sizeof(float) * (size_t)(L->n * L->per);
  adv_errbuf eb = {{0}};
  if (adv_npy_write_file(path, &a, &eb)) {
    fprintf(stderr, "aisbx: cannot write %s: %s\n", path, eb.msg);
    return 1;
  }
  return 0;
}

/* Opens the output through a temp file renamed on success. */
static FILE *open_out(const char *path, char *tmp, size_t tn) {
  snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
  return fopen(tmp, "w");
}

static int close_out(FILE *f, const char *tmp, const char *path) {
  int bad = fflush(f) != 0 || ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path)) {
    unlink(tmp);
    fprintf(stderr, "aisbx: cannot write %s\n", path);
    return 1;
  }
  return 0;
}

/* ---------------- attack ---------------- */

int cmd_attack(int argc, char **argv) {
  opts o;
  int rc = parse(argc, argv, "attack", &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  if (!o.attack) {
    fprintf(stderr, "aisbx attack: --attack NAME is required\n");
    usage("attack");
    return EXIT_BADINPUT;
  }
  int kind = adv_attack_kind_from_name(o.attack);
  if (kind < 0) {
    fprintf(stderr, "aisbx attack: unknown attack '%s'\n", o.attack);
    usage("attack");
    return EXIT_BADINPUT;
  }
  adv_attack_params p = adv_attack_default_params((adv_attack_kind)kind);
  p.norm = o.p.norm;
  if (kind == ADV_ATTACK_CW_L2 || kind == ADV_ATTACK_DEEPFOOL)
    p.norm = o.p.norm; /* as asked; default from the CLI is inf */
  if (o.have_eps) p.eps = o.p.eps;
  if (o.have_steps) p.steps = o.p.steps;
  if (o.have_step) p.step_size = o.p.step_size;
  if (o.have_restarts) p.restarts = o.p.restarts;
  if (o.have_queries) p.queries = o.p.queries;
  p.seed = o.p.seed;
  p.threads = o.p.threads;
  p.batch = o.p.batch;
  if (o.targeted)
    p.targeted = 1;
  loaded L;
  if ((rc = load_inputs("attack", &o, &L))) {
    free_inputs(&L);
    return rc;
  }
  int64_t K = 0;
  {
    /* classes from the model: one planning pass at batch 1 */
    adv_session_params sp = adv_session_default_params();
    sp.batch = 1;
    sp.logits = 1;
    adv_session *s = NULL;
    adv_err err = {{0}};
    adv_array shape;
    memset(&shape, 0, sizeof(shape));
    shape.dtype = ADV_DTYPE_F32;
    shape.ndim = L.ds.x.ndim;
    memcpy(shape.dims, L.ds.x.dims, sizeof(shape.dims));
    shape.dims[0] = 1;
    adv_binding bd = {adv_model_input_name(L.m, 0), &shape, 0};
    sp.bindings = &bd;
    sp.n_bindings = 1;
    if (adv_session_init(L.m, sp, &s, &err) == 0) {
      int64_t od[ADV_MAX_DIMS];
      if (adv_session_output_shape(s, 0, od) == 2)
        K = od[1];
    }
    adv_session_free(s);
    if (K < 2) {
      fprintf(stderr, "aisbx attack: model output is not N x classes (%s)\n", err.msg);
      free_inputs(&L);
      return EXIT_BADINPUT;
    }
  }
  int64_t *tg = NULL;
  const int64_t *y = L.ds.y.data;
  for (int64_t i = 0; i < L.n; i++)
    if (y[i] < 0 || y[i] >= K) {
      fprintf(stderr, "aisbx attack: label %lld of sample %lld is not a class of "
                      "this %lld-class model\n", (long long)y[i], (long long)i, (long long)K);
      free_inputs(&L);
      return EXIT_BADINPUT;
    }
  int needs_targets = p.targeted && kind != ADV_ATTACK_APGD_T && kind != ADV_ATTACK_FAB_T;
  if (needs_targets) {
    if (o.target >= K) {
      fprintf(stderr, "aisbx attack: --target %ld but the model has %lld classes\n",
              o.target, (long long)K);
      free_inputs(&L);
      return EXIT_BADINPUT;
    }
    tg = malloc(sizeof(int64_t) * (size_t)L.n);
    if (!tg) {
      free_inputs(&L);
      return 1;
    }
    uint64_t s = p.seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int64_t i = 0; i < L.n; i++) {
      if (o.target >= 0) {
        tg[i] = o.target;
      } else { /* random wrong class, reproducible from the seed */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int64_t r = (int64_t)((s >> 33) % (uint64_t)(K - 1));
        tg[i] = r >= y[i] ? r + 1 : r;
      }
    }
  }
  adv_attack_result res;
  adv_err err = {{0}};
  prog pg = {o.quiet, 0};
  double t0 = now_s();
  rc = adv_attack_run(L.m, L.ds.x.data, L.n, y, tg, p, progress_cb, &pg, NULL, &res, &err);
  double wall = now_s() - t0;
  if (!o.quiet && isatty(2))
    fprintf(stderr, "\r%40s\r", "");
  if (rc) {
    fprintf(stderr, "aisbx attack: %s\n", err.msg);
    free(tg);
    free_inputs(&L);
    return rc == ADV_EINVAL || rc == ADV_EUNSUPPORTED ? EXIT_BADINPUT : 1;
  }
  int64_t correct = 0, robust = 0, broken = 0;
  unsigned char *mask = calloc((size_t)L.n, 1);
  for (int64_t i = 0; i < L.n; i++) {
    int c = res.pred_clean[i] == y[i];
    correct += c;
    if (c && res.success[i]) {
      broken++;
      if (mask)
        mask[i] = 1;
    }
    robust += c && !res.success[i];
  }
  char tmp[4096];
  FILE *f = open_out(o.out, tmp, sizeof(tmp));
  if (!f || !mask) {
    fprintf(stderr, "aisbx attack: cannot write %s\n", o.out);
    if (f)
      fclose(f);
    free(mask);
    free(tg);
    adv_attack_result_free(&res);
    free_inputs(&L);
    return 1;
  }
  jw w = {f, 0, {0}};
  jw_begin_obj(&w);
  write_header(&w, "attack", &o, &L);
  jw_key(&w, "attack"); jw_str(&w, adv_attack_name((adv_attack_kind)kind));
  write_params(&w, &p);
  jw_key(&w, "clean_accuracy"); jw_num(&w, (double)correct / (double)L.n);
  jw_key(&w, "robust_accuracy"); jw_num(&w, (double)robust / (double)L.n);
  jw_key(&w, "attack_success_rate"); jw_num(&w, correct ? (double)broken / (double)correct : 0.0);
  jw_key(&w, "norms");
  jw_begin_obj(&w);
  stats(&w, "linf", res.linf, mask, L.n);
  stats(&w, "l2", res.l2, mask, L.n);
  stats(&w, "l0", res.l0, mask, L.n);
  jw_end_obj(&w);
  jw_key(&w, "queries");
  jw_begin_obj(&w);
  jw_key(&w, "forward"); jw_int(&w, res.forwards);
  jw_key(&w, "backward"); jw_int(&w, res.backwards);
  jw_key(&w, "mean_per_sample"); jw_num(&w, (double)res.forwards / (double)L.n);
  jw_end_obj(&w);
  jw_key(&w, "wall_time_s"); jw_num(&w, wall);
  jw_key(&w, "per_sample");
  jw_begin_obj(&w);
  write_i64_arr(&w, "label", y, L.n);
  if (tg)
    write_i64_arr(&w, "target", tg, L.n);
  write_i64_arr(&w, "pred_clean", res.pred_clean, L.n);
  write_i64_arr(&w, "pred_adv", res.pred_adv, L.n);
  jw_key(&w, "success");
  jw_begin_arr(&w);
  for (int64_t i = 0; i < L.n; i++)
    jw_bool(&w, res.success[i]);
  jw_end_arr(&w);
  write_f_arr(&w, "linf", res.linf, L.n);
  write_f_arr(&w, "l2", res.l2, L.n);
  write_f_arr(&w, "l0", res.l0, L.n);
  write_i64_arr(&w, "queries", res.queries, L.n);
  jw_end_obj(&w);
  jw_end_obj(&w);
  fputc('\n', f);
  int st = close_out(f, tmp, o.out);
  if (!st && o.adv)
    st = write_adv(o.adv, res.x_adv, &L);
  printf("%s: clean accuracy %.4f, robust accuracy %.4f, success rate %.4f, "
         "%.2f s -> %s\n",
         adv_attack_name((adv_attack_kind)kind), (double)correct / (double)L.n,
         (double)robust / (double)L.n, correct ? (double)broken / (double)correct : 0.0,
         wall, o.out);
  free(mask);
  free(tg);
  adv_attack_result_free(&res);
  free_inputs(&L);
  return st;
}

/* ---------------- evaluate ---------------- */

typedef struct suite_item {
  adv_attack_kind kind;
  int restarts;
} suite_item;

typedef struct eps_rec {
  float eps;
  int64_t robust;
  int n_att;
  const char *att[16];
  int64_t newly[16];
  double secs[16];
  int64_t fw[16], bw[16];
} eps_rec;

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

int cmd_evaluate(int argc, char **argv) {
  opts o;
  int rc = parse(argc, argv, "evaluate", &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  suite_item items[16];
  int ni = 0;
  const char *suite = o.suite ? o.suite : "autoattack-standard";
  if (!strcmp(suite, "autoattack-standard")) {
    suite_item s[] = {{ADV_ATTACK_APGD_CE, 1}, {ADV_ATTACK_APGD_T, 1},
                      {ADV_ATTACK_FAB_T, 1}, {ADV_ATTACK_SQUARE, 1}};
    memcpy(items, s, sizeof(s));
    ni = 4;
  } else if (!strcmp(suite, "autoattack-plus")) {
    suite_item s[] = {{ADV_ATTACK_APGD_CE, 5}, {ADV_ATTACK_APGD_DLR, 5},
                      {ADV_ATTACK_FAB, 5},     {ADV_ATTACK_SQUARE, 1},
                      {ADV_ATTACK_APGD_T, 1},  {ADV_ATTACK_FAB_T, 1}};
    memcpy(items, s, sizeof(s));
    ni = 6;
  } else if (!strcmp(suite, "custom")) {
    if (!o.attacks) {
      fprintf(stderr, "aisbx evaluate: --suite custom needs --attacks a,b,...\n");
      return EXIT_BADINPUT;
    }
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", o.attacks);
    for (char *t = strtok(buf, ","); t && ni < 16; t = strtok(NULL, ",")) {
      int k = adv_attack_kind_from_name(t);
      if (k < 0) {
        fprintf(stderr, "aisbx evaluate: unknown attack '%s'\n", t);
        return EXIT_BADINPUT;
      }
      items[ni].kind = (adv_attack_kind)k;
      items[ni].restarts = o.have_restarts ? o.p.restarts : 1;
      ni++;
    }
  } else {
    fprintf(stderr, "aisbx evaluate: unknown suite '%s'\n", suite);
    usage("evaluate");
    return EXIT_BADINPUT;
  }
  float eps_list[64];
  int ne = 0;
  if (o.eps_sweep) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", o.eps_sweep);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
      double d;
      if (ne >= 64 || parse_num(t, 0, 1e6, &d)) {
        fprintf(stderr, "aisbx evaluate: bad --eps-sweep value '%s' (max 64 values)\n", t);
        return EXIT_BADINPUT;
      }
      eps_list[ne++] = (float)d;
    }
    qsort(eps_list, (size_t)ne, sizeof(float), cmp_float);
  } else {
    eps_list[ne++] = o.have_eps ? o.p.eps
                                : (o.p.norm == ADV_NORM_LINF ? 8.f / 255.f : 0.5f);
  }
  if (ne == 0) {
    fprintf(stderr, "aisbx evaluate: empty --eps-sweep\n");
    return EXIT_BADINPUT;
  }
  loaded L;
  if ((rc = load_inputs("evaluate", &o, &L))) {
    free_inputs(&L);
    return rc;
  }
  const int64_t *y = L.ds.y.data;
  int64_t n = L.n, per = L.per;
  const float *x = L.ds.x.data;
  float *xadv = malloc(sizeof(float) * (size_t)(n * per));
  float *sub = malloc(sizeof(float) * (size_t)(n * per));
  int64_t *sub_y = malloc(sizeof(int64_t) * (size_t)n), *idx = malloc(sizeof(int64_t) * (size_t)n);
  int64_t *pred_clean = malloc(sizeof(int64_t) * (size_t)n);
  unsigned char *robust = calloc((size_t)n, 1);
  int64_t *broken_by = malloc(sizeof(int64_t) * (size_t)n);
  float *bk_linf = calloc((size_t)n, sizeof(float)), *bk_l2 = calloc((size_t)n, sizeof(float));
  eps_rec *rec = calloc((size_t)ne, sizeof(eps_rec));
  char warnings[8][256];
  int nw = 0;
  if (!xadv || !sub || !sub_y || !idx || !pred_clean || !robust || !broken_by ||
      !bk_linf || !bk_l2 || !rec) {
    fprintf(stderr, "aisbx evaluate: out of memory\n");
    rc = 1;
    goto done;
  }
  memcpy(xadv, x, sizeof(float) * (size_t)(n * per));
  adv_err err = {{0}};
  /* clean predictions and AutoAttack's sanity checks */
  {
    adv_attack_params cp = adv_attack_default_params(ADV_ATTACK_FGSM);
    cp.eps = 0.f;
    cp.threads = o.p.threads;
    cp.batch = o.p.batch;
    adv_attack_result r0;
    if ((rc = adv_attack_run(L.m, x, n, y, NULL, cp, NULL, NULL, NULL, &r0, &err))) {
      fprintf(stderr, "aisbx evaluate: %s\n", err.msg);
      rc = rc == ADV_EINVAL || rc == ADV_EUNSUPPORTED ? EXIT_BADINPUT : 1;
      goto done;
    }
    memcpy(pred_clean, r0.pred_clean, sizeof(int64_t) * (size_t)n);
    adv_attack_result_free(&r0);
    for (int64_t i = 0; i < n; i++) {
      robust[i] = pred_clean[i] == y[i];
      broken_by[i] = -1;
    }
    /* randomness: two passes of the same inputs must agree */
    adv_session_params sp = adv_session_default_params();
    int64_t nb = n < 64 ? n : 64;
    sp.batch = (int)nb;
    sp.logits = 1;
    sp.grad = 1;
    sp.threads = o.p.threads;
    adv_session *s = NULL;
    adv_array shape;
    memset(&shape, 0, sizeof(shape));
    shape.dtype = ADV_DTYPE_F32;
    shape.ndim = L.ds.x.ndim;
    memcpy(shape.dims, L.ds.x.dims, sizeof(shape.dims));
    shape.dims[0] = nb;
    adv_binding bd = {adv_model_input_name(L.m, 0), &shape, 0};
    sp.bindings = &bd;
    sp.n_bindings = 1;
    if (adv_session_init(L.m, sp, &s, &err) == 0) {
      int64_t od[ADV_MAX_DIMS];
      adv_session_output_shape(s, 0, od);
      int64_t K = od[1];
      float *z1 = malloc(sizeof(float) * (size_t)(nb * K)), *z2 = malloc(sizeof(float) * (size_t)(nb * K));
      float *g = malloc(sizeof(float) * (size_t)(nb * per));
      if (z1 && z2 && g && adv_session_forward(s, x, z1, &err) == 0 &&
          adv_session_forward(s, x, z2, &err) == 0) {
        if (memcmp(z1, z2, sizeof(float) * (size_t)(nb * K)))
          snprintf(warnings[nw++], 256, "randomized model: two forward passes on the "
                                        "same input differ (use EOT; results may be optimistic)");
        int probs = 1;
        for (int64_t i = 0; i < nb && probs; i++) {
          double sum = 0;
          for (int64_t c = 0; c < K; c++) {
            sum += z1[i * K + c];
            probs &= z1[i * K + c] >= 0 && z1[i * K + c] <= 1;
          }
          probs &= fabs(sum - 1.0) < 1e-4;
        }
        if (probs || adv_model_output_is_probability(L.m))
          snprintf(warnings[nw++], 256, "the model outputs probabilities, not logits; "
                                        "DLR-based attacks need logits%s",
                   adv_model_output_is_probability(L.m) ? " (the final Softmax is bypassed)" : "");
        adv_loss_params lp = adv_loss_default_params(ADV_LOSS_CE);
        if (adv_session_grad(s, x, lp, y, NULL, z1, NULL, g, &err) == 0) {
          int64_t zero = 0;
          for (int64_t i = 0; i < nb; i++) {
            int allz = 1;
            for (int64_t k = 0; k < per && allz; k++)
              allz = g[i * per + k] == 0.f;
            zero += allz;
          }
          if (zero)
            snprintf(warnings[nw++], 256, "zero gradients on %lld of %lld samples: "
                                          "possible gradient masking", (long long)zero, (long long)nb);
        }
      }
      free(z1);
      free(z2);
      free(g);
    }
    adv_session_free(s);
  }
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++)
    correct += robust[i];
  double t_all = now_s();
  int64_t square_extra = 0;
  prog pg = {o.quiet, 0};
  for (int e = 0; e < ne; e++) {
    rec[e].eps = eps_list[e];
    for (int a = 0; a < ni; a++) {
      int64_t m = 0;
      for (int64_t i = 0; i < n; i++)
        if (robust[i]) {
          idx[m] = i;
          sub_y[m] = y[i];
          memcpy(sub + m * per, x + i * per, sizeof(float) * (size_t)per);
          m++;
        }
      rec[e].att[a] = adv_attack_name(items[a].kind);
      rec[e].n_att = a + 1;
      if (m == 0)
        continue;
      adv_attack_params p = adv_attack_default_params(items[a].kind);
      p.norm = o.p.norm;
      p.eps = eps_list[e];
      p.restarts = items[a].restarts;
      p.seed = o.p.seed;
      p.threads = o.p.threads;
      p.batch = o.p.batch;
      if (o.have_steps && items[a].kind != ADV_ATTACK_SQUARE)
        p.steps = o.p.steps;
      if (o.have_queries)
        p.queries = o.p.queries;
      adv_attack_result r;
      double t0 = now_s();
      if (!o.quiet)
        fprintf(stderr, "  eps %g: %s on %lld robust points\n", (double)eps_list[e],
                adv_attack_name(items[a].kind), (long long)m);
      rc = adv_attack_run(L.m, sub, m, sub_y, NULL, p, progress_cb, &pg, NULL, &r, &err);
      if (rc) {
        fprintf(stderr, "aisbx evaluate: %s: %s\n", adv_attack_name(items[a].kind), err.msg);
        rc = rc == ADV_EINVAL || rc == ADV_EUNSUPPORTED ? EXIT_BADINPUT : 1;
        goto done;
      }
      rec[e].secs[a] = now_s() - t0;
      rec[e].fw[a] = r.forwards;
      rec[e].bw[a] = r.backwards;
      for (int64_t j = 0; j < m; j++)
        if (r.success[j]) {
          int64_t i = idx[j];
          robust[i] = 0;
          broken_by[i] = a;
          bk_linf[i] = r.linf[j];
          bk_l2[i] = r.l2[j];
          memcpy(xadv + i * per, r.x_adv + j * per, sizeof(float) * (size_t)per);
          rec[e].newly[a]++;
        }
      if (items[a].kind == ADV_ATTACK_SQUARE && a > 0)
        square_extra += rec[e].newly[a];
      adv_attack_result_free(&r);
    }
    int64_t rb = 0;
    for (int64_t i = 0; i < n; i++)
      rb += robust[i];
    rec[e].robust = rb;
    if (!o.quiet)
      fprintf(stderr, "  eps %g: robust accuracy %.4f\n", (double)eps_list[e],
              (double)rb / (double)n);
  }
  if (square_extra && nw < 8)
    snprintf(warnings[nw++], 256, "the black-box Square attack broke %lld points the "
                                  "white-box attacks missed: possible gradient masking",
             (long long)square_extra);
  double wall = now_s() - t_all;
  char tmp[4096];
  FILE *f = open_out(o.out, tmp, sizeof(tmp));
  if (!f) {
    fprintf(stderr, "aisbx evaluate: cannot write %s\n", o.out);
    rc = 1;
    goto done;
  }
  jw w = {f, 0, {0}};
  jw_begin_obj(&w);
  write_header(&w, "evaluation", &o, &L);
  jw_key(&w, "suite"); jw_str(&w, suite);
  jw_key(&w, "attacks");
  jw_begin_arr(&w);
  for (int a = 0; a < ni; a++) {
    jw_begin_obj(&w);
    jw_key(&w, "attack"); jw_str(&w, adv_attack_name(items[a].kind));
    adv_attack_params p = adv_attack_default_params(items[a].kind);
    p.norm = o.p.norm;
    p.eps = eps_list[ne - 1];
    p.restarts = items[a].restarts;
    p.seed = o.p.seed;
    p.threads = o.p.threads;
    p.batch = o.p.batch;
    if (o.have_steps && items[a].kind != ADV_ATTACK_SQUARE)
      p.steps = o.p.steps;
    if (o.have_queries)
      p.queries = o.p.queries;
    write_params(&w, &p);
    jw_end_obj(&w);
  }
  jw_end_arr(&w);
  jw_key(&w, "norm"); jw_str(&w, o.p.norm == ADV_NORM_LINF ? "inf" : "2");
  jw_key(&w, "eps"); jw_num(&w, eps_list[ne - 1]);
  jw_key(&w, "seed"); jw_int(&w, (int64_t)o.p.seed);
  jw_key(&w, "clean_accuracy"); jw_num(&w, (double)correct / (double)n);
  jw_key(&w, "robust_accuracy"); jw_num(&w, (double)rec[ne - 1].robust / (double)n);
  jw_key(&w, "attack_success_rate");
  jw_num(&w, correct ? (double)(correct - rec[ne - 1].robust) / (double)correct : 0.0);
  jw_key(&w, "curve");
  jw_begin_arr(&w);
  for (int e = 0; e < ne; e++) {
    jw_begin_obj(&w);
    jw_key(&w, "eps"); jw_num(&w, rec[e].eps);
    jw_key(&w, "robust_accuracy"); jw_num(&w, (double)rec[e].robust / (double)n);
    jw_key(&w, "per_attack");
    jw_begin_arr(&w);
    int64_t remaining = e ? rec[e - 1].robust : correct;
    for (int a = 0; a < rec[e].n_att; a++) {
      remaining -= rec[e].newly[a];
      jw_begin_obj(&w);
      jw_key(&w, "attack"); jw_str(&w, rec[e].att[a]);
      jw_key(&w, "newly_broken"); jw_int(&w, rec[e].newly[a]);
      jw_key(&w, "robust_accuracy_after"); jw_num(&w, (double)remaining / (double)n);
      jw_key(&w, "forward_queries"); jw_int(&w, rec[e].fw[a]);
      jw_key(&w, "backward_queries"); jw_int(&w, rec[e].bw[a]);
      jw_key(&w, "time_s"); jw_num(&w, rec[e].secs[a]);
      jw_end_obj(&w);
    }
    jw_end_arr(&w);
    jw_end_obj(&w);
  }
  jw_end_arr(&w);
  unsigned char *mask = calloc((size_t)n, 1);
  if (mask)
    for (int64_t i = 0; i < n; i++)
      mask[i] = broken_by[i] >= 0;
  jw_key(&w, "norms");
  jw_begin_obj(&w);
  if (mask) {
    stats(&w, "linf", bk_linf, mask, n);
    stats(&w, "l2", bk_l2, mask, n);
  }
  jw_end_obj(&w);
  free(mask);
  int64_t tf = 0, tb = 0;
  for (int e = 0; e < ne; e++)
    for (int a = 0; a < rec[e].n_att; a++) {
      tf += rec[e].fw[a];
      tb += rec[e].bw[a];
    }
  jw_key(&w, "queries");
  jw_begin_obj(&w);
  jw_key(&w, "forward"); jw_int(&w, tf);
  jw_key(&w, "backward"); jw_int(&w, tb);
  jw_end_obj(&w);
  jw_key(&w, "wall_time_s"); jw_num(&w, wall);
  jw_key(&w, "warnings");
  jw_begin_arr(&w);
  for (int i = 0; i < nw; i++)
    jw_str(&w, warnings[i]);
  jw_end_arr(&w);
  jw_key(&w, "per_sample");
  jw_begin_obj(&w);
  write_i64_arr(&w, "label", y, n);
  write_i64_arr(&w, "pred_clean", pred_clean, n);
  jw_key(&w, "robust");
  jw_begin_arr(&w);
  for (int64_t i = 0; i < n; i++)
    jw_bool(&w, robust[i]);
  jw_end_arr(&w);
  jw_key(&w, "broken_by");
  jw_begin_arr(&w);
  for (int64_t i = 0; i < n; i++) {
    if (broken_by[i] >= 0)
      jw_str(&w, adv_attack_name(items[broken_by[i]].kind));
    else
      jw_null(&w);
  }
  jw_end_arr(&w);
  write_f_arr(&w, "linf", bk_linf, n);
  write_f_arr(&w, "l2", bk_l2, n);
  jw_end_obj(&w);
  jw_end_obj(&w);
  fputc('\n', f);
  rc = close_out(f, tmp, o.out);
  if (!rc && o.adv)
    rc = write_adv(o.adv, xadv, &L);
  for (int i = 0; i < nw; i++)
    fprintf(stderr, "warning: %s\n", warnings[i]);
  printf("%s (%s, eps %g): clean accuracy %.4f, robust accuracy %.4f, %.1f s -> %s\n",
         suite, o.p.norm == ADV_NORM_LINF ? "Linf" : "L2", (double)eps_list[ne - 1],
         (double)correct / (double)n, (double)rec[ne - 1].robust / (double)n, wall, o.out);
done:
  free(xadv);
  free(sub);
  free(sub_y);
  free(idx);
  free(pred_clean);
  free(robust);
  free(broken_by);
  free(bk_linf);
  free(bk_l2);
  free(rec);
  free_inputs(&L);
  return rc;
}
