#!/usr/bin/env bash
# Command-line test of qwen-mock (ctest cli_mock): flags, the ready line, --scenario,
# signals, and the request log. Usage: cli_test.sh path/to/qwen-mock [VERSION]
# (VERSION: the project version --version must print; without it, any X.Y.Z).
set -u

BIN=${1:?usage: cli_test.sh path/to/qwen-mock [VERSION]}
VERSION=${2:-}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qwen-mock-cli.XXXXXX")
PID=""
CURL_PID=""
PORT=""

cleanup() {
    for p in "$CURL_PID" "$PID"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
            kill -KILL "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
    echo "FAIL: $*" >&2
    for f in out err; do
        if [ -s "$TMP/$f" ]; then
            echo "--- qwen-mock std$f:" >&2
            tail -n 20 "$TMP/$f" >&2
        fi
    done
    exit 1
}
ok() { echo "ok - $*"; }

# curl on loopback, never through a proxy, always bounded in time.
# Prints the status code; the body goes to $TMP/body.
http() {
    curl -sS --noproxy '*' --max-time 10 -o "$TMP/body" -w '%{http_code}' "$@"
}

# FNV-1a of an ASCII string, as qk_token_fingerprint() prints it.
fingerprint() {
    local s=$1 h=2166136261 i c
    for ((i = 0; i < ${#s}; i++)); do
        printf -v c '%d' "'${s:i:1}"
        h=$(( ((h ^ c) * 16777619) & 0xFFFFFFFF ))
    done
    printf 't:%08x' "$h"
}

# Starts qwen-mock in the background with "$@" and waits for its ready line.
start_mock() {
    : >"$TMP/out"
    : >"$TMP/err"
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err" &
    PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$TMP/out" ] && break
        kill -0 "$PID" 2>/dev/null || fail "qwen-mock $* exited before its ready line"
        sleep 0.1
    done
    local line
    line=$(head -n 1 "$TMP/out")
    [[ $line =~ ^listening\ on\ http://127\.0\.0\.1:([0-9]+)$ ]] ||
        fail "ready line is '$line'"
    PORT=${BASH_REMATCH[1]}
    [ "$PORT" -gt 0 ] || fail "port $PORT"
}

# Sends signal $1 and checks the process exits 0 within $2 tenths of a second.
stop_mock() {
    local sig=$1 limit=$2 i rc
    kill "-$sig" "$PID" || fail "cannot signal qwen-mock"
    for ((i = 0; i < limit; i++)); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$PID" 2>/dev/null && fail "qwen-mock still running $((limit / 10)) s after SIG$sig"
    wait "$PID"
    rc=$?
    PID=""
    [ "$rc" -eq 0 ] || fail "qwen-mock exited $rc after SIG$sig"
}

# Runs qwen-mock with "$@" expecting exit 2 and a message mentioning $NEEDLE.
expect_usage_error() {
    local needle=$1
    shift
    timeout 10 "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ "$rc" -eq 2 ] || fail "qwen-mock $* exited $rc, expected 2"
    [ -s "$TMP/out" ] && fail "qwen-mock $* printed on stdout"
    grep -qF -- "$needle" "$TMP/err" || fail "qwen-mock $*: message does not name '$needle'"
    ok "qwen-mock $* -> 2 naming '$needle'"
}

# --- --help -------------------------------------------------------------------
timeout 10 "$BIN" --help >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 0 ] || fail "--help exited $rc"
grep -qF -- "--port" "$TMP/out" || fail "--help does not mention --port"
grep -qF -- "--scenario" "$TMP/out" || fail "--help does not mention --scenario"
ok "--help"
timeout 10 "$BIN" -h >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 0 ] || fail "-h exited $rc"
grep -qF -- "--version" "$TMP/out" || fail "-h does not mention --version"
ok "-h"

# --- --version ------------------------------------------------------------------
timeout 10 "$BIN" --version >"$TMP/out" 2>"$TMP/err"
rc=$?
[ "$rc" -eq 0 ] || fail "--version exited $rc"
[ -s "$TMP/err" ] && fail "--version wrote on stderr"
line=$(cat "$TMP/out")
if [ -n "$VERSION" ]; then
    [ "$line" = "qwen-mock $VERSION" ] || fail "--version printed '$line', expected 'qwen-mock $VERSION'"
else
    [[ $line =~ ^qwen-mock\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$line'"
fi
ok "--version prints '$line'"

# --- bad flags and values -------------------------------------------------------
expect_usage_error "--bogus" --bogus
expect_usage_error "--port" --port abc
expect_usage_error "--port" --port 70000
expect_usage_error "--port" --port -1
expect_usage_error "--port" --port
expect_usage_error "--threads" --threads 0
expect_usage_error "--max-body" --max-body 12x
# The --opt=VALUE form is checked the same way.
expect_usage_error "--port" --port=abc
expect_usage_error "--port" --port=70000
expect_usage_error "--port" --port=
expect_usage_error "--max-body" --max-body=12x
expect_usage_error "--bogus" --bogus=1
expect_usage_error "--bogus" --port 0 --bogus
# A flag without its value, at the end of the line.
expect_usage_error "--host needs a value" --host
expect_usage_error "--scenario needs a value" --port 0 --scenario
expect_usage_error "--port needs a value" --port
# Empty strings, values given to flags that take none, stray arguments, ambiguous prefixes.
expect_usage_error "--host" --host=
expect_usage_error "--quiet takes no value" --quiet=1
expect_usage_error "--version takes no value" --version=1
expect_usage_error "'stray'" --port 0 stray
expect_usage_error "--max" --max 5
# An unambiguous prefix is the flag itself: its message names the whole flag.
expect_usage_error "--threads needs an integer" --thr 0
expect_usage_error "--missing-auth-403 takes no value" --missing=1
# Numbers are plain decimal digits: no sign, no blanks, nothing beyond unsigned long.
expect_usage_error "--port" --port " 5"
expect_usage_error "--port" --port "+5"
expect_usage_error "--threads" --threads " -1"
expect_usage_error "--max-body" --max-body 99999999999999999999999999
expect_usage_error "--journal-total" --journal-total=18446744073709551617
# --v2-messages takes one of three names.
expect_usage_error "--v2-messages needs first, last or empty (got 'middle')" --v2-messages middle
expect_usage_error "--v2-messages needs first, last or empty (got '')" --v2-messages=

# --- --port 0: one ready line, the server answers, the log hides tokens --------------
TOKEN="cli-secret-$$-$RANDOM$RANDOM"
FP=$(fingerprint "$TOKEN")
start_mock --port 0
code=$(http -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/models") ||
    fail "curl /api/models"
[ "$code" = 200 ] || fail "/api/models -> $code"
grep -qF '"qwen-max-latest"' "$TMP/body" || fail "/api/models body lacks the models"
code=$(http -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"model":"qwen-max-latest","messages":[{"role":"user","content":"hi"}],"stream":true}' \
    "http://127.0.0.1:$PORT/api/chat/completions") || fail "curl stream"
[ "$code" = 200 ] || fail "stream -> $code"
grep -qF 'data: [DONE]' "$TMP/body" || fail "stream lacks [DONE]"
# The v2 dialect on the same running mock, picked by path.
code=$(http -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v2/models/") ||
    fail "curl /api/v2/models/"
[ "$code" = 200 ] || fail "/api/v2/models/ -> $code"
grep -qF '"success":true' "$TMP/body" || fail "/api/v2/models/ body is not the v2 envelope"
code=$(http "http://127.0.0.1:$PORT/__mock/health")
[ "$code" = 200 ] || fail "health -> $code"
ok "--port 0 listens on $PORT and answers"
# The request log is written when a request completes: wait for it.
for ((i = 0; i < 50; i++)); do
    grep -q 'POST /api/chat/completions' "$TMP/err" && break
    sleep 0.1
done
grep -E "GET /api/models $FP " "$TMP/err" >/dev/null ||
    fail "no log line with the token fingerprint $FP"
grep -qF -- "$TOKEN" "$TMP/err" && fail "the token itself appears on stderr"
grep -qF -- "$TOKEN" "$TMP/out" && fail "the token itself appears on stdout"
ok "log lines carry $FP, never the token"
# A request cannot write lines of its own into the log: control characters in what it
# sends (the path is decoded, so %0a is a newline) are escaped on the request's line.
code=$(http "http://127.0.0.1:$PORT/x%0aqwen-mock:%20GET%20/forged%0d%1b%5b2J%7f")
[ "$code" = 404 ] || fail "forging path -> $code"
for ((i = 0; i < 50; i++)); do
    grep -q 'qwen-mock: GET /x' "$TMP/err" && break
    sleep 0.1
done
grep -q '^qwen-mock: GET /forged' "$TMP/err" && fail "a request forged a log line"
grep -qF 'qwen-mock: GET /x\x0aqwen-mock: GET /forged\x0d\x1b[2J\x7f - ' "$TMP/err" ||
    fail "the forging path is not on one escaped log line"
LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$TMP/err" && fail "control bytes on stderr"
ok "control characters in a request are escaped in the log"

# SIGTERM with a stream held open still exits promptly and cleanly.
curl -sS --noproxy '*' -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    -X POST "http://127.0.0.1:$PORT/__mock/scenarios" \
    -d "{\"token\":\"$TOKEN\",\"route\":\"chat\",\"steps\":[{\"stream\":{\"stall_after\":1}}]}" \
    --max-time 10 -o /dev/null || fail "queue stall"
curl -sS --noproxy '*' --max-time 20 -H "Authorization: Bearer $TOKEN" \
    -d '{"model":"qwen-max-latest","messages":[{"role":"user","content":"hi"}],"stream":true}' \
    "http://127.0.0.1:$PORT/api/chat/completions" >/dev/null 2>&1 &
CURL_PID=$!
for ((i = 0; i < 50; i++)); do
    http "http://127.0.0.1:$PORT/__mock/health" >/dev/null
    grep -q '"streams":1' "$TMP/body" && break
    sleep 0.1
done
grep -q '"streams":1' "$TMP/body" || fail "the stalled stream never showed in health"
stop_mock TERM 50
ok "SIGTERM exits 0 promptly with a stream open"
wait "$CURL_PID" 2>/dev/null
CURL_PID=""
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "stdout has $(wc -l <"$TMP/out") lines, expected 1"
ok "exactly one line on stdout"

# --- --scenario FILE ------------------------------------------------------------------
STOK="cli-scenario-$$-$RANDOM"
cat >"$TMP/scenario.json" <<EOF
[{"token":"$STOK","route":"models","steps":[{"status":503},{"html":"waf"}]},
 {"token":"$STOK","route":"chat","steps":[{"status":429,"retry_after":7}]}]
EOF
# The --opt=VALUE form throughout (the block above uses --opt VALUE).
start_mock --port=0 --scenario="$TMP/scenario.json" --threads=1 --journal-total=100 \
    --missing-auth-403 --no-done
ok "--port=0 --scenario=FILE: ready line with port $PORT"
code=$(http -H "Authorization: Bearer $STOK" "http://127.0.0.1:$PORT/api/models")
[ "$code" = 503 ] || fail "scenario step 1 -> $code"
code=$(http -H "Authorization: Bearer $STOK" "http://127.0.0.1:$PORT/api/models")
[ "$code" = 405 ] || fail "scenario step 2 -> $code"
grep -q '<html' "$TMP/body" || fail "scenario step 2 is not the HTML page"
code=$(http -D "$TMP/headers" -H "Authorization: Bearer $STOK" \
    -d '{"model":"qwen-max-latest","messages":[{"role":"user","content":"hi"}]}' \
    "http://127.0.0.1:$PORT/api/chat/completions")
[ "$code" = 429 ] || fail "scenario chat step -> $code"
grep -qi '^retry-after: 7' "$TMP/headers" || fail "no Retry-After: 7"
code=$(http -H "Authorization: Bearer $STOK" "http://127.0.0.1:$PORT/api/models")
[ "$code" = 200 ] || fail "after the scenario's steps -> $code"
ok "--scenario FILE applies its steps, then normal answers"
code=$(http "http://127.0.0.1:$PORT/api/models")
[ "$code" = 403 ] || fail "--missing-auth-403: missing Authorization -> $code"
grep -qF '"Not authenticated"' "$TMP/body" || fail "--missing-auth-403 body"
code=$(http -H "Authorization: Bearer $STOK" \
    -d '{"model":"qwen-max-latest","messages":[{"role":"user","content":"hi"}],"stream":true}' \
    "http://127.0.0.1:$PORT/api/chat/completions")
[ "$code" = 200 ] || fail "--no-done stream -> $code"
grep -q '^data: {' "$TMP/body" || fail "--no-done stream has no events"
grep -qF '[DONE]' "$TMP/body" && fail "--no-done stream still sends [DONE]"
ok "--missing-auth-403 and --no-done"
stop_mock INT 50
ok "SIGINT exits 0"

# --- bad scenario files -------------------------------------------------------------
printf '{"token":"x","steps":[{"ok":true},{"stream":{"chunks":"many"}}]}' >"$TMP/bad.json"
expect_usage_error "steps[1].stream.chunks" --port 0 --scenario "$TMP/bad.json"
printf '{"token":"x","steps":[{"bogus":1}]}' >"$TMP/bad2.json"
expect_usage_error "steps[0].bogus" --port 0 --scenario "$TMP/bad2.json"
expect_usage_error "$TMP/missing.json" --port 0 --scenario "$TMP/missing.json"

echo "all qwen-mock CLI checks passed"
