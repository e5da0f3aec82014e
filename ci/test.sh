#!/usr/bin/env bash
# Runs every test: installs what is missing, builds with -Werror under
# AddressSanitizer + UndefinedBehaviorSanitizer (mutants included), then ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
QK_SANITIZE=ON QK_MUTANTS=ON bash ci/build.sh build-test
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Most tests wait on timers (backoff, TTLs, pacing), not the CPU: run more than one per core.
ctest --test-dir build-test --output-on-failure -j"$(( $(nproc) * 3 ))" "$@"
