#!/bin/bash
# WatchdogSec=: a portd whose event loop runs keeps pinging (WATCHDOG=1 at
# half the interval) and is left alone; one whose loop stalls (SIGSTOP to its
# MainPID) is killed by the watchdog and restarted (Restart=on-failure):
# NRestarts goes up, a new MainPID serves leases.
# The test drop-in shortens the interval to 1 s and sets WatchdogSignal=SIGKILL:
# the default SIGABRT would wait for SIGCONT and dump core (the host's
# core_pattern applies in the box).
SD_DROPIN=$'WatchdogSec=1s\nWatchdogSignal=SIGKILL'${SD_DROPIN:+$'\n'$SD_DROPIN}
. "$(dirname "$0")/lib.sh"
sd_init
box_start

timeout 20 nsenter -t "$BOX" -m -p -u -n systemctl --no-ask-password start portd.service ||
	sd_fail "systemctl start portd.service failed or hung"
[ "$(box_prop portd.service WatchdogUSec)" = 1s ] || sd_fail "WatchdogUSec is $(box_prop portd.service WatchdogUSec), not 1s"
pid1=$(box_prop portd.service MainPID)
[ "$pid1" -gt 0 ] || sd_fail "no MainPID"

# Alive and pinging: three watchdog intervals pass without a restart.
# (Waiting for nothing to happen takes a fixed time.)
sleep 3
[ "$(box_prop portd.service MainPID)" = "$pid1" ] && [ "$(box_prop portd.service NRestarts)" = 0 ] ||
	sd_fail "a running portd was restarted: $(box_state portd.service); journal: $(box_journal -u portd.service -n 5 -o cat)"
box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" lease --ttl 60 >/dev/null || sd_fail "portd does not serve"
sd_log "MainPID $pid1 pinged the watchdog for 3 s"

# Stall the loop.
box_exec kill -STOP "$pid1"
sd_log "SIGSTOP to $pid1"
restarted()
{
	local p n
	p=$(box_prop portd.service MainPID)
	n=$(box_prop portd.service NRestarts)
	[ "$n" -ge 1 ] && [ "$p" -gt 0 ] && [ "$p" != "$pid1" ] &&
		[ "$(box_prop portd.service SubState)" = running ]
}
sd_wait 10 restarted || sd_fail "no watchdog restart 10 s after SIGSTOP: $(box_state portd.service)"
pid2=$(box_prop portd.service MainPID)
box_journal -u portd.service -o cat | grep -q 'Watchdog timeout' ||
	sd_fail "restarted, but not by the watchdog: $(box_journal -u portd.service -n 10 -o cat)"
box_exec test ! -e "/proc/$pid1" || sd_fail "the stalled portd $pid1 is still there"
sd_log "watchdog killed $pid1; restarted as $pid2 ($(box_state portd.service))"

# For the record (the contract keeps leases over SIGTERM only, not over a kill).
sd_log "leases after the watchdog restart: $(box_client "$SD_CLIENT_BIN" "$BOX_SOCK" list | wc -l) (1 before)"
port=$(box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" lease --ttl 60) || sd_fail "the new portd does not serve"
sd_log "new MainPID $pid2 leased port $port"
sd_pass
