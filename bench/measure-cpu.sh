#!/usr/bin/env bash
# bench/measure-cpu.sh: twopcd's CPU cost per 2-participant transaction, in
# instructions (target: at most 50,000), and where they go.
#
# Method: twopcd runs under valgrind --tool=callgrind (all its threads: the
# event loop and the log thread, libevent, libpq, jansson and libc included;
# the kernel's work in system calls is not counted). curl sends WARMUP
# transfers, then callgrind's counters are zeroed (callgrind_control -z),
# curl sends TRANSACTIONS transfers over CLIENTS parallel keep-alive
# connections (the same request as bench/transfer.lua), and after a
# second for the last DONE records the counters are dumped
# (callgrind_control -d). The count comes from twopcd's own
# twopc_transactions_total (GET /metrics, read outside the window). The
# number is the dump's total instructions (Ir) divided by that count. An
# idle window of the same kind (no requests, IDLE seconds) shows what the
# housekeeping timer costs per second; it is reported, not subtracted.
# callgrind_annotate then lists the functions with the most instructions of
# their own (exclusive) and the most including their callees (inclusive).
#
# Under valgrind twopcd runs some 50x slower, so with the same load it
# batches more decision-log records per fsync than it would natively; the
# per-transaction count is what the code executes, not how fast.
#
# With --connections C (more than curl's 300 parallel transfers), the window
# is instead wrk + bench/transfer.lua at C keep-alive connections for
# --seconds S, then as long as twopcd still has transactions in flight;
# the count is again twopcd's own. This shows what changes per transaction
# when many connections are open (bench/measure-scale.sh).
#
#   bench/measure-cpu.sh [--transactions N] [--warmup N] [--clients N] [--pool N] [--idle S]
#                        [--connections C --seconds S]
#
# Needs valgrind (Debian: apt-get install valgrind) and curl. Keeps the
# dump in bench/results/callgrind.out and the annotation in
# bench/results/callgrind.txt.
set -euo pipefail

BENCH_NAME=measure-cpu
transactions=2000
warmup=500
clients=8
pool=16
idle=5
accounts=10000
connections=0
seconds=20

while [ "$#" -gt 0 ]; do
    case "$1" in
        --transactions) transactions=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --pool) pool=$2; shift 2 ;;
        --idle) idle=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        -h|--help) sed -n '2,36s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "measure-cpu: unknown argument '$1'" >&2; exit 1 ;;
    esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
for tool in valgrind callgrind_control callgrind_annotate curl; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian: apt-get install valgrind curl)"
done
bench_build twopcd

echo "== twopcd instructions per transaction (callgrind)"
echo "machine: $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$connections" -gt 0 ]; then
    echo "settings: wrk at $connections connections for $seconds s after $warmup warm-up transfers, pool_size $pool"
    ulimit -n "$(ulimit -Hn)"
else
    echo "settings: $transactions transactions after $warmup warm-up, $clients parallel connections, pool_size $pool"
fi
bench_setup_clusters "$accounts" >/dev/null
bench_write_conf "$pool"
CG="$WORK/callgrind.out"
BENCH_START_WAIT=120 bench_start_twopcd valgrind --tool=callgrind --callgrind-out-file="$CG" --separate-threads=no
echo "twopcd under callgrind: pid $TWOPCD_PID"

# transfers N: a curl config of N transfers (random accounts, amount 1).
transfers() {
    awk -v n="$1" -v api="$API" -v acc="$accounts" 'BEGIN {
        srand()
        for (i = 0; i < n; i++) {
            printf "url = \"%s/v1/transactions\"\nheader = \"Content-Type: application/json\"\noutput = \"/dev/null\"\nsilent\n", api
            printf "data = \"{\\\"branches\\\":{\\\"bank_a\\\":[{\\\"sql\\\":\\\"UPDATE accounts SET balance = balance - $1 WHERE id = $2\\\",\\\"params\\\":[1,%d],\\\"expect_rows\\\":1}],\\\"bank_b\\\":[{\\\"sql\\\":\\\"UPDATE accounts SET balance = balance + $1 WHERE id = $2\\\",\\\"params\\\":[1,%d],\\\"expect_rows\\\":1}]},\\\"timeout_ms\\\":30000}\"\n", int(rand() * acc) + 1, int(rand() * acc) + 1
            if (i < n - 1) print "next"
        } }' >"$WORK/curl-$1.cfg"
    curl -K "$WORK/curl-$1.cfg" --parallel --parallel-max "$clients" 2>/dev/null || true
}
finished() { curl -s -m 30 "$API/metrics" | awk '/^twopc_transactions_total/ { s += $NF } END { print s + 0 }'; }
committed() { curl -s -m 30 "$API/metrics" | awk '/^twopc_transactions_total\{outcome="committed"\}/ { print $NF }'; }
ir_of() { awk '/^summary:/ { print $2 }' "$1"; }

transfers "$warmup"
t0=$(finished)
c0=$(committed)
callgrind_control -z "$TWOPCD_PID" >/dev/null 2>&1
start=$SECONDS
if [ "$connections" -gt 0 ]; then
    TRANSFER_ACCOUNTS=$accounts TRANSFER_TIMEOUT_MS=60000 wrk -t 2 -c "$connections" -d "${seconds}s" --timeout 65s \
        -s "$BENCH/transfer.lua" "$API" -- "$accounts" >"$WORK/wrk.out" 2>&1 || true
    for _ in $(seq 1 3000); do
        [ "$(in_flight)" = 0 ] && break
        sleep 0.2
    done
else
    transfers "$transactions"
fi
sleep 1 # the DONE records of the last transactions
callgrind_control -d "$TWOPCD_PID" >/dev/null 2>&1
window=$((SECONDS - start))
t1=$(finished)
c1=$(committed)
n=$((t1 - t0))
ncommitted=$((c1 - c0))

callgrind_control -z "$TWOPCD_PID" >/dev/null 2>&1
sleep "$idle"
callgrind_control -d "$TWOPCD_PID" >/dev/null 2>&1
stop_twopcd

dump="$CG.1" # callgrind numbers its dumps from 1
idle_dump="$CG.2"
ir=$(ir_of "$dump")
idle_ir=$(ir_of "$idle_dump")
[ "$n" -gt 0 ] || die "no transaction finished in the window"

mkdir -p "$RESULTS"
cp "$dump" "$RESULTS/callgrind.out"
callgrind_annotate --inclusive=no --threshold=100 "$dump" >"$WORK/self.txt"
callgrind_annotate --inclusive=yes --threshold=100 "$dump" >"$WORK/incl.txt"
{
    echo "== exclusive (self) instructions, top 25"
    sed -n '/^Ir/,$p' "$WORK/self.txt" | sed -n '1,27p'
    echo
    echo "== inclusive instructions, top 40"
    sed -n '/^Ir/,$p' "$WORK/incl.txt" | sed -n '1,42p'
} >"$RESULTS/callgrind.txt"

echo
echo "transactions in the window: $n finished ($ncommitted committed), in about $window s"
echo "twopcd instructions in the window: $ir"
awk -v ir="$ir" -v n="$n" 'BEGIN { printf "INSTRUCTIONS PER TRANSACTION: %.0f\n", ir / n }'
awk -v ir="$idle_ir" -v s="$idle" -v w="$window" -v n="$n" 'BEGIN {
    printf "idle: %.0f instructions per second (timers); over this window that is about %.0f per transaction\n", ir / s, ir / s * w / n }'
echo
# near_symbol LIB HEXADDR: the exported symbol at or before HEXADDR in LIB
# (libraries without debug symbols show as ???:0xADDR; a static function
# sits after the export before it in the same source file, usually).
near_symbol() {
    local a
    a=$(printf '%016x' $((16#$2)))
    nm -D --defined-only "$1" 2>/dev/null |
        awk -v a="$a" '($1 "") <= (a "") && ($1 "") > (best "") { best = $1; name = $3 } END { sub(/@.*/, "", name); print name }'
}

# top FILE COUNT MODE: the first COUNT functions of an annotation, less the
# frames that were on the stack when the counters were zeroed (main,
# event_base_dispatch, ...: callgrind charges them the whole window), with
# unresolved addresses named after the nearest export. callgrind_annotate
# may list one function twice (under its source path as given to the
# compiler and as resolved): MODE sum adds those up (self cost), max takes
# the larger (inclusive cost).
top() {
    local total ir name lib
    total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }' "$1")
    sed -n '/file:function/,$p' "$1" | sed '1,2d' |
        sed -n 's/^ *\([0-9,]*\) ( *[0-9.]*%) *\(.*\)$/\1 \2/p' | tr -d ',' |
        awk -v t="$total" '$1 + 0 < 0.99 * t' | sed -n "1,$(($2 * 3))p" |
        while read -r ir name; do
            if [[ "$name" =~ ^\?\?\?:0x0*([0-9a-f]+)[^\ ]*\ \[(.*)\]$ ]]; then
                lib=${BASH_REMATCH[2]}
                name="$(basename "$lib" | sed 's/\.so.*//'): 0x${BASH_REMATCH[1]}, a static function after $(near_symbol "$lib" "${BASH_REMATCH[1]}")"
            else
                name=$(echo "$name" | sed "s/ \\[.*\\]\$//; s/'[0-9]*\$//; s|^.*/||")
            fi
            echo "$ir $name"
        done |
        awk -v n="$n" -v t="$total" -v mode="$3" '
            { ir = $1; $1 = ""; sub(/^ /, ""); if (!($0 in v)) order[++k] = $0
              if (mode == "sum") v[$0] += ir; else if (ir > v[$0]) v[$0] = ir }
            END { for (i = 1; i <= k; i++) print v[order[i]], order[i] }' |
        sort -rn | sed -n "1,${2}p" |
        awk -v n="$n" -v t="$total" '{ ir = $1; $1 = ""; printf "  %8.0f/tx %5.1f%%  %s\n", ir / n, 100 * ir / t, substr($0, 2) }'
}
# by_object DUMP: each ELF object's own instructions (self cost summed
# over its functions). In the dump a cost line after "calls=" is the
# callee's inclusive cost and is skipped; names may be compressed as
# "(id) name" on first use and "(id)" after.
by_object() {
    awk -v n="$n" '
        function name(v,    id) {
            if (match(v, /^\([0-9]+\)/)) {
                id = substr(v, RSTART, RLENGTH)
                if (length(v) > RLENGTH) obname[id] = substr(v, RLENGTH + 2)
                return obname[id]
            }
            return v
        }
        /^ob=/ { ob = name(substr($0, 4)); next }
        /^cob=/ { name(substr($0, 5)); next }
        /^calls=/ { skip = 1; next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next } cost[ob] += $2; total += $2; next }
        END {
            for (o in cost) {
                short = o; sub(/.*\//, "", short)
                printf "  %8.0f/tx %5.1f%%  %s\n", cost[o] / n, 100 * cost[o] / total, short
            }
        }' "$1" | sort -rn
}
echo "by object (own instructions; the sum runs a little above the total: the dump's cost lines):"
by_object "$dump"
echo
echo "top 10 functions by their own instructions (instructions per transaction, share of the window):"
top "$WORK/self.txt" 10 sum
echo
echo "top 15 by inclusive instructions (with their callees):"
top "$WORK/incl.txt" 15 max
echo
echo "annotation: bench/results/callgrind.txt; dump: bench/results/callgrind.out (callgrind_annotate, kcachegrind)"
