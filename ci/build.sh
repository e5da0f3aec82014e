#!/usr/bin/env bash
# Configures and builds into a build directory.
#   ci/build.sh [BUILD_DIR] [extra cmake args...]
# Environment: QK_SANITIZE=ON for ASan+UBSan, QK_TSAN=ON for ThreadSanitizer (not both),
# QK_MUTANTS=ON for the mutant proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DQK_WERROR=ON \
      -DQK_SANITIZE="${QK_SANITIZE:-OFF}" -DQK_TSAN="${QK_TSAN:-OFF}" -DQK_MUTANTS="${QK_MUTANTS:-OFF}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
