"""Turn the bytes of capture (or ground-truth) files into typed Arrow tables, in bulk.

A batch of files is concatenated into one buffer and handed to pyarrow's multi-threaded JSON
reader once, with an explicit schema. Line boundaries are found with numpy, so every row knows
its ``source_file`` and ``line_number`` without a Python loop per record.

When the reader rejects the buffer (a malformed line somewhere), the batch is bisected: halves
that parse are kept, and single lines that do not parse become quarantine rows with the
reader's reason. A batch with ``b`` bad lines costs ``O(b log n)`` extra reader calls.

Counts always reconcile: non-blank lines read = rows parsed + quarantine rows of stage 'line'.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from . import schema
from .read import FileBatch

_PAYLOAD = pa.struct(
    [
        ("observedContentType", pa.string()),
        ("mode", pa.string()),
        ("data", pa.string()),
        ("encoding", pa.string()),
    ]
)

RAW_CAPTURE = pa.schema(
    [
        ("captureData", pa.struct([("endpointInput", _PAYLOAD), ("endpointOutput", _PAYLOAD)])),
        (
            "eventMetadata",
            pa.struct([("eventId", pa.string()), ("inferenceId", pa.string()), ("inferenceTime", pa.string())]),
        ),
        ("eventVersion", pa.string()),
    ]
)

RAW_LABEL = pa.schema(
    [
        ("groundTruthData", pa.struct([("data", pa.string()), ("encoding", pa.string())])),
        ("eventMetadata", pa.struct([("eventId", pa.string())])),
        ("eventVersion", pa.string()),
    ]
)

MAX_RAW_CHARS = 1 << 20  # quarantine keeps at most 1 MiB of a bad line's text
_ROW_SUFFIX = re.compile(r"\s*in row \d+\s*$")
_BOM = b"\xef\xbb\xbf"


@dataclass
class Lines:
    """A batch's buffer and where each non-blank line is."""

    buf: bytes
    starts: np.ndarray  # byte offset of each non-blank line
    ends: np.ndarray  # offset one past its last byte (before the newline)
    file_index: np.ndarray  # index into batch.files
    line_number: np.ndarray  # 1-based line number within its file
    blank: int  # blank lines skipped

    def text(self, i: int) -> str:
        raw = self.buf[self.starts[i]: self.ends[i]]
        return raw[:MAX_RAW_CHARS].decode("utf-8", errors="replace").rstrip("\r")

    def join(self, idx: np.ndarray) -> bytes:
        return b"\n".join(self.buf[self.starts[i]: self.ends[i]] for i in idx) + b"\n"


def split_lines(batch: FileBatch) -> Lines:
    """Locate the non-blank lines of every file in ``batch`` (vectorized with numpy)."""
    blobs = []
    for b in batch.blobs:
        if b.startswith(_BOM):
            b = b"   " + b[3:]  # keep offsets; JSON allows leading whitespace
        if b and not b.endswith(b"\n"):
            b += b"\n"
        blobs.append(b)
    buf = b"".join(blobs)
    arr = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    file_ends = np.cumsum([len(b) for b in blobs])
    file_index = np.searchsorted(file_ends, starts, side="right")
    first_line = np.searchsorted(file_index, np.arange(len(blobs)), side="left")
    line_number = np.arange(len(starts)) - first_line[file_index] + 1 if len(blobs) else starts
    # A JSON object line has at least 2 bytes ("{}"); shorter lines, and short all-space lines, are blank.
    lengths = ends - starts
    keep = np.ones(len(starts), dtype=bool)
    for i in np.flatnonzero(lengths < 8):
        if not buf[starts[i]: ends[i]].strip():
            keep[i] = False
    return Lines(buf, starts[keep], ends[keep], file_index[keep], line_number[keep].astype(np.int64),
                 int((~keep).sum()))


def _clean_reason(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    msg = _ROW_SUFFIX.sub("", msg)
    msg = msg.replace("JSON parse error: ", "")
    return f"invalid JSON line: {msg}"


def _read(data: bytes, raw_schema: pa.Schema, block_size: int) -> pa.Table:
    return pj.read_json(
        pa.py_buffer(data),
        read_options=pj.ReadOptions(block_size=block_size, use_threads=True),
        parse_options=pj.ParseOptions(explicit_schema=raw_schema, unexpected_field_behavior="ignore"),
    )


def parse_json_lines(lines: Lines, raw_schema: pa.Schema) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Parse every non-blank line against ``raw_schema``.

    Returns the parsed table, the line positions (indexes into ``lines``) of its rows, and
    ``(line position, reason)`` for the lines that did not parse.
    """
    n = len(lines.starts)
    if n == 0:
        return raw_schema.empty_table(), np.zeros(0, dtype=np.int64), []
    longest = int((lines.ends - lines.starts).max())
    block_size = max(4 << 20, longest + 64)
    parts: list[tuple[np.ndarray, pa.Table]] = []
    bad: list[tuple[int, str]] = []
    everything = np.arange(n)
    # Fast path: the whole batch in one call (no blank lines to remove means the buffer is usable as-is).
    whole = lines.buf if len(lines.buf) and lines.blank == 0 else None
    stack = [(everything, whole)]
    while stack:
        idx, data = stack.pop()
        if data is None:
            data = lines.join(idx)
        try:
            table = _read(data, raw_schema, block_size)
            if table.num_rows == len(idx):
                parts.append((idx, table))
                continue
            error: Exception = ValueError(f"line holds {table.num_rows} JSON values, expected one")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            error = exc
        if len(idx) == 1:
            bad.append((int(idx[0]), _clean_reason(error)))
            continue
        mid = len(idx) // 2
        stack.append((idx[mid:], None))
        stack.append((idx[:mid], None))
    if not parts:
        return raw_schema.empty_table(), np.zeros(0, dtype=np.int64), bad
    parts.sort(key=lambda p: p[0][0])
    table = pa.concat_tables([t for _, t in parts])
    positions = np.concatenate([i for i, _ in parts])
    return table, positions, bad


def _file_keys(batch: FileBatch) -> list[str]:
    return [hashlib.sha1(f.rel.encode()).hexdigest()[:16] for f in batch.files]


def _row_ids(batch: FileBatch, lines: Lines, positions: np.ndarray) -> pa.Array:
    """``{hash of file's relative path}:{line}``: unique and the same on every storage."""
    keys = pa.array(_file_keys(batch), pa.string())
    prefix = keys.take(pa.array(lines.file_index[positions]))
    line = pa.array(lines.line_number[positions]).cast(pa.string())
    return pc.binary_join_element_wise(prefix, line, ":")


def _source(batch: FileBatch, lines: Lines, positions: np.ndarray) -> tuple[pa.Array, pa.Array]:
    urls = pa.array([f.url for f in batch.files], pa.string())
    fidx = pa.array(lines.file_index[positions])
    return urls.take(fidx), pa.array(lines.line_number[positions], pa.int64())


def parse_time(values: pa.Array) -> pa.Array:
    """ISO 8601 strings to UTC timestamps; unparseable values become null.

    Accepts ``Z``, numeric offsets and fractional seconds; values without an offset are UTC.
    """
    try:
        return values.cast(schema.TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    s = pl.from_arrow(values)
    aware = s.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    naive = s.str.to_datetime(strict=False, time_unit="us").dt.replace_time_zone("UTC")
    return aware.fill_null(naive).to_arrow().cast(schema.TIMESTAMP)


def _quarantine(stage: str, source: pa.Array, line: pa.Array, ids: pa.Array | None, reasons: pa.Array,
                raw: pa.Array) -> pa.Table:
    n = len(source)
    return pa.table(
        {
            "stage": pa.array([stage] * n, pa.string()),
            "source_file": source,
            "line_number": line,
            "capture_id": ids if ids is not None else pa.nulls(n, pa.string()),
            "reason": reasons,
            "raw": raw,
        },
        schema=schema.QUARANTINE,
    )


def _line_quarantine(batch: FileBatch, lines: Lines, bad: list[tuple[int, str]]) -> pa.Table:
    if not bad:
        return schema.empty(schema.QUARANTINE)
    pos = np.array([b[0] for b in bad], dtype=np.int64)
    source, line = _source(batch, lines, pos)
    raw = pa.array([lines.text(int(i)) for i in pos], pa.string())
    return _quarantine("line", source, line, None, pa.array([b[1] for b in bad], pa.string()), raw)


def _file_quarantine(batch: FileBatch) -> pa.Table:
    if not batch.failed:
        return schema.empty(schema.QUARANTINE)
    n = len(batch.failed)
    return _quarantine(
        "file",
        pa.array([f.url for f, _ in batch.failed], pa.string()),
        pa.nulls(n, pa.int64()),
        None,
        pa.array([r for _, r in batch.failed], pa.string()),
        pa.nulls(n, pa.string()),
    )


@dataclass
class Parsed:
    """Rows parsed from one batch, the lines quarantined, and the counts that must reconcile."""

    table: pa.Table
    quarantine: pa.Table
    lines_read: int
    blank_lines: int


def _reject(table: pa.Table, positions: np.ndarray, invalid: np.ndarray, reasons: np.ndarray,
            batch: FileBatch, lines: Lines) -> tuple[pa.Table, np.ndarray, pa.Table]:
    """Move rows flagged ``invalid`` from ``table`` to a stage-'line' quarantine table."""
    if not invalid.any():
        return table, positions, schema.empty(schema.QUARANTINE)
    bad_pos = positions[invalid]
    q = _line_quarantine(batch, lines, list(zip(bad_pos.tolist(), reasons[invalid].tolist())))
    keep = pa.array(~invalid)
    return table.filter(keep), positions[~invalid], q


def _missing(col: pa.Array) -> np.ndarray:
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def parse_captures(batch: FileBatch) -> Parsed:
    """Decode a batch of capture files into rows of the ``captures`` schema."""
    lines = split_lines(batch)
    raw, positions, bad = parse_json_lines(lines, RAW_CAPTURE)
    quarantine = [_file_quarantine(batch), _line_quarantine(batch, lines, bad)]
    meta = raw.column("eventMetadata").combine_chunks()
    cdata = raw.column("captureData").combine_chunks()
    inp = cdata.field("endpointInput")
    out = cdata.field("endpointOutput")
    event_id = meta.field("eventId")
    time_text = meta.field("inferenceTime")
    times = parse_time(time_text)
    # Row-level checks, vectorized; the first failing check names the reason.
    reasons = np.full(len(raw), "", dtype=object)
    invalid = np.zeros(len(raw), dtype=bool)
    checks = [
        (_missing(meta) | _missing(event_id), "missing eventMetadata.eventId"),
        (_missing(time_text), "missing eventMetadata.inferenceTime"),
        (_missing(times) & ~_missing(time_text), "eventMetadata.inferenceTime is not an ISO 8601 time"),
        ((_missing(inp) | _missing(inp.field("data"))) & (_missing(out) | _missing(out.field("data"))),
         "captureData has neither endpointInput nor endpointOutput data"),
    ]
    for mask, reason in checks:
        new = mask & ~invalid
        reasons[new] = reason
        invalid |= new
    source, line = _source(batch, lines, positions)
    table = pa.table(
        {
            "capture_id": _row_ids(batch, lines, positions),
            "endpoint": pa.array([f.endpoint for f in batch.files], pa.string()).take(
                pa.array(lines.file_index[positions])),
            "variant": pa.array([f.variant for f in batch.files], pa.string()).take(
                pa.array(lines.file_index[positions])),
            "event_id": event_id,
            "inference_id": meta.field("inferenceId"),
            "inference_time": times,
            "event_version": raw.column("eventVersion").combine_chunks(),
            "input_observed_content_type": inp.field("observedContentType"),
            "input_encoding": inp.field("encoding"),
            "input_mode": inp.field("mode"),
            "input_data": inp.field("data"),
            "output_observed_content_type": out.field("observedContentType"),
            "output_encoding": out.field("encoding"),
            "output_mode": out.field("mode"),
            "output_data": out.field("data"),
            "source_file": source,
            "line_number": line,
        },
        schema=schema.CAPTURES,
    )
    table, positions, q = _reject(table, positions, invalid, reasons, batch, lines)
    quarantine.append(q)
    return Parsed(table, pa.concat_tables(quarantine), len(lines.starts), lines.blank)


def parse_labels(batch: FileBatch) -> Parsed:
    """Decode a batch of ground-truth files into raw label rows (payload still encoded).

    The returned table has ``label_id, event_id, label_hour, encoding, data, event_version,
    source_file, line_number``; :mod:`captureq.decode` turns ``data`` into ``ground_truth``.
    """
    lines = split_lines(batch)
    raw, positions, bad = parse_json_lines(lines, RAW_LABEL)
    quarantine = [_file_quarantine(batch), _line_quarantine(batch, lines, bad)]
    gt = raw.column("groundTruthData").combine_chunks()
    meta = raw.column("eventMetadata").combine_chunks()
    event_id = meta.field("eventId")
    reasons = np.full(len(raw), "", dtype=object)
    invalid = np.zeros(len(raw), dtype=bool)
    for mask, reason in [
        (_missing(meta) | _missing(event_id), "missing eventMetadata.eventId"),
        (_missing(gt) | _missing(gt.field("data")), "missing groundTruthData.data"),
    ]:
        new = mask & ~invalid
        reasons[new] = reason
        invalid |= new
    source, line = _source(batch, lines, positions)
    hours = pa.array([f.hour for f in batch.files], schema.TIMESTAMP).take(pa.array(lines.file_index[positions]))
    table = pa.table(
        {
            "label_id": _row_ids(batch, lines, positions),
            "event_id": event_id,
            "label_hour": hours,
            "encoding": gt.field("encoding"),
            "data": gt.field("data"),
            "event_version": raw.column("eventVersion").combine_chunks(),
            "source_file": source,
            "line_number": line,
        }
    )
    table, positions, q = _reject(table, positions, invalid, reasons, batch, lines)
    quarantine.append(q)
    return Parsed(table, pa.concat_tables(quarantine), len(lines.starts), lines.blank)
