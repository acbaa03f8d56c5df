#!/usr/bin/env python3
"""Proves `ringctl place --algorithm hash_ring|vnode_sha256` places keys, and orders
replicas, exactly as the two Python rings do, by comparing it with the independent
implementations in tests/oracle/python_rings.py on thousands of keys per ring.

Usage: test_python_rings.py PATH/TO/ringctl

Cases: ASCII, UTF-8 and binary-looking keys, the empty key, non-ASCII node ids, weights,
disabled nodes, keys whose hash equals a ring point (the strings that generated the
points hash onto them exactly: bisect_right must send them to the next point), keys past
the last point (wrap-around), keys exactly on the last point, point collisions between
nodes (found by a birthday search over node names: the last writer in ringside's node
order owns the point), node order on the command line, and for vnode_sha256 the
removal rule where the Python code would crash. Prints PASS/FAIL per case and a final
"N passed, M failed"; exits 1 on any failure. Seeded: RS_PYRINGS_SEED=<n> to vary.
"""

import importlib.util
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE_PATH = os.path.join(HERE, os.pardir, "oracle", "python_rings.py")
SEED = int(os.environ.get("RS_PYRINGS_SEED", "20240611"))

_spec = importlib.util.spec_from_file_location("python_rings", ORACLE_PATH)
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)

RINGCTL = None
passed = 0
failed = 0


def report(ok, name, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("PASS: %s" % name)
    else:
        failed += 1
        print("FAIL: %s%s" % (name, ": " + detail if detail else ""))
    sys.stdout.flush()


# ---- ringctl ---------------------------------------------------------------------------

def node_spec(i, node_id, weight=1, disabled=False):
    spec = "127.%d.%d.%d:6379,id=%s" % (i // 65536 % 256, i // 256 % 256, i % 256, node_id)
    if weight != 1:
        spec += ",weight=%d" % weight
    if disabled:
        spec += ",disabled"
    return spec


def ringctl_place(algorithm, nodes, keys, replicas=1, weights=None, disabled=(), extra=()):
    """Replica lists (of node ids, str) for keys (bytes), from ringctl place --hex."""
    argv = [RINGCTL, "place", "--algorithm", algorithm, "--hex", "--replicas", str(replicas)]
    argv += list(extra)
    for i, node in enumerate(nodes):
        argv += ["--node", node_spec(i, node, (weights or {}).get(node, 1), node in disabled)]
    stdin = b"".join(k.hex().encode() + b"\n" for k in keys)
    r = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise RuntimeError("ringctl place failed (%d): %s" % (r.returncode,
                                                            r.stderr.decode(errors="replace")))
    lines = r.stdout.decode("utf-8").split("\n")[:-1]
    if len(lines) != len(keys):
        raise RuntimeError("ringctl place: %d answers for %d keys" % (len(lines), len(keys)))
    return [line.split(" ")[1::2] for line in lines]


def compare(name, got, want, keys, limit=3):
    bad = [i for i in range(len(keys)) if got[i] != want[i]]
    detail = ""
    if bad:
        detail = "%d of %d keys differ, e.g. " % (len(bad), len(keys)) + "; ".join(
            "%r: ringside %s, python %s" % (keys[i], got[i], want[i]) for i in bad[:limit])
    report(not bad, "%s (%d keys)" % (name, len(keys)), detail)


# ---- keys ------------------------------------------------------------------------------

def ascii_keys(rng, n):
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-{}./ "
    return [("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))).encode()
            for _ in range(n)]


UNICODE_RANGES = [(0x00a0, 0x00ff), (0x0100, 0x017f), (0x0391, 0x03c9), (0x0410, 0x044f),
                  (0x4e00, 0x4fff), (0x3040, 0x309f), (0x1f600, 0x1f64f), (0x0600, 0x06ff)]


def utf8_keys(rng, n):
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 16)):
            if rng.random() < 0.3:
                chars.append(chr(rng.randint(0x21, 0x7e)))
            else:
                lo, hi = rng.choice(UNICODE_RANGES)
                chars.append(chr(rng.randint(lo, hi)))
        out.append("".join(chars).encode("utf-8"))
    return out


def search_keys(rng, key_hash, accept, n, tries=2_000_000):
    """Random ASCII keys whose hash satisfies accept, n of them (or fewer on bad luck)."""
    out = []
    for t in range(tries):
        k = b"w%d-%x" % (t, rng.getrandbits(48))
        if accept(key_hash(k)):
            out.append(k)
            if len(out) == n:
                break
    return out


# ---- hash_ring -------------------------------------------------------------------------

def hr_check(name, nodes, keys, weights=None, replicas=None, disabled=(), shuffle_rng=None):
    """ringside vs HashRing131 given the enabled nodes in ringside's order."""
    enabled = [n for n in oracle.canonical_order(nodes) if n not in disabled]
    ring = oracle.HashRing131(enabled, weights)
    r = replicas or min(len(enabled), 4)
    cli_nodes = list(nodes)
    if shuffle_rng is not None:
        shuffle_rng.shuffle(cli_nodes)
    got = ringctl_place("hash_ring", cli_nodes, keys, r, weights, disabled)
    compare("hash_ring %s: primary" % name, [g[:1] for g in got],
            [[ring.get_node(k)] for k in keys], keys)
    compare("hash_ring %s: iterate_nodes order, %d replicas" % (name, r), got,
            [ring.replicas(k, r) for k in keys], keys)
    return ring


def hr_collision(rng):
    """Two node names with a point in common (40 digests x 3 words each)."""
    seen = {}
    for i in range(200000):
        name = "coll-%d:6379" % i
        for j in range(40):
            label = name.encode() + b"-" + str(j).encode()
            for word in range(3):
                v = oracle.md5_le32(label, word)
                other = seen.get(v)
                if other is not None and other != name:
                    return other, name, v
                seen.setdefault(v, name)
    return None


def test_hash_ring(rng):
    nodes = ["redis-1:6379", "redis-2:6379", "redis-3:6379"]
    hr_check("3 nodes, ASCII keys", nodes, ascii_keys(rng, 3000), replicas=3)
    hr_check("3 nodes, UTF-8 keys", nodes, utf8_keys(rng, 2000), replicas=3)

    nodes7 = ["cache-%d:6379" % i for i in range(1, 8)]
    weights = {nodes7[0]: 1, nodes7[1]: 2, nodes7[2]: 3, nodes7[3]: 1, nodes7[4]: 5,
               nodes7[5]: 1, nodes7[6]: 2}
    ring = hr_check("7 weighted nodes", nodes7, ascii_keys(rng, 2000) + utf8_keys(rng, 1000),
                    weights=weights, replicas=4)
    got_points = {n: 0 for n in nodes7}
    for v in ring.points:
        got_points[ring.owner[v]] += 0  # owners exist
    report(len(ring.points) == 3 * sum((40 * 7 * weights[n]) // 15 for n in nodes7),
           "hash_ring oracle: floor(40 N w / T) digests x 3 points")

    odd = ["caf\u00e9-1:6379", "\u7bc0\u9ede-2:6379", "\u00fcn\u00ef-3:6379", "plain-4:6379"]
    hr_check("non-ASCII node ids", odd, utf8_keys(rng, 1500) + ascii_keys(rng, 500),
             weights={odd[1]: 3})

    big = ["127.0.%d.%d:11211" % (i // 10, i % 10) for i in range(50)]
    hr_check("50 nodes, shuffled --node order", big, ascii_keys(rng, 4000), replicas=5,
             shuffle_rng=rng)

    with_disabled = ["a-1:6379", "a-2:6379", "a-3:6379", "a-4:6379"]
    hr_check("a disabled node is absent", with_disabled, ascii_keys(rng, 1500),
             disabled={"a-3:6379"})

    hr_check("single node", ["only:6379"], ascii_keys(rng, 200) + [b""], replicas=2)
    hr_check("empty key", nodes, [b"", b" ", b"\x00"], replicas=3)

    # Keys that hash exactly onto points: "<node>-<j>" hashes to its digest's word 0.
    nodes5 = ["hit-%d:6379" % i for i in range(5)]
    ring = oracle.HashRing131(oracle.canonical_order(nodes5))
    exact = [n.encode() + b"-" + str(j).encode() for n in nodes5 for j in range(40)]
    on_point = sum(1 for k in exact if ring.key_hash(k) in ring.owner)
    report(on_point == len(exact), "hash_ring: %d generating keys hash exactly onto points"
           % on_point)
    hr_check("keys exactly on points (bisect_right)", nodes5, exact, replicas=5)

    # Past the last point and before the first: wrap-around.
    lo, hi = ring.points[0], ring.points[-1]
    wrap = search_keys(rng, ring.key_hash, lambda h: h > hi, 60)
    low = search_keys(rng, ring.key_hash, lambda h: h < lo, 60)
    report(len(wrap) >= 20 and len(low) >= 20, "hash_ring: found %d wrap-around keys and %d "
           "below the first point" % (len(wrap), len(low)))
    hr_check("wrap-around keys", nodes5, wrap + low, replicas=5)

    # A key exactly on the largest point wraps to point 0: pick node names until the
    # largest point is a word-0 point (whose generating key is known).
    for attempt in range(200):
        names = ["last%d-%d:6379" % (attempt, i) for i in range(3)]
        ring = oracle.HashRing131(oracle.canonical_order(names))
        top = ring.points[-1]
        src = [s for s in ring.sources[top] if s[2] == 0]
        if src:
            node, j, _ = src[0]
            key = node.encode() + b"-" + str(j).encode()
            report(ring.position(key) == 0, "hash_ring: key on the largest point wraps to 0")
            hr_check("key exactly on the largest point", names, [key] * 3, replicas=3)
            break
    else:
        report(False, "hash_ring: no ring with a word-0 largest point found")

    # A point produced by two nodes belongs to the last writer in node order.
    found = hr_collision(rng)
    if found is None:
        report(False, "hash_ring: no point collision found")
        return
    a, b, v = found
    pair = oracle.canonical_order([a, b])
    ring = oracle.HashRing131(pair)
    report(ring.owner[v] == pair[1], "hash_ring: collision on %08x between %s and %s goes to "
           "the last writer %s" % (v, a, b, pair[1]))
    i = ring.points.index(v)
    prev = ring.points[i - 1] if i > 0 else None
    arc = search_keys(rng, ring.key_hash,
                      (lambda h: prev <= h < v) if prev is not None else (lambda h: h < v), 40)
    report(len(arc) >= 10, "hash_ring: %d keys land on the collided point" % len(arc))
    hr_check("collided point (last writer)", pair, arc + ascii_keys(rng, 500), replicas=2)
    hr_check("collided point, 3 nodes", pair + ["third:6379"], arc, replicas=3)


# ---- vnode_sha256 ----------------------------------------------------------------------

def vn_check(name, nodes, keys, vnodes=150, rf=2, replicas=2, weights=None, ring=None,
             shuffle_rng=None):
    if ring is None:
        ring = oracle.build_vnode_ring(nodes, vnodes, rf, weights)
    extra = []
    if vnodes != 150:
        extra += ["--vnodes", str(vnodes)]
    if rf != 2:
        extra += ["--replica-factor", str(rf)]
    cli_nodes = list(nodes)
    if shuffle_rng is not None:
        shuffle_rng.shuffle(cli_nodes)
    got = ringctl_place("vnode_sha256", cli_nodes, keys, max(replicas, 2), weights, (), extra)
    compare("vnode_sha256 %s: get_node" % name, [g[:1] for g in got],
            [[ring.get_node(k)] for k in keys], keys)
    # get_replica is the second distinct node, or the primary alone (one node).
    compare("vnode_sha256 %s: get_replica" % name, [(g[1:2] or g[:1]) for g in got],
            [[ring.get_replica(k)] for k in keys], keys)
    if replicas > 2:
        compare("vnode_sha256 %s: %d replicas clockwise" % (name, replicas), got,
                [ring.walk(k, replicas) for k in keys], keys)
    return ring


def vn_collision(vnodes, rf):
    seen = {}
    for i in range(100000):
        name = "vc-%d:6379" % i
        for v in range(vnodes):
            for r in range(rf):
                h = oracle.sha256_be32(oracle.vnode_label(name, v, r))
                other = seen.get(h)
                if other is not None and other != name:
                    return other, name, h
                seen.setdefault(h, name)
    return None


def test_vnode_sha256(rng):
    nodes = ["redis-1:6379", "redis-2:6379", "redis-3:6379"]
    vn_check("3 nodes, ASCII keys", nodes, ascii_keys(rng, 3000))
    vn_check("3 nodes, UTF-8 keys", nodes, utf8_keys(rng, 2000), replicas=3)
    six = ["n%d.cache.internal:6379" % i for i in range(6)]
    vn_check("vnodes 10, replica_factor 3", six, ascii_keys(rng, 1500) + utf8_keys(rng, 500),
             vnodes=10, rf=3, replicas=4)
    vn_check("vnodes 1, replica_factor 1", six, ascii_keys(rng, 1000), vnodes=1, rf=1,
             replicas=3)
    odd = ["caf\u00e9:6379", "\u7bc0\u9ede:6379", "\U0001f600:6379"]
    vn_check("non-ASCII node ids", odd, utf8_keys(rng, 1000))
    big = ["127.1.%d.%d:6379" % (i // 10, i % 10) for i in range(40)]
    vn_check("40 nodes, shuffled --node order", big, ascii_keys(rng, 3000), replicas=4,
             shuffle_rng=rng)
    vn_check("single node: replica = primary", ["solo:6379"], ascii_keys(rng, 200) + [b""])
    vn_check("empty key", nodes, [b"", b"\x00"], replicas=3)

    # Weights are ringside's extension: vnodes x weight virtual nodes.
    w = {nodes[1]: 3}
    vn_check("weight 3 = 3 x vnodes (ringside extension)", nodes, ascii_keys(rng, 1000),
             weights=w, replicas=3)

    # Incremental add equals a build from the whole set (the article's property).
    inc = oracle.VnodeSha256Ring()
    for n in oracle.canonical_order(nodes):
        inc.add_node(n)
    inc.add_node("redis-4:6379")
    bulk = oracle.build_vnode_ring(nodes + ["redis-4:6379"])
    report(inc.ring == bulk.ring and inc.owner == bulk.owner,
           "vnode_sha256 oracle: add_node(D) after [A,B,C] equals [A,B,C,D]")
    vn_check("after add_node", nodes + ["redis-4:6379"], ascii_keys(rng, 1000), ring=inc)

    # Exact hits: "<node>#vn<v>-r<r>" hashes onto its own point.
    small = ["e-1:6379", "e-2:6379", "e-3:6379"]
    ring = oracle.build_vnode_ring(small, 20, 2)
    exact = [oracle.vnode_label(n, v, r) for n in small for v in range(20) for r in range(2)]
    report(all(ring.key_hash(k) in ring.owner for k in exact),
           "vnode_sha256: %d generating keys hash exactly onto points" % len(exact))
    vn_check("keys exactly on points (bisect_right)", small, exact, vnodes=20, replicas=3)
    top = ring.ring[-1]
    top_key = [k for k in exact if ring.key_hash(k) == top][0]
    report(ring.index(top_key) == 0, "vnode_sha256: key on the largest point wraps to 0")
    wrap = search_keys(rng, ring.key_hash, lambda h: h > top, 40)
    low = search_keys(rng, ring.key_hash, lambda h: h < ring.ring[0], 40)
    report(len(wrap) >= 10 and len(low) >= 10, "vnode_sha256: found %d wrap-around keys, %d "
           "below the first point" % (len(wrap), len(low)))
    vn_check("wrap-around keys", small, wrap + low + [top_key], vnodes=20, replicas=3)

    # Collisions: the last writer in ringside's node order owns the point.
    found = vn_collision(150, 2)
    if found is None:
        report(False, "vnode_sha256: no point collision found")
        return
    a, b, h = found
    first, last = oracle.canonical_order([a, b])
    ring = oracle.build_vnode_ring([a, b])
    report(ring.owner[h] == last and ring.ring.count(h) == 2,
           "vnode_sha256: collision on %08x between %s and %s: both copies kept, owner %s"
           % (h, a, b, last))
    i = ring.ring.index(h)
    prev = ring.ring[i - 1] if i > 0 else None
    arc = search_keys(rng, ring.key_hash,
                      (lambda x: prev <= x < h) if prev is not None else (lambda x: x < h), 30)
    report(len(arc) >= 10, "vnode_sha256: %d keys land on the collided point" % len(arc))
    vn_check("collided point (last writer)", [a, b], arc + ascii_keys(rng, 300))

    # Removing the loser: Python keeps both copies under the winner; ringside rebuilt
    # from the winner alone answers the same everywhere.
    py = oracle.VnodeSha256Ring()
    py.add_node(first)
    py.add_node(last)
    py.remove_node(first)
    keys = arc + ascii_keys(rng, 500)
    vn_check("remove the collision's loser", [last], keys, ring=py)

    # Removing the winner: Python leaves an ownerless copy and crashes on its keys
    # (KeyError). ringside's rule: the ring is always built from the current node set,
    # so the point goes back to the node that also produced it.
    third = "third-node:6379"
    py = oracle.VnodeSha256Ring()
    py.add_node(first)
    py.add_node(last)
    py.add_node(third)
    py.remove_node(last)
    crashes = 0
    for k in arc:
        try:
            py.get_node(k)
        except KeyError:
            crashes += 1
    report(crashes > 0, "vnode_sha256: the Python ring fails (KeyError) on %d of %d "
           "keys of the orphaned point after removing the collision's winner"
           % (crashes, len(arc)))
    fresh = oracle.build_vnode_ring([first, third])
    vn_check("remove the collision's winner: the other writer owns the point", [first, third],
             arc + ascii_keys(rng, 300), ring=fresh)
    owner_now = [r[0] for r in ringctl_place("vnode_sha256", [first, third], arc)]
    arc_now = [k for k, o in zip(arc, owner_now) if fresh.index(k) == fresh.ring.index(h)]
    report(len(arc_now) > 0 and all(o == first for k, o in zip(arc, owner_now)
                                     if k in arc_now),
           "vnode_sha256: the orphaned point's keys go to %s, its other writer" % first)
    def python_answers(k):
        try:
            py.get_node(k)
            py.get_replica(k)
            return True
        except KeyError:
            return False

    safe = [k for k in ascii_keys(rng, 2000) if python_answers(k)]
    report(len(safe) > 1000, "vnode_sha256: Python still answers %d of 2000 other keys"
           % len(safe))
    vn_check("remove the winner: keys Python still answers, as in Python", [first, third],
             safe, ring=py)


def main(argv):
    global RINGCTL
    if len(argv) != 2:
        print("usage: test_python_rings.py PATH/TO/ringctl", file=sys.stderr)
        return 2
    RINGCTL = argv[1]
    rng = random.Random(SEED)
    print("seed %d" % SEED)
    for test in (test_hash_ring, test_vnode_sha256):
        try:
            test(rng)
        except Exception as e:  # a crash is a failure, not an abort of the others
            report(False, "%s raised %s: %s" % (test.__name__, type(e).__name__, e))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
