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
    and optionally ``target`` (the bar the number must clear, same unit).
    """
    lines = [
        f"| setting | ours ({unit}) | seeds | paper ({unit}) | ours − paper | target "
        "| meets target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours = f"{r['mean']:.2f} ± {r['std']:.2f}"
        paper = "—" if r.get("paper") is None else f"{r['paper']:.1f}"
        diff = "—" if r.get("paper") is None else f"{r['mean'] - r['paper']:+.2f}"
        target = r.get("target")
        if target is None:
            tgt, ok = "—", "—"
        else:
            sign = "≥" if better == "higher" else "≤"
            if isinstance(target, tuple):
                tgt = f"{target[0]:.1f}–{target[1]:.1f}"
                ok = "yes" if target[0] <= r["mean"] <= target[1] else "**no**"
            else:
                tgt = f"{sign} {target:.1f}"
                met = r["mean"] >= target if better == "higher" else r["mean"] <= target
                ok = "yes" if met else "**no**"
        lines.append(f"| {r['label']} | {ours} | {r['n']} | {paper} | {diff} | {tgt} | {ok} |")
    return "\n".join(lines) + "\n"


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
