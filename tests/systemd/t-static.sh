#!/bin/bash
# Static checks of the units in systemd/:
#   - ExecStart= of both services is the installed portd (prefix/sbindir);
#   - `systemd-analyze verify` prints nothing for the system units and for
#     the user units (it exits 0 even for unknown keys and bad values, so any
#     output fails), with ExecStart= pointing at this build's portd, since
#     verify also checks that the binary exists;
#   - `systemd-analyze security --offline=yes portd.service`: overall exposure
#     of the system service at most 2.0 (the remaining items are printed);
#   - portd.sysusers creates a system user and group portd (systemd-sysusers
#     on a copy of /etc).
# systemd-analyze writes /run/systemd/systemd-units-load: it runs under
# unshare -m with a tmpfs on /run, so the host's /run is untouched.
. "$(dirname "$0")/lib.sh"
sd_init

max_exposure=2.0
d="$SD_WORK/static"
mkdir -p "$d/system" "$d/user"

for svc in "$PORTD_UNITS_BUILD/portd.service" "$PORTD_UNITS_BUILD/user/portd.service"; do
	grep -qx "ExecStart=$PORTD_SBIN_PATH" "$svc" || sd_fail "$svc: ExecStart= is not $PORTD_SBIN_PATH: $(grep ExecStart= "$svc")"
done
cp "$PORTD_UNITS_SRC/portd.socket" "$d/system/"
cp "$PORTD_UNITS_SRC/user/portd.socket" "$d/user/"
sed "s|^ExecStart=$PORTD_SBIN_PATH|ExecStart=$PORTD_BIN|" "$PORTD_UNITS_BUILD/portd.service" >"$d/system/portd.service"
sed "s|^ExecStart=$PORTD_SBIN_PATH|ExecStart=$PORTD_BIN|" "$PORTD_UNITS_BUILD/user/portd.service" >"$d/user/portd.service"

# Runs "$@" in a private mount namespace with an empty /run (and a $XDG_RUNTIME_DIR for --user).
analyze()
{
	unshare -m sh -c 'mount -t tmpfs tmpfs /run && mkdir -p -m 0700 /run/user/0 && exec "$@"' sh \
		env XDG_RUNTIME_DIR=/run/user/0 SYSTEMD_LOG_COLOR=0 "$@"
}

out=$(cd "$d/system" && analyze systemd-analyze verify --man=no portd.socket portd.service 2>&1) ||
	sd_fail "systemd-analyze verify (system units) failed: $out"
[ -z "$out" ] || sd_fail "systemd-analyze verify (system units) printed:"$'\n'"$out"
sd_log "verify, system units: no output"
out=$(cd "$d/user" && analyze systemd-analyze --user verify --man=no portd.socket portd.service 2>&1) ||
	sd_fail "systemd-analyze --user verify (user units) failed: $out"
[ -z "$out" ] || sd_fail "systemd-analyze --user verify (user units) printed:"$'\n'"$out"
sd_log "verify, user units: no output"

out=$(cd "$d/system" && analyze systemd-analyze security --no-pager --offline=yes portd.service 2>&1) ||
	sd_fail "systemd-analyze security failed: $out"
score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for portd\.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || sd_fail "no exposure level in the output of systemd-analyze security:"$'\n'"$out"
sd_log "exposure $score (limit $max_exposure); the items left open:"
printf '%s\n' "$out" | grep '✗' | sed 's/  */ /g' >&2 || true
awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s + 0 <= m + 0) }' ||
	sd_fail "exposure $score is above $max_exposure"
out=$(cd "$d/user" && analyze systemd-analyze --user security --no-pager --offline=yes portd.service 2>&1) || true
sd_log "for information, the user service: $(printf '%s\n' "$out" | grep -o 'Overall exposure.*' || echo '?')"

mkdir -p "$d/root/etc"
for f in passwd group shadow gshadow; do
	[ -e "/etc/$f" ] && cp -p "/etc/$f" "$d/root/etc/$f"
done
out=$(systemd-sysusers --root="$d/root" "$PORTD_UNITS_SRC/portd.sysusers" 2>&1) || sd_fail "systemd-sysusers: $out"
u=$(awk -F: '$1 == "portd"' "$d/root/etc/passwd")
g=$(awk -F: '$1 == "portd"' "$d/root/etc/group")
[ -n "$u" ] && [ -n "$g" ] || sd_fail "portd.sysusers created no user/group portd: $out"
uid=$(echo "$u" | cut -d: -f3)
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || sd_fail "user portd has uid $uid, not a system uid"
[ "$(echo "$u" | cut -d: -f4)" = "$(echo "$g" | cut -d: -f3)" ] || sd_fail "user portd is not in group portd: $u / $g"
sd_log "sysusers: $u"
sd_pass
