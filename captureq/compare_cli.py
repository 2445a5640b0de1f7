"""``captureq compare``: a candidate's answers against the baseline's on the same requests (a
thin wrapper over :func:`captureq.compare.compare`)."""

from __future__ import annotations

import typer

from .cli_options import (
    ClassLabelsOpt,
    EndOpt,
    EndpointOpt,
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
    err_console,
    fail,
    fmt,
    open_tree,
    out,
    rich_table,
    show_model_type,
    write_result,
)
from .errors import CaptureqError
from .exit_codes import VIOLATIONS

app = typer.Typer()


@app.command(
    epilog="\b\nExample:\n"
    "  captureq compare capture/ --baseline AllTraffic --candidate xgb-v2 --labels groundtruth/ \\\n"
    "      --fail-if 'agreement<0.95' --fail-if 'accuracy_diff<-0.01'"
)
def compare(
    capture_uri: str = UriArg,
    baseline: str = typer.Option(..., "--baseline", metavar="VARIANT",
                                 help="The variant whose answers are the reference."),
    candidate: str = typer.Option(..., "--candidate", metavar="VARIANT",
                                  help="The variant compared with it (e.g. a replay's)."),
    candidate_tree: str | None = typer.Option(
        None, "--candidate-tree", metavar="URI", show_default=False,
        help="The candidate's capture tree, when it is not in CAPTURE_URI (a replay's output).",
    ),
    candidate_endpoint: str | None = typer.Option(
        None, "--candidate-endpoint", metavar="NAME", show_default=False,
        help="The candidate's endpoint in --candidate-tree (default: the baseline's).",
    ),
    labels: str | None = LabelsOpt,
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    problem_type: str | None = ProblemTypeOpt,
    prediction: str | None = PredictionOpt,
    probability: str | None = ProbabilityOpt,
    class_labels: str | None = ClassLabelsOpt,
    threshold: float = ThresholdOpt,
    tolerance: float = typer.Option(
        0.0, "--tolerance", metavar="D", help="Regression: records within D of each other agree."
    ),
    top: int = typer.Option(10, "--top", metavar="N", help="Keep the N records that differ most."),
    bootstrap: int = typer.Option(1000, "--bootstrap", metavar="N",
                                  help="Paired bootstrap resamples for the quality differences."),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of those intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    fail_if: list[str] | None = typer.Option(
        None, "--fail-if", metavar="METRIC<VALUE", show_default=False,
        help=f"Exit {VIOLATIONS} when the condition holds (repeatable; <, <=, >, >=), e.g. "
        "'agreement<0.95', 'accuracy_diff<-0.01', 'error_rate_candidate>0.01'.",
    ),
    html: str | None = typer.Option(
        None, "--html", metavar="PATH", show_default=False,
        help="Write the comparison as a self-contained HTML page.",
    ),
    format: Format = FormatOpt,
    storage_option: list[str] | None = StorageOpt,
    input_type: list[str] | None = InputTypeOpt,
    output_type: list[str] | None = OutputTypeOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Compare two variants' answers to the same requests: agreement, flips, score differences,
    where they disagree, quality on the same labels, latency and errors."""
    from .compare import compare as run
    from .compare import parse_fail_if

    try:
        for condition in fail_if or []:
            parse_fail_if(condition)  # a malformed condition fails before any read
        tree = open_tree(capture_uri, labels, start, end, endpoint, None, storage_option,
                         lateness=lateness, input_type=input_type, output_type=output_type)
        other = None
        if candidate_tree:
            other = open_tree(candidate_tree, None, start, end, None, None, storage_option,
                              lateness=lateness, input_type=input_type, output_type=output_type)
        result = run(
            tree, baseline=baseline, candidate=candidate, candidate_tree=other,
            candidate_endpoint=candidate_endpoint, problem_type=problem_type,
            prediction=prediction, probability=probability,
            class_labels=class_labels.split(",") if class_labels else None, threshold=threshold,
            tolerance=tolerance, top=top, bootstrap=bootstrap, confidence=confidence, seed=seed,
        )  # fmt: skip
        tripped, unchecked = result.check(list(fail_if or []))
        if html:
            from .report.compare import compare_report

            compare_report(result).write(html)
    except CaptureqError as exc:
        fail(exc)
    show_model_type(result.model_type, quiet)
    if format != Format.table:
        write_result(result.metrics, format)
    else:
        show(result)
    for note in result.notes:
        err_console().print(f"note: {note}", soft_wrap=True, highlight=False, markup=False)
    for line in unchecked:
        err_console().print(f"warning: --fail-if {line}: not checked", soft_wrap=True,
                            highlight=False, markup=False)  # fmt: skip
    if html:
        err_console().print(f"wrote {html}", soft_wrap=True, highlight=False, markup=False)
    if tripped:
        for line in tripped:
            err_console().print(f"fail: {line}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(VIOLATIONS)


def show(result) -> None:
    """The comparison for people: a few tables."""
    import pyarrow as pa
    import pyarrow.compute as pc

    s = result.summary
    head = [
        ("requests", f"{s['paired_requests']:,} paired of {s['requests_baseline']:,} "
                     f"({s['missing_requests']:,} missing, {s['ambiguous_requests']:,} ambiguous)"),
        ("records compared", f"{s['records_compared']:,}"),
        ("agreement", fmt(s["agreement"])),
        ("flip rate", fmt(s["flip_rate"])),
    ]  # fmt: skip
    out.print(rich_table(pa.table({"": [h[0] for h in head], "value": [h[1] for h in head]}),
                         title=f"{result.candidate} vs {result.baseline}"))
    for table, title in ((result.flips, "flip matrix (baseline × candidate)"),
                         (result.score_diff, "score difference (candidate − baseline)"),
                         (result.quality.filter(pc.is_valid(result.quality["baseline"])),
                          "quality on the same labelled records"),
                         (result.estimate, "quality estimated without labels"),
                         (result.latency, "latency and errors (paired requests)"),
                         (result.slices.slice(0, 10), "where they disagree"),
                         (result.top, "the records that differ most")):  # fmt: skip
        if table.num_rows:
            out.print(rich_table(table, title=title, cell=fmt, long=True))
