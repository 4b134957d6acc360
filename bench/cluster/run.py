#!/usr/bin/python3
"""dppf against PyTorch across emulated hosts, in one run: the all-reduce's bus bandwidth and the
Fashion-MNIST MLP's training time, on M = 4 hosts made here with scripts/cluster.sh (root).

    /usr/bin/python3 bench/cluster/run.py --build build/host [--quick] [--out DIR]

Needs root (network namespaces), the build's bench/dppf_bench_cluster_allreduce and
examples/fashion_mnist/fashion_mnist, and /usr/bin/python3 with python3-torch (PyTorch 1.13).
Writes DIR/cluster.json (every measurement) and DIR/cluster.md (the tables of
docs/performance.md, "Across hosts") and prints the tables.

All-reduce (N = 2^16 .. 2^24 float32 at the first rate, every other power of 2 at the later ones;
in-place sum):
  dppf gloo      dppf::gloo_communicator (dppf_bench_cluster_allreduce --engine gloo)
  dppf mpi       dppf::mpi_communicator over Open MPI's TCP transport, default algorithm
  dppf mpi algK  the same with --mca coll_tuned_use_dynamic_rules 1
                 --mca coll_tuned_allreduce_algorithm K (4 ring, 5 segmented ring, 6 rabenseifner)
  pytorch gloo   torch.distributed.all_reduce, gloo backend (bench/cluster/torch_peer.py)
  gloo ring / gloo bcube   Gloo's own algorithms on dppf's context, no argument agreement
                 (small sizes: the evidence for dppf's choice of algorithm by size)
Each is the median of --repeats repeats (see allreduce.cpp for how a repeat is timed); with
--rounds R every engine is launched R times, the order reversed every other round, and the
dppf / PyTorch ratio is the median of the R paired ratios (drift of the shared cores' load
weighs on both sides). --allreduce-engines picks the runs. algbw =
4 N bytes / time, busbw = algbw * 2 (M - 1) / M (nccl-tests), MB = 10^6 bytes. The link rate is
tc's: tbf counts every ethernet frame (14-byte header + IP + TCP headers + payload), SI units
(1gbit = 10^9 bit/s = 125 MB/s). With a 1500-byte MTU a full TCP segment carries 1448 payload
bytes (timestamps on) in a 1514-byte frame, and the ACKs of the incoming stream share the
egress, so a long transfer tops out at 0.93 to 0.956 of the rate in payload busbw (tbf's 256 KB
bucket, refilled between repeats, lets small N read above that).

Training (examples/fashion_mnist --quick: 1 epoch on 12000 images, 784-512-512-10 MLP, batch 64
per worker, SGD lr 0.05 momentum 0.9, tau 8, M = 4 shards of 3000): ddp, local_sgd and dppf
through --comm mpi (and --comm gloo when the example has it) against PyTorch's
DistributedDataParallel, PeriodicModelAverager and the same averaging + DPPF's pull-push
(torch_peer.py train). Training time only: evaluation, data loading and start-up excluded. For
dppf it is the example's "train_s" when its JSON has one, otherwise rank 0's step-loop time
recovered from its progress log (steps * batch * M / samples_per_s at each epoch's last step).
Median of --train-repeats runs (all in one launch per side); the ratio dppf / PyTorch is
printed against the 1.05 target.

Sync (the same training, local_sgd and dppf over --comm gloo, seconds per epoch of train_s): the
sync blocking, overlapped with the next d = 1 and d = tau local steps (--overlap-steps), sent in
bf16 (--sync-precision), overlapped and bf16 together (reported as refused where the example
refuses the combination), the compute-only floor (--no-sync: the same workers and steps, no
sync) and PyTorch's PeriodicModelAverager (torch_peer.py train, and its pull-push variant).
--sync-variants picks among them; --sync-engines threads runs them (PyTorch's aside) over
--comm threads too, 4 worker threads in one process here, once. --batch and --train-limit set
the timed epoch (both parts): longer steps make the target's condition, a sync shorter than d
local steps, hold. Each row's ratio to the floor is printed against the 1.1
target of the overlapped rows, and bf16's sync speed-up, (blocking - floor) / (bf16 - floor),
against the 1.8 target at 100 Mbit/s.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
M = 4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def rate_bits(rate):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", rate)
    if not m:
        raise SystemExit(f"run.py: rate '{rate}' is not of the form 100mbit / 1gbit")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]


class Cluster:
    def __init__(self, cluster_id):
        self.env = dict(os.environ, DPPF_CLUSTER=str(cluster_id))
        self.script = os.path.join(ROOT, "scripts", "cluster.sh")
        self.net = f"10.231.{cluster_id}"
        self.port = 29500
        self.tmp = tempfile.mkdtemp(prefix="dppf-bench-cluster-")
        self.runs = 0

    def sh(self, *args, timeout=60):
        return subprocess.run([self.script, *args], env=self.env, check=True, timeout=timeout,
                              stdout=subprocess.PIPE, text=True).stdout

    def up(self, rate):
        self.sh("up", str(M), rate)

    def rate(self, rate):
        self.sh("rate", "all", rate)

    def down(self):
        subprocess.run([self.script, "down"], env=self.env, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, launcher, cmd, timeout, extra_env=None):
        """cmd on every host (launcher gloo: one process per host; mpirun: MPI ranks; local: one
        process on this machine, outside the hosts). Returns
        (stdout, stderr); raises on a failure or a timeout."""
        self.runs += 1
        if launcher == "local":  # one process here, off the hosts (--comm threads)
            p = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"), timeout=timeout,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd[:3])}... exited {p.returncode}:\n{p.stderr[-2000:]}")
            return p.stdout, p.stderr
        env = dict(self.env, **(extra_env or {}))
        env.update(DPPF_GLOO_STORE=f"file:{self.tmp}", DPPF_GLOO_PREFIX=f"run{self.runs}", GLOO_SOCKET_IFNAME="eth0",
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        p = subprocess.run([self.script, launcher, str(M), *cmd], env=env, timeout=timeout,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}... exited {p.returncode}:\n{p.stderr[-2000:]}")
        return p.stdout, p.stderr

    def master(self):
        self.port += 1  # a fresh port per run: no TIME_WAIT clash with the last TCPStore
        return f"{self.net}.1:{self.port}"


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------------------------------------
# All-reduce

def allreduce_runs(a, cluster, rate, bench):
    """[(label, launcher, cmd, extra_env)] for one rate; None in cmd: a fresh TCPStore address."""
    sizes = a.sizes if rate == a.rates[0] else a.sizes_slow
    common = ["--sizes", sizes, "--repeats", str(a.repeats)]
    runs = []
    if "gloo" in a.allreduce_engines:
        runs.append(("dppf gloo", "gloo", [bench, "--engine", "gloo", *common], None))
    if "pytorch" in a.allreduce_engines:
        runs.append(("pytorch gloo", "gloo", ["/usr/bin/python3", os.path.join(HERE, "torch_peer.py"), "allreduce",
                                              "--master", None, "--sizes", sizes, "--repeats", str(a.repeats)], None))
    if "mpi" in a.allreduce_engines:
        runs.append(("dppf mpi", "mpirun", [bench, "--engine", "mpi", *common], None))
        algorithms = a.mpi_algorithms if rate == a.rates[0] else a.mpi_algorithms[:1]
        for k in algorithms:
            runs.append((f"dppf mpi alg{k}", "mpirun", ["--mca", "coll_tuned_use_dynamic_rules", "1", "--mca",
                                                        "coll_tuned_allreduce_algorithm", str(k), bench, "--engine", "mpi",
                                                        *common], None))
    if a.gloo_variants and rate == a.rates[0]:
        for impl in a.gloo_variants:
            runs.append((f"gloo {impl}", "gloo", [bench, "--engine", "gloo", "--impl", impl, "--sizes", a.variant_sizes,
                                                  "--repeats", str(a.repeats)], None))
    return runs


def measure_allreduce(a, cluster, rate, bench, results):
    """Every run once per round; odd rounds in reverse order, so that a drift of the machine's
    load between rounds weighs on both sides of a pair alike."""
    runs = allreduce_runs(a, cluster, rate, bench)
    for rnd in range(a.rounds):
        for label, launcher, cmd, extra in (runs if rnd % 2 == 0 else runs[::-1]):
            cmd = [cluster.master() if c is None else c for c in cmd]
            t0 = time.time()
            try:
                out, _ = cluster.run(launcher, cmd, timeout=a.timeout, extra_env=extra)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                log(f"  {label} at {rate}: FAILED: {e}")
                results.append({"kind": "allreduce", "rate": rate, "label": label, "round": rnd, "error": str(e)[-500:]})
                continue
            for r in json_lines(out):
                med = statistics.median(r["times_s"])
                busbw = r["bytes"] / med * 2 * (r["ranks"] - 1) / r["ranks"]
                results.append({"kind": "allreduce", "rate": rate, "label": label, "round": rnd, "n": r["n"],
                                "bytes": r["bytes"], "ranks": r["ranks"], "iterations": r["iterations"],
                                "times_s": r["times_s"], "median_s": med, "busbw_MBps": busbw / 1e6,
                                "link_fraction": busbw * 8 / rate_bits(rate)})
            log(f"  {label} at {rate}{f' (round {rnd + 1}/{a.rounds})' if a.rounds > 1 else ''}: {time.time() - t0:.0f} s")


# ---------------------------------------------------------------------------------------------
# Training

PROGRESS = re.compile(r"^(\S+) epoch (\d+)/(\d+) step (\d+)/(\d+) loss \S+ samples/s (\d+)")


def train_seconds(stdout, stderr, batch):
    """[(method, training seconds)] in run order from fashion_mnist --json output: its train_s
    when present, else rank 0's progress log (each epoch's step loop lasted steps * batch * M /
    samples_per_s, read at the epoch's last step; epoch 1 starts a new run)."""
    runs = [(r["method"], r["train_s"]) for r in json_lines(stdout) if "train_acc" in r and "train_s" in r
            and isinstance(r.get("epochs"), int)]
    if runs:
        return runs, "train_s"
    for line in stderr.splitlines():
        m = PROGRESS.match(line)
        if m and m.group(4) == m.group(5):
            secs = int(m.group(5)) * batch * M / float(m.group(6))
            if m.group(2) == "1":
                runs.append((m.group(1), secs))
            else:
                runs[-1] = (runs[-1][0], runs[-1][1] + secs)
    return runs, "progress log"


def example_has_gloo(example):
    p = subprocess.run([example, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    return "gloo" in p.stdout


def example_flags(a, methods):
    """fashion_mnist's flags of a timed training run of `methods` (a comma list)."""
    return ["--method", methods, "--quick", "--json", "--sharpness-samples", "0", "--test-limit", "1000",
            "--tau", str(a.tau), "--batch", str(a.batch), "--train-limit", str(a.train_limit)]


def torch_train_cmd(a, methods):
    """torch_peer.py's side of the same run (None: a fresh TCPStore address)."""
    return ["/usr/bin/python3", os.path.join(HERE, "torch_peer.py"), "train", "--master", None, "--method", methods,
            "--tau", str(a.tau), "--batch", str(a.batch), "--train-limit", str(a.train_limit)]


def run_training_jobs(a, cluster, rate, jobs, per_launch, results, kind="train"):
    """Launches each (label, launcher, cmd) of `jobs` on the hosts and records one result per
    method run it reports (its training seconds and, from the example, test accuracy);
    per_launch: the runs each launch should report. One launch per job runs every repeat (the
    process start and data loading, tens of seconds under torch, are paid once)."""
    for label, launcher, cmd in jobs:
        cmd = [cluster.master() if c is None else c for c in cmd]
        t0 = time.time()
        try:
            out, err = cluster.run(launcher, cmd, timeout=a.timeout + 120 * a.train_repeats)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            log(f"  {kind} {label} at {rate}: FAILED: {e}")
            results.append({"kind": kind, "rate": rate, "label": label, "error": str(e)[-500:]})
            continue
        if label.startswith("pytorch"):
            runs, source = [(r["method"], r["train_s"]) for r in json_lines(out)], "train_s"
        else:
            runs, source = train_seconds(out, err, a.batch)
        accuracy = [r.get("test_acc") for r in json_lines(out) if "train_s" in r and isinstance(r.get("epochs"), int)]
        seen = {}
        for i, (method, secs) in enumerate(runs):
            seen[method] = seen.get(method, 0) + 1
            row = {"kind": kind, "rate": rate, "label": label, "repeat": seen[method], "method": method,
                   "train_s": secs, "source": source}
            if len(accuracy) == len(runs) and accuracy[i] is not None:
                row["test_acc"] = accuracy[i]
            results.append(row)
        if len(runs) != per_launch:
            log(f"  {kind} {label} at {rate}: expected {per_launch} runs, parsed {len(runs)}")
            results.append({"kind": kind, "rate": rate, "label": label, "error": f"parsed {len(runs)} runs"})
        log(f"  {kind} {label} at {rate}: {time.time() - t0:.0f} s wall, " + ", ".join(f"{m} {s:.2f} s" for m, s in runs))


def measure_training(a, cluster, rate, example, has_gloo, results):
    # The sides alternate their order from one rate to the next.
    methods = ",".join(["ddp,local_sgd,dppf"] * a.train_repeats)
    flags = example_flags(a, methods)
    wanted = a.train_engines.split(",")
    engines = []
    # --bucket-mb: dppf once per value (its ddp's gradient buckets), labelled with it; none: the default.
    for mb in (a.bucket_mb.split(",") if a.bucket_mb else [None]):
        extra, suffix = ([], "") if mb is None else (["--bucket-mb", mb], f" bucket {mb}")
        if "mpi" in wanted:
            engines.append((f"dppf mpi{suffix}", "mpirun", [example, "--comm", "mpi", *flags, *extra]))
        if has_gloo and "gloo" in wanted:
            engines.append((f"dppf gloo{suffix}", "gloo", [example, "--comm", "gloo", *flags, *extra]))
    if "pytorch" in wanted:
        engines.append(("pytorch", "gloo", torch_train_cmd(a, methods)))
    if rate != a.rates[0]:
        engines.reverse()
    run_training_jobs(a, cluster, rate, engines, 3 * a.train_repeats, results)


# ---------------------------------------------------------------------------------------------
# Sync: blocking, overlapped, compressed, against the compute-only floor and PyTorch

SYNC_METHODS = ("local_sgd", "dppf")
SYNC_VARIANTS = ("blocking", "overlap1", "overlap_tau", "bf16", "overlap_tau+bf16", "floor", "pytorch")
PYTORCH_SYNC_LABEL = "pytorch PeriodicModelAverager"


def sync_variant_flags(a, variant):
    """(label, fashion_mnist flags) of a variant of the sync part (not pytorch)."""
    return {"blocking": ("blocking", []),
            "overlap1": ("overlapped d=1", ["--overlap-steps", "1"]),
            "overlap_tau": (f"overlapped d={a.tau}", ["--overlap-steps", str(a.tau)]),
            "bf16": ("bf16", ["--sync-precision", "bf16"]),
            "overlap_tau+bf16": (f"overlapped d={a.tau} + bf16", ["--overlap-steps", str(a.tau), "--sync-precision", "bf16"]),
            "floor": ("no-sync floor", ["--no-sync"])}[variant]


def example_refuses(example, flags):
    """The example's refusal of these flags (its first stderr line), or None when it takes them.
    Parsing checks the sync flags against every method before the data is read, so a run with no
    data tells the two apart at once: exit 2 (usage) or the data error (exit 1)."""
    with tempfile.TemporaryDirectory() as empty:
        p = subprocess.run([example, *flags, "--data", empty], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
    return p.stderr.splitlines()[0] if p.returncode == 2 and p.stderr else None


THREADS = "threads"  # the sync part's "rate" of its --sync-engines threads runs (no link)


def measure_sync(a, cluster, rate, example, results):
    """The sync variants over --comm gloo on the hosts at `rate`, or over --comm threads in one
    process here when rate is THREADS (PyTorch has no such peer: its row is left out)."""
    methods = ",".join(list(SYNC_METHODS) * a.train_repeats)
    comm, launcher = ("threads", "local") if rate == THREADS else ("gloo", "gloo")
    jobs = []
    for v in a.sync_variants:
        if v == "pytorch":
            if rate != THREADS:
                jobs.append((PYTORCH_SYNC_LABEL, "gloo", torch_train_cmd(a, methods)))
            continue
        label, extra = sync_variant_flags(a, v)
        flags = [*example_flags(a, methods), *extra]
        refused = example_refuses(example, flags)  # without --comm gloo, which needs the hosts
        if refused:
            log(f"  sync {label} at {rate}: refused by the example: {refused}")
            results.append({"kind": "sync", "rate": rate, "label": label, "refused": refused})
            continue
        jobs.append((label, launcher, [example, "--comm", comm, *flags]))
    if rate not in (a.rates[0], THREADS):
        jobs.reverse()
    run_training_jobs(a, cluster, rate, jobs, len(SYNC_METHODS) * a.train_repeats, results, kind="sync")


# ---------------------------------------------------------------------------------------------
# Tables

def allreduce_table(results, rate):
    rows = [r for r in results if r["kind"] == "allreduce" and r["rate"] == rate and "n" in r]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    ns = sorted({r["n"] for r in rows})
    rounds = max((r.get("round", 0) for r in rows), default=0) + 1
    cell = {}  # (label, n) -> {round: row}
    for r in rows:
        cell.setdefault((r["label"], r["n"]), {})[r.get("round", 0)] = r
    paired = rounds > 1
    head = f"| N | " + " | ".join(labels) + " | dppf gloo / pytorch |" + (" min .. max over rounds |" if paired else "")
    what = (f"median over {rounds} rounds of each launch's median of the repeats; the ratio is the median of the "
            "rounds' paired ratios" if paired else "median of the repeats")
    lines = [f"All-reduce at {rate}: busbw MB/s (fraction of the link rate); {what}.", "", head,
             "| ---: " * (len(labels) + 2 + paired) + "|"]
    for n in ns:
        cells = []
        for lab in labels:
            rs = cell.get((lab, n), {})
            if rs:
                bw = statistics.median(r["busbw_MBps"] for r in rs.values())
                frac = statistics.median(r["link_fraction"] for r in rs.values())
                cells.append(f"{bw:.1f} ({frac:.2f})")
            else:
                cells.append("")
        g, t = cell.get(("dppf gloo", n), {}), cell.get(("pytorch gloo", n), {})
        ratios = [g[k]["busbw_MBps"] / t[k]["busbw_MBps"] for k in sorted(g.keys() & t.keys())]
        ratio = f"{statistics.median(ratios):.2f}" if ratios else ""
        spread = f" | {min(ratios):.2f} .. {max(ratios):.2f}" if paired and ratios else (" | " if paired else "")
        lines.append(f"| 2^{n.bit_length() - 1} | " + " | ".join(cells) + f" | {ratio}{spread} |")
    return "\n".join(lines)


def train_table(results, rate):
    rows = [r for r in results if r["kind"] == "train" and r["rate"] == rate and "method" in r]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    med = {}
    for lab in labels:
        for method in ("ddp", "local_sgd", "dppf"):
            v = [r["train_s"] for r in rows if r["label"] == lab and r["method"] == method]
            if v:
                med[(lab, method)] = (statistics.median(v), len(v))
    dppf_labels = [lab for lab in labels if lab != "pytorch"]
    head = "| method | " + " | ".join(labels) + " | " + " | ".join(f"{lab} / pytorch" for lab in dppf_labels) + " |"
    lines = [f"Training time at {rate}: seconds (median of the repeats, training only); ratio against the 1.05 target.",
             "", head, "| --- " + "| ---: " * (len(labels) + len(dppf_labels)) + "|"]
    for method in ("ddp", "local_sgd", "dppf"):
        cells = [f"{med[(lab, method)][0]:.2f}" if (lab, method) in med else "" for lab in labels]
        ratios = []
        for lab in dppf_labels:
            if (lab, method) in med and ("pytorch", method) in med:
                q = med[(lab, method)][0] / med[("pytorch", method)][0]
                ratios.append(f"{q:.2f} ({'meets' if q <= 1.05 else 'misses'} 1.05)")
            else:
                ratios.append("")
        lines.append(f"| {method} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def sync_labels(a):
    """The sync part's row labels in --sync-variants order (the runs alternate it by rate)."""
    return [PYTORCH_SYNC_LABEL if v == "pytorch" else sync_variant_flags(a, v)[0] for v in a.sync_variants]


def sync_table(results, rate, order, epoch):
    rows = [r for r in results if r["kind"] == "sync" and r["rate"] == rate]
    seen = {r["label"] for r in rows}
    labels = [lab for lab in order if lab in seen]
    times, accs = {}, {}
    for r in rows:
        if "method" in r:
            times.setdefault((r["label"], r["method"]), []).append(r["train_s"])
            if "test_acc" in r:
                accs.setdefault((r["label"], r["method"]), []).append(r["test_acc"])
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = {m: med.get(("no-sync floor", m)) for m in SYNC_METHODS}
    refused = {r["label"]: r["refused"] for r in rows if "refused" in r}
    labels = [lab for lab in labels if lab not in refused] + [lab for lab in labels if lab in refused]
    slow = rate != THREADS and rate_bits(rate) <= 100e6
    where = f"over {M} worker threads in one process" if rate == THREADS else f"at {rate}"
    lines = [f"Sync {where}: seconds of training per epoch (median of the repeats, train_s, {epoch}); "
             "ratio to the no-sync floor (target <= 1.1 for the overlapped rows); test accuracy (median; "
             "meaningless for the floor, whose workers never meet).", "",
             "| variant | " + " | ".join(f"{m} s | {m} / floor | {m} test acc" for m in SYNC_METHODS) + " |",
             "| --- " + "| ---: " * (3 * len(SYNC_METHODS)) + "|"]
    for lab in labels:
        if lab in refused:
            lines.append(f"| {lab} | refused: {refused[lab].replace('|', '/')} " + "| " * (3 * len(SYNC_METHODS) - 1) + "|")
            continue
        cells = []
        for m in SYNC_METHODS:
            t, acc = med.get((lab, m)), accs.get((lab, m))
            ratio = ""
            if t is not None and floor[m]:
                q = t / floor[m]
                ratio = f"{q:.2f}" + (f" ({'meets' if q <= 1.1 else 'misses'} 1.1)" if lab.startswith("overlapped") else "")
            cells += [f"{t:.2f}" if t is not None else "", ratio, f"{statistics.median(acc):.4f}" if acc else ""]
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    speedups = []
    for m in SYNC_METHODS:
        b, c, f = med.get(("blocking", m)), med.get(("bf16", m)), floor[m]
        if b is None or c is None or f is None:
            continue
        if c > f and b > f:
            q = (b - f) / (c - f)
            speedups.append(f"{m} {q:.2f}" + (f" ({'meets' if q >= 1.8 else 'misses'} 1.8)" if slow else ""))
        else:
            speedups.append(f"{m} not measurable (blocking {b - f:+.2f} s, bf16 {c - f:+.2f} s over the floor)")
    if speedups:
        lines += ["", "bf16's sync speed-up, (blocking - floor) / (bf16 - floor): " + "; ".join(speedups) +
                  (" (target >= 1.8 at 100 Mbit/s)." if slow else ".")]
    return "\n".join(lines)


def machine():
    lscpu = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    return {"cpu": model, "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "kernel": os.uname().release, "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build", "host"))
    p.add_argument("--out", default=".")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1gbit (unless --rates), 3 sizes, 3 repeats, 1 training run")
    p.add_argument("--cluster", type=int, default=100, help="scripts/cluster.sh cluster id (DPPF_CLUSTER)")
    p.add_argument("--rates", default=None, help="comma list (default 1gbit,100mbit; --quick: 1gbit)")
    p.add_argument("--sizes", default="16-24", help="exponents of N, as 16-24 or 16,20,24")
    p.add_argument("--sizes-slow", default="16,18,20,22,24",
                   help="exponents of N at the later (slower) rates: every other one keeps the run near 15 min")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1,
                   help="all-reduce launches per engine, alternating the engines' order (paired ratios)")
    p.add_argument("--allreduce-engines", default="gloo,pytorch,mpi",
                   help="comma list of the all-reduce runs: gloo (dppf), pytorch, mpi (dppf, with --mpi-algorithms)")
    p.add_argument("--mpi-algorithms", default="4,5,6",
                   help="coll_tuned_allreduce_algorithm values at the first rate; later rates run only the first")
    p.add_argument("--gloo-variants", default="ring,bcube", help="Gloo's own algorithms (first rate only); empty: none")
    p.add_argument("--variant-sizes", default="10,14,16,18,20")
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--tau", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-limit", type=int, default=12000,
                   help="training images of the timed epoch (default 12000, the example's --quick)")
    p.add_argument("--sync-engines", default="gloo",
                   help="comma list of the sync part's engines: gloo (on the hosts, at each rate), threads (one process here)")
    p.add_argument("--skip", default="", help="comma list of allreduce, train, sync")
    p.add_argument("--sync-variants", default=",".join(SYNC_VARIANTS),
                   help="comma list of the sync part's runs: " + ", ".join(SYNC_VARIANTS))
    p.add_argument("--bucket-mb", default="",
                   help="comma list of fashion_mnist --bucket-mb values (ddp's gradient buckets, 0: none) to train "
                        "dppf with, one run each; empty: the example's default")
    p.add_argument("--train-engines", default="mpi,gloo,pytorch", help="comma list of the training runs: mpi, gloo, pytorch")
    p.add_argument("--timeout", type=float, default=300, help="seconds per launched job")
    a = p.parse_args()
    if a.rates is None:
        a.rates = "1gbit" if a.quick else "1gbit,100mbit"
    if a.quick:
        a.sizes, a.sizes_slow, a.repeats, a.train_repeats = "16,20,22", "16,20", 3, 1
        a.mpi_algorithms, a.variant_sizes = "4", "10,16"
    a.rates = a.rates.split(",")
    a.mpi_algorithms = [int(k) for k in a.mpi_algorithms.split(",") if k]
    a.gloo_variants = [v for v in a.gloo_variants.split(",") if v]
    a.allreduce_engines = set(a.allreduce_engines.split(","))
    if not a.allreduce_engines <= {"gloo", "pytorch", "mpi", ""} or a.rounds < 1:
        raise SystemExit("run.py: --allreduce-engines takes gloo, pytorch, mpi; --rounds must be >= 1")
    skip = set(a.skip.split(","))
    a.sync_variants = [v for v in a.sync_variants.split(",") if v]
    a.sync_engines = set(a.sync_engines.split(","))
    if not a.sync_engines <= {"gloo", THREADS}:
        raise SystemExit("run.py: --sync-engines takes gloo, threads")
    for v in a.sync_variants:
        if v not in SYNC_VARIANTS:
            raise SystemExit(f"run.py: --sync-variants: unknown variant '{v}' ({', '.join(SYNC_VARIANTS)})")
    for r in a.rates:
        rate_bits(r)
    if os.geteuid() != 0:
        raise SystemExit("run.py: needs root (scripts/cluster.sh makes network namespaces)")
    bench = os.path.join(os.path.abspath(a.build), "bench", "dppf_bench_cluster_allreduce")
    example = os.path.join(os.path.abspath(a.build), "examples", "fashion_mnist", "fashion_mnist")
    for path, target, parts in ((bench, "dppf_bench_cluster_allreduce", {"allreduce"}),
                                (example, "fashion_mnist", {"train", "sync"})):
        if parts - skip and not os.access(path, os.X_OK):
            raise SystemExit(f"run.py: {path} not found: cmake --build {a.build} --target {target}")
    has_gloo = example_has_gloo(example)
    if "train" not in skip and not has_gloo:
        log("run.py: this fashion_mnist has no --comm gloo: training runs dppf over --comm mpi only")
    if "sync" not in skip and not has_gloo:
        raise SystemExit("run.py: the sync part runs over --comm gloo, which this fashion_mnist lacks (--skip sync)")

    info = {"machine": machine(), "hosts": M, "rates": a.rates, "repeats": a.repeats, "rounds": a.rounds,
            "train_repeats": a.train_repeats,
            "quick": a.quick, "argv": sys.argv[1:]}
    results = []
    cluster = Cluster(a.cluster)
    start = time.time()
    try:
        if "sync" not in skip and THREADS in a.sync_engines:
            log(f"run.py: the sync part over {M} threads, here")
            measure_sync(a, cluster, THREADS, example, results)
        cluster.up(a.rates[0])
        for rate in a.rates:
            cluster.rate(rate)
            log(f"run.py: {M} hosts at {rate}")
            if "allreduce" not in skip:
                measure_allreduce(a, cluster, rate, bench, results)
            if "train" not in skip:
                measure_training(a, cluster, rate, example, has_gloo, results)
            if "sync" not in skip and "gloo" in a.sync_engines:
                measure_sync(a, cluster, rate, example, results)
    finally:
        cluster.down()
    info["wall_s"] = time.time() - start
    info["load_average_end"] = os.getloadavg()

    tables = []
    epoch = f"one epoch of {a.train_limit} images, batch {a.batch} per worker" + (" (--quick)" if a.train_limit == 12000 else "")
    if "sync" not in skip and THREADS in a.sync_engines:
        tables.append(sync_table(results, THREADS, sync_labels(a), epoch))
    for rate in a.rates:
        if "allreduce" not in skip:
            tables.append(allreduce_table(results, rate))
        if "train" not in skip:
            tables.append(train_table(results, rate))
        if "sync" not in skip:
            tables.append(sync_table(results, rate, sync_labels(a), epoch))
    m = info["machine"]
    md = (f"Measured {m['date_utc']} UTC on {m['cpu']} ({m['cores']} cores), load average "
          f"{m['load_average'][0]:.1f} at the start and {info['load_average_end'][0]:.1f} at the end, "
          f"{M} emulated hosts, {info['wall_s']:.0f} s in all{' (--quick)' if a.quick else ''}.\n\n" + "\n\n".join(tables) + "\n")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "cluster.json"), "w") as f:
        json.dump({"info": info, "results": results}, f, indent=1)
    with open(os.path.join(a.out, "cluster.md"), "w") as f:
        f.write(md)
    print(md)
    failed = [r for r in results if "error" in r]
    if failed:
        log(f"run.py: {len(failed)} job(s) failed (see cluster.json)")
        sys.exit(1)


if __name__ == "__main__":
    main()
