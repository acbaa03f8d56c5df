#!/usr/bin/env python3
"""The deployment files: configs/ (ringside configs, Consul service definitions, the KV
seed, the systemd unit), the Helm chart (helm/ringside) and the Dockerfile.

Usage: test_deploy.py PATH/TO/ringside        (ringctl is taken from the same directory)

Checks, each printed PASS/FAIL (SKIP only where a tool cannot run here):
  consul_validate   `consul validate` accepts a config dir holding the service
                    definitions of configs/ (and rejects one with a broken check)
  check_configs     every ringside config in configs/*.json passes `ringside
                    --check-config`; files are told apart by their shape (a "service"
                    object: service definition; a list of key/flags/value: KV seed)
  services_register the service definitions load into a real Consul agent, meta and
                    checks intact (addresses rewritten to 127.0.0.1 first: no check
                    of this test ever dials anything but loopback)
  kv_seed_ring      `consul kv import` of the KV seed into a real Consul dev agent, then
                    a ringside on it (consul-kv, prefix ringside/sessions, the file's ring
                    parameters set differently on purpose) shows the seed's nodes in NODES,
                    the seed's parameters in RING, and LOOKUPs equal `ringctl place`
  yamllint          Chart.yaml and values.yaml with helm/ringside/.yamllint (strict)
  check_chart       scripts/check-chart.py passes, its rendered config passes
                    --check-config, and it does catch an undefined .Values reference
  chart_config_consul  the chart's rendered config run as in the pod (socket, state and
                    http.address moved to a temp dir and loopback): with Consul from
                    CONSUL_HTTP_ADDR alone, NODES equal the seed's; /healthz, /readyz and
                    /metrics answer 200 when the build serves HTTP (noted when it doesn't)
  systemd_verify    `systemd-analyze verify` of configs/ringside.service is clean (the
                    ExecStart binary pointed at the one under test) and the offline
                    security exposure stays low; SKIP when systemd-analyze is missing
  systemd_unit      the unit keeps its documented hardening directives
  dockerfile        the runtime stage installs a package for every shared library that
                    ringside and ringctl need (objdump + dpkg -S); .dockerignore keeps
                    build trees and .deps out. (No docker engine here: nothing is built.)

Environment: RS_DEPS_DIR (default: .deps at the top of the tree) holds
consul/usr/bin/consul; CONSUL_BIN overrides it. RS_KEEP_TMP=1 keeps the temp dir;
RS_DEPLOY_ONLY=name[,name] runs only those checks.
Ends with "N passed, M failed"; stops exactly the processes it started, by PID.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from harness import Failure, Skip, check, check_eq  # noqa: E402

TOP = H.TOP
CONFIGS = os.path.join(TOP, "configs")
CHART = os.path.join(TOP, "helm", "ringside")
START_DEADLINE = 20.0   # seconds for Consul to elect itself, or ringside to converge
RUN_TIMEOUT = 30.0
KV_PREFIX = "ringside/sessions"
RINGSIDE_TOP_KEYS = {"ring", "listen", "http", "state_dir", "max_state_age", "membership",
                     "health", "log"}

RINGSIDE = None
RINGCTL = None
TMP = None
RUN = None              # the Scope of the whole run: TMP and the Consul agent


def run(argv, timeout=RUN_TIMEOUT, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, timeout=timeout, env=H.clean_env(), **kw)


def out_of(r):
    return (r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")).strip()


# --------------------------------------------------------------------------------------
# Processes and files

def start(argv, log_path, cwd=None, env=None):
    """A process of the running check, its output in log_path; env added to a clean one."""
    with open(log_path, "wb") as log:
        return H.spawn(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                       stderr=subprocess.STDOUT, start_new_session=True,
                       env=H.clean_env(**(env or {})))


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def classify(doc):
    """'service', 'kv-seed' or 'ringside' by the document's shape."""
    if isinstance(doc, dict) and ("service" in doc or "services" in doc):
        return "service"
    if isinstance(doc, list) and all(isinstance(e, dict) and {"key", "value"} <= set(e)
                                     for e in doc):
        return "kv-seed"
    return "ringside"


def config_files():
    out = {"service": [], "kv-seed": [], "ringside": []}
    for name in sorted(os.listdir(CONFIGS)):
        if name.endswith(".json"):
            path = os.path.join(CONFIGS, name)
            out[classify(load_json(path))].append(path)
    return out


# --------------------------------------------------------------------------------------
# A Consul dev agent on loopback, loading the (rewritten) service definitions

def loopback_service(doc, closed_port):
    """The definition with its address, port and check targets moved to 127.0.0.1 on a
    port nothing listens on."""
    svc = json.loads(json.dumps(doc["service"]))
    addr, port = svc.get("address", ""), svc.get("port")
    svc["address"] = "127.0.0.1"
    svc["port"] = closed_port
    for c in svc.get("checks", []) + ([svc["check"]] if "check" in svc else []):
        if "tcp" in c:
            c["tcp"] = "127.0.0.1:%d" % closed_port
        if "args" in c:
            c["args"] = [a.replace(addr, "127.0.0.1").replace(str(port), str(closed_port))
                         for a in c["args"]]
        for k in ("http", "grpc"):
            if k in c:
                c[k] = "http://127.0.0.1:%d/" % closed_port
    text = json.dumps({"service": svc})
    if addr:
        text = text.replace(addr, "127.0.0.1")  # check names, notes
    for ip in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text):
        check(ip.startswith("127."), "a non-loopback address %s is left in %s" % (ip, text))
    return json.loads(text)


class Agent(H.Consul):
    def __init__(self, scope, services):
        d = os.path.join(TMP, "consul")
        os.makedirs(os.path.join(d, "conf"))
        closed = H.free_port()
        with open(os.path.join(d, "conf", "agent.json"), "w") as f:
            json.dump({"enable_local_script_checks": True}, f)
        self.services = {}
        for path in services:
            doc = loopback_service(load_json(path), closed)
            self.services[doc["service"]["id"]] = (path, doc["service"])
            with open(os.path.join(d, "conf", os.path.basename(path)), "w") as f:
                json.dump(doc, f)
        super().__init__(scope, d, config_dir=os.path.join(d, "conf"))

    def get(self, path):
        st, body, _ = self.request("GET", path, timeout=5)
        return st, body


AGENT = None
AGENT_ERROR = None


def agent():
    """The one Consul agent of this run, started on first use; a start that failed fails
    every check that needs it, with the same reason."""
    global AGENT, AGENT_ERROR
    if AGENT_ERROR is not None:
        raise Failure("the Consul agent did not start: %s" % AGENT_ERROR)
    if AGENT is None:
        try:
            AGENT = Agent(RUN, config_files()["service"])
            AGENT.start(deadline=START_DEADLINE)
        except Exception as e:  # noqa: BLE001
            AGENT_ERROR = str(e) or type(e).__name__
            raise
    return AGENT


# --------------------------------------------------------------------------------------
# ringside's socket (harness.Conn, replies as text)

def call(c, *args):
    return H.text(c.cmd(*args))


def flat_to_dict(arr):
    return {arr[i]: arr[i + 1] for i in range(0, len(arr) - 1, 2)}


def node_rows(reply):
    """NODES as {id: {address, weight, zone, enabled}}; each row either a flat field/value
    array or positional (id, address, weight, zone, enabled, health, share)."""
    rows = {}
    for r in reply:
        if len(r) >= 2 and r[0] == "id":
            d = flat_to_dict(r)
        else:
            d = dict(zip(("id", "address", "weight", "zone", "enabled", "health", "share"), r))
        rows[d["id"]] = {"address": d["address"], "weight": int(d["weight"]),
                         "zone": d["zone"], "enabled": int(d["enabled"]) == 1}
    return rows


# --------------------------------------------------------------------------------------
# The checks

def t_consul_validate():
    services = config_files()["service"]
    check(len(services) >= 2, "expected the Redis and Memcached service definitions in "
          "configs/, found %s" % [os.path.basename(p) for p in services])
    d = os.path.join(TMP, "validate")
    os.makedirs(d)
    # `consul validate` checks a whole agent config: it needs a data_dir.
    with open(os.path.join(d, "agent.json"), "w") as f:
        json.dump({"data_dir": os.path.join(d, "data")}, f)
    for p in services:
        shutil.copy(p, d)
    r = run([H.consul_binary(), "validate", d])
    check(r.returncode == 0 and "valid" in out_of(r),
          "consul validate failed (%d): %s" % (r.returncode, out_of(r)))
    # The same dir with one check's interval broken must fail: validate reads the services.
    bad = os.path.join(d, os.path.basename(services[0]))
    doc = load_json(bad)
    checks = doc["service"].get("checks") or [doc["service"].get("check")]
    checks[0]["interval"] = "5 parsecs"
    with open(bad, "w") as f:
        json.dump(doc, f)
    r = run([H.consul_binary(), "validate", d])
    check(r.returncode != 0 and "interval" in out_of(r),
          "consul validate accepted a broken check interval (%d): %s"
          % (r.returncode, out_of(r)))
    return "%s valid" % ", ".join(os.path.basename(p) for p in services)


def t_check_configs():
    files = config_files()
    check(files["ringside"], "no ringside config in configs/")
    names = []
    for p in files["ringside"]:
        r = run([RINGSIDE, "--check-config", p])
        check(r.returncode == 0, "%s: ringside --check-config exit %d: %s"
              % (os.path.basename(p), r.returncode, out_of(r)))
        names.append(os.path.basename(p))
    skipped = [os.path.basename(p) for p in files["service"] + files["kv-seed"]]
    return "checked %s; not ringside configs: %s" % (", ".join(names), ", ".join(skipped))


def t_services_register():
    a = agent()
    st, body = a.get("/v1/agent/services")
    check_eq(st, 200, "GET /v1/agent/services")
    registered = json.loads(body)
    st, body = a.get("/v1/agent/checks")
    check_eq(st, 200, "GET /v1/agent/checks")
    checks = json.loads(body)
    for sid, (path, svc) in a.services.items():
        name = os.path.basename(path)
        check(sid in registered, "%s: service %s not registered (agent log: %s)"
              % (name, sid, H.file_tail(a.log_path, 800)))
        got = registered[sid]
        check_eq(got["Service"], svc["name"], "%s: service name" % name)
        meta = got.get("Meta") or {}
        for k in ("ringside_weight", "ringside_zone"):
            check(k in meta, "%s: Meta.%s missing" % (name, k))
        w = meta["ringside_weight"]
        check(w.isdigit() and 1 <= int(w) <= 10000,
              "%s: Meta.ringside_weight %r is not an integer 1..10000" % (name, w))
        mine = [c for c in checks.values() if c.get("ServiceID") == sid]
        check_eq(len(mine), len(svc.get("checks", [])), "%s: checks registered" % name)
        check(any(c.get("Type") == "tcp" for c in mine), "%s: no TCP check" % name)
    return "%s registered with meta and checks" % ", ".join(sorted(a.services))


SEEDED = None


def seeded_agent():
    """The agent with the KV seed imported (once) and read back: (agent, seed's config,
    seed's nodes {id: value})."""
    global SEEDED
    if SEEDED is not None:
        return SEEDED
    seeds = config_files()["kv-seed"]
    check_eq(len(seeds), 1, "KV seed files in configs/")
    seed_path = seeds[0]
    seed = {e["key"]: json.loads(base64.b64decode(e["value"])) for e in load_json(seed_path)}
    params = seed.get(KV_PREFIX + "/config")
    check(isinstance(params, dict), "the seed has no %s/config" % KV_PREFIX)
    nodes = {k.rsplit("/", 1)[1]: v for k, v in seed.items()
             if k.startswith(KV_PREFIX + "/nodes/")}
    check_eq(len(nodes), 3, "nodes in the seed")
    a = agent()
    r = run([H.consul_binary(), "kv", "import", "-http-addr=" + a.url, "@" + seed_path])
    check(r.returncode == 0, "consul kv import (%d): %s" % (r.returncode, out_of(r)))
    r = run([H.consul_binary(), "kv", "export", "-http-addr=" + a.url, KV_PREFIX + "/"])
    check(r.returncode == 0, "consul kv export (%d): %s" % (r.returncode, out_of(r)))
    exported = {e["key"]: json.loads(base64.b64decode(e["value"])) for e in json.loads(r.stdout)}
    check_eq(exported, seed, "the KV after import")
    SEEDED = (a, params, nodes)
    return SEEDED


def wanted_rows(nodes):
    return {i: {"address": n["address"], "weight": n.get("weight", 1),
                "zone": n.get("zone", ""), "enabled": n.get("enabled", True)}
            for i, n in nodes.items()}


def wait_nodes(p, sock, log_path, want):
    """A connection to ringside once its NODES equal want."""
    state = {"got": None, "c": None}

    def matched():
        check(p.poll() is None, "ringside exited with %s:\n%s"
              % (p.returncode, H.file_tail(log_path)))
        try:
            if state["c"] is None:
                state["c"] = H.Conn(sock)
            reply = call(state["c"], "NODES")
            if isinstance(reply, list):
                state["got"] = node_rows(reply)
                return state["got"] == want and state["c"]
        except OSError:
            if state["c"] is not None:
                state["c"].close()
            state["c"] = None
        return None
    try:
        return H.wait_for(matched, "NODES to match the seed", START_DEADLINE)
    except Failure as e:
        raise Failure("%s: got %r, want %r\n%s" % (e, state["got"], want, H.file_tail(log_path)))


def t_kv_seed_ring():
    a, params, nodes = seeded_agent()
    # The file's ring parameters differ from the seed's config: the KV config must win.
    d = os.path.join(TMP, "ringside")
    os.makedirs(os.path.join(d, "state"))
    sock = os.path.join(d, "rs.sock")
    cfg = {"ring": {"name": "sessions", "algorithm": "modula", "hash": "md5", "replicas": 1},
           "listen": {"socket": sock},
           "http": {"enabled": False},
           "state_dir": os.path.join(d, "state"),
           "membership": {"source": "consul-kv",
                          "consul": {"address": a.url, "kv_prefix": KV_PREFIX, "wait": "10s"}},
           "log": {"level": "debug"}}
    cfg_path = os.path.join(d, "ringside.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    log_path = os.path.join(d, "ringside.log")
    p = start([RINGSIDE, "--config", cfg_path], log_path, cwd=d)
    try:
        c = wait_nodes(p, sock, log_path, wanted_rows(nodes))
        ring = flat_to_dict(call(c, "RING"))
        check_eq(ring.get("source"), "consul-kv", "RING source")
        for k in ("algorithm", "hash", "replicas"):
            if k in params:
                check_eq(ring.get(k), params[k], "RING %s (from the KV config)" % k)

        keys = ["user:%d" % i for i in range(400)] + ["session:%x" % (i * 7919) for i in range(100)]
        got_addr = []
        for i in range(0, len(keys), 100):
            rep = call(c, "MLOOKUP", *keys[i:i + 100])
            check(isinstance(rep, list), "MLOOKUP: %r" % (rep,))
            got_addr += rep
        c.close()

        placed = [x.decode() for x in H.place(
            RINGCTL, [dict(n, id=i) for i, n in sorted(nodes.items())], [k.encode() for k in keys],
            params.get("algorithm", "ketama"), params.get("hash", "fnv1a_64"),
            params.get("hash_tag"))]
        diff = [(k, g, w) for k, g, w in zip(keys, got_addr, placed) if g != w]
        check(not diff, "%d of %d LOOKUPs differ from ringctl place, e.g. %r"
              % (len(diff), len(keys), diff[:3]))
        owners = len(set(placed))
        check_eq(owners, len([n for n in nodes.values() if n.get("enabled", True)]),
                 "distinct owners among %d keys" % len(keys))
    finally:
        H.stop_proc(p)
    return ("seed imported; NODES = seed's %d nodes, RING %s/%s/%d from the KV config, "
            "%d LOOKUPs = ringctl place" % (len(nodes), ring["algorithm"], ring["hash"],
                                            ring["replicas"], len(keys)))


def t_yamllint():
    yl = shutil.which("yamllint")
    check(yl is not None, "yamllint is not installed (scripts/install-deps.sh installs it)")
    conf = os.path.join(CHART, ".yamllint")
    check(os.path.isfile(conf), "%s is missing" % conf)
    files = [os.path.join(CHART, "Chart.yaml"), os.path.join(CHART, "values.yaml")]
    r = run([yl, "--strict", "-f", "parsable", "-c", conf] + files)
    check(r.returncode == 0, "yamllint (%d):\n%s" % (r.returncode, out_of(r)))
    return "Chart.yaml, values.yaml clean (strict, %s)" % os.path.relpath(conf, TOP)


def t_check_chart():
    script = os.path.join(TOP, "scripts", "check-chart.py")
    rendered = os.path.join(TMP, "chart-config.json")
    r = run([sys.executable, script, "--chart", CHART, "--render-config", rendered])
    check(r.returncode == 0, "check-chart.py (%d):\n%s" % (r.returncode, out_of(r)))
    r2 = run([RINGSIDE, "--check-config", rendered])
    check(r2.returncode == 0, "the chart's config fails --check-config (%d): %s\n%s"
          % (r2.returncode, out_of(r2), open(rendered).read()))
    # The checker must catch an undefined value in a template.
    broken = os.path.join(TMP, "chart-broken", "ringside")
    shutil.copytree(CHART, broken)
    with open(os.path.join(broken, "templates", "configmap.yaml"), "a") as f:
        f.write("{{/* x */}}\n# {{ .Values.image.nosuchkey }}\n")
    r3 = run([sys.executable, script, "--chart", broken])
    check(r3.returncode == 1 and "image.nosuchkey" in out_of(r3),
          "check-chart.py missed an undefined .Values reference (%d): %s"
          % (r3.returncode, out_of(r3)))
    return "%s; rendered config: %s" % (r.stdout.decode().strip(),
                                       r2.stdout.decode().strip().replace(rendered + ": ", ""))


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path, or None if nothing listens."""
    try:
        st, body, _ = H.http_request("http://127.0.0.1:%d%s" % (port, path), timeout=5)
        return st, body
    except urllib.error.URLError as e:
        if isinstance(e.reason, ConnectionRefusedError):
            return None
        raise


def t_chart_config_consul():
    """The chart's config as the pod runs it: Consul from CONSUL_HTTP_ADDR (the file has
    no address), the KV prefix of the seed; then the probes' endpoints if served."""
    a, params, nodes = seeded_agent()
    d = os.path.join(TMP, "chart-run")
    os.makedirs(d)
    rendered = os.path.join(d, "config.json")
    r = run([sys.executable, os.path.join(TOP, "scripts", "check-chart.py"), "--chart", CHART,
             "--render-config", rendered])
    check(r.returncode == 0, "check-chart.py (%d):\n%s" % (r.returncode, out_of(r)))
    cfg = load_json(rendered)
    consul = cfg.get("membership", {}).get("consul", {})
    check_eq(cfg.get("membership", {}).get("source"), "consul-kv", "the chart's membership.source")
    check_eq(consul.get("kv_prefix"), KV_PREFIX, "the chart's membership.consul.kv_prefix")
    check("address" not in consul, "the chart's config sets membership.consul.address")
    with open(os.path.join(CHART, "values.yaml")) as f:
        scheme = re.search(r"^\s*agentScheme:\s*(\S+)", f.read(), re.M)
    # The pod's paths and 0.0.0.0 become a temp dir and loopback here; nothing else changes.
    sock_name = os.path.basename(cfg.get("listen", {}).get("socket", "ringside.sock"))
    os.makedirs(os.path.join(d, "run"))
    os.makedirs(os.path.join(d, "state"))
    cfg.setdefault("listen", {})["socket"] = os.path.join(d, "run", sock_name)
    cfg["state_dir"] = os.path.join(d, "state")
    http_on = cfg.get("http", {}).get("enabled", True)
    port = H.free_port()
    if http_on:
        cfg["http"]["address"] = "127.0.0.1:%d" % port
    with open(rendered, "w") as f:
        json.dump(cfg, f)
    env = {"HOST_IP": "127.0.0.1",
           "CONSUL_HTTP_ADDR": "%s://127.0.0.1:%d" % (scheme.group(1) if scheme else "http",
                                                      a.http)}
    log_path = os.path.join(d, "ringside.log")
    p = start([RINGSIDE, "--config", rendered], log_path, cwd=d, env=env)
    try:
        c = wait_nodes(p, cfg["listen"]["socket"], log_path, wanted_rows(nodes))
        c.close()
        if not http_on:
            return "NODES = the seed through CONSUL_HTTP_ADDR; http disabled in the chart"
        st = http_get(port, "/healthz")
        if st is None:
            return ("NODES = the seed through CONSUL_HTTP_ADDR; this ringside serves no HTTP "
                    "yet, probes not checked")
        for path in ("/healthz", "/readyz", "/metrics"):
            st = http_get(port, path)
            check(st is not None and st[0] == 200, "GET %s: %r" % (path, st and st[0]))
    finally:
        H.stop_proc(p)
    return "NODES = the seed through CONSUL_HTTP_ADDR; /healthz, /readyz, /metrics answer 200"


UNIT = os.path.join(CONFIGS, "ringside.service")


def t_systemd_verify():
    sa = shutil.which("systemd-analyze")
    if sa is None:
        raise Skip("systemd-analyze is not installed")
    d = os.path.join(TMP, "systemd")
    os.makedirs(d)
    unit = os.path.join(d, "ringside.service")
    with open(UNIT) as f:
        text = f.read()
    # verify checks that the binaries exist: point them at the one under test.
    with open(unit, "w") as f:
        f.write(text.replace("/usr/local/bin/ringside", os.path.abspath(RINGSIDE)))
    r = run([sa, "verify", unit])
    out = out_of(r)
    mine = [ln for ln in out.splitlines() if "ringside.service" in ln]
    if r.returncode != 0 and not mine:
        raise Skip("systemd-analyze verify cannot run here (%d): %s"
                   % (r.returncode, out.splitlines()[0] if out else ""))
    check(r.returncode == 0 and not mine, "systemd-analyze verify (%d):\n%s" % (r.returncode, out))
    extra = ""
    r = run([sa, "security", "--offline=true", unit])
    m = re.search(r"Overall exposure level for ringside\.service: ([0-9.]+) (\w+)", out_of(r))
    if m:
        check(float(m.group(1)) <= 2.0, "systemd-analyze security: exposure %s %s (want <= 2.0)"
              % (m.group(1), m.group(2)))
        extra = ", security exposure %s %s" % (m.group(1), m.group(2))
    return "clean%s" % extra


def t_systemd_unit():
    with open(UNIT) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    kv = {}
    for ln in lines:
        if "=" in ln and not ln.startswith("["):
            k, v = ln.split("=", 1)
            kv.setdefault(k, []).append(v)
    want = {
        "ExecStart": "/usr/local/bin/ringside --config /etc/ringside/ringside.json",
        "RuntimeDirectory": "ringside", "StateDirectory": "ringside",
        "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
        "PrivateTmp": "yes", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "", "Restart": "on-failure",
    }
    for k, v in want.items():
        check(v in kv.get(k, []), "%s=%s missing (has %r)" % (k, v, kv.get(k)))
    check("@system-service" in kv.get("SystemCallFilter", []), "SystemCallFilter=@system-service")
    check("/bin/kill -HUP $MAINPID" in kv.get("ExecReload", []), "ExecReload kill -HUP")
    check("yes" in kv.get("DynamicUser", []) or kv.get("User"), "neither DynamicUser nor User")
    nofile = kv.get("LimitNOFILE", ["0"])[-1].split(":")[0]
    check(nofile.isdigit() and int(nofile) > 10000,
          "LimitNOFILE %s does not cover max_clients 10000" % nofile)
    return "hardening directives present, LimitNOFILE=%s" % nofile


def t_dockerfile():
    with open(os.path.join(TOP, "Dockerfile")) as f:
        text = f.read()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    check(len(stages) >= 2 and all(s == "debian:bookworm-slim" for s in stages),
          "expected a multi-stage build on debian:bookworm-slim, got %r" % stages)
    runtime = text[text.rindex("FROM "):]
    m = re.search(r"apt-get install(?:[^\n\\]|\\\n)*", runtime)
    check(m is not None, "the runtime stage installs no packages")
    pkgs = set(re.findall(r"\b(lib[a-z0-9.+-]+|ca-certificates)\b", m.group(0)))
    user = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    check(user and not user[-1].startswith("root") and not user[-1].startswith("0"),
          "the image must run as a non-root USER, got %r" % user)
    check(re.search(r'^ENTRYPOINT \["ringside"\]', runtime, re.M), "ENTRYPOINT [\"ringside\"]")
    check(re.search(r"^EXPOSE 9317", runtime, re.M), "EXPOSE 9317")
    # Every library the programs load must come from a package the runtime stage installs
    # (or from the base image's libc6).
    needed = {}
    for prog in (RINGSIDE, RINGCTL):
        r = run(["objdump", "-p", prog])
        check(r.returncode == 0, "objdump -p %s: %s" % (prog, out_of(r)))
        sonames = re.findall(r"NEEDED\s+(\S+)", r.stdout.decode())
        r = run(["ldd", prog])
        check(r.returncode == 0, "ldd %s: %s" % (prog, out_of(r)))
        paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", r.stdout.decode(), re.M))
        for so in sonames:
            if re.match(r"lib(asan|ubsan|lsan|tsan|clang_rt|gcc_s|stdc\+\+)", so):
                continue  # sanitizer/compiler runtimes of instrumented test builds
            check(so in paths, "ldd %s does not resolve %s" % (prog, so))
            needed.setdefault(so, (os.path.basename(prog), paths[so]))
    # Debian registers /lib/... or /usr/lib/... (merged /usr): ask for both, in one call.
    cands = {}
    for so, (prog, path) in needed.items():
        alt = path[4:] if path.startswith("/usr/") else "/usr" + path
        for c in (path, alt, os.path.realpath(path)):
            cands[c] = so
    r = run(["dpkg", "-S"] + sorted(cands))
    owner = {}
    for ln in r.stdout.decode().splitlines():
        pkg, _, path = ln.partition(": ")
        if path.strip() in cands:
            owner.setdefault(cands[path.strip()], pkg.split(":")[0].strip())
    missing = []
    for so, (prog, path) in sorted(needed.items()):
        pkg = owner.get(so, "?")
        if pkg == "libc6":
            continue
        if pkg not in pkgs:
            missing.append("%s (%s, from %s)" % (so, pkg, prog))
    check(not missing, "runtime stage lacks: %s" % ", ".join(missing))
    with open(os.path.join(TOP, ".dockerignore")) as f:
        ignore = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    for pat in ("build*/", ".deps/"):
        check(pat in ignore, ".dockerignore lacks %s" % pat)
    return "runtime packages cover %s (docker build not run: no engine here)" % ", ".join(
        sorted(needed))


CHECKS = [
    ("consul_validate", t_consul_validate),
    ("check_configs", t_check_configs),
    ("services_register", t_services_register),
    ("kv_seed_ring", t_kv_seed_ring),
    ("yamllint", t_yamllint),
    ("check_chart", t_check_chart),
    ("chart_config_consul", t_chart_config_consul),
    ("systemd_verify", t_systemd_verify),
    ("systemd_unit", t_systemd_unit),
    ("dockerfile", t_dockerfile),
]


def main():
    global RINGSIDE, RINGCTL, TMP, RUN
    if len(sys.argv) != 2:
        print("usage: test_deploy.py PATH/TO/ringside", file=sys.stderr)
        return 2
    RINGSIDE = os.path.abspath(sys.argv[1])
    RINGCTL = os.path.join(os.path.dirname(RINGSIDE), "ringctl")
    for prog in (RINGSIDE, RINGCTL):
        if not os.access(prog, os.X_OK):
            print("FAIL: %s is not an executable" % prog)
            print("0 passed, 1 failed")
            return 1
    H.install_signal_handlers(status=None)
    t0 = time.monotonic()
    RUN = H.Scope()
    TMP = RUN.new_dir("rs-deploy", parent=None)
    return H.run_scenarios(CHECKS, "RS_DEPLOY_ONLY", t_all=t0)


if __name__ == "__main__":
    sys.exit(main())
