"""``captureq job`` and ``captureq schedule`` running Model Monitor's two Clarify monitors —
bias drift and feature-attribution drift — from the container contract (environment only) and
hour by hour with the schedule's exactly-once state."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import test_monitor_attribution as attr_trees
import test_monitor_bias as bias_trees
from test_monitor_job import metric_lines, run_job
from typer.testing import CliRunner

from captureq import exit_codes
from captureq.cli import app
from captureq.monitor.bias import bias

REAL = Path(__file__).parent / "data" / "real" / "awsdocs"


def _shape(x):
    return bias_trees._shape(x)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "output_path": str(tmp_path / "resultdata"),
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_monitoring_schedule_name": "clarify-hourly",
        "CAPTUREQ_METRICS_DIR": str(tmp_path / "cloudwatch"),
        "CAPTUREQ_MESSAGE_DIR": str(tmp_path / "output"),
        **extra,
    }


def _hour(h: int) -> tuple[str, str]:
    t = bias_trees.START + timedelta(hours=h)
    return f"{t:%Y-%m-%dT%H:%M:%SZ}", f"{t + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"


@pytest.fixture(scope="module")
def loans(tmp_path_factory):
    """The bias tests' tree (sex=1's scores fall from hour 18), its baseline of hours 0–11 and
    Clarify's analysis configuration, as files."""
    root = tmp_path_factory.mktemp("bias-job")
    tree = bias_trees.write_tree(root, seed=1, shift_at=bias_trees.SHIFT_AT)
    (root / "base").mkdir()
    base = bias(tree, bias_trees.CONFIG,
                end=bias_trees.START + timedelta(hours=bias_trees.BASE_HOURS)).analysis
    (root / "base" / "analysis.json").write_text(json.dumps(base))
    (root / "analysis_config.json").write_text(json.dumps(bias_trees.CONFIG))
    return root


@pytest.mark.parametrize("analysis_type", ["BIAS_DRIFT", "MODEL_BIAS"])
def test_a_bias_drift_job_from_the_environment(loans, tmp_path, analysis_type):
    start, end = _hour(bias_trees.SHIFT_AT + 1)
    env = _env(tmp_path, dataset_source=str(loans / "capture"),
               ground_truth_source=str(loans / "labels"), start_time=start, end_time=end,
               analysis_type=analysis_type, analysis_config=str(loans / "analysis_config.json"),
               baseline_constraints=str(loans / "base" / "analysis.json"),
               sagemaker_endpoint_name="loans")
    done = run_job(env)
    assert done.returncode == exit_codes.OK, done.stderr
    out = tmp_path / "resultdata"
    violations = json.loads((out / "constraint_violations.json").read_text())
    theirs = json.loads((REAL / "clarify-bias-drift-violations.json").read_text())
    assert _shape(violations) == _shape(theirs)
    names = {v["metric_name"] for v in violations["violations"]}
    assert {"DPPL", "DI"} <= names  # the planted drop of sex=1's scores
    analysis = json.loads((out / "analysis.json").read_text())
    real = bias_trees._real_analysis()["post_training_bias_metrics"]
    assert set(real) <= set(analysis["post_training_bias_metrics"])
    message = (tmp_path / "output" / "message").read_text()
    n = len(violations["violations"])
    assert message == f"CompletedWithViolations: Job completed successfully with {n} violations."
    lines = metric_lines(tmp_path)
    assert lines and all(m["MetricName"].startswith("bias_metric_") for m in lines)
    dims = {d["Name"]: d["Value"] for d in lines[0]["Dimensions"]}
    assert dims["Endpoint"] == "loans" and dims["MonitoringSchedule"] == "clarify-hourly"
    assert {"BiasStage", "Facet", "FacetValue"} <= set(dims)
    assert {m["Timestamp"] for m in lines} == {end}
    assert run_job(env, "--fail-on-violations").returncode == exit_codes.VIOLATIONS


def test_a_bias_hour_before_the_shift_completes(loans, tmp_path):
    start, end = _hour(3)
    env = _env(tmp_path, dataset_source=str(loans / "capture"),
               ground_truth_source=str(loans / "labels"), start_time=start, end_time=end,
               analysis_type="BIAS_DRIFT", analysis_config=str(loans / "analysis_config.json"),
               baseline_constraints=str(loans / "base" / "analysis.json"))
    done = run_job(env, "--fail-on-violations")
    assert done.returncode == exit_codes.OK, done.stderr
    assert (tmp_path / "output" / "message").read_text().startswith("Completed: ")


def test_a_bias_job_without_its_analysis_config_fails_saying_so(loans, tmp_path):
    start, end = _hour(3)
    env = _env(tmp_path, dataset_source=str(loans / "capture"),
               ground_truth_source=str(loans / "labels"), start_time=start, end_time=end,
               analysis_type="MODEL_BIAS",
               baseline_constraints=str(loans / "base" / "analysis.json"))
    done = run_job(env)
    assert done.returncode == exit_codes.USAGE
    assert "analysis_config" in (tmp_path / "output" / "message").read_text()


@pytest.fixture(scope="module")
def shap(tmp_path_factory):
    """The attribution tests' trees: a baseline, and 3 live hours with region leading from
    hour 1."""
    root = tmp_path_factory.mktemp("shap-job")
    base = attr_trees._baseline(root)
    live = attr_trees.write_tree(root / "live", 3, 40, seed=6, shift_from=1)
    return base, live


@pytest.mark.parametrize("analysis_type", ["FEATURE_ATTRIBUTION_DRIFT", "MODEL_EXPLAINABILITY"])
def test_a_feature_attribution_drift_job_from_the_environment(shap, tmp_path, analysis_type):
    base, live = shap
    start, end = _hour(1)
    env = _env(tmp_path, dataset_source=str(live), start_time=start, end_time=end,
               analysis_type=analysis_type, baseline_constraints=str(base),
               sagemaker_endpoint_name="churn")
    done = run_job(env)
    assert done.returncode == exit_codes.OK, done.stderr
    out = tmp_path / "resultdata"
    violations = json.loads((out / "constraint_violations.json").read_text())
    real = attr_trees._real_violations()
    assert violations["version"] == real["version"]
    assert len(violations["violations"]) == 1
    (v,) = violations["violations"]
    assert set(v) == set(real["violations"][0])
    assert v["constraint_check_type"] == real["violations"][0]["constraint_check_type"]
    assert re.sub(r"[0-9.]+", "N", v["description"]) == re.sub(
        r"[0-9.]+", "N", real["violations"][0]["description"])
    analysis = json.loads((out / "analysis.json").read_text())
    g = analysis["explanations"]["kernel_shap"]["churn"]["global_shap_values"]
    assert max(g, key=g.get) == "region"
    assert (tmp_path / "output" / "message").read_text() == (
        "CompletedWithViolations: Job completed successfully with 1 violations.")
    lines = metric_lines(tmp_path)
    assert {m["MetricName"] for m in lines} == {f"feature_{f}" for f in attr_trees.FEATURES} | {
        "ExpectedValue"}
    assert {m["Timestamp"] for m in lines} == {end}
    dims = {d["Name"]: d["Value"] for d in lines[0]["Dimensions"]}
    assert dims["Endpoint"] == "churn" and dims["MonitoringSchedule"] == "clarify-hourly"
    assert dims["ExplainabilityMethod"] == "KernelShap"
    assert run_job(env, "--fail-on-violations").returncode == exit_codes.VIOLATIONS


def test_an_attribution_hour_like_the_baseline_completes(shap, tmp_path):
    base, live = shap
    start, end = _hour(0)
    env = _env(tmp_path, dataset_source=str(live), start_time=start, end_time=end,
               analysis_type="FEATURE_ATTRIBUTION_DRIFT", baseline_constraints=str(base))
    done = run_job(env, "--fail-on-violations")
    assert done.returncode == exit_codes.OK, done.stderr
    assert json.loads((tmp_path / "resultdata" / "constraint_violations.json").read_text()) == {
        "version": "1.0", "violations": []}


def test_a_baseline_of_the_other_kind_is_refused(shap, loans, tmp_path):
    base, live = shap
    start, end = _hour(0)
    env = _env(tmp_path, dataset_source=str(live), start_time=start, end_time=end,
               analysis_type="FEATURE_ATTRIBUTION_DRIFT",
               baseline_constraints=str(loans / "base" / "analysis.json"))
    done = run_job(env)
    assert done.returncode == exit_codes.USAGE
    assert "kernel_shap" in (tmp_path / "output" / "message").read_text()


def test_an_attribution_schedule_of_three_hours_runs_each_once(shap, tmp_path):
    base, live = shap
    out = tmp_path / "reports"
    args = ["schedule", str(live), "--baseline", str(base.parent), "--out", str(out),
            "--start", "2026-01-01T00", "--now", "2026-01-01T03:20"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    folder = out / "churn" / "captureq-feature-attribution-drift"
    state = json.loads((folder / "captureq-schedule.json").read_text())
    assert state["analysis_type"] == "MODEL_EXPLAINABILITY"  # inferred from the baseline
    assert [h["violations"] for h in state["history"]] == [0, 1, 1]
    for h in ("01", "02", "03"):
        hour = folder / "2026" / "01" / "01" / h
        assert sorted(p.name for p in hour.iterdir()) == [
            "analysis.json", "constraint_violations.json"]
    again = runner.invoke(app, args + ["--fail-on-violations"])
    assert again.exit_code == 0 and "nothing due" in again.output
    assert json.loads((folder / "captureq-schedule.json").read_text()) == state
    later = runner.invoke(app, [*args[:-1], "2026-01-01T04:20", "--analysis-type",
                                "attribution", "--fail-on-violations"])
    assert later.exit_code == 0, later.output  # hour 03 has no captures: Failed, no violations


def test_a_bias_schedule_names_its_type(loans, tmp_path):
    out = tmp_path / "reports"
    args = ["schedule", str(loans / "capture"), "--labels", str(loans / "labels"),
            "--baseline", str(loans / "base"), "--analysis-type", "bias",
            "--analysis-config", str(loans / "analysis_config.json"), "--out", str(out),
            "--start", "2026-01-01T18", "--now", "2026-01-01T20:20", "--fail-on-violations"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == exit_codes.VIOLATIONS, done.output
    state = json.loads((out / "loans" / "captureq-bias-drift" / "captureq-schedule.json")
                       .read_text())
    assert state["analysis_type"] == "MODEL_BIAS"
    assert len(state["history"]) == 2 and all(h["violations"] for h in state["history"])
