"""One Model Monitor job, run from SageMaker's bring-your-own-container contract.

SageMaker starts a monitoring container with environment variables that say what to analyse
(``dataset_source``, ``start_time``, ``end_time``, ``dataset_format``, the baseline files …) and
expects three things back: the reports (``statistics.json``, ``constraints.json``,
``constraint_violations.json``) in ``output_path``, CloudWatch metrics as JSON lines under
``/opt/ml/output/metrics/cloudwatch/`` when ``publish_cloudwatch_metrics`` is ``Enabled``, and a
status line in ``/opt/ml/output/message``. :class:`JobConfig` reads that contract,
:func:`run_job` does the analysis and writes the reports, :func:`execute` adds the metrics file,
the message and the exit status (:mod:`captureq.exit_codes`).

Data quality (the default ``analysis_type``) checks the window against the baseline with
:func:`captureq.monitor.check.monitor`; ``analysis_type=MODEL_QUALITY`` joins the captures with
their ground truth (``ground_truth_source``) and checks :func:`captureq.monitor.quality.model_quality`;
``BIAS_DRIFT`` (``MODEL_BIAS``) and ``FEATURE_ATTRIBUTION_DRIFT`` (``MODEL_EXPLAINABILITY``) run
:func:`captureq.monitor.bias.bias` (with Clarify's ``analysis_config``) and
:func:`captureq.monitor.attribution.attribution_monitor` against the baseline's
``analysis.json`` (``baseline_constraints``), writing ``analysis.json`` and
``constraint_violations.json``.

>>> config = JobConfig.from_env({"dataset_source": "/opt/ml/processing/input/endpoint",
...     "output_path": "/opt/ml/processing/output", "start_time": "2020-02-19T06:00:00Z",
...     "end_time": "2020-02-20T05:00:00Z", "publish_cloudwatch_metrics": "Enabled"})
>>> config.dataset_format, config.end_time.isoformat(), config.publish_cloudwatch_metrics
('capture', '2020-02-20T05:00:00+00:00', True)
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from .. import exit_codes
from ..errors import CaptureqError, ConfigError
from ..timeutil import to_utc

DATA_QUALITY, MODEL_QUALITY = "DATA_QUALITY", "MODEL_QUALITY"
MODEL_BIAS, MODEL_EXPLAINABILITY = "MODEL_BIAS", "MODEL_EXPLAINABILITY"
#: ``analysis_type`` values and the analysis each names
ANALYSIS_TYPES = {
    DATA_QUALITY: DATA_QUALITY,
    MODEL_QUALITY: MODEL_QUALITY,
    MODEL_BIAS: MODEL_BIAS,
    "BIAS_DRIFT": MODEL_BIAS,
    MODEL_EXPLAINABILITY: MODEL_EXPLAINABILITY,
    "FEATURE_ATTRIBUTION_DRIFT": MODEL_EXPLAINABILITY,
}
COMPLETED, WITH_VIOLATIONS, FAILED = "Completed", "CompletedWithViolations", "Failed"
METRICS_DIR = "/opt/ml/output/metrics/cloudwatch"
MESSAGE_DIR = "/opt/ml/output"
METRICS_DIR_ENV, MESSAGE_DIR_ENV = "CAPTUREQ_METRICS_DIR", "CAPTUREQ_MESSAGE_DIR"
METRICS_FILE = "cloudwatch_metrics.jsonl"
MESSAGE_LIMIT = 1024  # bytes SageMaker keeps of /opt/ml/output/message
NAMESPACES = {  # CloudWatch namespaces of Model Monitor's metrics
    (DATA_QUALITY, True): "aws/sagemaker/Endpoints/data-metrics",
    (MODEL_QUALITY, True): "aws/sagemaker/Endpoints/model-metrics",
    (DATA_QUALITY, False): "aws/sagemaker/ModelMonitoring/data-metrics",
    (MODEL_QUALITY, False): "aws/sagemaker/ModelMonitoring/model-metrics",
    (MODEL_BIAS, True): "aws/sagemaker/Endpoints/bias-metrics",
    (MODEL_BIAS, False): "aws/sagemaker/ModelMonitoring/bias-metrics",
    (MODEL_EXPLAINABILITY, True): "aws/sagemaker/Endpoints/explainability-metrics",
    (MODEL_EXPLAINABILITY, False): "aws/sagemaker/ModelMonitoring/explainability-metrics",
}
#: CloudWatch's StatisticValues, and the metric table's ``statistic`` each is read from
STATISTIC_VALUES = {"SampleCount": "SampleCount", "Sum": "Sum", "Minimum": "Minimum",
                    "Maximum": "Maximum"}
#: The environment variables of the contract, and the JobConfig field each one sets
ENVIRONMENT = {
    "dataset_source": "dataset_source",
    "output_path": "output_path",
    "start_time": "start_time",
    "end_time": "end_time",
    "dataset_format": "dataset_format",
    "baseline_constraints": "baseline_constraints",
    "baseline_statistics": "baseline_statistics",
    "publish_cloudwatch_metrics": "publish_cloudwatch_metrics",
    "sagemaker_endpoint_name": "endpoint_name",
    "sagemaker_monitoring_schedule_name": "schedule_name",
    "analysis_type": "analysis_type",
    "problem_type": "problem_type",
    "inference_attribute": "inference_attribute",
    "probability_attribute": "probability_attribute",
    "probability_threshold_attribute": "probability_threshold",
    "ground_truth_attribute": "ground_truth_attribute",
    "ground_truth_source": "ground_truth_source",
    "analysis_config": "analysis_config",
    METRICS_DIR_ENV: "metrics_dir",
    MESSAGE_DIR_ENV: "message_dir",
}


class NoDataError(CaptureqError):
    """The job's window holds nothing to analyse (Model Monitor's execution then fails too)."""


@dataclass(frozen=True)
class JobConfig:
    """What one monitoring job analyses and where its results go (the container contract)."""

    dataset_source: str
    output_path: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    dataset_format: str = "capture"  # capture | csv | json | parquet
    header: bool | None = None  # csv
    json_lines: bool = True  # json
    baseline_constraints: str | None = None
    baseline_statistics: str | None = None
    publish_cloudwatch_metrics: bool = False
    endpoint_name: str | None = None
    schedule_name: str | None = None
    analysis_type: str = DATA_QUALITY
    problem_type: str | None = None
    inference_attribute: str | None = None
    probability_attribute: str | None = None
    probability_threshold: float = 0.5
    ground_truth_attribute: str | None = None
    ground_truth_source: str | None = None
    analysis_config: str | None = None  # Clarify's analysis configuration (bias, attribution)
    metrics_dir: str | None = METRICS_DIR
    message_dir: str | None = MESSAGE_DIR
    storage_options: dict | None = field(default=None, compare=False)
    out_storage_options: dict | None = field(default=None, compare=False)
    lateness: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> JobConfig:
        """The contract's environment variables (``os.environ`` by default), then ``overrides``
        (the command's flags; ``None`` values are ignored)."""
        env = os.environ if env is None else env
        raw: dict[str, Any] = {}
        for var, name in ENVIRONMENT.items():
            value = env.get(var)
            if value is not None and value.strip() != "":
                raw[name] = value.strip()
        raw.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("dataset_source", "output_path"):
            if not raw.get(name):
                raise ConfigError(
                    f"{name} is not set: set the {name} environment variable (SageMaker's "
                    f"monitoring contract) or pass --{name.replace('_', '-')}"
                )
        if "dataset_format" in raw and isinstance(raw["dataset_format"], str):
            raw.update(parse_dataset_format(raw["dataset_format"]))
        for name in ("start_time", "end_time"):
            if name in raw:
                raw[name] = _time(raw[name], name)
        if "publish_cloudwatch_metrics" in raw:
            raw["publish_cloudwatch_metrics"] = _enabled(raw["publish_cloudwatch_metrics"])
        if "analysis_type" in raw:
            kind = str(raw["analysis_type"]).strip().upper()
            if kind not in ANALYSIS_TYPES:
                raise ConfigError(
                    f"analysis_type must be one of {', '.join(ANALYSIS_TYPES)}, got {kind!r}"
                )
            raw["analysis_type"] = ANALYSIS_TYPES[kind]
        if "probability_threshold" in raw:
            try:
                raw["probability_threshold"] = float(raw["probability_threshold"])
            except ValueError:
                raise ConfigError(
                    "probability_threshold_attribute must be a number, e.g. 0.5, got "
                    f"{raw['probability_threshold']!r}"
                ) from None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @property
    def output_storage_options(self) -> dict | None:
        """The reports' storage options: their own, else the source's when both URIs use the
        same protocol (s3 → s3 needs the credentials once), else none."""
        from fsspec.utils import get_protocol

        if self.out_storage_options is not None:
            return self.out_storage_options
        if get_protocol(self.output_path) == get_protocol(self.dataset_source):
            return self.storage_options
        return None

    @property
    def namespace(self) -> str:
        """The CloudWatch namespace of this job's metrics, as Model Monitor's."""
        return NAMESPACES[(self.analysis_type, self.dataset_format == "capture")]


def _enabled(value: Any) -> bool:
    return str(value).strip().lower() in ("enabled", "true", "1", "yes")


def _time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        return to_utc(value)
    # the developer guide's example writes "2019-12-01T16: 20: 00Z"
    text = re.sub(r":\s+", ":", str(value).strip())
    try:
        return to_utc(text)
    except ConfigError:
        raise ConfigError(
            f"{name} {value!r} is not an ISO 8601 UTC time; write e.g. 2020-02-20T05:00:00Z"
        ) from None


def parse_dataset_format(text: str) -> dict[str, Any]:
    """``dataset_format`` as Model Monitor passes it, as JobConfig fields.

    >>> parse_dataset_format('{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput"]}}')
    {'dataset_format': 'capture'}
    >>> parse_dataset_format('{"csv": {"header": true}}')
    {'dataset_format': 'csv', 'header': True}
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"dataset_format is not JSON ({exc}): write it as Model Monitor does, e.g. "
            '{"sagemakerCaptureJson": {"captureIndexNames": ["endpointInput","endpointOutput"]}} '
            'or {"csv": {"header": true}}'
        ) from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ConfigError(
            f"dataset_format must be one JSON object with one key (sagemakerCaptureJson, csv, "
            f"json or parquet), got {text!r}"
        )
    (kind, opts), = doc.items()
    opts = opts if isinstance(opts, dict) else {}
    if kind == "sagemakerCaptureJson":
        return {"dataset_format": "capture"}
    if kind == "csv":
        header = opts.get("header")
        return {"dataset_format": "csv", "header": None if header is None else _enabled(header)}
    if kind == "json":
        return {"dataset_format": "json", "json_lines": _enabled(opts.get("line", True))}
    if kind == "parquet":
        return {"dataset_format": "parquet"}
    raise ConfigError(
        f"dataset_format {kind!r} is not one Model Monitor passes: use sagemakerCaptureJson, "
        "csv, json or parquet"
    )


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------
@dataclass
class JobResult:
    """A finished job: its reports (as dicts), its CloudWatch metrics and its status."""

    config: JobConfig
    statistics: dict
    constraints: dict
    violations: list[dict]
    metrics: list[dict]  # PutMetricData MetricDatum objects (Timestamp as ISO 8601 text)
    outputs: list[str] = field(default_factory=list)
    analysis: dict | None = None  # Clarify's analysis.json (bias and attribution jobs)

    @property
    def status(self) -> str:
        return WITH_VIOLATIONS if self.violations else COMPLETED

    @property
    def message(self) -> str:
        return status_message(self.status, violations=len(self.violations))

    def exit_code(self, fail_on_violations: bool = False) -> int:
        return exit_codes.VIOLATIONS if fail_on_violations and self.violations else exit_codes.OK


def status_message(status: str, *, violations: int = 0, reason: str = "") -> str:
    """The text of ``/opt/ml/output/message``: UTF-8, at most 1 KB, cut on a character.

    >>> status_message("Completed")
    'Completed: Job completed successfully with no violations.'
    """
    if status == COMPLETED:
        text = "Completed: Job completed successfully with no violations."
    elif status == WITH_VIOLATIONS:
        text = f"CompletedWithViolations: Job completed successfully with {violations} violations."
    else:
        text = f"{status}: {reason}"
    return text.encode("utf-8")[:MESSAGE_LIMIT].decode("utf-8", "ignore")


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------
def _fs(uri: str, storage_options: dict | None):
    from fsspec.core import url_to_fs

    return url_to_fs(uri, **(storage_options or {}))


def read_json_uri(uri: str, what: str, storage_options: dict | None = None) -> dict:
    """A JSON object from a local path or any fsspec URL, or a ConfigError naming it."""
    fs, path = _fs(uri, storage_options)
    try:
        doc = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        raise ConfigError(f"{what} {uri} does not exist; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {uri} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{what} {uri} holds a JSON {type(doc).__name__}, expected an object")
    return doc


def write_reports(uri: str, files: dict[str, dict], storage_options: dict | None = None) -> list[str]:
    """Write each ``{name: document}`` as indented JSON under ``uri``; returns their URIs."""
    fs, root = _fs(uri, storage_options)
    fs.makedirs(root, exist_ok=True)
    written = []
    for name, doc in files.items():
        fs.pipe_file(f"{root.rstrip('/')}/{name}", (json.dumps(doc, indent=2) + "\n").encode())
        written.append(f"{uri.rstrip('/')}/{name}")
    return written


def _window_text(config: JobConfig) -> str:
    start = config.start_time.isoformat() if config.start_time else "the beginning"
    end = config.end_time.isoformat() if config.end_time else "now"
    return f"between {start} and {end}"


def _tree(config: JobConfig, labels: str | None = None):
    from ..plan import open_plan

    return open_plan(
        config.dataset_source,
        labels=labels,
        storage_options=config.storage_options,
        start=config.start_time,
        end=config.end_time,
        endpoint=config.endpoint_name,
        lateness=config.lateness,
    )


def _batch_table(config: JobConfig):
    """A batch-transform dataset (csv, json or parquet files under ``dataset_source``)."""
    import pyarrow as pa
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    from .baseline import read_table

    fs, root = _fs(config.dataset_source, config.storage_options)
    paths = sorted(fs.find(root)) if fs.isdir(root) else [root]
    paths = [p for p in paths if not os.path.basename(p).startswith((".", "_"))]
    tables = []
    for p in paths:
        if config.dataset_format == "csv":
            tables.append(read_table(fs.unstrip_protocol(p), header=config.header,
                                     storage_options=config.storage_options))
        elif config.dataset_format == "parquet":
            with fs.open(p, "rb") as fh:
                tables.append(pq.read_table(fh))
        else:
            data = fs.cat_file(p)
            if config.json_lines:
                tables.append(pjson.read_json(pa.BufferReader(data)))
            else:
                doc = json.loads(data)
                tables.append(pa.Table.from_pylist(doc if isinstance(doc, list) else [doc]))
    if not tables or not sum(t.num_rows for t in tables):
        raise NoDataError(f"no records in {config.dataset_source} ({config.dataset_format})")
    return pa.concat_tables(tables, promote_options="permissive")


def _column(attribute: str | None) -> str | None:
    """An ``inference_attribute``/``probability_attribute`` as the predictions view's column:
    a CSV index ``0`` is ``output_c0``, a JSON name ``score`` is ``output_score``."""
    if attribute is None:
        return None
    a = attribute.strip().lstrip("$.")
    if a.startswith("output_"):
        return a
    if a.isdigit():
        return f"output_c{a}"
    return "output_" + re.sub(r"[^0-9A-Za-z_]+", "_", a).strip("_")


def _data_quality(config: JobConfig) -> tuple[dict, dict, list[dict], list[dict]]:
    import pyarrow as pa

    from .baseline import Baseline, constraints, single_endpoint, statistics, tree_inputs
    from .check import monitor
    from .metrics import data_quality_rows

    if config.dataset_format == "capture":
        inputs = single_endpoint(tree_inputs(_tree(config)))
    else:
        inputs = _batch_table(config)
    if not inputs.num_rows:
        raise NoDataError(
            f"no captured data for endpoint {config.endpoint_name or '(any)'} "
            f"{_window_text(config)} in {config.dataset_source}"
        )
    base = None
    if config.baseline_constraints or config.baseline_statistics:
        if not (config.baseline_constraints and config.baseline_statistics):
            raise ConfigError(
                "a data-quality job needs both baseline_constraints and baseline_statistics "
                "(the two files `captureq baseline` writes)"
            )
        base = Baseline(
            read_json_uri(config.baseline_statistics, "baseline_statistics",
                          config.storage_options),
            read_json_uri(config.baseline_constraints, "baseline_constraints",
                          config.storage_options),
        )
        if not isinstance(base.constraints.get("features"), list):
            raise ConfigError(
                f"baseline_constraints {config.baseline_constraints} is not a data-quality "
                "constraints.json (no 'features' list); for a model-quality baseline set "
                f"analysis_type={MODEL_QUALITY}"
            )
    if base is not None:
        result = monitor(inputs, base, hourly=False)
        stats, violations = result.statistics, result.constraint_violations["violations"]
        rows = result.metrics.to_pylist()
    else:
        stats, violations = statistics(inputs), []
        ep = config.endpoint_name
        rows = pa.Table.from_pylist(data_quality_rows(stats, [], None, ep, "window")).to_pylist()
    return stats, constraints(stats), violations, rows


def _model_quality(config: JobConfig) -> tuple[dict, dict, list[dict], list[dict]]:
    from .quality import BINARY, model_quality
    from .quality_files import QualityBaseline, problem_type_of, quality_constraints

    if config.dataset_format != "capture":
        raise ConfigError(
            "a model-quality job reads a capture tree and its ground truth: set dataset_format "
            'to {"sagemakerCaptureJson": {...}} (or leave it unset)'
        )
    if not config.ground_truth_source:
        raise ConfigError(
            "a model-quality job needs the ground truth: set ground_truth_source (or pass "
            "--labels) to the ground-truth tree"
        )
    baseline = None
    if config.baseline_constraints:
        cons = read_json_uri(config.baseline_constraints, "baseline_constraints",
                             config.storage_options)
        if problem_type_of(cons) is None:
            raise ConfigError(
                f"baseline_constraints {config.baseline_constraints} is not a model-quality "
                "constraints.json (no *_constraints section); make one with `captureq quality "
                "--baseline-out`"
            )
        stats = (
            read_json_uri(config.baseline_statistics, "baseline_statistics",
                          config.storage_options)
            if config.baseline_statistics else {}
        )
        baseline = QualityBaseline(stats, cons)
    problem_type = config.problem_type or (baseline.problem_type if baseline else None)
    score = _column(config.probability_attribute) if problem_type == BINARY else None
    prediction = score or _column(config.inference_attribute)
    tree = _tree(config, labels=config.ground_truth_source)
    result = model_quality(
        tree,
        problem_type=problem_type,
        prediction=prediction,
        threshold=config.probability_threshold,
        constraints=baseline,
    )
    stats = result.statistics
    if not stats.get("dataset", {}).get("item_count"):
        raise NoDataError(
            f"no labelled predictions for endpoint {config.endpoint_name or '(any)'} "
            f"{_window_text(config)} in {config.dataset_source} with ground truth from "
            f"{config.ground_truth_source}; labels arrive late: widen the window or move it back"
        )
    violations = (result.constraint_violations or {}).get("violations", [])
    rows = [r for r in result.cloudwatch_metrics.to_pylist() if r["granularity"] == "window"]
    return stats, quality_constraints(stats), violations, rows


def _stamp(config: JobConfig) -> str:
    """The metrics' time: the window's end (the execution's scheduled time)."""
    when = config.end_time or datetime.now(timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _capture_only(config: JobConfig, what: str) -> None:
    if config.dataset_format != "capture":
        raise ConfigError(
            f"a {what} job reads a capture tree: set dataset_format to "
            '{"sagemakerCaptureJson": {...}} (or leave it unset)'
        )


def _bias(config: JobConfig) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """Bias drift (:func:`captureq.monitor.bias.bias`): Clarify's ``analysis.json`` and
    Model Monitor's ``constraint_violations.json`` for the window, and its metric data."""
    from .bias import POST_TRAINING, PRE_TRAINING, BiasConfig, bias

    _capture_only(config, "bias-drift")
    if not config.analysis_config:
        raise ConfigError(
            "a bias-drift job needs Clarify's analysis configuration: set analysis_config (or "
            "pass --analysis-config) to its JSON file (label, label_values_or_threshold, facet)"
        )
    if not config.ground_truth_source:
        raise ConfigError(
            "a bias-drift job needs the ground truth: set ground_truth_source (or pass "
            "--labels) to the ground-truth tree"
        )
    cfg = BiasConfig.load(read_json_uri(config.analysis_config, "analysis_config",
                                        config.storage_options))
    base = None
    if config.baseline_constraints:
        base = read_json_uri(config.baseline_constraints, "baseline_constraints",
                             config.storage_options)
        if not any(f"{s}_bias_metrics" in base for s in (PRE_TRAINING, POST_TRAINING)):
            raise ConfigError(
                f"baseline_constraints {config.baseline_constraints} is not a Clarify bias "
                "analysis.json (no pre_training_bias_metrics or post_training_bias_metrics); "
                "make one with `captureq bias baseline`"
            )
    table = _tree(config, labels=config.ground_truth_source).predictions()
    if not table.num_rows:
        raise NoDataError(
            f"no captured predictions for endpoint {config.endpoint_name or '(any)'} "
            f"{_window_text(config)} in {config.dataset_source}"
        )
    result = bias(
        table, cfg, baseline=base, endpoint=config.endpoint_name,
        prediction=_column(config.inference_attribute),
        probability=_column(config.probability_attribute),
        schedule=config.schedule_name or "captureq",
    )
    violations = (result.constraint_violations or {}).get("violations", [])
    stamp = _stamp(config)
    metrics = [{**m, "Timestamp": stamp} for req in result.cloudwatch for m in req["MetricData"]]
    files = {
        "analysis.json": result.analysis,
        "constraint_violations.json": {"version": "1.0", "violations": violations},
    }
    return files, violations, metrics


def _attribution(config: JobConfig) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """Feature-attribution drift (:func:`captureq.monitor.attribution.attribution_monitor`)
    of the window's captured SHAP values against the baseline's ``analysis.json``."""
    from .attribution import (
        AttributionBaseline,
        _records,
        attribution_monitor,
        cloudwatch_rows,
        global_values,
    )

    _capture_only(config, "feature-attribution-drift")
    if not config.baseline_constraints:
        raise ConfigError(
            "a feature-attribution-drift job needs its baseline: set baseline_constraints to "
            "the analysis.json `captureq attribution baseline` (or a Clarify job) wrote"
        )
    base = AttributionBaseline.from_doc(
        read_json_uri(config.baseline_constraints, "baseline_constraints",
                      config.storage_options),
        config.baseline_constraints,
    )
    agg_method = "mean_abs"
    if config.analysis_config:
        doc = read_json_uri(config.analysis_config, "analysis_config", config.storage_options)
        shap = (doc.get("methods") or {}).get("shap") or {}
        agg_method = shap.get("agg_method") or agg_method
    captures = _tree(config).captures()
    if not captures.num_rows:
        raise NoDataError(
            f"no captured data for endpoint {config.endpoint_name or '(any)'} "
            f"{_window_text(config)} in {config.dataset_source}"
        )
    records = _records(captures, None, None)
    schedule = config.schedule_name or "captureq"
    result = attribution_monitor(records, base, every="day", agg_method=agg_method,
                                 schedule=schedule)
    values, windows = global_values(records, agg_method)
    when = config.end_time or datetime.now(timezone.utc)
    metrics = cloudwatch_rows(values, windows, schedule, when=when)
    violations = result.constraint_violations.get("violations", [])
    files = {
        "analysis.json": result.analysis,
        "constraint_violations.json": result.constraint_violations,
    }
    return files, violations, metrics


def cloudwatch_metrics(rows: list[dict], config: JobConfig) -> list[dict]:
    """The metric table's rows as PutMetricData ``MetricDatum`` objects: one per metric name,
    ``StatisticValues`` for ``feature_data_*`` (SampleCount, Sum, Minimum, Maximum) and
    ``Value`` otherwise; dimensions Endpoint and MonitoringSchedule; the time is the window's
    end (the execution's scheduled time). Missing and non-finite values are left out."""
    stamp = _stamp(config)
    dimensions = [  # CloudWatch refuses empty dimension values: an unnamed one is left out
        {"Name": n, "Value": v}
        for n, v in (("Endpoint", config.endpoint_name), ("MonitoringSchedule", config.schedule_name))
        if v
    ]
    by_name: dict[str, dict[str, float]] = {}
    for r in rows:
        v = r.get("value")
        if v is None or not math.isfinite(v):
            continue
        by_name.setdefault(r["metric_name"], {})[r["statistic"]] = float(v)
    out = []
    for name, stats in by_name.items():
        datum: dict[str, Any] = {"MetricName": name, "Timestamp": stamp, "Dimensions": dimensions}
        if set(STATISTIC_VALUES) <= set(stats):
            datum["StatisticValues"] = {k: stats[s] for k, s in STATISTIC_VALUES.items()}
        elif "Value" in stats:
            datum["Value"] = stats["Value"]
        else:
            continue
        datum["Unit"] = "None"
        out.append(datum)
    return out


def run_job(config: JobConfig) -> JobResult:
    """Analyse the job's window and write its reports to ``config.output_path``.

    Raises :class:`~captureq.errors.CaptureqError` for what the caller can fix
    (:class:`NoDataError` when the window holds nothing to analyse).
    """
    if config.analysis_type in (MODEL_BIAS, MODEL_EXPLAINABILITY):
        clarify = _bias if config.analysis_type == MODEL_BIAS else _attribution
        files, violations, metrics = clarify(config)
        outputs = write_reports(config.output_path, files, config.output_storage_options)
        return JobResult(config, {}, {}, violations, metrics, outputs,
                         analysis=files["analysis.json"])
    analyse = _model_quality if config.analysis_type == MODEL_QUALITY else _data_quality
    stats, constraints, violations, rows = analyse(config)
    outputs = write_reports(
        config.output_path,
        {
            "statistics.json": stats,
            "constraints.json": constraints,
            "constraint_violations.json": {"violations": violations},
        },
        config.output_storage_options,
    )
    return JobResult(config, stats, constraints, violations,
                     cloudwatch_metrics(rows, config), outputs)


def _write_text(folder: str | None, name: str, text: str) -> None:
    if folder is None:
        return
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, os.path.join(folder, name))


def write_metrics(result: JobResult) -> str | None:
    """The CloudWatch metrics as JSON lines in ``metrics_dir`` (when publishing is enabled)."""
    config = result.config
    if not config.publish_cloudwatch_metrics or config.metrics_dir is None:
        return None
    _write_text(config.metrics_dir, METRICS_FILE,
                "".join(json.dumps(m) + "\n" for m in result.metrics))
    return os.path.join(config.metrics_dir, METRICS_FILE)


def execute(config: JobConfig, *, fail_on_violations: bool = False) -> int:
    """Run the job as a container does: reports, metric lines, the message file; returns the
    exit status (0 completed, 3 violations with ``fail_on_violations``, 2 a user error, 1 a crash)."""
    from ..cli_errors import debug, explain

    try:
        result = run_job(config)
    except Exception as exc:  # every failure ends as a Failed message
        reason = explain(exc)
        code = exit_codes.USAGE if reason is not None else exit_codes.CRASH
        if reason is None:
            reason = f"{type(exc).__name__}: {exc}"
        _write_text(config.message_dir, "message", status_message(FAILED, reason=reason))
        sys.stderr.write(f"error: {reason}\n")
        if debug():
            raise
        return code
    write_metrics(result)
    _write_text(config.message_dir, "message", result.message)
    return result.exit_code(fail_on_violations)


def config_from_env_or_fail(env: Mapping[str, str] | None = None, **overrides: Any) -> JobConfig:
    """:meth:`JobConfig.from_env`, writing a Failed message where the contract says before a
    configuration error is raised."""
    try:
        return JobConfig.from_env(env, **overrides)
    except CaptureqError as exc:
        env = os.environ if env is None else env
        folder = overrides.get("message_dir") or env.get(MESSAGE_DIR_ENV) or MESSAGE_DIR
        try:
            _write_text(folder, "message", status_message(FAILED, reason=str(exc)))
        except OSError:
            pass
        raise


__all__ = [
    "JobConfig", "JobResult", "NoDataError", "cloudwatch_metrics", "execute", "run_job",
    "status_message",
]
