#!/bin/sh
# portd's performance in one command: an optimised build, bench/perf in a private
# network namespace, the markdown tables on stdout, bench/out/results.json and
# bench/out/latency.png.
#
#   sudo bench/run.sh [perf options...]     (e.g. --quick, --cli-runs 50)
#
# Needs root (unshare --net). Installs gnuplot-nox with apt-get when gnuplot is
# missing (only the plot needs it). Takes about two minutes on a 2-core machine.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build="$src/build-bench"
out="$here/out"

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: needs root to run in a private network namespace: sudo $0 $*" >&2
	exit 2
fi

echo "run.sh: building $build (release, NDEBUG, no tests)..." >&2
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$src" --buildtype=release -Db_ndebug=true -Dtests=false >/dev/null
fi
# Only what the benchmark runs: a half-edited test elsewhere in the tree does not stop it.
log=$(mktemp)
ninja -C "$build" daemon/portd client/portctl bench/perf >"$log" 2>&1 || {
	cat "$log" >&2
	rm -f "$log"
	exit 1
}
rm -f "$log"

if ! command -v gnuplot >/dev/null 2>&1; then
	echo "run.sh: installing gnuplot-nox for the plot..." >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1; } ||
		echo "run.sh: could not install gnuplot-nox: no plot this time" >&2
fi

mkdir -p "$out"
# bench/perf refuses to run in a namespace with anything but loopback; it brings lo up itself.
unshare --net -- "$build/bench/perf" --portd "$build/daemon/portd" --portctl "$build/client/portctl" \
	--out "$out" "$@" >"$out/results.md"
cat "$out/results.md"

if command -v gnuplot >/dev/null 2>&1; then
	gnuplot -e "dir='$out'" "$here/latency.gp" && echo "run.sh: plot: $out/latency.png" >&2
fi
echo "run.sh: tables: $out/results.md; figures: $out/results.json; daemon log: $out/portd.log" >&2
