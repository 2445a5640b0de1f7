"""The schema an export has recorded for each table and endpoint, and conformance to it.

An export is a lake: every part of ``inputs`` (or ``outputs``) of one endpoint must have the same
columns with the same types, or readers such as ``pl.scan_parquet('out/inputs/**/*.parquet')``
fail (``SchemaError … Int64 != String``). The first batch that brings an endpoint records its
column types (:func:`captureq.decode.decide`: the narrowest type holding every value) in
``_captureq/schemas/<table>/<endpoint>.json`` *before* the batch's parts are committed; every
later batch and run folds its own types into the record and conforms to it:

- a column whose new values need a wider type is widened along the type lattice
  (``NULL → BIGINT → DOUBLE → VARCHAR``), and the parts written before are rewritten at the
  wider type (:func:`captureq.export.widen_parts`); every change is kept in the record's
  ``history`` with its run and time;
- a new column is appended to the record (nullable; parts written before it lack it);
- a value that does not fit a type the user *declared* becomes null and a ``value``
  quarantine row (a decided type holds every value);
- the parts have exactly the recorded columns, in the recorded order, and each keeps its own
  narrowest types in its metadata (``captureq.types``).

>>> import pyarrow as pa
>>> entry = new_entry("inputs", "ep", {"_c0": pa.float64()}, "run-1")
>>> [c["type"] for c in entry["columns"]], entry_types(entry)
(['double'], {'_c0': DataType(double)})
"""

from __future__ import annotations

import base64
import posixpath
from urllib.parse import quote

import pyarrow as pa

from . import schema
from .decode import Decision, conform, decide

SCHEMAS = "schemas"
SIDES = (("input", "inputs"), ("output", "outputs"))


def new_entry(table: str, endpoint: str, types: dict[str, pa.DataType], run_id: str) -> dict:
    from datetime import datetime, timezone

    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry = {"table": table, "endpoint": endpoint, "columns": [], "arrow_schema": "",
             "history": [{"run": run_id, "at": at, "change": "created"}]}
    _set_types(entry, types)
    return entry


def _set_types(entry: dict, types: dict[str, pa.DataType]) -> None:
    entry["columns"] = [{"name": n, "type": str(t)} for n, t in types.items()]
    fields = pa.schema([pa.field(n, t) for n, t in types.items()])
    entry["arrow_schema"] = base64.b64encode(fields.serialize().to_pybytes()).decode("ascii")


def entry_types(entry: dict) -> dict[str, pa.DataType]:
    """Column → Arrow type of a schema record (read back exactly from its Arrow schema)."""
    fields = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(entry["arrow_schema"])))
    return {f.name: f.type for f in fields}


def merge_types(entry: dict, seen: dict[str, pa.DataType], run_id: str) -> bool:
    """Fold a batch's decided types into a record: new columns appended, a column whose new
    values need a wider type widened along the type lattice (:func:`captureq.decode.unify.join`:
    NULL → BIGINT → DOUBLE → VARCHAR), each change kept in ``history`` with its time.
    Returns whether the record changed."""
    from datetime import datetime, timezone

    from .decode.unify import union_type

    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    types = entry_types(entry)
    changed = False
    for name, t in seen.items():
        old = types.get(name)
        if old is None:
            types[name] = t
            entry["history"].append({"run": run_id, "at": at, "change": "added", "column": name,
                                     "type": str(t)})
            changed = True
            continue
        wider = union_type([old, t])
        if wider != old:
            types[name] = wider
            entry["history"].append({"run": run_id, "at": at, "change": "widened", "column": name,
                                     "from": str(old), "to": str(wider)})
            changed = True
    if changed:
        _set_types(entry, types)
    return changed


class Registry:
    """The schema records of one export folder (``target`` is :class:`captureq.export._Output`)."""

    def __init__(self, target, entries: list[dict] | None = None, declared: dict | None = None):
        """``target=None`` with ``entries``: an in-memory copy (a Spark task's), which records
        what it changes in :attr:`changed` instead of writing."""
        self.target = target
        self.declared = declared or {}  # side → {endpoint or None: {column: Arrow type}}
        self.entries: dict[tuple[str, str], dict] = {}
        self.changed: set[tuple[str, str]] = set()
        for entry in entries or []:
            self.entries[(entry["table"], entry["endpoint"])] = entry
        if target is None:
            return
        for _, table in SIDES:
            folder = f"{target.meta}/{SCHEMAS}/{table}"
            try:
                paths = target.fs.ls(folder, detail=False)
            except FileNotFoundError:
                continue
            for path in sorted(p for p in paths if p.endswith(".json")):
                entry = target.read_json(path)
                self.entries[(table, entry["endpoint"])] = entry

    def path(self, table: str, endpoint: str) -> str:
        return f"{self.target.meta}/{SCHEMAS}/{table}/{quote(endpoint, safe='')}.json"

    def decision(self, table: str) -> Decision:
        return {e: entry_types(entry) for (t, e), entry in self.entries.items() if t == table}

    def own_types(self, result) -> dict[str, Decision]:
        """A batch's own types per side: its values alone decide them, declared types win."""
        return {side: decide([result.profiles.get(side, {})], self.declared.get(side)) for side, _ in SIDES}

    def admit(self, own: dict[str, Decision], run_id: str) -> dict[str, Decision]:
        """Record the endpoints and columns of a batch's own types (:meth:`own_types`; written
        before its commit, so a part on disk always has a record); returns the recorded
        decisions per side."""
        out = {}
        for side, table in SIDES:
            for endpoint, types in own[side].items():
                if endpoint is None:
                    continue
                key = (table, endpoint)
                if key not in self.entries:
                    self.entries[key] = new_entry(table, endpoint, types, run_id)
                elif not merge_types(self.entries[key], types, run_id):
                    continue
                self.changed.add(key)
                self.save(key)
            out[side] = self.decision(table)
        return out

    def save(self, key: tuple[str, str]) -> None:
        if self.target is None:
            return
        path = self.path(*key)
        self.target.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.target.write_json(path, self.entries[key])

    def absorb(self, entries: list[dict], run_id: str) -> None:
        """Fold records a Spark task changed (new endpoints, new columns) into this registry."""
        for entry in entries:
            key = (entry["table"], entry["endpoint"])
            if key not in self.entries:
                self.entries[key] = entry
                self.save(key)
            elif merge_types(self.entries[key], entry_types(entry), run_id):
                self.save(key)

    def conform_parts(self, groups: list[tuple[str, pa.Table]], captures: pa.Table, decision: Decision,
                      side: str, own: Decision | None = None) -> tuple[list[tuple[str, pa.Table]], list[pa.Table]]:
        """Each part (one endpoint's rows) with exactly its recorded columns and types, and the
        ``value`` quarantine rows of values that did not fit. ``own``: the batch's own decision,
        kept in each part's schema metadata (``captureq.types``): the narrowest types of the
        part's values, which a reader of just these parts casts back to."""
        import json

        parts, quarantine = [], []
        for partition, rows in groups:
            typed, q = conform(rows, captures, decision, side, exact=True)
            if own is not None and rows.num_rows:
                endpoint = rows.column("endpoint")[0].as_py()
                narrow = {c: str(t) for c, t in own.get(endpoint, {}).items() if c in typed.column_names}
                typed = typed.replace_schema_metadata({**(typed.schema.metadata or {}),
                                                       b"captureq.types": json.dumps(narrow)})
            parts.append((partition, typed))
            if q.num_rows:
                quarantine.append(q)
        return parts, quarantine


def conform_batch(registry: Registry, result, split, run_id: str) -> tuple[dict, pa.Table]:
    """``inputs``/``outputs`` partition groups of a batch conformed to the export's schema
    records (``split(table)`` partitions a table), plus the batch's quarantine with the
    ``value`` rows added (also counted in ``result.counts.values_quarantined``)."""
    own = registry.own_types(result)
    decisions = registry.admit(own, run_id)
    groups, extra = {}, []
    for side, table in SIDES:
        parts, q = registry.conform_parts(split(getattr(result, table)), result.captures, decisions[side],
                                          side, own[side])
        groups[table] = parts
        extra += q
    quarantine = result.quarantine
    if extra:
        result.counts.values_quarantined += sum(q.num_rows for q in extra)
        quarantine = pa.concat_tables([quarantine, *extra]).cast(schema.QUARANTINE)
    return groups, quarantine
