# shellcheck shell=bash
# bench/lib.sh: what bench/run and bench/measure-*.sh share, sourced (bash):
# the PostgreSQL binaries, a temporary directory removed on exit (also on
# Ctrl-C), two throwaway clusters bank_a and bank_b with an accounts table,
# twopcd's configuration, starting and stopping twopcd.
#
# The sourcing script sets BENCH_NAME (for messages) before sourcing, may
# set BENCH_KEEP_LOG=1 to have twopcd's log copied to bench/results/ on
# exit, and calls bench_setup_clusters / bench_write_conf / bench_start_twopcd.

die() { echo "${BENCH_NAME:-bench}: $*" >&2; exit 1; }
note() { echo "${BENCH_NAME:-bench}: $*" >&2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$REPO/bench"
PG_CLUSTER="$REPO/scripts/pg-cluster"
RESULTS="$BENCH/results"

pg_bindir() {
    local d
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    for d in /usr/lib/postgresql/15/bin $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        [ -x "$d/pgbench" ] && { echo "$d"; return; }
    done
    return 1
}
PGBIN=$(pg_bindir) || die "no PostgreSQL binaries with pgbench found (install postgresql-15 or set PG_BINDIR)"
# shellcheck disable=SC2034 # bench/run's plain mode
PGBENCH="$PGBIN/pgbench"

# bench_build TARGET...: make the targets (nice: the build is not measured).
bench_build() {
    cd "$REPO" || die "cannot cd to $REPO"
    if [ ! -f Makefile ]; then
        nice "$REPO/scripts/build" >/dev/null || die "scripts/build failed"
    fi
    nice make -j2 "$@" >/dev/null || die "make $* failed"
}

# ---------------------------------------------------------- the work dir --

WORK=$(mktemp -d "${TMPDIR:-/tmp}/twopc-bench.XXXXXX")
TWOPCD_PID=""
TWOPCD_LOG="$WORK/twopcd.log"
BANKS=(bank_a bank_b)
declare -A PORT

stop_twopcd() {
    local pid=$TWOPCD_PID
    [ -n "$pid" ] || return 0
    TWOPCD_PID=""
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "${BENCH_STOP_WAIT:-100}"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "twopcd (pid $pid) did not stop in time after SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

bench_cleanup_done=no
bench_cleanup() {
    local rc=$? bank
    [ "$bench_cleanup_done" = no ] || return 0
    bench_cleanup_done=yes
    stop_twopcd
    if [ "${BENCH_KEEP_LOG:-0}" = 1 ] && [ -s "$TWOPCD_LOG" ]; then
        { mkdir -p "$RESULTS" && cp "$TWOPCD_LOG" "$RESULTS/twopcd.log"; } || note "could not copy twopcd's log"
    fi
    for bank in "${BANKS[@]}"; do
        [ -d "$WORK/$bank" ] || continue
        "$PG_CLUSTER" destroy "$WORK/$bank" || note "could not destroy cluster $WORK/$bank"
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'echo; note "interrupted"; exit 130' INT
trap 'note "terminated"; exit 143' TERM

# ------------------------------------------------------------- clusters --

# bench_setup_clusters ACCOUNTS: bank_a and bank_b, each with a database
# bank and a table accounts (ids 1..ACCOUNTS, balance 1000000).
bench_setup_clusters() {
    local accounts=$1 bank
    for bank in "${BANKS[@]}"; do
        PORT[$bank]=$("$PG_CLUSTER" freeport)
        "$PG_CLUSTER" init "$WORK/$bank" "${PORT[$bank]}"
        "$PG_CLUSTER" start "$WORK/$bank"
        "$PG_CLUSTER" psql "$WORK/$bank" -v ON_ERROR_STOP=1 -c 'CREATE DATABASE bank'
        "$PG_CLUSTER" psql "$WORK/$bank" -v ON_ERROR_STOP=1 -d bank -f - <<EOF
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO accounts (id, balance) SELECT n, 1000000 FROM generate_series(1, $accounts) AS n;
VACUUM ANALYZE accounts;
EOF
        echo "$bank: PostgreSQL on 127.0.0.1:${PORT[$bank]}, database bank, $accounts accounts"
    done
}

# conninfo BANK: libpq connection string of BANK's bank database.
conninfo() { echo "host=127.0.0.1 port=${PORT[$1]} dbname=bank user=postgres"; }

# sql BANK SQL: one value from BANK's bank database.
sql() { "$PG_CLUSTER" psql "$WORK/$1" -d bank -At -c "$2"; }

checkpoint() {
    local bank
    for bank in "${BANKS[@]}"; do
        "$PG_CLUSTER" psql "$WORK/$bank" -c CHECKPOINT
    done
}

# ---------------------------------------------------------------- twopcd --

API_PORT=""
API=""
CONF="$WORK/twopcd.conf"

# bench_write_conf POOL [COORDINATOR KEY=VALUE LINES...]: twopcd.conf for
# both banks with pool_size POOL, the log in $WORK/decision-log.
bench_write_conf() {
    local pool=$1 bank
    shift
    API_PORT=$("$PG_CLUSTER" freeport)
    API="http://127.0.0.1:$API_PORT"
    {
        echo "; written by bench/${BENCH_NAME:-run}"
        echo "[coordinator]"
        echo "id = bench"
        echo "listen = 127.0.0.1:$API_PORT"
        echo "log_dir = $WORK/decision-log"
        echo "log_level = info"
        printf '%s\n' "$@"
        for bank in "${BANKS[@]}"; do
            echo
            echo "[participant $bank]"
            echo "conninfo = $(conninfo "$bank")"
            echo "pool_size = $pool"
        done
    } >"$CONF"
}

# bench_start_twopcd [WRAPPER ARGS...]: starts twopcd (under WRAPPER, e.g.
# valgrind, if given) and waits up to BENCH_START_WAIT seconds (30) for
# /healthz to answer 200. TWOPCD_PID is the wrapper's pid then.
# shellcheck disable=SC2120 # the wrapper is optional
bench_start_twopcd() {
    local deadline=$((SECONDS + ${BENCH_START_WAIT:-30}))
    "$@" "$REPO/twopcd" -c "$CONF" >"$TWOPCD_LOG" 2>&1 &
    TWOPCD_PID=$!
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/healthz" || true)" = 200 ]; do
        if ! kill -0 "$TWOPCD_PID" 2>/dev/null; then
            tail -n 30 "$TWOPCD_LOG" >&2
            die "twopcd exited during startup (log above)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$TWOPCD_LOG" >&2; die "twopcd did not answer /healthz with 200 in time"; }
        sleep 0.2
    done
}

# rss_kib PID: resident set size (VmRSS) of PID in KiB.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# in_flight: twopcd's in-flight transactions (GET /healthz).
in_flight() { curl -s -m 5 "$API/healthz" | sed -n 's/.*"in_flight": *\([0-9]*\).*/\1/p'; }
