"""``captureq attribution baseline`` and ``captureq attribution monitor``: feature-attribution
drift (SageMaker Clarify's model-explainability monitor), thin wrappers over
:mod:`captureq.monitor.attribution`."""

from __future__ import annotations

import typer

from ..cli_options import (
    EndOpt,
    EndpointOpt,
    FailOnViolationsOpt,
    Format,
    FormatOpt,
    InputTypeOpt,
    LatenessOpt,
    OutputTypeOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    UriArg,
    VariantOpt,
    exit_on_violations,
    pipe_safe,
    storage_options,
    write_result,
)
from ..cli_options import fail as _fail
from ..cli_options import open_tree as _open
from ..cli_options import out as console
from ..errors import CaptureqError
from .cli import _check_format, _table

app = typer.Typer(
    name="attribution",
    help="Feature-attribution drift (SageMaker Clarify): SHAP baselines and NDCG per window.",
    no_args_is_help=True,
    epilog="\b\nExample:\n"
    "  captureq attribution baseline capture/ shap-baseline/ --end 2026-01-02\n"
    "  captureq attribution monitor capture/ --baseline shap-baseline/analysis.json --out drift/",
)

#: exit status of ``monitor --fail-on-violations`` when a window violated

AttributionsOpt = typer.Option(
    None, "--attributions", metavar="FILE", show_default=False,
    help="Parquet/CSV of per-record attributions (inference_id or event_id, optional label, one "
    "column per feature) instead of the captured kernel_shap explanations.",
)
AggOpt = typer.Option(
    "mean_abs", "--agg-method", metavar="mean_abs|median|mean_sq",
    help="How per-record SHAP values become global values.",
)


@app.command(
    epilog="\b\nExample:\n"
    "  captureq attribution baseline capture/ shap-baseline/ --endpoint churn --end 2026-01-02"
)
def baseline(
    capture_uri: str = UriArg,
    out: str = typer.Argument(..., metavar="OUT", help="Folder for analysis.json.",
                              show_default=False),
    agg_method: str = AggOpt,
    attributions: str | None = AttributionsOpt,
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
    """Write Clarify's analysis.json (global SHAP values and expected value per label) of the
    window's attributions into OUT."""
    import pyarrow as pa

    from .attribution import attribution_baseline

    _check_format(format)
    try:
        tree = _open(capture_uri, None, start, end, endpoint, variant, storage_option,
                     lateness=lateness,
                     input_type=input_type, output_type=output_type)
        doc = attribution_baseline(tree, out, agg_method=agg_method, attributions=attributions,
                                   storage_options=storage_options(storage_option))
    except CaptureqError as exc:
        _fail(exc)
    rows = [
        {"label": label, "feature": f, "global_shap_value": v}
        for label, d in doc["explanations"]["kernel_shap"].items()
        for f, v in sorted(d["global_shap_values"].items(), key=lambda kv: -abs(kv[1]))
    ]
    table = pa.Table.from_pylist(rows)
    with pipe_safe():
        if format != "table":
            write_result(table, format)
            return
        console.print(_table(table, title=f"global SHAP values ({agg_method})", limit=200))
        for label, d in doc["explanations"]["kernel_shap"].items():
            if d.get("expected_value") is not None:
                console.print(f"{label}: expected value {d['expected_value']:.6g}", highlight=False)
        console.print(f"wrote {out}/analysis.json")


@app.command(
    epilog="\b\nExample:\n"
    "  captureq attribution monitor capture/ --baseline shap-baseline/analysis.json --out drift/ \\\n"
    "      --every hour --fail-on-violations"
)
def monitor(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(
        ..., "--baseline", metavar="FILE",
        help="Clarify's analysis.json (or the folder holding it).",
    ),
    out: str | None = typer.Option(
        None, "--out", metavar="DIR", show_default=False,
        help="Write analysis.json, constraint_violations.json, <every>/<window>/ and Parquet here.",
    ),
    every: str = typer.Option("hour", "--every", metavar="hour|day", help="Window length."),
    threshold: float = typer.Option(0.9, "--threshold", metavar="NDCG",
                                    help="A window scoring below this is a violation."),
    agg_method: str = AggOpt,
    attributions: str | None = AttributionsOpt,
    cloudwatch_dir: str | None = typer.Option(
        None, "--cloudwatch-dir", metavar="DIR", show_default=False,
        help="Write the CloudWatch metrics (feature_<name>, ExpectedValue) as JSON lines here.",
    ),
    schedule: str = typer.Option("captureq", "--schedule", metavar="NAME",
                                 help="MonitoringSchedule dimension of the CloudWatch metrics."),
    fail_on_violations: bool = FailOnViolationsOpt,
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
    """Score each window's feature-attribution ranking against the baseline's (NDCG); windows
    below --threshold are feature_attribution_drift_check violations."""
    import polars as pl

    from .attribution import AttributionBaseline, attribution_monitor

    _check_format(format)
    try:
        base = AttributionBaseline.load(baseline)  # a wrong baseline fails before reading
    except CaptureqError as exc:
        _fail(f"--baseline {baseline}: {exc}")
    try:
        tree = _open(capture_uri, None, start, end, endpoint, variant, storage_option,
                     lateness=lateness,
                     input_type=input_type, output_type=output_type)
        result = attribution_monitor(
            tree, base, out, every=every, threshold=threshold, agg_method=agg_method,
            attributions=attributions, storage_options=storage_options(storage_option),
            cloudwatch_dir=cloudwatch_dir, schedule=schedule,
        )
    except CaptureqError as exc:
        _fail(exc)
    rows = pl.from_arrow(result.scores)
    with pipe_safe():
        if format != "table":
            write_result(result.scores, format)
        else:
            shown = (
                rows.filter(pl.col("granularity") == every)
                .with_columns(pl.col("window_start").dt.strftime(
                    "%Y-%m-%d %H:00" if every == "hour" else "%Y-%m-%d").alias("window"))
                .select("window", "label", "records", pl.col("ndcg").round(4), "violation",
                        pl.col("top_features").alias("top features"))
            )
            console.print(_table(shown.to_arrow(), title=f"feature-attribution NDCG per {every}",
                                 limit=500))
            whole = rows.filter(pl.col("granularity") == "window")
            for r in whole.iter_rows(named=True):
                console.print(
                    f"whole range, {r['label']}: NDCG {r['ndcg']:.4f} over {r['records']:,} "
                    f"records; baseline top: {r['baseline_top_features']}", highlight=False)
            bad = rows.filter((pl.col("granularity") == every) & pl.col("violation"))
            if bad.height:
                console.print(
                    f"[red]{bad.height} {every}(s) below {threshold}[/], the first "
                    f"{bad['window_start'].min()}", highlight=False)
            else:
                console.print(f"[green]no {every} below {threshold}[/]")
            if out:
                console.print(f"wrote {out}/analysis.json, {out}/constraint_violations.json, "
                              f"{out}/{every}/")
    exit_on_violations(int(result.violated), fail_on_violations)
