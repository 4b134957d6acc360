#!/bin/sh
# fashion_mnist across emulated hosts gives the threads run's numbers, for ddp, local_sgd and dppf
# (--json, compared by fmnist_compare.py):
# * on 2 hosts exactly: a sum of two floats is the same whichever rank adds first, so the ring
#   (gloo), Open MPI and the threads group (which adds in double and rounds once) agree bit for bit;
# * on 4 hosts within a tolerance: Gloo's ring accumulates each chunk in float around the ring
#   from a different starting rank, Open MPI in its own algorithm's order, both with M - 1
#   roundings where threads rounds the exact sum once, so each all-reduce may differ by an ulp
#   or so per element, and training amplifies that a little (see fmnist_compare.py).
# Usage: fmnist_match.sh <source dir> <cluster id> <fashion_mnist> gloo|mpi
src=$1 S=$2 exe=$3 engine=$4
. "$src/tests/cluster/fmnist_lib.sh"
cmp="$PY $src/tests/cluster/fmnist_compare.py"
quick="--quick --json --method ddp,local_sgd,dppf --sharpness-samples 0"
small="$quick --train-limit 4000 --test-limit 2000"
export DPPF_GLOO_TIMEOUT_MS=20000

"$C" up 4 >/dev/null || fail "up"
# run_on N OUT ARGS...: the run on hosts 1..N, rank 0's stdout into OUT
run_on() {
  n=$1 out=$2
  shift 2
  if [ "$engine" = mpi ]; then
    timeout 120 "$C" mpirun "$n" "$exe" --comm mpi "$@" >"$out" 2>"$dir/mpi.err" || fail "mpirun on $n hosts"
    return 0
  fi
  k=1
  while [ $k -le "$n" ]; do rank "r$k" $k $((k - 1)) "$n" --prefix "run$n" "$@"; k=$((k + 1)); done
  k=1
  while [ $k -le "$n" ]; do
    finish "r$k"
    eval "[ \$rc_r$k = 0 ]" || fail "rank $((k - 1)) of $n exited $(eval echo \$rc_r$k): $(tail -n 3 "$dir/r$k.err")"
    k=$((k + 1))
  done
  cp "$dir/r1.out" "$out"
}

addr=$("$C" redis 6391) || fail "redis"
t0=$(now)
"$exe" $small --workers 2 >"$dir/threads2" 2>/dev/null || fail "threads, 2 workers"
DPPF_GLOO_STORE=file:$dir run_on 2 "$dir/$engine.2" $small
$cmp "$dir/threads2" "$dir/$engine.2" exact || fail "2 hosts over $engine differ from 2 threads"
echo "2 hosts: $(elapsed "$t0" "$(now)") s"
"$exe" $quick --workers 4 >"$dir/threads4" 2>/dev/null || fail "threads, 4 workers"
DPPF_GLOO_STORE=redis:$addr run_on 4 "$dir/$engine.4" $quick
$cmp "$dir/threads4" "$dir/$engine.4" order || fail "4 hosts over $engine differ from 4 threads beyond the summation-order tolerance"
nothing_left
echo "PASS: fashion_mnist over $engine on 2 hosts = 2 threads bit for bit, on 4 hosts = 4 threads within the order tolerance ($(elapsed "$t0" "$(now)") s)"
