#!/usr/bin/env bash
# Holds N concurrent slow streams open against qwen-mock and reports what the mock
# needed for it: threads (sampled from /proc/PID/status during the run) and memory
# (VmRSS at idle, VmHWM = peak). A baseline run with few streams comes first, each
# run on a fresh mock, so the table shows the thread count staying the same and the
# memory per stream.
#
# Usage: bench/run_mock_streams.sh [--mock PATH] [--load PATH] [--baseline N]
#                                  [--chunks N] [--chunk-delay-ms MS] [N]
#   N           streams of the main run (default 10000)
#   --mock      qwen-mock binary (default build/mockupstream/qwen-mock)
#   --load      load generator   (default build/bench/qwen-bench-load)
#   --baseline  streams of the baseline run (default 100; 0 skips it)
#   --chunks, --chunk-delay-ms   shape of every stream (default 10 x 1000 ms, ~10 s)
#
# Builds nothing. Loopback only. Exits 1 when a run had errors (or the mock did not
# stop cleanly), 2 on a usage or setup problem.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mock="$root/build/mockupstream/qwen-mock"
load="$root/build/bench/qwen-bench-load"
baseline=100
chunks=10
delay_ms=1000
n=10000

die() { echo "run_mock_streams: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
    --mock) [ $# -ge 2 ] || die "--mock needs a path"; mock=$2; shift 2 ;;
    --load) [ $# -ge 2 ] || die "--load needs a path"; load=$2; shift 2 ;;
    --baseline) [ $# -ge 2 ] || die "--baseline needs a number"; baseline=$2; shift 2 ;;
    --chunks) [ $# -ge 2 ] || die "--chunks needs a number"; chunks=$2; shift 2 ;;
    --chunk-delay-ms) [ $# -ge 2 ] || die "--chunk-delay-ms needs a number"; delay_ms=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) n=$1; shift ;;
    esac
done
for v in "$n" "$baseline" "$chunks" "$delay_ms"; do
    case "$v" in ''|*[!0-9]*) die "'$v' is not a number" ;; esac
done
[ "$n" -ge 1 ] || die "N must be at least 1"
[ -x "$mock" ] || die "no qwen-mock at $mock (build it, or pass --mock PATH)"
[ -x "$load" ] || die "no load generator at $load (build target qwen-bench-load, or pass --load PATH)"
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt $((n + 64)) ]; then
    die "$n streams need about $((n + 64)) descriptors per process; ulimit -Hn is $hard"
fi

work=$(mktemp -d)
mock_pid=""
sampler_pid=""
load_pid=""
cleanup() {
    [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null && wait "$sampler_pid" 2>/dev/null
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime of the process, in clock ticks.
cpu_ticks() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    rest=${stat##*) }            # fields from 3 on; the command name may hold spaces
    set -- $rest
    echo $(( ${12} + ${13} ))    # fields 14 and 15
}

# status_line PID: "threads vmrss_kb vmhwm_kb" from /proc/PID/status, without forking.
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

# sampler PID PORT OUT: every 100 ms, the mock's threads/RSS; every 500 ms, the
# streams it reports open on /__mock/health (when curl is there).
sampler() {
    local pid=$1 port=$2 out=$3 i=0 line h
    while line=$(status_line "$pid"); do
        echo "S $line" >>"$out"
        if [ $((i % 5)) -eq 0 ] && command -v curl >/dev/null; then
            h=$(curl -s --max-time 1 "http://127.0.0.1:$port/__mock/health") &&
                echo "H $h" >>"$out"
        fi
        i=$((i + 1))
        sleep 0.1
    done
}

# field NAME LINE: the value of NAME=value in LINE.
field() { sed -n "s/.*\\b$1=\\([-0-9]*\\).*/\\1/p" <<<"$2"; }

failed=0
# run_one N TAG: fills the r_TAG_* variables.
run_one() {
    local count=$1 tag=$2 out="$work/mock-$1.out" samples="$work/samples-$1.txt" port i
    : >"$samples"
    "$mock" --host 127.0.0.1 --port 0 --quiet --idle-check-ms 1000 >"$out" 2>"$work/mock-$1.err" &
    mock_pid=$!
    port=""
    for i in $(seq 1 100); do
        port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$out")
        [ -n "$port" ] && break
        kill -0 "$mock_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        cat "$work/mock-$1.err" >&2
        die "qwen-mock did not start"
    fi
    local idle cpu0 cpu1 res rc final stop_rc
    idle=$(status_line "$mock_pid")
    cpu0=$(cpu_ticks "$mock_pid")
    sampler "$mock_pid" "$port" "$samples" &
    sampler_pid=$!

    echo "== $count streams (${chunks} events x ${delay_ms} ms each) against qwen-mock pid $mock_pid port $port" >&2
    # In the background, so that a signal reaches the trap at once.
    "$load" --host 127.0.0.1 --port "$port" -n "$count" --chunks "$chunks" \
        --chunk-delay-ms "$delay_ms" --progress >"$work/load-$1.out" 2>&1 &
    load_pid=$!
    wait "$load_pid"
    rc=$?
    load_pid=""
    res=$(tail -1 "$work/load-$1.out")
    cat "$work/load-$1.out" >&2

    final=$(status_line "$mock_pid") || final=""
    cpu1=$(cpu_ticks "$mock_pid")
    kill "$sampler_pid" 2>/dev/null
    wait "$sampler_pid" 2>/dev/null
    sampler_pid=""
    [ -n "$final" ] && echo "S $final" >>"$samples"

    kill -TERM "$mock_pid" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$mock_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$mock_pid" 2>/dev/null; then
        echo "run_mock_streams: qwen-mock did not stop within 10 s of SIGTERM" >&2
        kill -KILL "$mock_pid" 2>/dev/null
        failed=1
    fi
    wait "$mock_pid"
    stop_rc=$?
    mock_pid=""
    if [ "$stop_rc" -ne 0 ]; then
        echo "run_mock_streams: qwen-mock exited with status $stop_rc" >&2
        tail -5 "$work/mock-$1.err" >&2
        failed=1
    fi
    if [ "$rc" -ne 0 ] || [ -z "$res" ]; then
        echo "run_mock_streams: the load generator reported errors (exit $rc)" >&2
        failed=1
    fi

    local th_min th_max hwm idle_rss streams_max
    read -r th_min th_max hwm < <(awk '$1=="S" { if (min=="" || $2<min) min=$2;
        if ($2>max) max=$2; if ($4>hwm) hwm=$4 } END { print min+0, max+0, hwm+0 }' "$samples")
    streams_max=$(sed -n 's/^H .*"streams":\([0-9]*\).*/\1/p' "$samples" | sort -n | tail -1)
    idle_rss=$(awk '{print $2}' <<<"$idle")
    eval "r_${tag}_req=\$count"
    eval "r_${tag}_held=\$(field held_peak \"\$res\")"
    eval "r_${tag}_srv=\${streams_max:--}"
    eval "r_${tag}_done=\$(field completed \"\$res\")"
    eval "r_${tag}_err=\$(field errors \"\$res\")"
    eval "r_${tag}_thr=\$th_min/\$th_max"
    eval "r_${tag}_idle=\$(awk -v k=\$idle_rss 'BEGIN{printf \"%.1f\", k/1024}')"
    eval "r_${tag}_peak=\$(awk -v k=\$hwm 'BEGIN{printf \"%.1f\", k/1024}')"
    eval "r_${tag}_per=\$(awk -v h=\$hwm -v i=\$idle_rss -v n=\$count 'BEGIN{printf \"%.1f\", (h-i)/n}')"
    eval "r_${tag}_cpu=\$(awk -v a=\$cpu0 -v b=\$cpu1 -v t=\$clk_tck 'BEGIN{printf \"%.2f\", (b-a)/t}')"
    eval "r_${tag}_ramp=\$(awk -v m=\$(field ramp_ms \"\$res\") 'BEGIN{printf \"%.2f\", m/1000}')"
    eval "r_${tag}_wall=\$(awk -v m=\$(field elapsed_ms \"\$res\") 'BEGIN{printf \"%.2f\", m/1000}')"
}

tags=""
if [ "$baseline" -gt 0 ]; then
    run_one "$baseline" base
    tags="base"
fi
run_one "$n" main
tags="$tags main"

row() {
    local label=$1 key=$2 t v
    printf '%-38s' "$label"
    for t in $tags; do
        eval "v=\${r_${t}_${key}:-?}"
        printf '%14s' "$v"
    done
    printf '\n'
}
echo
echo "qwen-mock under concurrent slow streams: $(nproc) CPUs, $(uname -sr), ulimit -Hn $hard,"
echo "each stream ${chunks} events ${delay_ms} ms apart; mock run with --idle-check-ms 1000"
row "" req | sed 's/[0-9][0-9]*/N=&/g'
row "streams requested" req
row "streams held concurrently (client)" held
row "streams open in the mock (peak)" srv
row "completed with data: [DONE]" done
row "errors" err
row "mock threads (min/max during run)" thr
row "mock RSS at idle (MB)" idle
row "mock peak RSS, VmHWM (MB)" peak
row "peak RSS over idle per stream (KB)" per
row "mock CPU time (s)" cpu
row "ramp-up: all streams answered (s)" ramp
row "wall time of the load (s)" wall
exit "$failed"
