#!/usr/bin/env python3
"""Proves ringside places keys bit-exactly like the real twemproxy: writes keys through
Debian's nutcracker into real redis-servers, reads back which backend holds each key, and
checks `ringctl place` names the same backend for every key, pool by pool.

Usage: test_twemproxy_compat.py PATH/TO/ringctl

Everything runs on loopback ports picked at run time; the test stops exactly the
processes it started and removes its temporary directory, also on failure or a signal.
Pools cover the twelve hashes (ketama), weights, named servers, hash tags, modula with
weights, 25 servers (twemproxy's float32 point count), port 11211 identities and a single
server. For fnv1a_64 pools it also writes keys built to hash exactly onto ring points, one
either side of them, past the last point (wrap-around) and onto points that only an
exact-arithmetic ring would have. An independent Python model of the reference notes
runs alongside; where it disagrees with nutcracker that is printed as a NOTE (the notes
are wrong), but only ringctl vs nutcracker decides pass or fail.

Environment: RS_TWEMPROXY_SEED (key generation seed), RS_KEEP_TMP=1 (keep the temp dir).
"""

import bisect
import ctypes
import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

redis = H.require_redis()   # re-executes under /usr/bin/python3 if needed

M32 = 0xFFFFFFFF
SEED = int(os.environ.get("RS_TWEMPROXY_SEED", "20240611"))

NBACKENDS = 25                 # the n=25 pool needs 25 distinct backends
HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.10", "127.0.0.100"]  # identities of 3 lengths
PORT_11211_HOSTS = ["127.0.0.2", "127.0.0.3"]
START_DEADLINE = 20.0          # seconds for all servers to answer PING
STOP_DEADLINE = 5.0            # seconds between SIGTERM and SIGKILL
MAX_SHOWN = 20
BATCH = 1000                   # commands per pipeline round trip

ALL_HASHES = ["one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1a_64",
              "fnv1_32", "fnv1a_32", "hsieh", "murmur", "jenkins"]


# --------------------------------------------------------------------------------------
# Independent model of the reference notes (shared/reference/twemproxy-ketama.md)

FNV_PRIME = 0x1B3                       # FNV_64_PRIME truncated to 32 bits
FNV_PRIME_INV = pow(FNV_PRIME, -1, 1 << 32)
FNV_BASIS = 0x84222325                  # FNV_64_INIT truncated to 32 bits


def sx(b):
    """A byte as amd64's signed char, widened to uint32."""
    return (b - 256) & M32 if b >= 0x80 else b


def fnv1a_64(data):
    h = FNV_BASIS
    for b in data:
        h ^= sx(b)
        h = (h * FNV_PRIME) & M32
    return h


def load_oracle():
    """The stdlib oracle of all twelve hashes, if it is in the tree (model only)."""
    try:
        return dict(H.load_oracle().HASHES)
    except Exception as e:  # the model is diagnostics; fnv1a_64 is ours anyway
        print(f"note: hash oracle not loaded ({e}); modelling fnv1a_64 pools only")
        return {}


def f32(x):
    """Round a double to the nearest float32 (every step of twemproxy's float maths)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def points_float32(w, total, n):
    # nc_ketama.c: pct = (float)w / (float)total;
    # floorf((float)(pct * 160 / 4 * (float)n + 0.0000000001)) * 4, in SSE float.
    pct = f32(f32(w) / f32(total))
    x = f32(pct * 160.0)
    x = f32(x / 4.0)
    x = f32(x * f32(n))
    x = f32(x + 0.0000000001)          # the double addition, cast back to float
    return int(x // 1) * 4


def points_exact(w, total, n):
    return 4 * int(Fraction(w, total) * 160 / 4 * n)


def tag_of(key, tag):
    """The bytes hashed for `key` under hash_tag `tag` (2 bytes), or the key itself."""
    if not tag:
        return key
    x = key.find(tag[0:1])
    if x < 0:
        return key
    y = key.find(tag[1:2], x + 1)
    if y < 0 or y == x + 1:
        return key
    return key[x + 1:y]


class Model:
    """A pool's placement per the reference notes: servers sorted by identity, then a
    ketama continuum (float32 or exact point counts) or modula slots."""

    def __init__(self, servers, dist, hashfn, tag, exact=False):
        # servers: list of (identity bytes, address, weight)
        self.servers = sorted(servers, key=lambda s: (len(s[0]), s[0]))
        self.dist = dist
        self.hashfn = hashfn
        self.tag = tag
        if dist == "modula":
            self.slots = [i for i, s in enumerate(self.servers) for _ in range(s[2])]
            return
        n = len(self.servers)
        total = sum(s[2] for s in self.servers)
        pts = []
        self.npoints = []
        for idx, (ident, _addr, w) in enumerate(self.servers):
            count = points_exact(w, total, n) if exact else points_float32(w, total, n)
            self.npoints.append(count)
            for i in range(count // 4):
                d = hashlib.md5(ident + b"-" + str(i).encode()).digest()
                for word in range(4):
                    v = int.from_bytes(d[4 * word:4 * word + 4], "little")
                    pts.append((v, idx, i, word))
        pts.sort()
        self.values = [p[0] for p in pts]
        self.owners = [p[1] for p in pts]

    def owner_of_hash(self, h):
        if self.dist == "modula":
            return self.servers[self.slots[h % len(self.slots)]][1]
        if len(self.servers) == 1:
            return self.servers[0][1]
        j = bisect.bisect_left(self.values, h)
        if j == len(self.values):
            j = 0
        return self.servers[self.owners[j]][1]

    def place(self, key):
        if self.dist != "modula" and len(self.servers) == 1:
            return self.servers[0][1]
        if not key:
            return self.owner_of_hash(0)    # nc_server.c: an empty key hashes to 0
        return self.owner_of_hash(self.hashfn(tag_of(key, self.tag)))


# --------------------------------------------------------------------------------------
# Keys whose fnv1a_64 hits a chosen 32-bit value (meet in the middle over 4 bytes)

class FnvTargeter:
    """Builds keys prefix+b1 b2 b3 b4[+tail] with fnv1a_64(key) == target. Bytes stay
    below 0x80 (no sign extension) and avoid '{' '}' so the keys can sit inside a tag.
    Forward: prefix, b1, b2 -> h2, indexed by h2 >> 7. Backward from the target through
    the tail and b4 gives u with h2 = u ^ b3, so a match shares u's top 25 bits."""

    ALPHA = [b for b in range(128) if b not in (0x7B, 0x7D)]
    TAILS = [b""] + [bytes([c]) for c in b"!#%&*+-.0123456789:;=?@ABCDEFGHIJ_abcdefghij"]

    def __init__(self, nprefixes=16):
        self.prefixes = [b"pt%02d:" % i for i in range(nprefixes)]
        self.table = {}
        for pi, prefix in enumerate(self.prefixes):
            h0 = fnv1a_64(prefix)
            for b1 in self.ALPHA:
                h1 = ((h0 ^ b1) * FNV_PRIME) & M32
                for b2 in self.ALPHA:
                    h2 = ((h1 ^ b2) * FNV_PRIME) & M32
                    self.table.setdefault(h2 >> 7, (pi, b1, b2, h2))

    def key_for(self, target):
        for tail in self.TAILS:
            t = target
            for c in reversed(tail):
                t = ((t * FNV_PRIME_INV) & M32) ^ c
            for b4 in self.ALPHA:
                h3 = ((t * FNV_PRIME_INV) & M32) ^ b4
                u = (h3 * FNV_PRIME_INV) & M32
                hit = self.table.get(u >> 7)
                if hit is None:
                    continue
                pi, b1, b2, h2 = hit
                b3 = h2 ^ u
                if b3 not in self.ALPHA:
                    continue
                key = self.prefixes[pi] + bytes([b1, b2, b3, b4]) + tail
                if fnv1a_64(key) != target:  # never trust the algebra blindly
                    raise AssertionError(f"constructed key {key.hex()} misses 0x{target:08x}")
                return key
        return None


def ring_targets(model, exact_model, rng):
    """Hash values worth testing on a ketama ring: points where ownership changes and one
    either side, both ends and the wrap-around, plus points only the exact ring has."""
    values, owners = model.values, model.owners
    n = len(values)
    boundaries = [j for j in range(n) if owners[j] != owners[(j + 1) % n]]
    picked = set(rng.sample(boundaries, min(150, len(boundaries))))
    picked.update({0, n - 1})
    targets = set()
    for j in picked:
        v = values[j]
        targets.update({v, max(v - 1, 0), min(v + 1, M32)})
    last = values[-1]
    targets.update({0, M32, min(last + 1, M32), (last + M32) // 2})
    ghosts = set()
    if exact_model is not None:
        real = set(values)
        extra = [v for v in exact_model.values if v not in real]
        ghosts = set(rng.sample(extra, min(100, len(extra))))
    return sorted(targets), sorted(ghosts)


# --------------------------------------------------------------------------------------
# Keys

UTF8_WORDS = ["été", "naïve", "Größe", "日本語", "ключ", "😀", "ñandú", "café", "Ωmega",
              "中文键", "مفتاح", "עברית", "ß", "€uro", "x\u0301"]

TAG_KEYS = [b"user:{42}:name", b"{}x", b"a{b", b"{x}{y}", b"}{", b"{", b"}", b"{}", b"{{}}",
            b"a}b{c}", b"{a}", b"x{\xc3\xa9}y", b"{\xff\x80}", b"{user}:1", b"{user}:2",
            b"pre{}{post}", b"{a{b}c}", b"}}{{a}}", b"{" + b"k" * 300 + b"}tail",
            b"<x>", b"a<b>c", b"<>y", b"<<z>>", b"q<\x80\x81>r"]


def common_keys(rng):
    keys = [b""]
    keys += [bytes([b]) for b in range(256)]                     # every single byte
    keys += [bytes(rng.randrange(256) for _ in range(2)) for _ in range(120)]
    keys += [b"key:%d" % i for i in range(300)]
    printable = bytes(range(0x20, 0x7F))
    keys += [bytes(rng.choice(printable) for _ in range(rng.randint(1, 40)))
             for _ in range(250)]
    for i in range(180):
        w = rng.choice(UTF8_WORDS)
        keys.append(f"{w}:{i}".encode() if i % 2 else f"{i}-{w}".encode())
    keys += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) for _ in range(900)]
    keys += [bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 8)))
             for _ in range(150)]                                # all high bytes
    for _ in range(30):                                          # long keys
        n = rng.randint(100, 3000)
        keys.append(bytes(rng.randrange(256) for _ in range(n)) if rng.random() < 0.5
                    else (b"long:" + bytes(rng.choice(printable) for _ in range(n))))
    keys += TAG_KEYS
    keys += [b"user:{%d}:name" % i for i in range(100)]
    keys += [b"obj{" + bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))) + b"}:"
             + b"%d" % i for i in range(100)]
    keys += [b"{%d}" % i for i in range(40)] + [b"<%d>:x" % i for i in range(40)]
    return keys


def dedupe(keys):
    seen = set()
    out = []
    for k in keys:
        if k not in seen:
            seen.add(k)
            out.append(k)
    return out


# --------------------------------------------------------------------------------------
# Processes

def start_proc(argv, log_path):
    """A process of the run (stopped by PID when it ends), its output in log_path."""
    with open(log_path, "ab") as log:
        return H.spawn(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                       preexec_fn=die_with_parent)


def die_with_parent():
    """In the child: get SIGTERM if the test itself is killed (even with SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG
    except Exception:
        pass


def port_is_free(host, port):
    return H.port_free_on(host, port, kinds=(socket.SOCK_STREAM,))


def free_port(host, rng, short=False):
    """A port nobody holds on host now: from the kernel, or a random 4-digit one (so the
    identities have different lengths)."""
    if short:
        for _ in range(200):
            port = rng.randrange(2000, 10000)
            if port != 11211 and port_is_free(host, port):
                return port
    return H.free_port(hosts=(host,), udp=False)


def answers_ping(host, port, db=None):
    try:
        kw = {"db": db} if db is not None else {}
        r = redis.Redis(host=host, port=port, socket_connect_timeout=0.5, socket_timeout=1.0,
                        **kw)
        try:
            return r.ping() is True
        finally:
            r.close()
    except (redis.RedisError, OSError):
        return False


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join("    " + line for line in lines[-n:])
    except OSError:
        return "    (no log)"


class Backend:
    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.addr = f"{host}:{port}"
        self.proc = None
        self.log = None


def start_redis(backends, tmp, rng, fixed_port=False):
    """Starts one redis-server per backend and waits until each answers PING; a backend
    whose port was taken meanwhile gets another (unless its port is fixed)."""
    def launch(b):
        b.log = os.path.join(tmp, f"redis-{b.host}-{b.port}.log")
        d = os.path.join(tmp, f"redis-{b.host}-{b.port}")
        os.makedirs(d, exist_ok=True)
        b.proc = start_proc(["redis-server", "--port", str(b.port), "--bind", b.host,
                              "--save", "", "--appendonly", "no", "--databases", "64",
                              "--daemonize", "no", "--dir", d], b.log)

    for b in backends:
        launch(b)
    deadline = time.monotonic() + START_DEADLINE
    pending = list(backends)
    retries = 0
    while pending:
        still = []
        for b in pending:
            if b.proc.poll() is not None:
                if fixed_port or retries >= 10:
                    raise RuntimeError(f"redis-server on {b.addr} exited "
                                       f"{b.proc.returncode}:\n{tail(b.log)}")
                retries += 1
                b.port = free_port(b.host, rng)
                b.addr = f"{b.host}:{b.port}"
                launch(b)
                still.append(b)
            elif not answers_ping(b.host, b.port):
                still.append(b)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time: "
                                   + ", ".join(b.addr for b in pending))
            time.sleep(0.02)


# --------------------------------------------------------------------------------------
# Pools

class Pool:
    def __init__(self, name, servers, hash_name=None, dist=None, tag=None, note=""):
        self.name = name
        self.servers = servers          # list of (Backend, weight, name or None)
        self.hash_name = hash_name      # None = twemproxy's default (fnv1a_64)
        self.dist = dist                # None = twemproxy's default (ketama)
        self.tag = tag
        self.note = note
        self.db = None
        self.port = None
        self.keys = []
        self.targeted = {}              # key -> "ring" / "ghost"

    @property
    def hash_eff(self):
        return self.hash_name or "fnv1a_64"

    @property
    def dist_eff(self):
        return self.dist or "ketama"

    def identity(self, backend, name):
        if name:
            return name.encode()
        if backend.port == 11211:
            return backend.host.encode()
        return backend.addr.encode()

    def model(self, hashfn, exact=False):
        servers = [(self.identity(b, nm), b.addr, w) for b, w, nm in self.servers]
        return Model(servers, self.dist_eff, hashfn, self.tag.encode() if self.tag else None,
                     exact=exact)

    def yaml(self):
        out = [f"{self.name}:", f"  listen: 127.0.0.1:{self.port}"]
        if self.hash_name:
            out.append(f"  hash: {self.hash_name}")
        if self.dist:
            out.append(f"  distribution: {self.dist}")
        if self.tag:
            out.append(f'  hash_tag: "{self.tag}"')
        out += ["  redis: true", f"  redis_db: {self.db}", "  auto_eject_hosts: false",
                "  timeout: 10000", "  servers:"]
        for b, w, nm in self.servers:
            out.append(f"   - {b.addr}:{w}" + (f" {nm}" if nm else ""))
        return "\n".join(out) + "\n"

    def ringctl_args(self):
        args = []
        for b, w, nm in self.servers:
            args += ["--node", f"{b.addr}" + (f",id={nm}" if nm else "") + f",weight={w}"]
        if self.hash_name:
            args += ["--hash", self.hash_name]
        if self.dist:
            args += ["--algorithm", self.dist]
        if self.tag:
            args += ["--hash-tag", self.tag]
        return args


def make_pools(be, be11211):
    """be: the 25 shared backends; be11211: backends on port 11211 (maybe none)."""
    pools = []
    pools.append(Pool("default", [(be[i], 1, None) for i in range(5)],
                      note="no hash/distribution lines: both defaults"))
    for k, h in enumerate(ALL_HASHES):
        if h == "fnv1a_64":
            continue
        sel = [(k * 2 + j) % NBACKENDS for j in range(4 + k % 3)]
        pools.append(Pool(f"k_{h}", [(be[i], 1 + (j % 2), None) for j, i in enumerate(sel)],
                          hash_name=h, dist="ketama"))
    pools.append(Pool("weights", [(be[5 + j], w, None) for j, w in enumerate([1, 3, 5, 6, 10])],
                      hash_name="fnv1a_64", dist="ketama", note="expect 28/92/160/188/320"))
    names = ["a", "bb", "cache-2", "cache-10", "z9", "server-with-a-longer-name"]
    pools.append(Pool("named", [(be[10 + j], w, names[j])
                                for j, w in enumerate([3, 1, 2, 10, 1, 5])]))
    pools.append(Pool("tag_braces", [(be[16 + j], 1, None) for j in range(4)], tag="{}"))
    pools.append(Pool("tag_angle", [(be[20 + j], 1 + j, None) for j in range(4)],
                      hash_name="murmur", tag="<>"))
    pools.append(Pool("modula_weights", [(be[j], w, None)
                                         for j, w in enumerate([1, 10, 2, 5, 3, 12, 1])],
                      hash_name="fnv1a_64", dist="modula"))
    mnames = ["b", "aa", "c10", "c9", "c1"]
    pools.append(Pool("modula_named", [(be[12 + j], w, mnames[j])
                                       for j, w in enumerate([10, 1, 2, 7, 1])],
                      hash_name="murmur", dist="modula"))
    pools.append(Pool("modula_md5", [(be[3 + j], 1, None) for j in range(6)],
                      hash_name="md5", dist="modula"))
    pools.append(Pool("n25", [(b, 1, None) for b in be], note="expect 156 points/server"))
    pools.append(Pool("single", [(be[7], 1, None)]))
    if be11211:
        pools.append(Pool("port11211", [(b, 1, None) for b in be11211]
                          + [(be[1], 1, None), (be[2], 2, None)],
                          note="identity = host only"))
    for i, p in enumerate(pools):
        p.db = i + 1
    return pools


# --------------------------------------------------------------------------------------
# The run

def start_nutcracker(pools, tmp, rng):
    conf = os.path.join(tmp, "nutcracker.yml")
    log = os.path.join(tmp, "nutcracker.log")
    for _attempt in range(3):
        for p in pools:
            p.port = free_port("127.0.0.1", rng)
        stats_port = free_port("127.0.0.1", rng)
        with open(conf, "w") as f:
            f.write("".join(p.yaml() for p in pools))
        t = subprocess.run(["nutcracker", "-t", "-c", conf], capture_output=True, text=True)
        if t.returncode != 0:
            raise RuntimeError(f"nutcracker -t rejected the config:\n{t.stdout}{t.stderr}")
        proc = start_proc(["nutcracker", "-c", conf, "-o", log, "-s", str(stats_port),
                            "-a", "127.0.0.1", "-p", os.path.join(tmp, "nutcracker.pid")],
                           os.path.join(tmp, "nutcracker.out"))
        deadline = time.monotonic() + START_DEADLINE
        pending = list(pools)
        while pending and proc.poll() is None:
            pending = [p for p in pending if not answers_ping("127.0.0.1", p.port)]
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError("nutcracker pools did not answer PING in time: "
                                       + ", ".join(p.name for p in pending)
                                       + "\n" + tail(log))
                time.sleep(0.02)
        if proc.poll() is None:
            return
        print(f"note: nutcracker exited {proc.returncode} (port taken?), retrying:\n{tail(log)}")
    raise RuntimeError("nutcracker would not start")


def write_keys(pool):
    r = redis.Redis(host="127.0.0.1", port=pool.port, socket_timeout=60)
    try:
        for i in range(0, len(pool.keys), BATCH):
            pipe = r.pipeline(transaction=False)
            for k in pool.keys[i:i + BATCH]:
                pipe.set(k, k)
            res = pipe.execute()
            if not all(x is True for x in res):
                bad = [k for k, x in zip(pool.keys[i:i + BATCH], res) if x is not True]
                raise RuntimeError(f"pool {pool.name}: SET failed for {len(bad)} keys, "
                                   f"e.g. {bad[0].hex()}")
    finally:
        r.close()


def read_back(pool):
    """key -> list of backend addresses holding it (in the pool's DB)."""
    where = {}
    for b, _w, _nm in pool.servers:
        r = redis.Redis(host=b.host, port=b.port, db=pool.db, socket_timeout=30)
        try:
            for k in r.scan_iter(count=2000):
                where.setdefault(k, []).append(b.addr)
        finally:
            r.close()
    return where


def run_ringctl(ringctl, pool):
    stdin = "".join(k.hex() + "\n" for k in pool.keys)
    cmd = [ringctl, "place", "--hex"] + pool.ringctl_args()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"ringctl exited {proc.returncode}: {proc.stderr.strip()}\n"
                           f"  command: {' '.join(cmd)}")
    lines = proc.stdout.splitlines()
    if len(lines) != len(pool.keys):
        raise RuntimeError(f"ringctl printed {len(lines)} lines for {len(pool.keys)} keys")
    return [line.split(" ", 1)[0] for line in lines]


def short_hex(k):
    h = k.hex() if k else "(empty)"
    return h if len(h) <= 64 else f"{h[:64]}...({len(k)} bytes)"


def check_pool(pool, ringctl, models):
    """Returns (ok, lines to print)."""
    out = []
    where = read_back(pool)
    keyset = set(pool.keys)
    stray = [k for k in where if k not in keyset]
    nut = {}
    problems = []
    for k in pool.keys:
        locs = where.get(k, [])
        if len(locs) != 1:
            problems.append(f"key {short_hex(k)} is on {len(locs)} backends: {locs}")
        else:
            nut[k] = locs[0]
    if stray:
        problems.append(f"{len(stray)} unexpected keys in db {pool.db}, e.g. "
                        f"{short_hex(stray[0])}")
    ours = run_ringctl(ringctl, pool)

    mism = [(k, nut[k], a) for k, a in zip(pool.keys, ours) if k in nut and nut[k] != a]
    model, exact_model = models
    for msg in problems[:MAX_SHOWN]:
        out.append("    " + msg)
    if mism:
        out.append(f"    {len(mism)} of {len(nut)} keys placed differently "
                   f"(first {min(len(mism), MAX_SHOWN)}):")
        out.append(f"    {'key (hex)':<66} {'pool':<15} {'nutcracker':<22} {'ringside':<22}"
                   + (" model" if model else ""))
        for k, n, a in mism[:MAX_SHOWN]:
            m = model.place(k) if model else ""
            out.append(f"    {short_hex(k):<66} {pool.name:<15} {n:<22} {a:<22} {m}")

    # The reference model, as a check on the notes and on the targeted keys.
    notes = []
    if model:
        disagree = [k for k in nut if model.place(k) != nut[k]]
        if disagree:
            notes.append(f"NOTE: the reference model disagrees with nutcracker on "
                         f"{len(disagree)} keys of pool {pool.name}, e.g. "
                         + ", ".join(f"{short_hex(k)} nut={nut[k]} model={model.place(k)}"
                                     for k in disagree[:5]))
    counts = {}
    for a in nut.values():
        counts[a] = counts.get(a, 0) + 1
    order = [b.addr for b, _w, _nm in pool.servers]
    spread = " ".join(str(counts.get(a, 0)) for a in order)
    ntarget = sum(1 for v in pool.targeted.values() if v == "ring")
    extra = ""
    if model and model.dist == "ketama" and len(model.servers) > 1:
        pts = sorted(set(model.npoints))
        extra += f" points/server={'/'.join(map(str, pts))}"
    if ntarget:
        extra += f" ring-targeted={ntarget}"
    if exact_model is not None:
        ghosts = [k for k, v in pool.targeted.items() if v == "ghost" and k in nut]
        telling = [k for k in ghosts if model.place(k) != exact_model.place(k)]
        f32_ok = sum(1 for k in telling if nut[k] == model.place(k))
        ex_ok = sum(1 for k in telling if nut[k] == exact_model.place(k))
        extra += (f" float32-vs-exact keys={len(telling)}: nutcracker sides with float32 "
                  f"{f32_ok}, exact {ex_ok}")
    ok = not problems and not mism
    status = "PASS" if ok else "FAIL"
    out.insert(0, f"{status} {pool.name:<15} db={pool.db:<2} keys={len(pool.keys):<5} "
                  f"hash={pool.hash_eff:<13} dist={pool.dist_eff:<6}"
                  + (f" tag={pool.tag}" if pool.tag else "")
                  + f" servers={len(pool.servers)} spread=[{spread}]{extra}")
    return ok, out + notes


def prepare_keys(pools, oracle, rng, targeter_box):
    base = common_keys(rng)
    models = {}
    for p in pools:
        hashfn = fnv1a_64 if p.hash_eff == "fnv1a_64" else oracle.get(p.hash_eff)
        model = p.model(hashfn) if hashfn else None
        exact = None
        keys = list(base)
        if (model and p.hash_eff == "fnv1a_64" and p.dist_eff == "ketama"
                and len(p.servers) > 1):
            exact = p.model(hashfn, exact=True)
            if exact.npoints == model.npoints:
                exact = None
            if targeter_box[0] is None:
                targeter_box[0] = FnvTargeter()
            tg = targeter_box[0]
            targets, ghosts = ring_targets(model, exact, rng)
            for kind, values in (("ring", targets), ("ghost", ghosts)):
                for t in values:
                    core = tg.key_for(t)
                    if core is None:
                        raise RuntimeError(f"no key found for hash 0x{t:08x}")
                    key = core if not p.tag else b"tg{" + core + b"}:" + b"%d" % t
                    assert fnv1a_64(tag_of(key, p.tag.encode() if p.tag else None)) == t
                    if key not in p.targeted:
                        p.targeted[key] = kind
                        keys.append(key)
        elif model and p.hash_eff == "fnv1a_64" and p.dist_eff == "modula":
            if targeter_box[0] is None:
                targeter_box[0] = FnvTargeter()
            w = len(model.slots)
            for t in [0, 1, w - 1, w, M32, M32 - 1, M32 - M32 % w, M32 - M32 % w - 1]:
                key = targeter_box[0].key_for(t)
                p.targeted[key] = "modula"
                keys.append(key)
        p.keys = dedupe(keys)
        models[p.name] = (model, exact)
    return models


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ringctl = os.path.abspath(argv[1])
    if not os.access(ringctl, os.X_OK):
        print(f"FAIL: {ringctl} is not an executable")
        return 1
    for prog in ("redis-server", "nutcracker"):
        if shutil.which(prog) is None and not os.access(f"/usr/sbin/{prog}", os.X_OK):
            print(f"FAIL: {prog} not installed")
            return 1
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin"

    t0 = time.monotonic()
    rng = random.Random(SEED)
    H.install_signal_handlers((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), status=None)
    scope = H.Scope(stop_deadline=STOP_DEADLINE)
    try:
        tmp = scope.new_dir("ringside-twemproxy", parent=None)

        backends = [Backend(HOSTS[i % len(HOSTS)], 0) for i in range(NBACKENDS)]
        for i, b in enumerate(backends):
            b.port = free_port(b.host, rng, short=(i % 3 == 0))
            b.addr = f"{b.host}:{b.port}"
        start_redis(backends, tmp, rng)
        be11211 = []
        for h in PORT_11211_HOSTS:
            if not port_is_free(h, 11211):
                print(f"note: {h}:11211 is taken; not used")
                continue
            try:
                b = Backend(h, 11211)
                start_redis([b], tmp, rng, fixed_port=True)
                be11211.append(b)
            except RuntimeError as e:
                print(f"note: {e}")
        skipped = []
        if not be11211:
            skipped.append("port11211")
            print("SKIP port11211: port 11211 is taken on " + " and ".join(PORT_11211_HOSTS)
                  + "; the host-only identity rule is NOT checked in this run")

        pools = make_pools(backends, be11211)
        oracle = load_oracle()
        models = prepare_keys(pools, oracle, rng, [None])
        t_keys = time.monotonic()

        start_nutcracker(pools, tmp, rng)
        for p in pools:
            write_keys(p)
        t_write = time.monotonic()

        passed = failed = 0
        for p in pools:
            try:
                ok, lines = check_pool(p, ringctl, models[p.name])
            except (RuntimeError, redis.RedisError, subprocess.TimeoutExpired) as e:
                ok, lines = False, [f"FAIL {p.name}: {e}"]
            print("\n".join(lines))
            passed += ok
            failed += not ok
        print(f"servers: {len(backends) + len(be11211)} redis-server, 1 nutcracker with "
              f"{len(pools)} pools; {sum(len(p.keys) for p in pools)} keys; seed {SEED}; "
              f"keys {t_keys - t0:.1f}s, start+write {t_write - t_keys:.1f}s, "
              f"total {time.monotonic() - t0:.1f}s")
        print(f"{passed} passed, {failed} failed"
              + (f", {len(skipped)} skipped" if skipped else ""))
        return 0 if failed == 0 else 1
    except (RuntimeError, redis.RedisError, OSError, subprocess.SubprocessError) as e:
        print(f"FAIL: {type(e).__name__}: {e}")
        print("0 passed, 1 failed")
        return 1
    finally:
        scope.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
