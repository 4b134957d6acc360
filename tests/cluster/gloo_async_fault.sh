#!/bin/sh
# Asynchronous all-reduces over Gloo across 3 emulated hosts (gloo_async_probe), a fault on host 3
# while one is in flight (stop | kill | cut). gloo_cluster.sh makes the hosts, injects the fault
# and checks what every Gloo fault must give (ranks 0 and 1 raise within the timeout + 10 s, the
# job fails, nothing is left behind); on top, both must have raised at wait() naming
# start_all_reduce and finished tearing their communicators down. For stop and cut nobody closes a
# connection, so the first survivor to give up must have timed out (timeout_error); the other may
# then see that survivor's teardown close its connection first (communication_error), a race the
# collective cannot avoid, so either kind is right for it (timeout_error derives from
# communication_error).
# Usage: gloo_async_fault.sh <source dir> <cluster id> <probe executable> <fault>
set -u
out=$(sh "$1/tests/cluster/gloo_cluster.sh" "$@")
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || exit "$rc"  # its failure, or 77: skipped without root
fail() { echo "FAIL: $*"; exit 1; }
kinds='(communication|timeout)_error'
[ "$4" = kill ] && kinds=communication_error  # a killed peer's sockets close: no one waits it out
for r in 0 1; do
  echo "$out" | grep -q "rank $r: dppf::gloo_communicator::start_all_reduce" || fail "rank $r: no error of start_all_reduce"
  echo "$out" | grep -Eq "rank $r: .*$kinds at wait after" || fail "rank $r did not raise a $kinds at wait()"
  echo "$out" | grep -q "rank $r: torn down in" || fail "rank $r did not finish its teardown"
done
if [ "$4" != kill ]; then
  echo "$out" | grep -Eq "rank [01]: .*timeout_error at wait after" || fail "host 3 $4: neither survivor timed out"
fi
echo "PASS: asynchronous all-reduce over Gloo, host 3 $4: ranks 0 and 1 raised at wait() and tore down"
