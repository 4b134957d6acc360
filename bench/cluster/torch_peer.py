#!/usr/bin/python3
"""PyTorch's side of bench/cluster/run.py: one process per emulated host, torch.distributed with
the gloo backend, rendezvous through torch's TCPStore on host 1 (init_method tcp://ADDR:PORT).

    torch_peer.py allreduce --master ADDR:PORT [--sizes 16-24] [--repeats R] [--bytes-per-repeat B]
    torch_peer.py train --master ADDR:PORT --method ddp,local_sgd,dppf [--train-limit N] ...

RANK and WORLD_SIZE come from the environment (scripts/cluster.sh gloo sets them); set
GLOO_SOCKET_IFNAME=eth0 so Gloo binds the host's own link.

allreduce: timed exactly as dppf_bench_cluster_allreduce times dppf (same JSON lines): in-place
SUM of N float32, k = min(64, max(1, B / 4N)) back to back per repeat after a barrier, the slowest rank's
time per all-reduce; the first all-reduce of each size is checked exactly.

train: the Fashion-MNIST MLP of examples/fashion_mnist (784-512-512-10, ReLU, softmax
cross-entropy, torch's default init), torch.optim.SGD(lr, momentum), batch per worker, the first
--train-limit training images dealt into M equal shards, one epoch per --epochs:
  ddp        torch.nn.parallel.DistributedDataParallel (gradients all-reduced every step,
             bucketed and overlapped with the backward pass, as PyTorch does it)
  local_sgd  torch.distributed.algorithms.model_averaging.averagers.PeriodicModelAverager,
             period tau, warmup_steps tau - 1, so it averages after optimizer steps tau, 2 tau, ...
             as dppf's trainer does
  dppf       the same all-reduce as PeriodicModelAverager (flattened parameters, averaged)
             followed by DPPF's pull-push x_i <- x_bar + (1 - alpha + lambda / r_i)(x_i - x_bar)
Training time only: from a barrier before the first step to rank 0's last step (evaluation,
data loading and process start are outside it). Rank 0 prints one JSON line per method.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "fashion_mnist"))
from reference import load, mlp  # noqa: E402  the same data and model as the example's PyTorch reference


def sizes_arg(s):
    if "-" in s:
        a, b = s.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(e) for e in s.split(",")]


def allreduce(a, rank, m):
    for e in a.sizes:
        n = 1 << e
        x = (torch.arange(n, dtype=torch.int64) % 7 + rank + 1).to(torch.float32)
        dist.all_reduce(x)  # warm-up, checked
        expected = (torch.arange(n, dtype=torch.int64) % 7).to(torch.float64) * m + m * (m + 1) / 2
        bad = torch.tensor([0.0 if torch.equal(x.double(), expected) else 1.0], dtype=torch.float64)
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() != 0.0:
            raise SystemExit(f"rank {rank}: wrong all-reduce result at N={n}")
        k = min(64, max(1, a.bytes_per_repeat // (4 * n)))
        times = []
        for _ in range(a.repeats):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(k):
                dist.all_reduce(x)
            mine = torch.tensor([(time.perf_counter() - t0) / k], dtype=torch.float64)
            dist.all_reduce(mine, op=dist.ReduceOp.MAX)
            times.append(mine.item())
        if rank == 0:
            print(json.dumps({"engine": "torch", "impl": "gloo", "ranks": m, "n": n, "bytes": 4 * n, "iterations": k,
                              "times_s": times}), flush=True)


def train(a, rank, m):
    from torch.distributed.algorithms.model_averaging import averagers
    xtr, ytr = load(a.data, "train", a.train_limit)
    sizes = [784] + [int(h) for h in a.hidden.split(",")] + [10]
    for method in a.method.split(","):
        torch.manual_seed(a.seed)
        model = mlp(sizes)  # same seed on every rank: the same initial model
        net = torch.nn.parallel.DistributedDataParallel(model) if method == "ddp" else model
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
        averager = averagers.PeriodicModelAverager(period=a.tau, warmup_steps=a.tau - 1) if method == "local_sgd" else None
        rng = np.random.default_rng(a.seed)
        perm = rng.permutation(len(ytr))
        shard_size = len(ytr) // m
        shard = perm[rank * shard_size:(rank + 1) * shard_size]
        steps = shard_size // a.batch
        params = list(model.parameters())
        dist.barrier()
        t0 = time.perf_counter()
        step = 0
        for _ in range(a.epochs):
            rng.shuffle(shard)
            for k in range(steps):
                idx = torch.from_numpy(shard[k * a.batch:(k + 1) * a.batch])
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
                opt.step()
                step += 1
                if averager is not None:
                    averager.average_parameters(params)
                elif method == "dppf" and step % a.tau == 0:
                    with torch.no_grad():
                        x = torch.nn.utils.parameters_to_vector(params)
                        xbar = x.clone()
                        dist.all_reduce(xbar)
                        xbar /= m
                        d = x - xbar
                        r = d.double().norm().item()
                        c = 1.0 - a.alpha + (a.lambda_ / r if r > 1e-12 else 0.0)
                        torch.nn.utils.vector_to_parameters(xbar + c * d, params)
        train_s = time.perf_counter() - t0
        dist.barrier()
        if rank == 0:
            print(json.dumps({"impl": "pytorch", "method": method, "workers": m, "tau": a.tau, "epochs": a.epochs,
                              "steps": step, "train_s": train_s}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["allreduce", "train"])
    p.add_argument("--master", required=True, help="ADDR:PORT of torch's TCPStore (rank 0 hosts it)")
    p.add_argument("--sizes", type=sizes_arg, default=sizes_arg("16-24"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bytes-per-repeat", type=int, default=4 << 20)
    p.add_argument("--method", default="ddp,local_sgd,dppf")
    p.add_argument("--tau", type=int, default=8)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--lambda", dest="lambda_", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hidden", default="512,512")
    p.add_argument("--train-limit", type=int, default=12000)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = p.parse_args()
    torch.set_num_threads(1)  # one thread per worker, as the dppf example's OpenBLAS with M > 1
    rank, m = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"tcp://{a.master}", rank=rank, world_size=m)
    try:
        (allreduce if a.mode == "allreduce" else train)(a, rank, m)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
