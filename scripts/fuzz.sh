#!/bin/sh
# Fuzzes the safetensors checkpoint reader with libFuzzer for a bounded time.
#   scripts/fuzz.sh [SECONDS=60] [WORK_DIR=build-fuzz]
# Needs clang (Debian: clang-14 and libclang-rt-14-dev); exits 77 (CTest's skip code) without it.
# The fuzzer is built with AddressSanitizer and UndefinedBehaviorSanitizer; any crash, sanitizer
# report, exception other than dppf::checkpoint_error, allocation over 256 MB, or input taking
# over 10 s fails the run, and the input is kept in WORK_DIR (crash-*, leak-*, oom-*, timeout-*).
# New inputs go to WORK_DIR/corpus; tests/fuzz/corpus (the crafted files) only seeds it.
set -eu
seconds=${1:-60}
work=${2:-build-fuzz}
root=$(cd "$(dirname "$0")/.." && pwd)

cxx=${FUZZ_CXX:-}
if [ -z "$cxx" ]; then
  for c in clang++ clang++-14 clang++-15 clang++-16 clang++-17 clang++-18; do
    if command -v "$c" >/dev/null 2>&1; then cxx=$c; break; fi
  done
fi
if [ -z "$cxx" ]; then
  echo "fuzz.sh: no clang++ found; skipping" >&2
  exit 77
fi

mkdir -p "$work/corpus"
bin="$work/fuzz_safetensors"
if ! "$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" "$root/tests/fuzz/fuzz_safetensors.cpp" -o "$bin"; then
  # A clang without libFuzzer's runtime (libclang-rt-*-dev missing) cannot build the target.
  if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long){return 0;}' |
      "$cxx" -x c++ -fsanitize=fuzzer - -o "$work/probe" >/dev/null 2>&1; then
    echo "fuzz.sh: $cxx cannot link -fsanitize=fuzzer; skipping" >&2
    exit 77
  fi
  exit 1
fi

echo "fuzz.sh: fuzzing for ${seconds}s with $cxx"
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
  -max_len=65536 -dict="$root/tests/fuzz/safetensors.dict" -artifact_prefix="$work/" \
  -print_final_stats=1 "$work/corpus" "$root/tests/fuzz/corpus"
