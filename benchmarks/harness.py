"""What every benchmark shares: round-robin blocks, median (min–max) cells, per-block ratios, and
the line that records the BLAS a measurement ran on.

These machines' speed jumps between two levels every 10-60 s, so a benchmark times each
configuration once per block, in an order rotated by one every block, and compares
configurations block by block: a ratio of two times taken seconds apart survives a jump that a
ratio of two medians taken minutes apart does not.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = ["blas_line", "cell", "interleaved", "ratio_cell", "ratios", "rotated", "si"]


def rotated(items: Sequence[T], k: int) -> list[T]:
    """``items`` starting at index ``k`` (modulo its length): block k's order."""
    if not items:
        return []
    k %= len(items)
    return [*items[k:], *items[:k]]


def interleaved(
    cases: Mapping[str, Callable[[], float]], blocks: int, *, progress: bool = False
) -> dict[str, list[float]]:
    """Call every case once per block, block k in the order rotated by k.

    Each case returns its own measurement (seconds, a rate, …); the result holds, per case, one
    value per block, in block order, so that ``ratios`` pairs values of the same block.
    """
    names = list(cases)
    out: dict[str, list[float]] = {name: [] for name in names}
    for k in range(blocks):
        for name in rotated(names, k):
            out[name].append(cases[name]())
        if progress:
            print(f"  block {k + 1}/{blocks} done", file=sys.stderr, flush=True)
    return out


def si(v: float) -> str:
    """A rate for people: ``12.3k`` from 10⁴ on, else the whole number."""
    return f"{v / 1e3:,.1f}k" if v >= 1e4 else f"{v:,.0f}"


def cell(xs: Sequence[float], fmt: str | Callable[[float], str] = ".2f") -> str:
    """``median (min–max)`` of ``xs``, each formatted by ``fmt`` (a format spec or a function)."""
    f = fmt if callable(fmt) else (lambda v: f"{v:{fmt}}")
    return f"{f(statistics.median(xs))} ({f(min(xs))}–{f(max(xs))})"


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """``a[k] / b[k]`` for every block k."""
    return [x / y for x, y in zip(a, b, strict=True)]


def ratio_cell(
    a: Sequence[float], b: Sequence[float], fmt: str = ".2f", target: float | None = None
) -> str:
    """The per-block ratios a/b as a cell, marked ✓ where the median reaches ``target``."""
    r = ratios(a, b)
    text = cell(r, fmt)
    if target is not None:
        text += " ✓" if statistics.median(r) >= target else f" ✗ <{target}"
    return text


def blas_line() -> str:
    """The BLAS library and version, its threading, kernel, thread count, OPENBLAS_CORETYPE and
    usable cores: what every benchmark prints with its numbers."""
    from lpfa.threads import blas_info, usable_cores

    info = blas_info()
    return (
        f"BLAS {info['blas']} {info['blas_version']} ({info['blas_threading']}, kernel "
        f"{info['blas_architecture']}), {info['threads']} thread(s), "
        f"OPENBLAS_CORETYPE={info['openblas_coretype']}, {usable_cores()} usable core(s)"
    )


def step_time(net, x, t, seconds: float, lr: float = 0.01) -> float:
    """Mean seconds per training step of ``net`` on (x, t) over a window of about ``seconds``;
    on a device the queue is waited for (one tiny read) before the clock stops."""
    import time

    from lpfa.backend import to_numpy

    n, start = 0, time.perf_counter()
    while True:
        net.step(x, t, lr)
        n += 1
        if time.perf_counter() - start >= seconds:
            to_numpy(net.layers[0].W[0, 0, :1])
            return (time.perf_counter() - start) / n
