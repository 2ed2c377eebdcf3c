#!/bin/bash
# The hardening of portd.service leaves portd's job intact (each check stands
# for a directive that the unit leaves out, or must keep out):
#   - ProtectProc=/ProcSubset=: a member of group portd ties a lease to its
#     own process (portd reads /proc/PID/status of another user), and the
#     lease ends when that process exits; portd sees that the host reserved
#     its --range (it reads /proc/sys/net/ipv4/ip_local_reserved_ports) and
#     then grants number-only UDP leases;
#   - IPAddressDeny=: a client listens on an fd lease's socket and accepts
#     connections over IPv4 and IPv6 (portd created that socket in its own
#     cgroup, whose IP filter would apply);
#   - LimitNOFILE=: portd runs with soft = hard open-files limit, enough for
#     its default limits (no warning in its log);
#   - RestrictAddressFamilies= keeps AF_NETLINK: portd reads the host's
#     ephemeral ports through NETLINK_SOCK_DIAG (status shows them, and the
#     log has no warning that it cannot).
SD_DROPIN=$'ExecStart=\nExecStart=/run/portd-test/bin/portd -v --range 40000-40999'${SD_DROPIN:+$'\n'$SD_DROPIN}
. "$(dirname "$0")/lib.sh"
sd_init
box_start

# The host reserves the range (as systemd/portd-reserved-ports.conf would), in the box's netns.
nsenter -t "$BOX" -n -- sh -c 'echo 40000-40999 >/proc/sys/net/ipv4/ip_local_reserved_ports'
timeout 20 nsenter -t "$BOX" -m -p -u -n systemctl --no-ask-password start portd.service ||
	sd_fail "systemctl start portd.service failed or hung"
box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" status --json | grep -q '"reserved": *true' ||
	sd_fail "portd does not see its reserved range: $(box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" status)"
st=$(box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" status --json)
echo "$st" | grep -Eq '"eph_lo": [1-9][0-9]*, "eph_hi": [1-9][0-9]*' ||
	sd_fail "portd does not see the host's ephemeral ports: $st; $(box_journal -u portd.service -o cat | grep 'ephemeral' || true)"
sd_log "host's ephemeral ports seen through NETLINK_SOCK_DIAG: $(echo "$st" | grep -o '"eph_lo.*')"
port=$(box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" lease --udp --ttl 60) || sd_fail "no UDP number lease"
[ "$port" -ge 40000 ] && [ "$port" -le 40999 ] || sd_fail "UDP lease outside the range: $port"
sd_log "reserved range seen through /proc/sys; UDP number lease $port"

# A tied lease from another user's process, inside the box's pid namespace:
# sh takes the lease tied to itself, then waits for input we hold open.
mkfifo "$SD_WORK/tied.in"
nsenter -t "$BOX" -m -p -u -n -- env LD_LIBRARY_PATH="$SD_BIN" \
	setpriv --reuid=65534 --regid=65534 --groups="$SD_PORTD_GID" \
	sh -c "$SD_BIN/portctl --socket /run/portd/portd.sock lease --ttl 300 --pid parent --json && echo pid=\$\$ && read -r _" \
	<"$SD_WORK/tied.in" >"$SD_WORK/tied.out" 2>&1 &
TIED=$!
SD_PIDS+=("$TIED")
exec {TIN}<>"$SD_WORK/tied.in"
sd_wait_line "$SD_WORK/tied.out" '^pid=' 10 "$TIED" >/dev/null || sd_fail "tied lease: $(cat "$SD_WORK/tied.out")"
id=$(sed -n 's/.*"id": *\([0-9]*\).*/\1/p' "$SD_WORK/tied.out")
[ -n "$id" ] || sd_fail "tied lease: $(cat "$SD_WORK/tied.out")"
line=$(box_client "$SD_CLIENT_BIN" "$BOX_SOCK" list | awk -v id="$id" '$1 == id')
tied=$(echo "$line" | awk '{ print $7 }')
[ "$(echo "$line" | awk '{ print $5 }')" = 65534 ] && [ "${tied:-0}" -gt 0 ] ||
	sd_fail "lease $id is not owned by 65534 and tied: '$line'"
# End of input: sh exits, and the lease with it.
exec {TIN}>&-
sd_wait 5 sd_gone "$TIED" || sd_fail "the tied process did not exit"
lease_gone() { ! box_client "$SD_CLIENT_BIN" "$BOX_SOCK" list | awk -v id="$id" '$1 == id { f = 1 } END { exit !f }'; }
sd_wait 5 lease_gone || sd_fail "tied lease $id did not end with its process"
sd_log "lease $id of uid 65534 tied to pid $tied (box), ended with it"

# An fd lease: the client listens and accepts on the socket portd created.
mkfifo "$SD_WORK/holder.in"
nsenter -t "$BOX" -n -- "$SD_CLIENT_BIN" "$BOX_SOCK" hold 2 60 <"$SD_WORK/holder.in" >"$SD_WORK/holder.out" 2>&1 &
HOLDER=$!
SD_PIDS+=("$HOLDER")
exec {HIN}<>"$SD_WORK/holder.in"
sd_wait_line "$SD_WORK/holder.out" '^ready$' 10 "$HOLDER" >/dev/null || sd_fail "hold: $(cat "$SD_WORK/holder.out")"
echo check >&"$HIN"
ans=$(sd_wait_line "$SD_WORK/holder.out" '^(ok|fail)' 20 "$HOLDER") || sd_fail "hold: no answer"
[ "$ans" = "ok 2" ] || sd_fail "fd leases: $ans"
echo quit >&"$HIN"
sd_log "fd leases: the client listens and accepts on them"

# Open-files limit.
main=$(box_prop portd.service MainPID)
read -r soft hard < <(box_exec awk '/^Max open files/ { print $4, $5 }' "/proc/$main/limits")
[ "$soft" = "$hard" ] || sd_fail "open-files limit: soft $soft, hard $hard"
if box_journal -u portd.service -o cat | grep 'open-files limit'; then
	sd_fail "portd warns about its open-files limit"
fi
if box_journal -u portd.service -o cat | grep "cannot read the host's ephemeral ports"; then
	sd_fail "portd cannot read the host's ephemeral ports under its sandbox"
fi
sd_log "open-files limit $soft (soft = hard), no warning"
sd_pass
