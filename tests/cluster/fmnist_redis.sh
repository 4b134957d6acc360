#!/bin/sh
# The Redis store killed mid-training (fashion_mnist --comm gloo, ddp on 3 emulated hosts, the
# store on host 1): a formed group no longer needs it, so training goes on and every rank exits
# 0 with the result. Then what needs the store, a new group, must fail on every rank with an
# error naming the store, within the timeout + 10 s; and nothing may be left.
# Usage: fmnist_redis.sh <source dir> <cluster id> <fashion_mnist>
src=$1 S=$2 exe=$3
. "$src/tests/cluster/fmnist_lib.sh"
export DPPF_GLOO_TIMEOUT_MS=3000
args="--method ddp --epochs 1 --train-limit 3000 --test-limit 1000 --sharpness-samples 0 --json"

"$C" up 3 50mbit >/dev/null || fail "up"
addr=$("$C" redis 6392) || fail "redis"
export DPPF_GLOO_STORE=redis:$addr
for k in 1 2 3; do rank "a$k" $k $((k - 1)) 3 --prefix first $args; done
wait_for "$dir/a1.err" "^ddp epoch 1/1 step" 60
killed=""
for p in $(ip netns pids "dppf${S}h1"); do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = redis-server ] && kill -KILL "$p" && killed=$p
done
[ -n "$killed" ] || fail "no redis-server on host 1"
grep -q '"workers": 3' "$dir/a1.out" && fail "training ended before the store was killed"
for k in 1 2 3; do
  finish "a$k"
  eval "[ \$rc_a$k = 0 ]" || fail "rank $((k - 1)) exited $(eval echo \$rc_a$k) after the store was killed"
done
grep -q '"method": "ddp", "workers": 3' "$dir/a1.out" || fail "no result line: $(cat "$dir/a1.out")"
echo "the group trained to the end without its store"

t0=$(now)
for k in 1 2; do rank "b$k" $k $((k - 1)) 2 --prefix second $args; done
for k in 1 2; do
  finish "b$k"
  eval "rc=\$rc_b$k t=\$t_b$k"
  took=$(elapsed "$t0" "$t")
  [ "$rc" != 0 ] || fail "rank $((k - 1)) of a new group exited 0 without a store"
  within "$took" 13 || fail "rank $((k - 1)) of a new group took $took s to fail (timeout 3 s + 10 s)"
  grep -q "error on rank $((k - 1)) of 2: .*cannot reach the store, redis $addr" "$dir/b$k.err" ||
    fail "rank $((k - 1)) of a new group: $(tail -n 2 "$dir/b$k.err")"
  echo "new group, rank $((k - 1)): exit $rc after $took s: $(grep 'error on rank' "$dir/b$k.err" | cut -c1-140)"
done
nothing_left
echo "PASS: the store killed mid-training: training finished; a new group then failed clearly on every rank"
