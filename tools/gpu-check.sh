#!/usr/bin/env bash
# Runs the GPU test suite (tests/gpu.rs: logits, seeds, attacks, training steps, pruning and the
# smoke experiment, each against the CPU) on an NVIDIA GPU with the CUDA backend.
#
#   tools/gpu-check.sh [cuda|cuda:N]      (default: cuda)
#
# Needs the CUDA toolkit and driver; the first build downloads CubeCL's LLVM bundle (see
# docs/devices.md, "CUDA and the LLVM bundle"). The same suite runs in CI on wgpu/lavapipe.
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda}"
bash tools/setup-test-data.sh
DWLTH_TEST_GPU="$device" cargo test --release --features cuda --test gpu -- --test-threads=1
