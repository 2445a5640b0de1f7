"""Shared pieces of the payload decoders: the result type, bisection on failure, type rules."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema

ROW = "_row"  # index of the payload's row in the table being decoded
RECORD_INDEX = "record_index"
# Names a payload's own fields must not take: the decoder's bookkeeping and the record keys.
RESERVED = frozenset({ROW, *schema.RECORD_KEY_NAMES})


DEFAULT_MAX_COLUMNS = 10_000
MAX_COLUMNS_ENV = "CAPTUREQ_MAX_COLUMNS"


def max_columns_from_env() -> int:
    """``CAPTUREQ_MAX_COLUMNS`` if set, else :data:`DEFAULT_MAX_COLUMNS`."""
    value = os.environ.get(MAX_COLUMNS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_COLUMNS
    try:
        return max(1, int(value))
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError(f"{MAX_COLUMNS_ENV}={value!r} is not a whole number of columns") from None


class TooWide(ValueError):
    """A record with more columns than the limit (its message is the quarantine reason)."""


def too_wide_reason(columns: int, limit: int) -> str:
    return (f"record has {columns} columns, more than the limit of {limit}; raise it with "
            f"DecodeOptions(max_columns=...) or {MAX_COLUMNS_ENV} if the payload is meant to be this wide")


def _offsets(arr: pa.Array) -> np.ndarray:
    width = np.int32 if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type) else np.int64
    return np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset: arr.offset + len(arr) + 1]


def widest_lines(texts: pa.Array, limit: int, sep: str = ",") -> np.ndarray:
    """Per value, the field count of its widest line when that exceeds ``limit`` (else 0).

    Counted on the raw bytes in one vectorized pass, before any parser builds columns: a line
    shorter than ``limit`` bytes cannot hold more than ``limit`` fields, so the usual batch costs
    one newline scan; separators inside double quotes are not counted.

    >>> widest_lines(pa.array(["1,2,3", "1,2\\n3", '"a,b,c,d",1']), 2).tolist()
    [3, 0, 0]
    """
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    out = np.zeros(len(arr), dtype=np.int64)
    if not len(arr) or arr.buffers()[2] is None:
        return out
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offsets = _offsets(arr)
    if int(np.diff(offsets).max()) < limit:  # no payload, so no line of one, is that long
        return out
    buf = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
    if not len(buf):
        return out
    starts = (offsets[:-1] - offsets[0]).astype(np.int64)
    cuts = np.union1d(starts[starts < len(buf)], np.flatnonzero(buf == 10) + 1)
    cuts = cuts[cuts < len(buf)]
    lengths = np.diff(np.append(cuts, len(buf)))
    if not len(cuts) or lengths.max() < limit:
        return out
    fields = np.add.reduceat(buf == ord(sep), cuts, dtype=np.int64) + 1
    wide = np.flatnonzero(fields > limit)
    if not len(wide):
        return out
    owner = np.searchsorted(starts, cuts[wide], side="right") - 1
    for row in np.unique(owner):  # error path: only payloads already over the limit
        piece = buf[starts[row]: starts[row] + (offsets[row + 1] - offsets[row])]
        is_sep = piece == ord(sep)
        if (piece == ord('"')).any():  # a quoted separator is not a field boundary
            is_sep &= (np.cumsum(piece == ord('"')) & 1) == 0
        line_starts = np.concatenate([[0], np.flatnonzero(piece[:-1] == 10) + 1])
        widest = int((np.add.reduceat(is_sep, line_starts, dtype=np.int64) + 1).max())
        out[row] = widest if widest > limit else 0
    return out


def unique_names(names: list[str]) -> list[str]:
    """Value-column names that are safe to use (CSV and vector columns, named ``_c0…`` or by
    ``DecodeOptions(names=…)``; JSON keys are named by :mod:`.names` instead): a name that is
    empty, reserved (``capture_id``, ``_row``, …) or already taken gets a ``_1``, ``_2``, …
    suffix, and a NUL character becomes U+FFFD.

    >>> unique_names(["a", "event_id", "a", ""])
    ['a', 'event_id_1', 'a_1', '_1']
    """
    taken = set(RESERVED)
    out = []
    for name in names:
        name = name.replace("\x00", "\ufffd")  # SQL engines cannot name a column with a NUL
        new, k = name, 0
        while new in taken or not new:
            k += 1
            new = f"{name}_{k}"
        taken.add(new)
        out.append(new)
    return out


@dataclass
class Decoded:
    """Records decoded from a set of payloads, and the payloads that failed (row, reason)."""

    table: pa.Table  # columns: _row (int64), record_index (int32), value columns...
    failures: list[tuple[int, str]] = field(default_factory=list)

    @staticmethod
    def empty() -> Decoded:
        return Decoded(pa.table({ROW: pa.array([], pa.int64()), RECORD_INDEX: pa.array([], pa.int32())}))


def concat(parts: list[Decoded]) -> Decoded:
    """Union the parts by column name (null where a part lacks a column), ordered by row."""
    tables = [p.table for p in parts if p.table.num_rows]
    failures = [f for p in parts for f in p.failures]
    if not tables:
        return Decoded(Decoded.empty().table, failures)
    table = concat_tables(tables)
    if len(tables) > 1:
        order = pc.sort_indices(table, [(ROW, "ascending"), (RECORD_INDEX, "ascending")])
        table = table.take(order)
    return Decoded(table, failures)


def concat_tables(tables: list[pa.Table]) -> pa.Table:
    """Concatenate, unioning columns by name; a column whose types disagree becomes a string
    (each value its canonical text), and integers meet doubles as doubles unless one is beyond
    ±2**53 (then text too: a double cannot hold it)."""
    from .unify import beyond_exact, canonical_text

    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    wide = [name for name, ts in types.items()
            if len(ts) > 1 and any(pa.types.is_integer(t.schema.field(name).type) and beyond_exact(t.column(name))
                                   for t in tables if name in t.column_names)]
    if wide:
        tables = [_texts(t, wide, canonical_text) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    clash = [name for name, ts in types.items() if len(ts) > 1]
    return pa.concat_tables([_texts(t, clash, canonical_text) for t in tables], promote_options="permissive")


def _texts(table: pa.Table, names: list[str], to_text) -> pa.Table:
    for n in names:
        if n in table.column_names:
            table = table.set_column(table.column_names.index(n), n, to_text(table.column(n)))
    return table


def holds_empty_struct(t: pa.DataType) -> bool:
    """Whether ``t`` is, or holds, a struct with no fields (an empty JSON object ``{}``), which
    Parquet cannot store."""
    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(holds_empty_struct(f.type) for f in t)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return holds_empty_struct(t.value_type)
    if pa.types.is_map(t):
        return holds_empty_struct(t.key_type) or holds_empty_struct(t.item_type)
    return False


def json_text(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``col`` as JSON text (null stays null): ``{}`` → ``'{}'``,
    ``[1, 2]`` → ``'[1, 2]'``; scalars as ``cast(string)`` writes them.

    A column of empty objects is converted without a Python loop; other nested values (rare:
    only columns Parquet cannot hold, or whose types disagree between batches) go through
    :func:`json.dumps` one by one.
    """
    import json

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_struct(t) and t.num_fields == 0:
        return pc.if_else(pc.is_valid(col), pa.scalar("{}"), pa.scalar(None, pa.string()))
    if not pa.types.is_nested(t):
        try:
            return col.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str, separators=(",", ":"))
                     for v in col.to_pylist()], pa.string())


def normalize_types(table: pa.Table) -> pa.Table:
    """Make feature types stable across batches: integers of any width become int64, decimals
    float64, and lists of integers lists of float64 (a list's type must not depend on whether a
    batch happened to hold only whole numbers). Which of these a column finally is, is decided
    over every batch (:mod:`captureq.decode.unify`).
    """
    cols = []
    changed = False
    for f in table.schema:
        col = table.column(f.name)
        if f.name in (ROW, RECORD_INDEX):
            cols.append(col)
            continue
        t = f.type
        if holds_empty_struct(t):
            col = json_text(col)
            changed = True
        elif pa.types.is_integer(t) and t != pa.int64():
            col = col.cast(pa.int64(), safe=False) if not pa.types.is_uint64(t) else col.cast(pa.float64())
            changed = True
        elif pa.types.is_decimal(t):
            col = col.cast(pa.float64(), safe=False)
            changed = True
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
            pa.types.is_integer(t.value_type) or pa.types.is_null(t.value_type)
        ):
            col = col.cast(pa.list_(pa.float64()), safe=False)
            changed = True
        cols.append(col)
    return pa.table(cols, names=table.column_names) if changed else table


def first_line(msg: object) -> str:
    """The first line of an error message, without pyarrow's "in row N" suffix."""
    text = str(msg).strip()
    line = text.splitlines()[0] if text else type(msg).__name__
    return re.sub(r"\s*in row \d+\s*$", "", line)


def bisect(n: int, attempt: Callable[[np.ndarray], Decoded], describe: Callable[[Exception], str]) -> Decoded:
    """Decode payloads ``0..n-1`` with ``attempt``; on failure split in halves until the bad
    payloads are isolated. ``attempt`` receives positions and raises on bad input."""
    parts: list[Decoded] = []
    stack = [np.arange(n)]
    while stack:
        idx = stack.pop()
        if not len(idx):
            continue
        try:
            parts.append(attempt(idx))
            continue
        except (pa.ArrowException, ValueError) as exc:
            error = exc
        if len(idx) == 1:
            parts.append(Decoded(Decoded.empty().table, [(int(idx[0]), describe(error))]))
            continue
        mid = len(idx) // 2
        stack.append(idx[mid:])
        stack.append(idx[:mid])
    return concat(parts)


def repeat_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-payload record ``counts``: the payload position of each record and its index."""
    counts = np.asarray(counts, dtype=np.int64)
    parent = np.repeat(np.arange(len(counts)), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    index = np.arange(int(counts.sum())) - np.repeat(offsets, counts)
    return parent, index.astype(np.int32)


def values_buffer(texts: pa.Array) -> pa.Buffer:
    """The concatenated bytes of a string array, as a zero-copy slice of its data buffer."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32 if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type) else np.int64)
    start = offsets[arr.offset]
    stop = offsets[arr.offset + len(arr)]
    data = arr.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(int(start), int(stop - start))
