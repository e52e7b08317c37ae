/*
 * engine.h - libadv internals shared by the loader, the planner and the ops.
 *
 * Two levels:
 *   model level  (adv_model): what the ONNX file says - values (named
 *                tensors, possibly constant), nodes with attributes. All of
 *                it lives in one bump arena owned by the model.
 *   plan level   (adv_session): a copy of the values with concrete shapes,
 *                constant subgraphs folded, and arena offsets for runtime
 *                tensors. Ops work on plan-level tensors (adv_tensor).
 *
 * Shape letters used in comments: N batch, C channels, H/W spatial,
 * M output channels, K reduction length.
 */
#ifndef ADV_ENGINE_H
#define ADV_ENGINE_H

#include "adv/adv.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------- bump arena (model metadata, plan constants) ---------- */

typedef struct adv_arena_block adv_arena_block;
typedef struct adv_arena {
  adv_arena_block *head;
  size_t used_total; /* bytes handed out */
  size_t cap;        /* hard budget; 0 = unlimited */
} adv_arena;

void adv__arena_init(adv_arena *a, size_t cap);
/* Returns zeroed, 64-byte aligned memory or NULL (ENOMEM or over cap). */
void *adv__arena_alloc(adv_arena *a, size_t n);
char *adv__arena_strndup(adv_arena *a, const char *s, size_t n);
void adv__arena_free(adv_arena *a);

/* ---------- errors ---------- */

/* Formats into err (may be NULL) and returns code. */
int adv__error(adv_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Monotonic clock in seconds (timings in results). */
double adv__now_s(void);

/* ---------- attributes ---------- */

typedef enum adv_attr_type {
  ADV_ATTR_UNDEFINED = 0,
  ADV_ATTR_FLOAT = 1,
  ADV_ATTR_INT = 2,
  ADV_ATTR_STRING = 3,
  ADV_ATTR_TENSOR = 4,
  ADV_ATTR_GRAPH = 5,
  ADV_ATTR_FLOATS = 6,
  ADV_ATTR_INTS = 7,
  ADV_ATTR_STRINGS = 8,
  ADV_ATTR_TENSORS = 9,
  ADV_ATTR_GRAPHS = 10,
} adv_attr_type;

/* Storage dtypes: initializers of 1-byte integer (U8, I8) and 16-bit float
 * (F16, BF16) types keep their stored type in memory (1 or 2 bytes per
 * weight); every other tensor is F32 or I64. At plan time only the inputs
 * adv__op_stored_inputs names may be such a tensor; any other consumer
 * gets it widened once (adv__tensor_widen). */
typedef struct adv_const {
  adv_dtype dtype; /* F32 or I64, or a storage dtype for initializers */
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  int64_t numel;
  void *data; /* arena memory */
  int onnx_type; /* TensorProto.DataType as stored (2 uint8, 3 int8...) */
  /* Initializers in a storage dtype: the widened copy (F32 for F16/BF16,
   * I64 for U8/I8) made by the first session that needs it and shared by
   * every later one (adv__tensor_widen), malloc'd, freed with `owner`;
   * NULL until then. Written once under adv__weights_lock. */
  void *wide;
  const struct adv_model *owner; /* the model that frees `wide` */
  /* Stored weights of ADV_OWN_DATA_BYTES or more: data is adv__big_alloc'd
   * (not arena memory), freed with `owner`, or earlier, set to NULL, once every
   * node of the model reading it is a fold in the model's fold cache
   * (plan.c, under adv__weights_lock): no session reads it after that. */
  bool own_data;
} adv_const;

#define ADV_OWN_DATA_BYTES ((size_t)1 << 20)

typedef struct adv_attr {
  const char *name;
  adv_attr_type type;
  float f;
  int64_t i;
  const char *s; /* NUL-terminated copy */
  size_t slen;
  float *floats;
  int64_t *ints;
  const char **strings; /* STRINGS: NUL-terminated copies */
  int n;                /* element count of floats/ints/strings */
  adv_const *t;
} adv_attr;

/* ---------- model ---------- */

typedef struct adv_mvalue {
  const char *name;
  adv_dtype dtype;               /* UNDEFINED when not declared */
  int ndim;                      /* -1 when the rank is unknown */
  int64_t dims[ADV_MAX_DIMS];    /* -1 for symbolic/unknown */
  const char *sym[ADV_MAX_DIMS]; /* dim_param names or NULL */
  adv_const *init;               /* initializer, or NULL; its dtype may
                                    be a storage dtype (dtype: the wide) */
  int onnx_type; /* declared/stored TensorProto.DataType, 0 when unknown */
  bool is_graph_input;
  bool is_graph_output;
} adv_mvalue;

typedef struct adv_mnode {
  const char *name;
  const char *op_type;
  int op; /* index into the op table */
  int n_in, n_out;
  int *in;  /* value index or -1 for an omitted optional input */
  int *out; /* value index or -1 */
  int n_attr;
  adv_attr *attr;
  /* Nodes of If branches are flattened into the model's node list. Such a
   * node runs only when every guard holds: guard[k] = 2 * cond + b where
   * cond is the value index of an enclosing If's condition and b is 0 for
   * its then_branch (cond true), 1 for else_branch. Outermost first. */
  int n_guard;
  const int *guard;
  const char *scope; /* "If node 'name'" of the innermost If, or NULL */
} adv_mnode;

struct adv_model {
  adv_arena arena;
  int opset;
  int64_t ir_version;
  const char *producer;
  int n_values;
  adv_mvalue *values;
  int n_nodes;
  adv_mnode *nodes; /* topologically sorted after load */
  int n_inputs;     /* graph inputs that are not initializers */
  int *inputs;
  int n_outputs;
  int *outputs;
  int prob_output;     /* 1 when output 0 comes from a final Softmax */
  int logits_value;    /* value index of that Softmax's input, else -1 */
  /* Fold cache: folded[v] is the data of value v when a session folded a
   * DequantizeLinear/Cast of initializers into it (the float weight), made
   * once and shared by every later session (plan.c, written under
   * adv__weights_lock); NULL until then. n_folded entries, malloc'd by the
   * loader, freed with folded_owner (a view from adv_model_bind shares its
   * base's). */
  void **folded;
  int n_folded;
  const struct adv_model *folded_owner;
};

/* ---------- plan ---------- */

typedef struct adv_tensor {
  adv_dtype dtype; /* F32 or I64; constants may hold a storage dtype */
  int ndim;
  int64_t dims[ADV_MAX_DIMS];
  int64_t numel;
  void *data;      /* const data, or arena base + offset at run time */
  bool is_const;   /* value known at plan time */
  bool is_input;   /* runtime graph input */
  bool is_output;
  bool needed;     /* consumed by some runtime node or an output */
  int def;         /* index of the runtime node producing it, -1 if none */
  int last_use;    /* last runtime node index reading it */
  size_t offset;   /* into the activation arena */
  size_t bytes;
  /* backward (sessions with grad=1) */
  bool req_grad;   /* depends on the input (or is a weight with grads) */
  bool bw_keep;    /* read by some backward(); kept alive until then */
  int bw_last;     /* last backward time step reading the activation */
  float *grad;     /* dL/dt, same shape, or NULL when no gradient flows */
  size_t goffset, gbytes;
  int g_first, g_last; /* lifetime of the gradient buffer (time steps) */
  int g_zero_at;   /* run index whose backward zeroes it first, -1 none */
  bool is_weight;  /* persistent weight-gradient buffer (not in arena) */
} adv_tensor;

struct adv_plan;

/* A node as planned: tensors resolved; op-private params. */
typedef struct adv_pnode {
  const adv_mnode *m;
  int op;
  int n_in, n_out;
  adv_tensor *in[16];  /* NULL for omitted optional inputs */
  adv_tensor *out[16];
  void *params;        /* op-private, plan arena */
  size_t scratch;      /* bytes of per-thread scratch needed by forward */
  size_t bw_scratch;   /* bytes of per-thread scratch needed by backward */
  unsigned bw_extra;   /* activations this node's backward reads beyond the
                          op's static bw_needs (set by infer) */
  bool runtime;        /* false when folded at plan time */
  bool backward;       /* runs in the backward pass */
  /* Gradient assignment instead of accumulation (ADV_BW_IN(k) bits).
   * bw_can_assign: set by infer() when backward() writes every element of
   * in[k]->grad and honours bw_assign. bw_assign: set by the planner when
   * this node is the only backward writer of in[k]->grad, which is then not
   * zeroed first: backward() must store (=) instead of add (+=). */
  unsigned bw_can_assign;
  unsigned bw_assign;
  unsigned fuse;       /* ADV_FUSE_* set by fuse.c before infer() */
  bool is_identity;    /* set by infer(): out[0] equals in[0] (same shape) */
  bool relu_commutes;  /* set by infer(): op(Relu(x)) == Relu(op(x)) (a max
                          pool whose every window holds an input element) */
  bool guarded;        /* a runtime node whose If guards are data-dependent */
  bool skipped;        /* guarded and not taken in the last forward run */
} adv_pnode;

/* The node applies ReLU to its output (a Relu node absorbed by fuse.c). */
#define ADV_FUSE_RELU 1u

/* A run's start, for adv__run_observe. */
typedef struct adv__run_stamp {
  int on;
  double wall, cpu; /* adv__now_s() and process CPU seconds at the start */
} adv__run_stamp;
typedef struct adv_plan {
  const adv_model *model;
  adv_arena arena;  /* plan-lifetime allocations (params, folded consts) */
  int opset;
  int threads;          /* threads the session was planned for */
  adv__run_stamp stamp; /* the current run's start (load adaptation) */
  int n_tensors;
  adv_tensor *tensors; /* parallel to model->values */
  int n_nodes;
  adv_pnode *nodes;    /* all nodes, in order */
  int n_run;
  int *run;            /* indices of runtime nodes */
  int n_in, n_out;
  int in_idx[16];      /* runtime input tensor indices */
  int out_idx[16];     /* output tensor indices */
  size_t arena_bytes;
  size_t max_bytes;    /* cap on arena + scratch (session params) */
  unsigned char *act;  /* activation arena */
  size_t scratch_per_thread;
  unsigned char *scratch;
  /* backward */
  bool grad, weight_grad;
  int64_t n_forward, n_backward;
  int n_weights;
  int *weight_idx;     /* tensor indices with persistent weight grads */
  struct adv_cleanup *cleanups; /* run by adv_session_free, newest first */
  bool ftz_pool;       /* OpenMP pool threads set to FTZ|DAZ */
} adv_plan;

typedef struct adv_cleanup {
  void (*fn)(void *);
  void *arg;
  struct adv_cleanup *next;
} adv_cleanup;

/* Registers fn(arg) to run when the session is freed (also after a failed
 * init). Returns 0, or ADV_ENOMEM (fn is then not registered). */
int adv__plan_on_free(adv_plan *p, void (*fn)(void *), void *arg);

/* oneDNN convolution (conv_dnnl.c). g: N C H W M OH OW KH KW SH SW DH DW
 * PT PL PB PR group; relu: apply max(y, 0) as a post-op. Returns 0 with
 * *handle set, or -1 to fall back. */
int adv__dnnl_conv_plan(adv_plan *p, adv_pnode *n, const int64_t *g, int bias,
                        int relu, int with_bwd, void **handle, size_t *scratch_bytes);
int adv__dnnl_conv_forward(adv_plan *p, adv_pnode *n, void *handle);
int adv__dnnl_conv_backward_data(adv_plan *p, adv_pnode *n, void *handle);
/* 1 when backward-data runs on oneDNN (else the caller's im2col path). */
int adv__dnnl_conv_has_bwd(const void *handle);
/* How many oneDNN convolutions (forward or backward data) this process ran
 * on their one-thread primitives, made at plan time for the load
 * adaptation (conv_dnnl.c); for tests. */
long adv__dnnl_serial_execs(void);
/* oneDNN ConvTranspose (deconvolution), same geometry order with X as src
 * and Y as dst (PB/PR ignored); run with adv__dnnl_conv_forward /
 * _backward_data. 0 with *handle set, or -1 to fall back. */
int adv__dnnl_deconv_plan(adv_plan *p, adv_pnode *n, const int64_t *g, int bias,
                          int with_bwd, void **handle, size_t *scratch_bytes);

/* ---------- ops ---------- */

/*
 * An op: infer() checks inputs/attributes, sets output dtype and shape (and
 * n->params / n->scratch); forward() computes outputs from inputs. The same
 * forward() runs at plan time on constant inputs (folding) and at run time.
 * `scratch` is per-thread memory of n->scratch bytes times plan threads.
 */
typedef struct adv_op_def {
  const char *name;
  int (*infer)(adv_plan *p, adv_pnode *n, adv_err *err);
  int (*forward)(adv_plan *p, adv_pnode *n);
  /* Accumulates into in[k]->grad (when non-NULL) from out[k]->grad (NULL
   * means a zero upstream gradient), or stores into it when n->bw_assign
   * has ADV_BW_IN(k) (see adv_pnode). May read the tensors named in
   * bw_needs. NULL when the op has no gradient. */
  int (*backward)(adv_plan *p, adv_pnode *n);
  unsigned bw_needs; /* ADV_BW_IN(k) | ADV_BW_OUT(k): activations read */
  unsigned bw_needs_wgrad; /* extra reads only when weight grads are on */
} adv_op_def;

/* Which inputs of op `name` may be constants in a storage dtype
 * (U8/I8/F16/BF16, see adv_const), read with adv__elem_f32: bit k for input
 * k. The quantized ops and Cast (plan.c's table); 0 for every other op,
 * whose such inputs the planner widens to F32/I64 before infer(). */
unsigned adv__op_stored_inputs(const char *name);

#define ADV_BW_IN(k) (1u << (k))
#define ADV_BW_OUT(k) (1u << (16 + (k)))

/* ---------- graph rewrites (fuse.c) ---------- */

typedef struct adv_fuse_ctx adv_fuse_ctx;
/* Reader counts of the model's values over the nodes need_n keeps; NULL on
 * ENOMEM. Free with adv__fuse_ctx_free. */
adv_fuse_ctx *adv__fuse_ctx_new(const struct adv_plan *p, const char *need_n);
void adv__fuse_ctx_free(adv_fuse_ctx *c);
/* Called for a Conv node before its infer(): may fold the following
 * BatchNormalization into new constant weights and absorb a following
 * Relu (clearing their need_n entries). 0 or ADV_ENOMEM. */
int adv__fuse_conv(struct adv_plan *p, adv_pnode *n, char *need_n,
                   const adv_fuse_ctx *c);
/* After all nodes are inferred: (when rewrite) identity nodes dropped and
 * the Relu/MaxPool swap; then every runtime tensor's def/last_use/needed
 * recomputed from the final node order. */
int adv__fuse_rewrite(struct adv_plan *p, int rewrite, adv_err *err);

/* If (ops/if.c): the branch a condition tensor selects, 0 (then) when its
 * first element is nonzero, else 1 (else). */
int adv__if_branch(const adv_tensor *cond);

extern const adv_op_def *const adv__ops[];
extern const int adv__n_ops;
/* Index of op_type in adv__ops, or -1. */
int adv__op_find(const char *op_type);
/* -1 when every op row is sound (unique name, infer + forward), else the
 * index of the first bad row (registry.c). */
int adv__op_table_check(void);

/* ---------- helpers for ops ---------- */

const adv_attr *adv__attr_get(const adv_mnode *n, const char *name);
int64_t adv__attr_int(const adv_mnode *n, const char *name, int64_t def);
float adv__attr_float(const adv_mnode *n, const char *name, float def);
const char *adv__attr_str(const adv_mnode *n, const char *name,
                          const char *def);
/* Returns element count, or -1 when absent; *out points at arena data. */
int adv__attr_ints(const adv_mnode *n, const char *name, const int64_t **out);

/* Sets shape and numel; returns ADV_ELIMIT on overflow. */
int adv__tensor_set_shape(adv_tensor *t, adv_dtype dt, int ndim,
                          const int64_t *dims);
/* float16 / bfloat16 bits to float (exact). */
float adv__f16_to_f32(uint16_t h);
float adv__bf16_to_f32(uint16_t h);
/* 1 for the storage dtypes U8, I8, F16, BF16 (see adv_const). */
static inline int adv__dtype_is_stored(adv_dtype t) {
  return t == ADV_DTYPE_U8 || t == ADV_DTYPE_I8 || t == ADV_DTYPE_F16 ||
         t == ADV_DTYPE_BF16;
}
/* Element e of t as float, for any tensor dtype (F32, I64 and the storage
 * dtypes). */
static inline float adv__elem_f32(const adv_tensor *t, int64_t e) {
  switch (t->dtype) {
  case ADV_DTYPE_F32:
    return ((const float *)t->data)[e];
  case ADV_DTYPE_I64:
    return (float)((const int64_t *)t->data)[e];
  case ADV_DTYPE_U8:
    return ((const uint8_t *)t->data)[e];
  case ADV_DTYPE_I8:
    return ((const int8_t *)t->data)[e];
  case ADV_DTYPE_F16:
    return adv__f16_to_f32(((const uint16_t *)t->data)[e]);
  case ADV_DTYPE_BF16:
    return adv__bf16_to_f32(((const uint16_t *)t->data)[e]);
  default:
    return 0.f;
  }
}
/* Converts numel elements of storage dtype src_t at src into dst, which is
 * float for F16/BF16 and int64 for U8/I8 (the wide type, see
 * adv__dtype_wide). */
void adv__widen(adv_dtype src_t, const void *src, int64_t numel, void *dst);
/* The compute dtype of t: F32 for F16/BF16, I64 for U8/I8, else t. */
adv_dtype adv__dtype_wide(adv_dtype t);
/* When constant t holds a storage dtype: points it at a widened copy and
 * sets its dtype to the wide type, so that every later reader of t sees
 * the wide tensor. For a model initializer the copy is the model's shared
 * one (adv_const.wide, made once for all sessions; the stored bytes stay,
 * sessions may still read them); for any other constant it goes to the
 * plan arena. No-op for other tensors. 0 or ADV_ENOMEM (t unchanged). */
int adv__tensor_widen(struct adv_plan *p, adv_tensor *t);
/* Page-mapped memory for large stored weights (adv_const.own_data): NULL
 * on failure; free with adv__big_free and the same size. */
void *adv__big_alloc(size_t n);
void adv__big_free(void *d, size_t n);
/* The one lock of the weights shared by sessions: adv_const.wide,
 * adv_const.data when own_data, adv_model.folded. */
void adv__weights_lock(void);
void adv__weights_unlock(void);

/* Reads a constant integer tensor (I64) into out (max n); returns count
 * or a negative status when the tensor is not constant / not integer. */
int adv__const_ints(const adv_tensor *t, int64_t *out, int max);
/* Normalizes a possibly negative axis into [0, rank); -1 when invalid. */
int adv__axis(int64_t axis, int rank);
/* Computes a numpy broadcast of two shapes; ADV_ESHAPE on mismatch. */
int adv__broadcast_shape(const adv_tensor *a, const adv_tensor *b, int *ndim,
                         int64_t *dims);
/* Element strides of t inside the broadcast shape (ndim, dims): st[i] is
 * 0 along dims t is broadcast over, else t's contiguous stride. */
void adv__bcast_strides(const adv_tensor *t, int ndim, const int64_t *dims,
                        int64_t *st);
/* Splits t's shape around axis a: outer = prod dims[:a], len = dims[a],
 * inner = prod dims[a+1:]. */
void adv__axis_split(const adv_tensor *t, int a, int64_t *outer, int64_t *len,
                     int64_t *inner);
float *adv__scratch(adv_plan *p, adv_pnode *n, int thread);
/* Sums a gradient of the broadcast shape (ndim, dims) into g, whose shape
 * is t's (numpy broadcasting): g[j] += sum of dy over broadcast copies.
 * When scale is non-NULL each term is multiplied by scale[i] (same shape
 * as dy). */
void adv__unbroadcast_add(const adv_tensor *t, float *g, int ndim,
                          const int64_t *dims, const float *dy);

/* A parallel loop body (parallel.c): items [lo, hi) of the loop, run by
 * thread `worker` (0 = the loop's caller; always < the loop's thread
 * count, so it indexes per-thread scratch). Each output element must be
 * written by the chunk that owns its item: which thread runs a chunk
 * never changes a result. */
typedef void (*adv__par_fn)(void *ctx, int64_t lo, int64_t hi, int worker);
/* Runs fn over items [0, n) on up to `threads` threads in chunks of at
 * least `grain` items that threads claim one at a time; the caller takes
 * part and returns when every chunk is done, without waiting for a worker
 * that had not started. threads <= 1, a loop inside a chunk, or a loop
 * while another runs: fn(ctx, 0, n, 0) on the calling thread. */
void adv__par_for(int threads, int64_t n, int64_t grain, adv__par_fn fn,
                  void *ctx);
/* adv__par_for with every item claimed on its own (coarse items such as
 * the evaluator's sample chunks; up to 65535 items, else grouped). */
void adv__par_each(int threads, int64_t n, adv__par_fn fn, void *ctx);

/* Load adaptation (parallel.c): how many of a loop's `threads` threads run
 * it now (fewer while other processes hold the cores). Only execution
 * changes: every loop's chunks, and every session's plan, stay those of
 * `threads`, so results never depend on the load. */
int adv__threads_for_run(int threads);
void adv__run_mark(adv__run_stamp *st);
/* Counts the run since st (its wall time and the process's CPU time)
 * towards the next thread-count decision. */
void adv__run_observe(const adv__run_stamp *st);
/* Between the nodes of a run: when a window's worth of time has passed
 * since st, counts it (as adv__run_observe) and restarts st. */
void adv__run_tick(adv__run_stamp *st);
/* Tests: one closed window of `busy` cores busy over `wall` seconds of run
 * time, as if measured. */
void adv__threads_adapt_feed(double busy, double wall);
/* Tests: back to a whole team and a fresh policy (no open window, no
 * back-off); the forced mode stays forced. */
void adv__threads_adapt_reset(void);
/* 1 when the load adaptation may change the executing thread count
 * (ADV_THREADS_ADAPT is not 0). */
int adv__threads_adapt_on(void);

/* Row-major SGEMM C = alpha op(A) op(B) + beta C split over `threads`
 * OpenMP threads by blocks of rows of C (or columns when C is wide);
 * OpenBLAS itself always runs single-threaded (one thread pool only). */
void adv__sgemm(int threads, int transA, int transB, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);

/* Pool/conv spatial geometry shared by Conv, MaxPool, AveragePool. */
typedef struct adv_pool_geom {
  int nsp;                      /* number of spatial dims (1..3) */
  int64_t in[3], out[3], k[3], stride[3], dil[3], pad_lo[3], pad_hi[3];
} adv_pool_geom;
/* Fills geometry from attributes kernel_shape (or kshape when given),
 * strides, dilations, pads, auto_pad, ceil_mode. */
int adv__pool_geom(const adv_mnode *n, const adv_tensor *x,
                   const int64_t *kshape, bool allow_ceil, adv_pool_geom *g,
                   adv_err *err);

#endif
