"""Throughput of the log quantizer (Baldi et al. 2018, eq. 19) against np.copyto and eq. 19 as a
plain numpy expression, on 1e7 float32 values.

The machines this runs on switch between two speed levels every 10-60 s, so configurations are
never timed one after another: each round times a short block of every configuration, in an order
that rotates from round to round, and ratios are taken within a round (same speed level) before
their median is reported.

    python benchmarks/bench_quant.py            # about 30 s
    python benchmarks/bench_quant.py --seconds 10 --n 1000000

GB/s counts the bytes read and written (8 per float32 element) for every configuration, so the
ratios are throughput ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
from harness import blas_line, interleaved

from lpfa.quant import LogFormat, quantize
from lpfa.testing.oracles import log_reference


def naive(x: np.ndarray, bits: int, alpha: float) -> np.ndarray:
    """Eq. 19 as written, in x's dtype: what one would type without thinking about speed."""
    a = x.dtype.type(alpha)
    return a * np.sign(x) * np.exp2(np.rint(np.clip(np.log2(np.abs(x / a)), 1 - bits, 0)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000_000, help="float32 values (default 1e7)")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--alpha", type=float, default=2.0**-3, help="the paper's error scale 2^-3")
    p.add_argument("--seconds", type=float, default=30.0, help="time budget for the rounds")
    p.add_argument("--block", type=int, default=3, help="calls per configuration per round")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    # Error-like signals: Gaussian around the scale, a quarter exact zeros (inactive ReLUs).
    x = (rng.standard_normal(args.n) * args.alpha).astype(np.float32)
    x[rng.random(args.n) < 0.25] = 0
    fmt = LogFormat(bits=args.bits, alpha=args.alpha)
    fmt_div = LogFormat(bits=args.bits, alpha=args.alpha * 1.7)  # not a power of two: divides
    fmt_flush = LogFormat(bits=args.bits, alpha=args.alpha, flush_to_zero=True)
    out = np.empty_like(x)

    with np.errstate(all="ignore"):
        ref = log_reference(x, args.bits, args.alpha)
        ref_flush = log_reference(x, args.bits, args.alpha, True)
    if not np.array_equal(quantize(x, fmt), ref) or not np.array_equal(
        quantize(x, fmt_flush), ref_flush
    ):
        print("quantize differs from the eq. 19 reference: not timing a wrong result")
        return 1

    configs: dict[str, Callable[[], object]] = {
        "copyto (prealloc)": lambda: np.copyto(out, x),
        "x.copy() (alloc)": lambda: x.copy(),
        "quantize out=": lambda: quantize(x, fmt, out=out),
        "quantize (alloc)": lambda: quantize(x, fmt),
        "quantize alpha*1.7": lambda: quantize(x, fmt_div, out=out),
        "quantize flush": lambda: quantize(x, fmt_flush, out=out),
        "naive eq. 19": lambda: naive(x, args.bits, args.alpha),
    }
    names = list(configs)
    start = time.perf_counter()
    for f in configs.values():  # warm up: page in buffers, load code paths
        with np.errstate(all="ignore"):
            f()
    one_pass = time.perf_counter() - start

    def timed(f: Callable[[], object]) -> Callable[[], float]:
        """Median seconds of ``args.block`` calls of ``f``."""

        def median_time() -> float:
            block = []
            with np.errstate(all="ignore"):
                for _ in range(args.block):
                    t0 = time.perf_counter()
                    f()
                    block.append(time.perf_counter() - t0)
            return float(np.median(block))

        return median_time

    rounds = max(3, round(args.seconds / (args.block * one_pass)))
    times = interleaved({name: timed(f) for name, f in configs.items()}, rounds)

    gbytes = 2 * x.nbytes / 1e9
    print(blas_line())
    print(f"n={args.n:.0e} float32, bits={args.bits}, alpha={args.alpha:g}, {rounds} rounds")
    print(f"{'configuration':<20} {'GB/s median':>11} {'(min - max)':>17}")
    for name in names:
        gbs = gbytes / np.asarray(times[name])
        print(f"{name:<20} {np.median(gbs):11.2f} ({gbs.min():6.2f} - {gbs.max():6.2f})")

    def ratio(a: str, b: str) -> str:
        r = np.asarray(times[b]) / np.asarray(times[a])  # throughput of a over throughput of b
        return f"{np.median(r):6.3f}x ({r.min():.3f} - {r.max():.3f})"

    print("throughput ratios, per round, median (min - max):")
    pairs = [
        ("quantize out=", "copyto (prealloc)"),
        ("quantize (alloc)", "x.copy() (alloc)"),
        ("quantize (alloc)", "copyto (prealloc)"),
        ("quantize alpha*1.7", "copyto (prealloc)"),
        ("quantize flush", "copyto (prealloc)"),
        ("quantize out=", "naive eq. 19"),
        ("naive eq. 19", "copyto (prealloc)"),
    ]
    for a, b in pairs:
        print(f"  {a + ' / ' + b:<40} {ratio(a, b)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
