#!/usr/bin/python3
"""Everything of issue #17 (docs/results.md, "Claim 1" and "Claim 2") in one resumable command:
the Claim-1 sweep (fixed epochs), its second sweep (trained to a training-loss target), the Claim-2
sweep, and every table and plot made from them. Each piece is the existing driver (sweep.py,
claim2.py, analyze.py, analyze_claim2.py) called with the arguments printed before it runs, so
any piece can also be rerun by hand with that line.

    nice -n 19 examples/generalization/reproduce.py --exe build/host/examples/generalization/generalization --hours 2

Finished runs (an existing <id>.json) are skipped, so the same command continues where the last
piece stopped; --hours bounds each sweep piece (no run starts after it); a sweep's analysis runs
only once all its planned runs are finished (else it says how many are pending). --list shows
every piece and what of each sweep is done, running nothing; --only runs some pieces.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import analyze  # noqa: E402
import analyze_claim2  # noqa: E402
import claim2  # noqa: E402
import sweep  # noqa: E402

C1 = sweep.DESIGNS["epochs"].out_dir
LT = sweep.DESIGNS["loss_target"].out_dir
C2 = "docs/figures/claim2"


def pieces(exe, hours):
    """(name, module, argv, the run ids the piece needs finished, its directory) in order."""
    run = ["--exe", exe, "--hours", f"{hours:g}"]
    ids = lambda design: [r[0] for r in sweep.DESIGNS[design].plan(sweep.SEEDS)]
    c2_ids = [r[0] for r in claim2.plan(exe, C2, claim2.SEEDS)]
    return [
        ("claim1", sweep, run + ["--out-dir", C1], None, C1),
        ("claim1_loss_target", sweep, run + ["--design", "loss_target", "--out-dir", LT], None, LT),
        ("claim2", claim2, run + ["--out-dir", C2], None, C2),
        ("analyze_claim1", analyze, [C1, "--md", f"{C1}/tau.md", "--svg", f"{C1}/imv_acc_gap.svg",
                                     "--svg-loss", f"{C1}/imv_loss_gap.svg"], ids("epochs"), C1),
        ("analyze_claim1_fitted", analyze, [C1, "--min-train-acc", "0.99", "--md", f"{C1}/tau_fitted.md"],
         ids("epochs"), C1),
        ("analyze_claim1_loss_target", analyze, [LT, "--drop-unreached", "--cost", "--md", f"{LT}/tau.md",
                                                 "--svg", f"{LT}/imv_acc_gap.svg", "--svg-loss", f"{LT}/imv_loss_gap.svg"],
         ids("loss_target"), LT),
        ("analyze_claim2", analyze_claim2, [C2, "--md", f"{C2}/claim2.md", "--svg-acc", f"{C2}/acc_vs_push.svg",
                                            "--svg-mv", f"{C2}/mv_vs_push.svg"], c2_ids, C2),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exe", default="build/host/examples/generalization/generalization")
    ap.add_argument("--hours", type=float, default=2.0, help="per sweep piece: start no run after this much wall time")
    ap.add_argument("--list", action="store_true", help="print every piece and what is done, run nothing")
    ap.add_argument("--only", help="comma-separated piece names (default: all, in order)")
    a = ap.parse_args(argv)
    todo = pieces(a.exe, a.hours)
    names = [p[0] for p in todo]
    if a.only:
        want = a.only.split(",")
        unknown = [w for w in want if w not in names]
        if unknown:
            sys.exit(f"reproduce: unknown piece(s) {', '.join(unknown)} (choose from {', '.join(names)})")
        todo = [p for p in todo if p[0] in want]
    for name, module, args, needs, directory in todo:
        line = f"examples/generalization/{os.path.basename(module.__file__)} " + " ".join(args)
        if needs is None:  # a sweep
            print(f"reproduce: [{name}] {line}" + (" --list" if a.list else ""), flush=True)
            module.main(args + (["--list"] if a.list else []))
            continue
        pending = [rid for rid in needs if not sweep.finished(directory, rid)]
        if pending:
            print(f"reproduce: [{name}] skipped: {len(pending)} of {len(needs)} runs in {directory} not finished "
                  f"(first: {pending[0]})", flush=True)
        elif a.list:
            print(f"reproduce: [{name}] would run: {line}", flush=True)
        else:
            print(f"reproduce: [{name}] {line}", flush=True)
            module.main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
