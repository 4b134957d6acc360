#!/bin/sh
# fashion_mnist --elastic on one machine (a directory store, loopback): two founders, then a
# newcomer started once the second sync committed, with a checkpoint at every sync
# (--checkpoint-every = --tau), so the step it is let in at is a save step: it must join that
# save (a collective of the group) like the members, or the next collective of one side meets
# the save of the other. All three must finish with exit 0, the result must say 3 workers
# finished, the newcomer must say where it was let in, and the newest checkpoint must record the
# three members (its safetensors header, read here).
# Usage: elastic_newcomer.sh <fashion_mnist> <python3>
set -u
exe=$1 py=$2
dir=$(mktemp -d /tmp/dppf-fmnist-newcomer.XXXXXX)
pids=""
trap 'for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; for f in "$dir"/*.err; do echo "== $f"; grep -v "step [0-9]*/" "$f" | tail -n 8; done; exit 1; }
args="--comm gloo --elastic --method local_sgd --quick --epochs 3 --world-size 2 --store file:$dir/store --prefix newcomer
      --gloo-addr 127.0.0.1 --gloo-timeout 5000 --sharpness-samples 0 --tau 8 --checkpoint $dir/ckpt --checkpoint-every 8
      --sync-log --json"
for w in a b; do
  timeout 120 "$exe" $args >"$dir/$w.out" 2>"$dir/$w.err" &
  pids="$pids $!"
done
i=0
until grep -q "sync 2 committed" "$dir"/a.err "$dir"/b.err 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 600 ] || fail "the founders did not reach their second sync in 60 s"; sleep 0.1
done
timeout 120 "$exe" $args >"$dir/c.out" 2>"$dir/c.err" &
pids="$pids $!"
for p in $pids; do wait "$p" || fail "a worker exited $?"; done
pids=""
step=$(sed -n 's/.*worker [0-9]*: let in at step \([0-9]*\).*/\1/p' "$dir/c.err")
[ -n "$step" ] || fail "the newcomer was not let in"
result=$(cat "$dir"/?.out | grep '"workers_finished": ')
[ "$(echo "$result" | wc -l)" = 1 ] || fail "expected one result line: $result"
echo "$result" | grep -q '"workers_finished": 3' || fail "not 3 finished: $result"
newest=$(ls "$dir/ckpt" | sed -n 's/^local_sgd\.step\([0-9]*\)\.elastic\.safetensors$/\1/p' | sort -n | tail -n 1)
[ -n "$newest" ] && [ "$newest" -gt "$step" ] || fail "no checkpoint after step $step: $(ls "$dir/ckpt")"
members=$("$py" -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); m = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
print(m["dppf.elastic.members"])' "$dir/ckpt/local_sgd.step$newest.elastic.safetensors") || fail "cannot read the checkpoint"
[ "$members" = 3 ] || fail "the step-$newest checkpoint records $members members"
echo "PASS: newcomer let in at step $step (a save step), 3 finished, the step-$newest checkpoint records 3 members"
