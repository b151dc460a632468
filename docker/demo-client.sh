#!/bin/bash
# demo-client: the client of the compose demo (docker/docker-compose.yml).
# Waits until the three banks and twopcd are up, then moves money between
# the banks through twopcd: DEMO_TRANSFERS transfers, DEMO_PARALLEL at a
# time, every one with its own Idempotency-Key. Meanwhile twopcd kills
# itself (TWOPC_DEMO_CRASH_AT, see twopcd-entrypoint.sh) and is started
# again; a request that loses its connection is sent again, same key, same
# body, until it gets an answer. Then it checks, in the banks themselves:
#   - the money in all banks together is what it was before
#   - every transfer answered 200 is in both of its banks, with its amounts
#   - every transfer answered otherwise is in no bank
#   - no bank has a prepared transaction left (after POST /v1/sweep)
#   - when a crash was asked for: twopcd did die (requests lost their
#     connection) and a commit made just before the crash was answered
#     after the restart from the decision log (Idempotent-Replayed)
# prints a summary and exits 0 when all of this holds, 1 otherwise.
#
# One line per transfer, for people and for tests/docker-demo.sh:
#   transfer ID: FROM#ACCOUNT -> TO#ACCOUNT AMOUNT: HTTP CODE OUTCOME[ (NOTE)]
#
# Environment (docker-compose.yml sets these):
#   TWOPCD_URL        twopcd's API (default http://twopcd:8432)
#   DEMO_BANKS        the participants (default "bank_a bank_b bank_c")
#   DEMO_PG_<bank>    libpq conninfo of each bank's database (default
#                     "host=<bank> port=5432 dbname=bank user=postgres";
#                     the password comes from PGPASSWORD)
#   DEMO_TRANSFERS    how many transfers (default 60)
#   DEMO_PARALLEL     how many at a time (default 4)
#   DEMO_SEED         seed of the transfers' random banks, accounts and
#                     amounts (default 1)
#   DEMO_CRASH_AT     the TWOPC_DEMO_CRASH_AT given to twopcd: 0 means no
#                     crash is expected (default 0)
#   DEMO_WAIT_S       how long to wait for the banks and twopcd (default 180)
set -uo pipefail

URL=${TWOPCD_URL:-http://twopcd:8432}
read -r -a BANKS <<<"${DEMO_BANKS:-bank_a bank_b bank_c}"
N=${DEMO_TRANSFERS:-60}
P=${DEMO_PARALLEL:-4}
SEED=${DEMO_SEED:-1}
CRASH_AT=${DEMO_CRASH_AT:-0}
WAIT_S=${DEMO_WAIT_S:-180}
RETRY_S=120          # how long one transfer is retried without an answer
ABORT_EVERY=10       # transfer i with i % ABORT_EVERY == 7 asks for too much

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf '\n== %s\n' "$*"; }
fail() { echo "demo-client: $*" >&2; exit 1; }

conninfo() {
    local var="DEMO_PG_$1"
    printf '%s' "${!var:-host=$1 port=5432 dbname=bank user=postgres}"
}
# sql BANK QUERY: run QUERY in BANK, unaligned output.
sql() { psql "$(conninfo "$1")" -X -q -At -v ON_ERROR_STOP=1 -c "$2"; }

# ------------------------------------------------------------ waiting --

say "Waiting for ${BANKS[*]} and twopcd at $URL"
deadline=$((SECONDS + WAIT_S))
for bank in "${BANKS[@]}"; do
    # The table exists once the image's init scripts ran demo_bank.sql.
    until sql "$bank" 'SELECT 1 FROM accounts LIMIT 1' >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$bank: no accounts table after ${WAIT_S} s: $(sql "$bank" 'SELECT 1 FROM accounts' 2>&1 | head -n 1)"
        sleep 1
    done
    echo "$bank: ready"
done
until [ "$(curl -s --max-time 5 "$URL/healthz" | jq -r .status 2>/dev/null)" = ok ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "twopcd: GET /healthz did not say \"ok\" within ${WAIT_S} s: $(curl -s --max-time 5 "$URL/healthz" 2>&1)"
    sleep 1
done
echo "twopcd: $(curl -s "$URL/healthz" | jq -c .)"

money() {
    local bank total=0 m
    for bank in "${BANKS[@]}"; do
        m=$(sql "$bank" 'SELECT sum(balance) FROM accounts') || fail "$bank: cannot read the balances"
        total=$((total + m))
    done
    echo "$total"
}
money_before=$(money)
RUN="d$(date -u +%y%m%d%H%M%S)"
echo "money in all banks: $money_before; this run's transfers are named $RUN-NNNN"

# ---------------------------------------------------------- transfers --

# plan I: set FROM, FROM_ACC, TO, TO_ACC, AMOUNT of transfer I, the same
# for the same DEMO_SEED.
plan() {
    local i=$1 nb=${#BANKS[@]} a b
    RANDOM=$((SEED * 100003 + i))
    a=$((RANDOM % nb))
    b=$(((a + 1 + RANDOM % (nb - 1)) % nb))
    FROM=${BANKS[a]} TO=${BANKS[b]}
    FROM_ACC=$((1 + RANDOM % 10)) TO_ACC=$((1 + RANDOM % 10))
    AMOUNT=$((1 + RANDOM % 150))
    if [ $((i % ABORT_EVERY)) = 7 ]; then
        AMOUNT=5000     # more than any account holds: the guard aborts it
    fi
}

# send I: run transfer I until it gets an HTTP answer, print its line and
# append "ID CODE OUTCOME REPLAYED TRIES LOST FROM TO AMOUNT" to
# $WORK/result.I.
send() {
    local i=$1 id body code rc tries=0 lost=0 outcome replayed note until type
    id=$(printf '%s-%04d' "$RUN" "$i")
    plan "$i"
    body=$(jq -nc --arg id "$id" --arg from "$FROM" --arg to "$TO" \
        --argjson a "$AMOUNT" --argjson fa "$FROM_ACC" --argjson ta "$TO_ACC" '{
        branches: {
          ($from): [{sql: "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
                     params: [$a, $fa], expect_rows: 1},
                    {sql: "INSERT INTO transfers (id, amount) VALUES ($1, $2)", params: [$id, (0 - $a)]}],
          ($to):   [{sql: "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
                     params: [$a, $ta], expect_rows: 1},
                    {sql: "INSERT INTO transfers (id, amount) VALUES ($1, $2)", params: [$id, $a]}]},
        timeout_ms: 5000}')
    until=$((SECONDS + RETRY_S))
    while :; do
        tries=$((tries + 1))
        rc=0
        code=$(curl -s -o "$WORK/body.$i" -D "$WORK/head.$i" -w '%{http_code}' --max-time 30 \
            -H 'Content-Type: application/json' -H "Idempotency-Key: \"$id\"" \
            --data-binary "$body" "$URL/v1/transactions") || rc=$?
        if [ "$rc" != 0 ] || [ "$code" = 000 ]; then
            # No answer: the connection was refused, reset or closed (twopcd
            # died, or is starting). Whether it committed is unknown; the
            # same key and body make the retry safe.
            lost=$((lost + 1))
            echo "transfer $id: no answer (curl exit $rc); sending it again with the same Idempotency-Key" >&2
        else
            type=$(jq -r '.type // empty' "$WORK/body.$i" 2>/dev/null)
            # The first attempt is still running in twopcd: ask again.
            [ "$type" = "https://twopc.dev/problems/idempotency-key-in-use" ] || break
        fi
        [ "$SECONDS" -lt "$until" ] || { code=none; break; }
        sleep 0.5
    done
    if [ "$code" = none ]; then
        outcome=unanswered replayed=no
    else
        outcome=$(jq -r '.outcome // "none"' "$WORK/body.$i" 2>/dev/null || echo none)
        replayed=no
        grep -qi '^Idempotent-Replayed: *true' "$WORK/head.$i" && replayed=yes
    fi
    note=""
    [ "$tries" = 1 ] || note="after $tries tries"
    [ "$replayed" = no ] || note="$note; replayed: committed before the crash, answered from the decision log"
    if [ "$code" != 200 ] && [ "$code" != none ]; then
        note="${note:+$note; }$(jq -r '[.title, (.sqlstate // empty)] | join(" ")' "$WORK/body.$i" 2>/dev/null)"
    fi
    echo "transfer $id: $FROM#$FROM_ACC -> $TO#$TO_ACC $AMOUNT: HTTP $code $outcome${note:+ ($note)}"
    echo "$id $code $outcome $replayed $tries $lost $FROM $TO $AMOUNT" >"$WORK/result.$i"
}

say "Sending $N transfers, $P at a time$([ "$CRASH_AT" -gt 0 ] && echo "; twopcd will die at its commit number $CRASH_AT")"
started=$SECONDS
for ((w = 1; w <= P; w++)); do
    (for ((i = w; i <= N; i += P)); do send "$i"; done) &
done
wait
echo "all $N transfers answered in $((SECONDS - started)) s"
cat "$WORK"/result.* >"$WORK/results" 2>/dev/null || true

# -------------------------------------------------------------- checks --

say "Waiting until no bank holds a prepared transaction (POST /v1/sweep)"
prepared_total=-1
deadline=$((SECONDS + 60))
while :; do
    prepared_total=0 prepared_list=""
    for bank in "${BANKS[@]}"; do
        n=$(sql "$bank" 'SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()') || n=999
        prepared_total=$((prepared_total + n))
        prepared_list="$prepared_list $bank $n,"
    done
    [ "$prepared_total" -gt 0 ] || break
    [ "$SECONDS" -lt "$deadline" ] || break
    echo "prepared:${prepared_list%,}; asking twopcd to sweep"
    curl -s --max-time 30 -X POST "$URL/v1/sweep" >/dev/null || true
    sleep 2
done
echo "prepared:${prepared_list%,}"

say "Checking the banks"
: >"$WORK/rows"
for bank in "${BANKS[@]}"; do
    sql "$bank" "SELECT id, amount FROM transfers WHERE id LIKE '$RUN-%'" \
        | awk -F '|' -v b="$bank" '{ print b, $1, $2 }' >>"$WORK/rows" \
        || fail "$bank: cannot read the transfers"
done
money_after=$(money)

# Every answered transfer against the rows: a 200 needs exactly its two
# rows (-AMOUNT in FROM, +AMOUNT in TO), anything else none at all.
read -r n_ok n_ok_bad n_abort n_abort_bad n_unanswered n_lost n_replayed n_stray < <(awk '
    FILENAME == ARGV[1] { rows[$2] = rows[$2] " " $1 ":" $3; next }
    {
        id = $1; code = $2; lost += $6; if ($4 == "yes") replayed++
        seen[id] = 1
        if (code == "none") { unanswered++; next }
        if (code == 200) {
            ok++
            if (rows[id] != " " $7 ":-" $9 " " $8 ":" $9 && rows[id] != " " $8 ":" $9 " " $7 ":-" $9) {
                okbad++; print "committed transfer " id " is not in both banks as it should be:" rows[id] > "/dev/stderr"
            }
        } else {
            ab++
            if (rows[id] != "") { abbad++; print "aborted transfer " id " left rows:" rows[id] > "/dev/stderr" }
        }
    }
    END {
        for (id in rows) if (!(id in seen)) { stray++; print "rows of a transfer nobody sent: " id rows[id] > "/dev/stderr" }
        print ok + 0, okbad + 0, ab + 0, abbad + 0, unanswered + 0, lost + 0, replayed + 0, stray + 0
    }' "$WORK/rows" "$WORK/results")
n_results=$(wc -l <"$WORK/results")

failures=0
check() {   # check OK|FAIL TEXT
    printf '%-4s %s\n' "$1" "$2"
    [ "$1" = ok ] || failures=$((failures + 1))
}
say "Summary"
echo "transfers: $n_results of $N answered: $n_ok committed (HTTP 200), $n_abort aborted ($(awk '$2 != 200 && $2 != "none" { c[$2]++ } END { s = ""; for (k in c) s = s (s ? ", " : "") c[k] " x HTTP " k; print (s ? s : "none") }' "$WORK/results"))"
echo "requests that lost their connection and were sent again: $n_lost; answers replayed from the decision log: $n_replayed"
[ "$n_results" = "$N" ] && [ "$n_unanswered" = 0 ] \
    && check ok "every transfer got an answer" \
    || check FAIL "$((N - n_results + n_unanswered)) transfer(s) never got an answer"
[ "$money_after" = "$money_before" ] \
    && check ok "money conserved: $money_before before, $money_after after" \
    || check FAIL "money changed: $money_before before, $money_after after"
[ "$n_ok_bad" = 0 ] \
    && check ok "all $n_ok committed transfers are in both of their banks" \
    || check FAIL "$n_ok_bad committed transfer(s) missing or wrong in a bank"
[ "$n_abort_bad" = 0 ] \
    && check ok "all $n_abort aborted transfers left no trace in any bank" \
    || check FAIL "$n_abort_bad aborted transfer(s) left rows behind"
[ "$n_stray" = 0 ] \
    && check ok "no bank holds a transfer of this run that nobody was told about" \
    || check FAIL "$n_stray transfer(s) in the banks that no answer accounts for"
[ "$prepared_total" = 0 ] \
    && check ok "no prepared transaction left in any bank" \
    || check FAIL "prepared transactions left:${prepared_list%,}"
if [ "$CRASH_AT" -gt 0 ]; then
    [ "$n_lost" -gt 0 ] \
        && check ok "twopcd died during the run ($n_lost request(s) lost their connection) and came back" \
        || check FAIL "no request lost its connection: did twopcd not crash (commit number $CRASH_AT of $n_ok)?"
    [ "$n_replayed" -gt 0 ] \
        && check ok "$n_replayed commit(s) made just before the crash were answered after the restart, from the decision log" \
        || check FAIL "no answer was replayed: the commit twopcd died after was not answered from its log"
fi
echo
if [ "$failures" = 0 ]; then
    echo "RESULT: PASS"
    exit 0
fi
echo "RESULT: FAIL ($failures check(s) failed)"
exit 1
