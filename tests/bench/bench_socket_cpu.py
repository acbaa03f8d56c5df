#!/usr/bin/env python3
"""Server CPU per request over the Unix socket: ringside answering LOOKUP / MLOOKUP next to
redis-server answering GET / MGET under the same redis-benchmark load, alternating runs.

Usage: bench_socket_cpu.py PATH/TO/ringside [--runs N] [--requests N] [--smoke]

Throughput (tests/bench/bench_socket.sh) on a small shared machine measures the scheduler
as much as the server: redis-benchmark, the server and everything else running share two
cores. What a server itself costs is steadier: the CPU time it spends (from
/proc/PID/schedstat, in ns) per request answered. This runs the loads of bench_socket.sh
(50 clients unpipelined, 50 clients -P 16, MLOOKUP of 100 keys against MGET of the same
100 keys) against both servers, alternating, --runs times each, and prints per load the
median server CPU ns per request (min-max), the requests/s redis-benchmark saw, and the
ratio redis-server ns / ringside ns (> 1: ringside spends less CPU per answer). The ring
is the same 100-node ketama ring as bench_socket.sh; every key redis-server is asked for
holds an address, so both send replies of the same size. Not part of the test suite.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def wait_ping(path, proc):
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args[0], proc.returncode))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError("no PONG on %s" % path)


def bench(path, pipe, requests, args):
    out = subprocess.run(["redis-benchmark", "-s", path, "-c", "50", "-n", str(requests),
                          "-P", str(pipe), "-q"] + args, capture_output=True, text=True,
                         timeout=600)
    m = re.findall(r"([0-9.]+) requests per second", out.stdout.replace("\r", "\n"))
    if out.returncode != 0 or not m:
        raise RuntimeError("redis-benchmark %s: %s %s" % (args[0], out.stdout[-300:],
                                                          out.stderr[-300:]))
    return float(m[-1])


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def med_mm(xs, fmt="%.0f"):
    v = sorted(xs)
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(v), v[0], v[-1])


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ringside")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=300000)
    ap.add_argument("--smoke", action="store_true", help="1 run of 2000 requests")
    a = ap.parse_args(argv[1:])
    if a.smoke:
        a.runs, a.requests = 1, 2000
    if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
        sys.exit("bench_socket_cpu: needs redis-server and redis-benchmark (redis-tools)")
    d = tempfile.mkdtemp(prefix="rs-cpu.", dir="/tmp")
    procs = []
    try:
        sock, rsock = os.path.join(d, "ringside.sock"), os.path.join(d, "redis.sock")
        nodes = [{"id": "cache-%d" % i, "address": "127.0.0.1:%d" % (7000 + i)}
                 for i in range(100)]
        cfg = os.path.join(d, "ringside.json")
        with open(cfg, "w") as f:
            json.dump({"ring": {"name": "bench"},
                       "listen": {"socket": sock, "idle_timeout": "0"},
                       "http": {"enabled": False}, "state_dir": os.path.join(d, "state"),
                       "membership": {"source": "static", "nodes": nodes},
                       "log": {"level": "warn"}}, f)
        rs = subprocess.Popen([os.path.abspath(a.ringside), "--config", cfg],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(d, "ringside.log"), "wb"))
        procs.append(rs)
        rd = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", rsock, "--save",
                               "", "--appendonly", "no", "--daemonize", "no"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(rd)
        wait_ping(sock, rs)
        wait_ping(rsock, rd)
        keys = ["user:%08d" % i for i in range(1, 101)]
        # Every key GET and MGET read holds an address, so redis-server's replies are the
        # size of ringside's (MGET of missing keys would answer 100 short nils instead).
        mset = ["MSET", "user:1234567890", "127.0.0.1:7042"]
        for i, k in enumerate(keys):
            mset += [k, "127.0.0.1:%d" % (7000 + i)]
        subprocess.run(["redis-cli", "-s", rsock] + mset, check=True, capture_output=True)
        loads = [("LOOKUP -P 1 vs GET", 1, ["LOOKUP", "user:1234567890"],
                  ["GET", "user:1234567890"]),
                 ("LOOKUP -P 16 vs GET", 16, ["LOOKUP", "user:1234567890"],
                  ["GET", "user:1234567890"]),
                 ("MLOOKUP 100 keys vs MGET", 1, ["MLOOKUP"] + keys, ["MGET"] + keys)]
        print("bench_socket_cpu: server CPU ns per request (schedstat), 50 clients, %d runs "
              "of %d requests, alternating" % (a.runs, a.requests))
        print("%-26s | %-24s %-24s | %-26s %-26s | %s" % (
            "load", "ringside ns/req", "redis ns/req", "ringside req/s", "redis req/s",
            "ratio (min-max)"))
        for label, pipe, ours, theirs in loads:
            ns_rs, ns_rd, rps_rs, rps_rd, ratio = [], [], [], [], []
            for _ in range(a.runs):
                c0 = cpu_ns(rs.pid)
                rps_rs.append(bench(sock, pipe, a.requests, ours))
                ns_rs.append((cpu_ns(rs.pid) - c0) / a.requests)
                c0 = cpu_ns(rd.pid)
                rps_rd.append(bench(rsock, pipe, a.requests, theirs))
                ns_rd.append((cpu_ns(rd.pid) - c0) / a.requests)
                ratio.append(ns_rd[-1] / ns_rs[-1])
            print("%-26s | %-24s %-24s | %-26s %-26s | %s" % (
                label, med_mm(ns_rs), med_mm(ns_rd), med_mm(rps_rs), med_mm(rps_rd),
                med_mm(ratio, "%.2f")))
        print("ratio: redis-server CPU ns per request / ringside's, per run (> 1: ringside "
              "spends less CPU per answer)")
        return 0
    finally:
        for p in procs:
            stop(p)
        if os.environ.get("RS_KEEP_TMP") != "1":
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
