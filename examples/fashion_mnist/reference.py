#!/usr/bin/env python3
"""An independent PyTorch implementation of the example's setup, to cross-check its numbers.

Same data (normalized the same way), MLP 784-512-512-10 (or with --model cnn the example's CNN:
two stages of Conv2d(5, padding 2), ReLU, MaxPool2d(2) with 8 and 16 channels, then 784-64-10)
with torch's default init,
torch.optim.SGD (lr, momentum), M workers simulated one after another on their own shards
(sharded and shuffled with numpy, so the sample order differs from the C++ run: compare means
over seeds, not single runs), and at every tau-th step the sync of the method:
  single     one worker on all the data
  ddp        gradients averaged over the M workers every step
  local_sgd  x_i <- x_bar
  dppf       x_i <- x_bar + (1 - alpha + lambda / r_i) (x_i - x_bar), r_i = ||x_i - x_bar||
Evaluated on x_bar after the last epoch. Prints one JSON line per method.

Run with Debian's interpreter: /usr/bin/python3 examples/fashion_mnist/reference.py --seed 1
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch


def load(dir_, split, limit=0):
    with gzip.open(f"{dir_}/{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(f"{dir_}/{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    if limit:
        x, y = x[:limit], y[:limit]
    x = (x.astype(np.float32) / 255.0 - 0.2860) / 0.3530
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def mlp(sizes):
    layers = []
    for i in range(1, len(sizes)):
        layers.append(torch.nn.Linear(sizes[i - 1], sizes[i]))
        if i + 1 < len(sizes):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def cnn():
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 28, 28)),
        torch.nn.Conv2d(1, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def flat(model):
    return torch.nn.utils.parameters_to_vector(model.parameters())


def set_flat(model, v):
    torch.nn.utils.vector_to_parameters(v, model.parameters())


@torch.no_grad()
def evaluate(model, x, y, chunk=2000):
    loss, correct = 0.0, 0.0
    for i in range(0, len(y), chunk):
        z = model(x[i:i + chunk])
        loss += torch.nn.functional.cross_entropy(z, y[i:i + chunk], reduction="sum").item()
        correct += (z.argmax(1) == y[i:i + chunk]).sum().item()
    return loss / len(y), correct / len(y)


def run(method, a, xtr, ytr, xte, yte):
    torch.manual_seed(a.seed)
    m = 1 if method == "single" else a.workers
    make = cnn if a.model == "cnn" else (lambda: mlp([784, 512, 512, 10]))
    base = make()
    models = [make() for _ in range(m)]
    for w in models:
        w.load_state_dict(base.state_dict())
    opts = [torch.optim.SGD(w.parameters(), lr=a.lr, momentum=a.momentum) for w in models]
    rng = np.random.default_rng(a.seed)
    perm = rng.permutation(len(ytr))
    shard = len(ytr) // m
    shards = [perm[i * shard:(i + 1) * shard] for i in range(m)]
    steps = shard // a.batch
    t0 = time.time()
    step = 0
    for _ in range(a.epochs):
        for s in shards:
            rng.shuffle(s)
        for k in range(steps):
            for i, (w, opt) in enumerate(zip(models, opts)):
                idx = torch.from_numpy(shards[i][k * a.batch:(k + 1) * a.batch])
                opt.zero_grad()
                torch.nn.functional.cross_entropy(w(xtr[idx]), ytr[idx]).backward()
            if method == "ddp":
                for ps in zip(*[w.parameters() for w in models]):
                    g = torch.stack([p.grad for p in ps]).mean(0)
                    for p in ps:
                        p.grad.copy_(g)
            for opt in opts:
                opt.step()
            step += 1
            if method in ("local_sgd", "dppf") and step % a.tau == 0:
                with torch.no_grad():
                    xs = [flat(w) for w in models]
                    xbar = torch.stack(xs).mean(0)
                    for w, x in zip(models, xs):
                        d = x - xbar
                        if method == "local_sgd":
                            c = 0.0
                        else:
                            r = d.double().norm().item()
                            c = 1.0 - a.alpha + (a.lambda_ / r if r > 1e-12 else 0.0)
                        set_flat(w, xbar + c * d)
    with torch.no_grad():
        xbar = torch.stack([flat(w) for w in models]).mean(0)
        set_flat(base, xbar)
    tr_loss, tr_acc = evaluate(base, xtr, ytr)
    te_loss, te_acc = evaluate(base, xte, yte)
    return {"method": method, "impl": "pytorch", "model": a.model, "workers": m, "tau": a.tau, "epochs": a.epochs, "seed": a.seed,
            "train_acc": tr_acc, "test_acc": te_acc, "train_loss": tr_loss, "test_loss": te_loss,
            "wall_s": time.time() - t0}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--method", default="dppf,local_sgd,ddp")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--tau", type=int, default=8)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--lambda", dest="lambda_", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    a = p.parse_args()
    torch.set_num_threads(1)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    for method in a.method.split(","):
        print(json.dumps(run(method, a, xtr, ytr, xte, yte)), flush=True)


if __name__ == "__main__":
    main()
