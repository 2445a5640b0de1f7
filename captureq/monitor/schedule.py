"""A Model Monitor schedule that cron or Airflow starts: every run does each hour that has
closed since the last run, then exits.

An hour is due when its scheduled time ``T`` (the end of the hour analysed, as Model Monitor
names an execution) is at most ``now - delay``. Each due hour runs one job
(:func:`captureq.monitor.job.run_job`) over ``[T - 1h, T)`` — for model quality over
``[T + start offset, T + end offset)``, Model Monitor's ``StartTimeOffset``/``EndTimeOffset``
(``-P1D``), so labels that arrive later are counted — and writes its reports to
``{out}/{endpoint}/{schedule}/yyyy/mm/dd/hh/`` (the hour of ``T``).

The schedule's state, ``{out}/{endpoint}/{schedule}/captureq-schedule.json``, is replaced
atomically (a whole new object) after every hour, once its reports are written: the state is
the record of which reports are complete. A run that crashes leaves the state at the last whole
hour, so the next run writes the unfinished hour's reports again (the same files, overwritten)
and goes on; a rerun finds nothing due and writes nothing. CloudWatch metrics and the webhook
are sent before the state commit, so after a crash between the two they are sent again for that
hour (at least once).

Two schedule runs must not overlap (cron's ``flock``, Airflow's ``max_active_runs=1``).

>>> from datetime import datetime, timezone
>>> s = Schedule("capture/", "reports/", endpoint="churn", name="hourly")
>>> [t.isoformat() for t in s.due(datetime(2026, 1, 1, 5, 20, tzinfo=timezone.utc), None)]
['2026-01-01T05:00:00+00:00']
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from ..errors import ConfigError
from ..timeutil import floor_hour, to_iso_duration, to_lateness, to_utc
from .job import (
    DATA_QUALITY,
    FAILED,
    MODEL_BIAS,
    MODEL_EXPLAINABILITY,
    MODEL_QUALITY,
    WITH_VIOLATIONS,
    JobConfig,
    NoDataError,
    read_json_uri,
    run_job,
    status_message,
)

STATE_FILE = "captureq-schedule.json"
NOW_ENV = "CAPTUREQ_NOW"
DELAY = timedelta(minutes=15)
PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
HISTORY = 24 * 14  # hours of status the state keeps
#: ``--analysis-type`` values, and the analysis and default schedule name of each
ANALYSES = {
    "data": (DATA_QUALITY, "captureq-data-quality"),
    "model": (MODEL_QUALITY, "captureq-model-quality"),
    "bias": (MODEL_BIAS, "captureq-bias-drift"),
    "attribution": (MODEL_EXPLAINABILITY, "captureq-feature-attribution-drift"),
}


def parse_offsets(text: str | tuple | None) -> tuple[timedelta, timedelta] | None:
    """``"-P1D,-PT0H"`` as (start offset, end offset); start must be before end.

    >>> parse_offsets("-P1D,-PT0H")
    (datetime.timedelta(days=-1), datetime.timedelta(0))
    """
    if text is None or isinstance(text, tuple):
        return text
    parts = [p for p in str(text).split(",") if p.strip()]
    if len(parts) != 2:
        raise ConfigError(
            f"--label-offsets takes START,END as ISO 8601 durations, e.g. -P1D,-PT0H; got {text!r}"
        )
    start, end = (to_iso_duration(p) for p in parts)
    if start >= end:
        raise ConfigError(f"--label-offsets {text!r}: the start offset must come before the end")
    return start, end


def parse_delay(value: Any) -> timedelta:
    """``15m``, ``1h``, ``0`` or an ISO 8601 duration (``PT15M``)."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip()
    if text.upper().startswith(("P", "+P")):
        d = to_iso_duration(text)
    else:
        try:
            d = to_lateness(text)
        except ConfigError:
            raise ConfigError(
                f"--delay {value!r} is not a duration; give e.g. 15m, 1h, 0 or PT15M"
            ) from None
    if d < timedelta(0):
        raise ConfigError(f"--delay {value!r} is negative; give 0 or more")
    return d


def now_utc(now: Any = None) -> datetime:
    """``now``, else ``CAPTUREQ_NOW`` (tests, backfills), else the clock."""
    value = now if now is not None else os.environ.get(NOW_ENV) or None
    return to_utc(value) if value is not None else datetime.now(timezone.utc)


@dataclass(frozen=True)
class HourRun:
    """One scheduled execution: its time, window, status and where its reports are."""

    scheduled_time: datetime
    start: datetime
    end: datetime
    status: str
    violations: int
    message: str
    report_uri: str | None


@dataclass
class ScheduleResult:
    """What one schedule run did: the hours it ran, oldest first, and the state's URI."""

    runs: list[HourRun]
    state_uri: str

    @property
    def violations(self) -> int:
        return sum(r.violations for r in self.runs)


@dataclass(frozen=True)
class Schedule:
    """An hourly (or daily) monitoring schedule over one endpoint of a capture tree.

    ``baseline`` is a folder with ``statistics.json`` and ``constraints.json`` (data quality:
    ``captureq baseline``'s; with ``labels``, model quality: ``captureq quality
    --baseline-out``'s); a folder with Clarify's ``analysis.json`` makes it a bias-drift
    (``captureq bias baseline``'s, with ``labels`` and ``analysis_config``) or
    feature-attribution-drift schedule (``captureq attribution baseline``'s), unless
    ``analysis`` (a key of :data:`ANALYSES`) says which. ``out`` is a folder or any fsspec URL."""

    tree: str
    out: str
    baseline: str | None = None
    endpoint: str | None = None
    name: str | None = None
    every: str = "hour"
    delay: timedelta = DELAY
    labels: str | None = None
    label_offsets: tuple[timedelta, timedelta] | None = None
    start: datetime | None = None
    problem_type: str | None = None
    inference_attribute: str | None = None
    probability_attribute: str | None = None
    probability_threshold: float = 0.5
    publish_cloudwatch: bool = False
    webhook: str | None = None
    lateness: Any = None
    storage_options: dict | None = field(default=None, compare=False)
    out_storage_options: dict | None = field(default=None, compare=False)
    break_lease: bool = False
    analysis: str | None = None  # data | model | bias | attribution; None: from the baseline
    analysis_config: str | None = None  # Clarify's analysis configuration (bias)

    def __post_init__(self) -> None:
        if self.every not in PERIODS:
            raise ConfigError(f"--every must be hour or day, got {self.every!r}")
        if self.analysis is not None and self.analysis not in ANALYSES:
            raise ConfigError(
                f"--analysis-type must be one of {', '.join(ANALYSES)}, got {self.analysis!r}"
            )

    @cached_property
    def analysis_type(self) -> str:
        """The job type: ``analysis``'s, else a Clarify ``analysis.json`` in the baseline
        folder says bias or attribution, else model quality with labels, else data quality."""
        if self.analysis is not None:
            return ANALYSES[self.analysis][0]
        if self.baseline:
            from fsspec.core import url_to_fs

            uri = f"{self.baseline.rstrip('/')}/analysis.json"
            fs, path = url_to_fs(uri, **(self.storage_options or {}))
            if fs.exists(path):
                doc = read_json_uri(uri, "the baseline's analysis.json", self.storage_options)
                if "explanations" in doc:
                    return MODEL_EXPLAINABILITY
                if any(f"{s}_bias_metrics" in doc for s in ("pre_training", "post_training")):
                    return MODEL_BIAS
        return MODEL_QUALITY if self.labels else DATA_QUALITY

    @property
    def period(self) -> timedelta:
        return PERIODS[self.every]

    def schedule_name(self) -> str:
        defaults = {kind: name for kind, name in ANALYSES.values()}
        return self.name or defaults[self.analysis_type]

    def endpoint_name(self) -> str:
        """The endpoint, or the tree's only one."""
        if self.endpoint:
            return self.endpoint
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(self.tree, **(self.storage_options or {}))
        names = sorted(
            os.path.basename(p.rstrip("/"))
            for p in fs.ls(root, detail=False)
            if fs.isdir(p)
        )
        if len(names) != 1:
            raise ConfigError(
                f"{self.tree} holds {len(names)} endpoints ({', '.join(names) or 'none'}); a "
                "schedule monitors one: pass --endpoint NAME"
            )
        return names[0]

    def folder(self, endpoint: str) -> str:
        return f"{self.out.rstrip('/')}/{endpoint}/{self.schedule_name()}"

    def due(self, now: datetime, done_through: datetime | None) -> list[datetime]:
        """The scheduled times to run, oldest first: after ``done_through`` (else from
        ``start``, else only the latest) up to the last whose period closed by ``now - delay``."""
        latest = self._floor(now - self.delay)
        if done_through is not None:
            t = done_through + self.period
        elif self.start is not None:
            t = self._floor(self.start) + self.period
        else:
            t = latest
        out = []
        while t <= latest:
            out.append(t)
            t += self.period
        return out

    def _floor(self, t: datetime) -> datetime:
        t = floor_hour(t)
        return t.replace(hour=0) if self.every == "day" else t

    def window(self, scheduled: datetime) -> tuple[datetime, datetime]:
        """The records one execution analyses."""
        if self.labels and self.label_offsets:
            return scheduled + self.label_offsets[0], scheduled + self.label_offsets[1]
        return scheduled - self.period, scheduled

    def job(self, scheduled: datetime, endpoint: str) -> JobConfig:
        start, end = self.window(scheduled)
        base = self.baseline.rstrip("/") if self.baseline else None
        clarify = self.analysis_type in (MODEL_BIAS, MODEL_EXPLAINABILITY)
        return JobConfig(
            dataset_source=self.tree,
            output_path=f"{self.folder(endpoint)}/{scheduled:%Y/%m/%d/%H}",
            start_time=start,
            end_time=end,
            baseline_constraints=(
                f"{base}/{'analysis' if clarify else 'constraints'}.json" if base else None),
            baseline_statistics=(
                f"{base}/statistics.json"
                if base and self.analysis_type == DATA_QUALITY else None),
            publish_cloudwatch_metrics=self.publish_cloudwatch,
            endpoint_name=endpoint,
            schedule_name=self.schedule_name(),
            analysis_type=self.analysis_type,
            problem_type=self.problem_type,
            inference_attribute=self.inference_attribute,
            probability_attribute=self.probability_attribute,
            probability_threshold=self.probability_threshold,
            ground_truth_source=self.labels,
            analysis_config=self.analysis_config,
            metrics_dir=None,
            message_dir=None,
            storage_options=self.storage_options,
            out_storage_options=self.out_storage_options,
            lateness=self.lateness,
        )

    def run(self, now: Any = None, *, cloudwatch: Any = None) -> ScheduleResult:
        """Run every due hour, committing the state after each (see the module's doc)."""
        return run_schedule(self, now=now, cloudwatch=cloudwatch)


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------
class State:
    """The schedule's state object beside its reports, replaced whole after every hour."""

    def __init__(self, uri: str, storage_options: dict | None):
        from fsspec.core import url_to_fs

        self.uri = uri
        self.fs, self.path = url_to_fs(uri, **(storage_options or {}))

    def load(self) -> dict:
        try:
            doc = json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return {"version": 1, "done_through": None, "history": []}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"the schedule state {self.uri} is not valid JSON ({exc}); remove it and pass "
                "--start to say which hour to continue from"
            ) from None
        return doc

    def commit(self, doc: dict) -> None:
        """Write ``doc`` as a new object and move it over the state: readers see the old state
        or the new one, never part of one."""
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        self.fs.pipe_file(tmp, (json.dumps(doc, indent=1) + "\n").encode())
        self.fs.mv(tmp, self.path)


# ---------------------------------------------------------------------------------------------
# Side channels: CloudWatch and a webhook
# ---------------------------------------------------------------------------------------------
def publish(metrics: list[dict], namespace: str, client: Any = None) -> int:
    """Send PutMetricData requests (up to 150 metrics each); returns the metrics sent."""
    if not metrics:
        return 0
    if client is None:
        import boto3

        client = boto3.client("cloudwatch")
    data = [{**m, "Timestamp": to_utc(m["Timestamp"])} for m in metrics]
    for i in range(0, len(data), 150):
        client.put_metric_data(Namespace=namespace, MetricData=data[i : i + 150])
    return len(data)


def notify(url: str, body: dict, timeout: float = 10.0) -> None:
    """POST ``body`` as JSON to ``url``; a failure is a warning on stderr (monitoring goes on)."""
    import urllib.request

    request = urllib.request.Request(
        url, data=json.dumps(body, default=str).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except OSError as exc:
        sys.stderr.write(f"warning: webhook {url} failed ({exc}); the reports are written\n")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_schedule(schedule: Schedule, *, now: Any = None, cloudwatch: Any = None) -> ScheduleResult:
    """Run each hour of ``schedule`` that is due at ``now`` and not yet done (module doc)."""
    from ..export import _Output

    endpoint = schedule.endpoint_name()
    out_options = schedule.job(now_utc(now), endpoint).output_storage_options
    writer = _Output(schedule.folder(endpoint), out_options, what="schedule run")
    writer.lock(break_lease=schedule.break_lease)  # one run of a schedule at a time
    try:
        return _run_due(schedule, endpoint, State(f"{schedule.folder(endpoint)}/{STATE_FILE}", out_options),
                        writer, now, cloudwatch)
    finally:
        writer.unlock()


def _run_due(schedule: Schedule, endpoint: str, state: State, writer, now: Any, cloudwatch: Any
             ) -> ScheduleResult:
    """The due hours of a schedule whose lock ``writer`` holds, each committed to ``state``."""
    doc = state.load()
    done = to_utc(doc["done_through"]) if doc.get("done_through") else None
    runs: list[HourRun] = []
    for scheduled in schedule.due(now_utc(now), done):
        config = schedule.job(scheduled, endpoint)
        try:
            result = run_job(config)
        except NoDataError as exc:
            run = HourRun(scheduled, config.start_time, config.end_time, FAILED, 0,
                          status_message(FAILED, reason=str(exc)), None)
        else:
            run = HourRun(scheduled, config.start_time, config.end_time, result.status,
                          len(result.violations), result.message, config.output_path)
            if schedule.publish_cloudwatch:
                publish(result.metrics, config.namespace, cloudwatch)
            if schedule.webhook and result.status == WITH_VIOLATIONS:
                notify(schedule.webhook, {
                    "schedule": schedule.schedule_name(),
                    "endpoint": endpoint,
                    "scheduled_time": _iso(scheduled),
                    "window": [_iso(run.start), _iso(run.end)],
                    "status": run.status,
                    "message": run.message,
                    "report_uri": run.report_uri,
                    "violations": result.violations,
                })
        doc = {
            "version": 1,
            "schedule": schedule.schedule_name(),
            "endpoint": endpoint,
            "analysis_type": schedule.analysis_type,
            "done_through": _iso(scheduled),
            "history": (doc.get("history") or [])[-(HISTORY - 1):] + [{
                "scheduled_time": _iso(scheduled),
                "status": run.status,
                "violations": run.violations,
                "message": run.message,
            }],
        }
        writer.check_lease()  # a run whose lease was broken stops before it commits
        state.commit(doc)
        runs.append(run)
    return ScheduleResult(runs, state.uri)
