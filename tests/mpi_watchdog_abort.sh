#!/bin/sh
# The MPI watchdog fires: the last of 3 ranks SIGSTOPs itself right before <op>; the job must end
# non-zero (the watchdog's exit code), with a watchdog line from a surviving rank naming <op>,
# within the timeout + 8 s, and leave no process behind.
# Usage: mpi_watchdog_abort.sh <probe> <op> <timeout ms> <mpiexec> [mpiexec flags...]
set -u
probe=$1 op=$2 ms=$3 mpiexec=$4
shift 4
case $op in scalar) what=all_reduce ;; wait) what=start_all_reduce ;; *) what=$op ;; esac
out=$(mktemp /tmp/dppf-mpi-watchdog.XXXXXX)
fail() { echo "FAIL: $*"; cat "$out"; exit 1; }
leftovers() { pgrep -f "^$probe stop:$op\$" || true; }
trap 'for p in $(leftovers); do kill -KILL "$p" 2>/dev/null; done; rm -f "$out"' EXIT
[ -z "$(leftovers)" ] || fail "probes of an earlier run are still alive: $(leftovers)"
t0=$(date +%s%N)
DPPF_MPI_TIMEOUT_MS=$ms timeout -s KILL 60 "$mpiexec" -np 3 "$@" "$probe" "stop:$op" >"$out" 2>&1
rc=$?
t1=$(date +%s%N)
elapsed=$(((t1 - t0) / 1000000))  # ms
cat "$out"
[ "$rc" -ne 0 ] || fail "the job exited 0 with a stopped rank"
[ "$rc" -ne 137 ] || fail "the job hung: killed after 60 s"
[ "$rc" -eq 75 ] || fail "exit code $rc, not the watchdog's 75"
grep -q "rank 2: stopping itself (SIGSTOP) before $op" "$out" || fail "rank 2 did not stop before $op"
grep -Eq "dppf::mpi_communicator watchdog: rank [01] of 3 \(host [^,]+, pid [0-9]+\) has been blocked in $what \(MPI_[A-Za-z]+.*, [0-9]+ bytes, call #[0-9]+ of this communicator\) for [0-9.]+ s, past the timeout of $(printf "%d.%03d" $((ms / 1000)) $((ms % 1000))) s" "$out" ||
  fail "no watchdog line from rank 0 or 1"
grep -q "watchdog: rank 2 of 3" "$out" && fail "a line from the stopped rank 2 (continued by the kill, it must not blame the others)"
[ "$elapsed" -le $((ms + 8000)) ] || fail "took $elapsed ms (timeout $ms ms + 8 s)"
sleep 0.5
[ -z "$(leftovers)" ] || fail "processes left: $(leftovers)"
echo "PASS: stop before $op -> job aborted by the watchdog (exit 75) after $elapsed ms"
