"""Model-quality metrics, per hour, held against scikit-learn on the same data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.generate import default_endpoints, generate_tree
from captureq.monitor.quality import binary_metrics, multiclass_metrics, regression_metrics

skm = pytest.importorskip("sklearn.metrics")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    churn, housing = default_endpoints()[:2]
    generate_tree(
        str(root / "capture"),
        endpoints=[churn, housing],
        hours=6,
        requests_per_hour=60,
        start=START,
        labels_out=str(root / "labels"),
        label_delay_hours=2,
    )
    return captureq.open(str(root / "capture"), labels=str(root / "labels"))


def test_binary_metrics_per_hour_match_sklearn(tree):
    result = tree.model_quality(endpoint="churn-xgb", threshold=0.4)
    assert result.problem_type == "BinaryClassification" and result.prediction == "output_c0"
    preds = tree.predictions(endpoint="churn-xgb").to_pandas()
    preds["hour"] = preds["inference_time"].dt.floor("h")
    rows = {r["window_start"]: r for r in result.metrics.to_pylist() if r["granularity"] == "hour"}
    assert len(rows) == 6
    for hour, group in preds.groupby("hour"):
        row = rows[hour.to_pydatetime()]
        lab = group.dropna(subset=["ground_truth_value"])
        y, s = lab["ground_truth_value"].to_numpy().astype(int), lab["output_c0"].to_numpy()
        yp = (s >= 0.4).astype(int)
        assert row["records"] == len(group) and row["labelled"] == len(lab)
        assert row["label_coverage"] == pytest.approx(len(lab) / len(group))
        assert row["label_delay_mean_h"] == 2.0
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(y, yp))
        assert row["precision"] == pytest.approx(skm.precision_score(y, yp, zero_division=0))
        assert row["recall"] == pytest.approx(skm.recall_score(y, yp, zero_division=0))
        assert row["f1"] == pytest.approx(skm.f1_score(y, yp, zero_division=0))
        assert row["auc_roc"] == pytest.approx(skm.roc_auc_score(y, s))
        assert row["auc_pr"] == pytest.approx(skm.average_precision_score(y, s))
        (tn, fp), (fn, tp) = skm.confusion_matrix(y, yp, labels=[0, 1])
        assert (row["tn"], row["fp"], row["fn"], row["tp"]) == (tn, fp, fn, tp)


def test_regression_metrics_match_sklearn(tree):
    result = tree.model_quality(endpoint="housing-ll", by="day")
    assert result.problem_type == "Regression"
    lab = tree.predictions(endpoint="housing-ll").to_pandas().dropna(subset=["ground_truth_value"])
    y, p = lab["ground_truth_value"].to_numpy(), lab[result.prediction].to_numpy()
    row = result.overall()
    assert row["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert row["mse"] == pytest.approx(skm.mean_squared_error(y, p))
    assert row["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert row["r2"] == pytest.approx(skm.r2_score(y, p))
    assert row["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, p))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_definitions_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many tied scores
    m = binary_metrics(y, s, 0.5)
    assert m["auc_roc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["auc_pr"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["f1"] == pytest.approx(skm.f1_score(y, s >= 0.5))
    yt, yp = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    mm, cm = multiclass_metrics(yt, yp)
    assert mm["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp))
    assert mm["weighted_f1"] == pytest.approx(
        skm.f1_score(yt, yp, average="weighted", zero_division=0)
    )
    labels = np.unique(np.r_[yt, yp])
    expected = skm.confusion_matrix(yt, yp, labels=labels)
    got = np.zeros_like(expected)
    for r in cm:
        got[list(labels).index(int(r["actual"])), list(labels).index(int(r["predicted"]))] = r[
            "count"
        ]
    assert (got == expected).all()
    t, p = rng.normal(5, 2, 100), rng.normal(5, 2, 100)
    r = regression_metrics(t, p)
    assert r["r2"] == pytest.approx(skm.r2_score(t, p))
    assert r["mape"] == pytest.approx(skm.mean_absolute_percentage_error(t, p))


def test_multiclass_from_a_predictions_table():
    from captureq.monitor import model_quality

    times = pa.array(
        [START + timedelta(minutes=20 * i) for i in range(9)], pa.timestamp("us", tz="UTC")
    )
    table = pa.table(
        {
            "endpoint": ["ep"] * 9,
            "inference_time": times,
            "output_c0": [0.0, 1, 2, 2, 1, 0, 2, 2, 1],
            "ground_truth_value": [0.0, 1, 2, 1, 1, 0, 2, 0, None],
        }
    )
    result = model_quality(table, problem_type="MulticlassClassification")
    overall = result.overall()
    assert overall["labelled"] == 8 and overall["accuracy"] == pytest.approx(6 / 8)
    y, p = [0, 1, 2, 1, 1, 0, 2, 0], [0, 1, 2, 2, 1, 0, 2, 2]
    assert overall["weighted_f1"] == pytest.approx(skm.f1_score(y, p, average="weighted"))
    assert [r["granularity"] for r in result.metrics.to_pylist()] == [
        "window",
        "hour",
        "hour",
        "hour",
    ]


def test_cli_quality(tree):
    r = CliRunner().invoke(
        app,
        [
            "quality",
            tree.uri,
            "--labels",
            tree.labels_uri,
            "--endpoint",
            "churn-xgb",
            "--by",
            "day",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "BinaryClassification on output_c0" in r.output and "confusion matrix" in r.output
