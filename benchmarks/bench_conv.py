"""Time of the convolutional array's operations on one core: the forward read (im2col + GEMM),
the local update, the transposed read (GEMM + col2im) and 3×3 stride-2 max-pooling, on a batch of
128 32×32 images with 64 output channels and 5×5 kernels, next to the read's GEMM alone.

    python benchmarks/bench_conv.py               # about 1 min
    python benchmarks/bench_conv.py --blocks 1    # one timing of each (~15 s)

Each block times every case once, in an order rotated by one per block (see harness.py); the
table gives median (min–max) seconds and each case's time over the GEMM's, per block.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from harness import blas_line, cell, interleaved, ratio_cell

from lpfa.conv import ConvArray, MaxPool
from lpfa.threads import set_threads


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cases(c_in: int, batch: int, side: int, rng) -> dict:
    """The cases of one layer: C_in → 64 channels, 5×5, stride 1, 'same', float32."""
    taps = c_in * 25
    W = (rng.standard_normal((1, 64, taps)) / np.sqrt(taps)).astype(np.float32)
    conv = ConvArray(W, np.zeros((1, 64), np.float32), in_shape=(c_in, side, side), kernel=5)
    pool = MaxPool(conv.out_shape, 3, 2, "same")
    x = rng.standard_normal((batch, c_in, side, side)).astype(np.float32)
    post = conv.read(x) * np.float32(1e-3)
    y, arg = pool.forward(post)
    cols = conv.patches(x)
    tag = f"{c_in}→64"

    def update():
        conv.read(x)  # the update uses the patches the read kept, when they fit in one chunk
        conv.update(post, x, 1e-3)

    return {
        f"{tag} GEMM alone": lambda: timed(lambda: W[0] @ cols),
        f"{tag} read": lambda: timed(lambda: conv.read(x)),
        f"{tag} read + update": lambda: timed(update),
        f"{tag} transport": lambda: timed(lambda: conv.transport(post)),
        f"{tag} max-pool forward": lambda: timed(lambda: pool.forward(post)),
        f"{tag} max-pool backward": lambda: timed(lambda: pool.backward(y, arg)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--side", type=int, default=32)
    args = p.parse_args(argv)
    set_threads(1)
    rng = np.random.default_rng(0)
    print(blas_line())
    print(f"batch {args.batch}, {args.side}×{args.side} images, 5×5 kernels, float32\n")
    print("| case | seconds | / GEMM alone |\n| --- | --- | --- |")
    for c_in in (3, 64):
        times = interleaved(cases(c_in, args.batch, args.side, rng), args.blocks)
        gemm = next(v for k, v in times.items() if k.endswith("GEMM alone"))
        for name, ts in times.items():
            print(f"| {name} | {cell(ts, '.3f')} | {ratio_cell(ts, gemm)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
