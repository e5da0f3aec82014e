#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan+UBSan) into build-fuzz and runs each.
#   ci/fuzz.sh [SECONDS]      seconds of fuzzing per target (default 60)
#   env QK_FUZZ_TARGETS="fuzz_x fuzz_y" picks targets (default: all five)
# Each target first replays fuzz/regressions/<target>/ (inputs that once found a defect
# must stay harmless), then fuzzes a copy of fuzz/corpus/<target>/ so the tree stays
# clean. Any crash, sanitizer report, leak, timeout or memory blow-up fails the script,
# which prints the reproducer's path. fuzz/README.md says what each target checks.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
dir=build-fuzz
targets=${QK_FUZZ_TARGETS:-fuzz_sse_norm fuzz_decode_v2 fuzz_validate fuzz_mock_scenario fuzz_conf_sse}
# QK_WERROR stays off: a clang-only warning in a module must not stop fuzzing (the targets'
# own sources are built with -Werror, see fuzz/CMakeLists.txt).
CC=${CC:-clang} cmake -S . -B "$dir" -DQK_FUZZ=ON -DQK_WERROR=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build "$dir" -j"$(nproc)" --target $targets >/dev/null

failed=()
for t in $targets; do
    bin="$dir/fuzz/$t"
    run="$dir/fuzz-run/$t"
    rm -rf "$run"
    mkdir -p "$run/artifacts"
    cp -r "fuzz/corpus/$t" "$run/corpus"
    mapfile -t regressions < <(find "fuzz/regressions/$t" -type f ! -name '*.md' 2>/dev/null | sort)
    if [ ${#regressions[@]} -gt 0 ]; then
        if ! "$bin" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$run/artifacts/" \
                "${regressions[@]}" >"$run/regressions.log" 2>&1; then
            echo "ci/fuzz.sh: $t: a saved regression fails again (log: $run/regressions.log)" >&2
            grep -E '^Running: |ERROR: |SUMMARY: |runtime error|^fuzz_[a-z_]*: ' \
                "$run/regressions.log" | head -6 >&2 || true
            failed+=("$t")
            continue
        fi
    fi
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$run/artifacts/" "$run/corpus" >"$run/log" 2>&1; then
        echo "ci/fuzz.sh: $t: FINDING (log: $run/log)" >&2
        grep -E 'ERROR: |SUMMARY: |runtime error|fuzz_[a-z_]*: ' "$run/log" | head -5 >&2 || true
        for a in "$run"/artifacts/*; do
            [ -e "$a" ] && echo "ci/fuzz.sh: reproducer: $a (replay: $bin $a)" >&2
        done
        failed+=("$t")
        continue
    fi
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE).*cov:' "$run/log" | tail -1 |
          sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [0-9]+\/[0-9]+[a-zA-Z]*).*/\1/')
    execs=$(sed -nE 's/^stat::number_of_executed_units: *//p' "$run/log")
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *//p' "$run/log")
    echo "ci/fuzz.sh: $t: ok, ${secs}s, $execs runs ($rate/s), $cov"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "ci/fuzz.sh: findings in: ${failed[*]}" >&2
    exit 1
fi
