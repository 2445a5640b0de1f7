"""``captureq baseline``, ``captureq monitor`` and ``captureq quality``: thin wrappers that print
a rich summary (worst features first).

The commands are defined on this module's own ``app``; ``captureq/cli.py`` adds them to the
``captureq`` command. Shared options come from :mod:`captureq.cli_options`; polars and the
monitoring code are imported when a command runs, not when ``captureq --help`` does.
"""

from __future__ import annotations

import typer

from ..cli_options import (
    EndOpt,
    EndpointOpt,
    Format,
    FormatOpt,
    LabelsOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    UriArg,
    VariantOpt,
    fmt,
    load,
    open_tree,
    say,
    storage_options,
    write_result,
)

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


def _table(rows, title: str, format: Format = Format.table, limit: int = 50) -> None:
    write_result(rows, format, title=title, limit=limit, cell=fmt)


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
        None, metavar="NAME", help="Endpoint, when TRAINING_DATA is a capture tree.", show_default=False
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    header: bool | None = typer.Option(
        None, "--header/--no-header", help="CSV has a header row (detected if not given).",
        show_default=False,
    ),
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write Model Monitor statistics.json and constraints.json for TRAINING_DATA (a CSV or
    Parquet file, or a capture tree's inputs) into OUT."""
    from . import baseline as make_baseline
    from .baseline import is_table_file

    if is_table_file(training_data):
        result = make_baseline(
            training_data, out, header=header, storage_options=storage_options(storage_option)
        )
    else:  # a capture tree, narrowed here so that its reading shows progress
        tree = open_tree(training_data, None, start, end, [endpoint] if endpoint else None,
                         variant, storage_option)
        load(tree, "reading", quiet)
        result = make_baseline(tree, out)
    _table(result.features(), f"baseline of {training_data}", format)
    say(
        f"items: {result.statistics['dataset']['item_count']:,}; wrote {out}/statistics.json "
        f"and {out}/constraints.json",
        format,
    )


@app.command(
    epilog="\b\nExample:\n"
    "  captureq monitor demo-data/capture --baseline demo-data/baseline --endpoint churn-xgb \\\n"
    "      --out monitor/"
)
def monitor(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(..., "--baseline", metavar="DIR", help="Folder with the baseline files."),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Write statistics.json, constraint_violations.json, drift.parquet and hourly/ here.",
        show_default=False,
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    hourly: bool = typer.Option(True, "--hourly/--no-hourly", help="Also check every hour."),
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Check CAPTURE_URI's window against a baseline: violations, drift per feature and hour."""
    import pyarrow as pa
    import polars as pl

    from . import Baseline
    from . import monitor as run_monitor

    base = Baseline.load(baseline)  # a missing or malformed baseline fails before any reading
    tree = open_tree(capture_uri, None, start, end, endpoint, variant, storage_option)
    load(tree, "reading", quiet)
    result = run_monitor(tree, base, out, hourly=hourly)
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
    _table(worst.to_arrow(), "drift per feature (worst first)", format)
    if format is not Format.table:  # one table on stdout; the rest is in --out
        say(f"{len(result.constraint_violations['violations'])} constraint violations", format)
        return
    violations = result.constraint_violations["violations"]
    if violations:
        _table(pa.Table.from_pylist(violations), "constraint violations (whole window)")
    else:
        say("[green]no constraint violations in the window[/]")
    if hourly and result.violations.num_rows:
        v = pl.from_arrow(result.violations).filter(pl.col("granularity") == "hour")
        summary = (
            v.group_by("feature_name", "constraint_check_type")
            .agg(pl.col("window_start").min().alias("first_hour"), pl.len().alias("hours"))
            .sort("first_hour")
        )
        _table(summary.to_arrow(), "hourly violations: when they began")
    if out:
        say(f"wrote {out}/statistics.json, {out}/constraint_violations.json, {out}/drift.parquet")


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
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    problem_type: str | None = typer.Option(
        None, metavar="TYPE", help="BinaryClassification, MulticlassClassification or Regression (inferred).",
        show_default=False,
    ),
    prediction: str | None = typer.Option(
        None, metavar="COLUMN", help="Output column, e.g. output_c0.", show_default=False
    ),
    threshold: float = typer.Option(0.5, metavar="P", help="Probability cut-off for binary classification."),
    by: str = typer.Option("hour", metavar="hour|day", help="hour or day."),
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Model quality against ground truth, per hour or day, plus label coverage and delay."""
    import polars as pl

    tree = open_tree(capture_uri, labels, start, end, endpoint, variant, storage_option)
    load(tree, "reading", quiet)
    result = tree.model_quality(
        problem_type=problem_type, prediction=prediction, threshold=threshold, by=by
    )
    say(
        f"{result.problem_type} on {result.prediction}"
        + (
            f", threshold {result.threshold}"
            if result.problem_type == "BinaryClassification"
            else ""
        ),
        format,
    )
    shown = pl.from_arrow(result.metrics).drop(
        "label_delay_max_h", "tp", "fp", "tn", "fn", strict=False
    )
    shown = shown.rename({k: v for k, v in SHORT.items() if k in shown.columns})
    _table(shown.to_arrow(), f"model quality per {by}", format, limit=200)
    if format is not Format.table:
        return
    overall = pl.from_arrow(result.confusion).filter(pl.col("granularity") == "window")
    if overall.height:
        write_result(
            overall.drop("window_start", "granularity").to_arrow(), format,
            title="confusion matrix",
        )
