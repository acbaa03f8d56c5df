#!/usr/bin/env python3
"""Compares common/hash.c (through the hashdump tool) with the Python oracle on 2000
random keys (fixed seed, lengths 0..64, bytes 0..255). Exits non-zero on any difference.

Usage: test_hash_oracle.py PATH/TO/hashdump
"""

import os
import random
import subprocess
import sys

SEED = 20240611
NKEYS = 2000
MAX_LEN = 64
MAX_SHOWN = 25

ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "oracle",
                      "twemproxy_hashes.py")


def make_keys():
    rng = random.Random(SEED)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randint(0, MAX_LEN)))
            for _ in range(NKEYS)]
    keys[0] = b""  # make sure the empty key is in, whatever the seed gives
    return keys


def run(cmd, stdin_text):
    proc = subprocess.run(cmd, input=stdin_text, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout.splitlines()


def parse(lines, who):
    """Lines "name hexkey value" -> ordered list of ((name, hexkey), value)."""
    rows = []
    for i, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) != 3:
            sys.exit(f"FAIL: {who} line {i} is not 'name hexkey value': {line!r}")
        rows.append(((fields[0], fields[1]), fields[2].lower()))
    return rows


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    hashdump = argv[1]
    keys = make_keys()
    stdin_text = "".join((k.hex() if k else "-") + "\n" for k in keys)

    c_rows = parse(run([hashdump], stdin_text), "hashdump")
    py_rows = parse(run([sys.executable, ORACLE, "-"], stdin_text), "oracle")

    problems = []
    if len(c_rows) != len(py_rows):
        problems.append(f"line counts differ: hashdump {len(c_rows)}, oracle {len(py_rows)}")
    mismatches = 0
    for (c_id, c_val), (py_id, py_val) in zip(c_rows, py_rows):
        if c_id != py_id:
            problems.append(f"out of step: hashdump {c_id}, oracle {py_id}")
            break
        if c_val != py_val:
            mismatches += 1
            if mismatches <= MAX_SHOWN:
                name, hexkey = c_id
                problems.append(f"{name:<14} key {hexkey}: C {c_val}, oracle {py_val}")
    if mismatches > MAX_SHOWN:
        problems.append(f"... and {mismatches - MAX_SHOWN} more mismatches")

    if problems:
        print(f"FAIL: common/hash.c and the oracle disagree ({mismatches} of "
              f"{len(py_rows)} values):")
        for p in problems:
            print("  " + p)
        return 1
    print(f"ok: {len(keys)} keys x {len(py_rows) // max(len(keys), 1)} hashes agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
