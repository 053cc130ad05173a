"""experiments/rule_zoo.py --quick: its table, audit and figure, and --plot-only from the runs."""

import json
from pathlib import Path

import pytest

from tests.integration.test_end_to_end import load_experiment

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

RULES = "rbp,kp,drtp,usf,top"


def test_rule_zoo_quick_writes_table_audit_and_figure_and_replots(tmp_path):
    module = load_experiment(ROOT / "experiments" / "rule_zoo.py")
    out = tmp_path / "zoo"
    argv = ["--quick", "--quiet", "--datasets", "mnist", "--channels", "ideal,error3,sparse50",
            "--rules", RULES, "--out", str(out)]  # fmt: skip
    assert module.main(argv) == 0
    table = (out / "table.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line[:2] == "| "
    }
    assert set(RULES.split(",")) <= set(rows)
    assert "| usf | non-local |" in rows["usf"]  # the audit's verdict, from the traced step
    assert "| kp | local |" in rows["kp"]
    assert "97.2 ± 0.1 (Baldi et al. 2018 Table 1; MLP, same net)" in rows["rbp"]
    assert "92.5 (Baldi et al. 2018 Table 1" in rows["rbp"]  # the 3-bit error row
    assert "none found" in rows["drtp"]
    skipped = json.loads((out / "skipped.json").read_text())
    assert "mnist-sparse50-kp" in skipped  # learning feedback would regrow removed synapses
    assert "mnist-error3-top" in skipped  # top sends nothing to quantize
    audits = {a["label"]: a for a in json.loads((out / "audit.json").read_text())}
    assert audits["ideal-usf"]["locality"]["verdict"] == "non-local"
    assert audits["ideal-top"]["energy"]["per_step_J"]["channel"] == 0
    assert (out / "accuracy_vs_channel_energy.png").is_file()
    # --plot-only rebuilds the same table from the run folders, without training
    (out / "table.md").unlink()
    assert module.main([*argv, "--plot-only"]) == 0
    assert (out / "table.md").read_text() == table
