"""``captureq replay``: send captured requests to a candidate model (a thin wrapper over
:func:`captureq.replay.replay`)."""

from __future__ import annotations

import typer

from .cli_options import (
    EndOpt,
    EndpointOpt,
    LatenessOpt,
    OutStorageOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    UriArg,
    VariantOpt,
    _Display,
    show_progress,
    storage_options,
)
from .cli_options import fail as _fail
from .cli_options import out as console
from .errors import CaptureqError

app = typer.Typer()


@app.command(
    epilog="\b\nExample:\n"
    "  captureq replay demo-data/capture --to http://127.0.0.1:8080/invocations \\\n"
    "      --out demo-data/replay --endpoint churn-xgb --start 2026-01-02T08 --end 2026-01-02T09\n"
    "  captureq replay s3://bucket/capture --to sagemaker:churn-v2 --out s3://bucket/replay \\\n"
    "      --sample 10% --rate 20 --region eu-west-1"
)
def replay(
    capture_uri: str = UriArg,
    to: str = typer.Option(
        ..., "--to", metavar="TARGET", show_default=False,
        help="http://host:port/invocations, or sagemaker:ENDPOINT[:VARIANT].",
    ),
    out: str = typer.Option(
        ..., "--out", metavar="URI", show_default=False,
        help="Capture tree the candidate's answers go to (its variant: --name).",
    ),
    name: str | None = typer.Option(
        None, "--name", show_default=False,
        help="The candidate's name, the output's variant (default: from --to).",
    ),
    start: str | None = StartOpt,
    end: str | None = EndOpt,
    lateness: str | None = LatenessOpt,
    endpoint: list[str] | None = EndpointOpt,
    variant: list[str] | None = VariantOpt,
    sample: str | None = typer.Option(
        None, "--sample", metavar="FRACTION|COUNT", show_default=False,
        help="Replay a deterministic sample: a fraction (0.1, 10%) or a count (500).",
    ),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at most."),
    rate: float | None = typer.Option(
        None, "--rate", metavar="N", show_default=False, help="Requests per second at most."
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per attempt."),
    retries: int = typer.Option(
        3, "--retries", help="Retries of a request answered 5xx/429/throttling or cut off."
    ),
    retry_seconds: float = typer.Option(
        60.0, "--retry-seconds", help="No retry starts later than this after a request's first try."
    ),
    region: str | None = typer.Option(None, "--region", show_default=False, help="AWS region."),
    endpoint_url: str | None = typer.Option(
        None, "--endpoint-url", metavar="URL", show_default=False,
        help="SageMaker runtime endpoint URL (a local stand-in, a VPC endpoint).",
    ),
    profile: str | None = typer.Option(None, "--profile", show_default=False, help="AWS profile."),
    state: str | None = typer.Option(
        None, "--state", metavar="URI", show_default=False,
        help="Ledger and failure records (default: beside --out, OUT.replay).",
    ),
    storage_option: list[str] | None = StorageOpt,
    out_storage_option: list[str] | None = OutStorageOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Send the captured requests of a window to a candidate model and write its answers as a
    capture tree (same eventId/inferenceId, so labels join); a rerun sends only what is missing."""
    from .replay import RetryPolicy, parse_sample
    from .replay import replay as run

    display = None
    if show_progress(quiet):

        def columns():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            return (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[answers]} answers, {task.fields[failures]} failures"),
                    TimeElapsedColumn(), TimeRemainingColumn())

        display = _Display(columns, None, answers=0, failures=0)

    def progress(r) -> None:
        if display is not None:
            display.update(total=r.selected - r.already_done, completed=r.answers + r.failures,
                           answers=r.answers, failures=r.failures)

    try:
        result = run(
            capture_uri, to, out, name=name, start=start, end=end, endpoint=endpoint or None,
            variant=variant or None, lateness=lateness, sample=parse_sample(sample),
            concurrency=concurrency, rate=rate, timeout=timeout,
            retry=RetryPolicy(retries=retries, max_seconds=retry_seconds), region=region,
            endpoint_url=endpoint_url, profile=profile,
            storage_options=storage_options(storage_option),
            out_storage_options=storage_options(out_storage_option, "--out-storage-option"),
            state=state, progress=progress,
        )
    except CaptureqError as exc:
        _fail(exc)
    finally:
        if display is not None:
            display.close()
    console.print(f"replayed to {to} as {result.name}: {result.summary()}", highlight=False,
                  soft_wrap=True)
    if result.failures:
        console.print(f"failures: {result.out.rstrip('/')}.replay/failures/{result.name}/ "
                      "(or captureq.replay.read_failures)", highlight=False, soft_wrap=True)
