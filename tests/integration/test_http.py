#!/usr/bin/env python3
"""End-to-end tests of ringside's HTTP endpoint (SPEC §7) against the daemon as a real
process: every endpoint (status, content type, JSON shape, values consistent with RING,
NODES, LOOKUP and ROUTE over the socket), /metrics through `promtool check metrics` and
moving with lookups, errors and a SIGHUP ring change, readiness without Consul, every 4xx
and 5xx of the request parser, a slowloris client cut off at the head timeout while
probes and socket lookups keep answering, 200 concurrent scrapes during a LOOKUP
pipeline, http.enabled false, a port already in use, IPv6, and a stop with HTTP clients
still connected.

Usage: test_http.py PATH/TO/ringside

Each scenario runs in its own directory under /tmp, picks free loopback ports, waits for
observable effects with deadlines rather than fixed sleeps, and stops exactly the
processes it started (by PID: SIGTERM, then SIGKILL after a deadline).
Environment: RS_KEEP_TMP=1 keeps the temp dirs; RS_HTTP_ONLY=name[,name] runs only those.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import (Conn, Failure, RespError, check, check_eq, enc, free_port,  # noqa: E402
                     new_dir, wait_for)

redis = H.require_redis()   # re-executes under /usr/bin/python3 if needed

DEADLINE = 10.0          # seconds for a start, a reload or a stop to show
HEAD_TIMEOUT = 5.0       # the daemon's: a request head must be complete by then
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
CT_TEXT = "text/plain; charset=utf-8"
CT_JSON = "application/json"
CT_METRICS = "text/plain; version=0.0.4; charset=utf-8"
HOSTILE_ID = 'cache-"q\\x'  # a quote and a backslash: label escaping must hold

RINGSIDE = None


# --------------------------------------------------------------------------------------
# The daemon

class Daemon:
    def __init__(self, cfg, d):
        self.dir = d
        self.cfg = cfg
        self.cfg_path = os.path.join(d, "ringside.json")
        self.sock = cfg["listen"]["socket"]
        addr = cfg.get("http", {}).get("address", "127.0.0.1:9317")
        host, _, port = addr.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.log_path = os.path.join(d, "ringside.log")
        self.proc = None
        self.write(cfg)

    def write(self, cfg):
        self.cfg = cfg
        H.write_atomic(self.cfg_path, cfg if isinstance(cfg, str) else json.dumps(cfg, indent=1))

    def start(self, wait=True):
        with open(self.log_path, "ab") as log:
            self.proc = H.spawn([RINGSIDE, "--config", self.cfg_path], stdout=log,
                                stderr=subprocess.STDOUT, env=H.clean_env())
        if wait:
            wait_for(lambda: self.proc.poll() is not None or self.pingable(), "ringside to start")
            check(self.proc.poll() is None, "ringside exited at start:\n" + self.log()[-2000:])
            if self.cfg.get("http", {}).get("enabled", True):
                wait_for(lambda: self.http_up(), "the HTTP endpoint to answer")
        return self

    def pingable(self):
        try:
            c = Conn(self.sock, timeout=1)
            try:
                return c.cmd("PING") == "PONG"
            finally:
                c.close()
        except OSError:
            return False

    def http_up(self):
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, sig=signal.SIGTERM, deadline=DEADLINE):
        return H.stop_expect(self.proc, sig, deadline)

    def conn(self, timeout=5):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, headers=None):
        c = self.conn()
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            body = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, body
        finally:
            c.close()

    def get(self, path):
        return self.request("GET", path)

    def get_json(self, path, status=200):
        st, hd, body = self.get(path)
        check_eq(st, status, "GET %s status (body %r)" % (path, body[:200]))
        check_eq(hd.get("content-type"), CT_JSON, "GET %s content type" % path)
        check_eq(int(hd.get("content-length", -1)), len(body), "GET %s Content-Length" % path)
        check(body.endswith(b"\n"), "GET %s: JSON body ends with a newline" % path)
        return json.loads(body)

    def metrics(self):
        st, hd, body = self.get("/metrics")
        check_eq(st, 200, "GET /metrics status")
        check_eq(hd.get("content-type"), CT_METRICS, "GET /metrics content type")
        return body.decode()


def base_config(d, nodes=None, http_port=None, **top):
    cfg = {
        "ring": {"name": "h", "algorithm": "ketama", "hash": "fnv1a_64", "replicas": 2},
        "listen": {"socket": os.path.join(d, "s.sock"), "max_key_bytes": 100},
        "http": {"address": "127.0.0.1:%d" % (http_port or free_port())},
        "state_dir": os.path.join(d, "state"),
        "membership": {"source": "static", "nodes": nodes if nodes is not None else NODES},
        "health": {"policy": "skip", "panic_threshold": 0.5},
        "log": {"level": "debug", "format": "kv"},
    }
    cfg.update(top)
    return cfg


NODES = [
    {"id": "cache-a", "address": "127.0.0.1:7001"},
    {"id": "cache-b", "address": "127.0.0.1:7002", "zone": "z1", "weight": 2},
    {"id": HOSTILE_ID, "address": "127.0.0.1:7003"},
    {"id": "cache-d", "address": "127.0.0.1:7004", "enabled": False},
    {"id": "cache-e", "address": "127.0.0.1:7005", "healthy": False},
]


def start(**kw):
    d = new_dir("rs-http")
    return Daemon(base_config(d, **kw), d).start()


# --------------------------------------------------------------------------------------
# Socket and HTTP clients (RESP: harness.Conn)

def pairs(flat):
    return H.pairs(flat, decode=False)


def raw_http(port, data, host="127.0.0.1", timeout=8.0, family=socket.AF_INET, trickle=None):
    """Send data (bytes) on a new TCP connection, read until the server closes; returns
    (status, headers, body) or (None, {}, b"") when nothing came back."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    try:
        if trickle:
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
                time.sleep(trickle)
        else:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return parse_http(out)


def recv_all(s):
    """Everything s receives until the peer closes."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def parse_http(out):
    if not out:
        return None, {}, b""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"^HTTP/1\.1 (\d{3}) [A-Za-z ]+$", lines[0])
    check(m is not None, "bad status line %r" % lines[0])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    check("content-length" in headers, "response without Content-Length: %r" % head)
    return int(m.group(1)), headers, body


# --------------------------------------------------------------------------------------
# Prometheus text format

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse_metrics(text):
    """{(name, ((label, value), ...)): float}, checking HELP/TYPE for every family."""
    samples, types, helps = {}, {}, set()
    check(text.endswith("\n"), "exposition must end with a newline")
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        check(m is not None, "unparseable metrics line %r" % line)
        name, labels_text, value = m.groups()
        labels = []
        if labels_text:
            pos = 0
            for lm in LABEL.finditer(labels_text):
                check(lm.start() == pos, "bad labels in %r" % line)
                labels.append((lm.group(1), unescape(lm.group(2))))
                pos = lm.end()
            check(pos == len(labels_text), "bad labels in %r" % line)
        check(name in types and name in helps, "%s has no TYPE or HELP" % name)
        if types[name] == "counter":
            check(name.endswith("_total"), "counter %s does not end in _total" % name)
        key = (name, tuple(sorted(labels)))
        check(key not in samples, "duplicate sample %r" % (key,))
        samples[key] = float(value)
    return samples


def metric(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    check(key in samples, "no sample %s%r" % (name, labels))
    return samples[key]


def promtool(text):
    check(os.access(PROMTOOL, os.X_OK), "promtool not found (apt-get install prometheus)")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    check(p.returncode == 0 and not p.stdout.strip(),
          "promtool check metrics: rc=%d\n%s" % (p.returncode, p.stdout.decode()[:2000]))


# --------------------------------------------------------------------------------------
# Scenarios

def scenario_endpoints():
    dm = start()
    st, hd, body = dm.get("/healthz")
    check_eq((st, hd.get("content-type"), body), (200, CT_TEXT, b"ok\n"), "/healthz")
    st, hd, body = dm.get("/readyz")
    check_eq((st, hd.get("content-type")), (200, CT_TEXT), "/readyz status and type")
    check(body.startswith(b"ready"), "/readyz body %r" % body)
    check_eq(hd.get("connection"), "close", "Connection header")
    check("date" in hd, "Date header")

    # /v1/ring against RING over the socket.
    r = redis.Redis(unix_socket_path=dm.sock)
    try:
        ring = pairs(r.execute_command("RING"))
        nodes = [pairs(n) for n in r.execute_command("NODES")]
    finally:
        r.connection_pool.disconnect()
    j = dm.get_json("/v1/ring")
    for k in ("name", "fingerprint", "algorithm", "hash", "hash_tag", "policy", "source",
              "held", "held_reason"):
        check_eq(j[k], ring[k].decode(), "/v1/ring %s" % k)
    for k in ("epoch", "replicas", "nodes", "enabled", "healthy", "points", "consul_index",
              "last_change"):
        check_eq(j[k], ring[k], "/v1/ring %s" % k)
    check_eq(j["panic"], bool(ring["panic"]), "/v1/ring panic")
    check_eq("%.4f" % j["imbalance"], ring["imbalance"].decode(), "/v1/ring imbalance")
    check_eq((j["nodes"], j["enabled"], j["healthy"], j["usable"]), (5, 4, 3, 3),
             "/v1/ring node counts")

    # /v1/nodes against NODES.
    jn = dm.get_json("/v1/nodes")
    check(isinstance(jn, list), "/v1/nodes is an array")
    check_eq([n["id"] for n in jn], [n["id"].decode() for n in nodes], "/v1/nodes ids")
    for a, b in zip(jn, nodes):
        check_eq(a["address"], b["address"].decode(), "node %s address" % a["id"])
        check_eq(a["weight"], b["weight"], "node %s weight" % a["id"])
        check_eq(a["zone"], b["zone"].decode(), "node %s zone" % a["id"])
        check_eq(a["enabled"], bool(b["enabled"]), "node %s enabled" % a["id"])
        check_eq(a["health"], b["health"].decode(), "node %s health" % a["id"])
        check_eq("%.6f" % a["share"], b["share"].decode(), "node %s share" % a["id"])
    check(abs(sum(n["share"] for n in jn) - 1.0) < 1e-9, "shares sum to 1")

    # /v1/lookup against LOOKUP and ROUTE, keys that need percent-encoding included.
    keys = [b"user:42", b"a b", b"a+b", "\u00fc-\u043a\u043b\u044e\u0447".encode(),
            b"x/y?z=1&key=2", b"%41", b"", b"#frag", b"\xff\x00binary", b"k" * 100]
    keys += [b"key-%d" % i for i in range(150)]
    c = Conn(dm.sock)
    try:
        for k in keys:
            j = dm.get_json("/v1/lookup?key=" + urllib.parse.quote(k, safe=""))
            want = c.cmd("LOOKUP", k)
            route = pairs(c.cmd("ROUTE", k))
            check_eq(j["address"], want.decode(), "lookup %r address" % k)
            check_eq(j["hash"], route["hash"], "lookup %r hash" % k)
            check_eq(j["epoch"], route["epoch"], "lookup %r epoch" % k)
            try:
                check_eq(j["key"], k.decode(), "lookup %r key" % k)
            except UnicodeDecodeError:
                check_eq((j["key"], j["key_hex"]), (None, k.hex()), "lookup %r key_hex" % k)
            got = [(x["id"], x["address"], x["zone"], x["health"], x["usable"])
                   for x in j["candidates"]]
            want_c = [(x[0].decode(), x[1].decode(), x[2].decode(), x[3].decode(),
                       x[4] == b"used") for x in route["candidates"]]
            check_eq(got, want_c, "lookup %r candidates" % k)
        # '+' is a space in a query (form encoding); %2B is a plus.
        check_eq(dm.get_json("/v1/lookup?key=a+b")["address"], c.cmd("LOOKUP", "a b").decode(),
                 "'+' decodes to a space")
        check_eq(dm.get_json("/v1/lookup?x=1&key=user%3A42&key=other")["key"], "user:42",
                 "the first key parameter counts")
    finally:
        c.close()
    for q, want in (("/v1/lookup", "missing"), ("/v1/lookup?k=1", "missing"),
                    ("/v1/lookup?key=%zz", "percent"), ("/v1/lookup?key=ab%4", "percent"),
                    ("/v1/lookup?key=" + "k" * 101, "too long")):
        j = dm.get_json(q, status=400)
        check(want in j["error"], "%s: error %r should mention %r" % (q, j["error"], want))

    # HEAD: the same head as GET, no body.
    for path in ("/healthz", "/metrics", "/v1/ring", "/v1/status"):
        st, hd, body = dm.request("HEAD", path)
        check_eq((st, body), (200, b""), "HEAD %s" % path)
        check(int(hd["content-length"]) > 0, "HEAD %s Content-Length" % path)

    # /v1/status: the shape, and values consistent with the rest.
    s = dm.get_json("/v1/status")
    for k in ("version", "pid", "uptime_seconds", "start_time", "ready", "ready_reason", "ring",
              "source", "held", "last_errors", "updates", "rebuilds", "state", "config",
              "clients", "commands", "command_errors", "http"):
        check(k in s, "/v1/status has %s" % k)
    check_eq(s["pid"], dm.proc.pid, "/v1/status pid")
    check_eq(s["ready"], True, "/v1/status ready")
    check_eq(s["source"], {"type": "static", "watches": [], "consul_errors": 0},
             "/v1/status source")
    check_eq((s["held"], s["last_errors"]), (None, []), "/v1/status held and errors")
    check_eq(s["updates"], {"held": 0, "rejected": 0}, "/v1/status updates")
    check_eq(s["ring"]["fingerprint"], ring["fingerprint"].decode(), "/v1/status ring")
    check(s["state"]["writes"] >= 1 and s["state"]["write_failures"] == 0, "state writes")
    check(s["rebuilds"]["total"] >= 1 and s["rebuilds"]["last_seconds"] > 0, "rebuilds")
    check(s["commands"]["lookup"] >= len(keys), "commands counted in /v1/status")
    check(abs(s["start_time"] - time.time()) < 60, "start_time is a unix time")
    check_eq(dm.stop(), 0, "exit code")


def scenario_metrics():
    dm = start()
    text = dm.metrics()
    promtool(text)
    m = parse_metrics(text)
    ring = dm.get_json("/v1/ring")
    nodes = {n["id"]: n for n in dm.get_json("/v1/nodes")}
    check_eq(metric(m, "ringside_build_info", version=dm.get_json("/v1/status")["version"]), 1,
             "build info")
    check_eq(metric(m, "ringside_ring_epoch"), ring["epoch"], "epoch")
    check_eq(metric(m, "ringside_ring_points"), ring["points"], "points")
    check(abs(metric(m, "ringside_ring_imbalance") - ring["imbalance"]) < 1e-12, "imbalance")
    for state, want in (("enabled", 4), ("disabled", 1), ("healthy", 3), ("unhealthy", 1),
                        ("usable", 3)):
        check_eq(metric(m, "ringside_nodes", state=state), want, "nodes{state=%s}" % state)
    check_eq(metric(m, "ringside_panic_mode"), 0, "panic mode")
    for nid, n in nodes.items():
        check_eq(metric(m, "ringside_node_share", node=nid), n["share"], "share of %s" % nid)
        check_eq(metric(m, "ringside_node_healthy", node=nid), 1 if n["health"] == "passing"
                 else 0, "health of %s" % nid)
    check(HOSTILE_ID in nodes, "the hostile id is a node")
    check(abs(metric(m, "ringside_process_start_time_seconds") - time.time()) < 60,
          "process start time")
    check_eq(metric(m, "ringside_rebuilds_total"), 1, "rebuilds")
    check(metric(m, "ringside_rebuild_seconds") > 0, "rebuild time")
    check_eq(metric(m, "ringside_keys_moved_ratio"), 1, "first ring moves everything")
    check(metric(m, "ringside_state_writes_total") >= 1, "state writes")
    for name in ("ringside_updates_held_total", "ringside_updates_rejected_total",
                 "ringside_state_write_failures_total", "ringside_clients_rejected_total",
                 "ringside_slow_clients_closed_total"):
        check_eq(metric(m, name), 0, name)

    def lookups(mm, cmd="lookup"):
        return metric(mm, "ringside_lookups_total", command=cmd)

    # N lookups move the lookup counter by exactly N; errors move the error counters.
    n = 1000
    c = Conn(dm.sock)
    c.send(b"".join(enc("LOOKUP", "k%d" % i) for i in range(n)))
    replies = [c.reply() for _ in range(n)]
    check(all(isinstance(r, bytes) for r in replies), "pipelined lookups answered")
    m2 = parse_metrics(dm.metrics())
    check_eq(lookups(m2) - lookups(m), n, "lookups_total{command=lookup} after %d LOOKUPs" % n)
    check_eq(metric(m2, "ringside_clients_connected"), 1, "one socket client connected")
    check_eq(metric(m2, "ringside_command_errors_total"),
             metric(m, "ringside_command_errors_total"), "no errors yet")
    check(isinstance(c.cmd("LOOKUP"), RespError), "LOOKUP without a key is an error")
    check(isinstance(c.cmd("LOOKUP", "k" * 101), RespError), "a long key is an error")
    check(isinstance(c.cmd("NOSUCH"), RespError), "unknown command")
    check_eq(c.cmd("MLOOKUP", "a", "b"), [c.cmd("LOOKUP", "a"), c.cmd("LOOKUP", "b")],
             "MLOOKUP")
    m3 = parse_metrics(dm.metrics())
    check_eq(metric(m3, "ringside_command_errors_total")
             - metric(m2, "ringside_command_errors_total"), 3, "command errors +3")
    check_eq(lookups(m3) - lookups(m2), 4, "failed and good LOOKUPs are counted")
    check_eq(lookups(m3, "unknown") - lookups(m2, "unknown"), 1, "unknown command counted")
    check_eq(lookups(m3, "mlookup") - lookups(m2, "mlookup"), 1, "MLOOKUP counted")
    c.send(b"*1\r\n$x\r\n")  # a malformed frame: protocol error, connection closed
    check(isinstance(c.reply(), RespError), "malformed frame answered with an error")
    c.close()
    m4 = wait_for(lambda: (lambda mm: mm if metric(mm, "ringside_clients_connected") == 0
                           else None)(parse_metrics(dm.metrics())), "the client to be gone")
    check_eq(metric(m4, "ringside_protocol_errors_total")
             - metric(m3, "ringside_protocol_errors_total"), 1, "protocol errors +1")
    check(metric(m4, "ringside_http_requests_total", code="200") >= 4, "HTTP requests counted")
    promtool(dm.metrics())
    check_eq(dm.stop(), 0, "exit code")


def scenario_ring_change():
    dm = start()
    before = parse_metrics(dm.metrics())
    epoch = dm.get_json("/v1/ring")["epoch"]
    cfg = json.loads(json.dumps(dm.cfg))
    cfg["membership"]["nodes"].append({"id": "cache-f", "address": "127.0.0.1:7006"})
    dm.write(cfg)
    dm.hup()
    wait_for(lambda: dm.get_json("/v1/ring")["epoch"] > epoch, "the new epoch on /v1/ring")
    after = parse_metrics(dm.metrics())
    promtool(dm.metrics())
    check_eq(metric(after, "ringside_ring_epoch"), epoch + 1, "epoch after the change")
    check_eq(metric(after, "ringside_rebuilds_total") - metric(before, "ringside_rebuilds_total"),
             1, "rebuilds +1")
    moved = metric(after, "ringside_keys_moved_ratio")
    check(0.05 < moved < 0.5, "keys moved by one node joining five: %r" % moved)
    check(metric(after, "ringside_rebuild_seconds") > 0, "rebuild time")
    check_eq(metric(after, "ringside_nodes", state="enabled"), 5, "enabled nodes")
    check(("ringside_node_share", (("node", "cache-f"),)) in after, "the new node's share")
    check_eq(metric(after, "ringside_config_reloads_total", result="success"), 1, "reloads ok")
    r = Conn(dm.sock)
    check_eq(pairs(r.cmd("RING"))["epoch"], epoch + 1, "RING agrees")
    r.close()
    # A bad file: rejected, counted, the ring keeps serving.
    dm.write("{not json")
    dm.hup()
    wait_for(lambda: metric(parse_metrics(dm.metrics()), "ringside_config_reloads_total",
                            result="failure") == 1, "the failed reload in /metrics")
    check_eq(dm.get_json("/v1/ring")["epoch"], epoch + 1, "epoch unchanged by a bad file")
    check_eq(dm.get_json("/v1/status")["config"], {"reloads": 2, "reload_failures": 1},
             "/v1/status config")
    check_eq(dm.stop(), 0, "exit code")


def scenario_not_ready_consul():
    d = new_dir("rs-http")
    # Bound but not listening: connections are refused (Consul unreachable), and no other
    # port pick can land on it meanwhile.
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    dead = reserved.getsockname()[1]
    try:
        not_ready_consul(d, dead)
    finally:
        reserved.close()


def not_ready_consul(d, dead):
    cfg = base_config(d, nodes=[])
    cfg["membership"] = {"source": "consul-kv",
                         "consul": {"address": "http://127.0.0.1:%d" % dead,
                                    "kv_prefix": "ringside/h"}}
    dm = Daemon(cfg, d).start()
    st, hd, body = dm.get("/readyz")
    check_eq((st, hd.get("content-type")), (503, CT_TEXT), "/readyz without a ring")
    check(b"no ring" in body, "/readyz gives a reason: %r" % body)
    check_eq(dm.get("/healthz")[0], 200, "/healthz while not ready")
    j = dm.get_json("/v1/lookup?key=a", status=503)
    check(j["error"].startswith("NORING"), "/v1/lookup without a ring: %r" % j)
    j = dm.get_json("/v1/ring")
    check_eq((j["fingerprint"], j["nodes"], j["source"]), ("", 0, ""), "/v1/ring without a ring")
    check_eq(dm.get_json("/v1/nodes"), [], "/v1/nodes without a ring")
    s = wait_for(lambda: (lambda s: s if s["source"]["watches"] and
                          s["source"]["watches"][0]["errors"] >= 1 else None)(
        dm.get_json("/v1/status")), "a Consul error in /v1/status")
    check_eq(s["ready"], False, "/v1/status ready")
    check_eq(s["source"]["type"], "consul-kv", "source type")
    w = s["source"]["watches"][0]
    check_eq(w["name"], "kv", "watch name")
    check(w["last_error"] and w["responses"]["transport"] >= 1, "watch error recorded: %r" % w)
    check(any(e["where"] == "consul watch kv" and e["reason"] for e in s["last_errors"]),
          "last_errors has the watch's reason: %r" % s["last_errors"])
    text = dm.metrics()
    promtool(text)
    m = parse_metrics(text)
    check(metric(m, "ringside_consul_watch_errors_total", watch="kv") >= 1, "watch errors")
    check(m[("ringside_consul_requests_total", (("class", "transport"), ("watch", "kv")))] >= 1,
          "transport errors by class")
    check(("ringside_consul_index", (("watch", "kv"),)) in m, "consul index")
    check_eq(metric(m, "ringside_nodes", state="usable"), 0, "no usable nodes")
    check(("ringside_ring_imbalance", ()) not in m, "no imbalance without a ring")
    st, _, body = dm.get("/readyz")
    check(st == 503 and b"Consul" in body, "/readyz names Consul: %r" % body)
    check_eq(dm.stop(), 0, "exit code")


def scenario_bad_requests():
    dm = start()
    p = dm.port
    ok_head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = [
        ("POST", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
        ("PUT", b"PUT /v1/ring HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        ("DELETE", b"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        ("unknown path", b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("root", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("trailing slash", b"GET /metrics/ HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        ("garbage", b"GARBAGE\r\n\r\n", 400),
        ("binary", b"\x00\x01\x02\xff\r\n\r\n", 400),
        ("no version", b"GET /healthz\r\n\r\n", 400),
        ("double space", b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("bad version", b"GET /healthz HTTP/1.x\r\nHost: x\r\n\r\n", 400),
        ("HTTP/2", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("no Host", b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        ("two Hosts", b"GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        ("no colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBroken\r\n\r\n", 400),
        ("space before colon", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("obs-fold", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n", 400),
        ("control char", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
        ("bare CR", b"GET /healthz HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),
        ("bad Content-Length", b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
         400),
        ("relative target", b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET with a body", b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
         413),
        ("chunked GET", b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0\r\n\r\n", 413),
        ("long request line", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        ("long line, no end", b"GET /" + b"a" * 9000, 414),
        ("65 headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-H%d: v\r\n" % i for i in range(64)) + b"\r\n", 431),
        ("20 KiB of headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 4000) for i in range(5)) + b"\r\n", 431),
        ("16 KiB head, no end", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"v" * 17000, 431),
        ("HTTP/1.0 without Host", b"GET /healthz HTTP/1.0\r\n\r\n", 200),
        ("64 headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-H%d: v\r\n" % i for i in range(63)) + b"\r\n", 200),
        ("LF only", b"GET /healthz HTTP/1.1\nHost: x\n\n", 200),
        ("leading CRLF", b"\r\n" + ok_head, 200),
        ("absolute form", b"GET http://127.0.0.1/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        ("query on a probe", b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200),
        ("pipelined extra", ok_head + ok_head, 200),
        ("lowercase header names", b"GET /healthz HTTP/1.1\r\nhOsT: x\r\n\r\n", 200),
    ]
    for name, data, want in cases:
        st, hd, body = raw_http(p, data)
        check_eq(st, want, "%s: status (body %r)" % (name, body[:120]))
        check_eq(int(hd["content-length"]), len(body), "%s: Content-Length" % name)
        if want == 405:
            check_eq(hd.get("allow"), "GET, HEAD", "%s: Allow header" % name)
    # One byte at a time, well within the head timeout.
    st, _, body = raw_http(p, ok_head, trickle=0.01)
    check_eq((st, body), (200, b"ok\n"), "a head sent byte by byte")
    # The daemon is unharmed.
    check_eq(dm.get("/healthz")[0], 200, "/healthz after the bad requests")
    m = parse_metrics(dm.metrics())
    for code in ("400", "404", "405", "413", "414", "431", "505"):
        check(metric(m, "ringside_http_requests_total", code=code) >= 1, "%s counted" % code)
    check_eq(dm.stop(), 0, "exit code")


def scenario_slowloris():
    dm = start()
    p = dm.port
    t0 = time.monotonic()
    stalled = []
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", p), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Ag")  # half a head, then nothing
        stalled.append(s)
    # One that keeps trickling: the deadline is for the whole head, not per byte.
    trickler = socket.create_connection(("127.0.0.1", p), timeout=10)
    trickler.sendall(b"GET /metrics HTTP/1.1\r\n")
    c = Conn(dm.sock)
    worst_http = worst_sock = 0.0
    i = 0
    while time.monotonic() - t0 < HEAD_TIMEOUT - 0.5:
        a = time.monotonic()
        st, _, body = dm.get("/healthz")
        check_eq((st, body), (200, b"ok\n"), "/healthz during the slowloris")
        b = time.monotonic()
        check(isinstance(c.cmd("LOOKUP", "k%d" % i), bytes), "LOOKUP during the slowloris")
        e = time.monotonic()
        worst_http, worst_sock = max(worst_http, b - a), max(worst_sock, e - b)
        try:
            trickler.sendall(b"X-%d: y\r\n" % i)
        except OSError:
            raise Failure("the trickling client was cut before the head timeout")
        i += 1
        time.sleep(0.1)
    check(worst_http < 0.5 and worst_sock < 0.5,
          "slow answers during the slowloris: http %.3fs, socket %.3fs" % (worst_http, worst_sock))
    # Every stalled client is cut off at the head timeout (408 at most, then EOF).
    for s in stalled + [trickler]:
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise Failure("a stalled client still open %.1fs after connecting"
                              % (time.monotonic() - t0))
            if not chunk:
                break
            data += chunk
        check(data == b"" or data.startswith(b"HTTP/1.1 408 "), "cut with %r" % data[:60])
        s.close()
    elapsed = time.monotonic() - t0
    check(HEAD_TIMEOUT - 0.5 <= elapsed <= HEAD_TIMEOUT + 2.5,
          "stalled clients cut after %.1fs (head timeout %.0fs)" % (elapsed, HEAD_TIMEOUT))
    check(isinstance(c.cmd("LOOKUP", "after"), bytes), "LOOKUP after the slowloris")
    c.close()
    m = parse_metrics(dm.metrics())
    check_eq(metric(m, "ringside_http_head_timeouts_total"), 31, "head timeouts counted")
    check_eq(dm.get_json("/v1/status")["http"]["connected"], 1, "only this request open")
    check_eq(dm.stop(), 0, "exit code")


def scenario_concurrent_scrapes():
    dm = start()
    p = dm.port
    stop = threading.Event()
    result = {"batches": 0, "error": None}
    want = {}
    c0 = Conn(dm.sock)
    keys = ["pk%d" % i for i in range(500)]
    for k in keys:
        want[k] = c0.cmd("LOOKUP", k)
    c0.close()
    batch = b"".join(enc("LOOKUP", k) for k in keys)

    def pipeline():
        try:
            c = Conn(dm.sock)
            while not stop.is_set() or result["batches"] == 0:
                c.send(batch)
                got = [c.reply() for _ in keys]
                if got != [want[k] for k in keys]:
                    raise Failure("pipelined LOOKUP answers changed")
                result["batches"] += 1
            c.close()
        except Exception as e:  # reported by the main thread
            result["error"] = e

    th = threading.Thread(target=pipeline)
    th.start()
    try:
        for rnd in range(3):
            socks = [socket.create_connection(("127.0.0.1", p), timeout=10) for _ in range(200)]
            for s in socks:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            for n, s in enumerate(socks):
                data = recv_all(s)
                s.close()
                st, hd, body = parse_http(data)
                check_eq(st, 200, "scrape %d of round %d" % (n, rnd))
                check_eq(int(hd["content-length"]), len(body), "scrape %d length" % n)
                check(b"\nringside_ring_epoch 1\n" in body, "scrape %d has the epoch" % n)
    finally:
        stop.set()
        th.join(30)
    check(not th.is_alive(), "the lookup pipeline finished")
    if result["error"] is not None:
        raise result["error"]
    check(result["batches"] >= 1, "the pipeline ran during the scrapes")
    text = dm.metrics()
    promtool(text)
    m = parse_metrics(text)
    check(metric(m, "ringside_http_requests_total", code="200") >= 600, "600 scrapes counted")
    check_eq(metric(m, "ringside_http_connections_rejected_total"), 0, "none rejected")
    check(metric(m, "ringside_lookups_total", command="lookup")
          >= len(keys) * (1 + result["batches"]), "pipelined lookups counted")
    check_eq(dm.stop(), 0, "exit code")


def scenario_disabled():
    d = new_dir("rs-http")
    port = free_port()
    cfg = base_config(d, http_port=port)
    cfg["http"]["enabled"] = False
    dm = Daemon(cfg, d).start()
    check(dm.pingable(), "socket answers")
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        raise Failure("something listens on the HTTP port with http.enabled false")
    except ConnectionRefusedError:
        pass
    finally:
        s.close()
    check("event=http_disabled" in dm.log(), "http_disabled logged")
    check_eq(dm.stop(), 0, "exit code")


def scenario_port_in_use():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        d = new_dir("rs-http")
        dm = Daemon(base_config(d, http_port=port), d).start(wait=False)
        try:
            rc = dm.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            raise Failure("ringside kept running with its HTTP port taken")
        check_eq(rc, 1, "exit code with the HTTP port taken")
        log = dm.log()
        check("event=startup_failed" in log and "address already in use" in log
              and "127.0.0.1:%d" % port in log, "a clear error: %s" % log[-600:])
        check(not os.path.exists(dm.sock), "no socket file left behind")
    finally:
        holder.close()


def scenario_ipv6():
    try:
        port = free_port(hosts=("::1",))
    except OSError:
        print("  (no IPv6 loopback here: only the IPv4 forms are checked)")
        port = None
    if port is not None:
        d = new_dir("rs-http")
        cfg = base_config(d)
        cfg["http"]["address"] = "[::1]:%d" % port
        dm = Daemon(cfg, d).start()
        st, _, body = raw_http(port, b"GET /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n",
                               host="::1", family=socket.AF_INET6)
        check_eq((st, body), (200, b"ok\n"), "/healthz over IPv6")
        check("address=[::1]:%d" % port in dm.log(), "bound address logged")
        check_eq(dm.stop(), 0, "exit code")
    # localhost is accepted as 127.0.0.1.
    d = new_dir("rs-http")
    port = free_port()
    cfg = base_config(d)
    cfg["http"]["address"] = "localhost:%d" % port
    dm = Daemon(cfg, d).start()
    check_eq(dm.get("/healthz")[0], 200, "/healthz on localhost")
    check_eq(dm.stop(), 0, "exit code")


def scenario_stop_with_clients():
    dm = start()
    p = dm.port
    idle = [socket.create_connection(("127.0.0.1", p), timeout=10) for _ in range(5)]
    for s in idle[:3]:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
    # A client that asks and never reads: its response sits in the kernel's buffers.
    asker = socket.create_connection(("127.0.0.1", p), timeout=10)
    asker.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: dm.get_json("/v1/status")["http"]["connected"] >= 7, "clients connected")
    t = time.monotonic()
    check_eq(dm.stop(deadline=5), 0, "exit code with HTTP clients open")
    check(time.monotonic() - t < 3.0, "stopped in %.1fs" % (time.monotonic() - t))
    data = recv_all(asker)
    check(data.startswith(b"HTTP/1.1 200 "), "the asked response was delivered")
    for s in idle + [asker]:
        s.close()
    check("event=stopped" in dm.log(), "stopped cleanly")


SCENARIOS = [
    ("endpoints", scenario_endpoints),
    ("metrics", scenario_metrics),
    ("ring_change", scenario_ring_change),
    ("not_ready_consul", scenario_not_ready_consul),
    ("bad_requests", scenario_bad_requests),
    ("slowloris", scenario_slowloris),
    ("concurrent_scrapes", scenario_concurrent_scrapes),
    ("disabled", scenario_disabled),
    ("port_in_use", scenario_port_in_use),
    ("ipv6_localhost", scenario_ipv6),
    ("stop_with_clients", scenario_stop_with_clients),
]


def print_logs(scope):
    for d in scope.dirs:
        lp = os.path.join(d, "ringside.log")
        if os.path.exists(lp):
            tail = H.file_tail(lp, 1500)
            print("  log %s:\n    %s" % (lp, tail.replace("\n", "\n    ")))


def main(argv):
    global RINGSIDE
    if len(argv) != 2:
        print("usage: test_http.py PATH/TO/ringside", file=sys.stderr)
        return 2
    RINGSIDE = os.path.abspath(argv[1])
    H.install_signal_handlers()
    return H.run_scenarios(SCENARIOS, "RS_HTTP_ONLY", on_failure=print_logs,
                           stop_sig=signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
