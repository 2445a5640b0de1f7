"""The monitoring commands as a user types them: formats, variants, S3 options, pipes, metrics."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import captureq
from captureq.cli import app
from captureq.generate import default_endpoints, generate_tree

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
runner = CliRunner()


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcli")
    generate_tree(
        str(root / "capture"),
        endpoints=[default_endpoints()[0]],  # churn-xgb: variants AllTraffic and Canary
        hours=12,
        requests_per_hour=40,
        start=START,
        drift_feature="_c3",
        drift_from_hour=8,
        labels_out=str(root / "labels"),
    )
    end = (START + timedelta(hours=6)).strftime("%Y-%m-%dT%H")
    made = runner.invoke(app, ["baseline", str(root / "capture"), str(root / "baseline"), "--end", end])
    assert made.exit_code == 0, made.output
    return root


def test_monitor_writes_model_monitors_cloudwatch_metrics(churn, tmp_path):
    r = runner.invoke(app, ["monitor", str(churn / "capture"), "--baseline", str(churn / "baseline"),
                            "--out", str(tmp_path), "--format", "csv"])  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["time", "granularity", "endpoint", "metric_name", "statistic", "value"]
    names = {row["metric_name"] for row in rows}
    assert {"feature_baseline_drift__c3", "feature_non_null__c3", "feature_data__c3"} <= names
    assert {row["endpoint"] for row in rows} == {"churn-xgb"}
    hourly = [r for r in rows if r["metric_name"] == "feature_baseline_drift__c3" and r["granularity"] == "hour"]
    assert len(hourly) == 12
    late = [float(r["value"]) for r in hourly if r["time"] >= "2026-01-01T08"]
    early = [float(r["value"]) for r in hourly if r["time"] < "2026-01-01T06"]
    assert min(late) > max(early)  # the drift is what the metric shows
    stats = {r["statistic"] for r in rows if r["metric_name"] == "feature_data__c3"}
    assert stats == {"Average", "Minimum", "Maximum", "Sum", "SampleCount"}
    table = pq.read_table(tmp_path / "metrics.parquet")
    assert table.num_rows == len(rows)
    j = runner.invoke(app, ["monitor", str(churn / "capture"), "--baseline", str(churn / "baseline"),
                            "--format", "json"])  # fmt: skip
    assert j.exit_code == 0 and len(json.loads(j.stdout)) == len(rows)


def test_metrics_view_after_monitor(churn):
    cq = captureq.open(str(churn / "capture"))
    cq.monitor(str(churn / "baseline"))
    got = cq.sql(
        "select count(*) as n from metrics where metric_name = 'feature_non_null__c0' "
        "and granularity = 'hour' and value = 1.0"
    ).to_pylist()
    assert got == [{"n": 12}]


def test_variant_narrows_every_monitoring_command(churn, tmp_path):
    cap, base, labels = str(churn / "capture"), str(churn / "baseline"), str(churn / "labels")
    both = runner.invoke(app, ["monitor", cap, "--baseline", base, "--format", "json"])
    canary = runner.invoke(app, ["monitor", cap, "--baseline", base, "--variant", "Canary", "--format", "json"])
    assert both.exit_code == canary.exit_code == 0, canary.output

    def count(out):
        return [r["value"] for r in json.loads(out) if r["metric_name"] == "feature_data__c0"
                and r["statistic"] == "SampleCount" and r["granularity"] == "window"]  # fmt: skip

    assert count(canary.stdout)[0] < count(both.stdout)[0]
    q = runner.invoke(app, ["quality", cap, "--labels", labels, "--variant", "Canary", "--format", "csv"])
    assert q.exit_code == 0, q.output
    assert "f1" in {r["metric_name"] for r in csv.DictReader(io.StringIO(q.stdout))}
    b = runner.invoke(app, ["baseline", cap, str(tmp_path / "b"), "--variant", "Canary", "--format", "json"])
    assert b.exit_code == 0, b.output
    assert {r["feature"] for r in json.loads(b.stdout)} >= {"_c0", "_c3"}
    rep = runner.invoke(app, ["report", cap, "--baseline", base, "--variant", "Canary",
                              "-o", str(tmp_path / "r.html"), "--format", "json"])  # fmt: skip
    assert rep.exit_code == 0, rep.output
    doc = json.loads(rep.stdout)
    assert doc["report"] == str(tmp_path / "r.html") and doc["headline"]


def test_storage_options_reach_s3_for_every_monitoring_command(churn, tmp_path, s3_server, s3_fs, s3_bucket):
    from s3util import upload_tree

    upload_tree(s3_fs, churn / "capture", f"s3://{s3_bucket}/capture")
    upload_tree(s3_fs, churn / "labels", f"s3://{s3_bucket}/labels")
    opts = ["--storage-option", "key=testing", "--storage-option", "secret=testing",
            "--storage-option", f"client_kwargs.endpoint_url={s3_server.endpoint_url}",
            "--storage-option", "use_listings_cache=false"]  # fmt: skip
    cap, labels = f"s3://{s3_bucket}/capture", f"s3://{s3_bucket}/labels"
    b = runner.invoke(app, ["baseline", cap, str(tmp_path / "b"), "--end", "2026-01-01T06", *opts])
    assert b.exit_code == 0, b.output
    m = runner.invoke(app, ["monitor", cap, "--baseline", str(tmp_path / "b"), "--format", "json", *opts])
    assert m.exit_code == 0, m.output
    local = runner.invoke(app, ["monitor", str(churn / "capture"), "--baseline", str(tmp_path / "b"),
                                "--format", "json"])  # fmt: skip
    assert json.loads(m.stdout) == json.loads(local.stdout)
    q = runner.invoke(app, ["quality", cap, "--labels", labels, "--format", "json", *opts])
    assert q.exit_code == 0, q.output
    rep = runner.invoke(app, ["report", cap, "--baseline", str(tmp_path / "b"), "--labels", labels,
                              "-o", str(tmp_path / "r.html"), *opts])  # fmt: skip
    assert rep.exit_code == 0, rep.output
    bad = runner.invoke(app, ["monitor", cap, "--baseline", str(tmp_path / "b"), "--format", "yaml"])
    assert bad.exit_code == 2 and "--format" in bad.output


def _captureq(*args: str, **env: str) -> list[str]:
    exe = Path(sys.executable).parent / "captureq"
    return [str(exe), *args]


@pytest.mark.parametrize("command", ["monitor", "quality"])
@pytest.mark.parametrize("read_first_line", [True, False])
def test_a_pipe_closed_early_is_not_an_error(churn, command, read_first_line):
    """`captureq monitor … --format csv | head -1` (and a reader gone before any output):
    exit 0, nothing on stderr but quality's line saying which model type it chose."""
    args = (["monitor", str(churn / "capture"), "--baseline", str(churn / "baseline")]
            if command == "monitor" else
            ["quality", str(churn / "capture"), "--labels", str(churn / "labels"), "--by", "hour"])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path.cwd()))}
    proc = subprocess.Popen(
        _captureq(*args, "--format", "csv"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    if read_first_line:
        assert proc.stdout.readline().startswith(b"time,")
    proc.stdout.close()  # what `head` does once it has what it wants
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert [line for line in stderr.splitlines() if not line.startswith("model: ")] == []


def test_wide_tables_stay_inside_an_80_column_terminal(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    names = [f"customer_feature_{i:02d}" for i in range(80)]
    lines = [",".join(names)] + [",".join(f"{v:.3f}" for v in rng.normal(size=80)) for _ in range(30)]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path.cwd()))}
    out = subprocess.run(_captureq("baseline", str(tmp_path / "wide.csv"), str(tmp_path / "b")),
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    for name in names[:50]:  # every value whole, none cut by an ellipsis
        assert name in out.stdout
    assert "…" not in out.stdout
