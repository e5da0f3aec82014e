#!/usr/bin/env bash
# The example CI files (conformance/ci-examples/) work as written: each one's check-proxy.sh
# command is taken from the file and run, with the kit at this checkout and build, against
# a server.js that is the node-clean rogue configured by PORT and QWEN_API_BASE, as the
# examples' proxy is. Only a few requirements run (--only is added), to keep it short.
#   ci_examples.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/server.js" <<JS
process.argv.push("--port", process.env.PORT, "--upstream", process.env.QWEN_API_BASE);
await import("file://$root/conformance/rogues/node-clean.mjs");
JS
echo '{"type": "module"}' >"$work/package.json"
cp "$root/conformance/rogues/node-clean.json" "$work/conformance-profile.json"
for example in "$root"/conformance/ci-examples/*.yml; do
    # The command: from "bash /opt/kit/conformance/check-proxy.sh" to "node server.js",
    # continuation backslashes and YAML's folding undone.
    command=$(python3 - "$example" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if "check-proxy.sh" in l and "bash" in l)
words = []
for line in lines[start:]:
    words.append(line.strip().rstrip("\\").strip())
    if line.rstrip().endswith("node server.js"):
        break
print(" ".join(words))
PY
)
    [[ $command == *"check-proxy.sh --build /opt/kit/build"* ]] ||
        { echo "ci_examples: $example: no check-proxy.sh command found: $command" >&2; exit 1; }
    command=${command//\/opt\/kit\/build/$build}
    command=${command//\/opt\/kit/$root}
    command=${command/check-proxy.sh /check-proxy.sh --only AUTH-1,AUTH-3,ERR-5 }
    echo "ci_examples: $(basename "$example"): $command"
    rm -rf "$work/conformance-reports"
    (cd "$work" && bash -c "$command") >"$work/out" 2>&1 ||
        { cat "$work/out"; echo "ci_examples: $example: the command failed" >&2; exit 1; }
    [[ -s $work/conformance-reports/junit.xml ]] ||
        { echo "ci_examples: $example: no conformance-reports/junit.xml to publish" >&2; exit 1; }
    grep -q '^ERR-5 .*PASS' "$work/out" || { cat "$work/out"; exit 1; }
done
echo "ci_examples: ok"
