#!/usr/bin/env python3
"""Test oracle: twemproxy 0.5.0's twelve key hashes, with its amd64 semantics, in plain Python.

Written from the "Key hashes" section of the twemproxy/ketama reference notes and
twemproxy's src/hashkit sources, independently of common/hash.c (bitwise CRCs instead of
tables, zero-padded words for lookup3, true 64-bit arithmetic for fnv1_64). Stdlib only.

Usage:
  twemproxy_hashes.py [HEXKEY ...]   hash the given keys (the built-in list if none)
  twemproxy_hashes.py -              hash keys read from stdin, one hex key per line
  twemproxy_hashes.py --self-test    check the functions against published vectors

Output: one line "NAME HEXKEY 0xVALUE" per function per key, functions in twemproxy's
order. The empty key is written "-" (accepted as "-" or an empty line on input).
"""

import binascii
import hashlib
import sys
import zlib

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def sx(b, mask=M32):
    """A byte as amd64's signed `char`, widened to the mask's width (two's complement)."""
    return (b - 256) & mask if b >= 0x80 else b


def one_at_a_time(data):
    h = 0
    for b in data:
        h = (h + sx(b)) & M32
        h = (h + (h << 10)) & M32
        h ^= h >> 6
    h = (h + (h << 3)) & M32
    h ^= h >> 11
    h = (h + (h << 15)) & M32
    return h


def md5(data):
    return int.from_bytes(hashlib.md5(data).digest()[:4], "little")


def _crc16_xmodem_entry(i):
    c = i << 8
    for _ in range(8):
        c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


def crc16(data):
    # XMODEM update on a 32-bit register that is never masked to 16 bits.
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _crc16_xmodem_entry(((crc >> 8) ^ b) & 0xFF)) & M32
    return crc


def _crc32_ieee(data):
    crc = M32
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ M32


def crc32(data):
    return (_crc32_ieee(data) >> 16) & 0x7FFF


def crc32a(data):
    return _crc32_ieee(data)


def fnv1_64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = (h * 0x100000001B3) & M64
        h ^= sx(b, M64)
    return h & M32


def fnv1a_64(data):
    h = 0x84222325
    for b in data:
        h ^= sx(b)
        h = (h * 0x1B3) & M32
    return h


def fnv1_32(data):
    h = 2166136261
    for b in data:
        h = (h * 16777619) & M32
        h ^= sx(b)
    return h


def fnv1a_32(data):
    h = 2166136261
    for b in data:
        h ^= sx(b)
        h = (h * 16777619) & M32
    return h


def hsieh(data):
    if not data:
        return 0
    h = 0
    n = len(data)
    i = 0
    for _ in range(n >> 2):
        h = (h + (data[i] | data[i + 1] << 8)) & M32
        tmp = (((data[i + 2] | data[i + 3] << 8) << 11) & M32) ^ h
        h = ((h << 16) & M32) ^ tmp
        h = (h + (h >> 11)) & M32
        i += 4
    rem = n & 3
    if rem == 3:
        h = (h + (data[i] | data[i + 1] << 8)) & M32
        h ^= (h << 16) & M32
        h ^= (sx(data[i + 2]) << 18) & M32
        h = (h + (h >> 11)) & M32
    elif rem == 2:
        h = (h + (data[i] | data[i + 1] << 8)) & M32
        h ^= (h << 11) & M32
        h = (h + (h >> 17)) & M32
    elif rem == 1:
        h = (h + data[i]) & M32
        h ^= (h << 10) & M32
        h = (h + (h >> 1)) & M32
    h ^= (h << 3) & M32
    h = (h + (h >> 5)) & M32
    h ^= (h << 4) & M32
    h = (h + (h >> 17)) & M32
    h ^= (h << 25) & M32
    h = (h + (h >> 6)) & M32
    return h


def murmur(data):
    m = 0x5BD1E995
    n = len(data)
    h = ((0xDEADBEEF * n) & M32) ^ n
    i = 0
    while n - i >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & M32
        k ^= k >> 24
        k = (k * m) & M32
        h = (h * m) & M32
        h ^= k
        i += 4
    tail = data[i:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return h


def _rot(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


def _lookup3_mix(a, b, c):
    a = (a - c) & M32; a ^= _rot(c, 4); c = (c + b) & M32
    b = (b - a) & M32; b ^= _rot(a, 6); a = (a + c) & M32
    c = (c - b) & M32; c ^= _rot(b, 8); b = (b + a) & M32
    a = (a - c) & M32; a ^= _rot(c, 16); c = (c + b) & M32
    b = (b - a) & M32; b ^= _rot(a, 19); a = (a + c) & M32
    c = (c - b) & M32; c ^= _rot(b, 4); b = (b + a) & M32
    return a, b, c


def _lookup3_final(a, b, c):
    c ^= b; c = (c - _rot(b, 14)) & M32
    a ^= c; a = (a - _rot(c, 11)) & M32
    b ^= a; b = (b - _rot(a, 25)) & M32
    c ^= b; c = (c - _rot(b, 16)) & M32
    a ^= c; a = (a - _rot(c, 4)) & M32
    b ^= a; b = (b - _rot(a, 14)) & M32
    c ^= b; c = (c - _rot(b, 24)) & M32
    return a, b, c


def lookup3_hashlittle(data, initval):
    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & M32
    if n == 0:
        return c
    # Every block but the last (which holds 1..12 bytes) is mixed; the last is
    # zero-padded to 12 bytes and goes through final().
    nblocks = (n - 1) // 12
    padded = data + bytes(12 * (nblocks + 1) - n)
    for blk in range(nblocks + 1):
        w = [int.from_bytes(padded[blk * 12 + 4 * j:blk * 12 + 4 * j + 4], "little")
             for j in range(3)]
        a = (a + w[0]) & M32
        b = (b + w[1]) & M32
        c = (c + w[2]) & M32
        if blk < nblocks:
            a, b, c = _lookup3_mix(a, b, c)
    a, b, c = _lookup3_final(a, b, c)
    return c


def jenkins(data):
    return lookup3_hashlittle(data, 13)


# twemproxy's order (src/hashkit/nc_hashkit.h), which rs_hash_kind follows.
HASHES = [
    ("one_at_a_time", one_at_a_time),
    ("md5", md5),
    ("crc16", crc16),
    ("crc32", crc32),
    ("crc32a", crc32a),
    ("fnv1_64", fnv1_64),
    ("fnv1a_64", fnv1a_64),
    ("fnv1_32", fnv1_32),
    ("fnv1a_32", fnv1a_32),
    ("hsieh", hsieh),
    ("murmur", murmur),
    ("jenkins", jenkins),
]

BUILTIN_KEYS = [
    b"",
    b"a",
    b"foobar",
    b"123456789",
    b"hello",
    b"user:1000",
    b"\xc3\xa9t\xc3\xa9",       # "été" in UTF-8
    b"\xff",
    b"\x80",
    b"\x7f",
    b"\xe9",                    # tails of 1..5 bytes ending in a high byte
    b"a\xe9",
    b"ab\xe9",
    b"abc\xe9",
    b"abcd\xe9",
    b"\x80\x81\x82",            # 3-byte tail, all high (hsieh's signed third byte)
    b"xyz",
    b"abcdefghijk",             # lookup3: 11, 12, 13 bytes
    b"abcdefghijkl",
    b"abcdefghijklm",
    bytes((i * 37 + 11) & 0xFF for i in range(100)),
]


def key_to_hex(key):
    return key.hex() if key else "-"


def hex_to_key(text):
    text = text.strip()
    return b"" if text in ("", "-") else bytes.fromhex(text)


def dump(keys, out):
    for key in keys:
        hexkey = key_to_hex(key)
        for name, fn in HASHES:
            out.write(f"{name} {hexkey} 0x{fn(key):08x}\n")


def self_test():
    """Published vectors; returns the number of failures."""
    checks = [
        # RFC 1321 test suite (first four digest bytes, little-endian).
        (md5, b"", 0xD98C1DD4),
        (md5, b"a", 0xB975C10C),
        (md5, b"abc", 0x98500190),
        (md5, b"message digest", 0x7D696BF9),
        (md5, b"abcdefghijklmnopqrstuvwxyz", 0xD7D3FCC3),
        # CRC catalogue check values.
        (crc32a, b"123456789", 0xCBF43926),
        (lambda d: crc16(d) & 0xFFFF, b"123456789", 0x31C3),
        # FNV reference vectors (Fowler/Noll/Vo test suite); 64-bit ones truncated.
        (fnv1_32, b"", 0x811C9DC5),
        (fnv1_32, b"a", 0x050C5D7E),
        (fnv1_32, b"foobar", 0x31F0B262),
        (fnv1a_32, b"a", 0xE40C292C),
        (fnv1a_32, b"foobar", 0xBF9CF968),
        (fnv1_64, b"", 0x84222325),
        (fnv1_64, b"a", 0x8601B7BE),
        (fnv1_64, b"foobar", 0xA4DDA9C2),
        (fnv1a_64, b"a", 0x8601EC8C),
        (fnv1a_64, b"foobar", 0xF73967E8),
        # lookup3.c's driver5() self-test (hashlittle with initval 0, 1, 0xdeadbeef).
        (lambda d: lookup3_hashlittle(d, 0), b"", 0xDEADBEEF),
        (lambda d: lookup3_hashlittle(d, 0xDEADBEEF), b"", 0xBD5B7DDE),
        (lambda d: lookup3_hashlittle(d, 0), b"Four score and seven years ago", 0x17770551),
        (lambda d: lookup3_hashlittle(d, 1), b"Four score and seven years ago", 0xCD628161),
    ]
    failures = 0
    for fn, data, want in checks:
        got = fn(data)
        if got != want:
            failures += 1
            print(f"FAIL {getattr(fn, '__name__', '?')}({data!r}) = 0x{got:08x}, "
                  f"want 0x{want:08x}", file=sys.stderr)
    # Cross-check the bitwise CRCs against the stdlib's on arbitrary bytes.
    for n in range(0, 300, 7):
        data = bytes((i * 131 + n) & 0xFF for i in range(n))
        if crc32a(data) != zlib.crc32(data):
            failures += 1
            print(f"FAIL crc32a vs zlib, len {n}", file=sys.stderr)
        if crc16(data) & 0xFFFF != binascii.crc_hqx(data, 0):
            failures += 1
            print(f"FAIL crc16 vs crc_hqx, len {n}", file=sys.stderr)
    return failures


def main(argv):
    if argv[1:] == ["--self-test"]:
        failures = self_test()
        print("self-test: " + ("ok" if failures == 0 else f"{failures} failure(s)"))
        return 1 if failures else 0
    if argv[1:] == ["-"]:
        keys = [hex_to_key(line) for line in sys.stdin.read().splitlines()]
    elif len(argv) > 1:
        keys = [hex_to_key(a) for a in argv[1:]]
    else:
        keys = BUILTIN_KEYS
    dump(keys, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
