#!/bin/sh
# Run fuzz targets once over every input in DIR/<name>/: inputs that once
# crashed a target and must pass now. A target without a directory passes.
#
#   run-regressions.sh DIR NAME EXE [NAME EXE]...
set -u
dir=$1
shift
status=0
while [ $# -ge 2 ]; do
	name=$1 exe=$2
	shift 2
	[ -d "$dir/$name" ] || continue
	n=$(find "$dir/$name" -type f | wc -l)
	[ "$n" -gt 0 ] || continue
	echo "== $name: $n input(s)"
	# Files, not directories: libFuzzer runs each once and exits.
	find "$dir/$name" -type f -print0 | sort -z | xargs -0 "$exe" || status=1
done
exit $status
