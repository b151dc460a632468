#!/bin/sh
# twopcd-entrypoint: starts twopcd in its container. Writes the configuration
# from TWOPC_* variables (unless a file of the user's is mounted at
# $TWOPC_CONFIG), then runs `twopcd -c $TWOPC_CONFIG [ARGS...]`; a first
# argument that is a command rather than an option runs that command instead
# (e.g. `twopc-recover -c /etc/twopc/twopcd.conf status`).
#
# Variables (docker/README.md):
#   TWOPC_CONFIG           config file (default /etc/twopc/twopcd.conf)
#   TWOPC_ID               coordinator id (default docker)
#   TWOPC_LISTEN           host:port (the image sets 0.0.0.0:8432)
#   TWOPC_LOG_DIR          decision log (the image sets /var/lib/twopc)
#   TWOPC_LOG_LEVEL        debug, info, warning, error (default info)
#   TWOPC_PARTICIPANTS     participant names, separated by spaces (required)
#   TWOPC_CONNINFO_<name>  libpq conninfo of participant <name> (required)
#   TWOPC_POOL_SIZE        pool size of every participant (default 8)
#   TWOPC_SWEEP_INTERVAL_MS, TWOPC_SWEEP_GRACE_MS, TWOPC_AUTH_TOKEN_FILE
#                          the config keys of the same name, when set
#   TWOPC_DEMO_CRASH_AT    demo only: N > 0 arms twopcd's test fault point
#                          after_log_fsync on its N-th commit (it SIGKILLs
#                          itself right after the COMMIT record is durable,
#                          before any COMMIT PREPARED or reply), and this
#                          script then starts twopcd again, once, unarmed
set -eu

CONF=${TWOPC_CONFIG:-/etc/twopc/twopcd.conf}
MARK="; written by twopcd-entrypoint from TWOPC_* variables"

say() { echo "twopcd-entrypoint: $*" >&2; }
die() { say "$*"; exit 2; }

# write_config: write $CONF from the environment.
write_config() {
    names=${TWOPC_PARTICIPANTS:-}
    [ -n "$names" ] || die "TWOPC_PARTICIPANTS is empty: name the participants (or mount a config at $CONF)"
    tmp="$CONF.tmp.$$"
    umask 077
    {
        echo "$MARK"
        echo "[coordinator]"
        echo "id = ${TWOPC_ID:-docker}"
        echo "listen = ${TWOPC_LISTEN:?}"
        echo "log_dir = ${TWOPC_LOG_DIR:?}"
        echo "log_level = ${TWOPC_LOG_LEVEL:-info}"
        [ -z "${TWOPC_SWEEP_INTERVAL_MS:-}" ] || echo "sweep_interval_ms = $TWOPC_SWEEP_INTERVAL_MS"
        [ -z "${TWOPC_SWEEP_GRACE_MS:-}" ] || echo "sweep_grace_ms = $TWOPC_SWEEP_GRACE_MS"
        [ -z "${TWOPC_AUTH_TOKEN_FILE:-}" ] || echo "auth_token_file = $TWOPC_AUTH_TOKEN_FILE"
        for name in $names; do
            case "$name" in
                *[!A-Za-z0-9_]*) die "participant name '$name': letters, digits and '_' only" ;;
            esac
            eval "conninfo=\${TWOPC_CONNINFO_$name:-}"
            [ -n "$conninfo" ] || die "TWOPC_CONNINFO_$name is empty: give participant $name's libpq conninfo"
            echo
            echo "[participant $name]"
            echo "conninfo = $conninfo"
            echo "pool_size = ${TWOPC_POOL_SIZE:-8}"
        done
    } >"$tmp"
    mv "$tmp" "$CONF"
}

# A config without our first line is the user's: use it as it is.
if [ ! -f "$CONF" ] || [ "$(head -n 1 "$CONF")" = "$MARK" ]; then
    write_config
fi

case "${1:-}" in
    "" | -*) ;;
    *) exec "$@" ;;
esac

crash_at=${TWOPC_DEMO_CRASH_AT:-0}
case "$crash_at" in
    "" | *[!0-9]*) die "TWOPC_DEMO_CRASH_AT=$crash_at: expected a number" ;;
esac
if [ "$crash_at" -eq 0 ]; then
    exec twopcd -c "$CONF" "$@"
fi

# The demo's crash. twopcd runs as our child with the fault armed; SIGTERM
# and SIGINT are passed on to it. When it dies of SIGKILL, start it again
# unarmed, as a supervisor (systemd's Restart=always, a container restart
# policy) would: its start-up recovery then settles what the crash left.
# (The restart happens here, not through a restart policy, because
# `docker compose up --exit-code-from` ends the whole demo as soon as any
# container exits.)
say "TWOPC_DEMO_CRASH_AT=$crash_at: twopcd will kill itself (SIGKILL) right after its commit number $crash_at is durable"
TWOPC_FAULT="after_log_fsync:crash@$crash_at" twopcd -c "$CONF" "$@" &
child=$!
stopping=no
trap 'stopping=yes; kill -TERM "$child" 2>/dev/null || true' TERM INT
while :; do
    status=0
    wait "$child" || status=$?
    # wait also returns when a trapped signal arrives; go on waiting then.
    kill -0 "$child" 2>/dev/null || break
done
trap - TERM INT
if [ "$stopping" = no ] && [ "$status" -eq 137 ]; then
    say "twopcd (pid $child) was killed by SIGKILL; starting it again without the fault"
    exec twopcd -c "$CONF" "$@"
fi
exit "$status"
