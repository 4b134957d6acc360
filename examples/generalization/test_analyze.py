#!/usr/bin/python3
"""Checks analyze.py's Kendall tau-b and p-values against independent references: a brute-force
O(n^2) count of pairs, closed forms, and the exact permutation distribution enumerated by brute
force. Exits non-zero (with the failing case) on any mismatch."""
import itertools
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze  # noqa: E402


def brute_tau_b(x, y):
    """tau-b from every pair: (C - D) / sqrt((n0 - ties in x) (n0 - ties in y))."""
    c = d = tx = ty = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            tx += sx == 0
            ty += sy == 0
            c += sx * sy > 0
            d += sx * sy < 0
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - tx) * (n0 - ty))
    return ((c - d) / denom if denom > 0 else math.nan), c - d


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def main():
    rng = np.random.default_rng(20261202)
    # Fresh random inputs, with and without ties, against the brute-force count.
    for trial in range(300):
        n = int(rng.integers(2, 60))
        if trial % 3 == 0:
            x, y = rng.normal(size=n), rng.normal(size=n)
        else:  # few distinct values: many ties in x, y and both
            x, y = rng.integers(0, 4, size=n).astype(float), rng.integers(0, 3, size=n).astype(float)
            if trial % 3 == 2:
                y = x + rng.integers(0, 2, size=n)  # correlated, with joint ties
        ref, s_ref = brute_tau_b(x, y)
        s, *_ = analyze.kendall_s(x, y)
        check(s == s_ref, f"S {s} != brute force {s_ref} (n={n}, trial {trial})")
        t, p, _ = analyze.kendall_tau(x, y)
        if math.isnan(ref):  # a constant x or y: tau is undefined
            check(math.isnan(t), f"tau {t} of a constant input (n={n}, trial {trial})")
            continue
        check(abs(t - ref) < 1e-12, f"tau {t} != brute force {ref} (n={n}, trial {trial})")
        check(0.0 <= p <= 1.0, f"p {p} out of [0, 1]")

    # Closed forms: a monotone map gives +1, a decreasing one -1, k disjoint adjacent swaps of
    # 0..n-1 give k inversions, tau = 1 - 4k / (n (n - 1)).
    x = np.arange(12.0)
    check(analyze.kendall_tau(x, np.exp(x))[0] == 1.0, "tau of a monotone map")
    check(analyze.kendall_tau(x, -x ** 3)[0] == -1.0, "tau of a decreasing map")
    for k in range(1, 6):
        y = x.copy()
        for i in range(k):
            y[2 * i], y[2 * i + 1] = y[2 * i + 1], y[2 * i]
        check(abs(analyze.kendall_tau(x, y)[0] - (1 - 4 * k / (12 * 11))) < 1e-12, f"tau with {k} swaps")
    # A small case with ties worked by hand: pairs C = 4, D = 0, one tie in x, one in y:
    # tau_b = 4 / sqrt(5 * 5) = 0.8.
    check(abs(analyze.kendall_tau([1, 2, 2, 3], [1, 3, 2, 3])[0] - 0.8) < 1e-12, "hand-worked tie case")
    check(math.isnan(analyze.kendall_tau([1, 1, 1], [1, 2, 3])[0]), "tau of a constant is undefined")

    # Exact p-value: perfect order of n = 5 has probability 1/120 per tail, p = 2/120.
    t, p, how = analyze.kendall_tau(range(5), range(5))
    check(how == "exact" and abs(p - 2 / 120) < 1e-12, f"exact p of a perfect order: {p} ({how})")
    # Against the permutation distribution enumerated by brute force (n = 7, no ties).
    n = 7
    perms = list(itertools.permutations(range(n)))
    s_all = np.array([brute_tau_b(np.arange(n), np.array(q))[1] for q in perms])
    for q in [perms[5], perms[1000], perms[2500], perms[4000]]:
        _, s_q = brute_tau_b(np.arange(n), np.array(q))
        p_ref = np.mean(np.abs(s_all) >= abs(s_q))
        _, p, how = analyze.kendall_tau(np.arange(n), np.array(q, float))
        check(how == "exact" and abs(p - p_ref) < 1e-12, f"exact p {p} != enumerated {p_ref} for {q}")
    # The tie-corrected variance of S is the exact variance over all orders of y, ties or not.
    for x, y in [(np.arange(7.0), np.arange(7.0)), (np.array([0, 0, 1, 1, 1, 2, 3.0]), np.array([0, 1, 1, 2, 2, 2, 5.0]))]:
        s_perm = np.array([analyze.kendall_s(x, y[list(q)])[0] for q in perms])
        v_ref = np.mean(s_perm.astype(float) ** 2)  # E S = 0 under the null
        v = analyze.s_variance(x, y)
        check(abs(v - v_ref) < 1e-9 * v_ref, f"variance of S {v} != enumerated {v_ref} for x={x}, y={y}")
    # The normal p-value is used with ties; for a strong tie-free correlation at n = 60 it agrees
    # with the exact one to within the approximation (here both are tiny).
    x = np.arange(60.0)
    t, p, how = analyze.kendall_tau(x, x + rng.normal(scale=5, size=60))
    check(how == "normal" and p < 1e-6 and t > 0.5, f"normal p for a strong correlation: tau {t}, p {p}")
    print("kendall tau: all checks passed")
    check_drop_unreached()


def check_drop_unreached():
    """analyze.py --drop-unreached on a made-up loss-target sweep: the runs that reached the target
    have IMV in the order of the accuracy gap (tau +1), the two that did not in the reverse order;
    dropped, tau is +1.00 and the two are listed with their final loss; kept, tau is below 1."""
    import json
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        design = {"base": {"lr": 1.0}, "values": {"lr": [1.0, 2.0, 3.0, 4.0]}, "seeds": [1],
                  "runs": [f"r{i}" for i in range(6)], "target_train_loss": 0.01, "max_epochs": 9}
        with open(os.path.join(d, "sweep.json"), "w") as f:
            json.dump(design, f)
        for i in range(6):
            reached = i < 4
            gap = 0.1 * (i + 1)
            imv = gap if reached else 1.0 - gap  # the unreached ones against the trend
            run = {"config": {"lr": [1.0, 2.0, 3.0, 4.0, 2.0, 3.0][i], "epochs": 9},
                   "stop": {"target_train_loss": 0.01, "max_epochs": 9, "epochs_trained": 3 if reached else 9,
                            "reached": reached},
                   "train_acc": 1.0, "test_acc": 1.0 - gap, "train_loss": 0.005 if reached else 0.5 + i,
                   "test_loss": 1.0, "acc_gap": gap, "loss_gap": gap,
                   "measures": {k: {"value": imv} for k in ("imv", "hessian_top", "hessian_trace", "sam", "average")}}
            with open(os.path.join(d, f"r{i}.json"), "w") as f:
                json.dump(run, f)
        out = os.path.join(d, "tau.md")
        analyze.main([d, "--drop-unreached", "--md", out])
        text = open(out).read()
        check("4 of the 6 finished runs reached it, 2 did not and are left out" in text, f"dropped count:\n{text}")
        check("| r4 | 9 | 4.5000 |" in text and "| r5 | 9 | 5.5000 |" in text, f"the unreached runs' final loss:\n{text}")
        check("tau (p) over 4 runs" in text and "| IMV | +1.00 " in text, f"tau without the unreached runs:\n{text}")
        analyze.main([d, "--md", out])
        text = open(out).read()
        check("(still included: no --drop-unreached)" in text and "tau (p) over 6 runs" in text
              and "| IMV | +1.00 " not in text, f"tau with the unreached runs kept:\n{text}")
    print("analyze --drop-unreached: all checks passed")


if __name__ == "__main__":
    main()
