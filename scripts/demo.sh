#!/usr/bin/env bash
# The newcomer's first run: install dependencies, build, start the ringside daemon on
# the embedded static example (configs/demo.json: 3 nodes, no Consul), and show apps'
# view of it: redis-cli and ringctl asking where keys live. Stops the daemon at the end
# (or leaves it running with --keep).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
keep=0
[ "${1:-}" = "--keep" ] && keep=1

./scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"

config=configs/demo.json
sock=/tmp/ringside-demo/ringside.sock
log=/tmp/ringside-demo.log
ringctl=build/sidecar/ringctl

echo
echo "== Starting ringside --config $config (log: $log)"
build/sidecar/ringside --config "$config" 2>"$log" &
pid=$!
stop() {
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
}
if [ "$keep" -eq 0 ]; then
    trap stop EXIT
fi
for _ in $(seq 1 100); do
    redis-cli -s "$sock" PING >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "ringside did not start" >&2; exit 1; }
    sleep 0.05
done

echo
echo "== redis-cli -s $sock LOOKUP user:42"
redis-cli -s "$sock" LOOKUP user:42
echo
echo "== redis-cli -s $sock LOOKUPN session:9f86d081 2   (primary, then replica)"
redis-cli -s "$sock" LOOKUPN session:9f86d081 2
echo
echo "== ringctl --socket $sock lookup user:42 cart:7 session:9f86d081"
"$ringctl" --socket "$sock" lookup user:42 cart:7 session:9f86d081
echo
echo "== ringctl --socket $sock nodes"
"$ringctl" --socket "$sock" nodes
echo
echo "== ringctl --socket $sock route user:42"
"$ringctl" --socket "$sock" route user:42
echo
echo "== What consistent hashing buys: adding a 4th node to 3 (ringctl simulate)"
"$ringctl" simulate --nodes 3 --add 1 --keys 100000
echo
echo "== The daemon's log"
cat "$log"
if [ "$keep" -eq 1 ]; then
    echo
    echo "ringside is still running (pid $pid): redis-cli -s $sock LOOKUP anykey; kill $pid to stop."
fi
