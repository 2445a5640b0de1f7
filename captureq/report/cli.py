"""``captureq report``: the monitoring report as one HTML file.

Defined on this module's own ``app``; ``captureq/cli.py`` adds it to the ``captureq`` command.
"""

from __future__ import annotations

import json
import sys

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
    exit_on_violations,
    load,
)
from ..cli_options import fail as _fail
from ..cli_options import open_tree as _open
from ..cli_options import out as console
from ..errors import CaptureqError

app = typer.Typer()


@app.command(
    epilog="\b\nExample:\n"
    "  captureq report demo-data/capture --baseline demo-data/baseline \\\n"
    "      --labels demo-data/groundtruth --endpoint churn-xgb -o report.html \\\n"
    "      --reference-start 2026-01-01 --reference-end 2026-01-02"
)
def report(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(
        ..., "--baseline", metavar="DIR", help="Folder with the baseline files."
    ),
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    prediction: str | None = PredictionOpt,
    problem_type: str | None = ProblemTypeOpt,
    probability: str | None = ProbabilityOpt,
    class_labels: str | None = ClassLabelsOpt,
    threshold: float = ThresholdOpt,
    out: str = typer.Option(
        "report.html", "--out", "-o", metavar="FILE", help="HTML file to write."
    ),
    reference_start: str | None = typer.Option(
        None, "--reference-start", metavar="TIME", show_default=False,
        help="With --reference-end: a labelled window; adds the quality estimated without "
             "labels (as `captureq estimate`).",
    ),
    reference_end: str | None = typer.Option(
        None, "--reference-end", metavar="TIME", show_default=False,
        help="End of that reference window, exclusive.",
    ),
    top_features: int = typer.Option(
        20, "--top-features", metavar="K", min=1,
        help="How many features the heat map and the histograms draw (the worst K); every "
             "feature is in the report's ranked table, drawn on a click.",
    ),
    bias_config: str | None = typer.Option(
        None, "--bias-config", metavar="FILE", show_default=False,
        help="Clarify's analysis configuration (as `captureq bias`): adds the bias-drift "
             "section, hourly post-training metrics per facet (needs --labels).",
    ),
    bias_baseline: str | None = typer.Option(
        None, "--bias-baseline", metavar="FILE", show_default=False,
        help="With --bias-config: the baseline's analysis.json; the section draws its values "
             "and lists the violations.",
    ),
    attribution_baseline: str | None = typer.Option(
        None, "--attribution-baseline", metavar="FILE", show_default=False,
        help="Clarify's SHAP analysis.json (as `captureq attribution monitor --baseline`): adds "
             "the feature-attribution section, top features and hourly NDCG.",
    ),
    fail_on_violations: bool = FailOnViolationsOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Write a self-contained HTML monitoring report: traffic, predictions, drift, quality;
    --format json prints {report, drift_found, headline}, csv one headline line per row."""
    from ..monitor.cli import FORMATS, pipe_safe
    from . import build_report

    if format not in FORMATS:
        _fail(CaptureqError(f"--format must be table, csv or json, got {format!r}"))
    if (reference_start is None) != (reference_end is None):
        _fail(CaptureqError("give both --reference-start and --reference-end (the labelled window "
                            "the estimated-quality section is calibrated on), or neither"))
    if bias_baseline is not None and bias_config is None:
        _fail(CaptureqError("--bias-baseline needs --bias-config (Clarify's analysis "
                            "configuration: label, facets)"))
    from ..monitor import Baseline

    try:
        base = Baseline.load(baseline)  # a wrong baseline fails before anything is read
    except CaptureqError as exc:
        _fail(f"--baseline {baseline}: {exc}")
    try:
        tree = _open(capture_uri, labels, start, end, None, variant, storage_option,
                      lateness=lateness,
                     input_type=input_type, output_type=output_type)
        load(tree, "reading", quiet)
        rep = build_report(
            tree,
            base,
            endpoint=endpoint or None,
            prediction=prediction,
            problem_type=problem_type,
            probability=probability,
            class_labels=class_labels.split(",") if class_labels else None,
            threshold=threshold,
            top_features=top_features,
            baseline_label=baseline,
            estimate_reference=(reference_start, reference_end) if reference_start else None,
            bias_config=bias_config,
            bias_baseline=bias_baseline,
            attribution_baseline=attribution_baseline,
        )
        path = rep.write(out)
    except CaptureqError as exc:
        _fail(exc)
    with pipe_safe():
        lines = rep.headline_text()
        if format == "json":
            doc = {"report": str(path), "drift_found": rep.drift_found, "headline": lines}
            sys.stdout.write(json.dumps(doc) + "\n")
        elif format == "csv":
            import csv

            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(["headline"])
            w.writerows([line] for line in lines)
        else:
            for line in lines:
                console.print("  " + line, highlight=False)
            console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    exit_on_violations(rep.monitor.violations.num_rows, fail_on_violations)
