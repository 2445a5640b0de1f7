"""One type per decoded column per endpoint and side: the narrowest type that holds every value.

Batches are decoded on their own (and in parallel), so one batch may read ``_c0`` as integers and
its neighbour as text. :func:`profile` records, for each endpoint's columns in a batch, the
*kind* of its values; :func:`decide` joins the kinds of every batch of a read, and
:func:`conform` converts each batch to the decision. Kinds form a lattice, and a column's type
only ever widens along it (as Iceberg and Delta promote types):

- no value at all → ``NULL`` (not yet typed);
- integers (a double with no fraction counts, up to ±2**53) → ``BIGINT``;
- numbers → ``DOUBLE`` (``BIGINT`` joined with ``DOUBLE``; but an integer beyond ±2**53, which a
  double cannot hold exactly, joined with a fraction gives ``VARCHAR``);
- ``true``/``false`` → ``BOOLEAN``;
- anything else, or a mix of the above → ``VARCHAR``: each value as its canonical text
  (:func:`canonical_text`), so a value keeps its meaning whichever type it was read as;
- lists and structs keep their type while every batch agrees; otherwise ``VARCHAR`` (JSON text).

Text is typed by what it spells: a value is a number when it is a number's canonical text
(``"5"``, ``"1.5"``, ``"1e-05"``, ``"nan"``; NaN and ±Infinity spelled any way, ``"NaN"``, ``"-Infinity"``), so ``"007"`` and ``"1.50"`` stay text. CSV values
carry no type of their own, so the CSV decoder writes every number it reads as its canonical
text before this rule sees it (:func:`canonicalize_csv_text`). Because every value fits the
joined type, no value is ever dropped: a ``value`` quarantine row is left only for a value that
does not fit a type the user *declared* (:func:`declare`).

>>> import pyarrow as pa
>>> t = pa.table({"_row": [0, 1, 2], "record_index": pa.array([0, 0, 0], pa.int32()),
...               "a": [1.0, 2.0, None], "b": [1.0, 2.5, None], "c": ["1", "x", None], "d": [None] * 3})
>>> {k: str(v) for k, v in decide([profile(t, "ep")])["ep"].items()}
{'a': 'int64', 'b': 'double', 'c': 'string', 'd': 'null'}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from .common import RECORD_INDEX, ROW

_BOOKKEEPING = frozenset({ROW, *schema.RECORD_KEY_NAMES})

#: The largest integer a double holds exactly (and with it every smaller one).
EXACT = 2**53

NULL, BOOLEAN, BIGINT, DOUBLE, VARCHAR = "null", "boolean", "bigint", "double", "varchar"
_ARROW = {NULL: pa.null(), BOOLEAN: pa.bool_(), BIGINT: pa.int64(), DOUBLE: pa.float64(),
          VARCHAR: pa.string()}
#: The SQL names users see (``captureq schema``, declared types).
SQL_NAMES = {NULL: "NULL", BOOLEAN: "BOOLEAN", BIGINT: "BIGINT", DOUBLE: "DOUBLE", VARCHAR: "VARCHAR"}


@dataclass
class ColumnStats:
    """The kind of the values one endpoint's column held: one of :data:`NULL` … :data:`VARCHAR`,
    or a nested Arrow type; ``big``: an integer beyond ±2**53 was among them."""

    kind: object = NULL
    big: bool = False

    def add(self, other: ColumnStats) -> None:
        self.kind = join(self.kind, other.kind, self.big or other.big)
        self.big = self.big or other.big


#: endpoint → column (in order of first appearance) → stats
Profile = dict
#: endpoint → column (in order) → Arrow type
Decision = dict


def join(a, b, big: bool = False):
    """The narrowest kind holding the values of kinds ``a`` and ``b`` (``big``: integers beyond
    ±2**53 among them, which a double cannot hold)."""
    if a == b:
        return a
    if a == NULL:
        return b
    if b == NULL:
        return a
    if {a, b} == {BIGINT, DOUBLE}:
        return VARCHAR if big else DOUBLE
    return VARCHAR


def kind_of_type(t: pa.DataType):
    """The kind of an Arrow type (what a column of that type is typed as when it has values)."""
    if pa.types.is_null(t):
        return NULL
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_integer(t):
        return BIGINT
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return DOUBLE
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return VARCHAR
    return t


def arrow_type(kind) -> pa.DataType:
    return _ARROW[kind] if isinstance(kind, str) else kind


def type_name(t: pa.DataType) -> str:
    """An Arrow type's SQL name: ``BIGINT``, ``DOUBLE``…, or its Arrow name for nested types."""
    kind = kind_of_type(t)
    return SQL_NAMES[kind] if isinstance(kind, str) else str(t)


def parse_numbers(text: pa.Array) -> pa.Array:
    """Text → float64 (surrounding spaces ignored); null where a value is not a number."""
    import polars as pl  # imported on first use: not at start-up

    return pl.from_arrow(text).str.strip_chars().cast(pl.Float64, strict=False).to_arrow()


def _valid(col: pa.Array) -> np.ndarray:
    return ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)


def _whole(values: np.ndarray) -> np.ndarray:
    """Which doubles are whole numbers a ``BIGINT`` holds and a double holds exactly: no
    fraction, at most ±2**53, and not ``-0.0`` (its sign is part of its value)."""
    with np.errstate(invalid="ignore"):
        return (np.trunc(values) == values) & (np.abs(values) <= EXACT) & ~((values == 0) & np.signbit(values))


def whole_sql(expr: str) -> str:
    """:func:`_whole` in DuckDB SQL."""
    return f"({expr} = trunc({expr}) AND abs({expr}) <= {EXACT} AND NOT ({expr} = 0 AND signbit({expr})))"


def beyond_exact(col) -> bool:
    """Whether an integer column holds a value beyond ±2**53 (which a double cannot hold)."""
    lo, hi = pc.min_max(col).values()
    return hi.as_py() is not None and (hi.as_py() > EXACT or lo.as_py() < -EXACT)


# -- canonical text --------------------------------------------------------------------------

def text_sql(expr: str, t: pa.DataType) -> str:
    """SQL giving the canonical text of ``expr`` (of Arrow type ``t``) in DuckDB: integers as
    written, a whole double (:func:`_whole`) as an integer, other doubles as the
    shortest text that reads back as the same double (Python's ``repr``), booleans
    ``true``/``false``, lists and structs as JSON. The warm path and :func:`canonical_text` both
    use it, so a value converted to text reads the same whichever path converted it."""
    kind = kind_of_type(t)
    if kind == VARCHAR:
        return expr
    if kind == NULL:
        return "CAST(NULL AS VARCHAR)"
    if kind == DOUBLE:
        return (f"CASE WHEN {whole_sql(expr)} "
                f"THEN CAST(CAST({expr} AS BIGINT) AS VARCHAR) ELSE CAST({expr} AS VARCHAR) END")
    if kind in (BIGINT, BOOLEAN):
        return f"CAST({expr} AS VARCHAR)"
    return f"CAST(to_json({expr}) AS VARCHAR)"


def canonical_text(col) -> pa.Array:
    """Any column as its canonical text (see :func:`text_sql`)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    kind = kind_of_type(col.type)
    if kind == VARCHAR:
        return col.cast(pa.string()) if col.type != pa.string() else col
    if kind == NULL:
        return pa.nulls(len(col), pa.string())
    if kind in (BIGINT, BOOLEAN):
        return col.cast(pa.string())
    if kind == DOUBLE and pa.types.is_floating(col.type):
        a = col.cast(pa.float64())
        values = np.asarray(a.to_numpy(zero_copy_only=False), dtype=np.float64)
        if _whole(values)[_valid(a)].all():
            return pc.cast(pc.cast(a, pa.int64(), safe=False), pa.string())
    import duckdb

    con = duckdb.connect()
    try:
        con.register("captureq_text", pa.table({"x": col}))
        sql = f"SELECT {text_sql('x', col.type)} AS x FROM captureq_text"
        return con.sql(sql).to_arrow_table().column(0).combine_chunks().cast(pa.string())
    finally:
        con.close()


_INT = r"^-?(0|[1-9][0-9]{0,18})$"
_NUMBER = r"^-?(([0-9]+(\.[0-9]+)?(e[-+][0-9]+)?)|nan|inf)$"
#: How NaN and ±Infinity are spelled in JSON and CSV payloads (Python's ``json.dumps`` writes a
#: bare ``NaN``, others the string ``"NaN"``): text that is a number whatever its case.
NON_FINITE = r"(?i)^[-+]?(nan|inf|infinity)$"


def _text_kind(arr: pa.Array) -> tuple[object, bool]:
    """The kind of a text column by what its values spell (see the module's rule)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    present = arr.drop_null()
    if not len(present):
        return NULL, False
    non_finite = pc.match_substring_regex(present, NON_FINITE)
    if pc.any(non_finite).as_py():  # NaN/±Infinity spelled any way: numbers beside numbers
        kind, big = _text_kind(present.filter(pc.invert(non_finite)))
        return (join(kind, DOUBLE, big) if kind in (NULL, BIGINT, DOUBLE) else VARCHAR), False
    bools = pc.is_in(present, value_set=pa.array(["true", "false"]))
    if pc.all(bools).as_py():
        return BOOLEAN, False
    if pc.any(bools).as_py() or not pc.all(pc.match_substring_regex(present, _NUMBER)).as_py():
        return VARCHAR, False
    if pc.all(pc.match_substring_regex(present, _INT)).as_py():
        import polars as pl

        ints = pl.from_arrow(present).cast(pl.Int64, strict=False)
        if ints.null_count() == 0:
            big = bool(((ints > EXACT) | (ints < -EXACT)).any())
            return BIGINT, big
    numbers = parse_numbers(present)
    if numbers.null_count:
        return VARCHAR, False
    same = pc.equal(canonical_text(numbers), present)
    return (DOUBLE, False) if pc.all(same).as_py() else (VARCHAR, False)


def kind_sql(expr: str, t: pa.DataType) -> list[str]:
    """Five DuckDB aggregates that tell, over a group of rows, the kind of column ``expr``
    (stored as Arrow type ``t``; text holds canonical text) as :func:`column_kind` tells it:
    values present, all ``true``/``false``, all integers, one beyond ±2**53, all numbers.
    :func:`kind_of_flags` reads them back."""
    present = f"count({expr})"
    if pa.types.is_string(t):
        number = f"TRY_CAST({expr} AS DOUBLE)"
        given = f"FILTER (WHERE {expr} IS NOT NULL)"  # a null row is no evidence either way
        return [present, f"bool_and({expr} IN ('true', 'false'))",
                f"bool_and(regexp_full_match({expr}, '{_INT.strip('^$')}') AND TRY_CAST({expr} AS BIGINT) IS NOT NULL) {given}",
                f"coalesce(max(abs(TRY_CAST({expr} AS HUGEINT))) > {EXACT}, false)",
                f"bool_and({number} IS NOT NULL AND ({text_sql(number, pa.float64())} = {expr}"
                f" OR regexp_full_match({expr}, '{NON_FINITE}'))) {given}"]
    if pa.types.is_floating(t):
        return [present, "false", f"bool_and({whole_sql(expr)})", "false", "true"]
    if pa.types.is_integer(t):
        return [present, "false", "true", f"coalesce(max(abs(CAST({expr} AS HUGEINT))) > {EXACT}, false)", "true"]
    if pa.types.is_boolean(t):
        return [present, "true", "false", "false", "false"]
    return [present, "false", "false", "false", "false"]


def kind_of_flags(flags, t: pa.DataType) -> tuple[object, bool]:
    """The kind (and whether an integer beyond ±2**53 is there) from :func:`kind_sql`'s values."""
    present, booleans, integers, big, numbers = flags
    if not present:
        return NULL, False
    if booleans:
        return BOOLEAN, False
    if integers:
        return BIGINT, bool(big)
    if numbers:
        return DOUBLE, False
    return kind_of_type(t), False  # text that is not all one kind; a nested type


def column_kind(col) -> tuple[object, bool]:
    """The kind of one column's values, and whether an integer beyond ±2**53 is among them."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    kind = kind_of_type(col.type)
    if col.null_count == len(col):
        return NULL, False
    if kind == VARCHAR:
        return _text_kind(col)
    if kind == BIGINT:
        return BIGINT, beyond_exact(col)
    if kind == DOUBLE and pa.types.is_floating(col.type):
        values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        if col.null_count:
            values = values[_valid(col)]
        return (BIGINT if _whole(values).all() else DOUBLE), False
    return kind, False


def profile(table: pa.Table, endpoint: str | None, into: Profile | None = None) -> Profile:
    """Add the value columns of ``table`` (one endpoint's decoded records) to a profile."""
    into = {} if into is None else into
    cols = into.setdefault(endpoint, {})
    for name in table.column_names:
        if name in _BOOKKEEPING:
            continue
        kind, big = column_kind(table.column(name))
        cols.setdefault(name, ColumnStats()).add(ColumnStats(kind, big))
    return into


def merge(profiles: list[Profile]) -> Profile:
    out: Profile = {}
    for p in profiles:
        for endpoint, cols in p.items():
            mine = out.setdefault(endpoint, {})
            for name, stats in cols.items():
                mine.setdefault(name, ColumnStats()).add(stats)
    return out


def column_type(stats: ColumnStats) -> pa.DataType:
    """The Arrow type of a column's joined kind."""
    return arrow_type(stats.kind)


def decide(profiles: list[Profile], declared: dict | None = None) -> Decision:
    """Each endpoint's column types over every profile (batches of one read, in order);
    ``declared`` (endpoint → column → Arrow type, ``None`` for every endpoint) wins."""
    out = {
        endpoint: {name: column_type(stats) for name, stats in cols.items()}
        for endpoint, cols in merge(profiles).items()
    }
    return declare(out, declared) if declared else out


_BY_SQL_NAME = {v: _ARROW[k] for k, v in SQL_NAMES.items()}


def declared_types(options, side: str) -> dict:
    """A :class:`~captureq.options.DecodeOptions`' declared types of ``side`` as Arrow types."""
    if options is None:
        return {}
    return {scope: {c: _BY_SQL_NAME[t] for c, t in types.items()}
            for scope, types in options.declared(side).items()}


def declare(decision: Decision, declared: dict) -> Decision:
    """``decision`` with the user's declared types (``{endpoint or None: {column: type}}``)."""
    for endpoint, types in decision.items():
        for scope in (None, endpoint):
            for name, t in (declared.get(scope) or {}).items():
                if name in types:
                    types[name] = t
    return decision


def union_type(types) -> pa.DataType:
    """The type of a column that endpoints of ``types`` share in a view of all endpoints: the
    join of their kinds (``BIGINT`` and ``DOUBLE`` share ``DOUBLE``; other clashes ``VARCHAR``)."""
    kind = NULL
    for t in types:
        kind = join(kind, kind_of_type(t))
    return arrow_type(kind)


def _convert(col: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """``col`` as ``target``; and where a value was present but does not fit (now null). Every
    value fits its decided type; only a declared type can refuse one."""
    n = len(col)
    none = np.zeros(n, bool)
    if col.type == target:
        return col, none
    if pa.types.is_null(col.type):
        return pa.nulls(n, target), none
    if pa.types.is_string(target):
        return canonical_text(col), none
    if pa.types.is_null(target):
        return pa.nulls(n, target), ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)
    source = col
    if kind_of_type(col.type) == VARCHAR and kind_of_type(target) in (BIGINT, DOUBLE):
        source = parse_numbers(col)
        if pa.types.is_integer(target):  # integers as written (every digit), else whole numbers
            import polars as pl

            ints = pl.from_arrow(col).str.strip_chars().cast(pl.Int64, strict=False).to_arrow()
            out = pc.coalesce(ints, _float_to_int(source))
            return out, _valid(col) & ~_valid(out)
    elif kind_of_type(col.type) == VARCHAR and pa.types.is_boolean(target):
        lower = pc.utf8_lower(pc.utf8_trim_whitespace(col))
        out = pc.if_else(pc.equal(lower, "true"), True, pc.if_else(pc.equal(lower, "false"), False, None))
        return out, _valid(col) & ~_valid(out)
    if pa.types.is_integer(target) and pa.types.is_floating(source.type):
        out = _float_to_int(source)
        return out, _valid(source) & ~_valid(out)
    try:
        out = source.cast(target, safe=False)
        return out, np.asarray(pc.and_(pc.is_valid(col), pc.is_null(out)).to_numpy(zero_copy_only=False), bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.nulls(n, target), ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)


def _float_to_int(values: pa.Array) -> pa.Array:
    """Doubles as int64 where they are whole numbers within int64's range; null elsewhere."""
    v = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        fits = (np.trunc(v) == v) & (np.abs(v) < 2.0**63)
    return pc.if_else(pa.array(fits), values, None).cast(pa.int64(), safe=False)


def widen(col, target: pa.DataType) -> pa.Array:
    """A column stored with a narrower type of the lattice, as ``target`` (a number becoming
    text is its canonical text): how a part written before its column widened is rewritten."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return _convert(col, target)[0]


def conformed_schema(schema_: pa.Schema, endpoints: list, decision: Decision) -> pa.Schema:
    """The schema :func:`conform` gives a table of ``schema_`` holding rows of ``endpoints``
    (without ``exact``): what a reader that must declare its columns before it has the rows
    (Spark) needs."""
    fields = []
    for f in schema_:
        if f.name in schema.RECORD_KEY_NAMES:
            fields.append(f)
            continue
        kinds = [decision[e][f.name] for e in endpoints if f.name in decision.get(e, {})]
        fields.append(pa.field(f.name, union_type(kinds)) if kinds else f)
    return pa.schema(fields)


def conform(table: pa.Table, captures: pa.Table, decision: Decision, side: str, *,
            exact: bool = False) -> tuple[pa.Table, pa.Table]:
    """Convert ``table`` (decoded records of one batch) to the ``decision``'s column types.

    Returns the table and the ``value`` quarantine rows of values that did not fit a declared
    type (looked up in ``captures`` for their file and line). With ``exact`` (one endpoint's
    rows, as written to a Parquet part), the value columns are exactly the decision's, in its
    order, missing ones null. Rows of endpoints whose types differ share the column as
    :func:`union_type` says.
    """
    if not table.num_rows and not exact:
        return table, schema.empty(schema.QUARANTINE)
    position = {name: i for i, name in enumerate(table.column_names)}  # by index: wide tables stay linear
    types = table.schema.types
    ep_col = table.column("endpoint") if "endpoint" in position else None
    endpoints = (pc.unique(ep_col).to_pylist() if ep_col is not None and len(ep_col)
                 else [None] if ep_col is None else [])
    if len(endpoints) > 1:
        ep_col = ep_col.combine_chunks()
    values = [c for c in position if c not in schema.RECORD_KEY_NAMES]
    if exact:
        if len(endpoints) > 1:
            raise ValueError("conform(exact=True) takes one endpoint's rows")
        target_cols = list(decision.get(endpoints[0] if endpoints else None, {}))
    else:
        target_cols = values
    out = {k: table.column(i) for k, i in position.items() if k in schema.RECORD_KEY_NAMES}
    bad_rows, bad_cols, bad_reasons, bad_raw = [], [], [], []
    for name in target_cols:
        targets = {e: decision[e][name] for e in endpoints if name in decision.get(e, {})}
        i = position.get(name)
        if i is None:
            t = targets[endpoints[0]] if targets else pa.null()
            out[name] = pa.nulls(table.num_rows, t)
            continue
        if not targets:
            out[name] = table.column(i)
            continue
        result_type = union_type(targets.values())
        col = table.column(i)
        if all(t == types[i] for t in targets.values()) and result_type == types[i]:
            out[name] = col  # the usual case: nothing to convert, no copy
            continue
        col = col.combine_chunks()
        if len(set(targets.values())) == 1:
            masks = {e: None for e in targets}
        else:
            masks = {e: pc.fill_null(pc.equal(ep_col, e), False) for e in targets}
        converted = {}
        for e, t in targets.items():
            converted[e] = _convert(col, t)
            if masks[e] is None:
                break
        if pa.types.is_floating(result_type):  # an integer beyond ±2**53 makes the union text
            for e, (c, _) in converted.items():
                if pa.types.is_integer(c.type) and beyond_exact(c if masks[e] is None else c.filter(masks[e])):
                    result_type = pa.string()
        result = None
        for e, (c, bad) in converted.items():
            t = targets[e]
            if result_type != t:
                c, _ = _convert(c, result_type)
            if masks[e] is None:
                result = c
            else:
                bad = bad & masks[e].to_numpy(zero_copy_only=False)
                result = c if result is None else pc.if_else(masks[e], c, result)
            rows = np.flatnonzero(bad)
            if len(rows):
                bad_rows.append(rows)
                bad_cols += [name] * len(rows)
                bad_reasons += [f"{side} column {name!r} of endpoint {e!r} is declared "
                                f"{type_name(t)}; this value is not one, so it is null there"] * len(rows)
                bad_raw.append(canonical_text(col.take(pa.array(rows))))
        out[name] = result.cast(result_type) if result.type != result_type else result
    conformed = pa.table(out)
    if not bad_rows:
        return conformed, schema.empty(schema.QUARANTINE)
    rows = pa.array(np.concatenate(bad_rows), pa.int64())
    ids = table.column("capture_id").take(rows)
    where = pc.index_in(ids, captures.column("capture_id"))
    q = schema.quarantine_rows({
        "stage": pa.array(["value"] * len(rows), pa.string()),
        "source_file": captures.column("source_file").take(where),
        "line_number": captures.column("line_number").take(where),
        "capture_id": ids,
        "reason": pa.array(bad_reasons, pa.string()),
        "raw": pa.concat_arrays(bad_raw),
        "column": pa.array(bad_cols, pa.string()),
        "record_index": table.column(RECORD_INDEX).take(rows).cast(pa.int32()),
    })
    return conformed, q


def canonicalize_csv_text(col: pa.Array) -> pa.Array:
    """A CSV text column with each number written as its canonical text and each boolean as
    ``true``/``false``: CSV has no types, so ``1.50`` is the number 1.5 whether its batch was
    read as numbers or (beside a word) as text."""
    import polars as pl

    s = pl.from_arrow(col).str.strip_chars()
    floats = s.cast(pl.Float64, strict=False)
    ints = s.cast(pl.Int64, strict=False)
    lower = s.str.to_lowercase()
    if floats.null_count() == s.len() and not lower.is_in(["true", "false"]).any():
        return col
    num_text = canonical_text(floats.to_arrow())
    int_text = ints.cast(pl.Utf8).to_arrow()
    out = pc.if_else(pc.is_valid(int_text), int_text, pc.if_else(pc.is_valid(num_text), num_text, col))
    lower = lower.to_arrow()
    return pc.if_else(pc.is_in(lower, value_set=pa.array(["true", "false"])), lower, out)
