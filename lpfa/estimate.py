"""``lpfa train --estimate``: a run's time and memory, from a short calibration, before it runs.

The run's network is built from its config (its own seeds, on its backend) and stepped a few
times on random inputs and targets of the run's shapes; nothing is loaded, trained or written,
and the run's random streams are not touched (a run builds its network afresh from its seeds).
The time per step is the median of the calibration steps after one warm-up step, each with the
training loop's own work around it (the minibatch gathered by index, its loss and accuracy).
Evaluation (the test set once before training and after every epoch) is estimated from the time
of a forward pass of one minibatch, per example; the alignment diagnostics from one timed call
on a probe batch of the run's size. Memory is :func:`lpfa.training.memory_estimate`.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

from lpfa.config import RunConfig

__all__ = ["Estimate", "calibrate", "estimate", "estimate_text"]

#: Seconds the calibration steps may take, after the warm-up step (at least one step is timed).
BUDGET_S = 1.5

#: Most calibration steps timed.
MAX_STEPS = 50

#: Forward passes timed for the evaluation estimate.
FORWARDS = 3

# inputs and targets of the calibration come from this seed, never from the run's streams
_CALIBRATION_SEED = 20_180_601


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """What ``lpfa train --estimate`` prints; times in seconds, memory in bytes."""

    n_train: int
    """Training examples of the run (``data``), before the batches are cut."""
    n_test: int
    """Test examples evaluated once before training and after every epoch."""
    batch_size: int
    epochs: int
    steps_per_epoch: int
    """``n_train // batch_size``: a last partial batch is dropped, as in training."""
    step_s: float
    """Median seconds of one training step over the calibration."""
    step_min_s: float
    step_max_s: float
    calibration_steps: int
    """Steps timed (after one untimed warm-up step)."""
    forward_s_per_example: float
    """Seconds of one forward pass per example (a minibatch's forward pass ÷ its size)."""
    evaluations: int
    """Passes over the test set: before training and after every epoch."""
    alignment_s: float
    """Seconds of one call of the alignment diagnostics (0 where the run measures none)."""
    alignments: int
    """Calls of the alignment diagnostics (epoch 0 and every ``angle_every``-th epoch)."""
    memory: dict[str, int]
    """:func:`lpfa.training.memory_estimate` of the config: bytes by part and ``"total"``."""
    available: int | None
    """Bytes the backend can still take (:func:`lpfa.training.available_memory`), if known."""
    kernel_warning: str | None
    """:func:`lpfa.threads.forced_kernel_warning`, where the BLAS kernel is below the CPU's."""
    threads: int | None
    """BLAS threads the calibration ran with."""
    load: float | None = None
    """The machine's 1-minute load average at the calibration (None where the OS has none)."""
    cores: int = 1
    """CPU cores this process may run on."""

    @property
    def train_s(self) -> float:
        """Seconds of the training steps: epochs × steps per epoch × seconds per step."""
        return self.epochs * self.steps_per_epoch * self.step_s

    @property
    def eval_s(self) -> float:
        """Seconds of the evaluations and the alignment diagnostics."""
        evaluation = self.evaluations * self.n_test * self.forward_s_per_example
        return evaluation + self.alignments * self.alignment_s

    @property
    def total_s(self) -> float:
        """Expected seconds of the run (without loading the data)."""
        return self.train_s + self.eval_s


def _sync(net) -> None:
    """Wait for the device's queue (one tiny read); a no-op cost on numpy."""
    from lpfa.backend import to_numpy

    to_numpy(net.layers[0].W[0, 0, :1])


def calibrate(
    step, *, sync=lambda: None, budget: float = BUDGET_S, max_steps: int = MAX_STEPS
) -> list[float]:
    """Seconds of each call of ``step()`` after one untimed warm-up call.

    Calls go on while their total stays under ``budget`` seconds (the next call predicted to
    take as long as the last), at least one and at most ``max_steps``. ``sync()`` runs before
    each clock reading (a device's queue is waited for).
    """
    step()
    sync()
    times: list[float] = []
    total = 0.0
    while len(times) < max_steps and (not times or total + times[-1] <= budget):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return times


def estimate(cfg: RunConfig, *, budget: float = BUDGET_S, max_steps: int = MAX_STEPS) -> Estimate:
    """Time a short calibration of ``cfg``'s network and estimate the whole run.

    Parameters
    ----------
    cfg : RunConfig
    budget : float
        Seconds the timed calibration steps may take (:func:`calibrate`).
    max_steps : int
        Most calibration steps.

    Raises
    ------
    ConfigError
        What :func:`lpfa.training.preflight` refuses (backend, batch size, memory), before
        anything is allocated.
    """
    from lpfa import metrics
    from lpfa.alignment import alignment
    from lpfa.data import split_sizes
    from lpfa.network import Network
    from lpfa.threads import blas_info, usable_cores
    from lpfa.training import available_memory, memory_estimate, preflight

    xp = preflight(cfg)
    m, tc = cfg.model, cfg.train
    n_train, n_test = split_sizes(cfg.data)
    bs = tc.batch_size
    rng = np.random.default_rng(_CALIBRATION_SEED)

    def batch(rows: int):
        x = rng.random((rows, m.n_inputs), dtype=np.float32).astype(m.dtype)
        t = np.eye(m.sizes[-1], dtype=m.dtype)[rng.integers(0, m.sizes[-1], rows)]
        return xp.asarray(x), xp.asarray(t)

    # a pool of a few minibatches, gathered by index and scored as the training loop does
    rows = min(n_train, 4 * bs)
    x_pool, t_pool = batch(rows)
    y_pool = xp.asarray(rng.integers(0, m.sizes[-1], rows))
    perm = xp.asarray(rng.permutation(rows))
    x = x_pool[:bs]  # the forward passes' input
    k = [0]
    # random targets may drive the weights anywhere: only the time of a step matters here
    with np.errstate(all="ignore"):
        net = Network.build(cfg, xp)

        def step():
            i = k[0] = (k[0] + bs) % (rows - bs + 1)
            idx = perm[i : i + bs]
            xb, tb = x_pool[idx], t_pool[idx]
            out = net.step(xb, tb, tc.lr, weight_decay=tc.weight_decay, momentum=tc.momentum)
            metrics.loss(out, tb, m.loss)
            metrics.accuracy(out, y_pool[idx])

        steps = calibrate(step, sync=lambda: _sync(net), budget=budget, max_steps=max_steps)
        with net.observing():  # evaluation runs observing, as in training
            fwd = calibrate(lambda: net.forward(x), sync=lambda: _sync(net), max_steps=FORWARDS)
        measured = tc.angle_every is not None and m.n_layers > 1 and not m.conv
        align_s, n_align = 0.0, 0
        if measured:
            probe = batch(min(tc.angle_examples, n_train))
            start = time.perf_counter()
            alignment(net, *probe)
            align_s = time.perf_counter() - start
            n_align = tc.epochs // tc.angle_every + 1
    return Estimate(
        n_train=n_train,
        n_test=n_test,
        batch_size=bs,
        epochs=tc.epochs,
        steps_per_epoch=n_train // bs,
        step_s=statistics.median(steps),
        step_min_s=min(steps),
        step_max_s=max(steps),
        calibration_steps=len(steps),
        forward_s_per_example=statistics.median(fwd) / bs,
        evaluations=tc.epochs + 1,
        alignment_s=align_s,
        alignments=n_align,
        memory=memory_estimate(cfg),
        available=available_memory(xp),
        kernel_warning=blas_info()["blas_kernel_warning"],
        threads=blas_info()["threads"],
        load=_load(),
        cores=usable_cores(),
    )


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None


def _duration(s: float) -> str:
    """Seconds for people: ``0.84 s``, ``12.3 min``, ``2.5 h``."""
    if s < 120:
        return f"{s:.2f} s" if s < 10 else f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.1f} GiB"


def estimate_text(cfg: RunConfig, est: Estimate) -> str:
    """What ``lpfa train --estimate`` prints: one field a line, the warning last."""
    parts = ", ".join(f"{k} {_bytes(v)}" for k, v in est.memory.items() if k != "total")
    avail = "" if est.available is None else f" of {_bytes(est.available)} available"
    align = (
        f" + {est.alignments} × alignment diagnostics ({_duration(est.alignment_s)} each)"
        if est.alignments
        else ""
    )
    lines = [
        f"lpfa train {cfg.name} --estimate: {cfg.n_members} member(s), "
        f"calibrated on {est.calibration_steps} step(s) of random data, "
        f"{est.threads} BLAS thread(s); nothing trained or written",
        f"  steps per epoch     {est.steps_per_epoch:,} "
        f"({est.n_train:,} training examples // batch {est.batch_size})",
        f"  seconds per step    {est.step_s:.4g} (median; {est.step_min_s:.4g}–"
        f"{est.step_max_s:.4g} over {est.calibration_steps})",
        f"  training            {est.epochs} epoch(s) × {est.steps_per_epoch:,} steps: "
        f"{_duration(est.train_s)}",
        f"  evaluation          {est.evaluations} pass(es) over {est.n_test:,} test examples"
        f"{align}: {_duration(est.eval_s)}",
        f"  expected time       {_duration(est.total_s)} (without loading the data)",
        f"  expected memory     {_bytes(est.memory['total'])}{avail} ({parts})",
    ]
    if est.load is not None:
        # a short calibration gets a core to itself more easily than a long run does
        busy = (
            ": other processes share the cores; the run may take longer than this"
            if est.load > est.cores - 0.5
            else ""
        )
        lines.append(
            f"  machine load        {est.load:.1f} (1-min average) on {est.cores} usable "
            f"core(s){busy}"
        )
    if est.kernel_warning:
        lines.append(f"warning: {est.kernel_warning}")
    return "\n".join(lines)
