#!/usr/bin/env bash
# Proves by symbol that a release build of the proxy carries no mutant code, at every
# optimisation level: builds the proxy (library qk_proxy and program qwen-proxy, with
# QK_MUTANTS=OFF, -Werror, -g) at -O0, -O1, -O2, -O3 and -Os into scratch directories and
# checks, for the library and the program:
#   - libqk_proxy.a has no mutant.c object, and no symbol comes from mutant.c (nm -l);
#   - no symbol, defined or referenced, has "mutant" in its name (qp_mutant_active, the
#     qp_mutant_rewrite_* hooks, qp_mutant_apply...) but qk_proxy_mutants_available, the
#     public function that answers "no" in such a build;
#   - no symbol is named after a mutant of proxy/mutants.tsv (a helper left behind);
#   - the debug information names no enum qp_mutant and no mutant.c unit.
# With a QK_MUTANTS=ON build directory as second argument, its proxy must show the mutant
# symbols, which proves that the check sees what it looks for.
#   ci/check-no-mutants.sh [SCRATCH_DIR [MUTANT_BUILD_DIR]]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${1:-build-nomutants}
mutant_build=${2:-}
levels=(-O0 -O1 -O2 -O3 -Os)
table=proxy/mutants.tsv
allowed='^qk_proxy_mutants_available$'
names=$(grep -v '^#' "$table" | cut -f1 | paste -sd'|' -)
failed=0

fail() {
  echo "check-no-mutants: $*" >&2
  failed=1
}

# Pipes end in a grep that reads its whole input (no -q): under pipefail, a grep that
# stops at the first match would fail the pipe with the writer's SIGPIPE.

# Prints the names of every symbol of $1 (defined or not, local or global).
symbols() {
  nm -a "$1" 2>/dev/null | awk 'NF >= 2 { print $NF }' | sort -u
}

# Checks one artefact ($2) of the build at level $1.
check_artefact() {
  local level=$1 file=$2 bad
  bad=$(symbols "$file" | grep -i 'mutant' | grep -Ev "$allowed" || true)
  [ -z "$bad" ] || fail "$level $file: mutant symbols: $(echo $bad)"
  bad=$(symbols "$file" | grep -Ex "$names" || true)
  [ -z "$bad" ] || fail "$level $file: symbols named after mutants: $(echo $bad)"
  bad=$(nm -l -a --defined-only "$file" 2>/dev/null | grep -E '[/ ]mutant\.c:' || true)
  [ -z "$bad" ] || fail "$level $file: symbols from mutant.c: $(echo "$bad" | head -3)"
  if readelf --debug-dump=info "$file" 2>/dev/null | grep -E 'qp_mutant|mutant\.c' >/dev/null; then
    fail "$level $file: its debug information names qp_mutant or mutant.c"
  fi
}

if [ -n "$mutant_build" ]; then
  lib="$mutant_build/proxy/libqk_proxy.a"
  [ -f "$lib" ] || { echo "check-no-mutants: no $lib" >&2; exit 2; }
  if ! symbols "$lib" | grep '^qp_mutant_apply$' >/dev/null ||
     ! nm -l -a --defined-only "$lib" | grep -E '[/ ]mutant\.c:' >/dev/null; then
    echo "check-no-mutants: the mutant build $mutant_build shows no mutant symbols:" \
         "the check would see nothing" >&2
    exit 1
  fi
fi

for level in "${levels[@]}"; do
  dir="$scratch/${level#-}"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS="$level -g" \
        -DQK_WERROR=ON -DQK_SANITIZE=OFF -DQK_MUTANTS=OFF >/dev/null
  cmake --build "$dir" -j"$(nproc)" --target qwen-proxy >/dev/null
  lib="$dir/proxy/libqk_proxy.a"
  if ar t "$lib" | grep 'mutant' >/dev/null; then
    fail "$level: libqk_proxy.a holds a mutant object"
  fi
  check_artefact "$level" "$lib"
  check_artefact "$level" "$dir/proxy/qwen-proxy"
  if [ "$failed" -eq 0 ]; then
    echo "check-no-mutants: $level: no mutant code in the proxy"
  fi
done
exit "$failed"
