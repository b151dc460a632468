#!/usr/bin/env bash
# bench/measure-memory.sh: twopcd's memory: idle RSS after start (target: at
# most 8 MiB) and RSS growth per in-flight transaction (target: at most
# 2 KiB).
#
# Method, for each N of --counts, --runs times, each time with a fresh
# twopcd on the same two clusters:
#   1. start twopcd; idle RSS = VmRSS from /proc/PID/status once /healthz
#      answers (pools connected, nothing else done), and its split into
#      RssAnon (heap, stacks) and RssFile (binary, shared libraries);
#   2. warm-up: 200 transfers over 2 x pool_size connections (curl), so
#      that every pool connection is open (pools open them on demand) and every
#      lazily allocated buffer exists; then RSS_0;
#   3. a separate session on bank_a locks every row of accounts (SELECT ...
#      FOR UPDATE, then pg_sleep);
#   4. bench/twopc-hold opens N HTTP connections and sends one transfer on
#      each (random accounts, timeout_ms 600000); they all stay in flight:
#      pool_size branches wait on the row locks, the others wait in the pool
#      queue for a connection. Once GET /healthz says in_flight = N: RSS_N;
#   5. the lock is released (pg_cancel_backend), every transfer commits;
#      twopc-hold reports the statuses (all should be 200).
# Growth per in-flight transaction = (RSS_N - RSS_0) / N. It includes the
# HTTP connection each in-flight request needs (one request per keep-alive
# connection at a time), so the same is measured with N idle connections
# (twopc-hold -i, no request) on another fresh twopcd: (RSS_conn - RSS_0) / N
# is a connection's share, the difference the transaction's own.
#
# Configuration for this: lock_timeout_ms and max_timeout_ms raised to
# 600000 (else the waiting branches give up after 1 s); max_in_flight
# stays at its default of 10000 (above every N here); pool_size --pool (16,
# as in bench/run). RSS counts pages touched: glibc keeps freed memory, so
# each measurement starts from a fresh process.
#
#   bench/measure-memory.sh [--counts "1000 5000"] [--runs N] [--pool N]
set -euo pipefail

BENCH_NAME=measure-memory
counts="1000 5000"
runs=2
pool=16
accounts=10000

while [ "$#" -gt 0 ]; do
    case "$1" in
        --counts) counts=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --pool) pool=$2; shift 2 ;;
        -h|--help) sed -n '2,35s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "measure-memory: unknown argument '$1'" >&2; exit 1 ;;
    esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_build twopcd bench
ulimit -n "$(ulimit -Hn)"

echo "== twopcd memory (VmRSS)"
echo "machine: $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings: N in {$counts}, $runs run(s) each, pool_size $pool, open-file limit $(ulimit -n)"
bench_setup_clusters "$accounts" >/dev/null
bench_write_conf "$pool" "lock_timeout_ms = 600000" "max_timeout_ms = 600000" "shutdown_grace_ms = 0"

warm_up() {
    local i
    for i in $(seq 1 200); do
        [ "$i" = 1 ] || echo next
        echo "url = \"$API/v1/transactions\""
        echo 'header = "Content-Type: application/json"'
        echo 'output = "/dev/null"'
        echo 'silent'
        echo "data = \"{\\\"branches\\\":{\\\"bank_a\\\":[{\\\"sql\\\":\\\"UPDATE accounts SET balance = balance - \$1 WHERE id = \$2\\\",\\\"params\\\":[1,$((RANDOM % accounts + 1))]}],\\\"bank_b\\\":[{\\\"sql\\\":\\\"UPDATE accounts SET balance = balance + \$1 WHERE id = \$2\\\",\\\"params\\\":[1,$((RANDOM % accounts + 1))]}]}}\""
    done >"$WORK/warm.cfg"
    curl -K "$WORK/warm.cfg" --parallel --parallel-max $((2 * pool)) 2>/dev/null || true
}

LOCKER_PID=""
lock_rows() {
    "$PG_CLUSTER" psql "$WORK/bank_a" -d "dbname=bank application_name=bench_locker" -c \
        "BEGIN; SELECT count(*) FROM (SELECT id FROM accounts FOR UPDATE) AS s; SELECT pg_sleep(3600);" \
        >/dev/null 2>&1 &
    LOCKER_PID=$!
    for _ in $(seq 1 100); do
        [ "$(sql bank_a "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bench_locker' AND query LIKE '%pg_sleep%' AND wait_event = 'PgSleep'")" = 1 ] && return 0
        sleep 0.1
    done
    die "the locking session did not start"
}
unlock_rows() {
    sql bank_a "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'bench_locker'" >/dev/null
    wait "$LOCKER_PID" 2>/dev/null || true
}

declare -a LINES
idle_rss=()
idle_split=()
for n in $counts; do
    for run in $(seq 1 "$runs"); do
        for what in inflight conns; do
            bench_start_twopcd
            idle_rss+=("$(rss_kib "$TWOPCD_PID")")
            idle_split+=("$(awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print a "/" f }' "/proc/$TWOPCD_PID/status")")
            warm_up
            sleep 1
            rss0=$(rss_kib "$TWOPCD_PID")
            if [ "$what" = conns ]; then
                "$BENCH/twopc-hold" -i -n "$n" -p "$API_PORT" -w 600 >"$WORK/hold.out" 2>&1 &
                hold=$!
                for _ in $(seq 1 600); do grep -q '^open' "$WORK/hold.out" && break; sleep 0.1; done
                sleep 1
                rssn=$(rss_kib "$TWOPCD_PID")
                kill "$hold" 2>/dev/null || true
                wait "$hold" 2>/dev/null || true
                LINES+=("$n|$run|conns|$rss0|$rssn|-|-")
            else
                lock_rows
                "$BENCH/twopc-hold" -n "$n" -p "$API_PORT" -a "$accounts" -t 600000 -w 600 >"$WORK/hold.out" 2>&1 &
                hold=$!
                inflight=0
                for _ in $(seq 1 1200); do
                    inflight=$(in_flight)
                    [ "${inflight:-0}" -ge "$n" ] && break
                    sleep 0.1
                done
                sleep 1
                rssn=$(rss_kib "$TWOPCD_PID")
                inflight=$(in_flight)
                unlock_rows
                wait "$hold" || true
                statuses=$(grep -E '^(status_|connection_errors|no_answer)' "$WORK/hold.out" | paste -sd ' ' -)
                LINES+=("$n|$run|in flight|$rss0|$rssn|$inflight|$statuses")
            fi
            stop_twopcd
        done
    done
done

echo
printf 'idle RSS after start: %s KiB (each start; median %s KiB = %s MiB)\n' "${idle_rss[*]}" \
    "$(printf '%s\n' "${idle_rss[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" \
    "$(printf '%s\n' "${idle_rss[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] / 1024 }')"
echo "  of which anonymous (heap, stacks) / file-backed (the binary and shared libraries), KiB: ${idle_split[*]}"
echo
{
    echo "N|run|held|RSS_0 KiB|RSS_N KiB|growth/N bytes|in_flight seen|answers after release"
    for l in "${LINES[@]}"; do
        IFS='|' read -r n run what r0 rn inf st <<<"$l"
        per=$(awk -v a="$r0" -v b="$rn" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')
        echo "$n|$run|$what|$r0|$rn|$per|$inf|$st"
    done
} | awk -F'|' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > nf) nf = NF }
    END { for (r = 1; r <= NR; r++) { line = ""; for (i = 1; i <= nf; i++) line = line sprintf("%-" w[i] "s  ", cell[r, i]); print line } }'
echo
echo "growth/N of 'in flight' = RSS per in-flight transaction, its HTTP connection included;"
echo "of 'conns' = an idle keep-alive connection alone. Prepared transactions left:" \
    "$(($(sql bank_a "SELECT count(*) FROM pg_prepared_xacts") + $(sql bank_b "SELECT count(*) FROM pg_prepared_xacts")))"
