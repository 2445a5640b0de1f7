"""scan → read → parse → decode, one bounded batch at a time.

:func:`process_captures` turns one :class:`~captureq.read.FileBatch` into the rows of every
table; :func:`run_captures` streams batches over a file list, reading the next batch while the
current one is parsed (pyarrow releases the GIL, so both cores work).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import fsspec
import pyarrow as pa

from . import schema
from .decode import DecodeOptions, alignment_quarantine, decode_labels, decode_side
from .parse import parse_captures, parse_labels
from .read import DEFAULT_BATCH_BYTES, FileBatch, fetch, plan_batches
from .scan import CaptureFile


@dataclass
class Counts:
    """Counts that must reconcile: ``lines_read == rows + quarantined_lines``."""

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

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def reconciles(self) -> bool:
        return self.lines_read == self.rows + self.quarantined_lines


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


def _count_stage(q: pa.Table, stage: str) -> int:
    if not q.num_rows:
        return 0
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(q.column("stage"), stage)).as_py() or 0)


def process_captures(batch: FileBatch, options: DecodeOptions | None = None) -> BatchResult:
    """Parse and decode one batch of capture files."""
    parsed = parse_captures(batch)
    captures = parsed.table
    inputs = decode_side(captures, "input", options)
    outputs = decode_side(captures, "output", options, input_counts=inputs.counts)
    align = alignment_quarantine(captures, inputs, outputs)
    quarantine = pa.concat_tables([parsed.quarantine, inputs.quarantine, outputs.quarantine, align])
    counts = Counts(
        files=len(batch.files),
        files_failed=len(batch.failed),
        bytes_read=batch.nbytes,
        lines_read=parsed.lines_read,
        blank_lines=parsed.blank_lines,
        rows=captures.num_rows,
        quarantined_lines=_count_stage(parsed.quarantine, "line"),
        input_records=inputs.records.num_rows,
        output_records=outputs.records.num_rows,
        payloads_quarantined=inputs.quarantine.num_rows + outputs.quarantine.num_rows,
    )
    return BatchResult(batch.files, captures, inputs.records, outputs.records, quarantine, counts,
                       [f for f, _ in batch.failed])


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
    labels, q = decode_labels(parsed.table)
    counts = Counts(
        files=len(batch.files),
        files_failed=len(batch.failed),
        bytes_read=batch.nbytes,
        lines_read=parsed.lines_read,
        blank_lines=parsed.blank_lines,
        rows=parsed.table.num_rows,
        quarantined_lines=_count_stage(parsed.quarantine, "line"),
        payloads_quarantined=q.num_rows,
    )
    return LabelBatchResult(batch.files, labels, pa.concat_tables([parsed.quarantine, q]), counts,
                            [f for f, _ in batch.failed])


def _stream(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], work, batch_bytes: int) -> Iterator:
    groups = plan_batches(files, batch_bytes)
    if not groups:
        return
    # Prefetch the next batch's bytes while this one is parsed: at most two batches in memory.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="captureq-read") as pool:
        pending = pool.submit(fetch, fs, groups[0])
        for i in range(len(groups)):
            batch = pending.result()
            if i + 1 < len(groups):
                pending = pool.submit(fetch, fs, groups[i + 1])
            yield work(batch)


def run_captures(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], options: DecodeOptions | None = None,
                 *, batch_bytes: int = DEFAULT_BATCH_BYTES) -> Iterator[BatchResult]:
    """Yield a :class:`BatchResult` per batch of ``files``."""
    yield from _stream(fs, files, lambda b: process_captures(b, options), batch_bytes)


def run_labels(fs: fsspec.AbstractFileSystem, files: list[CaptureFile], *,
               batch_bytes: int = DEFAULT_BATCH_BYTES) -> Iterator[LabelBatchResult]:
    """Yield a :class:`LabelBatchResult` per batch of ground-truth ``files``."""
    yield from _stream(fs, files, process_labels, batch_bytes)


def empty_records() -> pa.Table:
    return schema.RECORD_KEYS.empty_table()
