#!/usr/bin/python3
"""Checks generalization's loss-target criterion (--target-train-loss L --max-epochs E) on the
seconds-long --quick model:

1. an unreachable target (0) trains all E epochs and says reached = false, epochs_trained = E;
   its per-epoch curve is the reference;
2. a target strictly between the curve's running minimum before some epoch k and its loss at k
   stops at exactly epoch k with reached = true, and the stopped run's curve is the reference's
   first k epochs (runs are deterministic), every earlier epoch above the target;
3. a target a hair above the loss at k (at k, up to the JSON's 10 significant digits) stops there too;
4. the final model's train_loss is the stop epoch's curve value (the quantity the criterion reads).

    test_loss_target.py path/to/generalization

Exits non-zero, naming the failing check."""
import json
import subprocess
import sys

E = 12  # the cap of the reference run


def run(exe, *flags):
    p = subprocess.run([exe, "--quick", *flags], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: generalization {' '.join(flags)} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def check_stop(exe, ref, target, k, what):
    r = run(exe, "--target-train-loss", repr(target), "--max-epochs", str(E))
    s = r["stop"]
    got = [e["train_loss"] for e in r["curve"]]
    check(s["reached"] is True, f"{what}: target {target!r} reached at epoch {k}, JSON says reached={s['reached']}")
    check(s["epochs_trained"] == k and len(got) == k,
          f"{what}: target {target!r} should stop at epoch {k}, trained {s['epochs_trained']} ({len(got)} in the curve)")
    check(r["curve"] == ref["curve"][:k], f"{what}: the stopped run's curve is not the reference's first {k} epochs")
    check(all(v > target for v in got[:-1]) and got[-1] <= target,
          f"{what}: not the first epoch at/below {target!r}: {got}")
    check(r["train_loss"] == got[-1], f"{what}: final train_loss {r['train_loss']} != the curve's {got[-1]}")
    check(s["max_epochs"] == E and r["config"]["epochs"] == E, f"{what}: the cap is not recorded as {E}")
    print(f"ok: {what}: target {target!r} stopped at epoch {k} of {E}")


def main():
    exe = sys.argv[1]
    # 1. Unreachable: the cap, reached = false; the whole curve.
    ref = run(exe, "--target-train-loss", "0", "--max-epochs", str(E))
    loss = [e["train_loss"] for e in ref["curve"]]
    check(ref["stop"] == {**ref["stop"], "target_train_loss": 0, "max_epochs": E, "epochs_trained": E, "reached": False},
          f"unreachable target: {ref['stop']}")
    check(len(loss) == E and [e["epoch"] for e in ref["curve"]] == list(range(1, E + 1)),
          f"unreachable target: the curve has {len(loss)} epochs, not {E}")
    print(f"ok: unreachable target 0 trained all {E} epochs, reached = false")
    # The epochs before the cap where the loss is a new minimum: there a target between the earlier
    # minimum and the loss stops exactly, before the cap. The first and the latest such epoch.
    new_min = [k for k in range(2, E) if loss[k - 1] < min(loss[:k - 1]) * (1 - 1e-6)]
    check(len(new_min) >= 1, f"the quick curve never improves on epoch 1 before epoch {E}: {loss}")
    for k in sorted({new_min[0], new_min[-1]}):
        before = min(loss[:k - 1])
        check_stop(exe, ref, (before + loss[k - 1]) / 2, k, f"target between epoch {k}'s loss and the earlier minimum")
    k = new_min[-1]
    check_stop(exe, ref, loss[k - 1] * (1 + 1e-9), k, f"target at epoch {k}'s loss")
    # A reachable target within a shorter cap of exactly k epochs also says reached = true.
    r = run(exe, "--target-train-loss", repr(loss[k - 1] * (1 + 1e-9)), "--max-epochs", str(k))
    check(r["stop"]["reached"] is True and r["stop"]["epochs_trained"] == k,
          f"target reached at the cap's own epoch {k}: {r['stop']}")
    # The cap below the first epoch at/below the target: reached = false after the cap.
    r = run(exe, "--target-train-loss", repr(loss[k - 1] * (1 + 1e-9)), "--max-epochs", str(k - 1))
    check(r["stop"]["reached"] is False and r["stop"]["epochs_trained"] == k - 1 and r["curve"] == ref["curve"][:k - 1],
          f"cap {k - 1} before the target's epoch {k}: {r['stop']}")
    print(f"ok: cap {k} reaches the target at its last epoch; cap {k - 1} stops there with reached = false")
    return 0


if __name__ == "__main__":
    sys.exit(main())
