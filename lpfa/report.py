"""Numbers as a reader sees them: mean ± std with fitting digits, metric names in words,
text tables, and tables that set our numbers next to a paper's."""

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BOOKKEEPING",
    "claims_table",
    "comparison_table",
    "final_rows",
    "mean_std",
    "metric_name",
    "plural",
    "read_history",
    "strict_json",
    "text_table",
]

# the angle diagnostics per hidden layer h: a short head, and what is measured (lpfa.alignment)
ANGLES = {
    "angle": ("rule∠BP", "the rule's error signal at the layer against backprop's"),
    "angle_pbp": ("rule∠PBP", "the same against pseudobackprop's (W⁺ e)"),
    "angle_wb": ("W∠Bᵀ", "forward weights of the layer above against their feedback Bᵀ"),
    "angle_wbpinv": ("W∠B⁺", "the same against the pseudo-inverse B⁺ of the feedback"),
}
# what each history column measures, in words; ``{h}`` is a hidden layer (1 = the lowest)
METRICS = {
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
    "train_loss": "train loss",
    "test_loss": "test loss",
    "test_nse": "test NSE, Σ‖T − O‖² / Σ‖T‖²",
    **{f"{k}_{{h}}": f"{head} at layer {{h}} (°): {what}" for k, (head, what) in ANGLES.items()},
    "ewbe_pos": "examples whose top hidden change moves the output along the error, eᵀWBe > 0",
}


def metric_name(key: str) -> str:
    """A history column in words (``test_acc`` → "test accuracy", ``angle_2`` → "rule∠BP at
    layer 2 (°): ..."); an unknown key is returned as it is."""
    m = re.fullmatch(r"(.*_)(\d+)", key)
    if m and f"{m[1]}{{h}}" in METRICS:
        return METRICS[f"{m[1]}{{h}}"].format(h=int(m[2]))
    return METRICS.get(key, key)


def mean_std(mean: float, std: float | None = None, *, digits: int = 2) -> str:
    """``mean ± std`` rounded where the spread makes further digits noise.

    The std keeps ``digits`` significant digits and the mean is shown to the same decimal
    place; values below 10⁻³ or from 10⁵ on are written in scientific notation, the mean then to
    the std's last digit too. Without a spread (one seed, or ``std`` 0 or None) the mean alone,
    with 4 significant digits.

    Examples
    --------
    >>> mean_std(0.97234, 0.00123)
    '0.9723 ± 0.0012'
    >>> mean_std(1.234e-9, 4.1e-11)
    '1.234e-09 ± 4.1e-11'
    >>> mean_std(0.5)
    '0.5'
    """
    if not math.isfinite(mean):
        return str(mean)
    if not std or not math.isfinite(std):
        return f"{mean:.4g}"
    e_std = math.floor(math.log10(std))
    big = max(abs(mean), std)
    if big < 1e-3 or big >= 1e5:
        e_mean = math.floor(math.log10(abs(mean))) if mean else e_std
        k = max(0, digits - 1 + e_mean - e_std)
        return f"{mean:.{k}e} ± {std:.{digits - 1}e}"
    d = digits - 1 - e_std
    if d <= 0:
        step = 10.0**-d
        return f"{round(mean / step) * step:.0f} ± {round(std / step) * step:.0f}"
    return f"{mean:.{d}f} ± {std:.{d}f}"


def plural(n: int, word: str) -> str:
    """``1 seed``, ``3 seeds``: a count with its noun."""
    return f"{n} {word}" + ("" if n == 1 else "s")


BOOKKEEPING = ("epoch", "member", "seed", "step", "lr", "time_s")
"""History columns that say where a row stands (epoch, member, schedule, clock), not what was
measured: every other column of a history row is a metric."""


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by ``None``.

    Containers (dict, list, tuple) are copied recursively; numpy scalars are turned into Python
    numbers. The result can be written with ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar / 0-d
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def final_rows(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the last epoch of a history (one per member), in order."""
    if not history:
        return []
    last = max(r["epoch"] for r in history)
    return [dict(r) for r in history if r["epoch"] == last]


def text_table(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    indent: str = "",
    right: bool = True,
    rule: bool = True,
) -> str:
    """Aligned plain-text columns, two spaces apart: the first left-aligned, the others
    right-aligned (left-aligned too without ``right``), a rule of dashes under the head (none
    without ``rule``). The one text-table aligner of lpfa and hwmodels."""
    cols = [[str(c) for c in r] for r in (head, *rows)]
    widths = [max(len(r[i]) for r in cols) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        pad = str.rjust if right else str.ljust
        cells = zip(rest, widths[1:], strict=True)
        parts = [first.ljust(widths[0]), *(pad(c, w) for c, w in cells)]
        return (indent + "  ".join(parts)).rstrip()

    lines = [line(r) for r in cols]
    if rule:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def comparison_table(
    rows: Sequence[dict[str, Any]], *, unit: str = "%", better: str = "higher"
) -> str:
    """A markdown table: label, ours (mean ± std, n), paper, difference, and a verdict.

    Each row has ``label``, ``mean``, ``std``, ``n``, ``paper`` (None if the paper gives none),
    and optionally ``target`` (the bar the number must clear, same unit). A row with
    ``diverged`` (the epoch) instead of ``mean`` and ``std`` is shown as "diverged in epoch k",
    without numbers, and does not meet its target.
    """
    lines = [
        f"| setting | ours ({unit}) | seeds | paper ({unit}) | ours − paper | target "
        "| meets target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = "—" if r.get("paper") is None else f"{r['paper']:.1f}"
        target = r.get("target")
        tgt = "—" if target is None else _target(target, better)
        if r.get("diverged") is not None:
            ours, diff, ok = f"**diverged in epoch {r['diverged']}**", "—", "**no** (diverged)"
        else:
            ours = f"{r['mean']:.2f} ± {r['std']:.2f}"
            diff = "—" if r.get("paper") is None else f"{r['mean'] - r['paper']:+.2f}"
            ok = _verdict(r["mean"], target, better)
        lines.append(f"| {r['label']} | {ours} | {r['n']} | {paper} | {diff} | {tgt} | {ok} |")
    return "\n".join(lines) + "\n"


def _target(target: float | tuple[float, float], better: str) -> str:
    """A target as shown: a range ``lo–hi``, or ``≥ t`` / ``≤ t``."""
    if isinstance(target, tuple):
        return f"{target[0]:.1f}–{target[1]:.1f}"
    return f"{'≥' if better == 'higher' else '≤'} {target:.1f}"


def _verdict(mean: float, target: float | tuple[float, float] | None, better: str) -> str:
    """The verdict: yes when ``mean`` is inside a target range or on the right side of a bar,
    a dash without a target."""
    if target is None:
        return "—"
    if isinstance(target, tuple):
        met = target[0] <= mean <= target[1]
    else:
        met = mean >= target if better == "higher" else mean <= target
    return "yes" if met else "**no**"


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``history.csv`` with numbers parsed (empty cells become None)."""
    out = []
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                if v == "":
                    parsed[k] = None
                else:
                    try:
                        parsed[k] = int(v)
                    except ValueError:
                        try:
                            parsed[k] = float(v)
                        except ValueError:
                            parsed[k] = v
            out.append(parsed)
    return out


def claims_table(rows: Sequence[tuple[str, str, str, str]]) -> str:
    """A markdown table of (what the source claims, the quantity, what lpfa measured, verdict)."""
    lines = [
        "| source claims | quantity | lpfa measured | verdict |",
        "|---|---|---|---|",
        *(f"| {a} | {q} | {m} | {v} |" for a, q, m, v in rows),
    ]
    return "\n".join(lines) + "\n"
