#!/usr/bin/env python3
"""Memory with 1000 nodes and 1000 idle clients (SPEC 11: <= 20 MB RSS), next to
redis-server holding the same 1000 idle clients, measured in the same run.

Usage: bench_memory.py PATH/TO/ringside [--runs N] [--nodes N] [--clients N] [--smoke]

Each run starts ringside (static config of --nodes nodes, idle_timeout 0) under
/usr/bin/time -v and redis-server (Unix socket, no persistence), then for each of them:
reads VmRSS and VmHWM from /proc/PID/status with no client, connects --clients clients
over the Unix socket (RLIMIT_NOFILE raised first; the servers inherit it), sends one
request on each (LOOKUP, or GET for redis-server) so every connection has been served
once, leaves them idle for a moment and reads VmRSS and VmHWM again. Then it closes the
clients and stops the servers (SIGTERM); /usr/bin/time's "Maximum resident set size" is
the cross-check of ringside's VmHWM. Prints medians and min-max over --runs runs, per
client costs and the ratio to redis-server. Not part of the test suite.
"""

import argparse
import json
import os
import re
import resource
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


def status_kb(pid):
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(("VmRSS:", "VmHWM:")):
                out[ln.split(":")[0]] = int(ln.split()[1])
    return out["VmRSS"], out["VmHWM"]


def wait_answer(path, request, proc, want=b"$", deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args[0], proc.returncode))
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(request)
            if s.recv(4096)[:1] == want:
                s.close()
                return
            s.close()
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("no answer on %s" % path)


def child_pid(pid, deadline=10.0):
    """The one child of pid (ringside under /usr/bin/time)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                kids = f.read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("no child of /usr/bin/time")


def read_reply(s):
    """One RESP reply: a simple string, or a bulk string (nil included)."""
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("a client was disconnected: %r" % buf)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n")
    if head[:1] == b"+":
        return head[1:]
    if head[:1] != b"$":
        raise RuntimeError("unexpected reply %r" % buf)
    n = int(head[1:])
    while n >= 0 and len(rest) < n + 2:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("a client was disconnected")
        rest += chunk
    return rest[:n] if n >= 0 else None


def connect_clients(path, n, request):
    """n connections, each served once; returned open and idle."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    for s in socks:
        s.sendall(request)
    for s in socks:
        read_reply(s)
    return socks


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def fmt(xs, scale=1024.0):
    v = sorted(x / scale for x in xs)
    return "%8.2f (%.2f-%.2f)" % (statistics.median(v), v[0], v[-1])


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ringside")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="1 run, 100 clients")
    a = ap.parse_args(argv[1:])
    if a.smoke:
        a.runs, a.clients = 1, 100
    if not (1 <= a.runs <= 100 and 1 <= a.nodes <= 10000 and 1 <= a.clients <= 20000):
        ap.error("--runs 1..100, --nodes 1..10000, --clients 1..20000")
    need = a.clients + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, min(hard, 65536)), hard))
        except (ValueError, OSError) as e:
            sys.exit("bench_memory: cannot raise RLIMIT_NOFILE to %d: %s" % (need, e))
    ringside = os.path.abspath(a.ringside)
    redis_server = shutil.which("redis-server")
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

    d = tempfile.mkdtemp(prefix="rs-mem.", dir="/tmp")
    procs = []
    try:
        nodes = [{"id": "cache-%d" % i, "address": "127.0.0.1:%d" % (7000 + i)}
                 for i in range(a.nodes)]
        sock, rsock = os.path.join(d, "ringside.sock"), os.path.join(d, "redis.sock")
        cfg = os.path.join(d, "ringside.json")
        with open(cfg, "w") as f:
            json.dump({"ring": {"name": "bench"},
                       "listen": {"socket": sock, "idle_timeout": "0"},
                       "http": {"enabled": False}, "state_dir": os.path.join(d, "state"),
                       "membership": {"source": "static", "nodes": nodes},
                       "log": {"level": "warn"}}, f)
        res = {k: [] for k in ("rs0_rss", "rs0_hwm", "rs_rss", "rs_hwm", "rs_time",
                               "rd0_rss", "rd_rss", "rd_hwm")}
        for _ in range(a.runs):
            tlog = os.path.join(d, "time.log")
            argv_rs = [ringside, "--config", cfg]
            if gnu_time:
                argv_rs = [gnu_time, "-v", "-o", tlog] + argv_rs
            with open(os.path.join(d, "ringside.log"), "ab") as log:
                p = subprocess.Popen(argv_rs, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log)
            procs.append(p)
            pid = child_pid(p.pid) if gnu_time else p.pid
            wait_answer(sock, resp(b"LOOKUP", KEY), p)
            rss0, hwm0 = status_kb(pid)
            clients = connect_clients(sock, a.clients, resp(b"LOOKUP", KEY))
            time.sleep(0.3)
            rss, hwm = status_kb(pid)
            info = b""
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock)
                s.sendall(resp(b"INFO"))
                time.sleep(0.05)
                info = s.recv(65536)
            m = re.search(rb"clients:(\d+)", info)
            if m and int(m.group(1)) < a.clients:
                raise RuntimeError("ringside reports %s clients, expected %d or more"
                                   % (m.group(1).decode(), a.clients))
            for s in clients:
                s.close()
            if gnu_time:
                os.kill(pid, signal.SIGTERM)
                p.wait(15)
                with open(tlog) as f:
                    mt = re.search(r"Maximum resident set size \(kbytes\): (\d+)", f.read())
                res["rs_time"].append(int(mt.group(1)) if mt else 0)
            else:
                stop(p)
            res["rs0_rss"].append(rss0)
            res["rs0_hwm"].append(hwm0)
            res["rs_rss"].append(rss)
            res["rs_hwm"].append(hwm)

            if redis_server:
                if os.path.exists(rsock):
                    os.unlink(rsock)
                r = subprocess.Popen([redis_server, "--port", "0", "--unixsocket", rsock,
                                      "--save", "", "--appendonly", "no", "--daemonize", "no",
                                      "--maxclients", str(a.clients + 100)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                procs.append(r)
                wait_answer(rsock, resp(b"SET", KEY, b"127.0.0.1:7042"), r, b"+")
                rd0, _ = status_kb(r.pid)
                clients = connect_clients(rsock, a.clients, resp(b"GET", KEY))
                time.sleep(0.3)
                rrss, rhwm = status_kb(r.pid)
                for s in clients:
                    s.close()
                stop(r)
                res["rd0_rss"].append(rd0)
                res["rd_rss"].append(rrss)
                res["rd_hwm"].append(rhwm)

        print("bench_memory: ringside with %d nodes (ketama, %d points) and redis-server, "
              "each with %d idle Unix-socket clients; %d runs" % (
                  a.nodes, a.nodes * 160, a.clients, a.runs))
        print("MiB, median (min-max)")
        print("%-52s %s" % ("ringside, no client: VmRSS", fmt(res["rs0_rss"])))
        print("%-52s %s" % ("ringside, %d clients: VmRSS" % a.clients, fmt(res["rs_rss"])))
        print("%-52s %s" % ("ringside, %d clients: VmHWM (peak)" % a.clients,
                            fmt(res["rs_hwm"])))
        if res["rs_time"]:
            print("%-52s %s" % ("ringside: /usr/bin/time -v max RSS (whole run)",
                                fmt(res["rs_time"])))
        per = [(x - y) / a.clients for x, y in zip(res["rs_rss"], res["rs0_rss"])]
        print("%-52s %8.2f" % ("ringside: KiB per idle client", statistics.median(per)))
        if res["rd_rss"]:
            print("%-52s %s" % ("baseline: redis-server, no client: VmRSS",
                                fmt(res["rd0_rss"])))
            print("%-52s %s" % ("baseline: redis-server, %d clients: VmRSS" % a.clients,
                                fmt(res["rd_rss"])))
            print("%-52s %s" % ("baseline: redis-server, %d clients: VmHWM" % a.clients,
                                fmt(res["rd_hwm"])))
            rper = [(x - y) / a.clients for x, y in zip(res["rd_rss"], res["rd0_rss"])]
            print("%-52s %8.2f" % ("baseline: redis-server KiB per idle client",
                                   statistics.median(rper)))
            print("ratio redis-server VmRSS / ringside VmRSS with clients: %.2f" % (
                statistics.median(res["rd_rss"]) / statistics.median(res["rs_rss"])))
        hwm_mb = statistics.median(res["rs_hwm"]) * 1024 / 1e6
        print("SPEC 11 goal <= 20 MB RSS with %d nodes and %d clients: %s (peak %.2f MB = "
              "%.2f MiB)" % (a.nodes, a.clients, "met" if hwm_mb <= 20.0 else "MISSED",
                             hwm_mb, hwm_mb * 1e6 / 1048576))
        return 0
    finally:
        for p in procs:
            stop(p)
        if os.environ.get("RS_KEEP_TMP") != "1":
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
