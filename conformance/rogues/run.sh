#!/usr/bin/env bash
# Runs the conformance suite against one rogue of the gallery.
#
#   conformance/rogues/run.sh ROGUE [extra qwen-conformance args...]
#   e.g. conformance/rogues/run.sh node-clean --json /tmp/node-clean.json
#        conformance/rogues/run.sh py-crash --only 'ERR_1*'
#
# Starts qwen-mock --port 0, the rogue (ROGUE.mjs with node, ROGUE.py with python3) in
# front of it, and a second instance of the rogue whose upstream is a loopback port that
# refuses connections (for ERR-5), all on ephemeral ports read from the lines they print;
# runs qwen-conformance with conformance/rogues/ROGUE.json as the profile; stops them all
# on exit and exits with the suite's status.
#
# The suite also gets --proxy-log LOGS/rogue.err (the rogue's stderr, where it writes a line
# per request, for HTTP-2) and --restart-cmd: when the rogue dies during the run, the suite
# starts it again on the same port, in the background, appending to the same logs; the
# restarted rogue's pid goes to LOGS/rogue.pids, and it is stopped on exit like the others.
# A --proxy-log or --restart-cmd among the extra arguments replaces run.sh's own.
#
# Environment: QK_BUILD_DIR (default: build, relative to the repository root) holds
# mockupstream/qwen-mock and conformance/qwen-conformance. QK_ROGUE_LOGS: a directory
# for the logs (default: a new temporary directory, printed at the end).
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
mock_bin=$build/mockupstream/qwen-mock
suite_bin=$build/conformance/qwen-conformance
profile=$here/$rogue.json
for f in "$mock_bin" "$suite_bin" "$profile"; do
    [[ -e $f ]] || { echo "$0: missing $f (set QK_BUILD_DIR?)" >&2; exit 2; }
done
if [[ -f $here/$rogue.mjs ]]; then
    cmd=(node "$here/$rogue.mjs")
elif [[ -f $here/$rogue.py ]]; then
    cmd=(python3 -u "$here/$rogue.py")
else
    echo "$0: no rogue $rogue.mjs or $rogue.py in $here" >&2
    exit 2
fi
# Per-rogue arguments live in the profile ("x-rogue-args": the suite ignores keys that start with "x-").
mapfile -t extra < <(python3 -c 'import json,sys
for a in json.load(open(sys.argv[1])).get("x-rogue-args", []): print(a)' "$profile")

logs=${QK_ROGUE_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/rogue-$rogue.XXXXXX")}
mkdir -p "$logs"
pids=()
restarted_pids=$logs/rogue.pids # written by --restart-cmd, one pid a line
: >"$restarted_pids"
# is_restarted_rogue PID: PID is still a rogue that --restart-cmd started (not a reused pid).
is_restarted_rogue() {
    kill -0 "$1" 2>/dev/null || return 1
    [[ ! -r /proc/$1/cmdline ]] || tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "${cmd[-1]}"
}
cleanup() {
    set +e # every process is stopped, whatever fails on the way
    local pid i
    # Rogues started by --restart-cmd are not our children: stopped, then polled until gone.
    local restarted=()
    [[ -f $restarted_pids ]] && mapfile -t restarted <"$restarted_pids"
    for pid in "${restarted[@]}"; do
        is_restarted_rogue "$pid" && kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${restarted[@]}"; do
        for ((i = 0; i < 50; i++)); do
            is_restarted_rogue "$pid" || break
            sleep 0.1
        done
        is_restarted_rogue "$pid" && kill -KILL "$pid" 2>/dev/null || true
    done
    echo "rogues/run.sh: logs in $logs" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background and waits for its "listening on URL"
# line; sets $url.
start() {
    local name=$1
    shift
    : >"$logs/$name.out"
    "$@" >>"$logs/$name.out" 2>"$logs/$name.err" &
    pids+=($!)
    local pid=$! i
    url=
    for ((i = 0; i < 100; i++)); do
        url=$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$logs/$name.out" 2>/dev/null | head -n 1) || true
        [[ -n $url ]] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$0: $name did not print its port; stderr:" >&2
    tail -n 20 "$logs/$name.err" >&2
    exit 2
}

start mock "$mock_bin" --port 0 --quiet
mock_url=$url
start rogue "${cmd[@]}" --port 0 --upstream "$mock_url" "${extra[@]}"
proxy_url=$url
# A loopback port nobody listens on: bound by the system, then released.
dead_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start unreachable "${cmd[@]}" --port 0 --upstream "http://127.0.0.1:$dead_port" "${extra[@]}"
unreachable_url=$url

# sq WORD...: the words quoted for sh -c (single quotes, a ' as '\'').
sq() {
    local w out=
    for w in "$@"; do
        out+=" '${w//\'/\'\\\'\'}'"
    done
    printf '%s' "${out# }"
}
# What --restart-cmd runs: the rogue again on its port, in the background (the suite waits
# for it to answer), appending to its logs; its pid is recorded for cleanup.
proxy_port=${proxy_url##*:}
proxy_port=${proxy_port%%/*}
restart_cmd="echo \"rogues/run.sh: restarting $rogue on port $proxy_port\" >>$(sq "$logs/rogue.out");"
restart_cmd+=" $(sq "${cmd[@]}" --port "$proxy_port" --upstream "$mock_url" "${extra[@]}")"
restart_cmd+=" </dev/null >>$(sq "$logs/rogue.out") 2>>$(sq "$logs/rogue.err") &"
restart_cmd+=" echo \$! >>$(sq "$restarted_pids")"
own_log=true own_restart=true
for a in "$@"; do
    case $a in
    --proxy-log | --proxy-log=*) own_log=false ;;
    --restart-cmd | --restart-cmd=*) own_restart=false ;;
    esac
done
suite_extra=()
if $own_log; then suite_extra+=(--proxy-log "$logs/rogue.err"); fi
if $own_restart; then suite_extra+=(--restart-cmd "$restart_cmd"); fi

echo "rogues/run.sh: $rogue at $proxy_url (unreachable twin $unreachable_url), mock $mock_url" >&2
set +e
"$suite_bin" --proxy "$proxy_url" --mock "$mock_url" --unreachable-proxy "$unreachable_url" \
    --profile "$profile" "${suite_extra[@]}" "$@"
code=$?
set -e
exit "$code"
