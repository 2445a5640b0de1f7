"""``captureq report``: the monitoring report as one HTML file."""

from __future__ import annotations

import json
import sys

import typer

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
)
from ..errors import CaptureqError


@app.command()
def report(
    capture_uri: str,
    baseline: str = typer.Option(..., "--baseline", help="Folder with the baseline files."),
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    prediction: str | None = typer.Option(None, help="Output column, e.g. output_c0."),
    out: str = typer.Option("report.html", "--out", "-o", help="HTML file to write."),
    format: str = typer.Option(
        "table",
        "--format",
        "-f",
        help="table (the headline for people), json ({report, drift_found, headline}) or csv "
        "(one headline line per row).",
    ),
) -> None:
    """Write a self-contained HTML monitoring report: traffic, predictions, drift, quality."""
    from ..monitor.cli import FORMATS, pipe_safe  # here: monitor.cli imports captureq.cli
    from . import build_report

    if format not in FORMATS:
        _fail(CaptureqError(f"--format must be table, csv or json, got {format!r}"))
    try:
        tree = _open(capture_uri, labels, start, end, None, variant, storage_option)
        rep = build_report(
            tree,
            baseline,
            endpoint=endpoint or None,
            prediction=prediction,
            baseline_label=baseline,
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
