#!/usr/bin/env bash
# The whole test suite: install dependencies, build with -Werror, run every test (unit
# and integration, real nutcracker/redis included), then rebuild with ASan+UBSan and run
# everything again under them, then run each libFuzzer target briefly.
# Usage: scripts/test.sh [--quick]
#   --quick   skip the sanitizer and fuzz builds
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

./scripts/install-deps.sh

echo "== format"
./scripts/check-format.sh

jobs=$(nproc)
echo "== build (RelWithDebInfo, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGSIDE_WERROR=ON >/dev/null
cmake --build build -j "$jobs"

echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs"

if [ "$quick" -eq 0 ]; then
    echo "== ASan+UBSan build, all tests again"
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGSIDE_WERROR=ON \
        -DRINGSIDE_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
    cmake --build build-asan -j "$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j "$jobs"

    echo "== fuzz targets (libFuzzer, 20 s each)"
    cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGSIDE_FUZZ=ON \
        -DCMAKE_C_COMPILER=clang >/dev/null
    cmake --build build-fuzz -j "$jobs"
    ctest --test-dir build-fuzz --output-on-failure -j "$jobs" -L fuzz
fi
echo "== all tests passed"
