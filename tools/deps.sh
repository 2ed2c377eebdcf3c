#!/bin/sh
# Install what building and testing portd needs, from Debian 12's archive.
# Safe to run again; uses sudo when not root.
set -eu
pkgs="meson ninja-build pkg-config gcc clang libclang-rt-14-dev libevent-dev libsystemd-dev libcmocka-dev"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing:$missing" >&2
$sudo apt-get update -q
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
