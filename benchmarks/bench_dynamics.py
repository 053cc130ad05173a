"""The expected (mean-field) dynamics of a Baldi-net-sized linear network: right-hand side and a
1 000-time-unit integration.

Issue target: `lpfa.dynamics.ExpectedDynamics` integrates 784-100×4-10 with linear units for
1 000 time units (η × updates) in under 10 s on the CPU. The right-hand side is lpfa's own
training step on a design batch of N_0 + 1 = 785 rows; the baseline, timed in the same
interleaved blocks, is the same expectation written out by hand (A_k = W_k A_{k−1}, errors
D_k = C_kᵀ D_{k+1}, E[ΔW_k] = D_k Σ A_{k−1}ᵀ + d_k μ_{k−1}ᵀ), checked equal to lpfa's before any
timing. Inputs are isotropic with E‖x‖² = 1 (Σ_xx = I/N_0, images normalised to unit norm)
and the target a random linear map; float64, one member, RBP (random feedback, Glorot).

The integration is stiffness-limited: with explicit Runge-Kutta (solve_ivp's RK45, the only kind
usable at 10⁵ state variables — the implicit methods need the dense Jacobian) the step size is
bounded by the fastest mode, so the evaluation count grows linearly with the time span. The
script prints it, with the time per evaluation, so the cost of any span can be read off.

    python benchmarks/bench_dynamics.py [--blocks 10] [--t-end 1000] [--rtol 1e-3]
"""

import argparse
import sys
import time

import numpy as np
from harness import blas_line, cell, interleaved, ratio_cell

from lpfa import config as C
from lpfa.dynamics import ExpectedDynamics, moment_design
from lpfa.network import Network
from lpfa.threads import set_threads

SIZES = (784, 100, 100, 100, 100, 10)


def build(rule: str) -> Network:
    cfg = C.from_dict(
        C.RunConfig,
        {
            "seeds": [0],
            "model": {
                "sizes": list(SIZES),
                "hidden": "linear",
                "output": "linear",
                "loss": "squared",
                "dtype": "float64",
            },
            "channel": {"rule": rule},
        },
    )
    return Network.build(cfg)


def hand_rhs(net: Network, sxx: np.ndarray, M: np.ndarray) -> np.ndarray:
    """E[Δθ]/η for a linear network written out by hand (member 0), in ExpectedDynamics' order."""
    Ws = [layer.W[0] for layer in net.layers]
    bs = [layer.b[0] for layer in net.layers]
    A, mu = [np.eye(sxx.shape[0])], [np.zeros(sxx.shape[0])]
    for W, b in zip(Ws, bs, strict=True):
        A.append(W @ A[-1])
        mu.append(W @ mu[-1] + b)
    D, d = M - A[-1], -mu[-1]
    grads = []
    for k in range(len(Ws), 0, -1):
        grads.append((D @ sxx @ A[k - 1].T + np.outer(d, mu[k - 1]), d))
        if k > 1:
            back = Ws[k - 1] if (k, k - 1) not in net.channel.feedback else None
            Ck = back if back is not None else net.channel.feedback[(k, k - 1)].C[0]
            D, d = Ck.T @ D, Ck.T @ d
    return np.concatenate([np.concatenate([g.ravel(), db]) for g, db in grads[::-1]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--evals", type=int, default=5, help="right-hand sides per case per block")
    p.add_argument("--t-end", type=float, default=1000.0)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    print(blas_line())
    rng = np.random.default_rng(0)
    n = SIZES[0]
    sxx = np.eye(n) / n
    M = rng.uniform(-1.0, 1.0, (SIZES[-1], n))
    ed = {
        rule: ExpectedDynamics(build(rule), *moment_design(sxx, M @ sxx)) for rule in ("bp", "rbp")
    }
    for rule, e in ed.items():
        y = e.state()
        lpfa_rhs, hand = e.rhs(0.0, y), hand_rhs(e.net, sxx, M)
        err = np.abs(lpfa_rhs - hand).max() / np.abs(hand).max()
        print(f"{rule}: lpfa's right-hand side equals the hand-written one to {err:.1e} (relative)")
        if err > 1e-9:
            print("  MISMATCH: the timing below would compare different things", file=sys.stderr)
            return 1

    def timed(f):
        def run():
            start = time.perf_counter()
            for _ in range(args.evals):
                f()
            return (time.perf_counter() - start) / args.evals

        return run

    cases = {}
    for rule, e in ed.items():
        y = e.state()
        cases[f"{rule} lpfa"] = timed(lambda e=e, y=y: e.rhs(0.0, y))
        cases[f"{rule} hand"] = timed(lambda e=e: hand_rhs(e.net, sxx, M))
    res = interleaved(cases, args.blocks, progress=True)
    print(f"\n{args.blocks} blocks × {args.evals} evaluations; ms per right-hand side\n")
    print("| rule | lpfa (simulator step on the design) | hand-written expectation | lpfa / hand |")
    print("|---|---|---|---|")
    for rule in ed:
        a, b = res[f"{rule} lpfa"], res[f"{rule} hand"]
        ms = [v * 1e3 for v in a], [v * 1e3 for v in b]
        print(f"| {rule} | {cell(ms[0])} | {cell(ms[1])} | {ratio_cell(a, b)} |")

    e = ed["rbp"]
    y0 = e.state()
    start = time.perf_counter()
    traj = e.solve(args.t_end, t_eval=[0.0, args.t_end], rtol=args.rtol, atol=args.rtol * 1e-3)
    wall = time.perf_counter() - start
    loss = e.loss(traj.y[0])[0], e.loss(traj.y[-1])[0]
    print(
        f"\nRBP, {args.t_end:g} time units, RK45 rtol={args.rtol:g}: {wall:.1f} s, {traj.nfev} "
        f"evaluations ({wall / traj.nfev * 1e3:.1f} ms each), success={traj.success}, "
        f"loss {loss[0]:.4g} → {loss[1]:.4g}; target < 10 s: "
        + ("met" if wall < 10 else f"missed by {wall / 10:.1f}×")
    )
    e.set_state(y0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
