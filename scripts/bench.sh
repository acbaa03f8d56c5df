#!/usr/bin/env bash
# Every benchmark, one command: builds (Release, into build-bench), runs each benchmark next
# to its baseline in the same run, and prints one report ending in a summary table (every
# figure, its baseline, the ratio, the goal of SPEC.md section 11 and whether it is met).
# The logs stay in build-bench/bench-report/; BENCHMARKS.md explains the latest run.
#
# Usage: scripts/bench.sh [--quick] [--write]
#   --quick  smoke options for every benchmark (about two minutes): checks they all run
#   --write  also put the machine, the table and the logs into BENCHMARKS.md (between its
#            bench-report markers; the analysis around them is left alone)
# The full run takes 10-15 minutes on 2 cores. Run it on a quiet machine: figures are
# medians of alternating runs and the ratios are what to compare across machines.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
quick=0
write=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --write) write=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

./scripts/install-deps.sh >/dev/null || exit 1
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build build-bench -j "$(nproc)" >/dev/null || exit 1
b=build-bench
py=/usr/bin/python3

# bench_libmemcached is a CMake target once tests/CMakeLists.txt has it; until then, build
# it here the same way (Release flags, against the project's library).
lmc=$b/tests/bench_libmemcached
if [ ! -x "$lmc" ]; then
    lmc=$b/bench_libmemcached
    # shellcheck disable=SC2046 # pkg-config's flags are meant to split
    cc -O3 -DNDEBUG -std=gnu11 -D_GNU_SOURCE -Icommon tests/bench/bench_libmemcached.c \
        $b/common/libringside_common.a \
        $(pkg-config --cflags --libs libmemcached libxxhash jansson) -lcrypto -lm -o "$lmc" ||
        exit 1
fi

out=$b/bench-report
rm -rf "$out"
mkdir -p "$out"
failed=()

# section LOG TITLE COMMAND...: run one benchmark, its output to the terminal and LOG; a
# benchmark that fails is reported at the end and does not stop the others.
section() {
    local log=$1 title=$2
    shift 2
    echo
    echo "## $title"
    echo "\$ $*"
    echo "$*" >"$out/${log%.log}.cmd"
    "$@" 2>&1 | tee "$out/$log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "(exit $rc)" | tee -a "$out/$log"
        failed+=("$title")
    fi
}

{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), kernel $(uname -r)"
    echo "tools: $(cc --version | sed -n 1p); $(redis-server --version | cut -d' ' -f1-3); libmemcached $(pkg-config --modversion libmemcached); $("$top/.deps/consul/usr/bin/consul" version 2>/dev/null | sed -n 1p)"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average at start: $(cut -d' ' -f1-3 /proc/loadavg), git $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '+changes')"
    echo "mode: $([ "$quick" -eq 1 ] && echo 'quick (smoke options: not figures to quote)' || echo full)"
} | tee "$out/machine.log"

if [ "$quick" -eq 1 ]; then
    section bench_socket.log "Socket lookups against redis-server" \
        tests/bench/bench_socket.sh "$b" --smoke
    section bench_socket_cpu.log "Socket lookups, server CPU per request" \
        $py tests/bench/bench_socket_cpu.py "$b/sidecar/ringside" --smoke
    section bench_libmemcached.log "In-process lookups next to libmemcached" "$lmc" --smoke
    section bench_ring.log "In-process lookups and rebuilds, every algorithm" \
        "$b/tests/bench_ring" --smoke
    section bench_propagation.log "Consul change propagation" env RS_DEPS_DIR="$top/.deps" \
        $py tests/bench/bench_propagation.py "$b/sidecar/ringside" --changes 10
    section bench_start.log "Start from a snapshot" \
        $py tests/bench/bench_start.py "$b/sidecar/ringside" --smoke
    section bench_memory.log "Memory" $py tests/bench/bench_memory.py "$b/sidecar/ringside" --smoke
    section bench_movement.log "Movement and balance" \
        $py tests/bench/bench_movement.py "$b/sidecar/ringctl" --smoke
else
    section bench_socket.log "Socket lookups against redis-server" \
        tests/bench/bench_socket.sh "$b" --runs 7 --requests 300000
    section bench_socket_cpu.log "Socket lookups, server CPU per request" \
        $py tests/bench/bench_socket_cpu.py "$b/sidecar/ringside" --runs 5 --requests 300000
    section bench_libmemcached.log "In-process lookups next to libmemcached" "$lmc"
    section bench_ring.log "In-process lookups and rebuilds, every algorithm" "$b/tests/bench_ring"
    section bench_propagation.log "Consul change propagation" env RS_DEPS_DIR="$top/.deps" \
        $py tests/bench/bench_propagation.py "$b/sidecar/ringside" --changes 100
    section bench_start.log "Start from a snapshot" \
        $py tests/bench/bench_start.py "$b/sidecar/ringside" --runs 21
    section bench_memory.log "Memory" $py tests/bench/bench_memory.py "$b/sidecar/ringside" --runs 5
    section bench_movement.log "Movement and balance" \
        $py tests/bench/bench_movement.py "$b/sidecar/ringctl" --seeds 3
fi

echo
echo "## Summary"
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out/machine.log"
if [ "$write" -eq 1 ]; then
    $py tests/bench/bench_report.py "$out" --write BENCHMARKS.md
else
    $py tests/bench/bench_report.py "$out"
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo
    echo "bench.sh: these benchmarks failed: ${failed[*]} (logs in $out)" >&2
    exit 1
fi
