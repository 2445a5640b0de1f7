"""One type per decoded column per endpoint and side, whatever the window or the batch.

Batches are decoded on their own (and in parallel): a batch where ``_c0`` holds one ``abc``
reads ``_c0`` as text while its neighbours read numbers. So :func:`profile` records, for each
endpoint's columns in a batch, the types seen, the non-empty values and how many of them are
numbers (text that parses as one counts); once a read is decoded, :func:`decide` fixes each
column's type with one rule — **numeric when at least 99 % of its non-empty values are numbers,
or when at most 3 are not and numbers outnumber them more than 3 to 1** (so a small window with
one stray value types the column as a large one does) — and :func:`conform` converts every batch to that decision. A value that does not
fit becomes null in its column and a ``value`` quarantine row (column, raw value, capture_id,
record_index): nothing is lost, and a few bad values cannot flip a column.

>>> import pyarrow as pa
>>> good = pa.table({"_row": [0] * 200, "record_index": pa.array([0] * 200, pa.int32()),
...                  "_c0": pa.array([str(i) for i in range(199)] + ["abc"])})
>>> p = profile(good, "ep")
>>> decide([p])["ep"]["_c0"]
DataType(double)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema
from .common import RECORD_INDEX, ROW, concat_tables

#: A column is numeric when at least this share of its non-empty values are numbers …
NUMERIC_SHARE = 0.99
#: … or when at most this many are not, and numbers outnumber them more than this many to one.
FEW = 3

_BOOKKEEPING = frozenset({ROW, *schema.RECORD_KEY_NAMES})


@dataclass
class ColumnStats:
    """What one endpoint's column held: its Arrow types, non-empty values, numeric values."""

    types: set = field(default_factory=set)
    values: int = 0
    numeric: int = 0

    def add(self, other: ColumnStats) -> None:
        self.types |= other.types
        self.values += other.values
        self.numeric += other.numeric


#: endpoint → column (in order of first appearance) → stats
Profile = dict
#: endpoint → column (in order) → Arrow type
Decision = dict


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def parse_numbers(text: pa.Array) -> pa.Array:
    """Text → float64 (surrounding spaces ignored); null where a value is not a number."""
    import polars as pl  # imported on first use: not at start-up (issue 13 part 5)

    return pl.from_arrow(text).str.strip_chars().cast(pl.Float64, strict=False).to_arrow()


def _nonempty(text: pa.Array) -> pa.Array:
    return pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), False)


def profile(table: pa.Table, endpoint: str | None, into: Profile | None = None) -> Profile:
    """Add the value columns of ``table`` (one endpoint's decoded records) to a profile."""
    into = {} if into is None else into
    cols = into.setdefault(endpoint, {})
    for name in table.column_names:
        if name in _BOOKKEEPING:
            continue
        col = table.column(name)
        stats = ColumnStats({col.type})
        if pa.types.is_null(col.type):
            pass
        elif _is_text(col.type):
            arr = col.combine_chunks()
            stats.values = int(pc.sum(_nonempty(arr)).as_py() or 0)
            stats.numeric = len(arr) - parse_numbers(arr).null_count
        else:
            stats.values = len(col) - col.null_count
            stats.numeric = stats.values if _is_number(col.type) else 0
        cols.setdefault(name, ColumnStats()).add(stats)
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
    """The rule: numbers (and all-null columns) are DOUBLE; text is DOUBLE when ≥ 99 % of the
    non-empty values are numbers or at most :data:`FEW` are not (numbers outnumbering them
    more than ``FEW`` to 1), else VARCHAR; any other type is kept when it is the only one,
    and mixed types become VARCHAR."""
    types = {t for t in stats.types if not pa.types.is_null(t)}
    if all(_is_number(t) for t in types):
        return pa.float64()
    if all(_is_number(t) or _is_text(t) for t in types):
        other = stats.values - stats.numeric
        if stats.values and (stats.numeric >= NUMERIC_SHARE * stats.values
                             or (other <= FEW and stats.numeric > FEW * other)):
            return pa.float64()
        return pa.string()
    if len(types) == 1:
        return next(iter(types))
    tables = [pa.table({"c": pa.array([], t)}) for t in types]
    return concat_tables(tables).schema.field("c").type


def decide(profiles: list[Profile]) -> Decision:
    """Each endpoint's column types over every profile (batches of one read, in order)."""
    return {
        endpoint: {name: column_type(stats) for name, stats in cols.items()}
        for endpoint, cols in merge(profiles).items()
    }


def _convert(col: pa.Array, target: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """``col`` as ``target``; and where a value was present but does not fit (now null)."""
    n = len(col)
    if col.type == target:
        return col, np.zeros(n, bool)
    if pa.types.is_floating(target) and _is_text(col.type):
        out = parse_numbers(col).cast(target)
        bad = pc.and_(_nonempty(col), pc.is_null(out))
        return out, bad.to_numpy(zero_copy_only=False)
    try:
        return col.cast(target, safe=False), np.zeros(n, bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    if _is_text(target):  # lists, structs: their JSON-like text
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], target), np.zeros(n, bool)
    return pa.nulls(n, target), ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), bool)


def _as_text(col: pa.Array) -> pa.Array:
    return _convert(col, pa.string())[0]


def conformed_schema(schema_: pa.Schema, endpoints: list, decision: Decision) -> pa.Schema:
    """The schema :func:`conform` gives a table of ``schema_`` holding rows of ``endpoints``
    (without ``exact``): what a reader that must declare its columns before it has the rows
    (Spark) needs."""
    fields = []
    for f in schema_:
        if f.name in schema.RECORD_KEY_NAMES:
            fields.append(f)
            continue
        kinds = {decision[e][f.name] for e in endpoints if f.name in decision.get(e, {})}
        if not kinds or kinds == {f.type}:
            fields.append(f)
        else:
            fields.append(pa.field(f.name, next(iter(kinds)) if len(kinds) == 1 else pa.string()))
    return pa.schema(fields)


def conform(table: pa.Table, captures: pa.Table, decision: Decision, side: str, *,
            exact: bool = False) -> tuple[pa.Table, pa.Table]:
    """Convert ``table`` (decoded records of one batch) to the ``decision``'s column types.

    Returns the table and the ``value`` quarantine rows of values that did not fit (looked up
    in ``captures`` for their file and line). With ``exact`` (one endpoint's rows, as written to
    a Parquet part), the value columns are exactly the decision's, in its order, missing ones
    null. Rows of endpoints whose decisions disagree on a column share it as text.
    """
    if not table.num_rows and not exact:
        return table, schema.empty(schema.QUARANTINE)
    position = {name: i for i, name in enumerate(table.column_names)}  # by index: wide tables stay linear
    types = table.schema.types
    ep_col = table.column("endpoint") if "endpoint" in position else None
    endpoints = pc.unique(ep_col).to_pylist() if ep_col is not None and len(ep_col) else []
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
            out[name] = pa.nulls(table.num_rows, targets[endpoints[0]] if targets else pa.float64())
            continue
        kinds = set(targets.values())
        if not kinds or kinds == {types[i]}:
            out[name] = table.column(i)  # the usual case: nothing to convert, no copy
            continue
        col = table.column(i).combine_chunks()
        if len(kinds) == 1:
            masks = {e: None for e in targets}
            result_type = next(iter(kinds))
        else:
            masks = {e: pc.equal(ep_col, e) for e in targets}
            result_type = pa.string()
        result = None if len(kinds) == 1 else _as_text(col)
        for e, t in targets.items():
            converted, bad = _convert(col, t)
            if masks[e] is None:
                result = converted
            else:
                m = pc.fill_null(masks[e], False)
                bad = bad & m.to_numpy(zero_copy_only=False)
                result = pc.if_else(m, _as_text(converted), result)
            rows = np.flatnonzero(bad)
            if len(rows):
                bad_rows.append(rows)
                bad_cols += [name] * len(rows)
                what = "numbers" if pa.types.is_floating(t) else f"{t} values"
                bad_reasons += [f"{side} column {name!r} of endpoint {e!r} holds {what} (decided "
                                f"from its values); this value is not one, so it is null there"] * len(rows)
                bad_raw.append(_as_text(col.take(pa.array(rows))))
            if masks[e] is None:
                break
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
