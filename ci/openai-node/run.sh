#!/usr/bin/env bash
# Starts qwen-mock and qwen-proxy on free loopback ports and runs check.mjs, which
# drives the proxy through the official `openai` npm package, with the proxy speaking the
# upstream dialect DIALECT to the mock (v1 or v2; the proxy's default when not given).
#   ci/openai-node/run.sh PATH/TO/qwen-mock PATH/TO/qwen-proxy [DIALECT]
set -euo pipefail
mock_bin=${1:?usage: run.sh QWEN_MOCK QWEN_PROXY}
proxy_bin=${2:?usage: run.sh QWEN_MOCK QWEN_PROXY}
dialect=${3:-}
dialect_args=()
[ -z "$dialect" ] || dialect_args=(--upstream-dialect "$dialect")
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

wait_url() { # FILE -> prints the URL of a "listening on URL" line
  for _ in $(seq 200); do
    if grep -q '^listening on ' "$1"; then sed -n 's/^listening on //p' "$1"; return 0; fi
    sleep 0.05
  done
  echo "no 'listening on' line in $1" >&2
  return 1
}

if [ ! -d "$here/node_modules/openai" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi

"$mock_bin" --port 0 --quiet >"$tmp/mock.out" 2>"$tmp/mock.err" &
pids+=($!)
mock_url=$(wait_url "$tmp/mock.out")
"$proxy_bin" --port 0 --upstream "$mock_url" "${dialect_args[@]}" --log-format off \
  --retry-base-ms 5 >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
pids+=($!)
proxy_url=$(wait_url "$tmp/proxy.out")
node "$here/check.mjs" --proxy "$proxy_url" --mock "$mock_url" --dialect "${dialect:-default}"
