"""Run captureq on Apache Spark: the same scanner, parser and decoders, one task per file group.

Install with ``pip install 'captureq[spark]'`` (pyspark with pandas, which ``mapInArrow`` needs,
and a Java 17+ runtime).

How the work splits:

* the **driver** lists the tree with captureq's :class:`~captureq.scan.Scanner` (so only the
  hours asked for are listed, exactly as locally) and groups the files with
  :func:`~captureq.read.plan_batches` into *file groups* of at most ``task_bytes`` /
  ``task_files``;
* each file group becomes **one Spark task**: a ``mapInArrow`` function on an executor runs
  captureq's own :func:`~captureq.read.fetch` and :func:`~captureq.pipeline.process_captures`
  (the vectorized pyarrow parser and the payload decoders). Nothing about the record format is
  re-implemented in Spark SQL, so a Spark table equals the local table row for row.

>>> from pyspark.sql import SparkSession                      # doctest: +SKIP
>>> import captureq.spark as cqs                              # doctest: +SKIP
>>> spark = cqs.session("local[*]")                           # doctest: +SKIP
>>> t = cqs.read_tables(spark, "s3://bucket/datacapture", start="2026-01-01", end="2026-01-02")
... # doctest: +SKIP
>>> t.inputs.groupBy("endpoint").count().show()               # doctest: +SKIP
>>> cqs.export_parquet(spark, "s3://bucket/datacapture", "s3://bucket/captureq")  # doctest: +SKIP

Run as a script (``spark-submit``), this module is the ``captureq`` command line::

    spark-submit --master yarn "$(python -c 'import captureq.spark as m; print(m.__file__)')" \\
        export s3://bucket/datacapture s3://bucket/captureq --engine spark
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # spark-submit .../captureq/spark.py export ...
    import os as _os
    import sys as _sys

    _here = _os.path.dirname(_os.path.abspath(__file__))
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]  # not captureq/
    from captureq.cli import app

    _sys.exit(app())

import json
import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import schema
from .decode import DecodeOptions
from .decode.common import concat_tables
from .errors import CaptureqError
from .export import (
    LABELS_FAILED,
    ExportSummary,
    _Output,
    _partial_windows,
    _read_whole,
    _split,
    _typed_records,
    _write_manifest,
    _write_parts,
    capture_work,
    commit_files,
    destination_options,
    failure_reason,
    refuse_inside_source,
    start_run,
    widen_parts,
)
from .pipeline import Counts, process_captures, process_labels
from .read import DEFAULT_BATCH_FILES, fetch, plan_batches
from .registry import Registry
from .scan import CAPTURE, LABELS, CaptureFile, Scanner
from .timeutil import to_lateness, to_utc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Bytes of source files per Spark task (smaller than the local batch: tasks are the unit of
#: parallelism, and many small tasks balance better than a few large ones).
DEFAULT_TASK_BYTES = 16 * 1024 * 1024
DEFAULT_TASK_FILES = DEFAULT_BATCH_FILES

_TASKS = "task int, files string"  # one row per file group
_CHUNKS = "task int, tbl string, rows long, schema binary, data binary"  # decoded Arrow IPC
_CHUNK_ROWS = 65_536
SIDES = ("input", "output")


def session(master: str | None = None, app_name: str = "captureq") -> SparkSession:
    """A SparkSession for captureq: ``master`` (default: whatever ``spark-submit`` set, else
    ``local[*]``), UTC session time zone, and this Python for the workers."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).config("spark.sql.session.timeZone", "UTC")
    SparkContext._ensure_initialized()  # connect to the JVM so SparkConf sees spark-submit's settings
    if master or not SparkConf().contains("spark.master"):
        builder = builder.master(master or "local[*]")
    if (master or "local").startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this Python
    return builder.getOrCreate()


# -- driver: list and group -------------------------------------------------------------------
def _file_dict(f: CaptureFile) -> dict[str, Any]:
    d = asdict(f)
    d["hour"] = f.hour.isoformat() if f.hour else None
    return d


def _file(d: dict[str, Any]) -> CaptureFile:
    return CaptureFile(**{**d, "hour": datetime.fromisoformat(d["hour"]) if d["hour"] else None})


def _task_frame(spark: SparkSession, groups: list[list[CaptureFile]]) -> DataFrame:
    """One row (and one partition) per file group."""
    rows = [(i, json.dumps([_file_dict(f) for f in g])) for i, g in enumerate(groups)]
    n = max(len(rows), 1)
    sc = _context(spark)
    if sc is None:  # Spark Connect: let Spark place the rows
        return spark.createDataFrame(rows, _TASKS).repartition(n, "task")
    return spark.createDataFrame(sc.parallelize(rows, n), _TASKS)


def _context(spark: SparkSession):
    """The SparkContext, or None under Spark Connect (which has none)."""
    from pyspark.errors import PySparkException

    try:
        return spark.sparkContext
    except (PySparkException, AttributeError):
        return None


def _groups(files: list[CaptureFile], task_bytes: int, task_files: int) -> list[list[CaptureFile]]:
    return plan_batches(files, task_bytes, task_files)


def _scan(uri: str, layout: str, storage_options: dict | None, **window) -> list[CaptureFile]:
    return Scanner(uri, layout=layout, storage_options=storage_options).scan(**window).files


def _fs(uri: str, storage_options: dict | None):
    from .storage import filesystem

    return filesystem(uri, storage_options)[0]


def _tasks(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, list[CaptureFile]]]:
    for b in batches:
        for task, files in zip(b.column(0).to_pylist(), b.column(1).to_pylist()):
            yield task, [_file(d) for d in json.loads(files)]


# -- Arrow ↔ Spark ----------------------------------------------------------------------------
def spark_schema(arrow: pa.Schema):
    """The Spark StructType of an Arrow schema (timestamps with a zone → TimestampType)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow)


def _conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` with ``target``'s columns and types, converted as the local concat would."""
    if table.schema.equals(target):
        return table
    table = concat_tables([target.empty_table(), table])
    return table.select(target.names).cast(target)


def _ipc(table: pa.Table) -> tuple[bytes, list[bytes]]:
    schema_bytes = table.schema.serialize().to_pybytes()
    chunks = []
    for batch in table.to_batches(max_chunksize=_CHUNK_ROWS) or [None]:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            if batch is not None:
                w.write_batch(batch)
        chunks.append(sink.getvalue().to_pybytes())
    return schema_bytes, chunks


def _read_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


# -- reading ----------------------------------------------------------------------------------
@dataclass
class SparkTables:
    """The capture tables of one window as Spark DataFrames (columns as in the local tables)."""

    captures: DataFrame
    inputs: DataFrame
    outputs: DataFrame
    quarantine: DataFrame
    tasks: int
    files: int

    def unpersist(self) -> None:
        """Free the decoded batches cached for ``inputs``/``outputs``/``quarantine``."""
        self._cache.unpersist()


def _window(start, end, endpoint, variant, lateness) -> dict:
    # the folders [start - lateness, end + lateness) may hold records of the window, as the
    # local plan lists them; rows are kept exactly in [start, end) by process_captures
    # (captureq.window), on the executors.
    return {"start": to_utc(start), "end": to_utc(end), "endpoint": endpoint, "variant": variant,
            "lateness": to_lateness(lateness)}


def read_captures(
    spark: SparkSession,
    uri: str,
    *,
    start: Any = None,
    end: Any = None,
    endpoint: str | Iterable[str] | None = None,
    variant: str | Iterable[str] | None = None,
    lateness: timedelta | float | str | None = None,
    storage_options: dict | None = None,
    options: DecodeOptions | None = None,
    task_bytes: int = DEFAULT_TASK_BYTES,
    task_files: int = DEFAULT_TASK_FILES,
) -> DataFrame:
    """The ``captures`` table (schema :data:`captureq.schema.CAPTURES`) as a lazy DataFrame.

    The driver lists only the hour folders that can hold rows of ``[start, end)`` (those of
    ``[start - lateness, end + lateness)``, as :meth:`captureq.plan.ScanPlan.scan`); executors
    parse one file group each and keep exactly the rows with ``start ≤ inference_time < end``.
    """
    window = _window(start, end, endpoint, variant, lateness)
    files = _scan(uri, CAPTURE, storage_options, **window)
    tasks = _task_frame(spark, _groups(files, task_bytes, task_files))
    so, t0, t1 = storage_options, to_utc(start), to_utc(end)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs = _fs(uri, so)
        for _, group in _tasks(batches):
            captures = process_captures(fetch(fs, group), options, start=t0, end=t1).captures
            yield from captures.cast(schema.CAPTURES).to_batches()

    return tasks.mapInArrow(run, spark_schema(schema.CAPTURES))


def read_tables(
    spark: SparkSession,
    uri: str,
    *,
    start: Any = None,
    end: Any = None,
    endpoint: str | Iterable[str] | None = None,
    variant: str | Iterable[str] | None = None,
    lateness: timedelta | float | str | None = None,
    storage_options: dict | None = None,
    options: DecodeOptions | None = None,
    task_bytes: int = DEFAULT_TASK_BYTES,
    task_files: int = DEFAULT_TASK_FILES,
) -> SparkTables:
    """``captures``, ``inputs``, ``outputs`` and ``quarantine`` as DataFrames, decoded once.

    ``inputs``/``outputs`` have payload columns that depend on the data (``_c0``… for CSV,
    flattened names for JSON), and a DataFrame needs its schema up front. So this runs one Spark
    job that decodes every file group, keeps the decoded tables as Arrow IPC chunks in Spark's
    cache (``MEMORY_AND_DISK``), and collects only their schemas and column profiles (a few
    hundred bytes per task). As the local engine does over one read, the driver decides one type
    per column per endpoint and side from every task's profile (:mod:`captureq.decode.unify`:
    a stray text value among numbers does not make a column text; it becomes a ``value``
    quarantine row), then unions the conformed schemas in task order with the local engine's
    concatenation rule (:func:`captureq.decode.common.concat_tables`). The returned DataFrames
    read the cached chunks, conform each task's records to the decision (its ``value`` rows join
    ``quarantine``) and convert them to that union schema; ``captures`` and ``quarantine`` have
    fixed schemas. Call :meth:`SparkTables.unpersist` when done.
    """
    import pickle

    from pyspark import StorageLevel

    from .decode import conform, decide
    from .decode.unify import conformed_schema

    window = _window(start, end, endpoint, variant, lateness)
    files = _scan(uri, CAPTURE, storage_options, **window)
    groups = _groups(files, task_bytes, task_files)
    tasks = _task_frame(spark, groups)
    so, t0, t1 = storage_options, to_utc(start), to_utc(end)

    def decode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs = _fs(uri, so)
        for task, group in _tasks(batches):
            r = process_captures(fetch(fs, group), options, start=t0, end=t1)
            yield pa.RecordBatch.from_pydict({  # the task's column profiles, for the decision
                "task": pa.array([task], pa.int32()), "tbl": ["profile"],
                "rows": pa.array([0], pa.int64()), "schema": pa.array([b""], pa.binary()),
                "data": pa.array([pickle.dumps(r.profiles)], pa.binary()),
            })
            for name, table in (
                ("captures", r.captures),
                ("inputs", r.inputs),
                ("outputs", r.outputs),
                ("quarantine", r.quarantine),
            ):
                schema_bytes, chunks = _ipc(table)
                n = len(chunks)
                yield pa.RecordBatch.from_pydict(
                    {
                        "task": pa.array([task] * n, pa.int32()),
                        "tbl": [name] * n,
                        "rows": pa.array([table.num_rows] * n, pa.int64()),
                        "schema": pa.array([schema_bytes] * n, pa.binary()),
                        "data": pa.array(chunks, pa.binary()),
                    }
                )

    chunks = tasks.mapInArrow(decode, _CHUNKS).persist(StorageLevel.MEMORY_AND_DISK)
    profiles = {row.task: pickle.loads(row.data)
                for row in chunks.where(chunks.tbl == "profile").select("task", "data").collect()}
    order = sorted(profiles)
    decisions = {side: decide([profiles[t].get(side, {}) for t in order]) for side in SIDES}
    seen = chunks.select("task", "tbl", "rows", "schema").dropDuplicates(["task", "tbl"]).collect()
    per_table: dict[str, list[tuple[int, pa.Schema, int]]] = {"inputs": [], "outputs": []}
    for row in seen:
        if row.tbl in per_table:
            side = SIDES[("inputs", "outputs").index(row.tbl)]
            raw = pa.ipc.read_schema(pa.py_buffer(row.schema))
            endpoints = list(profiles.get(row.task, {}).get(side, {}))
            conformed = conformed_schema(raw, endpoints, decisions[side]) if row.rows else raw
            per_table[row.tbl].append((row.task, conformed, row.rows))
    schemas = {"captures": schema.CAPTURES, "quarantine": schema.QUARANTINE}
    for name, entries in per_table.items():
        schemas[name] = union_schema(
            [s for _, s, _ in sorted(entries, key=lambda e: e[0])],
            [n for _, _, n in sorted(entries, key=lambda e: e[0])],
        )

    def task_tables(group: pa.Table) -> dict[str, pa.Table]:
        """One task's cached tables, by name."""
        parts: dict[str, list[pa.Table]] = {}
        for tbl, data in zip(group.column("tbl").to_pylist(), group.column("data").to_pylist()):
            parts.setdefault(tbl, []).append(_read_ipc(data))
        return {tbl: pa.concat_tables(ts) for tbl, ts in parts.items()}

    def captures_frame() -> DataFrame:
        target = schemas["captures"]

        def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for b in batches:
                for data in b.column(0).to_pylist():
                    table = _read_ipc(data)
                    if table.num_rows:
                        yield from _conform(table, target).to_batches()

        return chunks.where(chunks.tbl == "captures").select("data").mapInArrow(convert, spark_schema(target))

    def conformed_frame(name: str) -> DataFrame:
        """``inputs``/``outputs`` (each task's records conformed to the decision), or
        ``quarantine`` (each task's rows, then the ``value`` rows conforming produced)."""
        target = schemas[name]
        wanted = ["captures", "inputs", "outputs", "quarantine"] if name == "quarantine" else ["captures", name]

        def convert(group: pa.Table) -> pa.Table:
            t = task_tables(group)
            caps = t["captures"]
            out = []
            if name == "quarantine":
                out.append(t["quarantine"])
            for side, tbl in zip(SIDES, ("inputs", "outputs")):
                if tbl in t:
                    records, q = conform(t[tbl], caps, decisions[side], side)
                    out.append(q if name == "quarantine" else records)
            out = [x for x in out if x.num_rows]
            if not out:
                return target.empty_table()
            return pa.concat_tables([_conform(x, target) for x in out])

        return (chunks.where(chunks.tbl.isin(wanted)).select("task", "tbl", "data")
                .groupBy("task").applyInArrow(convert, spark_schema(target)))

    out = SparkTables(
        captures_frame(), conformed_frame("inputs"), conformed_frame("outputs"),
        conformed_frame("quarantine"),
        tasks=len(groups),
        files=len(files),
    )
    out._cache = chunks
    return out


def union_schema(schemas: list[pa.Schema], rows: list[int] | None = None) -> pa.Schema:
    """The schema the local engine gives ``inputs``/``outputs`` whose batches had ``schemas``.

    Batches with no rows and only the key columns are left out, as locally.
    """
    rows = rows if rows is not None else [1] * len(schemas)
    keep = [s for s, n in zip(schemas, rows) if n or len(s) > len(schema.RECORD_KEY_NAMES)]
    if not keep:
        return schema.RECORD_KEYS
    return concat_tables([s.empty_table() for s in keep]).schema


def read_inputs(spark: SparkSession, uri: str, **kwargs) -> DataFrame:
    """The ``inputs`` table (one row per input record); see :func:`read_tables`."""
    return read_tables(spark, uri, **kwargs).inputs


def read_outputs(spark: SparkSession, uri: str, **kwargs) -> DataFrame:
    """The ``outputs`` table (one row per output record); see :func:`read_tables`."""
    return read_tables(spark, uri, **kwargs).outputs


def read_labels(
    spark: SparkSession,
    uri: str,
    *,
    start: Any = None,
    storage_options: dict | None = None,
    task_bytes: int = DEFAULT_TASK_BYTES,
    task_files: int = DEFAULT_TASK_FILES,
) -> DataFrame:
    """The ``labels`` table (schema :data:`captureq.schema.LABELS`) of a ground-truth tree."""
    files = _scan(uri, LABELS, storage_options, start=to_utc(start))
    tasks = _task_frame(spark, _groups(files, task_bytes, task_files))
    so = storage_options

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs = _fs(uri, so)
        for _, group in _tasks(batches):
            yield from process_labels(fetch(fs, group)).labels.cast(schema.LABELS).to_batches()

    return tasks.mapInArrow(run, spark_schema(schema.LABELS))


# -- export -----------------------------------------------------------------------------------
_RESULTS = "task int, result string"


def export_parquet(
    spark: SparkSession,
    uri: str,
    out: str,
    labels: str | None = None,
    *,
    start: Any = None,
    end: Any = None,
    endpoint: str | Iterable[str] | None = None,
    variant: str | Iterable[str] | None = None,
    lateness: timedelta | float | str | None = None,
    storage_options: dict | None = None,
    out_storage_options: dict | None = None,
    options: DecodeOptions | None = None,
    task_bytes: int = DEFAULT_TASK_BYTES,
    task_files: int = DEFAULT_TASK_FILES,
    wave_tasks: int | None = None,
    commit_threads: int = 8,
    progress=None,
    break_lease: bool = False,
) -> ExportSummary:
    """Export to ``out`` exactly like :func:`captureq.export.export`, with Spark doing the work.

    Same layout, parts, ``_captureq/commits/*.json`` and manifest, so local and Spark runs can
    follow each other on one output: each skips the source files the other committed.

    Exactly once: each executor task decodes its file group, splits it into partitions and
    writes the parts into its own temporary folder ``_captureq/tmp/<run>-<task>-<attempt>/``
    (invisible to readers; a retried or speculative attempt writes a different folder), and
    returns the list of parts it wrote. Only the driver commits: for each task whose result it
    received, it stages the commit record, renames that attempt's parts into place and moves the
    record into ``commits/`` (:func:`captureq.export._commit`). Folders of failed or duplicate
    attempts are never committed and are deleted at the end of the run; a run that dies is
    rolled forward or cleaned up by the next one, as locally. Tasks run in waves of
    ``wave_tasks`` (default: 4 per core); each wave is committed (``commit_threads`` at a time)
    while the next one runs, so a long export keeps its progress if a job fails. Commit records
    are named by task number, so the commit order on disk (which fixes the manifest's column
    order) is the task order, as locally. ``break_lease``: as :func:`captureq.export.export`.
    """
    started = time.monotonic()
    from .plan import open_plan

    tree = open_plan(
        uri,
        labels=labels,
        storage_options=storage_options,
        options=options,
        start=start,
        end=end,
        endpoint=endpoint,
        variant=variant,
        lateness=lateness,
    )
    out_storage_options = destination_options(tree, out, out_storage_options)
    target = _Output(out, out_storage_options)
    refuse_inside_source(tree, target)
    target.lock(break_lease)
    try:
        summary, state = start_run(target, out)
        run_id, rows = summary.run_id, summary.rows
        wave = wave_tasks or 4 * _cores(spark)
        seq = 0

        scan = tree.scan()
        work = capture_work(tree, state, scan.files)  # the same rules as locally
        todo = [f for _, files in work for f in files]
        registry = Registry(target)
        summary.failed.update(_admit_new_endpoints(registry, _fs(uri, storage_options), work, options,
                                                   task_bytes, task_files, run_id))
        work = [(spec, [f for f in files if f.endpoint not in summary.failed]) for spec, files in work]
        summary.files_skipped = len(scan.files) - len(todo)
        summary.files_changed = sum(state.status("captures", f) == "changed" for f in todo)
        kinds = [("captures", uri, storage_options, files, spec) for spec, files in work]
        label_scan = tree.scan_labels()
        if label_scan is not None:
            ltodo = [f for f in label_scan.files if state.status("labels", f) != "done"]
            kinds.append(("labels", labels, tree.label_storage_options or storage_options, ltodo,
                          None))
        waves = []  # (kind, source, storage options, read spec, first seq, file groups)
        for kind, src, so, files, win in kinds:
            groups = _groups(files, task_bytes, task_files)
            for lo in range(0, len(groups), wave):
                waves.append((kind, src, so, win, seq, groups[lo : lo + wave]))
                seq += len(groups[lo : lo + wave])

        def run_wave(w):
            kind, src, so, win, first, groups = w
            return _export_wave(
                spark, kind, src, so, out, out_storage_options, options, run_id, first, groups,
                win, list(registry.entries.values()),
            )

        # The executors run wave k+1 while the driver commits wave k (commits in parallel threads:
        # each is independent; on object stores a commit is a few copy requests).
        with (
            ThreadPoolExecutor(1, thread_name_prefix="captureq-wave") as jobs,
            ThreadPoolExecutor(commit_threads, thread_name_prefix="captureq-commit") as committers,
        ):
            pending = jobs.submit(run_wave, waves[0]) if waves else None
            for i, (kind, _src, _so, win, *_rest) in enumerate(waves):
                results = []
                for r in pending.result():
                    if "error" not in r:
                        results.append(r)
                        continue
                    for endpoint in r["endpoints"]:  # these files wait for the next run
                        summary.failed.setdefault(LABELS_FAILED if kind == "labels" else endpoint, r["error"])
                    if progress:
                        progress(r["files"])
                for r in results:  # columns tasks added, recorded before their parts commit
                    registry.absorb(r.get("schemas", []), run_id)
                if i + 1 < len(waves):
                    pending = jobs.submit(run_wave, waves[i + 1])
                records = list(
                    committers.map(
                        lambda r, k=kind, win=win: _commit_task(target, state, r, k, win),
                        results,
                    )
                )
                for r, record in zip(results, records):
                    for p in r["parts"]:
                        rows[p["table"]] += p["rows"]
                    summary.parts_written += len(record["parts"])
                    if kind == "captures":
                        summary.files_exported += len(r["sources"])
                        summary.counts.add(Counts(**r["counts"]))
                    else:
                        summary.label_files_exported += len(r["sources"])
                    if progress:
                        progress(r["files"])

        # tasks may have widened a column after others wrote it narrower: one schema per endpoint
        widen_parts(target, state, run_id, seq, registry, {e for (_, e) in registry.entries})
        summary.seconds = time.monotonic() - started
        _write_manifest(target, tree, summary)
        try:
            attempts = target.fs.ls(f"{target.meta}/tmp", detail=False)
        except FileNotFoundError:  # object stores: no temp object left, no folder
            attempts = []
        for d in attempts:  # this run's attempt folders
            if d.rstrip("/").rsplit("/", 1)[-1].startswith(run_id):
                target.fs.rm(d, recursive=True)
        return summary
    finally:
        target.unlock()


def _commit_task(target, state, r: dict, kind: str, win) -> dict:
    """Commit one task's parts (on the driver), with the windows of files read only in part."""
    files = [_file(d) for d in r["sources"]]
    windows = _partial_windows(files, set(r.get("partial", ())), win)
    return commit_files(target, state, r["run"], r["seq"], r["parts"], files, kind, windows)


def _cores(spark: SparkSession) -> int:
    sc = _context(spark)
    return (
        max(sc.defaultParallelism, 1)
        if sc
        else int(spark.conf.get("spark.default.parallelism", "8"))
    )


def _admit_new_endpoints(registry: Registry, fs, work: list, options, task_bytes: int,
                         task_files: int, run_id: str) -> dict[str, str]:
    """Endpoints the export has no schema record for get one from their first file group,
    decoded here on the driver, exactly as the local engine's first batch would decide; tasks
    then only conform (two tasks can never decide one endpoint's types differently).
    Returns the endpoints whose first group failed to decode, with why."""
    known = {e for (_, e) in registry.entries}
    new: dict[str, tuple] = {}  # endpoint -> (read spec of its first files, those files)
    for spec, files in work:  # in the order the local engine reads them (capture_work)
        for f in files:
            if f.endpoint not in known and new.setdefault(f.endpoint, (spec, []))[0] == spec:
                new[f.endpoint][1].append(f)
    failed = {}
    for endpoint, ((start, end, exclude, covered), fs_files) in new.items():
        group = _groups(fs_files, task_bytes, task_files)[0]
        try:
            result = process_captures(fetch(fs, group), options, start=start, end=end,
                                      exclude=exclude, covered=covered)
            registry.admit(registry.own_types(result), run_id)
        except (CaptureqError, OSError):
            raise  # the storage fails: no endpoint may commit
        except Exception as exc:  # noqa: BLE001 - this endpoint's files wait for the next run
            failed[endpoint] = failure_reason(exc)
    return failed


def _export_wave(
    spark, kind, src, so, out, out_so, options, run_id, first_seq, groups, win=None, schemas=()
) -> list[dict]:
    tasks = _task_frame(spark, groups)
    start, end, exclude, covered = win or (None, None, (), None)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fs = _fs(src, so)
        target = _Output(out, out_so)
        for task, group in _tasks(batches):
            seq = first_seq + task
            try:
                result = _export_task(fs, target, group, seq)
            except (CaptureqError, OSError):
                raise  # the storage fails: Spark retries the task, then fails the job
            except Exception as exc:  # noqa: BLE001 - these files wait for the next run
                result = {"seq": seq, "files": len(group), "error": failure_reason(exc),
                          "endpoints": sorted({f.endpoint or "" for f in group})}
            yield pa.RecordBatch.from_pydict(
                {"task": pa.array([task], pa.int32()), "result": [json.dumps(result, default=str)]}
            )

    def _export_task(fs, target, group, seq) -> dict:
        """Decode one task's files and write their parts; the driver commits them."""
        began = time.monotonic()
        batch = fetch(fs, group)
        if kind == "captures":
            r = process_captures(batch, options, start=start, end=end, exclude=exclude,
                                 covered=covered)
            registry = Registry(None, schemas)
            records, quarantine = _typed_records(registry, r, run_id)
            tables = {"captures": _split(r.captures, "inference_time", True), **records}
            if r.labels.num_rows:  # ground truth inside merged capture records
                tables["labels"] = _split(r.labels, "label_hour", False)
        else:
            r = process_labels(batch)
            registry, quarantine = None, r.quarantine
            tables = {"labels": _split(r.labels, "label_hour", False)}
        tables["quarantine"] = [("", quarantine)] if quarantine.num_rows else []
        # A folder of its own per attempt: retried or speculative attempts never collide.
        attempt_run = f"{run_id}-{seq:05d}-{uuid.uuid4().hex[:6]}"
        target.fs.makedirs(f"{target.meta}/tmp/{attempt_run}", exist_ok=True)
        parts = _write_parts(target, attempt_run, seq, tables)
        read = _read_whole(r.files, r.failed_files)
        result = {
            "run": attempt_run,
            "seq": seq,
            "parts": parts,
            "files": len(group),
            "sources": [_file_dict(f) for f in read],  # read (whole, or see "partial"): the driver commits them
            "partial": sorted(getattr(r, "partial", ())),  # urls read only in part
            "counts": asdict(r.counts),
            "schemas": [registry.entries[k] for k in registry.changed] if registry else [],
            "seconds": time.monotonic() - began,
        }
        return result

    collected = tasks.mapInArrow(run, _RESULTS).collect()
    return [json.loads(row.result) for row in sorted(collected, key=lambda r: r.task)]
