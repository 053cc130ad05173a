"""Figures with matplotlib (Agg backend, files only)."""

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from lpfa.report import plural

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
    by: Callable[[str], str] | None = None,
) -> Path:
    """One panel per metric, one line per run: the mean over its seeds with a ± 1 std band.

    Parameters
    ----------
    runs : mapping label -> history rows
        Each label is one configuration; its members are its seeds.
    panels : list of (history key, y label)
    path : output file (PNG)
    x : history key for the x axis
    logy : keys plotted on a log scale, with labelled ticks at 1, 2, 3, 5 × 10^k (1, 2, 5 over
        up to three decades, powers of ten beyond) so values between two powers can be read
    diverged : mapping label -> epoch, optional
        Runs that diverged in that epoch: drawn dotted, without a band, ending in a cross, and
        named "diverged in epoch k" in the legend; what they did before is not a result.
    by : callable label -> group title, optional
        One column of panels per group (e.g. per variant), so that no two groups' bands overlap;
        the panels of one metric share their y axis. Without it, every run is in every panel.
    """
    diverged = diverged or {}
    groups: dict[str | None, dict[str, Sequence[Mapping[str, Any]]]] = {}
    for label, history in runs.items():
        groups.setdefault(None if by is None else by(label), {})[label] = history
    if by is None:  # the metrics side by side, two to a row from four on
        cols = len(panels) if len(panels) <= 3 else 2
        rows = -(-len(panels) // cols)
    else:
        rows, cols = len(panels), len(groups)
    plt = pyplot()
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False, sharey="row" if by else False
    )
    for ax in axes.flat[len(panels) :] if by is None else ():
        ax.set_visible(False)
    for i, (key, ylabel) in enumerate(panels):
        for j, (group, sub) in enumerate(groups.items()):
            ax = axes.flat[i] if by is None else axes[i, j]
            _panel(ax, sub, key, x, diverged)
            ax.set_xlabel(xlabel)
            if by is None or j == 0:
                ax.set_ylabel(ylabel)
            if group is not None:
                ax.set_title(group, fontsize=10)
            if key in logy:
                _log_axis(ax)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def _panel(ax, runs: Mapping[str, Sequence[Mapping[str, Any]]], key: str, x: str, diverged):
    """The runs' curves of ``key`` on one axes, and its legend."""
    handles, labels = [], []
    bands = False
    for label, history in runs.items():
        xs, v = _series(history, key, x)
        ok = ~np.all(np.isnan(v), axis=1)
        n = v.shape[1]
        if label in diverged:
            handle = _diverged_line(ax, xs[ok], np.nanmean(v[ok], axis=1), label, diverged[label])
            handles.append(handle)
            labels.append(handle.get_label())
            continue
        if not ok.any():
            continue
        xs, v = xs[ok], v[ok]
        mean = np.nanmean(v, axis=1)
        (line,) = ax.plot(xs, mean, label=f"{label} ({plural(n, 'seed')})")
        handle: Any = line
        if n > 1:
            std = np.nanstd(v, axis=1, ddof=1)
            lo = mean - std
            if v[v > 0].size:  # a log axis cannot draw a band below 0
                lo = np.maximum(lo, np.nanmin(v[v > 0]))
            band = ax.fill_between(xs, lo, mean + std, color=line.get_color(), alpha=0.2, lw=0)
            handle, bands = (band, line), True
        handles.append(handle)
        labels.append(line.get_label())
    if x == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.grid(alpha=0.3)
    ax.grid(alpha=0.12, which="minor")
    if handles:
        what = "line: mean over seeds; band: ± 1 std" if bands else None
        ax.legend(handles, labels, fontsize=8, title=what, title_fontsize=7)


def _log_axis(ax) -> None:
    """A log y axis whose ticks are labelled often enough to read values between decades."""
    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    decades = np.log10(hi / lo) if lo > 0 else np.inf
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 2 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _diverged_line(ax, xs: np.ndarray, mean: np.ndarray, label: str, epoch: int):
    """A diverged run: its epochs before the divergence dotted, a cross where it stopped; returns
    the cross, the legend's handle."""
    text = f"{label}: diverged in epoch {epoch}"
    if not xs.size:
        return ax.plot([], [], "x", color="red", label=text)[0]
    (line,) = ax.plot(xs, mean, ":", alpha=0.7)
    return ax.plot(xs[-1:], mean[-1:], "x", color=line.get_color(), markersize=10, label=text)[0]


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
