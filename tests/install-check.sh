#!/usr/bin/env bash
# install-check: `make install` and `make uninstall` into a scratch DESTDIR.
# Prints one line per check and a Check-style summary line for scripts/test.
#
#  1. make install DESTDIR=... succeeds;
#  2. it installs exactly the expected files, where configure said, with
#     their modes (programs 755, the rest 644): twopcd in sbindir,
#     twopc-recover in bindir, the three man pages, the example
#     configuration and the docs in docdir, the SQL files in pkgdatadir and
#     the systemd unit in systemdsystemunitdir (unless configured without);
#  3. the installed programs run (--version);
#  4. no @placeholder@ is left in the installed pages and unit, and the
#     unit starts the installed twopcd with $(sysconfdir)/twopc/twopc.conf;
#  5. `man -l` renders each installed page without a warning;
#  6. `systemd-analyze verify` accepts the unit, without a word of warning
#     (skipped, saying why, without systemd-analyze);
#  7. make uninstall DESTDIR=... leaves no file behind.
#
# KEEP_WORK=1 keeps the DESTDIR for a look.
set -u

top=${TWOPC_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${TWOPC_BUILDDIR:-$top}
make=${MAKE:-make}

dest=$(mktemp -d "${TMPDIR:-/tmp}/twopc-install-check.XXXXXX") || exit 1
work=$dest.work
mkdir -p "$work" || exit 1
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$dest" "$work"' EXIT

# shellcheck source=tests/check-lib.sh
. "$top/tests/check-lib.sh"

# A make of its own: not the jobserver or the command-line variables of the
# `make check` that runs this test.
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES "$make" -C "$build" "$@"
}

# The installation directories, as the Makefile has them.
submake -s -f Makefile -f - twopc-install-dirs >"$work/dirs" 2>"$work/dirs.err" <<'EOF'
twopc-install-dirs:
	@echo "bindir='$(bindir)'"
	@echo "sbindir='$(sbindir)'"
	@echo "sysconfdir='$(sysconfdir)'"
	@echo "man5dir='$(man5dir)'"
	@echo "man8dir='$(man8dir)'"
	@echo "docdir='$(docdir)'"
	@echo "pkgdatadir='$(pkgdatadir)'"
	@echo "systemdsystemunitdir='$(systemdsystemunitdir)'"
	@echo "version='$(PACKAGE_VERSION)'"
EOF
unit_wanted=yes
if ! grep -q "^version='.\+'$" "$work/dirs"; then
    fail "cannot read the installation directories from $build/Makefile" "$work/dirs.err"
    summary
fi
. "$work/dirs"
case "$systemdsystemunitdir" in
"" | no) unit_wanted=no ;;
esac

# ---- 1. make install ----------------------------------------------------------
if submake install DESTDIR="$dest" >"$work/install.out" 2>&1; then
    pass "make install DESTDIR=$dest"
else
    tail -n 30 "$work/install.out" >"$work/install.tail"
    fail "make install DESTDIR=$dest failed" "$work/install.tail"
    summary
fi

# ---- 2. what it installed -------------------------------------------------------
{
    echo "755 $sbindir/twopcd"
    echo "755 $bindir/twopc-recover"
    echo "644 $man8dir/twopcd.8"
    echo "644 $man8dir/twopc-recover.8"
    echo "644 $man5dir/twopc.conf.5"
    for f in twopc.conf.example README.md API.md OPERATIONS.md ARCHITECTURE.md openapi.yaml; do
        echo "644 $docdir/$f"
    done
    echo "644 $pkgdatadir/demo_bank.sql"
    echo "644 $pkgdatadir/participant_check.sql"
    [ "$unit_wanted" = yes ] && echo "644 $systemdsystemunitdir/twopcd.service"
} | sort >"$work/expected"
(cd "$dest" && find . ! -type d -printf '%m /%P\n') | sort >"$work/installed"
if diff -u "$work/expected" "$work/installed" >"$work/diff"; then
    pass "installed exactly the $(wc -l <"$work/expected") expected files, with their modes$([ "$unit_wanted" = no ] && echo " (no unit: configured --without-systemdsystemunitdir)")"
else
    fail "the installed files differ from the expected ones (- expected, + installed: MODE PATH)" "$work/diff"
fi

# ---- 3. the installed programs run ------------------------------------------------
: >"$work/run"
for p in "$sbindir/twopcd" "$bindir/twopc-recover"; do
    out=$("$dest$p" --version 2>&1)
    [ "$out" = "$(basename "$p") $version" ] || echo "$p --version printed '$out'" >>"$work/run"
done
if [ ! -s "$work/run" ]; then
    pass "the installed twopcd and twopc-recover run (--version: $version)"
else
    fail "the installed programs do not run" "$work/run"
fi

# ---- 4. paths in the installed pages and unit ---------------------------------------
: >"$work/paths"
generated="$man8dir/twopcd.8 $man8dir/twopc-recover.8 $man5dir/twopc.conf.5"
[ "$unit_wanted" = yes ] && generated="$generated $systemdsystemunitdir/twopcd.service"
for f in $generated; do
    [ -f "$dest$f" ] || continue
    grep -Hn '@[A-Za-z_]*@' "$dest$f" >>"$work/paths"
done
grep -q "$sysconfdir/twopc/twopc.conf" "$dest$man8dir/twopcd.8" 2>/dev/null \
    || echo "twopcd.8 does not name $sysconfdir/twopc/twopc.conf" >>"$work/paths"
if [ "$unit_wanted" = yes ]; then
    unit=$dest$systemdsystemunitdir/twopcd.service
    want="ExecStart=$sbindir/twopcd -c $sysconfdir/twopc/twopc.conf"
    grep -qxF "$want" "$unit" 2>/dev/null || echo "the unit has no line '$want'" >>"$work/paths"
fi
if [ ! -s "$work/paths" ]; then
    pass "the installed pages and unit carry configure's paths ($sbindir/twopcd, $sysconfdir/twopc/twopc.conf)"
else
    fail "placeholders or wrong paths in the installed files" "$work/paths"
fi

# ---- 5. man -l renders each installed page ---------------------------------------
for f in "$man8dir/twopcd.8" "$man8dir/twopc-recover.8" "$man5dir/twopc.conf.5"; do
    page=$(basename "$f")
    if ! command -v man >/dev/null 2>&1; then
        fail "$page: man is missing (Debian: man-db; scripts/install-deps)"
        continue
    fi
    LC_ALL=C.UTF-8 MANWIDTH=80 MANPAGER=cat PAGER=cat man --warnings -E UTF-8 -l "$dest$f" \
        >"$work/rendered" 2>"$work/man.err"
    name=$(sed -n '/^NAME$/{n;s/^ *//p;q}' "$work/rendered")
    if [ -s "$work/man.err" ] || [ -z "$name" ]; then
        echo "rendered NAME line: '$name'" >>"$work/man.err"
        fail "$page: man -l on the installed page" "$work/man.err"
    else
        pass "$page: man -l renders the installed page ($(wc -l <"$work/rendered") lines): $name"
    fi
done

# ---- 6. systemd-analyze verify -----------------------------------------------------
if [ "$unit_wanted" = no ]; then
    echo "systemd-analyze verify: skipped: configured --without-systemdsystemunitdir, no unit installed"
elif ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd-analyze verify: skipped: systemd-analyze is not installed"
else
    # verify wants ExecStart's program where the unit says and runs man on
    # Documentation=: point both at the DESTDIR (a copy of the unit, the
    # same name). Any output is a finding: it warns about unknown keys and
    # bad values but exits 0.
    mkdir -p "$work/unit"
    sed "s|^ExecStart=$sbindir/|ExecStart=$dest$sbindir/|" "$unit" >"$work/unit/twopcd.service"
    rc=0
    MANPATH=$dest${man8dir%/man8} SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$work/unit/twopcd.service" \
        >"$work/verify" 2>&1 || rc=$?
    if [ "$rc" = 0 ] && [ ! -s "$work/verify" ]; then
        pass "systemd-analyze verify: twopcd.service is clean (ExecStart, ExecReload, Documentation=, every key)"
    else
        echo "(exit status $rc)" >>"$work/verify"
        fail "systemd-analyze verify twopcd.service" "$work/verify"
    fi
fi

# ---- 7. make uninstall ----------------------------------------------------------------
if ! submake uninstall DESTDIR="$dest" >"$work/uninstall.out" 2>&1; then
    tail -n 30 "$work/uninstall.out" >"$work/uninstall.tail"
    fail "make uninstall DESTDIR=$dest failed" "$work/uninstall.tail"
else
    (cd "$dest" && find . ! -type d) >"$work/left"
    if [ ! -s "$work/left" ]; then
        pass "make uninstall DESTDIR=$dest leaves no file"
    else
        fail "make uninstall left files behind" "$work/left"
    fi
fi

summary
