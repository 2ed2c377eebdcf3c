#!/bin/bash
# Type=notify: `systemctl start portd.service` returns once portd sent READY=1
# (the job waits for it), and then ActiveState=active, SubState=running and a
# one-line StatusText are what `systemctl show` reports; StatusText follows
# the lease table (after leases are taken, and again after they end).
# Also: under journald, portd logs through the native journal protocol with
# its own fields (_TRANSPORT=journal, LEASE_ID=...), not as plain stderr lines.
. "$(dirname "$0")/lib.sh"
sd_init
box_start

show() { box_ctl show -p ActiveState,SubState,StatusText portd.service; }

[ "$(box_prop portd.service ActiveState)" = inactive ] || sd_fail "portd.service runs already: $(box_state portd.service)"
timeout 20 nsenter -t "$BOX" -m -p -u -n systemctl --no-ask-password start portd.service ||
	sd_fail "systemctl start portd.service failed or hung"
s=$(show)
sd_log "after start: $(echo "$s" | tr '\n' ' ')"
echo "$s" | grep -qx ActiveState=active || sd_fail "not active right after start (READY=1 missing?): $s"
echo "$s" | grep -qx SubState=running || sd_fail "not running right after start: $s"
status0=$(box_prop portd.service StatusText)
[ -n "$status0" ] || sd_fail "no STATUS= sent with READY=1"
[ "$(printf '%s' "$status0" | wc -l)" -eq 0 ] || sd_fail "StatusText is more than one line: '$status0'"

ports=()
for i in 1 2 3; do
	ports+=("$(box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" lease --ttl 300)") || sd_fail "lease $i failed"
done
sd_log "leased ports ${ports[*]}"
status_changed() { [ "$(box_prop portd.service StatusText)" != "$1" ]; }
sd_wait 5 status_changed "$status0" || sd_fail "StatusText still '$status0' 5 s after 3 leases"
status1=$(box_prop portd.service StatusText)
sd_log "StatusText with 3 leases: '$status1' (was '$status0')"
[[ "$status1" =~ (^|[^0-9])3([^0-9]|$) ]] || sd_fail "StatusText '$status1' does not show the 3 leases"

for p in "${ports[@]}"; do
	box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" release --port "$p" || sd_fail "release --port $p failed"
done
sd_wait 5 status_changed "$status1" || sd_fail "StatusText still '$status1' 5 s after the leases ended"
sd_log "StatusText after release: '$(box_prop portd.service StatusText)'"
s=$(show)
echo "$s" | grep -qx SubState=running || sd_fail "not running: $s"

# Structured logging: lease events (-v) through sd_journal_send, with fields.
n=$(box_journal -u portd.service _TRANSPORT=journal -o export | grep -c '^LEASE_ID=' || true)
[ "$n" -ge 3 ] || sd_fail "no structured lease entries (LEASE_ID=) in the journal: $(box_journal -u portd.service -o verbose -n 3)"
sd_log "journal: $n entries with LEASE_ID= over the native protocol"
sd_pass
