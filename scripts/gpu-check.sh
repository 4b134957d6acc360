#!/usr/bin/env bash
# One command on a GPU machine (no network needed; CUDA, CMake and optionally PyTorch present):
# builds the `cuda` preset, runs the GPU tests (ctest -L gpu) and the GPU benchmarks, compares the
# SGD and AdamW steps with PyTorch's fused optimizers when torch with CUDA is importable, and
# prints a summary table. Designed to finish well inside 10 minutes on an H100/H200 node.
#
#   scripts/gpu-check.sh [--n N] [--jobs J] [--build-all]
#
# --build-all builds the whole preset (host tests, examples, benchmarks too); by default only the
# GPU targets are built, which is what the GPU check needs. Output goes to build/cuda/gpu-check/.
set -euo pipefail

cd "$(dirname "$0")/.."
n=$((1 << 26))
jobs=$(nproc 2>/dev/null || echo 4)
build_all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-all) build_all=1; shift ;;
    *) echo "usage: $0 [--n N] [--jobs J] [--build-all]" >&2; exit 2 ;;
  esac
done

build=${DPPF_GPU_CHECK_BUILD:-build/cuda}  # another directory: configured without the preset
out=$build/gpu-check
start=$(date +%s)
stage() { echo; echo "== $1 ($(( $(date +%s) - start )) s)"; }

stage "device"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "nvidia-smi not found"
fi

stage "configure (cuda preset)"
mkdir -p "$out"
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
configured=0
if [ -z "${DPPF_GPU_CHECK_BUILD:-}" ] && [ -f CMakePresets.json ] && cmake --list-presets 2> /dev/null | grep -q '"cuda"'; then
  timeout 120 cmake --preset cuda > "$out/configure.log" 2>&1 && configured=1
fi
if [ "$configured" = 0 ]; then
  # No preset, or a dependency of the full preset missing here (Google Benchmark, examples'
  # packages): the GPU tests need only CUDA, doctest and CMake.
  [ -n "${DPPF_GPU_CHECK_BUILD:-}" ] || echo "cuda preset did not configure (see $out/configure.log); trying tests only"
  timeout 120 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDPPF_ENABLE_CUDA=ON \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="75;80;90" \
    -DDPPF_BUILD_BENCHMARKS=OFF -DDPPF_BUILD_EXAMPLES=OFF > "$out/configure.log" 2>&1 ||
    { tail -20 "$out/configure.log"; echo "configure failed"; exit 1; }
fi
mkdir -p "$out"

stage "build"
if [ "$build_all" = 1 ]; then
  targets=all
else
  # The targets behind the GPU tests, from CTest's list: test_gpu, test_nccl, bench.bench_gpu
  # (target bench_gpu) and header:dppf/x.cuh (target header_dppf_x_cuh).
  targets=$(ctest --test-dir "$build" -N -L gpu | sed -n 's/^ *Test *#[0-9]*: *//p' |
    sed -e 's/^bench\.//' -e 's/^header:\(.*\)$/header_\1/' -e '/^header_/s/[^A-Za-z0-9_]/_/g' | tr '\n' ' ')
  echo "targets: $targets"
fi
set +e
# shellcheck disable=SC2086
timeout 420 cmake --build "$build" -j "$jobs" --target ${targets:-test_gpu} > "$out/build.log" 2>&1
build_rc=$?
set -e
if [ "$build_rc" != 0 ]; then
  grep -E "error|FAILED" "$out/build.log" | head -20
  echo "build failed (exit $build_rc, $out/build.log): tests whose targets did not build show as not run"
fi

stage "GPU tests (ctest -L gpu)"
set +e
timeout 240 ctest --test-dir "$build" -L gpu --output-on-failure --timeout 200 | tee "$out/ctest.log"
tests_rc=${PIPESTATUS[0]}
set -e

stage "GPU benchmarks"
bench="$build/bench/bench_gpu"
if [ ! -x "$bench" ]; then
  # Benchmarks were not configured (no Google Benchmark here): bench_gpu needs only nvcc.
  timeout 300 "$nvcc" -std=c++20 -O3 -DNDEBUG -arch=native -Iinclude bench/gpu/bench_gpu.cu -o "$out/bench_gpu"
  bench="$out/bench_gpu"
fi
set +e
timeout 120 "$bench" --n "$n" --csv > "$out/bench.csv"
bench_rc=$?
set -e
[ "$bench_rc" = 0 ] || echo "bench_gpu failed (exit $bench_rc)"

stage "PyTorch fused optimizers"
py=""
for cand in python3 /usr/bin/python3 python; do
  if command -v "$cand" > /dev/null && "$cand" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
    py=$cand
    break
  fi
done
if [ -n "$py" ]; then
  timeout 120 "$py" - "$n" > "$out/torch.csv" <<'PY' || echo "PyTorch comparison failed"
import sys, torch
n = int(sys.argv[1])
dev = torch.device("cuda")
p = torch.nn.Parameter(torch.ones(n, device=dev))
p.grad = torch.full((n,), 1e-3, device=dev)
def best(step, reps=20):
    step(); torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t = 1e30
    for _ in range(reps):
        a.record(); step(); b.record(); b.synchronize()
        t = min(t, a.elapsed_time(b) * 1e-3)
    return t
print("device,op,n,seconds,bytes_per_s")
for name, make, words in [
        ("torch sgd momentum step (fused)", lambda: torch.optim.SGD([p], lr=0.01, momentum=0.9, fused=True), 5),
        ("torch sgd momentum step (foreach)", lambda: torch.optim.SGD([p], lr=0.01, momentum=0.9, foreach=True), 5),
        ("torch adamw step (fused)", lambda: torch.optim.AdamW([p], lr=1e-3, fused=True), 7),
        ("torch adamw step (foreach)", lambda: torch.optim.AdamW([p], lr=1e-3, foreach=True), 7)]:
    try:
        opt = make()
    except (TypeError, RuntimeError) as e:  # older torch: no fused SGD
        print(f"# {name}: {e}", file=sys.stderr)
        continue
    t = best(opt.step)
    print(f"{torch.cuda.get_device_name()},{name},{n},{t:.9g},{words * 4 * n / t:.6g}")
PY
else
  echo "no PyTorch with CUDA: comparison skipped" | tee "$out/torch.csv"
fi

stage "summary"
python_fmt=$(command -v python3 || command -v /usr/bin/python3 || true)
if [ -n "$python_fmt" ] && [ "$bench_rc" = 0 ] && [ -s "$out/bench.csv" ]; then
  "$python_fmt" - "$out/bench.csv" "$out/torch.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
copy = float(rows[0]["bytes_per_s"])
print(f"device: {rows[0]['device']}, n = {rows[0]['n']} fp32")
print(f"{'operation':44} {'time (us)':>10} {'GB/s':>8} {'of copy':>8}")
def show(r):
    bw = float(r["bytes_per_s"])
    print(f"{r['op']:44} {float(r['seconds'])*1e6:10.1f} {bw*1e-9:8.1f} {100*bw/copy:7.1f}%")
for r in rows: show(r)
try:
    lines = [l for l in open(sys.argv[2]) if not l.startswith("#")]
    for r in csv.DictReader(lines):
        if r.get("bytes_per_s"): show(r)
except (OSError, KeyError):
    pass
PY
else
  cat "$out/bench.csv" 2> /dev/null || true
fi
echo
grep -E "tests passed|tests failed" "$out/ctest.log" || true
echo "total $(( $(date +%s) - start )) s; logs in $out"
[ "$build_rc" = 0 ] || exit "$build_rc"
exit "$tests_rc"
