#!/bin/sh
# fuzz-smoke: the libFuzzer harnesses as a `make check` smoke test. Runs
# tests/fuzz_request, tests/fuzz_dlog and tests/fuzz_http for a fixed number of executions
# (FUZZ_SMOKE_RUNS, default 20000; fixed seed) over their seed corpus and
# every kept regression input (tests/fuzz/regressions/NAME), and prints a
# Check-style summary line, one check per harness, for scripts/test.
# Exits 77 (skip) without a clang that links -fsanitize=fuzzer.
set -u

top=${TWOPC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${TWOPC_BUILDDIR:-$top}
runs=${FUZZ_SMOKE_RUNS:-20000}

if [ "${TWOPC_FUZZER_AVAILABLE:-no}" != yes ]; then
    echo "fuzz-smoke: skip: no clang that links -fsanitize=fuzzer (Debian: clang libclang-rt-14-dev; then re-run ./configure)"
    exit 77
fi
if [ ! -x "$build/tests/fuzz_request" ] || [ ! -x "$build/tests/fuzz_dlog" ] || [ ! -x "$build/tests/fuzz_http" ]; then
    ${MAKE:-make} -C "$build" fuzz-build >&2 || {
        echo "fuzz-smoke: make fuzz-build failed"
        echo "0%: Checks: 3, Failures: 0, Errors: 3"
        exit 1
    }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/twopc-fuzz-smoke.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

checks=0 failures=0
for h in request dlog http; do
    checks=$((checks + 1))
    mkdir -p "$work/$h/corpus" "$work/$h/artifacts"
    rc=0
    "$build/tests/fuzz_$h" -runs="$runs" -seed=1 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/$h/artifacts/" \
        "$work/$h/corpus" "$top/tests/fuzz/$h" "$top/tests/fuzz/regressions/$h" \
        >"$work/$h/log" 2>&1 || rc=$?
    nseeds=$(find "$top/tests/fuzz/$h" -type f | wc -l)
    nregr=$(find "$top/tests/fuzz/regressions/$h" -type f ! -name '.*' | wc -l)
    done_line=$(grep -m 1 '^Done [0-9]* runs' "$work/$h/log" || true)
    if [ "$rc" = 0 ] && [ -n "$done_line" ]; then
        echo "fuzz_$h: ok: $done_line ($nseeds seeds, $nregr regression inputs)"
    else
        failures=$((failures + 1))
        echo "fuzz_$h: FAILED (exit status $rc); its output:"
        tail -n 60 "$work/$h/log"
        for a in "$work/$h/artifacts"/*; do
            [ -f "$a" ] || continue
            keep="$build/tests/fuzz-smoke-$h-$(basename "$a")"
            cp "$a" "$keep" && echo "fuzz_$h: failing input kept as $keep"
        done
    fi
done

pct=$(( (checks - failures) * 100 / checks ))
echo "$pct%: Checks: $checks, Failures: $failures, Errors: 0"
[ "$failures" = 0 ]
