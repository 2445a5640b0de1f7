"""``captureq job`` and ``captureq schedule``: Model Monitor's monitoring job and its hourly
schedule, as thin wrappers of :mod:`captureq.monitor.job` and :mod:`captureq.monitor.schedule`.

``captureq job`` reads SageMaker's container contract from the environment (so ``python -m
captureq job`` is a container entrypoint); its flags override the variables."""

from __future__ import annotations

import typer

from .. import exit_codes
from ..cli_options import (
    FailOnViolationsOpt,
    LatenessOpt,
    OutStorageOpt,
    StorageOpt,
    storage_options,
)
from ..cli_options import fail as _fail
from ..cli_options import out as console
from ..errors import CaptureqError

app = typer.Typer()

def _opt(flag: str, help: str, metavar: str = "TEXT"):
    return typer.Option(None, flag, metavar=metavar, help=help, show_default=False)


@app.command(
    epilog="\b\nExample: the environment SageMaker sets (flags override it):\n"
    "  dataset_source=capture/ output_path=out/ start_time=2026-01-01T05:00:00Z \\\n"
    "  end_time=2026-01-01T06:00:00Z baseline_constraints=baseline/constraints.json \\\n"
    "  baseline_statistics=baseline/statistics.json python -m captureq job"
)
def job(
    dataset_source: str | None = _opt("--dataset-source", "Capture tree (or batch files).", "URI"),
    output_path: str | None = _opt("--output-path", "Folder or s3:// URI for the reports.", "URI"),
    start: str | None = _opt("--start", "start_time: window start, ISO 8601 UTC.", "TIME"),
    end: str | None = _opt("--end", "end_time: window end (exclusive), ISO 8601 UTC.", "TIME"),
    dataset_format: str | None = _opt(
        "--dataset-format", 'Model Monitor\'s JSON, e.g. {"csv": {"header": true}}.', "JSON"),
    baseline: str | None = _opt(
        "--baseline", "Folder with statistics.json and constraints.json (sets both files; for "
        "bias or attribution its analysis.json).", "DIR"),
    baseline_constraints: str | None = _opt("--baseline-constraints", "constraints.json.", "FILE"),
    baseline_statistics: str | None = _opt("--baseline-statistics", "statistics.json.", "FILE"),
    publish_cloudwatch_metrics: bool | None = typer.Option(
        None, "--publish-cloudwatch-metrics/--no-publish-cloudwatch-metrics", show_default=False,
        help="Write CloudWatch metric lines (publish_cloudwatch_metrics=Enabled)."),
    endpoint: str | None = _opt("--endpoint", "sagemaker_endpoint_name.", "NAME"),
    schedule_name: str | None = _opt(
        "--schedule-name", "sagemaker_monitoring_schedule_name.", "NAME"),
    analysis_type: str | None = _opt(
        "--analysis-type", "DATA_QUALITY (default), MODEL_QUALITY, BIAS_DRIFT (MODEL_BIAS) or "
        "FEATURE_ATTRIBUTION_DRIFT (MODEL_EXPLAINABILITY).", "TYPE"),
    analysis_config: str | None = _opt(
        "--analysis-config", "Clarify's analysis configuration JSON (analysis_config).", "FILE"),
    problem_type: str | None = _opt(
        "--problem-type", "BinaryClassification, MulticlassClassification or Regression.", "TYPE"),
    inference_attribute: str | None = _opt(
        "--inference-attribute", "The prediction: CSV index (0) or JSON name.", "ATTR"),
    probability_attribute: str | None = _opt(
        "--probability-attribute", "The score of a binary classifier.", "ATTR"),
    probability_threshold: float | None = typer.Option(
        None, "--probability-threshold", metavar="P", show_default=False,
        help="Cut-off for the probability (probability_threshold_attribute)."),
    labels: str | None = _opt("--labels", "Ground-truth tree (ground_truth_source).", "URI"),
    metrics_dir: str | None = _opt(
        "--metrics-dir", "Where the CloudWatch lines go (/opt/ml/output/metrics/cloudwatch; "
        "CAPTUREQ_METRICS_DIR).", "DIR"),
    message_dir: str | None = _opt(
        "--message-dir", "Where the status message goes (/opt/ml/output; CAPTUREQ_MESSAGE_DIR).",
        "DIR"),
    lateness: str | None = LatenessOpt,
    storage_option: list[str] | None = StorageOpt,
    out_storage_option: list[str] | None = OutStorageOpt,
    fail_on_violations: bool = FailOnViolationsOpt,
) -> None:
    """Run one Model Monitor job from SageMaker's container contract (environment variables;
    flags override them): reports to output_path, CloudWatch metric lines, the status message."""
    from .job import config_from_env_or_fail, execute

    if baseline:
        import os

        from .job import ANALYSIS_TYPES, MODEL_BIAS, MODEL_EXPLAINABILITY

        baseline = baseline.rstrip("/")
        kind = (analysis_type or os.environ.get("analysis_type") or "").strip().upper()
        if ANALYSIS_TYPES.get(kind) in (MODEL_BIAS, MODEL_EXPLAINABILITY):
            baseline_constraints = baseline_constraints or f"{baseline}/analysis.json"
        else:
            baseline_constraints = baseline_constraints or f"{baseline}/constraints.json"
            baseline_statistics = baseline_statistics or f"{baseline}/statistics.json"
    try:
        opts = storage_options(storage_option)
        out_opts = storage_options(out_storage_option, "--out-storage-option")
        config = config_from_env_or_fail(
            None,
            dataset_source=dataset_source, output_path=output_path, start_time=start,
            end_time=end, dataset_format=dataset_format,
            baseline_constraints=baseline_constraints, baseline_statistics=baseline_statistics,
            publish_cloudwatch_metrics=publish_cloudwatch_metrics, endpoint_name=endpoint,
            schedule_name=schedule_name, analysis_type=analysis_type, problem_type=problem_type,
            inference_attribute=inference_attribute, probability_attribute=probability_attribute,
            probability_threshold=probability_threshold, ground_truth_source=labels,
            analysis_config=analysis_config, metrics_dir=metrics_dir, message_dir=message_dir, lateness=lateness,
            storage_options=opts, out_storage_options=out_opts,
        )
    except CaptureqError as exc:
        _fail(exc)
    raise typer.Exit(execute(config, fail_on_violations=fail_on_violations))


@app.command(
    epilog="\b\nExample: a crontab line (at 20 past every hour):\n"
    "  20 * * * * captureq schedule s3://bucket/capture --baseline s3://bucket/baseline \\\n"
    "      --out s3://bucket/reports --endpoint churn --schedule-name churn-hourly"
)
def schedule(
    tree: str = typer.Argument(..., metavar="TREE", help="Capture tree (folder or s3://...).",
                               show_default=False),
    baseline: str | None = _opt(
        "--baseline", "Folder with statistics.json and constraints.json (with --labels: a "
        "model-quality baseline), or with Clarify's analysis.json (bias, attribution).", "DIR"),
    analysis_type: str | None = _opt(
        "--analysis-type", "data, model, bias or attribution (default: from the baseline "
        "folder and --labels).", "TYPE"),
    analysis_config: str | None = _opt(
        "--analysis-config", "Clarify's analysis configuration JSON (bias).", "FILE"),
    out: str = typer.Option(..., "--out", metavar="DIR_OR_S3", show_default=False,
                            help="Reports go to OUT/ENDPOINT/SCHEDULE/yyyy/mm/dd/hh/."),
    every: str = typer.Option("hour", "--every", metavar="hour|day", help="hour or day."),
    schedule_name: str | None = _opt("--schedule-name", "Name of the schedule (its folder).",
                                     "NAME"),
    endpoint: str | None = _opt("--endpoint", "Endpoint (default: the tree's only one).", "NAME"),
    delay: str = typer.Option("15m", "--delay", metavar="DURATION",
                              help="Wait this long after an hour closes (late deliveries)."),
    labels: str | None = _opt("--labels", "Ground-truth tree: monitor model quality.", "URI"),
    label_offsets: str | None = _opt(
        "--label-offsets", "Model quality window START,END from the scheduled time, ISO 8601 "
        "(Model Monitor's StartTimeOffset/EndTimeOffset), e.g. -P1D,-PT0H.", "START,END"),
    start: str | None = _opt(
        "--start", "First hour to monitor when the schedule has no state yet (default: the "
        "last closed hour only).", "TIME"),
    now: str | None = _opt("--now", "The time to act as (CAPTUREQ_NOW; tests, backfills).",
                           "TIME"),
    problem_type: str | None = _opt(
        "--problem-type", "BinaryClassification, MulticlassClassification or Regression.", "TYPE"),
    inference_attribute: str | None = _opt(
        "--inference-attribute", "The prediction: CSV index (0) or JSON name.", "ATTR"),
    probability_attribute: str | None = _opt(
        "--probability-attribute", "The score of a binary classifier.", "ATTR"),
    probability_threshold: float = typer.Option(0.5, "--probability-threshold", metavar="P",
                                                help="Cut-off for the probability."),
    publish_cloudwatch: bool = typer.Option(
        False, "--publish-cloudwatch",
        help="Send the metrics with CloudWatch PutMetricData (boto3's credentials and region)."),
    webhook: str | None = _opt("--webhook", "POST a JSON summary here on violations.", "URL"),
    lateness: str | None = LatenessOpt,
    storage_option: list[str] | None = StorageOpt,
    out_storage_option: list[str] | None = OutStorageOpt,
    fail_on_violations: bool = FailOnViolationsOpt,
    break_lease: bool = typer.Option(
        False, "--break-lease",
        help="Take the schedule over from a run that still holds it (that run stops before its "
        "next hour's commit)."),
) -> None:
    """Run every monitoring hour that closed since the last run (cron-friendly), writing each
    hour's reports once, as a Model Monitor schedule does; then exit."""
    from ..timeutil import to_utc
    from .schedule import Schedule, parse_delay, parse_offsets

    try:
        plan = Schedule(
            tree, out, baseline=baseline, endpoint=endpoint, name=schedule_name, every=every,
            delay=parse_delay(delay), labels=labels, label_offsets=parse_offsets(label_offsets),
            start=to_utc(start), problem_type=problem_type,
            inference_attribute=inference_attribute, probability_attribute=probability_attribute,
            probability_threshold=probability_threshold, publish_cloudwatch=publish_cloudwatch,
            webhook=webhook, lateness=lateness, storage_options=storage_options(storage_option),
            out_storage_options=storage_options(out_storage_option, "--out-storage-option"),
            break_lease=break_lease, analysis=analysis_type, analysis_config=analysis_config,
        )
        result = plan.run(now)
    except CaptureqError as exc:
        _fail(exc)
    for r in result.runs:
        where = f" → {r.report_uri}" if r.report_uri else ""
        console.print(f"{r.scheduled_time:%Y-%m-%d %H:%M} {r.message}{where}", highlight=False,
                      soft_wrap=True)
    if not result.runs:
        console.print("nothing due: every closed hour has its reports", highlight=False)
    if fail_on_violations and result.violations:
        raise typer.Exit(exit_codes.VIOLATIONS)
