# shellcheck shell=bash
#
# The harness of the systemd tests: systemd as PID 1 of a "box", private
# pid/mount/cgroup/uts/net namespaces with the units of systemd/ and the portd
# binary of this build, following /work/shared/notes/systemd-in-tests.md:
#
#   - the box gets its own cgroup directory on the cgroup2 mount, and a cgroup
#     namespace rooted there, with cgroup2 mounted inside. A systemd without
#     its own cgroup namespace would treat the host's root cgroup as its own
#     and move every host process into its scope: never start one otherwise.
#   - the host's unit directories are hidden under empty read-only tmpfs (the
#     host's boot units must not run: Debian's tmpfiles would wipe /tmp),
#     /proc/sys is read-only (PID 1 raises global sysctls), the hostname
#     belongs to the box's UTS namespace, /run is a fresh tmpfs.
#   - unit search path: only this test's directory ($SD_WORK/units): the units
#     under test, stub targets, and copies of the exit and journald units.
#   - /etc/passwd, group, shadow, gshadow: copies with the user and group of
#     systemd/portd.sysusers added by systemd-sysusers, bound over the
#     originals inside the box only.
#   - binaries: copied into the box's /run/portd-test/bin (portd.service has
#     PrivateTmp=yes, so nothing under /tmp is visible to it).
#
# Clients run outside the box, in its network namespace (nsenter -n), and
# reach the control socket as /proc/BOXPID/root/run/portd/portd.sock.
# Every wait is bounded; every process started is stopped by its PID; the
# EXIT trap stops the box (systemctl exit, then SIGKILL to its PID 1) and
# removes its cgroup directories bottom-up.
#
# Run: meson test -C BUILD --suite systemd -v   (as root; skipped, 77, otherwise)
# One test: meson test -C BUILD systemd-restart -v. SD_DROPIN / SD_SOCKET_DROPIN
# in the environment add [Service] / [Socket] lines to the test drop-ins of
# portd.service / portd.socket (to try a directive: SD_DROPIN=ProcSubset=pid).
#
# Usage in a test script:
#   . "$(dirname "$0")/lib.sh"
#   sd_init                       # skip (77) unless root with systemd
#   SD_DROPIN='WatchdogSec=1s'    # optional [Service] lines for portd.service
#   box_start
#   box_ctl show ...; box_client "$SD_BIN/portctl" --socket "$BOX_SOCK" lease
#   sd_pass

set -euo pipefail

SD_NAME=$(basename "$0" .sh)
SD_WORK=""
SD_CG=""
SD_PIDS=()
BOX=""           # host pid of the box's PID 1 (systemd)
BOX_UNSHARE=""   # host pid of unshare, its parent
BOX_SOCK=""      # the control socket, seen from the host
SD_DROPIN=${SD_DROPIN:-}               # [Service] lines for portd.service
SD_SOCKET_DROPIN=${SD_SOCKET_DROPIN:-} # [Socket] lines for portd.socket
SD_T0=$(date +%s%3N)

sd_log() { printf '[%5s ms] %s: %s\n' "$(($(date +%s%3N) - SD_T0))" "$SD_NAME" "$*" >&2; }

sd_fail()
{
	sd_log "FAIL: $*"
	exit 1
}

sd_pass()
{
	sd_log "PASS"
	exit 0
}

sd_skip()
{
	echo "$SD_NAME: skipped: $*" >&2
	exit 77
}

# Skip (77) only without root or without systemd; everything else missing fails.
sd_init()
{
	local v

	[ "$(id -u)" -eq 0 ] || sd_skip "needs root (namespaces, cgroups)"
	SD_SYSTEMD=""
	for v in /usr/lib/systemd/systemd /lib/systemd/systemd; do
		if [ -x "$v" ]; then
			SD_SYSTEMD=$v
			break
		fi
	done
	[ -n "$SD_SYSTEMD" ] || sd_skip "no systemd binary"
	for v in PORTD_BIN PORTCTL_BIN SD_CLIENT_BIN LIBPORTD_BIN PORTD_UNITS_SRC PORTD_UNITS_BUILD PORTD_SBIN_PATH; do
		[ -n "${!v:-}" ] || sd_fail "$v is not set: run this through meson test"
	done
	for v in systemd-analyze systemd-sysusers systemctl journalctl unshare nsenter setpriv; do
		command -v "$v" >/dev/null || sd_fail "$v not found"
	done
	SD_WORK=$(mktemp -d /tmp/portd-sd.XXXXXX)
	trap sd_cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 141' PIPE
	trap 'exit 143' TERM
}

# Poll (every 50 ms) until "$@" succeeds, for at most $1 seconds.
sd_wait()
{
	local secs=$1 end
	shift
	end=$(($(date +%s%3N) + secs * 1000))
	until "$@"; do
		[ "$(date +%s%3N)" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# Has process PID exited? (An unreaped child is a zombie, which kill -0 still finds.)
sd_gone()
{
	local st

	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "${st%% *}" = Z ]
}

# Stop a process we started: SIGTERM, up to 3 s, then SIGKILL. Reaps it.
sd_stop_pid()
{
	local pid=$1

	if ! sd_gone "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		sd_wait 3 sd_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

sd_dump()
{
	[ -n "$BOX" ] && [ -d "/proc/$BOX" ] || return 0
	sd_log "---- systemctl status portd.socket portd.service (box)"
	timeout 5 nsenter -t "$BOX" -m -p -u -n systemctl --no-pager --no-ask-password status -n 0 \
		portd.socket portd.service 2>&1 >&2 || true
	sd_log "---- journal of portd.socket, portd.service (box, last 40 lines)"
	timeout 5 nsenter -t "$BOX" -m -p -u -n journalctl --no-pager -o short-monotonic -n 40 \
		-u portd.socket -u portd.service 2>&1 >&2 || true
}

sd_cleanup()
{
	local rc=$? pid i

	trap - EXIT
	# Finish the cleanup whatever happens to stderr or the terminal meanwhile.
	trap '' HUP INT PIPE TERM
	set +e
	[ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || sd_dump
	for pid in "${SD_PIDS[@]}"; do
		sd_stop_pid "$pid"
	done
	box_stop
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -s "$SD_WORK/console.log" ]; then
		sd_log "---- box console (last 40 lines)"
		tail -n 40 "$SD_WORK/console.log" >&2
	fi
	[ -n "$SD_WORK" ] && rm -rf "$SD_WORK"
	exit "$rc"
}

# The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one.
sd_cgroup2_root()
{
	local d

	for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		if [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# The box's unit directory: the units under test, the test drop-in, stubs, copies.
box_units()
{
	local u="$SD_WORK/units" t src

	mkdir -p "$u/portd.service.d" "$u/portd.socket.d" "$u/sockets.target.wants" "$u/sysinit.target.wants"
	cp "$PORTD_UNITS_SRC/portd.socket" "$u/"
	cp "$PORTD_UNITS_BUILD/portd.service" "$u/"
	# As `systemctl enable portd.socket` would (WantedBy=sockets.target).
	ln -s ../portd.socket "$u/sockets.target.wants/portd.socket"
	{
		printf '[Service]\n'
		printf '# The binary of this build, inside the box (the unit says %s).\n' "$PORTD_SBIN_PATH"
		printf 'ExecStart=\nExecStart=/run/portd-test/bin/portd -v\n'
		# For a sanitizer build: the caller's options, without the leak check
		# at exit (LSan needs ptrace, which the unit's system call filter
		# refuses). Harmless for a normal build.
		printf 'Environment="ASAN_OPTIONS=%sdetect_leaks=0"\n' "${ASAN_OPTIONS:+$ASAN_OPTIONS:}"
		[ -z "${UBSAN_OPTIONS:-}" ] || printf 'Environment="UBSAN_OPTIONS=%s"\n' "$UBSAN_OPTIONS"
		printf '%s\n' "$SD_DROPIN"
	} >"$u/portd.service.d/50-test.conf"
	printf '[Socket]\n%s\n' "$SD_SOCKET_DROPIN" >"$u/portd.socket.d/50-test.conf"

	for t in sysinit sockets timers paths local-fs remote-fs network network-online nss-lookup slices; do
		printf '[Unit]\nDescription=%s (stub)\n' "$t" >"$u/$t.target"
	done
	printf '[Unit]\nDescription=basic (stub)\nRequires=sysinit.target\nWants=sockets.target timers.target paths.target slices.target\nAfter=sysinit.target sockets.target timers.target paths.target slices.target\n' \
		>"$u/basic.target"
	printf '[Unit]\nDescription=portd test box\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n' \
		>"$u/portd-test.target"
	for t in exit.target systemd-exit.service shutdown.target final.target umount.target \
		systemd-journald.service systemd-journald.socket; do
		src=""
		[ -e "/usr/lib/systemd/system/$t" ] && src="/usr/lib/systemd/system/$t"
		[ -z "$src" ] && [ -e "/lib/systemd/system/$t" ] && src="/lib/systemd/system/$t"
		[ -n "$src" ] || sd_fail "no $t on this host"
		cp "$src" "$u/$t"
	done
	# Not systemd-journald-dev-log.socket: it would point the host's /dev/log (shared /dev) into the box.
	# journald logs about itself to /dev/kmsg, the host's kernel log: not from the box.
	mkdir -p "$u/systemd-journald.service.d"
	printf '[Service]\nEnvironment=SYSTEMD_LOG_TARGET=console\n' >"$u/systemd-journald.service.d/50-box.conf"
	ln -s ../systemd-journald.service "$u/sysinit.target.wants/systemd-journald.service"
	ln -s ../systemd-journald.socket "$u/sysinit.target.wants/systemd-journald.socket"
	mkdir -p "$SD_WORK/empty"
}

# passwd/group/shadow/gshadow as the host's plus what systemd/portd.sysusers creates.
box_users()
{
	local f

	mkdir -p "$SD_WORK/sysroot/etc"
	for f in passwd group shadow gshadow; do
		[ -e "/etc/$f" ] && cp -p "/etc/$f" "$SD_WORK/sysroot/etc/$f"
	done
	systemd-sysusers --root="$SD_WORK/sysroot" "$PORTD_UNITS_SRC/portd.sysusers" >"$SD_WORK/sysusers.log" 2>&1 ||
		sd_fail "systemd-sysusers: $(cat "$SD_WORK/sysusers.log")"
	SD_PORTD_GID=$(awk -F: '$1 == "portd" { print $3 }' "$SD_WORK/sysroot/etc/group")
	SD_PORTD_UID=$(awk -F: '$1 == "portd" { print $3 }' "$SD_WORK/sysroot/etc/passwd")
	[ -n "$SD_PORTD_GID" ] && [ -n "$SD_PORTD_UID" ] || sd_fail "sysusers created no user/group portd"
}

box_bins()
{
	mkdir -p "$SD_WORK/bin"
	cp "$PORTD_BIN" "$PORTCTL_BIN" "$SD_CLIENT_BIN" "$SD_WORK/bin/"
	find "$(dirname "$LIBPORTD_BIN")" -maxdepth 1 -name "libportd.so*" ! -type d -exec cp -P {} "$SD_WORK/bin/" \;
}

box_init_script()
{
	cat >"$SD_WORK/init.sh" <<'EOF'
# PID 1 of the box until it execs systemd. Everything here changes the box's
# own mount namespace only.
set -eu
W=$BOX_WORK
mount --make-rprivate /
mount -t proc -o nosuid,nodev,noexec proc /proc
umount -R /sys/fs/cgroup
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
for d in /usr/lib/systemd/system /lib/systemd/system /etc/systemd/system /usr/local/lib/systemd/system; do
	if [ -d "$d" ]; then
		mount -t tmpfs -o ro,mode=0755 tmpfs "$d"
	fi
done
mount --bind "$W/console.log" /dev/console
mkdir -p /run/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\nReadKMsg=no\n' >/run/systemd/journald.conf.d/box.conf
for f in passwd group shadow gshadow; do
	if [ -e "$W/sysroot/etc/$f" ]; then
		mount --bind "$W/sysroot/etc/$f" "/etc/$f"
	fi
done
mount --bind "$W/machine-id" /etc/machine-id
mkdir -p -m 0755 /run/portd-test
cp -a "$W/bin" /run/portd-test/bin
chmod 0755 /run/portd-test/bin
unset BOX_WORK
exec "$BOX_SYSTEMD" --log-target=journal --unit=portd-test.target
EOF
}

box_running()
{
	local s

	s=$(timeout 10 nsenter -t "$BOX" -m -p -u -n systemctl is-system-running --wait 2>&1) || true
	[ "$s" = running ] ||
		sd_fail "box is '$s', not running; failed units: $(timeout 5 nsenter -t "$BOX" -m -p -u -n \
			systemctl --no-pager --failed --plain --no-legend 2>&1)"
}

# Boot the box. Sets BOX, BOX_UNSHARE, BOX_SOCK.
box_start()
{
	local cgroot

	cgroot=$(sd_cgroup2_root) || sd_fail "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified"
	# systemd would otherwise write a machine-id to the host's /etc.
	[ -s /etc/machine-id ] || sd_fail "/etc/machine-id is missing or empty"
	box_units
	box_users
	box_bins
	box_init_script
	: >"$SD_WORK/console.log"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$SD_WORK/machine-id"
	echo >>"$SD_WORK/machine-id"

	SD_CG="$cgroot/portd-test.$$"
	mkdir "$SD_CG"
	# The subshell moves itself into the box's cgroup, then becomes unshare:
	# the new cgroup namespace is rooted at SD_CG. --kill-child: if unshare
	# dies, the box goes with it.
	(
		echo 0 >"$SD_CG/cgroup.procs"
		exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin container=portd-test \
			SYSTEMD_UNIT_PATH="$SD_WORK/units" \
			SYSTEMD_GENERATOR_PATH="$SD_WORK/empty" \
			SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$SD_WORK/empty" \
			BOX_WORK="$SD_WORK" BOX_SYSTEMD="$SD_SYSTEMD" \
			unshare --pid --fork --kill-child --mount --cgroup --uts --net /bin/sh "$SD_WORK/init.sh"
	) </dev/null >"$SD_WORK/unshare.log" 2>&1 &
	BOX_UNSHARE=$!
	box_find_pid1() {
		BOX=$(awk '{ print $1 }' "/proc/$BOX_UNSHARE/task/$BOX_UNSHARE/children" 2>/dev/null || true)
		[ -n "$BOX" ]
	}
	sd_wait 5 box_find_pid1 || sd_fail "unshare started no box: $(cat "$SD_WORK/unshare.log")"
	box_booted() {
		! sd_gone "$BOX_UNSHARE" || sd_fail "the box ended: $(cat "$SD_WORK/unshare.log")"
		[ -S "/proc/$BOX/root/run/systemd/private" ]
	}
	sd_wait 10 box_booted || sd_fail "systemd in the box did not come up"
	box_running
	BOX_SOCK="/proc/$BOX/root/run/portd/portd.sock"
	SD_BIN=/run/portd-test/bin
	sd_log "box up: PID 1 is host pid $BOX, cgroup $SD_CG"
}

box_stop()
{
	if [ -n "$BOX_UNSHARE" ] && ! sd_gone "$BOX_UNSHARE"; then
		if [ -n "$BOX" ]; then
			timeout 5 nsenter -t "$BOX" -m -p -u -n systemctl --no-ask-password exit >/dev/null 2>&1 || true
		fi
		if ! sd_wait 5 sd_gone "$BOX_UNSHARE"; then
			sd_log "box did not exit: SIGKILL to its PID 1 (${BOX:-unknown})"
			[ -n "$BOX" ] && { kill -KILL "$BOX" 2>/dev/null || true; }
			sd_wait 5 sd_gone "$BOX_UNSHARE" || kill -KILL "$BOX_UNSHARE" 2>/dev/null || true
		fi
	fi
	[ -n "$BOX_UNSHARE" ] && { wait "$BOX_UNSHARE" 2>/dev/null || true; }
	BOX_UNSHARE=""
	BOX=""
	# Bottom-up; a cgroup stays busy for a moment after its last process exits.
	if [ -n "$SD_CG" ] && [ -d "$SD_CG" ]; then
		for _ in $(seq 100); do
			find "$SD_CG" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$SD_CG" ] || break
			sleep 0.05
		done
		[ -d "$SD_CG" ] && sd_log "WARNING: could not remove $SD_CG"
	fi
	SD_CG=""
}

# systemctl / journalctl / anything inside the box (all its namespaces).
box_exec() { nsenter -t "$BOX" -m -p -u -n "$@"; }
box_ctl() { box_exec systemctl --no-pager --no-ask-password "$@"; }
box_journal() { box_exec journalctl --no-pager "$@"; }
box_prop() { box_ctl show -P "$2" "$1"; }
# A client in the box's network namespace only: host mounts, host pids.
box_client() { nsenter -t "$BOX" -n -- "$@"; }

box_state() { box_ctl show -p ActiveState,SubState,MainPID,NRestarts,StatusText "$1" | tr '\n' ' '; }

# Wait until UNIT's PROP equals VALUE.
box_wait_prop()
{
	local unit=$1 prop=$2 want=$3 secs=${4:-10}

	_prop_is() { [ "$(box_prop "$unit" "$prop")" = "$want" ]; }
	sd_wait "$secs" _prop_is || sd_fail "$unit: $prop is '$(box_prop "$unit" "$prop")', not '$want' after ${secs}s ($(box_state "$unit"))"
}

# Read lines of FILE (written by a background process PID) until one matches
# the extended regex; at most SECS seconds, and no longer than PID lives.
# Prints the line.
sd_wait_line()
{
	local file=$1 re=$2 secs=$3 pid=$4

	_has_line()
	{
		grep -Eq "$re" "$file" 2>/dev/null && return 0
		sd_gone "$pid" && ! grep -Eq "$re" "$file" 2>/dev/null && sd_fail "process $pid ended before printing /$re/: $(tail -n 3 "$file")"
		return 1
	}
	sd_wait "$secs" _has_line || return 1
	grep -E "$re" "$file" | tail -n 1
}
