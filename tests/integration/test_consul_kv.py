#!/usr/bin/env python3
"""ringside against a real Consul (1.8.7 dev agents) and real redis-servers: KV edits
reaching lookups, per-key rejection of bad values, the mass-removal guard, health from
Consul checks (skip, keep, panic), the consul-service source, Consul crashing and coming
back, the sidecar restarting while Consul is down, and a cold start with Consul down.

Usage: test_consul_kv.py PATH/TO/ringside PATH/TO/ringctl

Expected answers never come from the daemon under test: placements come from `ringctl
place` (the ring library, offline), ring order from placements over node subsets (equal
weights: with ketama a node's points do not depend on the other nodes, so the k-th
distinct node clockwise is the owner once the k-1 before it are gone), fingerprints are
recomputed here from the KV content (harness.fingerprint), and Consul's view of
health is read from its HTTP API.

Scenarios 1-5 share one Consul dev agent (each with its own KV prefix, service name and
ring); 6-8 kill and restart Consul, so each has an agent of its own. Every process
(Consul, redis-server, ringside) is stopped by PID; temp dirs live under /tmp. Nothing
sleeps to synchronise: each step polls for its observable effect (a RING field, a log
line, the KV index the daemon's watch has reached, Consul's health API) with a deadline.

Environment: RS_DEPS_DIR or CONSUL_BIN locate consul; RS_KEEP_TMP=1 keeps the temp dirs;
RS_CONSUL_KV_ONLY=name[,name] runs only those scenarios.
"""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import Failure, check, check_eq  # noqa: E402

redis = H.require_redis()   # re-executes under /usr/bin/python3 if needed

RINGSIDE = None
RINGCTL = None
RUN = None          # the Scope of the whole run (the shared agent)
SHARED = None       # the Consul agent of scenarios 1-5
SEED = 20261126
RECOVERY_DEADLINE = 30.0    # seconds for a change to show after Consul comes back


def shared_consul():
    global SHARED
    if SHARED is None or SHARED.proc.poll() is not None:
        SHARED = H.Consul(RUN)
        SHARED.start()
    return SHARED


def node(letter, port, **kw):
    n = {"id": "cache-" + letter, "address": "127.0.0.1:%d" % port}
    n.update(kw)
    return n


def seed_kv(consul, prefix, nodes, config=None):
    """Replace everything under prefix by nodes (and config) in one transaction."""
    ops = [("delete-tree", prefix + "/")]
    if config is not None:
        ops.append(("set", prefix + "/config", config))
    ops += [("set", "%s/nodes/%s" % (prefix, n["id"]), H.kv_node_value(n)) for n in nodes]
    return consul.txn(ops)


def ringctl_kv(consul, prefix, *args):
    return H.ringctl_ok(RINGCTL, list(args) + ["--prefix", prefix], consul.url)


def place(nodes, keys, params=None):
    p = params or {}
    return H.place(RINGCTL, nodes, keys, algorithm=p.get("algorithm"),
                   hash_name=p.get("hash"), hash_tag=p.get("hash_tag"))


fp = H.config_fingerprint


def start_ringside(sc, consul, ring_name, **kw):
    d = sc.new_dir()
    return H.Ringside(sc, RINGSIDE, H.ringside_config(d, ring_name, consul.url, **kw), d).start()


def key_pattern(key):
    return r'\bkey="?%s"?(\s|$)' % key.replace(".", r"\.")


# --------------------------------------------------------------------------------------
# 1. KV edits reach lookups

def scenario_kv_edits(sc):
    c = shared_consul()
    pre = "rs/edits"
    nodes = {n["id"]: n for n in (node("a", 7001), node("b", 7002), node("c", 7003))}
    seed_kv(c, pre, nodes.values())
    rs = start_ringside(sc, c, "edits", prefix=pre)
    keys = H.rand_keys(H.new_rng(SEED + 1), 1000)
    params = {}

    def verify(what, r):
        want = list(nodes.values())
        check_eq(r["fingerprint"], fp(want, params), "%s: RING fingerprint" % what)
        check_eq(r["source"], "consul-kv", "%s: RING source" % what)
        got = rs.lookups(keys)
        check_eq(got, place(want, keys, params), "%s: lookups = ringctl place" % what)
        return got

    r = rs.wait_ring(lambda r: r["fingerprint"] == fp(list(nodes.values())),
                     "the seeded ring (a, b, c)")
    check_eq((r["nodes"], r["enabled"], r["held"], r["held_reason"]), (3, 3, "", ""),
             "RING after the seed")
    verify("seed", r)
    epoch = r["epoch"]

    def step(what, action):
        nonlocal epoch
        action()
        r = rs.wait_ring(lambda r: r["epoch"] != epoch, "the epoch to move after %s" % what)
        check_eq(r["epoch"], epoch + 1, "epoch after %s (one bump per edit)" % what)
        epoch = r["epoch"]
        return r, verify(what, r)

    def put(n):
        return lambda: c.kv_put("%s/nodes/%s" % (pre, n["id"]), H.kv_node_value(n))

    # add (ringctl, then raw), remove (ringctl, then raw), within the guard
    nodes["cache-d"] = node("d", 7004)
    step("ringctl node add", lambda: ringctl_kv(c, pre, "node", "add", "cache-d",
                                                 "127.0.0.1:7004"))
    nodes["cache-e"] = node("e", 7005)
    step("a raw PUT adding cache-e", put(nodes["cache-e"]))
    del nodes["cache-e"]
    step("ringctl node remove", lambda: ringctl_kv(c, pre, "node", "remove", "cache-e"))
    del nodes["cache-d"]
    step("a raw DELETE of cache-d", lambda: c.kv_delete(pre + "/nodes/cache-d"))
    # weights
    nodes["cache-b"]["weight"] = 3
    step("ringctl node set --weight 3", lambda: ringctl_kv(c, pre, "node", "set", "cache-b",
                                                           "--weight", "3"))
    nodes["cache-c"]["weight"] = 2
    step("a raw PUT of weight 2", put(nodes["cache-c"]))
    # disable / enable
    nodes["cache-a"]["enabled"] = False
    step("ringctl node disable", lambda: ringctl_kv(c, pre, "node", "disable", "cache-a"))
    check_eq(rs.nodes()["cache-a"]["enabled"], 0, "NODES: cache-a disabled")
    check(b"127.0.0.1:7001" not in rs.lookups(keys), "a disabled node is never returned")
    nodes["cache-a"]["enabled"] = True
    step("a raw PUT enabling cache-a", put(nodes["cache-a"]))
    nodes["cache-a"]["enabled"] = False
    step("a raw PUT disabling cache-a", put(nodes["cache-a"]))
    nodes["cache-a"]["enabled"] = True
    _, before = step("ringctl node enable", lambda: ringctl_kv(c, pre, "node", "enable",
                                                               "cache-a"))
    # zone: a new ring (fingerprint), the same placements
    nodes["cache-a"]["zone"] = "z1"
    _, got = step("ringctl node set --zone", lambda: ringctl_kv(c, pre, "node", "set",
                                                                "cache-a", "--zone", "z1"))
    check_eq(got, before, "a zone change moves no key")
    check_eq(rs.nodes()["cache-a"]["zone"], "z1", "NODES zone")
    # address: only the address returned changes
    nodes["cache-b"].update(address="127.0.0.1:7102", zone="z2")
    _, got = step("a raw PUT of a new address and zone", put(nodes["cache-b"]))
    check_eq(got, [b"127.0.0.1:7102" if x == b"127.0.0.1:7002" else x for x in before],
             "an address change moves no key")
    route = rs.route(keys[got.index(b"127.0.0.1:7102")])
    check_eq(route["candidates"][0][:3], ["cache-b", "127.0.0.1:7102", "z2"],
             "ROUTE: id, address, zone of the owner")
    # the config key: algorithm, hash, replicas
    params = {"algorithm": "modula", "hash": "md5", "replicas": 3}
    r, _ = step("a raw PUT of config (modula, md5, 3)", lambda: c.kv_put(pre + "/config", params))
    check_eq((r["algorithm"], r["hash"], r["replicas"]), ("modula", "md5", 3), "RING params")
    check_eq(len(rs.route(keys[0])["candidates"]), 3, "ROUTE lists 3 candidates (replicas 3)")
    params = {"algorithm": "ketama", "hash": "murmur", "replicas": 1}
    r, _ = step("ringctl ring set (ketama, murmur, 1)",
                lambda: ringctl_kv(c, pre, "ring", "set", "--algorithm", "ketama", "--hash",
                                   "murmur", "--replicas", "1"))
    check_eq((r["algorithm"], r["hash"], r["replicas"]), ("ketama", "murmur", 1), "RING params")
    check_eq(len(rs.route(keys[0])["candidates"]), 1, "ROUTE lists 1 candidate (replicas 1)")
    params = {}
    r, _ = step("a raw DELETE of config (back to the file's parameters)",
                lambda: c.kv_delete(pre + "/config"))
    check_eq((r["algorithm"], r["hash"], r["replicas"]), ("ketama", "fnv1a_64", 2),
             "RING params from the file")
    check_eq(int(r["consul_index"]), c.kv_index(pre + "/"), "RING consul_index = Consul's")
    ns = rs.nodes()
    check_eq({k: (v["address"], v["weight"], v["zone"], v["enabled"]) for k, v in ns.items()},
             {"cache-a": ("127.0.0.1:7001", 1, "z1", 1), "cache-b": ("127.0.0.1:7102", 3, "z2", 1),
              "cache-c": ("127.0.0.1:7003", 2, "", 1)}, "NODES at the end")
    check_eq(rs.events("update_rejected") + rs.events("update_held"), [],
             "no rejected or held update")


# --------------------------------------------------------------------------------------
# 2. Bad values are rejected per key; the key's last good value keeps serving

NODE_CASES = [
    ("broken JSON", b'{"address": "127.0.0.1:7002", "weight": 2', r"invalid JSON"),
    ("address not a string", {"address": 7002}, r"address must be a string"),
    ("weight a string", {"address": "127.0.0.1:7002", "weight": "2"}, r"weight must be"),
    ("weight 2.0", {"address": "127.0.0.1:7002", "weight": 2.0}, r"weight must be"),
    ("enabled a string", {"address": "127.0.0.1:7002", "enabled": "yes"},
     r"enabled must be true or false"),
    ("zone a number", {"address": "127.0.0.1:7002", "zone": 3}, r"zone must be a string"),
    ("unknown field", {"address": "127.0.0.1:7002", "colour": "red"}, r"unknown field"),
    ("weight 0", {"address": "127.0.0.1:7002", "weight": 0}, r"weight .*got 0\b"),
    ("weight -1", {"address": "127.0.0.1:7002", "weight": -1}, r"weight .*got -1\b"),
    ("weight 10001", {"address": "127.0.0.1:7002", "weight": 10001}, r"weight .*got 10001\b"),
    ("weight 10^12", {"address": "127.0.0.1:7002", "weight": 10 ** 12},
     r"weight .*got 1000000000000\b"),
    ("weight 2^63", b'{"address": "127.0.0.1:7002", "weight": 9223372036854775808}',
     r"too big integer|weight must be"),
    ("no address", {"weight": 2}, r"address is required"),
    ("address without port", {"address": "127.0.0.1"}, r"address .*host:port"),
    ("port 0", {"address": "127.0.0.1:0"}, r"port must be"),
    ("port 70000", {"address": "127.0.0.1:70000"}, r"port must be"),
    ("address with a space", {"address": "cache b:6379"}, r"address must not contain spaces"),
    ("empty address", {"address": ""}, r"address must not be empty"),
    ("empty value", b"", r"empty value"),
    ("JSON null", b"null", r"must be a JSON object"),
    ("JSON array", b"[]", r"must be a JSON object"),
    ("JSON string", b'"127.0.0.1:7002"', r"must be a JSON object"),
]

CONFIG_CASES = [
    ("broken JSON", b'{"replicas": 3', r"invalid JSON"),
    ("unknown algorithm", {"replicas": 3, "algorithm": "nope"}, r"unknown algorithm"),
    ("unknown hash", {"replicas": 3, "hash": "sha1"}, r"unknown hash"),
    ("replicas 0", {"replicas": 0}, r"replicas must be .*got 0\b"),
    ("replicas 17", {"replicas": 17}, r"replicas must be .*got 17\b"),
    ("replicas a string", {"replicas": "3"}, r"replicas must be"),
    ("force a string", {"replicas": 3, "force": "yes"}, r"force must be true or false"),
    ("max_removal_fraction 0", {"replicas": 3, "max_removal_fraction": 0},
     r"max_removal_fraction"),
    ("unknown field", {"replicas": 3, "colour": 1}, r"unknown field"),
    ("JSON null", b"null", r"must be a JSON object"),
    ("empty value", b"", r"empty value"),
]


def scenario_rejections(sc):
    c = shared_consul()
    pre = "rs/reject"
    config = {"replicas": 3}
    nodes = [node("a", 7001), node("b", 7002), node("c", 7003)]
    seed_kv(c, pre, nodes, config)
    rs = start_ringside(sc, c, "reject", prefix=pre)
    keys = H.rand_keys(H.new_rng(SEED + 2), 400)
    rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes, config), "the seeded ring")
    # A good edit first, so the last good value of nodes/cache-b is not the first one.
    nodes[1]["weight"] = 2
    good_b = H.kv_node_value(nodes[1])
    c.kv_put(pre + "/nodes/cache-b", good_b)
    r0 = rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes, config), "cache-b weight 2")
    want = place(nodes, keys)
    check_eq(rs.lookups(keys), want, "lookups with cache-b weight 2")

    def unchanged(what):
        r = rs.ring()
        check_eq((r["epoch"], r["fingerprint"], r["replicas"]),
                 (r0["epoch"], r0["fingerprint"], 3), "%s: RING epoch, fingerprint, replicas"
                 % what)
        check_eq(rs.lookups(keys), want, "%s: lookups unchanged" % what)

    def bad(key, value, reason_re, good, what):
        mark = rs.mark()
        c.kv_put(pre + "/" + key, value)
        line = rs.wait_event("update_rejected", key_pattern(key), since=mark)[0]
        reason = re.search(r'reason="((?:[^"\\]|\\.)*)"', line)
        check(reason and re.search(reason_re, reason.group(1)),
              "%s: reason matching /%s/ in %r" % (what, reason_re, line))
        unchanged(what)
        if good is None:
            c.kv_delete(pre + "/" + key)
        else:
            c.kv_put(pre + "/" + key, good)
        rs.wait_caught_up(c.kv_index(pre + "/"))
        unchanged(what + ", then the good value back")
        check_eq(len(rs.events("update_rejected", key_pattern(key), since=mark)), 1,
                 "%s: logged once" % what)

    for what, value, reason_re in NODE_CASES:
        bad("nodes/cache-b", value, reason_re, good_b, "nodes/cache-b: " + what)
    check_eq(rs.nodes()["cache-b"]["weight"], 2, "NODES: cache-b keeps weight 2")
    # A new key that is bad from the start is absent (no last good value).
    bad("nodes/cache-x", {"address": "127.0.0.1:7009", "weight": 0}, r"weight", None,
        "a new bad node")
    bad("nodes/bad id", {"address": "127.0.0.1:7009"}, r"id must not contain", None,
        "a node id with a space")
    check("cache-x" not in rs.nodes(), "the bad new node is not in NODES")
    for what, value, reason_re in CONFIG_CASES:
        bad("config", value, reason_re, config, "config: " + what)
    # Several bad keys in one update, next to a good edit: the good one applies.
    mark = rs.mark()
    nodes.append(node("d", 7004))
    c.txn([("set", pre + "/nodes/cache-a", {"address": "127.0.0.1:7001", "weight": -5}),
           ("set", pre + "/nodes/cache-d", H.kv_node_value(nodes[3])),
           ("set", pre + "/config", {"replicas": "three"})])
    r = rs.wait_ring(lambda r: r["epoch"] != r0["epoch"], "the good part of a mixed update")
    check_eq((r["epoch"], r["fingerprint"], r["replicas"]),
             (r0["epoch"] + 1, fp(nodes, config), 3), "RING after a mixed update")
    check_eq(rs.lookups(keys), place(nodes, keys), "lookups after a mixed update")
    rs.wait_event("update_rejected", key_pattern("nodes/cache-a"), since=mark)
    rs.wait_event("update_rejected", key_pattern("config"), since=mark)
    check(rs.alive(), "ringside still running")


# --------------------------------------------------------------------------------------
# 3. The mass-removal guard

def scenario_guard(sc):
    c = shared_consul()
    pre = "rs/guard"
    all4 = [node("a", 7001), node("b", 7002), node("c", 7003), node("d", 7004)]
    seed_kv(c, pre, all4)
    rs = start_ringside(sc, c, "guard", prefix=pre)
    keys = H.rand_keys(H.new_rng(SEED + 3), 600)
    r = rs.wait_ring(lambda r: r["fingerprint"] == fp(all4), "the seeded ring")
    epoch = r["epoch"]
    want = place(all4, keys)
    check_eq(rs.lookups(keys), want, "lookups, 4 nodes")

    def still(what, held):
        r = rs.ring()
        check_eq((r["epoch"], r["fingerprint"], r["held"]), (epoch, fp(all4), held),
                 "%s: RING epoch, fingerprint, held" % what)
        check(r["held_reason"] != "", "%s: RING held_reason is set" % what)
        check_eq(rs.lookups(keys), want, "%s: lookups unchanged" % what)
        return r

    def applied(what, nodes, by=None, since=0):
        nonlocal epoch
        r = rs.wait_ring(lambda r: r["epoch"] != epoch, "%s to be applied" % what)
        check_eq((r["epoch"], r["fingerprint"], r["held"], r["held_reason"]),
                 (epoch + 1, fp(nodes), "", ""), "%s: RING" % what)
        epoch = r["epoch"]
        check_eq(rs.lookups(keys), place(nodes, keys), "%s: lookups" % what)
        if by:
            rs.wait_event("update_confirmed", r"\bby=%s\b" % by, since=since)

    # The whole prefix deleted: held, with no fingerprint to confirm.
    mark = rs.mark()
    c.kv_delete(pre + "/", recurse=True)
    rs.wait_event("update_held", since=mark)
    r = still("prefix deleted", "")
    # Put back (one transaction): nothing to apply, the hold is dropped.
    rs.wait_caught_up(seed_kv(c, pre, all4))
    rs.wait_ring(lambda r: r["held_reason"] == "", "the hold to be dropped")
    check_eq((rs.ring()["epoch"], rs.events("ring_change", since=mark)), (epoch, []),
             "the same nodes back: no new epoch")

    # 3 of 4 removed at once: held, with the new ring's fingerprint.
    mark = rs.mark()
    only_a = all4[:1]
    c.txn([("delete", "%s/nodes/%s" % (pre, n["id"])) for n in all4[1:]])
    line = rs.wait_event("update_held", since=mark)[0]
    check("fingerprint=%s" % fp(only_a) in line, "update_held names the held ring: %r" % line)
    r = still("3 of 4 removed", fp(only_a))
    check("3 of 4" in r["held_reason"], "held_reason says what: %r" % r["held_reason"])
    # ringctl ring confirm applies it.
    out = ringctl_kv(c, pre, "ring", "confirm", "--yes")
    check(fp(only_a) in out, "ringctl ring confirm printed the fingerprint: %r" % out)
    applied("the confirmed ring", only_a, by="confirm", since=mark)
    c.kv_delete(pre + "/confirm")

    # Back to 4 (adding is never held), then force in the KV config.
    seed_kv(c, pre, all4)
    applied("re-adding 3 nodes", all4)
    want = place(all4, keys)
    rs.wait_caught_up(c.kv_put(pre + "/config", {"force": True}))
    check_eq(rs.ring()["epoch"], epoch, "force alone changes no ring")
    mark = rs.mark()
    c.txn([("delete", "%s/nodes/%s" % (pre, n["id"])) for n in all4[1:]])
    applied("3 of 4 removed with force", only_a, by="force", since=mark)
    c.kv_delete(pre + "/config")

    # Disabling counts as removing: 3 of 4 disabled is held too.
    seed_kv(c, pre, all4)
    applied("re-adding 3 nodes", all4)
    want = place(all4, keys)
    dis = [all4[0]] + [dict(n, enabled=False) for n in all4[1:]]
    mark = rs.mark()
    c.txn([("set", "%s/nodes/%s" % (pre, n["id"]), H.kv_node_value(n)) for n in dis[1:]])
    rs.wait_event("update_held", since=mark)
    still("3 of 4 disabled", fp(dis))
    ringctl_kv(c, pre, "ring", "confirm", "--yes")
    applied("the confirmed ring with 3 disabled", dis, by="confirm", since=mark)
    c.kv_delete(pre + "/confirm")

    # 1 of 2 at 0.5 is not more than half: applied at once.
    two = all4[:2]
    seed_kv(c, pre, two)
    applied("a ring of 2 nodes", two)
    mark = rs.mark()
    c.kv_delete(pre + "/nodes/cache-b")
    applied("1 of 2 removed", only_a)
    check_eq(rs.events("update_held", since=mark), [], "1 of 2 at 0.5 is not held")


# --------------------------------------------------------------------------------------
# 4. Health from Consul checks on real redis-servers

def register_redis(c, service, node_id, srv):
    c.register({"ID": node_id, "Name": service, "Address": "127.0.0.1", "Port": srv.port,
                "Check": {"CheckID": "tcp-" + node_id, "Name": "tcp " + srv.address,
                          "TCP": srv.address, "Interval": "1s", "Timeout": "1s"}})


def scenario_health(sc):
    c = shared_consul()
    pre, svc = "rs/health", "redis-cache"
    d = sc.new_dir()
    srv = {x: H.RedisServer(sc, d).start() for x in "abc"}
    nodes = [node(x, srv[x].port) for x in "abc"]
    ids = [n["id"] for n in nodes]
    addr = {n["id"]: n["address"].encode() for n in nodes}
    for n, x in zip(nodes, "abc"):
        register_redis(c, svc, n["id"], srv[x])
        sc.on_close(lambda i=n["id"]: c.deregister(i))
    c.wait_health(svc, {i: "passing" for i in ids}, deadline=15)
    seed_kv(c, pre, nodes)
    skip = start_ringside(sc, c, "hskip", prefix=pre, health_service=svc, policy="skip")
    keep = start_ringside(sc, c, "hkeep", prefix=pre, health_service=svc, policy="keep")
    keys = H.rand_keys(H.new_rng(SEED + 4), 600)
    orders = H.ring_orders(RINGCTL, nodes, keys)
    owners = [o[0] for o in orders]

    def healthy(dm, n, panic=0):
        return dm.wait_ring(lambda r: (r["healthy"], r["panic"]) == (n, panic),
                            "RING healthy=%d panic=%d" % (n, panic))

    for dm in (skip, keep):
        r = healthy(dm, 3)
        check_eq(r["fingerprint"], fp(nodes), "RING fingerprint")
        check_eq(dm.lookups(keys), owners, "all healthy: the owners")

    def first_not(down):
        return [next(x for x in o if x not in {addr[i] for i in down}) for o in orders]

    # One redis-server dies: its keys go to their next node in ring order (skip).
    e0 = skip.ring()["epoch"]
    srv["b"].kill()
    c.wait_health(svc, {"cache-b": "critical"})
    r = healthy(skip, 2)
    check(r["epoch"] > e0, "a health change bumps the epoch")
    got = skip.lookups(keys)
    check_eq(got, first_not(["cache-b"]), "skip, b down: next node in ring order")
    check_eq(got, place(nodes[::2], keys), "skip, b down: the ring without b")
    check(any(o[0] == addr["cache-b"] for o in orders), "some keys are owned by cache-b")
    for i in [i for i, o in enumerate(orders) if o[0] == addr["cache-b"]][:20]:
        route = skip.route(keys[i])
        check_eq(route["answer"], orders[i][1].decode(), "ROUTE answer for a key of cache-b")
        check_eq(route["candidates"][0][0:1] + route["candidates"][0][3:],
                 ["cache-b", "critical", "skipped"], "ROUTE: cache-b critical, skipped")
        check_eq(route["candidates"][1][3:], ["passing", "used"], "ROUTE: next one used")
    check_eq(skip.nodes()["cache-b"]["health"], "critical", "NODES health")
    skip.wait_event("health_change")
    # keep: the owner anyway, flagged.
    healthy(keep, 2)
    check_eq(keep.lookups(keys), owners, "keep, b down: the owners")
    i = owners.index(addr["cache-b"])
    check_eq(keep.route(keys[i])["candidates"][0][3:], ["critical", "used"],
             "keep: ROUTE owner critical, used")

    # It comes back on the same port: back to the owners.
    srv["b"] = H.RedisServer(sc, d, port=srv["b"].port).start()
    c.wait_health(svc, {"cache-b": "passing"})
    for dm in (skip, keep):
        healthy(dm, 3)
        check_eq(dm.lookups(keys), owners, "b back: the owners")

    # Two of three die: 1/3 healthy < 0.5: panic, every enabled node used.
    mark = skip.mark()
    srv["b"].kill()
    srv["c"].kill()
    c.wait_health(svc, {"cache-b": "critical", "cache-c": "critical"})
    for dm in (skip, keep):
        r = healthy(dm, 1, panic=1)
        check_eq(r["enabled"], 3, "RING enabled in panic")
        check_eq(dm.lookups(keys), owners, "panic: every enabled node used (the owners)")
    i = owners.index(addr["cache-c"])
    check_eq(skip.route(keys[i])["candidates"][0][3:], ["critical", "used"],
             "panic: ROUTE owner critical but used")
    skip.wait_event("panic_mode", r"active=true", since=mark)


# --------------------------------------------------------------------------------------
# 5. consul-service: every instance of a service is a node

def scenario_service(sc):
    c = shared_consul()
    svc = "rs-svc"
    insts = [
        # (id, port, Address, Meta) -> expected node
        ("svc-a", 7301, "127.0.0.1", {"ringside_weight": "2", "ringside_zone": "z1"}),
        ("svc-b", 7302, "127.0.0.1", {"ringside_weight": "3", "ringside_zone": "z2"}),
        ("svc-c", 7303, "", {}),                               # the node's address
        ("svc-d", 7304, "127.0.0.1", {"ringside_zone": "z1"}),
        ("svc-e", 7305, "127.0.0.1", {"ringside_weight": "0"}),  # bad: kept with weight 1
    ]

    def register(i, port, address, meta):
        c.register({"ID": i, "Name": svc, "Address": address, "Port": port, "Meta": meta,
                    "Check": {"TTL": "600s", "Status": "passing"}})

    for inst in insts:
        register(*inst)
        sc.on_close(lambda i=inst[0]: c.deregister(i))
    c.wait_health(svc, {i[0]: "passing" for i in insts})
    nodes = {i: {"id": i, "address": "127.0.0.1:%d" % p,
                 "weight": int(m.get("ringside_weight", "1")) or 1,
                 "zone": m.get("ringside_zone", "")} for i, p, _, m in insts}
    rs = start_ringside(sc, c, "svc", source="consul-service", service=svc)
    keys = H.rand_keys(H.new_rng(SEED + 5), 600)
    r = rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes.values()), "the service's ring")
    check_eq((r["source"], r["nodes"], r["healthy"]), ("consul-service", 5, 5), "RING")
    got = {k: (v["address"], v["weight"], v["zone"]) for k, v in rs.nodes().items()}
    check_eq(got, {k: (n["address"], n["weight"], n["zone"]) for k, n in nodes.items()},
             "NODES: addresses, weights and zones from the service meta")
    check_eq(rs.lookups(keys), place(nodes.values(), keys), "lookups = ringctl place")
    rs.wait_event("update_rejected", key_pattern("service/svc-e") + r".*ringside_weight")

    # Deregistered: removed (1 of 5, within the guard).
    epoch = r["epoch"]
    c.deregister("svc-d")
    del nodes["svc-d"]
    r = rs.wait_ring(lambda r: r["epoch"] != epoch, "svc-d to leave")
    check_eq((r["epoch"], r["fingerprint"]), (epoch + 1, fp(nodes.values())),
             "RING after deregistering svc-d")
    check_eq(rs.lookups(keys), place(nodes.values(), keys), "lookups without svc-d")

    # Equal weights (meta updated in place), then one instance critical: skipped, its
    # keys on their next node in ring order.
    for i, p, a, m in insts:
        if i in nodes:
            register(i, p, a, {k: v for k, v in m.items() if k != "ringside_weight"})
            nodes[i]["weight"] = 1
    eq = list(nodes.values())
    rs.wait_ring(lambda r: r["fingerprint"] == fp(eq), "equal weights from the meta")
    orders = H.ring_orders(RINGCTL, eq, keys)
    check_eq(rs.lookups(keys), [o[0] for o in orders], "equal weights: the owners")
    c.check_fail("service:svc-c")
    c.wait_health(svc, {"svc-c": "critical"})
    r = rs.wait_ring(lambda r: r["healthy"] == 3, "svc-c to be critical")
    check_eq((r["nodes"], r["fingerprint"]), (4, fp(eq)), "health does not rebuild the ring")
    down = b"127.0.0.1:7303"
    check_eq(rs.lookups(keys), [next(x for x in o if x != down) for o in orders],
             "svc-c critical: its keys on their next node")
    i = next(i for i, o in enumerate(orders) if o[0] == down)
    check_eq(rs.route(keys[i])["candidates"][0][3:], ["critical", "skipped"], "ROUTE svc-c")
    c.check_pass("service:svc-c")
    rs.wait_ring(lambda r: r["healthy"] == 4, "svc-c to pass again")
    check_eq(rs.lookups(keys), [o[0] for o in orders], "svc-c back: the owners")


# --------------------------------------------------------------------------------------
# 6. Consul killed and restarted under a running sidecar

class Hammer(threading.Thread):
    """LOOKUPs and MLOOKUPs in a loop on a connection of its own, each answer compared
    with the expected one."""

    def __init__(self, sock, keys, want):
        super().__init__(daemon=True)
        self.sock, self.keys, self.want = sock, keys, want
        self.stop_flag = threading.Event()
        self.answered = 0
        self.wrong = []
        self.errors = []

    def run(self):
        r = redis.Redis(unix_socket_path=self.sock, socket_timeout=5.0)
        i = 0
        while not self.stop_flag.is_set():
            try:
                k = i % len(self.keys)
                got = r.execute_command("LOOKUP", self.keys[k])
                if got != self.want[k]:
                    self.wrong.append((self.keys[k], got))
                got = r.execute_command("MLOOKUP", *self.keys[:50])
                if got != self.want[:50]:
                    self.wrong.append(("MLOOKUP", got[:3]))
                self.answered += 2
            except (redis.RedisError, OSError) as e:
                self.errors.append(repr(e))
                if len(self.errors) > 100:
                    return
            i += 1
        r.close()

    def finish(self):
        self.stop_flag.set()
        self.join(10)
        check(not self.is_alive(), "the lookup loop did not stop")
        check_eq(self.errors[:3], [], "lookup errors while Consul was down")
        check_eq(self.wrong[:3], [], "changed answers while Consul was down")
        check(self.answered > 100, "only %d lookups answered" % self.answered)
        return self.answered


def scenario_consul_restart(sc):
    c = H.Consul(sc)
    c.start()
    pre = "rs/restart"
    nodes = [node("a", 7001), node("b", 7002), node("c", 7003)]
    config = {"replicas": 2}
    seed_kv(c, pre, nodes, config)
    rs = start_ringside(sc, c, "restart", prefix=pre, wait="5s")
    keys = H.rand_keys(H.new_rng(SEED + 6), 500)
    r0 = rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes), "the seeded ring")
    want = place(nodes, keys)
    check_eq(rs.lookups(keys), want, "lookups before the crash")

    # Some history under the prefix (a key the sidecars ignore), so the agent that comes
    # back empty has a lower index than the one the watch last saw: the watch must notice
    # the index going backwards (SPEC 4.2).
    for i in range(30):
        c.kv_put(pre + "/notes", "edit %d" % i)
    old_index = c.kv_index(pre + "/")
    rs.wait_caught_up(old_index)
    check_eq(rs.ring()["epoch"], r0["epoch"], "keys outside nodes/ and config change nothing")
    mark = rs.mark()
    hammer = Hammer(rs.sock, keys, want)
    t_kill = time.monotonic()
    c.kill()
    hammer.start()
    # Down for a while: until the watch has failed a few times and 2 s have passed.
    wait_for_down = lambda: (len(rs.events("consul_error", since=mark)) >= 3  # noqa: E731
                             and time.monotonic() - t_kill >= 2.0)
    H.wait_for(wait_for_down, "ringside to log consul_error while Consul is down")
    r = rs.ring()
    check_eq((r["epoch"], r["fingerprint"]), (r0["epoch"], r0["fingerprint"]),
             "RING while Consul is down")
    c.start(wait=False)
    t_back = c.wait_ready()
    n = hammer.finish()
    check_eq(rs.lookups(keys), want, "lookups while Consul was down and restarting")

    # Dev mode lost the KV: the same again, plus one change, in one transaction.
    nodes.append(node("d", 7004))
    t_put = time.monotonic()
    new_index = seed_kv(c, pre, nodes, config)
    r = rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes),
                     "the change after Consul's return", deadline=RECOVERY_DEADLINE)
    t_seen = time.monotonic()
    check_eq(r["epoch"], r0["epoch"] + 1, "one epoch for the one change")
    check_eq(rs.lookups(keys), place(nodes, keys), "lookups after the change")
    print("  consul_restart: %d lookups answered while Consul was down %.1fs; the change "
          "was visible %.2fs after Consul's HTTP came back (%.2fs after the PUT; KV index "
          "%d before the crash, %d after)"
          % (n, t_back - t_kill, t_seen - t_back, t_seen - t_put, old_index, new_index))


# --------------------------------------------------------------------------------------
# 7. The sidecar restarted while Consul is down serves its snapshot

def scenario_restart_while_down(sc):
    c = H.Consul(sc)
    c.start()
    pre = "rs/down"
    nodes = [node("a", 7001), node("b", 7002, weight=2), node("c", 7003)]
    seed_kv(c, pre, nodes)
    rs = start_ringside(sc, c, "down", prefix=pre)
    keys = H.rand_keys(H.new_rng(SEED + 7), 500)
    # A second change, so the epoch is not just 1.
    rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes), "the seeded ring")
    nodes[2]["zone"] = "z3"
    c.kv_put(pre + "/nodes/cache-c", H.kv_node_value(nodes[2]))
    r0 = rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes), "the zone change")
    want = place(nodes, keys)
    check_eq(rs.lookups(keys), want, "lookups before the restart")
    check_eq(rs.stop(), 0, "ringside exit code on SIGTERM")
    c.kill()

    rs.start()
    r = rs.ring()
    got = rs.lookups(keys)
    check_eq((r["epoch"], r["fingerprint"], r["source"]), (r0["epoch"], r0["fingerprint"],
                                                           "snapshot"),
             "RING right after the start (from the snapshot)")
    check_eq(got, want, "lookups right after the start")
    rs.wait_event("state_loaded", r"\bepoch=%d\b" % r0["epoch"])
    rs.wait_event("consul_error")
    check_eq(rs.lookups(keys), want, "lookups after consul_error")
    check_eq(rs.events("no_ring"), [], "no no_ring event")

    # Consul back with the same KV: the same ring, no new epoch.
    c.start(wait=False)
    t_back = c.wait_ready()
    idx = seed_kv(c, pre, nodes)
    r = rs.wait_ring(lambda r: r["source"] == "consul-kv" and r["consul_index"] >= idx,
                     "ringside to read Consul again", deadline=RECOVERY_DEADLINE)
    t_seen = time.monotonic()
    check_eq((r["epoch"], r["fingerprint"]), (r0["epoch"], r0["fingerprint"]),
             "the same KV again: same ring, same epoch")
    check_eq(rs.lookups(keys), want, "lookups once Consul is back")
    print("  restart_while_down: Consul's KV reached the sidecar %.2fs after its HTTP came back"
          % (t_seen - t_back))


# --------------------------------------------------------------------------------------
# 8. A cold start with Consul down: NORING until Consul answers

def scenario_cold_start(sc):
    c = H.Consul(sc)                    # ports reserved, not started
    pre = "rs/cold"
    rs = start_ringside(sc, c, "cold", prefix=pre)
    r = rs.ring()
    check_eq((r["epoch"], r["nodes"], r["fingerprint"]), (0, 0, ""), "RING without a ring")
    try:
        got = rs.cmd("LOOKUP", "user:42")
        raise Failure("LOOKUP without a ring answered %r" % got)
    except redis.ResponseError as e:
        check(str(e).startswith("NORING"), "LOOKUP without a ring: %r" % str(e))
    rs.wait_event("consul_error")
    rs.wait_event("no_ring")

    c.start(wait=False)
    t_back = c.wait_ready()
    nodes = [node("a", 7001), node("b", 7002), node("c", 7003)]
    seed_kv(c, pre, nodes)
    r = rs.wait_ring(lambda r: r["fingerprint"] == fp(nodes), "the ring once Consul answers",
                     deadline=RECOVERY_DEADLINE)
    t_seen = time.monotonic()
    check_eq((r["epoch"], r["source"]), (1, "consul-kv"), "RING: the first ring")
    keys = H.rand_keys(H.new_rng(SEED + 8), 300)
    check_eq(rs.lookups(keys), place(nodes, keys), "lookups once the ring arrived")
    print("  cold_start: the first ring arrived %.2fs after Consul's HTTP came back"
          % (t_seen - t_back))


# --------------------------------------------------------------------------------------

SCENARIOS = [
    ("kv_edits", scenario_kv_edits),
    ("rejections", scenario_rejections),
    ("guard", scenario_guard),
    ("health", scenario_health),
    ("consul_service", scenario_service),
    ("consul_restart", scenario_consul_restart),
    ("restart_while_down", scenario_restart_while_down),
    ("cold_start_consul_down", scenario_cold_start),
]


def main(argv):
    global RINGSIDE, RINGCTL, RUN
    if len(argv) != 3:
        print("usage: test_consul_kv.py PATH/TO/ringside PATH/TO/ringctl", file=sys.stderr)
        return 2
    RINGSIDE, RINGCTL = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    if not os.access(H.consul_binary(), os.X_OK):
        print("FAIL: no consul at %s (scripts/install-deps.sh installs it)" % H.consul_binary())
        print("0 passed, 1 failed")
        return 1
    H.install_signal_handlers()
    RUN = H.Scope()
    return H.run_scenarios(SCENARIOS, "RS_CONSUL_KV_ONLY", pass_scope=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
