"""``captureq job``: one Model Monitor job, run from the bring-your-own-container contract
(environment variables only), writing Model Monitor's files, CloudWatch metric lines and the
status message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jobtrees import ENDPOINT, training_csv, write_hour
from test_real_files import SDK, key_paths

from captureq import exit_codes
from captureq.errors import ConfigError
from captureq.monitor import baseline as make_baseline
from captureq.monitor.job import JobConfig, execute, parse_dataset_format, status_message

ROOT = Path(__file__).resolve().parents[1]
H0 = datetime(2026, 3, 1, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
CAPTURE_FORMAT = '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput", "endpointOutput"]}}'


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A tree with hours 00–01 as trained and 02 drifted, and a baseline of the training data."""
    root = tmp_path_factory.mktemp("job")
    capture, labels = root / "capture", root / "groundtruth"
    for i in range(3):
        write_hour(capture, H0 + i * HOUR, labels, shift=25.0 if i == 2 else 0.0)
    base = root / "baseline"
    make_baseline(str(training_csv(root / "training.csv", [H0, H0 + HOUR])), base)
    return capture, labels, base


def run_job(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "captureq", "job", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )


ENV_KEYS = {"dataset_source", "output_path", "start_time", "end_time", "baseline_constraints",
            "baseline_statistics", "dataset_format", "analysis_type"}


def contract(site, tmp_path, start: datetime, end: datetime, **extra) -> dict[str, str]:
    capture, _, base = site
    return {
        "dataset_format": CAPTURE_FORMAT,
        "dataset_source": str(capture),
        "output_path": str(tmp_path / "resultdata"),
        "start_time": f"{start:%Y-%m-%dT%H:%M:%SZ}",
        "end_time": f"{end:%Y-%m-%dT%H:%M:%SZ}",
        "baseline_constraints": str(base / "constraints.json"),
        "baseline_statistics": str(base / "statistics.json"),
        "publish_cloudwatch_metrics": "Enabled",
        "sagemaker_endpoint_name": ENDPOINT,
        "sagemaker_monitoring_schedule_name": "churn-hourly",
        "CAPTUREQ_METRICS_DIR": str(tmp_path / "cloudwatch"),
        "CAPTUREQ_MESSAGE_DIR": str(tmp_path / "output"),
        **extra,
    }


def metric_lines(tmp_path: Path) -> list[dict]:
    files = list((tmp_path / "cloudwatch").glob("*.jsonl"))
    assert len(files) == 1
    return [json.loads(line) for line in files[0].read_text().splitlines()]


def test_a_drifted_hour_completes_with_violations_in_model_monitors_files(site, tmp_path):
    env = contract(site, tmp_path, H0 + 2 * HOUR, H0 + 3 * HOUR)
    done = run_job(env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "resultdata"
    assert sorted(p.name for p in out.iterdir()) == [
        "constraint_violations.json", "constraints.json", "statistics.json"
    ]
    stats = json.loads((out / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 40  # the hour asked for, not its neighbours
    real_stats = json.loads((SDK / "pipeline-data-quality" / "statistics.json").read_text())
    assert key_paths(real_stats) <= key_paths(stats)
    cons = json.loads((out / "constraints.json").read_text())
    real_cons = json.loads((SDK / "pipeline-data-quality" / "constraints.json").read_text())
    assert key_paths(real_cons) <= key_paths(cons)
    violations = json.loads((out / "constraint_violations.json").read_text())
    real_violations = json.loads((SDK / "monitor" / "constraint_violations.json").read_text())
    assert key_paths(violations) == key_paths(real_violations)
    drifted = {v["feature_name"] for v in violations["violations"]
               if v["constraint_check_type"] == "baseline_drift_check"}
    assert drifted == {"_c1"}
    n = len(violations["violations"])
    message = (tmp_path / "output" / "message").read_text(encoding="utf-8")
    assert message == f"CompletedWithViolations: Job completed successfully with {n} violations."

    lines = metric_lines(tmp_path)
    names = {m["MetricName"] for m in lines}
    assert {"feature_baseline_drift__c1", "feature_non_null__c0", "feature_data__c1"} <= names
    for m in lines:
        assert set(m) >= {"MetricName", "Timestamp", "Dimensions", "Unit"}
        assert ("Value" in m) != ("StatisticValues" in m)
        assert m["Dimensions"] == [
            {"Name": "Endpoint", "Value": ENDPOINT},
            {"Name": "MonitoringSchedule", "Value": "churn-hourly"},
        ]
        assert m["Timestamp"] == "2026-03-01T03:00:00Z"
        if "StatisticValues" in m:
            assert set(m["StatisticValues"]) == {"SampleCount", "Sum", "Minimum", "Maximum"}
    data_c1 = next(m for m in lines if m["MetricName"] == "feature_data__c1")
    assert data_c1["StatisticValues"]["SampleCount"] == 40
    drift = next(m for m in lines if m["MetricName"] == "feature_baseline_drift__c1")
    assert drift["Value"] > 0.1


def test_an_hour_like_the_training_data_completes_without_violations(site, tmp_path):
    done = run_job(contract(site, tmp_path, H0, H0 + HOUR))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "resultdata" / "constraint_violations.json").read_text()) == {
        "violations": []
    }
    assert (tmp_path / "output" / "message").read_text() == (
        "Completed: Job completed successfully with no violations."
    )


def test_fail_on_violations_exits_3_and_disabled_metrics_write_no_lines(site, tmp_path):
    env = contract(site, tmp_path, H0 + 2 * HOUR, H0 + 3 * HOUR, publish_cloudwatch_metrics="Disabled")
    done = run_job(env, "--fail-on-violations")
    assert done.returncode == exit_codes.VIOLATIONS == 3, done.stderr
    assert not (tmp_path / "cloudwatch").exists()
    assert (tmp_path / "output" / "message").read_text().startswith("CompletedWithViolations:")


def test_flags_override_the_environment(site, tmp_path):
    env = contract(site, tmp_path, H0 + 2 * HOUR, H0 + 3 * HOUR)
    done = run_job(env, "--start", "2026-03-01T00", "--end", "2026-03-01T01",
                   "--output-path", str(tmp_path / "other"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "other" / "constraint_violations.json").read_text()) == {
        "violations": []
    }


@pytest.mark.parametrize(
    "change, says",
    [
        ({"dataset_source": None}, "dataset_source"),
        ({"baseline_constraints": "/no/such/constraints.json"}, "/no/such/constraints.json"),
        ({"dataset_format": "{not json"}, "dataset_format"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"sagemaker_endpoint_name": "nobody"}, "no captured data"),
    ],
)
def test_user_errors_fail_with_exit_2_and_say_why_in_the_message(site, tmp_path, change, says):
    env = contract(site, tmp_path, H0, H0 + HOUR)
    for k, v in change.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    done = run_job(env)
    assert done.returncode == exit_codes.USAGE == 2, done.stderr
    message = (tmp_path / "output" / "message").read_text(encoding="utf-8")
    assert message.startswith("Failed: ") and says in message
    assert says in done.stderr


def test_a_crash_exits_1_with_a_failed_message(site, tmp_path, monkeypatch):
    import captureq.monitor.job as job

    def boom(config):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(job, "run_job", boom)
    env = contract(site, tmp_path, H0, H0 + HOUR)
    config = JobConfig.from_env(env)
    assert execute(config) == exit_codes.CRASH == 1
    assert (tmp_path / "output" / "message").read_text() == "Failed: RuntimeError: disk on fire"


def test_the_message_is_utf8_and_at_most_1_kb():
    long = "é" * 2000
    text = status_message("Failed", reason=long)
    assert len(text.encode("utf-8")) <= 1024
    text.encode("utf-8").decode("utf-8")  # never cut inside a character
    assert status_message("CompletedWithViolations", violations=1) == (
        "CompletedWithViolations: Job completed successfully with 1 violations."
    )


def test_the_guides_spaced_times_and_batch_formats_are_read():
    config = JobConfig.from_env(
        {
            "dataset_source": "/data",
            "output_path": "/out",
            "start_time": "2019-12-01T15: 20: 00Z",
            "end_time": "2019-12-01T16: 20: 00Z",
            "dataset_format": '{"csv": {"header": "true"}}',
        }
    )
    assert config.start_time == datetime(2019, 12, 1, 15, 20, tzinfo=timezone.utc)
    assert (config.dataset_format, config.header) == ("csv", True)
    assert JobConfig.from_env({"dataset_source": "d", "output_path": "o",
                               "dataset_format": '{"json": {"line": false}}'}).json_lines is False
    assert JobConfig.from_env({"dataset_source": "d", "output_path": "o",
                               "dataset_format": '{"parquet": {}}'}).dataset_format == "parquet"
    assert JobConfig.from_env({"dataset_source": "d", "output_path": "o"}).dataset_format == "capture"


def test_a_batch_csv_dataset_is_checked(site, tmp_path):
    data = tmp_path / "batch"
    data.mkdir()
    training_csv(data / "part-0.csv", [H0])
    env = contract(site, tmp_path, H0, H0 + HOUR, dataset_source=str(data),
                   dataset_format='{"csv": {"header": false}}')
    done = run_job(env)
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "resultdata" / "statistics.json").read_text())
    assert stats["dataset"]["item_count"] == 40
    assert [f["name"] for f in stats["features"]] == ["_c0", "_c1", "_c2"]


def test_model_quality_job_from_the_contract(site, tmp_path):
    capture, labels, _ = site
    base = tmp_path / "quality-baseline"
    base.mkdir()
    (base / "constraints.json").write_text(json.dumps({
        "version": 0.0,
        "regression_constraints": {
            "mae": {"threshold": 0.0001, "comparison_operator": "GreaterThanThreshold"},
            "r2": {"threshold": -100.0, "comparison_operator": "LessThanThreshold"},
        },
    }))
    env = contract(
        site, tmp_path, H0, H0 + 2 * HOUR,
        analysis_type="MODEL_QUALITY", problem_type="Regression", inference_attribute="0",
        ground_truth_source=str(labels), baseline_constraints=str(base / "constraints.json"),
    )
    env.pop("baseline_statistics")
    done = run_job(env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "resultdata"
    stats = json.loads((out / "statistics.json").read_text())
    real = json.loads((SDK / "pipeline-model-quality" / "statistics.json").read_text())
    assert key_paths(real) <= key_paths(stats)
    assert stats["dataset"]["item_count"] == 80
    cons = json.loads((out / "constraints.json").read_text())
    real_cons = json.loads((SDK / "pipeline-model-quality" / "constraints.json").read_text())
    assert key_paths(real_cons) <= key_paths(cons)
    violations = json.loads((out / "constraint_violations.json").read_text())["violations"]
    assert [v["metric_name"] for v in violations] == ["mae"]
    assert set(violations[0]) == {"metric_name", "constraint_check_type", "description"}
    assert (tmp_path / "output" / "message").read_text() == (
        "CompletedWithViolations: Job completed successfully with 1 violations."
    )
    names = {m["MetricName"] for m in metric_lines(tmp_path)}
    assert {"mae", "mse", "rmse", "r2"} <= names

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@given(st.one_of(st.text(max_size=40), JSONISH.map(json.dumps),
                 st.sampled_from(["csv", "json", "parquet", "sagemakerCaptureJson"]).flatmap(
                     lambda k: JSONISH.map(lambda v: json.dumps({k: v})))))
def test_any_dataset_format_is_read_or_refused_with_a_config_error(text):
    try:
        parsed = parse_dataset_format(text)
    except ConfigError:
        return
    assert parsed["dataset_format"] in ("capture", "csv", "json", "parquet")
