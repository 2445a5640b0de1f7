"""The ``captureq`` command: a thin layer over the Python API.

This module assembles the app: the core commands below, plus the commands that
``captureq/monitor/cli.py`` (baseline, monitor, quality) and ``captureq/report/cli.py`` (report)
define on typers of their own. Every subcommand module imports its shared options from
:mod:`captureq.cli_options`; none imports this module, so there is no import cycle. Heavy
libraries are imported inside the commands, so ``captureq --help`` starts in a fraction of a
second.

    captureq --help
    captureq query demo-data/capture "select endpoint, count(*) from captures group by 1"
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from . import __version__
from .cli_errors import debug, explain
from .cli_options import (
    CacheOpt,
    EndOpt,
    EndpointOpt,
    Format,
    FormatOpt,
    InputTypeOpt,
    LabelsOpt,
    LatenessOpt,
    OutputTypeOpt,
    OutStorageOpt,
    QuietOpt,
    StartOpt,
    StorageOpt,
    StrictOpt,
    UriArg,
    VariantOpt,
    console,
    err_console,
    fail,
    file_progress,
    load,
    open_tree,
    reading,
    report_unreadable,
    rich_table,
    storage_option_warnings,
    storage_options,
    write_result,
)

__all__ = ["app", "duckdb_cli", "main", "run"]


class CaptureqGroup(TyperGroup):
    """Runs a command; a user mistake becomes ``error: …`` on stderr and exit status 2."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            plain_values(param)
        return params

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            for param in command.get_params(ctx):  # --help included (created here, then kept)
                plain_values(param)
        return command

    def invoke(self, ctx):
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.showwarning = storage_option_warnings(warnings.showwarning)
                return super().invoke(ctx)
        except Exception as exc:
            if debug() or type(exc).__module__.split(".")[0] in ("click", "typer"):
                raise  # usage errors, --help, typer.Exit: click prints and exits as usual
            message = explain(exc)
            if message is None:
                err_console().print(
                    f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                    "This is a bug in captureq: rerun with CAPTUREQ_DEBUG=1 for the traceback "
                    "and report it.",
                    soft_wrap=True,
                    highlight=False,
                )
                raise typer.Exit(1) from None
            fail(message)


class _PlainValues:
    """Coerces an option's value the way typer does, for values that need nothing.

    Typer 0.2x coerces every option through a pydantic ``TypeAdapter``: importing pydantic and
    building the adapters costs 0.1-0.2 s at each start of ``captureq``. A value that already is
    what the annotation asks for (a string for ``str``, strings for ``list[str]``, one of an
    Enum's values, an int for ``int``, None) is taken as it is, and anything else goes to typer's
    own coercion: the same values and the same error messages.
    """

    def __init__(self, param):
        self._annotation = param.type_descriptor.annotation

    def coerce(self, value, param, ctx):
        if value is None:
            return () if param.multiple or param.nargs == -1 else None
        plain = _plain(self._annotation, value)
        if plain is not _NOT_PLAIN:
            return plain
        from typer._coercion import build_runtime_param

        param._runtime_param = build_runtime_param(param.type_descriptor)
        return param._runtime_param.coerce(value, param=param, ctx=ctx)


_NOT_PLAIN = object()


def _plain(annotation, value):
    """``value`` as ``annotation`` when it needs no conversion, else ``_NOT_PLAIN``."""
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return _NOT_PLAIN
        annotation, args = rest[0], typing.get_args(rest[0])
    if annotation is str and isinstance(value, str):
        return value
    if annotation in (int, bool) and type(value) is annotation:
        return value
    if typing.get_origin(annotation) is list and args == (str,) and isinstance(value, (list, tuple)) \
            and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        if isinstance(value, annotation):
            return value
        if isinstance(value, str) and value in annotation._value2member_map_:
            return annotation(value)
    return _NOT_PLAIN


def plain_values(param) -> None:
    """Let ``param`` skip typer's pydantic coercion for plain values (see :class:`_PlainValues`);
    a typer without that machinery is left as it is."""
    if getattr(param, "_runtime_param", "absent") is None and hasattr(param, "type_descriptor"):
        param._runtime_param = _PlainValues(param)


app = typer.Typer(
    cls=CaptureqGroup,
    help="Scan, decode and query SageMaker-style data-capture trees.",
    epilog="Run `captureq COMMAND --help` for a command's options and an example.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich's help formatter costs start-up time
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"captureq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Scan, decode and query SageMaker-style data-capture trees."""


def example(*lines: str) -> str:
    """An ``--help`` epilog with example command lines (kept as written by click)."""
    return "\b\nExample:\n" + "\n".join("  " + line for line in lines)


def _skipped_by_reason(skipped: list[tuple[str, str]]) -> Counter:
    return Counter(reason.split(":", 1)[0] for _, reason in skipped)


@app.command(
    epilog=example(
        "captureq scan demo-data/capture --labels demo-data/groundtruth",
        "captureq scan s3://bucket/capture --start 2026-01-01 --end 2026-01-02 -f json",
    )
)
def scan(
    uri: str = UriArg,
    labels: Optional[str] = LabelsOpt,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    lateness: Optional[str] = LatenessOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    input_type: Optional[list[str]] = InputTypeOpt,
    output_type: Optional[list[str]] = OutputTypeOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
    strict: bool = StrictOpt,
) -> None:
    """Partitions, file and record counts, time span, and what was quarantined, skipped or unreadable."""
    tree = open_tree(uri, labels, start, end, endpoint, variant, storage_option, strict, lateness=lateness,
                     input_type=input_type, output_type=output_type)
    files = tree.scan()
    tables = load(tree, "scanning", quiet)
    report_unreadable(tables.unreadable, left="left out of these counts")
    unmatched = tree.unmatched_labels() if tables.label_scan is not None else 0
    summary = tree.sql(
        "select endpoint, variant, count(*) as captures, min(inference_time) as first, "
        "max(inference_time) as last from captures group by all order by all"
    ).to_arrow()
    c = tables.counts
    skipped = _skipped_by_reason(files.skipped)
    hours = {(f.endpoint, f.variant, f.hour) for f in files.files}
    if format is Format.csv:
        write_result(summary, format)
        return
    if format is Format.json:
        import json
        from dataclasses import asdict

        doc = {
            "partitions": summary.to_pylist(),
            "hour_partitions": len(hours),
            "counts": asdict(c),
            "reconciles": c.reconciles,
            "skipped": dict(skipped),
            "quarantine_rows": tables.quarantine.num_rows,
            "unreadable": [asdict(u) for u in tables.unreadable],
        }
        if tables.label_scan is not None:
            doc["labels"] = {"rows": tables.labels.num_rows, "unmatched": unmatched,
                             **asdict(tables.label_counts)}
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        return
    from rich.table import Table

    out = console()
    out.print(rich_table(summary, title=f"captures in {uri}"))
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    grid = Table.grid(padding=(0, 2))
    for k, v in [
        (
            "files",
            f"{c.files} read, {c.files_failed} unreadable, {len(files.skipped)} skipped"
            + (f" ({why})" if why else ""),
        ),
        ("hour partitions", str(len(hours))),
        ("bytes", f"{c.bytes_read:,}"),
        (
            "lines",
            f"{c.lines_read:,} read = {c.rows:,} captures + {c.quarantined_lines:,} quarantined"
            + (f" + {c.outside_window:,} outside the window" if c.outside_window else "")
            + ("" if c.reconciles else "  [red](DOES NOT RECONCILE)[/]"),
        ),
        ("records", f"{c.input_records:,} input, {c.output_records:,} output"),
        (
            "quarantine",
            f"{tables.quarantine.num_rows:,} rows ({c.payloads_quarantined:,} payloads)",
        ),
    ]:
        grid.add_row(f"[bold]{k}[/]", v)
    if tables.label_scan is not None:
        lc = tables.label_counts
        grid.add_row(
            "[bold]labels[/]",
            f"{tables.labels.num_rows:,} from {lc.files} files "
            f"({lc.lines_read:,} lines, {lc.quarantined_lines:,} quarantined); "
            f"{unmatched:,} match no capture in this window",
        )
    if c.embedded_labels:
        grid.add_row(
            "[bold]embedded labels[/]",
            f"{c.embedded_labels:,} (groundTruthData inside capture lines)",
        )
    out.print(grid)
    for path, reason in files.skipped[:20]:
        out.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)
    for u in tables.unreadable[:20]:
        out.print(f"[red]unreadable[/] {u.path}: {u.reason}", soft_wrap=True, highlight=False)
    if tables.quarantine.num_rows:
        q = tables.quarantine.select(["stage", "source_file", "line_number", "reason"])
        out.print(rich_table(q, title="quarantine", limit=20))


@app.command(
    epilog=example(
        'captureq query demo-data/capture "select endpoint, count(*) from captures group by 1" \\',
        "    --start 2026-01-01T06 --end 2026-01-01T12 --endpoint 'churn-*' --format csv",
    )
)
def query(
    uri: str = UriArg,
    sql: str = typer.Argument(..., metavar="SQL", help="A query over the views.", show_default=False),
    labels: Optional[str] = LabelsOpt,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    lateness: Optional[str] = LatenessOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    input_type: Optional[list[str]] = InputTypeOpt,
    output_type: Optional[list[str]] = OutputTypeOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Read the JSON Lines; neither use nor fill the Parquet cache."
    ),
    cache_max_bytes: Optional[int] = typer.Option(
        None, "--cache-max-bytes", help="Bound on all tree caches (least recently used out)."
    ),
    allow_external_access: bool = typer.Option(
        False,
        "--allow-external-access",
        help="Let the SQL read and write files and the network (COPY … TO, read_csv, ATTACH…); "
        "off by default: the views are in memory.",
    ),
    strict: bool = StrictOpt,
) -> None:
    """Run SQL over the views: captures, inputs, outputs, labels, quarantine, predictions."""
    tree = open_tree(uri, labels, start, end, endpoint, variant, storage_option, strict, lateness=lateness,
                     input_type=input_type, output_type=output_type)
    tree.cache = False if no_cache else None
    tree.cache_max_bytes = cache_max_bytes
    tree.cache_fill_at_exit = True  # the answer first: a cache fill starts (detached) at exit
    with reading(tree, sql, "reading", quiet):  # a display of what the statement reads
        result = tree.sql(sql, allow_external_access=allow_external_access)
    write_result(result.to_arrow(), format)
    sys.stdout.flush()  # the answer is out; a cache refresh may still finish before exit
    report_unreadable(result.unreadable)


@app.command(
    epilog=example(
        "captureq schema demo-data/capture",
        "captureq schema demo-data/capture --endpoint churn-xgb --format json",
    )
)
def schema(
    uri: str = UriArg,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    lateness: Optional[str] = LatenessOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    input_type: Optional[list[str]] = InputTypeOpt,
    output_type: Optional[list[str]] = OutputTypeOpt,
    format: Format = FormatOpt,
    quiet: bool = QuietOpt,
    strict: bool = StrictOpt,
) -> None:
    """Each endpoint's input and output columns: type, JSON key path, and history (the hour each
    column first held a value and each hour its values widened it)."""
    from .plan import Needs
    from .schema_history import schema_history

    tree = open_tree(uri, None, start, end, endpoint, variant, storage_option, strict, lateness=lateness,
                     input_type=input_type, output_type=output_type)
    tree.cache = False  # the history is told from the records' own hours
    with reading(tree, "select * from inputs, outputs", "reading", quiet):
        columns = schema_history(tree)
    report_unreadable(tree.load(Needs(frozenset({"inputs", "outputs"}))).unreadable)
    import json

    if format is Format.json:
        sys.stdout.write(json.dumps([c.as_dict() for c in columns]) + "\n")
        return
    import pyarrow as pa

    def hour(t):
        return t.strftime("%Y-%m-%dT%H") if t else ""

    def story(c):
        return "; ".join(f"{hour(h.hour)} {h.change} " + (f"{h.from_} -> " if h.from_ else "") + h.to
                         for h in c.history)

    table = pa.table({
        "endpoint": [c.endpoint for c in columns], "side": [c.side for c in columns],
        "column": [c.column for c in columns], "type": [c.type for c in columns],
        "key_path": [json.dumps(c.key_path) if c.key_path else "" for c in columns],
        "first_seen": [hour(c.first_seen) for c in columns], "history": [story(c) for c in columns],
    })
    write_result(table, format)


class Engine(str, Enum):
    local = "local"
    spark = "spark"


ENGINE_HELP = (
    "local, or spark: runs the export on Apache Spark; needs pip install 'captureq[spark]' "
    "and Java 17+ (java on PATH or JAVA_HOME)."
)


@app.command(
    epilog=example(
        "captureq export demo-data/capture demo-data/parquet --labels demo-data/groundtruth",
        "captureq export demo-data/capture demo-data/parquet --dry-run",
        "captureq export s3://bucket/capture s3://bucket/parquet --engine spark",
    )
)
def export(
    uri: str = UriArg,
    out: str = typer.Argument(..., metavar="OUT", help="Export folder or URL.", show_default=False),
    labels: Optional[str] = LabelsOpt,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    lateness: Optional[str] = LatenessOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    input_type: Optional[list[str]] = InputTypeOpt,
    output_type: Optional[list[str]] = OutputTypeOpt,
    out_storage_option: Optional[list[str]] = OutStorageOpt,
    engine: Engine = typer.Option(Engine.local, "--engine", help=ENGINE_HELP),
    master: Optional[str] = typer.Option(
        None, "--master", metavar="URL", help="Spark master URL (default: spark-submit's, else local[*]).",
        show_default=False,
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the new, changed and partly exported source files; export nothing."
    ),
    break_lease: bool = typer.Option(
        False, "--break-lease",
        help="Take OUT's writer lock or lease from an export that still holds it (one that hangs "
        "or ran on a lost machine; it stops before its next commit). A dead export on this host "
        "is taken over without it; see also CAPTUREQ_LEASE_SECONDS.",
    ),
    quiet: bool = QuietOpt,
    strict: bool = StrictOpt,
) -> None:
    """Export to hive-partitioned Parquet under OUT; later runs add only new and changed files."""
    tree = open_tree(uri, labels, start, end, endpoint, variant, storage_option, strict, lateness=lateness,
                     input_type=input_type, output_type=output_type)
    out_options = storage_options(out_storage_option, "--out-storage-option")
    if dry_run:
        from .export import plan

        p = plan(tree, out, out_storage_options=out_options)
        for rel in p.changed + p.label_changed:
            console().print(f"changed  {rel}", soft_wrap=True, highlight=False)
        for rel in p.new + p.label_new:
            console().print(f"new      {rel}", soft_wrap=True, highlight=False)
        for rel in p.partial:
            console().print(f"partial  {rel}", soft_wrap=True, highlight=False)
        console().print(
            f"would export {len(p.new)} new and {len(p.changed)} changed files "
            + (f"(and the rest of {len(p.partial)} partly exported) " if p.partial else "")
            + f"({len(p.label_new)} new, {len(p.label_changed)} changed label files); "
            f"{p.done} already done"
        )
        return
    total = len(tree.scan().files)
    with file_progress("exporting", total, quiet) as advance:
        if engine is Engine.spark:
            from . import spark as cqs

            summary = cqs.export_parquet(
                cqs.session(master), uri, out, labels, start=start, end=end,
                endpoint=endpoint or None, variant=variant or None, lateness=lateness,
                storage_options=storage_options(storage_option),
                out_storage_options=out_options, options=tree.options,
                progress=advance, break_lease=break_lease,
            )
        else:
            summary = tree.export(out, out_storage_options=out_options, progress=advance,
                                  break_lease=break_lease)
    if summary.broken_lease:
        report_broken_lease(summary.broken_lease)
    rows = ", ".join(f"{k} {v:,}" for k, v in summary.rows.items())
    console().print(
        f"exported {summary.files_exported - summary.files_changed} new files "
        f"({summary.files_skipped} already done, {summary.label_files_exported} label files) "
        f"in {summary.seconds:.2f}s: {rows}"
    )
    if summary.files_changed:
        console().print(
            f"{summary.files_changed} changed files re-exported (their earlier rows replaced)"
        )
    report_unreadable(summary.unreadable, left="not exported (the next run tries again)")
    console().print(f"manifest: {out.rstrip('/')}/_captureq/manifest.json", highlight=False)
    if summary.failed:  # the other endpoints are committed; these files wait for the next run
        for endpoint, reason in summary.failed.items():
            from rich.markup import escape

            err_console().print(f"[bold red]error:[/] endpoint {escape(endpoint)} failed: {escape(reason)}",
                                soft_wrap=True, highlight=False)
        err_console().print(
            f"{len(summary.failed)} endpoint(s) not exported (the others are committed); rerun the "
            "export to retry them, with CAPTUREQ_DEBUG=1 for the traceback",
            soft_wrap=True, highlight=False)
        raise typer.Exit(1)


def report_broken_lease(holder: dict) -> None:
    """One line on stderr: whose lock or lease the export took over, and why."""
    from datetime import datetime, timezone

    from rich.markup import escape

    since = ""
    if isinstance(holder.get("acquired"), (int, float)):
        since = f", held since {datetime.fromtimestamp(holder['acquired'], timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
    verb = "broke" if "break-lease" in str(holder.get("why")) else "took over"
    err_console().print(
        f"[yellow]warning:[/] {verb} the lease of {escape(str(holder.get('host')))} pid "
        f"{holder.get('pid')}{since} ({escape(str(holder.get('why')))})", soft_wrap=True, highlight=False)


def _cache_dir(uri: str, labels: str | None, types: tuple = ()) -> Path:
    """The export the shell reads for ``uri``: one per tree, labels and declared types."""
    import hashlib

    base = Path(os.environ.get("CAPTUREQ_CACHE", Path.home() / ".cache" / "captureq"))
    key = "\0".join([uri, labels or "", *types])
    return base / hashlib.sha1(key.encode()).hexdigest()[:16]


def _types_key(input_type: list[str] | None, output_type: list[str] | None) -> tuple:
    return (*(f"input:{t}" for t in input_type or ()), *(f"output:{t}" for t in output_type or ()))


def _prepare_sql(
    uri: str,
    labels: str | None,
    cache: str | None,
    options: list[str] | None = None,
    out_options: list[str] | None = None,
    input_type: list[str] | None = None,
    output_type: list[str] | None = None,
) -> str:
    """SQL defining the views for the duckdb shell, over a (refreshed) Parquet export."""
    from .export import META, destination_options, shell_sql

    if Path(uri, META, "manifest.json").exists():
        return shell_sql(uri)  # already an export
    out = cache or str(_cache_dir(uri, labels, _types_key(input_type, output_type)))
    tree = open_tree(uri, labels, options=options, input_type=input_type, output_type=output_type)
    out_so = destination_options(tree, out, storage_options(out_options, "--out-storage-option"))
    tree.export(out, out_storage_options=out_so)
    return shell_sql(out, storage_options=out_so)


@app.command(
    "sql",
    epilog=example(
        "captureq sql demo-data/capture --labels demo-data/groundtruth > views.sql",
        ".venv/bin/duckdb -init views.sql",
    ),
)
def sql_cmd(
    uri: str = UriArg,
    labels: Optional[str] = LabelsOpt,
    cache: Optional[str] = CacheOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    input_type: Optional[list[str]] = InputTypeOpt,
    output_type: Optional[list[str]] = OutputTypeOpt,
    out_storage_option: Optional[list[str]] = OutStorageOpt,
) -> None:
    """Print SQL that defines the views, for `duckdb -init FILE` or piping into duckdb."""
    sys.stdout.write(_prepare_sql(uri, labels, cache, storage_option, out_storage_option, input_type, output_type))


def duckdb_cli() -> str | None:
    """The duckdb shell: the one beside this Python (the virtualenv's), else on PATH."""
    import shutil

    local = Path(sys.executable).parent / "duckdb"
    return str(local) if local.exists() else shutil.which("duckdb")


@app.command(epilog=example("captureq shell demo-data/capture --labels demo-data/groundtruth"))
def shell(
    uri: str = UriArg,
    labels: Optional[str] = LabelsOpt,
    cache: Optional[str] = CacheOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    input_type: Optional[list[str]] = InputTypeOpt,
    output_type: Optional[list[str]] = OutputTypeOpt,
    out_storage_option: Optional[list[str]] = OutStorageOpt,
) -> None:
    """Open the duckdb shell with every view defined."""
    exe = duckdb_cli()
    if exe is None:
        fail("the duckdb CLI is not installed; `pip install duckdb-cli` (make install does it)")
    script = _prepare_sql(uri, labels, cache, storage_option, out_storage_option, input_type, output_type)
    init = _cache_dir(uri, labels, _types_key(input_type, output_type)).with_suffix(".sql")
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(script)
    os.execv(exe, [exe, "-init", str(init)])


@app.command(
    epilog=example(
        "captureq generate sample/capture --labels sample/groundtruth --hours 24",
        "captureq generate sample/capture --drift-feature _c3 --drift-from-hour 30 --force",
    )
)
def generate(
    out: str = typer.Argument(..., metavar="OUT", help="Folder to write the tree into.",
                              show_default=False),
    labels: Optional[str] = typer.Option(
        None, metavar="DIR", help="Also write ground truth here.", show_default=False
    ),
    hours: int = typer.Option(48, metavar="N", help="Hours of traffic, from 2026-01-01T00 UTC."),
    requests_per_hour: int = typer.Option(
        50, metavar="N",
        help="Requests per hour per endpoint: each of the sample's endpoints gets N every hour.",
    ),
    seed: int = typer.Option(0, metavar="N", help="Random seed: the same seed writes the same tree."),
    drift_feature: Optional[str] = typer.Option(
        None, metavar="NAME", help="e.g. _c3: shift this churn feature…", show_default=False
    ),
    drift_from_hour: Optional[int] = typer.Option(
        None, metavar="N", help="…from this hour index on.", show_default=False
    ),
    force: bool = typer.Option(
        False, "--force", help="Write even when OUT (or --labels) already holds files."
    ),
) -> None:
    """Write a realistic sample capture tree (several endpoints, two variants, mixed encodings)."""
    for folder in (out, labels):
        path = Path(folder) if folder and "://" not in folder else None
        if path is None:
            continue
        if path.exists() and not path.is_dir():
            fail(f"{folder} is a file; give a folder to write the tree into")
        if not force and path.is_dir() and any(path.iterdir()):
            fail(f"{folder} is not empty; choose an empty folder or add --force to write into it")
    from .generate import generate_tree

    summary = generate_tree(
        out,
        hours=hours,
        requests_per_hour=requests_per_hour,
        seed=seed,
        labels_out=labels,
        drift_feature=drift_feature,
        drift_from_hour=drift_from_hour,
    )
    print_generated(summary)


def print_generated(summary) -> None:
    """A few readable lines about what ``generate_tree`` wrote."""
    out = console()
    out.print(
        f"wrote {summary.captures:,} captures ({summary.input_records:,} input / "
        f"{summary.output_records:,} output records) in {summary.files_written} files under "
        f"{summary.out}",
        highlight=False,
    )
    out.print(
        f"hours {summary.start:%Y-%m-%dT%H}Z to {summary.end:%Y-%m-%dT%H}Z (end exclusive)",
        highlight=False,
    )
    for name, e in sorted(summary.endpoints.items()):
        variants = ", ".join(f"{v} {n:,}" for v, n in sorted(e.variants.items()))
        labelled = f", {e.labels:,} labelled" if e.labels else ""
        out.print(f"  {name}: {e.captures:,} captures ({variants}){labelled}", highlight=False)
    if summary.labels_out:
        out.print(
            f"ground truth: {summary.labels_written:,} lines in {summary.label_files_written} "
            f"files under {summary.labels_out}",
            highlight=False,
        )
    if summary.drift_feature:
        out.print(
            f"drift planted in {summary.drift_feature} from {summary.drift_start:%Y-%m-%d %H:%M} UTC",
            highlight=False,
        )


def _register_subcommands() -> None:
    from . import compare_cli, replay_cli
    from .monitor import attribution_cli, bias_cli, estimate_cli, job_cli
    from .monitor import cli as monitor_cli
    from .report import cli as report_cli

    for module in (monitor_cli, estimate_cli, job_cli, report_cli, replay_cli, compare_cli):
        app.add_typer(module.app)
    app.add_typer(attribution_cli.app)  # the `captureq attribution …` group
    app.add_typer(bias_cli.app, name="bias")  # the `captureq bias …` group


_register_subcommands()


def main() -> None:
    """The ``captureq`` command, as a function (returns by raising SystemExit, as click does)."""
    app()


def run() -> None:
    """The ``captureq`` console script: :func:`main`, then an exit without the interpreter's
    teardown (~0.3 s once Arrow, DuckDB and polars are loaded, and nothing a command needs)
    once every exit duty is done: atexit handlers (the cache fill's start) run, output flushed,
    no background thread left. Otherwise the normal exit."""
    import atexit
    import threading

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int):
        if code is not None:
            sys.stderr.write(f"{code}\n")
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.current_thread()):
        sys.exit(code)  # a thread still has work (a cache fill that needs no process): wait
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader left (| head): nothing more to say
            pass
        except OSError:
            sys.exit(code)  # let the normal exit report it
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
