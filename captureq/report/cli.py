"""``captureq report``: the monitoring report as one HTML file."""

from __future__ import annotations

import typer

from ..cli import EndOpt, EndpointOpt, LabelsOpt, StartOpt, _fail, _open, app, console
from ..errors import CaptureqError


@app.command()
def report(
    capture_uri: str,
    baseline: str = typer.Option(..., "--baseline", help="Folder with the baseline files."),
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    prediction: str | None = typer.Option(None, help="Output column, e.g. output_c0."),
    out: str = typer.Option("report.html", "--out", "-o", help="HTML file to write."),
) -> None:
    """Write a self-contained HTML monitoring report: traffic, predictions, drift, quality."""
    from . import build_report

    try:
        tree = _open(capture_uri, labels, start, end)
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
    for line in rep.headline_text():
        console.print("  " + line, highlight=False)
    console.print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
