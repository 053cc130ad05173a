"""Numbers as a reader sees them: mean ± std with the digits the spread allows; aligned tables."""

import pytest

from lpfa.report import mean_std, metric_name, text_table


@pytest.mark.parametrize(
    ("mean", "std", "shown"),
    [
        (0.97234, 0.00123, "0.9723 ± 0.0012"),  # two significant digits of the spread
        (97.95, 0.1123, "97.95 ± 0.11"),
        (12.3, 45.6, "12 ± 46"),
        (1234.0, 567.0, "1230 ± 570"),  # the spread decides the last digit
        (1.234e-9, 4.1e-11, "1.234e-09 ± 4.1e-11"),  # an NSE of 1e-9 is not 0.0000±0.0000
        (2.5e-6, 3.0e-6, "2.5e-06 ± 3.0e-06"),
        (0.5, None, "0.5"),  # one seed: no spread to show
        (1.0e-9, 0.0, "1e-09"),
        (float("nan"), 0.1, "nan"),
    ],
)
def test_mean_std_keeps_the_digits_the_spread_allows(mean, std, shown):
    assert mean_std(mean, std) == shown


def test_metric_names_are_words_and_unknown_keys_stay():
    assert metric_name("test_acc") == "test accuracy"
    assert metric_name("angle_3").startswith("rule∠BP at layer 3 (°)")
    assert metric_name("angle_wb_12").startswith("W∠Bᵀ at layer 12")
    assert metric_name("my_column") == "my_column"


def test_text_table_aligns_text_left_and_numbers_right():
    table = text_table(["metric", "value"], [["loss", "1.5"], ["accuracy", "97.25"]])
    assert table.splitlines() == [
        "metric    value",
        "--------  -----",
        "loss        1.5",
        "accuracy  97.25",
    ]
