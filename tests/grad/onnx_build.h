/*
 * tests/grad/onnx_build.h - a tiny in-memory ONNX model builder for tests
 * (a protobuf encoder writing just the fields the engine reads).
 *
 *   ob_model b;
 *   ob_init(&b, 13);
 *   ob_input(&b, "x", 2, (int64_t[]){2, 3});
 *   ob_init_f32(&b, "W", 2, (int64_t[]){3, 4}, w);
 *   ob_node(&b, "MatMul", "x,W", "y");      // comma-separated names;
 *   ob_attr_int(&b, "some_attr", 1);         // attributes go to the last node
 *   ob_output(&b, "y");
 *   size_t n; unsigned char *bytes = ob_finish(&b, &n);  // malloc'd
 *   ... adv_model_load_mem(bytes, n, ...); free(bytes);
 *
 * Field numbers (onnx.proto): ModelProto ir_version=1, graph=7,
 * opset_import=8 (OperatorSetIdProto domain=1, version=2); GraphProto
 * node=1, name=2, initializer=5, input=11, output=12; NodeProto input=1,
 * output=2, name=3, op_type=4, attribute=5; AttributeProto name=1,
 * f=2 (fixed32), i=3, s=4, floats=7, ints=8, type=20; TensorProto dims=1,
 * data_type=2, name=8, raw_data=9; ValueInfoProto name=1, type=2;
 * TypeProto tensor_type=1; TypeProto.Tensor elem_type=1, shape=2;
 * TensorShapeProto dim=1; Dimension dim_value=1, dim_param=2.
 *
 * An empty name in a comma list ("x,,max") is an omitted optional input.
 * Allocation failures abort (tests only).
 */
#ifndef ADV_TESTS_ONNX_BUILD_H
#define ADV_TESTS_ONNX_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  OB_ATTR_FLOAT = 1,
  OB_ATTR_INT = 2,
  OB_ATTR_STRING = 3,
  OB_ATTR_FLOATS = 6,
  OB_ATTR_INTS = 7,
  OB_T_FLOAT = 1,
  OB_T_INT64 = 7,
};

typedef struct ob_buf {
  unsigned char *d;
  size_t n, cap;
} ob_buf;

typedef struct ob_model {
  ob_buf graph; /* GraphProto fields written so far */
  ob_buf node;  /* the node being built (flushed into graph lazily) */
  int has_node;
  int opset;
  int n_nodes;
} ob_model;

static inline void ob__put(ob_buf *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t c = b->cap ? b->cap : 256;
    while (c < b->n + n)
      c *= 2;
    unsigned char *d = realloc(b->d, c);
    if (!d) {
      fprintf(stderr, "onnx_build: out of memory\n");
      abort();
    }
    b->d = d;
    b->cap = c;
  }
  if (n)
    memcpy(b->d + b->n, p, n);
  b->n += n;
}

static inline void ob__free(ob_buf *b) {
  free(b->d);
  b->d = NULL;
  b->n = b->cap = 0;
}

static inline void ob__varint(ob_buf *b, uint64_t v) {
  do {
    unsigned char c = v & 0x7f;
    v >>= 7;
    if (v)
      c |= 0x80;
    ob__put(b, &c, 1);
  } while (v);
}

static inline void ob__key(ob_buf *b, int field, int wt) {
  ob__varint(b, (uint64_t)field << 3 | (uint64_t)wt);
}

static inline void ob__int(ob_buf *b, int field, int64_t v) {
  ob__key(b, field, 0);
  ob__varint(b, (uint64_t)v); /* negative: 10-byte two's complement */
}

static inline void ob__bytes(ob_buf *b, int field, const void *p, size_t n) {
  ob__key(b, field, 2);
  ob__varint(b, n);
  ob__put(b, p, n);
}

static inline void ob__str(ob_buf *b, int field, const char *s) {
  ob__bytes(b, field, s, strlen(s));
}

/* Moves m into b as a length-delimited field and frees m. */
static inline void ob__msg(ob_buf *b, int field, ob_buf *m) {
  ob__bytes(b, field, m->d, m->n);
  ob__free(m);
}

static inline void ob__f32le(ob_buf *b, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  unsigned char c[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                        (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
  ob__put(b, c, 4);
}

static inline void ob__i64le(ob_buf *b, int64_t v) {
  uint64_t u = (uint64_t)v;
  unsigned char c[8];
  for (int i = 0; i < 8; i++)
    c[i] = (unsigned char)(u >> (8 * i));
  ob__put(b, c, 8);
}

static inline void ob_init(ob_model *m, int opset) {
  memset(m, 0, sizeof(*m));
  m->opset = opset;
}

static inline void ob__flush_node(ob_model *m) {
  if (m->has_node) {
    ob__msg(&m->graph, 1, &m->node);
    m->has_node = 0;
  }
}

/* A float tensor ValueInfoProto; nd < 0 leaves the shape out. */
static inline void ob__value_info(ob_buf *out, const char *name, int elem,
                                  int nd, const int64_t *dims) {
  ob_buf tt = {0}, tp = {0};
  ob__int(&tt, 1, elem);
  if (nd >= 0) {
    ob_buf shape = {0};
    for (int i = 0; i < nd; i++) {
      ob_buf d = {0};
      if (dims[i] >= 0)
        ob__int(&d, 1, dims[i]);
      else
        ob__str(&d, 2, "batch");
      ob__msg(&shape, 1, &d);
    }
    /* an empty TensorShapeProto (rank 0) is still written */
    ob__bytes(&tt, 2, shape.d, shape.n);
    ob__free(&shape);
  }
  ob__msg(&tp, 1, &tt);
  ob__str(out, 1, name);
  ob__msg(out, 2, &tp);
}

/* Graph input: float tensor with the given dims (-1 = symbolic "batch"). */
static inline void ob_input(ob_model *m, const char *name, int nd,
                            const int64_t *dims) {
  ob_buf vi = {0};
  ob__value_info(&vi, name, OB_T_FLOAT, nd, dims);
  ob__msg(&m->graph, 11, &vi);
}

/* Graph output (float, shape left to inference). */
static inline void ob_output(ob_model *m, const char *name) {
  ob_buf vi = {0};
  ob__value_info(&vi, name, OB_T_FLOAT, -1, NULL);
  ob__msg(&m->graph, 12, &vi);
}

static inline void ob__tensor_head(ob_buf *t, const char *name, int dtype,
                                   int nd, const int64_t *dims) {
  for (int i = 0; i < nd; i++)
    ob__int(t, 1, dims[i]);
  ob__int(t, 2, dtype);
  ob__str(t, 8, name);
}

static inline int64_t ob__numel(int nd, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++)
    n *= dims[i];
  return n;
}

/* Float32 initializer (raw_data, little-endian). */
static inline void ob_init_f32(ob_model *m, const char *name, int nd,
                               const int64_t *dims, const float *data) {
  ob_buf t = {0}, raw = {0};
  ob__tensor_head(&t, name, OB_T_FLOAT, nd, dims);
  int64_t n = ob__numel(nd, dims);
  for (int64_t i = 0; i < n; i++)
    ob__f32le(&raw, data[i]);
  ob__bytes(&t, 9, raw.d, raw.n);
  ob__free(&raw);
  ob__msg(&m->graph, 5, &t);
}

/* Int64 initializer (raw_data) - shapes, axes, pads, indices. */
static inline void ob_init_i64(ob_model *m, const char *name, int nd,
                               const int64_t *dims, const int64_t *data) {
  ob_buf t = {0}, raw = {0};
  ob__tensor_head(&t, name, OB_T_INT64, nd, dims);
  int64_t n = ob__numel(nd, dims);
  for (int64_t i = 0; i < n; i++)
    ob__i64le(&raw, data[i]);
  ob__bytes(&t, 9, raw.d, raw.n);
  ob__free(&raw);
  ob__msg(&m->graph, 5, &t);
}

/* Initializer of any ONNX element type dtype (TensorProto.DataType) whose
 * little-endian raw_data is the nbytes at raw. */
static inline void ob_init_raw(ob_model *m, const char *name, int dtype, int nd,
                               const int64_t *dims, const void *raw,
                               size_t nbytes) {
  ob_buf t = {0};
  ob__tensor_head(&t, name, dtype, nd, dims);
  ob__bytes(&t, 9, raw, nbytes);
  ob__msg(&m->graph, 5, &t);
}

/* Writes each comma-separated name of list as a repeated string field. */
static inline void ob__names(ob_buf *b, int field, const char *list) {
  if (!list)
    return;
  const char *p = list;
  for (;;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    ob__bytes(b, field, p, len);
    if (!e)
      break;
    p = e + 1;
  }
}

/* Starts a node; inputs/outputs are comma-separated value names. */
static inline void ob_node(ob_model *m, const char *op_type,
                           const char *inputs, const char *outputs) {
  ob__flush_node(m);
  char name[32];
  snprintf(name, sizeof(name), "n%d", m->n_nodes++);
  ob__names(&m->node, 1, inputs);
  ob__names(&m->node, 2, outputs);
  ob__str(&m->node, 3, name);
  ob__str(&m->node, 4, op_type);
  m->has_node = 1;
}

static inline void ob__attr_done(ob_model *m, ob_buf *a) {
  if (!m->has_node) {
    fprintf(stderr, "onnx_build: attribute before any node\n");
    abort();
  }
  ob__msg(&m->node, 5, a);
}

static inline void ob_attr_int(ob_model *m, const char *name, int64_t v) {
  ob_buf a = {0};
  ob__str(&a, 1, name);
  ob__int(&a, 3, v);
  ob__int(&a, 20, OB_ATTR_INT);
  ob__attr_done(m, &a);
}

/* Tensor attribute (a Constant's value): ONNX type dtype, raw_data raw. */
static inline void ob_attr_tensor_raw(ob_model *m, const char *name, int dtype,
                                      int nd, const int64_t *dims,
                                      const void *raw, size_t nbytes) {
  ob_buf a = {0}, t = {0};
  ob__str(&a, 1, name);
  ob__tensor_head(&t, "", dtype, nd, dims);
  ob__bytes(&t, 9, raw, nbytes);
  ob__msg(&a, 5, &t);
  ob__int(&a, 20, 4); /* TENSOR */
  ob__attr_done(m, &a);
}

static inline void ob_attr_float(ob_model *m, const char *name, float v) {
  ob_buf a = {0};
  ob__str(&a, 1, name);
  ob__key(&a, 2, 5); /* fixed32 */
  ob__f32le(&a, v);
  ob__int(&a, 20, OB_ATTR_FLOAT);
  ob__attr_done(m, &a);
}

static inline void ob_attr_str(ob_model *m, const char *name, const char *s) {
  ob_buf a = {0};
  ob__str(&a, 1, name);
  ob__str(&a, 4, s);
  ob__int(&a, 20, OB_ATTR_STRING);
  ob__attr_done(m, &a);
}

/* Repeated ints / floats, one field per element (ONNX is proto2, where
 * repeated scalars are not packed). */
static inline void ob_attr_ints(ob_model *m, const char *name, int n,
                                const int64_t *v) {
  ob_buf a = {0};
  ob__str(&a, 1, name);
  for (int i = 0; i < n; i++)
    ob__int(&a, 8, v[i]);
  ob__int(&a, 20, OB_ATTR_INTS);
  ob__attr_done(m, &a);
}

static inline void ob_attr_floats(ob_model *m, const char *name, int n,
                                  const float *v) {
  ob_buf a = {0};
  ob__str(&a, 1, name);
  for (int i = 0; i < n; i++) {
    ob__key(&a, 7, 5);
    ob__f32le(&a, v[i]);
  }
  ob__int(&a, 20, OB_ATTR_FLOATS);
  ob__attr_done(m, &a);
}

/* Serializes the ModelProto; returns malloc'd bytes (caller frees) and
 * releases the builder. */
static inline unsigned char *ob_finish(ob_model *m, size_t *len) {
  ob__flush_node(m);
  ob__str(&m->graph, 2, "g");
  ob_buf model = {0}, os = {0};
  ob__int(&model, 1, m->opset >= 18 ? 8 : 7); /* ir_version */
  ob__int(&os, 2, m->opset);
  ob__msg(&model, 8, &os);
  ob__msg(&model, 7, &m->graph);
  *len = model.n;
  return model.d;
}

static inline void ob_discard(ob_model *m) {
  ob__free(&m->graph);
  ob__free(&m->node);
  m->has_node = 0;
}

#endif
