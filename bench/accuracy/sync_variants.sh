#!/bin/sh
# Test accuracy and relaxed MV of the sync's variants (blocking, overlapped d = 1, 4, 8, bf16, and
# overlapped d = 8 with bf16) for
# local_sgd and dppf over 3 seeds, one --quick epoch and the default 4 epochs of fashion_mnist
# (M = 4 worker threads, tau = 8): the numbers do not depend on the engine, only the time does.
# Prints one JSON line per run (the example's result line, with "variant", "budget" and "seed"
# added), then a markdown table of mean +- sample std per variant.
# Usage: sync_variants.sh [fashion_mnist executable] > runs.jsonl   (about 5.5 minutes on 2 cores)
set -eu
exe=${1:-build/host/examples/fashion_mnist/fashion_mnist}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for budget in quick full; do
  for seed in 1 2 3; do
    for variant in blocking d1 d4 d8 bf16 d8bf16; do
      case $variant in
        blocking) flags="" ;;
        bf16) flags="--sync-precision bf16" ;;
        d8bf16) flags="--overlap-steps 8 --sync-precision bf16" ;;
        d*) flags="--overlap-steps ${variant#d}" ;;
      esac
      [ "$budget" = quick ] && flags="$flags --quick"
      "$exe" --method local_sgd,dppf --seed "$seed" $flags --json --sharpness-samples 0 2>/dev/null |
        grep '"workers"' | sed "s/^{/{\"variant\": \"$variant\", \"budget\": \"$budget\", \"seed\": $seed, /" | tee -a "$out"
    done
  done
done
python3 - "$out" >&2 <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for budget, name in (("quick", "one --quick epoch"), ("full", "4 epochs")):
    print(f"\n{name}: test accuracy and relaxed MV, mean +- std over seeds 1, 2, 3\n")
    print("| variant | local_sgd test acc | local_sgd relaxed MV | dppf test acc | dppf relaxed MV |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for v in ("blocking", "d1", "d4", "d8", "bf16", "d8bf16"):
        cells = []
        for m in ("local_sgd", "dppf"):
            r = [x for x in rows if x["budget"] == budget and x["method"] == m and x["variant"] == v]
            a, mv = [x["test_acc"] for x in r], [x["relaxed_mv"] for x in r]
            cells += [f"{st.mean(a):.4f} +- {st.stdev(a):.4f}", f"{st.mean(mv):.3f} +- {st.stdev(mv):.3f}"]
        label = {"blocking": "blocking", "bf16": "bf16", "d8bf16": "overlapped d=8 + bf16"}.get(v, "overlapped d=" + v[1:])
        print(f"| {label} | " + " | ".join(cells) + " |")
PY
