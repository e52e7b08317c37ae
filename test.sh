#!/bin/bash
# Runs every test: installs dependencies, checks .clang-format on changed
# files, builds the release tree (warnings are errors) and an ASan+UBSan
# tree, runs CTest on both, the README's main command (./run.sh --once),
# then the fuzzers.
# A missing dependency fails (never skips): a test reported as not run or
# skipped fails this script, and so does a label that selects no test.
set -euo pipefail
cd "$(dirname "$0")"
# a full run is never filtered, and skipping is not allowed here
unset ADV_ALLOW_SKIP ADV_TEST_CASE ADV_TEST_NOFORK ADV_TEST_CASE_TIMEOUT
tools/install-deps.sh
tools/check-format.sh
J=$(nproc)

# run_ctest DIR [CTEST ARGS...]: CTest in DIR; fails when a test failed, did
# not run or was skipped, or when no test matched.
run_ctest() {
  local dir=$1 log rc=0
  shift
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure --no-tests=error "$@") 2>&1 | tee "$log" || rc=$?
  if grep -q "The following tests did not run" "$log"; then
    echo "test.sh: tests were skipped or not run (listed above): a missing dependency is a failure" >&2
    rc=1
  fi
  rm -f "$log"
  return "$rc"
}

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADV_WERROR=ON >/dev/null
cmake --build build -j"$J"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DADV_WERROR=ON -DADV_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$J"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADV_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$J" --target fuzzers
echo "== release tests =="
run_ctest build -j"$J" --timeout 900
echo "== the README's main command, once (./run.sh --once on a fresh data dir) =="
demo=$(mktemp -d)
AISBX_DATA=$demo ./run.sh --once
rm -rf "$demo"
echo "== asan+ubsan tests (label: asan) =="
ASAN_OPTIONS=detect_leaks=1 run_ctest build-asan -j"$J" -L asan --timeout 900
echo "== fuzzers (libFuzzer, ${ADV_FUZZ_SECONDS:-20} s each) =="
run_ctest build-fuzz -L fuzz --timeout 900
