#!/usr/bin/env bash
# Socket lookups next to a baseline in the same run: redis-benchmark against ringside's
# LOOKUP and against redis-server answering GET on its own Unix socket, same load,
# alternating runs; prints the median requests/s of each and their ratio.
# Usage: tests/bench/bench_socket.sh [BUILD_DIR] [--runs N] [--requests N] [--smoke]
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
build="$top/build"
runs=5
requests=300000
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --requests) requests=$2; shift 2 ;;
        --smoke) runs=1; requests=2000; shift ;;
        -h|--help) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) build=$1; shift ;;
    esac
done
ringside="$build/sidecar/ringside"
[ -x "$ringside" ] || { echo "bench_socket: no $ringside (build first)" >&2; exit 1; }

work=$(mktemp -d /tmp/rs-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A 100-node ketama ring, the size SPEC 11 quotes.
nodes=""
for i in $(seq 0 99); do
    nodes="$nodes{\"id\":\"cache-$i\",\"address\":\"127.0.0.1:$((7000 + i))\"},"
done
cat > "$work/ringside.json" <<JSON
{"ring": {"name": "bench"},
 "listen": {"socket": "$work/ringside.sock", "idle_timeout": "0"},
 "http": {"enabled": false}, "state_dir": "$work/state",
 "membership": {"source": "static", "nodes": [${nodes%,}]},
 "log": {"level": "warn"}}
JSON
"$ringside" --config "$work/ringside.json" 2>"$work/ringside.log" &
pids+=($!)
redis-server --port 0 --unixsocket "$work/redis.sock" --save '' --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for sock in ringside.sock redis.sock; do
    for _ in $(seq 1 200); do
        redis-cli -s "$work/$sock" PING >/dev/null 2>&1 && break
        sleep 0.05
    done
    redis-cli -s "$work/$sock" PING >/dev/null
done
redis-cli -s "$work/redis.sock" SET user:1234567890 127.0.0.1:7042 >/dev/null

rps() { # socket pipeline command...
    local sock=$1 pipe=$2
    shift 2
    redis-benchmark -s "$sock" -c 50 -n "$requests" -P "$pipe" -q "$@" 2>/dev/null \
        | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -n1 | cut -d' ' -f1
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
minmax() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }

keys=$(printf 'MLOOKUP'; for i in $(seq 1 100); do printf ' user:%08d' "$i"; done)
printf '%-34s %14s %14s %7s   %s\n' "load (50 clients)" "ringside r/s" "redis GET r/s" "ratio" "(min-max ringside | redis)"
for load in "1|LOOKUP user:1234567890|GET user:1234567890" \
            "16|LOOKUP user:1234567890|GET user:1234567890" \
            "1|$keys|MGET ${keys#MLOOKUP }"; do
    pipe=${load%%|*}
    rest=${load#*|}
    ours=${rest%%|*}
    theirs=${rest#*|}
    a=()
    b=()
    for _ in $(seq 1 "$runs"); do
        # shellcheck disable=SC2086
        a+=("$(rps "$work/ringside.sock" "$pipe" $ours)")
        # shellcheck disable=SC2086
        b+=("$(rps "$work/redis.sock" "$pipe" $theirs)")
    done
    for v in "${a[@]}" "${b[@]}"; do
        # A run that printed no figure (a failed command, a crashed server) is a failure.
        awk -v v="$v" 'BEGIN { exit !(v > 0) }' || { echo "bench_socket: no figure for '$ours' / '$theirs'" >&2; exit 1; }
    done
    ma=$(printf '%s\n' "${a[@]}" | median)
    mb=$(printf '%s\n' "${b[@]}" | median)
    label="${ours%% *} -P $pipe"
    [ "${ours%% *}" = MLOOKUP ] && label="MLOOKUP 100 keys vs MGET -P $pipe"
    printf '%-34s %14s %14s %7.2f   (%s | %s)\n' "$label" "$ma" "$mb" \
        "$(echo "$ma $mb" | awk '{ print ($2 > 0) ? $1 / $2 : 0 }')" \
        "$(printf '%s\n' "${a[@]}" | minmax)" "$(printf '%s\n' "${b[@]}" | minmax)"
done
echo "median of $runs alternating runs of $requests requests each; ratio > 1: ringside faster"
