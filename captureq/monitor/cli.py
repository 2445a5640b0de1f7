"""``captureq baseline``, ``captureq monitor`` and ``captureq quality``: thin wrappers that print
a rich summary (worst features first), or with ``--format csv|json`` one machine-readable table
(the baseline's features; Model Monitor's CloudWatch metrics for monitor and quality)."""

from __future__ import annotations

import contextlib
import os
import sys

import polars as pl
import pyarrow as pa
import typer
from rich.table import Table

from ..cli import (
    EndOpt,
    EndpointOpt,
    LabelsOpt,
    StartOpt,
    StorageOpt,
    VariantOpt,
    _fail,
    _open,
    app,
    console,
    storage_options,
    write_result,
)
from ..errors import CaptureqError

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
FormatOpt = typer.Option(
    "table",
    "--format",
    "-f",
    help="table (a summary for people), or csv / json (one table for programs: the baseline's "
    "features; for monitor and quality Model Monitor's CloudWatch metrics).",
)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def _table(rows: pa.Table, title: str, limit: int = 50) -> Table:
    """A rich table; one too wide for the terminal is shown long (a block of lines per row)."""
    shown = rows.slice(0, limit).to_pylist()
    widths = [
        max([len(name)] + [len(_fmt(r[name])) for r in shown]) for name in rows.column_names
    ]
    if sum(w + 3 for w in widths) + 1 > console.width and rows.num_columns > 2:
        return _long_table(rows.column_names, shown, rows.num_rows, title, limit)
    out = Table(title=title)
    for name in rows.column_names:
        out.add_column(name, overflow="fold")
    for row in shown:
        out.add_row(*(_fmt(v) for v in row.values()))
    if rows.num_rows > limit:
        out.caption = f"{limit} of {rows.num_rows} rows shown"
    return out


def _long_table(names: list[str], shown: list[dict], total: int, title: str, limit: int) -> Table:
    """Rows as ``column  value`` blocks (psql's expanded display): readable at any width."""
    out = Table(title=f"{title} (one block per row)", show_header=False)
    out.add_column("column", style="bold", no_wrap=True)
    out.add_column("value", overflow="fold")
    for row in shown:
        for i, name in enumerate(names):
            out.add_row(name, _fmt(row[name]), end_section=i == len(names) - 1)
    if total > limit:
        out.caption = f"{limit} of {total} rows shown"
    return out


def _check_format(format: str) -> None:
    if format not in FORMATS:
        _fail(CaptureqError(f"--format must be table, csv or json, got {format!r}"))


@contextlib.contextmanager
def pipe_safe():
    """A reader that stops early (``| head``) ends the output quietly, with exit code 0."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # stdout is gone: point it at /dev/null so the interpreter's last flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


@app.command()
def baseline(
    training_data: str,
    out: str,
    endpoint: str | None = typer.Option(
        None, help="Endpoint, when TRAINING_DATA is a capture tree."
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    header: bool | None = typer.Option(
        None, "--header/--no-header", help="CSV has a header row (detected if not given)."
    ),
    format: str = FormatOpt,
) -> None:
    """Write Model Monitor statistics.json and constraints.json for TRAINING_DATA into OUT."""
    from . import baseline as make_baseline
    from .baseline import is_table_file

    _check_format(format)
    try:
        source = training_data
        if not is_table_file(training_data) and (variant or storage_option):
            source = _open(training_data, None, None, None, None, variant, storage_option)
        result = make_baseline(
            source,
            out,
            endpoint=endpoint,
            header=header,
            start=start,
            end=end,
            storage_options=storage_options(storage_option),
        )
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


@app.command()
def monitor(
    capture_uri: str,
    baseline: str = typer.Option(..., "--baseline", help="Folder with the baseline files."),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Write statistics.json, constraint_violations.json, drift.parquet, metrics.parquet "
        "and hourly/ here.",
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    hourly: bool = typer.Option(True, "--hourly/--no-hourly", help="Also check every hour."),
    format: str = FormatOpt,
) -> None:
    """Check CAPTURE_URI's window against a data-quality baseline: violations, drift per
    feature and hour, and Model Monitor's CloudWatch metrics (--format csv|json prints them)."""
    from . import Baseline
    from . import monitor as run_monitor

    _check_format(format)
    try:
        base = Baseline.load(baseline)  # a wrong baseline fails before anything is read
        tree = _open(capture_uri, None, start, end, endpoint, variant, storage_option)
        result = run_monitor(tree, base, out, hourly=hourly)
    except CaptureqError as exc:
        _fail(exc)
    with pipe_safe():
        if format != "table":
            write_result(result.metrics, format)
            return
        _print_monitor(result, hourly, out)


def _print_monitor(result, hourly: bool, out: str | None) -> None:
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


@app.command()
def quality(
    capture_uri: str,
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    problem_type: str | None = typer.Option(
        None, help="BinaryClassification, MulticlassClassification or Regression (inferred)."
    ),
    prediction: str | None = typer.Option(None, help="Output column, e.g. output_c0."),
    threshold: float = typer.Option(0.5, help="Probability cut-off for binary classification."),
    by: str = typer.Option("hour", help="hour or day."),
    baseline_out: str | None = typer.Option(
        None,
        "--baseline-out",
        help="Write Model Monitor's model-quality statistics.json and constraints.json here.",
    ),
    constraints: str | None = typer.Option(
        None,
        "--constraints",
        help="Folder with a model-quality constraints.json: check the window and every hour.",
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Write statistics.json, constraint_violations.json, hourly/, metrics.parquet here.",
    ),
    format: str = FormatOpt,
) -> None:
    """Model quality against ground truth, per hour or day, plus label coverage and delay;
    Model Monitor's model-quality files with --baseline-out / --constraints / --out."""
    _check_format(format)
    try:
        tree = _open(capture_uri, labels, start, end, endpoint, variant, storage_option)
        result = tree.model_quality(
            problem_type=problem_type,
            prediction=prediction,
            threshold=threshold,
            by=by,
            baseline_out=baseline_out,
            constraints=constraints,
            out=out,
        )
    except CaptureqError as exc:
        _fail(exc)
    with pipe_safe():
        if format != "table":
            write_result(result.cloudwatch_metrics, format)
            return
        _print_quality(result, by, baseline_out, out)


def _print_quality(result, by: str, baseline_out: str | None, out: str | None) -> None:
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
