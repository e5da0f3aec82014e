#!/usr/bin/env bash
# Instructions qwen-proxy executes per cached model list, per non-stream chat and per
# streamed chat, counted by callgrind (valgrind) and so the same whatever else the
# machine is doing.
#
# Differential: for each figure two fresh proxies run under callgrind, one answering K
# requests and one 2K (after the same warm-up: the cache miss, the first upstream
# connection, lazy symbol binding); (total(2K) - total(K)) / K is what one more request
# costs, with start-up, warm-up and exit cancelled out. Requests go one at a time over
# one kept-alive connection (bench/instr_client.py); qwen-mock runs natively.
#
# Usage: bench/instructions.sh [--build DIR] [--requests K] [--check] [--budget FILE] [--keep]
#                              [--figures "hit chat_v2 chat_v1 stream_v2 stream_v1"]
#   --build     release build directory (default build-release)
#   --requests  K (default 100)
#   --check     exit 1 when a figure's raw count is over its budget
#   --budget    budget file (default bench/instructions.budget): lines "NAME MAX"
#   --keep      keep the callgrind files (callgrind_annotate FILE) and logs, and say where
#   --figures   which figures to measure (default all five, below)
#
# Figures: hit (GET /api/models answered from the cache, default dialect v2), chat_v2
# (non-stream POST /api/chat/completions, default dialect: chats/new + completion
# upstream), chat_v1 (--upstream-dialect v1: one upstream request), stream_v2 and
# stream_v1 (the same chats with "stream": true, relayed as OpenAI chunks and read to
# data: [DONE]: the relay's cost per stream). The proxy runs with
# its default flags and log (text, to a file) but --cache-ttl 3600, so that no refresh
# falls into a slow run. "raw" is callgrind's Ir; valgrind counts every iteration of a
# `rep stosb` as one instruction, and glibc's memset uses it above 2 KiB, so "memset"
# is shown apart and "w/o memset" is raw minus it. The budget applies to raw.
# Exit status: 0, 1 over budget (with --check), 2 setup problem.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build-release"
k=100
check=0
keep=0
figures="hit chat_v2 chat_v1 stream_v2 stream_v1"
budget="$here/instructions.budget"

die() { echo "instructions: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --build) [ $# -ge 2 ] || die "--build needs a directory"; build=$2; shift 2 ;;
    --requests) [ $# -ge 2 ] || die "--requests needs a number"; k=$2; shift 2 ;;
    --check) check=1; shift ;;
    --keep) keep=1; shift ;;
    --figures) [ $# -ge 2 ] || die "--figures needs a list"; figures=$2; shift 2 ;;
    --budget) [ $# -ge 2 ] || die "--budget needs a file"; budget=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$k" in ''|*[!0-9]*|0) die "--requests needs a positive number" ;; esac
proxy="$build/proxy/qwen-proxy"
mock="$build/mockupstream/qwen-mock"
client="$here/instr_client.py"
[ -x "$proxy" ] || die "no qwen-proxy at $proxy"
[ -x "$mock" ] || die "no qwen-mock at $mock"
command -v valgrind >/dev/null || die "valgrind is missing (Debian: apt-get install -y valgrind)"
command -v callgrind_annotate >/dev/null || die "callgrind_annotate is missing (valgrind)"
command -v python3 >/dev/null || die "python3 is missing"
[ "$check" = 0 ] || [ -r "$budget" ] || die "no budget file $budget"

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [ "$keep" = 1 ]; then
        echo "instructions: callgrind files and logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_port() {
    local i port
    for i in $(seq 1 1200); do
        port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$1")
        [ -n "$port" ] && { echo "$port"; return 0; }
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

"$mock" --host 127.0.0.1 --port 0 --quiet >"$work/mock.out" 2>"$work/mock.err" &
mock_pid=$!
pids+=("$mock_pid")
mock_port=$(wait_port "$work/mock.out" "$mock_pid") || die "qwen-mock did not start"

# one_run TAG KIND N DIALECT: a fresh proxy under callgrind answers the warm-up and N
# requests of KIND, then stops on SIGTERM; writes "total memset" to $work/TAG.res.
one_run() {
    local tag=$1 kind=$2 n=$3 dialect=$4 pid port rc
    valgrind --tool=callgrind --callgrind-out-file="$work/$tag.cg" \
        "$proxy" --listen 127.0.0.1 --port 0 --upstream-dialect "$dialect" \
        --upstream "http://127.0.0.1:$mock_port" --cache-ttl 3600 \
        >"$work/$tag.out" 2>"$work/$tag.log" &
    pid=$!
    port=$(wait_port "$work/$tag.out" "$pid") || {
        tail -5 "$work/$tag.log" >&2
        echo "instructions: the proxy under callgrind did not start ($tag)" >&2
        kill "$pid" 2>/dev/null
        return 1
    }
    # Warm-up, the same in both runs of a pair: for a hit, the miss that fills the cache.
    python3 "$client" "$port" "$kind" 3 && python3 "$client" "$port" "$kind" "$n"
    rc=$?
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    if [ "$rc" -ne 0 ] || [ ! -s "$work/$tag.cg" ]; then
        echo "instructions: run $tag failed (client $rc)" >&2
        return 1
    fi
    local total memset
    total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$work/$tag.cg" | head -1)
    [ -n "$total" ] || total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$work/$tag.cg" | head -1)
    memset=$(callgrind_annotate --threshold=100 "$work/$tag.cg" 2>/dev/null |
        awk '/memset/ && $1 ~ /^[0-9,]+$/ { gsub(",", "", $1); s += $1 } END { print s + 0 }')
    if [ -z "$total" ]; then
        echo "instructions: no total in $tag's callgrind output" >&2
        return 1
    fi
    echo "$total $memset" >"$work/$tag.res"
}

# figure NAME KIND DIALECT: the K and 2K runs side by side (one per core).
figure() {
    local name=$1 kind=$2 dialect=$3 p1 p2 ok=0
    one_run "$name-1" "$kind" "$k" "$dialect" &
    p1=$!
    one_run "$name-2" "$kind" $((2 * k)) "$dialect" &
    p2=$!
    wait "$p1" || ok=1
    wait "$p2" || ok=1
    [ "$ok" = 0 ] || die "could not measure $name"
}

start=$SECONDS
for name in $figures; do
    case "$name" in
    hit) figure hit models v2 ;;
    chat_v2) figure chat_v2 chat v2 ;;
    chat_v1) figure chat_v1 chat v1 ;;
    stream_v2) figure stream_v2 stream v2 ;;
    stream_v1) figure stream_v1 stream v1 ;;
    *) die "unknown figure $name (hit, chat_v2, chat_v1, stream_v2, stream_v1)" ;;
    esac
done

printf '%s\n' "instructions per request, callgrind Ir, (run of $((2 * k)) - run of $k) / $k; $((SECONDS - start)) s"
printf '%-9s %10s %10s %12s %10s %s\n' figure raw memset "w/o memset" budget verdict
over=0
for name in $figures; do
    read -r t1 m1 <"$work/$name-1.res"
    read -r t2 m2 <"$work/$name-2.res"
    raw=$(((t2 - t1) / k))
    mem=$(((m2 - m1) / k))
    max=""
    [ -r "$budget" ] && max=$(awk -v n="$name" '$1 == n { print $2 }' "$budget")
    verdict=""
    [ "$check" = 1 ] && [ -z "$max" ] && die "no budget for $name in $budget"
    if [ -n "$max" ]; then
        if [ "$raw" -gt "$max" ]; then
            verdict="OVER BUDGET by $((raw - max))"
            over=1
        else
            verdict="ok"
        fi
    fi
    printf '%-9s %10d %10d %12d %10s %s\n' "$name" "$raw" "$mem" $((raw - mem)) "${max:--}" "$verdict"
done
if [ "$check" = 1 ] && [ "$over" = 1 ]; then
    echo "instructions: over budget ($budget); if the extra cost is meant, raise the budget there" >&2
    exit 1
fi
exit 0
