#!/bin/sh
# An elastic group on the emulated cluster: a redis-server on host 1 (a host of its own), four
# workers on hosts 2..5 training LocalSGD (tests/cluster/elastic_probe.cpp), and one fault, drawn
# from a printed seed (DPPF_ELASTIC_SEED=<n> replays it):
#   kill   SIGKILL of a random worker at a random time: the other three finish
#   stop   SIGSTOP of one, SIGCONT once the others went on without it: it rejoins, four finish
#   cut    one worker's link cut: it stops with its error, the other three finish
#   split  two workers cut (min_workers 2): they stop, the other two finish (one side only)
#   twice  two SIGKILLs in a row (min_workers 2), the second after the group recovered: two finish
#   join   a fifth worker (host 6) starts mid-run: let in at a sync with the group's mean
#   restore  SIGKILL of one worker; once the three recovered, the redis-server is shut down and
#          started again, empty: the group re-seeds it (generation 1 and the ids), then a new
#          worker (host 6) joins through it with the group's mean; four finish
# Every finisher's final mean must have the same bits, equal the double-precision simulation of
# who took part in each sync, the time from the fault to the first committed sync after it is
# printed (for twice: from the second) and bounded by the timeout + 5 s, and nothing may be left
# behind.
# Usage: elastic_cluster.sh <source dir> <cluster id> <probe executable> <scenario>
set -u
src=$1
probe=$3
scenario=$4
S=$2
. "$src/tests/cluster/common.sh"
dir=$(mktemp -d /tmp/dppf-elastic-cluster.XXXXXX)
trap '"$C" down >/dev/null 2>&1; rm -rf "$dir"' EXIT
show() { for f in "$dir"/out.*; do [ -f "$f" ] && { echo "== $f"; cat "$f"; }; done; }
fail() { echo "FAIL ($scenario, seed $seed): $*"; show; exit 1; }
seed=${DPPF_ELASTIC_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
echo "elastic $scenario: seed $seed"
draw() { echo $(((seed * 7919 + $1 * 104729) % $2)); }  # draw K N: the K-th number in [0, N)
ms() { date +%s%3N; }
msleep() { sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"; }

nhosts=5
case $scenario in join | restore) nhosts=6 ;; esac
"$C" up $nhosts 1gbit >/dev/null || fail "up"
addr=$("$C" redis 6390) || fail "redis"
export DPPF_ELASTIC_STORE=redis:$addr DPPF_ELASTIC_PREFIX=elastic-$scenario TIMEOUT_MS=1500 STEPS=160 TAU=4 STEP_MS=40 FOUNDERS=4
[ "$scenario" = restore ] && export STEPS=400  # a recovery, a store restart and a join
case $scenario in split | twice) export MIN_WORKERS=2 ;; esac
timeout_s=2  # TIMEOUT_MS rounded up

start() {
  "$C" exec "$1" env DPPF_GLOO_ADDR="$("$C" addr "$1")" "$probe" train "$dir" >"$dir/out.$1" 2>&1 &
  eval "pid_$1=$!"
}
wait_host() { eval "wait \$pid_$1"; }
# await PATTERN WHAT [TENTHS]: until a worker printed PATTERN, at most TENTHS x 0.1 s (default 200)
await() {
  i=0
  until grep -q "$1" "$dir"/out.* 2>/dev/null; do
    i=$((i + 1)); [ $i -lt "${3:-200}" ] || fail "$2"; sleep 0.1
  done
}
t0=$(ms)
for k in 2 3 4 5; do start $k; done
delay=$((1500 + $(draw 1 2000)))
victim=$((2 + $(draw 2 4)))
other=$((2 + ($(draw 2 4) + 1 + $(draw 3 3)) % 4))  # a second host, not the victim
msleep $delay
grep -l "stopped" "$dir"/out.* >/dev/null 2>&1 && fail "a worker stopped before the fault"
hit="$victim"
# tf: when the fault command returned (the fault is in effect; cluster.sh itself can take a
# second on a loaded machine, which is not the group's recovery time)
case $scenario in
  kill) echo "SIGKILL of host $victim after $delay ms"; "$C" kill $victim; tf=$(ms) ;;
  stop)
    echo "SIGSTOP of host $victim after $delay ms"
    "$C" stop $victim
    tf=$(ms)
    await "of generation 1 (3 workers" "the others did not go on without the stopped host"
    echo "SIGCONT of host $victim after $(($(ms) - tf)) ms, once it was excluded"
    "$C" cont $victim
    hit="" ;;
  cut) echo "cut of host $victim after $delay ms"; "$C" cut $victim; tf=$(ms) ;;
  split) echo "cut of hosts $victim and $other after $delay ms"; "$C" cut $victim; "$C" cut $other; tf=$(ms); hit="$victim $other" ;;
  join) echo "host 6 starts after $delay ms"; start 6; tf=$(ms); hit="" ;;
  twice)
    echo "SIGKILL of host $victim after $delay ms"
    "$C" kill $victim
    await "first committed sync after the change" "the group did not recover from the first kill"
    echo "SIGKILL of host $other once the group recovered"
    "$C" kill $other
    tf=$(ms)
    hit="$victim $other" ;;
  restore)
    echo "SIGKILL of host $victim after $delay ms"
    "$C" kill $victim
    tf=$(ms)
    await "first committed sync after the change" "the group did not recover from the kill"
    "$C" exec 1 redis-cli -h "${addr%:*}" -p "${addr##*:}" shutdown nosave >/dev/null 2>&1
    "$C" redis "${addr##*:}" >/dev/null || fail "the redis-server did not start again"
    echo "redis-server restarted empty once the group recovered"
    await "re-seeded ids" "nobody re-seeded the restarted store" 100
    echo "host 6 starts once the store was re-seeded: $(grep -ho 'the store had lost .*' "$dir"/out.* | head -n 1)"
    start 6 ;;
  *) fail "unknown scenario $scenario" ;;
esac

finishers=""
for k in 2 3 4 5 6; do
  [ -f "$dir/out.$k" ] || continue
  wait_host $k
  rc=$?
  case " $hit " in
    *" $k "*) [ $rc -ne 0 ] || fail "host $k was hit ($scenario) but exited 0" ;;
    *) [ $rc -eq 0 ] || fail "host $k exited $rc" ; finishers="$finishers $k" ;;
  esac
done
t1=$(ms)
show
echo "run took $((t1 - t0)) ms"
[ $((t1 - t0)) -le 40000 ] || fail "the run took $((t1 - t0)) ms"

# The hit hosts' errors, the finishers' agreement.
for k in $hit; do
  case $scenario in
    cut | split) grep -q "stopped: dppf::elastic" "$dir/out.$k" || fail "host $k did not stop with an elastic error" ;;
  esac
done
[ "$scenario" = stop ] && { grep -q "excluded" "$dir/out.$victim" || fail "host $victim was not excluded"; }
ids=""
for k in $finishers; do
  id=$(sed -n 's/.*elastic worker \([0-9]*\): finished.*/\1/p' "$dir/out.$k")
  [ -n "$id" ] || fail "host $k did not say it finished"
  ids="$ids $id"
done
expect=3
case $scenario in stop | restore) expect=4 ;; split | twice) expect=2 ;; join) expect=5 ;; esac
set -- $ids
[ $# -eq $expect ] || fail "$# workers finished, expected $expect"
first=$1
for id in $ids; do
  cmp -s "$dir/params.$first" "$dir/params.$id" || fail "worker $id's final mean differs from worker $first's"
  grep -q "in generation [0-9]* of $expect workers" "$dir"/out.* || fail "no finisher reports $expect workers"
done
# The reference: the history of a worker that was there from the start and never left.
founder=""
for id in $ids; do grep -q "elastic worker $id: \(excluded\|let in\|registered\)" "$dir"/out.* || { founder=$id; break; }; done
[ -n "$founder" ] || fail "no finisher was there from the start"
for id in $ids; do cmp -s "$dir/history.$founder" "$dir/history.$id" || [ "$scenario" = stop ] || [ "$scenario" = join ] || [ "$scenario" = restore ] ||
  fail "worker $id's sync history differs from worker $founder's"; done
"$probe" check "$dir/params.$founder" "$dir/history.$founder" || fail "the final mean differs from the simulation"
if [ "$scenario" = join ] || [ "$scenario" = restore ]; then
  nid=$(sed -n 's/.*elastic worker \([0-9]*\): let in at step \([0-9]*\).*/\1/p' "$dir/out.6")
  nstep=$(sed -n 's/.*elastic worker \([0-9]*\): let in at step \([0-9]*\).*/\2/p' "$dir/out.6")
  [ -n "$nid" ] || fail "the fifth worker was not let in"
  "$probe" check "$dir/joined.$nid" "$dir/history.$founder" "$nstep" || fail "the newcomer's parameters are not the group's mean"
fi

# Time from the fault to the first sync committed after it, on the last of the workers that
# were not hit (for stop: the stopped one comes back later, by design; for restore: the newcomer
# was not there).
if [ "$scenario" != join ]; then
  tr=""
  for k in $finishers; do
    [ "$scenario" = stop ] && [ "$k" = "$victim" ] && continue
    [ "$k" = 6 ] && continue  # restore: the newcomer came after the fault
    t=$(grep -h "first committed sync after the change" "$dir/out.$k" | tail -1 | sed -n 's/^\[\([0-9]*\)\].*/\1/p')
    [ -n "$t" ] || fail "host $k committed no sync after the fault"
    [ -z "$tr" ] || [ "$t" -gt "$tr" ] && tr=$t
  done
  [ -n "$tr" ] || fail "no committed sync after the fault"
  echo "fault to the next committed sync: $((tr - tf)) ms (bound: timeout + 5 s)"
  [ $((tr - tf)) -le $(((timeout_s + 5) * 1000)) ] || fail "recovery took $((tr - tf)) ms"
fi

"$C" down >/dev/null
ip netns list | grep -q "^dppf${S}[hs]" && fail "namespaces left"
for k in 2 3 4 5 6; do eval "p=\${pid_$k:-}"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null && fail "process $p left"; done
echo "PASS: elastic $scenario (seed $seed):$finishers finished with the same bits, equal to the simulation"
