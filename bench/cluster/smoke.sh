#!/bin/sh
# CTest smoke test of dppf_bench_cluster_allreduce (no root, no cluster): 2 ranks over loopback
# through a FileStore, two small sizes; both ranks must succeed (the warm-up result is checked
# exactly) and rank 0 must print one JSON line per size.
# Usage: smoke.sh <dppf_bench_cluster_allreduce>
set -u
bench=$1
dir=$(mktemp -d /tmp/dppf-bench-cluster-smoke.XXXXXX)
trap 'rm -rf "$dir"' EXIT
export WORLD_SIZE=2 DPPF_GLOO_ADDR=127.0.0.1 DPPF_GLOO_STORE=file:$dir DPPF_GLOO_PREFIX=smoke
RANK=1 timeout 60 "$bench" --engine gloo --sizes 4,12 --repeats 2 >"$dir/out1" 2>&1 &
p1=$!
RANK=0 timeout 60 "$bench" --engine gloo --sizes 4,12 --repeats 2 >"$dir/out0" 2>&1
rc0=$?
wait $p1
rc1=$?
cat "$dir/out0" "$dir/out1"
[ $rc0 -eq 0 ] && [ $rc1 -eq 0 ] || { echo "FAIL: exit codes $rc0 and $rc1"; exit 1; }
[ "$(grep -c '"engine": "gloo", "impl": "dppf", "ranks": 2' "$dir/out0")" -eq 2 ] || { echo "FAIL: expected 2 JSON lines"; exit 1; }
echo PASS
