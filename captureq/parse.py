"""Turn the bytes of capture (or ground-truth) files into typed Arrow tables, in bulk.

A batch of files is concatenated into one buffer and handed to pyarrow's multi-threaded JSON
reader once, with an explicit schema. Line boundaries are found with numpy, so every row knows
its ``source_file`` and ``line_number`` without a Python loop per record.

When the reader rejects the buffer (a malformed line somewhere), the batch is bisected: halves
that parse are kept, and single lines that do not parse become quarantine rows with the
reader's reason. A batch with ``b`` bad lines costs ``O(b log n)`` extra reader calls.

A payload whose ``data`` is a JSON number, object, array or boolean instead of a string does not
cost its line: when the batch fails to parse, one regex scan of the buffer finds such lines,
they are parsed in one second reader call with the value re-serialized as JSON text, the rest
is read again without them, and only that payload is reported
(``Parsed.payload_failures``, quarantined by the decoder as stage input/output/label).

Counts always reconcile: non-blank lines read = rows parsed + quarantine rows of stage 'line'.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
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
_WHITESPACE = np.frombuffer(b" \t\r", dtype=np.uint8)
_NON_WHITESPACE = re.compile(rb"[^ \t\r]")


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
    # Blank = only JSON whitespace (what the JSON reader skips too). A capture line starts with
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


_CHANGED = re.compile(r"Column\((/[^)]*)\) changed from (\w+) to (\w+)")


def _clean_reason(exc: Exception | None, line: bytes = b"") -> str:
    """Say what is wrong with one line the JSON reader rejected (error path only)."""
    if b"\x00" in line:
        return "line contains NUL bytes; it is binary junk, not a JSON object"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        text = err.doc.rstrip(" \t\r")
        if text.lstrip().startswith("{") and (
            err.pos >= len(text) or err.msg.startswith("Unterminated string")
        ):
            return f"truncated JSON line: it ends inside a value ({err.msg} column {err.colno})"
        return f"invalid JSON line: {err.msg} (column {err.colno})"
    except (ValueError, RecursionError):
        value = None
    else:
        if not isinstance(value, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
                type(value), "a number"
            )
            return f"line is {kind}, not a JSON object"
    if exc is None:
        return "invalid JSON line: not a JSON object"
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    msg = _ROW_SUFFIX.sub("", msg)
    msg = msg.replace("JSON parse error: ", "")
    m = _CHANGED.search(msg)
    if m:
        field = m.group(1).strip("/").replace("/", ".")
        return f"wrong type: {field} is {_a(m.group(3))}, expected {_a(m.group(2))}"
    return f"invalid JSON line: {msg}"


def _a(kind: str) -> str:
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


def _read(data: bytes, raw_schema: pa.Schema, block_size: int) -> pa.Table:
    return pj.read_json(
        pa.py_buffer(data),
        read_options=pj.ReadOptions(block_size=block_size, use_threads=True),
        parse_options=pj.ParseOptions(
            explicit_schema=raw_schema, unexpected_field_behavior="ignore"
        ),
    )


# -- the fast path: DuckDB's JSON reader ---------------------------------------------------------
# DuckDB's newline-delimited reader parses a batch in parallel, validating every line, and
# materializes only the declared fields (here: pyarrow's schema, every leaf VARCHAR). It is more
# lenient than pyarrow's reader, whose verdicts (and so the quarantine) are the reference: it
# turns a number, object or array in a VARCHAR field into text, and accepts nan/inf literals in
# any case, exponents that overflow a double, trailing commas, and a vertical tab or form feed
# after the object. One RE2 scan of the batch (pyarrow.compute, C speed, one verdict per line)
# flags every line where any of these *could* be (``_suspect_pattern``): those lines are read by
# pyarrow (with its repair and bisection), the others by DuckDB. Conservative: text inside a
# string can flag a line too, which is then only read more slowly. Any DuckDB error, or a row
# count that is not one per line, hands the whole batch to pyarrow. tests/test_parse_engines.py
# proves both give the same tables and quarantine.
# CAPTUREQ_PARSER: "duckdb", "pyarrow", or "auto" (the default: DuckDB for reads that need no
# payload text, e.g. ``select count(*) from captures``, pyarrow otherwise).
PARSER = os.environ.get("CAPTUREQ_PARSER", "pyarrow").lower()
_duck_local = threading.local()


def use_duckdb(payload: bool = True) -> bool:
    """Whether DuckDB's reader parses a batch (``payload``: the payload text is needed)."""
    return PARSER == "duckdb" or (PARSER == "auto" and not payload)


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "STRUCT(" + ", ".join(f'"{f.name}" {_duck_type(f.type)}' for f in t) + ")"
    return "VARCHAR"


@functools.cache
def _duck_columns(raw_schema: pa.Schema) -> dict:
    return {f.name: _duck_type(f.type) for f in raw_schema}


def _leaves(t, path=()):
    """``(path, type)`` of every struct and leaf field under ``t`` (a schema or struct type)."""
    for f in t:
        yield path + (f.name,), f.type
        if pa.types.is_struct(f.type):
            yield from _leaves(f.type, path + (f.name,))


@functools.cache
def _duck_projection(raw_schema: pa.Schema) -> str:
    """A flat select list of every field, with each payload ``data`` replaced by whether it is
    there, and each struct by whether it is null (:func:`_nest` nests them again)."""
    cols = []
    for i, (path, t) in enumerate(_leaves(raw_schema)):
        ref = ".".join(f'"{p}"' for p in path)
        if pa.types.is_struct(t) or path[-1] == "data" and path[0] == "captureData":
            ref = f"({ref} IS NOT NULL)"
        cols.append(f'{ref} AS "c{i}"')
    return ", ".join(cols)


def _nest(flat: pa.Table, raw_schema: pa.Schema) -> pa.Table:
    """The table of :func:`_duck_projection` nested back into ``raw_schema``; a present
    ``data`` is the empty string."""
    cols = iter(flat.columns)

    def build(t, path):
        out = []
        for f in t:
            col = next(cols).combine_chunks()
            if pa.types.is_struct(f.type):
                children = build(f.type, path + (f.name,))
                mask = pc.invert(col)
                out.append(pa.StructArray.from_arrays(children, fields=list(f.type), mask=mask))
            elif f.name == "data" and path[:1] == ("captureData",):
                out.append(pc.if_else(col, pa.scalar("", pa.string()), pa.scalar(None, pa.string())))
            else:
                out.append(col.cast(f.type))
        return out

    return pa.Table.from_arrays(build(raw_schema, ()), schema=raw_schema)


@functools.cache
def _suspect_pattern(raw_schema: pa.Schema) -> str:
    """An RE2 pattern that matches every line on which DuckDB's reader could accept what
    pyarrow's rejects (and some lines where it could not: text inside strings)."""
    leaves = sorted({p[-1] for p, t in _leaves(raw_schema) if not pa.types.is_struct(t)})
    structs = sorted({p[-1] for p, t in _leaves(raw_schema) if pa.types.is_struct(t)})
    ws = r"[ \t\r]*"
    return "|".join([
        # a nan/inf literal (any case, any sign): a value starting with i or n but not null
        rf"[:,\[]{ws}[-+]?{ws}(?:[iI]|[nN](?:[^u]|u[^l]|ul[^l]))",
        # an exponent of 100 or more (may overflow a double)
        rf"[:,\[]{ws}-?[0-9]+(?:\.[0-9]*)?[eE][-+]?0*[1-9][0-9][0-9]",
        rf",{ws}[\]}}]",  # a trailing comma
        # a string field holding anything but a string or null; a struct anything but an object
        rf'"(?:{"|".join(leaves)})"{ws}:{ws}[^" \t\rn]',
        rf'"(?:{"|".join(structs)})"{ws}:{ws}[^{{ \t\rn]',
        r'\\.[^"\\]*"' + ws + ":",  # a key written with an escape (it could be any of those)
        r"[\x0b\x0c]",  # whitespace to DuckDB, not to pyarrow
    ])


def _suspect_lines(lines: Lines, raw_schema: pa.Schema) -> np.ndarray:
    """Positions of the lines matching :func:`_suspect_pattern`: one RE2 pass over the buffer,
    each line an element of a zero-copy binary array."""
    n = len(lines.starts)
    if not n:
        return np.zeros(0, dtype=np.int64)
    offsets = np.append(lines.starts, len(lines.buf)).astype(np.int64)
    arr = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(lines.buf)])
    hit = pc.match_substring_regex(arr, _suspect_pattern(raw_schema))
    return np.flatnonzero(hit.to_numpy(zero_copy_only=False))


def _duckdb_read(data: bytes, raw_schema: pa.Schema, project: bool = False) -> pa.Table | None:
    """``data`` parsed by DuckDB into ``raw_schema``, or None when pyarrow must read it.
    (Read from memory: DuckDB scans a Python file object without a copy to a file.)

    Every line of ``data`` must be free of what :func:`_suspect_pattern` flags. ``project``:
    payload ``data`` under ``captureData`` is only "" (there) or null, never materialized."""
    import duckdb

    con = getattr(_duck_local, "con", None)
    if con is None:
        # batches already run on a thread each (pipeline.default_workers): one thread per batch
        threads = 1
        con = _duck_local.con = duckdb.connect(config={"threads": threads})
    columns = _duck_columns(raw_schema)
    try:
        rel = con.read_json(io.BytesIO(data), format="newline_delimited", columns=columns,
                            maximum_object_size=1 << 30)
        if project:
            rel = rel.project(_duck_projection(raw_schema))
        table = rel.to_arrow_table()
    except duckdb.Error:
        return None
    try:
        return _nest(table, raw_schema) if project else table.cast(raw_schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None




# Where a payload's ``data`` sits in a line, and the side it belongs to.
PAYLOAD_SIDES = {
    ("captureData", "endpointInput"): "input",
    ("captureData", "endpointOutput"): "output",
    ("captureData", "batchTransformOutput"): "output",
    ("groundTruthData",): "label",
}
_JSON_KIND = {dict: "a JSON object", list: "a JSON array", bool: "a JSON boolean"}


def _repair_line(text: bytes) -> tuple[bytes, list[tuple[str, str]]] | None:
    """A line whose payload ``data`` is a JSON value other than a string, with that value
    re-serialized as a string; and ``(side, reason)`` per payload repaired. None when the line
    has no such payload (or is not JSON at all). Error path only."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    found = []
    for path, side in PAYLOAD_SIDES.items():
        node = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or "data" not in node:
            continue
        value = node["data"]
        if value is None or isinstance(value, str):
            continue
        kind = _JSON_KIND.get(type(value), "a JSON number")
        node["data"] = json.dumps(value)
        name = ".".join(path)
        found.append(
            (
                side,
                f"{name}.data is {kind}, not a string (SageMaker stores payloads as text); "
                "kept re-serialized as JSON in the capture row, not decoded",
            )
        )
    if not found:
        return None
    return json.dumps(doc).encode(), found


# A key "data" whose value starts like a number, object, array or boolean. Inside a JSON string
# quotes are escaped, so an unescaped "data" followed by ":" is always a key.
_DATA_NOT_STRING = re.compile(rb'"data"\s*:\s*[-0-9{\[tf]')


def _data_not_string(lines: Lines) -> np.ndarray:
    """Positions of the lines holding a ``"data"`` key whose value is not a string or null:
    one regex scan over the whole buffer (C speed), a Python step per match only."""
    hits = [m.start() for m in _DATA_NOT_STRING.finditer(lines.buf)]
    if not hits:
        return np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(lines.starts, np.array(hits), side="right") - 1
    return np.unique(pos[pos >= 0])


def _repair(
    lines: Lines,
    candidates: np.ndarray,
    raw_schema: pa.Schema,
    block_size: int,
    repairs: dict[int, list[tuple[str, str]]],
) -> tuple[list[tuple[np.ndarray, pa.Table]], list[tuple[int, str]], np.ndarray]:
    """Lines whose payload ``data`` is a JSON number/object/array/boolean, parsed with that value
    re-serialized as a string (one reader call for all of them, bisected only if some line has
    another fault too). Returns the parsed parts, ``(position, reason)`` for candidates that
    still fail, and the positions handled here (the caller keeps them out of its own pass)."""
    fixed: dict[int, bytes] = {}
    for i in candidates.tolist():  # error path: only lines the regex flagged
        rep = _repair_line(lines.buf[lines.starts[i] : lines.ends[i]])
        if rep is not None:
            fixed[i] = rep[0]
            repairs[i] = rep[1]
    handled = np.array(sorted(fixed), dtype=np.int64)
    parts: list[tuple[np.ndarray, pa.Table]] = []
    still_bad: list[tuple[int, str]] = []
    stack = [handled] if len(handled) else []
    while stack:
        idx = stack.pop()
        data = b"\n".join(fixed[i] for i in idx.tolist()) + b"\n"
        try:
            table = _read(data, raw_schema, block_size)
            if table.num_rows == len(idx):
                parts.append((idx, table))
                continue
            error: Exception = ValueError(f"line holds {table.num_rows} JSON values, expected one")
        except pa.ArrowException as exc:
            error = exc
        if len(idx) == 1:  # another fault remains: quarantined as the original line
            i = int(idx[0])
            del repairs[i]
            still_bad.append((i, _clean_reason(error, lines.buf[lines.starts[i] : lines.ends[i]])))
            continue
        stack += [idx[len(idx) // 2 :], idx[: len(idx) // 2]]
    return parts, still_bad, handled


def parse_json_lines(
    lines: Lines,
    raw_schema: pa.Schema,
    repairs: dict[int, list[tuple[str, str]]] | None = None,
    *,
    payload: bool = True,
) -> tuple[pa.Table, np.ndarray, list[tuple[int, str]]]:
    """Parse every non-blank line against ``raw_schema``.

    Returns the parsed table, the line positions (indexes into ``lines``) of its rows, and
    ``(line position, reason)`` for the lines that did not parse. With a ``repairs`` dict, lines
    whose payload ``data`` is a JSON number/object/array instead of a string are kept (the value
    re-serialized as JSON text) and ``repairs[position]`` lists ``(side, reason)`` for them.
    ``payload=False``: the payload text is not needed; a capture's ``data`` may then be read as
    "" (there) or null (see :func:`use_duckdb`); which lines parse, and every other field, are
    the same.
    """
    n = len(lines.starts)
    if n == 0:
        return raw_schema.empty_table(), np.zeros(0, dtype=np.int64), []
    longest = int((lines.ends - lines.starts).max())
    block_size = max(4 << 20, longest + 64)
    parts: list[tuple[np.ndarray, pa.Table]] = []
    bad: list[tuple[int, str]] = []
    everything = np.arange(n)
    # Fast path: the whole batch in one call. The reader skips blank lines as split_lines does.
    # Lines it must not see are set aside first and blanked out: lines that are not UTF-8 (it
    # would pass them through unchecked), and lines that cannot be a JSON object because they do
    # not start with "{" (a line "null" crashes pyarrow's reader, apache/arrow#47409).
    # With ``repairs``, lines whose payload data is not a string are set aside too and parsed
    # in a second pass with that value re-serialized (see _repair). They are looked for (one
    # regex scan, about a tenth of the parse) only when needed: with pyarrow once the whole
    # batch failed to parse, with DuckDB among the suspect lines.
    not_utf8 = invalid_utf8(lines)
    not_object = np.flatnonzero(lines.first != ord("{")) if lines.first is not None else []
    not_object = np.setdiff1d(not_object, not_utf8)
    bad += [(int(i), "line is not valid UTF-8 text") for i in not_utf8]
    bad += [
        (int(i), _clean_reason(None, lines.buf[lines.starts[i] : lines.ends[i]]))
        for i in not_object
    ]
    unfit = np.union1d(not_utf8, not_object).astype(np.int64)
    set_aside = unfit

    def take_repairs(candidates: np.ndarray) -> bool:
        """Parse the repairable lines among ``candidates``; whether any was set aside."""
        nonlocal set_aside
        candidates = np.setdiff1d(candidates, unfit)
        if not len(candidates):
            return False
        repaired_parts, still_bad, repaired = _repair(lines, candidates, raw_schema, block_size, repairs)
        parts.extend(repaired_parts)
        bad.extend(still_bad)
        set_aside = np.union1d(set_aside, repaired).astype(np.int64)
        return bool(len(repaired))

    def rest() -> tuple[np.ndarray, bytes]:
        if not len(set_aside):
            return everything, lines.buf
        return np.setdiff1d(everything, set_aside), blank_out(lines, set_aside)

    duck = use_duckdb(payload)
    # DuckDB reads the lines its leniency cannot matter on; pyarrow the others (suspects hold
    # every line whose payload data is not a string)
    suspect = _suspect_lines(lines, raw_schema) if duck else None
    look_for_repairs = repairs is not None
    if duck and look_for_repairs:
        look_for_repairs = False
        if len(suspect):
            take_repairs(np.intersect1d(_data_not_string(lines), suspect))
    todo, whole = rest()
    stack: list[tuple[np.ndarray, bytes | None]] = [(todo, whole)]
    if duck and len(todo):
        suspect = np.intersect1d(suspect, todo)
        clean = np.setdiff1d(todo, suspect) if len(suspect) else todo
        if len(clean):
            data = blank_out(lines, np.union1d(set_aside, suspect)) if len(suspect) else whole
            table = _duckdb_read(data, raw_schema, project=not payload)
            if table is not None and table.num_rows == len(clean):
                parts.append((clean, table))
                stack = [(suspect, None)]
    while stack:
        idx, data = stack.pop()
        if not len(idx):
            continue
        if data is None:
            data = lines.join(idx)
        try:
            table = _read(data, raw_schema, block_size)
            if table.num_rows == len(idx):
                parts.append((idx, table))
                continue
            error: Exception = ValueError(f"line holds {table.num_rows} JSON values, expected one")
        except pa.ArrowException as exc:
            error = exc
        if look_for_repairs:  # the whole batch failed: repair what can be, then try the rest again
            look_for_repairs = False
            if take_repairs(_data_not_string(lines)):
                stack.append(rest())
                continue
        if len(idx) == 1:
            i = int(idx[0])
            bad.append((i, _clean_reason(error, lines.buf[lines.starts[i] : lines.ends[i]])))
            continue
        mid = len(idx) // 2
        stack.append((idx[mid:], None))
        stack.append((idx[:mid], None))
    bad.sort()
    if not parts:
        return raw_schema.empty_table(), np.zeros(0, dtype=np.int64), bad
    parts.sort(key=lambda p: p[0][0])
    table = pa.concat_tables([t for _, t in parts])
    positions = np.concatenate([i for i, _ in parts])
    if len(positions) > 1 and (np.diff(positions) < 0).any():  # merged parts: back in order
        order = np.argsort(positions, kind="stable")
        table, positions = table.take(pa.array(order)), positions[order]
    return table, positions, bad


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


def parse_captures(batch: FileBatch, *, payload: bool = True) -> Parsed:
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
    raw, positions, bad = parse_json_lines(lines, RAW_CAPTURE, repairs, payload=payload)
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


def parse_labels(batch: FileBatch) -> Parsed:
    """Decode a batch of ground-truth files into raw label rows (payload still encoded).

    The returned table has ``label_id, event_id, label_hour, encoding, data, event_version,
    source_file, source_modified, line_number``; :mod:`captureq.decode` turns ``data`` into ``ground_truth``.
    """
    lines = split_lines(batch)
    repairs: dict[int, list[tuple[str, str]]] = {}
    raw, positions, bad = parse_json_lines(lines, RAW_LABEL, repairs)
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
