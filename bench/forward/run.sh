#!/bin/bash
# bench/forward/run.sh - inference images/s of libadv vs PyTorch on the same
# ONNX models, same inputs and same thread count, in one run.
#
#   bench/forward/run.sh [BUILD_DIR]        (default: build)
#
# Environment:
#   ROUNDS    repetitions of the whole measurement (PyTorch first in odd
#             rounds, ours first in even ones); the best round of each side
#             is reported (default 2)
#   THREADS   threads of both sides (default nproc)
#   MIN_TIME  timed seconds per configuration and side (default 1.5)
#   BATCHES   batch sizes (default 1,128)
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
#   OUT       JSON lines file (default BUILD_DIR/bench/forward/results.jsonl)
#
# Builds bench_forward, then per round, model and batch size (each side in
# its own process, back to back): the PyTorch peer times the real module and
# writes its input + logits, bench_forward times the engine on the same
# input and compares logits; finally a table with ratio columns (best round
# of each side; the spread column shows how noisy the run was).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
. bench/common/lib.sh
run_engine_bench forward 1,128 "${1:-build}"
