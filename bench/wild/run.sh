#!/bin/bash
# Forward latency of one real sequence model from the wild corpus
# (tests/wild/manifest.json; default ocr_rec, the PP-OCRv4 recognizer, at
# batch 1 on a 3x48x160 line) in our engine vs onnxruntime-node, in the same
# run, idle and with BURNERS background CPU burners on the same cores.
#
#   bench/wild/run.sh [BUILD_DIR]
#
# Knobs (environment): MODEL (ocr_rec), REPEAT (forward calls timed per
# side and mode, 30), BURNERS (2). Both sides use 2 intra-op threads and
# run the same seeded input (tools/wild_refs.mjs). Ours runs with the
# threading environment aisbx uses (include/adv/threading.h: passive
# OpenMP waits) unless the caller set OMP_WAIT_POLICY / GOMP_SPINCOUNT;
# onnxruntime with its defaults. Ours also runs a second time with the
# previous default, GOMP_SPINCOUNT=30000 (column "ours spin"): on a shared
# box libgomp's spinning is what slowed us (issue 13 item 7). Each side
# does one untimed warm-up call. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/common/lib.sh
BUILD=${1:-build}
MODEL=${MODEL:-ocr_rec}
REPEAT=${REPEAT:-30}
BURNERS=${BURNERS:-2}
OUT=$BUILD/bench/wild

cmake -S . -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j2 --target wild_run >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT/ours"
node tools/wild_refs.mjs "$OUT/cases" "$MODEL" >/dev/null
"$BUILD/tests/wild/wild_run" "$OUT/cases/$MODEL" "$OUT/ours" # warm-up, checks it loads

trap stop_burners EXIT

# ours_ms / ort_ms: "MEAN MIN" in milliseconds for the current load.
ours_ms() { env "$@" "$BUILD/tests/wild/wild_run" "$OUT/cases/$MODEL" "$OUT/ours" "$REPEAT" | awk '/^forward_ms/ {print $2, $3}'; }
ort_ms() { node tools/wild_refs.mjs --bench "$MODEL" "$REPEAT" | awk '/^ort_forward_ms/ {print $2, $3}'; }

declare -A mean min
for mode in idle loaded; do
  if [ $mode = loaded ]; then
    start_burners "$BURNERS"
  fi
  read -r mean[ours,$mode] min[ours,$mode] <<<"$(ours_ms)"
  read -r mean[spn,$mode] min[spn,$mode] <<<"$(ours_ms -u OMP_WAIT_POLICY GOMP_SPINCOUNT=30000)"
  read -r mean[ort,$mode] min[ort,$mode] <<<"$(ort_ms)"
  stop_burners
done

echo "model $MODEL, batch 1, 2 threads, $REPEAT calls per cell, $(burners_note "$BURNERS"); load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "ours: aisbx's threading environment (include/adv/threading.h)${OMP_WAIT_POLICY:+, OMP_WAIT_POLICY=$OMP_WAIT_POLICY}${GOMP_SPINCOUNT:+, GOMP_SPINCOUNT=$GOMP_SPINCOUNT}; ours spin: GOMP_SPINCOUNT=30000 (the previous default)"
echo
echo "| mode | ours ms (mean / min) | ours spin ms | onnxruntime ms | ours / ort | ours spin / ort |"
echo "| ---- | -------------------- | --------------- | -------------- | ---------- | ------------------ |"
for mode in idle loaded; do
  awk -v m=$mode -v a="${mean[ours,$mode]}" -v b="${min[ours,$mode]}" -v p="${mean[spn,$mode]}" -v q="${min[spn,$mode]}" \
    -v c="${mean[ort,$mode]}" -v d="${min[ort,$mode]}" \
    'BEGIN {printf "| %s | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f | %.2f |\n", m, a, b, p, q, c, d, a / c, p / c}'
done
awk -v a="${mean[ours,loaded]}" -v b="${mean[ours,idle]}" -v p="${mean[spn,loaded]}" -v q="${mean[spn,idle]}" \
  -v c="${mean[ort,loaded]}" -v d="${mean[ort,idle]}" \
  'BEGIN {printf "\nloaded / idle (mean): ours %.2fx, ours spin %.2fx, onnxruntime %.2fx\n", a / b, p / q, c / d}'
