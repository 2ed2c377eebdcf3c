#!/bin/bash
# The bash completion of portctl: source it and check COMPREPLY for
# commands, options, option values, and lease ids and ports from a real portd.
# env: PORTD_BIN, PORTCTL_BIN, COMPLETION (completion/portctl.bash).
set -euo pipefail
: "${PORTD_BIN:?}" "${PORTCTL_BIN:?}" "${COMPLETION:?}"
TMP=$(mktemp -d)
# shellcheck source=harness.sh
. "$(dirname "$0")/harness.sh"
harness_private_netns "$@"
trap 'stop_portd || true; rm -rf "$TMP"' EXIT

# shellcheck source=../../completion/portctl.bash
. "$COMPLETION"
failed=0

# expect "WORDS..." "EXPECTED REPLY": complete the last word of WORDS (an
# empty last word: give the line a trailing space) and compare the sorted reply.
expect()
{
	local line=$1 want=$2 got
	read -r -a COMP_WORDS <<<"$line"
	[[ $line == *" " ]] && COMP_WORDS+=("")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE=$line
	COMP_POINT=${#line}
	COMPREPLY=()
	_portctl || true
	got=$(printf '%s\n' "${COMPREPLY[@]}" | sort -n | xargs)
	if [[ $got == "$want" ]]; then
		echo "ok: '$line' -> $got"
	else
		echo "FAIL: '$line' -> '$got', expected '$want'"
		failed=1
	fi
}

[[ $(complete -p portctl) == *"-F _portctl"* ]] || { echo "FAIL: portctl has no completion"; failed=1; }

expect "portctl " "help lease list ports release renew run status"
expect "portctl re" "release renew"
expect "portctl --socket /tmp/s l" "lease list"
expect "portctl --" "--help --json --socket --timeout --version"
expect "portctl lease --c" "--consecutive --count"
expect "portctl lease --pid " "parent"
expect "portctl run --no" "--no-listen"
expect "portctl run -- compge" "compgen"
expect "portctl run --ttl 5 comple" "complete"
expect "portctl run -- complete -" ""
expect "portctl release --" "--help --json --port --socket --tcp --timeout --udp"
expect "portctl ports --" "--help --json --socket --timeout"
expect "portctl status --" "--fds --help --json --socket --timeout"
expect "portctl help st" "status"

# Lease ids and ports, from a daemon named on the command line.
sock=$TMP/portd.sock
start_portd "$PORTD_BIN" "$sock"
p1=$("$PORTCTL_BIN" --socket "$sock" lease)
p2=$("$PORTCTL_BIN" --socket "$sock" lease --count 2)
ids=$("$PORTCTL_BIN" --socket "$sock" list --json | grep -o '"id": *[0-9]*' | grep -o '[0-9]*$' | sort -n | xargs)
[[ $ids == "1 2" ]] || { echo "FAIL: expected leases 1 and 2, list --json says '$ids'"; failed=1; }
expect "$PORTCTL_BIN --socket $sock renew " "1 2"
expect "$PORTCTL_BIN --socket=$sock release " "1 2"
expect "$PORTCTL_BIN release --socket $sock " "1 2"
expect "$PORTCTL_BIN --socket $sock release 1 " ""
read -r -a ports <<<"$p1 $p2"
expect "$PORTCTL_BIN --socket $sock release --port " "$(printf '%s\n' "${ports[@]}" | sort -n | xargs)"
"$PORTCTL_BIN" --socket "$sock" release 1
expect "$PORTCTL_BIN --socket $sock renew " "2"
# With PORTD_SOCKET instead of --socket.
PORTD_SOCKET=$sock expect "$PORTCTL_BIN renew " "2"
stop_portd
# No daemon: no ids, and no error on the terminal.
expect "$PORTCTL_BIN --socket $sock renew " ""

exit $failed
