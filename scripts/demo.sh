#!/usr/bin/env bash
# The newcomer's first run: install dependencies, build, and show a ring working on an
# embedded default (static membership, no Consul). Until the daemon lands, this shows
# the ring core through ringctl's offline commands.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"

ringctl=build/sidecar/ringctl
echo
echo "== Where do these keys go on a 3-node ring? (ringctl place)"
keys='user:42
session:9f86d081
cart:42:items'
printf '%s\n' "$keys" | "$ringctl" place \
    --node 127.0.0.1:6379,id=cache-a --node 127.0.0.1:6380,id=cache-b \
    --node 127.0.0.1:6381,id=cache-c | paste -d' ' <(printf '%s\n' "$keys") - \
    | awk '{ printf "  %-18s -> %s (%s)\n", $1, $2, $3 }'
echo
echo "== Adding a 4th node to 3: consistent hashing (ketama) against modulo"
"$ringctl" simulate --nodes 3 --add 1 --keys 100000
echo
echo "== Removing 1 node of 40"
"$ringctl" simulate --nodes 40 --remove 1 --keys 100000
