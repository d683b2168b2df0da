#!/bin/bash
# The test command: installs dependencies, builds with -Werror and runs every
# test (unit, shell, real guest). Usage: tests/run-all.sh [BUILD_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}

bash "$src/tests/install-deps.sh"
cmake -S "$src" -B "$build" -DCL_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"

cd "$build"
# ctest prints the time of each suite (label) at the end.
ctest --output-on-failure --timeout 1500
