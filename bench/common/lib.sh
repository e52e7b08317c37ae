# shellcheck shell=bash
# bench/common/lib.sh - shell helpers of the benchmark run.sh scripts
# (sourced, not executed).

# busy: the processes using >= 10 % CPU (lifetime average), for the record.
busy() {
  ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 10 {printf " %s(%s%%)", $2, $1}'
}

# load: the load averages from uptime.
load() {
  uptime | sed 's/.*load average/load average/'
}

# idle_pct SECONDS: percentage of CPU time idle over the next SECONDS.
idle_pct() {
  local a b
  read -r -a a </proc/stat
  sleep "$1"
  read -r -a b </proc/stat
  local busy=0 idle=0 i
  for i in 1 2 3 6 7 8; do busy=$((busy + b[i] - a[i])); done
  for i in 4 5; do idle=$((idle + b[i] - a[i])); done
  echo $((100 * idle / (busy + idle + 1)))
}

# wait_idle MAX_SECONDS: on a shared machine, wait (at most MAX_SECONDS)
# until the CPUs are >= 90 % idle over one second, so that a measurement
# does not start while something else runs. 0 disables. Says when it gave
# up or waited.
wait_idle() {
  local max=$1 t0 p
  [ "$max" -gt 0 ] || return 0
  t0=$(date +%s)
  while :; do
    p=$(idle_pct 1)
    [ "$p" -ge 90 ] && break
    if [ $(($(date +%s) - t0)) -ge "$max" ]; then
      echo "  (machine still busy after ${max}s: ${p}% idle;$(busy))" >&2
      return 0
    fi
  done
  [ $(($(date +%s) - t0)) -le 1 ] || echo "  (waited $(($(date +%s) - t0))s for idle CPUs)" >&2
}

# bound_spinning: libgomp threads spin ~300k iterations at every barrier by
# default, which collapses throughput as soon as another thread wants the
# CPU: another process (measured here: 10-100x slower at batch 1 with one
# other busy process on 2 cores; hence aisbx runs with GOMP_SPINCOUNT=30000,
# src/cli/aisbx.c), or, inside PyTorch, OpenBLAS's own threads (PyTorch's
# batch-1 convolutions run 1.5-2.7x faster with a bounded spin on an idle
# machine). Unless the caller chose a policy, both sides run with aisbx's
# GOMP_SPINCOUNT=30000; TORCH_ENV=default runs PyTorch with the libgomp
# defaults instead (TORCH_RUN is the prefix for its command). Prints the
# settings for the record.
# shellcheck disable=SC2034 # TORCH_RUN is used by the sourcing run.sh
bound_spinning() {
  if [ -z "${OMP_WAIT_POLICY:-}" ] && [ -z "${GOMP_SPINCOUNT:-}" ]; then
    export GOMP_SPINCOUNT=30000
  fi
  TORCH_RUN=()
  if [ "${TORCH_ENV:-same}" = default ]; then
    TORCH_RUN=(env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY)
    echo "libgomp: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset} (ours); PyTorch: libgomp defaults"
  else
    echo "libgomp: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset} (both sides)"
  fi
}

# run_engine_bench KIND DEFAULT_BATCHES [BUILD_DIR] - the body of
# bench/forward/run.sh and bench/grad/run.sh (KIND forward or grad; their
# headers document the environment knobs): builds bench_KIND, generates the
# ResNet-18 model when missing, runs every (model, batch) on both sides
# ROUNDS times, alternating which side goes first, and prints the report.
# Runs from the repository root.
run_engine_bench() {
  local kind=$1 repo
  repo=$(pwd)
  B=${3:-build}
  T=${THREADS:-$(nproc)}
  ROUNDS=${ROUNDS:-2}
  WAIT_IDLE=${WAIT_IDLE:-20}
  MIN_TIME=${MIN_TIME:-1.5}
  BATCHES=${BATCHES:-$2}
  MODELS=${MODELS:-"mnist_cnn fashion_resnet resnet18_cifar"}
  MD=${BENCH_MODELS_DIR:-$repo/build/bench_models}
  PY=${PYTHON:-/usr/bin/python3}
  OUT=${OUT:-$B/bench/$kind/results.jsonl}

  cmake -S . -B "$B" >/dev/null
  cmake --build "$B" --target bench_$kind -j "$T" >/dev/null
  BIN=$B/bench/$kind/bench_$kind
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

  tmp=$(mktemp -d /tmp/bench_$kind.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$(dirname "$OUT")"
  : >"$OUT"
  echo "bench/$kind: threads=$T batches=$BATCHES min_time=${MIN_TIME}s rounds=$ROUNDS  $(nproc) CPUs"
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
        "${TORCH_RUN[@]}" "$PY" bench/$kind/${kind}_torch.py --model "$m" --batches "$b" \
          --threads "$T" --min-time "$MIN_TIME" --ref-out "$tmp/$m" >>"$OUT"
        if [ $((r % 2)) -eq 1 ]; then
          "$BIN" -n "$m" -b "$b" -t "$T" -m "$MIN_TIME" -r "$tmp/$m" "$onnx" >>"$OUT"
        fi
      done
    done
  done
  echo "load after:  $(load); busy:$(busy)  ($(($(date +%s) - start)) s)"
  echo
  "$PY" bench/common/report.py "$kind" "$OUT"
  echo "(JSON lines: $OUT)"
}
