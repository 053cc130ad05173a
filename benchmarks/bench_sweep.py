"""The same 8-run sweep packed (one batched run of 8 seeds) against unpacked (8 runs of 1 seed),
and packed on a process pool (one pack per worker).

The first two go through :func:`lpfa.sweep.run_sweep` with the in-process executor (this
process's BLAS threads), the third with ``executor="process"`` and one worker per core, which
splits the 8 seeds into one pack per worker (:meth:`lpfa.sweep.spec.Sweep.packs`, ``spread``),
each worker on one BLAS thread; each into a fresh SQLite
store, so the time includes what a sweep costs beyond training: building the network, the
per-epoch test evaluation, and writing the results. The sweep is one configuration × 8 seeds
(default: Baldi et al.'s 784-100-100-100-100-10 tanh net with RBP on the first 2 000 MNIST
training images, 1 epoch, batch 100, test on 1 000 images, no angle measurement).

Reported: member-samples per second (8 × epochs × training examples over the sweep's wall time)
of each variant, the median over blocks with its min–max, and the ratios packed / unpacked and
pool / packed taken block by block (measured seconds apart), median with min–max. Blocks are
interleaved round-robin: block k runs every variant, in an order rotated by k, after one
untimed warm-up block. Nothing is asserted about timing.

Runtime: about 1.5 minutes with the defaults (5 blocks); ``--quick`` (2 blocks, 500 examples)
takes about 15 seconds and its numbers are only a smoke test.

    python benchmarks/bench_sweep.py [--quick] [--blocks K] [--n-train N] [--epochs E]
                                     [--rule rbp] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from harness import blas_line, cell, interleaved, ratios

from lpfa.sweep import parse_spec, run_sweep
from lpfa.threads import blas_info, usable_cores

SEEDS = list(range(8))


def spec(args: argparse.Namespace, pack: bool) -> dict:
    return {
        "name": "bench",
        "base": "configs/baldi2018_mnist.toml",
        "seeds": SEEDS,
        "pack": pack,
        "set": {
            "data.n_train": args.n_train,
            "data.n_test": args.n_test,
            "train.epochs": args.epochs,
            "train.angle_every": None,
            "channel.rule": args.rule,
        },
    }


def time_sweep(args: argparse.Namespace, variant: dict, root: Path) -> float:
    """Wall seconds of one whole sweep into a fresh store (``variant``: pack, executor,
    workers)."""
    sweep = parse_spec(spec(args, variant["pack"]), root=root)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run_sweep(
            sweep,
            Path(tmp) / "bench.sqlite",
            executor=variant["executor"],
            workers=variant["workers"],
            progress=False,
        )
        seconds = time.perf_counter() - t0
    if out.done != len(SEEDS):
        raise SystemExit(f"the sweep did not finish: {out}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 blocks, 500 examples (smoke test)")
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rule", default="rbp")
    p.add_argument("--json", help="write every block's numbers here")
    args = p.parse_args(argv)
    if args.quick:
        args.blocks, args.n_train, args.n_test = 2, 500, 500
    root = Path(__file__).resolve().parents[1]
    samples = len(SEEDS) * args.epochs * args.n_train
    cores = usable_cores()
    inline = {"executor": "inline", "workers": None}
    variants = {
        f"packed (1 run × 8 seeds, {blas_info()['threads']} BLAS threads)": {
            "pack": True, **inline
        },
        "unpacked (8 runs × 1 seed)": {"pack": False, **inline},
        f"packed on a pool of {cores} (a pack of {-(-8 // cores)} seeds per worker)": {
            "pack": True, "executor": "process", "workers": cores
        },
    }  # fmt: skip
    for variant in variants.values():  # warm-up: data cache, BLAS threads, imports
        time_sweep(args, variant, root)
    cases = {
        name: functools.partial(lambda v: samples / time_sweep(args, v, root), variant)
        for name, variant in variants.items()
    }
    rates = interleaved(cases, args.blocks)
    names = list(variants)
    per_block = ratios(rates[names[0]], rates[names[1]])
    pool = ratios(rates[names[2]], rates[names[0]])
    print(
        f"## sweep packing, {platform.node()}, {args.blocks} blocks, 8 seeds × {args.epochs} "
        f"epoch(s) × {args.n_train} examples, rule {args.rule}\n"
    )
    print("| variant | member-samples/s, median (min–max) |\n|---|---|")
    for name in names:
        print(f"| {name} | {cell(rates[name], ',.0f')} |")
    print(f"\npacked / unpacked (per block): {cell(per_block, '.2f')}")
    print(f"pool / packed (per block): {cell(pool, '.2f')}")
    print(blas_line())
    if args.json:
        out = {"rates": rates, "ratios": per_block, "pool_ratios": pool}
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
