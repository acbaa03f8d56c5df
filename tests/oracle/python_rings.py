#!/usr/bin/env python3
"""Test oracle: the two Python rings ringside impersonates, in plain Python 3 (stdlib only).

Written from the reference notes (reference/python-rings.md), independently of ringside's
C code and of the original libraries' sources:

- HashRing131: the placement and replica order of PyPI `hash_ring` 1.3.1 (weights
  included): floor(40 * N * w / T) MD5 digests of "<node>-<j>" per node, three
  little-endian words per digest, last writer wins a point, the first point strictly
  greater than MD5(key)[0:4] (little-endian) owns the key, replicas walk clockwise.
- VnodeSha256Ring: the consistent-hashing article's ConsistentHashRing: points
  H("<node>#vn<v>-r<r>") with H = SHA-256[0:4] big-endian, duplicates kept, last writer
  owns a point, bisect_right lookup, replica = the next point owned by another node.
  add_node/remove_node follow the notes, including the state in which a lookup fails
  (KeyError) after the node that won a point collision is removed.

Keys and node ids are str (encoded as UTF-8) or bytes.

Usage as a script (for poking at it by hand):
  python_rings.py hash_ring NODE[=WEIGHT]... -- KEY...
  python_rings.py vnode_sha256 [--vnodes V] [--replica-factor R] NODE... -- KEY...
prints "KEY OWNER REPLICA..." per key.
"""

import bisect
import hashlib
import sys

M32 = 0xFFFFFFFF


def as_bytes(s):
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def canonical_order(ids):
    """ringside's node order: shorter id (in UTF-8 bytes) first, then bytewise. The
    Python rings resolve point collisions by list order, so exact agreement on a collided
    point needs the Python code to have been given its nodes in this order."""
    return sorted(ids, key=lambda s: (len(as_bytes(s)), as_bytes(s)))


# ---- hash_ring 1.3.1 -------------------------------------------------------------------

def md5_le32(data, word=0):
    d = hashlib.md5(as_bytes(data)).digest()
    return int.from_bytes(d[4 * word:4 * word + 4], "little")


class HashRing131:
    DIGESTS_PER_UNIT = 40
    WORDS_PER_DIGEST = 3

    def __init__(self, nodes, weights=None):
        self.nodes = list(nodes)
        self.weights = dict(weights or {})
        total = sum(self.weights.get(n, 1) for n in self.nodes)
        self.owner = {}      # point value -> node, last writer wins
        self.points = []     # sorted, duplicates kept
        self.sources = {}    # point value -> list of (node, j, word) that produced it
        for node in self.nodes:
            w = self.weights.get(node, 1)
            digests = (self.DIGESTS_PER_UNIT * len(self.nodes) * w) // total
            for j in range(digests):
                label = as_bytes(node) + b"-" + str(j).encode()
                for word in range(self.WORDS_PER_DIGEST):
                    value = md5_le32(label, word)
                    self.owner[value] = node
                    self.points.append(value)
                    self.sources.setdefault(value, []).append((node, j, word))
        self.points.sort()

    @staticmethod
    def key_hash(key):
        return md5_le32(key)

    def position(self, key):
        """Index of the first point strictly greater than the key's hash, wrapping."""
        i = bisect.bisect_right(self.points, self.key_hash(key))
        return 0 if i == len(self.points) else i

    def get_node(self, key):
        if not self.points:
            return None
        return self.owner[self.points[self.position(key)]]

    def iterate_nodes(self, key):
        """Distinct owners clockwise from the key's point (the library's iterate_nodes)."""
        if not self.points:
            return
        start = self.position(key)
        seen = set()
        for k in range(len(self.points)):
            node = self.owner[self.points[(start + k) % len(self.points)]]
            if node not in seen:
                seen.add(node)
                yield node

    def replicas(self, key, n):
        out = []
        for node in self.iterate_nodes(key):
            out.append(node)
            if len(out) == n:
                break
        return out


# ---- the article's ConsistentHashRing ------------------------------------------------

def sha256_be32(data):
    return int.from_bytes(hashlib.sha256(as_bytes(data)).digest()[:4], "big")


def vnode_label(node, v, r):
    return as_bytes(node) + b"#vn" + str(v).encode() + b"-r" + str(r).encode()


class VnodeSha256Ring:
    def __init__(self, vnodes=150, replica_factor=2):
        self.vnodes = vnodes
        self.replica_factor = replica_factor
        self.ring = []    # sorted point values, duplicates kept
        self.owner = {}   # point value -> node (last writer)

    @staticmethod
    def key_hash(key):
        return sha256_be32(key)

    def node_points(self, node, weight=1):
        """The node's points in generation order. weight > 1 is ringside's extension
        (vnodes x weight virtual nodes); the article has no weights."""
        for v in range(self.vnodes * weight):
            for r in range(self.replica_factor):
                yield sha256_be32(vnode_label(node, v, r))

    def add_node(self, node, weight=1):
        for h in self.node_points(node, weight):
            bisect.insort(self.ring, h)
            self.owner[h] = node

    def remove_node(self, node, weight=1):
        """One copy of each point the node currently owns leaves the ring; a point another
        node overwrote stays, under that node."""
        for h in self.node_points(node, weight):
            if self.owner.get(h) == node:
                self.ring.remove(h)
                del self.owner[h]

    def index(self, key):
        return bisect.bisect_right(self.ring, self.key_hash(key)) % len(self.ring)

    def get_node(self, key):
        """Raises KeyError where the Python code crashes (an ownerless copy)."""
        return self.owner[self.ring[self.index(key)]]

    def get_replica(self, key):
        """The first point clockwise after the primary's owned by another node; with one
        node, the primary itself."""
        i = self.index(key)
        primary = self.owner[self.ring[i]]
        for k in range(1, len(self.ring)):
            node = self.owner[self.ring[(i + k) % len(self.ring)]]
            if node != primary:
                return node
        return primary

    def walk(self, key, n):
        """Distinct owners clockwise from the key's point: primary, get_replica, then on
        (ringside's natural extension to more than two replicas)."""
        i = self.index(key)
        out = []
        for k in range(len(self.ring)):
            node = self.owner[self.ring[(i + k) % len(self.ring)]]
            if node not in out:
                out.append(node)
                if len(out) == n:
                    break
        return out


def build_vnode_ring(nodes, vnodes=150, replica_factor=2, weights=None):
    """The ring ringside builds from a node set: nodes added in canonical order."""
    ring = VnodeSha256Ring(vnodes, replica_factor)
    for node in canonical_order(nodes):
        ring.add_node(node, (weights or {}).get(node, 1))
    return ring


def main(argv):
    if len(argv) < 2 or "--" not in argv:
        print(__doc__.strip().split("Usage as a script")[1], file=sys.stderr)
        return 2
    kind, rest = argv[1], argv[2:]
    sep = rest.index("--")
    opts, keys = rest[:sep], rest[sep + 1:]
    if kind == "hash_ring":
        weights, nodes = {}, []
        for spec in opts:
            name, _, w = spec.partition("=")
            nodes.append(name)
            if w:
                weights[name] = int(w)
        ring = HashRing131(nodes, weights)
        for key in keys:
            print(key, " ".join(ring.replicas(key, len(nodes))))
        return 0
    if kind == "vnode_sha256":
        vnodes, rf, nodes, i = 150, 2, [], 0
        while i < len(opts):
            if opts[i] == "--vnodes":
                vnodes, i = int(opts[i + 1]), i + 2
            elif opts[i] == "--replica-factor":
                rf, i = int(opts[i + 1]), i + 2
            else:
                nodes.append(opts[i])
                i += 1
        ring = build_vnode_ring(nodes, vnodes, rf)
        for key in keys:
            print(key, ring.get_node(key), ring.get_replica(key))
        return 0
    print("unknown ring %r" % kind, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
