"""Which numbers were written with a decimal point: the raw-text evidence Model Monitor types by.

captureq types CSV values by their value, so ``3`` and ``3.0`` arrive as the same number (a
column of whole numbers is BIGINT); Model Monitor calls the first ``Integral`` and the second
``Fractional``. :func:`with_text_evidence`
goes back to each CSV capture's ``input_data`` (base64 decoded when needed), splits it into
records and fields exactly as the CSV decoder does (``\\r`` dropped, blank lines skipped), and
adds one boolean column ``__frac__<column>`` per ``_cN`` feature: True when that value's text
has a decimal point or an exponent. It is one DuckDB query over the whole window, joined back
on ``(capture_id, record_index)``. Quoted fields holding commas would shift the split; numeric
CSV payloads do not have them.

>>> import pyarrow as pa
>>> caps = pa.table({"capture_id": ["a"], "input_encoding": ["CSV"],
...                  "input_observed_content_type": ["text/csv"], "input_data": ["1,2.0\\n3,4e1"]})
>>> inputs = pa.table({"capture_id": ["a", "a"], "record_index": pa.array([0, 1], pa.int32()),
...                    "_c0": [1.0, 3.0], "_c1": [2.0, 40.0]})
>>> with_text_evidence(inputs, caps).select(["__frac___c0", "__frac___c1"]).to_pylist()
[{'__frac___c0': False, '__frac___c1': True}, {'__frac___c0': False, '__frac___c1': True}]
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

PREFIX = "__frac__"
_CN = re.compile(r"_c(\d+)")
FRACTIONAL_TEXT = r"[.eE]"  # a decimal point or an exponent: Fractional even when whole


def evidence_name(column: str) -> str:
    return PREFIX + column


def with_text_evidence(inputs: pa.Table, captures: pa.Table) -> pa.Table:
    """``inputs`` plus ``__frac___cN`` columns from the CSV captures' raw text (see module doc)."""
    import duckdb

    from ..decode import FORMATS, classify
    from ..views import quote_ident

    cols = [c for c in inputs.column_names if _CN.fullmatch(c) and (
        pa.types.is_floating(inputs[c].type) or pa.types.is_integer(inputs[c].type))]
    needed = {"capture_id", "input_encoding", "input_observed_content_type", "input_data"}
    if not cols or not inputs.num_rows or not needed <= set(captures.column_names):
        return inputs
    fmt, _ = classify(captures["input_encoding"], captures["input_observed_content_type"])
    csv_rows = np.flatnonzero(fmt == FORMATS.index("csv"))
    if not len(csv_rows):
        return inputs
    caps = captures.select(list(needed)).take(pa.array(csv_rows))
    keys = inputs.select(["capture_id", "record_index"]).append_column(
        "__pos", pa.array(np.arange(inputs.num_rows, dtype="int64"))
    )
    fields = ", ".join(
        f"coalesce(regexp_matches(f[{int(_CN.fullmatch(c).group(1)) + 1}], '{FRACTIONAL_TEXT}'), false)"
        f" as {quote_ident(evidence_name(c))}"
        for c in cols
    )
    sql = f"""
        with payloads as (
            select capture_id,
                   case when upper(trim(input_encoding)) = 'BASE64'
                        then decode(from_base64(trim(input_data))) else input_data end as text
            from caps where input_data is not null
        ),
        split as (
            select capture_id,
                   list_filter(string_split(replace(text, chr(13), ''), chr(10)), lambda x: x <> '') as lines
            from payloads
        ),
        records as (
            select capture_id, unnest(generate_series(0, len(lines) - 1))::integer as record_index,
                   unnest(lines) as line
            from split where len(lines) > 0
        ),
        evidence as (
            select capture_id, record_index, {fields}
            from (select capture_id, record_index, string_split(line, ',') as f from records)
        )
        select e.* exclude (capture_id, record_index)
        from keys k left join evidence e using (capture_id, record_index)
        order by k.__pos
    """
    con = duckdb.connect()
    con.register("caps", caps)
    con.register("keys", keys)
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    found = fetch()
    for name in found.column_names:
        inputs = inputs.append_column(name, found[name])
    return inputs
