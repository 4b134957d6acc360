#!/usr/bin/python3
"""For choosing a training-loss target and an epoch cap: the first epoch at which each run's
per-epoch training loss (the JSON curve's train_loss, what --target-train-loss reads) is <= each
target, from the run JSON files of one or more directories, one markdown table.

    examples/generalization/target_epochs.py docs/figures/generalization [DIR ...] \
        [--targets 0.1,0.05,0.02,0.01] [--md out.md]

A blank cell: the run never got there within the epochs it trained. The last rows count, per
target, the runs that got there and the largest first epoch among them.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze  # noqa: E402


def first_epoch(run, target):
    return next((e["epoch"] for e in run["curve"] if e["train_loss"] <= target), None)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directories", nargs="+")
    ap.add_argument("--targets", default="0.1,0.05,0.02,0.01")
    ap.add_argument("--md", help="write the table there (stdout otherwise)")
    a = ap.parse_args(argv)
    targets = [float(t) for t in a.targets.split(",")]
    runs = [r for d in a.directories for r in analyze.load_runs(d)]
    lines = ["| run | epochs trained | last train loss | " + " | ".join(f"first epoch <= {t:g}" for t in targets) + " |",
             "|---|---|---|" + "---|" * len(targets)]
    firsts = {t: [] for t in targets}
    for r in runs:
        cells = []
        for t in targets:
            k = first_epoch(r, t)
            cells.append("" if k is None else str(k))
            if k is not None:
                firsts[t].append(k)
        lines.append(f"| {r['id']} | {len(r['curve'])} | {r['curve'][-1]['train_loss']:.4f} | " + " | ".join(cells) + " |")
    lines.append(f"| **runs that got there (of {len(runs)})** | | | " + " | ".join(str(len(firsts[t])) for t in targets) + " |")
    lines.append("| **largest first epoch** | | | " + " | ".join(str(max(firsts[t], default="")) for t in targets) + " |")
    text = "\n".join(lines) + "\n"
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
