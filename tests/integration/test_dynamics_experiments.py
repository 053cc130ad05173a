"""The dynamics experiments' --quick runs: each writes its figure and a table whose verdict
column is what the science says."""

from pathlib import Path

import pytest

from tests.integration.test_end_to_end import load_experiment, markdown_table

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def quick_table(script: str, out: Path, *extra: str) -> dict[str, list[str]]:
    """Run ``experiments/<script>.py --quick`` with ``extra`` into ``out``; its table as first
    cell -> row."""
    module = load_experiment(ROOT / "experiments" / f"{script}.py")
    assert module.main(["--quick", "--quiet", "--out", str(out), *extra]) == 0
    return table_rows(out)


def table_rows(out: Path) -> dict[str, list[str]]:
    """A flow experiment's figure is drawn and its table is first cell -> row."""
    assert (out / "flow.png").stat().st_size > 10_000
    header, rows = markdown_table((out / "table.md").read_text())
    assert header[-1] == "holds"
    return {r[0]: r for r in rows}


def test_lillicrap2016_fig3_quick_fa_from_near_zero_reaches_the_good_branch(tmp_path, quick_run):
    _, out = quick_run("lillicrap2016_fig3_flow", into=tmp_path / "fa")
    rows = table_rows(out)
    assert all(r[-1] == "yes" for r in rows.values()), rows
    near = next(r for k, r in rows.items() if k.startswith("trajectories from near 0"))
    assert near[2] == "100.0%"
    bad = next(r for k, r in rows.items() if k.startswith("a small region"))
    assert 0.0 < float(bad[2].rstrip("%")) < 50.0
    # --plot-only rebuilds the same table from the files, without integrating
    before = (tmp_path / "fa" / "table.md").read_text()
    (tmp_path / "fa" / "flow.png").unlink()
    load_experiment(ROOT / "experiments" / "lillicrap2016_fig3_flow.py").main(
        ["--quick", "--out", str(tmp_path / "fa"), "--plot-only"]
    )
    assert (tmp_path / "fa" / "table.md").read_text() == before
    assert (tmp_path / "fa" / "flow.png").is_file()


def test_lillicrap2016_fig3_quick_verdicts_follow_the_rule_not_the_script(tmp_path):
    """Backprop (the feedback is W itself) has a saddle at W₀ = W = 0 and reaches both branches
    from near 0: the table's verdicts for FA's claims must say no."""
    rows = quick_table("lillicrap2016_fig3_flow", tmp_path / "bp", "--set", "channel.rule=bp")
    origin = next(r for k, r in rows.items() if k.startswith("from W₀ = W = 0"))
    near = next(r for k, r in rows.items() if k.startswith("trajectories from near 0"))
    assert origin[-1] == "**no**"
    assert near[-1] == "**no**"


def test_baldi2018_fig11_quick_theorem_2_holds_on_lpfas_field(quick_run):
    rows = table_rows(quick_run("baldi2018_fig11_flow")[1])
    assert len(rows) == 9
    assert all(r[-1] == "yes" for r in rows.values()), rows


# --- experiments/baldi2018_chains.py (Baldi et al. 2018 §7 closed forms) -----------------------


def test_baldi2018_chains_quick_every_closed_form_holds_and_plot_only_redraws(tmp_path, quick_run):
    module, out = quick_run("baldi2018_chains", into=tmp_path / "chains")
    families = ("a111", "chain", "a1n1", "an1n", "three_layer", "power")
    for name in families:
        assert (out / f"{name}.png").stat().st_size > 10_000
    header, rows = markdown_table((out / "table.md").read_text())
    assert header[-1] == "holds"
    assert {r[0].split(":")[0] for r in rows} == set(families)
    assert all(r[-1] == "yes" for r in rows), [r for r in rows if r[-1] != "yes"]
    # the no-f′ power chain must be reported as having no fixed point (the science, not a pass)
    nofp = next(r for r in rows if "without f′ no fixed point" in r[0])
    assert float(nofp[2]) > 1e-3
    before = (out / "table.md").read_text()
    (out / "a111.png").unlink()
    assert module.main(["--quick", "--out", str(out), "--plot-only"]) == 0
    assert (out / "table.md").read_text() == before
    assert (out / "a111.png").is_file()
