"""Member threads against threads inside each product: is a member-parallel ensemble faster?

The speed issue's ensemble target is 8 members ≥ 1.5× the throughput of 8 single runs on the
Baldi net and ≥ 1.1× on 784-1000-10. An ensemble of E members is one network whose products run
on all BLAS threads; on a 2-core machine a small product parallelises poorly. ``lpfa train
--member-threads N`` (:class:`lpfa.network.MemberThreads`) instead splits the ensemble into N
sub-ensembles, each stepped in its own Python thread on views of the network's arrays with one
BLAS thread (numpy releases the GIL inside BLAS and its element-wise loops).

Configurations, all FA (rule ``rbp``), 8 members, batch 100, float32, one shared minibatch:

- ``ensemble-8``: one network of 8 members, ``--threads`` BLAS threads;
- ``8 singles``: 8 one-member networks one after another, ``--threads`` BLAS threads (the
  baseline of every ratio);
- ``member threads``: one 8-member network stepped by ``MemberThreads`` with ``--threads``
  threads, one BLAS thread each.

Then the same three as whole runs of ``lpfa.training.train`` (``--train N`` examples, one
epoch, the nets' configs in configs/: evaluation on the 10 000 test images and the angle
diagnostics included, data loaded once): one 8-seed run at ``--threads`` BLAS threads, the same
with ``member_threads=--threads``, and 8 one-seed runs one after another.

Timed in interleaved blocks (harness.py); per configuration the median throughput
(member-samples/s: 8 members × 100 examples a step, or 8 × N an epoch) with min–max over
blocks, and per block the ratio to the 8 singles of the same block.

    python benchmarks/bench_member_threads.py [--nets baldi wide] [--blocks 10] [--seconds 0.5]
        [--train 20000] [--train-blocks 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from bench_train import LR, NETS, run_config
from harness import blas_line, cell, interleaved, ratios, si
from threadpoolctl import ThreadpoolController

from lpfa.config import Rule, load
from lpfa.data import load_cached
from lpfa.network import MemberThreads, Network
from lpfa.threads import set_threads
from lpfa.training import train

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


def cases(key: str, threads: int) -> dict:
    """The three steps of one net: name -> (``f(x, t)``, BLAS threads it runs with)."""
    net = NETS[key]
    seeds = tuple(range(MEMBERS))
    ens = Network.build(run_config(net, Rule.RBP, seeds))
    singles = [Network.build(run_config(net, Rule.RBP, (s,))) for s in seeds]
    parallel = MemberThreads(Network.build(run_config(net, Rule.RBP, seeds)), threads)

    def ensemble(x, t):
        ens.step(x, t, LR)

    def each(x, t):
        for n in singles:
            n.step(x, t, LR)

    def member_threads(x, t):
        parallel.step(x, t, LR)

    return {
        "ensemble-8": (ensemble, threads),
        "8 singles": (each, threads),
        "member threads": (member_threads, 1),
    }


CONFIGS = {"baldi": "configs/baldi2018_mnist.toml", "wide": "configs/lillicrap2016_mnist.toml"}


def training_runs(key: str, threads: int, n_train: int) -> dict:
    """The three whole runs of one net: name -> (``f()`` returning seconds, BLAS threads)."""
    root = Path(__file__).resolve().parents[1]
    sets = ["train.epochs=1", f"data.n_train={n_train}"]
    cfg = load(root / CONFIGS[key], [*sets, f"seeds={list(range(MEMBERS))}"])
    data = load_cached(cfg.data, cfg.model.sizes, cfg.model.dtype)

    def timed(**kw):
        start = time.perf_counter()
        train(cfg, data=data, progress=False, **kw)
        return time.perf_counter() - start

    def singles():
        start = time.perf_counter()
        for s in range(MEMBERS):
            train(dataclasses.replace(cfg, seeds=(s,)), data=data, progress=False)
        return time.perf_counter() - start

    return {
        "ensemble-8": (timed, threads),
        "8 singles": (singles, threads),
        "member threads": (lambda: timed(member_threads=threads), 1),
    }


def table_rows(key: str, got: dict) -> list[str]:
    """One table row per layout of net ``key``: its rates and its ratios to the 8 singles."""
    return [
        f"| {NETS[key].label} | {name} | {cell(rates, si)} "
        f"| {cell(ratios(rates, got['8 singles']))} |"
        for name, rates in got.items()
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", nargs="+", default=["baldi", "wide"], choices=sorted(NETS))
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2, help="BLAS threads, and member threads")
    p.add_argument("--train", type=int, default=20000, help="examples of the whole runs (0: none)")
    p.add_argument("--train-blocks", type=int, default=3)
    args = p.parse_args(argv)
    set_threads(args.threads)
    print(blas_line())
    rng = np.random.default_rng(0)
    eye = np.eye(10, dtype=np.float32)
    data = [
        (rng.random((BATCH, 784), dtype=np.float32), eye[rng.integers(0, 10, BATCH)])
        for _ in range(10)
    ]
    blas = ThreadpoolController()  # found once: a limit is then a library call, not a scan

    def timed(f, n_blas: int) -> float:
        with blas.limit(limits=n_blas, user_api="blas"):
            return rate(f, data, args.seconds)

    lines = [
        "| net | layout | samples/s, median (min–max) | ratio to 8 singles, median (min–max) |",
        "|---|---|---|---|",
    ]
    for key in args.nets:
        steps = cases(key, args.threads)
        got = interleaved(
            {name: (lambda c=c: timed(*c)) for name, c in steps.items()},
            args.blocks,
            progress=True,
        )
        lines += table_rows(key, got)
    if args.train:
        lines += [
            "",
            f"Whole runs (`train`, 8 seeds, 1 epoch of {args.train:,} examples, evaluation and "
            "angles included):",
            "",
            "| net | layout | member-samples/s, median (min–max) "
            "| ratio to 8 singles, median (min–max) |",
            "|---|---|---|---|",
        ]
        samples = MEMBERS * args.train
        for key in args.nets:
            runs = training_runs(key, args.threads, args.train)

            def run(f, n_blas):
                with blas.limit(limits=n_blas, user_api="blas"):
                    return samples / f()

            got = interleaved(
                {name: (lambda c=c: run(*c)) for name, c in runs.items()},
                args.train_blocks,
                progress=True,
            )
            lines += table_rows(key, got)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
