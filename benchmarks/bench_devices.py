"""Time per training step with device physics on every array, against the ideal step.

Issue 15 target: a step with pulsed update and read noise on every array (forward arrays W and
feedback arrays C; BP's transposed read too) takes at most 1.5× the ideal step, Baldi et al.'s
784-100-100-100-100-10 net, batch 100, float32, one member, on the CPU (and on CuPy where a GPU
is present: ``--backend cupy``). The other rows split the cost by effect.

Configurations are timed in interleaved round-robin blocks (the machine's speed jumps between
two levels every 10-60 s), each block rotating the order; per configuration the median step time
with min-max over blocks, and per block the ratio to the ideal step of the same rule measured in
the same block.

The row "ideal + the target's draws alone" is the floor of the target row: the ideal step
followed by the generator calls the target step makes (same calls and sizes: pulse rounding,
cycle-to-cycle and read noise; on numpy the raw 64-bit draws behind ``lpfa.backend.uniform16``
and ``normal16``, 16 bits a value), with no arithmetic on them. The normals' table look-up and
the uniforms' conversion count as arithmetic, as do the pulse and noise passes over W.

    python benchmarks/bench_devices.py [--blocks 8] [--seconds 0.4] [--backend numpy] [--seeds 1]
"""

import argparse
import dataclasses
import functools
import sys

import numpy as np
from harness import blas_line, cell, interleaved, ratios, step_time

from lpfa import config as C
from lpfa.backend import resolve, runtime_rng
from lpfa.network import Network
from lpfa.threads import set_threads

GV = {"preset": "gokmen2016_rpu", "scale": 0.1}
VARIANTS = {
    "ideal": None,
    "pulsed + read noise (target)": {**GV, "read_noise": 0.005},
    "read noise only": {"read_noise": 0.005},
    "pulsed, no c2c, no read noise": {"dw_min": 0.0016, "scale": 0.1},
    "pulsed (GV 2016, c2c + d2d)": GV,
    "soft bounds (ReRAM) + read noise": {"preset": "reram_gong2018", "scale": 0.1,
                                         "read_noise": 0.005},
}  # fmt: skip
TARGET = "pulsed + read noise (target)"
FLOOR = "ideal + the target's draws alone"


def recorded_draws(net, x, t) -> list:
    """The runtime draws (attribute path, args, kwargs) one training step of ``net`` makes."""
    rng = net.random  # lpfa.backend.RuntimeRandom: forwards every draw to ``_current``
    real, calls = rng._current, []

    class Recorder:  # records every call on the generator or below it (bit_generator.random_raw)
        def __init__(self, target, path=()):
            self._target, self._path = target, path

        def __getattr__(self, name):
            attr, path = getattr(self._target, name), (*self._path, name)
            if not callable(attr):
                return Recorder(attr, path)

            def draw(*args, **kw):
                calls.append((path, args, kw))
                return attr(*args, **kw)

            return draw

    rng._current = Recorder(real)
    try:
        net.step(x, t, 0.01)
    finally:
        rng._current = real
    return calls


def floor_time(net, draws, gen, x, t, seconds: float, lr: float = 0.01) -> float:
    """Seconds per ideal step of ``net`` followed by ``draws`` made on ``gen``."""
    import time

    from lpfa.backend import to_numpy

    n, start = 0, time.perf_counter()
    while True:
        net.step(x, t, lr)
        for path, args, kw in draws:
            functools.reduce(getattr, path, gen)(*args, **kw)
        n += 1
        if time.perf_counter() - start >= seconds:
            to_numpy(net.layers[0].W[0, 0, :1])
            return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--seconds", type=float, default=0.4)
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    p.add_argument("--rules", default="bp,rbp,srbp")
    p.add_argument("--seeds", type=int, default=1, help="ensemble members E (default 1)")
    args = p.parse_args(argv)
    set_threads(1)
    xp = resolve(args.backend)
    base = C.RunConfig(
        model=C.ModelConfig(sizes=(784, 100, 100, 100, 100, 10)), seeds=tuple(range(args.seeds))
    )
    rng = np.random.default_rng(0)
    # MNIST-like inputs: about 20 % of the pixels lit
    x = (rng.random((100, 784)) * (rng.random((100, 784)) < 0.2)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    x, t = xp.asarray(x), xp.asarray(t)
    nets = {}
    for rule in args.rules.split(","):
        for name, dev in VARIANTS.items():
            d = None if dev is None else C.from_dict(C.DeviceConfig, dev)
            cfg = dataclasses.replace(
                base,
                model=dataclasses.replace(base.model, device=d),
                channel=C.ChannelConfig(rule=C.Rule(rule), device=d),
            )
            nets[(rule, name)] = Network.build(cfg, xp)
    for net in nets.values():  # warm up
        step_time(net, x, t, 0.1)
    cases = {k: functools.partial(step_time, net, x, t, args.seconds) for k, net in nets.items()}
    gen = runtime_rng(0, xp)
    for rule in args.rules.split(","):
        draws = recorded_draws(nets[(rule, TARGET)], x, t)
        ideal = nets[(rule, "ideal")]
        cases[(rule, FLOOR)] = functools.partial(floor_time, ideal, draws, gen, x, t, args.seconds)
    times = interleaved(cases, args.blocks)
    print(blas_line() + f", backend {args.backend}, E = {args.seeds}")
    print("| rule | arrays | step (µs), median (min–max) | ratio to ideal, median (min–max) |")
    print("|---|---|---|---|")
    rules = args.rules.split(",")
    for k in sorted(times, key=lambda k: rules.index(k[0])):  # each rule's rows together
        ts = times[k]
        us = cell([1e6 * v for v in ts], ".0f")
        r = ratios(ts, times[(k[0], "ideal")])
        mark = ""
        if k[1] == TARGET:
            mark = " ✓ ≤ 1.5" if sorted(r)[len(r) // 2] <= 1.5 else " ✗ > 1.5"
        print(f"| {k[0]} | {k[1]} | {us} | {cell(r, '.2f')}{mark} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
