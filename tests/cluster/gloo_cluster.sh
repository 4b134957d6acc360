#!/bin/sh
# Gloo across 3 emulated hosts: an exact all-reduce through a redis-server on host 1, then
# through a FileStore, then a fault mid-run (stop | kill | cut of host 3): hosts 1 and 2 must
# raise (exit 3) within the timeout + 10 s, and nothing may be left behind.
# Usage: gloo_cluster.sh <source dir> <cluster id> <probe executable> <fault>
set -u
src=$1
probe=$3
fault=$4
S=$2
. "$src/tests/cluster/common.sh"
dir=$(mktemp -d /tmp/dppf-gloo-cluster.XXXXXX)
trap '"$C" down; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$C" up 3 1gbit >/dev/null || fail "up"
export DPPF_GLOO_TIMEOUT_MS=3000

if [ "$fault" = none ]; then
  addr=$("$C" redis 6390) || fail "redis"
  DPPF_GLOO_STORE=redis:$addr DPPF_GLOO_PREFIX=redis-run timeout 30 "$C" gloo 3 "$probe" sum || fail "all-reduce through redis"
  DPPF_GLOO_STORE=file:$dir DPPF_GLOO_PREFIX=file-run timeout 30 "$C" gloo 3 "$probe" sum || fail "all-reduce through a FileStore"
  echo "PASS: gloo across 3 hosts, redis and file stores"
  exit 0
fi

DPPF_GLOO_STORE=file:$dir DPPF_GLOO_PREFIX=fault timeout 90 "$C" gloo 3 "$probe" loop >"$dir/out" 2>&1 &
runner=$!
sleep 3
grep -q "Error\|error" "$dir/out" && fail "error before the fault: $(cat "$dir/out")"
t0=$(date +%s)
case $fault in
  stop) "$C" stop 3 ;;
  kill) "$C" kill 3 ;;
  cut) "$C" cut 3 ;;
esac
wait $runner
rc=$?
t1=$(date +%s)
cat "$dir/out"
[ "$rc" -ne 0 ] || fail "the job exited 0 after host 3 was hit ($fault)"
[ $((t1 - t0)) -le 13 ] || fail "took $((t1 - t0)) s to fail (timeout 3 s + 10 s)"
for r in 0 1; do
  grep -q "rank $r: dppf::gloo_communicator::" "$dir/out" || fail "rank $r did not raise a gloo_communicator error"
done
"$C" down
ip netns list | grep -q "^dppf${S}" && fail "namespaces left"
echo "PASS: gloo, host 3 $fault -> ranks 0 and 1 raised within $((t1 - t0)) s"
