"""``captureq schedule``: Model Monitor's hourly schedule, run by cron over a growing tree.
Each hour's reports are written exactly once, through crashes and reruns."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from jobtrees import ENDPOINT, training_csv, write_hour
from typer.testing import CliRunner

import captureq.monitor.schedule as schedule_module
from captureq import exit_codes
from captureq.cli import app
from captureq.errors import ConfigError
from captureq.monitor import baseline as make_baseline
from captureq.monitor.schedule import STATE_FILE, Schedule, parse_offsets

H0 = datetime(2026, 3, 1, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
REPORTS = ["constraint_violations.json", "constraints.json", "statistics.json"]
runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("baseline")
    make_baseline(str(training_csv(root / "training.csv", [H0, H0 + HOUR])), root / "baseline")
    return root / "baseline"


def reports_by_hour(fs, folder: str) -> dict[str, list[str]]:
    """``{"yyyy/mm/dd/hh": [file names]}`` of every report object under ``folder``."""
    found: dict[str, list[str]] = {}
    for key in fs.find(folder):
        rel = key[len(folder.split("://", 1)[-1]) + 1:]
        if rel == STATE_FILE or rel.startswith("_captureq/"):  # the state, the lock or lease
            continue
        hour, _, name = rel.rpartition("/")
        found.setdefault(hour, []).append(name)
    return {h: sorted(v) for h, v in found.items()}


@pytest.mark.s3
def test_hour_after_hour_on_a_growing_s3_tree_with_a_crash(
    base, tmp_path, s3_fs, s3_bucket, s3_options, monkeypatch
):
    local = tmp_path / "capture"
    tree, out = f"s3://{s3_bucket}/capture", f"s3://{s3_bucket}/reports"
    plan = Schedule(tree, out, baseline=str(base), endpoint=ENDPOINT, name="churn-hourly",
                    start=H0, storage_options=s3_options)
    calls: list[datetime] = []
    real_run_job = schedule_module.run_job
    crash_at: list[datetime] = []

    def run_job(config):
        calls.append(config.end_time)
        if config.end_time in crash_at:  # half the reports written, then the process dies
            crash_at.remove(config.end_time)
            s3_fs.pipe(f"{config.output_path}/statistics.json".split("://")[1], b"{partial")
            raise KeyboardInterrupt
        return real_run_job(config)

    monkeypatch.setattr(schedule_module, "run_job", run_job)

    def arrive(i: int) -> None:  # hour i's capture object lands in S3
        path = write_hour(local, H0 + i * HOUR)
        s3_fs.put(str(path), f"{s3_bucket}/capture/{path.relative_to(local).as_posix()}")

    def at(i: int) -> datetime:  # 20 minutes after hour i closed
        return H0 + (i + 1) * HOUR + timedelta(minutes=20)

    for i in range(3):  # cron runs at 01:20, 02:20, 03:20
        arrive(i)
        assert [r.scheduled_time for r in plan.run(at(i)).runs] == [H0 + (i + 1) * HOUR]
    arrive(3)
    arrive(4)  # cron missed a run: two hours are due, and the second one crashes
    crash_at.append(H0 + 5 * HOUR)
    with pytest.raises(KeyboardInterrupt):
        plan.run(at(4))
    state = json.loads(s3_fs.cat(f"{s3_bucket}/reports/{ENDPOINT}/churn-hourly/{STATE_FILE}"))
    assert state["done_through"] == "2026-03-01T04:00:00Z"
    redo = plan.run(at(4))  # the next cron run
    assert [r.scheduled_time for r in redo.runs] == [H0 + 5 * HOUR]
    arrive(5)
    assert [r.scheduled_time for r in plan.run(at(5)).runs] == [H0 + 6 * HOUR]
    assert plan.run(at(5)).runs == []  # a rerun repeats nothing

    expected = [H0 + (i + 1) * HOUR for i in range(6)]
    assert sorted(calls) == sorted(expected + [H0 + 5 * HOUR])  # only the crashed hour twice
    folder = f"{s3_bucket}/reports/{ENDPOINT}/churn-hourly"
    s3_fs.invalidate_cache()
    found = reports_by_hour(s3_fs, folder)
    assert found == {f"{t:%Y/%m/%d/%H}": REPORTS for t in expected}
    for t in expected:  # every record of its hour, none of the neighbours'
        stats = json.loads(s3_fs.cat(f"{folder}/{t:%Y/%m/%d/%H}/statistics.json"))
        assert stats["dataset"]["item_count"] == 40, t
    state = json.loads(s3_fs.cat(f"{folder}/{STATE_FILE}"))
    assert state["done_through"] == "2026-03-01T06:00:00Z"
    assert [h["scheduled_time"] for h in state["history"]] == [
        f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in expected
    ]
    assert not [k for k in s3_fs.find(folder) if k.endswith(".tmp")]


def test_a_first_run_without_start_does_only_the_last_closed_hour(base, tmp_path):
    for i in range(3):
        write_hour(tmp_path / "capture", H0 + i * HOUR)
    plan = Schedule(str(tmp_path / "capture"), str(tmp_path / "reports"), baseline=str(base))
    # 03:10 with the default 15-minute delay: the hour that closed at 03:00 is not due yet
    result = plan.run(H0 + 3 * HOUR + timedelta(minutes=10))
    assert [r.scheduled_time for r in result.runs] == [H0 + 2 * HOUR]
    assert (tmp_path / "reports" / ENDPOINT / "captureq-data-quality" / "2026/03/01/02"
            / "statistics.json").exists()


def test_model_quality_offsets_count_labels_that_arrive_later(tmp_path):
    capture, labels = tmp_path / "capture", tmp_path / "groundtruth"
    quality = tmp_path / "quality-baseline"
    quality.mkdir()
    (quality / "constraints.json").write_text(json.dumps({"version": 0.0, "regression_constraints": {
        "mae": {"threshold": 10.0, "comparison_operator": "GreaterThanThreshold"}}}))
    kw = dict(baseline=str(quality), endpoint=ENDPOINT, labels=str(labels), start=H0 + 2 * HOUR,
              problem_type="Regression", inference_attribute="0")
    late = Schedule(str(capture), str(tmp_path / "reports"), name="late",
                    label_offsets=parse_offsets("-PT3H,-PT2H"), **kw)
    prompt = Schedule(str(capture), str(tmp_path / "reports"), name="prompt", **kw)
    for i in range(5):  # hour i is captured; the labels of hour i - 2 arrive
        write_hour(capture, H0 + i * HOUR)
        if i >= 2:
            write_hour(tmp_path / "unused", H0 + (i - 2) * HOUR, labels)
        now = H0 + (i + 1) * HOUR + timedelta(minutes=20)
        late_runs, prompt_runs = late.run(now).runs, prompt.run(now).runs
        if i < 2:
            assert late_runs == prompt_runs == []
            continue
        (run,) = late_runs
        assert (run.start, run.end) == (H0 + (i - 2) * HOUR, H0 + (i - 1) * HOUR)
        assert run.status == "Completed", run.message
        stats = json.loads(Path(run.report_uri, "statistics.json").read_text())
        assert stats["dataset"]["item_count"] == 40
        assert "regression_metrics" in stats
        (missed,) = prompt_runs  # the same schedule without offsets finds no labels yet
        assert missed.status == "Failed" and "no labelled predictions" in missed.message
        assert missed.report_uri is None


@pytest.mark.s3
def test_publish_cloudwatch_sends_model_monitors_metrics(base, tmp_path, s3_server):
    import boto3

    for i in range(3):
        write_hour(tmp_path / "capture", H0 + i * HOUR, shift=25.0 if i == 2 else 0.0)
    cloudwatch = boto3.client(
        "cloudwatch", region_name="us-east-1", endpoint_url=s3_server.endpoint_url,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    name = f"cw-{tmp_path.name}"
    plan = Schedule(str(tmp_path / "capture"), str(tmp_path / "reports"), baseline=str(base),
                    name=name, start=H0, publish_cloudwatch=True)
    result = plan.run(H0 + 3 * HOUR + timedelta(minutes=20), cloudwatch=cloudwatch)
    assert [r.status for r in result.runs] == ["Completed", "Completed", "CompletedWithViolations"]
    listed = cloudwatch.list_metrics(
        Namespace="aws/sagemaker/Endpoints/data-metrics",
        Dimensions=[{"Name": "MonitoringSchedule", "Value": name}],
    )["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {"feature_baseline_drift__c1", "feature_non_null__c0", "feature_data__c2"} <= names
    for m in listed:
        assert sorted(d["Name"] for d in m["Dimensions"]) == ["Endpoint", "MonitoringSchedule"]
    drift = cloudwatch.get_metric_statistics(
        Namespace="aws/sagemaker/Endpoints/data-metrics",
        MetricName="feature_baseline_drift__c1",
        Dimensions=[{"Name": "Endpoint", "Value": ENDPOINT},
                    {"Name": "MonitoringSchedule", "Value": name}],
        StartTime=H0, EndTime=H0 + 4 * HOUR, Period=3600, Statistics=["Maximum"],
    )["Datapoints"]
    by_hour = {d["Timestamp"].astimezone(timezone.utc): d["Maximum"] for d in drift}
    assert len(by_hour) == 3
    assert by_hour[H0 + 3 * HOUR] > 0.5 > by_hour[H0 + HOUR]  # _c1 moved 5 standard deviations


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(
            {"type": self.headers["Content-Type"], "body": json.loads(body)}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_the_webhook_gets_a_post_for_each_hour_with_violations(base, tmp_path, webhook):
    url, received = webhook
    for i in range(4):
        write_hour(tmp_path / "capture", H0 + i * HOUR, shift=25.0 if i == 2 else 0.0)
    plan = Schedule(str(tmp_path / "capture"), str(tmp_path / "reports"), baseline=str(base),
                    name="hooked", start=H0, webhook=url)
    plan.run(H0 + 4 * HOUR + timedelta(minutes=20))
    assert len(received) == 1
    post = received[0]
    assert post["type"] == "application/json"
    body = post["body"]
    assert body["status"] == "CompletedWithViolations"
    assert body["scheduled_time"] == "2026-03-01T03:00:00Z"
    assert body["window"] == ["2026-03-01T02:00:00Z", "2026-03-01T03:00:00Z"]
    assert {v["feature_name"] for v in body["violations"]} >= {"_c1"}
    assert body["report_uri"].endswith(f"{ENDPOINT}/hooked/2026/03/01/03")


def test_schedule_command(base, tmp_path):
    for i in range(3):
        write_hour(tmp_path / "capture", H0 + i * HOUR, shift=25.0 if i == 2 else 0.0)
    args = ["schedule", str(tmp_path / "capture"), "--baseline", str(base),
            "--out", str(tmp_path / "reports"), "--schedule-name", "cli", "--start", "2026-03-01T00",
            "--now", "2026-03-01T03:20", "--delay", "15m", "--fail-on-violations"]
    result = runner.invoke(app, args)
    assert result.exit_code == exit_codes.VIOLATIONS, result.output
    assert result.output.count("\n") == 3
    assert "CompletedWithViolations" in result.output.splitlines()[2]
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "nothing due" in again.output


@pytest.mark.parametrize(
    "args, says",
    [
        (["--every", "week"], "--every"),
        (["--delay", "soon"], "--delay"),
        (["--label-offsets", "-PT0H,-P1D"], "start offset"),
        (["--label-offsets", "-P1D"], "START,END"),
    ],
)
def test_schedule_user_errors_exit_2(base, tmp_path, args, says):
    write_hour(tmp_path / "capture", H0)
    result = runner.invoke(app, ["schedule", str(tmp_path / "capture"), "--baseline", str(base),
                                 "--out", str(tmp_path / "r"), "--now", "2026-03-01T03", *args])
    assert result.exit_code == 2
    assert says in result.output


def test_a_tree_with_two_endpoints_needs_endpoint(base, tmp_path):
    write_hour(tmp_path / "capture", H0)
    (tmp_path / "capture" / "other").mkdir()
    with pytest.raises(ConfigError, match="--endpoint"):
        Schedule(str(tmp_path / "capture"), str(tmp_path / "r"), baseline=str(base)).run(H0)


def test_two_runs_at_once_cannot_both_run_the_schedule(base, tmp_path):
    """A second run while one is running (cron fired again, a slow hour) stops with exit 2 and
    says who holds the schedule, instead of doing hours twice."""
    from captureq.export import ExportError, _Output

    for i in range(2):
        write_hour(tmp_path / "capture", H0 + i * HOUR)
    plan = Schedule(str(tmp_path / "capture"), str(tmp_path / "reports"), baseline=str(base), start=H0)
    first = _Output(plan.folder(ENDPOINT), None, what="schedule run")
    first.lock()  # the run that is still going
    try:
        with pytest.raises(ExportError, match="another captureq schedule run"):
            plan.run(H0 + 2 * HOUR + timedelta(minutes=20))
        res = runner.invoke(app, ["schedule", str(tmp_path / "capture"), "--baseline", str(base),
                                  "--out", str(tmp_path / "reports"), "--start", H0.isoformat(),
                                  "--now", (H0 + 2 * HOUR + timedelta(minutes=20)).isoformat()])
        assert res.exit_code == 2 and "another captureq schedule run" in res.output
    finally:
        first.unlock()
    done = plan.run(H0 + 2 * HOUR + timedelta(minutes=20))
    assert [r.scheduled_time for r in done.runs] == [H0 + HOUR, H0 + 2 * HOUR]
