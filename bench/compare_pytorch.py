#!/usr/bin/python3
"""Side by side: dppf against PyTorch on the same sizes, from one run.

Runs PyTorch's SGD (momentum 0.9, weight decay) and AdamW steps with foreach=True, and a
torch.distributed (gloo, localhost) all-reduce over 4 processes; runs dppf's benchmark binaries
(dppf_bench_host, dppf_bench_comm, and dppf_bench_mpi under mpiexec) with JSON output; prints
the times, bandwidths and the ratios dppf/PyTorch (speedup = PyTorch time / dppf time).

    /usr/bin/python3 bench/compare_pytorch.py --build build/host [--quick] [--json out.json]

Use /usr/bin/python3: the Debian interpreter that has python3-torch (PyTorch 1.13, CPU).
Every time is the median of --repetitions measurements; each measurement runs the operation for
at least --min-time seconds. Bandwidths use the models of docs/performance.md (fp32: SGD 20 B per
parameter, AdamW 28, all-reduce N * 4 bytes of algorithm bandwidth).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BYTES_PER_PARAM = {"sgd": 20, "adamw": 28}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed(fn, min_time, repetitions):
    """Median seconds per call of fn over `repetitions` batches of at least min_time seconds."""
    fn()
    fn()  # warm-up: allocations, first-step state
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    batch = max(1, int(min_time / once))
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - start) / batch)
    return statistics.median(samples)


def torch_optimizer_steps(sizes, threads, min_time, repetitions):
    import torch

    torch.set_num_threads(threads)
    results = {}
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        for name in ("sgd", "adamw"):
            p = torch.nn.Parameter(torch.rand(n, generator=gen) * 2 - 1)
            p.grad = (torch.rand(n, generator=gen) * 2 - 1) * 1e-2
            if name == "sgd":
                opt = torch.optim.SGD([p], lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
            else:
                opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=1e-2, foreach=True)
            with torch.no_grad():
                seconds = timed(opt.step, min_time, repetitions)
            results[(name, n)] = seconds
            log(f"  torch {name} N={n}: {seconds * 1e3:.3f} ms")
            del opt, p
    return results


def _gloo_worker(rank, world, port, sizes, min_time, repetitions, queue):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    out = {}
    for n in sizes:
        x = torch.rand(n, generator=torch.Generator().manual_seed(rank))
        for _ in range(2):
            dist.all_reduce(x)
        # A fixed batch (the same on every rank), long enough for the largest size to be timed once.
        probe = torch.zeros(1)
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(x)
        probe[0] = time.perf_counter() - start
        dist.all_reduce(probe, op=dist.ReduceOp.MAX)
        batch = max(1, int(min_time / max(probe.item(), 1e-7)))
        samples = []
        for _ in range(repetitions):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(batch):
                dist.all_reduce(x)
            t = torch.tensor([(time.perf_counter() - start) / batch])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the slowest rank's time, as nccl-tests
            samples.append(t.item())
        out[n] = statistics.median(samples)
    if rank == 0:
        queue.put(out)
    dist.destroy_process_group()


def torch_gloo_all_reduce(sizes, world, min_time, repetitions):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_gloo_worker, args=(r, world, port, sizes, min_time, repetitions, queue))
             for r in range(world)]
    for p in procs:
        p.start()
    out = queue.get()
    for p in procs:
        p.join()
    for n, seconds in out.items():
        log(f"  gloo all_reduce M={world} N={n}: {seconds * 1e3:.3f} ms")
    return out


def run_benchmark(command, out_path):
    log("  $ " + " ".join(command))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with open(out_path) as f:
        return json.load(f)


def medians(report):
    """{benchmark run_name: median real time in seconds} from google-benchmark JSON."""
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    out = {}
    for b in report["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if b.get("run_type") == "iteration" and b.get("repetitions", 1) > 1:
            continue
        out[b["run_name"]] = b["real_time"] * scale[b["time_unit"]]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build/host", help="dppf build directory (the host preset's)")
    ap.add_argument("--sizes", default="16,18,20,22,24,26", help="log2 of the parameter counts")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both sides")
    ap.add_argument("--ranks", type=int, default=4, help="processes of the gloo and MPI all-reduce")
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--quick", action="store_true", help="2^16 and 2^20 only, 3 repetitions, short runs")
    ap.add_argument("--json", help="write every number of this run here")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.repetitions, args.min_time = "16,20", 3, 0.05
    sizes = [1 << int(e) for e in args.sizes.split(",")]
    bench = os.path.join(args.build, "bench")
    env_threads = str(args.threads)

    log(f"PyTorch (threads={args.threads}):")
    torch_steps = torch_optimizer_steps(sizes, args.threads, args.min_time, args.repetitions)
    torch_ar = torch_gloo_all_reduce(sizes, args.ranks, args.min_time, args.repetitions)

    log("dppf:")
    tmp = tempfile.mkdtemp(prefix="dppf_compare_")
    os.environ["OMP_NUM_THREADS"] = env_threads
    common = [f"--benchmark_repetitions={args.repetitions}", "--benchmark_report_aggregates_only=true",
              f"--benchmark_min_time={args.min_time}", "--benchmark_out_format=json"]
    size_re = "|".join(str(n) for n in sizes)
    host_json = os.path.join(tmp, "host.json")
    host = run_benchmark([os.path.join(bench, "dppf_bench_host"), f"--benchmark_filter=^(sgd|adamw)/.*/({size_re})/",
                          f"--benchmark_out={host_json}"] + common, host_json)
    comm_json = os.path.join(tmp, "comm.json")
    comm = run_benchmark([os.path.join(bench, "dppf_bench_comm"),
                          f"--benchmark_filter=^all_reduce/threads/N:({size_re})/M:{args.ranks}/",
                          f"--benchmark_out={comm_json}"] + common, comm_json)
    mpi = None
    mpi_bin = os.path.join(bench, "dppf_bench_mpi")
    mpiexec = shutil.which("mpiexec")
    if os.path.exists(mpi_bin) and mpiexec:
        mpi_json = os.path.join(tmp, "mpi.json")
        mpi = run_benchmark([mpiexec, "--allow-run-as-root", "--oversubscribe", "-n", str(args.ranks), mpi_bin,
                             f"--benchmark_filter=^all_reduce/mpi/N:({size_re})/", f"--benchmark_out={mpi_json}",
                             f"--benchmark_repetitions={args.repetitions}", "--benchmark_report_aggregates_only=true",
                             "--benchmark_out_format=json"], mpi_json)
    host_t, comm_t = medians(host), medians(comm)
    mpi_t = medians(mpi) if mpi else {}
    triad = float(host["context"].get("triad_bytes_per_second", "nan"))

    rows = []
    print(f"\nMachine: {host['context'].get('host_name', '?')}, {host['context'].get('num_cpus')} CPUs; "
          f"triad {triad / 1e9:.1f} GB/s (measured by dppf_bench_host in this run); threads {args.threads}; "
          f"medians of {args.repetitions}")
    print("\nOptimizer steps (fp32; GB/s from the model's bytes; speedup = PyTorch time / dppf time)")
    print(f"{'op':6} {'N':>9} {'dppf executor':>14} {'dppf ms':>9} {'dppf GB/s':>9} {'torch ms':>9} "
          f"{'torch GB/s':>10} {'speedup':>8}")
    for name in ("sgd", "adamw"):
        for n in sizes:
            t_torch = torch_steps[(name, n)]
            for ex in ("host", "host_parallel"):
                key = f"{name}/{ex}/{n}/real_time"
                if key not in host_t:
                    continue
                t = host_t[key]
                bw, bw_torch = BYTES_PER_PARAM[name] * n / t, BYTES_PER_PARAM[name] * n / t_torch
                rows.append({"op": name, "n": n, "executor": ex, "dppf_s": t, "torch_s": t_torch,
                             "dppf_Bps": bw, "torch_Bps": bw_torch, "speedup": t_torch / t})
                print(f"{name:6} {n:>9} {ex:>14} {t * 1e3:9.3f} {bw / 1e9:9.2f} {t_torch * 1e3:9.3f} "
                      f"{bw_torch / 1e9:10.2f} {t_torch / t:8.2f}")
    m = args.ranks
    print(f"\nAll-reduce over {m} workers (fp32; algorithm bandwidth N*4/time, bus = algorithm * 2(M-1)/M;"
          " speedup = gloo time / dppf time)")
    print(f"{'N':>9} {'gloo ms':>9} {'gloo alg GB/s':>13} {'threads ms':>10} {'speedup':>8} {'mpi ms':>9} "
          f"{'mpi alg GB/s':>12} {'speedup':>8}")
    for n in sizes:
        tg = torch_ar[n]
        tt = comm_t.get(f"all_reduce/threads/N:{n}/M:{m}/real_time")
        tm = next((t for k, t in mpi_t.items() if k.startswith(f"all_reduce/mpi/N:{n}/")), None)
        row = {"op": "all_reduce", "n": n, "workers": m, "gloo_s": tg, "threads_s": tt, "mpi_s": tm}
        rows.append(row)
        fmt = lambda t: f"{t * 1e3:.3f}" if t else "-"
        sp = lambda t: f"{tg / t:.2f}" if t else "-"
        print(f"{n:>9} {tg * 1e3:9.3f} {4 * n / tg / 1e9:13.3f} {fmt(tt):>10} {sp(tt):>8} {fmt(tm):>9} "
              f"{(4 * n / tm / 1e9 if tm else float('nan')):12.3f} {sp(tm):>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"triad_bytes_per_second": triad, "threads": args.threads, "ranks": m,
                       "repetitions": args.repetitions, "rows": rows}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
