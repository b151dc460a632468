#!/usr/bin/env bash
# man-check: the man pages and the example configuration against the code,
# and the man pages through groff's and man's warnings. Prints one line per
# check and a Check-style summary line for scripts/test.
#
#  1. `twopcd --help` lists the same keys, sections and defaults as
#     coordinator/config.c's table (tests/config_keys prints the table).
#  2. twopc.conf(5) documents exactly the table's keys, each in its section
#     with its default and, for integers, its bounds.
#  3. etc/twopc.conf.example names every key in its section; a key
#     commented out (";key = value") shows the key's default.
#  4. twopcd(8) has every option of `twopcd --help` and every TWOPC_FAULT
#     point of coordinator/fault.c.
#  5. twopc-recover(8) has every command of `twopc-recover --help` under
#     COMMANDS and (but help) under EXIT STATUS, and every option of it and
#     of each command's --help.
#  6. each page formats without a warning: `groff -man -ww -z` and
#     `man --warnings -l`.
#
# KEEP_WORK=1 keeps its scratch directory (the extracted lists) for a look.
set -u

top=${TWOPC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${TWOPC_BUILDDIR:-$top}
man_dir=$build/docs/man
example=$top/etc/twopc.conf.example

work=$(mktemp -d "${TMPDIR:-/tmp}/twopc-man-check.XXXXXX") || exit 1
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT

# shellcheck source=tests/check-lib.sh
. "$top/tests/check-lib.sh"

for f in "$build/twopcd" "$build/twopc-recover" "$build/tests/config_keys" \
    "$man_dir/twopcd.8" "$man_dir/twopc-recover.8" "$man_dir/twopc.conf.5" "$example"; do
    if [ ! -e "$f" ]; then
        fail "$f is missing (not built? run make)"
        summary
    fi
done

# The table: SECTION NAME TYPE DEFAULT MIN MAX, tab-separated.
if ! "$build/tests/config_keys" >"$work/table.tsv" || [ ! -s "$work/table.tsv" ]; then
    fail "tests/config_keys did not print the key table"
    summary
fi
sort "$work/table.tsv" >"$work/table.sorted"

# A man page's source with \- as -, for looking up options.
plain() { sed 's/\\-/-/g' "$1"; }

# ---- 1. twopcd --help against the table ----------------------------------
"$build/twopcd" --help >"$work/help.txt" 2>&1
awk '
    /^  \[coordinator\] / { sec = "coordinator"; name = $2 }
    /^  \[participant NAME\] / { sec = "participant"; name = $3 }
    /^  \[/ {
        if ($0 ~ /\(required\)$/) def = "(required)"
        else if (match($0, /\(default [^()]*\)$/)) def = substr($0, RSTART + 9, RLENGTH - 10)
        else def = "?"
        print sec "\t" name "\t" def
    }' "$work/help.txt" | sort >"$work/help.keys"
cut -f 1,2,4 "$work/table.sorted" | sort >"$work/table.keys"
if diff -u "$work/table.keys" "$work/help.keys" >"$work/diff1"; then
    pass "twopcd --help lists the $(wc -l <"$work/table.keys") keys of the config table, with their defaults"
else
    fail "twopcd --help and the config table differ (- table, + --help)" "$work/diff1"
fi

# ---- 2. twopc.conf(5) against the table -----------------------------------
# Key tags: \fBNAME\fR (integer, MIN to MAX; default VALUE) or (...; required),
# under a .SH naming [coordinator] or [participant NAME].
awk '
    /^\.SH/ { sec = ""; if ($0 ~ /\[coordinator\]/) sec = "coordinator"; if ($0 ~ /\[participant/) sec = "participant"; next }
    sec != "" && /^\\fB[a-z0-9_]+\\fR \(.*\)$/ {
        name = $0; sub(/^\\fB/, "", name); sub(/\\fR.*/, "", name)
        inner = $0; sub(/^[^(]*\(/, "", inner); sub(/\)$/, "", inner)
        if (inner ~ /; required$/) def = "(required)"
        else if (match(inner, /; default .*$/)) { def = substr(inner, RSTART + 10); if (def == "empty") def = "" }
        else def = "?"
        type = "other"; min = "-"; max = "-"
        if (inner ~ /^integer, -?[0-9]+ to -?[0-9]+;/) {
            type = "integer"; split(inner, w, /[ ,;]+/); min = w[2]; max = w[4]
        }
        print sec "\t" name "\t" type "\t" def "\t" min "\t" max
    }' "$man_dir/twopc.conf.5" | sort >"$work/man.keys"
if diff -u "$work/table.sorted" "$work/man.keys" >"$work/diff2"; then
    pass "twopc.conf(5) documents exactly the $(wc -l <"$work/table.sorted") keys of the config table: sections, types, defaults, bounds"
else
    fail "twopc.conf(5) and the config table differ (- table: SECTION NAME TYPE DEFAULT MIN MAX; + man page)" \
        "$work/diff2"
fi

# ---- 3. the example configuration against the table ----------------------
awk -F '\t' -v table="$work/table.tsv" '
    BEGIN { while ((getline l < table) > 0) { split(l, f, "\t"); def[f[1] "/" f[2]] = f[4]; want[f[1] "/" f[2]] = 1 } }
    { sub(/\r$/, "") }
    /^\[coordinator\]/ { sec = "coordinator"; next }
    /^\[participant / { sec = "participant"; next }
    /^;?[a-z0-9_]+ = / {
        commented = ($0 ~ /^;/); line = $0; sub(/^;/, "", line)
        key = line; sub(/ = .*/, "", key); val = line; sub(/^[^=]*= /, "", val)
        k = sec "/" key
        if (!(k in def)) { printf "line %d: %s is not a key of [%s]\n", NR, key, sec; next }
        seen[k] = 1
        if (commented && val != def[k])
            printf "line %d: commented-out %s = %s, but its default is %s\n", NR, key, val, def[k]
    }
    END { for (k in want) if (!(k in seen)) printf "%s is not in the example\n", k }' \
    "$example" | sort >"$work/example.problems"
if [ ! -s "$work/example.problems" ]; then
    pass "etc/twopc.conf.example names every key in its section; keys commented out show their defaults"
else
    fail "etc/twopc.conf.example does not match the config table" "$work/example.problems"
fi

# ---- 4. twopcd(8): options and fault points --------------------------------
plain "$man_dir/twopcd.8" >"$work/twopcd.8.plain"
{
    grep -oE -- '(^|[ ,])--?[A-Za-z][a-z-]*' "$work/help.txt" | sed 's/^[ ,]*//' | sort -u
    sed -n 's/.*\] = "\([a-z_]*\)".*/\1/p' "$top/coordinator/fault.c" | grep -vx none
} >"$work/twopcd.words"
: >"$work/missing4"
while read -r w; do
    grep -qE -- "(^|[ \"])$w([ \",]|$)" "$work/twopcd.8.plain" || echo "$w" >>"$work/missing4"
done <"$work/twopcd.words"
if [ ! -s "$work/missing4" ] && [ -s "$work/twopcd.words" ]; then
    pass "twopcd(8) has every option of twopcd --help and every TWOPC_FAULT point ($(wc -l <"$work/twopcd.words"))"
else
    fail "twopcd(8) lacks these options or fault points" "$work/missing4"
fi

# ---- 5. twopc-recover(8): commands and options -----------------------------
plain "$man_dir/twopc-recover.8" >"$work/recover.8.plain"
"$build/twopc-recover" --help >"$work/recover-help.txt" 2>&1
awk '/^Commands:/ { on = 1; next } /^[^ ]/ { on = 0 } on && /^  [a-z]/ { print $1 }' \
    "$work/recover-help.txt" | sort -u >"$work/recover.commands"
{
    cat "$work/recover-help.txt"
    while read -r c; do "$build/twopc-recover" "$c" --help 2>&1; done <"$work/recover.commands"
} | grep -oE -- '(^|[ ,\[|])--?[A-Za-z][a-z-]*' | sed 's/^[] ,[|]*//' | sort -u >"$work/recover.options"
: >"$work/missing5"
# .TP tags per section: "COMMANDS status", "EXIT STATUS commit", ...
awk '/^\.SH/ { sec = $0; sub(/^\.SH +/, "", sec); gsub(/"/, "", sec) }
    prev == ".TP" && /^\.B[IR]? +[a-z-]+/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z-]+$/) print sec " " $i }
    { prev = $0 }' "$work/recover.8.plain" \
    | sort -u >"$work/recover.tags"
while read -r c; do
    grep -qx -- "COMMANDS $c" "$work/recover.tags" || echo "command $c: no entry under COMMANDS" >>"$work/missing5"
    [ "$c" = help ] || grep -qx -- "EXIT STATUS $c" "$work/recover.tags" \
        || echo "command $c: no entry under EXIT STATUS" >>"$work/missing5"
done <"$work/recover.commands"
while read -r o; do
    grep -qE -- "(^|[ \"\[|])$o([] \",|]|$)" "$work/recover.8.plain" || echo "option $o" >>"$work/missing5"
done <"$work/recover.options"
if [ ! -s "$work/missing5" ] && [ -s "$work/recover.commands" ] && [ -s "$work/recover.options" ]; then
    pass "twopc-recover(8) has every command ($(tr '\n' ' ' <"$work/recover.commands" | sed 's/ $//')) and option ($(wc -l <"$work/recover.options")) of its --help texts"
else
    fail "twopc-recover(8) lacks these" "$work/missing5"
fi

# ---- 6. lint ----------------------------------------------------------------
have_groff=yes have_man=yes
command -v groff >/dev/null 2>&1 || have_groff=no
command -v man >/dev/null 2>&1 || have_man=no
for page in twopcd.8 twopc-recover.8 twopc.conf.5; do
    f=$man_dir/$page
    if [ "$have_groff" = no ] || [ "$have_man" = no ]; then
        fail "$page: cannot lint: groff or man is missing (Debian: groff-base, man-db; scripts/install-deps)"
        continue
    fi
    : >"$work/lint"
    LC_ALL=C groff -man -ww -z "$f" >>"$work/lint" 2>&1
    LC_ALL=C.UTF-8 MANWIDTH=80 MANPAGER=cat PAGER=cat man --warnings -E UTF-8 -l "$f" \
        >"$work/rendered" 2>>"$work/lint"
    grep -q '^NAME' "$work/rendered" || echo "man -l rendered no NAME section" >>"$work/lint"
    if [ -s "$work/lint" ]; then
        fail "$page: warnings from groff -ww or man --warnings" "$work/lint"
    else
        pass "$page: groff -man -ww and man --warnings -l: no warnings ($(wc -l <"$work/rendered") lines)"
    fi
done

summary
