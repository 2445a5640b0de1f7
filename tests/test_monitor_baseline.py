"""Baselines in Model Monitor's documented schema: statistics.json and constraints.json."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from captureq.errors import ConfigError
from captureq.monitor import Baseline, baseline, check
from captureq.monitor.baseline import KLL_K, kll_sketch, sketch_sample


def _training_table(n: int = 500, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "age": rng.integers(18, 90, n).astype("float64"),  # whole numbers → Integral
            "income": np.round(rng.normal(50.0, 10.0, n), 2),  # → Fractional
            "delta": rng.normal(0.0, 1.0, n),  # negative values
            "plan": pa.array(rng.choice(["basic", "gold", "platinum"], n)),
            "note": pa.array([None if i % 4 == 0 else "x" for i in range(n)]),
        }
    )


def test_statistics_json_has_model_monitors_fields_and_nesting(tmp_path):
    result = baseline(_training_table(), tmp_path)
    stats = json.loads((tmp_path / "statistics.json").read_text())
    assert set(stats) == {"version", "dataset", "features"}
    assert stats["dataset"] == {"item_count": 500}
    by_name = {f["name"]: f for f in stats["features"]}
    assert {n: f["inferred_type"] for n, f in by_name.items()} == {
        "age": "Integral",
        "income": "Fractional",
        "delta": "Fractional",
        "plan": "String",
        "note": "String",
    }
    num = by_name["income"]["numerical_statistics"]
    assert set(num) == {
        "common",
        "mean",
        "sum",
        "std_dev",
        "min",
        "max",
        "approximate_num_distinct_values",
        "completeness",
        "distribution",
    }
    assert num["completeness"] == 1.0
    assert num["approximate_num_distinct_values"] == len(np.unique(_training_table()["income"]))
    assert set(num["common"]) == {"num_present", "num_missing"}
    values = _training_table()["income"].to_numpy()
    assert num["mean"] == pytest.approx(values.mean()) and num["sum"] == pytest.approx(values.sum())
    assert num["std_dev"] == pytest.approx(values.std()) and num["min"] == values.min()
    kll = num["distribution"]["kll"]
    assert set(kll) == {"buckets", "sketch"}
    assert len(kll["buckets"]) == 10
    assert set(kll["buckets"][0]) == {"lower_bound", "upper_bound", "count"}
    assert sum(b["count"] for b in kll["buckets"]) == 500
    assert set(kll["sketch"]) == {"parameters", "data"}
    assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048}
    assert sorted(kll["sketch"]["data"][0]) == sorted(
        values.tolist()
    )  # ≤ k values are kept exactly
    s = by_name["plan"]["string_statistics"]
    assert set(s) == {"common", "distinct_count", "completeness", "distribution"}
    assert s["distinct_count"] == 3 and isinstance(s["distinct_count"], int)
    assert all(type(b["count"]) is int for b in s["distribution"]["categorical"]["buckets"])
    assert by_name["note"]["string_statistics"]["completeness"] == 0.75
    assert {b["value"] for b in s["distribution"]["categorical"]["buckets"]} == {
        "basic",
        "gold",
        "platinum",
    }
    assert set(s["distribution"]["categorical"]["buckets"][0]) == {"value", "count"}
    assert by_name["note"]["string_statistics"]["common"] == {
        "num_present": 375,
        "num_missing": 125,
    }
    assert result.statistics == stats


def test_constraints_json_has_model_monitors_fields_and_nesting(tmp_path):
    baseline(_training_table(), tmp_path)
    cons = json.loads((tmp_path / "constraints.json").read_text())
    assert set(cons) == {"version", "features", "monitoring_config"}
    by_name = {f["name"]: f for f in cons["features"]}
    assert by_name["age"]["num_constraints"] == {"is_non_negative": True}
    assert by_name["delta"]["num_constraints"] == {"is_non_negative": False}
    assert by_name["age"]["completeness"] == 1.0 and by_name["note"]["completeness"] == 0.75
    assert by_name["plan"]["string_constraints"] == {"domains": ["basic", "gold", "platinum"]}
    config = cons["monitoring_config"]
    assert set(config) == {
        "evaluate_constraints",
        "emit_metrics",
        "datatype_check_threshold",
        "domain_content_threshold",
        "distribution_constraints",
    }
    assert set(config["distribution_constraints"]) == {
        "perform_comparison",
        "comparison_threshold",
        "comparison_method",
        "categorical_comparison_threshold",
        "categorical_drift_method",
    }


def test_csv_with_and_without_header(tmp_path):
    (tmp_path / "named.csv").write_text("chas,rm\n0,6.5\n1,5.9\n0,7.1\n")
    (tmp_path / "plain.csv").write_text("0,6.5\n1,5.9\n0,7.1\n")
    named = baseline(str(tmp_path / "named.csv"))
    plain = baseline(str(tmp_path / "plain.csv"))
    assert [f["name"] for f in named.statistics["features"]] == ["chas", "rm"]
    assert [f["name"] for f in plain.statistics["features"]] == ["_c0", "_c1"]
    assert [f["inferred_type"] for f in plain.statistics["features"]] == ["Integral", "Fractional"]


def test_parquet_training_data(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(_training_table(), tmp_path / "train.parquet")
    assert baseline(str(tmp_path / "train.parquet")).statistics["dataset"]["item_count"] == 500


def test_data_type_violation_reads_like_model_monitors():
    base = baseline(pa.table({"chas": [0.0, 1.0, 0.0, 1.0]}))
    result = check(pa.table({"chas": [0.5, 0.25, 0.75, 0.1]}), base)
    assert result.constraint_violations == {
        "violations": [
            {
                "feature_name": "chas",
                "constraint_check_type": "data_type_check",
                "description": "Data type match requirement is not met. Expected data type: Integral, "
                "Expected match: 100.0%. Observed: Only 0.0% of data is Integral.",
            }
        ]
    }


def test_column_completeness_and_categorical_checks():
    # Simple: four records are too few for the Robust comparison's chi-square test
    simple = {"distribution_constraints": {"comparison_method": "Simple"}}
    base = baseline(pa.table({"a": [1.0, 2.0, 3.0, 4.0], "plan": ["x", "y", "x", "y"]}),
                    monitoring_config=simple)
    current = pa.table({"plan": ["z", "z", "x", None], "b": [1, 2, 3, 4]})
    kinds = {
        (v["feature_name"], v["constraint_check_type"]) for v in check(current, base).violations
    }
    assert kinds == {
        ("a", "missing_column_check"),
        ("b", "extra_column_check"),
        ("plan", "completeness_check"),
        ("plan", "categorical_values_check"),
        ("plan", "baseline_drift_check"),
    }


def test_large_columns_are_sketched_to_k_items():
    values = np.arange(10_000, dtype="float64")
    data = kll_sketch(values)
    assert sum(len(level) for level in data) <= KLL_K
    v, w = sketch_sample(
        {"numerical_statistics": {"distribution": {"kll": {"sketch": {"data": data}}}}}
    )
    assert w.sum() == pytest.approx(10_000, rel=0.01)
    assert np.median(v) == pytest.approx(5_000, rel=0.01)


def test_missing_baseline_folder_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="captureq baseline"):
        Baseline.load(tmp_path)
