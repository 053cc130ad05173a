"""Tables in docs/ rebuilt from stored runs equal what the rebuilding command prints."""

import re
from pathlib import Path

import pytest

from lpfa.sweep.report import paper_table
from lpfa.sweep.spec import load_spec
from lpfa.sweep.store import reading

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- lpfa:table (\S+) -->\n(.*?)<!-- lpfa:end -->", re.S)
# (document, block name) -> (store under docs/data, spec, quick)
STORED = {
    ("results.md", "baldi2018_table1"): ("baldi2018_table1.sqlite", "baldi2018_table1.toml", False),
    ("results.md", "baldi2018_fig4_sparse"): (
        "baldi2018_fig4_sparse.sqlite",
        "baldi2018_fig4_sparse.toml",
        False,
    ),
    ("results.md", "baldi2018_fig7_error"): (
        "baldi2018_fig7_error.sqlite",
        "baldi2018_fig7_error.toml",
        False,
    ),
    ("results.md", "baldi2018_sec42"): ("baldi2018_sec42.sqlite", "baldi2018_sec42.toml", False),
    ("results.md", "conv_fashion_mnist"): (
        "conv_fashion_mnist.sqlite",
        "conv_fashion_mnist.toml",
        False,
    ),
    ("sweeps.md", "baldi2018_table1_quick"): (
        "baldi2018_table1_quick.sqlite",
        "baldi2018_table1.toml",
        True,
    ),
}


@pytest.mark.parametrize(("doc", "name"), list(STORED), ids=lambda v: str(v))
def test_a_docs_table_is_what_its_store_prints(doc, name):
    store, spec, quick = STORED[(doc, name)]
    blocks = dict(BLOCK.findall((ROOT / "docs" / doc).read_text(encoding="utf-8")))
    assert name in blocks, f"docs/{doc} has no block {name}"
    sweep = load_spec(ROOT / "experiments" / spec, quick=quick)
    with reading(ROOT / "docs" / "data" / store) as db:
        expected = paper_table(sweep, db)
    assert blocks[name].strip() == expected.strip()


def test_every_stored_block_in_the_docs_is_checked():
    for doc in ("results.md", "sweeps.md"):
        for name, _ in BLOCK.findall((ROOT / "docs" / doc).read_text(encoding="utf-8")):
            assert (doc, name) in STORED, f"docs/{doc}: block {name} has no store to check"
