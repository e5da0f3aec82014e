#!/usr/bin/env bash
# profiles/template.json names every profile key the suite knows, explains each in
# x-explain, and loads: what qwen-conformance --print-profile prints is the vocabulary.
# Then the same check on a copy missing one explanation must fail, so it can.
#   profile_template.sh QWEN_CONFORMANCE TEMPLATE
set -euo pipefail
suite=$1 template=$2
check() {
    local file=$1 effective
    effective=$("$suite" --print-profile --profile "$file") || return 1
    python3 - "$file" "$effective" <<'PY'
import json, sys
template = json.load(open(sys.argv[1]))
effective = set(json.loads(sys.argv[2]))
documentation = {"profile_version", "description"}
keys = {k for k in template if not k.startswith("x-")}
explained = set(template.get("x-explain", {}))
problems = []
if keys - documentation != effective:
    problems.append("keys not in the template: %s; keys the suite does not know: %s"
                    % (sorted(effective - keys), sorted(keys - documentation - effective)))
if explained != keys:
    problems.append("keys not explained: %s; explanations of no key: %s"
                    % (sorted(keys - explained), sorted(explained - keys)))
for p in problems:
    print("profile template: " + p)
sys.exit(1 if problems else 0)
PY
}
check "$template"
copy=$(mktemp)
trap 'rm -f "$copy"' EXIT
python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); del t["x-explain"]["max_body"]; json.dump(t, open(sys.argv[2],"w"))' \
    "$template" "$copy"
if check "$copy" >/dev/null; then
    echo "profile template: the check passed a copy with max_body unexplained" >&2
    exit 1
fi
echo "profile template: every key named and explained"
