#!/usr/bin/env bash
# Signals of the qwen-proxy program (ctest cli_proxy_signals): SIGHUP does not stop it; the
# first SIGTERM drains (a stream in progress ends whole, new connections are refused) and
# the process exits 0; a second SIGTERM, or --drain-timeout, stops at once and the stream
# still running ends with the shutdown error event and a clean chunked end.
# Usage: signals_test.sh path/to/qwen-proxy path/to/qwen-mock
set -u

PROXY=${1:?usage: signals_test.sh path/to/qwen-proxy path/to/qwen-mock}
MOCK=${2:?usage: signals_test.sh path/to/qwen-proxy path/to/qwen-mock}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qwen-proxy-signals.XXXXXX")
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/*.err; do
        [ -s "$f" ] && { echo "--- $f:" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
ok() { echo "ok - $*"; }

# Starts a program that prints `listening on http://HOST:PORT`; sets PORT and LAST_PID.
start() {
    local name=$1
    shift
    # Emptied here, not by the child's redirection: a restart must not read the last port.
    : >"$TMP/$name.out"
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for _ in $(seq 100); do
        PORT=$(sed -n 's|.*listening on http://[^:]*:\([0-9]*\).*|\1|p' "$TMP/$name.out" 2>/dev/null)
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    fail "$name did not print its listening line"
}

start mock "$MOCK" --port 0 --quiet
MOCK_PORT=$PORT

# One scripted stream per call: CHUNKS pieces, 100 ms apart.
script_stream() {
    curl -fsS --noproxy "*" -m 5 -o /dev/null -X POST "http://127.0.0.1:$MOCK_PORT/__mock/scenarios" \
        -d "{\"token\":\"$1\",\"route\":\"chat\",\"steps\":[{\"stream\":{\"chunks\":$2,\"chunk_delay_ms\":100}}]}" ||
        fail "cannot script the mock"
}

# Streams a completion for token $1 into $TMP/$2.body in the background; sets CURL_PID.
stream() {
    curl -sS -N --noproxy '*' -m 30 -o "$TMP/$2.body" -w '%{http_code}' \
        -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
        -d '{"model":"qwen-max-latest","stream":true,"incremental_output":true,"messages":[{"role":"user","content":"hi"}]}' \
        "http://127.0.0.1:$PROXY_PORT/api/chat/completions" >"$TMP/$2.code" 2>"$TMP/$2.curlerr" &
    CURL_PID=$!
    PIDS+=("$CURL_PID")
    sleep 0.5 # the stream is under way
}

# Waits up to $2 seconds for pid $1 to exit; sets STATUS to its exit status or "timeout".
exit_within() {
    STATUS=timeout
    for _ in $(seq $(($2 * 20))); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1"
            STATUS=$?
            return 0
        fi
        sleep 0.05
    done
}

start_proxy() {
    start proxy "$PROXY" --port 0 --upstream "http://127.0.0.1:$MOCK_PORT" "$@"
    PROXY_PORT=$PORT
    PROXY_PID=$LAST_PID
}

# --- SIGHUP is ignored ------------------------------------------------------------------
start_proxy
kill -HUP "$PROXY_PID"
sleep 0.3
kill -0 "$PROXY_PID" 2>/dev/null || fail "SIGHUP stopped the proxy"
code=$(curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/healthz")
[ "$code" = 200 ] || fail "after SIGHUP, /healthz answered $code"
ok "SIGHUP is ignored and the proxy keeps serving"

# --- SIGTERM drains: the stream in progress ends whole --------------------------------
script_stream tok-drain 20
stream tok-drain drain
kill -TERM "$PROXY_PID"
sleep 0.3
if curl -sS --noproxy '*' -m 2 -o /dev/null "http://127.0.0.1:$PROXY_PORT/healthz" 2>/dev/null; then
    fail "a new connection was accepted while draining"
fi
exit_within "$PROXY_PID" 10
[ "$STATUS" = 0 ] || fail "after SIGTERM the proxy ended with '$STATUS', not 0"
wait "$CURL_PID" || fail "the draining stream failed: $(cat "$TMP/drain.curlerr")"
grep -q '^data: \[DONE\]' "$TMP/drain.body" || fail "the draining stream did not end with [DONE]"
grep -q '"error"' "$TMP/drain.body" && fail "the draining stream carries an error event"
[ "$(grep -c '^data: {' "$TMP/drain.body")" -ge 20 ] || fail "the draining stream lost events"
ok "SIGTERM drains: new connections refused, the stream in progress ends whole, exit 0"

# --- a second SIGTERM stops at once ------------------------------------------------------
start_proxy
script_stream tok-second 250
stream tok-second second
kill -TERM "$PROXY_PID"
sleep 0.3
kill -TERM "$PROXY_PID"
exit_within "$PROXY_PID" 4
[ "$STATUS" = 0 ] || fail "after a second SIGTERM the proxy ended with '$STATUS'"
wait "$CURL_PID" || fail "the cut stream is not well-formed: $(cat "$TMP/second.curlerr")"
grep -q '^data: {"error":' "$TMP/second.body" || fail "the cut stream has no error event"
ok "a second SIGTERM stops at once; the stream ends with one error event, well-formed"

# --- the drain timeout ends what is left ------------------------------------------------
start_proxy --drain-timeout 1
script_stream tok-timeout 250
stream tok-timeout timeout
kill -TERM "$PROXY_PID"
exit_within "$PROXY_PID" 5
[ "$STATUS" = 0 ] || fail "after the drain timeout the proxy ended with '$STATUS'"
wait "$CURL_PID" || fail "the stream ended by the drain timeout is not well-formed"
grep -q '^data: {"error":' "$TMP/timeout.body" || fail "the timed-out stream has no error event"
ok "--drain-timeout ends the streams left with an error event"
