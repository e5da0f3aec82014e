#!/usr/bin/env bash
# Checks any proxy against the conformance suite in one command, for CI pipelines and
# proxy authors: starts qwen-mock, the proxy under test in front of it, a second instance
# of the proxy whose upstream refuses connections (for ERR-5), waits until both accept
# connections, runs qwen-conformance, writes the reports, and stops everything it started.
#
#   qwen-check-proxy [options] [suite options] -- COMMAND [ARG...]
# (installed as qwen-check-proxy; in a checkout, conformance/check-proxy.sh)
#
# COMMAND starts the proxy in the foreground. In COMMAND and its arguments:
#   {upstream}  is replaced by the mock's URL (http://127.0.0.1:PORT, no trailing slash)
#   {port}      is replaced by the port the proxy must listen on (on 127.0.0.1)
# e.g.  conformance/check-proxy.sh --profile my-proxy.json -- \
#           env PORT={port} QWEN_API_BASE={upstream} node server.js
#
# Options:
#   --profile FILE       what the suite cannot discover about the proxy (copy
#                        conformance/profiles/TEMPLATE.md's example); required
#   --reports DIR        reports and logs go here (default: conformance-reports)
#   --build DIR          a build directory holding mockupstream/qwen-mock and
#                        conformance/qwen-conformance (default: the programs on PATH,
#                        else build/ beside this script's checkout)
#   --start-timeout SEC  how long each proxy instance may take to accept connections
#                        (default 30)
#   --no-unreachable     start no second instance: ERR-5 is then UNCHECKED
#   --no-restart         when the proxy dies, do not start it again (the suite then
#                        judges every later test CANNOT-JUDGE)
# Any other option before "--" goes to qwen-conformance (--only, --exclude, --shuffle...);
# a --json, --junit, --html, --proxy-log or --restart-cmd there replaces this script's own.
#
# Writes DIR/report.json, DIR/junit.xml, DIR/report.html, DIR/suite.log (what the suite
# printed), DIR/mock.log, DIR/proxy.log and DIR/unreachable.log (each process's stdout and stderr).
# The suite reads DIR/proxy.log for the request ids HTTP-2 looks for.
# Exit status: the suite's (0 conforms, 1 a MUST failed, 3 not established), 2 when
# something could not be started.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
me=check-proxy.sh
die() {
    echo "$me: $*" >&2
    exit 2
}

profile= reports=conformance-reports build= start_timeout=30 unreachable=true restart=true
suite_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --profile) profile=${2:?--profile needs a file}; shift 2 ;;
    --reports) reports=${2:?--reports needs a directory}; shift 2 ;;
    --build) build=${2:?--build needs a directory}; shift 2 ;;
    --start-timeout) start_timeout=${2:?--start-timeout needs seconds}; shift 2 ;;
    --no-unreachable) unreachable=false; shift ;;
    --no-restart) restart=false; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    --) shift; break ;;
    *) suite_args+=("$1"); shift ;;
    esac
done
[[ $# -gt 0 ]] || die "no command after --: the command that starts the proxy (see --help)"
[[ -n $profile ]] || die "--profile FILE is required (see conformance/profiles/TEMPLATE.md)"
[[ -r $profile ]] || die "cannot read the profile $profile"
[[ $start_timeout =~ ^[0-9]+$ && $start_timeout -gt 0 ]] ||
    die "--start-timeout: $start_timeout is not a positive number of seconds"
command=("$@")
# has_word TEXT: some word of the command holds TEXT (no pipe: under pipefail a grep -q
# that stops reading would fail it with the writer's SIGPIPE).
has_word() {
    local word
    for word in "${command[@]}"; do
        [[ $word == *"$1"* ]] && return 0
    done
    return 1
}
has_word '{port}' ||
    die "the command has no {port}: the proxy must listen on the port this script gives it"
has_word '{upstream}' ||
    die "the command has no {upstream}: the proxy must use the mock as its upstream"

# The programs: --build, else installed ones, else this checkout's build/.
if [[ -n $build ]]; then
    mock_bin=$build/mockupstream/qwen-mock suite_bin=$build/conformance/qwen-conformance
elif command -v qwen-conformance >/dev/null && command -v qwen-mock >/dev/null; then
    mock_bin=$(command -v qwen-mock) suite_bin=$(command -v qwen-conformance)
else
    mock_bin=$here/../build/mockupstream/qwen-mock
    suite_bin=$here/../build/conformance/qwen-conformance
fi
for f in "$mock_bin" "$suite_bin"; do
    [[ -x $f ]] || die "no program $f (give --build DIR, or install the kit)"
done

mkdir -p "$reports"
reports=$(cd "$reports" && pwd)
profile=$(cd "$(dirname "$profile")" && pwd)/$(basename "$profile")

# free_port: a loopback port nobody uses now, taken below the system's ephemeral range
# (ip_local_port_range), so that no program binding port 0 meanwhile is given it before
# the proxy binds it.
free_port() {
    local low=32768 port
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    ((low > 12000)) || low=32768
    while :; do
        port=$((10000 + RANDOM % (low - 10000)))
        if command -v python3 >/dev/null; then
            python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' \
                "$port" 2>/dev/null || continue
        fi
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# Each started process leads a process group of its own, so that stopping it stops what
# it started (npm start runs node, a shell script runs the server).
pids=()
restarted_pids=$reports/restarted.pids # written by --restart-cmd, one pid a line
: >"$restarted_pids"
stop_group() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "$me: process group $pid did not stop on SIGTERM in 5 s: SIGKILL" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
}
cleanup() {
    set +e # every process is stopped, whatever fails on the way
    local pid restarted=()
    mapfile -t restarted <"$restarted_pids"
    for pid in "${restarted[@]}" "${pids[@]}"; do
        stop_group "$pid"
    done
    wait 2>/dev/null
    rm -f "$restarted_pids"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# expand UPSTREAM PORT: the command's words with the placeholders replaced, in $expanded.
expand() {
    local word
    expanded=()
    for word in "${command[@]}"; do
        word=${word//\{upstream\}/$1}
        expanded+=("${word//\{port\}/$2}")
    done
}

# wait_for_port NAME PID PORT: until 127.0.0.1:PORT accepts a connection, while PID lives.
wait_for_port() {
    local name=$1 pid=$2 port=$3 deadline=$((SECONDS + start_timeout))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && kill -0 "$pid" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || {
            echo "$me: $name exited before it listened on port $port; its output:" >&2
            tail -n 30 "$reports/$name.log" >&2
            exit 2
        }
        sleep 0.1
    done
    echo "$me: $name did not listen on port $port within ${start_timeout} s; its output:" >&2
    tail -n 30 "$reports/$name.log" >&2
    exit 2
}

# The mock prints the URL it listens on. Each log exists before its process starts, so
# that reading it never races the redirection.
: >"$reports/mock.log"
: >"$reports/proxy.log"
: >"$reports/unreachable.log"
setsid "$mock_bin" --port 0 --quiet >"$reports/mock.log" 2>&1 </dev/null &
pids+=($!)
mock_url=
for ((i = 0; i < 100; i++)); do
    mock_url=$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p;T;q' "$reports/mock.log")
    [[ -n $mock_url ]] && break
    kill -0 "${pids[0]}" 2>/dev/null || break
    sleep 0.1
done
[[ -n $mock_url ]] || { tail -n 20 "$reports/mock.log" >&2; die "qwen-mock did not start"; }
mock_url=${mock_url%/}

proxy_port=$(free_port)
expand "$mock_url" "$proxy_port"
proxy_cmd=("${expanded[@]}")
setsid "${proxy_cmd[@]}" >"$reports/proxy.log" 2>&1 </dev/null &
pids+=($!)
wait_for_port proxy "$!" "$proxy_port"
unreachable_args=()
if $unreachable; then
    dead_port=$(free_port)
    unreachable_port=$(free_port)
    expand "http://127.0.0.1:$dead_port" "$unreachable_port"
    setsid "${expanded[@]}" >"$reports/unreachable.log" 2>&1 </dev/null &
    pids+=($!)
    wait_for_port unreachable "$!" "$unreachable_port"
    unreachable_args=(--unreachable-proxy "http://127.0.0.1:$unreachable_port")
fi

# sq WORD...: the words quoted for sh -c (single quotes, a ' as '\'').
sq() {
    local w out=
    for w in "$@"; do
        out+=" '${w//\'/\'\\\'\'}'"
    done
    printf '%s' "${out# }"
}
restart_args=()
if $restart; then
    # The proxy again on its port, in the background (the suite waits until it answers),
    # appending to its log; its pid is recorded so that cleanup stops it too.
    restart_cmd="echo '$me: restarting the proxy' >>$(sq "$reports/proxy.log");"
    restart_cmd+=" setsid $(sq "${proxy_cmd[@]}") </dev/null >>$(sq "$reports/proxy.log") 2>&1 &"
    restart_cmd+=" echo \$! >>$(sq "$restarted_pids")"
    restart_args=(--restart-cmd "$restart_cmd")
fi

# What the suite is told unless the caller's suite options say it otherwise.
own=(--proxy-log "$reports/proxy.log" "${restart_args[@]}" --json "$reports/report.json"
    --junit "$reports/junit.xml" --html "$reports/report.html")
for a in "${suite_args[@]}"; do
    case $a in
    --proxy-log | --proxy-log=* | --restart-cmd | --restart-cmd=* | --json | --json=* | \
        --junit | --junit=* | --html | --html=*)
        drop=${a%%=*}
        kept=()
        for ((i = 0; i < ${#own[@]}; i += 2)); do
            [[ ${own[i]} == "$drop" ]] || kept+=("${own[i]}" "${own[i + 1]}")
        done
        own=("${kept[@]}")
        ;;
    esac
done

echo "$me: proxy http://127.0.0.1:$proxy_port, mock $mock_url; reports in $reports" >&2
set +e
"$suite_bin" --proxy "http://127.0.0.1:$proxy_port" --mock "$mock_url" "${unreachable_args[@]}" \
    --profile "$profile" "${own[@]}" "${suite_args[@]}" 2>&1 | tee "$reports/suite.log"
code=${PIPESTATUS[0]}
set -e
exit "$code"
