# shellcheck shell=bash
# Shell helpers for the tests in this directory (bash). Source it after
# setting TMP to a private directory.

# As root, run the calling script again in a private network namespace, so
# that its leases touch no port of the host. (Its loopback stays down: the
# tests bind and listen, and connect nowhere.)
harness_private_netns()
{
	[ "$(id -u)" -eq 0 ] && [ -z "${HARNESS_IN_NETNS:-}" ] || return 0
	HARNESS_IN_NETNS=1 exec unshare --net -- bash "$0" "$@"
}

# start_portd BIN SOCKET [OPTIONS...]: start portd on SOCKET and return once
# it serves (its --ready-fd says so); sets PORTD_PID. Its log: $TMP/portd.log.
start_portd()
{
	local bin=$1 sock=$2 fifo=$TMP/ready line=""
	shift 2
	mkfifo "$fifo"
	"$bin" --socket "$sock" --ready-fd 3 "$@" 3>"$fifo" 2>"$TMP/portd.log" &
	PORTD_PID=$!
	read -r -t 10 line <"$fifo" || true
	rm -f "$fifo"
	if [ "$line" != "READY=1" ]; then
		echo "portd did not get ready:" >&2
		cat "$TMP/portd.log" >&2
		return 1
	fi
}

# Stop the portd that start_portd started; fail unless it exits 0.
stop_portd()
{
	[ -n "${PORTD_PID:-}" ] || return 0
	kill -TERM "$PORTD_PID"
	local rc=0
	wait "$PORTD_PID" || rc=$?
	PORTD_PID=""
	if [ "$rc" -ne 0 ]; then
		echo "portd exited $rc:" >&2
		cat "$TMP/portd.log" >&2
		return 1
	fi
}
