"""The ``lpfa`` command line.

lpfa train CONFIG.toml [--set section.field=value ...] [--out DIR] [--threads N] [--quiet] [--table]
           [--estimate] [--member-threads N]
"""

import argparse
import contextlib
import os
import re
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any

from lpfa import __version__
from lpfa import config as C
from lpfa.config import add_set_option  # its home is lpfa.config; kept here for importers
from lpfa.reference import describe_run
from lpfa.report import ANGLES, mean_std, metric_name, plural, text_table

__all__ = ["main"]


# the final metrics a summary shows, in this order; accuracies are shown in %
_FINAL = ("test_acc", "train_acc", "test_loss", "train_loss", "test_nse")
_PERCENT = ("test_acc", "train_acc", "ewbe_pos")


def _value(summary: dict[str, Any], key: str, *, percent: bool = True) -> str | None:
    """``mean ± std`` of a final metric over the members (fractions in % with ``percent``), or
    None where it was not measured."""
    if f"{key}_mean" not in summary:
        return None
    scale = 100.0 if percent and key in _PERCENT else 1.0
    n = sum(m.get(key) is not None for m in summary["members"])
    std = summary[f"{key}_std"] * scale if n > 1 else None
    return mean_std(summary[f"{key}_mean"] * scale, std) + (" %" if scale != 1.0 else "")


def summary_text(summary: dict[str, Any]) -> str:
    """The end of ``lpfa train``: final metrics as mean ± std over the seeds, in words, and the
    angles per hidden layer with what they measure."""
    n = len(summary["members"])
    over = f"mean±std over {plural(n, 'seed')}" if n > 1 else "1 seed"
    lines = [f"final, epoch {summary['epoch']} ({over}):"]
    rows = [[metric_name(k), v] for k in _FINAL if (v := _value(summary, k)) is not None]
    lines.append(text_table(["metric", "value"], rows, indent="  "))
    layers = sorted(
        {
            int(k[len("angle_") : -len("_mean")])
            for k in summary
            if re.fullmatch(r"angle_\d+_mean", k)
        }
    )
    kinds = [k for k in ANGLES if any(f"{k}_{h}_mean" in summary for h in layers)]
    if layers and kinds:
        lines += [
            "",
            "angles (°) per hidden layer, 1 = the lowest; 0° = same direction, 90° = unrelated:",
        ]
        rows = [[str(h), *(_value(summary, f"{k}_{h}") or "—" for k in kinds)] for h in layers]
        lines.append(text_table(["layer", *(ANGLES[k][0] for k in kinds)], rows, indent="  "))
        lines += [f"  {ANGLES[k][0]}: {ANGLES[k][1]}" for k in kinds]
    if (v := _value(summary, "ewbe_pos")) is not None:
        lines += ["", f"{metric_name('ewbe_pos')}: {v}"]
    return "\n".join(lines)


def member_table(summary: dict[str, Any]) -> str:
    """Every final metric of every member (``--table``): one row per history column, one
    column per seed, then mean ± std; each column's meaning under the table."""
    members = summary["members"]
    keys = [k for k in members[0] if k != "seed" and any(m[k] is not None for m in members)]
    head = ["column", *(f"seed {m['seed']}" for m in members)]
    rows = []
    for k in keys:
        cells = ["—" if m[k] is None else f"{m[k]:.4g}" for m in members]
        mean = [_value(summary, k, percent=False) or "—"] if len(members) > 1 else []
        rows.append([k, *cells, *mean])
    if len(members) > 1:
        head.append("mean±std")
    legend = [f"  {k}: {metric_name(k)}" for k in keys if metric_name(k) != k]
    return "\n".join([text_table(head, rows, indent="  "), "", *legend])


def _epoch_line(rows: list[dict[str, Any]]) -> str:
    """An epoch's progress line: test accuracy (or NSE) as mean ± std over the members."""
    key = "test_acc" if rows[0]["test_acc"] is not None else "test_nse"
    scale = 100.0 if key in _PERCENT else 1.0
    vals = [r[key] * scale for r in rows]
    std = statistics.stdev(vals) if len(vals) > 1 else None
    unit = " %" if scale != 1.0 else ""
    return f"{metric_name(key)} {mean_std(statistics.fmean(vals), std)}{unit}"


def _above_progress_bar() -> contextlib.AbstractContextManager:
    """A block whose prints go above the progress bar: the bar (on stderr) is cleared first and
    drawn again after, so no fragment of it is left in the middle of a printed line."""
    from tqdm import tqdm

    return tqdm.external_write_mode()


def _stdout_to_devnull() -> None:
    """Send the rest of stdout nowhere: its reader has gone (``lpfa train ... | head``).

    The recipe of the Python docs (signal module, "Note on SIGPIPE"): a later flush, at exit
    included, then writes to the null device instead of raising BrokenPipeError again.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def say(*parts: Any) -> None:
    """``print`` to stdout, flushed; once stdout's reader has gone, print nowhere and go on.

    What a run prints is a view of its files; a closed pipe must not stop the run.
    """
    try:
        print(*parts, flush=True)
    except BrokenPipeError:
        _stdout_to_devnull()


def _train(args: argparse.Namespace) -> int:
    """``lpfa train``; exit status 0 done, 2 bad input (nothing written), 3 diverged, 1 a
    folder that cannot be written any more (disk full), 130 interrupted (Ctrl-C)."""
    from lpfa.data import load
    from lpfa.runfiles import RunWriter
    from lpfa.threads import member_count, set_threads
    from lpfa.training import DivergenceError, preflight, train

    cfg = C.load(args.config, args.set)
    set_threads(args.threads)  # before anything is written: a bad value leaves --out untouched
    member_threads = 1 if args.member_threads is None else member_count(args.member_threads)
    if args.estimate:  # a short calibration on random inputs; nothing is loaded or written
        from lpfa.estimate import estimate, estimate_text

        say(estimate_text(cfg, estimate(cfg)))
        return 0
    out = Path(args.out) if args.out else Path("results") / cfg.name
    preflight(cfg)  # backend, batch size, memory: refused before anything is allocated or written
    data = load(cfg.data, cfg.model.sizes, cfg.model.dtype)
    writer = RunWriter(out, cfg)  # summary.json says "running" from here on
    given = C.apply_overrides(C.read_toml(args.config), args.set)
    say(f"lpfa train {cfg.name} → {out}")
    say(textwrap.indent(describe_run(cfg, given=given), "  "))

    def on_epoch(rows: list[dict[str, Any]]) -> None:
        writer.rows(rows)
        if not args.quiet:
            with _above_progress_bar():
                say(f"  epoch {rows[0]['epoch']:>4}  {_epoch_line(rows)}")

    def stopped(why: str) -> str:
        """Mark the folder interrupted at the first epoch not written; the one line to print."""
        k = writer.next_epoch()
        kept = f"keeps epochs 0..{k - 1}" if k else "keeps no epoch"
        line = f"{why} at epoch {k}: {out} {kept}"
        with contextlib.suppress(OSError):  # a full disk may refuse this too: "running" stays
            writer.summary({}, status="interrupted", epoch=k, message=line)
        return line

    try:
        result = train(
            cfg,
            data=data,
            progress=None if not args.quiet else False,
            on_epoch=on_epoch,
            member_threads=member_threads,
        )
        writer.summary(result.summary, status="done", meta=result.meta)
    except DivergenceError as err:
        writer.summary({}, status="diverged", error=str(err))
        print(f"error: {err} (history so far is in {writer.history_path})", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(stopped("interrupted"), file=sys.stderr)
        return 130
    except OSError as err:  # disk full, folder made read-only or removed during the run
        where = err.filename or out
        print(
            f"error: {stopped('stopped')}: cannot write {where}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    say()
    say(summary_text(result.summary))
    if args.table:
        say("\nper seed:")
        say(member_table(result.summary))
    say(f"\nwrote {out}/config.json, history.csv, summary.json ({result.meta['seconds']:.1f} s)")
    return 0


def _check_quantizer(args: argparse.Namespace) -> int:
    from lpfa.testing import check_quantizer_main  # needs hypothesis

    return check_quantizer_main(args.args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lpfa``."""
    from lpfa.threads import DEFAULT_THREADS, ENV_VAR

    p = argparse.ArgumentParser(prog="lpfa", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"lpfa {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one configuration (an ensemble over its seeds)")
    t.add_argument("config", help="a TOML run configuration, e.g. configs/baldi2018_mnist.toml")
    add_set_option(t)
    t.add_argument("--out", help="output folder (default: results/<name>)")
    t.add_argument("--quiet", action="store_true", help="no per-epoch lines or progress bar")
    t.add_argument(
        "--table",
        action="store_true",
        help="also print every final metric of every seed (summary.json holds them too)",
    )
    t.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's expected time and memory from a short calibration (about 2 s), "
        "and exit without training or writing anything",
    )
    t.add_argument(
        "--threads",
        metavar="N",
        help=f"BLAS and OpenMP threads (default: ${ENV_VAR}, else {DEFAULT_THREADS})",
    )
    t.add_argument(
        "--member-threads",
        metavar="N",
        help="step the seeds as N sub-ensembles at once, one thread and one BLAS thread each "
        "(runs whose step draws no runtime noise, on numpy; default 1: the whole ensemble)",
    )
    t.set_defaults(func=_train)
    q = sub.add_parser(
        "check-quantizer",
        help="run the quantizer test kit on module:callable",
        add_help=False,  # the kit parses its own options (--help included)
    )
    q.add_argument("args", nargs=argparse.REMAINDER)
    q.set_defaults(func=_check_quantizer)
    for add in _plugins():
        add(sub)
    return p


def _plugins() -> list:
    """``add_commands(subparsers)`` functions of the lpfa modules with commands, and of
    installed packages that declare the ``lpfa.commands`` entry point (hwmodels' ``audit``).

    Loading them through entry points keeps lpfa free of imports of those packages.
    """
    from importlib import import_module
    from importlib.metadata import entry_points

    adders = []
    for name in BUILTIN_COMMANDS:
        try:
            adders.append(import_module(name).add_commands)
        except ModuleNotFoundError as err:  # an optional dependency of that command is missing
            if err.name == name:
                raise
    for ep in entry_points(group="lpfa.commands"):
        try:
            adders.append(ep.load())
        except Exception as err:  # a broken plug-in must not take the other commands down
            print(f"warning: lpfa command plug-in {ep.value} not loaded: {err}", file=sys.stderr)
    return adders


# modules of lpfa that add their own subcommands
BUILTIN_COMMANDS: tuple[str, ...] = ("lpfa.sweep.cli", "lpfa.devices", "lpfa.doctables")


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status says how it ended.

    0 done; 1 a failure that is not the input's fault (e.g. a disk that fills up during a run);
    2 bad input, one line on stderr naming the field, the value and what is allowed, nothing
    written; 3 a run diverged; 130 interrupted by Ctrl-C or SIGTERM (one line, no traceback).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check-quantizer"]:  # the kit owns every option after the command
        return _check_quantizer(argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    from lpfa.data import DataError
    from lpfa.runfiles import terminate_as_interrupt

    terminate_as_interrupt()
    try:
        return args.func(args)
    except (C.ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout's reader has gone (lpfa ... | head)
        _stdout_to_devnull()
        return 1


if __name__ == "__main__":
    sys.exit(main())
