#!/bin/bash
# Socket activation of the system units: portd.socket listens on
# /run/portd/portd.sock (root:portd 0660) while portd.service is inactive; the
# first client starts the service, which takes the socket from systemd (the
# file is never recreated or removed by portd) and grants a lease. Group
# access: a user outside group portd is refused, a member may lease.
. "$(dirname "$0")/lib.sh"
sd_init
box_start

# Before any client: the socket listens, the service has not run.
[ "$(box_prop portd.socket ActiveState)" = active ] || sd_fail "portd.socket: $(box_state portd.socket)"
[ "$(box_prop portd.socket SubState)" = listening ] || sd_fail "portd.socket: $(box_state portd.socket)"
[ "$(box_prop portd.service ActiveState)" = inactive ] || sd_fail "portd.service runs before any client: $(box_state portd.service)"
perm=$(box_exec stat -c '%a %u %g %F' /run/portd/portd.sock)
[ "$perm" = "660 0 $SD_PORTD_GID socket" ] || sd_fail "socket file: '$perm', want '660 0 $SD_PORTD_GID socket' (root:portd 0660)"
inode=$(box_exec stat -c %i /run/portd/portd.sock)
sd_log "socket listening, service inactive, socket file $perm"

# The first connection starts portd.service; the client gets a lease.
port=$(box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" lease --ttl 60) || sd_fail "portctl lease failed"
[[ "$port" =~ ^[0-9]+$ ]] || sd_fail "portctl lease printed '$port'"
sd_log "first client leased port $port"
box_wait_prop portd.service ActiveState active
box_wait_prop portd.service SubState running
main=$(box_prop portd.service MainPID)
[ "$main" -gt 0 ] || sd_fail "no MainPID"
uid=$(box_exec awk '/^Uid:/ { print $2 }' "/proc/$main/status")
[ "$uid" = "$SD_PORTD_UID" ] || sd_fail "portd runs as uid $uid, not portd ($SD_PORTD_UID)"
box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" list | grep -Eq "(^|[[:space:]])$port([[:space:]]|$)" ||
	sd_fail "the lease of port $port is not listed"

# portd took the socket from systemd: same file, still there after the service stops.
[ "$(box_exec stat -c %i /run/portd/portd.sock)" = "$inode" ] || sd_fail "portd replaced the socket file"
box_ctl stop portd.service
box_exec test -S /run/portd/portd.sock || sd_fail "stopping portd.service removed the socket file"
[ "$(box_exec stat -c %i /run/portd/portd.sock)" = "$inode" ] || sd_fail "the socket file changed on stop"
[ "$(box_prop portd.socket SubState)" = listening ] || sd_fail "portd.socket: $(box_state portd.socket)"
# ... and the next client activates it again.
box_client "$PORTCTL_BIN" --socket "$BOX_SOCK" lease --ttl 60 >/dev/null || sd_fail "no lease after a second activation"
box_wait_prop portd.service ActiveState active
sd_log "stop + reactivation: socket file kept (inode $inode)"

# Group access, inside the box (another user cannot reach /proc/PID/root).
as_user()
{
	box_exec env LD_LIBRARY_PATH="$SD_BIN" setpriv --reuid=65534 --regid=65534 "$@"
}
rc=0
err=$(as_user --clear-groups "$SD_BIN/portctl" --socket /run/portd/portd.sock lease --ttl 60 2>&1 >/dev/null) || rc=$?
[ "$rc" -eq 3 ] || sd_fail "a user outside group portd: portctl exit $rc (want 3, permission denied): $err"
sd_log "outside group portd: refused ($err)"
port=$(as_user --groups "$SD_PORTD_GID" "$SD_BIN/portctl" --socket /run/portd/portd.sock lease --ttl 60) ||
	sd_fail "a member of group portd could not lease"
[[ "$port" =~ ^[0-9]+$ ]] || sd_fail "portctl lease printed '$port'"
box_client "$SD_CLIENT_BIN" "$BOX_SOCK" list | awk -v p="$port" '$5 == 65534 && $9 == p { f = 1 } END { exit !f }' ||
	sd_fail "the lease of port $port is not owned by uid 65534"
sd_log "member of group portd: leased port $port, owned by uid 65534"
sd_pass
