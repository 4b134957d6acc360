#!/usr/bin/env python3
"""LocalSGD in dppf (libtorch_localsgd) against PyTorch's own: torch.optim.SGD with
torch.distributed's PeriodicModelAverager, M processes over Gloo on this machine.

Both start from the same weights (the C++ program writes its initial parameters, which are loaded
here in named_parameters order, the layout checked by name) and see the same minibatches (worker r,
step s: training images [(s M + r) B, (s M + r + 1) B) modulo the first 4096, normalized as the
C++ reader does). dppf syncs after steps tau-1, 2 tau-1, ...; PeriodicModelAverager(period=tau,
warmup_steps=tau-1) averages after the same steps. Every parameter of every worker must agree
within |a - b| <= TOL (1 + |b|). Exits 1 on a mismatch.

Run: /usr/bin/python3 examples/libtorch/localsgd_reference.py --exe build/.../libtorch_localsgd
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fashion_mnist"))
from reference import load, mlp  # noqa: E402  (the Fashion-MNIST example's reader and MLP)


def worker(rank, a, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=a.workers)
    x, y = load(a.data, "train")
    n = 4096
    x, y = x[:n], y[:n]
    model = mlp([784, 64, 64, 10])
    names = [line.split()[0] for line in open(f"{out}/layout.txt")]
    assert names == [k for k, _ in model.named_parameters()], (names, [k for k, _ in model.named_parameters()])
    init = torch.from_numpy(np.fromfile(f"{out}/init.bin", dtype=np.float32))
    torch.nn.utils.vector_to_parameters(init, model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    averager = PeriodicModelAverager(period=a.tau, warmup_steps=a.tau - 1)
    for s in range(a.steps):
        begin = ((s * a.workers + rank) * a.batch) % (n - n % a.batch)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[begin:begin + a.batch]), y[begin:begin + a.batch])
        loss.backward()
        opt.step()
        averager.average_parameters(model.parameters())
    torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy().tofile(f"{out}/torch{rank}.bin")
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--exe", required=True)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--tau", type=int, default=4)
    p.add_argument("--steps", type=int, default=22)  # not a multiple of tau: the workers end apart
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tol", type=float, default=1e-5)
    a = p.parse_args()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([a.exe, a.data, out, str(a.workers), str(a.tau), str(a.steps), str(a.batch), str(a.lr),
                        str(a.momentum), str(a.seed)], check=True, timeout=120)
        mp.spawn(worker, args=(a, out), nprocs=a.workers, join=True)
        bad = 0
        for r in range(a.workers):
            ours = np.fromfile(f"{out}/worker{r}.bin", dtype=np.float32).astype(np.float64)
            theirs = np.fromfile(f"{out}/torch{r}.bin", dtype=np.float32).astype(np.float64)
            init = np.fromfile(f"{out}/init.bin", dtype=np.float32).astype(np.float64)
            assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
            diff = np.abs(ours - theirs)
            over = int(np.sum(diff > a.tol * (1 + np.abs(theirs))))
            bad += over
            print(f"worker {r}: {ours.size} parameters, largest |dppf - torch| {diff.max():.3g}, "
                  f"moved {np.abs(theirs - init).max():.3g} from the start, {over} over tolerance")
        spread = np.abs(np.fromfile(f"{out}/torch0.bin", dtype=np.float32) - np.fromfile(f"{out}/torch1.bin", dtype=np.float32)).max()
        print(f"workers 0 and 1 differ by up to {spread:.3g} after the last local steps")
        if bad:
            print(f"FAIL: {bad} parameters differ by more than {a.tol} (1 + |torch|)")
            sys.exit(1)
        print(f"OK: dppf's LocalSGD equals torch.optim.SGD + PeriodicModelAverager within {a.tol} (1 + |torch|)")


if __name__ == "__main__":
    main()
