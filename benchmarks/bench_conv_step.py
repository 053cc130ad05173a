"""A training step of Baldi et al.'s CIFAR-10 conv net, lpfa against PyTorch CPU, BP and FA.

The net of ``configs/baldi2018_cifar10.toml``: 3 × (conv 5×5, 64 tanh channels, "same"; max-pool
3×3 stride 2, "same"), dense 1024 tanh, softmax, cross-entropy; batch 128, float32, momentum 0.9,
one member (E = 1), random images. lpfa runs ``Network.step``; PyTorch runs the same step with
``torch.optim.SGD`` (momentum 0.9): BP by autograd, FA (rule ``rbp``) through custom
``autograd.Function`` layers whose backward sends the error through a fixed random kernel bank
(conv) or matrix (dense) instead of W, as BioTorch does. lpfa's "same" pooling pads the bottom
and right only (the smaller half on top and left), so PyTorch pads with −inf the same way before an
unpadded pool; with equal weights both take the same step, which is checked before timing (the
script exits 1 if the float64 weight changes differ by more than 1e-9, relative).

The issue's target is lpfa ≥ 0.5× PyTorch's speed on the CPU. Timed in interleaved blocks
(harness.py), median (min–max) steps per second and per-block ratios.

    python benchmarks/bench_conv_step.py [--blocks 6] [--seconds 2] [--threads N]

Runtime about 1.5 minutes with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path

import numpy as np
from harness import blas_line, cell, interleaved, ratio_cell, step_time

from lpfa.config import load
from lpfa.network import Network
from lpfa.threads import set_threads

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128
LR = 0.01
MOMENTUM = 0.9


def lpfa_net(rule: str, dtype: str = "float32") -> Network:
    """The CIFAR net of the paper's config, one member (seed 0), with ``rule``."""
    sets = ["seeds=[0]", f"channel.rule={rule}", f"model.dtype={dtype}"]
    cfg = load(ROOT / "configs" / "baldi2018_cifar10.toml", sets)
    return Network.build(cfg)


def torch_step(net: Network, rule: str):
    """PyTorch's version of ``net`` (its weights copied): ``step(x, labels)`` and the params."""
    import torch
    import torch.nn.functional as F
    from torch.nn.grad import conv2d_input, conv2d_weight

    class ConvFA(torch.autograd.Function):
        """conv2d whose backward sends the error through the kernel bank ``fb`` (FA)."""

        @staticmethod
        def forward(ctx, x, W, b, fb):
            ctx.save_for_backward(x, W, fb)
            return F.conv2d(x, W, b, padding=2)

        @staticmethod
        def backward(ctx, g):
            x, W, fb = ctx.saved_tensors
            gx = conv2d_input(x.shape, fb, g, padding=2) if ctx.needs_input_grad[0] else None
            return gx, conv2d_weight(x, W.shape, g, padding=2), g.sum((0, 2, 3)), None

    class LinearFA(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, W, b, fb):
            ctx.save_for_backward(x, fb)
            return torch.addmm(b, x, W.t())

        @staticmethod
        def backward(ctx, g):
            x, fb = ctx.saved_tensors
            return g @ fb, g.t() @ x, g.sum(0), None

    Ws, bs, fbs = [], [], []
    for h, layer in enumerate(net.layers, start=1):
        W = layer.W[0]
        if h <= net.n_conv:
            W = W.reshape(64, -1, 5, 5)  # taps in (C_in, row, column) order
        Ws.append(torch.from_numpy(W.copy()).requires_grad_())
        bs.append(torch.from_numpy(layer.b[0].copy()).requires_grad_())
        if rule == "rbp" and h > 1:  # C of the array above each hidden layer: (k, k - 1)
            C = net.channel.feedback[(h, h - 1)].C[0]
            fbs.append(torch.from_numpy(C.reshape(Ws[-1].shape).copy()))
    params = Ws + bs
    opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)

    def forward(x):
        o = x
        for h in range(3):
            if rule == "bp" or h == 0:  # the lowest array sends nothing down
                s = F.conv2d(o, Ws[h], bs[h], padding=2)
            else:
                s = ConvFA.apply(o, Ws[h], bs[h], fbs[h - 1])
            o = F.max_pool2d(F.pad(torch.tanh(s), (0, 1, 0, 1), value=-float("inf")), 3, 2)
        o = o.flatten(1)
        for h in (3, 4):
            o = (
                o @ Ws[h].t() + bs[h]
                if rule == "bp"
                else LinearFA.apply(o, Ws[h], bs[h], fbs[h - 1])
            )
            if h == 3:
                o = torch.tanh(o)
        return o

    def step(x, labels):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x), labels).backward()
        opt.step()

    return step, params


def check(rule: str, x, t, labels) -> float:
    """Largest relative difference between lpfa's and PyTorch's weight changes after one step,
    both in float64 (so that a different computation, not float32 rounding, would show)."""
    import torch

    x, t = x.astype(np.float64), t.astype(np.float64)
    net = lpfa_net(rule, "float64")
    step, params = torch_step(net, rule)
    before = [layer.W[0].copy() for layer in net.layers]
    net.step(x, t, LR, momentum=MOMENTUM)
    step(torch.from_numpy(x.reshape(BATCH, 3, 32, 32)), torch.from_numpy(labels))
    worst = 0.0
    for w0, layer, p in zip(before, net.layers, params, strict=False):
        ours = layer.W[0] - w0
        theirs = p.detach().numpy().reshape(ours.shape) - w0
        worst = max(worst, float(np.abs(ours - theirs).max() / np.abs(theirs).max()))
    return worst


def torch_time(step, x, labels, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        step(x, labels)
        n += 1
        if time.perf_counter() - start >= seconds:
            return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--threads", type=int, help="BLAS and PyTorch threads (default: LPFA_THREADS)")
    args = p.parse_args(argv)
    threads = set_threads(args.threads)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: pip install torch (CPU build)", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 3 * 32 * 32), dtype=np.float32)
    labels = rng.integers(0, 10, BATCH)
    t = np.eye(10, dtype=np.float32)[labels]
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {blas_line()}; "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads); batch {BATCH}"
    )
    for rule in ("bp", "rbp"):
        d = check(rule, x, t, labels)
        print(f"check {rule}: weight changes of lpfa and PyTorch differ by {d:.1e} (relative)")
        if d > 1e-9:
            return 1
    xt, lt = torch.from_numpy(x.reshape(BATCH, 3, 32, 32)), torch.from_numpy(labels)
    cases = {}
    for rule in ("bp", "rbp"):
        net = lpfa_net(rule)
        step, _ = torch_step(lpfa_net(rule), rule)
        cases[("lpfa", rule)] = functools.partial(step_time, net, x, t, args.seconds)
        cases[("torch", rule)] = functools.partial(torch_time, step, xt, lt, args.seconds)
    for fn in cases.values():  # warm up
        fn()
    times = interleaved(cases, args.blocks, progress=True)
    print("\n| rule | lpfa step (s) | PyTorch step (s) | lpfa speed / PyTorch's (target ≥ 0.5) |")
    print("|---|---|---|---|")
    for rule in ("bp", "rbp"):
        ours, theirs = times[("lpfa", rule)], times[("torch", rule)]
        r = ratio_cell(theirs, ours, target=0.5)
        print(f"| {rule} | {cell(ours, '.3f')} | {cell(theirs, '.3f')} | {r} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
