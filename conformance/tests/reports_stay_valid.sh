#!/usr/bin/env bash
# JUnit XML and JSON reports stay valid whatever the target sends: run the suite against a
# target that answers with invalid UTF-8 and control characters, then parse both reports
# with strict parsers (expat, json) and check that the target's bytes were kept, escaped.
#   reports_stay_valid.sh BUILD_DIR
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start() { # name command...: starts it in this shell, so that cleanup knows its PID
    local name=$1
    shift
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
}

url_of() { # name: waits for its "listening on URL" line, prints the URL
    for _ in $(seq 100); do
        grep -q '^listening on ' "$work/$1.out" 2>/dev/null && break
        sleep 0.05
    done
    sed -n 's/^listening on //p' "$work/$1.out" | head -n 1
}

start mock "$build/mockupstream/qwen-mock" --port 0 --quiet
start target python3 "$here/garbage_target.py" --port 0
# Both PIDs are known here (a start inside $(...) would record them in a subshell, and
# the mock would outlive the test).
[[ ${#pids[@]} -eq 2 ]] || { echo "started ${#pids[@]} processes, expected 2" >&2; exit 1; }
mock=$(url_of mock)
target=$(url_of target)
[[ -n $mock && -n $target ]] || { echo "could not start the mock or the target" >&2; exit 1; }

set +e
"$build/conformance/qwen-conformance" --proxy "$target" --mock "$mock" \
    --only 'AUTH-1,AUTH-2,AUTH-3' --junit "$work/report.xml" --json "$work/report.json" \
    >"$work/suite.out" 2>&1
rc=$?
set -e
# The target fails what it is asked: "does not conform" (1), never a crash or a usage error.
if [[ $rc -ne 1 ]]; then
    tail -n 30 "$work/suite.out"
    echo "qwen-conformance exited $rc, expected 1" >&2
    exit 1
fi
python3 - "$work/report.xml" "$work/report.json" <<'PY'
import json, sys, xml.dom.minidom
junit, report = sys.argv[1], sys.argv[2]
doc = xml.dom.minidom.parse(junit)            # expat: refuses invalid UTF-8 and control bytes
text = "".join(n.toxml() for n in doc.getElementsByTagName("failure"))
assert doc.getElementsByTagName("property"), "JUnit has no <properties>"
with open(report, "rb") as f:
    data = json.loads(f.read().decode("utf-8"))  # strict: refuses invalid UTF-8
evidence = json.dumps(data)
# The target's bytes are there, escaped, in both reports.
for where, blob in (("JUnit", text), ("JSON", evidence)):
    assert "\\\\xFF" in blob or "\\xFF" in blob, f"{where}: the invalid byte was lost"
    assert "\\\\x1B" in blob or "\\x1B" in blob, f"{where}: the control character was lost"
print("reports valid: JUnit", len(text), "bytes of failures, JSON", len(evidence), "bytes")
PY
