#!/usr/bin/env bash
# Runs every test: installs what is missing; builds the release configuration with
# -Werror, runs the conformance suite against its proxy, the unit and end-to-end tests, a
# 45-second chaos soak and the fuzzers for 25 s each; builds under ThreadSanitizer and
# runs the same tests and the suite; builds again under AddressSanitizer +
# UndefinedBehaviorSanitizer (mutants included) and runs ctest, the rogues last.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step's start, with the seconds since this script began: where CI's time goes.
stage() { echo "ci/test.sh: [${SECONDS} s] $*"; }
stage "install what is missing"
bash ci/install-deps.sh
# Every C source and header as .clang-format lays it out (fix: bash ci/check-format.sh --fix).
stage "format check"
bash ci/check-format.sh
# The release configuration must build warning-free too (optimisation finds other
# warnings than the sanitizers do).
stage "release build"
QK_SANITIZE=OFF QK_MUTANTS=OFF bash ci/build.sh build-release
stage "release suites (v1, v2)"
# The suite against the release proxy, the one that ships, before the sanitizer run, in
# each upstream dialect (both at once: each spends most of its time waiting on timers).
pids=()
for profile in reference reference-v2; do
  build-release/conformance/qwen-conformance --spawn \
    --profile conformance/profiles/$profile.json >"build-release/conformance-$profile.log" 2>&1 &
  pids+=($!)
done
i=0
for profile in reference reference-v2; do
  log=build-release/conformance-$profile.log
  if ! wait "${pids[$i]}"; then
    tail -n 80 "$log"
    echo "ci/test.sh: the release proxy does not conform ($log)" >&2
    exit 1
  fi
  grep -E '^(verdict|conformance):' "$log"
  i=$((i + 1))
done
# The unit and end-to-end tests on the release build too: it is the one that ships, and
# optimisation changes timing and code generation. Mutant tests are not registered
# in this configuration; the rogues judge the suite, not the build, and run once below;
# conformance_reference(_v2) is the suite run just above. The release ctest includes the
# instruction-count gate (label bench-gate: bench/instructions.sh --check, 16 to 40 s).
jobs=$(( $(nproc) * 3 ))
stage "release ctest"
ctest --test-dir build-release --output-on-failure -j"$jobs" -LE 'rogue|mutant' \
      -E '^conformance_reference(_v2)?$' "$@"
# 45 s of mixed traffic with injected faults through the release proxy: every answer
# exact or one clean error, RSS and descriptors flat (bench/README.md, "Chaos soak").
stage "chaos soak"
python3 bench/chaos_soak.py build-release --seconds 45
# Each libFuzzer target (clang) for a short run after replaying its saved regressions.
stage "fuzzers"
bash ci/fuzz.sh 25
# The unit and end-to-end tests and the suite (v1; v2's threads are those of
# e2e_proxy_v2, which runs here too) under ThreadSanitizer: MHD's threads hand
# requests to the proxy's loop thread, the admission watchdog and the mock run threads of
# their own. Each process (spawned proxies and mocks too) writes its reports under
# build-tsan/tsan/; any report fails the step. The instrumented code is CPU-bound: one job
# per core. Some kernels map memory where TSan cannot work unless ASLR is off for the run.
stage "TSan build"
QK_SANITIZE=OFF QK_TSAN=ON QK_MUTANTS=OFF bash ci/build.sh build-tsan
stage "TSan ctest"
rm -rf build-tsan/tsan && mkdir -p build-tsan/tsan
no_aslr=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
  no_aslr=(setarch "$(uname -m)" -R)
fi
tsan_status=0
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 log_path=$PWD/build-tsan/tsan/report" \
  "${no_aslr[@]}" ctest --test-dir build-tsan --output-on-failure -j"$(nproc)" \
  -LE 'rogue|mutant|browser' -E '^conformance_reference_v2$' "$@" || tsan_status=$?
if compgen -G 'build-tsan/tsan/report*' >/dev/null; then
  cat build-tsan/tsan/report*
  echo "ci/test.sh: ThreadSanitizer reported (build-tsan/tsan/)" >&2
  exit 1
fi
[ "$tsan_status" = 0 ] || exit "$tsan_status"
stage "ASan + UBSan build (mutants)"
QK_SANITIZE=ON QK_MUTANTS=ON bash ci/build.sh build-test
stage "no mutant symbols in release builds"
# A release proxy carries no mutant code at any optimisation level, by symbol (the mutant
# build shows that the check sees mutant symbols where there are some).
bash ci/check-no-mutants.sh build-nomutants build-test
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Most tests wait on timers (backoff, TTLs, pacing), not the CPU: `jobs` runs more than one
# per core. The rogues (Node.js and Python proxies) run after the rest, so that they do not
# compete for the CPU with the sanitizer-built proxies of the mutant tests.
stage "ASan ctest (mutants)"
ctest --test-dir build-test --output-on-failure -j"$jobs" -LE rogue "$@"
stage "rogues"
ctest --test-dir build-test --output-on-failure -j"$jobs" -L rogue "$@"
stage "nothing left running"
# Every test stops what it started: no process of this tree may outlive the tests (a test
# that lost a PID leaves a mock listening, and the next run on the machine meets it).
# Only processes started during this run count, so a proxy the user runs from the tree
# does not fail it.
sleep 2
left=$(ps -eo pid=,etimes=,args= | awk -v run="$SECONDS" -v me="$$" -v tree="$PWD/" \
    '$1 != me && $2 + 0 < run && index($0, tree) && !/ ps -eo / && !/awk -v run/' || true)
if [ -n "$left" ]; then
    echo "$left" >&2
    echo "ci/test.sh: processes of this tree outlived the tests" >&2
    exit 1
fi
stage "done"
