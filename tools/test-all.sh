#!/bin/sh
# Build and run every test: gcc with warnings as errors (and the end-to-end
# suite again with the daemon and portctl under valgrind), then clang with
# AddressSanitizer + UndefinedBehaviorSanitizer (and the fuzz targets, each
# for FUZZ_SECONDS). Both builds run the soak for SOAK_SECONDS.
# Build trees go under build-test/ (override: BUILD_ROOT).
set -eu
cd "$(dirname "$0")/.."
root=${BUILD_ROOT:-build-test}
export FUZZ_SECONDS=${FUZZ_SECONDS:-60}
export SOAK_SECONDS=${SOAK_SECONDS:-60}

echo "== gcc, -Dwerror=true"
CC=gcc meson setup --wipe "$root/gcc" -Dwerror=true >/dev/null 2>&1 || CC=gcc meson setup "$root/gcc" -Dwerror=true
meson compile -C "$root/gcc"
meson test -C "$root/gcc" --print-errorlogs

echo "== gcc, the end-to-end suite under valgrind"
meson test -C "$root/gcc" --setup=valgrind --suite e2e --print-errorlogs

echo "== clang, -Dwerror=true, ASan + UBSan, fuzzing ${FUZZ_SECONDS}s per target"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
CC=clang meson setup --wipe "$root/asan" -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true >/dev/null 2>&1 ||
	CC=clang meson setup "$root/asan" -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true
meson compile -C "$root/asan"
meson test -C "$root/asan" --print-errorlogs --timeout-multiplier 3
