#!/usr/bin/env bash
# The demo: builds the example programs with the `host` preset and runs the headline one.
# Installs missing Debian packages first when run as root (see scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
dppf_ensure_packages

jobs=$(nproc 2>/dev/null || echo 2)
cmake --preset host >/dev/null
cmake --build --preset host --parallel "$jobs" --target quickstart
echo "== quickstart: 4 in-process workers, exact SGD, parameter averaging =="
build/host/examples/quickstart/quickstart 4 25
