"""Time per training step with the channel variants that must cost nothing extra.

Issue targets: sparse feedback at n = 1 costs no more per step than dense (the channel is the
same matrix product, sparsity is in the values); a step with the error channel quantized (eq. 19,
3 bits, as written and with ``flush_to_zero``) takes at most 1.15× the unquantized step. Also
timed, with no target: the per-example update channel (§5.2), whose 1-bit step as written is a
product of signs and whose other steps form every example's outer product. Baldi
et al.'s 784-100-100-100-100-10 net, batch 100, float32, numpy, one member.

Configurations are timed in interleaved round-robin blocks (the machine's speed jumps between
two levels every 10-60 s), each block rotating the order; per configuration the median step
time with min-max over blocks, and per block the ratio to the plain step of the same rule.

    python benchmarks/bench_channel.py [--blocks 10] [--seconds 0.5]
"""

import argparse
import dataclasses
import functools
import sys

import numpy as np
from harness import blas_line, cell, interleaved, ratio_cell, step_time

from lpfa import config as C
from lpfa.network import Network

VARIANTS = {
    "dense": {},
    "sparse-1": {"feedback": "bernoulli", "feedback_nonzeros": 1.0},
    "error 3-bit": {"error_format": "log:bits=3,alpha=0.125"},
    "error 3-bit, flush": {"error_format": "log:bits=3,alpha=0.125,flush_to_zero=True"},
    # each example's update quantized (the §5.2 rows): at 1 bit as written a product of signs,
    # with flush_to_zero (same levels) and at 3 bits every example's outer product
    "update 1-bit": {"update_format": "log:bits=1,alpha=0.0015625"},
    "update 1-bit, flush": {"update_format": "log:bits=1,alpha=0.0015625,flush_to_zero=True"},
    "update 3-bit": {"update_format": "log:bits=3,alpha=0.0015625"},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--seconds", type=float, default=0.5)
    args = p.parse_args(argv)
    base = C.RunConfig(model=C.ModelConfig(sizes=(784, 100, 100, 100, 100, 10)))
    rng = np.random.default_rng(0)
    x = rng.random((100, 784), dtype=np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    nets = {}
    for rule in ("rbp", "srbp"):
        for name, kw in VARIANTS.items():
            ch = C.from_dict(C.ChannelConfig, {"rule": rule, **kw})
            nets[(rule, name)] = Network.build(dataclasses.replace(base, channel=ch))
    for net in nets.values():  # warm up
        step_time(net, x, t, 0.2)
    cases = {k: functools.partial(step_time, net, x, t, args.seconds) for k, net in nets.items()}
    times = interleaved(cases, args.blocks)
    print(blas_line())
    print("| rule | channel | step (µs), median (min–max) | ratio to dense, median (min–max) |")
    print("|---|---|---|---|")
    for k, ts in times.items():
        us = cell([1e6 * v for v in ts], ".0f")
        print(f"| {k[0]} | {k[1]} | {us} | {ratio_cell(ts, times[(k[0], 'dense')], '.3f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
