#!/bin/sh
# Asynchronous all-reduces over Gloo across 3 emulated hosts (gloo_async_probe), a fault on host 3
# while one is in flight (stop | kill | cut). gloo_cluster.sh makes the hosts, injects the fault
# and checks what every Gloo fault must give (ranks 0 and 1 raise within the timeout + 10 s, the
# job fails, nothing is left behind); on top, both must have raised at wait() naming
# start_all_reduce (timeout_error for stop and cut) and finished tearing their communicators down.
# Usage: gloo_async_fault.sh <source dir> <cluster id> <probe executable> <fault>
set -u
out=$(sh "$1/tests/cluster/gloo_cluster.sh" "$@")
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || exit "$rc"  # its failure, or 77: skipped without root
fail() { echo "FAIL: $*"; exit 1; }
kind=communication_error
[ "$4" = kill ] || kind=timeout_error
for r in 0 1; do
  echo "$out" | grep -q "rank $r: dppf::gloo_communicator::start_all_reduce" || fail "rank $r: no error of start_all_reduce"
  echo "$out" | grep -q "rank $r: .*$kind at wait after" || fail "rank $r did not raise a $kind at wait()"
  echo "$out" | grep -q "rank $r: torn down in" || fail "rank $r did not finish its teardown"
done
echo "PASS: asynchronous all-reduce over Gloo, host 3 $4: ranks 0 and 1 raised at wait() and tore down"
