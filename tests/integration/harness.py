"""Shared helpers of the integration tests (and of tests/bench/bench_propagation.py):
assertions, waiting for observable effects with deadlines, processes and temp dirs that
are cleaned up on exit and on signals, free loopback ports, the scenario runner (PASS/FAIL
per scenario, then "N passed, M failed"), a raw RESP client for ringside's socket, log
events, HTTP without proxies, a Consul dev agent, redis-servers and ringside on free
loopback ports (RESP through Debian's python3-redis), and expected placements computed
offline with `ringctl place` (never from the daemon under test).

A test imports it by path, then asks for python3-redis if it needs it:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness as H  # noqa: E402
    redis = H.require_redis()   # re-executes under /usr/bin/python3 if needed

Every process is started by a Scope, which stops exactly those processes by PID (SIGTERM,
then SIGKILL after a deadline) and removes its temp dirs (under /tmp, short paths for the
Unix socket) when closed; an atexit hook (and install_signal_handlers) closes whatever is
left.

Environment: CONSUL_BIN (else $RS_DEPS_DIR/consul/usr/bin/consul, else .deps next to the
source tree), RS_KEEP_TMP=1 keeps the temp dirs.
"""

import atexit
import base64
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

try:
    import redis
except ImportError:
    redis = None

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
ORACLE_PATH = os.path.join(HERE, os.pardir, "oracle", "twemproxy_hashes.py")
KEEP_TMP = os.environ.get("RS_KEEP_TMP") == "1"
START_DEADLINE = 30.0   # seconds for Consul to elect itself, or a daemon to answer
STOP_DEADLINE = 10.0    # seconds between SIGTERM and SIGKILL
EVENT_DEADLINE = 10.0   # seconds for a change to show
IO_TIMEOUT = 10.0       # seconds one request may take
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def require_redis():
    """Debian's python3-redis (the module). CMake or a pyenv shim may pick a python3
    without it: then the calling script runs again, once, under the system interpreter;
    where that has none either, this prints a failure and exits 1."""
    if redis is not None:
        return redis
    sys_py = "/usr/bin/python3"
    if (not os.environ.get("RS_REDIS_REEXEC") and os.access(sys_py, os.X_OK)
            and os.path.realpath(sys_py) != os.path.realpath(sys.executable)):
        os.environ["RS_REDIS_REEXEC"] = "1"
        os.execv(sys_py, [sys_py] + sys.argv)
    print("FAIL: python3-redis is not importable (apt-get install python3-redis)")
    print("0 passed, 1 failed")
    sys.exit(1)


# --------------------------------------------------------------------------------------
# Assertions and waiting

class Failure(Exception):
    pass


class Skip(Exception):
    """A scenario that cannot run here (a missing tool): reported SKIP, not a failure."""


def check(cond, what):
    if not cond:
        raise Failure(what)


def short(v, limit=300):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "...(%d chars)" % len(r)


def check_eq(got, want, what):
    if got != want:
        raise Failure("%s: expected %s, got %s" % (what, short(want), short(got)))


def check_in(needle, hay, what):
    if needle not in hay:
        raise Failure("%s: expected %s in %s" % (what, short(needle), short(hay, 600)))


def wait_for(pred, what, deadline=EVENT_DEADLINE):
    """Poll pred() until it returns a true value (returned), or fail after deadline."""
    end = time.monotonic() + deadline
    delay = 0.002
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure("timed out after %.0fs waiting for %s" % (deadline, what))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def clean_env(**extra):
    """The environment for ringside, ringctl and Consul: none of the caller's Consul,
    ringside or proxy settings (libcurl would send loopback requests to a proxy)."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("CONSUL_") or k.startswith("RINGSIDE_")
                   or k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def file_tail(path, n=2000):
    """The last n characters of a file (a log), "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""


def write_atomic(path, text):
    """Replace a file in one rename (a SIGHUP never sees half a config)."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def load_oracle():
    """tests/oracle/twemproxy_hashes.py, the stdlib model of twemproxy's hashes."""
    spec = importlib.util.spec_from_file_location("twemproxy_hashes", ORACLE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------
# Processes and directories

def stop_proc(p, sig=signal.SIGTERM, deadline=STOP_DEADLINE):
    """Stop one process we started: sig, then SIGKILL after the deadline. Returns rc."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(deadline)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def stop_expect(p, sig=signal.SIGTERM, deadline=STOP_DEADLINE, what="ringside"):
    """Stop a process that must stop by itself: sig, then its exit status; a Failure
    (after a SIGKILL) if it outlives the deadline."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(deadline)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise Failure("%s did not stop within %.0fs of %s" % (what, deadline, sig))
    return p.returncode


_SCOPES = []            # the open scopes, innermost last


class Scope:
    """The processes, temp dirs and other cleanups of one scenario (or of a whole run).
    close() stops the processes (newest first) with stop_sig, then SIGKILL after
    stop_deadline."""

    def __init__(self, stop_sig=signal.SIGTERM, stop_deadline=5.0):
        self.procs = []
        self.dirs = []
        self.closers = []
        self.stop_sig = stop_sig
        self.stop_deadline = stop_deadline
        _SCOPES.append(self)

    def new_dir(self, tag="rs", parent="/tmp"):
        d = tempfile.mkdtemp(prefix=tag + "-", dir=parent)
        self.dirs.append(d)
        return d

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def on_close(self, fn):
        self.closers.append(fn)

    def close(self):
        while self.closers:
            try:
                self.closers.pop()()
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass
        while self.procs:
            stop_proc(self.procs.pop(), self.stop_sig, self.stop_deadline)
        while self.dirs:
            d = self.dirs.pop()
            if KEEP_TMP:
                print("  kept %s" % d)
            else:
                shutil.rmtree(d, ignore_errors=True)
        if self in _SCOPES:
            _SCOPES.remove(self)


def current():
    """The innermost open Scope (the running scenario's); a new one if none is open."""
    return _SCOPES[-1] if _SCOPES else Scope()


def new_dir(tag="rs", parent="/tmp"):
    """A temp dir of the current scope."""
    return current().new_dir(tag, parent)


def spawn(argv, **kw):
    """A process of the current scope."""
    return current().spawn(argv, **kw)


def close_all():
    for s in reversed(list(_SCOPES)):
        s.close()


atexit.register(close_all)


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGINT), status=1):
    """On those signals: close every scope and exit with status (None: 128 + signal)."""
    def on_signal(signum, frame):
        close_all()
        sys.exit(128 + signum if status is None else status)
    for s in signals:
        signal.signal(s, on_signal)


# --------------------------------------------------------------------------------------
# Ports

_TAKEN_PORTS = set()    # ports handed out in this process, never handed out twice


def port_free_on(host, port, kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in kinds:
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(taken=None, hosts=("127.0.0.1",), udp=True):
    """A port the kernel gives out on hosts[0] that is free for TCP (and UDP: Serf uses
    both) on every host, and not in taken (default: the ports this process has already
    handed out); it is added to taken. OSError if hosts[0] cannot be bound at all."""
    taken = _TAKEN_PORTS if taken is None else taken
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM) if udp else (socket.SOCK_STREAM,)
    family = socket.AF_INET6 if ":" in hosts[0] else socket.AF_INET
    for _ in range(500):
        with socket.socket(family, socket.SOCK_STREAM) as t:
            t.bind((hosts[0], 0))
            port = t.getsockname()[1]
        if port in taken or not all(port_free_on(h, port, kinds) for h in hosts):
            continue
        taken.add(port)
        return port
    raise Failure("no port free on %s" % ", ".join(hosts))


# --------------------------------------------------------------------------------------
# Running scenarios

def run_scenarios(scenarios, only_var, pass_scope=False, on_failure=None, t_all=None,
                  stop_sig=signal.SIGTERM, stop_deadline=5.0):
    """Runs each (name, fn) of scenarios that $only_var (name[,name]) does not leave out,
    each in a Scope of its own (fn(scope) when pass_scope, else fn(); processes stopped
    with stop_sig and stop_deadline) closed after it. A scenario passes when fn returns
    (its return value, if any, is printed after PASS), is skipped on Skip and fails on
    any other exception (on_failure(scope) may then print more). Every scope still open
    is closed at the end; then the total time since t_all (default: now) and
    "N passed, M failed". Returns the exit status."""
    only = set(filter(None, os.environ.get(only_var, "").split(",")))
    passed = failed = skipped = 0
    t_all = time.monotonic() if t_all is None else t_all
    for name, fn in scenarios:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        sc = Scope(stop_sig, stop_deadline)
        try:
            note = fn(sc) if pass_scope else fn()
            passed += 1
            print("PASS %s (%.1fs)%s" % (name, time.monotonic() - t0,
                                         " %s" % note if note else ""))
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (name, e))
        except Exception as e:  # noqa: BLE001 - report every kind of failure per scenario
            failed += 1
            print("FAIL %s (%.1fs): %s" % (name, time.monotonic() - t0,
                                          e if isinstance(e, Failure) else ""))
            if not isinstance(e, Failure):
                traceback.print_exc(file=sys.stdout)
            if on_failure is not None:
                on_failure(sc)
        finally:
            sc.close()
        sys.stdout.flush()
    close_all()
    print("total %.1fs" % (time.monotonic() - t_all))
    print("%d passed, %d failed%s" % (passed, failed,
                                      ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


# --------------------------------------------------------------------------------------
# RESP on ringside's socket, without a client library

class RespError(str):
    """An error reply (its text, without the '-')."""


class Incomplete(Exception):
    pass


class Closed(Failure):
    """The daemon closed the connection while a reply was awaited."""


def enc(*args):
    """One command as a RESP array of bulk strings (str, bytes or int arguments)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = b"%d" % a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def parse_reply(buf, pos):
    """One reply from buf at pos: (value, new pos), or raise Incomplete. Status replies
    are str, errors RespError, bulk strings bytes, nil None, arrays lists."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        raise Incomplete()
    t = buf[pos:pos + 1]
    line = bytes(buf[pos + 1:nl])
    pos = nl + 2
    if t == b"+":
        return line.decode(), pos
    if t == b"-":
        return RespError(line.decode(errors="replace")), pos
    if t == b":":
        return int(line), pos
    if t == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise Incomplete()
        if buf[pos + n:pos + n + 2] != b"\r\n":
            raise Failure("bad bulk terminator in reply")
        return bytes(buf[pos:pos + n]), pos + n + 2
    if t == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            v, pos = parse_reply(buf, pos)
            items.append(v)
        return items, pos
    raise Failure("unparseable reply byte %r at %d" % (t, pos))


class Conn:
    """A raw client on the daemon's socket."""

    def __init__(self, path, timeout=IO_TIMEOUT):
        self.timeout = timeout
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        try:
            self.s.connect(path)
        except OSError:
            self.s.close()
            raise
        self.buf = bytearray()
        self.pos = 0
        self.eof = False

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        try:
            data = self.s.recv(1 << 16)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data
        return True

    def try_reply(self):
        try:
            v, self.pos = parse_reply(self.buf, self.pos)
            return True, v
        except Incomplete:
            return False, None

    def reply(self):
        while True:
            ok, v = self.try_reply()
            if ok:
                return v
            if not self._fill():
                raise Closed("connection closed while waiting for a reply")

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def cmd(self, *args):
        self.send(enc(*args))
        return self.reply()

    def read_to_eof(self):
        """Every reply until the daemon closes the connection; fails if it does not."""
        out = []
        while True:
            ok, v = self.try_reply()
            if ok:
                out.append(v)
                continue
            try:
                if not self._fill():
                    break
            except socket.timeout:
                raise Failure("connection not closed; replies so far: %r" % out[:5])
        rest = bytes(self.buf[self.pos:])
        if rest:
            raise Failure("partial reply before close: %r" % rest[:80])
        return out

    def available(self):
        """Replies that have already arrived, without blocking."""
        self.s.setblocking(False)
        try:
            while True:
                try:
                    data = self.s.recv(1 << 16)
                except BlockingIOError:
                    break
                if not data:
                    self.eof = True
                    break
                self.buf += data
        finally:
            self.s.settimeout(self.timeout)
        out = []
        while True:
            ok, v = self.try_reply()
            if not ok:
                return out
            out.append(v)

    def close(self):
        self.s.close()


def one_cmd(sock, *args):
    """One command on a connection of its own."""
    c = Conn(sock)
    try:
        return c.cmd(*args)
    finally:
        c.close()


def text(v):
    """A reply with its bulk strings (in arrays too) decoded as UTF-8."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [text(x) for x in v]
    return v


def pairs(flat, decode=True):
    """A flat field/value array as a dict: str keys; bulk string values decoded as text
    unless decode is false."""
    check(isinstance(flat, list) and len(flat) % 2 == 0, "not a field/value array: %r" % flat)
    out = {}
    for i in range(0, len(flat), 2):
        v = flat[i + 1]
        out[flat[i].decode()] = (v.decode(errors="replace")
                                 if decode and isinstance(v, bytes) else v)
    return out


# --------------------------------------------------------------------------------------
# Logs

LOG_FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    """A key=value log line as a dict (quoted values unescaped)."""
    out = {}
    for k, v in LOG_FIELD.findall(line):
        if v.startswith('"'):
            try:
                v = json.loads(v)
            except ValueError:
                v = v[1:-1]
        out[k] = v
    return out


def event_lines(log, name, pattern=None):
    """The lines of a log (key=value or JSON lines) for event name that match pattern."""
    pat = r'\bevent=%s(\s|$)|"event":\s*"%s"' % (name, name)
    return [ln for ln in log.splitlines()
            if re.search(pat, ln) and (pattern is None or re.search(pattern, ln))]


# --------------------------------------------------------------------------------------
# HTTP

def http_request(url, method="GET", data=None, token=None, ctx=None, timeout=IO_TIMEOUT):
    """One request, never through a proxy: (status, body, headers), HTTP errors included;
    OSError when nothing answers. token goes in X-Consul-Token; ctx is an SSLContext."""
    opener = OPENER
    if ctx is not None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ctx))
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


# --------------------------------------------------------------------------------------
# Consul

def consul_binary():
    if os.environ.get("CONSUL_BIN"):
        return os.environ["CONSUL_BIN"]
    deps = os.environ.get("RS_DEPS_DIR") or os.path.join(TOP, ".deps")
    return os.path.join(deps, "consul", "usr", "bin", "consul")


def quote(key):
    return urllib.parse.quote(key, safe="/")


def b64(v):
    return base64.b64encode(v).decode()


def as_bytes(value):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


class Consul:
    """A `consul agent -dev` (in-memory server) on loopback ports of its own. start() and
    kill() may alternate: a restart reuses the same ports (and, dev mode, starts empty).
    config_file / config_dir are passed to the agent; token (an ACL token) goes with
    every request unless a request names another."""

    def __init__(self, scope, workdir=None, config_file=None, config_dir=None, token=None,
                 node=None):
        self.scope = scope
        self.dir = workdir or scope.new_dir()
        self.http = free_port(_TAKEN_PORTS)
        self.serf_lan, self.serf_wan, self.server = (free_port(_TAKEN_PORTS) for _ in range(3))
        self.url = "http://127.0.0.1:%d" % self.http
        self.log_path = os.path.join(self.dir, "consul.log")
        self.config_file = config_file
        self.config_dir = config_dir
        self.token = token
        self.node = node or "rs-%d" % self.http
        self.proc = None
        self.starts = 0

    def start(self, wait=True, deadline=START_DEADLINE):
        self.starts += 1
        argv = [consul_binary(), "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
                "-node", self.node, "-http-port", str(self.http),
                "-dns-port", "-1", "-grpc-port", "-1", "-serf-lan-port", str(self.serf_lan),
                "-serf-wan-port", str(self.serf_wan), "-server-port", str(self.server)]
        if self.config_file:
            argv += ["-config-file", self.config_file]
        if self.config_dir:
            argv += ["-config-dir", self.config_dir]
        argv += ["-log-level", "warn"]
        with open(self.log_path, "ab") as log:
            log.write(b"==== start %d\n" % self.starts)
            log.flush()
            self.proc = self.scope.spawn(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, env=clean_env())
        if wait:
            return self.wait_ready(deadline)
        return None

    def log_tail(self, n=2000):
        return file_tail(self.log_path, n)

    def answers(self):
        """True once the agent has a leader and serves KV reads (with the token: ACLs
        bootstrap after the leader is elected)."""
        try:
            st, body, _ = self.request("GET", "/v1/status/leader", timeout=2.0)
            if st != 200 or not json.loads(body or b'""'):
                return False
            st, _, _ = self.request("GET", "/v1/kv/rs-readiness-probe", timeout=2.0)
            return st == 404
        except (OSError, ValueError):
            return False

    def wait_ready(self, deadline=START_DEADLINE):
        """Wait until the agent answers; returns the monotonic time it first did."""
        def ready():
            if self.proc.poll() is not None:
                raise Failure("consul exited with %s:\n%s" % (self.proc.returncode,
                                                              self.log_tail()))
            return self.answers() and time.monotonic()
        try:
            return wait_for(ready, "Consul on %s to elect itself and answer" % self.url,
                            deadline)
        except Failure as e:
            if self.proc.poll() is not None:
                raise
            raise Failure("%s:\n%s" % (e, self.log_tail()))

    def kill(self):
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc is not None:
            stop_proc(self.proc)

    # HTTP
    def request(self, method, path, data=None, timeout=IO_TIMEOUT, token=""):
        """(status, body, headers); token "" is the agent's default token, None none."""
        return http_request(self.url + path, method, data,
                            self.token if token == "" else token, timeout=timeout)

    def ok(self, method, path, data=None):
        st, body, headers = self.request(method, path, data)
        if st != 200:
            raise Failure("Consul %s %s: HTTP %d %s" % (method, path, st, body[:200]))
        return body, headers

    # KV
    def kv_put(self, key, value):
        """Write one key (dict/list as JSON, str/bytes as is); returns its ModifyIndex."""
        body, _ = self.ok("PUT", "/v1/kv/" + quote(key), as_bytes(value))
        check_eq(body.strip(), b"true", "Consul PUT %s" % key)
        return self.kv_index(key)

    def kv_delete(self, key, recurse=False):
        self.ok("DELETE", "/v1/kv/" + quote(key) + ("?recurse" if recurse else ""))
        return self.kv_index(key.rstrip("/") + "/" if recurse else key)

    def kv_index(self, key):
        """The X-Consul-Index of a recursive read of key: what a watcher of that prefix
        sees once it has caught up with every write to it so far."""
        st, _, headers = self.request("GET", "/v1/kv/%s?recurse" % quote(key))
        check(st in (200, 404), "Consul GET %s: HTTP %d" % (key, st))
        return int(headers["X-Consul-Index"])

    def kv_get(self, key):
        st, body, _ = self.request("GET", "/v1/kv/" + quote(key))
        if st == 404:
            return None
        check_eq(st, 200, "Consul GET %s" % key)
        v = json.loads(body)[0]["Value"]
        return base64.b64decode(v) if v is not None else None

    def txn(self, ops):
        """One atomic transaction: ops are ("set", key, value), ("delete", key) or
        ("delete-tree", prefix). Returns the index of the write."""
        body = []
        for op in ops:
            if op[0] == "set":
                body.append({"KV": {"Verb": "set", "Key": op[1], "Value": b64(as_bytes(op[2]))}})
            else:
                body.append({"KV": {"Verb": op[0], "Key": op[1]}})
        st, out, _ = self.request("PUT", "/v1/txn", json.dumps(body).encode())
        if st != 200:
            raise Failure("Consul txn: HTTP %d %s" % (st, out[:300]))
        results = json.loads(out)["Results"] or []
        return max([r["KV"]["ModifyIndex"] for r in results if r.get("KV")] or [0])

    # Services and checks (agent API)
    def register(self, service):
        self.ok("PUT", "/v1/agent/service/register", json.dumps(service).encode())

    def deregister(self, service_id):
        self.ok("PUT", "/v1/agent/service/deregister/" + service_id)

    def check_pass(self, check_id):
        self.ok("PUT", "/v1/agent/check/pass/" + check_id)

    def check_fail(self, check_id):
        self.ok("PUT", "/v1/agent/check/fail/" + check_id)

    def health(self, service):
        """{ServiceID: "passing" | "critical" | ...}: the worst status of each instance's
        checks (node checks included), as Consul's catalog has it."""
        st, body, _ = self.request("GET", "/v1/health/service/" + service)
        check_eq(st, 200, "Consul GET /v1/health/service/%s" % service)
        order = ["passing", "warning", "critical", "maintenance"]
        out = {}
        for e in json.loads(body):
            sts = [c["Status"] for c in e.get("Checks") or []]
            worst = max(sts, key=lambda s: order.index(s) if s in order else 9, default="passing")
            out[e["Service"]["ID"]] = worst
        return out

    def wait_health(self, service, want, deadline=EVENT_DEADLINE):
        """Until every instance named in want has that status in the catalog."""
        return wait_for(lambda: all(self.health(service).get(k) == v for k, v in want.items()),
                        "Consul to report %s as %s" % (service, want), deadline)


# --------------------------------------------------------------------------------------
# redis-server

class RedisServer:
    def __init__(self, scope, workdir=None, port=None):
        self.scope = scope
        self.dir = workdir or scope.new_dir()
        self.port = port or free_port(_TAKEN_PORTS)
        self.address = "127.0.0.1:%d" % self.port
        self.proc = None

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--logfile", os.path.join(self.dir, "redis-%d.log" % self.port),
                "--unixsocket", "", "--protected-mode", "no"]
        self.proc = self.scope.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise Failure("redis-server on %d exited with %s" % (self.port,
                                                                    self.proc.returncode))
            try:
                return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0).ping()
            except redis.RedisError:
                return False
        wait_for(up, "redis-server on port %d" % self.port, START_DEADLINE)
        return self

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------
# ringside

def ringside_config(d, ring_name, consul_url, prefix=None, source="consul-kv", service=None,
                    health_service=None, wait="5s", policy="skip", panic=0.5, ring=None,
                    consul=None, log_level="debug"):
    c = {"address": consul_url, "wait": wait}
    if source == "consul-kv":
        c["kv_prefix"] = prefix or "ringside/" + ring_name
        if health_service:
            c["health_service"] = health_service
    else:
        c["service"] = service
    c.update(consul or {})
    r = {"name": ring_name}
    r.update(ring or {})
    return {
        "ring": r,
        "listen": {"socket": os.path.join(d, "s.sock")},
        "http": {"enabled": False},
        "state_dir": os.path.join(d, "state"),
        "membership": {"source": source, "consul": c},
        "health": {"policy": policy, "panic_threshold": panic},
        "log": {"level": log_level, "format": "kv"},
    }


class Ringside:
    """One ringside process (restartable) with its config file in workdir; each start
    logs to ringside.<n>.log there."""

    start_deadline = START_DEADLINE     # seconds for a start to answer PING

    def __init__(self, scope, binary, cfg, workdir=None):
        self.scope = scope
        self.binary = binary
        self.dir = workdir or scope.new_dir()
        self.cfg_path = os.path.join(self.dir, "ringside.json")
        self.proc = None
        self.starts = 0
        self.log_path = None
        self._client = None
        self.write_config(cfg)

    def write_config(self, cfg):
        """Replace the config file at once: cfg as JSON, or a str (bad configs) as is."""
        self.cfg = cfg
        if not isinstance(cfg, str):
            self.sock = cfg["listen"]["socket"]
            self.state_dir = cfg["state_dir"]
        write_atomic(self.cfg_path, cfg if isinstance(cfg, str) else json.dumps(cfg, indent=1))

    def start(self, wait=True):
        self.starts += 1
        self.log_path = os.path.join(self.dir, "ringside.%d.log" % self.starts)
        self._client = None
        with open(self.log_path, "wb") as log:
            self.proc = self.scope.spawn([self.binary, "--config", self.cfg_path],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=clean_env())
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise Failure("ringside exited with %s before answering; log:\n%s"
                              % (self.proc.returncode, self.log()[-2000:]))
            try:
                c = Conn(self.sock, timeout=2.0)
            except OSError:
                return False
            try:
                return c.cmd("PING") == "PONG"
            except (OSError, Failure):
                return False
            finally:
                c.close()
        wait_for(ready, "ringside to answer PING on %s" % self.sock, self.start_deadline)

    def stop(self, sig=signal.SIGTERM, deadline=STOP_DEADLINE):
        if self._client is not None:
            self._client.close()
            self._client = None
        return stop_expect(self.proc, sig, deadline)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # Log
    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def mark(self):
        """A position in the current log: events(..., since=mark) sees only later lines."""
        return len(self.log())

    def events(self, name, pattern=None, since=0):
        return event_lines(self.log()[since:], name, pattern)

    def wait_event(self, name, pattern=None, since=0, count=1, deadline=EVENT_DEADLINE):
        def seen():
            if not self.alive():
                raise Failure("ringside exited with %s; log:\n%s"
                              % (self.proc.returncode, self.log()[-2000:]))
            lines = self.events(name, pattern, since)
            return lines if len(lines) >= count else None
        return wait_for(seen, "log event=%s%s" % (name, " " + pattern if pattern else ""),
                        deadline)

    # RESP
    def client(self):
        if self._client is None:
            self._client = redis.Redis(unix_socket_path=self.sock, socket_timeout=IO_TIMEOUT)
            self._client.set_response_callback("INFO", lambda r, **kw: r)
        return self._client

    def cmd(self, *args):
        return self.client().execute_command(*args)

    def ring(self):
        return pairs(self.cmd("RING"))

    def info(self):
        """INFO as {field: text}."""
        out = {}
        for ln in self.cmd("INFO").decode(errors="replace").splitlines():
            if ":" in ln and not ln.startswith("#"):
                k, v = ln.split(":", 1)
                out[k] = v
        return out

    def lookups(self, keys, batch=500):
        out = []
        for i in range(0, len(keys), batch):
            out.extend(self.cmd("MLOOKUP", *keys[i:i + batch]))
        return out

    def route(self, key):
        r = pairs(self.cmd("ROUTE", key))
        r["candidates"] = [[x.decode() if isinstance(x, bytes) else x for x in c]
                           for c in r["candidates"]]
        return r

    def nodes(self):
        return {n["id"]: n for n in (pairs(x) for x in self.cmd("NODES"))}

    def wait_ring(self, pred, what, deadline=EVENT_DEADLINE):
        """Poll RING until pred(ring) holds; returns that RING."""
        def ok():
            if not self.alive():
                raise Failure("ringside exited with %s; log:\n%s"
                              % (self.proc.returncode, self.log()[-2000:]))
            r = self.ring()
            return r if pred(r) else None
        return wait_for(ok, what, deadline)

    def wait_caught_up(self, index, deadline=EVENT_DEADLINE):
        """Until the daemon's KV watch has seen Consul's state at index (or later)."""
        return wait_for(lambda: int(self.info().get("kv_index") or 0) >= index,
                        "ringside's KV watch to reach index %d" % index, deadline)


# --------------------------------------------------------------------------------------
# ringctl, and expectations computed without the daemon

def run_ringctl(ringctl, args, consul_url=None, timeout=30):
    env = clean_env(**({"CONSUL_HTTP_ADDR": consul_url} if consul_url else {}))
    p = subprocess.run([ringctl] + list(args), env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def ringctl_ok(ringctl, args, consul_url=None):
    rc, out, err = run_ringctl(ringctl, args, consul_url)
    if rc != 0:
        raise Failure("ringctl %s: exit %d: %s" % (" ".join(args), rc, err.strip()))
    return out


def node_spec(n):
    spec = "%s,id=%s" % (n["address"], n["id"])
    if n.get("weight", 1) != 1:
        spec += ",weight=%d" % n["weight"]
    if n.get("zone"):
        spec += ",zone=%s" % n["zone"]
    if n.get("enabled", True) is False:
        spec += ",disabled"
    return spec


def place(ringctl, nodes, keys, algorithm=None, hash_name=None, hash_tag=None):
    """Addresses (bytes) `ringctl place` gives the keys (bytes, none empty), offline."""
    argv = [ringctl, "place", "--hex"]
    for n in nodes:
        argv += ["--node", node_spec(n)]
    if algorithm:
        argv += ["--algorithm", algorithm]
    if hash_name:
        argv += ["--hash", hash_name]
    if hash_tag:
        argv += ["--hash-tag", hash_tag]
    for k in keys:
        check(len(k) > 0, "place: empty keys are not used")
    data = "".join(k.hex() + "\n" for k in keys).encode()
    r = subprocess.run(argv, input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise Failure("ringctl place failed (%d): %s" % (r.returncode, r.stderr.decode()))
    lines = r.stdout.decode().splitlines()
    check_eq(len(lines), len(keys), "ringctl place line count")
    return [ln.split(" ")[0].encode() for ln in lines]


def ring_orders(ringctl, nodes, keys):
    """Equal-weight ketama: each key's ring order (addresses, distinct), as the owner
    after removing the owners before it (a node's points do not depend on the others)."""
    cache = {}

    def owners(ids):
        if ids not in cache:
            cache[ids] = place(ringctl, [n for n in nodes if n["id"] in ids], keys)
        return cache[ids]

    by_addr = {n["address"].encode(): n["id"] for n in nodes}
    orders = []
    for i in range(len(keys)):
        left = frozenset(n["id"] for n in nodes)
        order = []
        while left:
            a = owners(left)[i]
            check(by_addr.get(a) in left,
                  "ringctl place gave %r, not one of %s" % (a, sorted(left)))
            order.append(a)
            left = left - {by_addr[a]}
        orders.append(order)
    return orders


def fingerprint(nodes, algorithm="ketama", hash_name="fnv1a_64", replicas=2, hash_tag=""):
    """A ketama/modula ring's fingerprint recomputed from its parameters and nodes:
    SHA-256 of the canonical text (a parameters line, then one line per node ordered by
    id length, then bytes), first 8 bytes in hex (common/ring.c, compute_fingerprint)."""
    text = "ringside-ring-v1 algorithm=%s hash=%s replicas=%d tag=%s\n" % (
        algorithm, hash_name, replicas, hash_tag)
    for n in sorted(nodes, key=lambda n: (len(n["id"].encode()), n["id"].encode())):
        text += "%s %s %d %s %d\n" % (n["id"], n["address"], n.get("weight", 1),
                                      n.get("zone", ""), 1 if n.get("enabled", True) else 0)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_fingerprint(nodes, params=None):
    """fingerprint() of nodes (a list, or KV-style {id: value}) under a ring config as
    stored in KV (algorithm, hash, replicas, hash_tag; the defaults where absent)."""
    p = params or {}
    if isinstance(nodes, dict):
        nodes = [dict(v, id=k) for k, v in nodes.items()]
    return fingerprint(nodes, algorithm=p.get("algorithm", "ketama"),
                       hash_name=p.get("hash", "fnv1a_64"), replicas=p.get("replicas", 2),
                       hash_tag=p.get("hash_tag", ""))


def kv_node_value(n):
    """A node's KV value (SPEC 4.1): the node without its id."""
    return {k: v for k, v in n.items() if k != "id"}


def rand_keys(rng, n):
    """n distinct keys (bytes): mostly text, some non-ASCII, some binary."""
    keys = set()
    while len(keys) < n:
        r = rng.random()
        if r < 0.2:
            k = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        else:
            tail = rng.choice(["", ":é", ":ключ"])
            k = ("user:%d%s" % (rng.randrange(10 ** 9), tail)).encode()
        keys.add(k)
    return sorted(keys)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def new_rng(seed):
    return random.Random(seed)
