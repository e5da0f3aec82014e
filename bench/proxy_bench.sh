#!/usr/bin/env bash
# Throughput and latency of qwen-proxy side by side with nginx and with qwen-mock
# called directly, in one run: several rounds, each target in turn (the order rotates
# from round to round), pinned (servers on CPU 0, wrk on CPU 1) and unpinned; medians
# over the rounds and their ratios in one table (bench/README.md, "Proxy benchmarks").
#
# Usage: bench/proxy_bench.sh [--build DIR] [--rounds N] [--duration S] [--modes LIST]
#                             [--connections N] [--log-off] [--targets LIST] [--raw FILE]
#   --build        build directory with qwen-proxy and qwen-mock (default build-release;
#                  a release build: bash ci/build.sh build-release)
#   --rounds       rounds per mode (default 3)
#   --duration     seconds of each wrk run (default 5)
#   --modes        "pinned unpinned" (default), or one of them
#   --connections  connections of the throughput runs (default 64)
#   --log-off      every server without its log (proxy --log-format off, mock --quiet,
#                  nginx access_log off); by default each writes its default log to a file
#   --targets      "models chat" (default), or one of them: the model-list targets (nginx,
#                  mock, proxy) or the chat targets (64 and 1 connections, mock and proxy)
#   --raw FILE     also write every wrk run as a TSV row to FILE
#
# Needs wrk, nginx (Debian: apt-get install -y wrk nginx-light), taskset, curl, python3.
# Loopback only, free ports; everything it starts is stopped on exit. Builds nothing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build-release"
rounds=3
duration=5
modes="pinned unpinned"
conns=64
log_off=0
raw_out=""
groups="models chat"

die() { echo "proxy_bench: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --build) [ $# -ge 2 ] || die "--build needs a directory"; build=$2; shift 2 ;;
    --rounds) [ $# -ge 2 ] || die "--rounds needs a number"; rounds=$2; shift 2 ;;
    --duration) [ $# -ge 2 ] || die "--duration needs seconds"; duration=$2; shift 2 ;;
    --modes) [ $# -ge 2 ] || die "--modes needs a list"; modes=$2; shift 2 ;;
    --connections) [ $# -ge 2 ] || die "--connections needs a number"; conns=$2; shift 2 ;;
    --log-off) log_off=1; shift ;;
    --targets) [ $# -ge 2 ] || die "--targets needs a list"; groups=$2; shift 2 ;;
    --raw) [ $# -ge 2 ] || die "--raw needs a file"; raw_out=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
for v in "$rounds" "$duration" "$conns"; do
    case "$v" in ''|*[!0-9]*|0) die "'$v' is not a positive number" ;; esac
done
for m in $modes; do
    case "$m" in pinned|unpinned) ;; *) die "unknown mode $m" ;; esac
done
for g in $groups; do
    case "$g" in models|chat) ;; *) die "unknown target group $g" ;; esac
done
proxy="$build/proxy/qwen-proxy"
mock="$build/mockupstream/qwen-mock"
[ -x "$proxy" ] || die "no qwen-proxy at $proxy (bash ci/build.sh build-release)"
[ -x "$mock" ] || die "no qwen-mock at $mock"
for t in wrk nginx taskset curl python3; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
        die "$t is missing (Debian: apt-get install -y wrk nginx-light)"
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
if [ "$(nproc)" -lt 2 ]; then
    echo "proxy_bench: fewer than 2 CPUs: pinned mode skipped" >&2
    modes=unpinned
fi

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_port FILE PID: the port from a "listening on http://127.0.0.1:PORT" line.
wait_port() {
    local i port
    for i in $(seq 1 100); do
        port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$1")
        [ -n "$port" ] && { echo "$port"; return 0; }
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Servers, started once per mode (pinned: taskset -c 0; taskset execs, so $! is the
# server). The mock serves the proxy and the direct runs alike.
start_servers() {
    local mode=$1 pin=() mock_log=() proxy_log=() acc
    [ "$mode" = pinned ] && pin=(taskset -c 0)
    if [ "$log_off" = 1 ]; then
        mock_log=(--quiet)
        proxy_log=(--log-format off)
        acc=off
    else
        acc="$work/nginx-access.log"
    fi
    "${pin[@]}" "$mock" --host 127.0.0.1 --port 0 "${mock_log[@]}" \
        >"$work/mock.out" 2>>"$work/mock.log" &
    mock_pid=$!
    pids+=("$mock_pid")
    mock_port=$(wait_port "$work/mock.out" "$mock_pid") || die "qwen-mock did not start"
    # The proxy with its defaults, but the v1 dialect: the mock direct answers a v1 chat,
    # so both chat columns do the same upstream work (a v2 chat is two upstream requests).
    "${pin[@]}" "$proxy" --listen 127.0.0.1 --port 0 --upstream-dialect v1 \
        --upstream "http://127.0.0.1:$mock_port" "${proxy_log[@]}" \
        >"$work/proxy.out" 2>>"$work/proxy.log" &
    proxy_pid=$!
    pids+=("$proxy_pid")
    proxy_port=$(wait_port "$work/proxy.out" "$proxy_pid") || {
        tail -5 "$work/proxy.log" >&2
        die "qwen-proxy did not start"
    }
    mkdir -p "$work/www/api"
    # nginx started by root serves as nobody: the root must be readable by all.
    chmod a+rx "$work" "$work/www" "$work/www/api"
    curl -sf -H 'Authorization: Bearer bench' "http://127.0.0.1:$mock_port/api/models" \
        >"$work/www/api/models" || die "the mock did not answer GET /api/models"
    chmod a+r "$work/www/api/models"
    nginx_port=$(free_port)
    sed -e "s|@PORT@|$nginx_port|g" -e "s|@ROOT@|$work/www|g" -e "s|@PREFIX@|$work|g" \
        -e "s|@ACCESS_LOG@|$acc|g" "$here/nginx.conf" >"$work/nginx.conf"
    "${pin[@]}" "$nginx_bin" -p "$work" -c "$work/nginx.conf" 2>>"$work/nginx-start.log" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    local i
    for i in $(seq 1 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/api/models" && break
        kill -0 "$nginx_pid" 2>/dev/null || { cat "$work/nginx-start.log" "$work/nginx-error.log" >&2; die "nginx did not start"; }
        sleep 0.05
    done
    # Same bytes everywhere: the cache of the proxy is filled by this first request.
    local ln lm lp lv
    ln=$(curl -sf "http://127.0.0.1:$nginx_port/api/models" | wc -c)
    lm=$(curl -sf -H 'Authorization: Bearer bench' "http://127.0.0.1:$mock_port/api/models" | wc -c)
    lp=$(curl -sf -H 'Authorization: Bearer bench' "http://127.0.0.1:$proxy_port/api/models" | wc -c)
    lv=$(curl -sf -H 'Authorization: Bearer bench' "http://127.0.0.1:$proxy_port/v1/models" | wc -c)
    if [ "$ln" != "$lm" ] || [ "$lm" != "$lp" ] || [ "$ln" -lt 100 ]; then
        die "body lengths differ: nginx $ln, mock $lm, proxy $lp"
    fi
    body_len=$ln
    v1_len=$lv
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer bench' \
        -H 'Content-Type: application/json' --data-binary @"$work/chat.json" \
        "http://127.0.0.1:$proxy_port/api/chat/completions")" = 200 ] ||
        die "a chat through the proxy did not answer 200"
}

stop_servers() {
    local p
    for p in "$nginx_pid" "$proxy_pid" "$mock_pid"; do
        kill "$p" 2>/dev/null
    done
    for p in "$nginx_pid" "$proxy_pid" "$mock_pid"; do
        wait "$p" 2>/dev/null
    done
    pids=()
}

cat >"$work/chat.json" <<'EOF'
{"model":"qwen-max-latest","messages":[{"role":"user","content":"Say hello."}]}
EOF
cat >"$work/get.lua" <<'EOF'
wrk.headers["Authorization"] = "Bearer bench"
EOF
cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer bench"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[$(cat "$work/chat.json")]]
EOF

# cpu_ticks PID: user + system CPU time of the process, all its threads, in clock ticks.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# run_wrk MODE ROUND NAME CONNS URL LUA: one wrk run, one TSV row in $work/raw.tsv, with
# the CPU time the mock and the proxy spent during it.
run_wrk() {
    local mode=$1 round=$2 name=$3 c=$4 url=$5 lua=$6 pin=() threads=2 out m0 p0
    if [ "$mode" = pinned ]; then
        pin=(taskset -c 1)
        threads=1
    fi
    [ "$c" -lt "$threads" ] && threads=$c
    out="$work/wrk-$mode-$round-$name.txt"
    m0=$(cpu_ticks "$mock_pid")
    p0=$(cpu_ticks "$proxy_pid")
    "${pin[@]}" wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$lua" "$url" >"$out" 2>&1
    python3 - "$out" "$mode" "$round" "$name" $(($(cpu_ticks "$mock_pid") - m0)) \
        $(($(cpu_ticks "$proxy_pid") - p0)) "$(getconf CLK_TCK)" >>"$work/raw.tsv" <<'EOF'
import re, sys
path, mode, rnd, name = sys.argv[1:5]
mock_ticks, proxy_ticks, hz = (float(x) for x in sys.argv[5:8])
text = open(path).read()
def us(v, unit):
    return float(v) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[unit]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
lat = {p: us(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = int(bad.group(1)) if bad else 0
if err:
    errors += sum(int(x) for x in err.groups())
if not rps:
    sys.stderr.write("proxy_bench: wrk failed:\n" + text)
    sys.exit(1)
done = re.search(r"(\d+) requests in", text)
n = max(int(done.group(1)), 1) if done else 1
per = lambda ticks: "%.1f" % (ticks / hz * 1e6 / n)
print("\t".join([mode, rnd, name, rps.group(1), "%.0f" % lat.get("50", -1),
                 "%.0f" % lat.get("99", -1), str(errors), per(mock_ticks), per(proxy_ticks)]))
EOF
}

printf 'mode\tround\tname\treq_s\tp50_us\tp99_us\terrors\tmock_cpu_us\tproxy_cpu_us\n' >"$work/raw.tsv"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for mode in $modes; do
    start_servers "$mode"
    echo "== $mode: nginx :$nginx_port, qwen-mock :$mock_port, qwen-proxy :$proxy_port (body $body_len bytes, /v1/models $v1_len)" >&2
    n="http://127.0.0.1:$nginx_port"
    m="http://127.0.0.1:$mock_port"
    p="http://127.0.0.1:$proxy_port"
    targets=()
    case " $groups " in *" models "*)
        targets+=(
            "models_nginx $conns $n/api/models get.lua"
            "models_mock $conns $m/api/models get.lua"
            "models_proxy $conns $p/api/models get.lua"
            "v1models_proxy $conns $p/v1/models get.lua"
        ) ;;
    esac
    case " $groups " in *" chat "*)
        targets+=(
            "chat${conns}_mock $conns $m/api/chat/completions post.lua"
            "chat${conns}_proxy $conns $p/api/chat/completions post.lua"
            "chat1_mock 1 $m/api/chat/completions post.lua"
            "chat1_proxy 1 $p/api/chat/completions post.lua"
        ) ;;
    esac
    count=${#targets[@]}
    for round in $(seq 1 "$rounds"); do
        # Rotate the order so that no target always runs first or last (warm-up, drift).
        for k in $(seq 0 $((count - 1))); do
            set -- ${targets[$(((k + round - 1) % count))]}
            echo "   round $round: $1" >&2
            run_wrk "$mode" "$round" "$1" "$2" "$3" "$work/$4" || exit 1
        done
    done
    stop_servers
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "$raw_out" ] && cp "$work/raw.tsv" "$raw_out"

log_desc="default logs to files (proxy text, mock, nginx access_log)"
[ "$log_off" = 1 ] && log_desc="logs off (proxy --log-format off, mock --quiet, nginx access_log off)"
echo
echo "qwen-proxy benchmarks: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -sr), $(date -u +%Y-%m-%d)"
echo "$rounds rounds x ${duration} s per target and mode; $log_desc; load average $load0 before, $load1 after"
echo "model list $body_len bytes from nginx, qwen-mock and the proxy's cache; proxy with --upstream-dialect v1"
python3 - "$work/raw.tsv" "$conns" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
c = sys.argv[2]
modes = []
for r in rows:
    if r["mode"] not in modes:
        modes.append(r["mode"])
def med(mode, name, key):
    v = [float(r[key]) for r in rows if r["mode"] == mode and r["name"] == name]
    return statistics.median(v) if v else float("nan")
def errs(mode, name):
    return sum(int(r["errors"]) for r in rows if r["mode"] == mode and r["name"] == name)
def spread(mode, name):
    v = [float(r["req_s"]) for r in rows if r["mode"] == mode and r["name"] == name]
    return "%.0f-%.0f" % (min(v), max(v)) if v else "-"
names = [
    ("models_nginx", "GET /api/models, nginx (static file)"),
    ("models_mock", "GET /api/models, qwen-mock direct"),
    ("models_proxy", "GET /api/models, proxy (cached)"),
    ("v1models_proxy", "GET /v1/models, proxy (cached)"),
    ("chat%s_mock" % c, "chat, %s conns, mock direct" % c),
    ("chat%s_proxy" % c, "chat, %s conns, through the proxy" % c),
    ("chat1_mock", "chat, 1 conn, mock direct"),
    ("chat1_proxy", "chat, 1 conn, through the proxy"),
]
print()
print("%-40s %-9s %10s %15s %9s %9s %6s %11s %11s" % ("target", "mode", "req/s", "req/s range",
      "p50 us", "p99 us", "errors", "mock CPU/r", "proxy CPU/r"))
names = [(k, l) for k, l in names if any(r["name"] == k for r in rows)]
have = {k for k, _ in names}
# CPU per request: the mock's on every row but nginx's (through the proxy it answers the
# chats; a cached list never reaches it), the proxy's on the proxy's rows.
def cpu(mode, key, who):
    shown = "nginx" not in key and (who == "mock_cpu_us" or key.endswith("_proxy"))
    return "%.1f us" % med(mode, key, who) if shown else "-"
for mode in modes:
    for key, label in names:
        print("%-40s %-9s %10.0f %15s %9.0f %9.0f %6d %11s %11s" % (label, mode,
              med(mode, key, "req_s"), spread(mode, key), med(mode, key, "p50_us"),
              med(mode, key, "p99_us"), errs(mode, key),
              cpu(mode, key, "mock_cpu_us"), cpu(mode, key, "proxy_cpu_us")))
print()
print("%-58s %s" % ("ratio of medians", "  ".join("%12s" % m for m in modes)))
def line(label, f, *need):
    if not all(n in have for n in need):
        return
    print("%-58s %s" % (label, "  ".join("%12s" % f(m) for m in modes)))
r = lambda a, b: (lambda m: "%.2fx" % (med(m, a, "req_s") / med(m, b, "req_s")))
line("cached /api/models: proxy / nginx", r("models_proxy", "models_nginx"), "models_nginx")
line("cached /api/models: proxy / qwen-mock", r("models_proxy", "models_mock"), "models_mock")
line("cached /v1/models / /api/models (same proxy)", r("v1models_proxy", "models_proxy"),
     "models_proxy")
line("chat at %s conns: proxy / mock direct (req/s)" % c, r("chat%s_proxy" % c, "chat%s_mock" % c),
     "chat1_mock")
# Pinned, the mock and the proxy share CPU 0: once it is busy, a chat through the proxy
# costs the CPU of both, so the ratio cannot pass mock / (mock + proxy) CPU per chat.
def cpu_bound(m):
    both = med(m, "chat%s_proxy" % c, "mock_cpu_us") + med(m, "chat%s_proxy" % c, "proxy_cpu_us")
    if m != "pinned" or not both > 0:
        return "-"  # unpinned, the two do not share one core
    return "%.2fx" % (med(m, "chat%s_mock" % c, "mock_cpu_us") / both)
line("  CPU bound on it: mock CPU/chat direct / (mock + proxy)", cpu_bound, "chat1_mock")
d = lambda a, b, k: (lambda m: "%+.0f us" % (med(m, a, k) - med(m, b, k)))
line("chat at %s conns: added p50 (proxy - direct)" % c,
     d("chat%s_proxy" % c, "chat%s_mock" % c, "p50_us"), "chat1_mock")
line("chat at %s conns: added p99 (proxy - direct)" % c,
     d("chat%s_proxy" % c, "chat%s_mock" % c, "p99_us"), "chat1_mock")
line("chat at 1 conn: added p50 (proxy - direct)", d("chat1_proxy", "chat1_mock", "p50_us"), "chat1_mock")
line("chat at 1 conn: added p99 (proxy - direct)", d("chat1_proxy", "chat1_mock", "p99_us"), "chat1_mock")
bad = sum(int(r["errors"]) for r in rows)
if bad:
    print("\nproxy_bench: %d requests failed (non-2xx or socket errors)" % bad)
    sys.exit(1)
EOF
