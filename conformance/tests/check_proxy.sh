#!/usr/bin/env bash
# check-proxy.sh as a user runs it: the reference proxy started from a command with the
# {port} and {upstream} placeholders, a few requirements (ERR-5 needs the unreachable twin,
# HTTP-2 the proxy's log), the reports written, and nothing left running afterwards. Also
# its refusals: a command without {port}, a proxy that never listens.
#   check_proxy.sh BUILD_DIR
set -euo pipefail
build=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
script=$root/conformance/check-proxy.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
    echo "check_proxy: $*" >&2
    exit 1
}
# Every process of a run carries this in its environment, to find any left behind.
mark=QK_CHECK_PROXY_TEST=$$-$RANDOM
left_behind() {
    grep -lsaF "$mark" /proc/[0-9]*/environ 2>/dev/null | grep -v "^/proc/$$/" || true
}

set +e
env "$mark" bash "$script" --build "$build" --profile "$root/conformance/profiles/reference.json" \
    --reports "$work/ok" --only AUTH-1,AUTH-3,ERR-5,HTTP-2 -- \
    "$build/proxy/qwen-proxy" --port '{port}' --upstream '{upstream}' --upstream-dialect v1 \
    --upstream-timeout 1 --retry-base-ms 20 --max-retries 3 >"$work/ok.out" 2>&1
code=$?
set -e
[[ $code == 0 ]] || { cat "$work/ok.out"; fail "a conforming proxy: exit $code, expected 0"; }
grep -q '^ERR-5 .*PASS' "$work/ok.out" || fail "ERR-5 did not pass (the unreachable twin)"
grep -q '^HTTP-2 .*PASS' "$work/ok.out" || fail "HTTP-2 did not pass (the proxy's log)"
for f in report.json junit.xml suite.log mock.log proxy.log unreachable.log; do
    [[ -s $work/ok/$f ]] || fail "no $f in the reports"
done
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/ok/report.json" ||
    fail "report.json is not JSON"
[[ -z $(left_behind) ]] || fail "processes left running: $(left_behind)"

set +e
bash "$script" --build "$build" --profile "$root/conformance/profiles/reference.json" -- \
    "$build/proxy/qwen-proxy" --upstream '{upstream}' >"$work/noport.out" 2>&1
code=$?
set -e
[[ $code == 2 ]] || fail "a command without {port}: exit $code, expected 2"
grep -q 'no {port}' "$work/noport.out" || fail "a command without {port}: $(cat "$work/noport.out")"

set +e
env "$mark" bash "$script" --build "$build" --profile "$root/conformance/profiles/reference.json" \
    --reports "$work/never" --start-timeout 1 -- bash -c 'sleep 30' '{port}' '{upstream}' >"$work/never.out" 2>&1
code=$?
set -e
[[ $code == 2 ]] || fail "a proxy that never listens: exit $code, expected 2"
grep -q 'did not listen on port' "$work/never.out" || fail "a proxy that never listens: $(cat "$work/never.out")"
[[ -z $(left_behind) ]] || fail "processes left running after a failed start: $(left_behind)"
echo "check_proxy: ok"
