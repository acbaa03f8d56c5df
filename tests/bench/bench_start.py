#!/usr/bin/env python3
"""Start to first answer from a snapshot (SPEC 11: <= 50 ms), next to baselines measured in
the same run: ringside on a static config with no snapshot (parse 1000 nodes, build the
ring, write the snapshot, then answer), and redis-server (exec to its first GET answered).

Usage: bench_start.py PATH/TO/ringside [--runs N] [--nodes N] [--smoke]

First ringside runs once on a static config of --nodes nodes and is stopped, which leaves
the ring's snapshot in its state_dir. Then, --runs times and alternating:
  - snapshot: exec ringside with a consul-kv config (same ring name and state_dir) whose
    Consul address refuses connections (127.0.0.1, a port nobody listens on), so only the
    snapshot can serve;
  - static, no snapshot: exec ringside on the static config with an empty state_dir;
  - redis-server: exec redis-server on a Unix socket, no persistence;
each time measuring from just before the exec to the first successful answer on the Unix
socket: a loop that connects and sends LOOKUP (GET for redis-server) as fast as it can
and counts only a real answer (an address, not an error such as NORING). Each process is
stopped (SIGTERM) before the next run. Prints medians and min-max in ms, the ratios, and
the goal. Run by hand or from scripts/bench.sh; not part of the test suite.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

KEY = b"user:1234567890"


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def try_once(path, request):
    """One connect + request; the reply if it is a bulk string (an answer), else None."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(request)
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
        if buf[:1] != b"$":
            return None     # -NORING, -LOADING, ...: not an answer yet
        n = int(buf[1:buf.index(b"\r\n")])
        if n < 0:
            return b""      # redis-server's nil: an answer all the same
        while len(buf) < buf.index(b"\r\n") + 2 + n + 2:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
        start = buf.index(b"\r\n") + 2
        return buf[start:start + n]
    except OSError:
        return None
    finally:
        s.close()


def time_to_answer(argv, sock, request, deadline=10.0, log=None):
    """Seconds from just before exec to the first answer on sock; the process and answer."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log or subprocess.DEVNULL,
                         stderr=log or subprocess.DEVNULL)
    end = t0 + deadline
    while True:
        ans = try_once(sock, request)
        if ans is not None:
            t = time.monotonic() - t0
            return t, p, ans, minflt(p.pid)
        if p.poll() is not None or time.monotonic() > end:
            stop(p)
            raise RuntimeError("%s: no answer on %s within %.0fs (exit %s)"
                               % (argv[0], sock, deadline, p.returncode))


def minflt(pid):
    """Minor page faults of a process so far (/proc/PID/stat field 10)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[7])
    except (OSError, ValueError, IndexError):
        return 0


def fault_cost_us(mib=32):
    """What one first-touch page fault costs on this machine, in microseconds: some
    virtual machines make them a hundred times dearer than bare metal, and a process
    start is mostly page faults."""
    import mmap
    n = mib << 20
    m = mmap.mmap(-1, n)
    page = mmap.PAGESIZE
    t0 = time.perf_counter()
    for off in range(0, n, page):
        m[off] = 1
    t = time.perf_counter() - t0
    m.close()
    return t / (n // page) * 1e6


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stats(xs):
    ms = sorted(x * 1000.0 for x in xs)
    return statistics.median(ms), ms[0], ms[-1]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ringside")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="3 runs, 100 nodes")
    a = ap.parse_args(argv[1:])
    if a.smoke:
        a.runs, a.nodes = 3, 100
    if not (1 <= a.runs <= 1000 and 1 <= a.nodes <= 10000):
        ap.error("--runs 1..1000, --nodes 1..10000")
    ringside = os.path.abspath(a.ringside)
    redis_server = shutil.which("redis-server")

    d = tempfile.mkdtemp(prefix="rs-start.", dir="/tmp")
    try:
        nodes = [{"id": "cache-%d" % i, "address": "127.0.0.1:%d" % (7000 + i)}
                 for i in range(a.nodes)]
        # A port nobody listens on: connections are refused at once.
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
        probe.close()

        def config(name, state_dir, membership):
            c = {"ring": {"name": "bench"},
                 "listen": {"socket": os.path.join(d, "ringside.sock"), "idle_timeout": "0"},
                 "http": {"enabled": False}, "state_dir": state_dir,
                 "membership": membership, "log": {"level": "info"}}
            path = os.path.join(d, name)
            with open(path, "w") as f:
                json.dump(c, f)
            return path

        snap_dir = os.path.join(d, "state")
        empty_dir = os.path.join(d, "state-empty")
        static_cfg = config("static.json", snap_dir, {"source": "static", "nodes": nodes})
        consul_cfg = config("consul.json", snap_dir, {
            "source": "consul-kv",
            "consul": {"address": "http://127.0.0.1:%d" % dead_port,
                       "kv_prefix": "ringside/bench"}})
        nosnap_cfg = config("static-nosnap.json", empty_dir, {"source": "static",
                                                               "nodes": nodes})
        sock = os.path.join(d, "ringside.sock")
        rsock = os.path.join(d, "redis.sock")
        lookup, get = resp(b"LOOKUP", KEY), resp(b"GET", KEY)
        log = open(os.path.join(d, "ringside.log"), "ab")

        # The snapshot: one run on the static config, stopped gracefully.
        _, p, want, _ = time_to_answer([ringside, "--config", static_cfg], sock, lookup,
                                       log=log)
        stop(p)
        snap = os.path.join(snap_dir, "bench.state.json")
        if not os.path.exists(snap):
            raise RuntimeError("no snapshot at %s after the static run" % snap)

        contestants = [
            ("ringside from snapshot (consul-kv, Consul down)",
             [ringside, "--config", consul_cfg], sock, lookup),
            ("baseline: ringside static, no snapshot",
             [ringside, "--config", nosnap_cfg], sock, lookup),
        ]
        if redis_server:
            contestants.append(
                ("baseline: redis-server, first GET",
                 [redis_server, "--port", "0", "--unixsocket", rsock, "--save", "",
                  "--appendonly", "no", "--daemonize", "no"], rsock, get))
        times = {c[0]: [] for c in contestants}
        faults = {c[0]: [] for c in contestants}
        for run in range(a.runs + 1):           # run 0 warms the page cache, not counted
            for name, cmd, path, req in contestants:
                if "no snapshot" in name:
                    shutil.rmtree(empty_dir, ignore_errors=True)
                    os.makedirs(empty_dir)
                t, p, ans, flt = time_to_answer(cmd, path, req, log=log)
                stop(p)
                if req is lookup and ans != want:
                    raise RuntimeError("%s answered %r, the static ring %r" % (name, ans, want))
                if run > 0:
                    times[name].append(t)
                    faults[name].append(flt)
        # The floor: exec, dynamic loading and exit of the same binary, doing nothing.
        floor = []
        for _ in range(a.runs):
            t0 = time.monotonic()
            subprocess.run([ringside, "--version"], stdout=subprocess.DEVNULL, check=True)
            floor.append(time.monotonic() - t0)
        log.close()
        with open(os.path.join(d, "ringside.log"), "rb") as f:
            loaded = f.read().count(b"event=state_loaded")
        if loaded < a.runs:
            raise RuntimeError("only %d of %d snapshot runs logged state_loaded" % (
                loaded, a.runs))

        print("bench_start: exec -> first answered LOOKUP on the Unix socket, ring of %d "
              "nodes, %d runs each (alternating)" % (a.nodes, a.runs))
        print("machine: %d CPUs, %s %s, python %s" % (os.cpu_count(), platform.system(),
                                                   platform.release(),
                                                   platform.python_version()))
        cost = statistics.median(fault_cost_us() for _ in range(3))
        print("%-48s %9s %19s %6s %7s %9s" % ("", "median ms", "(min-max)", "ratio",
                                             "faults", "fault ms"))
        snap_med = stats(times[contestants[0][0]])[0]
        for name, _, _, _ in contestants:
            med, lo, hi = stats(times[name])
            ratio = "" if name == contestants[0][0] else "%.2f" % (med / snap_med)
            flt = statistics.median(faults[name])
            print("%-48s %9.2f %19s %6s %7d %9.1f" % (name, med, "(%.2f-%.2f)" % (lo, hi),
                                                     ratio, flt, flt * cost / 1000.0))
        med, lo, hi = stats(floor)
        print("%-48s %9.2f %19s" % ("floor: `ringside --version`, exec to exit", med,
                                    "(%.2f-%.2f)" % (lo, hi)))
        print("ratio: baseline median / snapshot median (> 1: the snapshot start is faster)")
        print("faults: minor page faults of the process when it first answered; fault ms:\n"
              "those times %.2f us, what one first-touch page fault costs on this machine\n"
              "(measured now; about 0.1-0.3 us on bare metal)" % cost)
        print("SPEC 11 goal start from a snapshot <= 50 ms: %s" % (
            "met" if snap_med <= 50.0 else "MISSED"))
        return 0
    finally:
        if os.environ.get("RS_KEEP_TMP") != "1":
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
