#!/bin/sh
# Install what building and testing portd needs, from Debian 12's archive.
# Safe to run again (silent when nothing is missing); uses sudo when not root.
#
# The run tests (tests/test-run.c) start real servers under `portctl run`:
# redis-server, python3 (http.server) and systemd-socket-proxyd (package systemd).
# The portserver tests and benchmark run portpicker's client and Debian's
# portserver (package python3-portpicker).
# The man pages are built with scdoc and checked with groff; the bash
# completion goes where bash-completion's pkg-config file says. The valgrind
# test setup needs valgrind (with its header valgrind/valgrind.h).
set -eu
pkgs="meson ninja-build pkg-config gcc clang libclang-rt-14-dev libevent-dev libsystemd-dev libcmocka-dev"
pkgs="$pkgs redis-server python3 systemd python3-portpicker"
pkgs="$pkgs scdoc groff-base bash-completion valgrind"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing:$missing" >&2

# Installing redis-server would start its service through invoke-rc.d. A
# policy-rc.d that exits 101 ("action forbidden") stops that; create one for
# the install only, and only if there is none (containers often ship one).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	trap '$sudo rm -f "$policy"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod 755 "$policy"
fi

$sudo apt-get update -q
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
