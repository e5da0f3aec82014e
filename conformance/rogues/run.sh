#!/usr/bin/env bash
# Runs the conformance suite against one rogue of the gallery, through check-proxy.sh (the
# script anyone checks a proxy with): the mock, the rogue in front of it and a twin whose
# upstream refuses connections (ERR-5), with conformance/rogues/ROGUE.json as the profile.
#
#   conformance/rogues/run.sh ROGUE [extra qwen-conformance args...]
#   e.g. conformance/rogues/run.sh node-clean --json /tmp/node-clean.json
#        conformance/rogues/run.sh py-crash --only 'ERR_1*'
#
# A rogue is ROGUE.mjs (node) or ROGUE.py (python3), started with --port PORT --upstream
# URL and the profile's "x-rogue-args" (the suite ignores keys that start with "x-"). When
# it dies during the run, the suite starts it again on the same port (check-proxy.sh).
#
# Environment: QK_BUILD_DIR (default: build, relative to the repository root) holds
# mockupstream/qwen-mock and conformance/qwen-conformance. QK_ROGUE_LOGS: a directory
# for the logs and reports (default: a new temporary directory, printed at the end).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [[ $# -lt 1 ]]; then
    echo "usage: $0 ROGUE [qwen-conformance args...]" >&2
    exit 2
fi
rogue=$1
shift
build=${QK_BUILD_DIR:-build}
[[ $build == /* ]] || build=$root/$build
profile=$here/$rogue.json
[[ -e $profile ]] || { echo "$0: no profile $profile" >&2; exit 2; }
if [[ -f $here/$rogue.mjs ]]; then
    cmd=(node "$here/$rogue.mjs")
elif [[ -f $here/$rogue.py ]]; then
    cmd=(python3 -u "$here/$rogue.py")
else
    echo "$0: no rogue $rogue.mjs or $rogue.py in $here" >&2
    exit 2
fi
mapfile -t extra < <(python3 -c 'import json,sys
for a in json.load(open(sys.argv[1])).get("x-rogue-args", []): print(a)' "$profile")

logs=${QK_ROGUE_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/rogue-$rogue.XXXXXX")}
set +e
bash "$root/conformance/check-proxy.sh" --build "$build" --profile "$profile" --reports "$logs" \
    "$@" -- "${cmd[@]}" --port '{port}' --upstream '{upstream}' "${extra[@]}"
code=$?
set -e
echo "rogues/run.sh: logs in $logs" >&2
exit "$code"
