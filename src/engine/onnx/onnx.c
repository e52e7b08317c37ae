/*
 * onnx.c - ONNX ModelProto -> adv_model, with our own protobuf decoding.
 *
 * Everything in the file is untrusted. The loader:
 *   - caps the file size, the bytes of every tensor and of all weights, the
 *     node and value counts, tensor rank and repeated attribute lengths;
 *   - refuses external data, sparse initializers and segments;
 *   - flattens the then/else subgraphs of If nodes into the node list (their
 *     nodes carry guards, their own value names are mangled per scope so
 *     sibling branches may reuse names; outer-scope names resolve as usual);
 *     the bodies of other ops with subgraphs (Loop, Scan) are only scanned,
 *     so that unsupported ops inside them are named too;
 *   - keeps initializers of 1-byte integer (uint8, int8) and 16-bit float
 *     (float16, bfloat16) types in their stored type (raw_data copied as
 *     is: 1 or 2 bytes per weight); the planner widens them only for ops
 *     that need it (see adv_const in core/engine.h). Every other tensor is
 *     converted to float32 or int64 on load (double -> float32, the other
 *     integer types and bool -> int64; attribute tensors and typed-field
 *     data likewise);
 *   - resolves names to value indices, checks each input is defined,
 *     topologically sorts the nodes and reports unknown ops by name.
 * Field numbers follow onnx.proto (ONNX IR version 8).
 */
#include "core/engine.h"
#include "onnx/pb.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

adv_load_params adv_load_default_params(void) {
  adv_load_params p;
  p.max_file_bytes = (size_t)1 << 30;
  p.max_tensor_bytes = (size_t)512 << 20;
  p.max_weight_bytes = (size_t)1 << 30;
  p.max_nodes = 100000;
  p.max_values = 400000;
  p.max_nesting = 8;
  p.max_attr_elems = 1 << 20;
  return p;
}

/* ONNX TensorProto.DataType */
enum {
  OT_FLOAT = 1, OT_UINT8 = 2, OT_INT8 = 3, OT_UINT16 = 4, OT_INT16 = 5,
  OT_INT32 = 6, OT_INT64 = 7, OT_STRING = 8, OT_BOOL = 9, OT_FLOAT16 = 10,
  OT_DOUBLE = 11, OT_UINT32 = 12, OT_UINT64 = 13, OT_BFLOAT16 = 16
};

#define ADV_LOADER_MAX_DEPTH 8

typedef struct loader {
  adv_model *m;
  adv_load_params p;
  adv_err *err;
  size_t weight_bytes;
  /* name -> value index hash table (open addressing) */
  int *slots;
  size_t nslots;
  int cap_values;
  int cap_nodes;
  /* If-branch scopes, innermost last: names defined in a branch are stored
   * as prefix[d] + name; guard/n_guard and scope are what the nodes parsed
   * there get (see adv_mnode) */
  int depth, n_scopes;
  char prefix[ADV_LOADER_MAX_DEPTH][48];
  int guard[ADV_LOADER_MAX_DEPTH];
  const char *scope;
  /* unsupported ops found in Loop/Scan bodies, for check_ops */
  char bad_sub[400];
  size_t bad_used;
  int n_bad_sub;
} loader;

static size_t ot_size(int t) {
  switch (t) {
  case OT_FLOAT: case OT_INT32: case OT_UINT32: return 4;
  case OT_DOUBLE: case OT_INT64: case OT_UINT64: return 8;
  case OT_UINT8: case OT_INT8: case OT_BOOL: return 1;
  case OT_UINT16: case OT_INT16: case OT_FLOAT16: case OT_BFLOAT16: return 2;
  default: return 0;
  }
}

/* The storage dtype an initializer of ONNX type t keeps in memory, or
 * UNDEFINED when it is converted to float32/int64 on load. */
static adv_dtype ot_stored(int t) {
  switch (t) {
  case OT_UINT8:
    return ADV_DTYPE_U8;
  case OT_INT8:
    return ADV_DTYPE_I8;
  case OT_FLOAT16:
    return ADV_DTYPE_F16;
  case OT_BFLOAT16:
    return ADV_DTYPE_BF16;
  default:
    return ADV_DTYPE_UNDEFINED;
  }
}

/* Which internal (compute) dtype a given ONNX type is loaded as. */
static adv_dtype ot_internal(int t) {
  switch (t) {
  case OT_FLOAT: case OT_DOUBLE: case OT_FLOAT16: case OT_BFLOAT16:
    return ADV_DTYPE_F32;
  case OT_UINT8: case OT_INT8: case OT_UINT16: case OT_INT16: case OT_INT32:
  case OT_INT64: case OT_BOOL: case OT_UINT32: case OT_UINT64:
    return ADV_DTYPE_I64;
  default:
    return ADV_DTYPE_UNDEFINED;
  }
}

/* Converts one raw little-endian element of ONNX type t into dst. */
static void conv_elem(int t, const uint8_t *src, adv_dtype dt, void *dst) {
  double v = 0;
  int64_t iv = 0;
  int is_int = 1;
  switch (t) {
  case OT_FLOAT: { float f; memcpy(&f, src, 4); v = f; is_int = 0; break; }
  case OT_DOUBLE: { double d; memcpy(&d, src, 8); v = d; is_int = 0; break; }
  case OT_FLOAT16: {
    uint16_t h = (uint16_t)(src[0] | src[1] << 8);
    v = adv__f16_to_f32(h);
    is_int = 0;
    break;
  }
  case OT_BFLOAT16: { uint32_t b = (uint32_t)(src[0] | src[1] << 8) << 16; float f; memcpy(&f, &b, 4); v = f; is_int = 0; break; }
  case OT_UINT8: case OT_BOOL: iv = src[0]; break;
  case OT_INT8: iv = (int8_t)src[0]; break;
  case OT_UINT16: iv = (uint16_t)(src[0] | src[1] << 8); break;
  case OT_INT16: iv = (int16_t)(src[0] | src[1] << 8); break;
  case OT_INT32: { int32_t x; memcpy(&x, src, 4); iv = x; break; }
  case OT_UINT32: { uint32_t x; memcpy(&x, src, 4); iv = x; break; }
  case OT_INT64: case OT_UINT64: { int64_t x; memcpy(&x, src, 8); iv = x; break; }
  }
  if (dt == ADV_DTYPE_F32)
    *(float *)dst = is_int ? (float)iv : (float)v;
  else
    *(int64_t *)dst = is_int ? iv : (int64_t)v;
}

/* Stores one value decoded from a typed field (float_data etc.). */
static void put_typed(adv_const *c, int64_t k, int ot, double dv, int64_t iv,
                      int is_float) {
  if (c->dtype == ADV_DTYPE_F32) {
    float f;
    if (ot == OT_FLOAT16 && !is_float)
      f = adv__f16_to_f32((uint16_t)iv);
    else if (ot == OT_BFLOAT16 && !is_float) {
      uint32_t b = (uint32_t)iv << 16;
      memcpy(&f, &b, 4);
    } else
      f = is_float ? (float)dv : (float)iv;
    ((float *)c->data)[k] = f;
  } else {
    /* a float field feeding an integer tensor: saturate (the cast of an
     * out-of-range or NaN double is undefined behaviour) */
    int64_t v = iv;
    if (is_float)
      v = !(dv == dv) ? 0 : dv >= 9.2233720368547748e18 ? INT64_MAX
          : dv <= -9.2233720368547758e18 ? INT64_MIN : (int64_t)dv;
    ((int64_t *)c->data)[k] = v;
  }
}

/*
 * Parses a serialized TensorProto into an adv_const allocated in arena a.
 * Two passes: the first finds dims, type and location, the second decodes
 * the data field that carries the values. When weight_bytes is not NULL,
 * the tensor's size as stored (its ONNX element size: a uint8 weight counts
 * one byte) is added to *weight_bytes and checked against the weights cap
 * before anything is allocated or converted. With keep, raw_data of a
 * storage type (ot_stored) is kept as stored instead of converted.
 */
static int parse_tensor(pb_reader r0, adv_arena *a, const adv_load_params *p,
                        adv_const **out, const char **name,
                        size_t *weight_bytes, int keep, adv_err *err) {
  adv_const *c = adv__arena_alloc(a, sizeof(*c));
  if (!c)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  int ot = 0, ndim = 0, has_raw = 0;
  pb_reader r = r0, raw = {0};
  uint32_t f;
  int wt;
  if (name)
    *name = "";
  while (pb_key(&r, &f, &wt)) {
    if (f == 1) { /* dims */
      if (wt == PB_LEN) {
        pb_reader s = pb_bytes(&r);
        while (pb_more(&s)) {
          if (ndim >= ADV_MAX_DIMS)
            return adv__error(err, ADV_ELIMIT, "tensor rank > %d", ADV_MAX_DIMS);
          c->dims[ndim++] = (int64_t)pb_varint(&s);
        }
        if (s.bad)
          r.bad = true;
      } else if (wt == PB_VARINT) {
        if (ndim >= ADV_MAX_DIMS)
          return adv__error(err, ADV_ELIMIT, "tensor rank > %d", ADV_MAX_DIMS);
        c->dims[ndim++] = (int64_t)pb_varint(&r);
      } else {
        r.bad = true;
      }
    } else if (f == 2 && wt == PB_VARINT) {
      ot = (int)pb_varint(&r);
    } else if (f == 3 && wt == PB_LEN) {
      return adv__error(err, ADV_EUNSUPPORTED, "segmented tensors refused");
    } else if (f == 8 && wt == PB_LEN) {
      pb_reader s = pb_bytes(&r);
      if (name && !r.bad) {
        *name = adv__arena_strndup(a, (const char *)s.p, (size_t)(s.end - s.p));
        if (!*name)
          return adv__error(err, ADV_ENOMEM, "out of memory");
      }
    } else if (f == 9 && wt == PB_LEN) {
      raw = pb_bytes(&r);
      has_raw = 1;
    } else if (f == 13) {
      return adv__error(err, ADV_EUNSUPPORTED,
                       "tensor uses external data: refused (embed weights)");
    } else if (f == 14 && wt == PB_VARINT) {
      if (pb_varint(&r) != 0)
        return adv__error(err, ADV_EUNSUPPORTED,
                         "tensor uses external data: refused (embed weights)");
    } else {
      pb_skip(&r, wt);
    }
  }
  if (r.bad)
    return adv__error(err, ADV_EFORMAT, "malformed TensorProto");
  c->dtype = ot_internal(ot);
  c->onnx_type = ot;
  if (c->dtype == ADV_DTYPE_UNDEFINED)
    return adv__error(err, ADV_EUNSUPPORTED,
                      "tensor data type %d%s unsupported", ot,
                      ot >= 17 && ot <= 20   ? " (float8, opset 19)"
                      : ot == 21 || ot == 22 ? " (4-bit integer, opset 21)"
                                             : "");
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (c->dims[i] < 0)
      return adv__error(err, ADV_EFORMAT, "negative tensor dim");
    if (c->dims[i] > 0 && numel > (int64_t)(p->max_tensor_bytes / 8) / c->dims[i])
      return adv__error(err, ADV_ELIMIT, "tensor larger than %zu bytes",
                       p->max_tensor_bytes);
    numel *= c->dims[i];
  }
  if ((size_t)numel * 8 > p->max_tensor_bytes)
    return adv__error(err, ADV_ELIMIT, "tensor larger than %zu bytes",
                     p->max_tensor_bytes);
  if (weight_bytes) {
    *weight_bytes += (size_t)numel * ot_size(ot);
    if (*weight_bytes > p->max_weight_bytes)
      return adv__error(err, ADV_ELIMIT, "weights exceed %zu bytes",
                        p->max_weight_bytes);
  }
  c->ndim = ndim;
  c->numel = numel;
  if (has_raw && (size_t)(raw.end - raw.p) != (size_t)numel * ot_size(ot))
    return adv__error(err, ADV_EFORMAT,
                      "raw_data holds %zu bytes, shape needs %zu",
                      (size_t)(raw.end - raw.p), (size_t)numel * ot_size(ot));
  if (keep && has_raw && ot_stored(ot) != ADV_DTYPE_UNDEFINED)
    c->dtype = ot_stored(ot);
  size_t es = adv_dtype_size(c->dtype);
  if (c->dtype == ot_stored(ot) && (size_t)numel * es >= ADV_OWN_DATA_BYTES) {
    c->data = adv__big_alloc((size_t)numel * es); /* see adv_const */
    c->own_data = true;
  } else {
    c->data = adv__arena_alloc(a, (size_t)numel * es);
  }
  if (!c->data)
    return adv__error(err, ADV_ENOMEM, "out of memory for tensor");
  if (has_raw) {
    size_t os = ot_size(ot);
    if ((c->dtype == ADV_DTYPE_F32 && ot == OT_FLOAT) ||
        c->dtype == ot_stored(ot)) {
      memcpy(c->data, raw.p, (size_t)numel * os);
    } else if (c->dtype == ADV_DTYPE_I64 && ot == OT_INT64) {
      memcpy(c->data, raw.p, (size_t)numel * 8);
    } else {
      for (int64_t k = 0; k < numel; k++)
        conv_elem(ot, raw.p + (size_t)k * os, c->dtype,
                  (char *)c->data + (size_t)k * es);
    }
  } else {
    /* typed fields: float_data 4 (fixed32), int32_data 5 (varint),
     * int64_data 7 (varint), double_data 10 (fixed64), uint64_data 11 */
    int64_t k = 0;
    r = r0;
    while (pb_key(&r, &f, &wt)) {
      int kind = 0; /* 1 f32, 2 varint, 3 f64 */
      if (f == 4) kind = 1;
      else if (f == 5 || f == 7 || f == 11) kind = 2;
      else if (f == 10) kind = 3;
      if (!kind) {
        pb_skip(&r, wt);
        continue;
      }
      pb_reader s;
      int packed = wt == PB_LEN;
      if (packed)
        s = pb_bytes(&r);
      else
        s = r;
      do {
        if (k >= numel)
          return adv__error(err, ADV_EFORMAT, "tensor has more values than its shape");
        if (kind == 1) {
          uint32_t u = pb_fixed32(&s);
          float fv;
          memcpy(&fv, &u, 4);
          put_typed(c, k++, ot, fv, 0, 1);
        } else if (kind == 3) {
          uint64_t u = pb_fixed64(&s);
          double dv;
          memcpy(&dv, &u, 8);
          put_typed(c, k++, ot, dv, 0, 1);
        } else {
          uint64_t u = pb_varint(&s);
          int64_t iv = (int64_t)u;
          if (f == 5)
            iv = (int32_t)(uint32_t)u;
          put_typed(c, k++, ot, 0, iv, 0);
        }
      } while (packed && pb_more(&s));
      if (!packed)
        r = s;
      else if (s.bad)
        r.bad = true;
    }
    if (r.bad)
      return adv__error(err, ADV_EFORMAT, "malformed TensorProto data");
    if (k != numel && !(k == 0 && numel == 0))
      return adv__error(err, ADV_EFORMAT,
                       "tensor holds %lld values, shape needs %lld",
                       (long long)k, (long long)numel);
  }
  *out = c;
  return ADV_OK;
}

/* ---------- name table ---------- */

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  while (*s)
    h = (h ^ (uint8_t)*s++) * 1099511628211ull;
  return h;
}

/* Finds or (when create) appends a value named s; returns index or <0. */
static int value_get(loader *L, const char *s, size_t len, int create) {
  char tmp[512];
  if (len >= sizeof(tmp))
    return adv__error(L->err, ADV_ELIMIT, "value name longer than 511 bytes");
  memcpy(tmp, s, len);
  tmp[len] = 0;
  if (memchr(tmp, 0, len))
    return adv__error(L->err, ADV_EFORMAT, "NUL in value name");
  size_t h = hash_str(tmp) & (L->nslots - 1);
  while (L->slots[h] >= 0) {
    if (strcmp(L->m->values[L->slots[h]].name, tmp) == 0)
      return L->slots[h];
    h = (h + 1) & (L->nslots - 1);
  }
  if (!create)
    return ADV_ENOTFOUND;
  adv_model *m = L->m;
  if (m->n_values >= L->cap_values)
    return adv__error(L->err, ADV_ELIMIT, "too many values");
  adv_mvalue *v = &m->values[m->n_values];
  v->name = adv__arena_strndup(&m->arena, tmp, len);
  if (!v->name)
    return adv__error(L->err, ADV_ENOMEM, "out of memory");
  v->ndim = -1;
  for (int i = 0; i < ADV_MAX_DIMS; i++)
    v->dims[i] = -1;
  L->slots[h] = m->n_values;
  return m->n_values++;
}

/* Looks a name up the way a node in the current scope sees it: a value
 * defined in an enclosing If branch (innermost first) shadows outer ones;
 * otherwise the top-level name, created when create. Index or <0. */
static int value_ref(loader *L, const char *s, size_t len, int create) {
  char tmp[512 + 48];
  for (int d = L->depth - 1; d >= 0; d--) {
    size_t pl = strlen(L->prefix[d]);
    if (len >= 512)
      break; /* value_get reports the length */
    memcpy(tmp, L->prefix[d], pl);
    memcpy(tmp + pl, s, len);
    int v = value_get(L, tmp, pl + len, 0);
    if (v != ADV_ENOTFOUND)
      return v;
  }
  return value_get(L, s, len, create);
}

/* Creates (or finds) the value `s` defined in the innermost scope. */
static int value_def(loader *L, const char *s, size_t len) {
  if (L->depth == 0)
    return value_get(L, s, len, 1);
  char tmp[512 + 48];
  size_t pl = strlen(L->prefix[L->depth - 1]);
  if (len >= 512)
    return adv__error(L->err, ADV_ELIMIT, "value name longer than 511 bytes");
  memcpy(tmp, L->prefix[L->depth - 1], pl);
  memcpy(tmp + pl, s, len);
  return value_get(L, tmp, pl + len, 1);
}

/* Parses a ValueInfoProto's type into v (elem type, rank, dims). */
static int parse_value_info(loader *L, pb_reader r, int create, int *idx) {
  uint32_t f;
  int wt;
  pb_reader name = {0}, type = {0};
  int has_name = 0, has_type = 0;
  while (pb_key(&r, &f, &wt)) {
    if (f == 1 && wt == PB_LEN) {
      name = pb_bytes(&r);
      has_name = 1;
    } else if (f == 2 && wt == PB_LEN) {
      type = pb_bytes(&r);
      has_type = 1;
    } else {
      pb_skip(&r, wt);
    }
  }
  if (r.bad || !has_name)
    return adv__error(L->err, ADV_EFORMAT, "malformed ValueInfoProto");
  int vi = value_get(L, (const char *)name.p, (size_t)(name.end - name.p), create);
  if (vi < 0)
    return vi == ADV_ENOTFOUND ? (*idx = -1, ADV_OK) : vi;
  *idx = vi;
  adv_mvalue *v = &L->m->values[vi];
  if (!has_type || v->init) /* an initializer's own shape is authoritative */
    return ADV_OK;
  while (pb_key(&type, &f, &wt)) {
    if (f != 1 || wt != PB_LEN) { /* only tensor_type */
      pb_skip(&type, wt);
      continue;
    }
    pb_reader tt = pb_bytes(&type);
    while (pb_key(&tt, &f, &wt)) {
      if (f == 1 && wt == PB_VARINT) {
        int ot = (int)pb_varint(&tt);
        if (!v->init) {
          v->dtype = ot_internal(ot);
          v->onnx_type = ot;
        }
      } else if (f == 2 && wt == PB_LEN) {
        pb_reader sh = pb_bytes(&tt);
        int nd = 0;
        while (pb_key(&sh, &f, &wt)) {
          if (f != 1 || wt != PB_LEN) {
            pb_skip(&sh, wt);
            continue;
          }
          if (nd >= ADV_MAX_DIMS)
            return adv__error(L->err, ADV_ELIMIT, "value '%s' rank > %d",
                             v->name, ADV_MAX_DIMS);
          pb_reader d = pb_bytes(&sh);
          int64_t dv = -1;
          const char *sym = NULL;
          while (pb_key(&d, &f, &wt)) {
            if (f == 1 && wt == PB_VARINT)
              dv = (int64_t)pb_varint(&d);
            else if (f == 2 && wt == PB_LEN) {
              pb_reader s = pb_bytes(&d);
              if (!d.bad)
                sym = adv__arena_strndup(&L->m->arena, (const char *)s.p,
                                         (size_t)(s.end - s.p));
            } else
              pb_skip(&d, wt);
          }
          if (d.bad)
            sh.bad = true;
          v->dims[nd] = dv < 0 ? -1 : dv;
          v->sym[nd] = sym;
          nd++;
        }
        if (sh.bad)
          tt.bad = true;
        v->ndim = nd;
      } else {
        pb_skip(&tt, wt);
      }
    }
    if (tt.bad)
      type.bad = true;
  }
  if (type.bad)
    return adv__error(L->err, ADV_EFORMAT, "malformed TypeProto for '%s'",
                     v->name);
  return ADV_OK;
}

/* Parses an AttributeProto (two passes: count repeated, then fill). */
static int parse_attr(loader *L, pb_reader r0, adv_attr *a) {
  adv_arena *ar = &L->m->arena;
  uint32_t f;
  int wt;
  int nf = 0, ni = 0, ns = 0, has[32] = {0};
  pb_reader r = r0;
  a->type = ADV_ATTR_UNDEFINED;
  while (pb_key(&r, &f, &wt)) {
    if (f < 32)
      has[f] = 1;
    if (f == 1 && wt == PB_LEN) {
      pb_reader s = pb_bytes(&r);
      if (!r.bad)
        a->name = adv__arena_strndup(ar, (const char *)s.p, (size_t)(s.end - s.p));
    } else if (f == 20 && wt == PB_VARINT) {
      a->type = (adv_attr_type)pb_varint(&r);
    } else if (f == 7) {
      if (wt == PB_LEN) {
        pb_reader s = pb_bytes(&r);
        nf += (int)((s.end - s.p) / 4);
      } else {
        pb_skip(&r, wt);
        nf++;
      }
    } else if (f == 8) {
      if (wt == PB_LEN) {
        pb_reader s = pb_bytes(&r);
        while (pb_more(&s)) {
          pb_varint(&s);
          ni++;
        }
      } else {
        pb_skip(&r, wt);
        ni++;
      }
    } else {
      ns += f == 9 && wt == PB_LEN;
      pb_skip(&r, wt);
    }
    if (nf > L->p.max_attr_elems || ni > L->p.max_attr_elems ||
        ns > L->p.max_attr_elems)
      return adv__error(L->err, ADV_ELIMIT, "attribute longer than %d elements",
                       L->p.max_attr_elems);
  }
  if (r.bad || !a->name)
    return adv__error(L->err, r.bad ? ADV_EFORMAT : ADV_ENOMEM,
                     "malformed AttributeProto");
  if (a->type == ADV_ATTR_UNDEFINED) { /* IR < 3: infer from fields */
    if (has[2]) a->type = ADV_ATTR_FLOAT;
    else if (has[3]) a->type = ADV_ATTR_INT;
    else if (has[4]) a->type = ADV_ATTR_STRING;
    else if (has[5]) a->type = ADV_ATTR_TENSOR;
    else if (has[6]) a->type = ADV_ATTR_GRAPH;
    else if (has[7]) a->type = ADV_ATTR_FLOATS;
    else if (has[8]) a->type = ADV_ATTR_INTS;
    else if (has[9]) a->type = ADV_ATTR_STRINGS;
  }
  if (nf) {
    a->floats = adv__arena_alloc(ar, (size_t)nf * sizeof(float));
    if (!a->floats)
      return adv__error(L->err, ADV_ENOMEM, "out of memory");
  }
  if (ni) {
    a->ints = adv__arena_alloc(ar, (size_t)ni * sizeof(int64_t));
    if (!a->ints)
      return adv__error(L->err, ADV_ENOMEM, "out of memory");
  }
  if (ns) {
    a->strings = adv__arena_alloc(ar, (size_t)ns * sizeof(char *));
    if (!a->strings)
      return adv__error(L->err, ADV_ENOMEM, "out of memory");
  }
  int kf = 0, ki = 0, ks = 0;
  r = r0;
  while (pb_key(&r, &f, &wt)) {
    if (f == 2 && wt == PB_I32) {
      uint32_t u = pb_fixed32(&r);
      memcpy(&a->f, &u, 4);
    } else if (f == 3 && wt == PB_VARINT) {
      a->i = (int64_t)pb_varint(&r);
    } else if (f == 4 && wt == PB_LEN) {
      pb_reader s = pb_bytes(&r);
      if (!r.bad) {
        a->slen = (size_t)(s.end - s.p);
        if (a->slen > 65536)
          return adv__error(L->err, ADV_ELIMIT, "string attribute too long");
        a->s = adv__arena_strndup(ar, (const char *)s.p, a->slen);
        if (!a->s)
          return adv__error(L->err, ADV_ENOMEM, "out of memory");
      }
    } else if (f == 5 && wt == PB_LEN) {
      pb_reader s = pb_bytes(&r);
      if (r.bad)
        break;
      int rc = parse_tensor(s, ar, &L->p, &a->t, NULL, NULL, 0, L->err);
      if (rc)
        return rc;
      L->weight_bytes += (size_t)a->t->numel * adv_dtype_size(a->t->dtype);
    } else if (f == 9 && wt == PB_LEN && ks < ns) {
      pb_reader s = pb_bytes(&r);
      if (r.bad || s.end - s.p > 65536)
        return adv__error(L->err, ADV_EFORMAT, "bad strings attribute");
      a->strings[ks] =
          adv__arena_strndup(ar, (const char *)s.p, (size_t)(s.end - s.p));
      if (!a->strings[ks++])
        return adv__error(L->err, ADV_ENOMEM, "out of memory");
    } else if (f == 7) {
      if (wt == PB_LEN) {
        pb_reader s = pb_bytes(&r);
        while (pb_more(&s) && kf < nf) {
          uint32_t u = pb_fixed32(&s);
          memcpy(&a->floats[kf++], &u, 4);
        }
      } else if (wt == PB_I32 && kf < nf) {
        uint32_t u = pb_fixed32(&r);
        memcpy(&a->floats[kf++], &u, 4);
      } else {
        r.bad = true;
      }
    } else if (f == 8) {
      if (wt == PB_LEN) {
        pb_reader s = pb_bytes(&r);
        while (pb_more(&s) && ki < ni)
          a->ints[ki++] = (int64_t)pb_varint(&s);
      } else if (wt == PB_VARINT && ki < ni) {
        a->ints[ki++] = (int64_t)pb_varint(&r);
      } else {
        r.bad = true;
      }
    } else {
      pb_skip(&r, wt);
    }
  }
  if (r.bad)
    return adv__error(L->err, ADV_EFORMAT, "malformed attribute '%s'", a->name);
  a->n = a->type == ADV_ATTR_FLOATS    ? kf
         : a->type == ADV_ATTR_STRINGS ? ks
                                       : ki;
  return ADV_OK;
}

static int parse_node(loader *L, pb_reader r0, adv_mnode *n);

/* Reads NodeProto / GraphProto / ValueInfoProto string field `field` (the
 * first one) into *s; 0 when absent. */
static int pb_string_field(pb_reader r, uint32_t field, pb_reader *s) {
  uint32_t f;
  int wt;
  while (pb_key(&r, &f, &wt)) {
    if (f == field && wt == PB_LEN) {
      *s = pb_bytes(&r);
      return !r.bad;
    }
    pb_skip(&r, wt);
  }
  return 0;
}

/* Appends op (with its context) to the loader's list of unsupported ops
 * found in subgraphs that are not flattened, once per op and context. */
static void note_bad_sub(loader *L, const char *op, const char *ctx) {
  char item[320];
  if (ctx)
    snprintf(item, sizeof(item), "%.120s (in subgraph of %.180s)", op, ctx);
  else
    snprintf(item, sizeof(item), "%.120s", op);
  for (const char *q = L->bad_sub; (q = strstr(q, item)); q++)
    if ((q == L->bad_sub || q[-1] == ' ') &&
        (q[strlen(item)] == ',' || !q[strlen(item)]))
      return;
  L->n_bad_sub++;
  int w = snprintf(L->bad_sub + L->bad_used, sizeof(L->bad_sub) - L->bad_used,
                   "%s%s", L->bad_used ? ", " : "", item);
  if (w > 0 && (size_t)w < sizeof(L->bad_sub) - L->bad_used)
    L->bad_used += (size_t)w;
}

static int scan_graph(loader *L, pb_reader g, const char *ctx, int depth);

/* Calls fn(L, graph, arg) for every graph held by an attribute (fields g
 * and graphs) of NodeProto r; stops at the first error. */
static int each_graph_attr(loader *L, pb_reader r,
                           int (*fn)(loader *, pb_reader, void *), void *arg) {
  uint32_t f;
  int wt;
  while (pb_key(&r, &f, &wt)) {
    if (f != 5 || wt != PB_LEN) {
      pb_skip(&r, wt);
      continue;
    }
    pb_reader a = pb_bytes(&r);
    uint32_t fa;
    int wa;
    while (pb_key(&a, &fa, &wa)) {
      if ((fa == 6 || fa == 11) && wa == PB_LEN) {
        int rc = fn(L, pb_bytes(&a), arg);
        if (rc)
          return rc;
      } else {
        pb_skip(&a, wa);
      }
    }
  }
  return ADV_OK;
}

typedef struct scan_arg {
  const char *ctx;
  int depth;
} scan_arg;

static int scan_cb(loader *L, pb_reader g, void *arg) {
  const scan_arg *sa = arg;
  return scan_graph(L, g, sa->ctx, sa->depth);
}

/* For a node that is not an If: scans every graph-valued attribute (a Loop
 * or Scan body) for unsupported ops, naming them with the node. */
static int scan_graph_attrs(loader *L, pb_reader r, const adv_mnode *n,
                            int depth) {
  char ctx[160];
  snprintf(ctx, sizeof(ctx), "%.50s node '%.100s'", n->op_type, n->name);
  scan_arg sa = {ctx, depth};
  return each_graph_attr(L, r, scan_cb, &sa);
}

/* Names the unsupported ops of a subgraph that is only scanned (and of
 * the subgraphs nested in it). */
static int scan_graph(loader *L, pb_reader g, const char *ctx, int depth) {
  if (depth > L->p.max_nesting || depth > ADV_LOADER_MAX_DEPTH)
    return adv__error(L->err, ADV_ELIMIT, "subgraphs nested deeper than %d",
                      L->p.max_nesting);
  uint32_t f;
  int wt;
  while (pb_key(&g, &f, &wt)) {
    if (f != 1 || wt != PB_LEN) {
      pb_skip(&g, wt);
      continue;
    }
    pb_reader nd = pb_bytes(&g), op, dom = {0};
    char name[128];
    if (!pb_string_field(nd, 4, &op))
      continue;
    int has_dom = pb_string_field(nd, 7, &dom) && dom.end > dom.p;
    snprintf(name, sizeof(name), "%.*s%s%.*s",
             has_dom ? (int)(dom.end - dom.p) : 0,
             has_dom ? (const char *)dom.p : "", has_dom ? ":" : "",
             (int)(op.end - op.p), (const char *)op.p);
    if (has_dom && !strncmp(name, "ai.onnx:", 8))
      memmove(name, name + 8, strlen(name + 8) + 1);
    if (adv__op_find(name) < 0)
      note_bad_sub(L, name, ctx);
    adv_mnode tmp = {.name = "", .op_type = name};
    pb_reader nm;
    char nname[104];
    if (pb_string_field(nd, 3, &nm)) {
      snprintf(nname, sizeof(nname), "%.*s", (int)(nm.end - nm.p),
               (const char *)nm.p);
      tmp.name = nname;
    }
    int rc = scan_graph_attrs(L, nd, &tmp, depth + 1);
    if (rc)
      return rc;
  }
  if (g.bad)
    return adv__error(L->err, ADV_EFORMAT, "malformed subgraph");
  return ADV_OK;
}

/* Finds the graph (field g) of attribute `name` in NodeProto r; 0 if none. */
static int node_graph_attr(pb_reader r, const char *name, pb_reader *g) {
  uint32_t f;
  int wt;
  size_t nl = strlen(name);
  while (pb_key(&r, &f, &wt)) {
    if (f != 5 || wt != PB_LEN) {
      pb_skip(&r, wt);
      continue;
    }
    pb_reader a = pb_bytes(&r), an;
    if (!pb_string_field(a, 1, &an) || (size_t)(an.end - an.p) != nl ||
        memcmp(an.p, name, nl))
      continue;
    return pb_string_field(a, 6, g);
  }
  return 0;
}

/* Parses initializer TensorProto s into a value of the current scope,
 * counting its bytes against the weights cap. */
static int add_initializer(loader *L, pb_reader s) {
  adv_model *m = L->m;
  adv_const *c;
  const char *name;
  int rc =
      parse_tensor(s, &m->arena, &L->p, &c, &name, &L->weight_bytes, 1, L->err);
  if (rc)
    return rc;
  int vi = value_def(L, name, strlen(name));
  if (vi < 0 || m->values[vi].init) {
    if (c->own_data)
      adv__big_free(c->data, (size_t)c->numel * adv_dtype_size(c->dtype));
    return vi < 0 ? vi
                  : adv__error(L->err, ADV_EFORMAT,
                               "initializer '%s' appears twice", name);
  }
  adv_mvalue *v = &m->values[vi];
  v->init = c;
  c->owner = m;
  v->dtype = ot_internal(c->onnx_type); /* c->dtype may be a storage type */
  v->onnx_type = c->onnx_type;
  v->ndim = c->ndim;
  memcpy(v->dims, c->dims, sizeof(c->dims));
  return ADV_OK;
}

/*
 * Flattens one branch of If node n (b 0: then_branch, 1: else_branch) into
 * the model: its initializers and node outputs become values of a new
 * scope, its nodes are appended guarded by (n's condition, b), and the
 * value indices of its k outputs are stored in outs.
 */
static int parse_branch(loader *L, pb_reader g0, const adv_mnode *n, int b,
                        int *outs, int k) {
  adv_model *m = L->m;
  if (L->depth >= L->p.max_nesting || L->depth >= ADV_LOADER_MAX_DEPTH)
    return adv__error(L->err, ADV_ELIMIT, "If nodes nested deeper than %d",
                      L->depth);
  int d = L->depth;
  snprintf(L->prefix[d], sizeof(L->prefix[d]), "{if%d.%s}", L->n_scopes++,
           b ? "else" : "then");
  const char *old_scope = L->scope;
  char *desc = adv__arena_alloc(&m->arena, strlen(n->name) + 16);
  if (!desc)
    return adv__error(L->err, ADV_ENOMEM, "out of memory");
  sprintf(desc, "If node '%s'", n->name);
  L->guard[d] = 2 * n->in[0] + b;
  L->depth++;
  L->scope = desc;
  int rc = ADV_OK, nout = 0;
  uint32_t f;
  int wt;
  /* 1. values defined in the branch: initializers and node outputs */
  pb_reader g = g0;
  while (rc == ADV_OK && pb_key(&g, &f, &wt)) {
    if (wt != PB_LEN || (f != 1 && f != 5 && f != 11 && f != 15)) {
      pb_skip(&g, wt);
      continue;
    }
    pb_reader s = pb_bytes(&g);
    if (f == 11 || f == 15) {
      rc = adv__error(L->err, ADV_EFORMAT, "%s: a branch with %s", desc,
                      f == 11 ? "inputs" : "sparse initializers");
    } else if (f == 5) {
      rc = add_initializer(L, s);
    } else {
      uint32_t f2;
      int wt2;
      while (pb_key(&s, &f2, &wt2)) {
        if (f2 != 2 || wt2 != PB_LEN) {
          pb_skip(&s, wt2);
          continue;
        }
        pb_reader o = pb_bytes(&s);
        if (o.end > o.p &&
            (rc = value_def(L, (const char *)o.p, (size_t)(o.end - o.p))) < 0)
          break;
        rc = ADV_OK;
      }
    }
  }
  /* 2. nodes; 3. outputs */
  g = g0;
  while (rc == ADV_OK && pb_key(&g, &f, &wt)) {
    if (wt != PB_LEN || (f != 1 && f != 12)) {
      pb_skip(&g, wt);
      continue;
    }
    pb_reader s = pb_bytes(&g), nm;
    if (f == 1) {
      if (m->n_nodes >= L->cap_nodes)
        rc = adv__error(L->err, ADV_EINTERNAL, "node count");
      else
        rc = parse_node(L, s, &m->nodes[m->n_nodes++]);
    } else if (!pb_string_field(s, 1, &nm)) {
      rc = adv__error(L->err, ADV_EFORMAT, "%s: unnamed branch output", desc);
    } else if (nout >= k) {
      nout++;
    } else {
      int vi = value_ref(L, (const char *)nm.p, (size_t)(nm.end - nm.p), 1);
      if (vi < 0)
        rc = vi;
      else
        outs[nout++] = vi;
    }
  }
  if (rc == ADV_OK && g.bad)
    rc = adv__error(L->err, ADV_EFORMAT, "%s: malformed branch", desc);
  if (rc == ADV_OK && nout != k)
    rc = adv__error(L->err, ADV_EFORMAT, "%s: %s has %d outputs, the node %d",
                    desc, b ? "else_branch" : "then_branch", nout, k);
  L->depth--;
  L->scope = old_scope;
  return rc;
}

/* An If node: both branches flattened; the node's inputs become
 * [cond, then outputs..., else outputs...] (see ops/if.c). */
static int parse_if(loader *L, pb_reader r0, adv_mnode *n) {
  int k = n->n_out;
  if (n->n_in != 1 || n->in[0] < 0)
    return adv__error(L->err, ADV_EFORMAT,
                      "If node '%s' needs one condition input", n->name);
  if (k < 1 || 1 + 2 * k > 16)
    return adv__error(L->err, ADV_ELIMIT, "If node '%s' has %d outputs (max 7)",
                      n->name, k);
  int *in = adv__arena_alloc(&L->m->arena, sizeof(int) * (size_t)(2 * k + 2));
  if (!in)
    return adv__error(L->err, ADV_ENOMEM, "out of memory");
  in[0] = n->in[0];
  for (int b = 0; b < 2; b++) {
    pb_reader g;
    if (!node_graph_attr(r0, b ? "else_branch" : "then_branch", &g))
      return adv__error(L->err, ADV_EFORMAT, "If node '%s' lacks %s", n->name,
                        b ? "else_branch" : "then_branch");
    int rc = parse_branch(L, g, n, b, in + 1 + b * k, k);
    if (rc)
      return rc;
  }
  n->in = in;
  n->n_in = 1 + 2 * k;
  return ADV_OK;
}

/* Parses a NodeProto: input/output names resolved, attributes decoded. */
static int parse_node(loader *L, pb_reader r0, adv_mnode *n) {
  adv_arena *ar = &L->m->arena;
  uint32_t f;
  int wt;
  int nin = 0, nout = 0, nattr = 0;
  pb_reader r = r0;
  const char *domain = "";
  while (pb_key(&r, &f, &wt)) {
    if (wt != PB_LEN) {
      pb_skip(&r, wt);
      continue;
    }
    pb_reader s = pb_bytes(&r);
    if (r.bad)
      break;
    size_t len = (size_t)(s.end - s.p);
    if (f == 1) nin++;
    else if (f == 2) nout++;
    else if (f == 5) nattr++;
    else if (f == 3 || f == 4 || f == 7) {
      if (len > 4096)
        return adv__error(L->err, ADV_ELIMIT, "node name too long");
      char *str = adv__arena_strndup(ar, (const char *)s.p, len);
      if (!str)
        return adv__error(L->err, ADV_ENOMEM, "out of memory");
      if (f == 3) n->name = str;
      else if (f == 4) n->op_type = str;
      else domain = str;
    }
  }
  if (r.bad || !n->op_type)
    return adv__error(L->err, ADV_EFORMAT, "malformed NodeProto");
  if (nin > 16 || nout > 16)
    return adv__error(L->err, ADV_ELIMIT,
                      "node '%s' (%s) has %d inputs / %d outputs (max 16/16)",
                      n->name ? n->name : "", n->op_type, nin, nout);
  if (nattr > 64)
    return adv__error(L->err, ADV_ELIMIT, "node has more than 64 attributes");
  if (!n->name)
    n->name = "";
  if (domain[0] && strcmp(domain, "ai.onnx")) {
    char *q = adv__arena_alloc(ar, strlen(domain) + strlen(n->op_type) + 2);
    if (!q)
      return adv__error(L->err, ADV_ENOMEM, "out of memory");
    sprintf(q, "%s:%s", domain, n->op_type);
    n->op_type = q;
  }
  n->in = adv__arena_alloc(ar, sizeof(int) * (size_t)(nin + 1));
  n->out = adv__arena_alloc(ar, sizeof(int) * (size_t)(nout + 1));
  n->attr = adv__arena_alloc(ar, sizeof(adv_attr) * (size_t)(nattr + 1));
  if (!n->in || !n->out || !n->attr)
    return adv__error(L->err, ADV_ENOMEM, "out of memory");
  r = r0;
  while (pb_key(&r, &f, &wt)) {
    if (wt != PB_LEN) {
      pb_skip(&r, wt);
      continue;
    }
    pb_reader s = pb_bytes(&r);
    size_t len = (size_t)(s.end - s.p);
    int rc = 0;
    if (f == 1 || f == 2) {
      int idx = -1;
      if (len) {
        idx = value_ref(L, (const char *)s.p, len, 1);
        if (idx < 0)
          return idx;
      }
      if (f == 1)
        n->in[n->n_in++] = idx;
      else
        n->out[n->n_out++] = idx;
    } else if (f == 5) {
      rc = parse_attr(L, s, &n->attr[n->n_attr++]);
      if (rc)
        return rc;
    }
  }
  if (L->weight_bytes > L->p.max_weight_bytes)
    return adv__error(L->err, ADV_ELIMIT, "weights exceed %zu bytes",
                     L->p.max_weight_bytes);
  if (L->depth) {
    int *g = adv__arena_alloc(ar, sizeof(int) * (size_t)L->depth);
    if (!g)
      return adv__error(L->err, ADV_ENOMEM, "out of memory");
    memcpy(g, L->guard, sizeof(int) * (size_t)L->depth);
    n->guard = g;
    n->n_guard = L->depth;
    n->scope = L->scope;
  }
  /* a Constant's stored type (e.g. an int8 zero point) is its output's */
  const adv_attr *cv = adv__attr_get(n, "value");
  if (!strcmp(n->op_type, "Constant") && n->n_out == 1 && n->out[0] >= 0 &&
      cv && cv->type == ADV_ATTR_TENSOR && cv->t)
    L->m->values[n->out[0]].onnx_type = cv->t->onnx_type;
  if (!strcmp(n->op_type, "If"))
    return parse_if(L, r0, n);
  return scan_graph_attrs(L, r0, n, L->depth + 1);
}

/* Kahn topological sort; refuses cycles and values with two producers. */
static int topo_sort(loader *L) {
  adv_model *m = L->m;
  int nv = m->n_values, nn = m->n_nodes, rc = ADV_OK;
  int *producer = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
  int *indeg = calloc((size_t)(nn ? nn : 1), sizeof(int));
  int *order = malloc(sizeof(int) * (size_t)(nn ? nn : 1));
  int *cons_cnt = calloc((size_t)nv + 1, sizeof(int));
  int *cons = NULL;
  adv_mnode *sorted = NULL;
  if (!producer || !indeg || !order || !cons_cnt) {
    rc = adv__error(L->err, ADV_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < nv; i++)
    producer[i] = -1;
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < m->nodes[i].n_out; k++) {
      int v = m->nodes[i].out[k];
      if (v < 0)
        continue;
      if (producer[v] >= 0 || m->values[v].init || m->values[v].is_graph_input) {
        rc = adv__error(L->err, ADV_EFORMAT, "value '%s' is defined twice",
                       m->values[v].name);
        goto done;
      }
      producer[v] = i;
    }
  /* inputs must be defined; count edges */
  size_t edges = 0;
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < m->nodes[i].n_in; k++) {
      int v = m->nodes[i].in[k];
      if (v < 0)
        continue;
      if (producer[v] < 0 && !m->values[v].init && !m->values[v].is_graph_input) {
        rc = adv__error(L->err, ADV_EFORMAT,
                       "node '%s' (%s) reads undefined value '%s'",
                       m->nodes[i].name, m->nodes[i].op_type, m->values[v].name);
        goto done;
      }
      if (producer[v] >= 0) {
        indeg[i]++;
        cons_cnt[v]++;
        edges++;
      }
    }
  /* a guarded node runs after the conditions of its If guards */
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < m->nodes[i].n_guard; k++) {
      int v = m->nodes[i].guard[k] >> 1;
      if (producer[v] >= 0) {
        indeg[i]++;
        cons_cnt[v]++;
        edges++;
      }
    }
  for (int i = 0; i < m->n_outputs; i++) {
    int v = m->outputs[i];
    if (producer[v] < 0 && !m->values[v].init && !m->values[v].is_graph_input) {
      rc = adv__error(L->err, ADV_EFORMAT, "graph output '%s' is never produced",
                     m->values[v].name);
      goto done;
    }
  }
  /* consumer lists (CSR) */
  int *start = calloc((size_t)nv + 1, sizeof(int));
  cons = malloc(sizeof(int) * (edges ? edges : 1));
  if (!start || !cons) {
    free(start);
    rc = adv__error(L->err, ADV_ENOMEM, "out of memory");
    goto done;
  }
  for (int v = 0; v < nv; v++)
    start[v + 1] = start[v] + cons_cnt[v];
  memset(cons_cnt, 0, sizeof(int) * (size_t)nv);
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < m->nodes[i].n_in; k++) {
      int v = m->nodes[i].in[k];
      if (v >= 0 && producer[v] >= 0)
        cons[start[v] + cons_cnt[v]++] = i;
    }
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < m->nodes[i].n_guard; k++) {
      int v = m->nodes[i].guard[k] >> 1;
      if (producer[v] >= 0)
        cons[start[v] + cons_cnt[v]++] = i;
    }
  int head = 0, tail = 0;
  for (int i = 0; i < nn; i++)
    if (indeg[i] == 0)
      order[tail++] = i;
  while (head < tail) {
    int i = order[head++];
    for (int k = 0; k < m->nodes[i].n_out; k++) {
      int v = m->nodes[i].out[k];
      if (v < 0)
        continue;
      for (int c = start[v]; c < start[v + 1]; c++)
        if (--indeg[cons[c]] == 0)
          order[tail++] = cons[c];
    }
  }
  free(start);
  if (tail != nn) {
    rc = adv__error(L->err, ADV_EFORMAT, "graph has a cycle");
    goto done;
  }
  sorted = adv__arena_alloc(&m->arena, sizeof(adv_mnode) * (size_t)(nn ? nn : 1));
  if (!sorted) {
    rc = adv__error(L->err, ADV_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < nn; i++)
    sorted[i] = m->nodes[order[i]];
  m->nodes = sorted;
done:
  free(producer);
  free(indeg);
  free(order);
  free(cons_cnt);
  free(cons);
  return rc;
}

static int count_graph(loader *L, pb_reader g, int depth, long *nodes,
                       long *values, int *n_in, int *n_out);

typedef struct count_arg {
  int depth;
  long *nodes, *values;
} count_arg;

static int count_cb(loader *L, pb_reader g, void *arg) {
  const count_arg *ca = arg;
  int di = 0, dout = 0;
  return count_graph(L, g, ca->depth, ca->nodes, ca->values, &di, &dout);
}

/* Counts the nodes of graph g and of the subgraphs in its nodes'
 * attributes, and every name that can create a value (for capacities).
 * *n_in, *n_out: graph g's own inputs and outputs. */
static int count_graph(loader *L, pb_reader g, int depth, long *nodes,
                       long *values, int *n_in, int *n_out) {
  uint32_t f;
  int wt;
  if (depth > L->p.max_nesting || depth > ADV_LOADER_MAX_DEPTH)
    return adv__error(L->err, ADV_ELIMIT, "subgraphs nested deeper than %d",
                      L->p.max_nesting);
  while (pb_key(&g, &f, &wt)) {
    if (wt != PB_LEN) {
      pb_skip(&g, wt);
      continue;
    }
    pb_reader s = pb_bytes(&g);
    if (f == 1) {
      ++*nodes;
      /* inputs and outputs of this node, graphs in its attributes */
      uint32_t f2;
      int wt2;
      pb_reader s0 = s;
      while (pb_key(&s, &f2, &wt2)) {
        if ((f2 == 1 || f2 == 2) && wt2 == PB_LEN)
          ++*values;
        pb_skip(&s, wt2);
      }
      count_arg ca = {depth + 1, nodes, values};
      int rc = each_graph_attr(L, s0, count_cb, &ca);
      if (rc)
        return rc;
    } else if (f == 5 || f == 11 || f == 12 || f == 13) {
      ++*values;
      if (f == 11)
        ++*n_in;
      else if (f == 12)
        ++*n_out;
    } else if (f == 15) {
      return adv__error(L->err, ADV_EUNSUPPORTED, "sparse initializers refused");
    }
    if (*nodes > L->p.max_nodes)
      return adv__error(L->err, ADV_ELIMIT, "more than %d nodes", L->p.max_nodes);
  }
  if (g.bad)
    return adv__error(L->err, ADV_EFORMAT, "malformed GraphProto");
  return ADV_OK;
}

/* Parses GraphProto fields into the model (two passes: count, then fill). */
static int parse_graph(loader *L, pb_reader g0) {
  adv_model *m = L->m;
  uint32_t f;
  int wt, n_in = 0, n_out = 0;
  long n_node = 0, n_names = 0;
  pb_reader g = g0;
  int rc = count_graph(L, g0, 0, &n_node, &n_names, &n_in, &n_out);
  if (rc)
    return rc;
  long cap = n_names + 1;
  if (cap > L->p.max_values)
    return adv__error(L->err, ADV_ELIMIT, "more than %d values", L->p.max_values);
  L->cap_values = (int)cap;
  L->cap_nodes = (int)n_node;
  L->nslots = 16;
  while (L->nslots < (size_t)cap * 2)
    L->nslots <<= 1;
  L->slots = malloc(sizeof(int) * L->nslots);
  m->values = adv__arena_alloc(&m->arena, sizeof(adv_mvalue) * (size_t)cap);
  m->nodes = adv__arena_alloc(&m->arena, sizeof(adv_mnode) * (size_t)(n_node + 1));
  m->inputs = adv__arena_alloc(&m->arena, sizeof(int) * (size_t)(n_in + 1));
  m->outputs = adv__arena_alloc(&m->arena, sizeof(int) * (size_t)(n_out + 1));
  if (!L->slots || !m->values || !m->nodes || !m->inputs || !m->outputs)
    return adv__error(L->err, ADV_ENOMEM, "out of memory");
  for (size_t i = 0; i < L->nslots; i++)
    L->slots[i] = -1;

  /* 1. initializers */
  g = g0;
  while (pb_key(&g, &f, &wt)) {
    if (f != 5 || wt != PB_LEN) {
      pb_skip(&g, wt);
      continue;
    }
    if ((rc = add_initializer(L, pb_bytes(&g))))
      return rc;
  }
  /* 2. graph inputs (those with an initializer are constants) */
  g = g0;
  while (pb_key(&g, &f, &wt)) {
    if (f != 11 || wt != PB_LEN) {
      pb_skip(&g, wt);
      continue;
    }
    int vi;
    if ((rc = parse_value_info(L, pb_bytes(&g), 1, &vi)))
      return rc;
    if (!m->values[vi].init) {
      if (m->values[vi].is_graph_input)
        return adv__error(L->err, ADV_EFORMAT, "graph input '%s' listed twice",
                         m->values[vi].name);
      m->values[vi].is_graph_input = true;
      m->inputs[m->n_inputs++] = vi;
    }
  }
  /* 3. nodes */
  g = g0;
  while (pb_key(&g, &f, &wt)) {
    if (f != 1 || wt != PB_LEN) {
      pb_skip(&g, wt);
      continue;
    }
    if (m->n_nodes >= L->cap_nodes)
      return adv__error(L->err, ADV_EINTERNAL, "node count");
    if ((rc = parse_node(L, pb_bytes(&g), &m->nodes[m->n_nodes++])))
      return rc;
  }
  /* 4. outputs and value_info (shapes only) */
  g = g0;
  while (pb_key(&g, &f, &wt)) {
    if ((f != 12 && f != 13) || wt != PB_LEN) {
      pb_skip(&g, wt);
      continue;
    }
    int vi;
    if ((rc = parse_value_info(L, pb_bytes(&g), f == 12, &vi)))
      return rc;
    if (f == 12) {
      m->values[vi].is_graph_output = true;
      m->outputs[m->n_outputs++] = vi;
    }
  }
  if (g.bad)
    return adv__error(L->err, ADV_EFORMAT, "malformed GraphProto");
  if (m->n_outputs == 0)
    return adv__error(L->err, ADV_EFORMAT, "graph has no outputs");
  return ADV_OK;
}

/* Reports every op not in the op table, by name, in one message; ops of
 * If branches and of Loop/Scan bodies say which node's subgraph holds them:
 * "X (in subgraph of If node 'name')". */
static int check_ops(loader *L) {
  adv_model *m = L->m;
  char buf[600];
  size_t used = 0;
  int bad = 0;
  buf[0] = 0;
  for (int i = 0; i < m->n_nodes; i++) {
    adv_mnode *n = &m->nodes[i];
    n->op = adv__op_find(n->op_type);
    if (n->op >= 0)
      continue;
    int dup = 0;
    for (int j = 0; j < i && !dup; j++)
      dup = m->nodes[j].op < 0 && !strcmp(m->nodes[j].op_type, n->op_type) &&
            (m->nodes[j].scope == n->scope ||
             (m->nodes[j].scope && n->scope &&
              !strcmp(m->nodes[j].scope, n->scope)));
    if (dup)
      continue;
    bad++;
    int w =
        snprintf(buf + used, sizeof(buf) - used, "%s%s%s%s%s", used ? ", " : "",
                 n->op_type, n->scope ? " (in subgraph of " : "",
                 n->scope ? n->scope : "", n->scope ? ")" : "");
    if (w > 0 && (size_t)w < sizeof(buf) - used)
      used += (size_t)w;
  }
  if (L->bad_used) {
    bad += L->n_bad_sub;
    snprintf(buf + used, sizeof(buf) - used, "%s%s", used ? ", " : "",
             L->bad_sub);
  }
  if (bad)
    return adv__error(L->err, ADV_EUNSUPPORTED, "unsupported operator%s: %s",
                     bad > 1 ? "s" : "", buf);
  return ADV_OK;
}

/* Refuses a model using an op we lack (at top level or in any subgraph)
 * before any initializer is decoded, so that refusing a large model costs
 * no conversion and no memory: one pass over the graph's nodes, naming
 * every unsupported op as check_ops does. */
static int precheck_ops(loader *L, pb_reader g) {
  int rc = scan_graph(L, g, NULL, 0);
  if (rc)
    return rc;
  if (!L->bad_used)
    return ADV_OK;
  return adv__error(L->err, ADV_EUNSUPPORTED, "unsupported operator%s: %s",
                    L->n_bad_sub > 1 ? "s" : "", L->bad_sub);
}

/* Marks the model as ending in a probability when output 0 is produced by
 * a Softmax (possibly through Identity), remembering the logits value. */
static void detect_probability(adv_model *m) {
  m->logits_value = -1;
  int v = m->outputs[0];
  for (int hop = 0; hop < 4; hop++) {
    int prod = -1;
    for (int i = 0; i < m->n_nodes && prod < 0; i++)
      for (int k = 0; k < m->nodes[i].n_out; k++)
        if (m->nodes[i].out[k] == v)
          prod = i;
    if (prod < 0)
      return;
    const adv_mnode *n = &m->nodes[prod];
    if (!strcmp(n->op_type, "Identity") && n->n_in == 1) {
      v = n->in[0];
      continue;
    }
    if (!strcmp(n->op_type, "Softmax") && n->n_in == 1) {
      m->prob_output = 1;
      m->logits_value = n->in[0];
    }
    return;
  }
}

int adv_model_load_mem(const void *buf, size_t len, adv_load_params p,
                       adv_model **out, adv_err *err) {
  *out = NULL;
  if (!buf && len)
    return adv__error(err, ADV_EINVAL, "NULL buffer");
  if (len > p.max_file_bytes)
    return adv__error(err, ADV_ELIMIT, "model file larger than %zu bytes",
                     p.max_file_bytes);
  adv_model *m = calloc(1, sizeof(*m));
  if (!m)
    return adv__error(err, ADV_ENOMEM, "out of memory");
  adv__arena_init(&m->arena, p.max_weight_bytes + ((size_t)256 << 20));
  loader L = {.m = m, .p = p, .err = err};
  pb_reader r = pb_init(buf, len), graph = {0};
  uint32_t f;
  int wt, has_graph = 0, rc = ADV_OK;
  m->opset = -1;
  while (pb_key(&r, &f, &wt)) {
    if (f == 1 && wt == PB_VARINT) {
      m->ir_version = (int64_t)pb_varint(&r);
    } else if (f == 2 && wt == PB_LEN) {
      pb_reader s = pb_bytes(&r);
      if (!r.bad && s.end - s.p < 256)
        m->producer = adv__arena_strndup(&m->arena, (const char *)s.p,
                                         (size_t)(s.end - s.p));
    } else if (f == 7 && wt == PB_LEN) {
      graph = pb_bytes(&r);
      has_graph = 1;
    } else if (f == 8 && wt == PB_LEN) {
      pb_reader s = pb_bytes(&r);
      char dom[64] = "";
      int64_t ver = 0;
      uint32_t f2;
      int wt2;
      while (pb_key(&s, &f2, &wt2)) {
        if (f2 == 1 && wt2 == PB_LEN) {
          pb_reader d = pb_bytes(&s);
          size_t dl = (size_t)(d.end - d.p);
          if (dl >= sizeof(dom))
            dl = sizeof(dom) - 1;
          if (!s.bad) {
            memcpy(dom, d.p, dl);
            dom[dl] = 0;
          }
        } else if (f2 == 2 && wt2 == PB_VARINT) {
          ver = (int64_t)pb_varint(&s);
        } else {
          pb_skip(&s, wt2);
        }
      }
      if (s.bad)
        r.bad = true;
      if ((!dom[0] || !strcmp(dom, "ai.onnx")) && ver > m->opset)
        m->opset = (int)(ver > 1000 ? 1000 : ver);
    } else {
      pb_skip(&r, wt);
    }
  }
  if (r.bad) {
    rc = adv__error(err, ADV_EFORMAT, "not an ONNX model: malformed or truncated protobuf");
    goto fail;
  }
  if (!has_graph) {
    rc = adv__error(err, ADV_EFORMAT, "not an ONNX model: no graph");
    goto fail;
  }
  if (m->opset < 0)
    m->opset = 1;
  if (m->opset < 1 || m->opset > 21) {
    rc = adv__error(err, ADV_EUNSUPPORTED,
                    "opset %d unsupported (supported: 1 to 21)", m->opset);
    goto fail;
  }
  if ((rc = precheck_ops(&L, graph)))
    goto fail;
  if ((rc = parse_graph(&L, graph)))
    goto fail;
  if ((rc = check_ops(&L)))
    goto fail;
  if ((rc = topo_sort(&L)))
    goto fail;
  detect_probability(m);
  free(L.slots);
  m->folded = calloc((size_t)m->n_values + 1, sizeof(void *));
  if (!m->folded) {
    adv_model_free(m);
    return adv__error(err, ADV_ENOMEM, "out of memory");
  }
  m->n_folded = m->n_values;
  m->folded_owner = m;
  *out = m;
  return ADV_OK;
fail:
  free(L.slots);
  adv_model_free(m);
  return rc;
}

int adv_model_load_file(const char *path, adv_load_params p, adv_model **out,
                        adv_err *err) {
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return adv__error(err, ADV_EIO, "cannot open '%s': %s", path, strerror(errno));
  if (fseek(fp, 0, SEEK_END) != 0) {
    fclose(fp);
    return adv__error(err, ADV_EIO, "cannot seek '%s'", path);
  }
  long sz = ftell(fp);
  if (sz < 0) {
    fclose(fp);
    return adv__error(err, ADV_EIO, "cannot size '%s'", path);
  }
  if ((size_t)sz > p.max_file_bytes) {
    fclose(fp);
    return adv__error(err, ADV_ELIMIT, "model file larger than %zu bytes",
                     p.max_file_bytes);
  }
  rewind(fp);
  void *buf = malloc((size_t)sz + 1);
  if (!buf) {
    fclose(fp);
    return adv__error(err, ADV_ENOMEM, "out of memory");
  }
  size_t got = fread(buf, 1, (size_t)sz, fp);
  fclose(fp);
  if (got != (size_t)sz) {
    free(buf);
    return adv__error(err, ADV_EIO, "short read on '%s'", path);
  }
  int rc = adv_model_load_mem(buf, (size_t)sz, p, out, err);
  free(buf);
  return rc;
}

int adv_tensorproto_read(const void *buf, size_t len, adv_array *out,
                         adv_err *err) {
  memset(out, 0, sizeof(*out));
  adv_arena a;
  adv_load_params p = adv_load_default_params();
  adv__arena_init(&a, p.max_tensor_bytes + (1 << 20));
  adv_const *c;
  int rc = parse_tensor(pb_init(buf, len), &a, &p, &c, NULL, NULL, 0, err);
  if (rc == ADV_OK) {
    rc = adv_array_alloc(out, c->dtype, c->ndim, c->dims);
    if (rc == ADV_OK)
      memcpy(out->data, c->data, out->nbytes);
    else
      adv__error(err, rc, "out of memory");
  }
  adv__arena_free(&a);
  return rc;
}

void adv_model_free(adv_model *m) {
  if (!m)
    return;
  for (int i = 0; i < m->n_values; i++) /* widened copies of own weights */
    if (m->values[i].init && m->values[i].init->owner == m) {
      free(m->values[i].init->wide);
      const adv_const *c = m->values[i].init;
      if (c->own_data)
        adv__big_free(c->data, (size_t)c->numel * adv_dtype_size(c->dtype));
    }
  if (m->folded_owner == m) {
    for (int i = 0; i < m->n_folded; i++)
      free(m->folded[i]);
    free(m->folded);
  }
  adv__arena_free(&m->arena);
  free(m);
}

int adv_model_num_inputs(const adv_model *m) { return m->n_inputs; }
int adv_model_num_outputs(const adv_model *m) { return m->n_outputs; }
const char *adv_model_input_name(const adv_model *m, int i) {
  return i >= 0 && i < m->n_inputs ? m->values[m->inputs[i]].name : NULL;
}
const char *adv_model_output_name(const adv_model *m, int i) {
  return i >= 0 && i < m->n_outputs ? m->values[m->outputs[i]].name : NULL;
}
int adv_model_input_shape(const adv_model *m, int i, int64_t dims[ADV_MAX_DIMS]) {
  if (i < 0 || i >= m->n_inputs)
    return ADV_EINVAL;
  const adv_mvalue *v = &m->values[m->inputs[i]];
  memcpy(dims, v->dims, sizeof(v->dims));
  return v->ndim;
}
int adv_model_output_is_probability(const adv_model *m) { return m->prob_output; }
int adv_model_opset(const adv_model *m) { return m->opset; }
