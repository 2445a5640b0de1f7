"""A query result written as CSV or JSON to a byte stream, without a Python loop per row.

The text is the one the CLI has always printed (Python's ``csv`` module over ``to_pylist()``, and
``json.dumps(to_pylist(), default=str)``), now built column by column: an in-memory DuckDB
connection turns every cell into text (DuckDB prints a DOUBLE as Python's ``repr`` does) and joins
each row into one line, in parallel, and the lines go to the stream batch by batch, straight from
the Arrow buffers. A CSV with a million float cells or more has its doubles printed by polars
(three times faster; only where it prints what ``repr`` does). Columns of a type with no
vectorized rendering here (lists, structs, decimals with a scale, times, binary…) are rendered by
the same Python code as before, one column at a time.

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
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from .views import quote_literal

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

BATCH_ROWS = 65_536  # lines formatted and written at a time: a few MB of text, never the whole
# From this many float cells on, polars prints the CSV: its float printing is about 3x DuckDB's
# (0.5 s against 1.4 s for 13.8 M doubles) and pays for its import (~0.1 s) well before.
POLARS_FROM_FLOAT_CELLS = 1_000_000
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
    if len(columns) > 1 and _float_cells(columns) >= POLARS_FROM_FLOAT_CELLS and _polars_prints_repr():
        _write_csv_polars(columns, stream)
        return
    cells = [_csv_cell(f"c{i}", col) for i, col in enumerate(columns)]
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
        for i, (name, col) in enumerate(zip(table.column_names, columns)):
            key = json.dumps(name) + ": "
            pieces += [quote_literal(("{" if i == 0 else ", ") + key), _json_cell(f"c{i}", col)]
        pieces.append("'}'")
        line = f"concat(', ', {', '.join(pieces)})"
        _stream_lines(columns, line, stream, skip=2)  # the first row has no ", " before it
    stream.write(b"]\n")


# -- columns as text ---------------------------------------------------------------------------
# What a prepared column holds, and so how the SQL below renders a cell of it:
TEXT = "text"          # a string value: quoted as CSV needs, as a JSON string
RENDERED = "rendered"  # the cell's final text already (NULL: an empty CSV cell)
NUMBER = "number"      # an integer (or, in CSV, a decimal without a scale)
FLOAT = "float"        # a double
BOOL = "bool"
DATE = "date"
TIMESTAMP = "timestamp"  # wall-clock time (microseconds), and its UTC offset if it has a zone

UTC_NAMES = frozenset({"UTC", "Etc/UTC", "+00:00", "Z"})


@dataclass
class _Column:
    """A result column as DuckDB will read it: ``values`` (column ``cN``), and for a timestamp
    with a time zone other than UTC its offset from UTC in seconds (column ``cN_offset``)."""

    values: pa.ChunkedArray
    kind: str
    offset: pa.ChunkedArray | str | None = None  # seconds, or the offset text of a whole column


def _prepared(col: pa.ChunkedArray, for_csv: bool) -> _Column:
    """``col`` in a type the SQL below renders, and its kind; rare types rendered by Python."""
    t = col.type
    if pa.types.is_dictionary(t):
        return _prepared(col.cast(t.value_type), for_csv)
    if pa.types.is_string(t):
        return _Column(col, TEXT)
    if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):  # pyarrow 16+
        return _Column(col.cast(pa.string()), TEXT)
    if pa.types.is_integer(t):
        return _Column(col, NUMBER)
    if pa.types.is_decimal(t) and t.scale == 0:  # DuckDB's HUGEINT sums; json.dumps: a string
        return _Column(col, NUMBER) if for_csv else _Column(col.cast(pa.string()), TEXT)
    if pa.types.is_floating(t):
        return _Column(col.cast(pa.float64()), FLOAT)  # the double Python prints, digit for digit
    if pa.types.is_boolean(t):
        return _Column(col, BOOL)
    if pa.types.is_date(t):
        return _Column(col.cast(pa.date32()), DATE)
    if pa.types.is_timestamp(t) and t.unit != "ns":
        return _wall_clock(col)
    # anything else as the Python code always printed it (one column, not the hot path)
    if for_csv:
        cells = [None if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v)
                 for v in col.to_pylist()]
        return _Column(pa.chunked_array([pa.array(cells, pa.string())]), TEXT)
    cells = [json.dumps(v, default=str) for v in col.to_pylist()]
    return _Column(pa.chunked_array([pa.array(cells, pa.string())]), RENDERED)


def _wall_clock(col: pa.ChunkedArray) -> _Column:
    """A timestamp column as its wall-clock time in microseconds, and its offset from UTC."""
    tz = col.type.tz
    naive = col.cast(pa.timestamp("us", tz)).cast(pa.timestamp("us"))  # the UTC time
    if not tz:
        return _Column(naive, TIMESTAMP)
    if tz in UTC_NAMES:
        return _Column(naive, TIMESTAMP, "+00:00")
    local = pc.local_timestamp(col.cast(pa.timestamp("us", tz)))
    offset = pc.divide(pc.subtract(local.cast(pa.int64()), naive.cast(pa.int64())), 1_000_000)
    return _Column(local, TIMESTAMP, offset)


def _iso_sql(name: str, col: _Column, sep: str) -> str:
    """SQL for ``datetime.isoformat(sep)``: microseconds only when not zero, ``+HH:MM``."""
    text = (f"strftime({name}, '%Y-%m-%d{sep}%H:%M:%S') || CASE WHEN microsecond({name}) "
            f"% 1000000 = 0 THEN '' ELSE '.' || strftime({name}, '%f') END")
    if isinstance(col.offset, str):
        return f"{text} || {quote_literal(col.offset)}"
    if col.offset is not None:
        o = f"abs({name}_offset)"
        return (f"{text} || CASE WHEN {name}_offset < 0 THEN '-' ELSE '+' END "
                f"|| lpad(({o} // 3600)::VARCHAR, 2, '0') || ':' "
                f"|| lpad(({o} % 3600 // 60)::VARCHAR, 2, '0') "
                f"|| CASE WHEN {o} % 60 = 0 THEN '' ELSE ':' || lpad(({o} % 60)::VARCHAR, 2, '0') END")
    return text


def _csv_cell(name: str, col: _Column) -> str:
    """SQL for one CSV cell of column ``name`` (NULL stands for an empty cell)."""
    if col.kind == TEXT:
        return (f"CASE WHEN regexp_matches({name}, {quote_literal(QUOTE_IF)}) "
                f"THEN '\"' || replace({name}, '\"', '\"\"') || '\"' ELSE {name} END")
    if col.kind == RENDERED:
        return name
    if col.kind == BOOL:
        return f"CASE WHEN {name} THEN 'True' WHEN NOT {name} THEN 'False' END"
    if col.kind == TIMESTAMP:
        return _iso_sql(name, col, "T")
    if col.kind == FLOAT:  # DuckDB prints a NaN with its sign bit set as -nan; repr: nan
        return f"CASE WHEN isnan({name}) THEN 'nan' ELSE CAST({name} AS VARCHAR) END"
    return f"CAST({name} AS VARCHAR)"


def _json_cell(name: str, col: _Column) -> str:
    """SQL for one JSON value of column ``name``, as ``json.dumps(default=str)`` writes it."""
    if col.kind == TEXT:
        return f"coalesce(to_json({name})::VARCHAR, 'null')"
    if col.kind == RENDERED:
        return name
    if col.kind == BOOL:
        return f"CASE WHEN {name} THEN 'true' WHEN NOT {name} THEN 'false' ELSE 'null' END"
    if col.kind == FLOAT:
        return (f"CASE WHEN {name} IS NULL THEN 'null' WHEN isnan({name}) THEN 'NaN' "
                f"WHEN {name} = 'inf'::DOUBLE THEN 'Infinity' "
                f"WHEN {name} = '-inf'::DOUBLE THEN '-Infinity' ELSE CAST({name} AS VARCHAR) END")
    if col.kind == DATE:
        return f"coalesce('\"' || CAST({name} AS VARCHAR) || '\"', 'null')"
    if col.kind == TIMESTAMP:  # str(datetime): isoformat with a space
        return f"coalesce('\"' || {_iso_sql(name, col, ' ')} || '\"', 'null')"
    return f"coalesce(CAST({name} AS VARCHAR), 'null')"


def _joined(cells: list[str], sep: str) -> list[str]:
    out = []
    for i, cell in enumerate(cells):
        if i:
            out.append(sep)
        out.append(cell)
    return out


def _source(columns: list[_Column]) -> pa.Table:
    """The prepared columns as the table the SQL reads: ``cN`` (and ``cN_offset``)."""
    arrays, names = [], []
    for i, col in enumerate(columns):
        arrays.append(col.values)
        names.append(f"c{i}")
        if isinstance(col.offset, pa.ChunkedArray):
            arrays.append(col.offset)
            names.append(f"c{i}_offset")
    table = pa.table(arrays, names=names)
    # small batches: DuckDB scans an Arrow table one batch per thread
    return pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_ROWS), table.schema)


def to_arrow(rel) -> pa.Table:
    """A DuckDB relation's result as an Arrow table (``to_arrow_table`` is DuckDB 1.4+)."""
    return (getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table)()


def _stream_lines(columns: list[_Column], line: str, stream: IO[bytes], skip: int = 0) -> None:
    """Run ``SELECT line`` over the prepared columns; write its text, batch by batch."""
    import duckdb

    con: duckdb.DuckDBPyConnection = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("result", _source(columns))
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


# -- many floats: polars prints them ----------------------------------------------------------
def _float_cells(columns: list[_Column]) -> int:
    return sum(len(c.values) for c in columns if c.kind == FLOAT)


def _repr_range(values: pa.ChunkedArray) -> bool:
    """Every double is 0 or within [1e-4, 1e16): where polars prints what ``repr`` prints
    (outside it, or NaN and infinities, the two differ: ``1e-05`` / ``0.00001``)."""
    a = pc.abs(values)
    inside = pc.or_(pc.and_(pc.greater_equal(a, 1e-4), pc.less(a, 1e16)), pc.equal(a, 0.0))
    return pc.all(inside).as_py() is not False


_PROBE = [94.0, 0.1, 1e-4, 0.00012345, 1 / 3, -2.5, 0.0, -0.0, 123456789012345.6,
          9.999999999999998e15, 1e15, 2.0**52 + 0.5]


def _polars_prints_repr() -> bool:
    """This polars prints the probe doubles as Python's ``repr`` does (checked once)."""
    if "polars_repr" not in _CHECKED:
        try:
            import polars as pl

            text = pl.DataFrame({"x": _PROBE}).write_csv(include_header=False, quote_style="never")
            _CHECKED["polars_repr"] = text == "".join(repr(v) + "\n" for v in _PROBE)
        except Exception:  # noqa: BLE001 - no polars, an older API: DuckDB prints them
            _CHECKED["polars_repr"] = False
    return _CHECKED["polars_repr"]


_CHECKED: dict[str, bool] = {}


def _write_csv_polars(columns: list[_Column], stream: IO[bytes]) -> None:
    """The CSV lines by polars: doubles in ``repr``'s range as they are, every other column
    rendered to its final CSV text by DuckDB first (so polars quotes nothing)."""
    import duckdb
    import polars as pl

    raw = [c.kind == FLOAT and _repr_range(c.values) for c in columns]
    rendered: dict[int, pa.ChunkedArray] = {}
    others = [i for i, r in enumerate(raw) if not r]
    if others:
        con = duckdb.connect()
        try:
            con.execute("SET enable_progress_bar = false")
            con.register("result", _source([columns[i] for i in others]))
            cells = ", ".join(f"{_csv_cell(f'c{j}', columns[i])} AS c{j}"
                              for j, i in enumerate(others))
            text = to_arrow(con.sql(f"SELECT {cells} FROM result"))
        finally:
            con.close()
        rendered = {i: text.column(j) for j, i in enumerate(others)}
    table = pa.table([rendered[i] if i in rendered else c.values for i, c in enumerate(columns)],
                     names=[f"c{i}" for i in range(len(columns))])
    for start in range(0, table.num_rows, BATCH_ROWS):  # one batch in polars at a time
        part = pl.from_arrow(table.slice(start, BATCH_ROWS))
        # straight into the stream (half the time of building a str and encoding it); flushed
        # first, since polars may write to the file descriptor underneath Python's buffer
        stream.flush()
        try:
            part.write_csv(stream, include_header=False, quote_style="never")
        except OSError as exc:  # polars reports a closed pipe as a plain OSError
            if isinstance(exc, BrokenPipeError) or "os error 32" not in str(exc):
                raise
            raise BrokenPipeError(32, "Broken pipe") from exc
