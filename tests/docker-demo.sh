#!/usr/bin/env bash
# docker-demo.sh: brings the compose demo (docker/docker-compose.yml) up for
# real and checks what it did. `make check-docker` runs it; scripts/test too.
#
# No Docker engine runs here and public registries are unreachable, so it
# uses Debian's packages: rootful Podman serving the Docker API on a Unix
# socket, Debian's docker-compose 1.29 talking to it, and, for the images'
# base, Debian 12 bootstrapped with debootstrap from the apt mirror this
# machine already uses (imported as a local image: docker/Dockerfile and
# docker/postgres.Dockerfile are built FROM it). The demo's compose files
# run as a user runs them, plus docker/docker-compose.hostnet.yml: every
# service in the host's network namespace on free ports of 127.0.0.1, so
# nothing leaves loopback.
#
# Podman's whole state (images, containers, volumes, layers) lives in a
# fresh directory under /var/tmp that is removed at the end, together with
# everything in it, whatever happened; the machine's own Podman storage is
# not touched. The debootstrapped base is cached as a tar file in
# $TWOPC_DOCKER_CACHE_DIR (default /var/tmp/twopc-docker-cache) and made
# again when missing or older than 7 days; TWOPC_DOCKER_CACHE=0 disables
# the cache. TWOPC_DOCKER_KEEP=1 leaves everything in place to look at.
#
# Checks, besides the demo client's own verdict: twopcd reached its fault
# point, was started again, and its recovery committed what the crash left
# prepared; the client answered every transfer, some committed, some
# aborted; the twopcd container, started again, passes its health check and
# replays the decision log from its volume; then, read straight from the
# three PostgreSQL servers: money conserved, each committed transfer in
# exactly its two banks, each aborted one in none, nothing prepared; the
# three images run as non-root users. Ends with a Check-style line
# "NN%: Checks: N, Failures: F, Errors: E".
#
# Needs root and the packages `scripts/install-deps --docker` installs;
# exits 77 (skip) without them, or when TWOPC_SKIP_DOCKER_DEMO=1.
set -euo pipefail

REPO=${TWOPC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
CACHE_DIR=${TWOPC_DOCKER_CACHE_DIR:-/var/tmp/twopc-docker-cache}
CACHE_DAYS=7
TRANSFERS=${TWOPC_DEMO_TRANSFERS:-60}
CRASH_AT=${TWOPC_DEMO_CRASH_AT:-20}
PG_PASSWORD=twopc-docker-test

t0=$SECONDS
note() { printf '\n== [%4ds] %s\n' "$((SECONDS - t0))" "$*"; }
skip() { echo "docker-demo: SKIP: $*"; exit 77; }
die() { echo "docker-demo: $*" >&2; exit 1; }

# debootstrap and runc live in sbin, which a PATH need not have.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

[ "${TWOPC_SKIP_DOCKER_DEMO:-0}" = 0 ] || skip "TWOPC_SKIP_DOCKER_DEMO is set"
[ "$(id -u)" = 0 ] || skip "needs root (rootful Podman; rootless needs subuids and more set-up)"
missing=()
for cmd in podman docker-compose debootstrap runc psql curl jq; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
[ "${#missing[@]}" = 0 ] || skip "missing ${missing[*]}: run scripts/install-deps --docker"

# ------------------------------------------------------------- set-up --

RUN_DIR=$(mktemp -d /var/tmp/twopc-docker-demo.XXXXXX)
PROJECT="twopcdemo$$"
SERVICE_PID=""
CHILD_PID=""
COMPOSE=(docker-compose -p "$PROJECT" -f "$REPO/docker/docker-compose.yml"
         -f "$REPO/docker/docker-compose.hostnet.yml")
# The override needs the ports to read at all (build, down); the real ones
# are picked just before `up`.
export TWOPC_PORT_BANK_A=0 TWOPC_PORT_BANK_B=0 TWOPC_PORT_BANK_C=0 TWOPC_PORT_TWOPCD=0

# teardown: remove every container, volume and image of this run, stop the
# Podman service and delete the run's directory.
teardown() {
    local rc=$? m
    trap - EXIT
    # Nothing may cut the clean-up short: not a second Ctrl-C, nor a reader
    # of our output that went away (echo then just fails).
    trap '' INT TERM HUP PIPE
    set +e
    if [ "${TWOPC_DOCKER_KEEP:-0}" != 0 ]; then
        note "TWOPC_DOCKER_KEEP is set: everything is left in $RUN_DIR"
        echo "  export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF DOCKER_HOST=$DOCKER_HOST"
        echo "  podman system service pid: $SERVICE_PID"
        exit "$rc"
    fi
    note "Tearing down"
    if [ -n "$CHILD_PID" ] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$CHILD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CHILD_PID" 2>/dev/null
        wait "$CHILD_PID" 2>/dev/null
    fi
    if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        "${COMPOSE[@]}" down -v --rmi all --timeout 5 >"$RUN_DIR/down.log" 2>&1 \
            || { echo "docker-compose down failed:"; tail -n 20 "$RUN_DIR/down.log"; }
        kill "$SERVICE_PID" 2>/dev/null
        wait "$SERVICE_PID" 2>/dev/null
    fi
    # Whatever compose left (the base image, build stages, stray
    # containers); only ever in this run's storage, never the machine's.
    if [ "${CONTAINERS_STORAGE_CONF:-}" = "$RUN_DIR/storage.conf" ]; then
        podman rm -a -f -v >/dev/null 2>&1
        podman rmi -a -f >/dev/null 2>&1
        podman volume prune -f >/dev/null 2>&1
    fi
    # Overlay mounts left by a crash would make rm fail.
    for m in $(awk -v d="$RUN_DIR" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null
    done
    rm -rf "$RUN_DIR"
    if [ -e "$RUN_DIR" ]; then
        echo "docker-demo: could not remove $RUN_DIR"
        [ "$rc" != 0 ] || rc=1
    else
        echo "removed the containers, volumes, images and Podman storage of this run ($RUN_DIR)"
    fi
    echo "docker-demo: took $((SECONDS - t0)) s"
    exit "$rc"
}
trap teardown EXIT

# run LOG CMD...: run CMD, its output into LOG. In the background, so that
# Ctrl-C or a TERM stops the test at once (bash runs a trap only once the
# command in the foreground is done, and podman build carries on through
# SIGINT); teardown then stops CMD.
run() {
    local log=$1 rc=0
    shift
    "$@" >"$log" 2>&1 </dev/null &
    CHILD_PID=$!
    wait "$CHILD_PID" || rc=$?
    CHILD_PID=""
    return "$rc"
}
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# Podman's configuration for this run only: storage in RUN_DIR; runc, not
# crun (crun refuses to start anything on a host whose cgroup v2 hierarchy
# has controllers while v1 is mounted too: "cgroups in hybrid mode not
# supported"); explicit ulimits (Podman's defaults, e.g. 1048576 open
# files, exceed hard limits that root may not raise in some sandboxes, ours
# among them: 20000 open files; runc then fails with "error setting rlimits
# ... operation not permitted"); host networking by default, for the
# builds' RUN steps too (apt-get reaches the mirror like the host does);
# its own directory for network definitions, should anything create one.
mkdir -p "$RUN_DIR/storage" "$RUN_DIR/run" "$RUN_DIR/tmp" "$RUN_DIR/networks"
# Podman and buildah's scratch files too (they default to /var/tmp).
export TMPDIR="$RUN_DIR/tmp"
cat >"$RUN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$RUN_DIR/storage"
runroot = "$RUN_DIR/run"
EOF
cat >"$RUN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
tmp_dir = "$RUN_DIR/tmp"
volume_path = "$RUN_DIR/storage/volumes"
events_logger = "file"
events_logfile_path = "$RUN_DIR/events.log"

[network]
network_config_dir = "$RUN_DIR/networks"
EOF
export CONTAINERS_CONF="$RUN_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$RUN_DIR/storage.conf"
# docker-compose builds through the API (not a docker CLI that may be
# installed), against Podman's socket.
export DOCKER_HOST="unix://$RUN_DIR/podman.sock"
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0

note "Podman $(podman version --format '{{.Client.Version}}'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'), runc $(runc --version | sed -n '1s/^runc version //p')"
podman system service --time 0 "$DOCKER_HOST" >"$RUN_DIR/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do
    curl -s --unix-socket "$RUN_DIR/podman.sock" http://d/_ping 2>/dev/null | grep -q OK && break
    kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$RUN_DIR/service.log"; die "podman system service exited"; }
    sleep 0.1
done
echo "Podman's Docker API: $DOCKER_HOST (state in $RUN_DIR)"

# ---------------------------------------------------------- base image --

# apt_sources: print "URI SUITE" for every enabled deb source of this
# machine whose suite is bookworm or bookworm-*, main component (deb822
# .sources files and one-line .list files).
apt_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                           if ($(i + 1) ~ /^bookworm(-[a-z]+)?$/ && $0 ~ / main( |$)/) print $i, $(i + 1) }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'function flush() {
                 if (types ~ /(^| )deb( |$)/ && enabled != "no" && comps ~ /(^| )main( |$)/)
                     for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++)
                         if (suite[s] ~ /^bookworm(-[a-z]+)?$/) print uri[u], suite[s]
                 types = ""; enabled = ""; comps = ""; nu = 0; ns = 0 }
             /^[ \t]*$/ { flush(); next }
             /^#/ { next }
             tolower($1) == "types:" { types = $0; sub(/^[^:]*:/, "", types) }
             tolower($1) == "enabled:" { enabled = tolower($2) }
             tolower($1) == "components:" { comps = $0; sub(/^[^:]*:/, "", comps) }
             tolower($1) == "uris:" { for (i = 2; i <= NF; i++) uri[++nu] = $i }
             tolower($1) == "suites:" { for (i = 2; i <= NF; i++) suite[++ns] = $i }
             END { flush() }' "$f"
    done
}

# make_base TARFILE: debootstrap Debian 12 (minbase) from this machine's
# mirror, with this machine's bookworm sources, into a tar file.
make_base() {
    local out=$1 mirror root="$RUN_DIR/rootfs"
    mirror=$(apt_sources | awk '$2 == "bookworm" { print $1; exit }')
    [ -n "$mirror" ] || die "no 'bookworm main' source in /etc/apt/sources.list*: which mirror does apt use?"
    echo "debootstrap --variant=minbase bookworm from $mirror"
    run "$RUN_DIR/debootstrap.log" debootstrap --variant=minbase bookworm "$root" "$mirror" \
        || { tail -n 30 "$RUN_DIR/debootstrap.log"; die "debootstrap failed (log above)"; }
    apt_sources | awk '!seen[$0]++ { print "deb", $1, $2, "main" }' >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$RUN_DIR/base.tar" . || die "cannot write $RUN_DIR/base.tar"
    rm -rf "$root"
    [ "$out" = "$RUN_DIR/base.tar" ] || mv "$RUN_DIR/base.tar" "$out" || die "cannot write $out"
}

note "Base image: Debian 12 from debootstrap"
BASE_TAR=""
if [ "${TWOPC_DOCKER_CACHE:-1}" != 0 ] && mkdir -p "$CACHE_DIR" 2>/dev/null; then
    BASE_TAR="$CACHE_DIR/debian-bookworm-minbase.tar"
    if [ -f "$BASE_TAR" ] && [ -z "$(find "$BASE_TAR" -mtime +"$CACHE_DAYS")" ]; then
        echo "using the cached $BASE_TAR ($(date -r "$BASE_TAR" -u '+%F %H:%M') UTC)"
    else
        make_base "$BASE_TAR"
    fi
else
    BASE_TAR="$RUN_DIR/base.tar"
    make_base "$BASE_TAR"
fi
export BASE_IMAGE=localhost/twopc-demo-base:bookworm
run "$RUN_DIR/import.log" podman import "$BASE_TAR" "$BASE_IMAGE" \
    || { cat "$RUN_DIR/import.log"; die "podman import failed"; }
echo "imported as $BASE_IMAGE"

# ------------------------------------------------------------- images --

export POSTGRES_IMAGE=localhost/twopc-demo-postgres:15
export TWOPC_IMAGE=localhost/twopc-demo-twopcd:test
export TWOPC_DEMO_CLIENT_IMAGE=localhost/twopc-demo-client:test
export TWOPC_DEMO_PG_PASSWORD=$PG_PASSWORD
export TWOPC_DEMO_TRANSFERS=$TRANSFERS TWOPC_DEMO_CRASH_AT=$CRASH_AT

note "Building $POSTGRES_IMAGE (docker/postgres.Dockerfile, Debian's postgresql-15)"
run "$RUN_DIR/build-postgres.log" podman build -f "$REPO/docker/postgres.Dockerfile" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$POSTGRES_IMAGE" "$REPO/docker" \
    || { tail -n 30 "$RUN_DIR/build-postgres.log"; die "building the PostgreSQL image failed"; }

note "docker-compose build: $TWOPC_IMAGE and $TWOPC_DEMO_CLIENT_IMAGE (docker/Dockerfile)"
run "$RUN_DIR/build.log" "${COMPOSE[@]}" build \
    || { tail -n 40 "$RUN_DIR/build.log"; die "docker-compose build failed"; }
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -v '<none>' | sed 's/^/  /'

# -------------------------------------------------------------- the demo --

# pick_ports: four distinct ports of 127.0.0.1 that nobody listens on,
# below the kernel's ephemeral range (where other programs' outgoing
# connections may hold a port that nothing listens on).
pick_ports() {
    local lo p
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true)
    [ "${lo:-0}" -gt 12000 ] 2>/dev/null || lo=32768
    ports=()
    while [ "${#ports[@]}" -lt 4 ]; do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
        ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || continue
        [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
    done
    export TWOPC_PORT_BANK_A=${ports[0]} TWOPC_PORT_BANK_B=${ports[1]} TWOPC_PORT_BANK_C=${ports[2]}
    export TWOPC_PORT_TWOPCD=${ports[3]}
}

# Other programs on this machine may take a port between our check and the
# service's bind; then everything goes down and up again on other ports.
attempt=1
while :; do
    pick_ports
    note "docker-compose up --exit-code-from demo-client (banks on 127.0.0.1:${ports[0]},${ports[1]},${ports[2]}; twopcd on 127.0.0.1:${ports[3]})"
    up_rc=0
    run "$RUN_DIR/up.log" timeout 900 "${COMPOSE[@]}" up --no-build --no-color \
        --exit-code-from demo-client || up_rc=$?
    if [ "$up_rc" != 0 ] && [ "$attempt" -lt 3 ] \
        && grep -qE 'Address already in use|could not bind' "$RUN_DIR/up.log"; then
        grep -E 'Address already in use|could not bind' "$RUN_DIR/up.log" | head -n 2
        echo "a port was taken before its service could bind it: again, on other ports"
        "${COMPOSE[@]}" down -v --timeout 5 >>"$RUN_DIR/down.log" 2>&1 || true
        attempt=$((attempt + 1))
        continue
    fi
    break
done
echo "docker-compose up exited with status $up_rc"
if [ "$up_rc" != 0 ]; then
    echo "--- docker-compose up's output (the last 40 lines)"
    tail -n 40 "$RUN_DIR/up.log"
fi
podman logs "${PROJECT}_demo-client_1" >"$RUN_DIR/client.log" 2>&1 || true
podman logs "${PROJECT}_twopcd_1" >"$RUN_DIR/twopcd.log" 2>&1 || true
echo "--- the demo client's output"
cat "$RUN_DIR/client.log"
echo "--- twopcd's log (its first and last 15 lines)"
if [ "$(wc -l <"$RUN_DIR/twopcd.log")" -gt 30 ]; then
    head -n 15 "$RUN_DIR/twopcd.log"; echo "  [...]"; tail -n 15 "$RUN_DIR/twopcd.log"
else
    cat "$RUN_DIR/twopcd.log"
fi
grep -E 'fault point|killed by SIGKILL|recovery: [0-9]+ committed|listening on' "$RUN_DIR/twopcd.log" | sed 's/^/  > /'

# ---------------------------------------------------------------- checks --

checks=0 failures=0
check() {   # check DESCRIPTION COMMAND...: run COMMAND; count and report
    local what=$1
    shift
    checks=$((checks + 1))
    if "$@"; then
        echo "ok   $what"
    else
        echo "FAIL $what"
        failures=$((failures + 1))
    fi
}

note "Checks"
check "docker-compose up exits 0: the demo client's verdict (status $up_rc)" test "$up_rc" = 0
check "the demo client printed RESULT: PASS" grep -q '^RESULT: PASS' "$RUN_DIR/client.log"

# The client's answers: "ID CODE FROM TO AMOUNT" per transfer.
sed -n 's/^transfer \([^ ]*\): \([a-z_0-9]*\)#[0-9]* -> \([a-z_0-9]*\)#[0-9]* \([0-9]*\): HTTP \([0-9a-z]*\) .*/\1 \5 \2 \3 \4/p' \
    "$RUN_DIR/client.log" >"$RUN_DIR/answers"
n_answers=$(wc -l <"$RUN_DIR/answers")
n_committed=$(awk '$2 == 200' "$RUN_DIR/answers" | wc -l)
n_aborted=$(awk '$2 ~ /^[45][0-9][0-9]$/' "$RUN_DIR/answers" | wc -l)
check "the client answered all $TRANSFERS transfers ($n_answers: $n_committed HTTP 200, $n_aborted HTTP 4xx/5xx)" \
    test "$n_answers" = "$TRANSFERS" -a $((n_committed + n_aborted)) = "$TRANSFERS"
check "both outcomes happened (some committed, some aborted)" test "$n_committed" -gt 0 -a "$n_aborted" -gt 0

check "twopcd reached its fault point and SIGKILLed itself" \
    grep -q 'fault point after_log_fsync reached: crashing (SIGKILL)' "$RUN_DIR/twopcd.log"
check "the entrypoint started twopcd again after the SIGKILL" \
    grep -q 'was killed by SIGKILL; starting it again' "$RUN_DIR/twopcd.log"
recovered=$(sed -n 's/.*recovery: \([0-9]*\) committed.*/\1/p' "$RUN_DIR/twopcd.log" | tail -n 1)
check "the restart's recovery committed what the crash left prepared (recovery: ${recovered:-?} committed)" \
    test "${recovered:-0}" -ge 1
check "twopcd started twice (listening lines: $(grep -c 'listening on' "$RUN_DIR/twopcd.log"))" \
    test "$(grep -c 'listening on' "$RUN_DIR/twopcd.log")" = 2

# compose stopped everything with the client. Start the banks and twopcd
# again (prepared transactions would survive that too): twopcd's container
# must come back with its decision log and pass its own health check, and
# the banks are read straight from PostgreSQL.
"${COMPOSE[@]}" start bank_a bank_b bank_c twopcd >"$RUN_DIR/start.log" 2>&1 || cat "$RUN_DIR/start.log"
healthy=no
for _ in $(seq 1 60); do
    if podman exec "${PROJECT}_twopcd_1" twopcd-healthcheck >/dev/null 2>&1; then healthy=yes; break; fi
    sleep 1
done
check "twopcd's container passes its HEALTHCHECK command (twopcd-healthcheck) after a restart" test "$healthy" = yes
podman logs "${PROJECT}_twopcd_1" >"$RUN_DIR/twopcd-restart.log" 2>&1 || true
replayed=$(sed -n 's/.*decision log: \([0-9]*\) records.*/\1/p' "$RUN_DIR/twopcd-restart.log" | tail -n 1)
check "the restarted container replayed the decision log kept in its volume (${replayed:-?} records)" \
    test "${replayed:-0}" -gt 0
export PGPASSWORD=$PG_PASSWORD
bank_port() { case $1 in bank_a) echo "$TWOPC_PORT_BANK_A" ;; bank_b) echo "$TWOPC_PORT_BANK_B" ;; bank_c) echo "$TWOPC_PORT_BANK_C" ;; esac; }
bsql() { psql "host=127.0.0.1 port=$(bank_port "$1") dbname=bank user=postgres connect_timeout=5" -X -q -At -v ON_ERROR_STOP=1 -c "$2"; }
for bank in bank_a bank_b bank_c; do
    for _ in $(seq 1 60); do bsql "$bank" 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
done

money=0 prepared=0
: >"$RUN_DIR/rows"
for bank in bank_a bank_b bank_c; do
    m=$(bsql "$bank" 'SELECT sum(balance) FROM accounts') || m=0
    money=$((money + m))
    n=$(bsql "$bank" 'SELECT count(*) FROM pg_prepared_xacts') || n=999
    prepared=$((prepared + n))
    { bsql "$bank" 'SELECT id, amount FROM transfers' || echo "? $bank unreadable"; } \
        | awk -F '|' -v b="$bank" '{ print $1, b, $2 }' >>"$RUN_DIR/rows"
done
check "money in the three banks is still 3 x 10 x 1000 (read from PostgreSQL: $money)" test "$money" = 30000
check "no prepared transaction in any bank (pg_prepared_xacts: $prepared)" test "$prepared" = 0
# Every 200: exactly two rows, -AMOUNT in FROM and +AMOUNT in TO; every
# other answer: no row; no row of a transfer the client did not send.
bad=$(awk 'FILENAME == ARGV[1] { r[$1] = r[$1] " " $2 ":" $3; next }
    { want = ($2 == 200) ? " " $3 ":-" $5 " " $4 ":" $5 : ""
      alt  = ($2 == 200) ? " " $4 ":" $5 " " $3 ":-" $5 : ""
      if (r[$1] != want && r[$1] != alt) { n++; print "  " $1 " answered " $2 ", rows:" (r[$1] == "" ? " none" : r[$1]) > "/dev/stderr" }
      sent[$1] = 1 }
    END { for (id in r) if (!(id in sent)) { n++; print "  rows of an unknown transfer " id ":" r[id] > "/dev/stderr" }
          print n + 0 }' "$RUN_DIR/rows" "$RUN_DIR/answers" 2>"$RUN_DIR/rows-bad")
cat "$RUN_DIR/rows-bad"
check "each committed transfer is in exactly its two banks, each aborted one in none ($bad wrong)" test "$bad" = 0

for img in "$TWOPC_IMAGE" "$TWOPC_DEMO_CLIENT_IMAGE" "$POSTGRES_IMAGE"; do
    user=$(podman image inspect --format '{{.Config.User}}' "$img" 2>/dev/null || true)
    check "$img runs as a non-root user ($user)" test -n "$user" -a "$user" != root -a "$user" != 0
done

echo
echo "$((100 * (checks - failures) / checks))%: Checks: $checks, Failures: $failures, Errors: 0"
[ "$failures" = 0 ]
