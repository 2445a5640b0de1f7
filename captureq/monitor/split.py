"""Monitoring split by an ``eventMetadata`` key: one baseline and one set of verdicts per value.

A multi-model endpoint serves models of different shapes behind one name; its inputs read
together are one column set in which each model's columns look incomplete. Split by the key
that names the model (``targetModel``, kept in ``captures.event_metadata``), each value gets
its own table holding only the columns its records have, its own baseline folder
(``OUT/<value>/``) and its own monitoring run. ``by`` is the key, or ``metadata.<key>``.

>>> folder_name("models/m1.tar.gz"), folder_name(None)
('models%2Fm1.tar.gz', '_none')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError

#: The folder of the records that do not carry the key.
NONE = "_none"


def metadata_key(by: str) -> str:
    """The eventMetadata key ``by`` names (``metadata.targetModel`` or ``targetModel``)."""
    key = by[len("metadata."):] if by.startswith("metadata.") else by
    if not key:
        raise ConfigError("--by needs an eventMetadata key, e.g. --by targetModel")
    return key


def folder_name(value: str | None) -> str:
    """The folder of one value under a split baseline or monitoring output."""
    return NONE if value is None else quote(value, safe="") or "%20"


def metadata_values(captures: pa.Table, key: str) -> pa.Array:
    """``eventMetadata[key]`` of each capture as text (null where absent), in one DuckDB pass."""
    import duckdb

    path = '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    con = duckdb.connect()
    try:
        con.register("captureq_split", captures.select(["event_metadata"]))
        return con.sql(
            "SELECT json_extract_string(event_metadata, ?) FROM captureq_split", params=[path]
        ).to_arrow_table().column(0).combine_chunks().cast(pa.string())
    finally:
        con.close()


def split(inputs: pa.Table, captures: pa.Table, by: str) -> dict[str | None, pa.Table]:
    """``inputs`` split by their capture's ``eventMetadata`` value of ``by`` (None: absent);
    each part keeps only the columns its records use."""
    from .baseline import single_endpoint

    key = metadata_key(by)
    values = metadata_values(captures, key)
    at = pc.index_in(inputs["capture_id"], value_set=captures["capture_id"])
    per_row = values.take(at)
    out: dict[str | None, pa.Table] = {}
    for value in sorted(pc.unique(per_row).to_pylist(), key=lambda v: (v is None, v or "")):
        mask = pc.is_null(per_row) if value is None else pc.fill_null(pc.equal(per_row, value), False)
        out[value] = single_endpoint(inputs.filter(mask))
    return out


def _tree_split(source: Any, by: str, storage_options, **narrow) -> dict[str | None, pa.Table]:
    from ..plan import ScanPlan as CaptureTree
    from ..plan import open_plan as open_tree
    from .baseline import tree_inputs

    if isinstance(source, pa.Table):
        raise ConfigError("--by splits a capture tree (it reads eventMetadata): pass a tree, not a table")
    tree = source if isinstance(source, CaptureTree) else open_tree(str(source), storage_options=storage_options)
    tree = tree._narrow(narrow)
    return split(tree_inputs(tree), tree.captures(), by)


def baseline_by(
    source: Any,
    out: str | Path | None,
    by: str,
    *,
    endpoint: str | None = None,
    start: Any = None,
    end: Any = None,
    storage_options: dict | None = None,
    monitoring_config: dict | None = None,
) -> dict:
    """One :class:`~captureq.monitor.Baseline` per value of ``by`` (written to ``out/<value>/``)."""
    from .baseline import Baseline, constraints, statistics

    parts = _tree_split(source, by, storage_options, start=start, end=end, endpoint=endpoint)
    result = {}
    for value, table in parts.items():
        stats = statistics(table)
        result[value] = Baseline(stats, constraints(stats, monitoring_config))
        if out is not None:
            result[value].write(Path(out) / folder_name(value))
    return result


def monitor_by(
    source: Any,
    baseline: str | Path,
    out: str | Path | None,
    by: str,
    *,
    endpoint: str | None = None,
    start: Any = None,
    end: Any = None,
    storage_options: dict | None = None,
    hourly: bool = True,
    robust_alpha: float = 0.001,
) -> dict:
    """One :class:`~captureq.monitor.MonitorResult` per value of ``by``, each checked against
    ``baseline/<value>/`` (made by :func:`baseline_by`) and written to ``out/<value>/``."""
    from .baseline import Baseline
    from .check import monitor

    root = Path(baseline)
    parts = _tree_split(source, by, storage_options, start=start, end=end, endpoint=endpoint)
    missing = [v for v in parts if not (root / folder_name(v) / "statistics.json").exists()]
    if missing:
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise ConfigError(
            f"{root} has no baseline for {by}={', '.join(map(str, missing))} (it has "
            f"{', '.join(have) or 'none'}): run `captureq baseline DATA {root} --by {by}` over "
            "a window holding those records"
        )
    return {
        value: monitor(
            table, Baseline.load(root / folder_name(value)),
            None if out is None else Path(out) / folder_name(value),
            hourly=hourly, robust_alpha=robust_alpha,
        )
        for value, table in parts.items()
    }
