"""Compares the --json output of two fashion_mnist runs: fmnist_compare.py A B exact|order.

Counts (methods, workers, tau, epochs, bytes sent) must always be equal, and every line present.
exact: every number equal as printed (6 significant digits), wall time aside.
order: the runs summed in different orders (threads: the exact sum rounded once; Gloo's ring or
Open MPI: M - 1 float roundings in their own order), so each all-reduce may differ by about an
ulp per element. Over a --quick run that grows to at most ~1e-4 relative in the losses (measured:
ddp on 4 hosts, 46 gradient all-reduces, 1.4e-4 on the training loss and 1 image of 12000 in
accuracy; local_sgd and dppf, with 6 syncs, equal to the printed digits). Allowed: losses and
relaxed MV 2e-3 relative, accuracies 2e-3 absolute (24 of the 12000 training images, 20 of the
10000 test images), gen_gap 4e-3. A wrong sum (a missing rank, a sum for an average, another
shard) moves these by whole percents.
"""
import json
import sys

COUNTS = {"method", "workers", "tau", "epochs", "epoch", "comm_bytes"}
ACCURACY = {"train_acc", "test_acc"}


def lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.startswith("{")]


def main():
    a, b, mode = lines(sys.argv[1]), lines(sys.argv[2]), sys.argv[3]
    problems = []
    if len(a) != len(b) or len(a) < 6:
        problems.append(f"{len(a)} lines against {len(b)} (at least 6 expected: an epoch and a result per method)")
    worst = 0.0
    for x, y in zip(a, b):
        if set(x) != set(y):
            problems.append(f"fields differ: {sorted(x)} vs {sorted(y)}")
            continue
        for k, v in x.items():
            w = y[k]
            if k in ("wall_s", "train_s"):
                continue
            if k in COUNTS or mode == "exact" or v is None or w is None:
                if v != w:
                    problems.append(f"{x['method']} {k}: {v} vs {w}")
                continue
            if k in ACCURACY:
                d, bound = abs(v - w), 2e-3
            elif k == "gen_gap":
                d, bound = abs(v - w), 4e-3
            else:
                d, bound = abs(v - w) / max(abs(v), 1e-12), 2e-3
            worst = max(worst, d / bound)
            if d > bound:
                problems.append(f"{x['method']} {k}: {v} vs {w} (difference {d:.3g} > {bound:g})")
    for p in problems:
        print("  " + p)
    print(f"{mode}: {len(a)} lines, {len(problems)} differences; largest difference {worst:.2f} of its bound")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
