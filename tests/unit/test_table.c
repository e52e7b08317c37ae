/*
 * test_table.c - the attack table, the job-spec parameter table and its
 * validation (src/engine/attacks/table.c), and the op table's rows.
 *
 * Links adv_table alone (like the server) plus registry checks through
 * libadv; the expectations come from the attack papers / docs, not from
 * running the code: e.g. AutoAttack-standard is APGD-CE, APGD-T, FAB-T,
 * Square (Croce & Hein 2020, Sec. 4).
 */
#include "adv/attack.h"
#include "adv/job.h"
#include "harness.h"

#include <stdint.h>

int adv__op_table_check(void);

TEST(names_round_trip) {
  for (int k = 0; k < ADV_ATTACK_COUNT; k++) {
    const char *n = adv_attack_name((adv_attack_kind)k);
    CHECK(n && strcmp(n, "unknown"));
    CHECK_EQ_INT(adv_attack_kind_from_name(n), k);
    adv_attack_params p = adv_attack_default_params((adv_attack_kind)k);
    CHECK_EQ_INT(p.kind, k);
    /* the default norm is one the attack supports */
    CHECK(adv_attack_norms((adv_attack_kind)k) & (1u << p.norm));
  }
  CHECK_EQ_INT(adv_attack_kind_from_name("cw-l2"), ADV_ATTACK_CW_L2);
  CHECK_EQ_INT(adv_attack_kind_from_name("cw_l2"), ADV_ATTACK_CW_L2);
  CHECK_EQ_INT(adv_attack_kind_from_name("hopskipjump"), ADV_ATTACK_HSJ);
  CHECK_EQ_INT(adv_attack_kind_from_name("mi-fgsm"), ADV_ATTACK_MIFGSM);
  CHECK_EQ_INT(adv_attack_kind_from_name("cw-l"), -1); /* no prefix match */
  CHECK_EQ_INT(adv_attack_kind_from_name("apgd"), -1);
  CHECK_EQ_INT(adv_attack_kind_from_name(NULL), -1);
  CHECK(!strcmp(adv_attack_name(ADV_ATTACK_COUNT), "unknown"));
  CHECK(!strcmp(adv_attack_name((adv_attack_kind)-1), "unknown"));
}

TEST(flags) {
  /* minimal-norm attacks: FAB, FAB-T, C&W, DeepFool, HSJ
   * (docs/attacks-minimal.md) */
  int minimal[ADV_ATTACK_COUNT] = {0};
  minimal[ADV_ATTACK_FAB] = minimal[ADV_ATTACK_FAB_T] =
      minimal[ADV_ATTACK_CW_L2] = minimal[ADV_ATTACK_DEEPFOOL] =
          minimal[ADV_ATTACK_HSJ] = 1;
  for (int k = 0; k < ADV_ATTACK_COUNT; k++)
    CHECK_EQ_INT(adv_attack_is_minimal((adv_attack_kind)k), minimal[k]);
  CHECK_EQ_INT(adv_attack_norms(ADV_ATTACK_CW_L2), ADV_NORMS_L2);
  CHECK_EQ_INT(adv_attack_target_mode(ADV_ATTACK_APGD_T), ADV_TARGET_TOPK);
  CHECK_EQ_INT(adv_attack_target_mode(ADV_ATTACK_FAB_T), ADV_TARGET_TOPK);
  CHECK_EQ_INT(adv_attack_target_mode(ADV_ATTACK_APGD_CE), ADV_TARGET_NONE);
  CHECK(adv_attack_param_mask(ADV_ATTACK_SQUARE) & ADV_PARAM_P_INIT);
  CHECK(adv_attack_param_mask(ADV_ATTACK_CW_L2) & ADV_PARAM_BINARY_STEPS);
  CHECK(!(adv_attack_param_mask(ADV_ATTACK_PGD) & ADV_PARAM_QUERIES));
  /* the documented defaults: L2 for the minimal-norm L2 attacks */
  CHECK_EQ_INT(adv_attack_default_params(ADV_ATTACK_DEEPFOOL).norm,
               ADV_NORM_L2);
  CHECK_EQ_INT(adv_attack_default_params(ADV_ATTACK_HSJ).norm, ADV_NORM_L2);
}

/* Validates s and checks the message starts with "<param>:". */
static int rejects(const adv_job_spec *s, const char *param) {
  adv_err err = {{0}};
  int rc = adv_job_spec_validate(s, &err);
  size_t n = strlen(param);
  int ok = rc == ADV_EINVAL && !strncmp(err.msg, param, n) && err.msg[n] == ':';
  if (!ok)
    fprintf(stderr, "  want '%s: ...', got rc %d '%s'\n", param, rc, err.msg);
  return ok;
}

TEST(spec_set) {
  adv_job_spec s = adv_job_spec_default_params();
  adv_err err = {{0}};
  CHECK(adv_job_spec_validate(&s, &err) == 0);
  CHECK(adv_job_spec_set(&s, "seed", "9007199254740993", &err) == 0);
  CHECK(s.params.seed == 9007199254740993ull); /* 2^53 + 1: exact */
  CHECK(adv_job_spec_set(&s, "seed", "18446744073709551615", &err) == 0);
  CHECK(s.params.seed == UINT64_MAX);
  CHECK(adv_job_spec_set(&s, "seed", "1e19", &err) == ADV_EINVAL);
  CHECK(!strncmp(err.msg, "seed:", 5));
  CHECK(adv_job_spec_set(&s, "seed", "18446744073709551616", &err) ==
        ADV_EINVAL);
  CHECK(adv_job_spec_set(&s, "seed", "-1", &err) == ADV_EINVAL);
  CHECK(s.params.seed == UINT64_MAX); /* unchanged after errors */
  CHECK(adv_job_spec_set(&s, "steps", "2.5", &err) == ADV_EINVAL);
  CHECK(adv_job_spec_set(&s, "steps", "1000001", &err) == ADV_EINVAL);
  CHECK(!strncmp(err.msg, "steps:", 6));
  CHECK(adv_job_spec_set(&s, "step_size", "nan", &err) == ADV_EINVAL);
  CHECK(!strncmp(err.msg, "step_size:", 10));
  CHECK(adv_job_spec_set(&s, "frobnicate", "1", &err) == ADV_ENOTFOUND);
  CHECK(adv_job_spec_set(&s, "eps_sweep", "0.1,0.3,0.2", &err) == 0);
  CHECK_EQ_INT(s.n_eps, 3);
  CHECK(s.eps_sweep[2] == 0.2f);
  CHECK(adv_job_spec_set(&s, "eps_sweep", "0.1,,0.2", &err) == ADV_EINVAL);
  CHECK(!strncmp(err.msg, "eps_sweep:", 10));
  CHECK(adv_job_spec_set(&s, "attacks", "apgd-ce,cw-l2", &err) == 0);
  CHECK_EQ_INT(s.n_attacks, 2);
  CHECK_EQ_INT(s.attacks[1], ADV_ATTACK_CW_L2);
  CHECK(adv_job_spec_set(&s, "attacks", "apgd-ce,apgd", &err) == ADV_EINVAL);
  CHECK(adv_job_spec_set(&s, "norm", "1", &err) == ADV_EINVAL);
  CHECK(adv_job_spec_set(&s, "confidence", "5", &err) == 0);
  CHECK(s.params.kappa == 5.f && (s.set & ADV_PARAM_CONFIDENCE));
}

TEST(spec_validate) {
  adv_job_spec s = adv_job_spec_default_params();
  adv_err err = {{0}};
  s.params.step_size = -1;
  CHECK(rejects(&s, "step_size"));
  s = adv_job_spec_default_params();
  s.params.restarts = 5000;
  CHECK(rejects(&s, "restarts"));
  s = adv_job_spec_default_params();
  s.params.p_init = 1.5f;
  CHECK(rejects(&s, "p_init"));
  /* C&W is L2 only */
  s = adv_job_spec_default_params();
  CHECK(adv_job_spec_set(&s, "attack", "cw", &err) == 0);
  CHECK(adv_job_spec_validate(&s, &err) == 0);
  CHECK(adv_job_spec_set(&s, "norm", "inf", &err) == 0);
  CHECK(rejects(&s, "norm"));
  /* APGD-CE cannot be targeted, APGD-T cannot be untargeted */
  s = adv_job_spec_default_params();
  adv_job_spec_set(&s, "attack", "apgd-ce", &err);
  adv_job_spec_set(&s, "targeted", "true", &err);
  CHECK(rejects(&s, "targeted"));
  s = adv_job_spec_default_params();
  adv_job_spec_set(&s, "attack", "apgd-t", &err);
  adv_job_spec_set(&s, "targeted", "false", &err);
  CHECK(rejects(&s, "targeted"));
  /* evaluation */
  s = adv_job_spec_default_params();
  adv_job_spec_set(&s, "kind", "evaluation", &err);
  CHECK(adv_job_spec_validate(&s, &err) == 0);
  adv_job_spec_set(&s, "suite", "custom", &err);
  CHECK(rejects(&s, "attacks"));
  adv_job_spec_set(&s, "attacks", "apgd-ce,cw", &err);
  CHECK(rejects(&s, "norm")); /* the evaluation's L-inf does not fit cw */
  adv_job_spec_set(&s, "norm", "2", &err);
  CHECK(adv_job_spec_validate(&s, &err) == 0);
  s.n_eps = 65;
  CHECK(rejects(&s, "eps_sweep"));
  s.n_eps = 0;
  s.shard_offset = -1;
  CHECK(rejects(&s, "shard_offset"));
  s = adv_job_spec_default_params();
  adv_job_spec_set(&s, "eps_sweep", "0.1", &err);
  CHECK(rejects(&s, "eps_sweep")); /* attack jobs take eps */
  s = adv_job_spec_default_params();
  s.params.clip_min = 1;
  s.params.clip_max = 0;
  CHECK(rejects(&s, "clip_max"));
}

TEST(suites_and_params) {
  adv_job_spec s = adv_job_spec_default_params();
  adv_attack_kind k[ADV_JOB_MAX_ATTACKS];
  int r[ADV_JOB_MAX_ATTACKS];
  s.kind = ADV_JOB_EVALUATION;
  CHECK_EQ_INT(adv_job_suite_items(&s, k, r), 4);
  CHECK(k[0] == ADV_ATTACK_APGD_CE && k[1] == ADV_ATTACK_APGD_T &&
        k[2] == ADV_ATTACK_FAB_T && k[3] == ADV_ATTACK_SQUARE);
  s.suite = ADV_SUITE_AUTOATTACK_PLUS;
  CHECK_EQ_INT(adv_job_suite_items(&s, k, r), 6);
  CHECK_EQ_INT(r[0], 5);
  /* steps are not applied to Square inside an evaluation */
  adv_err err = {{0}};
  adv_job_spec_set(&s, "steps", "7", &err);
  CHECK_EQ_INT(adv_job_attack_params(&s, ADV_ATTACK_SQUARE, 0.1f, 1).steps,
               adv_attack_default_params(ADV_ATTACK_SQUARE).steps);
  CHECK_EQ_INT(adv_job_attack_params(&s, ADV_ATTACK_APGD_CE, 0.1f, 1).steps, 7);
  /* an attack job keeps the attack's own norm unless norm is set */
  s = adv_job_spec_default_params();
  adv_job_spec_set(&s, "attack", "deepfool", &err);
  CHECK_EQ_INT(adv_job_attack_params(&s, ADV_ATTACK_DEEPFOOL, -1, 1).norm,
               ADV_NORM_L2);
  adv_job_spec_set(&s, "norm", "inf", &err);
  CHECK_EQ_INT(adv_job_attack_params(&s, ADV_ATTACK_DEEPFOOL, -1, 1).norm,
               ADV_NORM_LINF);
}

TEST(param_table) {
  int n = 0;
  const adv_job_param_info *t = adv_job_param_table(&n);
  /* every attack-parameter bit is settable by some job parameter, and every
   * bit an attack declares exists */
  uint32_t all = 0, covered = 0;
#define BIT(name, b) all |= ADV_PARAM_##name;
  ADV_PARAM_MAP(BIT)
#undef BIT
  for (int i = 0; i < n; i++)
    covered |= t[i].bit & all;
  CHECK_EQ_INT(covered, all);
  for (int k = 0; k < ADV_ATTACK_COUNT; k++)
    CHECK_EQ_INT(adv_attack_param_mask((adv_attack_kind)k) & ~all, 0);
  CHECK(n > 20 && t[n].name == NULL);
  for (int i = 0; i < n; i++) {
    CHECK(t[i].name && t[i].help);
    for (const char *c = t[i].name; *c; c++)
      CHECK((*c >= 'a' && *c <= 'z') || *c == '_');
    for (int j = 0; j < i; j++)
      CHECK(strcmp(t[i].name, t[j].name));
  }
}

TEST(op_table) {
  CHECK_EQ_INT(adv__op_table_check(), -1);
}

static const char *docs_dir = "docs";

/* Compares one documented default with the code's; 1 when equal. */
static int default_matches(const char *attack, const char *param,
                           const char *val) {
  int k = adv_attack_kind_from_name(attack);
  if (k < 0)
    return 0;
  adv_job_spec s = adv_job_spec_default_params();
  s.params = adv_attack_default_params((adv_attack_kind)k);
  const adv_job_param_info *q = NULL;
  for (const adv_job_param_info *t = adv_job_param_table(NULL); t->name; t++)
    if (!strcmp(t->name, param))
      q = t;
  if (!q)
    return 0;
  const char *f = (const char *)&s + q->offset;
  char *end;
  switch (q->type) {
  case ADV_JOB_PT_INT:
    return *(const int *)f == strtol(val, &end, 10) && !*end;
  case ADV_JOB_PT_INT64:
    return *(const int64_t *)f == strtoll(val, &end, 10) && !*end;
  case ADV_JOB_PT_FLOAT:
    return *(const float *)f == (float)strtod(val, &end) && !*end;
  case ADV_JOB_PT_BOOL:
    return *(const int *)f == !strcmp(val, "true");
  case ADV_JOB_PT_NORM:
    return *(const adv_norm *)f ==
           (!strcmp(val, "2") ? ADV_NORM_L2 : ADV_NORM_LINF);
  case ADV_JOB_PT_LOSS:
    return (int)*(const adv_loss_kind *)f == adv_loss_from_name(val);
  default:
    return 0;
  }
}

/* Copies the text between the n-th pair of backticks of a table row. */
static int cell(const char *line, int n, char *out, size_t cap) {
  const char *p = line;
  for (int i = 0; i <= n; i++) {
    p = strchr(p, '`');
    if (!p)
      return -1;
    const char *e = strchr(p + 1, '`');
    if (!e || (size_t)(e - p - 1) >= cap)
      return -1;
    if (i == n) {
      memcpy(out, p + 1, (size_t)(e - p - 1));
      out[e - p - 1] = 0;
      return 0;
    }
    p = e + 1;
  }
  return -1;
}

/* docs/attacks.md "## Defaults": every row must match the code, and the
 * defaults issue 10 asked to pin must be there. */
TEST(documented_defaults) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/attacks.md", docs_dir);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  if (!f)
    return;
  char line[512];
  int in = 0, rows = 0;
  static const char *const required[] = {"cw step_size",
                                         "cw binary_steps",
                                         "cw initial_const",
                                         "cw confidence",
                                         "deepfool overshoot",
                                         "deepfool norm",
                                         "hsj norm",
                                         "square p_init",
                                         "apgd-t n_target_classes",
                                         "fab-t n_target_classes",
                                         NULL};
  int seen[16] = {0};
  while (fgets(line, sizeof(line), f)) {
    if (!strncmp(line, "## ", 3))
      in = !strncmp(line, "## Defaults", 11);
    if (!in || strncmp(line, "| `", 3))
      continue;
    char a[32], p[32], key[80], val[64];
    CHECK(cell(line, 0, a, sizeof(a)) == 0 && cell(line, 1, p, sizeof(p)) == 0);
    const char *v = strrchr(line, '`') + 1; /* " | value |" */
    CHECK(sscanf(v, " | %63[^ |]", val) == 1);
    int ok = default_matches(a, p, val);
    if (!ok)
      fprintf(stderr, "  docs/attacks.md says %s %s = %s; the code disagrees\n",
              a, p, val);
    CHECK(ok);
    rows++;
    snprintf(key, sizeof(key), "%s %s", a, p);
    for (int i = 0; required[i]; i++)
      seen[i] |= !strcmp(required[i], key);
  }
  fclose(f);
  CHECK(rows >= 30);
  for (int i = 0; required[i]; i++) {
    if (!seen[i])
      fprintf(stderr, "  docs/attacks.md Defaults lacks %s\n", required[i]);
    CHECK(seen[i]);
  }
}

/* Random (name, value) sequences from a dictionary of awkward tokens: a
 * failed set leaves the spec byte-identical, every message names the
 * parameter, and a spec that validates gives attack parameters inside the
 * table's ranges. (A deterministic fuzz of the untrusted-input path the
 * server's JSON layer feeds.) */
TEST(spec_set_random) {
  static const char *const vals[] = {
      "",
      "-",
      "0",
      "1",
      "-1",
      "2",
      "inf",
      "linf",
      "l2",
      "nan",
      "1e19",
      "1e-3",
      "0.5",
      "8",
      "-0",
      "0x10",
      " 1",
      "1 ",
      "true",
      "false",
      "attack",
      "evaluation",
      "custom",
      "pgd",
      "apgd-ce,apgd-t",
      "cw,deepfool,hsj",
      ",",
      "apgd-ce,,fab",
      "0.1,0.2,0.3",
      "18446744073709551615",
      "18446744073709551616",
      "9223372036854775808",
      "2147483648",
      "1000000",
      "1000001",
      "1e6",
      "autoattack-plus",
      "0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "a"};
  int nt = 0;
  const adv_job_param_info *t = adv_job_param_table(&nt);
  uint64_t st = 0x9e3779b97f4a7c15ull;
  int bad = 0, valid = 0;
  for (int round = 0; round < 3000 && !bad; round++) {
    adv_job_spec s = adv_job_spec_default_params();
    for (int k = 0; k < 6; k++) {
      st ^= st << 13, st ^= st >> 7, st ^= st << 17;
      const char *name = t[st % (uint64_t)nt].name;
      const char *v = vals[(st >> 20) % (sizeof(vals) / sizeof(vals[0]))];
      adv_job_spec before = s;
      adv_err err = {{0}};
      if (adv_job_spec_set(&s, name, v, &err)) {
        bad |= memcmp(&before, &s, sizeof(s)) != 0;
        bad |= strncmp(err.msg, name, strlen(name)) != 0;
      }
    }
    adv_err err = {{0}};
    if (adv_job_spec_validate(&s, &err)) {
      bad |= strchr(err.msg, ':') == NULL;
      continue;
    }
    valid++;
    adv_attack_kind kinds[ADV_JOB_MAX_ATTACKS];
    int rs[ADV_JOB_MAX_ATTACKS];
    int ni = s.kind == ADV_JOB_ATTACK ? 1 : adv_job_suite_items(&s, kinds, rs);
    if (s.kind == ADV_JOB_ATTACK)
      kinds[0] = s.params.kind, rs[0] = 1;
    for (int i = 0; i < ni; i++) {
      adv_attack_params p = adv_job_attack_params(&s, kinds[i], -1.f, rs[i]);
      bad |= !(p.eps >= 0 && p.eps <= 1e6f) || p.steps < 0 ||
             p.steps > 1000000 || p.restarts < 0 || p.restarts > 1000 ||
             p.threads < 1 || !(adv_attack_norms(kinds[i]) & (1u << p.norm));
    }
  }
  CHECK(!bad);
  CHECK(valid > 100); /* the generator reaches valid specs too */
}

int main(int argc, char **argv) {
  if (argc > 1)
    docs_dir = argv[1];
  RUN(names_round_trip);
  RUN(flags);
  RUN(spec_set);
  RUN(spec_validate);
  RUN(suites_and_params);
  RUN(param_table);
  RUN(op_table);
  RUN(documented_defaults);
  RUN(spec_set_random);
  return harness_report();
}
