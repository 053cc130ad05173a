"""experiments/devices_robustness.py --quick: every effect's figure and the robustness table."""

import pytest

from tests.integration.test_end_to_end import ROOT, load_experiment, markdown_table

pytestmark = pytest.mark.slow


def test_devices_robustness_quick(tmp_path, quick_run):
    module, out = quick_run("devices_robustness", into=tmp_path / "devices")
    figs = {p.stem for p in out.glob("devices_*.png")}
    assert figs == {f"devices_{e}" for e in module.EFFECTS}
    header, rows = markdown_table((out / "table.md").read_text(encoding="utf-8"))
    assert header[:4] == ["effect", "strength", "bp drop", "srbp drop"]
    effects = [r[0] for r in rows]
    assert effects == ["ideal", *module.EFFECTS]
    for r in rows[1:]:
        if r[0] in ("readC", "stuckC"):  # no feedback array in BP
            assert r[2] == "—"
            assert r[-1].startswith("—")
        else:
            assert r[-1].startswith(("yes", "no", "tie within noise")), r
    # resumable: a second run trains nothing and gives the same table
    before = (out / "table.md").read_text(encoding="utf-8")
    assert module.main(["--quick", "--quiet", "--out", str(out)]) == 0
    assert (out / "table.md").read_text(encoding="utf-8") == before


def test_devices_robustness_on_lillicraps_net_keeps_its_channel():
    module = load_experiment(ROOT / "experiments" / "devices_robustness.py")
    cfgs = module.configs(False, 3, "numpy", "lillicrap")
    assert set(cfgs) == set(module.configs(False, 3, "numpy", "baldi"))
    one = cfgs["srbp-1bit__ideal__0"]
    assert one.model.sizes == (784, 1000, 10)
    # the rule's fields change, the config's feedback scale stays
    assert (one.channel.feedback.value, one.channel.feedback_scale) == ("sign", 0.05)
    assert cfgs["rbp__ideal__0"].channel.feedback.value == "uniform"
    assert cfgs["bp__readW__0.1"].model.device.read_noise == 0.1
