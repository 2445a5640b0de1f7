"""``captureq report``: the monitoring report as one HTML file.

Defined on this module's own ``app``; ``captureq/cli.py`` adds it to the ``captureq`` command.
"""

from __future__ import annotations

import typer

from ..cli_options import (
    EndOpt,
    EndpointOpt,
    LabelsOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    UriArg,
    VariantOpt,
    console,
    load,
    open_tree,
)

app = typer.Typer()


@app.command(
    epilog="\b\nExample:\n"
    "  captureq report demo-data/capture --baseline demo-data/baseline \\\n"
    "      --labels demo-data/groundtruth --endpoint churn-xgb -o report.html"
)
def report(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(..., "--baseline", metavar="DIR", help="Folder with the baseline files."),
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    storage_option: list[str] | None = StorageOpt,
    prediction: str | None = typer.Option(
        None, metavar="COLUMN", help="Output column, e.g. output_c0.", show_default=False
    ),
    out: str = typer.Option("report.html", "--out", "-o", metavar="FILE", help="HTML file to write."),
    quiet: bool = QuietOpt,
) -> None:
    """Write a self-contained HTML monitoring report: traffic, predictions, drift, quality."""
    from ..monitor import Baseline
    from . import build_report

    Baseline.load(baseline)  # a missing or malformed baseline fails before any reading
    tree = open_tree(capture_uri, labels, start, end, None, variant, storage_option)
    load(tree, "reading", quiet)
    rep = build_report(
        tree,
        baseline,
        endpoint=endpoint or None,
        prediction=prediction,
        baseline_label=baseline,
    )
    path = rep.write(out)
    for line in rep.headline_text():
        console().print("  " + line, highlight=False)
    console().print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)", highlight=False)
