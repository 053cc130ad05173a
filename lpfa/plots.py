"""Figures with matplotlib (Agg backend, files only)."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["curves", "mark_diverged", "pyplot", "save"]


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(
    history: Sequence[Mapping[str, Any]], key: str, x: str
) -> tuple[np.ndarray, np.ndarray]:
    """(xs, values) with values shaped (n_x, E); missing entries are NaN.

    ``history`` is one configuration's rows: each member has at most one row per ``x``. Two rows
    for one (x, member) mean different runs were pooled, which is refused with a ValueError.
    """
    xs = sorted({r[x] for r in history})
    members = sorted({r["member"] for r in history})
    v = np.full((len(xs), len(members)), np.nan)
    pos = {e: i for i, e in enumerate(xs)}
    seen: set[tuple[Any, Any]] = set()
    for r in history:
        if (r[x], r["member"]) in seen:
            raise ValueError(
                f"{x}={r[x]}, member={r['member']}: two rows; a curve is one configuration's "
                "seeds, never several runs pooled"
            )
        seen.add((r[x], r["member"]))
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
    diverged: Mapping[str, int] | None = None,
) -> Path:
    """One panel per metric, one line per run: the mean over its seeds with a min–max band.

    Parameters
    ----------
    runs : mapping label -> history rows
        Each label is one configuration; its members are its seeds.
    panels : list of (history key, y label)
    path : output file (PNG)
    x : history key for the x axis
    logy : keys plotted on a log scale
    diverged : mapping label -> epoch, optional
        Runs that diverged in that epoch: drawn dotted, without a band, ending in a cross, and
        named "diverged in epoch k" in the legend; what they did before is not a result.
    """
    diverged = diverged or {}
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], panels, strict=True):
        for label, history in runs.items():
            xs, v = _series(history, key, x)
            ok = ~np.all(np.isnan(v), axis=1)
            n = v.shape[1]
            if label in diverged:
                _diverged_line(ax, xs[ok], np.nanmean(v[ok], axis=1), label, diverged[label])
                continue
            if not ok.any():
                continue
            mean = np.nanmean(v[ok], axis=1)
            seeds = f"{n} seed" + ("s" if n != 1 else "")
            (line,) = ax.plot(xs[ok], mean, label=f"{label} ({seeds})")
            if n > 1:
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
        ax.legend(fontsize=8, title="mean over seeds, band min–max", title_fontsize=7)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def _diverged_line(ax, xs: np.ndarray, mean: np.ndarray, label: str, epoch: int) -> None:
    """A diverged run: its epochs before the divergence dotted, a cross where it stopped."""
    text = f"{label}: diverged in epoch {epoch}"
    if not xs.size:
        ax.plot([], [], "x", color="red", label=text)
        return
    (line,) = ax.plot(xs, mean, ":", alpha=0.7)
    ax.plot(xs[-1:], mean[-1:], "x", color=line.get_color(), markersize=10, label=text)


def mark_diverged(ax, x: float, text: str, color: str | None = None) -> None:
    """Mark a diverged result at ``x``: a cross on the bottom edge of ``ax`` and ``text`` above
    it, so that no value is drawn for it."""
    trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.plot([x], [0.02], "x", color=color or "red", markersize=10, transform=trans, clip_on=False)
    ax.text(x, 0.06, text, transform=trans, rotation=90, fontsize=7, ha="center", va="bottom")


def save(fig, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # into a temporary file renamed over the old one: an interrupted save leaves the old figure
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        pyplot().close(fig)
    return path
