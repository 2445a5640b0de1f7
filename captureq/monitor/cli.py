"""``captureq baseline``, ``captureq monitor`` and ``captureq quality``: thin wrappers that print
a rich summary (worst features first)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import typer
from rich.table import Table

from ..cli import EndOpt, EndpointOpt, LabelsOpt, StartOpt, _fail, _open, _rich_table, app, console
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


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def _table(rows: pa.Table, title: str, limit: int = 50) -> Table:
    out = Table(title=title)
    for name in rows.column_names:
        out.add_column(name, overflow="fold")
    for row in rows.slice(0, limit).to_pylist():
        out.add_row(*(_fmt(v) for v in row.values()))
    if rows.num_rows > limit:
        out.caption = f"{limit} of {rows.num_rows} rows shown"
    return out


@app.command()
def baseline(
    training_data: str,
    out: str,
    endpoint: str | None = typer.Option(
        None, help="Endpoint, when TRAINING_DATA is a capture tree."
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    header: bool | None = typer.Option(
        None, "--header/--no-header", help="CSV has a header row (detected if not given)."
    ),
) -> None:
    """Write Model Monitor statistics.json and constraints.json for TRAINING_DATA into OUT."""
    from . import baseline as make_baseline

    try:
        result = make_baseline(
            training_data, out, endpoint=endpoint, header=header, start=start, end=end
        )
    except CaptureqError as exc:
        _fail(exc)
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
        help="Write statistics.json, constraint_violations.json, drift.parquet and hourly/ here.",
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    hourly: bool = typer.Option(True, "--hourly/--no-hourly", help="Also check every hour."),
) -> None:
    """Check CAPTURE_URI's window against a baseline: violations, drift per feature and hour."""
    from . import monitor as run_monitor

    try:
        result = run_monitor(
            _open(capture_uri, None, start, end, endpoint), baseline, out, hourly=hourly
        )
    except CaptureqError as exc:
        _fail(exc)
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
            f"wrote {out}/statistics.json, {out}/constraint_violations.json, {out}/drift.parquet"
        )


@app.command()
def quality(
    capture_uri: str,
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    problem_type: str | None = typer.Option(
        None, help="BinaryClassification, MulticlassClassification or Regression (inferred)."
    ),
    prediction: str | None = typer.Option(None, help="Output column, e.g. output_c0."),
    threshold: float = typer.Option(0.5, help="Probability cut-off for binary classification."),
    by: str = typer.Option("hour", help="hour or day."),
) -> None:
    """Model quality against ground truth, per hour or day, plus label coverage and delay."""
    try:
        tree = _open(capture_uri, labels, start, end, endpoint)
        result = tree.model_quality(
            problem_type=problem_type, prediction=prediction, threshold=threshold, by=by
        )
    except CaptureqError as exc:
        _fail(exc)
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
            _rich_table(
                overall.drop("window_start", "granularity").to_arrow(), title="confusion matrix"
            )
        )
