#!/bin/sh
# A fault mid-training, during a sync, on 3 emulated hosts (fashion_mnist --comm gloo, ddp over
# 50 Mbit/s links, so nearly all the time is the gradient all-reduce; 3 s timeout): host 3's rank
# SIGKILLed, SIGSTOPped, or its link cut, once every rank's checkpoint file of step 3 exists.
# Every other rank (for a cut, host 3's too) must exit non-zero with its error within the timeout
# + 10 s, and nothing may be left. Then on fresh hosts --resume must continue from the newest
# step of which every rank has a checkpoint and finish with exactly the uninterrupted run's numbers.
# Usage: fmnist_fault.sh <source dir> <cluster id> <fashion_mnist> kill|stop|cut
src=$1 S=$2 exe=$3 fault=$4
. "$src/tests/cluster/fmnist_lib.sh"
export DPPF_GLOO_TIMEOUT_MS=3000 DPPF_GLOO_STORE=file:$dir
ckpt=$dir/ckpt
args="--method ddp --epochs 1 --train-limit 3000 --test-limit 1000 --sharpness-samples 0 --json --checkpoint $ckpt --checkpoint-every 3"

"$C" up 3 50mbit >/dev/null || fail "up"
for k in 1 2 3; do rank "a$k" $k $((k - 1)) 3 --prefix first $args; done
wait_for "$dir/a1.err" "saved the checkpoints of step 3" 60
# Rank 0 reports the save once every rank has written its file (a temporary renamed at the end;
# a barrier after it); the files are checked too, so a note printed too early fails here.
i=0
until [ -f "$ckpt/ddp.step3.rank1.safetensors" ] && [ -f "$ckpt/ddp.step3.rank2.safetensors" ]; do
  i=$((i + 1))
  [ $i -le 20 ] || fail "rank 0 said step 3 was saved, but ranks 1 and 2 have not written it: $(ls "$ckpt")"
  sleep 0.05
done
grep -q "saved the checkpoints of step 15" "$dir/a1.err" && fail "training ended before the fault"
t0=$(now)
"$C" "$fault" 3
survivors="1 2"
[ "$fault" = cut ] && survivors="1 2 3"
for k in $survivors; do
  finish "a$k"
  eval "rc=\$rc_a$k t=\$t_a$k"
  took=$(elapsed "$t0" "$t")
  [ "$rc" != 0 ] || fail "rank $((k - 1)) exited 0 after host 3 was hit ($fault)"
  within "$took" 13 || fail "rank $((k - 1)) took $took s to fail (timeout 3 s + 10 s)"
  grep -q "fashion_mnist: error on rank $((k - 1)) of 3: .*gloo_communicator" "$dir/a$k.err" ||
    fail "rank $((k - 1)) did not report a gloo_communicator error: $(tail -n 2 "$dir/a$k.err")"
  echo "rank $((k - 1)): exit $rc after $took s: $(grep 'error on rank' "$dir/a$k.err" | cut -c1-160)"
done
nothing_left

# The step to resume from: the newest one of which every rank has a checkpoint.
expect=$(for r in 0 1 2; do ls "$ckpt" | sed -n "s/^ddp\.step\([0-9]*\)\.rank$r\.safetensors$/\1/p" | sort -u; done |
  sort -n | uniq -c | awk '$1 == 3 { s = $2 } END { print s }')
[ -n "$expect" ] && [ "$expect" -ge 3 ] || fail "no step with a checkpoint on every rank: $(ls "$ckpt")"

"$C" up 3 >/dev/null || fail "up (fresh hosts)"
for k in 1 2 3; do rank "b$k" $k $((k - 1)) 3 --prefix resumed $args --resume; done
for k in 1 2 3; do finish "b$k"; eval "[ \$rc_b$k = 0 ]" || fail "resumed rank $((k - 1)) exited $(eval echo \$rc_b$k)"; done
grep -q "resumed from the checkpoints of step $expect in" "$dir/b1.err" ||
  fail "did not resume from step $expect: $(grep checkpoints "$dir/b1.err" | head -n 3)"
for k in 1 2 3; do rank "c$k" $k $((k - 1)) 3 --prefix reference --method ddp --epochs 1 --train-limit 3000 --test-limit 1000 --sharpness-samples 0 --json; done
for k in 1 2 3; do finish "c$k"; eval "[ \$rc_c$k = 0 ]" || fail "uninterrupted rank $((k - 1)) exited $(eval echo \$rc_c$k)"; done
numbers "$dir/b1.out" >"$dir/resumed.json"
numbers "$dir/c1.out" >"$dir/reference.json"
[ "$(wc -l <"$dir/reference.json")" = 2 ] || fail "the uninterrupted run printed: $(cat "$dir/c1.out")"
diff "$dir/reference.json" "$dir/resumed.json" || fail "the resumed run's numbers differ from the uninterrupted run's"
nothing_left
echo "PASS: host 3 $fault mid-sync -> the others raised within the bound; resumed at step $expect on fresh hosts, same numbers as uninterrupted"
