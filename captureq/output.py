"""A query result written as CSV or JSON to a byte stream, without a Python loop per row.

The text is the one the CLI has always printed (Python's ``csv`` module over ``to_pylist()``, and
``json.dumps(to_pylist(), default=str)``), now built column by column: Arrow formats the
timestamps, an in-memory DuckDB connection turns every other cell into text (DuckDB prints a
DOUBLE as Python's ``repr`` does) and joins each row into one line, and the lines go to the
stream batch by batch, straight from the Arrow buffers. Columns of a type with no vectorized
rendering here (lists, structs, decimals with a scale, times, binary…) are rendered by the same
Python code as before, one column at a time.

CSV: a header, ``\\n`` line ends, quotes only where needed (a comma, a quote or a line break in
the value), an empty cell for a null, booleans as ``True``/``False``, timestamps in ISO 8601 as
``datetime.isoformat()`` prints them (``2026-01-01T03:10:27+00:00``, microseconds when not zero).
JSON: one list of objects, the values as ``json.dumps`` writes them (timestamps as
``"2026-01-01 03:10:27+00:00"``, NaN as ``NaN``), non-ASCII text as UTF-8.

>>> import io, pyarrow as pa
>>> out = io.BytesIO()
>>> write_csv(pa.table({"name": ["a,b", None], "n": [1.0, 2.5]}), out)
>>> out.getvalue().decode()
'name,n\\n"a,b",1.0\\n,2.5\\n'
>>> out = io.BytesIO()
>>> write_json(pa.table({"name": ["a", None], "ok": [True, False]}), out)
>>> out.getvalue().decode()
'[{"name": "a", "ok": true}, {"name": null, "ok": false}]\\n'
"""

from __future__ import annotations

import csv
import io
import json
from typing import IO, TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from .views import quote_literal

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

BATCH_ROWS = 65_536  # lines formatted and written at a time: a few MB of text, never the whole
SCAN_ROWS = 16_384  # rows per Arrow batch DuckDB scans: a batch is one thread's unit of work
QUOTE_IF = "[,\"\r\n]"  # a CSV cell holding one of these is quoted (and its quotes doubled)


def write_csv(table: pa.Table, stream: IO[bytes]) -> None:
    """``table`` as CSV with a header line on the binary ``stream`` (see the module docstring)."""
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(table.column_names)
    stream.write(head.getvalue().encode())
    if table.num_rows == 0:
        return
    columns = [_prepared(col, for_csv=True) for col in table.columns]
    cells = [_csv_cell(f"c{i}", kind) for i, (_, kind) in enumerate(columns)]
    line = f"concat({', '.join(_joined(cells, quote_literal(',')))}, chr(10))"
    if len(cells) == 1:  # as the csv module does: a lone empty cell is "" (not an empty line)
        line = f"CASE WHEN coalesce({cells[0]}, '') = '' THEN '\"\"' || chr(10) ELSE {line} END"
    _stream_lines(columns, line, stream)


def write_json(table: pa.Table, stream: IO[bytes]) -> None:
    """``table`` as one JSON list of objects on the binary ``stream`` (see the module docstring)."""
    stream.write(b"[")
    if table.num_rows:
        columns = [_prepared(col, for_csv=False) for col in table.columns]
        pieces = []
        for i, (name, (_, kind)) in enumerate(zip(table.column_names, columns)):
            key = json.dumps(name) + ": "
            pieces += [quote_literal(("{" if i == 0 else ", ") + key), _json_cell(f"c{i}", kind)]
        pieces.append("'}'")
        line = f"concat(', ', {', '.join(pieces)})"
        _stream_lines(columns, line, stream, skip=2)  # the first row has no ", " before it
    stream.write(b"]\n")


# -- columns as text ---------------------------------------------------------------------------
# What a prepared column holds, and so how the SQL below renders a cell of it:
TEXT = "text"        # a string value: quoted as CSV needs, as a JSON string
RENDERED = "rendered"  # the cell's final text already (NULL: an empty CSV cell)
NUMBER = "number"    # an integer (or, in CSV, a decimal without a scale)
FLOAT = "float"      # a double
BOOL = "bool"
DATE = "date"


def _prepared(col: pa.ChunkedArray, for_csv: bool) -> tuple[pa.ChunkedArray, str]:
    """``col`` in a type the SQL below renders, and its kind; rare types rendered by Python."""
    t = col.type
    if pa.types.is_dictionary(t):
        return _prepared(col.cast(t.value_type), for_csv)
    if pa.types.is_string(t):
        return col, TEXT
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return col.cast(pa.string()), TEXT
    if pa.types.is_integer(t):
        return col, NUMBER
    if pa.types.is_decimal(t) and t.scale == 0:  # DuckDB's HUGEINT sums; json.dumps: a string
        return (col, NUMBER) if for_csv else (col.cast(pa.string()), TEXT)
    if pa.types.is_floating(t):
        return col.cast(pa.float64()), FLOAT  # the double Python would print, digit for digit
    if pa.types.is_boolean(t):
        return col, BOOL
    if pa.types.is_date(t):
        return col.cast(pa.date32()), DATE
    if pa.types.is_timestamp(t) and t.unit != "ns":
        return _iso(col, "T" if for_csv else " "), RENDERED if for_csv else TEXT
    # anything else as the Python code always printed it (one column, not the hot path)
    if for_csv:
        cells = [None if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)
                 for v in col.to_pylist()]
        return pa.chunked_array([pa.array(cells, pa.string())]), TEXT
    cells = [json.dumps(v, default=str) for v in col.to_pylist()]
    return pa.chunked_array([pa.array(cells, pa.string())]), RENDERED


def _iso(col: pa.ChunkedArray, sep: str) -> pa.ChunkedArray:
    """Timestamps as ``datetime.isoformat(sep)`` prints them: microseconds only when not zero,
    the UTC offset as ``+HH:MM`` when the column has a time zone."""
    t = col.type
    if t.unit == "ms":
        col = col.cast(pa.timestamp("us", t.tz))
    text = pc.strftime(col, format=f"%Y-%m-%d{sep}%H:%M:%S" + ("%z" if t.tz else ""))
    text = pc.replace_substring_regex(text, r"\.000000", "")
    if t.tz:
        text = pc.replace_substring_regex(text, r"([+-]\d\d)(\d\d)$", r"\1:\2")
    return text


def _csv_cell(name: str, kind: str) -> str:
    """SQL for one CSV cell of column ``name`` (NULL stands for an empty cell)."""
    if kind == TEXT:
        return (f"CASE WHEN regexp_matches({name}, {quote_literal(QUOTE_IF)}) "
                f"THEN '\"' || replace({name}, '\"', '\"\"') || '\"' ELSE {name} END")
    if kind == RENDERED:
        return name
    if kind == BOOL:
        return f"CASE WHEN {name} THEN 'True' WHEN NOT {name} THEN 'False' END"
    return f"CAST({name} AS VARCHAR)"


def _json_cell(name: str, kind: str) -> str:
    """SQL for one JSON value of column ``name``, as ``json.dumps`` writes it."""
    if kind == TEXT:
        return f"coalesce(to_json({name})::VARCHAR, 'null')"
    if kind == RENDERED:
        return name
    if kind == BOOL:
        return f"CASE WHEN {name} THEN 'true' WHEN NOT {name} THEN 'false' ELSE 'null' END"
    if kind == FLOAT:
        return (f"CASE WHEN {name} IS NULL THEN 'null' WHEN isnan({name}) THEN 'NaN' "
                f"WHEN {name} = 'inf'::DOUBLE THEN 'Infinity' "
                f"WHEN {name} = '-inf'::DOUBLE THEN '-Infinity' ELSE CAST({name} AS VARCHAR) END")
    if kind == DATE:
        return f"coalesce('\"' || CAST({name} AS VARCHAR) || '\"', 'null')"
    return f"coalesce(CAST({name} AS VARCHAR), 'null')"


def _joined(cells: list[str], sep: str) -> list[str]:
    out = []
    for i, cell in enumerate(cells):
        if i:
            out.append(sep)
        out.append(cell)
    return out


def _stream_lines(columns: list[tuple[pa.ChunkedArray, str]], line: str, stream: IO[bytes],
                  skip: int = 0) -> None:
    """Run ``SELECT line`` over the prepared columns; write its text, batch by batch."""
    import duckdb

    table = pa.table([c for c, _ in columns], names=[f"c{i}" for i in range(len(columns))])
    # small batches: DuckDB scans an Arrow table one batch per thread
    table = pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_ROWS), table.schema)
    con: duckdb.DuckDBPyConnection = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("result", table)
        rel = con.sql(f"SELECT {line} AS line FROM result")
        reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_record_batch  # 1.4+, older
        for batch in reader(BATCH_ROWS):
            lines = batch.column(0)
            if lines.type != pa.string():
                lines = lines.cast(pa.string())
            if len(lines) == 0:
                continue
            offsets = memoryview(lines.buffers()[1]).cast("i")
            begin, end = offsets[lines.offset] + skip, offsets[lines.offset + len(lines)]
            skip = 0
            stream.write(memoryview(lines.buffers()[2])[begin:end])
    finally:
        con.close()
