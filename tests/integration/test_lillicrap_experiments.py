"""Lillicrap et al. 2016 Figs. 1d-e, 2d and 4 as experiments: their --quick runs and helpers.

The quick runs (module fixtures, each once) check what the science says where a quick run is
long enough to show it: Fig. 1d's four curves (with η from the search) and Fig. 4's claim for
small ω both are; Fig. 2d's is not (the quick run is 2 000 minibatches, where a fourth layer
still hurts; the full run is 200 000), so its table is checked for structure and for p-values
that agree with the per-seed numbers in its results.csv.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lpfa.config import ConfigError
from lpfa.experiment import Results
from lpfa.report import read_history
from tests.conftest import experiment_script

ROOT = Path(__file__).resolve().parents[2]


load = experiment_script


FIG1 = load("lillicrap2016_fig1_linear")
FIG2D = load("lillicrap2016_fig2d_depth")
FIG4 = load("lillicrap2016_fig4_init_scale")
FIGS1 = load("lillicrap2016_figS1_fields")


def tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every pipe table of a markdown text: (header cells, data rows)."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.strip().startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            out.append((block[0], block[2:]))
            block = []
    return out


def bullets(text: str) -> list[str]:
    """The list items of a markdown text, without their dash."""
    return [ln[2:] for ln in text.splitlines() if ln.startswith("- ")]


@pytest.fixture(scope="module")
def fig1(quick_run) -> Path:
    return quick_run("lillicrap2016_fig1_linear")[1]


@pytest.fixture(scope="module")
def fig2d(quick_run) -> Path:
    return quick_run("lillicrap2016_fig2d_depth")[1]


@pytest.fixture(scope="module")
def fig4(quick_run) -> Path:
    return quick_run("lillicrap2016_fig4_init_scale")[1]


def history(*rows: tuple[int, int, float]) -> list[dict]:
    """History rows from (epoch, member, train_loss)."""
    return [{"epoch": e, "member": m, "train_loss": v} for e, m, v in rows]


# --- Fig. 1d-e: helpers -------------------------------------------------------------------------


def test_speed_score_is_the_mean_log10_of_the_members_mean_training_loss_over_epochs():
    # epoch 0 has no training loss and is left out; epoch 1: mean(1, 199) = 100 -> 2;
    # epoch 2: mean(0.1, 0.1) -> -1; epoch 3: 0.01 -> -2; the mean is -1/3
    h = history((0, 0, None), (1, 0, 1.0), (1, 1, 199.0), (2, 0, 0.1), (2, 1, 0.1),
                (3, 0, 0.01), (3, 1, 0.01))  # fmt: skip
    assert FIG1.speed_score(h) == pytest.approx(-1 / 3, rel=1e-12)
    assert FIG1.speed_score(history((0, 0, None))) == math.inf


def search_results(scores: dict[float, float | None]) -> Results:
    """A search whose bp run at each η has a constant training loss 10**score (None: diverged)."""
    runs, diverged = {}, {}
    for lr, s in scores.items():
        key = FIG1.search_label("bp", lr)
        runs[key] = history((1, 0, 1.0 if s is None else 10.0**s))
        if s is None:
            diverged[key] = 1
    return Results(Path("."), runs, diverged, {k: [0] for k in runs}, [])


def test_choose_lr_takes_the_fastest_finite_eta_and_never_a_diverged_one():
    grid = (0.01, 0.1, 1.0)
    chosen, scores = FIG1.choose_lr(search_results({0.01: 1.0, 0.1: -2.0, 1.0: None}), "bp", grid)
    assert chosen == 0.1
    assert scores == {0.01: pytest.approx(1.0), 0.1: pytest.approx(-2.0), 1.0: None}
    # a tie goes to the smaller η
    tie = FIG1.choose_lr(search_results({0.01: 0.5, 0.1: 0.5, 1.0: 0.9}), "bp", grid)[0]
    assert tie == 0.01
    with pytest.raises(ConfigError, match="every η of the search diverged for rule bp"):
        FIG1.choose_lr(search_results(dict.fromkeys(grid)), "bp", grid)


def test_lr_fixed_only_by_train_lr_itself():
    assert FIG1.lr_fixed(["train.epochs=3", "train.lr=0.5"])
    assert FIG1.lr_fixed([" train.lr = 0.5"])
    assert not FIG1.lr_fixed(["train.lr_decay=0.1", "train.epochs=3"])
    assert not FIG1.lr_fixed([])


def test_examples_to_reach_uses_the_mean_over_members():
    h = [
        {"epoch": e, "member": m, "test_nse": v, "examples": 250 * e}
        for e, vals in enumerate([(1.0, 1.0), (0.001, 0.05), (0.005, 0.005)])
        for m, v in enumerate(vals)
    ]
    # epoch 1: one member is below 0.01 but the mean 0.0255 is not; epoch 2's mean is
    assert FIG1.examples_to_reach(h, 0.01) == 500
    assert FIG1.examples_to_reach(h, 0.001) is None


# --- Fig. 1d-e: the quick run -------------------------------------------------------------------


@pytest.mark.slow
def test_fig1_quick_four_algorithms_meet_the_papers_bars(fig1):
    text = (fig1 / "table.md").read_text()
    [(head, rows)] = tables(text)  # one pipe table, as every experiment's table.md
    assert head[0] == "rule"
    assert head[-1] == "meets"
    by_rule = {r[0]: r for r in rows}
    assert list(by_rule) == list(FIG1.LABELS.values())
    # shallow hardly learns, node perturbation learns more slowly than BP and FA, BP and FA
    # reach NSE < 1e-2 and FA's angle falls from about 90°: what the paper's Fig. 1d-e show
    assert all(r[-1] == "yes" for r in rows), text
    assert by_rule["shallow (top layer only)"][3] == "never"
    # the η each rule ran at is the one its search chose
    chosen = dict(item.split(": chosen η = ") for item in bullets(text))
    chosen = {k: v.split(";")[0].split()[0] for k, v in chosen.items()}
    assert chosen == {k: r[1] for k, r in by_rule.items()}
    assert (fig1 / "nse.png").is_file()
    assert (fig1 / "angle.png").is_file()
    assert (fig1 / "search" / "eta_search.png").is_file()


@pytest.mark.slow
def test_fig1_quick_chosen_eta_is_the_argmin_of_the_stored_search_runs(fig1):
    for rule in FIG1.LABELS:
        scores = {}
        for lr in FIG1.QUICK_GRID:
            folder = fig1 / "search" / FIG1.search_label(rule, lr)
            if '"diverged"' not in (folder / "summary.json").read_text():
                scores[lr] = FIG1.speed_score(read_history(folder / "history.csv"))
        best = min(scores, key=scores.get)
        ran = read_history(fig1 / rule / "history.csv")[0]["lr"]
        assert ran == pytest.approx(best)


# --- Fig. 2d: helpers ---------------------------------------------------------------------------


def test_welch_is_the_unequal_variance_t_test_on_a_hand_case():
    # a: mean 2.5, s² 5/3; b: mean 5, s² 20/3; n = 4 each: t = −2.5 / sqrt(25/12) = −√3,
    # Welch's df = (25/12)² / ((5/12)²/3 + (5/3)²/3) = 75/17 (Student's would be 6)
    t, p = FIG2D.welch([1, 2, 3, 4], [2, 4, 6, 8])
    assert t == pytest.approx(-math.sqrt(3), rel=1e-12)
    assert p == pytest.approx(2 * stats.t.sf(math.sqrt(3), 75 / 17), rel=1e-9)
    assert p != pytest.approx(2 * stats.t.sf(math.sqrt(3), 6), rel=1e-3)


def test_plateau_epoch_and_recent_gain_on_a_hand_curve():
    c = [1.0, 0.5, 0.3, 0.25, 0.24, 0.24]
    # gains over 2 epochs: e=2: 0.7, e=3: 0.25, e=4: 0.06, e=5: 0.01 (< 0.05 first)
    assert FIG2D.plateau_epoch(c, window=2, tol=0.05) == 5
    assert FIG2D.plateau_epoch(c, window=2, tol=0.07) == 4
    assert FIG2D.plateau_epoch(c, window=2, tol=0.001) is None
    assert FIG2D.recent_gain(c, window=2) == pytest.approx(0.01)
    assert math.isnan(FIG2D.recent_gain(c[:2], window=2))


# --- Fig. 2d: the quick run ---------------------------------------------------------------------


def final_nse_by_label(out: Path) -> dict[str, np.ndarray]:
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    labels = dict.fromkeys(r["label"] for r in rows)
    return {k: np.array([float(r["test_nse"]) for r in rows if r["label"] == k]) for k in labels}


@pytest.mark.slow
def test_fig2d_quick_table_has_both_tests_and_p_values_that_match_its_results(fig2d):
    text = (fig2d / "table.md").read_text()
    [(head, rows)] = tables(text)
    assert head[0] == "rule"
    assert "depth helps" in head[-1]
    assert [r[0] for r in rows] == ["backprop", "feedback alignment"]
    nse = final_nse_by_label(fig2d)
    assert {r[1] for r in rows} == {"10 (last)"}  # 10 epochs: no row at epoch 20
    for row, rule in zip(rows, FIG2D.RULES, strict=True):
        a, b = nse[FIG2D.label(rule, 3)], nse[FIG2D.label(rule, 4)]
        assert a.size == b.size == 5
        p = stats.ttest_ind(a, b, equal_var=False).pvalue
        assert float(row[5]) == pytest.approx(p, rel=0.06)  # printed to 2 digits
        assert row[-1] in ("yes", "**no**", "**no** (reversed)")
    # the quick run is 10 epochs: the criterion list says BP has not settled
    plateau = bullets(text)
    assert [b.split(":")[0] for b in plateau] == list(nse)
    assert all(b.endswith("negligible at the end: **no**") for b in plateau)
    assert (fig2d / "nse.png").is_file()


# --- Fig. 4: helpers ----------------------------------------------------------------------------


def test_first_below_and_below_from_on_hand_series():
    a, b = [5, 1, 3, 1, 1], [4, 2, 2, 2, 2]
    assert FIG4.first_below(a, b) == 1
    assert FIG4.first_below([1, 3, 1], [2, 2, 2]) == 2  # epoch 0 is left out by default
    assert FIG4.first_below([1, 3, 1], [2, 2, 2], start=0) == 0
    assert FIG4.first_below([3, 3], [2, 2]) is None
    assert FIG4.below_from(a, b) == 3  # below at 1, above at 2, below from 3 on
    assert FIG4.below_from([1, 1], [2, 2]) == 0
    assert FIG4.below_from([1, 3], [2, 2]) is None  # not below at the end
    assert FIG4.below_from([1, float("nan"), 1], [2, 2, 2]) == 2  # NaN is not below


# --- Fig. 4: the quick run ----------------------------------------------------------------------


@pytest.mark.slow
def test_fig4_quick_angle_to_pbp_drops_below_angle_to_bp_for_small_omega(fig4):
    text = (fig4 / "table.md").read_text()
    [(_, rows)] = tables(text)
    assert [float(r[0]) for r in rows] == list(FIG4.QUICK_OMEGAS)
    claim = bullets(text)
    assert [c.split(":")[0] for c in claim] == ["paper states", "lpfa measured", "holds"]
    assert claim[-1] == "holds: yes", text
    small = [r for r in rows if float(r[0]) <= FIG4.SMALL]
    assert small
    assert all(r[-1] == "yes" for r in small)
    for r in small:  # and the angle to PBP is the smaller one at the end
        assert float(r[3]) < float(r[2])
    assert (fig4 / "fig4.png").is_file()


def test_figS1_cosines_are_row_by_row():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [0.0, -1.0], [4.0, -3.0]])
    np.testing.assert_allclose(FIGS1.cosines(a, b), [1.0, -1.0, 0.0])


def test_figS1_quick_run_writes_the_fields_and_a_summary_without_weights(tmp_path):
    out = tmp_path / "s1"
    assert FIGS1.main(["--quick", "--out", str(out)]) == 0
    assert (out / "fields.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["test_acc"]) == {"bp", "rbp"}
    c = summary["cos_dW0_bp_fa"]
    assert -1 <= c["q10"] <= c["median"] <= c["q90"] <= 1
    assert summary["units"] == 1000
    assert sorted(p.name for p in out.iterdir()) == ["fields.png", "summary.json"]


def test_figS1_refuses_a_bad_epoch_count(tmp_path, capsys):
    assert FIGS1.main(["--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--epochs=0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
