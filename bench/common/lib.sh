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

# threading_env BIN: the OpenMP/OpenBLAS environment of both sides. Ours
# (BIN, a bench program) applies the engine's own, the one aisbx and the
# sandboxed runner use (include/adv/threading.h; BIN -E prints it), except
# where the caller set a variable. PyTorch runs with the same variables
# (TORCH_RUN, the prefix of its command) unless TORCH_ENV=default: then
# with the libgomp/OpenBLAS defaults (libgomp spins ~300k iterations at
# every barrier, which collapses throughput as soon as another thread wants
# the CPU). Prints the settings for the record.
# shellcheck disable=SC2034 # TORCH_RUN is used by the sourcing run.sh
threading_env() {
  local -a ours=()
  local e
  while IFS= read -r e; do
    # the caller's own setting wins, as in adv_threading_env_apply()
    case $e in
      OMP_WAIT_POLICY=*) [ -n "${OMP_WAIT_POLICY:-}${GOMP_SPINCOUNT:-}" ] && continue ;;
      *) [ -n "$(printenv "${e%%=*}")" ] && continue ;;
    esac
    ours+=("$e")
  done < <("$1" -E)
  if [ "${TORCH_ENV:-same}" = default ]; then
    TORCH_RUN=(env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY -u OPENBLAS_NUM_THREADS)
    echo "threading: ours ${ours[*]} ${OMP_WAIT_POLICY:+OMP_WAIT_POLICY=$OMP_WAIT_POLICY }${GOMP_SPINCOUNT:+GOMP_SPINCOUNT=$GOMP_SPINCOUNT}; PyTorch: libgomp/OpenBLAS defaults"
  else
    TORCH_RUN=(env "${ours[@]}")
    echo "threading (both sides): ${ours[*]} ${OMP_WAIT_POLICY:+OMP_WAIT_POLICY=$OMP_WAIT_POLICY }${GOMP_SPINCOUNT:+GOMP_SPINCOUNT=$GOMP_SPINCOUNT}"
  fi
}

# start_burners N: N background CPU burners (busy shell loops) on this
# machine's cores, the "loaded" mode of the benchmarks: what any shared host
# or a worker running several jobs looks like to us. BURNER_PIN=1 pins
# burner i to CPU i mod nproc (taskset), else the scheduler places them.
# Their pids are in BURNER_PIDS; stop them with stop_burners (also safe to
# call from an EXIT trap when none run). Waits 1 s for them to be running.
BURNER_PIDS=()
start_burners() {
  local i ncpu
  ncpu=$(nproc)
  for ((i = 0; i < $1; i++)); do
    # a session of its own: a stopped burner (paired mode) in our process
    # group would get SIGHUP + SIGCONT from the kernel as soon as the group
    # is orphaned (run.sh started in the background of a shell that exits)
    setsid bash -c 'while :; do :; done' &
    BURNER_PIDS+=($!)
    if [ "${BURNER_PIN:-0}" = 1 ]; then
      taskset -p -c $((i % ncpu)) "$!" >/dev/null
    fi
  done
  [ "$1" -le 0 ] || sleep 1
}

# stop_burners: kills and reaps the burners start_burners started.
stop_burners() {
  local p
  # (SIGKILL: a burner the paired mode stopped would not act on SIGTERM)
  for p in "${BURNER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${BURNER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  BURNER_PIDS=()
}

# burners_note N: how the loaded mode was run, for the printed header.
burners_note() {
  echo "loaded = $1 busy loop(s) ($([ "${BURNER_PIN:-0}" = 1 ] && echo pinned || echo unpinned)) on $(nproc) CPUs"
}

# tag_load MODE: prefixes every JSON line of stdin with "load": MODE (the
# paired mode's records carry their own).
tag_load() {
  if [ "$1" = paired ]; then cat; else sed "s/^{/{\"load\": \"$1\", /"; fi
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
  BURNERS=${BURNERS:-$(nproc)}
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
  trap 'stop_burners; rm -rf "$tmp"' EXIT
  mkdir -p "$(dirname "$OUT")"
  : >"$OUT"
  echo "bench/$kind: threads=$T batches=$BATCHES min_time=${MIN_TIME}s rounds=$ROUNDS  $(nproc) CPUs"
  if [ "$BURNERS" -gt 0 ] && [ "${PAIRED:-1}" = 1 ]; then
    echo "modes: idle and $(burners_note "$BURNERS"), alternating rep by rep (paired)"
  elif [ "$BURNERS" -gt 0 ]; then
    echo "modes: idle, then $(burners_note "$BURNERS") (per configuration)"
  fi
  threading_env "$BIN"
  echo "load before: $(load); busy:$(busy)"
  start=$(date +%s)
  # PAIRED=1 (the default with burners): the burners run for the whole
  # bench but are stopped (SIGSTOP) except during every other timed rep
  # (bench_time / time_fn take their pids from BENCH_BURNERS), so each
  # configuration's idle and loaded halves come from the same seconds;
  # PAIRED=0: each configuration runs idle, then again with the burners
  # running throughout.
  local modes=idle
  PAIRED=${PAIRED:-1}
  if [ "$BURNERS" -gt 0 ] && [ "$PAIRED" = 1 ]; then
    modes=paired
    start_burners "$BURNERS"
    kill -STOP "${BURNER_PIDS[@]}"
    export BENCH_BURNERS="${BURNER_PIDS[*]}"
  elif [ "$BURNERS" -gt 0 ]; then
    modes="idle loaded"
  fi
  for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS"
    for m in $MODELS; do
      onnx=$(onnx_of "$m")
      for b in ${BATCHES//,/ }; do
        for mode in $modes; do
          if [ "$mode" = loaded ]; then
            start_burners "$BURNERS"
          else
            wait_idle "$WAIT_IDLE"
          fi
          # PyTorch first in odd rounds (it writes the reference the C side
          # reads; the inputs are deterministic), ours first in even ones
          if [ $((r % 2)) -eq 0 ]; then
            "$BIN" -n "$m" -b "$b" -t "$T" -m "$MIN_TIME" -r "$tmp/$m" "$onnx" | tag_load "$mode" >>"$OUT"
          fi
          "${TORCH_RUN[@]}" "$PY" bench/$kind/${kind}_torch.py --model "$m" --batches "$b" \
            --threads "$T" --min-time "$MIN_TIME" --ref-out "$tmp/$m" | tag_load "$mode" >>"$OUT"
          if [ $((r % 2)) -eq 1 ]; then
            "$BIN" -n "$m" -b "$b" -t "$T" -m "$MIN_TIME" -r "$tmp/$m" "$onnx" | tag_load "$mode" >>"$OUT"
          fi
          [ "$mode" = paired ] || stop_burners
        done
      done
    done
  done
  stop_burners
  unset BENCH_BURNERS
  echo "load after:  $(load); busy:$(busy)  ($(($(date +%s) - start)) s)"
  echo
  "$PY" bench/common/report.py "$kind" "$OUT"
  echo "(JSON lines: $OUT)"
}
