#!/bin/bash
# bench/grad/run.sh - input-gradient (forward + backward of the summed
# cross-entropy) images/s and peak RSS of libadv vs PyTorch autograd on the
# same ONNX models, same inputs and same thread count, in one run.
#
#   bench/grad/run.sh [BUILD_DIR]           (default: build)
#
# Environment:
#   ROUNDS    repetitions of the whole measurement (PyTorch first in odd
#             rounds, ours first in even ones); the best round of each side
#             is reported (default 2)
#   THREADS   threads of both sides (default nproc)
#   MIN_TIME  timed seconds per configuration and side (default 1.5)
#   BATCHES   batch sizes (default 1,32,128)
#   MODELS    default "mnist_cnn fashion_resnet resnet18_cifar"
#   BENCH_MODELS_DIR  where resnet18_cifar.onnx is (generated when missing;
#             default build/bench_models)
#   PYTHON    interpreter with torch (default /usr/bin/python3)
#   WAIT_IDLE before each configuration wait up to this many seconds for
#             idle CPUs (shared machines; default 20, 0 = off)
#   OMP_WAIT_POLICY / GOMP_SPINCOUNT / OPENBLAS_NUM_THREADS  threading of
#             both sides; what is not set comes from the engine's threading
#             environment, the one aisbx uses (include/adv/threading.h)
#   TORCH_ENV default: PyTorch runs with the libgomp/OpenBLAS defaults
#             instead (see bench/common/lib.sh)
#   BURNERS   loaded mode: after each configuration's idle measurement,
#             the same again with this many background CPU burners (busy
#             loops) on the same cores; the report adds each side's
#             loaded/idle slowdown side by side (default nproc, 0 = idle
#             only). BURNER_PIN=1 pins burner i to CPU i mod nproc.
#   OUT       JSON lines file (default BUILD_DIR/bench/grad/results.jsonl)
#
# Every (model, batch) runs in its own process on each side, so each peak
# RSS (ru_maxrss) belongs to that configuration: first the PyTorch peer
# (times autograd, writes input, labels, logits and x.grad), then bench_grad
# on the same input (times adv_session_grad, compares logits and dx); all
# of it ROUNDS times. The table shows the best round of each side (peak RSS:
# the largest of the rounds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
. bench/common/lib.sh
run_engine_bench grad 1,32,128 "${1:-build}"
