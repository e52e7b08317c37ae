/*
 * test_jobspec.c - the job spec's JSON layer (sbx/jobspec.h): JSON maps
 * onto the engine's one parameter table, bad specs name the parameter,
 * canonical JSON round-trips, and the catalogue's defaults are the table's
 * and pass validation.
 */
#include "harness.h"
#include "sbx/jobspec.h"

#include <stdint.h>

static int parse(const char *text, adv_job_spec *s, char *err, size_t n) {
  return sbx_jobspec_parse(text, strlen(text), s, err, n);
}

/* The error of a bad spec starts with "<param>:". */
static void expect_bad(const char *text, const char *param) {
  adv_job_spec s;
  char err[256] = "";
  int rc = parse(text, &s, err, sizeof(err));
  if (rc == 0 || strncmp(err, param, strlen(param)) ||
      err[strlen(param)] != ':')
    fprintf(stderr, "spec %s -> rc %d, err '%s' (want '%s:')\n", text, rc, err,
            param);
  CHECK(rc != 0);
  CHECK(!strncmp(err, param, strlen(param)) && err[strlen(param)] == ':');
}

TEST(json_equals_cli_text) {
  /* the same values given as JSON and as the CLI's text give equal specs */
  adv_job_spec a, b = adv_job_spec_default_params();
  char err[256];
  CHECK_EQ_INT(parse("{\"kind\":\"attack\",\"attack\":\"apgd-t\",\"eps\":0.3,"
                     "\"steps\":7,\"norm\":\"2\",\"n_target_classes\":3,"
                     "\"seed\":9007199254740993}",
                     &a, err, sizeof(err)),
               0);
  adv_err ae;
  CHECK_EQ_INT(adv_job_spec_set(&b, "kind", "attack", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "attack", "apgd-t", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "eps", "0.3", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "steps", "7", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "norm", "2", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "n_target_classes", "3", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "seed", "9007199254740993", &ae), 0);
  CHECK(a.params.eps == b.params.eps);
  CHECK(a.params.seed == 9007199254740993ull);
  CHECK(a.params.seed == b.params.seed);
  CHECK_EQ_INT(a.params.steps, 7);
  CHECK_EQ_INT(a.params.norm, ADV_NORM_L2);
  CHECK_EQ_INT(a.set, b.set);
  CHECK_EQ_INT(a.params.kind, ADV_ATTACK_APGD_T);
}

TEST(seed_full_range) {
  adv_job_spec s;
  char err[256];
  CHECK_EQ_INT(
      parse("{\"seed\":\"18446744073709551615\"}", &s, err, sizeof(err)), 0);
  CHECK(s.params.seed == UINT64_MAX);
  expect_bad("{\"seed\":1e19}", "seed");
  expect_bad("{\"seed\":-1}", "seed");
  expect_bad("{\"seed\":\"18446744073709551616\"}", "seed");
  expect_bad("{\"seed\":2.5}", "seed");
}

TEST(bad_specs_name_the_parameter) {
  expect_bad("{\"bogus\":1}", "bogus");
  expect_bad("{\"eps\":-0.1}", "eps");
  expect_bad("{\"eps\":\"0.3\"}", "eps");
  expect_bad("{\"steps\":2.5}", "steps");
  expect_bad("{\"steps\":-1}", "steps");
  expect_bad("{\"attack\":\"nope\"}", "attack");
  expect_bad("{\"attack\":3}", "attack");
  expect_bad("{\"kind\":\"evaluation\",\"eps_sweep\":[]}", "eps_sweep");
  expect_bad("{\"kind\":\"evaluation\",\"eps_sweep\":[0.1,\"x\"]}",
             "eps_sweep");
  expect_bad("{\"kind\":\"evaluation\",\"suite\":\"custom\",\"attacks\":[\"pgd,"
             "fgsm\"]}",
             "attacks");
  expect_bad("{\"targeted\":\"yes\"}", "targeted");
  expect_bad("{\"norm\":\"3\"}", "norm");
  expect_bad("{\"n\":{}}", "n");
  adv_job_spec s;
  char err[256];
  CHECK(parse("[1]", &s, err, sizeof(err)) != 0);
  CHECK(parse("{\"eps\":0.1,\"eps\":0.2}", &s, err, sizeof(err)) != 0);
  CHECK(parse("{", &s, err, sizeof(err)) != 0);
  char big[SBX_JOBSPEC_MAX_BYTES + 10];
  memset(big, ' ', sizeof(big));
  big[0] = '{';
  big[sizeof(big) - 1] = '}';
  CHECK(sbx_jobspec_parse(big, sizeof(big), &s, err, sizeof(err)) != 0);
}

TEST(canonical_round_trip) {
  const char *docs[] = {
      "{\"kind\":\"attack\",\"attack\":\"cw\",\"confidence\":0.5,"
      "\"binary_steps\":3,\"initial_const\":0.01,\"seed\":42,\"n\":10}",
      "{\"kind\":\"evaluation\",\"suite\":\"custom\",\"attacks\":[\"apgd-ce\","
      "\"square\"],\"eps_sweep\":[0.1,0.2,0.30000001192092896],\"queries\":"
      "100,\"shard_offset\":5,\"shard_count\":20,\"seed\":"
      "\"18446744073709551615\"}",
      "{\"kind\":\"evaluation\",\"suite\":\"autoattack-standard\",\"eps\":"
      "0.031372549,\"norm\":\"inf\"}",
  };
  for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
    adv_job_spec a, b;
    char err[256] = "";
    CHECK_EQ_INT(parse(docs[i], &a, err, sizeof(err)), 0);
    json_t *j = sbx_jobspec_to_json(&a);
    CHECK(j != NULL);
    char *t = json_dumps(j, JSON_COMPACT);
    CHECK_EQ_INT(parse(t, &b, err, sizeof(err)), 0);
    json_t *j2 = sbx_jobspec_to_json(&b);
    CHECK(json_equal(j, j2));
    CHECK_EQ_INT(a.set, b.set);
    CHECK(a.params.eps == b.params.eps && a.params.seed == b.params.seed);
    CHECK_EQ_INT(a.n_eps, b.n_eps);
    for (int k = 0; k < a.n_eps; k++)
      CHECK(a.eps_sweep[k] == b.eps_sweep[k]);
    CHECK_EQ_INT(a.n_attacks, b.n_attacks);
    CHECK_EQ_INT(a.shard_offset, b.shard_offset);
    CHECK_EQ_INT(a.shard_count, b.shard_count);
    free(t);
    json_decref(j);
    json_decref(j2);
  }
}

TEST(input_domain) {
  /* input, mean and std (issue 13) through JSON equal the CLI's text, and
   * round-trip; bad ones name the parameter */
  adv_job_spec a, b = adv_job_spec_default_params();
  char err[256] = "";
  CHECK_EQ_INT(parse("{\"attack\":\"pgd\",\"input\":\"audio\",\"mean\":[0."
                     "485,0.456,0.406],\"std\":[0.25]}",
                     &a, err, sizeof(err)),
               0);
  adv_err ae;
  CHECK_EQ_INT(adv_job_spec_set(&b, "input", "audio", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "mean", "0.485,0.456,0.406", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "std", "0.25", &ae), 0);
  CHECK(!strcmp(a.input, "audio") && !strcmp(b.input, "audio"));
  CHECK_EQ_INT(a.n_mean, 3);
  CHECK_EQ_INT(a.n_std, 1);
  CHECK(a.mean[1] == 0.456f && a.std[0] == 0.25f);
  CHECK(!memcmp(a.mean, b.mean, sizeof(a.mean)) && a.n_mean == b.n_mean);
  CHECK_EQ_INT(a.set, b.set);
  json_t *j = sbx_jobspec_to_json(&a);
  char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
  adv_job_spec c;
  CHECK(t && parse(t, &c, err, sizeof(err)) == 0);
  CHECK(t && !strcmp(c.input, "audio") && c.n_mean == 3 && c.n_std == 1 &&
        !memcmp(c.mean, a.mean, sizeof(a.mean)));
  free(t);
  json_decref(j);
  expect_bad("{\"input\":\"\"}", "input");
  expect_bad("{\"input\":\"a b\"}", "input");
  expect_bad("{\"input\":3}", "input");
  expect_bad("{\"std\":[0]}", "std");
  expect_bad("{\"mean\":[1,2],\"std\":[1,2,3]}", "std");
  expect_bad("{\"mean\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}", "mean");
}

TEST(clip_per_channel) {
  /* clip_min/clip_max as a JSON number or an array (one per channel, issue
   * 13 item 3) equal the CLI's text, round-trip, reach the attack's
   * parameters with their envelope, and bad lists name the parameter */
  adv_job_spec a, b = adv_job_spec_default_params();
  char err[256] = "";
  CHECK_EQ_INT(parse("{\"attack\":\"pgd\",\"clip_min\":[0,0.25,-1],"
                     "\"clip_max\":0.75}",
                     &a, err, sizeof(err)),
               0);
  adv_err ae;
  CHECK_EQ_INT(adv_job_spec_set(&b, "clip_min", "0,0.25,-1", &ae), 0);
  CHECK_EQ_INT(adv_job_spec_set(&b, "clip_max", "0.75", &ae), 0);
  CHECK_EQ_INT(a.n_clip_min, 3);
  CHECK_EQ_INT(a.n_clip_max, 0);
  CHECK(a.clip_min_ch[1] == 0.25f && a.params.clip_min == -1.f &&
        a.params.clip_max == 0.75f);
  CHECK(!memcmp(a.clip_min_ch, b.clip_min_ch, sizeof(a.clip_min_ch)) &&
        a.n_clip_min == b.n_clip_min && a.params.clip_min == b.params.clip_min);
  adv_attack_params p = adv_job_attack_params(&a, ADV_ATTACK_PGD, -1, 1);
  CHECK_EQ_INT(p.n_clip, 3);
  CHECK(p.clip_lo[2] == -1.f && p.clip_hi[0] == 0.75f && p.clip_hi[2] == 0.75f);
  CHECK(p.clip_min == -1.f && p.clip_max == 0.75f);
  json_t *j = sbx_jobspec_to_json(&a);
  char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
  adv_job_spec c;
  CHECK(t && parse(t, &c, err, sizeof(err)) == 0);
  CHECK(t && c.n_clip_min == 3 && c.clip_min_ch[1] == 0.25f &&
        c.params.clip_max == 0.75f);
  CHECK(t && json_is_array(json_object_get(j, "clip_min")) &&
        json_is_number(json_object_get(j, "clip_max")));
  free(t);
  json_decref(j);
  CHECK_EQ_INT(
      parse("{\"clip_min\":-0.5,\"clip_max\":[2]}", &c, err, sizeof(err)), 0);
  CHECK(c.params.clip_min == -0.5f && c.params.clip_max == 2.f &&
        c.n_clip_max == 0);
  expect_bad("{\"clip_min\":[0,0.5],\"clip_max\":[1,0.4]}", "clip_max");
  expect_bad("{\"clip_min\":[0,0],\"clip_max\":[1,1,1]}", "clip_max");
  expect_bad("{\"clip_min\":[0,\"a\"]}", "clip_min");
  expect_bad("{\"clip_min\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}", "clip_min");
  expect_bad("{\"clip_min\":[0,2e6]}", "clip_min");
  expect_bad("{\"clip_max\":true}", "clip_max");
  /* the catalogue offers both forms */
  json_t *cat = sbx_attack_catalogue();
  json_t *cm = json_object_get(
      json_object_get(json_object_get(cat, "job"), "properties"), "clip_min");
  CHECK(json_array_size(json_object_get(cm, "oneOf")) == 2);
  json_decref(cat);
}

TEST(objective_fields) {
  /* objective, output and min_distance (issue 13 item 4) through JSON;
   * the target output is CLI-only, so a targeted one is refused */
  adv_job_spec a;
  char err[256] = "";
  CHECK_EQ_INT(parse("{\"attack\":\"square\",\"objective\":\"output-"
                     "distance\",\"output\":\"emb\",\"min_distance\":0.5}",
                     &a, err, sizeof(err)),
               0);
  CHECK(a.params.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE &&
        !strcmp(a.output, "emb") && a.params.min_distance == 0.5f);
  adv_attack_params p = adv_job_attack_params(&a, ADV_ATTACK_SQUARE, -1, 1);
  CHECK(p.objective == ADV_OBJECTIVE_OUTPUT_DISTANCE && p.min_distance == 0.5f);
  json_t *j = sbx_jobspec_to_json(&a);
  CHECK(j && !strcmp(json_string_value(json_object_get(j, "objective")),
                     "output-distance"));
  json_decref(j);
  expect_bad("{\"objective\":\"regress\"}", "objective");
  expect_bad("{\"attack\":\"cw\",\"objective\":\"output-distance\"}",
             "objective");
  expect_bad("{\"attack\":\"hsj\",\"objective\":\"output-distance\"}",
             "min_distance");
  expect_bad("{\"output\":\"emb\"}", "output");
  expect_bad("{\"attack\":\"pgd\",\"objective\":\"output-distance\","
             "\"targeted\":true}",
             "targeted");
  expect_bad("{\"kind\":\"evaluation\",\"objective\":\"output-"
             "distance\"}",
             "objective");
}

TEST(catalogue_matches_table) {
  json_t *c = sbx_attack_catalogue();
  CHECK(c != NULL);
  json_t *list = json_object_get(c, "attacks");
  CHECK_EQ_INT(json_array_size(list), ADV_ATTACK_COUNT);
  size_t i;
  json_t *a;
  json_array_foreach(list, i, a) {
    const char *name = json_string_value(json_object_get(a, "name"));
    int k = adv_attack_kind_from_name(name);
    CHECK(k >= 0);
    if (k < 0)
      continue;
    adv_attack_params d = adv_attack_default_params((adv_attack_kind)k);
    json_t *props =
        json_object_get(json_object_get(a, "parameters"), "properties");
    json_t *eps = json_object_get(props, "eps");
    if (adv_attack_param_mask((adv_attack_kind)k) & ADV_PARAM_EPS) {
      CHECK(eps != NULL);
      CHECK((float)json_number_value(json_object_get(eps, "default")) == d.eps);
    }
    const char *nd = json_string_value(
        json_object_get(json_object_get(props, "norm"), "default"));
    CHECK(nd && !strcmp(nd, d.norm == ADV_NORM_L2 ? "2" : "inf"));
    /* a spec made of every default the catalogue shows validates */
    json_t *spec = json_pack("{ssss}", "kind", "attack", "attack", name);
    const char *key;
    json_t *p;
    json_object_foreach(props, key, p) {
      json_t *def = json_object_get(p, "default");
      if (def)
        json_object_set(spec, key, def);
    }
    adv_job_spec s;
    char err[256] = "";
    int rc = sbx_jobspec_from_json(spec, &s, err, sizeof(err));
    if (rc)
      fprintf(stderr, "%s: catalogue defaults refused: %s\n", name, err);
    CHECK_EQ_INT(rc, 0);
    json_decref(spec);
  }
  CHECK(json_array_size(json_object_get(c, "suites")) >= 3);
  json_decref(c);
}

int main(void) {
  RUN(json_equals_cli_text);
  RUN(seed_full_range);
  RUN(bad_specs_name_the_parameter);
  RUN(canonical_round_trip);
  RUN(catalogue_matches_table);
  RUN(input_domain);
  RUN(clip_per_channel);
  RUN(objective_fields);
  return harness_report();
}
