"""Payload decoders: the ``data`` of captures and labels → one row per record.

``decode_side(captures, "input")`` picks each payload's format from its ``encoding`` and
``observedContentType`` (BASE64 payloads are base64-decoded first, then read as CSV/JSON when
the content type says so, and as npy or RecordIO-protobuf by :mod:`.binary`), decodes each
format in bulk and joins the capture keys back on. An empty payload, whatever its encoding, is
quarantined with one reason (:data:`EMPTY_REASON`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from ..options import DecodeOptions
from .binary import decode_binary
from .common import RECORD_INDEX, ROW, Decoded, concat, concat_tables
from .csv import decode_csv
from .json import decode_json, decode_json_lines
from .names import column_name, key_path
from .unify import Decision, Profile, conform, decide, profile

CSV_TYPES = ("text/csv", "text/x-csv", "application/csv")
JSON_TYPES = ("application/json", "text/json")
JSONLINES_TYPES = (
    "application/jsonlines",
    "application/x-jsonlines",
    "application/jsonl",
    "application/x-ndjson",
)

FORMATS = ("csv", "json", "jsonlines", "binary")


def classify(encoding: pa.Array, content_type: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Payload format per row as an index into :data:`FORMATS` (-1: unknown encoding), and
    whether the row is base64-encoded; computed in one vectorized pass (Arrow kernels: no
    polars import on the query path)."""
    encoding, content_type = (a.cast(pa.string()) if pa.types.is_null(a.type) else a
                              for a in (encoding, content_type))
    enc = pc.utf8_upper(pc.utf8_trim_whitespace(encoding))
    media = media_types(content_type)

    def one_of(values) -> np.ndarray:
        return pc.is_in(media, value_set=pa.array(list(values), pa.string())).to_numpy(zero_copy_only=False)

    def equals(text: str) -> np.ndarray:
        return pc.fill_null(pc.equal(enc, text), False).to_numpy(zero_copy_only=False)

    csv, json, jsonl, binary = (np.int8(FORMATS.index(f)) for f in FORMATS)
    is_jsonl = one_of(JSONLINES_TYPES)
    is_json = one_of(JSON_TYPES) | pc.ends_with(media, "+json").to_numpy(zero_copy_only=False)
    from_media = np.select([one_of(CSV_TYPES), is_jsonl, is_json], [csv, jsonl, json], binary)
    is_base64 = equals("BASE64")
    fmt = np.select(
        [equals("CSV"), equals("JSON"), is_base64],
        [np.full(len(media), csv), np.where(is_jsonl, jsonl, json), from_media],
        np.int8(-1),
    ).astype(np.int8)
    return fmt, is_base64


def media_types(content_type: pa.Array) -> pa.Array:
    """Each Content-Type's media type, lower case, without parameters (``""`` when absent)."""
    if pa.types.is_null(content_type.type):
        content_type = content_type.cast(pa.string())
    first = pc.list_element(pc.split_pattern(pc.fill_null(content_type, ""), ";", max_splits=1), 0)
    return pc.utf8_lower(pc.utf8_trim_whitespace(first))


EMPTY_REASON = "empty payload: no data to decode"


def empty_payloads(text: pa.Array, binary: pa.Array | None, b64_rows: np.ndarray,
                   binary_rows: np.ndarray) -> np.ndarray:
    """Rows whose payload holds nothing: text that is empty or only whitespace, base64 that
    decodes to no bytes. The same for every encoding, so an empty payload is one reason."""
    n = len(text)
    lengths = pc.fill_null(pc.binary_length(text), -1).to_numpy(zero_copy_only=False)
    empty = lengths == 0
    short = np.flatnonzero((lengths > 0) & (lengths < 64))
    if len(short):
        blank = pc.equal(pc.utf8_trim_whitespace(text.take(pa.array(short))), "")
        empty[short[pc.fill_null(blank, False).to_numpy(zero_copy_only=False)]] = True
    if binary is not None and len(b64_rows):
        sizes = pc.fill_null(pc.binary_length(binary), -1).to_numpy(zero_copy_only=False)
        empty[b64_rows[binary_rows & (sizes == 0)]] = True
    return empty[:n]


def base64_decode(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Decode base64 strings to bytes; returns (binary array, mask of invalid values)."""
    import polars as pl  # imported on first use: not at start-up

    s = pl.from_arrow(texts)
    out = s.str.strip_chars().str.decode("base64", strict=False)
    invalid = (out.is_null() & s.is_not_null()).to_numpy()
    return out.to_arrow().cast(pa.binary()), invalid


def to_text(data: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Bytes → UTF-8 strings; returns (strings, mask of values that were not valid UTF-8)."""
    try:
        return data.cast(pa.string()), np.zeros(len(data), dtype=bool)
    except pa.ArrowInvalid:
        values, bad = [], []
        for b in data.to_pylist():  # error path only: find which values are not UTF-8
            try:
                values.append(None if b is None else b.decode("utf-8"))
                bad.append(False)
            except UnicodeDecodeError:
                values.append(None)
                bad.append(True)
        return pa.array(values, pa.string()), np.array(bad, dtype=bool)


@dataclass
class SideResult:
    """Records of one side (inputs or outputs) and the quarantine rows it produced."""

    records: pa.Table
    quarantine: pa.Table
    counts: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # records per capture row
    profile: Profile = field(default_factory=dict)  # per endpoint: its columns' types and values


def _quarantine(
    stage: str, rows: np.ndarray, reasons: list[str], captures: pa.Table, raw: pa.Array
) -> pa.Table:
    idx = pa.array(rows, pa.int64())
    return schema.quarantine_rows(
        {
            "stage": pa.array([stage] * len(rows), pa.string()),
            "source_file": captures.column("source_file").take(idx),
            "line_number": captures.column("line_number").take(idx),
            "capture_id": captures.column("capture_id").take(idx),
            "reason": pa.array(reasons, pa.string()),
            "raw": raw.take(idx),
        }
    )


def _scatter(as_text: pa.Array, not_utf8: np.ndarray, target: np.ndarray, n: int) -> pa.Array:
    """The good texts at their capture rows ``target`` (any text elsewhere: masked by the caller)."""
    scatter = np.full(n, -1)
    scatter[target] = np.arange(len(target))
    good_text = as_text.filter(pa.array(~not_utf8)) if not_utf8.any() else as_text
    return good_text.take(pa.array(np.where(scatter >= 0, scatter, 0)))


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Positions grouped by key, in order of first appearance."""
    if len(keys) == 0:
        return []
    if (keys == keys[0]).all():  # one key (a batch is usually one endpoint): skip the sort
        return [np.arange(len(keys))]
    uniq, inverse = np.unique(keys.astype(str), return_inverse=True)
    if len(uniq) == 1:
        return [np.arange(len(keys))]
    return [np.flatnonzero(inverse == g) for g in range(len(uniq))]


def decode_side(
    captures: pa.Table,
    side: str,
    options: DecodeOptions | None = None,
    input_counts: np.ndarray | None = None,
    *,
    lists_are_records: bool = False,
    rejected: Sequence[tuple[int, str]] = (),
) -> SideResult:
    """Decode the ``side`` ("input" or "output") payloads of ``captures`` into records.

    ``input_counts`` (records per capture row, from decoding the inputs first) lets output
    payloads be aligned with their inputs: a one-line output of N values answering N input rows
    becomes N records. ``rejected`` lists ``(row, reason)`` for payloads already known to be
    unusable (e.g. ``data`` that was a JSON number, see
    :attr:`captureq.parse.Parsed.payload_failures`): they are quarantined, not decoded.
    Returns records keyed by ``capture_id`` + ``record_index``.
    """
    options = options or DecodeOptions()
    limit = options.column_limit()
    n = captures.num_rows
    data = captures.column(f"{side}_data").combine_chunks()
    encoding = captures.column(f"{side}_encoding").combine_chunks()
    ctype = captures.column(f"{side}_observed_content_type").combine_chunks()
    present = ~np.asarray(data.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    formats, base64_rows = classify(encoding, ctype)
    endpoints = captures.column("endpoint").combine_chunks().to_numpy(zero_copy_only=False)
    stage = side
    failures: list[tuple[int, str]] = list(rejected)
    if failures:
        present = present.copy()
        present[[r for r, _ in failures]] = False
    unknown = present & (formats < 0)
    for r in np.flatnonzero(unknown):
        enc = encoding[int(r)].as_py()
        failures.append((int(r), f"unknown encoding {enc!r}; expected CSV, JSON or BASE64"))
    # Text of every payload: base64 ones decoded (bytes kept for binary formats).
    is_b64 = present & ~unknown & base64_rows
    text = data
    binary = None
    if is_b64.any():
        b64_rows = np.flatnonzero(is_b64)
        every = len(b64_rows) == n  # the usual case: no copy of the payloads to decode
        decoded, invalid = base64_decode(data if every else data.take(pa.array(b64_rows)))
        for r in b64_rows[invalid]:
            failures.append((int(r), "invalid base64 data"))
        binary = decoded
        textual = (formats[b64_rows] != FORMATS.index("binary")) & ~invalid
        all_text = bool(textual.all())
        as_text, not_utf8 = to_text(decoded if all_text else decoded.filter(pa.array(textual)))
        for r in b64_rows[textual][not_utf8]:
            failures.append(
                (int(r), f"base64 payload declared {ctype[int(r)].as_py()!r} is not UTF-8 text")
            )
        # scatter decoded text back into a full-length array
        full_mask = np.zeros(n, dtype=bool)
        target = b64_rows[textual][~not_utf8]
        full_mask[target] = True
        base = (pa.nulls(n, pa.string()) if every
                else pc.if_else(pa.array(is_b64), pa.nulls(n, pa.string()), data))
        if every and len(target) == n:  # every row decoded to text, in order: nothing to scatter
            text = as_text
        elif len(target):
            text = pc.if_else(pa.array(full_mask), _scatter(as_text, not_utf8, target, n), base)
        else:
            text = base
    b64_binary = (np.zeros(0, dtype=bool) if binary is None
                  else (formats[np.flatnonzero(is_b64)] == FORMATS.index("binary")))
    empty = present & ~unknown & empty_payloads(text, binary, np.flatnonzero(is_b64), b64_binary)
    if empty.any():
        taken = {r for r, _ in failures}
        failures += [(int(r), EMPTY_REASON) for r in np.flatnonzero(empty) if int(r) not in taken]
    bad_rows = {r for r, _ in failures}
    parts: list[Decoded] = []
    side_profile: Profile = {}
    for code, fmt in enumerate(FORMATS):
        mask = present & (formats == code)
        if bad_rows:
            mask &= ~np.isin(np.arange(n), list(bad_rows))
        rows_fmt = np.flatnonzero(mask)
        if not len(rows_fmt):
            continue
        for group in _groups(endpoints[rows_fmt]):
            rows = rows_fmt[group]
            endpoint = endpoints[rows[0]]
            names = options.get("names", side, endpoint)
            if fmt == "binary":
                pos = np.searchsorted(np.flatnonzero(is_b64), rows)
                d = decode_binary(binary.take(pa.array(pos)),
                                  media_types(ctype.take(pa.array(rows))).to_numpy(zero_copy_only=False),
                                  names, max_columns=limit)
            else:
                # every row (the usual case: one format, one endpoint) needs no copy
                sub = text if len(rows) == n else text.take(pa.array(rows))
                counts = None if input_counts is None else input_counts[rows]
                if fmt == "csv":
                    split = None
                    if side == "output" and counts is not None:
                        one_line = ~pc.match_substring(pc.utf8_trim(sub, "\r\n"), "\n").to_numpy(
                            zero_copy_only=False
                        )
                        commas = pc.count_substring(sub, ",").to_numpy(zero_copy_only=False) + 1
                        split = one_line & (counts > 1) & (commas == counts)
                    d = decode_csv(sub, names, split_single_line=split, max_columns=limit,
                                   text_columns=options.text_columns(side, endpoint))
                elif fmt == "json":
                    d = decode_json(
                        sub,
                        names,
                        side=side,
                        path=options.get("path", side, endpoint),
                        input_counts=counts,
                        lists_are_records=lists_are_records,
                        max_columns=limit,
                    )
                else:
                    d = decode_json_lines(sub, names, max_columns=limit)
            # map positions within the group back to capture rows
            d.table = d.table.set_column(
                0, ROW, pa.array(rows, pa.int64()).take(d.table.column(ROW))
            )
            d.failures = [(int(rows[i]), reason) for i, reason in d.failures]
            profile(d.table, None if endpoint is None else str(endpoint), side_profile)
            parts.append(d)
    decoded = concat(parts)
    failures += decoded.failures
    table = decoded.table
    counts = (
        np.bincount(table.column(ROW).to_numpy(), minlength=n)
        if table.num_rows
        else np.zeros(n, np.int64)
    )
    records = _attach_keys(table, captures)
    failures.sort()
    q = (
        _quarantine(
            stage,
            np.array([r for r, _ in failures], dtype=np.int64),
            [m for _, m in failures],
            captures,
            data,
        )
        if failures
        else schema.empty(schema.QUARANTINE)
    )
    return SideResult(records, q, counts, side_profile)


def _attach_keys(table: pa.Table, captures: pa.Table) -> pa.Table:
    rows = table.column(ROW)
    # One record per capture row, in order (CSV rows, single documents): the keys need no copy.
    same = len(rows) == captures.num_rows and np.array_equal(
        rows.to_numpy(), np.arange(captures.num_rows)
    )
    keys = {
        name: captures.column(name) if same else captures.column(name).take(rows)
        for name in schema.RECORD_KEY_NAMES
        if name != RECORD_INDEX
    }
    out = {"capture_id": keys["capture_id"], RECORD_INDEX: table.column(RECORD_INDEX)}
    for name in schema.RECORD_KEY_NAMES[2:]:
        out[name] = keys[name]
    for name in table.column_names:
        if name not in (ROW, RECORD_INDEX) and name not in out:
            out[name] = table.column(name)
    return pa.table(out)


def alignment_quarantine(captures: pa.Table, inputs: SideResult, outputs: SideResult) -> pa.Table:
    """Quarantine rows ('align') for captures whose input and output record counts differ."""
    has_in = ~np.asarray(
        captures.column("input_data").is_null().to_numpy(zero_copy_only=False), dtype=bool
    )
    has_out = ~np.asarray(
        captures.column("output_data").is_null().to_numpy(zero_copy_only=False), dtype=bool
    )
    n_in, n_out = inputs.counts, outputs.counts
    ok_in = ~np.isin(np.arange(captures.num_rows), _rows(inputs.quarantine, captures))
    ok_out = ~np.isin(np.arange(captures.num_rows), _rows(outputs.quarantine, captures))
    bad = has_in & has_out & ok_in & ok_out & (n_in != n_out)
    rows = np.flatnonzero(bad)
    if not len(rows):
        return schema.empty(schema.QUARANTINE)
    reasons = [
        f"{n_in[r]} input records but {n_out[r]} output records; predictions are not aligned"
        for r in rows
    ]
    return _quarantine(
        "align", rows, reasons, captures, captures.column("output_data").combine_chunks()
    )


def _rows(quarantine: pa.Table, captures: pa.Table) -> np.ndarray:
    if not quarantine.num_rows:
        return np.zeros(0, np.int64)
    ids = set(quarantine.column("capture_id").to_pylist())
    return np.flatnonzero(
        pc.is_in(captures.column("capture_id"), pa.array(list(ids))).to_numpy(zero_copy_only=False)
    )


def decode_labels(
    raw: pa.Table, rejected: Sequence[tuple[int, str]] = ()
) -> tuple[pa.Table, pa.Table]:
    """Raw label rows (from :func:`captureq.parse.parse_labels`) → ``labels`` table + quarantine.

    The label text becomes ``ground_truth`` (one row per record when the data holds several
    CSV lines or a JSON list) and ``ground_truth_value`` when it is a number. ``rejected``
    ``(row, reason)`` pairs are quarantined (stage ``label``) without being decoded.
    """
    n = raw.num_rows
    if n == 0:
        return schema.empty(schema.LABELS), schema.empty(schema.QUARANTINE)
    as_captures = pa.table(
        {
            "input_data": raw.column("data"),
            "input_encoding": raw.column("encoding"),
            "input_observed_content_type": pc.if_else(
                pc.equal(pc.utf8_upper(pc.fill_null(raw.column("encoding"), "")), "JSON"),
                pa.scalar("application/json"),
                pa.scalar("text/csv"),
            ),
            "endpoint": pa.nulls(n, pa.string()),
            "capture_id": raw.column("label_id"),
            "source_file": raw.column("source_file"),
            "line_number": raw.column("line_number"),
        }
    )
    for name in ("variant", "event_id", "inference_id"):
        as_captures = as_captures.append_column(name, pa.nulls(n, pa.string()))
    as_captures = as_captures.append_column("inference_time", pa.nulls(n, schema.TIMESTAMP))
    # Labels are read whole per line: one value per CSV line; JSON scalars, lists of scalars, or
    # objects with a label-like field.
    side = decode_side(
        as_captures, "input", DecodeOptions(), lists_are_records=True, rejected=rejected
    )
    rec = side.records
    q = side.quarantine.set_column(
        0, "stage", pa.array(["label"] * side.quarantine.num_rows, pa.string())
    )
    rows = pc.index_in(rec.column("capture_id"), raw.column("label_id"))
    value_cols = [c for c in rec.column_names if c not in schema.RECORD_KEY_NAMES]
    truth = _csv_label_text(raw, rows, rec.column(RECORD_INDEX), _label_text(rec, value_cols))
    labels = pa.table(
        {
            "label_id": rec.column("capture_id"),
            "event_id": raw.column("event_id").take(rows),
            "record_index": rec.column(RECORD_INDEX),
            "ground_truth": truth,
            "ground_truth_value": _to_float(pc.utf8_trim_whitespace(truth)),
            "label_hour": raw.column("label_hour").take(rows),
            "encoding": raw.column("encoding").take(rows),
            "data": raw.column("data").take(rows),
            "event_version": raw.column("event_version").take(rows),
            "source_file": raw.column("source_file").take(rows),
            "source_modified": _column_or_null(raw, "source_modified", schema.TIMESTAMP).take(rows),
            "line_number": raw.column("line_number").take(rows),
        },
        schema=schema.LABELS,
    )
    return labels, q


def _column_or_null(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    return pa.chunked_array([pa.nulls(table.num_rows, type_)])


def _csv_label_text(
    raw: pa.Table, rows: pa.Array, record_index: pa.Array, decoded: pa.Array
) -> pa.Array:
    """``ground_truth`` as stored: for CSV (and base64 CSV) labels the text of the record's
    line — its first field when the line has several — with its whitespace and digits as
    written (`` 2.5e0 `` stays `` 2.5e0 ``, ``1.0`` stays ``1.0``). JSON labels, quoted CSV
    fields and lines that do not line up with the decoded records keep ``decoded``."""
    n = raw.num_rows
    data = raw.column("data").combine_chunks()
    enc = pc.utf8_upper(pc.utf8_trim_whitespace(pc.fill_null(raw.column("encoding").combine_chunks(), "")))
    is_b64 = pc.equal(enc, "BASE64").to_numpy(zero_copy_only=False)
    is_csv = pc.equal(enc, "CSV").to_numpy(zero_copy_only=False) | is_b64
    if not is_csv.any() or not len(rows):
        return decoded
    text = pc.if_else(pa.array(is_csv & ~is_b64), data, pa.nulls(n, pa.string()))
    if is_b64.any():
        b64 = np.flatnonzero(is_b64)
        bytes_, invalid = base64_decode(data.take(pa.array(b64)))
        as_text, not_utf8 = to_text(pc.if_else(pa.array(invalid), pa.nulls(len(b64), pa.binary()), bytes_))
        scatter = np.zeros(n, dtype=np.int64)
        scatter[b64] = np.arange(len(b64))
        text = pc.if_else(pa.array(is_b64), as_text.take(pa.array(scatter)), text)
    # the same line rules as the CSV decoder: \r\n → \n, no blank lines, no trailing newline
    text = pc.replace_substring_regex(
        pc.utf8_trim(pc.replace_substring(text, "\r\n", "\n"), "\n"), "\n\n+", "\n"
    )
    lines = pc.split_pattern(text, "\n")
    counts = pc.fill_null(pc.list_value_length(lines), 0).to_numpy(zero_copy_only=False)
    row = rows.to_numpy(zero_copy_only=False).astype(np.int64)
    k = np.asarray(record_index.to_numpy(zero_copy_only=False), dtype=np.int64)
    records = np.bincount(row, minlength=n)
    ok = is_csv[row] & (counts[row] == records[row]) & (k < counts[row])
    if not ok.any():
        return decoded
    offsets = np.concatenate([[0], np.cumsum(counts)])
    flat = pc.list_flatten(lines)
    line = flat.take(pa.array(np.where(ok, offsets[row] + k, 0)))
    first = pc.list_element(pc.split_pattern(line, ",", max_splits=1), 0)
    quoted = pc.starts_with(pc.utf8_trim_whitespace(first), '"').to_numpy(zero_copy_only=False)
    use = pa.array(ok & ~quoted)
    if isinstance(decoded, pa.ChunkedArray):
        decoded = decoded.combine_chunks()
    return pc.if_else(use, first, decoded)


# label-like JSON keys by their column names, then a vector's or CSV line's first value
_LABEL_FIELDS = (
    *(column_name((k,)) for k in ("ground_truth", "groundTruth", "label", "target", "y", "value")),
    "_c0",
)


def _label_text(rec: pa.Table, value_cols: list[str]) -> pa.Array:
    """The label of each record: the first label-like field that is set (labels of different
    shapes share a batch, e.g. CSV ``_c0`` and JSON ``label``), else the first value column."""
    if not value_cols:
        return pa.nulls(rec.num_rows, pa.string())
    ordered = [n for n in _LABEL_FIELDS if n in value_cols] + [
        n for n in value_cols if n not in _LABEL_FIELDS
    ]
    texts = [_as_text(rec.column(n).combine_chunks()) for n in ordered]
    return texts[0] if len(texts) == 1 else pc.coalesce(*texts)


def _as_text(col: pa.Array) -> pa.Array:
    if pa.types.is_floating(col.type):
        # 1.0 -> "1": labels are usually class ids; keep non-integral values as they are
        ints = pc.fill_null(pc.and_(pc.is_finite(col), pc.equal(col, pc.round(col))), False)
        ints = pc.and_(ints, pc.less(pc.abs(col), 2.0**63))
        as_int = pc.cast(pc.cast(pc.if_else(ints, col, 0.0), pa.int64(), safe=False), pa.string())
        return pc.if_else(ints, as_int, pc.cast(col, pa.string()))
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        return pc.cast(col, pa.string(), safe=False)
    if pa.types.is_string(col.type):
        return col
    try:
        return pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(col), pa.string())


def _to_float(text: pa.Array) -> pa.Array:
    import polars as pl  # imported on first use: not at start-up

    return pl.from_arrow(text).cast(pl.Float64, strict=False).to_arrow()


__all__ = [
    "DecodeOptions",
    "SideResult",
    "Decision",
    "Profile",
    "alignment_quarantine",
    "conform",
    "decide",
    "classify",
    "column_name",
    "decode_binary",
    "decode_csv",
    "decode_json",
    "decode_json_lines",
    "decode_labels",
    "decode_side",
    "key_path",
    "concat_tables",
]
