#!/usr/bin/env python3
"""The one report of scripts/bench.sh: reads the logs its benchmarks left in a directory,
prints a Markdown summary table (every figure next to its baseline, the ratio, the goal
and whether it is met) and, with --write FILE, puts the machine description, the table and
the full logs into FILE between the markers

    <!-- bench-report:begin -->
    <!-- bench-report:end -->

(appending them when the markers are missing), leaving the rest of FILE as it is.

Usage: bench_report.py REPORT_DIR [--write BENCHMARKS.md]

A figure whose log is missing or has changed shape shows as "n/a" rather than failing.
"""

import argparse
import os
import re
import sys

BEGIN, END = "<!-- bench-report:begin -->", "<!-- bench-report:end -->"

# Sections in report order: log file name, title, the command bench.sh ran (for the reader).
SECTIONS = [
    ("machine.log", "Machine", None),
    ("bench_socket.log", "Socket lookups, throughput", "tests/bench/bench_socket.sh"),
    ("bench_socket_cpu.log", "Socket lookups, server CPU per request",
     "tests/bench/bench_socket_cpu.py"),
    ("bench_libmemcached.log", "In-process lookups and rebuilds next to libmemcached",
     "build-bench/tests/bench_libmemcached"),
    ("bench_ring.log", "In-process lookups and rebuilds, every algorithm",
     "build-bench/tests/bench_ring"),
    ("bench_propagation.log", "Consul change propagation", "tests/bench/bench_propagation.py"),
    ("bench_start.log", "Start from a snapshot", "tests/bench/bench_start.py"),
    ("bench_memory.log", "Memory", "tests/bench/bench_memory.py"),
    ("bench_movement.log", "Movement and balance", "tests/bench/bench_movement.py"),
]


def read(d, name):
    try:
        with open(os.path.join(d, name), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


class Table:
    def __init__(self):
        self.rows = []

    def add(self, figure, ours, base, ratio, goal, ok, cmd):
        self.rows.append((figure, ours, base, ratio, goal, verdict(ok), cmd))

    def markdown(self):
        out = ["| figure | ringside | baseline (same run) | ratio | goal | verdict | command |",
               "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            out.append("| " + " | ".join(r) + " |")
        return "\n".join(out)


def socket_rows(t, log):
    cmd = "`tests/bench/bench_socket.sh build-bench`"
    for label, pat in (("LOOKUP, 50 clients, unpipelined", r"^LOOKUP -P 1\s"),
                       ("LOOKUP, 50 clients, -P 16", r"^LOOKUP -P 16\s"),
                       ("MLOOKUP 100 keys, 50 clients", r"^MLOOKUP 100 keys")):
        m = re.search(pat + r".*?([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+\(([^|]*)\|([^)]*)\)",
                      log, re.M)
        if not m:
            t.add(label + " (req/s)", "n/a", "n/a", "n/a", ">= 1.00 x redis-server", None, cmd)
            continue
        a, b, r = num(m.group(1)), num(m.group(2)), num(m.group(3))
        base = "redis-server %s: %.0f (%s)" % ("MGET" if "MLOOKUP" in label else "GET", b,
                                               m.group(5).strip())
        t.add(label + " (req/s)", "%.0f (%s)" % (a, m.group(4).strip()), base, "%.2f" % r,
              ">= 1.00 x redis-server", r >= 1.0, cmd)


def socket_cpu_rows(t, log):
    cmd = "`tests/bench/bench_socket_cpu.py build-bench/sidecar/ringside`"
    for label, pat in (("LOOKUP unpipelined", r"^LOOKUP -P 1 vs GET"),
                       ("LOOKUP -P 16", r"^LOOKUP -P 16 vs GET"),
                       ("MLOOKUP 100 keys", r"^MLOOKUP 100 keys vs MGET")):
        m = re.search(pat + r"\s*\|\s*(\d+) \(([^)]*)\)\s+(\d+) \(([^)]*)\).*\|\s*([0-9.]+) "
                      r"\(([^)]*)\)\s*$", log, re.M)
        if not m:
            t.add("server CPU ns per request, " + label, "n/a", "n/a", "n/a",
                  "(no goal; lower is better)", None, cmd)
            continue
        t.add("server CPU ns per request, " + label, "%s (%s)" % (m.group(1), m.group(2)),
              "redis-server: %s (%s)" % (m.group(3), m.group(4)),
              "%s (%s)" % (m.group(5), m.group(6)), "(none; > 1: ringside cheaper)", None,
              cmd)


def tidy(cell):
    """"12.48    12.43-22.13" as "12.48 (12.43-22.13)"."""
    f = cell.split()
    return "%s (%s)" % (f[0], f[1]) if len(f) == 2 else cell


def lmc_rows(t, log):
    cmd = "`build-bench/tests/bench_libmemcached`"
    rows = {}
    for ln in log.splitlines():
        parts = [p.strip() for p in ln.split("|")]
        if len(parts) < 5:
            continue
        head = parts[0].split()
        if len(head) < 4 or not head[-2].isdigit():
            continue
        name = " ".join(head[:-3])
        rows[(name, head[-3], int(head[-2]))] = parts
    for n, goal_ns in ((10, None), (100, 20.0), (1000, 40.0)):
        r = rows.get(("ringside ketama", "fnv1a_64", n))
        base = rows.get(("libmemcached ketama", "fnv1a_64", n))
        hand = rows.get(("hand-written ketama", "fnv1a_64", n))
        if r is None:
            t.add("lookup ns, ketama fnv1a_64, %d nodes" % n, "n/a", "n/a", "n/a", "", None,
                  cmd)
            continue
        ns = r[1].split()[0]
        ratio = r[2] if r[2] not in ("", "-") else "n/a"
        hr = r[3]
        if base is not None:
            b = "libmemcached %s ns; hand-written %s ns" % (base[1].split()[0],
                                                          hand[1].split()[0] if hand else "?")
        else:
            b = "libmemcached aborts above 100 servers; hand-written %s ns" % (
                hand[1].split()[0] if hand else "?")
        goal = ">= 5 x libmemcached" + ("" if goal_ns is None else ", <= %.0f ns" % goal_ns)
        ok = None
        rv = num(ratio.split()[0]) if ratio != "n/a" else None
        nv = num(ns)
        if rv is not None or goal_ns is not None:
            ok = (rv is None or rv >= 5.0) and (goal_ns is None or (nv is not None and
                                                                     nv <= goal_ns))
        t.add("lookup ns incl. key hash, ketama fnv1a_64, %d nodes" % n, tidy(r[1]), b,
              "x%s vs libmemcached; x%s vs hand-written" % (ratio, hr), goal, ok, cmd)
    for n in (10, 100):
        r = rows.get(("ringside ketama", "md5", n))
        base = rows.get(("libmemcached ketama", "md5", n))
        if r is not None and base is not None:
            rv = num(r[2].split()[0]) if r[2] else None
            t.add("lookup ns incl. key hash, ketama md5, %d nodes" % n, tidy(r[1]),
                  "libmemcached %s" % tidy(base[1]), "x" + r[2], ">= 5 x libmemcached",
                  None if rv is None else rv >= 5.0, cmd)
    for n in (100, 1000):
        for (name, hname, size), r in sorted(rows.items()):
            if size != n or not name.startswith("ringside ") or name == "ringside ketama":
                continue
            t.add("lookup ns incl. key hash, %s (%s), %d nodes" % (name[9:], hname, n),
                  tidy(r[1]), "libmemcached ketama fnv1a_64 / hand-written ketama",
                  "x%s; x%s" % (r[2] or "-", r[3] or "-"), "(none)", None, cmd)
    for m in re.finditer(r"^rebuild ketama\s+(\S+)\s+(\d+)\s*\|\s*rebuild ms: ringside ([0-9.]+) "
                         r"\(([^)]*)\), libmemcached ([0-9.]+) \(([^)]*)\): ringside ([0-9.]+)x "
                         r"faster \(([^)]*)\)", log, re.M):
        t.add("rebuild ms, ketama, %s nodes" % m.group(2), "%s (%s)" % (m.group(3), m.group(4)),
              "libmemcached continuum %s (%s)" % (m.group(5), m.group(6)),
              "x%s (%s)" % (m.group(7), m.group(8)), "(SPEC: <= 10 ms at 1000)", None, cmd)


def ring_rows(t, log):
    cmd = "`build-bench/tests/bench_ring`"
    for ln in log.splitlines():
        parts = [p.strip() for p in ln.split("|")]
        if len(parts) != 4:
            continue
        head = parts[0].split()
        if len(head) != 4 or not head[2].isdigit():
            continue
        alg, n = head[0], int(head[2])
        look = parts[1].split()
        reb = parts[2].split()
        if n == 1000 and len(reb) >= 2:
            ok = num(reb[0]) <= 10.0 if alg == "ketama" and num(reb[0]) is not None else None
            t.add("rebuild ms, %s, 1000 nodes" % alg, "%s (%s)" % (reb[0], reb[1]), "-", "-",
                  "<= 10 ms" if alg == "ketama" else "(none)", ok, cmd)
        if alg == "ketama" and n in (100, 1000) and len(look) >= 2:
            goal = 20.0 if n == 100 else 40.0
            t.add("lookup ns (bench_ring, alone), ketama, %d nodes" % n,
                  "%s (%s)" % (look[0], look[1]), "-", "-", "<= %.0f ns" % goal,
                  num(look[0]) is not None and num(look[0]) <= goal, cmd)
        if alg == "maglev" and n == 100:
            imb = num(parts[3])
            t.add("imbalance, maglev, 100 nodes", parts[3], "modula 1.0000", "-", "<= 1.02",
                  None if imb is None else imb <= 1.02, cmd)


def propagation_rows(t, log):
    cmd = "`tests/bench/bench_propagation.py build-bench/sidecar/ringside`"
    pat = r"^%s\s+p50\s+([-0-9.]+)\s+p90\s+([-0-9.]+)\s+p99\s+([-0-9.]+)\s+max\s+([-0-9.]+)"
    # The second block: latency from the PUT being sent, the stricter of the two.
    ours = (list(re.finditer(pat % re.escape("ringside push on SUBSCRIBE ring"), log, re.M))
            or [None])[-1]
    base = (list(re.finditer(pat % re.escape("baseline: urllib blocking query (same PUT)"), log,
                             re.M)) or [None])[-1]
    changes = re.search(r"bench_propagation: (\d+) changes", log)
    if not ours:
        t.add("propagation ms, consul kv put -> push", "n/a", "n/a", "n/a",
              "p50 <= 50, p99 <= 250", None, cmd)
        return
    p50, p99 = num(ours.group(1)), num(ours.group(3))
    b = "blocking query p50 %s, p99 %s" % (base.group(1), base.group(3)) if base else "n/a"
    t.add("propagation ms, consul kv put sent -> new epoch pushed (%s changes)"
          % (changes.group(1) if changes else "?"),
          "p50 %s, p99 %s" % (ours.group(1), ours.group(3)), b,
          "p50 %+.2f ms" % (p50 - num(base.group(1))) if base else "n/a",
          "p50 <= 50, p99 <= 250", p50 <= 50 and p99 <= 250, cmd)


def start_rows(t, log):
    cmd = "`tests/bench/bench_start.py build-bench/sidecar/ringside`"
    row = r"^%s\s+([0-9.]+)\s+\(([^)]*)\)"
    ours = re.search(row % re.escape("ringside from snapshot (consul-kv, Consul down)"), log,
                     re.M)
    static = re.search(row % re.escape("baseline: ringside static, no snapshot"), log, re.M)
    redis = re.search(row % re.escape("baseline: redis-server, first GET"), log, re.M)
    floor = re.search(row % re.escape("floor: `ringside --version`, exec to exit"), log, re.M)
    if not ours:
        t.add("start to first answer from a snapshot, ms", "n/a", "n/a", "n/a", "<= 50 ms",
              None, cmd)
        return
    base = []
    if static:
        base.append("static, no snapshot %s" % static.group(1))
    if redis:
        base.append("redis-server %s" % redis.group(1))
    if floor:
        base.append("exec of `ringside --version` %s" % floor.group(1))
    ratio = "%.2f vs static" % (num(static.group(1)) / num(ours.group(1))) if static else "-"
    t.add("start to first answer from a snapshot (1000 nodes), ms",
          "%s (%s)" % (ours.group(1), ours.group(2)), "; ".join(base), ratio, "<= 50 ms",
          num(ours.group(1)) <= 50.0, cmd)


def memory_rows(t, log):
    cmd = "`tests/bench/bench_memory.py build-bench/sidecar/ringside`"
    row = r"^%s\s+([0-9.]+) \(([^)]*)\)"
    hwm = re.search(row % r"ringside, \d+ clients: VmHWM \(peak\)", log, re.M)
    rss = re.search(row % r"ringside, \d+ clients: VmRSS", log, re.M)
    rd = re.search(row % r"baseline: redis-server, \d+ clients: VmRSS", log, re.M)
    if not hwm:
        t.add("memory, 1000 nodes + 1000 idle clients, MiB", "n/a", "n/a", "n/a",
              "<= 20 MB", None, cmd)
        return
    peak = num(hwm.group(1))
    t.add("memory, 1000 nodes + 1000 idle clients (MiB)",
          "RSS %s, peak %s (%s)" % (rss.group(1) if rss else "?", hwm.group(1), hwm.group(2)),
          "redis-server, same clients, RSS %s" % rd.group(1) if rd else "n/a",
          "%.2f" % (num(rd.group(1)) / num(rss.group(1))) if rd and rss else "-",
          "<= 20 MB (19.07 MiB)", peak * 1048576 / 1e6 <= 20.0, cmd)


def movement_rows(t, log):
    cmd = "`tests/bench/bench_movement.py build-bench/sidecar/ringctl`"
    rows = {}
    for ln in log.splitlines():
        m = re.match(r"^(\S+)\s+(\S+)\s+(\d+)\s+(add|remove)\s*\|\s*([0-9.]+)%.*?\)\s+([0-9.]+)%"
                     r"\s+([0-9.]+)%\s+([0-9.]+)\s+(\d+)\s*\|\s*([0-9.]+)\s+([0-9.]+)", ln)
        if m:
            rows[(m.group(1), int(m.group(3)), m.group(4))] = m
    if not rows:
        t.add("keys moved, one node joins", "n/a", "n/a", "n/a", "", None, cmd)
        return
    for n in (10, 100, 1000):
        k, mo = rows.get(("ketama", n, "add")), rows.get(("modula", n, "add"))
        x = rows.get(("ketama_xxh3", n, "add"))
        if k and mo:
            xi = num(k.group(8))
            t.add("keys moved when 1 node joins %d, ketama (twemproxy)" % n,
                  "%s%% = %s x ideal (%s%%)" % (k.group(6), k.group(8), k.group(7)),
                  "modulo %s%%" % mo.group(6),
                  "%.0f x less than modulo" % (num(mo.group(6)) / max(num(k.group(6)), 1e-9)),
                  "<= 1.1 x ideal", xi <= 1.1,
                  cmd + (("; ketama_xxh3: %s x ideal" % x.group(8)) if x else ""))
    for n in (10, 100, 1000):
        k, mo = rows.get(("ketama", n, "remove")), rows.get(("modula", n, "remove"))
        if k and mo:
            t.add("keys moved when 1 node leaves %d, ketama" % n,
                  "%s%% = %s x ideal (%s%%)" % (k.group(6), k.group(8), k.group(7)),
                  "modulo %s%%" % mo.group(6), "-", "(none)", None, cmd)
    for alg in ("ketama", "maglev", "rendezvous", "ketama_xxh3", "hash_ring", "vnode_sha256"):
        r = rows.get((alg, 100, "add"))
        if r:
            goal, ok = "(none)", None
            if alg == "maglev":
                goal, ok = "<= 1.02", num(r.group(10)) <= 1.02
            elif alg == "ketama":
                goal = "as twemproxy (same ring)"
            t.add("imbalance (max/fair share), %s, 100 nodes" % alg, r.group(10),
                  "modulo %s" % rows[("modula", 100, "add")].group(10)
                  if ("modula", 100, "add") in rows else "-", "-", goal, ok, cmd)


def build(d):
    t = Table()
    socket_rows(t, read(d, "bench_socket.log"))
    socket_cpu_rows(t, read(d, "bench_socket_cpu.log"))
    lmc_rows(t, read(d, "bench_libmemcached.log"))
    ring_rows(t, read(d, "bench_ring.log"))
    propagation_rows(t, read(d, "bench_propagation.log"))
    start_rows(t, read(d, "bench_start.log"))
    memory_rows(t, read(d, "bench_memory.log"))
    movement_rows(t, read(d, "bench_movement.log"))
    return t


def full_report(d, t):
    out = [BEGIN, "", "### Machine and summary table of the run", ""]
    machine = read(d, "machine.log").strip()
    if machine:
        out += ["```", machine, "```", ""]
    out += [t.markdown(), ""]
    for name, title, _ in SECTIONS[1:]:
        log = read(d, name).rstrip()
        if not log:
            continue
        cmd = read(d, name.replace(".log", ".cmd")).strip()
        out += ["#### %s" % title, ""]
        if cmd:
            out += ["`%s`" % cmd, ""]
        out += ["```", log, "```", ""]
    out.append(END)
    return "\n".join(out) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--write", metavar="FILE")
    a = ap.parse_args(argv[1:])
    t = build(a.dir)
    print(t.markdown())
    if a.write:
        block = full_report(a.dir, t)
        try:
            with open(a.write) as f:
                text = f.read()
        except FileNotFoundError:
            text = "# Benchmarks\n\n"
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + block.rstrip("\n") + text[text.index(END) +
                                                                      len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block
        with open(a.write + ".new", "w") as f:
            f.write(text)
        os.replace(a.write + ".new", a.write)
        print("\nwrote the report into %s" % a.write)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
