#!/bin/bash
# No lease lost on `systemctl restart portd.service`, with 100 leases:
#   - 50 fd leases held by sd-client (which keeps its fds): 40 of one TCP
#     port, 5 of two TCP ports, 5 of one port on TCP and UDP;
#   - 50 number leases from portctl: 45 of one port, 5 of two.
# After the restart every lease is there with the same id, transport, kind,
# ports, ttl and owner (uid, pid), and its remaining time went down by the
# time that passed, within 1 s, and never up. The 1 s: TTLs are whole seconds
# in the protocol, so a daemon may keep deadlines in seconds; the harness
# times the two LIST calls from outside (nsenter + exec: a few ms each).
# Meanwhile another process binds every leased port without SO_REUSEADDR in a
# loop (sd-client probe, [::] and 0.0.0.0 in turn, UDP too for the TCP+UDP
# leases) from before the restart until after the checks: each bind must get
# EADDRINUSE. After the restart the fds handed out before still work (listen,
# accept over IPv4 and IPv6; UDP receives) with their file status flags
# unchanged, the FD store is empty again (portd took its fds back), new
# leases get other ports and ids, a resumed lease can be released, and a
# second restart keeps the leases again.
. "$(dirname "$0")/lib.sh"
sd_init
box_start

N_FD=50
N_NUM=50
TTL=600
TOL_MS=1000
sc() { box_client "$SD_CLIENT_BIN" "$BOX_SOCK" "$@"; }
pctl() { box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" "$@"; }
now_ms() { date +%s%3N; }

# The fd leases: sd-client keeps its fds and waits for commands.
mkfifo "$SD_WORK/holder.in"
# (nsenter -n execs sd-client: $! is its pid. Not through a shell function,
# which would run in a forked subshell.)
nsenter -t "$BOX" -n -- "$SD_CLIENT_BIN" "$BOX_SOCK" hold "$N_FD" "$TTL" <"$SD_WORK/holder.in" >"$SD_WORK/holder.out" 2>"$SD_WORK/holder.err" &
HOLDER=$!
SD_PIDS+=("$HOLDER")
exec {HIN}<>"$SD_WORK/holder.in"
sd_wait_line "$SD_WORK/holder.out" '^ready$' 20 "$HOLDER" >/dev/null ||
	sd_fail "sd-client hold: no leases: $(cat "$SD_WORK/holder.err")"
# Ask the holder; prints its answer line ("ok N" / "fail ...").
holder_check()
{
	local before
	before=$(grep -c -E '^(ok|fail)' "$SD_WORK/holder.out" || true)
	echo check >&"$HIN"
	_answered()
	{
		[ "$(grep -c -E '^(ok|fail)' "$SD_WORK/holder.out" || true)" -gt "$before" ] && return 0
		! sd_gone "$HOLDER" || sd_fail "sd-client hold ended: $(cat "$SD_WORK/holder.err")"
		return 1
	}
	sd_wait 20 _answered || sd_fail "sd-client check: no answer: $(cat "$SD_WORK/holder.err")"
	grep -E '^(ok|fail)' "$SD_WORK/holder.out" | tail -n 1
}

for i in $(seq "$N_NUM"); do
	if [ $((i % 10)) -eq 0 ]; then
		pctl lease --ttl "$TTL" --count 2 >/dev/null || sd_fail "number lease $i failed"
	else
		pctl lease --ttl "$TTL" >/dev/null || sd_fail "number lease $i failed"
	fi
done

tA=$(now_ms)
sc list >"$SD_WORK/A" || sd_fail "list failed"
n=$(wc -l <"$SD_WORK/A")
nfd=$(awk '$3 == "fd"' "$SD_WORK/A" | wc -l)
[ "$n" -eq $((N_FD + N_NUM)) ] && [ "$nfd" -eq "$N_FD" ] ||
	sd_fail "$n leases ($nfd fd), want $((N_FD + N_NUM)) ($N_FD fd)"
# fds the holder has: one per port, two per port for TCP+UDP.
want_fds=$(awk '$3 == "fd" { n += (NF - 8) * ($2 == "both" ? 2 : 1) } END { print n }' "$SD_WORK/A")
ans=$(holder_check)
[ "$ans" = "ok $want_fds" ] || sd_fail "the fds before the restart: $ans (want ok $want_fds)"
sd_log "$n leases ($nfd fd, $want_fds fds held by sd-client $HOLDER, all working)"

# Every leased port, probed from before the restart until after the checks.
mapfile -t specs < <(awk '{ for (i = 9; i <= NF; i++) { if ($2 != "udp") print "tcp:" $i; if ($2 != "tcp") print "udp:" $i } }' "$SD_WORK/A")
nsenter -t "$BOX" -n -- "$SD_CLIENT_BIN" probe "${specs[@]}" >"$SD_WORK/probe.out" 2>"$SD_WORK/probe.err" &
PROBE=$!
SD_PIDS+=("$PROBE")
sd_wait_line "$SD_WORK/probe.out" '^probing$' 10 "$PROBE" >/dev/null ||
	sd_fail "probe did not start: $(cat "$SD_WORK/probe.err")"
sd_log "probing ${#specs[@]} ports with bind() without SO_REUSEADDR"

# Compare lease lists A (taken at tA) and B (at tB): same leases, remaining time
# down by about tB - tA, never up.
compare()
{
	awk -v el="$(($4 - $2))" -v tol="$TOL_MS" '
		function key(    s, i) { s = $2 " " $3 " " $4 " " $5 " " $6 " " $7; for (i = 9; i <= NF; i++) s = s " " $i; return s }
		NR == FNR { a[$1] = key(); ea[$1] = $8; next }
		{
			if (!($1 in a)) { printf "new lease %s after the restart: %s\n", $1, $0; bad = 1; next }
			if (key() != a[$1]) { printf "lease %s changed: %s -> %s\n", $1, a[$1], key(); bad = 1 }
			want = ea[$1] - el
			if ($8 > ea[$1]) { printf "lease %s: %d ms left, was %d: went up\n", $1, $8, ea[$1]; bad = 1 }
			else if ($8 < want - tol || $8 > want + tol) {
				printf "lease %s: %d ms left, want %d +- %d (%d before, %d ms passed)\n", $1, $8, want, tol, ea[$1], el; bad = 1
			}
			seen[$1] = 1
		}
		END {
			for (id in a) if (!(id in seen)) { printf "lease %s lost: %s\n", id, a[id]; bad = 1 }
			exit bad
		}' "$1" "$3"
}

restart()
{
	local m1 m2 t0 t1
	m1=$(box_prop portd.service MainPID)
	t0=$(now_ms)
	timeout 30 nsenter -t "$BOX" -m -p -u -n systemctl --no-ask-password restart portd.service ||
		sd_fail "systemctl restart portd.service failed"
	t1=$(now_ms)
	m2=$(box_prop portd.service MainPID)
	[ "$m2" -gt 0 ] && [ "$m2" != "$m1" ] && [ "$(box_prop portd.service SubState)" = running ] ||
		sd_fail "after the restart: $(box_state portd.service) (MainPID was $m1)"
	# portd saved its leases and exited 0 (systemd logs nothing but "Deactivated successfully").
	if box_journal -u portd.service -o cat | grep -E "Main process exited|Failed with result"; then
		sd_fail "portd did not exit cleanly on SIGTERM"
	fi
	sd_log "restart: MainPID $m1 -> $m2 in $((t1 - t0)) ms"
}

restart
tB=$(now_ms)
sc list >"$SD_WORK/B" || sd_fail "list after the restart failed"
out=$(compare "$SD_WORK/A" "$tA" "$SD_WORK/B" "$tB") ||
	sd_fail "leases after the restart differ:"$'\n'"$(echo "$out" | head -n 20)"
sd_log "all $n leases resumed: same id, ports, transport, kind, ttl, owner; remaining time down by $((tB - tA)) ms +- $TOL_MS"
# Nothing left in the FD store (FDSTOREREMOVE=1 after taking the fds back).
store_empty() { [ "$(box_prop portd.service NFileDescriptorStore)" = 0 ]; }
sd_wait 5 store_empty || sd_fail "the FD store still holds $(box_prop portd.service NFileDescriptorStore) fds after the restart"

ans=$(holder_check)
[ "$ans" = "ok $want_fds" ] || sd_fail "the fds handed out before the restart: $ans (want ok $want_fds)"
sd_log "the $want_fds fds handed out before still work (listen/accept, IPv4 and IPv6; UDP)"

# New leases: other ports, other ids.
for i in 1 2 3 4 5; do
	pctl lease --ttl 60 --json >>"$SD_WORK/new" || sd_fail "new lease $i failed"
done
sc list >"$SD_WORK/B2"
awk 'NR == FNR { for (i = 9; i <= NF; i++) old[$i] = 1; oldid[$1] = 1; next }
	!($1 in oldid) { for (i = 9; i <= NF; i++) if ($i in old) { print "new lease " $1 " got port " $i " of a resumed lease"; bad = 1 }; n++ }
	END { if (n != 5) { print n " new leases listed, want 5"; bad = 1 }; exit bad }' "$SD_WORK/A" "$SD_WORK/B2" ||
	sd_fail "new leases after the restart collide with resumed ones"
sd_log "5 new leases on other ports and ids"

sd_stop_pid "$PROBE"
sum=$(grep '^rounds' "$SD_WORK/probe.out" || true)
[ -n "$sum" ] || sd_fail "probe ended without a summary: $(head -n 5 "$SD_WORK/probe.err")"
sd_log "probe: $sum"
echo "$sum" | grep -q ' stolen 0 errors 0$' || sd_fail "a leased port could be bound during or after the restart: $(head -n 5 "$SD_WORK/probe.err")"

# A resumed number lease can be released by its id (after the probe: its port is free then).
rid=$(awk '$3 == "number" { print $1; exit }' "$SD_WORK/B")
pctl release "$rid" || sd_fail "release of resumed lease $rid failed"
sc list | awk -v id="$rid" '$1 == id { exit 1 }' || sd_fail "released lease $rid is still listed"
sd_log "resumed lease $rid released"

# Once more: the cycle repeats (state file and FD store handled again).
tB3=$(now_ms)
sc list >"$SD_WORK/B3"
restart
tC=$(now_ms)
sc list >"$SD_WORK/C" || sd_fail "list after the second restart failed"
out=$(compare "$SD_WORK/B3" "$tB3" "$SD_WORK/C" "$tC") ||
	sd_fail "leases after the second restart differ:"$'\n'"$(echo "$out" | head -n 20)"
ans=$(holder_check)
[ "$ans" = "ok $want_fds" ] || sd_fail "the fds after the second restart: $ans"
sd_log "second restart: all $(wc -l <"$SD_WORK/C") leases resumed, fds still working"

echo quit >&"$HIN"
exec {HIN}>&-
sd_wait 5 sd_gone "$HOLDER" || sd_fail "sd-client hold did not quit"
sd_pass
