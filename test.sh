#!/bin/bash
# Runs every test: installs dependencies, builds the release tree (warnings
# are errors) and an ASan+UBSan tree, runs CTest on both.
set -euo pipefail
cd "$(dirname "$0")"
tools/install-deps.sh
J=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADV_WERROR=ON >/dev/null
cmake --build build -j"$J"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DADV_WERROR=ON -DADV_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$J"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADV_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$J" --target fuzzers
echo "== release tests =="
(cd build && ctest --output-on-failure -j"$J" --timeout 900)
echo "== asan+ubsan tests (label: asan) =="
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$J" -L asan --timeout 900)
echo "== fuzzers (libFuzzer, ${ADV_FUZZ_SECONDS:-20} s each) =="
(cd build-fuzz && ctest --output-on-failure -L fuzz --timeout 900)
