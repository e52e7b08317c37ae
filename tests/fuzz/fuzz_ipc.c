/*
 * fuzz_ipc.c - libFuzzer target for the worker <-> runner message layer:
 * arbitrary bytes (split at a fuzzer-chosen point) go through both
 * decoders (worker side and runner side) with handlers that run every
 * typed payload codec. Must never crash, read out of bounds or leak; a
 * decoder that failed must stay failed.
 */
#include "sbx/ipc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_any(void *ud, uint32_t type, const uint8_t *p, size_t len) {
  const sbx_ipc_msgdef *def = sbx_ipc_msgdef_get(type);
  if (!def || len > def->max_len)
    abort(); /* the table must have been enforced before the handler */
  union {
    sbx_job_spec spec;
    sbx_ipc_progress prog;
    sbx_ipc_error err;
    sbx_ipc_ready ready;
    sbx_ipc_log log;
  } u;
  int rc = 0;
  switch (type) {
  case SBX_IPC_SPEC:
    rc = sbx_job_spec_decode(p, len, &u.spec);
    if (!rc && (memchr(u.spec.attack, 0, sizeof(u.spec.attack)) == NULL ||
                u.spec.threads < 1))
      abort();
    break;
  case SBX_IPC_PROGRESS:
    rc = sbx_ipc_progress_decode(p, len, &u.prog);
    if (!rc && !(u.prog.fraction >= 0 && u.prog.fraction <= 1))
      abort();
    break;
  case SBX_IPC_ERROR:
    rc = sbx_ipc_error_decode(p, len, &u.err);
    if (!rc && u.err.status >= 0)
      abort();
    break;
  case SBX_IPC_READY:
    rc = sbx_ipc_ready_decode(p, len, &u.ready);
    break;
  case SBX_IPC_LOG:
    rc = sbx_ipc_log_decode(p, len, &u.log);
    break;
  default: /* blobs: touch every byte */
  {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++)
      sink ^= p[i];
    (void)sink;
  }
  }
  (void)ud;
  return rc ? -22 : 0;
}

static void run(int direction, const uint8_t *data, size_t size, size_t cut) {
  static const sbx_ipc_dispatch table[] = {
      {SBX_IPC_SPEC, on_any},     {SBX_IPC_MODEL, on_any},
      {SBX_IPC_DATA, on_any},     {SBX_IPC_ABORT, on_any},
      {SBX_IPC_READY, on_any},    {SBX_IPC_LOG, on_any},
      {SBX_IPC_PROGRESS, on_any}, {SBX_IPC_RESULT, on_any},
      {SBX_IPC_ADV_NPY, on_any},  {SBX_IPC_ERROR, on_any},
      {SBX_IPC_DONE, on_any}};
  sbx_ipc_decoder d;
  sbx_ipc_decoder_init(&d, direction, table,
                       (int)(sizeof(table) / sizeof(table[0])), NULL);
  int a = sbx_ipc_decoder_feed(&d, data, cut);
  int b = sbx_ipc_decoder_feed(&d, data + cut, size - cut);
  if (a && b != a)
    abort(); /* the first error sticks */
  sbx_ipc_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t cut = data[0] % size;
  run(SBX_IPC_TO_WORKER, data + 1, size - 1, cut > size - 1 ? size - 1 : cut);
  run(SBX_IPC_TO_RUNNER, data + 1, size - 1, cut > size - 1 ? size - 1 : cut);
  return 0;
}
