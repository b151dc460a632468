#!/bin/bash
# twopcd-healthcheck: the image's HEALTHCHECK. Exits 0 when twopcd answers
# GET /healthz with HTTP 200, which it does from the moment it listens (after
# start-up recovery), whether every participant is reachable or not: an
# unreachable database is reported in the body ("degraded"), and restarting
# the coordinator would not fix it. Uses bash's /dev/tcp, so the image needs
# no curl.
set -u

# The address twopcd listens on: TWOPC_LISTEN, else the config's listen key.
listen=${TWOPC_LISTEN:-}
conf=${TWOPC_CONFIG:-/etc/twopc/twopcd.conf}
if [ -f "$conf" ]; then
    from_conf=$(sed -n 's/^[[:space:]]*listen[[:space:]]*=[[:space:]]*\([^;[:space:]]*\).*/\1/p' "$conf" | tail -n 1)
    [ -z "$from_conf" ] || listen=$from_conf
fi
host=${listen%:*}
port=${listen##*:}
case "$host" in "" | 0.0.0.0 | "*") host=127.0.0.1 ;; esac

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
read -r -t 3 _ code _ <&3 || exit 1
[ "$code" = 200 ]
