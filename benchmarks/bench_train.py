"""Training throughput of lpfa's SGD step against plain numpy, PyTorch and the machine's GEMM peak.

Two nets at batch 100, float32: 784-1000-10 (logistic hidden) and Baldi et al.'s
784-100-100-100-100-10 (tanh hidden), softmax output and cross-entropy, each trained with BP,
FA (rule ``rbp``) and DFA (rule ``srbp``). Per net and rule it measures training samples per
second of

- ``lpfa``: ``Network.step`` (E = 1),
- ``hand``: the same step in plain 2-D numpy, written the obvious way (:class:`HandNet`),
- ``torch``: PyTorch CPU, autograd for BP, custom ``autograd.Function``s for FA and DFA in the
  style of BioTorch (:func:`torch_net`), plain SGD; skipped when torch is not installed,
- ``gemm``: only the step's matrix products, in numpy, into preallocated outputs (the floor for
  any numpy implementation),

and, for FA, an ensemble of 8 seeds (one ``Network`` with E = 8) against 8 single-seed networks
stepped one after the other, both counted in member-samples (8 × batch per step). A large square
float32 GEMM gives the machine's peak; each step's rate is also given as a fraction of it, with
the step's FLOPs counted analytically (:func:`step_flops`).

The machine's speed may drift or flip between levels, so configurations are never timed one
after another: each block times every configuration once for ``--seconds``, in an order rotated
from block to block, with the configurations that are compared with each other (lpfa, hand,
torch, gemm of one net and rule) next to each other. Reported: the median over blocks with its
min–max, and ratios as the median of the per-block ratios. Nothing is asserted about timing;
before timing, one step of every implementation is checked against lpfa's (same weights after
the step), and the script exits with 1 if they differ.

Runtime: about 3.5 minutes with the defaults (10 blocks of 29 configurations × 0.5 s, plus
warm-up); ``--quick`` takes about 20 seconds and its numbers are only a smoke test.

    python benchmarks/bench_train.py [--quick] [--seconds S] [--blocks K] [--data random|mnist]
                                     [--nets wide baldi] [--rules bp fa dfa] [--no-torch]
                                     [--threads N] [--json PATH]

``--threads N`` (or ``LPFA_THREADS``) limits BLAS and PyTorch to N threads; without either the
BLAS library's own count is used (all cores unless ``OPENBLAS_NUM_THREADS`` says otherwise).
On a machine where another process is busy, one thread is the fair setting: spinning BLAS
workers that share a core with another process make small products tens of times slower.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from harness import blas_line, cell, ratio_cell, rotated, si

from lpfa.config import Activation, ChannelConfig, Loss, ModelConfig, Rule, RunConfig
from lpfa.network import Network
from lpfa.threads import blas_info, heap_settings, hold_freed_memory, set_threads, threads_from_env

try:
    import resource
except ImportError:  # not on Windows
    resource = None

BATCH = 100
LR = 0.01  # small, so that minutes of training on random targets keep the weights tame
POOL = 20  # minibatches cycled through; all implementations see the same ones
N_ENSEMBLE = 8


@dataclass(frozen=True)
class NetSpec:
    """One network shape of the benchmark."""

    label: str
    sizes: tuple[int, ...]
    hidden: Activation


NETS = {
    "wide": NetSpec("784-1000-10", (784, 1000, 10), Activation.LOGISTIC),
    "baldi": NetSpec("784-100⁴-10", (784, 100, 100, 100, 100, 10), Activation.TANH),
}
RULES = {"bp": Rule.BP, "fa": Rule.RBP, "dfa": Rule.SRBP}
RULE_LABEL = {Rule.BP: "BP", Rule.RBP: "FA", Rule.SRBP: "DFA"}
# targets of the project: lpfa / hand, lpfa / torch per net, ensemble-8 / 8 singles
TARGET_HAND = 0.9
TARGET_TORCH = {"wide": 1.1, "baldi": 1.5}
TARGET_ENSEMBLE = 1.3


def run_config(net: NetSpec, rule: Rule, seeds: Sequence[int] = (0,)) -> RunConfig:
    """lpfa's configuration of one benchmark case (softmax output, cross-entropy, float32)."""
    model = ModelConfig(
        sizes=net.sizes,
        hidden=net.hidden,
        output=Activation.SOFTMAX,
        loss=Loss.CROSS_ENTROPY,
        dtype="float32",
    )
    return RunConfig(seeds=tuple(seeds), model=model, channel=ChannelConfig(rule=rule))


def step_flops(sizes: Sequence[int], rule: Rule, batch: int = BATCH) -> int:
    """FLOPs of one step's matrix products: forward, learning channel and weight updates.

    Forward and updates are 2·B·Σ n_in·n_out each. The channel sends an (B, n_source) signal
    through an (n_source, n_h) matrix to every hidden layer h: n_source = N_{h+1} for BP and FA,
    N_L for DFA. Element-wise work (activations, f′, biases) is not counted.
    """
    dense = sum(a * b for a, b in itertools.pairwise(sizes))
    hidden = range(1, len(sizes) - 1)
    channel = sum((sizes[-1] if rule is Rule.SRBP else sizes[h + 1]) * sizes[h] for h in hidden)
    return 2 * batch * (2 * dense + channel)


# --- the implementations ------------------------------------------------------------------------


def _feedback(net: Network) -> list:
    """Member 0's feedback matrix of each hidden layer, bottom first, (n_source, N_h) each: one
    sending layer k per hidden layer h (FA: h + 1, DFA: L) in ``Channel.feedback``."""
    mats = []
    for h in range(1, len(net.layers)):
        (C,) = [arr.C for (_, dst), arr in net.channel.feedback.items() if dst == h]
        mats.append(C[0].copy())
    return mats


def _params(net: Network) -> tuple[list, list, list]:
    """Copies of member 0's weights (n_out, n_in), biases (n_out,) and feedback matrices."""
    Ws = [layer.W[0].copy() for layer in net.layers]
    bs = [layer.b[0].copy() for layer in net.layers]
    return Ws, bs, _feedback(net) if net.channel.feedback else []


class HandNet:
    """The same SGD step in plain 2-D numpy, the way one would write it without lpfa.

    Weights W (n_out, n_in) as in lpfa and PyTorch; ``fbs[h]`` is lpfa's feedback matrix of
    hidden layer h, (N_{h+2}, N_{h+1}) for FA and (N_L, N_{h+1}) for DFA, used as ``r @ fb``.
    """

    def __init__(self, Ws: list, bs: list, fbs: list, rule: Rule, hidden: Activation):
        self.W, self.b, self.fb, self.rule, self.hidden = Ws, bs, fbs, rule, hidden

    def step(self, x: np.ndarray, t: np.ndarray, lr: float) -> np.ndarray:
        """One step on the minibatch mean; x (B, N_0), t (B, N_L) one-hot; returns O^L."""
        L = len(self.W)
        outs = [x]
        for k in range(L):
            s = outs[-1] @ self.W[k].T
            s += self.b[k]
            if k == L - 1:
                s -= s.max(axis=1, keepdims=True)
                o = np.exp(s)
                o /= o.sum(axis=1, keepdims=True)
            elif self.hidden is Activation.TANH:
                o = np.tanh(s)
            else:
                o = 1.0 / (1.0 + np.exp(-s))
            outs.append(o)
        e = t - outs[-1]  # softmax + cross-entropy: the top delta is e itself
        deltas = [None] * L
        deltas[-1] = e
        for k in range(L - 2, -1, -1):
            if self.rule is Rule.BP:
                j = deltas[k + 1] @ self.W[k + 1]
            elif self.rule is Rule.RBP:
                j = deltas[k + 1] @ self.fb[k]
            else:
                j = e @ self.fb[k]
            o = outs[k + 1]
            fprime = 1.0 - o * o if self.hidden is Activation.TANH else o * (1.0 - o)
            deltas[k] = j * fprime
        scale = lr / x.shape[0]
        for k in range(L):
            d = deltas[k] * scale
            self.W[k] += d.T @ outs[k]
            self.b[k] += d.sum(axis=0)
        return outs[-1]


def torch_net(Ws: list, bs: list, fbs: list, rule: Rule, hidden: Activation):
    """The same step in PyTorch (CPU); returns ``step(x, labels, lr)`` and the parameter list.

    BP is plain autograd. FA replaces each linear layer by a ``Function`` whose backward sends
    grad_output through the fixed matrix instead of W (BioTorch's FA layer). DFA taps the
    gradient at the output logits and injects it, through each hidden layer's own fixed matrix,
    at that layer's output, so that autograd multiplies it by f′; the linear layers above send
    nothing down. The loss is the batch-mean cross-entropy, whose gradient at the logits is
    −e / B; updates are plain SGD without momentum.
    """
    import torch
    import torch.nn.functional as F

    class LinearFeedback(torch.autograd.Function):
        """y = x Wᵀ + b; the backward sends grad_output through ``fb`` (None: sends nothing)."""

        @staticmethod
        def forward(ctx, x, W, b, fb):
            ctx.save_for_backward(x, fb)
            return torch.addmm(b, x, W.t())

        @staticmethod
        def backward(ctx, g):
            x, fb = ctx.saved_tensors
            gx = g @ fb if fb is not None and ctx.needs_input_grad[0] else None
            return gx, g.t() @ x, g.sum(0), None

    class Tap(torch.autograd.Function):
        """Identity that keeps the gradient at the logits for the DFA injections below."""

        @staticmethod
        def forward(ctx, s, store):
            ctx.store = store
            return s.view_as(s)

        @staticmethod
        def backward(ctx, g):
            ctx.store["g"] = g
            return g, None

    class Inject(torch.autograd.Function):
        """Identity whose backward replaces the incoming gradient by g_top @ fb (DFA)."""

        @staticmethod
        def forward(ctx, o, fb, store):
            ctx.fb, ctx.store = fb, store
            return o.view_as(o)

        @staticmethod
        def backward(ctx, _ignored):
            return ctx.store["g"] @ ctx.fb, None, None

    L = len(Ws)
    W = [torch.from_numpy(w).requires_grad_() for w in Ws]
    b = [torch.from_numpy(v).requires_grad_() for v in bs]
    fb = [torch.from_numpy(m) for m in fbs]
    params = W + b
    act = torch.tanh if hidden is Activation.TANH else torch.sigmoid
    store: dict = {}

    def step(x, labels, lr: float) -> None:
        h = x
        for k in range(L):
            if rule is Rule.BP:
                s = F.linear(h, W[k], b[k])
            elif rule is Rule.RBP:
                s = LinearFeedback.apply(h, W[k], b[k], fb[k - 1] if k else None)
            else:
                s = LinearFeedback.apply(h, W[k], b[k], None)
            if k < L - 1:
                h = act(s)
                if rule is Rule.SRBP:
                    h = Inject.apply(h, fb[k], store)
        if rule is Rule.SRBP:
            s = Tap.apply(s, store)
        F.cross_entropy(s, labels).backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-lr)
                p.grad = None

    return step, params


class GemmOnly:
    """Only the matrix products of one step, with its shapes and transposes, into fixed outputs."""

    def __init__(self, sizes: Sequence[int], rule: Rule, rng: np.random.Generator):
        def rand(*shape):
            return rng.standard_normal(shape, dtype=np.float32) * 0.1

        L = len(sizes) - 1
        self.rule = rule
        self.x = rand(BATCH, sizes[0])
        self.W = [rand(sizes[k + 1], sizes[k]) for k in range(L)]
        self.S = [np.empty((BATCH, sizes[k + 1]), np.float32) for k in range(L)]
        self.R = [rand(BATCH, sizes[k + 1]) for k in range(L)]
        self.J = [np.empty((BATCH, sizes[k + 1]), np.float32) for k in range(L - 1)]
        self.dW = [np.empty_like(w) for w in self.W]
        src = [sizes[-1] if rule is Rule.SRBP else sizes[k + 2] for k in range(L - 1)]
        self.M = [rand(src[k], sizes[k + 1]) for k in range(L - 1)]
        self.pre = [self.x, *self.S[:-1]]

    def __call__(self) -> None:
        for k, W in enumerate(self.W):
            np.matmul(self.pre[k], W.T, out=self.S[k])
        for k in range(len(self.J) - 1, -1, -1):
            src = self.R[-1] if self.rule is Rule.SRBP else self.R[k + 1]
            np.matmul(src, self.M[k], out=self.J[k])
        for k in range(len(self.W)):
            np.matmul(self.R[k].T, self.pre[k], out=self.dW[k])


# --- data, threads, checks ---------------------------------------------------------------------


def batches(kind: str, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``POOL`` minibatches (x (B, 784) float32, t (B, 10) float32 one-hot, labels (B,) int64)."""
    n = POOL * BATCH
    if kind == "mnist":
        from lpfa.data import load_idx

        x_all, y_all, _, _ = load_idx("mnist")
        x = x_all[:n].astype(np.float32) / np.float32(255)
        y = y_all[:n].astype(np.int64)
    else:
        x = rng.random((n, 784), dtype=np.float32)
        y = rng.integers(0, 10, n)
    t = np.eye(10, dtype=np.float32)[y]
    return [
        (
            np.ascontiguousarray(x[i : i + BATCH]),
            np.ascontiguousarray(t[i : i + BATCH]),
            np.ascontiguousarray(y[i : i + BATCH]),
        )
        for i in range(0, n, BATCH)
    ]


def check_same_step(net: NetSpec, rule: Rule, data, torch_ok: bool) -> float:
    """Largest difference of any weight change (hand, torch) from lpfa's, relative to its size."""
    lpfa_net = Network.build(run_config(net, rule))
    Ws, bs, _ = _params(lpfa_net)
    before = [w.copy() for w in Ws] + [v.copy() for v in bs]
    x, t, y = data[0]
    lpfa_net.step(x, t, 0.5)
    ref = [layer.W[0] for layer in lpfa_net.layers] + [layer.b[0] for layer in lpfa_net.layers]
    ref_delta = [r - p for r, p in zip(ref, before, strict=True)]
    hand = HandNet(*_params(Network.build(run_config(net, rule))), rule, net.hidden)
    hand.step(x, t, 0.5)
    results = [hand.W + hand.b]
    if torch_ok:
        import torch

        step, params = torch_net(*_params(Network.build(run_config(net, rule))), rule, net.hidden)
        step(torch.from_numpy(x), torch.from_numpy(y), 0.5)
        results.append([p.detach().numpy() for p in params])
    worst = 0.0
    for got in results:
        for g, p, d in zip(got, before, ref_delta, strict=True):
            worst = max(worst, float(np.abs((g - p) - d).max() / np.abs(d).max()))
    return worst


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Case:
    """One timed configuration: ``fn()`` does one step and processes ``samples`` member-samples."""

    name: str
    fn: Callable[[], object]
    samples: int
    flops: int


def cycling(fn: Callable, data: list, convert: Callable = lambda b: b) -> Callable[[], object]:
    """A no-argument step that walks through the minibatch pool."""
    pool = itertools.cycle([convert(b) for b in data])

    def call():
        return fn(*next(pool))

    return call


def minor_faults() -> int:
    """Minor page faults of this process so far (memory handed back by the OS and touched again)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def stepper(net) -> Callable:
    """``f(x, t, labels)`` doing one step of ``net`` (lpfa's Network or HandNet) at rate LR."""

    def step(x, t, _labels):
        return net.step(x, t, LR)

    return step


def measure(case: Case, seconds: float) -> tuple[float, float]:
    """Samples (or FLOPs) per second of ``case`` over about ``seconds``, and page faults per call.

    An untimed lead-in of a tenth of the time (at least one call) first re-warms the caches
    after the previous configuration and lets the other library's spinning threads go to sleep.
    """
    start = time.perf_counter()
    case.fn()
    while time.perf_counter() - start < 0.1 * seconds:
        case.fn()
    gc.disable()
    try:
        n = 0
        faults = minor_faults()
        start = time.perf_counter()
        while True:
            case.fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        faults = minor_faults() - faults
    finally:
        gc.enable()
    return n * case.samples / elapsed, faults / n


def warm_up(case: Case, seconds: float) -> None:
    """Run ``case`` for ``seconds`` (at least 3 steps) so that buffers and code paths are hot."""
    start = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - start < seconds:
        case.fn()
        n += 1


def build_groups(args, data, torch_ok: bool) -> list[list[Case]]:
    """The configurations, grouped so that those compared with each other are timed together."""
    groups: list[list[Case]] = []
    rng = np.random.default_rng(12345)
    if torch_ok:
        import torch

        def to_torch(b):
            return torch.from_numpy(b[0]), torch.from_numpy(b[2])

    for key in args.nets:
        net = NETS[key]
        for rname in args.rules:
            rule = RULES[rname]
            tag = f"{key}/{rname}"
            flops = step_flops(net.sizes, rule)
            lpfa_net = Network.build(run_config(net, rule))
            hand = HandNet(*_params(lpfa_net), rule, net.hidden)
            group = [
                Case(f"{tag}/lpfa", cycling(stepper(lpfa_net), data), BATCH, flops),
                Case(f"{tag}/hand", cycling(stepper(hand), data), BATCH, flops),
            ]
            if torch_ok:
                step, _ = torch_net(*_params(lpfa_net), rule, net.hidden)
                fn = cycling(lambda x, y, s=step: s(x, y, LR), data, to_torch)
                group.append(Case(f"{tag}/torch", fn, BATCH, flops))
            group.append(Case(f"{tag}/gemm", GemmOnly(net.sizes, rule, rng), BATCH, flops))
            groups.append(group)
        if "fa" in args.rules:
            seeds = tuple(range(N_ENSEMBLE))
            ens = Network.build(run_config(net, Rule.RBP, seeds))
            singles = [Network.build(run_config(net, Rule.RBP, (s,))) for s in seeds]

            def each(x, t, _y, nets=singles):
                for n in nets:
                    n.step(x, t, LR)

            flops = N_ENSEMBLE * step_flops(net.sizes, Rule.RBP)
            samples = N_ENSEMBLE * BATCH
            groups.append(
                [
                    Case(f"{key}/fa/ens8", cycling(stepper(ens), data), samples, flops),
                    Case(f"{key}/fa/singles8", cycling(each, data), samples, flops),
                ]
            )
    n = args.square
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    groups.append([Case("peak", lambda: np.matmul(a, b, out=c), 2 * n**3, 2 * n**3)])
    return groups


def run_blocks(groups: list[list[Case]], blocks: int, seconds: float):
    """Per case, its rate and page faults per call in each block.

    Block k rotates the order of the groups by k and the order inside each group by k.
    """
    rates: dict[str, list[float]] = {c.name: [] for g in groups for c in g}
    faults: dict[str, list[float]] = {c.name: [] for g in groups for c in g}
    for k in range(blocks):
        for group in rotated(groups, k):
            for case in rotated(group, k):
                rate, flt = measure(case, seconds)
                rates[case.name].append(rate)
                faults[case.name].append(flt)
        print(f"  block {k + 1}/{blocks} done", file=sys.stderr, flush=True)
    return rates, faults


# --- reporting ----------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return cell(values, si)


def _ratio(rates, a: str, b: str, target: float | None = None) -> str:
    if a not in rates or b not in rates:
        return "n/a"
    return ratio_cell(rates[a], rates[b], target=target)


def report(rates, faults, args, flops: dict[str, int]) -> str:
    """The markdown tables."""
    peak = rates["peak"]
    lines = [
        f"float32 GEMM peak ({args.square}² square, numpy matmul): "
        f"{statistics.median(peak) / 1e9:.1f} GFLOP/s "
        f"({min(peak) / 1e9:.1f}–{max(peak) / 1e9:.1f}) over {len(peak)} blocks",
        "",
        "Training samples/s at batch 100, float32: median over blocks (min–max). Ratios: median "
        "of the per-block ratios (min–max), ✓/✗ against the project's target. GEMM only: the "
        "step's matrix products alone, in numpy.",
        "",
        "| net | rule | lpfa | hand numpy | PyTorch | GEMM only | lpfa/hand (≥0.9) "
        "| lpfa/torch | lpfa/GEMM only | MFLOP/step | lpfa GFLOP/s | lpfa % of peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in args.nets:
        for rname in args.rules:
            tag = f"{key}/{rname}"
            lp = rates[f"{tag}/lpfa"]
            fl = flops[f"{tag}/lpfa"]
            frac = [r / BATCH * fl / p for r, p in zip(lp, peak, strict=True)]
            torch_col = _spread(rates[f"{tag}/torch"]) if f"{tag}/torch" in rates else "unavailable"
            lines.append(
                f"| {NETS[key].label} | {RULE_LABEL[RULES[rname]]} | {_spread(lp)} "
                f"| {_spread(rates[f'{tag}/hand'])} | {torch_col} "
                f"| {_spread(rates[f'{tag}/gemm'])} "
                f"| {_ratio(rates, f'{tag}/lpfa', f'{tag}/hand', TARGET_HAND)} "
                f"| {_ratio(rates, f'{tag}/lpfa', f'{tag}/torch', TARGET_TORCH[key])} "
                f"| {_ratio(rates, f'{tag}/lpfa', f'{tag}/gemm')} "
                f"| {fl / 1e6:.1f} | {statistics.median(lp) / BATCH * fl / 1e9:.1f} "
                f"| {100 * statistics.median(frac):.0f}% |"
            )
    lines += [
        "",
        f"lpfa/torch targets: ≥{TARGET_TORCH['wide']} on 784-1000-10, "
        f"≥{TARGET_TORCH['baldi']} on 784-100⁴-10.",
    ]
    if "fa" in args.rules:
        lines += [
            "",
            "Ensemble of 8 seeds (one Network, E = 8) against 8 single-seed Networks stepped in "
            "turn, FA, in member-samples/s (8 × batch per step):",
            "",
            "| net | rule | ensemble-8 | 8 singles | ensemble/singles (≥1.3) "
            "| ensemble % of peak |",
            "|---|---|---|---|---|---|",
        ]
        for key in args.nets:
            ens = rates[f"{key}/fa/ens8"]
            fl = flops[f"{key}/fa/ens8"] / (N_ENSEMBLE * BATCH)
            frac = [r * fl / p for r, p in zip(ens, peak, strict=True)]
            lines.append(
                f"| {NETS[key].label} | FA | {_spread(ens)} "
                f"| {_spread(rates[f'{key}/fa/singles8'])} "
                f"| {_ratio(rates, f'{key}/fa/ens8', f'{key}/fa/singles8', TARGET_ENSEMBLE)} "
                f"| {100 * statistics.median(frac):.0f}% |"
            )
    faulting = {k: statistics.median(v) for k, v in faults.items() if statistics.median(v) >= 10}
    lines.append("")
    if faulting:
        worst = ", ".join(f"{k} {v:.0f}" for k, v in sorted(faulting.items()))
        lines.append(f"Page faults per step (median, only where ≥ 10): {worst}.")
    else:
        lines.append("No configuration page-faulted (< 10 minor faults per step).")
    return "\n".join(lines)


# run in a fresh process, so that its ru_maxrss is the peak of one case alone
_PEAK_CASE = """
import resource, sys
sys.path.insert(0, {here!r})
import numpy as np
import bench_train as b
from lpfa.training import evaluate
net = b.Network.build(b.run_config(b.NETS[{key!r}], b.Rule.RBP, tuple(range({members}))))
data = b.batches("random", np.random.default_rng(0))
for x, t, _ in data[:5]:
    net.step(x, t, b.LR)
x, t, y = (np.concatenate(a) for a in zip(*data))
evaluate(net, x, t, y, net.model.loss)
try:  # this process's own high-water mark (ru_maxrss would include the parent's, from the fork)
    with open("/proc/self/status") as f:
        print(next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory(nets: Sequence[str]) -> str:
    """Peak resident memory, as lines of the report: of this process (``ru_maxrss``), and of a
    fresh process per net and ensemble size (E = 1 and ``N_ENSEMBLE``, FA; its own VmHWM, since
    its ``ru_maxrss`` on Linux counts the parent's pages from the fork) that builds the
    network, takes 5 steps and evaluates the 2000 pooled examples; per member, the growth from
    E = 1 to ``N_ENSEMBLE`` over the added members (what one more seed costs)."""
    if resource is None:
        return "peak RSS: not measured (no resource module on this system)"
    import subprocess

    here = str(Path(__file__).resolve().parent)
    mib = 1024  # ru_maxrss is in KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / mib
    lines = [
        f"Peak RSS: this benchmark {own:.0f} MiB; a fresh process per case (imports, build, "
        "5 FA steps, evaluation of 2000 examples):"
    ]
    for key in nets:
        peaks = {}
        for members in (1, N_ENSEMBLE):
            code = _PEAK_CASE.format(here=here, key=key, members=members)
            run = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
            if run.returncode == 0:
                peaks[members] = int(run.stdout.split()[-1]) / mib
        if len(peaks) < 2:
            lines.append(f"  {NETS[key].label}: not measured (the case failed)")
            continue
        per = (peaks[N_ENSEMBLE] - peaks[1]) / (N_ENSEMBLE - 1)
        lines.append(
            f"  {NETS[key].label}: E = 1 {peaks[1]:.0f} MiB, E = {N_ENSEMBLE} "
            f"{peaks[N_ENSEMBLE]:.0f} MiB, {per:.1f} MiB per member"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, help="time per configuration per block (default 0.5)")
    p.add_argument("--blocks", type=int, help="round-robin blocks (default 10)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per configuration (default 1)")
    p.add_argument("--quick", action="store_true", help="0.1 s × 2 blocks: a smoke test only")
    p.add_argument(
        "--data",
        choices=("random", "mnist"),
        default="random",
        help="random: inputs U[0, 1), random one-hot targets; mnist: the first 2000 images",
    )
    p.add_argument("--nets", nargs="+", choices=tuple(NETS), default=list(NETS))
    p.add_argument("--rules", nargs="+", choices=tuple(RULES), default=list(RULES))
    p.add_argument("--square", type=int, help="size n of the n×n peak GEMM (default 2048)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    p.add_argument(
        "--no-mallopt",
        action="store_true",
        help="leave glibc's malloc thresholds alone (lpfa.threads.hold_freed_memory)",
    )
    p.add_argument("--threads", type=int, help="BLAS and PyTorch threads (default: LPFA_THREADS)")
    p.add_argument("--json", type=Path, help="also write every block's rates here")
    args = p.parse_args(argv)
    if args.threads is not None or threads_from_env() is not None:
        set_threads(args.threads, hold_memory=not args.no_mallopt)
    quick = args.quick
    args.seconds = args.seconds or (0.1 if quick else 0.5)
    args.blocks = args.blocks or (2 if quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (0.1 if quick else 1.0)
    args.square = args.square or (1024 if quick else 2048)

    mallopt = heap_settings() if args.no_mallopt else hold_freed_memory()
    threads = blas_info()["threads"]
    torch_ok = False
    torch_version = "left out (--no-torch)" if args.no_torch else "not installed"
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
            torch_ok = True
            torch_version = f"{torch.__version__} ({torch.get_num_threads()} threads)"
        except ImportError:
            pass
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {blas_line()}; "
        f"torch {torch_version}; data: {args.data}; "
        f"malloc thresholds {'held (lpfa.threads.HEAP)' if mallopt else 'glibc default'}"
    )
    if blas_info()["blas_kernel_warning"]:  # OPENBLAS_CORETYPE below what the CPU supports
        print(f"warning: {blas_info()['blas_kernel_warning']}")

    data = batches(args.data, np.random.default_rng(0))
    worst = 0.0
    for key in args.nets:
        for rname in args.rules:
            d = check_same_step(NETS[key], RULES[rname], data, torch_ok)
            worst = max(worst, d)
            if d > 1e-3:
                print(f"check FAILED: {key}/{rname}: weight changes differ from lpfa's by {d:.2e}")
    if worst > 1e-3:
        return 1
    others = "hand and torch steps equal" if torch_ok else "hand step equals"
    print(f"check: {others} lpfa's (largest relative difference {worst:.1e})")

    groups = build_groups(args, data, torch_ok)
    cases = [c for g in groups for c in g]
    flops = {c.name: c.flops for c in cases}
    # each slice overruns by its lead-in (a tenth) and its last step
    seconds = len(cases) * (1.15 * args.blocks * args.seconds + args.warmup)
    print(
        f"{len(cases)} configurations × {args.blocks} blocks × {args.seconds} s, "
        f"+ {args.warmup} s warm-up each: about {seconds:.0f} s",
        flush=True,
    )
    for case in cases:
        warm_up(case, args.warmup)
    started = time.perf_counter()
    rates, faults = run_blocks(groups, args.blocks, args.seconds)
    print(f"measured for {time.perf_counter() - started:.0f} s\n")
    print(report(rates, faults, args, flops))
    print(peak_memory(args.nets))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "blas": blas_info(),
            "threads": threads,
            "torch": torch_version,
            "data": args.data,
            "batch": BATCH,
            "seconds": args.seconds,
            "blocks": args.blocks,
            "square": args.square,
            "mallopt": mallopt,
        }
        record = {"meta": meta, "flops": flops, "rates": rates, "faults_per_step": faults}
        args.json.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
