"""End to end on real data: the CLI, the experiments' --quick runs, reproducibility."""

import json
from pathlib import Path

import pytest

from lpfa.cli import main
from lpfa.report import read_history
from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]
# every script that trains; baldi2018_figures only draws the stored sweeps (test_baldi_figures)
EXPERIMENTS = [
    p
    for p in sorted((ROOT / "experiments").glob("*.py"))
    # figure scripts that read stored runs, and an image script, each tested in its own file
    if p.stem not in ("baldi2018_figures", "lillicrap2016_bp_overfit", "lillicrap2016_figS1_fields")
]
pytestmark = pytest.mark.slow


def _is_number(cell: str) -> bool:
    try:
        float(cell.split("±")[0].strip().rstrip("%"))
    except ValueError:
        return False
    return True


def markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and data rows of the first pipe table in ``text``."""
    lines = []
    for ln in text.splitlines():  # the first run of consecutive pipe lines, not every table's
        if ln.strip().startswith("|"):
            lines.append(ln.strip())
        elif lines:
            break
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert len(cells) >= 2, "no pipe table"
    assert set("".join(cells[1])) <= set("-: "), "no header separator"
    return cells[0], cells[2:]


load_experiment = experiment_script


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_quick_runs_and_writes_its_outputs(path, tmp_path, quick_run):
    # a script whose --quick run draws its plots only when asked says so in its usage line
    # ("[--quick [--plot]]"), and quick_run passes --plot to it
    module, out = quick_run(path.stem, into=tmp_path / "out")
    assert module.__doc__
    assert "Runtime" in module.__doc__
    assert (out / "config.json").is_file()
    assert (out / "results.csv").is_file()
    header, rows = markdown_table((out / "table.md").read_text())
    assert len(header) >= 2
    assert rows  # a table with data, not just its frame
    assert all(len(r) == len(header) for r in rows)
    assert any(_is_number(c) for r in rows for c in r)  # and numbers in it
    assert list(out.glob("*.png"))
    # --plot-only redraws from what was written, without training
    for png in out.glob("*.png"):
        png.unlink()
    assert module.main(["--quick", "--quiet", "--out", str(out), "--plot-only"]) == 0
    assert list(out.glob("*.png"))


@pytest.mark.parametrize("rule", ["bp", "rbp", "srbp"])
def test_mnist_learns_for_real_with_every_rule(tmp_path, rule):
    out = tmp_path / rule
    args = [
        "train",
        str(ROOT / "configs" / "quickstart.toml"),
        "--out",
        str(out),
        "--quiet",
        "--set",
        "data.n_train=6000",
        "--set",
        "data.n_test=2000",
        "--set",
        "train.epochs=2",
        "--set",
        "seeds=[0, 1]",
        "--set",
        f"channel.rule={rule}",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_acc_mean"] > 0.78  # chance is 0.10; the three reach 0.82-0.85 here
    assert summary["angle_1_mean"] < (1e-3 if rule == "bp" else 80)


def test_same_seed_same_files(tmp_path):
    args = [
        "train",
        str(ROOT / "configs" / "quickstart.toml"),
        "--quiet",
        "--set",
        "data.n_train=1000",
        "--set",
        "data.n_test=500",
        "--set",
        "train.epochs=1",
    ]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(read_history(tmp_path / "a" / "history.csv")) == strip(
        read_history(tmp_path / "b" / "history.csv")
    )
