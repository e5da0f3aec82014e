#!/usr/bin/env bash
# Checks that every C source and header the project tracks is formatted as .clang-format says.
#   ci/check-format.sh          report the files that differ and fail
#   ci/check-format.sh --fix    rewrite them in place
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
log=$(mktemp)
if ! clang-format --dry-run --Werror "${files[@]}" 2>"$log"; then
  grep -E '^[^ ].*: (error|warning):' "$log" | cut -d: -f1 | sort -u | sed 's/^/  /' >&2
  rm -f "$log"
  echo "ci/check-format.sh: these files differ from .clang-format (bash ci/check-format.sh --fix)" >&2
  exit 1
fi
rm -f "$log"
echo "format: ${#files[@]} files match .clang-format"
