#!/usr/bin/env python3
"""Writes the seed frames of tests/fuzz/dlog (the decision-log frame format
of coordinator/decision_log.h): u32 payload length | u32 CRC32C(type,
payload) | u8 type | payload, little endian. Run from tests/fuzz."""
import hashlib
import os
import struct

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

def frame(rtype, payload):
    body = bytes([rtype]) + payload
    return struct.pack('<II', len(payload), crc32c(body)) + body

def idem_ext(key, fingerprint, status, response):
    return (struct.pack('<BB', 1, len(key)) + key + fingerprint +
            struct.pack('<HI', status, len(response)) + response)

def commit(txn, wall, branches, ext=b''):
    p = struct.pack('<QqBH', txn, wall, 0, len(branches))
    for idx, name in branches:
        p += struct.pack('<HB', idx, len(name)) + name
    return frame(1, p + ext)

def idem(txn, wall, ext):
    return frame(4, struct.pack('<Qq', txn, wall) + ext)

def done(txn):
    return frame(2, struct.pack('<Q', txn))

def heuristic(txn, wall, commit_, name, gid):
    return frame(3, struct.pack('<QqBB', txn, wall, 1 if commit_ else 2, len(name)) + name +
                 bytes([len(gid)]) + gid)

seeds = {
    'commit-1.bin': commit(1, 1700000000000, [(0, b'bank_a')]),
    'commit-3.bin': commit(0x0123456789abcdef, -1, [(0, b'bank_a'), (1, b'bank_b'), (65535, b'p' * 63)]),
    'done.bin': done(42),
    'heuristic-commit.bin': heuristic(7, 1700000000001, True, b'bank_b', b'twopc_c1_0000000000000007_1'),
    'heuristic-abort.bin': heuristic(8, 0, False, b'p3', b'g'),
    'commit-done-run.bin': commit(9, 5, [(2, b'p3')]) + done(9),
    'torn.bin': commit(10, 5, [(0, b'bank_a')])[:-3],
    'bad-crc.bin': done(11)[:4] + b'\0\0\0\0' + done(11)[8:],
    # Idempotency-Key records (the extension after a COMMIT's branches, and
    # the IDEM record carry-forward writes for a finished transaction).
    'commit-keyed.bin': commit(12, 1700000000002, [(0, b'bank_a'), (1, b'bank_b')],
                               idem_ext(b'order-4711', hashlib.sha256(b'{"branches":[]}').digest(), 200,
                                        b'{"txn_id":"000000000000000c","status":"committed"}')),
    'commit-keyed-empty.bin': commit(13, 5, [(0, b'p')], idem_ext(b'k', bytes(32), 599, b'')),
    'idem.bin': idem(14, 1700000000003, idem_ext(b'~ !"key with spaces"', bytes(range(32)), 200, b'{}')),
    'keyed-done-idem-run.bin': (commit(15, 7, [(2, b'p3')], idem_ext(b'K' * 255, b'\xff' * 32, 201, b'x' * 300)) +
                                done(15) + idem(15, 7, idem_ext(b'K' * 255, b'\xff' * 32, 201, b'x' * 300))),
}
os.makedirs('dlog', exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join('dlog', name), 'wb') as f:
        f.write(data)
