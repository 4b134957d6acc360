#!/bin/sh
# The MPI watchdog across 3 emulated hosts (scripts/cluster.sh mpirun), mid-training (probe mode
# "train": dppf::trainer, pull_push, tau 2), timeout 3 s. Faults on host 3:
#   none    no fault: the probe's "healthy" mode (every collective, ranks idle for half the
#           timeout, an overlapped async all-reduce) must end 0 with no watchdog line
#   stop    host 3's rank SIGSTOPped (a hung process; its daemon still answers)
#   freeze  every process on host 3 SIGSTOPped, its MPI daemon too (a frozen machine)
#   cut     host 3's link cut
#   kill    host 3's rank SIGKILLed: no watchdog needed, mpirun ends the job itself and names the
#           host (the checks below then ask for mpirun's line instead of a watchdog line)
# After a fault the job must end non-zero within the timeout + 10 s, with a watchdog line from
# a surviving rank naming its rank, host and the stalled call, no line from host 3's rank (the
# suspect is the rank that does not report), no rank process left on any host, and after
# teardown no namespace.
# Usage: mpi_watchdog.sh <source dir> <cluster id> <probe executable> <fault>
set -u
src=$1
probe=$3
fault=$4
S=$2
. "$src/tests/cluster/common.sh"
out=$(mktemp /tmp/dppf-mpi-cluster.XXXXXX)
trap '"$C" down; rm -f "$out"' EXIT
fail() { echo "FAIL: $*"; cat "$out"; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
ranks_left() { for k in 1 2 3; do ip netns pids "dppf${S}h$k" 2>/dev/null; done | xargs -r ps -o pid=,comm= -p | awk '$2 == "mpi_watchdog_pr"'; }
"$C" up 3 1gbit >/dev/null || fail "up"
export DPPF_MPI_TIMEOUT_MS=3000

if [ "$fault" = none ]; then
  timeout -s KILL 60 "$C" mpirun 3 "$probe" healthy >"$out" 2>&1 || fail "the healthy job failed (exit $?)"
  cat "$out"
  grep -q "watchdog" "$out" && fail "the watchdog spoke in a healthy job"
  grep -q "healthy: ok" "$out" || fail "no 'healthy: ok'"
  echo "PASS: healthy job across 3 hosts with a 3 s watchdog"
  exit 0
fi

timeout -s KILL 90 "$C" mpirun 3 "$probe" train >"$out" 2>&1 &
runner=$!
i=0
until [ "$(grep -c ': training$' "$out")" -ge 3 ]; do
  i=$((i + 1))
  [ $i -lt 300 ] || fail "training did not start within 30 s"
  kill -0 $runner 2>/dev/null || fail "the job ended before the fault"
  sleep 0.1
done
t0=$(now_ms)
case $fault in
  stop) kill -STOP $(ranks_left | awk '{print $1}' | while read -r p; do ip netns identify "$p" | grep -qx "dppf${S}h3" && echo "$p"; done) ;;
  freeze) "$C" stop 3 ;;
  cut) "$C" cut 3 ;;
  kill) kill -KILL $(ranks_left | awk '{print $1}' | while read -r p; do ip netns identify "$p" | grep -qx "dppf${S}h3" && echo "$p"; done) ;;
  *) fail "unknown fault '$fault'" ;;
esac
wait $runner
rc=$?
t1=$(now_ms)
cat "$out"
[ "$rc" -ne 0 ] || fail "the job exited 0 after host 3 was hit ($fault)"
[ $((t1 - t0)) -le 13000 ] || fail "took $((t1 - t0)) ms to end (timeout 3 s + 10 s; 90 s means it hung and was killed)"
if [ "$fault" = kill ]; then
  grep -Eq "rank 2 with PID [0-9]+ on node (10.231.$S.3|dppf${S}h3) exited on signal 9" "$out" || fail "mpirun did not name host 3's killed rank"
else
grep -Eq "dppf::mpi_communicator watchdog: rank [01] of 3 \(host dppf${S}h[12], pid [0-9]+\) has been blocked in [a-z_]+ \(MPI_[A-Za-z]+.*, [0-9]+ bytes, call #[0-9]+ of this communicator\) for [0-9.]+ s, past the timeout of 3.000 s" "$out" ||
  fail "no watchdog line from rank 0 or 1"
fi
# Host 3's rank cannot report (stopped, or cut off); a stopped one continued by the kill must not
# blame the others for its own pause.
grep -q "watchdog: rank 2 of 3" "$out" && fail "a line from host 3's rank"
sleep 1
[ -z "$(ranks_left)" ] || fail "rank processes left after the job ended: $(ranks_left | tr '\n' ' ')"
"$C" down
ip netns list | grep -q "^dppf${S}" && fail "namespaces left"
echo "PASS: host 3 $fault -> job ended (exit $rc) after $((t1 - t0)) ms, the rank or host named"
