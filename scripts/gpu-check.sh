#!/usr/bin/env bash
# One command on a GPU machine (no network needed; CUDA, CMake and optionally PyTorch present):
# builds the `cuda` preset, runs the GPU tests (ctest -L gpu) and the GPU benchmarks, compares the
# SGD and AdamW steps with PyTorch's fused optimizers when torch with CUDA is importable, and
# prints a summary table. Every stage has a time limit taken from one budget (default 540 s), so
# the whole check ends inside 10 minutes even when a stage hangs.
#
#   scripts/gpu-check.sh [--n N] [--jobs J] [--build-all] [--budget SECONDS] [--sanitize]
#
# --build-all builds the whole preset (host tests, examples, benchmarks too); by default only the
# GPU targets are built, which is what the GPU check needs. --sanitize also runs test_gpu under
# compute-sanitizer (memcheck; reported, does not change the exit status; needs budget: about
# a minute more). Output goes to build/cuda/gpu-check/ (summary.txt: the table and the
# verdicts), and is copied to $OUT as gpu-check-* when $OUT names a directory (the lent GPU
# machines send $OUT back).
#
# What a bare GPU image lacks is worked around: the preset is configured for the GPU's own
# architecture only (nvidia-smi's compute capability; the preset's list otherwise); when the
# preset cannot be configured (no Google Benchmark, no MPI, examples' packages) the GPU tests are
# configured alone; when the system has no doctest the copy in tests/gpu/doctest is used; NCCL
# is taken from the CUDA tree, $NCCL_ROOT, or PyTorch's nvidia-nccl wheel.
#
# Exit status: 0 when the build, every GPU test and the benchmark succeeded; otherwise the
# first failure's.
#
# For the script's own test (tests/gpu/gpu_check_script_test.sh), two pure functions:
#   scripts/gpu-check.sh --print-targets CTEST_N_OUTPUT BUILD_HELP_OUTPUT
#   scripts/gpu-check.sh --summarize BENCH_CSV TORCH_CSV
set -euo pipefail

# The build targets behind the GPU tests, from `ctest -N -L gpu` output ($1) and the build
# system's target list (`cmake --build <dir> --target help`, $2): test_gpu, test_nccl,
# bench.bench_gpu (target bench_gpu), example.fashion_mnist (target fashion_mnist, the example run
# on the GPU), header:dppf/x.cuh (target header_dppf_x_cuh). A test whose
# name is no target (a test running a script or an example) is skipped here, not passed to the
# build, where one unknown target would stop every other from being built.
gpu_targets() {
  local known
  known=$(sed -n -e 's/^\([A-Za-z0-9_.+-][A-Za-z0-9_.+-]*\): .*/\1/p' -e 's/^\.\.\. \([A-Za-z0-9_.+-][A-Za-z0-9_.+-]*\).*/\1/p' "$2")
  sed -n 's/^ *Test *#[0-9]*: *//p' "$1" |
    sed -e 's/[[:space:]]*$//' -e 's/^bench\.//' -e 's/^example\.//' -e 's/^header:\(.*\)$/header_\1/' \
      -e '/^header_/s/[^A-Za-z0-9_]/_/g' |
    while read -r t; do
      if [ -n "$t" ] && printf '%s\n' "$known" | grep -qxF -- "$t"; then
        printf '%s ' "$t"
      elif [ -n "$t" ]; then
        echo "note: test '$t' has no build target of that name; not built by name" >&2
      fi
    done
}

# The summary table: every benchmark row as a fraction of the device-to-device copy measured in
# the same run (the first row), then PyTorch's rows (if any) against the same copy.
summarize() {
  "${python_fmt:-python3}" - "$1" "$2" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
if not rows:
    sys.exit("no benchmark rows in " + sys.argv[1])
copy = float(rows[0]["bytes_per_s"])
print(f"device: {rows[0]['device']}, n = {rows[0]['n']} fp32")
print(f"{'operation':56} {'time (us)':>10} {'GB/s':>8} {'of copy':>8}")
def show(r):
    bw = float(r["bytes_per_s"])
    print(f"{r['op']:56} {float(r['seconds'])*1e6:10.1f} {bw*1e-9:8.1f} {100*bw/copy:7.1f}%")
for r in rows:
    show(r)
try:
    lines = [l for l in open(sys.argv[2], newline="") if not l.startswith("#")]
    for r in csv.DictReader(lines):
        if r.get("bytes_per_s") and r.get("seconds") and r.get("op"):
            show(r)
except (OSError, KeyError, ValueError):
    pass
PY
}

case "${1:-}" in
  --print-targets) gpu_targets "$2" "$3"; echo; exit 0 ;;
  --summarize) summarize "$2" "$3"; exit 0 ;;
esac

cd "$(dirname "$0")/.."
n=$((1 << 26))
jobs=$(nproc 2>/dev/null || echo 4)
build_all=0
sanitize=0
budget=${DPPF_GPU_CHECK_BUDGET:-540}
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build-all) build_all=1; shift ;;
    --budget) budget="$2"; shift 2 ;;
    --sanitize) sanitize=1; shift ;;
    *) echo "usage: $0 [--n N] [--jobs J] [--build-all] [--budget SECONDS] [--sanitize]" >&2; exit 2 ;;
  esac
done

build=${DPPF_GPU_CHECK_BUILD:-build/cuda}  # another directory: configured without the preset
out=$build/gpu-check
start=$(date +%s)
stage() { echo; echo "== $1 ($(( $(date +%s) - start )) s of $budget)"; }
# Seconds a stage may take: at most $1, and no more than leaves $2 for the stages after it.
limit() {
  local l=$(( budget - ($(date +%s) - start) - $2 ))
  [ "$l" -gt "$1" ] && l=$1
  [ "$l" -lt 5 ] && l=5
  echo "$l"
}
mkdir -p "$out"

stage "device"
arch=""
gpu_seen=""
if command -v nvidia-smi > /dev/null; then
  timeout 10 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader || true
  arch=$(timeout 10 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -1 | tr -d ' .' || true)
  [[ "$arch" =~ ^[0-9]+$ ]] && gpu_seen=1
else
  echo "nvidia-smi not found"
fi
arch=${DPPF_GPU_CHECK_ARCH:-$arch}  # e.g. "90", or "75;80;90"
[[ "$arch" =~ ^[0-9]+(\;[0-9]+)*$ ]] || arch="75;80;90"
echo "CUDA architectures: $arch"

nvcc=$(command -v nvcc || true)
if [ -z "$nvcc" ]; then
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do
    if [ -x "$c" ]; then nvcc=$c; break; fi
  done
fi
[ -n "$nvcc" ] || nvcc=/usr/local/cuda/bin/nvcc
echo "nvcc: $nvcc"
# NCCL: the CUDA tree's or $NCCL_ROOT (FindNCCL looks there itself), else PyTorch's wheel.
nccl_args=()
if [ -z "${NCCL_ROOT:-}" ] && [ ! -f "$(dirname "$nvcc")/../include/nccl.h" ]; then
  for py in python3 /usr/bin/python3; do
    d=$("$py" -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2> /dev/null || true)
    if [ -n "$d" ] && [ -f "$d/include/nccl.h" ]; then
      nccl_args=("-DNCCL_ROOT=$d")
      echo "NCCL from $d"
      break
    fi
  done
fi

stage "configure (cuda preset)"
configured=0
tried_preset=0
if [ -z "${DPPF_GPU_CHECK_BUILD:-}" ] && [ -f CMakePresets.json ] && cmake --list-presets 2> /dev/null | grep -q '"cuda"'; then
  tried_preset=1
  timeout "$(limit 90 420)" cmake --preset cuda -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    "${nccl_args[@]}" > "$out/configure.log" 2>&1 &&
    configured=1
fi
if [ "$configured" = 0 ]; then
  # No preset, or a dependency of the full preset missing here (Google Benchmark, MPI, the
  # examples' packages): the GPU tests need only CUDA, doctest and CMake.
  if [ "$tried_preset" = 1 ]; then
    grep -m3 -E "Error|error" "$out/configure.log" || true
    echo "cuda preset did not configure (see $out/configure.log); configuring the GPU tests alone"
    cp "$out/configure.log" "$out/configure-preset.log"
    rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"  # the failed preset's cache (generator, options)
  fi
  gen=()
  command -v ninja > /dev/null && gen=(-G Ninja)
  base=(-S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDPPF_BUILD_TESTS=ON -DDPPF_ENABLE_CUDA=ON
        -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$arch" -DDPPF_BUILD_BENCHMARKS=OFF
        -DDPPF_BUILD_EXAMPLES=OFF "${nccl_args[@]}")
  if ! timeout "$(limit 60 400)" cmake "${base[@]}" > "$out/configure.log" 2>&1; then
    if grep -q doctest "$out/configure.log"; then
      echo "no doctest on this machine: using the copy in tests/gpu/doctest"
      rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
      timeout "$(limit 60 400)" cmake "${base[@]}" -Ddoctest_DIR="$PWD/tests/gpu/doctest" > "$out/configure.log" 2>&1 ||
        { tail -30 "$out/configure.log"; echo "configure failed"; exit 1; }
    else
      tail -30 "$out/configure.log"
      echo "configure failed"
      exit 1
    fi
  fi
fi
grep -E "^-- dppf" "$out/configure.log" || true

stage "build"
if [ "$build_all" = 1 ]; then
  targets=all
else
  ctest --test-dir "$build" -N -L gpu > "$out/ctest-list.log" 2>&1 || true
  cmake --build "$build" --target help > "$out/targets.log" 2>&1 || true
  targets=$(gpu_targets "$out/ctest-list.log" "$out/targets.log")
fi
echo "targets: ${targets:-test_gpu}"
keep_going=(-k)
grep -q "^CMAKE_GENERATOR:INTERNAL=Ninja" "$build/CMakeCache.txt" 2> /dev/null && keep_going=(-k 0)
set +e
# shellcheck disable=SC2086
timeout "$(limit 300 200)" cmake --build "$build" -j "$jobs" --target ${targets:-test_gpu} -- "${keep_going[@]}" > "$out/build.log" 2>&1
build_rc=$?
set -e
if [ "$build_rc" != 0 ]; then
  grep -E "error|FAILED" "$out/build.log" | head -20
  echo "build failed (exit $build_rc, $out/build.log): tests whose targets did not build show as not run"
fi

stage "GPU tests (ctest -L gpu)"
t=$(limit 200 110)
set +e
timeout "$t" ctest --test-dir "$build" -L gpu --output-on-failure --timeout $((t > 20 ? t - 10 : t)) 2>&1 | tee "$out/ctest.log"
tests_rc=${PIPESTATUS[0]}
set -e
grep -q "No tests were found" "$out/ctest.log" && tests_rc=1
# A GPU that nvidia-smi sees but the tests do not (a driver older than the CUDA runtime, a
# device hidden by CUDA_VISIBLE_DEVICES) makes them skip themselves: that is a failure here.
if [ -n "$gpu_seen" ] && grep -qE "Test +#[0-9]+: test_gpu \.+\*+ *Skipped" "$out/ctest.log"; then
  "$build/tests/test_gpu" 2>&1 | head -3 || true
  echo "nvidia-smi sees a GPU but test_gpu skipped itself (above: why)"
  tests_rc=1
fi

stage "GPU benchmarks"
bench="$build/bench/bench_gpu"
if [ ! -x "$bench" ]; then
  # Benchmarks were not configured (no Google Benchmark here): bench_gpu needs only nvcc.
  if [[ "$arch" =~ ^[0-9]+$ ]]; then gpu_arch=(-arch "sm_$arch"); else gpu_arch=(-arch native); fi
  timeout "$(limit 150 90)" "$nvcc" -std=c++20 -O3 -DNDEBUG "${gpu_arch[@]}" -Iinclude bench/gpu/bench_gpu.cu \
    -o "$out/bench_gpu" > "$out/bench-build.log" 2>&1 || { tail -20 "$out/bench-build.log"; echo "bench_gpu did not compile"; }
  bench="$out/bench_gpu"
fi
set +e
timeout "$(limit 60 50)" "$bench" --n "$n" --csv > "$out/bench.csv" 2> "$out/bench.err"
bench_rc=$?
set -e
if [ "$bench_rc" != 0 ]; then
  cat "$out/bench.err" "$out/bench.csv" 2> /dev/null | tail -5
  echo "bench_gpu failed (exit $bench_rc)"
fi

stage "PyTorch fused optimizers"
py=""
for cand in python3 /usr/bin/python3 python; do
  if command -v "$cand" > /dev/null &&
    timeout "$(limit 30 40)" "$cand" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null; then
    py=$cand
    break
  fi
done
if [ -n "$py" ]; then
  timeout "$(limit 60 10)" "$py" - "$n" > "$out/torch.csv" 2> "$out/torch.err" <<'PY' || { tail -3 "$out/torch.err"; echo "PyTorch comparison failed"; }
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
        t = best(opt.step)
    except (TypeError, RuntimeError, ValueError) as e:  # older torch: no fused SGD
        print(f"# {name}: {e}", file=sys.stderr)
        continue
    name = name.replace(",", ";")
    print(f"{torch.cuda.get_device_name().replace(',', ';')},{name},{n},{t:.9g},{words * 4 * n / t:.6g}")
PY
else
  echo "no PyTorch with CUDA: comparison skipped" | tee "$out/torch.csv"
fi

sanitize_note=""
if [ "$sanitize" = 1 ]; then
  stage "compute-sanitizer memcheck (test_gpu, without the 2^31-element case)"
  cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$cs" ] && [ -x "$build/tests/test_gpu" ]; then
    set +e
    timeout "$(limit 240 5)" "$cs" --tool memcheck --error-exitcode 99 "$build/tests/test_gpu" \
      --test-case-exclude="*2^31*" > "$out/sanitizer.log" 2>&1
    cs_rc=$?
    set -e
    tail -5 "$out/sanitizer.log"
    sanitize_note="compute-sanitizer memcheck: exit $cs_rc (0 = clean; log $out/sanitizer.log)"
  else
    sanitize_note="compute-sanitizer or test_gpu not found: sanitizer run skipped"
  fi
fi

stage "summary"
python_fmt=$(command -v python3 || command -v /usr/bin/python3 || true)
{
  if [ -n "$python_fmt" ] && [ "$bench_rc" = 0 ] && [ -s "$out/bench.csv" ]; then
    summarize "$out/bench.csv" "$out/torch.csv" || cat "$out/bench.csv"
  else
    cat "$out/bench.csv" 2> /dev/null || true
  fi
  echo
  grep -E "tests passed|tests failed" "$out/ctest.log" || true
  [ -z "$sanitize_note" ] || echo "$sanitize_note"
  echo "build exit $build_rc, tests exit $tests_rc, benchmark exit $bench_rc"
  echo "total $(( $(date +%s) - start )) s; logs in $out"
} | tee "$out/summary.txt"
# On the lent GPU machines, files under $OUT come back to the caller: the logs and figures.
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  for f in summary.txt ctest.log bench.csv torch.csv build.log configure.log sanitizer.log; do
    [ -f "$out/$f" ] && cp "$out/$f" "$OUT/gpu-check-$f"
  done
fi
[ "$build_rc" = 0 ] || exit "$build_rc"
[ "$tests_rc" = 0 ] || exit "$tests_rc"
exit "$bench_rc"
