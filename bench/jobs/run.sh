#!/bin/bash
# bench/jobs/run.sh BUILD_DIR [JOBS] [TENANTS] - queue throughput of the
# PostgreSQL claim path (claim + finish per job) with 1, 4 and 16
# concurrent claimers, on a throwaway PostgreSQL 15 (tests/store/pg_run.sh:
# unix socket, fsync off). Target: >= 500 jobs/s.
# Environment: WAIT_IDLE (default 20, 0 = off) - wait up to this many
# seconds for >= 90 % idle CPUs first (the machine may be shared).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common/lib.sh
. "$here/../common/lib.sh"
B=${1:-build}
BIN=$B/bench/jobs/claim_bench
[ -x "$BIN" ] || { echo "build the claim_bench target first ($BIN)"; exit 1; }
echo "$(nproc) CPUs; $(load); busy:$(busy)"
wait_idle "${WAIT_IDLE:-20}"
"$here/../../tests/store/pg_run.sh" "$BIN" "${2:-2000}" "${3:-8}"
echo "$(load)"
