#!/bin/sh
# scripts/cluster.sh itself: hosts reach each other, a cut link stops traffic and a restored one
# carries it again, the rate is set on both ends of a link, stop/cont/kill reach a host's
# processes, and `down` leaves no namespace, link or process behind (also when run twice).
# Usage: cluster_script.sh <source dir> <cluster id>
set -u
src=$1
S=$2
. "$src/tests/cluster/common.sh"
trap '"$C" down' EXIT
fail() { echo "FAIL: $*"; exit 1; }
PY=/usr/bin/python3
# connect from host $1 to host $2 port 9, 1 s bound; prints ok or the error
probe() {
  "$C" exec "$1" $PY -c "
import socket,sys
s=socket.socket(); s.settimeout(1)
try: s.connect(('10.231.$S.$2', 7)); print('ok')
except ConnectionRefusedError: print('refused')
except Exception as e: print(type(e).__name__)"
}

"$C" up 3 100mbit || fail "up"
[ "$("$C" list | wc -l)" = 3 ] || fail "expected 3 hosts, got: $("$C" list)"
# a refused connection proves the packet reached host 3's stack
[ "$(probe 1 3)" = refused ] || fail "host 1 cannot reach host 3: $(probe 1 3)"
"$C" exec 2 tc qdisc show dev eth0 | grep -q "tbf.*rate 100Mbit" || fail "no tbf on host 2's end"
ip netns exec "dppf${S}sw" tc qdisc show dev h2 | grep -q "tbf.*rate 100Mbit" || fail "no tbf on the switch end"
"$C" rate 2 1gbit
"$C" exec 2 tc qdisc show dev eth0 | grep -q "rate 1Gbit" || fail "rate change not applied"
"$C" cut 3
[ "$(probe 1 3)" = TimeoutError ] || [ "$(probe 1 3)" = timeout ] || fail "cut link still carries traffic: $(probe 1 3)"
"$C" restore 3
[ "$(probe 1 3)" = refused ] || fail "restored link carries no traffic: $(probe 1 3)"
# addresses exist only inside the cluster's namespaces
ip -o addr show | grep -q "10.231.$S\." && fail "a cluster address leaked into the root namespace"

"$C" exec 2 sleep 300 &
"$C" exec 2 sh -c 'sleep 300 & wait' &
sleep 0.5
n=$(ip netns pids "dppf${S}h2" | wc -l)
[ "$n" -ge 3 ] || fail "expected 3 processes on host 2, found $n"
"$C" stop 2
for p in $(ip netns pids "dppf${S}h2"); do
  st=$(awk '{print $3}' "/proc/$p/stat"); [ "$st" = T ] || fail "process $p on host 2 not stopped (state $st)"
done
"$C" cont 2
"$C" kill 2
sleep 0.3
[ -z "$(ip netns pids "dppf${S}h2")" ] || fail "processes left on host 2 after kill"

# down with a stopped process inside, twice
"$C" exec 3 sleep 300 &
stopped=$!   # cluster.sh and ip netns exec exec, so this is the sleep itself
sleep 0.3
"$C" stop 3
"$C" down || fail "down"
"$C" down || fail "second down"
ip netns list | grep -q "^dppf${S}" && fail "namespaces left: $(ip netns list | grep "^dppf${S}")"
ip -o link show | grep -q "dppf${S}v" && fail "veth left in the root namespace"
sleep 0.2
[ -e "/proc/$stopped" ] && [ "$(awk '{print $3}' "/proc/$stopped/stat")" != Z ] && fail "stopped process $stopped outlived down"
wait
echo "PASS: cluster.sh"
