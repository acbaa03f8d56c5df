#!/usr/bin/env python3
"""ringctl's Consul commands against a real Consul agent: node add|remove|disable|enable|set,
ring set|show|confirm, check-and-set conflicts, validation before writing, missing ids,
an unreachable agent, ACL tokens (missing, wrong, scoped), prefix selection, usage errors.

Usage: test_ringctl_consul.py PATH/TO/ringctl

Starts one `consul agent -dev` (ACLs on, default deny, a master token) on loopback ports
picked by binding port 0, waits until it answers (deadline, no fixed sleeps), and gives
each scenario its own KV prefix. Expected values never come from ringctl: the KV is read
back with urllib, and fingerprints are recomputed here from the KV content with the ring's
canonical text (harness.fingerprint, as common/ring.c's compute_fingerprint). Concurrent
edits are made while ringctl sits in its test-only pause (RINGCTL_TEST_PAUSE_BEFORE_WRITE),
after it has read the key: Consul must then refuse its check-and-set write.

Environment: RS_DEPS_DIR (default: .deps next to the source tree) holds
consul/usr/bin/consul; CONSUL_BIN overrides it. RS_KEEP_TMP=1 keeps the temp dir,
RS_CONSUL_ONLY=name[,name] runs only those scenarios. Prints PASS/FAIL per scenario and
"N passed, M failed"; stops exactly the agent it started, by PID.
"""

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import Failure, check, check_eq, check_in  # noqa: E402

RUN_TIMEOUT = 30.0      # seconds one ringctl run may take
PAUSE_MS = 1000         # ringctl's pause between read and write in the conflict scenarios
MASTER = "7e1c4b1a-3f0e-4d6b-9a51-5a0000000001"
BAD_TOKEN = "00000000-0000-4000-8000-000000000bad"

RINGCTL = None
CONSUL = None           # the Agent
TMP = None


# --------------------------------------------------------------------------------------
# The Consul agent

class Agent(H.Consul):
    """The run's `consul agent -dev`: ACLs on, default deny; every request made with the
    master token unless it names another (ACL bootstrap is async: ready once the master
    token reads KV)."""

    def __init__(self, scope, workdir):
        conf = os.path.join(workdir, "acl.hcl")
        with open(conf, "w") as f:
            f.write('acl {\n  enabled = true\n  default_policy = "deny"\n'
                    '  enable_token_persistence = false\n'
                    '  tokens { master = "%s" }\n}\n' % MASTER)
        super().__init__(scope, workdir, config_file=conf, token=MASTER)

    # KV, always read with the master token and never through ringctl.
    def get(self, key):
        """(decoded JSON value or raw str, ModifyIndex), or (None, 0) when absent."""
        st, body, _ = self.request("GET", "/v1/kv/" + key)
        if st == 404:
            return None, 0
        check_eq(st, 200, "GET %s" % key)
        e = json.loads(body)[0]
        raw = base64.b64decode(e["Value"] or "").decode()
        try:
            return json.loads(raw), e["ModifyIndex"]
        except ValueError:
            return raw, e["ModifyIndex"]

    def put(self, key, value):
        data = value if isinstance(value, bytes) else (
            value.encode() if isinstance(value, str) else json.dumps(value).encode())
        st, body, _ = self.request("PUT", "/v1/kv/" + key, data=data)
        check_eq((st, body.strip()), (200, b"true"), "PUT %s" % key)

    def listing(self, prefix):
        """{key relative to prefix: value} of everything under prefix/."""
        st, body, _ = self.request("GET", "/v1/kv/%s/?recurse" % prefix)
        if st == 404:
            return {}
        check_eq(st, 200, "GET %s/?recurse" % prefix)
        out = {}
        for e in json.loads(body):
            raw = base64.b64decode(e["Value"] or "").decode()
            try:
                v = json.loads(raw)
            except ValueError:
                v = raw
            out[e["Key"][len(prefix) + 1:]] = (v, e["ModifyIndex"])
        return out

    def values(self, prefix):
        return {k: v for k, (v, _) in self.listing(prefix).items()}

    def delete_tree(self, prefix):
        self.request("DELETE", "/v1/kv/%s?recurse" % prefix)


# --------------------------------------------------------------------------------------
# Running ringctl

def base_env(token=True):
    env = H.clean_env(CONSUL_HTTP_ADDR=CONSUL.url)
    if token:
        env["CONSUL_HTTP_TOKEN_FILE"] = os.path.join(TMP, "master.token")
    return env


def run(args, env=None, token=True, extra_env=None, stdin=subprocess.DEVNULL):
    e = dict(env if env is not None else base_env(token))
    e.update(extra_env or {})
    p = subprocess.run([RINGCTL] + args, env=e, stdin=stdin, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    for secret in (MASTER, BAD_TOKEN):
        check(secret not in p.stdout and secret not in p.stderr,
              "ringctl %s printed an ACL token" % " ".join(args))
    return p.returncode, p.stdout, p.stderr


def ok(args, **kw):
    rc, out, err = run(args, **kw)
    if rc != 0:
        raise Failure("ringctl %s: exit %d, stderr %r" % (" ".join(args), rc, err))
    return out


def fails(args, want_rc, want_text, **kw):
    rc, out, err = run(args, **kw)
    check_eq(rc, want_rc, "exit code of ringctl %s (stderr %r)" % (" ".join(args), err))
    if want_text:
        check_in(want_text, err, "stderr of ringctl %s" % " ".join(args))
    return out, err


def fingerprint(params, nodes):
    """The ring's fingerprint, recomputed from KV content (config, {id: node})."""
    return H.config_fingerprint(nodes, params)


def kv_state(prefix):
    """(config dict, {id: node}) as stored under prefix."""
    vals = CONSUL.values(prefix)
    nodes = {k[len("nodes/"):]: v for k, v in vals.items() if k.startswith("nodes/")}
    return vals.get("config", {}), nodes


def read_line(fd, deadline):
    """One line from a pipe fd within deadline seconds."""
    buf = b""
    end = time.monotonic() + deadline
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0:
            raise Failure("no line from ringctl within %.0fs (got %r)" % (deadline, buf))
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace")


def conflict(args, key, concurrent_value, want_text, quiet=True):
    """Runs ringctl with the test pause, writes concurrent_value to key once ringctl has
    read it, and checks that ringctl wrote nothing and said why (and, when quiet, printed
nothing on stdout: only confirm describes the ring before writing)."""
    env = base_env()
    env["RINGCTL_TEST_PAUSE_BEFORE_WRITE"] = str(PAUSE_MS)
    p = subprocess.Popen([RINGCTL] + args, env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        line = read_line(p.stderr.fileno(), RUN_TIMEOUT)
        check_in("test pause", line, "ringctl %s paused before writing" % " ".join(args))
        CONSUL.put(key, concurrent_value)
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    finally:
        H.stop_proc(p, signal.SIGKILL)
    check_eq(p.returncode, 1, "exit code of ringctl %s under a concurrent edit" % " ".join(args))
    check_in(want_text, err.decode(), "conflict message")
    check_in("nothing was written", err.decode(), "conflict message")
    if quiet:
        check_eq(out, b"", "stdout under a conflict")
    got, _ = CONSUL.get(key)
    check_eq(got, concurrent_value, "%s after the conflict (the concurrent edit stays)" % key)


# --------------------------------------------------------------------------------------
# Scenarios (each uses the prefix rstest/<name>)

def scenario_node_add():
    pre = "rstest/add"
    out = ok(["node", "add", "cache-a", "127.0.0.1:6380", "--weight", "2", "--zone", "a",
              "--prefix", pre])
    check_eq(out.strip(), "nodes/cache-a: added 127.0.0.1:6380 weight 2 zone a", "output")
    check_eq(CONSUL.get(pre + "/nodes/cache-a")[0],
             {"address": "127.0.0.1:6380", "weight": 2, "zone": "a", "enabled": True}, "value")
    out = ok(["node", "add", "cache-b", "[::1]:6381", "--disabled", "--json", "--prefix", pre])
    doc = json.loads(out)
    check_eq(doc["key"], pre + "/nodes/cache-b", "--json key")
    check_eq(doc["action"], "added", "--json action")
    check_eq(doc["value"], CONSUL.get(pre + "/nodes/cache-b")[0], "--json value = KV value")
    check_eq(doc["value"], {"address": "[::1]:6381", "weight": 1, "enabled": False}, "value")
    # An existing id: refused, value untouched.
    before = CONSUL.get(pre + "/nodes/cache-a")
    _, err = fails(["node", "add", "cache-a", "127.0.0.1:7000", "--prefix", pre], 1,
                   "already exists")
    check_in("node set", err, "hint")
    check_eq(CONSUL.get(pre + "/nodes/cache-a"), before, "existing node after a refused add")


def scenario_enable_disable():
    pre = "rstest/enable"
    CONSUL.put(pre + "/nodes/c", {"address": "127.0.0.1:6379"})
    out = ok(["node", "disable", "c", "--prefix", pre])
    check_in("nodes/c: disabled", out, "output")
    v, idx = CONSUL.get(pre + "/nodes/c")
    check_eq(v, {"address": "127.0.0.1:6379", "enabled": False}, "after disable")
    out = ok(["node", "disable", "c", "--prefix", pre])
    check_in("already disabled; nothing written", out, "idempotent disable")
    check_eq(CONSUL.get(pre + "/nodes/c")[1], idx, "ModifyIndex after a no-op disable")
    doc = json.loads(ok(["node", "enable", "c", "--prefix", pre, "--json"]))
    check_eq((doc["action"], doc["value"], doc["previous"]),
             ("enabled", {"address": "127.0.0.1:6379", "enabled": True},
              {"address": "127.0.0.1:6379", "enabled": False}), "--json of enable")
    check_eq(CONSUL.get(pre + "/nodes/c")[0], doc["value"], "after enable")
    out = ok(["node", "enable", "c", "--prefix", pre])
    check_in("already enabled", out, "idempotent enable")


def scenario_node_set():
    pre = "rstest/set"
    CONSUL.put(pre + "/nodes/n1", {"address": "127.0.0.1:6379", "weight": 1, "zone": "a",
                                    "enabled": False})
    out = ok(["node", "set", "n1", "--weight", "5", "--zone", "b", "--prefix", pre])
    check_in("weight 1 -> 5", out, "output")
    check_in("zone a -> b", out, "output")
    check_eq(CONSUL.get(pre + "/nodes/n1")[0],
             {"address": "127.0.0.1:6379", "weight": 5, "zone": "b", "enabled": False},
             "other fields kept")
    ok(["node", "set", "n1", "--address", "127.0.0.9:6380", "--zone", "", "--prefix", pre])
    check_eq(CONSUL.get(pre + "/nodes/n1")[0],
             {"address": "127.0.0.9:6380", "weight": 5, "enabled": False}, "address set, zone gone")
    idx = CONSUL.get(pre + "/nodes/n1")[1]
    out = ok(["node", "set", "n1", "--weight", "5", "--prefix", pre])
    check_in("nothing written", out, "unchanged set")
    check_eq(CONSUL.get(pre + "/nodes/n1")[1], idx, "ModifyIndex after a no-op set")
    # A value the sidecars reject can be repaired field by field.
    CONSUL.put(pre + "/nodes/n2", {"address": "nope", "weight": 1})
    ok(["node", "set", "n2", "--address", "127.0.0.2:6379", "--prefix", pre])
    check_eq(CONSUL.get(pre + "/nodes/n2")[0], {"address": "127.0.0.2:6379", "weight": 1},
             "repaired value")
    # ... but a field left bad is still caught before writing.
    CONSUL.put(pre + "/nodes/n3", {"address": "127.0.0.3:6379", "weight": 1, "colour": "red"})
    fails(["node", "set", "n3", "--weight", "2", "--prefix", pre], 1, "nothing written")
    check_eq(CONSUL.get(pre + "/nodes/n3")[0]["weight"], 1, "n3 untouched")
    # Not a JSON object: refused with a way out.
    CONSUL.put(pre + "/nodes/n4", "garbage")
    fails(["node", "set", "n4", "--weight", "2", "--prefix", pre], 1, "not a JSON object")


def scenario_remove_and_missing():
    pre = "rstest/remove"
    CONSUL.put(pre + "/nodes/gone", {"address": "127.0.0.1:6379", "weight": 3})
    doc = json.loads(ok(["node", "remove", "gone", "--prefix", pre, "--json"]))
    check_eq((doc["action"], doc["value"], doc["previous"]),
             ("removed", None, {"address": "127.0.0.1:6379", "weight": 3}), "--json of remove")
    check_eq(CONSUL.get(pre + "/nodes/gone"), (None, 0), "removed key")
    for args in (["node", "remove", "gone"], ["node", "disable", "gone"],
                 ["node", "enable", "gone"], ["node", "set", "gone", "--weight", "2"]):
        fails(args + ["--prefix", pre], 1, "nodes/gone does not exist")
    check_eq(CONSUL.values(pre), {}, "nothing created by commands on a missing id")


def scenario_invalid_values():
    pre = "rstest/invalid"
    CONSUL.put(pre + "/nodes/ok", {"address": "127.0.0.1:6379"})
    CONSUL.put(pre + "/config", {"replicas": 2})
    before = CONSUL.listing(pre)
    cases = [
        (["node", "add", "x", "127.0.0.1"], 1, "host:port"),
        (["node", "add", "x", "127.0.0.1:0"], 1, "port"),
        (["node", "add", "x", "127.0.0.1:6379", "--weight", "0"], 1, "weight"),
        (["node", "add", "x", "127.0.0.1:6379", "--weight", "10001"], 1, "weight"),
        (["node", "add", "bad id", "127.0.0.1:6379"], 1, "spaces"),
        (["node", "add", "a/b", "127.0.0.1:6379"], 1, "'/'"),
        (["node", "add", "x" * 201, "127.0.0.1:6379"], 1, "too long"),
        (["node", "add", "x", "127.0.0.1:6379", "--weight", "abc"], 2, "--weight"),
        (["node", "add", "x", "127.0.0.1:6379", "--weight", "-1"], 2, "--weight"),
        (["node", "set", "ok", "--weight", "0"], 1, "weight"),
        (["node", "set", "ok", "--address", "no-port"], 1, "address"),
        (["ring", "set", "--replicas", "17"], 1, "replicas"),
        (["ring", "set", "--replicas", "0"], 1, "replicas"),
        (["ring", "set", "--algorithm", "nope"], 1, "unknown algorithm"),
        (["ring", "set", "--hash", "sha1"], 1, "unknown hash"),
        (["ring", "set", "--hash-tag", "abc"], 1, "hash_tag"),
        (["ring", "set", "--max-removal-fraction", "0"], 1, "max_removal_fraction"),
        (["ring", "set", "--max-removal-fraction", "1.5"], 1, "max_removal_fraction"),
        (["ring", "set", "--max-removal-fraction", "half"], 2, "--max-removal-fraction"),
        (["ring", "set", "--force", "yes"], 2, "--force"),
    ]
    for args, want_rc, text in cases:
        fails(args + ["--prefix", pre], want_rc, text)
    check_eq(CONSUL.listing(pre), before, "KV after rejected values (nothing written)")


def scenario_ring_set():
    pre = "rstest/ringset"
    out = ok(["ring", "set", "--replicas", "3", "--hash-tag", "{}", "--prefix", pre])
    check_in("replicas (none) -> 3", out, "output")
    check_eq(CONSUL.get(pre + "/config")[0], {"replicas": 3, "hash_tag": "{}"}, "created")
    ok(["ring", "set", "--algorithm", "modula", "--hash", "murmur", "--force", "true",
        "--max-removal-fraction", "0.25", "--prefix", pre])
    check_eq(CONSUL.get(pre + "/config")[0],
             {"replicas": 3, "hash_tag": "{}", "algorithm": "modula", "hash": "murmur",
              "force": True, "max_removal_fraction": 0.25}, "merged")
    doc = json.loads(ok(["ring", "set", "--force", "false", "--hash-tag", "", "--json",
                         "--prefix", pre]))
    check_eq(doc["value"], CONSUL.get(pre + "/config")[0], "--json value = KV value")
    check_eq((doc["value"]["force"], doc["value"]["hash_tag"], doc["previous"]["force"]),
             (False, "", True), "--json fields")
    idx = CONSUL.get(pre + "/config")[1]
    out = ok(["ring", "set", "--replicas", "3", "--prefix", pre])
    check_in("nothing written", out, "unchanged config")
    check_eq(CONSUL.get(pre + "/config")[1], idx, "ModifyIndex after a no-op ring set")


def scenario_ring_show():
    pre = "rstest/show"
    ok(["ring", "set", "--replicas", "3", "--prefix", pre])
    ok(["node", "add", "cache-a", "127.0.0.1:6379", "--zone", "a", "--prefix", pre])
    ok(["node", "add", "cache-b", "127.0.0.2:6379", "--weight", "2", "--prefix", pre])
    ok(["node", "add", "cache-c", "127.0.0.3:6379", "--disabled", "--prefix", pre])
    CONSUL.put(pre + "/nodes/bad", {"address": "127.0.0.4:6379", "weight": -1})
    CONSUL.put(pre + "/unrelated", "ignored")
    config, nodes = kv_state(pre)
    del nodes["bad"]
    want = fingerprint(config, nodes)
    doc = json.loads(ok(["ring", "show", "--json", "--prefix", pre]))
    check_eq(doc["ring"]["fingerprint"], want, "fingerprint of the KV ring")
    check_eq((doc["ring"]["nodes"], doc["ring"]["enabled"]), (3, 2), "node counts")
    check_eq(sorted(n["id"] for n in doc["nodes"]), ["cache-a", "cache-b", "cache-c"], "nodes")
    check_eq(doc["config"]["replicas"], 3, "replicas from the KV config")
    check_eq([r["key"] for r in doc["rejections"]], ["nodes/bad"], "rejections")
    check_in("weight", doc["rejections"][0]["reason"], "rejection reason")
    shares = {n["id"]: n["share"] for n in doc["nodes"]}
    check(abs(shares["cache-a"] + shares["cache-b"] - 1.0) < 1e-9 and shares["cache-c"] == 0,
          "shares %r" % shares)
    out = ok(["ring", "show", "--prefix", pre])
    check_in("fingerprint:           " + want, out, "text output")
    check_in("nodes/bad:", out, "rejections listed")
    # An empty prefix: no ring, still exit 0.
    doc = json.loads(ok(["ring", "show", "--json", "--prefix", "rstest/empty"]))
    check_eq((doc["ring"], doc["nodes"]), (None, []), "empty prefix")


def scenario_ring_confirm():
    pre = "rstest/confirm"
    for i in range(4):
        ok(["node", "add", "n%d" % i, "127.0.1.%d:6379" % i, "--prefix", pre])
    fails(["ring", "confirm", "--prefix", pre], 2, "--yes")
    check_eq(CONSUL.get(pre + "/confirm"), (None, 0), "no confirm without --yes")
    config, nodes = kv_state(pre)
    want = fingerprint(config, nodes)
    out = ok(["ring", "confirm", "--yes", "--prefix", pre])
    check_in("4 nodes", out, "output")
    check_in(want, out, "output")
    check_eq(CONSUL.get(pre + "/confirm")[0], {"fingerprint": want}, "confirm value")
    idx = CONSUL.get(pre + "/confirm")[1]
    out = ok(["ring", "confirm", "--yes", "--prefix", pre])
    check_in("nothing written", out, "confirm again")
    check_eq(CONSUL.get(pre + "/confirm")[1], idx, "ModifyIndex after a no-op confirm")
    # A change, as if 3 of 4 nodes went: the new ring's fingerprint replaces the old one.
    for i in range(1, 4):
        ok(["node", "remove", "n%d" % i, "--prefix", pre])
    config, nodes = kv_state(pre)
    want = fingerprint(config, nodes)
    doc = json.loads(ok(["ring", "confirm", "--yes", "--json", "--prefix", pre]))
    check_eq(doc["value"], {"fingerprint": want}, "--json value")
    check_eq(CONSUL.get(pre + "/confirm")[0], {"fingerprint": want}, "new confirm value")
    ok(["ring", "confirm", "--yes", "--fingerprint", "0123456789abcdef", "--prefix", pre])
    check_eq(CONSUL.get(pre + "/confirm")[0], {"fingerprint": "0123456789abcdef"},
             "--fingerprint")
    fails(["ring", "confirm", "--yes", "--fingerprint", "XYZ", "--prefix", pre], 2,
          "--fingerprint")
    fails(["ring", "confirm", "--yes", "--prefix", "rstest/confirm-empty"], 1,
          "nothing to confirm")
    check_eq(CONSUL.values("rstest/confirm-empty"), {}, "nothing written for an empty prefix")


def scenario_cas_conflicts():
    pre = "rstest/cas"
    CONSUL.put(pre + "/nodes/cache-a", {"address": "127.0.0.1:6379", "weight": 1})
    changed = "changed in Consul while this edit was being made"
    conflict(["node", "set", "cache-a", "--weight", "5", "--prefix", pre], pre + "/nodes/cache-a",
             {"address": "127.0.0.1:6379", "weight": 7}, "nodes/cache-a " + changed)
    conflict(["node", "disable", "cache-a", "--prefix", pre], pre + "/nodes/cache-a",
             {"address": "127.0.0.1:6379", "weight": 8}, changed)
    conflict(["node", "remove", "cache-a", "--prefix", pre], pre + "/nodes/cache-a",
             {"address": "127.0.0.1:6379", "weight": 9}, changed)
    conflict(["node", "add", "cache-b", "127.0.0.2:6379", "--prefix", pre], pre + "/nodes/cache-b",
             {"address": "127.0.0.22:6379"}, "created in Consul while this edit was being made")
    CONSUL.put(pre + "/config", {"replicas": 2})
    conflict(["ring", "set", "--replicas", "3", "--prefix", pre], pre + "/config",
             {"replicas": 4}, "config " + changed)
    conflict(["ring", "confirm", "--yes", "--prefix", pre], pre + "/confirm",
             {"fingerprint": "ffffffffffffffff"}, "confirm was created in Consul", quiet=False)


def scenario_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed again below: nobody listens there
    url = "http://127.0.0.1:%d" % port
    for args in (["node", "add", "x", "127.0.0.1:6379"], ["ring", "show"],
                 ["ring", "confirm", "--yes"], ["node", "remove", "x"]):
        fails(args + ["--consul", url, "--prefix", "rstest/unreach"], 1,
              "cannot reach Consul at " + url)
    env = base_env()
    env["CONSUL_HTTP_ADDR"] = "127.0.0.1:%d" % port
    fails(["ring", "show"], 1, "cannot reach Consul at " + url, env=env)
    # Several addresses: a dead one is skipped.
    env["CONSUL_HTTP_ADDR"] = "127.0.0.1:%d,%s" % (port, CONSUL.url)
    ok(["node", "add", "x", "127.0.0.1:6379", "--prefix", "rstest/unreach"], env=env)
    check_eq(CONSUL.get("rstest/unreach/nodes/x")[0]["address"], "127.0.0.1:6379", "via failover")
    fails(["ring", "show", "--consul", "ftp://127.0.0.1:1"], 1, "scheme")


def scenario_acl_tokens():
    pre = "rstest/acl"
    with open(os.path.join(TMP, "bad.token"), "w") as f:
        f.write(BAD_TOKEN + "\n")
    _, err = fails(["node", "add", "a", "127.0.0.1:6379", "--prefix", pre], 1, "HTTP 403",
                   token=False)
    check_in("Permission denied", err, "Consul's message")
    fails(["node", "add", "a", "127.0.0.1:6379", "--prefix", pre,
           "--token-file", os.path.join(TMP, "bad.token")], 1, "ACL not found")
    fails(["ring", "show", "--prefix", pre], 1, "HTTP 403", token=False)
    fails(["ring", "show", "--prefix", pre, "--token-file", os.path.join(TMP, "nope")], 1,
          "token file")
    check_eq(CONSUL.values(pre), {}, "nothing written without a valid token")
    ok(["node", "add", "a", "127.0.0.1:6379", "--prefix", pre], token=False,
       extra_env={"CONSUL_HTTP_TOKEN": MASTER})
    # --token-file wins over CONSUL_HTTP_TOKEN.
    ok(["node", "set", "a", "--weight", "2", "--prefix", pre, "--token-file",
        os.path.join(TMP, "master.token")], token=False, extra_env={"CONSUL_HTTP_TOKEN": BAD_TOKEN})
    check_eq(CONSUL.get(pre + "/nodes/a")[0]["weight"], 2, "written with the token file")
    # A token that may write nodes but not read the config: Consul 1.8 would silently
    # leave the config out of a listing; ring show must refuse rather than show a ring
    # the sidecars do not have.
    rules = 'key_prefix "%s/nodes/" { policy = "write" }' % pre
    st, body, _ = CONSUL.request("PUT", "/v1/acl/policy",
                                 json.dumps({"Name": "rstest-nodes", "Rules": rules}).encode())
    check_eq(st, 200, "create policy (%r)" % body)
    st, body, _ = CONSUL.request("PUT", "/v1/acl/token", json.dumps(
        {"Policies": [{"Name": "rstest-nodes"}]}).encode())
    check_eq(st, 200, "create token (%r)" % body)
    scoped = json.loads(body)["SecretID"]
    CONSUL.put(pre + "/config", {"replicas": 3})
    env = base_env(token=False)
    env["CONSUL_HTTP_TOKEN"] = scoped
    ok(["node", "add", "b", "127.0.0.2:6379", "--prefix", pre], env=env)
    _, err = fails(["ring", "show", "--prefix", pre], 1, "may not read", env=env)
    check(scoped not in err, "scoped token printed")


def scenario_prefixes():
    ok(["node", "add", "p1", "127.0.0.1:6379", "--ring", "rstest-ring"])
    check_eq(CONSUL.get("ringside/rstest-ring/nodes/p1")[0]["address"], "127.0.0.1:6379",
             "--ring NAME")
    ok(["node", "add", "p2", "127.0.0.2:6379"], extra_env={"RINGSIDE_KV_PREFIX": "rstest/envp/"})
    check_eq(CONSUL.get("rstest/envp/nodes/p2")[0]["address"], "127.0.0.2:6379",
             "RINGSIDE_KV_PREFIX")
    ok(["node", "add", "p3", "127.0.0.3:6379", "--prefix", "rstest/slash/"])
    check(CONSUL.get("rstest/slash/nodes/p3")[0] is not None, "--prefix with a trailing /")
    ok(["node", "add", "p4", "127.0.0.4:6379"])
    check(CONSUL.get("ringside/default/nodes/p4")[0] is not None, "default prefix")
    CONSUL.delete_tree("ringside/default")
    CONSUL.delete_tree("ringside/rstest-ring")
    fails(["ring", "show", "--prefix", "a", "--ring", "b"], 2, "exclude")
    fails(["ring", "show", "--prefix", "/abs"], 2, "--prefix")
    fails(["ring", "show", "--prefix", "a b"], 2, "--prefix")


def scenario_usage():
    for args in (["node", "--help"], ["node", "add", "--help"], ["node", "remove", "--help"],
                 ["node", "disable", "--help"], ["node", "enable", "--help"],
                 ["node", "set", "--help"], ["ring", "set", "--help"], ["ring", "show", "--help"],
                 ["ring", "confirm", "--help"], ["--help"]):
        out = ok(args, env={"PATH": os.environ.get("PATH", "/usr/bin")})
        check_in("usage:", out, "ringctl %s" % " ".join(args))
    for args, text in ((["node"], "missing subcommand"),
                       (["node", "frob", "x"], "unknown node subcommand"),
                       (["node", "add", "x"], "expected ID and ADDRESS"),
                       (["node", "add", "x", "127.0.0.1:1", "extra"], "unexpected argument"),
                       (["node", "remove"], "expected an ID"),
                       (["node", "set", "x"], "nothing to set"),
                       (["ring", "set"], "nothing to set"),
                       (["ring", "show", "extra"], "unexpected argument"),
                       (["node", "add", "x", "127.0.0.1:1", "--bogus"], "")):
        fails(args, 2, text)


SCENARIOS = [
    ("node_add", scenario_node_add),
    ("enable_disable", scenario_enable_disable),
    ("node_set", scenario_node_set),
    ("remove_and_missing", scenario_remove_and_missing),
    ("invalid_values", scenario_invalid_values),
    ("ring_set", scenario_ring_set),
    ("ring_show", scenario_ring_show),
    ("ring_confirm", scenario_ring_confirm),
    ("cas_conflicts", scenario_cas_conflicts),
    ("unreachable", scenario_unreachable),
    ("acl_tokens", scenario_acl_tokens),
    ("prefixes", scenario_prefixes),
    ("usage", scenario_usage),
]


def main(argv):
    global RINGCTL, CONSUL, TMP
    if len(argv) != 2:
        print("usage: test_ringctl_consul.py PATH/TO/ringctl", file=sys.stderr)
        return 2
    RINGCTL = os.path.abspath(argv[1])
    H.install_signal_handlers()
    t_all = time.monotonic()
    run = H.Scope()
    TMP = run.new_dir("rs-ringctl-consul")
    with open(os.path.join(TMP, "master.token"), "w") as f:
        f.write(MASTER + "\n")
    if not os.access(H.consul_binary(), os.X_OK):
        print("FAIL setup: no consul at %s (run scripts/install-deps.sh)" % H.consul_binary())
        print("0 passed, 1 failed")
        return 1
    try:
        CONSUL = Agent(run, TMP)
        CONSUL.start()
    except Failure as e:
        print("FAIL setup: %s" % e)
        print("0 passed, 1 failed")
        return 1
    print("consul %s ready in %.1fs" % (CONSUL.url, time.monotonic() - t_all))
    return H.run_scenarios(SCENARIOS, "RS_CONSUL_ONLY", t_all=t_all)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
