#!/usr/bin/env python3
"""Mean and spread over seeds of the final JSON lines written by `fashion_mnist --json`.

usage: summarize.py FILE.jsonl... [--by method|label] [--sharpness]
Each file holds the output of one command (one seed). Lines with "workers" are final results;
results are grouped by method (or, with --by label, by the file name with its _s<seed> suffix
removed, for sweeps). Prints a markdown table: mean +- sample standard deviation (n seeds), and
min..max of test accuracy. --sharpness adds the IMV and Hessian top eigenvalue columns.
"""
import json
import re
import statistics
import sys


def main():
    args = sys.argv[1:]
    by = "method"
    sharp = "--sharpness" in args
    if sharp:
        args.remove("--sharpness")
    if "--by" in args:
        i = args.index("--by")
        by = args[i + 1]
        del args[i:i + 2]
    groups = {}
    order = []
    for path in args:
        label = re.sub(r"_s\d+\.jsonl$", "", path.split("/")[-1])
        for line in open(path):
            d = json.loads(line)
            if "workers" not in d:
                continue
            key = d["method"] if by == "method" else f"{label} ({d['method']})"
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(d)

    def ms(vals, fmt):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "n/a"
        m = statistics.mean(vals)
        s = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{fmt.format(m)} ± {fmt.format(s)}"

    extra = " IMV | Hessian top |" if sharp else ""
    print("| run | n | test acc | (min..max) | train acc | gen gap | test loss | relaxed MV |" + extra +
          " comm / worker | wall s |")
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if sharp else "") + "---|---|")
    for key in order:
        g = groups[key]
        t = [d["test_acc"] for d in g]
        print(f"| {key} | {len(g)} | {ms(t, '{:.4f}')} | {min(t):.4f}..{max(t):.4f} | "
              f"{ms([d['train_acc'] for d in g], '{:.4f}')} | {ms([d['gen_gap'] for d in g], '{:+.4f}')} | "
              f"{ms([d['test_loss'] for d in g], '{:.4f}')} | {ms([d['relaxed_mv'] for d in g], '{:.3g}')} | "
              + (f"{ms([d['imv'] for d in g], '{:.4f}')} | {ms([d['hessian_top'] for d in g], '{:.3g}')} | " if sharp else "") +
              f"{statistics.mean(d['comm_bytes'] for d in g) / 1e6:.0f} MB | {ms([d['wall_s'] for d in g], '{:.1f}')} |")


if __name__ == "__main__":
    main()
