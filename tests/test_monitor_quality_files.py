"""Model Monitor's model-quality files: statistics.json, constraints.json, constraint_violations.json.

Values are held against scikit-learn; the files against the layout Model Monitor documents.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.generate import default_endpoints, generate_tree
from captureq.monitor import Baseline
from captureq.monitor.quality_files import (
    QualityBaseline,
    quality_constraints,
    quality_statistics,
    quality_violations,
)

skm = pytest.importorskip("sklearn.metrics")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
BINARY_KEYS = {
    "confusion_matrix", "recall", "precision", "accuracy", "recall_best_constant_classifier",
    "precision_best_constant_classifier", "accuracy_best_constant_classifier",
    "true_positive_rate", "true_negative_rate", "false_positive_rate", "false_negative_rate",
    "receiver_operating_characteristic_curve", "precision_recall_curve", "auc",
    "f0_5", "f0_5_best_constant_classifier", "f1", "f1_best_constant_classifier",
    "f2", "f2_best_constant_classifier",
}  # fmt: skip


def _binary(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype("float64")
    score = np.clip(0.35 * y + rng.random(n) * 0.7, 0, 1).round(2)  # ties, like real scores
    return y, score


def test_binary_statistics_match_sklearn_and_model_monitors_layout():
    y, s = _binary(500)
    stats = quality_statistics(y, s, "BinaryClassification", threshold=0.5)
    assert stats["version"] == 0.0 and stats["dataset"] == {"item_count": 500}
    m = stats["binary_classification_metrics"]
    assert set(m) == BINARY_KEYS
    yt, yp = y.astype(int), (s >= 0.5).astype(int)
    ones = np.ones_like(yt)
    expected = {
        "recall": skm.recall_score(yt, yp),
        "precision": skm.precision_score(yt, yp),
        "accuracy": skm.accuracy_score(yt, yp),
        "true_positive_rate": skm.recall_score(yt, yp),
        "true_negative_rate": skm.recall_score(yt, yp, pos_label=0),
        "false_positive_rate": 1 - skm.recall_score(yt, yp, pos_label=0),
        "false_negative_rate": 1 - skm.recall_score(yt, yp),
        "auc": skm.roc_auc_score(yt, s),
        "f0_5": skm.fbeta_score(yt, yp, beta=0.5),
        "f1": skm.f1_score(yt, yp),
        "f2": skm.fbeta_score(yt, yp, beta=2),
        "recall_best_constant_classifier": skm.recall_score(yt, ones),
        "precision_best_constant_classifier": skm.precision_score(yt, ones),
        "accuracy_best_constant_classifier": skm.accuracy_score(yt, ones),
        "f0_5_best_constant_classifier": skm.fbeta_score(yt, ones, beta=0.5),
        "f1_best_constant_classifier": skm.f1_score(yt, ones),
        "f2_best_constant_classifier": skm.fbeta_score(yt, ones, beta=2),
    }
    for name, value in expected.items():
        assert m[name]["value"] == pytest.approx(value), name
        sd = m[name]["standard_deviation"]
        assert isinstance(sd, float) and 0 <= sd < 0.1, name  # 500 ≥ 200 rows: bootstrapped
    (tn, fp), (fn, tp) = skm.confusion_matrix(yt, yp, labels=[0, 1])
    assert m["confusion_matrix"] == {"0": {"0": tn, "1": fp}, "1": {"0": fn, "1": tp}}
    fpr, tpr, _ = skm.roc_curve(yt, s, drop_intermediate=False)
    roc = m["receiver_operating_characteristic_curve"]
    assert roc["false_positive_rates"] == pytest.approx(fpr.tolist())
    assert roc["true_positive_rates"] == pytest.approx(tpr.tolist())
    precision, recall, _ = skm.precision_recall_curve(yt, s)
    pr = m["precision_recall_curve"]
    assert pr["precisions"] == pytest.approx(precision.tolist())
    assert pr["recalls"] == pytest.approx(recall.tolist())
    json.dumps(stats, allow_nan=False)  # strictly valid JSON


def test_standard_deviation_is_nan_below_200_samples_as_model_monitor_writes():
    y, s = _binary(199)
    m = quality_statistics(y, s, "BinaryClassification")["binary_classification_metrics"]
    assert {m[k]["standard_deviation"] for k in m if "value" in m.get(k, {})} == {"NaN"}


def test_model_monitors_documented_example_is_reproduced():
    """AWS's example: 4 rows, confusion {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}."""
    m = quality_statistics(
        np.array([0, 0, 0, 1.0]), np.array([0.1, 0.9, 0.8, 0.7]), "BinaryClassification"
    )["binary_classification_metrics"]
    assert m["confusion_matrix"] == {"0": {"0": 1, "1": 2}, "1": {"0": 0, "1": 1}}
    assert m["recall"] == {"value": 1.0, "standard_deviation": "NaN"}
    assert m["precision"]["value"] == 0.3333333333333333
    assert m["accuracy"]["value"] == 0.5
    assert m["precision_best_constant_classifier"]["value"] == 0.25
    assert m["accuracy_best_constant_classifier"]["value"] == 0.25
    assert m["true_negative_rate"]["value"] == pytest.approx(0.33333333333333337)
    assert m["false_positive_rate"]["value"] == pytest.approx(0.6666666666666666)


def test_multiclass_and_regression_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300).astype("float64")
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300)).astype("float64")
    m = quality_statistics(y, pred, "MulticlassClassification")["multiclass_classification_metrics"]
    assert m["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, pred))
    for beta, key in ((0.5, "weighted_f0_5"), (1.0, "weighted_f1"), (2.0, "weighted_f2")):
        assert m[key]["value"] == pytest.approx(skm.fbeta_score(y, pred, beta=beta, average="weighted"))
    assert m["weighted_recall"]["value"] == pytest.approx(skm.recall_score(y, pred, average="weighted"))
    assert m["weighted_precision"]["value"] == pytest.approx(
        skm.precision_score(y, pred, average="weighted", zero_division=0)
    )
    majority = np.full(300, np.bincount(y.astype(int)).argmax())
    assert m["weighted_f1_best_constant_classifier"]["value"] == pytest.approx(
        skm.f1_score(y, majority, average="weighted", zero_division=0)
    )
    cm = skm.confusion_matrix(y, pred)
    assert m["confusion_matrix"]["2"]["3"] == cm[2, 3]

    t = rng.normal(10, 3, 250)
    p = t + rng.normal(0, 1, 250)
    r = quality_statistics(t, p, "Regression")["regression_metrics"]
    assert set(r) == {"mae", "mse", "rmse", "r2"}
    assert r["mae"]["value"] == pytest.approx(skm.mean_absolute_error(t, p))
    assert r["mse"]["value"] == pytest.approx(skm.mean_squared_error(t, p))
    assert r["rmse"]["value"] == pytest.approx(np.sqrt(skm.mean_squared_error(t, p)))
    assert r["r2"]["value"] == pytest.approx(skm.r2_score(t, p))


def test_constraints_and_violations_read_like_model_monitors():
    constraints = {
        "version": 0.0,
        "regression_constraints": {
            "mae": {"threshold": 0.50, "comparison_operator": "GreaterThanThreshold"},
            "r2": {"threshold": -3.2, "comparison_operator": "LessThanThreshold"},
        },
    }
    stats = {"regression_metrics": {"mae": {"value": 0.7, "standard_deviation": "NaN"},
                                    "r2": {"value": -1.0, "standard_deviation": "NaN"}}}  # fmt: skip
    assert quality_violations(stats, constraints) == [
        {
            "metric_name": "mae",
            "constraint_check_type": "GreaterThanThreshold",
            "description": "Metric mae with 0.7 was GreaterThanThreshold 0.5",
        }
    ]
    suggested = quality_constraints(quality_statistics(*_binary(300), "BinaryClassification"))
    rules = suggested["binary_classification_constraints"]
    assert rules["f1"]["comparison_operator"] == "LessThanThreshold"
    assert rules["false_positive_rate"]["comparison_operator"] == "GreaterThanThreshold"
    assert set(suggested) == {"version", "binary_classification_constraints"}


# --------------------------------------------------------------------------------------------
# end to end: a capture tree with ground truth
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    root = tmp_path_factory.mktemp("mq")
    generate_tree(
        str(root / "capture"),
        endpoints=[default_endpoints()[0]],
        hours=4,
        requests_per_hour=80,
        start=START,
        labels_out=str(root / "labels"),
    )
    return root


def test_baseline_out_then_constraints_give_window_and_hourly_violations(churn, tmp_path):
    cq = captureq.open(str(churn / "capture"), labels=str(churn / "labels"))
    result = cq.model_quality(baseline_out=tmp_path / "mq")
    stats = json.loads((tmp_path / "mq" / "statistics.json").read_text())
    cons = json.loads((tmp_path / "mq" / "constraints.json").read_text())
    f1 = stats["binary_classification_metrics"]["f1"]["value"]
    assert result.statistics == stats and f1 == pytest.approx(result.overall()["f1"])
    assert cons["binary_classification_constraints"]["f1"] == {
        "threshold": f1,
        "comparison_operator": "LessThanThreshold",
    }
    # a stricter constraint, as a user would edit it
    cons["binary_classification_constraints"]["f1"]["threshold"] = 0.99
    (tmp_path / "mq" / "constraints.json").write_text(json.dumps(cons))
    r = cq.model_quality(constraints=tmp_path / "mq", out=tmp_path / "out")
    window = json.loads((tmp_path / "out" / "constraint_violations.json").read_text())
    assert {"metric_name": "f1", "constraint_check_type": "LessThanThreshold",
            "description": f"Metric f1 with {f1!r} was LessThanThreshold 0.99"} in window["violations"]  # fmt: skip
    hours = sorted(p.name for p in (tmp_path / "out" / "hourly").iterdir())
    assert hours == ["2026-01-01T00", "2026-01-01T01", "2026-01-01T02", "2026-01-01T03"]
    hourly = [v for v in r.violations.to_pylist() if v["granularity"] == "hour"]
    assert {v["metric_name"] for v in hourly} >= {"f1"}
    metrics = pq.read_table(tmp_path / "out" / "metrics.parquet")
    assert metrics.column_names == ["time", "granularity", "endpoint", "metric_name", "statistic", "value"]
    f1_rows = [m for m in metrics.to_pylist() if m["metric_name"] == "f1"]
    assert len(f1_rows) == 5 and {m["endpoint"] for m in f1_rows} == {"churn-xgb"}
    assert cq.sql("select count(*) as n from metrics where metric_name = 'auc'").to_pylist() == [{"n": 5}]


def test_cli_quality_writes_baseline_and_violations(churn, tmp_path):
    runner = CliRunner()
    args = ["quality", str(churn / "capture"), "--labels", str(churn / "labels")]
    r = runner.invoke(app, [*args, "--baseline-out", str(tmp_path / "mq")])
    assert r.exit_code == 0, r.output
    assert QualityBaseline.load(tmp_path / "mq").problem_type == "BinaryClassification"
    r = runner.invoke(app, [*args, "--constraints", str(tmp_path / "mq"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "constraint_violations.json").read_text()) == {"violations": []}
    r = runner.invoke(app, [*args, "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {"time", "endpoint", "metric_name", "value"} <= set(rows[0])
    assert "f1" in {row["metric_name"] for row in rows}


def test_monitor_refuses_a_model_quality_folder_with_exit_2(churn, tmp_path):
    cq = captureq.open(str(churn / "capture"), labels=str(churn / "labels"))
    cq.model_quality(baseline_out=tmp_path / "mq")
    with pytest.raises(ConfigError, match="model-quality baseline"):
        Baseline.load(tmp_path / "mq")
    runner = CliRunner()
    r = runner.invoke(app, ["monitor", str(churn / "capture"), "--baseline", str(tmp_path / "mq")])
    assert r.exit_code == 2
    assert "model-quality baseline" in r.output and "Traceback" not in r.output
    assert not isinstance(r.exception, KeyError)


@pytest.mark.parametrize(
    "files, message",
    [
        ({}, "does not exist"),
        ({"statistics.json": "{}", "constraints.json": "{not json"}, "is not valid JSON"),
        ({"statistics.json": "[]", "constraints.json": "{}"}, "expected an object"),
        ({"statistics.json": "{}", "constraints.json": '{"version": 0.0}'}, "no 'features' list"),
        ({"statistics.json": "{}"}, "has no constraints.json"),
    ],
)
def test_a_missing_or_malformed_baseline_exits_2_with_a_message(churn, tmp_path, files, message):
    folder = tmp_path / "b"
    if files:
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
    r = CliRunner().invoke(app, ["monitor", str(churn / "capture"), "--baseline", str(folder)])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    with pytest.raises(ConfigError, match=message):
        Baseline.load(folder)


def test_quality_refuses_a_data_quality_folder_with_exit_2(churn, tmp_path):
    captureq.open(str(churn / "capture")).baseline(str(tmp_path / "dq"))
    r = CliRunner().invoke(app, ["quality", str(churn / "capture"), "--labels", str(churn / "labels"),
                                 "--constraints", str(tmp_path / "dq")])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "data-quality baseline" in r.output and "captureq monitor" in r.output
