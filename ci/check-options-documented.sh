#!/usr/bin/env bash
# Every option a program's --help lists is named in its documentation.
#   ci/check-options-documented.sh PROGRAM DOC [DOC...]
set -euo pipefail
program=$1
shift
help=$("$program" --help)
options=$(grep -oE '^ +--[a-z0-9][a-z0-9-]*' <<<"$help" | tr -d ' ' | sort -u)
[[ -n $options ]] || { echo "$program --help lists no option" >&2; exit 1; }
missing=()
for option in $options; do
    grep -qF -- "$option" "$@" || missing+=("$option")
done
if ((${#missing[@]})); then
    echo "$(basename "$program"): --help lists options $* do not name: ${missing[*]}" >&2
    exit 1
fi
echo "$(basename "$program"): all $(wc -w <<<"$options") options of --help are documented"
