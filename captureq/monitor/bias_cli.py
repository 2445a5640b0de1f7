"""``captureq bias baseline`` and ``captureq bias monitor``: Clarify's bias metrics of captured
traffic, and bias drift against a baseline (thin wrappers over
:func:`captureq.monitor.bias.bias`). ``captureq/cli.py`` adds this module's ``app`` as the
``bias`` group."""

from __future__ import annotations

import typer

from ..cli_options import (
    EndOpt,
    EndpointOpt,
    FailOnViolationsOpt,
    Format,
    FormatOpt,
    InputTypeOpt,
    LabelsOpt,
    LatenessOpt,
    OutputTypeOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    UriArg,
    VariantOpt,
    exit_on_violations,
    load,
    pipe_safe,
    write_result,
)
from ..cli_options import fail as _fail
from ..cli_options import open_tree as _open
from ..cli_options import out as console
from ..errors import CaptureqError
from .cli import _check_format, _table

app = typer.Typer(
    help="Bias metrics (SageMaker Clarify's) and bias drift of captured traffic.",
    epilog="\b\nExample:\n"
    "  captureq bias baseline demo-data/capture --labels demo-data/groundtruth \\\n"
    "      --endpoint churn-xgb --config bias_config.json bias-baseline/\n"
    "  captureq bias monitor demo-data/capture --labels demo-data/groundtruth \\\n"
    "      --endpoint churn-xgb --config bias_config.json \\\n"
    "      --baseline bias-baseline/analysis.json --out bias-monitor/",
    no_args_is_help=True,
)

ConfigOpt = typer.Option(
    ..., "--config", metavar="FILE", show_default=False,
    help="Clarify's analysis configuration JSON (label, label_values_or_threshold, facet, "
    "group_variable, probability_threshold, headers).",
)
PredictionOpt = typer.Option(
    None, "--prediction", metavar="COLUMN", show_default=False,
    help="Output column holding the predicted label, e.g. output_predicted_label.",
)
ProbabilityOpt = typer.Option(
    None, "--probability", metavar="COLUMN", show_default=False,
    help="Output column holding a score; predicted positive above probability_threshold.",
)
def _run(uri, labels, start, end, lateness, endpoint, variant, storage_option, quiet,
         input_type=None, output_type=None, **kw):
    from .bias import bias

    tree = _open(uri, labels, start, end, endpoint, variant, storage_option, lateness=lateness,
                 input_type=input_type, output_type=output_type)
    load(tree, "reading", quiet)
    return bias(tree, **kw)


def _summary(result):
    import pyarrow.compute as pc

    m = result.metrics
    return m.filter(pc.equal(m["granularity"], "window")).select(
        ["stage", "facet", "facet_value", "metric_name", "value", "group_size"])


@app.command(
    epilog="\b\nExample:\n"
    "  captureq bias baseline demo-data/capture --labels demo-data/groundtruth \\\n"
    "      --endpoint churn-xgb --end 2026-01-02 --config analysis_config.json bias-baseline/"
)
def baseline(
    capture_uri: str = UriArg,
    out: str = typer.Argument(..., metavar="OUT", help="Folder for analysis.json.",
                              show_default=False),
    config: str = ConfigOpt,
    labels: str | None = LabelsOpt,
    prediction: str | None = PredictionOpt,
    probability: str | None = ProbabilityOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write Clarify's analysis.json (pre- and post-training bias metrics per facet value) for
    the captured predictions and their ground truth into OUT."""
    from .bias import BiasConfig

    _check_format(format)
    try:
        cfg = BiasConfig.load(config)
        result = _run(capture_uri, labels, start, end, lateness, endpoint, variant,
                      storage_option, quiet, input_type, output_type, config=cfg, prediction=prediction,
                      probability=probability)
        result.write(out)
    except CaptureqError as exc:
        _fail(exc)
    rows = _summary(result)
    with pipe_safe():
        if format != "table":
            write_result(rows, format)
            return
        console.print(_table(rows, title=f"bias of {capture_uri}", limit=200))
        console.print(f"wrote {out}/analysis.json")


@app.command(
    epilog="\b\nExample:\n"
    "  captureq bias monitor demo-data/capture --labels demo-data/groundtruth \\\n"
    "      --endpoint churn-xgb --config analysis_config.json \\\n"
    "      --baseline bias-baseline/analysis.json --out bias-monitor/ --every hour"
)
def monitor(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(..., "--baseline", metavar="FILE", show_default=False,
                                 help="The baseline's analysis.json (or its folder)."),
    config: str = ConfigOpt,
    out: str = typer.Option(..., "--out", metavar="DIR", show_default=False,
                            help="Folder for analysis.json, constraint_violations.json and "
                            "hourly/<window>/."),
    labels: str | None = LabelsOpt,
    every: str = typer.Option("hour", "--every", metavar="hour|day", help="Window length."),
    tolerance: float = typer.Option(
        0.1, help="How much farther from the ideal than the baseline a metric may be."),
    min_group: int = typer.Option(
        30, "--min-group", help="Fewest records in the facet's group (and the rest) for a verdict."),
    metrics_dir: str | None = typer.Option(
        None, "--metrics-dir", metavar="DIR", show_default=False,
        help="Write cloudwatch_metrics.jsonl (PutMetricData requests) here."),
    schedule: str = typer.Option("captureq", "--schedule", metavar="NAME",
                                 help="MonitoringSchedule dimension of the metrics."),
    fail_on_violations: bool = FailOnViolationsOpt,
    prediction: str | None = PredictionOpt,
    probability: str | None = ProbabilityOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Bias drift: each window's bias metrics against the baseline's; writes Model Monitor's
    constraint_violations.json (bias_drift_check) and, with --metrics-dir, CloudWatch metrics."""
    import polars as pl

    from .bias import BiasConfig, load_analysis

    _check_format(format)
    try:
        cfg = BiasConfig.load(config)
        base = load_analysis(baseline)
        result = _run(capture_uri, labels, start, end, lateness, endpoint, variant,
                      storage_option, quiet, input_type, output_type, config=cfg, baseline=base, every=every,
                      prediction=prediction, probability=probability, tolerance=tolerance,
                      min_group=min_group, schedule=schedule)
        result.write(out, metrics_dir=metrics_dir)
    except CaptureqError as exc:
        _fail(exc)
    found = result.violations
    with pipe_safe():
        if format != "table":
            write_result(result.metrics, format)
        elif found:
            rows = (pl.DataFrame(found).group_by("facet", "facet_value", "metric_name")
                    .agg(pl.col("window").filter(pl.col("window") != "window").min()
                         .alias("first"), pl.len().alias("windows")).sort("first"))
            console.print(_table(rows.to_arrow(), title="bias drift violations", limit=200))
        else:
            console.print("[green]no bias metric drifted past its baseline[/]")
        if format == "table":
            console.print(f"wrote {out}/analysis.json, {out}/constraint_violations.json")
    exit_on_violations(len(found), fail_on_violations)
