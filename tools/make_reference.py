#!/usr/bin/python3
"""Reference trajectories of torch.optim.SGD / torch.optim.AdamW and torch.optim.lr_scheduler
values, for tests/test_optimizers.cpp.

Regenerate (needs Debian's python3-torch, PyTorch 1.13 CPU; CI never runs this):

    /usr/bin/python3 tools/make_reference.py            # writes tests/data/optim_reference.bin

The output is deterministic for a given PyTorch build and CPU capability (fixed seeds, one
thread). The committed file was made with Debian 12's python3-torch 1.13.1 (it reports 1.13.0a0), CPU
capability AVX2 (ATEN_CPU_CAPABILITY unset on an AVX-512 machine): its
vectorized kernels compute `a.add(b, alpha=s)` with a fused multiply-add, so other builds may
differ from the committed numbers in the last bits, well inside the tests' tolerances.

What is stored, per dtype (float32 and float64):
  * one set of initial parameters (N elements) and one gradient per step (STEPS x N), drawn here
    with fixed seeds and fed unchanged to every option set (the C++ test feeds the same values);
  * for every option set, the parameters after every step (STEPS x N); where the option set
    changes the learning rate every step (a schedule), the rates used (STEPS values, float64).
Schedules: the learning rate at steps 0..S-1 of StepLR, CosineAnnealingLR, LinearLR (the warm-up)
and SequentialLR(LinearLR, CosineAnnealingLR), as the optimizer sees it (torch's recursive,
"chainable" form; dppf's callables use the closed form, so the two agree to rounding only).
Where the definitions differ the data stops: CosineAnnealingLR continues as a cosine of period
2*T_max after T_max (rising again), dppf::cosine_lr stays at min_lr, so only steps 0..T_max are
stored; LinearLR needs start_factor > 0 (its recursion divides by it), dppf::warmup allows 0.

File format (little-endian), a sequence of records, each starting with one text line:
  "dppf-optim-reference 1"                  first line
  "options <name> key=value ..."            an option set (text only)
  "array <name> <f32|f64> <rows> <cols>"    followed by rows*cols little-endian values, row-major
  "end"                                     last line
"""

import math
import os
import struct
import sys

import torch

N = 37  # elements: AVX2 kernels run 32 of them vectorized (chunks of 16 floats / 8 doubles), 5 in the scalar tail
STEPS = 120
SCHEDULE_STEPS = 120

# Option sets, named; keys are dppf's option names.
SGD_SETS = [
    ("sgd_plain", dict(lr=0.1)),
    ("sgd_weight_decay", dict(lr=0.05, weight_decay=0.01)),
    ("sgd_maximize", dict(lr=0.05, weight_decay=1e-3, maximize=True)),
    ("sgd_momentum", dict(lr=0.1, momentum=0.9)),
    ("sgd_momentum_dampening_wd", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=5e-4)),
    ("sgd_nesterov_wd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
    ("sgd_nesterov_maximize", dict(lr=0.01, momentum=0.5, nesterov=True, maximize=True)),
    ("sgd_momentum_cosine", dict(lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="cosine")),
]
ADAMW_SETS = [
    ("adamw_default", dict()),
    ("adamw_no_decay", dict(lr=1e-2, weight_decay=0.0)),
    ("adamw_weight_decay", dict(lr=1e-2, weight_decay=0.1)),
    ("adamw_amsgrad", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("adamw_maximize", dict(lr=1e-2, maximize=True)),
    ("adamw_betas_eps", dict(lr=3e-3, beta1=0.8, beta2=0.95, eps=1e-6)),
    ("adamw_amsgrad_maximize_betas", dict(lr=5e-3, beta1=0.5, beta2=0.9, eps=1e-4, weight_decay=0.05,
                                          amsgrad=True, maximize=True)),
    ("adamw_beta1_zero", dict(lr=1e-2, beta1=0.0, beta2=0.99)),
    ("adamw_warmup_cosine", dict(lr=1e-2, weight_decay=1e-2, schedule="warmup_cosine")),
]
SGD_DEFAULTS = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False)
ADAMW_DEFAULTS = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False)

# Per-step learning rates for option sets with a schedule, in the closed form of dppf's callables
# (same expression order, so the same doubles): cosine_lr{lr, STEPS, 0} and
# warmup{.steps = 20, .then = cosine_lr{lr, STEPS - 20, 1e-4}, .start_factor = 0.1}.
def cosine(lr, total, min_lr, t):
    if t >= total:
        return min_lr
    progress = t / total
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def warmup(steps, then, start_factor, t):
    if t >= steps:
        return then(t - steps)
    frac = t / steps
    return then(0) * (start_factor + (1.0 - start_factor) * frac)


def lr_at(kind, lr, t):
    if kind == "cosine":
        return cosine(lr, STEPS, 0.0, t)
    if kind == "warmup_cosine":
        return warmup(20, lambda s: cosine(lr, STEPS - 20, 1e-4, s), 0.1, t)
    raise ValueError(kind)


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    return repr(v)


class Writer:
    def __init__(self):
        self.parts = [b"dppf-optim-reference 1\n"]

    def options(self, name, opts):
        line = "options " + name + "".join(f" {k}={fmt(v)}" for k, v in opts.items()) + "\n"
        self.parts.append(line.encode())

    def array(self, name, values, dtype):
        t = values.detach().to(dtype).contiguous()
        if t.dim() == 1:
            t = t.reshape(1, -1)
        rows, cols = t.shape
        code = {torch.float32: ("f32", "<f"), torch.float64: ("f64", "<d")}[dtype]
        self.parts.append(f"array {name} {code[0]} {rows} {cols}\n".encode())
        flat = t.reshape(-1).tolist()
        self.parts.append(struct.pack("<%d%s" % (len(flat), code[1][1]), *flat))

    def bytes(self):
        return b"".join(self.parts + [b"end\n"])


def make_inputs(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(N, generator=g, dtype=torch.float64)
    # Gradients whose scale varies per element and per step (so amsgrad's running maximum differs
    # from the second moment), with a few exact zeros.
    base = torch.randn(STEPS, N, generator=g, dtype=torch.float64)
    scale = torch.pow(10.0, torch.empty(STEPS, N, dtype=torch.float64).uniform_(-1.5, 0.5, generator=g))
    grads = base * scale
    grads[torch.rand(STEPS, N, generator=g, dtype=torch.float64) < 0.02] = 0.0
    return x0.to(dtype), grads.to(dtype)


def run_sgd(opts, x0, grads):
    p = torch.nn.Parameter(x0.clone())
    o = dict(SGD_DEFAULTS, **opts)
    schedule = o.pop("schedule", None)
    opt = torch.optim.SGD([p], lr=o["lr"], momentum=o["momentum"], dampening=o["dampening"],
                          weight_decay=o["weight_decay"], nesterov=o["nesterov"], maximize=o["maximize"],
                          foreach=False)
    return trajectory(opt, p, grads, schedule, o["lr"])


def run_adamw(opts, x0, grads):
    p = torch.nn.Parameter(x0.clone())
    o = dict(ADAMW_DEFAULTS, **opts)
    schedule = o.pop("schedule", None)
    opt = torch.optim.AdamW([p], lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                            weight_decay=o["weight_decay"], amsgrad=o["amsgrad"], maximize=o["maximize"],
                            foreach=False)
    return trajectory(opt, p, grads, schedule, o["lr"])


def trajectory(opt, p, grads, schedule, lr):
    out = torch.empty_like(grads)
    lrs = []
    for t in range(STEPS):
        if schedule is not None:
            opt.param_groups[0]["lr"] = lr_at(schedule, lr, t)
            lrs.append(opt.param_groups[0]["lr"])
        p.grad = grads[t].clone()
        opt.step()
        out[t] = p.detach()
    return out, lrs


def schedule_sets():
    """(name, options, torch scheduler factory, number of steps stored)."""
    sched = torch.optim.lr_scheduler
    return [
        ("step_lr", dict(kind="step_lr", lr=0.1, step_size=30, gamma=0.1),
         lambda o: sched.StepLR(o, step_size=30, gamma=0.1), SCHEDULE_STEPS),
        ("step_lr_gamma_half", dict(kind="step_lr", lr=0.5, step_size=7, gamma=0.5),
         lambda o: sched.StepLR(o, step_size=7, gamma=0.5), SCHEDULE_STEPS),
        ("cosine_lr", dict(kind="cosine_lr", lr=0.1, total_steps=100, min_lr=0.0),
         lambda o: sched.CosineAnnealingLR(o, T_max=100), 101),
        ("cosine_lr_min", dict(kind="cosine_lr", lr=0.05, total_steps=37, min_lr=1e-3),
         lambda o: sched.CosineAnnealingLR(o, T_max=37, eta_min=1e-3), 38),
        ("warmup_linear", dict(kind="warmup", lr=0.1, steps=10, start_factor=0.1),
         lambda o: sched.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10), SCHEDULE_STEPS),
        ("warmup_linear_quarter", dict(kind="warmup", lr=0.02, steps=25, start_factor=0.25),
         lambda o: sched.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=25), SCHEDULE_STEPS),
        ("warmup_cosine", dict(kind="warmup_cosine", lr=0.1, steps=10, start_factor=0.1, total_steps=90,
                               min_lr=1e-3),
         lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.1, total_iters=10),
                                          sched.CosineAnnealingLR(o, T_max=90, eta_min=1e-3)],
                                      milestones=[10]), 101),
    ]


def torch_schedule(lr, factory, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    s = factory(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return torch.tensor(lrs, dtype=torch.float64)


def main():
    torch.set_num_threads(1)
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = os.path.join(here, "..", "tests", "data", "optim_reference.bin")
    if len(sys.argv) > 1:
        out_path = sys.argv[1]
    w = Writer()
    w.options("meta", dict(torch=torch.__version__, n=N, steps=STEPS))
    for dtype, tag, seed in ((torch.float32, "f32", 1), (torch.float64, "f64", 2)):
        x0, grads = make_inputs(dtype, seed)
        w.array(f"{tag}/init", x0, dtype)
        w.array(f"{tag}/grads", grads, dtype)
        for runner, sets in ((run_sgd, SGD_SETS), (run_adamw, ADAMW_SETS)):
            for name, opts in sets:
                params, lrs = runner(opts, x0, grads)
                w.array(f"{tag}/{name}", params, dtype)
                if lrs:
                    w.array(f"{tag}/{name}/lr", torch.tensor(lrs, dtype=torch.float64), torch.float64)
    for name, opts in SGD_SETS:
        w.options(name, dict(SGD_DEFAULTS, **opts))
    for name, opts in ADAMW_SETS:
        w.options(name, dict(ADAMW_DEFAULTS, **opts))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimizer.step() before lr_scheduler.step()" noise
        for name, opts, factory, steps in schedule_sets():
            w.options(name, opts)
            w.array(f"schedule/{name}", torch_schedule(opts["lr"], factory, steps), torch.float64)
    data = w.bytes()
    with open(out_path, "wb") as f:
        f.write(data)
    print(f"wrote {out_path}: {len(data)} bytes")


if __name__ == "__main__":
    main()
