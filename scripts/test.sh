#!/usr/bin/env bash
# Builds dppf with the `host` preset (Release; tests, examples, benchmarks, MPI) and runs every
# test: `cmake --workflow --preset host`. Installs missing Debian packages first when run as
# root (see scripts/deps.sh). Safe to run again: it rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
dppf_ensure_packages

jobs=$(nproc 2>/dev/null || echo 2)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$jobs}
export CTEST_PARALLEL_LEVEL=${CTEST_PARALLEL_LEVEL:-$jobs}
exec cmake --workflow --preset host
