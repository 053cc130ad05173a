"""The tables of docs/ and the stored runs they come from: ``lpfa tables`` rebuilds every one.

A table in a markdown file that is rebuilt from stored runs sits between two markers:

- ``<!-- lpfa:table NAME -->`` … ``<!-- lpfa:end -->``: the paper table of sweep NAME
  (:func:`lpfa.sweep.report.paper_table`), from its store under ``docs/data/`` and its spec
  under ``experiments/`` (:data:`SWEEPS`);
- ``<!-- lpfa:copy PATH [K] -->`` … ``<!-- lpfa:end -->``: the K-th pipe table (default 1) of
  ``docs/data/PATH``, a table that an experiment script wrote from its run folders (its
  ``--plot-only`` writes it again from them);
- ``<!-- lpfa:runtime GLOB ... -->`` … ``<!-- lpfa:end -->``: what each sweep of the stores,
  and each experiment of the run folders, matching ``docs/data/GLOB`` cost to train
  (:func:`lpfa.sweep.report.runtime_table`).

``lpfa tables`` rewrites every block of the given documents (default: every ``docs/*.md``) from
what is stored; ``lpfa tables --check`` only says which blocks differ (exit 1 if any).
tests/unit/test_docs_tables.py checks every block the same way, one test per block. Paths are
relative to the document: ``docs/data/`` beside it, ``experiments/`` beside its folder.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lpfa.config import ConfigError

__all__ = ["SWEEPS", "Block", "blocks", "rebuilt", "table_of", "write_block"]

#: sweep block name -> (store under docs/data, spec under experiments, the spec's quick sweep)
SWEEPS: dict[str, tuple[str, str, bool]] = {
    "baldi2018_table1": ("baldi2018_table1.sqlite", "baldi2018_table1.toml", False),
    "baldi2018_fig4_sparse": ("baldi2018_fig4_sparse.sqlite", "baldi2018_fig4_sparse.toml", False),
    "baldi2018_fig7_error": ("baldi2018_fig7_error.sqlite", "baldi2018_fig7_error.toml", False),
    "baldi2018_fig8_update": ("baldi2018_fig8_update.sqlite", "baldi2018_fig8_update.toml", False),
    "baldi2018_sec42": ("baldi2018_sec42.sqlite", "baldi2018_sec42.toml", False),
    "conv_fashion_mnist": ("conv_fashion_mnist.sqlite", "conv_fashion_mnist.toml", False),
    "baldi2018_table1_quick": ("baldi2018_table1_quick.sqlite", "baldi2018_table1.toml", True),
}

END = "<!-- lpfa:end -->"
_BLOCK = re.compile(r"<!-- lpfa:(table|copy|runtime) ([^>]*?) -->\n(.*?)" + re.escape(END), re.S)


@dataclass(frozen=True)
class Block:
    """One marked table of a document: its kind (``table`` or ``copy``), the marker's
    arguments, the text between the markers and where that text starts and ends."""

    kind: str
    args: tuple[str, ...]
    text: str
    start: int
    end: int

    @property
    def label(self) -> str:
        return f"lpfa:{self.kind} {' '.join(self.args)}"


def blocks(text: str) -> list[Block]:
    """Every marked block of a markdown text, in order."""
    return [
        Block(m[1], tuple(m[2].split()), m[3], m.start(3), m.end(3)) for m in _BLOCK.finditer(text)
    ]


def table_of(text: str, k: int = 1) -> str | None:
    """The k-th run of consecutive pipe lines (a markdown table) of ``text``, or None."""
    tables = re.findall(r"(?:^\|.*\n?)+", text, re.M)
    return tables[k - 1].rstrip("\n") if 1 <= k <= len(tables) else None


def _source(doc: Path, block: Block) -> str:
    """What the block must hold, rebuilt from the stored runs."""
    data = doc.parent / "data"
    if block.kind == "table":
        (name,) = block.args or ("",)
        if name not in SWEEPS:
            raise ConfigError(block.label, name, f"in {doc}: a sweep of {', '.join(SWEEPS)}")
        from lpfa.sweep.report import paper_table
        from lpfa.sweep.spec import load_spec
        from lpfa.sweep.store import reading

        store, spec, quick = SWEEPS[name]
        sweep = load_spec(doc.parent.parent / "experiments" / spec, quick=quick)
        with reading(data / store) as db:
            return paper_table(sweep, db).strip()
    if block.kind == "runtime":
        from lpfa.sweep.report import runtime_table

        found = sorted({p for pattern in block.args for p in data.glob(pattern)})
        if not found:
            raise ConfigError(block.label, " ".join(block.args), f"in {doc}: no store matches")
        stores = [p for p in found if p.is_file()]
        folders = [p for p in found if p.is_dir() and any(p.rglob("history.csv"))]
        return runtime_table(stores, folders).strip()
    if not 1 <= len(block.args) <= 2 or (len(block.args) == 2 and not block.args[1].isdigit()):
        raise ConfigError(block.label, " ".join(block.args), f"in {doc}: need PATH [K ≥ 1]")
    path = data / block.args[0]
    if not path.is_file():
        raise ConfigError(block.label, block.args[0], f"in {doc}: no file {path}")
    k = int(block.args[1]) if len(block.args) == 2 else 1
    table = table_of(path.read_text(encoding="utf-8"), k)
    if table is None:
        raise ConfigError(block.label, k, f"in {doc}: {path} has fewer than {k} tables")
    return table


def rebuilt(doc: Path) -> tuple[str, list[str]]:
    """The document's text with every block rebuilt, and the labels of the blocks that changed."""
    text = doc.read_text(encoding="utf-8")
    out, changed, at = [], [], 0
    for b in blocks(text):
        new = _source(doc, b) + "\n"
        if b.text.strip() != new.strip():
            changed.append(b.label)
        out += [text[at : b.start], new]
        at = b.end
    out.append(text[at:])
    return "".join(out), changed


def write_block(path: str | Path, name: str, text: str) -> Path:
    """Put ``text`` between ``<!-- lpfa:table NAME -->`` and ``<!-- lpfa:end -->`` in the file
    at ``path`` (replacing what was there); a file without those markers gets the block, markers
    included, appended at its end (what it held is kept), and a new file is the block alone."""
    from lpfa.runfiles import atomic_write_text

    path = Path(path)
    begin = f"<!-- lpfa:table {name} -->"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(END), re.DOTALL)
    block = f"{begin}\n{text.rstrip()}\n{END}"
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old)
    else:  # never replace a document by a table
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, new)
    return path


def _tables(args: argparse.Namespace) -> int:
    from lpfa.runfiles import atomic_write_text

    docs = [Path(d) for d in args.docs] or sorted(Path("docs").glob("*.md"))
    for d in docs:
        if not d.is_file():
            raise ConfigError("DOC", str(d), "a markdown file (default: docs/*.md)")
    # every block is rebuilt before anything is written: a bad block leaves every file as it was
    new = {d: rebuilt(d) for d in docs}
    stale = 0
    for d, (text, changed) in new.items():
        n = len(blocks(text))
        stale += len(changed)
        for label in changed:
            print(f"{d}: {label} {'differs' if args.check else 'rewritten'}")
        if changed and not args.check:
            atomic_write_text(d, text)
        if n:
            print(f"{d}: {n} blocks, {len(changed)} {'stale' if args.check else 'rewritten'}")
    if args.check and stale:
        print(f"{stale} stale blocks; run: lpfa tables", file=sys.stderr)
        return 1
    return 0


def add_commands(sub) -> None:
    """``lpfa tables [DOC ...] [--check]``."""
    t = sub.add_parser(
        "tables",
        help="rebuild every marked table of docs/*.md from the stored runs in docs/data",
        description=__doc__.split("\n\n")[0],
    )
    t.add_argument("docs", nargs="*", metavar="DOC", help="markdown files (default: docs/*.md)")
    t.add_argument("--check", action="store_true", help="only report blocks that differ")
    t.set_defaults(func=_tables)
