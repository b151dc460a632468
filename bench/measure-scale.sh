#!/usr/bin/env bash
# bench/measure-scale.sh: twopcd with 10,000 concurrent keep-alive HTTP
# connections against pools of 16 connections per participant (target: no
# errors, throughput within 10 % of the 32-connection figure).
#
# Method: one twopcd (pool_size --pool, max_connections at its default of
# 16384) on the two bench clusters; wrk + bench/transfer.lua, as in
# bench/run, at 32 connections (--duration), then at --connections
# (--long-duration), then at 32 again: the two 32-connection runs bracket
# the big one, so the ratio compares with their mean and their spread
# shows the machine's drift. The open-file limit is raised to the hard
# limit for wrk and twopcd (twopcd raises its own too). After each run the
# script waits until twopcd has nothing in flight (the requests wrk leaves
# behind when it stops still run) and reports twopcd's CPU time (user +
# system from /proc/PID/stat) per transaction finished over run and drain:
# whether the cost per transaction grows with the connections.
#
# With C connections and one request on each, a request waits in twopcd's
# pool queue for about C / throughput seconds (Little's law: 10,000 at
# 2,000 tx/s is 5 s), so each transfer asks for timeout_ms --timeout-ms
# (30000, under max_timeout_ms' default of 60000) and wrk waits as long;
# with bench/run's 5000 the queue alone would time requests out. The big
# run lasts long enough (--long-duration, 30 s) for the queue to fill and
# turn over several times.
#
#   bench/measure-scale.sh [--connections N] [--pool N] [--duration S] [--long-duration S] [--timeout-ms MS]
set -euo pipefail

BENCH_NAME=measure-scale
connections=10000
pool=16
duration=10
long=30
timeout_ms=30000
accounts=10000

while [ "$#" -gt 0 ]; do
    case "$1" in
        --connections) connections=$2; shift 2 ;;
        --pool) pool=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --long-duration) long=$2; shift 2 ;;
        --timeout-ms) timeout_ms=$2; shift 2 ;;
        -h|--help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "measure-scale: unknown argument '$1'" >&2; exit 1 ;;
    esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_build twopcd
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((connections + 100)) ] || die "open-file limit $(ulimit -n) is too low for $connections connections"

echo "== twopcd with $connections concurrent HTTP connections, pool_size $pool"
echo "machine: $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings: 32 connections for $duration s, $connections for $long s, 32 again; timeout_ms $timeout_ms; open-file limit $(ulimit -n)"
bench_setup_clusters "$accounts" >/dev/null
bench_write_conf "$pool"
bench_start_twopcd

declare -A R
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk -v f="${1:-both}" '{ print f == "user" ? $14 : f == "sys" ? $15 : $14 + $15 }' "/proc/$TWOPCD_PID/stat"; }
finished() { curl -s -m 30 "$API/metrics" | awk '/^twopc_transactions_total/ { s += $NF } END { print s + 0 }'; }
# drain: waits until twopcd has nothing in flight (wrk leaves its last
# requests behind when it stops; twopcd still runs them).
drain() {
    for _ in $(seq 1 1200); do
        [ "$(in_flight)" = 0 ] && return 0
        sleep 0.1
    done
    note "twopcd still has transactions in flight after 120 s"
}

# run LABEL CONNECTIONS SECONDS: wrk, then drain; twopcd's CPU time (user +
# system, /proc/PID/stat) per finished transaction over both.
run() {
    local label=$1 c=$2 secs=$3 out="$WORK/wrk-$1.out" key val t0 u0 n0 n
    t0=$(cpu_ticks)
    u0=$(cpu_ticks user)
    n0=$(finished)
    TRANSFER_ACCOUNTS=$accounts TRANSFER_TIMEOUT_MS=$timeout_ms TRANSFER_STATUS_DETAIL=1 \
        wrk -t 2 -c "$c" -d "${secs}s" --timeout "$((timeout_ms / 1000 + 5))s" --latency \
        -s "$BENCH/transfer.lua" "$API" -- "$accounts" >"$out" 2>&1 || true
    grep -q '^transfer\.tx_per_s=' "$out" || { cat "$out" >&2; die "wrk ($label) failed"; }
    while IFS='=' read -r key val; do
        R[$label.${key#transfer.}]=$val
    done < <(grep '^transfer\.[a-z_0-9]*=' "$out")
    [ "$label" != big ] || R[big.peak_rss]=$(awk '/^VmRSS:/ { print $2 }' "/proc/$TWOPCD_PID/status")
    drain
    n=$(($(finished) - n0))
    R[$label.cpu_us]=$(awk -v t="$(($(cpu_ticks) - t0))" -v hz="$HZ" -v n="$n" \
        'BEGIN { x = (n > 0) ? t * 1e6 / hz / n : 0; printf "%.0f", x }')
    R[$label.user_us]=$(awk -v t="$(($(cpu_ticks user) - u0))" -v hz="$HZ" -v n="$n" \
        'BEGIN { x = (n > 0) ? t * 1e6 / hz / n : 0; printf "%.0f", x }')
    printf '%-7s %6s conns  %8s tx/s  p50 %9s ms  p99 %9s ms  twopcd CPU %4s us/tx (user %s)  errors %s (status %s, connect %s, read %s, write %s, timeout %s)%s\n' \
        "$label" "$c" "${R[$label.tx_per_s]}" "${R[$label.p50_ms]}" "${R[$label.p99_ms]}" "${R[$label.cpu_us]}" "${R[$label.user_us]}" "${R[$label.errors]}" \
        "${R[$label.errors_status]}" "${R[$label.errors_connect]}" "${R[$label.errors_read]}" "${R[$label.errors_write]}" \
        "${R[$label.errors_timeout]}" "$(sed -n 's/^transfer\.status_\([0-9]*\)=/\1:/p' "$out" | paste -sd ' ' - | sed 's/^/; HTTP /')"
}

run warmup 32 2 >/dev/null
run before 32 "$duration"
run big "$connections" "$long"
run after 32 "$duration"

alive=yes
kill -0 "$TWOPCD_PID" 2>/dev/null || alive=no
prepared=$(($(sql bank_a "SELECT count(*) FROM pg_prepared_xacts") + $(sql bank_b "SELECT count(*) FROM pg_prepared_xacts")))
echo
awk -v b="${R[before.tx_per_s]}" -v a="${R[after.tx_per_s]}" -v big="${R[big.tx_per_s]}" -v c="$connections" 'BEGIN {
    m = (a + b) / 2
    printf "RATIO %d-connection / 32-connection throughput: %.2f (%.1f / mean of %.1f and %.1f)\n", c, big / m, big, b, a }'
echo "errors at $connections connections: ${R[big.errors]}; twopcd alive: $alive; RSS at the end of that run: ${R[big.peak_rss]} KiB;" \
    "prepared transactions left: $prepared"
echo "twopcd log: $(grep -c -E '^[^ ]+ (WARN|ERROR|FATAL) ' "$TWOPCD_LOG" || true) WARN/ERROR/FATAL line(s)"
grep -E '^[^ ]+ (WARN|ERROR|FATAL) ' "$TWOPCD_LOG" | head -n 5 || true
