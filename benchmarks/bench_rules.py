"""Time per training step of every rule of the credit-assignment zoo next to RBP's.

Baldi et al.'s 784-100-100-100-100-10 net, batch 100, float32, numpy, one member, random inputs
U[0, 1) and one-hot targets. Each rule's named setting (``lpfa audit --rules``: sign symmetry
uSF / frSF / brSF, Kolen-Pollack, direct Kolen-Pollack, weight mirror, DRTP, sign-DFA, binary
DFA, low-rank feedback of rank 2) is one ``Network.step``; the weight mirror's step includes its
mirror phase (one per step), which is also timed alone (``Channel.mirror`` on one minibatch of
noise). BP, RBP and SRBP are the references; the ratio is to RBP's step of the same block.

Configurations are timed in interleaved round-robin blocks, each block rotating the order; per
configuration the median with min-max over blocks. The BLAS library, core type and threads are
printed with the numbers.

    python benchmarks/bench_rules.py [--blocks 10] [--seconds 0.5] [--rules usf,kp,...]
"""

import argparse
import functools
import sys
import time

import numpy as np
from harness import blas_line, cell, interleaved, ratio_cell, step_time

from hwmodels.audit import variant
from hwmodels.cli import RULE_VARIANTS
from lpfa import config as C
from lpfa.network import Network
from lpfa.threads import set_threads

ZOO = ["usf", "frsf", "brsf", "kp", "dkp", "wm", "drtp", "sdfa", "bdfa", "lowrank_rbp",
       "lowrank_srbp"]  # fmt: skip
REFERENCES = ["bp", "rbp", "srbp"]


def mirror_time(net: Network, n: int, seconds: float) -> float:
    """Mean seconds per mirror phase (noise for every chained pair, W reads, ΔC) alone."""
    ch = net.channel
    k, start = 0, time.perf_counter()
    while True:
        ch._steps = 0  # the schedule's counter: ratio 1 runs one phase per call
        ch.mirror(net, 0.01 / n, n)
        k += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / k


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--rules", default=",".join(ZOO), help="comma list of zoo settings")
    args = p.parse_args(argv)
    set_threads(1)
    base = C.RunConfig(model=C.ModelConfig(sizes=(784, 100, 100, 100, 100, 10)))
    rng = np.random.default_rng(0)
    x = rng.random((100, 784), dtype=np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    names = [*REFERENCES, *(r.strip() for r in args.rules.split(",") if r.strip())]
    nets = {name: Network.build(variant(base, RULE_VARIANTS[name])) for name in names}
    for net in nets.values():  # warm up
        step_time(net, x, t, 0.2)
    cases = {k: functools.partial(step_time, net, x, t, args.seconds) for k, net in nets.items()}
    if "wm" in nets:
        cases["wm: mirror phase alone"] = functools.partial(
            mirror_time, nets["wm"], x.shape[0], args.seconds
        )
    times = interleaved(cases, args.blocks)
    print(blas_line())
    print(f"{args.blocks} blocks × {args.seconds} s per configuration")
    print()
    print("| rule | step (µs), median (min–max) | ratio to RBP, median (min–max) |")
    print("|---|---|---|")
    for k, ts in times.items():
        us = cell([1e6 * v for v in ts], ".0f")
        print(f"| {k} | {us} | {ratio_cell(ts, times['rbp'], '.3f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
