"""The ``captureq`` command: a thin layer over the Python API.

Every command parses options and calls one library function; output goes through rich.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Optional

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import api
from .errors import CaptureqError, ConfigError, FilterWarning

app = typer.Typer(
    help="Scan, decode and query SageMaker-style data-capture trees.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

LabelsOpt = typer.Option(None, "--labels", help="Ground-truth tree (groundTruthData records).")
StartOpt = typer.Option(
    None, "--start", help="Start time, inclusive, ISO 8601 UTC (e.g. 2026-01-01T05:30)."
)
EndOpt = typer.Option(None, "--end", help="End time, exclusive, ISO 8601 UTC.")
EndpointOpt = typer.Option(
    None, "--endpoint", help="Endpoint name, or shell-style pattern such as 'churn-*' (repeatable)."
)
VariantOpt = typer.Option(
    None, "--variant", help="Variant name, or shell-style pattern (repeatable)."
)
StorageOpt = typer.Option(
    None,
    "--storage-option",
    metavar="KEY=VALUE",
    help="fsspec storage option (repeatable); dotted keys nest, true/false/numbers are parsed, "
    "e.g. --storage-option client_kwargs.endpoint_url=http://localhost:9000",
)
OutStorageOpt = typer.Option(
    None,
    "--out-storage-option",
    metavar="KEY=VALUE",
    help="fsspec storage option of the destination (repeatable, dotted keys nest); by default "
    "the --storage-option values when source and destination use the same protocol",
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


def _open(
    uri,
    labels=None,
    start=None,
    end=None,
    endpoint=None,
    variant=None,
    options: list[str] | None = None,
) -> api.CaptureTree:
    tree = api.open(
        uri,
        labels=labels,
        start=start,
        end=end,
        endpoint=endpoint or None,
        variant=variant or None,
        storage_options=storage_options(options),
    )
    if endpoint or variant:  # a filter that matches nothing: say so, and what exists
        warnings.simplefilter("ignore", FilterWarning)  # printed here instead, once
        for message in tree.scan().warnings:
            err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)
    return tree


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
    raise typer.Exit(2)


def _rich_table(table: pa.Table, title: str | None = None, limit: int = 50) -> Table:
    out = Table(title=title, show_lines=False)
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, limit).to_pylist():
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    if table.num_rows > limit:
        out.caption = f"{limit} of {table.num_rows} rows shown"
    return out


@app.command()
def scan(
    uri: str,
    labels: Optional[str] = LabelsOpt,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    storage_option: Optional[list[str]] = StorageOpt,
) -> None:
    """Partitions, file and record counts, time span, and what was quarantined."""
    try:
        tree = _open(uri, labels, start, end, endpoint, variant, storage_option)
        files = tree.scan()
        with Progress(
            TextColumn("reading"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ):
            tables = tree.load()
        unmatched = tree.unmatched_labels() if tables.label_scan is not None else 0
        summary = tree.sql(
            "select endpoint, variant, count(*) as captures, min(inference_time) as first, "
            "max(inference_time) as last from captures group by all order by all"
        ).to_arrow()
    except CaptureqError as exc:
        _fail(exc)
    c = tables.counts
    console.print(_rich_table(summary, title=f"captures in {uri}"))
    hours = {(f.endpoint, f.variant, f.hour) for f in files.files}
    grid = Table.grid(padding=(0, 2))
    for k, v in [
        (
            "files",
            f"{c.files} read, {c.files_failed} unreadable, {len(files.skipped)} skipped (not .jsonl)",
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
    console.print(grid)
    for path, reason in files.skipped[:20]:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    if tables.quarantine.num_rows:
        q = tables.quarantine.select(["stage", "source_file", "line_number", "reason"])
        console.print(_rich_table(q, title="quarantine", limit=20))


@app.command()
def query(
    uri: str,
    sql: str,
    labels: Optional[str] = LabelsOpt,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
    storage_option: Optional[list[str]] = StorageOpt,
    allow_external_access: bool = typer.Option(
        False,
        "--allow-external-access",
        help="Let the SQL read and write files and the network (COPY … TO, read_csv, ATTACH…); "
        "off by default: the views are in memory.",
    ),
) -> None:
    """Run SQL over the views: captures, inputs, outputs, labels, quarantine, predictions."""
    if format not in ("table", "csv", "json"):
        _fail(ValueError("--format must be table, csv or json"))
    try:
        tree = _open(uri, labels, start, end, endpoint, variant, storage_option)
        result = tree.sql(sql, allow_external_access=allow_external_access).to_arrow()
    except CaptureqError as exc:
        _fail(exc)
    except Exception as exc:  # DuckDB errors: show the message, not a traceback
        if type(exc).__module__.startswith("duckdb") or "duckdb" in type(exc).__module__:
            _fail(exc)
        raise
    write_result(result, format)


def write_result(table: pa.Table, format: str) -> None:
    if format == "table":
        console.print(_rich_table(table, limit=1000))
    elif format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(table.column_names)
        for row in table.to_pylist():
            w.writerow(
                [
                    "" if v is None else (v.isoformat() if hasattr(v, "isoformat") else v)
                    for v in row.values()
                ]
            )
        sys.stdout.write(buf.getvalue())
    else:
        sys.stdout.write(json.dumps(table.to_pylist(), default=str, indent=None) + "\n")


@app.command()
def export(
    uri: str,
    out: str,
    labels: Optional[str] = LabelsOpt,
    start: Optional[str] = StartOpt,
    end: Optional[str] = EndOpt,
    endpoint: Optional[list[str]] = EndpointOpt,
    variant: Optional[list[str]] = VariantOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    out_storage_option: Optional[list[str]] = OutStorageOpt,
    engine: str = typer.Option("local", "--engine", help="local, or spark (needs captureq[spark])."),
    master: Optional[str] = typer.Option(
        None, "--master", help="Spark master URL (default: spark-submit's, else local[*])."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the new and changed source files; export nothing."
    ),
) -> None:
    """Export to hive-partitioned Parquet under OUT; later runs add only new and changed files."""
    if engine not in ("local", "spark"):
        _fail(ValueError("--engine must be local or spark"))
    try:
        tree = _open(uri, labels, start, end, endpoint, variant, storage_option)
        out_options = storage_options(out_storage_option, "--out-storage-option")
        if dry_run:
            from .export import plan

            p = plan(tree, out, out_storage_options=out_options)
            for rel in p.changed + p.label_changed:
                console.print(f"changed  {rel}", soft_wrap=True)
            for rel in p.new + p.label_new:
                console.print(f"new      {rel}", soft_wrap=True)
            for rel in p.partial:
                console.print(f"partial  {rel}", soft_wrap=True)
            console.print(
                f"would export {len(p.new)} new and {len(p.changed)} changed files "
                + (f"(and the rest of {len(p.partial)} partly exported) " if p.partial else "")
                + f"({len(p.label_new)} new, {len(p.label_changed)} changed label files); "
                f"{p.done} already done"
            )
            return
        total = len(tree.scan().files)
        with Progress(
            TextColumn("exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task("export", total=total)
            if engine == "spark":
                from . import spark as cqs

                summary = cqs.export_parquet(
                    cqs.session(master), uri, out, labels, start=start, end=end,
                    endpoint=endpoint or None, variant=variant or None,
                    storage_options=storage_options(storage_option),
                    out_storage_options=out_options,
                    progress=lambda n: bar.advance(task, n),
                )
            else:
                summary = tree.export(
                    out, out_storage_options=out_options, progress=lambda n: bar.advance(task, n)
                )
    except CaptureqError as exc:
        _fail(exc)
    rows = ", ".join(f"{k} {v:,}" for k, v in summary.rows.items())
    console.print(
        f"exported {summary.files_exported - summary.files_changed} new files "
        f"({summary.files_skipped} already done, {summary.label_files_exported} label files) "
        f"in {summary.seconds:.2f}s: {rows}"
    )
    if summary.files_changed:
        console.print(f"{summary.files_changed} changed files re-exported (their earlier rows replaced)")
    console.print(f"manifest: {out.rstrip('/')}/_captureq/manifest.json")


def _cache_dir(uri: str, labels: str | None) -> Path:
    base = Path(os.environ.get("CAPTUREQ_CACHE", Path.home() / ".cache" / "captureq"))
    key = hashlib.sha1(f"{uri}\0{labels or ''}".encode()).hexdigest()[:16]
    return base / key


def _prepare_sql(
    uri: str,
    labels: str | None,
    cache: str | None,
    options: list[str] | None = None,
    out_options: list[str] | None = None,
) -> str:
    """SQL defining the views for the duckdb shell, over a (refreshed) Parquet export."""
    from .export import META, destination_options, shell_sql

    if Path(uri, META, "manifest.json").exists():
        return shell_sql(uri)  # already an export
    out = cache or str(_cache_dir(uri, labels))
    tree = api.open(uri, labels=labels, storage_options=storage_options(options))
    out_so = destination_options(tree, out, storage_options(out_options, "--out-storage-option"))
    tree.export(out, out_storage_options=out_so)
    return shell_sql(out, storage_options=out_so)


CacheOpt = typer.Option(
    None, help="Where to keep the Parquet the views read (a folder, or any fsspec URL)."
)


@app.command("sql")
def sql_cmd(
    uri: str,
    labels: Optional[str] = LabelsOpt,
    cache: Optional[str] = CacheOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    out_storage_option: Optional[list[str]] = OutStorageOpt,
) -> None:
    """Print SQL that defines the views, for `duckdb -init FILE` or piping into duckdb."""
    try:
        sys.stdout.write(_prepare_sql(uri, labels, cache, storage_option, out_storage_option))
    except CaptureqError as exc:
        _fail(exc)


def duckdb_cli() -> str | None:
    """The duckdb shell: the one beside this Python (the virtualenv's), else on PATH."""
    local = Path(sys.executable).parent / "duckdb"
    return str(local) if local.exists() else shutil.which("duckdb")


@app.command()
def shell(
    uri: str,
    labels: Optional[str] = LabelsOpt,
    cache: Optional[str] = CacheOpt,
    storage_option: Optional[list[str]] = StorageOpt,
    out_storage_option: Optional[list[str]] = OutStorageOpt,
) -> None:
    """Open the duckdb shell with every view defined."""
    exe = duckdb_cli()
    if exe is None:
        _fail(
            CaptureqError(
                "the duckdb CLI is not installed; `pip install duckdb-cli` (make install does it)"
            )
        )
    try:
        script = _prepare_sql(uri, labels, cache, storage_option, out_storage_option)
    except CaptureqError as exc:
        _fail(exc)
    init = _cache_dir(uri, labels).with_suffix(".sql")
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(script)
    os.execv(exe, [exe, "-init", str(init)])


@app.command()
def generate(
    out: str,
    labels: Optional[str] = typer.Option(None, help="Also write ground truth here."),
    hours: int = 48,
    requests_per_hour: int = 50,
    seed: int = 0,
    drift_feature: Optional[str] = typer.Option(None, help="e.g. _c3: shift this churn feature…"),
    drift_from_hour: Optional[int] = typer.Option(None, help="…from this hour index on."),
) -> None:
    """Write a realistic sample capture tree (several endpoints, two variants, mixed encodings)."""
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
    console.print(summary)


def main() -> None:  # pragma: no cover
    app()


from .monitor import cli as _monitor_cli  # noqa: E402,F401  (registers baseline, monitor, quality)
from .report import cli as _report_cli  # noqa: E402,F401  (registers report)
