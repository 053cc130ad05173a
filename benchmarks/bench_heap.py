"""Time per training step with freed memory held in the process, against glibc's default heap.

``lpfa.threads.set_threads`` keeps freed memory in the process (``hold_freed_memory``: glibc's
``mallopt`` thresholds fixed), so that a step's large temporaries are not handed back to the
kernel and faulted in again on the next step. This measures what that is worth: each
configuration steps in a fresh process of its own (the heap layout is the one a training run
has), once with the thresholds held and once with glibc's defaults, in interleaved round-robin
blocks; per configuration the median step time with min-max over blocks, minor page faults per
step, and per block the ratio default / held.

Configurations: Baldi et al.'s 784-100-100-100-100-10 net, batch 100, float32, SRBP, one member
unless said: the ideal step; device physics on every array (Gokmen & Vlasov 2016 pulsed update
with cycle-to-cycle noise, read noise 0.005; the issue-15 target of ``bench_devices.py``); 3-bit
log-quantized errors; 3-bit log-quantized per-example updates with 3 members (eq. 19 as written,
Table 1's update rows, as their sweep runs them); an 8-member RBP ensemble.

    python benchmarks/bench_heap.py [--blocks 5] [--seconds 1.0] [--cases ideal,devices,...]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from harness import blas_line, cell, ratios, rotated

DEVICE = ["preset='gokmen2016_rpu'", "scale=0.1", "read_noise=0.005"]
SRBP1 = ["channel.rule='srbp'", "seeds=[0]"]
CASES = {
    "ideal": SRBP1,
    "devices": SRBP1 + [f"{role}.device.{d}" for role in ("model", "channel") for d in DEVICE],
    "error3": [*SRBP1, "channel.error_format='log:bits=3,alpha=0.125'"],
    "update3": [
        "channel.rule='srbp'",
        "seeds=[0,1,2]",
        "channel.update_format='log:bits=3,alpha=0.0015625,flush_to_zero=False'",
    ],
    "ensemble8": ["channel.rule='rbp'", "seeds=[0,1,2,3,4,5,6,7]"],
}
LABELS = {
    "ideal": "ideal step, E = 1",
    "devices": "device physics on every array (GV 2016 + read noise), E = 1",
    "error3": "3-bit quantized errors, E = 1",
    "update3": "3-bit quantized per-example updates, E = 3 (as experiments/baldi2018_fig8_update)",
    "ensemble8": "RBP, E = 8",
}
CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "baldi2018_mnist.toml")


def child(case: str, hold: bool, seconds: float) -> dict:
    """Step one configuration for about ``seconds`` in this process; its time and faults."""
    from lpfa import config as C
    from lpfa.network import Network
    from lpfa.threads import heap_settings, set_threads

    set_threads(1, hold_memory=hold)
    cfg = C.load(CONFIG, CASES[case])
    net = Network.build(cfg, np)
    rng = np.random.default_rng(0)
    # MNIST-like inputs: about 20 % of the pixels lit
    x = (rng.random((100, 784)) * (rng.random((100, 784)) < 0.2)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 100)]
    lead = time.perf_counter()
    while time.perf_counter() - lead < seconds / 5:  # warm: the heap reaches its steady layout
        net.step(x, t, 0.01)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < 3:
        net.step(x, t, 0.01)
        n += 1
    step = (time.perf_counter() - start) / n
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n
    return {"step": step, "faults": faults, "heap": heap_settings(), "blas": blas_line()}


def run_child(case: str, hold: bool, seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--hold", str(int(hold))]
    out = subprocess.run(
        [*cmd, "--seconds", str(seconds)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.0, help="timed stepping per process")
    p.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    p.add_argument("--child", choices=tuple(CASES), help=argparse.SUPPRESS)
    p.add_argument("--hold", type=int, choices=(0, 1), default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, bool(args.hold), args.seconds)))
        return 0
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"--cases: {', '.join(unknown)} not among {', '.join(CASES)}")
    runs = [(c, h) for c in cases for h in (True, False)]
    res: dict = {r: [] for r in runs}
    for k in range(args.blocks):
        for r in rotated(runs, k):
            res[r].append(run_child(*r, args.seconds))
        print(f"  block {k + 1}/{args.blocks} done", file=sys.stderr, flush=True)
    print(res[runs[0]][0]["blas"] + ", Baldi net, batch 100, float32, numpy")
    print("| configuration | heap | step (µs), median (min–max) | page faults per step | "
          "default / held, per block |")  # fmt: skip
    print("|---|---|---|---|---|")
    for c in cases:
        held, dflt = ([v["step"] for v in res[(c, h)]] for h in (True, False))
        for h, ts in ((True, held), (False, dflt)):
            faults = cell([v["faults"] for v in res[(c, h)]], ".0f")
            heap = "held" if res[(c, h)][0]["heap"] else "glibc default"
            r = cell(ratios(dflt, held), ".2f") if not h else ""
            us = cell([1e6 * t for t in ts], ".0f")
            print(f"| {LABELS[c]} | {heap} | {us} | {faults} | {r} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
