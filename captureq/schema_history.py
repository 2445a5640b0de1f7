"""Each endpoint's column types and how they came to be: what ``captureq schema`` prints.

A column's type is the narrowest that holds every value the endpoint's side has had (README,
"Types"); its history says, hour by hour of the records' ``inference_time``, when the column
first held a value and when a later hour's values widened it (``BIGINT`` → ``DOUBLE`` →
``VARCHAR``). The history is told by the data's own hours, not by when files arrived or were
first read, so the same files always tell the same history.

>>> import captureq, tempfile
>>> from captureq.generate import generate_tree
>>> root = tempfile.mkdtemp()
>>> _ = generate_tree(root, hours=2, requests_per_hour=4, seed=1)
>>> cols = schema_history(captureq.open(root, endpoint="churn-xgb", cache=False))
>>> c = cols[0]
>>> (c.endpoint, c.side, c.column, c.type, c.history[0].change)
('churn-xgb', 'input', '_c0', 'BIGINT', 'added')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

import pyarrow as pa

from . import schema
from .decode.names import key_path
from .decode.unify import NULL, arrow_type, join, kind_of_flags, kind_sql, type_name
from .registry import SIDES


@dataclass(frozen=True)
class Change:
    """One step of a column's history: ``added`` (first value), ``widened`` or ``declared``."""

    hour: datetime
    change: str
    to: str
    from_: str | None = None

    def as_dict(self) -> dict:
        out = {"hour": self.hour.isoformat(), "change": self.change}
        if self.from_ is not None:
            out["from"] = self.from_
        out["to"] = self.to
        return out


@dataclass(frozen=True)
class ColumnHistory:
    """One column of one endpoint's ``inputs`` or ``outputs``: its type now, whether the user
    declared it, the JSON key path it holds (None for CSV and vector columns), the first hour it
    held a value, and its changes in hour order."""

    endpoint: str
    side: str
    column: str
    type: str
    declared: bool
    key_path: list[str] | None
    first_seen: datetime | None
    history: list[Change] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["first_seen"] = self.first_seen.isoformat() if self.first_seen else None
        out["history"] = [c.as_dict() for c in self.history]
        return out


def schema_history(tree) -> list[ColumnHistory]:
    """Every endpoint's columns (inputs, then outputs), each with its type and history.

    ``tree`` is an open :class:`~captureq.api.CaptureTree`; its window and filters apply, and
    its declared types (``DecodeOptions(input_types=…)``) win as they do in every view."""
    import duckdb

    from .plan import Needs

    tables = tree.load(Needs(frozenset({"inputs", "outputs"})))
    con = duckdb.connect()
    out: list[ColumnHistory] = []
    for side, table in SIDES:
        declared = tree.options.declared(side)
        rows = getattr(tables, table)
        for endpoint, types in sorted(tables.decisions.get(side, {}).items()):
            if endpoint is None:
                continue
            mine = {**declared.get(None, {}), **declared.get(endpoint, {})}
            out += _endpoint_history(con, rows, endpoint, side, types, mine)
    return out


def _endpoint_history(con, rows: pa.Table, endpoint: str, side: str, types: dict, declared: dict
                      ) -> list[ColumnHistory]:
    """The history of one endpoint's columns, from the union table ``rows`` (whose text columns
    hold canonical text, so a column's values tell their kind whatever the union's type)."""
    import pyarrow.compute as pc

    names = [c for c in types if c not in schema.RECORD_KEY_NAMES and c in rows.column_names]
    if not names:
        return []
    mine = rows.filter(pc.equal(rows.column("endpoint"), endpoint))
    # positional names: columns that differ only in case stay apart in DuckDB
    frame = pa.table([mine.column("inference_time")] + [mine.column(c) for c in names],
                     names=["hour"] + [f"c{i}" for i in range(len(names))])
    aggs = [a for i, c in enumerate(names) for a in kind_sql(f"c{i}", frame.schema.field(f"c{i}").type)]
    con.register("captureq_history", frame)
    hours = con.execute(f"SELECT date_trunc('hour', hour) AS h, {', '.join(aggs)} FROM captureq_history "
                        "GROUP BY h ORDER BY h").fetchall()
    con.unregister("captureq_history")
    out = []
    for i, c in enumerate(names):
        stored = frame.schema.field(f"c{i}").type
        first, changes, kind, big = None, [], NULL, False
        for hour, *flags in hours:
            k, beyond = kind_of_flags(flags[i * 5: i * 5 + 5], stored)
            if k == NULL:
                continue
            first = first or hour
            wider = join(kind, k, big or beyond)
            big = big or beyond
            if wider != kind:
                changes.append(Change(hour, "added" if kind == NULL else "widened", _name(wider),
                                      None if kind == NULL else _name(kind)))
                kind = wider
        final = type_name(types[c])
        if c in declared:
            changes = [Change(first, "declared", declared[c])] if first else []
            final = declared[c]
        path = key_path(c)
        out.append(ColumnHistory(endpoint, side, c, final, c in declared,
                                 list(path) if path else None, first, changes))
    return out


def _name(kind) -> str:
    return type_name(arrow_type(kind))
