"""How the cost of a training step grows with width, depth and ensemble size, and the law it fits.

Three sweeps, all trained with FA (rule ``rbp``) at batch 100, float32, tanh hidden, softmax
output and cross-entropy, on random data (inputs U[0, 1), random one-hot targets):

- width: 784-N-10, N = 100, 250, 500, 1000, 2000, 4000, E = 1;
- depth: 784-100×d-10, d = 1, 2, 4, 6, 8, E = 1;
- ensemble: E = 1, 2, 4, 8, 16, 32 seeds in one ``Network``, on 784-1000-10 and on Baldi et
  al.'s 784-100×4-10.

Per configuration it reports member-samples per second (E × batch per step), the step's FLOPs
(matrix products only, counted analytically by ``bench_train.step_flops``), its FLOP rate as a
fraction of a large square float32 GEMM measured in the same blocks, and memory: the bytes of
the network's arrays (what ``tracemalloc`` sees allocated by ``Network.build`` and kept) and the
peak during one step on top of them (the step's temporaries), both measured once per
configuration before timing. numpy reports its array buffers to ``tracemalloc``; the BLAS's own
work buffers and the interpreter are not counted.

The sweeps run one after the other; inside a sweep every configuration (and the GEMM) is timed
once per block for ``--seconds``, in an order rotated from block to block (``harness``), and the
median over blocks is reported with its min–max. Then it fits one straight line, time per step
t = a + b·F, over all configurations (least squares on the relative error of the medians: the
step times span three orders of magnitude), and the same line over the single nets (E = 1) and
over the ensembles separately, printing a, b, 1/b (the effective GFLOP/s), R², how far the line
misses, and each configuration's law/measured ratio. BLAS threads are set as ``lpfa train``
sets them (``--threads``, else ``LPFA_THREADS``, else 1). The BLAS line and, where OpenBLAS runs
a kernel below what the CPU supports (``OPENBLAS_CORETYPE``), a warning are printed first.

Runtime: about 2 minutes with the defaults (6 blocks × 0.5 s of 26 cases); ``--quick``
about 15 seconds, a smoke test only.

    python benchmarks/bench_scaling.py [--quick] [--seconds S] [--blocks K] [--square N]
                                       [--sweeps width depth ensemble] [--threads N]
                                       [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_train import (
    BATCH,
    Case,
    NetSpec,
    batches,
    cycling,
    fix_malloc_thresholds,
    measure,
    run_config,
    step_flops,
    stepper,
    warm_up,
)
from harness import blas_line, cell, rotated, si

from lpfa.config import Activation, Rule
from lpfa.network import Network
from lpfa.threads import DEFAULT_THREADS, ENV_VAR, blas_info, set_threads

RULE = Rule.RBP  # FA
WIDTHS = (100, 250, 500, 1000, 2000, 4000)
DEPTHS = (1, 2, 4, 6, 8)
ENSEMBLES = (1, 2, 4, 8, 16, 32)
ENSEMBLE_NETS = ((784, 1000, 10), (784, 100, 100, 100, 100, 10))


@dataclass(frozen=True)
class Config:
    """One configuration of a sweep: layer sizes and ensemble size E."""

    sweep: str
    sizes: tuple[int, ...]
    members: int

    @property
    def label(self) -> str:
        hidden = self.sizes[1:-1]
        if len(hidden) > 1 and len(set(hidden)) == 1:
            return f"{self.sizes[0]}-{hidden[0]}×{len(hidden)}-{self.sizes[-1]}"
        return "-".join(map(str, self.sizes))

    @property
    def name(self) -> str:
        return f"{self.sweep}/{self.label}/E{self.members}"

    @property
    def flops(self) -> int:
        """FLOPs of one step of all E members (matrix products only)."""
        return self.members * step_flops(self.sizes, RULE, BATCH)

    def build(self) -> Network:
        spec = NetSpec(self.label, self.sizes, Activation.TANH)
        return Network.build(run_config(spec, RULE, tuple(range(self.members))))


def sweeps(names) -> dict[str, list[Config]]:
    """The configurations of each sweep asked for, in sweep order."""
    out = {
        "width": [Config("width", (784, n, 10), 1) for n in WIDTHS],
        "depth": [Config("depth", (784, *[100] * d, 10), 1) for d in DEPTHS],
        "ensemble": [Config("ensemble", s, e) for s in ENSEMBLE_NETS for e in ENSEMBLES],
    }
    return {k: v for k, v in out.items() if k in names}


def memory(cfg: Config, data) -> tuple[int, int]:
    """Bytes of ``cfg``'s network arrays, and the peak above them during one step.

    ``tracemalloc`` traces what numpy allocates; the arrays kept after ``Network.build`` (and
    after one step, which may allocate buffers it keeps) are the first number; the highest
    traced memory during a second step, minus what was allocated before it, is the second.
    """
    x, t, _ = data[0]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        net = cfg.build()
        net.step(x, t, 0.01)
        kept = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        net.step(x, t, 0.01)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    del net
    return kept, peak


def load() -> str:
    """The 1-minute load average, which says whether other processes shared the cores."""
    try:
        return f"load average {os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):  # not on Windows
        return "load average unknown"


def run_sweep(cases: list[Case], blocks: int, seconds: float) -> dict[str, list[float]]:
    """Per case, its rate in each block; block k times the cases in the order rotated by k."""
    rates: dict[str, list[float]] = {c.name: [] for c in cases}
    for k in range(blocks):
        for case in rotated(cases, k):
            rates[case.name].append(measure(case, seconds)[0])
    return rates


def fit(points: list[tuple[float, float]]) -> dict[str, float]:
    """t = a + b·F through (F, t) points by least squares on the relative error (a, b minimise
    Σ ((a + b·F − t) / t)², so that the small nets count as much as the large ones); returns a,
    b, R² of t, 1/b in GFLOP/s, and the median and largest of |law / measured − 1|."""
    F = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    A = np.stack([np.ones_like(F), F], axis=1) / t[:, None]
    (a, b), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    law = a + b * F
    total = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float(((t - law) ** 2).sum()) / total if total > 0 else float("nan")
    miss = np.abs(law / t - 1)
    return {
        "a": float(a),
        "b": float(b),
        "r2": r2,
        "gflops": 1e-9 / b if b > 0 else float("nan"),
        "median_miss": float(np.median(miss)),
        "worst_miss": float(miss.max()),
    }


def law_line(name: str, law: dict[str, float], n: int) -> str:
    return (
        f"- {name} ({n} configurations): t = {law['a'] * 1e3:.3f} ms + F × "
        f"{law['b'] * 1e12:.2f} ps/FLOP, i.e. {law['gflops']:.1f} GFLOP/s effective; "
        f"R² = {law['r2']:.3f}, |law/measured − 1| median {100 * law['median_miss']:.0f}%, "
        f"largest {100 * law['worst_miss']:.0f}%"
    )


def report(configs, rates, peak, mem, args) -> tuple[str, dict]:
    """The markdown table, the fitted laws and the record of them."""
    steps = {c.name: [c.members * BATCH / r for r in rates[c.name]] for c in configs}
    med = {c.name: statistics.median(steps[c.name]) for c in configs}
    points = [(c.flops, med[c.name]) for c in configs]
    laws = {"all": fit(points)}
    singles = [c for c in configs if c.members == 1]
    ensembles = [c for c in configs if c.members > 1]
    if len(singles) >= 3:
        laws["E = 1"] = fit([(c.flops, med[c.name]) for c in singles])
    if len(ensembles) >= 3:
        laws["E > 1"] = fit([(c.flops, med[c.name]) for c in ensembles])
    law = laws["all"]
    lines = [
        f"float32 GEMM ({args.square}² square, numpy matmul), per sweep: "
        + "; ".join(f"{s} {cell([p / 1e9 for p in v], '.1f')} GFLOP/s" for s, v in peak.items()),
        "",
        f"FA (rbp), batch {BATCH}, float32, random data; {args.blocks} blocks × {args.seconds} s; "
        "median (min–max) over blocks. MFLOP/step: matrix products of all E members. "
        "% of GEMM: block by block. Memory: network arrays, and the peak above them in one step "
        "(tracemalloc). law/measured: the all-configuration line's step time over the measured "
        "median.",
        "",
        "| sweep | net | E | MFLOP/step | ms/step | member-samples/s | GFLOP/s | % of GEMM "
        "| arrays MiB | step peak MiB | law/measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        frac = [c.flops / s / p for s, p in zip(steps[c.name], peak[c.sweep], strict=True)]
        kept, top = mem[c.name]
        predicted = law["a"] + law["b"] * c.flops
        lines.append(
            f"| {c.sweep} | {c.label} | {c.members} | {c.flops / 1e6:,.1f} "
            f"| {cell([s * 1e3 for s in steps[c.name]], '.3g')} "
            f"| {cell(rates[c.name], si)} | {c.flops / med[c.name] / 1e9:.1f} "
            f"| {100 * statistics.median(frac):.0f}% | {kept / 2**20:,.1f} | {top / 2**20:,.1f} "
            f"| {predicted / med[c.name]:.2f} |"
        )
    ratios = {c.name: (law["a"] + law["b"] * c.flops) / med[c.name] for c in configs}
    worst = max(ratios, key=lambda k: abs(np.log(ratios[k])))
    lines += [
        "",
        "Time per step t against its FLOPs F, least squares on the relative error of the medians:",
    ]
    groups = {"all": configs, "E = 1": singles, "E > 1": ensembles}
    lines += [law_line(k, v, len(groups[k])) for k, v in laws.items()]
    lines += [
        f"- largest miss of the all-configuration line: {worst} (law/measured "
        f"{ratios[worst]:.2f}).",
        "",
        "A run's training time ≈ epochs × ⌊n_train / batch⌋ × (a + b·F), F = E × FLOPs per "
        "member-step; a sweep's is the sum over its runs.",
    ]
    record = {
        "laws": laws,
        "median_step_s": med,
        "law_over_measured": ratios,
    }
    return "\n".join(lines), record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, help="time per configuration per block (default 0.5)")
    p.add_argument("--blocks", type=int, help="round-robin blocks (default 6)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per configuration (default 0.3)")
    p.add_argument("--quick", action="store_true", help="0.05 s × 2 blocks: a smoke test only")
    p.add_argument("--square", type=int, help="size n of the n×n GEMM (default 1024)")
    p.add_argument(
        "--sweeps",
        nargs="+",
        choices=("width", "depth", "ensemble"),
        default=["width", "depth", "ensemble"],
    )
    p.add_argument(
        "--threads",
        type=int,
        help=f"BLAS threads (default: ${ENV_VAR}, else {DEFAULT_THREADS}, as lpfa train)",
    )
    p.add_argument("--json", type=Path, help="also write every block's rates and the fits here")
    args = p.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds or (0.05 if quick else 0.5)
    args.blocks = args.blocks or (2 if quick else 6)
    args.warmup = args.warmup if args.warmup is not None else (0.0 if quick else 0.3)
    args.square = args.square or (512 if quick else 1024)

    threads = set_threads(args.threads)  # as lpfa train: --threads, else LPFA_THREADS, else 1
    mallopt = fix_malloc_thresholds()
    load0 = load()
    info = blas_info()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {blas_line()}; "
        f"malloc thresholds {'fixed' if mallopt else 'glibc default'}"
    )
    if info["blas_kernel_warning"]:
        print(f"warning: {info['blas_kernel_warning']}")

    data = batches("random", np.random.default_rng(0))
    rng = np.random.default_rng(12345)
    n = args.square
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    gemm = Case("peak", lambda: np.matmul(a, b, out=c), 2 * n**3, 2 * n**3)

    plan = sweeps(args.sweeps)
    configs = [cfg for group in plan.values() for cfg in group]
    # each slice overruns by its lead-in (a tenth) and its last step
    guess = (len(configs) + len(plan)) * (1.15 * args.blocks * args.seconds + args.warmup)
    print(
        f"{len(configs)} configurations in {len(plan)} sweep(s) + the GEMM in each, "
        f"× {args.blocks} blocks × {args.seconds} s: at least {guess:.0f} s",
        flush=True,
    )
    started = time.perf_counter()
    memory(configs[0], data)  # the first measurement also sees one-time allocations
    mem = {cfg.name: memory(cfg, data) for cfg in configs}
    rates: dict[str, list[float]] = {}
    peak: dict[str, list[float]] = {}
    for sweep, group in plan.items():
        cases = [Case(cfg.name, cycling(stepper(cfg.build()), data), cfg.members * BATCH,
                      cfg.flops) for cfg in group]  # fmt: skip
        cases.append(gemm)
        for case in cases:
            warm_up(case, args.warmup)
        got = run_sweep(cases, args.blocks, args.seconds)
        peak[sweep] = got.pop("peak")
        rates.update(got)
        del cases
        print(f"  sweep {sweep} done", file=sys.stderr, flush=True)
    print(f"measured for {time.perf_counter() - started:.0f} s; {load()} (at start: {load0})\n")
    text, record = report(configs, rates, peak, mem, args)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "blas": info,
            "threads": threads,
            "batch": BATCH,
            "rule": RULE.value,
            "seconds": args.seconds,
            "blocks": args.blocks,
            "square": args.square,
            "mallopt": mallopt,
            "load": [load0, load()],
        }
        configs_out = {
            cfg.name: {"sizes": cfg.sizes, "members": cfg.members, "flops": cfg.flops}
            for cfg in configs
        }
        out = {
            "meta": meta,
            "configs": configs_out,
            "rates": rates,
            "gemm_flops_per_s": peak,
            "memory_bytes": {k: {"arrays": v[0], "step_peak": v[1]} for k, v in mem.items()},
            **record,
        }
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
