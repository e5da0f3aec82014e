#!/usr/bin/env bash
# What one large streamed answer costs qwen-proxy in memory: the proxy's peak resident set
# (VmHWM from /proc/PID/status) while it relays one answer of about 15 MB, to a caller that
# reads it at full speed and to one that sends its request and never reads. Each case runs
# on a fresh proxy (and mock), in both delta modes of the upstream: incremental pieces, and
# cumulative events that repeat the whole text so far. The idle proxy's VmHWM comes first.
#
# Usage: bench/stream_memory.sh [BUILD_DIR] [PIECE_BYTES] [CHUNKS] [MODES]
#   BUILD_DIR    holds proxy/qwen-proxy and mockupstream/qwen-mock (default build); use a
#                build without sanitizers, whose allocator inflates the figures
#   PIECE_BYTES  the mock's stream.piece_bytes (default 1400000: about 15 MB of text)
#   CHUNKS       the mock's stream.chunks, pieces the text is re-split into (default 0:
#                its 11 natural pieces)
#   MODES        "incremental cumulative" (default) or one of them
#
# Builds nothing. Loopback only. Needs curl and python3. Exits 2 on a setup problem.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-$root/build}
piece=${2:-1400000}
chunks=${3:-0}
modes=${4:-incremental cumulative}
proxy="$build/proxy/qwen-proxy"
mock="$build/mockupstream/qwen-mock"
die() { echo "stream_memory: $*" >&2; exit 2; }
[ -x "$proxy" ] || die "no qwen-proxy at $proxy"
[ -x "$mock" ] || die "no qwen-mock at $mock"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Starts "$@" with its output in $work/$name.out; sets $port from its "listening on" line.
start() {
    local name=$1; shift
    "$@" >"$work/$name.out" 2>&1 &
    pids+=($!)
    last_pid=$!
    port=""
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$work/$name.out" | head -1)
        [ -n "$port" ] && return 0
        sleep 0.05
    done
    die "$name did not start: $(cat "$work/$name.out")"
}

hwm_kb() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# One case: $1 = read | no-read, $2 = incremental | cumulative. Prints a table row.
run_case() {
    local how=$1 mode=$2 inc=false split=""
    [ "$chunks" -gt 0 ] && split=",\"chunks\":$chunks"
    [ "$mode" = incremental ] && inc=true
    start mock "$mock" --port 0 --quiet
    local mock_pid=$last_pid mock_port=$port
    start proxy "$proxy" --listen 127.0.0.1 --port 0 --upstream "http://127.0.0.1:$mock_port" --upstream-dialect v1 \
        --stream-idle-timeout 60 --upstream-timeout 60
    local proxy_pid=$last_pid proxy_port=$port
    local idle
    idle=$(hwm_kb "$proxy_pid")
    curl -s -o /dev/null -X POST "http://127.0.0.1:$mock_port/__mock/scenarios" \
        -H 'Content-Type: application/json' \
        -d "{\"token\":\"bench\",\"route\":\"chat\",\"steps\":[{\"stream\":{\"piece_bytes\":$piece$split}}]}"
    local body="{\"model\":\"qwen-max-latest\",\"stream\":true,\"incremental_output\":$inc,\"messages\":[{\"role\":\"user\",\"content\":\"memory\"}]}"
    local got
    if [ "$how" = read ]; then
        got=$(curl -sN -o "$work/stream" -w '%{size_download}' --max-time 120 \
            -H 'Authorization: Bearer bench' -H 'Content-Type: application/json' \
            -d "$body" "http://127.0.0.1:$proxy_port/api/chat/completions")
    else
        # Sends the request and holds the connection without reading for 10 s: the proxy
        # pauses the upstream once its buffer and the kernel's are full (SSE-11).
        got=$(python3 - "$proxy_port" "$body" <<'EOF'
import socket, sys, time
port, body = int(sys.argv[1]), sys.argv[2].encode()
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
s.sendall(b"POST /api/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench\r\n"
          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
time.sleep(10)
print("unread")
s.close()
EOF
)
    fi
    local peak
    peak=$(hwm_kb "$proxy_pid")
    stop "$proxy_pid"
    stop "$mock_pid"
    printf '| %-11s | %-7s | %8s | %9s kB | %9s kB | %9s kB |\n' "$mode" "$how" "$got" \
        "$idle" "$peak" "$((peak - idle))"
}

echo "qwen-proxy: $proxy; stream.piece_bytes $piece, stream.chunks $chunks"
echo "| upstream    | caller  | received | idle VmHWM   | peak VmHWM   | stream cost  |"
echo "|-------------|---------|----------|--------------|--------------|--------------|"
for mode in $modes; do
    for how in read no-read; do
        run_case "$how" "$mode"
    done
done
