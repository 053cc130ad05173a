"""The training loop: minibatch SGD over an ensemble, per-epoch metrics, divergence stop."""

import math
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpfa import metrics
from lpfa.alignment import alignment
from lpfa.backend import device_versions, get_xp, resolve, to_numpy
from lpfa.config import ConfigError, ModelConfig, RunConfig, conv_shapes
from lpfa.data import FULL_SIZES, Dataset, as_inputs, load_cached, split_sizes
from lpfa.network import MemberThreads, Network
from lpfa.report import BOOKKEEPING, final_rows
from lpfa.rules import sources

__all__ = [
    "EVAL_MEMORY",
    "DivergenceError",
    "RunResult",
    "augment",
    "available_memory",
    "check_memory",
    "eval_chunk",
    "evaluate",
    "learning_rate",
    "memory_estimate",
    "preflight",
    "summarize",
    "train",
    "versions",
]


class DivergenceError(RuntimeError):
    """A member's loss became NaN or infinite; training stopped. ``history`` keeps what was done.

    Also raised when the numbers of a run overflow so far that a numerical routine gives up
    (an SVD that does not converge on infinite weights, a float power out of range): ``value``
    then says what failed, and ``member`` / ``seed`` are the first member whose weights are no
    longer finite (None if every member's weights still are).
    """

    def __init__(
        self, member: int | None, seed: int | None, epoch: int, value: Any, history: list[dict]
    ):
        self.member, self.seed, self.epoch, self.history = member, seed, epoch, history
        who = "the run" if member is None else f"member {member} (seed {seed})"
        what = f"training loss is {value}" if isinstance(value, float) else str(value)
        super().__init__(
            f"{who} diverged in epoch {epoch}: {what}. "
            f"Lower train.lr, or the init/feedback scale, and run again."
        )


# the errors numerical routines raise on overflowing inputs, reported as divergence
NUMERICAL_ERRORS = (np.linalg.LinAlgError, OverflowError, FloatingPointError)


def _first_nonfinite_member(net: Network) -> int | None:
    """The first member with a non-finite forward weight, or None (host sync; error path only)."""
    xp = net.xp
    ok = xp.ones(net.layers[0].W.shape[0], dtype=bool)
    for layer in net.layers:
        ok &= xp.isfinite(layer.W).all(axis=(1, 2))
    bad = np.flatnonzero(~to_numpy(ok))
    return int(bad[0]) if bad.size else None


def _size(n: int) -> str:
    """A byte count for people: ``12.3 MiB``, ``4,090.4 GiB``."""
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.1f} GiB"


def memory_estimate(cfg: RunConfig) -> dict[str, int]:
    """Bytes a run of ``cfg`` needs at its peak, by part, before anything is allocated.

    A deliberate over-estimate of the arrays lpfa keeps (it ignores interpreter overhead):

    - ``weights``: W^h and biases of every member, plus the float64 host draw of the largest;
    - ``feedback``: the channel's matrices (chained, skip or cascade edges; per-synapse for
      ``per_weight``), drawn in float64 on the host;
    - ``optimizer``: a gradient and an update per array, and the momentum velocity;
    - ``activations``: outputs, pre-activations, errors and f′ of one minibatch for every
      member (the input once), and one evaluation chunk (:func:`eval_chunk`, at most
      :data:`EVAL_MEMORY`);
    - ``data``: the image sets' bytes as decompressed (the stored inputs are them or a copy of
      them), their one-hot targets and labels; the synthetic tasks' float inputs and targets
      twice (the cast to the dtype makes a temporary).

    Returns
    -------
    dict of str to int
        The parts above and ``"total"``.
    """
    m, c, d = cfg.model, cfg.channel, cfg.data
    item = np.dtype(m.dtype).itemsize
    E, sizes, L = cfg.n_members, m.layer_sizes, m.n_layers
    shapes = [(rows, cols + 1) for rows, cols in m.array_shapes]
    n_weights = sum(a * b for a, b in shapes)
    largest = max(a * b for a, b in shapes)
    weights = E * n_weights * item + 2 * largest * 8
    n_fb = 0
    if c.rule.has_random_feedback:
        if c.per_weight:
            n_fb = sum(sizes[L] * sizes[h] * (sizes[h - 1] + 1) for h in range(1, L))
        else:  # the channel's connections, as the rule table declares them
            edges = [(k, h) for h, ks in enumerate(sources(c, L), 1) for k in ks]
            kernel = lambda k, h: k <= m.n_conv and h == k - 1  # noqa: E731 (a kernel bank)
            n_fb = sum(
                math.prod(m.array_shapes[k - 1]) if kernel(k, h) else sizes[k] * sizes[h]
                for k, h in edges
            )
    feedback = E * n_fb * (item + 8)
    optimizer = E * n_weights * item * (3 if cfg.train.momentum else 2)
    n_units = sum(sizes)
    n_train, n_test = split_sizes(d)
    # the input is shared by the members; every member has its own signals in the layers above
    step = (4 * E * (n_units - sizes[0]) + sizes[0]) * min(cfg.train.batch_size, n_train) * item
    chunk = min(eval_chunk(m, E), n_test)
    activations = step + chunk * _eval_bytes_per_example(m, E)
    n = n_train + n_test
    if d.name in ("linear-teacher", "tanh-teacher", "lowrank"):
        data = 2 * n * (sizes[0] + sizes[-1]) * item  # and a cast's temporary
    else:  # bytes: the whole file decompressed, a cut's copy, one-hot targets, int64 labels
        data = sum(FULL_SIZES[d.name]) * (sizes[0] + 1) + n * (sizes[0] + sizes[-1] * item + 8)
    parts = {
        "weights": weights,
        "feedback": feedback,
        "optimizer": optimizer,
        "activations": activations,
        "data": data,
    }
    return {**parts, "total": sum(parts.values())}


def available_memory(xp=np) -> int | None:
    """Bytes the arrays of backend ``xp`` can still take: free device memory for a GPU backend,
    MemAvailable of /proc/meminfo (else free physical pages) for numpy; None if unknown."""
    cuda = getattr(xp, "cuda", None)  # the GPU backend's device, where its arrays live
    if cuda is not None:
        return int(cuda.Device().mem_info[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(cfg: RunConfig, xp=np, available: int | None = None) -> dict[str, int]:
    """Refuse a run that cannot fit, before allocating anything.

    Raises
    ------
    ConfigError
        On ``data.n_train`` when the data is the largest part of :func:`memory_estimate` and it
        has more examples than units in its widest layer, on ``model.sizes`` otherwise, with
        the figures, when the estimate exceeds ``available`` (default
        :func:`available_memory`).
    """
    need = memory_estimate(cfg)
    available = available_memory(xp) if available is None else available
    if available is not None and need["total"] > available:
        parts = {k: v for k, v in need.items() if k != "total"}
        part = max(parts, key=parts.__getitem__)
        # the data is large because of many examples, or because of wide layers
        many = part == "data" and sum(split_sizes(cfg.data)) > max(cfg.model.sizes)
        field = "data.n_train" if many else "model.sizes"
        value = cfg.data.n_train if many else cfg.model.sizes
        raise ConfigError(
            field,
            value,
            f"the run needs about {_size(need['total'])} ({part} {_size(need[part])}), "
            f"more than the {_size(available)} available",
        )
    return need


def preflight(cfg: RunConfig, *, data: Dataset | None = None):
    """Everything :func:`train` checks before it allocates, without loading the data.

    Returns the array module of ``cfg.backend``. Call it before writing a run's files, so bad
    input leaves them untouched.

    Raises
    ------
    ConfigError
        ``backend=cupy`` where CuPy cannot run; a batch larger than the training set; a run
        that needs more memory than is available (only when ``data`` is not given).
    """
    try:
        xp = resolve(cfg.backend)
    except ValueError as err:  # CuPy missing or without a device
        raise ConfigError("backend", cfg.backend, str(err).partition(": ")[2]) from None
    n = split_sizes(cfg.data)[0] if data is None else data.x_train.shape[0]
    bs = cfg.train.batch_size
    if n < bs:
        raise ConfigError(
            "train.batch_size",
            bs,
            f"must be <= the {n} training examples of data.name={cfg.data.name}",
        )
    if data is None:
        check_memory(cfg, xp)
    return xp


@dataclass
class RunResult:
    """What a run produced: its config, one history row per epoch and member, and final figures."""

    config: RunConfig
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    network: Network | None = None

    def final(self, key: str) -> np.ndarray:
        """The last epoch's ``key`` for every member, shape (E,)."""
        return np.array([r[key] for r in final_rows(self.history)], dtype=float)


def learning_rate(lr: float, decay: float, t: int) -> float:
    """Keras-style time decay per update: η_t = η / (1 + decay · t)."""
    return lr / (1.0 + decay * t)


def versions() -> dict[str, Any]:
    """Versions of what produced a result (python, numpy, lpfa, cupy if loaded, git revision),
    the BLAS that ran it (library, core type, threads: :func:`lpfa.threads.blas_info`) and the
    heap settings (``heap``: :func:`lpfa.threads.heap_settings`)."""
    import lpfa
    from lpfa.threads import blas_info, heap_settings

    out = {"python": platform.python_version(), "numpy": np.__version__, "lpfa": lpfa.__version__}
    out.update(device_versions())
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if rev.returncode == 0:
            out["git"] = rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    out["host"] = platform.node()
    out.update(blas_info())
    out["heap"] = heap_settings()
    return out


EVAL_MEMORY = 64 * 2**20
"""Bytes an evaluation pass may hold in activations (64 MiB): the test set is evaluated in
chunks of :func:`eval_chunk` examples, so that the input rows, every layer's output of every
member, a temporary of the widest layer and the loss temporaries of one chunk stay under it.
An evaluation's memory then no longer grows with the test set (at E = 32 on 784-1000-10, the
hidden outputs of the whole MNIST test set at once are 1.3 GB)."""

_MAX_CHUNK = 10_000  # never more examples per pass: a small net's metrics are summed as before


def _units_per_example(m: ModelConfig) -> list[int]:
    """Numbers of one member's layer outputs for one example, as a forward pass holds them,
    bottom first: a conv layer's maps before its pool and (when pooled) after it; a dense
    layer's units."""
    if not m.conv:
        return list(m.sizes[1:])
    maps = conv_shapes(m.input_shape, m.conv)
    conv = [
        math.prod(o) + (math.prod(p) if c.pool_kernel is not None else 0)
        for (_, o, p), c in zip(maps, m.conv, strict=True)
    ]
    return conv + list(m.sizes[1:])


def _eval_bytes_per_example(m: ModelConfig, n_members: int) -> int:
    """Bytes one test example takes in an evaluation pass of an ensemble of ``n_members``.

    The input row once (members share it), and per member: every layer's output (a forward
    pass keeps them all; f works in place on the pre-activations), one temporary of the widest
    layer (a quantizer's copy, a power unit's signs), and three output-sized temporaries of the
    loss and the squared error.
    """
    units = _units_per_example(m)
    per_member = sum(units) + max(units) + 3 * m.sizes[-1]
    return (m.n_inputs + n_members * per_member) * np.dtype(m.dtype).itemsize


def eval_chunk(m: ModelConfig, n_members: int, budget: int | None = None) -> int:
    """Examples per forward pass of an evaluation of ``n_members`` members of model ``m``: as
    many as fit in ``budget`` bytes (default :data:`EVAL_MEMORY`) by
    :func:`_eval_bytes_per_example`, at least 1 and at most 10 000."""
    budget = EVAL_MEMORY if budget is None else budget
    return max(1, min(_MAX_CHUNK, budget // _eval_bytes_per_example(m, n_members)))


def evaluate(
    net: Network,
    x,
    t,
    labels,
    loss_kind,
    *,
    chunk: int | None = None,
    scale: float | None = None,
) -> dict[str, np.ndarray]:
    """Loss, NSE and accuracy (if ``labels``) of every member on a data set, as host arrays (E,).

    Parameters
    ----------
    net : Network
    x : array, shape (n, N_0)
        Inputs, or stored bytes with ``scale`` (each chunk is converted by
        :func:`lpfa.data.as_inputs` to the dtype of ``t``, so the whole set never is).
    t : array, shape (n, N_L)
    labels : int array, shape (n,), or None
    loss_kind : Loss
    chunk : int, optional
        Examples per forward pass; default :func:`eval_chunk` (bounded by :data:`EVAL_MEMORY`).
        The accuracy is a count and does not depend on it; loss and NSE are sums of per-chunk
        sums, which depend on it in their last bits (float rounding) only.
    scale : float, optional
        The value of one step of stored inputs (:attr:`lpfa.data.Dataset.scale`).
    """
    chunk = _eval_chunk(net) if chunk is None else chunk
    sums: dict[str, Any] = {}
    n = x.shape[0]
    for i in range(0, n, chunk):
        xb = as_inputs(x[i : i + chunk], scale, t.dtype)  # as the set's Dataset.inputs does
        with net.observing():  # stochastic forward formats draw from the diagnostic stream
            out = net.forward(xb)[-1]
        k = out.shape[1]
        parts = {
            "loss": metrics.loss(out, t[i : i + chunk], loss_kind) * k,
            "sq": ((t[i : i + chunk] - out) ** 2).sum(axis=(-2, -1)),
        }
        if labels is not None:  # a count, exact: the accuracy does not depend on the chunks
            parts["acc"] = get_xp(out).rint(metrics.accuracy(out, labels[i : i + chunk]) * k)
        for key, v in parts.items():
            sums[key] = sums.get(key, 0) + v
    res = {
        "loss": to_numpy(sums["loss"]) / n,
        "nse": to_numpy(sums["sq"]) / float(to_numpy((t**2).sum())),
    }
    if labels is not None:
        res["acc"] = to_numpy(sums["acc"]) / n
    return res


def _eval_chunk(net: Network, budget: int | None = None) -> int:
    """:func:`eval_chunk` of ``net``'s model and ensemble size."""
    return eval_chunk(net.model, net.n_members, budget)


def _progress(total: int, enabled: bool | None, desc: str):
    from tqdm.auto import tqdm

    disable = None if enabled is None else not enabled  # None: only on a terminal
    return tqdm(total=total, disable=disable, desc=desc, unit="batch", leave=False, mininterval=0.5)


def train(
    cfg: RunConfig,
    *,
    data: Dataset | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
    member_threads: int = 1,
) -> RunResult:
    """Train ``cfg.seeds`` as one ensemble and return per-epoch, per-member metrics.

    Parameters
    ----------
    cfg : RunConfig
    data : Dataset, optional
        Pre-loaded data (otherwise :func:`lpfa.data.load_cached` of ``cfg.data``: runs in one
        process that share their data, such as an experiment's rules, load it once).
    progress : bool or None
        Show a progress bar; None shows it when stderr is a terminal.
    on_epoch : callable, optional
        Called with the new history rows (one per member) after each epoch, and after the
        measurement before training (epoch 0), so results can be written as they come.
    member_threads : int
        Step the ensemble as this many sub-ensembles at once, one Python thread and one BLAS
        thread each (:class:`lpfa.network.MemberThreads`: where a step draws nothing from the
        runtime stream, on numpy, dense nets without device physics; otherwise the run steps
        whole, with this many BLAS threads). ``meta["member_threads"]`` records the threads
        used and why the run stepped whole, if it did. Members agree with a whole-ensemble run to
        float rounding. 1 (default): the whole ensemble in one thread.

    Raises
    ------
    ConfigError
        Before anything is allocated: ``backend=cupy`` where CuPy cannot run, a run that needs
        more memory than is available (:func:`check_memory`, when ``data`` is not given), data
        that does not fit ``model.sizes``, a batch larger than the training set.
    DivergenceError
        When a member's training loss is not finite at the end of an epoch, or a numerical
        routine fails on overflowing numbers (:data:`NUMERICAL_ERRORS`, e.g. an SVD of
        infinite weights after ``model.init_scale=1e300``, σ² out of range for node
        perturbation): both are divergence, not bad input.
    """
    xp = preflight(cfg, data=data)
    mc = cfg.model
    data = data if data is not None else load_cached(cfg.data, mc.sizes, mc.dtype)
    if data.x_train.shape[1] != mc.n_inputs or data.t_train.shape[1] != mc.sizes[-1]:
        raise ConfigError(
            "model.sizes",
            mc.sizes,
            f"data {data.name} has {data.x_train.shape[1]} inputs and "
            f"{data.t_train.shape[1]} outputs",
        )
    history: list[dict[str, Any]] = []
    net = None
    # overflow in a diverging member is reported once, by DivergenceError, not as warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            net = Network.build(cfg, xp)
            stepper = MemberThreads(net, member_threads)
            try:
                return _run(cfg, xp, data, net, history, progress, on_epoch, stepper)
            finally:
                stepper.close()
        except NUMERICAL_ERRORS as err:
            epoch = history[-1]["epoch"] + 1 if history else 0
            m = None if net is None else _first_nonfinite_member(net)
            seed = None if m is None else cfg.seeds[m]
            what = f"{type(err).__name__}: {err}"
            raise DivergenceError(m, seed, epoch, what, history) from err


def _run(
    cfg: RunConfig,
    xp,
    data: Dataset,
    net: Network,
    history: list[dict[str, Any]],
    progress: bool | None,
    on_epoch: Callable[[list[dict[str, Any]]], None] | None,
    stepper: MemberThreads,
) -> RunResult:
    """The loop of :func:`train`, appending to ``history`` as epochs finish."""
    tc, mc = cfg.train, cfg.model
    # stored inputs (the image sets' bytes) go to the backend once and are converted per batch
    x_tr, t_tr = xp.asarray(data.x_train), xp.asarray(data.t_train)
    x_te, t_te = xp.asarray(data.x_test), xp.asarray(data.t_test)
    y_tr = None if data.y_train is None else xp.asarray(data.y_train)
    y_te = None if data.y_test is None else xp.asarray(data.y_test)
    n, bs = x_tr.shape[0], tc.batch_size
    n_batches = n // bs  # a last partial batch is dropped, as the papers' fixed-size minibatches
    shuffle = np.random.default_rng(tc.shuffle_seed)
    probe = min(tc.angle_examples, n)
    x_probe = data.inputs(x_tr[:probe])
    hidden = range(1, mc.n_layers)
    diag_keys = [
        f"{k}_{h}" for k in ("angle", "angle_pbp", "angle_wb", "angle_wbpinv") for h in hidden
    ]
    diag_keys += ["ewbe_pos"] if mc.n_layers > 1 else []
    started = time.perf_counter()
    step = 0

    def record(epoch: int, lr: float, train_stats: dict[str, np.ndarray] | None) -> None:
        # on the sub-ensembles at once where member threads step them
        test = stepper.map(lambda n: evaluate(n, x_te, t_te, y_te, mc.loss, scale=data.scale))
        diag = None
        # the alignment diagnostics are defined for dense arrays only (not measured on conv nets)
        measured = mc.n_layers > 1 and not mc.conv
        if tc.angle_every is not None and epoch % tc.angle_every == 0 and measured:
            # outputs and three sets of error signals per example: a third of an eval chunk
            chunk = max(1, _eval_chunk(net) // 3)
            diag = stepper.map(lambda n: alignment(n, x_probe, t_tr[:probe], chunk=chunk))
        rows = []
        for m, seed in enumerate(cfg.seeds):
            row: dict[str, Any] = {
                "epoch": epoch,
                "member": m,
                "seed": seed,
                "step": step,
                "lr": lr,
            }
            for key in ("loss", "acc"):
                row[f"train_{key}"] = (
                    None
                    if train_stats is None or key not in train_stats
                    else float(train_stats[key][m])
                )
            row["test_loss"] = float(test["loss"][m])
            row["test_acc"] = float(test["acc"][m]) if "acc" in test else None
            row["test_nse"] = float(test["nse"][m])
            for key in diag_keys:
                row[key] = None if diag is None else float(diag[key][m])
            row["time_s"] = round(time.perf_counter() - started, 3)
            rows.append(row)
        history.extend(rows)
        if on_epoch is not None:
            on_epoch(rows)

    record(0, learning_rate(tc.lr, tc.lr_decay, 0), None)
    # overflow in a diverging member is reported once, by DivergenceError, not as warnings
    fp = np.errstate(over="ignore", invalid="ignore", divide="ignore")
    with _progress(tc.epochs * n_batches, progress, cfg.name) as bar, fp:
        for epoch in range(1, tc.epochs + 1):
            # adaptive feedback learns in the first adapt_epochs epochs, then stays fixed
            k = cfg.channel.adapt_epochs
            net.channel.adapting = k is None or epoch <= k
            perm = xp.asarray(shuffle.permutation(n))
            loss_sum = 0
            acc_sum = 0
            for i in range(n_batches):
                idx = perm[i * bs : (i + 1) * bs]
                xb, tb = data.inputs(x_tr[idx]), t_tr[idx]
                if tc.augment_shift or tc.augment_flip:
                    xb = augment(xb, mc.input_shape, tc.augment_shift, tc.augment_flip, net.random)
                lr = learning_rate(tc.lr, tc.lr_decay, step)
                out = stepper.step(xb, tb, lr, weight_decay=tc.weight_decay, momentum=tc.momentum)
                loss_sum = loss_sum + metrics.loss(out, tb, mc.loss)
                if y_tr is not None:
                    acc_sum = acc_sum + metrics.accuracy(out, y_tr[idx])
                step += 1
                if i % 50 == 49:
                    bar.update(50)
            bar.update(n_batches % 50)
            stats = {"loss": to_numpy(loss_sum) / n_batches}
            if y_tr is not None:
                stats["acc"] = to_numpy(acc_sum) / n_batches
            bad = np.flatnonzero(~np.isfinite(stats["loss"]))
            if bad.size:
                m = int(bad[0])
                raise DivergenceError(m, cfg.seeds[m], epoch, float(stats["loss"][m]), history)
            record(epoch, lr, stats)
            last = history[-len(cfg.seeds) :]
            key = "test_acc" if y_tr is not None else "test_nse"
            bar.set_postfix({key: f"{np.mean([r[key] for r in last]):.4f}"})
    summary = summarize(history, cfg)
    meta = {
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 2),
        "steps": step,
        "member_threads": {"threads": stepper.parts, "whole_because": stepper.reason},
    }
    return RunResult(cfg, history, summary, meta, net)


def augment(x, shape, shift: float = 0.0, flip: bool = False, rng=None):
    """Training images moved and flipped at random: ``train.augment_shift`` / ``augment_flip``.

    Parameters
    ----------
    x : array, shape (B, C·H·W)
        Image rows (channel first), on the backend.
    shape : (C, H, W)
    shift : float
        f: each image moves by dy ∈ {−⌊f·H⌋, …, ⌊f·H⌋} rows and dx ∈ {−⌊f·W⌋, …, ⌊f·W⌋}
        columns (uniform, independent), out[i, j] = x[clip(i − dy), clip(j − dx)]: the edge
        repeats into the gap.
    flip : bool
        Each image is then mirrored left-right with probability 0.5.
    rng : generator on the backend
        Draws, in order: B uniforms for dy, B for dx (when ``shift``), B for the flips.

    Returns
    -------
    array, shape (B, C·H·W)
    """
    xp = get_xp(x)
    B = x.shape[0]
    C, H, W = (int(n) for n in shape)
    rows = xp.broadcast_to(xp.arange(H), (B, H))
    cols = xp.broadcast_to(xp.arange(W), (B, W))
    if shift:
        for n, name in ((H, "rows"), (W, "cols")):
            m = int(shift * n)
            d = xp.floor(rng.random(B) * (2 * m + 1)).astype(xp.int64) - m
            moved = xp.clip((rows if name == "rows" else cols) - d[:, None], 0, n - 1)
            rows, cols = (moved, cols) if name == "rows" else (rows, moved)
    if flip:
        cols = xp.where((rng.random(B) < 0.5)[:, None], cols[:, ::-1], cols)  # the moved image
    img = x.reshape(B, C, H, W)
    out = img[xp.arange(B)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return xp.ascontiguousarray(out.transpose(0, 3, 1, 2)).reshape(B, C * H * W)


def summarize(history: list[dict[str, Any]], cfg: RunConfig) -> dict[str, Any]:
    """Final metrics per member, and their mean and sample std over members."""
    rows = final_rows(history)
    last = rows[0]["epoch"]
    keys = [k for k in rows[0] if k not in BOOKKEEPING]
    out: dict[str, Any] = {
        "name": cfg.name,
        "rule": cfg.channel.rule.value,
        "epoch": last,
        "members": [],
    }
    for r in rows:
        out["members"].append({"seed": r["seed"], **{k: r[k] for k in keys}})
    for k in keys:
        vals = [r[k] for r in rows if r[k] is not None and not math.isnan(r[k])]
        if vals:
            out[f"{k}_mean"] = float(np.mean(vals))
            out[f"{k}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return out
