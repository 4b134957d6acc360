#!/bin/sh
# Bad input at startup of fashion_mnist --comm gloo on 2 emulated hosts (3 s timeout), all cases
# at once, each with a prefix of its own. Every process must exit non-zero within the timeout
# + 10 s with the error it is expected to give (no process may train):
#   refused    a store address nothing listens on        -> "cannot reach the store" (both ranks)
#   hung       a redis-server that never answers (SIGSTOP)-> timeout_error of the claim (both)
#   unfilled   WORLD_SIZE=3 with 2 processes              -> connect times out naming rank 2's key (both)
#   same-rank  two processes given rank 0 of 2            -> one "already claimed", the other times out
#   tau        --tau 8 on rank 0, --tau 4 on rank 1        -> "different options: --tau is" (both)
#   method     --method ddp on rank 0, dppf on rank 1     -> "different options: --method is" (both)
# Usage: fmnist_bad_input.sh <source dir> <cluster id> <fashion_mnist>
src=$1 S=$2 exe=$3
. "$src/tests/cluster/fmnist_lib.sh"
export DPPF_GLOO_TIMEOUT_MS=3000
args="--quick --sharpness-samples 0 --json"

"$C" up 2 >/dev/null || fail "up"
hung=$("$C" redis 6394) || fail "redis"
for p in $(ip netns pids "dppf${S}h1"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = redis-server ] && kill -STOP "$p"; done
file=file:$dir
t0=$(now)
DPPF_GLOO_STORE=redis:$NET.1:6399 rank refused0 1 0 2 --prefix refused $args
DPPF_GLOO_STORE=redis:$NET.1:6399 rank refused1 2 1 2 --prefix refused $args
DPPF_GLOO_STORE=redis:$hung rank hung0 1 0 2 --prefix hung $args
DPPF_GLOO_STORE=redis:$hung rank hung1 2 1 2 --prefix hung $args
DPPF_GLOO_STORE=$file rank unfilled0 1 0 3 --prefix unfilled $args
DPPF_GLOO_STORE=$file rank unfilled1 2 1 3 --prefix unfilled $args
DPPF_GLOO_STORE=$file rank same0 1 0 2 --prefix same $args
sleep 0.3  # so the first claim is the one on host 1
DPPF_GLOO_STORE=$file rank same1 2 0 2 --prefix same $args
DPPF_GLOO_STORE=$file rank tau0 1 0 2 --prefix tau $args --tau 8
DPPF_GLOO_STORE=$file rank tau1 2 1 2 --prefix tau $args --tau 4
DPPF_GLOO_STORE=$file rank method0 1 0 2 --prefix method $args --method ddp
DPPF_GLOO_STORE=$file rank method1 2 1 2 --prefix method $args --method dppf

# expect NAME PATTERN: NAME exited non-zero in time, saying PATTERN
expect() {
  finish "$1"
  eval "rc=\$rc_$1 t=\$t_$1"
  took=$(elapsed "$t0" "$t")
  [ "$rc" != 0 ] || fail "$1 exited 0"
  within "$took" 13 || fail "$1 took $took s to fail (timeout 3 s + 10 s)"
  grep -q "fashion_mnist: error on rank .*$2" "$dir/$1.err" || fail "$1 did not say '$2': $(tail -n 2 "$dir/$1.err")"
  grep -q "step" "$dir/$1.err" && fail "$1 trained"
  echo "$1: exit $rc after $took s: $(grep 'error on rank' "$dir/$1.err" | cut -c1-150)"
}
expect refused0 "cannot reach the store, redis $NET.1:6399"
expect refused1 "cannot reach the store, redis $NET.1:6399"
expect hung0 "did not answer the claim of rank 0 within the timeout"
expect hung1 "did not answer the claim of rank 1 within the timeout"
expect unfilled0 "connect failed on rank 0 of 3 .*Wait timeout for key(s): unfilled/2"
expect unfilled1 "connect failed on rank 1 of 3 .*Wait timeout for key(s): unfilled/2"
expect same1 "rank 0 is already claimed under prefix 'same'"
expect same0 "connect failed on rank 0 of 2 .*Wait timeout for key(s): same/1"
expect tau0 "different options: rank(s) 1 differ from rank 0"
expect tau1 "different options: --tau is 4 on this rank (1) and 8 on rank 0"
expect method0 "different options: rank(s) 1 differ from rank 0"
expect method1 "different options: --method is dppf on this rank (1) and ddp on rank 0"
nothing_left
echo "PASS: bad input at startup: every process failed clearly within the bound ($(elapsed "$t0" "$(now)") s)"
