#!/usr/bin/env bash
# Every benchmark, one command: builds (Release), then prints in-process ring figures,
# socket throughput next to redis-server, and Consul change propagation next to a bare
# blocking query. Figures go to stdout; BENCHMARKS.md records the latest run.
# Usage: scripts/bench.sh [--quick]   (--quick: fewer runs, for a smoke check)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

./scripts/install-deps.sh >/dev/null
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j "$(nproc)" >/dev/null

echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), $(uname -r)"
echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## In-process lookups and rebuilds (build-bench/tests/bench_ring)"
if [ "$quick" -eq 1 ]; then build-bench/tests/bench_ring --smoke; else build-bench/tests/bench_ring; fi
echo
echo "## Socket lookups against redis-server (tests/bench/bench_socket.sh)"
if [ "$quick" -eq 1 ]; then
    tests/bench/bench_socket.sh build-bench --smoke
else
    tests/bench/bench_socket.sh build-bench --runs 5 --requests 300000
fi
if [ -f tests/bench/bench_propagation.py ]; then
    echo
    echo "## Consul change propagation (tests/bench/bench_propagation.py)"
    RS_DEPS_DIR="$top/.deps" /usr/bin/python3 tests/bench/bench_propagation.py \
        build-bench/sidecar/ringside --changes "$([ "$quick" -eq 1 ] && echo 10 || echo 100)"
fi
