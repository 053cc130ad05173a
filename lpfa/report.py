"""Tables that set our numbers next to a paper's."""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["comparison_table", "read_history"]


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
