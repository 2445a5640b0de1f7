"""JSON and JSON Lines payloads → flattened record columns.

All payloads of a batch are wrapped as ``{"v": <payload>}`` lines and parsed by pyarrow's JSON
reader in one call; records are then cut out of the nested Arrow arrays with list/struct
kernels, never by looping over payloads in Python.

Which part of a document holds the records:

- ``path`` given (e.g. ``"payload.rows"``): the value at that dotted path;
- an object with a list under ``instances``, ``inputs``, ``predictions``, ``outputs``,
  ``scores``, ``probabilities`` or ``data``: one record per element (except that, for outputs, a
  list of scalars answering ONE input record is that record's vector, e.g. class
  probabilities); under ``features``: the list is ONE record's feature vector;
- a record that is an object with a ``features`` list of scalars (Clarify's
  ``{"instances": [{"features": [...]}]}``): that list becomes ``_c0``, ``_c1``, … like a
  top-level ``{"features": [...]}``, its other fields stay named columns;
- ``inputs``, ``instances`` or ``outputs`` holding an object whose values are all lists
  (TF-Serving's columnar form, ``{"inputs": {"age": [5, 6], "city": ["z", "w"]}}``): one record
  per list position, the object's keys as columns; lists of different lengths fail the payload;
- a bare list of lists or of objects: one record per element;
- a bare list of scalars: one feature vector (inputs); for outputs, one prediction per element
  when its length equals the number of input records (else one vector);
- any other object or scalar: one record.

A record that is an object becomes one column per leaf, named from its key path alone by
:func:`captureq.decode.names.column_name` (nested objects joined with ``.``); a list of scalars
becomes ``_c0``, ``_c1``, …; a scalar becomes ``_c0``.

>>> import pyarrow as pa
>>> d = decode_json(pa.array(['{"instances": [[1, 2], [3, 4]]}', '{"instances": [[5, 6]]}']))
>>> d.table.column("_c1").to_pylist()
[2.0, 4.0, 6.0]
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .common import (
    RECORD_INDEX,
    ROW,
    Decoded,
    TooWide,
    bisect,
    concat,
    first_line,
    normalize_types,
    repeat_index,
    too_wide_reason,
    unique_names,
    values_buffer,
)
from .names import column_name

CONTAINER_KEYS = (
    "instances",
    "inputs",
    "predictions",
    "outputs",
    "scores",
    "probabilities",
    "data",
)
VECTOR_KEYS = ("features",)
#: Container keys whose value may be TF-Serving's columnar form: an object of equal-length lists.
COLUMN_WISE_KEYS = ("inputs", "instances", "outputs")


# -- one numeric-vector shape: the CSV reader's speed ------------------------------------------
# Payloads such as {"features": [1, 2.5]}, [1, 2.5] or {"instances": [[1, 2], [3, 4]]} are lists
# of JSON numbers: checked against JSON's number grammar (RE2, linear), their brackets become
# line ends and pyarrow's CSV reader reads them straight to float64 — about 2.5x cheaper than
# its JSON reader. Whatever the grammar or the float64 read cannot vouch for goes the general way.
FLAT_VECTORS = True
_WS = r"[ \t\n\r]*"
_NUM = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_VEC = rf"\[{_WS}{_NUM}(?:{_WS},{_WS}{_NUM})*{_WS}\]"
_VECS = rf"\[{_WS}{_VEC}(?:{_WS},{_WS}{_VEC})*{_WS}\]"


def _keyed(key: str, inner: str) -> str:
    return rf"^{_WS}\{{{_WS}\"{key}\"{_WS}:{_WS}{inner}{_WS}\}}{_WS}$"


def _vector_shape(first: str, side: str, input_counts, lists_are_records: bool):
    """(grammar, prefix, suffix, records per payload) for the shape of ``first``, or None."""
    head = re.match(r'\s*(\{\s*"([A-Za-z_]+)"\s*:\s*)?(\[\s*\[?)', first)
    if head is None or lists_are_records:
        return None
    key, nested = head.group(2), head.group(3).count("[") == 2
    if key is None:
        if nested:  # [[...], [...]]: one record per inner list
            return rf"^{_WS}{_VECS}{_WS}$", "[[", "]]", True
        if side == "input" or input_counts is None:  # [...]: one feature vector
            return rf"^{_WS}{_VEC}{_WS}$", "[", "]", False
        return None  # an output list's meaning depends on its input's record count
    if key in VECTOR_KEYS and not nested:
        return _keyed(key, _VEC), f'{{"{key}":[', "]}", False
    if key in CONTAINER_KEYS and nested:
        return _keyed(key, _VECS), f'{{"{key}":[[', "]]}", True
    return None


def flat_vectors(
    texts: pa.Array,
    names: Sequence[str] | None = None,
    *,
    side: str = "input",
    input_counts: np.ndarray | None = None,
    lists_are_records: bool = False,
) -> Decoded | None:
    """Decode payloads that all share one numeric-vector shape through the CSV reader; None
    when they do not (then :func:`decode_json`'s general path decides, failures included).

    >>> d = flat_vectors(pa.array(['{"features": [1, 2.5]}', '{"features": [3, 4]}']))
    >>> d.table.column("_c1").to_pylist()
    [2.5, 4.0]
    """
    from .csv import _read

    if not len(texts) or texts.null_count:
        return None
    shape = _vector_shape(texts[0].as_py()[:256], side, input_counts, lists_are_records)
    if shape is None:
        return None
    grammar, prefix, suffix, many = shape
    if not pc.all(pc.match_substring_regex(texts, grammar)).as_py():
        return None
    data = np.frombuffer(values_buffer(texts), dtype=np.uint8)
    if (data == 32).any() or (data == 9).any() or (data == 10).any() or (data == 13).any():
        # the grammar allows white space only between tokens: drop it all
        texts = pc.replace_substring_regex(texts, r"[ \t\n\r]+", "")
    rows = pc.utf8_slice_codeunits(texts, len(prefix), -len(suffix))
    if many:
        rows = pc.replace_substring(rows, "],[", "\n")
    try:
        return _read(rows, names, infer=False)
    except (ValueError, pa.ArrowException):
        return None


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


#: A JSON string value that spells NaN or ±Infinity ("NaN", "-Infinity", any case), with what
#: comes before (a ``:``, ``[`` or ``,``) and after it (``,``, ``]`` or ``}``): never a key.
_QUOTED_NON_FINITE = [
    (r'([:\[,]\s*)"(?i:\+?(?:nan))"(\s*[,\]}])', r"\1NaN\2"),
    (r'([:\[,]\s*)"(?i:-(?:nan))"(\s*[,\]}])', r"\1NaN\2"),
    (r'([:\[,]\s*)"(?i:\+?(?:inf|infinity))"(\s*[,\]}])', r"\1Infinity\2"),
    (r'([:\[,]\s*)"(?i:-(?:inf|infinity))"(\s*[,\]}])', r"\1-Infinity\2"),
]


def _read_v(texts: pa.Array) -> pa.Table:
    """The documents ``texts`` as one table of column ``v`` (pyarrow's reader, which takes a
    bare ``NaN``/``Infinity`` as Python's ``json`` does); ArrowInvalid when one does not parse."""
    wrapped = pc.binary_join_element_wise(pa.scalar('{"v":'), texts, pa.scalar("}\n"), "")
    table = pj.read_json(
        pa.BufferReader(values_buffer(wrapped)),
        read_options=pj.ReadOptions(block_size=max(1 << 22, _longest(wrapped) + 64)),
    )
    # pyarrow builds invalid arrays for lists that start with null ([null, 1]; see
    # apache/arrow#51305): check, and read such a payload the slow way on its own.
    table.validate(full=True)
    return table


def _non_finite_as_numbers(texts: pa.Array) -> pa.Array | None:
    """``texts`` with string values that spell NaN/±Infinity written as the bare numbers, or None
    when none does: a column of numbers and ``"NaN"`` strings is a column of numbers (README,
    "Types"), read in bulk instead of one payload at a time."""
    if not pc.any(pc.match_substring_regex(texts, r'(?i)"[-+]?(nan|inf|infinity)"')).as_py():
        return None
    for pattern, replacement in _QUOTED_NON_FINITE:
        texts = pc.replace_substring_regex(texts, pattern, replacement)
    return texts


def _parse(texts: pa.Array) -> pa.Array:
    """Parse each string of ``texts`` as one JSON document; returns the ``v`` array."""
    if pc.any(pc.match_substring_regex(texts, "[\r\n]")).as_py():
        texts = pc.replace_substring_regex(
            texts, "[\r\n]", " "
        )  # raw newlines only occur between tokens
    try:
        table = _read_v(texts)
    except pa.ArrowInvalid:
        fixed = _non_finite_as_numbers(texts)
        table = None
        if fixed is not None:
            with contextlib.suppress(pa.ArrowInvalid):
                table = _read_v(fixed)
        if table is None:
            if len(texts) != 1:
                raise
            return _parse_slowly(texts[0].as_py())
    if table.num_rows != len(texts) or table.column_names != ["v"]:
        raise ValueError("payload is not a single JSON document")
    v = table.column("v").combine_chunks()
    if v.null_count:
        raise ValueError("payload is JSON null")
    return v


def _parse_slowly(text: str) -> pa.Array:
    """One payload through Python's json module (error path only)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("payload is nested too deeply") from None
    if value is None:
        raise ValueError("payload is JSON null")
    try:
        return pa.array([_storable(value)])
    except (pa.ArrowException, OverflowError, TypeError) as exc:
        raise ValueError(f"payload mixes types Arrow cannot hold in one column: {exc}") from None


def _storable(value):
    """``value`` with each part Arrow cannot type — a list mixing numbers and text (``[1, "a"]``),
    an integer beyond 64 bits — replaced by its JSON text; an object's other fields stay as
    they are."""
    try:
        pa.array([value])
        return value
    except (pa.ArrowException, OverflowError, TypeError):
        pass
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _longest(texts: pa.Array) -> int:
    return int(pc.max(pc.binary_length(texts)).as_py() or 0)


def _field_path(v: pa.Array, path: str) -> pa.Array:
    for part in path.split("."):
        if not pa.types.is_struct(v.type) or v.type.get_field_index(part) < 0:
            raise ValueError(f"no field {part!r} on the path {path!r}")
        v = v.field(part)
    return v


def _explode(v: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """List array → (parent position, index within list, flat values)."""
    counts = pc.fill_null(pc.list_value_length(v), 0).to_numpy(zero_copy_only=False)
    parent, index = repeat_index(counts)
    return parent, index, pc.list_flatten(v)


def _vector_columns(v: pa.Array) -> dict[str, pa.Array]:
    """List-of-scalars array → ``_c0.._cN`` columns (null past a shorter list's end)."""
    lengths = pc.fill_null(pc.list_value_length(v), 0).to_numpy(zero_copy_only=False)
    width = int(lengths.max()) if len(lengths) else 0
    flat = pc.list_flatten(v)
    if width and (lengths == width).all() and flat.null_count == 0 and (
        pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)
    ):
        # One shape (every list as long, numbers, no nulls): the flat values are a row-major
        # matrix; one transpose makes every column a contiguous slice, no take per column.
        matrix = np.ascontiguousarray(flat.to_numpy().reshape(len(lengths), width).T)
        return {f"_c{j}": pa.array(matrix[j]) for j in range(width)}
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cols = {}
    for j in range(width):
        idx = pa.array(starts + j, mask=lengths <= j)
        cols[f"_c{j}"] = flat.take(idx)
    return cols


def _record_columns(values: pa.Array, names: Sequence[str] | None) -> dict[str, pa.Array]:
    t = values.type
    if pa.types.is_struct(t):
        pairs: list[tuple[str, pa.Array]] = []
        stack: list[tuple[tuple[str, ...], pa.Array]] = [((), values)]
        while stack:
            prefix, arr = stack.pop(0)
            for i, f in enumerate(arr.type):
                child = arr.field(i)
                path = (*prefix, f.name)
                if not prefix and f.name in VECTOR_KEYS and _is_list(f.type) \
                        and not _is_nested(f.type.value_type):
                    # {"instances": [{"features": [...]}]} (Clarify): the same _c0… columns
                    # as a top-level {"features": [...]}
                    pairs += _named(list(_vector_columns(child).items()), names)
                elif pa.types.is_struct(f.type) and f.type.num_fields:
                    stack.append((path, child))
                else:
                    pairs.append((column_name(path), child))
    else:
        if _is_list(t) and not _is_nested(t.value_type):
            pairs = list(_vector_columns(values).items())
        else:
            pairs = [("_c0", values)]
        pairs = _named(pairs, names)
    # names from DecodeOptions(names=…) may repeat a key's name or a key column's: suffixed
    return dict(zip(unique_names([n for n, _ in pairs]), [c for _, c in pairs]))


def _named(pairs: list[tuple[str, pa.Array]], names: Sequence[str] | None):
    """``_c0…`` columns renamed to the user's ``names`` (as far as they go)."""
    if not names:
        return pairs
    return [(names[i] if i < len(names) else k, c) for i, (k, c) in enumerate(pairs)]


def _one_each(n: int, v: pa.Array) -> list[tuple[np.ndarray, np.ndarray, pa.Array]]:
    return [(np.arange(n), np.zeros(n, np.int32), v)]


def _explode_some(
    v: pa.Array, explode: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, pa.Array]]:
    """List array → one record per element where ``explode``, else the whole list as one."""
    if explode.all():
        return [_explode(v)]
    if not explode.any():
        return _one_each(len(v), v)
    parent, index, flat = _explode(v)
    chosen = explode[parent]
    whole = np.flatnonzero(~explode)
    return [
        (parent[chosen], index[chosen], flat.filter(pa.array(chosen))),
        (whole, np.zeros(len(whole), np.int32), v.take(pa.array(whole))),
    ]


def _lengths(v: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(v), 0).to_numpy(zero_copy_only=False)


def _column_wise(t: pa.DataType) -> bool:
    """An object whose every value is a list (or null): TF-Serving's columnar
    ``{"inputs": {name: [...]}}``."""
    return (pa.types.is_struct(t) and any(_is_list(f.type) for f in t)
            and all(_is_list(f.type) or pa.types.is_null(f.type) for f in t))


def _rows_of_columns(v: pa.StructArray) -> tuple[list, dict[int, str]]:
    """Column-wise objects → one record per list position, named by the object's keys.

    A name absent from a payload (null here) is null in its records; a payload whose lists
    differ in length is a failure. Returns the parts and {payload position: reason}."""
    fields = [v.field(i) for i in range(v.type.num_fields)]
    lengths = np.stack(
        [np.full(len(v), -1) if pa.types.is_null(f.type)
         else np.where(f.is_null().to_numpy(zero_copy_only=False), -1, _lengths(f))
         for f in fields],
        axis=1,
    )
    counts = lengths.max(axis=1)
    bad = ((lengths >= 0) & (lengths != counts[:, None])).any(axis=1)
    failures = {}
    for p in np.flatnonzero(bad):  # error path: only the payloads that fail
        sizes = ", ".join(
            f"{f.name}: {int(n)}" for f, n in zip(v.type, lengths[p]) if n >= 0
        )
        failures[int(p)] = (
            "column-wise JSON (an object of lists, one value per record) with lists of "
            f"different lengths ({sizes}); every list must hold one value per record"
        )
    parent, index = repeat_index(np.where(bad, 0, np.maximum(counts, 0)))
    children = []
    for j, f in enumerate(fields):
        if pa.types.is_null(f.type):
            children.append(pa.nulls(len(parent)))
            continue
        starts = np.concatenate([[0], np.cumsum(np.maximum(lengths[:, j], 0))[:-1]])
        absent = lengths[parent, j] < 0
        take = np.where(absent, 0, starts[parent] + index)
        children.append(pc.list_flatten(f).take(pa.array(take, mask=absent)))
    records = pa.StructArray.from_arrays(children, names=[f.name for f in v.type])
    return [(parent, index, records)], failures


def _records(
    v: pa.Array,
    *,
    side: str,
    path: str | None,
    input_counts: np.ndarray | None,
    lists_are_records: bool = False,
) -> tuple[list[tuple[np.ndarray, np.ndarray, pa.Array]], dict[int, str]]:
    """Cut records out of parsed documents: parts of (parent, record_index, record values), and
    {payload position: reason} for payloads that hold no valid records."""
    n = len(v)
    if path:
        v = _field_path(v, path)
        return ([_explode(v)] if _is_list(v.type) else _one_each(n, v)), {}
    t = v.type
    if pa.types.is_struct(t):
        for key in CONTAINER_KEYS + VECTOR_KEYS:
            idx = t.get_field_index(key)
            if idx >= 0 and key in COLUMN_WISE_KEYS and _column_wise(t.field(idx).type):
                inner = v.field(idx)
                if inner.null_count:
                    raise ValueError(f"some payloads lack the {key!r} object the others have")
                return _rows_of_columns(inner)
            if idx >= 0 and _is_list(t.field(idx).type):
                inner = v.field(idx)
                if inner.null_count:
                    raise ValueError(f"some payloads lack the {key!r} list the others have")
                if key in VECTOR_KEYS and not _is_nested(inner.type.value_type):
                    return _one_each(n, inner), {}
                if (
                    side == "output"
                    and input_counts is not None
                    and not _is_nested(inner.type.value_type)
                ):
                    # {"probabilities": [0.2, 0.8]} answering ONE input record is one vector
                    return _explode_some(
                        inner, ~((input_counts == 1) & (_lengths(inner) > 1))
                    ), {}
                return [_explode(inner)], {}
        return _one_each(n, v), {}
    if _is_list(t) and (lists_are_records or _is_nested(t.value_type)):
        return [_explode(v)], {}
    if _is_list(t) and side == "output" and input_counts is not None:
        # one prediction per input record when the lengths agree; otherwise one vector
        return _explode_some(v, (_lengths(v) == input_counts) & (input_counts > 1)), {}
    return _one_each(n, v), {}


def _leaves(t: pa.DataType) -> int:
    """Columns a record of type ``t`` becomes (nested object fields are flattened)."""
    if pa.types.is_struct(t):
        return sum(_leaves(f.type) if pa.types.is_struct(f.type) and f.type.num_fields else 1 for f in t)
    return 1


def _refuse_wide(parts, limit: int):
    """Drop records wider than ``limit`` columns before any column is built: returns the parts
    left and {payload position: width}. A vector's width is its length; an object's width is
    its flattened field count, shared by the whole parse, so it is raised for bisection."""
    kept, wide = [], {}
    for parent, index, values in parts:
        t = values.type
        if pa.types.is_struct(t) and _leaves(t) > limit:
            raise TooWide(too_wide_reason(_leaves(t), limit))
        if _is_list(t) and not _is_nested(t.value_type):
            lengths = _lengths(values)
            over = lengths > limit
            if over.any():
                for p, w in zip(parent[over], lengths[over]):
                    wide[int(p)] = max(wide.get(int(p), 0), int(w))
                keep = ~np.isin(parent, list(wide))
                parent, index, values = parent[keep], index[keep], values.filter(pa.array(keep))
        kept.append((parent, index, values))
    return kept, wide


def _build(parent: np.ndarray, index: np.ndarray, values: pa.Array, names) -> pa.Table:
    cols = _record_columns(values, names)
    table = pa.table(
        {ROW: pa.array(parent, pa.int64()), RECORD_INDEX: pa.array(index, pa.int32()), **cols}
    )
    return normalize_types(table)


def decode_json(
    texts: pa.Array,
    names: Sequence[str] | None = None,
    *,
    side: str = "input",
    path: str | None = None,
    input_counts: np.ndarray | None = None,
    lists_are_records: bool = False,
    max_columns: int | None = None,
) -> Decoded:
    """Decode JSON payloads (one document each) into records; see the module doc for shapes.

    ``lists_are_records``: a bare list of scalars is one record per element (labels), not one
    feature vector. A record of more than ``max_columns`` columns is a failure, found before
    its columns are built.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(texts) == 0:
        return Decoded.empty()

    def attempt(idx: np.ndarray) -> Decoded:
        whole = len(idx) == len(texts)
        sub = texts if whole else texts.take(pa.array(idx))
        counts = None if input_counts is None else input_counts[idx]
        v = _parse(sub)
        parts, refused = _records(
            v, side=side, path=path, input_counts=counts, lists_are_records=lists_are_records
        )
        wide = {}
        if check_width:
            parts, wide = _refuse_wide(parts, max_columns)
        d = concat([Decoded(_build(p, i, vals, names)) for p, i, vals in parts if len(p)])
        refused |= {p: too_wide_reason(w, max_columns) for p, w in wide.items()}
        d.failures = sorted(refused.items())
        if not whole:
            d.failures = [(int(idx[p]), m) for p, m in d.failures]
            d.table = d.table.set_column(
                0, ROW, pa.array(idx, pa.int64()).take(d.table.column(ROW))
            )
        return d

    # a document shorter than the limit in bytes cannot hold more values than the limit
    check_width = max_columns is not None and _longest(texts) >= max_columns
    if FLAT_VECTORS and path is None and not check_width:
        fast = flat_vectors(texts, names, side=side, input_counts=input_counts,
                            lists_are_records=lists_are_records)
        if fast is not None:
            return fast
    return bisect(len(texts), attempt, lambda e: str(e) if isinstance(e, TooWide)
                  else f"JSON payload does not parse: {first_line(e)}")


def decode_json_lines(texts: pa.Array, names: Sequence[str] | None = None, *,
                      max_columns: int | None = None) -> Decoded:
    """Decode JSON Lines payloads: each non-blank line is one record."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(texts) == 0:
        return Decoded.empty()
    lines = pc.split_pattern(pc.replace_substring(texts, "\r\n", "\n"), "\n")
    parent, _, flat = _explode(lines)
    keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(flat)), 0)
    flat = flat.filter(keep)
    parent = parent[keep.to_numpy(zero_copy_only=False)]
    counts = np.bincount(parent, minlength=len(texts))
    _, index = repeat_index(counts)
    inner = decode_json(flat, names, side="input", path=None, max_columns=max_columns)
    # each line is one record: collapse anything a line expanded into back to its line
    table = inner.table
    line_of = table.column(ROW).to_numpy()
    table = table.set_column(0, ROW, pa.array(parent[line_of], pa.int64()))
    table = table.set_column(1, RECORD_INDEX, pa.array(index[line_of], pa.int32()))
    failures = [(int(parent[i]), reason) for i, reason in inner.failures]
    if failures:
        bad = {r for r, _ in failures}
        mask = pa.array([r not in bad for r in table.column(ROW).to_pylist()])
        table = table.filter(mask)
    return Decoded(table, failures)
