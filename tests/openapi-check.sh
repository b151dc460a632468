#!/usr/bin/env bash
# openapi-check: the API contract test of `make check`.
#
# Lints docs/openapi.yaml with two OpenAPI 3.1 validators and strict
# JSON Schema 2020-12 compilation, proves the validator rejects known-bad
# responses, then validates against the spec every HTTP response the
# integration tests received: tests/testlib.c appends each to the test
# program's trace (tests/PROGRAM.api-trace.jsonl, see Makefile.am), and
# $TWOPC_API_TRACES lists the traces to check (whitespace-separated; a
# missing file is a program that got no response). See
# tests/openapi/check.mjs.
#
# Needs node (18 or later) and npm: scripts/install-deps installs them. The
# npm packages (tests/openapi/package-lock.json) are installed with `npm ci`
# into tests/openapi/node_modules when missing or older than the lock file.
#
# Exit: 0 pass, 1 fail (missing node/npm too: the suite installs them), 77
# (SKIP) when no integration test ran, so the trace is empty.
set -uo pipefail

top=${TWOPC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
dir=$top/tests/openapi

fail() {
    echo "openapi-check: FAIL: $*"
    # A Check-style line, so scripts/test counts this as one failed check.
    echo "0%: Checks: 1, Failures: 1, Errors: 0"
    exit 1
}

command -v node >/dev/null 2>&1 \
    || fail "node is not installed; run scripts/install-deps (it installs Debian's nodejs and npm)"
command -v npm >/dev/null 2>&1 \
    || fail "npm is not installed; run scripts/install-deps (it installs Debian's nodejs and npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 18 ] 2>/dev/null \
    || fail "node $(node --version 2>/dev/null) is too old: 18 or later is needed (Debian 12's nodejs is 18)"

# npm ci when node_modules is missing or older than the lock file.
stamp=$dir/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
    echo "openapi-check: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) \
        || fail "npm ci failed in $dir (is the npm registry reachable?)"
fi

[ -n "${TWOPC_API_TRACES+set}" ] \
    || echo "openapi-check: TWOPC_API_TRACES is not set: lint and self-test only"
# shellcheck disable=SC2086  # a whitespace-separated list of paths
exec node "$dir/check.mjs" --spec "$top/docs/openapi.yaml" ${TWOPC_API_TRACES:-}
