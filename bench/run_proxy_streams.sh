#!/usr/bin/env bash
# Holds N concurrent slow streams through qwen-proxy (in front of qwen-mock) and reports
# what the proxy needed for it and how late the events came: held at once, delivered,
# errors, the proxy's threads and memory (per stream against a 100-stream baseline run
# in the same invocation), CPU time, and per-event lag against the scripted pacing.
# Every run starts a fresh mock and a fresh proxy (bench/README.md, "Streams through
# the proxy").
#
# Usage: bench/run_proxy_streams.sh [--build DIR] [--baseline N] [--chunks N]
#                                   [--chunk-delay-ms MS] [--proxy-arg ARG]... [N...]
#   N...            streams of the main runs (default 1000 5000 9900)
#   --build         build directory (default build-release; qwen-proxy, qwen-mock and
#                   bench/qwen-bench-load)
#   --baseline      streams of the baseline run (default 100; 0 skips it)
#   --chunks, --chunk-delay-ms   shape of every stream (default 10 x 1000 ms, ~10 s)
#   --proxy-arg     one more argument for qwen-proxy (repeatable)
#
# The proxy runs with its defaults and default log (text, to a file) except
# --upstream-dialect v1 (one upstream stream per caller, events relayed one for one),
# --max-connections N+100 and --max-connections-per-client N+100 (every caller comes
# from 127.0.0.1). Builds nothing. Loopback only. Exits 1 when a run had errors or a
# server did not stop cleanly, 2 on a usage or setup problem.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build-release"
baseline=100
chunks=10
delay_ms=1000
counts=""
proxy_args=()

die() { echo "run_proxy_streams: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --build) [ $# -ge 2 ] || die "--build needs a directory"; build=$2; shift 2 ;;
    --baseline) [ $# -ge 2 ] || die "--baseline needs a number"; baseline=$2; shift 2 ;;
    --chunks) [ $# -ge 2 ] || die "--chunks needs a number"; chunks=$2; shift 2 ;;
    --chunk-delay-ms) [ $# -ge 2 ] || die "--chunk-delay-ms needs a number"; delay_ms=$2; shift 2 ;;
    --proxy-arg) [ $# -ge 2 ] || die "--proxy-arg needs a value"; proxy_args+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) counts="$counts $1"; shift ;;
    esac
done
[ -n "$counts" ] || counts="1000 5000 9900"
for v in $counts "$baseline" "$chunks" "$delay_ms"; do
    case "$v" in ''|*[!0-9]*) die "'$v' is not a number" ;; esac
done
mock="$build/mockupstream/qwen-mock"
proxy="$build/proxy/qwen-proxy"
load="$build/bench/qwen-bench-load"
[ -x "$mock" ] || die "no qwen-mock at $mock"
[ -x "$proxy" ] || die "no qwen-proxy at $proxy"
[ -x "$load" ] || die "no load generator at $load (build target qwen-bench-load)"
hard=$(ulimit -Hn)
max_n=0
for v in $counts; do [ "$v" -gt "$max_n" ] && max_n=$v; done
if [ "$hard" != unlimited ] && [ "$hard" -lt $((2 * max_n + 64)) ]; then
    echo "run_proxy_streams: $max_n streams need about $((2 * max_n + 64)) descriptors in the proxy; ulimit -Hn is $hard" >&2
fi
# The proxy raises its soft limit itself; raise it here too, for the programs started.
ulimit -n "$hard" 2>/dev/null

work=$(mktemp -d)
mock_pid=""
proxy_pid=""
sampler_pid=""
load_pid=""
cleanup() {
    local p
    for p in "$load_pid" "$sampler_pid" "$proxy_pid" "$mock_pid"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

clk_tck=$(getconf CLK_TCK)

cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    rest=${stat##*) }
    set -- $rest
    echo $(( ${12} + ${13} ))
}

# thread_ticks PID: "server other" CPU ticks of the proxy's threads: libmicrohttpd's server
# threads (named MHD-worker) and the rest (the upstream loop, the watchdog, main).
thread_ticks() {
    local t stat rest comm srv=0 oth=0
    for t in /proc/"$1"/task/*; do
        stat=$(cat "$t/stat" 2>/dev/null) || continue
        comm=$(cat "$t/comm" 2>/dev/null)
        rest=${stat##*) }
        set -- $rest
        if [ "$comm" = MHD-worker ]; then
            srv=$((srv + ${12} + ${13}))
        else
            oth=$((oth + ${12} + ${13}))
        fi
    done
    echo "$srv $oth"
}

# status_line PID: "threads vmrss_kb vmhwm_kb" from /proc/PID/status.
status_line() {
    local k v rest th=0 rss=0 hwm=0
    while read -r k v rest; do
        case "$k" in
        Threads:) th=$v ;;
        VmRSS:) rss=$v ;;
        VmHWM:) hwm=$v ;;
        esac
    done <"/proc/$1/status" || return 1
    echo "$th $rss $hwm"
}

sampler() {
    local pid=$1 out=$2 line
    while line=$(status_line "$pid"); do
        echo "S $line" >>"$out"
        sleep 0.1
    done
}

wait_port() {
    local i port
    for i in $(seq 1 200); do
        port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$1")
        [ -n "$port" ] && { echo "$port"; return 0; }
        kill -0 "$2" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

# stop PID NAME: SIGTERM, at most 30 s (the proxy drains), then the exit status.
stop() {
    local pid=$1 name=$2 i rc
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "run_proxy_streams: $name did not stop within 30 s of SIGTERM" >&2
        kill -KILL "$pid" 2>/dev/null
        failed=1
    fi
    wait "$pid"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "run_proxy_streams: $name exited with status $rc" >&2
        failed=1
    fi
}

field() { sed -n "s/.*\\b$1=\\([-0-9]*\\).*/\\1/p" <<<"$2"; }
ms() { awk -v u="$1" 'BEGIN { if (u < 0) print "-"; else printf "%.1f", u / 1000 }'; }

failed=0
run_one() {
    local count=$1 tag=$2 samples="$work/samples-$1.txt" mport pport limit=$(($1 + 100))
    : >"$samples"
    "$mock" --host 127.0.0.1 --port 0 --quiet --idle-check-ms 1000 \
        >"$work/mock-$1.out" 2>"$work/mock-$1.err" &
    mock_pid=$!
    mport=$(wait_port "$work/mock-$1.out" "$mock_pid") || die "qwen-mock did not start"
    "$proxy" --listen 127.0.0.1 --port 0 --upstream-dialect v1 \
        --upstream "http://127.0.0.1:$mport" --max-connections "$limit" \
        --max-connections-per-client "$limit" "${proxy_args[@]}" \
        >"$work/proxy-$1.out" 2>"$work/proxy-$1.err" &
    proxy_pid=$!
    pport=$(wait_port "$work/proxy-$1.out" "$proxy_pid") || {
        tail -5 "$work/proxy-$1.err" >&2
        die "qwen-proxy did not start"
    }
    local idle cpu0 cpu1 th0 th1 res rc final
    idle=$(status_line "$proxy_pid")
    cpu0=$(cpu_ticks "$proxy_pid")
    th0=$(thread_ticks "$proxy_pid")
    sampler "$proxy_pid" "$samples" &
    sampler_pid=$!
    echo "== $count streams (${chunks} events x ${delay_ms} ms) through qwen-proxy :$pport to qwen-mock :$mport" >&2
    grep -h 'max-connections' "$work/proxy-$1.err" >&2
    "$load" --host 127.0.0.1 --port "$pport" --control-port "$mport" -n "$count" \
        --chunks "$chunks" --chunk-delay-ms "$delay_ms" --token-prefix "ps$count-" \
        --progress >"$work/load-$1.out" 2>&1 &
    load_pid=$!
    wait "$load_pid"
    rc=$?
    load_pid=""
    res=$(tail -1 "$work/load-$1.out")
    tail -4 "$work/load-$1.out" >&2
    final=$(status_line "$proxy_pid") || final=""
    cpu1=$(cpu_ticks "$proxy_pid")
    th1=$(thread_ticks "$proxy_pid")
    kill "$sampler_pid" 2>/dev/null
    wait "$sampler_pid" 2>/dev/null
    sampler_pid=""
    [ -n "$final" ] && echo "S $final" >>"$samples"
    stop "$proxy_pid" qwen-proxy
    proxy_pid=""
    stop "$mock_pid" qwen-mock
    mock_pid=""
    if [ "$rc" -ne 0 ] || [ -z "$res" ]; then
        echo "run_proxy_streams: the load generator reported errors (exit $rc)" >&2
        failed=1
    fi
    local th_min th_max hwm idle_rss n503
    read -r th_min th_max hwm < <(awk '$1=="S" { if (min=="" || $2<min) min=$2;
        if ($2>max) max=$2; if ($4>hwm) hwm=$4 } END { print min+0, max+0, hwm+0 }' "$samples")
    idle_rss=$(awk '{print $2}' <<<"$idle")
    n503=$(grep -c 'status=503' "$work/proxy-$1.err")
    eval "r_${tag}_req=\$count"
    eval "r_${tag}_held=\$(field held_peak \"\$res\")"
    eval "r_${tag}_done=\$(field completed \"\$res\")"
    eval "r_${tag}_err=\$(field errors \"\$res\")"
    eval "r_${tag}_errk=\$(field err_connect \"\$res\")/\$(field err_status \"\$res\")/\$(field err_closed \"\$res\")/\$(field err_timeout \"\$res\")"
    eval "r_${tag}_n503=\$n503"
    eval "r_${tag}_thr=\$th_min/\$th_max"
    eval "r_${tag}_idlek=\$idle_rss"
    eval "r_${tag}_hwmk=\$hwm"
    eval "r_${tag}_idle=\$(awk -v k=\$idle_rss 'BEGIN{printf \"%.1f\", k/1024}')"
    eval "r_${tag}_peak=\$(awk -v k=\$hwm 'BEGIN{printf \"%.1f\", k/1024}')"
    eval "r_${tag}_per=\$(awk -v h=\$hwm -v i=\$idle_rss -v n=\$(field held_peak \"\$res\") 'BEGIN{if (n > 0) printf \"%.1f\", (h-i)/n; else print \"-\"}')"
    eval "r_${tag}_cpu=\$(awk -v a=\$cpu0 -v b=\$cpu1 -v t=\$clk_tck 'BEGIN{printf \"%.2f\", (b-a)/t}')"
    local a1 a2 b1 b2 srv_s oth_s
    read -r a1 a2 <<<"$th0"
    read -r b1 b2 <<<"$th1"
    srv_s=$(awk -v d=$((b1 - a1)) -v t="$clk_tck" 'BEGIN { printf "%.2f", d / t }')
    oth_s=$(awk -v d=$((b2 - a2)) -v t="$clk_tck" 'BEGIN { printf "%.2f", d / t }')
    eval "r_${tag}_cpusrv=\$srv_s"
    eval "r_${tag}_cpuoth=\$oth_s"
    eval "r_${tag}_first50=\$(ms \$(field first_p50_us \"\$res\"))"
    eval "r_${tag}_first99=\$(ms \$(field first_p99_us \"\$res\"))"
    eval "r_${tag}_exc50=\$(ms \$(field excess_p50_us \"\$res\"))"
    eval "r_${tag}_exc99=\$(ms \$(field excess_p99_us \"\$res\"))"
    eval "r_${tag}_lag50=\$(ms \$(field lag_p50_us \"\$res\"))"
    eval "r_${tag}_lag99=\$(ms \$(field lag_p99_us \"\$res\"))"
    eval "r_${tag}_lagmax=\$(ms \$(field lag_max_us \"\$res\"))"
    eval "r_${tag}_stall=\$(ms \$((\$(field gap_max_us \"\$res\") - delay_ms * 1000)))"
    eval "r_${tag}_sexc99=\$(ms \$(field steady_excess_p99_us \"\$res\"))"
    eval "r_${tag}_sstall=\$(ms \$((\$(field steady_gap_max_us \"\$res\") - delay_ms * 1000)))"
    eval "r_${tag}_ramp=\$(awk -v m=\$(field ramp_ms \"\$res\") 'BEGIN{printf \"%.2f\", m/1000}')"
    eval "r_${tag}_wall=\$(awk -v m=\$(field elapsed_ms \"\$res\") 'BEGIN{printf \"%.2f\", m/1000}')"
}

tags=""
if [ "$baseline" -gt 0 ]; then
    run_one "$baseline" base
    tags="base"
fi
i=0
for c in $counts; do
    run_one "$c" "m$i"
    tags="$tags m$i"
    i=$((i + 1))
done
# Memory per stream against the baseline run: (peak_N - peak_base) / (held_N - held_base),
# streams held at once: those the peak was reached with.
for t in $tags; do
    if [ "$baseline" -gt 0 ] && [ "$t" != base ]; then
        eval "h=\$r_${t}_hwmk; n=\$r_${t}_held"
        eval "r_${t}_perb=\$(awk -v h=$h -v b=\$r_base_hwmk -v n=$n -v nb=\$r_base_held 'BEGIN{if (n > nb) printf \"%.1f\", (h-b)/(n-nb); else print \"-\"}')"
    else
        eval "r_${t}_perb=-"
    fi
done

row() {
    local label=$1 key=$2 t v
    printf '%-44s' "$label"
    for t in $tags; do
        eval "v=\${r_${t}_${key}:-?}"
        printf '%12s' "$v"
    done
    printf '\n'
}
echo
echo "qwen-proxy under concurrent slow streams: $(nproc) CPUs, $(uname -sr), ulimit -Hn $hard, $(date -u +%Y-%m-%d)"
echo "each stream ${chunks} events ${delay_ms} ms apart, --upstream-dialect v1; load average $(cut -d' ' -f1-3 /proc/loadavg)"
row "" req | sed 's/[0-9][0-9]*/N=&/g'
row "streams held at once (client)" held
row "completed with data: [DONE]" done
row "errors" err
row "  connect/status/closed/timeout" errk
row "  503 in the proxy's log" n503
row "proxy threads (min/max)" thr
row "proxy RSS at idle (MiB)" idle
row "proxy peak RSS, VmHWM (MiB)" peak
row "peak over idle per held stream (KiB)" per
row "per held stream over the baseline (KiB)" perb
row "proxy CPU time (s)" cpu
row "  of it server threads (MHD-worker)" cpusrv
row "  of it the loop, watchdog and main" cpuoth
row "first event after the request, p50 (ms)" first50
row "first event after the request, p99 (ms)" first99
row "event added delay (gap - pacing), p50 (ms)" exc50
row "event added delay (gap - pacing), p99 (ms)" exc99
row "event lag behind the schedule, p50 (ms)" lag50
row "event lag behind the schedule, p99 (ms)" lag99
row "event lag behind the schedule, max (ms)" lagmax
row "longest stall: max gap - delay (ms)" stall
row "after the ramp-up: added delay p99 (ms)" sexc99
row "after the ramp-up: longest stall (ms)" sstall
row "ramp-up: all streams answered (s)" ramp
row "wall time of the load (s)" wall
exit "$failed"
