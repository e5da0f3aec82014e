#!/usr/bin/env bash
# GET /metrics as Prometheus users meet it, and /readyz as a load balancer does: after some traffic through qwen-proxy (cached
# and uncached model lists, a chat, a stream, a refused request), promtool check metrics
# accepts the text, the counters say what happened, and a real Prometheus server (Debian's
# prometheus) scrapes the proxy on loopback and answers a query for one of its series.
#   prometheus.sh QWEN_MOCK QWEN_PROXY
set -euo pipefail
mock_bin=$1 proxy_bin=$2
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "prometheus: $*" >&2
    [[ ! -s $work/metrics.txt ]] || { echo "--- /metrics:" >&2; cat "$work/metrics.txt" >&2; }
    exit 1
}
for tool in promtool prometheus curl; do
    command -v "$tool" >/dev/null || fail "no $tool (ci/install-deps.sh installs Debian's prometheus)"
done
url_of() { # FILE: the URL of its "listening on URL" line, once there
    for _ in $(seq 100); do
        sed -n 's/^listening on \(http[^ ]*\).*/\1/p;T;q' "$1" | grep . && return 0
        sleep 0.1
    done
    return 1
}
"$mock_bin" --port 0 --quiet >"$work/mock.out" 2>&1 &
pids+=($!)
mock=$(url_of "$work/mock.out") || fail "qwen-mock did not start"
"$proxy_bin" --port 0 --upstream "$mock" --upstream-dialect v1 --retry-base-ms 5 \
    >"$work/proxy.out" 2>"$work/proxy.err" &
pids+=($!)
proxy=$(url_of "$work/proxy.out") || fail "qwen-proxy did not start"

auth=(-H 'Authorization: Bearer prom-token')
chat='{"model":"qwen-plus-latest","messages":[{"role":"user","content":"hi"}]}'
stream='{"model":"qwen-plus-latest","messages":[{"role":"user","content":"hi"}],"stream":true}'
curl -fsS "${auth[@]}" "$proxy/api/models" >/dev/null
curl -fsS "${auth[@]}" "$proxy/api/models" >/dev/null
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -d "$chat" "$proxy/api/chat/completions" >/dev/null
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -d "$stream" "$proxy/api/chat/completions" >/dev/null
curl -sS -o /dev/null "$proxy/api/models" # no Authorization: 401
curl -fsS -d '{"token":"prom-token","route":"chat","steps":[{"status":500}]}' "$mock/__mock/scenarios" >/dev/null
curl -fsS "${auth[@]}" -H 'Content-Type: application/json' -d "$chat" "$proxy/api/chat/completions" >/dev/null

headers=$(curl -fsS -D - -o "$work/metrics.txt" "$proxy/metrics") || fail "GET /metrics failed"
grep -qi '^content-type: text/plain; version=0.0.4' <<<"$headers" ||
    fail "GET /metrics: not Prometheus's text format: $headers"
promtool check metrics <"$work/metrics.txt" || fail "promtool check metrics rejects the text"
value() { # SERIES: its value in metrics.txt
    awk -v s="$1" '$1 == s {print $2; found=1} END {exit !found}' "$work/metrics.txt" ||
        fail "no series $1"
}
expect() { # SERIES VALUE
    [[ $(value "$1") == "$2" ]] || fail "$1 is $(value "$1"), expected $2"
}
expect 'qwen_proxy_requests_total{route="models",status="200"}' 2
expect 'qwen_proxy_requests_total{route="models",status="401"}' 1
expect 'qwen_proxy_requests_total{route="chat",status="200"}' 3
expect 'qwen_proxy_cache_requests_total{result="hit"}' 1
expect 'qwen_proxy_cache_requests_total{result="miss"}' 1
expect 'qwen_proxy_upstream_attempts_total{route="chat"}' 4
expect 'qwen_proxy_upstream_failures_total{cause="status"}' 1
expect 'qwen_proxy_upstream_retries_total{cause="status"}' 1
expect 'qwen_proxy_streams_total' 1
expect 'qwen_proxy_streams_active' 0
expect 'qwen_proxy_stream_first_event_seconds_count' 1
expect 'qwen_proxy_upstream_duration_seconds_count{route="chat"}' 4

# Readiness follows the upstream: a request whose every attempt failed makes /readyz 503
# until an attempt succeeds again; /healthz stays 200 throughout.
status_of() { curl -sS -o "$work/probe.json" -w '%{http_code}' "$proxy$1"; }
[[ $(status_of /readyz) == 200 ]] || fail "/readyz before any failure: $(cat "$work/probe.json")"
curl -fsS -d '{"token":"prom-down","route":"models","steps":[{"status":500},{"status":500},{"status":500},{"status":500}]}' \
    "$mock/__mock/scenarios" >/dev/null
curl -sS -o /dev/null -H 'Authorization: Bearer prom-down' "$proxy/api/models"
[[ $(status_of /readyz) == 503 ]] && grep -q 'upstream failing' "$work/probe.json" ||
    fail "/readyz after the upstream failed: $(cat "$work/probe.json")"
[[ $(status_of /healthz) == 200 ]] || fail "/healthz while the upstream fails"
curl -fsS -H 'Authorization: Bearer prom-up' "$proxy/api/models" >/dev/null
[[ $(status_of /readyz) == 200 ]] || fail "/readyz after the upstream answered: $(cat "$work/probe.json")"

# A Prometheus server scrapes it every second; its query API must see the proxy's series
# (three model lists answered 200 by now: two for prom-token, one for prom-up).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target=${proxy#http://}
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: qwen-proxy
    static_configs:
      - targets: ["$target"]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
query='qwen_proxy_requests_total{route="models",status="200"}'
answer=
for _ in $(seq 300); do
    answer=$(curl -fsS --get --data-urlencode "query=$query" "http://127.0.0.1:$port/api/v1/query" 2>/dev/null) || answer=
    grep -q '"value":\[[0-9.]*,"3"\]' <<<"$answer" && break
    sleep 0.1
done
grep -q '"value":\[[0-9.]*,"3"\]' <<<"$answer" || {
    tail -n 20 "$work/prometheus.log" >&2
    fail "Prometheus did not answer $query with 3 within 30 s: $answer"
}
echo "prometheus: /metrics passes promtool, and Prometheus scraped it: $query = 3"
