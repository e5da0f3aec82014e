#!/usr/bin/env bash
# Starts qwen-mock on a free port, shows a streamed answer and a scripted fault,
# then stops it.   ci/demo-mock.sh [PATH/TO/qwen-mock]   (default: build/mockupstream/qwen-mock,
# what ci/quickstart.sh builds)
set -euo pipefail
mock=${1:-$(cd "$(dirname "$0")/.." && pwd)/build/mockupstream/qwen-mock}
[ -x "$mock" ] || { echo "demo-mock.sh: no $mock: build first (bash ci/quickstart.sh)" >&2; exit 2; }
out=$(mktemp)
"$mock" --port 0 --quiet >"$out" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q '^listening on ' "$out" && break; sleep 0.05; done
url=$(sed -n 's/^listening on //p' "$out")
[ -n "$url" ] || { echo "qwen-mock did not start" >&2; exit 1; }
echo "== qwen-mock $url"
echo "== streamed completion (cumulative deltas, as the v1 upstream sends them)"
curl -sSN --max-time 10 -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' \
  -d '{"model":"qwen-plus-latest","messages":[{"role":"user","content":"你好"}],"stream":true}' \
  "$url/api/chat/completions"
echo "== scripted fault: the next chat request from demo-token gets a 502 gateway page"
curl -sS --max-time 5 -d '{"token":"demo-token","route":"chat","steps":[{"html":"gateway"}]}' \
  "$url/__mock/scenarios"; echo
curl -sS --max-time 5 -o /dev/null -w 'status %{http_code}, %{content_type}\n' \
  -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' \
  -d '{"model":"qwen-plus-latest","messages":[{"role":"user","content":"hi"}]}' \
  "$url/api/chat/completions"
echo "== journal: $(curl -sS --max-time 5 "$url/__mock/journal?token=demo-token" | grep -o '"status":[0-9]*' | tr '\n' ' ')"
