"""Model Monitor's own files and wording: thresholds, texts, older keys, inferred types.

The baseline here is JSON written to the documented schema with the values Model Monitor's
baselining job writes (``datatype_check_threshold: 1.0``, ``domain_content_threshold: 1.0``).
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta

import pyarrow as pa
import pytest
from trees import T0, capture, write_captures

import captureq
from captureq.monitor import Baseline, baseline, check
from captureq.monitor.baseline import column
from captureq.monitor.check import monitoring_config
from captureq.monitor.messages import TEMPLATES, describe

STATISTICS = {
    "version": 0.0,
    "dataset": {"item_count": 2823},
    "features": [
        {
            "name": "rooms",
            "inferred_type": "Integral",
            "numerical_statistics": {
                "common": {"num_present": 2823, "num_missing": 0},
                "mean": 3.0,
                "sum": 8469.0,
                "std_dev": 0.8,
                "min": 1.0,
                "max": 5.0,
                "approximate_num_distinct_values": 5,
                "completeness": 1.0,
                "distribution": {
                    "kll": {
                        "buckets": [
                            {"lower_bound": 1.0, "upper_bound": 3.0, "count": 1400.0},
                            {"lower_bound": 3.0, "upper_bound": 5.0, "count": 1423.0},
                        ],
                        "sketch": {
                            "parameters": {"c": 0.64, "k": 2048.0},
                            "data": [[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 5.0]],
                        },
                    }
                },
            },
        },
        {
            "name": "plan",
            "inferred_type": "String",
            "string_statistics": {
                "common": {"num_present": 2823, "num_missing": 0},
                "distinct_count": 2.0,
                "completeness": 1.0,
                "distribution": {
                    "categorical": {
                        "buckets": [{"value": "basic", "count": 1500}, {"value": "gold", "count": 1323}]
                    }
                },
            },
        },
    ],
}
CONSTRAINTS = {
    "version": 0.0,
    "features": [
        {
            "name": "rooms",
            "inferred_type": "Integral",
            "completeness": 1.0,
            "num_constraints": {"is_non_negative": True},
        },
        {
            "name": "plan",
            "inferred_type": "String",
            "completeness": 1.0,
            "string_constraints": {"domains": ["basic", "gold"]},
        },
    ],
    "monitoring_config": {
        "evaluate_constraints": "Enabled",
        "emit_metrics": "Enabled",
        "datatype_check_threshold": 1.0,
        "domain_content_threshold": 1.0,
        "distribution_constraints": {
            "perform_comparison": "Enabled",
            "comparison_threshold": 0.1,
            "comparison_method": "Robust",
            "categorical_comparison_threshold": 0.1,
            "categorical_drift_method": "LInfinity",
        },
    },
}


@pytest.fixture
def mm_baseline(tmp_path):
    (tmp_path / "statistics.json").write_text(json.dumps(STATISTICS, indent=2))
    (tmp_path / "constraints.json").write_text(json.dumps(CONSTRAINTS, indent=2))
    return tmp_path


def _window(n_fractional: int, n: int = 2823, plan_other: int = 0) -> pa.Table:
    """CSV text as a training/window file would hold it: `3` is Integral, `3.5` is not."""
    rooms = ["3"] * (n - n_fractional) + ["3.5"] * n_fractional
    plan = ["basic", "gold"] * (n // 2) + ["basic"] * (n % 2)
    plan[:plan_other] = ["platinum"] * plan_other
    return pa.table({"rooms": rooms, "plan": plan})


# --------------------------------------------------------------------------------------------
# 1. thresholds are required shares; texts are Model Monitor's
# --------------------------------------------------------------------------------------------
def test_data_type_check_fires_at_996_percent_with_model_monitors_text(mm_baseline):
    result = check(_window(10), Baseline.load(mm_baseline))
    types = [v for v in result.violations if v["constraint_check_type"] == "data_type_check"]
    assert types == [
        {
            "feature_name": "rooms",
            "constraint_check_type": "data_type_check",
            "description": "Data type match requirement is not met. Expected data type: Integral, "
            "Expected match: 100.0%. Observed: Only 99.64576691463...% of data is Integral.".replace(
                "99.64576691463...", repr(100 * (2813 / 2823))
            ),
        }
    ]
    assert "99.6457669146" in types[0]["description"]


def test_a_clean_window_raises_nothing_with_threshold_one(mm_baseline):
    result = check(_window(0), Baseline.load(mm_baseline))
    assert [v["constraint_check_type"] for v in result.violations if v["feature_name"] == "rooms"
            and v["constraint_check_type"] != "baseline_drift_check"] == []


def test_a_lower_threshold_is_a_lower_required_share(tmp_path):
    cons = copy.deepcopy(CONSTRAINTS)
    cons["monitoring_config"]["datatype_check_threshold"] = 0.99
    cons["monitoring_config"]["domain_content_threshold"] = 0.9
    b = Baseline(STATISTICS, cons)
    kinds = {v["constraint_check_type"] for v in check(_window(10, plan_other=100), b).violations}
    assert "data_type_check" not in kinds and "categorical_values_check" not in kinds
    kinds = {v["constraint_check_type"] for v in check(_window(100, plan_other=600), b).violations}
    assert {"data_type_check", "categorical_values_check"} <= kinds


def test_categorical_values_check_fires_on_one_unseen_value_at_threshold_one(mm_baseline):
    v = [
        x
        for x in check(_window(0, plan_other=1), Baseline.load(mm_baseline)).violations
        if x["constraint_check_type"] == "categorical_values_check"
    ]
    assert v == [
        {
            "feature_name": "plan",
            "constraint_check_type": "categorical_values_check",
            "description": "Categorical value match requirement is not met. Expected match: 100.0%. "
            f"Observed: Only {100 * 2822 / 2823!r}% of data is within the baseline domain.",
        }
    ]


def test_the_baseline_writes_model_monitors_default_thresholds(tmp_path):
    cons = baseline(_window(0), tmp_path).constraints
    assert cons["monitoring_config"]["datatype_check_threshold"] == 1.0
    assert cons["monitoring_config"]["domain_content_threshold"] == 1.0
    assert json.loads((tmp_path / "constraints.json").read_text()) == cons


@pytest.mark.parametrize(
    "check_type, values, text",
    [
        (
            "data_type_check",
            {"expected": "Integral", "expected_match": 1.0, "observed": 0.9964592817400101},
            "Data type match requirement is not met. Expected data type: Integral, Expected match: "
            "100.0%. Observed: Only 99.64592817400101% of data is Integral.",
        ),
        (
            "completeness_check",
            {"expected": 1.0, "observed": 0.75},
            "Data completeness requirement is not met. Expected completeness: 100.0%. "
            "Observed: Only 75.0% of data is complete.",
        ),
        (
            "baseline_drift_check",
            {"kind": "Numerical", "distance": 0.2727272727272727, "threshold": 0.1},
            "Numerical distance: 0.2727272727272727 exceeds numerical threshold: 0.1",
        ),
        (
            "baseline_drift_check",
            {"kind": "Categorical", "distance": 0.5, "threshold": 0.1},
            "Categorical distance: 0.5 exceeds categorical threshold: 0.1",
        ),
        (
            "missing_column_check",
            {"current": 2, "baseline": 3},
            "There are missing columns in current dataset. Number of columns in current dataset: 2, "
            "Number of columns in baseline constraints: 3",
        ),
        (
            "extra_column_check",
            {"current": 4, "baseline": 3},
            "There are extra columns in current dataset. Number of columns in current dataset: 4, "
            "Number of columns in baseline constraints: 3",
        ),
        (
            "categorical_values_check",
            {"expected": 1.0, "observed": 0.5},
            "Categorical value match requirement is not met. Expected match: 100.0%. "
            "Observed: Only 50.0% of data is within the baseline domain.",
        ),
        (
            "LessThanThreshold",
            {"metric": "f1", "value": 0.61, "threshold": 0.66},
            "Metric f1 with 0.61 was LessThanThreshold 0.66",
        ),
        (
            "GreaterThanThreshold",
            {"metric": "mae", "value": 0.7, "threshold": 0.5},
            "Metric mae with 0.7 was GreaterThanThreshold 0.5",
        ),
        (
            "bias_drift_check",
            {"metric": "DPPL", "value": 0.42, "baseline": 0.1, "tolerance": 0.1},
            "Value 0.42 does not meet the constraint requirement: DPPL is farther from its ideal "
            "than the baseline value 0.1 (tolerance 0.1)",
        ),
    ],
)
def test_every_check_has_its_exact_wording(check_type, values, text):
    assert describe(check_type, **values) == text


def test_every_template_is_tested():
    tested = {
        "data_type_check", "completeness_check", "baseline_drift_check", "missing_column_check",
        "extra_column_check", "categorical_values_check", "LessThanThreshold", "GreaterThanThreshold",
        "bias_drift_check",
    }  # fmt: skip
    assert set(TEMPLATES) == tested


# --------------------------------------------------------------------------------------------
# 1b. older keys
# --------------------------------------------------------------------------------------------
def test_older_keys_are_read():
    old = {
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "min_domain_mass": 0.5,
            "distribution_constraints": {"enable_comparisons": "Disabled", "comparion_method": "Simple"},
        }
    }
    cfg = monitoring_config(old)
    assert cfg["comparison_method"] == "Simple"
    assert cfg["perform_comparison"] == "Disabled"
    assert cfg["domain_content_threshold"] == 0.5
    feature = {"string_constraints": {"domains": ["a"], "monitoring_config_overrides": {"domain_content_threshold": 0.2}}}
    assert monitoring_config(old, feature)["domain_content_threshold"] == 0.2


def test_monitoring_config_overrides_inside_string_constraints_change_the_check():
    cons = copy.deepcopy(CONSTRAINTS)
    cons["features"][1]["string_constraints"]["monitoring_config_overrides"] = {
        "domain_content_threshold": 0.5
    }
    kinds = {v["constraint_check_type"] for v in check(_window(0, plan_other=5), Baseline(STATISTICS, cons)).violations}
    assert "categorical_values_check" not in kinds


def test_the_simple_comparion_method_typo_is_honoured():
    """Robust needs a significant KS test; 'Simple' (spelled as old files spell it) does not."""
    cons = copy.deepcopy(CONSTRAINTS)
    small = pa.table({"rooms": ["5", "5", "5", "4"], "plan": ["basic", "gold", "basic", "gold"]})
    robust = {v["constraint_check_type"] for v in check(small, Baseline(STATISTICS, cons)).violations}
    dist = cons["monitoring_config"]["distribution_constraints"]
    del dist["comparison_method"]
    dist["comparion_method"] = "Simple"
    simple = check(small, Baseline(STATISTICS, cons)).violations
    assert "baseline_drift_check" not in robust
    drift = [v for v in simple if v["constraint_check_type"] == "baseline_drift_check"]
    assert [v["feature_name"] for v in drift] == ["rooms"]
    assert drift[0]["description"].startswith("Numerical distance: ")
    assert drift[0]["description"].endswith(" exceeds numerical threshold: 0.1")


# --------------------------------------------------------------------------------------------
# 2. inferred types from the text
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, kind",
    [("1", "Integral"), ("1.0", "Fractional"), ("1e3", "Fractional"), ("-0", "Integral"),
     ("  7 ", "Integral"), ("nan", "Unknown"), ("3.0", "Fractional"), ("abc", "String")],
)  # fmt: skip
def test_one_value_is_typed_by_its_text(text, kind):
    assert column("x", pa.array([text])).inferred_type == kind


def test_empty_text_is_missing():
    col = column("x", pa.array(["", "1", None]))
    assert (col.present, col.count, col.inferred_type) == (1, 3, "Integral")


def test_training_csv_with_whole_decimals_is_fractional(tmp_path):
    (tmp_path / "train.csv").write_text("3.0,1,1e3\n0.0,2,2e3\n2.0,3,3e3\n")
    stats = baseline(str(tmp_path / "train.csv")).statistics
    assert [f["inferred_type"] for f in stats["features"]] == ["Fractional", "Integral", "Fractional"]
    assert stats["features"][0]["numerical_statistics"]["mean"] == pytest.approx(5 / 3)


@pytest.mark.parametrize("b64", [False, True])
def test_captured_csv_is_typed_by_its_text_not_its_float(tmp_path, b64):
    lines = [
        capture(f"{i % 4}.0,{i % 4}\n{i % 3}.0,{i % 5}\n", "0.5", event_id=f"e{i}",
                when=T0 + timedelta(seconds=i), base64=b64)
        for i in range(50)
    ]  # fmt: skip
    write_captures(tmp_path / "cap", lines)
    cq = captureq.open(str(tmp_path / "cap"))
    stats = cq.baseline().statistics
    assert [f["inferred_type"] for f in stats["features"]] == ["Fractional", "Integral"]
    # a window where _c1 is written `2.0` once fails the Integral type check
    write_captures(tmp_path / "cap2", [capture("1.0,2.0\n1.0,2\n", "0.5")])
    r = captureq.open(str(tmp_path / "cap2")).monitor(Baseline(stats, cq.baseline().constraints))
    types = [v for v in r.constraint_violations["violations"] if v["constraint_check_type"] == "data_type_check"]
    assert [v["feature_name"] for v in types] == ["_c1"]
    assert "Observed: Only 50.0% of data is Integral." in types[0]["description"]


def test_distinct_counts_are_filled_for_every_feature(tmp_path):
    (tmp_path / "train.csv").write_text("rooms,plan\n3,basic\n4,gold\n3,basic\n5,gold\n")
    result = baseline(str(tmp_path / "train.csv"))
    assert result.features().select(["feature", "distinct_count"]).to_pylist() == [
        {"feature": "rooms", "distinct_count": 3},
        {"feature": "plan", "distinct_count": 2},
    ]
    plan = result.statistics["features"][1]["string_statistics"]
    assert plan["distinct_count"] == 2
    assert [b["count"] for b in plan["distribution"]["categorical"]["buckets"]] == [2, 2]


def test_nan_is_missing_in_a_training_csv_and_in_captures(tmp_path):
    (tmp_path / "train.csv").write_text("1\nnan\n3\n\n")
    f = baseline(str(tmp_path / "train.csv")).statistics["features"][0]
    assert f["inferred_type"] == "Integral"
    assert f["numerical_statistics"]["common"] == {"num_present": 2, "num_missing": 1, "num_nan": 1}
    write_captures(tmp_path / "cap", [capture("1\nnan\n  7 \n-0\n", "0.5")])
    g = captureq.open(str(tmp_path / "cap")).baseline().statistics["features"][0]
    assert g["inferred_type"] == "Integral"
    assert g["numerical_statistics"]["common"] == {"num_present": 3, "num_missing": 1, "num_nan": 1}
    assert g["numerical_statistics"]["max"] == 7.0  # statistics over the finite values
    write_captures(tmp_path / "cap2", [capture("1\n  7 \n-0\n", "0.5")])
    h = captureq.open(str(tmp_path / "cap2")).baseline().statistics["features"][0]
    assert h["inferred_type"] == "Integral"
