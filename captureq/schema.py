"""Arrow schemas of captureq's tables: the one place column names and types are defined.

``captures``  one row per captured request (a line of a capture file)
``inputs``    one row per record inside an input payload, keyed by (capture_id, record_index)
``outputs``   one row per record inside an output payload, same key
``labels``    one row per ground-truth record
``quarantine`` one row per line or payload that could not be used, with the reason

``inputs``/``outputs`` carry the key columns below plus the decoded feature/prediction columns,
whose names depend on the payloads (``_c0``, ``_c1``, ... for CSV, npy and RecordIO; flattened
names for JSON). Binary payloads are never copied into them: their bytes are ``captures``'
``input_data``/``output_data`` (base64, as captured).
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

CAPTURES = pa.schema(
    [
        ("capture_id", pa.string()),
        ("endpoint", pa.string()),
        ("variant", pa.string()),
        ("event_id", pa.string()),
        ("inference_id", pa.string()),
        ("inference_time", TIMESTAMP),
        # true when the record had no eventMetadata.inferenceTime (batch transform capture):
        # inference_time is then the start of the hour folder the file is in
        ("inference_time_from_path", pa.bool_()),
        ("event_version", pa.string()),
        # the eventMetadata keys without a column of their own (a multi-model server's
        # targetModel, say) as a JSON object's text; null when there are none
        ("event_metadata", pa.string()),
        ("input_observed_content_type", pa.string()),
        ("input_encoding", pa.string()),
        ("input_mode", pa.string()),
        ("input_data", pa.string()),
        ("output_observed_content_type", pa.string()),
        ("output_encoding", pa.string()),
        ("output_mode", pa.string()),
        ("output_data", pa.string()),
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
    ]
)

# Key columns every inputs/outputs row starts with; payload columns follow.
RECORD_KEYS = pa.schema(
    [
        ("capture_id", pa.string()),
        ("record_index", pa.int32()),
        ("endpoint", pa.string()),
        ("variant", pa.string()),
        ("event_id", pa.string()),
        ("inference_id", pa.string()),
        ("inference_time", TIMESTAMP),
    ]
)
RECORD_KEY_NAMES = tuple(RECORD_KEYS.names)

#: The export's partition folder keys besides ``endpoint``/``variant`` (``date=…/hour=…``):
#: readers such as pandas add them as columns, so no decoded column may take these names.
FOLDER_KEYS = ("date", "hour")

LABELS = pa.schema(
    [
        ("label_id", pa.string()),
        ("event_id", pa.string()),
        ("record_index", pa.int32()),
        ("ground_truth", pa.string()),
        ("ground_truth_value", pa.float64()),
        ("label_hour", TIMESTAMP),
        ("encoding", pa.string()),
        ("data", pa.string()),
        ("event_version", pa.string()),
        ("source_file", pa.string()),
        # when the label's file was written (mtime / S3 LastModified): orders labels for one id
        ("source_modified", TIMESTAMP),
        ("line_number", pa.int64()),
    ]
)

QUARANTINE = pa.schema(
    [
        # 'line': the line did not become a capture/label row at all (it counts against lines read);
        # 'input' / 'output' / 'label': the row exists, but its payload could not be decoded;
        # 'align': input and output record counts differ for one capture;
        # 'value': one value did not fit its column's type (null in the column, kept here).
        ("stage", pa.string()),
        ("source_file", pa.string()),
        ("line_number", pa.int64()),
        ("capture_id", pa.string()),
        ("reason", pa.string()),
        ("raw", pa.string()),
        # stage 'value' only: the decoded column (inputs/outputs name) and the record's index
        ("column", pa.string()),
        ("record_index", pa.int32()),
    ]
)


def quarantine_rows(columns: dict[str, pa.Array]) -> pa.Table:
    """A ``quarantine`` table from ``columns``; the ones not given are null.

    >>> quarantine_rows({"stage": pa.array(["line"]), "reason": pa.array(["bad JSON"])}).num_columns
    8
    """
    n = len(next(iter(columns.values()))) if columns else 0
    return pa.table(
        [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in QUARANTINE],
        schema=QUARANTINE,
    )

TABLES = ("captures", "inputs", "outputs", "labels", "quarantine")


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table with ``schema``.

    Built from ``pa.nulls(0, type)``: ``Schema.empty_table()`` goes through ``pa.array([])``,
    which imports pandas (0.2-0.3 s) to ask whether a list is a pandas object.

    >>> empty(pa.schema([("a", pa.int64())])).num_rows
    0
    """
    return pa.table([pa.nulls(0, f.type) for f in schema], schema=schema)


def duckdb_type(t: pa.DataType) -> str:
    """DuckDB SQL type name for an Arrow type (used to declare empty views for the shell)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "VARCHAR"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return duckdb_type(t.value_type) + "[]"
    if pa.types.is_struct(t) and t.num_fields:
        fields = ", ".join('"' + f.name.replace('"', '""') + '" ' + duckdb_type(f.type) for f in t)
        return f"STRUCT({fields})"
    if pa.types.is_null(t):
        return '"NULL"'
    raise TypeError(f"no DuckDB type for {t}")
