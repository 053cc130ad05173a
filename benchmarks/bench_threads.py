"""BLAS threads: lpfa's default against 1 and 2 threads, on an idle machine and with one core busy.

Two jobs, each run as the command a user types, in a fresh process:

- ``quickstart``: ``lpfa train configs/quickstart.toml`` (the README's first command: three seeds
  of RBP on MNIST, 784-100-10, 3 epochs); the settings are no flag (lpfa's default) and
  ``--threads 1`` / ``--threads 2``.
- ``sweep``: ``lpfa sweep benchmarks/threads_sweep.toml --executor process --workers 2``, 12 tiny
  runs (6 seeds × RBP and SRBP, one run per seed, 1 000 examples, 1 epoch); the settings are
  ``LPFA_THREADS`` unset (lpfa's default: cores ÷ workers per worker) and ``LPFA_THREADS=1`` /
  ``2``.

Each is timed idle and *loaded*: with a competing process (a Python loop spinning on one core)
started before and stopped after. Blocks are interleaved round-robin: block k times every
setting of every job, idle and then loaded, in an order rotated by k, after one untimed warm-up
of every setting idle (data cache, imports). The thread count every run recorded (its
``versions``) is read back and shown, so a setting that did not apply is visible.

Reported per job and condition: wall seconds per setting, median over blocks with min–max; the
ratio to the best setting (the one with the lowest median), taken block by block, median with
min–max; ✓/✗ compare lpfa's default with the target, within 1.2× of the best. The header names
the BLAS library, its kernel, ``OPENBLAS_CORETYPE`` and the cores. Nothing is asserted.

Runtime: about 6 minutes with the defaults (3 blocks) on 2 cores, most of it the 2-thread
settings with a core busy; ``--quick`` (1 block, the quickstart for 1 epoch) takes about
2 minutes and is only a smoke test.

    python benchmarks/bench_threads.py [--quick] [--blocks K] [--jobs quickstart sweep]
                                       [--conditions idle loaded] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import cell, ratios, rotated

from lpfa.threads import DEFAULT_THREADS, ENV_VAR, blas_info, usable_cores

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, int | None] = {"lpfa default": None, "1 thread": 1, "2 threads": 2}
TARGET = 1.2  # lpfa's default within this factor of the best setting
SPINNER = "while True: pass"
JOBS = ["quickstart", "sweep"]
CONDITIONS = ["idle", "loaded"]


def command(job: str, threads: int | None, out: Path, quick: bool) -> tuple[list[str], dict]:
    """The command line and environment of one timed run of ``job`` with ``threads``."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    lpfa = [sys.executable, "-m", "lpfa.cli"]
    if job == "quickstart":
        argv = [*lpfa, "train", "configs/quickstart.toml", "--quiet", "--out", str(out)]
        if quick:
            argv += ["--set", "train.epochs=1"]
        if threads is not None:
            argv += ["--threads", str(threads)]
    else:
        spec = "benchmarks/threads_sweep.toml"
        argv = [*lpfa, "sweep", spec, "--executor", "process", "--workers", "2", "--quiet"]
        argv += ["--store", str(out / "sweep.sqlite")]
        if threads is not None:
            env[ENV_VAR] = str(threads)
    return argv, env


def recorded_threads(job: str, out: Path) -> set:
    """The BLAS thread counts the run's processes recorded in their versions."""
    if job == "quickstart":
        meta = json.loads((out / "summary.json").read_text()).get("meta", {})
        return {meta.get("versions", {}).get("threads")}
    with sqlite3.connect(f"file:{out / 'sweep.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT versions_json FROM runs").fetchall()
    return {json.loads(v or "{}").get("threads") for (v,) in rows}


def time_run(job: str, threads: int | None, quick: bool) -> tuple[float, set]:
    """Wall seconds of one run of ``job`` into a fresh folder, and the threads it recorded."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        out.mkdir()
        argv, env = command(job, threads, out, quick)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
        return seconds, recorded_threads(job, out)


class Spinner:
    """A competing process that keeps one core busy while the ``with`` block runs."""

    def __enter__(self) -> Spinner:
        self.proc = subprocess.Popen([sys.executable, "-c", SPINNER])
        time.sleep(0.5)  # let it start and take its core
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait()


def report(job: str, cond: str, secs: dict[str, list[float]], seen: dict[str, set]) -> dict:
    """Print one job × condition table; return its ratios to the best setting."""
    best = min(secs, key=lambda s: statistics.median(secs[s]))
    per_block = {s: ratios(xs, secs[best]) for s, xs in secs.items()}
    print(f"\n### {job}, {cond}\n")
    print("| setting | threads recorded | seconds, median (min–max) | ÷ best, median (min–max) |")
    print("|---|---|---|---|")
    for s, xs in secs.items():
        mark = ""
        if SETTINGS[s] is None:
            mark = " ✓" if statistics.median(per_block[s]) <= TARGET else " ✗"
        threads = ", ".join(str(t) for t in sorted(seen[s], key=str))
        print(f"| {s} | {threads} | {cell(xs, '.2f')} | {cell(per_block[s], '.2f')}{mark} |")
    return {"best": best, "seconds": secs, "ratios": per_block}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 block, quickstart 1 epoch (smoke)")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--jobs", nargs="+", choices=JOBS, default=JOBS)
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=CONDITIONS)
    p.add_argument("--json", help="write every block's numbers here")
    args = p.parse_args(argv)
    if args.quick:
        args.blocks = 1
    info = blas_info()
    print(
        f"## BLAS threads, {args.blocks} block(s), {usable_cores()} cores, "
        f"BLAS {info['blas']} {info['blas_version']} ({info['blas_threading']}, "
        f"kernel {info['blas_architecture']}), OPENBLAS_CORETYPE={info['openblas_coretype']}, "
        f"lpfa default {DEFAULT_THREADS} thread(s) for train, cores ÷ workers in a pool"
    )
    for job in args.jobs:  # warm-up: the data cache, imports, the file system
        for threads in SETTINGS.values():
            time_run(job, threads, args.quick)
    secs = {(j, c): {s: [] for s in SETTINGS} for j in args.jobs for c in args.conditions}
    seen = {(j, c): {s: set() for s in SETTINGS} for j in args.jobs for c in args.conditions}
    for k in range(args.blocks):
        for cond in args.conditions:
            with Spinner() if cond == "loaded" else open(os.devnull):
                for job in args.jobs:
                    for name, threads in rotated(list(SETTINGS.items()), k):
                        seconds, threads_seen = time_run(job, threads, args.quick)
                        secs[job, cond][name].append(seconds)
                        seen[job, cond][name] |= threads_seen
    results = {
        f"{job} {cond}": report(job, cond, secs[job, cond], seen[job, cond]) for job, cond in secs
    }
    print(f"\n✓/✗: lpfa's default within {TARGET}× of the best setting (median of block ratios).")
    if args.json:
        Path(args.json).write_text(json.dumps({"blas": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
