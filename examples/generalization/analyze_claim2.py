#!/usr/bin/python3
"""The tables and plots of the Claim-2 sweep (claim2.py), recomputed from its per-run JSON files:

    examples/generalization/analyze_claim2.py docs/figures/claim2 [--md claim2.md] \
        [--svg-acc acc_vs_push.svg] [--svg-mv mv_vs_push.svg]

Per setting: mean +- sample standard deviation over the seeds of the test accuracy, the gaps,
the test loss, the final relaxed MV and the measures of x_bar. Against LocalSGD, DDP and the
pull-only run, each DPPF setting's test-accuracy difference is paired by seed (a seed fixes the data,
its deal into shards and the initial model, so pairs share everything but the method): the mean
difference, its standard error, and whether |mean| > 2 standard errors ("beyond the seed spread").
The predicted fixed point of a push is the relaxed MV its sync alone would settle at in a flat
direction: lambda / alpha (constant) or (lambda / (alpha M))^(1/3) (inverse_mv).
"""
import argparse
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze  # noqa: E402
import claim2  # noqa: E402
import plot  # noqa: E402

COLUMNS = [("test_acc", "test acc", ".4f"), ("train_acc", "train acc", ".4f"), ("acc_gap", "acc gap", ".3f"),
           ("test_loss", "test loss", ".3f"), ("loss_gap", "loss gap", ".3f"), ("relaxed_mv", "relaxed MV", ".2f"),
           ("imv", "IMV", ".4f"), ("hessian_top", "Hessian top", ".2f")]


def setting_of(run):
    """The setting's name: the run's file id without its seed (claim2.py names runs <setting>_s<seed>)."""
    return re.sub(r"_s\d+$", "", run["id"])


def predicted_mv(run):
    c = run["config"]
    if c["method"] != "dppf" or c["lambda"] == 0:
        return None
    if c["push"] == "inverse_mv":
        return (c["lambda"] / (c["alpha"] * c["workers"])) ** (1 / 3)
    return c["lambda"] / c["alpha"]


def mean_std(xs):
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else float("nan")
    return m, s


def load(directory):
    by = {}
    for r in analyze.load_runs(directory):
        by.setdefault(setting_of(r), []).append(r)
    order = [name for name, _ in claim2.settings()]  # the sweep's order; unknown settings last
    rank = lambda name: order.index(name) if name in order else len(order)
    return {k: by[k] for k in sorted(by, key=lambda k: (rank(k), k))}


def settings_table(by):
    lines = ["| setting | predicted MV | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for name, rs in by.items():
        p = predicted_mv(rs[0])
        cells = []
        for key, _, f in COLUMNS:
            m, s = mean_std([analyze.value(r, key) for r in rs])
            cells.append(f"{m:{f}} ± {s:{f}}" if len(rs) > 1 else f"{m:{f}}")
        lines.append(f"| {name} | {'' if p is None else f'{p:.2f}'} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(by, baselines=("local_sgd", "ddp", "pull")):
    lines = ["| setting | " + " | ".join(f"test acc - {b} (paired by seed)" for b in baselines) + " |",
             "|---|" + "---|" * len(baselines)]
    for name, rs in by.items():
        if rs[0]["config"]["method"] != "dppf":
            continue
        cells = []
        for b in baselines:
            if b == name:
                cells.append("-")
                continue
            base = {r["config"]["seed"]: r["test_acc"] for r in by.get(b, [])}
            d = [r["test_acc"] - base[r["config"]["seed"]] for r in rs if r["config"]["seed"] in base]
            if len(d) < 2:
                cells.append("n/a")
                continue
            m, s = mean_std(d)
            se = s / math.sqrt(len(d))
            cells.append(f"{m:+.4f} ± {se:.4f} (n={len(d)}; {'beyond' if abs(m) > 2 * se else 'within'} the seed spread)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def push_series(by, key, skip=()):
    """(family, [(predicted MV, mean, std)]) of the push settings but `skip`, one family per push
    mode and warm-up."""
    fam = {}
    for name, rs in by.items():
        p = predicted_mv(rs[0])
        if p is None or name in skip:
            continue
        c = rs[0]["config"]
        family = c["push"] + (" + warm-up" if c["push_warmup"] else "")
        m, s = mean_std([analyze.value(r, key) for r in rs])
        fam.setdefault(family, []).append((p, m, 0.0 if math.isnan(s) else s))
    return [(f, sorted(v)) for f, v in fam.items()]


def level(by, name, key, xs):
    """A baseline's mean as a horizontal guide across the plotted x range."""
    if name not in by or not xs:
        return []
    m, _ = mean_std([analyze.value(r, key) for r in by[name]])
    return [(name, [(min(xs), m), (max(xs), m)])]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory")
    ap.add_argument("--md", help="write the markdown tables there (stdout otherwise)")
    ap.add_argument("--svg-acc", help="write the plot of test accuracy against the push's fixed point there")
    ap.add_argument("--svg-mv", help="write the plot of the final relaxed MV against the push's fixed point there")
    a = ap.parse_args(argv)
    by = load(a.directory)
    if not by:
        sys.exit(f"analyze_claim2: no finished run in {a.directory}")
    n = sum(len(v) for v in by.values())
    text = (f"{n} runs in {len(by)} settings (mean ± sample std over seeds).\n\n" + settings_table(by) +
            "\nTest accuracy of each push setting against the baselines:\n\n" + paired_table(by))
    # A setting that diverged (mean test accuracy below 0.7) would squash the accuracy axis.
    diverged = [name for name, rs in by.items() if mean_std([r["test_acc"] for r in rs])[0] < 0.7]
    if diverged:
        text += f"\nLeft out of the accuracy plot (mean test accuracy < 0.7): {', '.join(diverged)}.\n"
    acc = push_series(by, "test_acc", skip=diverged)
    xs = [x for _, ps in acc for x, _, _ in ps]
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if a.svg_acc:
        guides = [g for b in ("local_sgd", "pull", "ddp", "single") for g in level(by, b, "test_acc", xs)]
        with open(a.svg_acc, "w") as f:
            f.write(plot.scatter(acc, "predicted fixed point of the push (relaxed MV)", "test accuracy of x_bar", guides))
    if a.svg_mv:
        mv = push_series(by, "relaxed_mv")
        guides = [("relaxed MV = fixed point", [(min(xs), min(xs)), (max(xs), max(xs))])]
        guides += level(by, "pull", "relaxed_mv", xs)
        with open(a.svg_mv, "w") as f:
            f.write(plot.scatter(mv, "predicted fixed point of the push (relaxed MV)", "final relaxed MV", guides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
