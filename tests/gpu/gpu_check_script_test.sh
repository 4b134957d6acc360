#!/usr/bin/env bash
# Checks scripts/gpu-check.sh's parsing on made-up inputs (run by CTest as gpu_check_script):
#   1. the build targets taken from `ctest -N -L gpu` output, with the "Could not find executable"
#      noise CTest prints before anything is built, a header test, the benchmark's smoke test, and
#      an example run (example.X builds target X), a test whose name is no build target (which must be left out, not break the build);
#   2. the summary of a benchmark CSV whose fields hold commas (quoted), against the numbers in it.
set -euo pipefail
script=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() {  # name, got, want
  if [ "$2" != "$3" ]; then
    echo "FAIL $1"
    echo "  got:  $2"
    echo "  want: $3"
    fail=1
  else
    echo "ok   $1"
  fi
}

cat > "$tmp/ctest.txt" <<'EOF'
Test project /x/build/cuda
Could not find executable /x/build/cuda/tests/test_gpu
Looked in the following places:
/x/build/cuda/tests/test_gpu
  Test #10: test_gpu
Could not find executable /x/build/cuda/tests/test_nccl
Looked in the following places:
  Test #11: test_nccl
  Test #12: fashion_mnist_gpu_train
  Test #77: header:dppf/cuda.cuh
  Test #79: header:dppf/cuda_check.cuh
  Test #88: bench.bench_gpu
  Test #90: example.fashion_mnist

Total Tests: 7
EOF
# Ninja's `cmake --build <dir> --target help`.
cat > "$tmp/help-ninja.txt" <<'EOF'
[1/1] All primary targets available:
test_gpu: phony
test_nccl: phony
header_dppf_cuda_cuh: phony
header_dppf_cuda_check_cuh: phony
bench_gpu: phony
fashion_mnist: phony
all: phony
EOF
# Make's.
cat > "$tmp/help-make.txt" <<'EOF'
The following are some of the valid targets for this Makefile:
... all (the default if no target is provided)
... clean
... test_gpu
... test_nccl
... header_dppf_cuda_cuh
... header_dppf_cuda_check_cuh
... bench_gpu
... fashion_mnist
EOF
want="test_gpu test_nccl header_dppf_cuda_cuh header_dppf_cuda_check_cuh bench_gpu fashion_mnist"
got=$(bash "$script" --print-targets "$tmp/ctest.txt" "$tmp/help-ninja.txt" 2> "$tmp/err" | xargs)
expect "targets from ctest -N (Ninja)" "$got" "$want"
expect "a test without a target is named" "$(grep -c "fashion_mnist_gpu_train" "$tmp/err")" "1"
got=$(bash "$script" --print-targets "$tmp/ctest.txt" "$tmp/help-make.txt" 2> /dev/null | xargs)
expect "targets from ctest -N (Makefiles)" "$got" "$want"

# bench_gpu --csv output: the copy first; a device name and an operation with commas, quoted.
cat > "$tmp/bench.csv" <<'EOF'
device,op,n,seconds,bytes_per_s,fraction_of_copy
"NVIDIA H100, 80GB",d2d copy (cudaMemcpyAsync),1000,2e-06,1e+12,1.0000
"NVIDIA H100, 80GB","sgd momentum step (multi-tensor apply, 64 tensors)",1000,5e-06,5e+11,0.5000
EOF
cat > "$tmp/torch.csv" <<'EOF'
device,op,n,seconds,bytes_per_s
NVIDIA H100 80GB,torch adamw step (fused),1000,4e-06,2.5e+11
EOF
bash "$script" --summarize "$tmp/bench.csv" "$tmp/torch.csv" > "$tmp/summary.txt"
cat "$tmp/summary.txt"
expect "summary: device line" "$(sed -n 1p "$tmp/summary.txt")" "device: NVIDIA H100, 80GB, n = 1000 fp32"
row=$(grep "multi-tensor apply, 64 tensors" "$tmp/summary.txt" | xargs)
expect "summary: a quoted operation keeps its numbers" "$row" "sgd momentum step (multi-tensor apply, 64 tensors) 5.0 500.0 50.0%"
row=$(grep "torch adamw" "$tmp/summary.txt" | xargs)
expect "summary: PyTorch rows against the same copy" "$row" "torch adamw step (fused) 4.0 250.0 25.0%"
# No PyTorch: the torch file holds a sentence, not a CSV.
echo "no PyTorch with CUDA: comparison skipped" > "$tmp/torch.csv"
expect "summary without PyTorch" "$(bash "$script" --summarize "$tmp/bench.csv" "$tmp/torch.csv" | wc -l | xargs)" "4"
exit "$fail"
