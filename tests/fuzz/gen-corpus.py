#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets: one command, run from anywhere.

    python3 tests/fuzz/gen-corpus.py

Rewrites corpus/codec/, corpus/request/ and corpus/portserver/ (stale files
in them are removed).

The protocol's constants (magic, version, message types, flags, sizes) are
read from proto/protocol.h, so a version bump needs nothing but running this
again. The field layouts are written from proto/PROTOCOL.md alone
(struct.pack, little-endian): a second, independent encoder, so if a seed
stops decoding, either the spec or proto/codec.c changed. A fixed-size body
whose size in protocol.h no longer matches its layout here stops the script
(update the layout from PROTOCOL.md).

corpus/request/ and corpus/portserver/ hold scripts in the input formats
described at the top of fuzz-request.c and fuzz-portserver.c.
"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOL_H = os.path.join(HERE, '..', '..', 'proto', 'protocol.h')


def read_constants(path):
    """Every PORTD_* #define and enum member of protocol.h, evaluated."""
    text = re.sub(r'/\*.*?\*/', '', open(path).read(), flags=re.S)
    raw = {}
    for name, value in re.findall(r'^\s*#define\s+(PORTD_\w+)[ \t]+(.+?)\s*$', text, re.M):
        raw[name] = value
    for body in re.findall(r'enum\s+\w+\s*\{(.*?)\}', text, re.S):
        for name, value in re.findall(r'(PORTD_\w+)\s*=\s*([^,]+)', body):
            raw[name] = value.strip()
    consts = {}

    def value(name, depth=0):
        if name in consts:
            return consts[name]
        if depth > 20:
            raise ValueError('%s: definition loops' % name)
        expr = raw[name].replace('UINT64_MAX', str(2**64 - 1))
        expr = re.sub(r'\b(0x[0-9a-fA-F]+|[0-9]+)[uUlL]+\b', r'\1', expr)
        expr = re.sub(r'\bPORTD_\w+\b', lambda m: str(value(m.group(0), depth + 1)), expr)
        if not re.fullmatch(r'[0-9a-fA-Fx()+*\- ]+', expr):
            raise ValueError('%s: cannot evaluate %r' % (name, raw[name]))
        consts[name] = eval(expr)  # digits and arithmetic only, checked above
        return consts[name]

    for name in raw:
        value(name)
    return consts


P = read_constants(PROTOCOL_H)
MAGIC = P['PORTD_PROTO_MAGIC']
VERSION = P['PORTD_PROTO_VERSION']
HDR_SIZE = P['PORTD_HDR_SIZE']
REPLY = P['PORTD_MSG_REPLY']
LEASE, RENEW, RELEASE, LIST, STATUS, HELLO = (P['PORTD_MSG_' + n] for n in
                                              ('LEASE', 'RENEW', 'RELEASE', 'LIST', 'STATUS', 'HELLO'))
TCP, UDP, BOTH = P['PORTD_TCP'], P['PORTD_UDP'], P['PORTD_BOTH']
F_FD, F_TIE, F_CONSECUTIVE, F_PORTSERVER = (P['PORTD_LEASE_F_' + n] for n in
                                            ('FD', 'TIE', 'CONSECUTIVE', 'PORTSERVER'))
NO_DEADLINE = P['PORTD_LIST_NO_DEADLINE']
R = {n[len('PORTD_R_'):]: v for n, v in P.items() if n.startswith('PORTD_R_')}


def sized(body, name):
    if len(body) != P[name]:
        raise SystemExit('%s is %d in protocol.h but %d in gen-corpus.py: update the layout from '
                         'PROTOCOL.md' % (name, P[name], len(body)))
    return body


def msg(mtype, mid, body, version=VERSION):
    hdr = struct.pack('<IHHII', MAGIC, version, mtype, HDR_SIZE + len(body), mid)
    return sized(hdr, 'PORTD_HDR_SIZE') + body


def lease_req(flags, ttl, count, transport, port, pid, exclude=()):
    b = sized(struct.pack('<IIHBBHHII', flags, ttl, count, transport, 0, port, len(exclude), pid, 0),
              'PORTD_LEASE_REQ_SIZE')
    return b + b''.join(struct.pack('<HH', lo, hi) for lo, hi in exclude)


def lease_rep(lid, ttl, flags, transport, ports):
    return sized(struct.pack('<IIQIIBBHI', 0, 0, lid, ttl, flags, transport, 0, len(ports), 0),
                 'PORTD_LEASE_REP_SIZE') + struct.pack('<%dH' % len(ports), *ports)


def renew_req(lid, ttl):
    return sized(struct.pack('<QII', lid, ttl, 0), 'PORTD_RENEW_REQ_SIZE')


def renew_rep(lid, ttl):
    return sized(struct.pack('<IIQII', 0, 0, lid, ttl, 0), 'PORTD_RENEW_REP_SIZE')


def release_req(lid, port=0, transport=0):
    return sized(struct.pack('<QHBBI', lid, port, transport, 0, 0), 'PORTD_RELEASE_REQ_SIZE')


def release_rep(lid):
    return sized(struct.pack('<IIQ', 0, 0, lid), 'PORTD_RELEASE_REP_SIZE')


def list_req(after_id=0):
    return sized(struct.pack('<QII', after_id, 0, 0), 'PORTD_LIST_REQ_SIZE')


def list_entry(lid, expires_ms, uid, pid, ttl, flags, transport, tied_pid, ports):
    e = sized(struct.pack('<QQIIIIBBHI', lid, expires_ms, uid, pid, ttl, flags, transport, 0,
                          len(ports), tied_pid), 'PORTD_LIST_ENTRY_SIZE')
    e += struct.pack('<%dH' % len(ports), *ports)
    return e + b'\0' * (-len(e) % 8)


def list_rep(entries, more):
    return sized(struct.pack('<IIII', 0, 0, len(entries), 1 if more else 0),
                 'PORTD_LIST_REP_SIZE') + b''.join(entries)


def status_rep(version):
    v = version.encode()
    vlen = P['PORTD_VERSION_LEN']
    body = struct.pack('<IIQIIIIIIIIIHHII', 0, 0, 123456789, 3, 5, 1, 2, 1000, 64, 300,
                       86400, 60, 30000, 31000, 2, 0) + v + b'\0' * (vlen - len(v)) + \
        struct.pack('<QIIHHI', 1 << 20, 40, 1200, 32768, 60999, 0)
    if len(body) != P['PORTD_STATUS_REP_SIZE']:
        raise SystemExit('PORTD_STATUS_REP_SIZE changed: update status_rep() from PROTOCOL.md')
    return body


def hello_rep(uid, pid):
    body = struct.pack('<IIII', 0, 0, uid, pid)
    if len(body) != P['PORTD_HELLO_REP_SIZE']:
        raise SystemExit('PORTD_HELLO_REP_SIZE changed: update hello_rep() from PROTOCOL.md')
    return body


def error(result, detail):
    return sized(struct.pack('<II', result, detail), 'PORTD_RESULT_SIZE')


# ---- corpus/codec: one message per file ----

CODEC = {
    'lease-req-any': msg(LEASE, 1, lease_req(0, 0, 1, TCP, 0, 0)),
    'lease-req-port': msg(LEASE, 42, lease_req(F_FD | F_TIE, 300, 1, TCP, 8080, 0x01020304)),
    'lease-req-many': msg(LEASE, 2, lease_req(F_FD, 60, 16, BOTH, 0, 0)),
    'lease-req-udp': msg(LEASE, 3, lease_req(F_TIE, 10, 4, UDP, 0, 4242)),
    'lease-rep-one': msg(LEASE | REPLY, 42, lease_rep(7, 300, F_FD | F_TIE, TCP, [8080])),
    'lease-rep-many': msg(LEASE | REPLY, 2,
                          lease_rep(8, 60, F_FD, BOTH, list(range(30000, 30016)))),
    'renew-req': msg(RENEW, 4, renew_req(7, 600)),
    'renew-rep': msg(RENEW | REPLY, 4, renew_rep(7, 600)),
    'release-req-id': msg(RELEASE, 5, release_req(7)),
    'release-req-port': msg(RELEASE, 6, release_req(0, 8080, UDP)),
    'release-rep': msg(RELEASE | REPLY, 5, release_rep(7)),
    'list-req': msg(LIST, 7, list_req()),
    'list-rep-empty': msg(LIST | REPLY, 7, list_rep([], False)),
    'list-rep': msg(LIST | REPLY, 8, list_rep([
        list_entry(1, 5000, 1000, 77, 60, 0, TCP, 0, [40000]),
        list_entry(2, 9000, 0, 1, 300, F_FD, BOTH, 0, [40001, 40002, 40003, 40004]),
        list_entry(9, 1, 1001, 0, 10, F_TIE, UDP, 555, list(range(50000, 50016))),
    ], True)),
    'list-rep-portserver': msg(LIST | REPLY, 8, list_rep([
        list_entry(10, NO_DEADLINE, 1000, 4242, 0, F_PORTSERVER, TCP, 4243, [20000]),
    ], False)),
    'status-req': msg(STATUS, 9, b''),
    'status-req-fds': msg(STATUS, 9, struct.pack('<II', P['PORTD_STATUS_REQ_F_FDS'], 0)),
    'hello-req': msg(HELLO, 1, b''),
    'hello-rep': msg(HELLO | REPLY, 1, hello_rep(1000, 4242)),
    'status-rep': msg(STATUS | REPLY, 9, status_rep('0.1.0')),
    'status-rep-longver': msg(STATUS | REPLY, 9, status_rep('x' * P['PORTD_VERSION_LEN'])),
    'error-quota': msg(LEASE | REPLY, 10, error(R['QUOTA_UID'], 16)),
    'error-version': msg(RENEW | REPLY, 11, error(R['VERSION'], VERSION)),
    'error-badtype': msg(0x0042 | REPLY, 12, error(R['BADTYPE'], 0x42)),
    'error-unknown-result': msg(LIST | REPLY, 13, error(R['MAX'] + 1, 0)),
    'version-old': msg(LEASE, 14, lease_req(0, 0, 1, TCP, 0, 0), version=VERSION - 1),
}

# ---- corpus/request: scripts for fuzz-request.c ----

RANGE_LO = 61000  # fuzz-request.c and fuzz-portserver.c manage 61000..


def rq_config(size=2, leases=2, per_uid_one=False, quarantine=False, reserved=False,
              small_sndbuf=False):
    """size: 1/4/16/64 ports (index 0..3); leases: max 1/4/64/1000 (index 0..3)."""
    return bytes([size | leases << 2 | (0x10 if per_uid_one else 0) | (0x20 if quarantine else 0) |
                  (0x40 if reserved else 0) | (0x80 if small_sndbuf else 0)])


def send(slot, message, nfds=0, kind=0, hold=False):
    """hold: no turn of the event loop after this datagram; the next ones queue up behind it."""
    return bytes([slot << 3, (0x80 if hold else 0) | kind << 5 | nfds]) + \
        struct.pack('<H', len(message)) + message


PID_HELPER_ROOT, PID_HELPER_NOBODY, PID_THREAD, PID_PORTD = range(4)


def send_pid(slot, message, target):
    """SEND with the LEASE pid field set by the fuzzer to a process the input cannot name."""
    return bytes([2 | slot << 3 | target << 4, 0]) + struct.pack('<H', len(message)) + message


def tick(seconds):
    return bytes([3]) + struct.pack('<H', seconds * 10)


def reading(slot, on):
    return bytes([4 | slot << 3 | (0x10 if on else 0)])


def reconnect(slot, helper):
    return bytes([5 | slot << 3 | helper << 4])


def kill(helper):
    return bytes([6 | helper << 3])


LOOP = bytes([7])
ROOT, NOBODY = 0, 1  # slots (and helpers): slot 0 starts as root, slot 1 as nobody


def lease(mid, flags=0, ttl=0, count=1, transport=TCP, port=0, pid=0, exclude=()):
    return msg(LEASE, mid, lease_req(flags, ttl, count, transport, port, pid, exclude))


def status(mid, flags=None):
    if flags is None:
        return msg(STATUS, mid, b'')
    return msg(STATUS, mid, struct.pack('<II', flags, 0))


def lst(mid, after=0):
    return msg(LIST, mid, list_req(after))


def renew(mid, lid, ttl=0):
    return msg(RENEW, mid, renew_req(lid, ttl))


def release(mid, lid, port=0, transport=0):
    return msg(RELEASE, mid, release_req(lid, port, transport))


def script(config, *records):
    return config + b''.join(records)


REQUEST = {
    'lease-number': script(rq_config(), send(ROOT, lease(1)), send(ROOT, lst(2))),
    'lease-fd-both': script(rq_config(3),
                            send(ROOT, lease(1, F_FD, 60, 4, BOTH)),
                            send(ROOT, lst(2)), send(ROOT, release(3, 1)), send(ROOT, status(4))),
    'lease-udp-fd': script(rq_config(2), send(ROOT, lease(1, F_FD, 0, 2, UDP))),
    'lease-udp-number-reserved': script(rq_config(2, reserved=True),
                                        send(ROOT, lease(1, 0, 0, 1, UDP)),
                                        send(ROOT, lease(2, 0, 0, 1, BOTH)), send(ROOT, status(3))),
    'lease-udp-number-refused': script(rq_config(2), send(ROOT, lease(1, 0, 0, 1, UDP))),
    'lease-port': script(rq_config(2), send(ROOT, lease(1, F_FD, 0, 1, TCP, RANGE_LO + 3)),
                         send(ROOT, lease(2, 0, 0, 1, TCP, RANGE_LO + 3)),
                         send(ROOT, lease(3, 0, 0, 1, TCP, 1))),
    'lease-consecutive-exclude': script(
        rq_config(3), send(ROOT, lease(1, F_FD | F_CONSECUTIVE, 0, 8, TCP, 0, 0,
                                       [(RANGE_LO, RANGE_LO + 2), (RANGE_LO + 9, RANGE_LO + 9)])),
        send(ROOT, lease(2, F_FD | F_CONSECUTIVE, 0, 4, BOTH, RANGE_LO + 40))),
    'lease-exhaust': script(rq_config(1), send(ROOT, lease(1, 0, 0, 4)), send(ROOT, lease(2)),
                            send(ROOT, release(3, 1)), send(ROOT, lease(4))),
    'quarantine': script(rq_config(0, quarantine=True), send(ROOT, lease(1)),
                         send(ROOT, release(2, 1)), send(ROOT, lease(3)), tick(61),
                         send(ROOT, lease(4)), send(ROOT, status(5))),
    'expiry': script(rq_config(), send(ROOT, lease(1, 0, 1)), send(ROOT, lease(2, 0, 30, 2)),
                     tick(2), send(ROOT, lst(3)), send(ROOT, renew(4, 1)), send(ROOT, renew(5, 2, 100)),
                     tick(200), send(ROOT, lst(6))),
    'ttl-too-long': script(rq_config(), send(ROOT, lease(1, 0, 100000)), send(ROOT, renew(2, 1, 0))),
    'quota-total': script(rq_config(2, 0), send(ROOT, lease(1)), send(NOBODY, lease(2)),
                          send(ROOT, status(3))),
    'quota-uid': script(rq_config(2, 1, per_uid_one=True), send(ROOT, lease(1)), send(ROOT, lease(2)),
                        send(NOBODY, lease(3)), send(NOBODY, status(4)),
                        send(NOBODY, status(5, P['PORTD_STATUS_REQ_F_FDS'])),
                        send(ROOT, status(6, P['PORTD_STATUS_REQ_F_FDS'])), send(ROOT, status(7, 0))),
    'two-users': script(rq_config(), send(ROOT, lease(1, F_FD)), send(NOBODY, lease(2)),
                        send(NOBODY, lst(3)), send(NOBODY, renew(4, 1)), send(NOBODY, release(5, 1)),
                        send(NOBODY, release(6, 0, RANGE_LO, TCP)), send(ROOT, lst(7)),
                        send(ROOT, release(8, 2))),
    'tie-kill': script(rq_config(), send(ROOT, lease(1, F_TIE)), send(NOBODY, lease(2, F_TIE | F_FD)),
                       kill(ROOT), LOOP, send(ROOT, lst(3)), send(ROOT, lease(4, F_TIE)),
                       kill(NOBODY), LOOP, send(NOBODY, lst(5))),
    'tie-pid': script(rq_config(), send(ROOT, lease(1, 0, 0, 1, TCP, 0, 1)),
                      send(ROOT, lease(2, 0, 0, 1, TCP, 0, 2)),
                      send(ROOT, lease(3, 0, 0, 1, TCP, 0, 0x3fffffff)),
                      send(NOBODY, lease(4, 0, 0, 1, TCP, 0, 1)),
                      send(ROOT, lease(5, F_TIE, 0, 1, TCP, 0, 1))),
    'tie-helper': script(rq_config(), send_pid(ROOT, lease(1), PID_HELPER_ROOT),
                         send_pid(NOBODY, lease(2, F_FD), PID_HELPER_NOBODY),
                         send_pid(NOBODY, lease(3), PID_HELPER_ROOT),
                         send_pid(ROOT, lease(4), PID_HELPER_NOBODY), kill(ROOT), LOOP,
                         send(ROOT, lst(5)), kill(NOBODY), LOOP, send(ROOT, lst(6))),
    'tie-thread': script(rq_config(), send_pid(ROOT, lease(1), PID_THREAD)),
    'tie-portd': script(rq_config(), send_pid(ROOT, lease(1), PID_PORTD), send(ROOT, lst(2))),
    'deferred': script(rq_config(small_sndbuf=True), reading(ROOT, False),
                       *[send(ROOT, lease(i, F_FD)) for i in range(1, 9)],
                       *[send(ROOT, lst(100 + i)) for i in range(40)],
                       reading(ROOT, True)),
    'deferred-abandoned': script(rq_config(small_sndbuf=True), reading(ROOT, False),
                                 *[send(ROOT, lease(i, F_FD)) for i in range(1, 9)],
                                 *[send(ROOT, status(100 + i)) for i in range(40)],
                                 reconnect(ROOT, ROOT), send(ROOT, status(200))),
    'both-udp-taken': script(rq_config(0), send(ROOT, lease(1, F_FD, 0, 1, UDP)),
                             send(ROOT, lease(2, F_FD, 0, 1, BOTH))),
    'queued': script(rq_config(), *[send(ROOT, status(i), hold=True) for i in range(1, 41)], LOOP,
                     LOOP),
    'queued-abandoned': script(rq_config(), send(ROOT, lease(1, F_FD)),
                               *[send(ROOT, lease(i, F_FD), hold=True) for i in range(2, 6)],
                               reconnect(ROOT, ROOT), send(ROOT, lst(6))),
    # The 50th reply, a lease, does not fit in the small buffer: its lease must end with the connection.
    'deferred-lease-abandoned': script(rq_config(3, 3, small_sndbuf=True), reading(ROOT, False),
                                       *[send(ROOT, lease(i, F_FD)) for i in range(1, 51)],
                                       reconnect(ROOT, ROOT)),
    'reconnect': script(rq_config(), send(ROOT, lease(1)), reconnect(ROOT, NOBODY),
                        send(ROOT, lst(2)), reconnect(NOBODY, ROOT), send(NOBODY, lst(3))),
    'garbage': script(rq_config(), send(ROOT, b'\xff' * 40)),
    'hello': script(rq_config(), send(ROOT, msg(HELLO, 1, b'')), send(ROOT, lease(2)),
                    send(NOBODY, msg(HELLO, 1, b'')), send(NOBODY, msg(HELLO, 2, b'\0' * 4))),
    'short': script(rq_config(), send(ROOT, msg(STATUS, 1, b'')[:10])),
    'empty-datagram': script(rq_config(), send(ROOT, lease(1)), send(ROOT, b'')),
    'too-long': script(rq_config(), send(ROOT, msg(STATUS, 1, b'\0' * (P['PORTD_MSG_MAX'])))),
    'version-old': script(rq_config(), send(ROOT, msg(STATUS, 1, b'', version=VERSION - 1))),
    'version-new': script(rq_config(), send(ROOT, msg(LIST, 1, list_req(), version=VERSION + 1))),
    'stray-reply': script(rq_config(), send(ROOT, msg(STATUS | REPLY, 1, status_rep('x')))),
    'bad-type': script(rq_config(), send(ROOT, msg(0x42, 1, b'')), send(ROOT, status(2))),
    'bad-body': script(rq_config(), send(ROOT, msg(LEASE, 1, lease_req(0x80, 0, 1, TCP, 0, 0))),
                       send(ROOT, status(2))),
    'fds-pipe': script(rq_config(), send(ROOT, status(1), 2, 0)),
    'fds-socket': script(rq_config(), send(ROOT, status(1), 3, 1)),
    'fds-own-end': script(rq_config(), send(ROOT, status(1), 1, 2)),
    'fds-too-many': script(rq_config(), send(ROOT, status(1), P['PORTD_FDS_MAX'] + 1, 3)),
}

# ---- corpus/portserver: scripts for fuzz-portserver.c ----


def ps_config(size=3, leases=3, per_uid_one=False):
    return bytes([size | leases << 2 | (0x10 if per_uid_one else 0)])


def connect(slot, helper=0):
    return bytes([slot << 3 | helper << 6])


def write(slot, data):
    return bytes([1 | slot << 3, len(data)]) + data


PS_LOOP = bytes([2])


def shut(slot):
    return bytes([3 | slot << 3])


def close(slot):
    return bytes([4 | slot << 3])


def burst(n):
    return bytes([5, n])


def ps_kill(helper):
    return bytes([6 | helper << 3])


def read(slot):
    return bytes([7 | slot << 3])


def ask(slot, line, helper=0):
    """A connection that writes its line at once and reads the answer."""
    return connect(slot, helper) + write(slot, line) + PS_LOOP + read(slot)


# '@' and '$' stand for the pids of helper 0 (root) and 1 (nobody), '%' for a thread of
# helper 0 that is not its leader, '#' for portd's own pid.
PORTSERVER = {
    'grant': ps_config() + ask(0, b'@\n'),
    'grant-split': ps_config() + connect(0) + write(0, b'@') + PS_LOOP + write(0, b'\n') + PS_LOOP +
    read(0),
    'grant-waiting': ps_config() + connect(0) + PS_LOOP + write(0, b'@\n') + PS_LOOP + read(0),
    'grant-shut': ps_config() + connect(0) + write(0, b'@\n') + shut(0) + PS_LOOP + read(0),
    'nobody-own': ps_config() + ask(0, b'$\n', 1),
    'nobody-other': ps_config() + ask(0, b'@\n', 1),
    'root-for-nobody': ps_config() + ask(0, b'$\n'),
    'pid-0': ps_config() + ask(0, b'0\n'),
    'pid-1': ps_config() + ask(0, b'1\n'),
    'pid-kthread': ps_config() + ask(0, b'2\n'),
    'pid-self': ps_config() + ask(0, b'#\n'),
    'pid-thread': ps_config() + ask(0, b'%\n'),
    'pid-none': ps_config() + ask(0, b'4194305\n'),
    'pid-intmax': ps_config() + ask(0, b'2147483647\n'),
    'pid-overflow': ps_config() + ask(0, b'2147483648\n'),
    'leading-zeros': ps_config() + ask(0, b'0' * 20 + b'@\n'),
    'not-digits': ps_config() + ask(0, b'12a\n'),
    'empty-line': ps_config() + ask(0, b'\n'),
    'after-newline': ps_config() + ask(0, b'@\nx'),
    'crlf': ps_config() + ask(0, b'@\r\n'),
    'too-long': ps_config() + ask(0, b'1' * 40),
    'line-max': ps_config() + ask(0, b'0' * 30 + b'@\n'),
    'no-newline-shut': ps_config() + connect(0) + write(0, b'@') + shut(0) + PS_LOOP + read(0),
    'closed-before-answer': ps_config() + connect(0) + write(0, b'@\n') + close(0) + PS_LOOP,
    'closed-waiting': ps_config() + connect(0) + PS_LOOP + write(0, b'@\n') + close(0) + PS_LOOP,
    'quota-total': ps_config(3, 0) + ask(0, b'@\n') + ask(1, b'$\n', 1) + ask(2, b'@\n'),
    'quota-uid': ps_config(3, 2, True) + ask(0, b'@\n') + ask(1, b'@\n') + ask(2, b'$\n', 1),
    'range-full': ps_config(0) + ask(0, b'@\n') + ask(1, b'@\n'),
    'kill': ps_config() + ask(0, b'@\n') + ps_kill(0) + PS_LOOP + ask(1, b'@\n') + ask(2, b'$\n', 1) +
    ps_kill(1) + PS_LOOP,
    'many': ps_config() + b''.join(connect(i, i & 1) for i in range(8)) +
    b''.join(write(i, b'@' if i & 1 == 0 else b'$') for i in range(8)) + PS_LOOP +
    b''.join(write(i, b'\n') for i in range(8)) + PS_LOOP + b''.join(read(i) for i in range(8)),
    'overload': ps_config() + burst(140) + ask(0, b'@\n') + PS_LOOP + read(0),
}


def write_dir(name, seeds):
    out = os.path.join(HERE, 'corpus', name)
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):
        if old not in seeds:
            os.remove(os.path.join(out, old))
    for seed, data in sorted(seeds.items()):
        with open(os.path.join(out, seed), 'wb') as f:
            f.write(data)


def main():
    write_dir('codec', CODEC)
    write_dir('request', REQUEST)
    write_dir('portserver', PORTSERVER)


if __name__ == '__main__':
    main()
