#!/usr/bin/python3
"""Kendall's tau between every sharpness measure and every generalization gap of the Claim-1 sweep,
recomputed from the per-run JSON files that sweep.py leaves in a directory (numpy only).

    examples/generalization/analyze.py docs/figures/generalization [--md tau.md] [--svg imv_gap.svg]

tau is Kendall's tau-b (ties in either variable corrected), computed by Knight's O(n log n)
merge-sort count. Its two-sided p-value under independence is exact (the distribution of the
number of inversions over all n! orders) when there are no ties and n <= 50, and otherwise from the
normal approximation with the tie-corrected variance of S = concordant - discordant.
"Overall" uses every finished run; a hyperparameter's column uses the runs that differ from the
base point in that hyperparameter only (the base runs included), all seeds together. Psi is the
mean of the per-hyperparameter taus (Jiang et al. 2019's granulated coefficient).

Runs trained to a training-loss target (sweep.py --design loss_target) carry "stop"; with
--drop-unreached those that hit the epoch cap first (reached = false) are left out of every table
and plot, and listed with their final training loss.
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot  # noqa: E402

MEASURES = [("imv", "IMV"), ("hessian_top", "Hessian top eigenvalue"), ("hessian_trace", "Hessian trace"),
            ("sam", "SAM sharpness"), ("average", "average-case sharpness"),
            ("train_loss", "final training loss (reference, not a sharpness measure)")]
GAPS = [("acc_gap", "train - test accuracy"), ("loss_gap", "test - train loss")]


def _merge_count(a):
    """Sorts the list a and returns the number of inversions (i < j, a[i] > a[j])."""
    n = len(a)
    if n < 2:
        return a, 0
    left, nl = _merge_count(a[: n // 2])
    right, nr = _merge_count(a[n // 2:])
    out, i, j, inv = [], 0, 0, nl + nr
    while i < len(left) and j < len(right):
        if right[j] < left[i]:
            out.append(right[j])
            inv += len(left) - i
            j += 1
        else:
            out.append(left[i])
            i += 1
    out += left[i:] + right[j:]
    return out, inv


def _tied_pairs(v):
    _, counts = np.unique(v, return_counts=True)
    return int(np.sum(counts * (counts - 1) // 2)), counts


def kendall_s(x, y):
    """S = concordant - discordant pairs, and the pair counts n0, ties in x, in y and in both."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall: x and y must be 1-d of the same length, got {x.shape} and {y.shape}")
    n = len(x)
    order = np.lexsort((y, x))  # by x, ties by y: pairs tied in x are then never inversions in y
    ys = y[order].tolist()
    _, discordant = _merge_count(ys)
    n0 = n * (n - 1) // 2
    tx, _ = _tied_pairs(x)
    ty, _ = _tied_pairs(y)
    txy, _ = _tied_pairs(x + 1j * y)  # pairs equal in both
    s = n0 - tx - ty + txy - 2 * discordant
    return s, n0, tx, ty, txy


def _inversion_counts(n):
    """c[k] = number of permutations of n items with k inversions (Mahonian numbers), as floats."""
    c = np.array([1.0])
    for m in range(2, n + 1):
        nxt = np.zeros(len(c) + m - 1)
        for shift in range(m):
            nxt[shift: shift + len(c)] += c
        c = nxt
    return c


def s_variance(x, y):
    """The variance of S over all orders of y (independence), ties corrected (Kendall 1970)."""
    n = len(x)
    _, cx = _tied_pairs(np.asarray(x, float))
    _, cy = _tied_pairs(np.asarray(y, float))
    v0 = n * (n - 1) * (2 * n + 5)
    vt = np.sum(cx * (cx - 1) * (2 * cx + 5))
    vu = np.sum(cy * (cy - 1) * (2 * cy + 5))
    v = (v0 - vt - vu) / 18.0
    if n > 2:
        v += np.sum(cx * (cx - 1) * (cx - 2)) * np.sum(cy * (cy - 1) * (cy - 2)) / (9.0 * n * (n - 1) * (n - 2))
    if n > 1:
        v += np.sum(cx * (cx - 1)) * np.sum(cy * (cy - 1)) / (2.0 * n * (n - 1))
    return float(v)


def kendall_tau(x, y):
    """(tau_b, two-sided p-value, method) of Kendall's tau between x and y; nan when undefined."""
    n = len(x)
    if n < 2:
        return math.nan, math.nan, "n < 2"
    s, n0, tx, ty, _ = kendall_s(x, y)
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    if denom == 0.0:
        return math.nan, math.nan, "constant"
    tau = s / denom
    if tx == 0 and ty == 0 and n <= 50:
        c = _inversion_counts(n)
        k = (n0 - s) // 2  # discordant pairs
        lo = min(k, n0 - k)
        tail = c[: lo + 1].sum() / c.sum()  # the distribution is symmetric
        return tau, min(1.0, 2.0 * tail), "exact"
    v = s_variance(x, y)
    z = s / math.sqrt(v) if v > 0 else 0.0
    return tau, math.erfc(abs(z) / math.sqrt(2.0)), "normal"


def load_runs(directory):
    runs = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        name = os.path.basename(path)
        if name.endswith(".failed.json") or name == "sweep.json":
            continue
        with open(path) as f:
            runs.append(json.load(f))
        runs[-1]["id"] = name[:-len(".json")]  # the sweep's run id
    return runs


def groups(runs, base, values):
    """hyperparameter -> the runs that differ from base in it only (base runs included)."""
    out = {}
    for h in values:
        out[h] = [r for r in runs
                  if all(math.isclose(r["config"][k], base[k]) for k in base if k != h)]
    return out


def value(run, key):
    return run["measures"][key]["value"] if key in run["measures"] else run[key]


def pairs(runs, m, gap):
    """The (measure, gap) values of the runs where both are finite numbers (JSON null otherwise)."""
    xy = [(value(r, m), r[gap]) for r in runs]
    xy = [(x, y) for x, y in xy if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in xy], [y for _, y in xy]


def table(runs, base, values):
    g = groups(runs, base, values)
    hs = list(values)
    lines = []
    for gap, gap_name in GAPS:
        lines.append(f"\n**{gap_name}** (`{gap}`): tau (p) over {len(runs)} runs, and within each hyperparameter\n")
        lines.append("| measure | overall | " + " | ".join(f"{h} (n={len(g[h])})" for h in hs) + " | Psi |")
        lines.append("|---|---|" + "---|" * len(hs) + "---|")
        for m, m_name in MEASURES:
            cells, taus = [], []
            t, p, _ = kendall_tau(*pairs(runs, m, gap))
            cells.append("n/a" if math.isnan(t) else f"{t:+.2f} ({p:.2g})")
            for h in hs:
                t, p, _ = kendall_tau(*pairs(g[h], m, gap))
                cells.append("n/a" if math.isnan(t) else f"{t:+.2f} ({p:.2g})")
                if not math.isnan(t):
                    taus.append(t)
            psi = f"{np.mean(taus):+.2f}" if taus else "n/a"
            lines.append(f"| {m_name} | " + " | ".join(cells) + f" | {psi} |")
    return "\n".join(lines) + "\n"


def epochs_trained(run):
    return run["stop"]["epochs_trained"] if "stop" in run else run["config"]["epochs"]


def unreached(runs):
    """The runs with a training-loss target that stopped at the epoch cap without reaching it."""
    return [r for r in runs if "stop" in r and not r["stop"]["reached"]]


def unreached_table(runs):
    lines = ["| run | epochs | final train loss | train acc | acc gap | loss gap |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['id']} | {epochs_trained(r)} | {r['train_loss']:.4f} | {r['train_acc']:.3f} | "
                     f"{r['acc_gap']:.3f} | {r['loss_gap']:.2f} |")
    return "\n".join(lines) + "\n"


def summary(runs, base, values):
    """Per setting, the mean (and min..max over seeds) of the fit, the gaps and two measures; with a
    training-loss target also the epochs trained."""
    g = groups(runs, base, values)
    cols = [("train_acc", "train acc", ".3f"), ("test_acc", "test acc", ".3f"), ("acc_gap", "acc gap", ".3f"),
            ("loss_gap", "loss gap", ".2f"), ("train_loss", "train loss", ".3f"), ("imv", "IMV", ".3f"),
            ("hessian_top", "Hessian top", ".1f")]
    if any("stop" in r for r in runs):
        cols.append(("epochs_trained", "epochs", ".0f"))
    lines = ["\n**Per setting** (mean over seeds, min..max in brackets)\n",
             "| varied | value | runs | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    for h, vals in values.items():
        for v in vals:
            rs = [r for r in g[h] if math.isclose(r["config"][h], v)]
            if not rs:
                continue
            cells = []
            for key, _, f in cols:
                xs = [epochs_trained(r) if key == "epochs_trained" else value(r, key) for r in rs]
                cells.append(f"{np.mean(xs):{f}} ({min(xs):{f}}..{max(xs):{f}})")
            lines.append(f"| {h} | {v:g} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cost(directory):
    """The sweep's cost from its sweep.log.jsonl: runs, CPU and wall seconds, the first start and
    the last end (UTC)."""
    import datetime
    with open(os.path.join(directory, "sweep.log.jsonl")) as f:
        events = [json.loads(line) for line in f if line.strip()]
    starts = {e["id"]: e["time"] for e in events if e["event"] == "start"}
    ends = [e for e in events if e["event"] == "end"]
    if not ends:
        return "\nCost: no run has ended yet.\n"
    cpu = sorted(e["cpu_s"] for e in ends)
    utc = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    last_end = max(starts[e["id"]] + e["wall_s"] for e in ends if e["id"] in starts)
    return (f"\nCost (sweep.log.jsonl): {len(ends)} runs ended, {sum(cpu):.0f} CPU s in all, "
            f"{sum(e['wall_s'] for e in ends):.0f} s of wall time summed over runs; per run median "
            f"{cpu[len(cpu) // 2]:.1f} CPU s, at most {cpu[-1]:.1f}; from {utc(min(starts.values()))} to "
            f"{utc(last_end)} UTC.\n")


def svg(runs, base, values, x_key="imv", y_key="acc_gap"):
    """A scatter plot of one measure against one gap, one colour per varied hyperparameter."""
    g = groups(runs, base, values)
    is_base = lambda r: all(math.isclose(r["config"][k], base[k]) for k in base)
    series = [(name, [(value(r, x_key), r[y_key], 0) for r in g[name] if not is_base(r)]) for name in values]
    series.append(("base point", [(value(r, x_key), r[y_key], 0) for r in runs if is_base(r)]))
    return plot.scatter(series, f"{x_key} of the final model", y_key)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory")
    ap.add_argument("--md", help="write the markdown tables there (stdout otherwise)")
    ap.add_argument("--svg", help="write the plot of IMV against the accuracy gap there")
    ap.add_argument("--svg-loss", help="write the plot of IMV against the loss gap there")
    ap.add_argument("--min-train-acc", type=float, default=0.0,
                    help="keep only the runs that fit their training set at least this well (default: all)")
    ap.add_argument("--cost", action="store_true", help="add the CPU and wall time of the runs (sweep.log.jsonl)")
    ap.add_argument("--drop-unreached", action="store_true",
                    help="leave out the runs that did not reach their training-loss target within the cap")
    a = ap.parse_args(argv)
    with open(os.path.join(a.directory, "sweep.json")) as f:
        design = json.load(f)
    runs = load_runs(a.directory)
    finished = len(runs)
    missed = unreached(runs)
    dropped = ""
    if "target_train_loss" in design:
        dropped = (f"\nTarget: training loss <= {design['target_train_loss']:g} within {design['max_epochs']} epochs; "
                   f"{finished - len(missed)} of the {finished} finished runs reached it"
                   + (f", {len(missed)} did not" + (" and are left out of every table and plot" if a.drop_unreached
                                                    else " (still included: no --drop-unreached)")
                      + ":\n\n" + unreached_table(missed) if missed else "") + "\n")
    if a.drop_unreached:
        runs = [r for r in runs if r not in missed]
    runs = [r for r in runs if r["train_acc"] >= a.min_train_acc]
    if len(runs) < 2:
        sys.exit(f"analyze: only {len(runs)} finished run(s) in {a.directory}")
    planned = len(design["runs"])
    text = (f"{finished} of {planned} planned runs finished"
            + (" (PARTIAL: the sweep is not complete)" if finished < planned else "")
            + (f"; {len(runs)} of them with train accuracy >= {a.min_train_acc:g} are used" if a.min_train_acc else "")
            + ".\n" + dropped +
            table(runs, design["base"], design["values"]) + summary(runs, design["base"], design["values"])
            + (cost(a.directory) if a.cost else ""))
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg(runs, design["base"], design["values"]))
    if a.svg_loss:
        with open(a.svg_loss, "w") as f:
            f.write(svg(runs, design["base"], design["values"], y_key="loss_gap"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
