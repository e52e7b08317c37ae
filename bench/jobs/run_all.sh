#!/bin/bash
# bench/jobs/run_all.sh BUILD_DIR [DISPATCH_JOBS] [OVERHEAD_RUNS] - every
# benchmark of issue 11 item 9 in one run, summarised as ratios:
#  1. sandbox spawn-to-ready vs fork+exec of /bin/true (tests/sandbox/
#     bench_spawn; target <= 3x): a cold spawn and a runner started ahead
#     (what the worker does), side by side, with the floor of a cold start
#     (exec + library loading alone) and the cost of the network namespace;
#  2. empty-job dispatch latency p50/p99, POST .../jobs -> running, idle
#     worker (service_bench.py; target p50 <= 20 ms);
#  3. queue throughput of the PostgreSQL claim path with 1, 4 and 16
#     claimers (run.sh / claim_bench; target >= 500 jobs/s);
#  4. an attack job through the service vs `aisbx attack` on the same files
#     (service_bench.py; target <= 5 % for a ~10 s job).
# Needs the targets aisbxd aisbx-worker aisbx aisbx-runner bench_spawn
# claim_bench. Not part of the tests. Environment: WAIT_IDLE (default 20),
# SPAWN_N (default 50), ATTACK_STEPS / ATTACK_N (service_bench.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common/lib.sh
. "$here/../common/lib.sh"
B=$(cd "${1:-build}" && pwd)
FIX=$here/../../tests/fixtures
RUNNER=$B/src/runner/aisbx-runner
[ -x "$RUNNER" ] || RUNNER=$B/aisbx-runner
for f in "$B/aisbxd" "$B/aisbx-worker" "$B/aisbx" "$RUNNER" \
  "$B/tests/sandbox/bench_spawn" "$B/bench/jobs/claim_bench"; do
  [ -x "$f" ] || { echo "missing $f: build aisbxd aisbx-worker aisbx aisbx-runner bench_spawn claim_bench" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "bench/jobs: $(nproc) CPUs; $(load); busy:$(busy)"
wait_idle "${WAIT_IDLE:-20}"

echo "== 1. sandbox spawn"
"$B/tests/sandbox/bench_spawn" "$RUNNER" "${SPAWN_N:-50}" | tee "$tmp/spawn"
echo "== 2+4. dispatch latency, attack job overhead ($(load))"
/usr/bin/python3 "$here/service_bench.py" "$B" "$FIX" "${2:-50}" "${3:-3}" | tee "$tmp/svc"
echo "== 3. claim throughput ($(load))"
WAIT_IDLE=0 "$here/run.sh" "$B" | tee "$tmp/claim"

echo "== summary ($(load))"
awk '/^fork\+exec/ {t=$(NF-2)} /^sandboxed runner/ {r=$(NF-2)} /^started ahead/ {a=$(NF-3)}
     /^floor:/ {f=$(NF-3)} /^network namespace/ {nn=$(NF-1) " ms"}
     END {printf "sandbox spawn-to-ready / fork+exec /bin/true: cold %.1fx (%s / %s ms; target <= 3x); started ahead (the worker'"'"'s default): %.1fx (%s ms)\n", r/t, r, t, a/t, a;
          printf "  floor of a cold start, exec + shared libraries of aisbx-runner without any sandbox: %.1fx (%s ms); a network namespace adds %s to unshare\n", f/t, f, nn}' "$tmp/spawn"
awk '/^RESULT dispatch_p50_ms/ {p50=$3} /^RESULT dispatch_p99_ms/ {p99=$3}
     /^RESULT attack_cli_s/ {c=$3} /^RESULT attack_service_s/ {s=$3}
     /^RESULT attack_cli_min_s/ {cm=$3} /^RESULT attack_service_min_s/ {sm=$3}
     END {printf "dispatch POST -> running: p50 %.1f ms (%.2fx the 20 ms target), p99 %.1f ms\n", p50, p50/20, p99;
          printf "attack job via the service / aisbx attack: %.3fx (medians %.2f s / %.2f s: %+.1f %%; target <= 5 %%)\n", s/c, s, c, 100*(s/c-1);
          printf "  fastest runs: %.3fx (%.2f s / %.2f s: %+.1f %%)\n", sm/cm, sm, cm, 100*(sm/cm-1)}' "$tmp/svc"
awk '/^ *claimers/ {sub(/:/, "", $2); for (i = 3; i <= NF; i++) if ($i == "jobs/s") {v = $(i - 1); break}
     printf "claim throughput, %2s claimers: %s jobs/s (%.2fx the 500 jobs/s target)\n", $2, v, v/500}' "$tmp/claim"
