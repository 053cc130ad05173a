"""What every experiment script shares: its flags, running named configs, and its output files.

An experiment reproduces one figure or table: it trains a few named configurations (each an
ensemble over seeds), writes each run's files under ``OUT/<label>/``, one ``results.csv`` of final
metrics per label and seed, and leaves the table and plots to the script.

The run folders are the record; everything else is rebuilt from them. A label whose folder says
``"done"`` or ``"diverged"`` for the same configuration is finished and is not trained again, so
an interrupted experiment resumes where it stopped, ``--only`` chunks merge, and ``--plot-only``
rebuilds ``results.csv``, the table and the plots from what is there. A diverged label is never
reported with the numbers of the epochs before it diverged: every table and plot marks it.
A protocol too long for one sitting runs as a resumable sweep instead; :func:`collect_store`
reads its finished seeds back as the same :class:`Results`, so the script's table and plots are
drawn from the store as they are from run folders.

Exit status of a script (:func:`script`): 0, or 3 when a label diverged (after writing
everything else), 2 on bad input (one line naming the field), 130 after Ctrl-C.
"""

import argparse
import csv
import dataclasses
import functools
import io
import json
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from lpfa.backend import BACKENDS
from lpfa.config import (
    ChannelConfig,
    ConfigError,
    RunConfig,
    add_set_option,
    apply_overrides,
    from_dict,
    to_dict,
)
from lpfa.data import DataError
from lpfa.report import final_rows, plural, read_history
from lpfa.runfiles import (
    RunWriter,
    atomic_write_text,
    check_out,
    dump_json,
    read_status,
    terminate_as_interrupt,
)
from lpfa.sweep.spec import minus_defaults
from lpfa.training import DivergenceError, preflight, train

__all__ = [
    "EXIT_DIVERGED",
    "FINISHED",
    "Interrupted",
    "Results",
    "accuracy_rows",
    "collect",
    "collect_store",
    "final_rows",
    "finished",
    "obtain",
    "out_folder",
    "parser",
    "run_all",
    "script",
    "shrink",
    "variants",
    "write_results",
]

#: Statuses of a run folder whose run has ended by itself: training the same configuration
#: again gives the same outcome, so it is kept.
FINISHED = ("done", "diverged")

#: Exit status when a label diverged (as ``lpfa train``).
EXIT_DIVERGED = 3


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a label: its folder says "interrupted"; the finished labels are kept."""

    def __init__(self, label: str, epoch: int, out: Path):
        self.label, self.epoch, self.out = label, epoch, out
        super().__init__(
            f"interrupted: {label} at epoch {epoch}; finished labels are kept in {out}; "
            "run the same command again to resume"
        )


@dataclasses.dataclass
class Results:
    """The finished labels of an experiment, read back from its run folders.

    Attributes
    ----------
    out : Path
        The experiment's folder.
    runs : dict
        label -> history rows, for every finished label (done or diverged), in the experiment's
        order.
    diverged : dict
        label -> the epoch in which it diverged.
    seeds : dict
        label -> the seeds of its members.
    missing : list of str
        Labels of the experiment without a finished run in ``out``.
    configs : dict
        label -> the experiment's config (``--set`` applied), when :func:`obtain` made it.
    """

    out: Path
    runs: dict[str, list[dict[str, Any]]]
    diverged: dict[str, int]
    seeds: dict[str, list[int]]
    missing: list[str]
    configs: dict[str, RunConfig] = dataclasses.field(default_factory=dict)

    @property
    def done(self) -> dict[str, list[dict[str, Any]]]:
        """label -> history of the labels that finished without diverging."""
        return {k: h for k, h in self.runs.items() if k not in self.diverged}

    @property
    def exit_code(self) -> int:
        """3 when any label diverged, else 0."""
        return EXIT_DIVERGED if self.diverged else 0

    def report(self) -> None:
        """One line on stderr naming the diverged labels, if any."""
        if self.diverged:
            names = ", ".join(f"{k} (epoch {e})" for k, e in self.diverged.items())
            print(f"diverged: {names}; see {self.out / 'results.csv'}", file=sys.stderr)


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """The flags every experiment takes: --quick --backend --seeds --out --plot-only --set.

    Without ``--out``, results go to ``default_out``, and ``--quick`` runs to
    ``default_out-quick`` (:func:`out_folder`), so a quick run never replaces a full one.
    """
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick", action="store_true", help="a small version that runs in minutes on a CPU"
    )
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument(
        "--seeds", type=int, default=None, help="members per configuration (ensemble size)"
    )
    p.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: {default_out}, with --quick {default_out}-quick)",
    )
    p.add_argument(
        "--plot-only",
        action="store_true",
        help="rebuild results.csv, table and plots from the run folders in OUT",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_set_option(p, "a field of every configuration")
    p.set_defaults(default_out=default_out)
    return p


def out_folder(args: argparse.Namespace) -> Path:
    """``--out`` if given, else the script's default folder (``-quick`` appended for --quick)."""
    if args.out:
        return Path(args.out)
    return Path(args.default_out + ("-quick" if args.quick else ""))


def script(body: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap an experiment's ``main(argv) -> int``: one line and an exit status, no traceback.

    Bad input (:class:`~lpfa.config.ConfigError`, :class:`~lpfa.data.DataError`) exits 2,
    Ctrl-C exits 130, a file that cannot be written (disk full) exits 1; each prints one line on
    stderr. The body returns 0, or :data:`EXIT_DIVERGED`.
    """

    @functools.wraps(body)
    def main(argv: list[str] | None = None) -> int:
        from lpfa.threads import set_threads

        terminate_as_interrupt()  # kill (SIGTERM) leaves the folders as Ctrl-C does
        try:
            set_threads()  # LPFA_THREADS, else the measured default; a bad value exits 2
            return body(argv)
        except (ConfigError, DataError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as err:
            print(str(err) if isinstance(err, Interrupted) else "interrupted", file=sys.stderr)
            return 130
        except OSError as err:  # disk full, a folder made read-only during the run
            print(
                f"error: cannot write {err.filename or ''}: {err.strerror or err}", file=sys.stderr
            )
            return 1

    return main


def _plain(cfg: RunConfig) -> dict[str, Any]:
    """A config as ``config.json`` stores it (strict JSON, read back)."""
    return json.loads(dump_json(to_dict(cfg)))


def finished(folder: Path, cfg: RunConfig) -> bool:
    """Whether ``folder`` holds a finished run (:data:`FINISHED`) of exactly ``cfg``."""
    if read_status(folder) not in FINISHED:
        return False
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        return False
    # the same configuration up to fields added since (at their defaults), as the sweep store
    default = _plain(RunConfig())
    return minus_defaults(saved["config"], default) == minus_defaults(_plain(cfg), default)


def _write_index(out: Path, configs: Mapping[str, RunConfig]) -> None:
    """``OUT/config.json``: every label's config, those of earlier runs kept (merged)."""
    path = out / "config.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    index.update({label: to_dict(c) for label, c in configs.items()})
    atomic_write_text(path, dump_json(index) + "\n")


def run_all(
    configs: Mapping[str, RunConfig], out: Path, *, progress: bool | None = None
) -> dict[str, str]:
    """Train each config not yet finished in ``OUT/<label>/`` (config.json, history.csv,
    summary.json, written by :class:`~lpfa.runfiles.RunWriter`).

    A label whose folder holds a finished run of the same config is kept, not retrained. A
    configuration that diverges is recorded (its summary says so, with the epoch) and the others
    still run.

    Returns
    -------
    dict
        label -> "done", "diverged" or "kept".

    Raises
    ------
    Interrupted
        On Ctrl-C; the current label's folder then says "interrupted".
    """
    out = check_out(out)
    _write_index(out, configs)
    status: dict[str, str] = {}
    for label, cfg in configs.items():
        folder = out / label
        if finished(folder, cfg):
            print(f"[{label}] {read_status(folder)} earlier with this config: kept", flush=True)
            status[label] = "kept"
            continue
        status[label] = _train_one(label, cfg, folder, progress)
    return status


def _train_one(label: str, cfg: RunConfig, folder: Path, progress: bool | None) -> str:
    """Train one label into ``folder``; its final status."""
    writer = RunWriter(folder, cfg)
    print(
        f"[{label}] {cfg.channel.rule.value}, {plural(cfg.n_members, 'seed')}, "
        f"{plural(cfg.train.epochs, 'epoch')}",
        flush=True,
    )
    try:
        result = train(cfg, progress=progress, on_epoch=writer.rows)
    except DivergenceError as err:
        print(f"[{label}] {err}", file=sys.stderr)
        writer.summary(
            {}, status="diverged", epoch=err.epoch, member=err.member, seed=err.seed, error=str(err)
        )
        return "diverged"
    except KeyboardInterrupt:
        epoch = writer.next_epoch()  # epochs before it are in history.csv
        writer.summary({}, status="interrupted", epoch=epoch)
        raise Interrupted(label, epoch, folder.parent) from None
    writer.summary(result.summary, status="done", meta=result.meta)
    return "done"


def _diverged_epoch(folder: Path, history: list[dict[str, Any]]) -> int:
    """The epoch a diverged run stopped in (summary.json's ``epoch``, else after its history)."""
    try:
        epoch = json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("epoch")
    except (OSError, ValueError, AttributeError):
        epoch = None
    if isinstance(epoch, int):
        return epoch
    return max((r["epoch"] for r in history), default=-1) + 1


def collect(out: Path, labels: Sequence[str]) -> Results:
    """The finished runs among ``labels`` in ``out``, read from their folders."""
    runs, diverged, seeds, missing = {}, {}, {}, []
    for label in labels:
        folder = out / label
        status = read_status(folder)
        if status not in FINISHED:
            missing.append(label)
            continue
        path = folder / "history.csv"
        runs[label] = read_history(path) if path.is_file() else []
        try:
            saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            seeds[label] = list(saved["seeds"])
        except (OSError, ValueError, KeyError, TypeError):
            seeds[label] = sorted({r["seed"] for r in runs[label]})
        if status == "diverged":
            diverged[label] = _diverged_epoch(folder, runs[label])
    return Results(out=out, runs=runs, diverged=diverged, seeds=seeds, missing=missing)


def collect_store(
    store: str | Path | Any,
    sweep: str,
    labels: Sequence[str],
    out: Path,
    *,
    config_hashes: Collection[str] | None = None,
) -> Results:
    """The finished runs of ``labels`` in one sweep of a results store, as :func:`collect` reads
    run folders, for a script that draws its table and plots from a long sweep.

    A label's history is the rows of its finished runs (one per seed, numbered as the members
    of one ensemble) in seed order; a label with a ``diverged`` run is diverged, in the epoch
    after the last one stored; a label with neither is missing. Runs still pending
    (``running``, ``failed``, ``interrupted``) are left out, so a partly run sweep gives the
    seeds finished so far. ``store``: a path, or an open
    :class:`~lpfa.sweep.store.Store`. ``config_hashes``: only runs of these configurations (a
    spec's runs as it is now, not those an older version of it left in the store).

    Raises
    ------
    ConfigError
        ``--store``: the file cannot be read as a store, or holds no finished run of ``sweep``.
    """
    from lpfa.sweep.store import reading

    runs, diverged, seeds, missing = {}, {}, {}, []
    with reading(store) as db:
        records = db.records(sweep, status=FINISHED, config_hashes=config_hashes)
        if not records:
            raise ConfigError("--store", str(store), f"holds no finished run of sweep {sweep!r}")
        for label in labels:
            mine = sorted((r for r in records if r["label"] == label), key=lambda r: r["seed"])
            if not mine:
                missing.append(label)
                continue
            histories = {r["seed"]: (r["status"], db.epochs(r["id"])) for r in mine}
            bad = [h for status, h in histories.values() if status == "diverged"]
            if bad:
                diverged[label] = min(max((e["epoch"] for e in h), default=-1) + 1 for h in bad)
            # the members of one ensemble, as a run folder's history numbers them
            runs[label] = [
                {**row, "member": m} for m, (_, h) in enumerate(histories.values()) for row in h
            ]
            seeds[label] = list(histories)
    return Results(out=out, runs=runs, diverged=diverged, seeds=seeds, missing=missing)


def write_results(results: Results) -> Path:
    """``results.csv``: the last epoch of every finished label and member, with its ``status``.

    A diverged label has one row per member with ``status`` "diverged", ``epoch`` the epoch it
    diverged in, and every metric empty.
    """
    rows: list[dict[str, Any]] = []
    for label, history in results.runs.items():
        if label in results.diverged:
            blank = dict.fromkeys(history[0] if history else ())  # its columns, no numbers
            epoch = results.diverged[label]
            rows += [
                {"label": label, "status": "diverged", **blank, "epoch": epoch, "member": m,
                 "seed": s}
                for m, s in enumerate(results.seeds[label])
            ]  # fmt: skip
        else:
            rows += [{"label": label, "status": "done", **r} for r in final_rows(history)]
    fields: list[str] = ["label", "status"]
    for r in rows:
        fields += [k for k in r if k not in fields]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in rows)
    return atomic_write_text(results.out / "results.csv", text.getvalue())


def variants(base: RunConfig, channels: Mapping[str, dict[str, Any]]) -> dict[str, RunConfig]:
    """One config per label: ``base`` with its channel replaced by the given fields."""
    return {
        label: dataclasses.replace(
            base, name=label, channel=from_dict(ChannelConfig, {**to_dict(base.channel), **kw})
        )
        for label, kw in channels.items()
    }


def accuracy_rows(
    results: Results,
    paper: Mapping[str, float | None],
    targets: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Rows for :func:`lpfa.report.comparison_table`: final test accuracy (%) over the seeds of
    each label (one configuration); a diverged label's row says so and has no numbers."""
    rows = []
    for key, history in results.runs.items():
        label = (labels or {}).get(key, key)
        common = {"n": len(results.seeds[key]), "paper": paper.get(key)}
        common["target"] = (targets or {}).get(key)
        if key in results.diverged:
            rows.append({"label": label, "diverged": results.diverged[key], **common})
            continue
        last = final_rows(history)
        if not last:
            continue
        acc = [100 * r["test_acc"] for r in last]
        mean = sum(acc) / len(acc)
        std = (sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) ** 0.5 if len(acc) > 1 else 0.0
        epoch = last[0]["epoch"]
        rows.append({**common, "label": f"{label} (epoch {epoch})", "mean": mean, "std": std})
    return rows


def shrink(
    base: RunConfig, *, n_train: int = 5000, n_test: int = 2000, epochs: int = 3
) -> RunConfig:
    """The ``--quick`` version of a config: fewer examples and epochs, everything else kept."""
    return dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, n_train=n_train, n_test=n_test),
        train=dataclasses.replace(base.train, epochs=epochs),
    )


def obtain(
    args: argparse.Namespace,
    configs: Mapping[str, RunConfig],
    only: Sequence[str] | None = None,
) -> Results:
    """Train what is not finished of ``configs`` (only the labels ``only``, if given) into
    :func:`out_folder`, then read every finished label back and write ``results.csv``.

    With ``--plot-only`` nothing is trained. ``--set`` overrides are applied to every config and
    validated before anything is written.

    Raises
    ------
    ConfigError
        A bad ``--set`` (nothing written), or ``--plot-only`` on a folder with no finished run.
    """
    out = out_folder(args)
    if args.set:
        configs = {
            k: from_dict(RunConfig, apply_overrides(to_dict(c), args.set))
            for k, c in configs.items()
        }
    if args.plot_only:
        results = collect(out, list(configs))
        if not results.runs:
            raise ConfigError(
                "--out", str(out), "holds no finished run of this experiment; run it first"
            )
        if results.missing:
            print(f"--plot-only: not finished in {out}: {', '.join(results.missing)}")
    else:
        chosen = {k: c for k, c in configs.items() if only is None or k in only}
        for cfg in chosen.values():  # bad input is refused before anything is written
            preflight(cfg)
        run_all(chosen, out, progress=False if args.quiet else None)
        results = collect(out, list(configs))
    results.configs = dict(configs)
    write_results(results)
    return results
