"""A run's files: ``config.json`` first, ``history.csv`` row by row, ``summary.json`` at the end.

Rows are appended as epochs finish, so a run that stops (diverges, is killed) keeps every epoch
it completed.
"""

import csv
import json
from pathlib import Path
from typing import Any

from lpfa.config import RunConfig, to_dict
from lpfa.train import versions

__all__ = ["RunWriter"]


class RunWriter:
    """Writes one run's files into ``out`` (created if missing).

    Parameters
    ----------
    out : path
        Output folder.
    cfg : RunConfig
        Saved at once as ``config.json``, with seeds and package versions.
    """

    def __init__(self, out: str | Path, cfg: RunConfig):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._fields: list[str] | None = None
        self.history_path = self.out / "history.csv"
        self.history_path.unlink(missing_ok=True)
        meta = {"config": to_dict(cfg), "seeds": list(cfg.seeds), "versions": versions()}
        (self.out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")

    def rows(self, rows: list[dict[str, Any]]) -> None:
        """Append history rows (use as ``train(..., on_epoch=writer.rows)``)."""
        new = self._fields is None
        if new:
            self._fields = list(rows[0])
        with self.history_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields)
            if new:
                w.writeheader()
            w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)

    def summary(self, summary: dict[str, Any], **extra: Any) -> Path:
        """Write ``summary.json`` (final metrics per member, mean ± std, and ``extra`` fields)."""
        path = self.out / "summary.json"
        path.write_text(json.dumps({**summary, **extra}, indent=2) + "\n")
        return path
