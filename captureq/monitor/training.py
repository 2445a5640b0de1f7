"""Training data in the formats users keep it, read as Arrow with the column names capture
decoding gives the same records, so a baseline's features line up with the live data.

========== ==================================================================================
format     read as
========== ==================================================================================
``csv``    :func:`captureq.monitor.baseline.read_table` (header detected; ``_c0…`` without one)
``jsonl``  one record per line, through the capture JSON Lines decoder: nested objects become
           ``user.age``, ``{"features": [...]}`` becomes ``_c0…``, keys are named by
           :func:`captureq.decode.column_name`
``json``   one document (a list of records, ``{"instances": [...]}``, …) through the capture
           JSON decoder, with the same names
``parquet`` a file or a folder of files; struct columns are flattened with the JSON names
           (``user{age, geo{lat}}`` → ``user.age``, ``user.geo.lat``); a column named ``_c3``
           stays the positional feature ``_c3``
``capture`` a capture tree's ``inputs`` (``--endpoint`` and ``--start/--end`` narrow it)
``export`` a captureq export folder's ``inputs`` (its live parts, from its manifest)
========== ==================================================================================

:func:`detect_format` picks one from the name (``.csv``, ``.csv.gz``, ``.jsonl``, ``.ndjson``,
``.json``, ``.parquet``, ``.pq``), the first bytes of a ``.json`` file (``[`` is a JSON document,
anything else JSON Lines), or a folder's content (``_captureq/``: an export; only Parquet
files: a Parquet dataset; else a capture tree).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import schema
from ..errors import ConfigError

FORMATS = ("csv", "jsonl", "json", "parquet", "capture", "export")
_SUFFIXES = (
    ((".csv", ".csv.gz", ".csv.bz2", ".csv.zst"), "csv"),
    ((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".jsonlines"), "jsonl"),
    ((".json", ".json.gz"), "json"),
    ((".parquet", ".pq"), "parquet"),
)
_CHUNK = 1 << 24  # JSON Lines are decoded in pieces of about this many bytes


def check_format(data_format: str | None) -> str | None:
    """``data_format`` lower-cased, or a :class:`ConfigError` listing the formats."""
    if data_format is None:
        return None
    fmt = data_format.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown training data format {data_format!r}: use one of "
                          f"{', '.join(FORMATS)}")
    return fmt


def detect_format(source: str, storage_options: dict | None = None) -> str:
    """The format of the training data at ``source`` (see the module doc)."""
    from ..storage import filesystem

    fmt = format_by_name(source)
    if fmt is not None:
        return _json_kind(source, storage_options) if fmt == "json" else fmt
    fs, path = filesystem(source, storage_options)
    if fs.isdir(path):
        if fs.exists(f"{path.rstrip('/')}/_captureq"):
            return "export"
        files = [f for f in fs.find(path) if not Path(f).name.startswith((".", "_"))]
        if files and all(f.lower().endswith((".parquet", ".pq")) for f in files):
            return "parquet"
    return "capture"


def format_by_name(source: str) -> str | None:
    """The file format ``source``'s name says (``json`` also for JSON Lines named ``.json``)."""
    lower = source.lower().rstrip("/")
    for suffixes, fmt in _SUFFIXES:
        if lower.endswith(suffixes):
            return fmt
    return None


def _json_kind(source: str, storage_options: dict | None) -> str:
    """``json`` when a ``.json`` file's first non-blank byte opens a list, else ``jsonl``."""
    import fsspec

    with fsspec.open(source, "rb", compression="infer", **(storage_options or {})) as fh:
        head = fh.read(4096).lstrip()
    return "json" if head.startswith(b"[") else "jsonl"


def load(source: Any, data_format: str | None = None, *, endpoint: str | None = None,
         header: bool | None = None, storage_options: dict | None = None,
         start: Any = None, end: Any = None) -> pa.Table:
    """Training data at ``source`` as Arrow, in ``data_format`` (detected when None)."""
    from .baseline import _check_training_path

    source = str(source)
    _check_training_path(source, storage_options)  # a pattern or a missing path names TRAINING_DATA
    fmt = check_format(data_format) or detect_format(source, storage_options)
    files = None
    if fmt == "csv":
        from .baseline import read_table

        table = read_table(source, header=header, storage_options=storage_options)
    elif fmt in ("jsonl", "json"):
        table = read_json(source, lines=fmt == "jsonl", storage_options=storage_options)
    elif fmt == "parquet":
        table = read_parquet(source, storage_options)
    elif fmt == "export":
        table = read_export(source, endpoint=endpoint, storage_options=storage_options,
                            start=start, end=end)
    else:
        from ..plan import open_plan
        from .baseline import single_endpoint, tree_inputs

        _refuse_capture_file(source, storage_options)
        tree = open_plan(source, storage_options=storage_options)
        tree = tree._narrow({"start": start, "end": end, "endpoint": endpoint})
        table = single_endpoint(tree_inputs(tree))
        files = len(tree.scan().files)
    return require_records(table, source, fmt, files)


def require_records(table: pa.Table, source: str, fmt: str, files: int | None = None) -> pa.Table:
    """``table``, or a :class:`ConfigError` saying what was read when it holds no record (an
    empty baseline describes nothing; usually the data was read in the wrong format or window)."""
    if table.num_rows == 0:
        if files is None:
            files = 1 if fmt in ("csv", "jsonl", "json") else None
        read = (f"{files} file{'s' if files != 1 else ''}, " if files is not None else "")
        raise ConfigError(
            f"found no records in TRAINING_DATA {source} read as {fmt} (read {read}0 rows, "
            f"{table.num_columns} columns): a baseline needs training data; pass --input-format "
            f"({', '.join(FORMATS)}) if it is not {fmt}"
            + (", or widen --start/--end" if fmt in ("capture", "export") else "")
        )
    return table


def refuse_capture_file(source: str, storage_options: dict | None = None) -> None:
    """A :class:`ConfigError` when ``source`` is a file: a capture tree is a folder."""
    _refuse_capture_file(source, storage_options)


def _refuse_capture_file(source: str, storage_options: dict | None) -> None:
    from ..storage import filesystem

    fs, path = filesystem(source, storage_options)
    if not fs.isfile(path):
        return
    import fsspec

    with fsspec.open(source, "rb", compression="infer", **(storage_options or {})) as fh:
        first = fh.readline(1 << 20)
    hint = ("it is one capture file: baseline the capture tree it belongs to (the folder "
            "above ENDPOINT/VARIANT/yyyy/mm/dd/hh)" if _is_capture_line(first) else
            f"pass --input-format ({', '.join(FORMATS[:4])}) to say how to read it")
    raise ConfigError(f"{source} is a file, not a capture tree: {hint}")


def _is_capture_line(line: str | bytes) -> bool:
    """Whether ``line`` is a capture record (a JSON object with ``captureData``)."""
    try:
        doc = json.loads(line)
    except (ValueError, TypeError):
        return False
    return isinstance(doc, dict) and "captureData" in doc


# ---------------------------------------------------------------------------------------------
# JSON and JSON Lines
# ---------------------------------------------------------------------------------------------
def read_json(source: str, *, lines: bool, storage_options: dict | None = None) -> pa.Table:
    """A JSON Lines file (``lines``) or one JSON document as records, decoded by captureq's
    JSON decoders so that every key is named as a capture of it would be."""
    import fsspec

    from ..decode import decode_json, decode_json_lines

    with fsspec.open(source, "rb", compression="infer", **(storage_options or {})) as fh:
        data = fh.read()
    text = data.decode("utf-8-sig", errors="replace")
    if _is_capture_line(text[: text.find("\n") if "\n" in text else len(text)]):
        raise ConfigError(f"{source} is a capture file, not training data: baseline the capture "
                          "tree it belongs to (the folder above ENDPOINT/VARIANT/yyyy/mm/dd/hh)")
    if lines:
        d = decode_json_lines(pa.array(_pieces(text), pa.string()))
    else:
        d = decode_json(pa.array([text], pa.string()))
    if d.failures:
        _, reason = d.failures[0]
        raise ConfigError(f"{source} is not {'JSON Lines' if lines else 'JSON'}: {reason}; "
                          f"pass --input-format ({', '.join(FORMATS[:4])}) if it is another format")
    from ..decode.common import RECORD_INDEX, ROW

    return d.table.drop_columns([c for c in (ROW, RECORD_INDEX) if c in d.table.column_names])


def _pieces(text: str) -> list[str]:
    """``text`` cut at line ends into pieces of about :data:`_CHUNK` characters."""
    out, pos = [], 0
    while pos < len(text):
        cut = text.find("\n", pos + _CHUNK)
        cut = len(text) if cut < 0 else cut + 1
        if text[pos:cut].strip():
            out.append(text[pos:cut])
        pos = cut
    return out


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------
def read_parquet(source: str, storage_options: dict | None = None) -> pa.Table:
    """A Parquet file or folder, struct columns flattened with capture JSON names."""
    import pyarrow.parquet as pq

    from ..storage import filesystem

    fs, path = filesystem(source, storage_options)
    if fs.isdir(path):
        files = sorted(f for f in fs.find(path) if f.lower().endswith((".parquet", ".pq"))
                       and not Path(f).name.startswith((".", "_")))
        tables = [pq.read_table(f, filesystem=fs) for f in files]
        table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
    else:
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
    return flatten(table)


def flatten_structs(table: pa.Table) -> pa.Table:
    """``table`` as :func:`flatten` names it when it has a struct column, else unchanged (an
    Arrow table or DataFrame given to ``baseline`` keeps its flat names)."""
    if any(pa.types.is_struct(f.type) for f in table.schema):
        return flatten(table)
    return table


def flatten(table: pa.Table) -> pa.Table:
    """Columns named as a captured JSON record with the same fields would name them: nested
    structs joined with ``.``, keys escaped by :func:`captureq.decode.column_name`; a top-level
    ``_c<N>`` stays ``_c<N>`` (a positional feature, as CSV captures name it) and captureq's
    record keys (``capture_id``, ``event_id``, …) stay themselves (they are not features).

    >>> flatten(pa.table({"user": [{"age": 3, "geo": {"lat": 1.5}}], "_c0": [1.0]})).column_names
    ['_c0', 'user.age', 'user.geo.lat']
    """
    import re

    from ..decode.json import _record_columns
    from ..decode.names import column_name

    if table.num_columns == 0:
        return table
    vector = re.compile(r"_c[0-9]+")
    keep = {column_name((n,)): n for n in table.column_names
            if vector.fullmatch(n) or n in schema.RECORD_KEY_NAMES}
    cols = _record_columns(table.to_struct_array().combine_chunks(), None) if table.num_rows else {
        n: pa.array([], f.type) for n, f in zip(table.column_names, table.schema)}
    return pa.table({keep.get(name, name): col for name, col in cols.items()})


# ---------------------------------------------------------------------------------------------
# A captureq export
# ---------------------------------------------------------------------------------------------
_PARTITION_COLUMNS = ("date", "hour")


def read_export(source: str, *, endpoint: str | None = None, storage_options: dict | None = None,
                start: Any = None, end: Any = None) -> pa.Table:
    """The ``inputs`` of one endpoint of a captureq export folder (its live parts)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ..commitlog import endpoint_of
    from ..export import read_manifest
    from ..storage import filesystem
    from ..timeutil import to_utc as parse_time

    fs, root = filesystem(source, storage_options)
    try:
        parts = read_manifest(source, storage_options).get("parts", {}).get("inputs", [])
    except FileNotFoundError:
        raise ConfigError(f"{source} has no _captureq/manifest.json: it is not a finished captureq "
                          "export; run `captureq export` into it first") from None
    by_endpoint: dict[str | None, list[str]] = {}
    for p in parts:
        by_endpoint.setdefault(endpoint_of(p), []).append(p)
    if endpoint is None and len(by_endpoint) > 1:
        raise ConfigError(f"{source} holds {len(by_endpoint)} endpoints "
                          f"({', '.join(sorted(str(e) for e in by_endpoint))}); a baseline "
                          "describes one: pass endpoint=... (--endpoint)")
    chosen = by_endpoint.get(endpoint, []) if endpoint is not None else next(iter(by_endpoint.values()), [])
    tables = [pq.read_table(f"{root.rstrip('/')}/{p}", filesystem=fs) for p in sorted(chosen)]
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="permissive")
    # partition columns (older layouts store them in the parts) and BLOB columns (an export
    # written by an earlier captureq version holds binary payloads' bytes in one): not features
    table = table.drop_columns([f.name for f in table.schema if f.name in _PARTITION_COLUMNS
                                or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)])
    if "inference_time" in table.column_names and (start is not None or end is not None):
        keep = pa.array([True] * table.num_rows)
        if start is not None:
            keep = pc.and_(keep, pc.greater_equal(table["inference_time"], pa.scalar(parse_time(start), table["inference_time"].type)))
        if end is not None:
            keep = pc.and_(keep, pc.less(table["inference_time"], pa.scalar(parse_time(end), table["inference_time"].type)))
        table = table.filter(keep)
    from .baseline import single_endpoint

    return single_endpoint(table)
