#!/usr/bin/env bash
# ctest cli_mock_fault_keys: the README's table of scenario keys is the one the mock's
# key tables print (qwen-mock --fault-keys), so the documentation cannot drift from the
# parser. Usage: fault_keys_test.sh path/to/qwen-mock path/to/README.md
set -euo pipefail
BIN=${1:?usage: fault_keys_test.sh path/to/qwen-mock path/to/README.md}
README=${2:?usage: fault_keys_test.sh path/to/qwen-mock path/to/README.md}
documented=$(sed -n '/^<!-- fault-keys: begin/,/^<!-- fault-keys: end/p' "$README" | sed '1d;$d')
[ -n "$documented" ] || { echo "FAIL: no fault-keys table between the markers in $README" >&2; exit 1; }
printed=$("$BIN" --fault-keys)
if [ "$documented" != "$printed" ]; then
    echo "FAIL: $README's fault-keys table differs from 'qwen-mock --fault-keys':" >&2
    diff <(printf '%s\n' "$documented") <(printf '%s\n' "$printed") >&2 || true
    exit 1
fi
echo "ok - README fault-keys table matches qwen-mock --fault-keys ($(printf '%s\n' "$printed" | wc -l) lines)"
