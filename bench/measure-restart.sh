#!/usr/bin/env bash
# bench/measure-restart.sh: how long twopcd's start-up replay of a decision
# log of RECORDS records takes (target: 1,000,000 records in at most 1 s).
#
# Method: bench/twopc-dloggen writes the log with the project's own encoder
# (coordinator/dlog_codec.c), in 16 MiB segments (log_segment_bytes'
# default) rotated like the log thread does, 2-branch COMMIT records
# (participants bank_a, bank_b); then twopcd starts on it RUNS times and
# the script reads twopcd's own log line
#     decision log: N records in M segments replayed in X ms; ...
# which times dlog_open: locking, reading and decoding every segment,
# building the live table, fdatasync of each segment read, creating the
# new segment and removing dead ones. The participants point at a port
# nobody listens on, so recovery after the replay (not timed) finds them
# unreachable; twopcd is stopped as soon as the line is there.
#
# Shapes (bench/dlog_gen.c):
#   pairs    COMMIT + DONE as under a load of 32 in flight; the first COMMIT
#            never got its DONE (a participant was down: why old segments
#            are still there) and the last 32 neither (a crash under load)
#   commits  COMMITs only, all live: the worst case
#   keyed    pairs, every COMMIT with an Idempotency-Key and its response
#            (keyed requests keep segments for idempotency_ttl_s)
# Each shape is replayed with the page cache warm (the log was just
# written, as after a daemon crash) and cold (its pages dropped with
# dd iflag=nocache first, as after a reboot; the kernel may keep some).
#
#   bench/measure-restart.sh [--records N] [--runs N] [--shapes LIST]
set -euo pipefail

BENCH_NAME=measure-restart
records=1000000
runs=3
shapes=pairs,commits,keyed

while [ "$#" -gt 0 ]; do
    case "$1" in
        --records) records=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --shapes) shapes=$2; shift 2 ;;
        -h|--help) sed -n '2,34s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "measure-restart: unknown argument '$1'" >&2; exit 1 ;;
    esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_build twopcd bench

# No clusters: both participants on a port nobody listens on.
for bank in "${BANKS[@]}"; do PORT[$bank]=$("$PG_CLUSTER" freeport); done

# replay_once: starts twopcd, waits for its replay line, stops it; prints
# "ms records segments".
replay_once() {
    local line deadline=$((SECONDS + 120))
    "$REPO/twopcd" -c "$CONF" >"$TWOPCD_LOG" 2>&1 &
    TWOPCD_PID=$!
    until line=$(grep -m1 'replayed in' "$TWOPCD_LOG"); do
        kill -0 "$TWOPCD_PID" 2>/dev/null || { cat "$TWOPCD_LOG" >&2; die "twopcd exited before replaying"; }
        [ "$SECONDS" -lt "$deadline" ] || die "no replay line within 120 s"
        sleep 0.05
    done
    BENCH_STOP_WAIT=300 stop_twopcd
    echo "$line" | sed -n 's/.*decision log: \([0-9]*\) records in \([0-9]*\) segments replayed in \([0-9.]*\) ms.*/\3 \1 \2/p'
}

echo "== decision-log replay at start-up: $records records, $runs runs per shape and cache state"
echo "machine: $(nproc) CPU(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "storage: $(df -PT "$WORK" | awk 'NR == 2 { print $2 }') ($WORK)"
for shape in ${shapes//,/ }; do
    logdir="$WORK/decision-log"
    rm -rf "$logdir"
    case "$shape" in
        pairs) gen=$("$BENCH/twopc-dloggen" -n "$records" "$logdir") ;;
        commits) gen=$("$BENCH/twopc-dloggen" -n "$records" -m commits "$logdir") ;;
        keyed) gen=$("$BENCH/twopc-dloggen" -n "$records" -k "$logdir") ;;
        *) die "unknown shape '$shape'" ;;
    esac
    echo
    echo "-- $shape: $gen"
    bench_write_conf 1 "idempotency_ttl_s = 86400" "shutdown_grace_ms = 0"
    for cache in warm cold; do
        results=()
        for _ in $(seq 1 "$runs"); do
            if [ "$cache" = cold ]; then
                sync "$logdir"/*.seg
                for f in "$logdir"/*.seg; do dd if="$f" iflag=nocache count=0 status=none; done
            fi
            r=$(replay_once)
            [ -n "$r" ] || die "could not read twopcd's replay line"
            results+=("$r")
        done
        printf '%s\n' "${results[@]}" | sort -n | awk -v shape="$shape" -v cache="$cache" '
            { ms[NR] = $1; rec = $2; if (NR == 1 || $3 < smin) smin = $3; if ($3 > smax) smax = $3 }
            END { printf "%-8s %-5s %d records in %d-%d segments: replayed in %.1f ms (median of %d; min %.1f, max %.1f)\n",
                         shape, cache, rec, smin, smax, ms[int((NR + 1) / 2)], NR, ms[1], ms[NR] }'
    done
done
echo
echo "(twopcd's own line 'decision log: N records in M segments replayed in X ms'; every start"
echo " adds one empty segment, so each run sees one more segment than the one before)"
