"""``captureq estimate``: model quality estimated without labels (a thin wrapper over
:func:`captureq.monitor.estimate.estimate_quality`)."""

from __future__ import annotations

import typer

from ..cli_options import (
    EndOpt,
    EndpointOpt,
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
    load,
    write_result,
)
from ..cli_options import fail as _fail
from ..cli_options import open_tree as _open
from ..cli_options import out as console
from ..errors import CaptureqError
from .cli import _check_format, _table

app = typer.Typer()


@app.command(
    epilog="\b\nExample:\n"
    "  captureq estimate demo-data/capture --labels demo-data/groundtruth --endpoint churn-xgb \\\n"
    "      --reference-start 2026-01-01T00 --reference-end 2026-01-02T00 --threshold 0.8"
)
def estimate(
    capture_uri: str = UriArg,
    reference_start: str = typer.Option(
        ..., "--reference-start", help="Start of the labelled reference window (ISO 8601 UTC)."
    ),
    reference_end: str = typer.Option(..., "--reference-end", help="Its end, exclusive."),
    labels: str | None = LabelsOpt,
    threshold: float = typer.Option(0.5, help="Probability cut-off for the predicted label."),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    metric: list[str] | None = typer.Option(
        None, "--metric", help="Show this metric (repeatable); table default: accuracy or mae, "
        "csv/json default: all."
    ),
    by: str = typer.Option("hour", help="hour or day."),
    prediction: str | None = typer.Option(None, help="Output column, e.g. output_c0."),
    problem_type: str | None = typer.Option(
        None, help="BinaryClassification (CBPE) or Regression (DLE); inferred when omitted."
    ),
    calibration: str = typer.Option("auto", help="auto, identity or isotonic."),
    confidence: float = typer.Option(0.95, help="Confidence level of the band."),
    out: str | None = typer.Option(
        None, "--out", help="Write constraints.json, constraint_violations.json and Parquet here."
    ),
    format: Format = FormatOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Estimate model quality where labels have not arrived (CBPE / DLE), beside the realized
    quality where they have; alerts when the band crosses the reference's value."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    _check_format(format)
    try:
        tree = _open(capture_uri, labels, start, end, endpoint, variant, storage_option,
                      lateness=lateness,
                     input_type=input_type, output_type=output_type)
        load(tree, "reading", quiet)
        result = tree.estimate_quality(
            reference_start=reference_start,
            reference_end=reference_end,
            threshold=threshold,
            prediction=prediction,
            problem_type=problem_type,
            calibration=calibration,
            confidence=confidence,
            by=by,
        )
        if out:
            result.write(out)
    except CaptureqError as exc:
        _fail(exc)
    rows = result.metrics
    names = metric
    if not names and format == "table" and rows.num_rows:
        names = [rows["metric"][0].as_py()]  # accuracy (CBPE) or mae (DLE)
    if names:
        rows = rows.filter(pc.is_in(rows["metric"], pa.array(names)))
    if format != "table":
        write_result(rows, format)
        return
    ref = result.reference
    console.print(
        f"{result.problem_type} on {result.prediction}"
        + (f", threshold {result.threshold}" if result.calibration else "")
        + f"; reference {ref['start']} – {ref['end']}: {ref['labelled']:,} labelled records",
        highlight=False,
    )
    cal = result.calibration
    if cal is not None:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        console.print(
            f"calibration: {cal.method} (ECE raw {fmt(cal.ece_raw)}, by chance ≤ "
            f"{fmt(cal.ece_chance)}, isotonic out of fold {fmt(cal.ece_isotonic)})",
            highlight=False,
        )
    for name in names or []:
        shown = (
            pl.from_arrow(rows)
            .filter(pl.col("metric") == name)
            .with_columns(
                pl.format("{}–{}", pl.col("lower").round(3), pl.col("upper").round(3))
                .alias("band"),
                pl.when(pl.col("granularity") == "window").then(pl.lit("all"))
                .otherwise(pl.col("window_start").dt.strftime("%m-%d %H:00")).alias("window"),
            )
            .select("window", "records", "labelled", "estimated", "band", "realized", "threshold",
                    "alert")
            .rename({"records": "n", "labelled": "labels", "estimated": "est",
                     "realized": "real", "threshold": "limit"})  # 80 columns wide
        )
        console.print(
            _table(shown.to_arrow(), title=f"{name}: estimated vs realized per {by}", limit=500)
        )
    v = result.violations.filter(pc.equal(result.violations["granularity"], by))
    if v.num_rows:
        summary = (
            pl.from_arrow(v)
            .group_by("metric_name", "constraint_check_type")
            .agg(pl.col("window_start").min().alias("first"), pl.len().alias(by + "s"))
            .sort("first")
        )
        console.print(_table(summary.to_arrow(), title="estimated-quality violations"))
    else:
        console.print(f"[green]no {by} crossed the reference's thresholds[/]")
    if out:
        console.print(f"wrote {out}/constraints.json, {out}/constraint_violations.json")
