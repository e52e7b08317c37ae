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
#   GOMP_SPINCOUNT / OMP_WAIT_POLICY  libgomp policy of both sides; when
#             neither is set, GOMP_SPINCOUNT=30000 as aisbx uses
#   TORCH_ENV default: PyTorch runs with the libgomp defaults instead (its
#             batch-1 numbers drop 1.5-2.7x; see bench/common/lib.sh)
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
B=${1:-build}
T=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
WAIT_IDLE=${WAIT_IDLE:-20}
MIN_TIME=${MIN_TIME:-1.5}
BATCHES=${BATCHES:-1,128}
MODELS=${MODELS:-"mnist_cnn fashion_resnet resnet18_cifar"}
MD=${BENCH_MODELS_DIR:-$repo/build/bench_models}
PY=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-$B/bench/forward/results.jsonl}

cmake -S . -B "$B" >/dev/null
cmake --build "$B" --target bench_forward -j "$T" >/dev/null
BIN=$B/bench/forward/bench_forward
if [ ! -f "$MD/resnet18_cifar.onnx" ]; then
  echo "generating $MD/resnet18_cifar.onnx"
  "$PY" tools/make_bench_models.py --out "$MD"
fi

onnx_of() {
  case $1 in
    mnist_cnn | fashion_resnet) echo "tests/fixtures/$1.onnx" ;;
    resnet18_cifar) echo "$MD/resnet18_cifar.onnx" ;;
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}

tmp=$(mktemp -d /tmp/bench_forward.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
echo "bench/forward: threads=$T batches=$BATCHES min_time=${MIN_TIME}s rounds=$ROUNDS  $(nproc) CPUs"
bound_spinning
echo "load before: $(load); busy:$(busy)"
start=$(date +%s)
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS"
  for m in $MODELS; do
    onnx=$(onnx_of "$m")
    for b in ${BATCHES//,/ }; do
      wait_idle "$WAIT_IDLE"
      # PyTorch first in odd rounds (it writes the reference the C side
      # reads; the inputs are deterministic), ours first in even ones
      if [ $((r % 2)) -eq 0 ]; then
        "$BIN" -n "$m" -b "$b" -t "$T" -m "$MIN_TIME" -r "$tmp/$m" "$onnx" >>"$OUT"
      fi
      "${TORCH_RUN[@]}" "$PY" bench/forward/forward_torch.py --model "$m" --batches "$b" \
        --threads "$T" --min-time "$MIN_TIME" --ref-out "$tmp/$m" >>"$OUT"
      if [ $((r % 2)) -eq 1 ]; then
        "$BIN" -n "$m" -b "$b" -t "$T" -m "$MIN_TIME" -r "$tmp/$m" "$onnx" >>"$OUT"
      fi
    done
  done
done
echo "load after:  $(load); busy:$(busy)  ($(($(date +%s) - start)) s)"
echo
"$PY" bench/common/report.py forward "$OUT"
echo "(JSON lines: $OUT)"
