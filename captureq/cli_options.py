"""What every ``captureq`` subcommand shares: option definitions, opening a tree, printing.

Subcommand modules (``captureq/cli.py``, ``captureq/monitor/cli.py``, ``captureq/report/cli.py``)
import this module and define their commands on a ``typer.Typer`` of their own; ``captureq/cli.py``
assembles them into one app. Nothing here imports a subcommand module or the app, and nothing
heavy (pyarrow, duckdb, polars, rich) is imported until a command needs it, so that
``captureq --help`` starts fast.

>>> storage_options(["anon=true", "client_kwargs.endpoint_url=http://localhost:9000"])
{'anon': True, 'client_kwargs': {'endpoint_url': 'http://localhost:9000'}}
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING

import typer

from . import exit_codes
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from .api import CaptureTree
    from .monitor.problem import ModelType


class Format(str, Enum):
    """How a command prints a table."""

    table = "table"
    csv = "csv"
    json = "json"


# -- the options every command that reads a tree takes, with the same names ------------------
UriArg = typer.Argument(
    ..., metavar="URI", help="Capture tree: a folder, s3://bucket/prefix or any fsspec URL.",
    show_default=False,
)
LabelsOpt = typer.Option(
    None, "--labels", metavar="URI", help="Ground-truth tree (groundTruthData records).", show_default=False
)
StartOpt = typer.Option(
    None, "--start", metavar="TIME", help="First UTC hour, ISO 8601 (e.g. 2026-01-01T05).", show_default=False
)
EndOpt = typer.Option(
    None, "--end", metavar="TIME", help="End, exclusive, ISO 8601 UTC (e.g. 2026-01-02).", show_default=False
)
LatenessOpt = typer.Option(
    None, "--lateness", metavar="DURATION", show_default=False,
    help="How far an object's hour folder may lie from its records' times, either way: the "
    "window lists the folders [start - lateness, end + lateness) (e.g. 2h, 90m; default 1h, "
    "or CAPTUREQ_LATENESS).",
)
EndpointOpt = typer.Option(
    None, "--endpoint", metavar="NAME", help="Endpoint name or pattern, e.g. 'churn-*' (repeatable).",
    show_default=False,
)
VariantOpt = typer.Option(
    None, "--variant", metavar="NAME", help="Variant name or pattern, e.g. Canary (repeatable).",
    show_default=False,
)
StorageOpt = typer.Option(
    None,
    "--storage-option",
    metavar="KEY=VALUE",
    help="fsspec storage option (repeatable); dotted keys nest, true/false/numbers are parsed, "
    "e.g. --storage-option client_kwargs.endpoint_url=http://localhost:9000",
    show_default=False,
)
OutStorageOpt = typer.Option(
    None,
    "--out-storage-option",
    metavar="KEY=VALUE",
    help="fsspec storage option of the destination (repeatable, dotted keys nest); by default "
    "the --storage-option values when source and destination use the same protocol",
    show_default=False,
)
FormatOpt = typer.Option(
    Format.table, "--format", "-f", metavar="table|csv|json",
    help="table (for people), or csv (with a header) / json: one table for programs on stdout.",
)
QuietOpt = typer.Option(
    False, "--quiet", "-q", help="No progress display on stderr (it is off when stderr is piped)."
)
StrictOpt = typer.Option(
    False, "--strict",
    help="Fail (exit 2) when an object cannot be read, instead of answering without it.",
)
InputTypeOpt = typer.Option(
    None, "--input-type", metavar="COLUMN=TYPE", show_default=False,
    help="Declare an input column's type (repeatable): VARCHAR, BIGINT, DOUBLE or BOOL; "
    "wins over inference, e.g. --input-type zip=VARCHAR keeps 007 as written.",
)
OutputTypeOpt = typer.Option(
    None, "--output-type", metavar="COLUMN=TYPE", show_default=False,
    help="Declare an output column's type (repeatable), as --input-type does for inputs.",
)
# -- what the model is: the commands that measure model quality ------------------------------
ProblemTypeOpt = typer.Option(
    None, "--problem-type", metavar="TYPE", show_default=False,
    help="BinaryClassification, MulticlassClassification or Regression (inferred from the "
    "outputs and the labels).",
)
PredictionOpt = typer.Option(
    None, "--prediction", metavar="COLUMN", show_default=False,
    help="Predicted label or score column, e.g. output_predicted_label (inferred).",
)
ProbabilityOpt = typer.Option(
    None, "--probability", metavar="COLUMNS", show_default=False,
    help="Binary: the score column; multiclass: the probability columns, comma-separated, "
    "whose argmax is the prediction (e.g. output_c0,output_c1,output_c2).",
)
ClassLabelsOpt = typer.Option(
    None, "--class-labels", metavar="A,B,...", show_default=False,
    help="The classes of the probability columns, in order (e.g. bird,cat,dog).",
)
ThresholdOpt = typer.Option(
    0.5, "--threshold", metavar="P", help="Binary classification: positive when score >= P."
)
# -- exit status for schedulers ---------------------------------------------------------------
FailOnViolationsOpt = typer.Option(
    False, "--fail-on-violations",
    help=f"Exit {exit_codes.VIOLATIONS} when a constraint violation is found (in the window or any "
    "hour/day checked); errors exit 2.",
)
CacheOpt = typer.Option(
    None, "--cache", metavar="DIR", show_default=False,
    help="Where to keep the Parquet the views read (a folder, or any fsspec URL).",
)


def storage_options(items: list[str] | None, flag: str = "--storage-option") -> dict | None:
    """``["anon=true", "client_kwargs.endpoint_url=http://h:9000"]`` as a storage_options dict.

    >>> storage_options(["anon=true", "max_concurrency=4", "client_kwargs.endpoint_url=http://h"])
    {'anon': True, 'max_concurrency': 4, 'client_kwargs': {'endpoint_url': 'http://h'}}
    """
    if not items:
        return None
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        value: object = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif re.fullmatch(r"[+-]?\d+", text):
            value = int(text)
        elif re.fullmatch(r"[+-]?\d*\.\d+", text):
            value = float(text)
        *parents, leaf = key.strip().split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{flag} {item!r}: {name!r} is already set to a value")
        node[leaf] = value
    return out


def declared_types(items: list[str] | None, flag: str) -> dict | None:
    """``["zip=VARCHAR", "age=bigint"]`` as ``{"zip": "VARCHAR", "age": "BIGINT"}``.

    >>> declared_types(["zip=VARCHAR", "age=bigint"], "--input-type")
    {'zip': 'VARCHAR', 'age': 'BIGINT'}
    """
    if not items:
        return None
    out = {}
    for item in items:
        column, sep, name = item.rpartition("=")
        if not sep or not column or not name.strip():
            raise ConfigError(f"{flag} takes COLUMN=TYPE (e.g. {flag} zip=VARCHAR), got {item!r}")
        out[column] = name.strip().upper()
    return out


def decode_options(input_type: list[str] | None = None, output_type: list[str] | None = None):
    """The :class:`~captureq.options.DecodeOptions` of ``--input-type`` / ``--output-type``, or
    None when neither is given."""
    from .options import DecodeOptions

    inputs = declared_types(input_type, "--input-type")
    outputs = declared_types(output_type, "--output-type")
    if not inputs and not outputs:
        return None
    return DecodeOptions(input_types=inputs, output_types=outputs)


def open_tree(
    uri: str,
    labels: str | None = None,
    start: str | None = None,
    end: str | None = None,
    endpoint: list[str] | None = None,
    variant: list[str] | None = None,
    options: list[str] | None = None,
    strict: bool = False,
    lateness: str | None = None,
    input_type: list[str] | None = None,
    output_type: list[str] | None = None,
) -> CaptureTree:
    """``captureq.open`` with the shared options as the CLI receives them. An ``--endpoint`` /
    ``--variant`` filter that matches nothing is said on stderr, with what the tree has.
    Objects that cannot be read are said by the command (:func:`report_unreadable`), not as
    Python warnings."""
    import warnings

    from . import api
    from .errors import FilterWarning, UnreadableWarning

    warnings.filterwarnings("ignore", category=UnreadableWarning)

    tree = api.open(
        uri,
        labels=labels,
        start=start,
        end=end,
        endpoint=endpoint or None,
        variant=variant or None,
        lateness=lateness,
        storage_options=storage_options(options),
        options=decode_options(input_type, output_type),
        strict=strict,
    )
    if labels:
        tree.scan_labels()  # a wrong --labels fails before any work starts
    if endpoint or variant:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FilterWarning)  # printed here instead, once
            messages = tree.scan().warnings
        for message in messages:
            err_console().print(f"[yellow]warning:[/] {message}", soft_wrap=True, highlight=False)
    return tree


def storage_option_warnings(show):
    """A ``warnings.showwarning`` that says a ``StorageOptionWarning`` as one line on stderr
    naming the CLI option that was given in vain (``--storage-option`` for the source,
    ``--out-storage-option`` for the destination), and passes other warnings to ``show``."""
    from .errors import OPTIONS_OF_SIDE, StorageOptionWarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not isinstance(message, StorageOptionWarning):
            return show(message, category, filename, lineno, file, line)
        from rich.markup import escape

        flag = OPTIONS_OF_SIDE.get(message.side, OPTIONS_OF_SIDE["source"])[0]
        given = ", ".join(f"{flag} {key}" for key in message.keys)
        err_console().print(
            f"[yellow]warning:[/] {escape(given)} does not apply to the local {message.side} "
            f"{escape(message.uri)} and is ignored (S3 options are for s3:// URIs)",
            soft_wrap=True, highlight=False)
        return None

    return showwarning


# -- output ---------------------------------------------------------------------------------
_consoles: dict[str, object] = {}


def console():
    """The rich console on stdout (created on first use: importing rich costs start-up time)."""
    if "out" not in _consoles:
        from rich.console import Console

        _consoles["out"] = Console()
    return _consoles["out"]


def err_console():
    """The rich console on stderr."""
    if "err" not in _consoles:
        from rich.console import Console

        _consoles["err"] = Console(stderr=True)
    return _consoles["err"]


class LazyConsole:
    """Stands for a rich Console, created on first use (``out.print(...)``, ``out.width``)."""

    def __init__(self, make):
        self._make = make

    def __getattr__(self, name):
        return getattr(self._make(), name)


out = LazyConsole(console)  # stdout, for modules that print through a console object
err = LazyConsole(err_console)


def fail(message: str | BaseException) -> None:
    """Print ``error: message`` on stderr and exit with status 2 (a user mistake)."""
    err_console().print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(2)


def exit_on_violations(found: int, fail_on_violations: bool) -> None:
    """With ``--fail-on-violations``, say how many violations were found on stderr and exit
    with status 3 when there are any."""
    if fail_on_violations and found:
        err_console().print(
            f"{found} constraint violation(s) found: exit status {exit_codes.VIOLATIONS} "
            "(--fail-on-violations)", soft_wrap=True, highlight=False, markup=False,
        )
        raise typer.Exit(exit_codes.VIOLATIONS)


def show_model_type(model_type: ModelType | None, quiet: bool = False) -> None:
    """The problem type and prediction a quality command chose, on stderr, with how to change
    them."""
    if model_type is None or quiet:
        return
    err_console().print(
        f"model: {model_type.describe()}; set with --problem-type, --prediction, --probability, "
        "--class-labels, --threshold", soft_wrap=True, highlight=False, markup=False,
    )


def report_unreadable(unreadable: list, left: str = "left out of the answer") -> None:
    """``warning: N objects could not be read …`` on stderr (the first few, with reasons)."""
    if not unreadable:
        return
    from .read import unreadable_summary

    err_console().print(f"[yellow]warning:[/] {unreadable_summary(unreadable, left=left)}",
                        soft_wrap=True, highlight=False)


def fmt(v) -> str:
    """A cell as text: floats to 3 significant digits, times to the minute."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if hasattr(v, "strftime"):
        return v.strftime("%Y-%m-%d %H:%M")
    return str(v)


def rich_table(
    table: pa.Table, title: str | None = None, limit: int = 50, cell=None, long: bool = False
):
    """A rich Table of the first ``limit`` rows (the caption says how many are not shown).

    With ``long``, a table of more than two columns too wide for the terminal is shown long
    instead (a block of ``column  value`` lines per row, as psql's expanded display)."""
    from rich.table import Table

    cell = cell or (lambda v: "" if v is None else str(v))
    shown = table.slice(0, limit).to_pylist()
    if long and table.num_columns > 2:
        widths = [
            max([len(name)] + [len(cell(r[name])) for r in shown]) for name in table.column_names
        ]
        if sum(w + 3 for w in widths) + 1 > out.width:
            return _long_table(table.column_names, shown, table.num_rows, title, limit, cell)
    result = Table(title=title, show_lines=False)
    for name in table.column_names:
        result.add_column(name, overflow="fold")
    for row in shown:
        result.add_row(*(cell(v) for v in row.values()))
    if table.num_rows > limit:
        result.caption = f"{limit} of {table.num_rows} rows shown"
    return result


def _long_table(names: list[str], shown: list[dict], total: int, title, limit: int, cell):
    """Rows as ``column  value`` blocks (psql's expanded display): readable at any width."""
    from rich.table import Table

    result = Table(title=f"{title} (one block per row)", show_header=False)
    result.add_column("column", style="bold", no_wrap=True)
    result.add_column("value", overflow="fold")
    for row in shown:
        for i, name in enumerate(names):
            result.add_row(name, cell(row[name]), end_section=i == len(names) - 1)
    if total > limit:
        result.caption = f"{limit} of {total} rows shown"
    return result


def write_result(
    table: pa.Table, format: Format | str, title: str | None = None, limit: int = 1000, cell=None
) -> None:
    """Print ``table`` as a rich table, CSV with a header, or a JSON list of objects
    (:mod:`captureq.output`: streamed to stdout, without a Python loop per row)."""
    format = Format(format)
    if format is Format.table:
        console().print(rich_table(table, title=title, limit=limit, cell=cell))
        return
    from . import output

    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # a text-only stdout (some test harnesses): the same bytes, decoded
        stream = _TextSink(sys.stdout)
    with pipe_safe():
        sys.stdout.flush()  # whatever was printed before goes first
        (output.write_csv if format is Format.csv else output.write_json)(table, stream)
        stream.flush()


@contextmanager
def pipe_safe() -> Iterator[None]:
    """A reader that stops early (``| head``) ends the output quietly, with exit code 0."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # stdout is gone: point it at /dev/null so the interpreter's last flush cannot fail
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


class _TextSink:
    """A binary stream over a text stream that has no ``.buffer``."""

    def __init__(self, text):
        self._text = text

    def write(self, data) -> None:
        self._text.write(bytes(data).decode())

    def flush(self) -> None:
        self._text.flush()


def say(text: str, format: Format | str = Format.table) -> None:
    """A line for people: on stdout with ``--format table``, on stderr otherwise (so that the
    CSV or JSON on stdout stays machine-readable)."""
    target = console() if Format(format) is Format.table else err_console()
    target.print(text, soft_wrap=True)


# -- progress -------------------------------------------------------------------------------
def show_progress(quiet: bool) -> bool:
    """Progress is drawn on stderr only when it is a terminal and ``--quiet`` was not given."""
    return not quiet and sys.stderr.isatty()


def _progress_after() -> float:
    """Seconds of work before a progress display appears (short jobs show none);
    ``CAPTUREQ_PROGRESS_AFTER`` overrides the default of one second."""
    import os

    try:
        return float(os.environ.get("CAPTUREQ_PROGRESS_AFTER", "1"))
    except ValueError:
        return 1.0


class _Display:
    """A rich progress display that appears only once the work has taken a while. rich is
    imported at the first update (a batch is in), not before the first byte is read."""

    def __init__(self, columns: Callable[[], tuple], total, **fields):
        import time

        self._clock = time.monotonic
        self._started_at = self._clock()
        self._after = _progress_after()
        self._columns, self._total, self._fields = columns, total, fields
        self._bar = None
        self._live = False

    def update(self, **kw) -> None:
        if self._bar is None:
            from rich.progress import Progress

            self._bar = Progress(*self._columns(), console=err_console(), transient=True,
                                 get_time=self._clock)
            self._task = self._bar.add_task("", total=self._total or None, **self._fields)
            for task in self._bar.tasks:  # the work started with the display, not with rich
                task.start_time = self._started_at
        self._bar.update(self._task, **kw)
        if not self._live and self._clock() - self._started_at >= self._after:
            self._bar.start()
            self._live = True

    def close(self) -> None:
        if self._live:
            self._bar.stop()


@contextmanager
def progress(
    what: str, files: int, total_bytes: int | None, quiet: bool = False
) -> Iterator[Callable]:
    """A progress display on stderr for reading ``files`` files (``total_bytes`` bytes).

    Yields the callback the library takes (``tree.load(progress=...)``): it is called with each
    batch's :class:`captureq.pipeline.Counts` and advances files, bytes and records, with the
    rate and time left. When stderr is not a terminal (or ``quiet``) the callback does nothing.
    """
    if not show_progress(quiet):
        yield lambda counts: None
        return

    def columns():
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        return (
            TextColumn(what),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]}/{task.fields[of]} files, {task.fields[records]:,} records"
                       "{task.fields[retried]}"),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )

    display = _Display(columns, total_bytes, files=0, of=files, records=0, retried="")
    seen = {"files": 0, "records": 0, "retries": 0, "failed": 0}

    def advance(counts) -> None:
        seen["files"] += counts.files + counts.files_failed
        seen["records"] += counts.rows
        seen["retries"] += counts.retries
        seen["failed"] += counts.files_failed
        retried = f", {seen['retries']:,} retries" if seen["retries"] else ""
        if seen["failed"]:
            retried += f", {seen['failed']:,} unreadable"
        display.update(advance=counts.bytes_read, files=seen["files"], records=seen["records"],
                       retried=retried)

    try:
        yield advance
    finally:
        display.close()


@contextmanager
def file_progress(what: str, total: int, quiet: bool = False) -> Iterator[Callable]:
    """A files-done progress display (``export`` reports whole files as it commits them)."""
    if not show_progress(quiet):
        yield lambda n: None
        return

    def columns():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return (TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                TimeElapsedColumn(), TimeRemainingColumn())

    display = _Display(columns, total)
    try:
        yield lambda n: display.update(advance=n)
    finally:
        display.close()


@contextmanager
def reading(tree: CaptureTree, query: str, what: str = "reading", quiet: bool = False
            ) -> Iterator[None]:
    """Inside, a progress display for what ``tree.sql(query)`` reads: the window's files (and
    the labels when the statement reads them), advanced by the reads the statement needs and
    none other; nothing is drawn when the answer needs no read (the cache, tables in memory)."""
    if not show_progress(quiet):
        yield
        return
    from .plan import query_needs

    scan = tree.scan()
    labels = tree.scan_labels() if "labels" in query_needs(query).parts else None
    files = len(scan.files) + (len(labels.files) if labels else 0)
    total = scan.total_bytes + (labels.total_bytes if labels else 0)
    with progress(what, files, total, quiet) as advance:
        tree.progress = advance
        try:
            yield
        finally:
            tree.progress = None


def load(tree: CaptureTree, what: str = "reading", quiet: bool = False):
    """``tree.load()`` with a progress display for the files of its window (and labels)."""
    scan = tree.scan()
    labels = tree.scan_labels()
    files = len(scan.files) + (len(labels.files) if labels else 0)
    total = scan.total_bytes + (labels.total_bytes if labels else 0)
    with progress(what, files, total, quiet) as advance:
        return tree.load(progress=advance)
