"""The DuckDB views, defined in ``sql/*.sql`` and registered over captureq's tables.

Each view reads a source relation named ``captureq_<table>``. In Python those are Arrow tables
registered on a connection; in the ``duckdb`` shell they are views over a Parquet export, so the
same SQL files serve both (a database file is never needed, which keeps the shell working with
a ``duckdb`` CLI older than the library).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

# schema and pair (pyarrow, numpy) are imported by the functions that use them: the plan reads
# the view names and definitions below before the first byte of a capture file is read

VIEWS = ("captures", "inputs", "outputs", "labels", "quarantine", "predictions")  # + captureq_pairs
SOURCE_PREFIX = "captureq_"
PAYLOAD_TEXT = ("input_data", "output_data")  # the raw payload text in ``captures``


def quote_ident(name: str) -> str:
    """Quote an SQL identifier for DuckDB: ``a"b`` → ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a string literal: ``it's`` → ``'it''s'`` (only for paths in generated scripts)."""
    return "'" + value.replace("'", "''") + "'"


def _sql_dir():
    packaged = resources.files("captureq") / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


@cache
def view_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (_sql_dir() / f"{name}.sql").read_text()


def output_columns_sql(columns: list[str], input_columns: list[str] = ()) -> str:
    """The ``{output_columns}`` part of pairs.sql for the outputs' value columns."""
    from .pair import output_aliases

    aliases = output_aliases(columns, input_columns)
    parts = [f"o.{quote_ident(c)} AS {quote_ident(aliases[c])}" for c in columns]
    return "".join(",\n        " + p for p in parts)


def output_aliases_for(columns: list[str], input_columns: list[str] = ()) -> list[str]:
    """The names the outputs' value columns take in ``predictions``."""
    from .pair import output_aliases

    return list(output_aliases(columns, input_columns).values())


def render_pairs(output_value_columns: list[str], input_value_columns: list[str] = ()) -> str:
    """``sql/pairs.sql`` for the outputs' (and inputs') value columns."""
    return view_sql("pairs").replace(
        "{output_columns}", output_columns_sql(output_value_columns, input_value_columns)
    )


def render_views(output_value_columns: list[str] | None = None,
                 input_value_columns: list[str] = ()) -> str:
    """Every view definition, in dependency order, as one SQL script.

    With ``output_value_columns`` the script also defines ``captureq_pairs`` with
    ``sql/pairs.sql`` (for the shell); without, the caller registers it (Python builds it with
    :func:`captureq.pair.pair_records`).
    """
    out = []
    for name in VIEWS:
        if name == "predictions" and output_value_columns is not None:
            out.append(render_pairs(output_value_columns, input_value_columns).strip())
        out.append(view_sql(name).strip())
    return "\n\n".join(out) + "\n"


def register(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table],
             decisions: dict | None = None) -> None:
    """Register Arrow ``tables`` (every table of :data:`schema.TABLES` plus ``pairs``) as
    ``captureq_<name>`` and create the views over them (and each endpoint's own typed views,
    given the read's type ``decisions``)."""
    from . import schema

    con.execute("SET TimeZone = 'UTC'")
    for name in (*schema.TABLES, "pairs"):
        con.register(SOURCE_PREFIX + name, case_unique(tables[name]))
    con.execute(render_views())
    if decisions:
        con.execute(endpoint_views_sql(decisions, columns=union_columns(tables)))


def union_columns(tables: dict) -> dict:
    """The columns the union views ``inputs``, ``outputs`` and ``pairs`` have, as registered."""
    return {name: set(case_unique(tables[name]).column_names) for name in ("inputs", "outputs", "pairs")}


def _typed(column: str, source_type, t, alias: str | None = None) -> str:
    """``column`` (of the union view's ``source_type``) as the endpoint's own type ``t``."""
    import pyarrow as pa

    from . import schema

    q = quote_ident(column)
    alias = quote_ident(alias or column)
    if source_type is not None and source_type == t:
        return f"{q} AS {alias}"
    if pa.types.is_null(t):
        return f"NULL AS {alias}"
    target = schema.duckdb_type(t)
    if source_type is not None and pa.types.is_string(source_type) and (
            pa.types.is_struct(t) or pa.types.is_list(t)):
        return f"CAST(CAST({q} AS JSON) AS {target}) AS {alias}"
    return f"CAST({q} AS {target}) AS {alias}"


def endpoint_views_sql(decisions: dict, *, source: str = "main", columns: dict | None = None) -> str:
    """One DuckDB schema per endpoint with its own typed views: ``"<endpoint>".inputs``,
    ``.outputs``, ``.predictions``, ``.captures``, ``.quarantine`` (the union views'
    rows of that endpoint, each value column cast back to the type decided for the endpoint,
    and only the endpoint's own columns).

    ``decisions``: ``{"input": {endpoint: {column: Arrow type}}, "output": {...}}`` as the read
    decided them; ``source``: the schema holding the union views (``temp.main`` for the warm
    path's connection-local views); ``columns``: ``{"inputs"|"outputs"|"pairs": names}`` the
    union views have (a column they lack is left out).
    """
    from . import schema
    from .decode.unify import union_type
    from .pair import output_aliases

    ins, outs = decisions.get("input", {}), decisions.get("output", {})
    if columns is not None:
        ins = {e: {c: t for c, t in cols.items() if c in columns.get("inputs", ())} for e, cols in ins.items()}
        outs = {e: {c: t for c, t in cols.items() if c in columns.get("outputs", ())} for e, cols in outs.items()}
    endpoints = sorted({e for e in (*ins, *outs) if e is not None})
    union = {}  # side → column → its type in the view of all endpoints
    for side, dec in (("input", ins), ("output", outs)):
        names = dict.fromkeys(c for cols in dec.values() for c in cols)
        union[side] = {c: union_type([cols[c] for cols in dec.values() if c in cols]) for c in names}
    aliases = output_aliases(list(union["output"]), list(union["input"]))
    keys = ", ".join(quote_ident(k) for k in schema.RECORD_KEY_NAMES)
    out = []
    for e in endpoints:
        sch = quote_ident(e)
        where = f"WHERE endpoint = {quote_literal(e)}"
        out.append(f"CREATE SCHEMA IF NOT EXISTS {sch};")
        for side, table in (("input", "inputs"), ("output", "outputs")):
            cols = "".join(", " + _typed(c, union[side].get(c), t) for c, t in (ins if side == "input" else outs).get(e, {}).items())
            out.append(f"CREATE OR REPLACE VIEW {sch}.{table} AS SELECT {keys}{cols} FROM {source}.{table} {where};")
        pair_cols = set(columns.get("pairs", ())) if columns is not None else None
        cols = "".join(", " + _typed(c, union["input"].get(c), t) for c, t in ins.get(e, {}).items()
                       if pair_cols is None or c in pair_cols)
        cols += "".join(", " + _typed(aliases[c], union["output"].get(c), t, aliases[c])
                        for c, t in outs.get(e, {}).items() if pair_cols is None or aliases[c] in pair_cols)
        out.append(f"CREATE OR REPLACE VIEW {sch}.predictions AS SELECT {keys}{cols}, ground_truth, "
                   f"ground_truth_value, label_hour FROM {source}.predictions {where};")
        out.append(f"CREATE OR REPLACE VIEW {sch}.captures AS SELECT * FROM {source}.captures {where};")
        out.append(f"CREATE OR REPLACE VIEW {sch}.quarantine AS SELECT * FROM {source}.quarantine AS q "
                   f"WHERE q.capture_id IN (SELECT capture_id FROM {source}.captures {where});")
    return "\n".join(out) + ("\n" if out else "")


def case_unique(table: pa.Table) -> pa.Table:
    """Rename columns whose names differ from an earlier one only by case (``B`` after ``b``
    becomes ``B_1``): DuckDB matches identifiers case-insensitively, so ``o."B"`` would silently
    read column ``b``."""
    seen: set[str] = set()
    names = []
    for name in table.column_names:
        new, k = name, 0
        while new.lower() in seen:
            k += 1
            new = f"{name}_{k}"
        seen.add(new.lower())
        names.append(new)
    return table if names == table.column_names else table.rename_columns(names)


# read_parquet's options for captureq's Parquet parts: endpoint and variant come from the
# ``endpoint=E/variant=V`` folders (the parts do not hold them), as text whatever they look like
# (autocast would read an endpoint named ``2024`` as a number)
HIVE_OPTIONS = "hive_partitioning = true, hive_types_autocast = false"


def parquet_sources_sql(root: str, schemas: dict[str, pa.Schema], present: dict[str, bool]) -> str:
    """``captureq_<table>`` views over a Parquet export at ``root`` (local path); each selects
    exactly its table's columns, so the ``date``/``hour`` folder keys are not among them."""
    from . import schema

    lines = ["SET TimeZone = 'UTC';"]
    for name in schema.TABLES:
        src = SOURCE_PREFIX + name
        table_schema = schemas[name]
        if present.get(name):
            glob = quote_literal(f"{root.rstrip('/')}/{name}/**/*.parquet")
            cols = ", ".join(quote_ident(c) for c in table_schema.names)
            lines.append(
                f"CREATE OR REPLACE VIEW {src} AS SELECT {cols} FROM read_parquet({glob}, "
                f"{HIVE_OPTIONS}, union_by_name = true);"
            )
        else:
            cols = ", ".join(
                f"CAST(NULL AS {schema.duckdb_type(f.type)}) AS {quote_ident(f.name)}" for f in table_schema
            )
            lines.append(f"CREATE OR REPLACE VIEW {src} AS SELECT {cols} WHERE false;")
    return "\n".join(lines) + "\n"
