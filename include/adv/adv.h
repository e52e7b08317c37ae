/*
 * adv/adv.h - libadv, the AI Adversarial Sandbox engine: ONNX loading and
 * exact float32 inference (and, in later layers, gradients and attacks).
 *
 * Objects:
 *   adv_model   - an immutable, validated graph loaded from ONNX bytes.
 *                 Thread-safe to share between sessions; must outlive them.
 *   adv_session - an execution context for one model at one batch size:
 *                 shapes resolved, constant subgraphs folded, activation
 *                 memory planned once (arena). Not thread-safe; one thread
 *                 at a time, reused for many runs.
 *
 * Errors: every function returns 0 (ADV_OK) or a negative adv_status; when
 * `err` is given it receives a human-readable reason. After an error no
 * object is returned and nothing leaks.
 */
#ifndef ADV_ADV_H
#define ADV_ADV_H

#include "adv/array.h"
#include "adv/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Engine version string, e.g. "0.1.0". */
const char *adv_version(void);

/*
 * Creates the engine's worker threads for loops of up to `threads` threads
 * now instead of at the first loop that wants them (a sandbox may forbid
 * creating threads later). Returns how many threads a loop can use, the
 * caller included (fewer than asked when the system refused a thread; the
 * engine then runs with those). Thread-safe; the threads live until exit.
 */
int adv_threads_prepare(int threads);

typedef struct adv_model adv_model;
typedef struct adv_session adv_session;

/* Hard caps applied while decoding an untrusted ONNX file. */
typedef struct adv_load_params {
  size_t max_file_bytes;   /* whole file */
  size_t max_tensor_bytes; /* one initializer / constant */
  size_t max_weight_bytes; /* all initializers together */
  int max_nodes;           /* NodeProto count */
  int max_values;          /* inputs + outputs + initializers + edges */
  int max_nesting;         /* protobuf message depth */
  int max_attr_elems;      /* elements in one repeated attribute */
} adv_load_params;

adv_load_params adv_load_default_params(void);

/* Loads a model from memory (bytes are copied; buf may be freed after).
 * On success *out owns everything; free with adv_model_free(). */
int adv_model_load_mem(const void *buf, size_t len, adv_load_params p,
                       adv_model **out, adv_err *err);
/* Reads the file (size-capped first) and calls adv_model_load_mem. */
int adv_model_load_file(const char *path, adv_load_params p, adv_model **out,
                        adv_err *err);
void adv_model_free(adv_model *m);

/* Decodes one serialized ONNX TensorProto (as in the ONNX backend test
 * data's *.pb files) into *out: float types become F32, integer and bool
 * types I64. *out is owned by the caller (adv_array_free). */
int adv_tensorproto_read(const void *buf, size_t len, adv_array *out,
                         adv_err *err);

/* Graph inputs that are not initializers, and graph outputs. Returned
 * strings live as long as the model. dims: -1 marks a symbolic/unknown dim. */
int adv_model_num_inputs(const adv_model *m);
int adv_model_num_outputs(const adv_model *m);
const char *adv_model_input_name(const adv_model *m, int i);
const char *adv_model_output_name(const adv_model *m, int i);
int adv_model_input_shape(const adv_model *m, int i,
                          int64_t dims[ADV_MAX_DIMS]);
/* 1 when output 0 is produced by a final Softmax (a probability), in which
 * case sessions created with logits=1 return the Softmax's input instead. */
int adv_model_output_is_probability(const adv_model *m);
/* The largest opset of the default ONNX domain the model imports. */
int adv_model_opset(const adv_model *m);

/* One input fed at session creation time. For an input bound with
 * as_constant=1 its value is fixed for the session (this lets shape
 * arithmetic on integer inputs fold); otherwise only its shape is taken. */
typedef struct adv_binding {
  const char *name;
  const adv_array *value;
  int as_constant;
} adv_binding;

typedef struct adv_session_params {
  int batch;        /* replaces the first dim of input 0 when symbolic; 0 = as
                       given by bindings or the model */
  int threads;      /* worker threads for this session, >= 1 */
  int logits;       /* 1: when the model ends in Softmax, output its input */
  int grad;         /* 1: plan the backward pass too (input gradients) */
  int weight_grad;  /* 1: also accumulate weight gradients (implies grad) */
  size_t max_bytes; /* cap on the activation, gradient and scratch memory
                       one session plans; 0 = ADV_SESSION_MAX_BYTES. A plan
                       over the cap fails with ADV_ELIMIT (untrusted models
                       can ask for any amount). */
  int no_rewrite;   /* 1: run the graph as written: no Conv+BatchNorm folding,
                       no absorbed Relu, no Relu/MaxPool swap, identity nodes
                       kept (for tests and debugging; slower) */
  int n_bindings;
  const adv_binding *bindings;
} adv_session_params;

#define ADV_SESSION_MAX_BYTES ((size_t)4 << 30) /* 4 GiB */

adv_session_params adv_session_default_params(void);

/* Plans a session. The model must outlive the session. */
int adv_session_init(const adv_model *m, adv_session_params p,
                     adv_session **out, adv_err *err);
void adv_session_free(adv_session *s);

/*
 * "A session for this input shape", for single-input models fed data of
 * shape dims[0..ndim-1] (dims[0], the sample count, is ignored):
 *
 * adv_model_check_input: the model has one input of rank ndim whose fixed
 * dims equal dims[1..] (symbolic dims, -1, accept any size >= 1).
 * ADV_EUNSUPPORTED (several inputs) or ADV_ESHAPE with the reason.
 *
 * adv_session_init_shape: checks as above, then plans a session for
 * `batch` samples of that shape (p.bindings/p.batch are replaced). On
 * error *out is NULL.
 *
 * adv_model_num_classes: plans at batch 1 (logits=1) and returns the
 * class count K of an N x K output (K >= 2), else ADV_ESHAPE.
 *
 * adv_model_fit_data: makes a dataset's inputs x (N x ...) fit the model's
 * declared input, whose rank decides: equal ranks are checked as
 * adv_model_check_input; rank-3 data (N x H x W, e.g. MNIST IDX) for a
 * rank-4 input whose dim 1 is 1 or symbolic becomes N x 1 x H x W (x->ndim
 * and x->dims change, the bytes do not). Any other mismatch is ADV_ESHAPE
 * with both shapes in the message; x is unchanged after an error.
 */
int adv_model_check_input(const adv_model *m, int ndim, const int64_t *dims,
                          adv_err *err);
int adv_session_init_shape(const adv_model *m, adv_session_params p, int ndim,
                           const int64_t *dims, int64_t batch,
                           adv_session **out, adv_err *err);
int adv_model_num_classes(const adv_model *m, int ndim, const int64_t *dims,
                          int64_t *classes, adv_err *err);
int adv_model_fit_data(const adv_model *m, adv_array *x, adv_err *err);

/*
 * A single-input view of a model, for models with several inputs and for
 * input preprocessing (the attacks work on single-input models):
 *   input    the attacked input's name; NULL or "" = the first float input;
 *   names/values (n_values): values for the model's other inputs, by input
 *            name (unknown names are ignored); converted to the input's
 *            declared type (float -> F32, integer -> I64) and checked
 *            against its declared fixed dims. Inputs with an initializer
 *            in the file are constants already (their default). Any other
 *            input without a value is ADV_EINVAL naming it;
 *   mean/std (n_norm = 1, or the input's dim 1 = channels): (x - mean) /
 *            std is prepended to the graph as Sub and Div nodes, so the
 *            view's input is in pixel space and the model sees normalized
 *            values (the view's input keeps the attacked input's name).
 *   binary   1: output 0, N x 1 (a binary classifier: one logit, or the
 *            probability of a final Sigmoid), becomes N x 2 class scores
 *            [0, s] with s the logit (softmax gives [1 - p, p]); the
 *            Sigmoid's input is used when the output comes from one.
 *   output   NULL or "": the outputs as they are; else the view has one
 *            output, the model's output of that name (as it is: no
 *            Softmax bypass), for the output-distance objective
 *            (ADV_EINVAL naming the outputs when there is none).
 * On success *out is a model with exactly one input; it borrows the base
 * model's weights and names: free it (adv_model_free) before the base.
 * The values' arrays are copied (they may be freed after the call). On
 * error *out is NULL.
 */
typedef struct adv_model_bind_params {
  const char *input;
  int n_values;
  const char *const *names;
  const adv_array *values;
  int n_norm;
  const float *mean, *std;
  int binary;
  const char *output;
} adv_model_bind_params;

int adv_model_bind(const adv_model *base, const adv_model_bind_params *p,
                   adv_model **out, adv_err *err);
/* 1 when the model's output 0 is declared N x 1 and made by a Sigmoid (a
 * binary classifier's probability; adv_model_bind's `binary`). */
int adv_model_binary_output(const adv_model *m);

/* Shapes of the session's runtime inputs/outputs (resolved, concrete). */
int adv_session_num_inputs(const adv_session *s);
int adv_session_num_outputs(const adv_session *s);
int adv_session_input_shape(const adv_session *s, int i,
                            int64_t dims[ADV_MAX_DIMS]);
int adv_session_output_shape(const adv_session *s, int i,
                             int64_t dims[ADV_MAX_DIMS]);
adv_dtype adv_session_output_dtype(const adv_session *s, int i);
/* Bytes of the activation arena planned for this session. */
size_t adv_session_arena_bytes(const adv_session *s);
/* Nodes that run per forward pass after folding and rewrites. */
int adv_session_num_runtime_nodes(const adv_session *s);

/* Runs the graph. inputs[i] is the float32 data of runtime input i with
 * exactly the planned shape; outputs[i] receives output i in its dtype
 * (adv_session_output_dtype: float32, or int64 for folded integer outputs).
 * The abort flag (may be NULL) is polled between ops: when it becomes
 * non-zero, returns ADV_EABORTED and outputs are unspecified. */
int adv_session_run(adv_session *s, const float *const *inputs,
                    void *const *outputs, const volatile int *abort_flag,
                    adv_err *err);

/* Convenience for single-input single-output classifiers:
 * x is batch x (input shape) floats, logits receives batch x classes. */
int adv_session_forward(adv_session *s, const float *x, float *logits,
                        adv_err *err);

/* ---------------- gradients (Engine II) ---------------- */

/*
 * Per-sample losses on the logits z (N x K) of output 0; all are written so
 * that an untargeted attacker MAXIMIZES them (targeted: the attacker
 * maximizes the targeted form, see docs/losses.md):
 *   CE        untargeted  logsumexp(z) - z_y
 *             targeted    -(logsumexp(z) - z_t)
 *   CW        untargeted  min(max_{i!=y} z_i - z_y, kappa)
 *             targeted    min(z_t - max_{i!=t} z_i, kappa)
 *   DLR       untargeted  -(z_y - max_{i!=y} z_i) / (z_p1 - z_p3 + 1e-12)
 *             targeted    -(z_y - z_t) / (z_p1 - (z_p3 + z_p4)/2 + 1e-12)
 *   LOGIT     z_k with k = target[i]
 *   OUTPUT_DIST (the output-distance objective, any output shape: z is
 *             N x K with K the output's floats per sample, K >= 1; r =
 *             row y[i] of lp.ref, n_ref x K reference outputs)
 *             untargeted  ||z - r||_2        (r = the clean output f(x))
 *             targeted    -||z - r||_2       (r = the target output t)
 *             gradient (z - r) / ||z - r|| (negated when targeted); at
 *             z == r the norm has no gradient: untargeted uses the
 *             subgradient u_j = (+-1) / sqrt(K) (sign alternating with j),
 *             targeted 0.
 * z_p1 >= z_p2 >= ... are the sorted logits. Ties in max go to the lowest
 * index (PyTorch's convention).
 */
typedef enum adv_loss_kind {
  ADV_LOSS_CE = 0,
  ADV_LOSS_CW,
  ADV_LOSS_DLR,
  ADV_LOSS_LOGIT,
  ADV_LOSS_OUTPUT_DIST,
} adv_loss_kind;

typedef struct adv_loss_params {
  adv_loss_kind kind;
  int targeted;     /* uses target[] */
  float kappa;      /* CW confidence cap; INFINITY = no cap */
  const float *ref; /* OUTPUT_DIST: reference rows (borrowed), indexed by
                       y[i]; NULL otherwise */
  int64_t n_ref;    /* rows in ref (y[i] must be in [0, n_ref)) */
} adv_loss_params;

adv_loss_params adv_loss_default_params(adv_loss_kind kind);

/* Computes per-sample losses (loss[i], may be NULL) and dL/dz (dz, N x K,
 * may be NULL) from logits z. y: labels, target: target classes (may be
 * NULL unless targeted / LOGIT). Pure function, no allocation. */
int adv_loss_eval(adv_loss_params lp, const float *z, int64_t n, int64_t k,
                  const int64_t *y, const int64_t *target, float *loss,
                  float *dz, adv_err *err);

/*
 * Backward pass after adv_session_forward()/adv_session_run() on the same
 * session (created with grad=1): seeds dL/dz from the loss on output 0
 * (summed over the batch, so row i of dx is the gradient of sample i's own
 * loss), propagates to the input and writes dx (same shape as input 0).
 * loss (N floats) may be NULL. With weight_grad=1 weight gradients are
 * accumulated too (adv_session_weight_grad). Buffers are reused across
 * calls; nothing is allocated.
 */
int adv_session_backward(adv_session *s, adv_loss_params lp, const int64_t *y,
                         const int64_t *target, float *loss, float *dx,
                         const volatile int *abort_flag, adv_err *err);

/* Backward with an explicit upstream gradient dz (N x K) for output 0. */
int adv_session_backward_dz(adv_session *s, const float *dz, float *dx,
                            const volatile int *abort_flag, adv_err *err);

/* forward + backward in one call; logits (may be NULL) receives z. */
int adv_session_grad(adv_session *s, const float *x, adv_loss_params lp,
                     const int64_t *y, const int64_t *target, float *logits,
                     float *loss, float *dx, adv_err *err);

/* Accumulated gradient of the named initializer (weight_grad sessions), or
 * NULL. Lives as long as the session; zeroed by adv_session_zero_grad. */
const float *adv_session_weight_grad(const adv_session *s, const char *name,
                                     int64_t *numel);
void adv_session_zero_grad(adv_session *s);

/* Forward and backward passes run by this session so far (query counts). */
void adv_session_counters(const adv_session *s, int64_t *forwards,
                          int64_t *backwards);

#ifdef __cplusplus
}
#endif
#endif
