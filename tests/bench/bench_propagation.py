#!/usr/bin/env python3
"""Change propagation, `consul kv put` -> new epoch pushed on ringside's socket (SPEC 11:
p50 <= 50 ms, p99 <= 250 ms on loopback), next to a baseline measured in the same run: the
same PUT seen by a blocking query made directly with urllib (the best any Consul watcher
could do).

Usage: bench_propagation.py PATH/TO/ringside [--changes N] [--interval MS] [--nodes N]

Starts its own Consul dev agent (loopback, free ports) and ringside (consul-kv, default
watch settings) with a ring of --nodes nodes, subscribes to `SUBSCRIBE ring` on the socket
(python3-redis' pub/sub), and runs a urllib blocking query on the same prefix in another
thread. Then, --changes times: PUT a changed value of one node (its weight) through
Consul's HTTP API, and time from the PUT returning to (a) the push arriving on the socket
and (b) the blocking query returning the new value. Changes are --interval ms apart (default
120: the watcher's token bucket refills at 10 requests/s, and operators do not make ten
changes a second). Prints p50, p90, p99 and max in ms for both, and the machine.
Run by hand; not part of the test suite. Takes about --changes x --interval.
"""

import argparse
import base64
import json
import math
import os
import platform
import queue
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                "integration"))
import harness as H  # noqa: E402

H.require_redis()  # re-executes under /usr/bin/python3 if this python3 lacks python3-redis

import redis  # noqa: E402

PREFIX = "ringside/bench"
WARMUP = 5


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def summary(name, xs):
    ms = [x * 1000.0 for x in xs]
    return "%-44s p50 %7.2f  p90 %7.2f  p99 %7.2f  max %7.2f  (min %.2f, n=%d)" % (
        name, pct(ms, 50), pct(ms, 90), pct(ms, 99), max(ms), min(ms), len(ms))


class Subscriber(threading.Thread):
    """SUBSCRIBE ring on ringside's socket; every push as (arrival time, epoch, fp)."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.q = queue.Queue()
        self.r = redis.Redis(unix_socket_path=sock, socket_timeout=None)
        self.p = self.r.pubsub(ignore_subscribe_messages=True)
        self.p.subscribe("ring")
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                m = self.p.get_message(timeout=0.5)
            except (redis.RedisError, OSError):
                return      # ringside went away (the end of the run)
            if m is None:
                continue
            t = time.monotonic()
            epoch, fp = m["data"].decode().split(" ")
            self.q.put((t, int(epoch), fp))


class BlockingWatcher(threading.Thread):
    """A Consul blocking query on the prefix with urllib; every new weight of the watched
    node as (arrival time, weight)."""

    def __init__(self, url, node_id):
        super().__init__(daemon=True)
        self.url, self.key = url, "%s/nodes/%s" % (PREFIX, node_id)
        self.q = queue.Queue()
        self.stop = threading.Event()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def run(self):
        index, last = 0, None
        while not self.stop.is_set():
            u = "%s/v1/kv/%s/?recurse&stale&wait=10s" % (self.url, PREFIX)
            if index:
                u += "&index=%d" % index
            try:
                with self.opener.open(u, timeout=30) as r:
                    body = r.read()
                    t = time.monotonic()
                    new = int(r.headers["X-Consul-Index"])
            except OSError:
                return      # Consul went away (the end of the run)
            index = new if new >= index else 0
            for e in json.loads(body):
                if e["Key"] == self.key:
                    w = json.loads(base64.b64decode(e["Value"])).get("weight", 1)
                    if w != last:
                        last = w
                        self.q.put((t, w))


def get(q, pred, what, deadline=10.0):
    end = time.monotonic() + deadline
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise H.Failure("no %s within %.0fs" % (what, deadline))
        try:
            item = q.get(timeout=left)
        except queue.Empty:
            continue
        if pred(item):
            return item


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ringside")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--interval", type=float, default=120.0, help="ms between changes")
    ap.add_argument("--nodes", type=int, default=10)
    a = ap.parse_args(argv[1:])
    check = a.changes >= 1 and 1 <= a.nodes <= 1000 and a.changes + 1 <= 10000
    if not check:
        ap.error("--changes 1..9999, --nodes 1..1000")

    H.install_signal_handlers()
    sc = H.Scope()
    c = H.Consul(sc)
    c.start()
    nodes = [{"id": "cache-%03d" % i, "address": "127.0.0.1:%d" % (7000 + i)}
             for i in range(a.nodes)]
    c.txn([("set", "%s/nodes/%s" % (PREFIX, n["id"]), H.kv_node_value(n)) for n in nodes])
    d = sc.new_dir()
    cfg = H.ringside_config(d, "bench", c.url, prefix=PREFIX, wait="5m",
                            log_level=os.environ.get("RS_BENCH_LOG_LEVEL", "info"))
    rs = H.Ringside(sc, os.path.abspath(a.ringside), cfg, d).start()
    rs.wait_ring(lambda r: r["fingerprint"] == H.fingerprint(nodes), "the first ring")

    sub = Subscriber(rs.sock)
    sub.start()
    bq = BlockingWatcher(c.url, nodes[0]["id"])
    bq.start()
    H.wait_for(lambda: "subscribers:1" in rs.cmd("INFO").decode(), "the subscription")

    epoch = rs.ring()["epoch"]
    push_lat, bq_lat, push_from_start, bq_from_start = [], [], [], []
    key = "%s/nodes/%s" % (PREFIX, nodes[0]["id"])
    t_begin = time.monotonic()
    for i in range(WARMUP + a.changes):
        weight = 2 + i
        nodes[0]["weight"] = weight
        want_fp = H.fingerprint(nodes)
        t0 = time.monotonic()
        c.kv_put(key, H.kv_node_value(nodes[0]))   # returns once Consul committed it
        t1 = time.monotonic()
        tp, e, f = get(sub.q, lambda m: True, "push for change %d" % i)
        if (e, f) != (epoch + 1, want_fp):
            raise H.Failure("change %d: push %d %s, expected %d %s" % (i, e, f, epoch + 1,
                                                                      want_fp))
        epoch = e
        tb, _ = get(bq.q, lambda m, w=weight: m[1] == w, "blocking query for change %d" % i)
        if i >= WARMUP:
            push_lat.append(tp - t1)
            push_from_start.append(tp - t0)
            bq_lat.append(tb - t1)
            bq_from_start.append(tb - t0)
        left = a.interval / 1000.0 - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)    # pacing between changes, not synchronisation
    elapsed = time.monotonic() - t_begin
    sub.stop.set()
    bq.stop.set()

    version = subprocess.run([H.consul_binary(), "version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    print("bench_propagation: %d changes (after %d warm-up), one every %.0f ms, ring of %d "
          "nodes, %.1fs" % (a.changes, WARMUP, a.interval, a.nodes, elapsed))
    print("machine: %d CPUs (nproc), %s; %s %s; %s; python %s" % (
        os.cpu_count(), H.cpu_model(), platform.system(), platform.release(), version,
        platform.python_version()))
    print("latency in ms from the PUT returning (negative: seen before the PUT's response "
          "arrived):")
    print(summary("ringside push on SUBSCRIBE ring", push_lat))
    print(summary("baseline: urllib blocking query (same PUT)", bq_lat))
    print("latency in ms from the PUT being sent:")
    print(summary("ringside push on SUBSCRIBE ring", push_from_start))
    print(summary("baseline: urllib blocking query (same PUT)", bq_from_start))
    ok50, ok99 = pct(push_lat, 50) <= 0.050, pct(push_lat, 99) <= 0.250
    print("SPEC 11 goal p50 <= 50 ms: %s; p99 <= 250 ms: %s" % ("met" if ok50 else "MISSED",
                                                              "met" if ok99 else "MISSED"))
    st = rs.info()
    print("ringside watch: kv_requests %s, kv_changes %s, kv_errors %s" % (
        st.get("kv_requests"), st.get("kv_changes"), st.get("kv_errors")))
    sc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
