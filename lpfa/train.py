"""The training loop: minibatch SGD over an ensemble, per-epoch metrics, divergence stop."""

import math
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lpfa import metrics
from lpfa.alignment import alignment
from lpfa.backend import resolve, to_numpy
from lpfa.config import RunConfig
from lpfa.data import Dataset, load
from lpfa.network import Network

__all__ = [
    "DivergenceError",
    "RunResult",
    "evaluate",
    "learning_rate",
    "summarize",
    "train",
    "versions",
]


class DivergenceError(RuntimeError):
    """A member's loss became NaN or infinite; training stopped. ``history`` keeps what was done."""

    def __init__(self, member: int, seed: int, epoch: int, value: float, history: list[dict]):
        self.member, self.seed, self.epoch, self.history = member, seed, epoch, history
        super().__init__(
            f"member {member} (seed {seed}) diverged in epoch {epoch}: training loss is {value}. "
            f"Lower train.lr, or the init/feedback scale, and run again."
        )


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
        last = max(r["epoch"] for r in self.history)
        return np.array([r[key] for r in self.history if r["epoch"] == last], dtype=float)


def learning_rate(lr: float, decay: float, t: int) -> float:
    """Keras-style time decay per update: η_t = η / (1 + decay · t)."""
    return lr / (1.0 + decay * t)


def versions() -> dict[str, str]:
    """Versions of what produced a result (python, numpy, lpfa, cupy if loaded, git revision)."""
    import lpfa

    out = {"python": platform.python_version(), "numpy": np.__version__, "lpfa": lpfa.__version__}
    cp = sys.modules.get("cupy")
    if cp is not None:
        out["cupy"] = cp.__version__
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
    return out


def evaluate(
    net: Network, x, t, labels, loss_kind, *, chunk: int = 10_000
) -> dict[str, np.ndarray]:
    """Loss, NSE and accuracy (if ``labels``) of every member on a data set, as host arrays (E,)."""
    sums: dict[str, Any] = {}
    n = x.shape[0]
    for i in range(0, n, chunk):
        out = net.forward(x[i : i + chunk])[-1]
        k = out.shape[1]
        parts = {
            "loss": metrics.loss(out, t[i : i + chunk], loss_kind) * k,
            "sq": ((t[i : i + chunk] - out) ** 2).sum(axis=(-2, -1)),
        }
        if labels is not None:
            parts["acc"] = metrics.accuracy(out, labels[i : i + chunk]) * k
        for key, v in parts.items():
            sums[key] = sums.get(key, 0) + v
    res = {
        "loss": to_numpy(sums["loss"]) / n,
        "nse": to_numpy(sums["sq"]) / float(to_numpy((t**2).sum())),
    }
    if labels is not None:
        res["acc"] = to_numpy(sums["acc"]) / n
    return res


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
) -> RunResult:
    """Train ``cfg.seeds`` as one ensemble and return per-epoch, per-member metrics.

    Parameters
    ----------
    cfg : RunConfig
    data : Dataset, optional
        Pre-loaded data (otherwise loaded from ``cfg.data``).
    progress : bool or None
        Show a progress bar; None shows it when stderr is a terminal.
    on_epoch : callable, optional
        Called with the new history rows (one per member) after each epoch, and after the
        measurement before training (epoch 0), so results can be written as they come.

    Raises
    ------
    DivergenceError
        When a member's training loss is not finite at the end of an epoch.
    """
    xp = resolve(cfg.backend)
    tc, mc = cfg.train, cfg.model
    data = data if data is not None else load(cfg.data, mc.sizes, mc.dtype)
    if data.x_train.shape[1] != mc.sizes[0] or data.t_train.shape[1] != mc.sizes[-1]:
        raise ValueError(
            f"model.sizes={mc.sizes}: data {data.name} has {data.x_train.shape[1]} inputs and "
            f"{data.t_train.shape[1]} outputs"
        )
    x_tr, t_tr = xp.asarray(data.x_train), xp.asarray(data.t_train)
    x_te, t_te = xp.asarray(data.x_test), xp.asarray(data.t_test)
    y_tr = None if data.y_train is None else xp.asarray(data.y_train)
    y_te = None if data.y_test is None else xp.asarray(data.y_test)
    net = Network.build(cfg, xp)
    n, bs = x_tr.shape[0], tc.batch_size
    n_batches = n // bs  # a last partial batch is dropped, as the papers' fixed-size minibatches
    if n_batches == 0:
        raise ValueError(f"train.batch_size={bs}: larger than the {n} training examples")
    shuffle = np.random.default_rng(tc.shuffle_seed)
    probe = min(tc.angle_examples, n)
    history: list[dict[str, Any]] = []
    hidden = range(1, mc.n_layers)
    diag_keys = [f"{k}_{h}" for k in ("angle", "angle_pbp", "angle_wb") for h in hidden]
    diag_keys += ["ewbe_pos"] if mc.n_layers > 1 else []
    started = time.perf_counter()
    step = 0

    def record(epoch: int, lr: float, train_stats: dict[str, np.ndarray] | None) -> None:
        test = evaluate(net, x_te, t_te, y_te, mc.loss)
        diag = None
        if tc.angle_every is not None and epoch % tc.angle_every == 0 and mc.n_layers > 1:
            diag = alignment(net, x_tr[:probe], t_tr[:probe])
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
            perm = xp.asarray(shuffle.permutation(n))
            loss_sum = 0
            acc_sum = 0
            for i in range(n_batches):
                idx = perm[i * bs : (i + 1) * bs]
                xb, tb = x_tr[idx], t_tr[idx]
                lr = learning_rate(tc.lr, tc.lr_decay, step)
                out = net.step(xb, tb, lr, weight_decay=tc.weight_decay, momentum=tc.momentum)
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
    }
    return RunResult(cfg, history, summary, meta, net)


def summarize(history: list[dict[str, Any]], cfg: RunConfig) -> dict[str, Any]:
    """Final metrics per member, and their mean and sample std over members."""
    last = max(r["epoch"] for r in history)
    rows = [r for r in history if r["epoch"] == last]
    keys = [k for k in rows[0] if k not in ("epoch", "member", "seed", "step", "lr", "time_s")]
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
