#!/bin/bash
# postgres-entrypoint: the entrypoint of docker/postgres.Dockerfile, a small
# stand-in for the official postgres image's docker-entrypoint.sh. On the
# first start (empty PGDATA) it runs initdb with POSTGRES_USER and
# POSTGRES_PASSWORD, lets every address in with scram-sha-256, creates
# POSTGRES_DB and runs /docker-entrypoint-initdb.d/*.sql and *.sh on a
# server that listens on its Unix socket only. Then it runs the command:
# `postgres ARGS...` (the default), or just the server's options (`-c ...`).
set -euo pipefail

say() { echo "postgres-entrypoint: $*" >&2; }

if [ "${1:-}" != "" ] && [ "${1:0:1}" = "-" ]; then
    set -- postgres "$@"
fi
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
shift

: "${PGDATA:=/var/lib/postgresql/data}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        say "POSTGRES_PASSWORD is empty: set it (the official image refuses to start without it too)"
        exit 1
    fi
    say "initializing $PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    {
        echo
        echo "# docker: every address, with a password"
        echo "host all all all scram-sha-256"
    } >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"

    # The init scripts run on a server nobody can reach over TCP yet (the
    # options after the command's own win), on the Unix socket of port 5432.
    pg_ctl -D "$PGDATA" -w -o "$(printf '%q ' "$@") -c listen_addresses='' -c port=5432" start >/dev/null
    psql=(psql -v ON_ERROR_STOP=1 --port 5432 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" -q <<<'CREATE DATABASE :"db";'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) say "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -q -f "$f" ;;
            *.sh) say "running $f"; . "$f" ;;
            *) [ ! -e "$f" ] || say "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    say "PostgreSQL init process complete; ready for start up"
fi

exec postgres "$@"
