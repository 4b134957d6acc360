# Sourced by the fmnist_*.sh cluster tests, after setting src, S (the cluster id) and exe (the
# fashion_mnist executable): skips without root, tears the cluster down and removes the work
# directory on every exit, and starts ranks of `--comm gloo` runs one by one, so each rank's exit
# status, time and messages can be checked.
set -u
. "$src/tests/cluster/common.sh"
NET=10.231.$S
PY=/usr/bin/python3
dir=$(mktemp -d /tmp/dppf-fmnist-cluster.XXXXXX)
pids=""
cleanup() {
  "$C" down
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$dir"/*.err; do [ -s "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }; done
  exit 1
}
now() { date +%s.%N; }
# seconds from $1 to $2, as a decimal
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# true when $1 <= $2 (decimals)
within() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# rank NAME HOST RANK WORLD ARGS...: starts one rank of a --comm gloo run on host HOST in the
# background; stdout goes to $dir/NAME.out, stderr to $dir/NAME.err, the pid to the variable
# pid_NAME. The store, prefix and timeout come from the environment.
rank() {
  name=$1 h=$2 r=$3 n=$4
  shift 4
  ip netns exec "dppf${S}h$h" env RANK="$r" WORLD_SIZE="$n" DPPF_GLOO_ADDR="$NET.$h" \
    "$exe" --comm gloo "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
  eval "pid_$name=$!"
  pids="$pids $!"
}

# finish NAME: waits for rank NAME and sets rc_NAME and t_NAME (the time it was seen exiting).
finish() {
  eval "p=\$pid_$1"
  if wait "$p"; then r=0; else r=$?; fi
  eval "rc_$1=$r; t_$1=$(now)"
}

# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN (fails after SECONDS).
wait_for() {
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    [ $i -le $(($3 * 20)) ] || fail "no '$2' in $1 after $3 s"
    sleep 0.05
  done
}

# The JSON lines of a run without the times (which alone may differ between identical runs).
numbers() { grep '^{' "$1" | sed 's/, "\(train\|wall\)_s": [0-9.e+-]*//g'; }

# Nothing of this cluster is left: no namespace, no process we started.
nothing_left() {
  "$C" down
  ip netns list | awk '{print $1}' | grep -q "^dppf${S}\(h[0-9]*\|sw\)$" && fail "namespaces left: $(ip netns list | grep "dppf${S}")"
  for p in $pids; do kill -0 "$p" 2>/dev/null && fail "process $p still runs"; done
  return 0
}
