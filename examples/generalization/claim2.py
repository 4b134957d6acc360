#!/usr/bin/python3
"""The Claim-2 sweep: does DPPF's push help where over-fitting happens? M = 4 workers train the
Claim-1 base MLP (784-128-128-10) on the first 4000 Fashion-MNIST training images (1000 per
worker), 16 images per worker and step (a global batch of 64, the Claim-1 base point's), lr 0.02,
momentum 0.9, 40 epochs, tau 8, alpha 0.1; one JSON per run in --out-dir, finished runs skipped:

    nice -n 19 examples/generalization/claim2.py --exe build/host/examples/generalization/generalization \
        --out-dir docs/figures/claim2 --hours 2

Methods: the single worker (all 4000 images, batch 64), DDP, LocalSGD, DPPF pull only
(lambda = 0), DPPF with a constant push at lambda / alpha = K * R0 for K in PUSH_MULTIPLES, where
R0 is the relaxed MV the pull-only run reached in the pilot (see R0), the inverse_mv push set to
give the same fixed point as K in INVERSE_MULTIPLES, and the K = 1 and 2 pushes and the K = 2
inverse_mv push with a warm-up of a quarter of the steps. Seeds 1 to 5 (each run ~8 CPU s).
analyze_claim2.py makes the tables and plots from the JSON.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep  # noqa: E402  (the resumable runner both sweeps share)

M = 4
ALPHA = 0.1
EPOCHS = 40
STEPS = EPOCHS * (4000 // M // 16)  # 62 steps per epoch and worker
# The pull-only run's final relaxed MV in the pilot (seed 1, 1.4354): the workers' natural spread, which
# a push must exceed to act (its fixed point is lambda / alpha for the constant push).
R0 = 1.435
PUSH_MULTIPLES = [0.5, 1, 1.5, 2, 4]
INVERSE_MULTIPLES = [0.5, 1, 1.5, 2]
SEEDS = [1, 2, 3, 4, 5]
BASE = ["--train-size", "4000", "--epochs", str(EPOCHS), "--lr", "0.02", "--momentum", "0.9", "--width", "128",
        "--depth", "2", "--tau", "8", "--alpha", str(ALPHA), "--threads", "1"]


def settings():
    """(name, flags) of every setting, in the order a partial sweep should cover them."""
    s = [("single", ["--method", "single", "--batch", "64"]),
         ("ddp", ["--method", "ddp", "--workers", str(M), "--batch", "16"]),
         ("local_sgd", ["--method", "local_sgd", "--workers", str(M), "--batch", "16"]),
         ("pull", ["--method", "dppf", "--workers", str(M), "--batch", "16", "--lambda", "0"])]
    dppf = ["--method", "dppf", "--workers", str(M), "--batch", "16"]
    for k in PUSH_MULTIPLES:
        s.append((f"push{k:g}", dppf + ["--lambda", f"{k * R0 * ALPHA:.6g}"]))
    # inverse_mv: lambda / (M r^2) = alpha r at r* = K R0, i.e. lambda = alpha M (K R0)^3.
    inverse = lambda k: ["--push", "inverse_mv", "--lambda", f"{ALPHA * M * (k * R0) ** 3:.6g}"]
    for k in INVERSE_MULTIPLES:
        s.append((f"inv{k:g}", dppf + inverse(k)))
    # The push off for the first quarter of the steps, while the workers' spread forms.
    warm = ["--push-warmup", str(STEPS // 4)]
    for k in (1, 2):
        s.append((f"push{k:g}_warm", dppf + ["--lambda", f"{k * R0 * ALPHA:.6g}"] + warm))
    s.append(("inv2_warm", dppf + inverse(2) + warm))
    return s


def plan(exe, out_dir, seeds):
    return [(f"{name}_s{seed}", [exe] + BASE + flags + ["--seed", str(seed), "--out",
                                                         os.path.join(out_dir, f"{name}_s{seed}.json")])
            for seed in seeds for name, flags in settings()]


def main(argv=None):
    a = sweep.parser(__doc__, "docs/figures/claim2", SEEDS).parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    if not a.list and not os.access(a.exe, os.X_OK):
        sys.exit(f"claim2: {a.exe} is not an executable (build the target `generalization`)")
    return sweep.drive(a, plan(a.exe, a.out_dir, [int(x) for x in a.seeds.split(",") if x]))


if __name__ == "__main__":
    sys.exit(main())
