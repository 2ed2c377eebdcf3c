#!/bin/sh
# Where portd's time goes under bench/perf's loads: a profiling build (frame
# pointers), then `perf record` (software cpu-clock, system-wide, CLOCK_MONOTONIC
# time stamps) around `perf --only PHASES --verbose`, then for each measuring
# window of a portd the daemon's hottest symbols in that window alone.
#
#   sudo bench/profile.sh [PHASES [SYMBOLS]]
#
# PHASES: bench/perf's --only list (default "single"); SYMBOLS: how many lines
# per window (default 25). Output: bench/out/profile/ (perf.data, the
# per-window reports in report-*.txt), and a summary on stdout.
# Needs root (a private network namespace) and linux-perf.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build="$here/out/build-prof"
out="$here/out/profile"
phases=${1:-single}
lines=${2:-25}

if [ "$(id -u)" != 0 ]; then
	echo "profile.sh: needs root (a private network namespace): sudo $0 $*" >&2
	exit 2
fi
command -v perf >/dev/null || { echo "profile.sh: no perf (apt-get install linux-perf)" >&2; exit 2; }

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$src" --buildtype=release -Db_ndebug=true -Dtests=false \
		-Dc_args='-fno-omit-frame-pointer -mno-omit-leaf-frame-pointer' >/dev/null
fi
ninja -C "$build" >/dev/null
mkdir -p "$out"
rm -f "$out"/report-*.txt

# perf record outside, bench/perf inside the private namespace: unshare runs the whole pipeline.
unshare --net -- perf record -a -g -k CLOCK_MONOTONIC -F 4000 -o "$out/perf.data" -- \
	"$build/bench/perf" --only "$phases" --verbose --out "$out" >"$out/perf.md" 2>"$out/perf.err" || {
	cat "$out/perf.err" >&2
	exit 1
}

# "perf: daemon main: pid 123", then "perf: window 12.3 12.9: single / what / portd / ..." lines.
pid=
n=0
while IFS= read -r line; do
	case "$line" in
	"perf: daemon "*)
		pid=${line##*pid }
		;;
	"perf: window "*"/ portd"*)
		[ -n "$pid" ] || continue
		rest=${line#perf: window }
		from=${rest%% *}
		rest=${rest#* }
		to=${rest%%:*}
		what=${rest#*: }
		n=$((n + 1))
		file="$out/report-$n.txt"
		{
			echo "## $what (portd pid $pid, $from-$to)"
			perf report -i "$out/perf.data" --pid "$pid" --time "$from,$to" --no-children \
				--sort dso,sym -g none --percentage relative --percent-limit 0.7 --stdio 2>/dev/null |
				grep -v '^#' | grep -v '^$' | head -n "$lines"
		} >"$file"
		cat "$file"
		echo
		;;
	esac
done <"$out/perf.err"
echo "profile.sh: $n windows; call graphs: perf report -i $out/perf.data --pid PID --time FROM,TO -G"
