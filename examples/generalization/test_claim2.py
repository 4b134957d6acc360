#!/usr/bin/python3
"""Checks the Claim-2 sweep's plan (claim2.py) and analysis (analyze_claim2.py) against
independent references: every planned push reaches its intended fixed point K * R0 by the
closed forms of docs/method.md, run ids are unique and name their seed, the paired differences
match a direct computation on synthetic runs whose seeds come in shuffled order, and the
beyond/within verdict flips where |mean| crosses 2 standard errors. Exits non-zero on a mismatch."""
import math
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import analyze_claim2  # noqa: E402
import claim2  # noqa: E402


def flag(cmd, name):
    return cmd[cmd.index(name) + 1] if name in cmd else None


def config_of(cmd):
    """The JSON config the generalization program would write for this command line."""
    return {"method": flag(cmd, "--method"), "lambda": float(flag(cmd, "--lambda") or 0.05),
            "alpha": float(flag(cmd, "--alpha")), "workers": int(flag(cmd, "--workers") or 1),
            "push": flag(cmd, "--push") or "constant", "push_warmup": int(flag(cmd, "--push-warmup") or 0),
            "seed": int(flag(cmd, "--seed"))}


def check(cond, what):
    if not cond:
        sys.exit("test_claim2: FAILED: " + what)


def main():
    runs = claim2.plan("gen", "/out", [1, 2])
    ids = [rid for rid, _ in runs]
    check(len(ids) == len(set(ids)), "run ids are not unique")
    multiples = dict([(f"push{k:g}", k) for k in claim2.PUSH_MULTIPLES] +
                     [(f"inv{k:g}", k) for k in claim2.INVERSE_MULTIPLES] +
                     [("push1_warm", 1), ("push2_warm", 2), ("inv2_warm", 2)])
    seen = set()
    for rid, cmd in runs:
        c = config_of(cmd)
        check(rid.endswith(f"_s{c['seed']}") and flag(cmd, "--out") == f"/out/{rid}.json", rid + ": id, seed, --out")
        name = analyze_claim2.setting_of({"id": rid})
        seen.add(name)
        p = analyze_claim2.predicted_mv({"config": c})
        if name in multiples:
            want = multiples[name] * claim2.R0
            check(p is not None and math.isclose(p, want, rel_tol=1e-5), f"{rid}: fixed point {p} != {want}")
            check(("_warm" in name) == (c["push_warmup"] > 0), rid + ": warm-up")
        else:
            check(p is None, f"{rid}: a baseline has a push fixed point")
    check(seen == set(multiples) | {"single", "ddp", "local_sgd", "pull"}, f"settings {sorted(seen)}")

    # Paired differences on synthetic runs, seeds shuffled within each setting.
    rng = random.Random(7)
    seeds = list(range(1, 7))
    base_acc = {s: 0.8 + rng.uniform(-0.01, 0.01) for s in seeds}
    for shift, verdict in ((0.02, "beyond"), (0.0005, "within")):
        noise = {s: rng.uniform(-0.004, 0.004) for s in seeds}
        mk = lambda name, acc, s, lam: {"id": f"{name}_s{s}", "test_acc": acc, "config": {
            "method": "local_sgd" if name == "local_sgd" else "dppf", "lambda": lam, "alpha": 0.1, "workers": 4, "push": "constant", "push_warmup": 0, "seed": s}}
        order = seeds[:]
        rng.shuffle(order)
        by = {"local_sgd": [mk("local_sgd", base_acc[s], s, 0.0) for s in seeds],
              "pull": [mk("pull", base_acc[s], s, 0.0) for s in seeds[:1]],
              "push1": [mk("push1", base_acc[s] + shift + noise[s], s, 0.1) for s in order]}
        d = [shift + noise[s] for s in seeds]
        m, se = statistics.mean(d), statistics.stdev(d) / math.sqrt(len(d))
        row = [line for line in analyze_claim2.paired_table(by).splitlines() if line.startswith("| push1 |")]
        check(len(row) == 1, "paired table has no push1 row")
        cells = [c.strip() for c in row[0].split("|")[2:-1]]  # against local_sgd, ddp, pull
        check(cells[0].startswith(f"{m:+.4f} ± {se:.4f} (n=6; {verdict}"),
              f"shift {shift}: {cells[0]} (want {m:+.4f} ± {se:.4f}, {verdict})")
        check(cells[1:] == ["n/a", "n/a"], "no ddp runs and one pull seed must each give n/a, not a difference: " + row[0])
        check(not any(line.startswith("| local_sgd |") for line in analyze_claim2.paired_table(by).splitlines()),
              "a baseline that is not DPPF has a row")
    print("claim2: all checks passed")


if __name__ == "__main__":
    main()
