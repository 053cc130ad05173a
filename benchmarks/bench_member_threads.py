"""Threads over members against threads inside each product: is a member-parallel ensemble faster?

The speed issue's ensemble target (8 members ≥ 1.5× the throughput of 8 single runs on the
Baldi net, ≥ 1.1× on 784-1000-10) is missed with today's layout, where an ensemble of E members
is one network whose products run on all BLAS threads. On a 2-core machine a small product
parallelises poorly, so this benchmark measures the layout lpfa does not have yet: the ensemble
split into one sub-ensemble per core, each stepped in its own Python thread with one BLAS
thread (numpy releases the GIL inside BLAS and its element-wise loops).

Configurations, all FA (rule ``rbp``), 8 members, batch 100, float32, one shared minibatch:

- ``ensemble-8``: one network of 8 members, ``--threads`` BLAS threads (today's layout);
- ``8 singles``: 8 one-member networks one after another, ``--threads`` BLAS threads (the
  baseline of every ratio);
- ``member threads``: ``--threads`` networks of 8 / threads members, one Python thread each,
  one BLAS thread per product;
- ``sub-ensembles in series``: the same networks one after another on one BLAS thread (what the
  threads would give without any overlap).

Timed in interleaved blocks (harness.py); per configuration the median throughput (samples/s,
8 members × 100 examples a step) with min–max over blocks, and per block the ratio to the
8 singles of the same block. Nothing here changes lpfa; it measures whether the layout is worth
building.

    python benchmarks/bench_member_threads.py [--nets baldi wide] [--blocks 10] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from bench_train import LR, NETS, run_config
from harness import blas_line, cell, interleaved, ratios, si
from threadpoolctl import ThreadpoolController

from lpfa.config import Rule
from lpfa.network import Network
from lpfa.threads import set_threads

MEMBERS = 8
BATCH = 100


def rate(step, data, seconds: float) -> float:
    """Samples per second of ``step(x, t)`` over ``seconds`` (after 3 warm-up steps)."""
    for x, t in data[:3]:
        step(x, t)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x, t = data[n % len(data)]
        step(x, t)
        n += 1
    return MEMBERS * BATCH * n / (time.perf_counter() - t0)


def cases(key: str, threads: int, pool: ThreadPoolExecutor) -> dict:
    """The four steps of one net: name -> (``f(x, t)``, BLAS threads it runs with)."""
    net = NETS[key]
    if MEMBERS % threads:
        raise SystemExit(f"error: --threads={threads}: must divide the {MEMBERS} members")
    per = MEMBERS // threads
    ens = Network.build(run_config(net, Rule.RBP, tuple(range(MEMBERS))))
    singles = [Network.build(run_config(net, Rule.RBP, (s,))) for s in range(MEMBERS)]
    parts = [
        Network.build(run_config(net, Rule.RBP, tuple(range(per * i, per * (i + 1)))))
        for i in range(threads)
    ]

    def ensemble(x, t):
        ens.step(x, t, LR)

    def each(x, t):
        for n in singles:
            n.step(x, t, LR)

    def member_threads(x, t):
        for f in [pool.submit(n.step, x, t, LR) for n in parts]:
            f.result()

    def in_series(x, t):
        for n in parts:
            n.step(x, t, LR)

    return {
        "ensemble-8": (ensemble, threads),
        "8 singles": (each, threads),
        "member threads": (member_threads, 1),
        "sub-ensembles in series": (in_series, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", default=["baldi", "wide"], choices=sorted(NETS))
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2, help="BLAS threads, and member threads")
    args = p.parse_args(argv)
    set_threads(args.threads)
    print(blas_line())
    rng = np.random.default_rng(0)
    eye = np.eye(10, dtype=np.float32)
    data = [
        (rng.random((BATCH, 784), dtype=np.float32), eye[rng.integers(0, 10, BATCH)])
        for _ in range(10)
    ]
    pool = ThreadPoolExecutor(args.threads)
    blas = ThreadpoolController()  # found once: a limit is then a library call, not a scan

    def timed(f, n_blas: int) -> float:
        with blas.limit(limits=n_blas, user_api="blas"):
            return rate(f, data, args.seconds)

    lines = [
        "| net | layout | samples/s, median (min–max) | ratio to 8 singles, median (min–max) |",
        "|---|---|---|---|",
    ]
    for key in args.nets:
        steps = cases(key, args.threads, pool)
        got = interleaved(
            {name: (lambda c=c: timed(*c)) for name, c in steps.items()},
            args.blocks,
            progress=True,
        )
        for name, rates in got.items():
            lines.append(
                f"| {NETS[key].label} | {name} | {cell(rates, si)} "
                f"| {cell(ratios(rates, got['8 singles']))} |"
            )
    pool.shutdown()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
