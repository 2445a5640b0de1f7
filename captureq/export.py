"""Incremental, atomic export of every table to hive-partitioned Parquet.

Layout under ``out``::

    captures/endpoint=E/variant=V/date=YYYY-MM-DD/hour=HH/part-<run>-<n>.parquet
    inputs/…  outputs/…                      (same partitions, by inference hour)
    labels/date=YYYY-MM-DD/hour=HH/part-…    (by label hour)
    quarantine/part-…
    _captureq/commits/<run>-<n>.json         one per committed batch: its source files and parts
    _captureq/manifest.json                  a summary written at the end of each run

Files keep all their columns (endpoint and variant too), so each is readable alone; the
``key=value`` folders let Spark, Trino and Athena prune partitions.

Exactly once: a batch's parts are written under ``_captureq/tmp/`` (invisible to readers of
``captures/**``), then its commit record is staged, the parts are renamed into place, and the
commit record is moved into ``commits/``. A run that dies part-way is rolled forward by the next
run from the staged commit record, so every source file is exported once, never twice. A second
run skips source files already committed (keyed by their path relative to the tree root, so a
copy of the tree on S3 and on disk share one manifest). One export at a time: a lock file
(``fcntl.flock``) makes a concurrent export of the same output fail with a clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from . import schema, window
from .errors import ExportError
from .pipeline import Counts, run_captures, run_labels

if TYPE_CHECKING:
    from .api import CaptureTree

META = "_captureq"
FORMAT_VERSION = 1


@dataclass
class ExportSummary:
    """What one export run did."""

    out: str
    run_id: str
    files_exported: int = 0
    files_skipped: int = 0
    label_files_exported: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    parts_written: int = 0
    counts: Counts = field(default_factory=Counts)
    recovered_commits: int = 0
    seconds: float = 0.0


def _partition_path(endpoint: str | None, variant: str | None, hour) -> str:
    parts = []
    if endpoint is not None:
        parts.append(f"endpoint={quote(endpoint, safe='')}")
        parts.append(f"variant={quote(variant or '', safe='')}")
    if hour is None:
        parts.append("date=unknown/hour=unknown")
    else:
        parts.append(f"date={hour:%Y-%m-%d}/hour={hour:%H}")
    return "/".join(parts)


def _split(table: pa.Table, time_col: str, by_endpoint: bool) -> list[tuple[str, pa.Table]]:
    """Split ``table`` into (partition path, rows) groups, vectorized."""
    if table.num_rows == 0:
        return []
    hours = pc.floor_temporal(table.column(time_col), unit="hour")
    cols = {"h": hours}
    if by_endpoint:
        cols["e"] = table.column("endpoint")
        cols["v"] = table.column("variant")
    keys = pa.table(cols)
    order = pc.sort_indices(keys, [(k, "ascending") for k in cols])
    keys = keys.take(order)
    table = table.take(order)
    # boundaries where any key changes
    change = np.zeros(table.num_rows, dtype=bool)
    change[0] = True
    for name in cols:
        col = keys.column(name).combine_chunks()
        prev, cur = col.slice(0, len(col) - 1), col.slice(1)
        neq = pc.fill_null(pc.not_equal(prev, cur), True)
        both_null = pc.and_(pc.is_null(prev), pc.is_null(cur))
        change[1:] |= pc.and_not(neq, both_null).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], table.num_rows)
    out = []
    for s, e in zip(starts, ends):
        h = keys.column("h")[int(s)].as_py()
        endpoint = keys.column("e")[int(s)].as_py() if by_endpoint else None
        variant = keys.column("v")[int(s)].as_py() if by_endpoint else None
        out.append((_partition_path(endpoint, variant, h), table.slice(int(s), int(e - s))))
    return out


class _Output:
    """The export folder: where parts, commits and the lock live."""

    def __init__(self, out: str, storage_options: dict | None):
        self.fs, path = url_to_fs(out, **(storage_options or {}))
        self.root = path.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.meta = f"{self.root}/{META}"
        self.fs.makedirs(f"{self.meta}/commits", exist_ok=True)
        self.fs.makedirs(f"{self.meta}/tmp", exist_ok=True)
        self._lock_file = None

    def lock(self) -> None:
        if not self.local:
            return  # object stores have no lock primitive; run one export per output
        import fcntl

        self._lock_file = open(f"{self.meta}/lock", "a+")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise ExportError(
                f"another captureq export is writing to {self.root}; wait for it to finish "
                "(two exports into one output at once would duplicate rows)"
            ) from None

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def write_json(self, path: str, obj) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "w") as f:
            json.dump(obj, f, indent=1, default=str)
        self.fs.mv(tmp, path)

    def read_json(self, path: str):
        with self.fs.open(path, "r") as f:
            return json.load(f)

    def commits(self) -> list[dict]:
        paths = sorted(p for p in self.fs.ls(f"{self.meta}/commits", detail=False) if p.endswith(".json"))
        return [self.read_json(p) for p in paths]

    def rename(self, src: str, dst: str) -> None:
        self.fs.makedirs(posixpath.dirname(dst), exist_ok=True)
        self.fs.mv(src, dst)

    def recover(self) -> int:
        """Roll forward commits staged by a run that died; drop its unstaged temp files."""
        recovered = 0
        tmp_root = f"{self.meta}/tmp"
        for run_dir in self.fs.ls(tmp_root, detail=False):
            staged = sorted(p for p in self.fs.ls(run_dir, detail=False) if p.endswith(".commit.json"))
            for path in staged:
                commit = self.read_json(path)
                for part in commit["parts"]:
                    src = f"{run_dir}/{part['tmp']}"
                    dst = f"{self.root}/{part['path']}"
                    if self.fs.exists(src):
                        self.rename(src, dst)
                final = f"{self.meta}/commits/{posixpath.basename(path)[: -len('.commit.json')]}.json"
                self.fs.mv(path, final)
                recovered += 1
            self.fs.rm(run_dir, recursive=True)
        return recovered


def _write_parts(out: _Output, run_id: str, seq: int, tables: dict[str, list[tuple[str, pa.Table]]]) -> list[dict]:
    run_dir = f"{out.meta}/tmp/{run_id}"
    parts = []
    n = 0
    for table_name, groups in tables.items():
        for partition, rows in groups:
            name = f"part-{run_id}-{seq:05d}-{n:03d}.parquet"
            n += 1
            rel = f"{table_name}/{partition}/{name}" if partition else f"{table_name}/{name}"
            tmp = f"{table_name}-{name}"
            with out.fs.open(f"{run_dir}/{tmp}", "wb") as f:
                pq.write_table(rows, f, compression="zstd")
            parts.append({"table": table_name, "path": rel, "tmp": tmp, "rows": rows.num_rows,
                          "columns": {f.name: str(f.type) for f in rows.schema}})
    return parts


def _commit(out: _Output, run_id: str, seq: int, parts: list[dict], sources: list[dict], kind: str) -> None:
    run_dir = f"{out.meta}/tmp/{run_id}"
    record = {"version": FORMAT_VERSION, "run": run_id, "seq": seq, "kind": kind, "time": time.time(),
              "sources": sources, "parts": parts}
    name = f"{run_id}-{seq:05d}"
    staged = f"{run_dir}/{name}.commit.json"
    out.write_json(staged, record)
    for part in parts:
        out.rename(f"{run_dir}/{part['tmp']}", f"{out.root}/{part['path']}")
    out.fs.mv(staged, f"{out.meta}/commits/{name}.json")


def start_run(target: _Output, out: str) -> tuple[ExportSummary, set[tuple[str, str]]]:
    """Begin a run on a locked output: a new run id, commits a dead run staged rolled forward,
    and the ``(kind, rel)`` of every source file already committed (local or Spark)."""
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
    summary = ExportSummary(out=out, run_id=run_id, rows=dict.fromkeys(schema.TABLES, 0))
    summary.recovered_commits = target.recover()
    done = {(c.get("kind", "captures"), s["rel"]) for c in target.commits() for s in c["sources"]
            if s.get("window") is None}  # a file exported for a time window only is not done
    return summary, done


def exported_windows(target: _Output) -> dict[str, tuple]:
    """``rel`` → the time windows a capture file was exported for, when it was exported only
    for windows (``export`` with ``start``/``end``): a later run reads such a file again and
    writes only its rows outside those windows, so every row lands exactly once."""
    out: dict[str, tuple] = {}
    for c in target.commits():
        if c.get("kind", "captures") != "captures":
            continue
        for s in c["sources"]:
            if s.get("window") is not None:
                out[s["rel"]] = (*out.get(s["rel"], ()), window.from_json(s["window"]))
    return out


def capture_work(tree: CaptureTree, target: _Output, done: set, files) -> list[tuple[tuple, list]]:
    """The capture files an export of ``tree``'s window still has to read, grouped by the
    windows already exported from them (``exclude`` for :func:`captureq.pipeline.run_captures`).
    A file is skipped when it was exported whole, or for a window holding this one."""
    w = tree.window
    covered = exported_windows(target)
    groups: dict[tuple, list] = {}
    for f in files:
        if ("captures", f.rel) in done or window.covers(covered.get(f.rel, ()), w.start, w.end):
            continue
        groups.setdefault(covered.get(f.rel, ()), []).append(f)
    return list(groups.items())


def _unpartitioned(table: pa.Table) -> list[tuple[str, pa.Table]]:
    return [("", table)] if table.num_rows else []


def _commit_batch(target: _Output, summary: ExportSummary, seq: int,
                  groups: dict[str, list[tuple[str, pa.Table]]], result, kind: str,
                  span: tuple = (None, None)) -> None:
    """Write one batch's parts and commit them with the source files they came from."""
    parts = _write_parts(target, summary.run_id, seq, groups)
    _commit(target, summary.run_id, seq, parts,
            _source_entries(result.files, result.failed_files, *span,
                            getattr(result, "partial", frozenset())), kind)
    for p in parts:
        summary.rows[p["table"]] += p["rows"]
    summary.parts_written += len(parts)


def _source_entries(files, failed, start=None, end=None, partial=frozenset()) -> list[dict]:
    """Commit entries of the files read; a file with lines outside the time window is entered
    with the window (it is then done only for it, see :func:`exported_windows`)."""
    bad = {f.rel for f in failed}
    span = {"window": window.to_json(start, end)}
    return [{"rel": f.rel, "size": f.size, "hour": f.hour.isoformat() if f.hour else None,
             **(span if f.url in partial else {})}
            for f in files if f.rel not in bad]


def export(tree: CaptureTree, out: str, *, storage_options: dict | None = None,
           progress=None) -> ExportSummary:
    """Export ``tree`` (its window) to Parquet under ``out``; only new source files are read.

    ``progress`` is called with each committed batch's file count (for progress bars).
    Files that could not be read are not marked done, so the next run tries them again.
    """
    started = time.monotonic()
    target = _Output(out, storage_options)
    target.lock()
    try:
        summary, done = start_run(target, out)
        target.fs.makedirs(f"{target.meta}/tmp/{summary.run_id}", exist_ok=True)
        seq = 0

        scan = tree.scan()
        fs = tree._cache["scan"][0].fs
        work = capture_work(tree, target, done, scan.files)
        summary.files_skipped = len(scan.files) - sum(len(files) for _, files in work)
        w = tree.window
        for exclude, todo in work:
            for result in run_captures(fs, todo, tree.options, batch_bytes=tree.batch_bytes,
                                       start=w.start, end=w.end, exclude=exclude):
                groups = {
                    "captures": _split(result.captures, "inference_time", True),
                    "inputs": _split(result.inputs, "inference_time", True),
                    "outputs": _split(result.outputs, "inference_time", True),
                    "quarantine": _unpartitioned(result.quarantine),
                }
                if result.labels.num_rows:  # ground truth inside merged capture records
                    groups["labels"] = _split(result.labels, "label_hour", False)
                _commit_batch(target, summary, seq, groups, result, "captures", (w.start, w.end))
                seq += 1
                summary.files_exported += len(result.files)  # failed files are not here
                summary.counts.add(result.counts)
                if progress:
                    progress(len(result.files) + len(result.failed_files))

        label_scan = tree.scan_labels()
        if label_scan is not None:
            lfs = tree._cache["label_scan"][0].fs
            todo = [f for f in label_scan.files if ("labels", f.rel) not in done]
            for result in run_labels(lfs, todo, batch_bytes=tree.batch_bytes):
                groups = {
                    "labels": _split(result.labels, "label_hour", False),
                    "quarantine": _unpartitioned(result.quarantine),
                }
                _commit_batch(target, summary, seq, groups, result, "labels")
                seq += 1
                summary.label_files_exported += len(result.files)

        summary.seconds = time.monotonic() - started
        _write_manifest(target, tree, summary)
        with contextlib.suppress(FileNotFoundError):
            target.fs.rm(f"{target.meta}/tmp/{summary.run_id}", recursive=True)
        return summary
    finally:
        target.unlock()


def _write_manifest(target: _Output, tree: CaptureTree, summary: ExportSummary) -> None:
    commits = target.commits()
    tables: dict[str, dict] = {}
    for c in commits:
        for p in c["parts"]:
            t = tables.setdefault(p["table"], {"rows": 0, "parts": 0})
            t["rows"] += p["rows"]
            t["parts"] += 1
    schemas = {name: _dataset_schema(commits, name) for name in tables}
    manifest = {
        "format": "captureq-export",
        "version": FORMAT_VERSION,
        "source": _redact(tree.uri),
        "labels_source": _redact(tree.labels_uri) if tree.labels_uri else None,
        "source_files": sum(len(c["sources"]) for c in commits if c.get("kind") == "captures"),
        "label_files": sum(len(c["sources"]) for c in commits if c.get("kind") == "labels"),
        "commits": len(commits),
        "tables": tables,
        "columns": schemas,
        "last_run": {k: _redact(v) if k == "out" else v for k, v in asdict(summary).items() if k != "counts"},
    }
    target.write_json(f"{target.meta}/manifest.json", manifest)


def _dataset_schema(commits: list[dict], table: str) -> dict[str, str]:
    """Column → Arrow type of the exported ``table`` (union over its parts, first type wins)."""
    cols: dict[str, str] = {}
    for c in commits:
        for p in c["parts"]:
            if p["table"] == table:
                for name, typ in p.get("columns", {}).items():
                    cols.setdefault(name, typ)
    return cols


def _redact(uri: str | None) -> str | None:
    """Drop any ``user:password@`` part of a URI before it is written anywhere.

    A password may hold ``/`` (AWS secrets do), so any ``…:…@`` right after the scheme goes.
    """
    if uri is None:
        return None
    m = re.match(r"^([a-zA-Z][\w+.-]*://)([^@]*)@", uri)
    if m and ("/" not in m.group(2) or ":" in m.group(2)):
        return m.group(1) + uri[m.end():]
    return uri


def read_manifest(out: str, storage_options: dict | None = None) -> dict:
    """The manifest of an export folder."""
    fs, path = url_to_fs(out, **(storage_options or {}))
    with fs.open(f"{path.rstrip('/')}/{META}/manifest.json") as f:
        return json.load(f)


def shell_sql(out: str) -> str:
    """SQL that defines every view over the local export at ``out`` (for the ``duckdb`` shell)."""
    from . import views

    manifest = read_manifest(out)
    root = os.path.abspath(out)
    present = {name: name in manifest["tables"] for name in schema.TABLES}
    schemas = {
        "captures": schema.CAPTURES,
        "labels": schema.LABELS,
        "quarantine": schema.QUARANTINE,
    }
    for name in ("inputs", "outputs"):
        cols = manifest["columns"].get(name) or {}
        fields = list(schema.RECORD_KEYS)
        for col, typ in cols.items():
            if col not in schema.RECORD_KEY_NAMES:
                fields.append(pa.field(col, _arrow_type(typ)))
        schemas[name] = pa.schema(fields)
    output_cols = [c for c in schemas["outputs"].names if c not in schema.RECORD_KEY_NAMES]
    input_cols = [c for c in schemas["inputs"].names if c not in schema.RECORD_KEY_NAMES]
    return views.parquet_sources_sql(root, schemas, present) + views.render_views(output_cols, input_cols)


def _arrow_type(name: str) -> pa.DataType:
    simple = {
        "string": pa.string(), "large_string": pa.string(), "double": pa.float64(), "float": pa.float64(),
        "int64": pa.int64(), "int32": pa.int32(), "bool": pa.bool_(), "binary": pa.binary(),
        "timestamp[us, tz=UTC]": schema.TIMESTAMP, "timestamp[s]": pa.timestamp("s"), "date32[day]": pa.date32(),
    }
    if name in simple:
        return simple[name]
    if name.startswith("list<") and name.endswith(">"):
        inner = name[len("list<"):-1].split(": ", 1)[-1]
        return pa.list_(_arrow_type(inner))
    return pa.string()
