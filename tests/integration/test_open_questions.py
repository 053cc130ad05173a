"""The blog post's open questions and Baldi et al. §8: each script's --quick run, and the verdicts
its table must reach even at that size (the robust ones: a rank-2 channel cannot carry a
10-dimensional error, a random top-layer channel stays near chance, tanh ≈ the identity for the
small signals of a fresh net, W meets B⁺ before Bᵀ on the linear task)."""

import pytest

from tests.integration.test_end_to_end import markdown_table

pytestmark = pytest.mark.slow


def run_quick(name, quick_run):
    _, out = quick_run(name)
    assert list(out.glob("*.png"))
    header, rows = markdown_table((out / "table.md").read_text(encoding="utf-8"))
    assert all(len(r) == len(header) for r in rows)
    return header, rows


def row(rows, *cells):
    """The one row whose leading cells are ``cells``."""
    found = [r for r in rows if tuple(r[: len(cells)]) == cells]
    assert len(found) == 1, (cells, rows)
    return found[0]


def test_feedback_kinds_quick(quick_run):
    header, rows = run_quick("open_questions_feedback", quick_run)
    assert header[-1] == "reached by every seed"
    assert row(rows, "linear", "gaussian")[-1] == "yes"  # NSE < 1e-2 within 10 epochs
    assert row(rows, "linear", "rank2")[-1] == "**no**"  # rank 2 < 10 outputs
    assert {r[1] for r in rows if r[0] == "mnist"} == {"gaussian", "orthogonal"}


def test_backward_nonlinearity_quick(quick_run):
    _, rows = run_quick("open_questions_backward", quick_run)
    assert row(rows, "srbp", "tanh")[-1] == "holds"
    assert row(rows, "rbp", "sign")[-1] in ("holds", "**does not hold**")
    assert row(rows, "rbp", "linear")[3] == "0"


def test_plastic_feedback_and_pseudo_inverse_quick(quick_run):
    _, rows = run_quick("open_questions_plastic", quick_run)
    angle = row(rows, "W resembles B⁺ more than Bᵀ", "linear-fa, W^2")
    assert angle[-1] == "holds"
    plastic = row(rows, "plastic feedback learns faster (epochs to 89 % test accuracy)")
    assert plastic[-1].startswith("undecided")  # 2 epochs of 2 000 images reach 89 % with neither


def test_random_top_feedback_quick(quick_run):
    _, rows = run_quick("baldi2018_sec8_top_feedback", quick_run)
    assert row(rows, "top", "random feedback C^top")[-1] == "holds"
    assert row(rows, "rbp", "random feedback C^top")[-1] == "holds"
    assert row(rows, "top", "its gradient (Fact 1)")[-1] == "—"
