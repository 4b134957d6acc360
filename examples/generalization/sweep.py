#!/usr/bin/python3
"""The Claim-1 sweep: models trained by `generalization`, one hyperparameter varied at a time
around a base point, each seed of each setting one JSON file in --out-dir. Resumable: a setting
whose JSON exists is skipped, so the same command continues where the last piece stopped.

    nice -n 19 examples/generalization/sweep.py --exe build/examples/generalization/generalization \
        --out-dir docs/figures/generalization --hours 2

Two designs. `--design epochs` (the default, the first sweep): every model trained for a fixed
number of epochs, the epoch count one of the varied hyperparameters. `--design loss_target` (the
second sweep, Jiang et al. 2019's protocol): the same base point and values without the epochs,
every model trained until its training loss is <= TARGET_TRAIN_LOSS, at most MAX_EPOCHS epochs
(generalization --target-train-loss --max-epochs); default --out-dir
docs/figures/generalization_loss_target.

A run that fails is recorded as <id>.failed.json (return code, command, last lines of stderr) and
is skipped too unless --retry-failed. Every start and end is appended to sweep.log.jsonl.
Runs go one at a time, each with one OpenBLAS thread (the machine is shared); the order is seed 1
of every setting first, then seed 2, then seed 3, so a partial sweep covers every hyperparameter.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

# The base point and the values of each varied hyperparameter (the base value among them).
BASE = {"lr": 0.02, "batch": 64, "weight_decay": 0.0, "width": 128, "train_size": 4000, "epochs": 40}
VALUES = {
    "lr": [0.002, 0.005, 0.01, 0.02, 0.05, 0.1],
    "batch": [16, 32, 64, 128, 256, 512],
    "weight_decay": [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "width": [16, 32, 64, 128, 256, 512],
    "train_size": [1000, 2000, 4000, 8000, 16000, 32000],
    "epochs": [5, 10, 20, 40, 80, 160],
}
SEEDS = [1, 2, 3]
FLAGS = {"lr": "--lr", "batch": "--batch", "weight_decay": "--weight-decay", "width": "--width",
         "train_size": "--train-size", "epochs": "--epochs"}
SHORT = {"lr": "lr", "batch": "b", "weight_decay": "wd", "width": "w", "train_size": "n", "epochs": "e"}

# The loss-target design: the training cross-entropy every model is trained to and the cap on its
# epochs (docs/results.md, "Claim 1, second sweep", says why these).
TARGET_TRAIN_LOSS = 0.01
MAX_EPOCHS = 300


class Design:
    """A sweep's base point, varied values, output directory and the flags every run adds."""

    def __init__(self, name, base, values, out_dir, extra=(), tag=""):
        self.name, self.base, self.values, self.out_dir = name, base, values, out_dir
        self.extra, self.tag = list(extra), tag  # flags of every run; the run ids' suffix before the seed

    def settings(self):
        """The distinct settings, base point first: each is a dict of every hyperparameter."""
        out = [dict(self.base)]
        for name, values in self.values.items():
            for v in values:
                s = dict(self.base, **{name: v})
                if s not in out:
                    out.append(s)
        return out

    def run_id(self, s, seed):
        return "_".join(f"{SHORT[k]}{s[k]:g}" for k in self.base) + self.tag + f"_s{seed}"

    def plan(self, seeds):
        return [(self.run_id(s, seed), s, seed) for seed in seeds for s in self.settings()]

    def command(self, exe, s, seed, out):
        cmd = [exe]
        for k in self.base:
            cmd += [FLAGS[k], f"{s[k]:g}"]
        return cmd + self.extra + ["--seed", str(seed), "--threads", "1", "--out", out]

    def record(self, seeds):
        """What sweep.json holds for analyze.py."""
        d = {"base": self.base, "values": self.values, "seeds": seeds, "runs": [r[0] for r in self.plan(seeds)]}
        if self.name == "loss_target":
            d.update(target_train_loss=TARGET_TRAIN_LOSS, max_epochs=MAX_EPOCHS)
        return d


DESIGNS = {
    "epochs": Design("epochs", BASE, VALUES, "docs/figures/generalization"),
    "loss_target": Design("loss_target", {k: v for k, v in BASE.items() if k != "epochs"},
                          {k: v for k, v in VALUES.items() if k != "epochs"}, "docs/figures/generalization_loss_target",
                          ["--target-train-loss", f"{TARGET_TRAIN_LOSS:g}", "--max-epochs", str(MAX_EPOCHS)],
                          f"_L{TARGET_TRAIN_LOSS:g}"),
}


def run_pending(out_dir, pending, hours):
    """Runs each (id, command) of `pending` in turn, the command writing <out_dir>/<id>.json; a
    failure leaves <id>.failed.json. Starts no run after `hours` of wall time. Shared by the sweeps
    of both claims (claim2.py)."""
    t0 = time.monotonic()
    log = open(os.path.join(out_dir, "sweep.log.jsonl"), "a")
    for rid, cmd in pending:
        if time.monotonic() - t0 > hours * 3600:
            print(f"sweep: --hours {hours} used up; rerun the same command to continue", flush=True)
            break
        out = os.path.join(out_dir, rid + ".json")
        start = time.time()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        log.write(json.dumps({"event": "start", "id": rid, "command": cmd, "time": start}) + "\n")
        log.flush()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.time() - start
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime  # the load-independent cost
        log.write(json.dumps({"event": "end", "id": rid, "rc": p.returncode, "wall_s": round(wall, 2),
                              "cpu_s": round(cpu, 2)}) + "\n")
        log.flush()
        if p.returncode != 0 or not os.path.exists(out):
            with open(os.path.join(out_dir, rid + ".failed.json"), "w") as f:
                json.dump({"id": rid, "rc": p.returncode, "command": cmd, "stderr": p.stderr[-2000:]}, f, indent=1)
            print(f"sweep: {rid} FAILED (rc {p.returncode}): {p.stderr.strip()[-300:]}", flush=True)
        else:
            print(f"sweep: {rid} done in {wall:.1f} s ({cpu:.1f} CPU s)", flush=True)


def finished(out_dir, rid):
    """Whether run `rid` of a sweep in out_dir is done (its <id>.json, written atomically, exists)."""
    return os.path.exists(os.path.join(out_dir, rid + ".json"))


def drive(a, runs):
    """The resumable part both sweeps share: counts what of `runs` ((id, command) pairs) is done
    (<id>.json) or failed (<id>.failed.json), prints the plan with --list, else runs the rest
    (failed ones again only with --retry-failed) within --hours."""
    done = lambda rid: finished(a.out_dir, rid)
    failed = lambda rid: os.path.exists(os.path.join(a.out_dir, rid + ".failed.json"))
    pending = [r for r in runs if not done(r[0]) and (a.retry_failed or not failed(r[0]))]
    print(f"sweep: {len(runs)} runs planned, {sum(done(r[0]) for r in runs)} done, "
          f"{sum(failed(r[0]) for r in runs)} failed, {len(pending)} pending", flush=True)
    if a.list:
        for rid, _ in runs:
            print(("done    " if done(rid) else "failed  " if failed(rid) else "pending ") + rid)
        return 0
    run_pending(a.out_dir, pending, a.hours)
    return 0


def parser(description, out_dir, seeds):
    """The command line both sweeps take (out_dir None: the caller sets the default)."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", default="build/examples/generalization/generalization")
    ap.add_argument("--out-dir", default=out_dir, help=f"default {out_dir}" if out_dir else None)
    ap.add_argument("--hours", type=float, default=2.0, help="start no run after this much wall time")
    ap.add_argument("--seeds", default=",".join(map(str, seeds)))
    ap.add_argument("--retry-failed", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the plan and what is done, run nothing")
    return ap


def main(argv=None):
    ap = parser(__doc__, None, SEEDS)
    ap.add_argument("--design", choices=list(DESIGNS), default="epochs",
                    help="epochs: a fixed number of epochs (the first sweep); loss_target: trained to a training loss")
    a = ap.parse_args(argv)
    design = DESIGNS[a.design]
    a.out_dir = a.out_dir or design.out_dir
    seeds = [int(x) for x in a.seeds.split(",") if x]
    os.makedirs(a.out_dir, exist_ok=True)
    runs = design.plan(seeds)
    if a.list:
        return drive(a, [(rid, None) for rid, _, _ in runs])
    if not os.access(a.exe, os.X_OK):
        sys.exit(f"sweep: {a.exe} is not an executable (build the target `generalization`)")
    # The design for analyze.py; a run with other seeds adds them to those already planned.
    design_path = os.path.join(a.out_dir, "sweep.json")
    planned = set(seeds)
    if os.path.exists(design_path):
        with open(design_path) as f:
            planned |= set(json.load(f)["seeds"])
    with open(design_path, "w") as f:
        json.dump(design.record(sorted(planned)), f, indent=1)
    return drive(a, [(rid, design.command(a.exe, s, seed, os.path.join(a.out_dir, rid + ".json")))
                     for rid, s, seed in runs])


if __name__ == "__main__":
    sys.exit(main())
