"""Planted drift: the churn endpoint's feature _c3 shifts at hour 30; monitoring must say so."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.generate import default_endpoints, generate_tree
from captureq.monitor import monitor
from captureq.monitor.drift import js_distance, ks_pvalue, ks_statistic, psi

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
DRIFT_HOUR = 30


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    spec = default_endpoints()[0]  # churn-xgb, CSV features _c0.._c11
    generate_tree(
        str(root / "capture"),
        endpoints=[spec],
        hours=36,
        requests_per_hour=50,
        start=START,
        drift_feature="_c3",
        drift_from_hour=DRIFT_HOUR,
        labels_out=str(root / "labels"),
    )
    return root


@pytest.fixture(scope="module")
def base_dir(churn):
    tree = captureq.open(str(churn / "capture"), end=START + timedelta(hours=24))
    tree.baseline(str(churn / "baseline"))
    return churn / "baseline"


def test_drift_is_named_with_the_hour_it_began(churn, base_dir):
    cq = captureq.open(str(churn / "capture"))
    result = cq.monitor(str(base_dir))
    hourly = [r for r in result.violations.to_pylist() if r["granularity"] == "hour"]
    assert {(r["feature_name"], r["constraint_check_type"]) for r in hourly} == {
        ("_c3", "baseline_drift_check")
    }
    drifted = sorted(r["window_start"] for r in hourly)
    assert drifted == [START + timedelta(hours=h) for h in range(DRIFT_HOUR, 36)]
    first = result.first_drift().to_pylist()[0]
    assert first["feature"] == "_c3" and first["first_drift_hour"] == START + timedelta(
        hours=DRIFT_HOUR
    )
    window = result.constraint_violations["violations"]
    assert [(v["feature_name"], v["constraint_check_type"]) for v in window] == [
        ("_c3", "baseline_drift_check")
    ]
    assert window[0]["description"].startswith("Numerical distance: ")
    assert window[0]["description"].endswith(" exceeds numerical threshold: 0.1")
    # the drift table is a DuckDB view on the same tree
    rows = cq.sql(
        "select feature, min(window_start) as first from drift "
        "where granularity = 'hour' and drift group by feature"
    ).to_pylist()
    assert rows == [{"feature": "_c3", "first": START + timedelta(hours=DRIFT_HOUR)}]
    psi_before = cq.sql(
        "select max(psi) as m from drift where feature = '_c3' and granularity = 'hour' "
        f"and window_start < timestamptz '{START + timedelta(hours=DRIFT_HOUR)}'"
    ).to_pylist()
    assert psi_before[0]["m"] < 1.0


def test_undrifted_traffic_has_no_violations(churn, base_dir):
    cq = captureq.open(
        str(churn / "capture"),
        start=START + timedelta(hours=24),
        end=START + timedelta(hours=DRIFT_HOUR),
    )
    result = monitor(cq, base_dir)
    assert result.constraint_violations == {"violations": []}
    assert result.violations.num_rows == 0
    assert result.drift.num_rows == 12 * 7  # 12 features × (the window + 6 hours)


def test_monitor_writes_model_monitor_files(churn, base_dir, tmp_path):
    monitor(captureq.open(str(churn / "capture")), base_dir, tmp_path)
    violations = json.loads((tmp_path / "constraint_violations.json").read_text())
    assert set(violations) == {"violations"}
    for v in violations["violations"]:
        assert set(v) == {"feature_name", "constraint_check_type", "description"}
    stats = json.loads((tmp_path / "statistics.json").read_text())
    assert set(stats) == {"version", "dataset", "features"}
    hour = (START + timedelta(hours=DRIFT_HOUR)).strftime("%Y-%m-%dT%H")
    assert json.loads((tmp_path / "hourly" / hour / "constraint_violations.json").read_text())[
        "violations"
    ]
    assert (tmp_path / "drift.parquet").exists()


def test_cli_baseline_then_monitor(churn, tmp_path):
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "baseline",
            str(churn / "capture"),
            str(tmp_path / "b"),
            "--end",
            (START + timedelta(hours=24)).isoformat(),
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "constraints.json").exists()
    r = runner.invoke(app, ["monitor", str(churn / "capture"), "--baseline", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "_c3" in r.output and "2026-01-02 06:00" in r.output


def test_drift_metrics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(3)
    a, b = np.sort(rng.normal(0, 1, 800)), np.sort(rng.normal(0.3, 1.2, 300))
    d = ks_statistic(a, np.ones(len(a)), b)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic)
    en = len(a) * len(b) / (len(a) + len(b))
    assert ks_pvalue(d, len(a), len(b)) == pytest.approx(
        stats.kstwobign.sf(np.sqrt(en) * d), rel=1e-6
    )
    p, q = np.array([0.1, 0.4, 0.5]), np.array([0.3, 0.3, 0.4])
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert psi(p, q) == pytest.approx(np.sum((q - p) * np.log(q / p)))
    assert psi(p, p) == 0.0
