#!/bin/sh
# Asynchronous all-reduces over Gloo across 3 emulated hosts, a fault on host 3 while one is in
# flight (stop | kill | cut): ranks 0 and 1 must raise at wait() (timeout_error for stop and cut)
# naming start_all_reduce, within the timeout + 10 s, tear their communicators down without a
# hang, and nothing may be left behind.
# Usage: gloo_async_fault.sh <source dir> <cluster id> <probe executable> <fault>
set -u
src=$1
probe=$3
fault=$4
S=$2
. "$src/tests/cluster/common.sh"
dir=$(mktemp -d /tmp/dppf-gloo-async.XXXXXX)
trap '"$C" down; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$C" up 3 1gbit >/dev/null || fail "up"
export DPPF_GLOO_TIMEOUT_MS=3000

DPPF_GLOO_STORE=file:$dir DPPF_GLOO_PREFIX=async timeout 90 "$C" gloo 3 "$probe" >"$dir/out" 2>&1 &
runner=$!
sleep 3
grep -q "rank" "$dir/out" && fail "a rank ended before the fault: $(cat "$dir/out")"
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
kind="error"
[ "$fault" = kill ] || kind="timeout_error"
for r in 0 1; do
  grep -q "rank $r: .*$kind at wait after .*start_all_reduce" "$dir/out" || fail "rank $r did not raise a $kind of start_all_reduce at wait"
  grep -q "rank $r: torn down in" "$dir/out" || fail "rank $r did not finish its teardown"
done
"$C" down
ip netns list | grep -q "^dppf${S}" && fail "namespaces left"
echo "PASS: gloo asynchronous all-reduce, host 3 $fault -> ranks 0 and 1 raised at wait and tore down within $((t1 - t0)) s"
