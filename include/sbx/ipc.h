/*
 * sbx/ipc.h - the worker <-> runner messages (the OpenSSH monitor pattern).
 *
 * A message is an 8-byte header (type u32 LE, payload length u32 LE) and a
 * payload. ONE table (SBX_IPC_MAP) says for every type its largest payload,
 * its direction and whether it may appear at most once; the stream decoder
 * enforces it before anything is allocated and hands each complete message
 * to a dispatch table of handlers. Payloads with fields are read with a
 * bounds-checked reader whose first error sticks (sbx_ipc_rd, like
 * src/engine/onnx/pb.h): callers check once at the end.
 *
 * Ownership: the decoder owns its buffer (sbx_ipc_decoder_free); payload
 * pointers passed to handlers are valid only during the call.
 * After an error the decoder stays failed (every later feed returns it).
 * Nothing here prints, exits or allocates beyond one message's payload.
 */
#ifndef SBX_IPC_H
#define SBX_IPC_H
#include <stddef.h>
#include <stdint.h>
#include "adv/job.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SBX_IPC_TO_RUNNER = 1, SBX_IPC_TO_WORKER = 2 };

#define SBX_IPC_MIB ((uint32_t)1 << 20)
/* X(name, type, max payload bytes, direction, once) */
#define SBX_IPC_MAP(X)                                                         \
  X(SPEC, 1, 4096, SBX_IPC_TO_RUNNER, 1)                                       \
  X(MODEL, 2, 1024 * SBX_IPC_MIB, SBX_IPC_TO_RUNNER, 1)                        \
  X(DATA, 3, 2047 * SBX_IPC_MIB, SBX_IPC_TO_RUNNER, 1)                         \
  X(ABORT, 4, 0, SBX_IPC_TO_RUNNER, 0)                                         \
  X(READY, 16, 1024, SBX_IPC_TO_WORKER, 1)                                     \
  X(LOG, 17, 1024, SBX_IPC_TO_WORKER, 0)                                       \
  X(PROGRESS, 18, 256, SBX_IPC_TO_WORKER, 0)                                   \
  X(RESULT, 19, 64 * SBX_IPC_MIB, SBX_IPC_TO_WORKER, 1)                        \
  X(ADV_NPY, 20, 1024 * SBX_IPC_MIB, SBX_IPC_TO_WORKER, 1)                     \
  X(ERROR, 21, 1024, SBX_IPC_TO_WORKER, 1)                                     \
  X(DONE, 22, 0, SBX_IPC_TO_WORKER, 1)                                         \
  X(GALLERY, 23, 4 * SBX_IPC_MIB, SBX_IPC_TO_WORKER, 0)

typedef enum sbx_ipc_type {
#define SBX__IPC_ENUM(name, t, max, dir, once) SBX_IPC_##name = (t),
  SBX_IPC_MAP(SBX__IPC_ENUM)
#undef SBX__IPC_ENUM
} sbx_ipc_type;

typedef struct sbx_ipc_msgdef {
  uint32_t type;
  const char *name;
  uint32_t max_len;
  int direction; /* SBX_IPC_TO_RUNNER or SBX_IPC_TO_WORKER */
  int once;      /* 1: a second occurrence is a protocol error */
} sbx_ipc_msgdef;

/* The table row of `type`, or NULL for an unknown type. */
const sbx_ipc_msgdef *sbx_ipc_msgdef_get(uint32_t type);
/* "PROGRESS" etc., "?" for unknown types. Static string. */
const char *sbx_ipc_type_name(uint32_t type);

/* Writes one message (header + payload) to fd, retrying short writes and
 * EINTR. Refuses (-EMSGSIZE / -EINVAL) a payload over the table's cap or an
 * unknown type. Returns 0 or a negative errno. */
int sbx_ipc_send(int fd, uint32_t type, const void *payload, size_t len);
/* Same with the header and payload in two parts (no copy). */
int sbx_ipc_send2(int fd, uint32_t type, const void *a, size_t alen,
                  const void *b, size_t blen);

/* ---- payload writer / reader ---- */
typedef struct sbx_ipc_wr {
  uint8_t *buf;
  size_t cap, len;
  int bad; /* sticky: overflow */
} sbx_ipc_wr;
void sbx_ipc_wr_init(sbx_ipc_wr *w, void *buf, size_t cap);
void sbx_ipc_wr_u32(sbx_ipc_wr *w, uint32_t v);
void sbx_ipc_wr_u64(sbx_ipc_wr *w, uint64_t v);
void sbx_ipc_wr_f64(sbx_ipc_wr *w, double v);
/* u32 length + bytes; a longer string is truncated to fit `max`. */
void sbx_ipc_wr_str(sbx_ipc_wr *w, const char *s, size_t max);

typedef struct sbx_ipc_rd {
  const uint8_t *p, *end;
  int bad; /* sticky: the first error makes every later read fail */
} sbx_ipc_rd;
sbx_ipc_rd sbx_ipc_rd_init(const void *p, size_t len);
uint32_t sbx_ipc_rd_u32(sbx_ipc_rd *r);
uint64_t sbx_ipc_rd_u64(sbx_ipc_rd *r);
double sbx_ipc_rd_f64(sbx_ipc_rd *r);
/* Copies a u32-length string into out (NUL-terminated); a string longer
 * than outsz-1 or with an embedded NUL is an error. */
void sbx_ipc_rd_str(sbx_ipc_rd *r, char *out, size_t outsz);
/* 0 when every read succeeded and all bytes were consumed. */
int sbx_ipc_rd_done(const sbx_ipc_rd *r);

/* ---- typed payloads ---- */
/* Job spec, fixed binary encoding (version 1). Kept independent of the
 * engine's headers: the runner converts it to adv_* params. */
#define SBX_SPEC_VERSION 1
typedef struct sbx_job_spec {
  uint32_t kind;   /* 0 attack, 1 self-test probe */
  char attack[32]; /* engine attack name ("pgd", "fgsm", ...) */
  uint32_t norm;   /* 0 linf, 1 l2 */
  double eps, step_size;
  uint32_t steps, restarts, targeted, threads;
  uint64_t seed;
  uint64_t n; /* samples, 0 = all */
  uint64_t queries;
  /* sandbox limits the runner applies to itself */
  uint64_t mem_bytes;   /* memory cap */
  uint32_t memcap_kind; /* sbx_memcap_kind arranged by the supervisor */
  uint32_t cpu_seconds; /* RLIMIT_CPU */
  uint32_t probe;       /* self-test probe id (kind 1) */
  uint32_t data_in_memfd, model_in_memfd; /* 1: fd 4 / fd 3, not a message */
  uint64_t model_len, data_len;
  /* kind SBX_JOB_RUN: the engine's whole job spec (adv/job.h), carried as
   * its bytes (worker and runner come from one build; the runner
   * re-validates it with adv_job_spec_validate), and where the inputs came
   * from, for the result document */
  adv_job_spec job;
  char model_name[128], model_sha256[65];
  char data_name[128], data_sha256[65];
} sbx_job_spec;
#define SBX_JOB_ATTACK 0u
#define SBX_JOB_PROBE 1u
#define SBX_JOB_RUN 2u
/* Encodes into buf (>= 4096 bytes); returns the length or -1. */
int sbx_job_spec_encode(const sbx_job_spec *s, void *buf, size_t cap);
/* Decodes and range-checks; 0 or -EINVAL. */
int sbx_job_spec_decode(const void *p, size_t len, sbx_job_spec *s);

typedef struct sbx_ipc_progress {
  double fraction;   /* 0..1 */
  double robust_acc; /* running robust accuracy, NaN when unknown */
  char phase[64];    /* phase / current attack */
} sbx_ipc_progress;
int sbx_ipc_progress_encode(const sbx_ipc_progress *m, void *buf, size_t cap);
int sbx_ipc_progress_decode(const void *p, size_t len, sbx_ipc_progress *m);

typedef struct sbx_ipc_error {
  int32_t status;             /* adv_status (negative), or SBX_ERR_* below */
  uint32_t forbidden_syscall; /* SBX_ERR_SYSCALL: the number */
  char message[512];
} sbx_ipc_error;
#define SBX_ERR_SYSCALL (-1000) /* killed by the seccomp filter */
#define SBX_ERR_SANDBOX (-1001) /* could not enter the sandbox */
#define SBX_ERR_PROTOCOL (-1002)
#define SBX_ERR_CPU (-1003) /* the CPU time limit was reached */
int sbx_ipc_error_encode(const sbx_ipc_error *m, void *buf, size_t cap);
int sbx_ipc_error_decode(const void *p, size_t len, sbx_ipc_error *m);

typedef struct sbx_ipc_ready {
  uint32_t namespaces;   /* SBX_NS_* bits that were entered */
  uint32_t memcap_kind;  /* sbx_memcap_kind in force */
  uint32_t landlock_abi; /* 0 = not available */
  uint32_t pivoted;      /* 1: empty tmpfs root */
  char summary[512];
} sbx_ipc_ready;
int sbx_ipc_ready_encode(const sbx_ipc_ready *m, void *buf, size_t cap);
int sbx_ipc_ready_decode(const void *p, size_t len, sbx_ipc_ready *m);

typedef struct sbx_ipc_log {
  uint32_t level; /* sbx_log_level */
  char text[512];
} sbx_ipc_log;
int sbx_ipc_log_encode(const sbx_ipc_log *m, void *buf, size_t cap);
int sbx_ipc_log_decode(const void *p, size_t len, sbx_ipc_log *m);

/* ---- stream decoder + dispatch table ---- */
/* Handler: return 0 to continue, negative to fail the decoder. */
typedef int (*sbx_ipc_handler)(void *ud, uint32_t type, const uint8_t *p,
                               size_t len);
typedef struct sbx_ipc_dispatch {
  uint32_t type;
  sbx_ipc_handler fn;
} sbx_ipc_dispatch;

typedef struct sbx_ipc_decoder {
  int direction; /* accepted direction */
  uint8_t hdr[8];
  size_t hdr_have;
  uint32_t type, len;
  uint8_t *buf;     /* payload being assembled */
  size_t have, cap; /* payload bytes received / allocated */
  uint64_t seen;    /* bit (type & 63) of once-messages seen */
  int done;         /* a DONE was decoded: nothing may follow */
  int err;          /* sticky negative errno */
  char why[128];    /* what went wrong, for logs */
  const sbx_ipc_dispatch *table;
  int ntable;
  void *ud;
} sbx_ipc_decoder;

void sbx_ipc_decoder_init(sbx_ipc_decoder *d, int direction,
                          const sbx_ipc_dispatch *table, int ntable, void *ud);
/* Feeds bytes; complete messages go to their handler (a type with no row in
 * the dispatch table is an error). Returns 0 or the sticky error. */
int sbx_ipc_decoder_feed(sbx_ipc_decoder *d, const void *bytes, size_t n);
/* 1 when the stream may end here (no partial message pending). */
int sbx_ipc_decoder_idle(const sbx_ipc_decoder *d);
void sbx_ipc_decoder_free(sbx_ipc_decoder *d);

#ifdef __cplusplus
}
#endif
#endif
