#!/bin/sh
# An emulated cluster on this machine: N hosts, each a network namespace with its own TCP stack,
# joined by a bridge in a "switch" namespace through veth pairs, each link rate-limited with tc
# tbf (netem is not in every kernel; tbf is). Needs root. Addresses exist only inside the
# namespaces it creates, so nothing reaches any other address.
#
#   DPPF_CLUSTER=S   cluster id 0..254 (default 0): hosts dppf<S>h<K> at 10.231.S.K/24, switch
#                    dppf<S>sw. Tests use their own S, so they run in parallel.
#
#   cluster.sh up N [RATE]        create hosts 1..N (tearing down an old cluster S first);
#                                 RATE as tc spells it (1gbit, 100mbit; default: unlimited)
#   cluster.sh rate K|all RATE    change the rate of host K's link (both ends)
#   cluster.sh cut K | restore K  take host K's link down (a partition) / bring it back
#   cluster.sh stop K | cont K | kill K   SIGSTOP / SIGCONT / SIGKILL every process on host K
#   cluster.sh exec K CMD...      run CMD on host K
#   cluster.sh addr K             print host K's address
#   cluster.sh mpirun N ARGS...   mpirun from host 1 with one rank on each of hosts 1..N; once
#                                 the job aborts, mpirun is ended after DPPF_MPIRUN_GRACE s
#                                 (default 5) if it waits for a frozen or cut-off host
#   cluster.sh gloo N CMD...      CMD on hosts 1..N at once, with RANK, WORLD_SIZE, DPPF_GLOO_ADDR
#                                 (the host's address) set; the first rank that fails ends the
#                                 others after DPPF_GLOO_GRACE s (default 5; a stopped one at
#                                 once), and the exit status is the first non-zero one
#   cluster.sh redis PORT         start redis-server on host 1 (background; `down` ends it)
#   cluster.sh down               kill every process on every host, remove namespaces and links
#   cluster.sh list               the namespaces of cluster S
#
# `down` is idempotent and safe after a failure: it kills every process inside the namespaces
# first (`ip netns del` does not, and an MPI rank whose peer vanished spins forever, its orted
# outliving mpirun), then deletes them, which deletes their veth ends.
set -eu

S=${DPPF_CLUSTER:-0}
case $S in '' | *[!0-9]*) echo "cluster.sh: DPPF_CLUSTER must be 0..254 (got '$S')" >&2; exit 2 ;; esac
[ "$S" -le 254 ] || { echo "cluster.sh: DPPF_CLUSTER must be 0..254 (got $S)" >&2; exit 2; }
NET=10.231.$S
SW=dppf${S}sw

die() { echo "cluster.sh: $*" >&2; exit 1; }
host() { echo "dppf${S}h$1"; }
need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"; }
need_ip() {
  command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 && return 0
  need_root
  echo "cluster.sh: installing iproute2" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null || die "could not install iproute2"
}
hosts() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^dppf${S}h[0-9]+$" | sort -V || true; }
exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }
need_host() {
  case $1 in '' | *[!0-9]*) die "host must be a number (got '$1')" ;; esac
  exists "$(host "$1")" || die "no host $1 in cluster $S (run: cluster.sh up N)"
}

# Every process in namespace $1, killed with signal $2 (all of them, so whole trees go).
signal_ns() {
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [ -n "$pids" ] && kill "-$2" $pids 2>/dev/null || true
}

set_rate() {  # $1 = host number, $2 = rate
  h=$(host "$1")
  for side in "$h eth0" "$SW h$1"; do
    set -- $side
    ip -n "$1" link show "$2" >/dev/null 2>&1 || continue
    tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
    [ "$rate" = unlimited ] || tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst 256kb latency 200ms
  done
}

down() {
  for ns in $(hosts) $SW; do exists "$ns" && signal_ns "$ns" KILL; done
  # SIGKILL of a stopped process is delivered; wait (bounded) until the namespaces are empty.
  i=0
  while [ $i -lt 50 ]; do
    left=""
    for ns in $(hosts) $SW; do exists "$ns" && [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left="$left $ns"; done
    [ -z "$left" ] && break
    for ns in $left; do signal_ns "$ns" KILL; done
    sleep 0.1
    i=$((i + 1))
  done
  for ns in $(hosts) $SW; do ip netns del "$ns" 2>/dev/null || true; done
  # veth pairs left in this namespace by a creation that failed half way
  for dev in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^dppf${S}v[0-9]+[ab]$" || true); do
    ip link del "$dev" 2>/dev/null || true
  done
  rm -f "/tmp/dppf-cluster-$S-agent"
}

up() {
  n=$1
  rate=${2:-unlimited}
  case $n in '' | *[!0-9]*) die "up: N must be a number (got '$n')" ;; esac
  [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "up: N must be in 1..250 (got $n)"
  down
  trap 'down' EXIT  # a failure half way leaves nothing behind
  ip netns add "$SW"
  ip -n "$SW" link set lo up
  ip -n "$SW" link add br0 type bridge
  ip -n "$SW" link set br0 up
  k=1
  while [ "$k" -le "$n" ]; do
    h=$(host "$k")
    ip netns add "$h"
    ip -n "$h" link set lo up
    ip link add "dppf${S}v${k}a" type veth peer name "dppf${S}v${k}b"
    ip link set "dppf${S}v${k}a" netns "$h" name eth0
    ip link set "dppf${S}v${k}b" netns "$SW" name "h$k"
    ip -n "$SW" link set "h$k" master br0 up
    ip -n "$h" addr add "$NET.$k/24" dev eth0
    ip -n "$h" link set eth0 up
    set_rate "$k"
    k=$((k + 1))
  done
  trap - EXIT
  echo "cluster $S: $n hosts at $NET.1..$NET.$n, rate $rate"
}

# Each host also gets a host name of its own (a UTS namespace named as its network namespace),
# so that what names a host (MPI_Get_processor_name, mpirun's messages) tells them apart.
agent() {  # mpirun's remote shell: host 10.231.S.K -> ip netns exec dppfShK, host name dppfShK
  a=/tmp/dppf-cluster-$S-agent
  cat >"$a" <<EOF
#!/bin/sh
h=dppf${S}h\${1##*.}; shift
exec ip netns exec "\$h" unshare --uts /bin/sh -c 'hostname "\$0" && exec /bin/sh -c "\$1"' "\$h" "\$*"
EOF
  chmod +x "$a"
  echo "$a"
}

[ $# -ge 1 ] || { sed -n '2,29p' "$0" >&2; exit 2; }
cmd=$1
shift
need_ip
need_root
case $cmd in
  up) up "$@" ;;
  down) down ;;
  list) hosts ;;
  addr) need_host "$1"; echo "$NET.$1" ;;
  rate)
    [ $# -eq 2 ] || die "rate K|all RATE"
    rate=$2
    if [ "$1" = all ]; then for h in $(hosts); do set_rate "${h##*h}"; done; else need_host "$1"; set_rate "$1"; fi ;;
  cut) need_host "$1"; ip -n "$SW" link set "h$1" down ;;
  restore) need_host "$1"; ip -n "$SW" link set "h$1" up ;;
  stop) need_host "$1"; signal_ns "$(host "$1")" STOP ;;
  cont) need_host "$1"; signal_ns "$(host "$1")" CONT ;;
  kill) need_host "$1"; signal_ns "$(host "$1")" KILL ;;
  exec) need_host "$1"; h=$(host "$1"); shift; exec ip netns exec "$h" "$@" ;;
  mpirun)
    n=$1
    shift
    need_host "$n"
    list=""
    k=1
    while [ "$k" -le "$n" ]; do list="$list${list:+,}$NET.$k"; k=$((k + 1)); done
    # After an abort, mpirun waits until every daemon has killed its ranks, forever for a daemon
    # on a frozen or cut-off host, and a first SIGTERM or Ctrl-C only says "abort is already in
    # progress". So its stderr passes through a reader that, once the job is aborting, gives it
    # DPPF_MPIRUN_GRACE seconds (default 5) to end and then sends the second SIGTERM that ends
    # it, as a user's second Ctrl-C would. SIGTERM and SIGINT sent to this script go to mpirun.
    fifo=/tmp/dppf-cluster-$S-mpirun.$$
    rm -f "$fifo"
    mkfifo "$fifo"
    ip netns exec "$(host 1)" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$(host 1)" mpirun --allow-run-as-root --oversubscribe -np "$n" --host "$list" \
      --mca plm_rsh_agent "$(agent)" --mca btl tcp,self --mca btl_tcp_if_include "$NET.0/24" \
      --mca oob_tcp_if_include "$NET.0/24" "$@" 2>"$fifo" &
    mp=$!
    trap 'kill -TERM $mp 2>/dev/null || true' TERM
    trap 'kill -INT $mp 2>/dev/null || true' INT
    grace=${DPPF_MPIRUN_GRACE:-5}
    (
      guard=""
      while IFS= read -r line || [ -n "$line" ]; do
        printf '%s\n' "$line" >&2
        case $line in
          *"MPI_ABORT was invoked"* | *"dppf::mpi_communicator watchdog:"* | *"ORTE has lost communication"* | *"has exited due to"*)
            [ -n "$guard" ] || {
              (
                sleep "$grace"
                kill -0 "$mp" 2>/dev/null || exit 0
                echo "cluster.sh: mpirun has not ended $grace s after the job began to abort (it waits for the daemon of a frozen or cut-off host); terminating it" >&2
                kill -TERM "$mp" 2>/dev/null || exit 0
                sleep 1
                kill -TERM "$mp" 2>/dev/null || exit 0
                sleep 2
                kill -KILL "$mp" 2>/dev/null || true
              ) &
              guard=$!
            } ;;
        esac
      done
    ) <"$fifo" &
    reader=$!
    rc=0
    while :; do
      if wait "$mp"; then rc=0; else rc=$?; fi
      kill -0 "$mp" 2>/dev/null || break  # ended; else a trapped signal interrupted the wait
    done
    # The reader ends when every writer closed the fifo; an orphaned daemon on a cut-off host
    # may keep it open, so it gets a moment to print what is left and is ended then.
    i=0
    while kill -0 "$reader" 2>/dev/null && [ $i -lt 10 ]; do sleep 0.1; i=$((i + 1)); done
    kill "$reader" 2>/dev/null || true
    rm -f "$fifo"
    exit $rc ;;
  gloo)
    n=$1
    shift
    need_host "$n"
    pids=""  # pid:rank pairs
    k=1
    while [ "$k" -le "$n" ]; do
      ip netns exec "$(host "$k")" env RANK=$((k - 1)) WORLD_SIZE="$n" DPPF_GLOO_ADDR="$NET.$k" "$@" &
      pids="$pids $!:$((k - 1))"
      k=$((k + 1))
    done
    # Like mpirun: the first rank that fails ends the others. They get DPPF_GLOO_GRACE seconds
    # (default 5) to report their own errors and exit; a stopped one never would, so it is killed
    # at once.
    grace=${DPPF_GLOO_GRACE:-5}
    rc=0
    deadline=""
    while [ -n "$pids" ]; do
      left=""
      for pr in $pids; do
        p=${pr%:*}
        state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo Z)
        if [ "$state" = Z ]; then
          if wait "$p"; then :; else
            r=$?
            [ $rc -ne 0 ] || rc=$r
            # a rank that died by a signal printed nothing itself: say so here
            [ "$r" -le 128 ] || echo "cluster.sh: rank ${pr#*:} ended by signal $((r - 128)) ($(kill -l $((r - 128)) 2>/dev/null))" >&2
          fi
        elif [ -n "$deadline" ] && { [ "$state" = T ] || [ "$(date +%s)" -ge "$deadline" ]; }; then
          kill -KILL "$p" 2>/dev/null || true
          left="$left $pr"
        else
          left="$left $pr"
        fi
      done
      pids=$left
      [ $rc -eq 0 ] || [ -n "$deadline" ] || deadline=$(($(date +%s) + grace))
      [ -z "$pids" ] || sleep 0.1
    done
    exit $rc ;;
  redis)
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found (apt-get install redis-server)"
    need_host 1
    ip netns exec "$(host 1)" redis-server --bind "$NET.1" --port "${1:-6379}" --protected-mode no --save '' \
      --appendonly no --daemonize yes --logfile /dev/null >/dev/null
    # wait until it answers (bounded)
    i=0
    until ip netns exec "$(host 1)" sh -c "exec 3<>/dev/tcp/$NET.1/${1:-6379}" 2>/dev/null ||
      ip netns exec "$(host 1)" redis-cli -h "$NET.1" -p "${1:-6379}" ping >/dev/null 2>&1; do
      i=$((i + 1))
      [ $i -lt 50 ] || die "redis-server did not start on $NET.1:${1:-6379}"
      sleep 0.1
    done
    echo "$NET.1:${1:-6379}" ;;
  *) die "unknown command '$cmd' (see the top of $0)" ;;
esac
