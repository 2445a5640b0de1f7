"""``captureq baseline``, ``captureq monitor`` and ``captureq quality``: thin wrappers that print
a rich summary (worst features first), or with ``--format csv|json`` one machine-readable table
(the baseline's features; Model Monitor's CloudWatch metrics for monitor and quality).

The commands are defined on this module's own ``app``; ``captureq/cli.py`` adds them to the
``captureq`` command. Shared options come from :mod:`captureq.cli_options`; polars, pyarrow and
the monitoring code are imported when a command runs, not when ``captureq --help`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ..cli_options import (
    ClassLabelsOpt,
    EndOpt,
    EndpointOpt,
    FailOnViolationsOpt,
    Format,
    FormatOpt,
    InputTypeOpt,
    LabelsOpt,
    LatenessOpt,
    OutputTypeOpt,
    PredictionOpt,
    ProbabilityOpt,
    ProblemTypeOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    ThresholdOpt,
    UriArg,
    VariantOpt,
    err_console,
    exit_on_violations,
    fmt,
    load,
    pipe_safe,
    rich_table,
    show_model_type,
    storage_options,
    write_result,
)
from ..cli_options import fail as _fail
from ..cli_options import open_tree as _open
from ..cli_options import out as console
from ..errors import CaptureqError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from rich.table import Table

app = typer.Typer()

SHORT = {  # column headers that fit an 80-column terminal
    "window_start": "window",
    "granularity": "per",
    "label_coverage": "coverage",
    "label_delay_mean_h": "delay_h",
    "accuracy": "acc",
    "precision": "prec",
    "recall": "rec",
    "auc_roc": "auc_roc",
    "auc_pr": "auc_pr",
    "weighted_f1": "w_f1",
    "inferred_type": "type",
    "ks_pvalue": "ks_p",
    "js_distance": "js",
    "distance": "dist",
    "first_drift_hour": "first drift",
    "drifted_hours": "drifted",
    "hours": "of",
}
FORMATS = ("table", "csv", "json")


def _table(rows: pa.Table, title: str, limit: int = 50) -> Table:
    """A rich table; one too wide for the terminal is shown long (a block of lines per row)."""
    return rich_table(rows, title=title, limit=limit, cell=fmt, long=True)


def _check_format(format: str) -> None:
    if format not in FORMATS:
        _fail(CaptureqError(f"--format must be table, csv or json, got {format!r}"))


@app.command(
    epilog="\b\nExample:\n"
    "  captureq baseline demo-data/training.csv demo-data/baseline\n"
    "  captureq baseline demo-data/capture baseline/ --endpoint churn-xgb --end 2026-01-02"
)
def baseline(
    training_data: str = typer.Argument(
        ..., metavar="TRAINING_DATA", help="CSV or Parquet file, or a capture tree.",
        show_default=False,
    ),
    out: str = typer.Argument(..., metavar="OUT", help="Folder for the two files.",
                              show_default=False),
    endpoint: str | None = typer.Option(
        None, metavar="NAME", help="Endpoint, when TRAINING_DATA is a capture tree.",
        show_default=False,
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    header: bool | None = typer.Option(
        None, "--header/--no-header", help="CSV has a header row (detected if not given).",
        show_default=False,
    ),
    by: str | None = typer.Option(
        None, "--by", metavar="KEY",
        help="Split by an eventMetadata key (targetModel, or metadata.targetModel): one "
        "baseline per value, in OUT/<value>/.", show_default=False,
    ),
    input_format: str | None = typer.Option(
        None, "--input-format", metavar="csv|jsonl|json|parquet|capture|export",
        help="How to read TRAINING_DATA (detected from its name or content if not given).",
        show_default=False,
    ),
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write Model Monitor statistics.json and constraints.json for TRAINING_DATA (a CSV, JSON
    Lines, JSON or Parquet file, a captureq export or a capture tree's inputs) into OUT;
    --format csv|json prints the features."""
    import warnings

    from ..errors import HeaderWarning
    from . import baseline as make_baseline
    from .training import check_format, detect_format, refuse_capture_file

    _check_format(format)
    try:
        options = storage_options(storage_option)
        data_format = check_format(input_format) or detect_format(training_data, options)
        if data_format != "capture":
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always", HeaderWarning)
                result = make_baseline(
                    training_data, out, header=header, storage_options=options,
                    endpoint=endpoint, start=start, end=end, data_format=data_format,
                )
            for w in said:
                err_console().print(f"[yellow]warning:[/] {w.message}", soft_wrap=True,
                                    highlight=False)
        else:  # a capture tree, narrowed and read here so that the reading shows progress
            refuse_capture_file(training_data, options)
            tree = _open(training_data, None, start, end, [endpoint] if endpoint else None,
                         variant, storage_option, lateness=lateness,
                     input_type=input_type, output_type=output_type)
            load(tree, "reading", quiet)
            if by:
                from .split import baseline_by

                _print_split({v: b.features() for v, b in baseline_by(tree, out, by).items()},
                             by, format, "baseline", out)
                return
            result = make_baseline(tree, out)
    except CaptureqError as exc:
        _fail(exc)
    with pipe_safe():
        if format != "table":
            write_result(result.features(), format)
            return
        console.print(_table(result.features(), title=f"baseline of {training_data}"))
        console.print(
            f"items: {result.statistics['dataset']['item_count']:,}; wrote {out}/statistics.json "
            f"and {out}/constraints.json"
        )


@app.command(
    epilog="\b\nExample:\n"
    "  captureq monitor demo-data/capture --baseline demo-data/baseline --endpoint churn-xgb \\\n"
    "      --out monitor/"
)
def monitor(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(
        ..., "--baseline", metavar="DIR", help="Folder with the baseline files."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        show_default=False,
        help="Write statistics.json, constraint_violations.json, drift.parquet, metrics.parquet "
        "and hourly/ here.",
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    hourly: bool = typer.Option(True, "--hourly/--no-hourly", help="Also check every hour."),
    by: str | None = typer.Option(
        None, "--by", metavar="KEY",
        help="Split by an eventMetadata key (as `captureq baseline --by`): each value is checked "
        "against DIR/<value>/ and written to --out/<value>/.", show_default=False,
    ),
    fail_on_violations: bool = FailOnViolationsOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Check CAPTURE_URI's window against a data-quality baseline: violations, drift per
    feature and hour, and Model Monitor's CloudWatch metrics (--format csv|json prints them)."""
    from . import Baseline
    from . import monitor as run_monitor

    _check_format(format)
    try:
        base = None if by else Baseline.load(baseline)  # a wrong baseline fails before any read
    except CaptureqError as exc:
        _fail(f"--baseline {baseline}: {exc}")
    try:
        tree = _open(capture_uri, None, start, end, endpoint, variant, storage_option,
                      lateness=lateness,
                     input_type=input_type, output_type=output_type)
        load(tree, "reading", quiet)
        if by:
            from .split import monitor_by

            runs = monitor_by(tree, baseline, out, by, hourly=hourly)
            _print_split({v: r.metrics for v, r in runs.items()}, by, format, "metrics", out)
            exit_on_violations(sum(r.violations.num_rows for r in runs.values()), fail_on_violations)
            return
        result = run_monitor(tree, base, out, hourly=hourly)
    except CaptureqError as exc:
        _fail(exc)
    with pipe_safe():
        if format != "table":
            write_result(result.metrics, format)
        else:
            _print_monitor(result, hourly, out)
    exit_on_violations(result.violations.num_rows, fail_on_violations)


def _print_split(tables: dict, by: str, format: str, what: str, out: str | None) -> None:
    """One table per value of ``by`` (a leading ``by`` column in csv/json output)."""
    import pyarrow as pa

    from .split import metadata_key

    by = metadata_key(by)
    with pipe_safe():
        if format != "table":
            parts = [t.add_column(0, by, pa.array([v] * t.num_rows, pa.string()))
                     for v, t in tables.items()]
            write_result(pa.concat_tables(parts) if parts else pa.table({by: pa.array([], pa.string())}), format)
            return
        for value, t in tables.items():
            console.print(_table(t, title=f"{what} for {by}={value}"))
        if out:
            console.print(f"wrote {len(tables)} folders under {out}/ (one per {by})")


def _print_monitor(result, hourly: bool, out: str | None) -> None:
    import polars as pl
    import pyarrow as pa

    window = (
        pl.from_arrow(result.drift)
        .filter(pl.col("granularity") == "window")
        .drop("granularity", "window_start", "window_end")
    )
    if hourly:
        first = pl.from_arrow(result.first_drift()).select(
            "feature", "first_drift_hour", "drifted_hours", "hours"
        )
        window = window.join(first, on="feature", how="left")
    worst = window.sort(["drift", "distance"], descending=True, nulls_last=True).drop(
        "threshold", "ks_statistic", strict=False
    )
    worst = worst.rename({k: v for k, v in SHORT.items() if k in worst.columns})
    console.print(_table(worst.to_arrow(), title="drift per feature (worst first)"))
    violations = result.constraint_violations["violations"]
    if violations:
        console.print(
            _table(pa.Table.from_pylist(violations), title="constraint violations (whole window)")
        )
    else:
        console.print("[green]no constraint violations in the window[/]")
    if hourly and result.violations.num_rows:
        v = pl.from_arrow(result.violations).filter(pl.col("granularity") == "hour")
        summary = (
            v.group_by("feature_name", "constraint_check_type")
            .agg(pl.col("window_start").min().alias("first_hour"), pl.len().alias("hours"))
            .sort("first_hour")
        )
        console.print(_table(summary.to_arrow(), title="hourly violations: when they began"))
    if out:
        console.print(
            f"wrote {out}/statistics.json, {out}/constraint_violations.json, "
            f"{out}/drift.parquet, {out}/metrics.parquet"
        )


@app.command(
    epilog="\b\nExample:\n"
    "  captureq quality demo-data/capture --labels demo-data/groundtruth --endpoint churn-xgb \\\n"
    "      --by day --threshold 0.8"
)
def quality(
    capture_uri: str = UriArg,
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    problem_type: str | None = ProblemTypeOpt,
    prediction: str | None = PredictionOpt,
    probability: str | None = ProbabilityOpt,
    class_labels: str | None = ClassLabelsOpt,
    threshold: float = ThresholdOpt,
    by: str = typer.Option("hour", metavar="hour|day", help="hour or day."),
    baseline_out: str | None = typer.Option(
        None,
        "--baseline-out",
        metavar="DIR",
        show_default=False,
        help="Write Model Monitor's model-quality statistics.json and constraints.json here.",
    ),
    constraints: str | None = typer.Option(
        None,
        "--constraints",
        metavar="DIR",
        show_default=False,
        help="Folder with a model-quality constraints.json: check the window and every hour.",
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        show_default=False,
        help="Write statistics.json, constraint_violations.json, hourly/, metrics.parquet here.",
    ),
    fail_on_violations: bool = FailOnViolationsOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Model quality against ground truth, per hour or day, plus label coverage and delay;
    Model Monitor's model-quality files with --baseline-out / --constraints / --out."""
    _check_format(format)
    try:
        tree = _open(capture_uri, labels, start, end, endpoint, variant, storage_option,
                      lateness=lateness,
                     input_type=input_type, output_type=output_type)
        load(tree, "reading", quiet)
        result = tree.model_quality(
            problem_type=problem_type,
            prediction=prediction,
            probability=probability,
            class_labels=class_labels.split(",") if class_labels else None,
            threshold=threshold,
            by=by,
            baseline_out=baseline_out,
            constraints=constraints,
            out=out,
        )
    except CaptureqError as exc:
        _fail(exc)
    show_model_type(result.model_type, quiet)
    with pipe_safe():
        if format != "table":
            write_result(result.cloudwatch_metrics, format)
        else:
            _print_quality(result, by, baseline_out, out)
    exit_on_violations(result.violations.num_rows, fail_on_violations)


def _print_quality(result, by: str, baseline_out: str | None, out: str | None) -> None:
    import polars as pl
    import pyarrow as pa

    console.print(
        f"{result.problem_type} on {result.prediction}"
        + (
            f", threshold {result.threshold}"
            if result.problem_type == "BinaryClassification"
            else ""
        )
    )
    shown = pl.from_arrow(result.metrics).drop(
        "label_delay_max_h", "tp", "fp", "tn", "fn", strict=False
    )
    shown = shown.rename({k: v for k, v in SHORT.items() if k in shown.columns})
    console.print(_table(shown.to_arrow(), title=f"model quality per {by}", limit=200))
    overall = pl.from_arrow(result.confusion).filter(pl.col("granularity") == "window")
    if overall.height:
        console.print(
            _table(overall.drop("window_start", "granularity").to_arrow(), title="confusion matrix")
        )
    if result.constraint_violations is not None:
        window = result.constraint_violations["violations"]
        if window:
            console.print(
                _table(pa.Table.from_pylist(window), title="constraint violations (whole window)")
            )
        else:
            console.print("[green]no model-quality constraint violations in the window[/]")
        hourly = pl.from_arrow(result.violations).filter(pl.col("granularity") != "window")
        if hourly.height:
            summary = (
                hourly.group_by("metric_name", "constraint_check_type")
                .agg(pl.col("window_start").min().alias("first"), pl.len().alias("windows"))
                .sort("first")
            )
            console.print(_table(summary.to_arrow(), title=f"violations per {by}: when they began"))
    if baseline_out:
        console.print(f"wrote {baseline_out}/statistics.json and {baseline_out}/constraints.json")
    if out:
        console.print(f"wrote {out}/statistics.json, {out}/metrics.parquet and {out}/hourly/")
