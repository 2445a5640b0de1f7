"""Input records side by side with the output records that answer them.

``pair_records(inputs, outputs)`` is the full outer join of the two tables on
``(capture_id, record_index)``, with the outputs' value columns renamed ``output_<name>``. Both
tables come out of the decoders in capture order, so when every capture has as many input as
output records (the usual case) the join is a zero-copy side-by-side stack; only batches with
misaligned or one-sided captures pay for a hash join. ``sql/pairs.sql`` is the same join in
SQL — the shell uses it, and the tests hold this module to it.

>>> import pyarrow as pa
>>> i = pa.table({"capture_id": ["a"], "record_index": pa.array([0], pa.int32()), "_c0": [1.0]})
>>> o = pa.table({"capture_id": ["a"], "record_index": pa.array([0], pa.int32()), "_c0": [0.9]})
>>> pair_records(i, o).column_names
['capture_id', 'record_index', '_c0', 'output_c0']
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from . import schema

KEYS = schema.RECORD_KEY_NAMES


def output_alias(column: str) -> str:
    """``_c0`` → ``output_c0``, ``label`` → ``output_label``."""
    return "output_" + re.sub(r"^_+", "", column)


def output_aliases(columns: list[str], taken: list[str] = ()) -> dict[str, str]:
    """Output column → its name beside the inputs, unique (case-insensitively, as DuckDB compares
    names) among the keys, ``taken`` (the inputs' value columns) and each other."""
    seen = {k.lower() for k in (*KEYS, *taken)}
    out = {}
    for c in columns:
        base = new = output_alias(c)
        k = 0
        while new.lower() in seen:
            k += 1
            new = f"{base}_{k}"
        seen.add(new.lower())
        out[c] = new
    return out


def value_columns(table: pa.Table | pa.Schema) -> list[str]:
    names = table.names if isinstance(table, pa.Schema) else table.column_names
    return [n for n in names if n not in KEYS]


def _aligned(inputs: pa.Table, outputs: pa.Table) -> bool:
    if inputs.num_rows != outputs.num_rows:
        return False
    if inputs.num_rows == 0:
        return True
    return inputs.column("capture_id").equals(outputs.column("capture_id")) and inputs.column(
        "record_index"
    ).equals(outputs.column("record_index"))


def pair_records(inputs: pa.Table, outputs: pa.Table) -> pa.Table:
    """Full outer join of ``inputs`` and ``outputs`` on (capture_id, record_index)."""
    out_values = value_columns(outputs)
    renamed = output_aliases(out_values, value_columns(inputs))
    if _aligned(inputs, outputs):
        table = inputs
        for c in out_values:
            table = table.append_column(renamed[c], outputs.column(c))
        return table
    return _join(inputs, outputs, out_values)


def _join(inputs: pa.Table, outputs: pa.Table, out_values: list[str]) -> pa.Table:
    """Misaligned counts, input-only or output-only captures: ``sql/pairs.sql`` itself, run by
    DuckDB, then capture order again (input order first, output-only records after)."""
    import duckdb

    from . import views

    with duckdb.connect() as con:
        con.register("inputs", views.case_unique(inputs.append_column("_pos", pa.array(np.arange(inputs.num_rows)))))
        con.register("outputs", views.case_unique(outputs))
        con.execute(views.render_pairs(out_values, value_columns(inputs)))
        rel = con.sql("select * from captureq_pairs order by _pos nulls last, capture_id, record_index")
        table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    return table.drop_columns(["_pos"])
