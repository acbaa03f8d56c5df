#!/usr/bin/env python3
"""The Consul watcher under faults, end to end: ringside as a real process against real
Consul agents (a 3-server cluster losing its leader and the agent the sidecar talks to;
ACLs with a scoped, a wrong, a missing and a revoked token; HTTPS with the right CA, a
foreign CA, a host name the certificate does not name, and a missing client certificate)
and against tests/tools/fake_consul.py for what a real Consul cannot be made to do (an
index going backwards, 429 with Retry-After, 5xx, truncated bodies, broken JSON,
ACL-filtered results, stale answers, connection resets).

Usage: test_consul_faults.py PATH/TO/ringside PATH/TO/ringctl

Expected placements never come from the daemon under test: they come from `ringctl place`
(the ring library, offline) over the node set the test wrote. A lookup thread keeps asking
MLOOKUP throughout the faults and records every distinct answer in order: it must see only
the rings the test made, in order, and never an error.

Each scenario runs in short directories under /tmp, waits for observable effects (a log
line, a RING field, a Consul leader) with deadlines rather than sleeps, stops exactly the
processes it started by PID (SIGTERM, SIGKILL after a deadline; Consul servers are
SIGKILLed on purpose) and removes its directories, also on failure or a signal.

Environment: RS_DEPS_DIR (default: .deps next to the source tree) holds
consul/usr/bin/consul; CONSUL_BIN overrides it. RS_KEEP_TMP=1 keeps the temp dirs,
RS_FAULTS_ONLY=name[,name] runs only those scenarios. Prints PASS/FAIL per scenario and
"N passed, M failed".
"""

import base64
import json
import os
import re
import select
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import (STOP_DEADLINE, Conn, Failure, RespError, check, check_eq,  # noqa: E402
                     check_in, consul_binary, free_port, new_dir, one_cmd, short, spawn,
                     stop_proc)
from harness import text as decode  # noqa: E402

FAKE_CONSUL = os.path.join(H.TOP, "tests", "tools", "fake_consul.py")
START_DEADLINE = 10.0     # seconds for ringside to answer PING
AGENT_DEADLINE = 30.0     # seconds for Consul to elect a leader / accept requests
EVENT_DEADLINE = 15.0     # seconds for a change or a log line to show
PREFIX = "ringside/t"
KEYS = ["user:%d" % i for i in range(64)] + ["k%d" % i for i in range(64)]

RINGSIDE = None
RINGCTL = None


class PortClash(Exception):
    """A Consul agent lost a race for a port we picked: start again with new ports."""


def wait_for(pred, what, deadline=EVENT_DEADLINE):
    return H.wait_for(pred, what, deadline)


# --------------------------------------------------------------------------------------
# Expected placements (ringctl place, offline) and KV values

def node_value(addr, **kw):
    v = {"address": addr}
    v.update(kw)
    return v


def place(nodes):
    """Answers for KEYS on the ring of nodes ({id: value dict}), from ringctl place."""
    ring = [dict(nodes[nid], id=nid) for nid in sorted(nodes)]
    return tuple(a.decode() for a in H.place(RINGCTL, ring, [k.encode() for k in KEYS]))


def kv_listing(nodes, index=100):
    """A Consul KV listing (GET /v1/kv/<prefix>/?recurse) of nodes."""
    out = []
    for i, nid in enumerate(sorted(nodes)):
        raw = json.dumps(nodes[nid]).encode()
        out.append({"Key": "%s/nodes/%s" % (PREFIX, nid), "Value": base64.b64encode(raw).decode(),
                    "CreateIndex": 5 + i, "ModifyIndex": index, "LockIndex": 0, "Flags": 0})
    return out


# --------------------------------------------------------------------------------------
# HTTP to Consul (no proxies; HTTPS with our CA and client certificate)

def http(url, method="GET", data=None, token=None, ctx=None, timeout=10):
    """(status, body bytes, headers); (0, error text, None) when nothing answered."""
    if data is not None and not isinstance(data, bytes):
        data = (data if isinstance(data, str) else json.dumps(data)).encode()
    try:
        return H.http_request(url, method, data, token, ctx, timeout)
    except (OSError, ValueError) as e:
        return 0, str(e).encode(), None


class Agent:
    """One Consul agent process; stopped by PID."""

    def __init__(self, workdir, name, argv, url, ctx=None):
        self.dir = workdir
        self.name = name
        self.argv = argv
        self.url = url          # http(s)://host:port
        self.ctx = ctx
        self.proc = None
        self.log_path = os.path.join(workdir, "consul-%s.log" % name)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = spawn(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=self.log,
                          stderr=subprocess.STDOUT, start_new_session=True)
        self.log.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: the crash the scenario is about."""
        self.proc.kill()
        self.proc.wait()

    def log_tail(self, n=1500):
        return H.file_tail(self.log_path, n)

    def check_running(self):
        if self.proc.poll() is not None:
            tail = self.log_tail()
            if "address already in use" in tail:
                raise PortClash(tail)
            raise Failure("consul %s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                            tail))

    def req(self, path, method="GET", data=None, token=None, timeout=10):
        return http(self.url + path, method, data, token, self.ctx, timeout)

    def leader(self):
        """The raft leader this agent knows ("ip:port"), "" if none or unreachable."""
        st, body, _ = self.req("/v1/status/leader", timeout=2)
        if st != 200:
            return ""
        try:
            return json.loads(body) or ""
        except ValueError:
            return ""

    def put(self, key, value, token=None, deadline=EVENT_DEADLINE):
        """PUT a KV value, retrying while the cluster has no leader (5xx)."""
        data = json.dumps(value) if not isinstance(value, (bytes, str)) else value
        last = []

        def attempt():
            st, body, _ = self.req("/v1/kv/" + key, "PUT", data, token)
            last[:] = [st, body]
            if st == 200 and body.strip() == b"true":
                return True
            if st in (0, 500):
                return False
            raise Failure("PUT %s on %s: HTTP %s %r" % (key, self.url, st, body[:200]))
        try:
            wait_for(attempt, "PUT %s on %s" % (key, self.url), deadline)
        except Failure as e:
            raise Failure("%s (last answer %r)" % (e, last))


def dev_agent(d, extra_hcl="", https=False, ctx=None):
    """A `consul agent -dev` on 127.0.0.1 with free ports and extra config; started."""
    for _ in range(3):
        taken = set()
        ports = [free_port(taken) for _ in range(4)]
        conf = os.path.join(d, "agent.hcl")
        with open(conf, "w") as f:
            f.write("disable_update_check = true\n" + extra_hcl)
        argv = [consul_binary(), "agent", "-dev", "-node", "dev", "-bind", "127.0.0.1",
                "-client", "127.0.0.1", "-dns-port", "-1", "-grpc-port", "-1",
                "-serf-lan-port", str(ports[1]), "-serf-wan-port", str(ports[2]),
                "-server-port", str(ports[3]), "-config-file", conf, "-log-level", "info"]
        if https:
            with open(conf, "a") as f:
                f.write("ports {\n  http = -1\n  https = %d\n}\n" % ports[0])
            url = "https://127.0.0.1:%d" % ports[0]
        else:
            argv += ["-http-port", str(ports[0])]
            url = "http://127.0.0.1:%d" % ports[0]
        a = Agent(d, "dev", argv, url, ctx)
        a.start()
        a.https_port = ports[0]
        try:
            def has_leader():
                a.check_running()
                return a.leader()
            wait_for(has_leader, "the dev agent's leader", AGENT_DEADLINE)
            return a
        except PortClash:
            stop_proc(a.proc)
    raise Failure("could not start a dev agent: ports kept being taken")


# --------------------------------------------------------------------------------------
# ringside

def sidecar_config(d, consul, ring_name="t"):
    return {
        "ring": {"name": ring_name},
        "listen": {"socket": os.path.join(d, "s.sock")},
        "http": {"enabled": False},
        "state_dir": os.path.join(d, "state"),
        "membership": {"source": "consul-kv",
                       "consul": dict({"kv_prefix": PREFIX, "wait": "5s", "max_stale": "10s"},
                                      **consul)},
        "log": {"level": "debug"},
    }


class Sidecar:
    def __init__(self, d, consul, env=None, name="ringside"):
        self.dir = d
        self.cfg = sidecar_config(d, consul)
        self.sock = self.cfg["listen"]["socket"]
        self.cfg_path = os.path.join(d, "%s.json" % name)
        self.log_path = os.path.join(d, "%s.log" % name)
        self.env = H.clean_env(**(env or {}))
        self.proc = None
        os.makedirs(self.cfg["state_dir"], exist_ok=True)
        with open(self.cfg_path, "w") as f:
            json.dump(self.cfg, f, indent=1)
        r = subprocess.run([RINGSIDE, "--check-config", self.cfg_path], capture_output=True,
                           text=True, timeout=30, env=self.env)
        check_eq(r.returncode, 0, "ringside --check-config %s (%s)" % (self.cfg_path,
                                                                        r.stderr.strip()))

    def start(self):
        log = open(self.log_path, "ab")
        try:
            self.proc = spawn([RINGSIDE, "--config", self.cfg_path], stdin=subprocess.DEVNULL,
                              stdout=log, stderr=log, env=self.env)
        finally:
            log.close()

        def answers():
            if self.proc.poll() is not None:
                raise Failure("ringside exited with %s:\n%s" % (self.proc.returncode,
                                                                self.log_text()[-2000:]))
            try:
                return one_cmd(self.sock, "PING") == "PONG"
            except (OSError, H.Closed):
                return False
        wait_for(answers, "ringside to answer PING", START_DEADLINE)
        return self

    def stop(self):
        """Graceful stop; it must exit 0."""
        rc = stop_proc(self.proc)
        check_eq(rc, 0, "ringside exit code after SIGTERM")

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def events(self, name=None):
        out = []
        for line in self.log_text().splitlines():
            e = H.parse_log_line(line)
            if name is None or e.get("event") == name:
                out.append(e)
        return out

    def wait_event(self, name, pred=lambda e: True, what=None, deadline=EVENT_DEADLINE, after=0):
        """The first event name (index >= after among those events) that satisfies pred."""
        def find():
            for e in self.events(name)[after:]:
                if pred(e):
                    return e
            return None
        try:
            return wait_for(find, what or "event=%s" % name, deadline)
        except Failure as e:
            raise Failure("%s; log tail:\n%s" % (e, self.log_text()[-2500:]))

    def ring(self):
        flat = one_cmd(self.sock, "RING")
        check(isinstance(flat, list) and len(flat) % 2 == 0, "RING answered %r" % (flat,))
        return {decode(flat[i]): decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    def info(self):
        text = decode(one_cmd(self.sock, "INFO"))
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def answers(self):
        r = one_cmd(self.sock, "MLOOKUP", *KEYS)
        if not isinstance(r, list):
            return r
        return tuple(decode(x) for x in r)

    def wait_answers(self, want, what, deadline=EVENT_DEADLINE):
        try:
            wait_for(lambda: self.answers() == want, what, deadline)
        except Failure as e:
            raise Failure("%s; RING %r; log tail:\n%s" % (e, self.ring(),
                                                          self.log_text()[-2500:]))

    def check_no_ring(self, what):
        """NORING on lookups and an empty RING: never an empty ring that answers."""
        r = one_cmd(self.sock, "LOOKUP", "user:1")
        check(isinstance(r, RespError) and r.startswith("NORING"),
              "%s: LOOKUP answered %r, expected -NORING" % (what, r))
        ring = self.ring()
        check_eq((ring.get("fingerprint"), ring.get("nodes")), ("", 0), "%s: RING" % what)


class Lookups(threading.Thread):
    """Asks MLOOKUP KEYS over and over; records the distinct answers in order and every
    error. Paced by a short pause so that it does not starve the daemon of CPU."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock = sock
        self.runs = []      # [[answers, count], ...] in order
        self.errors = []
        self.count = 0
        self.halt = threading.Event()
        H.current().on_close(self.stop)
        self.start()

    def run(self):
        conn = None
        while not self.halt.is_set():
            try:
                if conn is None:
                    conn = Conn(self.sock, timeout=5.0)
                r = conn.cmd("MLOOKUP", *KEYS)
                if not isinstance(r, list):
                    self.errors.append("MLOOKUP answered %r" % (r,))
                else:
                    t = tuple(decode(x) for x in r)
                    if self.runs and self.runs[-1][0] == t:
                        self.runs[-1][1] += 1
                    else:
                        self.runs.append([t, 1])
                self.count += 1
            except (OSError, H.Closed) as e:
                self.errors.append("MLOOKUP failed: %r" % e)
                if conn is not None:
                    conn.close()
                conn = None
            self.halt.wait(0.003)
        if conn is not None:
            conn.close()

    def stop(self):
        self.halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(10)

    def check(self, rings, what):
        """Every answer was one of rings (named answer tuples), in that order, no error."""
        check(len({v for _, v in rings}) == len(rings),
              "%s: the expected rings do not all differ on KEYS" % what)
        check(not self.errors, "%s: lookups failed %d times, first: %s"
              % (what, len(self.errors), self.errors[:3]))
        names = {v: k for k, v in rings}
        seen = [names.get(t, "unexpected answers %s" % short(t, 120)) for t, _ in self.runs]
        check_eq(seen, [k for k, _ in rings], "%s: the rings lookups saw, in order" % what)


def secrets_absent(paths, secrets, what):
    for p in paths:
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for s in secrets:
            check(s.encode() not in data, "%s: a token appears in %s" % (what, p))


def state_files(d):
    sd = os.path.join(d, "state")
    return [os.path.join(sd, n) for n in os.listdir(sd)] if os.path.isdir(sd) else []


# --------------------------------------------------------------------------------------
# Scenario 1: leader loss and agent failover in a 3-server cluster

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
CLUSTER_HCL = """disable_update_check = true
performance {
  raft_multiplier = 1
}
autopilot {
  cleanup_dead_servers = false
  server_stabilization_time = "1s"
  last_contact_threshold = "1s"
}
"""


def start_cluster(d):
    """Three servers on 127.0.0.1-3, the same ports on each; returns the agents once there
    is a leader and every server is healthy."""
    for _ in range(3):
        taken = set()
        http_p, serf_lan, serf_wan, server = (free_port(taken, HOSTS) for _ in range(4))
        conf = os.path.join(d, "cluster.hcl")
        with open(conf, "w") as f:
            f.write(CLUSTER_HCL)
        agents = []
        for i, h in enumerate(HOSTS):
            data = os.path.join(d, "n%d" % (i + 1))
            os.makedirs(data, exist_ok=True)
            argv = [consul_binary(), "agent", "-server", "-bootstrap-expect", "3",
                    "-node", "n%d" % (i + 1), "-bind", h, "-client", h, "-data-dir", data,
                    "-http-port", str(http_p), "-dns-port", "-1", "-grpc-port", "-1",
                    "-serf-lan-port", str(serf_lan), "-serf-wan-port", str(serf_wan),
                    "-server-port", str(server), "-retry-interval", "1s",
                    "-config-file", conf, "-log-level", "info"]
            for other in HOSTS:
                if other != h:
                    argv += ["-retry-join", "%s:%d" % (other, serf_lan)]
            a = Agent(d, "n%d" % (i + 1), argv, "http://%s:%d" % (h, http_p))
            a.raft = "%s:%d" % (h, server)
            agents.append(a)
        for a in agents:
            a.start()
        try:
            wait_healthy(agents, agents)
            return agents
        except PortClash:
            for a in agents:
                stop_proc(a.proc)
    raise Failure("could not start the cluster: ports kept being taken")


def wait_healthy(agents, live):
    """Until the live agents agree on a live leader and autopilot calls all 3 healthy."""
    state = {}

    def ok():
        for a in agents:
            if a in live:
                a.check_running()
        leaders = {a.leader() for a in live}
        if len(leaders) != 1 or "" in leaders:
            state["why"] = "leaders %r" % leaders
            return False
        st, body, _ = live[0].req("/v1/operator/autopilot/health", timeout=2)
        if st != 200:
            state["why"] = "autopilot health HTTP %s" % st
            return False
        h = json.loads(body)
        servers = h.get("Servers") or []
        state["why"] = "autopilot %s" % short(h, 500)
        return len(servers) == len(agents) and all(s.get("Healthy") for s in servers) \
            and h.get("Healthy")
    try:
        wait_for(ok, "a healthy 3-server cluster", AGENT_DEADLINE)
    except Failure as e:
        raise Failure("%s (%s)" % (e, state.get("why")))


def wait_new_leader(live, dead_raft):
    """A leader every live agent agrees on, other than dead_raft."""
    def ok():
        for a in live:
            a.check_running()
        leaders = {a.leader() for a in live}
        if len(leaders) == 1:
            lead = leaders.pop()
            return lead if lead and lead != dead_raft else None
        return None
    return wait_for(ok, "a new leader among %s" % [a.name for a in live], AGENT_DEADLINE)


def scenario_cluster_failover():
    d = new_dir("rsc")
    agents = start_cluster(d)
    by_raft = {a.raft: a for a in agents}
    leader = wait_for(lambda: by_raft.get(agents[0].leader()), "the cluster's leader")
    followers = [a for a in agents if a is not leader]
    # The sidecar starts on a follower, so that losing the leader and losing the agent it
    # talks to are two separate events.
    order = followers + [leader]
    nodes = {"cache-a": node_value("127.0.0.1:6379"), "cache-b": node_value("127.0.0.2:6379"),
             "cache-c": node_value("127.0.0.3:6379")}
    for nid, v in nodes.items():
        leader.put("%s/nodes/%s" % (PREFIX, nid), v)
    ring_a = place(nodes)

    sd = new_dir("rss")
    sc = Sidecar(sd, {}, env={"CONSUL_HTTP_ADDR": ",".join(a.url for a in order)}).start()
    sc.wait_answers(ring_a, "the first ring from the cluster")
    r = sc.ring()
    check_eq((r["source"], r["nodes"]), ("consul-kv", 3), "RING source and nodes")
    check(r["consul_index"] > 0, "RING consul_index %r" % r["consul_index"])
    started = sc.wait_event("consul_watch_started")
    check_eq(started.get("agents"), "3", "consul_watch_started agents")
    check_eq(sc.info().get("kv_agent"), order[0].url, "INFO kv_agent before the faults")
    epoch_a = r["epoch"]
    look = Lookups(sc.sock)
    wait_for(lambda: look.count > 0, "the lookup thread's first answer")

    # 1. SIGKILL the leader; lookups keep answering; after the election a change made
    # through a surviving server reaches the sidecar (through its follower agent).
    n0 = look.count
    leader.kill()
    survivors = [a for a in agents if a is not leader]
    wait_for(lambda: look.count > n0 + 5, "lookups while the leader is gone")
    new_lead = wait_new_leader(survivors, leader.raft)
    check(new_lead != leader.raft, "the leader changed")
    nodes["cache-d"] = node_value("127.0.0.4:6379")
    survivors[-1].put("%s/nodes/cache-d" % PREFIX, nodes["cache-d"])
    ring_b = place(nodes)
    sc.wait_answers(ring_b, "the change made after the leader's loss")
    r = sc.ring()
    check_eq(r["nodes"], 4, "RING nodes after the leader's loss")
    check(r["epoch"] > epoch_a, "RING epoch %r did not go up from %r" % (r["epoch"], epoch_a))
    epoch_b = r["epoch"]

    # 2. Bring the old leader back, then SIGKILL the agent the sidecar talks to: the watch
    # fails over to the next address and a further change still arrives.
    leader.start()
    wait_healthy(agents, agents)
    cur_url = sc.info().get("kv_agent")
    cur = [a for a in agents if a.url == cur_url]
    check(len(cur) == 1, "INFO kv_agent %r is none of the agents" % cur_url)
    cur = cur[0]
    n_err = len(sc.events("consul_error"))
    n1 = look.count
    cur.kill()
    live = [a for a in agents if a is not cur]
    wait_for(lambda: look.count > n1 + 5, "lookups while the sidecar's agent is gone")
    wait_new_leader(live, cur.raft)
    err = sc.wait_event("consul_error", lambda e: e.get("agent") == cur.url,
                        "a consul_error naming the dead agent %s" % cur.url, after=n_err)
    check(err.get("reason"), "consul_error without a reason: %r" % err)
    nodes["cache-b"] = node_value("127.0.0.2:6379", enabled=False)
    live[0].put("%s/nodes/cache-b" % PREFIX, nodes["cache-b"])
    ring_c = place(nodes)
    sc.wait_answers(ring_c, "the change made after the sidecar's agent died")
    info = sc.info()
    check(info.get("kv_agent") not in ("", cur.url),
          "INFO kv_agent %r: the watch did not fail over from %s" % (info.get("kv_agent"),
                                                                   cur.url))
    check_eq(info.get("kv_last_error"), "", "INFO kv_last_error after the failover")
    r = sc.ring()
    check(r["epoch"] > epoch_b, "RING epoch %r did not go up from %r" % (r["epoch"], epoch_b))
    check_eq((r["nodes"], r["enabled"]), (4, 3), "RING nodes/enabled at the end")

    look.stop()
    look.check([("first ring", ring_a), ("after leader loss", ring_b),
                ("after failover", ring_c)], "cluster")
    sc.stop()


# --------------------------------------------------------------------------------------
# Scenario 2: ACLs

ACL_HCL = """acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = false
}
"""


def scenario_acl_tokens():
    d = new_dir("rsa")
    agent = dev_agent(d, ACL_HCL)

    # Bootstrap a management token (retry until the ACL system is up).
    boot = {}

    def bootstrap():
        st, body, _ = agent.req("/v1/acl/bootstrap", "PUT")
        if st == 200:
            boot.update(json.loads(body))
            return True
        return False
    wait_for(bootstrap, "PUT /v1/acl/bootstrap to answer 200", AGENT_DEADLINE)
    mgmt = boot["SecretID"]
    st, body, _ = agent.req("/v1/acl/policy", "PUT", {
        "Name": "ringside-read",
        "Rules": 'key_prefix "%s/" { policy = "read" }' % PREFIX}, mgmt)
    check_eq(st, 200, "creating the read policy (%r)" % body[:200])
    st, body, _ = agent.req("/v1/acl/token", "PUT", {
        "Description": "ringside", "Policies": [{"Name": "ringside-read"}]}, mgmt)
    check_eq(st, 200, "creating the sidecar's token (%r)" % body[:200])
    tok = json.loads(body)
    good, accessor = tok["SecretID"], tok["AccessorID"]
    bad = "00000000-0000-4000-8000-00000000dead"

    nodes = {"cache-a": node_value("127.1.0.1:6379"), "cache-b": node_value("127.1.0.2:6379"),
             "cache-c": node_value("127.1.0.3:6379")}
    for nid, v in nodes.items():
        agent.put("%s/nodes/%s" % (PREFIX, nid), v, token=mgmt)
    # A key the read token must not see does not disturb anything either.
    agent.put("ringside/other/nodes/x", node_value("127.9.9.9:1"), token=mgmt)
    ring_a = place(nodes)
    tokdir = new_dir("rst")
    files = {}
    for name, secret in (("good", good), ("bad", bad)):
        files[name] = os.path.join(tokdir, name)
        with open(files[name], "w") as f:
            f.write(secret + "\n")
        os.chmod(files[name], 0o600)

    # The scoped token reads the ring.
    gd = new_dir("rsg")
    sg = Sidecar(gd, {"address": agent.url, "token_file": files["good"], "wait": "1s"}).start()
    sg.wait_answers(ring_a, "the ring read with the scoped token")
    check_eq(sg.wait_event("consul_watch_started").get("token"), "true",
             "consul_watch_started token")
    fp_a = sg.ring()["fingerprint"]

    # A wrong token, no snapshot: a clear error, no ring (never an empty one).
    bd = new_dir("rsb")
    sb = Sidecar(bd, {"address": agent.url, "token_file": files["bad"]}).start()
    e = sb.wait_event("consul_error", lambda e: "403" in e.get("reason", ""),
                      "consul_error with HTTP 403 (wrong token)")
    check_in("permission denied", e["reason"], "the wrong token's consul_error reason")
    sb.check_no_ring("wrong token")

    # A wrong token with the good sidecar's snapshot: the snapshot keeps serving.
    sg.stop()
    sw = Sidecar(gd, {"address": agent.url, "token_file": files["bad"]},
                 name="wrong-token").start()
    sw.wait_event("state_loaded")
    sw.wait_event("consul_error", lambda e: "403" in e.get("reason", ""),
                  "consul_error with HTTP 403 (wrong token, snapshot)")
    r = sw.ring()
    check_eq((r["fingerprint"], r["source"]), (fp_a, "snapshot"),
             "RING with a wrong token over a snapshot")
    check_eq(sw.answers(), ring_a, "lookups from the snapshot with a wrong token")
    sw.stop()

    # No token at all: Consul 1.8 answers the anonymous listing with 404 (everything
    # filtered away), which looks like an empty prefix: the sidecar must not build a ring
    # from it, with or without a snapshot.
    nd = new_dir("rsn")
    sn = Sidecar(nd, {"address": agent.url}).start()
    check_eq(sn.wait_event("consul_watch_started").get("token"), "false",
             "consul_watch_started token (none)")
    sn.wait_event("update_held", lambda e: "no nodes" in e.get("reason", ""),
                  "update_held (no nodes) for the anonymous listing")
    sn.check_no_ring("no token")
    sn.stop()
    sa = Sidecar(gd, {"address": agent.url}, name="anonymous").start()
    sa.wait_event("update_held", lambda e: "no nodes" in e.get("reason", ""),
                  "update_held (no nodes) for the anonymous listing over a snapshot")
    check_eq(sa.ring()["fingerprint"], fp_a, "RING fingerprint, no token over a snapshot")
    check_eq(sa.answers(), ring_a, "lookups, no token over a snapshot")
    sa.stop()

    # The good token again, then revoked while the sidecar runs: a 403 error, the ring
    # stays, and a change written afterwards is not seen.
    sg2 = Sidecar(gd, {"address": agent.url, "token_file": files["good"], "wait": "1s"},
                  name="revoked").start()
    sg2.wait_event("state_loaded")
    wait_for(lambda: sg2.ring()["source"] == "consul-kv", "the snapshot confirmed by Consul")
    look = Lookups(sg2.sock)
    n_err = len(sg2.events("consul_error"))
    st, body, _ = agent.req("/v1/acl/token/" + accessor, "DELETE", token=mgmt)
    check_eq(st, 200, "deleting the sidecar's token (%r)" % body[:200])
    sg2.wait_event("consul_error", lambda e: "403" in e.get("reason", ""),
                   "consul_error with HTTP 403 after the revocation", after=n_err)
    agent.put("%s/nodes/cache-d" % PREFIX, node_value("127.1.0.4:6379"), token=mgmt)
    # The next request may have left before the change; the one after it did not. Both
    # fail, and the ring is still the one the token could read.
    n_err = len(sg2.events("consul_error"))
    sg2.wait_event("consul_error", lambda e: "403" in e.get("reason", ""),
                   "a 403 for a request sent after the change", after=n_err + 1, deadline=40)
    check(all("403" in e.get("reason", "") for e in sg2.events("consul_error")),
          "every consul_error after the revocation is a 403")
    r = sg2.ring()
    check_eq((r["fingerprint"], r["nodes"]), (fp_a, 3), "RING after the revocation")
    look.stop()
    look.check([("scoped token's ring", ring_a)], "revoked token")
    sg2.stop()

    logs = [s.log_path for s in (sg, sb, sw, sn, sa, sg2)]
    secrets_absent(logs + state_files(gd) + state_files(bd) + state_files(nd),
                   [good, bad, mgmt], "ACL")


# --------------------------------------------------------------------------------------
# Scenario 3: TLS

def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    check_eq(r.returncode, 0, "openssl %s (%s)" % (" ".join(args[:2]), r.stderr.strip()[-300:]))


def make_pki(d):
    """A CA, a server certificate for IP 127.0.0.1, a client certificate, and a foreign CA
    that signed nothing of ours. EC P-256 keys (fast)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue"):
        openssl("req", "-x509", *ec, "-keyout", "%s.key" % ca, "-out", "%s.pem" % ca,
                "-days", "2", "-subj", "/CN=ringside test %s" % ca, cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage = clientAuth\n")
    for who, cn in (("server", "server.dc1.consul"), ("client", "ringside client")):
        openssl("req", *ec, "-keyout", "%s.key" % who, "-out", "%s.csr" % who,
                "-subj", "/CN=%s" % cn, cwd=d)
        openssl("x509", "-req", "-in", "%s.csr" % who, "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "%s.ext" % who,
                "-out", "%s.pem" % who, cwd=d)
    return {k: os.path.join(d, k) for k in ("ca.pem", "rogue.pem", "server.pem", "server.key",
                                            "client.pem", "client.key")}


def scenario_tls():
    d = new_dir("rsl")
    pki = make_pki(d)
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    ctx.load_cert_chain(pki["client.pem"], pki["client.key"])
    hcl = ('ca_file = "%s"\ncert_file = "%s"\nkey_file = "%s"\n'
           'verify_incoming_https = true\n' % (pki["ca.pem"], pki["server.pem"],
                                               pki["server.key"]))
    agent = dev_agent(d, hcl, https=True, ctx=ctx)
    nodes = {"cache-a": node_value("127.2.0.1:6379"), "cache-b": node_value("127.2.0.2:6379")}
    for nid, v in nodes.items():
        agent.put("%s/nodes/%s" % (PREFIX, nid), v)
    ring_a = place(nodes)
    client = {"cert_file": pki["client.pem"], "key_file": pki["client.key"]}

    # The right CA and the client certificate, from the config file.
    s1 = Sidecar(new_dir("rs1"), dict({"address": agent.url, "ca_file": pki["ca.pem"]},
                                      **client)).start()
    # The same from Consul's environment variables, with no address in the file.
    s2 = Sidecar(new_dir("rs2"), {}, env={
        "CONSUL_HTTP_ADDR": "127.0.0.1:%d" % agent.https_port, "CONSUL_HTTP_SSL": "true",
        "CONSUL_CACERT": pki["ca.pem"], "CONSUL_CLIENT_CERT": pki["client.pem"],
        "CONSUL_CLIENT_KEY": pki["client.key"]}, name="env").start()
    # A CA that did not sign the server's certificate.
    s3 = Sidecar(new_dir("rs3"), dict({"address": agent.url, "ca_file": pki["rogue.pem"]},
                                      **client), name="rogue").start()
    # The right CA, but a host name the certificate does not name (it names 127.0.0.1).
    s4 = Sidecar(new_dir("rs4"), dict({"address": "https://localhost:%d" % agent.https_port,
                                       "ca_file": pki["ca.pem"]}, **client),
                 name="hostname").start()
    # The right CA, no client certificate: the agent requires one.
    s5 = Sidecar(new_dir("rs5"), {"address": agent.url, "ca_file": pki["ca.pem"]},
                 name="nocert").start()

    s1.wait_answers(ring_a, "the ring over HTTPS (config file)")
    s2.wait_answers(ring_a, "the ring over HTTPS (environment)")
    check_eq(s2.info().get("kv_agent"), agent.url, "INFO kv_agent from CONSUL_HTTP_ADDR")
    e = s3.wait_event("consul_error", lambda e: "certificate" in e.get("reason", "").lower(),
                      "consul_error about the certificate (foreign CA)")
    check_in(agent.url, e.get("agent", ""), "the foreign CA's consul_error agent")
    s4.wait_event("consul_error", lambda e: "localhost" in e.get("reason", "") or
                  "subject" in e.get("reason", "").lower() or
                  "certificate" in e.get("reason", "").lower(),
                  "consul_error about the host name")
    s5.wait_event("consul_error", lambda e: e.get("reason"),
                  "consul_error without a client certificate")
    # Each failing sidecar retried at least once and still has no ring.
    for s, what in ((s3, "foreign CA"), (s4, "host name mismatch"), (s5, "no client cert")):
        wait_for(lambda: len(s.events("consul_error")) >= 2, "a retry (%s)" % what)
        s.check_no_ring(what)
        check(not s.events("ring_change"), "%s: a ring_change was logged" % what)
    for s in (s1, s2, s3, s4, s5):
        s.stop()


# --------------------------------------------------------------------------------------
# Scenario 4: faults only a fake Consul produces

def scenario_fake_faults():
    d = new_dir("rsf")
    token = "5b3c1e0f-aaaa-4bbb-8ccc-0123456789ab"
    tok_path = os.path.join(d, "token")
    with open(tok_path, "w") as f:
        f.write(token + "\n")
    a = {"cache-a": node_value("127.3.0.1:6379"), "cache-b": node_value("127.3.0.2:6379"),
         "cache-c": node_value("127.3.0.3:6379")}
    fewer = {k: v for k, v in a.items() if k != "cache-c"}
    other = dict(fewer, **{"cache-x": node_value("127.3.0.99:6379")})
    final = dict(fewer, **{"cache-d": node_value("127.3.0.4:6379")})
    ok = {"last_contact": 0, "known_leader": True}
    # One response per request, in order (each request is recorded at /_requests).
    script = [
        dict(ok, index=10, json=kv_listing(a)),                  # 0 the first ring
        dict(ok, index=12, json=kv_listing(a)),                  # 1 same content, index up
        dict(ok, index=5, json=kv_listing(a)),                   # 2 index backwards: reset
        dict(ok, index=6, json=kv_listing(a), delay_ms=2500),    # 3 (no index) held a while
        {"status": 429, "retry_after": 1, "body": "rate limit exceeded"},     # 4
        {"status": 500, "body": "rpc error making call: No cluster leader"},  # 5
        dict(ok, index=20, json=kv_listing(other), action="truncate"),        # 6
        dict(ok, index=21, action="garbage"),                                 # 7
        dict(ok, index=22, json=kv_listing(fewer), filtered=True),            # 8
        {"status": 200, "json": kv_listing(other)},                           # 9 no index
        {"index": 23, "last_contact": 20000, "json": kv_listing(other)},      # 10 too stale
        dict(ok, index=24, json=kv_listing(a)),                  # 11 asked without ?stale
        {"action": "reset"},                                                  # 12
        {"status": 502},                                                      # 13
        dict(ok, index=25, json={"not": "a listing"}),                        # 14
        dict(ok, index=0, json=kv_listing(a)),                   # 15 index 0: clamp, reset
        dict(ok, index=30, json=kv_listing(final)),              # 16 the next good ring
    ]
    script_path = os.path.join(d, "script.json")
    with open(script_path, "w") as f:
        json.dump({"paths": {"/v1/kv/%s/" % PREFIX: script}}, f)
    fake = spawn([sys.executable, FAKE_CONSUL, "--script", script_path],
                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    end = time.monotonic() + START_DEADLINE
    line = b""
    fd = fake.stdout.fileno()
    while time.monotonic() < end and b"\n" not in line:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            c = os.read(fd, 256)
            if not c:
                break
            line += c
    m = re.match(rb"PORT (\d+)\r?\n", line)
    check(m, "fake_consul did not print its port (got %r)" % line)
    port = int(m.group(1))
    url = "http://127.0.0.1:%d" % port

    ring_a, ring_final = place(a), place(final)
    sc = Sidecar(d, {"address": url, "token_file": tok_path}).start()
    sc.wait_answers(ring_a, "the first ring from the fake agent")
    look = Lookups(sc.sock)
    fp_a = sc.ring()["fingerprint"]
    epoch_a = sc.ring()["epoch"]
    # The backwards index shows in RING while the answer after it is held back.
    wait_for(lambda: sc.ring()["consul_index"] == 5,
             "RING consul_index 5 (the index that went backwards)")
    check_eq((sc.ring()["fingerprint"], sc.ring()["epoch"]), (fp_a, epoch_a),
             "RING fingerprint/epoch after the backwards index")
    sc.wait_answers(ring_final, "the good listing after the faults", deadline=40)
    look.stop()
    look.check([("first ring", ring_a), ("final ring", ring_final)], "fake faults")
    r = sc.ring()
    check_eq((r["consul_index"], r["epoch"], r["nodes"]), (30, epoch_a + 1, 3),
             "RING consul_index/epoch/nodes at the end")

    # Exactly two ring changes: the first ring and the final one.
    changes = sc.events("ring_change")
    check_eq(len(changes), 2, "ring_change events (%r)" % changes)
    check_eq(changes[1].get("added"), "cache-d", "the final ring_change added")
    check_eq(changes[1].get("removed"), "cache-c", "the final ring_change removed")

    # Every fault was reported, in order, before the final ring.
    log = sc.events()
    last = [i for i, e in enumerate(log) if e.get("event") == "ring_change"][-1]
    faults = [(e.get("event"), e.get("reason", "")) for e in log[:last]
              if e.get("event") in ("consul_error", "update_rejected")]
    expected = [
        ("consul_error", "HTTP 429"),
        ("consul_error", "HTTP 500"),
        ("consul_error", "transfer closed"),       # the truncated body
        ("update_rejected", "KV listing"),         # broken JSON
        ("consul_error", "filtered by ACLs"),
        ("consul_error", "X-Consul-Index"),
        ("consul_error", "stale answer"),
        # A TCP RST. curl may instead retry a request whose reused connection died
        # before any byte came back, on a fresh connection: then the 502 answers it.
        ("consul_error?", ("reset", "select/poll")),
        ("consul_error", "HTTP 502"),
        ("update_rejected", "must be a JSON array"),
    ]
    got = list(faults)
    for want_ev, want in expected:
        optional = want_ev.endswith("?")
        want_ev = want_ev.rstrip("?")
        want = want if isinstance(want, tuple) else (want,)
        ev, reason = got[0] if got else (None, "")
        if ev == want_ev and any(w.lower() in reason.lower() for w in want):
            got.pop(0)
            continue
        check(optional, "expected %s mentioning %s, got %s %r (all: %s)"
              % (want_ev, " or ".join(map(repr, want)), ev, reason, short(faults, 2000)))
    check(not got, "unexpected lines before the final ring: %s" % short(got, 1000))
    for e in log:
        if e.get("event") == "consul_error":
            check_eq(e.get("agent"), url, "consul_error agent")

    # The requests as the fake agent saw them.
    st, body, _ = http(url + "/_requests")
    check_eq(st, 200, "GET /_requests")
    reqs = [q for q in json.loads(body) if q["path"] == "/v1/kv/%s/" % PREFIX]
    check(len(reqs) >= len(script), "%d requests for %d scripted answers" % (len(reqs),
                                                                              len(script)))
    for i, q in enumerate(reqs):
        hdr = {k.lower(): v for k, v in q["headers"].items()}
        check_eq(hdr.get("x-consul-token"), token, "request %d X-Consul-Token" % i)
        check("token" not in q["params"], "request %d carries the token in its URL" % i)
        check_in("recurse", q["params"], "request %d parameters" % i)
        check_eq(q["params"].get("wait"), ["5000ms"], "request %d wait" % i)
        for v in q["params"].get("index", []):
            check(v.isdigit() and int(v) >= 1, "request %d index=%r (below 1)" % (i, v))
    idx = [q["params"].get("index", [None])[0] for q in reqs[:len(script) + 1]]
    check_eq(idx[:4], [None, "10", "12", None], "index of requests 0-3 (3: after the reset)")
    check_eq(idx[4], "6", "index of request 4 (after the reset)")
    check_eq(idx[16], None, "index of request 16 (after X-Consul-Index: 0)")
    if len(idx) > 17:
        check_eq(idx[17], "30", "index of request 17")
    stale = ["stale" in q["params"] for q in reqs[:len(script)]]
    check_eq(stale[11], False, "request 11 (after a too stale answer) asks the leader")
    check(all(stale[:11]) and all(stale[12:]), "?stale on every other request: %r" % stale)
    gap = reqs[5]["t"] - reqs[4]["t"]
    check(gap >= 0.95, "Retry-After: 1 not honoured: the retry came after %.3fs" % gap)

    info = sc.info()
    check_eq(info.get("kv_last_error"), "", "INFO kv_last_error at the end")
    # 429, 500, truncated, filtered, no index, stale, 502 (and the RST, unless retried).
    check(int(info.get("kv_errors", "0")) >= 7, "INFO kv_errors %r" % info.get("kv_errors"))
    sc.stop()
    secrets_absent([sc.log_path] + state_files(d), [token], "fake")
    stop_proc(fake)


SCENARIOS = [
    ("cluster_failover", scenario_cluster_failover),
    ("acl_tokens", scenario_acl_tokens),
    ("tls", scenario_tls),
    ("fake_faults", scenario_fake_faults),
]


def main(argv):
    global RINGSIDE, RINGCTL
    if len(argv) != 3:
        print("usage: test_consul_faults.py PATH/TO/ringside PATH/TO/ringctl", file=sys.stderr)
        return 2
    RINGSIDE, RINGCTL = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    H.install_signal_handlers()
    if not os.access(consul_binary(), os.X_OK):
        print("FAIL: no consul at %s (scripts/install-deps.sh installs it)" % consul_binary())
        print("0 passed, 1 failed")
        return 1
    return H.run_scenarios(SCENARIOS, "RS_FAULTS_ONLY", stop_deadline=STOP_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
