#!/usr/bin/env python3
"""Write the seed corpus for fuzz-codec: valid messages of every type.

Written from proto/PROTOCOL.md alone (struct.pack, little-endian), so it is
also a second, independent encoder: if a seed stops decoding, either the spec
or proto/codec.c changed. Run from anywhere; rewrites corpus/codec/.

    python3 tests/fuzz/gen-corpus.py
"""
import os
import struct

MAGIC = 0x44545250
VERSION = 3
REPLY = 0x8000
LEASE, RENEW, RELEASE, LIST, STATUS = 1, 2, 3, 4, 5
TCP, UDP, BOTH = 1, 2, 3
F_FD, F_TIE, F_PORTSERVER = 1, 2, 8
NO_DEADLINE = 0xffffffffffffffff


def msg(mtype, mid, body, version=VERSION):
    return struct.pack('<IHHII', MAGIC, version, mtype, 16 + len(body), mid) + body


def lease_req(flags, ttl, count, transport, port, pid):
    return struct.pack('<IIHBBHHII', flags, ttl, count, transport, 0, port, 0, pid, 0)


def lease_rep(lid, ttl, flags, transport, ports):
    return struct.pack('<IIQIIBBHI', 0, 0, lid, ttl, flags, transport, 0, len(ports), 0) + \
        struct.pack('<%dH' % len(ports), *ports)


def list_entry(lid, expires_ms, uid, pid, ttl, flags, transport, tied_pid, ports):
    e = struct.pack('<QQIIIIBBHI', lid, expires_ms, uid, pid, ttl, flags, transport, 0,
                    len(ports), tied_pid)
    e += struct.pack('<%dH' % len(ports), *ports)
    return e + b'\0' * (-len(e) % 8)


def list_rep(entries, more):
    return struct.pack('<IIII', 0, 0, len(entries), 1 if more else 0) + b''.join(entries)


def status_rep(version):
    v = version.encode()
    return struct.pack('<IIQIIIIIIIIIHHII', 0, 0, 123456789, 3, 5, 1, 2, 1000, 64, 300,
                       86400, 60, 30000, 31000, 2, 0) + v + b'\0' * (32 - len(v)) + \
        struct.pack('<QIIHHI', 1 << 20, 40, 1200, 32768, 60999, 0)


def error(result, detail):
    return struct.pack('<II', result, detail)


SEEDS = {
    'lease-req-any': msg(LEASE, 1, lease_req(0, 0, 1, TCP, 0, 0)),
    'lease-req-port': msg(LEASE, 42, lease_req(F_FD | F_TIE, 300, 1, TCP, 8080, 0x01020304)),
    'lease-req-many': msg(LEASE, 2, lease_req(F_FD, 60, 16, BOTH, 0, 0)),
    'lease-req-udp': msg(LEASE, 3, lease_req(F_TIE, 10, 4, UDP, 0, 4242)),
    'lease-rep-one': msg(LEASE | REPLY, 42, lease_rep(7, 300, F_FD | F_TIE, TCP, [8080])),
    'lease-rep-many': msg(LEASE | REPLY, 2,
                          lease_rep(8, 60, F_FD, BOTH, list(range(30000, 30016)))),
    'renew-req': msg(RENEW, 4, struct.pack('<QII', 7, 600, 0)),
    'renew-rep': msg(RENEW | REPLY, 4, struct.pack('<IIQII', 0, 0, 7, 600, 0)),
    'release-req-id': msg(RELEASE, 5, struct.pack('<QHBBI', 7, 0, 0, 0, 0)),
    'release-req-port': msg(RELEASE, 6, struct.pack('<QHBBI', 0, 8080, UDP, 0, 0)),
    'release-rep': msg(RELEASE | REPLY, 5, struct.pack('<IIQ', 0, 0, 7)),
    'list-req': msg(LIST, 7, struct.pack('<QII', 0, 0, 0)),
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
    'status-rep': msg(STATUS | REPLY, 9, status_rep('0.1.0')),
    'status-rep-longver': msg(STATUS | REPLY, 9, status_rep('x' * 32)),
    'error-quota': msg(LEASE | REPLY, 10, error(8, 16)),
    'error-version': msg(RENEW | REPLY, 11, error(2, 1)),
    'error-badtype': msg(0x0042 | REPLY, 12, error(3, 0x42)),
    'error-unknown-result': msg(LIST | REPLY, 13, error(99, 0)),
    'version-1': msg(LEASE, 14, lease_req(0, 0, 1, TCP, 0, 0), version=1),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'codec')
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(SEEDS.items()):
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
