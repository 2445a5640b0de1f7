"""CSV payloads → typed feature columns ``_c0``, ``_c1``, … (Model Monitor's names).

Every payload of a batch is appended to one buffer and parsed by pyarrow's CSV reader in one
call; the number of records per payload comes from counting its newlines, and the reader's
row count must agree, so a payload can never be silently shifted into its neighbour.

>>> import pyarrow as pa
>>> d = decode_csv(pa.array(["1,2.5\\n3,4\\n", "5,6"]))
>>> d.table.select(["_row", "record_index", "_c0", "_c1"]).to_pylist()[1]
{'_row': 0, 'record_index': 1, '_c0': 3.0, '_c1': 4.0}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from .common import (
    RECORD_INDEX,
    ROW,
    Decoded,
    bisect,
    first_line,
    normalize_types,
    repeat_index,
    too_wide_reason,
    unique_names,
    values_buffer,
    widest_lines,
)
from .unify import canonicalize_csv_text

#: ``1``/``0`` are numbers, not booleans (pyarrow's default reads a column of ``True`` and ``1`` as
#: booleans, and ``1`` alone as an integer: the type would depend on the batch).
_TRUE, _FALSE = ["true", "True", "TRUE"], ["false", "False", "FALSE"]
_CONVERT = pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True, timestamp_parsers=[],
                               true_values=_TRUE, false_values=_FALSE)


def column_names(width: int, names: Sequence[str] | None) -> list[str]:
    """``names`` for the first columns, ``_cN`` for any beyond them."""
    names = list(names or [])
    return unique_names([names[i] if i < len(names) else f"_c{i}" for i in range(width)])


def _bytes(texts: pa.Array) -> np.ndarray:
    """The concatenated bytes of ``texts`` as a numpy view (no copy)."""
    return np.frombuffer(values_buffer(texts), dtype=np.uint8)


def _prepare(texts: pa.Array) -> pa.Array:
    """Normalize line ends, drop blank lines, strip trailing newlines — vectorized."""
    if (_bytes(texts) == 13).any():  # a "\r" somewhere (a byte scan is ~10x cheaper than a kernel per value)
        texts = pc.replace_substring(texts, "\r\n", "\n")
    texts = pc.utf8_trim(texts, "\n")
    if pc.any(pc.match_substring(texts, "\n\n")).as_py():
        texts = pc.replace_substring_regex(texts, "\n\n+", "\n")
    return texts


def _terminated(texts: pa.Array) -> bool:
    """Whether every value is one or more non-blank lines each ending in ``\n`` (no ``\r``): then
    the values' buffer is already the CSV document, and needs no trimming or re-joining."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if arr.null_count or not len(arr) or not pa.types.is_string(arr.type):
        return False
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    if (np.diff(offsets) == 0).any():
        return False
    data = arr.buffers()[2]
    buf = np.frombuffer(data, dtype=np.uint8)[offsets[0]: offsets[-1]]
    starts = offsets[:-1] - offsets[0]
    ends = offsets[1:] - offsets[0]
    newline = buf == 10
    return bool(
        newline[ends - 1].all()  # every value ends with a newline
        and not newline[starts].any()  # none starts with a blank line
        and not (newline[1:] & newline[:-1]).any()  # no blank line inside
        and not (buf == 13).any()
    )


def _newlines(texts: pa.Array) -> np.ndarray:
    """Number of ``\n`` in each value (as ``pc.count_substring``, from one byte scan)."""
    arr = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    if data is None or not len(arr):
        return np.zeros(len(arr), dtype=np.int64)
    at = np.flatnonzero(np.frombuffer(data, dtype=np.uint8)[: offsets[-1]] == 10)
    return np.diff(np.searchsorted(at, offsets)).astype(np.int64)


def _float64_options(names: list[str], text: frozenset = frozenset()) -> pcsv.ConvertOptions:
    return pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True, timestamp_parsers=[],
                               column_types={n: pa.string() if n in text else pa.float64() for n in names})


def _text_options(text: frozenset) -> pcsv.ConvertOptions:
    """Inference, with the columns in ``text`` (generated names ``f0``…) read as text as written."""
    if not text:
        return _CONVERT
    return pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True, timestamp_parsers=[],
                               true_values=_TRUE, false_values=_FALSE,
                               column_types={n: pa.string() for n in text})


_NEGATIVE_ZERO = np.float64(-0.0).view(np.int64)


def _same_as_inferred(table: pa.Table) -> bool:
    """Whether a table read as all-float64 equals inference followed by :func:`normalize_types`.

    It does unless a value could have been an int64 that float64 rounds (``|v| >= 2**53``) or
    the integer ``-0`` (inferred 0, read -0.0); such rare tables take the inference path.
    """
    for col in table.columns:
        if pa.types.is_string(col.type):  # declared text
            continue
        if not pa.types.is_float64(col.type):  # a column past the first 64 KB was inferred
            return False
        for chunk in col.chunks:
            if not len(chunk):
                continue
            # the values buffer as is (null slots may hold anything: at worst a needless refusal)
            a = np.frombuffer(chunk.buffers()[1], dtype=np.float64)[chunk.offset: chunk.offset + len(chunk)]
            if a.max() >= 2.0**53 or a.min() <= -(2.0**53):  # NaN propagates: such a column infers as double anyway
                return False
            # -0.0 is the one float64 whose bits equal int64's minimum
            if (a.view(np.int64) == _NEGATIVE_ZERO).any():
                return False
    return True


def _beyond_exact(col: pa.ChunkedArray) -> bool:
    lo, hi = pc.min_max(col).values()
    return hi.as_py() is not None and max(abs(lo.as_py()), abs(hi.as_py())) >= 2.0**53


def _read(texts: pa.Array, names: Sequence[str] | None, terminated: bool = False,
          infer: bool = True, text_columns: frozenset = frozenset()) -> Decoded:
    """Parse ``texts`` (one CSV payload each) in one call; ``infer=False``: only the float64 read
    (a payload it cannot vouch for raises :class:`NotFloat64`)."""
    if terminated:  # the values' buffer is the document already (see _terminated)
        counts = _newlines(texts)
        data = values_buffer(texts)
    else:
        counts = _newlines(texts) + 1
        empty = pc.equal(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
        if empty.any():
            raise ValueError("empty CSV payload")
        data = values_buffer(pc.binary_join_element_wise(texts, pa.scalar("\n"), ""))
    read_options = pcsv.ReadOptions(autogenerate_column_names=True, block_size=max(1 << 22, data.size + 1)
                                    if len(texts) == 1 else 1 << 22)
    parse_options = pcsv.ParseOptions(newlines_in_values=False)
    # Fast path: all-numeric payloads (the common case) parse straight to float64, skipping type
    # inference (about 3x the parse). Anything else fails the fast path and is inferred by pyarrow.
    width = _first_line(data).count(b",") + 1
    final = column_names(width, names)
    text = frozenset(f"f{i}" for i, n in enumerate(final) if n in text_columns)
    table = None
    try:
        table = pcsv.read_csv(pa.BufferReader(data), read_options=_fixed_block(read_options),
                              parse_options=parse_options, convert_options=_float64_options(
                                  [f"f{i}" for i in range(width)], text))
        if not _same_as_inferred(table):
            table = None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        table = None
    if table is None and not infer:
        raise NotFloat64("not all values read as float64 equal to what inference reads")
    if table is None:
        table = pcsv.read_csv(pa.BufferReader(data), read_options=read_options, parse_options=parse_options,
                              convert_options=_text_options(text))
        huge = frozenset(f.name for f, col in zip(table.schema, table.columns)
                         if pa.types.is_floating(f.type) and _beyond_exact(col))
        if huge:  # an integer a double rounds, beside fractions: read as text, written canonically
            table = pcsv.read_csv(pa.BufferReader(data), read_options=read_options,
                                  parse_options=parse_options, convert_options=_text_options(text | huge))
            for name in huge:
                i = table.column_names.index(name)
                table = table.set_column(i, name, canonicalize_csv_text(table.column(i).combine_chunks()))
    if table.num_rows != counts.sum():
        raise ValueError(f"CSV payload has {counts.sum()} lines but {table.num_rows} records (quoted newline?)")
    table = table.rename_columns(column_names(table.num_columns, names))
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) and f.name not in text_columns:  # a word beside numbers: the numbers as their canonical text
            table = table.set_column(i, f.name, canonicalize_csv_text(table.column(i).combine_chunks()))
    parent, index = repeat_index(counts)
    table = table.add_column(0, ROW, pa.array(parent, pa.int64()))
    table = table.add_column(1, RECORD_INDEX, pa.array(index, pa.int32()))
    return Decoded(normalize_types(table))


class NotFloat64(ValueError):
    """A payload the float64-only read cannot vouch for (see :func:`_same_as_inferred`)."""


def _fixed_block(options: pcsv.ReadOptions) -> pcsv.ReadOptions:
    """Smaller blocks spread a fixed-type parse over more threads (types cannot differ by block)."""
    if options.block_size > 1 << 22:  # one payload larger than a block: keep it whole
        return options
    return pcsv.ReadOptions(autogenerate_column_names=True, block_size=1 << 20)


def _first_line(data: pa.Buffer) -> bytes:
    view = memoryview(data)
    head = bytes(view[: 1 << 16])
    end = head.find(b"\n")
    return head if end < 0 else head[:end]


def decode_csv(texts: pa.Array, names: Sequence[str] | None = None, *, split_single_line: np.ndarray | None = None,
               max_columns: int | None = None, text_columns: frozenset = frozenset()) -> Decoded:
    """Decode CSV payloads (one string each, any number of rows) into records.

    ``_row`` is the payload's position in ``texts``. ``split_single_line`` marks payloads whose
    one line holds one value per record (``"0.1,0.7,0.2"`` answering three input rows): their
    commas are read as record separators. Payloads that do not parse, or with a line of more
    than ``max_columns`` fields (counted on the raw bytes first), are returned as failures.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(texts) == 0:
        return Decoded.empty()
    splitting = split_single_line is not None and split_single_line.any()
    terminated = not splitting and _terminated(texts)
    if not terminated:
        texts = _prepare(texts)
    if splitting:
        texts = pc.if_else(pa.array(split_single_line), pc.replace_substring(texts, ",", "\n"), texts)
    if max_columns is not None:
        widths = widest_lines(texts, max_columns)
        if widths.any():  # refuse before the parser builds millions of columns
            keep = np.flatnonzero(widths == 0)
            d = (decode_csv(texts.take(pa.array(keep)), names, max_columns=None, text_columns=text_columns)
                 if len(keep) else Decoded.empty())
            d.table = d.table.set_column(0, ROW, pa.array(keep, pa.int64()).take(d.table.column(ROW)))
            wide = [(int(r), too_wide_reason(int(widths[r]), max_columns)) for r in np.flatnonzero(widths)]
            d.failures = sorted([(int(keep[i]), m) for i, m in d.failures] + wide)
            return d

    def attempt(idx: np.ndarray) -> Decoded:
        whole = len(idx) == len(texts)
        sub = texts if whole else texts.take(pa.array(idx))
        d = _read(sub, names, terminated, text_columns=text_columns)
        if not whole:
            rows = pa.array(idx, pa.int64()).take(d.table.column(ROW))
            d.table = d.table.set_column(0, ROW, rows)
        return d

    return bisect(len(texts), attempt, lambda e: f"CSV payload does not parse: {first_line(e)}")
