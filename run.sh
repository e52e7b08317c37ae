#!/bin/bash
# The main job on embedded defaults: installs dependencies, builds, and
# evaluates the shipped demo model on the shipped demo data.
set -euo pipefail
cd "$(dirname "$0")"
tools/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
build/aisbx predict --model tests/fixtures/mnist_cnn.onnx --data tests/fixtures/demo_mnist.npz "$@"
