"""Turn the bytes of capture (or ground-truth) files into typed Arrow tables, in bulk.

A batch of files is concatenated into one buffer and handed to DuckDB's JSON reader once, with
an explicit schema. Line boundaries are found with numpy, so every row knows its
``source_file`` and ``line_number`` without a Python loop per record.

A line means what it means as JSON (``json.loads``), with DuckDB's unambiguous leniencies kept
(see :func:`parse_json_lines`). When DuckDB rejects the batch, each file is read again on its
own, and a file it rejects goes to the exact path: pyarrow's strict reader with bisection, each
line it rejects judged alone, so a quarantine row names the file, the line and why. A file with
``b`` bad lines costs ``O(b log n)`` extra reader calls.

A payload whose ``data`` is a JSON number, object, array or boolean instead of a string does not
cost its line: DuckDB's reader flags it (the field is read as JSON), the capture row keeps the
value as JSON text, and only that payload is reported (``Parsed.payload_failures``,
quarantined by the decoder as stage input/output/label).

Counts always reconcile: non-blank lines read = rows parsed + quarantine rows of stage 'line'.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass, field

import numpy as np
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

_GROUND_TRUTH = pa.struct([("data", pa.string()), ("encoding", pa.string())])

# A capture line. Besides endpointInput/endpointOutput, the shapes Model Monitor's merge job and
# batch-transform capture write are read too: ``batchTransformOutput`` (the model's output for a
# batch-transform input: captureq's output side) and an embedded ``groundTruthData`` (a label).
RAW_CAPTURE = pa.schema(
    [
        (
            "captureData",
            pa.struct(
                [
                    ("endpointInput", _PAYLOAD),
                    ("endpointOutput", _PAYLOAD),
                    ("batchTransformOutput", _PAYLOAD),
                ]
            ),
        ),
        ("groundTruthData", _GROUND_TRUTH),
        (
            "eventMetadata",
            pa.struct(
                [
                    ("eventId", pa.string()),
                    ("inferenceId", pa.string()),
                    ("inferenceTime", pa.string()),
                ]
            ),
        ),
        ("eventVersion", pa.string()),
    ]
)

RAW_LABEL = pa.schema(
    [
        ("groundTruthData", _GROUND_TRUTH),
        ("eventMetadata", pa.struct([("eventId", pa.string())])),
        ("eventVersion", pa.string()),
    ]
)

MAX_RAW_CHARS = 1 << 20  # quarantine keeps at most 1 MiB of a bad line's text
_ROW_SUFFIX = re.compile(r"\s*in row \d+\s*$")
_BOM = b"\xef\xbb\xbf"
# JSON whitespace, and the vertical tab and form feed DuckDB's reader also skips around a line
_WHITESPACE = np.frombuffer(b" \t\r\x0b\x0c", dtype=np.uint8)
_NON_WHITESPACE = re.compile(rb"[^ \t\r\x0b\x0c]")


@dataclass
class Lines:
    """A batch's buffer and where each non-blank line is."""

    buf: bytes
    starts: np.ndarray  # byte offset of each non-blank line
    ends: np.ndarray  # offset one past its last byte (before the newline)
    file_index: np.ndarray  # index into batch.files
    line_number: np.ndarray  # 1-based line number within its file
    blank: int  # blank lines skipped
    first: np.ndarray | None = None  # first non-whitespace byte of each line

    def text(self, i: int) -> str:
        raw = self.buf[self.starts[i] : self.ends[i]]
        return raw[:MAX_RAW_CHARS].decode("utf-8", errors="replace").rstrip("\r")

    def join(self, idx: np.ndarray) -> bytes:
        return b"\n".join(self.buf[self.starts[i] : self.ends[i]] for i in idx) + b"\n"


_CHUNK = 1 << 20


def _newlines(arr: np.ndarray) -> np.ndarray:
    """Offsets of the newline bytes of ``arr``, found a megabyte at a time into one small mask:
    a mask as big as the batch costs more in fresh pages than the comparison itself."""
    mask = np.empty(min(len(arr), _CHUNK), dtype=bool)
    found = []
    for at in range(0, len(arr), _CHUNK):
        part = arr[at : at + _CHUNK]
        m = mask[: len(part)]
        np.equal(part, 10, out=m)
        found.append(np.flatnonzero(m) + at)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


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
    ends = _newlines(arr)
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    file_ends = np.cumsum([len(b) for b in blobs])
    file_index = np.searchsorted(file_ends, starts, side="right")
    first_line = np.searchsorted(file_index, np.arange(len(blobs)), side="left")
    line_number = np.arange(len(starts)) - first_line[file_index] + 1 if len(blobs) else starts
    # Blank = only whitespace (what DuckDB's reader skips too). A capture line starts with
    # "{", so only lines that are empty or start with whitespace need a closer look.
    keep = np.ones(len(starts), dtype=bool)
    empty = starts == ends
    keep[empty] = False
    first = arr[starts] if len(starts) else np.zeros(0, np.uint8)
    for i in np.flatnonzero(~empty & np.isin(first, _WHITESPACE)):
        m = _NON_WHITESPACE.search(buf, int(starts[i]), int(ends[i]))
        if m is None:
            keep[i] = False
        else:
            first[i] = buf[m.start()]
    return Lines(
        buf,
        starts[keep],
        ends[keep],
        file_index[keep],
        line_number[keep].astype(np.int64),
        int((~keep).sum()),
        first[keep],
    )


def blank_out(lines: Lines, positions: np.ndarray) -> bytes:
    """A copy of the buffer with the given lines overwritten by spaces (which the JSON reader
    skips), so the rest can still be parsed in one call."""
    arr = np.frombuffer(lines.buf, dtype=np.uint8).copy()
    if len(positions) <= 4096:  # a few lines: a slice each, not a pass over the whole buffer
        for s, e in zip(lines.starts[positions].tolist(), lines.ends[positions].tolist()):
            arr[s:e] = 32
        return arr.tobytes()
    delta = np.zeros(len(arr) + 1, dtype=np.int8)
    np.add.at(delta, lines.starts[positions], 1)
    np.add.at(delta, lines.ends[positions], -1)
    arr[np.cumsum(delta[:-1], dtype=np.int8) > 0] = 32
    return arr.tobytes()


def invalid_utf8(lines: Lines) -> np.ndarray:
    """Positions of the lines that are not valid UTF-8 (one vectorized check when all are)."""
    if not len(lines.buf):
        return np.zeros(0, dtype=np.int64)
    whole = pa.Array.from_buffers(
        pa.large_binary(),
        1,
        [None, pa.py_buffer(np.array([0, len(lines.buf)], np.int64)), pa.py_buffer(lines.buf)],
    )
    try:
        whole.cast(pa.large_string())
        return np.zeros(0, dtype=np.int64)
    except pa.ArrowInvalid:
        pass
    bad = []
    for i in range(len(lines.starts)):  # error path only: find the offending lines
        try:
            lines.buf[lines.starts[i] : lines.ends[i]].decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return np.array(bad, dtype=np.int64)


_TYPE_NAME = ((str, "a string"), (list, "an array"), (bool, "a boolean"), (type(None), "null"), (dict, "an object"))


def _kind(value) -> str:
    return next((name for t, name in _TYPE_NAME if isinstance(value, t)), "a number")


class _Object(dict):
    """A JSON object as :func:`_loads` reads it. ``duplicates``: its keys written twice;
    ``surrogate``: the first lone UTF-16 surrogate in it (keys and values, overwritten ones
    included), as an escape."""

    duplicates: frozenset = frozenset()
    surrogate: str | None = None


def _surrogate_in(values: list) -> str | None:
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, _Object):
            if v.surrogate:
                return v.surrogate
        elif isinstance(v, str):
            for c in v:
                if 0xD800 <= ord(c) <= 0xDFFF:
                    return f"\\u{ord(c):04x}"
        elif isinstance(v, list):
            stack.extend(v)
    return None


def _object(pairs: list) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        obj.duplicates = frozenset(k for k in keys if keys.count(k) > 1)
    obj.surrogate = _surrogate_in([x for pair in pairs for x in pair])
    return obj


# Outside strings: a comma closing an array or object right after a value, and nan/inf/infinity
# in any case with an optional minus (what DuckDB's reader accepts besides RFC 8259's JSON).
_LENIENT = re.compile(
    r'("(?:[^"\\]|\\.)*")|(?<=[\]}0-9a-zA-Z"])([ \t\r\n]*),(?=[ \t\r\n]*[\]}])'
    r"|(?<![\w.+-])(-?)(nan|infinity|inf)(?![\w.])",
    re.IGNORECASE,
)


def _lenient_sub(m: re.Match) -> str:
    if m.group(1):
        return m.group(1)
    if m.group(4) is None:  # a trailing comma: dropped
        return m.group(2)
    return "NaN" if m.group(4).lower() == "nan" else m.group(3) + "Infinity"


def _loads(line: bytes):
    """One line as ``json.loads`` reads it, with DuckDB's leniencies: vertical tab and form feed
    around the object, a trailing comma after a value, nan/inf in any case. Objects are
    :class:`_Object`. Raises ``json.JSONDecodeError`` with the strict parser's message.
    Error path only (lines the bulk readers did not take)."""
    text = line.decode("utf-8").strip(" \t\r\n\x0b\x0c")
    try:
        return json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as err:
        try:
            return json.loads(_LENIENT.sub(_lenient_sub, text), object_pairs_hook=_object)
        except json.JSONDecodeError:
            raise err from None


def _shape_reason(node: dict, t, path: tuple = ()) -> str | None:
    """Why an object does not fit the struct fields of ``t`` (a schema or struct type): a key
    of a field captureq reads written twice, or a struct field holding a non-object."""
    for f in t:
        name = ".".join(path + (f.name,))
        if f.name in getattr(node, "duplicates", ()):
            return f"duplicate key {name}: which of its values is meant is ambiguous (RFC 8259 §4)"
        value = node.get(f.name)
        if pa.types.is_struct(f.type) and value is not None:
            if not isinstance(value, dict):
                return f"wrong type: {name} is {_kind(value)}, expected an object"
            reason = _shape_reason(value, f.type, path + (f.name,))
            if reason:
                return reason
    return None


def _decode_reason(err: json.JSONDecodeError) -> str:
    text = err.doc.rstrip(" \t\r")
    if text.lstrip().startswith("{") and (err.pos >= len(text) or err.msg.startswith("Unterminated string")):
        return f"truncated JSON line: it ends inside a value ({err.msg} column {err.colno})"
    return f"invalid JSON line: {err.msg} (column {err.colno})"


def _judge(line: bytes, raw_schema: pa.Schema | None = None) -> str | None:
    """Why one line has no meaning to captureq, or None when it has one (DuckDB's reader then
    reads it). Error path only: lines a bulk reader rejected, one at a time."""
    if b"\x00" in line:
        return "line contains NUL bytes; it is binary junk, not a JSON object"
    try:
        value = _loads(line)
    except UnicodeDecodeError:
        return "line is not valid UTF-8 text"
    except json.JSONDecodeError as err:
        return _decode_reason(err)
    except RecursionError:  # nesting deeper than Python's parser goes: DuckDB's reader decides
        return None
    if not isinstance(value, dict):
        return f"line is {_kind(value)}, not a JSON object"
    bad = value.surrogate
    if bad:
        return f"line holds a lone UTF-16 surrogate ({bad}), which is not Unicode text (RFC 8259 §8.2)"
    return _shape_reason(value, raw_schema) if raw_schema is not None else None


def _clean_reason(exc: Exception | None, line: bytes = b"") -> str:
    """Say what is wrong with one line a reader rejected (error path only)."""
    reason = _judge(line)
    if reason:
        return reason
    if exc is None:
        return "invalid JSON line: not a JSON object"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    msg = _ROW_SUFFIX.sub("", msg).replace("JSON parse error: ", "")
    msg = re.sub(r'in file "[^"]*"', "in the line", msg)
    return f"invalid JSON line: {msg}"


def _read(data: bytes, raw_schema: pa.Schema, block_size: int) -> pa.Table:
    return pj.read_json(
        pa.py_buffer(data),
        read_options=pj.ReadOptions(block_size=block_size, use_threads=True),
        parse_options=pj.ParseOptions(
            explicit_schema=raw_schema, unexpected_field_behavior="ignore"
        ),
    )


# Where a payload's ``data`` sits in a line, and the side it belongs to.
PAYLOAD_SIDES = {
    ("captureData", "endpointInput"): "input",
    ("captureData", "endpointOutput"): "output",
    ("captureData", "batchTransformOutput"): "output",
    ("groundTruthData",): "label",
}


def _payload_repairs(line: bytes) -> dict[tuple, tuple[str, str, str]]:
    """``{payload path: (side, data as JSON text, reason)}`` for each payload of the line whose
    ``data`` is a JSON value other than a string or null. Error path only: rows DuckDB's reader
    flagged."""
    try:
        doc = _loads(line)
    except (ValueError, RecursionError):
        return {}
    found = {}
    for path, side in PAYLOAD_SIDES.items():
        node = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or node.get("data") is None or isinstance(node["data"], str):
            continue
        value = node["data"]
        kind = "a JSON " + _kind(value).split()[-1]
        reason = (f"{'.'.join(path)}.data is {kind}, not a string (SageMaker stores payloads as text); "
                  "kept re-serialized as JSON in the capture row, not decoded")
        found[path] = (side, json.dumps(value), reason)
    return found


# -- the outer parser: DuckDB's JSON reader -------------------------------------------------------
# DuckDB's newline-delimited reader parses a batch, validating every line, and materializes only
# the declared fields (pyarrow's schema: every leaf VARCHAR). A payload's ``data`` is read as
# DuckDB's JSON type, so the reader itself says whether it was a string (its JSON text starts
# with a quote): a payload to repair costs no scan of the batch. Where DuckDB is more lenient
# than RFC 8259 the meaning is kept (see the README's quarantine table): a number in a string
# field is its text, as is a boolean or an object/array (compact JSON); a trailing comma after a
# value, nan/inf in any case, and a vertical tab or form feed around the object are accepted.
# A batch DuckDB rejects is read again file by file; a file it rejects goes to the exact path
# (:func:`_exact`).
_duck_local = threading.local()


def _data_leaf(path: tuple) -> bool:
    return path[-1] == "data" and path[:-1] in PAYLOAD_SIDES


def _projected(path: tuple, project: bool) -> bool:
    """Whether ``project`` reads this leaf as there-or-not: a capture payload's ``data``, never
    an embedded label's (the ``labels`` table needs its text whatever the query reads)."""
    return project and _data_leaf(path) and path[:-1] != ("groundTruthData",)


def _duck_type(t: pa.DataType, path: tuple) -> str:
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {_duck_type(f.type, path + (f.name,))}' for f in t) + ")"
    return "JSON" if _data_leaf(path) else "VARCHAR"


@functools.cache
def _duck_columns(raw_schema: pa.Schema) -> dict:
    return {f.name: _duck_type(f.type, (f.name,)) for f in raw_schema}


def _leaves(t, path=()):
    """``(path, type)`` of every struct and leaf field under ``t`` (a schema or struct type)."""
    for f in t:
        yield path + (f.name,), f.type
        if pa.types.is_struct(f.type):
            yield from _leaves(f.type, path + (f.name,))


@functools.cache
def _duck_projection(raw_schema: pa.Schema, project: bool) -> tuple[str, tuple]:
    """A flat select list of every field (each struct as whether it is null, each payload
    ``data`` as its text, or with ``project`` as whether it is there), then one flag per payload
    ``data``: it is a JSON value other than a string. :func:`_nest` nests them again."""
    cols, flags, paths = [], [], []
    for i, (path, t) in enumerate(_leaves(raw_schema)):
        ref = ".".join(f'"{p}"' for p in path)
        if pa.types.is_struct(t) or _projected(path, project):
            cols.append(f'({ref} IS NOT NULL) AS "c{i}"')
        elif _data_leaf(path):
            cols.append(f"({ref} ->> '$') AS \"c{i}\"")
        else:
            cols.append(f'{ref} AS "c{i}"')
        if _data_leaf(path):
            # JSON text of a string starts with a quote (a prefix test: json_type would parse it again)
            flags.append(f"coalesce(left(CAST({ref} AS VARCHAR), 1) <> '\"', false) AS \"f{len(paths)}\"")
            paths.append(path[:-1])
    return ", ".join(cols + flags), tuple(paths)


def _nest(flat: pa.Table, raw_schema: pa.Schema, project: bool) -> pa.Table:
    """The leaf columns of :func:`_duck_projection` nested back into ``raw_schema``; with
    ``project`` a present ``data`` is the empty string."""
    cols = iter(flat.columns)

    def build(t, path):
        out = []
        for f in t:
            col = next(cols).combine_chunks()
            if pa.types.is_struct(f.type):
                children = build(f.type, path + (f.name,))
                out.append(pa.StructArray.from_arrays(children, fields=list(f.type), mask=pc.invert(col)))
            elif _projected(path + (f.name,), project):
                out.append(pc.if_else(col, pa.scalar("", pa.string()), pa.scalar(None, pa.string())))
            else:
                out.append(col.cast(f.type))
        return out

    return pa.Table.from_arrays(build(raw_schema, ()), schema=raw_schema)


def _duck_read(data: bytes, raw_schema: pa.Schema, project: bool = False) -> tuple[pa.Table, np.ndarray] | None:
    """``data`` parsed by DuckDB: the flat table of :func:`_duck_projection` and, per row,
    whether some payload ``data`` is not a string; None when DuckDB rejects it. (Read from
    memory: DuckDB scans a Python file object without a copy to a file.)"""
    import duckdb

    con = getattr(_duck_local, "con", None)
    if con is None:
        # batches already run on a thread each (pipeline.default_workers): one thread per batch
        con = _duck_local.con = duckdb.connect(config={"threads": 1})
    select, paths = _duck_projection(raw_schema, project)
    try:
        rel = con.read_json(io.BytesIO(data), format="newline_delimited", columns=_duck_columns(raw_schema),
                            maximum_object_size=1 << 30)
        table = rel.project(select).to_arrow_table()
    except duckdb.Error:
        return None
    flagged = np.zeros(table.num_rows, dtype=bool)
    for k in range(len(paths)):
        flag = table.column(table.num_columns - len(paths) + k)
        if pc.any(flag).as_py():
            flagged |= np.asarray(flag.to_numpy(zero_copy_only=False), dtype=bool)
    return table.select(range(table.num_columns - len(paths))), flagged


def _repair_rows(flat: pa.Table, flagged: np.ndarray, idx: np.ndarray, lines: Lines, raw_schema: pa.Schema,
                 project: bool, repairs: dict | None) -> pa.Table:
    """The flagged rows' payload ``data`` (a JSON value other than a string) as its JSON text,
    and ``repairs[line]`` listing ``(side, reason)`` for them."""
    rows = np.flatnonzero(flagged)
    leaf_col = {path[:-1]: i for i, (path, t) in enumerate(_leaves(raw_schema)) if _data_leaf(path)}
    fixed: dict[int, dict[int, str]] = {}
    for r in rows.tolist():
        i = int(idx[r])
        found = _payload_repairs(lines.buf[lines.starts[i]:lines.ends[i]])
        if not found:
            continue
        if repairs is not None:
            repairs[i] = [(side, reason) for side, _, reason in found.values()]
        for path, (_, text, _) in found.items():
            fixed.setdefault(leaf_col[path], {})[r] = text
    if project:
        return flat
    for c, values in fixed.items():
        col = flat.column(c).to_pylist()  # error path: a column with a repaired payload
        for r, text in values.items():
            col[r] = text
        flat = flat.set_column(c, flat.field(c), pa.array(col, flat.schema.field(c).type))
    return flat


def parse_json_lines(
    lines: Lines,
    raw_schema: pa.Schema,
    repairs: dict[int, list[tuple[str, str]]] | None = None,
    *,
    payload: bool = True,
    parser: str = "duckdb",
) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Parse every non-blank line against ``raw_schema``.

    Returns the parsed table, the line positions (indexes into ``lines``) of its rows, and
    ``(line position, reason)`` for the lines that did not parse. A payload whose ``data`` is a
    JSON number/object/array/boolean instead of a string keeps its line (the value as JSON text)
    and, with a ``repairs`` dict, ``repairs[position]`` lists ``(side, reason)`` for it.
    ``payload=False``: the payload text is not needed; a capture's ``data`` is then read as ""
    (there) or null; which lines parse, and every other field, are the same.
    ``parser``: ``"duckdb"`` (DuckDB's reader, falling back per file to the exact path) or
    ``"exact"`` (the exact path alone: the tests' second opinion).
    """
    if parser not in ("duckdb", "exact"):
        raise ValueError(f"parser must be 'duckdb' or 'exact', not {parser!r}")
    n = len(lines.starts)
    if n == 0:
        return raw_schema.empty_table(), np.zeros(0, dtype=np.int64), []
    project = not payload
    parts: list[tuple[np.ndarray, pa.Table]] = []
    bad: list[tuple[int, str]] = []
    # Lines no reader may see are set aside and blanked out first: lines that are not UTF-8
    # (pyarrow's reader passes them through unchecked) and lines that cannot be a JSON object
    # because they do not start with "{" (a line "null" is a row of nulls to DuckDB, and crashes
    # pyarrow's reader, apache/arrow#47409).
    not_utf8 = invalid_utf8(lines)
    not_object = np.flatnonzero(lines.first != ord("{")) if lines.first is not None else []
    not_object = np.setdiff1d(not_object, not_utf8)
    bad += [(int(i), "line is not valid UTF-8 text") for i in not_utf8]
    bad += [(int(i), _clean_reason(None, lines.buf[lines.starts[i]:lines.ends[i]])) for i in not_object]
    unfit = np.union1d(not_utf8, not_object).astype(np.int64)
    todo = np.setdiff1d(np.arange(n), unfit) if len(unfit) else np.arange(n)
    buf = blank_out(lines, unfit) if len(unfit) else lines.buf

    def duck(idx: np.ndarray, data: bytes) -> bool:
        got = _duck_read(data, raw_schema, project)
        if got is None or got[0].num_rows != len(idx):
            return False
        flat, flagged = got
        if flagged.any():
            flat = _repair_rows(flat, flagged, idx, lines, raw_schema, project, repairs)
        parts.append((idx, _nest(flat, raw_schema, project)))
        return True

    def exact(idx: np.ndarray, data: bytes | None) -> None:
        _exact(lines, idx, data, raw_schema, parts, bad, duck)

    if len(todo) and parser == "duckdb":
        if not duck(todo, buf):
            files = np.split(todo, np.flatnonzero(np.diff(lines.file_index[todo])) + 1)
            for idx in files:
                data = buf[lines.starts[idx[0]]:lines.ends[idx[-1]]] + b"\n"
                if len(files) == 1 or not duck(idx, data):
                    exact(idx, data)
    elif len(todo):
        exact(todo, buf)
    bad.sort()
    if not parts:
        return raw_schema.empty_table(), np.zeros(0, dtype=np.int64), bad
    parts.sort(key=lambda p: p[0][0])
    table = pa.concat_tables([t for _, t in parts])
    positions = np.concatenate([i for i, _ in parts])
    if len(positions) > 1 and (np.diff(positions) < 0).any():  # interleaved parts: back in order
        order = np.argsort(positions, kind="stable")
        table, positions = table.take(pa.array(order)), positions[order]
    return table, positions, bad


def _exact(lines: Lines, idx: np.ndarray, data: bytes | None, raw_schema: pa.Schema,
           parts: list, bad: list, duck) -> None:
    """The exact path for the lines ``idx`` (``data``: their bytes, or None to join them):
    pyarrow's strict reader with bisection finds the lines that are plain JSON in a few calls
    per bad line; each line it rejects is judged alone (:func:`_judge`), and those that still
    have a meaning (DuckDB's leniencies, a non-string in a string field, nesting deeper than
    Python parses) are read by DuckDB's reader together, bisected only if it rejects some."""
    longest = int((lines.ends[idx] - lines.starts[idx]).max())
    block_size = max(4 << 20, longest + 64)
    rejected: list[int] = []
    stack: list[tuple[np.ndarray, bytes | None]] = [(idx, data)]
    while stack:
        part, data = stack.pop()
        if data is None:
            data = lines.join(part)
        try:
            table = _read(data, raw_schema, block_size)
            if table.num_rows == len(part):
                parts.append((part, table))
                continue
        except pa.ArrowException:
            pass
        if len(part) == 1:
            rejected.append(int(part[0]))
            continue
        mid = len(part) // 2
        stack += [(part[mid:], None), (part[:mid], None)]
    readable = []
    for i in rejected:  # error path: one line at a time
        reason = _judge(lines.buf[lines.starts[i]:lines.ends[i]], raw_schema)
        if reason:
            bad.append((i, reason))
        else:
            readable.append(i)
    stack = [np.array(readable, dtype=np.int64)] if readable else []
    while stack:
        part = stack.pop()
        if duck(part, lines.join(part)):
            continue
        if len(part) == 1:
            i = int(part[0])
            bad.append((i, _clean_reason(_duck_error(lines.join(part), raw_schema), lines.buf[lines.starts[i]:lines.ends[i]])))
            continue
        mid = len(part) // 2
        stack += [part[mid:], part[:mid]]


def _duck_error(data: bytes, raw_schema: pa.Schema) -> Exception | None:
    """DuckDB's complaint about ``data`` (one line it rejected; error path only)."""
    import duckdb

    try:
        _duck_local.con.read_json(io.BytesIO(data), format="newline_delimited", columns=_duck_columns(raw_schema),
                                  maximum_object_size=1 << 30).fetchall()
    except duckdb.Error as exc:
        return exc
    return None



def file_key(rel: str) -> str:
    """The prefix of every ``capture_id``/``label_id`` from the file at ``rel`` (its path relative
    to the tree root): ``{file_key(rel)}:{line}``."""
    return hashlib.sha1(rel.encode()).hexdigest()[:16]


def _file_keys(batch: FileBatch) -> list[str]:
    return [file_key(f.rel) for f in batch.files]


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

    >>> t = parse_time(pa.array(["2022-02-14T19:25:49.5+02:00", "2022-02-14 17:25:49", "soon"]))
    >>> [None if v is None else v.isoformat() for v in t.to_pylist()]
    ['2022-02-14T17:25:49.500000+00:00', '2022-02-14T17:25:49+00:00', None]
    """
    try:
        return values.cast(schema.TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Some value is not what Arrow's cast accepts: normalize every value to one format, then parse
    # with that explicit format, so a bad value becomes null instead of failing the batch.
    import polars as pl  # only here, for the rare batch with odd times: not at start-up

    s = pl.from_arrow(values).cast(pl.String).str.strip_chars()
    s = s.str.replace(r"^(\d{4}-\d{2}-\d{2})[ t]", "${1}T").str.replace(r"[zZ]$", "+00:00")
    s = s.str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}")
    s = pl.select(
        pl.when(s.str.contains(r"[+-]\d{2}:\d{2}$")).then(s).otherwise(s + "+00:00")
    ).to_series()
    seconds = s.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us", time_zone="UTC"
    )
    minutes = s.str.to_datetime("%Y-%m-%dT%H:%M%:z", strict=False, time_unit="us", time_zone="UTC")
    return seconds.fill_null(minutes).to_arrow().cast(schema.TIMESTAMP)


def _quarantine(
    stage: str,
    source: pa.Array,
    line: pa.Array,
    ids: pa.Array | None,
    reasons: pa.Array,
    raw: pa.Array,
) -> pa.Table:
    n = len(source)
    return schema.quarantine_rows(
        {
            "stage": pa.array([stage] * n, pa.string()),
            "source_file": source,
            "line_number": line,
            "capture_id": ids if ids is not None else pa.nulls(n, pa.string()),
            "reason": reasons,
            "raw": raw,
        }
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
    # raw label rows embedded in capture lines (merged records), as parse_labels makes them
    labels: pa.Table | None = None
    # payloads (side -> [(row, reason)]) that must not be decoded: their data was not a string
    payload_failures: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


def _reject(
    table: pa.Table,
    positions: np.ndarray,
    invalid: np.ndarray,
    reasons: np.ndarray,
    batch: FileBatch,
    lines: Lines,
) -> tuple[pa.Table, np.ndarray, pa.Table]:
    """Move rows flagged ``invalid`` from ``table`` to a stage-'line' quarantine table."""
    if not invalid.any():
        return table, positions, schema.empty(schema.QUARANTINE)
    bad_pos = positions[invalid]
    q = _line_quarantine(batch, lines, list(zip(bad_pos.tolist(), reasons[invalid].tolist())))
    keep = pa.array(~invalid)
    return table.filter(keep), positions[~invalid], q


def _missing(col: pa.Array) -> np.ndarray:
    return np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _per_row(batch: FileBatch, lines: Lines, positions: np.ndarray, values: list, type_) -> pa.Array:
    """A per-file value (endpoint, hour, …) repeated for each row."""
    return pa.array(values, type_).take(pa.array(lines.file_index[positions]))


# The keys of ``eventMetadata`` that have columns of their own; any other key (a ``targetModel``
# written by a multi-model server, say) is kept in ``captures.event_metadata``.
KNOWN_METADATA = ("eventId", "inferenceId", "inferenceTime")
_STRING = r'"(?:[^"\\]|\\.)*"'
# A flat eventMetadata object's members (strings may hold braces). Inside a JSON string quotes
# are escaped, so an unescaped "eventMetadata" followed by ":" is always the key.
_METADATA_BODY = rf'"eventMetadata"\s*:\s*\{{(?P<body>(?:[^{{}}"]|{_STRING})*)\}}'
_KNOWN_MEMBER = rf'"(?:{"|".join(KNOWN_METADATA)})"\s*:\s*(?:{_STRING}|null)\s*,?'


def _extra_metadata(lines: Lines, positions: np.ndarray) -> pa.Array:
    """The members of each row's ``eventMetadata`` other than :data:`KNOWN_METADATA`, as a JSON
    object's text (values as written), null when there are none. One RE2 pass over the lines;
    an object holding nested objects or arrays (which the pattern does not match) is read with
    ``json`` on its own."""
    n = len(positions)
    if not n:
        return pa.nulls(0, pa.string())
    offsets = np.append(lines.starts, len(lines.buf)).astype(np.int64)
    arr = pa.Array.from_buffers(
        pa.large_binary(), len(lines.starts), [None, pa.py_buffer(offsets), pa.py_buffer(lines.buf)]
    )
    found = pc.extract_regex(arr, _METADATA_BODY).take(pa.array(positions))
    body = found.field("body").cast(pa.string())
    rest = pc.replace_substring_regex(body, _KNOWN_MEMBER, "")
    rest = pc.replace_substring_regex(rest, r"^[\s,]+|[\s,]+$", "")
    out = pc.if_else(pc.equal(rest, ""), pa.scalar(None, pa.string()),
                     pc.binary_join_element_wise("{", rest, "}", ""))
    unmatched = np.flatnonzero(~np.asarray(found.is_valid().to_numpy(zero_copy_only=False), bool))
    if len(unmatched):  # nested values: rare, read one by one
        values = out.to_pylist()
        for r in unmatched.tolist():
            i = int(positions[r])
            try:
                meta = json.loads(lines.buf[lines.starts[i] : lines.ends[i]]).get("eventMetadata")
            except (ValueError, RecursionError, AttributeError):
                meta = None
            extra = {k: v for k, v in meta.items() if k not in KNOWN_METADATA} if isinstance(meta, dict) else {}
            values[r] = json.dumps(extra, separators=(",", ":")) if extra else None
        out = pa.array(values, pa.string())
    return out


def _payload_field(primary: pa.Array, fallback: pa.Array, use_primary: pa.Array, name: str) -> pa.Array:
    """``primary.name`` where ``use_primary``, else ``fallback.name`` (no copy when the
    fallback is absent everywhere, the usual case)."""
    if fallback.field("data").null_count == len(fallback):
        return primary.field(name)
    return pc.if_else(use_primary, primary.field(name), fallback.field(name))


def parse_captures(batch: FileBatch, *, payload: bool = True, parser: str = "duckdb") -> Parsed:
    """Decode a batch of capture files into rows of the ``captures`` schema.

    Also reads the shapes Model Monitor's jobs write: a ``batchTransformOutput`` fills the output
    side when there is no ``endpointOutput``; an embedded ``groundTruthData`` becomes a raw label
    row (``Parsed.labels``, keyed on the capture's inference id, else its event id); a record
    without ``inferenceTime`` takes the hour of its folder (``inference_time_from_path``).
    A payload whose ``data`` is not a string keeps its capture row: only that payload is listed
    in ``Parsed.payload_failures`` (and quarantined by the decoder).

    ``payload=False``: the caller decodes no payload and drops ``input_data``/``output_data``;
    they may then hold "" for a payload that is there (the rows and every other column are the
    same).
    """
    lines = split_lines(batch)
    repairs: dict[int, list[tuple[str, str]]] = {}
    raw, positions, bad = parse_json_lines(lines, RAW_CAPTURE, repairs, payload=payload, parser=parser)
    quarantine = [_file_quarantine(batch), _line_quarantine(batch, lines, bad)]
    meta = raw.column("eventMetadata").combine_chunks()
    cdata = raw.column("captureData").combine_chunks()
    inp = cdata.field("endpointInput")
    endpoint_out = cdata.field("endpointOutput")
    batch_out = cdata.field("batchTransformOutput")
    # the output side: endpointOutput, else a batch transform's output
    use_endpoint = pc.invert(pc.is_null(endpoint_out.field("data")))
    event_id = meta.field("eventId")
    time_text = meta.field("inferenceTime")
    times = parse_time(time_text)
    path_hours = _per_row(batch, lines, positions, [f.hour for f in batch.files], schema.TIMESTAMP)
    from_path = _missing(time_text) & ~_missing(path_hours)
    if from_path.any():
        times = pc.if_else(pa.array(from_path), path_hours, times)
    # Row-level checks, vectorized; the first failing check names the reason.
    reasons = np.full(len(raw), "", dtype=object)
    invalid = np.zeros(len(raw), dtype=bool)
    checks = [
        (_missing(meta) | _missing(event_id), "missing eventMetadata.eventId"),
        (
            _missing(time_text) & ~from_path,
            "missing eventMetadata.inferenceTime (and the file is not in an hour folder)",
        ),
        (
            _missing(times) & ~_missing(time_text),
            "eventMetadata.inferenceTime is not an ISO 8601 time",
        ),
        (
            _missing(inp.field("data"))
            & _missing(endpoint_out.field("data"))
            & _missing(batch_out.field("data")),
            "captureData has neither endpointInput nor endpointOutput data (nor batchTransformOutput)",
        ),
    ]
    for mask, reason in checks:
        new = mask & ~invalid
        reasons[new] = reason
        invalid |= new
    source, line = _source(batch, lines, positions)
    table = pa.table(
        {
            "capture_id": _row_ids(batch, lines, positions),
            "endpoint": _per_row(batch, lines, positions, [f.endpoint for f in batch.files], pa.string()),
            "variant": _per_row(batch, lines, positions, [f.variant for f in batch.files], pa.string()),
            "event_id": event_id,
            "inference_id": meta.field("inferenceId"),
            "inference_time": times,
            "inference_time_from_path": pa.array(from_path, pa.bool_()),
            "event_version": raw.column("eventVersion").combine_chunks(),
            "event_metadata": _extra_metadata(lines, positions),
            "input_observed_content_type": inp.field("observedContentType"),
            "input_encoding": inp.field("encoding"),
            "input_mode": inp.field("mode"),
            "input_data": inp.field("data"),
            "output_observed_content_type": _payload_field(
                endpoint_out, batch_out, use_endpoint, "observedContentType"
            ),
            "output_encoding": _payload_field(endpoint_out, batch_out, use_endpoint, "encoding"),
            "output_mode": _payload_field(endpoint_out, batch_out, use_endpoint, "mode"),
            "output_data": _payload_field(endpoint_out, batch_out, use_endpoint, "data"),
            "source_file": source,
            "line_number": line,
        },
        schema=schema.CAPTURES,
    )
    gt = raw.column("groundTruthData").combine_chunks()
    table, positions, q = _reject(table, positions, invalid, reasons, batch, lines)
    quarantine.append(q)
    keep = ~invalid
    failures: dict[str, list[tuple[int, str]]] = {"input": [], "output": []}
    label_failures: list[tuple[int, str]] = []
    if repairs:
        row_of = {int(p): r for r, p in enumerate(positions)}
        for p, found in repairs.items():
            r = row_of.get(p)
            if r is None:  # the line was rejected for another reason
                continue
            for side, reason in found:
                (label_failures if side == "label" else failures[side]).append((r, reason))
    labels, label_q = _embedded_labels(table, gt.filter(pa.array(keep)), label_failures, batch, lines, positions)
    quarantine.append(label_q)
    return Parsed(
        table,
        pa.concat_tables(quarantine),
        len(lines.starts),
        lines.blank,
        labels=labels,
        payload_failures={k: sorted(v) for k, v in failures.items() if v},
    )


def _source_modified(batch: FileBatch, lines: Lines, positions: np.ndarray) -> pa.Array:
    mtimes = [None if f.mtime is None else int(f.mtime * 1_000_000) for f in batch.files]
    return _per_row(batch, lines, positions, mtimes, pa.int64()).cast(schema.TIMESTAMP)


def _embedded_labels(
    captures: pa.Table,
    gt: pa.Array,
    failures: list[tuple[int, str]],
    batch: FileBatch,
    lines: Lines,
    positions: np.ndarray,
) -> tuple[pa.Table | None, pa.Table]:
    """Raw label rows (as :func:`parse_labels` makes) for the captures that carry a
    ``groundTruthData`` (Model Monitor's merged records), and label-stage quarantine rows for
    those whose label ``data`` is not a string."""
    data = gt.field("data")
    has = ~_missing(data)
    bad_rows = np.array([r for r, _ in failures], dtype=np.int64)
    q = schema.empty(schema.QUARANTINE)
    if len(bad_rows):
        idx = pa.array(bad_rows)
        q = _quarantine(
            "label",
            captures.column("source_file").take(idx),
            captures.column("line_number").take(idx),
            captures.column("capture_id").take(idx),
            pa.array([m for _, m in failures], pa.string()),
            data.take(idx),
        )
        has[bad_rows] = False
    if not has.any():
        return None, q
    sel = pa.array(has)
    c = captures.filter(sel)
    labels = pa.table(
        {
            "label_id": c.column("capture_id"),
            "event_id": pc.coalesce(c.column("inference_id"), c.column("event_id")),
            "label_hour": pc.floor_temporal(c.column("inference_time"), unit="hour"),
            "encoding": gt.field("encoding").filter(sel),
            "data": data.filter(sel),
            "event_version": c.column("event_version"),
            "source_file": c.column("source_file"),
            "source_modified": _source_modified(batch, lines, positions[has]),
            "line_number": c.column("line_number"),
        }
    )
    return labels, q


def parse_labels(batch: FileBatch, *, parser: str = "duckdb") -> Parsed:
    """Decode a batch of ground-truth files into raw label rows (payload still encoded).

    The returned table has ``label_id, event_id, label_hour, encoding, data, event_version,
    source_file, source_modified, line_number``; :mod:`captureq.decode` turns ``data`` into ``ground_truth``.
    """
    lines = split_lines(batch)
    repairs: dict[int, list[tuple[str, str]]] = {}
    raw, positions, bad = parse_json_lines(lines, RAW_LABEL, repairs, parser=parser)
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
    hours = pa.array([f.hour for f in batch.files], schema.TIMESTAMP).take(
        pa.array(lines.file_index[positions])
    )
    table = pa.table(
        {
            "label_id": _row_ids(batch, lines, positions),
            "event_id": event_id,
            "label_hour": hours,
            "encoding": gt.field("encoding"),
            "data": gt.field("data"),
            "event_version": raw.column("eventVersion").combine_chunks(),
            "source_file": source,
            "source_modified": _source_modified(batch, lines, positions),
            "line_number": line,
        }
    )
    table, positions, q = _reject(table, positions, invalid, reasons, batch, lines)
    quarantine.append(q)
    failures = []
    if repairs:
        row_of = {int(p): r for r, p in enumerate(positions)}
        failures = sorted(
            (row_of[p], reason)
            for p, found in repairs.items()
            if p in row_of
            for _, reason in found
        )
    return Parsed(
        table,
        pa.concat_tables(quarantine),
        len(lines.starts),
        lines.blank,
        payload_failures={"label": failures} if failures else {},
    )
