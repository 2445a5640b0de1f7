"""Exit status a scheduler can use: 3 for violations (with --fail-on-violations), 2 for errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from captureq.cli import app
from captureq.generate import default_endpoints, generate_tree

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
runner = CliRunner()


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """churn-xgb with labels and a drift in _c3 from hour 4; a baseline of its first 3 hours."""
    root = tmp_path_factory.mktemp("exit")
    generate_tree(
        str(root / "capture"), endpoints=[default_endpoints()[0]], hours=8, requests_per_hour=40,
        start=START, drift_feature="_c3", drift_from_hour=4, labels_out=str(root / "labels"),
    )  # fmt: skip
    end = (START + timedelta(hours=3)).strftime("%Y-%m-%dT%H")
    made = runner.invoke(app, ["baseline", str(root / "capture"), str(root / "baseline"), "--end", end])
    assert made.exit_code == 0, made.output
    made = runner.invoke(app, ["quality", str(root / "capture"), "--labels", str(root / "labels"),
                               "--baseline-out", str(root / "qbase")])  # fmt: skip
    assert made.exit_code == 0, made.output
    return root


def _quality(churn, constraints, *extra):
    return runner.invoke(app, ["quality", str(churn / "capture"), "--labels", str(churn / "labels"),
                               "--constraints", str(constraints), "--format", "json", *extra])  # fmt: skip


def _strict(churn, tmp_path):
    """The window's own baseline with an accuracy threshold no model meets."""
    c = json.loads((churn / "qbase" / "constraints.json").read_text())
    c["binary_classification_constraints"]["accuracy"]["threshold"] = 1.01
    (tmp_path / "constraints.json").write_text(json.dumps(c))
    return tmp_path


def test_quality_exits_3_on_violations_only_when_asked(churn, tmp_path):
    strict = _strict(churn, tmp_path)
    r = _quality(churn, strict)
    assert r.exit_code == 0, r.output  # without the flag violations are data
    r = _quality(churn, strict, "--fail-on-violations")
    assert r.exit_code == 3, r.output
    assert "constraint violation(s) found" in r.stderr
    assert json.loads(r.stdout)  # the metrics are still printed


def test_quality_exits_0_without_violations(churn):
    # the window checked against its own baseline: every metric equals its threshold
    r = _quality(churn, churn / "qbase", "--fail-on-violations", "--by", "day")
    assert r.exit_code == 0, r.output


def test_errors_exit_2_not_3(churn, tmp_path):
    r = _quality(churn, tmp_path / "missing", "--fail-on-violations")
    assert r.exit_code == 2, r.output


def test_monitor_exits_3_on_violations(churn, tmp_path):
    args = ["monitor", str(churn / "capture"), "--baseline", str(churn / "baseline"), "--format", "csv"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args, "--fail-on-violations"])
    assert r.exit_code == 3, r.output


def test_report_exits_3_on_violations(churn, tmp_path):
    pytest.importorskip("altair")
    args = ["report", str(churn / "capture"), "--baseline", str(churn / "baseline"),
            "-o", str(tmp_path / "r.html"), "--format", "json"]  # fmt: skip
    r = runner.invoke(app, [*args, "--fail-on-violations"])
    assert r.exit_code == 3, r.output
    assert (tmp_path / "r.html").exists()
