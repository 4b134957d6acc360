#!/usr/bin/env bash
# The demo: DPPF against its peers.
#   1. examples/valley: a sharp and a wide basin; DPPF against LocalSGD, with pictures.
#   2. examples/fashion_mnist (when built): DPPF, LocalSGD and DDP with M = 4 on real data.
# Installs missing Debian packages first when run as root (see scripts/deps.sh). Extra arguments
# go to the Fashion-MNIST example (e.g. scripts/demo.sh --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
dppf_ensure_packages

jobs=$(nproc 2>/dev/null || echo 2)
cmake --preset host >/dev/null
cmake --build --preset host --parallel "$jobs" --target valley
mkdir -p out
echo "== valley: 4 workers start on the rim of a sharp basin; a wide basin lies 2.2 away =="
for method in dppf local_sgd; do
  build/host/examples/valley/valley --method "$method" --svg "out/valley_${method}.svg" | tail -n 1
done
echo "(pictures: out/valley_dppf.svg, out/valley_local_sgd.svg)"

if cmake --build --preset host --parallel "$jobs" --target fashion_mnist >/dev/null 2>&1; then
  echo "== fashion_mnist: DPPF, LocalSGD and DDP, 4 workers on the CPU =="
  build/host/examples/fashion_mnist/fashion_mnist --method dppf,local_sgd,ddp --workers 4 --svg out/fashion_mnist.svg "$@"
else
  echo "(fashion_mnist not built: it needs OpenBLAS and zlib; run scripts/test.sh as root to install them)"
fi
