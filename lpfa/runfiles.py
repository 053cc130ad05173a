"""A run's files: ``summary.json`` first (status "running"), ``config.json``, ``history.csv``
row by row, and ``summary.json`` replaced at the end.

Every JSON file is written atomically (a temporary file in the same folder, flushed to disk, then
renamed over the old one), so a reader sees either the old file or the new one, never half of
either. The status is written *before* anything else: a run killed at any point leaves a folder
whose ``summary.json`` says ``"running"`` (or ``"interrupted"`` after Ctrl-C), never an earlier
run's ``"done"``. Rows are appended as epochs finish, so a run that stops keeps every epoch it
completed.

All JSON is strict (RFC 8259): NaN and ±inf are written as ``null``; the status field says why
(``"diverged"``).
"""

import csv
import io
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from lpfa.config import ConfigError, RunConfig, to_dict
from lpfa.report import strict_json
from lpfa.training import versions

__all__ = [
    "STATUSES",
    "RunWriter",
    "atomic_write_text",
    "dump_json",
    "read_status",
    "strict_json",
    "terminate_as_interrupt",
]

#: The values of ``summary.json``'s ``status``: started and not finished (or killed), finished,
#: stopped by divergence, stopped by Ctrl-C (or a write that failed) at the epoch it names.
STATUSES = ("running", "done", "diverged", "interrupted")


def dump_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (non-finite floats become ``null``, see :func:`strict_json`).

    Keyword arguments go to :func:`json.dumps` (``indent=2`` by default).
    """
    kwargs.setdefault("indent", 2)
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    A crash at any point leaves either the old file or the new one. The temporary file is
    removed if writing fails (disk full, read-only folder); the :class:`OSError` is re-raised.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_status(folder: str | Path) -> str | None:
    """The ``status`` in ``folder/summary.json``, or None if it is missing or unreadable."""
    try:
        data = json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else None


def check_out(out: str | Path) -> Path:
    """``out`` as a folder lpfa can write into (created if missing), or a ConfigError on ``--out``.

    Refused: an existing file, a folder that cannot be created, one that is not writable.
    Nothing inside an existing folder is changed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", str(out), "must be a folder; this is an existing file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            "--out", str(out), f"must be a folder lpfa can create ({err.strerror})"
        ) from None
    try:  # a probe file: permissions, read-only mounts and quotas all show
        fd, probe = tempfile.mkstemp(dir=out, prefix=".lpfa-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(
            "--out", str(out), f"must be a writable folder ({err.strerror})"
        ) from None
    return out


class RunWriter:
    """Writes one run's files into ``out`` (created if missing).

    On construction, in this order: ``summary.json`` = ``{"status": "running", "name": ...}``
    (atomic), a stale ``history.csv`` removed, ``config.json`` (atomic).

    Parameters
    ----------
    out : path
        Output folder; an existing file or a folder that is not writable is refused with a
        :class:`~lpfa.config.ConfigError` naming ``--out``, before anything is written.
    cfg : RunConfig
        Saved as ``config.json``, with seeds and package versions.
    """

    def __init__(self, out: str | Path, cfg: RunConfig):
        self.out = check_out(out)
        self.name = cfg.name
        self._fields: list[str] | None = None
        self.summary_path = self.out / "summary.json"
        self.history_path = self.out / "history.csv"
        self.summary({"name": cfg.name}, status="running")
        self.history_path.unlink(missing_ok=True)
        meta = {"config": to_dict(cfg), "seeds": list(cfg.seeds), "versions": versions()}
        atomic_write_text(self.out / "config.json", dump_json(meta) + "\n")

    def rows(self, rows: list[dict[str, Any]]) -> None:
        """Append history rows (use as ``train(..., on_epoch=writer.rows)``).

        Non-finite values are written as ``nan`` / ``inf`` (CSV has no strict form); None as
        an empty cell.
        """
        new = self._fields is None
        fields = list(rows[0]) if new else self._fields
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        # one write call: Ctrl-C (raised between Python operations) cannot leave half a row
        with self.history_path.open("a", newline="", encoding="utf-8") as f:
            f.write(text.getvalue())
        self._fields = fields

    def next_epoch(self) -> int:
        """The first epoch whose rows are not in ``history.csv``, read from the file itself: a
        Ctrl-C between the write and the bookkeeping of :meth:`rows` cannot make it stale."""
        try:
            with self.history_path.open(newline="", encoding="utf-8") as f:
                epochs = [int(r["epoch"]) for r in csv.DictReader(f) if r.get("epoch")]
        except (OSError, ValueError, KeyError):
            epochs = []
        return max(epochs) + 1 if epochs else 0

    def summary(self, summary: dict[str, Any], *, status: str = "done", **extra: Any) -> Path:
        """Replace ``summary.json`` atomically with ``summary``, ``status`` and ``extra`` fields.

        Parameters
        ----------
        summary : dict
            Final metrics per member and mean ± std (or just ``{"name": ...}``).
        status : {"running", "done", "diverged", "interrupted"}
            What the folder holds. ``"interrupted"`` takes ``epoch=k`` (epochs 0..k-1 are in
            the history) and gets ``message="interrupted at epoch k"`` unless one is given.
        **extra
            More fields (``error``, ``meta``, ``epoch``, ...).
        """
        if status not in STATUSES:
            raise ValueError(f"status={status!r}: must be one of {', '.join(STATUSES)}")
        if status == "interrupted" and "epoch" in extra:
            extra.setdefault("message", f"interrupted at epoch {extra['epoch']}")
        data = {"name": self.name, **summary, "status": status, **extra}
        return atomic_write_text(self.summary_path, dump_json(data) + "\n")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Handle SIGTERM (``kill``, a batch system's time limit) as Ctrl-C from here on.

    Python's default for SIGTERM ends the process at once, leaving a run's folder saying
    "running"; as a KeyboardInterrupt it goes through the same path as Ctrl-C: one line, the
    folder (or the store) marked ``interrupted`` at the epoch it reached, exit status 130. Only
    the main thread can install a handler; elsewhere this does nothing.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
