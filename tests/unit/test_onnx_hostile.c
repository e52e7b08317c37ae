/*
 * test_onnx_hostile.c - the ONNX loader on untrusted bytes.
 *   - every prefix and every single-bit flip of a real small model (from
 *     ONNX's backend test data) either loads or fails cleanly;
 *   - random truncations/corruptions of a real fixture model;
 *   - hand-built protobufs (our own tiny encoder) for: external data,
 *     cycles, undefined inputs, duplicate definitions, unknown ops listed by
 *     name, huge dims, rank above the cap, node/tensor/weight caps, raw_data
 *     size lies, group wire types, over-long varints, nested length lies.
 * Usage: test_onnx_hostile SMALL_MODEL.onnx BIG_MODEL.onnx
 * Run under ASan+UBSan in CI: "fails cleanly" means no sanitizer report.
 */
#include "adv/adv.h"
#include "harness.h"

#include <stdint.h>

static unsigned char *slurp(const char *p, size_t *n) {
  FILE *f = fopen(p, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  rewind(f);
  unsigned char *b = malloc((size_t)sz + 1);
  *n = fread(b, 1, (size_t)sz, f);
  fclose(f);
  return b;
}

/* Loads bytes; returns status. On success also plans a batch-1 session
 * (which must not crash either) and frees everything. */
static int try_load(const void *b, size_t n, adv_load_params p) {
  adv_model *m = NULL;
  adv_err err = {{0}};
  int rc = adv_model_load_mem(b, n, p, &m, &err);
  if (rc == 0) {
    adv_session_params sp = adv_session_default_params();
    sp.batch = 1;
    adv_session *s = NULL;
    if (adv_session_init(m, sp, &s, &err) == 0)
      adv_session_free(s);
    adv_model_free(m);
  } else {
    CHECK(rc < 0);
    CHECK(err.msg[0] != 0); /* every failure says why */
  }
  return rc;
}

/* ---------------- tiny protobuf encoder ---------------- */

typedef struct buf {
  unsigned char d[8192];
  size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
  if (b->n + n <= sizeof(b->d)) {
    memcpy(b->d + b->n, p, n);
    b->n += n;
  }
}
static void varint(buf *b, uint64_t v) {
  do {
    unsigned char c = v & 0x7f;
    v >>= 7;
    if (v)
      c |= 0x80;
    put(b, &c, 1);
  } while (v);
}
static void key(buf *b, int field, int wt) { varint(b, (uint64_t)field << 3 | (uint64_t)wt); }
static void fint(buf *b, int field, int64_t v) { key(b, field, 0); varint(b, (uint64_t)v); }
static void fbytes(buf *b, int field, const void *p, size_t n) {
  key(b, field, 2);
  varint(b, n);
  put(b, p, n);
}
static void fstr(buf *b, int field, const char *s) { fbytes(b, field, s, strlen(s)); }
static void fmsg(buf *b, int field, const buf *m) { fbytes(b, field, m->d, m->n); }

/* A ValueInfoProto for a float tensor with the given dims. */
static void value_info(buf *out, const char *name, int nd, const int64_t *dims) {
  buf shape = {0}, tt = {0}, tp = {0}, vi = {0};
  for (int i = 0; i < nd; i++) {
    buf d = {0};
    fint(&d, 1, dims[i]);
    fmsg(&shape, 1, &d);
  }
  fint(&tt, 1, 1);
  fmsg(&tt, 2, &shape);
  fmsg(&tp, 1, &tt);
  fstr(&vi, 1, name);
  fmsg(&vi, 2, &tp);
  *out = vi;
}

static void node(buf *g, const char *op, const char *in0, const char *in1,
                 const char *out) {
  buf n = {0};
  if (in0)
    fstr(&n, 1, in0);
  if (in1)
    fstr(&n, 1, in1);
  fstr(&n, 2, out);
  fstr(&n, 4, op);
  fmsg(g, 1, &n);
}

static void model(buf *m, const buf *graph, int opset) {
  buf os = {0};
  fint(m, 1, 8);
  fint(&os, 2, opset);
  fmsg(m, 8, &os);
  fmsg(m, 7, graph);
}

static void io(buf *g, const char *in, const char *out) {
  int64_t d[2] = {1, 4};
  buf vi;
  value_info(&vi, in, 2, d);
  fmsg(g, 11, &vi);
  value_info(&vi, out, 2, d);
  fmsg(g, 12, &vi);
}

TEST(valid_handbuilt_model_runs) {
  buf g = {0}, m = {0};
  node(&g, "Relu", "x", NULL, "y");
  io(&g, "x", "y");
  model(&m, &g, 13);
  adv_model *mm = NULL;
  adv_err err = {{0}};
  CHECK(adv_model_load_mem(m.d, m.n, adv_load_default_params(), &mm, &err) == 0);
  adv_session *s = NULL;
  adv_session_params sp = adv_session_default_params();
  CHECK(mm && adv_session_init(mm, sp, &s, &err) == 0);
  float x[4] = {-1, 2, -3, 4}, y[4];
  CHECK(s && adv_session_forward(s, x, y, &err) == 0);
  CHECK(y[0] == 0 && y[1] == 2 && y[2] == 0 && y[3] == 4);
  adv_session_free(s);
  adv_model_free(mm);
}

static int load_status(const buf *m, adv_load_params p, char *msg) {
  adv_model *mm = NULL;
  adv_err err = {{0}};
  int rc = adv_model_load_mem(m->d, m->n, p, &mm, &err);
  adv_model_free(mm);
  if (msg)
    snprintf(msg, 512, "%s", err.msg);
  return rc;
}

TEST(unknown_ops_named) {
  buf g = {0}, m = {0};
  node(&g, "Relu", "x", NULL, "a");
  node(&g, "FancyOp", "a", NULL, "b");
  node(&g, "OtherOp", "b", NULL, "y");
  io(&g, "x", "y");
  model(&m, &g, 13);
  char msg[512];
  CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EUNSUPPORTED);
  CHECK(strstr(msg, "FancyOp") && strstr(msg, "OtherOp"));
}

TEST(graph_structure_errors) {
  char msg[512];
  { /* cycle */
    buf g = {0}, m = {0};
    node(&g, "Add", "x", "b", "a");
    node(&g, "Relu", "a", NULL, "b");
    node(&g, "Relu", "a", NULL, "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EFORMAT);
    CHECK(strstr(msg, "cycle"));
  }
  { /* undefined input */
    buf g = {0}, m = {0};
    node(&g, "Add", "x", "nowhere", "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EFORMAT);
    CHECK(strstr(msg, "nowhere"));
  }
  { /* value defined twice */
    buf g = {0}, m = {0};
    node(&g, "Relu", "x", NULL, "y");
    node(&g, "Relu", "x", NULL, "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EFORMAT);
  }
  { /* no graph */
    buf m = {0};
    fint(&m, 1, 8);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EFORMAT);
  }
  { /* output never produced */
    buf g = {0}, m = {0};
    node(&g, "Relu", "x", NULL, "z");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EFORMAT);
  }
}

/* An initializer TensorProto with the given dims and raw_data bytes. */
static void initializer(buf *g, const char *name, int nd, const int64_t *dims,
                        size_t raw, int external) {
  buf t = {0};
  for (int i = 0; i < nd; i++)
    fint(&t, 1, dims[i]);
  fint(&t, 2, 1);
  fstr(&t, 8, name);
  static unsigned char zeros[4096];
  if (raw)
    fbytes(&t, 9, zeros, raw > sizeof(zeros) ? sizeof(zeros) : raw);
  if (external) {
    buf kv = {0};
    fstr(&kv, 1, "location");
    fstr(&kv, 2, "/etc/passwd");
    fmsg(&t, 13, &kv);
    fint(&t, 14, 1);
  }
  fmsg(g, 5, &t);
}

TEST(tensor_errors_and_caps) {
  char msg[512];
  int64_t d4[2] = {1, 4};
  { /* external data refused */
    buf g = {0}, m = {0};
    initializer(&g, "w", 2, d4, 0, 1);
    node(&g, "Add", "x", "w", "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EUNSUPPORTED);
    CHECK(strstr(msg, "external"));
  }
  { /* raw_data shorter than the shape */
    buf g = {0}, m = {0};
    initializer(&g, "w", 2, d4, 12, 0);
    node(&g, "Add", "x", "w", "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_EFORMAT);
  }
  { /* a huge declared shape is refused before allocation */
    int64_t huge[3] = {1 << 30, 1 << 30, 1 << 30};
    buf g = {0}, m = {0};
    initializer(&g, "w", 3, huge, 16, 0);
    node(&g, "Add", "x", "w", "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_ELIMIT);
  }
  { /* rank above the cap */
    int64_t r9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    buf g = {0}, m = {0};
    initializer(&g, "w", 9, r9, 4, 0);
    node(&g, "Add", "x", "w", "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK_EQ_INT(load_status(&m, adv_load_default_params(), msg), ADV_ELIMIT);
  }
  { /* negative dim */
    int64_t neg[2] = {-1, 4};
    buf g = {0}, m = {0};
    initializer(&g, "w", 2, neg, 16, 0);
    node(&g, "Add", "x", "w", "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    CHECK(load_status(&m, adv_load_default_params(), msg) < 0);
  }
  { /* node cap, tensor cap, weight cap, file cap */
    buf g = {0}, m = {0};
    initializer(&g, "w", 2, d4, 16, 0);
    node(&g, "Add", "x", "w", "a");
    node(&g, "Relu", "a", NULL, "y");
    io(&g, "x", "y");
    model(&m, &g, 13);
    adv_load_params p = adv_load_default_params();
    CHECK_EQ_INT(load_status(&m, p, msg), 0);
    p.max_nodes = 1;
    CHECK_EQ_INT(load_status(&m, p, msg), ADV_ELIMIT);
    p = adv_load_default_params();
    p.max_tensor_bytes = 16; /* 4 floats stored as 8-byte slots > 16 */
    CHECK_EQ_INT(load_status(&m, p, msg), ADV_ELIMIT);
    p = adv_load_default_params();
    p.max_weight_bytes = 8;
    CHECK_EQ_INT(load_status(&m, p, msg), ADV_ELIMIT);
    p = adv_load_default_params();
    p.max_file_bytes = m.n - 1;
    CHECK_EQ_INT(load_status(&m, p, msg), ADV_ELIMIT);
  }
}

TEST(wire_format_lies) {
  char msg[512];
  adv_load_params p = adv_load_default_params();
  unsigned char group[] = {0x0b, 0x0c};              /* field 1, wire type 3 */
  unsigned char longvar[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  unsigned char lenlie[] = {0x3a, 0xff, 0xff, 0xff, 0x0f, 0x00}; /* graph len 4G */
  unsigned char zero_field[] = {0x00, 0x01};
  buf b;
  memcpy(b.d, group, sizeof(group));
  b.n = sizeof(group);
  CHECK_EQ_INT(load_status(&b, p, msg), ADV_EFORMAT);
  memcpy(b.d, longvar, sizeof(longvar));
  b.n = sizeof(longvar);
  CHECK_EQ_INT(load_status(&b, p, msg), ADV_EFORMAT);
  memcpy(b.d, lenlie, sizeof(lenlie));
  b.n = sizeof(lenlie);
  CHECK_EQ_INT(load_status(&b, p, msg), ADV_EFORMAT);
  memcpy(b.d, zero_field, sizeof(zero_field));
  b.n = sizeof(zero_field);
  CHECK_EQ_INT(load_status(&b, p, msg), ADV_EFORMAT);
  b.n = 0;
  CHECK_EQ_INT(load_status(&b, p, msg), ADV_EFORMAT);
}

static const char *SMALL, *BIG;

TEST(every_prefix_and_bitflip_of_a_small_model) {
  size_t n;
  unsigned char *b = slurp(SMALL, &n);
  CHECK(b != NULL);
  if (!b)
    return;
  adv_load_params p = adv_load_default_params();
  CHECK_EQ_INT(try_load(b, n, p), 0);
  int ok = 0;
  for (size_t k = 0; k < n; k++)
    ok += try_load(b, k, p) == 0;
  unsigned char *c = malloc(n);
  for (size_t i = 0; i < n; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(c, b, n);
      c[i] ^= (unsigned char)(1u << bit);
      try_load(c, n, p);
    }
  fprintf(stderr, "  %zu bytes: %d of %zu prefixes still load, %zu bit flips survived\n",
          n, ok, n, n * 8);
  free(c);
  free(b);
}

TEST(random_damage_to_a_real_model) {
  size_t n;
  unsigned char *b = slurp(BIG, &n);
  CHECK(b != NULL);
  if (!b)
    return;
  adv_load_params p = adv_load_default_params();
  uint64_t s = 12345;
  unsigned char *c = malloc(n);
  for (int it = 0; it < 300; it++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    size_t cut = (size_t)(s >> 33) % n;
    try_load(b, cut, p);
    memcpy(c, b, n);
    for (int k = 0; k < 4; k++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      c[(s >> 33) % n] = (unsigned char)(s >> 20);
    }
    try_load(c, n, p);
  }
  free(c);
  free(b);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: test_onnx_hostile SMALL.onnx BIG.onnx\n");
    return 2;
  }
  SMALL = argv[1];
  BIG = argv[2];
  RUN(valid_handbuilt_model_runs);
  RUN(unknown_ops_named);
  RUN(graph_structure_errors);
  RUN(tensor_errors_and_caps);
  RUN(wire_format_lies);
  RUN(every_prefix_and_bitflip_of_a_small_model);
  RUN(random_damage_to_a_real_model);
  return harness_report();
}
