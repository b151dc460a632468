# check-lib.sh: what the shell tests share (sourced, not run). Counts
# checks and prints Check's summary line, which scripts/test tallies.
#
#   pass WHAT                a check that held
#   fail WHAT [DETAIL_FILE]  a failed check, with the lines of DETAIL_FILE
#   summary                  "N%: Checks: N, Failures: N, Errors: 0"; exits
#                            0 when nothing failed, else 1

checks=0 failures=0
pass() {
    checks=$((checks + 1))
    echo "ok: $1"
}
fail() {
    checks=$((checks + 1)) failures=$((failures + 1))
    echo "FAILED: $1"
    [ -n "${2:-}" ] && [ -s "$2" ] && sed 's/^/    /' "$2"
    return 0
}
summary() {
    local pct=0
    [ "$checks" -gt 0 ] && pct=$(((checks - failures) * 100 / checks))
    echo "$pct%: Checks: $checks, Failures: $failures, Errors: 0"
    [ "$failures" = 0 ]
    exit
}
