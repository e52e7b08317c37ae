#!/bin/bash
# bench/store/run.sh BUILD_DIR [MiB] - storage benchmark: put/get of a
# 256 MiB blob through encryption to the local store (no fsync) against
# `openssl speed -evp aes-256-gcm` (16 KiB blocks, 1 thread) as the limit,
# and small-row rates on SQLite and on a throwaway PostgreSQL 15.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${1:-build}
MIB=${2:-256}
BIN=$B/bench/store/bench_store
[ -x "$BIN" ] || { echo "build the bench_store target first ($BIN)"; exit 1; }
limit=$(openssl speed -evp aes-256-gcm -seconds 2 -bytes 16384 2>/dev/null |
  awk '/^AES-256-GCM/ {v=$NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6}')
echo "openssl speed -evp aes-256-gcm (16 KiB): ${limit} MB/s"
"$here/../../tests/store/pg_run.sh" "$BIN" "$MIB" "$limit"
