"""Figures with matplotlib (Agg backend, files only)."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["curves", "pyplot", "save"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(
    history: Sequence[Mapping[str, Any]], key: str, x: str
) -> tuple[np.ndarray, np.ndarray]:
    """(xs, values) with values shaped (n_x, E); missing entries are NaN."""
    xs = sorted({r[x] for r in history})
    members = sorted({r["member"] for r in history})
    v = np.full((len(xs), len(members)), np.nan)
    pos = {e: i for i, e in enumerate(xs)}
    for r in history:
        val = r.get(key)
        if val not in (None, ""):
            v[pos[r[x]], members.index(r["member"])] = float(val)
    return np.asarray(xs, dtype=float), v


def curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
    panels: Sequence[tuple[str, str]],
    path: str | Path,
    *,
    x: str = "epoch",
    xlabel: str = "epoch",
    title: str | None = None,
    logy: Sequence[str] = (),
) -> Path:
    """One panel per metric, one line per run: the member mean with a min–max band.

    Parameters
    ----------
    runs : mapping label -> history rows
    panels : list of (history key, y label)
    path : output file (PNG)
    x : history key for the x axis
    logy : keys plotted on a log scale
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels, strict=True):
        for label, history in runs.items():
            xs, v = _series(history, key, x)
            ok = ~np.all(np.isnan(v), axis=1)
            if not ok.any():
                continue
            mean = np.nanmean(v[ok], axis=1)
            (line,) = ax.plot(xs[ok], mean, label=label)
            if v.shape[1] > 1:
                ax.fill_between(
                    xs[ok],
                    np.nanmin(v[ok], 1),
                    np.nanmax(v[ok], 1),
                    color=line.get_color(),
                    alpha=0.2,
                )
        ax.set_xlabel(xlabel)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.set_ylabel(ylabel)
        if key in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def save(fig, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path
