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
#   GOMP_SPINCOUNT / OMP_WAIT_POLICY  libgomp policy of both sides; when
#             neither is set, GOMP_SPINCOUNT=30000 as aisbx uses
#   TORCH_ENV default: PyTorch runs with the libgomp defaults instead (its
#             batch-1 numbers drop 1.5-2.7x; see bench/common/lib.sh)
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
B=${1:-build}
T=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
WAIT_IDLE=${WAIT_IDLE:-20}
MIN_TIME=${MIN_TIME:-1.5}
BATCHES=${BATCHES:-1,32,128}
MODELS=${MODELS:-"mnist_cnn fashion_resnet resnet18_cifar"}
MD=${BENCH_MODELS_DIR:-$repo/build/bench_models}
PY=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-$B/bench/grad/results.jsonl}

cmake -S . -B "$B" >/dev/null
cmake --build "$B" --target bench_grad -j "$T" >/dev/null
BIN=$B/bench/grad/bench_grad
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

tmp=$(mktemp -d /tmp/bench_grad.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$OUT")"
: >"$OUT"
echo "bench/grad: threads=$T batches=$BATCHES min_time=${MIN_TIME}s rounds=$ROUNDS  $(nproc) CPUs"
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
      "${TORCH_RUN[@]}" "$PY" bench/grad/grad_torch.py --model "$m" --batches "$b" \
        --threads "$T" --min-time "$MIN_TIME" --ref-out "$tmp/$m" >>"$OUT"
      if [ $((r % 2)) -eq 1 ]; then
        "$BIN" -n "$m" -b "$b" -t "$T" -m "$MIN_TIME" -r "$tmp/$m" "$onnx" >>"$OUT"
      fi
    done
  done
done
echo "load after:  $(load); busy:$(busy)  ($(($(date +%s) - start)) s)"
echo
"$PY" bench/common/report.py grad "$OUT"
echo "(JSON lines: $OUT)"
