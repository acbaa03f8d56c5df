#!/usr/bin/env bash
# Fails when a C file differs from .clang-format's layout. Fix with:
#   clang-format -i $(git ls-files '*.c' '*.h')
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
[ -z "$files" ] && exit 0
clang-format --dry-run --Werror $files
