"""A query result written as CSV or JSON to a byte stream, without a Python loop per row.

An in-memory DuckDB connection turns every cell into text (DuckDB prints a DOUBLE as Python's
``repr`` does) and joins each row into one line, in parallel, and the lines go to the stream
batch by batch, straight from the Arrow buffers. A CSV with a million float cells or more has its
doubles printed by polars (three times faster; only where it prints what ``repr`` does). Every
type is rendered by SQL, column by column: nested values go through DuckDB's ``to_json`` after
their leaves are made plain (see ``_plain_sql``).

CSV: a header, ``\\n`` line ends, quotes only where needed (a comma, a quote or a line break in
the value), an empty cell for a null, booleans as ``True``/``False``, doubles as ``repr`` prints
them (``nan``, ``inf``), timestamps in ISO 8601 as ``datetime.isoformat()`` prints them
(``2026-01-01T03:10:27+00:00``, microseconds when not zero, nine decimals for a nanosecond
timestamp whose nanoseconds are not zero), times likewise (``01:02:03.500000``), decimals in
plain notation (``1.50``), BLOBs in base64, intervals and durations as ISO 8601 durations
(``P1Y2M3DT4H5M6.5S``, below), lists, structs and maps as their JSON (as below).
JSON: one list of objects, strict (``json.loads`` with ``parse_constant`` refusing accepts it):
NaN and ±infinity as ``null`` wherever they are (top level, lists, structs, maps), timestamps as
``"2026-01-01 03:10:27+00:00"``, dates and times as strings, decimals (and HUGEINTs) as strings
(``"1.50"``: a JSON reader's double would round them), BLOBs as base64 strings, intervals as ISO
8601 duration strings, a map as an object keyed by its keys' text, non-ASCII text as UTF-8.

An interval is written with each field carrying its own sign, as PostgreSQL's ``iso_8601``
interval style does, since DuckDB keeps months, days and sub-day time apart (a month is not a
fixed number of days): ``INTERVAL '-14 months'`` is ``P-1Y-2M``, ``INTERVAL '-1 day 30 hours'``
is ``P-1DT30H``, a zero interval ``PT0S``; hours are never folded into days, and the seconds keep
up to nine decimals.

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

from .views import quote_ident, quote_literal

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
    columns = [_prepared(col) for col in table.columns]
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
        columns = [_prepared(col) for col in table.columns]
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
NUMBER = "number"      # an integer
DECIMAL = "decimal"    # a decimal (HUGEINT included): its digits, a string in JSON
FLOAT = "float"        # a double
BOOL = "bool"
DATE = "date"
TIMESTAMP = "timestamp"  # wall-clock time (microseconds), its UTC offset if it has a zone,
# and the nanoseconds beyond the microsecond of a nanosecond timestamp (cN_ns)
TIME = "time"          # a time of day (microseconds)
BLOB = "blob"          # bytes: base64
DURATION = "duration"  # months (cN), days, seconds and nanoseconds (cN_days, cN_secs, cN_nanos)
NESTED = "nested"      # a list, struct, map or union: its JSON, leaves made plain
OTHER = "other"        # anything else (UUID, TIME_NS, BIT…): DuckDB's text, its JSON

UTC_NAMES = frozenset({"UTC", "Etc/UTC", "+00:00", "Z"})
NANOS_PER = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}  # per second, by unit


@dataclass
class _Column:
    """A result column as DuckDB will read it: ``values`` (column ``cN``), for a timestamp
    with a time zone other than UTC its offset from UTC in seconds (column ``cN_offset``), and
    the further columns some kinds need (``extra``: column ``cN_<key>``)."""

    values: pa.ChunkedArray
    kind: str
    offset: pa.ChunkedArray | str | None = None  # seconds, or the offset text of a whole column
    extra: dict[str, pa.ChunkedArray] | None = None


def _prepared(col: pa.ChunkedArray) -> _Column:
    """``col`` in a type the SQL below renders, and its kind."""
    t = col.type
    if isinstance(t, pa.ExtensionType) and t.extension_name != "arrow.uuid":  # DuckDB reads UUIDs
        return _prepared(pa.chunked_array([c.storage for c in col.chunks], t.storage_type))
    if pa.types.is_dictionary(t):
        return _prepared(col.cast(t.value_type))
    if pa.types.is_string(t):
        return _Column(col, TEXT)
    if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):  # pyarrow 16+
        return _Column(col.cast(pa.string()), TEXT)
    if pa.types.is_integer(t):
        return _Column(col, NUMBER)
    if pa.types.is_decimal(t):  # DuckDB reads 128-bit decimals only
        return (_Column(col, DECIMAL) if t.bit_width <= 128
                else _Column(col.cast(pa.string()), DECIMAL))
    if pa.types.is_floating(t):
        return _Column(col.cast(pa.float64()), FLOAT)  # the double Python prints, digit for digit
    if pa.types.is_boolean(t):
        return _Column(col, BOOL)
    if pa.types.is_date(t):
        return _Column(col.cast(pa.date32()), DATE)
    if pa.types.is_timestamp(t):
        return _wall_clock(col)
    if pa.types.is_time(t) and t.unit != "ns":
        return _Column(col.cast(pa.time64("us")), TIME)
    if _is_binary(t):
        return _Column(col, BLOB)
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return _duration_parts(col)
    if pa.types.is_union(t) and t.mode == "dense":  # DuckDB reads sparse unions only
        return _prepared(pa.chunked_array([_sparse(c) for c in col.chunks]))
    if pa.types.is_nested(t):
        return _Column(col.cast(_readable(t)), NESTED)
    return _Column(col, OTHER)


def _sparse(dense: pa.UnionArray) -> pa.UnionArray:
    """A dense union as a sparse one: each member's values taken to the union's rows."""
    codes = dense.type_codes
    offsets = dense.offsets
    children = []
    for i in range(dense.type.num_fields):
        mine = pc.equal(codes, pa.scalar(dense.type.type_codes[i], pa.int8()))
        children.append(dense.field(i).take(pc.if_else(mine, offsets, pa.scalar(None, pa.int32()))))
    names = [dense.type.field(i).name for i in range(dense.type.num_fields)]
    return pa.UnionArray.from_sparse(codes, children, names, list(dense.type.type_codes))


def _is_binary(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or getattr(pa.types, "is_binary_view", bool)(t))


def _readable(t: pa.DataType) -> pa.DataType:
    """``t`` with the leaves DuckDB cannot scan replaced: half floats by floats, 256-bit
    decimals by their text."""
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_decimal(t) and t.bit_width > 128:
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_readable(f.type)) for f in map(t.field, range(t.num_fields))])
    if pa.types.is_map(t):
        return pa.map_(t.key_field.with_type(_readable(t.key_type)),
                       t.item_field.with_type(_readable(t.item_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_readable(t.value_type)), t.list_size)
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_readable(t.value_type)))
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_readable(t.value_type)))
    return t


def _wall_clock(col: pa.ChunkedArray) -> _Column:
    """A timestamp column as its wall-clock time in microseconds, its offset from UTC, and for
    nanosecond timestamps the nanoseconds beyond the microsecond (``extra["ns"]``)."""
    tz = col.type.tz
    extra = None
    if col.type.unit == "ns":
        col, nanos = _split_nanos(col)
        extra = {"ns": nanos}
    naive = col.cast(pa.timestamp("us", tz)).cast(pa.timestamp("us"))  # the UTC time
    if not tz:
        return _Column(naive, TIMESTAMP, extra=extra)
    if tz in UTC_NAMES:
        return _Column(naive, TIMESTAMP, "+00:00", extra=extra)
    local = pc.local_timestamp(col.cast(pa.timestamp("us", tz)))
    offset = pc.divide(pc.subtract(local.cast(pa.int64()), naive.cast(pa.int64())), 1_000_000)
    return _Column(local, TIMESTAMP, offset, extra=extra)


def _split_nanos(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """A nanosecond timestamp column as microseconds (rounded down) and the nanoseconds left."""

    micros, nanos = [], []
    for chunk in col.chunks:
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        total = chunk.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        rest = total % 1000  # numpy's %: 0..999, also before 1970
        micros.append(pa.array((total - rest) // 1000, pa.int64(), mask=~valid)
                      .cast(pa.timestamp("us", col.type.tz)))
        nanos.append(pa.array(rest, pa.int16()))
    return (pa.chunked_array(micros, pa.timestamp("us", col.type.tz)),
            pa.chunked_array(nanos, pa.int16()))


# an Arrow month_day_nano_interval value, as its buffer holds it
_MONTH_DAY_NANO = [("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")]


def _duration_parts(col: pa.ChunkedArray) -> _Column:
    """An interval or duration column as months, days, whole seconds and the nanoseconds
    beyond them (all of one sign), read from the Arrow buffers: nanoseconds are kept (DuckDB
    would keep microseconds)."""
    import numpy as np

    parts: dict[str, list[pa.Array]] = {"months": [], "days": [], "secs": [], "nanos": []}
    for chunk in col.chunks:
        n = len(chunk)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        if pa.types.is_interval(chunk.type):
            data = chunk.buffers()[1]
            raw = (np.frombuffer(data, dtype=_MONTH_DAY_NANO, count=chunk.offset + n)[chunk.offset:]
                   if data is not None and n else np.zeros(n, dtype=_MONTH_DAY_NANO))
            months, days, total, per = raw["months"], raw["days"], raw["nanos"], NANOS_PER["ns"]
        else:
            total = chunk.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            months = days = np.zeros(n, dtype=np.int32)
            per = NANOS_PER[chunk.type.unit]
        rest = np.fmod(total, per)  # the sign of the total, as the seconds have
        secs = (total - rest) // per
        nanos = rest * (NANOS_PER["ns"] // per)
        parts["months"].append(pa.array(np.where(valid, months, 0), pa.int32(), mask=~valid))
        parts["days"].append(pa.array(np.where(valid, days, 0), pa.int32()))
        parts["secs"].append(pa.array(np.where(valid, secs, 0), pa.int64()))
        parts["nanos"].append(pa.array(np.where(valid, nanos, 0), pa.int64()))
    chunked = {k: pa.chunked_array(v, pa.int64() if k in ("secs", "nanos") else pa.int32())
               for k, v in parts.items()}
    return _Column(chunked.pop("months"), DURATION, extra=chunked)


# Macros of the writer's connection. An ISO 8601 duration from months, days, whole seconds and
# nanoseconds, each field with its own sign (DuckDB's // and % truncate toward zero, so the
# fields of a negative part are all negative); and the same from a DuckDB INTERVAL.
MACROS = """
CREATE MACRO iso_duration(m, d, s, f) AS CASE
  WHEN m IS NULL THEN NULL
  WHEN m = 0 AND d = 0 AND s = 0 AND f = 0 THEN 'PT0S'
  ELSE 'P'
    || CASE WHEN m // 12 = 0 THEN '' ELSE (m // 12)::VARCHAR || 'Y' END
    || CASE WHEN m % 12 = 0 THEN '' ELSE (m % 12)::VARCHAR || 'M' END
    || CASE WHEN d = 0 THEN '' ELSE d::VARCHAR || 'D' END
    || CASE WHEN s = 0 AND f = 0 THEN '' ELSE 'T'
      || CASE WHEN s // 3600 = 0 THEN '' ELSE (s // 3600)::VARCHAR || 'H' END
      || CASE WHEN (s % 3600) // 60 = 0 THEN '' ELSE ((s % 3600) // 60)::VARCHAR || 'M' END
      || CASE WHEN s % 60 = 0 AND f = 0 THEN '' ELSE
           CASE WHEN s < 0 OR f < 0 THEN '-' ELSE '' END || abs(s % 60)::VARCHAR
           || CASE WHEN f = 0 THEN '' ELSE '.' || rtrim(lpad(abs(f)::VARCHAR, 9, '0'), '0') END
           || 'S' END
    END
END;
CREATE MACRO iso_interval_micros(v, us) AS iso_duration(
  datepart('year', v) * 12 + datepart('month', v), datepart('day', v),
  us // 1000000, us % 1000000 * 1000);
CREATE MACRO iso_interval(v) AS iso_interval_micros(v,
  datepart('hour', v)::BIGINT * 3600000000 + datepart('minute', v)::BIGINT * 60000000
  + datepart('microseconds', v));
"""


def _clock_sql(expr: str, fmt: str, nanos: str | None = None) -> str:
    """SQL for ``strftime(fmt)`` and ``.ffffff`` when the microseconds are not zero (and
    ``.fffffffff`` when the nanoseconds ``nanos`` beyond them are not)."""
    if nanos is None:
        return (f"strftime({expr}, '{fmt}') || CASE WHEN microsecond({expr}) % 1000000 = 0 "
                f"THEN '' ELSE '.' || strftime({expr}, '%f') END")
    return (f"strftime({expr}, '{fmt}') || CASE WHEN microsecond({expr}) % 1000000 = 0 "
            f"AND {nanos} = 0 THEN '' ELSE '.' || strftime({expr}, '%f') || CASE WHEN {nanos} = 0 "
            f"THEN '' ELSE lpad({nanos}::VARCHAR, 3, '0') END END")


def _iso_sql(name: str, col: _Column, sep: str) -> str:
    """SQL for ``datetime.isoformat(sep)``: microseconds only when not zero, ``+HH:MM``."""
    text = _clock_sql(name, f"%Y-%m-%d{sep}%H:%M:%S",
                      f"{name}_ns" if col.extra and "ns" in col.extra else None)
    if isinstance(col.offset, str):
        text = f"{text} || {quote_literal(col.offset)}"
    elif col.offset is not None:
        o = f"abs({name}_offset)"
        text = (f"{text} || CASE WHEN {name}_offset < 0 THEN '-' ELSE '+' END "
                f"|| lpad(({o} // 3600)::VARCHAR, 2, '0') || ':' "
                f"|| lpad(({o} % 3600 // 60)::VARCHAR, 2, '0') "
                f"|| CASE WHEN {o} % 60 = 0 THEN '' ELSE ':' || lpad(({o} % 60)::VARCHAR, 2, '0') END")
    return _finite(name, text)


def _finite(expr: str, text: str) -> str:
    """``text`` for a finite timestamp ``expr``, ``infinity`` / ``-infinity`` for the others."""
    return f"CASE WHEN isinf({expr}) THEN CAST({expr} AS VARCHAR) ELSE {text} END"


def _time_sql(expr: str) -> str:
    """SQL for ``time.isoformat()`` of a DuckDB TIME."""
    return _clock_sql(f"(DATE '1970-01-01' + {expr})", "%H:%M:%S")


def _plain_sql(expr: str, t: pa.DataType, depth: int = 0) -> str | None:
    """SQL for a value of Arrow type ``t`` as strict JSON holds it, for DuckDB's ``to_json``;
    ``None`` when ``to_json`` writes it so already. Doubles that are not finite become NULL,
    bytes base64, intervals ISO 8601 durations, decimals their digits, timestamps and times
    ``isoformat``'s text (UTC for a zoned one), a map's keys their text; lists, structs, maps
    and unions are rebuilt around their changed leaves (a NULL stays NULL)."""
    if pa.types.is_dictionary(t):
        return _plain_sql(expr, t.value_type, depth)
    if pa.types.is_floating(t):
        return f"CASE WHEN isfinite({expr}) THEN {expr} END"
    if _is_binary(t):
        return f"to_base64({expr}::BLOB)"
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        return f"iso_interval({expr})"
    if pa.types.is_decimal(t):
        return f"CAST({expr} AS VARCHAR)"
    if pa.types.is_timestamp(t):
        utc = f"CAST(CAST({expr} AS TIMESTAMPTZ) AS TIMESTAMP)" if t.tz else f"CAST({expr} AS TIMESTAMP)"
        text = _clock_sql(utc, "%Y-%m-%d %H:%M:%S") + (" || '+00:00'" if t.tz else "")
        return _finite(utc, text)
    if pa.types.is_time(t) and t.unit != "ns":
        return _time_sql(expr)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        v = f"v{depth}"
        inner = _plain_sql(v, t.value_type, depth + 1)
        return None if inner is None else f"list_transform({expr}, {_lambda(v, inner)})"
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        inner = [_plain_sql(f"struct_extract({expr}, {quote_literal(f.name)})", f.type, depth + 1)
                 for f in fields]
        if all(i is None for i in inner):
            return None
        packed = ", ".join(f"{quote_ident(f.name)} := "
                           f"{i or f'struct_extract({expr}, {quote_literal(f.name)})'}"
                           for f, i in zip(fields, inner))
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE struct_pack({packed}) END"
    if pa.types.is_map(t):
        e = f"e{depth}"
        key = (None if pa.types.is_floating(t.key_type)  # nan, inf: a key's text, never NULL
               else _plain_sql(f"{e}.key", t.key_type, depth + 1))
        value = _plain_sql(f"{e}.value", t.item_type, depth + 1) or f"{e}.value"
        entry = f"struct_pack(key := CAST({key or f'{e}.key'} AS VARCHAR), value := {value})"
        return f"map_from_entries(list_transform(map_entries({expr}), {_lambda(e, entry)}))"
    if pa.types.is_union(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        inner = [_plain_sql(f"union_extract({expr}, {quote_literal(f.name)})", f.type, depth + 1)
                 for f in fields]
        if all(i is None for i in inner):
            return None
        cases = " ".join(f"WHEN {quote_literal(f.name)} THEN to_json(struct_pack("
                         f"{quote_ident(f.name)} := "
                         f"{i or f'union_extract({expr}, {quote_literal(f.name)})'}))"
                         for f, i in zip(fields, inner))
        return f"CASE union_tag({expr})::VARCHAR {cases} END"
    return None


def _lambda(var: str, body: str) -> str:
    """A DuckDB lambda: ``lambda x: …`` (DuckDB 1.3+), ``x -> …`` before it."""
    return f"lambda {var}: {body}" if _duckdb_version() >= (1, 3) else f"{var} -> {body}"


def _duckdb_version() -> tuple[int, ...]:
    import duckdb

    return tuple(int(p) for p in duckdb.__version__.split(".")[:2] if p.isdigit())


def _quoted(text: str) -> str:
    """SQL for a CSV cell holding the text ``text``: quoted when it must be."""
    return (f"CASE WHEN regexp_matches({text}, {quote_literal(QUOTE_IF)}) "
            f"THEN '\"' || replace({text}, '\"', '\"\"') || '\"' ELSE {text} END")


def _duration_sql(name: str) -> str:
    return f"iso_duration({name}, {name}_days, {name}_secs, {name}_nanos)"


def _nested_sql(name: str, col: _Column) -> str:
    return f"to_json({_plain_sql(name, col.values.type) or name})::VARCHAR"


def _csv_cell(name: str, col: _Column) -> str:
    """SQL for one CSV cell of column ``name`` (NULL stands for an empty cell)."""
    if col.kind == TEXT:
        return _quoted(name)
    if col.kind == BOOL:
        return f"CASE WHEN {name} THEN 'True' WHEN NOT {name} THEN 'False' END"
    if col.kind == TIMESTAMP:
        return _iso_sql(name, col, "T")
    if col.kind == TIME:
        return _time_sql(name)
    if col.kind == FLOAT:  # DuckDB prints a NaN with its sign bit set as -nan; repr: nan
        return f"CASE WHEN isnan({name}) THEN 'nan' ELSE CAST({name} AS VARCHAR) END"
    if col.kind == BLOB:
        return f"to_base64({name}::BLOB)"
    if col.kind == DURATION:
        return _duration_sql(name)
    if col.kind == NESTED:
        return _quoted(_nested_sql(name, col))
    if col.kind == OTHER:
        return _quoted(f"CAST({name} AS VARCHAR)")
    return f"CAST({name} AS VARCHAR)"


def _json_cell(name: str, col: _Column) -> str:
    """SQL for one strict JSON value of column ``name``."""
    if col.kind == TEXT:
        return f"coalesce(to_json({name})::VARCHAR, 'null')"
    if col.kind == BOOL:
        return f"CASE WHEN {name} THEN 'true' WHEN NOT {name} THEN 'false' ELSE 'null' END"
    if col.kind == FLOAT:  # JSON has no NaN nor infinity
        return f"CASE WHEN isfinite({name}) THEN CAST({name} AS VARCHAR) ELSE 'null' END"
    if col.kind in (DATE, DECIMAL):
        return f"coalesce('\"' || CAST({name} AS VARCHAR) || '\"', 'null')"
    if col.kind == TIMESTAMP:  # str(datetime): isoformat with a space
        return f"coalesce('\"' || {_iso_sql(name, col, ' ')} || '\"', 'null')"
    if col.kind == TIME:
        return f"coalesce('\"' || {_time_sql(name)} || '\"', 'null')"
    if col.kind == BLOB:
        return f"coalesce('\"' || to_base64({name}::BLOB) || '\"', 'null')"
    if col.kind == DURATION:
        return f"coalesce('\"' || {_duration_sql(name)} || '\"', 'null')"
    if col.kind == NESTED:
        return f"coalesce({_nested_sql(name, col)}, 'null')"
    if col.kind == OTHER:
        return f"coalesce(to_json({name})::VARCHAR, 'null')"
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
        for key, values in (col.extra or {}).items():
            arrays.append(values)
            names.append(f"c{i}_{key}")
    table = pa.table(arrays, names=names)
    # small batches: DuckDB scans an Arrow table one batch per thread
    return pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_ROWS), table.schema)


def to_arrow(rel) -> pa.Table:
    """A DuckDB relation's result as an Arrow table (``to_arrow_table`` is DuckDB 1.4+)."""
    return (getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table)()


def _connect() -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the writer's macros, its session time zone UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        con.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:  # no ICU: TIMESTAMPTZ is UTC already
        pass
    con.execute(MACROS)
    return con


def _stream_lines(columns: list[_Column], line: str, stream: IO[bytes], skip: int = 0) -> None:
    """Run ``SELECT line`` over the prepared columns; write its text, batch by batch."""
    con = _connect()
    try:
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
    import polars as pl

    raw = [c.kind == FLOAT and _repr_range(c.values) for c in columns]
    rendered: dict[int, pa.ChunkedArray] = {}
    others = [i for i, r in enumerate(raw) if not r]
    if others:
        con = _connect()
        try:
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
