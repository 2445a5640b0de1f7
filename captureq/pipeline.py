"""scan → read → parse → decode, one bounded batch at a time.

:func:`process_captures` turns one :class:`~captureq.read.FileBatch` into the rows of every
table; :func:`run_captures` streams batches over a file list, fetching and decoding a few
batches at once on a thread pool (pyarrow, polars and numpy release the GIL, so every core
works) and yielding them in file order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from . import schema, window
from .decode import (
    DecodeOptions,
    SideResult,
    alignment_quarantine,
    conform,
    decide,
    decode_labels,
    decode_side,
)
from .pair import pair_records
from .parse import parse_captures, parse_labels
from .read import DEFAULT_BATCH_BYTES, FileBatch, Prefetch, Unreadable, fetch, plan_batches
from .scan import CaptureFile
from .views import PAYLOAD_TEXT

if TYPE_CHECKING:  # pragma: no cover
    import fsspec


@dataclass
class Counts:
    """Counts that must reconcile: ``lines_read == rows + quarantined_lines + outside_window``.

    ``outside_window`` counts lines of the objects read whose capture falls outside the time
    window (and ``line`` quarantine rows of objects read only as the window's margin, whose
    hour folder starts outside it): see :mod:`captureq.window`. ``unreadable`` lists the objects
    that could not be read (their count is ``files_failed``); ``retries``, the requests made
    again after a transient error.
    """

    files: int = 0
    files_failed: int = 0
    bytes_read: int = 0
    lines_read: int = 0
    blank_lines: int = 0
    rows: int = 0
    quarantined_lines: int = 0
    input_records: int = 0
    output_records: int = 0
    payloads_quarantined: int = 0
    values_quarantined: int = 0  # values that did not fit their column's type (stage 'value')
    embedded_labels: int = 0  # label rows from groundTruthData inside capture lines
    outside_window: int = 0
    retries: int = 0
    unreadable: list[Unreadable] = field(default_factory=list)

    def __post_init__(self) -> None:  # from JSON (Spark tasks): dicts back into values
        self.unreadable = [u if isinstance(u, Unreadable) else Unreadable(**u) for u in self.unreadable]

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def reconciles(self) -> bool:
        return self.lines_read == self.rows + self.quarantined_lines + self.outside_window


@dataclass
class BatchResult:
    """Every table's rows from one batch of files."""

    files: list[CaptureFile]
    captures: pa.Table
    inputs: pa.Table
    outputs: pa.Table
    quarantine: pa.Table
    counts: Counts = field(default_factory=Counts)
    failed_files: list[CaptureFile] = field(default_factory=list)
    pairs: pa.Table | None = None  # inputs beside outputs (captureq_pairs), built on request
    # labels carried inside the capture lines (groundTruthData of merged records)
    labels: pa.Table = field(default_factory=lambda: schema.empty(schema.LABELS))
    # urls of files with lines outside the window (and outside ``exclude``): read only in part
    partial: set[str] = field(default_factory=set)
    # per side ("input"/"output"): each endpoint's columns, their types and values in this batch
    profiles: dict = field(default_factory=dict)


def _count_stage(q: pa.Table, stage: str) -> int:
    if not q.num_rows:
        return 0
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(q.column("stage"), stage)).as_py() or 0)


SIDES = ("input", "output")


def _undecoded(captures: pa.Table) -> SideResult:
    return SideResult(schema.RECORD_KEYS.empty_table(), schema.empty(schema.QUARANTINE),
                      np.zeros(captures.num_rows, np.int64))


def process_captures(batch: FileBatch, options: DecodeOptions | None = None, *,
                     pairs: bool = False, sides: tuple[str, ...] = SIDES,
                     drop: tuple[str, ...] = (), start=None, end=None,
                     exclude: tuple = (), covered: tuple | None = None) -> BatchResult:
    """Parse and decode one batch of capture files (and pair inputs with outputs if asked).

    ``sides`` are the payloads to decode: ``()`` parses the lines only (the ``captures`` table),
    ``("input",)`` decodes the inputs too; outputs need the inputs (they align to their record
    counts), and the 'align' quarantine rows need both. ``drop``: ``captures`` columns the caller
    will not use (the raw payload text), released as soon as the batch is decoded.

    Only captures with ``start ≤ inference_time < end`` are kept and decoded (see
    :mod:`captureq.window`); the others are counted in ``Counts.outside_window``. ``exclude``
    lists intervals already exported (rows in them are left out too). ``BatchResult.partial``
    names the files with lines outside ``covered`` (default: the window and ``exclude``): what
    an export has not written from them yet.
    """
    if "output" in sides:
        sides = SIDES
    # no side decoded and the payload text dropped: the payloads are never read (count(*))
    parsed = parse_captures(batch, payload=bool(sides) or not set(PAYLOAD_TEXT) <= set(drop))
    start, end = window.bounds(start, end)
    captures, outside = window.filter_captures(parsed.table, start, end, exclude=exclude)
    margin = [f.url for f in batch.files
              if not window.hour_in_window(f.hour, start, end, exclude)]
    line_q, outside_lines = window.filter_line_quarantine(parsed.quarantine, margin)
    partial = window.partial_files(parsed.table, parsed.quarantine, batch.files, start, end,
                                   exclude, covered) if outside + outside_lines else set()
    rejected = parsed.payload_failures
    embedded = parsed.labels
    if outside:  # what belongs to a capture outside the window goes with it
        rejected, embedded, line_q = window.follow_captures(parsed.table, captures, rejected,
                                                            embedded, line_q)
    inputs = (decode_side(captures, "input", options, rejected=rejected.get("input", ())) if sides
              else _undecoded(captures))
    if "output" in sides:
        outputs = decode_side(captures, "output", options, input_counts=inputs.counts,
                              rejected=rejected.get("output", ()))
        align = alignment_quarantine(captures, inputs, outputs)
    else:
        outputs, align = _undecoded(captures), schema.empty(schema.QUARANTINE)
    # ground truth embedded in the capture lines (Model Monitor's merged records): always read,
    # since the labels view holds it whichever sides a query decodes
    labels, label_q = (decode_labels(embedded) if embedded is not None
                       else (schema.empty(schema.LABELS), schema.empty(schema.QUARANTINE)))
    quarantine = pa.concat_tables([line_q, inputs.quarantine, outputs.quarantine, align,
                                   label_q])
    counts = Counts(
        files=len(batch.files),
        files_failed=len(batch.failed),
        bytes_read=batch.nbytes,
        lines_read=parsed.lines_read,
        blank_lines=parsed.blank_lines,
        rows=captures.num_rows,
        quarantined_lines=_count_stage(line_q, "line"),
        input_records=inputs.records.num_rows,
        output_records=outputs.records.num_rows,
        payloads_quarantined=inputs.quarantine.num_rows + outputs.quarantine.num_rows,
        embedded_labels=labels.num_rows,
        outside_window=outside + outside_lines,
        retries=batch.retries,
        unreadable=batch.unreadable,
    )
    if drop:
        captures = captures.drop_columns([c for c in drop if c in captures.column_names])
    return BatchResult(batch.files, captures, inputs.records, outputs.records, quarantine, counts,
                       [f for f, _ in batch.failed],
                       pair_records(inputs.records, outputs.records) if pairs and sides else None,
                       labels, partial, {"input": inputs.profile, "output": outputs.profile})


def unify_types(results: list[BatchResult], decisions: dict | None = None, *,
                pairs: bool = False, options: DecodeOptions | None = None) -> dict:
    """Give every batch of one read the same column types per endpoint and side.

    The types are decided over all ``results`` with :func:`captureq.decode.decide`, the types
    ``options`` declares winning (or taken from ``decisions``); values that do not fit a declared
    type become ``value`` quarantine rows, counted in ``counts.values_quarantined``. Pairs are (re)built from the conformed records if asked.
    Returns the decisions, ``{"input": ..., "output": ...}``.
    """
    if decisions is None:
        from .decode.unify import declared_types

        decisions = {side: decide([r.profiles.get(side, {}) for r in results], declared_types(options, side))
                     for side in ("input", "output")}
    for r in results:
        qs = [r.quarantine]
        changed = False
        for side, attr in (("input", "inputs"), ("output", "outputs")):
            before = getattr(r, attr)
            table, q = conform(before, r.captures, decisions[side], side)
            if q.num_rows or not table.schema.equals(before.schema):
                setattr(r, attr, table)
                changed = True
            qs.append(q)
            r.counts.values_quarantined += q.num_rows
        if any(q.num_rows for q in qs[1:]):
            r.quarantine = pa.concat_tables(qs)
        if changed:
            r.pairs = None
        if pairs and r.pairs is None:
            r.pairs = pair_records(r.inputs, r.outputs)
    return decisions


@dataclass
class LabelBatchResult:
    files: list[CaptureFile]
    labels: pa.Table
    quarantine: pa.Table
    counts: Counts = field(default_factory=Counts)
    failed_files: list[CaptureFile] = field(default_factory=list)


def process_labels(batch: FileBatch) -> LabelBatchResult:
    """Parse and decode one batch of ground-truth files."""
    parsed = parse_labels(batch)
    labels, q = decode_labels(parsed.table, parsed.payload_failures.get("label", ()))
    counts = Counts(
        files=len(batch.files),
        files_failed=len(batch.failed),
        bytes_read=batch.nbytes,
        lines_read=parsed.lines_read,
        blank_lines=parsed.blank_lines,
        rows=parsed.table.num_rows,
        quarantined_lines=_count_stage(parsed.quarantine, "line"),
        payloads_quarantined=q.num_rows,
        retries=batch.retries,
        unreadable=batch.unreadable,
    )
    return LabelBatchResult(batch.files, labels, pa.concat_tables([parsed.quarantine, q]), counts,
                            [f for f, _ in batch.failed])


def default_workers() -> int:
    """Batches decoded at once: one per core (at most 4), or ``CAPTUREQ_WORKERS``.

    A cap on pyarrow's thread pool (``pyarrow.set_cpu_count``) caps this too: the batches'
    work is mostly pyarrow's, and a process limited to one core should not run two batches.
    """
    env = os.environ.get("CAPTUREQ_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(4, os.cpu_count() or 1, pa.cpu_count()))


def _stream(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], work, batch_bytes: int,
            workers: int | None = None, first: Prefetch | None = None) -> Iterator:
    """Fetch and process batches on ``workers`` threads, yielding results in file order.

    pyarrow, polars and numpy release the GIL, but a batch also has single-threaded stretches
    (offsets, glue), so overlapping batches is what keeps every core busy. At most
    ``workers + 1`` batches are in memory at once. ``first``: the first batch, already being
    read (:class:`~captureq.read.Prefetch`).
    """
    groups = plan_batches(files, batch_bytes)
    if not groups:
        return
    workers = workers or default_workers()

    def task(group):
        batch = first.take(group) if first is not None else None
        return work(batch if batch is not None else fetch(fs, group))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="captureq") as pool:
        pending = deque(pool.submit(task, g) for g in groups[: workers + 1])
        next_group = len(pending)
        while pending:
            result = pending.popleft().result()
            if next_group < len(groups):
                pending.append(pool.submit(task, groups[next_group]))
                next_group += 1
            yield result


def run_captures(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], options: DecodeOptions | None = None,
                 *, batch_bytes: int = DEFAULT_BATCH_BYTES, pairs: bool = False,
                 workers: int | None = None, sides: tuple[str, ...] = SIDES,
                 drop: tuple[str, ...] = (), start=None, end=None,
                 exclude: tuple = (), covered: tuple | None = None,
                 first: Prefetch | None = None) -> Iterator[BatchResult]:
    """Yield a :class:`BatchResult` per batch of ``files``, in file order, keeping the captures
    in ``[start, end)`` and outside the ``exclude`` intervals (``sides``, ``drop``: see
    :func:`process_captures`; ``first``: the first batch, already being read)."""
    yield from _stream(
        fs, files,
        lambda b: process_captures(b, options, pairs=pairs, sides=sides, drop=drop, start=start,
                                   end=end, exclude=exclude, covered=covered),
        batch_bytes, workers, first,
    )


def run_labels(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], *,
               batch_bytes: int = DEFAULT_BATCH_BYTES) -> Iterator[LabelBatchResult]:
    """Yield a :class:`LabelBatchResult` per batch of ground-truth ``files``."""
    yield from _stream(fs, files, process_labels, batch_bytes)

