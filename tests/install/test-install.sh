#!/bin/bash
# `meson install --destdir` into a staging tree, then use what it installed:
# every file where it belongs, libportd's soname and exported symbols, a C
# program built against the staged library through pkg-config alone (run
# against the staged portd), the staged portctl, the man pages and the
# completion. Environment (from meson): MESON, BUILD_ROOT, CC, SANITIZE,
# SOVERSION, PREFIX, BINDIR, SBINDIR, LIBDIR, INCLUDEDIR, MANDIR,
# COMPLETIONSDIR, MAN (1: man pages built), UNITDIRS (system user sysusers, or
# empty), DOC (doc/ of the source tree).
set -euo pipefail
TMP=$(mktemp -d)
# shellcheck source=harness.sh
. "$(dirname "$0")/harness.sh"
harness_private_netns "$@"
trap 'stop_portd || true; rm -rf "$TMP"' EXIT
stage=$TMP/stage
failed=0
fail() { echo "FAIL: $*"; failed=1; }

"$MESON" install -C "$BUILD_ROOT" --destdir "$stage" --no-rebuild --quiet
echo "== staged:"
(cd "$stage" && find . \( -type f -o -type l \) | sort)

# Every file in place.
want=("$SBINDIR/portd" "$BINDIR/portctl" "$INCLUDEDIR/portd.h"
	"$LIBDIR/libportd.so" "$LIBDIR/libportd.so.$SOVERSION" "$LIBDIR/pkgconfig/libportd.pc"
	"$COMPLETIONSDIR/portctl")
if [ "$MAN" = 1 ]; then
	want+=("$MANDIR/man8/portd.8" "$MANDIR/man1/portctl.1" "$MANDIR/man3/libportd.3"
		"$MANDIR/man7/portd-protocol.7")
fi
if [ -n "$UNITDIRS" ]; then
	read -r sysunit userunit sysusers <<<"$UNITDIRS"
	want+=("$sysunit/portd.service" "$sysunit/portd.socket" "$userunit/portd.service"
		"$userunit/portd.socket" "$sysusers/portd.conf")
fi
for f in "${want[@]}"; do
	[ -e "$stage$f" ] || fail "$f was not installed"
done

# Each function of the installed header: exported, and `man NAME` finds libportd(3).
lib=$stage$LIBDIR/libportd.so
funcs=$(sed 's,/\*.*\*/,,' "$stage$INCLUDEDIR/portd.h" | grep -o '\bportd_[a-z_]*(' | tr -d '(' | sort -u)
[ "$(wc -w <<<"$funcs")" -ge 10 ] || fail "found only '$funcs' in portd.h"
exported=$(nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u)
for f in $funcs; do
	grep -qx "$f" <<<"$exported" || fail "$f is declared in portd.h but not exported"
	if [ "$MAN" = 1 ] && [ "$(readlink "$stage$MANDIR/man3/$f.3")" != libportd.3 ]; then
		fail "man3/$f.3 is not a link to libportd.3"
	fi
done
stray=$(grep -v '^portd_' <<<"$exported" || true)
[ -z "$stray" ] || fail "libportd exports more than portd_*: $(xargs <<<"$stray")"
echo "exported: $(wc -l <<<"$exported") symbols, all portd_*"

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libportd.so.$SOVERSION" ] || fail "soname '$soname', expected libportd.so.$SOVERSION"
[ "$(readlink "$lib")" = "libportd.so.$SOVERSION" ] || fail "libportd.so -> $(readlink "$lib")"
for bin in "$stage$BINDIR/portctl" "$stage$SBINDIR/portd"; do
	! readelf -d "$bin" | grep -E 'R(UN)?PATH' | grep -qF "$BUILD_ROOT" || fail "$bin keeps a build-tree rpath"
done
echo "soname: $soname"

# A program built against the staged tree through pkg-config alone: only the
# staged .pc is visible, its paths moved under the staging tree.
export PKG_CONFIG_LIBDIR=$stage$LIBDIR/pkgconfig PKG_CONFIG_PATH=""
export PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
version=$(pkg-config --modversion libportd)
cflags=$(pkg-config --cflags libportd)
libs=$(pkg-config --libs libportd)
echo "pkg-config: $version; $cflags; $libs"
san=()
[ "$SANITIZE" = none ] || san=("-fsanitize=$SANITIZE")
# shellcheck disable=SC2086
$CC "${san[@]}" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror $cflags "$(dirname "$0")/staged-client.c" $libs \
	-o "$TMP/staged-client"
export LD_LIBRARY_PATH=$stage$LIBDIR

sock=$TMP/portd.sock
start_portd "$stage$SBINDIR/portd" "$sock"
out=$("$TMP/staged-client" "$version" "$sock") || fail "staged-client failed"
echo "$out"
grep -qxF "libportd: $stage$LIBDIR/libportd.so.$SOVERSION" <<<"$out" || fail "staged-client did not run with the staged library"

# The EXAMPLE of libportd(3), built the same way: two consecutive ports.
# shellcheck disable=SC2016
sed -n '/^# EXAMPLE/,/^# SEE ALSO/p' "$DOC/libportd.3.scd" | sed -n '/^```$/,/^```$/{/^```$/d;p}' |
	sed 's/\\\\/\\/g' >"$TMP/example.c"
# shellcheck disable=SC2086
$CC "${san[@]}" -std=c11 -Wall -Wextra -Werror $cflags "$TMP/example.c" $libs -o "$TMP/example" ||
	fail "the EXAMPLE of libportd.3 does not compile"
read -r a b < <(PORTD_SOCKET=$sock "$TMP/example") || true
if [ -z "${b:-}" ] || [ "$b" -ne $((a + 1)) ]; then
	fail "the EXAMPLE of libportd.3 printed '${a:-} ${b:-}'"
fi
echo "libportd.3 EXAMPLE: $a $b"

# The staged portctl, with the staged library, against the staged portd.
portctl=$stage$BINDIR/portctl
"$portctl" --version | grep -qF "libportd $version" || fail "portctl --version: $("$portctl" --version)"
port=$("$portctl" --socket "$sock" lease --ttl 60) || fail "portctl lease"
"$portctl" --socket "$sock" list | grep -qw "$port" || fail "portctl list does not show port $port"
"$portctl" --socket "$sock" release --port "$port" || fail "portctl release --port $port"
stop_portd

if [ "$MAN" = 1 ] && command -v man >/dev/null; then
	man -l "$stage$MANDIR/man1/portctl.1" 2>&1 | grep -q "portctl" || fail "man -l portctl.1"
	man -l "$stage$MANDIR/man3/portd_lease.3" 2>&1 | grep -q "libportd" || fail "man -l portd_lease.3"
fi
bash -c ". '$stage$COMPLETIONSDIR/portctl' && complete -p portctl" >/dev/null || fail "the staged completion does not load"

exit $failed
