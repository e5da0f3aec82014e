#!/usr/bin/env bash
# Starts qwen-mock and qwen-proxy on free loopback ports and runs check.mjs, which
# drives the proxy through the official `openai` npm package.
#   ci/openai-node/run.sh PATH/TO/qwen-mock PATH/TO/qwen-proxy
set -euo pipefail
mock_bin=${1:?usage: run.sh QWEN_MOCK QWEN_PROXY}
proxy_bin=${2:?usage: run.sh QWEN_MOCK QWEN_PROXY}
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
"$proxy_bin" --port 0 --upstream "$mock_url" --log-format off --retry-base-ms 5 \
  >"$tmp/proxy.out" 2>"$tmp/proxy.err" &
pids+=($!)
proxy_url=$(wait_url "$tmp/proxy.out")
node "$here/check.mjs" --proxy "$proxy_url" --mock "$mock_url"
